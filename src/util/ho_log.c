/*
 * Logging.
 *
 * One process-wide configuration (default level, filters, output fd)
 * guarded by one mutex. Each line is formatted outside the lock and written
 * with a single write() under it, so lines from several threads (and, with
 * O_APPEND, several processes sharing a file) never interleave.
 *
 * This file must never call ho_error_report() from a logging path: error
 * reporting logs, so that would recurse. Only the public configuration
 * functions report errors, and only after dropping the lock.
 */
#define HO_LOG_MODULE "util.log"

#include "ho_log.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "ho_error.h"
#include "ho_i18n.h"

typedef struct {
    char *match;      /* module name or prefix */
    size_t len;       /* strlen(match) */
    HoLogLevel level; /* level for matching modules */
} LogFilter;

static GMutex log_lock;
static HoLogLevel log_level = HO_LOG_WARN; /* for modules no filter matches */
static LogFilter *log_filters;             /* in spec order */
static size_t log_nfilters;
static int log_fd = -1; /* -1: stderr */

static const char *const log_level_names[] = {
    [HO_LOG_DEBUG] = "debug",
    [HO_LOG_INFO] = "info",
    [HO_LOG_WARN] = "warn",
    [HO_LOG_ERROR] = "error",
};
G_STATIC_ASSERT(G_N_ELEMENTS(log_level_names) == HO_LOG_LAST);

gint64
ho_time_now_us(void)
{
    /* CLOCK_MONOTONIC on Linux: comparable between processes on one host. */
    return g_get_monotonic_time();
}

const char *
ho_log_level_name(HoLogLevel level)
{
    if ((int)level < 0 || level >= HO_LOG_LAST)
        return "unknown";
    return log_level_names[level];
}

static bool
log_level_lookup(const char *name, HoLogLevel *level)
{
    size_t i;

    if (!name)
        return false;
    for (i = 0; i < G_N_ELEMENTS(log_level_names); i++) {
        if (g_ascii_strcasecmp(name, log_level_names[i]) == 0) {
            *level = i;
            return true;
        }
    }
    if (g_ascii_strcasecmp(name, "warning") == 0) {
        *level = HO_LOG_WARN;
        return true;
    }
    return false;
}

int
ho_log_level_parse(const char *name, HoLogLevel *level)
{
    HoLogLevel tmp;

    if (!log_level_lookup(name, &tmp)) {
        ho_error_report(HO_ERR_INVALID_ARG, _("unknown log level '%1$s'"), name ? name : "");
        return -1;
    }
    *level = tmp;
    return 0;
}

static void
log_filters_free(LogFilter *filters, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        g_free(filters[i].match);
    g_free(filters);
}

static bool
log_module_name_valid(const char *name)
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

/*
 * Parse "module:level,prefix:level". Returns a translated reason in *reason
 * instead of reporting it, so that ho_log_init can use it without touching
 * the caller's error slot.
 */
static int
log_filters_parse(const char *spec, LogFilter **filters, size_t *nfilters, char **reason)
{
    g_auto(GStrv) items = NULL;
    LogFilter *out = NULL;
    size_t n = 0;
    size_t i;

    if (!spec || !*spec) {
        *filters = NULL;
        *nfilters = 0;
        return 0;
    }

    items = g_strsplit(spec, ",", -1);
    out = g_new0(LogFilter, g_strv_length(items));
    for (i = 0; items[i]; i++) {
        char *item = g_strstrip(items[i]);
        char *colon;
        char *name;
        char *level_name;
        HoLogLevel level;

        if (!*item)
            continue; /* tolerate "a:debug," */
        colon = strchr(item, ':');
        if (!colon || strchr(colon + 1, ':')) {
            *reason = g_strdup_printf(_("invalid log filter '%1$s': expected 'module:level'"),
                                      item);
            goto error;
        }
        *colon = '\0';
        name = g_strstrip(item);
        level_name = g_strstrip(colon + 1);
        if (!log_module_name_valid(name)) {
            *reason = g_strdup_printf(_("invalid log filter '%1$s:%2$s': bad module name"),
                                      name, level_name);
            goto error;
        }
        if (!log_level_lookup(level_name, &level)) {
            *reason = g_strdup_printf(_("invalid log filter '%1$s:%2$s': unknown level '%2$s'"),
                                      name, level_name);
            goto error;
        }
        out[n].match = g_strdup(name);
        out[n].len = strlen(name);
        out[n].level = level;
        n++;
    }
    *filters = out;
    *nfilters = n;
    return 0;

error:
    log_filters_free(out, n);
    return -1;
}

static void
log_filters_replace(LogFilter *filters, size_t n)
{
    LogFilter *old;
    size_t old_n;

    g_mutex_lock(&log_lock);
    old = log_filters;
    old_n = log_nfilters;
    log_filters = filters;
    log_nfilters = n;
    g_mutex_unlock(&log_lock);
    log_filters_free(old, old_n);
}

int
ho_log_set_filters(const char *spec)
{
    LogFilter *filters = NULL;
    size_t n = 0;
    g_autofree char *reason = NULL;

    if (log_filters_parse(spec, &filters, &n, &reason) < 0) {
        ho_error_report(HO_ERR_INVALID_ARG, "%s", reason);
        return -1;
    }
    log_filters_replace(filters, n);
    return 0;
}

