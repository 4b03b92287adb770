/*
 * Tests of the handoverd protocol library (src/rpc): server and client on
 * real UNIX and TCP sockets in a temporary directory, in one process on one
 * GLib context (a private one: a source attached to the global default
 * context would never run, and the test would fail). Malformed input comes
 * from "raw" clients written here, which send bytes exactly as a test
 * wants them. The server's log goes to a file in the temporary directory,
 * so tests check that every dropped client was logged with its reason.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <glib-unix.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ho_error.h"
#include "ho_json.h"
#include "ho_log.h"
#include "ho_rpc_client.h"
#include "ho_rpc_server.h"
#include "ho_socket.h"
#include "testutils.h"

#define WAIT_MS 5000

typedef struct {
    char *dir;
    char *sock;
    char *log_path;
    GMainContext *ctx;
    HoRpcServer *srv;

    int echo_runs;        /* test.echo handler runs */
    GPtrArray *held;      /* calls test.hold keeps unanswered */
    int later_done;       /* test.later answers given */
    bool later_connected; /* whether the last one's client was still there */

    /* client-side observations */
    int events;
    char *last_event;
    json_object *last_data;
    gint64 last_ts;
    int closed_calls;
    HoError *closed_err;
    bool nested_call; /* the event callback makes a synchronous call */
    int nested_rc;
    HoRpcConn *nested_conn;
    int sessions_closed; /* test.session: sessions whose connection closed */
} Fixture;

/* ---- the server's methods ------------------------------------------------ */

static const HoRpcArgSpec echo_args[] = {
    {"s", HO_RPC_ARG_STRING, true},
    {"b", HO_RPC_ARG_BOOL, false},
    {"i", HO_RPC_ARG_INT, false},
    {"u", HO_RPC_ARG_UINT, false},
    {"o", HO_RPC_ARG_OBJECT, false},
    {"a", HO_RPC_ARG_ARRAY, false},
    {NULL, 0, false},
};

static const HoRpcArgSpec later_args[] = {
    {"ms", HO_RPC_ARG_UINT, true},
    {"tag", HO_RPC_ARG_STRING, false},
    {NULL, 0, false},
};

static const HoRpcArgSpec fail_args[] = {
    {"code", HO_RPC_ARG_UINT, true},
    {NULL, 0, false},
};

static const HoRpcArgSpec emit_args[] = {
    {"event", HO_RPC_ARG_STRING, true},
    {NULL, 0, false},
};

static const HoRpcArgSpec no_args[] = {
    {NULL, 0, false},
};

static int
method_echo(HoRpcCall *call, json_object *params, void *opaque)
{
    Fixture *f = opaque;
    json_object *copy = NULL;

    f->echo_runs++;
    g_assert_cmpint(json_object_deep_copy(params, &copy, NULL), ==, 0);
    ho_json_add_bool(copy, "local", ho_rpc_call_is_local(call));
    ho_rpc_call_reply(call, copy);
    return 0;
}

static int
method_ok(HoRpcCall *call, json_object *params, void *opaque)
{
    ho_rpc_call_reply(call, ho_json_add_bool(json_object_new_object(), "ok", true));
    return 0;
}

static void
session_closed(gpointer data)
{
    Fixture *f = data;

    f->sessions_closed++;
}

/* Attach a session to the caller's connection (once). */
static int
method_session(HoRpcCall *call, json_object *params, void *opaque)
{
    Fixture *f = opaque;
    bool had = ho_rpc_call_get_session(call) != NULL;

    if (!had)
        ho_rpc_call_set_session(call, f, session_closed);
    g_assert_true(ho_rpc_call_get_session(call) == f);
    ho_rpc_call_reply(call, ho_json_add_bool(json_object_new_object(), "had", had));
    return 0;
}

typedef struct {
    Fixture *f;
    HoRpcCall *call;
    char *tag;
} Later;

static gboolean
later_answer(gpointer data)
{
    Later *later = data;

    later->f->later_done++;
    later->f->later_connected = ho_rpc_call_client_connected(later->call);
    g_assert_cmpstr(ho_rpc_call_method(later->call), ==, "test.later");
    ho_rpc_call_reply(later->call,
                      ho_json_add_string(json_object_new_object(), "tag", later->tag));
    g_free(later->tag);
    g_free(later);
    return G_SOURCE_REMOVE;
}

/* Answers from a timeout on the server's context, ms later. */
static int
method_later(HoRpcCall *call, json_object *params, void *opaque)
{
    Fixture *f = opaque;
    Later *later = g_new0(Later, 1);
    const char *tag = "";
    uint64_t ms = 0;
    GSource *timer;

    g_assert_cmpint(ho_json_get_uint64(params, "ms", &ms), ==, 0);
    g_assert_cmpint(ho_json_opt_string(params, "tag", &tag), >=, 0);
    later->f = f;
    later->call = call;
    later->tag = g_strdup(tag);
    timer = g_timeout_source_new((guint)ms);
    g_source_set_callback(timer, later_answer, later, NULL);
    g_source_attach(timer, f->ctx);
    g_source_unref(timer);
    return 0;
}

/* Keeps the call for the test to answer. */
static int
method_hold(HoRpcCall *call, json_object *params, void *opaque)
{
    Fixture *f = opaque;

    g_ptr_array_add(f->held, call);
    return 0;
}

static int
method_fail(HoRpcCall *call, json_object *params, void *opaque)
{
    uint64_t code = 0;

    g_assert_cmpint(ho_json_get_uint64(params, "code", &code), ==, 0);
    ho_error_report((HoErrorCode)code, "failure %s", ho_error_code_name((HoErrorCode)code));
    return -1;
}

static int
method_silent_fail(HoRpcCall *call, json_object *params, void *opaque)
{
    ho_error_reset();
    return -1;
}

static int
method_emit(HoRpcCall *call, json_object *params, void *opaque)
{
    Fixture *f = opaque;
    const char *event = NULL;

    g_assert_cmpint(ho_json_get_string(params, "event", &event), ==, 0);
    ho_rpc_server_emit_event(f->srv, event, ho_json_add_int64(json_object_new_object(), "n", 1));
    ho_rpc_call_reply(call, NULL);
    return 0;
}

/* Frees the server from inside its own dispatch, leaving the call pending. */
static int
method_shutdown(HoRpcCall *call, json_object *params, void *opaque)
{
    Fixture *f = opaque;

    g_ptr_array_add(f->held, call);
    g_clear_pointer(&f->srv, ho_rpc_server_free);
    g_assert_false(ho_rpc_call_client_connected(call));
    return 0;
}

static const HoRpcMethod test_methods[] = {
    {"test.session", method_session, no_args, HO_RPC_METHOD_LOCAL | HO_RPC_METHOD_PEER},
    {"test.echo", method_echo, echo_args, HO_RPC_METHOD_LOCAL | HO_RPC_METHOD_PEER},
    {"test.local", method_ok, no_args, HO_RPC_METHOD_LOCAL},
    {"test.peer", method_ok, no_args, HO_RPC_METHOD_PEER},
    {"test.later", method_later, later_args, HO_RPC_METHOD_LOCAL | HO_RPC_METHOD_PEER},
    {"test.hold", method_hold, no_args, HO_RPC_METHOD_LOCAL | HO_RPC_METHOD_PEER},
    {"test.fail", method_fail, fail_args, HO_RPC_METHOD_LOCAL},
    {"test.silent-fail", method_silent_fail, no_args, HO_RPC_METHOD_LOCAL},
    {"test.emit", method_emit, emit_args, HO_RPC_METHOD_LOCAL},
    {"test.shutdown", method_shutdown, no_args, HO_RPC_METHOD_LOCAL},
};

/* ---- fixture -------------------------------------------------------------- */

static json_object *
hello_info(void)
{
    json_object *info = json_object_new_object();

    ho_json_add_string(info, "daemon", "handoverd 0.1.0");
    ho_json_add_string(info, "hostname", "h1");
    ho_json_add_string(info, "host_uuid", "8f0c5a43-0000-4000-8000-000000000001");
    return info;
}

/* A server on a new context listening on DIR/sock; limits NULL: defaults. */
static Fixture *
fixture_new(const HoRpcLimits *limits)
{
    Fixture *f = g_new0(Fixture, 1);

    f->dir = test_make_tmpdir("rpc");
    f->sock = g_build_filename(f->dir, "sock", NULL);
    f->log_path = g_build_filename(f->dir, "log", NULL);
    g_assert_cmpint(ho_log_set_output(f->log_path), ==, 0);
    f->ctx = g_main_context_new();
    f->held = g_ptr_array_new();
    f->srv = ho_rpc_server_new(test_methods, G_N_ELEMENTS(test_methods), f, hello_info(), limits,
                               f->ctx);
    g_assert_nonnull(f->srv);
    g_assert_cmpint(ho_rpc_server_listen_unix(f->srv, f->sock, 0600), ==, 0);
    g_assert_true(g_file_test(f->sock, G_FILE_TEST_EXISTS));
    return f;
}

static void
fixture_drain(Fixture *f)
{
    while (g_main_context_iteration(f->ctx, FALSE))
        ;
}

static void
fixture_free(Fixture *f)
{
    guint i;

    g_clear_pointer(&f->srv, ho_rpc_server_free);
    /* The server removes its socket file. */
    g_assert_false(g_file_test(f->sock, G_FILE_TEST_EXISTS));
    /* Calls still held outlive the server: answering them frees their client. */
    for (i = 0; i < f->held->len; i++)
        ho_rpc_call_reply(g_ptr_array_index(f->held, i), NULL);
    g_ptr_array_unref(f->held);
    fixture_drain(f);
    g_main_context_unref(f->ctx);
    (void)ho_log_set_output(NULL);
    g_free(f->last_event);
    json_object_put(f->last_data);
    ho_error_free(f->closed_err);
    g_free(f->log_path);
    g_free(f->sock);
    g_free(f->dir);
    g_free(f);
}

static bool
fixture_log_contains(Fixture *f, const char *text)
{
    g_autofree char *log = NULL;

    g_assert_true(g_file_get_contents(f->log_path, &log, NULL, NULL));
    return strstr(log, text) != NULL;
}

static guint
fixture_log_count(Fixture *f, const char *text)
{
    g_autofree char *log = NULL;
    const char *p;
    guint n = 0;

    g_assert_true(g_file_get_contents(f->log_path, &log, NULL, NULL));
    for (p = strstr(log, text); p; p = strstr(p + 1, text))
        n++;
    return n;
}

typedef bool (*Pred)(Fixture *f, const void *data);

static gboolean
flag_set(gpointer data)
{
    *(bool *)data = true;
    return G_SOURCE_REMOVE;
}

/* Iterate the context until pred holds; false after WAIT_MS. */
static bool
run_until(Fixture *f, Pred pred, const void *data)
{
    GSource *timer = g_timeout_source_new(WAIT_MS);
    bool timed_out = false;
    bool ok;

    g_source_set_callback(timer, flag_set, &timed_out, NULL);
    g_source_attach(timer, f->ctx);
    while (!(ok = pred(f, data)) && !timed_out)
        g_main_context_iteration(f->ctx, TRUE);
    g_source_destroy(timer);
    g_source_unref(timer);
    return ok;
}

/* Iterate the context for ms milliseconds. */
static void
run_for(Fixture *f, guint ms)
{
    GSource *timer = g_timeout_source_new(ms);
    bool done = false;

    g_source_set_callback(timer, flag_set, &done, NULL);
    g_source_attach(timer, f->ctx);
    while (!done)
        g_main_context_iteration(f->ctx, TRUE);
    g_source_unref(timer);
}

