/*
 * The daemon side of the handoverd protocol: see ho_rpc_server.h and
 * docs/protocol.md.
 *
 * Each client is a non-blocking socket with one watch on the server's
 * context: G_IO_IN while it may send requests, G_IO_OUT only while output
 * waits. Replies and events are queued and written when the socket takes
 * them; a client whose queue grows past max_output does not read and is
 * dropped.
 *
 * A client goes OPEN -> (CLOSING -> DRAINING ->) CLOSED. A protocol
 * violation queues one error line and moves to CLOSING: nothing more is
 * read, the output is flushed, then the socket is shut down for writing and
 * DRAINING discards what the client still sends until it closes (closing
 * with unread input would make TCP reset the connection and could lose the
 * error line). A linger timer bounds both steps.
 *
 * Freeing is deferred (as Redis does): a CLOSED client stays allocated
 * while one of its requests is pending (a handler may answer hours later)
 * or while a dispatch on it runs (a handler may make the server drop it, or
 * free the whole server); whoever releases the last of these frees it.
 * Replies to a closed client go nowhere. A call being handled is freed only
 * after its handler returned, so the server can still check it.
 */
#define _GNU_SOURCE /* accept4, struct ucred */
#define HO_LOG_MODULE "rpc.server"

#include "ho_rpc_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ho_i18n.h"
#include "ho_json.h"
#include "ho_log.h"
#include "ho_rpc_proto.h"
#include "ho_socket.h"
#include "ho_uri.h"

#define HO_RPC_DEFAULT_MAX_MESSAGE (1024 * 1024)
#define HO_RPC_DEFAULT_MAX_CLIENTS 64
#define HO_RPC_DEFAULT_MAX_REQUESTS 32
#define HO_RPC_DEFAULT_MAX_OUTPUT (16 * 1024 * 1024)

#define HO_RPC_LISTEN_BACKLOG 128
/* Connections accepted per wakeup, so a flood cannot starve the clients. */
#define HO_RPC_ACCEPT_BATCH 64
/* After accept() ran out of fds or memory, wait this long before the next. */
#define HO_RPC_ACCEPT_PAUSE_MS 200
/* How long a client being dropped gets to read its error line. */
#define HO_RPC_LINGER_MS 5000
/* Request ids are integers from 0 to 2^53 (exact in every JSON parser). */
#define HO_RPC_MAX_ID ((gint64)1 << 53)

typedef enum {
    CLIENT_OPEN,
    CLIENT_CLOSING,  /* its last line is queued: flush, read nothing more */
    CLIENT_DRAINING, /* flushed and shut down for writing: discard input until EOF */
    CLIENT_CLOSED,   /* fd closed; allocated while calls are pending or a dispatch runs */
} HoRpcClientState;

typedef struct {
    HoRpcServer *srv;
    int fd;
    bool local;
    char *label; /* the path, or host:port */
    char *path;  /* the UNIX socket file we created, removed at the end */
    dev_t dev;   /* ... if it is still ours */
    ino_t ino;
    GSource *watch; /* NULL while accepting is paused */
    GSource *pause;
} HoRpcListener;

struct _HoRpcServerClient {
    HoRpcServer *srv; /* NULL once closed: a pending call may outlive the server */
    char *label;      /* "client 3 (pid 1234, uid 0)" */
    int fd;
    bool local;
    HoRpcClientState state;
    GSource *watch;
    GSource *linger;
    HoRpcReader in;
    HoRpcWriter out;
    size_t max_output;
    unsigned int max_requests;
    bool hello_done;
    bool subscribed;
    bool keepalive;  /* asked for pings in its hello */
    GSource *ka_timer;
    guint ka_missed;
    bool ka_heard;   /* a message came since the last tick */
    void *session;   /* the application's, see ho_rpc_call_set_session */
    GDestroyNotify session_closed;
    GHashTable *calls; /* &call->id -> HoRpcCall, the pending ones */
    int busy;          /* dispatches running on this client */
    GList link;        /* in srv->clients while not closed */
};

struct _HoRpcCall {
    HoRpcServerClient *client;
    gint64 id;
    char *method;
    bool in_handler; /* freed after the handler returns, not before */
    bool answered;
};

struct _HoRpcServer {
    GMainContext *ctx;
    void *opaque;
    json_object *hello_info;
    HoRpcLimits limits;
    GHashTable *methods; /* name -> const HoRpcMethod * */
    GPtrArray *listeners;
    GQueue clients; /* of HoRpcServerClient, not closed ones */
    guint64 next_serial;
    guint ka_interval_ms; /* 0: no pings to clients */
    guint ka_count;
};

static void server_client_close(HoRpcServerClient *client);
static void server_client_update_watch(HoRpcServerClient *client);
static void server_client_start_closing(HoRpcServerClient *client);
static void server_client_keepalive_start(HoRpcServerClient *client);
static void server_client_send(HoRpcServerClient *client, json_object *msg);

static void
server_source_free(GSource *source)
{
    g_source_destroy(source);
    g_source_unref(source);
}

/* ---- the built-in methods ----------------------------------------------- */

