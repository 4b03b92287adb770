/*
 * handoverd instances for tests that need several daemons (two hosts on one
 * machine), and the `handover` CLI run against them.
 *
 * A daemon gets its own --root in a temporary directory and a generated
 * configuration (host UUID, TCP peer listener, migration address and port
 * range, emulator, flight recorder), optionally inside a network namespace
 * (testnetns.h). The test waits for its READY line on --ready-fd; the TCP
 * port it picked (listen_port = 0) is read from its log.
 *
 * Nothing outlives the test. Daemons are the test's children, started with
 * PR_SET_PDEATHSIG. Their QEMUs are not (a daemon lets its guests run on
 * when it stops), so every process whose parent is one of the daemons is
 * killed, by pidfd, when the daemon is freed, and QEMUs a test learned
 * about (test_daemon_track_pid) are killed too. The same happens from a
 * SIGABRT/SIGTRAP/SIGSEGV/SIGBUS handler when an assertion fails, and on
 * SIGTERM/SIGINT (meson's timeout); the handler also prints each daemon's
 * log to stderr, uses only system calls (no allocation) and chains to the
 * handler installed before it.
 */
#pragma once

#include <glib.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <sys/types.h>

typedef struct {
    const char *tag;               /* temp dir tag and log label */
    const char *netns_path;        /* /run/netns/NAME to run in, or NULL */
    const char *host_uuid;         /* NULL: generated */
    const char *listen_address;    /* TCP peer listener (port picked), NULL: none */
    const char *migration_address; /* NULL: the daemon's default */
    int migration_port_min;        /* 0: default */
    int migration_port_max;
    const char *default_emulator;  /* NULL: the daemon's default */
    bool record;                   /* record_qmp = ROOT/qmp.rec */
    const char *extra_conf;        /* more "key = value" lines, or NULL */
} TestDaemonOpts;

typedef struct {
    char *tag;
    char *root;
    char *socket_path;
    char *uri;          /* handover+unix:///system?socket=... */
    char *log_path;     /* its stdout and stderr */
    char *conf_path;
    char *record_path;  /* the flight recording, or NULL */
    char *host_uuid;    /* as configured, or NULL when generated */
    char *listen_address;
    int listen_port;    /* learned from the log, 0 without a listener */
    char *peer_uri;     /* handover+tcp://ADDR:PORT/system, or NULL */
    GPid pid;
    int pidfd;
    int slot;
    bool exited;
    int status; /* wait status once exited */
} TestDaemon;

/* Start a daemon and wait (bounded) for READY; aborts the test with its
 * log when it does not come. It logs at level info, or at
 * HANDOVER_TEST_DAEMON_LOG_LEVEL when that is set. */
TestDaemon *test_daemon_start(const TestDaemonOpts *opts);
/* SIGTERM, bounded wait, SIGKILL; then kill what it left running (its
 * QEMUs), free. Fails the test when its log has a sanitizer report.
 * Accepts NULL. */
void test_daemon_free(TestDaemon *d);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TestDaemon, test_daemon_free)
/* Its log (g_free it). */
char *test_daemon_log(const TestDaemon *d);
/* Print its log to stderr with a header (for failure context). */
void test_daemon_dump_log(const TestDaemon *d);
/* Whether it still runs. */
bool test_daemon_alive(TestDaemon *d);

/* Processes whose parent is the daemon and that have not exited (zombies
 * excluded): its QEMUs. */
GArray *test_daemon_children(const TestDaemon *d);
/* Remember a process (a QEMU) to be killed at cleanup and on abort. */
void test_daemon_track_pid(pid_t pid);
/* Wait up to timeout_ms for pid to exit (pidfd, no polling loop); true
 * when it is gone. */
bool test_pid_wait_exit(pid_t pid, guint timeout_ms);

/* ---- the CLI ---- */

typedef struct {
    int status; /* exit status; 128 + signal when killed */
    char *out;
    char *err;
} TestCliResult;
void test_cli_result_clear(TestCliResult *r);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(TestCliResult, test_cli_result_clear)

/* Run `handover -c d->uri ARGS` (NULL-terminated) to the end (bounded). */
void test_cli_run(const TestDaemon *d, TestCliResult *r, const char *const *args);
#define TEST_CLI(r, d, ...) test_cli_run((d), (r), (const char *const[]){__VA_ARGS__, NULL})
/* Exit 0 or the test fails showing both outputs; stdout (g_free it). */
char *test_cli_ok(const TestDaemon *d, const char *const *args);
#define TEST_CLI_OK(d, ...) test_cli_ok((d), (const char *const[]){__VA_ARGS__, NULL})

/* A CLI running in the background (handover migrate), its output in files. */
typedef struct _TestCliJob TestCliJob;
TestCliJob *test_cli_spawn(const TestDaemon *d, const char *const *args);
/* Wait up to timeout_ms for it to exit; true when it did (result filled). */
bool test_cli_job_wait(TestCliJob *job, guint timeout_ms, TestCliResult *r);
/* Wait up to timeout_ms for it to exit (result in r); the test fails,
 * naming it what ("handover migrate"), when it does not. */
void test_cli_job_finish(TestCliJob *job, TestCliResult *r, const char *what, guint timeout_ms);
/* A pidfd of the process: readable once it exited (for a GSource). */
int test_cli_job_pidfd(const TestCliJob *job);
/* Send it a signal (SIGINT: Ctrl-C). */
void test_cli_job_signal(TestCliJob *job, int sig);
/* What it wrote to stdout so far (g_free it). */
char *test_cli_job_stdout(const TestCliJob *job);
/* Kill it if it still runs; free. Accepts NULL. */
void test_cli_job_free(TestCliJob *job);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TestCliJob, test_cli_job_free)

/* `list --json [--all]`: the array (owned). */
json_object *test_daemon_list(const TestDaemon *d, bool all);
/* `list --all --json` once it is empty, or as it is after timeout_ms. A
 * domain whose QEMU was just killed leaves the list only once the daemon
 * has reaped that QEMU, a moment after the process is gone. */
json_object *test_daemon_list_emptied(const TestDaemon *d, guint timeout_ms);
/* The state of a domain in `list --all --json`, or NULL when it is not
 * listed (g_free it). */
char *test_daemon_domain_state(const TestDaemon *d, const char *name);
/* Fail the test unless test_daemon_domain_state() is want (NULL: not
 * listed); where names the host in the message ("source"). */
void test_daemon_assert_state(const TestDaemon *d, const char *name, const char *where,
                              const char *want);
/* The QEMU pid from `dominfo --json` (tracked for cleanup), 0 when it
 * does not run. */
pid_t test_daemon_domain_pid(const TestDaemon *d, const char *name);

/* `define xml_path` and `start name` on d, each to exit 0; the QEMU pid
 * (tracked for cleanup), which must be there. */
pid_t test_daemon_define_start(const TestDaemon *d, const char *xml_path, const char *name);

/* ---- a daemon killed and started again (helper Q2) ---- */

/* SIGKILL the daemon and wait for it (its QEMUs run on: they are tracked
 * for cleanup first, since they stop being its children). */
void test_daemon_kill9(TestDaemon *d);
/* Start it again on the same root and configuration, in the network
 * namespace at netns_path (NULL: none), after test_daemon_kill9() if it
 * still runs; waits (bounded) for READY. Its TCP port is picked anew:
 * listen_port and peer_uri are updated. */
void test_daemon_restart(TestDaemon *d, const char *netns_path);