static bool
pred_clients(Fixture *f, const void *data)
{
    return ho_rpc_server_client_count(f->srv) == GPOINTER_TO_UINT(data);
}

static void
wait_clients(Fixture *f, guint n)
{
    g_assert_true(run_until(f, pred_clients, GUINT_TO_POINTER(n)));
    g_assert_cmpuint(ho_rpc_server_client_count(f->srv), ==, n);
}

static bool
pred_int_at_least(Fixture *f, const void *data)
{
    const int *counter = ((const int *const *)data)[0];
    int want = GPOINTER_TO_INT(((const void *const *)data)[1]);

    return *counter >= want;
}

static void
wait_int(Fixture *f, const int *counter, int want)
{
    const void *data[2] = {counter, GINT_TO_POINTER(want)};

    g_assert_true(run_until(f, pred_int_at_least, data));
}

static bool
pred_held(Fixture *f, const void *data)
{
    return f->held->len >= GPOINTER_TO_UINT(data);
}

static void
wait_held(Fixture *f, guint n)
{
    g_assert_true(run_until(f, pred_held, GUINT_TO_POINTER(n)));
    g_assert_cmpuint(f->held->len, ==, n);
}

/* ---- library clients ------------------------------------------------------ */

static void
conn_event_cb(HoRpcConn *conn, const char *event, json_object *data, gint64 ts_us, void *opaque)
{
    Fixture *f = opaque;

    f->events++;
    g_free(f->last_event);
    f->last_event = g_strdup(event);
    json_object_put(f->last_data);
    f->last_data = json_object_get(data);
    f->last_ts = ts_us;
    if (f->nested_call) {
        g_autoptr(json_object) result = NULL;

        f->nested_call = false;
        f->nested_rc = ho_rpc_conn_call_sync(
            conn, "test.echo", ho_json_add_string(json_object_new_object(), "s", "nested"),
            &result, WAIT_MS);
        if (f->nested_rc == 0) {
            const char *s = NULL;

            g_assert_cmpint(ho_json_get_string(result, "s", &s), ==, 0);
            g_assert_cmpstr(s, ==, "nested");
        }
    }
}

static void
conn_closed_cb(HoRpcConn *conn, const HoError *err, void *opaque)
{
    Fixture *f = opaque;

    g_assert_nonnull(err);
    f->closed_calls++;
    ho_error_free(f->closed_err);
    f->closed_err = ho_error_copy(err);
}

static HoRpcConn *
conn_open(Fixture *f)
{
    HoRpcConn *conn = ho_rpc_conn_open_unix(f->sock, "rpctest", f->ctx, WAIT_MS);

    if (!conn)
        g_error("cannot open a connection: %s", ho_error_last_message());
    ho_rpc_conn_set_callbacks(conn, conn_event_cb, conn_closed_cb, f);
    return conn;
}

static json_object *
params_s(const char *s)
{
    return ho_json_add_string(json_object_new_object(), "s", s);
}

/* A call that must fail within timeout_ms: its error code and exact message. */
static void
assert_call_fails_ms(HoRpcConn *conn, const char *method, json_object *params, guint timeout_ms,
                     HoErrorCode code, const char *message)
{
    json_object *result = NULL;

    ho_error_reset();
    g_assert_cmpint(ho_rpc_conn_call_sync(conn, method, params, &result, timeout_ms), ==, -1);
    g_assert_null(result);
    g_assert_nonnull(ho_error_last());
    g_assert_cmpstr(ho_error_code_name(ho_error_last()->code), ==, ho_error_code_name(code));
    g_assert_cmpstr(ho_error_last()->message, ==, message);
}

static void
assert_call_fails(HoRpcConn *conn, const char *method, json_object *params, HoErrorCode code,
                  const char *message)
{
    assert_call_fails_ms(conn, method, params, WAIT_MS, code, message);
}

typedef struct {
    int calls;
    json_object *result;
    HoError *err;
    GString *order;
    const char *tag;
} Reply;

static void
reply_cb(HoRpcConn *conn, json_object *result, const HoError *err, void *opaque)
{
    Reply *r = opaque;

    r->calls++;
    r->result = json_object_get(result);
    r->err = ho_error_copy(err);
    if (r->order)
        g_string_append_printf(r->order, "%s ", r->tag);
}

static void
reply_clear(Reply *r)
{
    json_object_put(r->result);
    ho_error_free(r->err);
    r->result = NULL;
    r->err = NULL;
    r->calls = 0;
}

/* ---- raw clients ---------------------------------------------------------- */

typedef struct {
    int fd;
    GString *in;
    bool eof;
} Raw;

static Raw *
raw_new_fd(int fd)
{
    Raw *r = g_new0(Raw, 1);

    r->fd = fd;
    r->in = g_string_new(NULL);
    g_assert_cmpint(ho_socket_set_nonblock(fd, true), ==, 0);
    return r;
}

static Raw *
raw_connect(Fixture *f)
{
    int fd = ho_socket_unix_connect(f->sock);

    g_assert_cmpint(fd, >=, 0);
    return raw_new_fd(fd);
}

static void
raw_free(Raw *r)
{
    if (!r)
        return;
    if (r->fd >= 0)
        close(r->fd);
    g_string_free(r->in, TRUE);
    g_free(r);
}

static gboolean
raw_ready(gint fd, GIOCondition cond, gpointer data)
{
    *(bool *)data = true;
    return G_SOURCE_REMOVE;
}

/* Iterate the context (the server runs there) until fd is ready for cond. */
static bool
raw_wait(Fixture *f, Raw *r, GIOCondition cond)
{
    GSource *src = g_unix_fd_source_new(r->fd, cond);
    bool ready = false;

    g_source_set_callback(src, G_SOURCE_FUNC(raw_ready), &ready, NULL);
    g_source_attach(src, f->ctx);
    (void)test_iterate_until(f->ctx, &ready, WAIT_MS);
    g_source_destroy(src);
    g_source_unref(src);
    return ready;
}

static void
raw_send_len(Fixture *f, Raw *r, const char *text, size_t len)
{
    size_t off = 0;

    while (off < len) {
        ssize_t n = send(r->fd, text + off, len - off, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            g_assert_true(raw_wait(f, r, G_IO_OUT));
            continue;
        }
        g_assert_cmpint(n, >, 0);
        off += n;
    }
}

static void
raw_send(Fixture *f, Raw *r, const char *text)
{
    raw_send_len(f, r, text, strlen(text));
}

/* The next line the server sent (g_free it), or NULL at EOF; fails the
 * test when nothing comes in WAIT_MS. */
static char *
raw_read_line(Fixture *f, Raw *r)
{
    for (;;) {
        const char *nl = strchr(r->in->str, '\n');
        char buf[65536];
        ssize_t n;

        if (nl) {
            size_t len = nl - r->in->str;
            char *line = g_strndup(r->in->str, len);

            g_string_erase(r->in, 0, len + 1);
            return line;
        }
        if (r->eof)
            return NULL;
        n = read(r->fd, buf, sizeof(buf));
        if (n > 0) {
            g_string_append_len(r->in, buf, n);
        } else if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            /* A reset after the last line is a close too (UNIX sockets
             * report unread input of the closing side that way). */
            r->eof = true;
        } else {
            g_assert_cmpint(errno, ==, EAGAIN);
            if (!raw_wait(f, r, G_IO_IN))
                g_error("no message from the server within %d ms", WAIT_MS);
        }
    }
}

static json_object *
raw_read_msg(Fixture *f, Raw *r)
{
    g_autofree char *line = raw_read_line(f, r);
    json_object *msg;

    g_assert_nonnull(line);
    msg = ho_json_parse(line, strlen(line));
    g_assert_nonnull(msg);
    return msg;
}

/* Assert the server closed the connection with nothing more to say. */
static void
raw_expect_eof(Fixture *f, Raw *r)
{
    g_autofree char *line = raw_read_line(f, r);

    g_assert_null(line);
    g_assert_cmpstr(r->in->str, ==, "");
}

/* Assert msg is the reply {"id": id, "result": ...}; returns the result. */
static json_object *
assert_result(json_object *msg, gint64 id)
{
    json_object *result = NULL;
    int64_t got = -1;

    g_assert_cmpint(ho_json_get_int64(msg, "id", &got), ==, 0);
    g_assert_cmpint(got, ==, id);
    g_assert_false(json_object_object_get_ex(msg, "error", NULL));
    g_assert_true(json_object_object_get_ex(msg, "result", &result));
    return result;
}

/* Assert msg is {"id": id (null when < 0), "error": {"code": code, "message": message}};
 * prefix: the message only starts with message. */
static void
assert_error(json_object *msg, gint64 id, const char *code, const char *message, bool prefix)
{
    json_object *id_obj = NULL;
    json_object *error = NULL;
    const char *got_code = NULL;
    const char *got_message = NULL;

    g_assert_true(json_object_object_get_ex(msg, "id", &id_obj));
    if (id < 0) {
        g_assert_true(json_object_is_type(id_obj, json_type_null));
    } else {
        g_assert_true(json_object_is_type(id_obj, json_type_int));
        g_assert_cmpint(json_object_get_int64(id_obj), ==, id);
    }
    g_assert_false(json_object_object_get_ex(msg, "result", NULL));
    g_assert_cmpint(ho_json_get_object(msg, "error", &error), ==, 0);
    g_assert_cmpint(json_object_object_length(error), ==, 2);
    g_assert_cmpint(ho_json_get_string(error, "code", &got_code), ==, 0);
    g_assert_cmpint(ho_json_get_string(error, "message", &got_message), ==, 0);
    g_assert_cmpstr(got_code, ==, code);
    if (prefix)
        g_assert_true(g_str_has_prefix(got_message, message));
    else
        g_assert_cmpstr(got_message, ==, message);
}

static void
raw_hello(Fixture *f, Raw *r)
{
    g_autoptr(json_object) msg = NULL;
    json_object *result;
    int64_t protocol = 0;

    raw_send(f, r, "{\"id\":0,\"method\":\"hello\",\"params\":{\"protocol\":1}}\n");
    msg = raw_read_msg(f, r);
    result = assert_result(msg, 0);
    g_assert_cmpint(ho_json_get_int64(result, "protocol", &protocol), ==, 0);
    g_assert_cmpint(protocol, ==, 1);
}

/* One request, its reply parsed. */
static json_object *
raw_call(Fixture *f, Raw *r, const char *text)
{
    raw_send(f, r, text);
    raw_send(f, r, "\n");
    return raw_read_msg(f, r);
}

/* ---- tests: hello --------------------------------------------------------- */

static void
test_hello_ok(void)
{
    Fixture *f = fixture_new(NULL);
    HoRpcConn *conn = conn_open(f);
    g_autoptr(json_object) expected = hello_info();
    g_autoptr(json_object) msg = NULL;
    Raw *r;

    ho_json_add_int64(expected, "protocol", 1);
    g_assert_true(ho_json_equal(ho_rpc_conn_get_hello(conn), expected));
    g_assert_true(ho_rpc_conn_is_open(conn));
    g_assert_cmpuint(ho_rpc_server_client_count(f->srv), ==, 1);

    /* A raw hello without a client name, and blank lines in between. */
    r = raw_connect(f);
    raw_send(f, r, "\n  \r\n");
    msg = raw_call(f, r,
                   "{\"id\":9007199254740992,\"method\":\"hello\",\"params\":{\"protocol\":1}}");
    g_assert_true(ho_json_equal(assert_result(msg, 9007199254740992), expected));
    g_assert_cmpuint(ho_rpc_server_client_count(f->srv), ==, 2);

    raw_free(r);
    ho_rpc_conn_free(conn);
    wait_clients(f, 0);
    g_assert_false(fixture_log_contains(f, "dropped"));
    fixture_free(f);
}

