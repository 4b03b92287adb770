/*
 * Tests of capability probing (qemu_capabilities.c).
 *
 * qemucapabilitiesdata/qemu-<v>.replies.json hold the replies of a real
 * QEMU <v> (7.2.22 from Debian 12, 10.0.2 from its backports) to
 * query-version, query-commands and query-migrate-capabilities, captured
 * with `qemu-system-x86_64 -nodefaults -display none -machine none -qmp
 * stdio`. Neither QEMU has query-events (removed in 6.0): their events
 * come from the schema, qemumonitorjsondata/schema/qemu-<v>.json. The caps
 * built from both are compared with qemu-<v>.result.
 *
 * The probe itself runs against the mock QMP server: caps-probe-*.jsonl
 * are composed transcripts (an old QEMU with query-events and a trimmed
 * schema, and failures at each step).
 */
#define HO_LOG_MODULE "tests.capabilities"

#include <glib.h>
#include <string.h>

#include "ho_error.h"
#include "ho_file.h"
#include "ho_json.h"
#include "ho_log.h"
#include "qemu_capabilities.h"
#include "qemu_mock.h"
#include "qemu_monitor.h"
#include "testutils.h"

#define TEST_TIMEOUT_MS 10000
#define MAX_DATA_FILE (8 * 1024 * 1024)

static json_object *
load_json(const char *rel)
{
    g_autofree char *path = test_data_path(rel);
    g_autofree char *text = NULL;
    size_t len;
    json_object *obj;

    if (ho_file_read_all(path, MAX_DATA_FILE, &text, &len) < 0)
        g_error("%s", ho_error_last_message());
    if (!(obj = ho_json_parse(text, len)))
        g_error("%s: %s", path, ho_error_last_message());
    return obj;
}

static json_object *
reply_of(json_object *replies, const char *command)
{
    json_object *ret;

    if (!json_object_object_get_ex(replies, command, &ret))
        g_error("no '%s' in the replies", command);
    return ret;
}

/* Caps of a real QEMU from its captured replies and saved schema. */
static QemuCaps *
caps_from_saved(const char *version)
{
    g_autofree char *replies_rel = g_strdup_printf("qemucapabilitiesdata/qemu-%s.replies.json",
                                                   version);
    g_autofree char *schema_rel = g_strdup_printf("qemumonitorjsondata/schema/qemu-%s.json",
                                                  version);
    g_autoptr(json_object) replies = load_json(replies_rel);
    g_autoptr(json_object) schema = load_json(schema_rel);
    g_autoptr(QemuCaps) caps = qemu_caps_new();
    json_object *events;

    if (qemu_caps_set_version(caps, reply_of(replies, "query-version")) < 0 ||
        qemu_caps_set_commands(caps, reply_of(replies, "query-commands")) < 0 ||
        qemu_caps_set_migration_capabilities(
            caps, reply_of(replies, "query-migrate-capabilities")) < 0 ||
        qemu_caps_set_schema(caps, schema) < 0)
        g_error("qemu-%s: %s", version, ho_error_last_message());
    if (json_object_object_get_ex(replies, "query-events", &events) &&
        qemu_caps_set_events(caps, events) < 0)
        g_error("qemu-%s: %s", version, ho_error_last_message());
    return g_steal_pointer(&caps);
}

static char *
caps_text(const QemuCaps *caps)
{
    g_autoptr(json_object) obj = qemu_caps_to_json(caps);
    int flags = JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE;

    return g_strdup_printf("%s\n", json_object_to_json_string_ext(obj, flags));
}

static void
test_flag_names(void)
{
    static const char *const expected[] = {
        "events", "pause-before-switchover", "postcopy-ram", "return-path",
        "late-block-activate", "auto-converge", "multifd", "postcopy-preempt", "block",
        "postcopy-recover-setup", "cpr-transfer", "migrate-channels", "blockdev-mirror",
        "block-export-add", "migrate-recover", "migrate-pause", "migrate-continue",
        "query-jobs",
    };
    int i;

    g_assert_cmpint(QEMU_CAPS_LAST, ==, G_N_ELEMENTS(expected));
    for (i = 0; i < QEMU_CAPS_LAST; i++)
        g_assert_cmpstr(qemu_caps_flag_name(i), ==, expected[i]);
    g_assert_cmpstr(qemu_caps_flag_name(QEMU_CAPS_LAST), ==, "unknown");
}

