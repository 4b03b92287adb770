/*
 * Live migration end to end on real QEMU: two handoverd daemons on this
 * machine as two hosts (own --root, host UUID, TCP peer port; each in a
 * network namespace of its own joined by a veth pair, or both on loopback
 * where namespaces cannot be made, said in the output), the Linux test
 * guest (docs/test-guest.md) under TCG with its disk and RAM workloads,
 * its disk on storage both daemons see (one image path), driven through
 * the `handover` CLI. Every case runs on qemu-7.2 -> qemu-7.2,
 * qemu-10.0 -> qemu-10.0 and qemu-7.2 -> qemu-10.0.
 *
 * Cases:
 *   live          migrate --live --verbose: the destination runs the
 *                 guest, the source QEMU is gone; the workload's sequence
 *                 goes on after the switchover and its disk has no gap
 *                 (seqcheck after the guest stopped); invariant 1 (never
 *                 two writers) from both daemons' flight recordings;
 *                 domjobinfo --completed has the downtime and total time.
 *   abort         migrate with --bandwidth 1 (stays in perform), then
 *                 domjobabort once the "perform" phase event came:
 *                 "cancelled", the source runs on, nothing on the
 *                 destination (no domain, no QEMU).
 *   sigint        the same, aborted by Ctrl-C (SIGINT) to `handover migrate`.
 *   abort-prepare domjobabort while the destination is held in Prepare (its
 *                 QEMU behind a lock the test holds): "cancelled", the job
 *                 never reaches perform, the source runs on, nothing on
 *                 the destination.
 *   same-host     migrating to the source's own URI, and to another daemon
 *                 carrying the same host UUID, is refused; nothing changed.
 *   dst-killed    the destination QEMU is killed during perform: the
 *                 migration fails, the source runs on, nothing left on the
 *                 destination.
 *
 * The pause of each completed migration (source STOP -> destination
 * RESUME, from the recordings) is printed, and at the end its median per
 * QEMU pair; it is measured, never asserted. HANDOVER_MIGRATION_RUNS=N
 * repeats the live migration N times per pair (back and forth where both
 * sides run the same QEMU) for a better median.
 *
 * Waiting is on events (console file changes via inotify, daemon job
 * events, pidfds), each bounded. Cleanup (daemons, their QEMUs,
 * namespaces) also runs when an assertion fails: tests/testdaemon.c and
 * tests/testnetns.c.
 */
#define HO_LOG_MODULE "tests.migration"

#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <glib.h>
#include <json-c/json.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
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

/* Booting takes seconds under TCG; leave room for a loaded machine. */
#define BOOT_WAIT_MS 180000
#define LINE_WAIT_MS 60000
#define MIGRATE_WAIT_MS 300000
#define PHASE_WAIT_MS 120000
#define EXIT_WAIT_MS 30000
#define DISK_MIB 16
#define GUEST_MIB 256
/* Throttled so that precopy converges at QEMU's default bandwidth
 * (docs/test-guest.md). */
#define WORKLOAD "handover.workload=disk,ram handover.ram_rate=8 handover.disk_rate=100"

typedef struct {
    const char *name; /* test path component */
    const char *src;  /* QEMU names (tests/testqemu.h) */
    const char *dst;
} QemuPair;

static const QemuPair pairs[] = {
    {"7.2-to-7.2", "qemu-7.2", "qemu-7.2"},
    {"10.0-to-10.0", "qemu-10.0", "qemu-10.0"},
    {"7.2-to-10.0", "qemu-7.2", "qemu-10.0"},
};

/* Pauses measured per pair (µs), for the summary: source STOP ->
 * destination RESUME, and its tail, source MIGRATION completed ->
 * destination RESUME (the orchestrator's hop, DESIGN §3 Finish). */
static GArray *pauses[G_N_ELEMENTS(pairs)];
static GArray *tails[G_N_ELEMENTS(pairs)];
/* Destination MIGRATION completed -> destination RESUME: the destination
 * daemon's own part of that tail (the rest is the stream's end). */
static GArray *conts[G_N_ELEMENTS(pairs)];

/* ---- two hosts and a guest ---- */

typedef struct {
    const QemuPair *pair;
    guint pair_index;
    const TestQemuBinary *bin[2]; /* source, destination */
    TestNetns *net;
    TestDaemon *host[2];          /* source, destination */
    char *dir;                    /* the shared storage */
    char *disk;
    char *xml_path;
    char *name;
    TestGuestFileConsole *con;
    guint cursor;
    bool unsafe; /* cache='none' impossible on this file system */
    pid_t src_pid;
} Hosts;

static TestDaemon *
host_start(Hosts *h, int side, const char *host_uuid, const char *emulator)
{
    g_autofree char *tag = g_strdup_printf("%s-%s", side ? "dst" : "src", h->pair->name);
    TestDaemonOpts opts = {
        .tag = tag,
        .netns_path = h->net->path[side],
        .host_uuid = host_uuid,
        .listen_address = h->net->addr[side],
        .migration_address = h->net->addr[side],
        /* Separate ranges: on loopback both hosts share one port space. */
        .migration_port_min = side ? 49184 : 49152,
        .migration_port_max = side ? 49215 : 49183,
        .default_emulator = emulator ? emulator : h->bin[side]->binary,
        .record = true,
    };

    return test_daemon_start(&opts);
}

