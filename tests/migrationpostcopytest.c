/*
 * Postcopy and its recovery end to end on real QEMU (issue 6): two
 * handoverd daemons as two hosts, each in a network namespace of its own
 * joined by a veth pair (tests/testnetns.h), the Linux test guest
 * (docs/test-guest.md) under TCG, its disk on storage both daemons see,
 * driven through the `handover` CLI.
 *
 * The guest's RAM dirtier runs unthrottled over its 32 MiB, so after the
 * first precopy pass most of it is still to be sent, and the postcopy
 * bandwidth is limited (--postcopy-bandwidth): postcopy lasts long enough
 * for the test to act in postcopy-active. Every line the guest prints is
 * checked: a `HANDOVER-RAM BAD` (a page that came back wrong) fails the
 * test at once; `HANDOVER-RAM ok gen=N` with N above the last generation
 * printed before the switch proves every page of the dirtier's memory
 * survived a whole pass on the destination.
 *
 * Faults on the migration stream only (the destination's migration ports,
 * 49184-49215; the daemons' peer connection is left alone):
 *   close   `ss -K` in the source's namespace destroys the stream's
 *           socket (the peer gets a reset): QEMU notices at once.
 *   drop    policy routing rules (`ip rule ... blackhole`) in both
 *           namespaces: the stream's packets vanish silently; QEMU does
 *           not notice, the daemons' stall check (postcopy_stall_timeout,
 *           3 s here) forces postcopy-paused on both sides.
 *   refuse  a `prohibit` rule in the source's namespace: the source QEMU
 *           cannot connect to the destination's recovery port.
 *
 * Cases:
 *   complete/7.2      postcopy completes: the destination runs the guest,
 *                     RAM ok continues there, the source QEMU is gone;
 *                     invariant 1 (never two writers) from both
 *                     recordings; the disk ring is consistent.
 *   close/7.2         cut by closing in postcopy-active: both daemons
 *                     report postcopy-paused, nothing killed, the guest
 *                     still on the destination; --postcopy-resume
 *                     completes.
 *   drop/7.2          the same with a silent drop.
 *   twice/7.2         close, recover, drop, recover, complete: two
 *                     failures in one job.
 *   bad-port/10.0     close; a recovery whose stream cannot connect fails
 *                     with a clear error (10.0: postcopy-recover-setup ->
 *                     postcopy-paused), and one to a daemon that refuses
 *                     fails too; the job stays recoverable on both
 *                     daemons; a good recovery completes.
 *
 * Waits are on events (daemon job events, inotify on the console file,
 * pidfds), each bounded; cleanup also runs when an assertion fails
 * (tests/testdaemon.c, tests/testnetns.c). Timings are printed, never
 * asserted.
 */
#define HO_LOG_MODULE "tests.migrationpostcopy"

#include <fcntl.h>
#include <glib-unix.h>
#include <glib.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
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
#define EVENT_WAIT_MS 120000
#define MIGRATE_WAIT_MS 300000
#define EXIT_WAIT_MS 30000
#define DISK_MIB 16
#define GUEST_MIB 256
/* RAM unthrottled: postcopy has most of the dirtier's 32 MiB to move. */
#define WORKLOAD "handover.workload=disk,ram handover.disk_rate=100"
#define STALL_S 3
/* Precopy bandwidth, MiB/s. */
#define PRECOPY_MIBS "20"
/* The destination's migration ports (and the source's, apart). */
#define DST_PORT_MIN 49184
#define DST_PORT_MAX 49215
#define DST_PORTS "49184-49215"

typedef enum {
    FAULT_CLOSE,
    FAULT_DROP,
} Fault;

typedef struct {
    const char *name;
    const char *qemu;      /* both sides */
    const char *bandwidth; /* --postcopy-bandwidth, MiB/s */
    guint n_faults;
    Fault faults[2];
    bool bad_attempts; /* failed recoveries before the good one */
} Case;

static const Case cases[] = {
    {"complete/7.2", "qemu-7.2", "4", 0, {0}, false},
    {"close/7.2", "qemu-7.2", "1", 1, {FAULT_CLOSE}, false},
    {"drop/7.2", "qemu-7.2", "1", 1, {FAULT_DROP}, false},
    {"twice/7.2", "qemu-7.2", "1", 2, {FAULT_CLOSE, FAULT_DROP}, false},
    {"bad-port/10.0", "qemu-10.0", "1", 1, {FAULT_CLOSE}, true},
};

