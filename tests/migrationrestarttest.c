/*
 * A daemon restarted in the middle of a migration, end to end on real
 * QEMU (DESIGN.md §2 invariants 3, 4 and 5; issue 6: "a daemon restart
 * during postcopy keeps the job recoverable").
 *
 * Two handoverd daemons on this machine as two hosts (own --root, host
 * UUID and TCP peer port, each in a network namespace of its own, or both
 * on loopback where namespaces cannot be made), driven through the
 * `handover` CLI. One of them is killed with SIGKILL in the middle of a
 * migration (its QEMUs run on) and started again on the same root
 * (test_daemon_restart()).
 *
 * The guest sits in its firmware (KVM where /dev/kvm works, else TCG):
 * no case here needs the guest's memory content, only the migration's
 * and the QEMUs' states. It has 8 GiB of RAM, untouched, and the
 * migration runs at 1 MiB/s (precopy) and 1 MiB/s (postcopy): even its
 * zero pages then take long enough that the kill always lands in the
 * phase wanted.
 *
 * Cases, on qemu-7.2 -> qemu-7.2 and qemu-10.0 -> qemu-10.0:
 *   postcopy-src  the source daemon is killed in postcopy-active. After
 *                 its restart the job is still there (domjobinfo shows a
 *                 postcopy phase, `list` shows the domain), the source
 *                 QEMU was never resumed (flight recording), the
 *                 destination paused the stream when its peer went away
 *                 and `migrate --postcopy-resume` recovers it: the
 *                 migration completes, the destination runs the guest,
 *                 the source QEMU is gone.
 *   postcopy-dst  the same with the destination daemon killed.
 *   precopy-src   the source daemon is killed in perform (QEMU migrating):
 *                 the destination daemon unwinds its side at once (its
 *                 peer is gone), the restarted source daemon finds QEMU
 *                 still migrating and unwinds: migrate_cancel, the source
 *                 runs on, the destination QEMU is gone, never resumed.
 *   precopy-dst   the destination daemon is killed in perform: the source
 *                 daemon unwinds (its peer is gone), the orphaned
 *                 destination QEMU exits when its stream ends, and the
 *                 restarted destination daemon is left with nothing.
 *   postcopy-both both daemons killed in postcopy-active (the destination
 *                 frozen with SIGSTOP first, so neither pauses the
 *                 stream): the QEMUs carry on alone; the restarted
 *                 daemons find their jobs in postcopy and the migration
 *                 completes on its own: both jobs "completed", the
 *                 destination runs the guest, the source QEMU quits.
 *   postcopy-both-late  the same, but only the destination daemon
 *                 restarts at first: it sees the migration complete
 *                 alone; the source daemon restarted afterwards finds
 *                 its QEMU completed and finishes the job the same way.
 *   precopy-both  both daemons killed in perform (the same way): the
 *                 source daemon, restarted first, finds QEMU still
 *                 migrating and cancels it (migrate_cancel in the
 *                 recording), the source runs on; the destination QEMU
 *                 is gone, the restarted destination daemon has nothing.
 *
 * Every wait is on an event (daemon job and lifecycle events, pidfds),
 * each bounded. Cleanup (daemons, their QEMUs even orphaned ones,
 * namespaces) also runs when an assertion fails (tests/testdaemon.c,
 * tests/testnetns.c).
 */
#define HO_LOG_MODULE "tests.migrationrestart"

#include <glib.h>
#include <json-c/json.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "ho_error.h"
#include "ho_json.h"
#include "ho_rpc_client.h"
#include "recording.h"
#include "testdaemon.h"
#include "testnetns.h"
#include "testqemu.h"
#include "testutils.h"

#define GUEST_MIB 8192
#define EVENT_WAIT_MS 120000
#define MIGRATE_WAIT_MS 300000
#define EXIT_WAIT_MS 30000
#define RPC_WAIT_MS 30000

static const char *const qemus[] = {"qemu-7.2", "qemu-10.0"};

/* ---- job and lifecycle events of one domain on one daemon ---- */

typedef struct {
    HoRpcConn *conn;
    const char *name;
    GPtrArray *seen; /* "phase:perform", "job:postcopy-paused", "life:resumed", ... */
} Watch;

