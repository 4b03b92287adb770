/*
 * The client side of the handoverd protocol: see ho_rpc_client.h and
 * docs/protocol.md.
 *
 * One non-blocking socket with one watch on the connection's context
 * (G_IO_OUT only while requests wait to be written). Replies are matched to
 * calls by id; events go to the event callback.
 *
 * Re-entrancy: any callback may free the connection or make a synchronous
 * call on it (an application that looks a domain up when its event comes).
 * So the dispatcher holds a reference while it calls out, the watch may
 * recurse (a nested call_sync iterates the same context from inside one of
 * its callbacks), and input is parsed and consumed from the buffer before
 * a callback runs, so a nested read finds the reader in order.
 *
 * Every call's callback runs exactly once: with the reply, with the error
 * that closed the connection, or (for a call made on a closed connection)
 * from an idle source, never from inside ho_rpc_conn_call() itself.
 */
#define HO_LOG_MODULE "rpc.client"

#include "ho_rpc_client.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ho_i18n.h"
#include "ho_json.h"
#include "ho_log.h"
#include "ho_rpc_proto.h"
#include "ho_rpc_server.h"
#include "ho_socket.h"
#include "ho_uri.h"

/* Results can be large (a capabilities document, a domain list). */
#define HO_RPC_CLIENT_MAX_MESSAGE (16 * 1024 * 1024)
/* Request ids stay exact in every JSON parser. */
#define HO_RPC_CLIENT_MAX_ID ((gint64)1 << 53)
/* How much of an unexpected message goes into an error message. */
#define HO_RPC_CLIENT_EXCERPT 200
/* Connecting and the hello together, when the caller gives no bound. */
#define HO_RPC_CLIENT_OPEN_TIMEOUT_MS 30000

typedef struct _HoRpcResolve HoRpcResolve;

typedef struct {
    gint64 id; /* key in HoRpcConn.pending */
    char *method;
    HoRpcReplyFunc cb;
    void *opaque;
} HoRpcPending;

/* A completion for a call made on a closed connection. */
typedef struct {
    HoRpcReplyFunc cb;
    void *opaque;
    HoError *err;
} HoRpcLater;

struct _HoRpcConn {
    int refs; /* the owner's and the dispatchers'; one context, hence one thread */
    int fd;   /* -1 while resolving */
    char *where; /* the socket path or host:port, for messages */
    GMainContext *ctx;
    GSource *watch;
    HoRpcReader in;
    HoRpcWriter out;

    bool closed;
    bool freed;           /* the owner let go: no more event or closed callbacks */
    bool daemon_closed;   /* close_error is the daemon's own (an error with id null) */
    HoError *close_error; /* why it closed */
    json_object *hello;   /* the hello result */

    gint64 next_id;
    GHashTable *pending; /* &p->id -> HoRpcPending */
    GQueue later;        /* HoRpcLater */
    GSource *later_source;

    HoRpcEventFunc event_cb;
    HoRpcClosedFunc closed_cb;
    void *cb_opaque;
    guint64 events; /* events received so far */

    /* Opening: resolving, connecting, then waiting for the hello's answer. */
    bool opening;
    bool connecting;        /* the non-blocking connect is in progress on fd */
    int protocol;           /* the version asked for in hello */
    HoRpcOpenFunc open_cb;
    void *open_opaque;
    HoError *open_error;    /* why the opening failed */
    GSource *open_timer;
    guint open_timeout_ms;
    HoRpcResolve *resolve;  /* while the worker thread resolves */
    struct addrinfo *addrs; /* resolved addresses, tried in order */
    const struct addrinfo *next_addr;
    int connect_errno;      /* why the last address failed */

    /* Keepalive: a ping after each interval without any message from the
     * daemon; the connection is dead after ka_count unanswered ones. */
    guint ka_interval_ms;   /* 0: off */
    guint ka_count;
    guint ka_missed;
    bool ka_heard;          /* a message came since the last tick */
    GSource *ka_timer;
};

static void conn_fail(HoRpcConn *conn, HoError *err, bool notify);
static void conn_io(GIOCondition cond, void *opaque);
static void conn_connect_ready(HoRpcConn *conn);
static void conn_set_fd(HoRpcConn *conn, int fd);
static void conn_cancel_resolve(HoRpcConn *conn);

static void
server_source_free(GSource *source)
{
    g_source_destroy(source);
    g_source_unref(source);
}

static HoRpcConn *
conn_ref(HoRpcConn *conn)
{
    g_assert(conn->refs > 0);
    conn->refs++;
    return conn;
}

static void
conn_pending_free(HoRpcPending *p)
{
    g_free(p->method);
    g_free(p);
}

static void
conn_later_free(HoRpcLater *later)
{
    ho_error_free(later->err);
    g_free(later);
}

static void
conn_unref(HoRpcConn *conn)
{
    g_assert(conn->refs > 0);
    if (--conn->refs > 0)
        return;

    g_assert(conn->closed);
    g_assert(g_hash_table_size(conn->pending) == 0);
    g_assert(g_queue_is_empty(&conn->later));
    g_hash_table_unref(conn->pending);
    ho_rpc_reader_clear(&conn->in);
    ho_rpc_writer_clear(&conn->out);
    json_object_put(conn->hello);
    ho_error_free(conn->close_error);
    ho_error_free(conn->open_error);
    if (conn->addrs)
        freeaddrinfo(conn->addrs);
    g_main_context_unref(conn->ctx);
    g_free(conn->where);
    g_free(conn);
}

