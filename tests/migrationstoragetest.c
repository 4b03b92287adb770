/*
 * Live migration with storage copy end to end on real QEMU: two handoverd
 * daemons on this machine as two hosts (network namespaces where they can
 * be made, else loopback; tests/testnetns.h), the Linux test guest
 * (docs/test-guest.md) under TCG with two disks, driven through the
 * `handover` CLI. Each host has a directory of its own for the disks; the
 * destination's definition (--xml) puts them there, since both "hosts"
 * share one file system.
 *
 * The guest's disks: vda, a raw image the workload writes sequence numbers
 * to all the time (mirrored while it changes), and vdb, a qcow2 image of
 * 1 GiB filled with patterns by qemu-io before the guest starts (the guest
 * never writes it).
 *
 * Cases, on qemu-7.2 -> 7.2, 10.0 -> 10.0 and 7.2 -> 10.0:
 *   copy         migrate --live --copy-storage-all --verbose --xml: the
 *                destination runs the guest, the source QEMU is gone; the
 *                qcow2 images compare equal (qemu-img compare -U, the
 *                destination paused); the raw disk on the destination holds
 *                a consistent ring with every write the guest reported
 *                (seqcheck), beyond the pre-migration sequence; invariant 1
 *                from both flight recordings; domjobinfo --completed has
 *                the disk totals and the switchover split.
 *   abort-mirror domjobabort once the mirrors copied something (a
 *                progress event of the "mirror" phase; 1 GiB of data to
 *                copy keeps the job there): "cancelled", the job never
 *                reached perform, the source runs on with the same QEMU,
 *                its qcow2 unchanged (SHA-256), nothing on the destination
 *                (no domain, no QEMU, no image it created).
 *   abort-perform the same in perform (--bandwidth 1 after the mirrors
 *                were ready).
 *   dst-killed   kill -9 of the destination QEMU during the mirror: the
 *                migration fails, the source runs on, the destination's
 *                images are removed.
 *   copy-inc     --copy-storage-inc with the qcow2 an overlay on a backing
 *                file at one path both sides see: the chains compare equal,
 *                the destination's overlay has the source's backing file,
 *                and its top alone equals the source's top alone (only the
 *                top was copied).
 *
 * The pause (source STOP -> destination RESUME, from the recordings) and
 * the switchover split domjobinfo reports are printed, never asserted.
 */
#define HO_LOG_MODULE "tests.migrationstorage"

#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <glib.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ho_error.h"
#include "ho_json.h"
#include "ho_rpc_client.h"
#include "recording.h"
#include "testdaemon.h"
#include "testmigration.h"
#include "testnetns.h"
#include "testqemu.h"
#include "testutils.h"

#include "guest/testguest.h"

#define BOOT_WAIT_MS 180000
#define LINE_WAIT_MS 60000
#define MIGRATE_WAIT_MS 600000
#define PHASE_WAIT_MS 300000
#define EXIT_WAIT_MS 30000
#define RAW_MIB 16
#define QCOW_MIB 1024
#define GUEST_MIB 256
#define MIB ((int64_t)1024 * 1024)
/* handoverd's default migration_mirror_buf_size, which the daemons keep. */
#define MIRROR_BUF_SIZE (4 * MIB)
/* DISKS_INC: data in the backing file, and in the overlay on it. */
#define INC_BACKING_MIB 96
#define INC_TOP_MIB 24
#define WORKLOAD "handover.workload=disk,ram handover.ram_rate=8 handover.disk_rate=100"

typedef struct {
    const char *name;
    const char *src;
    const char *dst;
} QemuPair;

static const QemuPair pairs[] = {
    {"7.2-to-7.2", "qemu-7.2", "qemu-7.2"},
    {"10.0-to-10.0", "qemu-10.0", "qemu-10.0"},
    {"7.2-to-10.0", "qemu-7.2", "qemu-10.0"},
};

/* ---- images ---- */

/* Run a program to its end; exit status, its output in *out (may be NULL). */
static int
run_prog(const char *const *argv, char **out)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *o = NULL;
    g_autofree char *e = NULL;
    g_autofree char *cmd = g_strjoinv(" ", (char **)argv);
    int status = 0;

    if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &o, &e,
                      &status, &err))
        g_error("cannot run '%s': %s", cmd, err->message);
    if (out)
        *out = g_strconcat(o, e, NULL);
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}
#define RUN(out, ...) run_prog((const char *const[]){__VA_ARGS__, NULL}, (out))

static void
run_ok(const char *const *argv)
{
    g_autofree char *out = NULL;
    g_autofree char *cmd = g_strjoinv(" ", (char **)argv);
    int rc = run_prog(argv, &out);

    if (rc != 0)
        g_error("'%s' exited %d:\n%s", cmd, rc, out);
}
#define RUN_OK(...) run_ok((const char *const[]){__VA_ARGS__, NULL})

