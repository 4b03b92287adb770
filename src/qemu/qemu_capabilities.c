/*
 * What a QEMU can do: the raw facts a probe collects (version, commands,
 * events, migration capabilities, enum members and the arguments of
 * "migrate" from the schema), and flags derived from them on demand, so
 * a description saved by an older handover still answers every flag.
 */
#define HO_LOG_MODULE "qemu.capabilities"

#include "qemu_capabilities.h"

#include <string.h>

#include "ho_error.h"
#include "ho_i18n.h"
#include "ho_json.h"
#include "ho_log.h"
#include "qemu_qapi.h"

struct _QemuCaps {
    int major, minor, micro;
    char *package;
    GHashTable *commands;       /* names (owned keys) */
    GHashTable *events;
    GHashTable *migration_caps;
    GHashTable *migrate_args;   /* members of the "migrate" command's arguments */
    char **migration_statuses;  /* MigrationStatus members, schema order; never NULL */
    char **mig_modes;           /* MigMode members; empty before QEMU 8.2 */
};

/* Where a flag's fact lives. */
typedef enum {
    CAPS_FROM_MIGRATION_CAP,
    CAPS_FROM_COMMAND,
    CAPS_FROM_MIGRATION_STATUS,
    CAPS_FROM_MIG_MODE,
    CAPS_FROM_MIGRATE_ARG,
} CapsSource;

typedef struct {
    const char *name; /* the flag's stable name */
    CapsSource source;
    const char *key;  /* the name QEMU uses in that source */
} CapsFlagInfo;

static const CapsFlagInfo caps_flags[] = {
    [QEMU_CAPS_EVENTS_CAP] = {"events", CAPS_FROM_MIGRATION_CAP, "events"},
    [QEMU_CAPS_PAUSE_BEFORE_SWITCHOVER] = {"pause-before-switchover", CAPS_FROM_MIGRATION_CAP,
                                           "pause-before-switchover"},
    [QEMU_CAPS_POSTCOPY_RAM] = {"postcopy-ram", CAPS_FROM_MIGRATION_CAP, "postcopy-ram"},
    [QEMU_CAPS_RETURN_PATH] = {"return-path", CAPS_FROM_MIGRATION_CAP, "return-path"},
    [QEMU_CAPS_LATE_BLOCK_ACTIVATE] = {"late-block-activate", CAPS_FROM_MIGRATION_CAP,
                                       "late-block-activate"},
    [QEMU_CAPS_AUTO_CONVERGE] = {"auto-converge", CAPS_FROM_MIGRATION_CAP, "auto-converge"},
    [QEMU_CAPS_MULTIFD] = {"multifd", CAPS_FROM_MIGRATION_CAP, "multifd"},
    [QEMU_CAPS_POSTCOPY_PREEMPT] = {"postcopy-preempt", CAPS_FROM_MIGRATION_CAP,
                                    "postcopy-preempt"},
    [QEMU_CAPS_BLOCK_MIGRATION] = {"block", CAPS_FROM_MIGRATION_CAP, "block"},
    [QEMU_CAPS_POSTCOPY_RECOVER_SETUP] = {"postcopy-recover-setup", CAPS_FROM_MIGRATION_STATUS,
                                          "postcopy-recover-setup"},
    [QEMU_CAPS_CPR_TRANSFER] = {"cpr-transfer", CAPS_FROM_MIG_MODE, "cpr-transfer"},
    [QEMU_CAPS_MIGRATE_CHANNELS] = {"migrate-channels", CAPS_FROM_MIGRATE_ARG, "channels"},
    [QEMU_CAPS_BLOCKDEV_MIRROR] = {"blockdev-mirror", CAPS_FROM_COMMAND, "blockdev-mirror"},
    [QEMU_CAPS_BLOCK_EXPORT_ADD] = {"block-export-add", CAPS_FROM_COMMAND, "block-export-add"},
    [QEMU_CAPS_MIGRATE_RECOVER] = {"migrate-recover", CAPS_FROM_COMMAND, "migrate-recover"},
    [QEMU_CAPS_MIGRATE_PAUSE] = {"migrate-pause", CAPS_FROM_COMMAND, "migrate-pause"},
    [QEMU_CAPS_MIGRATE_CONTINUE] = {"migrate-continue", CAPS_FROM_COMMAND, "migrate-continue"},
    [QEMU_CAPS_QUERY_JOBS] = {"query-jobs", CAPS_FROM_COMMAND, "query-jobs"},
};
G_STATIC_ASSERT(G_N_ELEMENTS(caps_flags) == QEMU_CAPS_LAST);

