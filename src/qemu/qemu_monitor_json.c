/*
 * Typed QMP commands on top of qemu_monitor_send().
 *
 * Every wrapper builds its arguments and sends them with a small closure
 * naming a reply shape. One generic adapter (json_reply) runs the shape's
 * parser and hands the result to the shape's delivery function, which
 * calls the typed callback: adding a command never adds an adapter.
 */
#define HO_LOG_MODULE "qemu.monitor.json"

#include "qemu_monitor_json.h"

#include <string.h>

#include "ho_error.h"
#include "ho_i18n.h"
#include "ho_json.h"
#include "ho_log.h"

/* ---- enum string tables ---- */

static const char *const migration_status_names[] = {
    [QEMU_MIGRATION_STATUS_UNKNOWN] = NULL,
    [QEMU_MIGRATION_STATUS_NONE] = "none",
    [QEMU_MIGRATION_STATUS_SETUP] = "setup",
    [QEMU_MIGRATION_STATUS_CANCELLING] = "cancelling",
    [QEMU_MIGRATION_STATUS_CANCELLED] = "cancelled",
    [QEMU_MIGRATION_STATUS_ACTIVE] = "active",
    [QEMU_MIGRATION_STATUS_POSTCOPY_ACTIVE] = "postcopy-active",
    [QEMU_MIGRATION_STATUS_POSTCOPY_PAUSED] = "postcopy-paused",
    [QEMU_MIGRATION_STATUS_POSTCOPY_RECOVER_SETUP] = "postcopy-recover-setup",
    [QEMU_MIGRATION_STATUS_POSTCOPY_RECOVER] = "postcopy-recover",
    [QEMU_MIGRATION_STATUS_COMPLETED] = "completed",
    [QEMU_MIGRATION_STATUS_FAILED] = "failed",
    [QEMU_MIGRATION_STATUS_COLO] = "colo",
    [QEMU_MIGRATION_STATUS_PRE_SWITCHOVER] = "pre-switchover",
    [QEMU_MIGRATION_STATUS_DEVICE] = "device",
    [QEMU_MIGRATION_STATUS_WAIT_UNPLUG] = "wait-unplug",
};
G_STATIC_ASSERT(G_N_ELEMENTS(migration_status_names) == QEMU_MIGRATION_STATUS_LAST);

static const char *const run_state_names[] = {
    [QEMU_RUN_STATE_UNKNOWN] = NULL,
    [QEMU_RUN_STATE_DEBUG] = "debug",
    [QEMU_RUN_STATE_INMIGRATE] = "inmigrate",
    [QEMU_RUN_STATE_INTERNAL_ERROR] = "internal-error",
    [QEMU_RUN_STATE_IO_ERROR] = "io-error",
    [QEMU_RUN_STATE_PAUSED] = "paused",
    [QEMU_RUN_STATE_POSTMIGRATE] = "postmigrate",
    [QEMU_RUN_STATE_PRELAUNCH] = "prelaunch",
    [QEMU_RUN_STATE_FINISH_MIGRATE] = "finish-migrate",
    [QEMU_RUN_STATE_RESTORE_VM] = "restore-vm",
    [QEMU_RUN_STATE_RUNNING] = "running",
    [QEMU_RUN_STATE_SAVE_VM] = "save-vm",
    [QEMU_RUN_STATE_SHUTDOWN] = "shutdown",
    [QEMU_RUN_STATE_SUSPENDED] = "suspended",
    [QEMU_RUN_STATE_WATCHDOG] = "watchdog",
    [QEMU_RUN_STATE_GUEST_PANICKED] = "guest-panicked",
    [QEMU_RUN_STATE_COLO] = "colo",
};
G_STATIC_ASSERT(G_N_ELEMENTS(run_state_names) == QEMU_RUN_STATE_LAST);

static const char *const job_status_names[] = {
    [QEMU_JOB_STATUS_UNKNOWN] = NULL,
    [QEMU_JOB_STATUS_UNDEFINED] = "undefined",
    [QEMU_JOB_STATUS_CREATED] = "created",
    [QEMU_JOB_STATUS_RUNNING] = "running",
    [QEMU_JOB_STATUS_PAUSED] = "paused",
    [QEMU_JOB_STATUS_READY] = "ready",
    [QEMU_JOB_STATUS_STANDBY] = "standby",
    [QEMU_JOB_STATUS_WAITING] = "waiting",
    [QEMU_JOB_STATUS_PENDING] = "pending",
    [QEMU_JOB_STATUS_ABORTING] = "aborting",
    [QEMU_JOB_STATUS_CONCLUDED] = "concluded",
    [QEMU_JOB_STATUS_NULL] = "null",
};
G_STATIC_ASSERT(G_N_ELEMENTS(job_status_names) == QEMU_JOB_STATUS_LAST);

static const char *const mig_mode_names[] = {
    [QEMU_MIG_MODE_UNKNOWN] = NULL,
    [QEMU_MIG_MODE_NORMAL] = "normal",
    [QEMU_MIG_MODE_CPR_REBOOT] = "cpr-reboot",
    [QEMU_MIG_MODE_CPR_TRANSFER] = "cpr-transfer",
};
G_STATIC_ASSERT(G_N_ELEMENTS(mig_mode_names) == QEMU_MIG_MODE_LAST);

/* The text for the _UNKNOWN member and for values outside a table. */
#define ENUM_UNKNOWN_NAME "unknown"

/* A QEMU (or something pretending to be one) could send endless new names:
 * remember at most this many for the warn-once rule, then log at debug. */
#define MAX_WARNED_NAMES 64

static GMutex warned_lock;
static GHashTable *warned_names; /* "Type\nname" -> itself; never freed */

