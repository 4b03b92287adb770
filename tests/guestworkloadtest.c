/*
 * The Linux test guest (docs/test-guest.md) on both real QEMUs: it boots
 * under TCG, its workloads run (the disk writer's sequence numbers, the
 * RAM dirtier's verified generations), and after a QMP `stop` the disk
 * holds a consistent ring whose highest sequence number is at least the
 * last one the guest reported. A guest booted again on the same disk (on
 * the other QEMU) continues the sequence. The checker itself
 * (tests/guest/seqcheck) is first shown to catch lost, torn and foreign
 * blocks on synthetic images.
 *
 * The guest artefacts are built by scripts/build-test-guest.sh when
 * missing; the test skips, saying why, only when that fails.
 */
#define HO_LOG_MODULE "tests.guestworkload"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ho_error.h"
#include "ho_json.h"
#include "ho_log.h"
#include "qemu_monitor.h"
#include "testqemu.h"
#include "testutils.h"

#include "guest/seqformat.h"
#include "guest/testguest.h"

#define QMP_WAIT_MS 30000
/* Booting takes seconds under TCG; leave room for a loaded CI machine. */
#define BOOT_WAIT_MS 180000
#define LINE_WAIT_MS 60000
#define DISK_MIB 16
#define DISK_RING (DISK_MIB * 1024 * 1024 / SEQ_BLOCK_SIZE)

/* --- the checker on synthetic images --- */

typedef enum {
    DAMAGE_NONE,
    DAMAGE_LOST,    /* the block of seq 140 still holds seq 76 */
    DAMAGE_TORN,    /* one filler byte flipped in block 10 */
    DAMAGE_HOLE,    /* block 4 zeroed (seq 5 lost) */
    DAMAGE_FOREIGN, /* block 7 overwritten with text */
    DAMAGE_RING,    /* block 3 claims another ring size */
    DAMAGE_QCOW2,   /* no damage, but checked as a qcow2 image */
} Damage;

typedef struct {
    const char *name;
    guint64 ring; /* blocks in the ring the writer used */
    guint64 image_blocks;
    guint64 max_seq; /* seqs 1..max_seq written in order */
    Damage damage;
    const char *min_seq; /* --min-seq, or NULL */
    int status;          /* expected exit status */
    const char *summary; /* expected stdout */
    const char *problem; /* expected in stderr, or NULL */
} SeqcheckCase;

static const SeqcheckCase seqcheck_cases[] = {
    {.name = "empty",
     .ring = 64,
     .image_blocks = 64,
     .max_seq = 0,
     .summary = "max_seq=0 blocks=64 valid=0\n"},
    {.name = "partial",
     .ring = 64,
     .image_blocks = 64,
     .max_seq = 10,
     .summary = "max_seq=10 blocks=64 valid=10\n"},
    {.name = "wrapped",
     .ring = 64,
     .image_blocks = 64,
     .max_seq = 150,
     .summary = "max_seq=150 blocks=64 valid=64\n"},
    {.name = "ring-smaller-than-image",
     .ring = 48,
     .image_blocks = 64,
     .max_seq = 100,
     .summary = "max_seq=100 blocks=48 valid=48\n"},
    {.name = "min-seq-met",
     .ring = 64,
     .image_blocks = 64,
     .max_seq = 150,
     .min_seq = "150",
     .summary = "max_seq=150 blocks=64 valid=64\n"},
    {.name = "min-seq-missed",
     .ring = 64,
     .image_blocks = 64,
     .max_seq = 150,
     .min_seq = "151",
     .status = 1,
     .summary = "max_seq=150 blocks=64 valid=64\n",
     .problem = "max_seq 150 is below the minimum 151"},
    {.name = "lost-write",
     .ring = 64,
     .image_blocks = 64,
     .max_seq = 150,
     .damage = DAMAGE_LOST,
     .status = 1,
     .summary = "max_seq=150 blocks=64 valid=64\n",
     .problem = "block 11: holds seq 76, expected 140 (a lost write)"},
    {.name = "torn",
     .ring = 64,
     .image_blocks = 64,
     .max_seq = 150,
     .damage = DAMAGE_TORN,
     .status = 1,
     .summary = "max_seq=150 blocks=64 valid=63\n",
     .problem = "block 10: bad checksum (torn or corrupted)"},
    {.name = "hole",
     .ring = 64,
     .image_blocks = 64,
     .max_seq = 10,
     .damage = DAMAGE_HOLE,
     .status = 1,
     .summary = "max_seq=10 blocks=64 valid=9\n",
     .problem = "block 4: never written, expected seq 5 (a lost write)"},
    {.name = "foreign",
     .ring = 64,
     .image_blocks = 64,
     .max_seq = 150,
     .damage = DAMAGE_FOREIGN,
     .status = 1,
     .summary = "max_seq=150 blocks=64 valid=63\n",
     .problem = "block 7: no magic (foreign data)"},
    {.name = "other-ring",
     .ring = 64,
     .image_blocks = 64,
     .max_seq = 150,
     .damage = DAMAGE_RING,
     .status = 1,
     .summary = "max_seq=150 blocks=64 valid=63\n",
     .problem = "block 3: ring of 32 blocks, earlier blocks say 64"},
    {.name = "qcow2",
     .ring = 64,
     .image_blocks = 64,
     .max_seq = 150,
     .damage = DAMAGE_QCOW2,
     .summary = "max_seq=150 blocks=64 valid=64\n"},
};

