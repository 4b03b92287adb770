/*
 * The flight-recording checks of tests/recording.c on synthetic
 * recordings: a checker that cannot fail proves nothing, so each way of
 * breaking invariant 1 (DESIGN.md §2) is shown to be caught, and the pause
 * to be measured from the right events.
 */
#include <glib.h>
#include <string.h>

#include "recording.h"
#include "testutils.h"

/* A recording from "ts kind [status]" items separated by ';'. Other lines
 * a real recorder writes (commands, replies, marks, probes, other events)
 * are mixed in to show they are ignored. */
static char *
write_recording(const char *dir, const char *file, const char *side, const char *spec)
{
    g_autofree char *path = g_build_filename(dir, file, NULL);
    g_auto(GStrv) items = g_strsplit(spec, ";", -1);
    GString *text = g_string_new(NULL);
    guint i;

    g_string_append_printf(text, "{\"ts\":1,\"side\":\"%s\",\"dir\":\"open\"}\n", side);
    g_string_append(text, "{\"ts\":2,\"side\":\"probe\",\"dir\":\"recv\",\"msg\":"
                          "{\"event\":\"RESUME\",\"timestamp\":{}}}\n");
    for (i = 0; items[i]; i++) {
        g_auto(GStrv) f = g_strsplit(g_strstrip(items[i]), " ", 3);

        if (!f[0] || !*f[0])
            continue;
        g_assert_nonnull(f[1]);
        g_string_append_printf(text,
                               "{\"ts\":%s,\"side\":\"%s\",\"dir\":\"send\",\"msg\":"
                               "{\"execute\":\"query-status\",\"id\":%u}}\n",
                               f[0], side, i);
        if (g_str_equal(f[1], "CONTINUE"))
            g_string_append_printf(text,
                                   "{\"ts\":%s,\"side\":\"%s\",\"dir\":\"send\",\"msg\":"
                                   "{\"execute\":\"migrate-continue\",\"arguments\":"
                                   "{\"state\":\"pre-switchover\"},\"id\":%u}}\n",
                                   f[0], side, 100 + i);
        else if (g_str_equal(f[1], "MIGRATION"))
            g_string_append_printf(text,
                                   "{\"ts\":%s,\"side\":\"%s\",\"dir\":\"recv\",\"msg\":"
                                   "{\"event\":\"MIGRATION\",\"data\":{\"status\":\"%s\"}}}\n",
                                   f[0], side, f[2]);
        else
            g_string_append_printf(text,
                                   "{\"ts\":%s,\"side\":\"%s\",\"dir\":\"recv\",\"msg\":"
                                   "{\"event\":\"%s\",\"timestamp\":{}}}\n",
                                   f[0], side, f[1]);
    }
    g_string_append_printf(text, "{\"ts\":99999,\"side\":\"%s\",\"dir\":\"close\","
                                 "\"reason\":\"end\"}\n",
                           side);
    g_assert_true(g_file_set_contents(path, text->str, -1, NULL));
    g_string_free(text, TRUE);
    return g_steal_pointer(&path);
}

typedef struct {
    const char *name;
    const char *src;
    const char *dst;
    gint64 since;
    bool handover;     /* check_handover's verdict */
    gint64 pause;      /* when it holds */
    const char *why;   /* in the reason when it does not */
    bool no_handover;  /* check_no_handover's verdict */
} RecCase;

static const RecCase cases[] = {
    {.name = "clean",
     .src = "10 RESUME; 100 MIGRATION active; 200 STOP; 210 MIGRATION pre-switchover; "
            "215 CONTINUE; 250 MIGRATION completed",
     .dst = "150 MIGRATION active; 260 MIGRATION completed; 270 RESUME",
     .handover = true,
     .pause = 70,
     .why = NULL,
     .no_handover = false},
    {.name = "two-writers-running",
     .src = "10 RESUME; 250 MIGRATION completed; 300 STOP",
     .dst = "270 RESUME",
     .why = "the source was running when the destination resumed"},
    {.name = "resume-before-completed",
     .src = "10 RESUME; 200 STOP; 280 MIGRATION completed",
     .dst = "270 RESUME",
     .why = "before the source reported completed"},
    {.name = "source-resumed-after",
     .src = "10 RESUME; 200 STOP; 250 MIGRATION completed; 300 RESUME",
     .dst = "270 RESUME",
     .why = "the source resumed after the destination"},
    {.name = "destination-never-ran",
     .src = "10 RESUME; 200 STOP; 250 MIGRATION completed",
     .dst = "150 MIGRATION active",
     .why = "the destination never resumed",
     .no_handover = false},
    {.name = "stop-before-this-migration",
     /* The source stopped long before (a suspend), not by the migration. */
     .src = "10 RESUME; 50 STOP; 250 MIGRATION completed",
     .dst = "270 RESUME",
     .since = 100,
     .why = "not stopped by the migration"},
    {.name = "older-destination-resume-ignored",
     /* The back migration: the old destination RESUME is before since. */
     .src = "10 RESUME; 200 STOP; 250 MIGRATION completed",
     .dst = "5 RESUME; 60 STOP; 270 RESUME",
     .since = 100,
     .handover = true,
     .pause = 70},
    {.name = "cancelled",
     .src = "10 RESUME; 100 MIGRATION active; 200 MIGRATION cancelling; 205 MIGRATION cancelled",
     .dst = "150 MIGRATION active",
     .why = "the destination never resumed",
     .no_handover = true},
    {.name = "cancelled-in-pre-switchover",
     .src = "10 RESUME; 200 STOP; 210 MIGRATION pre-switchover; 220 MIGRATION cancelling; "
            "223 RESUME; 225 MIGRATION cancelled",
     .dst = "150 MIGRATION active",
     .why = "the destination never resumed",
     .no_handover = true},
    {.name = "left-stopped",
     .src = "10 RESUME; 200 STOP; 225 MIGRATION failed",
     .dst = "",
     .why = "the destination never resumed",
     .no_handover = false},
};

