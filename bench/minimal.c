/*
 * minimal: the physical limit of a storage-copy live migration, the floor
 * handover is measured against (bench/run, docs/bench.md).
 *
 *   minimal --qemu qemu-7.2 --src-disk A.qcow2 [--src-disk B.qcow2 ...]
 *           --dst-dir DIR --record FILE [--mem 512] [--verify]
 *           [--accel tcg --kernel K --initrd I --append CMDLINE
 *            --src-serial FILE --dst-serial FILE
 *            --src-ready PREFIX --dst-ready PREFIX --keep-dst]
 *           [--ready-file FILE --go FIFO]
 *
 * No daemon, no persistence, no capability probe: it starts a source QEMU
 * (a firmware guest, KVM when /dev/kvm works) on the given images, then,
 * timed from "begin" to the source QEMU's exit, does exactly the flow of
 * DESIGN.md §3 with storage copy and nothing else:
 *
 *   begin    query-named-block-nodes (the disks' sizes), qemu-img create of
 *            each destination image in DIR;
 *   prepare  the destination QEMU (-S -incoming defer), capabilities
 *            events + late-block-activate, nbd-server-start (on a listening
 *            socket bound here with Nagle off and passed with getfd, as
 *            handover does; --nbd-qemu-listener for QEMU's own), a
 *            writable export per disk, migrate-incoming on a listening
 *            socket bound here with a 32 KiB receive buffer, as handover
 *            does over loopback (--stream-buffer): QEMU 7.2 listens on
 *            it ("tcp:fd:NAME"); for a later QEMU the driver accepts the
 *            stream at perform and sends migrate-incoming "fd:NAME" then;
 *   mirror   blockdev-add nbd + blockdev-mirror per disk, all READY (with
 *            buf-size 4 MiB, handoverd's default; --mirror-buf-size 0 for
 *            QEMU's own 16 MiB);
 *   perform  capabilities events + pause-before-switchover, unlimited
 *            bandwidth (as handover sets it), migrate over a connection
 *            made here with the same send buffer and Nagle off
 *            ("fd:NAME"); at pre-switchover all
 *            mirrors cancelled at once, migrate-continue (and nbd-server-stop
 *            on the destination in parallel, late-block-activate);
 *   finish   cont on the destination once both sides reported completed;
 *   confirm  query-migrate, blockdev-del of the NBD client nodes, quit.
 *
 * Commands to one QEMU that do not depend on each other's replies are
 * pipelined (QMP runs them in order). Every QMP exchange goes to the
 * flight recorder (FILE, one clock for both sides); bench/analyze.py
 * computes the figures from it exactly as it does for handover's
 * recordings. On stdout: one JSON object with what only the driver knows
 * (its wall time, CPU time and peak RSS).
 *
 * The busy workload (bench/run --workload busy) boots the Linux test guest
 * (docs/test-guest.md) instead: --kernel, --initrd and --append, its
 * serial port a file per side (-chardev file, as handover's and libvirt's
 * <serial type='file'>), under --accel tcg. Untimed, before "begin" the
 * driver waits for a line starting with --src-ready in the source's
 * serial file (the workload running), and after the source QEMU's exit for
 * one starting with --dst-ready in the destination's (the guest running
 * there); then it stops the destination (QEMU drains its I/O) and quits
 * it, so that bench/run can check the destination's image.
 *
 * This is a measuring tool, not part of handover: it exits on the first
 * error with a plain message.
 */
#include <glib.h>
#include <json-c/json.h>
#include <stdio.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <glib-unix.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <unistd.h>

#include "ho_error.h"
#include "ho_json.h"
#include "ho_log.h"
#include "ho_socket.h"
#include "qemu_monitor.h"
#include "qemu_monitor_json.h"
#include "qemu_recorder.h"
#include "testqemu.h"

#define WAIT_MS 120000
#define MAX_DISKS 16
/* handover's "no limit" for max-bandwidth (qemu_migration.c). */
#define UNLIMITED_BANDWIDTH (G_GUINT64_CONSTANT(1) << 53)

typedef struct {
    const char *label;
    TestQemu *proc;
    QemuMonitor *mon;
    GPtrArray *events; /* {"event","data"} in arrival order; "used" once matched */
} Side;

typedef struct {
    char *target;   /* vda, vdb, ... */
    char *src_path;
    char *dst_path;
    gint64 size;    /* virtual size from query-named-block-nodes */
} Disk;

