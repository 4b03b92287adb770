/*
 * The `handover` CLI and libhandover against a real handoverd and real
 * QEMUs (7.2 and 10.0).
 *
 * Each test starts its own daemon with --root in a temporary directory and
 * waits for its READY line on a pipe (--ready-fd). The daemon dies with the
 * test (PR_SET_PDEATHSIG) and is killed by its pid at the end. QEMUs are
 * the daemon's children, not ours: the test learns their pids from
 * `dominfo --json` / handover_domain_get_info, holds a pidfd for each and
 * kills them through it at the end, and from a SIGABRT handler when an
 * assertion fails.
 *
 * The library is loaded with dlopen() from the build tree: that also checks
 * that it exports the public functions and nothing of the static libraries
 * linked into it.
 */
#define HO_LOG_MODULE "tests.cli"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <glib-unix.h>
#include <json-c/json.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../include/handover/handover.h"
#include "ho_json.h"
#include "ho_rpc_server.h"
#include "testqemu.h"
#include "testutils.h"

#define READY_TIMEOUT_MS 30000
#define EXIT_TIMEOUT_MS 15000
#define MAX_QEMU_PIDFDS 64

/* ---- libhandover, loaded from the build tree ---- */

#define HANDOVER_FUNCS(X) \
    X(handover_last_error) \
    X(handover_connect_open) \
    X(handover_connect_close) \
    X(handover_connect_set_timeout) \
    X(handover_connect_get_daemon_version) \
    X(handover_connect_get_hostname) \
    X(handover_connect_get_host_uuid) \
    X(handover_connect_get_capabilities) \
    X(handover_connect_get_info) \
    X(handover_domain_state_name) \
    X(handover_connect_list_domains) \
    X(handover_domain_define_xml) \
    X(handover_domain_lookup_by_name) \
    X(handover_domain_free) \
    X(handover_domain_get_name) \
    X(handover_domain_get_uuid) \
    X(handover_domain_start) \
    X(handover_domain_shutdown) \
    X(handover_domain_destroy) \
    X(handover_domain_suspend) \
    X(handover_domain_resume) \
    X(handover_domain_undefine) \
    X(handover_domain_get_info) \
    X(handover_domain_get_state) \
    X(handover_domain_get_xml_desc) \
    X(handover_connect_register_lifecycle) \
    X(handover_connect_run_events) \
    X(handover_migrate_params_init) \
    X(handover_job_info_init) \
    X(handover_domain_migrate) \
    X(handover_domain_get_job_info) \
    X(handover_domain_abort_job) \
    X(handover_domain_abort_job_flags) \
    X(handover_domain_migrate_postcopy) \
    X(handover_domain_migrate_recover) \
    X(handover_connect_register_job)

static struct {
    void *lib;
#define X(fn) __typeof__(fn) *fn;
    HANDOVER_FUNCS(X)
#undef X
} api;

static void
api_load(void)
{
    const char *builddir = g_getenv("HANDOVER_BUILDDIR");
    g_autofree char *path = NULL;

    if (api.lib)
        return;
    g_assert_nonnull(builddir);
    path = g_build_filename(builddir, "src", "libhandover", "libhandover.so", NULL);
    api.lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!api.lib)
        g_error("cannot load '%s': %s", path, dlerror());