static int
server_hello(HoRpcCall *call, json_object *params, void *opaque)
{
    HoRpcServerClient *client = call->client;
    json_object *val;
    gint64 protocol;
    const char *name = NULL;
    bool keepalive = false;
    json_object *result;

    if (client->hello_done) {
        ho_error_report(HO_ERR_RPC, _("'hello' was already sent on this connection"));
        return -1;
    }

    json_object_object_get_ex(params, "protocol", &val);
    protocol = json_object_get_int64(val);
    if (json_object_object_get_ex(params, "client", &val))
        name = json_object_get_string(val);
    if (json_object_object_get_ex(params, "keepalive", &val))
        keepalive = json_object_get_boolean(val);

    if (protocol != HO_RPC_PROTOCOL_VERSION) {
        const char *daemon = NULL;
        g_autoptr(HoError) err = NULL;

        if (client->srv->hello_info &&
            json_object_object_get_ex(client->srv->hello_info, "daemon", &val) &&
            json_object_is_type(val, json_type_string))
            daemon = json_object_get_string(val);
        if (name)
            err = ho_error_new(HO_ERR_RPC,
                               _("'%1$s' speaks protocol version %2$lld, but '%3$s' speaks "
                                 "version %4$d"),
                               name, (long long)protocol, daemon ? daemon : "handoverd",
                               HO_RPC_PROTOCOL_VERSION);
        else
            err = ho_error_new(HO_ERR_RPC,
                               _("the client speaks protocol version %1$lld, but '%2$s' speaks "
                                 "version %3$d"),
                               (long long)protocol, daemon ? daemon : "handoverd",
                               HO_RPC_PROTOCOL_VERSION);

        ho_rpc_call_error(call, err);
        /* Queued after the reply, so the client still gets it. */
        HO_WARN("%s dropped: %s", client->label, err->message);
        if (client->state == CLIENT_OPEN)
            server_client_start_closing(client);
        return 0;
    }

    client->hello_done = true;
    HO_DEBUG("%s: hello from '%s'", client->label, name ? name : "?");

    result = json_object_new_object();
    ho_json_add_int64(result, "protocol", HO_RPC_PROTOCOL_VERSION);
    if (keepalive && client->srv->ka_interval_ms > 0) {
        json_object *ka = json_object_new_object();

        ho_json_add_int64(ka, "interval_ms", client->srv->ka_interval_ms);
        ho_json_add_int64(ka, "count", client->srv->ka_count);
        ho_json_add(result, "keepalive", ka);
        server_client_keepalive_start(client);
    }
    if (client->srv->hello_info) {
        json_object_object_foreach(client->srv->hello_info, key, info)
        {
            if (strcmp(key, "protocol") != 0)
                ho_json_add(result, key, json_object_get(info));
        }
    }
    ho_rpc_call_reply(call, result);
    return 0;
}

static int
server_events_subscribe(HoRpcCall *call, json_object *params, void *opaque)
{
    call->client->subscribed = true;
    ho_rpc_call_reply(call, NULL);
    return 0;
}

static int
server_events_unsubscribe(HoRpcCall *call, json_object *params, void *opaque)
{
    call->client->subscribed = false;
    ho_rpc_call_reply(call, NULL);
    return 0;
}

static const HoRpcArgSpec server_hello_args[] = {
    {"protocol", HO_RPC_ARG_INT, true},
    {"client", HO_RPC_ARG_STRING, false},
    {"keepalive", HO_RPC_ARG_BOOL, false},
    {NULL, 0, false},
};

static const HoRpcArgSpec server_no_args[] = {
    {NULL, 0, false},
};

static const HoRpcMethod server_builtin_methods[] = {
    {"hello", server_hello, server_hello_args, HO_RPC_METHOD_LOCAL | HO_RPC_METHOD_PEER},
    {"events.subscribe", server_events_subscribe, server_no_args,
     HO_RPC_METHOD_LOCAL | HO_RPC_METHOD_PEER},
    {"events.unsubscribe", server_events_unsubscribe, server_no_args,
     HO_RPC_METHOD_LOCAL | HO_RPC_METHOD_PEER},
};

/* ---- clients: output ---------------------------------------------------- */

/* Free a closed client nobody uses any more. */
static void
server_client_maybe_free(HoRpcServerClient *client)
{
    if (client->state != CLIENT_CLOSED || client->busy > 0 || g_hash_table_size(client->calls) > 0)
        return;
    HO_DEBUG("%s freed", client->label);
    g_hash_table_unref(client->calls);
    g_free(client->label);
    g_free(client);
}

static void
server_client_release(HoRpcServerClient *client)
{
    g_assert(client->busy > 0);
    client->busy--;
    server_client_maybe_free(client);
}

static void
server_client_update_watch(HoRpcServerClient *client)
{
    GIOCondition cond = G_IO_HUP | G_IO_ERR;

    switch (client->state) {
    case CLIENT_OPEN:
        cond |= G_IO_IN;
        if (ho_rpc_writer_queued(&client->out) > 0)
            cond |= G_IO_OUT;
        break;
    case CLIENT_CLOSING:
        cond |= G_IO_OUT;
        break;
    case CLIENT_DRAINING:
        cond |= G_IO_IN;
        break;
    case CLIENT_CLOSED:
        return;
    }
    ho_rpc_watch_set(client->watch, cond);
}

static gboolean
server_client_linger_expired(gpointer data)
{
    HoRpcServerClient *client = data;

    HO_DEBUG("%s did not read its last message in %d ms, closing", client->label,
             HO_RPC_LINGER_MS);
    /* Not a source of ours any more once the close destroys it. */
    g_clear_pointer(&client->linger, g_source_unref);
    server_client_close(client);
    return G_SOURCE_REMOVE;
}

