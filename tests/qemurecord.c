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
    GPtrArray *events; /* every event received: {"event","data"} (storage scenarios) */
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
event_free(gpointer ev)
{
    json_object_put(ev);
}

static void on_event(QemuMonitor *mon, const char *name, json_object *data, gint64 qemu_ts,
                     gint64 recv_ts, void *opaque);

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
    side->events = g_ptr_array_new_with_free_func(event_free);
    qemu_monitor_subscribe(side->mon, NULL, on_event, side);
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

/* ---- storage copy ------------------------------------------------------- */

typedef enum {
    STORAGE_OK = 0,           /* the whole flow of DESIGN.md §3 */
    STORAGE_ABORT_MIRROR,     /* abort with the mirrors READY, before migrate */
    STORAGE_CANCEL_PRECOPY,   /* migrate_cancel while RAM moves, mirrors running */
    STORAGE_CANCEL_PRE_SWITCHOVER, /* migrate_cancel in pre-switchover, mirrors running */
} StorageVariant;

typedef struct {
    const char *target; /* "vda" */
    const char *format; /* "qcow2", "raw" */
    const char *size;
    const char *const *writes; /* qemu-io commands run on the source image before start */
} StorageDisk;

static const char *const vda_writes[] = {"write -P 0x5a 0 4M", "write -P 0xa5 9M 1M", NULL};
static const char *const vdb_writes[] = {"write -P 0x33 1M 2M", NULL};
static const StorageDisk storage_disks[] = {
    {"vda", "qcow2", "16M", vda_writes},
    {"vdb", "raw", "8M", vdb_writes},
};
#define N_DISKS G_N_ELEMENTS(storage_disks)

static void
run_tool(const char *const *argv)
{
    g_autoptr(GError) gerr = NULL;
    g_autofree char *err = NULL;
    int status = 0;

    if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL,
                      NULL, NULL, NULL, &err, &status, &gerr) ||
        !g_spawn_check_wait_status(status, &gerr)) {
        g_printerr("qemurecord: %s: %s %s\n", argv[0], gerr ? gerr->message : "", err ? err : "");
        exit(1);
    }
}

static char *
disk_path(const char *dir, const char *which, const StorageDisk *d)
{
    g_autofree char *base = g_strdup_printf("%s-%s.%s", which, d->target, d->format);

    return g_build_filename(dir, base, NULL);
}

/* Source images with known data, empty destination images of the same
 * size and format (what Prepare creates). */
static void
make_images(const char *dir)
{
    for (guint i = 0; i < N_DISKS; i++) {
        const StorageDisk *d = &storage_disks[i];
        g_autofree char *src = disk_path(dir, "src", d);
        g_autofree char *dst = disk_path(dir, "dst", d);
        const char *create_src[] = {"qemu-img", "create", "-q", "-f", d->format, src, d->size, NULL};
        const char *create_dst[] = {"qemu-img", "create", "-q", "-f", d->format, dst, d->size, NULL};

        run_tool(create_src);
        run_tool(create_dst);
        for (const char *const *w = d->writes; *w; w++) {
            const char *io[] = {"qemu-io", "-f", d->format, "-c", *w, src, NULL};

            run_tool(io);
        }
    }
}

/* -blockdev file + format node and a virtio-blk device per disk, with the
 * node names and device ids the driver uses (qemu_domain.c). */
static void
add_disk_args(GPtrArray *argv, const char *dir, const char *which)
{
    for (guint i = 0; i < N_DISKS; i++) {
        const StorageDisk *d = &storage_disks[i];
        g_autofree char *path = disk_path(dir, which, d);

        g_ptr_array_add(argv, g_strdup("-blockdev"));
        g_ptr_array_add(argv, g_strdup_printf("{\"driver\":\"file\",\"filename\":\"%s\","
                                              "\"node-name\":\"drive-%s-file\"}",
                                              path, d->target));
        g_ptr_array_add(argv, g_strdup("-blockdev"));
        g_ptr_array_add(argv, g_strdup_printf("{\"driver\":\"%s\",\"node-name\":\"drive-%s-fmt\","
                                              "\"file\":\"drive-%s-file\"}",
                                              d->format, d->target, d->target));
        g_ptr_array_add(argv, g_strdup("-device"));
        g_ptr_array_add(argv, g_strdup_printf("virtio-blk-pci,drive=drive-%s-fmt,id=disk-%s",
                                              d->target, d->target));
    }
}

