/*
 * CPR transfer on real QEMU (issue 6): a domain's QEMU 10.0 replaced by a
 * new one on this host (qemu_migration_src_cpr_transfer), through the
 * real driver and orchestrator. Cases: success (the domain now points at
 * the new QEMU, which runs the guest; the old one is gone), a failure
 * injected after `migrate` started (the new QEMU killed), and cancel;
 * after both the guest runs again in the old QEMU, resumed exactly as
 * often as it was stopped (QEMU resumes it itself; the orchestrator never
 * adds a second resume). On QEMU 7.2 the call fails at once, nothing
 * touched.
 */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ho_error.h"
#include "ho_json.h"
#include "ho_log.h"
#include "qemu_driver.h"
#include "qemu_migration.h"
#include "qemu_monitor.h"
#include "testqemu.h"
#include "testutils.h"

#define WAIT_MS (180 * 1000)

typedef enum {
    ACT_NONE,
    ACT_KILL_NEW,
    ACT_ABORT,
    ACT_KILL_NEW_AT_STOP,
    ACT_KILL_NEW_AT_SWITCHOVER,
} Act;

typedef struct {
    GMainContext *ctx;
    char *dir;
    QemuDriver *drv;
    QemuMigration *mig;
    QemuDomainObj *dom;
    bool started;
    HoError *start_err;
    unsigned int suspended; /* driver events after the CPR call */
    unsigned int resumed;
    bool counting;
    Act act;
    bool acted;
    int old_pid;
    bool done;
    HoError *err;
    GString *phases;
} Fx;

static int find_new_qemu(int skip);

/* SIGKILL pid and wait (bounded) until it has exited, without reaping it
 * (the driver's child watch does): whatever the orchestrator handles next
 * happens after the death, as when a QEMU dies on its own at this point.
 * Events the QEMU sent before it died may still be unread. */
static void
kill_and_wait(int pid)
{
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    struct pollfd pfd;

    g_assert_cmpint(pidfd, >=, 0);
    g_assert_cmpint(kill(pid, SIGKILL), ==, 0);
    pfd.fd = pidfd;
    pfd.events = POLLIN;
    pfd.revents = 0;
    g_assert_cmpint(poll(&pfd, 1, WAIT_MS), ==, 1);
    close(pidfd);
}

static void
driver_event(QemuDriver *drv, QemuDomainObj *dom, const char *event, const char *detail,
             void *opaque)
{
    Fx *f = opaque;

    if (!f->counting)
        return;
    if (g_str_equal(event, "suspended")) {
        f->suspended++;
        /* QEMU stopped the guest for the transfer: the new QEMU dies now. */
        if (f->act == ACT_KILL_NEW_AT_STOP && !f->acted) {
            int pid = find_new_qemu(f->old_pid);

            f->acted = true;
            g_assert_cmpint(pid, >, 0);
            g_test_message("killing the new QEMU pid %d at STOP", pid);
            kill_and_wait(pid);
        }
    }
    else if (g_str_equal(event, "resumed"))
        f->resumed++;
}

/* Our children that are QEMUs, other than skip. */
static int
find_new_qemu(int skip)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    int found = 0;

    g_assert_nonnull(d);
    while ((de = readdir(d))) {
        int pid = atoi(de->d_name);
        g_autofree char *path = NULL;
        g_autofree char *text = NULL;
        const char *rest;
        int ppid = 0;

        if (pid <= 0 || pid == skip)
            continue;
        path = g_strdup_printf("/proc/%d/stat", pid);
        if (!g_file_get_contents(path, &text, NULL, NULL))
            continue;
        rest = strrchr(text, ')');
        if (!rest || sscanf(rest + 1, " %*c %d", &ppid) != 1 || ppid != getpid())
            continue;
        if (strstr(text, "qemu"))
            found = pid;
    }
    closedir(d);
    return found;
}