static void
write_block(int fd, guint64 pos, const unsigned char *block)
{
    g_assert_cmpint(pwrite(fd, block, SEQ_BLOCK_SIZE, (off_t)(pos * SEQ_BLOCK_SIZE)), ==,
                    SEQ_BLOCK_SIZE);
}

static void
make_image(const SeqcheckCase *c, const char *path)
{
    unsigned char block[SEQ_BLOCK_SIZE];
    guint64 s;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, (off_t)(c->image_blocks * SEQ_BLOCK_SIZE)), ==, 0);
    for (s = 1; s <= c->max_seq; s++) {
        /* The lost write: seq 140 never replaced seq 76 in block 11. */
        if (c->damage == DAMAGE_LOST && s == 140)
            continue;
        seq_block_fill(block, s, c->ring, s * 1000);
        write_block(fd, (s - 1) % c->ring, block);
    }
    switch (c->damage) {
    case DAMAGE_TORN:
        g_assert_cmpint(pread(fd, block, SEQ_BLOCK_SIZE, 10 * SEQ_BLOCK_SIZE), ==, SEQ_BLOCK_SIZE);
        block[3000] ^= 0x40;
        write_block(fd, 10, block);
        break;
    case DAMAGE_HOLE:
        memset(block, 0, sizeof(block));
        write_block(fd, 4, block);
        break;
    case DAMAGE_FOREIGN:
        memset(block, 0, sizeof(block));
        strcpy((char *)block, "not a sequence block");
        write_block(fd, 7, block);
        break;
    case DAMAGE_RING:
        /* Well-formed, for a ring of 32: seq 100 maps to index 3 there too. */
        seq_block_fill(block, 100, 32, 0);
        write_block(fd, 3, block);
        break;
    default:
        break;
    }
    g_assert_cmpint(close(fd), ==, 0);
}

static void
to_qcow2(const char *raw, const char *qcow2)
{
    const char *argv[] = {"qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow2, NULL};
    g_autoptr(GError) err = NULL;
    g_autofree char *errout = NULL;
    int status = 0;

    if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL,
                      NULL, NULL, NULL, &errout, &status, &err))
        g_error("cannot run qemu-img: %s", err->message);
    if (!g_spawn_check_wait_status(status, &err))
        g_error("qemu-img convert failed: %s: %s", err->message, errout);
}

static void
test_seqcheck(gconstpointer data)
{
    const SeqcheckCase *c = data;
    g_autofree char *dir = test_make_tmpdir("seqcheck");
    g_autofree char *raw = g_build_filename(dir, "disk.raw", NULL);
    g_autofree char *qcow2 = g_build_filename(dir, "disk.qcow2", NULL);
    const char *args[] = {"--min-seq", c->min_seq, NULL};
    TestGuestSeqcheck res;
    const char *out_end;
    g_autofree char *summary = NULL;

    make_image(c, raw);
    if (c->damage == DAMAGE_QCOW2)
        to_qcow2(raw, qcow2);
    g_assert_true(test_guest_seqcheck(c->damage == DAMAGE_QCOW2 ? qcow2 : raw,
                                      c->min_seq ? args : NULL, &res));
    /* stdout comes first in res.output: the summary is its first line. */
    out_end = strchr(res.output, '\n');
    g_assert_nonnull(out_end);
    summary = g_strndup(res.output, out_end + 1 - res.output);
    if (res.status != c->status || !g_str_equal(summary, c->summary) ||
        (c->problem && !strstr(res.output, c->problem)) || (!c->problem && out_end[1])) {
        fprintf(stderr,
                "seqcheck on '%s': status %d (expected %d), output:\n%s\n"
                "expected:\n%s%s\n",
                c->name, res.status, c->status, res.output, c->summary,
                c->problem ? c->problem : "");
        g_error("seqcheck on '%s' did not give the expected result: details on stderr", c->name);
    }
    test_guest_seqcheck_clear(&res);
}

