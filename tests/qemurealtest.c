/*
 * Real QEMU, both versions this project supports (Debian 12's 7.2 and the
 * private 10.0): start, connect, probe, check what each version really can
 * do, start a guest with a virtio-net device, quit. KVM where /dev/kvm
 * works, else TCG; the test says which. No QEMU outlives the test: each
 * is started with PR_SET_PDEATHSIG and killed by its pid at the end.
 */
#include <glib.h>
#include <sys/wait.h>

#include "ho_error.h"
#include "ho_json.h"
#include "ho_log.h"
#include "qemu_capabilities.h"
#include "qemu_monitor.h"
#include "qemu_monitor_json.h"
#include "testqemu.h"
#include "testutils.h"

#define WAIT_MS 30000

typedef struct {
    bool done;
    QemuCaps *caps;
    HoError *err;
} ProbeResult;

static void
probe_done(QemuMonitor *mon, QemuCaps *caps, const HoError *err, void *opaque)
{
    ProbeResult *res = opaque;

    res->caps = caps;
    res->err = ho_error_copy(err);
    res->done = true;
}

static void
closed_cb(QemuMonitor *mon, const HoError *err, void *opaque)
{
    bool *closed = opaque;

    *closed = true;
}


static QemuMonitor *
connect_monitor(TestQemu *q, const char *label, bool *closed)
{
    QemuMonitorCallbacks cbs = {.closed = closed_cb};
    QemuMonitor *mon = qemu_monitor_open_unix(q->qmp_path, label, NULL, &cbs, closed);

    g_assert_nonnull(mon);
    if (qemu_monitor_wait_ready(mon, WAIT_MS) < 0) {
        g_autofree char *log = test_qemu_log(q);
        g_error("QMP handshake with %s failed: %s\nQEMU log:\n%s", label,
                ho_error_last_message(), log ? log : "");
    }
    return mon;
}

/* Quit through QMP and see the process exit with status 0. */
static void
quit_and_reap(QemuMonitor *mon, TestQemu *q)
{
    g_assert_cmpint(qemu_monitor_send_sync(mon, "quit", NULL, -1, NULL, WAIT_MS), ==, 0);
    g_assert_true(test_qemu_wait_exit(q, WAIT_MS));
    g_assert_true(WIFEXITED(q->status));
    g_assert_cmpint(WEXITSTATUS(q->status), ==, 0);
}

static void
test_probe(gconstpointer data)
{
    const char *name = data;
    const TestQemuBinary *bin = test_qemu_need(name);
    const char *accel = test_qemu_accel(NULL);
    const char *args[] = {"-machine", "none", NULL};
    g_autoptr(TestQemu) q = NULL;
    g_autoptr(QemuMonitor) mon = NULL;
    ProbeResult res = {0};
    bool closed = false;
    unsigned int version;

    if (!bin)
        return;
    g_test_message("%s: %s with %s", name, bin->binary, accel);
    q = test_qemu_start(bin, accel, args);
    g_assert_nonnull(q);
    mon = connect_monitor(q, name, &closed);

    qemu_caps_probe(mon, probe_done, &res);
    g_assert_true(test_iterate_until(NULL, &res.done, WAIT_MS));
    if (res.err)
        g_error("probe of %s failed: %s", name, res.err->message);
    g_assert_nonnull(res.caps);

    version = qemu_caps_version(res.caps);
    g_test_message("%s reports version %u (%s)", name, version, qemu_caps_package(res.caps));

    /* What both versions have, and what only 10.0 has. */
    g_assert_true(qemu_caps_has(res.caps, QEMU_CAPS_PAUSE_BEFORE_SWITCHOVER));
    g_assert_true(qemu_caps_has(res.caps, QEMU_CAPS_EVENTS_CAP));
    g_assert_true(qemu_caps_has(res.caps, QEMU_CAPS_POSTCOPY_RAM));
    g_assert_true(qemu_caps_has(res.caps, QEMU_CAPS_LATE_BLOCK_ACTIVATE));
    g_assert_true(qemu_caps_has(res.caps, QEMU_CAPS_BLOCKDEV_MIRROR));
    g_assert_true(qemu_caps_has(res.caps, QEMU_CAPS_BLOCK_EXPORT_ADD));
    g_assert_true(qemu_caps_has(res.caps, QEMU_CAPS_MIGRATE_RECOVER));
    g_assert_true(qemu_caps_has(res.caps, QEMU_CAPS_MIGRATE_CONTINUE));
    g_assert_true(qemu_caps_has_event(res.caps, "MIGRATION"));
    g_assert_true(g_strv_contains(qemu_caps_migration_statuses(res.caps), "pre-switchover"));
    if (g_str_equal(name, "qemu-10.0")) {
        g_assert_cmpuint(version / 1000000, ==, 10);
        g_assert_true(qemu_caps_has(res.caps, QEMU_CAPS_POSTCOPY_RECOVER_SETUP));
        g_assert_true(qemu_caps_has(res.caps, QEMU_CAPS_CPR_TRANSFER));
        g_assert_true(qemu_caps_has(res.caps, QEMU_CAPS_MIGRATE_CHANNELS));
        g_assert_false(qemu_caps_has(res.caps, QEMU_CAPS_BLOCK_MIGRATION));
    } else {
        g_assert_cmpuint(version / 1000, ==, 7002);
        g_assert_false(qemu_caps_has(res.caps, QEMU_CAPS_POSTCOPY_RECOVER_SETUP));
        g_assert_false(qemu_caps_has(res.caps, QEMU_CAPS_CPR_TRANSFER));
        g_assert_false(qemu_caps_has(res.caps, QEMU_CAPS_MIGRATE_CHANNELS));
        g_assert_true(qemu_caps_has(res.caps, QEMU_CAPS_BLOCK_MIGRATION));
        g_assert_null(qemu_caps_mig_modes(res.caps) ? *qemu_caps_mig_modes(res.caps) : NULL);
    }

    quit_and_reap(mon, q);
    g_assert_true(test_iterate_until(NULL, &closed, WAIT_MS));
    qemu_caps_free(res.caps);
}