static void
mig_event(QemuMigration *mig, const char *name, const char *uuid, const char *event,
          json_object *data, void *opaque)
{
    Fx *f = opaque;
    const char *phase = NULL;

    if (!g_str_equal(event, "phase") || ho_json_opt_string(data, "phase", &phase) <= 0)
        return;
    g_string_append_printf(f->phases, "%s ", phase);
    if (f->acted || !g_str_equal(phase, "perform") || f->act == ACT_KILL_NEW_AT_STOP ||
        f->act == ACT_KILL_NEW_AT_SWITCHOVER)
        return;
    f->acted = true;
    if (f->act == ACT_KILL_NEW) {
        int pid = find_new_qemu(f->old_pid);

        g_assert_cmpint(pid, >, 0);
        g_test_message("killing the new QEMU pid %d", pid);
        kill_and_wait(pid);
    } else if (f->act == ACT_ABORT) {
        g_assert_cmpint(qemu_migration_any_abort(f->mig, f->dom), ==, 0);
    }
}

/* MIGRATION on the old QEMU, seen before the orchestrator sees it (an
 * earlier subscription): at completed the new QEMU dies, before the guest
 * is switched to it. */
static void
old_migration_event(QemuMonitor *mon, const char *name, json_object *data, gint64 qemu_ts_us,
                    gint64 recv_ts_us, void *opaque)
{
    Fx *f = opaque;
    const char *status = NULL;
    int pid;

    if (f->acted || f->act != ACT_KILL_NEW_AT_SWITCHOVER ||
        ho_json_opt_string(data, "status", &status) <= 0 || !g_str_equal(status, "completed"))
        return;
    f->acted = true;
    pid = find_new_qemu(f->old_pid);
    g_assert_cmpint(pid, >, 0);
    g_test_message("killing the new QEMU pid %d at the old QEMU's completed", pid);
    kill_and_wait(pid);
}

static void
done_cb(QemuMigration *mig, const char *uuid, const HoError *err, json_object *stats,
        void *opaque)
{
    Fx *f = opaque;

    f->done = true;
    if (err)
        f->err = ho_error_copy(err);
}

static void
start_done(QemuDriver *drv, QemuDomainObj *dom, const HoError *err, void *opaque)
{
    Fx *f = opaque;

    f->started = true;
    if (err)
        f->start_err = ho_error_copy(err);
}

/* Set by a test that wants the guest's RAM in QEMU's default backend. */
static bool plain_memory;

static char *
domain_xml(const char *emulator)
{
    return g_strdup_printf("<domain type='qemu'>\n"
                           "  <name>cpr</name>\n"
                           "  <uuid>3a2b3c4d-5e6f-4a0b-9c1d-2e3f4a5b6c7d</uuid>\n"
                           "  <memory unit='MiB'>64</memory>\n"
                           "%s"
                           "  <os><type arch='x86_64' machine='pc'>hvm</type></os>\n"
                           "  <devices><emulator>%s</emulator></devices>\n"
                           "</domain>\n",
                           plain_memory ? ""
                                        : "  <memoryBacking>\n"
                                          "    <source type='memfd'/>\n"
                                          "    <access mode='shared'/>\n"
                                          "  </memoryBacking>\n",
                           emulator);
}

