/* Tests for src/util/ho_log: levels, filters, output, line format. */
#define HO_LOG_MODULE "test.log"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <glib.h>

#include "ho_error.h"
#include "ho_file.h"
#include "ho_log.h"
#include "testutils.h"

/* Back to the defaults, so tests do not depend on each other. */
static void
log_defaults(void)
{
    g_assert_cmpint(ho_log_set_output(NULL), ==, 0);
    ho_log_set_level(HO_LOG_WARN);
    g_assert_cmpint(ho_log_set_filters(NULL), ==, 0);
    ho_error_reset();
}

static char *
read_text(const char *path)
{
    char *data = NULL;

    if (ho_file_read_all(path, 1 << 20, &data, NULL) < 0)
        g_error("%s", ho_error_last_message());
    return data;
}

static void
test_level_names(void)
{
    HoLogLevel level = HO_LOG_ERROR;

    g_assert_cmpstr(ho_log_level_name(HO_LOG_DEBUG), ==, "debug");
    g_assert_cmpstr(ho_log_level_name(HO_LOG_INFO), ==, "info");
    g_assert_cmpstr(ho_log_level_name(HO_LOG_WARN), ==, "warn");
    g_assert_cmpstr(ho_log_level_name(HO_LOG_ERROR), ==, "error");
    g_assert_cmpstr(ho_log_level_name(HO_LOG_LAST), ==, "unknown");

    g_assert_cmpint(ho_log_level_parse("debug", &level), ==, 0);
    g_assert_cmpint(level, ==, HO_LOG_DEBUG);
    g_assert_cmpint(ho_log_level_parse("INFO", &level), ==, 0);
    g_assert_cmpint(level, ==, HO_LOG_INFO);
    g_assert_cmpint(ho_log_level_parse("warning", &level), ==, 0);
    g_assert_cmpint(level, ==, HO_LOG_WARN);
    g_assert_cmpint(ho_log_level_parse("error", &level), ==, 0);
    g_assert_cmpint(level, ==, HO_LOG_ERROR);

    ho_error_reset();
    g_assert_cmpint(ho_log_level_parse("loud", &level), ==, -1);
    g_assert_cmpint(level, ==, HO_LOG_ERROR); /* untouched */
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_INVALID_ARG);
    g_assert_cmpstr(ho_error_last_message(), ==, "unknown log level 'loud'");
    g_assert_cmpint(ho_log_level_parse("", &level), ==, -1);
    g_assert_cmpint(ho_log_level_parse(NULL, &level), ==, -1);
    ho_error_reset();
}

static void
test_default_level(void)
{
    log_defaults();
    g_assert_false(ho_log_enabled(HO_LOG_DEBUG, "qemu"));
    g_assert_false(ho_log_enabled(HO_LOG_INFO, "qemu"));
    g_assert_true(ho_log_enabled(HO_LOG_WARN, "qemu"));
    g_assert_true(ho_log_enabled(HO_LOG_ERROR, "qemu"));

    ho_log_set_level(HO_LOG_DEBUG);
    g_assert_true(ho_log_enabled(HO_LOG_DEBUG, "anything"));
    ho_log_set_level(HO_LOG_ERROR);
    g_assert_false(ho_log_enabled(HO_LOG_WARN, "anything"));
    log_defaults();
}

static void
test_filters(void)
{
    log_defaults();

    g_assert_cmpint(ho_log_set_filters("qemu:debug, qemu.monitor.json:error"), ==, 0);
    g_assert_true(ho_log_enabled(HO_LOG_DEBUG, "qemu"));
    g_assert_true(ho_log_enabled(HO_LOG_DEBUG, "qemu.monitor"));
    g_assert_true(ho_log_enabled(HO_LOG_DEBUG, "qemu.process"));
    /* A prefix matches only at a '.': "qemux" is another module. */
    g_assert_false(ho_log_enabled(HO_LOG_DEBUG, "qemux"));
    g_assert_false(ho_log_enabled(HO_LOG_DEBUG, "qem"));
    g_assert_false(ho_log_enabled(HO_LOG_WARN, "qemu.monitor.json"));
    g_assert_true(ho_log_enabled(HO_LOG_ERROR, "qemu.monitor.json"));
    g_assert_true(ho_log_enabled(HO_LOG_DEBUG, "qemu.monitor.jsonx"));
    /* Unmatched modules use the default level. */
    g_assert_false(ho_log_enabled(HO_LOG_INFO, "util.json"));
    g_assert_true(ho_log_enabled(HO_LOG_WARN, "util.json"));

    /* The longest match wins, wherever it stands in the list. */
    g_assert_cmpint(ho_log_set_filters("qemu.monitor:error,qemu:debug"), ==, 0);
    g_assert_false(ho_log_enabled(HO_LOG_WARN, "qemu.monitor"));
    g_assert_false(ho_log_enabled(HO_LOG_WARN, "qemu.monitor.json"));
    g_assert_true(ho_log_enabled(HO_LOG_DEBUG, "qemu.process"));

    /* Of two equal matches, the later one wins. */
    g_assert_cmpint(ho_log_set_filters("util:debug,util:error"), ==, 0);
    g_assert_false(ho_log_enabled(HO_LOG_WARN, "util"));
    g_assert_cmpint(ho_log_set_filters("util:error,util:debug"), ==, 0);
    g_assert_true(ho_log_enabled(HO_LOG_DEBUG, "util"));

    /* Filters may lower the level below the default as well. */
    ho_log_set_level(HO_LOG_DEBUG);
    g_assert_cmpint(ho_log_set_filters("rpc:error"), ==, 0);
    g_assert_false(ho_log_enabled(HO_LOG_WARN, "rpc.server"));
    g_assert_true(ho_log_enabled(HO_LOG_DEBUG, "daemon"));

    /* An empty spec removes them. */
    g_assert_cmpint(ho_log_set_filters(""), ==, 0);
    g_assert_true(ho_log_enabled(HO_LOG_DEBUG, "rpc.server"));
    log_defaults();
}