/* Keys of the JSON description. */
#define KEY_VERSION "version"
#define KEY_PACKAGE "package"
#define KEY_FLAGS "flags"
#define KEY_COMMANDS "commands"
#define KEY_EVENTS "events"
#define KEY_MIGRATION_CAPS "migration-capabilities"
#define KEY_MIGRATE_ARGS "migrate-arguments"
#define KEY_MIGRATION_STATUSES "migration-statuses"
#define KEY_MIG_MODES "mig-modes"

const char *
qemu_caps_flag_name(QemuCapsFlag flag)
{
    if ((int)flag < 0 || flag >= QEMU_CAPS_LAST)
        return "unknown";
    return caps_flags[flag].name;
}

static GHashTable *
name_set_new(void)
{
    return g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
}

static GHashTable *
name_set_from_strv(char **names)
{
    GHashTable *set = name_set_new();
    char **p;

    for (p = names; p && *p; p++)
        g_hash_table_add(set, g_strdup(*p));
    return set;
}

static void
name_set_replace(GHashTable **dst, GHashTable *src)
{
    g_hash_table_unref(*dst);
    *dst = src;
}

QemuCaps *
qemu_caps_new(void)
{
    QemuCaps *caps = g_new0(QemuCaps, 1);

    caps->package = g_strdup("");
    caps->commands = name_set_new();
    caps->events = name_set_new();
    caps->migration_caps = name_set_new();
    caps->migrate_args = name_set_new();
    caps->migration_statuses = g_new0(char *, 1);
    caps->mig_modes = g_new0(char *, 1);
    return caps;
}

void
qemu_caps_free(QemuCaps *caps)
{
    if (!caps)
        return;
    g_free(caps->package);
    g_clear_pointer(&caps->commands, g_hash_table_unref);
    g_clear_pointer(&caps->events, g_hash_table_unref);
    g_clear_pointer(&caps->migration_caps, g_hash_table_unref);
    g_clear_pointer(&caps->migrate_args, g_hash_table_unref);
    g_strfreev(caps->migration_statuses);
    g_strfreev(caps->mig_modes);
    g_free(caps);
}

bool
qemu_caps_has(const QemuCaps *caps, QemuCapsFlag flag)
{
    const CapsFlagInfo *info;

    if ((int)flag < 0 || flag >= QEMU_CAPS_LAST)
        return false;
    info = &caps_flags[flag];
    switch (info->source) {
    case CAPS_FROM_MIGRATION_CAP:
        return g_hash_table_contains(caps->migration_caps, info->key);
    case CAPS_FROM_COMMAND:
        return g_hash_table_contains(caps->commands, info->key);
    case CAPS_FROM_MIGRATION_STATUS:
        return g_strv_contains((const char *const *)caps->migration_statuses, info->key);
    case CAPS_FROM_MIG_MODE:
        return g_strv_contains((const char *const *)caps->mig_modes, info->key);
    case CAPS_FROM_MIGRATE_ARG:
        return g_hash_table_contains(caps->migrate_args, info->key);
    }
    return false;
}

unsigned int
qemu_caps_version(const QemuCaps *caps)
{
    return (unsigned int)caps->major * 1000000u + (unsigned int)caps->minor * 1000u +
           (unsigned int)caps->micro;
}

const char *
qemu_caps_package(const QemuCaps *caps)
{
    return caps->package;
}

bool
qemu_caps_has_command(const QemuCaps *caps, const char *name)
{
    return g_hash_table_contains(caps->commands, name);
}

bool
qemu_caps_has_event(const QemuCaps *caps, const char *name)
{
    return g_hash_table_contains(caps->events, name);
}

bool
qemu_caps_has_migration_capability(const QemuCaps *caps, const char *name)
{
    return g_hash_table_contains(caps->migration_caps, name);
}

