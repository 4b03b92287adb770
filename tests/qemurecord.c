/*
 * qemurecord: record transcripts from real QEMUs with the flight recorder.
 *
 *   qemurecord --scenario probe   --src qemu-7.2 --out probe-7.2.jsonl
 *   qemurecord --scenario migrate --src qemu-7.2 --dst qemu-10.0 --out F
 *
 * probe: the capability probe exactly as qemu_caps_probe() sends it.
 * migrate: a minimal driver doing the precopy flow of DESIGN.md §3 on two
 *   QEMUs, no disks: both sides get the "events" capability, the source
 *   "pause-before-switchover"; the destination starts with -S and
 *   -incoming defer and listens with migrate-incoming; the source migrates,
 *   stops in pre-switchover, gets migrate-continue, completes; the
 *   destination runs with cont once both sides reported completed.
 *
 * The recording is then made reusable: per-run values (the migration
 * port) become ${placeholders}, a meta line names each side's schema
 * (schema/<version>.json beside the transcripts) for the mock's checks,
 * and comment lines at the top say what the transcript shows and how it
 * was made.
 */
#include <glib.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ho_error.h"
#include "ho_file.h"
#include "ho_json.h"
#include "ho_log.h"
#include "ho_socket.h"
#include "qemu_capabilities.h"
#include "qemu_monitor.h"
#include "qemu_monitor_json.h"
#include "qemu_recorder.h"
#include "testqemu.h"
#include "testutils.h"

#define WAIT_MS 60000

typedef struct {
    const char *label;
    const TestQemuBinary *bin;
    TestQemu *proc;
    QemuMonitor *mon;
    QemuMigrationStatus last_status;
    char *version; /* "7.2" */
} Side;

static void
die(const char *what)
{
    g_printerr("qemurecord: %s: %s\n", what, ho_error_last_message());
    exit(1);
}

static void
on_migration(QemuMonitor *mon, const char *name, json_object *data, gint64 qemu_ts,
             gint64 recv_ts, void *opaque)
{
    Side *side = opaque;
    json_object *st;

    if (data && json_object_object_get_ex(data, "status", &st))
        side->last_status = qemu_migration_status_from_string(json_object_get_string(st));
}

static gboolean
flag_timeout(gpointer opaque)
{
    *(bool *)opaque = true;
    return G_SOURCE_REMOVE;
}

/* Wait for a MIGRATION event with this status (bounded). */
static void
wait_status(Side *side, QemuMigrationStatus want)
{
    bool timed_out = false;
    guint id = g_timeout_add(WAIT_MS, flag_timeout, &timed_out);

    while (side->last_status != want && !timed_out) {
        if (side->last_status == QEMU_MIGRATION_STATUS_FAILED ||
            side->last_status == QEMU_MIGRATION_STATUS_CANCELLED) {
            g_printerr("qemurecord: %s migration %s\n", side->label,
                       qemu_migration_status_to_string(side->last_status));
            exit(1);
        }
        g_main_context_iteration(NULL, TRUE);
    }
    if (timed_out) {
        g_printerr("qemurecord: %s: no '%s' within %d s\n", side->label,
                   qemu_migration_status_to_string(want), WAIT_MS / 1000);
        exit(1);
    }
    g_source_remove(id);
}

static void
call(Side *side, const char *cmd, json_object *args)
{
    if (qemu_monitor_send_sync(side->mon, cmd, args, -1, NULL, WAIT_MS) < 0) {
        g_printerr("qemurecord: %s %s: %s\n", side->label, cmd, ho_error_last_message());
        exit(1);
    }
}

static json_object *
caps_args(const char *const *names)
{
    json_object *arr = json_object_new_array();
    json_object *args = json_object_new_object();

    for (; *names; names++) {
        json_object *cap = json_object_new_object();

        ho_json_add_string(cap, "capability", *names);
        ho_json_add_bool(cap, "state", true);
        json_object_array_add(arr, cap);
    }
    return ho_json_add(args, "capabilities", arr);
}

static void
start_side(Side *side, const char *label, const char *name, const char *const *args,
           QemuRecorder *rec)
{
    side->label = label;
    side->bin = test_qemu_binary(name);
    if (!side->bin || !side->bin->binary) {
        g_printerr("qemurecord: %s is not available%s%s\n", name, side->bin ? ": " : "",
                   side->bin ? side->bin->missing : "");
        exit(1);
    }
    side->version = g_strdup(name + strlen("qemu-"));
    side->proc = test_qemu_start(side->bin, test_qemu_accel(NULL), args);
    if (!side->proc)
        die("cannot start QEMU");
    side->mon = qemu_monitor_open_unix(side->proc->qmp_path, label, NULL, NULL, NULL);
    if (!side->mon)
        die("cannot connect");
    qemu_monitor_set_recorder(side->mon, rec);
    qemu_monitor_subscribe(side->mon, "MIGRATION", on_migration, side);
    if (qemu_monitor_wait_ready(side->mon, WAIT_MS) < 0)
        die("QMP handshake");
}

