/*
 * Tests for src/daemon/handoverd_conf: configuration files (data-file
 * pairs in tests/handoverdconfdata/: good-*.conf -> the effective
 * configuration, bad-*.conf -> the error), directory defaults, and the
 * host UUID kept in the state directory.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "handoverd_conf.h"
#include "ho_error.h"
#include "testutils.h"

#define UUID_A "4dea22b3-1d52-d8f3-2516-782e98ab3fa0"

static const HandoverdConfHost host_system = {true, "/run/user/0", "/root/.local/share"};
static const HandoverdConfHost host_user = {false, "/run/user/1000", "/home/u/.local/share"};

static char *
format_finished(HandoverdConf *conf, const char *root, const HandoverdConfHost *host)
{
    g_assert_cmpint(handoverd_conf_finish(conf, root, host), ==, 0);
    return handoverd_conf_format(conf);
}

/* One data file: good ones give the effective configuration (finished as
 * for root without --root), bad ones the error and no change at all. */
static void
test_data_file(gconstpointer data)
{
    const char *file = data;
    g_autofree char *path = g_build_filename("handoverdconfdata", file, NULL);
    g_autofree char *full = test_data_path(path);
    g_autofree char *base = g_strndup(full, strlen(full) - strlen(".conf"));
    g_autofree char *result_path = g_strconcat(base, ".result", NULL);
    g_autoptr(HandoverdConf) conf = handoverd_conf_new();
    g_autofree char *before = handoverd_conf_format(conf);
    g_autofree char *text = NULL;
    g_autofree char *actual = NULL;
    gsize len = 0;
    int rc;

    g_assert_true(g_file_get_contents(full, &text, &len, NULL));
    /* The bare name keeps the expected messages independent of the tree. */
    rc = handoverd_conf_load_data(conf, text, len, file);
    if (g_str_has_prefix(file, "good-")) {
        if (rc < 0)
            g_error("%s: %s", file, ho_error_last_message());
        actual = format_finished(conf, NULL, &host_system);
    } else {
        g_autofree char *after = handoverd_conf_format(conf);

        g_assert_true(g_str_has_prefix(file, "bad-"));
        g_assert_cmpint(rc, ==, -1);
        g_assert_nonnull(ho_error_last());
        g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_INVALID_ARG);
        /* Every message names the file. */
        g_assert_nonnull(strstr(ho_error_last()->message, file));
        g_assert_cmpstr(after, ==, before);
        actual = g_strdup_printf("error %s: %s\n", ho_error_code_name(ho_error_last()->code),
                                 ho_error_last()->message);
    }
    g_assert_cmpint(test_compare_to_file(actual, result_path), ==, 0);
    ho_error_reset();
}

/* Each bad file names its key and value (the .result pins the wording;
 * this checks the contract for a few without relying on it). */
static void
test_errors_name_key_and_value(void)
{
    static const struct {
        const char *text;
        const char *needles[3];
    } cases[] = {
        {"[handoverd]\nmax_clients = abc\n", {"'max_clients'", "'abc'", "'[handoverd]'"}},
        {"[handoverd]\nsocket_mode = 9\n", {"'socket_mode'", "'9'", "octal"}},
        {"[handoverd]\nbogus = 1\n", {"'bogus'", "'[handoverd]'", "unknown key"}},
        {"[other]\n", {"'[other]'", "unknown group", "'[handoverd]'"}},
        {"[handoverd]\npriority_boost = 40\n", {"'priority_boost'", "'40'", "'[handoverd]'"}},
        {"[handoverd]\nmigration_switchover_boost = -1\n",
         {"'migration_switchover_boost'", "'-1'", "'[handoverd]'"}},
        {"[handoverd]\nmigration_downtime_start = 2000001\n",
         {"'migration_downtime_start'", "'2000001'", "'[handoverd]'"}},
        {"[handoverd]\nmigration_mirror_buf_size = 1073741825\n",
         {"'migration_mirror_buf_size'", "'1073741825'", "'[handoverd]'"}},
        {"[handoverd]\nmigration_mirror_buf_size = 4M\n",
         {"'migration_mirror_buf_size'", "'4M'", "'[handoverd]'"}},
        {"[handoverd]\nmigration_stream_buffer = 67108865\n",
         {"'migration_stream_buffer'", "'67108865'", "'[handoverd]'"}},
        {"[handoverd]\nmigration_port_min = 3\nmigration_port_max = 2\n",
         {"'3'", "'2'", "migration_port_max"}},
    };
    size_t i, j;

    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(HandoverdConf) conf = handoverd_conf_new();

        g_assert_cmpint(handoverd_conf_load_data(conf, cases[i].text, strlen(cases[i].text),
                                                 "/etc/handover/test.conf"),
                        ==, -1);
        g_assert_nonnull(strstr(ho_error_last_message(), "'/etc/handover/test.conf'"));
        for (j = 0; j < G_N_ELEMENTS(cases[i].needles); j++) {
            if (!strstr(ho_error_last_message(), cases[i].needles[j]))
                g_error("case %zu: '%s' not in '%s'", i, cases[i].needles[j],
                        ho_error_last_message());
        }
        ho_error_reset();
    }
}

