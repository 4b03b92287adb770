/*
 * Tests of the QMP transport (qemu_monitor.c) and the flight recorder.
 *
 * The monitor talks to a fake QEMU on the other end of a socketpair: most
 * tests play QEMU by hand from the test's own thread (write a line, iterate
 * the monitor's context, read what it sent), which lets them put bytes
 * exactly where a test wants them; the synchronous helpers block the
 * calling thread, so for them a small fake QEMU runs in a thread.
 */
#define _GNU_SOURCE /* memfd_create, accept4 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ho_error.h"
#include "ho_json.h"
#include "ho_log.h"
#include "ho_socket.h"
#include "qemu_monitor.h"
#include "qemu_recorder.h"
#include "testutils.h"

#define WAIT_MS 5000

#define GREETING                                                                                  \
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, "             \
    "\"package\": \"Debian 1:7.2+dfsg-7\"}, \"capabilities\": [\"oob\"]}}"

/* One fd received by the fake QEMU, with the byte range of the recvmsg()
 * that brought it (offsets from the start of the stream). */
typedef struct {
    int fd;
    size_t start;
    size_t end;
} RecvFd;

typedef struct {
    GMainContext *ctx; /* the context the monitor runs on */
    QemuMonitor *mon;
    int peer;        /* the fake QEMU's end */
    GString *in;     /* received from the monitor, not consumed yet */
    size_t in_base;  /* stream offset of in->str[0] */
    size_t received; /* stream offset of the end of in */
    bool eof;
    GArray *fds; /* RecvFd */
    int ready_calls;
    json_object *ready_greeting;
    int closed_calls;
    HoError *closed_err;
    int events;   /* event callbacks run */
    GString *log; /* callbacks in the order they ran */
    /* hooks run by the callbacks */
    const char *send_on_ready;
} Fake;

typedef struct {
    Fake *f;
    const char *tag;
    int calls;
    json_object *ret;
    HoError *err;
    bool unref_mon; /* drop the test's reference from inside the callback */
    bool close_mon; /* close the monitor from inside the callback */
} Reply;

/* ---- the fake QEMU, driven by hand ------------------------------------- */

static void
fake_ready_cb(QemuMonitor *mon, json_object *greeting, void *opaque)
{
    Fake *f = opaque;

    g_assert_true(mon == f->mon);
    f->ready_calls++;
    f->ready_greeting = greeting;
    g_string_append(f->log, "ready ");
    if (f->send_on_ready)
        qemu_monitor_send(mon, f->send_on_ready, NULL, -1, NULL, NULL);
}

static void
fake_closed_cb(QemuMonitor *mon, const HoError *err, void *opaque)
{
    Fake *f = opaque;

    g_assert_nonnull(err);
    f->closed_calls++;
    ho_error_free(f->closed_err);
    f->closed_err = ho_error_copy(err);
    g_string_append(f->log, "closed ");
}

static const QemuMonitorCallbacks fake_cbs = {
    .ready = fake_ready_cb,
    .closed = fake_closed_cb,
};

/* ctx NULL: the monitor runs on the thread-default context. */
static Fake *
fake_new(GMainContext *ctx)
{
    Fake *f = g_new0(Fake, 1);
    int sv[2];

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==, 0);
    f->ctx = ctx ? g_main_context_ref(ctx) : g_main_context_ref_thread_default();
    f->peer = sv[1];
    f->in = g_string_new(NULL);
    f->fds = g_array_new(FALSE, FALSE, sizeof(RecvFd));
    f->log = g_string_new(NULL);
    f->mon = qemu_monitor_new(sv[0], "test", ctx, &fake_cbs, f);
    g_assert_nonnull(f->mon);
    return f;
}

static void
fake_drain(Fake *f)
{
    while (g_main_context_iteration(f->ctx, FALSE))
        ;
}

static void
fake_free(Fake *f)
{
    guint i;

    qemu_monitor_unref(f->mon);
    if (f->peer >= 0)
        close(f->peer);
    fake_drain(f);
    for (i = 0; i < f->fds->len; i++)
        close(g_array_index(f->fds, RecvFd, i).fd);
    g_array_unref(f->fds);
    g_string_free(f->in, TRUE);
    g_string_free(f->log, TRUE);
    ho_error_free(f->closed_err);
    g_main_context_unref(f->ctx);
    g_free(f);
}

/* Run the monitor's loop once without blocking, then wait up to poll_ms
 * for the monitor to send something, and take it. */
static void
fake_pump(Fake *f, int poll_ms)
{
    struct pollfd pfd = {.fd = f->peer, .events = POLLIN};
    char buf[65536];
    int fds[HO_SOCKET_MAX_FDS];
    size_t nfds = 0;
    ssize_t n;
    size_t i;

    fake_drain(f);
    if (f->eof || poll(&pfd, 1, poll_ms) <= 0)
        return;
    n = ho_socket_recv_fds(f->peer, buf, sizeof(buf), fds, G_N_ELEMENTS(fds), &nfds);
    g_assert_cmpint(n, >=, 0);
    if (n == 0) {
        f->eof = true;
        return;
    }
    for (i = 0; i < nfds; i++) {
        RecvFd r = {.fd = fds[i], .start = f->received, .end = f->received + n};

        g_array_append_val(f->fds, r);
    }
    g_string_append_len(f->in, buf, n);
    f->received += n;
}

/* The next line the monitor sent (g_free it), or NULL at EOF or after
 * WAIT_MS; *start gets its stream offset. */
static char *
fake_read_line(Fake *f, size_t *start)
{
    gint64 deadline = g_get_monotonic_time() + WAIT_MS * 1000;

    while (!strchr(f->in->str, '\n')) {
        if (f->eof || g_get_monotonic_time() > deadline)
            return NULL;
        fake_pump(f, 10);
    }
    {
        size_t len = strchr(f->in->str, '\n') - f->in->str;
        char *line = g_strndup(f->in->str, len);

        if (start)
            *start = f->in_base;
        g_string_erase(f->in, 0, len + 1);
        f->in_base += len + 1;
        return line;
    }
}

/* The next command the monitor sent, parsed; fails the test on timeout. */
static json_object *
fake_read_cmd(Fake *f, const char *execute)
{
    g_autofree char *line = fake_read_line(f, NULL);
    json_object *cmd;
    const char *name;

    g_assert_nonnull(line);
    cmd = ho_json_parse(line, strlen(line));
    g_assert_nonnull(cmd);
    g_assert_cmpint(ho_json_get_string(cmd, "execute", &name), ==, 0);
    g_assert_cmpstr(name, ==, execute);
    return cmd;
}

/* Assert the monitor sends nothing for ms milliseconds. */
static void
fake_expect_silence(Fake *f, int ms)
{
    gint64 deadline = g_get_monotonic_time() + ms * 1000;

    while (g_get_monotonic_time() < deadline)
        fake_pump(f, 5);
    g_assert_cmpstr(f->in->str, ==, "");
    g_assert_false(f->eof);
}

