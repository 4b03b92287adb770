/*
 * The QEMU driver: definitions, runtime status and the lifecycle of the
 * QEMU processes of this host.
 *
 * Everything runs on the driver's context. An operation that waits on
 * QEMU is a chain of callbacks; its completion runs exactly once, never
 * re-entrantly from the call that started it (refusals complete from an
 * idle callback). The driver must not be freed from inside one of its own
 * callbacks.
 *
 * Files:
 *   state_dir/domains/NAME.xml    persistent definitions
 *   state_dir/caps/HASH.json      capabilities and machine types per emulator
 *   runtime_dir/domains/NAME.json status of a running domain
 *   runtime_dir/domains/NAME.qmp  its QMP socket (QEMU listens on it)
 *   log_dir/NAME.log              QEMU's stdout/stderr and our own lines
 *
 * Process exit is the one authority on a domain stopping: a child watch
 * for QEMUs we started, a pidfd for those found after a restart (they are
 * not our children and PID 1 reaps them late). The monitor closing is only
 * a hint; a QEMU whose monitor went away keeps running and is reported
 * with reason "monitor-unavailable".
 */
#define HO_LOG_MODULE "qemu.driver"

#include "qemu_driver.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib-unix.h>

#include "ho_error.h"
#include "ho_file.h"
#include "ho_i18n.h"
#include "ho_json.h"
#include "ho_log.h"
#include "qemu_command.h"
#include "qemu_monitor_json.h"
#include "qemu_process.h"
#include "qemu_recorder.h"

/* Largest status file (it carries the live XML) and capabilities cache file. */
#define STATUS_FILE_MAX (QEMU_DOMAIN_XML_MAX + 64 * 1024)
#define CAPS_FILE_MAX (16 * 1024 * 1024)
/* The format of the capabilities cache; a file of another format is reprobed. */
#define CAPS_FILE_FORMAT 1
/* Bounded waits. */
#define MONITOR_READY_TIMEOUT_S 30
#define CAPS_PROBE_TIMEOUT_S 60 /* default of probe_timeout_s */
#define CAPS_PROBE_ATTEMPTS 2 /* a probe that timed out is tried again once */
#define DESTROY_KILL_DELAY_S 3
#define DEFAULT_SHUTDOWN_TIMEOUT_S 60
/* How much of QEMU's own output an error message quotes. */
#define LOG_TAIL_MAX 2048

static const char *const state_names[] = {
    [QEMU_DOMAIN_STATE_SHUTOFF] = "shutoff",
    [QEMU_DOMAIN_STATE_RUNNING] = "running",
    [QEMU_DOMAIN_STATE_PAUSED] = "paused",
    [QEMU_DOMAIN_STATE_SHUTTING_DOWN] = "shutting-down",
    [QEMU_DOMAIN_STATE_CRASHED] = "crashed",
};
G_STATIC_ASSERT(G_N_ELEMENTS(state_names) == QEMU_DOMAIN_STATE_LAST);

/* Reasons that are also status file values or event details. */
#define REASON_STARTING "starting"
#define REASON_MONITOR_UNAVAILABLE "monitor-unavailable"

typedef struct _StartOp StartOp;
typedef struct _CapsEntry CapsEntry;
typedef struct _CapsProbe CapsProbe;

typedef struct {
    QemuDriverDoneFunc cb;
    void *opaque;
} Waiter;

struct _QemuDomainObj {
    gint refs;
    QemuDriver *drv; /* NULL once the driver is gone or dropped this domain */
    char *name;
    char uuid[37];
    QemuDomainDef *def; /* persistent definition; NULL when transient */
    bool persistent;
    QemuDomainState state;
    char *reason;
    bool forced; /* the last shutdown killed QEMU */

    /* While a QEMU exists (pid > 0). */
    GPid pid;
    unsigned long long start_time;
    bool own_child;        /* watched with a child watch, else with the pidfd */
    GSource *child_watch;
    int pidfd;
    GSource *pidfd_watch;
    QemuDomainDef *live_def;
    char *emulator;
    char *accel;
    char *monitor_path;
    QemuMonitor *mon;
    GSource *mon_timeout;  /* bounded wait for the greeting */
    QemuCaps *caps;
    json_object *job;      /* the migration job's persisted state, or NULL */
    bool reconnecting;     /* found at open, not confirmed yet */
    bool abandon;          /* found half-started at open: killed */
    bool shutdown_event;   /* QEMU announced SHUTDOWN */
    bool shutdown_requested;
    bool destroy_requested;
    const char *pause_reason; /* reason for the next STOP (we asked for it) */
    GSource *shutdown_timer;
    GSource *kill_timer;
    StartOp *start;
    GPtrArray *stop_waiters; /* Waiter: shutdown and destroy, completed at exit */
    bool migrated_out;       /* migrated away: QEMU quit on purpose, reason "migrated" */
    GPtrArray *exit_watches; /* ExitWatch: the migration's interest in QEMU's exit */
    guint exit_watch_serial;
};

typedef struct {
    guint id;
    QemuDomainExitFunc fn;
    void *opaque;
} ExitWatch;

struct _QemuDriver {
    char *state_dir;
    char *runtime_dir;
    char *log_dir;
    char *default_emulator;
    unsigned int shutdown_timeout_s;
    unsigned int probe_timeout_s;
    char *defs_dir;
    char *status_dir;
    char *caps_dir;
    GMainContext *ctx;
    QemuDriverEventFunc event_cb;
    void *opaque;
    QemuRecorder *recorder;
    int (*spawn_hook)(const QemuProcessSpawn *opts, GPid *pid, void *opaque);
    bool qemu_nice_set;
    int qemu_nice;
    void *spawn_hook_opaque;
    const char *accel;
    const char *accel_why;
    GHashTable *domains; /* name (the object's) -> QemuDomainObj (a reference) */
    GHashTable *caps;    /* resolved emulator path -> CapsEntry */
    GPtrArray *probes;   /* CapsProbe, until their QEMU is reaped */
    GQueue later;        /* Later: completions and events for the next idle */
    guint queued_events; /* events among them: later ones queue behind */
    GSource *later_source;
    guint probe_serial;
    bool closing;
};

/* ---- small helpers ------------------------------------------------------ */

/* qemu_process_spawn, or the tests' stand-in. */
static int
driver_spawn(QemuDriver *drv, const QemuProcessSpawn *opts, GPid *pid)
{
    QemuProcessSpawn o = *opts;

    o.set_nice = drv->qemu_nice_set;
    o.nice = drv->qemu_nice;
    if (drv->spawn_hook)
        return drv->spawn_hook(&o, pid, drv->spawn_hook_opaque);
    return qemu_process_spawn(&o, pid);
}

const char *
qemu_domain_state_to_string(QemuDomainState state)
{
    if ((int)state < 0 || state >= QEMU_DOMAIN_STATE_LAST)
        return "unknown";
    return state_names[state];
}

static int
domain_state_from_string(const char *s)
{
    for (int i = 0; i < QEMU_DOMAIN_STATE_LAST; i++) {
        if (g_str_equal(state_names[i], s))
            return i;
    }
    return -1;
}

static void
clear_source(GSource **src)
{
    if (*src) {
        g_source_destroy(*src);
        g_clear_pointer(src, g_source_unref);
    }
}

static GSource *
attach_timeout(QemuDriver *drv, unsigned int seconds, GSourceFunc fn, void *data)
{
    GSource *src = g_timeout_source_new_seconds(seconds);

    g_source_set_callback(src, fn, data, NULL);
    g_source_attach(src, drv->ctx);
    return src;
}

/* A new error with a formatted message (the format is translated by the caller). */
static HoError *
error_new(HoErrorCode code, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static HoError *
error_new(HoErrorCode code, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    return ho_error_new(code, "%s", msg);
}

/* The per-thread error, taken out of the slot (never NULL). */
static HoError *
error_take(void)
{
    HoError *err = ho_error_steal();

    return err ? err : ho_error_new(HO_ERR_INTERNAL, "%s", _("unknown error"));
}

/* "exited with status 1", "killed by signal 9", or "exited" when unknown. */
static char *
describe_exit(bool have_status, int status)
{
    if (have_status && WIFEXITED(status))
        return g_strdup_printf(_("exited with status %1$d"), WEXITSTATUS(status));
    if (have_status && WIFSIGNALED(status))
        return g_strdup_printf(_("killed by signal %1$d (%2$s)"), WTERMSIG(status),
                               g_strsignal(WTERMSIG(status)));
    return g_strdup(_("exited"));
}

/* A process's state letter and kernel wait channel from /proc, for an
 * error message ("state S, waiting in do_sys_poll"). */
static char *
proc_state(GPid pid)
{
    g_autofree char *stat_path = g_strdup_printf("/proc/%d/stat", (int)pid);
    g_autofree char *wchan_path = g_strdup_printf("/proc/%d/wchan", (int)pid);
    g_autofree char *stat = NULL, *wchan = NULL;
    const char *rest;
    char state = '?';

    if (!g_file_get_contents(stat_path, &stat, NULL, NULL))
        return g_strdup(_("no such process"));
    rest = strrchr(stat, ')');
    if (rest && rest[1] == ' ' && rest[2])
        state = rest[2];
    if (!g_file_get_contents(wchan_path, &wchan, NULL, NULL) || !*wchan || g_str_equal(wchan, "0"))
        return g_strdup_printf(_("state %1$c"), state);
    return g_strdup_printf(_("state %1$c, waiting in %2$s"), state, wchan);
}

/* The last line QEMU wrote to a log after offset (at most LOG_TAIL_MAX bytes
 * looked at), or NULL. */
static char *
log_tail(const char *path, off_t from)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    char buf[LOG_TAIL_MAX + 1];
    off_t start;
    ssize_t n;
    g_auto(GStrv) lines = NULL;

    if (fd < 0)
        return NULL;
    if (fstat(fd, &st) < 0 || st.st_size <= from) {
        close(fd);
        return NULL;
    }
    start = MAX(from, st.st_size - LOG_TAIL_MAX);
    n = pread(fd, buf, LOG_TAIL_MAX, start);
    close(fd);
    if (n <= 0)
        return NULL;
    buf[n] = '\0';
    lines = g_strsplit(buf, "\n", -1);
    for (int i = (int)g_strv_length(lines) - 1; i >= 0; i--) {
        g_strstrip(lines[i]);
        /* QEMU's last word, not a line of ours (written on another
         * thread, it may land after QEMU's). */
        if (strstr(lines[i], " handoverd: "))
            continue;
        if (lines[i][0] && g_utf8_validate(lines[i], -1, NULL))
            return g_strdup(lines[i]);
    }
    return NULL;
}

/* ---- deferred completions and events ----------------------------------- */

typedef struct {
    void (*run)(QemuDriver *drv, void *data);
    void *data;
    GDestroyNotify free_data;
    bool is_event; /* dropped, not run, when the driver closes */
} Later;

static gboolean
later_dispatch(gpointer opaque)
{
    QemuDriver *drv = opaque;
    Later *l;

    while ((l = g_queue_pop_head(&drv->later))) {
        l->run(drv, l->data);
        if (l->free_data)
            l->free_data(l->data);
        g_free(l);
    }
    g_clear_pointer(&drv->later_source, g_source_unref);
    return G_SOURCE_REMOVE;
}

static void
driver_later(QemuDriver *drv, void (*run)(QemuDriver *drv, void *data), void *data,
             GDestroyNotify free_data, bool is_event)
{
    Later *l = g_new0(Later, 1);

    l->run = run;
    l->data = data;
    l->free_data = free_data;
    l->is_event = is_event;
    g_queue_push_tail(&drv->later, l);
    if (!drv->later_source) {
        drv->later_source = g_idle_source_new();
        g_source_set_callback(drv->later_source, later_dispatch, drv, NULL);
        g_source_set_static_name(drv->later_source, "qemu-driver-later");
        g_source_attach(drv->later_source, drv->ctx);
    }
}

typedef struct {
    QemuDomainObj *dom;
    QemuDriverDoneFunc cb;
    void *opaque;
    HoError *err;
} DoneLater;

static void
done_later_run(QemuDriver *drv, void *data)
{
    DoneLater *d = data;

    if (d->cb)
        d->cb(drv, d->dom, d->err, d->opaque);
}

static void
done_later_free(void *data)
{
    DoneLater *d = data;

    qemu_domain_obj_unref(d->dom);
    ho_error_free(d->err);
    g_free(d);
}

/* Complete an operation from an idle callback; consumes err (may be NULL). */
static void
complete_later(QemuDriver *drv, QemuDomainObj *dom, QemuDriverDoneFunc cb, void *opaque,
               HoError *err)
{
    DoneLater *d = g_new0(DoneLater, 1);

    d->dom = qemu_domain_obj_ref(dom);
    d->cb = cb;
    d->opaque = opaque;
    d->err = err;
    driver_later(drv, done_later_run, d, done_later_free, false);
}

static void emit_event_later(QemuDomainObj *dom, const char *event, const char *detail);

static void
emit_event(QemuDomainObj *dom, const char *event, const char *detail)
{
    QemuDriver *drv = dom->drv;

    if (drv && drv->queued_events > 0) {
        emit_event_later(dom, event, detail); /* keep the order */
        return;
    }
    HO_INFO("domain '%s': event %s%s%s", dom->name, event, detail ? " " : "",
            detail ? detail : "");
    if (drv && !drv->closing && drv->event_cb)
        drv->event_cb(drv, dom, event, detail, drv->opaque);
}

typedef struct {
    QemuDomainObj *dom;
    char *event;
    char *detail;
} EventLater;

static void
event_later_run(QemuDriver *drv, void *data)
{
    EventLater *e = data;

    drv->queued_events--;
    HO_INFO("domain '%s': event %s%s%s", e->dom->name, e->event, e->detail ? " " : "",
            e->detail ? e->detail : "");
    if (!drv->closing && drv->event_cb)
        drv->event_cb(drv, e->dom, e->event, e->detail, drv->opaque);
}

static void
event_later_free(void *data)
{
    EventLater *e = data;

    qemu_domain_obj_unref(e->dom);
    g_free(e->event);
    g_free(e->detail);
    g_free(e);
}

/* For what open() finds: the caller has no driver pointer until it returns. */
static void
emit_event_later(QemuDomainObj *dom, const char *event, const char *detail)
{
    EventLater *e = g_new0(EventLater, 1);

    e->dom = qemu_domain_obj_ref(dom);
    e->event = g_strdup(event);
    e->detail = g_strdup(detail);
    dom->drv->queued_events++;
    driver_later(dom->drv, event_later_run, e, event_later_free, true);
}

/* ---- domain objects ------------------------------------------------------ */

static QemuDomainObj *
dom_new(QemuDriver *drv, const char *name, const uint8_t uuid[16])
{
    QemuDomainObj *dom = g_new0(QemuDomainObj, 1);

    dom->refs = 1;
    dom->drv = drv;
    dom->name = g_strdup(name);
    qemu_domain_uuid_format(uuid, dom->uuid);
    dom->state = QEMU_DOMAIN_STATE_SHUTOFF;
    dom->pidfd = -1;
    dom->stop_waiters = g_ptr_array_new_with_free_func(g_free);
    dom->exit_watches = g_ptr_array_new_with_free_func(g_free);
    return dom;
}

QemuDomainObj *
qemu_domain_obj_ref(QemuDomainObj *dom)
{
    g_atomic_int_inc(&dom->refs);
    return dom;
}

