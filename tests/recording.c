/*
 * Flight recordings read back in tests (recording.h).
 */
#include "recording.h"

#include <string.h>

#include "ho_error.h"
#include "ho_json.h"

static const char *const kind_names[REC_EVENT_LAST] = {"STOP", "RESUME", "MIGRATION",
                                                        "migrate-continue"};
G_STATIC_ASSERT(G_N_ELEMENTS(kind_names) == REC_EVENT_LAST);

static void
rec_event_free(gpointer p)
{
    RecEvent *ev = p;

    g_free(ev->side);
    g_free(ev->status);
    g_free(ev);
}

/* The event a recorder line carries, or NULL when it carries none we keep. */
static RecEvent *
rec_event_from_line(json_object *line, const char *want_side, const char *path, guint lineno)
{
    const char *dir = NULL;
    const char *side = NULL;
    const char *event = NULL;
    json_object *msg = NULL;
    int64_t ts = 0;
    RecEvent *ev;
    int k;

    if (ho_json_get_int64(line, "ts", &ts) < 0 || ho_json_get_string(line, "dir", &dir) < 0 ||
        ho_json_opt_string(line, "side", &side) < 0)
        g_error("%s:%u: not a recorder line: %s", path, lineno, ho_error_last_message());
    if (!g_str_equal(dir, "recv") && !g_str_equal(dir, "send"))
        return NULL;
    if (want_side ? g_strcmp0(side, want_side) != 0 : g_strcmp0(side, "probe") == 0)
        return NULL;
    if (!json_object_object_get_ex(line, "msg", &msg) || !json_object_is_type(msg, json_type_object))
        return NULL;
    if (g_str_equal(dir, "send")) {
        const char *execute = NULL;

        if (ho_json_opt_string(msg, "execute", &execute) < 0 || !execute ||
            !g_str_equal(execute, "migrate-continue"))
            return NULL;
        ev = g_new0(RecEvent, 1);
        ev->ts = ts;
        ev->kind = REC_EVENT_CONTINUE;
        ev->side = g_strdup(side);
        return ev;
    }
    if (ho_json_opt_string(msg, "event", &event) < 0 || !event)
        return NULL;
    for (k = 0; k < REC_EVENT_CONTINUE; k++) {
        if (g_str_equal(event, kind_names[k]))
            break;
    }
    if (k == REC_EVENT_CONTINUE)
        return NULL;
    ev = g_new0(RecEvent, 1);
    ev->ts = ts;
    ev->kind = (RecEventKind)k;
    ev->side = g_strdup(side);
    if (ev->kind == REC_EVENT_MIGRATION) {
        json_object *data = NULL;
        const char *status = NULL;

        if (ho_json_get_object(msg, "data", &data) < 0 ||
            ho_json_get_string(data, "status", &status) < 0)
            g_error("%s:%u: MIGRATION event without a status: %s", path, lineno,
                    ho_error_last_message());
        ev->status = g_strdup(status);
    }
    return ev;
}

static gint
rec_event_cmp(gconstpointer a, gconstpointer b)
{
    const RecEvent *x = *(const RecEvent *const *)a;
    const RecEvent *y = *(const RecEvent *const *)b;

    return x->ts < y->ts ? -1 : x->ts > y->ts;
}

TestRecording *
test_recording_load(const char *path, const char *side)
{
    TestRecording *rec = g_new0(TestRecording, 1);
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;
    guint i;

    rec->path = g_strdup(path);
    rec->events = g_ptr_array_new_with_free_func(rec_event_free);
    if (!g_file_get_contents(path, &text, NULL, NULL))
        return rec;
    lines = g_strsplit(text, "\n", -1);
    for (i = 0; lines[i]; i++) {
        g_autoptr(json_object) line = NULL;
        RecEvent *ev;

        if (!*lines[i])
            continue;
        line = ho_json_parse(lines[i], strlen(lines[i]));
        if (!line || !json_object_is_type(line, json_type_object))
            g_error("%s:%u: not JSON: %.200s", path, i + 1, lines[i]);
        rec->lines++;
        ev = rec_event_from_line(line, side, path, i + 1);
        if (ev)
            g_ptr_array_add(rec->events, ev);
    }
    /* Lines of several monitors interleave in write order; order by time. */
    g_ptr_array_sort(rec->events, rec_event_cmp);
    return rec;
}