static void
test_hello_version_mismatch(void)
{
    Fixture *f = fixture_new(NULL);
    Raw *r = raw_connect(f);
    g_autoptr(json_object) bad_type = NULL;
    g_autoptr(json_object) missing = NULL;
    g_autoptr(json_object) msg = NULL;

    /* Argument errors in hello leave the connection open... */
    bad_type = raw_call(f, r, "{\"id\":1,\"method\":\"hello\",\"params\":{\"protocol\":\"1\"}}");
    assert_error(bad_type, 1, "invalid-arg", "argument 'protocol' of 'hello' must be an integer",
                 false);
    missing = raw_call(f, r, "{\"id\":2,\"method\":\"hello\",\"params\":{\"client\":\"x\"}}");
    assert_error(missing, 2, "invalid-arg", "missing argument 'protocol' of 'hello'", false);

    /* ...another version gets an error naming both, then the door. */
    msg = raw_call(f, r, "{\"id\":3,\"method\":\"hello\",\"params\":{\"protocol\":2}}");
    assert_error(msg, 3, "rpc",
                 "the client speaks protocol version 2, but 'handoverd 0.1.0' speaks version 1",
                 false);
    raw_expect_eof(f, r);
    raw_free(r);
    wait_clients(f, 0);
    g_assert_true(fixture_log_contains(
        f, "dropped: the client speaks protocol version 2, but 'handoverd 0.1.0' speaks"));
    fixture_free(f);
}

typedef struct {
    int calls;
    HoError *err;
} Opened;

static void
opened_cb(HoRpcConn *conn, const HoError *err, void *opaque)
{
    Opened *o = opaque;

    o->calls++;
    ho_error_free(o->err);
    o->err = ho_error_copy(err);
}

static bool
pred_opened(Fixture *f, const void *data)
{
    return ((const Opened *)data)->calls > 0;
}

/* A client of another version, through the library: refused by name and
 * version on both sides. */
static void
test_hello_version_named(void)
{
    Fixture *f = fixture_new(NULL);
    HoRpcConnOptions opts = {.client_name = "handoverd 9.0 (host h9)", .protocol = 2};
    Opened o = {0};
    HoRpcConn *conn = ho_rpc_conn_open_unix_async(f->sock, &opts, f->ctx, opened_cb, &o);

    g_assert_nonnull(conn);
    g_assert_cmpint(o.calls, ==, 0);
    g_assert_true(run_until(f, pred_opened, &o));
    g_assert_cmpint(o.calls, ==, 1);
    g_assert_nonnull(o.err);
    g_assert_cmpint(o.err->code, ==, HO_ERR_RPC);
    g_assert_cmpstr(o.err->message, ==,
                    "'handoverd 9.0 (host h9)' speaks protocol version 2, but 'handoverd 0.1.0' "
                    "speaks version 1");
    g_assert_false(ho_rpc_conn_is_open(conn));
    ho_rpc_conn_free(conn);
    wait_clients(f, 0);
    g_assert_cmpint(o.calls, ==, 1);
    ho_error_free(o.err);
    fixture_free(f);
}

static void
test_hello_first(void)
{
    Fixture *f = fixture_new(NULL);
    Raw *r = raw_connect(f);
    g_autoptr(json_object) m1 = NULL;
    g_autoptr(json_object) m2 = NULL;
    g_autoptr(json_object) m3 = NULL;
    g_autoptr(json_object) m4 = NULL;
    g_autoptr(json_object) m5 = NULL;
    const char *s = NULL;

    m1 = raw_call(f, r, "{\"id\":5,\"method\":\"test.echo\",\"params\":{\"s\":\"x\"}}");
    assert_error(m1, 5, "rpc", "the first request must be 'hello', not 'test.echo'", false);
    m2 = raw_call(f, r, "{\"id\":6,\"method\":\"events.subscribe\"}");
    assert_error(m2, 6, "rpc", "the first request must be 'hello', not 'events.subscribe'", false);
    g_assert_cmpint(f->echo_runs, ==, 0);

    raw_hello(f, r);
    m3 = raw_call(f, r, "{\"id\":7,\"method\":\"test.echo\",\"params\":{\"s\":\"x\"}}");
    g_assert_cmpint(ho_json_get_string(assert_result(m3, 7), "s", &s), ==, 0);
    g_assert_cmpstr(s, ==, "x");

    /* A second hello is refused; the connection stays. */
    m4 = raw_call(f, r, "{\"id\":8,\"method\":\"hello\",\"params\":{\"protocol\":1}}");
    assert_error(m4, 8, "rpc", "'hello' was already sent on this connection", false);
    m5 = raw_call(f, r, "{\"id\":9,\"method\":\"test.echo\",\"params\":{\"s\":\"y\"}}");
    g_assert_cmpint(ho_json_get_string(assert_result(m5, 9), "s", &s), ==, 0);
    g_assert_cmpstr(s, ==, "y");
    g_assert_cmpint(f->echo_runs, ==, 2);

    raw_free(r);
    fixture_free(f);
}

/* ---- tests: arguments ----------------------------------------------------- */

typedef struct {
    const char *params; /* JSON text, NULL: none */
    const char *message;
} ArgCase;

static void
test_args(void)
{
    static const ArgCase bad[] = {
        {"{\"s\":1}", "argument 's' of 'test.echo' must be a string"},
        {"{\"s\":null}", "argument 's' of 'test.echo' must be a string"},
        {"{\"s\":\"x\",\"b\":\"true\"}", "argument 'b' of 'test.echo' must be a boolean"},
        {"{\"s\":\"x\",\"b\":1}", "argument 'b' of 'test.echo' must be a boolean"},
        {"{\"s\":\"x\",\"i\":1.5}", "argument 'i' of 'test.echo' must be an integer"},
        {"{\"s\":\"x\",\"i\":\"1\"}", "argument 'i' of 'test.echo' must be an integer"},
        {"{\"s\":\"x\",\"i\":9223372036854775808}",
         "argument 'i' of 'test.echo' must be an integer"},
        {"{\"s\":\"x\",\"u\":-1}", "argument 'u' of 'test.echo' must be a non-negative integer"},
        {"{\"s\":\"x\",\"u\":true}", "argument 'u' of 'test.echo' must be a non-negative integer"},
        {"{\"s\":\"x\",\"o\":[]}", "argument 'o' of 'test.echo' must be an object"},
        {"{\"s\":\"x\",\"o\":\"{}\"}", "argument 'o' of 'test.echo' must be an object"},
        {"{\"s\":\"x\",\"a\":{}}", "argument 'a' of 'test.echo' must be an array"},
        {"{\"s\":\"x\",\"a\":null}", "argument 'a' of 'test.echo' must be an array"},
        {"{}", "missing argument 's' of 'test.echo'"},
        {NULL, "missing argument 's' of 'test.echo'"},
        {"{\"b\":true}", "missing argument 's' of 'test.echo'"},
        {"{\"s\":\"x\",\"zz\":1}", "unknown argument 'zz' of 'test.echo'"},
        {"{\"S\":\"x\"}", "unknown argument 'S' of 'test.echo'"},
    };
    static const char *const good[] = {
        "{\"s\":\"x\"}",
        "{\"s\":\"\",\"b\":false,\"i\":-9223372036854775808,\"u\":18446744073709551615,"
        "\"o\":{},\"a\":[]}",
        "{\"s\":\"x\",\"b\":true,\"i\":9223372036854775807,\"u\":0,\"o\":{\"k\":[1]},"
        "\"a\":[1,\"2\",{}]}",
    };
    Fixture *f = fixture_new(NULL);
    HoRpcConn *conn = conn_open(f);
    Raw *r;
    g_autoptr(json_object) msg = NULL;
    g_autoptr(json_object) msg2 = NULL;
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(good); i++) {
        g_autoptr(json_object) params = ho_json_parse(good[i], strlen(good[i]));
        g_autoptr(json_object) result = NULL;

        g_assert_nonnull(params);
        g_assert_cmpint(
            ho_rpc_conn_call_sync(conn, "test.echo", json_object_get(params), &result, WAIT_MS),
            ==, 0);
        ho_json_add_bool(params, "local", true);
        g_assert_true(ho_json_equal(result, params));
    }
    g_assert_cmpint(f->echo_runs, ==, G_N_ELEMENTS(good));

    for (i = 0; i < G_N_ELEMENTS(bad); i++) {
        json_object *params = NULL;

        if (bad[i].params) {
            params = ho_json_parse(bad[i].params, strlen(bad[i].params));
            g_assert_nonnull(params);
        }
        assert_call_fails(conn, "test.echo", params, HO_ERR_INVALID_ARG, bad[i].message);
    }
    /* Nothing reached the handler. */
    g_assert_cmpint(f->echo_runs, ==, G_N_ELEMENTS(good));
    g_assert_true(ho_rpc_conn_is_open(conn));

    /* params that is not an object; null is the same as none. */
    r = raw_connect(f);
    raw_hello(f, r);
    msg = raw_call(f, r, "{\"id\":3,\"method\":\"test.echo\",\"params\":[\"s\"]}");
    assert_error(msg, 3, "invalid-arg", "the 'params' of 'test.echo' must be an object", false);
    msg2 = raw_call(f, r, "{\"id\":4,\"method\":\"test.local\",\"params\":null}");
    g_assert_nonnull(assert_result(msg2, 4));
    g_assert_cmpint(f->echo_runs, ==, G_N_ELEMENTS(good));

    raw_free(r);
    ho_rpc_conn_free(conn);
    fixture_free(f);
}

static void
test_unknown_method(void)
{
    Fixture *f = fixture_new(NULL);
    HoRpcConn *conn = conn_open(f);
    g_autoptr(json_object) result = NULL;

    assert_call_fails(conn, "no.such", NULL, HO_ERR_RPC, "unknown method 'no.such'");
    assert_call_fails(conn, "", params_s("x"), HO_ERR_RPC, "unknown method ''");
    g_assert_true(ho_rpc_conn_is_open(conn));
    g_assert_cmpint(ho_rpc_conn_call_sync(conn, "test.echo", params_s("x"), &result, WAIT_MS), ==,
                    0);
    g_assert_cmpuint(ho_rpc_server_client_count(f->srv), ==, 1);
    g_assert_false(fixture_log_contains(f, "dropped"));
    ho_rpc_conn_free(conn);
    fixture_free(f);
}

static void
test_handler_errors(void)
{
    Fixture *f = fixture_new(NULL);
    HoRpcConn *conn = conn_open(f);
    int code;

    /* Every code crosses the wire by name and comes back the same. */
    for (code = HO_ERR_NONE + 1; code < HO_ERR_LAST; code++) {
        g_autofree char *message = g_strdup_printf("failure %s", ho_error_code_name(code));

        assert_call_fails(conn, "test.fail",
                          ho_json_add_int64(json_object_new_object(), "code", code), code,
                          message);
        g_assert_cmpint(ho_rpc_error_code_from_name(ho_error_code_name(code)), ==, code);
    }
    g_assert_cmpint(ho_rpc_error_code_from_name("no-such-code"), ==, HO_ERR_RPC);
    g_assert_cmpint(ho_rpc_error_code_from_name("none"), ==, HO_ERR_RPC);
    g_assert_cmpint(ho_rpc_error_code_from_name(""), ==, HO_ERR_RPC);
    g_assert_cmpint(ho_rpc_error_code_from_name(NULL), ==, HO_ERR_RPC);

    assert_call_fails(conn, "test.silent-fail", NULL, HO_ERR_INTERNAL,
                      "method 'test.silent-fail' failed without saying why");
    g_assert_true(ho_rpc_conn_is_open(conn));
    ho_rpc_conn_free(conn);
    fixture_free(f);
}

