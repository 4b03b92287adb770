/*
 * Two hosts on one machine for migration tests: two network namespaces
 * joined by a veth pair (10.231.0.1/24 and 10.231.0.2/24, loopback up in
 * each), or, where namespaces cannot be made (not root, no `ip`, no
 * CAP_SYS_ADMIN, HANDOVER_TEST_NETNS=0), plain loopback on 127.0.0.1 for
 * both, said in the test output.
 *
 * The namespaces are named after the test process (hotest-<pid>-a/-b) and
 * deleted by test_netns_free(), and also when the test aborts or is
 * stopped (a SIGABRT, SIGTRAP, SIGSEGV, SIGBUS, SIGTERM or SIGINT handler
 * unmounts their names with plain system calls; a namespace itself ends
 * with its last process).
 *
 * A process is put into a namespace with test_netns_enter() in a spawn's
 * child setup function (setns(2) before exec), the same thing
 * `ip netns exec` does for the network; everything it starts (QEMU)
 * inherits the namespace. UNIX sockets live in the file system, so a
 * daemon's local socket is reachable from outside its namespace.
 */
#pragma once

#include <glib.h>
#include <stdbool.h>

typedef struct {
    bool loopback;  /* no namespaces: both hosts on 127.0.0.1 */
    char *why;      /* why loopback (NULL otherwise) */
    char *name[2];  /* namespace names; NULL in loopback mode */
    char *path[2];  /* /run/netns/NAME; NULL in loopback mode */
    char *addr[2];  /* each host's address */
    char *dev[2];   /* each side's veth device; NULL in loopback mode */
} TestNetns;

/* Create the pair (or decide on loopback, with a g_test_message saying
 * why); never NULL. */
TestNetns *test_netns_new(void);
/* Delete the namespaces (their veth goes with them) and free. Accepts NULL. */
void test_netns_free(TestNetns *ns);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TestNetns, test_netns_free)

/* In a child between fork and exec: enter the network namespace at path
 * (NULL: stay). On failure the child writes why to stderr and exits 127. */
void test_netns_enter(const char *path);

/* Run `ip ARGS...` (NULL-terminated) in namespace side 0 or 1 (in the
 * current one in loopback mode); 0, or -1 with a g_test_message. */
int test_netns_ip(const TestNetns *ns, int side, const char *const *args);
