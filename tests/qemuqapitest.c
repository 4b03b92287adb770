/*
 * The QAPI schema index and validator against the saved query-qmp-schema
 * replies of QEMU 7.2 and 10.0.
 */
#define HO_LOG_MODULE "tests.qapi"

#include <string.h>

#include "ho_error.h"
#include "ho_json.h"
#include "ho_log.h"
#include "qemu_qapi.h"
#include "testutils.h"

enum {
    V72 = 1 << 0,
    V100 = 1 << 1,
    VBOTH = V72 | V100,
};

static QemuQapi *schema72;
static QemuQapi *schema100;

static QemuQapi *
load_schema(const char *name)
{
    g_autofree char *rel = g_strdup_printf("qemumonitorjsondata/schema/%s.json", name);
    g_autofree char *path = test_data_path(rel);
    QemuQapi *qapi = qemu_qapi_load(path);

    if (!qapi)
        g_error("cannot load %s: %s", path, ho_error_last_message());
    return qapi;
}

static bool
strv_has(char **strv, const char *s)
{
    return strv && g_strv_contains((const char *const *)strv, s);
}

static void
test_enum_members(void)
{
    g_auto(GStrv) st72 = qemu_qapi_enum_members(schema72, "query-migrate", "status", TRUE);
    g_auto(GStrv) st100 = qemu_qapi_enum_members(schema100, "query-migrate", "status", TRUE);
    g_auto(GStrv) mode72 =
        qemu_qapi_enum_members(schema72, "migrate-set-parameters", "mode", FALSE);
    g_auto(GStrv) mode100 =
        qemu_qapi_enum_members(schema100, "migrate-set-parameters", "mode", FALSE);
    g_auto(GStrv) caps = qemu_qapi_enum_members(schema72, "migrate-set-capabilities",
                                                "capabilities.capability", FALSE);
    g_auto(GStrv) capret =
        qemu_qapi_enum_members(schema72, "query-migrate-capabilities", "capability", TRUE);
    g_auto(GStrv) sync = qemu_qapi_enum_members(schema72, "blockdev-mirror", "sync", FALSE);
    g_auto(GStrv) host = qemu_qapi_enum_members(schema72, "blockdev-add", "server.host", FALSE);
    g_auto(GStrv) nbdtype = qemu_qapi_enum_members(schema72, "blockdev-add", "server.type", FALSE);

    g_assert_nonnull(st72);
    g_assert_true(strv_has(st72, "pre-switchover"));
    g_assert_true(strv_has(st72, "completed"));
    g_assert_true(strv_has(st72, "postcopy-paused"));
    g_assert_false(strv_has(st72, "postcopy-recover-setup"));
    g_assert_true(strv_has(st100, "pre-switchover"));
    g_assert_true(strv_has(st100, "postcopy-recover-setup"));
    /* Exactly one more status in 10.0 than in 7.2. */
    g_assert_cmpuint(g_strv_length(st100), ==, g_strv_length(st72) + 1);

    g_assert_null(mode72);
    g_assert_nonnull(mode100);
    g_assert_true(strv_has(mode100, "cpr-transfer"));
    g_assert_true(strv_has(mode100, "normal"));

    g_assert_true(strv_has(caps, "pause-before-switchover"));
    g_assert_true(strv_has(caps, "events"));
    g_assert_true(strv_has(capret, "postcopy-ram"));
    g_assert_cmpuint(g_strv_length(caps), ==, g_strv_length(capret));

    g_assert_nonnull(sync);
    g_assert_cmpstr(sync[0], ==, "top");
    g_assert_true(strv_has(sync, "full"));
    g_assert_cmpuint(g_strv_length(sync), ==, 5);

    /* A string member is no enum; a union branch's tag is. */
    g_assert_null(host);
    g_assert_true(strv_has(nbdtype, "inet"));
    g_assert_true(strv_has(nbdtype, "unix"));

    g_assert_null(qemu_qapi_enum_members(schema72, "no-such-command", "x", FALSE));
    g_assert_null(qemu_qapi_enum_members(schema72, "query-migrate", "no-such-member", TRUE));
    g_assert_null(qemu_qapi_enum_members(schema72, "query-migrate", "status", FALSE));
}