/* A short excerpt of a message for an error text (g_free it). */
static char *
conn_excerpt(const char *text, size_t len)
{
    if (len > HO_RPC_CLIENT_EXCERPT)
        return g_strdup_printf("%.*s...", HO_RPC_CLIENT_EXCERPT, text);
    return g_strndup(text, len);
}

/* ---- completions of calls made after the close ------------------------- */

static void
conn_run_later(HoRpcConn *conn)
{
    HoRpcLater *later;

    conn_ref(conn);
    while ((later = g_queue_pop_head(&conn->later))) {
        if (later->cb)
            later->cb(conn, NULL, later->err, later->opaque);
        conn_later_free(later);
    }
    conn_unref(conn);
}

static gboolean
conn_later_dispatch(gpointer data)
{
    HoRpcConn *conn = data;

    g_clear_pointer(&conn->later_source, g_source_unref);
    conn_run_later(conn);
    return G_SOURCE_REMOVE;
}

/* Consumes err. */
static void
conn_complete_later(HoRpcConn *conn, HoRpcReplyFunc cb, void *opaque, HoError *err)
{
    HoRpcLater *later = g_new0(HoRpcLater, 1);

    later->cb = cb;
    later->opaque = opaque;
    later->err = err;
    g_queue_push_tail(&conn->later, later);
    if (!conn->later_source) {
        conn->later_source = g_idle_source_new();
        g_source_set_callback(conn->later_source, conn_later_dispatch, conn, NULL);
        g_source_set_static_name(conn->later_source, "ho-rpc-conn-later");
        g_source_attach(conn->later_source, conn->ctx);
    }
}

/* ---- output ------------------------------------------------------------- */

static void
conn_update_watch(HoRpcConn *conn)
{
    GIOCondition cond = G_IO_IN | G_IO_HUP | G_IO_ERR;

    if (conn->closed || !conn->watch || conn->connecting)
        return;
    if (ho_rpc_writer_queued(&conn->out) > 0)
        cond |= G_IO_OUT;
    ho_rpc_watch_set(conn->watch, cond);
}

/* A keepalive message: {"keepalive": "ping"} or {"keepalive": "pong"}. */
static void
conn_send_keepalive(HoRpcConn *conn, const char *what)
{
    g_autoptr(json_object) msg = json_object_new_object();
    g_autofree char *line = NULL;
    size_t len;

    ho_json_add_string(msg, "keepalive", what);
    line = ho_rpc_encode(msg, &len);
    ho_rpc_log_message(HO_LOG_MODULE, conn->where, "send", line, len);
    ho_rpc_writer_append(&conn->out, line, len);
    conn_update_watch(conn);
}

static bool conn_read(HoRpcConn *conn);

static void
conn_flush(HoRpcConn *conn)
{
    if (ho_rpc_writer_flush(&conn->out, conn->fd) < 0) {
        int errsv = errno;

        /* The daemon went away: what it said before (an error line saying
         * why, say) is still unread and explains the end better. */
        while (!conn->closed && conn_read(conn))
            ;
        if (conn->closed)
            return;
        conn_fail(conn,
                  ho_error_new(HO_ERR_RPC, _("cannot write to handoverd at '%1$s': %2$s"),
                               conn->where, g_strerror(errsv)),
                  true);
        return;
    }
    conn_update_watch(conn);
}

/* ---- closing ------------------------------------------------------------ */

static gint
conn_pending_compare(gconstpointer a, gconstpointer b)
{
    const HoRpcPending *pa = a;
    const HoRpcPending *pb = b;

    return pa->id < pb->id ? -1 : pa->id > pb->id;
}

/* End the connection: consumes err. Pending calls fail, in the order they
 * were made, then (if notify and the owner still holds it) the closed
 * callback runs. Idempotent. */
static void
conn_fail(HoRpcConn *conn, HoError *err, bool notify)
{
    GList *calls;
    GList *l;
    bool was_opening = conn->opening;

    if (conn->closed) {
        ho_error_free(err);
        return;
    }

    conn_ref(conn);
    conn->closed = true;
    conn->close_error = err;
    conn_cancel_resolve(conn);
    g_clear_pointer(&conn->open_timer, server_source_free);
    g_clear_pointer(&conn->ka_timer, server_source_free);
    if (conn->freed)
        HO_DEBUG("connection to '%s' closed by its owner", conn->where);
    else
        HO_INFO("connection to '%s' dropped: %s", conn->where, err->message);
    g_clear_pointer(&conn->watch, ho_rpc_watch_free);
    if (conn->fd >= 0) {
        close(conn->fd);
        conn->fd = -1;
    }

    calls = g_list_sort(g_hash_table_get_values(conn->pending), conn_pending_compare);
    g_hash_table_steal_all(conn->pending);
    for (l = calls; l; l = l->next) {
        HoRpcPending *p = l->data;
        /* The daemon's own reason keeps its code (a "limit", say). */
        g_autoptr(HoError) perr =
            ho_error_new(conn->daemon_closed ? err->code : HO_ERR_RPC,
                         _("connection to handoverd at '%1$s' closed while '%2$s' was "
                           "pending: %3$s"),
                         conn->where, p->method, err->message);

        if (p->cb)
            p->cb(conn, NULL, perr, p->opaque);
        conn_pending_free(p);
    }
    g_list_free(calls);

    /* While opening, the open callback (run by the hello's failure above)
     * is the one that tells. */
    if (notify && !was_opening && !conn->freed && conn->closed_cb)
        conn->closed_cb(conn, conn->close_error, conn->cb_opaque);
    conn_unref(conn);
}

