/*
 * handoverd end to end: the real daemon (env HANDOVERD) in a temporary
 * --root, spoken to over its real UNIX socket through the RPC client of
 * src/rpc and, for protocol violations, through raw sockets.
 *
 * Covered: start-up errors (bad configuration, options); every method of
 * docs/protocol.md with good and bad arguments; malformed, oversized and
 * out-of-order messages; a flood of connections over max_clients; events;
 * real QEMU 7.2 and 10.0 guests (define, start, list, info, suspend,
 * resume, shutdown forced after a short timeout, destroy, undefine); a
 * daemon killed with SIGKILL and restarted finds its running guest; a
 * QEMU killed behind the daemon's back is noticed through an event; and
 * SIGTERM stops the daemon with status 0 leaving QEMU running.
 *
 * Nothing outlives the test: daemons are its children, started with
 * PR_SET_PDEATHSIG; QEMUs are the daemons' children, so their pids are
 * learned from the daemon (start results, domain.info) and kept as pidfds
 * that are signalled in cleanup, and from a SIGABRT handler when an
 * assertion fails. Waiting is always on an fd (ready pipe, pidfd, socket),
 * never a sleep.
 */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>

#include "ho_error.h"
#include "ho_json.h"
#include "ho_rpc_client.h"
#include "ho_socket.h"
#include "testqemu.h"
#include "testutils.h"

#define WAIT_MS 30000
/* Starting a guest probes its QEMU first: allow for a slow host. */
#define QEMU_WAIT_MS 120000

/* ---- processes that must not outlive the test ------------------------ */

#define MAX_TRACKED 64
#define MAX_LOGS 32

/* Read by the SIGABRT handler: plain arrays, written before use. */
static pid_t tracked_pid[MAX_TRACKED];
static int tracked_pidfd[MAX_TRACKED];
static char tracked_log[MAX_LOGS][512];