typedef struct {
    const char *command;
    const char *args; /* JSON text, NULL for none */
    unsigned versions;
} ValidCase;

static const ValidCase valid_cases[] = {
    {.command = "qmp_capabilities", .versions = VBOTH},
    {.command = "query-migrate", .args = "{}", .versions = VBOTH},
    {.command = "migrate-set-capabilities",
     .args = "{\"capabilities\":[{\"capability\":\"events\",\"state\":true},"
             "{\"capability\":\"pause-before-switchover\",\"state\":true}]}",
     .versions = VBOTH},
    {.command = "blockdev-mirror",
     .args = "{\"job-id\":\"mirror-vda\",\"device\":\"libvirt-1-format\","
             "\"target\":\"migration-vda\",\"sync\":\"full\"}",
     .versions = VBOTH},
    {.command = "blockdev-mirror",
     .args = "{\"job-id\":\"m\",\"device\":\"d\",\"target\":\"t\",\"sync\":\"top\","
             "\"speed\":0,\"granularity\":65536,\"buf-size\":1048576,"
             "\"auto-finalize\":true,\"auto-dismiss\":false}",
     .versions = VBOTH},
    {.command = "blockdev-add",
     .args = "{\"driver\":\"nbd\",\"node-name\":\"x\",\"server\":{\"type\":\"inet\","
             "\"host\":\"127.0.0.1\",\"port\":\"10809\"},\"export\":\"drive-virtio-disk0\"}",
     .versions = VBOTH},
    {.command = "blockdev-add",
     .args = "{\"driver\":\"qcow2\",\"node-name\":\"fmt\",\"file\":\"proto\"}",
     .versions = VBOTH},
    {.command = "blockdev-add",
     .args = "{\"driver\":\"qcow2\",\"node-name\":\"fmt\",\"file\":{\"driver\":\"file\","
             "\"filename\":\"/tmp/a.qcow2\"},\"backing\":null}",
     .versions = VBOTH},
    {.command = "nbd-server-start",
     .args = "{\"addr\":{\"type\":\"inet\",\"data\":{\"host\":\"0.0.0.0\","
             "\"port\":\"10809\"}}}",
     .versions = VBOTH},
    {.command = "block-export-add",
     .args = "{\"type\":\"nbd\",\"id\":\"e\",\"node-name\":\"n\",\"name\":\"e\","
             "\"writable\":true}",
     .versions = VBOTH},
    {.command = "migrate", .args = "{\"uri\":\"tcp:192.0.2.1:49152\"}", .versions = VBOTH},
    {.command = "migrate",
     .args = "{\"uri\":\"tcp:[::1]:49152\",\"resume\":true}",
     .versions = VBOTH},
    {.command = "migrate-continue", .args = "{\"state\":\"pre-switchover\"}", .versions = VBOTH},
    {.command = "migrate-set-parameters",
     .args = "{\"max-bandwidth\":1073741824,\"downtime-limit\":300}",
     .versions = VBOTH},
    {.command = "block-job-cancel", .args = "{\"device\":\"mirror-vda\"}", .versions = VBOTH},
    /* 10.0 only */
    {.command = "migrate",
     .args = "{\"channels\":[{\"channel-type\":\"main\",\"addr\":{\"transport\":\"socket\","
             "\"type\":\"inet\",\"host\":\"127.0.0.1\",\"port\":\"4444\"}}]}",
     .versions = V100},
    {.command = "migrate-set-parameters", .args = "{\"mode\":\"cpr-transfer\"}", .versions = V100},
    /* 7.2 only: block migration is gone in 10.0 */
    {.command = "migrate", .args = "{\"uri\":\"tcp:h:1\",\"blk\":true}", .versions = V72},
};

static void
check_valid(const ValidCase *c, QemuQapi *qapi, const char *vname)
{
    g_autoptr(json_object) args = NULL;

    if (c->args) {
        args = ho_json_parse(c->args, strlen(c->args));
        g_assert_nonnull(args);
    }
    ho_error_reset();
    if (qemu_qapi_check_command(qapi, c->command, args) < 0) {
        g_test_message("%s %s %s rejected: %s", vname, c->command, c->args ? c->args : "",
                       ho_error_last_message());
        g_test_fail();
    }
}