/* --- the guest on real QEMU --- */

/* One booted guest: its QEMU, monitor, console and disk. */
typedef struct {
    const TestQemuBinary *bin;
    TestQemu *qemu;
    QemuMonitor *mon;
    TestGuestConsole *con;
    guint cursor;   /* console lines already consumed */
    gint64 boot_ms; /* from spawning QEMU to READY */
    char *ready;    /* the READY line */
} Guest;


static const TestGuestImage *
need_image(void)
{
    const char *why = NULL;
    const TestGuestImage *img = test_guest_image(&why);

    if (!img)
        test_qemu_missing("no test guest: %s", why);
    return img;
}

static void G_GNUC_NORETURN
guest_fail(Guest *g, const char *what)
{
    g_autofree char *tail = test_guest_console_tail(g->con, 40);
    g_autofree char *log = test_qemu_log(g->qemu);

    /* Details on stderr: TAP output takes one line per message. */
    fprintf(stderr, "%s on %s (%s)\nguest console (last lines):\n%s\nQEMU log:\n%s\n", what,
            g->bin->name, test_guest_console_status(g->con), tail, log ? log : "");
    g_error("%.*s on %s (%s): details on stderr", (int)strcspn(what, "\n"), what, g->bin->name,
            test_guest_console_status(g->con));
}

/* Wait for a line starting with prefix after *cursor (NULL: the guest's
 * own cursor); each stream of lines (disk, RAM) can keep its own. */
static const char *
guest_wait(Guest *g, const char *prefix, guint *cursor, guint timeout_ms)
{
    const char *line =
        test_guest_console_wait(g->con, prefix, cursor ? cursor : &g->cursor, timeout_ms);

    if (!line) {
        g_autofree char *what = g_strdup_printf("no '%s' line", prefix);

        guest_fail(g, what);
    }
    return line;
}

static void
guest_boot(Guest *g, const TestQemuBinary *bin, const TestGuestImage *img, const char *dir,
           const char *disk, const char *cmdline)
{
    g_autoptr(GPtrArray) args = g_ptr_array_new_with_free_func(g_free);
    TestGuestArgs opts = {
        .image = img,
        .bin = bin,
        .disk_path = disk,
        .cmdline_extra = cmdline,
    };
    gint64 start;

    memset(g, 0, sizeof(*g));
    g->bin = bin;
    g->con = test_guest_console_new(dir);
    opts.console = g->con;
    test_guest_add_args(args, &opts);
    g_ptr_array_add(args, NULL);

    start = g_get_monotonic_time();
    /* TCG: the guest kernel does not boot under nested KVM here (DESIGN §6). */
    g->qemu = test_qemu_start(bin, "tcg", (const char *const *)args->pdata);
    g_assert_nonnull(g->qemu);
    g->mon = qemu_monitor_open_unix(g->qemu->qmp_path, bin->name, NULL, NULL, NULL);
    g_assert_nonnull(g->mon);
    if (qemu_monitor_wait_ready(g->mon, QMP_WAIT_MS) < 0)
        guest_fail(g, "no QMP");
    g->ready = g_strdup(guest_wait(g, "HANDOVER-GUEST READY", NULL, BOOT_WAIT_MS));
    g->boot_ms = (g_get_monotonic_time() - start) / 1000;
}