static void
test_empty(void)
{
    g_autoptr(QemuCaps) caps = qemu_caps_new();
    int i;

    g_assert_cmpuint(qemu_caps_version(caps), ==, 0);
    g_assert_cmpstr(qemu_caps_package(caps), ==, "");
    for (i = 0; i < QEMU_CAPS_LAST; i++)
        g_assert_false(qemu_caps_has(caps, i));
    g_assert_nonnull(qemu_caps_migration_statuses(caps));
    g_assert_null(qemu_caps_migration_statuses(caps)[0]);
    g_assert_null(qemu_caps_mig_modes(caps)[0]);
    g_assert_false(qemu_caps_has_command(caps, "query-status"));
    qemu_caps_free(NULL);
}

static void
test_saved(gconstpointer data)
{
    const char *version = data;
    g_autoptr(QemuCaps) caps = caps_from_saved(version);
    g_autofree char *text = caps_text(caps);
    g_autofree char *rel = g_strdup_printf("qemucapabilitiesdata/qemu-%s.result", version);
    g_autofree char *path = test_data_path(rel);

    g_assert_cmpint(test_compare_to_file(text, path), ==, 0);
}

static bool
strv_has(const char *const *strv, const char *s)
{
    return g_strv_contains(strv, s);
}

static void
test_facts_7_2(void)
{
    g_autoptr(QemuCaps) caps = caps_from_saved("7.2");

    g_assert_cmpuint(qemu_caps_version(caps), ==, 7002022);
    g_assert_cmpstr(qemu_caps_package(caps), ==, "Debian 1:7.2+dfsg-7+deb12u18+b3");
    g_assert_true(qemu_caps_has(caps, QEMU_CAPS_PAUSE_BEFORE_SWITCHOVER));
    g_assert_true(qemu_caps_has(caps, QEMU_CAPS_EVENTS_CAP));
    g_assert_true(qemu_caps_has(caps, QEMU_CAPS_POSTCOPY_RAM));
    g_assert_true(qemu_caps_has(caps, QEMU_CAPS_LATE_BLOCK_ACTIVATE));
    g_assert_true(qemu_caps_has(caps, QEMU_CAPS_BLOCKDEV_MIRROR));
    g_assert_true(qemu_caps_has(caps, QEMU_CAPS_BLOCK_EXPORT_ADD));
    g_assert_true(qemu_caps_has(caps, QEMU_CAPS_MIGRATE_RECOVER));
    g_assert_true(qemu_caps_has(caps, QEMU_CAPS_MIGRATE_PAUSE));
    g_assert_true(qemu_caps_has(caps, QEMU_CAPS_MIGRATE_CONTINUE));
    g_assert_true(qemu_caps_has(caps, QEMU_CAPS_QUERY_JOBS));
    g_assert_true(qemu_caps_has(caps, QEMU_CAPS_BLOCK_MIGRATION));
    g_assert_false(qemu_caps_has(caps, QEMU_CAPS_POSTCOPY_RECOVER_SETUP));
    g_assert_false(qemu_caps_has(caps, QEMU_CAPS_CPR_TRANSFER));
    g_assert_false(qemu_caps_has(caps, QEMU_CAPS_MIGRATE_CHANNELS));
    /* Events come from the schema. */
    g_assert_true(qemu_caps_has_event(caps, "MIGRATION"));
    g_assert_true(qemu_caps_has_event(caps, "BLOCK_JOB_READY"));
    g_assert_false(qemu_caps_has_event(caps, "query-status"));
    g_assert_true(qemu_caps_has_command(caps, "query-status"));
    g_assert_false(qemu_caps_has_command(caps, "query-events"));
    g_assert_true(qemu_caps_has_migration_capability(caps, "block"));
    g_assert_true(strv_has(qemu_caps_migration_statuses(caps), "pre-switchover"));
    g_assert_false(strv_has(qemu_caps_migration_statuses(caps), "postcopy-recover-setup"));
    g_assert_cmpuint(g_strv_length((char **)qemu_caps_migration_statuses(caps)), ==, 14);
    g_assert_cmpuint(g_strv_length((char **)qemu_caps_mig_modes(caps)), ==, 0);
}