static void
make_raw(const char *path, guint mib)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, (off_t)mib * 1024 * 1024), ==, 0);
    close(fd);
}

/* SHA-256 of a file's bytes (g_free it). */
static char *
file_sha256(const char *path)
{
    g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
    g_autofree guchar *buf = g_malloc(1 << 20);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        g_error("open '%s': %s", path, g_strerror(errno));
    while ((n = read(fd, buf, 1 << 20)) > 0)
        g_checksum_update(sum, buf, n);
    g_assert_cmpint(n, ==, 0);
    close(fd);
    return g_strdup(g_checksum_get_string(sum));
}

/* The entries of a directory (sorted, g_strfreev). */
static char **
dir_entries(const char *dir)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    g_autoptr(GPtrArray) names = g_ptr_array_new();
    const char *n;

    g_assert_nonnull(d);
    while ((n = g_dir_read_name(d)))
        g_ptr_array_add(names, g_strdup(n));
    g_ptr_array_sort(names, (GCompareFunc)g_strcmp0);
    g_ptr_array_add(names, NULL);
    return (char **)g_ptr_array_free(g_steal_pointer(&names), FALSE);
}

/* ---- two hosts and a guest with two disks ---- */

typedef enum {
    DISKS_COPY = 0,  /* qcow2 with 128 MiB of data */
    DISKS_BIG,       /* qcow2 full of data (1 GiB): a long mirror */
    DISKS_INC,       /* qcow2 overlay on a backing file both sides see */
} DiskSetup;

typedef struct {
    const QemuPair *pair;
    const TestQemuBinary *bin[2];
    TestNetns *net;
    TestDaemon *host[2];
    char *dir;          /* shared: console, backing file */
    char *side_dir[2];  /* each host's own disks */
    char *raw[2];       /* vda on each side */
    char *qcow[2];      /* vdb on each side */
    char *backing;      /* DISKS_INC: the shared backing file */
    char *xml[2];       /* each side's definition */
    char *name;
    TestGuestFileConsole *con;
    guint cursor;
    pid_t src_pid;
} Hosts;

static TestDaemon *
host_start(Hosts *h, int side)
{
    g_autofree char *tag = g_strdup_printf("%s-%s", side ? "dst" : "src", h->pair->name);
    TestDaemonOpts opts = {
        .tag = tag,
        .netns_path = h->net->path[side],
        .listen_address = h->net->addr[side],
        .migration_address = h->net->addr[side],
        .migration_port_min = side ? 49184 : 49152,
        .migration_port_max = side ? 49215 : 49183,
        .default_emulator = h->bin[side]->binary,
        .record = true,
        /* Separate NBD ranges too (loopback shares one port space). */
        .extra_conf = side ? "nbd_port_min = 10840\nnbd_port_max = 10871\n"
                           : "nbd_port_min = 10808\nnbd_port_max = 10839\n"
                             "migration_progress_interval = 200\n",
    };

    return test_daemon_start(&opts);
}

static void
make_disks(Hosts *h, DiskSetup setup)
{
    make_raw(h->raw[0], RAW_MIB);
    switch (setup) {
    case DISKS_COPY:
        RUN_OK("qemu-img", "create", "-q", "-f", "qcow2", h->qcow[0], "1G");
        RUN_OK("qemu-io", "-f", "qcow2", "-c", "write -q -P 0xa5 0 64M", "-c",
               "write -q -P 0x3c 512M 32M", "-c", "write -q -P 0x5a 992M 32M", h->qcow[0]);
        break;
    case DISKS_BIG:
        RUN_OK("qemu-img", "create", "-q", "-f", "qcow2", h->qcow[0], "1G");
        RUN_OK("qemu-io", "-f", "qcow2", "-c", "write -q -P 0xa5 0 512M", "-c",
               "write -q -P 0x3c 512M 512M", h->qcow[0]);
        break;
    case DISKS_INC:
        h->backing = g_build_filename(h->dir, "base.qcow2", NULL);
        RUN_OK("qemu-img", "create", "-q", "-f", "qcow2", h->backing, "1G");
        RUN_OK("qemu-io", "-f", "qcow2", "-c", "write -q -P 0x11 0 64M", "-c",
               "write -q -P 0x22 256M 32M", h->backing);
        RUN_OK("qemu-img", "create", "-q", "-f", "qcow2", "-b", h->backing, "-F", "qcow2",
               h->qcow[0]);
        /* The top: part over the backing file's data, part beside it. */
        RUN_OK("qemu-io", "-f", "qcow2", "-c", "write -q -P 0x33 32M 16M", "-c",
               "write -q -P 0x44 768M 8M", h->qcow[0]);
        break;
    }
}