const char *const *
qemu_caps_migration_statuses(const QemuCaps *caps)
{
    return (const char *const *)caps->migration_statuses;
}

const char *const *
qemu_caps_mig_modes(const QemuCaps *caps)
{
    return (const char *const *)caps->mig_modes;
}

/* ---- filling from replies ---- */

/* QEMU's version triple must fit the packed form qemu_caps_version() returns. */
#define CAPS_MAX_MAJOR 4000
#define CAPS_MAX_VERSION_PART 999

static int
caps_take_version(QemuCaps *caps, const QemuMonitorVersion *v)
{
    if (v->major > CAPS_MAX_MAJOR || v->minor > CAPS_MAX_VERSION_PART ||
        v->micro > CAPS_MAX_VERSION_PART) {
        ho_error_report(HO_ERR_JSON, _("QEMU version '%1$d.%2$d.%3$d' is out of range"),
                        v->major, v->minor, v->micro);
        return -1;
    }
    caps->major = v->major;
    caps->minor = v->minor;
    caps->micro = v->micro;
    g_free(caps->package);
    caps->package = g_strdup(v->package ? v->package : "");
    return 0;
}

static void
caps_take_migration_caps(QemuCaps *caps, GPtrArray *list)
{
    GHashTable *set = name_set_new();
    guint i;

    /* Listed means supported; the current state does not matter here. */
    for (i = 0; i < list->len; i++) {
        const QemuMigrationCapability *cap = g_ptr_array_index(list, i);

        g_hash_table_add(set, g_strdup(cap->name));
    }
    name_set_replace(&caps->migration_caps, set);
}

static void
caps_add_events(QemuCaps *caps, char **names)
{
    char **p;

    for (p = names; p && *p; p++)
        g_hash_table_add(caps->events, g_strdup(*p));
}

int
qemu_caps_set_version(QemuCaps *caps, json_object *ret)
{
    QemuMonitorVersion *v = g_new0(QemuMonitorVersion, 1);
    int rc = -1;

    if (qemu_monitor_json_parse_version(ret, v) == 0)
        rc = caps_take_version(caps, v);
    qemu_monitor_version_free(v);
    return rc;
}

int
qemu_caps_set_commands(QemuCaps *caps, json_object *ret)
{
    g_auto(GStrv) names = qemu_monitor_json_parse_name_list(ret);

    if (!names)
        return -1;
    name_set_replace(&caps->commands, name_set_from_strv(names));
    return 0;
}

int
qemu_caps_set_events(QemuCaps *caps, json_object *ret)
{
    g_auto(GStrv) names = qemu_monitor_json_parse_name_list(ret);

    if (!names)
        return -1;
    caps_add_events(caps, names);
    return 0;
}

int
qemu_caps_set_migration_capabilities(QemuCaps *caps, json_object *ret)
{
    g_autoptr(GPtrArray) list = qemu_monitor_json_parse_migration_caps(ret);

    if (!list)
        return -1;
    caps_take_migration_caps(caps, list);
    return 0;
}

/* The SchemaInfo entry called name (the schema was validated by
 * qemu_qapi_new: every entry is an object with string name and meta-type). */
static json_object *
schema_find(json_object *schema, const char *name)
{
    size_t i, n = json_object_array_length(schema);

    for (i = 0; i < n; i++) {
        json_object *info = json_object_array_get_idx(schema, i);
        json_object *val;

        if (json_object_object_get_ex(info, "name", &val) &&
            g_strcmp0(json_object_get_string(val), name) == 0)
            return info;
    }
    return NULL;
}

/* Member names of a command's argument object; an empty set for a command
 * without arguments or that this QEMU lacks. */