static void G_GNUC_NORETURN
fail(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

static void
fail(const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_printerr("minimal: %s\n", msg);
    exit(1);
}

static gboolean
flag_timeout(gpointer opaque)
{
    *(bool *)opaque = true;
    return G_SOURCE_REMOVE;
}

static gboolean
flag_readable(gint fd, GIOCondition cond, gpointer opaque)
{
    char buf[4096];

    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    *(bool *)opaque = true;
    return G_SOURCE_CONTINUE;
}

/* Wait (bounded, woken by inotify) for a line starting with prefix in a
 * serial file QEMU writes; lines may end with "\r\n". Each call reads
 * the file from its start. */
static void
wait_serial_line(const char *path, const char *prefix, const char *label)
{
    bool timed_out = false, changed = true;
    int ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    guint tid, wid;

    if (ifd < 0 || inotify_add_watch(ifd, path, IN_MODIFY) < 0)
        fail("%s serial file %s: %s", label, path, g_strerror(errno));
    tid = g_timeout_add(WAIT_MS, flag_timeout, &timed_out);
    wid = g_unix_fd_add(ifd, G_IO_IN, flag_readable, &changed);
    for (;;) {
        if (changed) {
            g_autofree char *text = NULL;
            gsize len = 0;
            bool found;

            changed = false;
            if (!g_file_get_contents(path, &text, &len, NULL))
                fail("%s serial file %s cannot be read", label, path);
            found = g_str_has_prefix(text, prefix);
            for (const char *p = strchr(text, '\n'); p && !found; p = strchr(p + 1, '\n'))
                found = g_str_has_prefix(p + 1, prefix);
            if (found)
                break;
        }
        if (timed_out)
            fail("%s: no line '%s' on the guest's console within %d s", label, prefix,
                 WAIT_MS / 1000);
        g_main_context_iteration(NULL, TRUE);
    }
    g_source_remove(tid);
    g_source_remove(wid);
    close(ifd);
}

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

/* Wait (bounded) for the first unused event name with data.key == value;
 * a failed or cancelled migration ends the run. */
static void
need_event(Side *side, const char *name, const char *key, const char *value)
{
    bool timed_out = false;
    guint id = g_timeout_add(WAIT_MS, flag_timeout, &timed_out);

    for (;;) {
        for (guint i = 0; i < side->events->len; i++) {
            json_object *ev = g_ptr_array_index(side->events, i);

            if (event_matches(ev, "MIGRATION", "status", "failed") ||
                event_matches(ev, "MIGRATION", "status", "cancelled") ||
                event_matches(ev, "BLOCK_JOB_ERROR", NULL, NULL))
                fail("%s: %s", side->label, json_object_to_json_string(ev));
            if (event_matches(ev, name, key, value)) {
                json_object_object_add(ev, "used", json_object_new_boolean(true));
                g_source_remove(id);
                return;
            }
        }
        if (timed_out)
            fail("%s: no %s %s within %d s", side->label, name, value ? value : "",
                 WAIT_MS / 1000);
        if (qemu_monitor_is_closed(side->mon))
            fail("%s: QEMU closed its monitor while waiting for %s", side->label, name);
        g_main_context_iteration(NULL, TRUE);
    }
}

static void
reply_done(QemuMonitor *mon, json_object *ret, const HoError *err, void *opaque)
{
    int *pending = opaque;

    if (err)
        fail("%s: %s", qemu_monitor_get_label(mon), err->message);
    (*pending)--;
}

/* reply_done for the typed wrappers of qemu_monitor_json.h. */
static void
pending_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    reply_done(mon, NULL, err, opaque);
}

/* Send without waiting; *pending counts the replies due. */
static void
send_async(Side *side, const char *cmd, json_object *args, int *pending)
{
    (*pending)++;
    qemu_monitor_send(side->mon, cmd, args, -1, reply_done, pending);
}

static void
wait_pending(int *pending)
{
    bool timed_out = false;
    guint id = g_timeout_add(WAIT_MS, flag_timeout, &timed_out);

    while (*pending > 0 && !timed_out)
        g_main_context_iteration(NULL, TRUE);
    if (timed_out)
        fail("%d replies missing after %d s", *pending, WAIT_MS / 1000);
    g_source_remove(id);
}

