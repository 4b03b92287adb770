/*
 * Network namespaces for two-host tests (testnetns.h).
 */
#define _GNU_SOURCE /* setns */
#include "testnetns.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#define NETNS_DIR "/run/netns"
#define ADDR_A "10.231.0.1"
#define ADDR_B "10.231.0.2"
#define PREFIX_LEN "24"
#define MAX_NS 8

/* Names to remove when the test aborts: plain arrays for the handler. */
static char abort_ns_path[MAX_NS][64];
static struct sigaction prev_action[6];
static const int cleanup_signals[6] = {SIGABRT, SIGTRAP, SIGSEGV, SIGBUS, SIGTERM, SIGINT};
static bool handler_installed;

static void
netns_abort_handler(int sig)
{
    size_t i;

    for (i = 0; i < MAX_NS; i++) {
        if (abort_ns_path[i][0]) {
            /* What `ip netns del` does: the name is a bind mount. */
            (void)umount2(abort_ns_path[i], MNT_DETACH);
            (void)unlink(abort_ns_path[i]);
            abort_ns_path[i][0] = '\0';
        }
    }
    /* Chain: the previous handler (or the default action) runs when this
     * one returns, since the signal is blocked until then. */
    for (i = 0; i < G_N_ELEMENTS(cleanup_signals); i++) {
        if (cleanup_signals[i] == sig) {
            sigaction(sig, &prev_action[i], NULL);
            break;
        }
    }
    raise(sig);
}

static void
abort_cleanup_install(void)
{
    struct sigaction sa = {0};
    size_t i;

    if (handler_installed)
        return;
    handler_installed = true;
    sa.sa_handler = netns_abort_handler;
    sigemptyset(&sa.sa_mask);
    for (i = 0; i < G_N_ELEMENTS(cleanup_signals); i++)
        sigaction(cleanup_signals[i], &sa, &prev_action[i]);
}

static void
abort_cleanup_add(const char *path)
{
    size_t i;

    for (i = 0; i < MAX_NS; i++) {
        if (!abort_ns_path[i][0]) {
            g_strlcpy(abort_ns_path[i], path, sizeof(abort_ns_path[i]));
            return;
        }
    }
    g_error("more than %d network namespaces", MAX_NS);
}

static void
abort_cleanup_remove(const char *path)
{
    size_t i;

    for (i = 0; i < MAX_NS; i++) {
        if (g_str_equal(abort_ns_path[i], path))
            abort_ns_path[i][0] = '\0';
    }
}