/* Both hosts, and the guest running its workloads on the source. NULL
 * when a QEMU or the guest is missing (the test is skipped). dst_emulator:
 * the destination daemon's default emulator instead of its QEMU, or NULL. */
static Hosts *
hosts_new_full(guint pair_index, const char *case_name, const char *dst_emulator)
{
    const QemuPair *pair = &pairs[pair_index];
    const TestQemuBinary *src_bin = test_qemu_need(pair->src);
    const TestQemuBinary *dst_bin = src_bin ? test_qemu_need(pair->dst) : NULL;
    const TestGuestImage *img;
    Hosts *h;
    g_autofree char *serial = NULL;
    g_autofree char *xml = NULL;

    if (!src_bin || !dst_bin)
        return NULL;
    img = test_guest_image_need();
    if (!img)
        return NULL;
    h = g_new0(Hosts, 1);
    h->pair = pair;
    h->pair_index = pair_index;
    h->bin[0] = src_bin;
    h->bin[1] = dst_bin;
    h->name = g_strdup_printf("mig-%s", case_name);
    h->dir = test_make_tmpdir("shared");
    /* cache='none' is what shared storage needs (the migration refuses
     * anything else without --unsafe); it opens the image with O_DIRECT,
     * which some file systems (tmpfs) refuse. */
    h->disk = test_shared_disk_new(h->dir, DISK_MIB, &h->unsafe);

    h->net = test_netns_new();
    h->host[0] = host_start(h, 0, NULL, NULL);
    h->host[1] = host_start(h, 1, NULL, dst_emulator);

    serial = g_build_filename(h->dir, "serial.log", NULL);
    h->con = test_guest_file_console_new(serial);
    xml = test_guest_domain_xml(&(TestGuestDomain){
        .image = img,
        .bin = h->bin[0],
        .name = h->name,
        .memory_mib = GUEST_MIB,
        .cmdline_extra = WORKLOAD,
        .disk = h->disk,
        .cache_none = !h->unsafe,
        .serial = serial,
    });
    h->xml_path = g_build_filename(h->dir, "guest.xml", NULL);
    g_assert_true(g_file_set_contents(h->xml_path, xml, -1, NULL));
    h->src_pid = test_daemon_define_start(h->host[0], h->xml_path, h->name);

    test_guest_file_console_wait_up(h->con, &h->cursor, BOOT_WAIT_MS, LINE_WAIT_MS, "");
    return h;
}

static Hosts *
hosts_new(guint pair_index, const char *case_name)
{
    return hosts_new_full(pair_index, case_name, NULL);
}

static void
hosts_free(Hosts *h)
{
    if (!h)
        return;
    /* The daemons first: freeing one kills the QEMUs it left. */
    test_daemon_free(h->host[0]);
    test_daemon_free(h->host[1]);
    test_netns_free(h->net);
    test_guest_file_console_free(h->con);
    g_free(h->dir);
    g_free(h->disk);
    g_free(h->xml_path);
    g_free(h->name);
    g_free(h);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Hosts, hosts_free)

/* A domain's state on a host ("running", "paused", "shutoff", ...), or
 * NULL when the host does not know it. */
static char *
host_state(const Hosts *h, int side, const char *name)
{
    return test_daemon_domain_state(h->host[side], name);
}

static void
assert_state(const Hosts *h, int side, const char *want)
{
    test_daemon_assert_state(h->host[side], h->name, side ? "destination" : "source", want);
}

/* Nothing of the guest on the destination: no domain, no QEMU. */
static void
assert_destination_empty(const Hosts *h)
{
    g_autoptr(json_object) all = test_daemon_list_emptied(h->host[1], LINE_WAIT_MS);
    g_autoptr(GArray) kids = NULL;

    if (json_object_array_length(all) != 0)
        g_error("the destination lists domains: %s", json_object_to_json_string(all));
    kids = test_daemon_children(h->host[1]);
    g_assert_cmpuint(kids->len, ==, 0);
}

/* The workload keeps writing on whichever side runs it. */
static void
assert_workload_advances(Hosts *h)
{
    guint64 last = test_guest_file_console_last_seq(h->con);
    guint64 next = test_guest_file_console_wait_seq_above(h->con, last, &h->cursor, LINE_WAIT_MS);

    g_test_message("workload seq %" G_GUINT64_FORMAT " -> %" G_GUINT64_FORMAT, last, next);
}

/* Stop the guest where it runs (QMP stop drains its I/O), read its
 * console to the end, destroy it, and check its disk: a consistent ring
 * holding at least the last sequence number the guest reported. */
static void
stop_and_check_disk(Hosts *h, int side)
{
    TestGuestSeqcheck res = {0};
    guint64 last;

    g_free(TEST_CLI_OK(h->host[side], "suspend", h->name));
    last = test_guest_file_console_last_seq(h->con);
    g_free(TEST_CLI_OK(h->host[side], "destroy", h->name));
    test_guest_seqcheck_ok(h->disk, NULL, last, &res);
    g_test_message("disk: max_seq=%" G_GUINT64_FORMAT " valid=%" G_GUINT64_FORMAT
                   " (last reported %" G_GUINT64_FORMAT ")",
                   res.max_seq, res.valid, last);
    g_assert_cmpuint(res.max_seq, >=, last);
    test_guest_seqcheck_clear(&res);
}