/* ---- job events of one daemon ---- */

typedef struct {
    const char *side; /* "source", "destination" */
    const char *name; /* the domain */
    GPtrArray *seen;  /* "phase:postcopy", "postcopy-paused", ... in order */
    HoRpcConn *conn;
} Watch;

static void
watch_event_cb(HoRpcConn *conn, const char *event, json_object *data, gint64 ts_us, void *opaque)
{
    Watch *w = opaque;
    const char *name = NULL;
    const char *what = NULL;
    json_object *inner = NULL;
    const char *phase = NULL;

    if (!g_str_equal(event, "domain.job") || !data)
        return;
    if (ho_json_get_string(data, "name", &name) < 0 ||
        ho_json_get_string(data, "event", &what) < 0)
        g_error("a domain.job event without name or event: %s", json_object_to_json_string(data));
    if (!g_str_equal(name, w->name) || g_str_equal(what, "progress"))
        return;
    if (g_str_equal(what, "phase")) {
        if (ho_json_get_object(data, "data", &inner) < 0 ||
            ho_json_get_string(inner, "phase", &phase) < 0)
            g_error("a phase event without its phase: %s", json_object_to_json_string(data));
        g_ptr_array_add(w->seen, g_strdup_printf("phase:%s", phase));
    } else {
        g_ptr_array_add(w->seen, g_strdup(what));
    }
}

static void
watch_open(Watch *w, TestDaemon *d, const char *side, const char *name)
{
    json_object *res = NULL;

    w->side = side;
    w->name = name;
    w->seen = g_ptr_array_new_with_free_func(g_free);
    w->conn = ho_rpc_conn_open_unix(d->socket_path, "migrationpostcopytest",
                                    g_main_context_default(), 30000);
    if (!w->conn)
        g_error("cannot connect to '%s': %s", d->socket_path, ho_error_last_message());
    ho_rpc_conn_set_callbacks(w->conn, watch_event_cb, NULL, w);
    if (ho_rpc_conn_call_sync(w->conn, "events.subscribe", NULL, &res, 30000) < 0)
        g_error("events.subscribe: %s", ho_error_last_message());
    json_object_put(res);
}

static void
watch_clear(Watch *w)
{
    g_clear_pointer(&w->conn, ho_rpc_conn_free);
    g_clear_pointer(&w->seen, g_ptr_array_unref);
}

static char *
watch_text(const Watch *w)
{
    g_autoptr(GPtrArray) copy = g_ptr_array_copy(w->seen, NULL, NULL);

    g_ptr_array_add(copy, NULL);
    return g_strjoinv(", ", (char **)copy->pdata);
}

static bool
watch_find(const Watch *w, const char *item, guint from, guint *at)
{
    for (guint i = from; i < w->seen->len; i++) {
        if (g_str_equal(g_ptr_array_index(w->seen, i), item)) {
            *at = i;
            return true;
        }
    }
    return false;
}

static gboolean
on_timeout(gpointer opaque)
{
    *(bool *)opaque = true;
    return G_SOURCE_REMOVE;
}

/* Wait (bounded) for item at or after *cursor; moves *cursor past it. */
static void
watch_wait(Watch *w, const char *item, guint *cursor)
{
    bool timed_out = false;
    guint at = 0;
    guint id = g_timeout_add(EVENT_WAIT_MS, on_timeout, &timed_out);

    while (!watch_find(w, item, *cursor, &at) && !timed_out)
        g_main_context_iteration(NULL, TRUE);
    if (!timed_out)
        g_source_remove(id);
    if (!watch_find(w, item, *cursor, &at)) {
        g_autofree char *seen = watch_text(w);

        g_error("the %s daemon sent no job event '%s' in %d ms (seen: %s)", w->side, item,
                EVENT_WAIT_MS, seen);
    }
    *cursor = at + 1;
}

/* ---- two hosts and a guest ---- */

typedef struct {
    const Case *c;
    const TestQemuBinary *bin;
    TestNetns *net;
    TestDaemon *host[2]; /* source, destination */
    char *dir;
    char *disk;
    char *name;
    TestGuestFileConsole *con;
    guint cursor;
    bool unsafe;
    pid_t src_pid;
    Watch w[2];
    guint wc[2];    /* cursors into w[i].seen */
    char *rules[2]; /* an `ip rule` selector in force per side, or NULL */
} Hosts;