static void
abort_handler(int sig)
{
    char buf[4096];
    int i;

    for (i = 0; i < MAX_TRACKED; i++) {
        if (tracked_pidfd[i] > 0)
            (void)pidfd_send_signal(tracked_pidfd[i], SIGKILL, NULL, 0);
        else if (tracked_pid[i] > 0)
            (void)kill(tracked_pid[i], SIGKILL);
    }
    /* The daemons' stderr: the story behind the failed assertion. */
    for (i = 0; i < MAX_LOGS; i++) {
        static const char head[] = "\n---- handoverd log: ";
        int fd;
        ssize_t n;

        if (!tracked_log[i][0])
            continue;
        fd = open(tracked_log[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        (void)!write(STDERR_FILENO, head, sizeof(head) - 1);
        (void)!write(STDERR_FILENO, tracked_log[i], strlen(tracked_log[i]));
        (void)!write(STDERR_FILENO, "\n", 1);
        while ((n = read(fd, buf, sizeof(buf))) > 0)
            (void)!write(STDERR_FILENO, buf, n);
        close(fd);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void
tracking_init(void)
{
    struct sigaction sa = {0};
    int i;

    for (i = 0; i < MAX_TRACKED; i++)
        tracked_pidfd[i] = -1;
    /* g_assert aborts; g_error traps; a crash is a crash. */
    sa.sa_handler = abort_handler;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGABRT, &sa, NULL);
    sigaction(SIGTRAP, &sa, NULL);
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
}

/* Track a process to kill on failure; returns its slot. */
static int
track_pid(pid_t pid, int pidfd)
{
    int i;

    for (i = 0; i < MAX_TRACKED; i++) {
        if (tracked_pid[i] == 0) {
            tracked_pidfd[i] = pidfd;
            tracked_pid[i] = pid;
            return i;
        }
    }
    g_error("more than %d processes tracked", MAX_TRACKED);
}

static void
untrack(int slot)
{
    if (slot < 0)
        return;
    tracked_pid[slot] = 0;
    tracked_pidfd[slot] = -1;
}

static void
track_log(const char *path)
{
    int i;

    for (i = 0; i < MAX_LOGS; i++) {
        if (!tracked_log[i][0]) {
            g_strlcpy(tracked_log[i], path, sizeof(tracked_log[i]));
            return;
        }
    }
}

static void
untrack_log(const char *path)
{
    int i;

    for (i = 0; i < MAX_LOGS; i++) {
        if (strcmp(tracked_log[i], path) == 0)
            tracked_log[i][0] = '\0';
    }
}

/* Whether the process behind pidfd has exited, waiting up to timeout_ms. */
static bool
pidfd_wait(int pidfd, int timeout_ms)
{
    struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
    int rc;

    do {
        rc = poll(&pfd, 1, timeout_ms);
    } while (rc < 0 && errno == EINTR);
    g_assert_cmpint(rc, >=, 0);
    return rc > 0;
}

/* ---- QEMUs learned from the daemon ----------------------------------- */

typedef struct {
    pid_t pid;
    int pidfd;
    int slot;
} TestGuestPid;

/* Hold a pidfd on a QEMU the daemon reported, before anything can reap it. */
static TestGuestPid *
guest_pid_new(pid_t pid)
{
    TestGuestPid *g = g_new0(TestGuestPid, 1);

    g_assert_cmpint(pid, >, 1);
    g->pid = pid;
    g->pidfd = pidfd_open(pid, 0);
    if (g->pidfd < 0)
        g_error("pidfd_open(%d): %s", (int)pid, g_strerror(errno));
    g->slot = track_pid(pid, g->pidfd);
    return g;
}

static bool
guest_pid_exited(TestGuestPid *g, int timeout_ms)
{
    return pidfd_wait(g->pidfd, timeout_ms);
}

/* Kill it (through the pidfd: never a recycled pid) and forget it. */
static void
guest_pid_free(TestGuestPid *g)
{
    if (!g)
        return;
    if (!pidfd_wait(g->pidfd, 0)) {
        (void)pidfd_send_signal(g->pidfd, SIGKILL, NULL, 0);
        if (!pidfd_wait(g->pidfd, WAIT_MS))
            g_printerr("QEMU %d did not die\n", (int)g->pid);
    }
    untrack(g->slot);
    close(g->pidfd);
    g_free(g);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TestGuestPid, guest_pid_free)

/* ---- daemons --------------------------------------------------------- */

typedef struct {
    char *root;
    char *socket_path;
    char *log_path;  /* its stderr and stdout */
    char *conf_path; /* --config, or NULL */
    GPid pid;
    int pidfd;
    int slot;
    bool reaped;
    int status; /* wait status once reaped */
} TestDaemon;

static void
daemon_child_setup(gpointer data)
{
    /* Dies with the test, even when an assertion aborts it. */
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
}

static const char *
daemon_binary(void)
{
    const char *path = g_getenv("HANDOVERD");

    if (!path || !*path)
        g_error("HANDOVERD is not set: run this test through meson");
    return path;
}

static char *
read_text(const char *path)
{
    char *text = NULL;

    if (!g_file_get_contents(path, &text, NULL, NULL))
        return g_strdup("");
    return text;
}

/* A daemon on a new --root; conf (may be NULL) becomes its config file. */
static TestDaemon *
daemon_new(const char *tag, const char *conf)
{
    TestDaemon *d = g_new0(TestDaemon, 1);

    d->root = test_make_tmpdir(tag);
    d->socket_path = g_build_filename(d->root, "run", "handoverd.sock", NULL);
    d->log_path = g_build_filename(d->root, "handoverd.stderr", NULL);
    if (conf) {
        d->conf_path = g_build_filename(d->root, "handoverd.conf", NULL);
        g_assert_true(g_file_set_contents(d->conf_path, conf, -1, NULL));
    }
    d->pidfd = -1;
    d->slot = -1;
    d->reaped = true;
    track_log(d->log_path);
    return d;
}

/* Start it and wait for READY on the pipe. */
static void
daemon_start(TestDaemon *d)
{
    const char *argv[12];
    int n = 0;
    int pipefd[2];
    int logfd;
    int source_fds[1];
    int target_fds[1] = {3};
    g_autoptr(GError) gerr = NULL;
    GString *got = g_string_new(NULL);
    g_autofree char *text = NULL;

    g_assert_true(d->reaped);
    argv[n++] = daemon_binary();
    argv[n++] = "--root";
    argv[n++] = d->root;
    argv[n++] = "--ready-fd";
    argv[n++] = "3";
    argv[n++] = "--log-level";
    argv[n++] = "info";
    if (d->conf_path) {
        argv[n++] = "--config";
        argv[n++] = d->conf_path;
    }
    argv[n] = NULL;

    g_assert_cmpint(pipe2(pipefd, O_CLOEXEC), ==, 0);
    logfd = open(d->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    g_assert_cmpint(logfd, >=, 0);
    source_fds[0] = pipefd[1];
    if (!g_spawn_async_with_pipes_and_fds(NULL, argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD,
                                          daemon_child_setup, NULL, -1, logfd, logfd, source_fds,
                                          target_fds, 1, &d->pid, NULL, NULL, NULL, &gerr))
        g_error("cannot start %s: %s", argv[0], gerr->message);
    close(pipefd[1]);
    close(logfd);
    d->reaped = false;
    d->pidfd = pidfd_open(d->pid, 0);
    g_assert_cmpint(d->pidfd, >=, 0);
    d->slot = track_pid(d->pid, d->pidfd);

    /* READY, or EOF when it gave up. */
    for (;;) {
        struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
        char buf[64];
        ssize_t r;
        int rc = poll(&pfd, 1, QEMU_WAIT_MS);

        if (rc < 0 && errno == EINTR)
            continue;
        if (rc == 0) {
            text = read_text(d->log_path);
            g_error("handoverd did not become ready in %d ms; its log:\n%s", QEMU_WAIT_MS, text);
        }
        r = read(pipefd[0], buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        g_string_append_len(got, buf, r);
    }
    close(pipefd[0]);
    if (strcmp(got->str, "READY\n") != 0) {
        text = read_text(d->log_path);
        g_error("handoverd wrote '%s' instead of READY; its log:\n%s", got->str, text);
    }
    g_string_free(got, TRUE);
    g_assert_true(g_file_test(d->socket_path, G_FILE_TEST_EXISTS));
}

/* Wait up to timeout_ms for it to exit and reap it; false on timeout. */
static bool
daemon_wait_exit(TestDaemon *d, int timeout_ms)
{
    if (d->reaped)
        return true;
    if (!pidfd_wait(d->pidfd, timeout_ms))
        return false;
    /* Our own child: it is a zombie now, waitpid does not block. */
    g_assert_cmpint(waitpid(d->pid, &d->status, 0), ==, d->pid);
    d->reaped = true;
    untrack(d->slot);
    d->slot = -1;
    close(d->pidfd);
    d->pidfd = -1;
    return true;
}

static void
daemon_signal(TestDaemon *d, int sig)
{
    g_assert_false(d->reaped);
    g_assert_cmpint(pidfd_send_signal(d->pidfd, sig, NULL, 0), ==, 0);
}

static void
daemon_kill9(TestDaemon *d)
{
    daemon_signal(d, SIGKILL);
    if (!daemon_wait_exit(d, WAIT_MS))
        g_error("handoverd did not exit in %d ms", WAIT_MS);
    g_assert_true(WIFSIGNALED(d->status));
    g_assert_cmpint(WTERMSIG(d->status), ==, SIGKILL);
}

static void
daemon_free(TestDaemon *d)
{
    if (!d)
        return;
    if (!d->reaped) {
        (void)pidfd_send_signal(d->pidfd, SIGKILL, NULL, 0);
        (void)daemon_wait_exit(d, WAIT_MS);
    }
    /* Under ASan/UBSan the daemon reports into its log, not our status. */
    {
        g_autofree char *text = read_text(d->log_path);

        if (strstr(text, "runtime error:") || strstr(text, "Sanitizer"))
            g_error("sanitizer report in the handoverd log:\n%s", text);
    }
    untrack_log(d->log_path);
    g_free(d->root);
    g_free(d->socket_path);
    g_free(d->log_path);
    g_free(d->conf_path);
    g_free(d);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TestDaemon, daemon_free)

static TestDaemon *
daemon_run(const char *tag, const char *conf)
{
    TestDaemon *d = daemon_new(tag, conf);

    daemon_start(d);
    return d;
}

/* ---- RPC helpers ------------------------------------------------------ */

static HoRpcConn *
daemon_connect(TestDaemon *d)
{
    HoRpcConn *c = ho_rpc_conn_open_unix(d->socket_path, "daemontest", NULL, WAIT_MS);

    if (!c)
        g_error("cannot connect to '%s': %s", d->socket_path, ho_error_last_message());
    return c;
}

static json_object *
params_parse(const char *json)
{
    json_object *obj;

    if (!json)
        return NULL;
    obj = ho_json_parse(json, strlen(json));
    if (!obj)
        g_error("bad test JSON '%s': %s", json, ho_error_last_message());
    return obj;
}

/* A call that must succeed: the result (owned). */
static json_object *
call_ok_timeout(HoRpcConn *c, const char *method, json_object *params, guint timeout_ms)
{
    json_object *res = NULL;

    if (ho_rpc_conn_call_sync(c, method, params, &res, timeout_ms) < 0)
        g_error("%s failed: %s (%s)", method, ho_error_last_message(),
                ho_error_last() ? ho_error_code_name(ho_error_last()->code) : "?");
    g_assert_nonnull(res);
    return res;
}

static json_object *
call_ok(HoRpcConn *c, const char *method, const char *params)
{
    return call_ok_timeout(c, method, params_parse(params), WAIT_MS);
}

/* A call that must fail with code and a message containing needle (may
 * be NULL). */
static void
call_err_obj(HoRpcConn *c, const char *method, json_object *params, HoErrorCode code,
             const char *needle)
{
    json_object *res = NULL;
    const HoError *err;

    if (ho_rpc_conn_call_sync(c, method, params, &res, QEMU_WAIT_MS) == 0) {
        g_autofree char *text = ho_json_to_string(res);

        g_error("%s succeeded with %s; expected error '%s'", method, text,
                ho_error_code_name(code));
    }
    err = ho_error_last();
    g_assert_nonnull(err);
    if (err->code != code || (needle && !strstr(err->message, needle)))
        g_error("%s: expected %s error with '%s', got %s: %s", method, ho_error_code_name(code),
                needle ? needle : "", ho_error_code_name(err->code), err->message);
    ho_error_reset();
}

static void
call_err(HoRpcConn *c, const char *method, const char *params, HoErrorCode code,
         const char *needle)
{
    call_err_obj(c, method, params_parse(params), code, needle);
}

static const char *
res_string(json_object *res, const char *key)
{
    const char *val = NULL;

    if (ho_json_get_string(res, key, &val) < 0)
        g_error("%s", ho_error_last_message());
    return val;
}

static int64_t
res_int(json_object *res, const char *key)
{
    int64_t val = 0;

    if (ho_json_get_int64(res, key, &val) < 0)
        g_error("%s", ho_error_last_message());
    return val;
}

static bool
res_bool(json_object *res, const char *key)
{
    bool val = false;

    if (ho_json_get_bool(res, key, &val) < 0)
        g_error("%s", ho_error_last_message());
    return val;
}

static bool
res_has(json_object *res, const char *key)
{
    return json_object_object_get_ex(res, key, NULL);
}

static gint
compare_strp(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The object's keys, sorted and joined with ',', to pin a result's shape. */
static char *
res_keys(json_object *obj)
{
    g_autoptr(GPtrArray) keys = g_ptr_array_new();

    json_object_object_foreach(obj, key, val)
    {
        (void)val;
        g_ptr_array_add(keys, key);
    }
    g_ptr_array_sort(keys, compare_strp);
    g_ptr_array_add(keys, NULL);
    return g_strjoinv(",", (char **)keys->pdata);
}

static void
assert_keys(json_object *obj, const char *want)
{
    g_autofree char *keys = res_keys(obj);

    g_assert_cmpstr(keys, ==, want);
}

static char *
name_params(const char *name)
{
    return g_strdup_printf("{\"name\":\"%s\"}", name);
}

/* ---- events ---------------------------------------------------------- */

typedef struct {
    GPtrArray *seen; /* "name event detail" of domain.lifecycle, in order */
    guint other;     /* events of other kinds */
} EventLog;

static void
event_cb(HoRpcConn *conn, const char *event, json_object *data, gint64 ts_us, void *opaque)
{
    EventLog *log = opaque;
    const char *name = NULL;
    const char *what = NULL;
    const char *detail = NULL;

    if (strcmp(event, "domain.lifecycle") != 0) {
        log->other++;
        return;
    }
    g_assert_cmpint(ts_us, >, 0);
    g_assert_nonnull(data);
    g_assert_cmpint(ho_json_get_string(data, "name", &name), ==, 0);
    g_assert_cmpint(ho_json_get_string(data, "event", &what), ==, 0);
    g_assert_true(res_has(data, "uuid"));
    (void)ho_json_opt_string(data, "detail", &detail);
    g_ptr_array_add(log->seen, g_strdup_printf("%s %s %s", name, what, detail ? detail : "-"));
}

static EventLog *
event_log_new(void)
{
    EventLog *log = g_new0(EventLog, 1);

    log->seen = g_ptr_array_new_with_free_func(g_free);
    return log;
}

static void
event_log_free(EventLog *log)
{
    if (!log)
        return;
    g_ptr_array_unref(log->seen);
    g_free(log);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(EventLog, event_log_free)

/* A connection subscribed to events, collecting them in log. */
static HoRpcConn *
daemon_watch(TestDaemon *d, EventLog *log)
{
    HoRpcConn *c = daemon_connect(d);
    g_autoptr(json_object) res = NULL;

    ho_rpc_conn_set_callbacks(c, event_cb, NULL, log);
    res = call_ok(c, "events.subscribe", NULL);
    return c;
}

static char *
event_log_text(EventLog *log)
{
    g_autoptr(GPtrArray) copy = g_ptr_array_copy(log->seen, NULL, NULL);

    g_ptr_array_add(copy, NULL);
    return g_strjoinv("; ", (char **)copy->pdata);
}

/* Wait for the lifecycle event of domain name whose event is one of
 * events ("stopped|crashed"); drop it and everything before it; return
 * its detail (g_free it). */
static char *
wait_lifecycle(HoRpcConn *c, EventLog *log, const char *name, const char *events)
{
    g_auto(GStrv) wanted = g_strsplit(events, "|", -1);
    gint64 deadline = g_get_monotonic_time() + (gint64)QEMU_WAIT_MS * 1000;

    for (;;) {
        gint64 left;
        guint i;
        int rc;

        for (i = 0; i < log->seen->len; i++) {
            g_auto(GStrv) parts = g_strsplit(g_ptr_array_index(log->seen, i), " ", 3);

            if (strcmp(parts[0], name) == 0 &&
                g_strv_contains((const char *const *)wanted, parts[1])) {
                char *detail = g_strdup(parts[2]);

                g_ptr_array_remove_range(log->seen, 0, i + 1);
                return detail;
            }
        }
        left = (deadline - g_get_monotonic_time()) / 1000;
        if (left <= 0) {
            g_autofree char *text = event_log_text(log);

            g_error("no '%s' event for '%s' came; seen: %s", events, name, text);
        }
        rc = ho_rpc_conn_wait_event(c, (guint)left);
        if (rc < 0)
            g_error("the event connection closed: %s", ho_error_last_message());
    }
}

/* ---- raw sockets ------------------------------------------------------ */

static int
raw_connect(TestDaemon *d)
{
    struct timeval tv = {.tv_sec = WAIT_MS / 1000};
    int fd = ho_socket_unix_connect(d->socket_path);

    if (fd < 0)
        g_error("%s", ho_error_last_message());
    g_assert_cmpint(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), ==, 0);
    g_assert_cmpint(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), ==, 0);
    return fd;
}

/* Send everything; false when the daemon closed the connection first. */
static bool
raw_send_len(int fd, const char *data, size_t len)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = send(fd, data + done, len - done, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
            return false;
        if (n < 0)
            g_error("send: %s", g_strerror(errno));
        done += n;
    }
    return true;
}

static void
raw_send(int fd, const char *text)
{
    g_assert_true(raw_send_len(fd, text, strlen(text)));
}

/* One message, or NULL at EOF (or a reset). Byte by byte: messages here
 * are short, and nothing after the line may be consumed. */
static json_object *
raw_read(int fd)
{
    g_autoptr(GString) line = g_string_new(NULL);

    for (;;) {
        char c;
        ssize_t n = recv(fd, &c, 1, 0);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == ECONNRESET)
            return NULL;
        if (n < 0)
            g_error("recv: %s", g_strerror(errno));
        if (n == 0) {
            g_assert_cmpuint(line->len, ==, 0);
            return NULL;
        }
        if (c == '\n')
            break;
        g_string_append_c(line, c);
        g_assert_cmpuint(line->len, <, 1024 * 1024);
    }
    {
        json_object *msg = ho_json_parse(line->str, line->len);

        if (!msg)
            g_error("the daemon sent malformed JSON '%s'", line->str);
        return msg;
    }
}

static void
raw_expect_eof(int fd)
{
    g_autoptr(json_object) msg = raw_read(fd);

    if (msg) {
        g_autofree char *text = ho_json_to_string(msg);

        g_error("expected the connection to close, got %s", text);
    }
}

/* Read a message that must be the error reply to id (-1: null id) with
 * code; returns its message. */
static char *
raw_expect_error(int fd, int64_t id, const char *code)
{
    g_autoptr(json_object) msg = raw_read(fd);
    json_object *idobj = NULL;
    json_object *err = NULL;
    g_autofree char *text = NULL;

    if (!msg)
        g_error("expected a '%s' error, the connection closed", code);
    text = ho_json_to_string(msg);
    g_assert_true(json_object_object_get_ex(msg, "id", &idobj));
    if (id < 0)
        g_assert_null(idobj);
    else
        g_assert_cmpint(json_object_get_int64(idobj), ==, id);
    if (ho_json_get_object(msg, "error", &err) < 0)
        g_error("expected an error, got %s", text);
    g_assert_cmpstr(res_string(err, "code"), ==, code);
    return g_strdup(res_string(err, "message"));
}

static json_object *
raw_expect_result(int fd, int64_t id)
{
    g_autoptr(json_object) msg = raw_read(fd);
    json_object *res = NULL;
    g_autofree char *text = NULL;

    g_assert_nonnull(msg);
    text = ho_json_to_string(msg);
    g_assert_cmpint(res_int(msg, "id"), ==, id);
    if (ho_json_get_object(msg, "result", &res) < 0)
        g_error("expected a result, got %s", text);
    return json_object_get(res);
}

static void
raw_hello(int fd)
{
    g_autoptr(json_object) res = NULL;

    raw_send(fd, "{\"id\":0,\"method\":\"hello\",\"params\":{\"protocol\":1}}\n");
    res = raw_expect_result(fd, 0);
    g_assert_cmpint(res_int(res, "protocol"), ==, 1);
}

/* ---- guests ---------------------------------------------------------- */


/* "qemu-7.2" -> "pc-i440fx-7.2": what the 'pc' alias resolves to. */
static char *
concrete_machine(const TestQemuBinary *bin)
{
    g_assert_true(g_str_has_prefix(bin->name, "qemu-"));
    return g_strdup_printf("pc-i440fx-%s", bin->name + strlen("qemu-"));
}

static const char *
guest_virt_type(void)
{
    return strcmp(test_qemu_accel(NULL), "kvm") == 0 ? "kvm" : "qemu";
}

/* A small qcow2 image in dir, or NULL without qemu-img. */
static char *
make_disk(const char *dir)
{
    g_autofree char *img = g_find_program_in_path("qemu-img");
    g_autofree char *path = g_build_filename(dir, "disk.qcow2", NULL);
    g_autofree char *errout = NULL;
    g_autoptr(GError) gerr = NULL;
    const char *argv[] = {img, "create", "-q", "-f", "qcow2", path, "64M", NULL};
    int status = 0;

    if (!img)
        return NULL;
    if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL, NULL,
                      &errout, &status, &gerr))
        g_error("cannot run qemu-img: %s", gerr->message);
    if (!g_spawn_check_wait_status(status, NULL))
        g_error("qemu-img create failed: %s", errout);
    return g_steal_pointer(&path);
}

/* A guest without OS: it sits in SeaBIOS, ignores ACPI power-down. */
static char *
guest_xml(const char *name, const char *uuid, const char *emulator, const char *disk)
{
    GString *xml = g_string_new(NULL);

    g_string_append_printf(xml, "<domain type='%s'>\n  <name>%s</name>\n", guest_virt_type(),
                           name);
    if (uuid)
        g_string_append_printf(xml, "  <uuid>%s</uuid>\n", uuid);
    g_string_append(xml, "  <memory unit='MiB'>128</memory>\n  <vcpu>1</vcpu>\n"
                         "  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n  </os>\n"
                         "  <devices>\n");
    if (emulator)
        g_string_append_printf(xml, "    <emulator>%s</emulator>\n", emulator);
    if (disk)
        g_string_append_printf(xml,
                               "    <disk type='file' device='disk'>\n"
                               "      <driver name='qemu' type='qcow2'/>\n"
                               "      <source file='%s'/>\n"
                               "      <target dev='vda' bus='virtio'/>\n"
                               "    </disk>\n",
                               disk);
    g_string_append(xml, "  </devices>\n</domain>\n");
    return g_string_free(xml, FALSE);
}

/* domain.define; returns the uuid (g_free it). */
static char *
define_guest(HoRpcConn *c, const char *xml, const char *name)
{
    json_object *params = json_object_new_object();
    g_autoptr(json_object) res = NULL;

    ho_json_add_string(params, "xml", xml);
    res = call_ok_timeout(c, "domain.define", params, WAIT_MS);
    assert_keys(res, "name,uuid");
    g_assert_cmpstr(res_string(res, "name"), ==, name);
    g_assert_true(g_uuid_string_is_valid(res_string(res, "uuid")));
    return g_strdup(res_string(res, "uuid"));
}

/* domain.start; the QEMU's pid, held as a pidfd. */
static TestGuestPid *
start_guest(HoRpcConn *c, const char *name, bool paused)
{
    g_autofree char *p =
        g_strdup_printf("{\"name\":\"%s\",\"paused\":%s}", name, paused ? "true" : "false");
    g_autoptr(json_object) res = call_ok_timeout(c, "domain.start", params_parse(p), QEMU_WAIT_MS);
    TestGuestPid *g;

    assert_keys(res, "name,pid,state");
    g_assert_cmpstr(res_string(res, "name"), ==, name);
    g_assert_cmpstr(res_string(res, "state"), ==, paused ? "paused" : "running");
    g = guest_pid_new((pid_t)res_int(res, "pid"));
    g_assert_false(guest_pid_exited(g, 0));
    return g;
}

static void
assert_state(HoRpcConn *c, const char *name, const char *state)
{
    g_autofree char *p = name_params(name);
    g_autoptr(json_object) res = call_ok(c, "domain.state", p);

    g_assert_cmpstr(res_string(res, "state"), ==, state);
}

/* The list entry of name (borrowed from list), or NULL. */
static json_object *
list_find(json_object *list, const char *name)
{
    json_object *doms = NULL;
    size_t i;

    g_assert_cmpint(ho_json_get_array(list, "domains", &doms), ==, 0);
    for (i = 0; i < json_object_array_length(doms); i++) {
        json_object *entry = json_object_array_get_idx(doms, i);

        if (strcmp(res_string(entry, "name"), name) == 0)
            return entry;
    }
    return NULL;
}

/* ---- start-up -------------------------------------------------------- */

/* Run handoverd to completion (it must not become ready); its exit
 * status and stderr. */
static int
run_failing(const char *root, const char *const *extra, char **errout)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autoptr(GError) gerr = NULL;
    int status = 0;

    g_ptr_array_add(argv, (char *)daemon_binary());
    g_ptr_array_add(argv, "--root");
    g_ptr_array_add(argv, (char *)root);
    for (; extra && *extra; extra++)
        g_ptr_array_add(argv, (char *)*extra);
    g_ptr_array_add(argv, NULL);
    if (!g_spawn_sync(NULL, (char **)argv->pdata, NULL, G_SPAWN_STDOUT_TO_DEV_NULL,
                      daemon_child_setup, NULL, NULL, errout, &status, &gerr))
        g_error("cannot run handoverd: %s", gerr->message);
    g_assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void
test_startup_errors(void)
{
    g_autofree char *root = test_make_tmpdir("bad");
    g_autofree char *conf = g_build_filename(root, "bad.conf", NULL);
    g_autofree char *sock = g_build_filename(root, "run", "handoverd.sock", NULL);
    g_autofree char *missing = g_build_filename(root, "missing.conf", NULL);
    static const struct {
        const char *text;
        const char *needles[3];
    } bad_confs[] = {
        {"[handoverd]\nmax_clients = abc\n", {"'max_clients'", "'abc'", "[handoverd]"}},
        {"[handoverd]\nmax_clinets = 8\n", {"'max_clinets'", "unknown key", "[handoverd]"}},
        {"[handoverd]\nsocket_mode = 0999\n", {"'socket_mode'", "'0999'", "[handoverd]"}},
        {"[libvirtd]\n", {"'[libvirtd]'", "unknown group", NULL}},
    };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(bad_confs); i++) {
        const char *extra[] = {"--config", conf, NULL};
        g_autofree char *errout = NULL;
        size_t j;

        g_assert_true(g_file_set_contents(conf, bad_confs[i].text, -1, NULL));
        g_assert_cmpint(run_failing(root, extra, &errout), ==, 1);
        g_assert_true(g_str_has_prefix(errout, "handoverd: "));
        g_assert_nonnull(strstr(errout, conf));
        for (j = 0; j < G_N_ELEMENTS(bad_confs[i].needles) && bad_confs[i].needles[j]; j++) {
            if (!strstr(errout, bad_confs[i].needles[j]))
                g_error("'%s' not in '%s'", bad_confs[i].needles[j], errout);
        }
        /* It stopped before listening, before even creating its directories. */
        g_assert_false(g_file_test(sock, G_FILE_TEST_EXISTS));
    }

    {
        const char *extra[] = {"--config", missing, NULL};
        g_autofree char *errout = NULL;

        g_assert_cmpint(run_failing(root, extra, &errout), ==, 1);
        g_assert_nonnull(strstr(errout, missing));
    }
    {
        const char *extra[] = {"--log-level", "loud", NULL};
        g_autofree char *errout = NULL;

        g_assert_cmpint(run_failing(root, extra, &errout), ==, 1);
        g_assert_nonnull(strstr(errout, "'loud'"));
    }
    {
        const char *extra[] = {"--ready-fd", "1000", NULL};
        g_autofree char *errout = NULL;

        g_assert_cmpint(run_failing(root, extra, &errout), ==, 1);
        g_assert_nonnull(strstr(errout, "--ready-fd"));
    }
    {
        const char *extra[] = {"--no-such-option", NULL};
        g_autofree char *errout = NULL;

        g_assert_cmpint(run_failing(root, extra, &errout), ==, 1);
        g_assert_nonnull(strstr(errout, "--no-such-option"));
    }
    {
        const char *extra[] = {"surplus", NULL};
        g_autofree char *errout = NULL;

        g_assert_cmpint(run_failing(root, extra, &errout), ==, 1);
        g_assert_nonnull(strstr(errout, "'surplus'"));
    }
    g_assert_false(g_file_test(sock, G_FILE_TEST_EXISTS));
}