/* ---- migrating ---- */

/* `handover migrate --live --verbose [extra...] NAME URI` in the background. */
static TestCliJob *
migrate_spawn(const Hosts *h, int from, const char *uri, const char *const *extra)
{
    g_autoptr(GPtrArray) args = g_ptr_array_new();

    g_ptr_array_add(args, (char *)"migrate");
    g_ptr_array_add(args, (char *)"--live");
    g_ptr_array_add(args, (char *)"--verbose");
    if (h->unsafe)
        g_ptr_array_add(args, (char *)"--unsafe");
    for (; extra && *extra; extra++)
        g_ptr_array_add(args, (char *)*extra);
    g_ptr_array_add(args, h->name);
    g_ptr_array_add(args, (char *)uri);
    g_ptr_array_add(args, NULL);
    return test_cli_spawn(h->host[from], (const char *const *)args->pdata);
}

static void
record_value(GArray **arr, gint64 us)
{
    if (!*arr)
        *arr = g_array_new(FALSE, FALSE, sizeof(gint64));
    g_array_append_val(*arr, us);
}

/* Invariant 1 from both daemons' recordings; the pause and its tail
 * (source completed -> destination RESUME), µs. */
static void
check_recordings_handover(const Hosts *h, int from, gint64 since_us, gint64 *pause_us,
                          gint64 *tail_us, gint64 *cont_us)
{
    g_autoptr(TestRecording) src = test_recording_load(h->host[from]->record_path, NULL);
    g_autoptr(TestRecording) dst = test_recording_load(h->host[!from]->record_path, NULL);
    g_autofree char *why = NULL;
    const RecEvent *completed;
    const RecEvent *dst_completed;
    const RecEvent *resume;

    if (!test_recording_check_handover(src, dst, since_us, pause_us, &why))
        g_error("invariant 1: %s", why);
    /* Both exist: the check above needs them. */
    completed = test_recording_first(src, REC_EVENT_MIGRATION, "completed", since_us);
    resume = test_recording_first(dst, REC_EVENT_RESUME, NULL, since_us);
    g_assert_nonnull(completed);
    g_assert_nonnull(resume);
    *tail_us = resume->ts - completed->ts;
    dst_completed = test_recording_first(dst, REC_EVENT_MIGRATION, "completed", since_us);
    *cont_us = dst_completed ? resume->ts - dst_completed->ts : -1;
    {
        const RecEvent *pre = test_recording_first(src, REC_EVENT_MIGRATION, "pre-switchover",
                                                   since_us);
        const RecEvent *cont = test_recording_first(src, REC_EVENT_CONTINUE, NULL, since_us);
        const RecEvent *stop = test_recording_last_run_state(src, resume->ts);

        /* Where the source's part of the pause goes (measured only). */
        if (pre && cont && stop)
            g_test_message("source: STOP -> pre-switchover %.3f ms -> migrate-continue sent "
                           "%.3f ms -> completed %.3f ms",
                           (pre->ts - stop->ts) / 1000.0, (cont->ts - pre->ts) / 1000.0,
                           (completed->ts - cont->ts) / 1000.0);
    }
}

/* The migration stream (docs/handoverd.md, migration_stream_buffer; the
 * daemons here talk over TCP, so the buffer is sized from their round
 * trip): the source daemon connects the stream and passes it to its QEMU
 * ("fd:NAME"); a destination QEMU before 8.2 listens on the socket its
 * daemon bound with the agreed receive buffer ("tcp:fd:NAME"), a later
 * one is handed the connection its daemon accepted ("fd:NAME"). Both
 * QEMUs got the fd with getfd. */
static void
check_stream(const Hosts *h, int from, gint64 since_us)
{
    const char *dst_qemu = from ? h->pair->src : h->pair->dst;
    bool listener = g_str_equal(dst_qemu, "qemu-7.2");
    g_autoptr(GPtrArray) incoming = test_recording_done_args(
        h->host[!from]->record_path, NULL, since_us, "migrate-incoming", NULL, NULL);
    g_autoptr(GPtrArray) migrate = test_recording_done_args(h->host[from]->record_path, NULL,
                                                            since_us, "migrate", NULL, NULL);
    const char *in_uri = NULL;
    const char *out_uri = NULL;

    g_assert_cmpuint(incoming->len, ==, 1);
    g_assert_cmpuint(migrate->len, ==, 1);
    g_assert_cmpint(ho_json_get_string(g_ptr_array_index(incoming, 0), "uri", &in_uri), ==, 0);
    g_assert_cmpint(ho_json_get_string(g_ptr_array_index(migrate, 0), "uri", &out_uri), ==, 0);
    g_assert_cmpstr(in_uri, ==, listener ? "tcp:fd:migration-stream" : "fd:migration-stream");
    g_assert_cmpstr(out_uri, ==, "fd:migration-stream");
    g_assert_cmpuint(test_recording_count_done(h->host[!from]->record_path, NULL, since_us,
                                               "getfd", "fdname", "migration-stream"),
                     ==, 1);
    g_assert_cmpuint(test_recording_count_done(h->host[from]->record_path, NULL, since_us, "getfd",
                                               "fdname", "migration-stream"),
                     ==, 1);
    g_test_message("stream: destination migrate-incoming %s, source migrate %s", in_uri, out_uri);
}