/* Stop the vCPUs and collect what the guest printed before that. */
static void
guest_stop(Guest *g)
{
    g_autoptr(json_object) ret = NULL;
    json_object *status = NULL;

    g_assert_cmpint(qemu_monitor_send_sync(g->mon, "stop", NULL, -1, NULL, QMP_WAIT_MS), ==, 0);
    g_assert_cmpint(qemu_monitor_send_sync(g->mon, "query-status", NULL, -1, &ret, QMP_WAIT_MS),
                    ==, 0);
    g_assert_true(json_object_object_get_ex(ret, "status", &status));
    g_assert_cmpstr(json_object_get_string(status), ==, "paused");
    test_guest_console_drain(g->con);
}

static void
guest_quit(Guest *g)
{
    g_assert_cmpint(qemu_monitor_send_sync(g->mon, "quit", NULL, -1, NULL, QMP_WAIT_MS), ==, 0);
    g_assert_true(test_qemu_wait_exit(g->qemu, QMP_WAIT_MS));
    g_assert_true(WIFEXITED(g->qemu->status));
    g_assert_cmpint(WEXITSTATUS(g->qemu->status), ==, 0);
}

static void
guest_clear(Guest *g)
{
    g_clear_pointer(&g->mon, qemu_monitor_unref);
    g_clear_pointer(&g->qemu, test_qemu_free);
    g_clear_pointer(&g->con, test_guest_console_free);
    g_clear_pointer(&g->ready, g_free);
}

/* The last HANDOVER-SEQ the guest printed; fails on a guest error or BAD line. */
static guint64
guest_scan(Guest *g)
{
    guint n, total = test_guest_console_lines(g->con);
    guint64 last = 0;

    for (n = 0; n < total; n++) {
        const char *line = test_guest_console_line(g->con, n);

        if (!line)
            continue;
        if (g_str_has_prefix(line, "HANDOVER-SEQ "))
            last = MAX(last, test_guest_seq_of(line));
        /* The guest's own complaints; kernel messages are not judged here. */
        if (g_str_has_prefix(line, "HANDOVER-") &&
            (strstr(line, "HANDOVER-RAM BAD") || strstr(line, " error")))
            guest_fail(g, line);
    }
    return last;
}

static char *
make_disk(const char *dir)
{
    char *path = g_build_filename(dir, "disk.raw", NULL);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, (off_t)DISK_MIB * 1024 * 1024), ==, 0);
    g_assert_cmpint(close(fd), ==, 0);
    return path;
}

/* seqcheck must find the disk consistent, at least at last_printed. */
static guint64
check_disk(Guest *g, const char *disk, guint64 last_printed)
{
    TestGuestSeqcheck res;
    guint64 max_seq;

    g_assert_true(test_guest_seqcheck(disk, NULL, &res));
    if (res.status != 0 || res.max_seq < last_printed || res.blocks != DISK_RING ||
        res.valid != MIN(res.max_seq, (guint64)DISK_RING)) {
        g_autofree char *what =
            g_strdup_printf("seqcheck: status %d, expected 0 with max_seq >= %" G_GUINT64_FORMAT
                            " blocks=%d valid=min(max_seq, blocks):\n%s",
                            res.status, last_printed, DISK_RING, res.output);

        guest_fail(g, what);
    }
    max_seq = res.max_seq;
    test_guest_seqcheck_clear(&res);
    return max_seq;
}

static void
test_workload(gconstpointer data)
{
    const TestQemuBinary *bin = test_qemu_need(data);
    const TestGuestImage *img;
    g_autofree char *dir = NULL;
    g_autofree char *disk = NULL;
    g_autofree char *expect_start = NULL;
    const char *line;
    Guest g;
    guint64 last, max_seq, seq_lines = 0;
    guint disk_cursor, ram_cursor;
    int i;

    if (!bin || !(img = need_image()))
        return;
    dir = test_make_tmpdir("guest");
    disk = make_disk(dir);
    guest_boot(&g, bin, img, dir, disk, "handover.workload=disk,ram handover.ram_mib=32");

    /* The two workloads print independently: one cursor each. */
    disk_cursor = ram_cursor = g.cursor;
    expect_start = g_strdup_printf("HANDOVER-DISK start seq=1 ring=%d dev=/dev/vda", DISK_RING);
    line = guest_wait(&g, "HANDOVER-DISK start", &disk_cursor, LINE_WAIT_MS);
    if (!g_str_equal(line, expect_start))
        guest_fail(&g, line);
    for (i = 0; i < 3; i++)
        guest_wait(&g, "HANDOVER-SEQ ", &disk_cursor, LINE_WAIT_MS);
    guest_wait(&g, "HANDOVER-RAM start mib=32", &ram_cursor, LINE_WAIT_MS);
    for (i = 0; i < 2; i++)
        guest_wait(&g, "HANDOVER-RAM ok gen=", &ram_cursor, LINE_WAIT_MS);

    guest_stop(&g);
    last = guest_scan(&g);
    g_assert_cmpuint(last, >, 0);
    max_seq = check_disk(&g, disk, last);
    for (i = 0; i < (int)test_guest_console_lines(g.con); i++) {
        if (g_str_has_prefix(test_guest_console_line(g.con, i), "HANDOVER-SEQ "))
            seq_lines++;
    }
    g_test_message("%s (TCG): '%s' %" G_GINT64_FORMAT " ms after QEMU started; "
                   "%" G_GUINT64_FORMAT " writes (last reported %" G_GUINT64_FORMAT
                   ", %" G_GUINT64_FORMAT " SEQ lines) by the stop",
                   bin->name, g.ready, g.boot_ms, max_seq, last, seq_lines);
    g_test_message("guest: %s, %s", img->kernel_package, img->busybox_package);
    guest_quit(&g);
    guest_clear(&g);
}