/* A second daemon on the same root refuses to start; the first goes on. */
static void
test_single_instance(void)
{
    g_autoptr(TestDaemon) d = daemon_run("single", NULL);
    g_autoptr(HoRpcConn) c = NULL;
    g_autoptr(json_object) res = NULL;
    g_autofree char *errout = NULL;
    g_autofree char *pidtext = NULL;
    g_autofree char *pidfile = g_build_filename(d->root, "run", "handoverd.pid", NULL);
    g_autofree char *want = g_strdup_printf("%d\n", (int)d->pid);

    pidtext = read_text(pidfile);
    g_assert_cmpstr(pidtext, ==, want);
    g_assert_cmpint(run_failing(d->root, NULL, &errout), ==, 1);
    g_assert_nonnull(strstr(errout, "another handoverd"));
    c = daemon_connect(d);
    res = call_ok(c, "host.info", NULL);
}

/* SIGINT stops it like SIGTERM; the version option works. */
static void
test_sigint_and_version(void)
{
    g_autoptr(TestDaemon) d = daemon_run("sigint", NULL);
    g_autofree char *pidfile = g_build_filename(d->root, "run", "handoverd.pid", NULL);
    const char *argv[] = {daemon_binary(), "--version", NULL};
    g_autofree char *out = NULL;
    int status = 0;

    daemon_signal(d, SIGINT);
    if (!daemon_wait_exit(d, WAIT_MS))
        g_error("handoverd did not exit in %d ms", WAIT_MS);
    g_assert_true(WIFEXITED(d->status));
    g_assert_cmpint(WEXITSTATUS(d->status), ==, 0);
    g_assert_false(g_file_test(d->socket_path, G_FILE_TEST_EXISTS));
    g_assert_false(g_file_test(pidfile, G_FILE_TEST_EXISTS));

    g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL,
                               &out, NULL, &status, NULL));
    g_assert_true(g_spawn_check_wait_status(status, NULL));
    g_assert_cmpstr(out, ==, "handoverd " PACKAGE_VERSION_STRING "\n");
}

/* ---- protocol -------------------------------------------------------- */

