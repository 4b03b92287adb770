/*
 * The connection to a destination daemon: see handoverd_peer.h.
 *
 * A call's reply goes through a small PeerCall that knows the peer: once
 * the peer is being freed (the job ended), the connection's teardown fails
 * the pending calls and their callbacks are dropped instead of reaching an
 * orchestrator that has already let go of the job.
 */
#define HO_LOG_MODULE "daemon.peer"

#include "handoverd_peer.h"

#include <string.h>

#include "ho_i18n.h"
#include "ho_json.h"
#include "ho_log.h"
#include "ho_rpc_client.h"
#include "ho_uri.h"

struct _HandoverdPeer {
    char *uri;
    HoRpcConn *conn;
    bool freeing;
    HandoverdPeerOpenFunc open_cb;
    void *open_opaque;
    HandoverdPeerLostFunc lost_cb;
    void *lost_opaque;
    char *host_uuid;
    char *hostname;
    char *daemon;
};

typedef struct {
    HandoverdPeer *peer;
    QemuMigrationReplyFunc cb;
    void *opaque;
} PeerCall;

int
handoverd_peer_parse_uri(const char *uri, char **host, int *port)
{
    g_autoptr(HoUri) u = NULL;

    if (!uri || !*uri) {
        ho_error_report(HO_ERR_URI, _("the destination URI is empty"));
        return -1;
    }
    if (!(u = ho_uri_parse(uri)))
        return -1;
    if (!g_str_equal(u->scheme, "handover+tcp")) {
        ho_error_report(HO_ERR_URI,
                        _("unsupported destination URI '%1$s': use "
                          "handover+tcp://HOST[:PORT]/system"),
                        uri);
        return -1;
    }
    if (!u->host || !*u->host) {
        ho_error_report(HO_ERR_URI, _("destination URI '%1$s' has no host"), uri);
        return -1;
    }
    if (!g_str_equal(u->path, "/system")) {
        ho_error_report(HO_ERR_URI, _("unsupported path '%1$s' in destination URI '%2$s': use "
                                      "'/system'"),
                        u->path, uri);
        return -1;
    }
    if (u->query || u->fragment || u->user) {
        ho_error_report(HO_ERR_URI,
                        _("destination URI '%1$s' has parts handover does not know (user, "
                          "query or fragment)"),
                        uri);
        return -1;
    }
    if (u->port < 0 || u->port > 65535) {
        ho_error_report(HO_ERR_URI, _("invalid port in destination URI '%1$s'"), uri);
        return -1;
    }
    *host = g_strdup(u->host);
    *port = u->port ? u->port : HANDOVERD_PEER_DEFAULT_PORT;
    return 0;
}

static char *
peer_hello_string(json_object *hello, const char *key)
{
    const char *val = NULL;

    if (hello && ho_json_opt_string(hello, key, &val) < 0)
        ho_error_reset();
    return g_strdup(val ? val : "");
}

static void
peer_closed(HoRpcConn *conn, const HoError *err, void *opaque)
{
    HandoverdPeer *peer = opaque;

    HO_WARN("connection to the destination daemon at '%s' lost: %s", peer->uri, err->message);
    /* The callback may free the peer: nothing of it is used afterwards. */
    if (peer->lost_cb && !peer->freeing)
        peer->lost_cb(peer, err, peer->lost_opaque);
}

static void
peer_opened(HoRpcConn *conn, const HoError *err, void *opaque)
{
    HandoverdPeer *peer = opaque;
    json_object *hello;

    if (!err) {
        hello = ho_rpc_conn_get_hello(conn);
        peer->host_uuid = peer_hello_string(hello, "host_uuid");
        peer->hostname = peer_hello_string(hello, "hostname");
        peer->daemon = peer_hello_string(hello, "daemon");
        if (!*peer->host_uuid) {
            g_autoptr(HoError) bad =
                ho_error_new(HO_ERR_RPC,
                             _("the daemon at '%1$s' did not say its host UUID in its hello"),
                             peer->uri);

            peer->open_cb(peer, bad, peer->open_opaque);
            return;
        }
        HO_INFO("connected to %s on host '%s' (%s) at '%s'", peer->daemon, peer->hostname,
                peer->host_uuid, peer->uri);
        ho_rpc_conn_set_callbacks(conn, NULL, peer_closed, peer);
    }
    peer->open_cb(peer, err, peer->open_opaque);
}

HandoverdPeer *
handoverd_peer_connect(const char *uri, const HandoverdPeerConfig *cfg, HandoverdPeerOpenFunc cb,
                       void *opaque)
{
    g_autofree char *host = NULL;
    HoRpcConnOptions opts = {0};
    HandoverdPeer *peer;
    int port = 0;

    if (handoverd_peer_parse_uri(uri, &host, &port) < 0)
        return NULL;
    peer = g_new0(HandoverdPeer, 1);
    peer->uri = g_strdup(uri);
    peer->open_cb = cb;
    peer->open_opaque = opaque;
    opts.client_name = cfg->client_name;
    opts.timeout_ms = cfg->timeout_ms;
    opts.keepalive_interval_ms = cfg->keepalive_interval_ms;
    opts.keepalive_count = cfg->keepalive_count;
    peer->conn = ho_rpc_conn_open_tcp_async(host, port, &opts, NULL, peer_opened, peer);
    if (!peer->conn) {
        handoverd_peer_free(peer);
        return NULL;
    }
    return peer;
}