/* A guest booted again on the same disk, on the other QEMU, continues the
 * sequence after the highest block written. */
static void
test_resume(void)
{
    const TestQemuBinary *first = test_qemu_binary("qemu-7.2");
    const TestQemuBinary *second = test_qemu_binary("qemu-10.0");
    const TestGuestImage *img;
    g_autofree char *dir = NULL;
    g_autofree char *disk = NULL;
    g_autofree char *expect = NULL;
    const char *line;
    Guest g;
    guint64 max1, max2, last;
    int i;

    if (!first->binary)
        first = second;
    if (!second->binary)
        second = first;
    if (!first->binary) {
        test_qemu_missing("no QEMU: %s; %s", test_qemu_binary("qemu-7.2")->missing,
                           test_qemu_binary("qemu-10.0")->missing);
        return;
    }
    if (!(img = need_image()))
        return;
    dir = test_make_tmpdir("resume");
    disk = make_disk(dir);

    guest_boot(&g, first, img, dir, disk, "handover.workload=disk handover.seq_every=16");
    for (i = 0; i < 3; i++)
        guest_wait(&g, "HANDOVER-SEQ ", NULL, LINE_WAIT_MS);
    guest_stop(&g);
    last = guest_scan(&g);
    max1 = check_disk(&g, disk, last);
    guest_quit(&g);
    guest_clear(&g);

    guest_boot(&g, second, img, dir, disk, "handover.workload=disk handover.seq_every=16");
    expect = g_strdup_printf("HANDOVER-DISK start seq=%" G_GUINT64_FORMAT " ring=%d dev=/dev/vda",
                             max1 + 1, DISK_RING);
    line = guest_wait(&g, "HANDOVER-DISK start", NULL, LINE_WAIT_MS);
    if (!g_str_equal(line, expect))
        guest_fail(&g, line);
    for (i = 0; i < 3; i++)
        guest_wait(&g, "HANDOVER-SEQ ", NULL, LINE_WAIT_MS);
    guest_stop(&g);
    last = guest_scan(&g);
    g_assert_cmpuint(last, >, max1);
    max2 = check_disk(&g, disk, last);
    g_test_message("%s wrote up to %" G_GUINT64_FORMAT
                   ", then %s continued up to %" G_GUINT64_FORMAT,
                   first->name, max1, second->name, max2);
    guest_quit(&g);
    guest_clear(&g);
}

int
main(int argc, char **argv)
{
    const TestQemuBinary *const *b;
    gsize i;

    g_test_init(&argc, &argv, NULL);
    ho_log_init();

    for (i = 0; i < G_N_ELEMENTS(seqcheck_cases); i++) {
        g_autofree char *path = g_strdup_printf("/guest/seqcheck/%s", seqcheck_cases[i].name);

        g_test_add_data_func(path, &seqcheck_cases[i], test_seqcheck);
    }
    for (b = test_qemu_binaries(); *b; b++) {
        g_autofree char *path = g_strdup_printf("/guest/workload/%s", (*b)->name);

        g_test_add_data_func(path, (*b)->name, test_workload);
    }
    g_test_add_func("/guest/resume", test_resume);
    return g_test_run();
}