static void
test_hello_and_host(void)
{
    g_autoptr(TestDaemon) d = daemon_run("hello", NULL);
    g_autoptr(HoRpcConn) c = daemon_connect(d);
    g_autofree char *uuid_path = g_build_filename(d->root, "state", "host-uuid", NULL);
    g_autofree char *uuid_text = read_text(uuid_path);
    g_autofree char *uuid_line = NULL;
    json_object *hello = ho_rpc_conn_get_hello(c);
    g_autoptr(json_object) info = NULL;
    const char *why = NULL;
    const char *accel = test_qemu_accel(&why);
    struct stat st;

    g_assert_nonnull(hello);
    assert_keys(hello, "daemon,host_uuid,hostname,protocol");
    g_assert_cmpint(res_int(hello, "protocol"), ==, 1);
    g_assert_cmpstr(res_string(hello, "daemon"), ==, "handoverd " PACKAGE_VERSION_STRING);
    g_assert_cmpstr(res_string(hello, "hostname"), ==, g_get_host_name());
    /* Generated on first start and kept in the state directory. */
    uuid_line = g_strdup_printf("%s\n", res_string(hello, "host_uuid"));
    g_assert_true(g_uuid_string_is_valid(res_string(hello, "host_uuid")));
    g_assert_cmpstr(uuid_text, ==, uuid_line);

    info = call_ok(c, "host.info", NULL);
    assert_keys(info, why ? "accel,accel_reason,domains_defined,domains_running,emulator,"
                            "host_uuid,hostname,version"
                          : "accel,domains_defined,domains_running,emulator,host_uuid,"
                            "hostname,version");
    g_assert_cmpstr(res_string(info, "hostname"), ==, g_get_host_name());
    g_assert_cmpstr(res_string(info, "host_uuid"), ==, res_string(hello, "host_uuid"));
    g_assert_cmpstr(res_string(info, "version"), ==, PACKAGE_VERSION_STRING);
    g_assert_cmpstr(res_string(info, "accel"), ==, accel);
    g_assert_cmpint(res_int(info, "domains_defined"), ==, 0);
    g_assert_cmpint(res_int(info, "domains_running"), ==, 0);
    g_assert_true(g_path_is_absolute(res_string(info, "emulator")));
    /* Bad arguments: host.info takes none. */
    call_err(c, "host.info", "{\"verbose\":true}", HO_ERR_INVALID_ARG, "'verbose'");

    /* The layout --root promises, and the socket's default mode. */
    g_assert_cmpint(stat(d->socket_path, &st), ==, 0);
    g_assert_true(S_ISSOCK(st.st_mode));
    g_assert_cmpint(st.st_mode & 0777, ==, 0600);
    {
        static const char *const dirs[] = {"state", "run", "log"};
        size_t i;

        for (i = 0; i < G_N_ELEMENTS(dirs); i++) {
            g_autofree char *p = g_build_filename(d->root, dirs[i], NULL);

            g_assert_true(g_file_test(p, G_FILE_TEST_IS_DIR));
        }
    }
}

/* The host UUID and socket mode of a config file are used. */
static void
test_config_applied(void)
{
    g_autoptr(TestDaemon) d =
        daemon_run("conf", "[handoverd]\nhost_uuid = 4DEA22B3-1D52-D8F3-2516-782E98AB3FA0\n"
                           "socket_mode = 0660\n");
    g_autoptr(HoRpcConn) c = daemon_connect(d);
    g_autofree char *uuid_path = g_build_filename(d->root, "state", "host-uuid", NULL);
    struct stat st;

    g_assert_cmpstr(res_string(ho_rpc_conn_get_hello(c), "host_uuid"), ==,
                    "4dea22b3-1d52-d8f3-2516-782e98ab3fa0");
    g_assert_false(g_file_test(uuid_path, G_FILE_TEST_EXISTS));
    g_assert_cmpint(stat(d->socket_path, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 0777, ==, 0660);
}

static void
test_host_capabilities(void)
{
    g_autoptr(TestDaemon) d = daemon_run("caps", NULL);
    g_autoptr(HoRpcConn) c = daemon_connect(d);
    const TestQemuBinary *const *bins = test_qemu_binaries();
    g_autofree char *missing = g_build_filename(d->root, "no-such-qemu", NULL);
    size_t i;

    for (i = 0; bins[i]; i++) {
        g_autofree char *p = NULL;
        g_autoptr(json_object) caps = NULL;

        if (!bins[i]->binary) {
            g_test_message("%s is not available: %s", bins[i]->name, bins[i]->missing);
            continue;
        }
        p = g_strdup_printf("{\"emulator\":\"%s\"}", bins[i]->binary);
        caps = call_ok_timeout(c, "host.capabilities", params_parse(p), QEMU_WAIT_MS);
        g_assert_cmpstr(res_string(caps, "emulator"), ==, bins[i]->binary);
        g_assert_cmpstr(res_string(caps, "accel"), ==, test_qemu_accel(NULL));
        /* The rest is qemu_caps_to_json's: it has to be there. */
        g_assert_cmpint(json_object_object_length(caps), >, 2);
    }
    {
        g_autoptr(json_object) host = call_ok(c, "host.info", NULL);
        g_autoptr(json_object) caps = call_ok_timeout(c, "host.capabilities", NULL, QEMU_WAIT_MS);

        g_assert_cmpstr(res_string(caps, "emulator"), ==, res_string(host, "emulator"));
    }
    {
        g_autofree char *p = g_strdup_printf("{\"emulator\":\"%s\"}", missing);
        json_object *res = NULL;

        g_assert_cmpint(
            ho_rpc_conn_call_sync(c, "host.capabilities", params_parse(p), &res, QEMU_WAIT_MS), ==,
            -1);
        g_assert_nonnull(strstr(ho_error_last_message(), missing));
        ho_error_reset();
    }
    call_err(c, "host.capabilities", "{\"emulator\":7}", HO_ERR_INVALID_ARG, "'emulator'");
    call_err(c, "host.capabilities", "{\"emulator\":\"\"}", HO_ERR_INVALID_ARG, "'emulator'");
    call_err(c, "host.capabilities", "{\"machine\":\"pc\"}", HO_ERR_INVALID_ARG, "'machine'");
}

/* Bad arguments of every method: nothing runs, invalid-arg names it. */
static void
test_bad_arguments(void)
{
    static const struct {
        const char *method;
        const char *params;
        const char *needle;
    } cases[] = {
        {"domain.define", NULL, "'xml'"},
        {"domain.define", "{\"xml\":1}", "'xml'"},
        {"domain.define", "{\"xml\":\"<domain/>\",\"force\":true}", "'force'"},
        {"domain.undefine", "{}", "'name'"},
        {"domain.undefine", "{\"name\":[]}", "'name'"},
        {"domain.start", "{\"name\":5}", "'name'"},
        {"domain.start", "{\"name\":\"x\",\"paused\":\"yes\"}", "'paused'"},
        {"domain.start", "{\"name\":\"x\",\"bogus\":1}", "'bogus'"},
        {"domain.shutdown", "{\"name\":\"x\",\"timeout\":\"10\"}", "'timeout'"},
        {"domain.shutdown", "{\"name\":\"x\",\"timeout\":1.5}", "'timeout'"},
        {"domain.shutdown", "{\"name\":\"x\",\"timeout\":-1}", "'timeout'"},
        {"domain.shutdown", "{\"name\":\"x\",\"timeout\":100000}", "'timeout'"},
        {"domain.shutdown", "{\"timeout\":5}", "'name'"},
        {"domain.destroy", "{\"name\":null}", "'name'"},
        {"domain.suspend", "{\"name\":{}}", "'name'"},
        {"domain.resume", "{\"names\":\"x\"}", "'names'"},
        {"domain.list", "{\"all\":1}", "'all'"},
        {"domain.list", "{\"inactive\":true}", "'inactive'"},
        {"domain.info", "{\"name\":true}", "'name'"},
        {"domain.state", NULL, "'name'"},
        {"domain.get_xml", "{\"name\":\"x\",\"inactive\":\"no\"}", "'inactive'"},
        {"events.subscribe", "{\"what\":\"all\"}", "'what'"},
        {"events.unsubscribe", "{\"what\":\"all\"}", "'what'"},
    };
    g_autoptr(TestDaemon) d = daemon_run("args", NULL);
    g_autoptr(HoRpcConn) c = daemon_connect(d);
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        call_err(c, cases[i].method, cases[i].params, HO_ERR_INVALID_ARG, cases[i].needle);
    }
    /* Nothing happened: still no domain. */
    {
        g_autoptr(json_object) info = call_ok(c, "host.info", NULL);

        g_assert_cmpint(res_int(info, "domains_defined"), ==, 0);
    }
}

/* Domain methods without a real guest: definitions, lookups, refusals. */
static void
test_domain_definitions(void)
{
    g_autoptr(TestDaemon) d = daemon_run("defs", NULL);
    g_autoptr(HoRpcConn) c = daemon_connect(d);
    g_autoptr(EventLog) log = event_log_new();
    g_autoptr(HoRpcConn) w = daemon_watch(d, log);
    g_autofree char *xml = guest_xml("defs1", NULL, NULL, NULL);
    g_autofree char *uuid = NULL;
    g_autofree char *detail = NULL;
    g_autofree char *p = NULL;
    g_autofree char *xml2 = NULL;
    g_autofree char *xml_other = NULL;
    g_autofree char *def_path = NULL;
    static const char *const by_name[] = {
        "domain.undefine", "domain.start", "domain.shutdown", "domain.destroy", "domain.suspend",
        "domain.resume",   "domain.info",  "domain.state",    "domain.get_xml",
    };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(by_name); i++)
        call_err(c, by_name[i], "{\"name\":\"nosuch\"}", HO_ERR_NO_DOMAIN, "'nosuch'");

    /* Bad XML is refused and defines nothing. */
    {
        json_object *params = json_object_new_object();

        ho_json_add_string(params, "xml", "<domain type='kvm'><name>broken");
        call_err_obj(c, "domain.define", params, HO_ERR_XML, NULL);
    }
    {
        json_object *params = json_object_new_object();

        ho_json_add_string(params, "xml",
                           "<domain type='kvm'><name>x</name>"
                           "<memory>65536</memory><os><type>hvm</type></os>"
                           "<devices><graphics type='vnc'/></devices></domain>");
        call_err_obj(c, "domain.define", params, HO_ERR_XML, "graphics");
    }

    uuid = define_guest(c, xml, "defs1");
    detail = wait_lifecycle(w, log, "defs1", "defined");
    def_path = g_build_filename(d->root, "state", "domains", "defs1.xml", NULL);
    g_assert_true(g_file_test(def_path, G_FILE_TEST_EXISTS));

    /* Look-ups by name and by UUID agree. */
    p = g_strdup_printf("{\"name\":\"%s\"}", uuid);
    {
        g_autoptr(json_object) a = call_ok(c, "domain.info", "{\"name\":\"defs1\"}");
        g_autoptr(json_object) b = call_ok(c, "domain.info", p);

        g_assert_true(ho_json_equal(a, b));
        g_assert_cmpstr(res_string(a, "name"), ==, "defs1");
        g_assert_cmpstr(res_string(a, "uuid"), ==, uuid);
        g_assert_cmpstr(res_string(a, "state"), ==, "shutoff");
        g_assert_true(res_bool(a, "persistent"));
        g_assert_false(res_has(a, "pid"));
        g_assert_cmpint(res_int(a, "max_memory_kib"), ==, 131072);
        g_assert_cmpint(res_int(a, "memory_kib"), ==, 131072);
        g_assert_cmpint(res_int(a, "vcpus"), ==, 1);
        g_assert_true(res_has(a, "emulator"));
        g_assert_true(res_has(a, "machine"));
    }
    assert_state(c, uuid, "shutoff");

    /* Listed with all, not without. */
    {
        g_autoptr(json_object) active = call_ok(c, "domain.list", NULL);
        g_autoptr(json_object) all = call_ok(c, "domain.list", "{\"all\":true}");
        g_autoptr(json_object) all_false = call_ok(c, "domain.list", "{\"all\":false}");
        json_object *entry;

        g_assert_null(list_find(active, "defs1"));
        g_assert_null(list_find(all_false, "defs1"));
        entry = list_find(all, "defs1");
        g_assert_nonnull(entry);
        assert_keys(entry, "name,persistent,state,uuid");
        g_assert_cmpstr(res_string(entry, "uuid"), ==, uuid);
        g_assert_cmpstr(res_string(entry, "state"), ==, "shutoff");
        g_assert_true(res_bool(entry, "persistent"));
    }

    /* The XML round trip, active and inactive alike while shut off. */
    {
        g_autoptr(json_object) live = call_ok(c, "domain.get_xml", "{\"name\":\"defs1\"}");
        g_autoptr(json_object) inactive =
            call_ok(c, "domain.get_xml", "{\"name\":\"defs1\",\"inactive\":true}");

        assert_keys(live, "xml");
        g_assert_nonnull(strstr(res_string(live, "xml"), "<name>defs1</name>"));
        g_assert_nonnull(strstr(res_string(live, "xml"), uuid));
        g_assert_nonnull(strstr(res_string(live, "xml"), "machine='pc'"));
        g_assert_cmpstr(res_string(live, "xml"), ==, res_string(inactive, "xml"));
    }

    /* Not running: these are refused. */
    call_err(c, "domain.suspend", "{\"name\":\"defs1\"}", HO_ERR_OPERATION_INVALID, NULL);
    call_err(c, "domain.resume", "{\"name\":\"defs1\"}", HO_ERR_OPERATION_INVALID, NULL);
    call_err(c, "domain.destroy", "{\"name\":\"defs1\"}", HO_ERR_OPERATION_INVALID, NULL);
    call_err(c, "domain.shutdown", "{\"name\":\"defs1\"}", HO_ERR_OPERATION_INVALID, NULL);

    /* The same name and UUID updates the definition; another UUID under
     * the name is refused. */
    xml2 = guest_xml("defs1", uuid, "/usr/bin/true", NULL);
    g_free(define_guest(c, xml2, "defs1"));
    {
        g_autoptr(json_object) a = call_ok(c, "domain.info", "{\"name\":\"defs1\"}");

        g_assert_cmpstr(res_string(a, "emulator"), ==, "/usr/bin/true");
    }
    xml_other = guest_xml("defs1", "11111111-2222-3333-4444-555555555555", NULL, NULL);
    {
        json_object *params = json_object_new_object();

        ho_json_add_string(params, "xml", xml_other);
        call_err_obj(c, "domain.define", params, HO_ERR_OPERATION_INVALID, "defs1");
    }
    {
        g_autoptr(json_object) host = call_ok(c, "host.info", NULL);

        g_assert_cmpint(res_int(host, "domains_defined"), ==, 1);
        g_assert_cmpint(res_int(host, "domains_running"), ==, 0);
    }

    /* Undefine: gone, with its event. */
    {
        g_autoptr(json_object) res = call_ok(c, "domain.undefine", "{\"name\":\"defs1\"}");

        assert_keys(res, "");
    }
    g_free(wait_lifecycle(w, log, "defs1", "undefined"));
    call_err(c, "domain.info", "{\"name\":\"defs1\"}", HO_ERR_NO_DOMAIN, "'defs1'");
    g_assert_false(g_file_test(def_path, G_FILE_TEST_EXISTS));
    {
        g_autoptr(json_object) all = call_ok(c, "domain.list", "{\"all\":true}");

        g_assert_null(list_find(all, "defs1"));
    }
}

