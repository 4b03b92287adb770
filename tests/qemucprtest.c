/*
 * Scenario tests of the CPR transfer (issue 6) on mock QMP transcripts:
 * qemu_migration_src_cpr_transfer through the real driver and
 * orchestrator, both QEMUs served by a QemuMock from
 * tests/qemumigrationdata/cpr-*.jsonl: side "src" is the domain's QEMU
 * (its start is the head of every transcript), side "new" the QEMU the
 * driver spawns for the transfer.
 *
 * The driver's spawn hook stands a `sleep` child in for each QEMU, serves
 * its monitor from the mock and, for the new QEMU, listens on its CPR
 * channel socket (the orchestrator issues `migrate` only once that socket
 * listens). A "close" line kills that side's stand-in.
 *
 * Each case asserts the exact QMP sequence on both QEMUs (the mock fails
 * on any command it does not expect, and must have played every line),
 * the phases, the outcome, which QEMU the domain ends on and its state,
 * and that no `cont` went to the old QEMU after QEMU's own RESUME there
 * (never a second resume).
 */
#define HO_LOG_MODULE "tests.cpr"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ho_error.h"
#include "ho_file.h"
#include "ho_json.h"
#include "ho_log.h"
#include "qemu_driver.h"
#include "qemu_migration.h"
#include "qemu_mock.h"
#include "qemu_process.h"
#include "testutils.h"

#define DOM_NAME "vm1"
#define DOM_UUID "0b9e3f7c-1d2a-4c55-9e61-7a3f0c2d4e52"
#define CASE_TIMEOUT_MS 20000
#define MAX_STANDINS 8

typedef struct {
    const char *name;
    const char *transcript;
    const char *abort_after; /* abort once the mock played this history line */
    bool completed;
    const char *error; /* substring of the job's error */
    const char *phases;
    bool on_new;              /* the domain ends on the new QEMU */
    QemuDomainState state;    /* its final state */
} Case;

static const Case cases[] = {
    {
        .name = "success",
        .transcript = "cpr-success.jsonl",
        .completed = true,
        .phases = "begin prepare perform switchover finish confirm",
        .on_new = true,
        .state = QEMU_DOMAIN_STATE_RUNNING,
    },
    {
        /* The new QEMU dies after the old one completed: QEMU does not
         * resume the guest itself; we do, once. */
        .name = "new-dies-after-completed",
        .transcript = "cpr-new-dies.jsonl",
        /* Either the new QEMU's exit ("... during the CPR transfer") or its
         * closed monitor ("refused the incoming CPR transfer: ...") is
         * noticed first, depending on scheduling. */
        .error = "CPR transfer",
        .phases = "begin prepare perform switchover",
        .state = QEMU_DOMAIN_STATE_RUNNING,
    },
    {
        /* As above, but the old QEMU is still in finish-migrate when
         * asked: asked again, then one cont. */
        .name = "new-dies-in-finish-migrate",
        .transcript = "cpr-new-dies-finish-migrate.jsonl",
        .error = "CPR transfer",
        .phases = "begin prepare perform switchover",
        .state = QEMU_DOMAIN_STATE_RUNNING,
    },
    {
        /* migrate refused at once: the guest was never stopped. */
        .name = "migrate-refused",
        .transcript = "cpr-refused.jsonl",
        .error = "reported the CPR transfer of domain 'vm1' as failed",
        .phases = "begin prepare perform",
        .state = QEMU_DOMAIN_STATE_RUNNING,
    },
    {
        /* Cancelled while RAM moves (after QEMU's STOP): QEMU resumes
         * the guest itself; no cont from us. */
        .name = "cancel",
        .transcript = "cpr-cancel.jsonl",
        .abort_after = "src recv STOP",
        .error = "was cancelled",
        .phases = "begin prepare perform",
        .state = QEMU_DOMAIN_STATE_RUNNING,
    },
};

typedef struct {
    const Case *c;
    GMainContext *ctx;
    char *dir;
    char *emu;
    QemuDriver *drv;
    QemuMigration *mig;
    QemuMock *mock;
    QemuMock *probe_mock;
    QemuDomainObj *dom;
    GPid pids[MAX_STANDINS];
    int pidfds[MAX_STANDINS];
    char sides[MAX_STANDINS][8];
    guint n;
    int chan_fd; /* the new QEMU's CPR channel, listening */
    GString *phases;
    bool done;
    bool acted;
    HoError *err;
    bool start_done;
    HoError *start_err;
    int old_pid;
} Fx;

