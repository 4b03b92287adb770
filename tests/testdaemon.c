/*
 * handoverd instances and the handover CLI for multi-daemon tests
 * (testdaemon.h).
 */
#define _GNU_SOURCE /* pipe2 */
#include "testdaemon.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ho_json.h"
#include "testnetns.h"
#include "testutils.h"

/* Waiting for READY: a daemon probes nothing before it, but a loaded
 * machine can be slow. */
#define READY_WAIT_MS 60000
#define EXIT_WAIT_MS 15000
/* A CLI command; migrate has its own bound (test_cli_spawn). */
#define CLI_WAIT_MS 120000

#define MAX_DAEMONS 16
#define MAX_TRACKED 64
#define MAX_CHILDREN 64

/* ---- what the abort handler cleans up: plain arrays, no allocation ---- */

static pid_t daemon_pid[MAX_DAEMONS];
static char daemon_log_path[MAX_DAEMONS][512];
static pid_t tracked_pid[MAX_TRACKED];
static int tracked_pidfd[MAX_TRACKED];
static struct sigaction prev_action[6];
static const int cleanup_signals[6] = {SIGABRT, SIGTRAP, SIGSEGV, SIGBUS, SIGTERM, SIGINT};
static bool handler_installed;

static int
sys_pidfd_open(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int
sys_pidfd_kill(int pidfd, int sig)
{
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

/* Parse a decimal number from s (up to a non-digit); -1 when none. */
static long
parse_ulong(const char *s, const char **end)
{
    long v = 0;

    if (*s < '0' || *s > '9')
        return -1;
    while (*s >= '0' && *s <= '9') {
        v = v * 10 + (*s - '0');
        s++;
    }
    if (end)
        *end = s;
    return v;
}

/* The children of parent that are not zombies, with system calls only
 * (the abort handler uses it): up to max pids into out; their number. */
static int
proc_children(pid_t parent, pid_t *out, int max)
{
    char buf[4096];
    int n = 0;
    int dfd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (dfd < 0)
        return 0;
    for (;;) {
        long nread = syscall(SYS_getdents64, dfd, buf, sizeof(buf));
        long off = 0;

        if (nread <= 0)
            break;
        while (off < nread) {
            /* struct linux_dirent64: ino, off, reclen, type, name */
            unsigned short reclen;
            const char *name = buf + off + 19;
            char path[64];
            char stat[512];
            const char *p;
            const char *rparen = NULL;
            long pid, ppid;
            ssize_t len;
            int fd;

            memcpy(&reclen, buf + off + 16, sizeof(reclen));
            off += reclen;
            pid = parse_ulong(name, &p);
            if (pid <= 0 || *p)
                continue;
            memcpy(path, "/proc/", 6);
            g_strlcpy(path + 6, name, sizeof(path) - 12);
            g_strlcat(path, "/stat", sizeof(path));
            fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0)
                continue;
            len = read(fd, stat, sizeof(stat) - 1);
            close(fd);
            if (len <= 0)
                continue;
            stat[len] = '\0';
            /* "pid (comm) S ppid ...": comm may hold anything, find the last ')'. */
            for (p = stat; *p; p++) {
                if (*p == ')')
                    rparen = p;
            }
            if (!rparen || rparen[1] != ' ' || !rparen[2] || rparen[3] != ' ')
                continue;
            if (rparen[2] == 'Z' || rparen[2] == 'X')
                continue;
            ppid = parse_ulong(rparen + 4, NULL);
            if (ppid == parent && n < max)
                out[n++] = (pid_t)pid;
        }
    }
    close(dfd);
    return n;
}

static void
write_str(const char *s)
{
    (void)!write(STDERR_FILENO, s, strlen(s));
}

static void
daemon_abort_handler(int sig)
{
    pid_t kids[MAX_CHILDREN];
    char buf[4096];
    size_t i;
    int k, n;

    /* The QEMUs first, while the daemons still are their parents. */
    for (i = 0; i < MAX_DAEMONS; i++) {
        if (daemon_pid[i] <= 0)
            continue;
        n = proc_children(daemon_pid[i], kids, MAX_CHILDREN);
        for (k = 0; k < n; k++)
            (void)kill(kids[k], SIGKILL);
    }
    for (i = 0; i < MAX_TRACKED; i++) {
        if (tracked_pidfd[i] > 0)
            (void)sys_pidfd_kill(tracked_pidfd[i], SIGKILL);
    }
    for (i = 0; i < MAX_DAEMONS; i++) {
        if (daemon_pid[i] > 0)
            (void)kill(daemon_pid[i], SIGKILL);
    }
    /* The daemons' logs: the story behind the failure. */
    for (i = 0; i < MAX_DAEMONS; i++) {
        ssize_t r;
        int fd;

        if (!daemon_log_path[i][0])
            continue;
        fd = open(daemon_log_path[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        write_str("\n---- handoverd log: ");
        write_str(daemon_log_path[i]);
        write_str("\n");
        while ((r = read(fd, buf, sizeof(buf))) > 0)
            (void)!write(STDERR_FILENO, buf, (size_t)r);
        close(fd);
    }
    for (i = 0; i < G_N_ELEMENTS(cleanup_signals); i++) {
        if (cleanup_signals[i] == sig) {
            sigaction(sig, &prev_action[i], NULL);
            break;
        }
    }
    raise(sig);
}

static void
handler_install(void)
{
    struct sigaction sa = {0};
    size_t i;

    if (handler_installed)
        return;
    handler_installed = true;
    for (i = 0; i < MAX_TRACKED; i++)
        tracked_pidfd[i] = -1;
    sa.sa_handler = daemon_abort_handler;
    sigemptyset(&sa.sa_mask);
    for (i = 0; i < G_N_ELEMENTS(cleanup_signals); i++)
        sigaction(cleanup_signals[i], &sa, &prev_action[i]);
}

static int
daemon_slot_add(pid_t pid, const char *log)
{
    int i;

    for (i = 0; i < MAX_DAEMONS; i++) {
        if (daemon_pid[i] == 0) {
            g_strlcpy(daemon_log_path[i], log, sizeof(daemon_log_path[i]));
            daemon_pid[i] = pid;
            return i;
        }
    }
    g_error("more than %d daemons", MAX_DAEMONS);
}

static void
daemon_slot_clear(int slot)
{
    if (slot < 0)
        return;
    daemon_pid[slot] = 0;
    daemon_log_path[slot][0] = '\0';
}

void
test_daemon_track_pid(pid_t pid)
{
    int fd;
    int i;

    handler_install();
    g_assert_cmpint(pid, >, 1);
    for (i = 0; i < MAX_TRACKED; i++) {
        if (tracked_pid[i] == pid)
            return;
    }
    fd = sys_pidfd_open(pid);
    if (fd < 0) {
        g_assert_cmpint(errno, ==, ESRCH); /* already gone */
        return;
    }
    for (i = 0; i < MAX_TRACKED; i++) {
        if (tracked_pidfd[i] < 0) {
            tracked_pid[i] = pid;
            tracked_pidfd[i] = fd;
            return;
        }
    }
    g_error("more than %d processes tracked", MAX_TRACKED);
}

static bool
pidfd_wait(int pidfd, guint timeout_ms)
{
    struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;

    for (;;) {
        gint64 left = (deadline - g_get_monotonic_time()) / 1000;
        int rc;

        rc = poll(&pfd, 1, left > 0 ? (int)left : 0);
        if (rc > 0)
            return true;
        if (rc == 0)
            return false;
        if (errno != EINTR)
            g_error("poll on a pidfd: %s", g_strerror(errno));
    }
}

bool
test_pid_wait_exit(pid_t pid, guint timeout_ms)
{
    int fd = sys_pidfd_open(pid);
    bool gone;

    if (fd < 0)
        return errno == ESRCH;
    gone = pidfd_wait(fd, timeout_ms);
    close(fd);
    return gone;
}

/* Kill (by pidfd) and wait for every tracked process; forget them. */
static void
kill_tracked(void)
{
    int i;

    for (i = 0; i < MAX_TRACKED; i++) {
        int fd = tracked_pidfd[i];

        if (fd < 0)
            continue;
        if (!pidfd_wait(fd, 0)) {
            (void)sys_pidfd_kill(fd, SIGKILL);
            if (!pidfd_wait(fd, EXIT_WAIT_MS))
                g_printerr("# process %d did not die\n", (int)tracked_pid[i]);
        }
        tracked_pidfd[i] = -1;
        tracked_pid[i] = 0;
        close(fd);
    }
}

/* ---- daemons ---- */

typedef struct {
    const char *netns_path;
} ChildSetup;

static void
daemon_child_setup(gpointer data)
{
    const ChildSetup *cs = data;

    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
    test_netns_enter(cs->netns_path);
}

static void
cli_child_setup(gpointer data)
{
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
}

static const char *
env_path(const char *name)
{
    const char *path = g_getenv(name);

    if (!path || !*path)
        g_error("%s is not set: run the test through meson test", name);
    return path;
}

char *
test_daemon_log(const TestDaemon *d)
{
    char *text = NULL;

    if (!g_file_get_contents(d->log_path, &text, NULL, NULL))
        return g_strdup("(no log)");
    return text;
}

void
test_daemon_dump_log(const TestDaemon *d)
{
    g_autofree char *text = test_daemon_log(d);

    g_printerr("\n---- handoverd '%s' log (%s):\n%s", d->tag, d->log_path, text);
}

static char *
daemon_conf(const TestDaemon *d, const TestDaemonOpts *opts)
{
    GString *c = g_string_new("[handoverd]\n");

    if (opts->host_uuid)
        g_string_append_printf(c, "host_uuid = %s\n", opts->host_uuid);
    if (opts->listen_address)
        g_string_append_printf(c, "listen_address = %s\nlisten_port = 0\n",
                               opts->listen_address);
    if (opts->migration_address)
        g_string_append_printf(c, "migration_address = %s\n", opts->migration_address);
    if (opts->migration_port_min > 0) {
        g_string_append_printf(c, "migration_port_min = %d\nmigration_port_max = %d\n",
                               opts->migration_port_min, opts->migration_port_max);
    }
    if (opts->default_emulator)
        g_string_append_printf(c, "default_emulator = %s\n", opts->default_emulator);
    if (d->record_path)
        g_string_append_printf(c, "record_qmp = %s\n", d->record_path);
    if (opts->extra_conf)
        g_string_append_printf(c, "%s\n", opts->extra_conf);
    return g_string_free(c, FALSE);
}

/* The TCP port the daemon logged ("listening for peer daemons on A port N"). */
static int
daemon_learn_port(const TestDaemon *d)
{
    g_autofree char *log = test_daemon_log(d);
    g_autoptr(GRegex) re = g_regex_new("listening for peer daemons on \\S+ port ([0-9]+)", 0, 0,
                                       NULL);
    g_autoptr(GMatchInfo) mi = NULL;
    g_autofree char *num = NULL;

    if (!g_regex_match(re, log, 0, &mi))
        g_error("handoverd '%s' did not log its TCP port; its log:\n%s", d->tag, log);
    num = g_match_info_fetch(mi, 1);
    return atoi(num);
}

TestDaemon *
test_daemon_start(const TestDaemonOpts *opts)
{
    TestDaemon *d = g_new0(TestDaemon, 1);
    g_autoptr(GError) gerr = NULL;
    g_autofree char *conf = NULL;
    GString *got = g_string_new(NULL);
    ChildSetup cs = {.netns_path = opts->netns_path};
    int pipefd[2];
    int logfd;
    int source_fds[1];
    int target_fds[1] = {3};
    const char *argv[] = {env_path("HANDOVERD"), "--root", NULL, "--ready-fd", "3",
                          "--log-level", "info", "--config", NULL, NULL};

    handler_install();
    d->tag = g_strdup(opts->tag ? opts->tag : "daemon");
    d->root = test_make_tmpdir(d->tag);
    d->socket_path = g_build_filename(d->root, "run", "handoverd.sock", NULL);
    d->uri = g_strdup_printf("handover+unix:///system?socket=%s", d->socket_path);
    d->log_path = g_build_filename(d->root, "handoverd.log", NULL);
    d->conf_path = g_build_filename(d->root, "handoverd.conf", NULL);
    if (opts->record)
        d->record_path = g_build_filename(d->root, "qmp.rec", NULL);
    d->host_uuid = g_strdup(opts->host_uuid);
    d->listen_address = g_strdup(opts->listen_address);
    d->pidfd = -1;
    d->slot = -1;
    conf = daemon_conf(d, opts);
    g_assert_true(g_file_set_contents(d->conf_path, conf, -1, NULL));
    argv[2] = d->root;
    argv[8] = d->conf_path;
    /* More detail when debugging a failure: HANDOVER_TEST_DAEMON_LOG_LEVEL=debug. */
    if (g_getenv("HANDOVER_TEST_DAEMON_LOG_LEVEL"))
        argv[6] = g_getenv("HANDOVER_TEST_DAEMON_LOG_LEVEL");

    g_assert_cmpint(pipe2(pipefd, O_CLOEXEC), ==, 0);
    logfd = open(d->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    g_assert_cmpint(logfd, >=, 0);
    source_fds[0] = pipefd[1];
    if (!g_spawn_async_with_pipes_and_fds(NULL, argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD,
                                          daemon_child_setup, &cs, -1, logfd, logfd, source_fds,
                                          target_fds, 1, &d->pid, NULL, NULL, NULL, &gerr))
        g_error("cannot start %s: %s", argv[0], gerr->message);
    close(pipefd[1]);
    close(logfd);
    d->pidfd = sys_pidfd_open(d->pid);
    g_assert_cmpint(d->pidfd, >=, 0);
    d->slot = daemon_slot_add(d->pid, d->log_path);

    /* READY, or EOF when it gave up. */
    for (;;) {
        struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
        char buf[64];
        ssize_t r;
        int rc = poll(&pfd, 1, READY_WAIT_MS);

        if (rc < 0 && errno == EINTR)
            continue;
        if (rc == 0) {
            g_autofree char *text = test_daemon_log(d);

            g_error("handoverd '%s' not ready in %d ms; its log:\n%s", d->tag, READY_WAIT_MS,
                    text);
        }
        r = read(pipefd[0], buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        g_string_append_len(got, buf, r);
    }
    close(pipefd[0]);
    if (!g_str_equal(got->str, "READY\n")) {
        g_autofree char *text = test_daemon_log(d);

        g_error("handoverd '%s' wrote '%s' instead of READY; config:\n%s\nlog:\n%s", d->tag,
                got->str, conf, text);
    }
    g_string_free(got, TRUE);
    if (opts->listen_address) {
        d->listen_port = daemon_learn_port(d);
        if (strchr(opts->listen_address, ':'))
            d->peer_uri = g_strdup_printf("handover+tcp://[%s]:%d/system", opts->listen_address,
                                          d->listen_port);
        else
            d->peer_uri = g_strdup_printf("handover+tcp://%s:%d/system", opts->listen_address,
                                          d->listen_port);
    }
    return d;
}

bool
test_daemon_alive(TestDaemon *d)
{
    if (d->exited)
        return false;
    if (!pidfd_wait(d->pidfd, 0))
        return true;
    g_assert_cmpint(waitpid(d->pid, &d->status, 0), ==, d->pid);
    d->exited = true;
    return false;
}

GArray *
test_daemon_children(const TestDaemon *d)
{
    pid_t kids[MAX_CHILDREN];
    int n = d->exited ? 0 : proc_children(d->pid, kids, MAX_CHILDREN);
    GArray *arr = g_array_sized_new(FALSE, FALSE, sizeof(pid_t), (guint)n);

    g_array_append_vals(arr, kids, (guint)n);
    return arr;
}

void
test_daemon_free(TestDaemon *d)
{
    g_autoptr(GArray) kids = NULL;
    g_autofree char *text = NULL;
    guint i;

    if (!d)
        return;
    /* Its QEMUs survive it: hold them by pidfd before it goes. */
    kids = test_daemon_children(d);
    for (i = 0; i < kids->len; i++)
        test_daemon_track_pid(g_array_index(kids, pid_t, i));
    if (test_daemon_alive(d)) {
        (void)sys_pidfd_kill(d->pidfd, SIGTERM);
        if (!pidfd_wait(d->pidfd, EXIT_WAIT_MS)) {
            g_printerr("# handoverd '%s' did not exit on SIGTERM\n", d->tag);
            (void)sys_pidfd_kill(d->pidfd, SIGKILL);
            (void)pidfd_wait(d->pidfd, EXIT_WAIT_MS);
        }
        (void)test_daemon_alive(d);
    }
    kill_tracked();
    daemon_slot_clear(d->slot);
    if (d->pidfd >= 0)
        close(d->pidfd);
    /* Under ASan/UBSan the daemon reports into its log, not our status. */
    text = test_daemon_log(d);
    if (strstr(text, "runtime error:") || strstr(text, "Sanitizer"))
        g_error("sanitizer report in the log of handoverd '%s':\n%s", d->tag, text);
    g_free(d->tag);
    g_free(d->root);
    g_free(d->socket_path);
    g_free(d->uri);
    g_free(d->log_path);
    g_free(d->conf_path);
    g_free(d->record_path);
    g_free(d->host_uuid);
    g_free(d->listen_address);
    g_free(d->peer_uri);
    g_free(d);
}

/* ---- the CLI ---- */

struct _TestCliJob {
    GPid pid;
    int pidfd;
    bool exited;
    int status;
    char *out_path;
    char *err_path;
    char *cmdline; /* for messages */
};

void
test_cli_result_clear(TestCliResult *r)
{
    g_clear_pointer(&r->out, g_free);
    g_clear_pointer(&r->err, g_free);
}

static const char *
cli_dir(void)
{
    static char *dir;

    if (!dir)
        dir = test_make_tmpdir("cli");
    return dir;
}

TestCliJob *
test_cli_spawn(const TestDaemon *d, const char *const *args)
{
    static guint counter;
    TestCliJob *job = g_new0(TestCliJob, 1);
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autoptr(GError) gerr = NULL;
    guint n = ++counter;
    int outfd, errfd;

    job->out_path = g_strdup_printf("%s/cli%u.out", cli_dir(), n);
    job->err_path = g_strdup_printf("%s/cli%u.err", cli_dir(), n);
    g_ptr_array_add(argv, (char *)env_path("HANDOVER"));
    if (d) {
        g_ptr_array_add(argv, (char *)"-c");
        g_ptr_array_add(argv, d->uri);
    }
    for (; *args; args++)
        g_ptr_array_add(argv, (char *)*args);
    g_ptr_array_add(argv, NULL);
    job->cmdline = g_strjoinv(" ", (char **)argv->pdata);
    outfd = open(job->out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    errfd = open(job->err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    g_assert_cmpint(outfd, >=, 0);
    g_assert_cmpint(errfd, >=, 0);
    if (!g_spawn_async_with_pipes_and_fds(NULL, (const char *const *)argv->pdata, NULL,
                                          G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDIN_FROM_DEV_NULL,
                                          cli_child_setup, NULL, -1, outfd, errfd, NULL, NULL, 0,
                                          &job->pid, NULL, NULL, NULL, &gerr))
        g_error("cannot run handover: %s", gerr->message);
    close(outfd);
    close(errfd);
    job->pidfd = sys_pidfd_open(job->pid);
    g_assert_cmpint(job->pidfd, >=, 0);
    return job;
}

static char *
read_file(const char *path)
{
    char *text = NULL;

    if (!g_file_get_contents(path, &text, NULL, NULL))
        return g_strdup("");
    return text;
}

bool
test_cli_job_wait(TestCliJob *job, guint timeout_ms, TestCliResult *r)
{
    if (!job->exited) {
        if (!pidfd_wait(job->pidfd, timeout_ms))
            return false;
        g_assert_cmpint(waitpid(job->pid, &job->status, 0), ==, job->pid);
        job->exited = true;
    }
    if (r) {
        test_cli_result_clear(r);
        if (WIFEXITED(job->status))
            r->status = WEXITSTATUS(job->status);
        else
            r->status = 128 + WTERMSIG(job->status);
        r->out = read_file(job->out_path);
        r->err = read_file(job->err_path);
    }
    return true;
}

void
test_cli_job_finish(TestCliJob *job, TestCliResult *r, const char *what, guint timeout_ms)
{
    if (!test_cli_job_wait(job, timeout_ms, r))
        g_error("'%s' did not end in %u ms", what, timeout_ms);
}

int
test_cli_job_pidfd(const TestCliJob *job)
{
    return job->pidfd;
}

void
test_cli_job_signal(TestCliJob *job, int sig)
{
    g_assert_false(job->exited);
    g_assert_cmpint(sys_pidfd_kill(job->pidfd, sig), ==, 0);
}

char *
test_cli_job_stdout(const TestCliJob *job)
{
    return read_file(job->out_path);
}

void
test_cli_job_free(TestCliJob *job)
{
    if (!job)
        return;
    if (!job->exited) {
        (void)sys_pidfd_kill(job->pidfd, SIGKILL);
        if (pidfd_wait(job->pidfd, EXIT_WAIT_MS))
            (void)waitpid(job->pid, &job->status, 0);
    }
    close(job->pidfd);
    g_free(job->out_path);
    g_free(job->err_path);
    g_free(job->cmdline);
    g_free(job);
}

void
test_cli_run(const TestDaemon *d, TestCliResult *r, const char *const *args)
{
    g_autoptr(TestCliJob) job = test_cli_spawn(d, args);

    if (!test_cli_job_wait(job, CLI_WAIT_MS, r))
        g_error("'%s' did not end in %d ms", job->cmdline, CLI_WAIT_MS);
}

char *
test_cli_ok(const TestDaemon *d, const char *const *args)
{
    g_auto(TestCliResult) r = {0};

    test_cli_run(d, &r, args);
    if (r.status != 0) {
        g_autofree char *joined = g_strjoinv(" ", (char **)args);

        g_error("'handover %s' exited %d\nstdout:\n%s\nstderr:\n%s", joined, r.status, r.out,
                r.err);
    }
    return g_steal_pointer(&r.out);
}

json_object *
test_daemon_list(const TestDaemon *d, bool all)
{
    g_autofree char *out = all ? TEST_CLI_OK(d, "list", "--all", "--json")
                               : TEST_CLI_OK(d, "list", "--json");
    json_object *arr = ho_json_parse(out, strlen(out));

    if (!arr || !json_object_is_type(arr, json_type_array))
        g_error("'list --json' printed no JSON array: %s", out);
    return arr;
}

json_object *
test_daemon_list_emptied(const TestDaemon *d, guint timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;

    for (;;) {
        json_object *arr = test_daemon_list(d, true);

        if (json_object_array_length(arr) == 0 || g_get_monotonic_time() >= deadline)
            return arr;
        json_object_put(arr);
        g_usleep(20 * 1000);
    }
}

char *
test_daemon_domain_state(const TestDaemon *d, const char *name)
{
    g_autoptr(json_object) arr = test_daemon_list(d, true);
    size_t i;

    for (i = 0; i < json_object_array_length(arr); i++) {
        json_object *dom = json_object_array_get_idx(arr, i);
        const char *n = NULL;
        const char *state = NULL;

        if (ho_json_get_string(dom, "name", &n) == 0 && g_str_equal(n, name) &&
            ho_json_get_string(dom, "state", &state) == 0)
            return g_strdup(state);
    }
    return NULL;
}

pid_t
test_daemon_define_start(const TestDaemon *d, const char *xml_path, const char *name)
{
    pid_t pid;

    g_free(TEST_CLI_OK(d, "define", xml_path));
    g_free(TEST_CLI_OK(d, "start", name));
    pid = test_daemon_domain_pid(d, name);
    g_assert_cmpint(pid, >, 0);
    return pid;
}

void
test_daemon_assert_state(const TestDaemon *d, const char *name, const char *where,
                         const char *want)
{
    g_autofree char *state = test_daemon_domain_state(d, name);

    if (g_strcmp0(state, want) != 0)
        g_error("'%s' on the %s: state %s, expected %s", name, where,
                state ? state : "(not there)", want ? want : "(not there)");
}

pid_t
test_daemon_domain_pid(const TestDaemon *d, const char *name)
{
    g_autofree char *out = TEST_CLI_OK(d, "dominfo", "--json", name);
    g_autoptr(json_object) info = ho_json_parse(out, strlen(out));
    int64_t pid = 0;

    if (!info)
        g_error("'dominfo --json %s' printed no JSON: %s", name, out);
    g_assert_cmpint(ho_json_opt_int64(info, "pid", &pid), >=, 0);
    if (pid > 0)
        test_daemon_track_pid((pid_t)pid);
    return (pid_t)pid;
}

/* ---- a daemon killed and started again (helper Q2) ---- */

/* The TCP port the daemon logged after offset bytes of its log. */
static int
daemon_learn_port_after(const TestDaemon *d, gsize offset)
{
    g_autofree char *log = test_daemon_log(d);
    g_autoptr(GRegex) re = g_regex_new("listening for peer daemons on \\S+ port ([0-9]+)", 0, 0,
                                       NULL);
    g_autoptr(GMatchInfo) mi = NULL;
    g_autofree char *num = NULL;

    if (strlen(log) < offset || !g_regex_match(re, log + offset, 0, &mi))
        g_error("handoverd '%s' did not log its TCP port after its restart; its log:\n%s",
                d->tag, log);
    num = g_match_info_fetch(mi, 1);
    return atoi(num);
}

void
test_daemon_kill9(TestDaemon *d)
{
    g_autoptr(GArray) kids = test_daemon_children(d);
    bool alive;
    guint i;

    /* Its QEMUs survive it and are no longer its children afterwards:
     * hold them by pidfd so that cleanup still finds them. */
    for (i = 0; i < kids->len; i++)
        test_daemon_track_pid(g_array_index(kids, pid_t, i));
    alive = test_daemon_alive(d);
    g_assert_true(alive);
    g_assert_cmpint(sys_pidfd_kill(d->pidfd, SIGKILL), ==, 0);
    if (!pidfd_wait(d->pidfd, EXIT_WAIT_MS))
        g_error("handoverd '%s' did not die on SIGKILL", d->tag);
    alive = test_daemon_alive(d);
    g_assert_false(alive);
    g_assert_true(WIFSIGNALED(d->status) && WTERMSIG(d->status) == SIGKILL);
    daemon_slot_clear(d->slot);
    d->slot = -1;
    close(d->pidfd);
    d->pidfd = -1;
}

void
test_daemon_restart(TestDaemon *d, const char *netns_path)
{
    g_autoptr(GError) gerr = NULL;
    GString *got = g_string_new(NULL);
    ChildSetup cs = {.netns_path = netns_path};
    struct stat st;
    gsize log_offset;
    int pipefd[2];
    int logfd;
    int source_fds[1];
    int target_fds[1] = {3};
    const char *argv[] = {env_path("HANDOVERD"), "--root", d->root, "--ready-fd", "3",
                          "--log-level", "info", "--config", d->conf_path, NULL};

    if (!d->exited)
        test_daemon_kill9(d);
    if (g_getenv("HANDOVER_TEST_DAEMON_LOG_LEVEL"))
        argv[6] = g_getenv("HANDOVER_TEST_DAEMON_LOG_LEVEL");
    log_offset = stat(d->log_path, &st) == 0 ? (gsize)st.st_size : 0;
    g_assert_cmpint(pipe2(pipefd, O_CLOEXEC), ==, 0);
    logfd = open(d->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    g_assert_cmpint(logfd, >=, 0);
    source_fds[0] = pipefd[1];
    if (!g_spawn_async_with_pipes_and_fds(NULL, argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD,
                                          daemon_child_setup, &cs, -1, logfd, logfd, source_fds,
                                          target_fds, 1, &d->pid, NULL, NULL, NULL, &gerr))
        g_error("cannot start %s: %s", argv[0], gerr->message);
    close(pipefd[1]);
    close(logfd);
    d->exited = false;
    d->status = 0;
    d->pidfd = sys_pidfd_open(d->pid);
    g_assert_cmpint(d->pidfd, >=, 0);
    d->slot = daemon_slot_add(d->pid, d->log_path);

    for (;;) {
        struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
        char buf[64];
        ssize_t r;
        int rc = poll(&pfd, 1, READY_WAIT_MS);

        if (rc < 0 && errno == EINTR)
            continue;
        if (rc == 0) {
            g_autofree char *text = test_daemon_log(d);

            g_error("restarted handoverd '%s' not ready in %d ms; its log:\n%s", d->tag,
                    READY_WAIT_MS, text);
        }
        r = read(pipefd[0], buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        g_string_append_len(got, buf, r);
    }
    close(pipefd[0]);
    if (!g_str_equal(got->str, "READY\n")) {
        g_autofree char *text = test_daemon_log(d);

        g_error("restarted handoverd '%s' wrote '%s' instead of READY; log:\n%s", d->tag,
                got->str, text);
    }
    g_string_free(got, TRUE);
    if (d->listen_address) {
        d->listen_port = daemon_learn_port_after(d, log_offset);
        g_free(d->peer_uri);
        if (strchr(d->listen_address, ':'))
            d->peer_uri = g_strdup_printf("handover+tcp://[%s]:%d/system", d->listen_address,
                                          d->listen_port);
        else
            d->peer_uri = g_strdup_printf("handover+tcp://%s:%d/system", d->listen_address,
                                          d->listen_port);
    }
}