static GHashTable *
schema_command_arg_members(json_object *schema, const char *command)
{
    g_autoptr(GHashTable) set = name_set_new();
    json_object *cmd = schema_find(schema, command);
    json_object *arg_type_name, *arg_type, *members;
    size_t i, n;

    if (!cmd || !json_object_object_get_ex(cmd, "arg-type", &arg_type_name) ||
        !json_object_is_type(arg_type_name, json_type_string))
        return g_steal_pointer(&set);
    arg_type = schema_find(schema, json_object_get_string(arg_type_name));
    if (!arg_type || !json_object_object_get_ex(arg_type, "members", &members) ||
        !json_object_is_type(members, json_type_array)) {
        ho_error_report(HO_ERR_JSON,
                        _("the QAPI schema has no argument object for command '%1$s'"),
                        command);
        return NULL;
    }
    n = json_object_array_length(members);
    for (i = 0; i < n; i++) {
        const char *name;

        if (ho_json_get_string(json_object_array_get_idx(members, i), "name", &name) < 0)
            return NULL;
        g_hash_table_add(set, g_strdup(name));
    }
    return g_steal_pointer(&set);
}

/* Event names the schema declares. */
static void
schema_events(json_object *schema, GPtrArray *out)
{
    size_t i, n = json_object_array_length(schema);

    for (i = 0; i < n; i++) {
        json_object *info = json_object_array_get_idx(schema, i);
        json_object *meta, *name;

        if (json_object_object_get_ex(info, "meta-type", &meta) &&
            g_strcmp0(json_object_get_string(meta), "event") == 0 &&
            json_object_object_get_ex(info, "name", &name))
            g_ptr_array_add(out, g_strdup(json_object_get_string(name)));
    }
}

int
qemu_caps_set_schema(QemuCaps *caps, json_object *schema)
{
    g_autoptr(QemuQapi) qapi = qemu_qapi_new(schema);
    g_auto(GStrv) statuses = NULL;
    g_auto(GStrv) modes = NULL;
    g_autoptr(GHashTable) migrate_args = NULL;
    g_autoptr(GPtrArray) events = g_ptr_array_new_with_free_func(g_free);

    if (!qapi)
        return -1;
    statuses = qemu_qapi_enum_members(qapi, "query-migrate", "status", TRUE);
    if (!statuses) {
        ho_error_report(HO_ERR_JSON,
                        _("the QAPI schema has no enum for member '%1$s' of the reply to '%2$s'"),
                        "status", "query-migrate");
        return -1;
    }
    /* MigMode arrived in QEMU 8.2: none before. */
    modes = qemu_qapi_enum_members(qapi, "migrate-set-parameters", "mode", FALSE);
    if (!modes)
        modes = g_new0(char *, 1);
    if (!(migrate_args = schema_command_arg_members(schema, "migrate")))
        return -1;
    schema_events(schema, events);
    g_ptr_array_add(events, NULL);

    g_strfreev(caps->migration_statuses);
    caps->migration_statuses = g_steal_pointer(&statuses);
    g_strfreev(caps->mig_modes);
    caps->mig_modes = g_steal_pointer(&modes);
    name_set_replace(&caps->migrate_args, g_steal_pointer(&migrate_args));
    /* query-events is gone from QEMU 6.0 on: the schema is where events are. */
    caps_add_events(caps, (char **)events->pdata);
    return 0;
}

/* ---- probing ---- */

typedef struct {
    QemuMonitor *mon;
    QemuCapsProbeFunc cb;
    void *opaque;
    QemuCaps *caps;
} CapsProbe;

static void
caps_probe_finish(CapsProbe *probe, const HoError *err)
{
    g_autoptr(QemuCaps) caps = g_steal_pointer(&probe->caps);

    if (err) {
        HO_DEBUG("probing '%s' failed: %s", qemu_monitor_get_label(probe->mon), err->message);
        probe->cb(probe->mon, NULL, err, probe->opaque);
    } else {
        HO_INFO("QEMU '%s' is version %d.%d.%d", qemu_monitor_get_label(probe->mon),
                caps->major, caps->minor, caps->micro);
        probe->cb(probe->mon, g_steal_pointer(&caps), NULL, probe->opaque);
    }
    qemu_monitor_unref(probe->mon);
    g_free(probe);
}

/* Finish with the error a synchronous step just reported. */
static void
caps_probe_fail_reported(CapsProbe *probe)
{
    g_autoptr(HoError) err = ho_error_steal();

    if (!err)
        err = ho_error_new(HO_ERR_INTERNAL, "%s", _("capability probe failed"));
    caps_probe_finish(probe, err);
}

