/*
 * handoverd's configuration file.
 *
 * Every key is described once, in conf_keys[], with its type, where it is
 * stored and its range; loading walks the file's keys through that table.
 * A file is applied to a copy of the configuration, so a file with one bad
 * key changes nothing.
 */
#define HO_LOG_MODULE "daemon.conf"

#include "handoverd_conf.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ho_error.h"
#include "ho_file.h"
#include "ho_i18n.h"
#include "ho_log.h"

/* Largest configuration file read. */
#define CONF_FILE_MAX (1024 * 1024)
/* Largest host-uuid file read (36 characters and a newline are expected). */
#define HOST_UUID_FILE_MAX 4096

typedef enum {
    CONF_PATH = 0,    /* char *, an absolute path */
    CONF_SOCKET,      /* char *, an absolute path that fits a sockaddr_un */
    CONF_ADDRESS,     /* char *, a host name or IP address */
    CONF_UINT,        /* unsigned int within min..max */
    CONF_SIZE,        /* size_t within min..max */
    CONF_MODE,        /* mode_t, octal, at most 0777 */
    CONF_UUID,        /* char *, a UUID (stored in lower case) */
    CONF_EMULATOR,    /* char *, an executable: absolute path or name on PATH */
    CONF_LOG_LEVEL,   /* char *, a log level name */
    CONF_LOG_FILTERS, /* char *, "module:level,..." */
    CONF_LAST
} ConfType;

typedef struct {
    const char *key;
    ConfType type;
    size_t offset; /* in HandoverdConf */
    guint64 min;   /* CONF_UINT, CONF_SIZE */
    guint64 max;
} ConfKey;

#define CONF_OFF(field) offsetof(HandoverdConf, field)

static const ConfKey conf_keys[] = {
    {"state_dir", CONF_PATH, CONF_OFF(state_dir), 0, 0},
    {"runtime_dir", CONF_PATH, CONF_OFF(runtime_dir), 0, 0},
    {"log_dir", CONF_PATH, CONF_OFF(log_dir), 0, 0},
    {"socket_path", CONF_SOCKET, CONF_OFF(socket_path), 0, 0},
    {"socket_mode", CONF_MODE, CONF_OFF(socket_mode), 0, 0777},
    {"listen_address", CONF_ADDRESS, CONF_OFF(listen_address), 0, 0},
    {"listen_port", CONF_UINT, CONF_OFF(listen_port), 0, 65535},
    /* 0 turns keepalive off; an hour of silence is as patient as it gets. */
    {"keepalive_interval", CONF_UINT, CONF_OFF(keepalive_interval), 0, 3600},
    {"keepalive_count", CONF_UINT, CONF_OFF(keepalive_count), 1, 100},
    {"migration_address", CONF_ADDRESS, CONF_OFF(migration_address), 0, 0},
    {"migration_port_min", CONF_UINT, CONF_OFF(migration_port_min), 1, 65535},
    {"migration_port_max", CONF_UINT, CONF_OFF(migration_port_max), 1, 65535},
    {"nbd_port_min", CONF_UINT, CONF_OFF(nbd_port_min), 1, 65535},
    {"nbd_port_max", CONF_UINT, CONF_OFF(nbd_port_max), 1, 65535},
    {"migration_record_dir", CONF_PATH, CONF_OFF(migration_record_dir), 0, 0},
    /* Milliseconds: from 20 progress events a second to one a minute. */
    {"migration_progress_interval", CONF_UINT, CONF_OFF(migration_progress_interval), 50, 60000},
    /* Seconds a disk mirror may copy nothing before it is ready: from a
     * hiccup to a day. */
    {"migration_mirror_stall_timeout", CONF_UINT, CONF_OFF(migration_mirror_stall_timeout), 1,
     86400},
    /* Seconds a postcopy migration may make no progress (or its peer
     * daemon stay silent) before it is forced into postcopy-paused: from
     * a hiccup to an hour. */
    {"postcopy_stall_timeout", CONF_UINT, CONF_OFF(postcopy_stall_timeout), 1, 3600},
    /* Nice levels; 0 turns it off, 39 spans the whole range. */
    {"priority_boost", CONF_UINT, CONF_OFF(priority_boost), 0, 39},
    {"migration_switchover_boost", CONF_UINT, CONF_OFF(migration_switchover_boost), 0, 39},
    /* Milliseconds; 0 turns the ramp off, the top is --max-downtime's. */
    {"migration_downtime_start", CONF_UINT, CONF_OFF(migration_downtime_start), 0, 2000000},
    /* Bytes; 0 leaves it to QEMU (16 MiB). A GiB in flight per disk is
     * more than any link needs. */
    {"migration_mirror_buf_size", CONF_SIZE, CONF_OFF(migration_mirror_buf_size), 0,
     1024 * 1024 * 1024},
    /* Bytes; 0 sizes them from the round trip to the peer daemon. */
    {"migration_stream_buffer", CONF_SIZE, CONF_OFF(migration_stream_buffer), 0, 64 * 1024 * 1024},
    {"host_uuid", CONF_UUID, CONF_OFF(host_uuid), 0, 0},
    {"default_emulator", CONF_EMULATOR, CONF_OFF(default_emulator), 0, 0},
    {"max_clients", CONF_UINT, CONF_OFF(max_clients), 1, 65536},
    /* The hello exchange must fit; 256 MiB bounds what one client can pin. */
    {"max_message_size", CONF_SIZE, CONF_OFF(max_message_size), 4096, 256 * 1024 * 1024},
    {"max_requests_per_client", CONF_UINT, CONF_OFF(max_requests_per_client), 1, 4096},
    {"shutdown_timeout", CONF_UINT, CONF_OFF(shutdown_timeout), 1, 86400},
    {"log_level", CONF_LOG_LEVEL, CONF_OFF(log_level), 0, 0},
    {"log_filters", CONF_LOG_FILTERS, CONF_OFF(log_filters), 0, 0},
    {"log_file", CONF_PATH, CONF_OFF(log_file), 0, 0},
    {"record_qmp", CONF_PATH, CONF_OFF(record_qmp), 0, 0},
};