static void
fake_write(Fake *f, const char *text)
{
    size_t len = strlen(text);
    size_t off = 0;

    while (off < len) {
        ssize_t n = send(f->peer, text + off, len - off, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        g_assert_cmpint(n, >, 0);
        off += n;
    }
}

static void
fake_write_line(Fake *f, const char *text)
{
    fake_write(f, text);
    fake_write(f, "\r\n");
}

/* The reply line to cmd: ret_json under "return", with cmd's id. */
static char *
fake_reply_text(json_object *cmd, const char *ret_json)
{
    json_object *id;
    g_autofree char *idtext = NULL;

    g_assert_true(json_object_object_get_ex(cmd, "id", &id));
    idtext = ho_json_to_string(id);
    return g_strdup_printf("{\"return\": %s, \"id\": %s}", ret_json, idtext);
}

static void
fake_reply(Fake *f, json_object *cmd, const char *ret_json)
{
    g_autofree char *text = fake_reply_text(cmd, ret_json);

    fake_write_line(f, text);
}

/* Iterate the monitor's context until *counter >= want; false on timeout. */
static bool
fake_wait(Fake *f, const int *counter, int want)
{
    gint64 deadline = g_get_monotonic_time() + WAIT_MS * 1000;

    while (*counter < want) {
        if (g_get_monotonic_time() > deadline)
            return false;
        g_main_context_iteration(f->ctx, FALSE);
        if (*counter < want)
            g_usleep(1000);
    }
    return true;
}

static void
fake_handshake(Fake *f)
{
    g_autoptr(json_object) caps = NULL;

    fake_write_line(f, GREETING);
    caps = fake_read_cmd(f, "qmp_capabilities");
    fake_reply(f, caps, "{}");
    g_assert_true(fake_wait(f, &f->ready_calls, 1));
    g_assert_true(qemu_monitor_is_ready(f->mon));
}

static void
reply_cb(QemuMonitor *mon, json_object *ret, const HoError *err, void *opaque)
{
    Reply *r = opaque;

    g_assert_true(mon == r->f->mon);
    /* Exactly one of them. */
    g_assert_true(!(ret && err));
    r->calls++;
    g_clear_pointer(&r->ret, json_object_put);
    r->ret = json_object_get(ret);
    ho_error_free(r->err);
    r->err = ho_error_copy(err);
    g_string_append_printf(r->f->log, "%s ", r->tag);
    if (r->unref_mon)
        qemu_monitor_unref(g_steal_pointer(&r->f->mon));
    if (r->close_mon)
        qemu_monitor_close(mon);
}

static void
reply_clear(Reply *r)
{
    g_clear_pointer(&r->ret, json_object_put);
    g_clear_pointer(&r->err, ho_error_free);
}

static json_object *
parse(const char *text)
{
    json_object *obj = ho_json_parse(text, strlen(text));

    g_assert_nonnull(obj);
    return obj;
}

static void
assert_json(json_object *actual, const char *expected)
{
    g_autoptr(json_object) exp = parse(expected);

    if (!ho_json_equal(actual, exp)) {
        g_autofree char *text = ho_json_to_string(actual);

        g_error("JSON differs: expected %s, got %s", expected, text);
    }
}

static guint
count_open_fds(void)
{
    g_autoptr(GDir) dir = g_dir_open("/proc/self/fd", 0, NULL);
    guint n = 0;

    g_assert_nonnull(dir);
    while (g_dir_read_name(dir))
        n++;
    return n;
}

/* ---- tests ------------------------------------------------------------- */

static void
test_handshake(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    Fake *f = fake_new(ctx);
    g_autoptr(json_object) caps = NULL;
    g_autoptr(json_object) greeting = parse(GREETING);
    json_object *qmp;
    json_object *id;
    int i;

    g_assert_cmpstr(qemu_monitor_get_label(f->mon), ==, "test");
    g_assert_false(qemu_monitor_is_ready(f->mon));
    g_assert_false(qemu_monitor_is_closed(f->mon));
    g_assert_null(qemu_monitor_get_greeting(f->mon));

    /* Nothing is sent before the greeting. */
    fake_expect_silence(f, 30);
    fake_write_line(f, GREETING);

    /* The monitor lives on its own context, not the global default one. */
    for (i = 0; i < 20; i++) {
        struct pollfd pfd = {.fd = f->peer, .events = POLLIN};

        g_main_context_iteration(NULL, FALSE);
        g_assert_cmpint(poll(&pfd, 1, 1), ==, 0);
    }

    caps = fake_read_cmd(f, "qmp_capabilities");
    g_assert_cmpint(json_object_object_length(caps), ==, 2);
    g_assert_true(json_object_object_get_ex(caps, "id", &id));
    g_assert_true(json_object_is_type(id, json_type_string));
    g_assert_false(qemu_monitor_is_ready(f->mon));
    g_assert_cmpint(f->ready_calls, ==, 0);

    fake_reply(f, caps, "{}");
    g_assert_true(fake_wait(f, &f->ready_calls, 1));
    g_assert_true(qemu_monitor_is_ready(f->mon));
    g_assert_true(json_object_object_get_ex(greeting, "QMP", &qmp));
    g_assert_true(ho_json_equal(qemu_monitor_get_greeting(f->mon), qmp));
    g_assert_true(f->ready_greeting == qemu_monitor_get_greeting(f->mon));

    fake_expect_silence(f, 20);
    g_assert_cmpint(f->ready_calls, ==, 1);
    g_assert_cmpint(f->closed_calls, ==, 0);
    fake_free(f);
}

static void
test_out_of_order(void)
{
    Fake *f = fake_new(NULL);
    Reply ra = {.f = f, .tag = "a"};
    Reply rb = {.f = f, .tag = "b"};
    Reply rc = {.f = f, .tag = "c"};
    g_autoptr(json_object) ca = NULL;
    g_autoptr(json_object) cb = NULL;
    g_autoptr(json_object) cc = NULL;
    g_autofree char *t1 = NULL;
    g_autofree char *t2 = NULL;
    g_autofree char *t3 = NULL;
    g_autofree char *all = NULL;
    guint64 ida;
    guint64 idb;
    guint64 idc;

    fake_handshake(f);
    g_string_truncate(f->log, 0);

    ida = qemu_monitor_send(f->mon, "cmd-a", parse("{\"x\": 1}"), -1, reply_cb, &ra);
    idb = qemu_monitor_send(f->mon, "cmd-b", NULL, -1, reply_cb, &rb);
    idc = qemu_monitor_send(f->mon, "cmd-c", parse("{\"y\": \"z\"}"), -1, reply_cb, &rc);
    g_assert_cmpuint(ida, >, 0);
    g_assert_cmpuint(idb, >, ida);
    g_assert_cmpuint(idc, >, idb);
    /* Nothing completes synchronously. */
    g_assert_cmpint(ra.calls + rb.calls + rc.calls, ==, 0);

    ca = fake_read_cmd(f, "cmd-a");
    cb = fake_read_cmd(f, "cmd-b");
    cc = fake_read_cmd(f, "cmd-c");
    assert_json(json_object_object_get(ca, "arguments"), "{\"x\": 1}");
    g_assert_false(json_object_object_get_ex(cb, "arguments", NULL));
    assert_json(json_object_object_get(cc, "arguments"), "{\"y\": \"z\"}");
    g_assert_false(
        ho_json_equal(json_object_object_get(ca, "id"), json_object_object_get(cb, "id")));
    g_assert_false(
        ho_json_equal(json_object_object_get(cb, "id"), json_object_object_get(cc, "id")));

    /* All three replies in one write, out of order, one of them after an
     * event: several messages per read. */
    t1 = fake_reply_text(cc, "[1, 2]");
    t2 = fake_reply_text(ca, "{\"a\": 1}");
    t3 = fake_reply_text(cb, "\"str\"");
    all = g_strdup_printf("%s\r\n%s\r\n{\"event\": \"X\"}\r\n%s\r\n", t1, t2, t3);
    fake_write(f, all);

    g_assert_true(fake_wait(f, &rb.calls, 1));
    g_assert_cmpstr(f->log->str, ==, "c a b ");
    g_assert_cmpint(ra.calls, ==, 1);
    g_assert_cmpint(rc.calls, ==, 1);
    g_assert_null(ra.err);
    g_assert_null(rb.err);
    g_assert_null(rc.err);
    assert_json(ra.ret, "{\"a\": 1}");
    assert_json(rb.ret, "\"str\"");
    assert_json(rc.ret, "[1, 2]");
    g_assert_true(qemu_monitor_is_ready(f->mon));

    reply_clear(&ra);
    reply_clear(&rb);
    reply_clear(&rc);
    fake_free(f);
}

static void
test_qmp_error(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    Fake *f = fake_new(ctx);
    Reply r1 = {.f = f, .tag = "1"};
    Reply r2 = {.f = f, .tag = "2"};
    g_autoptr(json_object) c1 = NULL;
    g_autoptr(json_object) c2 = NULL;
    g_autofree char *text = NULL;

    fake_handshake(f);
    qemu_monitor_send(f->mon, "device_del", parse("{\"id\": \"x\"}"), -1, reply_cb, &r1);
    c1 = fake_read_cmd(f, "device_del");
    {
        g_autofree char *idtext = ho_json_to_string(json_object_object_get(c1, "id"));

        text = g_strdup_printf("{\"error\": {\"class\": \"DeviceNotFound\", \"desc\": "
                               "\"Device 'x' not found\"}, \"id\": %s}",
                               idtext);
    }
    fake_write_line(f, text);
    g_assert_true(fake_wait(f, &r1.calls, 1));
    g_assert_null(r1.ret);
    g_assert_nonnull(r1.err);
    g_assert_cmpint(r1.err->code, ==, HO_ERR_QMP);
    g_assert_cmpstr(r1.err->qmp_class, ==, "DeviceNotFound");
    g_assert_cmpstr(r1.err->message, ==, "Device 'x' not found");

    /* A QMP error is an answer, not a broken connection. */
    g_assert_true(qemu_monitor_is_ready(f->mon));
    qemu_monitor_send(f->mon, "query-status", NULL, -1, reply_cb, &r2);
    c2 = fake_read_cmd(f, "query-status");
    fake_reply(f, c2, "{\"status\": \"running\"}");
    g_assert_true(fake_wait(f, &r2.calls, 1));
    g_assert_null(r2.err);
    assert_json(r2.ret, "{\"status\": \"running\"}");
    g_assert_cmpint(f->closed_calls, ==, 0);

    reply_clear(&r1);
    reply_clear(&r2);
    fake_free(f);
}

typedef struct {
    Fake *f;
    const char *tag;
    GString *log;
    guint unsub[2];   /* ids to unsubscribe when called */
    guint *sub_later; /* subscribe a new catch-all here when called */
    json_object *data;
    gint64 qemu_ts;
    gint64 recv_ts;
    char *name;
} EventSub;

static void
event_cb(QemuMonitor *mon, const char *name, json_object *data, gint64 qemu_ts_us,
         gint64 recv_ts_us, void *opaque)
{
    EventSub *s = opaque;

    g_assert_true(mon == s->f->mon);
    s->f->events++;
    g_string_append_printf(s->log, "%s:%s ", s->tag, name);
    g_clear_pointer(&s->data, json_object_put);
    s->data = json_object_get(data);
    s->qemu_ts = qemu_ts_us;
    s->recv_ts = recv_ts_us;
    g_free(s->name);
    s->name = g_strdup(name);
    if (s->unsub[0])
        qemu_monitor_unsubscribe(mon, s->unsub[0]);
    if (s->unsub[1])
        qemu_monitor_unsubscribe(mon, s->unsub[1]);
    s->unsub[0] = s->unsub[1] = 0;
    if (s->sub_later && !*s->sub_later)
        *s->sub_later = qemu_monitor_subscribe(mon, NULL, event_cb, s);
}

static void
event_sub_clear(EventSub *s)
{
    g_clear_pointer(&s->data, json_object_put);
    g_clear_pointer(&s->name, g_free);
}

static void
test_events(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    Fake *f = fake_new(ctx);
    g_autoptr(GString) log = g_string_new(NULL);
    EventSub a = {.f = f, .tag = "A", .log = log};
    EventSub b = {.f = f, .tag = "B", .log = log};
    EventSub c = {.f = f, .tag = "C", .log = log};
    EventSub d = {.f = f, .tag = "D", .log = log};
    EventSub e = {.f = f, .tag = "E", .log = log};
    guint ida;
    guint idb;
    guint idc;
    guint idd;
    guint ide;
    guint late = 0;
    gint64 t0;
    gint64 t1;

    fake_handshake(f);
    ida = qemu_monitor_subscribe(f->mon, "STOP", event_cb, &a);
    idb = qemu_monitor_subscribe(f->mon, NULL, event_cb, &b);
    idc = qemu_monitor_subscribe(f->mon, "STOP", event_cb, &c);
    idd = qemu_monitor_subscribe(f->mon, "STOP", event_cb, &d);
    ide = qemu_monitor_subscribe(f->mon, "RESUME", event_cb, &e);
    g_assert_cmpuint(ida, >, 0);
    g_assert_cmpuint(idb, !=, ida);
    g_assert_cmpuint(idc, !=, idb);
    g_assert_cmpuint(idd, !=, idc);
    g_assert_cmpuint(ide, !=, idd);

    /* C removes A (already called) and D (not yet called: it must not run),
     * and subscribes a catch-all that must wait for the next event. */
    c.unsub[0] = ida;
    c.unsub[1] = idd;
    c.sub_later = &late;

    t0 = ho_time_now_us();
    f->events = 0;
    fake_write_line(f, "{\"timestamp\": {\"seconds\": 1700000000, \"microseconds\": 123456}, "
                       "\"event\": \"STOP\"}");
    g_assert_true(fake_wait(f, &f->events, 1));
    fake_drain(f);
    t1 = ho_time_now_us();
    g_assert_cmpstr(log->str, ==, "A:STOP B:STOP C:STOP ");
    g_assert_cmpuint(late, >, 0);
    g_assert_null(b.data);
    g_assert_cmpint(b.qemu_ts, ==, G_GINT64_CONSTANT(1700000000123456));
    g_assert_cmpint(b.recv_ts, >=, t0);
    g_assert_cmpint(b.recv_ts, <=, t1);

    g_string_truncate(log, 0);
    f->events = 0;
    fake_write_line(f, "{\"timestamp\": {\"seconds\": 1700000001, \"microseconds\": 5}, "
                       "\"event\": \"RESUME\", \"data\": {\"reason\": \"user\"}}");
    g_assert_true(fake_wait(f, &f->events, 1));
    fake_drain(f);
    /* B, E in subscription order, then the late catch-all (C's opaque). */
    g_assert_cmpstr(log->str, ==, "B:RESUME E:RESUME C:RESUME ");
    assert_json(e.data, "{\"reason\": \"user\"}");
    g_assert_cmpint(e.qemu_ts, ==, G_GINT64_CONSTANT(1700000001000005));
    g_assert_cmpstr(e.name, ==, "RESUME");

    /* Unsubscribe outside a dispatch. */
    qemu_monitor_unsubscribe(f->mon, idb);
    qemu_monitor_unsubscribe(f->mon, late);
    qemu_monitor_unsubscribe(f->mon, 9999); /* unknown: ignored */
    g_string_truncate(log, 0);
    f->events = 0;
    fake_write_line(f, "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 0}, "
                       "\"event\": \"STOP\"}\r\n"
                       "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 1}, "
                       "\"event\": \"SHUTDOWN\"}");
    g_assert_true(fake_wait(f, &f->events, 1));
    fake_expect_silence(f, 20);
    g_assert_cmpstr(log->str, ==, "C:STOP ");
    g_assert_true(qemu_monitor_is_ready(f->mon));

    event_sub_clear(&a);
    event_sub_clear(&b);
    event_sub_clear(&c);
    event_sub_clear(&d);
    event_sub_clear(&e);
    fake_free(f);
}

static void
test_fd_passing(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    guint fds_before = count_open_fds();
    Fake *f = fake_new(ctx);
    Reply rbig = {.f = f, .tag = "big"};
    Reply rget = {.f = f, .tag = "getfd"};
    Reply rafter = {.f = f, .tag = "after"};
    g_autofree char *big = g_malloc(1024 * 1024 + 1);
    g_autofree char *bigline = NULL;
    g_autofree char *getline = NULL;
    g_autoptr(json_object) cbig = NULL;
    g_autoptr(json_object) cget = NULL;
    g_autoptr(json_object) cafter = NULL;
    json_object *args = json_object_new_object();
    struct stat st_sent;
    struct stat st_recv;
    size_t getstart;
    RecvFd r;
    int memfd;

    memfd = memfd_create("qemumonitortest", MFD_CLOEXEC);
    g_assert_cmpint(memfd, >=, 0);
    g_assert_cmpint(fstat(memfd, &st_sent), ==, 0);

    fake_handshake(f);

    /* A command bigger than the socket buffer first, so its writes are
     * partial, then getfd: the fd must travel with getfd's first byte. */
    memset(big, 'x', 1024 * 1024);
    big[1024 * 1024] = '\0';
    ho_json_add_string(args, "blob", big);
    qemu_monitor_send(f->mon, "big", args, -1, reply_cb, &rbig);
    qemu_monitor_send(f->mon, "getfd", parse("{\"fdname\": \"migfd\"}"), memfd, reply_cb, &rget);
    /* Not consumed, and closing it now must not matter: the monitor keeps
     * its own copy until it is sent. */
    g_assert_cmpint(fcntl(memfd, F_GETFD), >=, 0);
    close(memfd);
    qemu_monitor_send(f->mon, "after", NULL, -1, reply_cb, &rafter);

    bigline = fake_read_line(f, NULL);
    g_assert_nonnull(bigline);
    g_assert_cmpuint(strlen(bigline), >, 1024 * 1024);
    cbig = parse(bigline);

    getline = fake_read_line(f, &getstart);
    g_assert_nonnull(getline);
    cget = parse(getline);
    assert_json(json_object_object_get(cget, "arguments"), "{\"fdname\": \"migfd\"}");
    g_assert_cmpuint(f->fds->len, ==, 1);
    r = g_array_index(f->fds, RecvFd, 0);
    /* The recvmsg() that brought the fd covered getfd's first byte. */
    g_assert_cmpuint(r.start, <=, getstart);
    g_assert_cmpuint(r.end, >, getstart);
    g_assert_cmpint(fstat(r.fd, &st_recv), ==, 0);
    g_assert_cmpuint(st_recv.st_dev, ==, st_sent.st_dev);
    g_assert_cmpuint(st_recv.st_ino, ==, st_sent.st_ino);
    g_assert_cmpint(fcntl(r.fd, F_GETFD) & FD_CLOEXEC, ==, FD_CLOEXEC);

    cafter = fake_read_cmd(f, "after");
    g_assert_cmpuint(f->fds->len, ==, 1);

    fake_reply(f, cbig, "{}");
    fake_reply(f, cget, "{}");
    fake_reply(f, cafter, "{}");
    g_assert_true(fake_wait(f, &rafter.calls, 1));
    g_assert_cmpstr(f->log->str, ==, "ready big getfd after ");
    g_assert_null(rget.err);

    reply_clear(&rbig);
    reply_clear(&rget);
    reply_clear(&rafter);
    fake_free(f);
    /* Our copy of the fd is gone, as is everything else. */
    g_assert_cmpuint(count_open_fds(), ==, fds_before);
}

static void
test_queued_before_ready(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    Fake *f = fake_new(ctx);
    Reply r1 = {.f = f, .tag = "1"};
    Reply r2 = {.f = f, .tag = "2"};
    g_autoptr(json_object) caps = NULL;
    g_autoptr(json_object) c1 = NULL;
    g_autoptr(json_object) c2 = NULL;
    g_autoptr(json_object) c3 = NULL;

    f->send_on_ready = "from-ready";
    qemu_monitor_send(f->mon, "first", parse("{\"n\": 1}"), -1, reply_cb, &r1);
    qemu_monitor_send(f->mon, "second", NULL, -1, reply_cb, &r2);
    fake_expect_silence(f, 30);

    fake_write_line(f, GREETING);
    caps = fake_read_cmd(f, "qmp_capabilities");
    /* The queue waits for qmp_capabilities' reply. */
    fake_expect_silence(f, 30);
    fake_reply(f, caps, "{}");

    c1 = fake_read_cmd(f, "first");
    c2 = fake_read_cmd(f, "second");
    c3 = fake_read_cmd(f, "from-ready");
    assert_json(json_object_object_get(c1, "arguments"), "{\"n\": 1}");
    g_assert_cmpint(f->ready_calls, ==, 1);

    fake_reply(f, c2, "2");
    fake_reply(f, c1, "1");
    fake_reply(f, c3, "3");
    g_assert_true(fake_wait(f, &r1.calls, 1));
    assert_json(r1.ret, "1");
    assert_json(r2.ret, "2");
    fake_expect_silence(f, 10);
    g_assert_cmpint(f->closed_calls, ==, 0);

    reply_clear(&r1);
    reply_clear(&r2);
    fake_free(f);
}

/* Assert the monitor closed once with exactly this message, after every
 * pending reply failed with it. */
static void
assert_closed(Fake *f, const char *message)
{
    g_assert_true(fake_wait(f, &f->closed_calls, 1));
    fake_drain(f);
    g_assert_cmpint(f->closed_calls, ==, 1);
    g_assert_nonnull(f->closed_err);
    g_assert_cmpint(f->closed_err->code, ==, HO_ERR_MONITOR);
    g_assert_cmpstr(f->closed_err->message, ==, message);
    g_assert_true(qemu_monitor_is_closed(f->mon));
    g_assert_false(qemu_monitor_is_ready(f->mon));
    /* The monitor's end of the socket is closed too. */
    if (f->peer >= 0) {
        gint64 deadline = g_get_monotonic_time() + WAIT_MS * 1000;

        while (!f->eof && g_get_monotonic_time() < deadline)
            fake_pump(f, 10);
        g_assert_true(f->eof);
    }
}

static void
assert_reply_failed(Reply *r, const char *message)
{
    g_assert_cmpint(r->calls, ==, 1);
    g_assert_null(r->ret);
    g_assert_nonnull(r->err);
    g_assert_cmpint(r->err->code, ==, HO_ERR_MONITOR);
    g_assert_cmpstr(r->err->message, ==, message);
}

static void
test_eof_pending(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    Fake *f = fake_new(ctx);
    Reply r1 = {.f = f, .tag = "status"};
    Reply r2 = {.f = f, .tag = "version"};
    g_autoptr(json_object) c1 = NULL;
    g_autoptr(json_object) c2 = NULL;
    const char *msg = "QEMU monitor 'test' closed the connection while 'query-status' was "
                      "pending";

    fake_handshake(f);
    qemu_monitor_send(f->mon, "query-status", NULL, -1, reply_cb, &r1);
    qemu_monitor_send(f->mon, "query-version", NULL, -1, reply_cb, &r2);
    c1 = fake_read_cmd(f, "query-status");
    c2 = fake_read_cmd(f, "query-version");
    close(f->peer);
    f->peer = -1;

    assert_closed(f, msg);
    assert_reply_failed(&r1, msg);
    assert_reply_failed(&r2, msg);
    /* Replies fail in the order sent, then the closed callback, once. */
    g_assert_cmpstr(f->log->str, ==, "ready status version closed ");
    fake_drain(f);
    g_assert_cmpint(f->closed_calls, ==, 1);
    qemu_monitor_close(f->mon);
    g_assert_cmpint(f->closed_calls, ==, 1);

    reply_clear(&r1);
    reply_clear(&r2);
    fake_free(f);
}

static void
test_eof_while_writing(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    Fake *f = fake_new(ctx);
    g_autoptr(GString) log = g_string_new(NULL);
    EventSub s = {.f = f, .tag = "S", .log = log};
    Reply rquit = {.f = f, .tag = "quit"};
    Reply rafter = {.f = f, .tag = "after"};
    g_autoptr(json_object) cquit = NULL;
    g_autofree char *blob = g_strnfill(200 * 1024, 'b');
    g_autofree char *event =
        g_strdup_printf("{\"event\": \"BIG\", \"data\": {\"b\": \"%s\"}}", blob);
    const char *msg = "QEMU monitor 'test' closed the connection while 'after' was pending";

    fake_handshake(f);
    qemu_monitor_subscribe(f->mon, "BIG", event_cb, &s);
    qemu_monitor_send(f->mon, "quit", NULL, -1, reply_cb, &rquit);
    cquit = fake_read_cmd(f, "quit");
    /* QEMU says more than one read takes, answers quit and exits; then we
     * have something to write: the write fails (EPIPE), yet everything
     * QEMU said is delivered and the end is reported as its EOF. */
    fake_write_line(f, event);
    fake_reply(f, cquit, "{}");
    close(f->peer);
    f->peer = -1;
    qemu_monitor_send(f->mon, "after", NULL, -1, reply_cb, &rafter);

    assert_closed(f, msg);
    g_assert_cmpstr(log->str, ==, "S:BIG ");
    g_assert_cmpint(rquit.calls, ==, 1);
    g_assert_null(rquit.err);
    assert_reply_failed(&rafter, msg);
    g_assert_cmpstr(f->log->str, ==, "ready quit after closed ");
    event_sub_clear(&s);
    reply_clear(&rquit);
    reply_clear(&rafter);
    fake_free(f);
}

static void
test_eof_idle(void)
{
    Fake *f = fake_new(NULL);

    fake_handshake(f);
    shutdown(f->peer, SHUT_WR);
    g_assert_true(fake_wait(f, &f->closed_calls, 1));
    g_assert_cmpstr(f->closed_err->message, ==, "QEMU monitor 'test' closed the connection");
    fake_free(f);
}

static void
test_truncated_eof(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    Fake *f = fake_new(ctx);
    Reply r = {.f = f, .tag = "status"};
    g_autoptr(json_object) c = NULL;
    g_autofree char *full = NULL;
    const char *msg = "QEMU monitor 'test' closed the connection while 'query-status' was "
                      "pending";

    fake_handshake(f);
    qemu_monitor_send(f->mon, "query-status", NULL, -1, reply_cb, &r);
    c = fake_read_cmd(f, "query-status");
    full = fake_reply_text(c, "{\"status\": \"running\"}");
    /* Everything but the last few bytes: a reply cut short by QEMU's death. */
    full[strlen(full) - 3] = '\0';
    fake_write(f, full);
    fake_expect_silence(f, 20);
    g_assert_cmpint(r.calls, ==, 0);
    shutdown(f->peer, SHUT_WR);

    assert_closed(f, msg);
    assert_reply_failed(&r, msg);
    reply_clear(&r);
    fake_free(f);
}

/* Write bad input after the handshake with a command pending; assert it
 * breaks the connection with message. */
static void
check_breaks_full(const char *input, const char *message, size_t max_message, bool prefix)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    Fake *f = fake_new(ctx);
    Reply r = {.f = f, .tag = "pending"};
    g_autoptr(json_object) c = NULL;

    if (max_message)
        qemu_monitor_set_max_message(f->mon, max_message);
    fake_handshake(f);
    qemu_monitor_send(f->mon, "query-status", NULL, -1, reply_cb, &r);
    c = fake_read_cmd(f, "query-status");
    fake_write(f, input);

    /* No EOF from the fake: the monitor ends it by itself. */
    g_assert_true(fake_wait(f, &f->closed_calls, 1));
    if (prefix) {
        g_assert_true(g_str_has_prefix(f->closed_err->message, message));
        g_assert_cmpuint(strlen(f->closed_err->message), >, strlen(message));
        message = f->closed_err->message;
    }
    assert_closed(f, message);
    assert_reply_failed(&r, message);
    g_assert_cmpstr(f->log->str, ==, "ready pending closed ");
    reply_clear(&r);
    fake_free(f);
}