static void
test_facts_10_0(void)
{
    g_autoptr(QemuCaps) caps = caps_from_saved("10.0");

    g_assert_cmpuint(qemu_caps_version(caps), ==, 10000002);
    g_assert_true(qemu_caps_has(caps, QEMU_CAPS_POSTCOPY_RECOVER_SETUP));
    g_assert_true(qemu_caps_has(caps, QEMU_CAPS_CPR_TRANSFER));
    g_assert_true(qemu_caps_has(caps, QEMU_CAPS_MIGRATE_CHANNELS));
    g_assert_true(qemu_caps_has(caps, QEMU_CAPS_PAUSE_BEFORE_SWITCHOVER));
    g_assert_true(qemu_caps_has(caps, QEMU_CAPS_BLOCKDEV_MIRROR));
    g_assert_true(qemu_caps_has(caps, QEMU_CAPS_BLOCK_EXPORT_ADD));
    g_assert_true(qemu_caps_has(caps, QEMU_CAPS_MIGRATE_RECOVER));
    g_assert_true(qemu_caps_has(caps, QEMU_CAPS_POSTCOPY_PREEMPT));
    g_assert_false(qemu_caps_has(caps, QEMU_CAPS_BLOCK_MIGRATION));
    g_assert_false(qemu_caps_has_migration_capability(caps, "block"));
    g_assert_true(qemu_caps_has_migration_capability(caps, "mapped-ram"));
    g_assert_true(qemu_caps_has_event(caps, "MIGRATION"));
    g_assert_cmpuint(g_strv_length((char **)qemu_caps_migration_statuses(caps)), ==, 15);
    g_assert_cmpstr(qemu_caps_mig_modes(caps)[0], ==, "normal");
    g_assert_cmpstr(qemu_caps_mig_modes(caps)[1], ==, "cpr-reboot");
    g_assert_cmpstr(qemu_caps_mig_modes(caps)[2], ==, "cpr-transfer");
    g_assert_null(qemu_caps_mig_modes(caps)[3]);
}

static void
assert_same_caps(const QemuCaps *a, const QemuCaps *b)
{
    g_autoptr(json_object) ja = qemu_caps_to_json(a);
    g_autoptr(json_object) jb = qemu_caps_to_json(b);
    int i;

    g_assert_true(ho_json_equal(ja, jb));
    g_assert_cmpstr(json_object_to_json_string(ja), ==, json_object_to_json_string(jb));
    g_assert_cmpuint(qemu_caps_version(a), ==, qemu_caps_version(b));
    g_assert_cmpstr(qemu_caps_package(a), ==, qemu_caps_package(b));
    for (i = 0; i < QEMU_CAPS_LAST; i++)
        g_assert_cmpint(qemu_caps_has(a, i), ==, qemu_caps_has(b, i));
}

static void
test_round_trip(gconstpointer data)
{
    const char *version = data;
    g_autoptr(QemuCaps) caps = caps_from_saved(version);
    g_autoptr(json_object) obj = qemu_caps_to_json(caps);
    g_autofree char *text = ho_json_to_string(obj);
    g_autoptr(json_object) parsed = ho_json_parse(text, strlen(text));
    g_autoptr(QemuCaps) back = NULL;

    g_assert_nonnull(parsed);
    back = qemu_caps_from_json(parsed);
    if (!back)
        g_error("%s", ho_error_last_message());
    assert_same_caps(caps, back);
    g_assert_true(qemu_caps_has_command(back, "blockdev-mirror"));
    g_assert_true(qemu_caps_has_event(back, "MIGRATION"));
}

/* Events from a query-events reply (QEMU before 6.0) join the schema's. */
static void
test_set_events(void)
{
    g_autoptr(QemuCaps) caps = qemu_caps_new();
    g_autoptr(json_object) reply = ho_json_parse("[{\"name\":\"STOP\"},{\"name\":\"MIGRATION\"}]",
                                                 strlen("[{\"name\":\"STOP\"},"
                                                        "{\"name\":\"MIGRATION\"}]"));

    g_assert_cmpint(qemu_caps_set_events(caps, reply), ==, 0);
    g_assert_true(qemu_caps_has_event(caps, "STOP"));
    g_assert_true(qemu_caps_has_event(caps, "MIGRATION"));
    g_assert_false(qemu_caps_has_event(caps, "RESUME"));
}

