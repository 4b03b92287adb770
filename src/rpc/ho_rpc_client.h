/*
 * The client side of the handoverd protocol (docs/protocol.md), used by
 * libhandover and by peer daemons. A connection runs on its own GMainContext
 * when given one (libhandover gives each connection a private context and
 * is synchronous; a daemon uses its loop with the asynchronous call).
 */
#pragma once

#include <glib.h>
#include <json-c/json.h>
#include <stdbool.h>

#include "ho_error.h"

typedef struct _HoRpcConn HoRpcConn;

/* An event: name, data (borrowed, may be NULL), the daemon's timestamp. */
typedef void (*HoRpcEventFunc)(HoRpcConn *conn, const char *event, json_object *data,
                               gint64 ts_us, void *opaque);
/* A reply: result borrowed on success, or err. */
typedef void (*HoRpcReplyFunc)(HoRpcConn *conn, json_object *result, const HoError *err,
                               void *opaque);
/* The connection ended (err says why). */
typedef void (*HoRpcClosedFunc)(HoRpcConn *conn, const HoError *err, void *opaque);

/* How a connection opens. Zero fields take their defaults. */
typedef struct {
    const char *client_name;     /* goes into hello; may be NULL */
    int protocol;                /* 0: HO_RPC_PROTOCOL_VERSION (tests speak others) */
    guint timeout_ms;            /* resolving, connecting and hello together; 0: 30 s */
    /* Keepalive (docs/protocol.md): 0 interval: off. Otherwise a ping
     * after every interval in which nothing came from the daemon, the
     * daemon is asked to ping this side too, and the connection closes as
     * dead after keepalive_count (0: 5) pings without an answer. */
    guint keepalive_interval_ms;
    guint keepalive_count;
} HoRpcConnOptions;

/* The opening ended: err NULL and the connection open (hello done), or
 * err and the connection closed (the caller still frees it). */
typedef void (*HoRpcOpenFunc)(HoRpcConn *conn, const HoError *err, void *opaque);

/* Open without blocking: resolve host in a worker thread, connect
 * without blocking, send hello, all on ctx (NULL: the thread's default).
 * The connection is returned at once (NULL and an error only for
 * arguments that cannot work); cb runs exactly once later from ctx,
 * unless the connection is freed first, which cancels the opening. Calls
 * made before cb ran are queued behind the hello. */
HoRpcConn *ho_rpc_conn_open_tcp_async(const char *host, int port, const HoRpcConnOptions *opts,
                                      GMainContext *ctx, HoRpcOpenFunc cb, void *opaque);
/* The same on a UNIX socket (its connect does not block). */
HoRpcConn *ho_rpc_conn_open_unix_async(const char *path, const HoRpcConnOptions *opts,
                                       GMainContext *ctx, HoRpcOpenFunc cb, void *opaque);

/* Connect to a UNIX socket or TCP host:port and complete the hello
 * exchange, iterating ctx (bounded by timeout_ms); NULL and an error
 * ("cannot connect to handoverd at '%1$s': ...", or the daemon's refusal
 * naming both protocol versions). client_name goes into hello. */
HoRpcConn *ho_rpc_conn_open_unix(const char *path, const char *client_name, GMainContext *ctx,
                                 guint timeout_ms);
HoRpcConn *ho_rpc_conn_open_tcp(const char *host, int port, const char *client_name,
                                GMainContext *ctx, guint timeout_ms);
/* Close and free; pending calls complete with an error. Accepts NULL. */
void ho_rpc_conn_free(HoRpcConn *conn);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(HoRpcConn, ho_rpc_conn_free)

/* The hello result (borrowed): protocol, daemon, hostname, host_uuid. */
json_object *ho_rpc_conn_get_hello(const HoRpcConn *conn);
/* The round-trip time to the peer in microseconds, as the kernel
 * measures it on a TCP connection; -1 on a UNIX socket or while
 * resolving. */
int ho_rpc_conn_rtt_us(const HoRpcConn *conn);
/* Whether the connection is still open. */
bool ho_rpc_conn_is_open(const HoRpcConn *conn);
/* Event and close callbacks (either may be NULL). */
void ho_rpc_conn_set_callbacks(HoRpcConn *conn, HoRpcEventFunc event_cb,
                               HoRpcClosedFunc closed_cb, void *opaque);
/* Limit on incoming messages (default 16 MiB: results can be large). */
void ho_rpc_conn_set_max_message(HoRpcConn *conn, size_t max);

/* Asynchronous call; params consumed (may be NULL). cb runs exactly once. */
void ho_rpc_conn_call(HoRpcConn *conn, const char *method, json_object *params,
                      HoRpcReplyFunc cb, void *opaque);
/* Synchronous call: iterate the connection's context until the reply
 * (events received meanwhile are dispatched) or timeout_ms. 0 and
 * *result (a new reference, if result is non-NULL); -1 and the error
 * (the daemon's, with its code mapped back to HoErrorCode, or the
 * connection's, or a timeout) reported. */
int ho_rpc_conn_call_sync(HoRpcConn *conn, const char *method, json_object *params,
                          json_object **result, guint timeout_ms);
/* Iterate the context until at least one event was dispatched, the
 * connection closed, or timeout_ms passed (0: forever is NOT allowed; use
 * G_MAXUINT for "very long"). 1 when an event came, 0 on timeout, -1 and
 * an error when the connection closed. */
int ho_rpc_conn_wait_event(HoRpcConn *conn, guint timeout_ms);

/* Map an error code name from the wire back to HoErrorCode (HO_ERR_RPC
 * for an unknown name). */
HoErrorCode ho_rpc_error_code_from_name(const char *name);