/* ---- input -------------------------------------------------------------- */

static void
conn_fail_unexpected(HoRpcConn *conn, const char *text, size_t len)
{
    g_autofree char *excerpt = conn_excerpt(text, len);

    conn_fail(conn,
              ho_error_new(HO_ERR_RPC, _("handoverd at '%1$s' sent an unexpected message: %2$s"),
                           conn->where, excerpt),
              true);
}

static void
conn_handle_event(HoRpcConn *conn, json_object *msg, const char *text, size_t len)
{
    json_object *name;
    json_object *data = NULL;
    json_object *ts;
    gint64 ts_us = 0;

    if (!json_object_object_get_ex(msg, "event", &name) ||
        !json_object_is_type(name, json_type_string)) {
        conn_fail_unexpected(conn, text, len);
        return;
    }
    json_object_object_get_ex(msg, "data", &data);
    if (json_object_object_get_ex(msg, "ts", &ts) && json_object_is_type(ts, json_type_int))
        ts_us = json_object_get_int64(ts);

    /* Counted first: a wait_event nested in the callback waits for the next. */
    conn->events++;
    if (conn->event_cb && !conn->freed)
        conn->event_cb(conn, json_object_get_string(name), data, ts_us, conn->cb_opaque);
}

static void
conn_handle_reply(HoRpcConn *conn, json_object *msg, const char *text, size_t len)
{
    json_object *id_obj;
    json_object *error;
    json_object *result = NULL;
    g_autoptr(HoError) err = NULL;
    HoRpcPending *p;
    gint64 id;

    json_object_object_get_ex(msg, "id", &id_obj);
    if (json_object_is_type(id_obj, json_type_null)) {
        /* The daemon refuses the connection (a protocol violation, too
         * many clients) and closes it: its error says why. */
        if (!json_object_object_get_ex(msg, "error", &error) ||
            !(err = ho_rpc_error_from_json(error))) {
            conn_fail_unexpected(conn, text, len);
            return;
        }
        conn->daemon_closed = true;
        conn_fail(conn, g_steal_pointer(&err), true);
        return;
    }

    if (!json_object_is_type(id_obj, json_type_int)) {
        conn_fail_unexpected(conn, text, len);
        return;
    }
    id = json_object_get_int64(id_obj);
    p = g_hash_table_lookup(conn->pending, &id);
    if (!p) {
        conn_fail(conn,
                  ho_error_new(HO_ERR_RPC,
                               _("handoverd at '%1$s' sent a reply to unknown request id "
                                 "%2$lld"),
                               conn->where, (long long)id),
                  true);
        return;
    }

    if (json_object_object_get_ex(msg, "error", &error)) {
        if (!(err = ho_rpc_error_from_json(error))) {
            conn_fail_unexpected(conn, text, len);
            return;
        }
    } else if (!json_object_object_get_ex(msg, "result", &result)) {
        conn_fail_unexpected(conn, text, len);
        return;
    }

    g_hash_table_steal(conn->pending, &id);
    if (p->cb)
        p->cb(conn, err ? NULL : result, err, p->opaque);
    conn_pending_free(p);
}

static void
conn_handle_line(HoRpcConn *conn, const char *text, size_t len)
{
    g_autoptr(json_object) msg = NULL;
    g_autoptr(HoError) perr = NULL;
    json_object *ka;

    ho_rpc_log_message(HO_LOG_MODULE, conn->where, "recv", text, len);
    msg = ho_rpc_parse_line(text, len, &perr);
    if (!msg) {
        conn_fail(conn,
                  ho_error_new(HO_ERR_RPC, _("handoverd at '%1$s' sent malformed JSON: %2$s"),
                               conn->where, perr->message),
                  true);
        return;
    }
    if (!json_object_is_type(msg, json_type_object)) {
        conn_fail_unexpected(conn, text, len);
        return;
    }
    /* text points into the reader: not used from here on, since a callback
     * may read more (a nested call) and move the buffer. */
    if (json_object_object_get_ex(msg, "keepalive", &ka)) {
        if (json_object_is_type(ka, json_type_string) &&
            g_str_equal(json_object_get_string(ka), "ping"))
            conn_send_keepalive(conn, "pong");
        else if (!json_object_is_type(ka, json_type_string) ||
                 !g_str_equal(json_object_get_string(ka), "pong"))
            conn_fail_unexpected(conn, text, len);
    } else if (json_object_object_get_ex(msg, "event", NULL))
        conn_handle_event(conn, msg, text, len);
    else if (json_object_object_get_ex(msg, "id", NULL))
        conn_handle_reply(conn, msg, text, len);
    else
        conn_fail_unexpected(conn, text, len);
}