static void
test_filters_malformed(void)
{
    static const struct {
        const char *spec;
        const char *message;
    } cases[] = {
        {"qemu", "invalid log filter 'qemu': expected 'module:level'"},
        {"qemu:debug,util", "invalid log filter 'util': expected 'module:level'"},
        {"qemu:loud", "invalid log filter 'qemu:loud': unknown level 'loud'"},
        {"qemu:", "invalid log filter 'qemu:': unknown level ''"},
        {":debug", "invalid log filter ':debug': bad module name"},
        {"a:b:c", "invalid log filter 'a:b:c': expected 'module:level'"},
        {"qe mu:debug", "invalid log filter 'qe mu:debug': bad module name"},
        {".qemu:debug", "invalid log filter '.qemu:debug': bad module name"},
    };
    size_t i;

    log_defaults();
    g_assert_cmpint(ho_log_set_filters("qemu:debug"), ==, 0);
    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        ho_error_reset();
        g_assert_cmpint(ho_log_set_filters(cases[i].spec), ==, -1);
        g_assert_nonnull(ho_error_last());
        g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_INVALID_ARG);
        g_assert_cmpstr(ho_error_last_message(), ==, cases[i].message);
        /* Nothing changed. */
        g_assert_true(ho_log_enabled(HO_LOG_DEBUG, "qemu.monitor"));
        g_assert_false(ho_log_enabled(HO_LOG_DEBUG, "util"));
    }
    /* Blank items are tolerated. */
    g_assert_cmpint(ho_log_set_filters("util:info,,"), ==, 0);
    g_assert_true(ho_log_enabled(HO_LOG_INFO, "util"));
    log_defaults();
}

/* Split a line "<ts> <level> <module> <func>:<line>: <message>". */
static void
check_line(const char *line, gint64 ts_min, gint64 ts_max, const char *level,
           const char *module, const char *func, int lineno, const char *message)
{
    g_autoptr(GRegex) re = g_regex_new("^([0-9]+) (\\S+) (\\S+) (\\S+):([0-9]+): (.*)$", 0, 0,
                                       NULL);
    g_autoptr(GMatchInfo) mi = NULL;
    g_autofree char *ts = NULL;
    g_autofree char *lv = NULL;
    g_autofree char *mod = NULL;
    g_autofree char *fn = NULL;
    g_autofree char *ln = NULL;
    g_autofree char *msg = NULL;

    if (!g_regex_match(re, line, 0, &mi))
        g_error("malformed log line: '%s'", line);
    ts = g_match_info_fetch(mi, 1);
    lv = g_match_info_fetch(mi, 2);
    mod = g_match_info_fetch(mi, 3);
    fn = g_match_info_fetch(mi, 4);
    ln = g_match_info_fetch(mi, 5);
    msg = g_match_info_fetch(mi, 6);
    g_assert_cmpint(g_ascii_strtoll(ts, NULL, 10), >=, ts_min);
    g_assert_cmpint(g_ascii_strtoll(ts, NULL, 10), <=, ts_max);
    g_assert_cmpstr(lv, ==, level);
    g_assert_cmpstr(mod, ==, module);
    g_assert_cmpstr(fn, ==, func);
    if (lineno > 0)
        g_assert_cmpint(atoi(ln), ==, lineno);
    g_assert_cmpstr(msg, ==, message);
}