/* Every event of a side, kept in order for wait_event(). */
static void
on_event(QemuMonitor *mon, const char *name, json_object *data, gint64 qemu_ts, gint64 recv_ts,
         void *opaque)
{
    Side *side = opaque;
    json_object *ev = json_object_new_object();

    ho_json_add_string(ev, "event", name);
    if (data)
        json_object_object_add(ev, "data", json_object_get(data));
    g_ptr_array_add(side->events, ev);
}

static bool
event_matches(json_object *ev, const char *name, const char *key, const char *value)
{
    json_object *v, *data;

    if (json_object_object_get_ex(ev, "used", NULL))
        return false;
    if (!json_object_object_get_ex(ev, "event", &v) ||
        !g_str_equal(json_object_get_string(v), name))
        return false;
    if (!key)
        return true;
    return json_object_object_get_ex(ev, "data", &data) &&
           json_object_object_get_ex(data, key, &v) &&
           g_strcmp0(json_object_get_string(v), value) == 0;
}

/* The first not yet used event name (with data.key == value when key is
 * non-NULL), waiting up to timeout_ms; marked used. NULL on timeout. */
static json_object *
wait_event(Side *side, const char *name, const char *key, const char *value, guint timeout_ms)
{
    bool timed_out = false;
    guint id = g_timeout_add(timeout_ms, flag_timeout, &timed_out);

    for (;;) {
        for (guint i = 0; i < side->events->len; i++) {
            json_object *ev = g_ptr_array_index(side->events, i);

            if (event_matches(ev, name, key, value)) {
                json_object_object_add(ev, "used", json_object_new_boolean(true));
                if (!timed_out)
                    g_source_remove(id);
                return ev;
            }
        }
        if (timed_out)
            return NULL;
        g_main_context_iteration(NULL, TRUE);
    }
}

static json_object *
need_event(Side *side, const char *name, const char *key, const char *value)
{
    json_object *ev = wait_event(side, name, key, value, WAIT_MS);

    if (!ev) {
        g_printerr("qemurecord: %s: no %s %s within %d s\n", side->label, name,
                   value ? value : "", WAIT_MS / 1000);
        exit(1);
    }
    return ev;
}

static void
async_done(QemuMonitor *mon, json_object *ret, const HoError *err, void *opaque)
{
    int *pending = opaque;

    if (err) {
        g_printerr("qemurecord: %s: %s\n", qemu_monitor_get_label(mon), err->message);
        exit(1);
    }
    (*pending)--;
}

/* Send without waiting for the reply; *pending counts replies due. */
static void
send_async(Side *side, const char *cmd, json_object *args, int *pending)
{
    (*pending)++;
    qemu_monitor_send(side->mon, cmd, args, -1, async_done, pending);
}

static void
wait_pending(int *pending)
{
    bool timed_out = false;
    guint id = g_timeout_add(WAIT_MS, flag_timeout, &timed_out);

    while (*pending > 0 && !timed_out)
        g_main_context_iteration(NULL, TRUE);
    if (timed_out) {
        g_printerr("qemurecord: replies missing after %d s\n", WAIT_MS / 1000);
        exit(1);
    }
    g_source_remove(id);
}

static json_object *
inet_addr(int port, bool legacy)
{
    json_object *addr = json_object_new_object();
    json_object *data = json_object_new_object();
    g_autofree char *p = g_strdup_printf("%d", port);

    ho_json_add_string(data, "host", "127.0.0.1");
    ho_json_add_string(data, "port", p);
    ho_json_add_string(addr, "type", "inet");
    if (legacy)
        return ho_json_add(addr, "data", data);
    /* SocketAddress is flat: type beside host and port. */
    ho_json_add_string(data, "type", "inet");
    json_object_put(addr);
    return data;
}

static json_object *
job_args(const char *job, bool force)
{
    json_object *args = json_object_new_object();

    ho_json_add_string(args, "device", job);
    if (force)
        ho_json_add_bool(args, "force", true);
    return args;
}