/* Both hosts, each with its disk directory, and the guest running its
 * workloads on the source. NULL when a QEMU or the guest is missing. */
static Hosts *
hosts_new(guint pair_index, const char *case_name, DiskSetup setup)
{
    const QemuPair *pair = &pairs[pair_index];
    const TestQemuBinary *src_bin = test_qemu_need(pair->src);
    const TestQemuBinary *dst_bin = src_bin ? test_qemu_need(pair->dst) : NULL;
    const TestGuestImage *img;
    g_autofree char *serial = NULL;
    g_autofree char *uuid = g_uuid_string_random();
    g_autofree char *qemu_img = g_find_program_in_path("qemu-img");
    g_autofree char *qemu_io = g_find_program_in_path("qemu-io");
    Hosts *h;
    int side;

    if (!src_bin || !dst_bin)
        return NULL;
    if (!qemu_img || !qemu_io) {
        test_qemu_missing("no qemu-img or qemu-io in PATH");
        return NULL;
    }
    img = test_guest_image_need();
    if (!img)
        return NULL;
    h = g_new0(Hosts, 1);
    h->pair = pair;
    h->bin[0] = src_bin;
    h->bin[1] = dst_bin;
    h->name = g_strdup_printf("stor-%s", case_name);
    h->dir = test_make_tmpdir("storage");
    for (side = 0; side < 2; side++) {
        h->side_dir[side] = g_build_filename(h->dir, side ? "dst" : "src", NULL);
        g_assert_cmpint(g_mkdir_with_parents(h->side_dir[side], 0700), ==, 0);
        h->raw[side] = g_build_filename(h->side_dir[side], "seq.raw", NULL);
        h->qcow[side] = g_build_filename(h->side_dir[side], "data.qcow2", NULL);
    }
    make_disks(h, setup);

    h->net = test_netns_new();
    h->host[0] = host_start(h, 0);
    h->host[1] = host_start(h, 1);

    serial = g_build_filename(h->dir, "serial.log", NULL);
    h->con = test_guest_file_console_new(serial);
    for (side = 0; side < 2; side++) {
        g_autofree char *xml = test_guest_domain_xml(&(TestGuestDomain){
            .image = img,
            .bin = h->bin[0],
            .emulator = h->bin[side]->binary,
            .name = h->name,
            .uuid = uuid,
            .memory_mib = GUEST_MIB,
            .cmdline_extra = WORKLOAD,
            .disk = h->raw[side],
            .cache_none = true,
            .qcow2 = h->qcow[side],
            .serial = serial,
        });

        h->xml[side] = g_build_filename(h->dir, side ? "dst.xml" : "src.xml", NULL);
        g_assert_true(g_file_set_contents(h->xml[side], xml, -1, NULL));
    }
    h->src_pid = test_daemon_define_start(h->host[0], h->xml[0], h->name);

    /* The writer must own the raw disk, not the qcow2 one. */
    test_guest_file_console_wait_up(h->con, &h->cursor, BOOT_WAIT_MS, LINE_WAIT_MS,
                                    "dev=/dev/vda");
    return h;
}

static void
hosts_free(Hosts *h)
{
    int side;

    if (!h)
        return;
    test_daemon_free(h->host[0]);
    test_daemon_free(h->host[1]);
    test_netns_free(h->net);
    test_guest_file_console_free(h->con);
    /* The images are big: gone now, not at the end of the run. */
    for (side = 0; side < 2; side++) {
        (void)unlink(h->raw[side]);
        (void)unlink(h->qcow[side]);
        g_free(h->raw[side]);
        g_free(h->qcow[side]);
        g_free(h->side_dir[side]);
        g_free(h->xml[side]);
    }
    if (h->backing)
        (void)unlink(h->backing);
    g_free(h->backing);
    g_free(h->dir);
    g_free(h->name);
    g_free(h);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Hosts, hosts_free)

static void
assert_state(const Hosts *h, int side, const char *want)
{
    test_daemon_assert_state(h->host[side], h->name, side ? "destination" : "source", want);
}

static void
assert_contains(const char *haystack, const char *needle, const char *what)
{
    if (!strstr(haystack, needle))
        g_error("'%s' not in %s:\n%s", needle, what, haystack);
}

/* ---- migrating ---- */

/* `handover migrate --live --verbose --copy-storage-all|inc --xml DST.xml
 * [extra...] NAME URI` in the background. */