static char **
conf_str_field(HandoverdConf *conf, const ConfKey *k)
{
    return (char **)((char *)conf + k->offset);
}

static const char *
conf_str_value(const HandoverdConf *conf, const ConfKey *k)
{
    return *(char *const *)((const char *)conf + k->offset);
}

static bool
conf_type_is_string(ConfType type)
{
    return type != CONF_UINT && type != CONF_SIZE && type != CONF_MODE;
}

HandoverdConf *
handoverd_conf_new(void)
{
    HandoverdConf *conf = g_new0(HandoverdConf, 1);

    conf->socket_mode = 0600;
    conf->listen_port = 16514;
    conf->migration_address = g_strdup("127.0.0.1");
    conf->migration_port_min = 49152;
    conf->migration_port_max = 49215;
    /* NBD's own port (IANA) and up: apart from the migration range. */
    conf->nbd_port_min = 10809;
    conf->nbd_port_max = 10872;
    conf->keepalive_interval = 5;
    conf->keepalive_count = 5;
    conf->migration_progress_interval = 500;
    conf->migration_mirror_stall_timeout = 60;
    conf->postcopy_stall_timeout = 10;
    conf->migration_switchover_boost = 10;
    conf->migration_downtime_start = 20;
    /* 4 MiB: four of the mirror's largest requests in flight. QEMU frees
     * the buffer when the job ends, inside the guest's pause (see
     * docs/bench.md, "The mirror's buffer"). */
    conf->migration_mirror_buf_size = 4 * 1024 * 1024;
    conf->priority_boost = 10;
    conf->max_clients = 64;
    conf->max_message_size = 1024 * 1024;
    conf->max_requests_per_client = 32;
    conf->shutdown_timeout = 60;
    return conf;
}

/* Free the strings of conf, not conf itself. */
static void
conf_clear_strings(HandoverdConf *conf)
{
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(conf_keys); i++) {
        if (conf_type_is_string(conf_keys[i].type))
            g_clear_pointer(conf_str_field(conf, &conf_keys[i]), g_free);
    }
}

void
handoverd_conf_free(HandoverdConf *conf)
{
    if (!conf)
        return;
    conf_clear_strings(conf);
    g_free(conf);
}

static HandoverdConf *
conf_copy(const HandoverdConf *conf)
{
    HandoverdConf *copy = g_new0(HandoverdConf, 1);
    size_t i;

    *copy = *conf;
    for (i = 0; i < G_N_ELEMENTS(conf_keys); i++) {
        if (conf_type_is_string(conf_keys[i].type)) {
            char **field = conf_str_field(copy, &conf_keys[i]);

            *field = g_strdup(*field);
        }
    }
    return copy;
}