/* Subscribing and unsubscribing: events come in order, only while
 * subscribed. */
static void
test_events_subscription(void)
{
    g_autoptr(TestDaemon) d = daemon_run("events", NULL);
    g_autoptr(HoRpcConn) c = daemon_connect(d);
    g_autoptr(EventLog) log = event_log_new();
    g_autoptr(HoRpcConn) w = daemon_watch(d, log);
    g_autofree char *xa = guest_xml("eva", NULL, NULL, NULL);
    g_autofree char *xb = guest_xml("evb", NULL, NULL, NULL);
    g_autofree char *uuid = NULL;
    g_autofree char *xa2 = NULL;
    g_autoptr(json_object) r1 = NULL;
    g_autoptr(json_object) r2 = NULL;

    uuid = define_guest(c, xa, "eva");
    xa2 = guest_xml("eva", uuid, NULL, NULL);
    g_free(wait_lifecycle(w, log, "eva", "defined"));
    g_assert_cmpuint(log->seen->len, ==, 0);

    r1 = call_ok(w, "events.unsubscribe", NULL);
    assert_keys(r1, "");
    g_free(define_guest(c, xb, "evb"));
    r2 = call_ok(w, "events.subscribe", NULL);
    g_free(define_guest(c, xa2, "eva"));
    /* Events on one connection keep their order: had the unsubscribed
     * one come, it would be first. */
    g_free(wait_lifecycle(w, log, "eva", "defined"));
    g_assert_cmpuint(log->seen->len, ==, 0);
    g_assert_cmpuint(log->other, ==, 0);
}

static void
test_violations(void)
{
    g_autoptr(TestDaemon) d = daemon_run("violations", "[handoverd]\nmax_message_size = 65536\n");
    g_autoptr(HoRpcConn) c = NULL;
    g_autoptr(json_object) res = NULL;
    int fd;

    /* Anything before hello gets "hello first"; the connection stays. */
    fd = raw_connect(d);
    raw_send(fd, "{\"id\":3,\"method\":\"host.info\"}\n");
    g_free(raw_expect_error(fd, 3, "rpc"));
    raw_hello(fd);
    /* An unknown method: an error, the connection stays. */
    raw_send(fd, "{\"id\":4,\"method\":\"domain.teleport\",\"params\":{}}\n");
    {
        g_autofree char *msg = raw_expect_error(fd, 4, "rpc");

        g_assert_nonnull(strstr(msg, "domain.teleport"));
    }
    /* params of the wrong type. */
    raw_send(fd, "{\"id\":5,\"method\":\"domain.list\",\"params\":[true]}\n");
    g_free(raw_expect_error(fd, 5, "invalid-arg"));
    raw_send(fd, "{\"id\":6,\"method\":\"host.info\"}\n");
    res = raw_expect_result(fd, 6);
    g_assert_true(res_has(res, "host_uuid"));
    /* Malformed JSON: an error with a null id, then the connection closes. */
    raw_send(fd, "{\"id\":7,\"method\":\n");
    g_free(raw_expect_error(fd, -1, "rpc"));
    raw_expect_eof(fd);
    close(fd);

    /* Not an object; no integer id; no method. */
    {
        static const char *const bad[] = {
            "[1,2,3]\n",
            "{\"id\":\"1\",\"method\":\"host.info\"}\n",
            "{\"id\":-1,\"method\":\"host.info\"}\n",
            "{\"id\":8}\n",
            "{\"id\":9,\"method\":7}\n",
            "\"hello\"\n",
        };
        size_t i;

        for (i = 0; i < G_N_ELEMENTS(bad); i++) {
            fd = raw_connect(d);
            raw_hello(fd);
            raw_send(fd, bad[i]);
            g_free(raw_expect_error(fd, -1, "rpc"));
            raw_expect_eof(fd);
            close(fd);
        }
    }

    /* hello's own arguments are checked like any method's. */
    fd = raw_connect(d);
    raw_send(fd, "{\"id\":0,\"method\":\"hello\",\"params\":{\"protocol\":\"1\"}}\n");
    {
        g_autofree char *msg = raw_expect_error(fd, 0, "invalid-arg");

        g_assert_nonnull(strstr(msg, "'protocol'"));
    }
    raw_send(fd, "{\"id\":1,\"method\":\"hello\",\"params\":{}}\n");
    g_free(raw_expect_error(fd, 1, "invalid-arg"));
    raw_hello(fd);
    close(fd);

    /* Another protocol version: refused naming both, disconnected. */
    fd = raw_connect(d);
    raw_send(fd, "{\"id\":0,\"method\":\"hello\",\"params\":{\"protocol\":2}}\n");
    {
        g_autofree char *msg = raw_expect_error(fd, 0, "rpc");

        g_assert_nonnull(strstr(msg, "1"));
        g_assert_nonnull(strstr(msg, "2"));
    }
    raw_expect_eof(fd);
    close(fd);

    /* Oversized: dropped, whether or not the error line survives the
     * reset of a connection closed with unread input. */
    fd = raw_connect(d);
    raw_hello(fd);
    {
        size_t len = 200 * 1024;
        g_autofree char *big = g_malloc(len);
        g_autoptr(json_object) msg = NULL;

        memset(big, ' ', len);
        static const char head[] = "{\"id\":1,\"method\":\"host.info\",\"params\":{\"x\":\"";

        memcpy(big, head, strlen(head));
        big[len - 1] = '\n';
        (void)raw_send_len(fd, big, len);
        msg = raw_read(fd);
        if (msg) {
            json_object *err = NULL;

            g_assert_cmpint(ho_json_get_object(msg, "error", &err), ==, 0);
            g_assert_cmpstr(res_string(err, "code"), ==, "rpc");
            raw_expect_eof(fd);
        }
    }
    close(fd);

    /* It still serves. */
    c = daemon_connect(d);
    g_clear_pointer(&res, json_object_put);
    res = call_ok(c, "host.info", NULL);
    g_assert_true(res_has(res, "hostname"));
    g_assert_false(d->reaped);
    g_assert_false(pidfd_wait(d->pidfd, 0));
}

/* More connections than max_clients: each extra one gets one 'limit'
 * line and is closed; the daemon serves its full quota afterwards. */
static void
test_client_flood(void)
{
    enum { MAX = 8, EXTRA = 40 };
    g_autoptr(TestDaemon) d = daemon_run("flood", "[handoverd]\nmax_clients = 8\n");
    int held[MAX];
    int extra[EXTRA];
    int i;

    for (i = 0; i < MAX; i++) {
        held[i] = raw_connect(d);
        raw_hello(held[i]);
    }
    /* All at once, then read. */
    for (i = 0; i < EXTRA; i++)
        extra[i] = raw_connect(d);
    for (i = 0; i < EXTRA; i++) {
        g_autofree char *msg = raw_expect_error(extra[i], -1, "limit");

        g_assert_nonnull(strstr(msg, "8"));
        raw_expect_eof(extra[i]);
        close(extra[i]);
    }
    /* The held ones still work. */
    for (i = 0; i < MAX; i++) {
        g_autofree char *req = g_strdup_printf("{\"id\":%d,\"method\":\"host.info\"}\n", i + 1);
        g_autoptr(json_object) res = NULL;

        raw_send(held[i], req);
        res = raw_expect_result(held[i], i + 1);
    }

    /* Free 7 places. The daemon handles the EOFs no later than the next
     * request of the remaining client, so its reply orders them. */
    for (i = 1; i < MAX; i++)
        close(held[i]);
    {
        g_autoptr(json_object) res = NULL;

        raw_send(held[0], "{\"id\":100,\"method\":\"host.info\"}\n");
        res = raw_expect_result(held[0], 100);
    }
    for (i = 1; i < MAX; i++) {
        held[i] = raw_connect(d);
        raw_hello(held[i]);
    }
    /* Full again. */
    extra[0] = raw_connect(d);
    g_free(raw_expect_error(extra[0], -1, "limit"));
    close(extra[0]);
    for (i = 0; i < MAX; i++)
        close(held[i]);
    g_assert_false(pidfd_wait(d->pidfd, 0));
}

/* ---- real QEMU -------------------------------------------------------- */