static void
check_recordings_no_handover(const Hosts *h, gint64 since_us)
{
    g_autoptr(TestRecording) src = test_recording_load(h->host[0]->record_path, NULL);
    g_autoptr(TestRecording) dst = test_recording_load(h->host[1]->record_path, NULL);
    g_autofree char *why = NULL;

    if (!test_recording_check_no_handover(src, dst, since_us, &why))
        g_error("%s", why);
}

static void
assert_contains(const char *haystack, const char *needle, const char *what)
{
    if (!strstr(haystack, needle))
        g_error("'%s' not in %s:\n%s", needle, what, haystack);
}

/* The downtime ramp (migration_downtime_start, 20 ms by default; QEMU's
 * 300 ms on top): QEMU's dirty syncs, counted in the completed job's
 * "iteration", are the setup's, one per attempt to converge, and the one
 * of the final copy. Each attempt after the first that did not end the
 * migration doubled the limit, so the limit in force at the end follows
 * from the count. */
static void
check_downtime_ramp(json_object *info)
{
    int64_t limit = -1, syncs = -1, want;

    if (ho_json_get_int64(info, "downtime_limit_ms", &limit) < 0 ||
        ho_json_get_int64(info, "iteration", &syncs) < 0)
        g_error("domjobinfo --completed --json: %s", ho_error_last_message());
    want = syncs > 3 ? MIN(300, (int64_t)20 << MIN(syncs - 3, 8)) : 20;
    g_test_message("downtime limit at the end %" G_GINT64_FORMAT " ms after %" G_GINT64_FORMAT
                   " dirty syncs",
                   limit, syncs);
    g_assert_cmpint(limit, ==, want);
}

/* One successful migration from side `from` to the other; checks
 * everything but the disk. */
static void
migrate_once(Hosts *h, int from)
{
    int to = !from;
    g_autoptr(TestCliJob) job = NULL;
    g_auto(TestCliResult) r = {0};
    g_autoptr(json_object) running = NULL;
    g_autoptr(json_object) info = NULL;
    g_autofree char *jobinfo = NULL;
    g_autofree char *jobjson = NULL;
    g_autofree char *left = NULL;
    g_autofree char *listing = NULL;
    g_autofree char *row = NULL;
    guint64 seq_before;
    pid_t old_pid = test_daemon_domain_pid(h->host[from], h->name);
    pid_t new_pid;
    gint64 pause_us = 0;
    gint64 tail_us = 0;
    gint64 cont_us = 0;
    gint64 since_us;
    int64_t downtime = -1, total = -1;

    g_assert_cmpint(old_pid, >, 0);
    seq_before = test_guest_file_console_last_seq(h->con);
    since_us = g_get_monotonic_time();
    job = migrate_spawn(h, from, h->host[to]->peer_uri, NULL);
    test_cli_job_finish(job, &r, "handover migrate", MIGRATE_WAIT_MS);
    if (r.status != 0)
        g_error("'handover migrate' exited %d\nstdout:\n%s\nstderr:\n%s", r.status, r.out, r.err);
    g_test_message("migrate --verbose printed:\n%s", r.out);

    /* The destination runs it; the source runs nothing, its QEMU is gone. */
    assert_state(h, to, "running");
    listing = TEST_CLI_OK(h->host[to], "list");
    row = g_strdup_printf("^ *[0-9]+ +%s +running *$", h->name);
    if (!g_regex_match_simple(row, listing, G_REGEX_MULTILINE, 0))
        g_error("'handover list' on the destination does not show '%s' running:\n%s", h->name,
                listing);
    new_pid = test_daemon_domain_pid(h->host[to], h->name);
    g_assert_cmpint(new_pid, >, 0);
    running = test_daemon_list(h->host[from], false);
    g_assert_cmpuint(json_object_array_length(running), ==, 0);
    if (!test_pid_wait_exit(old_pid, EXIT_WAIT_MS))
        g_error("the source QEMU %d still runs after the migration", (int)old_pid);

    /* The guest goes on where it was. */
    (void)test_guest_file_console_wait_seq_above(h->con, seq_before, &h->cursor, LINE_WAIT_MS);
    (void)test_guest_file_console_wait(h->con, "HANDOVER-RAM ok", &h->cursor, LINE_WAIT_MS);
    assert_workload_advances(h);

    /* Never two writers. */
    check_recordings_handover(h, from, since_us, &pause_us, &tail_us, &cont_us);
    check_stream(h, from, since_us);
    record_value(&pauses[h->pair_index], pause_us);
    record_value(&tails[h->pair_index], tail_us);
    if (cont_us >= 0)
        record_value(&conts[h->pair_index], cont_us);
    g_test_message("%s %s -> %s: pause (source STOP -> destination RESUME) %.3f ms, of which "
                   "source completed -> destination RESUME %.3f ms, destination completed -> "
                   "RESUME %.3f ms",
                   h->pair->name, from ? "dst" : "src", to ? "dst" : "src", pause_us / 1000.0,
                   tail_us / 1000.0, cont_us / 1000.0);

    /* The completed job's statistics, on the source, while it still knows
     * the domain: a transient one (migrated back from where it arrived
     * without --persistent) is gone there, as with virsh. */
    left = host_state(h, from, h->name);
    if (!left) {
        g_test_message("the source does not know the transient domain any more: no domjobinfo");
        return;
    }
    g_assert_cmpstr(left, ==, "shutoff");
    jobinfo = TEST_CLI_OK(h->host[from], "domjobinfo", "--completed", h->name);
    assert_contains(jobinfo, "Downtime", "domjobinfo --completed");
    assert_contains(jobinfo, "Total time", "domjobinfo --completed");
    jobjson = TEST_CLI_OK(h->host[from], "domjobinfo", "--completed", "--json", h->name);
    info = ho_json_parse(jobjson, strlen(jobjson));
    if (!info)
        g_error("domjobinfo --json printed no JSON: %s", jobjson);
    if (ho_json_get_int64(info, "downtime_ms", &downtime) < 0 ||
        ho_json_get_int64(info, "total_ms", &total) < 0)
        g_error("domjobinfo --completed --json: %s in %s", ho_error_last_message(), jobjson);
    g_assert_cmpint(downtime, >=, 0);
    g_assert_cmpint(total, >, 0);
    g_assert_cmpint(total, >=, downtime);
    check_downtime_ramp(info);
    g_test_message("domjobinfo --completed: downtime %" G_GINT64_FORMAT " ms, total %" G_GINT64_FORMAT
                   " ms",
                   downtime, total);
}

