/*
 * A daemon killed during a CPR transfer (issue 6, DESIGN.md §2 invariant
 * 5), on real QEMU 10.0 through handoverd and the CLI.
 *
 * The domain's emulator is a wrapper script around QEMU 10.0 that holds
 * only the CPR transfer's new QEMU (its command line names the CPR
 * channel): it says so on a fifo, then blocks opening another fifo that
 * nobody writes. So the job sits in PREPARE with the new process spawned
 * and recorded, the old QEMU running the guest. Then handoverd is
 * SIGKILLed and started again on the same root. The restarted daemon must
 * find the job, kill the held new process (no orphan), leave the guest
 * running in its old QEMU (same pid, running) and end the job failed,
 * saying why.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ho_error.h"
#include "ho_json.h"
#include "testdaemon.h"
#include "testqemu.h"
#include "testutils.h"

#define HELD_WAIT_MS (120 * 1000)
#define EXIT_WAIT_MS (60 * 1000)
#define JOB_END_WAIT_MS (60 * 1000)
#define JOB_POLL_MS 100

static char *
write_wrapper(const char *dir, const char *qemu)
{
    g_autofree char *ready = g_build_filename(dir, "held", NULL);
    g_autofree char *never = g_build_filename(dir, "never", NULL);
    g_autofree char *text = NULL;
    char *path = g_build_filename(dir, "qemu-held.sh", NULL);

    g_assert_cmpint(mkfifo(ready, 0600), ==, 0);
    g_assert_cmpint(mkfifo(never, 0600), ==, 0);
    text = g_strdup_printf("#!/bin/sh\n"
                           "# QEMU 10.0, except that the new QEMU of a CPR transfer is held.\n"
                           "case \"$*\" in\n"
                           "*'\"channel-type\":\"cpr\"'*)\n"
                           "    echo \"held $$\" > '%s'\n"
                           "    : < '%s'\n"
                           "    ;;\n"
                           "esac\n"
                           "exec '%s' \"$@\"\n",
                           ready, never, qemu);
    g_assert_true(g_file_set_contents(path, text, -1, NULL));
    g_assert_cmpint(chmod(path, 0755), ==, 0);
    return path;
}

static char *
domain_xml(const char *dir, const char *emulator)
{
    g_autofree char *text =
        g_strdup_printf("<domain type='qemu'>\n"
                        "  <name>cpr</name>\n"
                        "  <uuid>5c1d2e3f-4a5b-4c6d-8e7f-8091a2b3c4d5</uuid>\n"
                        "  <memory unit='MiB'>64</memory>\n"
                        "  <memoryBacking>\n"
                        "    <source type='memfd'/>\n"
                        "    <access mode='shared'/>\n"
                        "  </memoryBacking>\n"
                        "  <os><type arch='x86_64' machine='pc'>hvm</type></os>\n"
                        "  <devices><emulator>%s</emulator></devices>\n"
                        "</domain>\n",
                        emulator);
    char *path = g_build_filename(dir, "cpr.xml", NULL);

    g_assert_true(g_file_set_contents(path, text, -1, NULL));
    return path;
}

/* The pid the wrapper reports once it holds the new QEMU (bounded). */
static pid_t
wait_held(const char *dir)
{
    g_autofree char *ready = g_build_filename(dir, "held", NULL);
    struct pollfd pfd;
    char buf[64] = {0};
    ssize_t n;
    int fd = open(ready, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    int pid = 0;

    g_assert_cmpint(fd, >=, 0);
    pfd.fd = fd;
    pfd.events = POLLIN;
    pfd.revents = 0;
    if (poll(&pfd, 1, HELD_WAIT_MS) != 1)
        g_error("the CPR transfer's new QEMU was not spawned within %d s", HELD_WAIT_MS / 1000);
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    g_assert_cmpint(n, >, 0);
    g_assert_cmpint(sscanf(buf, "held %d", &pid), ==, 1);
    g_assert_cmpint(pid, >, 0);
    return (pid_t)pid;
}

/* Whether the domain's status file records pid as the CPR transfer's new
 * QEMU. */
static bool
status_names_new(const char *status, pid_t pid)
{
    g_autofree char *text = NULL;
    g_autofree char *want = g_strdup_printf("\"cpr_new_pid\":%d,", (int)pid);

    return g_file_get_contents(status, &text, NULL, NULL) && strstr(text, want);
}

/* Wait (inotify on the status directory, bounded) until the daemon has
 * recorded the new QEMU: the wrapper reports before the spawn returned in
 * the daemon, and a daemon killed in between has nothing to find. */
static void
wait_recorded(const TestDaemon *d, pid_t pid)
{
    g_autofree char *dir = g_build_filename(d->root, "run", "domains", NULL);
    g_autofree char *status = g_build_filename(dir, "cpr.json", NULL);
    gint64 deadline = g_get_monotonic_time() + (gint64)HELD_WAIT_MS * 1000;
    int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(inotify_add_watch(fd, dir, IN_MOVED_TO | IN_CLOSE_WRITE), >=, 0);
    while (!status_names_new(status, pid)) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        gint64 left = (deadline - g_get_monotonic_time()) / 1000;
        char buf[4096];

        if (left <= 0 || poll(&pfd, 1, (int)left) != 1)
            g_error("the daemon did not record the new QEMU %d within %d s", (int)pid,
                    HELD_WAIT_MS / 1000);
        while (read(fd, buf, sizeof(buf)) > 0)
            ;
    }
    close(fd);
}

