#define HO_LOG_MODULE "tests.qemu"

#include "testqemu.h"
#include "testutils.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "ho_error.h"
#include "ho_file.h"
#include "qemu_process.h"

static TestQemuBinary qemu72 = {.name = "qemu-7.2"};
static TestQemuBinary qemu100 = {.name = "qemu-10.0"};
static const TestQemuBinary *all_binaries[] = {&qemu72, &qemu100, NULL};

static void
find_qemu72(void)
{
    const char *env = g_getenv("HANDOVER_QEMU72");
    g_autofree char *path = env ? g_strdup(env) : g_find_program_in_path("qemu-system-x86_64");

    if (path && g_file_test(path, G_FILE_TEST_IS_EXECUTABLE)) {
        qemu72.binary = g_steal_pointer(&path);
        qemu72.fw_dirs = g_new0(char *, 1);
    } else {
        qemu72.missing = g_strdup("qemu-system-x86_64 is not installed (apt-get install "
                                  "qemu-system-x86), and HANDOVER_QEMU72 is not set");
    }
}

static void
find_qemu100(void)
{
    const char *env = g_getenv("HANDOVER_QEMU10_PREFIX");
    g_autofree char *prefix = env ? g_strdup(env)
                                  : g_build_filename(test_srcdir(), ".qemu", "10.0", NULL);
    g_autofree char *bin = g_build_filename(prefix, "usr", "bin", "qemu-system-x86_64", NULL);

    if (!g_file_test(bin, G_FILE_TEST_IS_EXECUTABLE)) {
        qemu100.missing = g_strdup_printf("%s not found: run scripts/fetch-qemu10.sh", bin);
        return;
    }
    qemu100.fw_dirs = qemu_process_firmware_dirs(bin);
    qemu100.binary = g_steal_pointer(&bin);
}

const TestQemuBinary *const *
test_qemu_binaries(void)
{
    static gsize once;

    if (g_once_init_enter(&once)) {
        find_qemu72();
        find_qemu100();
        g_once_init_leave(&once, 1);
    }
    return all_binaries;
}

const TestQemuBinary *
test_qemu_binary(const char *name)
{
    const TestQemuBinary *const *b;

    for (b = test_qemu_binaries(); *b; b++) {
        if (g_str_equal((*b)->name, name))
            return *b;
    }
    return NULL;
}

void
test_qemu_missing(const char *fmt, ...)
{
    g_autofree char *why = NULL;
    va_list ap;

    va_start(ap, fmt);
    why = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (g_strcmp0(g_getenv("HANDOVER_REQUIRE_QEMUS"), "1") == 0)
        g_error("required (HANDOVER_REQUIRE_QEMUS=1) but missing: %s", why);
    g_test_skip(why);
}

const TestQemuBinary *
test_qemu_need_binary(const TestQemuBinary *bin)
{
    if (bin->binary)
        return bin;
    test_qemu_missing("%s is not available: %s", bin->name, bin->missing);
    return NULL;
}

const TestQemuBinary *
test_qemu_need(const char *name)
{
    const TestQemuBinary *bin = test_qemu_binary(name);

    g_assert_nonnull(bin);
    return test_qemu_need_binary(bin);
}

const char *
test_qemu_accel(const char **why)
{
    return qemu_process_host_accel(why);
}

static void
child_exited(GPid pid, gint status, gpointer opaque)
{
    TestQemu *q = opaque;

    q->exited = true;
    q->status = status;
    g_spawn_close_pid(pid);
}

TestQemu *
test_qemu_start(const TestQemuBinary *bin, const char *accel, const char *const *extra_args)
{
    g_autoptr(TestQemu) q = g_new0(TestQemu, 1);
    QemuProcessSpawn spawn = {0};

    q->pid = -1;
    q->dir = test_make_tmpdir("qemu");
    q->qmp_path = g_build_filename(q->dir, "qmp.sock", NULL);
    q->log_path = g_build_filename(q->dir, "qemu.log", NULL);

    spawn.emulator = bin->binary;
    spawn.fw_dirs = (const char *const *)bin->fw_dirs;
    spawn.accel = accel;
    spawn.qmp_path = q->qmp_path;
    spawn.log_path = q->log_path;
    spawn.workdir = q->dir;
    spawn.extra_args = extra_args;
    spawn.die_with_parent = true; /* dies with the test, even on abort() */
    if (qemu_process_spawn(&spawn, &q->pid) < 0) {
        g_test_message("%s", ho_error_last_message());
        q->pid = -1;
        return NULL;
    }
    g_child_watch_add(q->pid, child_exited, q);
    return g_steal_pointer(&q);
}