#define X(fn) \
    api.fn = (__typeof__(fn) *)dlsym(api.lib, #fn); \
    if (!api.fn) \
        g_error("libhandover does not export '%s'", #fn);
    HANDOVER_FUNCS(X)
#undef X
}

/* Whether the last library call failed with this code; prints it if not. */
static void
assert_api_error(HandoverErrorCode code, const char *code_name, const char *needle)
{
    const HandoverError *err = api.handover_last_error();

    g_assert_nonnull(err);
    if (err->code != code || !g_str_equal(err->code_name, code_name) ||
        (needle && !strstr(err->message, needle))) {
        g_error("expected error %s containing '%s', got %s (%d): %s", code_name,
                needle ? needle : "", err->code_name, err->code, err->message);
    }
}

static void
assert_api_ok(void)
{
    const HandoverError *err = api.handover_last_error();

    if (err)
        g_error("unexpected error after a successful call: %s", err->message);
}

/* ---- QEMUs learned from the daemon ---- */

static int qemu_pidfds[MAX_QEMU_PIDFDS];
static volatile sig_atomic_t n_qemu_pidfds;

static int
pidfd_open_(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static void
pidfd_kill(int fd)
{
    (void)syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0);
}

/* A failed assertion aborts (or traps): the QEMUs must not outlive the test. */
static void
on_abort(int sig)
{
    int i;

    for (i = 0; i < n_qemu_pidfds; i++)
        pidfd_kill(qemu_pidfds[i]);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Remember a QEMU the daemon started, by a pidfd (immune to pid reuse). */
static void
learn_qemu_pid(int pid)
{
    int fd;

    g_assert_cmpint(pid, >, 1);
    g_assert_cmpint(n_qemu_pidfds, <, MAX_QEMU_PIDFDS);
    fd = pidfd_open_(pid);
    if (fd < 0) {
        /* Already gone: nothing to clean up. */
        g_assert_cmpint(errno, ==, ESRCH);
        return;
    }
    qemu_pidfds[n_qemu_pidfds] = fd;
    n_qemu_pidfds = n_qemu_pidfds + 1;
}

/* Kill every learned QEMU that is still there and wait until it exited
 * (a pidfd becomes readable at exit, before anyone reaps it). */
static void
kill_learned_qemus(void)
{
    while (n_qemu_pidfds > 0) {
        int fd = qemu_pidfds[n_qemu_pidfds - 1];
        struct pollfd pfd = {.fd = fd, .events = POLLIN};

        pidfd_kill(fd);
        if (poll(&pfd, 1, EXIT_TIMEOUT_MS) <= 0)
            g_printerr("# a QEMU did not exit after SIGKILL\n");
        n_qemu_pidfds = n_qemu_pidfds - 1;
        close(fd);
    }
}

/* ---- the daemon ---- */

typedef struct {
    char *root;
    char *socket;
    char *uri;
    char *log;      /* the daemon's stdout and stderr */
    GPid pid;
    bool exited;
} TestDaemon;

static void
die_with_parent(gpointer data)
{
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
}

static void
daemon_exited(GPid pid, gint status, gpointer opaque)
{
    TestDaemon *d = opaque;

    d->exited = true;
    g_spawn_close_pid(pid);
}

static char *
daemon_log(const TestDaemon *d)
{
    char *text = NULL;

    if (!g_file_get_contents(d->log, &text, NULL, NULL))
        return g_strdup("(no log)");
    return text;
}

static const char *
env_path(const char *name)
{
    const char *path = g_getenv(name);

    if (!path || !*path)
        g_error("%s is not set (run the test through meson test)", name);
    return path;
}

static TestDaemon *
daemon_start(void)
{
    TestDaemon *d = g_new0(TestDaemon, 1);
    g_autoptr(GError) gerr = NULL;
    int ready[2];
    int logfd;
    char line[16] = "";
    size_t got = 0;
    struct pollfd pfd;
    const char *argv[] = {env_path("HANDOVERD"), "--root", NULL, "--ready-fd", "3", NULL};
    int source_fds[1];
    int target_fds[1] = {3};

    d->root = test_make_tmpdir("clitest");
    d->socket = g_build_filename(d->root, "run", "handoverd.sock", NULL);
    d->uri = g_strdup_printf("handover+unix:///system?socket=%s", d->socket);
    d->log = g_build_filename(d->root, "daemon.log", NULL);
    argv[2] = d->root;

    if (!g_unix_open_pipe(ready, FD_CLOEXEC, &gerr))
        g_error("pipe: %s", gerr->message);
    logfd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    g_assert_cmpint(logfd, >=, 0);
    source_fds[0] = ready[1];
    if (!g_spawn_async_with_pipes_and_fds(NULL, argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD,
                                          die_with_parent, NULL, -1, logfd, logfd, source_fds,
                                          target_fds, 1, &d->pid, NULL, NULL, NULL, &gerr))
        g_error("cannot start handoverd: %s", gerr->message);
    close(ready[1]);
    close(logfd);
    g_child_watch_add_full(G_PRIORITY_DEFAULT, d->pid, daemon_exited, d, NULL);

    /* The READY line, or EOF when the daemon failed. */
    pfd.fd = ready[0];
    pfd.events = POLLIN;
    while (got < sizeof(line) - 1) {
        ssize_t n;

        if (poll(&pfd, 1, READY_TIMEOUT_MS) <= 0)
            break;
        n = read(ready[0], line + got, sizeof(line) - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
        if (memchr(line, '\n', got))
            break;
    }
    close(ready[0]);
    line[got] = '\0';
    if (!g_str_equal(line, "READY\n")) {
        g_autofree char *log = daemon_log(d);

        g_error("handoverd did not get ready (read '%s'); its output:\n%s", line, log);
    }
    return d;
}

/* Stop the daemon (SIGTERM, SIGKILL after a bound), then the QEMUs. */
static void
daemon_stop(TestDaemon *d)
{
    if (!d)
        return;
    if (!d->exited) {
        (void)kill(d->pid, SIGTERM);
        if (!test_iterate_until(NULL, &d->exited, EXIT_TIMEOUT_MS)) {
            g_printerr("# handoverd did not exit on SIGTERM\n");
            (void)kill(d->pid, SIGKILL);
            (void)test_iterate_until(NULL, &d->exited, EXIT_TIMEOUT_MS);
        }
    }
    kill_learned_qemus();
    g_free(d->root);
    g_free(d->socket);
    g_free(d->uri);
    g_free(d->log);
    g_free(d);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TestDaemon, daemon_stop)

/* ---- running the CLI ---- */

typedef struct {
    int status;   /* exit status */
    char *out;
    char *err;
} CliRun;

static void
cli_run_clear(CliRun *r)
{
    g_clear_pointer(&r->out, g_free);
    g_clear_pointer(&r->err, g_free);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(CliRun, cli_run_clear)

/* Run `handover [-c URI] ARGS...` (NULL-terminated); envp NULL: ours. */
static void
cli_runv(CliRun *r, const TestDaemon *d, char **envp, const char *const *args)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autoptr(GError) gerr = NULL;
    int wait_status = 0;

    g_ptr_array_add(argv, (char *)env_path("HANDOVER"));
    if (d) {
        g_ptr_array_add(argv, (char *)"-c");
        g_ptr_array_add(argv, d->uri);
    }
    for (; *args; args++)
        g_ptr_array_add(argv, (char *)*args);
    g_ptr_array_add(argv, NULL);
    if (!g_spawn_sync(NULL, (char **)argv->pdata, envp, G_SPAWN_DEFAULT, die_with_parent, NULL,
                      &r->out, &r->err, &wait_status, &gerr))
        g_error("cannot run handover: %s", gerr->message);
    if (!WIFEXITED(wait_status))
        g_error("handover died (wait status %d); stderr:\n%s", wait_status, r->err);
    r->status = WEXITSTATUS(wait_status);
}

#define CLI(r, d, ...) \
    cli_runv((r), (d), NULL, (const char *const[]){__VA_ARGS__, NULL})

/* Success: exit 0 and nothing on stderr; returns stdout (g_free it). */
#define CLI_OK(d, ...) cli_ok((d), (const char *const[]){__VA_ARGS__, NULL})
static char *
cli_ok(const TestDaemon *d, const char *const *args)
{
    g_auto(CliRun) r = {0};

    cli_runv(&r, d, NULL, args);
    if (r.status != 0 || *r.err) {
        g_autofree char *joined = g_strjoinv(" ", (char **)args);

        g_error("'handover %s' exited %d\nstdout:\n%s\nstderr:\n%s", joined, r.status, r.out,
                r.err);
    }
    return g_steal_pointer(&r.out);
}

/* Failure: exit 1, nothing on stdout, one "error: " message containing
 * needle; returns stderr (g_free it). */
#define CLI_FAIL(d, needle, ...) cli_fail((d), (needle), (const char *const[]){__VA_ARGS__, NULL})
static char *
cli_fail(const TestDaemon *d, const char *needle, const char *const *args)
{
    g_auto(CliRun) r = {0};

    cli_runv(&r, d, NULL, args);
    if (r.status != 1 || *r.out || !g_str_has_prefix(r.err, "error: ") ||
        (needle && !strstr(r.err, needle))) {
        g_autofree char *joined = g_strjoinv(" ", (char **)args);

        g_error("'handover %s' should fail with '%s': exited %d\nstdout:\n%s\nstderr:\n%s",
                joined, needle ? needle : "", r.status, r.out, r.err);
    }
    return g_steal_pointer(&r.err);
}

static json_object *
parse_json(const char *text)
{
    json_object *obj = ho_json_parse(text, strlen(text));

    if (!obj)
        g_error("not JSON: %s", text);
    return obj;
}

/* ---- test guests ---- */

static const char *
guest_type(void)
{
    return g_str_equal(test_qemu_accel(NULL), "kvm") ? "kvm" : "qemu";
}

/* A fixed UUID per name, so that defining a guest again updates it. */
static char *
guest_uuid(const char *name)
{
    g_autofree char *md5 = g_compute_checksum_for_string(G_CHECKSUM_MD5, name, -1);

    return g_strdup_printf("%.8s-%.4s-4%.3s-8%.3s-%.12s", md5, md5 + 8, md5 + 12, md5 + 15,
                           md5 + 18);
}

static char *
guest_xml(const char *name, const TestQemuBinary *bin)
{
    g_autofree char *uuid = guest_uuid(name);

    return g_strdup_printf("<domain type='%s'>\n"
                           "  <name>%s</name>\n"
                           "  <uuid>%s</uuid>\n"
                           "  <memory unit='MiB'>128</memory>\n"
                           "  <vcpu>1</vcpu>\n"
                           "  <os>\n"
                           "    <type arch='x86_64' machine='pc'>hvm</type>\n"
                           "  </os>\n"
                           "  <devices>\n"
                           "    <emulator>%s</emulator>\n"
                           "  </devices>\n"
                           "</domain>\n",
                           guest_type(), name, uuid, bin->binary);
}

static char *
write_guest_file(const TestDaemon *d, const char *name, const TestQemuBinary *bin)
{
    g_autofree char *xml = guest_xml(name, bin);
    g_autofree char *file = g_strdup_printf("%s/%s.xml", d->root, name);

    g_assert_true(g_file_set_contents(file, xml, -1, NULL));
    return g_steal_pointer(&file);
}

/* The machine version a QEMU's 'pc' alias resolves to. */
static const char *
concrete_machine(const TestQemuBinary *bin)
{
    return g_str_equal(bin->name, "qemu-7.2") ? "pc-i440fx-7.2" : "pc-i440fx-10.0";
}


/* `dominfo --json`, learning the QEMU's pid when it runs. */
static json_object *
cli_dominfo(const TestDaemon *d, const char *name)
{
    g_autofree char *out = CLI_OK(d, "dominfo", "--json", name);
    json_object *info = parse_json(out);
    int64_t pid = 0;

    g_assert_cmpint(ho_json_opt_int64(info, "pid", &pid), >=, 0);
    if (pid)
        learn_qemu_pid((int)pid);
    return info;
}

static void
assert_contains(const char *haystack, const char *needle)
{
    if (!strstr(haystack, needle))
        g_error("'%s' not found in:\n%s", needle, haystack);
}

static void
assert_matches(const char *text, const char *pattern)
{
    if (!g_regex_match_simple(pattern, text, G_REGEX_MULTILINE, 0))
        g_error("/%s/ does not match:\n%s", pattern, text);
}

static void
assert_domstate(const TestDaemon *d, const char *name, const char *state)
{
    g_autofree char *out = CLI_OK(d, "domstate", name);
    g_autofree char *want = g_strdup_printf("%s\n\n", state);

    g_assert_cmpstr(out, ==, want);
}

/* ---- CLI tests without a daemon ---- */

typedef struct {
    const char *name;
    const char *options[32];
} CommandOptions;

/* Every command and each of its options. */
static const CommandOptions command_options[] = {
    {"define", {NULL}},
    {"undefine", {NULL}},
    {"start", {"--paused", NULL}},
    {"shutdown", {"--timeout", NULL}},
    {"destroy", {NULL}},
    {"suspend", {NULL}},
    {"resume", {NULL}},
    {"list", {"--all", "--json", NULL}},
    {"dominfo", {"--json", NULL}},
    {"domstate", {"--reason", NULL}},
    {"dumpxml", {"--inactive", NULL}},
    {"event", {"--loop", "--timeout", NULL}},
    {"version", {NULL}},
    {"capabilities", {"--emulator", "--json", NULL}},
    {"migrate",
     {"--live", "--persistent", "--undefinesource", "--paused", "--dname", "--xml",
      "--migrateuri", "--listen-address", "--bandwidth", "--max-downtime", "--auto-converge",
      "--parallel", "--parallel-connections", "--timeout", "--timeout-abort", "--unsafe",
      "--verbose", "--record", "--copy-storage-all", "--copy-storage-inc",
      "--copy-storage-synchronous-writes", "--migrate-disks", "--disks-port", "--disks-uri",
      "--postcopy", "--postcopy-after-precopy", "--postcopy-bandwidth", "--postcopy-resume",
      "--mode", NULL}},
    {"domjobinfo", {"--completed", "--json", NULL}},
    {"domjobabort", {"--postcopy", NULL}},
    {"migrate-postcopy", {NULL}},
};

static void
test_cli_help(void)
{
    g_autofree char *top = CLI_OK(NULL, "--help");
    g_auto(GStrv) lines = g_strsplit(top, "\n", -1);
    bool in_commands = false;
    size_t listed = 0;
    size_t i, j;

    assert_contains(top, "--connect");
    assert_contains(top, "handover [OPTION");
    /* The command list of the top-level help is exactly the tested table. */
    for (i = 0; lines[i]; i++) {
        g_auto(GStrv) words = NULL;
        bool known = false;

        if (g_str_equal(lines[i], "Commands:")) {
            in_commands = true;
            continue;
        }
        if (!in_commands || !g_str_has_prefix(lines[i], "  "))
            continue;
        words = g_strsplit(g_strstrip(lines[i]), " ", 2);
        for (j = 0; j < G_N_ELEMENTS(command_options); j++)
            known |= g_str_equal(words[0], command_options[j].name);
        if (!known)
            g_error("command '%s' of 'handover --help' is not tested", words[0]);
        listed++;
    }
    g_assert_cmpuint(listed, ==, G_N_ELEMENTS(command_options));

    for (i = 0; i < G_N_ELEMENTS(command_options); i++) {
        const CommandOptions *c = &command_options[i];
        g_autofree char *out = CLI_OK(NULL, c->name, "--help");
        g_autofree char *usage = g_strdup_printf("handover %s [OPTION", c->name);

        assert_contains(out, usage);
        for (j = 0; c->options[j]; j++)
            assert_contains(out, c->options[j]);
    }
}

static void
test_cli_usage_errors(void)
{
    g_auto(CliRun) r = {0};
    g_autofree char *e1 = CLI_FAIL(NULL, "unknown command 'frobnicate'", "frobnicate");
    g_autofree char *e2 = CLI_FAIL(NULL, "Unknown option --frob", "list", "--frob");
    g_autofree char *e3 = CLI_FAIL(NULL, "start: missing DOMAIN", "start");
    g_autofree char *e4 = CLI_FAIL(NULL, "unexpected argument 'vm2'", "dominfo", "vm1", "vm2");
    g_autofree char *e5 = CLI_FAIL(NULL, "list: unexpected argument 'x'", "list", "x");
    g_autofree char *e6 = CLI_FAIL(NULL, "invalid timeout '-1'", "shutdown", "--timeout=-1",
                                   "vm1");
    g_autofree char *e7 = CLI_FAIL(NULL, "Cannot parse integer", "shutdown", "--timeout",
                                   "soon", "vm1");
    g_autofree char *e8 = CLI_FAIL(NULL, "Unknown option --frob", "--frob", "list");
    g_autofree char *e9 = CLI_FAIL(NULL, "define: missing FILE", "define");

    assert_contains(e2, "see 'handover list --help'");
    /* One line each. */
    g_assert_true(strchr(e1, '\n') == e1 + strlen(e1) - 1);
    g_assert_true(strchr(e4, '\n') == e4 + strlen(e4) - 1);

    CLI(&r, NULL, NULL);
    g_assert_cmpint(r.status, ==, 1);
    assert_contains(r.err, "error: no command given");
}

/* migrate, domjobinfo and domjobabort refuse bad arguments before they
 * connect anywhere: every message names the option and the value. */
static void
test_cli_migrate_usage(void)
{
    static const struct {
        const char *needle;
        const char *args[8];
    } cases[] = {
        {"migrate: missing DOMAIN and DEST-URI", {"migrate", NULL}},
        {"migrate: missing DEST-URI", {"migrate", "vm1", NULL}},
        {"migrate: unexpected argument 'x'", {"migrate", "vm1", "handover+tcp://h/system", "x"}},
        {"invalid value 'fast' for --bandwidth: expected an integer from 1 to 1048576",
         {"migrate", "--bandwidth", "fast", "vm1", "u"}},
        {"invalid value '0' for --bandwidth", {"migrate", "--bandwidth=0", "vm1", "u"}},
        {"invalid value '-5' for --bandwidth", {"migrate", "--bandwidth=-5", "vm1", "u"}},
        {"invalid value '2000001' for --max-downtime: expected an integer from 1 to 2000000",
         {"migrate", "--max-downtime=2000001", "vm1", "u"}},
        {"invalid value '1.5' for --max-downtime", {"migrate", "--max-downtime=1.5", "vm1", "u"}},
        {"migrate: --parallel-connections needs --parallel",
         {"migrate", "--parallel-connections=4", "vm1", "u"}},
        {"invalid value '256' for --parallel-connections: expected an integer from 1 to 255",
         {"migrate", "--parallel", "--parallel-connections=256", "vm1", "u"}},
        {"migrate: --timeout-abort needs --timeout", {"migrate", "--timeout-abort", "vm1", "u"}},
        {"invalid value '0' for --timeout", {"migrate", "--timeout=0", "vm1", "u"}},
        {"invalid value 'x' for --timeout", {"migrate", "--timeout=x", "--timeout-abort", "vm1", "u"}},
        {"invalid value '' for --dname: it must not be empty", {"migrate", "--dname=", "vm1", "u"}},
        {"cannot open '/nonexistent/d.xml'", {"migrate", "--xml", "/nonexistent/d.xml", "vm1", "u"}},
        {"migrate: --postcopy-after-precopy needs --postcopy",
         {"migrate", "--postcopy-after-precopy", "vm1", "u"}},
        {"migrate: --postcopy-bandwidth needs --postcopy",
         {"migrate", "--postcopy-bandwidth=100", "vm1", "u"}},
        {"invalid value '0' for --postcopy-bandwidth: expected an integer from 1 to 1048576",
         {"migrate", "--postcopy", "--postcopy-bandwidth=0", "vm1", "u"}},
        {"invalid value 'lots' for --postcopy-bandwidth",
         {"migrate", "--postcopy", "--postcopy-bandwidth=lots", "vm1", "u"}},
        {"migrate: --postcopy-resume cannot be used with --postcopy: the paused job goes on "
         "with the options it was started with",
         {"migrate", "--postcopy-resume", "--postcopy", "vm1", "u"}},
        {"migrate: --postcopy-resume cannot be used with --copy-storage-all",
         {"migrate", "--postcopy-resume", "--copy-storage-all", "vm1", "u"}},
        {"migrate: --postcopy-resume cannot be used with --live",
         {"migrate", "--live", "--postcopy-resume", "vm1", "u"}},
        {"migrate: --postcopy-resume cannot be used with --mode",
         {"migrate", "--postcopy-resume", "--mode=normal", "vm1", "u"}},
        {"migrate: missing DEST-URI", {"migrate", "--postcopy-resume", "vm1", NULL}},
        {"migrate: missing DOMAIN and DEST-URI", {"migrate", "--postcopy", NULL}},
        {"invalid value 'upgrade' for --mode: expected 'normal' or 'cpr-transfer'",
         {"migrate", "--mode=upgrade", "vm1"}},
        {"invalid value '' for --mode", {"migrate", "--mode=", "vm1", "u"}},
        {"migrate: --mode cpr-transfer takes no DEST-URI ('handover+tcp://h/system'): it "
         "replaces the domain's QEMU on this host",
         {"migrate", "--mode", "cpr-transfer", "vm1", "handover+tcp://h/system"}},
        {"migrate: missing DOMAIN", {"migrate", "--mode=cpr-transfer", NULL}},
        {"migrate: --mode cpr-transfer cannot be used with --postcopy",
         {"migrate", "--mode=cpr-transfer", "--postcopy", "vm1"}},
        {"migrate: --mode cpr-transfer cannot be used with --copy-storage-all",
         {"migrate", "--mode=cpr-transfer", "--copy-storage-all", "vm1"}},
        {"migrate: --mode cpr-transfer cannot be used with --migrateuri",
         {"migrate", "--mode=cpr-transfer", "--migrateuri=tcp://h:1", "vm1"}},
        {"migrate: --mode cpr-transfer cannot be used with --persistent",
         {"migrate", "--mode=cpr-transfer", "--persistent", "vm1"}},
        {"migrate-postcopy: missing DOMAIN", {"migrate-postcopy", NULL}},
        {"migrate-postcopy: unexpected argument 'b'", {"migrate-postcopy", "a", "b"}},
        {"Unknown option --frob", {"migrate-postcopy", "--frob", "a"}},
        {"domjobabort: missing DOMAIN", {"domjobabort", "--postcopy", NULL}},
        {"migrate: --copy-storage-all and --copy-storage-inc cannot be used together",
         {"migrate", "--copy-storage-all", "--copy-storage-inc", "vm1", "u"}},
        {"migrate: --copy-storage-synchronous-writes needs --copy-storage-all or "
         "--copy-storage-inc",
         {"migrate", "--copy-storage-synchronous-writes", "vm1", "u"}},
        {"migrate: --migrate-disks needs --copy-storage-all or --copy-storage-inc",
         {"migrate", "--migrate-disks=vda", "vm1", "u"}},
        {"migrate: --disks-port needs --copy-storage-all or --copy-storage-inc",
         {"migrate", "--disks-port=49200", "vm1", "u"}},
        {"migrate: --disks-uri needs --copy-storage-all or --copy-storage-inc",
         {"migrate", "--disks-uri=tcp://h:1", "vm1", "u"}},
        {"invalid value '0' for --disks-port: expected an integer from 1 to 65535",
         {"migrate", "--copy-storage-all", "--disks-port=0", "vm1", "u"}},
        {"invalid value '65536' for --disks-port",
         {"migrate", "--copy-storage-inc", "--disks-port=65536", "vm1", "u"}},
        {"invalid value 'nbd' for --disks-port",
         {"migrate", "--copy-storage-all", "--disks-port=nbd", "vm1", "u"}},
        {"migrate: --disks-port and --disks-uri cannot be used together",
         {"migrate", "--copy-storage-all", "--disks-port=1", "--disks-uri=tcp://h:2", "vm1",
          "u"}},
        {"invalid value '' for --disks-uri: it must not be empty",
         {"migrate", "--copy-storage-all", "--disks-uri=", "vm1", "u"}},
        {"invalid value 'vda,,vdb' for --migrate-disks: a disk name is empty",
         {"migrate", "--copy-storage-all", "--migrate-disks=vda,,vdb", "vm1", "u"}},
        {"invalid value 'vda,' for --migrate-disks: a disk name is empty",
         {"migrate", "--copy-storage-all", "--migrate-disks=vda,", "vm1", "u"}},
        {"invalid value '' for --migrate-disks: expected from 1 to 256 disk names",
         {"migrate", "--copy-storage-all", "--migrate-disks=", "vm1", "u"}},
        {"invalid value 'vda,vdb,vda' for --migrate-disks: disk 'vda' is named twice",
         {"migrate", "--copy-storage-all", "--migrate-disks=vda,vdb,vda", "vm1", "u"}},
        {"domjobinfo: missing DOMAIN", {"domjobinfo", NULL}},
        {"domjobinfo: unexpected argument 'b'", {"domjobinfo", "a", "b"}},
        {"Unknown option --frob", {"domjobinfo", "--frob", "a"}},
        {"domjobabort: missing DOMAIN", {"domjobabort", NULL}},
        {"domjobabort: unexpected argument 'b'", {"domjobabort", "a", "b"}},
    };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        /* A daemon URI that does not exist: argument errors come first. */
        const char *args[12] = {"-c", "handover+unix:///system?socket=/nonexistent/h.sock"};
        size_t n = 2;
        size_t j;
        g_autofree char *err = NULL;

        for (j = 0; j < G_N_ELEMENTS(cases[i].args) && cases[i].args[j]; j++)
            args[n++] = cases[i].args[j];
        args[n] = NULL;
        err = cli_fail(NULL, cases[i].needle, args);
        /* One line. */
        g_assert_true(strchr(err, '\n') == err + strlen(err) - 1);
    }
}

/* ---- migrate and domjobinfo against a fake daemon ---- */

/* A storage-copy job as a daemon reports it: what the CLI sends and how it
 * shows the disk copy, the memory copy, a warning and the switchover,
 * without QEMU. The fake daemon answers domain.info, emits the job events
 * of a migration with storage copy and answers domain.migrate and
 * domain.jobinfo with the completed job. */
typedef struct {
    json_object *params;     /* the last domain.migrate params */
    json_object *completed;  /* the job info the fake answers with */
} FakeDaemon;

#define FAKE_UUID "5b2c6a52-6a3f-4c2e-9c3a-3f0e4a1b2c3d"

static int
fake_domain_info(HoRpcCall *call, json_object *params, void *opaque)
{
    json_object *res = json_object_new_object();

    ho_json_add_string(res, "name", "vm1");
    ho_json_add_string(res, "uuid", FAKE_UUID);
    ho_json_add_string(res, "state", "running");
    ho_rpc_call_reply(call, res);
    return 0;
}

static void
fake_job_event(HoRpcServer *srv, const char *event, json_object *data)
{
    json_object *ev = json_object_new_object();

    ho_json_add_string(ev, "name", "vm1");
    ho_json_add_string(ev, "uuid", FAKE_UUID);
    ho_json_add_string(ev, "event", event);
    ho_json_add(ev, "data", data);
    ho_rpc_server_emit_event(srv, "domain.job", ev);
}

static json_object *
fake_info(const char *phase)
{
    json_object *info = json_object_new_object();

    ho_json_add_string(info, "phase", phase);
    ho_json_add_string(info, "side", "src");
    return info;
}

static HoRpcServer *fake_server;

static int
fake_domain_migrate(HoRpcCall *call, json_object *params, void *opaque)
{
    FakeDaemon *fd = opaque;
    json_object *args = NULL;
    json_object *info;

    g_clear_pointer(&fd->params, json_object_put);
    if (json_object_object_get_ex(params, "params", &args))
        fd->params = json_object_get(args);
    info = fake_info("mirror");
    fake_job_event(fake_server, "phase", info);
    info = fake_info("mirror");
    ho_json_add_int64(info, "disk_total", 1024 * 1024 * 1024);
    ho_json_add_int64(info, "disk_processed", 430 * 1024 * 1024);
    ho_json_add_int64(info, "disk_remaining", 594 * 1024 * 1024);
    fake_job_event(fake_server, "progress", info);
    fake_job_event(fake_server, "phase", fake_info("perform"));
    info = fake_info("perform");
    ho_json_add_int64(info, "memory_total", 512 * 1024 * 1024);
    ho_json_add_int64(info, "memory_processed", 256 * 1024 * 1024);
    ho_json_add_int64(info, "memory_remaining", 256 * 1024 * 1024);
    fake_job_event(fake_server, "progress", info);
    info = json_object_new_object();
    ho_json_add_string(info, "message", "this QEMU has no pause-before-switchover");
    fake_job_event(fake_server, "warning", info);
    fake_job_event(fake_server, "completed", json_object_get(fd->completed));
    ho_rpc_call_reply(call, json_object_get(fd->completed));
    return 0;
}

static int
fake_domain_jobinfo(HoRpcCall *call, json_object *params, void *opaque)
{
    FakeDaemon *fd = opaque;

    ho_rpc_call_reply(call, json_object_get(fd->completed));
    return 0;
}

static const HoRpcArgSpec fake_args_name[] = {
    {"name", HO_RPC_ARG_STRING, true},
    {"completed", HO_RPC_ARG_BOOL, false},
    {NULL},
};
static const HoRpcArgSpec fake_args_migrate[] = {
    {"name", HO_RPC_ARG_STRING, true},
    {"dest_uri", HO_RPC_ARG_STRING, true},
    {"params", HO_RPC_ARG_OBJECT, false},
    {NULL},
};
static const HoRpcMethod fake_methods[] = {
    {"domain.info", fake_domain_info, fake_args_name, HO_RPC_METHOD_LOCAL},
    {"domain.migrate", fake_domain_migrate, fake_args_migrate, HO_RPC_METHOD_LOCAL},
    {"domain.jobinfo", fake_domain_jobinfo, fake_args_name, HO_RPC_METHOD_LOCAL},
};

typedef struct {
    bool exited;
    int status;
} FakeCli;

static void
fake_cli_exited(GPid pid, gint status, gpointer opaque)
{
    FakeCli *c = opaque;

    c->exited = true;
    c->status = status;
    g_spawn_close_pid(pid);
}

static char *
read_all_fd(int fd)
{
    g_autoptr(GString) out = g_string_new(NULL);
    char buf[4096];
    ssize_t n;

    while ((n = read(fd, buf, sizeof(buf))) > 0)
        g_string_append_len(out, buf, n);
    close(fd);
    return g_string_free(g_steal_pointer(&out), FALSE);
}

/* Run the CLI while this thread's loop serves the fake daemon. */
static void
fake_cli_run(CliRun *r, const char *uri, const char *const *args)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autoptr(GError) gerr = NULL;
    FakeCli c = {0};
    GPid pid = 0;
    int out_fd = -1, err_fd = -1;

    g_ptr_array_add(argv, (char *)env_path("HANDOVER"));
    g_ptr_array_add(argv, (char *)"-c");
    g_ptr_array_add(argv, (char *)uri);
    for (; *args; args++)
        g_ptr_array_add(argv, (char *)*args);
    g_ptr_array_add(argv, NULL);
    if (!g_spawn_async_with_pipes(NULL, (char **)argv->pdata, NULL, G_SPAWN_DO_NOT_REAP_CHILD,
                                  die_with_parent, NULL, &pid, NULL, &out_fd, &err_fd, &gerr))
        g_error("cannot run handover: %s", gerr->message);
    g_child_watch_add(pid, fake_cli_exited, &c);
    if (!test_iterate_until(NULL, &c.exited, EXIT_TIMEOUT_MS)) {
        (void)kill(pid, SIGKILL);
        g_assert_true(test_iterate_until(NULL, &c.exited, EXIT_TIMEOUT_MS));
        g_error("handover did not exit");
    }
    /* Its output is small: it fits in the pipes until read here. */
    r->out = read_all_fd(out_fd);
    r->err = read_all_fd(err_fd);
    g_assert_true(WIFEXITED(c.status));
    r->status = WEXITSTATUS(c.status);
}

static void
test_cli_migrate_storage_fake(void)
{
    g_autofree char *dir = test_make_tmpdir("clitest-fake");
    g_autofree char *sock = g_build_filename(dir, "fake.sock", NULL);
    g_autofree char *uri = g_strdup_printf("handover+unix:///system?socket=%s", sock);
    json_object *hello = json_object_new_object();
    FakeDaemon fd = {0};
    g_auto(CliRun) r = {0};
    g_auto(CliRun) info = {0};
    g_auto(CliRun) json = {0};
    json_object *val = NULL;
    g_autoptr(HoRpcServer) srv = NULL;

    fd.completed = fake_info("completed");
    ho_json_add_int64(fd.completed, "memory_total", 512 * 1024 * 1024);
    ho_json_add_int64(fd.completed, "memory_processed", 512 * 1024 * 1024);
    ho_json_add_int64(fd.completed, "memory_remaining", 0);
    ho_json_add_int64(fd.completed, "disk_total", 1024 * 1024 * 1024);
    ho_json_add_int64(fd.completed, "disk_processed", 1024 * 1024 * 1024);
    ho_json_add_int64(fd.completed, "disk_remaining", 0);
    ho_json_add_int64(fd.completed, "disk_bandwidth_bps", 250 * 1024 * 1024);
    ho_json_add_int64(fd.completed, "downtime_ms", 31);
    ho_json_add_int64(fd.completed, "downtime_limit_ms", 80);
    /* Fractional milliseconds and the precise microseconds: the latter win. */
    ho_json_add(fd.completed, "switchover_ms", json_object_new_double(3.1));
    ho_json_add_int64(fd.completed, "switchover_us", 3140);
    ho_json_add(fd.completed, "switchover_qemu_ms", json_object_new_double(2.43));
    ho_json_add(fd.completed, "switchover_own_ms", json_object_new_double(0.71));
    val = json_object_new_array();
    json_object_array_add(val, json_object_new_string("this QEMU has no pause-before-switchover"));
    json_object_array_add(val, json_object_new_string("second"));
    ho_json_add(fd.completed, "warnings", val);
    val = NULL;

    ho_json_add_string(hello, "daemon", "handoverd fake");
    ho_json_add_string(hello, "hostname", "fake");
    ho_json_add_string(hello, "host_uuid", "00000000-0000-4000-8000-000000000001");
    srv = ho_rpc_server_new(fake_methods, G_N_ELEMENTS(fake_methods), &fd, hello, NULL, NULL);
    g_assert_nonnull(srv);
    fake_server = srv;
    g_assert_cmpint(ho_rpc_server_listen_unix(srv, sock, 0600), ==, 0);

    fake_cli_run(&r, uri,
                 (const char *const[]){"migrate", "--live", "--copy-storage-all",
                                       "--copy-storage-synchronous-writes",
                                       "--migrate-disks=vda,vdb", "--disks-port=49300",
                                       "--verbose", "vm1", "handover+tcp://h2/system", NULL});
    if (r.status != 0)
        g_error("migrate failed (%d):\n%s\n%s", r.status, r.out, r.err);
    /* What the daemon got: the flags as docs/protocol.md names them. */
    g_assert_nonnull(fd.params);
    g_assert_true(json_object_object_get_ex(fd.params, "copy_storage_all", &val));
    g_assert_true(json_object_get_boolean(val));
    g_assert_false(json_object_object_get_ex(fd.params, "copy_storage_inc", NULL));
    g_assert_true(json_object_object_get_ex(fd.params, "copy_storage_synchronous_writes", &val));
    g_assert_true(json_object_get_boolean(val));
    g_assert_true(json_object_object_get_ex(fd.params, "disks_port", &val));
    g_assert_cmpint(json_object_get_int(val), ==, 49300);
    g_assert_false(json_object_object_get_ex(fd.params, "disks_uri", NULL));
    g_assert_true(json_object_object_get_ex(fd.params, "migrate_disks", &val));
    g_assert_cmpstr(json_object_to_json_string_ext(val, JSON_C_TO_STRING_PLAIN), ==,
                    "[\"vda\",\"vdb\"]");
    /* Not a terminal: one line per update, the disks first, then memory. */
    g_assert_cmpstr(r.out, ==,
                    "Copying disks: [  ? %]\n"
                    "Copying disks: [ 41 %] 430 MiB of 1.0 GiB\n"
                    "Copying disks: [100 %] 1.0 GiB of 1.0 GiB\n"
                    "Migration: [  ? %] phase perform\n"
                    "Migration: [ 50 %] 256.000 MiB transferred, 256.000 MiB remaining, "
                    "phase perform\n"
                    "Migration: [100 %] 512.000 MiB transferred, 0.000 B remaining, "
                    "phase completed\n");
    /* The warning, once. */
    g_assert_cmpstr(r.err, ==, "warning: this QEMU has no pause-before-switchover\n");

    fake_cli_run(&info, uri, (const char *const[]){"domjobinfo", "--completed", "vm1", NULL});
    g_assert_cmpint(info.status, ==, 0);
    assert_contains(info.out, "Disk processed:       1.000 GiB\n");
    assert_contains(info.out, "Disk remaining:       0.000 B\n");
    assert_contains(info.out, "Disk total:           1.000 GiB\n");
    assert_contains(info.out, "Disk bandwidth:       250.000 MiB/s\n");
    assert_contains(info.out, "Downtime limit:       80           ms\n");
    assert_contains(info.out, "Switchover:           3.1 ms (QEMU 2.4 ms, handover 0.7 ms)\n");
    assert_contains(info.out,
                    "Warning:              this QEMU has no pause-before-switchover; second\n");

    fake_cli_run(&json, uri,
                 (const char *const[]){"domjobinfo", "--completed", "--json", "vm1", NULL});
    g_assert_cmpint(json.status, ==, 0);
    assert_contains(json.out, "\"switchover_us\": 3140");
    assert_contains(json.out, "\"switchover_qemu_us\": 2430");
    assert_contains(json.out, "\"disk_total\": 1073741824");
    assert_contains(json.out, "\"downtime_limit_ms\": 80");

    /* The other flags. */
    g_clear_pointer(&r.out, g_free);
    g_clear_pointer(&r.err, g_free);
    fake_cli_run(&r, uri,
                 (const char *const[]){"migrate", "--copy-storage-inc",
                                       "--disks-uri=unix:/run/nbd.sock", "vm1",
                                       "handover+tcp://h2/system", NULL});
    g_assert_cmpint(r.status, ==, 0);
    g_assert_cmpstr(r.out, ==, "");
    g_assert_true(json_object_object_get_ex(fd.params, "copy_storage_inc", &val));
    g_assert_true(json_object_get_boolean(val));
    g_assert_false(json_object_object_get_ex(fd.params, "copy_storage_all", NULL));
    g_assert_false(json_object_object_get_ex(fd.params, "migrate_disks", NULL));
    g_assert_false(json_object_object_get_ex(fd.params, "disks_port", NULL));
    g_assert_true(json_object_object_get_ex(fd.params, "disks_uri", &val));
    g_assert_cmpstr(json_object_get_string(val), ==, "unix:/run/nbd.sock");

    fake_server = NULL;
    g_clear_pointer(&srv, ho_rpc_server_free);
    json_object_put(fd.params);
    json_object_put(fd.completed);
}

/* ---- postcopy, recovery and CPR against a fake daemon ---- */

/* What the CLI sent the postcopy fake. */
typedef struct {
    json_object *params;  /* the last domain.migrate params */
    char *dest_uri;       /* the last domain.migrate or migrate_recover dest_uri, or NULL */
    bool has_dest_uri;
    int postcopy_calls;   /* domain.migrate_postcopy */
    int recover_calls;    /* domain.migrate_recover */
    int abort_calls;
    bool abort_postcopy;  /* the last jobabort's "postcopy" */
} PostcopyFake;

static void
postcopy_fake_dest(PostcopyFake *pf, json_object *params)
{
    json_object *val = NULL;

    g_clear_pointer(&pf->dest_uri, g_free);
    pf->has_dest_uri = json_object_object_get_ex(params, "dest_uri", &val);
    if (pf->has_dest_uri)
        pf->dest_uri = g_strdup(json_object_get_string(val));
}

static json_object *
postcopy_fake_completed(void)
{
    json_object *info = fake_info("completed");

    ho_json_add_int64(info, "memory_total", 512 * 1024 * 1024);
    ho_json_add_int64(info, "memory_processed", 512 * 1024 * 1024);
    ho_json_add_int64(info, "memory_remaining", 0);
    ho_json_add_int64(info, "postcopy_requests", 4242);
    ho_json_add_int64(info, "postcopy_bytes", 64 * 1024 * 1024);
    return info;
}

/* A postcopy migration that pauses (its link broke): the events a daemon
 * sends, then the answer that the job stays recoverable. A CPR transfer
 * simply completes. */
static int
postcopy_fake_migrate(HoRpcCall *call, json_object *params, void *opaque)
{
    PostcopyFake *pf = opaque;
    json_object *args = NULL;
    json_object *mode = NULL;
    json_object *info;
    g_autoptr(HoError) err = NULL;

    g_clear_pointer(&pf->params, json_object_put);
    if (json_object_object_get_ex(params, "params", &args))
        pf->params = json_object_get(args);
    postcopy_fake_dest(pf, params);
    if (args && json_object_object_get_ex(args, "mode", &mode)) {
        fake_job_event(fake_server, "completed", postcopy_fake_completed());
        ho_rpc_call_reply(call, postcopy_fake_completed());
        return 0;
    }
    fake_job_event(fake_server, "phase", fake_info("perform"));
    fake_job_event(fake_server, "phase", fake_info("postcopy"));
    info = fake_info("postcopy");
    ho_json_add_int64(info, "memory_total", 512 * 1024 * 1024);
    ho_json_add_int64(info, "memory_processed", 384 * 1024 * 1024);
    ho_json_add_int64(info, "memory_remaining", 128 * 1024 * 1024);
    ho_json_add_int64(info, "postcopy_requests", 17);
    fake_job_event(fake_server, "progress", info);
    fake_job_event(fake_server, "phase", fake_info("postcopy-paused"));
    err = ho_error_new(HO_ERR_OPERATION_INVALID, "%s",
                       "the migration of domain 'vm1' is paused in postcopy and stays "
                       "recoverable");
    ho_rpc_call_error(call, err);
    return 0;
}

/* The first recovery attempt fails (back to postcopy-paused), the second
 * completes. */
static int
postcopy_fake_recover(HoRpcCall *call, json_object *params, void *opaque)
{
    PostcopyFake *pf = opaque;
    g_autoptr(HoError) err = NULL;

    postcopy_fake_dest(pf, params);
    pf->recover_calls++;
    fake_job_event(fake_server, "phase", fake_info("postcopy-recover"));
    if (pf->recover_calls == 1) {
        fake_job_event(fake_server, "phase", fake_info("postcopy-paused"));
        err = ho_error_new(HO_ERR_QMP, "%s", "recovery failed: connection refused");
        ho_rpc_call_error(call, err);
        return 0;
    }
    fake_job_event(fake_server, "phase", fake_info("postcopy"));
    fake_job_event(fake_server, "completed", postcopy_fake_completed());
    ho_rpc_call_reply(call, postcopy_fake_completed());
    return 0;
}

static int
postcopy_fake_switch(HoRpcCall *call, json_object *params, void *opaque)
{
    ((PostcopyFake *)opaque)->postcopy_calls++;
    ho_rpc_call_reply(call, NULL);
    return 0;
}

static int
postcopy_fake_abort(HoRpcCall *call, json_object *params, void *opaque)
{
    PostcopyFake *pf = opaque;
    json_object *val = NULL;
    g_autoptr(HoError) err = NULL;

    pf->abort_calls++;
    pf->abort_postcopy = json_object_object_get_ex(params, "postcopy", &val) &&
                         json_object_get_boolean(val);
    if (pf->abort_postcopy) {
        ho_rpc_call_reply(call, NULL);
        return 0;
    }
    err = ho_error_new(HO_ERR_OPERATION_INVALID, "%s",
                       "cannot abort: the guest already runs on the destination");
    ho_rpc_call_error(call, err);
    return 0;
}

static int
postcopy_fake_jobinfo(HoRpcCall *call, json_object *params, void *opaque)
{
    json_object *info = fake_info("postcopy-paused");

    ho_json_add_int64(info, "memory_remaining", 128 * 1024 * 1024);
    ho_json_add_int64(info, "postcopy_requests", 17);
    ho_json_add_int64(info, "postcopy_bytes", 3 * 1024 * 1024);
    ho_rpc_call_reply(call, info);
    return 0;
}

static const HoRpcArgSpec postcopy_fake_args_migrate[] = {
    {"name", HO_RPC_ARG_STRING, true},
    {"dest_uri", HO_RPC_ARG_STRING, false},
    {"params", HO_RPC_ARG_OBJECT, false},
    {NULL},
};
static const HoRpcArgSpec postcopy_fake_args_recover[] = {
    {"name", HO_RPC_ARG_STRING, true},
    {"dest_uri", HO_RPC_ARG_STRING, true},
    {NULL},
};
static const HoRpcArgSpec postcopy_fake_args_abort[] = {
    {"name", HO_RPC_ARG_STRING, true},
    {"postcopy", HO_RPC_ARG_BOOL, false},
    {NULL},
};
static const HoRpcMethod postcopy_fake_methods[] = {
    {"domain.info", fake_domain_info, fake_args_name, HO_RPC_METHOD_LOCAL},
    {"domain.migrate", postcopy_fake_migrate, postcopy_fake_args_migrate, HO_RPC_METHOD_LOCAL},
    {"domain.migrate_recover", postcopy_fake_recover, postcopy_fake_args_recover,
     HO_RPC_METHOD_LOCAL},
    {"domain.migrate_postcopy", postcopy_fake_switch, fake_args_name, HO_RPC_METHOD_LOCAL},
    {"domain.jobabort", postcopy_fake_abort, postcopy_fake_args_abort, HO_RPC_METHOD_LOCAL},
    {"domain.jobinfo", postcopy_fake_jobinfo, fake_args_name, HO_RPC_METHOD_LOCAL},
};

static void
test_cli_migrate_postcopy_fake(void)
{
    g_autofree char *dir = test_make_tmpdir("clitest-postcopy");
    g_autofree char *sock = g_build_filename(dir, "fake.sock", NULL);
    g_autofree char *uri = g_strdup_printf("handover+unix:///system?socket=%s", sock);
    json_object *hello = json_object_new_object();
    PostcopyFake pf = {0};
    g_auto(CliRun) r = {0};
    json_object *val = NULL;
    g_autoptr(HoRpcServer) srv = NULL;

    ho_json_add_string(hello, "daemon", "handoverd fake");
    ho_json_add_string(hello, "hostname", "fake");
    ho_json_add_string(hello, "host_uuid", "00000000-0000-4000-8000-000000000001");
    srv = ho_rpc_server_new(postcopy_fake_methods, G_N_ELEMENTS(postcopy_fake_methods), &pf,
                            hello, NULL, NULL);
    g_assert_nonnull(srv);
    fake_server = srv;
    g_assert_cmpint(ho_rpc_server_listen_unix(srv, sock, 0600), ==, 0);

    /* A postcopy migration whose link breaks: the CLI says how to go on
     * and fails; the job lives on in the daemon. */
    fake_cli_run(&r, uri,
                 (const char *const[]){"migrate", "--live", "--postcopy",
                                       "--postcopy-after-precopy", "--postcopy-bandwidth=300",
                                       "--verbose", "vm1", "handover+tcp://h2/system", NULL});
    g_assert_cmpint(r.status, ==, 1);
    g_assert_nonnull(pf.params);
    g_assert_true(json_object_object_get_ex(pf.params, "postcopy", &val));
    g_assert_true(json_object_get_boolean(val));
    g_assert_true(json_object_object_get_ex(pf.params, "postcopy_after_precopy", &val));
    g_assert_true(json_object_get_boolean(val));
    g_assert_true(json_object_object_get_ex(pf.params, "postcopy_bandwidth_mib", &val));
    g_assert_cmpint(json_object_get_int64(val), ==, 300);
    g_assert_false(json_object_object_get_ex(pf.params, "mode", NULL));
    g_assert_cmpstr(pf.dest_uri, ==, "handover+tcp://h2/system");
    g_assert_cmpstr(r.out, ==,
                    "Migration: [  ? %] phase perform\n"
                    "Migration: postcopy: the guest runs on the destination now\n"
                    "Migration: postcopy [  ? %]\n"
                    "Migration: postcopy [ 75 %] 384.000 MiB transferred, 128.000 MiB "
                    "remaining, 17 page requests\n"
                    "Migration: postcopy paused\n");
    g_assert_cmpstr(r.err, ==,
                    "error: postcopy paused: recoverable with handover migrate "
                    "--postcopy-resume vm1 handover+tcp://h2/system\n");

    /* Without --verbose: the same ending, nothing on stdout. */
    cli_run_clear(&r);
    fake_cli_run(&r, uri,
                 (const char *const[]){"migrate", "--postcopy", "vm1",
                                       "handover+tcp://h2/system", NULL});
    g_assert_cmpint(r.status, ==, 1);
    g_assert_cmpstr(r.out, ==, "");
    assert_contains(r.err, "postcopy paused: recoverable with handover migrate "
                           "--postcopy-resume vm1 handover+tcp://h2/system\n");
    g_assert_false(json_object_object_get_ex(pf.params, "postcopy_after_precopy", NULL));
    g_assert_false(json_object_object_get_ex(pf.params, "postcopy_bandwidth_mib", NULL));

    /* domjobinfo in postcopy-paused: the postcopy statistics. */
    cli_run_clear(&r);
    fake_cli_run(&r, uri, (const char *const[]){"domjobinfo", "vm1", NULL});
    g_assert_cmpint(r.status, ==, 0);
    assert_contains(r.out, "Phase:                postcopy-paused\n");
    assert_contains(r.out, "Postcopy requests:    17\n");
    assert_contains(r.out, "Postcopy data:        3.000 MiB\n");
    assert_contains(r.out, "Postcopy:             paused, recoverable with 'handover migrate "
                           "--postcopy-resume'\n");
    cli_run_clear(&r);
    fake_cli_run(&r, uri, (const char *const[]){"domjobinfo", "--json", "vm1", NULL});
    g_assert_cmpint(r.status, ==, 0);
    assert_contains(r.out, "\"postcopy_requests\": 17");
    assert_contains(r.out, "\"postcopy_bytes\": 3145728");

    /* A failed recovery attempt: its error, and still recoverable. */
    cli_run_clear(&r);
    fake_cli_run(&r, uri,
                 (const char *const[]){"migrate", "--postcopy-resume", "--verbose", "vm1",
                                       "handover+tcp://h2/system", NULL});
    g_assert_cmpint(r.status, ==, 1);
    g_assert_cmpint(pf.recover_calls, ==, 1);
    g_assert_cmpstr(pf.dest_uri, ==, "handover+tcp://h2/system");
    g_assert_cmpstr(r.out, ==, "Migration: postcopy recovering\nMigration: postcopy paused\n");
    g_assert_cmpstr(r.err, ==,
                    "error: recovery failed: connection refused\n"
                    "error: postcopy paused: recoverable with handover migrate "
                    "--postcopy-resume vm1 handover+tcp://h2/system\n");

    /* The second attempt completes. */
    cli_run_clear(&r);
    fake_cli_run(&r, uri,
                 (const char *const[]){"migrate", "--postcopy-resume", "vm1",
                                       "handover+tcp://h2/system", NULL});
    g_assert_cmpint(r.status, ==, 0);
    g_assert_cmpint(pf.recover_calls, ==, 2);
    g_assert_cmpstr(r.err, ==, "");

    /* migrate-postcopy, domjobabort --postcopy, and the refusal of a plain
     * domjobabort in postcopy. */
    cli_run_clear(&r);
    fake_cli_run(&r, uri, (const char *const[]){"migrate-postcopy", "vm1", NULL});
    g_assert_cmpint(r.status, ==, 0);
    g_assert_cmpint(pf.postcopy_calls, ==, 1);
    cli_run_clear(&r);
    fake_cli_run(&r, uri, (const char *const[]){"domjobabort", "--postcopy", "vm1", NULL});
    g_assert_cmpint(r.status, ==, 0);
    g_assert_cmpint(pf.abort_calls, ==, 1);
    g_assert_true(pf.abort_postcopy);
    cli_run_clear(&r);
    fake_cli_run(&r, uri, (const char *const[]){"domjobabort", "vm1", NULL});
    g_assert_cmpint(r.status, ==, 1);
    g_assert_cmpint(pf.abort_calls, ==, 2);
    g_assert_false(pf.abort_postcopy);
    assert_contains(r.err, "the guest already runs on the destination");

    /* CPR transfer: no destination URI goes to the daemon. */
    cli_run_clear(&r);
    fake_cli_run(&r, uri,
                 (const char *const[]){"migrate", "--mode=cpr-transfer", "--verbose", "vm1",
                                       NULL});
    if (r.status != 0)
        g_error("cpr migrate failed (%d):\n%s\n%s", r.status, r.out, r.err);
    g_assert_false(pf.has_dest_uri);
    g_assert_true(json_object_object_get_ex(pf.params, "mode", &val));
    g_assert_cmpstr(json_object_get_string(val), ==, "cpr-transfer");
    g_assert_false(json_object_object_get_ex(pf.params, "postcopy", NULL));

    fake_server = NULL;
    g_clear_pointer(&srv, ho_rpc_server_free);
    json_object_put(pf.params);
    g_free(pf.dest_uri);
}

static void
test_cli_no_daemon(void)
{
    g_autofree char *dir = test_make_tmpdir("clitest-nodaemon");
    g_autofree char *sock = g_build_filename(dir, "none.sock", NULL);
    g_autofree char *uri = g_strdup_printf("handover+unix:///system?socket=%s", sock);
    g_autofree char *e1 = CLI_FAIL(NULL, sock, "-c", uri, "list");
    g_autofree char *e2 = CLI_FAIL(NULL, "unsupported scheme 'http'", "-c", "http://h/system",
                                   "list");
    g_autofree char *e3 = CLI_FAIL(NULL, "unknown parameter 'sock'", "-c",
                                   "handover+unix:///system?sock=x", "dominfo", "vm1");
    g_autofree char *version = CLI_OK(NULL, "-c", uri, "version");
    g_auto(CliRun) r = {0};
    g_auto(GStrv) env = g_get_environ();

    assert_contains(e1, "handoverd");
    /* Without a daemon, version prints the client's part only. */
    g_assert_cmpstr(version, ==, "Client: handover " PACKAGE_VERSION_STRING "\n");

    /* HANDOVER_DEFAULT_URI replaces the default. */
    env = g_environ_setenv(env, "HANDOVER_DEFAULT_URI", uri, TRUE);
    cli_runv(&r, NULL, env, (const char *const[]){"list", NULL});
    g_assert_cmpint(r.status, ==, 1);
    g_assert_cmpstr(r.out, ==, "");
    assert_contains(r.err, sock);
}

/* ---- CLI tests with a daemon ---- */

static void
test_cli_version(void)
{
    g_autoptr(TestDaemon) d = daemon_start();
    g_autofree char *out = CLI_OK(d, "version");
    g_autofree char *hostname = NULL;
    g_autofree char *want = NULL;

    api_load();
    {
        HandoverConnect *conn = api.handover_connect_open(d->uri);

        g_assert_nonnull(conn);
        hostname = g_strdup(api.handover_connect_get_hostname(conn));
        api.handover_connect_close(conn);
    }
    want = g_strdup_printf("Client: handover %s\nDaemon: handoverd %s on host '%s'\n",
                           PACKAGE_VERSION_STRING, PACKAGE_VERSION_STRING, hostname);
    g_assert_cmpstr(out, ==, want);

    /* HANDOVER_DEFAULT_URI instead of -c. */
    {
        g_auto(CliRun) r = {0};
        g_auto(GStrv) env = g_environ_setenv(g_get_environ(), "HANDOVER_DEFAULT_URI", d->uri,
                                             TRUE);

        cli_runv(&r, NULL, env, (const char *const[]){"version", NULL});
        g_assert_cmpint(r.status, ==, 0);
        g_assert_cmpstr(r.out, ==, want);
        g_assert_cmpstr(r.err, ==, "");
    }
}

static void
test_cli_define(gconstpointer data)
{
    const TestQemuBinary *bin = test_qemu_need_binary(data);
    g_autoptr(TestDaemon) d = NULL;
    g_autofree char *good = NULL;
    g_autofree char *bad = NULL;
    g_autofree char *bad_xml = NULL;
    g_autofree char *out = NULL;
    g_autofree char *err = NULL;
    g_autofree char *missing = NULL;
    g_autofree char *want = NULL;

    if (!bin)
        return;
    d = daemon_start();

    /* A definition QEMU cannot honour: named, and nothing is defined. */
    bad = g_strdup_printf("%s/bad.xml", d->root);
    bad_xml = guest_xml("bad", bin);
    {
        g_autofree char *tmp = g_steal_pointer(&bad_xml);
        char *end = strstr(tmp, "  </devices>");

        g_assert_nonnull(end);
        *end = '\0';
        bad_xml = g_strdup_printf("%s    <graphics type='vnc'/>\n  </devices>\n</domain>\n", tmp);
    }
    g_assert_true(g_file_set_contents(bad, bad_xml, -1, NULL));
    err = CLI_FAIL(d, "graphics", "define", bad);
    g_free(out);
    out = CLI_OK(d, "list", "--all", "--json");
    g_assert_cmpstr(g_strstrip(out), ==, "[]");

    /* Malformed XML. */
    g_assert_true(g_file_set_contents(bad, "<domain type='kvm'><name>x</name>", -1, NULL));
    g_free(err);
    err = CLI_FAIL(d, "XML", "define", bad);

    /* A file that is not there. */
    missing = g_strdup_printf("%s/missing.xml", d->root);
    g_free(err);
    err = CLI_FAIL(d, "missing.xml", "define", missing);

    good = write_guest_file(d, "vm1", bin);
    g_free(out);
    out = CLI_OK(d, "define", good);
    want = g_strdup_printf("Domain 'vm1' defined from %s\n", good);
    g_assert_cmpstr(out, ==, want);
    /* Defining it again updates it. */
    g_free(out);
    out = CLI_OK(d, "define", good);
    g_assert_cmpstr(out, ==, want);

    g_free(out);
    out = CLI_OK(d, "list", "--all");
    assert_matches(out, "^ Id +Name +State$");
    assert_matches(out, "^-+$");
    assert_matches(out, "^ - +vm1 +shut off$");
    g_free(out);
    out = CLI_OK(d, "list");
    g_assert_null(strstr(out, "vm1"));

    g_free(err);
    err = CLI_FAIL(d, "vm2", "dominfo", "vm2");
    g_free(out);
    out = CLI_OK(d, "undefine", "vm1");
    g_assert_cmpstr(out, ==, "Domain 'vm1' has been undefined\n");
    g_free(err);
    err = CLI_FAIL(d, "vm1", "undefine", "vm1");
    g_free(out);
    out = CLI_OK(d, "list", "--all", "--json");
    g_assert_cmpstr(g_strstrip(out), ==, "[]");
}

static void
test_cli_lifecycle(gconstpointer data)
{
    const TestQemuBinary *bin = test_qemu_need_binary(data);
    g_autoptr(TestDaemon) d = NULL;
    g_autoptr(json_object) list = NULL;
    g_autoptr(json_object) info = NULL;
    g_autofree char *file = NULL;
    g_autofree char *out = NULL;
    g_autofree char *err = NULL;
    g_autofree char *pattern = NULL;
    json_object *entry;
    const char *s;
    int64_t pid;
    bool b;

    if (!bin)
        return;
    d = daemon_start();
    file = write_guest_file(d, "vm1", bin);
    out = CLI_OK(d, "define", file);

    g_free(out);
    out = CLI_OK(d, "start", "vm1");
    g_assert_cmpstr(out, ==, "Domain 'vm1' started\n");
    info = cli_dominfo(d, "vm1");
    g_assert_cmpint(ho_json_get_int64(info, "pid", &pid), ==, 0);
    g_assert_cmpint(ho_json_get_string(info, "state", &s), ==, 0);
    g_assert_cmpstr(s, ==, "running");
    g_assert_cmpint(ho_json_get_int64(info, "max_memory_kib", &pid), ==, 0);
    g_assert_cmpint(pid, ==, 131072);
    g_assert_cmpint(ho_json_get_int64(info, "vcpus", &pid), ==, 0);
    g_assert_cmpint(pid, ==, 1);
    g_assert_cmpint(ho_json_get_bool(info, "persistent", &b), ==, 0);
    g_assert_true(b);
    g_assert_cmpint(ho_json_get_int64(info, "pid", &pid), ==, 0);

    /* Starting it twice is refused. */
    err = CLI_FAIL(d, "vm1", "start", "vm1");

    g_free(out);
    out = CLI_OK(d, "dominfo", "vm1");
    pattern = g_strdup_printf("^Id: +%" G_GINT64_FORMAT "$", pid);
    assert_matches(out, pattern);
    assert_matches(out, "^Name: +vm1$");
    assert_matches(out, "^UUID: +[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$");
    assert_matches(out, "^State: +running$");
    assert_matches(out, "^CPU\\(s\\): +1$");
    assert_matches(out, "^Max memory: +131072 KiB$");
    assert_matches(out, "^Used memory: +131072 KiB$");
    assert_matches(out, "^Persistent: +yes$");

    g_free(out);
    out = CLI_OK(d, "list");
    g_free(pattern);
    pattern = g_strdup_printf("^ %" G_GINT64_FORMAT " +vm1 +running$", pid);
    assert_matches(out, pattern);

    g_free(out);
    out = CLI_OK(d, "list", "--json");
    list = parse_json(out);
    g_assert_true(json_object_is_type(list, json_type_array));
    g_assert_cmpuint(json_object_array_length(list), ==, 1);
    entry = json_object_array_get_idx(list, 0);
    g_assert_cmpint(ho_json_get_string(entry, "name", &s), ==, 0);
    g_assert_cmpstr(s, ==, "vm1");
    g_assert_cmpint(ho_json_get_string(entry, "state", &s), ==, 0);
    g_assert_cmpstr(s, ==, "running");
    g_assert_cmpint(ho_json_get_string(entry, "uuid", &s), ==, 0);
    g_assert_cmpuint(strlen(s), ==, 36);

    assert_domstate(d, "vm1", "running");
    g_free(out);
    out = CLI_OK(d, "domstate", "--reason", "vm1");
    assert_matches(out, "^running \\([a-z-]+\\)\n\n$");

    /* The live definition names the concrete machine; the persistent one the alias. */
    g_free(out);
    out = CLI_OK(d, "dumpxml", "vm1");
    g_free(pattern);
    pattern = g_strdup_printf("machine=['\"]%s['\"]", concrete_machine(bin));
    assert_matches(out, pattern);
    assert_contains(out, "<name>vm1</name>");
    g_free(out);
    out = CLI_OK(d, "dumpxml", "--inactive", "vm1");
    assert_matches(out, "machine=['\"]pc['\"]");

    g_free(out);
    out = CLI_OK(d, "suspend", "vm1");
    g_assert_cmpstr(out, ==, "Domain 'vm1' suspended\n");
    assert_domstate(d, "vm1", "paused");
    g_free(out);
    out = CLI_OK(d, "resume", "vm1");
    g_assert_cmpstr(out, ==, "Domain 'vm1' resumed\n");
    assert_domstate(d, "vm1", "running");

    /* The guest sits in SeaBIOS and ignores the ACPI request. */
    g_free(out);
    out = CLI_OK(d, "shutdown", "--timeout", "1", "vm1");
    g_assert_cmpstr(out, ==,
                    "Domain 'vm1' did not power off within 1 s and was stopped by force\n");
    assert_domstate(d, "vm1", "shut off");
    g_free(out);
    out = CLI_OK(d, "list");
    g_assert_null(strstr(out, "vm1"));
    g_free(out);
    out = CLI_OK(d, "list", "--all");
    assert_matches(out, "^ - +vm1 +shut off$");
    g_free(err);
    err = CLI_FAIL(d, "vm1", "suspend", "vm1");

    g_free(out);
    out = CLI_OK(d, "start", "--paused", "vm1");
    g_assert_cmpstr(out, ==, "Domain 'vm1' started (paused)\n");
    json_object_put(g_steal_pointer(&info));
    info = cli_dominfo(d, "vm1");
    assert_domstate(d, "vm1", "paused");
    g_free(out);
    out = CLI_OK(d, "destroy", "vm1");
    g_assert_cmpstr(out, ==, "Domain 'vm1' destroyed\n");
    assert_domstate(d, "vm1", "shut off");
    g_free(err);
    err = CLI_FAIL(d, "vm1", "destroy", "vm1");

    g_free(out);
    out = CLI_OK(d, "undefine", "vm1");
    g_free(out);
    out = CLI_OK(d, "list", "--all", "--json");
    g_assert_cmpstr(g_strstrip(out), ==, "[]");
}

/* ---- event ---- */

typedef struct {
    GPid pid;
    int out_fd;
    bool exited;
    int status;
} EventCli;

static void
event_cli_exited(GPid pid, gint status, gpointer opaque)
{
    EventCli *e = opaque;

    e->exited = true;
    e->status = status;
    g_spawn_close_pid(pid);
}

static void
event_cli_spawn(EventCli *e, const TestDaemon *d, const char *const *args)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autoptr(GError) gerr = NULL;

    memset(e, 0, sizeof(*e));
    g_ptr_array_add(argv, (char *)env_path("HANDOVER"));
    g_ptr_array_add(argv, (char *)"-c");
    g_ptr_array_add(argv, d->uri);
    g_ptr_array_add(argv, (char *)"event");
    for (; *args; args++)
        g_ptr_array_add(argv, (char *)*args);
    g_ptr_array_add(argv, NULL);
    if (!g_spawn_async_with_pipes(NULL, (char **)argv->pdata, NULL, G_SPAWN_DO_NOT_REAP_CHILD,
                                  die_with_parent, NULL, &e->pid, NULL, &e->out_fd, NULL, &gerr))
        g_error("cannot run handover event: %s", gerr->message);
    g_child_watch_add_full(G_PRIORITY_DEFAULT, e->pid, event_cli_exited, e, NULL);
}