static guint
migration_runs(void)
{
    const char *env = g_getenv("HANDOVER_MIGRATION_RUNS");
    guint64 n = 1;

    if (env && *env && (!g_ascii_string_to_unsigned(env, 10, 1, 100, &n, NULL)))
        g_error("HANDOVER_MIGRATION_RUNS must be 1..100, not '%s'", env);
    return (guint)n;
}

static void
test_live(gconstpointer data)
{
    guint pair_index = GPOINTER_TO_UINT(data);
    bool same = g_str_equal(pairs[pair_index].src, pairs[pair_index].dst);
    guint runs = migration_runs();
    guint done = 0;

    while (done < runs) {
        g_autoptr(Hosts) h = hosts_new(pair_index, "live");
        int from = 0;

        if (!h)
            return;
        for (;;) {
            migrate_once(h, from);
            done++;
            from = !from; /* where the guest runs now */
            /* Back again where both sides run the same QEMU (the checks
             * look at each handover from its start on); one way only
             * for 7.2 -> 10.0, with a new guest each time. */
            if (done == runs || !same)
                break;
        }
        stop_and_check_disk(h, from);
    }
}

/* Start a slow migration (1 MiB/s: it stays in perform) and wait for its
 * perform phase (a job event of the source daemon); returns the running
 * CLI job. */
static TestCliJob *
start_slow_migration(Hosts *h, TestJobWatch *w, gint64 *since_us)
{
    static const char *const slow[] = {"--bandwidth", "1", NULL};
    g_autoptr(HoRpcConn) watch = test_job_watch_open(h->host[0], w, h->name, "migrationtest");
    TestCliJob *job;

    *since_us = g_get_monotonic_time();
    job = migrate_spawn(h, 0, h->host[1]->peer_uri, slow);
    test_job_watch_wait(w, job, "phase:perform", PHASE_WAIT_MS);
    return job;
}

/* After a migration that must not have happened: the source runs on (same
 * QEMU, workload advancing), the destination has nothing. */
static void
assert_source_kept(Hosts *h, gint64 since_us)
{
    pid_t pid;
    g_autoptr(GArray) kids = NULL;
    guint i;

    assert_state(h, 0, "running");
    pid = test_daemon_domain_pid(h->host[0], h->name);
    g_assert_cmpint(pid, ==, h->src_pid);
    assert_workload_advances(h);
    /* The destination QEMU goes (its daemon kills it); wait for that. */
    kids = test_daemon_children(h->host[1]);
    for (i = 0; i < kids->len; i++) {
        pid_t kid = g_array_index(kids, pid_t, i);

        if (!test_pid_wait_exit(kid, EXIT_WAIT_MS))
            g_error("destination process %d still runs", (int)kid);
    }
    assert_destination_empty(h);
    check_recordings_no_handover(h, since_us);
}

static void
test_abort(gconstpointer data, bool by_sigint)
{
    guint pair_index = GPOINTER_TO_UINT(data);
    g_autoptr(Hosts) h = hosts_new(pair_index, by_sigint ? "sigint" : "abort");
    g_auto(TestJobWatch) w = {0};
    g_autoptr(TestCliJob) job = NULL;
    g_auto(TestCliResult) r = {0};
    g_autoptr(GArray) kids = NULL;
    g_autofree char *both = NULL;
    gint64 since_us = 0;
    guint i;

    if (!h)
        return;
    job = start_slow_migration(h, &w, &since_us);
    /* The destination QEMU exists now: hold it, so that it cannot escape. */
    kids = test_daemon_children(h->host[1]);
    g_assert_cmpuint(kids->len, >=, 1);
    for (i = 0; i < kids->len; i++)
        test_daemon_track_pid(g_array_index(kids, pid_t, i));

    if (by_sigint) {
        test_cli_job_signal(job, SIGINT);
    } else {
        g_free(TEST_CLI_OK(h->host[0], "domjobabort", h->name));
    }
    test_cli_job_finish(job, &r, "handover migrate", MIGRATE_WAIT_MS);
    both = g_strconcat(r.out, r.err, NULL);
    if (r.status == 0)
        g_error("an aborted migrate exited 0\nstdout:\n%s\nstderr:\n%s", r.out, r.err);
    assert_contains(both, "cancelled", "the aborted migrate's output");
    g_test_message("aborted migrate exited %d: %s", r.status, r.err);
    assert_source_kept(h, since_us);
    stop_and_check_disk(h, 0);
}