static TestDaemon *
host_start(Hosts *h, int side)
{
    g_autofree char *tag = g_strdup_printf("%s-pc", side ? "dst" : "src");
    g_autofree char *conf = g_strdup_printf("postcopy_stall_timeout = %d", STALL_S);
    TestDaemonOpts opts = {
        .tag = tag,
        .netns_path = h->net->path[side],
        .listen_address = h->net->addr[side],
        .migration_address = h->net->addr[side],
        .migration_port_min = side ? DST_PORT_MIN : 49152,
        .migration_port_max = side ? DST_PORT_MAX : 49183,
        .default_emulator = h->bin->binary,
        .record = true,
        .extra_conf = conf,
    };
    TestDaemon *d = test_daemon_start(&opts);

    /* The faults hit the destination's migration ports only: the peer
     * connection must not be among them. */
    if (d->listen_port >= DST_PORT_MIN && d->listen_port <= DST_PORT_MAX)
        g_error("the %s daemon listens on %d, inside the migration range the faults hit", tag,
                d->listen_port);
    return d;
}

static void hosts_free(Hosts *h);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Hosts, hosts_free)

/* Both hosts in namespaces, the guest running its workloads on the
 * source, both daemons watched. NULL (skipped, said) without the QEMU,
 * the guest or network namespaces. */
static Hosts *
hosts_new(const Case *c)
{
    const TestQemuBinary *bin = test_qemu_need(c->qemu);
    const TestGuestImage *img;
    g_autoptr(Hosts) h = NULL;
    g_autofree char *serial = NULL;
    g_autofree char *xml = NULL;
    g_autofree char *xml_path = NULL;

    if (!bin)
        return NULL;
    img = test_guest_image_need();
    if (!img)
        return NULL;
    h = g_new0(Hosts, 1);
    h->c = c;
    h->bin = bin;
    h->net = test_netns_new();
    if (h->net->loopback) {
        test_qemu_missing("the faults need network namespaces: %s", h->net->why);
        return NULL;
    }
    h->name = g_strdup("postcopy-guest");
    h->dir = test_make_tmpdir("shared");
    h->disk = test_shared_disk_new(h->dir, DISK_MIB, &h->unsafe);
    h->host[0] = host_start(h, 0);
    h->host[1] = host_start(h, 1);

    serial = g_build_filename(h->dir, "serial.log", NULL);
    h->con = test_guest_file_console_new(serial);
    xml = test_guest_domain_xml(&(TestGuestDomain){
        .image = img,
        .bin = h->bin,
        .name = h->name,
        .memory_mib = GUEST_MIB,
        .cmdline_extra = WORKLOAD,
        .disk = h->disk,
        .cache_none = !h->unsafe,
        .serial = serial,
    });
    xml_path = g_build_filename(h->dir, "guest.xml", NULL);
    g_assert_true(g_file_set_contents(xml_path, xml, -1, NULL));
    h->src_pid = test_daemon_define_start(h->host[0], xml_path, h->name);
    test_guest_file_console_wait_up(h->con, &h->cursor, BOOT_WAIT_MS, LINE_WAIT_MS, NULL);
    watch_open(&h->w[0], h->host[0], "source", h->name);
    watch_open(&h->w[1], h->host[1], "destination", h->name);
    return g_steal_pointer(&h);
}

static void
rule_del(Hosts *h, int side)
{
    g_auto(GStrv) argv = NULL;
    g_autoptr(GPtrArray) args = NULL;

    if (!h->rules[side])
        return;
    argv = g_strsplit(h->rules[side], " ", -1);
    args = g_ptr_array_new();
    g_ptr_array_add(args, (char *)"rule");
    g_ptr_array_add(args, (char *)"del");
    for (guint i = 0; argv[i]; i++)
        g_ptr_array_add(args, argv[i]);
    g_ptr_array_add(args, NULL);
    if (test_netns_ip(h->net, side, (const char *const *)args->pdata) < 0)
        g_error("cannot remove the rule '%s' on side %d", h->rules[side], side);
    g_clear_pointer(&h->rules[side], g_free);
}