static TestCliJob *
migrate_spawn(const Hosts *h, bool inc, const char *const *extra)
{
    g_autoptr(GPtrArray) args = g_ptr_array_new();

    g_ptr_array_add(args, (char *)"migrate");
    g_ptr_array_add(args, (char *)"--live");
    g_ptr_array_add(args, (char *)"--verbose");
    g_ptr_array_add(args, (char *)(inc ? "--copy-storage-inc" : "--copy-storage-all"));
    g_ptr_array_add(args, (char *)"--xml");
    g_ptr_array_add(args, h->xml[1]);
    for (; extra && *extra; extra++)
        g_ptr_array_add(args, (char *)*extra);
    g_ptr_array_add(args, h->name);
    g_ptr_array_add(args, h->host[1]->peer_uri);
    g_ptr_array_add(args, NULL);
    return test_cli_spawn(h->host[0], (const char *const *)args->pdata);
}

/* Stop the guest on side (QMP stop drains its I/O), read the console to
 * its end, and check the raw disk there: a consistent ring holding every
 * write the guest reported and more than min_above. Leaves it paused. */
static void
suspend_and_check_seq(Hosts *h, int side, guint64 min_above)
{
    TestGuestSeqcheck res = {0};
    guint64 last;

    g_free(TEST_CLI_OK(h->host[side], "suspend", h->name));
    last = test_guest_file_console_last_seq(h->con);
    test_guest_seqcheck_ok(h->raw[side], "raw", last, &res);
    g_test_message("raw disk on the %s: max_seq=%" G_GUINT64_FORMAT " valid=%" G_GUINT64_FORMAT
                   " (last reported %" G_GUINT64_FORMAT ", before the migration %" G_GUINT64_FORMAT
                   ")",
                   side ? "destination" : "source", res.max_seq, res.valid, last, min_above);
    g_assert_cmpuint(res.max_seq, >=, last);
    g_assert_cmpuint(res.max_seq, >, min_above);
    test_guest_seqcheck_clear(&res);
}

/* The destination ends up with nothing: no domain, no QEMU, no image. */
static void
assert_destination_empty(Hosts *h)
{
    g_autoptr(GArray) kids = test_daemon_children(h->host[1]);
    g_autoptr(json_object) all = NULL;
    g_auto(GStrv) left = NULL;
    guint i;

    for (i = 0; i < kids->len; i++) {
        pid_t kid = g_array_index(kids, pid_t, i);

        test_daemon_track_pid(kid);
        if (!test_pid_wait_exit(kid, EXIT_WAIT_MS))
            g_error("destination process %d still runs", (int)kid);
    }
    all = test_daemon_list_emptied(h->host[1], EXIT_WAIT_MS);
    if (json_object_array_length(all) != 0)
        g_error("the destination lists domains: %s", json_object_to_json_string(all));
    left = dir_entries(h->side_dir[1]);
    if (left[0]) {
        g_autofree char *names = g_strjoinv(", ", left);

        g_error("the destination left files in its disk directory: %s", names);
    }
}

/* After a migration that did not happen: the source runs on (same QEMU,
 * workload advancing), its qcow2 unchanged, nothing on the destination,
 * and the recordings show no handover. */
static void
assert_source_kept(Hosts *h, gint64 since_us, const char *sha_before)
{
    g_autoptr(TestRecording) src = NULL;
    g_autoptr(TestRecording) dst = NULL;
    g_autofree char *why = NULL;
    g_autofree char *sha_after = NULL;
    guint64 last;

    assert_state(h, 0, "running");
    g_assert_cmpint(test_daemon_domain_pid(h->host[0], h->name), ==, h->src_pid);
    last = test_guest_file_console_last_seq(h->con);
    (void)test_guest_file_console_wait_seq_above(h->con, last, &h->cursor, LINE_WAIT_MS);
    assert_destination_empty(h);
    src = test_recording_load(h->host[0]->record_path, NULL);
    dst = test_recording_load(h->host[1]->record_path, NULL);
    if (!test_recording_check_no_handover(src, dst, since_us, &why))
        g_error("%s", why);
    sha_after = file_sha256(h->qcow[0]);
    g_assert_cmpstr(sha_after, ==, sha_before);
    suspend_and_check_seq(h, 0, 0);
}

/* A recording's lines on monitor side from since_us on (commands, replies,
 * events), each cut at 300 bytes, for failure messages (g_free it). */
static char *
recording_sent_text(const char *path, const char *side, gint64 since_us)
{
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;
    g_autofree char *label = g_strdup_printf("\"side\":\"%s\"", side);
    GString *out = g_string_new(NULL);
    guint i;

    if (!g_file_get_contents(path, &text, NULL, NULL))
        return g_string_free(out, FALSE);
    lines = g_strsplit(text, "\n", -1);
    for (i = 0; lines[i]; i++) {
        gint64 ts;

        if (!strstr(lines[i], label) || !g_str_has_prefix(lines[i], "{\"ts\":"))
            continue;
        ts = g_ascii_strtoll(lines[i] + 6, NULL, 10);
        if (ts >= since_us && !strstr(lines[i], "\"query-"))
            g_string_append_printf(out, "  %.300s\n", lines[i]);
    }
    return g_string_free(out, FALSE);
}