static void
test_valid(void)
{
    for (size_t i = 0; i < G_N_ELEMENTS(valid_cases); i++) {
        const ValidCase *c = &valid_cases[i];

        if (c->versions & V72)
            check_valid(c, schema72, "7.2");
        if (c->versions & V100)
            check_valid(c, schema100, "10.0");
    }
}

typedef struct {
    const char *command;
    const char *args;
    unsigned versions;
    const char *message; /* exact */
} InvalidCase;

static const InvalidCase invalid_cases[] = {
    {.command = "no-such-command",
     .versions = VBOTH,
     .message = "unknown command 'no-such-command'"},
    {.command = "blockdev-mirror",
     .args = "{\"job-id\":\"m\",\"device\":\"d\",\"target\":\"t\",\"sync\":\"fulll\"}",
     .versions = VBOTH,
     .message = "blockdev-mirror: member 'sync': 'fulll' is not one of "
                "top, full, none, incremental, bitmap"},
    {.command = "blockdev-mirror",
     .args = "{\"job-id\":\"m\",\"device\":\"d\",\"target\":\"t\"}",
     .versions = VBOTH,
     .message = "blockdev-mirror: missing required member 'sync'"},
    {.command = "blockdev-mirror",
     .args = "{\"device\":\"d\",\"target\":\"t\",\"sync\":\"full\",\"bogus\":1}",
     .versions = V72,
     .message = "blockdev-mirror: unknown member 'bogus' (expected one of job-id, device, "
                "target, replaces, sync, speed, granularity, buf-size, on-source-error, "
                "on-target-error, filter-node-name, copy-mode, ...)"},
    {.command = "blockdev-mirror",
     .args = "{\"device\":\"d\",\"target\":\"t\",\"sync\":\"full\",\"speed\":\"fast\"}",
     .versions = VBOTH,
     .message = "blockdev-mirror: member 'speed': expected integer, got string"},
    {.command = "blockdev-mirror",
     .args = "{\"device\":\"d\",\"target\":\"t\",\"sync\":\"full\",\"speed\":1.5}",
     .versions = VBOTH,
     .message = "blockdev-mirror: member 'speed': expected integer, got number"},
    {.command = "migrate-set-capabilities",
     .args = "{\"capabilities\":[{\"capability\":\"events\",\"state\":true},"
             "{\"capability\":\"pause-before-switchoverr\",\"state\":true}]}",
     .versions = V72,
     .message = "migrate-set-capabilities: member 'capabilities[1].capability': "
                "'pause-before-switchoverr' is not one of xbzrle, rdma-pin-all, auto-converge, "
                "zero-blocks, compress, events, postcopy-ram, x-colo, release-ram, block, ..."},
    {.command = "migrate-set-capabilities",
     .args = "{\"capabilities\":[{\"capability\":\"events\",\"state\":\"yes\"}]}",
     .versions = VBOTH,
     .message = "migrate-set-capabilities: member 'capabilities[0].state': "
                "expected boolean, got string"},
    {.command = "migrate-set-capabilities",
     .args = "{\"capabilities\":{\"capability\":\"events\",\"state\":true}}",
     .versions = VBOTH,
     .message = "migrate-set-capabilities: member 'capabilities': expected array, got object"},
    {.command = "migrate-set-capabilities",
     .args = "{\"capabilities\":[{\"capability\":\"events\"}]}",
     .versions = VBOTH,
     .message = "migrate-set-capabilities: missing required member 'capabilities[0].state'"},
    /* Nested objects: the server of an NBD client node. */
    {.command = "blockdev-add",
     .args = "{\"driver\":\"nbd\",\"node-name\":\"x\",\"server\":{\"type\":\"inet\","
             "\"host\":\"127.0.0.1\",\"port\":10809},\"export\":\"e\"}",
     .versions = VBOTH,
     .message = "blockdev-add: member 'server.port': expected string, got integer"},
    {.command = "blockdev-add",
     .args = "{\"driver\":\"nbd\",\"node-name\":\"x\",\"server\":{\"type\":\"inet\","
             "\"port\":\"10809\"}}",
     .versions = VBOTH,
     .message = "blockdev-add: missing required member 'server.host'"},
    {.command = "blockdev-add",
     .args = "{\"driver\":\"nbd\",\"node-name\":\"x\",\"server\":{\"type\":\"tcp\","
             "\"host\":\"h\",\"port\":\"1\"}}",
     .versions = V72,
     .message = "blockdev-add: member 'server.type': 'tcp' is not one of "
                "inet, unix, vsock, fd"},
    /* An unknown union variant, and members of another branch. */
    {.command = "blockdev-add",
     .args = "{\"driver\":\"nbdx\",\"node-name\":\"x\"}",
     .versions = V72,
     .message = "blockdev-add: member 'driver': 'nbdx' is not one of blkdebug, "
                "blklogwrites, blkreplay, blkverify, bochs, cloop, compress, copy-before-write, "
                "copy-on-read, dmg, ..."},
    {.command = "blockdev-add",
     .args = "{\"driver\":\"file\",\"node-name\":\"x\",\"filename\":\"/a\","
             "\"server\":{\"type\":\"inet\",\"host\":\"h\",\"port\":\"1\"}}",
     .versions = V72,
     .message = "blockdev-add: unknown member 'server' (expected one of driver, node-name, "
                "discard, cache, read-only, auto-read-only, force-share, detect-zeroes, "
                "filename, pr-manager, locking, aio, ...)"},
    {.command = "blockdev-add",
     .args = "{\"node-name\":\"x\"}",
     .versions = VBOTH,
     .message = "blockdev-add: missing required member 'driver'"},
    {.command = "block-export-add",
     .args = "{\"type\":\"nbd\",\"id\":\"e\",\"node-name\":\"n\",\"writable\":\"yes\"}",
     .versions = VBOTH,
     .message = "block-export-add: member 'writable': expected boolean, got string"},
    /* An alternate (BlockdevRef: a node name or an object) given neither. */
    {.command = "blockdev-add",
     .args = "{\"driver\":\"qcow2\",\"node-name\":\"fmt\",\"file\":7}",
     .versions = VBOTH,
     .message = "blockdev-add: member 'file': expected one of the JSON types object, "
                "string, got integer"},
    {.command = "blockdev-add",
     .args = "{\"driver\":\"qcow2\",\"node-name\":\"fmt\",\"file\":{\"driver\":\"file\"}}",
     .versions = VBOTH,
     .message = "blockdev-add: missing required member 'file.filename'"},
    {.command = "migrate",
     .args = "{\"uri\":\"tcp:h:1\",\"channels\":[]}",
     .versions = V72,
     .message = "migrate: unknown member 'channels' (expected one of uri, blk, inc, detach, "
                "resume)"},
    {.command = "migrate",
     .args = "{\"channels\":[{\"channel-type\":\"main\",\"addr\":{\"transport\":\"socket\","
             "\"type\":\"inet\",\"host\":\"127.0.0.1\"}}]}",
     .versions = V100,
     .message = "migrate: missing required member 'channels[0].addr.port'"},
    {.command = "migrate",
     .args = "{\"uri\":\"tcp:h:1\",\"blk\":true}",
     .versions = V100,
     .message = "migrate: unknown member 'blk' (expected one of uri, channels, detach, "
                "resume)"},
    {.command = "migrate", .versions = V72, .message = "migrate: missing required member 'uri'"},
    {.command = "migrate",
     .args = "[]",
     .versions = VBOTH,
     .message = "migrate: arguments must be an object, not array"},
    {.command = "migrate-continue",
     .args = "{\"state\":\"active\",\"x\":null}",
     .versions = VBOTH,
     .message = "migrate-continue: unknown member 'x' (expected one of state)"},
    {.command = "query-migrate",
     .args = "{\"verbose\":true}",
     .versions = VBOTH,
     .message = "query-migrate: unknown member 'verbose' (no members are accepted)"},
};