void
qemu_domain_obj_unref(QemuDomainObj *dom)
{
    if (!dom || !g_atomic_int_dec_and_test(&dom->refs))
        return;
    /* Whatever was attached to a loop is gone by now (dom_release_runtime). */
    clear_source(&dom->child_watch);
    clear_source(&dom->pidfd_watch);
    clear_source(&dom->mon_timeout);
    clear_source(&dom->shutdown_timer);
    clear_source(&dom->kill_timer);
    if (dom->pidfd >= 0)
        close(dom->pidfd);
    if (dom->mon) {
        QemuMonitor *mon = g_steal_pointer(&dom->mon);

        qemu_monitor_close(mon);
        qemu_monitor_unref(mon);
    }
    qemu_domain_def_free(dom->def);
    qemu_domain_def_free(dom->live_def);
    qemu_caps_free(dom->caps);
    json_object_put(dom->job);
    g_ptr_array_unref(dom->stop_waiters);
    g_ptr_array_unref(dom->exit_watches);
    g_free(dom->emulator);
    g_free(dom->accel);
    g_free(dom->monitor_path);
    g_free(dom->reason);
    g_free(dom->name);
    g_free(dom);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(QemuDomainObj, qemu_domain_obj_unref)

static char *
dom_status_path(QemuDomainObj *dom)
{
    g_autofree char *file = g_strdup_printf("%s.json", dom->name);

    return g_build_filename(dom->drv->status_dir, file, NULL);
}

/* Where the QMP socket of a domain we start lives. */
static char *
dom_socket_path(QemuDomainObj *dom)
{
    g_autofree char *file = g_strdup_printf("%s.qmp", dom->name);

    return g_build_filename(dom->drv->status_dir, file, NULL);
}

static char *
dom_def_path(QemuDriver *drv, const char *name)
{
    g_autofree char *file = g_strdup_printf("%s.xml", name);

    return g_build_filename(drv->defs_dir, file, NULL);
}

static char *
dom_log_path(QemuDomainObj *dom)
{
    g_autofree char *file = g_strdup_printf("%s.log", dom->name);

    return g_build_filename(dom->drv->log_dir, file, NULL);
}

/* "<time> handoverd: <message>\n" */
static char *
dom_log_line(const char *fmt, va_list ap) G_GNUC_PRINTF(1, 0);

static char *
dom_log_line(const char *fmt, va_list ap)
{
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    g_autofree char *stamp = g_date_time_format_iso8601(now);

    return g_strdup_printf("%s handoverd: %s\n", stamp, msg);
}

/* A line of ours in the domain's log (QEMU writes its stderr there too),
 * written on the writer thread: never a wait on the disk in the loop. */
static void
dom_log(QemuDomainObj *dom, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void
dom_log(QemuDomainObj *dom, const char *fmt, ...)
{
    g_autofree char *path = NULL;
    g_autofree char *line = NULL;
    va_list ap;

    if (!dom->drv)
        return;
    va_start(ap, fmt);
    line = dom_log_line(fmt, ap);
    va_end(ap);
    path = dom_log_path(dom);
    ho_file_append_async(path, line, strlen(line));
}

/* The log's size now: QEMU's output from here on is past it (our own
 * lines, written later by the writer thread, may land past it too; log_tail
 * skips them). 0 when there is no log yet. */
static off_t
dom_log_size(QemuDomainObj *dom)
{
    g_autofree char *path = dom_log_path(dom);
    struct stat st;

    return stat(path, &st) == 0 ? st.st_size : 0;
}

static void
dom_set_reason(QemuDomainObj *dom, const char *reason)
{
    char *copy = g_strdup(reason);

    g_free(dom->reason);
    dom->reason = copy;
}

static json_object *
dom_status_json(QemuDomainObj *dom)
{
    json_object *obj = json_object_new_object();
    g_autofree char *xml = qemu_domain_def_format(dom->live_def);

    ho_json_add_string(obj, "name", dom->name);
    ho_json_add_string(obj, "uuid", dom->uuid);
    ho_json_add_int64(obj, "pid", dom->pid);
    ho_json_add_int64(obj, "pid_start_time", (int64_t)dom->start_time);
    ho_json_add_string(obj, "monitor", dom->monitor_path);
    ho_json_add_string(obj, "state", qemu_domain_state_to_string(dom->state));
    ho_json_add(obj, "reason", dom->reason ? json_object_new_string(dom->reason) : NULL);
    ho_json_add_string(obj, "emulator", dom->emulator);
    ho_json_add_string(obj, "accel", dom->accel);
    ho_json_add_string(obj, "live_xml", xml);
    ho_json_add_bool(obj, "persistent", dom->persistent);
    ho_json_add(obj, "job", dom->job ? json_object_get(dom->job) : NULL);
    return obj;
}

/* Write the status file atomically; -1 and an error. Not synced to disk:
 * it describes a running QEMU, which a power loss or kernel crash ends as
 * well (and a status file naming a QEMU that is not there, or unreadable,
 * is ignored at start); what matters is a daemon that crashes and starts
 * again, and it reads the latest write. Each fsync blocked the daemon's
 * only loop for 0.5-3 ms here, once per job phase and per domain, which
 * delayed the other jobs' switchovers when many migrate at once. */
static int
dom_save_status(QemuDomainObj *dom)
{
    g_autoptr(json_object) obj = NULL;
    g_autofree char *text = NULL;
    g_autofree char *path = NULL;

    if (!dom->drv || dom->pid <= 0 || !dom->live_def)
        return 0;
    obj = dom_status_json(dom);
    text = ho_json_to_string(obj);
    path = dom_status_path(dom);
    return ho_file_write_atomic_volatile(path, text, strlen(text), 0600);
}

/* The one state setter: log, persist while a QEMU runs, emit (event may be
 * NULL). -1 when persisting failed (the state has changed anyway: it says
 * what QEMU did). */
static int
dom_set_state(QemuDomainObj *dom, QemuDomainState state, const char *reason, const char *event,
              const char *detail)
{
    int ret = 0;

    HO_INFO("domain '%s': %s (%s) -> %s (%s)", dom->name, qemu_domain_state_to_string(dom->state),
            dom->reason ? dom->reason : "-", qemu_domain_state_to_string(state),
            reason ? reason : "-");
    dom->state = state;
    dom_set_reason(dom, reason);
    if (state != QEMU_DOMAIN_STATE_SHUTOFF && dom_save_status(dom) < 0) {
        HO_WARN("domain '%s': %s", dom->name, ho_error_last_message());
        ret = -1;
    }
    if (event)
        emit_event(dom, event, detail);
    return ret;
}

/* The setter for changes that must not touch the disk (see
 * dom_monitor_event): log, change, emit. */
static void
dom_set_state_volatile(QemuDomainObj *dom, QemuDomainState state, const char *reason,
                       const char *event, const char *detail)
{
    HO_INFO("domain '%s': %s (%s) -> %s (%s), not persisted", dom->name,
            qemu_domain_state_to_string(dom->state), dom->reason ? dom->reason : "-",
            qemu_domain_state_to_string(state), reason ? reason : "-");
    dom->state = state;
    dom_set_reason(dom, reason);
    if (event)
        emit_event(dom, event, detail);
}

static void
dom_kill(QemuDomainObj *dom, int sig)
{
    if (dom->pid <= 0)
        return;
    if (dom->pidfd >= 0) {
        if (qemu_process_pidfd_send_signal(dom->pidfd, sig) < 0) {
            HO_DEBUG("domain '%s': %s", dom->name, ho_error_last_message());
            ho_error_reset();
        }
    } else if (dom->own_child) {
        /* An unreaped child's pid cannot be reused. */
        if (kill(dom->pid, sig) < 0 && errno != ESRCH)
            HO_WARN("domain '%s': cannot kill pid %d: %s", dom->name, (int)dom->pid,
                    g_strerror(errno));
    }
}

static void
dom_close_monitor(QemuDomainObj *dom)
{
    QemuMonitor *mon = g_steal_pointer(&dom->mon);

    clear_source(&dom->mon_timeout);
    if (mon) {
        /* dom->mon is NULL already: the closed callback ignores this one. */
        qemu_monitor_close(mon);
        qemu_monitor_unref(mon);
    }
}

/* Forget the QEMU: sources, monitor, status and socket files, runtime data.
 * Does not touch state, waiters or the start operation. */
static void
dom_release_runtime(QemuDomainObj *dom, bool remove_files)
{
    QemuDriver *drv = dom->drv;

    dom_close_monitor(dom);
    clear_source(&dom->child_watch);
    clear_source(&dom->pidfd_watch);
    clear_source(&dom->shutdown_timer);
    clear_source(&dom->kill_timer);
    if (dom->pidfd >= 0) {
        close(dom->pidfd);
        dom->pidfd = -1;
    }
    if (remove_files && drv) {
        g_autofree char *status = dom_status_path(dom);
        /* Ours by name, whatever path a status file claimed. */
        g_autofree char *sock = dom_socket_path(dom);

        if (unlink(status) < 0 && errno != ENOENT)
            HO_WARN("cannot remove '%s': %s", status, g_strerror(errno));
        if (unlink(sock) < 0 && errno != ENOENT)
            HO_WARN("cannot remove '%s': %s", sock, g_strerror(errno));
    }
    dom->pid = 0;
    dom->start_time = 0;
    dom->own_child = false;
    g_clear_pointer(&dom->live_def, qemu_domain_def_free);
    g_clear_pointer(&dom->caps, qemu_caps_free);
    g_clear_pointer(&dom->job, json_object_put);
    g_clear_pointer(&dom->emulator, g_free);
    g_clear_pointer(&dom->accel, g_free);
    g_clear_pointer(&dom->monitor_path, g_free);
    dom->reconnecting = false;
    dom->abandon = false;
    dom->shutdown_event = false;
    dom->shutdown_requested = false;
    dom->destroy_requested = false;
    dom->migrated_out = false;
    dom->pause_reason = NULL;
}

/* Drop a domain that is neither persistent nor active from the driver. */
static void
dom_drop_if_gone(QemuDomainObj *dom)
{
    QemuDriver *drv = dom->drv;

    if (!drv || dom->persistent || dom->pid > 0 || dom->start)
        return;
    if (g_hash_table_lookup(drv->domains, dom->name) == dom) {
        dom->drv = NULL;
        g_hash_table_remove(drv->domains, dom->name);
    }
}

static void
dom_complete_waiters(QemuDomainObj *dom, QemuDriver *drv, const HoError *err)
{
    g_autoptr(GPtrArray) waiters = g_steal_pointer(&dom->stop_waiters);

    dom->stop_waiters = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < waiters->len; i++) {
        Waiter *w = g_ptr_array_index(waiters, i);

        if (w->cb)
            w->cb(drv, dom, err, w->opaque);
    }
}

/* ---- the capabilities cache and probe ---------------------------------- */

typedef void (*CapsEntryFunc)(QemuDriver *drv, CapsEntry *entry, const HoError *err,
                              void *opaque);

typedef struct {
    CapsEntryFunc fn;
    void *opaque;
} CapsWaiter;

struct _CapsEntry {
    char *path;        /* resolved binary */
    gint64 size;
    gint64 mtime_ns;
    QemuCaps *caps;    /* NULL until known */
    GPtrArray *machines; /* QemuMachineInfo */
    json_object *machines_json; /* the same, as query-machines returned them */
    GPtrArray *waiters; /* CapsWaiter */
    CapsProbe *probe;  /* running, or NULL */
};

struct _CapsProbe {
    QemuDriver *drv;
    CapsEntry *entry;  /* NULL once finished */
    GPid pid;
    GSource *child_watch;
    GSource *timeout;
    QemuMonitor *mon;
    char *qmp_path;
    char *log_path;
    QemuCaps *caps;
    char *closed_why; /* why the monitor closed, if it did */
    unsigned int attempt;
    bool exited;
};

static void
caps_entry_free(CapsEntry *e)
{
    if (!e)
        return;
    g_free(e->path);
    qemu_caps_free(e->caps);
    g_clear_pointer(&e->machines, g_ptr_array_unref);
    json_object_put(e->machines_json);
    g_ptr_array_unref(e->waiters);
    g_free(e);
}

static void
caps_probe_free(CapsProbe *p)
{
    clear_source(&p->child_watch);
    clear_source(&p->timeout);
    if (p->mon) {
        QemuMonitor *mon = g_steal_pointer(&p->mon);

        qemu_monitor_close(mon);
        qemu_monitor_unref(mon);
    }
    qemu_caps_free(p->caps);
    g_free(p->closed_why);
    g_free(p->qmp_path);
    g_free(p->log_path);
    g_free(p);
}

/* The binary a name means: a bare name is searched on PATH. NULL and an error. */
static char *
resolve_emulator(const char *emulator)
{
    g_autofree char *found = NULL;

    if (!strchr(emulator, '/')) {
        found = g_find_program_in_path(emulator);
        if (!found) {
            ho_error_report(HO_ERR_INVALID_ARG, _("cannot find emulator '%1$s' on PATH"),
                            emulator);
            return NULL;
        }
        return g_canonicalize_filename(found, NULL);
    }
    return g_canonicalize_filename(emulator, NULL);
}

static char *
caps_file_path(QemuDriver *drv, const char *path)
{
    g_autofree char *hash = g_compute_checksum_for_string(G_CHECKSUM_SHA256, path, -1);
    g_autofree char *file = g_strdup_printf("%.32s.json", hash);

    return g_build_filename(drv->caps_dir, file, NULL);
}

static int
caps_entry_set(CapsEntry *e, QemuCaps *caps, json_object *machines_json)
{
    g_autoptr(GPtrArray) machines = qemu_monitor_json_parse_machines(machines_json);

    if (!machines)
        return -1;
    qemu_caps_free(e->caps);
    e->caps = caps;
    g_clear_pointer(&e->machines, g_ptr_array_unref);
    e->machines = g_steal_pointer(&machines);
    json_object_put(e->machines_json);
    e->machines_json = json_object_get(machines_json);
    return 0;
}

/* Fill e from its cache file when that describes this very binary. */
static bool
caps_load_file(QemuDriver *drv, CapsEntry *e)
{
    g_autofree char *path = caps_file_path(drv, e->path);
    g_autofree char *text = NULL;
    g_autoptr(json_object) obj = NULL;
    json_object *caps_obj;
    json_object *machines;
    const char *emulator;
    int64_t format, size, mtime;
    QemuCaps *caps;
    size_t len;

    if (!g_file_test(path, G_FILE_TEST_EXISTS))
        return false;
    if (ho_file_read_all(path, CAPS_FILE_MAX, &text, &len) < 0 ||
        !(obj = ho_json_parse(text, len)) ||
        ho_json_get_int64(obj, "format", &format) < 0 ||
        ho_json_get_string(obj, "emulator", &emulator) < 0 ||
        ho_json_get_int64(obj, "size", &size) < 0 ||
        ho_json_get_int64(obj, "mtime_ns", &mtime) < 0 ||
        ho_json_get_object(obj, "caps", &caps_obj) < 0 ||
        ho_json_get_array(obj, "machines", &machines) < 0) {
        HO_WARN("ignoring capabilities cache '%s': %s", path, ho_error_last_message());
        ho_error_reset();
        return false;
    }
    if (format != CAPS_FILE_FORMAT || !g_str_equal(emulator, e->path) || size != e->size ||
        mtime != e->mtime_ns) {
        HO_DEBUG("capabilities cache '%s' is stale", path);
        return false;
    }
    if (!(caps = qemu_caps_from_json(caps_obj))) {
        HO_WARN("ignoring capabilities cache '%s': %s", path, ho_error_last_message());
        ho_error_reset();
        return false;
    }
    if (caps_entry_set(e, caps, machines) < 0) {
        HO_WARN("ignoring capabilities cache '%s': %s", path, ho_error_last_message());
        ho_error_reset();
        return false;
    }
    HO_DEBUG("capabilities of '%s' from '%s'", e->path, path);
    return true;
}

static void
caps_save_file(QemuDriver *drv, CapsEntry *e)
{
    g_autofree char *path = caps_file_path(drv, e->path);
    g_autoptr(json_object) obj = json_object_new_object();
    g_autofree char *text = NULL;

    ho_json_add_int64(obj, "format", CAPS_FILE_FORMAT);
    ho_json_add_string(obj, "emulator", e->path);
    ho_json_add_int64(obj, "size", e->size);
    ho_json_add_int64(obj, "mtime_ns", e->mtime_ns);
    ho_json_add(obj, "caps", qemu_caps_to_json(e->caps));
    ho_json_add(obj, "machines", json_object_get(e->machines_json));
    text = ho_json_to_string(obj);
    if (ho_file_write_atomic(path, text, strlen(text), 0600) < 0) {
        HO_WARN("cannot cache capabilities of '%s': %s", e->path, ho_error_last_message());
        ho_error_reset();
    }
}

static void
caps_complete_waiters(QemuDriver *drv, CapsEntry *e, const HoError *err)
{
    g_autoptr(GPtrArray) waiters = g_steal_pointer(&e->waiters);

    e->waiters = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < waiters->len; i++) {
        CapsWaiter *w = g_ptr_array_index(waiters, i);

        w->fn(drv, err ? NULL : e, err, w->opaque);
    }
}

