/*
 * The source daemon's connection to a destination daemon for one
 * migration job: the destination URI (handover+tcp://HOST[:PORT]/system),
 * an asynchronous connect and hello on the daemon's loop with keepalive,
 * and the orchestrator's QemuMigrationPeerOps over it
 * ("migration.prepare", "migration.nbd_stop", "migration.finish" and, for
 * postcopy, "migration.recover" and "migration.pause", docs/protocol.md).
 *
 * Nothing here blocks the loop: the host name is resolved in a worker
 * thread, the connect and every call complete on the loop.
 */
#pragma once

#include <glib.h>

#include "ho_error.h"
#include "qemu_migration.h"

typedef struct _HandoverdPeer HandoverdPeer;

/* The port of a destination URI that names none. */
#define HANDOVERD_PEER_DEFAULT_PORT 16514

typedef struct {
    const char *client_name;       /* "handoverd 0.1.0 (host NAME)" for the peer's logs */
    unsigned int timeout_ms;       /* connect and hello; 0: 30 s */
    unsigned int keepalive_interval_ms; /* 0: no keepalive */
    unsigned int keepalive_count;
} HandoverdPeerConfig;

/* The opening ended: err NULL and the peer's hello known, or err. */
typedef void (*HandoverdPeerOpenFunc)(HandoverdPeer *peer, const HoError *err, void *opaque);
/* The open connection broke (keepalive, EOF, protocol error): err says why. */
typedef void (*HandoverdPeerLostFunc)(HandoverdPeer *peer, const HoError *err, void *opaque);

/* Check a destination URI: 0 and *host (g_free it), *port; -1 and an error
 * naming the URI ("handover+tcp://HOST[:PORT]/system" only). */
int handoverd_peer_parse_uri(const char *uri, char **host, int *port);

/* Start connecting to the daemon at uri on the thread's default context.
 * NULL and an error for a bad URI; otherwise cb runs once, later, unless
 * the peer is freed first. */
HandoverdPeer *handoverd_peer_connect(const char *uri, const HandoverdPeerConfig *cfg,
                                      HandoverdPeerOpenFunc cb, void *opaque);
/* What to call when the open connection breaks (replaces the previous). */
void handoverd_peer_set_lost(HandoverdPeer *peer, HandoverdPeerLostFunc cb, void *opaque);
/* From the peer's hello (after a successful open; borrowed). */
const char *handoverd_peer_host_uuid(const HandoverdPeer *peer);
const char *handoverd_peer_hostname(const HandoverdPeer *peer);
const char *handoverd_peer_daemon(const HandoverdPeer *peer);
const char *handoverd_peer_uri(const HandoverdPeer *peer);
/* Close the connection and free; pending calls' callbacks do not run.
 * Accepts NULL. */
void handoverd_peer_free(HandoverdPeer *peer);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(HandoverdPeer, handoverd_peer_free)

/* The orchestrator's peer operations over a HandoverdPeer (ops->free is
 * handoverd_peer_free). */
const QemuMigrationPeerOps *handoverd_peer_ops(void);