/* Wait for it to exit (killing it after timeout_ms); its stdout. */
static char *
event_cli_finish(EventCli *e, guint timeout_ms, bool *timed_out)
{
    g_autoptr(GString) out = g_string_new(NULL);
    char buf[4096];
    ssize_t n;

    *timed_out = !test_iterate_until(NULL, &e->exited, timeout_ms);
    if (*timed_out) {
        (void)kill(e->pid, SIGKILL);
        g_assert_true(test_iterate_until(NULL, &e->exited, EXIT_TIMEOUT_MS));
    }
    while ((n = read(e->out_fd, buf, sizeof(buf))) > 0)
        g_string_append_len(out, buf, n);
    close(e->out_fd);
    if (!*timed_out)
        g_assert_true(WIFEXITED(e->status) && WEXITSTATUS(e->status) == 0);
    return g_string_free(g_steal_pointer(&out), FALSE);
}

static void
test_cli_event(gconstpointer data)
{
    const TestQemuBinary *bin = test_qemu_need_binary(data);
    g_autoptr(TestDaemon) d = NULL;
    g_autoptr(json_object) info = NULL;
    g_autofree char *file = NULL;
    g_autofree char *out = NULL;
    gint64 t0;
    bool done = false;
    int attempt;

    if (!bin)
        return;
    d = daemon_start();
    file = write_guest_file(d, "vm1", bin);
    out = CLI_OK(d, "define", file);

    /* No event within the timeout: nothing printed, success. */
    t0 = g_get_monotonic_time();
    g_free(out);
    out = CLI_OK(d, "event", "--timeout", "1");
    g_assert_cmpstr(out, ==, "");
    g_assert_cmpint(g_get_monotonic_time() - t0, >=, 900000);

    /* The CLI must have subscribed before the start completes; its
     * subscription takes milliseconds and a QEMU start much longer, but
     * nothing orders the two connections, so a lost race is retried. */
    for (attempt = 0; attempt < 3 && !done; attempt++) {
        const char *const args[] = {"--timeout", "60", NULL};
        EventCli e;
        g_autofree char *start_out = NULL;
        g_autofree char *ev = NULL;
        bool timed_out;

        event_cli_spawn(&e, d, args);
        start_out = CLI_OK(d, "start", "vm1");
        json_object_put(g_steal_pointer(&info));
        info = cli_dominfo(d, "vm1");
        /* Without --loop it exits after the first event. */
        ev = event_cli_finish(&e, 5000, &timed_out);
        if (!timed_out) {
            assert_matches(ev, "^event 'lifecycle' for domain 'vm1': started( [a-z-]+)?\n$");
            done = true;
        }
        g_free(out);
        out = CLI_OK(d, "destroy", "vm1");
    }
    g_assert_true(done);

    /* --loop: every event until the timeout. */
    done = false;
    for (attempt = 0; attempt < 3 && !done; attempt++) {
        const char *const args[] = {"--loop", "--timeout", "4", NULL};
        EventCli e;
        g_autofree char *start_out = NULL;
        g_autofree char *stop_out = NULL;
        g_autofree char *ev = NULL;
        bool timed_out;

        event_cli_spawn(&e, d, args);
        start_out = CLI_OK(d, "start", "vm1");
        json_object_put(g_steal_pointer(&info));
        info = cli_dominfo(d, "vm1");
        stop_out = CLI_OK(d, "destroy", "vm1");
        ev = event_cli_finish(&e, 15000, &timed_out);
        g_assert_false(timed_out);
        if (strstr(ev, "started")) {
            assert_matches(ev, "^event 'lifecycle' for domain 'vm1': started( [a-z-]+)?\n"
                               "event 'lifecycle' for domain 'vm1': stopped destroyed\n$");
            done = true;
        }
    }
    g_assert_true(done);
}