void
test_recording_free(TestRecording *rec)
{
    if (!rec)
        return;
    g_free(rec->path);
    g_ptr_array_unref(rec->events);
    g_free(rec);
}

static bool
rec_event_matches(const RecEvent *ev, RecEventKind kind, const char *status)
{
    return ev->kind == kind && (!status || g_strcmp0(ev->status, status) == 0);
}

guint
test_recording_count(const TestRecording *rec, RecEventKind kind, const char *status)
{
    guint i, n = 0;

    for (i = 0; i < rec->events->len; i++) {
        if (rec_event_matches(g_ptr_array_index(rec->events, i), kind, status))
            n++;
    }
    return n;
}

const RecEvent *
test_recording_first(const TestRecording *rec, RecEventKind kind, const char *status,
                     gint64 after_ts)
{
    guint i;

    for (i = 0; i < rec->events->len; i++) {
        const RecEvent *ev = g_ptr_array_index(rec->events, i);

        if (ev->ts >= after_ts && rec_event_matches(ev, kind, status))
            return ev;
    }
    return NULL;
}

const RecEvent *
test_recording_last_run_state(const TestRecording *rec, gint64 before_ts)
{
    const RecEvent *last = NULL;
    guint i;

    for (i = 0; i < rec->events->len; i++) {
        const RecEvent *ev = g_ptr_array_index(rec->events, i);

        if (ev->ts >= before_ts)
            break;
        if (ev->kind == REC_EVENT_STOP || ev->kind == REC_EVENT_RESUME)
            last = ev;
    }
    return last;
}

char *
test_recording_describe(const TestRecording *rec)
{
    GString *s = g_string_new(NULL);
    guint i;

    g_string_append_printf(s, "%s (%u lines):\n", rec->path, rec->lines);
    for (i = 0; i < rec->events->len; i++) {
        const RecEvent *ev = g_ptr_array_index(rec->events, i);

        g_string_append_printf(s, "  %" G_GINT64_FORMAT " %s %s%s%s\n", ev->ts,
                               ev->side ? ev->side : "-", kind_names[ev->kind],
                               ev->status ? " " : "", ev->status ? ev->status : "");
    }
    return g_string_free(s, FALSE);
}

static bool
fail_with(char **why, const TestRecording *src, const TestRecording *dst, const char *what)
{
    g_autofree char *s = test_recording_describe(src);
    g_autofree char *d = test_recording_describe(dst);

    *why = g_strdup_printf("%s\nsource %sdestination %s", what, s, d);
    return false;
}

bool
test_recording_check_handover(const TestRecording *src, const TestRecording *dst,
                              gint64 since_us, gint64 *pause_us, char **why)
{
    const RecEvent *resume = test_recording_first(dst, REC_EVENT_RESUME, NULL, since_us);
    const RecEvent *stop;
    const RecEvent *completed;
    const RecEvent *late;

    if (!resume)
        return fail_with(why, src, dst, "the destination never resumed");
    stop = test_recording_last_run_state(src, resume->ts);
    if (!stop)
        return fail_with(why, src, dst, "the source never ran before the destination resumed");
    if (stop->ts < since_us)
        return fail_with(why, src, dst, "the source was not stopped by the migration");
    if (stop->kind != REC_EVENT_STOP)
        return fail_with(why, src, dst,
                         "two writers: the source was running when the destination resumed");
    completed = test_recording_first(src, REC_EVENT_MIGRATION, "completed", since_us);
    if (!completed || completed->ts >= resume->ts)
        return fail_with(why, src, dst,
                         "the destination resumed before the source reported completed");
    late = test_recording_first(src, REC_EVENT_RESUME, NULL, resume->ts);
    if (late)
        return fail_with(why, src, dst, "two writers: the source resumed after the destination");
    *pause_us = resume->ts - stop->ts;
    return true;
}