/* End a probe: its QEMU is killed, its files removed, the waiters
 * completed. The probe itself lives on until its QEMU is reaped. */
/* Take the probe off its entry (returned, NULL if it was already):
 * its QEMU killed, its files removed. The probe itself lives on until its
 * QEMU is reaped. */
static CapsEntry *
caps_probe_detach(CapsProbe *p)
{
    CapsEntry *e = g_steal_pointer(&p->entry);

    if (!e)
        return NULL;
    e->probe = NULL;
    clear_source(&p->timeout);
    if (p->mon) {
        QemuMonitor *mon = g_steal_pointer(&p->mon);

        qemu_monitor_close(mon);
        qemu_monitor_unref(mon);
    }
    if (!p->exited && kill(p->pid, SIGKILL) < 0 && errno != ESRCH)
        HO_WARN("cannot kill probe pid %d: %s", (int)p->pid, g_strerror(errno));
    (void)unlink(p->qmp_path);
    (void)unlink(p->log_path);
    return e;
}

static void
caps_probe_finish(CapsProbe *p, json_object *machines, const HoError *err)
{
    QemuDriver *drv = p->drv;
    CapsEntry *e = caps_probe_detach(p);
    g_autoptr(HoError) set_err = NULL;

    if (!e)
        return;

    if (!err) {
        if (caps_entry_set(e, g_steal_pointer(&p->caps), machines) < 0) {
            set_err = error_take();
            err = set_err;
        } else {
            HO_INFO("probed '%s': QEMU %u", e->path, qemu_caps_version(e->caps));
            caps_save_file(drv, e);
        }
    }
    if (err)
        HO_WARN("probing '%s' failed: %s", e->path, err->message);
    caps_complete_waiters(drv, e, err);
    /* A closing driver frees its probes itself. */
    if (p->exited && !drv->closing) {
        g_ptr_array_remove(drv->probes, p);
        caps_probe_free(p);
    }
}

static void
caps_probe_machines_done(QemuMonitor *mon, json_object *ret, const HoError *err, void *opaque)
{
    caps_probe_finish(opaque, ret, err);
}

static void
caps_probe_caps_done(QemuMonitor *mon, QemuCaps *caps, const HoError *err, void *opaque)
{
    CapsProbe *p = opaque;

    if (err) {
        caps_probe_finish(p, NULL, err);
        return;
    }
    p->caps = caps;
    qemu_monitor_json_query_machines(mon, caps_probe_machines_done, p);
}

static void
caps_probe_ready(QemuMonitor *mon, json_object *greeting, void *opaque)
{
    CapsProbe *p = opaque;

    clear_source(&p->timeout);
    qemu_caps_probe(mon, caps_probe_caps_done, p);
}

static void
caps_probe_closed(QemuMonitor *mon, const HoError *err, void *opaque)
{
    /* The QEMU exit (child watch) or the timeout ends the probe, with a
     * better message than the monitor's EOF. */
    CapsProbe *p = opaque;

    HO_DEBUG("probe monitor closed: %s", err->message);
    if (!p->closed_why)
        p->closed_why = g_strdup(err->message);
}

static const QemuMonitorCallbacks caps_probe_monitor_cbs = {
    .ready = caps_probe_ready,
    .closed = caps_probe_closed,
};

static void
caps_probe_exited(GPid pid, gint status, gpointer opaque)
{
    CapsProbe *p = opaque;
    QemuDriver *drv = p->drv;

    g_clear_pointer(&p->child_watch, g_source_unref);
    p->exited = true;
    if (p->entry) {
        g_autofree char *how = describe_exit(true, status);
        g_autofree char *tail = log_tail(p->log_path, 0);
        g_autoptr(HoError) err = NULL;

        if (tail)
            err = error_new(HO_ERR_SYSTEM,
                            _("QEMU '%1$s' %2$s while probing its capabilities: %3$s"),
                            p->entry->path, how, tail);
        else
            err = error_new(HO_ERR_SYSTEM, _("QEMU '%1$s' %2$s while probing its capabilities"),
                            p->entry->path, how);
        caps_probe_finish(p, NULL, err);
        return; /* p is freed */
    }
    g_ptr_array_remove(drv->probes, p);
    caps_probe_free(p);
}

static int caps_probe_start(QemuDriver *drv, CapsEntry *e, unsigned int attempt);

static gboolean
caps_probe_timeout(gpointer opaque)
{
    CapsProbe *p = opaque;
    g_autoptr(HoError) err = NULL;
    g_autofree char *proc = NULL;
    const char *where;

    g_clear_pointer(&p->timeout, g_source_unref);
    /* Say where it stuck: the monitor's progress and the process state. */
    if (p->closed_why)
        where = p->closed_why;
    else if (!p->mon || qemu_monitor_is_closed(p->mon))
        where = _("its monitor connection had closed");
    else if (!qemu_monitor_get_greeting(p->mon))
        where = _("no QMP greeting had come");
    else if (!qemu_monitor_is_ready(p->mon))
        where = _("qmp_capabilities was not answered");
    else
        where = _("its capability queries were not answered");
    proc = proc_state(p->pid);
    err = error_new(HO_ERR_TIMEOUT,
                    _("probing QEMU '%1$s' took more than %2$u seconds: %3$s (pid %4$d: %5$s)"),
                    p->entry->path, p->drv->probe_timeout_s, where, (int)p->pid, proc);
    if (p->attempt < CAPS_PROBE_ATTEMPTS) {
        /* QEMU's own startup race can leave its monitor stuck (seen on
         * 10.0 about once in a thousand probes); a new probe does not
         * hit it again. Our QEMU, no side effects: probe again. */
        QemuDriver *drv = p->drv;
        unsigned int attempt = p->attempt;
        CapsEntry *e;

        HO_WARN("%s; probing again", err->message);
        e = caps_probe_detach(p);
        if (caps_probe_start(drv, e, attempt + 1) < 0) {
            g_autoptr(HoError) start_err = error_take();

            caps_complete_waiters(drv, e, start_err);
        }
        return G_SOURCE_REMOVE;
    }
    caps_probe_finish(p, NULL, err);
    return G_SOURCE_REMOVE;
}

/* Start probing e (attempt counts from 1); -1 and an error when the
 * probe QEMU cannot start. */
static int
caps_probe_start(QemuDriver *drv, CapsEntry *e, unsigned int attempt)
{
    static const char *const args[] = {"-machine", "none", NULL};
    g_auto(GStrv) fw_dirs = qemu_process_firmware_dirs(e->path);
    CapsProbe *p = g_new0(CapsProbe, 1);
    QemuProcessSpawn spawn = {0};
    guint serial = ++drv->probe_serial;

    p->drv = drv;
    p->qmp_path = g_strdup_printf("%s/probe-%u.qmp", drv->runtime_dir, serial);
    p->log_path = g_strdup_printf("%s/probe-%u.log", drv->runtime_dir, serial);
    spawn.emulator = e->path;
    spawn.fw_dirs = (const char *const *)fw_dirs;
    spawn.qmp_path = p->qmp_path;
    spawn.log_path = p->log_path;
    spawn.extra_args = args;
    /* A probe is ours alone: it must not outlive the daemon. */
    spawn.die_with_parent = true;
    if (driver_spawn(drv, &spawn, &p->pid) < 0) {
        (void)unlink(p->log_path);
        caps_probe_free(p);
        return -1;
    }
    HO_DEBUG("probing '%s' with pid %d", e->path, (int)p->pid);
    p->entry = e;
    p->attempt = attempt;
    e->probe = p;
    g_ptr_array_add(drv->probes, p);

    p->child_watch = g_child_watch_source_new(p->pid);
    g_source_set_callback(p->child_watch, (GSourceFunc)(void (*)(void))caps_probe_exited, p,
                          NULL);
    g_source_attach(p->child_watch, drv->ctx);
    p->timeout = attach_timeout(drv, drv->probe_timeout_s, caps_probe_timeout, p);

    p->mon = qemu_monitor_open_unix(p->qmp_path, "probe", drv->ctx, &caps_probe_monitor_cbs, p);
    if (!p->mon) {
        g_autoptr(HoError) err = error_take();

        caps_probe_finish(p, NULL, err);
        return 0; /* the waiters know */
    }
    if (drv->recorder)
        qemu_monitor_set_recorder(p->mon, drv->recorder);
    return 0;
}

typedef struct {
    CapsEntryFunc fn;
    void *opaque;
    CapsEntry *entry;
    HoError *err;
} CapsLater;

static void
caps_later_run(QemuDriver *drv, void *data)
{
    CapsLater *c = data;
    g_autoptr(HoError) err = NULL;

    if (!c->err && !c->entry->caps) {
        /* The binary changed and a new probe started since. */
        err = error_new(HO_ERR_INTERNAL, _("capabilities of '%1$s' are not available"),
                        c->entry->path);
    }
    c->fn(drv, (c->err || err) ? NULL : c->entry, c->err ? c->err : err, c->opaque);
}

static void
caps_later_free(void *data)
{
    CapsLater *c = data;

    ho_error_free(c->err);
    g_free(c);
}

static void
caps_later(QemuDriver *drv, CapsEntry *entry, HoError *err, CapsEntryFunc fn, void *opaque)
{
    CapsLater *c = g_new0(CapsLater, 1);

    c->fn = fn;
    c->opaque = opaque;
    c->entry = entry;
    c->err = err;
    driver_later(drv, caps_later_run, c, caps_later_free, false);
}

/* Capabilities and machine types of an emulator (NULL: the default): from
 * memory, from the cache file, or probed. fn always runs later. */
static void
caps_request(QemuDriver *drv, const char *emulator, CapsEntryFunc fn, void *opaque)
{
    g_autofree char *path = NULL;
    CapsEntry *e;
    CapsWaiter *w;
    struct stat st;
    gint64 mtime;

    if (!emulator)
        emulator = drv->default_emulator;
    if (!emulator) {
        caps_later(drv, NULL,
                   ho_error_new(HO_ERR_INVALID_ARG, "%s", _("no default emulator is configured")),
                   fn, opaque);
        return;
    }
    if (!(path = resolve_emulator(emulator))) {
        caps_later(drv, NULL, error_take(), fn, opaque);
        return;
    }
    if (stat(path, &st) < 0) {
        caps_later(drv, NULL,
                   error_new(HO_ERR_INVALID_ARG, _("cannot use emulator '%1$s': %2$s"), path,
                             g_strerror(errno)),
                   fn, opaque);
        return;
    }
    if (!S_ISREG(st.st_mode)) {
        caps_later(drv, NULL,
                   error_new(HO_ERR_INVALID_ARG, _("emulator '%1$s' is not a regular file"),
                             path),
                   fn, opaque);
        return;
    }
    mtime = (gint64)st.st_mtim.tv_sec * G_GINT64_CONSTANT(1000000000) + st.st_mtim.tv_nsec;

    e = g_hash_table_lookup(drv->caps, path);
    if (!e) {
        e = g_new0(CapsEntry, 1);
        e->path = g_strdup(path);
        e->waiters = g_ptr_array_new_with_free_func(g_free);
        g_hash_table_insert(drv->caps, e->path, e);
    }
    if (!e->probe && e->caps && (e->size != st.st_size || e->mtime_ns != mtime)) {
        HO_INFO("emulator '%s' changed: probing it again", path);
        g_clear_pointer(&e->caps, qemu_caps_free);
    }
    if (e->caps && !e->probe) {
        caps_later(drv, e, NULL, fn, opaque);
        return;
    }
    w = g_new0(CapsWaiter, 1);
    w->fn = fn;
    w->opaque = opaque;
    if (e->probe) {
        g_ptr_array_add(e->waiters, w);
        return;
    }
    e->size = st.st_size;
    e->mtime_ns = mtime;
    if (caps_load_file(drv, e)) {
        g_free(w);
        caps_later(drv, e, NULL, fn, opaque);
        return;
    }
    g_ptr_array_add(e->waiters, w);
    if (caps_probe_start(drv, e, 1) < 0) {
        g_autoptr(HoError) err = error_take();

        /* Nobody else can be waiting: no probe was running. */
        g_ptr_array_set_size(e->waiters, 0);
        caps_later(drv, NULL, g_steal_pointer(&err), fn, opaque);
    }
}

/* The concrete machine type for machine (NULL: QEMU's default), or NULL. */
static const char *
caps_entry_resolve_machine(const CapsEntry *e, const char *machine)
{
    for (guint i = 0; i < e->machines->len; i++) {
        const QemuMachineInfo *m = g_ptr_array_index(e->machines, i);

        if (machine ? g_strcmp0(m->alias, machine) == 0 : m->is_default)
            return m->name;
    }
    for (guint i = 0; machine && i < e->machines->len; i++) {
        const QemuMachineInfo *m = g_ptr_array_index(e->machines, i);

        if (g_str_equal(m->name, machine))
            return m->name;
    }
    return NULL;
}

typedef struct {
    QemuDriverCapsFunc cb;
    void *opaque;
} PublicCapsCall;

static void
public_caps_done(QemuDriver *drv, CapsEntry *e, const HoError *err, void *opaque)
{
    g_autofree PublicCapsCall *call = opaque;

    call->cb(drv, e ? e->caps : NULL, err, call->opaque);
}

void
qemu_driver_get_caps(QemuDriver *drv, const char *emulator, QemuDriverCapsFunc cb, void *opaque)
{
    PublicCapsCall *call = g_new0(PublicCapsCall, 1);

    call->cb = cb;
    call->opaque = opaque;
    caps_request(drv, emulator, public_caps_done, call);
}

/* ---- the start operation and process exit ------------------------------ */

struct _StartOp {
    QemuDriver *drv;
    QemuDomainObj *dom; /* a reference */
    QemuDriverDoneFunc cb;
    void *opaque;
    bool paused;
    char *emulator;
    QemuDomainDef *def; /* the definition being started; becomes the live one */
    HoError *err;       /* the first error */
    bool failing;       /* QEMU killed: completes when it has exited */
    off_t log_offset;   /* where QEMU's output starts in the log */
    bool incoming;      /* -incoming defer: an incoming migration, never cont'ed here */
    QemuCaps *known;    /* the emulator's cached capabilities, when it has them */
};

static void
start_op_free(StartOp *op)
{
    qemu_domain_obj_unref(op->dom);
    g_free(op->emulator);
    qemu_domain_def_free(op->def);
    ho_error_free(op->err);
    qemu_caps_free(op->known);
    g_free(op);
}

/* QEMU is gone (or was never started): nothing of the start is left. */
static void
start_finish_failed(StartOp *op)
{
    QemuDomainObj *dom = op->dom;
    g_autoptr(QemuDomainObj) hold = qemu_domain_obj_ref(dom);

    op->failing = true;
    dom->start = NULL;
    dom_log(dom, "start failed: %s", op->err->message);
    dom_release_runtime(dom, true);
    (void)dom_set_state(dom, QEMU_DOMAIN_STATE_SHUTOFF, "failed", NULL, NULL);
    if (op->cb)
        op->cb(op->drv, dom, op->err, op->opaque);
    /* A destroy asked for during the start is done too. */
    dom_complete_waiters(dom, op->drv, NULL);
    start_op_free(op);
    dom_drop_if_gone(dom);
}