/* ---- tests: asynchronous methods ------------------------------------------ */

static json_object *
later_params(guint ms, const char *tag)
{
    json_object *params = json_object_new_object();

    ho_json_add_int64(params, "ms", ms);
    ho_json_add_string(params, "tag", tag);
    return params;
}

static bool
pred_reply(Fixture *f, const void *data)
{
    return ((const Reply *)data)->calls > 0;
}

static void
test_async_later(void)
{
    Fixture *f = fixture_new(NULL);
    HoRpcConn *conn = conn_open(f);
    g_autoptr(GString) order = g_string_new(NULL);
    Reply slow = {.order = order, .tag = "slow"};
    Reply fast = {.order = order, .tag = "fast"};
    Reply echo = {.order = order, .tag = "echo"};
    const char *tag = NULL;

    ho_rpc_conn_call(conn, "test.later", later_params(300, "slow"), reply_cb, &slow);
    ho_rpc_conn_call(conn, "test.later", later_params(30, "fast"), reply_cb, &fast);
    ho_rpc_conn_call(conn, "test.echo", params_s("e"), reply_cb, &echo);
    g_assert_true(run_until(f, pred_reply, &slow));

    /* Replies in the order the handlers answered, each to its own call. */
    g_assert_cmpstr(order->str, ==, "echo fast slow ");
    g_assert_cmpint(slow.calls, ==, 1);
    g_assert_cmpint(fast.calls, ==, 1);
    g_assert_cmpint(echo.calls, ==, 1);
    g_assert_null(slow.err);
    g_assert_cmpint(ho_json_get_string(slow.result, "tag", &tag), ==, 0);
    g_assert_cmpstr(tag, ==, "slow");
    g_assert_cmpint(ho_json_get_string(fast.result, "tag", &tag), ==, 0);
    g_assert_cmpstr(tag, ==, "fast");
    g_assert_cmpint(f->later_done, ==, 2);
    g_assert_true(f->later_connected);

    reply_clear(&slow);
    reply_clear(&fast);
    reply_clear(&echo);
    ho_rpc_conn_free(conn);
    fixture_free(f);
}

static void
test_async_disconnect(void)
{
    Fixture *f = fixture_new(NULL);
    HoRpcConn *conn = conn_open(f);
    Reply rep = {0};
    HoRpcCall *call;
    Raw *r;
    g_autofree char *expected = NULL;

    /* A library client goes away with a call pending. */
    ho_rpc_conn_call(conn, "test.hold", NULL, reply_cb, &rep);
    wait_held(f, 1);
    call = g_ptr_array_index(f->held, 0);
    g_assert_true(ho_rpc_call_client_connected(call));
    g_assert_true(ho_rpc_call_is_local(call));
    ho_rpc_conn_free(conn);
    /* Its callback ran once, with the reason. */
    g_assert_cmpint(rep.calls, ==, 1);
    g_assert_nonnull(rep.err);
    g_assert_cmpint(rep.err->code, ==, HO_ERR_RPC);
    expected = g_strdup_printf("connection to handoverd at '%s' closed while 'test.hold' was "
                               "pending: the connection to handoverd at '%s' was closed",
                               f->sock, f->sock);
    g_assert_cmpstr(rep.err->message, ==, expected);
    reply_clear(&rep);

    /* The server notices; the call lives on and answering it is harmless. */
    wait_clients(f, 0);
    g_assert_false(ho_rpc_call_client_connected(call));
    g_assert_cmpstr(ho_rpc_call_method(call), ==, "test.hold");
    ho_rpc_call_reply(call, ho_json_add_string(json_object_new_object(), "late", "yes"));
    g_ptr_array_remove_index(f->held, 0);

    /* A raw client sends a slow request and hangs up at once; the handler
     * answers from its timer later. */
    r = raw_connect(f);
    raw_hello(f, r);
    raw_send(f, r,
             "{\"id\":1,\"method\":\"test.later\",\"params\":{\"ms\":50}}\n"
             "{\"id\":2,\"method\":\"test.hold\"}\n");
    wait_held(f, 1);
    raw_free(r);
    wait_clients(f, 0);
    wait_int(f, &f->later_done, 1);
    g_assert_false(f->later_connected);
    /* An error to a gone client is dropped as well. */
    {
        g_autoptr(HoError) err = ho_error_new(HO_ERR_INTERNAL, "too late");

        ho_rpc_call_error(g_ptr_array_index(f->held, 0), err);
        g_ptr_array_remove_index(f->held, 0);
    }
    g_assert_false(fixture_log_contains(f, "dropped"));
    fixture_free(f);
}

/* The server goes away under pending calls: they outlive it, and the
 * client fails its calls with the reason. */
static void
test_async_server_freed(void)
{
    Fixture *f = fixture_new(NULL);
    HoRpcConn *conn = conn_open(f);
    Reply rep = {0};
    g_autofree char *expected = NULL;
    g_autofree char *closed = NULL;

    ho_rpc_conn_call(conn, "test.hold", NULL, reply_cb, &rep);
    wait_held(f, 1);
    g_clear_pointer(&f->srv, ho_rpc_server_free);
    g_assert_false(g_file_test(f->sock, G_FILE_TEST_EXISTS));
    g_assert_false(ho_rpc_call_client_connected(g_ptr_array_index(f->held, 0)));

    g_assert_cmpint(ho_rpc_conn_wait_event(conn, WAIT_MS), ==, -1);
    closed = g_strdup_printf("handoverd at '%s' closed the connection", f->sock);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_RPC);
    g_assert_cmpstr(ho_error_last()->message, ==, closed);
    g_assert_cmpint(rep.calls, ==, 1);
    expected = g_strdup_printf("connection to handoverd at '%s' closed while 'test.hold' was "
                               "pending: %s",
                               f->sock, closed);
    g_assert_cmpstr(rep.err->message, ==, expected);
    g_assert_cmpint(f->closed_calls, ==, 1);
    g_assert_cmpstr(f->closed_err->message, ==, closed);
    g_assert_false(ho_rpc_conn_is_open(conn));
    reply_clear(&rep);

    /* The held call is answered by fixture_free, after the server is gone. */
    ho_rpc_conn_free(conn);
    g_assert_cmpint(f->closed_calls, ==, 1);
    fixture_free(f);
}

/* A handler frees the whole server: nothing is freed under its feet, the
 * client learns why its call failed, the call outlives the server. */
static void
test_server_freed_in_handler(void)
{
    Fixture *f = fixture_new(NULL);
    HoRpcConn *conn = conn_open(f);
    g_autofree char *expected = NULL;

    expected = g_strdup_printf("connection to handoverd at '%s' closed while 'test.shutdown' "
                               "was pending: handoverd at '%s' closed the connection",
                               f->sock, f->sock);
    assert_call_fails(conn, "test.shutdown", NULL, HO_ERR_RPC, expected);
    g_assert_null(f->srv);
    g_assert_cmpuint(f->held->len, ==, 1);
    g_assert_cmpint(f->closed_calls, ==, 1);
    ho_rpc_conn_free(conn);
    fixture_free(f);
}

/* A reply larger than max_output goes to a client that reads. */
static void
test_big_reply(void)
{
    HoRpcLimits limits = {.max_output = 8192};
    Fixture *f = fixture_new(&limits);
    HoRpcConn *conn = conn_open(f);
    g_autofree char *big = g_strnfill(50000, 'b');
    g_autoptr(json_object) result = NULL;
    const char *s = NULL;

    g_assert_cmpint(ho_rpc_conn_call_sync(conn, "test.echo", params_s(big), &result, WAIT_MS), ==,
                    0);
    g_assert_cmpint(ho_json_get_string(result, "s", &s), ==, 0);
    g_assert_cmpstr(s, ==, big);
    g_assert_cmpuint(ho_rpc_server_client_count(f->srv), ==, 1);
    g_assert_false(fixture_log_contains(f, "dropped"));
    ho_rpc_conn_free(conn);
    fixture_free(f);
}

/* ---- tests: protocol violations ------------------------------------------- */

typedef struct {
    const char *line;
    const char *message; /* of the error line, a prefix */
} Violation;

static const Violation violations[] = {
    {"{\"id\":1,\"method\":", "malformed JSON at offset 17"},
    {"{\"id\":1,\"method\":\"test.echo\"}}", "malformed JSON at offset 29"},
    {"\x01", "malformed JSON at offset 0"},
    {"[1,2]", "the message is not a JSON object"},
    {"42", "the message is not a JSON object"},
    {"\"hello\"", "the message is not a JSON object"},
    {"{\"method\":\"test.echo\"}", "the request has no 'id' that is an integer from 0 to 2^53"},
    {"{\"id\":\"1\",\"method\":\"test.echo\"}",
     "the request has no 'id' that is an integer from 0 to 2^53"},
    {"{\"id\":null,\"method\":\"test.echo\"}",
     "the request has no 'id' that is an integer from 0 to 2^53"},
    {"{\"id\":-1,\"method\":\"test.echo\"}",
     "the request has no 'id' that is an integer from 0 to 2^53"},
    {"{\"id\":1.0,\"method\":\"test.echo\"}",
     "the request has no 'id' that is an integer from 0 to 2^53"},
    {"{\"id\":9007199254740993,\"method\":\"test.echo\"}",
     "the request has no 'id' that is an integer from 0 to 2^53"},
    {"{\"id\":18446744073709551615,\"method\":\"test.echo\"}",
     "the request has no 'id' that is an integer from 0 to 2^53"},
    {"{\"id\":1}", "the request has no 'method' that is a string"},
    {"{\"id\":1,\"method\":7}", "the request has no 'method' that is a string"},
    {"{\"id\":1,\"method\":[\"hello\"]}", "the request has no 'method' that is a string"},
};

static void
check_violation(const Violation *v, bool hello_first)
{
    Fixture *f = fixture_new(NULL);
    Raw *r = raw_connect(f);
    Raw *other = raw_connect(f);
    g_autoptr(json_object) msg = NULL;
    g_autofree char *logged = g_strdup_printf("dropped: %s", v->message);

    if (hello_first)
        raw_hello(f, r);
    msg = raw_call(f, r, v->line);
    assert_error(msg, -1, "rpc", v->message, true);
    raw_expect_eof(f, r);
    raw_free(r);
    wait_clients(f, 1);
    g_assert_cmpuint(fixture_log_count(f, logged), ==, 1);
    g_assert_cmpuint(fixture_log_count(f, "dropped"), ==, 1);

    /* Nobody else is disturbed. */
    raw_hello(f, other);
    raw_free(other);
    fixture_free(f);
}

static void
test_violation(gconstpointer data)
{
    check_violation(data, true);
    check_violation(data, false);
}