bool
test_recording_check_no_handover(const TestRecording *src, const TestRecording *dst,
                                 gint64 since_us, char **why)
{
    const RecEvent *last;

    if (test_recording_first(dst, REC_EVENT_RESUME, NULL, since_us))
        return fail_with(why, src, dst, "the destination resumed");
    last = test_recording_last_run_state(src, G_MAXINT64);
    if (last && last->kind != REC_EVENT_RESUME)
        return fail_with(why, src, dst, "the source is left stopped");
    return true;
}

guint
test_recording_count_done(const char *path, const char *side, gint64 since_us,
                          const char *execute, const char *key, const char *value)
{
    g_autoptr(GPtrArray) done =
        test_recording_done_args(path, side, since_us, execute, key, value);

    return done->len;
}

static void
recording_json_put(gpointer obj)
{
    json_object_put(obj);
}

GPtrArray *
test_recording_done_args(const char *path, const char *side, gint64 since_us,
                         const char *execute, const char *key, const char *value)
{
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;
    /* "side\nid" of the matching commands sent, not yet answered: their
     * arguments */
    g_autoptr(GHashTable) pending =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, recording_json_put);
    GPtrArray *done = g_ptr_array_new_with_free_func(recording_json_put);
    guint i;

    if (!g_file_get_contents(path, &text, NULL, NULL))
        return done;
    lines = g_strsplit(text, "\n", -1);
    for (i = 0; lines[i]; i++) {
        g_autoptr(json_object) line = NULL;
        g_autofree char *tag = NULL;
        const char *dir = NULL;
        const char *line_side = NULL;
        const char *cmd = NULL;
        const char *got = NULL;
        const char *id = NULL;
        json_object *msg = NULL;
        json_object *args = NULL;
        int64_t ts = 0;

        if (!*lines[i])
            continue;
        line = ho_json_parse(lines[i], strlen(lines[i]));
        if (!line || !json_object_is_type(line, json_type_object))
            g_error("%s:%u: not JSON: %.200s", path, i + 1, lines[i]);
        if (ho_json_get_int64(line, "ts", &ts) < 0 || ho_json_get_string(line, "dir", &dir) < 0 ||
            ho_json_opt_string(line, "side", &line_side) < 0)
            g_error("%s:%u: not a recorder line: %s", path, i + 1, ho_error_last_message());
        if (ts < since_us || (!g_str_equal(dir, "send") && !g_str_equal(dir, "recv")))
            continue;
        if (side ? g_strcmp0(line_side, side) != 0 : g_strcmp0(line_side, "probe") == 0)
            continue;
        if (!json_object_object_get_ex(line, "msg", &msg) ||
            !json_object_is_type(msg, json_type_object) || ho_json_opt_string(msg, "id", &id) < 0 ||
            !id)
            continue;
        tag = g_strdup_printf("%s\n%s", line_side ? line_side : "", id);
        if (g_str_equal(dir, "recv")) {
            g_autofree char *sent_tag = NULL;
            gpointer sent_args = NULL;

            if (g_hash_table_steal_extended(pending, tag, (gpointer *)&sent_tag, &sent_args)) {
                if (json_object_object_get_ex(msg, "return", NULL))
                    g_ptr_array_add(done, sent_args);
                else
                    json_object_put(sent_args);
            }
            continue;
        }
        if (ho_json_opt_string(msg, "execute", &cmd) < 0 || g_strcmp0(cmd, execute) != 0)
            continue;
        if (key) {
            if (!json_object_object_get_ex(msg, "arguments", &args) ||
                !json_object_is_type(args, json_type_object) ||
                ho_json_opt_string(args, key, &got) < 0 || g_strcmp0(got, value) != 0)
                continue;
        }
        if (!json_object_object_get_ex(msg, "arguments", &args) ||
            !json_object_is_type(args, json_type_object))
            args = NULL;
        g_hash_table_insert(pending, g_steal_pointer(&tag),
                            args ? json_object_get(args) : json_object_new_object());
    }
    return done;
}