static void
check_breaks(const char *input, const char *message, size_t max_message)
{
    check_breaks_full(input, message, max_message, false);
}

static void
test_malformed(void)
{
    /* The parser's own words belong to ho_json; ours come first. */
    check_breaks_full("{\"return\": }\r\n", "QEMU monitor 'test' sent malformed JSON: ", 0, true);
}

static void
test_malformed_generic(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    Fake *f = fake_new(ctx);

    ho_error_reset();
    fake_handshake(f);
    fake_write(f, "{\"event\": \"STOP\"\r\n");
    g_assert_true(fake_wait(f, &f->closed_calls, 1));
    g_assert_cmpint(f->closed_err->code, ==, HO_ERR_MONITOR);
    g_assert_true(
        g_str_has_prefix(f->closed_err->message, "QEMU monitor 'test' sent malformed JSON: "));
    g_assert_cmpuint(strlen(f->closed_err->message), >,
                     strlen("QEMU monitor 'test' sent malformed JSON: "));
    /* The thread's own error slot is not touched by the loop. */
    g_assert_null(ho_error_last());
    fake_free(f);
}

static void
test_not_object(void)
{
    check_breaks("[1, 2]\r\n",
                 "QEMU monitor 'test' sent a message that is not a JSON object: [1, 2]", 0);
}