static void
test_real_lifecycle(gconstpointer data)
{
    const TestQemuBinary *bin = test_qemu_need(data);
    g_autoptr(TestDaemon) d = NULL;
    g_autoptr(HoRpcConn) c = NULL;
    g_autoptr(HoRpcConn) w = NULL;
    g_autoptr(EventLog) log = event_log_new();
    g_autoptr(TestGuestPid) qemu = NULL;
    g_autofree char *disk = NULL;
    g_autofree char *xml = NULL;
    g_autofree char *uuid = NULL;
    g_autofree char *machine = NULL;
    g_autofree char *detail = NULL;
    const char *name = "life";

    if (!bin)
        return;
    d = daemon_run("life", "[handoverd]\nshutdown_timeout = 30\n");
    c = daemon_connect(d);
    w = daemon_watch(d, log);
    disk = make_disk(d->root);
    machine = concrete_machine(bin);
    xml = guest_xml(name, NULL, bin->binary, disk);

    uuid = define_guest(c, xml, name);
    g_free(wait_lifecycle(w, log, name, "defined"));

    qemu = start_guest(c, name, false);
    g_free(wait_lifecycle(w, log, name, "started"));
    call_err(c, "domain.start", "{\"name\":\"life\"}", HO_ERR_OPERATION_INVALID, NULL);

    /* info: the concrete machine, the QEMU's pid. */
    {
        g_autoptr(json_object) info = call_ok(c, "domain.info", "{\"name\":\"life\"}");

        assert_keys(info, "accel,emulator,machine,max_memory_kib,memory_kib,name,persistent,"
                          "pid,reason,state,uuid,vcpus");
        g_assert_cmpstr(res_string(info, "reason"), ==, "booted");
        g_assert_cmpstr(res_string(info, "state"), ==, "running");
        g_assert_cmpint(res_int(info, "pid"), ==, qemu->pid);
        g_assert_cmpstr(res_string(info, "machine"), ==, machine);
        g_assert_cmpstr(res_string(info, "emulator"), ==, bin->binary);
        g_assert_cmpstr(res_string(info, "accel"), ==, test_qemu_accel(NULL));
        g_assert_cmpint(res_int(info, "max_memory_kib"), ==, 131072);
        g_assert_cmpint(res_int(info, "vcpus"), ==, 1);
        g_assert_true(res_bool(info, "persistent"));
    }
    {
        g_autoptr(json_object) live = call_ok(c, "domain.get_xml", "{\"name\":\"life\"}");
        g_autoptr(json_object) inactive =
            call_ok(c, "domain.get_xml", "{\"name\":\"life\",\"inactive\":true}");
        g_autofree char *want = g_strdup_printf("machine='%s'", machine);

        g_assert_nonnull(strstr(res_string(live, "xml"), want));
        g_assert_nonnull(strstr(res_string(inactive, "xml"), "machine='pc'"));
    }
    {
        g_autoptr(json_object) list = call_ok(c, "domain.list", NULL);
        json_object *entry = list_find(list, name);

        g_assert_nonnull(entry);
        assert_keys(entry, "id,name,persistent,state,uuid");
        g_assert_cmpstr(res_string(entry, "state"), ==, "running");
        g_assert_cmpstr(res_string(entry, "uuid"), ==, uuid);
    }
    {
        g_autoptr(json_object) host = call_ok(c, "host.info", NULL);

        g_assert_cmpint(res_int(host, "domains_running"), ==, 1);
    }

    /* suspend / resume, with their events. */
    {
        g_autoptr(json_object) r = call_ok(c, "domain.suspend", "{\"name\":\"life\"}");

        assert_keys(r, "");
    }
    g_free(wait_lifecycle(w, log, name, "suspended"));
    assert_state(c, name, "paused");
    /* Idempotent, as the driver has it. */
    {
        g_autoptr(json_object) r = call_ok(c, "domain.suspend", "{\"name\":\"life\"}");

        assert_state(c, name, "paused");
    }
    {
        g_autoptr(json_object) r = call_ok(c, "domain.resume", "{\"name\":\"life\"}");

        assert_keys(r, "");
    }
    g_free(wait_lifecycle(w, log, name, "resumed"));
    assert_state(c, name, "running");
    {
        g_autoptr(json_object) r = call_ok(c, "domain.resume", "{\"name\":\"life\"}");

        assert_state(c, name, "running");
    }

    /* shutdown: SeaBIOS ignores the power button, so it is forced. */
    {
        g_autoptr(json_object) r = call_ok_timeout(
            c, "domain.shutdown", params_parse("{\"name\":\"life\",\"timeout\":1}"), QEMU_WAIT_MS);

        assert_keys(r, "forced");
        g_assert_true(res_bool(r, "forced"));
    }
    g_assert_true(guest_pid_exited(qemu, 0));
    /* The guest did not stop by itself: it was destroyed. */
    detail = wait_lifecycle(w, log, name, "stopped");
    g_assert_cmpstr(detail, ==, "destroyed");
    g_clear_pointer(&detail, g_free);
    assert_state(c, name, "shutoff");
    g_clear_pointer(&qemu, guest_pid_free);

    /* Paused start, then destroy. */
    qemu = start_guest(c, name, true);
    g_free(wait_lifecycle(w, log, name, "started"));
    assert_state(c, name, "paused");
    {
        g_autoptr(json_object) r = call_ok_timeout(
            c, "domain.destroy", params_parse("{\"name\":\"life\"}"), QEMU_WAIT_MS);

        assert_keys(r, "");
    }
    /* Replied when the QEMU has exited. */
    g_assert_true(guest_pid_exited(qemu, 0));
    detail = wait_lifecycle(w, log, name, "stopped");
    g_assert_cmpstr(detail, ==, "destroyed");
    assert_state(c, name, "shutoff");
    g_clear_pointer(&qemu, guest_pid_free);

    /* A running domain undefined becomes transient and is forgotten when
     * it stops. */
    qemu = start_guest(c, name, false);
    g_free(wait_lifecycle(w, log, name, "started"));
    {
        g_autoptr(json_object) r = call_ok(c, "domain.undefine", "{\"name\":\"life\"}");
        g_autoptr(json_object) info = call_ok(c, "domain.info", "{\"name\":\"life\"}");

        g_assert_false(res_bool(info, "persistent"));
        g_assert_cmpstr(res_string(info, "state"), ==, "running");
    }
    g_free(wait_lifecycle(w, log, name, "undefined"));
    /* No persistent definition left: inactive gives the live one, as libvirt does. */
    {
        g_autoptr(json_object) x =
            call_ok(c, "domain.get_xml", "{\"name\":\"life\",\"inactive\":true}");
        g_autofree char *want = g_strdup_printf("machine='%s'", machine);

        g_assert_nonnull(strstr(res_string(x, "xml"), want));
    }
    {
        g_autoptr(json_object) r = call_ok_timeout(
            c, "domain.destroy", params_parse("{\"name\":\"life\"}"), QEMU_WAIT_MS);
    }
    g_assert_true(guest_pid_exited(qemu, 0));
    g_free(wait_lifecycle(w, log, name, "stopped"));
    call_err(c, "domain.info", "{\"name\":\"life\"}", HO_ERR_NO_DOMAIN, "'life'");
}

/* A daemon killed with SIGKILL leaves its guest running; the next one on
 * the same root finds it, drives it, and notices when it dies. */
static void
test_real_restart(gconstpointer data)
{
    const TestQemuBinary *bin = test_qemu_need(data);
    g_autoptr(TestDaemon) d = NULL;
    g_autoptr(HoRpcConn) c = NULL;
    g_autoptr(HoRpcConn) w = NULL;
    g_autoptr(EventLog) log = event_log_new();
    g_autoptr(TestGuestPid) qemu = NULL;
    g_autofree char *xml = NULL;
    g_autofree char *machine = NULL;
    g_autofree char *detail = NULL;
    const char *name = "phoenix";

    if (!bin)
        return;
    d = daemon_run("restart", NULL);
    c = daemon_connect(d);
    machine = concrete_machine(bin);
    xml = guest_xml(name, NULL, bin->binary, NULL);
    g_free(define_guest(c, xml, name));
    qemu = start_guest(c, name, false);

    g_clear_pointer(&c, ho_rpc_conn_free);
    daemon_kill9(d);
    g_assert_false(guest_pid_exited(qemu, 0));

    daemon_start(d);
    c = daemon_connect(d);
    {
        g_autoptr(json_object) list = call_ok(c, "domain.list", NULL);
        json_object *entry = list_find(list, name);
        g_autoptr(json_object) info = call_ok(c, "domain.info", "{\"name\":\"phoenix\"}");

        g_assert_nonnull(entry);
        g_assert_cmpstr(res_string(entry, "state"), ==, "running");
        g_assert_cmpstr(res_string(info, "state"), ==, "running");
        g_assert_cmpint(res_int(info, "pid"), ==, qemu->pid);
        g_assert_cmpstr(res_string(info, "machine"), ==, machine);
    }
    /* Its monitor works again. */
    {
        g_autoptr(json_object) r1 = call_ok(c, "domain.suspend", "{\"name\":\"phoenix\"}");
        g_autoptr(json_object) r2 = NULL;

        assert_state(c, name, "paused");
        r2 = call_ok(c, "domain.resume", "{\"name\":\"phoenix\"}");
        assert_state(c, name, "running");
    }
    {
        g_autoptr(json_object) r = call_ok_timeout(
            c, "domain.destroy", params_parse("{\"name\":\"phoenix\"}"), QEMU_WAIT_MS);
    }
    g_assert_true(guest_pid_exited(qemu, 0));
    assert_state(c, name, "shutoff");
    g_clear_pointer(&qemu, guest_pid_free);

    /* Again, and this time the QEMU dies behind the new daemon's back:
     * it is not its child, a pidfd tells it. */
    qemu = start_guest(c, name, false);
    g_clear_pointer(&c, ho_rpc_conn_free);
    daemon_kill9(d);
    daemon_start(d);
    c = daemon_connect(d);
    w = daemon_watch(d, log);
    assert_state(c, name, "running");
    g_assert_cmpint(pidfd_send_signal(qemu->pidfd, SIGKILL, NULL, 0), ==, 0);
    /* Not its child: it cannot know how QEMU ended. */
    detail = wait_lifecycle(w, log, name, "stopped");
    g_assert_cmpstr(detail, ==, "qemu-exited");
    assert_state(c, name, "shutoff");
}

/* The daemon's own child killed with SIGKILL: noticed through an event. */
static void
test_real_qemu_killed(gconstpointer data)
{
    const TestQemuBinary *bin = test_qemu_need(data);
    g_autoptr(TestDaemon) d = NULL;
    g_autoptr(HoRpcConn) c = NULL;
    g_autoptr(HoRpcConn) w = NULL;
    g_autoptr(EventLog) log = event_log_new();
    g_autoptr(TestGuestPid) qemu = NULL;
    g_autofree char *xml = NULL;
    g_autofree char *detail = NULL;
    const char *name = "victim";

    if (!bin)
        return;
    d = daemon_run("killed", NULL);
    c = daemon_connect(d);
    w = daemon_watch(d, log);
    xml = guest_xml(name, NULL, bin->binary, NULL);
    g_free(define_guest(c, xml, name));
    qemu = start_guest(c, name, false);
    g_free(wait_lifecycle(w, log, name, "started"));

    g_assert_cmpint(pidfd_send_signal(qemu->pidfd, SIGKILL, NULL, 0), ==, 0);
    /* Its child, killed by a signal nobody asked for. */
    detail = wait_lifecycle(w, log, name, "stopped");
    g_assert_cmpstr(detail, ==, "crashed");
    assert_state(c, name, "shutoff");
    {
        g_autoptr(json_object) info = call_ok(c, "domain.info", "{\"name\":\"victim\"}");

        g_assert_false(res_has(info, "pid"));
    }
    /* And it starts again. */
    g_clear_pointer(&qemu, guest_pid_free);
    qemu = start_guest(c, name, false);
    g_free(wait_lifecycle(w, log, name, "started"));
}

