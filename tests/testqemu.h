/*
 * Real QEMU processes for tests: finding the two QEMUs (Debian 12's 7.2
 * and the private 10.0 from scripts/fetch-qemu10.sh), choosing KVM or TCG,
 * starting a QEMU with a QMP socket, and making sure it never outlives the
 * test: each QEMU is started with PR_SET_PDEATHSIG, so the kernel kills it
 * even when the test aborts on a failed assertion.
 */
#pragma once

#include <glib.h>

#include "qemu_process.h"
#include <stdbool.h>

typedef struct {
    const char *name;  /* "qemu-7.2", "qemu-10.0" */
    char *binary;      /* absolute path, NULL when not found */
    char **fw_dirs;    /* directories passed with -L, NULL-terminated */
    char *missing;     /* why it was not found, when binary is NULL */
} TestQemuBinary;

/* The QEMUs every real-QEMU test runs on, NULL-terminated:
 * qemu-7.2 (HANDOVER_QEMU72, else qemu-system-x86_64 on PATH) and
 * qemu-10.0 (HANDOVER_QEMU10_PREFIX, else <srcdir>/.qemu/10.0). */
const TestQemuBinary *const *test_qemu_binaries(void);
/* One of them by name, or NULL. */
const TestQemuBinary *test_qemu_binary(const char *name);
/* A resource a real-QEMU test needs is missing: skip the test saying
 * why, or fail it when HANDOVER_REQUIRE_QEMUS=1 (set by CI, where every
 * real-QEMU test must run). */
void test_qemu_missing(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
/* The named QEMU for a test that needs it: when it is missing the test is
 * skipped saying why, or fails if HANDOVER_REQUIRE_QEMUS=1 (set by CI,
 * where both QEMUs must run). Returns NULL after a skip. */
const TestQemuBinary *test_qemu_need(const char *name);
/* The same for a binary already looked up. */
const TestQemuBinary *test_qemu_need_binary(const TestQemuBinary *bin);
/* "kvm" when /dev/kvm can create a VM, else "tcg"; *why (if non-NULL)
 * says why KVM is not used. Probed once. */
const char *test_qemu_accel(const char **why);

typedef struct {
    GPid pid;
    char *dir;      /* private runtime dir (QMP socket, log) */
    char *qmp_path;
    char *log_path; /* QEMU's stdout and stderr */
    bool exited;    /* the child watch saw it exit */
    int status;     /* wait status once exited */
} TestQemu;

/* Start bin with -nodefaults -display none -no-user-config, the given
 * accel, a QMP socket in a new temp dir, and extra_args (NULL-terminated,
 * may be NULL). The QMP socket is created here and passed to QEMU, so
 * qmp_path accepts connections at once. NULL and a g_test_message when it
 * cannot start. */
TestQemu *test_qemu_start(const TestQemuBinary *bin, const char *accel,
                          const char *const *extra_args);
/* Wait up to timeout_ms for the process to exit (child watch, no
 * polling); true when it did. */
bool test_qemu_wait_exit(TestQemu *q, guint timeout_ms);
/* Kill it (SIGKILL by its pid, only if it has not exited), reap it, remove
 * its dir, free. Accepts NULL. */
void test_qemu_free(TestQemu *q);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TestQemu, test_qemu_free)
/* The log's contents (g_free it), for failure messages. */
char *test_qemu_log(const TestQemu *q);

/* QEMUs a test's own driver starts are not killed by the kernel when the
 * test dies (a domain QEMU must outlive its daemon). A test that runs a
 * driver in-process calls test_qemu_cleanup_install() once and learns each
 * QEMU pid: a failed assertion (SIGABRT, SIGTRAP), a crash, SIGTERM or the
 * exit kills whatever is still learned. Forget a pid once the driver saw
 * it exit (it may be reused). */
void test_qemu_cleanup_install(void);
void test_qemu_cleanup_learn(int pid);
void test_qemu_cleanup_forget(int pid);
/* Kill every learned pid now and forget them. */
void test_qemu_cleanup_kill(void);
/* A QemuDriverConfig spawn_hook: the real spawn, its pid learned. */
int test_qemu_spawn_learned(const QemuProcessSpawn *opts, GPid *pid, void *opaque);