/* Requests after the bad one in the same read are not served. */
static void
test_violation_rest_ignored(void)
{
    Fixture *f = fixture_new(NULL);
    Raw *r = raw_connect(f);
    g_autoptr(json_object) msg = NULL;

    raw_hello(f, r);
    raw_send(f, r,
             "{\"id\":1,\"method\":\"test.echo\",\"params\":{\"s\":\"a\"}}\n"
             "}\n"
             "{\"id\":2,\"method\":\"test.echo\",\"params\":{\"s\":\"b\"}}\n");
    msg = raw_read_msg(f, r);
    g_assert_nonnull(assert_result(msg, 1));
    g_clear_pointer(&msg, json_object_put);
    msg = raw_read_msg(f, r);
    assert_error(msg, -1, "rpc", "malformed JSON at offset 0", true);
    raw_expect_eof(f, r);
    g_assert_cmpint(f->echo_runs, ==, 1);
    raw_free(r);
    fixture_free(f);
}

static bool
pred_eof(Fixture *f, const void *data)
{
    return ho_rpc_server_client_count(f->srv) == 0;
}

/* A client that breaks the protocol and then neither reads nor closes is
 * closed after the linger time (5 s). */
static void
test_violation_linger(void)
{
    Fixture *f = fixture_new(NULL);
    Raw *r = raw_connect(f);
    g_autoptr(json_object) msg = NULL;
    GSource *timer = g_timeout_source_new(WAIT_MS + 3000);
    bool timed_out = false;
    gint64 start;

    raw_hello(f, r);
    msg = raw_call(f, r, "[]");
    assert_error(msg, -1, "rpc", "the message is not a JSON object", false);
    start = g_get_monotonic_time();
    /* Still there a while later: it may just be slow to read. */
    run_for(f, 300);
    g_assert_cmpuint(ho_rpc_server_client_count(f->srv), ==, 1);
    g_source_set_callback(timer, flag_set, &timed_out, NULL);
    g_source_attach(timer, f->ctx);
    while (!pred_eof(f, NULL) && !timed_out)
        g_main_context_iteration(f->ctx, TRUE);
    g_source_destroy(timer);
    g_source_unref(timer);
    g_assert_cmpuint(ho_rpc_server_client_count(f->srv), ==, 0);
    g_assert_cmpint(g_get_monotonic_time() - start, >=, 4000 * 1000);
    raw_expect_eof(f, r);
    raw_free(r);
    fixture_free(f);
}

static void
test_violation_duplicate_id(void)
{
    Fixture *f = fixture_new(NULL);
    Raw *r = raw_connect(f);
    g_autoptr(json_object) msg = NULL;

    raw_hello(f, r);
    raw_send(f, r, "{\"id\":4,\"method\":\"test.hold\"}\n");
    wait_held(f, 1);
    msg = raw_call(f, r, "{\"id\":4,\"method\":\"test.echo\",\"params\":{\"s\":\"x\"}}");
    assert_error(msg, -1, "rpc", "request id 4 is already in use by a pending request", false);
    raw_expect_eof(f, r);
    raw_free(r);
    wait_clients(f, 0);
    g_assert_true(fixture_log_contains(f, "dropped: request id 4 is already in use"));
    /* fixture_free answers the held call of the closed client. */
    fixture_free(f);
}

static void
test_violation_oversized(void)
{
    HoRpcLimits limits = {.max_message_size = 4096};
    Fixture *f = fixture_new(&limits);
    Raw *r = raw_connect(f);
    Raw *r2 = raw_connect(f);
    const char *head = "{\"id\":1,\"method\":\"test.echo\",\"params\":{\"s\":\"";
    const char *tail = "\"}}";
    g_autoptr(GString) line = g_string_new(head);
    g_autoptr(json_object) msg = NULL;
    g_autoptr(json_object) msg2 = NULL;
    g_autofree char *big = NULL;
    const char *s = NULL;

    raw_hello(f, r);
    /* Exactly the limit with its newline: served. */
    while (line->len < 4096 - 1 - strlen(tail))
        g_string_append_c(line, 'x');
    g_string_append(line, tail);
    g_assert_cmpuint(line->len + 1, ==, 4096);
    msg = raw_call(f, r, line->str);
    g_assert_cmpint(ho_json_get_string(assert_result(msg, 1), "s", &s), ==, 0);
    g_assert_cmpuint(strlen(s), ==, 4096 - 1 - strlen(head) - strlen(tail));

    /* One byte more: refused. */
    g_string_insert_c(line, strlen(head), 'y');
    msg2 = raw_call(f, r, line->str);
    assert_error(msg2, -1, "rpc", "the message is larger than the limit of 4096 bytes", false);
    raw_expect_eof(f, r);

    /* A message that never ends is refused without waiting for its end. */
    raw_hello(f, r2);
    big = g_strnfill(256 * 1024, ' ');
    raw_send_len(f, r2, big, strlen(big));
    g_clear_pointer(&msg2, json_object_put);
    msg2 = raw_read_msg(f, r2);
    assert_error(msg2, -1, "rpc", "the message is larger than the limit of 4096 bytes", false);
    raw_expect_eof(f, r2);

    raw_free(r);
    raw_free(r2);
    wait_clients(f, 0);
    g_assert_cmpuint(fixture_log_count(f, "dropped: the message is larger than the limit of "
                                          "4096 bytes"),
                     ==, 2);
    fixture_free(f);
}

/* ---- tests: limits -------------------------------------------------------- */

static void
test_limit_requests(void)
{
    HoRpcLimits limits = {.max_requests = 4};
    Fixture *f = fixture_new(&limits);
    Raw *r = raw_connect(f);
    GString *text = g_string_new(NULL);
    int i;

    raw_hello(f, r);
    for (i = 1; i <= 6; i++)
        g_string_append_printf(text, "{\"id\":%d,\"method\":\"test.hold\"}\n", i);
    raw_send(f, r, text->str);
    g_string_free(text, TRUE);

    /* The two over the limit are refused at once. */
    for (i = 5; i <= 6; i++) {
        g_autoptr(json_object) msg = raw_read_msg(f, r);

        assert_error(msg, i, "limit", "too many pending requests: at most 4 per connection",
                     false);
    }
    g_assert_cmpuint(f->held->len, ==, 4);

    /* One answered makes room for one more. */
    ho_rpc_call_reply(g_ptr_array_index(f->held, 0), NULL);
    g_ptr_array_remove_index(f->held, 0);
    {
        g_autoptr(json_object) msg = raw_read_msg(f, r);
        g_autoptr(json_object) msg2 = NULL;

        g_assert_cmpint(json_object_object_length(assert_result(msg, 1)), ==, 0);
        raw_send(f, r, "{\"id\":7,\"method\":\"test.hold\"}\n");
        wait_held(f, 4);
        msg2 = raw_call(f, r, "{\"id\":8,\"method\":\"test.echo\",\"params\":{\"s\":\"x\"}}");
        assert_error(msg2, 8, "limit", "too many pending requests: at most 4 per connection",
                     false);
    }

    /* Answer the rest, in reverse. */
    while (f->held->len > 0) {
        guint last = f->held->len - 1;

        ho_rpc_call_reply(g_ptr_array_index(f->held, last), NULL);
        g_ptr_array_remove_index(f->held, last);
    }
    for (i = 0; i < 4; i++) {
        static const int ids[] = {7, 4, 3, 2};
        g_autoptr(json_object) msg = raw_read_msg(f, r);

        g_assert_nonnull(assert_result(msg, ids[i]));
    }
    g_assert_cmpuint(ho_rpc_server_client_count(f->srv), ==, 1);
    g_assert_false(fixture_log_contains(f, "dropped"));
    raw_free(r);
    fixture_free(f);
}

static void
test_limit_clients(void)
{
    HoRpcLimits limits = {.max_clients = 8};
    Fixture *f = fixture_new(&limits);
    Raw *raws[50];
    HoRpcConn *conn;
    g_autoptr(json_object) result = NULL;
    int sv[2];
    int i;

    for (i = 0; i < 50; i++)
        raws[i] = raw_connect(f);
    /* Accepted in order: the first 8 are served, the others turned away
     * with one error line each. */
    for (i = 8; i < 50; i++) {
        g_autoptr(json_object) msg = raw_read_msg(f, raws[i]);

        assert_error(msg, -1, "limit", "too many clients: handoverd serves at most 8", false);
        raw_expect_eof(f, raws[i]);
    }
    g_assert_cmpuint(ho_rpc_server_client_count(f->srv), ==, 8);
    g_assert_cmpuint(fixture_log_count(f, "dropped: too many clients"), ==, 42);
    for (i = 0; i < 8; i++)
        raw_hello(f, raws[i]);

    /* The library reports the refusal with its code. */
    ho_error_reset();
    g_assert_null(ho_rpc_conn_open_unix(f->sock, "rpctest", f->ctx, WAIT_MS));
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_LIMIT);
    {
        g_autofree char *expected = g_strdup_printf(
            "cannot connect to handoverd at '%s': too many clients: handoverd serves at most 8",
            f->sock);

        g_assert_cmpstr(ho_error_last()->message, ==, expected);
    }

    /* So does a socket handed over directly. */
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==, 0);
    g_assert_cmpint(ho_rpc_server_add_client_fd(f->srv, sv[0], true), ==, -1);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_LIMIT);
    close(sv[1]);

    for (i = 0; i < 50; i++)
        raw_free(raws[i]);
    wait_clients(f, 0);

    /* The server still serves a well-behaved client, and a handed-over one. */
    conn = conn_open(f);
    g_assert_cmpint(ho_rpc_conn_call_sync(conn, "test.echo", params_s("x"), &result, WAIT_MS), ==,
                    0);
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==, 0);
    g_assert_cmpint(ho_rpc_server_add_client_fd(f->srv, sv[0], true), ==, 0);
    {
        Raw *r = raw_new_fd(sv[1]);
        g_autoptr(json_object) msg = NULL;

        raw_hello(f, r);
        msg = raw_call(f, r, "{\"id\":1,\"method\":\"test.local\"}");
        g_assert_nonnull(assert_result(msg, 1));
        raw_free(r);
    }
    ho_rpc_conn_free(conn);
    fixture_free(f);
}

/* ---- tests: events -------------------------------------------------------- */

static void
test_events(void)
{
    Fixture *f = fixture_new(NULL);
    Fixture seen_b = {0};
    HoRpcConn *a = conn_open(f);
    HoRpcConn *b = conn_open(f);
    gint64 before;
    const char *name = NULL;

    ho_rpc_conn_set_callbacks(b, conn_event_cb, NULL, &seen_b);
    g_assert_cmpint(ho_rpc_conn_call_sync(a, "events.subscribe", NULL, NULL, WAIT_MS), ==, 0);

    before = ho_time_now_us();
    ho_rpc_server_emit_event(f->srv, "domain.lifecycle",
                             ho_json_add_string(json_object_new_object(), "name", "vm1"));
    g_assert_cmpint(ho_rpc_conn_wait_event(a, WAIT_MS), ==, 1);
    g_assert_cmpint(f->events, ==, 1);
    g_assert_cmpstr(f->last_event, ==, "domain.lifecycle");
    g_assert_cmpint(ho_json_get_string(f->last_data, "name", &name), ==, 0);
    g_assert_cmpstr(name, ==, "vm1");
    g_assert_cmpint(f->last_ts, >=, before);
    g_assert_cmpint(f->last_ts, <=, ho_time_now_us());

    /* Not subscribed: nothing. */
    g_assert_cmpint(ho_rpc_conn_wait_event(b, 200), ==, 0);
    g_assert_cmpint(seen_b.events, ==, 0);

    /* Data may be left out. */
    ho_rpc_server_emit_event(f->srv, "domain.job", NULL);
    g_assert_cmpint(ho_rpc_conn_wait_event(a, WAIT_MS), ==, 1);
    g_assert_cmpint(f->events, ==, 2);
    g_assert_cmpstr(f->last_event, ==, "domain.job");
    g_assert_null(f->last_data);

    /* Unsubscribed: nothing more. */
    g_assert_cmpint(ho_rpc_conn_call_sync(a, "events.unsubscribe", NULL, NULL, WAIT_MS), ==, 0);
    ho_rpc_server_emit_event(f->srv, "domain.lifecycle", NULL);
    g_assert_cmpint(ho_rpc_conn_wait_event(a, 200), ==, 0);
    g_assert_cmpint(ho_rpc_conn_wait_event(b, 50), ==, 0);
    g_assert_cmpint(f->events, ==, 2);
    g_assert_cmpint(seen_b.events, ==, 0);

    ho_rpc_conn_free(a);
    ho_rpc_conn_free(b);
    g_free(seen_b.last_event);
    json_object_put(seen_b.last_data);
    fixture_free(f);
}