/* ---- capabilities ---- */

static void
test_cli_capabilities(gconstpointer data)
{
    const TestQemuBinary *bin = test_qemu_need_binary(data);
    g_autoptr(TestDaemon) d = NULL;
    g_autoptr(json_object) doc = NULL;
    g_autofree char *out = NULL;
    g_autofree char *pattern = NULL;
    json_object *flags;
    bool is72;
    bool has_setup = false;
    size_t i;
    const char *s;

    if (!bin)
        return;
    is72 = g_str_equal(bin->name, "qemu-7.2");
    d = daemon_start();
    out = CLI_OK(d, "capabilities", "--emulator", bin->binary);
    pattern = g_strdup_printf("^emulator: +%s$", bin->binary);
    assert_matches(out, pattern);
    assert_matches(out, is72 ? "^version: +7\\.2\\.[0-9]+ \\(.*\\)$"
                             : "^version: +10\\.0\\.[0-9]+ \\(.*\\)$");
    assert_matches(out, "^accelerator: +(kvm|tcg)$");
    assert_matches(out, "^  pause-before-switchover +yes$");
    assert_matches(out, "^  blockdev-mirror +yes$");
    assert_matches(out, is72 ? "^  postcopy-recover-setup +no$"
                             : "^  postcopy-recover-setup +yes$");
    assert_matches(out, is72 ? "^  cpr-transfer +no$" : "^  cpr-transfer +yes$");

    g_free(out);
    out = CLI_OK(d, "capabilities", "--emulator", bin->binary, "--json");
    doc = parse_json(out);
    g_assert_cmpint(ho_json_get_array(doc, "flags", &flags), ==, 0);
    for (i = 0; i < json_object_array_length(flags); i++) {
        if (g_str_equal(json_object_get_string(json_object_array_get_idx(flags, i)),
                        "postcopy-recover-setup"))
            has_setup = true;
    }
    g_assert_cmpint(has_setup, ==, !is72);
    g_assert_cmpint(ho_json_get_string(doc, "emulator", &s), ==, 0);
    g_assert_cmpstr(s, ==, bin->binary);

    /* A binary that does not exist: the daemon's message names it. */
    g_free(out);
    out = CLI_FAIL(d, "/nonexistent/qemu", "capabilities", "--emulator", "/nonexistent/qemu");
}