static char *
ip_binary(void)
{
    static const char *const dirs[] = {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"};
    char *found = g_find_program_in_path("ip");
    size_t i;

    if (found)
        return found;
    for (i = 0; i < G_N_ELEMENTS(dirs); i++) {
        if (g_file_test(dirs[i], G_FILE_TEST_IS_EXECUTABLE))
            return g_strdup(dirs[i]);
    }
    return NULL;
}

/* Run `ip [-n NS] ARGS`; 0, or -1 and *err (if non-NULL) saying why. */
static int
run_ip(const char *ns, const char *const *args, char **err)
{
    g_autofree char *ip = ip_binary();
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autoptr(GError) gerr = NULL;
    g_autofree char *out = NULL;
    g_autofree char *errtext = NULL;
    int status = 0;

    if (!ip) {
        if (err)
            *err = g_strdup("the 'ip' command (iproute2) is not installed");
        return -1;
    }
    g_ptr_array_add(argv, ip);
    if (ns) {
        g_ptr_array_add(argv, (char *)"-n");
        g_ptr_array_add(argv, (char *)ns);
    }
    for (; *args; args++)
        g_ptr_array_add(argv, (char *)*args);
    g_ptr_array_add(argv, NULL);
    if (!g_spawn_sync(NULL, (char **)argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out,
                      &errtext, &status, &gerr)) {
        if (err)
            *err = g_strdup_printf("cannot run '%s': %s", ip, gerr->message);
        return -1;
    }
    if (!g_spawn_check_wait_status(status, NULL)) {
        if (err) {
            g_autofree char *joined = g_strjoinv(" ", (char **)argv->pdata + 1);

            *err = g_strdup_printf("'ip %s' failed: %s", joined, g_strstrip(errtext));
        }
        return -1;
    }
    return 0;
}

#define IP(ns, err, ...) run_ip((ns), (const char *const[]){__VA_ARGS__, NULL}, (err))

static void
netns_delete(TestNetns *ns)
{
    int i;

    for (i = 0; i < 2; i++) {
        if (!ns->name[i])
            continue;
        /* Deleting the namespace deletes the veth end inside it, and with
         * it the peer. */
        if (IP(NULL, NULL, "netns", "delete", ns->name[i]) < 0)
            g_printerr("# could not delete network namespace '%s'\n", ns->name[i]);
        abort_cleanup_remove(ns->path[i]);
        g_clear_pointer(&ns->name[i], g_free);
        g_clear_pointer(&ns->path[i], g_free);
    }
}

static int
netns_create(TestNetns *ns, char **why)
{
    static const char *const addrs[2] = {ADDR_A "/" PREFIX_LEN, ADDR_B "/" PREFIX_LEN};
    int i;

    for (i = 0; i < 2; i++) {
        ns->name[i] = g_strdup_printf("hotest-%d-%c", (int)getpid(), 'a' + i);
        ns->path[i] = g_build_filename(NETNS_DIR, ns->name[i], NULL);
        /* Interface names: at most 15 bytes. */
        ns->dev[i] = g_strdup_printf("hov%d%c", (int)getpid() % 10000000, 'a' + i);
        if (IP(NULL, why, "netns", "add", ns->name[i]) < 0) {
            g_clear_pointer(&ns->name[i], g_free);
            g_clear_pointer(&ns->path[i], g_free);
            return -1;
        }
        abort_cleanup_add(ns->path[i]);
    }
    if (IP(ns->name[0], why, "link", "add", ns->dev[0], "type", "veth", "peer", "name",
           ns->dev[1], "netns", ns->name[1]) < 0)
        return -1;
    for (i = 0; i < 2; i++) {
        if (IP(ns->name[i], why, "addr", "add", addrs[i], "dev", ns->dev[i]) < 0 ||
            IP(ns->name[i], why, "link", "set", "lo", "up") < 0 ||
            IP(ns->name[i], why, "link", "set", ns->dev[i], "up") < 0)
            return -1;
    }
    return 0;
}

TestNetns *
test_netns_new(void)
{
    TestNetns *ns = g_new0(TestNetns, 1);
    const char *env = g_getenv("HANDOVER_TEST_NETNS");
    g_autofree char *why = NULL;
    int i;

    abort_cleanup_install();
    if (env && g_str_equal(env, "0"))
        why = g_strdup("HANDOVER_TEST_NETNS=0");
    else if (geteuid() != 0)
        why = g_strdup("not running as root");
    else if (netns_create(ns, &why) == 0) {
        ns->addr[0] = g_strdup(ADDR_A);
        ns->addr[1] = g_strdup(ADDR_B);
        g_test_message("hosts in network namespaces %s (%s) and %s (%s), veth %s-%s",
                       ns->name[0], ns->addr[0], ns->name[1], ns->addr[1], ns->dev[0],
                       ns->dev[1]);
        return ns;
    }
    netns_delete(ns);
    for (i = 0; i < 2; i++) {
        g_clear_pointer(&ns->dev[i], g_free);
        ns->addr[i] = g_strdup("127.0.0.1");
    }
    ns->loopback = true;
    ns->why = g_steal_pointer(&why);
    g_test_message("no network namespaces (%s): both hosts on loopback 127.0.0.1", ns->why);
    return ns;
}

void
test_netns_free(TestNetns *ns)
{
    int i;

    if (!ns)
        return;
    netns_delete(ns);
    for (i = 0; i < 2; i++) {
        g_free(ns->addr[i]);
        g_free(ns->dev[i]);
    }
    g_free(ns->why);
    g_free(ns);
}

void
test_netns_enter(const char *path)
{
    int fd;

    if (!path)
        return;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
        static const char msg[] = "cannot enter the test's network namespace\n";

        (void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
        _exit(127);
    }
    close(fd);
}

int
test_netns_ip(const TestNetns *ns, int side, const char *const *args)
{
    g_autofree char *err = NULL;

    g_assert_true(side == 0 || side == 1);
    if (run_ip(ns->loopback ? NULL : ns->name[side], args, &err) < 0) {
        g_test_message("%s", err);
        return -1;
    }
    return 0;
}