static gboolean
wait_timeout(gpointer opaque)
{
    bool *timed_out = opaque;

    *timed_out = true;
    return G_SOURCE_REMOVE;
}

bool
test_qemu_wait_exit(TestQemu *q, guint timeout_ms)
{
    bool timed_out = false;
    guint id;

    if (q->exited)
        return true;
    id = g_timeout_add(timeout_ms, wait_timeout, &timed_out);
    while (!q->exited && !timed_out)
        g_main_context_iteration(NULL, TRUE);
    if (!timed_out)
        g_source_remove(id);
    return q->exited;
}

void
test_qemu_free(TestQemu *q)
{
    if (!q)
        return;
    if (q->pid > 0 && !q->exited) {
        (void)kill(q->pid, SIGKILL);
        if (!test_qemu_wait_exit(q, 10000)) {
            /* Its child watch still points at q: leak it rather than free. */
            g_test_message("QEMU %d did not exit after SIGKILL", (int)q->pid);
            return;
        }
    }
    if (q->dir)
        (void)ho_file_remove_tree(q->dir);
    g_free(q->dir);
    g_free(q->qmp_path);
    g_free(q->log_path);
    g_free(q);
}

char *
test_qemu_log(const TestQemu *q)
{
    char *data = NULL;
    size_t len;

    if (ho_file_read_all(q->log_path, 1024 * 1024, &data, &len) < 0)
        return NULL;
    return data;
}

/* ---- QEMUs to kill whatever happens ---------------------------------------- */

#define MAX_LEARNED 64
static volatile sig_atomic_t learned[MAX_LEARNED];

void
test_qemu_cleanup_learn(int pid)
{
    g_assert_cmpint(pid, >, 0);
    for (int i = 0; i < MAX_LEARNED; i++) {
        if (learned[i] == pid)
            return;
    }
    for (int i = 0; i < MAX_LEARNED; i++) {
        if (learned[i] == 0) {
            learned[i] = pid;
            return;
        }
    }
    g_error("too many QEMU pids");
}

void
test_qemu_cleanup_forget(int pid)
{
    for (int i = 0; i < MAX_LEARNED; i++) {
        if (learned[i] == pid)
            learned[i] = 0;
    }
}

/* SIGKILL pid if it is still a child of ours not yet reaped: a reaped
 * pid may belong to someone else by now. Async-signal-safe. */
static void
kill_if_our_child(pid_t pid)
{
    siginfo_t si;

    memset(&si, 0, sizeof(si));
    if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0)
        (void)kill(pid, SIGKILL);
}

void
test_qemu_cleanup_kill(void)
{
    for (int i = 0; i < MAX_LEARNED; i++) {
        if (learned[i] > 0)
            kill_if_our_child((pid_t)learned[i]);
        learned[i] = 0;
    }
}

static void
cleanup_fatal_signal(int sig)
{
    for (int i = 0; i < MAX_LEARNED; i++) {
        if (learned[i] > 0)
            kill_if_our_child((pid_t)learned[i]);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

void
test_qemu_cleanup_install(void)
{
    static const int sigs[] = {SIGABRT, SIGTRAP, SIGSEGV, SIGBUS, SIGTERM};
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = cleanup_fatal_signal;
    sigemptyset(&sa.sa_mask);
    for (guint i = 0; i < G_N_ELEMENTS(sigs); i++)
        sigaction(sigs[i], &sa, NULL);
    atexit(test_qemu_cleanup_kill);
}

int
test_qemu_spawn_learned(const QemuProcessSpawn *opts, GPid *pid, void *opaque)
{
    (void)opaque;
    if (qemu_process_spawn(opts, pid) < 0)
        return -1;
    test_qemu_cleanup_learn((int)*pid);
    return 0;
}