static void
standin_child_setup(gpointer data)
{
    (void)data;
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
}

static int
listen_unix(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path))
        return -1;
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    (void)unlink(path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int
spawn_hook(const QemuProcessSpawn *opts, GPid *pid, void *opaque)
{
    Fx *f = opaque;
    g_autofree char *base = g_path_get_basename(opts->qmp_path);
    bool probe = g_str_has_prefix(base, "probe-");
    bool cpr = g_str_has_suffix(base, ".cpr-qmp");
    QemuMock *mock = probe ? f->probe_mock : f->mock;
    const char *side = cpr ? "new" : "src";
    const char *argv[] = {"/bin/sleep", "3600", NULL};
    g_autoptr(GError) gerr = NULL;
    int fd;

    if (!mock || f->n >= MAX_STANDINS) {
        ho_error_report(HO_ERR_INTERNAL, "test: unexpected QEMU spawn (%s)", base);
        return -1;
    }
    if (qemu_mock_side_listen_at(mock, side, opts->qmp_path) < 0)
        return -1;
    if (cpr) {
        g_autofree char *dir = g_path_get_dirname(opts->qmp_path);
        g_autofree char *chan = g_build_filename(dir, DOM_NAME ".cpr", NULL);

        /* What QEMU does at its start: listen on the CPR channel. */
        f->chan_fd = listen_unix(chan);
        g_assert_cmpint(f->chan_fd, >=, 0);
    }
    fd = open(opts->log_path,
              O_WRONLY | O_CREAT | O_CLOEXEC | (opts->log_append ? O_APPEND : O_TRUNC), 0600);
    if (fd >= 0)
        close(fd);
    if (!g_spawn_async(NULL, (char **)argv, NULL,
                       G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDOUT_TO_DEV_NULL |
                           G_SPAWN_STDERR_TO_DEV_NULL,
                       standin_child_setup, NULL, pid, &gerr)) {
        ho_error_report(HO_ERR_SYSTEM, "test: cannot spawn the stand-in: %s", gerr->message);
        return -1;
    }
    f->pids[f->n] = *pid;
    f->pidfds[f->n] = qemu_process_pidfd_open(*pid);
    g_assert_cmpint(f->pidfds[f->n], >=, 0);
    g_strlcpy(f->sides[f->n], probe ? "probe" : side, sizeof(f->sides[0]));
    f->n++;
    return 0;
}

static void
mock_closed(QemuMock *mock, const char *side, void *opaque)
{
    Fx *f = opaque;

    for (guint i = f->n; i-- > 0;) {
        if (g_str_equal(f->sides[i], side)) {
            if (qemu_process_pidfd_send_signal(f->pidfds[i], SIGKILL) < 0)
                ho_error_reset();
            return;
        }
    }
}

static void
driver_event(QemuDriver *drv, QemuDomainObj *dom, const char *event, const char *detail,
             void *opaque)
{
}

static void
mig_event(QemuMigration *mig, const char *name, const char *uuid, const char *event,
          json_object *data, void *opaque)
{
    Fx *f = opaque;
    const char *phase = NULL;

    if (!g_str_equal(event, "phase") || ho_json_opt_string(data, "phase", &phase) <= 0)
        return;
    if (qemu_migration_phase_is_terminal(qemu_migration_phase_from_string(phase)))
        return;
    g_string_append_printf(f->phases, "%s%s", f->phases->len ? " " : "", phase);
}

static gboolean
abort_idle(gpointer opaque)
{
    Fx *f = opaque;

    g_assert_cmpint(qemu_migration_any_abort(f->mig, f->dom), ==, 0);
    return G_SOURCE_REMOVE;
}

static void
mock_played(QemuMock *mock, const char *line, void *opaque)
{
    Fx *f = opaque;
    GSource *idle;

    if (!f->c->abort_after || f->acted || !g_str_equal(line, f->c->abort_after))
        return;
    f->acted = true;
    idle = g_idle_source_new();
    g_source_set_callback(idle, abort_idle, f, NULL);
    g_source_attach(idle, f->ctx);
    g_source_unref(idle);
}

static void
done_cb(QemuMigration *mig, const char *uuid, const HoError *err, json_object *stats,
        void *opaque)
{
    Fx *f = opaque;

    g_assert_false(f->done);
    f->done = true;
    f->err = ho_error_copy(err);
}

static void
caps_done(QemuDriver *drv, const QemuCaps *caps, const HoError *err, void *opaque)
{
    Fx *f = opaque;

    f->start_err = ho_error_copy(err);
    f->start_done = true;
}

static void
start_done(QemuDriver *drv, QemuDomainObj *dom, const HoError *err, void *opaque)
{
    Fx *f = opaque;

    f->start_err = ho_error_copy(err);
    f->start_done = true;
}

static void
fx_setup(Fx *f, const Case *c)
{
    g_autofree char *state = NULL, *run = NULL, *log = NULL, *bindir = NULL;
    g_autofree char *probe = NULL, *transcript = NULL, *rel = NULL, *xml = NULL;
    QemuDriverConfig cfg = {0};
    QemuMigrationConfig mcfg = {0};

    memset(f, 0, sizeof(*f));
    f->c = c;
    f->chan_fd = -1;
    f->phases = g_string_new(NULL);
    f->ctx = g_main_context_ref_thread_default();
    f->dir = test_make_tmpdir("cpr");
    bindir = g_build_filename(f->dir, "bin", NULL);
    g_assert_cmpint(ho_file_ensure_dir(bindir, 0700), ==, 0);
    f->emu = g_build_filename(bindir, "qemu-10.0", NULL);
    /* A fake binary: the driver stats it, the hook never runs it. */
    g_assert_true(g_file_set_contents(f->emu, "#!/bin/false\n", -1, NULL));
    state = g_build_filename(f->dir, "state", NULL);
    run = g_build_filename(f->dir, "run", NULL);
    log = g_build_filename(f->dir, "log", NULL);
    cfg.state_dir = state;
    cfg.runtime_dir = run;
    cfg.log_dir = log;
    cfg.default_emulator = f->emu;
    cfg.shutdown_timeout_s = 5;
    cfg.spawn_hook = spawn_hook;
    cfg.spawn_hook_opaque = f;
    f->drv = qemu_driver_open(&cfg, f->ctx, driver_event, f);
    g_assert_nonnull(f->drv);
    mcfg.host_uuid = "5a5a5a5a-0000-4000-8000-00000000000c";
    mcfg.hostname = "host";
    mcfg.progress_interval_ms = 3600 * 1000;
    mcfg.postcopy_stall_s = 3600;
    f->mig = qemu_migration_new(f->drv, &mcfg, mig_event, f);
    g_assert_nonnull(f->mig);

    /* The capability probe of the emulator. */
    probe = test_data_path("qemumigrationdata/probe-qemu-10.0.jsonl");
    f->probe_mock = qemu_mock_new(probe, f->ctx);
    g_assert_nonnull(f->probe_mock);
    qemu_mock_set_max_delay(f->probe_mock, 0);
    qemu_driver_get_caps(f->drv, f->emu, caps_done, f);
    g_assert_true(test_iterate_until(f->ctx, &f->start_done, CASE_TIMEOUT_MS));
    g_assert_null(f->start_err);
    g_assert_cmpint(qemu_mock_run(f->probe_mock, CASE_TIMEOUT_MS), ==, 0);
    g_clear_pointer(&f->probe_mock, qemu_mock_free);

    rel = g_strdup_printf("qemumigrationdata/%s", c->transcript);
    transcript = test_data_path(rel);
    f->mock = qemu_mock_new(transcript, f->ctx);
    if (!f->mock)
        g_error("%s", ho_error_last_message());
    qemu_mock_set_max_delay(f->mock, 0);
    qemu_mock_set_close_func(f->mock, mock_closed, f);
    qemu_mock_set_history_func(f->mock, mock_played, f);

    xml = g_strdup_printf("<domain type='qemu'>\n"
                          "  <name>" DOM_NAME "</name>\n"
                          "  <uuid>" DOM_UUID "</uuid>\n"
                          "  <memory unit='MiB'>128</memory>\n"
                          "  <memoryBacking><source type='memfd'/><access mode='shared'/>"
                          "</memoryBacking>\n"
                          "  <os><type arch='x86_64' machine='pc'>hvm</type></os>\n"
                          "  <devices><emulator>%s</emulator></devices>\n"
                          "</domain>\n",
                          f->emu);
    f->dom = qemu_driver_define(f->drv, xml);
    if (!f->dom)
        g_error("define: %s", ho_error_last_message());
    qemu_domain_obj_ref(f->dom);
    f->start_done = false;
    qemu_driver_domain_start(f->drv, f->dom, false, start_done, f);
    if (!test_iterate_until(f->ctx, &f->start_done, CASE_TIMEOUT_MS) || f->start_err)
        g_error("the domain did not start: %s (mock: %s)",
                f->start_err ? f->start_err->message : "timeout",
                qemu_mock_failure(f->mock) ? qemu_mock_failure(f->mock) : "ok");
    g_assert_cmpint(qemu_domain_obj_state(f->dom), ==, QEMU_DOMAIN_STATE_RUNNING);
    f->old_pid = qemu_domain_obj_pid(f->dom);
}

static void
fx_teardown(Fx *f)
{
    g_clear_pointer(&f->mig, qemu_migration_free);
    qemu_domain_obj_unref(f->dom);
    g_clear_pointer(&f->drv, qemu_driver_free);
    for (guint i = 0; i < f->n; i++) {
        siginfo_t si;

        if (qemu_process_pidfd_send_signal(f->pidfds[i], SIGKILL) < 0)
            ho_error_reset();
        while (waitid(P_PIDFD, (id_t)f->pidfds[i], &si, WEXITED) < 0 && errno == EINTR)
            ;
        close(f->pidfds[i]);
    }
    if (f->chan_fd >= 0)
        close(f->chan_fd);
    g_clear_pointer(&f->mock, qemu_mock_free);
    g_clear_pointer(&f->probe_mock, qemu_mock_free);
    ho_error_free(f->err);
    ho_error_free(f->start_err);
    g_string_free(f->phases, TRUE);
    g_free(f->dir);
    g_free(f->emu);
    g_main_context_unref(f->ctx);
}

/* No cont to the old QEMU once QEMU resumed the guest there itself after
 * migrate; at most one resume of the old QEMU after migrate. */
static void
check_one_resume(Fx *f)
{
    const GPtrArray *h = qemu_mock_history(f->mock);
    bool migrated = false, resumed = false;
    guint resumes = 0;

    for (guint i = 0; i < h->len; i++) {
        const char *line = g_ptr_array_index(h, i);

        if (g_str_equal(line, "src send migrate"))
            migrated = true;
        if (!migrated)
            continue;
        if (g_str_equal(line, "src recv RESUME")) {
            resumed = true;
            resumes++;
        }
        if (g_str_equal(line, "src send cont") && resumed)
            g_error("cont sent to the old QEMU after its own RESUME (history line %u)", i);
    }
    g_assert_cmpuint(resumes, <=, 1);
}

static void
test_case(gconstpointer data)
{
    const Case *c = data;
    QemuMigrationArgs args = {0};
    Fx f;

    fx_setup(&f, c);
    args.mode = g_strdup("cpr-transfer");
    g_assert_cmpint(qemu_migration_src_cpr_transfer(f.mig, f.dom, &args, done_cb, &f), ==, 0);
    qemu_migration_args_clear(&args);
    if (!test_iterate_until(f.ctx, &f.done, CASE_TIMEOUT_MS))
        g_error("the job did not end (mock: %s)",
                qemu_mock_failure(f.mock) ? qemu_mock_failure(f.mock) : "ok");
    if (qemu_mock_run(f.mock, CASE_TIMEOUT_MS) < 0)
        g_error("%s", ho_error_last_message());
    /* Phase events are emitted from idles: deliver those still queued. */
    for (guint i = 0; i < 1000 && g_main_context_iteration(f.ctx, FALSE); i++)
        ;
    g_test_message("phases: %s; error: %s", f.phases->str, f.err ? f.err->message : "none");
    g_assert_cmpstr(f.phases->str, ==, c->phases);
    if (c->completed) {
        g_assert_null(f.err);
    } else {
        g_assert_nonnull(f.err);
        g_assert_nonnull(strstr(f.err->message, c->error));
    }
    g_assert_false(qemu_migration_any_has_job(f.mig, f.dom));
    g_assert_null(qemu_domain_obj_get_job(f.dom));
    if (c->on_new)
        g_assert_cmpint(qemu_domain_obj_pid(f.dom), !=, f.old_pid);
    else
        g_assert_cmpint(qemu_domain_obj_pid(f.dom), ==, f.old_pid);
    g_assert_cmpint(qemu_domain_obj_state(f.dom), ==, c->state);
    check_one_resume(&f);
    g_assert_true(qemu_mock_done(f.mock));
    fx_teardown(&f);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *path = g_strdup_printf("/cpr/scenario/%s", cases[i].name);

        g_test_add_data_func(path, &cases[i], test_case);
    }
    return g_test_run();
}