/* No more input: flush what is queued (its last line), then close, within
 * the linger time. */
static void
server_client_start_closing(HoRpcServerClient *client)
{
    g_assert(client->state == CLIENT_OPEN);
    client->state = CLIENT_CLOSING;
    client->linger = g_timeout_source_new(HO_RPC_LINGER_MS);
    g_source_set_callback(client->linger, server_client_linger_expired, client, NULL);
    g_source_set_static_name(client->linger, "ho-rpc-linger");
    g_source_attach(client->linger, client->srv->ctx);
    server_client_update_watch(client);
}

/* Queue one encoded line; a client that lets too much pile up is dropped. */
static void
server_client_queue(HoRpcServerClient *client, const char *line, size_t len)
{
    if (client->state != CLIENT_OPEN) {
        HO_DEBUG("%s: closing, message dropped", client->label);
        return;
    }
    ho_rpc_log_message(HO_LOG_MODULE, client->label, "send", line, len);
    ho_rpc_writer_append(&client->out, line, len);
    /* One big reply can pass the limit on its own: see whether the socket
     * takes it before calling the client slow. */
    if (ho_rpc_writer_queued(&client->out) > client->max_output &&
        ho_rpc_writer_flush(&client->out, client->fd) < 0) {
        HO_DEBUG("%s: cannot write: %s", client->label, g_strerror(errno));
        server_client_close(client);
        return;
    }
    if (ho_rpc_writer_queued(&client->out) > client->max_output) {
        HO_WARN("%s dropped: it does not read its messages (more than %zu bytes queued)",
                client->label, client->max_output);
        server_client_close(client);
        return;
    }
    server_client_update_watch(client);
}

static void
server_client_send(HoRpcServerClient *client, json_object *msg)
{
    size_t len;
    g_autofree char *line = NULL;

    if (client->state != CLIENT_OPEN)
        return;
    line = ho_rpc_encode(msg, &len);
    server_client_queue(client, line, len);
}

static void
server_client_send_error(HoRpcServerClient *client, json_object *id, const HoError *err)
{
    g_autoptr(json_object) msg = json_object_new_object();

    ho_json_add(msg, "id", id);
    ho_json_add(msg, "error", ho_rpc_error_to_json(err));
    server_client_send(client, msg);
}

/* Drop a client that broke the protocol: one error line (id null), one log
 * line, then close once the line is out. Consumes err. */
static void
server_client_violation(HoRpcServerClient *client, HoError *err)
{
    g_autoptr(HoError) owned = err;
    g_autoptr(json_object) msg = json_object_new_object();
    g_autofree char *line = NULL;
    size_t len;

    if (client->state != CLIENT_OPEN)
        return;
    HO_WARN("%s dropped: %s", client->label, err->message);
    ho_json_add(msg, "id", NULL);
    ho_json_add(msg, "error", ho_rpc_error_to_json(err));
    line = ho_rpc_encode(msg, &len);
    ho_rpc_log_message(HO_LOG_MODULE, client->label, "send", line, len);
    /* Past max_output, if need be: it is the last line and bounded. */
    ho_rpc_writer_append(&client->out, line, len);
    server_client_start_closing(client);
}

/* ---- clients: closing --------------------------------------------------- */

static void
server_client_close(HoRpcServerClient *client)
{
    guint pending;

    if (client->state == CLIENT_CLOSED)
        return;
    client->state = CLIENT_CLOSED;
    g_clear_pointer(&client->watch, ho_rpc_watch_free);
    g_clear_pointer(&client->linger, server_source_free);
    g_clear_pointer(&client->ka_timer, server_source_free);
    close(client->fd);
    client->fd = -1;
    ho_rpc_reader_clear(&client->in);
    ho_rpc_writer_clear(&client->out);
    if (client->srv) {
        g_queue_unlink(&client->srv->clients, &client->link);
        client->srv = NULL;
    }

    pending = g_hash_table_size(client->calls);
    if (pending > 0)
        HO_DEBUG("%s closed with %u call(s) pending: their replies will be dropped", client->label,
                 pending);
    else
        HO_DEBUG("%s closed", client->label);
    if (client->session_closed) {
        GDestroyNotify closed = client->session_closed;

        /* The application may answer calls of this client from here. */
        client->busy++;
        client->session_closed = NULL;
        closed(g_steal_pointer(&client->session));
        server_client_release(client);
        return;
    }
    server_client_maybe_free(client);
}

static void
server_client_flush(HoRpcServerClient *client)
{
    if (ho_rpc_writer_flush(&client->out, client->fd) < 0) {
        HO_DEBUG("%s: cannot write: %s", client->label, g_strerror(errno));
        server_client_close(client);
        return;
    }
    if (client->state == CLIENT_CLOSING && ho_rpc_writer_queued(&client->out) == 0) {
        /* The last line is out: say so with a FIN, then wait for the
         * client's own close, reading and discarding what it still sends. */
        (void)shutdown(client->fd, SHUT_WR);
        client->state = CLIENT_DRAINING;
    }
    server_client_update_watch(client);
}

static void
server_client_drain(HoRpcServerClient *client)
{
    char buf[16384];
    int i;

    for (i = 0; i < 16; i++) {
        ssize_t n = read(client->fd, buf, sizeof(buf));

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            server_client_close(client);
            return;
        }
    }
}

