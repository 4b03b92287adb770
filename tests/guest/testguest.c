/*
 * The Linux test guest for real-QEMU tests: see testguest.h and
 * docs/test-guest.md.
 *
 * The console is a UNIX socket we listen on before QEMU starts; QEMU
 * connects to it as a client at startup, so no output is lost and nothing
 * has to wait for a socket file to appear. Lines are collected from a
 * g_unix_fd_add() source on the default main context, which is the
 * context every wait in the tests iterates.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4 */
#endif
#ifndef HO_LOG_MODULE
#define HO_LOG_MODULE "tests.guest"
#endif

#include "guest/testguest.h"

#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <json-c/json.h>
#include <stdio.h>
#include <poll.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ho_error.h"
#include "ho_socket.h"
#include "testutils.h"

/* Lines kept; when exceeded the oldest half is dropped. */
#define CONSOLE_MAX_LINES 100000
/* A line longer than this is cut (a console line never is). */
#define CONSOLE_MAX_LINE 4096

static TestGuestImage guest_image;
static char *guest_image_why;

static void
guest_env_apply(const char *text, TestGuestImage *img)
{
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    char **l;

    for (l = lines; *l; l++) {
        const char *eq = strchr(*l, '=');
        g_autofree char *key = NULL;
        char **field = NULL;

        if (!eq)
            continue;
        key = g_strndup(*l, eq - *l);
        if (g_str_equal(key, "KERNEL"))
            field = &img->kernel;
        else if (g_str_equal(key, "INITRD"))
            field = &img->initrd;
        else if (g_str_equal(key, "KERNEL_PACKAGE"))
            field = &img->kernel_package;
        else if (g_str_equal(key, "BUSYBOX_PACKAGE"))
            field = &img->busybox_package;
        if (field) {
            g_free(*field);
            *field = g_strdup(eq + 1);
        }
    }
}

static bool
guest_image_complete(const TestGuestImage *img)
{
    return img->kernel && img->initrd && g_file_test(img->kernel, G_FILE_TEST_IS_REGULAR) &&
           g_file_test(img->initrd, G_FILE_TEST_IS_REGULAR);
}

static void
guest_image_build(void)
{
    const char *env = g_getenv("HANDOVER_GUEST_DIR");
    g_autofree char *dir =
        env && *env ? g_strdup(env) : g_build_filename(test_srcdir(), ".guest", NULL);
    g_autofree char *script =
        g_build_filename(test_srcdir(), "scripts", "build-test-guest.sh", NULL);
    g_autofree char *envfile = g_build_filename(dir, "guest.env", NULL);
    g_autofree char *out = NULL;
    g_autofree char *errout = NULL;
    g_autofree char *old = NULL;
    g_autoptr(GError) err = NULL;
    const char *argv[] = {"bash", script, dir, NULL};
    int status = 0;
    gint64 start = g_get_monotonic_time();

    guest_image.dir = g_strdup(dir);
    if (g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, &errout,
                     &status, &err) &&
        g_spawn_check_wait_status(status, &err)) {
        guest_env_apply(out, &guest_image);
        if (guest_image_complete(&guest_image)) {
            gint64 ms = (g_get_monotonic_time() - start) / 1000;

            if (ms > 1000)
                g_test_message("built the test guest in %" G_GINT64_FORMAT " ms", ms);
            return;
        }
        guest_image_why = g_strdup_printf("%s named no kernel and initrd:\n%s", script, out);
        return;
    }
    /* No network, say: an earlier build still boots. */
    if (g_file_get_contents(envfile, &old, NULL, NULL)) {
        guest_env_apply(old, &guest_image);
        if (guest_image_complete(&guest_image)) {
            g_test_message("%s failed, using the guest built earlier in %s", script, dir);
            return;
        }
    }
    guest_image_why =
        g_strdup_printf("the test guest is not built and %s failed (%s):\n%s", script,
                        err ? err->message : "no output", errout ? errout : "");
}

const TestGuestImage *
test_guest_image(const char **why)
{
    static gsize once;

    if (g_once_init_enter(&once)) {
        guest_image_build();
        g_once_init_leave(&once, 1);
    }
    if (guest_image_why) {
        if (why)
            *why = guest_image_why;
        return NULL;
    }
    return &guest_image;
}

const TestGuestImage *
test_guest_image_need(void)
{
    const char *why = NULL;
    const TestGuestImage *img = test_guest_image(&why);

    if (!img)
        test_qemu_missing("no test guest: %s", why);
    return img;
}