static void
test_unknown_id(void)
{
    check_breaks("{\"return\": {}, \"id\": \"h999\"}\r\n",
                 "QEMU monitor 'test' sent a reply to unknown command id \"h999\"", 0);
    check_breaks("{\"return\": {}, \"id\": 2}\r\n",
                 "QEMU monitor 'test' sent a reply to unknown command id 2", 0);
    check_breaks("{\"return\": {}}\r\n", "QEMU monitor 'test' sent a reply without an id", 0);
}

static void
test_unexpected(void)
{
    check_breaks("{\"hello\": 1}\r\n",
                 "QEMU monitor 'test' sent an unexpected message: {\"hello\": 1}", 0);
    check_breaks("{\"event\": 5}\r\n",
                 "QEMU monitor 'test' sent an unexpected message: {\"event\": 5}", 0);
}

static void
test_oversized(void)
{
    g_autofree char *blob = g_strnfill(10 * 1024, 'a');
    g_autofree char *line =
        g_strdup_printf("{\"event\": \"X\", \"data\": {\"b\": \"%s\"}}\r\n", blob);
    const char *msg = "QEMU monitor 'test' sent a message larger than 4096 bytes";

    /* A complete line over the limit. */
    check_breaks(line, msg, 4096);
    /* The same without its newline: an endless message is caught too. */
    line[strlen(line) - 2] = '\0';
    check_breaks(line, msg, 4096);
}