static void
stop_side(Side *side)
{
    if (!side->mon)
        return;
    call(side, "quit", NULL);
    if (!test_qemu_wait_exit(side->proc, WAIT_MS))
        g_printerr("qemurecord: %s did not exit after quit\n", side->label);
    qemu_monitor_close(side->mon);
    g_clear_pointer(&side->mon, qemu_monitor_unref);
    g_clear_pointer(&side->proc, test_qemu_free);
}

static void
probe_done(QemuMonitor *mon, QemuCaps *caps, const HoError *err, void *opaque)
{
    bool *done = opaque;

    if (err) {
        g_printerr("qemurecord: probe failed: %s\n", err->message);
        exit(1);
    }
    qemu_caps_free(caps);
    *done = true;
}

static void
scenario_probe(Side *src, QemuRecorder *rec, const char *srcname)
{
    const char *args[] = {"-machine", "none", NULL};
    bool done = false;

    start_side(src, "src", srcname, args, rec);
    qemu_caps_probe(src->mon, probe_done, &done);
    if (!test_iterate_until(NULL, &done, WAIT_MS)) {
        g_printerr("qemurecord: probe timed out\n");
        exit(1);
    }
    stop_side(src);
}

static int
free_port(void)
{
    int port = 0;
    int fd = ho_socket_tcp_listen("127.0.0.1", 0, 1, &port);

    if (fd < 0)
        die("cannot find a free port");
    close(fd);
    return port;
}

static void
scenario_migrate(Side *src, Side *dst, QemuRecorder *rec, const char *srcname,
                 const char *dstname, int port)
{
    static const char *const src_caps[] = {"events", "pause-before-switchover", NULL};
    static const char *const dst_caps[] = {"events", NULL};
    g_autofree char *uri = g_strdup_printf("tcp:127.0.0.1:%d", port);
    /* The machine type is the concrete one both versions know. */
    const char *src_args[] = {"-machine", "pc-i440fx-7.2", "-m", "128", NULL};
    const char *dst_args[] = {"-machine", "pc-i440fx-7.2", "-m", "128", "-S",
                              "-incoming", "defer", NULL};
    json_object *args;

    start_side(src, "src", srcname, src_args, rec);
    start_side(dst, "dst", dstname, dst_args, rec);

    call(dst, "migrate-set-capabilities", caps_args(dst_caps));
    args = json_object_new_object();
    call(dst, "migrate-incoming", ho_json_add_string(args, "uri", uri));
    call(src, "migrate-set-capabilities", caps_args(src_caps));
    args = json_object_new_object();
    call(src, "migrate", ho_json_add_string(args, "uri", uri));
    wait_status(src, QEMU_MIGRATION_STATUS_PRE_SWITCHOVER);
    args = json_object_new_object();
    call(src, "migrate-continue", ho_json_add_string(args, "state", "pre-switchover"));
    wait_status(src, QEMU_MIGRATION_STATUS_COMPLETED);
    wait_status(dst, QEMU_MIGRATION_STATUS_COMPLETED);
    call(dst, "cont", NULL);
    call(src, "query-migrate", NULL);
    stop_side(src);
    stop_side(dst);
}

/* Replace every occurrence of what (consumed) in line (consumed). */
static char *
replace_all(char *line, char *what, const char *with)
{
    g_auto(GStrv) parts = g_strsplit(line, what, -1);

    g_free(line);
    g_free(what);
    return g_strjoinv(with, parts);
}