/* ---- clients: keepalive ------------------------------------------------- */

static void
server_client_send_keepalive(HoRpcServerClient *client, const char *what)
{
    g_autoptr(json_object) msg = json_object_new_object();

    ho_json_add_string(msg, "keepalive", what);
    server_client_send(client, msg);
}

static gboolean
server_client_keepalive_tick(gpointer data)
{
    HoRpcServerClient *client = data;
    HoRpcServer *srv = client->srv;

    if (client->state != CLIENT_OPEN || !srv)
        return G_SOURCE_CONTINUE; /* closing: the close removes this timer */
    if (client->ka_heard) {
        client->ka_heard = false;
        client->ka_missed = 0;
        return G_SOURCE_CONTINUE;
    }
    if (client->ka_missed >= srv->ka_count) {
        HO_WARN("%s dropped: it did not answer %u keepalive pings sent %u ms apart: the "
                "connection is dead",
                client->label, client->ka_missed, srv->ka_interval_ms);
        client->busy++;
        server_client_close(client);
        server_client_release(client);
        return G_SOURCE_REMOVE;
    }
    client->ka_missed++;
    server_client_send_keepalive(client, "ping");
    return G_SOURCE_CONTINUE;
}

static void
server_client_keepalive_start(HoRpcServerClient *client)
{
    if (client->ka_timer || client->state != CLIENT_OPEN)
        return;
    client->keepalive = true;
    client->ka_heard = false;
    client->ka_missed = 0;
    client->ka_timer = g_timeout_source_new(client->srv->ka_interval_ms);
    g_source_set_callback(client->ka_timer, server_client_keepalive_tick, client, NULL);
    g_source_set_static_name(client->ka_timer, "ho-rpc-keepalive");
    g_source_attach(client->ka_timer, client->srv->ctx);
}

/* ---- clients: requests -------------------------------------------------- */

static const HoRpcArgSpec *
server_find_arg(const HoRpcMethod *method, const char *name)
{
    const HoRpcArgSpec *spec;

    for (spec = method->args; spec && spec->name; spec++) {
        if (strcmp(spec->name, name) == 0)
            return spec;
    }
    return NULL;
}

static bool
server_arg_type_ok(HoRpcArgType type, json_object *val)
{
    switch (type) {
    case HO_RPC_ARG_STRING:
        return json_object_is_type(val, json_type_string);
    case HO_RPC_ARG_BOOL:
        return json_object_is_type(val, json_type_boolean);
    case HO_RPC_ARG_INT:
        /* json-c keeps integers above INT64_MAX as uint64: not an int64. */
        return json_object_is_type(val, json_type_int) &&
               !(json_object_get_int64(val) == G_MAXINT64 &&
                 json_object_get_uint64(val) > (guint64)G_MAXINT64);
    case HO_RPC_ARG_UINT:
        return json_object_is_type(val, json_type_int) && json_object_get_int64(val) >= 0;
    case HO_RPC_ARG_OBJECT:
        return json_object_is_type(val, json_type_object);
    case HO_RPC_ARG_ARRAY:
        return json_object_is_type(val, json_type_array);
    case HO_RPC_ARG_LAST:
        break;
    }
    return false;
}

static HoError *
server_arg_type_error(const char *arg, const char *method, HoRpcArgType type)
{
    switch (type) {
    case HO_RPC_ARG_STRING:
        return ho_error_new(HO_ERR_INVALID_ARG, _("argument '%1$s' of '%2$s' must be a string"),
                            arg, method);
    case HO_RPC_ARG_BOOL:
        return ho_error_new(HO_ERR_INVALID_ARG, _("argument '%1$s' of '%2$s' must be a boolean"),
                            arg, method);
    case HO_RPC_ARG_INT:
        return ho_error_new(HO_ERR_INVALID_ARG, _("argument '%1$s' of '%2$s' must be an integer"),
                            arg, method);
    case HO_RPC_ARG_UINT:
        return ho_error_new(HO_ERR_INVALID_ARG,
                            _("argument '%1$s' of '%2$s' must be a non-negative integer"), arg,
                            method);
    case HO_RPC_ARG_OBJECT:
        return ho_error_new(HO_ERR_INVALID_ARG, _("argument '%1$s' of '%2$s' must be an object"),
                            arg, method);
    case HO_RPC_ARG_ARRAY:
        return ho_error_new(HO_ERR_INVALID_ARG, _("argument '%1$s' of '%2$s' must be an array"),
                            arg, method);
    case HO_RPC_ARG_LAST:
        break;
    }
    return ho_error_new(HO_ERR_INTERNAL, _("argument '%1$s' of '%2$s' has an unknown type"), arg,
                        method);
}

/* Check params against the method's table: NULL, or the error naming the
 * first bad argument. */
static HoError *
server_check_args(const HoRpcMethod *method, json_object *params)
{
    const HoRpcArgSpec *spec;

    json_object_object_foreach(params, key, val)
    {
        spec = server_find_arg(method, key);
        if (!spec)
            return ho_error_new(HO_ERR_INVALID_ARG, _("unknown argument '%1$s' of '%2$s'"), key,
                                method->name);
        if (!server_arg_type_ok(spec->type, val))
            return server_arg_type_error(key, method->name, spec->type);
    }
    for (spec = method->args; spec && spec->name; spec++) {
        if (spec->required && !json_object_object_get_ex(params, spec->name, NULL))
            return ho_error_new(HO_ERR_INVALID_ARG, _("missing argument '%1$s' of '%2$s'"),
                                spec->name, method->name);
    }
    return NULL;
}