static void
watch_event_cb(HoRpcConn *conn, const char *event, json_object *data, gint64 ts_us,
               void *opaque)
{
    Watch *w = opaque;
    const char *name = NULL;
    const char *what = NULL;
    json_object *inner = NULL;
    const char *phase = NULL;

    if (!data || ho_json_get_string(data, "name", &name) < 0 ||
        ho_json_get_string(data, "event", &what) < 0) {
        ho_error_reset();
        return;
    }
    if (!g_str_equal(name, w->name))
        return;
    if (g_str_equal(event, "domain.lifecycle")) {
        g_ptr_array_add(w->seen, g_strdup_printf("life:%s", what));
    } else if (g_str_equal(event, "domain.job")) {
        if (g_str_equal(what, "phase")) {
            if (ho_json_get_object(data, "data", &inner) < 0 ||
                ho_json_get_string(inner, "phase", &phase) < 0)
                g_error("a phase event without its phase: %s", json_object_to_json_string(data));
            g_ptr_array_add(w->seen, g_strdup_printf("phase:%s", phase));
        } else {
            g_ptr_array_add(w->seen, g_strdup_printf("job:%s", what));
        }
    }
}

static Watch *
watch_open(TestDaemon *d, const char *name)
{
    Watch *w = g_new0(Watch, 1);
    json_object *res = NULL;

    w->conn = ho_rpc_conn_open_unix(d->socket_path, "migrationrestarttest", NULL, RPC_WAIT_MS);
    if (!w->conn)
        g_error("cannot connect to '%s': %s", d->socket_path, ho_error_last_message());
    w->name = name;
    w->seen = g_ptr_array_new_with_free_func(g_free);
    ho_rpc_conn_set_callbacks(w->conn, watch_event_cb, NULL, w);
    if (ho_rpc_conn_call_sync(w->conn, "events.subscribe", NULL, &res, RPC_WAIT_MS) < 0)
        g_error("events.subscribe: %s", ho_error_last_message());
    json_object_put(res);
    return w;
}

static void
watch_free(Watch *w)
{
    if (!w)
        return;
    ho_rpc_conn_free(w->conn);
    g_ptr_array_unref(w->seen);
    g_free(w);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Watch, watch_free)

static bool
watch_seen(const Watch *w, const char *item)
{
    guint i;

    for (i = 0; i < w->seen->len; i++) {
        if (g_str_equal(g_ptr_array_index(w->seen, i), item))
            return true;
    }
    return false;
}

static char *
watch_text(const Watch *w)
{
    g_autoptr(GPtrArray) copy = g_ptr_array_copy(w->seen, NULL, NULL);

    g_ptr_array_add(copy, NULL);
    return g_strjoinv(", ", (char **)copy->pdata);
}

/* Drop what was seen of item (to wait for the next one). */
static void
watch_forget(Watch *w, const char *item)
{
    guint i = 0;

    while (i < w->seen->len) {
        if (g_str_equal(g_ptr_array_index(w->seen, i), item))
            g_ptr_array_remove_index(w->seen, i);
        else
            i++;
    }
}

/* Wait (bounded) until one of items ("a|b") was seen; returns which
 * (g_free it). */
static char *
watch_wait(Watch *w, const char *items)
{
    g_auto(GStrv) wanted = g_strsplit(items, "|", -1);
    gint64 deadline = g_get_monotonic_time() + (gint64)EVENT_WAIT_MS * 1000;

    for (;;) {
        gint64 left;
        guint i;

        for (i = 0; wanted[i]; i++) {
            if (watch_seen(w, wanted[i]))
                return g_strdup(wanted[i]);
        }
        left = (deadline - g_get_monotonic_time()) / 1000;
        if (left <= 0) {
            g_autofree char *text = watch_text(w);

            g_error("no '%s' event for '%s' in %d ms; seen: %s", items, w->name, EVENT_WAIT_MS,
                    text);
        }
        if (ho_rpc_conn_wait_event(w->conn, (guint)left) < 0)
            g_error("the event connection closed: %s", ho_error_last_message());
    }
}

/* The domain's running job on this daemon ("phase"), or NULL when it has
 * none. Asked on the watch's connection: every job event the daemon sent
 * before is in w->seen afterwards. */
static char *
watch_job_phase(Watch *w)
{
    json_object *params = json_object_new_object();
    json_object *res = NULL;
    const char *phase = NULL;
    char *ret;

    ho_json_add_string(params, "name", w->name);
    if (ho_rpc_conn_call_sync(w->conn, "domain.jobinfo", params, &res, RPC_WAIT_MS) < 0) {
        ho_error_reset();
        return NULL;
    }
    if (ho_json_get_string(res, "phase", &phase) < 0)
        g_error("domain.jobinfo without a phase: %s", json_object_to_json_string(res));
    ret = g_strdup(phase);
    json_object_put(res);
    return ret;
}

/* Wait until the domain has no running job on the watch's daemon; the
 * ending event ("job:cancelled", ...) it ended with, or "(ended before)"
 * when it ended before the watch was subscribed (g_free it). */