/* How many BLOCK_JOB_COMPLETED or BLOCK_JOB_CANCELLED events QEMU sent for
 * job_id on monitor side from since_us on: the job ended. */
static guint
recording_count_job_ends(const char *path, const char *side, gint64 since_us, const char *job_id)
{
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;
    guint n = 0;
    guint i;

    if (!g_file_get_contents(path, &text, NULL, NULL))
        return 0;
    lines = g_strsplit(text, "\n", -1);
    for (i = 0; lines[i]; i++) {
        g_autoptr(json_object) line = NULL;
        json_object *msg = NULL;
        json_object *data = NULL;
        const char *line_side = NULL;
        const char *event = NULL;
        const char *device = NULL;
        int64_t ts = 0;

        if (!strstr(lines[i], "BLOCK_JOB_"))
            continue;
        line = ho_json_parse(lines[i], strlen(lines[i]));
        if (!line || ho_json_get_int64(line, "ts", &ts) < 0 || ts < since_us ||
            ho_json_opt_string(line, "side", &line_side) <= 0 || !g_str_equal(line_side, side) ||
            ho_json_opt_object(line, "msg", &msg) <= 0 ||
            ho_json_opt_string(msg, "event", &event) <= 0 ||
            (!g_str_equal(event, "BLOCK_JOB_COMPLETED") &&
             !g_str_equal(event, "BLOCK_JOB_CANCELLED")) ||
            ho_json_opt_object(msg, "data", &data) <= 0 ||
            ho_json_opt_string(data, "device", &device) <= 0 || !g_str_equal(device, job_id))
            continue;
        n++;
    }
    return n;
}

/* From the source's flight recording: every NBD client node it added for
 * the copy (DESIGN.md §6 names; commands QEMU accepted) it also deleted,
 * and every mirror it started ended (cancelled by the orchestrator, or
 * ended with an error once the destination went away). */
static void
assert_source_nodes_gone(const Hosts *h, gint64 since_us)
{
    static const char *const targets[] = {"vda", "vdb"};
    const char *rec = h->host[0]->record_path;
    guint added_total = 0;
    gsize i;

    for (i = 0; i < G_N_ELEMENTS(targets); i++) {
        g_autofree char *node = g_strdup_printf("migration-%s-storage", targets[i]);
        g_autofree char *mirror = g_strdup_printf("mirror-%s", targets[i]);
        guint added = test_recording_count_done(rec, h->name, since_us, "blockdev-add",
                                                "node-name", node);
        guint deleted = test_recording_count_done(rec, h->name, since_us, "blockdev-del",
                                                  "node-name", node);
        guint mirrors = test_recording_count_done(rec, h->name, since_us, "blockdev-mirror",
                                                  "job-id", mirror);
        guint cancels = test_recording_count_done(rec, h->name, since_us, "block-job-cancel",
                                                  "device", mirror);
        guint ends = recording_count_job_ends(rec, h->name, since_us, mirror);
        g_autoptr(GPtrArray) mirror_args = test_recording_done_args(
            rec, h->name, since_us, "blockdev-mirror", "job-id", mirror);

        g_test_message("source %s: blockdev-add %u, blockdev-del %u, blockdev-mirror %u, "
                       "block-job-cancel %u, mirror ended %u",
                       targets[i], added, deleted, mirrors, cancels, ends);
        if (deleted < added || ends < mirrors) {
            g_autofree char *sent = recording_sent_text(rec, h->name, since_us);

            g_error("the source left the copy of %s behind (blockdev-add %u, blockdev-del %u, "
                    "blockdev-mirror %u, mirror ended %u); its QMP exchange since the "
                    "migration started:\n%s",
                    targets[i], added, deleted, mirrors, ends, sent);
        }
        /* Each mirror with handoverd's default buffer, which QEMU took. */
        g_assert_cmpuint(mirror_args->len, ==, mirrors);
        for (guint k = 0; k < mirror_args->len; k++) {
            int64_t buf = -1;

            (void)ho_json_opt_int64(mirror_args->pdata[k], "buf-size", &buf);
            g_assert_cmpint(buf, ==, MIRROR_BUF_SIZE);
        }
        added_total += added;
    }
    /* The copy had begun: there were nodes to remove. */
    g_assert_cmpuint(added_total, >, 0);
}

/* A completed storage migration: the destination runs, the source is
 * gone, invariant 1, domjobinfo; then the disks. */