static void
check_invalid(const InvalidCase *c, QemuQapi *qapi, const char *vname)
{
    g_autoptr(json_object) args = NULL;
    const HoError *err;

    if (c->args) {
        args = ho_json_parse(c->args, strlen(c->args));
        g_assert_nonnull(args);
    }
    ho_error_reset();
    if (qemu_qapi_check_command(qapi, c->command, args) == 0) {
        g_test_message("%s %s %s accepted", vname, c->command, c->args ? c->args : "");
        g_test_fail();
        return;
    }
    err = ho_error_last();
    g_assert_nonnull(err);
    g_assert_cmpint(err->code, ==, HO_ERR_INVALID_ARG);
    if (strcmp(err->message, c->message) != 0) {
        g_test_message("%s %s %s:\n  expected: %s\n  got:      %s", vname, c->command,
                       c->args ? c->args : "", c->message, err->message);
        g_test_fail();
    }
}

static void
test_invalid(void)
{
    for (size_t i = 0; i < G_N_ELEMENTS(invalid_cases); i++) {
        const InvalidCase *c = &invalid_cases[i];

        if (c->versions & V72)
            check_invalid(c, schema72, "7.2");
        if (c->versions & V100)
            check_invalid(c, schema100, "10.0");
    }
}

/* The enum list in a message is cut after a few values; the value itself
 * is still checked against all of them. */
