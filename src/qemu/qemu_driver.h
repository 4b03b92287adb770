/*
 * The QEMU driver: the domains of this host and their QEMU processes.
 *
 * It keeps persistent definitions (state_dir/domains/NAME.xml) and the
 * runtime status of every running domain (runtime_dir/domains/NAME.json,
 * written atomically whenever it changes: pid and its start time, monitor
 * socket, state and reason, the live definition with the concrete machine
 * type, emulator, accelerator, active job). A driver opened on existing
 * directories finds the QEMUs still running from the status files,
 * reconnects to their monitors and watches them with a pidfd (they are no
 * longer its children); a QEMU that died meanwhile is reported and
 * cleaned up. QEMUs it starts stay its children, watched with a GLib child
 * watch. Nothing polls and nothing blocks the loop: every operation that
 * waits on QEMU completes through a callback.
 *
 * Names: a domain is looked up by name or by UUID string.
 */
#pragma once

#include <glib.h>
#include <json-c/json.h>
#include <stdbool.h>

#include "ho_error.h"
#include "qemu_capabilities.h"
#include "qemu_domain.h"
#include "qemu_monitor.h"
#include "qemu_process.h"

typedef struct _QemuDriver QemuDriver;
typedef struct _QemuDomainObj QemuDomainObj;

/* QEMU of a domain exited: how ("exited with status 1", ...). */
typedef void (*QemuDomainExitFunc)(QemuDomainObj *dom, const char *how, void *opaque);

typedef enum {
    QEMU_DOMAIN_STATE_SHUTOFF = 0,
    QEMU_DOMAIN_STATE_RUNNING,
    QEMU_DOMAIN_STATE_PAUSED,
    QEMU_DOMAIN_STATE_SHUTTING_DOWN,
    QEMU_DOMAIN_STATE_CRASHED,
    QEMU_DOMAIN_STATE_LAST
} QemuDomainState;

/* "running", "paused", "shutoff", "shutting-down", "crashed". */
const char *qemu_domain_state_to_string(QemuDomainState state);

typedef struct {
    const char *state_dir;        /* persistent: definitions, host uuid, caps cache */
    const char *runtime_dir;      /* volatile: status files, QMP sockets */
    const char *log_dir;          /* one log per domain: QEMU's stderr and our lines */
    const char *default_emulator; /* used when a definition names none */
    unsigned int shutdown_timeout_s; /* default for qemu_driver_domain_shutdown */
    unsigned int probe_timeout_s; /* bound on one capability probe; 0: 60 */
    const char *record_path;      /* flight recorder for every monitor, or NULL */
    /* QEMUs (domains and probes) start at this nice value, not the
     * daemon's own (which may be boosted above it). */
    bool qemu_nice_set;
    int qemu_nice;
    /* Tests: called instead of spawning the emulator (both for the
     * capability probe and for domains); must create the QMP listening
     * socket at opts->qmp_path (or serve it) and return in *pid a child of
     * this process (not reaped) that exits when the fake QEMU "dies".
     * 0, or -1 and an error. NULL: qemu_process_spawn. */
    int (*spawn_hook)(const QemuProcessSpawn *opts, GPid *pid, void *opaque);
    void *spawn_hook_opaque;
} QemuDriverConfig;

/* A lifecycle event: the domain, event ("defined", "undefined", "started",
 * "suspended", "resumed", "stopped", "shutdown", "crashed") and detail
 * (may be NULL: "destroyed", "shutdown", "qemu-exited", "reconnected",
 * "failed", ...). */
typedef void (*QemuDriverEventFunc)(QemuDriver *drv, QemuDomainObj *dom, const char *event,
                                    const char *detail, void *opaque);

/* Open the driver on its directories (created when missing), load the
 * definitions and reconnect to running QEMUs. Reconnection completes on
 * ctx; events say what it found. NULL and an error. */