/* Rewrite the raw recording: placeholders, a meta line, comments. */
static void
finish_transcript(const char *raw_path, const char *out, const char *header,
                  const Side *src, const Side *dst, int port)
{
    g_autofree char *raw = NULL;
    g_autoptr(GString) text = g_string_new(header);
    g_autofree char *portstr = g_strdup_printf("%d", port);
    g_auto(GStrv) lines = NULL;
    size_t len;
    char **l;

    if (ho_file_read_all(raw_path, 256 * 1024 * 1024, &raw, &len) < 0)
        die("cannot read the recording");
    g_string_append_printf(text, "{\"meta\":{\"schema\":{\"src\":\"qemu-%s\"", src->version);
    if (dst && dst->version)
        g_string_append_printf(text, ",\"dst\":\"qemu-%s\"", dst->version);
    g_string_append(text, "}}}\n");

    lines = g_strsplit(raw, "\n", -1);
    for (l = lines; *l; l++) {
        g_autofree char *line = NULL;

        if (!**l)
            continue;
        line = g_strdup(*l);
        if (port > 0) {
            /* Only where a port stands in a string: the end of "host:port"
             * and a string of its own ("port": "4444"), never inside the
             * digits of a timestamp. */
            line = replace_all(line, g_strdup_printf(":%s\"", portstr), ":${port}\"");
            line = replace_all(line, g_strdup_printf("\"%s\"", portstr), "\"${port}\"");
        }
        g_string_append(text, line);
        g_string_append_c(text, '\n');
    }
    if (ho_file_write_atomic(out, text->str, text->len, 0644) < 0)
        die("cannot write the transcript");
}

int
main(int argc, char **argv)
{
    g_autofree char *scenario = NULL;
    g_autofree char *srcname = NULL;
    g_autofree char *dstname = NULL;
    g_autofree char *out = NULL;
    g_autofree char *dir = NULL;
    g_autofree char *raw = NULL;
    g_autofree char *header = NULL;
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    g_autofree char *date = g_date_time_format(now, "%Y-%m-%d");
    g_autoptr(GOptionContext) ctx = g_option_context_new("- record QMP transcripts");
    g_autoptr(GError) gerr = NULL;
    g_autoptr(QemuRecorder) rec = NULL;
    Side src = {0}, dst = {0};
    int port = 0;
    GOptionEntry entries[] = {
        {"scenario", 0, 0, G_OPTION_ARG_STRING, &scenario, "probe or migrate", "NAME"},
        {"src", 0, 0, G_OPTION_ARG_STRING, &srcname, "source QEMU (qemu-7.2, qemu-10.0)", "Q"},
        {"dst", 0, 0, G_OPTION_ARG_STRING, &dstname, "destination QEMU (migrate)", "Q"},
        {"out", 0, 0, G_OPTION_ARG_FILENAME, &out, "transcript to write", "FILE"},
        {NULL}};

    g_option_context_add_main_entries(ctx, entries, NULL);
    if (!g_option_context_parse(ctx, &argc, &argv, &gerr)) {
        g_printerr("qemurecord: %s\n", gerr->message);
        return 2;
    }
    if (!scenario || !srcname || !out ||
        (g_str_equal(scenario, "migrate") && !dstname)) {
        g_printerr("qemurecord: --scenario, --src and --out are required "
                   "(and --dst for migrate)\n");
        return 2;
    }
    ho_log_init();
    dir = test_make_tmpdir("record");
    raw = g_build_filename(dir, "raw.jsonl", NULL);
    if (!(rec = qemu_recorder_open(raw)))
        die("cannot open the recording");

    if (g_str_equal(scenario, "probe")) {
        scenario_probe(&src, rec, srcname);
        header = g_strdup_printf(
            "# The capability probe (qemu_caps_probe) of QEMU %s: greeting,\n"
            "# qmp_capabilities, query-version, query-commands, query-events,\n"
            "# query-migrate-capabilities, query-qmp-schema, then quit.\n"
            "# Recorded with: qemurecord --scenario probe --src %s (%s, %s)\n",
            src.version, srcname, test_qemu_accel(NULL), date);
    } else if (g_str_equal(scenario, "migrate")) {
        port = free_port();
        scenario_migrate(&src, &dst, rec, srcname, dstname, port);
        header = g_strdup_printf(
            "# A precopy migration, no disks, QEMU %s -> QEMU %s, with\n"
            "# pause-before-switchover on the source: src stops in pre-switchover,\n"
            "# gets migrate-continue, completes; dst (-S, -incoming defer) runs on\n"
            "# cont after both sides reported completed. ${port} is the migration port.\n"
            "# Recorded with: qemurecord --scenario migrate --src %s --dst %s (%s, %s)\n",
            src.version, dst.version, srcname, dstname, test_qemu_accel(NULL), date);
    } else {
        g_printerr("qemurecord: unknown scenario '%s'\n", scenario);
        return 2;
    }
    g_clear_pointer(&rec, qemu_recorder_unref);
    finish_transcript(raw, out, header, &src, dstname ? &dst : NULL, port);
    g_print("qemurecord: wrote %s\n", out);
    g_free(src.version);
    g_free(dst.version);
    return 0;
}