static json_object *
qom_args(const char *path, const char *property)
{
    json_object *args = json_object_new_object();

    json_object_object_add(args, "path", json_object_new_string(path));
    json_object_object_add(args, "property", json_object_new_string(property));
    return args;
}

/* A guest with a virtio-net device starts (its option ROM comes from
 * Debian's ipxe-qemu; QEMU refuses to start when the ROM is missing),
 * paused with -S, then runs on cont. */
static void
test_virtio_net(gconstpointer data)
{
    const char *name = data;
    const TestQemuBinary *bin = test_qemu_need(name);
    const char *args[] = {"-machine", "pc", "-m", "128", "-S",
                          "-netdev", "user,id=n0",
                          "-device", "virtio-net-pci,netdev=n0,id=net0", NULL};
    g_autoptr(TestQemu) q = NULL;
    g_autoptr(QemuMonitor) mon = NULL;
    g_autoptr(json_object) ret = NULL;
    json_object *status;
    bool closed = false;

    if (!bin)
        return;
    q = test_qemu_start(bin, test_qemu_accel(NULL), args);
    g_assert_nonnull(q);
    mon = connect_monitor(q, name, &closed);

    g_assert_cmpint(qemu_monitor_send_sync(mon, "query-status", NULL, -1, &ret, WAIT_MS), ==, 0);
    g_assert_true(json_object_object_get_ex(ret, "status", &status));
    g_assert_cmpstr(json_object_get_string(status), ==, "prelaunch");
    g_clear_pointer(&ret, json_object_put);

    /* The device has its option ROM. */
    g_assert_cmpint(qemu_monitor_send_sync(mon, "qom-get",
                                           qom_args("/machine/peripheral/net0", "romfile"), -1,
                                           &ret, WAIT_MS), ==, 0);
    g_assert_cmpstr(json_object_get_string(ret), ==, "efi-virtio.rom");
    g_clear_pointer(&ret, json_object_put);

    /* A QMP error comes back as one, with QEMU's class. */
    g_assert_cmpint(qemu_monitor_send_sync(mon, "qom-get",
                                           qom_args("/machine/peripheral/nonexistent", "type"),
                                           -1, NULL, WAIT_MS), <, 0);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_QMP);
    g_assert_cmpstr(ho_error_last()->qmp_class, ==, "DeviceNotFound");

    g_assert_cmpint(qemu_monitor_send_sync(mon, "cont", NULL, -1, NULL, WAIT_MS), ==, 0);
    g_assert_cmpint(qemu_monitor_send_sync(mon, "query-status", NULL, -1, &ret, WAIT_MS), ==, 0);
    g_assert_true(json_object_object_get_ex(ret, "status", &status));
    g_assert_cmpstr(json_object_get_string(status), ==, "running");

    quit_and_reap(mon, q);
}

int
main(int argc, char **argv)
{
    const TestQemuBinary *const *b;
    const char *why = NULL;

    g_test_init(&argc, &argv, NULL);
    ho_log_init();
    g_test_message("accelerator: %s%s%s", test_qemu_accel(&why), why ? " (" : "",
                   why ? why : "");
    if (why)
        g_test_message("KVM not used: %s", why);

    for (b = test_qemu_binaries(); *b; b++) {
        g_autofree char *probe = g_strdup_printf("/real/%s/probe", (*b)->name);
        g_autofree char *net = g_strdup_printf("/real/%s/virtio-net", (*b)->name);

        g_test_message("%s: %s", (*b)->name, (*b)->binary ? (*b)->binary : (*b)->missing);
        g_test_add_data_func(probe, (*b)->name, test_probe);
        g_test_add_data_func(net, (*b)->name, test_virtio_net);
    }
    return g_test_run();
}