static void
check_completed(Hosts *h, const TestCliResult *r, const TestJobWatch *w, gint64 since_us,
                guint64 seq_before, int64_t min_total, int64_t max_total)
{
    g_autoptr(json_object) running = test_daemon_list(h->host[0], false);
    g_autoptr(TestRecording) src = NULL;
    g_autoptr(TestRecording) dst = NULL;
    g_autoptr(json_object) info = NULL;
    g_autofree char *why = NULL;
    g_autofree char *jobinfo = NULL;
    g_autofree char *jobjson = NULL;
    int64_t disk_total = -1, disk_processed = -1, sw = -1, sw_qemu = -1, sw_own = -1;
    int64_t downtime = -1, disk_bps = -1;
    gint64 pause_us = 0;

    if (r->status != 0)
        g_error("'handover migrate' exited %d\nstdout:\n%s\nstderr:\n%s", r->status, r->out,
                r->err);
    g_test_message("migrate --verbose printed:\n%s", r->out);
    assert_contains(r->out, "Copying disks", "migrate --verbose's output");
    if (!test_job_watch_seen(w, "phase:mirror")) {
        g_autofree char *seen = test_job_watch_seen_text(w);

        g_error("no mirror phase in the job's events: %s", seen);
    }
    assert_state(h, 1, "running");
    g_assert_cmpuint(json_object_array_length(running), ==, 0);
    assert_source_nodes_gone(h, since_us);
    if (!test_pid_wait_exit(h->src_pid, EXIT_WAIT_MS))
        g_error("the source QEMU %d still runs after the migration", (int)h->src_pid);
    (void)test_guest_file_console_wait_seq_above(h->con, seq_before, &h->cursor, LINE_WAIT_MS);
    (void)test_guest_file_console_wait(h->con, "HANDOVER-RAM ok", &h->cursor, LINE_WAIT_MS);

    src = test_recording_load(h->host[0]->record_path, NULL);
    dst = test_recording_load(h->host[1]->record_path, NULL);
    if (!test_recording_check_handover(src, dst, since_us, &pause_us, &why))
        g_error("invariant 1: %s", why);

    jobinfo = TEST_CLI_OK(h->host[0], "domjobinfo", "--completed", h->name);
    g_test_message("domjobinfo --completed:\n%s", jobinfo);
    assert_contains(jobinfo, "Disk total", "domjobinfo --completed");
    assert_contains(jobinfo, "Switchover", "domjobinfo --completed");
    jobjson = TEST_CLI_OK(h->host[0], "domjobinfo", "--completed", "--json", h->name);
    info = ho_json_parse(jobjson, strlen(jobjson));
    if (!info)
        g_error("domjobinfo --json printed no JSON: %s", jobjson);
    if (ho_json_get_int64(info, "disk_total", &disk_total) < 0 ||
        ho_json_get_int64(info, "disk_processed", &disk_processed) < 0 ||
        ho_json_get_int64(info, "switchover_us", &sw) < 0 ||
        ho_json_get_int64(info, "switchover_qemu_us", &sw_qemu) < 0 ||
        ho_json_get_int64(info, "switchover_own_us", &sw_own) < 0 ||
        ho_json_get_int64(info, "downtime_ms", &downtime) < 0 ||
        ho_json_get_int64(info, "disk_bandwidth_bps", &disk_bps) < 0)
        g_error("domjobinfo --completed --json: %s in %s", ho_error_last_message(), jobjson);
    g_assert_cmpint(disk_total, >=, min_total);
    g_assert_cmpint(disk_total, <=, max_total);
    g_assert_cmpint(disk_processed, >, 0);
    /* The bulk copy's average rate: something was copied, in finite time. */
    g_assert_cmpint(disk_bps, >, 0);
    g_assert_cmpint(sw_qemu, >=, 0);
    g_assert_cmpint(sw_own, >=, 0);
    g_assert_cmpint(sw, >=, sw_qemu);
    g_assert_cmpint(sw, >=, sw_own);
    g_test_message("%s: pause (src STOP -> dst RESUME) %.3f ms; switchover %.3f ms (QEMU %.3f ms, "
                   "handover %.3f ms); downtime %" G_GINT64_FORMAT " ms; disk total %" G_GINT64_FORMAT
                   " processed %" G_GINT64_FORMAT,
                   h->pair->name, pause_us / 1000.0, sw / 1000.0, sw_qemu / 1000.0,
                   sw_own / 1000.0, downtime, disk_total, disk_processed);
    printf("# %s: pause %.3f ms, switchover %.3f ms = QEMU %.3f + handover %.3f ms\n",
           h->pair->name, pause_us / 1000.0, sw / 1000.0, sw_qemu / 1000.0, sw_own / 1000.0);
}

