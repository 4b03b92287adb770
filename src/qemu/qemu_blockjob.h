/*
 * Block jobs and their events: a small tracker of the block jobs one
 * migration started (its mirrors), fed by QEMU's BLOCK_JOB_READY,
 * BLOCK_JOB_COMPLETED, BLOCK_JOB_CANCELLED, BLOCK_JOB_ERROR and
 * JOB_STATUS_CHANGE events and, for progress only, by query-block-jobs.
 *
 * The tracker holds no policy: it says which job is ready, gone or
 * failed, and calls back on every change; the orchestrator decides.
 * A job is "gone" once QEMU said it ended (completed, cancelled, or
 * dismissed); a job whose blockdev-mirror failed never existed and is
 * gone at once.
 */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "qemu_monitor.h"

typedef enum {
    QEMU_BLOCK_JOB_STATE_NEW = 0,   /* the command that starts it is on its way */
    QEMU_BLOCK_JOB_STATE_RUNNING,   /* QEMU accepted it; copying */
    QEMU_BLOCK_JOB_STATE_READY,     /* BLOCK_JOB_READY: source and target in sync */
    QEMU_BLOCK_JOB_STATE_COMPLETED, /* ended without error (a READY mirror cancelled
                                     * completes without pivot) */
    QEMU_BLOCK_JOB_STATE_CANCELLED, /* ended by a cancel before it was ready */
    QEMU_BLOCK_JOB_STATE_FAILED,    /* ended with an error, or never started */
    QEMU_BLOCK_JOB_STATE_LAST
} QemuBlockJobState;

/* "new", "running", "ready", "completed", "cancelled", "failed". */
const char *qemu_block_job_state_to_string(QemuBlockJobState state);

typedef struct {
    char *id;            /* the job id (QEMU's "device" in BLOCK_JOB_* events) */
    char *device;        /* the node it copies from */
    char *target;        /* the node it copies to */
    QemuBlockJobState state;
    uint64_t len;        /* bytes to copy, as QEMU last said */
    uint64_t offset;     /* bytes copied */
    gint64 moved_us;     /* monotonic time offset last moved (or the job was added) */
    char *error;         /* the first error QEMU reported, or NULL */
} QemuBlockJob;

typedef struct _QemuBlockJobSet QemuBlockJobSet;

/* A job changed state (or saw an error): job is borrowed. */
typedef void (*QemuBlockJobChangedFunc)(QemuBlockJobSet *set, QemuBlockJob *job, void *opaque);

/* A tracker on mon (a reference is taken); cb may be NULL. */
QemuBlockJobSet *qemu_block_job_set_new(QemuMonitor *mon, QemuBlockJobChangedFunc cb,
                                        void *opaque);
/* Unsubscribe and free; accepts NULL. */
void qemu_block_job_set_free(QemuBlockJobSet *set);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(QemuBlockJobSet, qemu_block_job_set_free)
/* Stop calling back (the events still update the jobs). */
void qemu_block_job_set_mute(QemuBlockJobSet *set);

/* Track a job before the command that starts it is sent (its events may
 * come before the reply). Returns the job (borrowed). */
QemuBlockJob *qemu_block_job_set_add(QemuBlockJobSet *set, const char *id, const char *device,
                                     const char *target);
/* Track a job that is already running in QEMU (after a daemon restart). */
QemuBlockJob *qemu_block_job_set_adopt(QemuBlockJobSet *set, const char *id,
                                       const char *device, const char *target);
guint qemu_block_job_set_count(const QemuBlockJobSet *set);
QemuBlockJob *qemu_block_job_set_get(const QemuBlockJobSet *set, guint i);
QemuBlockJob *qemu_block_job_set_find(const QemuBlockJobSet *set, const char *id);

/* The command starting job was answered: success marks it running (unless
 * an event got there first); err (not NULL) marks it failed, gone. */
void qemu_block_job_set_started(QemuBlockJobSet *set, QemuBlockJob *job, const char *err);
/* Progress from query-block-jobs (GPtrArray of QemuBlockJobInfo, borrowed):
 * len and offset of the jobs listed, moved_us where offset moved. A job
 * missing from the list is left as it is: its end comes as an event. */
void qemu_block_job_set_update(QemuBlockJobSet *set, GPtrArray *infos, gint64 now_us);

/* Whether the job still exists in QEMU (or may: its command is on its way). */
bool qemu_block_job_is_live(const QemuBlockJob *job);
/* Every job ready (and at least one job). */
bool qemu_block_job_set_all_ready(const QemuBlockJobSet *set);
/* No job live. */
bool qemu_block_job_set_all_gone(const QemuBlockJobSet *set);
/* The first job that failed or reported an error, or NULL. */
QemuBlockJob *qemu_block_job_set_first_error(const QemuBlockJobSet *set);
/* Sums over the jobs: total bytes and bytes copied. */
void qemu_block_job_set_totals(const QemuBlockJobSet *set, uint64_t *total,
                               uint64_t *processed);