/* `ip rule add SELECTOR` on a side (removed at cleanup if still there). */
static void
rule_add(Hosts *h, int side, const char *selector)
{
    g_auto(GStrv) argv = g_strsplit(selector, " ", -1);
    g_autoptr(GPtrArray) args = g_ptr_array_new();

    g_assert_null(h->rules[side]);
    g_ptr_array_add(args, (char *)"rule");
    g_ptr_array_add(args, (char *)"add");
    for (guint i = 0; argv[i]; i++)
        g_ptr_array_add(args, argv[i]);
    g_ptr_array_add(args, NULL);
    if (test_netns_ip(h->net, side, (const char *const *)args->pdata) < 0)
        g_error("cannot add the rule '%s' on side %d", selector, side);
    h->rules[side] = g_strdup(selector);
}

static void
hosts_free(Hosts *h)
{
    if (!h)
        return;
    watch_clear(&h->w[0]);
    watch_clear(&h->w[1]);
    test_daemon_free(h->host[0]);
    test_daemon_free(h->host[1]);
    test_netns_free(h->net);
    test_guest_file_console_free(h->con);
    g_free(h->rules[0]);
    g_free(h->rules[1]);
    g_free(h->dir);
    g_free(h->disk);
    g_free(h->name);
    g_free(h);
}

/* ---- the CLI ---- */

static TestCliJob *
migrate_spawn(const Hosts *h)
{
    g_autoptr(GPtrArray) args = g_ptr_array_new();

    g_ptr_array_add(args, (char *)"migrate");
    g_ptr_array_add(args, (char *)"--live");
    g_ptr_array_add(args, (char *)"--verbose");
    if (h->unsafe)
        g_ptr_array_add(args, (char *)"--unsafe");
    /* Precopy slow enough that it cannot converge against the dirtier
     * (over a veth it would, in well under a second). */
    g_ptr_array_add(args, (char *)"--bandwidth");
    g_ptr_array_add(args, (char *)PRECOPY_MIBS);
    g_ptr_array_add(args, (char *)"--postcopy");
    g_ptr_array_add(args, (char *)"--postcopy-after-precopy");
    g_ptr_array_add(args, (char *)"--postcopy-bandwidth");
    g_ptr_array_add(args, (char *)h->c->bandwidth);
    g_ptr_array_add(args, h->name);
    g_ptr_array_add(args, h->host[1]->peer_uri);
    g_ptr_array_add(args, NULL);
    return test_cli_spawn(h->host[0], (const char *const *)args->pdata);
}

static TestCliJob *
resume_spawn(const Hosts *h, const char *uri)
{
    return test_cli_spawn(h->host[0], (const char *const[]){"migrate", "--postcopy-resume",
                                                            "--verbose", h->name, uri, NULL});
}

/* A CLI that ended because the job paused: status 1, the recovery hint. */
static void
assert_ended_paused(TestCliJob *job, const char *what)
{
    g_auto(TestCliResult) r = {0};

    test_cli_job_finish(job, &r, what, MIGRATE_WAIT_MS);
    if (r.status != 1 || !strstr(r.err, "postcopy paused: recoverable with handover migrate "
                                        "--postcopy-resume"))
        g_error("'%s' should end with status 1 saying the job is paused and recoverable; "
                "exited %d\nstdout:\n%s\nstderr:\n%s",
                what, r.status, r.out, r.err);
    g_test_message("%s ended paused: %s", what, g_strstrip(r.err));
}

/* The job's phase on a side from `domjobinfo --json` (g_free it). */
static char *
job_phase(const Hosts *h, int side)
{
    g_autofree char *out = TEST_CLI_OK(h->host[side], "domjobinfo", "--json", h->name);
    g_autoptr(json_object) obj = ho_json_parse(out, strlen(out));
    const char *phase = NULL;

    if (!obj || ho_json_get_string(obj, "phase", &phase) < 0)
        g_error("domjobinfo --json on the %s: no phase in %s", side ? "destination" : "source",
                out);
    return g_strdup(phase);
}

/* ---- faults ---- */

/* Destroy the migration stream's socket(s) in the source's namespace:
 * connections to the destination's migration ports. */