static json_object *
call(Side *side, const char *cmd, json_object *args)
{
    json_object *ret = NULL;

    if (qemu_monitor_send_sync(side->mon, cmd, args, -1, &ret, WAIT_MS) < 0)
        fail("%s %s: %s", side->label, cmd, ho_error_last_message());
    return ret;
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

static void
start_side(Side *side, const char *label, const TestQemuBinary *bin, const char *accel,
           GPtrArray *args, QemuRecorder *rec)
{
    side->label = label;
    g_ptr_array_add(args, NULL);
    side->proc = test_qemu_start(bin, accel, (const char *const *)args->pdata);
    if (!side->proc)
        fail("cannot start %s QEMU: %s", label, ho_error_last_message());
    side->mon = qemu_monitor_open_unix(side->proc->qmp_path, label, NULL, NULL, NULL);
    if (!side->mon)
        fail("cannot connect to the %s QEMU: %s", label, ho_error_last_message());
    qemu_monitor_set_recorder(side->mon, rec);
    side->events = g_ptr_array_new_with_free_func(event_free);
    qemu_monitor_subscribe(side->mon, NULL, on_event, side);
    if (qemu_monitor_wait_ready(side->mon, WAIT_MS) < 0) {
        g_autofree char *log = test_qemu_log(side->proc);

        fail("%s QMP handshake: %s; QEMU's output: %s", label, ho_error_last_message(),
             log ? log : "(none)");
    }
}

static void
quit_side(Side *side)
{
    int pending = 0;

    if (!side->mon)
        return;
    send_async(side, "quit", NULL, &pending);
    wait_pending(&pending);
    if (!test_qemu_wait_exit(side->proc, WAIT_MS))
        g_printerr("minimal: %s QEMU did not exit after quit\n", side->label);
    qemu_monitor_close(side->mon);
    g_clear_pointer(&side->mon, qemu_monitor_unref);
}

static void
run_tool(const char *const *argv)
{
    g_autoptr(GError) gerr = NULL;
    g_autofree char *err = NULL;
    int status = 0;

    if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL,
                      NULL, NULL, NULL, &err, &status, &gerr) ||
        !g_spawn_check_wait_status(status, &gerr))
        fail("%s: %s %s", argv[0], gerr ? gerr->message : "", err ? err : "");
}

/* The disk arguments handover's command line gives a cache='none' qcow2
 * disk (qemu_command.c), so that every contender copies the same disks
 * the same way: file + format node, virtio-blk. */
static void
add_disk_args(GPtrArray *argv, const Disk *d, const char *path)
{
    g_ptr_array_add(argv, g_strdup("-blockdev"));
    g_ptr_array_add(argv, g_strdup_printf(
        "{\"driver\":\"file\",\"filename\":\"%s\",\"node-name\":\"drive-%s-file\","
        "\"auto-read-only\":true,\"discard\":\"unmap\",\"aio\":\"native\","
        "\"cache\":{\"direct\":true,\"no-flush\":false}}", path, d->target));
    g_ptr_array_add(argv, g_strdup("-blockdev"));
    g_ptr_array_add(argv, g_strdup_printf(
        "{\"node-name\":\"drive-%s-fmt\",\"driver\":\"qcow2\",\"file\":\"drive-%s-file\","
        "\"read-only\":false,\"cache\":{\"direct\":true,\"no-flush\":false}}",
        d->target, d->target));
    g_ptr_array_add(argv, g_strdup("-device"));
    g_ptr_array_add(argv, g_strdup_printf(
        "virtio-blk-pci,drive=drive-%s-fmt,id=disk-%s,write-cache=on", d->target, d->target));
}

typedef struct {
    const char *kernel; /* NULL: firmware guest */
    const char *initrd;
    const char *append;
} Boot;

static GPtrArray *
common_args(const char *mem, const char *machine, const Boot *boot, const char *serial)
{
    GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);

    g_ptr_array_add(argv, g_strdup("-machine"));
    g_ptr_array_add(argv, g_strdup(machine));
    g_ptr_array_add(argv, g_strdup("-m"));
    g_ptr_array_add(argv, g_strdup(mem));
    g_ptr_array_add(argv, g_strdup("-smp"));
    g_ptr_array_add(argv, g_strdup("1"));
    g_ptr_array_add(argv, g_strdup("-cpu"));
    g_ptr_array_add(argv, g_strdup("qemu64"));
    if (boot->kernel) {
        g_ptr_array_add(argv, g_strdup("-kernel"));
        g_ptr_array_add(argv, g_strdup(boot->kernel));
    }
    if (boot->initrd) {
        g_ptr_array_add(argv, g_strdup("-initrd"));
        g_ptr_array_add(argv, g_strdup(boot->initrd));
    }
    if (boot->append) {
        g_ptr_array_add(argv, g_strdup("-append"));
        g_ptr_array_add(argv, g_strdup(boot->append));
    }
    /* As handover's command line gives a <serial type='file'> port 0. */
    if (serial) {
        g_auto(GStrv) parts = g_strsplit(serial, ",", -1);
        g_autofree char *esc = g_strjoinv(",,", parts); /* QEMU's comma escape */

        g_ptr_array_add(argv, g_strdup("-chardev"));
        g_ptr_array_add(argv, g_strdup_printf("file,id=charserial0,path=%s", esc));
        g_ptr_array_add(argv, g_strdup("-device"));
        g_ptr_array_add(argv, g_strdup("isa-serial,chardev=charserial0,id=serial0,index=0"));
    }
    return argv;
}