/* Read once and handle what came: true when data came (more may follow). */
static bool
conn_read(HoRpcConn *conn)
{
    ssize_t n = ho_rpc_reader_fill(&conn->in, conn->fd);

    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return false;
        conn_fail(conn,
                  ho_error_new(HO_ERR_RPC, _("cannot read from handoverd at '%1$s': %2$s"),
                               conn->where, g_strerror(errno)),
                  true);
        return false;
    }
    if (n == 0) {
        conn_fail(
            conn,
            ho_error_new(HO_ERR_RPC, _("handoverd at '%1$s' closed the connection"), conn->where),
            true);
        return false;
    }
    /* Any message, or part of one, shows the daemon is alive. */
    conn->ka_heard = true;

    while (!conn->closed) {
        const char *line;
        size_t len;
        int rc = ho_rpc_reader_next(&conn->in, &line, &len);

        if (rc == 0)
            break;
        if (rc < 0) {
            conn_fail(conn,
                      ho_error_new(HO_ERR_RPC,
                                   _("handoverd at '%1$s' sent a message larger than %2$zu "
                                     "bytes"),
                                   conn->where, conn->in.max),
                      true);
            break;
        }
        if (!ho_rpc_line_is_blank(line, len))
            conn_handle_line(conn, line, len);
    }
    return true;
}

static void
conn_io(GIOCondition cond, void *opaque)
{
    HoRpcConn *conn = opaque;

    conn_ref(conn);
    if (conn->connecting) {
        conn_connect_ready(conn);
        conn_unref(conn);
        return;
    }
    /* Read even on HUP or ERR: what the daemon wrote before it went comes
     * first, and the read then says how the connection ended. */
    if (cond & (G_IO_IN | G_IO_HUP | G_IO_ERR))
        (void)conn_read(conn);
    if ((cond & G_IO_OUT) && !conn->closed)
        conn_flush(conn);
    conn_unref(conn);
}

/* ---- running the context ------------------------------------------------ */

typedef bool (*HoRpcConnDoneFunc)(HoRpcConn *conn, void *data);

static gboolean
conn_timeout_expired(gpointer data)
{
    *(bool *)data = true;
    return G_SOURCE_REMOVE;
}

/* Iterate ctx until done() says so (true) or timeout_ms passed (false). */
static bool
conn_run_until(GMainContext *ctx, guint timeout_ms, HoRpcConnDoneFunc done, HoRpcConn *conn,
               void *data)
{
    GSource *timer = g_timeout_source_new(timeout_ms);
    bool timed_out = false;
    bool ok;

    g_source_set_callback(timer, conn_timeout_expired, &timed_out, NULL);
    g_source_set_static_name(timer, "ho-rpc-conn-timeout");
    g_source_attach(timer, ctx);
    while (!(ok = done(conn, data)) && !timed_out)
        g_main_context_iteration(ctx, TRUE);
    g_source_destroy(timer);
    g_source_unref(timer);
    return ok;
}

/* ---- synchronous calls -------------------------------------------------- */

/* Shared between a synchronous caller and the reply callback: whoever
 * comes second frees it, since a timed-out caller leaves before the reply. */
typedef struct {
    bool done;
    bool abandoned;
    bool closed; /* failed because the connection closed */
    json_object *result;
    HoError *err;
} HoRpcSyncCall;

static void
conn_sync_call_free(HoRpcSyncCall *sc)
{
    json_object_put(sc->result);
    ho_error_free(sc->err);
    g_free(sc);
}

static void
conn_sync_reply(HoRpcConn *conn, json_object *result, const HoError *err, void *opaque)
{
    HoRpcSyncCall *sc = opaque;

    if (sc->abandoned) {
        conn_sync_call_free(sc);
        return;
    }
    sc->done = true;
    sc->closed = conn->closed;
    sc->result = json_object_get(result);
    sc->err = ho_error_copy(err);
}

static bool
conn_sync_done(HoRpcConn *conn, void *data)
{
    return ((HoRpcSyncCall *)data)->done;
}

/* ---- opening ------------------------------------------------------------ */

/* A name resolution running in a worker thread (getaddrinfo blocks on
 * DNS). Shared by the thread and the connection; the result comes back to
 * the connection's context from an idle source. conn is only touched on
 * that context's thread: the connection clears it to cancel. */
struct _HoRpcResolve {
    gint refs;
    char *host;
    char *service;
    struct addrinfo *res;
    int rc;
    int errsv;
    GMainContext *ctx;
    HoRpcConn *conn;
};

static void
resolve_unref(HoRpcResolve *r)
{
    if (!g_atomic_int_dec_and_test(&r->refs))
        return;
    if (r->res)
        freeaddrinfo(r->res);
    g_main_context_unref(r->ctx);
    g_free(r->host);
    g_free(r->service);
    g_free(r);
}

static void conn_try_connect(HoRpcConn *conn);