static void
test_big_message(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    Fake *f = fake_new(ctx);
    g_autoptr(GString) log = g_string_new(NULL);
    EventSub s = {.f = f, .tag = "S", .log = log};
    g_autofree char *blob = g_strnfill(1024 * 1024, 'b');
    g_autofree char *event = g_strdup_printf("{\"event\": \"BIG\", \"data\": {\"b\": \"%s\"}}\r\n"
                                             "{\"event\": \"SMALL\"}\r\n",
                                             blob);
    size_t len = strlen(event);
    size_t off;

    fake_handshake(f);
    qemu_monitor_subscribe(f->mon, NULL, event_cb, &s);
    /* A message many reads long, written in pieces the loop takes in turn. */
    for (off = 0; off < len; off += 32 * 1024) {
        g_autofree char *piece = g_strndup(event + off, MIN(32 * 1024, len - off));

        fake_write(f, piece);
        fake_drain(f);
    }
    g_assert_true(fake_wait(f, &f->events, 2));
    g_assert_cmpstr(log->str, ==, "S:BIG S:SMALL ");
    g_assert_false(qemu_monitor_is_closed(f->mon));
    event_sub_clear(&s);
    fake_free(f);
}

static void
test_under_limit(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    Fake *f = fake_new(ctx);
    g_autoptr(GString) log = g_string_new(NULL);
    EventSub s = {.f = f, .tag = "S", .log = log};
    /* Exactly 4096 bytes before "\r\n", sent in pieces. */
    g_autofree char *blob =
        g_strnfill(4096 - strlen("{\"event\": \"X\", \"data\": {\"b\": \"\"}}"), 'a');
    g_autofree char *line = g_strdup_printf("{\"event\": \"X\", \"data\": {\"b\": \"%s\"}}", blob);

    g_assert_cmpuint(strlen(line), ==, 4096);
    qemu_monitor_set_max_message(f->mon, 4096);
    fake_handshake(f);
    qemu_monitor_subscribe(f->mon, "X", event_cb, &s);
    fake_write(f, line);
    fake_expect_silence(f, 20);
    fake_write(f, "\r");
    fake_expect_silence(f, 20);
    fake_write(f, "\n");
    g_assert_true(fake_wait(f, &f->events, 1));
    g_assert_cmpstr(log->str, ==, "S:X ");
    g_assert_cmpuint(strlen(json_object_get_string(json_object_object_get(s.data, "b"))), ==,
                     strlen(blob));
    g_assert_false(qemu_monitor_is_closed(f->mon));
    event_sub_clear(&s);
    fake_free(f);
}

/* An event before the greeting (the same QEMU startup race) is dropped;
 * the greeting that follows starts the session as usual. */
static void
test_event_before_greeting(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    Fake *f = fake_new(ctx);
    g_autoptr(json_object) caps = NULL;

    fake_write_line(f, "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, "
                       "\"event\": \"RESUME\"}");
    fake_expect_silence(f, 20);
    g_assert_cmpint(f->closed_calls, ==, 0);
    g_assert_null(qemu_monitor_get_greeting(f->mon));
    fake_write_line(f, GREETING);
    caps = fake_read_cmd(f, "qmp_capabilities");
    fake_reply(f, caps, "{}");
    g_assert_true(fake_wait(f, &f->ready_calls, 1));
    g_assert_cmpint(f->closed_calls, ==, 0);
    fake_free(f);
}

static void
test_not_greeting(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    Fake *f = fake_new(ctx);
    Reply r = {.f = f, .tag = "queued"};
    const char *msg = "QEMU monitor 'test' did not start with the QMP greeting: "
                      "{\"return\": {}, \"id\": \"h1\"}";

    qemu_monitor_send(f->mon, "query-status", NULL, -1, reply_cb, &r);
    fake_write_line(f, "{\"return\": {}, \"id\": \"h1\"}");
    assert_closed(f, msg);
    assert_reply_failed(&r, msg);
    /* Nothing at all was sent: not even qmp_capabilities. */
    g_assert_cmpuint(f->received, ==, 0);
    g_assert_cmpint(f->ready_calls, ==, 0);
    g_assert_null(qemu_monitor_get_greeting(f->mon));
    reply_clear(&r);
    fake_free(f);
}

static void
test_caps_error(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    Fake *f = fake_new(ctx);
    Reply r = {.f = f, .tag = "queued"};
    g_autoptr(json_object) caps = NULL;
    g_autofree char *idtext = NULL;
    g_autofree char *text = NULL;
    const char *msg = "QEMU monitor 'test' refused qmp_capabilities: Capability negotiation "
                      "is already complete";

    qemu_monitor_send(f->mon, "query-status", NULL, -1, reply_cb, &r);
    fake_write_line(f, GREETING);
    caps = fake_read_cmd(f, "qmp_capabilities");
    idtext = ho_json_to_string(json_object_object_get(caps, "id"));
    text = g_strdup_printf("{\"error\": {\"class\": \"CommandNotFound\", \"desc\": "
                           "\"Capability negotiation is already complete\"}, \"id\": %s}",
                           idtext);
    fake_write_line(f, text);
    assert_closed(f, msg);
    assert_reply_failed(&r, msg);
    g_assert_cmpint(f->ready_calls, ==, 0);
    g_assert_cmpstr(f->log->str, ==, "queued closed ");
    reply_clear(&r);
    fake_free(f);
}

/* QEMU greets twice before answering qmp_capabilities (a startup race in
 * QEMU that resets the session): the monitor negotiates once more, and is
 * ready whether QEMU takes the second qmp_capabilities or answers that
 * negotiation is already complete; a command queued before is sent only
 * after that. */
static void
check_greeted_twice(const char *second_answer_class)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    Fake *f = fake_new(ctx);
    Reply r = {.f = f, .tag = "queued"};
    g_autoptr(json_object) caps = NULL;
    g_autoptr(json_object) caps2 = NULL;
    g_autoptr(json_object) cmd = NULL;

    qemu_monitor_send(f->mon, "query-status", NULL, -1, reply_cb, &r);
    fake_write_line(f, GREETING);
    caps = fake_read_cmd(f, "qmp_capabilities");
    fake_write_line(f, GREETING);
    fake_reply(f, caps, "{}");
    caps2 = fake_read_cmd(f, "qmp_capabilities");
    g_assert_false(qemu_monitor_is_ready(f->mon));
    g_assert_cmpint(f->ready_calls, ==, 0);
    if (second_answer_class) {
        g_autofree char *idtext = ho_json_to_string(json_object_object_get(caps2, "id"));
        g_autofree char *text = g_strdup_printf("{\"error\": {\"class\": \"%s\", \"desc\": "
                                                "\"Capabilities negotiation is already "
                                                "complete, command ignored\"}, \"id\": %s}",
                                                second_answer_class, idtext);

        fake_write_line(f, text);
    } else {
        fake_reply(f, caps2, "{}");
    }
    g_assert_true(fake_wait(f, &f->ready_calls, 1));
    g_assert_true(qemu_monitor_is_ready(f->mon));
    cmd = fake_read_cmd(f, "query-status");
    fake_reply(f, cmd, "{\"status\": \"running\", \"running\": true}");
    g_assert_true(fake_wait(f, &r.calls, 1));
    g_assert_null(r.err);
    g_assert_cmpstr(f->log->str, ==, "ready queued ");
    g_assert_cmpint(f->closed_calls, ==, 0);
    reply_clear(&r);
    fake_free(f);
}