static json_object *
inet_addr(int port, bool legacy)
{
    json_object *addr = json_object_new_object();
    json_object *data = json_object_new_object();
    g_autofree char *p = g_strdup_printf("%d", port);

    ho_json_add_string(data, "host", "127.0.0.1");
    ho_json_add_string(data, "port", p);
    if (legacy) {
        ho_json_add_string(addr, "type", "inet");
        return ho_json_add(addr, "data", data);
    }
    json_object_put(addr);
    ho_json_add_string(data, "type", "inet");
    return data;
}

static int
free_port(void)
{
    int port = 0;
    int fd = ho_socket_tcp_listen("127.0.0.1", 0, 1, &port);

    if (fd < 0)
        fail("cannot find a free port: %s", ho_error_last_message());
    close(fd);
    return port;
}

static gint64
node_size(json_object *nodes, const char *node)
{
    for (size_t i = 0; i < json_object_array_length(nodes); i++) {
        json_object *n = json_object_array_get_idx(nodes, i);
        json_object *v;

        if (json_object_object_get_ex(n, "node-name", &v) &&
            g_str_equal(json_object_get_string(v), node) &&
            json_object_object_get_ex(n, "image", &v) &&
            json_object_object_get_ex(v, "virtual-size", &v))
            return json_object_get_int64(v);
    }
    fail("src: no virtual size for node %s", node);
}

static double
tv_ms(struct timeval tv)
{
    return tv.tv_sec * 1000.0 + tv.tv_usec / 1000.0;
}

/* A scale batch: every driver has its source guest running; the bench
 * writes one byte per driver into the fifo to start them together. */
static void
wait_go(const char *path)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    gint64 deadline = g_get_monotonic_time() + 120 * G_USEC_PER_SEC;
    struct pollfd pfd;
    char byte;

    if (fd < 0)
        fail("cannot open %s: %s", path, g_strerror(errno));
    pfd.fd = fd;
    pfd.events = POLLIN;
    for (;;) {
        gint64 left = (deadline - g_get_monotonic_time()) / 1000;
        ssize_t n;

        pfd.revents = 0;
        if (left <= 0 || poll(&pfd, 1, (int)left) == 0)
            fail("no go from %s within 120 s", path);
        n = read(fd, &byte, 1);
        if (n == 1)
            break;
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            fail("cannot read %s: %s", path, g_strerror(errno));
        if (n == 0)
            g_usleep(1000); /* the writer came and went without our byte */
    }
    close(fd);
}

