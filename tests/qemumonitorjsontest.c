/*
 * Tests of the typed QMP layer (qemu_monitor_json.c):
 *  - the enum string tables: sizes, round trips, the saved schemas;
 *  - the reply parsers, as data-file pairs: qemumonitorjsondata/parse-*.json
 *    must parse and bad-*.json must fail; both are dumped (or the error
 *    written) and compared with the .result file beside them. Files named
 *    after a QEMU version (-7.2, -10.0) are replies captured from that real
 *    QEMU; the others are written by hand for shapes the real ones cannot
 *    show (older QEMUs, unknown values, malformed replies);
 *  - the wrappers, against the mock QMP server: commands-*.jsonl
 *    transcripts hold the exact command each wrapper must send, checked
 *    against the saved schema of that QEMU.
 */
#define HO_LOG_MODULE "tests.monitorjson"

#include <glib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ho_error.h"
#include "ho_file.h"
#include "ho_json.h"
#include "ho_log.h"
#include "qemu_mock.h"
#include "qemu_monitor.h"
#include "qemu_monitor_json.h"
#include "qemu_qapi.h"
#include "testutils.h"

#define TEST_TIMEOUT_MS 10000
#define MAX_DATA_FILE (4 * 1024 * 1024)

/* ---- enum tables ---- */

typedef struct {
    const char *name;
    int last;
    const char *(*to_string)(int val);
    int (*from_string)(const char *s);
    const char *command; /* where the enum sits in the schema */
    const char *member;
    gboolean ret;
} EnumCase;

static const char *
mig_status_to(int v)
{
    return qemu_migration_status_to_string(v);
}

static int
mig_status_from(const char *s)
{
    return qemu_migration_status_from_string(s);
}

static const char *
run_state_to(int v)
{
    return qemu_run_state_to_string(v);
}

static int
run_state_from(const char *s)
{
    return qemu_run_state_from_string(s);
}

static const char *
job_status_to(int v)
{
    return qemu_job_status_to_string(v);
}

static int
job_status_from(const char *s)
{
    return qemu_job_status_from_string(s);
}

static const char *
mig_mode_to(int v)
{
    return qemu_mig_mode_to_string(v);
}

static int
mig_mode_from(const char *s)
{
    return qemu_mig_mode_from_string(s);
}

static const EnumCase enum_cases[] = {
    {"MigrationStatus", QEMU_MIGRATION_STATUS_LAST, mig_status_to, mig_status_from,
     "query-migrate", "status", TRUE},
    {"RunState", QEMU_RUN_STATE_LAST, run_state_to, run_state_from, "query-status", "status",
     TRUE},
    {"JobStatus", QEMU_JOB_STATUS_LAST, job_status_to, job_status_from, "query-jobs", "status",
     TRUE},
    {"MigMode", QEMU_MIG_MODE_LAST, mig_mode_to, mig_mode_from, "migrate-set-parameters", "mode",
     FALSE},
};

static void
test_enum_counts(void)
{
    /* A new member must be added on purpose: bump these with the table. */
    g_assert_cmpint(QEMU_MIGRATION_STATUS_LAST, ==, 16);
    g_assert_cmpint(QEMU_RUN_STATE_LAST, ==, 17);
    g_assert_cmpint(QEMU_JOB_STATUS_LAST, ==, 12);
    g_assert_cmpint(QEMU_MIG_MODE_LAST, ==, 4);
    /* The _UNKNOWN member is 0 in every enum: a zeroed struct is "unknown". */
    g_assert_cmpint(QEMU_MIGRATION_STATUS_UNKNOWN, ==, 0);
    g_assert_cmpint(QEMU_RUN_STATE_UNKNOWN, ==, 0);
    g_assert_cmpint(QEMU_JOB_STATUS_UNKNOWN, ==, 0);
    g_assert_cmpint(QEMU_MIG_MODE_UNKNOWN, ==, 0);
}

static void
test_enum_round_trip(void)
{
    size_t c;

    for (c = 0; c < G_N_ELEMENTS(enum_cases); c++) {
        const EnumCase *ec = &enum_cases[c];
        g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
        int i;

        for (i = 1; i < ec->last; i++) {
            const char *s = ec->to_string(i);

            g_assert_nonnull(s);
            g_assert_cmpstr(s, !=, "unknown");
            g_assert_false(g_hash_table_contains(seen, s));
            g_hash_table_add(seen, (char *)s);
            g_assert_cmpint(ec->from_string(s), ==, i);
        }
        g_assert_cmpstr(ec->to_string(0), ==, "unknown");
        g_assert_cmpstr(ec->to_string(ec->last), ==, "unknown");
        g_assert_cmpstr(ec->to_string(-1), ==, "unknown");
        g_assert_cmpint(ec->from_string(NULL), ==, 0);
    }
    /* Spot checks of the exact QMP spellings. */
    g_assert_cmpstr(qemu_migration_status_to_string(QEMU_MIGRATION_STATUS_PRE_SWITCHOVER), ==,
                    "pre-switchover");
    g_assert_cmpstr(qemu_migration_status_to_string(QEMU_MIGRATION_STATUS_WAIT_UNPLUG), ==,
                    "wait-unplug");
    g_assert_cmpint(qemu_migration_status_from_string("postcopy-recover-setup"), ==,
                    QEMU_MIGRATION_STATUS_POSTCOPY_RECOVER_SETUP);
    g_assert_cmpstr(qemu_run_state_to_string(QEMU_RUN_STATE_FINISH_MIGRATE), ==,
                    "finish-migrate");
    g_assert_cmpstr(qemu_job_status_to_string(QEMU_JOB_STATUS_NULL), ==, "null");
    g_assert_cmpint(qemu_mig_mode_from_string("cpr-transfer"), ==, QEMU_MIG_MODE_CPR_TRANSFER);
}

/* Unknown enum values in the data files warn by design: keep the output
 * quiet, unless HANDOVER_LOG_LEVEL asks otherwise (ho_log_init applies it). */
static void
quiet_logs(void)
{
    ho_log_set_level(HO_LOG_ERROR);
    ho_log_init();
}

static size_t
count_occurrences(const char *haystack, const char *needle)
{
    size_t n = 0;
    const char *p = haystack;

    while ((p = strstr(p, needle))) {
        n++;
        p += strlen(needle);
    }
    return n;
}