static void
test_greeted_twice(void)
{
    check_greeted_twice(NULL);
}

static void
test_greeted_twice_already_complete(void)
{
    check_greeted_twice("CommandNotFound");
}

/* Any other refusal of the second qmp_capabilities still ends the monitor. */
static void
test_greeted_twice_refused(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    Fake *f = fake_new(ctx);
    g_autoptr(json_object) caps = NULL;
    g_autoptr(json_object) caps2 = NULL;
    g_autofree char *idtext = NULL;
    g_autofree char *text = NULL;

    fake_write_line(f, GREETING);
    caps = fake_read_cmd(f, "qmp_capabilities");
    fake_write_line(f, GREETING);
    fake_reply(f, caps, "{}");
    caps2 = fake_read_cmd(f, "qmp_capabilities");
    idtext = ho_json_to_string(json_object_object_get(caps2, "id"));
    text = g_strdup_printf("{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}, "
                           "\"id\": %s}",
                           idtext);
    fake_write_line(f, text);
    assert_closed(f, "QEMU monitor 'test' refused qmp_capabilities: no");
    g_assert_cmpint(f->ready_calls, ==, 0);
    fake_free(f);
}

static void
test_second_greeting(void)
{
    check_breaks(GREETING "\r\n", "QEMU monitor 'test' sent an unexpected message: " GREETING, 0);
}

static void
test_close_by_us(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    Fake *f = fake_new(ctx);
    Reply r1 = {.f = f, .tag = "pending"};
    Reply r2 = {.f = f, .tag = "late"};
    const char *msg = "connection to QEMU monitor 'test' was closed by us";

    fake_handshake(f);
    qemu_monitor_send(f->mon, "query-status", NULL, -1, reply_cb, &r1);
    qemu_monitor_close(f->mon);
    /* Synchronous: pending replies fail, then the closed callback. */
    g_assert_cmpstr(f->log->str, ==, "ready pending closed ");
    assert_reply_failed(&r1, msg);
    assert_closed(f, msg);
    qemu_monitor_close(f->mon);
    g_assert_cmpint(f->closed_calls, ==, 1);

    /* Sending on a closed monitor: the callback comes later, from the loop. */
    g_assert_cmpuint(qemu_monitor_send(f->mon, "query-version", parse("{}"), -1, reply_cb, &r2), >,
                     0);
    g_assert_cmpint(r2.calls, ==, 0);
    g_assert_true(fake_wait(f, &r2.calls, 1));
    fake_drain(f);
    g_assert_cmpint(r2.calls, ==, 1);
    g_assert_cmpint(r2.err->code, ==, HO_ERR_MONITOR);
    g_assert_cmpstr(r2.err->message, ==,
                    "cannot send 'query-version': QEMU monitor 'test' is closed: connection to "
                    "QEMU monitor 'test' was closed by us");
    g_assert_cmpstr(f->log->str, ==, "ready pending closed late ");
    /* A NULL callback is fine too. */
    qemu_monitor_send(f->mon, "quit", NULL, -1, NULL, NULL);
    fake_drain(f);
    g_assert_cmpint(f->closed_calls, ==, 1);

    reply_clear(&r1);
    reply_clear(&r2);
    fake_free(f);
}

static void
test_close_in_callback(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    Fake *f = fake_new(ctx);
    Reply r1 = {.f = f, .tag = "1", .close_mon = true};
    Reply r2 = {.f = f, .tag = "2"};
    g_autoptr(json_object) c1 = NULL;
    g_autoptr(json_object) c2 = NULL;
    g_autofree char *t1 = NULL;
    g_autofree char *t2 = NULL;
    g_autofree char *both = NULL;
    const char *msg = "connection to QEMU monitor 'test' was closed by us";

    fake_handshake(f);
    qemu_monitor_send(f->mon, "one", NULL, -1, reply_cb, &r1);
    qemu_monitor_send(f->mon, "two", NULL, -1, reply_cb, &r2);
    c1 = fake_read_cmd(f, "one");
    c2 = fake_read_cmd(f, "two");
    /* Both replies in one read: the second must not be delivered once the
     * first one's callback closed the monitor. */
    t1 = fake_reply_text(c1, "1");
    t2 = fake_reply_text(c2, "2");
    both = g_strdup_printf("%s\r\n%s\r\n", t1, t2);
    fake_write(f, both);
    assert_closed(f, msg);
    g_assert_null(r1.err);
    assert_json(r1.ret, "1");
    assert_reply_failed(&r2, msg);
    g_assert_cmpstr(f->log->str, ==, "ready 1 2 closed ");
    reply_clear(&r1);
    reply_clear(&r2);
    fake_free(f);
}

static void
test_unref_in_callback(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    Fake *f = fake_new(ctx);
    Reply r1 = {.f = f, .tag = "1", .unref_mon = true};
    Reply r2 = {.f = f, .tag = "2"};
    g_autoptr(json_object) c1 = NULL;
    g_autoptr(json_object) c2 = NULL;
    QemuMonitor *mon;

    fake_handshake(f);
    mon = f->mon;
    qemu_monitor_send(mon, "one", NULL, -1, reply_cb, &r1);
    qemu_monitor_send(mon, "two", NULL, -1, reply_cb, &r2);
    c1 = fake_read_cmd(f, "one");
    c2 = fake_read_cmd(f, "two");
    fake_reply(f, c1, "{}");
    /* r2's callback checks mon == f->mon; f->mon is NULL by then, so point
     * r2 at a fake that still knows the monitor. */
    {
        Fake shadow = {.mon = mon, .log = f->log};

        r2.f = &shadow;
        g_assert_true(fake_wait(f, &r2.calls, 1));
        r2.f = f;
    }
    g_assert_null(f->mon);
    assert_json(r1.ret, "{}");
    g_assert_cmpint(r2.calls, ==, 1);
    g_assert_cmpint(r2.err->code, ==, HO_ERR_MONITOR);
    g_assert_cmpstr(r2.err->message, ==, "QEMU monitor 'test' was freed before the reply came");
    /* Freed, not closed by QEMU: no closed callback. */
    g_assert_cmpint(f->closed_calls, ==, 0);
    g_assert_cmpstr(f->log->str, ==, "ready 1 2 ");
    /* And the socket is closed. */
    while (!f->eof)
        fake_pump(f, 10);
    reply_clear(&r1);
    reply_clear(&r2);
    fake_free(f);
}

static void
test_unref_pending(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    Fake *f = fake_new(ctx);
    Reply r = {.f = f, .tag = "1"};

    fake_handshake(f);
    qemu_monitor_send(f->mon, "one", NULL, -1, reply_cb, &r);
    /* The last reference: the callback still runs, so its owner can free
     * what it passed, with a monitor that is valid during the call. */
    qemu_monitor_unref(f->mon);
    g_assert_cmpint(r.calls, ==, 1);
    f->mon = NULL;
    g_assert_cmpint(r.err->code, ==, HO_ERR_MONITOR);
    g_assert_cmpstr(r.err->message, ==, "QEMU monitor 'test' was freed before the reply came");
    g_assert_cmpint(f->closed_calls, ==, 0);
    reply_clear(&r);
    fake_free(f);
}