int
main(int argc, char **argv)
{
    static const char *const src_caps[] = {"events", "pause-before-switchover", NULL};
    static const char *const dst_caps[] = {"events", "late-block-activate", NULL};
    g_autofree char *qemu_name = NULL;
    g_autofree char *mem = NULL;
    g_autofree char *machine = NULL;
    g_autofree char *dst_dir = NULL;
    g_autofree char *record = NULL;
    g_auto(GStrv) src_disks = NULL;
    gboolean verify = FALSE;
    gboolean keep_dst = FALSE;
    gboolean nbd_qemu_listener = FALSE;
    gint64 mirror_buf_size = 4 * 1024 * 1024;
    gint64 stream_buffer_opt = -1;
    int stream_buffer;
    bool stream_listener_ok;
    int stream_lfd = -1;
    int port_base = 0;
    g_autofree char *accel = NULL;
    g_autofree char *kernel = NULL;
    g_autofree char *initrd = NULL;
    g_autofree char *append = NULL;
    g_autofree char *src_serial = NULL;
    g_autofree char *dst_serial = NULL;
    g_autofree char *src_ready = NULL;
    g_autofree char *dst_ready = NULL;
    g_autofree char *ready_file = NULL;
    g_autofree char *go = NULL;
    Boot boot = {0};
    g_autoptr(GOptionContext) ctx = g_option_context_new("- the physical limit of a migration");
    g_autoptr(GError) gerr = NULL;
    g_autoptr(QemuRecorder) rec = NULL;
    g_autoptr(GPtrArray) src_args = NULL;
    g_autoptr(GPtrArray) dst_args = NULL;
    g_autofree char *uri = NULL;
    json_object *nodes, *args, *out;
    const TestQemuBinary *bin;
    Disk disks[MAX_DISKS] = {{0}};
    guint n_disks;
    Side src = {0}, dst = {0};
    int pending = 0, port, nbd_port;
    gint64 t0, t_end;
    struct rusage ru;
    GOptionEntry entries[] = {
        {"qemu", 0, 0, G_OPTION_ARG_STRING, &qemu_name,
         "QEMU on both sides: qemu-7.2, qemu-10.0", "Q"},
        {"src-disk", 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &src_disks,
         "a source qcow2 image (vda, vdb, ...)", "FILE"},
        {"dst-dir", 0, 0, G_OPTION_ARG_FILENAME, &dst_dir,
         "where the destination images are created", "DIR"},
        {"record", 0, 0, G_OPTION_ARG_FILENAME, &record, "flight recording to write", "FILE"},
        {"mem", 0, 0, G_OPTION_ARG_STRING, &mem, "guest RAM in MiB (512)", "MIB"},
        {"machine", 0, 0, G_OPTION_ARG_STRING, &machine, "machine type (pc)", "TYPE"},
        {"verify", 0, 0, G_OPTION_ARG_NONE, &verify,
         "compare the images afterwards (qemu-img compare)", NULL},
        {"port-base", 0, 0, G_OPTION_ARG_INT, &port_base, "migration on this port, NBD on the next "
         "(default: free ports; give distinct bases to drivers run at once)", "PORT"},
        {"nbd-qemu-listener", 0, 0, G_OPTION_ARG_NONE, &nbd_qemu_listener,
         "let the destination QEMU listen for NBD itself (Nagle on in QEMU 7.2), instead of "
         "passing it a listening socket with Nagle off as handover does", NULL},
        {"mirror-buf-size", 0, 0, G_OPTION_ARG_INT64, &mirror_buf_size,
         "each mirror's buf-size in bytes (default 4194304, handoverd's "
         "migration_mirror_buf_size; 0: QEMU's own)", "BYTES"},
        {"stream-buffer", 0, 0, G_OPTION_ARG_INT64, &stream_buffer_opt,
         "the migration stream's receive (destination) and send (source) socket buffers in "
         "bytes, as handoverd's migration_stream_buffer (default 32768, what handoverd "
         "picks over loopback; 0: the kernel's)",
         "BYTES"},
        {"keep-dst", 0, 0, G_OPTION_ARG_NONE, &keep_dst,
         "keep the destination images (DIR/minimal-vda.qcow2, ...)", NULL},
        {"accel", 0, 0, G_OPTION_ARG_STRING, &accel, "kvm or tcg (default: kvm when it works)",
         "ACCEL"},
        {"kernel", 0, 0, G_OPTION_ARG_FILENAME, &kernel, "boot this kernel (-kernel)", "FILE"},
        {"initrd", 0, 0, G_OPTION_ARG_FILENAME, &initrd, "its initramfs (-initrd)", "FILE"},
        {"append", 0, 0, G_OPTION_ARG_STRING, &append, "its command line (-append)", "CMDLINE"},
        {"src-serial", 0, 0, G_OPTION_ARG_FILENAME, &src_serial,
         "the source's serial port 0 writes this file", "FILE"},
        {"dst-serial", 0, 0, G_OPTION_ARG_FILENAME, &dst_serial,
         "the destination's serial port 0 writes this file", "FILE"},
        {"src-ready", 0, 0, G_OPTION_ARG_STRING, &src_ready,
         "before the timed part, wait for a line with this prefix in --src-serial", "PREFIX"},
        {"dst-ready", 0, 0, G_OPTION_ARG_STRING, &dst_ready,
         "after it, wait for a line with this prefix in --dst-serial", "PREFIX"},
        {"ready-file", 0, 0, G_OPTION_ARG_FILENAME, &ready_file,
         "once the source guest runs (before the timed part), write its QEMU's pid to FILE",
         "FILE"},
        {"go", 0, 0, G_OPTION_ARG_FILENAME, &go,
         "then start the timed part only when a byte can be read from this fifo (bounded: "
         "120 s): a batch of drivers starts its migrations together", "FIFO"},
        {NULL}};

    g_option_context_add_main_entries(ctx, entries, NULL);
    if (!g_option_context_parse(ctx, &argc, &argv, &gerr)) {
        g_printerr("minimal: %s\n", gerr->message);
        return 2;
    }
    if (!qemu_name || !src_disks || !*src_disks || !dst_dir || !record) {
        g_printerr("minimal: --qemu, --src-disk, --dst-dir and --record are required\n");
        return 2;
    }
    if (!mem)
        mem = g_strdup("512");
    if (!machine)
        machine = g_strdup("pc");
    if (!accel)
        accel = g_strdup(test_qemu_accel(NULL));
    if (mirror_buf_size < 0 || mirror_buf_size > (gint64)1024 * 1024 * 1024) {
        g_printerr("minimal: --mirror-buf-size %" G_GINT64_FORMAT
                   ": expected bytes from 0 to 1073741824\n",
                   mirror_buf_size);
        return 2;
    }
    if (stream_buffer_opt > (gint64)64 * 1024 * 1024) {
        g_printerr("minimal: --stream-buffer %" G_GINT64_FORMAT
                   ": expected bytes from 0 to 67108864\n",
                   stream_buffer_opt);
        return 2;
    }
    stream_buffer = stream_buffer_opt < 0 ? 32768 : (int)stream_buffer_opt;
    /* QEMU 8.2 and later take no listening socket as fd: the driver
     * accepts the stream for the destination, as handoverd does. */
    stream_listener_ok = g_str_equal(qemu_name, "qemu-7.2");
    if ((src_ready && !src_serial) || (dst_ready && !dst_serial)) {
        g_printerr("minimal: --src-ready needs --src-serial, --dst-ready --dst-serial\n");
        return 2;
    }
    boot.kernel = kernel;
    boot.initrd = initrd;
    boot.append = append;
    n_disks = g_strv_length(src_disks);
    if (n_disks > MAX_DISKS)
        fail("at most %d disks", MAX_DISKS);
    ho_log_init();
    bin = test_qemu_binary(qemu_name);
    if (!bin || !bin->binary)
        fail("%s is not available%s%s", qemu_name, bin ? ": " : "", bin ? bin->missing : "");
    if (!(rec = qemu_recorder_open(record)))
        fail("%s", ho_error_last_message());

    for (guint i = 0; i < n_disks; i++) {
        g_autofree char *base = NULL;

        disks[i].target = g_strdup_printf("vd%c", 'a' + i);
        disks[i].src_path = g_strdup(src_disks[i]);
        base = g_strdup_printf("minimal-%s.qcow2", disks[i].target);
        disks[i].dst_path = g_build_filename(dst_dir, base, NULL);
    }

    /* The guest, running on the source (not timed). */
    src_args = common_args(mem, machine, &boot, src_serial);
    for (guint i = 0; i < n_disks; i++)
        add_disk_args(src_args, &disks[i], disks[i].src_path);
    start_side(&src, "src", bin, accel, src_args, rec);
    if (src_ready)
        wait_serial_line(src_serial, src_ready, "src");
    if (port_base > 0 && port_base < 65535) {
        port = port_base;
        nbd_port = port_base + 1;
    } else {
        port = free_port();
        nbd_port = free_port();
    }
    uri = g_strdup_printf("tcp:127.0.0.1:%d", port);
    if (ready_file) {
        /* The source QEMU's pid: bench/run waits for its vCPUs to idle. */
        g_autofree char *pid = g_strdup_printf("%d\n", (int)src.proc->pid);

        if (!g_file_set_contents(ready_file, pid, -1, &gerr))
            fail("%s", gerr->message);
    }
    if (go)
        wait_go(go);

    /* ---- timed from here ---- */
    t0 = ho_time_now_us();
    qemu_recorder_mark(rec, "src", "open", "begin");

    /* Begin: the disks' virtual sizes; the destination images. */
    args = json_object_new_object();
    nodes = call(&src, "query-named-block-nodes", ho_json_add_bool(args, "flat", true));
    for (guint i = 0; i < n_disks; i++) {
        g_autofree char *node = g_strdup_printf("drive-%s-fmt", disks[i].target);
        g_autofree char *size = NULL;
        const char *create[] = {"qemu-img", "create", "-q", "-f", "qcow2", disks[i].dst_path,
                                NULL, NULL};

        disks[i].size = node_size(nodes, node);
        size = g_strdup_printf("%" G_GINT64_FORMAT, disks[i].size);
        create[6] = size;
        run_tool(create);
    }
    json_object_put(nodes);

    /* Prepare (dst), pipelined. */
    dst_args = common_args(mem, machine, &boot, dst_serial);
    for (guint i = 0; i < n_disks; i++)
        add_disk_args(dst_args, &disks[i], disks[i].dst_path);
    g_ptr_array_add(dst_args, g_strdup("-S"));
    g_ptr_array_add(dst_args, g_strdup("-incoming"));
    g_ptr_array_add(dst_args, g_strdup("defer"));
    start_side(&dst, "dst", bin, accel, dst_args, rec);
    send_async(&dst, "migrate-set-capabilities", caps_args(dst_caps), &pending);
    if (nbd_qemu_listener) {
        args = json_object_new_object();
        send_async(&dst, "nbd-server-start",
                   ho_json_add(args, "addr", inet_addr(nbd_port, true)), &pending);
    } else {
        /* As handover: the listening socket bound here with Nagle off
         * (accepted connections inherit it), passed with getfd. */
        int lfd = ho_socket_tcp_listen("127.0.0.1", nbd_port, 16, NULL);

        if (lfd < 0 || ho_socket_set_nodelay(lfd) < 0)
            fail("NBD listener: %s", ho_error_last_message());
        pending += 2;
        qemu_monitor_json_getfd(dst.mon, "nbd", lfd, pending_done, &pending);
        close(lfd);
        qemu_monitor_json_nbd_server_start_fd(dst.mon, "nbd", pending_done, &pending);
    }
    for (guint i = 0; i < n_disks; i++) {
        g_autofree char *node = g_strdup_printf("drive-%s-fmt", disks[i].target);

        args = json_object_new_object();
        ho_json_add_string(args, "type", "nbd");
        ho_json_add_string(args, "id", node);
        ho_json_add_string(args, "node-name", node);
        ho_json_add_string(args, "name", node);
        ho_json_add_bool(args, "writable", true);
        send_async(&dst, "block-export-add", args, &pending);
    }
    args = json_object_new_object();
    if (stream_buffer > 0) {
        /* As handover: the listening socket bound here with a fixed
         * receive buffer (accepted connections inherit it); QEMU 7.2
         * listens on it (getfd), a later one gets the connection (below). */
        stream_lfd = ho_socket_tcp_listen("127.0.0.1", port, 1, NULL);
        if (stream_lfd < 0 || ho_socket_set_buffers(stream_lfd, 0, stream_buffer) < 0)
            fail("migration listener: %s", ho_error_last_message());
        if (stream_listener_ok) {
            pending++;
            qemu_monitor_json_getfd(dst.mon, "migration-stream", stream_lfd, pending_done,
                                    &pending);
            close(stream_lfd);
            stream_lfd = -1;
            send_async(&dst, "migrate-incoming",
                       ho_json_add_string(args, "uri", "tcp:fd:migration-stream"), &pending);
        } else {
            json_object_put(args);
        }
    } else {
        send_async(&dst, "migrate-incoming", ho_json_add_string(args, "uri", uri), &pending);
    }
    /* The source's migration settings go meanwhile (they do not depend on
     * the destination). */
    send_async(&src, "migrate-set-capabilities", caps_args(src_caps), &pending);
    args = json_object_new_object();
    ho_json_add_int64(args, "max-bandwidth", (int64_t)UNLIMITED_BANDWIDTH);
    send_async(&src, "migrate-set-parameters", args, &pending);
    wait_pending(&pending);

    /* Mirror (src): all disks at once, all READY. */
    for (guint i = 0; i < n_disks; i++) {
        const char *t = disks[i].target;
        g_autofree char *node = g_strdup_printf("migration-%s-storage", t);
        g_autofree char *exp = g_strdup_printf("drive-%s-fmt", t);
        g_autofree char *job = g_strdup_printf("mirror-%s", t);

        args = json_object_new_object();
        ho_json_add_string(args, "driver", "nbd");
        ho_json_add_string(args, "node-name", node);
        ho_json_add(args, "server", inet_addr(nbd_port, false));
        ho_json_add_string(args, "export", exp);
        send_async(&src, "blockdev-add", args, &pending);
        args = json_object_new_object();
        ho_json_add_string(args, "job-id", job);
        ho_json_add_string(args, "device", exp);
        ho_json_add_string(args, "target", node);
        ho_json_add_string(args, "sync", "full");
        if (mirror_buf_size > 0)
            ho_json_add_int64(args, "buf-size", mirror_buf_size);
        send_async(&src, "blockdev-mirror", args, &pending);
    }
    wait_pending(&pending);
    for (guint i = 0; i < n_disks; i++) {
        g_autofree char *job = g_strdup_printf("mirror-%s", disks[i].target);

        need_event(&src, "BLOCK_JOB_READY", "device", job);
    }

    /* Perform (src). */
    args = json_object_new_object();
    if (stream_buffer > 0) {
        /* The stream connected here with the matching send buffer, Nagle
         * off, passed with getfd (not timed apart: it is part of the
         * migration, as in handover). */
        int cfd = ho_socket_tcp_connect("127.0.0.1", port);

        if (cfd < 0 || ho_socket_set_nodelay(cfd) < 0 ||
            ho_socket_set_buffers(cfd, stream_buffer, 0) < 0)
            fail("migration stream: %s", ho_error_last_message());
        if (stream_lfd >= 0) {
            /* The handshake is done: accept returns at once. */
            int afd = accept(stream_lfd, NULL, NULL);
            json_object *dargs = json_object_new_object();

            if (afd < 0)
                fail("migration stream: accept: %s", g_strerror(errno));
            close(stream_lfd);
            stream_lfd = -1;
            pending++;
            qemu_monitor_json_getfd(dst.mon, "migration-stream", afd, pending_done, &pending);
            close(afd);
            send_async(&dst, "migrate-incoming",
                       ho_json_add_string(dargs, "uri", "fd:migration-stream"), &pending);
        }
        pending++;
        qemu_monitor_json_getfd(src.mon, "migration-stream", cfd, pending_done, &pending);
        close(cfd);
        send_async(&src, "migrate", ho_json_add_string(args, "uri", "fd:migration-stream"),
                   &pending);
    } else {
        send_async(&src, "migrate", ho_json_add_string(args, "uri", uri), &pending);
    }
    need_event(&src, "MIGRATION", "status", "pre-switchover");
    for (guint i = 0; i < n_disks; i++) {
        g_autofree char *job = g_strdup_printf("mirror-%s", disks[i].target);

        args = json_object_new_object();
        send_async(&src, "block-job-cancel", ho_json_add_string(args, "device", job), &pending);
    }
    for (guint i = 0; i < n_disks; i++) {
        g_autofree char *job = g_strdup_printf("mirror-%s", disks[i].target);

        need_event(&src, "BLOCK_JOB_COMPLETED", "device", job);
    }
    args = json_object_new_object();
    send_async(&src, "migrate-continue", ho_json_add_string(args, "state", "pre-switchover"),
               &pending);
    send_async(&dst, "nbd-server-stop", NULL, &pending);

    /* Finish (dst): cont once both sides completed. */
    need_event(&src, "MIGRATION", "status", "completed");
    need_event(&dst, "MIGRATION", "status", "completed");
    send_async(&dst, "cont", NULL, &pending);

    /* Confirm (src): the statistics (QEMU may report downtime 0 at first),
     * the NBD client nodes, quit. */
    for (int tries = 0; tries < 3; tries++) {
        json_object *qm = call(&src, "query-migrate", NULL);
        json_object *v;
        bool have = json_object_object_get_ex(qm, "downtime", &v) && json_object_get_int64(v) > 0;

        json_object_put(qm);
        if (have)
            break;
    }
    for (guint i = 0; i < n_disks; i++) {
        g_autofree char *node = g_strdup_printf("migration-%s-storage", disks[i].target);

        args = json_object_new_object();
        send_async(&src, "blockdev-del", ho_json_add_string(args, "node-name", node), &pending);
    }
    wait_pending(&pending);
    quit_side(&src);
    t_end = ho_time_now_us();
    /* ---- end of the timed part ---- */

    if (dst_ready)
        wait_serial_line(dst_serial, dst_ready, "dst");
    if (verify || dst_ready)
        json_object_put(call(&dst, "stop", NULL));
    if (verify) {
        for (guint i = 0; i < n_disks; i++) {
            const char *cmp[] = {"qemu-img", "compare", "-q", "-U", disks[i].src_path,
                                 disks[i].dst_path, NULL};

            run_tool(cmp);
        }
    }
    quit_side(&dst);
    g_clear_pointer(&src.proc, test_qemu_free);
    g_clear_pointer(&dst.proc, test_qemu_free);
    g_clear_pointer(&rec, qemu_recorder_unref);

    if (getrusage(RUSAGE_SELF, &ru) < 0)
        fail("getrusage: %s", g_strerror(errno));
    out = json_object_new_object();
    json_object_object_add(out, "wall_ms", json_object_new_double((t_end - t0) / 1000.0));
    json_object_object_add(out, "t0_us", json_object_new_int64(t0));
    json_object_object_add(out, "cpu_ms",
                           json_object_new_double(tv_ms(ru.ru_utime) + tv_ms(ru.ru_stime)));
    json_object_object_add(out, "peak_rss_kib", json_object_new_int64(ru.ru_maxrss));
    json_object_object_add(out, "verified", json_object_new_boolean(verify));
    printf("%s\n", json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN));
    json_object_put(out);
    for (guint i = 0; i < n_disks; i++) {
        if (!keep_dst)
            (void)unlink(disks[i].dst_path);
        g_free(disks[i].target);
        g_free(disks[i].src_path);
        g_free(disks[i].dst_path);
    }
    g_ptr_array_unref(src.events);
    g_ptr_array_unref(dst.events);
    return 0;
}