/* SIGTERM: exit 0, socket gone, the QEMU still running. */
static void
test_real_sigterm(gconstpointer data)
{
    const TestQemuBinary *bin = test_qemu_need(data);
    g_autoptr(TestDaemon) d = NULL;
    g_autoptr(HoRpcConn) c = NULL;
    g_autoptr(TestGuestPid) qemu = NULL;
    g_autofree char *xml = NULL;
    const char *name = "survivor";

    if (!bin)
        return;
    d = daemon_run("sigterm", NULL);
    c = daemon_connect(d);
    xml = guest_xml(name, NULL, bin->binary, NULL);
    g_free(define_guest(c, xml, name));
    qemu = start_guest(c, name, false);

    daemon_signal(d, SIGTERM);
    if (!daemon_wait_exit(d, WAIT_MS))
        g_error("handoverd did not exit in %d ms", WAIT_MS);
    g_assert_true(WIFEXITED(d->status));
    g_assert_cmpint(WEXITSTATUS(d->status), ==, 0);
    g_assert_false(g_file_test(d->socket_path, G_FILE_TEST_EXISTS));
    /* Clients were closed. */
    g_assert_cmpint(ho_rpc_conn_call_sync(c, "host.info", NULL, NULL, WAIT_MS), ==, -1);
    ho_error_reset();

    g_assert_false(guest_pid_exited(qemu, 0));
    g_assert_cmpint(kill(qemu->pid, 0), ==, 0);
    /* The test's to kill now, by pid. */
    g_assert_cmpint(pidfd_send_signal(qemu->pidfd, SIGKILL, NULL, 0), ==, 0);
    g_assert_true(guest_pid_exited(qemu, WAIT_MS));
}

/* ---- migration between daemons --------------------------------------- */

/* A TCP port free right now on the loopback. */
static int
free_tcp_port(void)
{
    int port = 0;
    int fd = ho_socket_tcp_listen("127.0.0.1", 0, 1, &port);

    g_assert_cmpint(fd, >=, 0);
    close(fd);
    return port;
}

/* The configuration of a daemon that peers listen to on 127.0.0.1:port. */
static char *
peer_conf(int port, const char *host_uuid)
{
    return g_strdup_printf("[handoverd]\nlisten_address = 127.0.0.1\nlisten_port = %d\n%s%s%s",
                           port, host_uuid ? "host_uuid = " : "", host_uuid ? host_uuid : "",
                           host_uuid ? "\n" : "");
}

static char *
peer_uri(int port)
{
    return g_strdup_printf("handover+tcp://127.0.0.1:%d/system", port);
}

static void
migrate_err(HoRpcConn *c, const char *name, const char *dest_uri, const char *params,
            HoErrorCode code, const char *needle)
{
    json_object *p = json_object_new_object();

    ho_json_add_string(p, "name", name);
    ho_json_add_string(p, "dest_uri", dest_uri);
    if (params)
        ho_json_add(p, "params", params_parse(params));
    call_err_obj(c, "domain.migrate", p, code, needle);
}

typedef struct {
    bool done;
    HoError *err;
} PeerOpen;

static void
peer_open_cb(HoRpcConn *conn, const HoError *err, void *opaque)
{
    PeerOpen *po = opaque;

    po->done = true;
    po->err = ho_error_copy(err);
}

/* The TCP listener: hello (with keepalive when asked), the peer methods,
 * nothing else; the UNIX socket keeps every method. */
static void
test_peer_listener(void)
{
    int port = free_tcp_port();
    g_autofree char *conf = peer_conf(port, "6f1d2c3b-0000-4000-8000-00000000a001");
    g_autoptr(TestDaemon) d = daemon_run("peer-listener", conf);
    g_autoptr(HoRpcConn) tcp = NULL;
    g_autoptr(HoRpcConn) ka = NULL;
    g_autoptr(HoRpcConn) c = daemon_connect(d);
    g_autoptr(GMainContext) ctx = g_main_context_new();
    HoRpcConnOptions opts = {.client_name = "daemontest", .keepalive_interval_ms = 1000};
    PeerOpen po = {0};
    json_object *kobj = NULL;
    static const char *const local_only[] = {
        "host.info", "domain.list", "domain.define", "domain.start", "domain.destroy",
        "domain.migrate", "domain.jobinfo", "domain.jobabort", "domain.migrate_postcopy",
        "domain.migrate_recover", NULL,
    };
    size_t i;

    tcp = ho_rpc_conn_open_tcp("127.0.0.1", port, "daemontest", NULL, WAIT_MS);
    if (!tcp)
        g_error("cannot connect over TCP: %s", ho_error_last_message());
    g_assert_cmpstr(res_string(ho_rpc_conn_get_hello(tcp), "host_uuid"), ==,
                    "6f1d2c3b-0000-4000-8000-00000000a001");
    /* Not asked for: no keepalive. */
    g_assert_false(res_has(ho_rpc_conn_get_hello(tcp), "keepalive"));
    for (i = 0; local_only[i]; i++) {
        g_autofree char *msg = g_strdup_printf(
            "method '%s' is served on the local socket only, not over TCP", local_only[i]);

        call_err(tcp, local_only[i], "{\"name\":\"x\"}", HO_ERR_RPC, msg);
    }
    /* The peer methods are served (their arguments checked like any). */
    call_err(tcp, "migration.prepare", "{}", HO_ERR_INVALID_ARG,
             "missing argument 'cookie' of 'migration.prepare'");
    call_err(tcp, "migration.finish", "{\"uuid\":\"x\"}", HO_ERR_INVALID_ARG,
             "unknown argument 'uuid' of 'migration.finish'");
    call_err(tcp, "migration.nbd_stop", "{}", HO_ERR_INVALID_ARG,
             "missing argument 'args' of 'migration.nbd_stop'");
    call_err(tcp, "migration.recover", "{}", HO_ERR_INVALID_ARG,
             "missing argument 'args' of 'migration.recover'");
    call_err(tcp, "migration.pause", "{\"args\":{}}", HO_ERR_INVALID_ARG,
             "missing argument 'args.uuid'");
    call_err(tcp, "migration.recover",
             "{\"args\":{\"uuid\":\"6f1d2c3b-0000-4000-8000-00000000b001\"}}",
             HO_ERR_NO_DOMAIN, "6f1d2c3b-0000-4000-8000-00000000b001");
    /* Served, and answered by the orchestrator: no such incoming job. */
    call_err(tcp, "migration.nbd_stop",
             "{\"args\":{\"uuid\":\"6f1d2c3b-0000-4000-8000-00000000b001\"}}",
             HO_ERR_OPERATION_INVALID,
             "no incoming migration of domain '6f1d2c3b-0000-4000-8000-00000000b001' here");
    {
        g_autoptr(json_object) r = call_ok(tcp, "events.subscribe", NULL);
    }
    g_assert_true(ho_rpc_conn_is_open(tcp));

    /* A peer asking for keepalive is told the daemon's settings. */
    ka = ho_rpc_conn_open_tcp_async("127.0.0.1", port, &opts, ctx, peer_open_cb, &po);
    g_assert_nonnull(ka);
    while (!po.done)
        g_main_context_iteration(ctx, TRUE);
    g_assert_null(po.err);
    g_assert_cmpint(ho_json_get_object(ho_rpc_conn_get_hello(ka), "keepalive", &kobj), ==, 0);
    /* keepalive 5 s x 5, tightened so that a dead peer is noticed within
     * postcopy_stall_timeout (10 s): (3 + 2) x 2 s. */
    g_assert_cmpint(res_int(kobj, "interval_ms"), ==, 2000);
    g_assert_cmpint(res_int(kobj, "count"), ==, 3);

    /* The UNIX socket serves both kinds. */
    call_err(c, "migration.prepare", "{}", HO_ERR_INVALID_ARG,
             "missing argument 'cookie' of 'migration.prepare'");
    {
        g_autoptr(json_object) r = call_ok(c, "domain.list", NULL);
    }
}

/* domain.migrate, domain.jobinfo and domain.jobabort refuse what cannot
 * work, naming it, and change nothing. */
static void
test_peer_migrate_errors(void)
{
    int port = free_tcp_port();
    g_autofree char *conf = peer_conf(port, NULL);
    g_autoptr(TestDaemon) d = daemon_run("peer-errors", conf);
    g_autoptr(HoRpcConn) c = daemon_connect(d);
    g_autofree char *dest = peer_uri(port);
    g_autofree char *xml = guest_xml("vm1", NULL, NULL, NULL);

    migrate_err(c, "nosuch", dest, NULL, HO_ERR_NO_DOMAIN, "nosuch");
    call_err(c, "domain.jobinfo", "{\"name\":\"nosuch\"}", HO_ERR_NO_DOMAIN, "nosuch");
    call_err(c, "domain.jobabort", "{\"name\":\"nosuch\"}", HO_ERR_NO_DOMAIN, "nosuch");
    call_err(c, "domain.jobabort", "{\"name\":\"nosuch\",\"postcopy\":1}", HO_ERR_INVALID_ARG,
             "postcopy");
    call_err(c, "domain.migrate_postcopy", "{\"name\":\"nosuch\"}", HO_ERR_NO_DOMAIN, "nosuch");
    call_err(c, "domain.migrate_postcopy", "{}", HO_ERR_INVALID_ARG,
             "missing argument 'name' of 'domain.migrate_postcopy'");
    call_err(c, "domain.migrate_recover", "{\"name\":\"vm1\"}", HO_ERR_INVALID_ARG,
             "missing argument 'dest_uri' of 'domain.migrate_recover'");
    call_err(c, "domain.migrate_recover", "{\"name\":\"nosuch\",\"dest_uri\":\"x\"}",
             HO_ERR_NO_DOMAIN, "nosuch");
    call_err(c, "migration.pause", "{}", HO_ERR_INVALID_ARG,
             "missing argument 'args' of 'migration.pause'");
    call_err(c, "domain.migrate", "{\"name\":\"vm1\"}", HO_ERR_INVALID_ARG,
             "missing argument 'dest_uri' of 'domain.migrate'");
    call_err(c, "domain.migrate", "{\"name\":\"vm1\",\"dest_uri\":\"x\",\"params\":[]}",
             HO_ERR_INVALID_ARG, "argument 'params' of 'domain.migrate' must be an object");

    g_free(define_guest(c, xml, "vm1"));
    /* Bad destination URIs. */
    migrate_err(c, "vm1", "handover+unix:///system", NULL, HO_ERR_URI,
                "unsupported destination URI 'handover+unix:///system'");
    migrate_err(c, "vm1", "handover+tcp:///system", NULL, HO_ERR_URI, "has no host");
    migrate_err(c, "vm1", "handover+tcp://h/session", NULL, HO_ERR_URI,
                "unsupported path '/session'");
    migrate_err(c, "vm1", "handover+tcp://h/system?x=1", NULL, HO_ERR_URI, "query");
    migrate_err(c, "vm1", "", NULL, HO_ERR_URI, "empty");
    /* Not running. */
    migrate_err(c, "vm1", dest, NULL, HO_ERR_OPERATION_INVALID,
                "cannot migrate domain 'vm1': it is not running");
    call_err(c, "domain.jobabort", "{\"name\":\"vm1\"}", HO_ERR_OPERATION_INVALID, "vm1");
    call_err(c, "domain.jobinfo", "{\"name\":\"vm1\"}", HO_ERR_OPERATION_INVALID, "vm1");

    /* Postcopy: switching, recovering and pausing need a job. */
    call_err(c, "domain.migrate_postcopy", "{\"name\":\"vm1\"}", HO_ERR_OPERATION_INVALID,
             "domain 'vm1' has no migration job");
    call_err(c, "domain.jobabort", "{\"name\":\"vm1\",\"postcopy\":true}",
             HO_ERR_OPERATION_INVALID, "domain 'vm1' has no migration job");
    {
        json_object *p = json_object_new_object();

        ho_json_add_string(p, "name", "vm1");
        ho_json_add_string(p, "dest_uri", dest);
        call_err_obj(c, "domain.migrate_recover", p, HO_ERR_OPERATION_INVALID,
                     "domain 'vm1' has no migration job");
    }
    {
        g_autoptr(json_object) info = call_ok(c, "domain.info", "{\"name\":\"vm1\"}");
        g_autofree char *args = g_strdup_printf("{\"args\":{\"uuid\":\"%s\"}}",
                                                res_string(info, "uuid"));

        call_err(c, "migration.recover", args, HO_ERR_OPERATION_INVALID,
                 "domain 'vm1' has no migration job");
        call_err(c, "migration.pause", args, HO_ERR_OPERATION_INVALID,
                 "domain 'vm1' has no incoming postcopy migration here");
    }
    /* CPR transfer stays on this host: no destination URI; then the
     * same checks as any migration. */
    migrate_err(c, "vm1", dest, "{\"mode\":\"cpr-transfer\"}", HO_ERR_INVALID_ARG,
                "cannot migrate domain 'vm1' with mode 'cpr-transfer' to");
    call_err(c, "domain.migrate", "{\"name\":\"vm1\",\"params\":{\"mode\":\"cpr-transfer\"}}",
             HO_ERR_OPERATION_INVALID, "cannot migrate domain 'vm1': it is not running");
    call_err(c, "domain.migrate", "{\"name\":\"vm1\",\"params\":{\"mode\":\"normal\"}}",
             HO_ERR_INVALID_ARG, "missing argument 'dest_uri' of 'domain.migrate'");
    assert_state(c, "vm1", "shutoff");
}