/* ---- the library ---- */

static void
test_api_symbols(void)
{
    const char *internal[] = {"ho_error_report", "ho_rpc_conn_open_unix", "ho_json_parse",
                              "ho_uri_parse", "ho_log_message", "connect_uri", NULL};
    size_t i;

    api_load();
    for (i = 0; internal[i]; i++) {
        if (dlsym(api.lib, internal[i]))
            g_error("libhandover exports the internal symbol '%s'", internal[i]);
    }
    g_assert_cmpstr(api.handover_domain_state_name(HANDOVER_DOMAIN_RUNNING), ==, "running");
    g_assert_cmpstr(api.handover_domain_state_name(HANDOVER_DOMAIN_SHUTOFF), ==, "shutoff");
    g_assert_cmpstr(api.handover_domain_state_name(HANDOVER_DOMAIN_SHUTTING_DOWN), ==,
                    "shutting-down");
    g_assert_cmpstr(api.handover_domain_state_name((HandoverDomainState)99), ==, "nostate");
}

static void
api_job_cb(HandoverConnect *conn, const char *name, const char *uuid, const char *event,
           const HandoverJobInfo *info, void *opaque)
{
}

static void
test_api_errors(void)
{
    g_autoptr(TestDaemon) d = daemon_start();
    g_autofree char *missing = g_strdup_printf("handover+unix:///system?socket=%s/nope.sock",
                                               d->root);
    HandoverConnect *conn;
    HandoverDomain *dom;
    HandoverDomain **doms = NULL;
    HandoverDomainInfo info;

    api_load();
    g_assert_null(api.handover_connect_open("http://host/system"));
    assert_api_error(HANDOVER_ERR_URI, "uri", "http");
    g_assert_null(api.handover_connect_open("handover:///session"));
    assert_api_error(HANDOVER_ERR_URI, "uri", "/session");
    g_assert_null(api.handover_connect_open("handover+unix:///system?sokcet=/x"));
    assert_api_error(HANDOVER_ERR_URI, "uri", "sokcet");
    g_assert_null(api.handover_connect_open(missing));
    g_assert_nonnull(api.handover_last_error());
    assert_contains(api.handover_last_error()->message, "nope.sock");

    conn = api.handover_connect_open(d->uri);
    g_assert_nonnull(conn);
    assert_api_ok();
    g_assert_cmpstr(api.handover_connect_get_daemon_version(conn), ==,
                    "handoverd " PACKAGE_VERSION_STRING);
    g_assert_cmpuint(strlen(api.handover_connect_get_host_uuid(conn)), ==, 36);
    g_assert_cmpstr(api.handover_connect_get_hostname(conn), !=, "");

    g_assert_null(api.handover_domain_lookup_by_name(conn, "nosuch"));
    assert_api_error(HANDOVER_ERR_NO_DOMAIN, "no-domain", "nosuch");
    g_assert_null(api.handover_domain_define_xml(conn, "<domain"));
    assert_api_error(HANDOVER_ERR_XML, "xml", NULL);
    g_assert_null(api.handover_domain_define_xml(conn, NULL));
    assert_api_error(HANDOVER_ERR_INVALID_ARG, "invalid-arg", "xml");
    g_assert_cmpint(api.handover_connect_list_domains(conn, &doms, 1 << 7), ==, -1);
    assert_api_error(HANDOVER_ERR_INVALID_ARG, "invalid-arg", "flags");
    g_assert_cmpint(api.handover_connect_list_domains(conn, &doms, 0), ==, 0);
    assert_api_ok();
    g_assert_nonnull(doms);
    g_assert_null(doms[0]);
    free(doms);

    /* Migration calls: argument checks here, refusals from the daemon. */
    {
        HandoverJobInfo ji;
        HandoverMigrateParams mp;

        memset(&ji, 0, sizeof(ji));
        g_assert_cmpint(api.handover_domain_get_job_info(conn, "vm1", false, &ji), ==, -1);
        assert_api_error(HANDOVER_ERR_INVALID_ARG, "invalid-arg", "handover_job_info_init");
        memset(&mp, 0, sizeof(mp));
        g_assert_cmpint(api.handover_domain_migrate(conn, "vm1", "handover+tcp://h/system", &mp,
                                                    NULL),
                        ==, -1);
        assert_api_error(HANDOVER_ERR_INVALID_ARG, "invalid-arg", "handover_migrate_params_init");
        g_assert_cmpint(api.handover_domain_migrate(conn, NULL, "x", NULL, NULL), ==, -1);
        assert_api_error(HANDOVER_ERR_INVALID_ARG, "invalid-arg", "name");
        api.handover_job_info_init(&ji);
        g_assert_cmpint(ji.size, ==, sizeof(ji));
        g_assert_cmpint(ji.downtime_ms, ==, -1);
        api.handover_migrate_params_init(&mp);
        mp.live = true;
        g_assert_cmpint(api.handover_domain_migrate(conn, "nosuch", "handover+tcp://h/system",
                                                    &mp, &ji),
                        ==, -1);
        assert_api_error(HANDOVER_ERR_NO_DOMAIN, "no-domain", "nosuch");
        g_assert_cmpint(api.handover_domain_get_job_info(conn, "nosuch", true, &ji), ==, -1);
        assert_api_error(HANDOVER_ERR_NO_DOMAIN, "no-domain", "nosuch");
        g_assert_cmpint(api.handover_domain_abort_job(conn, "nosuch"), ==, -1);
        assert_api_error(HANDOVER_ERR_NO_DOMAIN, "no-domain", "nosuch");
        g_assert_cmpint(api.handover_connect_register_job(conn, api_job_cb, NULL), ==, 0);
        assert_api_ok();
        g_assert_cmpint(api.handover_connect_register_job(conn, api_job_cb, NULL), ==, -1);
        assert_api_error(HANDOVER_ERR_OPERATION_INVALID, "operation-invalid", NULL);
    }

    {
        g_autofree char *json = api.handover_connect_get_info(conn);
        g_autoptr(json_object) obj = NULL;
        const char *s;

        g_assert_nonnull(json);
        assert_api_ok();
        obj = parse_json(json);
        g_assert_cmpint(ho_json_get_string(obj, "host_uuid", &s), ==, 0);
        g_assert_cmpstr(s, ==, api.handover_connect_get_host_uuid(conn));
    }

    /* A domain handle outlives its closed connection; its calls fail. */
    {
        const TestQemuBinary *bin = test_qemu_binaries()[0];
        g_autofree char *xml = NULL;

        if (!bin->binary) {
            api.handover_connect_close(conn);
            return;
        }
        xml = guest_xml("vm1", bin);
        dom = api.handover_domain_define_xml(conn, xml);
        g_assert_nonnull(dom);
        assert_api_ok();
    }
    api.handover_connect_close(conn);
    g_assert_cmpstr(api.handover_domain_get_name(dom), ==, "vm1");
    g_assert_cmpint(api.handover_domain_get_info(dom, &info), ==, -1);
    assert_api_error(HANDOVER_ERR_INVALID_ARG, "invalid-arg", "closed");
    g_assert_cmpint(api.handover_domain_start(dom, 0), ==, -1);
    assert_api_error(HANDOVER_ERR_INVALID_ARG, "invalid-arg", "closed");
    api.handover_domain_free(dom);

    /* The daemon going away: calls fail with an error, not a hang. */
    conn = api.handover_connect_open(d->uri);
    g_assert_nonnull(conn);
    dom = api.handover_domain_lookup_by_name(conn, "vm1");
    g_assert_nonnull(dom);
    (void)kill(d->pid, SIGTERM);
    g_assert_true(test_iterate_until(NULL, &d->exited, EXIT_TIMEOUT_MS));
    g_assert_cmpint(api.handover_domain_get_info(dom, &info), ==, -1);
    g_assert_nonnull(api.handover_last_error());
    g_assert_cmpint(api.handover_connect_run_events(conn, 100), ==, -1);
    api.handover_domain_free(dom);
    api.handover_connect_close(conn);
}