static void
warn_unknown_name(const char *type, const char *name)
{
    g_autofree char *key = g_strdup_printf("%s\n%s", type, name);
    bool first = false;
    bool full = false;

    g_mutex_lock(&warned_lock);
    if (!warned_names)
        warned_names = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    if (!g_hash_table_contains(warned_names, key)) {
        if (g_hash_table_size(warned_names) < MAX_WARNED_NAMES) {
            g_hash_table_add(warned_names, g_steal_pointer(&key));
            first = true;
        } else {
            full = true;
        }
    }
    g_mutex_unlock(&warned_lock);

    if (first)
        HO_WARN("unknown %s value '%s' from QEMU", type, name);
    else if (full)
        HO_DEBUG("unknown %s value '%s' from QEMU", type, name);
}

static const char *
enum_to_string(const char *const *names, int last, int val)
{
    if (val <= 0 || val >= last || !names[val])
        return ENUM_UNKNOWN_NAME;
    return names[val];
}

static int
enum_from_string(const char *type, const char *const *names, int last, const char *s)
{
    int i;

    if (!s)
        return 0;
    for (i = 1; i < last; i++) {
        if (g_str_equal(names[i], s))
            return i;
    }
    warn_unknown_name(type, s);
    return 0;
}

const char *
qemu_migration_status_to_string(QemuMigrationStatus st)
{
    return enum_to_string(migration_status_names, QEMU_MIGRATION_STATUS_LAST, st);
}

QemuMigrationStatus
qemu_migration_status_from_string(const char *s)
{
    return enum_from_string("MigrationStatus", migration_status_names,
                            QEMU_MIGRATION_STATUS_LAST, s);
}

const char *
qemu_run_state_to_string(QemuRunState st)
{
    return enum_to_string(run_state_names, QEMU_RUN_STATE_LAST, st);
}

QemuRunState
qemu_run_state_from_string(const char *s)
{
    return enum_from_string("RunState", run_state_names, QEMU_RUN_STATE_LAST, s);
}

const char *
qemu_job_status_to_string(QemuJobStatus st)
{
    return enum_to_string(job_status_names, QEMU_JOB_STATUS_LAST, st);
}

QemuJobStatus
qemu_job_status_from_string(const char *s)
{
    return enum_from_string("JobStatus", job_status_names, QEMU_JOB_STATUS_LAST, s);
}

const char *
qemu_mig_mode_to_string(QemuMigMode m)
{
    return enum_to_string(mig_mode_names, QEMU_MIG_MODE_LAST, m);
}

QemuMigMode
qemu_mig_mode_from_string(const char *s)
{
    return enum_from_string("MigMode", mig_mode_names, QEMU_MIG_MODE_LAST, s);
}

/* ---- free functions ---- */

void
qemu_monitor_version_free(QemuMonitorVersion *v)
{
    if (!v)
        return;
    g_free(v->package);
    g_free(v);
}

void
qemu_migration_info_free(QemuMigrationInfo *info)
{
    if (!info)
        return;
    g_free(info->error_desc);
    g_free(info);
}

void
qemu_migration_params_free(QemuMigrationParams *p)
{
    if (!p)
        return;
    if (p->raw)
        json_object_put(p->raw);
    g_free(p);
}

static void
migration_capability_free(QemuMigrationCapability *cap)
{
    if (!cap)
        return;
    g_free(cap->name);
    g_free(cap);
}

static void
block_job_info_free(QemuBlockJobInfo *job)
{
    if (!job)
        return;
    g_free(job->type);
    g_free(job->device);
    g_free(job);
}

static void
job_info_free(QemuJobInfo *job)
{
    if (!job)
        return;
    g_free(job->id);
    g_free(job->type);
    g_free(job->error);
    g_free(job);
}

