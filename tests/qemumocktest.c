/*
 * The transcript-playing mock QMP server, driven by the real monitor
 * client (and by a raw socket client where a test needs a client that
 * misbehaves or picks its own ids).
 */
#define HO_LOG_MODULE "tests.mocktest"

#include <errno.h>
#include <glib-unix.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ho_error.h"
#include "ho_json.h"
#include "ho_log.h"
#include "ho_socket.h"
#include "qemu_mock.h"
#include "qemu_monitor.h"
#include "testutils.h"

#define WAIT_MS 5000

/* ---- a monitor client ------------------------------------------------- */

typedef struct {
    bool ready;
    bool closed;
    char *closed_msg;
    guint nevents;
    char *last_event;
    gint64 last_event_ts;
} MonState;

static void
mon_state_clear(MonState *st)
{
    g_free(st->closed_msg);
    g_free(st->last_event);
}

static void
on_ready(QemuMonitor *mon, json_object *greeting, void *opaque)
{
    ((MonState *)opaque)->ready = true;
}

static void
on_closed(QemuMonitor *mon, const HoError *err, void *opaque)
{
    MonState *st = opaque;

    st->closed = true;
    g_free(st->closed_msg);
    st->closed_msg = g_strdup(err ? err->message : "");
}

static const QemuMonitorCallbacks mon_cbs = {.ready = on_ready, .closed = on_closed};

static void
on_event(QemuMonitor *mon, const char *name, json_object *data, gint64 qemu_ts_us,
         gint64 recv_ts_us, void *opaque)
{
    MonState *st = opaque;

    st->nevents++;
    g_free(st->last_event);
    st->last_event = g_strdup(name);
    st->last_event_ts = qemu_ts_us;
}

static QemuMonitor *
mon_open(QemuMock *mock, const char *side, GMainContext *ctx, MonState *st)
{
    QemuMonitor *mon =
        qemu_monitor_open_unix(qemu_mock_socket_path(mock, side), side, ctx, &mon_cbs, st);

    g_assert_nonnull(mon);
    qemu_monitor_subscribe(mon, NULL, on_event, st);
    if (qemu_monitor_wait_ready(mon, WAIT_MS) < 0)
        g_error("monitor not ready: %s (mock: %s)", ho_error_last_message(),
                qemu_mock_failure(mock) ? qemu_mock_failure(mock) : "no failure");
    g_assert_true(st->ready);
    return mon;
}

typedef struct {
    bool done;
    json_object *ret;
    char *error;
} Reply;

static void
on_reply(QemuMonitor *mon, json_object *ret, const HoError *err, void *opaque)
{
    Reply *r = opaque;

    r->done = true;
    r->ret = ret ? json_object_get(ret) : NULL;
    r->error = err ? g_strdup(err->message) : NULL;
}

static void
reply_clear(Reply *r)
{
    json_object_put(r->ret);
    g_free(r->error);
}

static json_object *
args_parse(const char *text)
{
    json_object *obj = ho_json_parse(text, strlen(text));

    g_assert_nonnull(obj);
    return obj;
}

static const char *
ret_str(json_object *ret, const char *key)
{
    const char *s = NULL;

    g_assert_cmpint(ho_json_get_string(ret, key, &s), ==, 0);
    return s;
}

/* Iterate until the mock records a failure; the failure text. */
static const char *
wait_failure(QemuMock *mock, GMainContext *ctx)
{
    gint64 end = g_get_monotonic_time() + WAIT_MS * G_TIME_SPAN_MILLISECOND;

    while (!qemu_mock_failure(mock) && g_get_monotonic_time() < end) {
        bool never = false;
        (void)test_iterate_until(ctx, &never, 20);
    }
    g_assert_nonnull(qemu_mock_failure(mock));
    return qemu_mock_failure(mock);
}

static void
assert_contains(const char *haystack, const char *needle)
{
    if (!haystack || !strstr(haystack, needle)) {
        g_test_message("expected to find:\n%s\nin:\n%s", needle, haystack ? haystack : "(null)");
        g_test_fail();
    }
}

/* ---- a raw client ----------------------------------------------------- */

typedef struct {
    GMainContext *ctx;
    int fd;
    GString *in;
    GSource *src;
    bool eof;
    bool has_line;
} RawClient;