/* qemu-img compare -U, exit 0 or the test fails. */
static void
compare_images(const char *a, const char *b)
{
    g_autofree char *out = NULL;
    int rc = RUN(&out, "qemu-img", "compare", "-U", a, b);

    if (rc != 0)
        g_error("qemu-img compare -U '%s' '%s' exited %d:\n%s", a, b, rc, out);
}

static void
test_copy(gconstpointer data)
{
    g_autoptr(Hosts) h = hosts_new(GPOINTER_TO_UINT(data), "copy", DISKS_COPY);
    g_auto(TestJobWatch) w = {0};
    g_autoptr(HoRpcConn) watch = NULL;
    g_autoptr(TestCliJob) job = NULL;
    g_auto(TestCliResult) r = {0};
    guint64 seq_before;
    gint64 since_us;

    if (!h)
        return;
    watch = test_job_watch_open(h->host[0], &w, h->name, "migrationstoragetest");
    seq_before = test_guest_file_console_last_seq(h->con);
    since_us = g_get_monotonic_time();
    job = migrate_spawn(h, false, NULL);
    test_job_watch_wait(&w, job, NULL, MIGRATE_WAIT_MS);
    test_cli_job_finish(job, &r, "handover migrate", MIGRATE_WAIT_MS);
    /* Both disks whole: the raw one and the qcow2's virtual size. */
    check_completed(h, &r, &w, since_us, seq_before, (int64_t)(RAW_MIB + QCOW_MIB) * MIB,
                    G_MAXINT64);

    /* Paused, so that the destination's copy cannot change meanwhile. */
    suspend_and_check_seq(h, 1, seq_before);
    compare_images(h->qcow[0], h->qcow[1]);
    g_free(TEST_CLI_OK(h->host[1], "destroy", h->name));
}

static void
test_copy_inc(gconstpointer data)
{
    g_autoptr(Hosts) h = hosts_new(GPOINTER_TO_UINT(data), "inc", DISKS_INC);
    g_auto(TestJobWatch) w = {0};
    g_autoptr(HoRpcConn) watch = NULL;
    g_autoptr(TestCliJob) job = NULL;
    g_auto(TestCliResult) r = {0};
    g_autoptr(json_object) dinfo = NULL;
    g_autofree char *info_out = NULL;
    g_autofree char *top_src = NULL;
    g_autofree char *top_dst = NULL;
    const char *backing = NULL;
    guint64 seq_before;
    gint64 since_us;
    int rc;

    if (!h)
        return;
    watch = test_job_watch_open(h->host[0], &w, h->name, "migrationstoragetest");
    seq_before = test_guest_file_console_last_seq(h->con);
    since_us = g_get_monotonic_time();
    job = migrate_spawn(h, true, NULL);
    test_job_watch_wait(&w, job, NULL, MIGRATE_WAIT_MS);
    test_cli_job_finish(job, &r, "handover migrate", MIGRATE_WAIT_MS);
    /* The raw disk whole and the overlay's own 24 MiB, not the backing
     * file's 96 MiB (nor the qcow2's virtual size). */
    check_completed(h, &r, &w, since_us, seq_before, (int64_t)(RAW_MIB + INC_TOP_MIB) * MIB,
                    (int64_t)(RAW_MIB + INC_BACKING_MIB) * MIB);

    suspend_and_check_seq(h, 1, seq_before);
    /* The whole chains read the same. */
    compare_images(h->qcow[0], h->qcow[1]);
    /* The destination's overlay sits on the same backing file. */
    rc = RUN(&info_out, "qemu-img", "info", "-U", "--output=json", h->qcow[1]);
    if (rc != 0)
        g_error("qemu-img info '%s' exited %d:\n%s", h->qcow[1], rc, info_out);
    dinfo = ho_json_parse(info_out, strlen(info_out));
    g_assert_nonnull(dinfo);
    if (ho_json_get_string(dinfo, "backing-filename", &backing) < 0)
        g_error("the destination's overlay has no backing file: %s", info_out);
    g_assert_cmpstr(backing, ==, h->backing);
    /* The tops alone (no backing) are equal: only the top was copied. */
    top_src = g_strdup_printf("json:{\"driver\":\"qcow2\",\"backing\":null,\"file\":"
                              "{\"driver\":\"file\",\"filename\":\"%s\"}}",
                              h->qcow[0]);
    top_dst = g_strdup_printf("json:{\"driver\":\"qcow2\",\"backing\":null,\"file\":"
                              "{\"driver\":\"file\",\"filename\":\"%s\"}}",
                              h->qcow[1]);
    compare_images(top_src, top_dst);
    /* And differ from the chain: the backing file's data is not in them. */
    {
        g_autofree char *out = NULL;

        rc = RUN(&out, "qemu-img", "compare", "-U", top_dst, h->qcow[1]);
        if (rc != 1)
            g_error("the destination's top alone should differ from its chain (compare exited "
                    "%d):\n%s",
                    rc, out);
    }
    g_free(TEST_CLI_OK(h->host[1], "destroy", h->name));
}