/* A step of the start failed: keep the first error, kill QEMU, and
 * complete once it has exited (at once when there is none, or when the
 * driver is closing and cannot wait). */
static void
start_fail(StartOp *op, const HoError *err)
{
    QemuDomainObj *dom = op->dom;

    if (!op->err)
        op->err = ho_error_copy(err);
    if (op->failing)
        return;
    op->failing = true;
    HO_DEBUG("domain '%s': start failed: %s", dom->name, op->err->message);
    dom_close_monitor(dom);
    if (dom->pid > 0) {
        dom_kill(dom, SIGKILL);
        if (!op->drv->closing)
            return; /* dom_exited() completes */
    }
    start_finish_failed(op);
}

static gboolean
start_kill_timeout(gpointer opaque)
{
    QemuDomainObj *dom = opaque;

    g_clear_pointer(&dom->kill_timer, g_source_unref);
    dom_log(dom, "QEMU closed its monitor while starting but did not exit: killing it");
    dom_kill(dom, SIGKILL);
    return G_SOURCE_REMOVE;
}

/* The monitor closed during the start: QEMU is most likely exiting on its
 * own, and its exit status and last words say why. Killing it at once
 * could hide them, so it gets a short bound first. */
static void
start_fail_monitor_closed(StartOp *op, const HoError *err)
{
    QemuDomainObj *dom = op->dom;

    if (!op->err)
        op->err = ho_error_copy(err);
    if (op->failing)
        return;
    if (dom->pid <= 0 || op->drv->closing) {
        start_fail(op, err);
        return;
    }
    op->failing = true;
    HO_DEBUG("domain '%s': monitor closed while starting: %s", dom->name, err->message);
    dom_close_monitor(dom);
    if (!dom->kill_timer)
        dom->kill_timer = attach_timeout(op->drv, DESTROY_KILL_DELAY_S, start_kill_timeout, dom);
}

static void
start_fail_take(StartOp *op)
{
    g_autoptr(HoError) err = error_take();

    start_fail(op, err);
}

/* Tell the exit watchers (the migration of this domain) that QEMU is gone. */
static void
dom_run_exit_watches(QemuDomainObj *dom, const char *how)
{
    g_autoptr(GPtrArray) watches = g_steal_pointer(&dom->exit_watches);

    dom->exit_watches = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < watches->len; i++) {
        ExitWatch *w = g_ptr_array_index(watches, i);

        w->fn(dom, how, w->opaque);
    }
}

/* QEMU has exited: the one place a running domain goes to shutoff. */
static void
dom_exited(QemuDomainObj *dom, bool have_status, int status)
{
    g_autoptr(QemuDomainObj) hold = qemu_domain_obj_ref(dom);
    QemuDriver *drv = dom->drv;
    g_autofree char *how = describe_exit(have_status, status);
    const char *reason;

    HO_INFO("domain '%s': QEMU pid %d %s", dom->name, (int)dom->pid, how);
    /* Reaped (or not our child): its pid may be reused from now on. */
    dom->pid = 0;

    if (dom->start) {
        StartOp *op = dom->start;

        /* Unless something more precise failed first, QEMU's exit and its
         * last words are the error. */
        if (!op->err || op->err->code == HO_ERR_MONITOR) {
            g_autofree char *path = dom_log_path(dom);
            g_autofree char *tail = log_tail(path, op->log_offset);

            ho_error_free(op->err);
            if (tail)
                op->err = error_new(HO_ERR_SYSTEM,
                                    _("QEMU of domain '%1$s' %2$s while starting: %3$s"),
                                    dom->name, how, tail);
            else
                op->err = error_new(HO_ERR_SYSTEM, _("QEMU of domain '%1$s' %2$s while starting"),
                                    dom->name, how);
        }
        dom_log(dom, "QEMU %s", how);
        start_finish_failed(op);
        return;
    }

    dom_log(dom, "QEMU %s", how);
    if (dom->abandon)
        reason = "failed";
    else if (dom->migrated_out)
        reason = "migrated";
    else if (dom->destroy_requested)
        reason = "destroyed";
    else if (dom->shutdown_event || dom->shutdown_requested)
        reason = "shutdown";
    else if (dom->reconnecting || g_strcmp0(dom->reason, REASON_MONITOR_UNAVAILABLE) == 0)
        reason = "qemu-exited"; /* we could not see what QEMU said before */
    else
        reason = "crashed";

    dom_release_runtime(dom, true);
    (void)dom_set_state(dom, QEMU_DOMAIN_STATE_SHUTOFF, reason, "stopped", reason);
    dom_complete_waiters(dom, drv, NULL);
    dom_run_exit_watches(dom, how);
    dom_drop_if_gone(dom);
}

static void
dom_child_exited(GPid pid, gint status, gpointer opaque)
{
    QemuDomainObj *dom = opaque;

    g_clear_pointer(&dom->child_watch, g_source_unref);
    dom_exited(dom, true, status);
}

static gboolean
dom_pidfd_ready(gint fd, GIOCondition cond, gpointer opaque)
{
    QemuDomainObj *dom = opaque;
    siginfo_t si;
    bool have_status = false;
    int status = 0;

    /* Reaps it only if it happens to be our child (a QEMU a previous
     * driver in this process started); otherwise ECHILD, and the exit
     * status stays unknown. */
    memset(&si, 0, sizeof(si));
    if (waitid(P_PIDFD, (id_t)fd, &si, WEXITED | WNOHANG) == 0 && si.si_pid != 0) {
        have_status = true;
        if (si.si_code == CLD_EXITED)
            status = (si.si_status & 0xff) << 8;
        else
            status = (si.si_status & 0x7f) | (si.si_code == CLD_DUMPED ? 0x80 : 0);
    }
    g_clear_pointer(&dom->pidfd_watch, g_source_unref);
    dom_exited(dom, have_status, status);
    return G_SOURCE_REMOVE;
}

/* ---- the monitor of a domain ------------------------------------------- */

static void reconnect_monitor_failed(QemuDomainObj *dom, const HoError *err);
static void reconnect_status_done(QemuMonitor *mon, const QemuMonitorStatus *st,
                                  const HoError *err, void *opaque);
static void start_caps_probed(QemuMonitor *mon, QemuCaps *caps, const HoError *err,
                              void *opaque);
static void start_version_done(QemuMonitor *mon, const QemuMonitorVersion *v, const HoError *err,
                               void *opaque);

static void
dom_monitor_ready(QemuMonitor *mon, json_object *greeting, void *opaque)
{
    QemuDomainObj *dom = opaque;

    if (mon != dom->mon)
        return;
    clear_source(&dom->mon_timeout);
    if (dom->start && dom->start->known)
        qemu_monitor_json_query_version(mon, start_version_done, dom->start);
    else if (dom->start)
        qemu_caps_probe(mon, start_caps_probed, dom->start);
    else if (dom->reconnecting)
        qemu_monitor_json_query_status(mon, reconnect_status_done, dom);
}

static void
dom_monitor_closed(QemuMonitor *mon, const HoError *err, void *opaque)
{
    QemuDomainObj *dom = opaque;

    if (mon != dom->mon)
        return;
    dom->mon = NULL;
    clear_source(&dom->mon_timeout);
    HO_DEBUG("domain '%s': monitor closed: %s", dom->name, err->message);
    if (dom->start) {
        start_fail_monitor_closed(dom->start, err);
    } else if (dom->reconnecting) {
        reconnect_monitor_failed(dom, err);
    } else if (dom->pid > 0) {
        dom_log(dom, "monitor closed: %s", err->message);
    }
    qemu_monitor_unref(mon);
}

static void
dom_monitor_event(QemuMonitor *mon, const char *name, json_object *data, gint64 qemu_ts_us,
                  gint64 recv_ts_us, void *opaque)
{
    QemuDomainObj *dom = opaque;

    if (mon != dom->mon || !dom->drv || dom->drv->closing)
        return;
    if (g_str_equal(name, "SHUTDOWN")) {
        bool guest = false;

        if (data && ho_json_opt_bool(data, "guest", &guest) < 0)
            ho_error_reset();
        dom->shutdown_event = true;
        dom_log(dom, "QEMU reports a shutdown by the %s", guest ? "guest" : "host");
        /* A destroy's SIGTERM makes QEMU say SHUTDOWN too: not news. */
        if (dom->start || dom->reconnecting || dom->destroy_requested || dom->migrated_out)
            return;
        if (dom_set_state(dom, QEMU_DOMAIN_STATE_SHUTTING_DOWN, "shutdown", "shutdown",
                          guest ? "guest" : "host") < 0)
            ho_error_reset();
        return;
    }
    /* Until the start or reconnection is done, its chain owns the state. */
    if (dom->start || dom->reconnecting || dom->state == QEMU_DOMAIN_STATE_SHUTTING_DOWN)
        return;
    if (dom->job && (g_str_equal(name, "STOP") || g_str_equal(name, "RESUME"))) {
        /* A migration is running: QEMU stops the guest for the switchover
         * and a cancel may resume it. The state changes in memory only: a
         * status write here would land inside the switchover window
         * (DESIGN.md §2 invariant 5); the job's next persisted phase
         * carries it, and a restarted driver asks QEMU anyway. */
        bool stop = g_str_equal(name, "STOP");

        if (stop && dom->state == QEMU_DOMAIN_STATE_RUNNING) {
            const char *reason = dom->pause_reason ? dom->pause_reason : "migration";

            dom->pause_reason = NULL;
            dom_set_state_volatile(dom, QEMU_DOMAIN_STATE_PAUSED, reason, "suspended", reason);
        } else if (!stop && dom->state != QEMU_DOMAIN_STATE_RUNNING) {
            dom_set_state_volatile(dom, QEMU_DOMAIN_STATE_RUNNING, "unpaused", "resumed",
                                   "unpaused");
        }
    } else if (g_str_equal(name, "STOP") && dom->state == QEMU_DOMAIN_STATE_RUNNING) {
        const char *reason = dom->pause_reason ? dom->pause_reason : "unknown";

        dom->pause_reason = NULL;
        if (dom_set_state(dom, QEMU_DOMAIN_STATE_PAUSED, reason, "suspended", reason) < 0)
            ho_error_reset();
    } else if (g_str_equal(name, "RESUME") && dom->state != QEMU_DOMAIN_STATE_RUNNING) {
        if (dom_set_state(dom, QEMU_DOMAIN_STATE_RUNNING, "unpaused", "resumed", "unpaused") < 0)
            ho_error_reset();
    } else if (g_str_equal(name, "GUEST_PANICKED")) {
        if (dom_set_state(dom, QEMU_DOMAIN_STATE_CRASHED, "panicked", "crashed", "panicked") < 0)
            ho_error_reset();
    }
}

static gboolean
dom_monitor_timeout(gpointer opaque)
{
    QemuDomainObj *dom = opaque;
    g_autoptr(HoError) err = NULL;

    g_clear_pointer(&dom->mon_timeout, g_source_unref);
    err = error_new(HO_ERR_TIMEOUT,
                    _("the monitor of domain '%1$s' did not answer within %2$u seconds"),
                    dom->name, (unsigned int)MONITOR_READY_TIMEOUT_S);
    if (dom->start) {
        start_fail(dom->start, err);
    } else if (dom->reconnecting) {
        dom_close_monitor(dom);
        reconnect_monitor_failed(dom, err);
    }
    return G_SOURCE_REMOVE;
}

static const QemuMonitorCallbacks dom_monitor_cbs = {
    .ready = dom_monitor_ready,
    .closed = dom_monitor_closed,
};

/* Connect to the domain's QMP socket; -1 and an error. */
static int
dom_open_monitor(QemuDomainObj *dom)
{
    QemuDriver *drv = dom->drv;
    QemuMonitor *mon = qemu_monitor_open_unix(dom->monitor_path, dom->name, drv->ctx,
                                              &dom_monitor_cbs, dom);

    if (!mon)
        return -1;
    if (drv->recorder)
        qemu_monitor_set_recorder(mon, drv->recorder);
    (void)qemu_monitor_subscribe(mon, NULL, dom_monitor_event, dom);
    dom->mon = mon;
    dom->mon_timeout = attach_timeout(drv, MONITOR_READY_TIMEOUT_S, dom_monitor_timeout, dom);
    return 0;
}

/* ---- start --------------------------------------------------------------- */

static void
start_done(StartOp *op)
{
    QemuDomainObj *dom = op->dom;
    g_autoptr(QemuDomainObj) hold = qemu_domain_obj_ref(dom);

    dom->start = NULL;
    if (op->incoming) {
        dom_log(dom, "started for an incoming migration");
        emit_event(dom, "started", "migrated");
    } else {
        dom_log(dom, "started%s", op->paused ? " (paused)" : "");
        emit_event(dom, "started", "booted");
        if (op->paused)
            emit_event(dom, "suspended", "paused");
    }
    if (op->cb)
        op->cb(op->drv, dom, NULL, op->opaque);
    start_op_free(op);
}

static void
start_cont_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    StartOp *op = opaque;

    if (op->failing)
        return;
    if (err) {
        start_fail(op, err);
        return;
    }
    start_done(op);
}

/* A QEMU whose binary's capabilities are cached (the cache is keyed by
 * the binary's size and mtime, checked just before the spawn): its
 * version confirms that it is that binary, and the probe of its own
 * monitor (the 200 KiB schema among it: ~30 ms, a third of it parsing on
 * this loop) is skipped. Any mismatch probes as before. */
static void
start_version_done(QemuMonitor *mon, const QemuMonitorVersion *v, const HoError *err,
                   void *opaque)
{
    StartOp *op = opaque;
    QemuCaps *known = op->known;
    unsigned int version;

    if (err) {
        start_caps_probed(mon, NULL, err, op);
        return;
    }
    op->known = NULL;
    version = (unsigned int)v->major * 1000000u + (unsigned int)v->minor * 1000u +
              (unsigned int)v->micro;
    if (version == qemu_caps_version(known) &&
        g_strcmp0(v->package ? v->package : "", qemu_caps_package(known)) == 0) {
        start_caps_probed(mon, known, NULL, op);
        return;
    }
    HO_WARN("domain '%s': its QEMU says version %d.%d.%d (%s), not the cached %u of its emulator: "
            "probing it in full",
            op->dom->name, v->major, v->minor, v->micro, v->package ? v->package : "-",
            qemu_caps_version(known));
    qemu_caps_free(known);
    qemu_caps_probe(mon, start_caps_probed, op);
}

static void
start_caps_probed(QemuMonitor *mon, QemuCaps *caps, const HoError *err, void *opaque)
{
    StartOp *op = opaque;
    QemuDomainObj *dom = op->dom;

    if (err) {
        start_fail(op, err);
        return;
    }
    if (op->failing) {
        qemu_caps_free(caps);
        return;
    }
    qemu_caps_free(dom->caps);
    dom->caps = caps;
    /* Persisted before QEMU is told to run. */
    if (dom_set_state(dom, op->paused ? QEMU_DOMAIN_STATE_PAUSED : QEMU_DOMAIN_STATE_RUNNING,
                      op->incoming ? "incoming-migration" : op->paused ? "user" : "booted",
                      NULL, NULL) < 0) {
        start_fail_take(op);
        return;
    }
    if (op->paused)
        start_done(op);
    else
        qemu_monitor_json_cont(mon, start_cont_done, op);
}