static void
server_call_free(HoRpcCall *call)
{
    g_free(call->method);
    g_free(call);
}

/* Run a method's handler on a new call. */
static void
server_run(HoRpcServerClient *client, const HoRpcMethod *method, gint64 id, json_object *params)
{
    HoRpcCall *call = g_new0(HoRpcCall, 1);
    void *opaque = client->srv->opaque;
    int rc;

    call->client = client;
    call->id = id;
    call->method = g_strdup(method->name);
    g_hash_table_insert(client->calls, &call->id, call);

    call->in_handler = true;
    rc = method->handler(call, params, opaque);
    if (rc < 0) {
        g_autoptr(HoError) err = ho_error_steal();

        if (call->answered) {
            HO_ERROR("method '%s' answered and then failed: %s", call->method,
                     err ? err->message : "?");
        } else {
            if (!err)
                err = ho_error_new(HO_ERR_INTERNAL, _("method '%1$s' failed without saying why"),
                                   call->method);
            ho_rpc_call_error(call, err);
        }
    }
    call->in_handler = false;
    if (call->answered)
        server_call_free(call);
}

/* One request line, parsed. The connection may be closed on return. */
static void
server_client_request(HoRpcServerClient *client, json_object *msg)
{
    HoRpcServer *srv = client->srv;
    json_object *id_obj;
    json_object *method_obj;
    json_object *ka;
    json_object *params = NULL;
    g_autoptr(json_object) empty = NULL;
    g_autoptr(HoError) err = NULL;
    const HoRpcMethod *method;
    const char *name;
    gint64 id;

    if (!json_object_is_type(msg, json_type_object)) {
        server_client_violation(client,
                                ho_error_new(HO_ERR_RPC, _("the message is not a JSON object")));
        return;
    }
    if (json_object_object_get_ex(msg, "keepalive", &ka)) {
        const char *what = json_object_is_type(ka, json_type_string)
                               ? json_object_get_string(ka)
                               : "";

        if (g_str_equal(what, "ping"))
            server_client_send_keepalive(client, "pong");
        else if (!g_str_equal(what, "pong"))
            server_client_violation(
                client, ho_error_new(HO_ERR_RPC, _("a keepalive message must be \"ping\" or "
                                                   "\"pong\"")));
        return;
    }
    if (!json_object_object_get_ex(msg, "id", &id_obj) ||
        !json_object_is_type(id_obj, json_type_int) || (id = json_object_get_int64(id_obj)) < 0 ||
        id > HO_RPC_MAX_ID) {
        server_client_violation(
            client, ho_error_new(HO_ERR_RPC, _("the request has no 'id' that is an integer "
                                               "from 0 to 2^53")));
        return;
    }
    if (!json_object_object_get_ex(msg, "method", &method_obj) ||
        !json_object_is_type(method_obj, json_type_string)) {
        server_client_violation(
            client, ho_error_new(HO_ERR_RPC, _("the request has no 'method' that is a string")));
        return;
    }
    if (g_hash_table_contains(client->calls, &id)) {
        server_client_violation(client, ho_error_new(HO_ERR_RPC,
                                                     _("request id %1$lld is already in use by a "
                                                       "pending request"),
                                                     (long long)id));
        return;
    }
    name = json_object_get_string(method_obj);

    if (json_object_object_get_ex(msg, "params", &params) &&
        !json_object_is_type(params, json_type_null) &&
        !json_object_is_type(params, json_type_object)) {
        err =
            ho_error_new(HO_ERR_INVALID_ARG, _("the 'params' of '%1$s' must be an object"), name);
    } else if (g_hash_table_size(client->calls) >= client->max_requests) {
        err =
            ho_error_new(HO_ERR_LIMIT, _("too many pending requests: at most %1$u per connection"),
                         client->max_requests);
    } else if (!client->hello_done && strcmp(name, "hello") != 0) {
        err = ho_error_new(HO_ERR_RPC, _("the first request must be 'hello', not '%1$s'"), name);
    } else if (!(method = g_hash_table_lookup(srv->methods, name))) {
        err = ho_error_new(HO_ERR_RPC, _("unknown method '%1$s'"), name);
    } else if (!client->local && !(method->flags & HO_RPC_METHOD_PEER)) {
        err = ho_error_new(
            HO_ERR_RPC, _("method '%1$s' is served on the local socket only, not over TCP"), name);
    } else {
        if (!params || json_object_is_type(params, json_type_null))
            params = empty = json_object_new_object();
        err = server_check_args(method, params);
        if (!err) {
            server_run(client, method, id, params);
            return;
        }
    }
    server_client_send_error(client, json_object_new_int64(id), err);
}