static char *
watch_job_end(Watch *w)
{
    g_autofree char *phase = watch_job_phase(w);

    if (!phase) {
        if (watch_seen(w, "job:completed"))
            return g_strdup("job:completed");
        if (watch_seen(w, "job:failed"))
            return g_strdup("job:failed");
        if (watch_seen(w, "job:cancelled"))
            return g_strdup("job:cancelled");
        return g_strdup("(ended before)");
    }
    return watch_wait(w, "job:completed|job:failed|job:cancelled");
}

/* Restart a killed daemon; then say (test output) what its log tells
 * about the job, from the restart on. */
static void
restart_and_tell(TestDaemon *d, const char *netns_path, gsize *log_offset)
{
    g_autofree char *log = NULL;

    log = test_daemon_log(d);
    *log_offset = strlen(log);
    test_daemon_restart(d, netns_path);
}

static void
tell_log_since(TestDaemon *d, gsize offset)
{
    g_autofree char *log = test_daemon_log(d);
    g_auto(GStrv) lines = NULL;
    g_autoptr(GString) out = g_string_new(NULL);
    guint i;

    if (strlen(log) < offset)
        return;
    lines = g_strsplit(log + offset, "\n", -1);
    for (i = 0; lines[i]; i++) {
        if (strstr(lines[i], " qemu.migration ") || strstr(lines[i], " warn ") ||
            strstr(lines[i], " error "))
            g_string_append_printf(out, "  %s\n", lines[i]);
    }
    g_test_message("the restarted daemon '%s' said:\n%s", d->tag, out->str);
}

/* ---- two hosts and a firmware guest ---- */

typedef struct {
    const TestQemuBinary *bin;
    TestNetns *net;
    TestDaemon *host[2]; /* source, destination */
    char *dir;
    char *name;
    pid_t src_pid;
} Hosts;

static TestDaemon *
host_start(Hosts *h, int side, const char *case_name)
{
    g_autofree char *tag = g_strdup_printf("%s-%s-%s", side ? "dst" : "src", case_name,
                                           h->bin->name);
    TestDaemonOpts opts = {
        .tag = tag,
        .netns_path = h->net->path[side],
        .listen_address = h->net->addr[side],
        .migration_address = h->net->addr[side],
        /* Separate ranges: on loopback both hosts share one port space. */
        .migration_port_min = side ? 49632 : 49600,
        .migration_port_max = side ? 49663 : 49631,
        .default_emulator = h->bin->binary,
        .record = true,
    };

    return test_daemon_start(&opts);
}

static const char *
guest_type(void)
{
    return g_str_equal(test_qemu_accel(NULL), "kvm") ? "kvm" : "qemu";
}

static Hosts *
hosts_new(const char *qemu, const char *case_name)
{
    const TestQemuBinary *bin = test_qemu_need(qemu);
    g_autofree char *uuid = g_uuid_string_random();
    g_autofree char *xml = NULL;
    g_autofree char *xml_path = NULL;
    Hosts *h;

    if (!bin)
        return NULL;
    h = g_new0(Hosts, 1);
    h->bin = bin;
    h->name = g_strdup_printf("restart-%s", case_name);
    h->dir = test_make_tmpdir("restart");
    h->net = test_netns_new();
    h->host[0] = host_start(h, 0, case_name);
    h->host[1] = host_start(h, 1, case_name);

    g_test_message("guest: firmware only, %d MiB, %s", GUEST_MIB, test_qemu_accel(NULL));
    xml = g_strdup_printf("<domain type='%s'>\n"
                          "  <name>%s</name>\n"
                          "  <uuid>%s</uuid>\n"
                          "  <memory unit='MiB'>%d</memory>\n"
                          "  <vcpu>1</vcpu>\n"
                          "  <os>\n"
                          "    <type arch='x86_64' machine='pc'>hvm</type>\n"
                          "  </os>\n"
                          "  <devices>\n"
                          "    <emulator>%s</emulator>\n"
                          "  </devices>\n"
                          "</domain>\n",
                          guest_type(), h->name, uuid, GUEST_MIB, bin->binary);
    xml_path = g_build_filename(h->dir, "guest.xml", NULL);
    g_assert_true(g_file_set_contents(xml_path, xml, -1, NULL));
    h->src_pid = test_daemon_define_start(h->host[0], xml_path, h->name);
    return h;
}