static const ConfKey *
conf_key_find(const char *name)
{
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(conf_keys); i++) {
        if (strcmp(conf_keys[i].key, name) == 0)
            return &conf_keys[i];
    }
    return NULL;
}

/* Report a bad value; reason is a whole, translated clause. */
static void
conf_report_value(const char *name, const char *key, const char *value, const char *reason)
{
    ho_error_report(HO_ERR_INVALID_ARG,
                    _("invalid value '%4$s' for key '%3$s' in group '[%2$s]' of "
                      "configuration file '%1$s': %5$s"),
                    name, HANDOVERD_CONF_GROUP, key, value, reason);
}

static bool
conf_address_valid(const char *value)
{
    const char *p;

    if (g_hostname_is_ip_address(value))
        return true;
    /* A DNS name: labels of letters, digits and '-', separated by dots. */
    if (*value == '.' || *value == '-' || strlen(value) > 253)
        return false;
    for (p = value; *p; p++) {
        if (!g_ascii_isalnum(*p) && *p != '-' && *p != '.')
            return false;
        if (*p == '.' && (p[1] == '.' || p[1] == '-'))
            return false;
    }
    return true;
}

static bool
conf_log_module_valid(const char *name)
{
    const char *p;

    if (!*name || *name == '.')
        return false;
    for (p = name; *p; p++) {
        if (!g_ascii_isalnum(*p) && *p != '.' && *p != '_' && *p != '-')
            return false;
    }
    return true;
}

/* The grammar ho_log_set_filters() accepts, checked without applying it:
 * applying happens only once the whole file is known to be good. */
static bool
conf_log_filters_valid(const char *spec)
{
    g_auto(GStrv) items = g_strsplit(spec, ",", -1);
    size_t i;

    for (i = 0; items[i]; i++) {
        char *item = g_strstrip(items[i]);
        char *colon;
        HoLogLevel level;

        if (!*item)
            continue;
        colon = strchr(item, ':');
        if (!colon || strchr(colon + 1, ':'))
            return false;
        *colon = '\0';
        if (!conf_log_module_valid(g_strstrip(item)))
            return false;
        if (ho_log_level_parse(g_strstrip(colon + 1), &level) < 0) {
            ho_error_reset();
            return false;
        }
    }
    return true;
}

static bool
conf_emulator_valid(const char *value)
{
    g_autofree char *found = NULL;

    if (strchr(value, '/')) {
        if (!g_path_is_absolute(value))
            return false;
        return g_file_test(value, G_FILE_TEST_IS_EXECUTABLE) &&
               !g_file_test(value, G_FILE_TEST_IS_DIR);
    }
    found = g_find_program_in_path(value);
    return found != NULL;
}