/* A name no other test uses, so this test sees its first warning. */
#define NAME "x-warn-once-test"

static void
test_enum_unknown_warns_once(void)
{
    g_autofree char *dir = test_make_tmpdir("monjson-log");
    g_autofree char *path = g_build_filename(dir, "log", NULL);
    g_autofree char *log = NULL;
    size_t len;
    int i;

    g_assert_cmpint(ho_log_set_output(path), ==, 0);
    ho_log_set_level(HO_LOG_WARN);
    for (i = 0; i < 3; i++) {
        g_assert_cmpint(qemu_migration_status_from_string(NAME), ==,
                        QEMU_MIGRATION_STATUS_UNKNOWN);
        g_assert_cmpint(qemu_run_state_from_string(NAME), ==, QEMU_RUN_STATE_UNKNOWN);
        g_assert_cmpint(qemu_job_status_from_string(NAME), ==, QEMU_JOB_STATUS_UNKNOWN);
        g_assert_cmpint(qemu_mig_mode_from_string(NAME), ==, QEMU_MIG_MODE_UNKNOWN);
    }
    /* The _UNKNOWN member's own name is not a QMP value either. */
    g_assert_cmpint(qemu_migration_status_from_string("unknown"), ==,
                    QEMU_MIGRATION_STATUS_UNKNOWN);
    g_assert_cmpint(ho_log_set_output(NULL), ==, 0);
    quiet_logs();

    g_assert_cmpint(ho_file_read_all(path, 1024 * 1024, &log, &len), ==, 0);
    g_assert_cmpuint(count_occurrences(log, "unknown MigrationStatus value '" NAME "' from QEMU"),
                     ==, 1);
    g_assert_cmpuint(count_occurrences(log, "unknown RunState value '" NAME "' from QEMU"), ==, 1);
    g_assert_cmpuint(count_occurrences(log, "unknown JobStatus value '" NAME "' from QEMU"), ==,
                     1);
    g_assert_cmpuint(count_occurrences(log, "unknown MigMode value '" NAME "' from QEMU"), ==, 1);
    g_assert_cmpuint(count_occurrences(log, "unknown MigrationStatus value 'unknown' from QEMU"),
                     ==, 1);
}
#undef NAME

/* Each table must be exactly the union of the enum's members in the saved
 * schemas of the QEMUs this project supports. */
static void
test_enum_schema(void)
{
    static const char *const schemas[] = {"qemu-7.2", "qemu-10.0"};
    size_t c, s;

    for (c = 0; c < G_N_ELEMENTS(enum_cases); c++) {
        const EnumCase *ec = &enum_cases[c];
        g_autoptr(GHashTable) from_schema = g_hash_table_new_full(g_str_hash, g_str_equal,
                                                                  g_free, NULL);
        g_autoptr(GHashTable) from_table = g_hash_table_new(g_str_hash, g_str_equal);
        GHashTableIter iter;
        gpointer key;
        int i;

        for (s = 0; s < G_N_ELEMENTS(schemas); s++) {
            g_autofree char *rel = g_strdup_printf("qemumonitorjsondata/schema/%s.json",
                                                   schemas[s]);
            g_autofree char *path = test_data_path(rel);
            g_autoptr(QemuQapi) qapi = qemu_qapi_load(path);
            g_auto(GStrv) members = NULL;
            char **m;

            if (!qapi)
                g_error("cannot load %s: %s", path, ho_error_last_message());
            members = qemu_qapi_enum_members(qapi, ec->command, ec->member, ec->ret);
            /* MigMode is new in 8.2: 7.2 has none. */
            if (!members && g_str_equal(ec->name, "MigMode") &&
                g_str_equal(schemas[s], "qemu-7.2"))
                continue;
            if (!members)
                g_error("%s: no %s enum at %s.%s", schemas[s], ec->name, ec->command,
                        ec->member);
            for (m = members; *m; m++)
                g_hash_table_add(from_schema, g_strdup(*m));
        }
        for (i = 1; i < ec->last; i++)
            g_hash_table_add(from_table, (char *)ec->to_string(i));

        g_hash_table_iter_init(&iter, from_schema);
        while (g_hash_table_iter_next(&iter, &key, NULL)) {
            if (!g_hash_table_contains(from_table, key))
                g_error("%s member '%s' of the schemas is missing from the table", ec->name,
                        (char *)key);
        }
        g_hash_table_iter_init(&iter, from_table);
        while (g_hash_table_iter_next(&iter, &key, NULL)) {
            if (!g_hash_table_contains(from_schema, key))
                g_error("%s member '%s' of the table is in neither schema", ec->name,
                        (char *)key);
        }
        g_assert_cmpuint(g_hash_table_size(from_table), ==, ec->last - 1);
    }
}

/* ---- parser data files ---- */

static const char *
yesno(bool b)
{
    return b ? "true" : "false";
}

static void
dump_opt_int64(GString *out, const char *name, bool has, int64_t val)
{
    if (has)
        g_string_append_printf(out, "%s: %" G_GINT64_FORMAT "\n", name, val);
    else
        g_string_append_printf(out, "%s: -\n", name);
}

static char *
dump_version(json_object *ret)
{
    QemuMonitorVersion *v = g_new0(QemuMonitorVersion, 1);
    char *text = NULL;

    if (qemu_monitor_json_parse_version(ret, v) == 0)
        text = g_strdup_printf("qemu: %d.%d.%d\npackage: %s\n", v->major, v->minor, v->micro,
                               v->package);
    qemu_monitor_version_free(v);
    return text;
}

static char *
dump_status(json_object *ret)
{
    QemuMonitorStatus st = {0};

    if (qemu_monitor_json_parse_status(ret, &st) < 0)
        return NULL;
    return g_strdup_printf("state: %s\nrunning: %s\n", qemu_run_state_to_string(st.state),
                           yesno(st.running));
}