static void
hosts_free(Hosts *h)
{
    if (!h)
        return;
    /* The daemons first: freeing one kills the QEMUs it left (tracked
     * ones too, those orphaned by a kill). */
    test_daemon_free(h->host[0]);
    test_daemon_free(h->host[1]);
    test_netns_free(h->net);
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

/* `handover list` (running domains) shows the domain. */
static void
assert_listed(const Hosts *h, int side)
{
    g_autofree char *listing = TEST_CLI_OK(h->host[side], "list");
    g_autofree char *row = g_strdup_printf("^ *[0-9]+ +%s +\\S+", h->name);

    if (!g_regex_match_simple(row, listing, G_REGEX_MULTILINE, 0))
        g_error("'handover list' on the %s does not show '%s':\n%s",
                side ? "destination" : "source", h->name, listing);
}

/* `domjobinfo --json` on a side: its phase (g_free it). */
static char *
cli_job_phase(const Hosts *h, int side)
{
    g_autofree char *out = TEST_CLI_OK(h->host[side], "domjobinfo", "--json", h->name);
    g_autoptr(json_object) info = ho_json_parse(out, strlen(out));
    const char *phase = NULL;

    if (!info || ho_json_get_string(info, "phase", &phase) < 0)
        g_error("'domjobinfo --json' printed no phase: %s", out);
    return g_strdup(phase);
}

/* `domjobinfo --completed --json` on a side: the last job's phase. */
static char *
cli_job_phase_completed(const Hosts *h, int side)
{
    g_autofree char *out = TEST_CLI_OK(h->host[side], "domjobinfo", "--completed", "--json",
                                       h->name);
    g_autoptr(json_object) info = ho_json_parse(out, strlen(out));
    const char *phase = NULL;

    if (!info || ho_json_get_string(info, "phase", &phase) < 0)
        g_error("'domjobinfo --completed --json' printed no phase: %s", out);
    return g_strdup(phase);
}

/* `handover migrate --live [extra...] NAME URI` on the source, in the
 * background. */
static TestCliJob *
migrate_spawn(const Hosts *h, const char *const *extra)
{
    g_autoptr(GPtrArray) args = g_ptr_array_new();

    g_ptr_array_add(args, (char *)"migrate");
    g_ptr_array_add(args, (char *)"--live");
    for (; extra && *extra; extra++)
        g_ptr_array_add(args, (char *)*extra);
    g_ptr_array_add(args, h->name);
    g_ptr_array_add(args, h->host[1]->peer_uri);
    g_ptr_array_add(args, NULL);
    return test_cli_spawn(h->host[0], (const char *const *)args->pdata);
}

static void
cli_finish(TestCliJob *job, TestCliResult *r, const char *what)
{
    test_cli_job_finish(job, r, what, MIGRATE_WAIT_MS);
    g_test_message("'%s' exited %d\nstdout:\n%sstderr:\n%s", what, r->status, r->out, r->err);
}

/* Both sides in postcopy-active with the destination's vCPUs running (a
 * break before that fails the incoming migration in QEMU, not
 * recoverable): the migration runs, switched by `migrate-postcopy`. */
static TestCliJob *
start_postcopy(Hosts *h, Watch *src, Watch *dst)
{
    static const char *const extra[] = {"--postcopy", "--bandwidth", "1",
                                        "--postcopy-bandwidth", "1", NULL};
    TestCliJob *job = migrate_spawn(h, extra);

    g_auto(TestCliResult) r = {0};
    guint tries;

    g_free(watch_wait(src, "phase:perform"));
    /* migrate-postcopy is refused until QEMU's migration left 'setup':
     * ask again after each progress report (bounded). */
    for (tries = 0;; tries++) {
        watch_forget(src, "job:progress");
        g_free(watch_wait(src, "job:progress"));
        TEST_CLI(&r, h->host[0], "migrate-postcopy", h->name);
        if (r.status == 0)
            break;
        if (tries >= 20 || !strstr(r.err, "'setup'"))
            g_error("'handover migrate-postcopy' exited %d: %s", r.status, r.err);
    }
    g_free(watch_wait(src, "phase:postcopy"));
    g_free(watch_wait(dst, "life:resumed"));
    return job;
}

/* Invariant 4 from the recordings, from since_us on: the source stopped,
 * the destination resumed after that, the source never resumed. */
static void
check_postcopy_recordings(const Hosts *h, gint64 since_us)
{
    g_autoptr(TestRecording) src = test_recording_load(h->host[0]->record_path, NULL);
    g_autoptr(TestRecording) dst = test_recording_load(h->host[1]->record_path, NULL);
    const RecEvent *stop = test_recording_first(src, REC_EVENT_STOP, NULL, since_us);
    const RecEvent *resume = test_recording_first(dst, REC_EVENT_RESUME, NULL, since_us);

    if (!stop || !resume || resume->ts < stop->ts ||
        test_recording_first(src, REC_EVENT_RESUME, NULL, since_us)) {
        g_autofree char *s = test_recording_describe(src);
        g_autofree char *d = test_recording_describe(dst);

        g_error("postcopy: expected source STOP, then destination RESUME, never a source "
                "RESUME; source:\n%s\ndestination:\n%s",
                s, d);
    }
    g_assert_cmpuint(test_recording_count(src, REC_EVENT_MIGRATION, "postcopy-active"), >=, 1);
}

/* Recover a paused postcopy migration from the source and let it finish;
 * then the destination runs the guest and the source's QEMU is gone. */
static void
recover_and_complete(Hosts *h)
{
    g_autoptr(TestCliJob) job = NULL;
    g_auto(TestCliResult) r = {0};
    g_autoptr(json_object) running = NULL;

    job = test_cli_spawn(h->host[0], (const char *const[]){"migrate", "--postcopy-resume",
                                                           h->name, h->host[1]->peer_uri, NULL});
    cli_finish(job, &r, "handover migrate --postcopy-resume");
    g_assert_cmpint(r.status, ==, 0);
    assert_state(h, 1, "running");
    running = test_daemon_list(h->host[0], false);
    g_assert_cmpuint(json_object_array_length(running), ==, 0);
    if (!test_pid_wait_exit(h->src_pid, EXIT_WAIT_MS))
        g_error("the source QEMU %d still runs after the migration", (int)h->src_pid);
}

/* ---- postcopy ---- */

/* The nice value of this test, which its daemons start their QEMUs at. */
static int
own_nice(void)
{
    return getpriority(PRIO_PROCESS, 0);
}

static void
test_postcopy(const char *qemu, int killed)
{
    const char *case_name = killed ? "pc-dst" : "pc-src";
    g_autoptr(Hosts) h = hosts_new(qemu, case_name);
    g_autoptr(Watch) src = NULL;
    g_autoptr(Watch) dst = NULL;
    g_autoptr(Watch) again = NULL;
    g_autoptr(TestCliJob) job = NULL;
    g_auto(TestCliResult) r = {0};
    g_autofree char *phase = NULL;
    g_autofree char *other = NULL;
    pid_t dst_pid;
    gint64 since_us;
    gsize log_offset = 0;

    if (!h)
        return;
    src = watch_open(h->host[0], h->name);
    dst = watch_open(h->host[1], h->name);
    since_us = g_get_monotonic_time();
    job = start_postcopy(h, src, dst);
    dst_pid = test_daemon_domain_pid(h->host[1], h->name);
    g_assert_cmpint(dst_pid, >, 0);
    /* The source's QEMU runs boosted from its STOP to the end of its job
     * (migration_switchover_boost, 10 by default), postcopy included. */
    if (geteuid() == 0)
        g_assert_cmpint(getpriority(PRIO_PROCESS, (id_t)h->src_pid), ==,
                        MAX(-20, own_nice() - 10));

    /* The kill: the other daemon loses its peer in postcopy and pauses
     * the stream (never an unwinding), the killed one's QEMU waits. */
    test_daemon_kill9(h->host[killed]);
    g_clear_pointer(killed ? &dst : &src, watch_free);
    other = watch_wait(killed ? src : dst, "job:postcopy-paused|job:failed|job:completed");
    g_assert_cmpstr(other, ==, "job:postcopy-paused");
    cli_finish(job, &r, "handover migrate --postcopy");
    /* The migrate command on the source stops watching the job either way:
     * its daemon died, or it reports the pause as recoverable. */
    g_assert_cmpint(r.status, !=, 0);

    /* Both QEMUs live on, neither was killed by the restart. */
    g_assert_false(test_pid_wait_exit(h->src_pid, 0));
    g_assert_false(test_pid_wait_exit(dst_pid, 0));

    restart_and_tell(h->host[killed], h->net->path[killed], &log_offset);
    again = watch_open(h->host[killed], h->name);
    /* The restarted daemon kept the job: QEMU says where it got to. */
    phase = watch_job_phase(again);
    if (!phase) {
        g_autofree char *seen = watch_text(again);

        g_error("the restarted %s daemon has no job for '%s' (seen: %s)",
                killed ? "destination" : "source", h->name, seen);
    }
    g_test_message("after the restart the %s job is in phase %s",
                   killed ? "destination" : "source", phase);
    g_assert_true(g_str_equal(phase, "postcopy") || g_str_equal(phase, "postcopy-paused"));
    g_clear_pointer(&phase, g_free);
    /* It is paused: the peer paused the stream before the restart. */
    if (!watch_seen(again, "job:postcopy-paused"))
        g_free(watch_wait(again, "job:postcopy-paused"));
    phase = cli_job_phase(h, killed);
    g_assert_cmpstr(phase, ==, "postcopy-paused");
    g_clear_pointer(&phase, g_free);
    phase = cli_job_phase(h, !killed);
    g_assert_cmpstr(phase, ==, "postcopy-paused");
    assert_listed(h, 0);
    assert_listed(h, 1);
    g_assert_cmpint(test_daemon_domain_pid(h->host[0], h->name), ==, h->src_pid);
    g_assert_cmpint(test_daemon_domain_pid(h->host[1], h->name), ==, dst_pid);
    assert_state(h, 0, "paused");
    /* The restarted daemon put back the QEMU its predecessor left boosted
     * (the destination's was never boosted: it ran at postcopy-active). */
    g_assert_cmpint(getpriority(PRIO_PROCESS, (id_t)(killed ? dst_pid : h->src_pid)), ==,
                    own_nice());

    recover_and_complete(h);
    tell_log_since(h->host[killed], log_offset);
    check_postcopy_recordings(h, since_us);
}

/* Both daemons die in postcopy-active (the destination's frozen first, so
 * that neither pauses the stream): the QEMUs carry on alone. Restarted,
 * the daemons find their jobs in postcopy, and the migration completes
 * on its own: the destination runs the guest, the source QEMU quits. */
static void
test_postcopy_both(const char *qemu, bool late)
{
    g_autoptr(Hosts) h = hosts_new(qemu, late ? "pc-late" : "pc-both");
    g_autoptr(Watch) src = NULL;
    g_autoptr(Watch) dst = NULL;
    g_autoptr(TestCliJob) job = NULL;
    g_autoptr(json_object) running = NULL;
    g_auto(TestCliResult) r = {0};
    g_autofree char *phase = NULL;
    g_autofree char *end = NULL;
    gsize src_offset = 0, dst_offset = 0;
    pid_t dst_pid;
    gint64 since_us;

    if (!h)
        return;
    src = watch_open(h->host[0], h->name);
    dst = watch_open(h->host[1], h->name);
    since_us = g_get_monotonic_time();
    job = start_postcopy(h, src, dst);
    dst_pid = test_daemon_domain_pid(h->host[1], h->name);
    g_assert_cmpint(dst_pid, >, 0);
    g_clear_pointer(&src, watch_free);
    g_clear_pointer(&dst, watch_free);

    /* Frozen, the destination daemon cannot react to the source's death. */
    g_assert_cmpint(kill(h->host[1]->pid, SIGSTOP), ==, 0);
    test_daemon_kill9(h->host[0]);
    test_daemon_kill9(h->host[1]);
    cli_finish(job, &r, "handover migrate --postcopy");
    g_assert_cmpint(r.status, !=, 0);
    g_assert_false(test_pid_wait_exit(h->src_pid, 0));
    g_assert_false(test_pid_wait_exit(dst_pid, 0));

    if (late) {
        /* The destination daemon alone: it sees the migration complete
         * (the source QEMU with it), and only then the source's. */
        restart_and_tell(h->host[1], h->net->path[1], &dst_offset);
        dst = watch_open(h->host[1], h->name);
        end = watch_job_end(dst);
        tell_log_since(h->host[1], dst_offset);
        g_assert_true(g_str_equal(end, "job:completed") || g_str_equal(end, "(ended before)"));
        g_clear_pointer(&end, g_free);
        restart_and_tell(h->host[0], h->net->path[0], &src_offset);
        src = watch_open(h->host[0], h->name);
    } else {
        restart_and_tell(h->host[0], h->net->path[0], &src_offset);
        restart_and_tell(h->host[1], h->net->path[1], &dst_offset);
        src = watch_open(h->host[0], h->name);
        dst = watch_open(h->host[1], h->name);
        /* Nothing paused the stream: still in postcopy, or done already. */
        phase = watch_job_phase(src);
        g_test_message("after the restart the source job is in phase %s",
                       phase ? phase : "(none)");
        g_assert_true(!phase || g_str_equal(phase, "postcopy"));
        g_clear_pointer(&phase, g_free);
        phase = watch_job_phase(dst);
        g_test_message("after the restart the destination job is in phase %s",
                       phase ? phase : "(none)");
        g_assert_true(!phase || g_str_equal(phase, "postcopy"));
        end = watch_job_end(dst);
        tell_log_since(h->host[1], dst_offset);
        g_assert_true(g_str_equal(end, "job:completed") || g_str_equal(end, "(ended before)"));
        g_clear_pointer(&end, g_free);
    }
    end = watch_job_end(src);
    tell_log_since(h->host[0], src_offset);
    g_assert_true(g_str_equal(end, "job:completed") || g_str_equal(end, "(ended before)"));
    g_clear_pointer(&phase, g_free);
    phase = cli_job_phase_completed(h, 0);
    g_assert_cmpstr(phase, ==, "completed");
    g_clear_pointer(&phase, g_free);
    phase = cli_job_phase_completed(h, 1);
    g_assert_cmpstr(phase, ==, "completed");

    assert_state(h, 1, "running");
    g_assert_cmpint(test_daemon_domain_pid(h->host[1], h->name), ==, dst_pid);
    running = test_daemon_list(h->host[0], false);
    g_assert_cmpuint(json_object_array_length(running), ==, 0);
    if (!test_pid_wait_exit(h->src_pid, EXIT_WAIT_MS))
        g_error("the source QEMU %d still runs after the migration", (int)h->src_pid);
    check_postcopy_recordings(h, since_us);
}

static void
test_postcopy_both_now(gconstpointer data)
{
    test_postcopy_both(data, false);
}

static void
test_postcopy_both_late(gconstpointer data)
{
    test_postcopy_both(data, true);
}

static void
test_postcopy_src(gconstpointer data)
{
    test_postcopy(data, 0);
}

static void
test_postcopy_dst(gconstpointer data)
{
    test_postcopy(data, 1);
}

/* ---- precopy ---- */

static void
test_precopy(const char *qemu, int killed)
{
    static const char *const extra[] = {"--bandwidth", "1", NULL};
    const char *case_name = killed ? "pre-dst" : "pre-src";
    g_autoptr(Hosts) h = hosts_new(qemu, case_name);
    g_autoptr(Watch) src = NULL;
    g_autoptr(Watch) dst = NULL;
    g_autoptr(Watch) again = NULL;
    g_autoptr(TestCliJob) job = NULL;
    g_autoptr(TestRecording) srec = NULL;
    g_autoptr(TestRecording) drec = NULL;
    g_autoptr(json_object) all = NULL;
    g_auto(TestCliResult) r = {0};
    g_autofree char *why = NULL;
    g_autofree char *end = NULL;
    g_autofree char *phase = NULL;
    pid_t dst_pid;
    gint64 since_us;
    gsize log_offset = 0;

    if (!h)
        return;
    src = watch_open(h->host[0], h->name);
    dst = watch_open(h->host[1], h->name);
    since_us = g_get_monotonic_time();
    job = migrate_spawn(h, extra);
    g_free(watch_wait(src, "phase:perform"));
    /* QEMU is migrating: its progress is reported. */
    g_free(watch_wait(src, "job:progress"));
    dst_pid = test_daemon_domain_pid(h->host[1], h->name);
    g_assert_cmpint(dst_pid, >, 0);

    test_daemon_kill9(h->host[killed]);
    g_clear_pointer(killed ? &dst : &src, watch_free);
    /* The other side unwinds at once: its peer is gone. */
    end = watch_wait(killed ? src : dst, "job:failed|job:cancelled|job:completed");
    g_test_message("the %s job ended with %s", killed ? "source" : "destination", end);
    g_assert_cmpstr(end, !=, "job:completed");
    g_clear_pointer(&end, g_free);
    cli_finish(job, &r, "handover migrate");
    g_assert_cmpint(r.status, !=, 0);

    restart_and_tell(h->host[killed], h->net->path[killed], &log_offset);
    again = watch_open(h->host[killed], h->name);
    end = watch_job_end(again);
    tell_log_since(h->host[killed], log_offset);
    g_test_message("the restarted %s daemon's job ended with %s",
                   killed ? "destination" : "source", end);
    if (!killed) {
        /* The source's record said perform, QEMU still migrating: unwound. */
        g_assert_true(g_str_equal(end, "job:cancelled") || g_str_equal(end, "job:failed"));
        phase = watch_job_phase(again);
        g_assert_null(phase);
    }

    /* Invariant 3: the source runs on its own QEMU, the destination QEMU
     * is gone, nothing is left on the destination. */
    assert_state(h, 0, "running");
    g_assert_cmpint(test_daemon_domain_pid(h->host[0], h->name), ==, h->src_pid);
    if (!test_pid_wait_exit(dst_pid, EXIT_WAIT_MS))
        g_error("the destination QEMU %d still runs", (int)dst_pid);
    all = test_daemon_list_emptied(h->host[1], EXIT_WAIT_MS);
    if (json_object_array_length(all) != 0)
        g_error("the destination lists domains: %s", json_object_to_json_string(all));
    srec = test_recording_load(h->host[0]->record_path, NULL);
    drec = test_recording_load(h->host[1]->record_path, NULL);
    if (!test_recording_check_no_handover(srec, drec, since_us, &why))
        g_error("%s", why);
    /* The source still works: it pauses and resumes on request. */
    g_free(TEST_CLI_OK(h->host[0], "suspend", h->name));
    assert_state(h, 0, "paused");
    g_free(TEST_CLI_OK(h->host[0], "resume", h->name));
    assert_state(h, 0, "running");
}

/* Both daemons die in perform (the destination's frozen first, so that
 * it unwinds nothing): the QEMUs go on migrating alone. The source
 * daemon, restarted first, finds QEMU still migrating and unwinds:
 * migrate_cancel, the source runs on. The destination QEMU's stream
 * ends with it; the restarted destination daemon has nothing left. */
static void
test_precopy_both(gconstpointer data)
{
    static const char *const extra[] = {"--bandwidth", "1", NULL};
    g_autoptr(Hosts) h = hosts_new(data, "pre-both");
    g_autoptr(Watch) src = NULL;
    g_autoptr(Watch) dst = NULL;
    g_autoptr(TestCliJob) job = NULL;
    g_autoptr(TestRecording) srec = NULL;
    g_autoptr(TestRecording) drec = NULL;
    g_autoptr(json_object) all = NULL;
    g_auto(TestCliResult) r = {0};
    g_autofree char *why = NULL;
    g_autofree char *end = NULL;
    gsize src_offset = 0, dst_offset = 0;
    pid_t dst_pid;
    gint64 since_us, restart_us;

    if (!h)
        return;
    src = watch_open(h->host[0], h->name);
    since_us = g_get_monotonic_time();
    job = migrate_spawn(h, extra);
    g_free(watch_wait(src, "phase:perform"));
    g_free(watch_wait(src, "job:progress"));
    dst_pid = test_daemon_domain_pid(h->host[1], h->name);
    g_assert_cmpint(dst_pid, >, 0);
    g_clear_pointer(&src, watch_free);

    g_assert_cmpint(kill(h->host[1]->pid, SIGSTOP), ==, 0);
    test_daemon_kill9(h->host[0]);
    test_daemon_kill9(h->host[1]);
    cli_finish(job, &r, "handover migrate");
    g_assert_cmpint(r.status, !=, 0);
    g_assert_false(test_pid_wait_exit(dst_pid, 0));

    restart_us = g_get_monotonic_time();
    restart_and_tell(h->host[0], h->net->path[0], &src_offset);
    src = watch_open(h->host[0], h->name);
    end = watch_job_end(src);
    tell_log_since(h->host[0], src_offset);
    g_assert_true(g_str_equal(end, "job:failed") || g_str_equal(end, "job:cancelled"));
    /* QEMU was still migrating: the restarted daemon cancelled it. */
    g_assert_cmpuint(test_recording_count_done(h->host[0]->record_path, NULL, restart_us,
                                               "migrate_cancel", NULL, NULL),
                     ==, 1);
    assert_state(h, 0, "running");
    g_assert_cmpint(test_daemon_domain_pid(h->host[0], h->name), ==, h->src_pid);

    restart_and_tell(h->host[1], h->net->path[1], &dst_offset);
    dst = watch_open(h->host[1], h->name);
    g_clear_pointer(&end, g_free);
    end = watch_job_end(dst);
    tell_log_since(h->host[1], dst_offset);
    g_test_message("the restarted destination daemon's job ended with %s", end);
    if (!test_pid_wait_exit(dst_pid, EXIT_WAIT_MS))
        g_error("the destination QEMU %d still runs", (int)dst_pid);
    all = test_daemon_list_emptied(h->host[1], EXIT_WAIT_MS);
    if (json_object_array_length(all) != 0)
        g_error("the destination lists domains: %s", json_object_to_json_string(all));
    srec = test_recording_load(h->host[0]->record_path, NULL);
    drec = test_recording_load(h->host[1]->record_path, NULL);
    if (!test_recording_check_no_handover(srec, drec, since_us, &why))
        g_error("%s", why);
    assert_state(h, 0, "running");
}

static void
test_precopy_src(gconstpointer data)
{
    test_precopy(data, 0);
}

static void
test_precopy_dst(gconstpointer data)
{
    test_precopy(data, 1);
}

int
main(int argc, char **argv)
{
    static const struct {
        const char *name;
        GTestDataFunc func;
    } cases[] = {
        {"postcopy-src", test_postcopy_src},
        {"postcopy-dst", test_postcopy_dst},
        {"postcopy-both", test_postcopy_both_now},
        {"postcopy-both-late", test_postcopy_both_late},
        {"precopy-src", test_precopy_src},
        {"precopy-dst", test_precopy_dst},
        {"precopy-both", test_precopy_both},
    };
    size_t i, j;

    g_test_init(&argc, &argv, NULL);
    /* A peer that goes away must not kill us with SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    for (i = 0; i < G_N_ELEMENTS(qemus); i++) {
        for (j = 0; j < G_N_ELEMENTS(cases); j++) {
            g_autofree char *path = g_strdup_printf("/migration-restart/%s/%s", qemus[i],
                                                    cases[j].name);

            g_test_add_data_func(path, qemus[i], cases[j].func);
        }
    }
    return g_test_run();
}