struct _TestGuestConsole {
    char *sock_path;
    char *chardev;
    FILE *log;
    int listen_fd;
    guint listen_id;
    int fd;
    guint read_id;
    GString *partial;
    GPtrArray *lines; /* complete lines, oldest first */
    guint dropped;    /* lines dropped from the front of lines */
    bool closed;
    bool panicked;
    const char *status;
};

static void
console_add_line(TestGuestConsole *con, const char *text, gsize len)
{
    char *line = g_strndup(text, len);
    gsize n = strlen(line);

    /* The guest's tty turns "\n" into "\r\n". */
    while (n && line[n - 1] == '\r')
        line[--n] = '\0';
    if (strstr(line, "Kernel panic"))
        con->panicked = true;
    g_ptr_array_add(con->lines, line);
    if (con->lines->len > CONSOLE_MAX_LINES) {
        g_ptr_array_remove_range(con->lines, 0, CONSOLE_MAX_LINES / 2);
        con->dropped += CONSOLE_MAX_LINES / 2;
    }
}

static void
console_feed(TestGuestConsole *con, const char *buf, gsize len)
{
    gsize i;

    if (con->log) {
        fwrite(buf, 1, len, con->log);
        fflush(con->log);
    }
    for (i = 0; i < len; i++) {
        if (buf[i] == '\n' || con->partial->len >= CONSOLE_MAX_LINE) {
            console_add_line(con, con->partial->str, con->partial->len);
            g_string_truncate(con->partial, 0);
            if (buf[i] == '\n')
                continue;
        }
        g_string_append_c(con->partial, buf[i]);
    }
}

static void
console_close(TestGuestConsole *con)
{
    if (con->read_id)
        g_source_remove(con->read_id);
    con->read_id = 0;
    if (con->fd >= 0)
        close(con->fd);
    con->fd = -1;
    if (con->partial->len) {
        console_add_line(con, con->partial->str, con->partial->len);
        g_string_truncate(con->partial, 0);
    }
    con->closed = true;
}