static void
start_caps_ready(QemuDriver *drv, CapsEntry *e, const HoError *err, void *opaque)
{
    StartOp *op = opaque;
    QemuDomainObj *dom = op->dom;
    QemuProcessSpawn spawn = {0};
    g_auto(GStrv) fw_dirs = NULL;
    g_auto(GStrv) argv = NULL;
    g_autofree char *monitor_path = NULL;
    g_autofree char *log_path = NULL;
    g_autofree char *joined = NULL;
    const char *machine;
    const char *accel;
    QemuCommandOptions copts = {0};
    GPid pid;

    if (err) {
        start_fail(op, err);
        return;
    }
    if (drv->closing) {
        g_autoptr(HoError) cerr =
            error_new(HO_ERR_OPERATION_INVALID,
                      _("the QEMU driver was closed while domain '%1$s' was starting"), dom->name);

        start_fail(op, cerr);
        return;
    }

    machine = caps_entry_resolve_machine(e, op->def->machine);
    if (!machine) {
        g_autoptr(HoError) merr = NULL;

        if (op->def->machine)
            merr = error_new(HO_ERR_NO_SUPPORT,
                             _("emulator '%1$s' does not support machine type '%2$s'"),
                             op->emulator, op->def->machine);
        else
            merr = error_new(HO_ERR_NO_SUPPORT, _("emulator '%1$s' has no default machine type"),
                             op->emulator);
        start_fail(op, merr);
        return;
    }
    g_free(op->def->machine);
    op->def->machine = g_strdup(machine);
    if (!op->def->emulator)
        op->def->emulator = g_strdup(op->emulator);
    if (e->caps && !op->known && !(op->known = qemu_caps_copy(e->caps)))
        ho_error_reset(); /* probed in full then */

    accel = op->def->virt_type == QEMU_DOMAIN_VIRT_QEMU ? "tcg" : drv->accel;
    fw_dirs = qemu_process_firmware_dirs(op->emulator);
    copts.emulator = op->emulator;
    copts.qmp_socket_path = NULL; /* qemu_process_spawn() adds the passed socket */
    copts.start_paused = true;
    copts.incoming = op->incoming ? "defer" : NULL;
    copts.accel = accel;
    copts.firmware_dirs = (const char *const *)fw_dirs;
    copts.machine_override = machine;
    /* Shared memfd RAM on a QEMU that can do CPR transfer: every RAM block
     * shareable, so the domain can later move to a new QEMU with it. */
    copts.aux_ram_share = e->caps && qemu_caps_has(e->caps, QEMU_CAPS_CPR_TRANSFER);
    if (!(argv = qemu_command_build(op->def, &copts))) {
        start_fail_take(op);
        return;
    }

    monitor_path = dom_socket_path(dom);
    log_path = dom_log_path(dom);
    if (op->def->virt_type == QEMU_DOMAIN_VIRT_KVM && !g_str_equal(accel, "kvm"))
        dom_log(dom, "KVM is not available (%s): using TCG",
                drv->accel_why ? drv->accel_why : "unknown reason");
    joined = g_strjoinv(" ", argv);
    dom_log(dom, "starting: %s", joined);
    op->log_offset = dom_log_size(dom);

    spawn.emulator = argv[0];
    spawn.qmp_path = monitor_path;
    spawn.log_path = log_path;
    spawn.log_append = true;
    spawn.extra_args = (const char *const *)argv + 1;
    spawn.args_complete = true;
    /* The guest outlives the daemon: a restarted one reconnects. */
    spawn.die_with_parent = false;
    if (driver_spawn(drv, &spawn, &pid) < 0) {
        start_fail_take(op);
        return;
    }
    dom->pid = pid;
    dom->own_child = true;
    dom->child_watch = g_child_watch_source_new(pid);
    g_source_set_callback(dom->child_watch, (GSourceFunc)(void (*)(void))dom_child_exited, dom,
                          NULL);
    g_source_attach(dom->child_watch, drv->ctx);
    dom->emulator = g_strdup(op->emulator);
    dom->accel = g_strdup(accel);
    dom->monitor_path = g_steal_pointer(&monitor_path);
    dom->live_def = g_steal_pointer(&op->def);
    dom_log(dom, "QEMU pid %d", (int)pid);

    /* Known, and persisted, before anything else happens to it. */
    if (qemu_process_start_time(pid, &dom->start_time) < 0 ||
        dom_set_state(dom, QEMU_DOMAIN_STATE_PAUSED, REASON_STARTING, NULL, NULL) < 0 ||
        dom_open_monitor(dom) < 0) {
        start_fail_take(op);
        return;
    }
}

/* A refusal, completed from an idle callback. */
static void
refuse(QemuDriver *drv, QemuDomainObj *dom, QemuDriverDoneFunc cb, void *opaque)
{
    complete_later(drv, dom, cb, opaque, error_take());
}

/* Whether dom belongs to drv; else an HO_ERR_NO_DOMAIN error. */
static bool
dom_check_owner(QemuDriver *drv, QemuDomainObj *dom)
{
    if (dom->drv != drv || drv->closing) {
        ho_error_report(HO_ERR_NO_DOMAIN, _("domain '%1$s' no longer exists"), dom->name);
        return false;
    }
    return true;
}

void
qemu_driver_domain_start(QemuDriver *drv, QemuDomainObj *dom, bool paused, QemuDriverDoneFunc cb,
                         void *opaque)
{
    StartOp *op;
    const char *emulator;

    if (!dom_check_owner(drv, dom))
        return refuse(drv, dom, cb, opaque);
    if (dom->start) {
        ho_error_report(HO_ERR_OPERATION_INVALID, _("domain '%1$s' is already starting"),
                        dom->name);
        return refuse(drv, dom, cb, opaque);
    }
    if (dom->pid > 0) {
        ho_error_report(HO_ERR_OPERATION_INVALID, _("domain '%1$s' is already running"),
                        dom->name);
        return refuse(drv, dom, cb, opaque);
    }
    if (!dom->def) {
        ho_error_report(HO_ERR_OPERATION_INVALID, _("domain '%1$s' has no definition"),
                        dom->name);
        return refuse(drv, dom, cb, opaque);
    }
    emulator = dom->def->emulator ? dom->def->emulator : drv->default_emulator;
    if (!emulator) {
        ho_error_report(HO_ERR_INVALID_ARG,
                        _("domain '%1$s' names no emulator and no default emulator is "
                          "configured"),
                        dom->name);
        return refuse(drv, dom, cb, opaque);
    }

    op = g_new0(StartOp, 1);
    op->drv = drv;
    op->dom = qemu_domain_obj_ref(dom);
    op->cb = cb;
    op->opaque = opaque;
    op->paused = paused;
    op->emulator = g_strdup(emulator);
    op->def = qemu_domain_def_copy(dom->def);
    dom->start = op;
    HO_INFO("domain '%s': starting%s", dom->name, paused ? " paused" : "");
    caps_request(drv, emulator, start_caps_ready, op);
}

/* ---- shutdown, destroy, suspend, resume ---------------------------------- */

static bool
dom_check_active(QemuDriver *drv, QemuDomainObj *dom)
{
    if (!dom_check_owner(drv, dom))
        return false;
    if (dom->pid <= 0 && !dom->start) {
        ho_error_report(HO_ERR_OPERATION_INVALID, _("domain '%1$s' is not running"), dom->name);
        return false;
    }
    return true;
}

static void
dom_add_waiter(QemuDomainObj *dom, QemuDriverDoneFunc cb, void *opaque)
{
    Waiter *w = g_new0(Waiter, 1);

    w->cb = cb;
    w->opaque = opaque;
    g_ptr_array_add(dom->stop_waiters, w);
}

static void
shutdown_powerdown_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    QemuDomainObj *dom = opaque;

    if (err && dom->drv && dom->pid > 0)
        dom_log(dom, "system_powerdown failed: %s", err->message);
    qemu_domain_obj_unref(dom);
}

static gboolean
shutdown_timeout(gpointer opaque)
{
    QemuDomainObj *dom = opaque;

    g_clear_pointer(&dom->shutdown_timer, g_source_unref);
    dom_log(dom, "the guest did not power off in time: killing QEMU");
    dom->forced = true;
    dom->destroy_requested = true;
    dom_kill(dom, SIGKILL);
    return G_SOURCE_REMOVE;
}

void
qemu_driver_domain_shutdown(QemuDriver *drv, QemuDomainObj *dom, unsigned int timeout_s,
                            QemuDriverDoneFunc cb, void *opaque)
{
    QemuDomainState old_state = dom->state;
    g_autofree char *old_reason = g_strdup(dom->reason);

    if (!dom_check_active(drv, dom))
        return refuse(drv, dom, cb, opaque);
    if (dom->shutdown_requested || dom->destroy_requested) {
        dom_add_waiter(dom, cb, opaque); /* already on its way out */
        return;
    }
    if (dom->start) {
        ho_error_report(HO_ERR_OPERATION_INVALID, _("domain '%1$s' is starting"), dom->name);
        return refuse(drv, dom, cb, opaque);
    }
    if (!dom->mon || dom->reconnecting) {
        ho_error_report(HO_ERR_OPERATION_INVALID,
                        _("the monitor of domain '%1$s' is not available"), dom->name);
        return refuse(drv, dom, cb, opaque);
    }
    if (timeout_s == 0)
        timeout_s = drv->shutdown_timeout_s ? drv->shutdown_timeout_s
                                            : DEFAULT_SHUTDOWN_TIMEOUT_S;

    dom->shutdown_requested = true;
    if (dom_set_state(dom, QEMU_DOMAIN_STATE_SHUTTING_DOWN, "shutdown", NULL, NULL) < 0) {
        HoError *saved = ho_error_save();

        dom->shutdown_requested = false;
        dom->state = old_state;
        dom_set_reason(dom, old_reason);
        ho_error_restore(&saved);
        return refuse(drv, dom, cb, opaque);
    }
    dom->forced = false;
    dom_add_waiter(dom, cb, opaque);
    dom_log(dom, "shutdown requested, %u s before QEMU is killed", timeout_s);
    qemu_monitor_json_system_powerdown(dom->mon, shutdown_powerdown_done,
                                       qemu_domain_obj_ref(dom));
    dom->shutdown_timer = attach_timeout(drv, timeout_s, shutdown_timeout, dom);
}

static gboolean
destroy_kill(gpointer opaque)
{
    QemuDomainObj *dom = opaque;

    g_clear_pointer(&dom->kill_timer, g_source_unref);
    dom_log(dom, "QEMU did not exit within %u s of SIGTERM: sending SIGKILL",
            (unsigned int)DESTROY_KILL_DELAY_S);
    dom_kill(dom, SIGKILL);
    return G_SOURCE_REMOVE;
}

void
qemu_driver_domain_destroy(QemuDriver *drv, QemuDomainObj *dom, QemuDriverDoneFunc cb,
                           void *opaque)
{
    if (!dom_check_owner(drv, dom))
        return refuse(drv, dom, cb, opaque);
    if (dom->pid <= 0) {
        /* Includes a start still looking for capabilities: nothing to kill yet. */
        ho_error_report(HO_ERR_OPERATION_INVALID, _("domain '%1$s' is not running"), dom->name);
        return refuse(drv, dom, cb, opaque);
    }
    dom_add_waiter(dom, cb, opaque);
    if (dom->destroy_requested && !dom->shutdown_timer)
        return;
    /* A shutdown in progress becomes a destroy. */
    clear_source(&dom->shutdown_timer);
    dom->destroy_requested = true;
    if (dom->start && !dom->start->err)
        dom->start->err = error_new(HO_ERR_OPERATION_INVALID,
                                    _("domain '%1$s' was destroyed while starting"), dom->name);
    dom_log(dom, "destroy requested: sending SIGTERM");
    dom_kill(dom, SIGTERM);
    if (!dom->kill_timer)
        dom->kill_timer = attach_timeout(drv, DESTROY_KILL_DELAY_S, destroy_kill, dom);
}

typedef struct {
    QemuDriver *drv;
    QemuDomainObj *dom; /* a reference */
    QemuDriverDoneFunc cb;
    void *opaque;
} SimpleOp;

static SimpleOp *
simple_op_new(QemuDriver *drv, QemuDomainObj *dom, QemuDriverDoneFunc cb, void *opaque)
{
    SimpleOp *op = g_new0(SimpleOp, 1);

    op->drv = drv;
    op->dom = qemu_domain_obj_ref(dom);
    op->cb = cb;
    op->opaque = opaque;
    return op;
}

static void
simple_op_finish(SimpleOp *op, const HoError *err)
{
    if (op->cb)
        op->cb(op->drv, op->dom, err, op->opaque);
    qemu_domain_obj_unref(op->dom);
    g_free(op);
}

/* Whether stop/cont can be sent; else an error. */
static bool
dom_check_controllable(QemuDriver *drv, QemuDomainObj *dom)
{
    if (!dom_check_active(drv, dom))
        return false;
    if (dom->start) {
        ho_error_report(HO_ERR_OPERATION_INVALID, _("domain '%1$s' is starting"), dom->name);
        return false;
    }
    if (dom->shutdown_requested || dom->destroy_requested ||
        dom->state == QEMU_DOMAIN_STATE_SHUTTING_DOWN) {
        ho_error_report(HO_ERR_OPERATION_INVALID, _("domain '%1$s' is shutting down"),
                        dom->name);
        return false;
    }
    if (!dom->mon || dom->reconnecting) {
        ho_error_report(HO_ERR_OPERATION_INVALID,
                        _("the monitor of domain '%1$s' is not available"), dom->name);
        return false;
    }
    return true;
}

static void
suspend_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    SimpleOp *op = opaque;
    QemuDomainObj *dom = op->dom;

    /* Usually the STOP event came first and did this. */
    if (!err && dom->drv && dom->mon == mon && dom->state == QEMU_DOMAIN_STATE_RUNNING) {
        dom->pause_reason = NULL;
        if (dom_set_state(dom, QEMU_DOMAIN_STATE_PAUSED, "user", "suspended", "user") < 0)
            ho_error_reset();
    }
    simple_op_finish(op, err);
}

void
qemu_driver_domain_suspend(QemuDriver *drv, QemuDomainObj *dom, QemuDriverDoneFunc cb,
                           void *opaque)
{
    if (!dom_check_controllable(drv, dom))
        return refuse(drv, dom, cb, opaque);
    if (dom->state != QEMU_DOMAIN_STATE_RUNNING) {
        complete_later(drv, dom, cb, opaque, NULL); /* paused already */
        return;
    }
    dom->pause_reason = "user";
    qemu_monitor_json_stop(dom->mon, suspend_done, simple_op_new(drv, dom, cb, opaque));
}

static void
resume_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    SimpleOp *op = opaque;
    QemuDomainObj *dom = op->dom;

    if (!err && dom->drv && dom->mon == mon && dom->state != QEMU_DOMAIN_STATE_RUNNING &&
        dom->state != QEMU_DOMAIN_STATE_SHUTOFF) {
        if (dom_set_state(dom, QEMU_DOMAIN_STATE_RUNNING, "unpaused", "resumed", "unpaused") < 0)
            ho_error_reset();
    }
    simple_op_finish(op, err);
}

void
qemu_driver_domain_resume(QemuDriver *drv, QemuDomainObj *dom, QemuDriverDoneFunc cb,
                          void *opaque)
{
    if (!dom_check_controllable(drv, dom))
        return refuse(drv, dom, cb, opaque);
    if (dom->state == QEMU_DOMAIN_STATE_RUNNING) {
        complete_later(drv, dom, cb, opaque, NULL); /* running already */
        return;
    }
    qemu_monitor_json_cont(dom->mon, resume_done, simple_op_new(drv, dom, cb, opaque));
}

/* ---- reconnection ------------------------------------------------------- */

static void
reconnect_finish(QemuDomainObj *dom)
{
    dom->reconnecting = false;
    if (dom_set_state(dom, dom->state, dom->reason, NULL, NULL) < 0)
        ho_error_reset();
    /* Queued: it may happen inside qemu_driver_open(). */
    emit_event_later(dom, "started", "reconnected");
}

/* A running QEMU whose monitor cannot be reached stays listed as it was;
 * it is never killed for that. */
static void
reconnect_monitor_failed(QemuDomainObj *dom, const HoError *err)
{
    if (!dom->drv || dom->drv->closing)
        return;
    HO_WARN("domain '%s': cannot reconnect to the monitor of QEMU pid %d: %s", dom->name,
            (int)dom->pid, err->message);
    dom_log(dom, "cannot reconnect to the monitor: %s", err->message);
    dom_close_monitor(dom);
    dom_set_reason(dom, REASON_MONITOR_UNAVAILABLE);
    reconnect_finish(dom);
}