void
ho_log_set_level(HoLogLevel level)
{
    if ((int)level < 0 || level >= HO_LOG_LAST)
        return;
    g_mutex_lock(&log_lock);
    log_level = level;
    g_mutex_unlock(&log_lock);
}

static void
log_fd_replace(int fd)
{
    int old;

    g_mutex_lock(&log_lock);
    old = log_fd;
    log_fd = fd;
    g_mutex_unlock(&log_lock);
    if (old >= 0)
        close(old);
}

static int
log_open(const char *path)
{
    int fd;

    do {
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
    } while (fd < 0 && errno == EINTR);
    return fd;
}

int
ho_log_set_output(const char *path)
{
    int fd = -1;

    if (path) {
        fd = log_open(path);
        if (fd < 0) {
            ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot open log file '%1$s'"), path);
            return -1;
        }
    }
    log_fd_replace(fd);
    return 0;
}

/* The level in force for module; call with the lock held. */
static HoLogLevel
log_level_for(const char *module)
{
    HoLogLevel level = log_level;
    size_t best = 0;
    bool found = false;
    size_t i;

    for (i = 0; i < log_nfilters; i++) {
        const LogFilter *f = &log_filters[i];

        if (strncmp(module, f->match, f->len) != 0)
            continue;
        if (module[f->len] != '\0' && module[f->len] != '.')
            continue;
        /* Longest match wins; of equal ones, the later. */
        if (!found || f->len >= best) {
            found = true;
            best = f->len;
            level = f->level;
        }
    }
    return level;
}

bool
ho_log_enabled(HoLogLevel level, const char *module)
{
    bool enabled;

    if (!module)
        module = "handover";
    g_mutex_lock(&log_lock);
    enabled = level >= log_level_for(module);
    g_mutex_unlock(&log_lock);
    return enabled;
}

static void
log_write_line(const char *line, size_t len)
{
    size_t done = 0;

    g_mutex_lock(&log_lock);
    while (done < len) {
        ssize_t n = write(log_fd >= 0 ? log_fd : STDERR_FILENO, line + done, len - done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* nowhere to report a failing log; drop the line */
        done += n;
    }
    g_mutex_unlock(&log_lock);
}

static void G_GNUC_PRINTF(5, 0)
log_emit(HoLogLevel level, const char *module, const char *func, int line, const char *fmt,
         va_list ap)
{
    gint64 now = ho_time_now_us();
    g_autofree char *message = g_strdup_vprintf(fmt, ap);
    g_autofree char *text = NULL;
    size_t mlen = strlen(message);

    /* The line ends with exactly one newline, whatever the caller wrote. */
    while (mlen > 0 && message[mlen - 1] == '\n')
        message[--mlen] = '\0';

    text = g_strdup_printf("%" G_GINT64_FORMAT " %s %s %s:%d: %s\n", now,
                           ho_log_level_name(level), module ? module : "handover",
                           func ? func : "?", line, message);
    log_write_line(text, strlen(text));
}

void
ho_log_message(HoLogLevel level, const char *module, const char *func, int line,
               const char *fmt, ...)
{
    int saved_errno = errno;
    va_list ap;

    if (!ho_log_enabled(level, module)) {
        errno = saved_errno;
        return;
    }
    va_start(ap, fmt);
    log_emit(level, module, func, line, fmt, ap);
    va_end(ap);
    errno = saved_errno;
}

/* A warning about the configuration itself: written whatever the filters say. */
static void G_GNUC_PRINTF(2, 3)
log_config_warning(int line, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_emit(HO_LOG_WARN, HO_LOG_MODULE, "ho_log_init", line, fmt, ap);
    va_end(ap);
}

void
ho_log_init(void)
{
    const char *output = g_getenv("HANDOVER_LOG_OUTPUT");
    const char *level_name = g_getenv("HANDOVER_LOG_LEVEL");
    const char *spec = g_getenv("HANDOVER_LOG_FILTERS");
    int saved_errno = errno;

    /* Unset variables keep the current setting; a bad one keeps it too. */
    if (output) {
        if (!*output) {
            log_fd_replace(-1);
        } else {
            int fd = log_open(output);

            if (fd < 0) {
                log_config_warning(__LINE__, _("ignoring %1$s='%2$s': %3$s"),
                                   "HANDOVER_LOG_OUTPUT", output, g_strerror(errno));
            } else {
                log_fd_replace(fd);
            }
        }
    }

    if (level_name && *level_name) {
        HoLogLevel level;

        if (log_level_lookup(level_name, &level)) {
            ho_log_set_level(level);
        } else {
            log_config_warning(__LINE__, _("ignoring %1$s='%2$s': unknown log level"),
                               "HANDOVER_LOG_LEVEL", level_name);
        }
    }

    if (spec) {
        LogFilter *filters = NULL;
        size_t n = 0;
        g_autofree char *reason = NULL;

        if (log_filters_parse(spec, &filters, &n, &reason) < 0) {
            log_config_warning(__LINE__, _("ignoring %1$s='%2$s': %3$s"),
                               "HANDOVER_LOG_FILTERS", spec, reason);
        } else {
            log_filters_replace(filters, n);
        }
    }
    errno = saved_errno;
}