/* Parse one value into staged; -1 and an error naming name, key, value. */
static int
conf_apply_value(HandoverdConf *staged, const ConfKey *k, const char *name, GKeyFile *kf)
{
    g_autoptr(GError) gerr = NULL;
    g_autofree char *raw = g_key_file_get_value(kf, HANDOVERD_CONF_GROUP, k->key, NULL);
    g_autofree char *value = NULL;
    guint64 num = 0;

    if (!raw)
        raw = g_strdup("");
    if (!*raw) {
        conf_report_value(name, k->key, raw, _("the value is empty"));
        return -1;
    }

    if (conf_type_is_string(k->type)) {
        /* Strings may use GKeyFile's escapes (\s, \\, ...). */
        value = g_key_file_get_string(kf, HANDOVERD_CONF_GROUP, k->key, &gerr);
        /* GLib may return the raw text together with an error. */
        if (!value || gerr) {
            conf_report_value(name, k->key, raw,
                              _("expected text whose escapes are \\s, \\n, \\t, \\r "
                                "or \\\\"));
            return -1;
        }
    }

    switch (k->type) {
    case CONF_PATH:
        if (!g_path_is_absolute(value)) {
            conf_report_value(name, k->key, raw, _("expected an absolute path"));
            return -1;
        }
        break;
    case CONF_SOCKET:
        if (!g_path_is_absolute(value) ||
            strlen(value) >= sizeof(((struct sockaddr_un *)NULL)->sun_path)) {
            conf_report_value(name, k->key, raw,
                              _("expected an absolute path of at most 107 bytes"));
            return -1;
        }
        break;
    case CONF_ADDRESS:
        if (!conf_address_valid(value)) {
            conf_report_value(name, k->key, raw, _("expected a host name or an IP address"));
            return -1;
        }
        break;
    case CONF_UUID:
        if (!g_uuid_string_is_valid(value)) {
            conf_report_value(name, k->key, raw,
                              _("expected a UUID such as "
                                "'4dea22b3-1d52-d8f3-2516-782e98ab3fa0'"));
            return -1;
        }
        {
            char *lower = g_ascii_strdown(value, -1);

            g_free(value);
            value = lower;
        }
        break;
    case CONF_EMULATOR:
        if (!conf_emulator_valid(value)) {
            conf_report_value(name, k->key, raw,
                              _("expected an executable program: an absolute path or "
                                "a name found on PATH"));
            return -1;
        }
        break;
    case CONF_LOG_LEVEL: {
        HoLogLevel level;

        if (ho_log_level_parse(value, &level) < 0) {
            ho_error_reset();
            conf_report_value(name, k->key, raw,
                              _("expected one of 'debug', 'info', 'warn', 'error'"));
            return -1;
        }
        break;
    }
    case CONF_LOG_FILTERS:
        if (!conf_log_filters_valid(value)) {
            conf_report_value(name, k->key, raw,
                              _("expected 'module:level' items separated by commas"));
            return -1;
        }
        break;
    case CONF_UINT:
    case CONF_SIZE:
        if (!g_ascii_string_to_unsigned(raw, 10, k->min, k->max, &num, NULL)) {
            g_autofree char *reason =
                g_strdup_printf(_("expected an integer from %1$llu to %2$llu"),
                                (unsigned long long)k->min, (unsigned long long)k->max);

            conf_report_value(name, k->key, raw, reason);
            return -1;
        }
        if (k->type == CONF_UINT)
            *(unsigned int *)((char *)staged + k->offset) = (unsigned int)num;
        else
            *(size_t *)((char *)staged + k->offset) = (size_t)num;
        return 0;
    case CONF_MODE:
        if (!g_ascii_string_to_unsigned(raw, 8, k->min, k->max, &num, NULL)) {
            conf_report_value(name, k->key, raw,
                              _("expected an octal file mode from 0000 to 0777 such as '0600'"));
            return -1;
        }
        *(mode_t *)((char *)staged + k->offset) = (mode_t)num;
        return 0;
    case CONF_LAST:
    default:
        ho_error_report(HO_ERR_INTERNAL, _("unhandled type of configuration key '%1$s'"), k->key);
        return -1;
    }

    g_free(*conf_str_field(staged, k));
    *conf_str_field(staged, k) = g_steal_pointer(&value);
    return 0;
}