/* A running domain on bin; false (test skipped) when bin is missing. */
static bool
fx_setup(Fx *f, const char *qemu)
{
    const TestQemuBinary *bin = test_qemu_need(qemu);
    QemuDriverConfig cfg = {0};
    QemuMigrationConfig mcfg = {0};
    g_autofree char *state = NULL, *run = NULL, *log = NULL;
    g_autofree char *xml = NULL;

    memset(f, 0, sizeof(*f));
    if (!bin)
        return false;
    f->phases = g_string_new(NULL);
    f->ctx = g_main_context_new();
    g_main_context_push_thread_default(f->ctx);
    f->dir = test_make_tmpdir("cpr");
    state = g_build_filename(f->dir, "s", NULL);
    run = g_build_filename(f->dir, "r", NULL);
    log = g_build_filename(f->dir, "l", NULL);
    cfg.state_dir = state;
    cfg.runtime_dir = run;
    cfg.log_dir = log;
    cfg.default_emulator = bin->binary;
    /* Every QEMU the driver starts (probe, domain, the CPR transfer's new
     * one) is killed if the test dies. */
    cfg.spawn_hook = test_qemu_spawn_learned;
    f->drv = qemu_driver_open(&cfg, f->ctx, driver_event, f);
    g_assert_nonnull(f->drv);
    mcfg.host_uuid = "00000000-0000-4000-8000-000000000001";
    mcfg.hostname = "localhost";
    f->mig = qemu_migration_new(f->drv, &mcfg, mig_event, f);
    xml = domain_xml(bin->binary);
    f->dom = qemu_driver_define(f->drv, xml);
    g_assert_nonnull(f->dom);
    qemu_domain_obj_ref(f->dom);
    qemu_driver_domain_start(f->drv, f->dom, false, start_done, f);
    g_assert_true(test_iterate_until(f->ctx, &f->started, WAIT_MS));
    if (f->start_err)
        g_error("cannot start the domain: %s", f->start_err->message);
    g_assert_cmpint(qemu_domain_obj_state(f->dom), ==, QEMU_DOMAIN_STATE_RUNNING);
    f->old_pid = qemu_domain_obj_pid(f->dom);
    return true;
}

static bool destroyed;

static void
destroy_done(QemuDriver *drv, QemuDomainObj *dom, const HoError *err, void *opaque)
{
    destroyed = true;
}

static void
fx_teardown(Fx *f)
{
    if (f->dom && qemu_domain_obj_is_active(f->dom)) {
        destroyed = false;
        qemu_driver_domain_destroy(f->drv, f->dom, destroy_done, f);
        g_assert_true(test_iterate_until(f->ctx, &destroyed, WAIT_MS));
    }
    qemu_migration_free(f->mig);
    qemu_domain_obj_unref(f->dom);
    qemu_driver_free(f->drv);
    /* Gone by now (destroyed, or ended by the job); pids may be reused. */
    test_qemu_cleanup_kill();
    g_main_context_pop_thread_default(f->ctx);
    g_main_context_unref(f->ctx);
    ho_error_free(f->err);
    ho_error_free(f->start_err);
    g_string_free(f->phases, TRUE);
    g_free(f->dir);
}

/* query-status on the domain's current monitor: whether it runs. */
static bool
dom_running(Fx *f)
{
    g_autoptr(json_object) ret = NULL;
    bool running = false;

    g_assert_cmpint(qemu_monitor_send_sync(qemu_domain_obj_monitor(f->dom), "query-status", NULL,
                                           -1, &ret, WAIT_MS),
                    ==, 0);
    g_assert_cmpint(ho_json_opt_bool(ret, "running", &running), ==, 1);
    return running;
}

static void
run_cpr(Fx *f, Act act)
{
    QemuMigrationArgs args = {0};
    QemuMonitor *old_mon = qemu_monitor_ref(qemu_domain_obj_monitor(f->dom));
    guint sub;

    args.mode = g_strdup("cpr-transfer");
    /* HANDOVER_TEST_RECORD_DIR: the job's QMP exchanges (both QEMUs) go
     * to DIR/cpr-<act>.jsonl, the source of tests/qemumigrationdata/cpr-*. */
    if (g_getenv("HANDOVER_TEST_RECORD_DIR")) {
        static const char *const names[] = {"success", "kill-new", "abort", "kill-new-at-stop",
                                             "kill-new-at-switchover"};
        g_autofree char *file = g_strdup_printf("cpr-%s.jsonl", names[act]);

        args.record_path = g_build_filename(g_getenv("HANDOVER_TEST_RECORD_DIR"), file, NULL);
    }
    f->act = act;
    f->counting = true;
    sub = qemu_monitor_subscribe(qemu_domain_obj_monitor(f->dom), "MIGRATION",
                                 old_migration_event, f);
    g_assert_cmpint(qemu_migration_src_cpr_transfer(f->mig, f->dom, &args, done_cb, f), ==, 0);
    qemu_migration_args_clear(&args);
    g_assert_true(test_iterate_until(f->ctx, &f->done, WAIT_MS));
    if (!qemu_monitor_is_closed(old_mon))
        qemu_monitor_unsubscribe(old_mon, sub);
    qemu_monitor_unref(old_mon);
    g_test_message("phases: %s; suspended %u, resumed %u", f->phases->str, f->suspended,
                   f->resumed);
    if (f->err && g_getenv("HANDOVER_TEST_SHOW_LOG")) {
        g_autofree char *path = g_build_filename(f->dir, "l", "cpr.log", NULL);
        g_autofree char *text = NULL;

        if (g_file_get_contents(path, &text, NULL, NULL))
            g_test_message("domain log:\n%s", text);
    }
}