/* Read until the socket is empty; false once it is closed. */
static bool
console_read(TestGuestConsole *con)
{
    char buf[8192];

    while (con->fd >= 0) {
        ssize_t n = read(con->fd, buf, sizeof(buf));

        if (n > 0) {
            console_feed(con, buf, n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return true;
        /* EOF or an error: QEMU is gone or closed the chardev. */
        return false;
    }
    return false;
}

static gboolean
console_readable(gint fd, GIOCondition cond, gpointer opaque)
{
    TestGuestConsole *con = opaque;

    if (console_read(con))
        return G_SOURCE_CONTINUE;
    con->read_id = 0; /* removed by returning G_SOURCE_REMOVE */
    console_close(con);
    return G_SOURCE_REMOVE;
}

static gboolean
console_accept(gint fd, GIOCondition cond, gpointer opaque)
{
    TestGuestConsole *con = opaque;
    int conn = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

    if (conn < 0) {
        if (errno == EINTR || errno == EAGAIN)
            return G_SOURCE_CONTINUE;
        g_error("cannot accept the guest console connection: %s", g_strerror(errno));
    }
    /* One QEMU per console: stop listening. */
    con->listen_id = 0;
    close(con->listen_fd);
    con->listen_fd = -1;
    con->fd = conn;
    con->read_id = g_unix_fd_add(conn, G_IO_IN | G_IO_HUP | G_IO_ERR, console_readable, con);
    return G_SOURCE_REMOVE;
}

TestGuestConsole *
test_guest_console_new(const char *dir)
{
    TestGuestConsole *con = g_new0(TestGuestConsole, 1);
    g_autofree char *log_path = g_build_filename(dir, "serial.log", NULL);

    con->fd = -1;
    con->partial = g_string_new(NULL);
    con->lines = g_ptr_array_new_with_free_func(g_free);
    con->status = "ok";
    con->sock_path = g_build_filename(dir, "serial.sock", NULL);
    con->listen_fd = ho_socket_unix_listen(con->sock_path, 0600, 1);
    if (con->listen_fd < 0)
        g_error("cannot listen on '%s': %s", con->sock_path, ho_error_last_message());
    if (ho_socket_set_nonblock(con->listen_fd, true) < 0)
        g_error("cannot make '%s' non-blocking: %s", con->sock_path, ho_error_last_message());
    con->listen_id = g_unix_fd_add(con->listen_fd, G_IO_IN, console_accept, con);
    con->log = fopen(log_path, "ae");
    con->chardev = g_strdup_printf("socket,id=serial0,path=%s", con->sock_path);
    return con;
}

void
test_guest_console_free(TestGuestConsole *con)
{
    if (!con)
        return;
    console_close(con);
    if (con->listen_id)
        g_source_remove(con->listen_id);
    if (con->listen_fd >= 0)
        close(con->listen_fd);
    if (con->log)
        fclose(con->log);
    (void)unlink(con->sock_path);
    g_free(con->sock_path);
    g_free(con->chardev);
    g_string_free(con->partial, TRUE);
    g_ptr_array_unref(con->lines);
    g_free(con);
}

const char *
test_guest_console_chardev(const TestGuestConsole *con)
{
    return con->chardev;
}

static gboolean
console_wait_timeout(gpointer opaque)
{
    bool *timed_out = opaque;

    *timed_out = true;
    return G_SOURCE_REMOVE;
}

const char *
test_guest_console_wait(TestGuestConsole *con, const char *prefix, guint *cursor, guint timeout_ms)
{
    GSource *timer = g_timeout_source_new(timeout_ms);
    const char *found = NULL;
    bool timed_out = false;

    g_source_set_callback(timer, console_wait_timeout, &timed_out, NULL);
    g_source_attach(timer, NULL);
    for (;;) {
        guint n = MAX(*cursor, con->dropped);

        for (; n < con->dropped + con->lines->len; n++) {
            const char *line = g_ptr_array_index(con->lines, n - con->dropped);

            if (g_str_has_prefix(line, prefix)) {
                found = line;
                *cursor = n + 1;
                break;
            }
        }
        if (found) {
            con->status = "ok";
            break;
        }
        if (con->panicked) {
            con->status = "kernel panic";
            break;
        }
        if (con->closed) {
            con->status = "closed";
            break;
        }
        if (timed_out) {
            con->status = "timeout";
            break;
        }
        g_main_context_iteration(NULL, TRUE);
    }
    g_source_destroy(timer);
    g_source_unref(timer);
    return found;
}

void
test_guest_console_drain(TestGuestConsole *con)
{
    if (con->fd >= 0 && !console_read(con))
        console_close(con);
}

guint
test_guest_console_lines(const TestGuestConsole *con)
{
    return con->dropped + con->lines->len;
}

const char *
test_guest_console_line(const TestGuestConsole *con, guint n)
{
    if (n < con->dropped || n >= con->dropped + con->lines->len)
        return NULL;
    return g_ptr_array_index(con->lines, n - con->dropped);
}

char *
test_guest_console_tail(const TestGuestConsole *con, guint n)
{
    GString *s = g_string_new(NULL);
    guint i = con->lines->len > n ? con->lines->len - n : 0;

    for (; i < con->lines->len; i++) {
        g_string_append(s, g_ptr_array_index(con->lines, i));
        g_string_append_c(s, '\n');
    }
    if (con->partial->len)
        g_string_append_printf(s, "%s (incomplete)\n", con->partial->str);
    return g_string_free(s, FALSE);
}

const char *
test_guest_console_status(const TestGuestConsole *con)
{
    return con->status;
}

char *
test_guest_cmdline(const TestQemuBinary *bin, const char *extra)
{
    /* QEMU 7.2's TCG: without pti=on the guest crashed or hung right after
     * a migration's switchover (DESIGN §6). */
    bool pti = bin && g_str_equal(bin->name, "qemu-7.2");

    return g_strdup_printf("console=ttyS0 quiet panic=-1%s%s%s", pti ? " pti=on" : "",
                           extra && *extra ? " " : "", extra ? extra : "");
}

char *
test_guest_domain_xml(const TestGuestDomain *d)
{
    g_autofree char *cmdline = test_guest_cmdline(d->bin, d->cmdline_extra);
    g_autofree char *uuid = d->uuid ? g_strdup(d->uuid) : g_uuid_string_random();
    const char *cache = d->cache_none ? " cache='none'" : "";
    g_autofree char *vdb = NULL;

    if (d->qcow2)
        vdb = g_strdup_printf("    <disk type='file' device='disk'>\n"
                              "      <driver name='qemu' type='qcow2'%s/>\n"
                              "      <source file='%s'/>\n"
                              "      <target dev='vdb' bus='virtio'/>\n"
                              "    </disk>\n",
                              cache, d->qcow2);
    return g_strdup_printf("<domain type='qemu'>\n"
                           "  <name>%s</name>\n"
                           "  <uuid>%s</uuid>\n"
                           "  <memory unit='MiB'>%u</memory>\n"
                           "  <vcpu>1</vcpu>\n"
                           "  <os>\n"
                           "    <type arch='x86_64' machine='pc'>hvm</type>\n"
                           "    <kernel>%s</kernel>\n"
                           "    <initrd>%s</initrd>\n"
                           "    <cmdline>%s</cmdline>\n"
                           "  </os>\n"
                           "  <on_reboot>destroy</on_reboot>\n"
                           "  <devices>\n"
                           "    <emulator>%s</emulator>\n"
                           "    <disk type='file' device='disk'>\n"
                           "      <driver name='qemu' type='raw'%s/>\n"
                           "      <source file='%s'/>\n"
                           "      <target dev='vda' bus='virtio'/>\n"
                           "    </disk>\n"
                           "%s"
                           "    <serial type='file'>\n"
                           "      <source path='%s' append='on'/>\n"
                           "    </serial>\n"
                           "  </devices>\n"
                           "</domain>\n",
                           d->name, uuid, d->memory_mib, d->image->kernel, d->image->initrd,
                           cmdline, d->emulator ? d->emulator : d->bin->binary, cache, d->disk,
                           vdb ? vdb : "", d->serial);
}

void
test_guest_add_args(GPtrArray *args, const TestGuestArgs *opts)
{
    const char *node = opts->disk_node ? opts->disk_node : "disk0";

    g_ptr_array_add(args, g_strdup("-machine"));
    g_ptr_array_add(args, g_strdup("pc-i440fx-7.2"));
    g_ptr_array_add(args, g_strdup("-m"));
    g_ptr_array_add(args, g_strdup_printf("%u", opts->memory_mib ? opts->memory_mib : 256));
    g_ptr_array_add(args, g_strdup("-kernel"));
    g_ptr_array_add(args, g_strdup(opts->image->kernel));
    g_ptr_array_add(args, g_strdup("-initrd"));
    g_ptr_array_add(args, g_strdup(opts->image->initrd));
    g_ptr_array_add(args, g_strdup("-append"));
    g_ptr_array_add(args, test_guest_cmdline(opts->bin, opts->cmdline_extra));
    /* A reboot (panic=-1, or a triple fault) ends QEMU: a test sees it. */
    g_ptr_array_add(args, g_strdup("-no-reboot"));
    g_ptr_array_add(args, g_strdup("-chardev"));
    g_ptr_array_add(args, g_strdup(test_guest_console_chardev(opts->console)));
    g_ptr_array_add(args, g_strdup("-serial"));
    g_ptr_array_add(args, g_strdup("chardev:serial0"));
    if (opts->disk_path) {
        json_object *file = json_object_new_object();
        json_object *bd = json_object_new_object();
        g_autofree char *file_node = g_strdup_printf("%s-file", node);

        json_object_object_add(file, "driver", json_object_new_string("file"));
        json_object_object_add(file, "filename", json_object_new_string(opts->disk_path));
        json_object_object_add(file, "node-name", json_object_new_string(file_node));
        json_object_object_add(
            bd, "driver", json_object_new_string(opts->disk_format ? opts->disk_format : "raw"));
        json_object_object_add(bd, "node-name", json_object_new_string(node));
        json_object_object_add(bd, "file", file);
        g_ptr_array_add(args, g_strdup("-blockdev"));
        g_ptr_array_add(args, g_strdup(json_object_to_json_string_ext(
                                  bd, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)));
        json_object_put(bd);
        g_ptr_array_add(args, g_strdup("-device"));
        g_ptr_array_add(args, g_strdup_printf("virtio-blk-pci,drive=%s,id=vda", node));
    }
}

static char *
seqcheck_path(void)
{
    const char *builddir = g_getenv("HANDOVER_BUILDDIR");
    g_autofree char *self = NULL;
    g_autofree char *dir = NULL;

    if (builddir && *builddir)
        return g_build_filename(builddir, "tests", "guest", "seqcheck", NULL);
    /* Run by hand: the test programs live in <builddir>/tests. */
    self = g_file_read_link("/proc/self/exe", NULL);
    if (!self)
        return NULL;
    dir = g_path_get_dirname(self);
    return g_build_filename(dir, "guest", "seqcheck", NULL);
}

static bool
parse_field(const char *text, const char *key, guint64 *val)
{
    const char *p = strstr(text, key);
    char *end;

    if (!p)
        return false;
    p += strlen(key);
    if (!g_ascii_isdigit(*p))
        return false;
    *val = g_ascii_strtoull(p, &end, 10);
    return true;
}

bool
test_guest_seqcheck(const char *image, const char *const *extra_args, TestGuestSeqcheck *res)
{
    g_autofree char *path = seqcheck_path();
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autoptr(GError) err = NULL;
    g_autofree char *out = NULL;
    g_autofree char *errout = NULL;
    const char *const *a;
    int status = 0;

    memset(res, 0, sizeof(*res));
    res->status = -1;
    if (!path || !g_file_test(path, G_FILE_TEST_IS_EXECUTABLE)) {
        g_test_message("seqcheck not found at '%s' (build tests/guest/seqcheck)",
                       path ? path : "?");
        return false;
    }
    g_ptr_array_add(argv, path);
    for (a = extra_args; a && *a; a++)
        g_ptr_array_add(argv, (char *)*a);
    g_ptr_array_add(argv, (char *)image);
    g_ptr_array_add(argv, NULL);
    if (!g_spawn_sync(NULL, (char **)argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, &errout,
                      &status, &err)) {
        g_test_message("cannot run '%s': %s", path, err->message);
        return false;
    }
    res->output = g_strconcat(out, errout, NULL);
    if (!WIFEXITED(status)) {
        g_test_message("seqcheck died: %s", res->output);
        return false;
    }
    res->status = WEXITSTATUS(status);
    if (!parse_field(out, "max_seq=", &res->max_seq) ||
        !parse_field(out, "blocks=", &res->blocks) || !parse_field(out, "valid=", &res->valid)) {
        g_test_message("seqcheck printed no summary: %s", res->output);
        return false;
    }
    return true;
}

void
test_guest_seqcheck_ok(const char *image, const char *format, guint64 min_seq,
                       TestGuestSeqcheck *res)
{
    g_autofree char *min = g_strdup_printf("%" G_GUINT64_FORMAT, min_seq);
    const char *extra[5] = {"--min-seq", min, NULL, NULL, NULL};

    if (format) {
        extra[2] = "--format";
        extra[3] = format;
    }
    if (!test_guest_seqcheck(image, extra, res))
        g_error("seqcheck on '%s' did not run", image);
    if (res->status != 0)
        g_error("seqcheck on '%s' (min seq %s) exited %d:\n%s", image, min, res->status,
                res->output);
}

void
test_guest_seqcheck_clear(TestGuestSeqcheck *res)
{
    g_clear_pointer(&res->output, g_free);
}

guint64
test_guest_seq_of(const char *line)
{
    const char *p;

    if (!line || !g_str_has_prefix(line, "HANDOVER-SEQ "))
        return 0;
    p = line + strlen("HANDOVER-SEQ ");
    if (!g_ascii_isdigit(*p))
        return 0;
    return g_ascii_strtoull(p, NULL, 10);
}

/* ---- the console as a file ---- */

struct _TestGuestFileConsole {
    char *path;
    int fd;  /* the file, read as it grows */
    int ifd; /* inotify on it */
    GString *partial;
    GPtrArray *lines; /* complete lines, '\r' stripped */
};

TestGuestFileConsole *
test_guest_file_console_new(const char *path)
{
    TestGuestFileConsole *c = g_new0(TestGuestFileConsole, 1);

    c->path = g_strdup(path);
    /* Created empty here: QEMU appends (append='on'). */
    g_assert_true(g_file_set_contents(path, "", 0, NULL));
    c->fd = open(path, O_RDONLY | O_CLOEXEC);
    g_assert_cmpint(c->fd, >=, 0);
    c->ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    g_assert_cmpint(c->ifd, >=, 0);
    g_assert_cmpint(inotify_add_watch(c->ifd, path, IN_MODIFY), >=, 0);
    c->partial = g_string_new(NULL);
    c->lines = g_ptr_array_new_with_free_func(g_free);
    return c;
}

void
test_guest_file_console_free(TestGuestFileConsole *c)
{
    if (!c)
        return;
    close(c->fd);
    close(c->ifd);
    g_string_free(c->partial, TRUE);
    g_ptr_array_unref(c->lines);
    g_free(c->path);
    g_free(c);
}

static void
file_console_read(TestGuestFileConsole *c)
{
    char buf[65536];
    ssize_t n;

    while ((n = read(c->fd, buf, sizeof(buf))) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n') {
                if (c->partial->len && c->partial->str[c->partial->len - 1] == '\r')
                    g_string_truncate(c->partial, c->partial->len - 1);
                g_ptr_array_add(c->lines, g_strdup(c->partial->str));
                g_string_truncate(c->partial, 0);
            } else if (buf[i] != '\0' && c->partial->len < CONSOLE_MAX_LINE) {
                g_string_append_c(c->partial, buf[i]);
            }
        }
    }
    g_assert_cmpint(n, ==, 0);
}