static char *
dump_migration_info(json_object *ret)
{
    QemuMigrationInfo *info = g_new0(QemuMigrationInfo, 1);
    GString *out;
    char num[G_ASCII_DTOSTR_BUF_SIZE];

    if (qemu_monitor_json_parse_migration_info(ret, info) < 0) {
        qemu_migration_info_free(info);
        return NULL;
    }
    out = g_string_new(NULL);
    g_string_append_printf(out, "status: %s\n", qemu_migration_status_to_string(info->status));
    dump_opt_int64(out, "total-time", info->has_total_time, info->total_time);
    dump_opt_int64(out, "downtime", info->has_downtime, info->downtime);
    dump_opt_int64(out, "expected-downtime", info->has_expected_downtime,
                   info->expected_downtime);
    dump_opt_int64(out, "setup-time", info->has_setup_time, info->setup_time);
    g_string_append_printf(out, "error-desc: %s\n", info->error_desc ? info->error_desc : "-");
    if (info->has_ram) {
        const QemuMigrationRam *r = &info->ram;

        g_string_append_printf(out,
                               "ram.transferred: %" G_GUINT64_FORMAT "\n"
                               "ram.remaining: %" G_GUINT64_FORMAT "\n"
                               "ram.total: %" G_GUINT64_FORMAT "\n"
                               "ram.duplicate: %" G_GUINT64_FORMAT "\n"
                               "ram.normal: %" G_GUINT64_FORMAT "\n"
                               "ram.normal-bytes: %" G_GUINT64_FORMAT "\n"
                               "ram.dirty-pages-rate: %" G_GUINT64_FORMAT "\n"
                               "ram.dirty-sync-count: %" G_GUINT64_FORMAT "\n"
                               "ram.postcopy-requests: %" G_GUINT64_FORMAT "\n"
                               "ram.page-size: %" G_GUINT64_FORMAT "\n"
                               "ram.precopy-bytes: %" G_GUINT64_FORMAT "\n"
                               "ram.downtime-bytes: %" G_GUINT64_FORMAT "\n"
                               "ram.postcopy-bytes: %" G_GUINT64_FORMAT "\n"
                               "ram.pages-per-second: %" G_GUINT64_FORMAT "\n",
                               r->transferred, r->remaining, r->total, r->duplicate, r->normal,
                               r->normal_bytes, r->dirty_pages_rate, r->dirty_sync_count,
                               r->postcopy_requests, r->page_size, r->precopy_bytes,
                               r->downtime_bytes, r->postcopy_bytes, r->pages_per_second);
        g_string_append_printf(out, "ram.mbps: %s\n",
                               g_ascii_formatd(num, sizeof(num), "%.6f", r->mbps));
    } else {
        g_string_append(out, "ram: -\n");
    }
    qemu_migration_info_free(info);
    return g_string_free(out, FALSE);
}

static void
dump_opt_uint64(GString *out, const char *name, bool has, uint64_t val)
{
    if (has)
        g_string_append_printf(out, "%s: %" G_GUINT64_FORMAT "\n", name, val);
    else
        g_string_append_printf(out, "%s: -\n", name);
}

static char *
dump_migration_params(json_object *ret)
{
    QemuMigrationParams *p = g_new0(QemuMigrationParams, 1);
    GString *out;

    if (qemu_monitor_json_parse_migration_params(ret, p) < 0) {
        qemu_migration_params_free(p);
        return NULL;
    }
    out = g_string_new(NULL);
    dump_opt_uint64(out, "max-bandwidth", p->has_max_bandwidth, p->max_bandwidth);
    dump_opt_uint64(out, "downtime-limit", p->has_downtime_limit, p->downtime_limit);
    dump_opt_int64(out, "multifd-channels", p->has_multifd_channels, p->multifd_channels);
    dump_opt_uint64(out, "max-postcopy-bandwidth", p->has_max_postcopy_bandwidth,
                    p->max_postcopy_bandwidth);
    g_string_append_printf(out, "mode: %s\n",
                           p->has_mode ? qemu_mig_mode_to_string(p->mode) : "-");
    g_assert_true(p->raw == ret);
    g_string_append_printf(out, "raw: %d members\n", json_object_object_length(p->raw));
    qemu_migration_params_free(p);
    return g_string_free(out, FALSE);
}

static char *
dump_migration_caps(json_object *ret)
{
    g_autoptr(GPtrArray) list = qemu_monitor_json_parse_migration_caps(ret);
    GString *out;
    guint i;

    if (!list)
        return NULL;
    out = g_string_new(NULL);
    for (i = 0; i < list->len; i++) {
        const QemuMigrationCapability *cap = g_ptr_array_index(list, i);

        g_string_append_printf(out, "%s: %s\n", cap->name, yesno(cap->state));
    }
    return g_string_free(out, FALSE);
}

static char *
dump_block_jobs(json_object *ret)
{
    g_autoptr(GPtrArray) list = qemu_monitor_json_parse_block_jobs(ret);
    GString *out;
    guint i;

    if (!list)
        return NULL;
    out = g_string_new(NULL);
    g_string_append_printf(out, "jobs: %u\n", list->len);
    for (i = 0; i < list->len; i++) {
        const QemuBlockJobInfo *j = g_ptr_array_index(list, i);

        g_string_append_printf(out,
                               "[%u] type=%s device=%s len=%" G_GUINT64_FORMAT
                               " offset=%" G_GUINT64_FORMAT " speed=%" G_GUINT64_FORMAT
                               " busy=%s paused=%s ready=%s status=%s\n",
                               i, j->type, j->device, j->len, j->offset, j->speed,
                               yesno(j->busy), yesno(j->paused), yesno(j->ready),
                               qemu_job_status_to_string(j->status));
    }
    return g_string_free(out, FALSE);
}

static char *
dump_jobs(json_object *ret)
{
    g_autoptr(GPtrArray) list = qemu_monitor_json_parse_jobs(ret);
    GString *out;
    guint i;

    if (!list)
        return NULL;
    out = g_string_new(NULL);
    g_string_append_printf(out, "jobs: %u\n", list->len);
    for (i = 0; i < list->len; i++) {
        const QemuJobInfo *j = g_ptr_array_index(list, i);

        g_string_append_printf(out,
                               "[%u] id=%s type=%s status=%s current-progress=%" G_GINT64_FORMAT
                               " total-progress=%" G_GINT64_FORMAT " error=%s\n",
                               i, j->id, j->type, qemu_job_status_to_string(j->status),
                               j->current_progress, j->total_progress,
                               j->error ? j->error : "-");
    }
    return g_string_free(out, FALSE);
}