static void
test_success(void)
{
    Fx f;
    g_autofree char *status = NULL;
    g_autofree char *text = NULL;
    g_autoptr(json_object) st = NULL;
    int64_t pid = 0;

    if (!fx_setup(&f, "qemu-10.0"))
        return;
    run_cpr(&f, ACT_NONE);
    if (f.err)
        g_error("CPR transfer failed: %s", f.err->message);
    g_assert_cmpstr(f.phases->str, ==, "begin prepare perform switchover finish confirm ");
    g_assert_cmpint(qemu_domain_obj_pid(f.dom), >, 0);
    g_assert_cmpint(qemu_domain_obj_pid(f.dom), !=, f.old_pid);
    /* The old QEMU is gone (reaped by the driver: its pid is free). */
    g_assert_cmpint(kill(f.old_pid, 0), ==, -1);
    g_assert_cmpint(qemu_domain_obj_state(f.dom), ==, QEMU_DOMAIN_STATE_RUNNING);
    g_assert_true(dom_running(&f));
    g_assert_false(qemu_migration_any_has_job(f.mig, f.dom));
    /* The status file names the new QEMU. */
    status = g_build_filename(f.dir, "r", "domains", "cpr.json", NULL);
    g_assert_true(g_file_get_contents(status, &text, NULL, NULL));
    st = json_tokener_parse(text);
    g_assert_nonnull(st);
    g_assert_cmpint(ho_json_opt_int64(st, "pid", &pid), ==, 1);
    g_assert_cmpint(pid, ==, qemu_domain_obj_pid(f.dom));
    fx_teardown(&f);
}

/* After a failure or cancel: the old QEMU runs the guest, resumed once
 * for each stop. */
static void
check_back_in_old(Fx *f)
{
    g_assert_nonnull(f->err);
    g_assert_cmpint(qemu_domain_obj_pid(f->dom), ==, f->old_pid);
    g_assert_true(dom_running(f));
    g_assert_cmpint(qemu_domain_obj_state(f->dom), ==, QEMU_DOMAIN_STATE_RUNNING);
    g_assert_cmpuint(f->suspended, <=, 1);
    g_assert_cmpuint(f->resumed, ==, f->suspended);
    g_assert_false(qemu_migration_any_has_job(f->mig, f->dom));
    g_assert_cmpint(find_new_qemu(f->old_pid), ==, 0);
}

static void
test_kill_new(void)
{
    Fx f;

    if (!fx_setup(&f, "qemu-10.0"))
        return;
    run_cpr(&f, ACT_KILL_NEW);
    g_test_message("error: %s", f.err ? f.err->message : "none");
    g_assert_true(f.acted);
    check_back_in_old(&f);
    fx_teardown(&f);
}

/* The new QEMU killed once the transfer is under way, the guest never
 * having run there: it runs again in the old QEMU, stopped once and
 * resumed once. At the old QEMU's STOP the transfer fails in QEMU (which
 * resumes the guest itself) or, if the old QEMU completed first, we
 * resume it; at the old QEMU's completed, we do (QEMU does not resume
 * after a completed migration), and FINISH is never reached. */