guint
test_guest_file_console_lines(TestGuestFileConsole *c)
{
    file_console_read(c);
    return c->lines->len;
}

const char *
test_guest_file_console_line(TestGuestFileConsole *c, guint n)
{
    g_assert_cmpuint(n, <, c->lines->len);
    return g_ptr_array_index(c->lines, n);
}

char *
test_guest_file_console_tail(TestGuestFileConsole *c, guint n)
{
    GString *s = g_string_new(NULL);
    guint i = c->lines->len > n ? c->lines->len - n : 0;

    for (; i < c->lines->len; i++)
        g_string_append_printf(s, "  %s\n", (char *)g_ptr_array_index(c->lines, i));
    return g_string_free(s, FALSE);
}

static void
file_console_check_line(TestGuestFileConsole *c, const char *line)
{
    if (g_str_has_prefix(line, "HANDOVER-RAM BAD") || strstr(line, "Kernel panic") ||
        g_str_has_prefix(line, "HANDOVER-GUEST error")) {
        g_autofree char *tail = test_guest_file_console_tail(c, 40);

        g_error("the guest printed '%s'; its console:\n%s", line, tail);
    }
}

const char *
test_guest_file_console_wait(TestGuestFileConsole *c, const char *prefix, guint *cursor,
                             guint timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;

    for (;;) {
        struct pollfd pfd = {.fd = c->ifd, .events = POLLIN};
        char evbuf[4096];
        gint64 left;

        file_console_read(c);
        for (; *cursor < c->lines->len; (*cursor)++) {
            const char *line = g_ptr_array_index(c->lines, *cursor);

            file_console_check_line(c, line);
            if (g_str_has_prefix(line, prefix)) {
                (*cursor)++;
                return line;
            }
        }
        left = (deadline - g_get_monotonic_time()) / 1000;
        if (left <= 0) {
            g_autofree char *tail = test_guest_file_console_tail(c, 40);

            g_error("no '%s' line on the guest console in %u ms; its end:\n%s", prefix, timeout_ms,
                    tail);
        }
        if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
            g_error("poll: %s", g_strerror(errno));
        while (read(c->ifd, evbuf, sizeof(evbuf)) > 0)
            ;
    }
}