/* A running guest cannot be migrated to its own host, whether the URI
 * names this daemon or another daemon with the same host UUID; and an
 * unreachable destination is an error. Nothing changes. */
static void
test_real_migrate_refused(gconstpointer data)
{
    const TestQemuBinary *bin = test_qemu_need(data);
    const char *uuid = "6f1d2c3b-0000-4000-8000-00000000b001";
    int port_a = free_tcp_port();
    int port_b = free_tcp_port();
    int dead = free_tcp_port();
    g_autofree char *conf_a = peer_conf(port_a, uuid);
    g_autofree char *conf_b = peer_conf(port_b, uuid);
    g_autofree char *uri_a = peer_uri(port_a);
    g_autofree char *uri_b = peer_uri(port_b);
    g_autofree char *uri_dead = peer_uri(dead);
    g_autofree char *same = NULL;
    g_autoptr(TestDaemon) a = NULL;
    g_autoptr(TestDaemon) b = NULL;
    g_autoptr(HoRpcConn) ca = NULL;
    g_autoptr(HoRpcConn) cb = NULL;
    g_autoptr(TestGuestPid) qemu = NULL;
    g_autofree char *xml = NULL;

    if (!bin)
        return;
    a = daemon_run("peer-same-a", conf_a);
    b = daemon_run("peer-same-b", conf_b);
    ca = daemon_connect(a);
    cb = daemon_connect(b);
    xml = guest_xml("vm1", NULL, bin->binary, NULL);
    g_free(define_guest(ca, xml, "vm1"));
    qemu = start_guest(ca, "vm1", false);

    same = g_strdup_printf("cannot migrate domain 'vm1' to '%s': it is this host (host UUID %s)",
                           uri_a, uuid);
    migrate_err(ca, "vm1", uri_a, "{\"live\":true}", HO_ERR_OPERATION_INVALID, same);
    g_free(same);
    same = g_strdup_printf("cannot migrate domain 'vm1' to '%s': it is this host (host UUID %s)",
                           uri_b, uuid);
    migrate_err(ca, "vm1", uri_b, "{\"live\":true}", HO_ERR_OPERATION_INVALID, same);
    migrate_err(ca, "vm1", uri_dead, NULL, HO_ERR_SYSTEM, "Connection refused");
    migrate_err(ca, "vm1", "handover+tcp://nonexistent.invalid/system", NULL, HO_ERR_SYSTEM,
                "nonexistent.invalid");
    /* Unknown migration parameters are refused by name. */
    migrate_err(ca, "vm1", uri_b, "{\"precopy\":true}", HO_ERR_INVALID_ARG, "precopy");
    migrate_err(ca, "vm1", uri_b, "{\"mode\":\"reboot\"}", HO_ERR_INVALID_ARG,
                "unknown migration mode 'reboot'");
    migrate_err(ca, "vm1", uri_b, "{\"postcopy_after_precopy\":true}", HO_ERR_INVALID_ARG,
                "need 'postcopy'");

    /* Nothing changed: still running, no job, nothing on the other side. */
    assert_state(ca, "vm1", "running");
    g_assert_false(guest_pid_exited(qemu, 0));
    call_err(ca, "domain.jobinfo", "{\"name\":\"vm1\"}", HO_ERR_OPERATION_INVALID, "vm1");
    {
        g_autoptr(json_object) list = call_ok(cb, "domain.list", "{\"all\":true}");

        g_assert_null(list_find(list, "vm1"));
    }
    {
        g_autoptr(json_object) r = call_ok_timeout(
            ca, "domain.destroy", params_parse("{\"name\":\"vm1\"}"), QEMU_WAIT_MS);
    }
}

typedef struct {
    GPtrArray *events; /* "event phase" of domain.job */
} JobLog;

static void
job_event_cb(HoRpcConn *conn, const char *event, json_object *data, gint64 ts_us, void *opaque)
{
    JobLog *log = opaque;
    json_object *d = NULL;
    const char *phase = NULL;

    if (strcmp(event, "domain.job") != 0)
        return;
    g_assert_cmpstr(res_string(data, "name"), ==, "vm1");
    g_assert_true(res_has(data, "uuid"));
    g_assert_cmpint(ho_json_get_object(data, "data", &d), ==, 0);
    (void)ho_json_opt_string(d, "phase", &phase);
    g_ptr_array_add(log->events,
                    g_strdup_printf("%s %s", res_string(data, "event"), phase ? phase : "-"));
}

/* A paused guest (firmware only, no disk) between two daemons: the reply
 * comes when the job ended, with its statistics; the source's subscribed
 * clients saw "domain.job" events; the guest runs on the destination and
 * is gone from the source. */
static void
test_real_migrate_two_daemons(gconstpointer data)
{
    const TestQemuBinary *bin = test_qemu_need(data);
    int port_b = free_tcp_port();
    g_autofree char *conf_a = peer_conf(free_tcp_port(), NULL);
    g_autofree char *conf_b0 = peer_conf(port_b, NULL);
    g_autofree char *conf_b = NULL;
    g_autofree char *uri_b = peer_uri(port_b);
    g_autoptr(TestDaemon) a = NULL;
    g_autoptr(TestDaemon) b = NULL;
    g_autoptr(HoRpcConn) ca = NULL;
    g_autoptr(HoRpcConn) cb = NULL;
    g_autoptr(HoRpcConn) w = NULL;
    g_autoptr(TestGuestPid) qemu = NULL;
    g_autoptr(json_object) res = NULL;
    g_autoptr(json_object) info = NULL;
    g_autofree char *xml = NULL;
    g_autofree char *events = NULL;
    JobLog log = {g_ptr_array_new_with_free_func(g_free)};
    json_object *p;

    if (!bin)
        return;
    /* The destination uses its own emulator: the same version here. */
    conf_b = g_strdup_printf("%sdefault_emulator = %s\n", conf_b0, bin->binary);
    a = daemon_run("peer-mig-a", conf_a);
    b = daemon_run("peer-mig-b", conf_b);
    ca = daemon_connect(a);
    cb = daemon_connect(b);
    w = daemon_connect(a);
    ho_rpc_conn_set_callbacks(w, job_event_cb, NULL, &log);
    {
        g_autoptr(json_object) r = call_ok(w, "events.subscribe", NULL);
    }
    xml = guest_xml("vm1", NULL, bin->binary, NULL);
    g_free(define_guest(ca, xml, "vm1"));
    qemu = start_guest(ca, "vm1", false);

    p = json_object_new_object();
    ho_json_add_string(p, "name", "vm1");
    ho_json_add_string(p, "dest_uri", uri_b);
    ho_json_add(p, "params", params_parse("{\"live\":true}"));
    res = call_ok_timeout(ca, "domain.migrate", p, QEMU_WAIT_MS);
    g_assert_cmpstr(res_string(res, "phase"), ==, "completed");

    /* The source QEMU is gone, the destination runs the guest. */
    g_assert_true(guest_pid_exited(qemu, QEMU_WAIT_MS));
    assert_state(cb, "vm1", "running");
    info = call_ok(ca, "domain.jobinfo", "{\"name\":\"vm1\",\"completed\":true}");
    g_assert_cmpstr(res_string(info, "phase"), ==, "completed");

    /* Events: phases in order, ending completed. */
    while (ho_rpc_conn_wait_event(w, 200) > 0)
        ;
    g_ptr_array_add(log.events, NULL);
    events = g_strjoinv(", ", (char **)log.events->pdata);
    if (!strstr(events, "phase begin") || !strstr(events, "phase prepare") ||
        !strstr(events, "completed"))
        g_error("unexpected job events: %s", events);
    g_ptr_array_unref(log.events);
    {
        g_autoptr(json_object) r = call_ok_timeout(
            cb, "domain.destroy", params_parse("{\"name\":\"vm1\"}"), QEMU_WAIT_MS);
    }
}

int
main(int argc, char **argv)
{
    const TestQemuBinary *const *bins;
    size_t i;

    g_test_init(&argc, &argv, NULL);
    tracking_init();
    (void)signal(SIGPIPE, SIG_IGN);

    g_test_add_func("/daemon/startup-errors", test_startup_errors);
    g_test_add_func("/daemon/single-instance", test_single_instance);
    g_test_add_func("/daemon/sigint-and-version", test_sigint_and_version);
    g_test_add_func("/daemon/hello-and-host", test_hello_and_host);
    g_test_add_func("/daemon/config-applied", test_config_applied);
    g_test_add_func("/daemon/host-capabilities", test_host_capabilities);
    g_test_add_func("/daemon/bad-arguments", test_bad_arguments);
    g_test_add_func("/daemon/domain-definitions", test_domain_definitions);
    g_test_add_func("/daemon/events-subscription", test_events_subscription);
    g_test_add_func("/daemon/violations", test_violations);
    g_test_add_func("/daemon/client-flood", test_client_flood);
    g_test_add_func("/daemon/peer/listener", test_peer_listener);
    g_test_add_func("/daemon/peer/migrate-errors", test_peer_migrate_errors);

    bins = test_qemu_binaries();
    for (i = 0; bins[i]; i++) {
        g_autofree char *t1 = g_strdup_printf("/daemon/real/%s/lifecycle", bins[i]->name);
        g_autofree char *t2 = g_strdup_printf("/daemon/real/%s/restart", bins[i]->name);
        g_autofree char *t3 = g_strdup_printf("/daemon/real/%s/qemu-killed", bins[i]->name);
        g_autofree char *t4 = g_strdup_printf("/daemon/real/%s/sigterm", bins[i]->name);

        g_test_add_data_func(t1, bins[i]->name, test_real_lifecycle);
        g_test_add_data_func(t2, bins[i]->name, test_real_restart);
        g_test_add_data_func(t3, bins[i]->name, test_real_qemu_killed);
        g_test_add_data_func(t4, bins[i]->name, test_real_sigterm);
        {
            g_autofree char *t5 =
                g_strdup_printf("/daemon/real/%s/migrate-refused", bins[i]->name);
            g_autofree char *t6 =
                g_strdup_printf("/daemon/real/%s/migrate-two-daemons", bins[i]->name);

            g_test_add_data_func(t5, bins[i]->name, test_real_migrate_refused);
            g_test_add_data_func(t6, bins[i]->name, test_real_migrate_two_daemons);
        }
    }
    return g_test_run();
}