typedef struct {
    GPtrArray *seen; /* "name event detail" */
} LifecycleLog;

static void
on_api_lifecycle(HandoverConnect *conn, const char *name, const char *uuid, const char *event,
                 const char *detail, void *opaque)
{
    LifecycleLog *log = opaque;

    g_assert_cmpuint(strlen(uuid), ==, 36);
    g_ptr_array_add(log->seen, g_strdup_printf("%s %s %s", name, event, detail ? detail : "-"));
}

/* Whether an event starting with prefix was seen. */
static bool
log_has(const LifecycleLog *log, const char *prefix)
{
    guint i;

    for (i = 0; i < log->seen->len; i++) {
        if (g_str_has_prefix(g_ptr_array_index(log->seen, i), prefix))
            return true;
    }
    return false;
}

/* Dispatch events until one starting with prefix came. */
static void
wait_for_event(HandoverConnect *watcher, const LifecycleLog *log, const char *prefix)
{
    while (!log_has(log, prefix)) {
        if (api.handover_connect_run_events(watcher, 10000) != 1)
            g_error("no event '%s' within 10 s", prefix);
    }
}

static void
test_api_lifecycle(gconstpointer data)
{
    const TestQemuBinary *bin = test_qemu_need_binary(data);
    g_autoptr(TestDaemon) d = NULL;
    g_autoptr(GPtrArray) seen = g_ptr_array_new_with_free_func(g_free);
    LifecycleLog log = {seen};
    g_autofree char *xml = NULL;
    g_autofree char *live = NULL;
    g_autofree char *inactive = NULL;
    g_autofree char *caps = NULL;
    g_autofree char *pattern = NULL;
    g_autoptr(json_object) caps_obj = NULL;
    HandoverConnect *conn;
    HandoverConnect *watcher;
    HandoverDomain *dom;
    HandoverDomain *same;
    HandoverDomain **doms = NULL;
    HandoverDomainInfo info = {0};
    HandoverDomainState state = HANDOVER_DOMAIN_NOSTATE;
    char *reason = NULL;
    bool forced = false;
    json_object *flags;
    int n;

    if (!bin)
        return;
    api_load();
    d = daemon_start();
    conn = api.handover_connect_open(d->uri);
    g_assert_nonnull(conn);
    watcher = api.handover_connect_open(d->uri);
    g_assert_nonnull(watcher);
    g_assert_cmpint(api.handover_connect_register_lifecycle(watcher, on_api_lifecycle, &log), ==,
                    0);
    assert_api_ok();
    g_assert_cmpint(api.handover_connect_register_lifecycle(watcher, on_api_lifecycle, &log), ==,
                    -1);
    assert_api_error(HANDOVER_ERR_OPERATION_INVALID, "operation-invalid", NULL);
    /* Nothing happens: a timeout. */
    g_assert_cmpint(api.handover_connect_run_events(watcher, 200), ==, 0);

    xml = guest_xml("vm1", bin);
    dom = api.handover_domain_define_xml(conn, xml);
    g_assert_nonnull(dom);
    assert_api_ok();
    g_assert_cmpstr(api.handover_domain_get_name(dom), ==, "vm1");
    g_assert_cmpuint(strlen(api.handover_domain_get_uuid(dom)), ==, 36);
    wait_for_event(watcher, &log, "vm1 defined ");

    same = api.handover_domain_lookup_by_name(conn, api.handover_domain_get_uuid(dom));
    g_assert_nonnull(same);
    g_assert_cmpstr(api.handover_domain_get_name(same), ==, "vm1");
    api.handover_domain_free(same);

    g_assert_cmpint(api.handover_domain_get_info(dom, &info), ==, 0);
    g_assert_cmpint(info.state, ==, HANDOVER_DOMAIN_SHUTOFF);
    g_assert_cmpint(info.pid, ==, 0);
    g_assert_true(info.persistent);

    g_assert_cmpint(api.handover_domain_start(dom, 0), ==, 0);
    assert_api_ok();
    g_assert_cmpint(api.handover_domain_get_info(dom, &info), ==, 0);
    learn_qemu_pid(info.pid);
    g_assert_cmpint(info.state, ==, HANDOVER_DOMAIN_RUNNING);
    g_assert_cmpuint(info.max_memory_kib, ==, 131072);
    g_assert_cmpuint(info.memory_kib, ==, 131072);
    g_assert_cmpuint(info.vcpus, ==, 1);
    g_assert_true(info.persistent);
    g_assert_cmpint(api.handover_domain_start(dom, 0), ==, -1);
    assert_api_error(HANDOVER_ERR_OPERATION_INVALID, "operation-invalid", "vm1");
    /* The library resets the error on the next successful call. */
    g_assert_cmpint(api.handover_domain_get_state(dom, &state, &reason), ==, 0);
    assert_api_ok();
    g_assert_cmpint(state, ==, HANDOVER_DOMAIN_RUNNING);
    free(reason);
    reason = NULL;

    wait_for_event(watcher, &log, "vm1 started ");

    live = api.handover_domain_get_xml_desc(dom, 0);
    inactive = api.handover_domain_get_xml_desc(dom, HANDOVER_XML_INACTIVE);
    g_assert_nonnull(live);
    g_assert_nonnull(inactive);
    pattern = g_strdup_printf("machine=['\"]%s['\"]", concrete_machine(bin));
    assert_matches(live, pattern);
    assert_matches(inactive, "machine=['\"]pc['\"]");

    n = api.handover_connect_list_domains(conn, &doms, HANDOVER_LIST_ACTIVE);
    g_assert_cmpint(n, ==, 1);
    g_assert_cmpstr(api.handover_domain_get_name(doms[0]), ==, "vm1");
    api.handover_domain_free(doms[0]);
    free(doms);
    n = api.handover_connect_list_domains(conn, &doms, HANDOVER_LIST_INACTIVE);
    g_assert_cmpint(n, ==, 0);
    free(doms);

    g_assert_cmpint(api.handover_domain_suspend(dom), ==, 0);
    g_assert_cmpint(api.handover_domain_get_state(dom, &state, NULL), ==, 0);
    g_assert_cmpint(state, ==, HANDOVER_DOMAIN_PAUSED);
    g_assert_cmpint(api.handover_domain_resume(dom), ==, 0);
    g_assert_cmpint(api.handover_domain_get_state(dom, &state, NULL), ==, 0);
    g_assert_cmpint(state, ==, HANDOVER_DOMAIN_RUNNING);

    g_assert_cmpint(api.handover_domain_shutdown(dom, 1, &forced), ==, 0);
    assert_api_ok();
    g_assert_true(forced);
    g_assert_cmpint(api.handover_domain_get_info(dom, &info), ==, 0);
    g_assert_cmpint(info.state, ==, HANDOVER_DOMAIN_SHUTOFF);
    g_assert_cmpint(info.pid, ==, 0);

    g_assert_cmpint(api.handover_domain_start(dom, HANDOVER_START_PAUSED), ==, 0);
    g_assert_cmpint(api.handover_domain_get_info(dom, &info), ==, 0);
    learn_qemu_pid(info.pid);
    g_assert_cmpint(info.state, ==, HANDOVER_DOMAIN_PAUSED);
    g_ptr_array_set_size(seen, 0);
    g_assert_cmpint(api.handover_domain_destroy(dom), ==, 0);
    assert_api_ok();
    /* The event for a destroy made on another connection. */
    wait_for_event(watcher, &log, "vm1 stopped destroyed");
    g_assert_cmpint(api.handover_domain_destroy(dom), ==, -1);
    assert_api_error(HANDOVER_ERR_OPERATION_INVALID, "operation-invalid", NULL);

    caps = api.handover_connect_get_capabilities(conn, bin->binary);
    g_assert_nonnull(caps);
    caps_obj = parse_json(caps);
    g_assert_cmpint(ho_json_get_array(caps_obj, "flags", &flags), ==, 0);
    {
        bool has = false;
        size_t i;

        for (i = 0; i < json_object_array_length(flags); i++)
            has |= g_str_equal(json_object_get_string(json_object_array_get_idx(flags, i)),
                               "postcopy-recover-setup");
        g_assert_cmpint(has, ==, !g_str_equal(bin->name, "qemu-7.2"));
    }

    g_assert_cmpint(api.handover_domain_undefine(dom), ==, 0);
    assert_api_ok();
    g_assert_cmpint(api.handover_domain_get_info(dom, &info), ==, -1);
    assert_api_error(HANDOVER_ERR_NO_DOMAIN, "no-domain", NULL);
    n = api.handover_connect_list_domains(conn, &doms, 0);
    g_assert_cmpint(n, ==, 0);
    free(doms);

    api.handover_domain_free(dom);
    api.handover_connect_close(watcher);
    api.handover_connect_close(conn);
}