static void
test_defaults(void)
{
    g_autoptr(HandoverdConf) conf = handoverd_conf_new();

    g_assert_cmpuint(conf->socket_mode, ==, 0600);
    g_assert_null(conf->listen_address);
    g_assert_cmpuint(conf->listen_port, ==, 16514);
    g_assert_cmpuint(conf->keepalive_interval, ==, 5);
    g_assert_cmpuint(conf->keepalive_count, ==, 5);
    g_assert_null(conf->migration_record_dir);
    g_assert_cmpuint(conf->migration_progress_interval, ==, 500);
    g_assert_cmpuint(conf->postcopy_stall_timeout, ==, 10);
    g_assert_cmpuint(conf->priority_boost, ==, 10);
    g_assert_cmpuint(conf->migration_switchover_boost, ==, 10);
    g_assert_cmpuint(conf->migration_downtime_start, ==, 20);
    g_assert_cmpuint(conf->migration_mirror_buf_size, ==, 4 * 1024 * 1024);
    g_assert_cmpuint(conf->migration_stream_buffer, ==, 0);
    g_assert_cmpstr(conf->migration_address, ==, "127.0.0.1");
    g_assert_cmpuint(conf->migration_port_min, ==, 49152);
    g_assert_cmpuint(conf->migration_port_max, ==, 49215);
    g_assert_null(conf->host_uuid);
    g_assert_null(conf->default_emulator);
    g_assert_cmpuint(conf->max_clients, ==, 64);
    g_assert_cmpuint(conf->max_message_size, ==, 1048576);
    g_assert_cmpuint(conf->max_requests_per_client, ==, 32);
    g_assert_cmpuint(conf->shutdown_timeout, ==, 60);
    g_assert_null(conf->log_level);
    g_assert_null(conf->log_filters);
    g_assert_null(conf->log_file);
    g_assert_null(conf->record_qmp);
    g_assert_null(conf->state_dir);
    g_assert_null(conf->socket_path);
}

static void
test_finish_system(void)
{
    g_autoptr(HandoverdConf) conf = handoverd_conf_new();

    g_assert_cmpint(handoverd_conf_finish(conf, NULL, &host_system), ==, 0);
    g_assert_cmpstr(conf->state_dir, ==, "/var/lib/handover");
    g_assert_cmpstr(conf->runtime_dir, ==, "/run/handover");
    g_assert_cmpstr(conf->log_dir, ==, "/var/log/handover");
    g_assert_cmpstr(conf->socket_path, ==, "/run/handover/handoverd.sock");
}

static void
test_finish_user(void)
{
    g_autoptr(HandoverdConf) conf = handoverd_conf_new();

    g_assert_cmpint(handoverd_conf_finish(conf, NULL, &host_user), ==, 0);
    g_assert_cmpstr(conf->state_dir, ==, "/home/u/.local/share/handover");
    g_assert_cmpstr(conf->runtime_dir, ==, "/run/user/1000/handover");
    g_assert_cmpstr(conf->log_dir, ==, "/home/u/.local/share/handover/log");
    g_assert_cmpstr(conf->socket_path, ==, "/run/user/1000/handover/handoverd.sock");
}