static void
caps_probe_schema(QemuMonitor *mon, json_object *ret, const HoError *err, void *opaque)
{
    CapsProbe *probe = opaque;

    if (err) {
        caps_probe_finish(probe, err);
        return;
    }
    if (qemu_caps_set_schema(probe->caps, ret) < 0) {
        caps_probe_fail_reported(probe);
        return;
    }
    caps_probe_finish(probe, NULL);
}

static void
caps_probe_migration_caps(QemuMonitor *mon, GPtrArray *list, const HoError *err, void *opaque)
{
    CapsProbe *probe = opaque;

    if (err) {
        caps_probe_finish(probe, err);
        return;
    }
    caps_take_migration_caps(probe->caps, list);
    qemu_monitor_json_query_qmp_schema(mon, caps_probe_schema, probe);
}

static void
caps_probe_events(QemuMonitor *mon, char **names, const HoError *err, void *opaque)
{
    CapsProbe *probe = opaque;

    if (err) {
        caps_probe_finish(probe, err);
        return;
    }
    caps_add_events(probe->caps, names);
    qemu_monitor_json_query_migrate_capabilities(mon, caps_probe_migration_caps, probe);
}

static void
caps_probe_commands(QemuMonitor *mon, char **names, const HoError *err, void *opaque)
{
    CapsProbe *probe = opaque;

    if (err) {
        caps_probe_finish(probe, err);
        return;
    }
    name_set_replace(&probe->caps->commands, name_set_from_strv(names));
    /* QEMU 6.0 removed query-events; its events then come from the schema. */
    if (g_hash_table_contains(probe->caps->commands, "query-events"))
        qemu_monitor_json_query_events(mon, caps_probe_events, probe);
    else
        qemu_monitor_json_query_migrate_capabilities(mon, caps_probe_migration_caps, probe);
}

static void
caps_probe_version(QemuMonitor *mon, const QemuMonitorVersion *v, const HoError *err,
                   void *opaque)
{
    CapsProbe *probe = opaque;

    if (err) {
        caps_probe_finish(probe, err);
        return;
    }
    if (caps_take_version(probe->caps, v) < 0) {
        caps_probe_fail_reported(probe);
        return;
    }
    qemu_monitor_json_query_commands(mon, caps_probe_commands, probe);
}

void
qemu_caps_probe(QemuMonitor *mon, QemuCapsProbeFunc cb, void *opaque)
{
    CapsProbe *probe = g_new0(CapsProbe, 1);

    probe->mon = qemu_monitor_ref(mon);
    probe->cb = cb;
    probe->opaque = opaque;
    probe->caps = qemu_caps_new();
    qemu_monitor_json_query_version(mon, caps_probe_version, probe);
}

/* ---- JSON description ---- */

static json_object *
strv_to_json(const char *const *strv)
{
    json_object *array = json_object_new_array();

    for (; strv && *strv; strv++)
        json_object_array_add(array, json_object_new_string(*strv));
    return array;
}

/* For qsort and g_ptr_array_sort: both pass pointers to the elements. */
static int
sort_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorted, so the description is stable whatever the hash order. */
static json_object *
name_set_to_json(GHashTable *set)
{
    guint n = 0;
    g_autofree const char **names = (const char **)g_hash_table_get_keys_as_array(set, &n);

    qsort(names, n, sizeof(*names), sort_names);
    return strv_to_json(names);
}