QemuDriver *qemu_driver_open(const QemuDriverConfig *cfg, GMainContext *ctx,
                             QemuDriverEventFunc event_cb, void *opaque);
/* Free the driver. Running QEMUs keep running (a restarted daemon finds
 * them again); their monitors are closed. Accepts NULL. */
void qemu_driver_free(QemuDriver *drv);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(QemuDriver, qemu_driver_free)

/* The nice value QEMUs start at (QemuDriverConfig qemu_nice, else the
 * daemon's own). */
int qemu_driver_qemu_nice(QemuDriver *drv);

/* Host facts: the accelerator ("kvm"/"tcg") and why not KVM (may be NULL). */
const char *qemu_driver_accel(QemuDriver *drv, const char **why);

/* Lookup by name or UUID string; NULL and an HO_ERR_NO_DOMAIN error. The
 * object belongs to the driver; it stays valid until undefined and shut
 * off (take a ref to keep it across callbacks). */
QemuDomainObj *qemu_driver_lookup(QemuDriver *drv, const char *name_or_uuid);
/* Every domain, sorted by name (GPtrArray of QemuDomainObj, not owning). */
GPtrArray *qemu_driver_list(QemuDriver *drv);
QemuDomainObj *qemu_domain_obj_ref(QemuDomainObj *dom);
void qemu_domain_obj_unref(QemuDomainObj *dom);

/* Define a persistent domain from XML (parsed, validated, written
 * atomically). An existing name with the same UUID updates the persistent
 * definition (the running one is untouched); another UUID under that name,
 * or that UUID under another name, is refused. NULL and an error; nothing
 * changes on failure. */
QemuDomainObj *qemu_driver_define(QemuDriver *drv, const char *xml);
/* Remove the persistent definition; a running domain becomes transient. */
int qemu_driver_undefine(QemuDriver *drv, QemuDomainObj *dom);

/* Completion of an asynchronous operation: err NULL on success. */
typedef void (*QemuDriverDoneFunc)(QemuDriver *drv, QemuDomainObj *dom, const HoError *err,
                                   void *opaque);

/* Start: resolve the machine alias to the concrete type of this emulator
 * (query-machines, cached per emulator binary), build the command line,
 * spawn with -S, connect the monitor, probe capabilities, persist the
 * status, then cont unless paused. On failure the QEMU is killed and
 * nothing is left. Refused (at once, HO_ERR_OPERATION_INVALID) when the
 * domain is already running. */
void qemu_driver_domain_start(QemuDriver *drv, QemuDomainObj *dom, bool paused,
                              QemuDriverDoneFunc cb, void *opaque);
/* Ask the guest to power off (system_powerdown); completes when QEMU has
 * exited, or kills it after timeout_s (0: the config's default) and
 * completes with *forced set (passed to cb through the forced getter). */
void qemu_driver_domain_shutdown(QemuDriver *drv, QemuDomainObj *dom, unsigned int timeout_s,
                                 QemuDriverDoneFunc cb, void *opaque);
/* Kill the QEMU (SIGTERM, then SIGKILL after a short bound); completes
 * when it has exited. */
void qemu_driver_domain_destroy(QemuDriver *drv, QemuDomainObj *dom, QemuDriverDoneFunc cb,
                                void *opaque);
/* stop / cont. */
void qemu_driver_domain_suspend(QemuDriver *drv, QemuDomainObj *dom, QemuDriverDoneFunc cb,
                                void *opaque);
void qemu_driver_domain_resume(QemuDriver *drv, QemuDomainObj *dom, QemuDriverDoneFunc cb,
                               void *opaque);