/* The file's directories win over the defaults; the socket follows the
 * runtime directory unless it is set itself. */
static void
test_finish_file_dirs(void)
{
    static const char text[] = "[handoverd]\nruntime_dir = /srv/run\nstate_dir = /srv/state\n";
    g_autoptr(HandoverdConf) conf = handoverd_conf_new();

    g_assert_cmpint(handoverd_conf_load_data(conf, text, strlen(text), "t.conf"), ==, 0);
    g_assert_cmpint(handoverd_conf_finish(conf, NULL, &host_user), ==, 0);
    g_assert_cmpstr(conf->state_dir, ==, "/srv/state");
    g_assert_cmpstr(conf->runtime_dir, ==, "/srv/run");
    g_assert_cmpstr(conf->log_dir, ==, "/home/u/.local/share/handover/log");
    g_assert_cmpstr(conf->socket_path, ==, "/srv/run/handoverd.sock");
}

/* --root overrides the directory and socket keys of the file, nothing else. */
static void
test_finish_root(void)
{
    static const char text[] = "[handoverd]\nstate_dir = /srv/state\nsocket_path = /srv/s.sock\n"
                               "max_clients = 8\n";
    g_autoptr(HandoverdConf) conf = handoverd_conf_new();

    g_assert_cmpint(handoverd_conf_load_data(conf, text, strlen(text), "t.conf"), ==, 0);
    g_assert_cmpint(handoverd_conf_finish(conf, "/tmp/inst/", &host_system), ==, 0);
    g_assert_cmpstr(conf->state_dir, ==, "/tmp/inst/state");
    g_assert_cmpstr(conf->runtime_dir, ==, "/tmp/inst/run");
    g_assert_cmpstr(conf->log_dir, ==, "/tmp/inst/log");
    g_assert_cmpstr(conf->socket_path, ==, "/tmp/inst/run/handoverd.sock");
    g_assert_cmpuint(conf->max_clients, ==, 8);
    g_assert_null(conf->listen_address);
}

static void
test_finish_root_relative(void)
{
    g_autoptr(HandoverdConf) conf = handoverd_conf_new();
    g_autofree char *cwd = g_get_current_dir();
    g_autofree char *want = g_build_filename(cwd, "inst", "run", "handoverd.sock", NULL);

    g_assert_cmpint(handoverd_conf_finish(conf, "./inst", &host_system), ==, 0);
    g_assert_cmpstr(conf->socket_path, ==, want);
}

static void
test_finish_errors(void)
{
    g_autoptr(HandoverdConf) conf = handoverd_conf_new();
    g_autoptr(HandoverdConf) conf2 = handoverd_conf_new();
    g_autoptr(GString) root = g_string_new("/tmp/");

    g_assert_cmpint(handoverd_conf_finish(conf, "", &host_system), ==, -1);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_INVALID_ARG);

    /* A root so deep its socket path cannot be bound. */
    while (root->len < 100)
        g_string_append(root, "deep/");
    g_assert_cmpint(handoverd_conf_finish(conf2, root->str, &host_system), ==, -1);
    g_assert_nonnull(strstr(ho_error_last_message(), "handoverd.sock"));
    g_assert_nonnull(strstr(ho_error_last_message(), "longer than a UNIX socket allows"));
    ho_error_reset();
}

/* A later file applies on top of an earlier one; a bad one changes nothing. */
static void
test_load_layered(void)
{
    static const char first[] = "[handoverd]\nmax_clients = 8\nlog_level = info\n";
    static const char second[] = "[handoverd]\nmax_requests_per_client = 2\n";
    static const char bad[] = "[handoverd]\nmax_clients = 9\nlog_level = loud\n";
    g_autoptr(HandoverdConf) conf = handoverd_conf_new();

    g_assert_cmpint(handoverd_conf_load_data(conf, first, strlen(first), "a"), ==, 0);
    g_assert_cmpint(handoverd_conf_load_data(conf, second, strlen(second), "b"), ==, 0);
    g_assert_cmpint(handoverd_conf_load_data(conf, bad, strlen(bad), "c"), ==, -1);
    g_assert_nonnull(strstr(ho_error_last_message(), "'loud'"));
    g_assert_cmpuint(conf->max_clients, ==, 8);
    g_assert_cmpuint(conf->max_requests_per_client, ==, 2);
    g_assert_cmpstr(conf->log_level, ==, "info");
    ho_error_reset();
}