static void
server_client_read(HoRpcServerClient *client)
{
    ssize_t n = ho_rpc_reader_fill(&client->in, client->fd);

    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        HO_DEBUG("%s: cannot read: %s", client->label, g_strerror(errno));
        server_client_close(client);
        return;
    }
    if (n == 0) {
        if (ho_rpc_reader_pending(&client->in) > 0)
            HO_DEBUG("%s: %zu bytes of an incomplete message before EOF", client->label,
                     ho_rpc_reader_pending(&client->in));
        HO_DEBUG("%s disconnected", client->label);
        server_client_close(client);
        return;
    }
    client->ka_heard = true;

    /* Every handler may close this client or free the server: check. */
    while (client->state == CLIENT_OPEN) {
        const char *line;
        size_t len;
        g_autoptr(json_object) msg = NULL;
        g_autoptr(HoError) perr = NULL;
        int rc = ho_rpc_reader_next(&client->in, &line, &len);

        if (rc == 0)
            break;
        if (rc < 0) {
            server_client_violation(client,
                                    ho_error_new(HO_ERR_RPC,
                                                 _("the message is larger than the limit of "
                                                   "%1$zu bytes"),
                                                 client->in.max));
            break;
        }
        if (ho_rpc_line_is_blank(line, len))
            continue;
        ho_rpc_log_message(HO_LOG_MODULE, client->label, "recv", line, len);
        msg = ho_rpc_parse_line(line, len, &perr);
        if (!msg) {
            /* The parser's message says "malformed JSON" and where. */
            server_client_violation(client, ho_error_new(HO_ERR_RPC, "%s", perr->message));
            break;
        }
        server_client_request(client, msg);
    }
}

static void
server_client_io(GIOCondition cond, void *opaque)
{
    HoRpcServerClient *client = opaque;

    client->busy++;
    if (cond & (G_IO_IN | G_IO_HUP | G_IO_ERR)) {
        if (client->state == CLIENT_OPEN)
            server_client_read(client);
        else if (client->state == CLIENT_DRAINING)
            server_client_drain(client);
    }
    if ((cond & (G_IO_OUT | G_IO_HUP | G_IO_ERR)) &&
        (client->state == CLIENT_OPEN || client->state == CLIENT_CLOSING))
        server_client_flush(client);
    server_client_release(client);
}

/* ---- accepting ---------------------------------------------------------- */

static char *
server_client_label(int fd, bool local, guint64 serial)
{
    if (local) {
        struct ucred cred;
        socklen_t len = sizeof(cred);

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
            return g_strdup_printf("client %" G_GUINT64_FORMAT " (pid %d, uid %u)", serial,
                                   (int)cred.pid, (unsigned)cred.uid);
    } else {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        char host[INET6_ADDRSTRLEN] = "";
        int port = 0;

        if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0) {
            if (ss.ss_family == AF_INET) {
                const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;

                inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
                port = ntohs(sin->sin_port);
            } else if (ss.ss_family == AF_INET6) {
                const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;

                inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
                port = ntohs(sin6->sin6_port);
            }
        }
        if (*host) {
            g_autofree char *where = ho_uri_format_hostport(host, port);

            return g_strdup_printf("client %" G_GUINT64_FORMAT " (%s)", serial, where);
        }
    }
    return g_strdup_printf("client %" G_GUINT64_FORMAT " (fd %d)", serial, fd);
}

/* Over max_clients: one error line, one log line, close. Consumes fd. */
static void
server_reject(HoRpcServer *srv, int fd, const char *label)
{
    g_autoptr(HoError) err =
        ho_error_new(HO_ERR_LIMIT, _("too many clients: handoverd serves at most %1$u"),
                     srv->limits.max_clients);
    g_autoptr(json_object) msg = json_object_new_object();
    g_autofree char *line = NULL;
    size_t len;
    char buf[4096];
    int i;

    HO_WARN("%s dropped: %s", label, err->message);
    ho_json_add(msg, "id", NULL);
    ho_json_add(msg, "error", ho_rpc_error_to_json(err));
    line = ho_rpc_encode(msg, &len);
    /* A new socket's buffer is empty: the short line goes out at once. */
    (void)send(fd, line, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)shutdown(fd, SHUT_WR);
    /* Closing with unread input resets a TCP connection, which may discard
     * the line just sent: read what already came (a hello, usually). */
    for (i = 0; i < 16; i++) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

        if (n <= 0 && !(n < 0 && errno == EINTR))
            break;
    }
    close(fd);
}

/* Serve a connected, non-blocking, close-on-exec socket (consumed): the
 * client, or NULL when it was turned away. */
static HoRpcServerClient *
server_add_client(HoRpcServer *srv, int fd, bool local)
{
    guint64 serial = ++srv->next_serial;
    g_autofree char *label = server_client_label(fd, local, serial);
    HoRpcServerClient *client;

    if (g_queue_get_length(&srv->clients) >= srv->limits.max_clients) {
        server_reject(srv, fd, label);
        return NULL;
    }
    /* Small requests and replies: do not wait to fill a segment (best
     * effort). */
    if (!local && ho_socket_set_nodelay(fd) < 0)
        ho_error_reset();

    client = g_new0(HoRpcServerClient, 1);
    client->srv = srv;
    client->label = g_steal_pointer(&label);
    client->fd = fd;
    client->local = local;
    client->state = CLIENT_OPEN;
    client->max_output = srv->limits.max_output;
    client->max_requests = srv->limits.max_requests;
    ho_rpc_reader_init(&client->in, srv->limits.max_message_size);
    ho_rpc_writer_init(&client->out);
    client->calls = g_hash_table_new(g_int64_hash, g_int64_equal);
    client->link.data = client;
    g_queue_push_tail_link(&srv->clients, &client->link);
    client->watch = ho_rpc_watch_new(fd, G_IO_IN | G_IO_HUP | G_IO_ERR, server_client_io, client,
                                     "ho-rpc-client", srv->ctx);
    HO_DEBUG("%s connected (%s)", client->label, local ? "local" : "peer");
    return client;
}

