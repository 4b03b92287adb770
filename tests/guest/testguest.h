/*
 * The Linux test guest for real-QEMU tests (docs/test-guest.md): its
 * artefacts (built by scripts/build-test-guest.sh when missing), the QEMU
 * arguments that boot it, its serial console read as it arrives, and the
 * host-side check of the disk its writer fills (tests/guest/seqcheck).
 *
 * The guest boots only under TCG on these machines (DESIGN §6): start it
 * with test_qemu_start(bin, "tcg", args).
 */
#pragma once

#include <glib.h>
#include <stdbool.h>

#include "testqemu.h"

typedef struct {
    char *dir;             /* the output directory (.guest) */
    char *kernel;          /* vmlinuz */
    char *initrd;          /* initrd.img */
    char *kernel_package;  /* "linux-image-6.1.0-NN-cloud-amd64 VERSION" */
    char *busybox_package; /* "busybox-static VERSION" */
} TestGuestImage;

/* The guest's kernel and initramfs: scripts/build-test-guest.sh runs once
 * per process (it returns at once when nothing changed) into
 * HANDOVER_GUEST_DIR, else <srcdir>/.guest. NULL when the guest cannot be
 * had; *why (if non-NULL) then says why, for g_test_skip. */
const TestGuestImage *test_guest_image(const char **why);
/* test_guest_image(), or NULL after test_qemu_missing("no test guest: ..."). */
const TestGuestImage *test_guest_image_need(void);

/* The serial console: a UNIX socket QEMU connects to at startup; lines are
 * collected as they arrive on the default main context. */
typedef struct _TestGuestConsole TestGuestConsole;

/* Listen on dir/serial.sock; never NULL (the test aborts on failure).
 * Everything received is also appended to dir/serial.log. */
TestGuestConsole *test_guest_console_new(const char *dir);
/* Close and free. Accepts NULL. */
void test_guest_console_free(TestGuestConsole *con);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TestGuestConsole, test_guest_console_free)
/* The -chardev argument that connects a QEMU to it ("socket,id=serial0,..."). */
const char *test_guest_console_chardev(const TestGuestConsole *con);
/* Wait (bounded, no polling) for the next line at or after line number
 * *cursor that starts with prefix; on success *cursor moves past it and
 * the line is returned (borrowed, valid until the next wait). NULL on
 * timeout, when QEMU closed the console, or when the guest printed a
 * kernel panic; test_guest_console_status() says which. */
const char *test_guest_console_wait(TestGuestConsole *con, const char *prefix, guint *cursor,
                                    guint timeout_ms);
/* Read what is already buffered on the socket without waiting (call it
 * after a QMP `stop` to catch the last lines). */
void test_guest_console_drain(TestGuestConsole *con);
/* Number of complete lines received so far. */
guint test_guest_console_lines(const TestGuestConsole *con);
/* Line n (0-based, < test_guest_console_lines()), borrowed; NULL when it
 * has been dropped (only the last 100000 lines are kept). */
const char *test_guest_console_line(const TestGuestConsole *con, guint n);
/* The last n lines, one string (g_free it), for failure messages. */
char *test_guest_console_tail(const TestGuestConsole *con, guint n);
/* "ok", "timeout", "closed" or "kernel panic": why the last wait ended. */
const char *test_guest_console_status(const TestGuestConsole *con);

typedef struct {
    const TestGuestImage *image;
    const TestQemuBinary *bin; /* adds pti=on on qemu-7.2 (DESIGN §6) */
    TestGuestConsole *console;
    const char *disk_path;     /* NULL: no disk */
    const char *disk_format;   /* "raw" (NULL) or "qcow2" */
    const char *disk_node;     /* block node name; NULL: "disk0" */
    const char *cmdline_extra; /* handover.* options, may be NULL */
    guint memory_mib;          /* 0: 256 */
} TestGuestArgs;

/* Append the arguments that boot the guest (machine pc-i440fx-7.2, memory,
 * kernel, initrd, command line, console, the disk on virtio-blk-pci with
 * id "vda") to args, a GPtrArray of g_free'd strings. No accelerator: that
 * is test_qemu_start's. */
void test_guest_add_args(GPtrArray *args, const TestGuestArgs *opts);
/* The kernel command line test_guest_add_args() uses (g_free it). */
char *test_guest_cmdline(const TestQemuBinary *bin, const char *extra);

