/*
 * Domain definition -> QEMU command line.
 *
 * tests/qemucommanddata/XML.xml built with each case's options ->
 * CASE.args, one argument per line. HANDOVER_TEST_REGENERATE=1 rewrites
 * the expected files for review.
 */
#include <string.h>

#include "ho_error.h"
#include "qemu_command.h"
#include "qemu_domain.h"
#include "testutils.h"

static const char *const firmware_dirs[] = {"/opt/qemu/10.0/share/qemu",
                                            "/opt/qemu/10.0/share/seabios", NULL};

typedef struct {
    const char *name; /* CASE.args */
    const char *xml;  /* XML.xml; NULL: same as name */
    QemuCommandOptions opts;
} CommandCase;

static const CommandCase cases[] = {
    {.name = "tcg-paused",
     .opts = {.qmp_socket_path = "/run/handover/guest1/qmp.sock",
              .start_paused = true,
              .accel = "tcg"}},
    /* The accelerator follows <domain type='kvm'>. */
    {.name = "kvm-host", .opts = {.qmp_socket_path = "/run/handover/kvm-host/qmp.sock"}},
    /* host-passthrough has no "host" CPU under TCG. */
    {.name = "kvm-host-as-tcg", .xml = "kvm-host", .opts = {.accel = "tcg"}},
    {.name = "incoming-memfd",
     .opts = {.qmp_socket_path = "/run/handover/cpr/qmp.sock",
              .start_paused = true,
              .incoming = "defer",
              .machine_override = "pc-i440fx-10.0"}},
    /* The new QEMU of a CPR transfer: aux-ram-share and the CPR channel. */
    {.name = "cpr-transfer-new",
     .xml = "incoming-memfd",
     .opts = {.start_paused = true,
              .incoming = "defer",
              .machine_override = "pc-i440fx-10.0",
              .aux_ram_share = true,
              .cpr_channel_path = "/run/handover/domains/cpr.cpr"}},
    {.name = "shared-ram", .opts = {.emulator = "/opt/qemu/bin/qemu-system-x86_64"}},
    {.name = "sata-scsi",
     .opts = {.qmp_socket_path = "/run/handover/buses/qmp.sock",
              .accel = "tcg",
              .firmware_dirs = firmware_dirs}},
    {.name = "kernel-boot", .opts = {.start_paused = true}},
    {.name = "host-passthrough-tcg", .opts = {0}},
    {.name = "commas",
     .opts = {.qmp_socket_path = "/run/a,b/qmp.sock", .machine_override = "pc-q35-7.2"}},
    {.name = "boot-order",
     .opts = {.emulator = "/usr/bin/qemu-system-x86_64", .accel = "kvm", .start_paused = true}},
};

static QemuDomainDef *
load_def(const char *name)
{
    g_autofree char *rel = g_strdup_printf("qemucommanddata/%s.xml", name);
    g_autofree char *path = test_data_path(rel);
    QemuDomainDef *def = qemu_domain_def_parse_file(path);

    if (!def)
        g_error("cannot parse '%s': %s", path, ho_error_last_message());
    return def;
}

static void
test_case(gconstpointer data)
{
    const CommandCase *tc = data;
    g_autoptr(QemuDomainDef) def = load_def(tc->xml ? tc->xml : tc->name);
    g_auto(GStrv) argv = qemu_command_build(def, &tc->opts);
    g_autofree char *rel = g_strdup_printf("qemucommanddata/%s.args", tc->name);
    g_autofree char *path = test_data_path(rel);
    g_autoptr(GString) text = g_string_new(NULL);

    if (!argv)
        g_error("cannot build '%s': %s", tc->name, ho_error_last_message());
    for (size_t i = 0; argv[i]; i++) {
        g_assert_null(strchr(argv[i], '\n'));
        g_string_append_printf(text, "%s\n", argv[i]);
    }
    g_assert_cmpint(test_compare_to_file(text->str, path), ==, 0);
}

static void
test_errors(void)
{
    g_autoptr(QemuDomainDef) def = load_def("boot-order");
    QemuCommandOptions opts = {0};
    g_auto(GStrv) argv = NULL;

    /* boot-order.xml has no <emulator>. */
    ho_error_reset();
    argv = qemu_command_build(def, &opts);
    g_assert_null(argv);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_INVALID_ARG);
    g_assert_cmpstr(ho_error_last_message(), ==, "domain 'boot-order' names no emulator");

    opts.emulator = "/usr/bin/qemu-system-x86_64";
    opts.accel = "hvf";
    argv = qemu_command_build(def, &opts);
    g_assert_null(argv);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_INVALID_ARG);
    g_assert_cmpstr(ho_error_last_message(), ==, "unsupported accelerator 'hvf'");

    opts.accel = NULL;
    argv = qemu_command_build(def, &opts);
    g_assert_nonnull(argv);
    g_assert_cmpstr(argv[0], ==, "/usr/bin/qemu-system-x86_64");
}

static void
test_escape_comma(void)
{
    static const char *const cases_in_out[][2] = {
        {"", ""},
        {"plain", "plain"},
        {",", ",,"},
        {"a,b,,c", "a,,b,,,,c"},
        {"/path/with,comma/", "/path/with,,comma/"},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases_in_out); i++) {
        g_autofree char *out = qemu_command_escape_comma(cases_in_out[i][0]);

        g_assert_cmpstr(out, ==, cases_in_out[i][1]);
    }
}

static void
test_blockdev_json(void)
{
    g_autoptr(QemuDomainDef) def = load_def("kvm-host");
    const QemuDomainDiskDef *disk = g_ptr_array_index(def->disks, 0);
    g_autofree char *file = NULL;
    g_autofree char *fmt = NULL;

    qemu_command_disk_blockdev_json(disk, &file, &fmt);
    g_assert_cmpstr(file, ==,
                    "{\"driver\":\"host_device\",\"filename\":\"/dev/vg0/kvm-host\","
                    "\"node-name\":\"drive-vda-file\",\"auto-read-only\":true,"
                    "\"discard\":\"unmap\",\"aio\":\"native\","
                    "\"cache\":{\"direct\":true,\"no-flush\":false}}");
    g_assert_cmpstr(fmt, ==,
                    "{\"node-name\":\"drive-vda-fmt\",\"driver\":\"raw\","
                    "\"file\":\"drive-vda-file\",\"read-only\":false,"
                    "\"cache\":{\"direct\":true,\"no-flush\":false}}");
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *path = g_strdup_printf("/command/args/%s", cases[i].name);

        g_test_add_data_func(path, &cases[i], test_case);
    }
    g_test_add_func("/command/errors", test_errors);
    g_test_add_func("/command/escape-comma", test_escape_comma);
    g_test_add_func("/command/blockdev-json", test_blockdev_json);
    return g_test_run();
}
