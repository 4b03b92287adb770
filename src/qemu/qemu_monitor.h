/*
 * The QMP transport: an asynchronous client on a GLib main context.
 *
 * It connects to a QEMU's QMP socket, reads the greeting, negotiates
 * qmp_capabilities, then sends commands with ids (several may be in
 * flight) and matches the replies, and dispatches events to subscribers.
 * It holds no policy: one small function per command lives in
 * qemu_monitor_json.h on top of qemu_monitor_send().
 *
 * Nothing here blocks the loop, except qemu_monitor_send_sync(), which is
 * for tools and tests and must never run on the daemon's loop.
 *
 * Failure: EOF, a socket error, malformed JSON, a message over the size
 * limit or a reply to an id we never sent breaks the connection: every
 * pending command completes with an HO_ERR_MONITOR error saying why, then
 * the closed callback runs once. No callback runs after that.
 *
 * Callbacks may unref or close the monitor; it stays valid until the
 * callback returns.
 */
#pragma once

#include <glib.h>
#include <json-c/json.h>
#include <stdbool.h>

#include "ho_error.h"
#include "qemu_recorder.h"

typedef struct _QemuMonitor QemuMonitor;

/* Default limit on one incoming QMP message (a query-qmp-schema reply is
 * about 200 KiB; 64 MiB leaves room and still bounds memory). */
#define QEMU_MONITOR_DEFAULT_MAX_MESSAGE (64 * 1024 * 1024)

typedef struct {
    /* qmp_capabilities succeeded; greeting is the "QMP" object (borrowed). */
    void (*ready)(QemuMonitor *mon, json_object *greeting, void *opaque);
    /* The connection ended: err says why (never NULL; EOF is an error too,
     * since QEMU's exit is always worth a sentence). */
    void (*closed)(QemuMonitor *mon, const HoError *err, void *opaque);
} QemuMonitorCallbacks;

/* An event: name ("STOP"), data (borrowed, may be NULL), QEMU's timestamp
 * in µs of wall-clock time, our monotonic receive time in µs. */
typedef void (*QemuMonitorEventFunc)(QemuMonitor *mon, const char *name, json_object *data,
                                     gint64 qemu_ts_us, gint64 recv_ts_us, void *opaque);

/* A reply: on success ret is the "return" value (borrowed) and err NULL;
 * on failure ret is NULL and err says why (a QMP error, or the connection). */
typedef void (*QemuMonitorReplyFunc)(QemuMonitor *mon, json_object *ret, const HoError *err,
                                     void *opaque);

/* Start a monitor on a connected stream socket; consumes fd. The greeting
 * and qmp_capabilities exchange start at once on ctx (NULL: the thread
 * default context). label names this QEMU in messages and recordings
 * ("src", "dst", or a domain name). Never NULL. */
QemuMonitor *qemu_monitor_new(int fd, const char *label, GMainContext *ctx,
                              const QemuMonitorCallbacks *cbs, void *opaque);
/* Connect to a UNIX socket path and start a monitor; NULL and an error. */
QemuMonitor *qemu_monitor_open_unix(const char *path, const char *label, GMainContext *ctx,
                                    const QemuMonitorCallbacks *cbs, void *opaque);
/* Take a reference. */
QemuMonitor *qemu_monitor_ref(QemuMonitor *mon);
/* Drop a reference; the last one closes (without running the closed
 * callback) and frees. Accepts NULL. */
void qemu_monitor_unref(QemuMonitor *mon);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(QemuMonitor, qemu_monitor_unref)

/* Close now: pending commands fail with "closed by us", the closed callback
 * runs once with that error. Idempotent. */
void qemu_monitor_close(QemuMonitor *mon);

/* Record every exchange from now on (NULL stops recording); takes a ref. */
void qemu_monitor_set_recorder(QemuMonitor *mon, QemuRecorder *rec);
/* Change the incoming message limit (bytes). */
void qemu_monitor_set_max_message(QemuMonitor *mon, size_t max);
/* The label given at creation. */
const char *qemu_monitor_get_label(const QemuMonitor *mon);
/* Whether qmp_capabilities succeeded and the connection is still open. */
bool qemu_monitor_is_ready(const QemuMonitor *mon);
/* Whether the connection has ended. */
bool qemu_monitor_is_closed(const QemuMonitor *mon);
/* The greeting's "QMP" object once received (borrowed), else NULL. */
json_object *qemu_monitor_get_greeting(const QemuMonitor *mon);

/* Subscribe to an event by name (NULL: every event); returns an id > 0.
 * Subscribers run in subscription order. */
guint qemu_monitor_subscribe(QemuMonitor *mon, const char *event, QemuMonitorEventFunc fn,
                             void *opaque);
/* Remove a subscription; safe from inside an event callback. */
void qemu_monitor_unsubscribe(QemuMonitor *mon, guint id);

/* Send a command; args (may be NULL) is consumed. fd >= 0 is passed along
 * with the message (SCM_RIGHTS) and not consumed. Commands queue until the
 * monitor is ready. cb (may be NULL) runs exactly once. Returns the command
 * id (> 0); on a closed monitor cb runs from an idle callback with an error,
 * never re-entrantly. */
guint64 qemu_monitor_send(QemuMonitor *mon, const char *command, json_object *args, int fd,
                          QemuMonitorReplyFunc cb, void *opaque);

/* Tools and tests only: iterate the monitor's context until it is ready,
 * a bounded wait; -1 and an error on timeout or close. */
int qemu_monitor_wait_ready(QemuMonitor *mon, guint timeout_ms);
/* Tools and tests only: send and iterate the context until the reply, a
 * bounded wait. On success *ret (if non-NULL) gets a new reference to the
 * return value. -1 and the error (QMP, closed, or timeout) reported. */
int qemu_monitor_send_sync(QemuMonitor *mon, const char *command, json_object *args, int fd,
                           json_object **ret, guint timeout_ms);