json_object *
qemu_caps_to_json(const QemuCaps *caps)
{
    json_object *obj = json_object_new_object();
    json_object *version = json_object_new_object();
    json_object *flags = json_object_new_array();
    g_autoptr(GPtrArray) flag_names = g_ptr_array_new();
    int i;

    ho_json_add_int64(version, "major", caps->major);
    ho_json_add_int64(version, "minor", caps->minor);
    ho_json_add_int64(version, "micro", caps->micro);
    ho_json_add(obj, KEY_VERSION, version);
    ho_json_add_string(obj, KEY_PACKAGE, caps->package);

    /* Derived, for readers; qemu_caps_from_json() recomputes them. */
    for (i = 0; i < QEMU_CAPS_LAST; i++) {
        if (qemu_caps_has(caps, i))
            g_ptr_array_add(flag_names, (char *)caps_flags[i].name);
    }
    g_ptr_array_sort(flag_names, sort_names);
    for (i = 0; i < (int)flag_names->len; i++)
        json_object_array_add(flags, json_object_new_string(g_ptr_array_index(flag_names, i)));
    ho_json_add(obj, KEY_FLAGS, flags);

    ho_json_add(obj, KEY_COMMANDS, name_set_to_json(caps->commands));
    ho_json_add(obj, KEY_EVENTS, name_set_to_json(caps->events));
    ho_json_add(obj, KEY_MIGRATION_CAPS, name_set_to_json(caps->migration_caps));
    ho_json_add(obj, KEY_MIGRATE_ARGS, name_set_to_json(caps->migrate_args));
    /* Enum members keep the schema's order, which is QEMU's. */
    ho_json_add(obj, KEY_MIGRATION_STATUSES,
                strv_to_json((const char *const *)caps->migration_statuses));
    ho_json_add(obj, KEY_MIG_MODES, strv_to_json((const char *const *)caps->mig_modes));
    return obj;
}

/* A required array of strings. */
static char **
json_get_strv(json_object *obj, const char *key)
{
    json_object *array;

    if (ho_json_get_array(obj, key, &array) < 0)
        return NULL;
    return ho_json_array_to_strv(array, key);
}

QemuCaps *
qemu_caps_from_json(json_object *obj)
{
    g_autoptr(QemuCaps) caps = qemu_caps_new();
    QemuMonitorVersion v = {0};
    json_object *version;
    int64_t major, minor, micro;
    const char *package;
    g_auto(GStrv) commands = NULL;
    g_auto(GStrv) events = NULL;
    g_auto(GStrv) migration_caps = NULL;
    g_auto(GStrv) migrate_args = NULL;
    g_auto(GStrv) statuses = NULL;
    g_auto(GStrv) modes = NULL;

    if (!json_object_is_type(obj, json_type_object)) {
        ho_error_report(HO_ERR_JSON, _("the QEMU capabilities description is not a JSON object"));
        return NULL;
    }
    if (ho_json_get_object(obj, KEY_VERSION, &version) < 0 ||
        ho_json_get_int64(version, "major", &major) < 0 ||
        ho_json_get_int64(version, "minor", &minor) < 0 ||
        ho_json_get_int64(version, "micro", &micro) < 0 ||
        ho_json_get_string(obj, KEY_PACKAGE, &package) < 0 ||
        !(commands = json_get_strv(obj, KEY_COMMANDS)) ||
        !(events = json_get_strv(obj, KEY_EVENTS)) ||
        !(migration_caps = json_get_strv(obj, KEY_MIGRATION_CAPS)) ||
        !(migrate_args = json_get_strv(obj, KEY_MIGRATE_ARGS)) ||
        !(statuses = json_get_strv(obj, KEY_MIGRATION_STATUSES)) ||
        !(modes = json_get_strv(obj, KEY_MIG_MODES)))
        return NULL;
    if (major < 0 || minor < 0 || micro < 0 || major > G_MAXINT || minor > G_MAXINT ||
        micro > G_MAXINT) {
        ho_error_report(HO_ERR_JSON, _("JSON field '%1$s' is out of range"), KEY_VERSION);
        return NULL;
    }
    v.major = (int)major;
    v.minor = (int)minor;
    v.micro = (int)micro;
    v.package = (char *)package;
    if (caps_take_version(caps, &v) < 0)
        return NULL;

    name_set_replace(&caps->commands, name_set_from_strv(commands));
    name_set_replace(&caps->events, name_set_from_strv(events));
    name_set_replace(&caps->migration_caps, name_set_from_strv(migration_caps));
    name_set_replace(&caps->migrate_args, name_set_from_strv(migrate_args));
    g_strfreev(caps->migration_statuses);
    caps->migration_statuses = g_steal_pointer(&statuses);
    g_strfreev(caps->mig_modes);
    caps->mig_modes = g_steal_pointer(&modes);
    return g_steal_pointer(&caps);
}

QemuCaps *
qemu_caps_copy(const QemuCaps *caps)
{
    g_autoptr(json_object) obj = qemu_caps_to_json(caps);

    return qemu_caps_from_json(obj);
}