static void server_listener_io(GIOCondition cond, void *opaque);

static gboolean
server_listener_resume(gpointer data)
{
    HoRpcListener *l = data;

    g_clear_pointer(&l->pause, g_source_unref);
    l->watch =
        ho_rpc_watch_new(l->fd, G_IO_IN, server_listener_io, l, "ho-rpc-listener", l->srv->ctx);
    return G_SOURCE_REMOVE;
}

static void
server_listener_io(GIOCondition cond, void *opaque)
{
    HoRpcListener *l = opaque;
    int i;

    for (i = 0; i < HO_RPC_ACCEPT_BATCH; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

        if (fd >= 0) {
            (void)server_add_client(l->srv, fd, l->local);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        /* Out of fds or memory (or worse): the listening socket stays
         * readable, so pause instead of spinning on it. */
        HO_WARN("cannot accept a connection on '%s': %s; accepting again in %d ms", l->label,
                g_strerror(errno), HO_RPC_ACCEPT_PAUSE_MS);
        g_clear_pointer(&l->watch, ho_rpc_watch_free);
        l->pause = g_timeout_source_new(HO_RPC_ACCEPT_PAUSE_MS);
        g_source_set_callback(l->pause, server_listener_resume, l, NULL);
        g_source_set_static_name(l->pause, "ho-rpc-accept-pause");
        g_source_attach(l->pause, l->srv->ctx);
        return;
    }
}

static void
server_listener_free(HoRpcListener *l)
{
    struct stat st;

    if (!l)
        return;
    g_clear_pointer(&l->watch, ho_rpc_watch_free);
    g_clear_pointer(&l->pause, server_source_free);
    if (l->fd >= 0)
        close(l->fd);
    /* Remove our socket file, not one a newer daemon put in its place. */
    if (l->path && lstat(l->path, &st) == 0 && st.st_dev == l->dev && st.st_ino == l->ino)
        (void)unlink(l->path);
    g_free(l->path);
    g_free(l->label);
    g_free(l);
}

static HoRpcListener *
server_listener_add(HoRpcServer *srv, int fd, bool local, const char *label)
{
    HoRpcListener *l = g_new0(HoRpcListener, 1);

    l->srv = srv;
    l->fd = fd;
    l->local = local;
    l->label = g_strdup(label);
    l->watch = ho_rpc_watch_new(fd, G_IO_IN, server_listener_io, l, "ho-rpc-listener", srv->ctx);
    g_ptr_array_add(srv->listeners, l);
    return l;
}

/* ---- public API --------------------------------------------------------- */

void
ho_rpc_limits_default(HoRpcLimits *limits)
{
    limits->max_message_size = HO_RPC_DEFAULT_MAX_MESSAGE;
    limits->max_clients = HO_RPC_DEFAULT_MAX_CLIENTS;
    limits->max_requests = HO_RPC_DEFAULT_MAX_REQUESTS;
    limits->max_output = HO_RPC_DEFAULT_MAX_OUTPUT;
}

HoRpcServer *
ho_rpc_server_new(const HoRpcMethod *methods, size_t n, void *opaque, json_object *hello_info,
                  const HoRpcLimits *limits, GMainContext *ctx)
{
    HoRpcServer *srv = g_new0(HoRpcServer, 1);
    HoRpcLimits defaults;
    size_t i;

    ho_rpc_limits_default(&defaults);
    srv->limits = defaults;
    /* A zero field means its default. */
    if (limits) {
        if (limits->max_message_size)
            srv->limits.max_message_size = limits->max_message_size;
        if (limits->max_clients)
            srv->limits.max_clients = limits->max_clients;
        if (limits->max_requests)
            srv->limits.max_requests = limits->max_requests;
        if (limits->max_output)
            srv->limits.max_output = limits->max_output;
    }

    srv->ctx = ctx ? g_main_context_ref(ctx) : g_main_context_ref_thread_default();
    srv->opaque = opaque;
    if (hello_info && json_object_is_type(hello_info, json_type_object))
        srv->hello_info = hello_info;
    else
        json_object_put(hello_info);
    srv->listeners = g_ptr_array_new_with_free_func((GDestroyNotify)server_listener_free);
    g_queue_init(&srv->clients);

    /* The built-in methods win over a table entry of the same name. */
    srv->methods = g_hash_table_new(g_str_hash, g_str_equal);
    for (i = 0; i < n; i++) {
        g_assert(methods[i].name && methods[i].handler);
        g_hash_table_insert(srv->methods, (gpointer)methods[i].name, (gpointer)&methods[i]);
    }
    for (i = 0; i < G_N_ELEMENTS(server_builtin_methods); i++)
        g_hash_table_insert(srv->methods, (gpointer)server_builtin_methods[i].name,
                            (gpointer)&server_builtin_methods[i]);
    return srv;
}

void
ho_rpc_server_free(HoRpcServer *srv)
{
    HoRpcServerClient *client;

    if (!srv)
        return;
    g_ptr_array_unref(srv->listeners);
    while ((client = g_queue_peek_head(&srv->clients)))
        server_client_close(client);
    g_hash_table_unref(srv->methods);
    json_object_put(srv->hello_info);
    g_main_context_unref(srv->ctx);
    g_free(srv);
}

int
ho_rpc_server_listen_unix(HoRpcServer *srv, const char *path, mode_t mode)
{
    int fd = ho_socket_unix_listen(path, mode, HO_RPC_LISTEN_BACKLOG);
    HoRpcListener *l;
    struct stat st;

    if (fd < 0)
        return -1;
    if (lstat(path, &st) < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot check socket '%1$s'"), path);
        close(fd);
        return -1;
    }
    if (ho_socket_set_nonblock(fd, true) < 0) {
        close(fd);
        (void)unlink(path);
        return -1;
    }
    l = server_listener_add(srv, fd, true, path);
    l->path = g_strdup(path);
    l->dev = st.st_dev;
    l->ino = st.st_ino;
    HO_INFO("listening on '%s'", path);
    return 0;
}

int
ho_rpc_server_listen_tcp(HoRpcServer *srv, const char *host, int port, int *bound_port)
{
    int bound = 0;
    int fd = ho_socket_tcp_listen(host, port, HO_RPC_LISTEN_BACKLOG, &bound);
    g_autofree char *where = NULL;

    if (fd < 0)
        return -1;
    if (ho_socket_set_nonblock(fd, true) < 0) {
        close(fd);
        return -1;
    }
    where = ho_uri_format_hostport(host && *host ? host : "*", bound);
    server_listener_add(srv, fd, false, where);
    HO_INFO("listening on TCP '%s'", where);
    if (bound_port)
        *bound_port = bound;
    return 0;
}

int
ho_rpc_server_add_client_fd(HoRpcServer *srv, int fd, bool local)
{
    if (ho_socket_set_nonblock(fd, true) < 0) {
        close(fd);
        return -1;
    }
    if (!server_add_client(srv, fd, local)) {
        ho_error_report(HO_ERR_LIMIT, _("too many clients: handoverd serves at most %1$u"),
                        srv->limits.max_clients);
        return -1;
    }
    return 0;
}

void
ho_rpc_server_set_keepalive(HoRpcServer *srv, guint interval_ms, guint count)
{
    srv->ka_interval_ms = interval_ms;
    srv->ka_count = count ? count : HO_RPC_KEEPALIVE_COUNT;
}

unsigned int
ho_rpc_server_client_count(const HoRpcServer *srv)
{
    return srv->clients.length;
}

void
ho_rpc_server_emit_event(HoRpcServer *srv, const char *event, json_object *data)
{
    g_autoptr(json_object) msg = json_object_new_object();
    g_autofree char *line = NULL;
    size_t len;
    GList *l;
    GList *next;

    ho_json_add_string(msg, "event", event);
    ho_json_add(msg, "data", data);
    ho_json_add_int64(msg, "ts", ho_time_now_us());
    line = ho_rpc_encode(msg, &len);

    /* Queueing may drop a slow client, which unlinks it (and only it). */
    for (l = srv->clients.head; l; l = next) {
        HoRpcServerClient *client = l->data;

        next = l->next;
        if (client->state == CLIENT_OPEN && client->subscribed)
            server_client_queue(client, line, len);
    }
}

/* Answer a call with msg, or drop the answer when the client is gone. */
static void
server_call_finish(HoRpcCall *call, json_object *msg)
{
    HoRpcServerClient *client = call->client;

    g_assert(!call->answered);
    call->answered = true;
    if (client->state == CLIENT_OPEN)
        server_client_send(client, msg);
    else
        HO_DEBUG("%s: reply to '%s' (id %" G_GINT64_FORMAT ") dropped: the client is gone",
                 client->label, call->method, call->id);
    g_hash_table_remove(client->calls, &call->id);
    if (!call->in_handler)
        server_call_free(call);
    server_client_maybe_free(client);
}

void
ho_rpc_call_reply(HoRpcCall *call, json_object *result)
{
    g_autoptr(json_object) msg = json_object_new_object();

    ho_json_add_int64(msg, "id", call->id);
    ho_json_add(msg, "result", result ? result : json_object_new_object());
    server_call_finish(call, msg);
}

void
ho_rpc_call_error(HoRpcCall *call, const HoError *err)
{
    g_autoptr(json_object) msg = json_object_new_object();

    ho_json_add_int64(msg, "id", call->id);
    ho_json_add(msg, "error", ho_rpc_error_to_json(err));
    server_call_finish(call, msg);
}

const char *
ho_rpc_call_method(const HoRpcCall *call)
{
    return call->method;
}

bool
ho_rpc_call_client_connected(const HoRpcCall *call)
{
    return call->client->state == CLIENT_OPEN;
}

bool
ho_rpc_call_is_local(const HoRpcCall *call)
{
    return call->client->local;
}

const char *
ho_rpc_call_client_label(const HoRpcCall *call)
{
    return call->client->label;
}

void *
ho_rpc_call_get_session(const HoRpcCall *call)
{
    return call->client->session;
}

void
ho_rpc_call_set_session(HoRpcCall *call, void *data, GDestroyNotify closed)
{
    HoRpcServerClient *client = call->client;

    g_assert(!client->session_closed);
    if (client->state == CLIENT_CLOSED) {
        if (closed)
            closed(data);
        return;
    }
    client->session = data;
    client->session_closed = closed;
}