static void
test_load_file(void)
{
    g_autofree char *dir = test_make_tmpdir("conf");
    g_autofree char *path = g_build_filename(dir, "handoverd.conf", NULL);
    g_autofree char *missing = g_build_filename(dir, "missing.conf", NULL);
    g_autoptr(HandoverdConf) conf = handoverd_conf_new();
    g_autoptr(GString) big = g_string_new("[handoverd]\n");

    g_assert_true(g_file_set_contents(path, "[handoverd]\nmax_clients = 3\n", -1, NULL));
    g_assert_cmpint(handoverd_conf_load_file(conf, path), ==, 0);
    g_assert_cmpuint(conf->max_clients, ==, 3);

    g_assert_cmpint(handoverd_conf_load_file(conf, missing), ==, -1);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_SYSTEM);
    g_assert_nonnull(strstr(ho_error_last_message(), missing));

    /* Errors found in a file name the file's path. */
    g_assert_true(g_file_set_contents(path, "[handoverd]\nmax_clients = x\n", -1, NULL));
    g_assert_cmpint(handoverd_conf_load_file(conf, path), ==, -1);
    g_assert_nonnull(strstr(ho_error_last_message(), path));

    /* Larger than any sane configuration. */
    while (big->len <= 1024 * 1024)
        g_string_append(big, "# padding padding padding padding padding padding padding\n");
    g_assert_true(g_file_set_contents(path, big->str, big->len, NULL));
    g_assert_cmpint(handoverd_conf_load_file(conf, path), ==, -1);
    g_assert_nonnull(strstr(ho_error_last_message(), path));
    g_assert_cmpuint(conf->max_clients, ==, 3);
    ho_error_reset();
}

static void
test_host_uuid(void)
{
    g_autofree char *dir = test_make_tmpdir("uuid");
    g_autofree char *path = g_build_filename(dir, "host-uuid", NULL);
    g_autoptr(HandoverdConf) first = handoverd_conf_new();
    g_autoptr(HandoverdConf) second = handoverd_conf_new();
    g_autoptr(HandoverdConf) configured = handoverd_conf_new();
    g_autoptr(HandoverdConf) upper = handoverd_conf_new();
    g_autoptr(HandoverdConf) broken = handoverd_conf_new();
    g_autofree char *text = NULL;
    g_autofree char *expect = NULL;
    struct stat st;

    /* Generated once, kept in the file, the same on the next start. */
    first->state_dir = g_strdup(dir);
    g_assert_cmpint(handoverd_conf_ensure_host_uuid(first), ==, 0);
    g_assert_true(g_uuid_string_is_valid(first->host_uuid));
    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    expect = g_strdup_printf("%s\n", first->host_uuid);
    g_assert_cmpstr(text, ==, expect);
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 0777, ==, 0644);

    second->state_dir = g_strdup(dir);
    g_assert_cmpint(handoverd_conf_ensure_host_uuid(second), ==, 0);
    g_assert_cmpstr(second->host_uuid, ==, first->host_uuid);

    /* A configured UUID wins and the file is left alone. */
    configured->state_dir = g_strdup(dir);
    configured->host_uuid = g_strdup(UUID_A);
    g_assert_cmpint(handoverd_conf_ensure_host_uuid(configured), ==, 0);
    g_assert_cmpstr(configured->host_uuid, ==, UUID_A);
    g_clear_pointer(&text, g_free);
    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    g_assert_cmpstr(text, ==, expect);

    /* Written by hand: surrounding blanks and upper case are fine. */
    g_assert_true(
        g_file_set_contents(path, "  4DEA22B3-1D52-D8F3-2516-782E98AB3FA0 \n\n", -1, NULL));
    upper->state_dir = g_strdup(dir);
    g_assert_cmpint(handoverd_conf_ensure_host_uuid(upper), ==, 0);
    g_assert_cmpstr(upper->host_uuid, ==, UUID_A);

    /* A damaged file is an error naming it, not a new identity. */
    g_assert_true(g_file_set_contents(path, "not-a-uuid\n", -1, NULL));
    broken->state_dir = g_strdup(dir);
    g_assert_cmpint(handoverd_conf_ensure_host_uuid(broken), ==, -1);
    g_assert_null(broken->host_uuid);
    g_assert_nonnull(strstr(ho_error_last_message(), path));
    g_assert_nonnull(strstr(ho_error_last_message(), "'not-a-uuid'"));
    g_clear_pointer(&text, g_free);
    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    g_assert_cmpstr(text, ==, "not-a-uuid\n");
    ho_error_reset();
}

