/*
 * Block jobs and their events. See qemu_blockjob.h.
 */
#define HO_LOG_MODULE "qemu.blockjob"

#include "qemu_blockjob.h"

#include "ho_json.h"
#include "ho_log.h"
#include "qemu_monitor_json.h"

static const char *const state_names[] = {
    [QEMU_BLOCK_JOB_STATE_NEW] = "new",
    [QEMU_BLOCK_JOB_STATE_RUNNING] = "running",
    [QEMU_BLOCK_JOB_STATE_READY] = "ready",
    [QEMU_BLOCK_JOB_STATE_COMPLETED] = "completed",
    [QEMU_BLOCK_JOB_STATE_CANCELLED] = "cancelled",
    [QEMU_BLOCK_JOB_STATE_FAILED] = "failed",
};
G_STATIC_ASSERT(G_N_ELEMENTS(state_names) == QEMU_BLOCK_JOB_STATE_LAST);

/* The events the tracker listens to. */
static const char *const event_names[] = {
    "BLOCK_JOB_READY", "BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED", "BLOCK_JOB_ERROR",
    "JOB_STATUS_CHANGE",
};

struct _QemuBlockJobSet {
    QemuMonitor *mon;
    guint subs[G_N_ELEMENTS(event_names)];
    GPtrArray *jobs; /* QemuBlockJob */
    QemuBlockJobChangedFunc cb;
    void *opaque;
};

const char *
qemu_block_job_state_to_string(QemuBlockJobState state)
{
    if ((int)state < 0 || state >= QEMU_BLOCK_JOB_STATE_LAST)
        return "unknown";
    return state_names[state];
}

static void
block_job_free(QemuBlockJob *job)
{
    if (!job)
        return;
    g_free(job->id);
    g_free(job->device);
    g_free(job->target);
    g_free(job->error);
    g_free(job);
}

bool
qemu_block_job_is_live(const QemuBlockJob *job)
{
    return job->state == QEMU_BLOCK_JOB_STATE_NEW || job->state == QEMU_BLOCK_JOB_STATE_RUNNING ||
           job->state == QEMU_BLOCK_JOB_STATE_READY;
}

/* Move job to state (a gone job stays gone) and tell the owner. */
static void
job_set_state(QemuBlockJobSet *set, QemuBlockJob *job, QemuBlockJobState state)
{
    if (!qemu_block_job_is_live(job) || job->state == state)
        return;
    HO_DEBUG("block job '%s': %s -> %s", job->id, state_names[job->state], state_names[state]);
    job->state = state;
    if (set->cb)
        set->cb(set, job, set->opaque);
}

static void
job_keep_error(QemuBlockJob *job, const char *msg)
{
    if (!job->error)
        job->error = g_strdup(msg);
}

static void
event_numbers(QemuBlockJob *job, json_object *data)
{
    uint64_t v;

    if (ho_json_opt_uint64(data, "len", &v) > 0)
        job->len = v;
    if (ho_json_opt_uint64(data, "offset", &v) > 0) {
        if (v != job->offset)
            job->moved_us = ho_time_now_us();
        job->offset = v;
    }
    ho_error_reset();
}

static void
on_event(QemuMonitor *mon, const char *name, json_object *data, gint64 qemu_ts_us,
         gint64 recv_ts_us, void *opaque)
{
    QemuBlockJobSet *set = opaque;
    const char *id = NULL;
    QemuBlockJob *job;

    if (!data)
        return;
    if (g_str_equal(name, "JOB_STATUS_CHANGE")) {
        const char *status = NULL;
        QemuJobStatus st;

        if (ho_json_get_string(data, "id", &id) < 0 ||
            ho_json_get_string(data, "status", &status) < 0) {
            ho_error_reset();
            return;
        }
        if (!(job = qemu_block_job_set_find(set, id)))
            return;
        st = qemu_job_status_from_string(status);
        /* The BLOCK_JOB_* events say how a job ended; "null" (dismissed)
         * only backs them up. */
        if (st == QEMU_JOB_STATUS_RUNNING && job->state == QEMU_BLOCK_JOB_STATE_NEW)
            job_set_state(set, job, QEMU_BLOCK_JOB_STATE_RUNNING);
        else if (st == QEMU_JOB_STATUS_READY)
            job_set_state(set, job, QEMU_BLOCK_JOB_STATE_READY);
        else if (st == QEMU_JOB_STATUS_NULL)
            job_set_state(set, job, job->error ? QEMU_BLOCK_JOB_STATE_FAILED
                                               : QEMU_BLOCK_JOB_STATE_COMPLETED);
        return;
    }
    if (ho_json_get_string(data, "device", &id) < 0) {
        ho_error_reset();
        return;
    }
    if (!(job = qemu_block_job_set_find(set, id)))
        return;
    event_numbers(job, data);
    if (g_str_equal(name, "BLOCK_JOB_READY")) {
        job_set_state(set, job, QEMU_BLOCK_JOB_STATE_READY);
    } else if (g_str_equal(name, "BLOCK_JOB_COMPLETED")) {
        const char *err = NULL;

        if (ho_json_opt_string(data, "error", &err) < 0)
            ho_error_reset();
        if (err) {
            job_keep_error(job, err);
            job_set_state(set, job, QEMU_BLOCK_JOB_STATE_FAILED);
        } else {
            job_set_state(set, job, QEMU_BLOCK_JOB_STATE_COMPLETED);
        }
    } else if (g_str_equal(name, "BLOCK_JOB_CANCELLED")) {
        job_set_state(set, job, QEMU_BLOCK_JOB_STATE_CANCELLED);
    } else if (g_str_equal(name, "BLOCK_JOB_ERROR")) {
        const char *op = NULL, *action = NULL;
        g_autofree char *msg = NULL;

        if (ho_json_opt_string(data, "operation", &op) < 0 ||
            ho_json_opt_string(data, "action", &action) < 0)
            ho_error_reset();
        msg = g_strdup_printf("%s error (action %s)", op ? op : "I/O", action ? action : "?");
        HO_WARN("block job '%s': %s", job->id, msg);
        job_keep_error(job, msg);
        /* The job ends (report) or stops (stop); either way the owner
         * hears of it now, the end comes as BLOCK_JOB_COMPLETED. */
        if (set->cb && qemu_block_job_is_live(job))
            set->cb(set, job, set->opaque);
    }
}