static void
cut_close(Hosts *h)
{
    g_autofree char *ss = g_find_program_in_path("ss");
    g_autofree char *out = NULL;
    g_autofree char *err = NULL;
    g_autofree char *filter =
        g_strdup_printf("( dport >= :%d and dport <= :%d )", DST_PORT_MIN, DST_PORT_MAX);
    const char *argv[] = {ss,     "-t", "-K", "-n", "state", "established", "dst", h->net->addr[1],
                          filter, NULL};
    g_autoptr(GError) gerr = NULL;
    int status = 0;

    g_assert_nonnull(ss);
    if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_DEFAULT,
                      (GSpawnChildSetupFunc)test_netns_enter, h->net->path[0], &out, &err, &status,
                      &gerr))
        g_error("ss: %s", gerr->message);
    if (!g_spawn_check_wait_status(status, NULL))
        g_error("ss -K failed (%d): %s", status, err);
    /* ss prints a header, then one line per destroyed socket. */
    if (!strchr(out, '\n') || !strchr(strchr(out, '\n') + 1, ':'))
        g_error("ss -K destroyed no migration socket:\n%s%s", out, err);
    g_test_message("closed the migration stream:\n%s", out);
}

/* Silently drop the stream's packets both ways (blackhole rules on the
 * destination's migration ports); drop_end() lifts them. */
static void
cut_drop(Hosts *h)
{
    rule_add(h, 0, "ipproto tcp dport " DST_PORTS " blackhole");
    rule_add(h, 1, "ipproto tcp sport " DST_PORTS " blackhole");
    g_test_message("dropping the migration stream's packets");
}

static void
drop_end(Hosts *h)
{
    rule_del(h, 0);
    rule_del(h, 1);
}

/* Both daemons report the job paused (each with its event when the
 * stream broke; after a failed recovery attempt only the source, since
 * the destination never left postcopy-paused); nothing was killed; the
 * guest is on the destination. */
static void
assert_paused(Hosts *h, pid_t dst_pid, bool dst_event)
{
    watch_wait(&h->w[0], "postcopy-paused", &h->wc[0]);
    if (dst_event)
        watch_wait(&h->w[1], "postcopy-paused", &h->wc[1]);
    for (int side = 0; side < 2; side++) {
        g_autofree char *phase = job_phase(h, side);

        if (!g_str_equal(phase, "postcopy-paused"))
            g_error("domjobinfo on the %s: phase %s, expected postcopy-paused",
                    side ? "destination" : "source", phase);
    }
    g_assert_true(kill(h->src_pid, 0) == 0);
    g_assert_true(kill(dst_pid, 0) == 0);
    g_assert_cmpint(test_daemon_domain_pid(h->host[1], h->name), ==, dst_pid);
}

/* Both daemons in phase postcopy (again), and the guest printing on the
 * destination. */
static void
wait_postcopy_running(Hosts *h)
{
    guint64 seq;

    watch_wait(&h->w[0], "phase:postcopy", &h->wc[0]);
    watch_wait(&h->w[1], "phase:postcopy", &h->wc[1]);
    /* The source's vCPUs stopped before the switch; a new sequence number
     * comes from the destination, whose guest now runs (a break while it
     * still loads the device state would fail the migration in QEMU). */
    seq = test_guest_file_console_last_seq(h->con);
    for (;;) {
        const char *line =
            test_guest_file_console_wait(h->con, "HANDOVER-SEQ ", &h->cursor, LINE_WAIT_MS);

        if (test_guest_seq_of(line) > seq)
            break;
    }
}

/* The highest RAM generation printed so far. */
static guint64
last_ram_gen(Hosts *h)
{
    guint n = test_guest_file_console_lines(h->con);
    guint64 gen = 0;

    for (guint i = 0; i < n; i++)
        gen = MAX(gen, test_guest_ram_gen_of(test_guest_file_console_line(h->con, i)));
    return gen;
}

/* ---- checks after completion ---- */

/* Invariant 1 for postcopy (DESIGN §2): the destination resumed once,
 * after the source stopped and reached postcopy-active; the source never
 * ran again; the source completed. */