static void
reconnect_caps_done(QemuMonitor *mon, QemuCaps *caps, const HoError *err, void *opaque)
{
    QemuDomainObj *dom = opaque;

    if (!dom->drv || dom->drv->closing || mon != dom->mon || !dom->reconnecting) {
        qemu_caps_free(caps);
        return;
    }
    if (err) {
        if (err->code == HO_ERR_MONITOR)
            return; /* the closed callback follows */
        HO_WARN("domain '%s': cannot probe capabilities: %s", dom->name, err->message);
        dom_log(dom, "cannot probe capabilities: %s", err->message);
    }
    qemu_caps_free(dom->caps);
    dom->caps = caps;
    dom_log(dom, "reconnected to QEMU pid %d, %s", (int)dom->pid,
            qemu_domain_state_to_string(dom->state));
    reconnect_finish(dom);
}

static void
reconnect_status_done(QemuMonitor *mon, const QemuMonitorStatus *st, const HoError *err,
                      void *opaque)
{
    QemuDomainObj *dom = opaque;
    QemuDomainState state;

    if (!dom->drv || dom->drv->closing || mon != dom->mon || !dom->reconnecting)
        return;
    if (err) {
        if (err->code != HO_ERR_MONITOR)
            reconnect_monitor_failed(dom, err);
        return; /* else the closed callback follows */
    }
    if (st->running)
        state = QEMU_DOMAIN_STATE_RUNNING;
    else if (st->state == QEMU_RUN_STATE_GUEST_PANICKED)
        state = QEMU_DOMAIN_STATE_CRASHED;
    else
        state = QEMU_DOMAIN_STATE_PAUSED;
    if (state != dom->state) {
        dom->state = state;
        dom_set_reason(dom, "unknown");
    } else if (g_strcmp0(dom->reason, REASON_MONITOR_UNAVAILABLE) == 0) {
        dom_set_reason(dom, state == QEMU_DOMAIN_STATE_RUNNING ? "booted" : "unknown");
    }
    qemu_caps_probe(mon, reconnect_caps_done, dom);
}

typedef struct {
    const char *name;
    const char *uuid;
    int64_t pid;
    uint64_t start_time;
    const char *monitor;
    const char *state;
    const char *reason;
    const char *emulator;
    const char *accel;
    const char *live_xml;
    bool persistent;
    json_object *job;
} StatusFile;

static int
status_parse(json_object *obj, StatusFile *sf)
{
    json_object *reason = NULL;

    if (ho_json_get_string(obj, "name", &sf->name) < 0 ||
        ho_json_get_string(obj, "uuid", &sf->uuid) < 0 ||
        ho_json_get_int64(obj, "pid", &sf->pid) < 0 ||
        ho_json_get_uint64(obj, "pid_start_time", &sf->start_time) < 0 ||
        ho_json_get_string(obj, "monitor", &sf->monitor) < 0 ||
        ho_json_get_string(obj, "state", &sf->state) < 0 ||
        ho_json_get_string(obj, "emulator", &sf->emulator) < 0 ||
        ho_json_get_string(obj, "accel", &sf->accel) < 0 ||
        ho_json_get_string(obj, "live_xml", &sf->live_xml) < 0 ||
        ho_json_get_bool(obj, "persistent", &sf->persistent) < 0)
        return -1;
    if (json_object_object_get_ex(obj, "reason", &reason) && reason &&
        ho_json_opt_string(obj, "reason", &sf->reason) < 0)
        return -1;
    if (json_object_object_get_ex(obj, "job", &sf->job) && sf->job &&
        !json_object_is_type(sf->job, json_type_object)) {
        ho_error_report(HO_ERR_JSON, _("JSON field '%1$s' is not an object"), "job");
        return -1;
    }
    if (sf->pid <= 0 || sf->pid > G_MAXINT) {
        ho_error_report(HO_ERR_JSON, _("JSON field '%1$s' is out of range"), "pid");
        return -1;
    }
    return 0;
}

/* Take over what a status file describes; problems are logged, never fatal. */
static void
reconnect_status_file(QemuDriver *drv, const char *path, const char *stem)
{
    g_autofree char *text = NULL;
    g_autoptr(json_object) obj = NULL;
    g_autoptr(QemuDomainDef) live = NULL;
    g_autoptr(QemuDomainObj) created = NULL;
    StatusFile sf = {0};
    QemuDomainObj *dom;
    unsigned long long start_time = 0;
    char uuid[37];
    int state;
    int pidfd;
    size_t len;

    if (ho_file_read_all(path, STATUS_FILE_MAX, &text, &len) < 0 ||
        !(obj = ho_json_parse(text, len)) || status_parse(obj, &sf) < 0 ||
        !(live = qemu_domain_def_parse_string(sf.live_xml, path))) {
        HO_WARN("ignoring status file '%s': %s", path, ho_error_last_message());
        ho_error_reset();
        return;
    }
    qemu_domain_uuid_format(live->uuid, uuid);
    state = domain_state_from_string(sf.state);
    if (!g_str_equal(sf.name, stem) || !g_str_equal(live->name, stem) ||
        !g_str_equal(sf.uuid, uuid) || state <= QEMU_DOMAIN_STATE_SHUTOFF) {
        HO_WARN("ignoring status file '%s': it does not describe a running domain '%s'", path,
                stem);
        return;
    }
    dom = g_hash_table_lookup(drv->domains, stem);
    if (dom && !g_str_equal(dom->uuid, uuid)) {
        HO_WARN("ignoring status file '%s': domain '%s' is defined with UUID %s", path, stem,
                dom->uuid);
        return;
    }
    if (!dom) {
        GHashTableIter iter;
        gpointer value;

        g_hash_table_iter_init(&iter, drv->domains);
        while (g_hash_table_iter_next(&iter, NULL, &value)) {
            if (g_str_equal(((QemuDomainObj *)value)->uuid, uuid)) {
                HO_WARN("ignoring status file '%s': UUID %s belongs to domain '%s'", path, uuid,
                        ((QemuDomainObj *)value)->name);
                return;
            }
        }
        dom = created = dom_new(drv, stem, live->uuid);
    }

    dom->pid = (GPid)sf.pid;
    dom->start_time = sf.start_time;
    dom->monitor_path = g_strdup(sf.monitor);
    dom->emulator = g_strdup(sf.emulator);
    dom->accel = g_strdup(sf.accel);
    dom->live_def = g_steal_pointer(&live);
    dom->state = state;
    dom_set_reason(dom, sf.reason);
    dom->job = sf.job ? json_object_get(sf.job) : NULL;
    dom->reconnecting = true;

    /* The pidfd first, then the start time: if that still matches, the
     * pidfd names the very QEMU the status file speaks of. */
    pidfd = qemu_process_pidfd_open(dom->pid);
    if (pidfd < 0 || qemu_process_start_time(dom->pid, &start_time) < 0 ||
        start_time != sf.start_time) {
        ho_error_reset();
        if (pidfd >= 0)
            close(pidfd);
        dom_log(dom, "QEMU pid %d is gone: cleaning up", (int)dom->pid);
        HO_INFO("domain '%s': QEMU pid %d is gone", dom->name, (int)dom->pid);
        dom->pid = 0;
        dom_release_runtime(dom, true);
        dom->state = QEMU_DOMAIN_STATE_SHUTOFF;
        dom_set_reason(dom, "qemu-exited");
        emit_event_later(dom, "stopped", "qemu-exited");
        return;
    }
    dom->pidfd = pidfd;
    if (created)
        g_hash_table_insert(drv->domains, dom->name, g_steal_pointer(&created));
    dom->pidfd_watch = g_unix_fd_source_new(pidfd, G_IO_IN);
    g_source_set_callback(dom->pidfd_watch, (GSourceFunc)(void (*)(void))dom_pidfd_ready, dom,
                          NULL);
    g_source_attach(dom->pidfd_watch, drv->ctx);

    if (g_strcmp0(sf.reason, REASON_STARTING) == 0) {
        /* Its start never completed: nobody was told it runs. */
        dom_log(dom, "QEMU pid %d never finished starting: killing it", (int)dom->pid);
        dom->abandon = true;
        dom_kill(dom, SIGKILL);
        return;
    }
    dom_log(dom, "reconnecting to QEMU pid %d", (int)dom->pid);
    if (dom_open_monitor(dom) < 0) {
        g_autoptr(HoError) err = error_take();

        reconnect_monitor_failed(dom, err);
    }
}

/* For g_ptr_array_sort: it passes pointers to the elements. */
static gint
compare_names(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The names in dir ending with suffix, sorted; hidden and temporary files left out. */
static GPtrArray *
list_files(const char *dir, const char *suffix)
{
    g_autoptr(GError) gerr = NULL;
    g_autoptr(GDir) d = g_dir_open(dir, 0, &gerr);
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
    const char *entry;

    if (!d) {
        HO_WARN("cannot list '%s': %s", dir, gerr->message);
        return names;
    }
    while ((entry = g_dir_read_name(d))) {
        if (entry[0] != '.' && g_str_has_suffix(entry, suffix) &&
            strlen(entry) > strlen(suffix))
            g_ptr_array_add(names, g_strdup(entry));
    }
    g_ptr_array_sort(names, compare_names);
    return names;
}

static void
load_definitions(QemuDriver *drv)
{
    g_autoptr(GPtrArray) names = list_files(drv->defs_dir, ".xml");

    for (guint i = 0; i < names->len; i++) {
        const char *file = g_ptr_array_index(names, i);
        g_autofree char *stem = g_strndup(file, strlen(file) - strlen(".xml"));
        g_autofree char *path = g_build_filename(drv->defs_dir, file, NULL);
        g_autoptr(QemuDomainDef) def = qemu_domain_def_parse_file(path);
        QemuDomainObj *dom;
        char uuid[37];
        GHashTableIter iter;
        gpointer value;
        bool dup = false;

        if (!def) {
            HO_WARN("ignoring definition '%s': %s", path, ho_error_last_message());
            ho_error_reset();
            continue;
        }
        if (!g_str_equal(def->name, stem)) {
            HO_WARN("ignoring definition '%s': it defines domain '%s'", path, def->name);
            continue;
        }
        qemu_domain_uuid_format(def->uuid, uuid);
        g_hash_table_iter_init(&iter, drv->domains);
        while (!dup && g_hash_table_iter_next(&iter, NULL, &value))
            dup = g_str_equal(((QemuDomainObj *)value)->uuid, uuid);
        if (dup) {
            HO_WARN("ignoring definition '%s': UUID %s is used by another domain", path, uuid);
            continue;
        }
        dom = dom_new(drv, def->name, def->uuid);
        dom->def = g_steal_pointer(&def);
        dom->persistent = true;
        g_hash_table_insert(drv->domains, dom->name, dom);
    }
}

static void
reconnect_all(QemuDriver *drv)
{
    g_autoptr(GPtrArray) names = list_files(drv->status_dir, ".json");

    for (guint i = 0; i < names->len; i++) {
        const char *file = g_ptr_array_index(names, i);
        g_autofree char *stem = g_strndup(file, strlen(file) - strlen(".json"));
        g_autofree char *path = g_build_filename(drv->status_dir, file, NULL);

        reconnect_status_file(drv, path, stem);
    }
}

/* ---- the driver -------------------------------------------------------------- */

QemuDriver *
qemu_driver_open(const QemuDriverConfig *cfg, GMainContext *ctx, QemuDriverEventFunc event_cb,
                 void *opaque)
{
    g_autoptr(QemuDriver) drv = NULL;

    if (!cfg->state_dir || !cfg->runtime_dir || !cfg->log_dir) {
        ho_error_report(HO_ERR_INVALID_ARG, "%s",
                        _("the QEMU driver needs a state, a runtime and a log directory"));
        return NULL;
    }
    drv = g_new0(QemuDriver, 1);
    drv->state_dir = g_strdup(cfg->state_dir);
    drv->runtime_dir = g_strdup(cfg->runtime_dir);
    drv->log_dir = g_strdup(cfg->log_dir);
    drv->default_emulator = g_strdup(cfg->default_emulator);
    drv->shutdown_timeout_s = cfg->shutdown_timeout_s;
    drv->probe_timeout_s = cfg->probe_timeout_s ? cfg->probe_timeout_s : CAPS_PROBE_TIMEOUT_S;
    drv->spawn_hook = cfg->spawn_hook;
    drv->spawn_hook_opaque = cfg->spawn_hook_opaque;
    drv->qemu_nice_set = cfg->qemu_nice_set;
    drv->qemu_nice = cfg->qemu_nice;
    drv->defs_dir = g_build_filename(cfg->state_dir, "domains", NULL);
    drv->caps_dir = g_build_filename(cfg->state_dir, "caps", NULL);
    drv->status_dir = g_build_filename(cfg->runtime_dir, "domains", NULL);
    drv->ctx = ctx ? g_main_context_ref(ctx) : g_main_context_ref_thread_default();
    drv->event_cb = event_cb;
    drv->opaque = opaque;
    drv->domains = g_hash_table_new_full(g_str_hash, g_str_equal, NULL,
                                         (GDestroyNotify)qemu_domain_obj_unref);
    drv->caps = g_hash_table_new_full(g_str_hash, g_str_equal, NULL,
                                      (GDestroyNotify)caps_entry_free);
    drv->probes = g_ptr_array_new();
    g_queue_init(&drv->later);

    if (ho_file_ensure_dir(drv->state_dir, 0700) < 0 ||
        ho_file_ensure_dir(drv->defs_dir, 0700) < 0 ||
        ho_file_ensure_dir(drv->caps_dir, 0700) < 0 ||
        ho_file_ensure_dir(drv->runtime_dir, 0700) < 0 ||
        ho_file_ensure_dir(drv->status_dir, 0700) < 0 ||
        ho_file_ensure_dir(drv->log_dir, 0700) < 0)
        return NULL;
    if (cfg->record_path && !(drv->recorder = qemu_recorder_open(cfg->record_path)))
        return NULL;
    drv->accel = qemu_process_host_accel(&drv->accel_why);

    load_definitions(drv);
    reconnect_all(drv);
    HO_INFO("QEMU driver open: %u domain(s), accelerator %s", g_hash_table_size(drv->domains),
            drv->accel);
    return g_steal_pointer(&drv);
}

static void
later_flush(QemuDriver *drv)
{
    Later *l;

    while ((l = g_queue_pop_head(&drv->later))) {
        if (!l->is_event)
            l->run(drv, l->data);
        if (l->free_data)
            l->free_data(l->data);
        g_free(l);
    }
}

void
qemu_driver_free(QemuDriver *drv)
{
    g_autoptr(GPtrArray) doms = NULL;
    g_autoptr(HoError) closing_err = NULL;

    if (!drv)
        return;
    drv->closing = true;

    /* Whatever waits gets its answer; the QEMUs of running domains live on. */
    later_flush(drv);
    while (drv->probes && drv->probes->len > 0) {
        CapsProbe *p = g_ptr_array_steal_index(drv->probes, drv->probes->len - 1);

        if (p->entry) {
            g_autoptr(HoError) err = ho_error_new(HO_ERR_OPERATION_INVALID, "%s",
                                                  _("the QEMU driver was closed"));

            caps_probe_finish(p, NULL, err);
        }
        caps_probe_free(p);
    }
    if (drv->domains) {
        GHashTableIter iter;
        gpointer value;

        doms = g_ptr_array_new_with_free_func((GDestroyNotify)qemu_domain_obj_unref);
        g_hash_table_iter_init(&iter, drv->domains);
        while (g_hash_table_iter_next(&iter, NULL, &value))
            g_ptr_array_add(doms, qemu_domain_obj_ref(value));
    }
    for (guint i = 0; doms && i < doms->len; i++) {
        QemuDomainObj *dom = g_ptr_array_index(doms, i);

        if (dom->start) {
            StartOp *op = dom->start;

            closing_err = closing_err ? closing_err
                                      : ho_error_new(HO_ERR_OPERATION_INVALID, "%s",
                                                     _("the QEMU driver was closed"));
            if (!op->failing) {
                start_fail(op, closing_err); /* kills and completes at once */
            } else {
                /* Killed, or about to be: no waiting for the exit now. */
                dom_kill(dom, SIGKILL);
                start_finish_failed(op);
            }
        }
        if (dom->stop_waiters->len > 0) {
            g_autoptr(HoError) err =
                error_new(HO_ERR_OPERATION_INVALID,
                          _("the QEMU driver was closed before domain '%1$s' stopped"),
                          dom->name);

            dom_complete_waiters(dom, drv, err);
        }
        /* Close the monitor, stop watching; the status file stays for the
         * next driver. */
        dom_release_runtime(dom, false);
    }
    later_flush(drv);
    clear_source(&drv->later_source);
    for (guint i = 0; doms && i < doms->len; i++)
        ((QemuDomainObj *)g_ptr_array_index(doms, i))->drv = NULL;
    g_clear_pointer(&doms, g_ptr_array_unref);

    g_clear_pointer(&drv->domains, g_hash_table_unref);
    g_clear_pointer(&drv->caps, g_hash_table_unref);
    g_clear_pointer(&drv->probes, g_ptr_array_unref);
    qemu_recorder_unref(drv->recorder);
    if (drv->ctx)
        g_main_context_unref(drv->ctx);
    g_free(drv->state_dir);
    g_free(drv->runtime_dir);
    g_free(drv->log_dir);
    g_free(drv->default_emulator);
    g_free(drv->defs_dir);
    g_free(drv->caps_dir);
    g_free(drv->status_dir);
    g_free(drv);
    /* The domains' log lines asked for are on the disk when we return. */
    ho_file_append_flush();
}

int
qemu_driver_qemu_nice(QemuDriver *drv)
{
    int own;

    if (drv->qemu_nice_set)
        return drv->qemu_nice;
    errno = 0;
    own = getpriority(PRIO_PROCESS, 0);
    return (own == -1 && errno) ? 0 : own;
}

const char *
qemu_driver_accel(QemuDriver *drv, const char **why)
{
    if (why)
        *why = drv->accel_why;
    return drv->accel;
}

QemuDomainObj *
qemu_driver_lookup(QemuDriver *drv, const char *name_or_uuid)
{
    QemuDomainObj *dom = g_hash_table_lookup(drv->domains, name_or_uuid);
    uint8_t raw[16];

    if (dom)
        return dom;
    if (qemu_domain_uuid_parse(name_or_uuid, raw)) {
        char uuid[37];
        GHashTableIter iter;
        gpointer value;

        qemu_domain_uuid_format(raw, uuid);
        g_hash_table_iter_init(&iter, drv->domains);
        while (g_hash_table_iter_next(&iter, NULL, &value)) {
            if (g_str_equal(((QemuDomainObj *)value)->uuid, uuid))
                return value;
        }
        ho_error_report(HO_ERR_NO_DOMAIN, _("no domain with UUID '%1$s'"), name_or_uuid);
        return NULL;
    }
    ho_error_report(HO_ERR_NO_DOMAIN, _("no domain named '%1$s'"), name_or_uuid);
    return NULL;
}

static gint
compare_domains(gconstpointer a, gconstpointer b)
{
    return strcmp((*(QemuDomainObj *const *)a)->name, (*(QemuDomainObj *const *)b)->name);
}

GPtrArray *
qemu_driver_list(QemuDriver *drv)
{
    GPtrArray *list = g_ptr_array_new();
    GHashTableIter iter;
    gpointer value;

    g_hash_table_iter_init(&iter, drv->domains);
    while (g_hash_table_iter_next(&iter, NULL, &value))
        g_ptr_array_add(list, value);
    g_ptr_array_sort(list, compare_domains);
    return list;
}

/* ---- definitions ------------------------------------------------------- */

QemuDomainObj *
qemu_driver_define(QemuDriver *drv, const char *xml)
{
    g_autoptr(QemuDomainDef) def = qemu_domain_def_parse_string(xml, NULL);
    g_autofree char *text = NULL;
    g_autofree char *path = NULL;
    QemuDomainObj *dom;
    GHashTableIter iter;
    gpointer value;
    char uuid[37];

    if (!def)
        return NULL;
    qemu_domain_uuid_format(def->uuid, uuid);
    dom = g_hash_table_lookup(drv->domains, def->name);
    if (dom && !g_str_equal(dom->uuid, uuid)) {
        ho_error_report(HO_ERR_OPERATION_INVALID,
                        _("domain '%1$s' already exists with UUID '%2$s'"), def->name,
                        dom->uuid);
        return NULL;
    }
    g_hash_table_iter_init(&iter, drv->domains);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        QemuDomainObj *other = value;

        if (other != dom && g_str_equal(other->uuid, uuid)) {
            ho_error_report(HO_ERR_OPERATION_INVALID,
                            _("UUID '%1$s' is already used by domain '%2$s'"), uuid,
                            other->name);
            return NULL;
        }
    }
    text = qemu_domain_def_format(def);
    path = dom_def_path(drv, def->name);
    if (ho_file_write_atomic(path, text, strlen(text), 0600) < 0)
        return NULL;

    if (dom) {
        qemu_domain_def_free(dom->def);
        dom->def = g_steal_pointer(&def);
        dom->persistent = true;
        HO_INFO("domain '%s': definition updated", dom->name);
        if (dom_save_status(dom) < 0) {
            /* Only the "persistent" flag of the status is stale: not fatal. */
            HO_WARN("domain '%s': %s", dom->name, ho_error_last_message());
            ho_error_reset();
        }
        emit_event(dom, "defined", "updated");
        return dom;
    }
    dom = dom_new(drv, def->name, def->uuid);
    dom->def = g_steal_pointer(&def);
    dom->persistent = true;
    g_hash_table_insert(drv->domains, dom->name, dom);
    HO_INFO("domain '%s': defined", dom->name);
    emit_event(dom, "defined", "added");
    return dom;
}

