/*
 * Pieces the end-to-end migration tests share (testmigration.h).
 */
#define _GNU_SOURCE /* O_DIRECT */
#include "testmigration.h"

#include <fcntl.h>
#include <glib-unix.h>
#include <json-c/json.h>
#include <unistd.h>

#include "ho_error.h"
#include "ho_json.h"

/* ---- job events from a daemon ---- */

static void
job_event_cb(HoRpcConn *conn, const char *event, json_object *data, gint64 ts_us, void *opaque)
{
    TestJobWatch *w = opaque;
    const char *name = NULL;
    const char *what = NULL;
    json_object *inner = NULL;

    if (!g_str_equal(event, "domain.job") || !data)
        return;
    if (ho_json_get_string(data, "name", &name) < 0 || ho_json_get_string(data, "event", &what) < 0)
        g_error("a domain.job event without name or event: %s", json_object_to_json_string(data));
    if (!g_str_equal(name, w->name))
        return;
    if (g_str_equal(what, "phase")) {
        const char *phase = NULL;

        if (ho_json_get_object(data, "data", &inner) < 0 ||
            ho_json_get_string(inner, "phase", &phase) < 0)
            g_error("a phase event without its phase: %s", json_object_to_json_string(data));
        g_ptr_array_add(w->seen, g_strdup_printf("phase:%s", phase));
    } else if (g_str_equal(what, "progress")) {
        const char *phase = NULL;
        int64_t done = 0;

        /* The mirrors exist and have copied something: "mirror-copying",
         * once. */
        if (ho_json_opt_object(data, "data", &inner) > 0 &&
            ho_json_opt_string(inner, "phase", &phase) > 0 && g_str_equal(phase, "mirror") &&
            ho_json_opt_int64(inner, "disk_processed", &done) > 0 && done > 0 &&
            !test_job_watch_seen(w, "mirror-copying"))
            g_ptr_array_add(w->seen, g_strdup("mirror-copying"));
    } else {
        g_ptr_array_add(w->seen, g_strdup(what));
    }
}

HoRpcConn *
test_job_watch_open(TestDaemon *d, TestJobWatch *w, const char *name, const char *client)
{
    HoRpcConn *c =
        ho_rpc_conn_open_unix(d->socket_path, client, g_main_context_default(), 30000);
    json_object *res = NULL;

    if (!c)
        g_error("cannot connect to '%s': %s", d->socket_path, ho_error_last_message());
    w->name = name;
    w->seen = g_ptr_array_new_with_free_func(g_free);
    ho_rpc_conn_set_callbacks(c, job_event_cb, NULL, w);
    if (ho_rpc_conn_call_sync(c, "events.subscribe", NULL, &res, 30000) < 0)
        g_error("events.subscribe: %s", ho_error_last_message());
    json_object_put(res);
    return c;
}

static gboolean
on_cli_exit(gint fd, GIOCondition cond, gpointer opaque)
{
    TestJobWatch *w = opaque;

    w->cli_exited = true;
    return G_SOURCE_REMOVE;
}

static gboolean
on_watch_timeout(gpointer opaque)
{
    TestJobWatch *w = opaque;

    w->timed_out = true;
    return G_SOURCE_REMOVE;
}

bool
test_job_watch_seen(const TestJobWatch *w, const char *item)
{
    guint i;

    for (i = 0; i < w->seen->len; i++) {
        if (g_str_equal(g_ptr_array_index(w->seen, i), item))
            return true;
    }
    return false;
}

char *
test_job_watch_seen_text(const TestJobWatch *w)
{
    GString *s = g_string_new(NULL);
    guint i;

    /* (g_ptr_array_copy() would share the elements' free function.) */
    for (i = 0; i < w->seen->len; i++)
        g_string_append_printf(s, "%s%s", i ? ", " : "", (char *)g_ptr_array_index(w->seen, i));
    return g_string_free(s, FALSE);
}

void
test_job_watch_wait(TestJobWatch *w, TestCliJob *job, const char *item, guint timeout_ms)
{
    guint fd_id, timer_id;

    w->cli_exited = false;
    w->timed_out = false;
    fd_id = g_unix_fd_add(test_cli_job_pidfd(job), G_IO_IN, on_cli_exit, w);
    timer_id = g_timeout_add(timeout_ms, on_watch_timeout, w);
    while ((!item || !test_job_watch_seen(w, item)) && !w->cli_exited && !w->timed_out)
        g_main_context_iteration(NULL, TRUE);
    if (!w->cli_exited)
        g_source_remove(fd_id);
    if (!w->timed_out)
        g_source_remove(timer_id);
    if (!item) {
        if (!w->cli_exited)
            g_error("'handover migrate' did not end in %u ms", timeout_ms);
        return;
    }
    if (!test_job_watch_seen(w, item)) {
        g_autofree char *seen = test_job_watch_seen_text(w);
        g_auto(TestCliResult) r = {0};

        if (w->cli_exited && test_cli_job_wait(job, 0, &r))
            g_error("'handover migrate' ended (%d) before the job event '%s' (seen: %s)\n"
                    "stdout:\n%s\nstderr:\n%s",
                    r.status, item, seen, r.out, r.err);
        g_error("no job event '%s' in %u ms (seen: %s)", item, timeout_ms, seen);
    }
}

void
test_job_watch_sync(HoRpcConn *c, const char *name)
{
    json_object *params = json_object_new_object();
    json_object *res = NULL;

    ho_json_add_string(params, "name", name);
    if (ho_rpc_conn_call_sync(c, "domain.info", params, &res, 30000) < 0)
        g_error("domain.info: %s", ho_error_last_message());
    json_object_put(res);
}

void
test_job_watch_clear(TestJobWatch *w)
{
    g_clear_pointer(&w->seen, g_ptr_array_unref);
}

/* ---- storage ---- */

bool
test_path_takes_odirect(const char *path)
{
    int fd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);

    if (fd < 0)
        return false;
    close(fd);
    return true;
}

char *
test_shared_disk_new(const char *dir, guint mib, bool *unsafe)
{
    char *disk = g_build_filename(dir, "disk.raw", NULL);
    int fd = open(disk, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, (off_t)mib * 1024 * 1024), ==, 0);
    close(fd);
    *unsafe = !test_path_takes_odirect(disk);
    if (*unsafe)
        g_test_message("'%s' does not take O_DIRECT: default cache and --unsafe", dir);
    return disk;
}