static void
check_recordings(const Hosts *h, gint64 since_us)
{
    g_autoptr(TestRecording) src = test_recording_load(h->host[0]->record_path, NULL);
    g_autoptr(TestRecording) dst = test_recording_load(h->host[1]->record_path, NULL);
    const RecEvent *resume = test_recording_first(dst, REC_EVENT_RESUME, NULL, since_us);
    const RecEvent *pc;
    const RecEvent *last;
    g_autofree char *sdesc = test_recording_describe(src);
    g_autofree char *ddesc = test_recording_describe(dst);

    if (!resume)
        g_error("invariant 1: the destination never resumed\nsource:\n%s\ndestination:\n%s", sdesc,
                ddesc);
    pc = test_recording_first(src, REC_EVENT_MIGRATION, "postcopy-active", since_us);
    last = test_recording_last_run_state(src, resume->ts);
    if (!pc || pc->ts > resume->ts || !last || last->kind != REC_EVENT_STOP ||
        test_recording_first(src, REC_EVENT_RESUME, NULL, resume->ts) ||
        test_recording_count(dst, REC_EVENT_RESUME, NULL) != 1 ||
        !test_recording_first(src, REC_EVENT_MIGRATION, "completed", resume->ts))
        g_error("invariant 1 (postcopy): the source must stop, reach postcopy-active before the "
                "destination's only RESUME, never run again and complete\nsource:\n%s\n"
                "destination:\n%s",
                sdesc, ddesc);
    g_test_message("source STOP -> destination RESUME %.3f ms; postcopy-paused seen %u time(s) "
                   "on the source, %u on the destination",
                   (resume->ts - last->ts) / 1000.0,
                   test_recording_count(src, REC_EVENT_MIGRATION, "postcopy-paused"),
                   test_recording_count(dst, REC_EVENT_MIGRATION, "postcopy-paused"));
}

/* After the job completed: the guest runs on the destination only, its RAM
 * passes go on there past the generation of the switch, the source QEMU
 * is gone, the disk ring is consistent. */
static void
check_completed(Hosts *h, guint64 gen_switch, gint64 since_us)
{
    g_autofree char *state = test_daemon_domain_state(h->host[1], h->name);
    g_autofree char *src_state = test_daemon_domain_state(h->host[0], h->name);
    TestGuestSeqcheck res = {0};
    const char *line;
    guint64 gen = 0;
    guint64 last;

    g_assert_cmpstr(state, ==, "running");
    if (src_state && !g_str_equal(src_state, "shutoff"))
        g_error("the source still has the domain %s after the migration", src_state);
    if (!test_pid_wait_exit(h->src_pid, EXIT_WAIT_MS))
        g_error("the source QEMU %d still runs after the migration", (int)h->src_pid);
    /* A whole pass after the completion (a line printed after it), and
     * past the generation of the switch: every page checked on the
     * destination holds what the guest wrote. */
    h->cursor = test_guest_file_console_lines(h->con);
    while (gen <= gen_switch) {
        line = test_guest_file_console_wait(h->con, "HANDOVER-RAM ok", &h->cursor, LINE_WAIT_MS);
        gen = test_guest_ram_gen_of(line);
    }
    g_test_message("RAM ok gen=%" G_GUINT64_FORMAT " on the destination (gen %" G_GUINT64_FORMAT
                   " before the switch)",
                   gen, gen_switch);
    check_recordings(h, since_us);

    g_free(TEST_CLI_OK(h->host[1], "suspend", h->name));
    last = test_guest_file_console_last_seq(h->con);
    g_free(TEST_CLI_OK(h->host[1], "destroy", h->name));
    test_guest_seqcheck_ok(h->disk, NULL, last, &res);
    g_test_message("disk: max_seq=%" G_GUINT64_FORMAT " valid=%" G_GUINT64_FORMAT
                   " (last reported %" G_GUINT64_FORMAT ")",
                   res.max_seq, res.valid, last);
    test_guest_seqcheck_clear(&res);
}

/* ---- the cases ---- */

/* A failed recovery attempt: status 1, why it failed, then how to go on
 * (docs/handover-migrate.md, "Postcopy recovery"). */
static void
assert_failed_attempt(const TestCliResult *r, const char *what)
{
    const char *hint = strstr(r->err, "error: postcopy paused: recoverable with handover migrate "
                                      "--postcopy-resume");

    if (r->status != 1 || !hint || hint == r->err || !g_str_has_prefix(r->err, "error: "))
        g_error("%s should exit 1 saying why, then that the job is paused and recoverable; "
                "exited %d\nstdout:\n%s\nstderr:\n%s",
                what, r->status, r->out, r->err);
    g_test_message("%s exited %d:\n%s", what, r->status, r->err);
}

/* Failed recoveries (bad-port case): the source QEMU cannot connect to
 * the recovery port; then a destination daemon that refuses. Each fails
 * with a clear error and leaves the job paused on both sides. */