static void
run_kill_new_late(Act act)
{
    Fx f;

    if (!fx_setup(&f, "qemu-10.0"))
        return;
    run_cpr(&f, act);
    g_test_message("error: %s", f.err ? f.err->message : "none");
    g_assert_true(f.acted);
    check_back_in_old(&f);
    g_assert_cmpuint(f.suspended, ==, 1);
    if (act == ACT_KILL_NEW_AT_SWITCHOVER) {
        g_assert_nonnull(strstr(f.phases->str, "switchover"));
        g_assert_null(strstr(f.phases->str, "finish"));
    }
    fx_teardown(&f);
}

static void
test_kill_new_at_stop(void)
{
    run_kill_new_late(ACT_KILL_NEW_AT_STOP);
}

static void
test_kill_new_at_switchover(void)
{
    run_kill_new_late(ACT_KILL_NEW_AT_SWITCHOVER);
}

static void
test_cancel(void)
{
    Fx f;

    if (!fx_setup(&f, "qemu-10.0"))
        return;
    run_cpr(&f, ACT_ABORT);
    g_test_message("error: %s", f.err ? f.err->message : "none");
    g_assert_true(f.acted);
    check_back_in_old(&f);
    g_assert_nonnull(strstr(f.err->message, "cancelled"));
    fx_teardown(&f);
}

/* The CPR transfer of a domain on qemu (its RAM in a shared memfd
 * backend unless plain_memory) is refused at once with code and a message
 * holding msg, nothing touched: no job, no record, the same QEMU running,
 * no new QEMU, no callback. */
static void
run_refused(const char *qemu, bool plain, HoErrorCode code, const char *msg)
{
    Fx f;
    QemuMigrationArgs args = {0};
    bool ready;

    plain_memory = plain;
    ready = fx_setup(&f, qemu);
    plain_memory = false;
    if (!ready)
        return;
    args.mode = g_strdup("cpr-transfer");
    g_assert_cmpint(qemu_migration_src_cpr_transfer(f.mig, f.dom, &args, done_cb, &f), ==, -1);
    g_assert_cmpint(ho_error_last()->code, ==, code);
    g_assert_nonnull(strstr(ho_error_last_message(), msg));
    ho_error_reset();
    qemu_migration_args_clear(&args);
    g_assert_false(qemu_migration_any_has_job(f.mig, f.dom));
    g_assert_null(qemu_domain_obj_get_job(f.dom));
    g_assert_cmpint(qemu_domain_obj_pid(f.dom), ==, f.old_pid);
    g_assert_true(dom_running(&f));
    g_assert_false(f.done);
    g_assert_cmpint(find_new_qemu(f.old_pid), ==, 0);
    fx_teardown(&f);
}

static void
test_refused_72(void)
{
    run_refused("qemu-7.2", false, HO_ERR_NO_SUPPORT, "cannot do a CPR transfer");
}

/* RAM not in a shared memfd backend. */
static void
test_refused_no_memfd(void)
{
    run_refused("qemu-10.0", true, HO_ERR_OPERATION_INVALID,
                "domain 'cpr' needs its memory in a shared memfd backend");
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    ho_log_init(); /* HANDOVER_LOG_LEVEL=debug shows the driver's steps */
    test_qemu_cleanup_install();
    g_test_add_func("/cpr/real/10.0/success", test_success);
    g_test_add_func("/cpr/real/10.0/kill-new-in-perform", test_kill_new);
    g_test_add_func("/cpr/real/10.0/kill-new-at-stop", test_kill_new_at_stop);
    g_test_add_func("/cpr/real/10.0/kill-new-at-switchover", test_kill_new_at_switchover);
    g_test_add_func("/cpr/real/10.0/cancel-in-perform", test_cancel);
    g_test_add_func("/cpr/real/10.0/refused-no-memfd", test_refused_no_memfd);
    g_test_add_func("/cpr/real/7.2/refused", test_refused_72);
    return g_test_run();
}