static gboolean
resolve_done(gpointer data)
{
    HoRpcResolve *r = data;
    HoRpcConn *conn = r->conn;

    if (!conn)
        return G_SOURCE_REMOVE; /* cancelled */
    r->conn = NULL;
    conn->resolve = NULL;
    conn_ref(conn);
    if (r->rc != 0) {
        conn->open_error = ho_error_new(
            HO_ERR_SYSTEM, _("cannot connect to handoverd at '%1$s': %2$s"), conn->where,
            r->rc == EAI_SYSTEM ? g_strerror(r->errsv) : gai_strerror(r->rc));
        conn_fail(conn, ho_error_copy(conn->open_error), true);
    } else {
        conn->addrs = g_steal_pointer(&r->res);
        conn->next_addr = conn->addrs;
        conn_try_connect(conn);
    }
    resolve_unref(r); /* the connection's reference */
    conn_unref(conn);
    return G_SOURCE_REMOVE;
}

static gpointer
resolve_thread(gpointer data)
{
    HoRpcResolve *r = data;
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = AI_NUMERICSERV,
    };
    GSource *idle;

    r->rc = getaddrinfo(r->host, r->service, &hints, &r->res);
    r->errsv = errno;
    idle = g_idle_source_new();
    /* The idle source holds the thread's reference. */
    g_source_set_callback(idle, resolve_done, r, (GDestroyNotify)resolve_unref);
    g_source_set_static_name(idle, "ho-rpc-resolve");
    g_source_attach(idle, r->ctx);
    g_source_unref(idle);
    return NULL;
}

static void
conn_cancel_resolve(HoRpcConn *conn)
{
    if (!conn->resolve)
        return;
    conn->resolve->conn = NULL;
    g_clear_pointer(&conn->resolve, resolve_unref);
}

static HoRpcConn *
conn_new(int fd, const char *where, GMainContext *ctx)
{
    HoRpcConn *conn = g_new0(HoRpcConn, 1);

    conn->refs = 1;
    conn->fd = -1;
    conn->where = g_strdup(where);
    conn->ctx = g_main_context_ref(ctx);
    conn->protocol = HO_RPC_PROTOCOL_VERSION;
    ho_rpc_reader_init(&conn->in, HO_RPC_CLIENT_MAX_MESSAGE);
    ho_rpc_writer_init(&conn->out);
    conn->pending = g_hash_table_new(g_int64_hash, g_int64_equal);
    g_queue_init(&conn->later);
    if (fd >= 0)
        conn_set_fd(conn, fd);
    return conn;
}

/* The socket is connected: serve it (fd consumed). */
static void
conn_set_fd(HoRpcConn *conn, int fd)
{
    conn->fd = fd;
    conn->connecting = false;
    conn->watch =
        ho_rpc_watch_new(fd, G_IO_IN | G_IO_HUP | G_IO_ERR, conn_io, conn, "ho-rpc-conn",
                         conn->ctx);
    /* A synchronous call from one of our callbacks iterates this context
     * while the watch is dispatching: let the watch run again inside it. */
    g_source_set_can_recurse(conn->watch, TRUE);
    conn_update_watch(conn);
}

/* Try the next resolved address, or fail with the last error. */
static void
conn_try_connect(HoRpcConn *conn)
{
    while (conn->next_addr) {
        const struct addrinfo *ai = conn->next_addr;
        int fd;

        conn->next_addr = ai->ai_next;
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    ai->ai_protocol);
        if (fd < 0) {
            conn->connect_errno = errno;
            continue;
        }
        if (ho_socket_set_nodelay(fd) < 0)
            ho_error_reset(); /* best effort */
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            conn_set_fd(conn, fd);
            return;
        }
        if (errno != EINPROGRESS) {
            conn->connect_errno = errno;
            close(fd);
            continue;
        }
        /* Writable (or in error) once the connect is done either way. */
        conn->fd = fd;
        conn->connecting = true;
        conn->watch = ho_rpc_watch_new(fd, G_IO_OUT | G_IO_ERR | G_IO_HUP, conn_io, conn,
                                       "ho-rpc-connect", conn->ctx);
        return;
    }
    conn->open_error =
        ho_error_new(HO_ERR_SYSTEM, _("cannot connect to handoverd at '%1$s': %2$s"), conn->where,
                     g_strerror(conn->connect_errno ? conn->connect_errno : ECONNREFUSED));
    conn_fail(conn, ho_error_copy(conn->open_error), true);
}