typedef struct {
    const TestGuestImage *image;
    const TestQemuBinary *bin; /* the command line's (pti=on on qemu-7.2) */
    const char *emulator;      /* <emulator>; NULL: bin's binary */
    const char *name;
    const char *uuid;          /* NULL: a random one */
    guint memory_mib;
    const char *cmdline_extra; /* handover.* options, may be NULL */
    const char *disk;          /* raw, vda */
    bool cache_none;           /* cache='none' on every disk */
    const char *qcow2;         /* a qcow2 vdb too, or NULL */
    const char *serial;        /* <serial type='file' append='on'> */
} TestGuestDomain;

/* A daemon's domain XML that boots the guest (g_free it): type 'qemu'
 * (TCG, DESIGN §6), machine 'pc' (the destination gets the source's
 * concrete machine), no reboot, virtio disks, the console in a file both
 * QEMUs of a migration append to (test_guest_file_console_new). */
char *test_guest_domain_xml(const TestGuestDomain *d);

typedef struct {
    int status; /* seqcheck's exit status: 0 consistent, 1 not, 2 cannot check */
    guint64 max_seq;
    guint64 blocks;
    guint64 valid;
    char *output; /* its stdout and stderr */
} TestGuestSeqcheck;

/* Run tests/guest/seqcheck (from HANDOVER_BUILDDIR) on an image, with
 * more arguments (NULL-terminated, may be NULL). false (and a
 * g_test_message) when it cannot run or its summary line is missing. */
bool test_guest_seqcheck(const char *image, const char *const *extra_args, TestGuestSeqcheck *res);
/* test_guest_seqcheck() with "--format format" (format may be NULL) and
 * "--min-seq min_seq"; the test fails unless it runs and exits 0. */
void test_guest_seqcheck_ok(const char *image, const char *format, guint64 min_seq,
                            TestGuestSeqcheck *res);
/* Free res's contents. */
void test_guest_seqcheck_clear(TestGuestSeqcheck *res);
/* The sequence number of a "HANDOVER-SEQ <n>" line, 0 if it is not one. */
guint64 test_guest_seq_of(const char *line);

/* ---- the console as a file (a domain's <serial type='file' append='on'>) ----
 * Both QEMUs of a migration append to one file, so it holds the guest's
 * whole story; it is read as it grows (inotify). Every line read is
 * checked: `HANDOVER-RAM BAD`, a kernel panic or `HANDOVER-GUEST error`
 * fails the test at once, showing the console's end. */
typedef struct _TestGuestFileConsole TestGuestFileConsole;

/* Create path empty and follow it; never NULL (the test aborts). */
TestGuestFileConsole *test_guest_file_console_new(const char *path);
/* Accepts NULL. */
void test_guest_file_console_free(TestGuestFileConsole *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TestGuestFileConsole, test_guest_file_console_free)
/* Wait (inotify, bounded) for a line starting with prefix at or after
 * line *cursor; moves *cursor past it and returns it (borrowed until the
 * next call). The test fails on timeout, with the console's end. */
const char *test_guest_file_console_wait(TestGuestFileConsole *c, const char *prefix,
                                         guint *cursor, guint timeout_ms);
/* Read what the file gained; the number of complete lines so far. */
guint test_guest_file_console_lines(TestGuestFileConsole *c);
/* Line n (0-based, below test_guest_file_console_lines()), borrowed. */
const char *test_guest_file_console_line(TestGuestFileConsole *c, guint n);
/* The highest HANDOVER-SEQ printed so far (0: none). */
guint64 test_guest_file_console_last_seq(TestGuestFileConsole *c);
/* Wait (bounded by timeout_ms in all) for a HANDOVER-SEQ above min at or
 * after line *cursor: the disk writer goes on. Returns its number; the
 * test fails on timeout. */
guint64 test_guest_file_console_wait_seq_above(TestGuestFileConsole *c, guint64 min,
                                               guint *cursor, guint timeout_ms);
/* The last n lines, indented, one string (g_free it). */
char *test_guest_file_console_tail(TestGuestFileConsole *c, guint n);
/* Wait until the guest is up and its workloads run: "HANDOVER-GUEST READY"
 * within boot_ms, then each within line_ms: with disk non-NULL a
 * "HANDOVER-DISK start" line containing disk ("" takes any; the test
 * fails otherwise), a "HANDOVER-SEQ", a "HANDOVER-RAM ok". */
void test_guest_file_console_wait_up(TestGuestFileConsole *c, guint *cursor, guint boot_ms,
                                     guint line_ms, const char *disk);
/* The generation of a "HANDOVER-RAM ok gen=<g>" line, 0 if it is not one. */
guint64 test_guest_ram_gen_of(const char *line);