/* ---- bad inputs ---- */

typedef enum {
    BAD_VERSION,
    BAD_COMMANDS,
    BAD_EVENTS,
    BAD_MIGRATION_CAPS,
    BAD_SCHEMA,
    BAD_FROM_JSON,
} BadTarget;

typedef struct {
    const char *name;
    BadTarget target;
    const char *json;
    const char *message;
} BadCase;

static const BadCase bad_cases[] = {
    {"version-not-object", BAD_VERSION, "[]",
     "the reply to 'query-version' is not a JSON object"},
    {"version-missing-micro", BAD_VERSION, "{\"qemu\":{\"major\":7,\"minor\":2},\"package\":\"\"}",
     "JSON field 'micro' is missing"},
    {"version-huge-minor", BAD_VERSION,
     "{\"qemu\":{\"major\":7,\"minor\":1000,\"micro\":0},\"package\":\"\"}",
     "QEMU version '7.1000.0' is out of range"},
    {"commands-not-array", BAD_COMMANDS, "{\"name\":\"stop\"}",
     "the reply to 'query-commands' is not a JSON array"},
    {"commands-element", BAD_COMMANDS, "[{\"name\":\"stop\"},null]",
     "element 1 of the reply to 'query-commands' is not a JSON object"},
    {"events-name-type", BAD_EVENTS, "[{\"name\":false}]", "JSON field 'name' is not a string"},
    {"migration-caps-missing-state", BAD_MIGRATION_CAPS, "[{\"capability\":\"events\"}]",
     "JSON field 'state' is missing"},
    {"schema-not-array", BAD_SCHEMA, "{}", "query-qmp-schema reply is not an array"},
    {"schema-no-query-migrate", BAD_SCHEMA,
     "[{\"name\":\"stop\",\"meta-type\":\"command\",\"arg-type\":\"0\",\"ret-type\":\"0\"},"
     "{\"name\":\"0\",\"meta-type\":\"object\",\"members\":[]}]",
     "the QAPI schema has no enum for member 'status' of the reply to 'query-migrate'"},
    {"from-json-not-object", BAD_FROM_JSON, "[]",
     "the QEMU capabilities description is not a JSON object"},
    {"from-json-missing-version", BAD_FROM_JSON, "{\"package\":\"\"}",
     "JSON field 'version' is missing"},
    {"from-json-negative-micro", BAD_FROM_JSON,
     "{\"version\":{\"major\":7,\"minor\":2,\"micro\":-1},\"package\":\"\",\"commands\":[],"
     "\"events\":[],\"migration-capabilities\":[],\"migrate-arguments\":[],"
     "\"migration-statuses\":[],\"mig-modes\":[]}",
     "JSON field 'version' is out of range"},
    {"from-json-commands-element", BAD_FROM_JSON,
     "{\"version\":{\"major\":7,\"minor\":2,\"micro\":0},\"package\":\"\","
     "\"commands\":[\"stop\",1],"
     "\"events\":[],\"migration-capabilities\":[],\"migrate-arguments\":[],"
     "\"migration-statuses\":[],\"mig-modes\":[]}",
     "element 1 of 'commands' is not a string"},
    {"from-json-missing-mig-modes", BAD_FROM_JSON,
     "{\"version\":{\"major\":7,\"minor\":2,\"micro\":0},\"package\":\"\",\"commands\":[],"
     "\"events\":[],\"migration-capabilities\":[],\"migrate-arguments\":[],"
     "\"migration-statuses\":[]}",
     "JSON field 'mig-modes' is missing"},
    {"from-json-package-type", BAD_FROM_JSON,
     "{\"version\":{\"major\":7,\"minor\":2,\"micro\":0},\"package\":7}",
     "JSON field 'package' is not a string"},
};

