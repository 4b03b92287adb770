/*
 * The methods of the handoverd protocol (docs/protocol.md) on top of the
 * QEMU driver: one table entry per method with its argument table, one
 * small handler each that turns arguments into a driver call and the
 * driver's answer into the documented result. Errors of the driver are
 * passed through unchanged. Operations that wait on QEMU answer their
 * call from the driver's completion callback.
 *
 * The driver's lifecycle events are forwarded to subscribed clients as
 * "domain.lifecycle" events.
 */
#pragma once

#include <glib.h>
#include <json-c/json.h>
#include <stddef.h>

#include "handoverd_peer.h"
#include "ho_rpc_server.h"
#include "qemu_driver.h"
#include "qemu_migration.h"

typedef struct _HandoverdMethods HandoverdMethods;

/* The method table (static; the server adds hello and events.*). */
const HoRpcMethod *handoverd_methods_table(size_t *n);

/* The state the methods work on: host facts for hello and host.info
 * (copied). The driver and the server are attached once they exist. */
HandoverdMethods *handoverd_methods_new(const char *hostname, const char *host_uuid,
                                        const char *default_emulator);
/* Answer the calls still waiting for the driver with an error (the
 * driver is gone by then) and free; accepts NULL. */
void handoverd_methods_free(HandoverdMethods *m);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(HandoverdMethods, handoverd_methods_free)

/* Attach (or, with NULL, detach before freeing them) the driver and the
 * server. Nothing is owned. Attach the driver right after
 * qemu_driver_open(): the domains running then are being reconnected, and
 * lifecycle calls for them (start, shutdown, destroy, suspend, resume) are
 * held until the driver's first event about each, which ends its
 * reconnection (at most 60 s). */
void handoverd_methods_set_driver(HandoverdMethods *m, QemuDriver *drv);
void handoverd_methods_set_server(HandoverdMethods *m, HoRpcServer *srv);

/* Attach (or detach with NULL) the migration orchestrator, and how the
 * source side connects to destination daemons (copied; client_name is
 * made here). Jobs found in status files are recovered once every domain
 * found at open has been reconnected. */
void handoverd_methods_set_migration(HandoverdMethods *m, QemuMigration *mig,
                                     const HandoverdPeerConfig *peer_cfg);

/* A QemuMigrationEventFunc (opaque: the HandoverdMethods): forwards the
 * job event as "domain.job" {name, uuid, event, data}. */
void handoverd_methods_migration_event(QemuMigration *mig, const char *name, const char *uuid,
                                       const char *event, json_object *data, void *opaque);

/* The daemon's part of the hello result: daemon, hostname, host_uuid. */
json_object *handoverd_methods_hello_info(const HandoverdMethods *m);

/* A QemuDriverEventFunc (opaque: the HandoverdMethods): forwards the
 * event as "domain.lifecycle" {name, uuid, event, detail?}. */
void handoverd_methods_driver_event(QemuDriver *drv, QemuDomainObj *dom, const char *event,
                                    const char *detail, void *opaque);