static bool
pred_events(Fixture *f, const void *data)
{
    return f->events >= GPOINTER_TO_INT(data);
}

static void
test_slow_reader(void)
{
    HoRpcLimits limits = {.max_output = 64 * 1024};
    Fixture *f = fixture_new(&limits);
    HoRpcConn *good = conn_open(f);
    Raw *slow = raw_connect(f);
    g_autofree char *filler = g_strnfill(4000, 'z');
    g_autoptr(json_object) msg = NULL;
    int emitted = 0;

    raw_hello(f, slow);
    msg = raw_call(f, slow, "{\"id\":1,\"method\":\"events.subscribe\"}");
    g_assert_nonnull(assert_result(msg, 1));
    g_assert_cmpint(ho_rpc_conn_call_sync(good, "events.subscribe", NULL, NULL, WAIT_MS), ==, 0);

    /* The slow one never reads: once the socket buffer is full, its queue
     * grows until it passes max_output. 8 MB is far beyond any buffer. */
    while (ho_rpc_server_client_count(f->srv) == 2 && emitted < 2000) {
        ho_rpc_server_emit_event(f->srv, "test.filler",
                                 ho_json_add_string(json_object_new_object(), "z", filler));
        emitted++;
        fixture_drain(f);
    }
    g_assert_cmpuint(ho_rpc_server_client_count(f->srv), ==, 1);
    g_assert_cmpint(emitted, >, 16);
    g_assert_cmpuint(fixture_log_count(f, "dropped: it does not read its messages (more than "
                                          "65536 bytes queued)"),
                     ==, 1);

    /* The one that reads got every event and stays. */
    g_assert_true(run_until(f, pred_events, GINT_TO_POINTER(emitted)));
    g_assert_cmpint(f->events, ==, emitted);
    g_assert_true(ho_rpc_conn_is_open(good));
    g_assert_cmpint(ho_rpc_conn_call_sync(good, "test.local", NULL, NULL, WAIT_MS), ==, 0);

    raw_free(slow);
    ho_rpc_conn_free(good);
    fixture_free(f);
}

/* ---- tests: TCP ----------------------------------------------------------- */

static void
test_tcp(void)
{
    Fixture *f = fixture_new(NULL);
    HoRpcConn *tcp;
    HoRpcConn *unix_conn;
    g_autoptr(json_object) r1 = NULL;
    g_autoptr(json_object) r2 = NULL;
    g_autoptr(json_object) r3 = NULL;
    g_autofree char *refused = NULL;
    bool local = true;
    int port = 0;
    int dead_port = 0;
    int fd;

    g_assert_cmpint(ho_rpc_server_listen_tcp(f->srv, "127.0.0.1", 0, &port), ==, 0);
    g_assert_cmpint(port, >, 0);
    tcp = ho_rpc_conn_open_tcp("127.0.0.1", port, "peer", f->ctx, WAIT_MS);
    g_assert_nonnull(tcp);
    g_assert_nonnull(ho_rpc_conn_get_hello(tcp));

    /* Local methods are refused over TCP; peer ones and built-ins served. */
    assert_call_fails(tcp, "test.local", NULL, HO_ERR_RPC,
                      "method 'test.local' is served on the local socket only, not over TCP");
    g_assert_cmpint(ho_rpc_conn_call_sync(tcp, "test.peer", NULL, &r1, WAIT_MS), ==, 0);
    g_assert_cmpint(ho_json_get_bool(r1, "ok", &local), ==, 0);
    g_assert_cmpint(ho_rpc_conn_call_sync(tcp, "test.echo", params_s("t"), &r2, WAIT_MS), ==, 0);
    g_assert_cmpint(ho_json_get_bool(r2, "local", &local), ==, 0);
    g_assert_false(local);
    g_assert_cmpint(ho_rpc_conn_call_sync(tcp, "events.subscribe", NULL, NULL, WAIT_MS), ==, 0);
    g_assert_true(ho_rpc_conn_is_open(tcp));

    /* Over the UNIX socket, everything is served. */
    unix_conn = conn_open(f);
    g_assert_cmpint(ho_rpc_conn_call_sync(unix_conn, "test.peer", NULL, NULL, WAIT_MS), ==, 0);
    g_assert_cmpint(ho_rpc_conn_call_sync(unix_conn, "test.echo", params_s("u"), &r3, WAIT_MS), ==,
                    0);
    g_assert_cmpint(ho_json_get_bool(r3, "local", &local), ==, 0);
    g_assert_true(local);
    g_assert_cmpuint(ho_rpc_server_client_count(f->srv), ==, 2);

    /* A port nobody listens on. */
    fd = ho_socket_tcp_listen("127.0.0.1", 0, 1, &dead_port);
    g_assert_cmpint(fd, >=, 0);
    close(fd);
    ho_error_reset();
    g_assert_null(ho_rpc_conn_open_tcp("127.0.0.1", dead_port, "peer", f->ctx, WAIT_MS));
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_SYSTEM);
    refused = g_strdup_printf("cannot connect to handoverd at '127.0.0.1:%d': ", dead_port);
    g_assert_true(g_str_has_prefix(ho_error_last()->message, refused));

    ho_rpc_conn_free(tcp);
    ho_rpc_conn_free(unix_conn);
    wait_clients(f, 0);
    fixture_free(f);
}

/* ---- tests: the client ---------------------------------------------------- */

static void
test_client_timeout(void)
{
    Fixture *f = fixture_new(NULL);
    HoRpcConn *conn = conn_open(f);
    g_autofree char *expected = NULL;
    g_autoptr(json_object) result = NULL;
    gint64 start = g_get_monotonic_time();
    gint64 elapsed;

    expected = g_strdup_printf("timed out after 100 ms waiting for handoverd at '%s' to answer "
                               "'test.hold'",
                               f->sock);
    assert_call_fails_ms(conn, "test.hold", NULL, 100, HO_ERR_TIMEOUT, expected);
    elapsed = g_get_monotonic_time() - start;
    g_assert_cmpint(elapsed, >=, 100 * 1000);
    g_assert_cmpint(elapsed, <, WAIT_MS * 1000);
    g_assert_cmpuint(f->held->len, ==, 1);

    /* The late reply is dropped quietly; the connection goes on. */
    ho_rpc_call_reply(g_ptr_array_index(f->held, 0), NULL);
    g_ptr_array_remove_index(f->held, 0);
    g_assert_cmpint(ho_rpc_conn_call_sync(conn, "test.echo", params_s("after"), &result, WAIT_MS),
                    ==, 0);
    g_assert_true(ho_rpc_conn_is_open(conn));
    ho_rpc_conn_free(conn);
    fixture_free(f);
}

static void
test_client_events_during_call(void)
{
    Fixture *f = fixture_new(NULL);
    HoRpcConn *conn = conn_open(f);
    json_object *params;
    int64_t n = 0;

    g_assert_cmpint(ho_rpc_conn_call_sync(conn, "events.subscribe", NULL, NULL, WAIT_MS), ==, 0);
    params = ho_json_add_string(json_object_new_object(), "event", "x.during");
    g_assert_cmpint(ho_rpc_conn_call_sync(conn, "test.emit", params, NULL, WAIT_MS), ==, 0);
    /* The event came before the reply and was dispatched on the way. */
    g_assert_cmpint(f->events, ==, 1);
    g_assert_cmpstr(f->last_event, ==, "x.during");
    g_assert_cmpint(ho_json_get_int64(f->last_data, "n", &n), ==, 0);
    g_assert_cmpint(n, ==, 1);

    /* A synchronous call from inside the event callback works. */
    f->nested_call = true;
    f->nested_rc = 42;
    params = ho_json_add_string(json_object_new_object(), "event", "x.nested");
    g_assert_cmpint(ho_rpc_conn_call_sync(conn, "test.emit", params, NULL, WAIT_MS), ==, 0);
    g_assert_cmpint(f->events, ==, 2);
    g_assert_cmpint(f->nested_rc, ==, 0);
    g_assert_cmpint(f->echo_runs, ==, 1);

    ho_rpc_conn_free(conn);
    fixture_free(f);
}

static void
test_client_wait_event(void)
{
    Fixture *f = fixture_new(NULL);
    HoRpcConn *conn = conn_open(f);
    Reply rep = {0};
    g_autofree char *closed = NULL;
    g_autofree char *expected = NULL;
    gint64 start;

    g_assert_cmpint(ho_rpc_conn_call_sync(conn, "events.subscribe", NULL, NULL, WAIT_MS), ==, 0);

    /* 0 on timeout, after the time. */
    start = g_get_monotonic_time();
    g_assert_cmpint(ho_rpc_conn_wait_event(conn, 100), ==, 0);
    g_assert_cmpint(g_get_monotonic_time() - start, >=, 100 * 1000);
    g_assert_cmpint(ho_rpc_conn_wait_event(conn, 0), ==, 0);

    /* 1 when one came. */
    ho_rpc_server_emit_event(f->srv, "e.one", NULL);
    g_assert_cmpint(ho_rpc_conn_wait_event(conn, WAIT_MS), ==, 1);
    g_assert_cmpint(f->events, ==, 1);

    /* -1 and the reason once the daemon is gone; closed callback once. */
    g_clear_pointer(&f->srv, ho_rpc_server_free);
    ho_error_reset();
    g_assert_cmpint(ho_rpc_conn_wait_event(conn, WAIT_MS), ==, -1);
    closed = g_strdup_printf("handoverd at '%s' closed the connection", f->sock);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_RPC);
    g_assert_cmpstr(ho_error_last()->message, ==, closed);
    g_assert_cmpint(f->closed_calls, ==, 1);
    g_assert_cmpint(f->closed_err->code, ==, HO_ERR_RPC);
    g_assert_cmpstr(f->closed_err->message, ==, closed);
    g_assert_cmpint(ho_rpc_conn_wait_event(conn, WAIT_MS), ==, -1);
    g_assert_false(ho_rpc_conn_is_open(conn));

    /* Calls on a closed connection fail, never from inside the call. */
    expected = g_strdup_printf("cannot call 'test.echo': the connection to handoverd at '%s' "
                               "is closed: %s",
                               f->sock, closed);
    assert_call_fails(conn, "test.echo", params_s("x"), HO_ERR_RPC, expected);
    ho_rpc_conn_call(conn, "test.echo", params_s("x"), reply_cb, &rep);
    g_assert_cmpint(rep.calls, ==, 0);
    g_assert_true(run_until(f, pred_reply, &rep));
    g_assert_cmpint(rep.calls, ==, 1);
    g_assert_cmpstr(rep.err->message, ==, expected);
    reply_clear(&rep);

    /* ...and one still queued when the connection is freed runs then. */
    ho_rpc_conn_call(conn, "test.echo", params_s("x"), reply_cb, &rep);
    ho_rpc_conn_free(conn);
    g_assert_cmpint(rep.calls, ==, 1);
    g_assert_nonnull(rep.err);
    reply_clear(&rep);
    g_assert_cmpint(f->closed_calls, ==, 1);
    fixture_free(f);
}