static void
test_bad(gconstpointer data)
{
    const BadCase *bc = data;
    g_autoptr(json_object) obj = ho_json_parse(bc->json, strlen(bc->json));
    g_autoptr(QemuCaps) caps = caps_from_saved("7.2");
    g_autoptr(json_object) before = qemu_caps_to_json(caps);
    g_autoptr(json_object) after = NULL;
    const HoError *err;
    int rc = 0;

    g_assert_nonnull(obj);
    ho_error_reset();
    switch (bc->target) {
    case BAD_VERSION:
        rc = qemu_caps_set_version(caps, obj);
        break;
    case BAD_COMMANDS:
        rc = qemu_caps_set_commands(caps, obj);
        break;
    case BAD_EVENTS:
        rc = qemu_caps_set_events(caps, obj);
        break;
    case BAD_MIGRATION_CAPS:
        rc = qemu_caps_set_migration_capabilities(caps, obj);
        break;
    case BAD_SCHEMA:
        rc = qemu_caps_set_schema(caps, obj);
        break;
    case BAD_FROM_JSON: {
        g_autoptr(QemuCaps) parsed = qemu_caps_from_json(obj);

        g_assert_null(parsed);
        rc = -1;
        break;
    }
    }
    g_assert_cmpint(rc, ==, -1);
    err = ho_error_last();
    g_assert_nonnull(err);
    g_assert_cmpint(err->code, ==, HO_ERR_JSON);
    g_assert_cmpstr(err->message, ==, bc->message);
    /* Bad input changes nothing. */
    after = qemu_caps_to_json(caps);
    g_assert_true(ho_json_equal(before, after));
}

/* ---- probing through the mock ---- */

typedef struct {
    bool done;
    QemuCaps *caps;
    HoError *err;
} ProbeResult;

static void
probe_done(QemuMonitor *mon, QemuCaps *caps, const HoError *err, void *opaque)
{
    ProbeResult *res = opaque;

    g_assert_false(res->done);
    g_assert_true((caps == NULL) != (err == NULL));
    res->done = true;
    res->caps = caps;
    res->err = ho_error_copy(err);
}

/* Probe against the transcript; recorded ones end with the recording
 * tool's quit, which the test then sends too. */
static void
run_probe(const char *transcript, bool quit, ProbeResult *res)
{
    GMainContext *ctx = g_main_context_new();
    g_autoptr(QemuMock) mock = qemu_mock_new(transcript, ctx);
    g_autoptr(QemuMonitor) mon = NULL;
    static const QemuMonitorCallbacks cbs = {0};

    if (!mock)
        g_error("%s: %s", transcript, ho_error_last_message());
    mon = qemu_monitor_open_unix(qemu_mock_socket_path(mock, "src"), "src", ctx, &cbs, NULL);
    if (!mon)
        g_error("%s", ho_error_last_message());
    memset(res, 0, sizeof(*res));
    qemu_caps_probe(mon, probe_done, res);
    if (!test_iterate_until(ctx, &res->done, TEST_TIMEOUT_MS))
        g_error("%s: the probe never finished: %s", transcript,
                qemu_mock_failure(mock) ? qemu_mock_failure(mock) : "no mock failure");
    if (quit)
        qemu_monitor_json_quit(mon, NULL, NULL);
    /* Every line played: the probe sent exactly the transcript's commands. */
    if (qemu_mock_run(mock, TEST_TIMEOUT_MS) < 0)
        g_error("%s: %s", transcript, ho_error_last_message());
    qemu_monitor_close(mon);
    g_clear_pointer(&mon, qemu_monitor_unref);
    g_clear_pointer(&mock, qemu_mock_free);
    while (g_main_context_iteration(ctx, FALSE))
        ;
    g_main_context_unref(ctx);
}

/* An old QEMU that still has query-events: the probe asks for it, and
 * the events of both sources count. */
static void
test_probe_query_events(void)
{
    ProbeResult res;
    g_autoptr(QemuCaps) caps = NULL;
    g_autofree char *text = NULL;
    g_autofree char *path = test_data_path("qemucapabilitiesdata/caps-probe-query-events.result");

    run_probe("caps-probe-query-events.jsonl", false, &res);
    caps = res.caps;
    g_assert_null(res.err);
    g_assert_nonnull(caps);
    text = caps_text(caps);
    g_assert_cmpint(test_compare_to_file(text, path), ==, 0);
    g_assert_cmpuint(qemu_caps_version(caps), ==, 2012000);
    g_assert_true(qemu_caps_has_event(caps, "MIGRATION"));     /* both */
    g_assert_true(qemu_caps_has_event(caps, "BLOCK_JOB_READY")); /* query-events only */
    g_assert_true(qemu_caps_has(caps, QEMU_CAPS_PAUSE_BEFORE_SWITCHOVER));
    g_assert_false(qemu_caps_has(caps, QEMU_CAPS_MIGRATE_CHANNELS));
    g_assert_false(qemu_caps_has(caps, QEMU_CAPS_POSTCOPY_RECOVER_SETUP));
}

