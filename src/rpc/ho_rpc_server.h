/*
 * The daemon side of the handoverd protocol (docs/protocol.md): JSON lines
 * over stream sockets, requests dispatched from a method table that
 * declares each argument's type and whether it is required, replies that
 * may come later (asynchronous methods), events pushed to subscribed
 * clients, and limits on message size, pending requests and connections.
 *
 * Everything runs on one GLib main context; nothing blocks on a client.
 * A client that breaks the protocol gets an error line and is dropped
 * with one log line. A client that disconnects while its requests are
 * pending is freed once they complete; their replies are dropped.
 */
#pragma once

#include <glib.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "ho_error.h"

#define HO_RPC_PROTOCOL_VERSION 1

/* Keepalive defaults (docs/protocol.md): a ping after 5 s of silence, the
 * peer dead after 5 pings without an answer. */
#define HO_RPC_KEEPALIVE_INTERVAL_MS 5000
#define HO_RPC_KEEPALIVE_COUNT 5

typedef struct _HoRpcServer HoRpcServer;
typedef struct _HoRpcServerClient HoRpcServerClient;
typedef struct _HoRpcCall HoRpcCall;

typedef enum {
    HO_RPC_ARG_STRING = 0,
    HO_RPC_ARG_BOOL,
    HO_RPC_ARG_INT,    /* JSON integer, int64 */
    HO_RPC_ARG_UINT,   /* JSON integer >= 0 */
    HO_RPC_ARG_OBJECT,
    HO_RPC_ARG_ARRAY,
    HO_RPC_ARG_LAST
} HoRpcArgType;

typedef struct {
    const char *name;
    HoRpcArgType type;
    bool required;
} HoRpcArgSpec;

/* A method implementation. params has been checked against the method's
 * argument table (unknown, missing and mistyped arguments never reach it).
 * Return 0 when the call was answered (ho_rpc_call_reply/_error) or will
 * be answered later; return -1 with an error reported in the per-thread
 * slot and the server answers with it (the call must not be used then). */
typedef int (*HoRpcHandler)(HoRpcCall *call, json_object *params, void *opaque);

typedef enum {
    HO_RPC_METHOD_LOCAL = 1 << 0,  /* served on UNIX sockets only */
    HO_RPC_METHOD_PEER = 1 << 1,   /* served on TCP (peer daemons) too */
} HoRpcMethodFlags;

typedef struct {
    const char *name;           /* "domain.start" */
    HoRpcHandler handler;
    const HoRpcArgSpec *args;   /* terminated by an entry with name NULL */
    unsigned int flags;         /* HoRpcMethodFlags */
} HoRpcMethod;

typedef struct {
    size_t max_message_size;         /* bytes, including the newline; default 1 MiB */
    unsigned int max_clients;        /* default 64 */
    unsigned int max_requests;       /* pending per client; default 32 */
    size_t max_output;               /* bytes queued to one client before it is dropped
                                      * as too slow; default 16 MiB */
} HoRpcLimits;

/* The defaults named above. */
void ho_rpc_limits_default(HoRpcLimits *limits);

/* A server with a method table (n entries, not copied: keep it alive; the
 * built-in "hello", "events.subscribe" and "events.unsubscribe" are added
 * by the server). hello_info is merged into the hello result (daemon,
 * hostname, host_uuid; consumed). ctx NULL: thread default. */
HoRpcServer *ho_rpc_server_new(const HoRpcMethod *methods, size_t n, void *opaque,
                               json_object *hello_info, const HoRpcLimits *limits,
                               GMainContext *ctx);
/* Stop listening, drop every client (pending calls complete into the void), free. */
void ho_rpc_server_free(HoRpcServer *srv);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(HoRpcServer, ho_rpc_server_free)

/* Listen on a UNIX socket (local methods); -1 and an error naming path. */
int ho_rpc_server_listen_unix(HoRpcServer *srv, const char *path, mode_t mode);
/* Listen on TCP host:port (peer methods only); *bound_port gets the port
 * (useful with port 0); -1 and an error. */
int ho_rpc_server_listen_tcp(HoRpcServer *srv, const char *host, int port, int *bound_port);
/* Serve one already-connected socket (consumed) as a local or peer client. */
int ho_rpc_server_add_client_fd(HoRpcServer *srv, int fd, bool local);

/* Keepalive towards clients that ask for it in their hello (peer
 * daemons): a ping after every interval_ms without a message from the
 * client, the client dropped as dead after count unanswered pings.
 * interval_ms 0 turns it off (the default); pings from clients are
 * answered either way. */
void ho_rpc_server_set_keepalive(HoRpcServer *srv, guint interval_ms, guint count);

/* Number of connected clients. */
unsigned int ho_rpc_server_client_count(const HoRpcServer *srv);
/* Send an event to every subscribed client; data consumed (may be NULL). */
void ho_rpc_server_emit_event(HoRpcServer *srv, const char *event, json_object *data);

/* Answer a call with a result (consumed; NULL means {}); frees the call. */
void ho_rpc_call_reply(HoRpcCall *call, json_object *result);
/* Answer a call with an error (copied); frees the call. */
void ho_rpc_call_error(HoRpcCall *call, const HoError *err);
/* The method name of a call. */
const char *ho_rpc_call_method(const HoRpcCall *call);
/* Whether the client that made the call is still connected. */
bool ho_rpc_call_client_connected(const HoRpcCall *call);
/* Whether the call came from a local (UNIX socket) client. */
bool ho_rpc_call_is_local(const HoRpcCall *call);
/* A description of the client for log lines ("client 3 (127.0.0.1:4711)"). */
const char *ho_rpc_call_client_label(const HoRpcCall *call);

/* Per-connection state of the application (a peer daemon's migrations):
 * the data attached to the connection a call came from, or NULL. */
void *ho_rpc_call_get_session(const HoRpcCall *call);
/* Attach data to the connection the call came from (at most one; an
 * attached one must be got, not replaced). closed(data) runs exactly once:
 * when the connection closes, when the server is freed, or at once when
 * the connection is already closed. */
void ho_rpc_call_set_session(HoRpcCall *call, void *data, GDestroyNotify closed);