/* Getters. */
const char *qemu_domain_obj_name(const QemuDomainObj *dom);
const char *qemu_domain_obj_uuid(const QemuDomainObj *dom); /* "xxxxxxxx-..." */
QemuDomainState qemu_domain_obj_state(const QemuDomainObj *dom);
const char *qemu_domain_obj_state_reason(const QemuDomainObj *dom); /* may be NULL */
bool qemu_domain_obj_is_persistent(const QemuDomainObj *dom);
bool qemu_domain_obj_is_active(const QemuDomainObj *dom);
/* Whether the last shutdown had to kill the QEMU. */
bool qemu_domain_obj_shutdown_forced(const QemuDomainObj *dom);
int qemu_domain_obj_pid(const QemuDomainObj *dom); /* 0 when not running */
/* The persistent definition, or the live one while running (borrowed). */
const QemuDomainDef *qemu_domain_obj_def(const QemuDomainObj *dom, bool inactive);
/* The live QEMU's monitor and capabilities while running, else NULL. */
QemuMonitor *qemu_domain_obj_monitor(const QemuDomainObj *dom);
const QemuCaps *qemu_domain_obj_caps(const QemuDomainObj *dom);
/* A JSON summary for domain.info (name, uuid, state, reason, max_memory_kib,
 * memory_kib, vcpus, persistent, pid, emulator, machine, accel). */
json_object *qemu_domain_obj_info_json(const QemuDomainObj *dom);

/* Capabilities of an emulator (NULL: the default), probed once and cached
 * per binary (path, size, mtime) in memory and in state_dir/caps/. */
typedef void (*QemuDriverCapsFunc)(QemuDriver *drv, const QemuCaps *caps, const HoError *err,
                                   void *opaque);
void qemu_driver_get_caps(QemuDriver *drv, const char *emulator, QemuDriverCapsFunc cb,
                          void *opaque);

/* ---- hooks of the migration orchestrator (qemu_migration.c) ---- */

/* The driver's context, its flight recorder (or NULL) and default emulator. */
GMainContext *qemu_driver_context(QemuDriver *drv);
QemuRecorder *qemu_driver_recorder(QemuDriver *drv);
const char *qemu_driver_host_emulator(QemuDriver *drv);

/* The migration job record in the status file (borrowed), or NULL. */
json_object *qemu_domain_obj_get_job(const QemuDomainObj *dom);
/* Set the job record (consumed; NULL clears) and persist the status file
 * (atomically, fsync and rename) before returning 0; -1 and an error,
 * with the previous record kept. While a job is set, STOP and RESUME
 * events change the state in memory only (paused reason "migration"), so
 * that nothing is written in the switchover window. */
int qemu_driver_domain_set_job(QemuDriver *drv, QemuDomainObj *dom, json_object *job)
    G_GNUC_WARN_UNUSED_RESULT;
/* Whether the driver is still reconnecting to the domain's QEMU (after open). */
bool qemu_domain_obj_is_reconnecting(const QemuDomainObj *dom);
/* The emulator binary of the running QEMU, or NULL. */
const char *qemu_domain_obj_emulator(const QemuDomainObj *dom);

/* Destination: start def (copied; def->machine the source's concrete
 * machine type, which this emulator must have) for an incoming migration
 * with emulator (NULL: this host's default), -S and -incoming defer,
 * monitor connected and capabilities probed, never cont'ed; job
 * (consumed) is its status file's job record from the first write. The
 * domain is transient unless a persistent definition of the same name and
 * UUID exists (it is kept as it is). Returns the domain (the driver's) and
 * cb runs later, exactly once: err NULL with the domain paused (reason
 * "incoming-migration"), or the error with nothing left. NULL and an
 * error at once (nothing changed) when a domain of that name or UUID is
 * active, the name belongs to another UUID or the UUID to another name. */
QemuDomainObj *qemu_driver_domain_start_incoming(QemuDriver *drv, const QemuDomainDef *def,
                                                 const char *emulator, json_object *job,
                                                 QemuDriverDoneFunc cb, void *opaque);
/* Destination, after the incoming migration completed and cont was sent
 * (running) or not (paused): state reason "migrated", job cleared,
 * status persisted. */