/* The non-blocking connect ended one way or the other. */
static void
conn_connect_ready(HoRpcConn *conn)
{
    int soerr = 0;
    socklen_t len = sizeof(soerr);

    if (getsockopt(conn->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
        soerr = errno;
    g_clear_pointer(&conn->watch, ho_rpc_watch_free);
    if (soerr != 0) {
        conn->connect_errno = soerr;
        close(conn->fd);
        conn->fd = -1;
        conn_try_connect(conn);
        return;
    }
    conn_set_fd(conn, conn->fd);
}

static gboolean
conn_open_expired(gpointer data)
{
    HoRpcConn *conn = data;

    g_clear_pointer(&conn->open_timer, g_source_unref);
    if (conn->connecting || conn->resolve)
        conn->open_error = ho_error_new(
            HO_ERR_TIMEOUT, _("cannot connect to handoverd at '%1$s': no connection within %2$u ms"),
            conn->where, conn->open_timeout_ms);
    else
        conn->open_error = ho_error_new(
            HO_ERR_TIMEOUT, _("cannot connect to handoverd at '%1$s': no answer to 'hello' within "
                              "%2$u ms"),
            conn->where, conn->open_timeout_ms);
    conn_fail(conn, ho_error_copy(conn->open_error), true);
    return G_SOURCE_REMOVE;
}

static gboolean
conn_keepalive_tick(gpointer data)
{
    HoRpcConn *conn = data;

    if (conn->closed)
        return G_SOURCE_REMOVE;
    if (conn->ka_heard) {
        conn->ka_heard = false;
        conn->ka_missed = 0;
        return G_SOURCE_CONTINUE;
    }
    if (conn->ka_missed >= conn->ka_count) {
        conn_fail(conn,
                  ho_error_new(HO_ERR_RPC,
                               _("handoverd at '%1$s' did not answer %2$u keepalive pings sent "
                                 "%3$u ms apart: the connection is dead"),
                               conn->where, conn->ka_missed, conn->ka_interval_ms),
                  true);
        return G_SOURCE_REMOVE;
    }
    conn->ka_missed++;
    conn_send_keepalive(conn, "ping");
    return G_SOURCE_CONTINUE;
}

static void
conn_keepalive_start(HoRpcConn *conn)
{
    if (conn->ka_interval_ms == 0 || conn->ka_timer || conn->closed)
        return;
    conn->ka_heard = false;
    conn->ka_missed = 0;
    conn->ka_timer = g_timeout_source_new(conn->ka_interval_ms);
    g_source_set_callback(conn->ka_timer, conn_keepalive_tick, conn, NULL);
    g_source_set_static_name(conn->ka_timer, "ho-rpc-keepalive");
    g_source_attach(conn->ka_timer, conn->ctx);
}

/* The answer to hello ends the opening, one way or the other. */
static void
conn_hello_reply(HoRpcConn *conn, json_object *result, const HoError *err, void *opaque)
{
    int64_t protocol = -1;

    if (!conn->opening)
        return;
    conn->opening = false;
    g_clear_pointer(&conn->open_timer, server_source_free);
    if (conn->freed)
        return; /* cancelled by its owner: nobody to tell */

    if (conn->open_error) {
        /* Already said: a timeout, a failed connect. */
    } else if (err && conn->closed) {
        /* Keep the code: "limit" when the daemon has too many clients. */
        conn->open_error =
            ho_error_new(conn->close_error->code, _("cannot connect to handoverd at '%1$s': %2$s"),
                         conn->where, conn->close_error->message);
    } else if (err) {
        /* The daemon's refusal (a protocol version it does not speak). */
        conn->open_error = ho_error_copy(err);
    } else if (!json_object_is_type(result, json_type_object)) {
        conn->open_error =
            ho_error_new(HO_ERR_RPC,
                         _("cannot connect to handoverd at '%1$s': its answer to 'hello' is not "
                           "an object"),
                         conn->where);
    } else if (ho_json_opt_int64(result, "protocol", &protocol) < 0 ||
               protocol != conn->protocol) {
        const char *daemon = NULL;

        ho_error_reset();
        (void)ho_json_opt_string(result, "daemon", &daemon);
        conn->open_error =
            ho_error_new(HO_ERR_RPC,
                         _("cannot connect to handoverd at '%1$s': it is '%2$s' and speaks "
                           "protocol version %3$lld, this client speaks version %4$d"),
                         conn->where, daemon ? daemon : "?", (long long)protocol,
                         conn->protocol);
    } else {
        conn->hello = json_object_get(result);
        HO_DEBUG("connected to handoverd at '%s'", conn->where);
        conn_keepalive_start(conn);
    }

    if (conn->open_error && !conn->closed)
        conn_fail(conn, ho_error_copy(conn->open_error), false);
    if (conn->open_cb)
        conn->open_cb(conn, conn->open_error, conn->open_opaque);
}

/* Queue the hello as the very first message and arm the open timer. */
static void
conn_start_open(HoRpcConn *conn, const HoRpcConnOptions *opts, HoRpcOpenFunc cb, void *opaque)
{
    json_object *params = json_object_new_object();

    conn->opening = true;
    conn->open_cb = cb;
    conn->open_opaque = opaque;
    if (opts->protocol)
        conn->protocol = opts->protocol;
    conn->open_timeout_ms = opts->timeout_ms ? opts->timeout_ms : HO_RPC_CLIENT_OPEN_TIMEOUT_MS;
    if (opts->keepalive_interval_ms) {
        conn->ka_interval_ms = opts->keepalive_interval_ms;
        conn->ka_count = opts->keepalive_count ? opts->keepalive_count : HO_RPC_KEEPALIVE_COUNT;
    }

    ho_json_add_int64(params, "protocol", conn->protocol);
    if (opts->client_name)
        ho_json_add_string(params, "client", opts->client_name);
    if (conn->ka_interval_ms)
        ho_json_add_bool(params, "keepalive", true);
    ho_rpc_conn_call(conn, "hello", params, conn_hello_reply, NULL);

    conn->open_timer = g_timeout_source_new(conn->open_timeout_ms);
    g_source_set_callback(conn->open_timer, conn_open_expired, conn, NULL);
    g_source_set_static_name(conn->open_timer, "ho-rpc-open-timeout");
    g_source_attach(conn->open_timer, conn->ctx);
}

/* Iterate the connection's context until its opening ended: the
 * connection, or NULL and the error reported (conn freed). */
static HoRpcConn *
conn_open_wait(HoRpcConn *conn)
{
    while (conn->opening)
        g_main_context_iteration(conn->ctx, TRUE);
    if (conn->open_error) {
        ho_error_set(ho_error_copy(conn->open_error));
        ho_rpc_conn_free(conn);
        return NULL;
    }
    return conn;
}

/* The context a new connection runs on (a reference): the given one, or a
 * private one that nobody else iterates. */
static GMainContext *
conn_context(GMainContext *ctx)
{
    return ctx ? g_main_context_ref(ctx) : g_main_context_new();
}

static HoRpcConn *
conn_connect_unix(const char *path, const HoRpcConnOptions *opts, GMainContext *ctx,
                  HoRpcOpenFunc cb, void *opaque)
{
    g_autoptr(GMainContext) own = g_main_context_ref(ctx);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    size_t len = path ? strlen(path) : 0;
    HoRpcConn *conn;
    int fd;

    if (len == 0 || len >= sizeof(addr.sun_path)) {
        ho_error_report(HO_ERR_INVALID_ARG,
                        _("cannot connect to handoverd at '%1$s': invalid socket path"),
                        path ? path : "");
        return NULL;
    }
    memcpy(addr.sun_path, path, len + 1);

    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot connect to handoverd at '%1$s'"),
                              path);
        return NULL;
    }
    /* Blocking: a UNIX connect waits only while the daemon's backlog is full. */
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot connect to handoverd at '%1$s'"),
                              path);
        close(fd);
        return NULL;
    }
    if (ho_socket_set_nonblock(fd, true) < 0) {
        close(fd);
        return NULL;
    }
    conn = conn_new(-1, path, own);
    conn_start_open(conn, opts, cb, opaque);
    conn_set_fd(conn, fd);
    return conn;
}