guint64
test_guest_file_console_last_seq(TestGuestFileConsole *c)
{
    file_console_read(c);
    for (guint i = c->lines->len; i > 0; i--) {
        guint64 seq = test_guest_seq_of(g_ptr_array_index(c->lines, i - 1));

        if (seq)
            return seq;
    }
    return 0;
}

guint64
test_guest_file_console_wait_seq_above(TestGuestFileConsole *c, guint64 min, guint *cursor,
                                       guint timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;

    for (;;) {
        const char *line;
        guint64 seq;
        gint64 left = (deadline - g_get_monotonic_time()) / 1000;

        g_assert_cmpint(left, >, 0);
        line = test_guest_file_console_wait(c, "HANDOVER-SEQ ", cursor, (guint)left);
        seq = test_guest_seq_of(line);
        if (seq > min)
            return seq;
    }
}

void
test_guest_file_console_wait_up(TestGuestFileConsole *c, guint *cursor, guint boot_ms,
                                guint line_ms, const char *disk)
{
    (void)test_guest_file_console_wait(c, "HANDOVER-GUEST READY", cursor, boot_ms);
    if (disk) {
        const char *line = test_guest_file_console_wait(c, "HANDOVER-DISK start", cursor, line_ms);

        if (!strstr(line, disk))
            g_error("the workload writes elsewhere: %s", line);
    }
    (void)test_guest_file_console_wait(c, "HANDOVER-SEQ ", cursor, line_ms);
    (void)test_guest_file_console_wait(c, "HANDOVER-RAM ok", cursor, line_ms);
}

guint64
test_guest_ram_gen_of(const char *line)
{
    const char *p;

    if (!line || !g_str_has_prefix(line, "HANDOVER-RAM ok gen="))
        return 0;
    p = line + strlen("HANDOVER-RAM ok gen=");
    if (!g_ascii_isdigit(*p))
        return 0;
    return g_ascii_strtoull(p, NULL, 10);
}