int qemu_driver_domain_incoming_finished(QemuDriver *drv, QemuDomainObj *dom, bool running);
/* Source, after the destination runs: quit QEMU (SIGKILL after a short
 * bound); completes when it has exited, state shutoff with reason
 * "migrated" (event "stopped" "migrated"). The caller undefines the
 * domain if asked. */
void qemu_driver_domain_quit_migrated(QemuDriver *drv, QemuDomainObj *dom,
                                      QemuDriverDoneFunc cb, void *opaque);
/* Be told when the domain's QEMU exits (after the state went to shutoff);
 * the watch is removed after it ran. Returns an id for removal. */
guint qemu_domain_obj_add_exit_watch(QemuDomainObj *dom, QemuDomainExitFunc fn, void *opaque);
void qemu_domain_obj_remove_exit_watch(QemuDomainObj *dom, guint id);

/* ---- CPR transfer (issue 6): a domain's QEMU replaced on this host ---- */

/* The other QEMU of a CPR transfer: first the new one, until the switch;
 * after qemu_driver_domain_cpr_switch the old one. */
typedef struct _QemuDomainCpr QemuDomainCpr;
/* That QEMU exited ("exited with status 1", ...); runs once. */
typedef void (*QemuDomainCprExitFunc)(QemuDomainCpr *cpr, const char *how, void *opaque);

/* Start the new QEMU for a CPR transfer of the running domain dom: its
 * live definition with the same concrete machine type, emulator (NULL:
 * the running one's) whose capabilities caps are (copied, from
 * qemu_driver_get_caps), -S, -incoming defer plus the CPR channel (a UNIX
 * socket the new QEMU listens on, qemu_domain_cpr_channel_path). Its QMP
 * socket is created here and passed as an fd, so its monitor
 * (qemu_domain_cpr_monitor) connects at once; the greeting comes only
 * once QEMU has read the CPR state. The process is our child; exit_cb
 * runs when it exits. NULL and an error, nothing left behind. */
QemuDomainCpr *qemu_driver_domain_cpr_spawn(QemuDriver *drv, QemuDomainObj *dom,
                                            const char *emulator, const QemuCaps *caps,
                                            QemuDomainCprExitFunc exit_cb, void *opaque);
/* Its monitor (borrowed; NULL once it exited), pid (0 once it exited),
 * the CPR channel's path and the path for the main channel (the new
 * QEMU's migrate-incoming unix:PATH). */
QemuMonitor *qemu_domain_cpr_monitor(const QemuDomainCpr *cpr);
int qemu_domain_cpr_pid(const QemuDomainCpr *cpr);
/* Whether its process has exited (or is exiting: a zombie), even if the
 * exit callback has not run yet; never reaps it. */
bool qemu_domain_cpr_exited(const QemuDomainCpr *cpr);
const char *qemu_domain_cpr_channel_path(const QemuDomainCpr *cpr);
const char *qemu_domain_cpr_main_path(const QemuDomainCpr *cpr);
/* The switch, after the source QEMU completed: the domain becomes the new
 * QEMU (pid, child watch, monitor, capabilities, emulator, QMP socket
 * path, state paused "migrated" until the caller's cont; status file
 * persisted) and cpr now holds the old QEMU with its monitor (exit_cb
 * runs when it exits). -1 and an error: nothing changed. */
int qemu_driver_domain_cpr_switch(QemuDriver *drv, QemuDomainObj *dom, QemuDomainCpr *cpr);
/* End cpr's QEMU: `quit` on its monitor when graceful and it has one,
 * else SIGKILL; SIGKILL after a short bound. exit_cb runs once it exited. */
void qemu_domain_cpr_end(QemuDomainCpr *cpr, bool graceful);
/* Free. A QEMU still running is killed and reaped later. Accepts NULL. */
void qemu_domain_cpr_free(QemuDomainCpr *cpr);