int
handoverd_conf_load_data(HandoverdConf *conf, const char *data, size_t len, const char *name)
{
    g_autoptr(GKeyFile) kf = g_key_file_new();
    g_autoptr(GError) gerr = NULL;
    g_auto(GStrv) groups = NULL;
    g_auto(GStrv) keys = NULL;
    HandoverdConf *staged;
    size_t i;

    /* Keeping translations shows "key[de]" as a key, refused like any unknown one. */
    if (!g_key_file_load_from_data(kf, data, len, G_KEY_FILE_KEEP_TRANSLATIONS, &gerr)) {
        ho_error_report(HO_ERR_INVALID_ARG, _("cannot parse configuration file '%1$s': %2$s"),
                        name, gerr->message);
        return -1;
    }

    groups = g_key_file_get_groups(kf, NULL);
    for (i = 0; groups[i]; i++) {
        if (strcmp(groups[i], HANDOVERD_CONF_GROUP) != 0) {
            ho_error_report(HO_ERR_INVALID_ARG,
                            _("unknown group '[%2$s]' in configuration file '%1$s': "
                              "the only group is '[%3$s]'"),
                            name, groups[i], HANDOVERD_CONF_GROUP);
            return -1;
        }
    }
    if (!g_key_file_has_group(kf, HANDOVERD_CONF_GROUP))
        return 0; /* an empty file: all defaults */

    keys = g_key_file_get_keys(kf, HANDOVERD_CONF_GROUP, NULL, NULL);
    staged = conf_copy(conf);
    for (i = 0; keys && keys[i]; i++) {
        const ConfKey *k = conf_key_find(keys[i]);

        if (!k) {
            ho_error_report(HO_ERR_INVALID_ARG,
                            _("unknown key '%3$s' in group '[%2$s]' of configuration "
                              "file '%1$s'"),
                            name, HANDOVERD_CONF_GROUP, keys[i]);
            handoverd_conf_free(staged);
            return -1;
        }
        if (conf_apply_value(staged, k, name, kf) < 0) {
            handoverd_conf_free(staged);
            return -1;
        }
    }
    if (staged->migration_port_min > staged->migration_port_max) {
        ho_error_report(HO_ERR_INVALID_ARG,
                        _("invalid migration port range in group '[%2$s]' of configuration "
                          "file '%1$s': migration_port_min '%3$u' is greater than "
                          "migration_port_max '%4$u'"),
                        name, HANDOVERD_CONF_GROUP, staged->migration_port_min,
                        staged->migration_port_max);
        handoverd_conf_free(staged);
        return -1;
    }
    if (staged->nbd_port_min > staged->nbd_port_max) {
        ho_error_report(HO_ERR_INVALID_ARG,
                        _("invalid NBD port range in group '[%2$s]' of configuration file "
                          "'%1$s': nbd_port_min '%3$u' is greater than nbd_port_max '%4$u'"),
                        name, HANDOVERD_CONF_GROUP, staged->nbd_port_min, staged->nbd_port_max);
        handoverd_conf_free(staged);
        return -1;
    }
    /* A storage copy's NBD server and its incoming migration listen at
     * once; QEMU 10.0 cannot retry migrate-incoming on another port after
     * one was taken, so the two must never compete for a port. */
    if (staged->nbd_port_min <= staged->migration_port_max &&
        staged->migration_port_min <= staged->nbd_port_max) {
        ho_error_report(HO_ERR_INVALID_ARG,
                        _("invalid port ranges in group '[%2$s]' of configuration file '%1$s': "
                          "the NBD ports %3$u-%4$u overlap the migration ports %5$u-%6$u"),
                        name, HANDOVERD_CONF_GROUP, staged->nbd_port_min, staged->nbd_port_max,
                        staged->migration_port_min, staged->migration_port_max);
        handoverd_conf_free(staged);
        return -1;
    }

    conf_clear_strings(conf);
    *conf = *staged;
    g_free(staged);
    HO_DEBUG("loaded configuration file '%s'", name);
    return 0;
}

int
handoverd_conf_load_file(HandoverdConf *conf, const char *path)
{
    g_autofree char *data = NULL;
    size_t len = 0;

    if (ho_file_read_all(path, CONF_FILE_MAX, &data, &len) < 0)
        return -1;
    return handoverd_conf_load_data(conf, data, len, path);
}

void
handoverd_conf_host_default(HandoverdConfHost *host)
{
    host->system = geteuid() == 0;
    host->runtime_base = g_get_user_runtime_dir();
    host->data_base = g_get_user_data_dir();
}

static void
conf_default(char **field, char *value)
{
    if (*field)
        g_free(value);
    else
        *field = value;
}

int
handoverd_conf_finish(HandoverdConf *conf, const char *root, const HandoverdConfHost *host)
{
    if (root) {
        g_autofree char *abs = NULL;

        if (!*root) {
            ho_error_report(HO_ERR_INVALID_ARG, _("the root directory '%1$s' is empty"), root);
            return -1;
        }
        abs = g_canonicalize_filename(root, NULL);
        g_free(conf->state_dir);
        conf->state_dir = g_build_filename(abs, "state", NULL);
        g_free(conf->runtime_dir);
        conf->runtime_dir = g_build_filename(abs, "run", NULL);
        g_free(conf->log_dir);
        conf->log_dir = g_build_filename(abs, "log", NULL);
        g_free(conf->socket_path);
        conf->socket_path = g_build_filename(abs, "run", "handoverd.sock", NULL);
    } else if (host->system) {
        conf_default(&conf->state_dir, g_strdup("/var/lib/handover"));
        conf_default(&conf->runtime_dir, g_strdup("/run/handover"));
        conf_default(&conf->log_dir, g_strdup("/var/log/handover"));
    } else {
        conf_default(&conf->state_dir, g_build_filename(host->data_base, "handover", NULL));
        conf_default(&conf->runtime_dir, g_build_filename(host->runtime_base, "handover", NULL));
        conf_default(&conf->log_dir, g_build_filename(host->data_base, "handover", "log", NULL));
    }
    conf_default(&conf->socket_path, g_build_filename(conf->runtime_dir, "handoverd.sock", NULL));
    if (strlen(conf->socket_path) >= sizeof(((struct sockaddr_un *)NULL)->sun_path)) {
        ho_error_report(HO_ERR_INVALID_ARG,
                        _("the socket path '%1$s' is longer than a UNIX socket allows"),
                        conf->socket_path);
        return -1;
    }
    return 0;
}