static void
test_host_uuid_unwritable(void)
{
    g_autofree char *dir = test_make_tmpdir("uuid");
    g_autoptr(HandoverdConf) conf = handoverd_conf_new();

    conf->state_dir = g_build_filename(dir, "missing", NULL);
    g_assert_cmpint(handoverd_conf_ensure_host_uuid(conf), ==, -1);
    g_assert_null(conf->host_uuid);
    g_assert_nonnull(strstr(ho_error_last_message(), "host-uuid"));
    ho_error_reset();
}

/* The number of keys, one line each in the defaults' dump. */
static size_t
conf_key_count(void)
{
    g_autoptr(HandoverdConf) conf = handoverd_conf_new();
    g_autofree char *dump = handoverd_conf_format(conf);
    g_auto(GStrv) lines = g_strsplit(dump, "\n", -1);
    size_t n = 0;

    while (lines[n] && *lines[n])
        n++;
    return n;
}

/* docs/handoverd.conf.example: as shipped (all commented out) it is the
 * defaults; with every key uncommented it is still a valid file. */
static void
test_example(void)
{
    g_autofree char *path =
        g_build_filename(test_srcdir(), "docs", "handoverd.conf.example", NULL);
    g_autofree char *text = NULL;
    g_autoptr(HandoverdConf) shipped = handoverd_conf_new();
    g_autoptr(HandoverdConf) defaults = handoverd_conf_new();
    g_autoptr(HandoverdConf) uncommented = handoverd_conf_new();
    g_autoptr(GString) all = g_string_new(NULL);
    g_autofree char *a = NULL;
    g_autofree char *b = NULL;
    g_auto(GStrv) lines = NULL;
    gsize len = 0;
    guint keys = 0;
    size_t i;

    g_assert_true(g_file_get_contents(path, &text, &len, NULL));
    g_assert_cmpint(handoverd_conf_load_data(shipped, text, len, path), ==, 0);
    a = handoverd_conf_format(shipped);
    b = handoverd_conf_format(defaults);
    g_assert_cmpstr(a, ==, b);

    lines = g_strsplit(text, "\n", -1);
    for (i = 0; lines[i]; i++) {
        const char *line = lines[i];

        /* "#key = value" is a key; "# text" is prose. */
        if (line[0] == '#' && g_ascii_islower(line[1]) && strchr(line, '=')) {
            line++;
            keys++;
            /* The built-in default emulator need not exist on this host. */
            if (g_str_has_prefix(line, "default_emulator"))
                line = "default_emulator = sh";
        }
        g_string_append_printf(all, "%s\n", line);
    }
    /* Every key of the configuration is shown. */
    g_assert_cmpuint(keys, ==, conf_key_count());
    if (handoverd_conf_load_data(uncommented, all->str, all->len, path) < 0)
        g_error("%s", ho_error_last_message());
}

/* docs/handoverd.md has a table row for every key. */
static void
test_doc_lists_keys(void)
{
    g_autofree char *path = g_build_filename(test_srcdir(), "docs", "handoverd.md", NULL);
    g_autoptr(HandoverdConf) conf = handoverd_conf_new();
    g_autofree char *doc = NULL;
    g_autofree char *dump = handoverd_conf_format(conf);
    g_auto(GStrv) lines = g_strsplit(dump, "\n", -1);
    size_t i;

    g_assert_true(g_file_get_contents(path, &doc, NULL, NULL));
    for (i = 0; lines[i] && *lines[i]; i++) {
        g_autofree char *key = g_strndup(lines[i], strcspn(lines[i], " "));
        g_autofree char *row = g_strdup_printf("\n| `%s` |", key);

        if (!strstr(doc, row))
            g_error("docs/handoverd.md does not document the key '%s'", key);
    }
    g_assert_cmpuint(i, ==, 33);
    g_assert_cmpuint(i, ==, conf_key_count());
}