HoRpcConn *
ho_rpc_conn_open_unix(const char *path, const char *client_name, GMainContext *ctx,
                      guint timeout_ms)
{
    HoRpcConnOptions opts = {.client_name = client_name, .timeout_ms = timeout_ms};
    g_autoptr(GMainContext) own = conn_context(ctx);
    HoRpcConn *conn = conn_connect_unix(path, &opts, own, NULL, NULL);

    return conn ? conn_open_wait(conn) : NULL;
}

HoRpcConn *
ho_rpc_conn_open_unix_async(const char *path, const HoRpcConnOptions *opts, GMainContext *ctx,
                            HoRpcOpenFunc cb, void *opaque)
{
    g_autoptr(GMainContext) own =
        ctx ? g_main_context_ref(ctx) : g_main_context_ref_thread_default();

    return conn_connect_unix(path, opts, own, cb, opaque);
}

HoRpcConn *
ho_rpc_conn_open_tcp_async(const char *host, int port, const HoRpcConnOptions *opts,
                           GMainContext *ctx, HoRpcOpenFunc cb, void *opaque)
{
    g_autoptr(GMainContext) own =
        ctx ? g_main_context_ref(ctx) : g_main_context_ref_thread_default();
    g_autofree char *where = ho_uri_format_hostport(host ? host : "", port);
    HoRpcConn *conn;
    g_autoptr(GError) gerr = NULL;
    HoRpcResolve *r;
    GThread *thread;

    if (!host || !*host || port <= 0 || port > 65535) {
        ho_error_report(HO_ERR_INVALID_ARG,
                        _("cannot connect to handoverd at '%1$s': invalid host or port"), where);
        return NULL;
    }
    conn = conn_new(-1, where, own);
    conn_start_open(conn, opts, cb, opaque);

    r = g_new0(HoRpcResolve, 1);
    r->refs = 2; /* the connection's and the thread's */
    r->host = g_strdup(host);
    r->service = g_strdup_printf("%d", port);
    r->ctx = g_main_context_ref(own);
    r->conn = conn;
    conn->resolve = r;
    thread = g_thread_try_new("ho-rpc-resolve", resolve_thread, r, &gerr);
    if (!thread) {
        r->refs = 1; /* no thread */
        conn->open_error = ho_error_new(HO_ERR_SYSTEM,
                                        _("cannot connect to handoverd at '%1$s': %2$s"), where,
                                        gerr->message);
        conn_fail(conn, ho_error_copy(conn->open_error), true);
        ho_error_set(ho_error_copy(conn->open_error));
        conn->open_cb = NULL;
        ho_rpc_conn_free(conn);
        return NULL;
    }
    g_thread_unref(thread);
    return conn;
}