static void
test_recorder(void)
{
    g_autofree char *dir = test_make_tmpdir("qemumonitortest");
    g_autofree char *path = g_build_filename(dir, "rec.jsonl", NULL);
    g_autoptr(GMainContext) ctx = g_main_context_new();
    g_autoptr(QemuRecorder) rec = NULL;
    g_autofree char *contents = NULL;
    g_auto(GStrv) lines = NULL;
    Fake *f;
    Reply r = {.tag = "status"};
    g_autoptr(json_object) c = NULL;
    struct stat st;
    gint64 prev = 0;
    gint64 t0 = ho_time_now_us();
    guint i;
    static const char *expect[][3] = {
        /* dir, a member of msg (or "reason" for marks), its value */
        {"open", NULL, NULL},
        {"recv", "QMP", NULL},
        {"send", "execute", "qmp_capabilities"},
        {"recv", "return", NULL},
        {"send", "execute", "query-status"},
        {"recv", "return", NULL},
        {"recv", "event", "STOP"},
        {"recv", NULL, NULL}, /* raw */
        {"close", "reason", "QEMU monitor 'test' sent malformed JSON: "},
    };

    rec = qemu_recorder_open(path);
    g_assert_nonnull(rec);
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 0777, ==, 0600);

    f = fake_new(ctx);
    r.f = f;
    qemu_monitor_set_recorder(f->mon, rec);
    fake_handshake(f);
    qemu_monitor_send(f->mon, "query-status", parse("{\"verbose\": true}"), -1, reply_cb, &r);
    c = fake_read_cmd(f, "query-status");
    fake_reply(f, c, "{\"status\": \"running\"}");
    g_assert_true(fake_wait(f, &r.calls, 1));
    fake_write_line(f, "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, "
                       "\"event\": \"STOP\"}");
    fake_write_line(f, "not json");
    g_assert_true(fake_wait(f, &f->closed_calls, 1));
    fake_free(f);
    /* Recording after the monitor is gone still works: the file is the
     * recorder's, shared by its users. */
    qemu_recorder_mark(rec, "other", "open", NULL);

    g_assert_true(g_file_get_contents(path, &contents, NULL, NULL));
    g_assert_true(g_str_has_suffix(contents, "\n"));
    lines = g_strsplit(contents, "\n", -1);
    g_assert_cmpuint(g_strv_length(lines), ==, G_N_ELEMENTS(expect) + 2);
    g_assert_cmpstr(lines[G_N_ELEMENTS(expect) + 1], ==, "");

    for (i = 0; i < G_N_ELEMENTS(expect) + 1; i++) {
        g_autoptr(json_object) line = parse(lines[i]);
        const char *side;
        const char *dirstr;
        gint64 ts;
        json_object *msg;

        g_assert_cmpint(ho_json_get_int64(line, "ts", &ts), ==, 0);
        g_assert_cmpint(ts, >=, prev);
        g_assert_cmpint(ts, >=, t0);
        prev = ts;
        g_assert_cmpint(ho_json_get_string(line, "side", &side), ==, 0);
        g_assert_cmpint(ho_json_get_string(line, "dir", &dirstr), ==, 0);
        if (i == G_N_ELEMENTS(expect)) {
            g_assert_cmpstr(side, ==, "other");
            g_assert_cmpstr(dirstr, ==, "open");
            g_assert_cmpint(json_object_object_length(line), ==, 3);
            continue;
        }
        g_assert_cmpstr(side, ==, "test");
        g_assert_cmpstr(dirstr, ==, expect[i][0]);
        if (g_str_equal(dirstr, "open")) {
            g_assert_cmpint(json_object_object_length(line), ==, 3);
        } else if (g_str_equal(dirstr, "close")) {
            const char *reason;

            g_assert_cmpint(ho_json_get_string(line, "reason", &reason), ==, 0);
            g_assert_true(g_str_has_prefix(reason, expect[i][2]));
        } else if (!expect[i][1]) {
            const char *raw;

            g_assert_cmpint(ho_json_get_string(line, "raw", &raw), ==, 0);
            g_assert_cmpstr(raw, ==, "not json");
            g_assert_false(json_object_object_get_ex(line, "msg", NULL));
        } else {
            json_object *member;

            g_assert_cmpint(ho_json_get_object(line, "msg", &msg), ==, 0);
            g_assert_true(json_object_object_get_ex(msg, expect[i][1], &member));
            if (expect[i][2])
                g_assert_cmpstr(json_object_get_string(member), ==, expect[i][2]);
        }
    }
    /* The recorded command is what was sent, as a JSON value. */
    {
        g_autoptr(json_object) line = parse(lines[4]);
        json_object *msg = json_object_object_get(line, "msg");

        assert_json(json_object_object_get(msg, "arguments"), "{\"verbose\": true}");
        g_assert_true(
            ho_json_equal(json_object_object_get(msg, "id"), json_object_object_get(c, "id")));
    }
    {
        g_autoptr(json_object) line = parse(lines[6]);

        assert_json(json_object_object_get(line, "msg"),
                    "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": "
                    "\"STOP\"}");
    }
    reply_clear(&r);
}

static void
test_recorder_direct(void)
{
    g_autofree char *dir = test_make_tmpdir("qemumonitortest");
    g_autofree char *path = g_build_filename(dir, "rec.jsonl", NULL);
    g_autofree char *missing = g_build_filename(dir, "nodir", "rec.jsonl", NULL);
    g_autofree char *contents = NULL;
    g_auto(GStrv) lines = NULL;
    const char *pretty = "{ \"execute\" : \"stop\", \"id\": \"a/b\" }XYZ";
    QemuRecorder *rec;
    QemuRecorder *rec2;
    const HoError *err;
    static const char *const expected[] = {
        "{\"side\":\"src\",\"dir\":\"send\",\"msg\":{\"execute\":\"stop\",\"id\":\"a/b\"}}",
        "{\"side\":\"src\",\"dir\":\"recv\",\"raw\":\"{\\\"return\\\": \"}",
        "{\"side\":\"src\",\"dir\":\"recv\",\"raw\":\"{} {}\"}",
        "{\"side\":\"dst\",\"dir\":\"recv\",\"msg\":[1,\"\xc3\xa9\"]}",
        "{\"side\":\"dst\",\"dir\":\"close\",\"reason\":\"gone\"}",
        "{\"side\":\"src\",\"dir\":\"close\"}",
    };
    guint i;

    ho_error_reset();
    g_assert_null(qemu_recorder_open(missing));
    err = ho_error_last();
    g_assert_nonnull(err);
    g_assert_cmpint(err->code, ==, HO_ERR_SYSTEM);
    g_assert_nonnull(strstr(err->message, missing));
    ho_error_reset();

    rec = qemu_recorder_open(path);
    g_assert_nonnull(rec);
    /* Pretty input is recorded compact; only len bytes count. */
    qemu_recorder_message(rec, "src", "send", pretty, strlen(pretty) - 3);
    qemu_recorder_message(rec, "src", "recv", "{\"return\": ", 11);
    qemu_recorder_message(rec, "src", "recv", "{} {}", 5);
    qemu_recorder_unref(rec);

    /* A second recorder on the same file appends. */
    rec = qemu_recorder_open(path);
    g_assert_nonnull(rec);
    rec2 = qemu_recorder_ref(rec);
    qemu_recorder_message(rec2, "dst", "recv", "[1, \"\\u00e9\"]\r\n", 15);
    qemu_recorder_unref(rec2);
    qemu_recorder_mark(rec, "dst", "close", "gone");
    qemu_recorder_mark(rec, "src", "close", NULL);
    qemu_recorder_unref(rec);
    qemu_recorder_unref(NULL);
    qemu_recorder_message(NULL, "src", "send", "{}", 2);

    g_assert_true(g_file_get_contents(path, &contents, NULL, NULL));
    lines = g_strsplit(contents, "\n", -1);
    g_assert_cmpuint(g_strv_length(lines), ==, G_N_ELEMENTS(expected) + 1);
    for (i = 0; i < G_N_ELEMENTS(expected); i++) {
        /* Strip the timestamp, checked by test_recorder, and compare text. */
        const char *comma = strchr(lines[i], ',');
        g_autofree char *rest = NULL;

        g_assert_true(g_str_has_prefix(lines[i], "{\"ts\":"));
        g_assert_nonnull(comma);
        rest = g_strconcat("{", comma + 1, NULL);
        g_assert_cmpstr(rest, ==, expected[i]);
    }
}

/* ---- the synchronous helpers, against a fake QEMU in a thread ----------- */

typedef struct {
    int fd;
    bool greet;
} ThreadFake;

/* Blocking fake QEMU: greeting, then per command: qmp_capabilities and
 * query-status succeed, "fail" gets a QMP error, "hang" no reply. Ends at
 * EOF. */
static gpointer
thread_fake_run(gpointer data)
{
    ThreadFake *t = data;
    g_autoptr(GString) in = g_string_new(NULL);
    char buf[4096];
    const char *greeting = GREETING "\r\n";

    if (t->greet)
        g_assert_cmpint(write(t->fd, greeting, strlen(greeting)), ==, strlen(greeting));
    for (;;) {
        char *nl;
        ssize_t n;

        while ((nl = strchr(in->str, '\n'))) {
            g_autoptr(json_object) cmd = ho_json_parse(in->str, nl - in->str);
            g_autofree char *idtext = NULL;
            g_autofree char *reply = NULL;
            const char *name;

            g_assert_nonnull(cmd);
            g_string_erase(in, 0, nl - in->str + 1);
            g_assert_cmpint(ho_json_get_string(cmd, "execute", &name), ==, 0);
            idtext = ho_json_to_string(json_object_object_get(cmd, "id"));
            if (g_str_equal(name, "hang"))
                continue;
            if (g_str_equal(name, "fail"))
                reply = g_strdup_printf("{\"error\": {\"class\": \"GenericError\", \"desc\": "
                                        "\"failed as asked\"}, \"id\": %s}\r\n",
                                        idtext);
            else if (g_str_equal(name, "query-status"))
                reply = g_strdup_printf("{\"return\": {\"status\": \"running\", \"running\": "
                                        "true}, \"id\": %s}\r\n",
                                        idtext);
            else
                reply = g_strdup_printf("{\"return\": {}, \"id\": %s}\r\n", idtext);
            g_assert_cmpint(send(t->fd, reply, strlen(reply), MSG_NOSIGNAL), ==, strlen(reply));
        }
        n = read(t->fd, buf, sizeof(buf));
        if (n <= 0)
            break;
        g_string_append_len(in, buf, n);
    }
    close(t->fd);
    return NULL;
}