/* A fake daemon on the test's context: accepts one connection and writes
 * a canned answer. */
typedef struct {
    int lfd;
    const char *answer;
    int fd;
} FakeDaemon;

static gboolean
fake_daemon_accept(gint fd, GIOCondition cond, gpointer data)
{
    FakeDaemon *d = data;

    d->fd = accept4(d->lfd, NULL, NULL, SOCK_CLOEXEC);
    g_assert_cmpint(d->fd, >=, 0);
    g_assert_cmpint(write(d->fd, d->answer, strlen(d->answer)), ==, (ssize_t)strlen(d->answer));
    close(d->fd);
    d->fd = -1;
    return G_SOURCE_REMOVE;
}

static void
check_bad_daemon(Fixture *f, const char *answer, HoErrorCode code, const char *message)
{
    g_autofree char *path = g_build_filename(f->dir, "fake.sock", NULL);
    g_auto(GStrv) parts = g_strsplit(message, "@", -1);
    g_autofree char *expected = g_strjoinv(path, parts);
    FakeDaemon d = {.answer = answer, .fd = -1};
    GSource *src;

    d.lfd = ho_socket_unix_listen(path, 0600, 4);
    g_assert_cmpint(d.lfd, >=, 0);
    src = g_unix_fd_source_new(d.lfd, G_IO_IN);
    g_source_set_callback(src, G_SOURCE_FUNC(fake_daemon_accept), &d, NULL);
    g_source_attach(src, f->ctx);

    ho_error_reset();
    g_assert_null(ho_rpc_conn_open_unix(path, "rpctest", f->ctx, WAIT_MS));
    g_assert_nonnull(ho_error_last());
    g_assert_cmpint(ho_error_last()->code, ==, code);
    g_assert_cmpstr(ho_error_last()->message, ==, expected);

    g_source_destroy(src);
    g_source_unref(src);
    if (d.fd >= 0)
        close(d.fd);
    close(d.lfd);
    unlink(path);
}

static void
test_client_bad_daemon(void)
{
    Fixture *f = fixture_new(NULL);

    check_bad_daemon(f, "<html>\n", HO_ERR_RPC,
                     "cannot connect to handoverd at '@': handoverd at '@' sent malformed "
                     "JSON: malformed JSON at offset 0: unexpected character");
    check_bad_daemon(f, "{\"id\":99,\"result\":{}}\n", HO_ERR_RPC,
                     "cannot connect to handoverd at '@': handoverd at '@' sent a reply "
                     "to unknown request id 99");
    check_bad_daemon(f, "{\"id\":0}\n", HO_ERR_RPC,
                     "cannot connect to handoverd at '@': handoverd at '@' sent an "
                     "unexpected message: {\"id\":0}");
    check_bad_daemon(f, "{\"id\":0,\"error\":{\"code\":\"no-domain\"}}\n", HO_ERR_RPC,
                     "cannot connect to handoverd at '@': handoverd at '@' sent an "
                     "unexpected message: {\"id\":0,\"error\":{\"code\":\"no-domain\"}}");
    check_bad_daemon(f, "{\"id\":0,\"result\":[]}\n", HO_ERR_RPC,
                     "cannot connect to handoverd at '@': its answer to 'hello' is not an "
                     "object");
    check_bad_daemon(f, "{\"id\":0,\"error\":{\"code\":\"timeout\",\"message\":\"busy\"}}\n",
                     HO_ERR_TIMEOUT, "busy");
    check_bad_daemon(f, "{\"id\":0,\"result\":{\"protocol\":2,\"daemon\":\"handoverd 9.0\"}}\n",
                     HO_ERR_RPC,
                     "cannot connect to handoverd at '@': it is 'handoverd 9.0' and speaks "
                     "protocol version 2, this client speaks version 1");
    check_bad_daemon(f, "", HO_ERR_RPC,
                     "cannot connect to handoverd at '@': handoverd at '@' closed the "
                     "connection");
    fixture_free(f);
}

static void
test_client_open_errors(void)
{
    Fixture *f = fixture_new(NULL);
    g_autofree char *missing = g_build_filename(f->dir, "nothing.sock", NULL);
    g_autofree char *prefix = g_strdup_printf("cannot connect to handoverd at '%s': ", missing);
    g_autofree char *silent = g_build_filename(f->dir, "silent.sock", NULL);
    g_autofree char *timeout = g_strdup_printf("cannot connect to handoverd at '%s': no answer "
                                               "to 'hello' within 100 ms",
                                               silent);
    int lfd;

    ho_error_reset();
    g_assert_null(ho_rpc_conn_open_unix(missing, NULL, f->ctx, WAIT_MS));
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_SYSTEM);
    g_assert_true(g_str_has_prefix(ho_error_last()->message, prefix));

    /* A socket that never answers. */
    lfd = ho_socket_unix_listen(silent, 0600, 4);
    g_assert_cmpint(lfd, >=, 0);
    g_assert_null(ho_rpc_conn_open_unix(silent, NULL, f->ctx, 100));
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_TIMEOUT);
    g_assert_cmpstr(ho_error_last()->message, ==, timeout);
    close(lfd);
    fixture_free(f);
}

/* A server running in its own thread on its own context; the client opens
 * with ctx NULL and must bring its own private context. */
typedef struct {
    Fixture *f;
    GMainLoop *loop;
    GMutex lock;
    GCond cond;
    bool ready;
} ServerThread;

static gpointer
server_thread_run(gpointer data)
{
    ServerThread *t = data;

    g_main_context_push_thread_default(t->f->ctx);
    g_mutex_lock(&t->lock);
    t->ready = true;
    g_cond_signal(&t->cond);
    g_mutex_unlock(&t->lock);
    g_main_loop_run(t->loop);
    g_main_context_pop_thread_default(t->f->ctx);
    return NULL;
}

static void
test_client_private_context(void)
{
    Fixture *f = fixture_new(NULL);
    ServerThread t = {.f = f};
    GThread *thread;
    HoRpcConn *conn;
    g_autoptr(json_object) result = NULL;
    const char *s = NULL;

    t.loop = g_main_loop_new(f->ctx, FALSE);
    g_mutex_init(&t.lock);
    g_cond_init(&t.cond);
    thread = g_thread_new("rpc-server", server_thread_run, &t);
    g_mutex_lock(&t.lock);
    while (!t.ready)
        g_cond_wait(&t.cond, &t.lock);
    g_mutex_unlock(&t.lock);

    conn = ho_rpc_conn_open_unix(f->sock, "rpctest", NULL, WAIT_MS);
    g_assert_nonnull(conn);
    g_assert_cmpint(ho_rpc_conn_call_sync(conn, "test.echo", params_s("p"), &result, WAIT_MS), ==,
                    0);
    g_assert_cmpint(ho_json_get_string(result, "s", &s), ==, 0);
    g_assert_cmpstr(s, ==, "p");
    g_assert_cmpint(ho_rpc_conn_call_sync(conn, "events.subscribe", NULL, NULL, WAIT_MS), ==, 0);
    ho_rpc_conn_set_callbacks(conn, conn_event_cb, NULL, f);
    g_assert_cmpint(
        ho_rpc_conn_call_sync(conn, "test.emit",
                              ho_json_add_string(json_object_new_object(), "event", "x.thread"),
                              NULL, WAIT_MS),
        ==, 0);
    g_assert_cmpint(f->events, ==, 1);
    /* Nothing of the connection landed on the global default context. */
    g_assert_false(g_main_context_pending(NULL));
    ho_rpc_conn_free(conn);

    g_main_loop_quit(t.loop);
    g_thread_join(thread);
    g_main_loop_unref(t.loop);
    g_mutex_clear(&t.lock);
    g_cond_clear(&t.cond);
    fixture_free(f);
}

/* ---- tests: asynchronous TCP connect ------------------------------------ */

static void
test_async_tcp(void)
{
    Fixture *f = fixture_new(NULL);
    HoRpcConnOptions opts = {.client_name = "peer"};
    Opened o = {0};
    Opened o2 = {0};
    Opened o3 = {0};
    Reply rep = {0};
    HoRpcConn *conn;
    HoRpcConn *refused;
    HoRpcConn *cancelled;
    g_autofree char *prefix = NULL;
    int port = 0;
    int dead_port = 0;
    int fd;

    g_assert_cmpint(ho_rpc_server_listen_tcp(f->srv, "127.0.0.1", 0, &port), ==, 0);

    /* By name (resolved in a thread); nothing happens before the loop runs,
     * and a call made meanwhile is queued behind the hello. */
    conn = ho_rpc_conn_open_tcp_async("localhost", port, &opts, f->ctx, opened_cb, &o);
    g_assert_nonnull(conn);
    g_assert_cmpint(o.calls, ==, 0);
    g_assert_null(ho_rpc_conn_get_hello(conn));
    ho_rpc_conn_call(conn, "test.echo", params_s("early"), reply_cb, &rep);
    g_assert_true(run_until(f, pred_opened, &o));
    g_assert_null(o.err);
    g_assert_nonnull(ho_rpc_conn_get_hello(conn));
    g_assert_true(run_until(f, pred_reply, &rep));
    g_assert_null(rep.err);
    reply_clear(&rep);
    g_assert_cmpuint(ho_rpc_server_client_count(f->srv), ==, 1);

    /* A port nobody listens on: the callback says so. */
    fd = ho_socket_tcp_listen("127.0.0.1", 0, 1, &dead_port);
    g_assert_cmpint(fd, >=, 0);
    close(fd);
    refused = ho_rpc_conn_open_tcp_async("127.0.0.1", dead_port, &opts, f->ctx, opened_cb, &o2);
    g_assert_nonnull(refused);
    g_assert_true(run_until(f, pred_opened, &o2));
    g_assert_cmpint(o2.calls, ==, 1);
    g_assert_nonnull(o2.err);
    g_assert_cmpint(o2.err->code, ==, HO_ERR_SYSTEM);
    prefix = g_strdup_printf("cannot connect to handoverd at '127.0.0.1:%d': ", dead_port);
    g_assert_true(g_str_has_prefix(o2.err->message, prefix));
    ho_rpc_conn_free(refused);

    /* Freed before it opened: cancelled, the callback never runs. */
    cancelled = ho_rpc_conn_open_tcp_async("localhost", port, &opts, f->ctx, opened_cb, &o3);
    g_assert_nonnull(cancelled);
    ho_rpc_conn_free(cancelled);
    run_for(f, 50);
    g_assert_cmpint(o3.calls, ==, 0);

    /* Arguments that cannot work fail at once. */
    ho_error_reset();
    g_assert_null(ho_rpc_conn_open_tcp_async("", port, &opts, f->ctx, opened_cb, &o3));
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_INVALID_ARG);
    g_assert_null(ho_rpc_conn_open_tcp_async("127.0.0.1", 0, &opts, f->ctx, opened_cb, &o3));
    g_assert_cmpint(o3.calls, ==, 0);

    g_assert_cmpint(o.calls, ==, 1);
    ho_rpc_conn_free(conn);
    wait_clients(f, 0);
    ho_error_free(o.err);
    ho_error_free(o2.err);
    fixture_free(f);
}