static void
test_case(gconstpointer data)
{
    const RecCase *c = data;
    g_autofree char *dir = test_make_tmpdir("recording");
    g_autofree char *src_path = write_recording(dir, "src.rec", "vm", c->src);
    g_autofree char *dst_path = write_recording(dir, "dst.rec", "vm", c->dst);
    g_autoptr(TestRecording) src = test_recording_load(src_path, NULL);
    g_autoptr(TestRecording) dst = test_recording_load(dst_path, NULL);
    g_autofree char *why = NULL;
    g_autofree char *why2 = NULL;
    gint64 pause = -1;
    bool ok;

    ok = test_recording_check_handover(src, dst, c->since, &pause, &why);
    if (ok != c->handover)
        g_error("%s: check_handover said %d (%s)", c->name, ok, why ? why : "");
    if (ok)
        g_assert_cmpint(pause, ==, c->pause);
    else if (c->why && !strstr(why, c->why))
        g_error("%s: reason '%s' lacks '%s'", c->name, why, c->why);
    ok = test_recording_check_no_handover(src, dst, c->since, &why2);
    if (ok != c->no_handover)
        g_error("%s: check_no_handover said %d (%s)", c->name, ok, why2 ? why2 : "");
}

static void
test_load(void)
{
    g_autofree char *dir = test_make_tmpdir("recording");
    g_autofree char *path = write_recording(dir, "a.rec", "vm",
                                            "30 STOP; 10 RESUME; 20 MIGRATION setup; "
                                            "40 CONTINUE");
    g_autofree char *missing = g_build_filename(dir, "none.rec", NULL);
    g_autoptr(TestRecording) all = test_recording_load(path, NULL);
    g_autoptr(TestRecording) other = test_recording_load(path, "other");
    g_autoptr(TestRecording) none = test_recording_load(missing, NULL);
    g_autoptr(TestRecording) probe = test_recording_load(path, "probe");
    const RecEvent *ev;

    /* Sorted by time, probes left out, only STOP/RESUME/MIGRATION and
     * migrate-continue (not query-status). */
    g_assert_cmpuint(all->events->len, ==, 4);
    ev = test_recording_first(all, REC_EVENT_CONTINUE, NULL, 0);
    g_assert_nonnull(ev);
    g_assert_cmpint(ev->ts, ==, 40);
    ev = g_ptr_array_index(all->events, 0);
    g_assert_cmpint(ev->ts, ==, 10);
    g_assert_cmpint(ev->kind, ==, REC_EVENT_RESUME);
    ev = g_ptr_array_index(all->events, 1);
    g_assert_cmpint(ev->kind, ==, REC_EVENT_MIGRATION);
    g_assert_cmpstr(ev->status, ==, "setup");
    g_assert_cmpuint(test_recording_count(all, REC_EVENT_MIGRATION, "setup"), ==, 1);
    g_assert_cmpuint(test_recording_count(all, REC_EVENT_MIGRATION, "completed"), ==, 0);
    g_assert_nonnull(test_recording_first(all, REC_EVENT_STOP, NULL, 30));
    g_assert_null(test_recording_first(all, REC_EVENT_STOP, NULL, 31));
    ev = test_recording_last_run_state(all, 30);
    g_assert_nonnull(ev);
    g_assert_cmpint(ev->kind, ==, REC_EVENT_RESUME);
    g_assert_cmpuint(other->events->len, ==, 0);
    g_assert_cmpuint(none->events->len, ==, 0);
    g_assert_cmpuint(probe->events->len, ==, 1);
    /* Every line was read (marks and commands too). */
    g_assert_cmpuint(all->lines, ==, 2 + 4 * 2 + 1);
}

int
main(int argc, char **argv)
{
    gsize i;

    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/recording/load", test_load);
    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *path = g_strdup_printf("/recording/invariant1/%s", cases[i].name);

        g_test_add_data_func(path, &cases[i], test_case);
    }
    return g_test_run();
}