int
qemu_driver_undefine(QemuDriver *drv, QemuDomainObj *dom)
{
    g_autoptr(QemuDomainObj) hold = qemu_domain_obj_ref(dom);
    g_autofree char *path = NULL;

    if (!dom_check_owner(drv, dom))
        return -1;
    if (!dom->persistent) {
        ho_error_report(HO_ERR_OPERATION_INVALID, _("domain '%1$s' is not persistent"),
                        dom->name);
        return -1;
    }
    path = dom_def_path(drv, dom->name);
    if (unlink(path) < 0 && errno != ENOENT) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot remove '%1$s'"), path);
        return -1;
    }
    dom->persistent = false;
    if (dom->pid > 0 || dom->start) {
        /* It keeps its live definition and is forgotten when it stops. */
        g_clear_pointer(&dom->def, qemu_domain_def_free);
        if (dom_save_status(dom) < 0) {
            HO_WARN("domain '%s': %s", dom->name, ho_error_last_message());
            ho_error_reset();
        }
    }
    HO_INFO("domain '%s': undefined", dom->name);
    emit_event(dom, "undefined", "removed");
    dom_drop_if_gone(dom);
    return 0;
}

/* ---- getters --------------------------------------------------------------- */

const char *
qemu_domain_obj_name(const QemuDomainObj *dom)
{
    return dom->name;
}

const char *
qemu_domain_obj_uuid(const QemuDomainObj *dom)
{
    return dom->uuid;
}

QemuDomainState
qemu_domain_obj_state(const QemuDomainObj *dom)
{
    return dom->state;
}

const char *
qemu_domain_obj_state_reason(const QemuDomainObj *dom)
{
    return dom->reason;
}

bool
qemu_domain_obj_is_persistent(const QemuDomainObj *dom)
{
    return dom->persistent;
}

bool
qemu_domain_obj_is_active(const QemuDomainObj *dom)
{
    return dom->pid > 0 || dom->start;
}

bool
qemu_domain_obj_shutdown_forced(const QemuDomainObj *dom)
{
    return dom->forced;
}

int
qemu_domain_obj_pid(const QemuDomainObj *dom)
{
    return dom->pid > 0 ? (int)dom->pid : 0;
}

const QemuDomainDef *
qemu_domain_obj_def(const QemuDomainObj *dom, bool inactive)
{
    if (inactive)
        return dom->def ? dom->def : dom->live_def;
    return dom->live_def ? dom->live_def : dom->def;
}

QemuMonitor *
qemu_domain_obj_monitor(const QemuDomainObj *dom)
{
    return dom->pid > 0 && !dom->start ? dom->mon : NULL;
}

const QemuCaps *
qemu_domain_obj_caps(const QemuDomainObj *dom)
{
    return dom->pid > 0 ? dom->caps : NULL;
}

json_object *
qemu_domain_obj_info_json(const QemuDomainObj *dom)
{
    json_object *obj = json_object_new_object();
    const QemuDomainDef *def = qemu_domain_obj_def(dom, false);
    const char *emulator = dom->emulator;

    ho_json_add_string(obj, "name", dom->name);
    ho_json_add_string(obj, "uuid", dom->uuid);
    ho_json_add_string(obj, "state", qemu_domain_state_to_string(dom->state));
    if (dom->reason)
        ho_json_add_string(obj, "reason", dom->reason);
    if (def) {
        ho_json_add_int64(obj, "max_memory_kib", (int64_t)def->memory_kib);
        ho_json_add_int64(obj, "memory_kib", (int64_t)def->current_memory_kib);
        ho_json_add_int64(obj, "vcpus", def->vcpus);
        if (def->machine)
            ho_json_add_string(obj, "machine", def->machine);
        if (!emulator)
            emulator = def->emulator;
    }
    if (!emulator && dom->drv)
        emulator = dom->drv->default_emulator;
    if (emulator)
        ho_json_add_string(obj, "emulator", emulator);
    ho_json_add_bool(obj, "persistent", dom->persistent);
    if (dom->pid > 0) {
        ho_json_add_int64(obj, "pid", dom->pid);
        if (dom->accel)
            ho_json_add_string(obj, "accel", dom->accel);
        if (dom->job)
            ho_json_add(obj, "job", json_object_get(dom->job));
    }
    return obj;
}

/* ---- hooks of the migration orchestrator ------------------------------------ */

GMainContext *
qemu_driver_context(QemuDriver *drv)
{
    return drv->ctx;
}

QemuRecorder *
qemu_driver_recorder(QemuDriver *drv)
{
    return drv->recorder;
}

const char *
qemu_driver_host_emulator(QemuDriver *drv)
{
    return drv->default_emulator;
}

json_object *
qemu_domain_obj_get_job(const QemuDomainObj *dom)
{
    return dom->job;
}

bool
qemu_domain_obj_is_reconnecting(const QemuDomainObj *dom)
{
    return dom->reconnecting;
}

const char *
qemu_domain_obj_emulator(const QemuDomainObj *dom)
{
    return dom->emulator;
}

int
qemu_driver_domain_set_job(QemuDriver *drv, QemuDomainObj *dom, json_object *job)
{
    json_object *old;

    if (!dom_check_owner(drv, dom)) {
        json_object_put(job);
        return -1;
    }
    old = dom->job;
    dom->job = job;
    if (dom_save_status(dom) < 0) {
        dom->job = old;
        json_object_put(job);
        return -1;
    }
    json_object_put(old);
    return 0;
}

QemuDomainObj *
qemu_driver_domain_start_incoming(QemuDriver *drv, const QemuDomainDef *def,
                                  const char *emulator, json_object *job,
                                  QemuDriverDoneFunc cb, void *opaque)
{
    g_autoptr(json_object) job_owned = job;
    QemuDomainObj *dom;
    StartOp *op;
    GHashTableIter iter;
    gpointer value;
    char uuid[37];

    if (drv->closing) {
        ho_error_report(HO_ERR_OPERATION_INVALID, "%s", _("the QEMU driver was closed"));
        return NULL;
    }
    if (!def->machine) {
        ho_error_report(HO_ERR_INVALID_ARG,
                        _("an incoming migration of domain '%1$s' needs a concrete machine type"),
                        def->name);
        return NULL;
    }
    qemu_domain_uuid_format(def->uuid, uuid);
    dom = g_hash_table_lookup(drv->domains, def->name);
    if (dom && !g_str_equal(dom->uuid, uuid)) {
        ho_error_report(HO_ERR_OPERATION_INVALID,
                        _("domain '%1$s' already exists with UUID '%2$s'"), def->name,
                        dom->uuid);
        return NULL;
    }
    g_hash_table_iter_init(&iter, drv->domains);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        QemuDomainObj *other = value;

        if (other != dom && g_str_equal(other->uuid, uuid)) {
            ho_error_report(HO_ERR_OPERATION_INVALID,
                            _("UUID '%1$s' is already used by domain '%2$s'"), uuid,
                            other->name);
            return NULL;
        }
    }
    if (dom && (dom->pid > 0 || dom->start)) {
        ho_error_report(HO_ERR_OPERATION_INVALID, _("domain '%1$s' is already active"),
                        def->name);
        return NULL;
    }
    if (!emulator)
        emulator = drv->default_emulator;
    if (!emulator) {
        ho_error_report(HO_ERR_INVALID_ARG, "%s", _("no default emulator is configured"));
        return NULL;
    }
    if (!dom) {
        /* Transient until the migration finishes (and persistent only if asked). */
        dom = dom_new(drv, def->name, def->uuid);
        g_hash_table_insert(drv->domains, dom->name, dom);
    }
    op = g_new0(StartOp, 1);
    op->drv = drv;
    op->dom = qemu_domain_obj_ref(dom);
    op->cb = cb;
    op->opaque = opaque;
    op->paused = true;
    op->incoming = true;
    op->emulator = g_strdup(emulator);
    op->def = qemu_domain_def_copy(def);
    /* In the first status file already: a restarted driver knows it. */
    json_object_put(dom->job);
    dom->job = g_steal_pointer(&job_owned);
    dom->start = op;
    HO_INFO("domain '%s': starting for an incoming migration (machine %s)", dom->name,
            def->machine);
    caps_request(drv, emulator, start_caps_ready, op);
    return dom;
}

int
qemu_driver_domain_incoming_finished(QemuDriver *drv, QemuDomainObj *dom, bool running)
{
    QemuDomainState state = running ? QEMU_DOMAIN_STATE_RUNNING : QEMU_DOMAIN_STATE_PAUSED;
    bool changed;

    if (!dom_check_owner(drv, dom))
        return -1;
    if (dom->pid <= 0) {
        ho_error_report(HO_ERR_OPERATION_INVALID, _("domain '%1$s' is not running"), dom->name);
        return -1;
    }
    changed = dom->state != state;
    g_clear_pointer(&dom->job, json_object_put);
    dom_log(dom, "incoming migration finished, %s", qemu_domain_state_to_string(state));
    return dom_set_state(dom, state, "migrated", changed ? (running ? "resumed" : "suspended")
                                                         : NULL,
                         "migrated");
}

static gboolean
quit_kill(gpointer opaque)
{
    QemuDomainObj *dom = opaque;

    g_clear_pointer(&dom->kill_timer, g_source_unref);
    dom_log(dom, "QEMU did not exit within %u s of quit: sending SIGKILL",
            (unsigned int)DESTROY_KILL_DELAY_S);
    dom_kill(dom, SIGKILL);
    return G_SOURCE_REMOVE;
}