int
handoverd_conf_ensure_host_uuid(HandoverdConf *conf)
{
    g_autofree char *path = NULL;
    g_autofree char *data = NULL;
    g_autofree char *fresh = NULL;
    size_t len = 0;
    struct stat st;

    if (conf->host_uuid)
        return 0;
    path = g_build_filename(conf->state_dir, "host-uuid", NULL);

    if (lstat(path, &st) == 0) {
        if (ho_file_read_all(path, HOST_UUID_FILE_MAX, &data, &len) < 0)
            return -1;
        g_strstrip(data);
        if (!g_uuid_string_is_valid(data)) {
            ho_error_report(HO_ERR_INVALID_ARG,
                            _("the host UUID file '%1$s' does not hold a UUID: '%2$s'"), path,
                            data);
            return -1;
        }
        conf->host_uuid = g_ascii_strdown(data, -1);
        return 0;
    }
    if (errno != ENOENT) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot stat '%1$s'"), path);
        return -1;
    }

    /* First start: this host's identity from now on. */
    fresh = g_uuid_string_random();
    data = g_strdup_printf("%s\n", fresh);
    if (ho_file_write_atomic(path, data, strlen(data), 0644) < 0)
        return -1;
    HO_INFO("generated host UUID %s in '%s'", fresh, path);
    conf->host_uuid = g_steal_pointer(&fresh);
    return 0;
}

char *
handoverd_conf_format(const HandoverdConf *conf)
{
    GString *out = g_string_new(NULL);
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(conf_keys); i++) {
        const ConfKey *k = &conf_keys[i];
        const char *base = (const char *)conf;

        g_string_append_printf(out, "%s = ", k->key);
        switch (k->type) {
        case CONF_UINT:
            g_string_append_printf(out, "%u", *(const unsigned int *)(base + k->offset));
            break;
        case CONF_SIZE:
            g_string_append_printf(out, "%zu", *(const size_t *)(base + k->offset));
            break;
        case CONF_MODE:
            g_string_append_printf(out, "%04o", (unsigned int)*(const mode_t *)(base + k->offset));
            break;
        default: {
            const char *value = conf_str_value(conf, k);

            g_string_append(out, value ? value : "(unset)");
            break;
        }
        }
        g_string_append_c(out, '\n');
    }
    return g_string_free(out, FALSE);
}

/* A dead peer is noticed after (count + 2) x interval at most: keep that
 * within the postcopy stall timeout, so a silently dropped link in
 * postcopy is forced into postcopy-paused in time (docs/handoverd.md). */
#define CONF_PEER_KEEPALIVE_MAX_COUNT 3
#define CONF_PEER_KEEPALIVE_MIN_MS 200

void
handoverd_conf_peer_keepalive(const HandoverdConf *conf, unsigned int *interval_ms,
                              unsigned int *count)
{
    guint64 iv = (guint64)conf->keepalive_interval * 1000;
    guint64 bound = (guint64)conf->postcopy_stall_timeout * 1000 /
                    (CONF_PEER_KEEPALIVE_MAX_COUNT + 2);
    unsigned int n = conf->keepalive_count;

    if (iv == 0) {
        *interval_ms = 0;
        *count = 0;
        return;
    }
    if (bound < CONF_PEER_KEEPALIVE_MIN_MS)
        bound = CONF_PEER_KEEPALIVE_MIN_MS;
    if (iv > bound)
        iv = bound;
    if (n == 0 || n > CONF_PEER_KEEPALIVE_MAX_COUNT)
        n = CONF_PEER_KEEPALIVE_MAX_COUNT;
    *interval_ms = (unsigned int)iv;
    *count = n;
}