QemuBlockJobSet *
qemu_block_job_set_new(QemuMonitor *mon, QemuBlockJobChangedFunc cb, void *opaque)
{
    QemuBlockJobSet *set = g_new0(QemuBlockJobSet, 1);

    set->mon = qemu_monitor_ref(mon);
    set->jobs = g_ptr_array_new_with_free_func((GDestroyNotify)block_job_free);
    set->cb = cb;
    set->opaque = opaque;
    for (size_t i = 0; i < G_N_ELEMENTS(event_names); i++)
        set->subs[i] = qemu_monitor_subscribe(mon, event_names[i], on_event, set);
    return set;
}

void
qemu_block_job_set_free(QemuBlockJobSet *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < G_N_ELEMENTS(event_names); i++) {
        if (set->subs[i])
            qemu_monitor_unsubscribe(set->mon, set->subs[i]);
    }
    qemu_monitor_unref(set->mon);
    g_ptr_array_unref(set->jobs);
    g_free(set);
}

void
qemu_block_job_set_mute(QemuBlockJobSet *set)
{
    set->cb = NULL;
    set->opaque = NULL;
}

QemuBlockJob *
qemu_block_job_set_add(QemuBlockJobSet *set, const char *id, const char *device,
                       const char *target)
{
    QemuBlockJob *job = g_new0(QemuBlockJob, 1);

    job->id = g_strdup(id);
    job->device = g_strdup(device);
    job->target = g_strdup(target);
    job->state = QEMU_BLOCK_JOB_STATE_NEW;
    job->moved_us = ho_time_now_us();
    g_ptr_array_add(set->jobs, job);
    return job;
}

QemuBlockJob *
qemu_block_job_set_adopt(QemuBlockJobSet *set, const char *id, const char *device,
                         const char *target)
{
    QemuBlockJob *job = qemu_block_job_set_add(set, id, device, target);

    job->state = QEMU_BLOCK_JOB_STATE_RUNNING;
    return job;
}

guint
qemu_block_job_set_count(const QemuBlockJobSet *set)
{
    return set->jobs->len;
}

QemuBlockJob *
qemu_block_job_set_get(const QemuBlockJobSet *set, guint i)
{
    return i < set->jobs->len ? g_ptr_array_index(set->jobs, i) : NULL;
}

QemuBlockJob *
qemu_block_job_set_find(const QemuBlockJobSet *set, const char *id)
{
    for (guint i = 0; id && i < set->jobs->len; i++) {
        QemuBlockJob *job = g_ptr_array_index(set->jobs, i);

        if (g_str_equal(job->id, id))
            return job;
    }
    return NULL;
}

void
qemu_block_job_set_started(QemuBlockJobSet *set, QemuBlockJob *job, const char *err)
{
    if (err) {
        job_keep_error(job, err);
        job_set_state(set, job, QEMU_BLOCK_JOB_STATE_FAILED);
        return;
    }
    if (job->state == QEMU_BLOCK_JOB_STATE_NEW)
        job_set_state(set, job, QEMU_BLOCK_JOB_STATE_RUNNING);
}

void
qemu_block_job_set_update(QemuBlockJobSet *set, GPtrArray *infos, gint64 now_us)
{
    for (guint i = 0; infos && i < infos->len; i++) {
        const QemuBlockJobInfo *info = g_ptr_array_index(infos, i);
        QemuBlockJob *job = qemu_block_job_set_find(set, info->device);

        if (!job || !qemu_block_job_is_live(job))
            continue;
        if (info->offset != job->offset)
            job->moved_us = now_us;
        job->offset = info->offset;
        job->len = info->len;
    }
}

bool
qemu_block_job_set_all_ready(const QemuBlockJobSet *set)
{
    for (guint i = 0; i < set->jobs->len; i++) {
        const QemuBlockJob *job = g_ptr_array_index(set->jobs, i);

        if (job->state != QEMU_BLOCK_JOB_STATE_READY)
            return false;
    }
    return set->jobs->len > 0;
}

bool
qemu_block_job_set_all_gone(const QemuBlockJobSet *set)
{
    for (guint i = 0; i < set->jobs->len; i++) {
        if (qemu_block_job_is_live(g_ptr_array_index(set->jobs, i)))
            return false;
    }
    return true;
}

QemuBlockJob *
qemu_block_job_set_first_error(const QemuBlockJobSet *set)
{
    for (guint i = 0; i < set->jobs->len; i++) {
        QemuBlockJob *job = g_ptr_array_index(set->jobs, i);

        if (job->error || job->state == QEMU_BLOCK_JOB_STATE_FAILED)
            return job;
    }
    return NULL;
}

void
qemu_block_job_set_totals(const QemuBlockJobSet *set, uint64_t *total, uint64_t *processed)
{
    uint64_t t = 0, p = 0;

    for (guint i = 0; i < set->jobs->len; i++) {
        const QemuBlockJob *job = g_ptr_array_index(set->jobs, i);

        t += job->len;
        p += MIN(job->offset, job->len);
    }
    *total = t;
    *processed = p;
}