void
handoverd_peer_set_lost(HandoverdPeer *peer, HandoverdPeerLostFunc cb, void *opaque)
{
    peer->lost_cb = cb;
    peer->lost_opaque = opaque;
}

const char *
handoverd_peer_host_uuid(const HandoverdPeer *peer)
{
    return peer->host_uuid;
}

const char *
handoverd_peer_hostname(const HandoverdPeer *peer)
{
    return peer->hostname;
}

const char *
handoverd_peer_daemon(const HandoverdPeer *peer)
{
    return peer->daemon;
}

const char *
handoverd_peer_uri(const HandoverdPeer *peer)
{
    return peer->uri;
}

void
handoverd_peer_free(HandoverdPeer *peer)
{
    if (!peer)
        return;
    peer->freeing = true;
    if (peer->conn) {
        ho_rpc_conn_set_callbacks(peer->conn, NULL, NULL, NULL);
        /* Fails the pending calls: their PeerCalls see freeing and drop. */
        g_clear_pointer(&peer->conn, ho_rpc_conn_free);
    }
    g_free(peer->uri);
    g_free(peer->host_uuid);
    g_free(peer->hostname);
    g_free(peer->daemon);
    g_free(peer);
}

/* ---- the orchestrator's operations ---- */

static void
peer_call_reply(HoRpcConn *conn, json_object *result, const HoError *err, void *opaque)
{
    PeerCall *pc = opaque;

    if (!pc->peer->freeing)
        pc->cb(result, err, pc->opaque);
    g_free(pc);
}

static void
peer_call(HandoverdPeer *peer, const char *method, json_object *params, QemuMigrationReplyFunc cb,
          void *opaque)
{
    PeerCall *pc = g_new0(PeerCall, 1);

    pc->peer = peer;
    pc->cb = cb;
    pc->opaque = opaque;
    ho_rpc_conn_call(peer->conn, method, params, peer_call_reply, pc);
}

static void
peer_op_prepare(void *p, json_object *cookie, QemuMigrationReplyFunc cb, void *opaque)
{
    json_object *params = json_object_new_object();

    ho_json_add(params, "cookie", cookie);
    peer_call(p, "migration.prepare", params, cb, opaque);
}

static void
peer_op_finish(void *p, json_object *args, QemuMigrationReplyFunc cb, void *opaque)
{
    json_object *params = json_object_new_object();

    ho_json_add(params, "args", args);
    peer_call(p, "migration.finish", params, cb, opaque);
}

static void
peer_op_nbd_stop(void *p, json_object *args, QemuMigrationReplyFunc cb, void *opaque)
{
    json_object *params = json_object_new_object();

    ho_json_add(params, "args", args);
    peer_call(p, "migration.nbd_stop", params, cb, opaque);
}

/* Postcopy recovery: the destination listens again (migrate-recover). */
static void
peer_op_recover(void *p, json_object *args, QemuMigrationReplyFunc cb, void *opaque)
{
    json_object *params = json_object_new_object();

    ho_json_add(params, "args", args);
    peer_call(p, "migration.recover", params, cb, opaque);
}

/* Postcopy: force the destination into postcopy-paused (migrate-pause). */
static void
peer_op_pause(void *p, json_object *args, QemuMigrationReplyFunc cb, void *opaque)
{
    json_object *params = json_object_new_object();

    ho_json_add(params, "args", args);
    peer_call(p, "migration.pause", params, cb, opaque);
}

static int
peer_op_rtt_us(void *p)
{
    HandoverdPeer *peer = p;

    return peer->conn ? ho_rpc_conn_rtt_us(peer->conn) : -1;
}

static const char *
peer_op_host_uuid(void *p)
{
    return handoverd_peer_host_uuid(p);
}

static const char *
peer_op_hostname(void *p)
{
    return handoverd_peer_hostname(p);
}

static void
peer_op_free(void *p)
{
    handoverd_peer_free(p);
}

static const QemuMigrationPeerOps peer_ops = {
    .prepare = peer_op_prepare,
    .finish = peer_op_finish,
    .host_uuid = peer_op_host_uuid,
    .hostname = peer_op_hostname,
    .free = peer_op_free,
    .nbd_stop = peer_op_nbd_stop,
    .recover = peer_op_recover,
    .pause = peer_op_pause,
    .rtt_us = peer_op_rtt_us,
};

const QemuMigrationPeerOps *
handoverd_peer_ops(void)
{
    return &peer_ops;
}
