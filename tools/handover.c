/*
 * handover: the command-line client.
 *
 * Commands are a table; each parses its own options with GOptionContext so
 * `handover COMMAND --help` is generated from the same definitions that
 * are parsed, and cannot drift from them.
 */
#define HO_LOG_MODULE "tools.handover"

#include <glib.h>
#include <glib/gstdio.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "ho_error.h"
#include "ho_file.h"
#include "ho_i18n.h"
#include "ho_json.h"
#include "ho_log.h"
#include "qemu_capabilities.h"
#include "qemu_monitor.h"
#include "qemu_monitor_json.h"
#include "qemu_process.h"

/* A bound on every wait for QEMU in this tool. */
#define QEMU_WAIT_MS 30000

typedef struct {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} HandoverCommand;

static int cmd_version(int argc, char **argv);
static int cmd_capabilities(int argc, char **argv);

static const HandoverCommand commands[] = {
    {"version", N_("print the version of handover"), cmd_version},
    {"capabilities", N_("start the host's QEMU and print what it can do"), cmd_capabilities},
};

static void
print_error(void)
{
    g_printerr(_("error: %1$s\n"), ho_error_last_message());
}

/* Parse a command's options; on --help GLib prints and exits. */
static int
parse_options(const char *name, const char *params, GOptionEntry *entries, int *argc,
              char ***argv)
{
    g_autofree char *prgname = g_strdup_printf("handover %s", name);
    g_autoptr(GOptionContext) ctx = NULL;
    g_autoptr(GError) gerr = NULL;
    size_t i;

    /* The usage line reads "handover COMMAND [OPTION…] PARAMS". */
    g_set_prgname(prgname);
    ctx = g_option_context_new(params);
    for (i = 0; i < G_N_ELEMENTS(commands); i++) {
        if (g_str_equal(commands[i].name, name))
            g_option_context_set_summary(ctx, _(commands[i].summary));
    }
    g_option_context_add_main_entries(ctx, entries, HO_GETTEXT_PACKAGE);
    g_option_context_set_translation_domain(ctx, HO_GETTEXT_PACKAGE);
    if (!g_option_context_parse(ctx, argc, argv, &gerr)) {
        ho_error_report(HO_ERR_INVALID_ARG, _("%1$s: %2$s (see 'handover %1$s --help')"), name,
                        gerr->message);
        return -1;
    }
    return 0;
}

static char *
default_emulator(void)
{
    return g_find_program_in_path("qemu-system-x86_64");
}

/* ---- probing a fresh QEMU ---- */

typedef struct {
    GPid pid;
    bool exited;
    int status;
    bool probed;
    QemuCaps *caps;
    HoError *err;
} ProbeState;

static void
probe_child_exited(GPid pid, gint status, gpointer opaque)
{
    ProbeState *st = opaque;

    st->exited = true;
    st->status = status;
    g_spawn_close_pid(pid);
}

static void
probe_done(QemuMonitor *mon, QemuCaps *caps, const HoError *err, void *opaque)
{
    ProbeState *st = opaque;

    st->caps = caps;
    st->err = ho_error_copy(err);
    st->probed = true;
}

static gboolean
flag_timeout(gpointer opaque)
{
    *(bool *)opaque = true;
    return G_SOURCE_REMOVE;
}

/* Iterate the default context until *flag or a bound passes. */
static bool
iterate_until(const bool *flag, guint timeout_ms)
{
    bool timed_out = false;
    guint id = g_timeout_add(timeout_ms, flag_timeout, &timed_out);

    while (!*flag && !timed_out)
        g_main_context_iteration(NULL, TRUE);
    if (!timed_out)
        g_source_remove(id);
    return *flag;
}

/* Start the emulator with no machine, probe it, quit it. Returns the caps
 * or NULL with an error reported; the QEMU never outlives this call. */
static QemuCaps *
probe_emulator(const char *emulator, const char **accel_out)
{
    g_autofree char *dir = NULL;
    g_autofree char *qmp = NULL;
    g_autofree char *log = NULL;
    g_auto(GStrv) fw = qemu_process_firmware_dirs(emulator);
    g_autoptr(GError) gerr = NULL;
    g_autoptr(QemuMonitor) mon = NULL;
    const char *args[] = {"-machine", "none", NULL};
    QemuProcessSpawn spawn = {0};
    ProbeState st = {0};
    QemuCaps *caps = NULL;

    dir = g_dir_make_tmp("handover-probe-XXXXXX", &gerr);
    if (!dir) {
        ho_error_report_gerror(HO_ERR_SYSTEM, gerr);
        return NULL;
    }
    qmp = g_build_filename(dir, "qmp.sock", NULL);
    log = g_build_filename(dir, "qemu.log", NULL);
    spawn.emulator = emulator;
    spawn.fw_dirs = (const char *const *)fw;
    spawn.accel = qemu_process_host_accel(NULL);
    spawn.qmp_path = qmp;
    spawn.log_path = log;
    spawn.workdir = dir;
    spawn.extra_args = args;
    spawn.die_with_parent = true;
    *accel_out = spawn.accel;
    if (qemu_process_spawn(&spawn, &st.pid) < 0)
        goto out;
    g_child_watch_add(st.pid, probe_child_exited, &st);

    mon = qemu_monitor_open_unix(qmp, "probe", NULL, NULL, NULL);
    if (!mon || qemu_monitor_wait_ready(mon, QEMU_WAIT_MS) < 0)
        goto out;
    qemu_caps_probe(mon, probe_done, &st);
    if (!iterate_until(&st.probed, QEMU_WAIT_MS)) {
        ho_error_report(HO_ERR_TIMEOUT, _("QEMU '%1$s' did not answer the probe within %2$d s"),
                        emulator, QEMU_WAIT_MS / 1000);
        goto out;
    }
    if (st.err) {
        ho_error_set(g_steal_pointer(&st.err));
        goto out;
    }
    caps = g_steal_pointer(&st.caps);
    if (qemu_monitor_send_sync(mon, "quit", NULL, -1, NULL, QEMU_WAIT_MS) < 0)
        HO_WARN("quit failed: %s", ho_error_last_message());

out:
    if (st.pid > 0) {
        /* Save the first error: cleanup must not replace it. */
        HoError *saved = ho_error_save();

        if (!iterate_until(&st.exited, QEMU_WAIT_MS / 3)) {
            (void)kill(st.pid, SIGKILL);
            (void)iterate_until(&st.exited, QEMU_WAIT_MS);
        }
        ho_error_restore(&saved);
    }
    if (!caps) {
        g_autofree char *text = NULL;
        size_t len;

        if (ho_file_read_all(log, 64 * 1024, &text, &len) == 0 && len > 0)
            g_printerr("%s", text);
    }
    (void)ho_file_remove_tree(dir);
    ho_error_free(st.err);
    qemu_caps_free(st.caps);
    return caps;
}