static void
check_sync(GMainContext *ctx)
{
    ThreadFake t = {.greet = true};
    g_autoptr(QemuMonitor) mon = NULL;
    g_autoptr(json_object) ret = NULL;
    GThread *thread;
    const HoError *err;
    gint64 start;
    int sv[2];

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==, 0);
    t.fd = sv[1];
    thread = g_thread_new("fake-qemu", thread_fake_run, &t);
    mon = qemu_monitor_new(sv[0], "sync", ctx, NULL, NULL);

    g_assert_cmpint(qemu_monitor_wait_ready(mon, WAIT_MS), ==, 0);
    g_assert_true(qemu_monitor_is_ready(mon));
    g_assert_cmpint(qemu_monitor_send_sync(mon, "query-status", NULL, -1, &ret, WAIT_MS), ==, 0);
    assert_json(ret, "{\"status\": \"running\", \"running\": true}");
    /* ret may be NULL. */
    g_assert_cmpint(qemu_monitor_send_sync(mon, "cont", NULL, -1, NULL, WAIT_MS), ==, 0);

    ho_error_reset();
    g_assert_cmpint(qemu_monitor_send_sync(mon, "fail", NULL, -1, NULL, WAIT_MS), ==, -1);
    err = ho_error_last();
    g_assert_nonnull(err);
    g_assert_cmpint(err->code, ==, HO_ERR_QMP);
    g_assert_cmpstr(err->qmp_class, ==, "GenericError");
    g_assert_cmpstr(err->message, ==, "failed as asked");

    /* A timeout leaves the command pending; its late completion (here at
     * unref) must be harmless. */
    ho_error_reset();
    start = g_get_monotonic_time();
    g_assert_cmpint(qemu_monitor_send_sync(mon, "hang", NULL, -1, NULL, 100), ==, -1);
    g_assert_cmpint(g_get_monotonic_time() - start, >=, 100 * 1000);
    err = ho_error_last();
    g_assert_nonnull(err);
    g_assert_cmpint(err->code, ==, HO_ERR_TIMEOUT);
    g_assert_cmpstr(err->message, ==,
                    "timed out after 100 ms waiting for QEMU monitor 'sync' to reply to 'hang'");
    g_assert_true(qemu_monitor_is_ready(mon));
    ho_error_reset();

    /* And the monitor still works. */
    g_clear_pointer(&ret, json_object_put);
    g_assert_cmpint(qemu_monitor_send_sync(mon, "query-status", NULL, -1, &ret, WAIT_MS), ==, 0);
    g_assert_nonnull(ret);

    g_clear_pointer(&mon, qemu_monitor_unref);
    (void)g_thread_join(thread);
}

static void
test_sync_default_ctx(void)
{
    check_sync(NULL);
}

static void
test_sync_private_ctx(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();

    check_sync(ctx);
}

static void
test_sync_pushed_ctx(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();

    /* NULL means the thread default, which here is not the global one. */
    g_main_context_push_thread_default(ctx);
    check_sync(NULL);
    g_main_context_pop_thread_default(ctx);
}

static void
test_wait_ready_failures(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    g_autoptr(QemuMonitor) mon = NULL;
    g_autoptr(json_object) ret = NULL;
    const HoError *err;
    int sv[2];

    /* A QEMU that never greets. */
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==, 0);
    mon = qemu_monitor_new(sv[0], "mute", ctx, NULL, NULL);
    ho_error_reset();
    g_assert_cmpint(qemu_monitor_wait_ready(mon, 50), ==, -1);
    err = ho_error_last();
    g_assert_nonnull(err);
    g_assert_cmpint(err->code, ==, HO_ERR_TIMEOUT);
    g_assert_cmpstr(err->message, ==,
                    "timed out after 50 ms waiting for QEMU monitor 'mute' to be ready");

    /* Then goes away: the close reason is the error. */
    close(sv[1]);
    ho_error_reset();
    g_assert_cmpint(qemu_monitor_wait_ready(mon, WAIT_MS), ==, -1);
    err = ho_error_last();
    g_assert_nonnull(err);
    g_assert_cmpint(err->code, ==, HO_ERR_MONITOR);
    g_assert_cmpstr(err->message, ==, "QEMU monitor 'mute' closed the connection");

    /* send_sync on the closed monitor fails with its reason, from the loop. */
    ho_error_reset();
    g_assert_cmpint(qemu_monitor_send_sync(mon, "query-status", NULL, -1, &ret, WAIT_MS), ==, -1);
    g_assert_null(ret);
    err = ho_error_last();
    g_assert_nonnull(err);
    g_assert_cmpstr(err->message, ==,
                    "cannot send 'query-status': QEMU monitor 'mute' is closed: QEMU monitor "
                    "'mute' closed the connection");
    ho_error_reset();
}

static void
test_open_unix(void)
{
    g_autofree char *dir = test_make_tmpdir("qemumonitortest");
    g_autofree char *path = g_build_filename(dir, "qmp.sock", NULL);
    g_autofree char *missing = g_build_filename(dir, "none.sock", NULL);
    g_autoptr(GMainContext) ctx = g_main_context_new();
    g_autoptr(QemuMonitor) mon = NULL;
    ThreadFake t = {.greet = true};
    GThread *thread;
    int lfd;

    ho_error_reset();
    g_assert_null(qemu_monitor_open_unix(missing, "x", ctx, NULL, NULL));
    g_assert_nonnull(ho_error_last());
    ho_error_reset();

    lfd = ho_socket_unix_listen(path, 0600, 1);
    g_assert_cmpint(lfd, >=, 0);
    mon = qemu_monitor_open_unix(path, "unix", ctx, NULL, NULL);
    g_assert_nonnull(mon);
    t.fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    g_assert_cmpint(t.fd, >=, 0);
    close(lfd);
    thread = g_thread_new("fake-qemu", thread_fake_run, &t);
    g_assert_cmpint(qemu_monitor_wait_ready(mon, WAIT_MS), ==, 0);
    g_assert_cmpint(qemu_monitor_send_sync(mon, "cont", NULL, -1, NULL, WAIT_MS), ==, 0);
    g_clear_pointer(&mon, qemu_monitor_unref);
    (void)g_thread_join(thread);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    ho_log_init();

    g_test_add_func("/monitor/handshake", test_handshake);
    g_test_add_func("/monitor/out-of-order", test_out_of_order);
    g_test_add_func("/monitor/qmp-error", test_qmp_error);
    g_test_add_func("/monitor/events", test_events);
    g_test_add_func("/monitor/fd-passing", test_fd_passing);
    g_test_add_func("/monitor/queued-before-ready", test_queued_before_ready);
    g_test_add_func("/monitor/eof-pending", test_eof_pending);
    g_test_add_func("/monitor/eof-idle", test_eof_idle);
    g_test_add_func("/monitor/eof-while-writing", test_eof_while_writing);
    g_test_add_func("/monitor/truncated-eof", test_truncated_eof);
    g_test_add_func("/monitor/malformed", test_malformed);
    g_test_add_func("/monitor/malformed-generic", test_malformed_generic);
    g_test_add_func("/monitor/not-object", test_not_object);
    g_test_add_func("/monitor/unknown-id", test_unknown_id);
    g_test_add_func("/monitor/unexpected", test_unexpected);
    g_test_add_func("/monitor/oversized", test_oversized);
    g_test_add_func("/monitor/under-limit", test_under_limit);
    g_test_add_func("/monitor/big-message", test_big_message);
    g_test_add_func("/monitor/not-greeting", test_not_greeting);
    g_test_add_func("/monitor/event-before-greeting", test_event_before_greeting);
    g_test_add_func("/monitor/caps-error", test_caps_error);
    g_test_add_func("/monitor/second-greeting", test_second_greeting);
    g_test_add_func("/monitor/greeted-twice", test_greeted_twice);
    g_test_add_func("/monitor/greeted-twice-already-complete",
                    test_greeted_twice_already_complete);
    g_test_add_func("/monitor/greeted-twice-refused", test_greeted_twice_refused);
    g_test_add_func("/monitor/close-by-us", test_close_by_us);
    g_test_add_func("/monitor/close-in-callback", test_close_in_callback);
    g_test_add_func("/monitor/unref-in-callback", test_unref_in_callback);
    g_test_add_func("/monitor/unref-pending", test_unref_pending);
    g_test_add_func("/monitor/recorder", test_recorder);
    g_test_add_func("/monitor/recorder-direct", test_recorder_direct);
    g_test_add_func("/monitor/sync-default-ctx", test_sync_default_ctx);
    g_test_add_func("/monitor/sync-private-ctx", test_sync_private_ctx);
    g_test_add_func("/monitor/sync-pushed-ctx", test_sync_pushed_ctx);
    g_test_add_func("/monitor/wait-ready-failures", test_wait_ready_failures);
    g_test_add_func("/monitor/open-unix", test_open_unix);

    return g_test_run();
}