static char *
dump_named_nodes(json_object *ret)
{
    g_autoptr(GPtrArray) list = qemu_monitor_json_parse_named_nodes(ret);
    GString *out;
    guint i;

    if (!list)
        return NULL;
    out = g_string_new(NULL);
    g_string_append_printf(out, "nodes: %u\n", list->len);
    for (i = 0; i < list->len; i++) {
        const QemuBlockNodeInfo *n = g_ptr_array_index(list, i);

        g_string_append_printf(out, "[%u] node-name=%s drv=%s ro=%s file=%s\n", i,
                               n->node_name ? n->node_name : "-", n->drv, yesno(n->ro),
                               n->file);
        if (n->has_virtual_size)
            g_string_append_printf(out, "    virtual-size=%" G_GUINT64_FORMAT "\n",
                                   n->virtual_size);
        if (n->backing_file)
            g_string_append_printf(out, "    backing=%s format=%s\n", n->backing_file,
                                   n->backing_format ? n->backing_format : "-");
    }
    return g_string_free(out, FALSE);
}

static char *
dump_machines(json_object *ret)
{
    g_autoptr(GPtrArray) list = qemu_monitor_json_parse_machines(ret);
    GString *out;
    guint i;

    if (!list)
        return NULL;
    out = g_string_new(NULL);
    g_string_append_printf(out, "machines: %u\n", list->len);
    for (i = 0; i < list->len; i++) {
        const QemuMachineInfo *m = g_ptr_array_index(list, i);

        g_string_append_printf(out,
                               "[%u] name=%s alias=%s default=%s deprecated=%s cpu-max=%"
                               G_GINT64_FORMAT "\n",
                               i, m->name, m->alias ? m->alias : "-", yesno(m->is_default),
                               yesno(m->deprecated), m->cpu_max);
    }
    return g_string_free(out, FALSE);
}

static char *
dump_name_list(json_object *ret)
{
    g_auto(GStrv) names = qemu_monitor_json_parse_name_list(ret);
    GString *out;
    char **p;

    if (!names)
        return NULL;
    out = g_string_new(NULL);
    g_string_append_printf(out, "names: %u\n", g_strv_length(names));
    for (p = names; *p; p++)
        g_string_append_printf(out, "%s\n", *p);
    return g_string_free(out, FALSE);
}

/* Which parser a data file exercises: the longest command name its name
 * starts with (after "parse-" or "bad-"). */
static const struct {
    const char *command;
    char *(*dump)(json_object *ret);
} parsers[] = {
    {"query-version", dump_version},
    {"query-status", dump_status},
    {"query-migrate", dump_migration_info},
    {"query-migrate-parameters", dump_migration_params},
    {"query-migrate-capabilities", dump_migration_caps},
    {"query-block-jobs", dump_block_jobs},
    {"query-jobs", dump_jobs},
    {"query-named-block-nodes", dump_named_nodes},
    {"query-commands", dump_name_list},
    {"query-machines", dump_machines},
};

static int
find_parser(const char *stem)
{
    size_t i;
    int best = -1;
    size_t best_len = 0;

    for (i = 0; i < G_N_ELEMENTS(parsers); i++) {
        size_t len = strlen(parsers[i].command);

        if (g_str_has_prefix(stem, parsers[i].command) && stem[len] == '-' && len > best_len) {
            best = (int)i;
            best_len = len;
        }
    }
    return best;
}

/* The parser's output, or "error: <code>: <message>" when it failed. */
static char *
run_parser(int parser, json_object *ret, bool *ok)
{
    char *text;

    ho_error_reset();
    text = parsers[parser].dump(ret);
    *ok = text != NULL;
    if (!text) {
        const HoError *err = ho_error_last();

        g_assert_nonnull(err);
        text = g_strdup_printf("error: %s: %s\n", ho_error_code_name(err->code), err->message);
    }
    return text;
}

static void
test_data_file(gconstpointer data)
{
    const char *name = data; /* "parse-query-migrate-active-7.2.json" */
    bool expect_ok = g_str_has_prefix(name, "parse-");
    g_autofree char *stem = g_strndup(name, strlen(name) - strlen(".json"));
    g_autofree char *rel = g_strdup_printf("qemumonitorjsondata/%s", name);
    g_autofree char *rel_result = g_strdup_printf("qemumonitorjsondata/%s.result", stem);
    g_autofree char *path = test_data_path(rel);
    g_autofree char *result_path = test_data_path(rel_result);
    g_autofree char *text = NULL;
    g_autofree char *actual = NULL;
    g_autoptr(json_object) ret = NULL;
    size_t len;
    bool ok;
    int parser = find_parser(stem + strlen(expect_ok ? "parse-" : "bad-"));

    if (parser < 0)
        g_error("%s: no parser matches the file name", name);
    if (ho_file_read_all(path, MAX_DATA_FILE, &text, &len) < 0)
        g_error("%s", ho_error_last_message());
    if (!(ret = ho_json_parse(text, len)))
        g_error("%s: %s", name, ho_error_last_message());

    actual = run_parser(parser, ret, &ok);
    if (ok != expect_ok)
        g_error("%s: expected %s, got:\n%s", name, expect_ok ? "success" : "failure", actual);
    g_assert_cmpint(test_compare_to_file(actual, result_path), ==, 0);
}