HoRpcConn *
ho_rpc_conn_open_tcp(const char *host, int port, const char *client_name, GMainContext *ctx,
                     guint timeout_ms)
{
    HoRpcConnOptions opts = {.client_name = client_name, .timeout_ms = timeout_ms};
    g_autoptr(GMainContext) own = conn_context(ctx);
    HoRpcConn *conn = ho_rpc_conn_open_tcp_async(host, port, &opts, own, NULL, NULL);

    return conn ? conn_open_wait(conn) : NULL;
}

/* ---- public API --------------------------------------------------------- */

void
ho_rpc_conn_free(HoRpcConn *conn)
{
    if (!conn)
        return;
    conn->freed = true;
    conn_fail(conn,
              ho_error_new(HO_ERR_RPC, _("the connection to handoverd at '%1$s' was closed"),
                           conn->where),
              false);
    /* Callbacks promised to run: the idle source would never run again on
     * a private context. */
    g_clear_pointer(&conn->later_source, ho_rpc_watch_free);
    conn_run_later(conn);
    conn_unref(conn);
}

json_object *
ho_rpc_conn_get_hello(const HoRpcConn *conn)
{
    return conn->hello;
}

int
ho_rpc_conn_rtt_us(const HoRpcConn *conn)
{
    return conn->fd >= 0 ? ho_socket_tcp_rtt_us(conn->fd) : -1;
}

bool
ho_rpc_conn_is_open(const HoRpcConn *conn)
{
    return !conn->closed;
}

void
ho_rpc_conn_set_callbacks(HoRpcConn *conn, HoRpcEventFunc event_cb, HoRpcClosedFunc closed_cb,
                          void *opaque)
{
    conn->event_cb = event_cb;
    conn->closed_cb = closed_cb;
    conn->cb_opaque = opaque;
}

void
ho_rpc_conn_set_max_message(HoRpcConn *conn, size_t max)
{
    conn->in.max = max;
}

void
ho_rpc_conn_call(HoRpcConn *conn, const char *method, json_object *params, HoRpcReplyFunc cb,
                 void *opaque)
{
    g_autoptr(json_object) msg = NULL;
    g_autofree char *line = NULL;
    HoRpcPending *p;
    size_t len;

    if (conn->closed) {
        json_object_put(params);
        conn_complete_later(
            conn, cb, opaque,
            ho_error_new(conn->daemon_closed ? conn->close_error->code : HO_ERR_RPC,
                         _("cannot call '%1$s': the connection to handoverd at "
                           "'%2$s' is closed: %3$s"),
                         method, conn->where, conn->close_error->message));
        return;
    }

    p = g_new0(HoRpcPending, 1);
    p->id = conn->next_id++;
    if (conn->next_id > HO_RPC_CLIENT_MAX_ID)
        conn->next_id = 0; /* in 2^53 calls, the old ones are long answered */
    p->method = g_strdup(method);
    p->cb = cb;
    p->opaque = opaque;
    g_hash_table_insert(conn->pending, &p->id, p);

    msg = json_object_new_object();
    ho_json_add_int64(msg, "id", p->id);
    ho_json_add_string(msg, "method", method);
    if (params)
        ho_json_add(msg, "params", params);
    line = ho_rpc_encode(msg, &len);
    ho_rpc_log_message(HO_LOG_MODULE, conn->where, "send", line, len);
    ho_rpc_writer_append(&conn->out, line, len);
    conn_update_watch(conn);
}

int
ho_rpc_conn_call_sync(HoRpcConn *conn, const char *method, json_object *params,
                      json_object **result, guint timeout_ms)
{
    HoRpcSyncCall *sc = g_new0(HoRpcSyncCall, 1);
    int rc = -1;

    conn_ref(conn);
    ho_rpc_conn_call(conn, method, params, conn_sync_reply, sc);
    if (!conn_run_until(conn->ctx, timeout_ms, conn_sync_done, conn, sc)) {
        /* The reply may still come: the callback frees sc then. */
        sc->abandoned = true;
        ho_error_report(HO_ERR_TIMEOUT,
                        _("timed out after %2$u ms waiting for handoverd at '%3$s' to answer "
                          "'%1$s'"),
                        method, timeout_ms, conn->where);
        conn_unref(conn);
        return -1;
    }

    if (sc->err) {
        ho_error_set(g_steal_pointer(&sc->err));
    } else {
        if (result)
            *result = g_steal_pointer(&sc->result);
        rc = 0;
    }
    conn_sync_call_free(sc);
    conn_unref(conn);
    return rc;
}

typedef struct {
    guint64 start;
} HoRpcEventWait;

static bool
conn_event_done(HoRpcConn *conn, void *data)
{
    return conn->events != ((HoRpcEventWait *)data)->start || conn->closed;
}

int
ho_rpc_conn_wait_event(HoRpcConn *conn, guint timeout_ms)
{
    HoRpcEventWait wait = {conn->events};
    int rc;

    conn_ref(conn);
    (void)conn_run_until(conn->ctx, timeout_ms, conn_event_done, conn, &wait);
    if (conn->events != wait.start) {
        rc = 1;
    } else if (conn->closed) {
        ho_error_set(ho_error_copy(conn->close_error));
        rc = -1;
    } else {
        rc = 0;
    }
    conn_unref(conn);
    return rc;
}