static void
test_abort_jobabort(gconstpointer data)
{
    test_abort(data, false);
}

static void
test_abort_sigint(gconstpointer data)
{
    test_abort(data, true);
}

/* A gate in front of the destination's QEMU: a wrapper that waits for a
 * shared lock on a file the test holds exclusively, then execs the real
 * QEMU. While the test holds the lock, the destination cannot get through
 * Prepare (its QEMU, capability probe included, does not start), so the
 * source stays in its prepare phase as long as the test wants. The wrapper
 * sits in a prefix of its own (PREFIX/usr/bin) whose share/qemu and
 * share/seabios link to the real QEMU's, so that the daemon's firmware
 * lookup (-L, by the binary's location) still finds them. */
typedef struct {
    char *dir;
    char *wrapper;
    char *lock_path;
    char *notify_path; /* the wrapper appends its pid here before waiting */
    int lock_fd;
    int notify_fd;     /* inotify on notify_path */
} QemuGate;

static QemuGate *
gate_new(const TestQemuBinary *bin)
{
    QemuGate *g = g_new0(QemuGate, 1);
    g_autofree char *flock_bin = g_find_program_in_path("flock");
    g_autofree char *bindir = NULL;
    g_autofree char *real_bindir = g_path_get_dirname(bin->binary);
    g_autofree char *real_usr = g_path_get_dirname(real_bindir);
    g_autofree char *script = NULL;
    g_autofree char *sharedir = NULL;
    static const char *const shares[] = {"qemu", "seabios"};
    gsize i;

    if (!flock_bin) {
        g_free(g);
        test_qemu_missing("no flock(1) for the gate in front of the destination QEMU");
        return NULL;
    }
    g->dir = test_make_tmpdir("gate");
    bindir = g_build_filename(g->dir, "usr", "bin", NULL);
    g_assert_cmpint(g_mkdir_with_parents(bindir, 0700), ==, 0);
    sharedir = g_build_filename(g->dir, "usr", "share", NULL);
    g_assert_cmpint(g_mkdir_with_parents(sharedir, 0700), ==, 0);
    for (i = 0; i < G_N_ELEMENTS(shares); i++) {
        g_autofree char *target = g_build_filename(real_usr, "share", shares[i], NULL);
        g_autofree char *link = g_build_filename(g->dir, "usr", "share", shares[i], NULL);

        if (g_file_test(target, G_FILE_TEST_IS_DIR))
            g_assert_cmpint(symlink(target, link), ==, 0);
    }
    g->lock_path = g_build_filename(g->dir, "gate.lock", NULL);
    g->notify_path = g_build_filename(g->dir, "gate.pids", NULL);
    g_assert_true(g_file_set_contents(g->notify_path, "", 0, NULL));
    g->notify_fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    g_assert_cmpint(g->notify_fd, >=, 0);
    g_assert_cmpint(inotify_add_watch(g->notify_fd, g->notify_path, IN_MODIFY), >=, 0);
    g->wrapper = g_build_filename(bindir, "qemu-system-x86_64", NULL);
    /* exec keeps the pid: the one written is the QEMU's. */
    script = g_strdup_printf("#!/bin/sh\necho $$ >> '%s'\n'%s' -s '%s' true\nexec '%s' \"$@\"\n",
                             g->notify_path, flock_bin, g->lock_path, bin->binary);
    g_assert_true(g_file_set_contents(g->wrapper, script, -1, NULL));
    g_assert_cmpint(chmod(g->wrapper, 0700), ==, 0);
    g->lock_fd = open(g->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    g_assert_cmpint(g->lock_fd, >=, 0);
    return g;
}

static void
gate_close(QemuGate *g)
{
    g_assert_cmpint(flock(g->lock_fd, LOCK_EX), ==, 0);
}

static void
gate_open(QemuGate *g)
{
    g_assert_cmpint(flock(g->lock_fd, LOCK_UN), ==, 0);
}

/* Wait (inotify, bounded) until a process reached the gate; its pid. */
static pid_t
gate_wait_arrival(QemuGate *g)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)PHASE_WAIT_MS * 1000;

    for (;;) {
        struct pollfd pfd = {.fd = g->notify_fd, .events = POLLIN};
        g_autofree char *text = NULL;
        char evbuf[4096];
        gint64 left;

        g_assert_true(g_file_get_contents(g->notify_path, &text, NULL, NULL));
        if (strchr(text, '\n'))
            return (pid_t)atoi(text);
        left = (deadline - g_get_monotonic_time()) / 1000;
        if (left <= 0)
            g_error("the destination did not start its QEMU in %d ms", PHASE_WAIT_MS);
        if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
            g_error("poll: %s", g_strerror(errno));
        while (read(g->notify_fd, evbuf, sizeof(evbuf)) > 0)
            ;
    }
}