/* Abort (domjobabort) once the job event item came ("phase:mirror", or
 * "mirror-copying": the mirrors copied something), or kill -9 the
 * destination QEMU then. */
static void
run_failure(guint pair_index, const char *case_name, DiskSetup setup, const char *item,
            const char *const *extra, bool kill_dst)
{
    g_autoptr(Hosts) h = hosts_new(pair_index, case_name, setup);
    g_auto(TestJobWatch) w = {0};
    g_autoptr(HoRpcConn) watch = NULL;
    g_autoptr(TestCliJob) job = NULL;
    g_auto(TestCliResult) r = {0};
    g_autofree char *sha_before = NULL;
    g_autofree char *both = NULL;
    g_autofree char *seen = NULL;
    gint64 since_us;

    if (!h)
        return;
    sha_before = file_sha256(h->qcow[0]);
    watch = test_job_watch_open(h->host[0], &w, h->name, "migrationstoragetest");
    since_us = g_get_monotonic_time();
    job = migrate_spawn(h, false, extra);
    test_job_watch_wait(&w, job, item, PHASE_WAIT_MS);
    if (kill_dst) {
        g_autoptr(GArray) kids = test_daemon_children(h->host[1]);
        pid_t victim = test_daemon_domain_pid(h->host[1], h->name);

        if (victim <= 0) {
            g_test_message("the destination's dominfo gave no pid at %s; its only child", item);
            g_assert_cmpuint(kids->len, ==, 1);
            victim = g_array_index(kids, pid_t, 0);
        }
        test_daemon_track_pid(victim);
        g_assert_cmpint(kill(victim, SIGKILL), ==, 0);
        g_assert_true(test_pid_wait_exit(victim, EXIT_WAIT_MS));
    } else {
        g_free(TEST_CLI_OK(h->host[0], "domjobabort", h->name));
    }
    test_cli_job_finish(job, &r, "handover migrate", MIGRATE_WAIT_MS);
    both = g_strconcat(r.out, r.err, NULL);
    if (r.status == 0)
        g_error("the migration exited 0\nstdout:\n%s\nstderr:\n%s", r.out, r.err);
    if (!kill_dst)
        assert_contains(both, "cancelled", "the aborted migrate's output");
    g_test_message("migrate exited %d: %s", r.status, r.err);
    test_job_watch_sync(watch, h->name);
    seen = test_job_watch_seen_text(&w);
    g_test_message("job events: %s", seen);
    /* The failure happened in the phase it was meant for. */
    if (!g_str_equal(item, "phase:perform") && test_job_watch_seen(&w, "phase:perform"))
        g_error("the job reached perform: the mirror ended before the %s (events: %s)",
                kill_dst ? "kill" : "abort", seen);
    if (test_job_watch_seen(&w, "phase:pre-switchover") || test_job_watch_seen(&w, "phase:switchover"))
        g_error("the job reached the switchover (events: %s)", seen);
    assert_source_kept(h, since_us, sha_before);
    assert_source_nodes_gone(h, since_us);
    g_free(TEST_CLI_OK(h->host[0], "destroy", h->name));
}

static void
test_abort_mirror(gconstpointer data)
{
    run_failure(GPOINTER_TO_UINT(data), "abortmirror", DISKS_BIG, "mirror-copying", NULL, false);
}

static void
test_abort_perform(gconstpointer data)
{
    static const char *const slow[] = {"--bandwidth", "1", NULL};

    run_failure(GPOINTER_TO_UINT(data), "abortperform", DISKS_COPY, "phase:perform", slow, false);
}

static void
test_dst_killed(gconstpointer data)
{
    run_failure(GPOINTER_TO_UINT(data), "dstkill", DISKS_BIG, "mirror-copying", NULL, true);
}

static void
add_pair_tests(const char *case_name, GTestDataFunc func)
{
    gsize i;

    for (i = 0; i < G_N_ELEMENTS(pairs); i++) {
        g_autofree char *path =
            g_strdup_printf("/migration-storage/%s/%s", case_name, pairs[i].name);

        g_test_add_data_func(path, GUINT_TO_POINTER(i), func);
    }
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    signal(SIGPIPE, SIG_IGN);
    add_pair_tests("copy", test_copy);
    add_pair_tests("abort-mirror", test_abort_mirror);
    add_pair_tests("abort-perform", test_abort_perform);
    add_pair_tests("dst-killed", test_dst_killed);
    add_pair_tests("copy-inc", test_copy_inc);
    return g_test_run();
}