static void
bad_attempts(Hosts *h, pid_t dst_pid)
{
    g_autofree char *refused = g_strdup_printf("handover+tcp://%s:1/system", h->net->addr[1]);
    gint64 since = g_get_monotonic_time();

    {
        g_autoptr(TestCliJob) job = NULL;
        g_auto(TestCliResult) r = {0};
        g_autoptr(TestRecording) src = NULL;
        const RecEvent *setup;

        rule_add(h, 0, "ipproto tcp dport " DST_PORTS " prohibit");
        job = resume_spawn(h, h->host[1]->peer_uri);
        test_cli_job_finish(job, &r, "migrate --postcopy-resume (stream refused)", MIGRATE_WAIT_MS);
        rule_del(h, 0);
        assert_failed_attempt(&r, "a recovery whose stream cannot connect");
        /* QEMU 9.1+: the source went through recover-setup back to paused. */
        src = test_recording_load(h->host[0]->record_path, NULL);
        setup = test_recording_first(src, REC_EVENT_MIGRATION, "postcopy-recover-setup", since);
        if (!setup ||
            !test_recording_first(src, REC_EVENT_MIGRATION, "postcopy-paused", setup->ts)) {
            g_autofree char *desc = test_recording_describe(src);

            g_error("the source did not go postcopy-recover-setup -> postcopy-paused:\n%s", desc);
        }
        assert_paused(h, dst_pid, false);
    }
    {
        g_autoptr(TestCliJob) job = resume_spawn(h, refused);
        g_auto(TestCliResult) r = {0};

        test_cli_job_finish(job, &r, "migrate --postcopy-resume (daemon refused)", MIGRATE_WAIT_MS);
        assert_failed_attempt(&r, "a recovery to a refusing daemon");
        for (int side = 0; side < 2; side++) {
            g_autofree char *phase = job_phase(h, side);

            g_assert_cmpstr(phase, ==, "postcopy-paused");
        }
    }
}

static void
test_postcopy(gconstpointer data)
{
    const Case *c = data;
    g_autoptr(Hosts) h = hosts_new(c);
    g_autoptr(TestCliJob) job = NULL;
    g_auto(TestCliResult) r = {0};
    guint64 gen_switch;
    gint64 since_us;
    gint64 t0;
    pid_t dst_pid;

    if (!h)
        return;
    since_us = g_get_monotonic_time();
    job = migrate_spawn(h);
    wait_postcopy_running(h);
    gen_switch = last_ram_gen(h);
    dst_pid = test_daemon_domain_pid(h->host[1], h->name);
    g_assert_cmpint(dst_pid, >, 0);
    g_test_message("postcopy after %.1f s; RAM gen %" G_GUINT64_FORMAT " before the switch",
                   (g_get_monotonic_time() - since_us) / 1e6, gen_switch);

    for (guint i = 0; i < c->n_faults; i++) {
        const char *what = i == 0 ? "migrate" : "migrate --postcopy-resume";

        /* Still moving pages (the bandwidth is limited). */
        g_assert_false(test_cli_job_wait(job, 0, &r));
        t0 = g_get_monotonic_time();
        if (c->faults[i] == FAULT_CLOSE)
            cut_close(h);
        else
            cut_drop(h);
        assert_ended_paused(job, what);
        g_clear_pointer(&job, test_cli_job_free);
        assert_paused(h, dst_pid, true);
        g_test_message("fault %u (%s): both paused after %.1f s", i + 1,
                       c->faults[i] == FAULT_CLOSE ? "close" : "drop",
                       (g_get_monotonic_time() - t0) / 1e6);
        if (c->faults[i] == FAULT_DROP)
            drop_end(h);
        if (c->bad_attempts)
            bad_attempts(h, dst_pid);
        job = resume_spawn(h, h->host[1]->peer_uri);
        if (i + 1 < c->n_faults)
            wait_postcopy_running(h);
    }
    test_cli_job_finish(job, &r, "migrate", MIGRATE_WAIT_MS);
    if (r.status != 0)
        g_error("the migration did not complete: exited %d\nstdout:\n%s\nstderr:\n%s", r.status,
                r.out, r.err);
    g_test_message("completed after %.1f s in all", (g_get_monotonic_time() - since_us) / 1e6);
    check_completed(h, gen_switch, since_us);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    signal(SIGPIPE, SIG_IGN);
    for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *path = g_strdup_printf("/migration/postcopy/%s", cases[i].name);

        g_test_add_data_func(path, &cases[i], test_postcopy);
    }
    return g_test_run();
}