/* ---- tests: keepalive and sessions --------------------------------------- */

static bool
pred_sessions_closed(Fixture *f, const void *data)
{
    return f->sessions_closed >= GPOINTER_TO_INT(data);
}

/* A client that asked for keepalive and then stops answering is dropped
 * as dead after `count` pings; its session hears of it. */
static void
test_keepalive_server_drops_silent_client(void)
{
    Fixture *f = fixture_new(NULL);
    Raw *r;
    g_autoptr(json_object) hello = NULL;
    g_autoptr(json_object) sess = NULL;
    json_object *result;
    json_object *ka = NULL;
    int64_t interval = 0;
    int pings = 0;
    char *line;

    ho_rpc_server_set_keepalive(f->srv, 20, 3);
    r = raw_connect(f);
    hello = raw_call(f, r,
                     "{\"id\":0,\"method\":\"hello\",\"params\":{\"protocol\":1,"
                     "\"keepalive\":true}}");
    result = assert_result(hello, 0);
    g_assert_cmpint(ho_json_get_object(result, "keepalive", &ka), ==, 0);
    g_assert_cmpint(ho_json_get_int64(ka, "interval_ms", &interval), ==, 0);
    g_assert_cmpint(interval, ==, 20);
    sess = raw_call(f, r, "{\"id\":1,\"method\":\"test.session\"}");
    assert_result(sess, 1);

    /* Never answered: three pings, then the door. */
    while ((line = raw_read_line(f, r))) {
        g_assert_cmpstr(line, ==, "{\"keepalive\":\"ping\"}");
        pings++;
        g_free(line);
    }
    g_assert_cmpint(pings, ==, 3);
    wait_clients(f, 0);
    g_assert_true(run_until(f, pred_sessions_closed, GINT_TO_POINTER(1)));
    g_assert_cmpint(f->sessions_closed, ==, 1);
    g_assert_true(fixture_log_contains(f, "did not answer 3 keepalive pings sent 20 ms apart"));
    raw_free(r);
    fixture_free(f);
}

/* Clients that did not ask get no pings; pings from any client are answered;
 * a bad keepalive message is a violation. */
static void
test_keepalive_server_answers(void)
{
    Fixture *f = fixture_new(NULL);
    Raw *r = raw_connect(f);
    g_autoptr(json_object) pong = NULL;
    g_autoptr(json_object) bad = NULL;
    g_autoptr(json_object) hello = NULL;

    ho_rpc_server_set_keepalive(f->srv, 20, 3);
    hello = raw_call(f, r, "{\"id\":0,\"method\":\"hello\",\"params\":{\"protocol\":1}}");
    g_assert_false(json_object_object_get_ex(assert_result(hello, 0), "keepalive", NULL));
    run_for(f, 150); /* 7 intervals: a client that asked would be gone */
    pong = raw_call(f, r, "{\"keepalive\":\"ping\"}");
    g_assert_cmpstr(json_object_to_json_string_ext(pong, JSON_C_TO_STRING_PLAIN), ==,
                    "{\"keepalive\":\"pong\"}");
    g_assert_cmpuint(ho_rpc_server_client_count(f->srv), ==, 1);
    bad = raw_call(f, r, "{\"keepalive\":\"hello\"}");
    assert_error(bad, -1, "rpc", "a keepalive message must be \"ping\" or \"pong\"", false);
    raw_expect_eof(f, r);
    raw_free(r);
    wait_clients(f, 0);
    fixture_free(f);
}

/* Two ends that both run keepalive and both answer stay connected for many
 * intervals; a plain close runs the session's hook too. */
static void
test_keepalive_both_alive(void)
{
    Fixture *f = fixture_new(NULL);
    HoRpcConnOptions opts = {.client_name = "peer", .keepalive_interval_ms = 20,
                             .keepalive_count = 5};
    Opened o = {0};
    g_autoptr(json_object) res = NULL;
    json_object *ka = NULL;
    HoRpcConn *conn;

    ho_rpc_server_set_keepalive(f->srv, 20, 5);
    conn = ho_rpc_conn_open_unix_async(f->sock, &opts, f->ctx, opened_cb, &o);
    ho_rpc_conn_set_callbacks(conn, conn_event_cb, conn_closed_cb, f);
    g_assert_true(run_until(f, pred_opened, &o));
    g_assert_null(o.err);
    g_assert_cmpint(ho_json_get_object(ho_rpc_conn_get_hello(conn), "keepalive", &ka), ==, 0);
    g_assert_cmpint(ho_rpc_conn_call_sync(conn, "test.session", NULL, &res, WAIT_MS), ==, 0);
    run_for(f, 300); /* 15 intervals, silent but for the pings */
    g_assert_true(ho_rpc_conn_is_open(conn));
    g_assert_cmpint(f->closed_calls, ==, 0);
    g_assert_cmpuint(ho_rpc_server_client_count(f->srv), ==, 1);
    g_assert_cmpint(f->sessions_closed, ==, 0);
    ho_rpc_conn_free(conn);
    g_assert_true(run_until(f, pred_sessions_closed, GINT_TO_POINTER(1)));
    wait_clients(f, 0);
    fixture_free(f);
}

/* A daemon that answers hello and then goes silent (a peer behind a dead
 * link): the client's keepalive closes the connection saying why. */
typedef struct {
    int lfd;
    int fd;
    GString *in;
} SilentDaemon;

static gboolean
silent_daemon_accept(gint fd, GIOCondition cond, gpointer data)
{
    SilentDaemon *d = data;
    static const char answer[] = "{\"id\":0,\"result\":{\"protocol\":1,\"daemon\":\"mute\"}}\n";

    d->fd = accept4(d->lfd, NULL, NULL, SOCK_CLOEXEC);
    g_assert_cmpint(d->fd, >=, 0);
    g_assert_cmpint(write(d->fd, answer, strlen(answer)), ==, (ssize_t)strlen(answer));
    return G_SOURCE_REMOVE;
}

static bool
pred_closed(Fixture *f, const void *data)
{
    return f->closed_calls > 0;
}

static void
test_keepalive_client_detects_dead_daemon(void)
{
    Fixture *f = fixture_new(NULL);
    g_autofree char *path = g_build_filename(f->dir, "mute.sock", NULL);
    g_autofree char *expected = NULL;
    HoRpcConnOptions opts = {.keepalive_interval_ms = 20, .keepalive_count = 3};
    SilentDaemon d = {.fd = -1};
    Opened o = {0};
    HoRpcConn *conn;
    GSource *src;
    char buf[4096];
    ssize_t n;

    d.lfd = ho_socket_unix_listen(path, 0600, 4);
    g_assert_cmpint(d.lfd, >=, 0);
    src = g_unix_fd_source_new(d.lfd, G_IO_IN);
    g_source_set_callback(src, G_SOURCE_FUNC(silent_daemon_accept), &d, NULL);
    g_source_attach(src, f->ctx);

    conn = ho_rpc_conn_open_unix_async(path, &opts, f->ctx, opened_cb, &o);
    ho_rpc_conn_set_callbacks(conn, NULL, conn_closed_cb, f);
    g_assert_true(run_until(f, pred_opened, &o));
    g_assert_null(o.err);
    g_assert_true(run_until(f, pred_closed, NULL));
    g_assert_cmpint(f->closed_calls, ==, 1);
    expected = g_strdup_printf("handoverd at '%s' did not answer 3 keepalive pings sent 20 ms "
                               "apart: the connection is dead",
                               path);
    g_assert_cmpstr(f->closed_err->message, ==, expected);
    g_assert_false(ho_rpc_conn_is_open(conn));

    /* What the mute daemon got: the hello (asking for pings) and 3 pings. */
    n = read(d.fd, buf, sizeof(buf) - 1);
    g_assert_cmpint(n, >, 0);
    buf[n] = '\0';
    g_assert_nonnull(strstr(buf, "\"keepalive\":true"));
    g_assert_nonnull(strstr(buf, "{\"keepalive\":\"ping\"}\n{\"keepalive\":\"ping\"}\n"
                                 "{\"keepalive\":\"ping\"}\n"));
    g_assert_null(strstr(buf, "{\"keepalive\":\"ping\"}\n{\"keepalive\":\"ping\"}\n"
                              "{\"keepalive\":\"ping\"}\n{\"keepalive\":\"ping\"}"));

    ho_rpc_conn_free(conn);
    g_source_destroy(src);
    g_source_unref(src);
    close(d.fd);
    close(d.lfd);
    ho_error_free(o.err);
    fixture_free(f);
}

int
main(int argc, char **argv)
{
    size_t i;

    g_test_init(&argc, &argv, NULL);
    ho_log_init();

    g_test_add_func("/rpc/hello/ok", test_hello_ok);
    g_test_add_func("/rpc/hello/version-mismatch", test_hello_version_mismatch);
    g_test_add_func("/rpc/hello/version-named", test_hello_version_named);
    g_test_add_func("/rpc/async/tcp-connect", test_async_tcp);
    g_test_add_func("/rpc/keepalive/server-drops-silent-client",
                    test_keepalive_server_drops_silent_client);
    g_test_add_func("/rpc/keepalive/server-answers", test_keepalive_server_answers);
    g_test_add_func("/rpc/keepalive/both-alive", test_keepalive_both_alive);
    g_test_add_func("/rpc/keepalive/client-detects-dead-daemon",
                    test_keepalive_client_detects_dead_daemon);
    g_test_add_func("/rpc/hello/first", test_hello_first);
    g_test_add_func("/rpc/args", test_args);
    g_test_add_func("/rpc/unknown-method", test_unknown_method);
    g_test_add_func("/rpc/handler-errors", test_handler_errors);
    g_test_add_func("/rpc/async/later", test_async_later);
    g_test_add_func("/rpc/async/disconnect", test_async_disconnect);
    g_test_add_func("/rpc/async/server-freed", test_async_server_freed);
    g_test_add_func("/rpc/async/server-freed-in-handler", test_server_freed_in_handler);
    g_test_add_func("/rpc/big-reply", test_big_reply);
    for (i = 0; i < G_N_ELEMENTS(violations); i++) {
        g_autofree char *path = g_strdup_printf("/rpc/violation/%zu", i);

        g_test_add_data_func(path, &violations[i], test_violation);
    }
    g_test_add_func("/rpc/violation/rest-ignored", test_violation_rest_ignored);
    g_test_add_func("/rpc/violation/duplicate-id", test_violation_duplicate_id);
    g_test_add_func("/rpc/violation/linger", test_violation_linger);
    g_test_add_func("/rpc/violation/oversized", test_violation_oversized);
    g_test_add_func("/rpc/limit/requests", test_limit_requests);
    g_test_add_func("/rpc/limit/clients", test_limit_clients);
    g_test_add_func("/rpc/events", test_events);
    g_test_add_func("/rpc/slow-reader", test_slow_reader);
    g_test_add_func("/rpc/tcp", test_tcp);
    g_test_add_func("/rpc/client/timeout", test_client_timeout);
    g_test_add_func("/rpc/client/events-during-call", test_client_events_during_call);
    g_test_add_func("/rpc/client/wait-event", test_client_wait_event);
    g_test_add_func("/rpc/client/bad-daemon", test_client_bad_daemon);
    g_test_add_func("/rpc/client/open-errors", test_client_open_errors);
    g_test_add_func("/rpc/client/private-context", test_client_private_context);

    return g_test_run();
}