/* The probe fails fast: the first error ends it, nothing more is sent
 * (the mock fails on any command after the transcript's end). */
static void
test_probe_errors(void)
{
    static const struct {
        const char *transcript;
        HoErrorCode code;
        const char *qmp_class;
        const char *message;
    } cases[] = {
        {"caps-probe-commands-error.jsonl", HO_ERR_QMP, "GenericError",
         "query-commands is not available"},
        {"caps-probe-bad-version.jsonl", HO_ERR_JSON, NULL, "JSON field 'package' is missing"},
        {"caps-probe-bad-schema.jsonl", HO_ERR_JSON, NULL,
         "the QAPI schema has no enum for member 'status' of the reply to 'query-migrate'"},
    };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        ProbeResult res;

        run_probe(cases[i].transcript, false, &res);
        g_assert_null(res.caps);
        g_assert_nonnull(res.err);
        g_assert_cmpint(res.err->code, ==, cases[i].code);
        g_assert_cmpstr(res.err->qmp_class, ==, cases[i].qmp_class);
        if (cases[i].code == HO_ERR_QMP)
            g_assert_nonnull(strstr(res.err->message, cases[i].message));
        else
            g_assert_cmpstr(res.err->message, ==, cases[i].message);
        ho_error_free(res.err);
    }
}

/* Recorded probes of the real QEMUs, when the recording tool made them. */
static void
test_probe_recorded(gconstpointer data)
{
    const char *version = data;
    g_autofree char *transcript = g_strdup_printf("probe-%s.jsonl", version);
    g_autofree char *rel = g_strdup_printf("qemumonitorjsondata/%s", transcript);
    g_autofree char *path = test_data_path(rel);
    ProbeResult res;
    g_autoptr(QemuCaps) caps = NULL;
    g_autoptr(QemuCaps) saved = NULL;

    if (!g_file_test(path, G_FILE_TEST_EXISTS)) {
        g_test_skip("no recorded probe transcript");
        return;
    }
    run_probe(transcript, true, &res);
    caps = res.caps;
    if (res.err)
        g_error("%s: %s", transcript, res.err->message);
    /* The same QEMU as the saved replies and schema: the same caps. */
    saved = caps_from_saved(version);
    assert_same_caps(caps, saved);
}

int
main(int argc, char **argv)
{
    static const char *const versions[] = {"7.2", "10.0"};
    size_t i;

    g_test_init(&argc, &argv, NULL);
    ho_log_init();

    g_test_add_func("/capabilities/flag-names", test_flag_names);
    g_test_add_func("/capabilities/empty", test_empty);
    for (i = 0; i < G_N_ELEMENTS(versions); i++) {
        g_autofree char *saved = g_strdup_printf("/capabilities/saved/%s", versions[i]);
        g_autofree char *round = g_strdup_printf("/capabilities/round-trip/%s", versions[i]);
        g_autofree char *probe = g_strdup_printf("/capabilities/probe/recorded-%s", versions[i]);

        g_test_add_data_func(saved, versions[i], test_saved);
        g_test_add_data_func(round, versions[i], test_round_trip);
        g_test_add_data_func(probe, versions[i], test_probe_recorded);
    }
    g_test_add_func("/capabilities/facts/7.2", test_facts_7_2);
    g_test_add_func("/capabilities/facts/10.0", test_facts_10_0);
    g_test_add_func("/capabilities/set-events", test_set_events);
    for (i = 0; i < G_N_ELEMENTS(bad_cases); i++) {
        g_autofree char *name = g_strdup_printf("/capabilities/bad/%s", bad_cases[i].name);

        g_test_add_data_func(name, &bad_cases[i], test_bad);
    }
    g_test_add_func("/capabilities/probe/query-events", test_probe_query_events);
    g_test_add_func("/capabilities/probe/errors", test_probe_errors);
    return g_test_run();
}