static void
block_node_info_free(QemuBlockNodeInfo *node)
{
    if (!node)
        return;
    g_free(node->node_name);
    g_free(node->drv);
    g_free(node->file);
    g_free(node->backing_file);
    g_free(node->backing_format);
    g_free(node);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(QemuMonitorVersion, qemu_monitor_version_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(QemuMigrationInfo, qemu_migration_info_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(QemuMigrationParams, qemu_migration_params_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(QemuMigrationCapability, migration_capability_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(QemuBlockJobInfo, block_job_info_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(QemuJobInfo, job_info_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(QemuBlockNodeInfo, block_node_info_free)

void
qemu_machine_info_free(QemuMachineInfo *m)
{
    if (!m)
        return;
    g_free(m->name);
    g_free(m->alias);
    g_free(m);
}

/* ---- parsers ---- */

static int
check_object(json_object *ret, const char *command)
{
    if (!json_object_is_type(ret, json_type_object)) {
        ho_error_report(HO_ERR_JSON, _("the reply to '%1$s' is not a JSON object"), command);
        return -1;
    }
    return 0;
}

static int
check_array(json_object *ret, const char *command)
{
    if (!json_object_is_type(ret, json_type_array)) {
        ho_error_report(HO_ERR_JSON, _("the reply to '%1$s' is not a JSON array"), command);
        return -1;
    }
    return 0;
}

/* Element i of an array reply, which must be an object. */
static json_object *
array_object_at(json_object *array, size_t i, const char *command)
{
    json_object *elem = json_object_array_get_idx(array, i);

    if (!json_object_is_type(elem, json_type_object)) {
        ho_error_report(HO_ERR_JSON,
                        _("element %1$zu of the reply to '%2$s' is not a JSON object"), i,
                        command);
        return NULL;
    }
    return elem;
}

static int
get_int(json_object *obj, const char *key, int *out)
{
    int64_t val;

    if (ho_json_get_int64(obj, key, &val) < 0)
        return -1;
    if (val < 0 || val > G_MAXINT) {
        ho_error_report(HO_ERR_JSON, _("JSON field '%1$s' is out of range"), key);
        return -1;
    }
    *out = (int)val;
    return 0;
}

/* An optional unsigned member: absent leaves *out at 0. */
static int
opt_uint64(json_object *obj, const char *key, uint64_t *out)
{
    return ho_json_opt_uint64(obj, key, out) < 0 ? -1 : 0;
}

/* An optional number: absent leaves *out untouched. */
static int
opt_double(json_object *obj, const char *key, double *out)
{
    if (!json_object_object_get_ex(obj, key, NULL))
        return 0;
    return ho_json_get_double(obj, key, out);
}

/* An optional int64 with its has_ flag. */
static int
opt_int64_flag(json_object *obj, const char *key, bool *has, int64_t *out)
{
    int rc = ho_json_opt_int64(obj, key, out);

    if (rc < 0)
        return -1;
    *has = rc > 0;
    return 0;
}

static int
opt_uint64_flag(json_object *obj, const char *key, bool *has, uint64_t *out)
{
    int rc = ho_json_opt_uint64(obj, key, out);

    if (rc < 0)
        return -1;
    *has = rc > 0;
    return 0;
}

/* An optional string, duplicated; absent leaves *out NULL. */
static int
opt_strdup(json_object *obj, const char *key, char **out)
{
    const char *s = NULL;

    if (ho_json_opt_string(obj, key, &s) < 0)
        return -1;
    *out = g_strdup(s);
    return 0;
}

static int
get_strdup(json_object *obj, const char *key, char **out)
{
    const char *s;

    if (ho_json_get_string(obj, key, &s) < 0)
        return -1;
    *out = g_strdup(s);
    return 0;
}

int
qemu_monitor_json_parse_version(json_object *ret, QemuMonitorVersion *out)
{
    QemuMonitorVersion v = {0};
    json_object *qemu;
    const char *package;

    if (check_object(ret, "query-version") < 0 ||
        ho_json_get_object(ret, "qemu", &qemu) < 0 ||
        get_int(qemu, "major", &v.major) < 0 ||
        get_int(qemu, "minor", &v.minor) < 0 ||
        get_int(qemu, "micro", &v.micro) < 0 ||
        ho_json_get_string(ret, "package", &package) < 0)
        return -1;
    v.package = g_strdup(package);
    *out = v;
    return 0;
}

int
qemu_monitor_json_parse_status(json_object *ret, QemuMonitorStatus *out)
{
    const char *status;
    bool running;

    if (check_object(ret, "query-status") < 0 ||
        ho_json_get_string(ret, "status", &status) < 0 ||
        ho_json_get_bool(ret, "running", &running) < 0)
        return -1;
    out->state = qemu_run_state_from_string(status);
    out->running = running;
    return 0;
}

/*
 * MigrationStats. QAPI has made transferred, remaining and total required
 * since they were added; the other counters arrived over the years (up to
 * precopy-bytes & co. in 7.0), so an older QEMU may lack them: 0 then.
 */
static int
parse_migration_ram(json_object *ram, QemuMigrationRam *out)
{
    QemuMigrationRam r = {0};

    if (ho_json_get_uint64(ram, "transferred", &r.transferred) < 0 ||
        ho_json_get_uint64(ram, "remaining", &r.remaining) < 0 ||
        ho_json_get_uint64(ram, "total", &r.total) < 0 ||
        opt_uint64(ram, "duplicate", &r.duplicate) < 0 ||
        opt_uint64(ram, "normal", &r.normal) < 0 ||
        opt_uint64(ram, "normal-bytes", &r.normal_bytes) < 0 ||
        opt_uint64(ram, "dirty-pages-rate", &r.dirty_pages_rate) < 0 ||
        opt_uint64(ram, "dirty-sync-count", &r.dirty_sync_count) < 0 ||
        opt_uint64(ram, "postcopy-requests", &r.postcopy_requests) < 0 ||
        opt_uint64(ram, "page-size", &r.page_size) < 0 ||
        opt_uint64(ram, "precopy-bytes", &r.precopy_bytes) < 0 ||
        opt_uint64(ram, "downtime-bytes", &r.downtime_bytes) < 0 ||
        opt_uint64(ram, "postcopy-bytes", &r.postcopy_bytes) < 0 ||
        opt_double(ram, "mbps", &r.mbps) < 0 ||
        opt_uint64(ram, "pages-per-second", &r.pages_per_second) < 0)
        return -1;
    *out = r;
    return 0;
}

int
qemu_monitor_json_parse_migration_info(json_object *ret, QemuMigrationInfo *out)
{
    QemuMigrationInfo info = {0};
    json_object *ram = NULL;
    const char *status = NULL;
    int rc;

    if (check_object(ret, "query-migrate") < 0)
        return -1;
    /* QEMU leaves "status" out (and often everything else) when no
     * migration ever ran: that is "none". */
    if (ho_json_opt_string(ret, "status", &status) < 0)
        return -1;
    info.status = status ? qemu_migration_status_from_string(status)
                         : QEMU_MIGRATION_STATUS_NONE;

    if ((rc = ho_json_opt_object(ret, "ram", &ram)) < 0)
        return -1;
    if (rc > 0) {
        if (parse_migration_ram(ram, &info.ram) < 0)
            return -1;
        info.has_ram = true;
    }
    if (opt_int64_flag(ret, "total-time", &info.has_total_time, &info.total_time) < 0 ||
        opt_int64_flag(ret, "downtime", &info.has_downtime, &info.downtime) < 0 ||
        opt_int64_flag(ret, "expected-downtime", &info.has_expected_downtime,
                       &info.expected_downtime) < 0 ||
        opt_int64_flag(ret, "setup-time", &info.has_setup_time, &info.setup_time) < 0 ||
        opt_strdup(ret, "error-desc", &info.error_desc) < 0)
        return -1;
    *out = info;
    return 0;
}

int
qemu_monitor_json_parse_migration_params(json_object *ret, QemuMigrationParams *out)
{
    QemuMigrationParams p = {0};
    const char *mode = NULL;
    int rc;

    if (check_object(ret, "query-migrate-parameters") < 0 ||
        opt_uint64_flag(ret, "max-bandwidth", &p.has_max_bandwidth, &p.max_bandwidth) < 0 ||
        opt_uint64_flag(ret, "downtime-limit", &p.has_downtime_limit, &p.downtime_limit) < 0 ||
        opt_int64_flag(ret, "multifd-channels", &p.has_multifd_channels,
                       &p.multifd_channels) < 0 ||
        opt_uint64_flag(ret, "max-postcopy-bandwidth", &p.has_max_postcopy_bandwidth,
                        &p.max_postcopy_bandwidth) < 0 ||
        (rc = ho_json_opt_string(ret, "mode", &mode)) < 0)
        return -1;
    if (rc > 0) {
        p.has_mode = true;
        p.mode = qemu_mig_mode_from_string(mode);
    }
    p.raw = json_object_get(ret);
    *out = p;
    return 0;
}

/* Parse each element of an array reply with parse_one into a GPtrArray. */
typedef void *(*ElementParseFunc)(json_object *elem);

static GPtrArray *
parse_object_array(json_object *ret, const char *what, ElementParseFunc parse_one,
                   GDestroyNotify free_func)
{
    g_autoptr(GPtrArray) list = NULL;
    size_t i, n;

    if (check_array(ret, what) < 0)
        return NULL;
    n = json_object_array_length(ret);
    list = g_ptr_array_new_full(n, free_func);
    for (i = 0; i < n; i++) {
        json_object *elem = array_object_at(ret, i, what);
        void *item;

        if (!elem || !(item = parse_one(elem)))
            return NULL;
        g_ptr_array_add(list, item);
    }
    return g_steal_pointer(&list);
}

static void *
parse_migration_cap(json_object *elem)
{
    g_autoptr(QemuMigrationCapability) cap = g_new0(QemuMigrationCapability, 1);

    if (get_strdup(elem, "capability", &cap->name) < 0 ||
        ho_json_get_bool(elem, "state", &cap->state) < 0)
        return NULL;
    return g_steal_pointer(&cap);
}

GPtrArray *
qemu_monitor_json_parse_migration_caps(json_object *ret)
{
    return parse_object_array(ret, "query-migrate-capabilities", parse_migration_cap,
                              (GDestroyNotify)migration_capability_free);
}

static void *
parse_block_job(json_object *elem)
{
    g_autoptr(QemuBlockJobInfo) job = g_new0(QemuBlockJobInfo, 1);
    const char *status = NULL;

    /* "status" arrived in QEMU 2.12; an older QEMU's jobs stay _UNKNOWN. */
    if (get_strdup(elem, "type", &job->type) < 0 ||
        get_strdup(elem, "device", &job->device) < 0 ||
        ho_json_get_uint64(elem, "len", &job->len) < 0 ||
        ho_json_get_uint64(elem, "offset", &job->offset) < 0 ||
        ho_json_get_uint64(elem, "speed", &job->speed) < 0 ||
        ho_json_get_bool(elem, "busy", &job->busy) < 0 ||
        ho_json_get_bool(elem, "paused", &job->paused) < 0 ||
        ho_json_get_bool(elem, "ready", &job->ready) < 0 ||
        ho_json_opt_string(elem, "status", &status) < 0)
        return NULL;
    job->status = status ? qemu_job_status_from_string(status) : QEMU_JOB_STATUS_UNKNOWN;
    return g_steal_pointer(&job);
}

GPtrArray *
qemu_monitor_json_parse_block_jobs(json_object *ret)
{
    return parse_object_array(ret, "query-block-jobs", parse_block_job,
                              (GDestroyNotify)block_job_info_free);
}

static void *
parse_job(json_object *elem)
{
    g_autoptr(QemuJobInfo) job = g_new0(QemuJobInfo, 1);
    const char *status;

    if (get_strdup(elem, "id", &job->id) < 0 ||
        get_strdup(elem, "type", &job->type) < 0 ||
        ho_json_get_string(elem, "status", &status) < 0 ||
        ho_json_get_int64(elem, "current-progress", &job->current_progress) < 0 ||
        ho_json_get_int64(elem, "total-progress", &job->total_progress) < 0 ||
        opt_strdup(elem, "error", &job->error) < 0)
        return NULL;
    job->status = qemu_job_status_from_string(status);
    return g_steal_pointer(&job);
}

GPtrArray *
qemu_monitor_json_parse_jobs(json_object *ret)
{
    return parse_object_array(ret, "query-jobs", parse_job, (GDestroyNotify)job_info_free);
}

static void *
parse_named_node(json_object *elem)
{
    g_autoptr(QemuBlockNodeInfo) node = g_new0(QemuBlockNodeInfo, 1);
    json_object *image = NULL;

    /* QAPI makes "node-name" optional (a node QEMU named itself may have
     * none): NULL then. */
    if (opt_strdup(elem, "node-name", &node->node_name) < 0 ||
        get_strdup(elem, "drv", &node->drv) < 0 ||
        get_strdup(elem, "file", &node->file) < 0 ||
        ho_json_get_bool(elem, "ro", &node->ro) < 0 ||
        ho_json_opt_object(elem, "image", &image) < 0)
        return NULL;
    if (image) {
        int rc;

        if ((rc = ho_json_opt_uint64(image, "virtual-size", &node->virtual_size)) < 0 ||
            opt_strdup(image, "full-backing-filename", &node->backing_file) < 0 ||
            (!node->backing_file &&
             opt_strdup(image, "backing-filename", &node->backing_file) < 0) ||
            opt_strdup(image, "backing-filename-format", &node->backing_format) < 0)
            return NULL;
        node->has_virtual_size = rc > 0;
    }
    return g_steal_pointer(&node);
}

GPtrArray *
qemu_monitor_json_parse_named_nodes(json_object *ret)
{
    return parse_object_array(ret, "query-named-block-nodes", parse_named_node,
                              (GDestroyNotify)block_node_info_free);
}

static void *
parse_machine(json_object *elem)
{
    g_autoptr(QemuMachineInfo) m = g_new0(QemuMachineInfo, 1);

    /* "is-default" and "alias" are optional in QAPI; "deprecated" came in 4.1. */
    if (get_strdup(elem, "name", &m->name) < 0 ||
        opt_strdup(elem, "alias", &m->alias) < 0 ||
        ho_json_opt_bool(elem, "is-default", &m->is_default) < 0 ||
        ho_json_opt_bool(elem, "deprecated", &m->deprecated) < 0 ||
        ho_json_get_int64(elem, "cpu-max", &m->cpu_max) < 0)
        return NULL;
    return g_steal_pointer(&m);
}

GPtrArray *
qemu_monitor_json_parse_machines(json_object *ret)
{
    return parse_object_array(ret, "query-machines", parse_machine,
                              (GDestroyNotify)qemu_machine_info_free);
}

static void *
parse_name(json_object *elem)
{
    char *name = NULL;

    if (get_strdup(elem, "name", &name) < 0)
        return NULL;
    return name;
}

static char **
parse_name_list(json_object *ret, const char *command)
{
    g_autoptr(GPtrArray) names = parse_object_array(ret, command, parse_name, g_free);

    if (!names)
        return NULL;
    g_ptr_array_add(names, NULL);
    g_ptr_array_set_free_func(names, NULL);
    return (char **)g_ptr_array_free(g_steal_pointer(&names), FALSE);
}

char **
qemu_monitor_json_parse_name_list(json_object *ret)
{
    return parse_name_list(ret, "query-commands");
}

/* ---- reply shapes and the generic adapter ---- */

/* Any callback type, stored and cast back by the shape that knows it
 * (the cast through void (*)(void) is the one C blesses). */
typedef void (*AnyFunc)(void);

/*
 * A reply shape: how to turn the "return" value into a result (NULL and a
 * reported error on failure; parse NULL means the value needs no parsing),
 * how to hand it to the typed callback, and how to free it afterwards.
 */
typedef struct {
    void *(*parse)(json_object *ret);
    void (*deliver)(QemuMonitor *mon, AnyFunc cb, void *result, json_object *ret,
                    const HoError *err, void *opaque);
    GDestroyNotify free_result;
} ReplyShape;

typedef struct {
    const ReplyShape *shape;
    AnyFunc cb;
    void *opaque;
} JsonCall;

static void
json_reply(QemuMonitor *mon, json_object *ret, const HoError *err, void *opaque)
{
    g_autofree JsonCall *call = opaque;
    const ReplyShape *shape = call->shape;
    g_autoptr(HoError) parse_err = NULL;
    void *result = NULL;

    if (!err && shape->parse) {
        result = shape->parse(ret);
        if (!result) {
            /* The completion carries its own error: the per-thread slot
             * belongs to whatever runs next on the loop. */
            parse_err = ho_error_steal();
            if (!parse_err)
                parse_err = ho_error_new(HO_ERR_INTERNAL, "%s", _("reply parser failed"));
            err = parse_err;
        }
    }
    shape->deliver(mon, call->cb, err ? NULL : result, err ? NULL : ret, err, call->opaque);
    if (result && shape->free_result)
        shape->free_result(result);
}

/* Send command with args (consumed) and an optional fd; cb may be NULL. */
static void
json_send(QemuMonitor *mon, const char *command, json_object *args, int fd,
          const ReplyShape *shape, AnyFunc cb, void *opaque)
{
    JsonCall *call;

    if (!cb) {
        (void)qemu_monitor_send(mon, command, args, fd, NULL, NULL);
        return;
    }
    call = g_new0(JsonCall, 1);
    call->shape = shape;
    call->cb = cb;
    call->opaque = opaque;
    (void)qemu_monitor_send(mon, command, args, fd, json_reply, call);
}

/* Delivery, one per callback type. */

static void
deliver_done(QemuMonitor *mon, AnyFunc cb, void *result, json_object *ret,
             const HoError *err, void *opaque)
{
    ((QemuMonitorDoneFunc)cb)(mon, err, opaque);
}

static void
deliver_json(QemuMonitor *mon, AnyFunc cb, void *result, json_object *ret,
             const HoError *err, void *opaque)
{
    ((QemuMonitorJsonFunc)cb)(mon, ret, err, opaque);
}

static void
deliver_version(QemuMonitor *mon, AnyFunc cb, void *result, json_object *ret,
                const HoError *err, void *opaque)
{
    ((QemuMonitorVersionFunc)cb)(mon, result, err, opaque);
}

static void
deliver_status(QemuMonitor *mon, AnyFunc cb, void *result, json_object *ret,
               const HoError *err, void *opaque)
{
    ((QemuMonitorStatusFunc)cb)(mon, result, err, opaque);
}

static void
deliver_migration_info(QemuMonitor *mon, AnyFunc cb, void *result, json_object *ret,
                       const HoError *err, void *opaque)
{
    ((QemuMonitorMigrationInfoFunc)cb)(mon, result, err, opaque);
}

static void
deliver_migration_params(QemuMonitor *mon, AnyFunc cb, void *result, json_object *ret,
                         const HoError *err, void *opaque)
{
    ((QemuMonitorMigrationParamsFunc)cb)(mon, result, err, opaque);
}

static void
deliver_list(QemuMonitor *mon, AnyFunc cb, void *result, json_object *ret,
             const HoError *err, void *opaque)
{
    ((QemuMonitorListFunc)cb)(mon, result, err, opaque);
}

static void
deliver_names(QemuMonitor *mon, AnyFunc cb, void *result, json_object *ret,
              const HoError *err, void *opaque)
{
    ((QemuMonitorNamesFunc)cb)(mon, result, err, opaque);
}

static void
deliver_string(QemuMonitor *mon, AnyFunc cb, void *result, json_object *ret,
               const HoError *err, void *opaque)
{
    ((QemuMonitorStringFunc)cb)(mon, err ? NULL : json_object_get_string(ret), err, opaque);
}

/* Parsers in the shape's form: a new result or NULL. */

static void *
shape_parse_version(json_object *ret)
{
    g_autoptr(QemuMonitorVersion) v = g_new0(QemuMonitorVersion, 1);

    if (qemu_monitor_json_parse_version(ret, v) < 0)
        return NULL;
    return g_steal_pointer(&v);
}

static void *
shape_parse_status(json_object *ret)
{
    g_autofree QemuMonitorStatus *st = g_new0(QemuMonitorStatus, 1);

    if (qemu_monitor_json_parse_status(ret, st) < 0)
        return NULL;
    return g_steal_pointer(&st);
}

static void *
shape_parse_migration_info(json_object *ret)
{
    g_autoptr(QemuMigrationInfo) info = g_new0(QemuMigrationInfo, 1);

    if (qemu_monitor_json_parse_migration_info(ret, info) < 0)
        return NULL;
    return g_steal_pointer(&info);
}

static void *
shape_parse_migration_params(json_object *ret)
{
    g_autoptr(QemuMigrationParams) p = g_new0(QemuMigrationParams, 1);

    if (qemu_monitor_json_parse_migration_params(ret, p) < 0)
        return NULL;
    return g_steal_pointer(&p);
}

static void *
shape_parse_string(json_object *ret)
{
    if (!json_object_is_type(ret, json_type_string)) {
        ho_error_report(HO_ERR_JSON, _("the reply to '%1$s' is not a JSON string"),
                        "human-monitor-command");
        return NULL;
    }
    /* Borrowed from ret; the shape frees nothing. */
    return (void *)json_object_get_string(ret);
}

static void *
shape_parse_commands(json_object *ret)
{
    return parse_name_list(ret, "query-commands");
}

static void *
shape_parse_events(json_object *ret)
{
    return parse_name_list(ret, "query-events");
}

static void *
shape_parse_migration_caps(json_object *ret)
{
    return qemu_monitor_json_parse_migration_caps(ret);
}

static void *
shape_parse_block_jobs(json_object *ret)
{
    return qemu_monitor_json_parse_block_jobs(ret);
}

static void *
shape_parse_jobs(json_object *ret)
{
    return qemu_monitor_json_parse_jobs(ret);
}

static void *
shape_parse_named_nodes(json_object *ret)
{
    return qemu_monitor_json_parse_named_nodes(ret);
}

static void *
shape_parse_machines(json_object *ret)
{
    return qemu_monitor_json_parse_machines(ret);
}

static void
free_strv(void *strv)
{
    g_strfreev(strv);
}

static void
free_ptr_array(void *array)
{
    g_ptr_array_unref(array);
}

static const ReplyShape shape_done = {NULL, deliver_done, NULL};
static const ReplyShape shape_json = {NULL, deliver_json, NULL};
static const ReplyShape shape_version = {shape_parse_version, deliver_version,
                                         (GDestroyNotify)qemu_monitor_version_free};
static const ReplyShape shape_status = {shape_parse_status, deliver_status, g_free};
static const ReplyShape shape_migration_info = {shape_parse_migration_info,
                                                deliver_migration_info,
                                                (GDestroyNotify)qemu_migration_info_free};
static const ReplyShape shape_migration_params = {shape_parse_migration_params,
                                                  deliver_migration_params,
                                                  (GDestroyNotify)qemu_migration_params_free};
static const ReplyShape shape_commands = {shape_parse_commands, deliver_names, free_strv};
static const ReplyShape shape_events = {shape_parse_events, deliver_names, free_strv};
static const ReplyShape shape_string = {shape_parse_string, deliver_string, NULL};
static const ReplyShape shape_migration_caps = {shape_parse_migration_caps, deliver_list,
                                                free_ptr_array};
static const ReplyShape shape_block_jobs = {shape_parse_block_jobs, deliver_list,
                                            free_ptr_array};
static const ReplyShape shape_machines = {shape_parse_machines, deliver_list, free_ptr_array};
static const ReplyShape shape_jobs = {shape_parse_jobs, deliver_list, free_ptr_array};
static const ReplyShape shape_named_nodes = {shape_parse_named_nodes, deliver_list,
                                             free_ptr_array};

/* Commands whose reply carries nothing. */
static void
send_done(QemuMonitor *mon, const char *command, json_object *args, QemuMonitorDoneFunc cb,
          void *opaque)
{
    json_send(mon, command, args, -1, &shape_done, (AnyFunc)cb, opaque);
}

/* ---- commands ---- */

void
qemu_monitor_json_query_version(QemuMonitor *mon, QemuMonitorVersionFunc cb, void *opaque)
{
    json_send(mon, "query-version", NULL, -1, &shape_version, (AnyFunc)cb, opaque);
}

void
qemu_monitor_json_query_commands(QemuMonitor *mon, QemuMonitorNamesFunc cb, void *opaque)
{
    json_send(mon, "query-commands", NULL, -1, &shape_commands, (AnyFunc)cb, opaque);
}

void
qemu_monitor_json_query_events(QemuMonitor *mon, QemuMonitorNamesFunc cb, void *opaque)
{
    json_send(mon, "query-events", NULL, -1, &shape_events, (AnyFunc)cb, opaque);
}

void
qemu_monitor_json_query_qmp_schema(QemuMonitor *mon, QemuMonitorJsonFunc cb, void *opaque)
{
    json_send(mon, "query-qmp-schema", NULL, -1, &shape_json, (AnyFunc)cb, opaque);
}

void
qemu_monitor_json_query_machines(QemuMonitor *mon, QemuMonitorJsonFunc cb, void *opaque)
{
    json_send(mon, "query-machines", NULL, -1, &shape_json, (AnyFunc)cb, opaque);
}

void
qemu_monitor_json_query_machine_list(QemuMonitor *mon, QemuMonitorListFunc cb, void *opaque)
{
    json_send(mon, "query-machines", NULL, -1, &shape_machines, (AnyFunc)cb, opaque);
}

void
qemu_monitor_json_query_status(QemuMonitor *mon, QemuMonitorStatusFunc cb, void *opaque)
{
    json_send(mon, "query-status", NULL, -1, &shape_status, (AnyFunc)cb, opaque);
}

void
qemu_monitor_json_stop(QemuMonitor *mon, QemuMonitorDoneFunc cb, void *opaque)
{
    send_done(mon, "stop", NULL, cb, opaque);
}

void
qemu_monitor_json_cont(QemuMonitor *mon, QemuMonitorDoneFunc cb, void *opaque)
{
    send_done(mon, "cont", NULL, cb, opaque);
}

void
qemu_monitor_json_quit(QemuMonitor *mon, QemuMonitorDoneFunc cb, void *opaque)
{
    send_done(mon, "quit", NULL, cb, opaque);
}

void
qemu_monitor_json_system_powerdown(QemuMonitor *mon, QemuMonitorDoneFunc cb, void *opaque)
{
    send_done(mon, "system_powerdown", NULL, cb, opaque);
}

void
qemu_monitor_json_query_migrate(QemuMonitor *mon, QemuMonitorMigrationInfoFunc cb,
                                void *opaque)
{
    json_send(mon, "query-migrate", NULL, -1, &shape_migration_info, (AnyFunc)cb, opaque);
}

void
qemu_monitor_json_query_migrate_capabilities(QemuMonitor *mon, QemuMonitorListFunc cb,
                                             void *opaque)
{
    json_send(mon, "query-migrate-capabilities", NULL, -1, &shape_migration_caps,
              (AnyFunc)cb, opaque);
}

void
qemu_monitor_json_migrate_set_capabilities(QemuMonitor *mon, const char *const *names,
                                           const bool *states, size_t n,
                                           QemuMonitorDoneFunc cb, void *opaque)
{
    json_object *args = json_object_new_object();
    json_object *caps = json_object_new_array_ext((int)n);
    size_t i;

    for (i = 0; i < n; i++) {
        json_object *cap = json_object_new_object();

        ho_json_add_string(cap, "capability", names[i]);
        ho_json_add_bool(cap, "state", states[i]);
        json_object_array_add(caps, cap);
    }
    ho_json_add(args, "capabilities", caps);
    send_done(mon, "migrate-set-capabilities", args, cb, opaque);
}

void
qemu_monitor_json_query_migrate_parameters(QemuMonitor *mon,
                                           QemuMonitorMigrationParamsFunc cb, void *opaque)
{
    json_send(mon, "query-migrate-parameters", NULL, -1, &shape_migration_params,
              (AnyFunc)cb, opaque);
}

void
qemu_monitor_json_migrate_set_parameters(QemuMonitor *mon, json_object *params,
                                         QemuMonitorDoneFunc cb, void *opaque)
{
    send_done(mon, "migrate-set-parameters", params, cb, opaque);
}

void
qemu_monitor_json_migrate(QemuMonitor *mon, const char *uri, bool resume,
                          QemuMonitorDoneFunc cb, void *opaque)
{
    json_object *args = json_object_new_object();

    ho_json_add_string(args, "uri", uri);
    if (resume)
        ho_json_add_bool(args, "resume", true);
    send_done(mon, "migrate", args, cb, opaque);
}

void
qemu_monitor_json_migrate_channels(QemuMonitor *mon, json_object *channels,
                                   QemuMonitorDoneFunc cb, void *opaque)
{
    json_object *args = json_object_new_object();

    ho_json_add(args, "channels", channels);
    send_done(mon, "migrate", args, cb, opaque);
}

void
qemu_monitor_json_migrate_incoming(QemuMonitor *mon, const char *uri,
                                   QemuMonitorDoneFunc cb, void *opaque)
{
    json_object *args = json_object_new_object();

    ho_json_add_string(args, "uri", uri);
    send_done(mon, "migrate-incoming", args, cb, opaque);
}

void
qemu_monitor_json_migrate_continue(QemuMonitor *mon, QemuMigrationStatus state,
                                   QemuMonitorDoneFunc cb, void *opaque)
{
    json_object *args = json_object_new_object();

    /* No policy here: a state QEMU does not accept is QEMU's to refuse,
     * which still completes the callback exactly once. */
    ho_json_add_string(args, "state", qemu_migration_status_to_string(state));
    send_done(mon, "migrate-continue", args, cb, opaque);
}

void
qemu_monitor_json_migrate_cancel(QemuMonitor *mon, QemuMonitorDoneFunc cb, void *opaque)
{
    send_done(mon, "migrate_cancel", NULL, cb, opaque);
}

void
qemu_monitor_json_migrate_start_postcopy(QemuMonitor *mon, QemuMonitorDoneFunc cb,
                                         void *opaque)
{
    send_done(mon, "migrate-start-postcopy", NULL, cb, opaque);
}

void
qemu_monitor_json_migrate_recover(QemuMonitor *mon, const char *uri,
                                  QemuMonitorDoneFunc cb, void *opaque)
{
    json_object *args = json_object_new_object();

    ho_json_add_string(args, "uri", uri);
    send_done(mon, "migrate-recover", args, cb, opaque);
}

void
qemu_monitor_json_migrate_pause(QemuMonitor *mon, QemuMonitorDoneFunc cb, void *opaque)
{
    send_done(mon, "migrate-pause", NULL, cb, opaque);
}

void
qemu_monitor_json_blockdev_add(QemuMonitor *mon, json_object *props,
                               QemuMonitorDoneFunc cb, void *opaque)
{
    send_done(mon, "blockdev-add", props, cb, opaque);
}

void
qemu_monitor_json_blockdev_del(QemuMonitor *mon, const char *node, QemuMonitorDoneFunc cb,
                               void *opaque)
{
    json_object *args = json_object_new_object();

    ho_json_add_string(args, "node-name", node);
    send_done(mon, "blockdev-del", args, cb, opaque);
}

void
qemu_monitor_json_blockdev_mirror(QemuMonitor *mon, const char *job_id,
                                  const char *device, const char *target,
                                  const QemuMirrorOptions *opts, QemuMonitorDoneFunc cb,
                                  void *opaque)
{
    static const QemuMirrorOptions no_opts;
    json_object *args = json_object_new_object();

    if (!opts)
        opts = &no_opts;
    if (job_id)
        ho_json_add_string(args, "job-id", job_id);
    ho_json_add_string(args, "device", device);
    ho_json_add_string(args, "target", target);
    /* "sync" is required: without it QEMU refuses the command. */
    if (opts->sync)
        ho_json_add_string(args, "sync", opts->sync);
    if (opts->has_speed)
        ho_json_add(args, "speed", json_object_new_uint64(opts->speed));
    if (opts->has_granularity)
        ho_json_add_int64(args, "granularity", opts->granularity);
    if (opts->has_buf_size)
        ho_json_add_int64(args, "buf-size", opts->buf_size);
    if (opts->copy_mode)
        ho_json_add_string(args, "copy-mode", opts->copy_mode);
    if (opts->auto_finalize_false)
        ho_json_add_bool(args, "auto-finalize", false);
    if (opts->auto_dismiss_false)
        ho_json_add_bool(args, "auto-dismiss", false);
    send_done(mon, "blockdev-mirror", args, cb, opaque);
}

void
qemu_monitor_json_block_job_cancel(QemuMonitor *mon, const char *job_id, bool force,
                                   QemuMonitorDoneFunc cb, void *opaque)
{
    json_object *args = json_object_new_object();

    ho_json_add_string(args, "device", job_id);
    if (force)
        ho_json_add_bool(args, "force", true);
    send_done(mon, "block-job-cancel", args, cb, opaque);
}

void
qemu_monitor_json_block_job_complete(QemuMonitor *mon, const char *job_id,
                                     QemuMonitorDoneFunc cb, void *opaque)
{
    json_object *args = json_object_new_object();

    ho_json_add_string(args, "device", job_id);
    send_done(mon, "block-job-complete", args, cb, opaque);
}

void
qemu_monitor_json_query_block_jobs(QemuMonitor *mon, QemuMonitorListFunc cb, void *opaque)
{
    json_send(mon, "query-block-jobs", NULL, -1, &shape_block_jobs, (AnyFunc)cb, opaque);
}

void
qemu_monitor_json_query_jobs(QemuMonitor *mon, QemuMonitorListFunc cb, void *opaque)
{
    json_send(mon, "query-jobs", NULL, -1, &shape_jobs, (AnyFunc)cb, opaque);
}

void
qemu_monitor_json_job_dismiss(QemuMonitor *mon, const char *id, QemuMonitorDoneFunc cb,
                              void *opaque)
{
    json_object *args = json_object_new_object();

    ho_json_add_string(args, "id", id);
    send_done(mon, "job-dismiss", args, cb, opaque);
}

void
qemu_monitor_json_nbd_server_start_unix(QemuMonitor *mon, const char *path,
                                        QemuMonitorDoneFunc cb, void *opaque)
{
    json_object *args = json_object_new_object();
    json_object *addr = json_object_new_object();
    json_object *data = json_object_new_object();

    ho_json_add_string(data, "path", path);
    ho_json_add_string(addr, "type", "unix");
    ho_json_add(addr, "data", data);
    ho_json_add(args, "addr", addr);
    send_done(mon, "nbd-server-start", args, cb, opaque);
}

void
qemu_monitor_json_nbd_server_start_fd(QemuMonitor *mon, const char *fdname,
                                      QemuMonitorDoneFunc cb, void *opaque)
{
    json_object *args = json_object_new_object();
    json_object *addr = json_object_new_object();
    json_object *data = json_object_new_object();

    /* A listening socket passed before with getfd under fdname. */
    ho_json_add_string(data, "str", fdname);
    ho_json_add_string(addr, "type", "fd");
    ho_json_add(addr, "data", data);
    ho_json_add(args, "addr", addr);
    send_done(mon, "nbd-server-start", args, cb, opaque);
}

void
qemu_monitor_json_nbd_server_stop(QemuMonitor *mon, QemuMonitorDoneFunc cb, void *opaque)
{
    send_done(mon, "nbd-server-stop", NULL, cb, opaque);
}

void
qemu_monitor_json_block_export_add(QemuMonitor *mon, const char *id, const char *node,
                                   const char *export_name, bool writable,
                                   QemuMonitorDoneFunc cb, void *opaque)
{
    json_object *args = json_object_new_object();

    ho_json_add_string(args, "type", "nbd");
    ho_json_add_string(args, "id", id);
    ho_json_add_string(args, "node-name", node);
    /* Without "name" QEMU exports under the node name. */
    if (export_name)
        ho_json_add_string(args, "name", export_name);
    ho_json_add_bool(args, "writable", writable);
    send_done(mon, "block-export-add", args, cb, opaque);
}

void
qemu_monitor_json_block_export_del(QemuMonitor *mon, const char *id,
                                   QemuMonitorDoneFunc cb, void *opaque)
{
    json_object *args = json_object_new_object();

    ho_json_add_string(args, "id", id);
    send_done(mon, "block-export-del", args, cb, opaque);
}

void
qemu_monitor_json_query_named_block_nodes(QemuMonitor *mon, QemuMonitorListFunc cb,
                                          void *opaque)
{
    json_object *args = json_object_new_object();

    /* flat: each node once, without the nested backing chain. */
    ho_json_add_bool(args, "flat", true);
    json_send(mon, "query-named-block-nodes", args, -1, &shape_named_nodes, (AnyFunc)cb,
              opaque);
}

void
qemu_monitor_json_getfd(QemuMonitor *mon, const char *fdname, int fd,
                        QemuMonitorDoneFunc cb, void *opaque)
{
    json_object *args = json_object_new_object();

    ho_json_add_string(args, "fdname", fdname);
    json_send(mon, "getfd", args, fd, &shape_done, (AnyFunc)cb, opaque);
}

void
qemu_monitor_json_human_command(QemuMonitor *mon, const char *cmdline,
                                QemuMonitorStringFunc cb, void *opaque)
{
    json_object *args = json_object_new_object();

    ho_json_add_string(args, "command-line", cmdline);
    json_send(mon, "human-monitor-command", args, -1, &shape_string, (AnyFunc)cb, opaque);
}