static void
test_enum_late_value(void)
{
    g_autoptr(json_object) args = NULL;
    const char *text = "{\"capabilities\":[{\"capability\":\"pause-before-switchover\","
                       "\"state\":true},{\"capability\":\"late-block-activate\",\"state\":true},"
                       "{\"capability\":\"return-path\",\"state\":false}]}";

    args = ho_json_parse(text, strlen(text));
    g_assert_cmpint(qemu_qapi_check_command(schema72, "migrate-set-capabilities", args), ==, 0);
    g_assert_cmpint(qemu_qapi_check_command(schema100, "migrate-set-capabilities", args), ==, 0);
}

static void
test_bad_schema(void)
{
    g_autoptr(json_object) obj = json_object_new_object();
    g_autoptr(json_object) arr = json_object_new_array();
    g_autoptr(json_object) small = NULL;
    g_autofree char *dir = test_make_tmpdir("qapi");
    g_autofree char *missing = g_build_filename(dir, "missing.json", NULL);
    g_autoptr(QemuQapi) qapi = NULL;
    const char *text =
        "[{\"name\":\"c\",\"meta-type\":\"command\",\"arg-type\":\"0\",\"ret-type\":\"0\"},"
        "{\"name\":\"0\",\"meta-type\":\"object\",\"members\":[]},"
        "{\"name\":\"d\",\"meta-type\":\"command\",\"arg-type\":\"1\",\"ret-type\":\"0\"},"
        "{\"name\":\"1\",\"meta-type\":\"object\",\"members\":[{\"name\":\"a\",\"type\":\"9\"}]}]";
    g_autoptr(json_object) args = ho_json_parse("{\"a\":1}", 7);

    ho_error_reset();
    g_assert_null(qemu_qapi_new(obj));
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_JSON);

    json_object_array_add(arr, json_object_new_object());
    ho_error_reset();
    g_assert_null(qemu_qapi_new(arr));
    g_assert_cmpstr(ho_error_last_message(), ==,
                    "query-qmp-schema entry 0 has no 'name' or 'meta-type'");

    ho_error_reset();
    g_assert_null(qemu_qapi_load(missing));
    g_assert_nonnull(strstr(ho_error_last_message(), missing));

    small = ho_json_parse(text, strlen(text));
    g_assert_nonnull(small);
    qapi = qemu_qapi_new(small);
    g_assert_nonnull(qapi);
    g_assert_cmpint(qemu_qapi_check_command(qapi, "c", NULL), ==, 0);
    /* A type the schema does not define is reported, not followed. */
    g_assert_cmpint(qemu_qapi_check_command(qapi, "d", args), ==, -1);
    g_assert_cmpstr(ho_error_last_message(), ==, "d: member 'a': type '9' is not in the schema");
}

int
main(int argc, char **argv)
{
    int rc;

    g_test_init(&argc, &argv, NULL);
    ho_log_init();
    schema72 = load_schema("qemu-7.2");
    schema100 = load_schema("qemu-10.0");

    g_test_add_func("/qapi/enum-members", test_enum_members);
    g_test_add_func("/qapi/valid", test_valid);
    g_test_add_func("/qapi/invalid", test_invalid);
    g_test_add_func("/qapi/enum-late-value", test_enum_late_value);
    g_test_add_func("/qapi/bad-schema", test_bad_schema);
    rc = g_test_run();

    qemu_qapi_free(schema72);
    qemu_qapi_free(schema100);
    return rc;
}