static void
test_output_file(void)
{
    g_autofree char *dir = test_make_tmpdir("log");
    g_autofree char *path = g_build_filename(dir, "out.log", NULL);
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;
    gint64 before;
    gint64 after;
    int line_debug;
    int line_warn;

    log_defaults();
    /* Appends to what is there. */
    g_assert_cmpint(ho_file_write_atomic(path, "old line\n", 9, 0600), ==, 0);
    g_assert_cmpint(ho_log_set_output(path), ==, 0);
    ho_log_set_level(HO_LOG_INFO);

    before = ho_time_now_us();
    HO_DEBUG("filtered out %d", 1);
    HO_INFO("hello %s %d", "world", 42); line_debug = __LINE__;
    errno = EPIPE;
    HO_WARN("with trailing newline\n"); line_warn = __LINE__;
    g_assert_cmpint(errno, ==, EPIPE); /* logging keeps errno */
    ho_log_message(HO_LOG_ERROR, "other.module", "some_func", 7, "%s", "explicit");
    after = ho_time_now_us();

    text = read_text(path);
    lines = g_strsplit(text, "\n", -1);
    g_assert_cmpuint(g_strv_length(lines), ==, 5);
    g_assert_cmpstr(lines[0], ==, "old line");
    check_line(lines[1], before, after, "info", "test.log", "test_output_file", line_debug,
               "hello world 42");
    check_line(lines[2], before, after, "warn", "test.log", "test_output_file", line_warn,
               "with trailing newline");
    check_line(lines[3], before, after, "error", "other.module", "some_func", 7, "explicit");
    g_assert_cmpstr(lines[4], ==, ""); /* the text ends with a newline */

    log_defaults();
}

static void
test_output_bad_path(void)
{
    g_autofree char *dir = test_make_tmpdir("log");
    g_autofree char *good = g_build_filename(dir, "good.log", NULL);
    g_autofree char *bad = g_build_filename(dir, "missing", "bad.log", NULL);
    g_autofree char *expected = NULL;
    g_autofree char *text = NULL;

    log_defaults();
    g_assert_cmpint(ho_log_set_output(good), ==, 0);
    g_assert_cmpint(ho_log_set_output(bad), ==, -1);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_SYSTEM);
    expected = g_strdup_printf("cannot open log file '%s': %s", bad, g_strerror(ENOENT));
    g_assert_cmpstr(ho_error_last_message(), ==, expected);

    /* The old output is still in use. */
    HO_ERROR("still here");
    text = read_text(good);
    g_assert_nonnull(strstr(text, " error test.log test_output_bad_path:"));
    g_assert_true(g_str_has_suffix(text, ": still here\n"));
    log_defaults();
}

#define THREAD_LINES 300

static gpointer
log_thread(gpointer data)
{
    int id = GPOINTER_TO_INT(data);
    int i;

    for (i = 0; i < THREAD_LINES; i++)
        HO_WARN("thread %d line %d padding padding padding padding padding", id, i);
    return NULL;
}

/* Lines from several threads never interleave. */
static void
test_output_threads(void)
{
    g_autofree char *dir = test_make_tmpdir("log");
    g_autofree char *path = g_build_filename(dir, "threads.log", NULL);
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;
    GThread *threads[4];
    int counts[4] = {0};
    size_t i;

    log_defaults();
    g_assert_cmpint(ho_log_set_output(path), ==, 0);
    for (i = 0; i < G_N_ELEMENTS(threads); i++)
        threads[i] = g_thread_new("log", log_thread, GINT_TO_POINTER((int)i));
    for (i = 0; i < G_N_ELEMENTS(threads); i++)
        g_thread_join(threads[i]);

    text = read_text(path);
    lines = g_strsplit(text, "\n", -1);
    g_assert_cmpuint(g_strv_length(lines), ==, G_N_ELEMENTS(threads) * THREAD_LINES + 1);
    for (i = 0; lines[i][0]; i++) {
        const char *msg = strstr(lines[i], ": thread ");
        int id;
        int n;

        g_assert_nonnull(msg);
        g_assert_cmpint(sscanf(msg, ": thread %d line %d", &id, &n), ==, 2);
        g_assert_true(g_str_has_suffix(lines[i], "padding padding padding padding padding"));
        g_assert_cmpint(id, >=, 0);
        g_assert_cmpint(id, <, 4);
        /* In order within one thread. */
        g_assert_cmpint(n, ==, counts[id]);
        counts[id]++;
    }
    log_defaults();
}

static void
env_clear(void)
{
    g_unsetenv("HANDOVER_LOG_LEVEL");
    g_unsetenv("HANDOVER_LOG_FILTERS");
    g_unsetenv("HANDOVER_LOG_OUTPUT");
}