/* A side that QEMU may have left by itself: quit if it still answers. */
static void
stop_side_gone(Side *side)
{
    if (!side->mon)
        return;
    /* The destination QEMU exits by itself after a cancelled migration. */
    if (test_qemu_wait_exit(side->proc, 3000))
        g_print("qemurecord: %s exited by itself\n", side->label);
    else if (!qemu_monitor_is_closed(side->mon))
        (void)qemu_monitor_send_sync(side->mon, "quit", NULL, -1, NULL, WAIT_MS);
    if (!test_qemu_wait_exit(side->proc, WAIT_MS))
        g_printerr("qemurecord: %s did not exit\n", side->label);
    qemu_monitor_close(side->mon);
    g_clear_pointer(&side->mon, qemu_monitor_unref);
    g_clear_pointer(&side->proc, test_qemu_free);
}

/* After a failed or cancelled migration with mirrors: the mirrors end by
 * themselves (the destination went away) or are force-cancelled, the NBD
 * client nodes go, the guest runs again. What QEMU does is recorded. */
static void
storage_unwind(Side *src, Side *dst)
{
    json_object *jobs = NULL;
    json_object *args = json_object_new_object();
    json_object *hmp = NULL;
    int pending = 0;
    g_autofree char *jobs_str = NULL;

    /* The destination QEMU leaves by itself (DESIGN.md §6); then a guest
     * write on vda (HMP qemu-io on the device's backend, as a guest writes)
     * reaches its mirror, whose target is gone; vdb gets no write. */
    if (!test_qemu_wait_exit(dst->proc, 3000))
        g_print("qemurecord: dst still runs 3 s after the cancel\n");
    ho_json_add_string(args, "command-line",
                       "qemu-io -d /machine/peripheral/disk-vda/virtio-backend "
                       "\"write -P 0x77 0 64k\"");
    if (qemu_monitor_send_sync(src->mon, "human-monitor-command", args, -1, &hmp, WAIT_MS) < 0)
        die("human-monitor-command");
    if (*json_object_get_string(hmp))
        g_print("qemurecord: qemu-io said: %s\n", json_object_get_string(hmp));
    json_object_put(hmp);
    /* Give the mirrors the time to notice the NBD server went away. */
    for (guint i = 0; i < N_DISKS; i++) {
        g_autofree char *job = g_strdup_printf("mirror-%s", storage_disks[i].target);

        if (!wait_event(src, "BLOCK_JOB_COMPLETED", "device", job, 3000))
            g_print("qemurecord: %s did not end by itself within 3 s\n", job);
    }
    if (qemu_monitor_send_sync(src->mon, "query-block-jobs", NULL, -1, &jobs, WAIT_MS) < 0)
        die("query-block-jobs");
    jobs_str = g_strdup(json_object_to_json_string(jobs));
    for (size_t i = 0; i < json_object_array_length(jobs); i++) {
        json_object *dev = NULL;

        json_object_object_get_ex(json_object_array_get_idx(jobs, i), "device", &dev);
        send_async(src, "block-job-cancel", job_args(json_object_get_string(dev), true),
                   &pending);
    }
    wait_pending(&pending);
    for (size_t i = 0; i < json_object_array_length(jobs); i++) {
        json_object *dev = NULL;

        json_object_object_get_ex(json_object_array_get_idx(jobs, i), "device", &dev);
        need_event(src, "BLOCK_JOB_CANCELLED", "device", json_object_get_string(dev));
    }
    json_object_put(jobs);
    g_print("qemurecord: jobs left after the migration ended: %s\n", jobs_str);
    for (guint i = 0; i < N_DISKS; i++) {
        g_autofree char *node = g_strdup_printf("migration-%s-storage", storage_disks[i].target);

        args = json_object_new_object();
        call(src, "blockdev-del", ho_json_add_string(args, "node-name", node));
    }
    call(src, "query-status", NULL);
}