static int
cmd_version(int argc, char **argv)
{
    GOptionEntry entries[] = {{NULL}};

    if (parse_options("version", "", entries, &argc, &argv) < 0)
        return -1;
    printf(_("handover %1$s\n"), PACKAGE_VERSION_STRING);
    return 0;
}

static int
cmd_capabilities(int argc, char **argv)
{
    g_autofree char *emulator = NULL;
    gboolean json = FALSE;
    GOptionEntry entries[] = {
        {"emulator", 0, 0, G_OPTION_ARG_FILENAME, &emulator,
         N_("the QEMU binary to probe (default: qemu-system-x86_64 on PATH)"), N_("PATH")},
        {"json", 0, 0, G_OPTION_ARG_NONE, &json, N_("print JSON"), NULL},
        {NULL}};
    g_autoptr(QemuCaps) caps = NULL;
    const char *accel = NULL;
    int flag;

    if (parse_options("capabilities", "", entries, &argc, &argv) < 0)
        return -1;
    if (argc > 1) {
        ho_error_report(HO_ERR_INVALID_ARG, _("capabilities: unexpected argument '%1$s'"),
                        argv[1]);
        return -1;
    }
    if (!emulator && !(emulator = default_emulator())) {
        ho_error_report(HO_ERR_NO_SUPPORT,
                        _("no QEMU found: install qemu-system-x86 or pass --emulator"));
        return -1;
    }
    if (!g_file_test(emulator, G_FILE_TEST_IS_EXECUTABLE)) {
        ho_error_report(HO_ERR_INVALID_ARG, _("emulator '%1$s' is not an executable file"),
                        emulator);
        return -1;
    }
    if (!(caps = probe_emulator(emulator, &accel)))
        return -1;

    if (json) {
        g_autoptr(json_object) obj = qemu_caps_to_json(caps);

        json_object_object_add(obj, "emulator", json_object_new_string(emulator));
        json_object_object_add(obj, "accelerator", json_object_new_string(accel));
        printf("%s\n", json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PRETTY |
                                                               JSON_C_TO_STRING_NOSLASHESCAPE));
        return 0;
    }
    printf(_("emulator:     %1$s\n"), emulator);
    printf(_("version:      %1$u.%2$u.%3$u (%4$s)\n"), qemu_caps_version(caps) / 1000000,
           qemu_caps_version(caps) / 1000 % 1000, qemu_caps_version(caps) % 1000,
           qemu_caps_package(caps));
    printf(_("accelerator:  %1$s\n"), accel);
    printf(_("features:\n"));
    for (flag = 0; flag < QEMU_CAPS_LAST; flag++) {
        printf("  %-26s %s\n", qemu_caps_flag_name(flag),
               qemu_caps_has(caps, flag) ? _("yes") : _("no"));
    }
    return 0;
}

static void
usage(FILE *out)
{
    size_t i;

    fprintf(out, _("Usage: handover COMMAND [OPTIONS]\n\nCommands:\n"));
    for (i = 0; i < G_N_ELEMENTS(commands); i++)
        fprintf(out, "  %-14s %s\n", commands[i].name, _(commands[i].summary));
    fprintf(out, _("\nRun 'handover COMMAND --help' for a command's options.\n"));
}

int
main(int argc, char **argv)
{
    size_t i;

    ho_i18n_init();
    ho_log_init();
    if (argc < 2) {
        usage(stderr);
        return EXIT_FAILURE;
    }
    if (g_str_equal(argv[1], "--help") || g_str_equal(argv[1], "-h") ||
        g_str_equal(argv[1], "help")) {
        usage(stdout);
        return EXIT_SUCCESS;
    }
    for (i = 0; i < G_N_ELEMENTS(commands); i++) {
        if (g_str_equal(argv[1], commands[i].name)) {
            if (commands[i].run(argc - 1, argv + 1) < 0) {
                print_error();
                return EXIT_FAILURE;
            }
            return EXIT_SUCCESS;
        }
    }
    g_printerr(_("error: unknown command '%1$s' (see 'handover --help')\n"), argv[1]);
    return EXIT_FAILURE;
}