void
qemu_driver_domain_quit_migrated(QemuDriver *drv, QemuDomainObj *dom, QemuDriverDoneFunc cb,
                                 void *opaque)
{
    if (!dom_check_owner(drv, dom))
        return refuse(drv, dom, cb, opaque);
    if (dom->pid <= 0 || dom->start) {
        ho_error_report(HO_ERR_OPERATION_INVALID, _("domain '%1$s' is not running"), dom->name);
        return refuse(drv, dom, cb, opaque);
    }
    dom_add_waiter(dom, cb, opaque);
    if (dom->migrated_out)
        return;
    dom->migrated_out = true;
    clear_source(&dom->shutdown_timer);
    dom_log(dom, "migrated: quitting QEMU");
    /* The reply may never come (QEMU closes the socket as it exits): the
     * exit is what completes this. */
    if (dom->mon && !dom->reconnecting)
        qemu_monitor_json_quit(dom->mon, NULL, NULL);
    else
        dom_kill(dom, SIGTERM);
    if (!dom->kill_timer)
        dom->kill_timer = attach_timeout(drv, DESTROY_KILL_DELAY_S, quit_kill, dom);
}

guint
qemu_domain_obj_add_exit_watch(QemuDomainObj *dom, QemuDomainExitFunc fn, void *opaque)
{
    ExitWatch *w = g_new0(ExitWatch, 1);

    w->id = ++dom->exit_watch_serial;
    w->fn = fn;
    w->opaque = opaque;
    g_ptr_array_add(dom->exit_watches, w);
    return w->id;
}

void
qemu_domain_obj_remove_exit_watch(QemuDomainObj *dom, guint id)
{
    for (guint i = 0; i < dom->exit_watches->len; i++) {
        ExitWatch *w = g_ptr_array_index(dom->exit_watches, i);

        if (w->id == id) {
            g_ptr_array_remove_index(dom->exit_watches, i);
            return;
        }
    }
}

/* ---- CPR transfer (issue 6) ------------------------------------------------ */

struct _QemuDomainCpr {
    QemuDriver *drv;
    QemuDomainObj *dom;   /* a reference */
    GPid pid;             /* 0 once it exited */
    bool own_child;       /* child watch, else pidfd */
    int pidfd;
    GSource *watch;       /* child watch or pidfd source */
    GSource *kill_timer;
    unsigned long long start_time;
    QemuMonitor *mon;     /* a reference, callbacks of the domain (ignored while not its own) */
    QemuCaps *caps;
    char *emulator;
    char *qmp_path;
    char *channel_path;
    char *main_path;
    bool orphan;          /* freed by its owner: frees itself once the QEMU exited */
    QemuDomainCprExitFunc exit_cb;
    void *opaque;
};

static void cpr_watch(QemuDomainCpr *cpr);

static void
cpr_release(QemuDomainCpr *cpr)
{
    clear_source(&cpr->watch);
    clear_source(&cpr->kill_timer);
    if (cpr->pidfd >= 0)
        close(cpr->pidfd);
    cpr->pidfd = -1;
    if (cpr->mon) {
        qemu_monitor_close(cpr->mon);
        g_clear_pointer(&cpr->mon, qemu_monitor_unref);
    }
}

static void
cpr_free_now(QemuDomainCpr *cpr)
{
    cpr_release(cpr);
    if (cpr->channel_path)
        (void)unlink(cpr->channel_path);
    if (cpr->main_path)
        (void)unlink(cpr->main_path);
    if (cpr->qmp_path)
        (void)unlink(cpr->qmp_path);
    qemu_caps_free(cpr->caps);
    qemu_domain_obj_unref(cpr->dom);
    g_free(cpr->emulator);
    g_free(cpr->qmp_path);
    g_free(cpr->channel_path);
    g_free(cpr->main_path);
    g_free(cpr);
}

static void
cpr_exited(QemuDomainCpr *cpr, bool have_status, int status)
{
    g_autofree char *how = describe_exit(have_status, status);

    HO_INFO("domain '%s': CPR transfer: QEMU pid %d %s", cpr->dom->name, (int)cpr->pid, how);
    dom_log(cpr->dom, "CPR transfer: QEMU pid %d %s", (int)cpr->pid, how);
    cpr->pid = 0;
    cpr_release(cpr);
    if (cpr->orphan) {
        cpr_free_now(cpr);
        return;
    }
    if (cpr->exit_cb)
        cpr->exit_cb(cpr, how, cpr->opaque);
}

static void
cpr_child_exited(GPid pid, gint status, gpointer opaque)
{
    QemuDomainCpr *cpr = opaque;

    g_clear_pointer(&cpr->watch, g_source_unref);
    cpr_exited(cpr, true, status);
}

static gboolean
cpr_pidfd_ready(gint fd, GIOCondition cond, gpointer opaque)
{
    QemuDomainCpr *cpr = opaque;

    g_clear_pointer(&cpr->watch, g_source_unref);
    cpr_exited(cpr, false, 0);
    return G_SOURCE_REMOVE;
}

/* Watch cpr->pid: a child watch for our child, else its pidfd. */
static void
cpr_watch(QemuDomainCpr *cpr)
{
    if (cpr->own_child) {
        cpr->watch = g_child_watch_source_new(cpr->pid);
        g_source_set_callback(cpr->watch, (GSourceFunc)(void (*)(void))cpr_child_exited, cpr,
                              NULL);
    } else {
        cpr->watch = g_unix_fd_source_new(cpr->pidfd, G_IO_IN);
        g_source_set_callback(cpr->watch, (GSourceFunc)(void (*)(void))cpr_pidfd_ready, cpr,
                              NULL);
    }
    g_source_attach(cpr->watch, cpr->drv->ctx);
}

static char *
cpr_file_path(QemuDomainObj *dom, const char *suffix)
{
    g_autofree char *file = g_strdup_printf("%s.%s", dom->name, suffix);

    return g_build_filename(dom->drv->status_dir, file, NULL);
}

QemuDomainCpr *
qemu_driver_domain_cpr_spawn(QemuDriver *drv, QemuDomainObj *dom, const char *emulator,
                             const QemuCaps *caps, QemuDomainCprExitFunc exit_cb, void *opaque)
{
    QemuDomainCpr *cpr;
    QemuProcessSpawn spawn = {0};
    QemuCommandOptions copts = {0};
    g_auto(GStrv) fw_dirs = NULL;
    g_auto(GStrv) argv = NULL;
    g_autoptr(QemuDomainDef) def = NULL;
    g_autofree char *log_path = NULL;
    g_autofree char *joined = NULL;
    g_autoptr(json_object) caps_json = NULL;
    g_autofree char *new_label = NULL;

    if (!dom_check_owner(drv, dom))
        return NULL;
    if (dom->pid <= 0 || dom->start || !dom->live_def || !dom->mon) {
        ho_error_report(HO_ERR_OPERATION_INVALID, _("domain '%1$s' is not running"), dom->name);
        return NULL;
    }
    if (!emulator)
        emulator = dom->emulator;

    def = qemu_domain_def_copy(dom->live_def);
    g_free(def->emulator);
    def->emulator = g_strdup(emulator);
    cpr = g_new0(QemuDomainCpr, 1);
    cpr->drv = drv;
    cpr->dom = qemu_domain_obj_ref(dom);
    cpr->pidfd = -1;
    cpr->exit_cb = exit_cb;
    cpr->opaque = opaque;
    cpr->emulator = g_strdup(emulator);
    caps_json = qemu_caps_to_json(caps);
    cpr->caps = qemu_caps_from_json(caps_json);
    cpr->qmp_path = cpr_file_path(dom, "cpr-qmp");
    cpr->channel_path = cpr_file_path(dom, "cpr");
    cpr->main_path = cpr_file_path(dom, "cpr-main");
    /* Leftovers of an earlier attempt would make QEMU's listen fail. */
    (void)unlink(cpr->channel_path);
    (void)unlink(cpr->main_path);
    if (!cpr->caps) {
        cpr_free_now(cpr);
        return NULL;
    }

    fw_dirs = qemu_process_firmware_dirs(emulator);
    copts.emulator = emulator;
    copts.start_paused = true;
    copts.incoming = "defer";
    copts.accel = dom->accel;
    copts.firmware_dirs = (const char *const *)fw_dirs;
    copts.machine_override = dom->live_def->machine;
    copts.aux_ram_share = true;
    copts.cpr_channel_path = cpr->channel_path;
    if (!(argv = qemu_command_build(def, &copts))) {
        cpr_free_now(cpr);
        return NULL;
    }
    log_path = dom_log_path(dom);
    joined = g_strjoinv(" ", argv);
    dom_log(dom, "CPR transfer: starting the new QEMU: %s", joined);
    spawn.emulator = argv[0];
    spawn.qmp_path = cpr->qmp_path;
    spawn.log_path = log_path;
    spawn.log_append = true;
    spawn.extra_args = (const char *const *)argv + 1;
    spawn.args_complete = true;
    spawn.die_with_parent = false;
    if (driver_spawn(drv, &spawn, &cpr->pid) < 0) {
        cpr->pid = 0;
        cpr_free_now(cpr);
        return NULL;
    }
    cpr->own_child = true;
    cpr_watch(cpr);
    if (qemu_process_start_time(cpr->pid, &cpr->start_time) < 0) {
        qemu_domain_cpr_free(cpr);
        return NULL;
    }
    /* The socket is listening already: the connect succeeds at once. Same
     * callbacks as the domain's monitor: they ignore it until the switch. */
    /* Labelled apart from the old QEMU's monitor: logs and recordings
     * (side "<name>-new") tell the two QEMUs apart. */
    new_label = g_strdup_printf("%s-new", dom->name);
    cpr->mon = qemu_monitor_open_unix(cpr->qmp_path, new_label, drv->ctx, &dom_monitor_cbs, dom);
    if (!cpr->mon) {
        qemu_domain_cpr_free(cpr);
        return NULL;
    }
    if (drv->recorder)
        qemu_monitor_set_recorder(cpr->mon, drv->recorder);
    (void)qemu_monitor_subscribe(cpr->mon, NULL, dom_monitor_event, dom);
    dom_log(dom, "CPR transfer: new QEMU pid %d", (int)cpr->pid);
    return cpr;
}

QemuMonitor *
qemu_domain_cpr_monitor(const QemuDomainCpr *cpr)
{
    return cpr->mon;
}

int
qemu_domain_cpr_pid(const QemuDomainCpr *cpr)
{
    return cpr->pid;
}

bool
qemu_domain_cpr_exited(const QemuDomainCpr *cpr)
{
    siginfo_t si;
    struct pollfd pfd;

    if (cpr->pid <= 0)
        return true;
    if (cpr->pidfd >= 0) {
        /* A pidfd turns readable when the process exits. */
        pfd.fd = cpr->pidfd;
        pfd.events = POLLIN;
        pfd.revents = 0;
        return poll(&pfd, 1, 0) > 0;
    }
    if (!cpr->own_child)
        return false;
    /* Our child: a zombie already (WNOWAIT leaves it to the child watch),
     * or reaped by the child watch whose callback has not run yet. */
    memset(&si, 0, sizeof(si));
    if (waitid(P_PID, (id_t)cpr->pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
        return errno == ECHILD;
    return si.si_pid == cpr->pid;
}

const char *
qemu_domain_cpr_channel_path(const QemuDomainCpr *cpr)
{
    return cpr->channel_path;
}

const char *
qemu_domain_cpr_main_path(const QemuDomainCpr *cpr)
{
    return cpr->main_path;
}

int
qemu_driver_domain_cpr_switch(QemuDriver *drv, QemuDomainObj *dom, QemuDomainCpr *cpr)
{
    g_autofree char *sock = NULL;
    GPid old_pid;
    unsigned long long old_start;
    bool old_own;
    int old_pidfd;
    QemuMonitor *old_mon;

    if (!dom_check_owner(drv, dom))
        return -1;
    if (cpr->dom != dom || dom->pid <= 0 || dom->start || cpr->pid <= 0 || !cpr->mon) {
        ho_error_report(HO_ERR_OPERATION_INVALID,
                        _("the new QEMU of domain '%1$s' is not there to switch to"), dom->name);
        return -1;
    }
    /* The new QEMU's socket takes the domain's usual name: a restarted
     * daemon connects to it there. */
    sock = dom_socket_path(dom);
    if (rename(cpr->qmp_path, sock) < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot rename '%1$s' to '%2$s'"),
                              cpr->qmp_path, sock);
        return -1;
    }
    g_clear_pointer(&cpr->qmp_path, g_free);

    /* Swap the processes and monitors. */
    clear_source(&cpr->watch);
    clear_source(&dom->child_watch);
    clear_source(&dom->pidfd_watch);
    clear_source(&dom->mon_timeout);
    old_pid = dom->pid;
    old_start = dom->start_time;
    old_own = dom->own_child;
    old_pidfd = dom->pidfd;
    old_mon = dom->mon;

    dom->pid = cpr->pid;
    dom->start_time = cpr->start_time;
    dom->own_child = true;
    dom->pidfd = -1;
    dom->mon = cpr->mon;
    dom->child_watch = g_child_watch_source_new(dom->pid);
    g_source_set_callback(dom->child_watch, (GSourceFunc)(void (*)(void))dom_child_exited, dom,
                          NULL);
    g_source_attach(dom->child_watch, drv->ctx);
    qemu_caps_free(dom->caps);
    dom->caps = g_steal_pointer(&cpr->caps);
    g_free(dom->emulator);
    dom->emulator = g_strdup(cpr->emulator);
    g_free(dom->live_def->emulator);
    dom->live_def->emulator = g_strdup(cpr->emulator);
    g_free(dom->monitor_path);
    dom->monitor_path = g_strdup(sock);

    cpr->pid = old_pid;
    cpr->start_time = old_start;
    cpr->own_child = old_own;
    cpr->pidfd = old_pidfd;
    cpr->mon = old_mon;
    if (cpr->own_child || cpr->pidfd >= 0)
        cpr_watch(cpr);
    else
        HO_WARN("domain '%s': the old QEMU pid %d cannot be watched", dom->name, (int)cpr->pid);

    dom_log(dom, "CPR transfer: QEMU pid %d replaced by pid %d", (int)cpr->pid, (int)dom->pid);
    /* The new QEMU waits for cont (-S): paused until the caller sends it. */
    return dom_set_state(dom, QEMU_DOMAIN_STATE_PAUSED, "migration", NULL, NULL);
}

static gboolean
cpr_kill_timeout(gpointer opaque)
{
    QemuDomainCpr *cpr = opaque;

    g_clear_pointer(&cpr->kill_timer, g_source_unref);
    if (cpr->pid > 0)
        dom_log(cpr->dom, "CPR transfer: QEMU pid %d did not exit: sending SIGKILL",
                (int)cpr->pid);
    qemu_domain_cpr_end(cpr, false);
    return G_SOURCE_REMOVE;
}

static void
cpr_kill(QemuDomainCpr *cpr, int sig)
{
    if (cpr->pid <= 0)
        return;
    if (cpr->pidfd >= 0) {
        if (qemu_process_pidfd_send_signal(cpr->pidfd, sig) < 0)
            ho_error_reset();
    } else if (cpr->own_child) {
        /* An unreaped child's pid cannot be reused. */
        (void)kill(cpr->pid, sig);
    }
}

void
qemu_domain_cpr_end(QemuDomainCpr *cpr, bool graceful)
{
    if (cpr->pid <= 0)
        return;
    if (graceful && cpr->mon && qemu_monitor_is_ready(cpr->mon)) {
        /* The reply may never come: the exit is what counts. */
        qemu_monitor_json_quit(cpr->mon, NULL, NULL);
        if (!cpr->kill_timer)
            cpr->kill_timer = attach_timeout(cpr->drv, DESTROY_KILL_DELAY_S, cpr_kill_timeout,
                                             cpr);
        return;
    }
    cpr_kill(cpr, SIGKILL);
}

void
qemu_domain_cpr_free(QemuDomainCpr *cpr)
{
    if (!cpr)
        return;
    if (cpr->pid > 0 && cpr->watch) {
        /* Reaped by its watch, which then frees it. */
        cpr->orphan = true;
        clear_source(&cpr->kill_timer);
        if (cpr->mon) {
            qemu_monitor_close(cpr->mon);
            g_clear_pointer(&cpr->mon, qemu_monitor_unref);
        }
        cpr_kill(cpr, SIGKILL);
        return;
    }
    cpr_free_now(cpr);
}