static void
gate_free(QemuGate *g)
{
    if (!g)
        return;
    close(g->lock_fd);
    close(g->notify_fd);
    g_free(g->notify_path);
    g_free(g->dir);
    g_free(g->wrapper);
    g_free(g->lock_path);
    g_free(g);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(QemuGate, gate_free)

static void
test_abort_prepare(gconstpointer data)
{
    guint pair_index = GPOINTER_TO_UINT(data);
    const TestQemuBinary *dst_bin = test_qemu_need(pairs[pair_index].dst);
    g_autoptr(QemuGate) gate = dst_bin ? gate_new(dst_bin) : NULL;
    g_autoptr(Hosts) h = NULL;
    g_auto(TestJobWatch) w = {0};
    g_autoptr(HoRpcConn) watch = NULL;
    g_autoptr(TestCliJob) job = NULL;
    g_auto(TestCliResult) r = {0};
    g_autofree char *both = NULL;
    gint64 since_us;
    pid_t waiting;

    if (!gate)
        return;
    h = hosts_new_full(pair_index, "prepare", gate->wrapper);
    if (!h)
        return;
    gate_close(gate);
    watch = test_job_watch_open(h->host[0], &w, h->name, "migrationtest");
    since_us = g_get_monotonic_time();
    job = migrate_spawn(h, 0, h->host[1]->peer_uri, NULL);
    test_job_watch_wait(&w, job, "phase:prepare", PHASE_WAIT_MS);
    /* The destination is starting a QEMU (its capability probe or the
     * incoming one), held at the gate: it cannot answer Prepare before
     * the gate opens. */
    waiting = gate_wait_arrival(gate);
    g_assert_cmpint(waiting, >, 1);
    test_daemon_track_pid(waiting);
    test_job_watch_sync(watch, h->name);
    g_assert_false(test_job_watch_seen(&w, "phase:perform"));
    g_free(TEST_CLI_OK(h->host[0], "domjobabort", h->name));
    gate_open(gate);
    test_cli_job_finish(job, &r, "handover migrate", MIGRATE_WAIT_MS);
    both = g_strconcat(r.out, r.err, NULL);
    if (r.status == 0)
        g_error("a migration aborted in prepare exited 0\nstdout:\n%s\nstderr:\n%s", r.out,
                r.err);
    assert_contains(both, "cancelled", "the aborted migrate's output");
    g_test_message("aborted in prepare, migrate exited %d: %s", r.status, r.err);
    test_job_watch_sync(watch, h->name);
    if (test_job_watch_seen(&w, "phase:perform"))
        g_error("the job went on to perform after domjobabort in prepare");
    /* Whatever went through the gate (a probe ends by itself, the
     * incoming QEMU is killed by its daemon) is gone. */
    if (!test_pid_wait_exit(waiting, EXIT_WAIT_MS))
        g_error("the QEMU %d the destination started in Prepare still runs", (int)waiting);
    assert_source_kept(h, since_us);
    stop_and_check_disk(h, 0);
}

static void
test_dst_killed(gconstpointer data)
{
    guint pair_index = GPOINTER_TO_UINT(data);
    g_autoptr(Hosts) h = hosts_new(pair_index, "dstkill");
    g_auto(TestJobWatch) w = {0};
    g_autoptr(TestCliJob) job = NULL;
    g_auto(TestCliResult) r = {0};
    g_auto(TestCliResult) info = {0};
    gint64 since_us = 0;
    pid_t victim = 0;

    if (!h)
        return;
    job = start_slow_migration(h, &w, &since_us);
    /* The incoming QEMU's pid, from the destination daemon. */
    TEST_CLI(&info, h->host[1], "dominfo", "--json", h->name);
    if (info.status == 0) {
        g_autoptr(json_object) obj = ho_json_parse(info.out, strlen(info.out));
        int64_t pid = 0;

        g_assert_nonnull(obj);
        g_assert_cmpint(ho_json_opt_int64(obj, "pid", &pid), >=, 0);
        victim = (pid_t)pid;
    }
    if (victim <= 0) {
        g_autoptr(GArray) kids = test_daemon_children(h->host[1]);

        /* Not a finding of this test, but worth knowing. */
        g_test_message("the destination's dominfo gave no pid during perform (exit %d: %s); "
                       "using its only child",
                       info.status, info.err);
        g_assert_cmpuint(kids->len, ==, 1);
        victim = g_array_index(kids, pid_t, 0);
    }
    test_daemon_track_pid(victim);
    g_assert_cmpint(kill(victim, SIGKILL), ==, 0);
    g_assert_true(test_pid_wait_exit(victim, EXIT_WAIT_MS));

    test_cli_job_finish(job, &r, "handover migrate", MIGRATE_WAIT_MS);
    if (r.status == 0)
        g_error("migrate exited 0 although the destination QEMU died\nstdout:\n%s\nstderr:\n%s",
                r.out, r.err);
    g_test_message("migrate with a killed destination exited %d: %s", r.status, r.err);
    assert_source_kept(h, since_us);
    stop_and_check_disk(h, 0);
}

static void
test_same_host(gconstpointer data)
{
    guint pair_index = GPOINTER_TO_UINT(data);
    g_autoptr(Hosts) h = hosts_new(pair_index, "samehost");
    g_autoptr(TestDaemon) twin = NULL;
    g_autoptr(GRegex) re = NULL;
    g_autofree char *src_uuid = NULL;
    int attempt;

    if (!h)
        return;
    re = g_regex_new("same host|this host", G_REGEX_CASELESS, 0, NULL);
    /* The source's generated UUID: its state dir holds it (docs/handoverd.md). */
    {
        g_autofree char *path = g_build_filename(h->host[0]->root, "state", "host-uuid", NULL);

        g_assert_true(g_file_get_contents(path, &src_uuid, NULL, NULL));
        g_strstrip(src_uuid);
    }
    /* Another daemon (in the destination's namespace) claiming the
     * source's identity: the same host as far as migration goes. */
    {
        TestDaemonOpts opts = {
            .tag = "twin",
            .netns_path = h->net->path[1],
            .host_uuid = src_uuid,
            .listen_address = h->net->addr[1],
            .migration_address = h->net->addr[1],
            .migration_port_min = 49184,
            .migration_port_max = 49215,
            .default_emulator = h->bin[1]->binary,
            .record = true,
        };

        twin = test_daemon_start(&opts);
    }

    for (attempt = 0; attempt < 2; attempt++) {
        const char *uri = attempt == 0 ? h->host[0]->peer_uri : twin->peer_uri;
        g_autoptr(TestCliJob) job = migrate_spawn(h, 0, uri, NULL);
        g_auto(TestCliResult) r = {0};
        g_autoptr(json_object) twin_list = NULL;

        test_cli_job_finish(job, &r, "handover migrate", MIGRATE_WAIT_MS);
        if (r.status == 0 || !g_regex_match(re, r.err, 0, NULL))
            g_error("migrating to %s (the same host UUID) should be refused naming the same "
                    "host: exited %d\nstdout:\n%s\nstderr:\n%s",
                    uri, r.status, r.out, r.err);
        g_test_message("refused: %s", r.err);
        /* Nothing changed: same QEMU, running, no job, nothing anywhere else. */
        assert_state(h, 0, "running");
        g_assert_cmpint(test_daemon_domain_pid(h->host[0], h->name), ==, h->src_pid);
        twin_list = test_daemon_list(twin, true);
        g_assert_cmpuint(json_object_array_length(twin_list), ==, 0);
        {
            g_autoptr(GArray) kids = test_daemon_children(twin);

            g_assert_cmpuint(kids->len, ==, 0);
        }
    }
    assert_destination_empty(h);
    assert_workload_advances(h);
    {
        g_autoptr(TestRecording) src = test_recording_load(h->host[0]->record_path, NULL);
        g_autofree char *desc = NULL;

        if (test_recording_count(src, REC_EVENT_STOP, NULL) != 0) {
            desc = test_recording_describe(src);
            g_error("the source was stopped by a refused migration:\n%s", desc);
        }
    }
    stop_and_check_disk(h, 0);
}

/* ---- main ---- */

static gint
cmp_gint64(gconstpointer a, gconstpointer b)
{
    gint64 x = *(const gint64 *)a, y = *(const gint64 *)b;

    return x < y ? -1 : x > y;
}

/* Print (TAP comments: measured, never asserted) and free one series. */
static void
print_series(const char *what, const char *pair, GArray **arr)
{
    GArray *p = *arr;
    gint64 median;

    if (!p || p->len == 0)
        return;
    g_array_sort(p, cmp_gint64);
    median = p->len % 2 ? g_array_index(p, gint64, p->len / 2)
                        : (g_array_index(p, gint64, p->len / 2 - 1) +
                           g_array_index(p, gint64, p->len / 2)) / 2;
    printf("# %s %s: median %.3f ms over %u migration(s) (min %.3f, max %.3f)\n", what, pair,
           median / 1000.0, p->len, g_array_index(p, gint64, 0) / 1000.0,
           g_array_index(p, gint64, p->len - 1) / 1000.0);
    g_array_unref(p);
    *arr = NULL;
}

static void
print_pause_summary(void)
{
    gsize i;

    for (i = 0; i < G_N_ELEMENTS(pairs); i++) {
        print_series("pause (src STOP -> dst RESUME)", pairs[i].name, &pauses[i]);
        print_series("tail (src completed -> dst RESUME)", pairs[i].name, &tails[i]);
        print_series("dst completed -> dst RESUME", pairs[i].name, &conts[i]);
    }
}

static void
add_pair_tests(const char *case_name, GTestDataFunc func)
{
    gsize i;

    for (i = 0; i < G_N_ELEMENTS(pairs); i++) {
        g_autofree char *path = g_strdup_printf("/migration/%s/%s", case_name, pairs[i].name);

        g_test_add_data_func(path, GUINT_TO_POINTER(i), func);
    }
}

int
main(int argc, char **argv)
{
    int rc;

    g_test_init(&argc, &argv, NULL);
    /* A migrate CLI killed by SIGINT must not take us along; a peer that
     * goes away must not kill us with SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    add_pair_tests("live", test_live);
    add_pair_tests("abort", test_abort_jobabort);
    add_pair_tests("sigint", test_abort_sigint);
    add_pair_tests("abort-prepare", test_abort_prepare);
    add_pair_tests("same-host", test_same_host);
    add_pair_tests("dst-killed", test_dst_killed);
    rc = g_test_run();
    print_pause_summary();
    return rc;
}