static void
test_init_env(void)
{
    g_autofree char *dir = test_make_tmpdir("log");
    g_autofree char *path = g_build_filename(dir, "env.log", NULL);
    g_autofree char *text = NULL;

    log_defaults();
    g_setenv("HANDOVER_LOG_LEVEL", "info", TRUE);
    g_setenv("HANDOVER_LOG_FILTERS", "qemu.monitor:debug", TRUE);
    g_setenv("HANDOVER_LOG_OUTPUT", path, TRUE);
    ho_log_init();
    g_assert_true(ho_log_enabled(HO_LOG_INFO, "util"));
    g_assert_false(ho_log_enabled(HO_LOG_DEBUG, "util"));
    g_assert_true(ho_log_enabled(HO_LOG_DEBUG, "qemu.monitor.json"));
    HO_INFO("to the env file");

    /* Calling it again is fine; unset variables keep the current values. */
    env_clear();
    ho_log_init();
    g_assert_true(ho_log_enabled(HO_LOG_INFO, "util"));
    g_assert_true(ho_log_enabled(HO_LOG_DEBUG, "qemu.monitor"));
    HO_INFO("still to the env file");

    text = read_text(path);
    g_assert_nonnull(strstr(text, ": to the env file\n"));
    g_assert_nonnull(strstr(text, ": still to the env file\n"));
    log_defaults();
    env_clear();
}

static void
test_init_env_malformed(void)
{
    g_autofree char *dir = test_make_tmpdir("log");
    g_autofree char *path = g_build_filename(dir, "env.log", NULL);
    g_autofree char *bad_out = g_build_filename(dir, "nodir", "x.log", NULL);
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;

    log_defaults();
    g_assert_cmpint(ho_log_set_output(path), ==, 0);
    ho_log_set_level(HO_LOG_ERROR);
    g_assert_cmpint(ho_log_set_filters("rpc:debug"), ==, 0);

    g_setenv("HANDOVER_LOG_LEVEL", "loud", TRUE);
    g_setenv("HANDOVER_LOG_FILTERS", "qemu:debug,util", TRUE);
    g_setenv("HANDOVER_LOG_OUTPUT", bad_out, TRUE);
    ho_log_init();

    /* Every setting kept, and the caller's error slot left alone. */
    g_assert_null(ho_error_last());
    g_assert_false(ho_log_enabled(HO_LOG_WARN, "util"));
    g_assert_true(ho_log_enabled(HO_LOG_DEBUG, "rpc"));
    g_assert_false(ho_log_enabled(HO_LOG_DEBUG, "qemu"));

    /* One warning line per bad variable, despite the level being error. */
    text = read_text(path);
    lines = g_strsplit(text, "\n", -1);
    g_assert_cmpuint(g_strv_length(lines), ==, 4);
    g_assert_nonnull(strstr(lines[0], " warn util.log ho_log_init:"));
    g_assert_nonnull(strstr(lines[0], "HANDOVER_LOG_OUTPUT"));
    g_assert_nonnull(strstr(lines[0], bad_out));
    g_assert_nonnull(strstr(lines[1], " warn util.log ho_log_init:"));
    g_assert_true(g_str_has_suffix(lines[1], ": ignoring HANDOVER_LOG_LEVEL='loud': "
                                             "unknown log level"));
    g_assert_true(g_str_has_suffix(lines[2],
                                   ": ignoring HANDOVER_LOG_FILTERS='qemu:debug,util': "
                                   "invalid log filter 'util': expected 'module:level'"));
    g_assert_cmpstr(lines[3], ==, "");
    log_defaults();
    env_clear();
}

static void
test_time(void)
{
    struct timespec ts;
    gint64 a;
    gint64 b;
    gint64 mono;

    a = ho_time_now_us();
    g_assert_cmpint(clock_gettime(CLOCK_MONOTONIC, &ts), ==, 0);
    b = ho_time_now_us();
    mono = (gint64)ts.tv_sec * G_USEC_PER_SEC + ts.tv_nsec / 1000;
    /* The same clock as CLOCK_MONOTONIC, which the flight recorder shares. */
    g_assert_cmpint(a, <=, b);
    g_assert_cmpint(mono, >=, a);
    g_assert_cmpint(mono, <=, b);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    env_clear();

    g_test_add_func("/log/level-names", test_level_names);
    g_test_add_func("/log/default-level", test_default_level);
    g_test_add_func("/log/filters", test_filters);
    g_test_add_func("/log/filters-malformed", test_filters_malformed);
    g_test_add_func("/log/output-file", test_output_file);
    g_test_add_func("/log/output-bad-path", test_output_bad_path);
    g_test_add_func("/log/output-threads", test_output_threads);
    g_test_add_func("/log/init-env", test_init_env);
    g_test_add_func("/log/init-env-malformed", test_init_env_malformed);
    g_test_add_func("/log/time", test_time);

    return g_test_run();
}