static gboolean
raw_readable(gint fd, GIOCondition cond, gpointer opaque)
{
    RawClient *raw = opaque;
    char buf[4096];
    ssize_t n;

    while ((n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
        g_string_append_len(raw->in, buf, n);
    raw->has_line = memchr(raw->in->str, '\n', raw->in->len) != NULL;
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        raw->eof = true;
        g_source_unref(raw->src);
        raw->src = NULL;
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

static RawClient *
raw_open(QemuMock *mock, const char *side, GMainContext *ctx)
{
    RawClient *raw = g_new0(RawClient, 1);

    raw->ctx = ctx;
    raw->in = g_string_new(NULL);
    raw->fd = ho_socket_unix_connect(qemu_mock_socket_path(mock, side));
    g_assert_cmpint(raw->fd, >=, 0);
    g_assert_cmpint(ho_socket_set_nonblock(raw->fd, true), ==, 0);
    raw->src = g_unix_fd_source_new(raw->fd, G_IO_IN | G_IO_HUP | G_IO_ERR);
    g_source_set_callback(raw->src, G_SOURCE_FUNC(raw_readable), raw, NULL);
    g_source_attach(raw->src, ctx);
    return raw;
}

static void
raw_close(RawClient *raw)
{
    if (!raw)
        return;
    if (raw->src) {
        g_source_destroy(raw->src);
        g_source_unref(raw->src);
    }
    if (raw->fd >= 0)
        close(raw->fd);
    g_string_free(raw->in, TRUE);
    g_free(raw);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(RawClient, raw_close)

/* The next line from the mock, parsed; NULL at EOF. */
static json_object *
raw_read(RawClient *raw)
{
    char *nl;
    json_object *obj;

    if (!raw->has_line && !raw->eof)
        g_assert_true(test_iterate_until(raw->ctx, &raw->has_line, WAIT_MS) || raw->eof);
    if (!(nl = memchr(raw->in->str, '\n', raw->in->len)))
        return NULL;
    obj = ho_json_parse(raw->in->str, nl - raw->in->str);
    g_assert_nonnull(obj);
    g_string_erase(raw->in, 0, nl - raw->in->str + 1);
    raw->has_line = memchr(raw->in->str, '\n', raw->in->len) != NULL;
    return obj;
}

static void
raw_write(RawClient *raw, const char *text)
{
    size_t len = strlen(text);
    ssize_t n = send(raw->fd, text, len, MSG_NOSIGNAL);

    g_assert_cmpint(n, ==, (ssize_t)len);
}

/* ---- tests ------------------------------------------------------------ */

static void
test_simple(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    g_autoptr(QemuMock) mock = qemu_mock_new("mock-simple.jsonl", ctx);
    g_autoptr(json_object) ret = NULL;
    g_autoptr(QemuMonitor) mon = NULL;
    MonState st = {0};
    bool stop_seen = false;
    const char *const *sides;
    gint64 now;

    g_assert_nonnull(mock);
    sides = qemu_mock_sides(mock);
    g_assert_cmpstr(sides[0], ==, "src");
    g_assert_null(sides[1]);
    g_assert_null(qemu_mock_socket_path(mock, "dst"));
    g_assert_false(qemu_mock_done(mock));

    mon = mon_open(mock, "src", ctx, &st);
    g_assert_cmpint(qemu_monitor_send_sync(mon, "query-status", NULL, -1, &ret, WAIT_MS), ==, 0);
    g_assert_cmpstr(ret_str(ret, "status"), ==, "running");

    g_assert_cmpint(qemu_mock_run(mock, WAIT_MS), ==, 0);
    g_assert_true(qemu_mock_done(mock));
    g_assert_null(qemu_mock_failure(mock));

    stop_seen = st.nevents > 0;
    if (!stop_seen) {
        gint64 end = g_get_monotonic_time() + WAIT_MS * G_TIME_SPAN_MILLISECOND;
        while (st.nevents == 0 && g_get_monotonic_time() < end)
            g_main_context_iteration(ctx, TRUE);
    }
    g_assert_cmpuint(st.nevents, ==, 1);
    g_assert_cmpstr(st.last_event, ==, "STOP");
    /* The recorded 2023 timestamp was replaced by the current time. */
    now = g_get_real_time();
    g_assert_cmpint(st.last_event_ts, >, now - 60 * G_USEC_PER_SEC);
    g_assert_cmpint(st.last_event_ts, <=, now);
    mon_state_clear(&st);
}

static void
test_wrong_argument(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    g_autoptr(QemuMock) mock = qemu_mock_new("mock-mirror.jsonl", ctx);
    g_autoptr(QemuMonitor) mon = NULL;
    MonState st = {0};
    Reply r = {0};
    const char *msg;

    g_assert_nonnull(mock);
    mon = mon_open(mock, "src", ctx, &st);
    qemu_monitor_send(mon, "blockdev-mirror",
                      args_parse("{\"job-id\":\"mirror-vda\",\"device\":\"libvirt-1-format\","
                                 "\"target\":\"migration-vda\",\"sync\":\"top\",\"speed\":0}"),
                      -1, on_reply, &r);
    ho_error_reset();
    g_assert_cmpint(qemu_mock_run(mock, WAIT_MS), ==, -1);
    msg = ho_error_last_message();
    g_assert_cmpstr(msg, ==, qemu_mock_failure(mock));
    g_assert_true(g_str_has_prefix(
        msg, "mock-mirror.jsonl:8: side 'src': the command differs from the transcript\n"
             "expected:\n{\n"));
    assert_contains(msg, "\nactual:\n{\n");
    assert_contains(msg, "\"sync\":\"top\"");
    g_assert_true(g_str_has_suffix(msg, "\ndifferences:\n"
                                        "  arguments.sync: expected \"full\", got \"top\"\n"
                                        "  arguments.auto-finalize: missing, expected true\n"
                                        "  arguments.speed: not expected, got 0"));
    /* The mock stopped answering. */
    g_assert_false(r.done);
    g_assert_false(qemu_mock_done(mock));
    /* Pending commands complete when the monitor goes. */
    g_clear_pointer(&mon, qemu_monitor_unref);
    reply_clear(&r);
    mon_state_clear(&st);
}

static void
test_extra_command(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    g_autoptr(QemuMock) mock = qemu_mock_new("mock-simple.jsonl", ctx);
    g_autoptr(QemuMonitor) mon = NULL;
    MonState st = {0};
    Reply r = {0};

    g_assert_nonnull(mock);
    mon = mon_open(mock, "src", ctx, &st);
    g_assert_cmpint(qemu_monitor_send_sync(mon, "query-status", NULL, -1, NULL, WAIT_MS), ==, 0);
    qemu_monitor_send(mon, "query-name", NULL, -1, on_reply, &r);
    g_assert_cmpstr(wait_failure(mock, ctx), ==,
                    "mock-simple.jsonl: side 'src': unexpected command after end of "
                    "transcript: {\"execute\":\"query-name\",\"id\":\"h3\"}");
    g_assert_cmpint(qemu_mock_run(mock, WAIT_MS), ==, -1);
    g_assert_false(qemu_mock_done(mock));
    /* Pending commands complete when the monitor goes. */
    g_clear_pointer(&mon, qemu_monitor_unref);
    reply_clear(&r);
    mon_state_clear(&st);
}

static void
test_missing_command(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    g_autoptr(QemuMock) mock = qemu_mock_new("mock-simple.jsonl", ctx);
    g_autoptr(QemuMonitor) mon = NULL;
    MonState st = {0};

    g_assert_nonnull(mock);
    mon = mon_open(mock, "src", ctx, &st);
    ho_error_reset();
    g_assert_cmpint(qemu_mock_run(mock, 300), ==, -1);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_TIMEOUT);
    g_assert_cmpstr(ho_error_last_message(), ==,
                    "timed out after 300 ms at mock-simple.jsonl:9: side 'src' waiting for the "
                    "command {\"execute\":\"query-status\",\"id\":\"h2\"}");
    /* A timeout is not a failure of the transcript: the client may go on. */
    g_assert_null(qemu_mock_failure(mock));
    g_assert_cmpint(qemu_monitor_send_sync(mon, "query-status", NULL, -1, NULL, WAIT_MS), ==, 0);
    g_assert_cmpint(qemu_mock_run(mock, WAIT_MS), ==, 0);
    mon_state_clear(&st);
}

static void
test_early_disconnect(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    g_autoptr(QemuMock) mock = qemu_mock_new("mock-simple.jsonl", ctx);
    QemuMonitor *mon;
    MonState st = {0};

    g_assert_nonnull(mock);
    mon = mon_open(mock, "src", ctx, &st);
    qemu_monitor_unref(mon);
    g_assert_cmpstr(wait_failure(mock, ctx), ==,
                    "mock-simple.jsonl:9: side 'src': the client disconnected; expected "
                    "{\"execute\":\"query-status\",\"id\":\"h2\"}");
    mon_state_clear(&st);
}

static void
test_placeholders(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    g_autoptr(QemuMock) mock = qemu_mock_new("mock-placeholders.jsonl", ctx);
    g_autoptr(QemuMonitor) mon = NULL;
    g_autoptr(json_object) ret = NULL;
    json_object *node;
    json_object *port;
    MonState st = {0};

    g_assert_nonnull(mock);
    qemu_mock_bind(mock, "host", "192.0.2.7");
    g_assert_cmpstr(qemu_mock_lookup(mock, "host"), ==, "192.0.2.7");
    g_assert_null(qemu_mock_lookup(mock, "node"));
    mon = mon_open(mock, "src", ctx, &st);

    g_assert_cmpint(
        qemu_monitor_send_sync(mon, "blockdev-add",
                               args_parse("{\"driver\":\"nbd\",\"node-name\":\"migration-vda\","
                                          "\"server\":{\"type\":\"inet\",\"host\":\"192.0.2.7\","
                                          "\"port\":10809},\"export\":\"drive-virtio-disk0\"}"),
                               -1, NULL, WAIT_MS),
        ==, 0);
    g_assert_cmpstr(qemu_mock_lookup(mock, "node"), ==, "migration-vda");
    g_assert_cmpstr(qemu_mock_lookup(mock, "disk"), ==, "virtio-disk0");
    g_assert_cmpstr(qemu_mock_lookup(mock, "port"), ==, "10809");
    g_assert_cmpint(
        qemu_monitor_send_sync(mon, "blockdev-mirror",
                               args_parse("{\"job-id\":\"mirror-virtio-disk0\","
                                          "\"device\":\"libvirt-1-format\","
                                          "\"target\":\"migration-vda\",\"sync\":\"full\"}"),
                               -1, NULL, WAIT_MS),
        ==, 0);
    g_assert_cmpstr(qemu_mock_lookup(mock, "device"), ==, "libvirt-1-format");

    /* Substitution into a reply: embedded as text, whole with its type. */
    g_assert_cmpint(qemu_monitor_send_sync(mon, "query-named-block-nodes",
                                           args_parse("{\"flat\":true}"), -1, &ret, WAIT_MS),
                    ==, 0);
    g_assert_true(json_object_is_type(ret, json_type_array));
    node = json_object_array_get_idx(ret, 0);
    g_assert_cmpstr(ret_str(node, "node-name"), ==, "migration-vda");
    g_assert_cmpstr(ret_str(node, "file"), ==, "nbd://192.0.2.7:10809/drive-virtio-disk0");
    g_assert_cmpstr(ret_str(node, "mirror"), ==, "libvirt-1-format");
    g_assert_true(json_object_object_get_ex(node, "port", &port));
    g_assert_true(json_object_is_type(port, json_type_int));
    g_assert_cmpint(json_object_get_int64(port), ==, 10809);

    g_assert_cmpint(qemu_mock_run(mock, WAIT_MS), ==, 0);
    mon_state_clear(&st);
}

static void
test_placeholder_mismatch(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    g_autoptr(QemuMock) mock = qemu_mock_new("mock-placeholders.jsonl", ctx);
    g_autoptr(QemuMonitor) mon = NULL;
    MonState st = {0};
    Reply r = {0};
    const char *msg;

    g_assert_nonnull(mock);
    mon = mon_open(mock, "src", ctx, &st);
    g_assert_cmpint(
        qemu_monitor_send_sync(mon, "blockdev-add",
                               args_parse("{\"driver\":\"nbd\",\"node-name\":\"migration-vda\","
                                          "\"server\":{\"type\":\"inet\",\"host\":\"h\","
                                          "\"port\":\"10809\"},\"export\":\"drive-vda\"}"),
                               -1, NULL, WAIT_MS),
        ==, 0);
    qemu_monitor_send(mon, "blockdev-mirror",
                      args_parse("{\"job-id\":\"mirror-vdb\",\"device\":\"fmt\","
                                 "\"target\":\"other-node\",\"sync\":\"full\"}"),
                      -1, on_reply, &r);
    msg = wait_failure(mock, ctx);
    g_assert_true(g_str_has_prefix(
        msg, "mock-placeholders.jsonl:13: side 'src': the command differs from the transcript"));
    g_assert_true(g_str_has_suffix(
        msg, "\ndifferences:\n"
             "  arguments.job-id: expected \"mirror-${disk}\" (${disk} is bound to \"vda\"), "
             "got \"mirror-vdb\"\n"
             "  arguments.target: expected \"${node}\" (bound to \"migration-vda\"), "
             "got \"other-node\""));
    /* Nothing from a failed match is bound. */
    g_assert_null(qemu_mock_lookup(mock, "device"));
    g_assert_cmpstr(qemu_mock_lookup(mock, "port"), ==, "10809");
    /* Pending commands complete when the monitor goes. */
    g_clear_pointer(&mon, qemu_monitor_unref);
    reply_clear(&r);
    mon_state_clear(&st);
}

static char *
write_transcript(const char *dir, const char *name, const char *text)
{
    char *path = g_build_filename(dir, name, NULL);

    g_assert_true(g_file_set_contents(path, text, -1, NULL));
    return path;
}

static void
test_substitution(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    g_autofree char *dir = test_make_tmpdir("mock");
    g_autofree char *path = write_transcript(
        dir, "greeting.jsonl",
        "# a greeting with placeholders the test binds\n"
        "{\"side\":\"src\",\"dir\":\"recv\",\"msg\":{\"QMP\":{\"version\":{\"qemu\":"
        "{\"micro\":\"${micro}\",\"minor\":2,\"major\":7},\"package\":\"Debian ${pkg}-${micro}\"},"
        "\"capabilities\":[]}}}\n");
    g_autofree char *expect_err =
        g_strdup_printf("%s:2: side 'src': placeholder ${micro} is used before it is bound", path);
    g_autoptr(json_object) greeting = NULL;
    json_object *ver;
    json_object *micro;

    {
        g_autoptr(QemuMock) mock = qemu_mock_new(path, ctx);
        g_autoptr(RawClient) raw = NULL;

        g_assert_nonnull(mock);
        qemu_mock_bind(mock, "micro", "22");
        qemu_mock_bind(mock, "pkg", "1:7.2");
        raw = raw_open(mock, "src", ctx);
        g_assert_cmpint(qemu_mock_run(mock, WAIT_MS), ==, 0);
        greeting = raw_read(raw);
        g_assert_nonnull(greeting);
        g_assert_true(json_object_object_get_ex(greeting, "QMP", &ver));
        g_assert_true(json_object_object_get_ex(ver, "version", &ver));
        g_assert_cmpstr(ret_str(ver, "package"), ==, "Debian 1:7.2-22");
        g_assert_true(json_object_object_get_ex(ver, "qemu", &ver));
        g_assert_true(json_object_object_get_ex(ver, "micro", &micro));
        /* Bound with qemu_mock_bind: a string. */
        g_assert_true(json_object_is_type(micro, json_type_string));
        g_assert_cmpstr(json_object_get_string(micro), ==, "22");
    }
    {
        g_autoptr(QemuMock) mock = qemu_mock_new(path, ctx);
        g_autoptr(RawClient) raw = NULL;

        g_assert_nonnull(mock);
        raw = raw_open(mock, "src", ctx);
        g_assert_cmpstr(wait_failure(mock, ctx), ==, expect_err);
    }
}

static void
test_two_sides(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    g_autoptr(QemuMock) mock = qemu_mock_new("mock-two-sides.jsonl", ctx);
    g_autoptr(QemuMonitor) src = NULL;
    g_autoptr(QemuMonitor) dst = NULL;
    MonState sst = {0};
    MonState dst_st = {0};
    const char *const *sides;
    bool never = false;

    g_assert_nonnull(mock);
    sides = qemu_mock_sides(mock);
    g_assert_cmpstr(sides[0], ==, "src");
    g_assert_cmpstr(sides[1], ==, "dst");
    g_assert_null(sides[2]);
    g_assert_cmpstr(qemu_mock_socket_path(mock, "src"), !=, qemu_mock_socket_path(mock, "dst"));

    /* Both connect before either is ready: the transcript interleaves
     * their negotiations, and src's reply at line 11 waits for dst's
     * qmp_capabilities at line 10. */
    src = qemu_monitor_open_unix(qemu_mock_socket_path(mock, "src"), "src", ctx, &mon_cbs, &sst);
    dst =
        qemu_monitor_open_unix(qemu_mock_socket_path(mock, "dst"), "dst", ctx, &mon_cbs, &dst_st);
    g_assert_nonnull(src);
    g_assert_nonnull(dst);
    qemu_monitor_subscribe(src, NULL, on_event, &sst);
    qemu_monitor_subscribe(dst, NULL, on_event, &dst_st);
    g_assert_cmpint(qemu_monitor_wait_ready(src, WAIT_MS), ==, 0);
    g_assert_cmpint(qemu_monitor_wait_ready(dst, WAIT_MS), ==, 0);
    /* RESUME on dst is held while src has not sent migrate-continue. */
    (void)test_iterate_until(ctx, &never, 150);
    g_assert_cmpuint(dst_st.nevents, ==, 0);
    ho_error_reset();
    g_assert_cmpint(qemu_mock_run(mock, 100), ==, -1);
    assert_contains(ho_error_last_message(),
                    "mock-two-sides.jsonl:14: side 'src' waiting for the command "
                    "{\"execute\":\"migrate-continue\"");
    assert_contains(ho_error_last_message(),
                    "; mock-two-sides.jsonl:16: side 'dst' holding its recv until the command "
                    "at mock-two-sides.jsonl:14 (side 'src') arrives");

    g_assert_cmpint(qemu_monitor_send_sync(src, "migrate-continue",
                                           args_parse("{\"state\":\"pre-switchover\"}"), -1, NULL,
                                           WAIT_MS),
                    ==, 0);
    g_assert_cmpint(qemu_mock_run(mock, WAIT_MS), ==, 0);
    if (dst_st.nevents == 0) {
        gint64 end = g_get_monotonic_time() + WAIT_MS * G_TIME_SPAN_MILLISECOND;
        while (dst_st.nevents == 0 && g_get_monotonic_time() < end)
            g_main_context_iteration(ctx, TRUE);
    }
    g_assert_cmpuint(dst_st.nevents, ==, 1);
    g_assert_cmpstr(dst_st.last_event, ==, "RESUME");
    g_assert_cmpuint(sst.nevents, ==, 0);
    mon_state_clear(&sst);
    mon_state_clear(&dst_st);
}

static void
test_close(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    g_autoptr(QemuMock) mock = qemu_mock_new("mock-close.jsonl", ctx);
    g_autoptr(QemuMonitor) mon = NULL;
    MonState st = {0};

    g_assert_nonnull(mock);
    mon = mon_open(mock, "src", ctx, &st);
    g_assert_cmpint(qemu_monitor_send_sync(mon, "quit", NULL, -1, NULL, WAIT_MS), ==, 0);
    g_assert_true(test_iterate_until(ctx, &st.closed, WAIT_MS));
    g_assert_true(qemu_monitor_is_closed(mon));
    g_assert_cmpstr(st.last_event, ==, "SHUTDOWN");
    g_assert_cmpint(qemu_mock_run(mock, WAIT_MS), ==, 0);
    mon_state_clear(&st);
}

static void
test_reconnect(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    g_autoptr(QemuMock) mock = qemu_mock_new("mock-reconnect.jsonl", ctx);
    g_autoptr(QemuMonitor) first = NULL;
    g_autoptr(QemuMonitor) second = NULL;
    g_autoptr(json_object) ret = NULL;
    MonState st1 = {0};
    MonState st2 = {0};

    g_assert_nonnull(mock);
    first = mon_open(mock, "src", ctx, &st1);
    g_assert_true(test_iterate_until(ctx, &st1.closed, WAIT_MS));
    second = mon_open(mock, "src", ctx, &st2);
    g_assert_cmpint(qemu_monitor_send_sync(second, "query-status", NULL, -1, &ret, WAIT_MS), ==,
                    0);
    g_assert_cmpstr(ret_str(ret, "status"), ==, "running");
    g_assert_cmpint(qemu_mock_run(mock, WAIT_MS), ==, 0);
    mon_state_clear(&st1);
    mon_state_clear(&st2);
}

static void
test_schema_violation(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    g_autoptr(QemuMock) mock = qemu_mock_new("mock-schema.jsonl", ctx);
    g_autoptr(QemuMonitor) mon = NULL;
    MonState st = {0};
    Reply r = {0};
    const char *msg;

    g_assert_nonnull(mock);
    mon = mon_open(mock, "src", ctx, &st);
    g_assert_cmpint(
        qemu_monitor_send_sync(mon, "migrate-set-capabilities",
                               args_parse("{\"capabilities\":[{\"capability\":\"events\","
                                          "\"state\":true},{\"capability\":"
                                          "\"pause-before-switchover\",\"state\":true}]}"),
                               -1, NULL, WAIT_MS),
        ==, 0);
    qemu_monitor_send(mon, "migrate",
                      args_parse("{\"channels\":[{\"channel-type\":\"main\",\"addr\":"
                                 "{\"transport\":\"socket\",\"type\":\"inet\","
                                 "\"host\":\"127.0.0.1\",\"port\":\"4444\"}}]}"),
                      -1, on_reply, &r);
    msg = wait_failure(mock, ctx);
    g_assert_true(g_str_has_prefix(
        msg, "mock-schema.jsonl:12: side 'src': command violates schema qemu-7.2: migrate: "
             "unknown member 'channels' (expected one of uri, blk, inc, detach, resume)\n"
             "actual:\n"));
    /* Pending commands complete when the monitor goes. */
    g_clear_pointer(&mon, qemu_monitor_unref);
    reply_clear(&r);
    mon_state_clear(&st);
}

static void
test_ids_monitor(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    g_autoptr(QemuMock) mock = qemu_mock_new("mock-ids.jsonl", ctx);
    g_autoptr(QemuMonitor) mon = NULL;
    MonState st = {0};
    Reply name = {0};
    Reply status = {0};

    g_assert_nonnull(mock);
    mon = mon_open(mock, "src", ctx, &st);
    qemu_monitor_send(mon, "query-name", NULL, -1, on_reply, &name);
    qemu_monitor_send(mon, "query-status", NULL, -1, on_reply, &status);
    g_assert_cmpint(qemu_mock_run(mock, WAIT_MS), ==, 0);
    g_assert_true(test_iterate_until(ctx, &name.done, WAIT_MS));
    g_assert_true(test_iterate_until(ctx, &status.done, WAIT_MS));
    g_assert_null(name.error);
    g_assert_null(status.error);
    g_assert_cmpstr(ret_str(name.ret, "name"), ==, "guest-a");
    g_assert_cmpstr(ret_str(status.ret, "status"), ==, "paused");
    g_assert_false(st.closed);
    reply_clear(&name);
    reply_clear(&status);
    mon_state_clear(&st);
}

static void
test_ids_raw(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    g_autoptr(QemuMock) mock = qemu_mock_new("mock-ids.jsonl", ctx);
    g_autoptr(RawClient) raw = NULL;
    g_autoptr(json_object) greeting = NULL;
    g_autoptr(json_object) caps = NULL;
    g_autoptr(json_object) first = NULL;
    g_autoptr(json_object) second = NULL;
    json_object *id;
    g_autofree char *idtext = NULL;

    g_assert_nonnull(mock);
    raw = raw_open(mock, "src", ctx);
    greeting = raw_read(raw);
    g_assert_true(json_object_object_get_ex(greeting, "QMP", NULL));
    raw_write(raw, "{\"execute\":\"qmp_capabilities\",\"id\":42}\r\n");
    caps = raw_read(raw);
    g_assert_true(json_object_object_get_ex(caps, "id", &id));
    g_assert_true(json_object_is_type(id, json_type_int));
    g_assert_cmpint(json_object_get_int64(id), ==, 42);

    /* Two in flight, in one write: no id, then an object id. */
    raw_write(raw, "{\"execute\":\"query-name\"}\n"
                   "{\"execute\":\"query-status\",\"id\":{\"a\":[1]}}\n");
    first = raw_read(raw);
    second = raw_read(raw);
    g_assert_true(json_object_object_get_ex(first, "id", &id));
    idtext = ho_json_to_string(id);
    g_assert_cmpstr(idtext, ==, "{\"a\":[1]}");
    g_assert_cmpstr(ret_str(json_object_object_get(first, "return"), "status"), ==, "paused");
    g_assert_false(json_object_object_get_ex(second, "id", NULL));
    g_assert_cmpstr(ret_str(json_object_object_get(second, "return"), "name"), ==, "guest-a");
    g_assert_cmpint(qemu_mock_run(mock, WAIT_MS), ==, 0);
}

static void
test_oversized_line(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    g_autoptr(QemuMock) mock = qemu_mock_new("mock-simple.jsonl", ctx);
    g_autoptr(RawClient) raw = NULL;
    g_autoptr(json_object) greeting = NULL;
    g_autofree char *big = g_malloc(64 * 1024);
    size_t sent = 0;
    gint64 end = g_get_monotonic_time() + WAIT_MS * G_TIME_SPAN_MILLISECOND;

    g_assert_nonnull(mock);
    raw = raw_open(mock, "src", ctx);
    greeting = raw_read(raw);
    g_assert_nonnull(greeting);
    memset(big, 'x', 64 * 1024);
    big[0] = '"';
    /* 1.5 MiB with no newline, written as the mock reads it. */
    while (sent < 3 * 512 * 1024 && !qemu_mock_failure(mock) && g_get_monotonic_time() < end) {
        ssize_t n = send(raw->fd, big + (sent ? 1 : 0), 64 * 1024 - 1, MSG_NOSIGNAL);

        if (n > 0)
            sent += n;
        else
            g_assert_true(n < 0 && (errno == EAGAIN || errno == EINTR));
        g_main_context_iteration(ctx, FALSE);
    }
    g_assert_cmpstr(wait_failure(mock, ctx), ==,
                    "mock-simple.jsonl:7: side 'src': client line over 1048576 bytes");
    g_assert_cmpint(qemu_mock_run(mock, 10), ==, -1);
}

static void
test_malformed_client(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    g_autoptr(QemuMock) mock = qemu_mock_new("mock-simple.jsonl", ctx);
    g_autoptr(RawClient) raw = NULL;
    g_autoptr(json_object) greeting = NULL;

    g_assert_nonnull(mock);
    raw = raw_open(mock, "src", ctx);
    greeting = raw_read(raw);
    raw_write(raw, "{\"exec\":\"qmp_capabilities\"}\n");
    g_assert_cmpstr(wait_failure(mock, ctx), ==,
                    "mock-simple.jsonl:7: side 'src': not a QMP command: "
                    "{\"exec\":\"qmp_capabilities\"}");
}

static void
test_delay(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    guint caps[] = {200, 30};

    for (size_t i = 0; i < G_N_ELEMENTS(caps); i++) {
        g_autoptr(QemuMock) mock = qemu_mock_new("mock-delay.jsonl", ctx);
        g_autoptr(QemuMonitor) mon = NULL;
        MonState st = {0};
        gint64 start;
        gint64 took_ms;

        g_assert_nonnull(mock);
        if (caps[i] != 200)
            qemu_mock_set_max_delay(mock, caps[i]);
        mon = mon_open(mock, "src", ctx, &st);
        start = g_get_monotonic_time();
        g_assert_cmpint(qemu_monitor_send_sync(mon, "query-status", NULL, -1, NULL, WAIT_MS), ==,
                        0);
        took_ms = (g_get_monotonic_time() - start) / 1000;
        /* Recorded: 5 s; played: the cap (the upper bound is loose for CI). */
        g_assert_cmpint(took_ms, >=, caps[i]);
        g_assert_cmpint(took_ms, <, 4000);
        g_assert_cmpint(qemu_mock_run(mock, WAIT_MS), ==, 0);
        mon_state_clear(&st);
    }
}

typedef struct {
    const char *text;
    const char *message; /* after "<path>:" */
} BadTranscript;

static const BadTranscript bad_transcripts[] = {
    {"# comment\n\n{not json\n", "3: "},
    {"{\"side\":\"src\",\"dir\":\"sideways\"}\n",
     "1: unknown \"dir\" 'sideways' (send, recv, open or close)"},
    {"{\"side\":\"../x\",\"dir\":\"open\"}\n",
     "1: a record needs \"side\": a name of letters, digits, '-', '_'"},
    {"{\"side\":\"src\",\"dir\":\"send\",\"msg\":{\"arguments\":{}}}\n",
     "1: a send record's msg needs \"execute\""},
    {"{\"side\":\"src\",\"dir\":\"recv\"}\n", "1: a recv record needs an object \"msg\""},
    {"{\"side\":\"src\",\"dir\":\"open\",\"ts\":\"now\"}\n", "1: \"ts\" must be an integer"},
    {"{\"side\":\"src\",\"dir\":\"open\"}\n{\"side\":\"src\",\"dir\":\"open\"}\n",
     "2: \"open\" on side 'src' whose connection is open (no \"close\")"},
    {"{\"side\":\"src\",\"dir\":\"send\",\"msg\":{\"execute\":\"x\",\"arguments\":"
     "{\"a\":\"${a}${b}\"}}}\n",
     "1: adjacent placeholders in '${a}${b}' cannot be matched"},
    {"{\"side\":\"src\",\"dir\":\"open\"}\n{\"meta\":{}}\n",
     "2: the \"meta\" line must be the first JSON line"},
    {"{\"meta\":{\"schema\":{\"src\":\"../etc\"}}}\n{\"side\":\"src\",\"dir\":\"open\"}\n",
     "1: schema of side 'src' must name a file in schema/"},
    {"# only comments\n", " the transcript has no records"},
};

static void
test_bad_transcripts(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    g_autofree char *dir = test_make_tmpdir("mock");

    for (size_t i = 0; i < G_N_ELEMENTS(bad_transcripts); i++) {
        g_autofree char *name = g_strdup_printf("bad-%zu.jsonl", i);
        g_autofree char *path = write_transcript(dir, name, bad_transcripts[i].text);
        g_autofree char *expect = g_strdup_printf("%s:%s", path, bad_transcripts[i].message);
        QemuMock *mock;

        ho_error_reset();
        mock = qemu_mock_new(path, ctx);
        g_assert_null(mock);
        if (!g_str_has_prefix(ho_error_last_message(), expect)) {
            g_test_message("transcript %zu: expected '%s...', got '%s'", i, expect,
                           ho_error_last_message());
            g_test_fail();
        }
    }

    /* A schema file that does not exist. */
    {
        g_autofree char *path = write_transcript(dir, "noschema.jsonl",
                                                 "{\"meta\":{\"schema\":{\"src\":\"qemu-0.1\"}}}"
                                                 "\n{\"side\":\"src\",\"dir\":\"open\"}\n");
        g_autofree char *expect = g_strdup_printf("%s: schema 'qemu-0.1' of side 'src': ", path);

        ho_error_reset();
        g_assert_null(qemu_mock_new(path, ctx));
        assert_contains(ho_error_last_message(), expect);
    }
    ho_error_reset();
    g_assert_null(qemu_mock_new("no-such-transcript.jsonl", ctx));
    assert_contains(ho_error_last_message(), "no-such-transcript.jsonl");
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    ho_log_init();

    g_test_add_func("/mock/simple", test_simple);
    g_test_add_func("/mock/wrong-argument", test_wrong_argument);
    g_test_add_func("/mock/extra-command", test_extra_command);
    g_test_add_func("/mock/missing-command", test_missing_command);
    g_test_add_func("/mock/early-disconnect", test_early_disconnect);
    g_test_add_func("/mock/placeholders", test_placeholders);
    g_test_add_func("/mock/placeholder-mismatch", test_placeholder_mismatch);
    g_test_add_func("/mock/substitution", test_substitution);
    g_test_add_func("/mock/two-sides", test_two_sides);
    g_test_add_func("/mock/close", test_close);
    g_test_add_func("/mock/reconnect", test_reconnect);
    g_test_add_func("/mock/schema-violation", test_schema_violation);
    g_test_add_func("/mock/ids-monitor", test_ids_monitor);
    g_test_add_func("/mock/ids-raw", test_ids_raw);
    g_test_add_func("/mock/oversized-line", test_oversized_line);
    g_test_add_func("/mock/malformed-client", test_malformed_client);
    g_test_add_func("/mock/delay", test_delay);
    g_test_add_func("/mock/bad-transcripts", test_bad_transcripts);
    return g_test_run();
}