static void
scenario_storage(Side *src, Side *dst, QemuRecorder *rec, const char *srcname,
                 const char *dstname, int port, int nbd_port, StorageVariant variant,
                 const char *dir)
{
    static const char *const src_caps[] = {"events", "pause-before-switchover", NULL};
    static const char *const dst_caps[] = {"events", "late-block-activate", NULL};
    g_autofree char *uri = g_strdup_printf("tcp:127.0.0.1:%d", port);
    g_autoptr(GPtrArray) src_args = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) dst_args = g_ptr_array_new_with_free_func(g_free);
    const char *const common[] = {"-machine", "pc-i440fx-7.2", "-m", "128", NULL};
    json_object *args;
    int pending = 0;

    make_images(dir);
    for (const char *const *a = common; *a; a++) {
        g_ptr_array_add(src_args, g_strdup(*a));
        g_ptr_array_add(dst_args, g_strdup(*a));
    }
    add_disk_args(src_args, dir, "src");
    add_disk_args(dst_args, dir, "dst");
    g_ptr_array_add(dst_args, g_strdup("-S"));
    g_ptr_array_add(dst_args, g_strdup("-incoming"));
    g_ptr_array_add(dst_args, g_strdup("defer"));
    g_ptr_array_add(src_args, NULL);
    g_ptr_array_add(dst_args, NULL);

    start_side(src, "src", srcname, (const char *const *)src_args->pdata, rec);
    start_side(dst, "dst", dstname, (const char *const *)dst_args->pdata, rec);

    /* Begin (src): the disks' formats and virtual sizes for the cookie. */
    args = json_object_new_object();
    call(src, "query-named-block-nodes", ho_json_add_bool(args, "flat", true));

    /* Prepare (dst): capabilities, NBD server, one writable export per disk,
     * migrate-incoming. */
    call(dst, "migrate-set-capabilities", caps_args(dst_caps));
    args = json_object_new_object();
    call(dst, "nbd-server-start", ho_json_add(args, "addr", inet_addr(nbd_port, true)));
    for (guint i = 0; i < N_DISKS; i++) {
        g_autofree char *node = g_strdup_printf("drive-%s-fmt", storage_disks[i].target);

        args = json_object_new_object();
        ho_json_add_string(args, "type", "nbd");
        ho_json_add_string(args, "id", node);
        ho_json_add_string(args, "node-name", node);
        ho_json_add_string(args, "name", node);
        ho_json_add_bool(args, "writable", true);
        call(dst, "block-export-add", args);
    }
    args = json_object_new_object();
    call(dst, "migrate-incoming", ho_json_add_string(args, "uri", uri));

    /* Mirror (src): an NBD client node and a mirror per disk, all READY. */
    for (guint i = 0; i < N_DISKS; i++) {
        const char *t = storage_disks[i].target;
        g_autofree char *node = g_strdup_printf("migration-%s-storage", t);
        g_autofree char *exp = g_strdup_printf("drive-%s-fmt", t);

        args = json_object_new_object();
        ho_json_add_string(args, "driver", "nbd");
        ho_json_add_string(args, "node-name", node);
        ho_json_add(args, "server", inet_addr(nbd_port, false));
        ho_json_add_string(args, "export", exp);
        call(src, "blockdev-add", args);
    }
    for (guint i = 0; i < N_DISKS; i++) {
        const char *t = storage_disks[i].target;
        g_autofree char *job = g_strdup_printf("mirror-%s", t);
        g_autofree char *dev = g_strdup_printf("drive-%s-fmt", t);
        g_autofree char *node = g_strdup_printf("migration-%s-storage", t);

        args = json_object_new_object();
        ho_json_add_string(args, "job-id", job);
        ho_json_add_string(args, "device", dev);
        ho_json_add_string(args, "target", node);
        ho_json_add_string(args, "sync", "full");
        call(src, "blockdev-mirror", args);
    }
    for (guint i = 0; i < N_DISKS; i++) {
        g_autofree char *job = g_strdup_printf("mirror-%s", storage_disks[i].target);

        need_event(src, "BLOCK_JOB_READY", "device", job);
    }

    if (variant == STORAGE_ABORT_MIRROR) {
        /* Abort before RAM moves: force-cancel every mirror at once. */
        for (guint i = 0; i < N_DISKS; i++) {
            g_autofree char *job = g_strdup_printf("mirror-%s", storage_disks[i].target);

            send_async(src, "block-job-cancel", job_args(job, true), &pending);
        }
        wait_pending(&pending);
        for (guint i = 0; i < N_DISKS; i++) {
            g_autofree char *job = g_strdup_printf("mirror-%s", storage_disks[i].target);

            need_event(src, "BLOCK_JOB_CANCELLED", "device", job);
        }
        for (guint i = 0; i < N_DISKS; i++) {
            g_autofree char *node = g_strdup_printf("migration-%s-storage",
                                                    storage_disks[i].target);

            args = json_object_new_object();
            call(src, "blockdev-del", ho_json_add_string(args, "node-name", node));
        }
        call(src, "query-status", NULL);
        stop_side(dst);
        stop_side(src);
        return;
    }

    /* Perform (src). */
    call(src, "migrate-set-capabilities", caps_args(src_caps));
    args = json_object_new_object();
    call(src, "migrate", ho_json_add_string(args, "uri", uri));

    if (variant == STORAGE_CANCEL_PRECOPY) {
        need_event(src, "MIGRATION", "status", "active");
        call(src, "migrate_cancel", NULL);
        need_event(src, "MIGRATION", "status", "cancelled");
        storage_unwind(src, dst);
        stop_side_gone(dst);
        stop_side(src);
        return;
    }
    need_event(src, "MIGRATION", "status", "pre-switchover");
    if (variant == STORAGE_CANCEL_PRE_SWITCHOVER) {
        call(src, "migrate_cancel", NULL);
        need_event(src, "MIGRATION", "status", "cancelled");
        storage_unwind(src, dst);
        stop_side_gone(dst);
        stop_side(src);
        return;
    }

    /* pre-switchover: all mirrors cancelled at once (a READY mirror
     * cancelled completes without pivot), then migrate-continue; the
     * destination's NBD server stops in parallel (late-block-activate). */
    for (guint i = 0; i < N_DISKS; i++) {
        g_autofree char *job = g_strdup_printf("mirror-%s", storage_disks[i].target);

        send_async(src, "block-job-cancel", job_args(job, false), &pending);
    }
    for (guint i = 0; i < N_DISKS; i++) {
        g_autofree char *job = g_strdup_printf("mirror-%s", storage_disks[i].target);

        need_event(src, "BLOCK_JOB_COMPLETED", "device", job);
    }
    args = json_object_new_object();
    send_async(src, "migrate-continue", ho_json_add_string(args, "state", "pre-switchover"),
               &pending);
    send_async(dst, "nbd-server-stop", NULL, &pending);
    need_event(src, "MIGRATION", "status", "completed");
    need_event(dst, "MIGRATION", "status", "completed");
    wait_pending(&pending);
    call(dst, "cont", NULL);
    for (guint i = 0; i < N_DISKS; i++) {
        g_autofree char *node = g_strdup_printf("migration-%s-storage", storage_disks[i].target);

        args = json_object_new_object();
        call(src, "blockdev-del", ho_json_add_string(args, "node-name", node));
    }
    call(src, "query-migrate", NULL);
    stop_side(src);
    call(dst, "stop", NULL);
    stop_side(dst);

    /* What the recording shows is worth something only if the disks arrived. */
    for (guint i = 0; i < N_DISKS; i++) {
        g_autofree char *s = disk_path(dir, "src", &storage_disks[i]);
        g_autofree char *d = disk_path(dir, "dst", &storage_disks[i]);
        const char *cmp[] = {"qemu-img", "compare", "-q", s, d, NULL};

        run_tool(cmp);
    }
    g_print("qemurecord: the destination images equal the source's\n");
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
                  const Side *src, const Side *dst, int port, int nbd_port)
{
    g_autofree char *raw = NULL;
    g_autoptr(GString) text = g_string_new(header);
    const int ports[] = {port, nbd_port};
    const char *const port_names[] = {"port", "nbd_port"};
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
        for (guint p = 0; p < G_N_ELEMENTS(ports); p++) {
            g_autofree char *portstr = NULL;
            g_autofree char *holder = NULL;

            if (ports[p] <= 0)
                continue;
            /* Only where a port stands in a string: the end of "host:port"
             * and a string of its own ("port": "4444"), never inside the
             * digits of a timestamp. */
            portstr = g_strdup_printf("%d", ports[p]);
            holder = g_strdup_printf(":${%s}\"", port_names[p]);
            line = replace_all(line, g_strdup_printf(":%s\"", portstr), holder);
            holder[0] = '"';
            line = replace_all(line, g_strdup_printf("\"%s\"", portstr), holder);
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
    int nbd_port = 0;
    GOptionEntry entries[] = {
        {"scenario", 0, 0, G_OPTION_ARG_STRING, &scenario, "probe, migrate, storage, storage-abort-mirror, storage-cancel-precopy, "
         "storage-cancel-pre-switchover", "NAME"},
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
        (!g_str_equal(scenario, "probe") && !dstname)) {
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
    } else if (g_str_has_prefix(scenario, "storage")) {
        static const struct {
            const char *name;
            StorageVariant variant;
            const char *what;
        } variants[] = {
            {"storage", STORAGE_OK,
             "# the whole flow: at pre-switchover both mirrors are cancelled at once\n"
             "# (block-job-cancel on a READY mirror: BLOCK_JOB_COMPLETED, no pivot),\n"
             "# then migrate-continue on src and nbd-server-stop on dst in parallel\n"
             "# (late-block-activate is set on dst); completed on both; dst cont;\n"
             "# src deletes its NBD client nodes, then quits. The images compared\n"
             "# equal (qemu-img compare) afterwards.\n"},
            {"storage-abort-mirror", STORAGE_ABORT_MIRROR,
             "# an abort with both mirrors READY, before migrate: block-job-cancel\n"
             "# force:true on both at once -> BLOCK_JOB_CANCELLED, blockdev-del of the\n"
             "# NBD client nodes, query-status (the guest never stopped), dst quit.\n"},
            {"storage-cancel-precopy", STORAGE_CANCEL_PRECOPY,
             "# migrate_cancel on src as soon as it reports active (RAM moving,\n"
             "# mirrors READY and running). The destination QEMU exits by itself;\n"
             "# then a guest write on vda only (HMP qemu-io -d on its virtio backend)\n"
             "# reaches vda's mirror, whose NBD target is gone; up to 3 s per mirror\n"
             "# for its end; query-block-jobs; force-cancel of the jobs left (vdb,\n"
             "# idle, is still READY); blockdev-del of the NBD client nodes;\n"
             "# query-status (the guest runs).\n"},
            {"storage-cancel-pre-switchover", STORAGE_CANCEL_PRE_SWITCHOVER,
             "# migrate_cancel on src in pre-switchover with the mirrors still\n"
             "# running (not cancelled first): then as storage-cancel-precopy.\n"},
        };
        const char *what = NULL;
        StorageVariant variant = STORAGE_OK;

        for (guint i = 0; i < G_N_ELEMENTS(variants); i++) {
            if (g_str_equal(scenario, variants[i].name)) {
                what = variants[i].what;
                variant = variants[i].variant;
            }
        }
        if (!what || !dstname) {
            g_printerr("qemurecord: unknown scenario '%s', or no --dst\n", scenario);
            return 2;
        }
        port = free_port();
        nbd_port = free_port();
        scenario_storage(&src, &dst, rec, srcname, dstname, port, nbd_port, variant, dir);
        header = g_strdup_printf(
            "# Storage copy (DESIGN.md §3), QEMU %s -> QEMU %s, a guest in firmware\n"
            "# (SeaBIOS finds no bootable disk and waits) with two disks: vda qcow2\n"
            "# 16 MiB with 5 MiB written by qemu-io before start, vdb raw 8 MiB with\n"
            "# 2 MiB written; the destination's images are created empty with\n"
            "# qemu-img beforehand (what Prepare does). Node names as the driver's:\n"
            "# drive-vdX-fmt (format node, also the export name), migration-vdX-storage\n"
            "# (src NBD client node), mirror-vdX (job). dst: events +\n"
            "# late-block-activate, nbd-server-start, block-export-add per disk,\n"
            "# migrate-incoming (after src's query-named-block-nodes flat:true, the\n"
            "# disks' sizes for the cookie); src: blockdev-add nbd + blockdev-mirror (sync full)\n"
            "# per disk, both READY, events + pause-before-switchover, migrate; then\n"
            "%s"
            "# ${port} is the migration port, ${nbd_port} the NBD server's.\n"
            "# Recorded with: qemurecord --scenario %s --src %s --dst %s (%s, %s)\n",
            src.version, dst.version, what, scenario, srcname, dstname,
            test_qemu_accel(NULL), date);
    } else {
        g_printerr("qemurecord: unknown scenario '%s'\n", scenario);
        return 2;
    }
    g_clear_pointer(&rec, qemu_recorder_unref);
    finish_transcript(raw, out, header, &src, dstname ? &dst : NULL, port, nbd_port);
    g_print("qemurecord: wrote %s\n", out);
    g_free(src.version);
    g_free(dst.version);
    return 0;
}