static int
compare_names(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Every parser has files of both kinds, and every data file a parser.
 * names keeps the file names alive while the tests run. */
static void
add_data_file_tests(GPtrArray *names)
{
    g_autofree char *dir_path = test_data_path("qemumonitorjsondata");
    g_autoptr(GError) gerr = NULL;
    g_autoptr(GDir) dir = g_dir_open(dir_path, 0, &gerr);
    guint first = names->len;
    guint good[G_N_ELEMENTS(parsers)] = {0};
    guint bad[G_N_ELEMENTS(parsers)] = {0};
    const char *entry;
    guint i;

    if (!dir)
        g_error("%s", gerr->message);
    while ((entry = g_dir_read_name(dir))) {
        if (g_str_has_suffix(entry, ".json") &&
            (g_str_has_prefix(entry, "parse-") || g_str_has_prefix(entry, "bad-")))
            g_ptr_array_add(names, g_strdup(entry));
    }
    g_ptr_array_sort(names, compare_names);
    for (i = first; i < names->len; i++) {
        const char *name = g_ptr_array_index(names, i);
        bool is_good = g_str_has_prefix(name, "parse-");
        g_autofree char *stem = g_strndup(name, strlen(name) - strlen(".json"));
        int parser = find_parser(stem + strlen(is_good ? "parse-" : "bad-"));
        g_autofree char *test_path = g_strdup_printf("/monitor-json/data/%s", stem);

        if (parser < 0)
            g_error("%s: no parser matches the file name", name);
        if (is_good)
            good[parser]++;
        else
            bad[parser]++;
        g_test_add_data_func(test_path, name, test_data_file);
    }
    for (i = 0; i < G_N_ELEMENTS(parsers); i++) {
        if (!good[i] || !bad[i])
            g_error("parser for '%s' lacks parse-/bad- data files", parsers[i].command);
    }
}

/* ---- wrappers against the mock ---- */

/*
 * Each wrapper's callback appends one line to the fixture's log: the
 * command's label and what the callback got. The whole log is compared
 * with the transcript's .result file, so the arguments (checked by the
 * mock), the results and the errors are all pinned down.
 */
typedef struct {
    GMainContext *ctx;
    QemuMock *mock;
    QemuMonitor *mon;
    guint pending;
    bool closed;
    GString *log;
} Fixture;

typedef struct {
    Fixture *f;
    char *label;
} Call;

static Call *
call_new(Fixture *f, const char *label)
{
    Call *call = g_new0(Call, 1);

    call->f = f;
    call->label = g_strdup(label);
    f->pending++;
    return call;
}

/* Log the callback's outcome and free the call; true when err is NULL. */
static bool
call_finish(Call *call, const HoError *err, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

static bool
call_finish(Call *call, const HoError *err, const char *fmt, ...)
{
    Fixture *f = call->f;

    g_string_append_printf(f->log, "%s: ", call->label);
    if (err) {
        g_string_append_printf(f->log, "error %s", ho_error_code_name(err->code));
        if (err->qmp_class)
            g_string_append_printf(f->log, " (%s)", err->qmp_class);
        g_string_append_printf(f->log, ": %s", err->message);
    } else if (fmt) {
        va_list ap;

        va_start(ap, fmt);
        g_string_append_vprintf(f->log, fmt, ap);
        va_end(ap);
    } else {
        g_string_append(f->log, "ok");
    }
    g_string_append_c(f->log, '\n');
    g_assert_cmpuint(f->pending, >, 0);
    f->pending--;
    g_free(call->label);
    g_free(call);
    return err == NULL;
}

static void
done_cb(QemuMonitor *mon, const HoError *err, void *opaque)
{
    call_finish(opaque, err, NULL);
}

static void
json_cb(QemuMonitor *mon, json_object *ret, const HoError *err, void *opaque)
{
    g_autofree char *text = NULL;

    if (err) {
        g_assert_null(ret);
        call_finish(opaque, err, NULL);
        return;
    }
    text = ho_json_to_string(ret);
    call_finish(opaque, NULL, "%s", text);
}

static void
version_cb(QemuMonitor *mon, const QemuMonitorVersion *v, const HoError *err, void *opaque)
{
    if (err) {
        g_assert_null(v);
        call_finish(opaque, err, NULL);
        return;
    }
    call_finish(opaque, NULL, "%d.%d.%d '%s'", v->major, v->minor, v->micro, v->package);
}

static void
status_cb(QemuMonitor *mon, const QemuMonitorStatus *st, const HoError *err, void *opaque)
{
    if (err) {
        g_assert_null(st);
        call_finish(opaque, err, NULL);
        return;
    }
    call_finish(opaque, NULL, "%s running=%s", qemu_run_state_to_string(st->state),
                yesno(st->running));
}

static void
migration_info_cb(QemuMonitor *mon, const QemuMigrationInfo *info, const HoError *err,
                  void *opaque)
{
    if (err) {
        g_assert_null(info);
        call_finish(opaque, err, NULL);
        return;
    }
    call_finish(opaque, NULL,
                "%s ram=%s transferred=%" G_GUINT64_FORMAT " total-time=%" G_GINT64_FORMAT,
                qemu_migration_status_to_string(info->status), yesno(info->has_ram),
                info->ram.transferred, info->total_time);
}

static void
migration_params_cb(QemuMonitor *mon, const QemuMigrationParams *p, const HoError *err,
                    void *opaque)
{
    if (err) {
        g_assert_null(p);
        call_finish(opaque, err, NULL);
        return;
    }
    call_finish(opaque, NULL, "max-bandwidth=%" G_GUINT64_FORMAT " downtime-limit=%"
                G_GUINT64_FORMAT " mode=%s members=%d", p->max_bandwidth, p->downtime_limit,
                p->has_mode ? qemu_mig_mode_to_string(p->mode) : "-",
                json_object_object_length(p->raw));
}

static void
names_cb(QemuMonitor *mon, char **names, const HoError *err, void *opaque)
{
    g_autofree char *joined = NULL;

    if (err) {
        g_assert_null(names);
        call_finish(opaque, err, NULL);
        return;
    }
    joined = g_strjoinv(",", names);
    call_finish(opaque, NULL, "%s", joined);
}

static void
string_cb(QemuMonitor *mon, const char *str, const HoError *err, void *opaque)
{
    g_autofree char *escaped = NULL;

    if (err) {
        g_assert_null(str);
        call_finish(opaque, err, NULL);
        return;
    }
    escaped = g_strescape(str, NULL);
    call_finish(opaque, NULL, "\"%s\"", escaped);
}

static void
migration_caps_cb(QemuMonitor *mon, GPtrArray *list, const HoError *err, void *opaque)
{
    g_autoptr(GString) text = g_string_new(NULL);
    guint i;

    if (err) {
        g_assert_null(list);
        call_finish(opaque, err, NULL);
        return;
    }
    for (i = 0; i < list->len; i++) {
        const QemuMigrationCapability *cap = g_ptr_array_index(list, i);

        g_string_append_printf(text, "%s%s=%s", i ? " " : "", cap->name, yesno(cap->state));
    }
    call_finish(opaque, NULL, "%s", text->str);
}

static void
block_jobs_cb(QemuMonitor *mon, GPtrArray *list, const HoError *err, void *opaque)
{
    g_autoptr(GString) text = g_string_new(NULL);
    guint i;

    if (err) {
        g_assert_null(list);
        call_finish(opaque, err, NULL);
        return;
    }
    g_string_append_printf(text, "%u job(s)", list->len);
    for (i = 0; i < list->len; i++) {
        const QemuBlockJobInfo *j = g_ptr_array_index(list, i);

        g_string_append_printf(text, " %s:%s:%s:ready=%s", j->device, j->type,
                               qemu_job_status_to_string(j->status), yesno(j->ready));
    }
    call_finish(opaque, NULL, "%s", text->str);
}

static void
jobs_cb(QemuMonitor *mon, GPtrArray *list, const HoError *err, void *opaque)
{
    g_autoptr(GString) text = g_string_new(NULL);
    guint i;

    if (err) {
        g_assert_null(list);
        call_finish(opaque, err, NULL);
        return;
    }
    g_string_append_printf(text, "%u job(s)", list->len);
    for (i = 0; i < list->len; i++) {
        const QemuJobInfo *j = g_ptr_array_index(list, i);

        g_string_append_printf(text, " %s:%s:%s", j->id, j->type,
                               qemu_job_status_to_string(j->status));
    }
    call_finish(opaque, NULL, "%s", text->str);
}

static void
named_nodes_cb(QemuMonitor *mon, GPtrArray *list, const HoError *err, void *opaque)
{
    g_autoptr(GString) text = g_string_new(NULL);
    guint i;

    if (err) {
        g_assert_null(list);
        call_finish(opaque, err, NULL);
        return;
    }
    g_string_append_printf(text, "%u node(s)", list->len);
    for (i = 0; i < list->len; i++) {
        const QemuBlockNodeInfo *n = g_ptr_array_index(list, i);

        g_string_append_printf(text, " %s:%s", n->node_name ? n->node_name : "-", n->drv);
    }
    call_finish(opaque, NULL, "%s", text->str);
}

static void
machines_cb(QemuMonitor *mon, GPtrArray *list, const HoError *err, void *opaque)
{
    g_autoptr(GString) text = g_string_new(NULL);
    guint i;

    if (err) {
        g_assert_null(list);
        call_finish(opaque, err, NULL);
        return;
    }
    g_string_append_printf(text, "%u machine(s)", list->len);
    for (i = 0; i < list->len; i++) {
        const QemuMachineInfo *m = g_ptr_array_index(list, i);

        g_string_append_printf(text, " %s:%s%s", m->name, m->alias ? m->alias : "-",
                               m->is_default ? ":default" : "");
    }
    call_finish(opaque, NULL, "%s", text->str);
}

static void
fixture_closed(QemuMonitor *mon, const HoError *err, void *opaque)
{
    Fixture *f = opaque;

    g_assert_nonnull(err);
    f->closed = true;
}

static const QemuMonitorCallbacks fixture_callbacks = {
    .closed = fixture_closed,
};

static void
fixture_setup(Fixture *f, const char *transcript)
{
    memset(f, 0, sizeof(*f));
    f->ctx = g_main_context_new();
    f->log = g_string_new(NULL);
    if (!(f->mock = qemu_mock_new(transcript, f->ctx)))
        g_error("cannot load %s: %s", transcript, ho_error_last_message());
    f->mon = qemu_monitor_open_unix(qemu_mock_socket_path(f->mock, "src"), "src", f->ctx,
                                    &fixture_callbacks, f);
    if (!f->mon)
        g_error("cannot connect to the mock: %s", ho_error_last_message());
}

static bool
fixture_idle(Fixture *f)
{
    return f->pending == 0;
}

/* Play the transcript to its end, wait for every callback, compare the
 * log with the transcript's .result. */
static void
fixture_finish(Fixture *f, const char *transcript, bool expect_close)
{
    g_autofree char *stem = g_strndup(transcript, strlen(transcript) - strlen(".jsonl"));
    g_autofree char *rel = g_strdup_printf("qemumonitorjsondata/%s.result", stem);
    g_autofree char *result_path = test_data_path(rel);
    gint64 deadline = g_get_monotonic_time() + TEST_TIMEOUT_MS * 1000;

    if (qemu_mock_run(f->mock, TEST_TIMEOUT_MS) < 0)
        g_error("%s: %s", transcript, ho_error_last_message());
    while (!fixture_idle(f) || (expect_close && !f->closed)) {
        if (g_get_monotonic_time() > deadline)
            g_error("%s: %u callback(s) never ran", transcript, f->pending);
        g_main_context_iteration(f->ctx, TRUE);
    }
    g_assert_cmpint(test_compare_to_file(f->log->str, result_path), ==, 0);

    qemu_monitor_close(f->mon);
    g_clear_pointer(&f->mon, qemu_monitor_unref);
    g_clear_pointer(&f->mock, qemu_mock_free);
    /* Let sources of the closed connections go before the context. */
    while (g_main_context_iteration(f->ctx, FALSE))
        ;
    g_main_context_unref(f->ctx);
    g_string_free(f->log, TRUE);
}

/* What commands-7.2 and commands-10.0 share: every wrapper once, in the
 * transcripts' order. */
static void
issue_common_commands(Fixture *f)
{
    QemuMonitor *mon = f->mon;
    static const char *const cap_names[] = {"events", "pause-before-switchover",
                                            "postcopy-ram"};
    static const bool cap_states[] = {true, true, false};
    const QemuMirrorOptions full = {
        .sync = "full",
        .has_speed = true,
        .speed = 104857600,
        .has_granularity = true,
        .granularity = 65536,
        .has_buf_size = true,
        .buf_size = 16777216,
        .copy_mode = "write-blocking",
        .auto_finalize_false = true,
        .auto_dismiss_false = true,
    };
    const QemuMirrorOptions top = {.sync = "top"};
    json_object *params = json_object_new_object();
    json_object *nbd = json_object_new_object();
    json_object *server = json_object_new_object();
    int fds[2];

    qemu_monitor_json_query_version(mon, version_cb, call_new(f, "query-version"));
    qemu_monitor_json_query_commands(mon, names_cb, call_new(f, "query-commands"));
    qemu_monitor_json_query_qmp_schema(mon, json_cb, call_new(f, "query-qmp-schema"));
    qemu_monitor_json_query_machines(mon, json_cb, call_new(f, "query-machines"));
    qemu_monitor_json_query_status(mon, status_cb, call_new(f, "query-status"));
    qemu_monitor_json_stop(mon, done_cb, call_new(f, "stop"));
    qemu_monitor_json_cont(mon, done_cb, call_new(f, "cont"));
    qemu_monitor_json_query_migrate(mon, migration_info_cb, call_new(f, "query-migrate"));
    qemu_monitor_json_query_migrate_capabilities(mon, migration_caps_cb,
                                                 call_new(f, "query-migrate-capabilities"));
    qemu_monitor_json_migrate_set_capabilities(mon, cap_names, cap_states,
                                               G_N_ELEMENTS(cap_names), done_cb,
                                               call_new(f, "migrate-set-capabilities"));
    qemu_monitor_json_query_migrate_parameters(mon, migration_params_cb,
                                               call_new(f, "query-migrate-parameters"));
    ho_json_add_int64(params, "max-bandwidth", 1073741824);
    ho_json_add_int64(params, "downtime-limit", 300);
    qemu_monitor_json_migrate_set_parameters(mon, params, done_cb,
                                             call_new(f, "migrate-set-parameters"));
    qemu_monitor_json_migrate_incoming(mon, "tcp:127.0.0.1:49152", done_cb,
                                       call_new(f, "migrate-incoming"));
    qemu_monitor_json_migrate(mon, "tcp:127.0.0.1:49152", false, done_cb,
                              call_new(f, "migrate"));
    qemu_monitor_json_migrate_continue(mon, QEMU_MIGRATION_STATUS_PRE_SWITCHOVER, done_cb,
                                       call_new(f, "migrate-continue"));
    qemu_monitor_json_migrate_cancel(mon, done_cb, call_new(f, "migrate_cancel"));
    qemu_monitor_json_migrate_start_postcopy(mon, done_cb,
                                             call_new(f, "migrate-start-postcopy"));
    qemu_monitor_json_migrate_pause(mon, done_cb, call_new(f, "migrate-pause"));
    qemu_monitor_json_migrate_recover(mon, "tcp:127.0.0.1:49153", done_cb,
                                      call_new(f, "migrate-recover"));
    qemu_monitor_json_migrate(mon, "tcp:127.0.0.1:49153", true, done_cb,
                              call_new(f, "migrate resume"));

    ho_json_add_string(server, "type", "inet");
    ho_json_add_string(server, "host", "127.0.0.1");
    ho_json_add_string(server, "port", "49154");
    ho_json_add_string(nbd, "driver", "nbd");
    ho_json_add_string(nbd, "node-name", "migration-vda-storage");
    ho_json_add(nbd, "server", server);
    ho_json_add_string(nbd, "export", "drive-virtio-disk0");
    ho_json_add_bool(nbd, "read-only", false);
    qemu_monitor_json_blockdev_add(mon, nbd, done_cb, call_new(f, "blockdev-add"));
    qemu_monitor_json_blockdev_mirror(mon, "mirror-vda", "libvirt-1-format",
                                      "migration-vda-storage", &full, done_cb,
                                      call_new(f, "blockdev-mirror full"));
    qemu_monitor_json_blockdev_mirror(mon, NULL, "libvirt-2-format", "migration-vdb-storage",
                                      &top, done_cb, call_new(f, "blockdev-mirror top"));
    qemu_monitor_json_query_block_jobs(mon, block_jobs_cb, call_new(f, "query-block-jobs"));
    qemu_monitor_json_query_jobs(mon, jobs_cb, call_new(f, "query-jobs"));
    qemu_monitor_json_block_job_cancel(mon, "mirror-vda", false, done_cb,
                                       call_new(f, "block-job-cancel"));
    qemu_monitor_json_block_job_cancel(mon, "mirror-vdb", true, done_cb,
                                       call_new(f, "block-job-cancel force"));
    qemu_monitor_json_block_job_cancel(mon, "nope", false, done_cb,
                                       call_new(f, "block-job-cancel unknown"));
    qemu_monitor_json_block_job_complete(mon, "mirror-vda", done_cb,
                                         call_new(f, "block-job-complete"));
    qemu_monitor_json_job_dismiss(mon, "mirror-vda", done_cb, call_new(f, "job-dismiss"));
    qemu_monitor_json_blockdev_del(mon, "migration-vda-storage", done_cb,
                                   call_new(f, "blockdev-del"));
    qemu_monitor_json_nbd_server_start_fd(mon, "nbd-listen", done_cb,
                                          call_new(f, "nbd-server-start"));
    qemu_monitor_json_block_export_add(mon, "export-vda", "libvirt-1-format",
                                       "drive-virtio-disk0", true, done_cb,
                                       call_new(f, "block-export-add"));
    qemu_monitor_json_block_export_add(mon, "export-vdb", "libvirt-2-format", NULL, false,
                                       done_cb, call_new(f, "block-export-add unnamed"));
    qemu_monitor_json_block_export_del(mon, "export-vda", done_cb,
                                       call_new(f, "block-export-del"));
    qemu_monitor_json_nbd_server_stop(mon, done_cb, call_new(f, "nbd-server-stop"));
    qemu_monitor_json_query_named_block_nodes(mon, named_nodes_cb,
                                              call_new(f, "query-named-block-nodes"));
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
    qemu_monitor_json_getfd(mon, "migrate-fd", fds[0], done_cb, call_new(f, "getfd"));
    /* Not consumed: ours to close, at once. */
    close(fds[0]);
    close(fds[1]);
    qemu_monitor_json_human_command(mon, "info status", string_cb,
                                    call_new(f, "human-monitor-command"));
}

static void
test_commands_7_2(void)
{
    Fixture f;

    fixture_setup(&f, "commands-7.2.jsonl");
    issue_common_commands(&f);
    qemu_monitor_json_query_machine_list(f.mon, machines_cb,
                                         call_new(&f, "query-machines list"));
    qemu_monitor_json_system_powerdown(f.mon, done_cb, call_new(&f, "system_powerdown"));
    qemu_monitor_json_quit(f.mon, done_cb, call_new(&f, "quit"));
    fixture_finish(&f, "commands-7.2.jsonl", true);
}

static void
test_commands_10_0(void)
{
    Fixture f;
    json_object *params = json_object_new_object();
    json_object *channels = json_object_new_array();
    static const char *const types[] = {"main", "cpr"};
    static const char *const paths[] = {"/run/handover/main.sock", "/run/handover/cpr.sock"};
    size_t i;

    fixture_setup(&f, "commands-10.0.jsonl");
    issue_common_commands(&f);
    ho_json_add_string(params, "mode", qemu_mig_mode_to_string(QEMU_MIG_MODE_CPR_TRANSFER));
    qemu_monitor_json_migrate_set_parameters(f.mon, params, done_cb,
                                             call_new(&f, "migrate-set-parameters mode"));
    for (i = 0; i < G_N_ELEMENTS(types); i++) {
        json_object *channel = json_object_new_object();
        json_object *addr = json_object_new_object();

        ho_json_add_string(addr, "transport", "socket");
        ho_json_add_string(addr, "type", "unix");
        ho_json_add_string(addr, "path", paths[i]);
        ho_json_add_string(channel, "channel-type", types[i]);
        ho_json_add(channel, "addr", addr);
        json_object_array_add(channels, channel);
    }
    qemu_monitor_json_migrate_channels(f.mon, channels, done_cb,
                                       call_new(&f, "migrate channels"));
    qemu_monitor_json_query_migrate(f.mon, migration_info_cb,
                                    call_new(&f, "query-migrate recover-setup"));
    qemu_monitor_json_quit(f.mon, done_cb, call_new(&f, "quit"));
    fixture_finish(&f, "commands-10.0.jsonl", true);
}

/* Malformed replies fail their own command with an HO_ERR_JSON error
 * naming the field; the connection stays up for the next ones. */
static void
test_commands_bad_replies(void)
{
    Fixture f;
    QemuMonitor *mon;

    fixture_setup(&f, "commands-bad-replies.jsonl");
    mon = f.mon;
    qemu_monitor_json_query_events(mon, names_cb, call_new(&f, "query-events"));
    qemu_monitor_json_query_status(mon, status_cb, call_new(&f, "query-status no status"));
    qemu_monitor_json_query_version(mon, version_cb, call_new(&f, "query-version minor string"));
    qemu_monitor_json_query_migrate(mon, migration_info_cb,
                                    call_new(&f, "query-migrate ram without total"));
    qemu_monitor_json_query_migrate(mon, migration_info_cb,
                                    call_new(&f, "query-migrate unknown status"));
    qemu_monitor_json_query_migrate_parameters(mon, migration_params_cb,
                                               call_new(&f, "query-migrate-parameters array"));
    qemu_monitor_json_query_block_jobs(mon, block_jobs_cb,
                                       call_new(&f, "query-block-jobs object"));
    qemu_monitor_json_query_jobs(mon, jobs_cb, call_new(&f, "query-jobs no status"));
    qemu_monitor_json_query_named_block_nodes(mon, named_nodes_cb,
                                              call_new(&f, "query-named-block-nodes number"));
    qemu_monitor_json_query_migrate_capabilities(mon, migration_caps_cb,
                                                 call_new(&f, "query-migrate-capabilities"));
    qemu_monitor_json_query_commands(mon, names_cb, call_new(&f, "query-commands"));
    qemu_monitor_json_human_command(mon, "info status", string_cb,
                                    call_new(&f, "human-monitor-command object"));
    qemu_monitor_json_migrate_continue(mon, QEMU_MIGRATION_STATUS_PRE_SWITCHOVER, done_cb,
                                       call_new(&f, "migrate-continue refused"));
    qemu_monitor_json_query_status(mon, status_cb, call_new(&f, "query-status"));
    fixture_finish(&f, "commands-bad-replies.jsonl", false);
}

/* Callbacks run exactly once even when the monitor is already closed,
 * with an error, and never re-entrantly. */
static void
test_commands_closed_monitor(void)
{
    Fixture f;

    fixture_setup(&f, "commands-bad-replies.jsonl");
    qemu_monitor_close(f.mon);
    qemu_monitor_json_query_migrate(f.mon, migration_info_cb, call_new(&f, "query-migrate"));
    qemu_monitor_json_stop(f.mon, done_cb, call_new(&f, "stop"));
    g_assert_cmpuint(f.pending, ==, 2);
    while (!fixture_idle(&f))
        g_main_context_iteration(f.ctx, TRUE);
    g_assert_true(g_str_has_prefix(f.log->str, "query-migrate: error monitor"));
    g_assert_nonnull(strstr(f.log->str, "\nstop: error monitor"));

    g_clear_pointer(&f.mon, qemu_monitor_unref);
    g_clear_pointer(&f.mock, qemu_mock_free);
    while (g_main_context_iteration(f.ctx, FALSE))
        ;
    g_main_context_unref(f.ctx);
    g_string_free(f.log, TRUE);
}

int
main(int argc, char **argv)
{
    g_autoptr(GPtrArray) data_files = g_ptr_array_new_with_free_func(g_free);

    g_test_init(&argc, &argv, NULL);
    quiet_logs();

    g_test_add_func("/monitor-json/enum/counts", test_enum_counts);
    g_test_add_func("/monitor-json/enum/round-trip", test_enum_round_trip);
    g_test_add_func("/monitor-json/enum/unknown-warns-once", test_enum_unknown_warns_once);
    g_test_add_func("/monitor-json/enum/schema", test_enum_schema);
    add_data_file_tests(data_files);
    g_test_add_func("/monitor-json/commands/7.2", test_commands_7_2);
    g_test_add_func("/monitor-json/commands/10.0", test_commands_10_0);
    g_test_add_func("/monitor-json/commands/bad-replies", test_commands_bad_replies);
    g_test_add_func("/monitor-json/commands/closed-monitor", test_commands_closed_monitor);
    return g_test_run();
}