static void
add_qemu_test(const char *path, GTestDataFunc func)
{
    const TestQemuBinary *const *bins = test_qemu_binaries();
    size_t i;

    for (i = 0; bins[i]; i++) {
        g_autofree char *name = g_strdup_printf("%s/%s", path, bins[i]->name);

        g_test_add_data_func(name, bins[i], func);
    }
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    /* g_assert() aborts; g_error() traps. */
    signal(SIGABRT, on_abort);
    signal(SIGTRAP, on_abort);
    /* A closed pipe to a finished CLI must not kill the test. */
    signal(SIGPIPE, SIG_IGN);

    g_test_add_func("/cli/help", test_cli_help);
    g_test_add_func("/cli/usage-errors", test_cli_usage_errors);
    g_test_add_func("/cli/migrate-usage", test_cli_migrate_usage);
    g_test_add_func("/cli/migrate-storage-fake", test_cli_migrate_storage_fake);
    g_test_add_func("/cli/migrate-postcopy-fake", test_cli_migrate_postcopy_fake);
    g_test_add_func("/cli/no-daemon", test_cli_no_daemon);
    g_test_add_func("/cli/version", test_cli_version);
    add_qemu_test("/cli/define", test_cli_define);
    add_qemu_test("/cli/lifecycle", test_cli_lifecycle);
    add_qemu_test("/cli/event", test_cli_event);
    add_qemu_test("/cli/capabilities", test_cli_capabilities);
    g_test_add_func("/api/symbols", test_api_symbols);
    g_test_add_func("/api/errors", test_api_errors);
    add_qemu_test("/api/lifecycle", test_api_lifecycle);
    return g_test_run();
}