/* The peer keepalive notices a dead peer within postcopy_stall_timeout:
 * (count + 2) x interval, never looser than what is configured. */
static void
test_peer_keepalive(void)
{
    static const struct {
        unsigned int interval_s, count, stall_s;
        unsigned int want_ms, want_count;
    } cases[] = {
        {5, 5, 10, 2000, 3},   /* the defaults */
        {1, 2, 10, 1000, 2},   /* already tighter: kept */
        {5, 5, 60, 5000, 3},   /* a long stall timeout: the interval as configured */
        {3600, 100, 3600, 720000, 3},
        {5, 5, 1, 200, 3},     /* the floor */
        {0, 5, 10, 0, 0},      /* off stays off */
    };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(HandoverdConf) conf = handoverd_conf_new();
        unsigned int ms = 1, count = 1;

        conf->keepalive_interval = cases[i].interval_s;
        conf->keepalive_count = cases[i].count;
        conf->postcopy_stall_timeout = cases[i].stall_s;
        handoverd_conf_peer_keepalive(conf, &ms, &count);
        g_assert_cmpuint(ms, ==, cases[i].want_ms);
        g_assert_cmpuint(count, ==, cases[i].want_count);
        if (ms >= 1000)
            g_assert_cmpuint((count + 2) * ms, <=, cases[i].stall_s * 1000);
    }
}

static gint
compare_names(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int
main(int argc, char **argv)
{
    g_autofree char *dir = test_data_path("handoverdconfdata");
    g_autoptr(GDir) d = NULL;
    g_autoptr(GPtrArray) files = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GError) gerr = NULL;
    const char *name;
    guint i;
    guint good = 0;
    guint bad = 0;
    int ret;

    g_test_init(&argc, &argv, NULL);

    d = g_dir_open(dir, 0, &gerr);
    if (!d)
        g_error("%s", gerr->message);
    while ((name = g_dir_read_name(d))) {
        if (g_str_has_suffix(name, ".conf"))
            g_ptr_array_add(files, g_strdup(name));
    }
    g_ptr_array_sort(files, compare_names);
    for (i = 0; i < files->len; i++) {
        const char *file = g_ptr_array_index(files, i);
        g_autofree char *test = g_strdup_printf("/conf/data/%s", file);

        if (g_str_has_prefix(file, "good-"))
            good++;
        else if (g_str_has_prefix(file, "bad-"))
            bad++;
        else
            g_error("'%s' in '%s' is neither good-*.conf nor bad-*.conf", file, dir);
        g_test_add_data_func(test, file, test_data_file);
    }
    /* A missing data directory must not pass as "no cases". */
    g_assert_cmpuint(good, >=, 9);
    g_assert_cmpuint(bad, >=, 28);

    g_test_add_func("/conf/errors-name-key-and-value", test_errors_name_key_and_value);
    g_test_add_func("/conf/defaults", test_defaults);
    g_test_add_func("/conf/example", test_example);
    g_test_add_func("/conf/doc-lists-keys", test_doc_lists_keys);
    g_test_add_func("/conf/peer-keepalive", test_peer_keepalive);
    g_test_add_func("/conf/finish/system", test_finish_system);
    g_test_add_func("/conf/finish/user", test_finish_user);
    g_test_add_func("/conf/finish/file-dirs", test_finish_file_dirs);
    g_test_add_func("/conf/finish/root", test_finish_root);
    g_test_add_func("/conf/finish/root-relative", test_finish_root_relative);
    g_test_add_func("/conf/finish/errors", test_finish_errors);
    g_test_add_func("/conf/load/layered", test_load_layered);
    g_test_add_func("/conf/load/file", test_load_file);
    g_test_add_func("/conf/host-uuid/kept", test_host_uuid);
    g_test_add_func("/conf/host-uuid/unwritable", test_host_uuid_unwritable);

    ret = g_test_run();
    return ret;
}