/* domjobinfo --completed --json once the recovered job ended; the daemon
 * has no event for that, so a bounded poll. */
static json_object *
wait_completed_job(const TestDaemon *d)
{
    for (guint waited = 0; waited < JOB_END_WAIT_MS; waited += JOB_POLL_MS) {
        g_auto(TestCliResult) r = {0};
        g_autoptr(json_object) info = NULL;
        const char *phase = NULL;

        TEST_CLI(&r, d, "domjobinfo", "--completed", "--json", "cpr");
        if (r.status == 0 && (info = ho_json_parse(r.out, strlen(r.out))) &&
            ho_json_opt_string(info, "phase", &phase) > 0 && g_strcmp0(phase, "failed") == 0)
            return g_steal_pointer(&info);
        ho_error_reset();
        g_usleep(JOB_POLL_MS * 1000);
    }
    g_error("the CPR job did not end within %d s of the restart", JOB_END_WAIT_MS / 1000);
    return NULL;
}

static void
test_restart_in_prepare(void)
{
    const TestQemuBinary *bin = test_qemu_need("qemu-10.0");
    g_autofree char *dir = NULL;
    g_autofree char *wrapper = NULL;
    g_autofree char *xml = NULL;
    g_autofree char *state = NULL;
    g_autoptr(TestDaemon) d = NULL;
    g_autoptr(TestCliJob) job = NULL;
    g_autoptr(json_object) info = NULL;
    g_auto(TestCliResult) r = {0};
    TestDaemonOpts opts = {0};
    const char *msg = NULL;
    pid_t old_pid, held;

    if (!bin)
        return;
    dir = test_make_tmpdir("cprrestart");
    wrapper = write_wrapper(dir, bin->binary);
    xml = domain_xml(dir, wrapper);
    opts.tag = "cpr";
    opts.default_emulator = wrapper;
    d = test_daemon_start(&opts);
    g_free(TEST_CLI_OK(d, "define", xml));
    g_free(TEST_CLI_OK(d, "start", "cpr"));
    old_pid = test_daemon_domain_pid(d, "cpr");
    g_assert_cmpint(old_pid, >, 0);

    job = test_cli_spawn(d, (const char *const[]){"migrate", "--mode", "cpr-transfer", "cpr",
                                                  NULL});
    held = wait_held(dir);
    test_daemon_track_pid(held);
    wait_recorded(d, held);
    g_test_message("the new QEMU (pid %d) is held; killing the daemon", (int)held);
    test_daemon_kill9(d);
    if (!test_cli_job_wait(job, EXIT_WAIT_MS, &r))
        g_error("handover migrate --mode cpr-transfer did not end with its daemon");
    g_assert_cmpint(r.status, !=, 0);
    g_assert_true(kill(held, 0) == 0); /* nobody ended it yet */

    test_daemon_restart(d, NULL);
    /* The restarted daemon ends the held process... */
    if (!test_pid_wait_exit(held, EXIT_WAIT_MS))
        g_error("the restarted daemon left the CPR transfer's new QEMU %d running", (int)held);
    /* ... and the job, failed, saying why. */
    info = wait_completed_job(d);
    g_test_message("domjobinfo --completed --json: %s", json_object_to_json_string(info));
    g_assert_cmpint(ho_json_opt_string(info, "error", &msg), ==, 1);
    g_test_message("the job: %s", msg);
    g_assert_nonnull(strstr(msg, "the daemon restarted during the CPR transfer"));
    /* The guest runs on in its old QEMU. */
    g_assert_cmpint(test_daemon_domain_pid(d, "cpr"), ==, old_pid);
    state = test_daemon_domain_state(d, "cpr");
    g_assert_cmpstr(state, ==, "running");
    g_free(TEST_CLI_OK(d, "destroy", "cpr"));
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/cpr/restart/10.0/in-prepare", test_restart_in_prepare);
    return g_test_run();
}
