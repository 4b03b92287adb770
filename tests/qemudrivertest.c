/*
 * Tests of the QEMU driver (qemu_driver.c) on real QEMUs, 7.2 and 10.0:
 * definitions, start with machine alias resolution, the status file,
 * suspend/resume, shutdown forced after a timeout, destroy, start paused,
 * failed starts leaving nothing behind, a "daemon restart" (the driver
 * freed while a QEMU runs, a new one reconnecting through a pidfd), QEMU
 * killed behind the driver's back, and status files that name a dead or
 * a foreign process.
 *
 * The driver runs in-process on a private context, on directories from
 * test_make_tmpdir(). QEMUs started by the driver are not started with
 * PR_SET_PDEATHSIG (a daemon's guests outlive it), so every pid the test
 * learns from the driver is killed at exit and from a SIGABRT handler
 * when an assertion fails; a pid is forgotten once the driver saw it exit.
 */
#define HO_LOG_MODULE "tests.driver"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ho_error.h"
#include "ho_file.h"
#include "ho_json.h"
#include "ho_log.h"
#include "ho_socket.h"
#include "qemu_domain.h"
#include "qemu_driver.h"
#include "qemu_migration.h"
#include "qemu_monitor_json.h"
#include "qemu_monitor.h"
#include "qemu_process.h"
#include "testqemu.h"
#include "testutils.h"

#define START_TIMEOUT_MS 60000
#define OP_TIMEOUT_MS 20000
#define UUID1 "6c3b9c2e-0d5f-4a38-9d3e-1f2a3b4c5d01"
#define UUID2 "6c3b9c2e-0d5f-4a38-9d3e-1f2a3b4c5d02"
#define UUID3 "6c3b9c2e-0d5f-4a38-9d3e-1f2a3b4c5d03"

/* ---- QEMUs to kill whatever happens (testqemu.h) ----------------------------- */

static bool
pid_alive(int pid)
{
    return kill(pid, 0) == 0;
}

/* ---- fixture ---------------------------------------------------------------- */

typedef struct {
    const TestQemuBinary *bin; /* NULL for tests without QEMU */
    char *dir;
    char *state_dir;
    char *runtime_dir;
    char *log_dir;
    GMainContext *ctx;
    QemuDriver *drv;
    GPtrArray *events; /* "name event detail" */
    const char *expect; /* an event to wait for */
    bool seen;
    const char *default_emulator;
    unsigned int probe_timeout_s;
    bool qemu_nice_set;
    int qemu_nice;
    bool own_ctx;
} Fx;

static void
event_cb(QemuDriver *drv, QemuDomainObj *dom, const char *event, const char *detail,
         void *opaque)
{
    Fx *f = opaque;
    char *line = g_strdup_printf("%s %s %s", qemu_domain_obj_name(dom), event,
                                 detail ? detail : "-");

    g_assert_true(drv == f->drv || !f->drv);
    if (f->expect && g_str_equal(line, f->expect))
        f->seen = true;
    g_ptr_array_add(f->events, line);
}

static void
fx_open(Fx *f)
{
    QemuDriverConfig cfg = {0};

    cfg.state_dir = f->state_dir;
    cfg.runtime_dir = f->runtime_dir;
    cfg.log_dir = f->log_dir;
    cfg.default_emulator = f->default_emulator;
    cfg.probe_timeout_s = f->probe_timeout_s;
    cfg.qemu_nice_set = f->qemu_nice_set;
    cfg.qemu_nice = f->qemu_nice;
    f->drv = NULL;
    f->drv = qemu_driver_open(&cfg, f->ctx, event_cb, f);
    if (!f->drv)
        g_error("cannot open the driver: %s", ho_error_last_message());
}

/* A driver on ctx (NULL: a new context of its own). */
static void
fx_init_full(Fx *f, const TestQemuBinary *bin, GMainContext *ctx, const char *default_emulator)
{
    memset(f, 0, sizeof(*f));
    f->bin = bin;
    f->dir = test_make_tmpdir("drv");
    f->state_dir = g_build_filename(f->dir, "state", NULL);
    f->runtime_dir = g_build_filename(f->dir, "run", NULL);
    f->log_dir = g_build_filename(f->dir, "log", NULL);
    f->ctx = ctx ? g_main_context_ref(ctx) : g_main_context_new();
    f->default_emulator = default_emulator;
    f->events = g_ptr_array_new_with_free_func(g_free);
    fx_open(f);
}

static void
fx_init(Fx *f, const TestQemuBinary *bin)
{
    fx_init_full(f, bin, NULL, NULL);
}

/* Let sources of closed connections go. */
static void
fx_drain(Fx *f)
{
    while (g_main_context_iteration(f->ctx, FALSE))
        ;
}

static void
fx_close(Fx *f)
{
    g_clear_pointer(&f->drv, qemu_driver_free);
    fx_drain(f);
}

static void
fx_fini(Fx *f)
{
    fx_close(f);
    test_qemu_cleanup_kill();
    g_ptr_array_unref(f->events);
    g_main_context_unref(f->ctx);
    (void)ho_file_remove_tree(f->dir);
    g_free(f->dir);
    g_free(f->state_dir);
    g_free(f->runtime_dir);
    g_free(f->log_dir);
}

/* The events so far, one per line, and forget them. */
static char *
fx_take_events(Fx *f)
{
    GString *s = g_string_new(NULL);

    for (guint i = 0; i < f->events->len; i++)
        g_string_append_printf(s, "%s\n", (char *)g_ptr_array_index(f->events, i));
    g_ptr_array_set_size(f->events, 0);
    return g_string_free(s, FALSE);
}

static void
fx_wait_event(Fx *f, const char *line, guint timeout_ms)
{
    for (guint i = 0; i < f->events->len; i++) {
        if (g_str_equal(g_ptr_array_index(f->events, i), line))
            return;
    }
    f->expect = line;
    f->seen = false;
    if (!test_iterate_until(f->ctx, &f->seen, timeout_ms)) {
        g_autofree char *events = fx_take_events(f);

        g_error("no event '%s' within %u ms; events:\n%s", line, timeout_ms, events);
    }
    f->expect = NULL;
}

typedef struct {
    bool done;
    HoError *err;
    bool forced;
} Done;

static void
done_cb(QemuDriver *drv, QemuDomainObj *dom, const HoError *err, void *opaque)
{
    Done *d = opaque;

    g_assert_false(d->done);
    d->done = true;
    d->err = ho_error_copy(err);
    d->forced = qemu_domain_obj_shutdown_forced(dom);
}

static void
done_clear(Done *d)
{
    ho_error_free(d->err);
    memset(d, 0, sizeof(*d));
}

static void
wait_done(Fx *f, Done *d, guint timeout_ms)
{
    if (!test_iterate_until(f->ctx, &d->done, timeout_ms))
        g_error("the operation did not complete within %u ms", timeout_ms);
}

/* Wait for the operation and expect success. */
static void
wait_ok(Fx *f, Done *d, guint timeout_ms, const char *what)
{
    wait_done(f, d, timeout_ms);
    if (d->err)
        g_error("%s failed: %s", what, d->err->message);
    done_clear(d);
}

/* Wait for the operation and expect code and a message containing text. */
static void
wait_error(Fx *f, Done *d, HoErrorCode code, const char *text)
{
    wait_done(f, d, OP_TIMEOUT_MS);
    if (!d->err)
        g_error("expected an error containing '%s'", text);
    if (d->err->code != code || !strstr(d->err->message, text))
        g_error("expected a %s error containing '%s', got %s: %s", ho_error_code_name(code),
                text, ho_error_code_name(d->err->code), d->err->message);
    done_clear(d);
}

typedef struct {
    bool done;
    unsigned int version; /* 0 on error */
    HoError *err;
} CapsDone;

static void
caps_cb(QemuDriver *drv, const QemuCaps *caps, const HoError *err, void *opaque)
{
    CapsDone *c = opaque;

    g_assert_false(c->done);
    c->done = true;
    g_assert_true((caps == NULL) != (err == NULL));
    c->version = caps ? qemu_caps_version(caps) : 0;
    c->err = ho_error_copy(err);
}

/* The capabilities of emulator through qemu_driver_get_caps(). */
static void
get_caps(Fx *f, const char *emulator, CapsDone *c)
{
    memset(c, 0, sizeof(*c));
    qemu_driver_get_caps(f->drv, emulator, caps_cb, c);
    g_assert_false(c->done);
    if (!test_iterate_until(f->ctx, &c->done, START_TIMEOUT_MS))
        g_error("qemu_driver_get_caps did not complete");
}

/* The modification time of the one capabilities cache file, in ns. */
static gint64
caps_file_mtime(Fx *f)
{
    g_autofree char *caps_dir = g_build_filename(f->state_dir, "caps", NULL);
    g_autoptr(GDir) dir = g_dir_open(caps_dir, 0, NULL);
    g_autofree char *path = NULL;
    const char *name;
    struct stat st;

    g_assert_nonnull(dir);
    name = g_dir_read_name(dir);
    g_assert_nonnull(name);
    g_assert_true(g_str_has_suffix(name, ".json"));
    path = g_build_filename(caps_dir, name, NULL);
    g_assert_null(g_dir_read_name(dir));
    g_assert_cmpint(stat(path, &st), ==, 0);
    return (gint64)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
}

static char *
guest_xml(const char *name, const char *uuid, const char *emulator, const char *machine,
          const char *devices)
{
    const char *type = g_str_equal(test_qemu_accel(NULL), "kvm") ? "kvm" : "qemu";

    return g_strdup_printf("<domain type='%s'>\n"
                           "  <name>%s</name>\n"
                           "  <uuid>%s</uuid>\n"
                           "  <memory unit='MiB'>128</memory>\n"
                           "  <vcpu>1</vcpu>\n"
                           "  <os>\n"
                           "    <type arch='x86_64' machine='%s'>hvm</type>\n"
                           "  </os>\n"
                           "  <devices>\n"
                           "    <emulator>%s</emulator>\n"
                           "%s"
                           "  </devices>\n"
                           "</domain>\n",
                           type, name, uuid, machine, emulator, devices ? devices : "");
}

static QemuDomainObj *
define_ok(Fx *f, const char *xml)
{
    QemuDomainObj *dom = qemu_driver_define(f->drv, xml);

    if (!dom)
        g_error("define failed: %s", ho_error_last_message());
    return dom;
}

static QemuDomainObj *
define_guest(Fx *f, const char *name, const char *uuid)
{
    g_autofree char *xml = guest_xml(name, uuid, f->bin->binary, "pc", NULL);

    return define_ok(f, xml);
}

/* Start and wait; returns the pid (learned for cleanup). */
static int
start_ok(Fx *f, QemuDomainObj *dom, bool paused)
{
    Done d = {0};
    int pid;

    qemu_driver_domain_start(f->drv, dom, paused, done_cb, &d);
    g_assert_false(d.done); /* never completes re-entrantly */
    wait_done(f, &d, START_TIMEOUT_MS);
    if (d.err) {
        g_autofree char *log = NULL;
        g_autofree char *path = g_strdup_printf("%s/%s.log", f->log_dir,
                                                qemu_domain_obj_name(dom));

        ho_file_append_flush();
        (void)g_file_get_contents(path, &log, NULL, NULL);
        g_error("start failed: %s\nlog:\n%s", d.err->message, log ? log : "");
    }
    done_clear(&d);
    pid = qemu_domain_obj_pid(dom);
    test_qemu_cleanup_learn(pid);
    return pid;
}

static char *
status_path(Fx *f, const char *name)
{
    return g_strdup_printf("%s/domains/%s.json", f->runtime_dir, name);
}

static json_object *
read_status(Fx *f, const char *name)
{
    g_autofree char *path = status_path(f, name);
    g_autofree char *text = NULL;
    size_t len;
    json_object *obj;

    if (ho_file_read_all(path, 4 * 1024 * 1024, &text, &len) < 0)
        g_error("%s", ho_error_last_message());
    if (!(obj = ho_json_parse(text, len)))
        g_error("%s: %s", path, ho_error_last_message());
    return obj;
}

static const char *
status_string(json_object *obj, const char *key)
{
    const char *s = NULL;

    if (ho_json_get_string(obj, key, &s) < 0)
        g_error("status file: %s", ho_error_last_message());
    return s;
}

static void
assert_status_state(Fx *f, const char *name, const char *state, const char *reason)
{
    g_autoptr(json_object) st = read_status(f, name);
    json_object *r = NULL;

    g_assert_cmpstr(status_string(st, "state"), ==, state);
    g_assert_true(json_object_object_get_ex(st, "reason", &r));
    g_assert_cmpstr(json_object_get_string(r), ==, reason);
}

static void
assert_no_status(Fx *f, const char *name)
{
    g_autofree char *path = status_path(f, name);
    g_autofree char *sock = g_strdup_printf("%s/domains/%s.qmp", f->runtime_dir, name);

    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    g_assert_false(g_file_test(sock, G_FILE_TEST_EXISTS));
}

/* "pc" of this QEMU: the concrete machine type query-machines names. */
static const char *
expected_machine(const TestQemuBinary *bin)
{
    if (g_str_equal(bin->name, "qemu-7.2"))
        return "pc-i440fx-7.2";
    if (g_str_equal(bin->name, "qemu-10.0"))
        return "pc-i440fx-10.0";
    g_error("unknown QEMU '%s'", bin->name);
    return NULL;
}

static char *
read_log(Fx *f, const char *name)
{
    g_autofree char *path = g_strdup_printf("%s/%s.log", f->log_dir, name);
    char *text = NULL;

    ho_file_append_flush(); /* the driver's lines are written on a thread */
    if (!g_file_get_contents(path, &text, NULL, NULL))
        g_error("no log '%s'", path);
    return text;
}


/* ---- definitions (no QEMU) -------------------------------------------------- */

static void
test_define(void)
{
    Fx f;
    g_autofree char *xml1 = guest_xml("vm1", UUID1, "/usr/bin/qemu-system-x86_64", "pc", NULL);
    g_autofree char *xml1b = NULL;
    g_autofree char *xml_other_uuid = guest_xml("vm1", UUID2, "/bin/true", "pc", NULL);
    g_autofree char *xml_other_name = guest_xml("vm2", UUID1, "/bin/true", "pc", NULL);
    g_autofree char *xml_a = guest_xml("a", UUID2, "/bin/true", "pc", NULL);
    g_autofree char *xml_b = guest_xml("b", UUID3, "/bin/true", "pc", NULL);
    g_autofree char *def_path = NULL;
    g_autofree char *saved = NULL;
    g_autofree char *saved2 = NULL;
    g_autofree char *events = NULL;
    g_autoptr(GPtrArray) list = NULL;
    QemuDomainObj *dom;
    QemuDomainObj *vm1;
    const HoError *err;
    Done d = {0};

    fx_init(&f, NULL);
    def_path = g_strdup_printf("%s/domains/vm1.xml", f.state_dir);

    vm1 = define_ok(&f, xml1);
    g_assert_cmpstr(qemu_domain_obj_name(vm1), ==, "vm1");
    g_assert_cmpstr(qemu_domain_obj_uuid(vm1), ==, UUID1);
    g_assert_true(qemu_domain_obj_is_persistent(vm1));
    g_assert_false(qemu_domain_obj_is_active(vm1));
    g_assert_cmpint(qemu_domain_obj_state(vm1), ==, QEMU_DOMAIN_STATE_SHUTOFF);
    g_assert_cmpint(qemu_domain_obj_pid(vm1), ==, 0);
    g_assert_null(qemu_domain_obj_monitor(vm1));
    g_assert_true(g_file_get_contents(def_path, &saved, NULL, NULL));
    g_assert_nonnull(strstr(saved, "<name>vm1</name>"));
    g_assert_nonnull(strstr(saved, "machine='pc'"));
    g_assert_true(qemu_driver_lookup(f.drv, "vm1") == vm1);
    g_assert_true(qemu_driver_lookup(f.drv, UUID1) == vm1);
    g_assert_true(qemu_driver_lookup(f.drv, "6C3B9C2E0D5F4A389D3E1F2A3B4C5D01") == vm1);

    ho_error_reset();
    g_assert_null(qemu_driver_lookup(f.drv, "nope"));
    err = ho_error_last();
    g_assert_nonnull(err);
    g_assert_cmpint(err->code, ==, HO_ERR_NO_DOMAIN);
    g_assert_cmpstr(err->message, ==, "no domain named 'nope'");
    g_assert_null(qemu_driver_lookup(f.drv, UUID3));
    g_assert_cmpstr(ho_error_last()->message, ==, "no domain with UUID '" UUID3 "'");

    /* Bad XML: an error, nothing defined. */
    g_assert_null(qemu_driver_define(f.drv, "<domain type='kvm'><name>bad</name>"));
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_XML);
    g_assert_null(qemu_driver_define(f.drv, "<domain type='kvm'><name>bad</name>"
                                            "<memory>1024</memory><os><type>hvm</type></os>"
                                            "<devices><sound model='ich9'/></devices>"
                                            "</domain>"));
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_XML);
    g_assert_nonnull(strstr(ho_error_last()->message, "sound"));
    g_assert_null(qemu_driver_lookup(f.drv, "bad"));

    /* Conflicts: refused, the saved definition unchanged. */
    g_assert_null(qemu_driver_define(f.drv, xml_other_uuid));
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_OPERATION_INVALID);
    g_assert_cmpstr(ho_error_last()->message, ==,
                    "domain 'vm1' already exists with UUID '" UUID1 "'");
    g_assert_null(qemu_driver_define(f.drv, xml_other_name));
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_OPERATION_INVALID);
    g_assert_cmpstr(ho_error_last()->message, ==,
                    "UUID '" UUID1 "' is already used by domain 'vm1'");
    g_assert_null(qemu_driver_lookup(f.drv, "vm2"));
    g_assert_true(g_file_get_contents(def_path, &saved2, NULL, NULL));
    g_assert_cmpstr(saved, ==, saved2);
    g_clear_pointer(&saved2, g_free);

    /* Same name and UUID: an update of the same object. */
    xml1b = g_strdup(xml1);
    g_assert_nonnull(strstr(xml1b, "128</memory>"));
    memcpy(strstr(xml1b, "128</memory>"), "256", 3);
    dom = define_ok(&f, xml1b);
    g_assert_true(dom == vm1);
    g_assert_cmpuint(qemu_domain_obj_def(vm1, true)->memory_kib, ==, 256 * 1024);
    g_assert_true(g_file_get_contents(def_path, &saved2, NULL, NULL));
    g_assert_nonnull(strstr(saved2, "262144"));

    define_ok(&f, xml_b);
    define_ok(&f, xml_a);
    list = qemu_driver_list(f.drv);
    g_assert_cmpuint(list->len, ==, 3);
    g_assert_cmpstr(qemu_domain_obj_name(g_ptr_array_index(list, 0)), ==, "a");
    g_assert_cmpstr(qemu_domain_obj_name(g_ptr_array_index(list, 1)), ==, "b");
    g_assert_cmpstr(qemu_domain_obj_name(g_ptr_array_index(list, 2)), ==, "vm1");

    /* Operations refused at once, never re-entrantly. */
    qemu_driver_domain_destroy(f.drv, vm1, done_cb, &d);
    g_assert_false(d.done);
    wait_error(&f, &d, HO_ERR_OPERATION_INVALID, "domain 'vm1' is not running");
    qemu_driver_domain_suspend(f.drv, vm1, done_cb, &d);
    wait_error(&f, &d, HO_ERR_OPERATION_INVALID, "domain 'vm1' is not running");
    qemu_driver_domain_shutdown(f.drv, vm1, 1, done_cb, &d);
    wait_error(&f, &d, HO_ERR_OPERATION_INVALID, "domain 'vm1' is not running");
    /* An emulator that does not exist fails the start, leaving nothing. */
    {
        g_autofree char *xml = guest_xml("noemu", "6c3b9c2e-0d5f-4a38-9d3e-1f2a3b4c5d09",
                                         "/nonexistent/qemu", "pc", NULL);
        QemuDomainObj *noemu = define_ok(&f, xml);

        qemu_driver_domain_start(f.drv, noemu, false, done_cb, &d);
        wait_error(&f, &d, HO_ERR_INVALID_ARG, "cannot use emulator '/nonexistent/qemu'");
        g_assert_cmpint(qemu_domain_obj_state(noemu), ==, QEMU_DOMAIN_STATE_SHUTOFF);
        g_assert_cmpstr(qemu_domain_obj_state_reason(noemu), ==, "failed");
        g_assert_false(qemu_domain_obj_is_active(noemu));
        assert_no_status(&f, "noemu");
        g_assert_cmpint(qemu_driver_undefine(f.drv, noemu), ==, 0);
    }

    qemu_domain_obj_ref(vm1);
    g_assert_cmpint(qemu_driver_undefine(f.drv, vm1), ==, 0);
    g_assert_false(g_file_test(def_path, G_FILE_TEST_EXISTS));
    g_assert_null(qemu_driver_lookup(f.drv, "vm1"));
    /* A stale object is refused, not used. */
    g_assert_cmpint(qemu_driver_undefine(f.drv, vm1), ==, -1);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_NO_DOMAIN);
    qemu_domain_obj_unref(vm1);

    events = fx_take_events(&f);
    g_assert_cmpstr(events, ==,
                    "vm1 defined added\n"
                    "vm1 defined updated\n"
                    "b defined added\n"
                    "a defined added\n"
                    "noemu defined added\n"
                    "noemu undefined removed\n"
                    "vm1 undefined removed\n");

    /* A new driver finds the definitions. */
    fx_close(&f);
    fx_open(&f);
    g_clear_pointer(&list, g_ptr_array_unref);
    list = qemu_driver_list(f.drv);
    g_assert_cmpuint(list->len, ==, 2);
    g_assert_cmpstr(qemu_domain_obj_uuid(qemu_driver_lookup(f.drv, "a")), ==, UUID2);
    g_assert_cmpstr(qemu_domain_obj_uuid(qemu_driver_lookup(f.drv, "b")), ==, UUID3);
    fx_drain(&f);
    g_assert_cmpuint(f.events->len, ==, 0);
    fx_fini(&f);
}

/* ---- lifecycle on real QEMU -------------------------------------------------------- */

static void
test_lifecycle(gconstpointer data)
{
    const TestQemuBinary *bin = test_qemu_need_binary(data);
    Fx f;
    QemuDomainObj *dom;
    g_autoptr(json_object) st = NULL;
    g_autoptr(QemuDomainDef) live = NULL;
    g_autoptr(json_object) info = NULL;
    g_autoptr(json_object) qs = NULL;
    g_autofree char *events = NULL;
    g_autofree char *log = NULL;
    g_autofree char *sock = NULL;
    CapsDone caps;
    gint64 cache_mtime;
    unsigned long long start_time = 0;
    const char *accel;
    int64_t num;
    json_object *val;
    Done d = {0};
    int pid;

    if (!bin)
        return;
    fx_init(&f, bin);
    accel = qemu_driver_accel(f.drv, NULL);
    dom = define_guest(&f, "vm", UUID1);
    pid = start_ok(&f, dom, false);

    g_assert_cmpint(qemu_domain_obj_state(dom), ==, QEMU_DOMAIN_STATE_RUNNING);
    g_assert_cmpstr(qemu_domain_obj_state_reason(dom), ==, "booted");
    g_assert_true(qemu_domain_obj_is_active(dom));
    g_assert_true(pid_alive(pid));
    g_assert_cmpstr(qemu_domain_obj_def(dom, false)->machine, ==, expected_machine(bin));
    g_assert_cmpstr(qemu_domain_obj_def(dom, true)->machine, ==, "pc");
    g_assert_nonnull(qemu_domain_obj_monitor(dom));
    g_assert_nonnull(qemu_domain_obj_caps(dom));
    g_assert_cmpuint(qemu_caps_version(qemu_domain_obj_caps(dom)) / 1000000, ==,
                     g_str_equal(bin->name, "qemu-7.2") ? 7 : 10);

    /* The status file says all a new driver needs. */
    st = read_status(&f, "vm");
    g_assert_cmpstr(status_string(st, "name"), ==, "vm");
    g_assert_cmpstr(status_string(st, "uuid"), ==, UUID1);
    g_assert_cmpint(ho_json_get_int64(st, "pid", &num), ==, 0);
    g_assert_cmpint(num, ==, pid);
    g_assert_cmpint(qemu_process_start_time(pid, &start_time), ==, 0);
    g_assert_cmpint(ho_json_get_int64(st, "pid_start_time", &num), ==, 0);
    g_assert_cmpuint((unsigned long long)num, ==, start_time);
    sock = g_strdup_printf("%s/domains/vm.qmp", f.runtime_dir);
    g_assert_cmpstr(status_string(st, "monitor"), ==, sock);
    g_assert_cmpstr(status_string(st, "state"), ==, "running");
    g_assert_cmpstr(status_string(st, "reason"), ==, "booted");
    g_assert_cmpstr(status_string(st, "emulator"), ==, bin->binary);
    g_assert_cmpstr(status_string(st, "accel"), ==,
                    g_str_equal(test_qemu_accel(NULL), "kvm") ? "kvm" : "tcg");
    g_assert_cmpstr(status_string(st, "accel"), ==, accel);
    live = qemu_domain_def_parse_string(status_string(st, "live_xml"), "live_xml");
    g_assert_nonnull(live);
    g_assert_cmpstr(live->machine, ==, expected_machine(bin));
    g_assert_cmpstr(live->name, ==, "vm");
    g_assert_true(json_object_object_get_ex(st, "persistent", &val));
    g_assert_true(json_object_get_boolean(val));
    g_assert_true(json_object_object_get_ex(st, "job", &val));
    g_assert_null(val);

    /* The capabilities cache: one file for this emulator, and the same
     * capabilities through the API, from memory. */
    cache_mtime = caps_file_mtime(&f);
    get_caps(&f, bin->binary, &caps);
    g_assert_null(caps.err);
    g_assert_cmpuint(caps.version, ==, qemu_caps_version(qemu_domain_obj_caps(dom)));
    g_assert_cmpint(caps_file_mtime(&f), ==, cache_mtime);
    get_caps(&f, NULL, &caps);
    g_assert_nonnull(caps.err);
    g_assert_cmpstr(caps.err->message, ==, "no default emulator is configured");
    ho_error_free(caps.err);
    get_caps(&f, "/nonexistent/qemu-system-x86_64", &caps);
    g_assert_nonnull(caps.err);
    g_assert_cmpint(caps.err->code, ==, HO_ERR_INVALID_ARG);
    g_assert_nonnull(strstr(caps.err->message, "cannot use emulator"));
    ho_error_free(caps.err);

    info = qemu_domain_obj_info_json(dom);
    g_assert_cmpint(ho_json_get_int64(info, "pid", &num), ==, 0);
    g_assert_cmpint(num, ==, pid);
    g_assert_cmpstr(json_object_get_string(json_object_object_get(info, "machine")), ==,
                    expected_machine(bin));
    g_assert_cmpstr(json_object_get_string(json_object_object_get(info, "state")), ==,
                    "running");
    g_assert_cmpint(ho_json_get_int64(info, "max_memory_kib", &num), ==, 0);
    g_assert_cmpint(num, ==, 128 * 1024);

    /* A second start is refused. */
    qemu_driver_domain_start(f.drv, dom, false, done_cb, &d);
    wait_error(&f, &d, HO_ERR_OPERATION_INVALID, "domain 'vm' is already running");

    /* suspend / resume, each persisted. */
    qemu_driver_domain_suspend(f.drv, dom, done_cb, &d);
    wait_ok(&f, &d, OP_TIMEOUT_MS, "suspend");
    g_assert_cmpint(qemu_domain_obj_state(dom), ==, QEMU_DOMAIN_STATE_PAUSED);
    g_assert_cmpstr(qemu_domain_obj_state_reason(dom), ==, "user");
    assert_status_state(&f, "vm", "paused", "user");
    qemu_driver_domain_suspend(f.drv, dom, done_cb, &d);
    wait_ok(&f, &d, OP_TIMEOUT_MS, "suspend again");
    g_assert_cmpint(qemu_monitor_send_sync(qemu_domain_obj_monitor(dom), "query-status", NULL, -1,
                                           &qs, OP_TIMEOUT_MS),
                    ==, 0);
    g_assert_false(json_object_get_boolean(json_object_object_get(qs, "running")));
    qemu_driver_domain_resume(f.drv, dom, done_cb, &d);
    wait_ok(&f, &d, OP_TIMEOUT_MS, "resume");
    g_assert_cmpint(qemu_domain_obj_state(dom), ==, QEMU_DOMAIN_STATE_RUNNING);
    g_assert_cmpstr(qemu_domain_obj_state_reason(dom), ==, "unpaused");
    assert_status_state(&f, "vm", "running", "unpaused");

    /* SeaBIOS ignores ACPI: the shutdown is forced after its timeout. */
    qemu_driver_domain_shutdown(f.drv, dom, 1, done_cb, &d);
    g_assert_cmpint(qemu_domain_obj_state(dom), ==, QEMU_DOMAIN_STATE_SHUTTING_DOWN);
    assert_status_state(&f, "vm", "shutting-down", "shutdown");
    wait_done(&f, &d, OP_TIMEOUT_MS);
    g_assert_null(d.err);
    g_assert_true(d.forced);
    done_clear(&d);
    test_qemu_cleanup_forget(pid);
    g_assert_true(qemu_domain_obj_shutdown_forced(dom));
    g_assert_cmpint(qemu_domain_obj_state(dom), ==, QEMU_DOMAIN_STATE_SHUTOFF);
    g_assert_cmpstr(qemu_domain_obj_state_reason(dom), ==, "destroyed");
    g_assert_cmpint(qemu_domain_obj_pid(dom), ==, 0);
    g_assert_null(qemu_domain_obj_monitor(dom));
    g_assert_null(qemu_domain_obj_caps(dom));
    g_assert_cmpstr(qemu_domain_obj_def(dom, false)->machine, ==, "pc");
    assert_no_status(&f, "vm");
    log = read_log(&f, "vm");
    g_assert_nonnull(strstr(log, "handoverd: starting: "));
    g_assert_nonnull(strstr(log, bin->binary));
    g_assert_nonnull(strstr(log, "-machine pc-i440fx-"));
    g_assert_nonnull(strstr(log, "handoverd: QEMU killed by signal 9"));
    events = fx_take_events(&f);
    g_assert_cmpstr(events, ==,
                    "vm defined added\n"
                    "vm started booted\n"
                    "vm suspended user\n"
                    "vm resumed unpaused\n"
                    "vm stopped destroyed\n");
    g_clear_pointer(&events, g_free);

    /* Start paused, then destroy. */
    pid = start_ok(&f, dom, true);
    g_assert_cmpint(qemu_domain_obj_state(dom), ==, QEMU_DOMAIN_STATE_PAUSED);
    g_assert_cmpstr(qemu_domain_obj_state_reason(dom), ==, "user");
    assert_status_state(&f, "vm", "paused", "user");
    g_clear_pointer(&qs, json_object_put);
    g_assert_cmpint(qemu_monitor_send_sync(qemu_domain_obj_monitor(dom), "query-status", NULL, -1,
                                           &qs, OP_TIMEOUT_MS),
                    ==, 0);
    g_assert_cmpstr(json_object_get_string(json_object_object_get(qs, "status")), ==,
                    "prelaunch");
    qemu_driver_domain_destroy(f.drv, dom, done_cb, &d);
    wait_ok(&f, &d, OP_TIMEOUT_MS, "destroy");
    test_qemu_cleanup_forget(pid);
    g_assert_false(d.forced);
    g_assert_cmpint(qemu_domain_obj_state(dom), ==, QEMU_DOMAIN_STATE_SHUTOFF);
    g_assert_cmpstr(qemu_domain_obj_state_reason(dom), ==, "destroyed");
    assert_no_status(&f, "vm");
    qemu_driver_domain_destroy(f.drv, dom, done_cb, &d);
    wait_error(&f, &d, HO_ERR_OPERATION_INVALID, "domain 'vm' is not running");
    events = fx_take_events(&f);
    g_assert_cmpstr(events, ==,
                    "vm started booted\n"
                    "vm suspended paused\n"
                    "vm stopped destroyed\n");
    fx_fini(&f);
}

/* ---- starts that fail leave nothing behind ------------------------------------- */

static int dead_pid(void);

typedef struct {
    bool done;
    json_object *info;
} InfoWait;

static void
info_got(json_object *info, const HoError *err, void *opaque)
{
    InfoWait *w = opaque;

    if (err)
        g_error("job info: %s", err->message);
    w->info = json_object_get(info);
    w->done = true;
}

/* Every thread of pid is at nice; returns how many there are. */
static int
assert_threads_nice(int pid, int nice)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/task", pid);
    g_autoptr(GDir) dir = g_dir_open(path, 0, NULL);
    const char *name;
    int n = 0;

    g_assert_nonnull(dir);
    while ((name = g_dir_read_name(dir))) {
        int got;

        errno = 0;
        got = getpriority(PRIO_PROCESS, (id_t)atoi(name));
        if (got == -1 && errno == ESRCH)
            continue; /* exited meanwhile */
        if (got != nice)
            g_error("thread %s of QEMU %d runs at nice %d, not %d", name, pid, got, nice);
        n++;
    }
    return n;
}

/* A QEMU starts in a session of its own (so in a scheduler autogroup of
 * its own, at 0) and at the driver's qemu_nice rather than the caller's;
 * qemu_process_set_nice reaches every thread and the autogroup, and puts
 * them back. */
static void
test_process_nice(gconstpointer data)
{
    const TestQemuBinary *bin = test_qemu_need_binary(data);
    g_autofree char *xml = NULL;
    QemuProcessNice own, got, up, now, boosted;
    QemuDomainObj *dom;
    Done d = {0};
    Fx f;
    int pid, threads;

    if (!bin)
        return;
    g_assert_cmpint(qemu_process_get_nice(getpid(), &own), ==, 0);
    fx_init(&f, bin);
    fx_close(&f);
    f.qemu_nice_set = true;
    f.qemu_nice = MIN(own.threads + 2, 16);
    fx_open(&f);
    xml = guest_xml("nicer", UUID1, bin->binary, "pc", NULL);
    dom = define_ok(&f, xml);
    pid = start_ok(&f, dom, true);
    g_assert_cmpint(getsid(pid), ==, pid);
    g_assert_cmpint(qemu_process_get_nice(pid, &got), ==, 0);
    g_assert_cmpint(got.threads, ==, f.qemu_nice);
    threads = assert_threads_nice(pid, f.qemu_nice);
    g_assert_cmpint(threads, >=, 2); /* QEMU runs an RCU thread at least */
    g_assert_cmpint(got.has_group, ==, g_file_test("/proc/self/autogroup", G_FILE_TEST_EXISTS));
    if (got.has_group)
        g_assert_cmpint(got.group, ==, 0); /* a new session's */

    /* Down in priority: no privilege needed. */
    up = got;
    up.threads = got.threads + 3;
    up.group = got.group + 3;
    g_assert_cmpint(qemu_process_set_nice(pid, &up), ==, assert_threads_nice(pid, up.threads));
    g_assert_cmpint(qemu_process_get_nice(pid, &now), ==, 0);
    g_assert_cmpint(now.threads, ==, up.threads);
    if (got.has_group)
        g_assert_cmpint(now.group, ==, up.group);
    /* And back up, as at the end of a switchover. */
    if (geteuid() == 0) {
        g_assert_cmpint(qemu_process_set_nice(pid, &got), >=, 2);
        assert_threads_nice(pid, got.threads);
        g_assert_cmpint(qemu_process_get_nice(pid, &now), ==, 0);
        g_assert_cmpint(now.group, ==, got.group);
    } else {
        g_test_message("not root: raising the priority again is not tried (needs "
                       "CAP_SYS_NICE)");
    }

    qemu_process_nice_boost(&got, 3, &boosted);
    g_assert_cmpint(boosted.threads, ==, got.threads - 3);
    g_assert_cmpint(boosted.group, ==, got.group - 3);
    g_assert_cmpint(boosted.has_group, ==, got.has_group);
    qemu_process_nice_boost(&got, 100, &boosted);
    g_assert_cmpint(boosted.threads, ==, -20);
    g_assert_cmpint(boosted.group, ==, -20);

    qemu_driver_domain_destroy(f.drv, dom, done_cb, &d);
    wait_ok(&f, &d, OP_TIMEOUT_MS, "destroy");
    test_qemu_cleanup_forget(pid);
    /* A process that is gone: an error naming it. */
    g_assert_cmpint(qemu_process_set_nice(dead_pid(), &got), ==, -1);
    g_assert_nonnull(strstr(ho_error_last_message(), "process"));
    ho_error_reset();
    fx_fini(&f);
}

static void
test_start_failure(gconstpointer data)
{
    const TestQemuBinary *bin = test_qemu_need_binary(data);
    Fx f;
    g_autofree char *xml_machine = NULL;
    g_autofree char *xml_disk = NULL;
    g_autofree char *log = NULL;
    g_autofree char *events = NULL;
    QemuDomainObj *dom;
    Done d = {0};

    if (!bin)
        return;
    fx_init(&f, bin);

    xml_machine = guest_xml("nomachine", UUID1, bin->binary, "no-such-machine", NULL);
    dom = define_ok(&f, xml_machine);
    qemu_driver_domain_start(f.drv, dom, false, done_cb, &d);
    wait_error(&f, &d, HO_ERR_NO_SUPPORT, "does not support machine type 'no-such-machine'");
    g_assert_cmpint(qemu_domain_obj_state(dom), ==, QEMU_DOMAIN_STATE_SHUTOFF);
    g_assert_cmpint(qemu_domain_obj_pid(dom), ==, 0);
    assert_no_status(&f, "nomachine");

    /* QEMU itself fails: its own words make the error. */
    xml_disk = guest_xml("nodisk", UUID2, bin->binary, "pc",
                         "    <disk type='file' device='disk'>\n"
                         "      <driver name='qemu' type='qcow2'/>\n"
                         "      <source file='/nonexistent/disk.qcow2'/>\n"
                         "      <target dev='vda' bus='virtio'/>\n"
                         "    </disk>\n");
    dom = define_ok(&f, xml_disk);
    qemu_driver_domain_start(f.drv, dom, false, done_cb, &d);
    wait_error(&f, &d, HO_ERR_SYSTEM, "QEMU of domain 'nodisk' exited with status 1 while "
                                      "starting: ");
    g_assert_cmpint(qemu_domain_obj_state(dom), ==, QEMU_DOMAIN_STATE_SHUTOFF);
    g_assert_cmpstr(qemu_domain_obj_state_reason(dom), ==, "failed");
    g_assert_cmpint(qemu_domain_obj_pid(dom), ==, 0);
    assert_no_status(&f, "nodisk");
    log = read_log(&f, "nodisk");
    g_assert_nonnull(strstr(log, "/nonexistent/disk.qcow2"));
    g_assert_nonnull(strstr(log, "handoverd: start failed: "));

    events = fx_take_events(&f);
    g_assert_cmpstr(events, ==,
                    "nomachine defined added\n"
                    "nodisk defined added\n");
    fx_fini(&f);
}

/* ---- the daemon restarts: the QEMU is found again ------------------------------- */

static void
test_restart(gconstpointer data)
{
    const TestQemuBinary *bin = test_qemu_need_binary(data);
    Fx f;
    QemuDomainObj *dom;
    g_autofree char *events = NULL;
    g_autofree char *path = NULL;
    g_autofree char *log = NULL;
    CapsDone caps;
    gint64 cache_mtime;
    int status;
    Done d = {0};
    int pid;

    if (!bin)
        return;
    fx_init(&f, bin);
    dom = define_guest(&f, "vm", UUID1);
    pid = start_ok(&f, dom, false);
    fx_close(&f);

    /* The guest outlives the driver; its status stays. */
    g_assert_true(pid_alive(pid));
    g_assert_cmpint(waitpid(pid, &status, WNOHANG), ==, 0);
    path = status_path(&f, "vm");
    g_assert_true(g_file_test(path, G_FILE_TEST_EXISTS));
    g_ptr_array_set_size(f.events, 0);

    cache_mtime = caps_file_mtime(&f);
    fx_open(&f);
    dom = qemu_driver_lookup(f.drv, "vm");
    g_assert_nonnull(dom);
    g_assert_cmpint(qemu_domain_obj_pid(dom), ==, pid);
    fx_wait_event(&f, "vm started reconnected", OP_TIMEOUT_MS);
    /* A new driver reads the cache file (not rewritten: no new probe). */
    get_caps(&f, bin->binary, &caps);
    g_assert_null(caps.err);
    g_assert_cmpuint(caps.version / 1000000, ==, g_str_equal(bin->name, "qemu-7.2") ? 7 : 10);
    g_assert_cmpint(caps_file_mtime(&f), ==, cache_mtime);
    g_assert_cmpint(qemu_domain_obj_state(dom), ==, QEMU_DOMAIN_STATE_RUNNING);
    g_assert_cmpstr(qemu_domain_obj_state_reason(dom), ==, "booted");
    g_assert_nonnull(qemu_domain_obj_monitor(dom));
    g_assert_nonnull(qemu_domain_obj_caps(dom));
    g_assert_true(qemu_domain_obj_is_persistent(dom));
    g_assert_cmpstr(qemu_domain_obj_def(dom, false)->machine, ==, expected_machine(bin));
    g_assert_cmpstr(qemu_domain_obj_def(dom, true)->machine, ==, "pc");

    /* The reconnected monitor works. */
    qemu_driver_domain_suspend(f.drv, dom, done_cb, &d);
    wait_ok(&f, &d, OP_TIMEOUT_MS, "suspend");
    assert_status_state(&f, "vm", "paused", "user");

    /* Not our child any more (to the driver): its exit comes through the pidfd. */
    qemu_driver_domain_destroy(f.drv, dom, done_cb, &d);
    wait_ok(&f, &d, OP_TIMEOUT_MS, "destroy");
    test_qemu_cleanup_forget(pid);
    g_assert_cmpint(qemu_domain_obj_state(dom), ==, QEMU_DOMAIN_STATE_SHUTOFF);
    g_assert_cmpstr(qemu_domain_obj_state_reason(dom), ==, "destroyed");
    assert_no_status(&f, "vm");
    /* It was this process's child after all: the pidfd reaped it. */
    g_assert_cmpint(waitpid(pid, &status, WNOHANG), ==, -1);
    g_assert_cmpint(errno, ==, ECHILD);
    log = read_log(&f, "vm");
    g_assert_nonnull(strstr(log, "handoverd: reconnected to QEMU pid"));
    events = fx_take_events(&f);
    g_assert_cmpstr(events, ==,
                    "vm started reconnected\n"
                    "vm suspended user\n"
                    "vm stopped destroyed\n");
    fx_fini(&f);
}

/* ---- a QEMU whose monitor cannot be reached is kept, not killed ------------------ */

static void
test_monitor_unavailable(gconstpointer data)
{
    const TestQemuBinary *bin = test_qemu_need_binary(data);
    Fx f;
    QemuDomainObj *dom;
    g_autoptr(json_object) st = NULL;
    g_autofree char *path = NULL;
    g_autofree char *text = NULL;
    g_autofree char *events = NULL;
    g_autofree char *log = NULL;
    Done d = {0};
    int pid;

    if (!bin)
        return;
    fx_init(&f, bin);
    dom = define_guest(&f, "vm", UUID1);
    pid = start_ok(&f, dom, false);
    fx_close(&f);
    g_ptr_array_set_size(f.events, 0);

    /* Point the status file at a socket nobody listens on. */
    st = read_status(&f, "vm");
    json_object_object_add(st, "monitor", json_object_new_string("/nonexistent/vm.qmp"));
    text = ho_json_to_string(st);
    path = status_path(&f, "vm");
    g_assert_cmpint(ho_file_write_atomic(path, text, strlen(text), 0600), ==, 0);

    if (!g_getenv("HANDOVER_LOG_LEVEL"))
        ho_log_set_level(HO_LOG_ERROR); /* the expected warning */
    fx_open(&f);
    fx_wait_event(&f, "vm started reconnected", OP_TIMEOUT_MS);
    if (!g_getenv("HANDOVER_LOG_LEVEL"))
        ho_log_set_level(HO_LOG_WARN);
    dom = qemu_driver_lookup(f.drv, "vm");
    g_assert_cmpint(qemu_domain_obj_pid(dom), ==, pid);
    g_assert_true(pid_alive(pid));
    g_assert_cmpint(qemu_domain_obj_state(dom), ==, QEMU_DOMAIN_STATE_RUNNING);
    g_assert_cmpstr(qemu_domain_obj_state_reason(dom), ==, "monitor-unavailable");
    g_assert_null(qemu_domain_obj_monitor(dom));
    assert_status_state(&f, "vm", "running", "monitor-unavailable");
    log = read_log(&f, "vm");
    g_assert_nonnull(strstr(log, "handoverd: cannot reconnect to the monitor: "));

    qemu_driver_domain_suspend(f.drv, dom, done_cb, &d);
    wait_error(&f, &d, HO_ERR_OPERATION_INVALID, "the monitor of domain 'vm' is not available");
    qemu_driver_domain_shutdown(f.drv, dom, 1, done_cb, &d);
    wait_error(&f, &d, HO_ERR_OPERATION_INVALID, "the monitor of domain 'vm' is not available");
    /* destroy needs no monitor. */
    qemu_driver_domain_destroy(f.drv, dom, done_cb, &d);
    wait_ok(&f, &d, OP_TIMEOUT_MS, "destroy");
    test_qemu_cleanup_forget(pid);
    g_assert_cmpstr(qemu_domain_obj_state_reason(dom), ==, "destroyed");
    assert_no_status(&f, "vm");
    events = fx_take_events(&f);
    g_assert_cmpstr(events, ==,
                    "vm started reconnected\n"
                    "vm stopped destroyed\n");
    fx_fini(&f);
}

/* ---- QEMU killed behind the driver's back ------------------------------------ */

static void
test_crash(gconstpointer data)
{
    const TestQemuBinary *bin = test_qemu_need_binary(data);
    Fx f;
    QemuDomainObj *dom;
    g_autofree char *events = NULL;
    g_autofree char *xml = NULL;
    int pid;

    if (!bin)
        return;
    fx_init(&f, bin);

    /* Our child: the child watch notices. */
    dom = define_guest(&f, "vm", UUID1);
    pid = start_ok(&f, dom, false);
    g_assert_cmpint(kill(pid, SIGKILL), ==, 0);
    fx_wait_event(&f, "vm stopped crashed", OP_TIMEOUT_MS);
    test_qemu_cleanup_forget(pid);
    g_assert_cmpint(qemu_domain_obj_state(dom), ==, QEMU_DOMAIN_STATE_SHUTOFF);
    g_assert_cmpstr(qemu_domain_obj_state_reason(dom), ==, "crashed");
    assert_no_status(&f, "vm");

    /* Reconnected: the pidfd notices. */
    pid = start_ok(&f, dom, false);
    fx_close(&f);
    events = fx_take_events(&f);
    g_assert_cmpstr(events, ==,
                    "vm defined added\n"
                    "vm started booted\n"
                    "vm stopped crashed\n"
                    "vm started booted\n");
    g_clear_pointer(&events, g_free);
    fx_open(&f);
    dom = qemu_driver_lookup(f.drv, "vm");
    fx_wait_event(&f, "vm started reconnected", OP_TIMEOUT_MS);
    g_assert_cmpint(kill(pid, SIGKILL), ==, 0);
    fx_wait_event(&f, "vm stopped crashed", OP_TIMEOUT_MS);
    test_qemu_cleanup_forget(pid);
    g_assert_cmpstr(qemu_domain_obj_state_reason(dom), ==, "crashed");
    assert_no_status(&f, "vm");

    /* A transient domain disappears when its QEMU goes. */
    xml = guest_xml("tr", UUID2, bin->binary, "pc", NULL);
    dom = define_ok(&f, xml);
    pid = start_ok(&f, dom, false);
    g_assert_cmpint(qemu_driver_undefine(f.drv, dom), ==, 0);
    g_assert_false(qemu_domain_obj_is_persistent(dom));
    g_assert_true(qemu_domain_obj_is_active(dom));
    g_assert_true(qemu_driver_lookup(f.drv, "tr") == dom);
    {
        g_autoptr(json_object) st = read_status(&f, "tr");

        g_assert_false(json_object_get_boolean(json_object_object_get(st, "persistent")));
    }
    g_assert_cmpint(kill(pid, SIGKILL), ==, 0);
    fx_wait_event(&f, "tr stopped crashed", OP_TIMEOUT_MS);
    test_qemu_cleanup_forget(pid);
    g_assert_null(qemu_driver_lookup(f.drv, "tr"));
    assert_no_status(&f, "tr");

    events = fx_take_events(&f);
    g_assert_cmpstr(events, ==,
                    "vm started reconnected\n"
                    "vm stopped crashed\n"
                    "tr defined added\n"
                    "tr started booted\n"
                    "tr undefined removed\n"
                    "tr stopped crashed\n");
    fx_fini(&f);
}

/* ---- status files of dead or foreign processes ------------------------------------ */

/* A status file as a driver writes it. */
static void
write_status(Fx *f, const char *name, const char *uuid, int pid, unsigned long long start_time,
             const char *reason, bool persistent)
{
    g_autofree char *xml = guest_xml(name, uuid, "/usr/bin/qemu-system-x86_64", "pc-i440fx-7.2",
                                     NULL);
    g_autoptr(json_object) obj = json_object_new_object();
    g_autofree char *dir = g_build_filename(f->runtime_dir, "domains", NULL);
    g_autofree char *path = status_path(f, name);
    g_autofree char *sock = g_strdup_printf("%s/%s.qmp", dir, name);
    g_autofree char *text = NULL;

    ho_json_add_string(obj, "name", name);
    ho_json_add_string(obj, "uuid", uuid);
    ho_json_add_int64(obj, "pid", pid);
    ho_json_add_int64(obj, "pid_start_time", (int64_t)start_time);
    ho_json_add_string(obj, "monitor", sock);
    ho_json_add_string(obj, "state", "running");
    ho_json_add_string(obj, "reason", reason);
    ho_json_add_string(obj, "emulator", "/usr/bin/qemu-system-x86_64");
    ho_json_add_string(obj, "accel", "kvm");
    ho_json_add_string(obj, "live_xml", xml);
    ho_json_add_bool(obj, "persistent", persistent);
    ho_json_add(obj, "job", NULL);
    text = ho_json_to_string(obj);
    g_assert_cmpint(ho_file_ensure_dir(dir, 0700), ==, 0);
    g_assert_cmpint(ho_file_write_atomic(path, text, strlen(text), 0600), ==, 0);
}

/* A pid that no longer runs: a child that exited and was reaped. */
static int
dead_pid(void)
{
    const char *argv[] = {"true", NULL};
    GPid pid;
    int status;

    g_assert_true(g_spawn_async(NULL, (char **)argv, NULL,
                                G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL,
                                &pid, NULL));
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    return pid;
}

static void
test_stale_status(void)
{
    Fx f;
    g_autofree char *xml = NULL;
    g_autofree char *kept_path = NULL;
    g_autofree char *bad_path = NULL;
    g_autofree char *events = NULL;
    g_autofree char *sleeper_status = NULL;
    const char *argv[] = {"sleep", "600", NULL};
    unsigned long long self_start = 0;
    unsigned long long sleeper_start = 0;
    QemuDomainObj *kept;
    GPid sleeper;
    int status;

    fx_init(&f, NULL);
    /* The driver warns about each of these files: expected here. */
    if (!g_getenv("HANDOVER_LOG_LEVEL"))
        ho_log_set_level(HO_LOG_ERROR);
    /* A persistent domain whose QEMU died while no driver ran. */
    xml = guest_xml("kept", UUID1, "/usr/bin/qemu-system-x86_64", "pc", NULL);
    define_ok(&f, xml);
    fx_close(&f);
    g_ptr_array_set_size(f.events, 0);
    write_status(&f, "kept", UUID1, dead_pid(), 12345, "booted", true);
    /* A transient one likewise. */
    write_status(&f, "ghost", UUID2, dead_pid(), 12345, "booted", false);
    /* A live process, but not the one the file means (the start time differs):
     * this very test, which must not be touched. */
    g_assert_cmpint(qemu_process_start_time(getpid(), &self_start), ==, 0);
    write_status(&f, "foreign", UUID3, getpid(), self_start + 1, "booted", false);
    /* A start that never finished: its process is killed. */
    g_assert_true(g_spawn_async(NULL, (char **)argv, NULL,
                                G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD |
                                    G_SPAWN_STDOUT_TO_DEV_NULL,
                                NULL, NULL, &sleeper, NULL));
    test_qemu_cleanup_learn(sleeper);
    g_assert_cmpint(qemu_process_start_time(sleeper, &sleeper_start), ==, 0);
    /* Field 22 is in clock ticks since boot: a process just started began
     * about /proc/uptime seconds after boot. */
    {
        g_autofree char *uptime = NULL;
        double up;
        double started = (double)sleeper_start / (double)sysconf(_SC_CLK_TCK);

        g_assert_true(g_file_get_contents("/proc/uptime", &uptime, NULL, NULL));
        up = g_ascii_strtod(uptime, NULL);
        g_assert_cmpfloat(started, <=, up + 0.5);
        g_assert_cmpfloat(started, >=, up - 5.0);
        g_assert_cmpuint(self_start, <=, sleeper_start);
    }
    write_status(&f, "halfway", "6c3b9c2e-0d5f-4a38-9d3e-1f2a3b4c5d04", sleeper, sleeper_start,
                 "starting", false);
    /* Garbage: left alone, ignored. */
    bad_path = status_path(&f, "garbage");
    g_assert_true(g_file_set_contents(bad_path, "{\"name\": 1", -1, NULL));

    fx_open(&f);
    kept = qemu_driver_lookup(f.drv, "kept");
    g_assert_nonnull(kept);
    g_assert_cmpint(qemu_domain_obj_state(kept), ==, QEMU_DOMAIN_STATE_SHUTOFF);
    g_assert_cmpstr(qemu_domain_obj_state_reason(kept), ==, "qemu-exited");
    g_assert_cmpint(qemu_domain_obj_pid(kept), ==, 0);
    g_assert_null(qemu_driver_lookup(f.drv, "ghost"));
    g_assert_null(qemu_driver_lookup(f.drv, "foreign"));
    assert_no_status(&f, "kept");
    assert_no_status(&f, "ghost");
    assert_no_status(&f, "foreign");
    g_assert_true(pid_alive(getpid()));
    kept_path = g_strdup_printf("%s/domains/kept.xml", f.state_dir);
    g_assert_true(g_file_test(kept_path, G_FILE_TEST_EXISTS));
    g_assert_true(g_file_test(bad_path, G_FILE_TEST_EXISTS));

    fx_wait_event(&f, "halfway stopped failed", OP_TIMEOUT_MS);
    test_qemu_cleanup_forget(sleeper);
    /* Killed (and, being our child, reaped through the pidfd). */
    g_assert_cmpint(waitpid(sleeper, &status, WNOHANG), ==, -1);
    g_assert_null(qemu_driver_lookup(f.drv, "halfway"));
    assert_no_status(&f, "halfway");

    events = fx_take_events(&f);
    g_assert_cmpstr(events, ==,
                    "foreign stopped qemu-exited\n"
                    "ghost stopped qemu-exited\n"
                    "kept stopped qemu-exited\n"
                    "halfway stopped failed\n");
    fx_fini(&f);
    if (!g_getenv("HANDOVER_LOG_LEVEL"))
        ho_log_set_level(HO_LOG_WARN);
}

/* ---- hooks of the migration orchestrator ---------------------------------------- */

/* A job record set through the driver is in the status file before the
 * call returns, and a new driver (a restarted daemon) finds it again. */
static void
test_job_persist(gconstpointer data)
{
    const TestQemuBinary *bin = test_qemu_need_binary(data);
    g_autofree char *line = NULL;
    g_autoptr(json_object) st = NULL;
    json_object *job = NULL;
    QemuDomainObj *dom;
    Fx f;
    Done d = {0};
    int pid;

    if (!bin)
        return;
    fx_init(&f, bin);
    dom = define_guest(&f, "jobby", UUID1);
    pid = start_ok(&f, dom, false);
    g_assert_null(qemu_domain_obj_get_job(dom));
    job = json_object_new_object();
    ho_json_add_string(job, "phase", "perform");
    g_assert_cmpint(qemu_driver_domain_set_job(f.drv, dom, job), ==, 0);
    st = read_status(&f, "jobby");
    g_assert_true(json_object_object_get_ex(st, "job", &job));
    g_assert_cmpstr(status_string(job, "phase"), ==, "perform");

    /* While a job is set, STOP changes the state in memory only. */
    qemu_driver_domain_suspend(f.drv, dom, done_cb, &d);
    wait_ok(&f, &d, OP_TIMEOUT_MS, "suspend");
    g_assert_cmpint(qemu_domain_obj_state(dom), ==, QEMU_DOMAIN_STATE_PAUSED);
    assert_status_state(&f, "jobby", "running", "booted");

    fx_close(&f);
    g_assert_true(pid_alive(pid));
    fx_open(&f);
    dom = qemu_driver_lookup(f.drv, "jobby");
    g_assert_nonnull(dom);
    fx_wait_event(&f, "jobby started reconnected", START_TIMEOUT_MS);
    g_assert_nonnull(qemu_domain_obj_get_job(dom));
    g_assert_cmpstr(status_string(qemu_domain_obj_get_job(dom), "phase"), ==, "perform");
    /* query-status told the new driver the truth. */
    g_assert_cmpint(qemu_domain_obj_state(dom), ==, QEMU_DOMAIN_STATE_PAUSED);

    g_assert_cmpint(qemu_driver_domain_set_job(f.drv, dom, NULL), ==, 0);
    g_clear_pointer(&st, json_object_put);
    st = read_status(&f, "jobby");
    g_assert_true(json_object_object_get_ex(st, "job", &job));
    g_assert_null(job);
    g_assert_cmpstr(status_string(st, "state"), ==, "paused");

    qemu_driver_domain_destroy(f.drv, dom, done_cb, &d);
    wait_ok(&f, &d, OP_TIMEOUT_MS, "destroy");
    test_qemu_cleanup_forget(pid);
    fx_fini(&f);
}

static void
status_cb(QemuMonitor *mon, const QemuMonitorStatus *st, const HoError *err, void *opaque)
{
    QemuRunState *out = opaque;

    g_assert_null(err);
    *out = st->state;
}

/* Incoming start: the destination's own emulator, the source's concrete
 * machine type, -S -incoming defer, never cont'ed, transient; a clash with
 * an active domain is refused at once; destroying it leaves nothing. */
static void
test_incoming_start(gconstpointer data)
{
    const TestQemuBinary *bin = test_qemu_need_binary(data);
    g_autofree char *xml = NULL;
    g_autofree char *log = NULL;
    g_autoptr(QemuDomainDef) def = NULL;
    QemuRunState rs = QEMU_RUN_STATE_LAST;
    QemuDomainObj *dom;
    QemuDomainObj *other;
    json_object *job;
    Fx f;
    Done d = {0};
    int pid;

    if (!bin)
        return;
    fx_init_full(&f, bin, NULL, bin->binary);
    /* The source's XML names another emulator; the caller clears it. */
    xml = guest_xml("incoming", UUID2, "/nonexistent/qemu", "pc-i440fx-7.2", NULL);
    def = qemu_domain_def_parse_string(xml, NULL);
    g_assert_nonnull(def);
    g_clear_pointer(&def->emulator, g_free);
    job = json_object_new_object();
    ho_json_add_string(job, "side", "dst");
    dom = qemu_driver_domain_start_incoming(f.drv, def, NULL, job, done_cb, &d);
    g_assert_nonnull(dom);
    g_assert_false(d.done);
    /* The same name again while it starts: refused, nothing changed. */
    other = qemu_driver_domain_start_incoming(f.drv, def, NULL, NULL, done_cb, &d);
    g_assert_null(other);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_OPERATION_INVALID);
    ho_error_reset();
    wait_ok(&f, &d, START_TIMEOUT_MS, "incoming start");
    pid = qemu_domain_obj_pid(dom);
    test_qemu_cleanup_learn(pid);
    g_assert_cmpint(qemu_domain_obj_state(dom), ==, QEMU_DOMAIN_STATE_PAUSED);
    g_assert_cmpstr(qemu_domain_obj_state_reason(dom), ==, "incoming-migration");
    g_assert_false(qemu_domain_obj_is_persistent(dom));
    g_assert_cmpstr(qemu_domain_obj_def(dom, false)->machine, ==, "pc-i440fx-7.2");
    g_assert_cmpstr(qemu_domain_obj_emulator(dom), ==, bin->binary);
    g_assert_nonnull(qemu_domain_obj_get_job(dom));
    assert_status_state(&f, "incoming", "paused", "incoming-migration");
    log = read_log(&f, "incoming");
    g_assert_nonnull(strstr(log, "-incoming defer"));
    g_assert_nonnull(strstr(log, "pc-i440fx-7.2"));
    qemu_monitor_json_query_status(qemu_domain_obj_monitor(dom), status_cb, &rs);
    while (rs == QEMU_RUN_STATE_LAST)
        g_main_context_iteration(f.ctx, TRUE);
    g_assert_cmpint(rs, ==, QEMU_RUN_STATE_INMIGRATE);

    qemu_driver_domain_destroy(f.drv, dom, done_cb, &d);
    wait_ok(&f, &d, OP_TIMEOUT_MS, "destroy");
    test_qemu_cleanup_forget(pid);
    g_assert_null(qemu_driver_lookup(f.drv, "incoming"));
    ho_error_reset();
    assert_no_status(&f, "incoming");
    fx_fini(&f);
}

/* ---- a migration through the orchestrator, two drivers in one process ---- */

typedef struct {
    QemuMigration *dst;
    const char *host_uuid;
} TestPeer;

static void
peer_prepare(void *peer, json_object *cookie, QemuMigrationReplyFunc cb, void *opaque)
{
    TestPeer *p = peer;

    qemu_migration_dst_prepare(p->dst, cookie, cb, opaque);
    json_object_put(cookie);
}

static void
peer_finish(void *peer, json_object *args, QemuMigrationReplyFunc cb, void *opaque)
{
    TestPeer *p = peer;

    qemu_migration_dst_finish(p->dst, args, cb, opaque);
    json_object_put(args);
}

static const char *
peer_host_uuid(void *peer)
{
    return ((TestPeer *)peer)->host_uuid;
}

static const char *
peer_hostname(void *peer)
{
    return "dst-host";
}

static const QemuMigrationPeerOps test_peer_ops = {
    .prepare = peer_prepare,
    .finish = peer_finish,
    .host_uuid = peer_host_uuid,
    .hostname = peer_hostname,
    .free = g_free,
};

typedef struct {
    bool done;
    HoError *err;
    json_object *stats;
} MigDone;

static void
mig_done_cb(QemuMigration *mig, const char *uuid, const HoError *err, json_object *stats,
            void *opaque)
{
    MigDone *m = opaque;

    g_assert_false(m->done);
    m->done = true;
    m->err = ho_error_copy(err);
    m->stats = stats ? json_object_get(stats) : NULL;
}

/* The end of a migration test: both sides' migration modules, the
 * arguments and the outcome freed; the domain left running (left, on
 * owner's driver, QEMU pid left_pid; NULL: none) destroyed; both fixtures
 * torn down. */
static void
mig_test_end(Fx *fs, Fx *fd, QemuMigration *smig, QemuMigration *dmig, QemuMigrationArgs *args,
             MigDone *m, Fx *owner, QemuDomainObj *left, int left_pid)
{
    qemu_migration_free(smig);
    qemu_migration_free(dmig);
    qemu_migration_args_clear(args);
    ho_error_free(m->err);
    json_object_put(m->stats);
    if (left) {
        Done d = {0};

        qemu_driver_domain_destroy(owner->drv, left, done_cb, &d);
        wait_ok(owner, &d, OP_TIMEOUT_MS, "destroy");
        test_qemu_cleanup_forget(left_pid);
    }
    fx_fini(fd);
    fx_fini(fs);
}

/* The monotonic times of the first and last messages in a recording
 * going dir ("recv", "send") whose key ("event", "execute") is name
 * (-1: none). */
static void
record_times(const char *path, const char *dir_want, const char *key, const char *name_want,
             gint64 *first, gint64 *last)
{
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;

    *first = *last = -1;
    if (!g_file_get_contents(path, &text, NULL, NULL))
        g_error("no recording '%s'", path);
    lines = g_strsplit(text, "\n", -1);
    for (guint i = 0; lines[i]; i++) {
        g_autoptr(json_object) obj = NULL;
        json_object *msg = NULL;
        const char *name = NULL;
        const char *dir = NULL;
        int64_t ts = 0;

        if (!lines[i][0])
            continue;
        obj = ho_json_parse(lines[i], strlen(lines[i]));
        g_assert_nonnull(obj);
        if (ho_json_get_string(obj, "dir", &dir) < 0 || !g_str_equal(dir, dir_want) ||
            ho_json_get_object(obj, "msg", &msg) < 0 ||
            ho_json_opt_string(msg, key, &name) <= 0 || !g_str_equal(name, name_want)) {
            ho_error_reset();
            continue;
        }
        g_assert_cmpint(ho_json_get_int64(obj, "ts", &ts), ==, 0);
        if (*first < 0)
            *first = ts;
        *last = ts;
    }
}

/* The monotonic receive times of events in a recording (-1: none). */
static void
record_event_times(const char *path, const char *event, gint64 *first, gint64 *last)
{
    record_times(path, "recv", "event", event, first, last);
}

/* The monotonic time a command was first sent in a recording (-1: never). */
static gint64
record_send_time(const char *path, const char *command)
{
    gint64 first, last;

    record_times(path, "send", "execute", command, &first, &last);
    return first;
}

static char *record_sequence(const char *path, bool *resume_after_pc);

/* Storage copy: the mirrors were cancelled, and the last of them ended
 * (BLOCK_JOB_COMPLETED or _CANCELLED), before migrate-continue went out. */
static void
record_cancel_before_continue(const char *path)
{
    gint64 cancel = record_send_time(path, "block-job-cancel");
    gint64 cont = record_send_time(path, "migrate-continue");
    gint64 done_first, done_last, can_first, can_last;

    record_event_times(path, "BLOCK_JOB_COMPLETED", &done_first, &done_last);
    record_event_times(path, "BLOCK_JOB_CANCELLED", &can_first, &can_last);
    g_assert_cmpint(cancel, >, 0);
    g_assert_cmpint(cont, >, cancel);
    g_assert_true(done_last > 0 || can_last > 0);
    g_assert_cmpint(MAX(done_last, can_last), <, cont);
}

static void
test_migrate(gconstpointer data)
{
    const char *const *pair = data;
    const TestQemuBinary *sbin = test_qemu_need(pair[0]);
    const TestQemuBinary *dbin = sbin ? test_qemu_need(pair[1]) : NULL;
    g_autoptr(GMainContext) ctx = NULL;
    g_autofree char *xml = NULL;
    g_autofree char *rec_src = NULL;
    g_autofree char *rec_dst = NULL;
    QemuMigrationConfig scfg = {0}, dcfg = {0};
    QemuMigrationArgs args = {0};
    QemuMigration *smig, *dmig;
    QemuDomainObj *dom, *ddom;
    TestPeer *peer, *same;
    MigDone m = {0};
    Fx fs, fd;
    int spid, dpid;
    gint64 src_stop, src_stop_last, src_resume, src_resume_last, dst_resume, dst_resume_last;
    int64_t downtime = -1, orch = -1;
    int busy_fd;

    if (!sbin || !dbin)
        return;
    ctx = g_main_context_new();
    fx_init_full(&fs, sbin, ctx, NULL);
    fx_init_full(&fd, dbin, ctx, dbin->binary);
    xml = guest_xml("mover", UUID3, sbin->binary, "pc", NULL);
    dom = define_ok(&fs, xml);
    spid = start_ok(&fs, dom, false);

    scfg.host_uuid = "11111111-1111-1111-1111-111111111111";
    scfg.hostname = "src-host";
    dcfg.host_uuid = "22222222-2222-2222-2222-222222222222";
    dcfg.hostname = "dst-host";
    dcfg.migration_address = "127.0.0.1";
    dcfg.migration_port_min = 49400;
    dcfg.migration_port_max = 49420;
    /* Each side's QEMU is boosted while the guest is paused for the
     * switchover, and put back at the end. */
    scfg.switchover_boost = dcfg.switchover_boost = 4;
    /* Another process holds the first port of the range: it is skipped
     * (QEMU 10.0 cannot retry migrate-incoming after a failure). */
    busy_fd = ho_socket_tcp_listen("127.0.0.1", 49400, 1, NULL);
    g_assert_cmpint(busy_fd, >=, 0);
    smig = qemu_migration_new(fs.drv, &scfg, NULL, NULL);
    dmig = qemu_migration_new(fd.drv, &dcfg, NULL, NULL);

    /* The same host is refused at once, nothing changed. */
    same = g_new0(TestPeer, 1);
    same->dst = dmig;
    same->host_uuid = scfg.host_uuid;
    args.live = true;
    /* same is consumed (freed with test_peer_ops.free) */
    g_assert_cmpint(qemu_migration_src_begin(smig, dom, &args, &test_peer_ops, same,
                                             mig_done_cb, &m), ==, -1);
    g_assert_nonnull(strstr(ho_error_last_message(), "host it runs on"));
    ho_error_reset();
    g_assert_false(qemu_migration_any_has_job(smig, dom));

    rec_src = g_build_filename(fs.dir, "rec.jsonl", NULL);
    rec_dst = g_build_filename(fs.dir, "rec-dst.jsonl", NULL);
    args.record_path = g_strdup(rec_src);
    args.persistent = true;
    args.undefine_source = true;
    peer = g_new0(TestPeer, 1);
    peer->dst = dmig;
    peer->host_uuid = dcfg.host_uuid;
    if (qemu_migration_src_begin(smig, dom, &args, &test_peer_ops, peer, mig_done_cb, &m) < 0)
        g_error("begin: %s", ho_error_last_message());
    g_assert_true(qemu_migration_any_has_job(smig, dom));
    /* A second job on the same domain is refused. */
    g_assert_cmpint(qemu_migration_src_begin(smig, dom, &args, &test_peer_ops,
                                             g_new0(TestPeer, 1), mig_done_cb, &m), ==, -1);
    ho_error_reset();
    if (!test_iterate_until(ctx, &m.done, START_TIMEOUT_MS))
        g_error("the migration did not end");
    if (m.err)
        g_error("migration failed: %s", m.err->message);
    /* The source is gone, the destination runs, persistent. */
    fx_wait_event(&fs, "mover stopped migrated", OP_TIMEOUT_MS);
    test_qemu_cleanup_forget(spid);
    g_assert_false(pid_alive(spid) && qemu_domain_obj_is_active(dom));
    g_assert_null(qemu_driver_lookup(fs.drv, "mover"));
    ho_error_reset();
    ddom = qemu_driver_lookup(fd.drv, "mover");
    g_assert_nonnull(ddom);
    dpid = qemu_domain_obj_pid(ddom);
    test_qemu_cleanup_learn(dpid);
    g_assert_cmpint(qemu_domain_obj_state(ddom), ==, QEMU_DOMAIN_STATE_RUNNING);
    g_assert_cmpstr(qemu_domain_obj_state_reason(ddom), ==, "migrated");
    g_assert_true(qemu_domain_obj_is_persistent(ddom));
    g_assert_null(qemu_domain_obj_get_job(ddom));
    g_assert_cmpstr(qemu_domain_obj_def(ddom, false)->machine, ==, expected_machine(sbin));
    g_assert_cmpstr(qemu_domain_obj_emulator(ddom), ==, dbin->binary);
    assert_status_state(&fd, "mover", "running", "migrated");
    g_assert_nonnull(m.stats);
    g_assert_cmpint(ho_json_get_int64(m.stats, "downtime_ms", &downtime), ==, 0);
    g_assert_cmpint(ho_json_get_int64(m.stats, "orchestrator_ms", &orch), ==, 0);
    {
        QemuProcessNice own, dst_now;
        int64_t boosted = 99;

        g_assert_cmpint(qemu_process_get_nice(getpid(), &own), ==, 0);
        g_assert_cmpint(qemu_process_get_nice(dpid, &dst_now), ==, 0);
        /* The destination's QEMU runs on at the value it started at. */
        assert_threads_nice(dpid, own.threads);
        if (dst_now.has_group)
            g_assert_cmpint(dst_now.group, ==, 0);
        if (geteuid() == 0) {
            InfoWait w = {0};

            g_assert_cmpint(ho_json_get_int64(m.stats, "switchover_nice", &boosted), ==, 0);
            g_assert_cmpint(boosted, ==, MAX(-20, own.threads - 4));
            qemu_migration_any_job_info(dmig, ddom, true, info_got, &w);
            if (!test_iterate_until(ctx, &w.done, OP_TIMEOUT_MS))
                g_error("no job info from the destination");
            boosted = 99;
            g_assert_cmpint(ho_json_get_int64(w.info, "switchover_nice", &boosted), ==, 0);
            g_assert_cmpint(boosted, ==, MAX(-20, own.threads - 4));
            json_object_put(w.info);
        } else {
            g_test_message("not root: no switchover boost to check");
        }
    }

    /* Invariant 1 from both recordings (one clock): the source stopped
     * before the destination resumed and never resumed afterwards. */
    record_event_times(rec_src, "STOP", &src_stop, &src_stop_last);
    record_event_times(rec_src, "RESUME", &src_resume, &src_resume_last);
    record_event_times(rec_dst, "RESUME", &dst_resume, &dst_resume_last);
    g_assert_cmpint(src_stop, >, 0);
    g_assert_cmpint(dst_resume, >, 0);
    g_assert_cmpint(src_stop, <, dst_resume);
    g_assert_cmpint(src_resume_last, <, dst_resume);
    g_test_message("%s -> %s: pause (source STOP -> destination RESUME) %.3f ms, "
                   "QEMU downtime %" G_GINT64_FORMAT " ms, orchestrator %" G_GINT64_FORMAT " ms",
                   pair[0], pair[1], (dst_resume - src_stop) / 1000.0, (gint64)downtime,
                   (gint64)orch);

    close(busy_fd);
    mig_test_end(&fs, &fd, smig, dmig, &args, &m, &fd, ddom, dpid);
}

typedef struct {
    QemuMigration *mig;
    QemuDomainObj *dom;
    bool aborted;
} AbortAt;

static void
abort_at_perform(QemuMigration *mig, const char *name, const char *uuid, const char *event,
                 json_object *data, void *opaque)
{
    AbortAt *a = opaque;
    const char *phase = NULL;

    if (a->aborted || !g_str_equal(event, "phase") ||
        ho_json_get_string(data, "phase", &phase) < 0 || !g_str_equal(phase, "perform"))
        return;
    a->aborted = true;
    if (qemu_migration_any_abort(a->mig, a->dom) < 0)
        g_error("abort: %s", ho_error_last_message());
}

/* domjobabort while RAM moves (bandwidth throttled to 1 MiB/s): the job
 * ends cancelled, the source runs on, nothing is left on the destination. */
static void
test_migrate_abort(gconstpointer data)
{
    const TestQemuBinary *bin = test_qemu_need_binary(data);
    g_autoptr(GMainContext) ctx = NULL;
    g_autofree char *xml = NULL;
    QemuMigrationConfig scfg = {0}, dcfg = {0};
    QemuMigrationArgs args = {0};
    QemuMigration *dmig;
    AbortAt a = {0};
    TestPeer *peer;
    MigDone m = {0};
    Fx fs, fd;
    int spid;

    if (!bin)
        return;
    ctx = g_main_context_new();
    fx_init_full(&fs, bin, ctx, NULL);
    fx_init_full(&fd, bin, ctx, bin->binary);
    xml = guest_xml("stayer", UUID3, bin->binary, "pc", NULL);
    a.dom = define_ok(&fs, xml);
    spid = start_ok(&fs, a.dom, false);
    scfg.host_uuid = "11111111-1111-1111-1111-111111111111";
    dcfg.host_uuid = "22222222-2222-2222-2222-222222222222";
    dcfg.migration_address = "127.0.0.1";
    dcfg.migration_port_min = 49430;
    dcfg.migration_port_max = 49440;
    a.mig = qemu_migration_new(fs.drv, &scfg, abort_at_perform, &a);
    dmig = qemu_migration_new(fd.drv, &dcfg, NULL, NULL);
    peer = g_new0(TestPeer, 1);
    peer->dst = dmig;
    peer->host_uuid = dcfg.host_uuid;
    args.live = true;
    args.has_bandwidth = true;
    args.bandwidth_mib = 1;
    if (qemu_migration_src_begin(a.mig, a.dom, &args, &test_peer_ops, peer, mig_done_cb, &m) < 0)
        g_error("begin: %s", ho_error_last_message());
    if (!test_iterate_until(ctx, &m.done, START_TIMEOUT_MS))
        g_error("the migration did not end");
    g_assert_true(a.aborted);
    g_assert_nonnull(m.err);
    g_assert_nonnull(strstr(m.err->message, "cancelled"));
    g_assert_cmpint(qemu_domain_obj_state(a.dom), ==, QEMU_DOMAIN_STATE_RUNNING);
    g_assert_cmpint(qemu_domain_obj_pid(a.dom), ==, spid);
    g_assert_null(qemu_domain_obj_get_job(a.dom));
    assert_status_state(&fs, "stayer", "running", "booted");
    /* The destination's QEMU is killed and its transient domain gone. */
    fx_wait_event(&fd, "stayer stopped destroyed", OP_TIMEOUT_MS);
    g_assert_null(qemu_driver_lookup(fd.drv, "stayer"));
    ho_error_reset();
    g_assert_false(qemu_migration_any_has_job(dmig, a.dom));

    qemu_migration_free(a.mig);
    qemu_migration_free(dmig);
    ho_error_free(m.err);
    json_object_put(m.stats);
    {
        Done d = {0};

        qemu_driver_domain_destroy(fs.drv, a.dom, done_cb, &d);
        wait_ok(&fs, &d, OP_TIMEOUT_MS, "destroy");
        test_qemu_cleanup_forget(spid);
    }
    fx_fini(&fd);
    fx_fini(&fs);
}

/* ---- storage copy through the orchestrator, two drivers in one process ---- */

static void
peer_nbd_stop(void *peer, json_object *args, QemuMigrationReplyFunc cb, void *opaque)
{
    TestPeer *p = peer;

    qemu_migration_dst_nbd_stop(p->dst, args, cb, opaque);
    json_object_put(args);
}

static const QemuMigrationPeerOps storage_peer_ops = {
    .prepare = peer_prepare,
    .finish = peer_finish,
    .host_uuid = peer_host_uuid,
    .hostname = peer_hostname,
    .free = g_free,
    .nbd_stop = peer_nbd_stop,
};

/* Run a command to its end (tests only); its output, or a test error. */
static char *
run_tool(const char *const *argv, bool must_succeed)
{
    g_autoptr(GError) gerr = NULL;
    g_autofree char *out = NULL;
    g_autofree char *err = NULL;
    int status = 0;

    if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, &err,
                      &status, &gerr))
        g_error("cannot run %s: %s", argv[0], gerr->message);
    if (must_succeed && !g_spawn_check_wait_status(status, NULL))
        g_error("%s %s failed: %s%s", argv[0], argv[1], out, err);
    if (!must_succeed && g_spawn_check_wait_status(status, NULL))
        return g_strdup("");
    return g_strconcat(out, err, NULL);
}

/* The source images: vda qcow2 16 MiB with 5 MiB of a pattern, vdb raw
 * 8 MiB with 2 MiB of another, written before QEMU starts. */
static void
make_src_images(const char *qcow2, const char *raw)
{
    const char *c1[] = {"qemu-img", "create", "-q", "-f", "qcow2", qcow2, "16M", NULL};
    const char *c2[] = {"qemu-img", "create", "-q", "-f", "raw", raw, "8M", NULL};
    const char *w1[] = {"qemu-io", "-f", "qcow2", "-c", "write -P 0xa5 1M 5M", qcow2, NULL};
    const char *w2[] = {"qemu-io", "-f", "raw", "-c", "write -P 0x3c 4M 2M", raw, NULL};

    g_free(run_tool(c1, true));
    g_free(run_tool(c2, true));
    g_free(run_tool(w1, true));
    g_free(run_tool(w2, true));
}

static char *
storage_xml(const char *name, const char *uuid, const char *emulator, const char *qcow2,
            const char *raw)
{
    g_autofree char *disks = g_strdup_printf("    <disk type='file' device='disk'>\n"
                                             "      <driver name='qemu' type='qcow2'/>\n"
                                             "      <source file='%s'/>\n"
                                             "      <target dev='vda' bus='virtio'/>\n"
                                             "    </disk>\n"
                                             "    <disk type='file' device='disk'>\n"
                                             "      <driver name='qemu' type='raw'/>\n"
                                             "      <source file='%s'/>\n"
                                             "      <target dev='vdb' bus='virtio'/>\n"
                                             "    </disk>\n",
                                             qcow2, raw);

    return guest_xml(name, uuid, emulator, "pc", disks);
}

/* The paths and destination XML of a storage test (storage_begin). */
typedef struct {
    char *src_qcow2;
    char *src_raw;
    char *dst_qcow2;
    char *dst_raw;
    char *dxml;
} StoragePaths;

static void
storage_paths_clear(StoragePaths *p)
{
    g_free(p->src_qcow2);
    g_free(p->src_raw);
    g_free(p->dst_qcow2);
    g_free(p->dst_raw);
    g_free(p->dxml);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(StoragePaths, storage_paths_clear)

/* The setup the storage migration tests share: both fixtures on ctx (the
 * destination's with dbin's emulator), the source's two images made and
 * the destination's chosen (p), the domain name (UUID3) defined and
 * started on the source; its QEMU's pid in *spid. */
static QemuDomainObj *
storage_begin(Fx *fs, Fx *fd, GMainContext *ctx, const TestQemuBinary *sbin,
              const TestQemuBinary *dbin, const char *name, StoragePaths *p, int *spid)
{
    g_autofree char *xml = NULL;
    QemuDomainObj *dom;

    fx_init_full(fs, sbin, ctx, NULL);
    fx_init_full(fd, dbin, ctx, dbin->binary);
    p->src_qcow2 = g_build_filename(fs->dir, "vda.qcow2", NULL);
    p->src_raw = g_build_filename(fs->dir, "vdb.raw", NULL);
    p->dst_qcow2 = g_build_filename(fd->dir, "vda.qcow2", NULL);
    p->dst_raw = g_build_filename(fd->dir, "vdb.raw", NULL);
    make_src_images(p->src_qcow2, p->src_raw);
    xml = storage_xml(name, UUID3, sbin->binary, p->src_qcow2, p->src_raw);
    p->dxml = storage_xml(name, UUID3, dbin->binary, p->dst_qcow2, p->dst_raw);
    dom = define_ok(fs, xml);
    *spid = start_ok(fs, dom, false);
    return dom;
}

typedef struct {
    QemuMigration *mig;
    QemuDomainObj *dom;
    const char *at;     /* abort when this phase begins, or NULL */
    bool aborted;
    bool postcopy;      /* switch to postcopy once PERFORM began */
    bool perform;
    bool switched;      /* migrate-start-postcopy accepted */
    GPtrArray *phases;  /* "mirror", ... */
    bool saw_disk_progress;
    GPtrArray *warnings;
    QemuDriver *dst_drv; /* where the destination QEMU's NBD connections are counted */
    int nbd_lo, nbd_hi;  /* its NBD port range */
    int nbd_conns;       /* at PERFORM: its accepted NBD connections, */
    int nbd_nodelay;     /* and how many of them have Nagle off */
} StorageWatch;

/* The connected TCP sockets of process pid whose local port is in [lo, hi]
 * (a server's accepted connections), and how many have TCP_NODELAY set:
 * each one duplicated out of the process with pidfd_getfd. */
static void
count_nodelay(int pid, int lo, int hi, int *conns, int *nodelay)
{
    g_autofree char *dir = g_strdup_printf("/proc/%d/fd", pid);
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    int pfd = pidfd_open(pid, 0);
    const char *e;

    *conns = *nodelay = 0;
    g_assert_nonnull(d);
    if (pfd < 0)
        g_error("pidfd_open(%d): %s", pid, g_strerror(errno));
    while ((e = g_dir_read_name(d))) {
        g_autofree char *link = g_strdup_printf("%s/%s", dir, e);
        g_autofree char *target = g_file_read_link(link, NULL);
        struct sockaddr_storage ss, peer;
        socklen_t len = sizeof(ss), plen = sizeof(peer);
        int on = 0;
        socklen_t olen = sizeof(on);
        int port;
        int fd;

        if (!target || !g_str_has_prefix(target, "socket:"))
            continue;
        fd = pidfd_getfd(pfd, atoi(e), 0);
        if (fd < 0)
            continue; /* closed meanwhile */
        if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0 &&
            (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) &&
            getpeername(fd, (struct sockaddr *)&peer, &plen) == 0) {
            port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                                 : ((struct sockaddr_in6 *)&ss)->sin6_port);
            if (port >= lo && port <= hi) {
                g_assert_cmpint(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &olen), ==, 0);
                (*conns)++;
                if (on)
                    (*nodelay)++;
            }
        }
        close(fd);
    }
    close(pfd);
}

static void
storage_event(QemuMigration *mig, const char *name, const char *uuid, const char *event,
              json_object *data, void *opaque)
{
    StorageWatch *w = opaque;
    const char *phase = NULL;

    if (g_str_equal(event, "warning")) {
        const char *msg = NULL;

        if (ho_json_get_string(data, "message", &msg) == 0)
            g_ptr_array_add(w->warnings, g_strdup(msg));
        ho_error_reset();
        return;
    }
    if (g_str_equal(event, "progress")) {
        if (json_object_object_get_ex(data, "disk_total", NULL))
            w->saw_disk_progress = true;
        goto postcopy;
    }
    if (!g_str_equal(event, "phase") || ho_json_get_string(data, "phase", &phase) < 0) {
        ho_error_reset();
        return;
    }
    g_ptr_array_add(w->phases, g_strdup(phase));
    if (g_str_equal(phase, "perform")) {
        QemuDomainObj *ddom = qemu_driver_lookup(w->dst_drv, qemu_domain_obj_name(w->dom));

        w->perform = true;
        /* Every mirror is READY: each has its NBD connection open. */
        g_assert_nonnull(ddom);
        count_nodelay(qemu_domain_obj_pid(ddom), w->nbd_lo, w->nbd_hi, &w->nbd_conns,
                      &w->nbd_nodelay);
    }
    if (w->at && !w->aborted && g_str_equal(phase, w->at)) {
        w->aborted = true;
        if (qemu_migration_any_abort(w->mig, w->dom) < 0)
            g_error("abort: %s", ho_error_last_message());
    }
postcopy:
    /* QEMU refuses the switch until migrate went out: the next progress
     * event tries again. */
    if (w->postcopy && w->perform && !w->switched && qemu_migration_any_has_job(w->mig, w->dom)) {
        if (qemu_migration_src_start_postcopy(w->mig, w->dom) == 0)
            w->switched = true;
        ho_error_reset();
    }
}

static int64_t
stats_int(json_object *stats, const char *key)
{
    int64_t v = -1;

    if (ho_json_get_int64(stats, key, &v) < 0)
        g_error("no '%s' in the job statistics: %s", key, ho_error_last_message());
    return v;
}

/* --copy-storage-all of a firmware guest with a qcow2 and a raw disk:
 * the destination creates its images, the mirrors copy them, the
 * switchover ends the mirrors, the images compare equal; with an abort
 * phase: the source runs on with its disks and the destination's images
 * are gone. */
static void
run_storage(const char *const *pair, const char *abort_at, bool postcopy)
{
    const TestQemuBinary *sbin = test_qemu_need(pair[0]);
    const TestQemuBinary *dbin = sbin ? test_qemu_need(pair[1]) : NULL;
    g_autoptr(GMainContext) ctx = NULL;
    g_auto(StoragePaths) p = {0};
    g_autofree char *rec_src = NULL, *rec_dst = NULL;
    QemuMigrationConfig scfg = {0}, dcfg = {0};
    QemuMigrationArgs args = {0};
    StorageWatch w = {0};
    QemuMigration *dmig;
    QemuDomainObj *ddom;
    TestPeer *peer;
    MigDone m = {0};
    Fx fs, fd;
    int spid;
    int busy;

    if (!sbin || !dbin)
        return;
    ctx = g_main_context_new();
    w.dom = storage_begin(&fs, &fd, ctx, sbin, dbin, "copier", &p, &spid);

    scfg.host_uuid = "11111111-1111-1111-1111-111111111111";
    scfg.hostname = "src-host";
    dcfg.host_uuid = "22222222-2222-2222-2222-222222222222";
    dcfg.hostname = "dst-host";
    dcfg.migration_address = "127.0.0.1";
    dcfg.migration_port_min = 49450;
    dcfg.migration_port_max = 49460;
    dcfg.nbd_port_min = 49461;
    dcfg.nbd_port_max = 49470;
    w.phases = g_ptr_array_new_with_free_func(g_free);
    w.warnings = g_ptr_array_new_with_free_func(g_free);
    w.at = abort_at;
    w.postcopy = postcopy;
    w.dst_drv = fd.drv;
    /* The range's first port is taken: the destination daemon binds the
     * next one, and the NBD connections are counted there. */
    busy = ho_socket_tcp_listen("127.0.0.1", dcfg.nbd_port_min, 1, NULL);
    g_assert_cmpint(busy, >=, 0);
    w.nbd_lo = dcfg.nbd_port_min + 1;
    w.nbd_hi = dcfg.nbd_port_max;
    if (postcopy)
        scfg.progress_interval_ms = 100;
    w.mig = qemu_migration_new(fs.drv, &scfg, storage_event, &w);
    dmig = qemu_migration_new(fd.drv, &dcfg, NULL, NULL);
    peer = g_new0(TestPeer, 1);
    peer->dst = dmig;
    peer->host_uuid = dcfg.host_uuid;
    rec_src = g_build_filename(fs.dir, "rec.jsonl", NULL);
    rec_dst = g_build_filename(fs.dir, "rec-dst.jsonl", NULL);
    args.live = true;
    args.copy_storage_all = true;
    args.dxml = g_strdup(p.dxml);
    args.record_path = g_strdup(rec_src);
    if (postcopy) {
        /* Precopy at 1 MiB/s cannot finish first: the switch comes in
         * PERFORM, and pre-switchover is where the mirrors end. */
        args.postcopy = true;
        args.has_bandwidth = true;
        args.bandwidth_mib = 1;
    }

    /* Refusals first: nothing changes. */
    args.copy_storage_inc = true;
    g_assert_cmpint(qemu_migration_src_begin(w.mig, w.dom, &args, &storage_peer_ops,
                                             g_new0(TestPeer, 1), mig_done_cb, &m), ==, -1);
    g_assert_nonnull(strstr(ho_error_last_message(), "cannot be combined"));
    ho_error_reset();
    args.copy_storage_inc = false;
    args.migrate_disks = g_strsplit("vda,vdz", ",", -1);
    g_assert_cmpint(qemu_migration_src_begin(w.mig, w.dom, &args, &storage_peer_ops,
                                             g_new0(TestPeer, 1), mig_done_cb, &m), ==, -1);
    g_assert_nonnull(strstr(ho_error_last_message(), "no disk 'vdz'"));
    ho_error_reset();
    /* vdb not copied is shared: its default cache mode is unsafe. */
    g_strfreev(args.migrate_disks);
    args.migrate_disks = g_strsplit("vda", ",", -1);
    g_assert_cmpint(qemu_migration_src_begin(w.mig, w.dom, &args, &storage_peer_ops,
                                             g_new0(TestPeer, 1), mig_done_cb, &m), ==, -1);
    g_assert_nonnull(strstr(ho_error_last_message(), "disk 'vdb'"));
    ho_error_reset();
    g_clear_pointer(&args.migrate_disks, g_strfreev);
    g_assert_false(qemu_migration_any_has_job(w.mig, w.dom));

    if (qemu_migration_src_begin(w.mig, w.dom, &args, &storage_peer_ops, peer, mig_done_cb,
                                 &m) < 0)
        g_error("begin: %s", ho_error_last_message());
    if (!test_iterate_until(ctx, &m.done, START_TIMEOUT_MS))
        g_error("the migration did not end");

    if (abort_at) {
        g_assert_true(w.aborted);
        g_assert_nonnull(m.err);
        g_assert_nonnull(strstr(m.err->message, "cancelled"));
        g_assert_cmpint(qemu_domain_obj_state(w.dom), ==, QEMU_DOMAIN_STATE_RUNNING);
        g_assert_cmpint(qemu_domain_obj_pid(w.dom), ==, spid);
        g_assert_null(qemu_domain_obj_get_job(w.dom));
        fx_wait_event(&fd, "copier stopped destroyed", OP_TIMEOUT_MS);
        g_assert_null(qemu_driver_lookup(fd.drv, "copier"));
        ho_error_reset();
        /* The images the destination created are gone. */
        g_assert_false(g_file_test(p.dst_qcow2, G_FILE_TEST_EXISTS));
        g_assert_false(g_file_test(p.dst_raw, G_FILE_TEST_EXISTS));
        /* The source has no mirror and no NBD client node left. */
        {
            QemuMonitor *mon = qemu_domain_obj_monitor(w.dom);
            g_autoptr(json_object) jobs = NULL;
            g_autoptr(json_object) nodes = NULL;
            g_autofree char *text = NULL;

            g_assert_cmpint(qemu_monitor_send_sync(mon, "query-block-jobs", NULL, -1, &jobs,
                                                   OP_TIMEOUT_MS), ==, 0);
            g_assert_cmpint(json_object_array_length(jobs), ==, 0);
            g_assert_cmpint(qemu_monitor_send_sync(mon, "query-named-block-nodes", NULL, -1,
                                                   &nodes, OP_TIMEOUT_MS), ==, 0);
            text = ho_json_to_string(nodes);
            g_assert_null(strstr(text, "migration-vda-storage"));
            g_assert_null(strstr(text, "migration-vdb-storage"));
        }
        g_test_message("abort in %s: phases seen %u", abort_at, w.phases->len);
    } else {
        const char *cmp1[] = {"qemu-img", "compare", "-U", "-f", "qcow2", "-F", "qcow2",
                              p.src_qcow2, p.dst_qcow2, NULL};
        const char *cmp2[] = {"qemu-img", "compare", "-U", "-f", "raw", "-F", "raw",
                              p.src_raw, p.dst_raw, NULL};
        gint64 src_stop, src_stop_last, src_resume, src_resume_last, dst_resume,
            dst_resume_last;
        int dpid;

        if (m.err)
            g_error("migration failed: %s", m.err->message);
        fx_wait_event(&fs, "copier stopped migrated", OP_TIMEOUT_MS);
        test_qemu_cleanup_forget(spid);
        ddom = qemu_driver_lookup(fd.drv, "copier");
        g_assert_nonnull(ddom);
        dpid = qemu_domain_obj_pid(ddom);
        test_qemu_cleanup_learn(dpid);
        g_assert_cmpint(qemu_domain_obj_state(ddom), ==, QEMU_DOMAIN_STATE_RUNNING);
        /* The phases in order, MIRROR before PERFORM. */
        {
            g_autofree char *joined = NULL;

            g_ptr_array_add(w.phases, NULL);
            joined = g_strjoinv(" ", (char **)w.phases->pdata);
            g_ptr_array_remove_index(w.phases, w.phases->len - 1);
            /* With postcopy the mirrors still end at pre-switchover, before
             * QEMU enters postcopy-active. */
            g_assert_cmpstr(joined, ==,
                            postcopy ? "begin prepare mirror perform pre-switchover "
                                       "switchover postcopy finish confirm"
                                     : "begin prepare mirror perform pre-switchover "
                                       "switchover finish confirm");
        }
        if (postcopy) {
            g_autofree char *seq = NULL;
            bool resumed_after_pc = true;

            g_assert_true(w.switched);
            /* The source's QEMU: pre-switchover, then postcopy-active, never
             * resumed after it; its mirrors ended before the continue. */
            seq = record_sequence(rec_src, &resumed_after_pc);
            g_test_message("storage + postcopy source QEMU:%s", seq);
            g_assert_false(resumed_after_pc);
            g_assert_nonnull(strstr(seq, "pre-switchover"));
            g_assert_nonnull(strstr(seq, "postcopy-active"));
            g_assert_true(strstr(seq, "pre-switchover") < strstr(seq, "postcopy-active"));
        }
        record_cancel_before_continue(rec_src);
        /* The destination QEMU's NBD connections, one per disk, have Nagle
         * off: the listening socket the daemon passed it had (QEMU 7.2's
         * own listener leaves it on). */
        g_assert_cmpint(w.nbd_conns, ==, 2);
        g_assert_cmpint(w.nbd_nodelay, ==, 2);
        g_assert_true(w.saw_disk_progress || stats_int(m.stats, "disk_total") > 0);
        g_assert_cmpint(w.warnings->len, ==, 0);
        g_assert_cmpint(stats_int(m.stats, "disk_total"), ==, 24 * 1024 * 1024);
        g_assert_cmpint(stats_int(m.stats, "disk_remaining"), ==, 0);
        g_assert_cmpint(stats_int(m.stats, "switchover_us"), >=,
                        stats_int(m.stats, "switchover_qemu_us"));
        g_assert_cmpint(stats_int(m.stats, "switchover_qemu_us"), >, 0);
        /* The destination's images equal the source's. */
        g_free(run_tool(cmp1, true));
        g_free(run_tool(cmp2, true));
        record_event_times(rec_src, "STOP", &src_stop, &src_stop_last);
        record_event_times(rec_src, "RESUME", &src_resume, &src_resume_last);
        record_event_times(rec_dst, "RESUME", &dst_resume, &dst_resume_last);
        g_assert_cmpint(src_stop, >, 0);
        g_assert_cmpint(src_stop, <, dst_resume);
        g_assert_cmpint(src_resume_last, <, dst_resume);
        g_test_message("storage %s -> %s: guest pause (source STOP -> destination RESUME) "
                       "%.3f ms, switchover %.3f ms (QEMU %.3f ms, own %.3f ms), downtime "
                       "%" G_GINT64_FORMAT " ms, orchestrator %.3f ms",
                       pair[0], pair[1], (dst_resume - src_stop) / 1000.0,
                       stats_int(m.stats, "switchover_us") / 1000.0,
                       stats_int(m.stats, "switchover_qemu_us") / 1000.0,
                       stats_int(m.stats, "switchover_own_us") / 1000.0,
                       (gint64)stats_int(m.stats, "downtime_ms"),
                       stats_int(m.stats, "orchestrator_us") / 1000.0);
        {
            Done d = {0};

            qemu_driver_domain_destroy(fd.drv, ddom, done_cb, &d);
            wait_ok(&fd, &d, OP_TIMEOUT_MS, "destroy");
            test_qemu_cleanup_forget(dpid);
        }
    }

    close(busy);
    g_ptr_array_unref(w.phases);
    g_ptr_array_unref(w.warnings);
    mig_test_end(&fs, &fd, w.mig, dmig, &args, &m, &fs, abort_at ? w.dom : NULL, spid);
}

static void
test_migrate_storage(gconstpointer data)
{
    run_storage(data, NULL, false);
}

static void
test_migrate_storage_postcopy(gconstpointer data)
{
    run_storage(data, NULL, true);
}

/* --disks-port names a port that is taken: the destination cannot listen
 * for the NBD server; the migration fails with the port and the reason
 * named, the source runs on, the destination's QEMU and the images it
 * created are gone (invariants 3 and 6). */
static void
test_migrate_storage_nbd_busy(gconstpointer data)
{
    const char *const *pair = data;
    const TestQemuBinary *bin = test_qemu_need(pair[0]);
    g_autoptr(GMainContext) ctx = NULL;
    g_autofree char *want = NULL;
    g_auto(StoragePaths) p = {0};
    QemuMigrationConfig scfg = {0}, dcfg = {0};
    QemuMigrationArgs args = {0};
    QemuMigration *smig, *dmig;
    QemuDomainObj *dom;
    TestPeer *peer;
    MigDone m = {0};
    Fx fs, fd;
    int spid, busy, port = 0;

    if (!bin)
        return;
    ctx = g_main_context_new();
    dom = storage_begin(&fs, &fd, ctx, bin, bin, "blocked", &p, &spid);
    busy = ho_socket_tcp_listen("127.0.0.1", 0, 1, &port);
    g_assert_cmpint(busy, >=, 0);

    scfg.host_uuid = "11111111-1111-1111-1111-111111111111";
    dcfg.host_uuid = "22222222-2222-2222-2222-222222222222";
    dcfg.migration_address = "127.0.0.1";
    dcfg.migration_port_min = 49500;
    dcfg.migration_port_max = 49510;
    smig = qemu_migration_new(fs.drv, &scfg, NULL, NULL);
    dmig = qemu_migration_new(fd.drv, &dcfg, NULL, NULL);
    peer = g_new0(TestPeer, 1);
    peer->dst = dmig;
    peer->host_uuid = dcfg.host_uuid;
    args.live = true;
    args.copy_storage_all = true;
    args.disks_port = port;
    args.dxml = g_strdup(p.dxml);
    if (qemu_migration_src_begin(smig, dom, &args, &storage_peer_ops, peer, mig_done_cb, &m) < 0)
        g_error("begin: %s", ho_error_last_message());
    if (!test_iterate_until(ctx, &m.done, START_TIMEOUT_MS))
        g_error("the migration did not end");

    g_assert_nonnull(m.err);
    want = g_strdup_printf("cannot listen for the NBD server of domain 'blocked' (last port "
                           "tried %d): cannot listen on '127.0.0.1:%d': %s",
                           port, port, g_strerror(EADDRINUSE));
    if (!strstr(m.err->message, want))
        g_error("expected '%s' in: %s", want, m.err->message);
    g_assert_cmpint(qemu_domain_obj_state(dom), ==, QEMU_DOMAIN_STATE_RUNNING);
    g_assert_cmpint(qemu_domain_obj_pid(dom), ==, spid);
    g_assert_null(qemu_domain_obj_get_job(dom));
    fx_wait_event(&fd, "blocked stopped destroyed", OP_TIMEOUT_MS);
    g_assert_null(qemu_driver_lookup(fd.drv, "blocked"));
    ho_error_reset();
    g_assert_false(g_file_test(p.dst_qcow2, G_FILE_TEST_EXISTS));
    g_assert_false(g_file_test(p.dst_raw, G_FILE_TEST_EXISTS));

    close(busy);
    mig_test_end(&fs, &fd, smig, dmig, &args, &m, &fs, dom, spid);
}

static void
test_migrate_storage_abort(gconstpointer data)
{
    run_storage(data, "mirror", false);
}

/* ---- postcopy and its recovery through the orchestrator ------------------------------ */

/* A TCP relay the test controls, between the source QEMU and the
 * destination's incoming port: a thread that copies bytes both ways
 * until told to cut every connection (both QEMUs then see the stream
 * break). */
#define RELAY_MAX_CONNS 8

typedef struct {
    int listen_fd;
    int port;
    int target_port;
    int ctl[2];
    GThread *thread;
    int conns[RELAY_MAX_CONNS][2];
    gint accepted;
    bool hold; /* relay thread only: stop copying, keep the connections */
    /* control characters the thread has acted on (relay_send_wait) */
    GMutex ack_lock;
    GCond ack_cond;
    guint acks;
} Relay;

static int
relay_connect(int port)
{
    struct sockaddr_in sa = {0};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void
relay_close_pair(Relay *r, int i)
{
    for (int k = 0; k < 2; k++) {
        if (r->conns[i][k] >= 0) {
            shutdown(r->conns[i][k], SHUT_RDWR);
            close(r->conns[i][k]);
            r->conns[i][k] = -1;
        }
    }
}

/* Write all of buf (blocking): both QEMUs read their sockets. */
static bool
relay_write_all(int fd, const char *buf, ssize_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        buf += n;
        len -= n;
    }
    return true;
}

static gpointer
relay_thread(gpointer opaque)
{
    Relay *r = opaque;
    g_autofree char *buf = g_malloc(65536);

    for (;;) {
        struct pollfd pfd[2 + 2 * RELAY_MAX_CONNS];
        int idx[2 + 2 * RELAY_MAX_CONNS];
        nfds_t n = 0;

        pfd[n].fd = r->ctl[0];
        pfd[n++].events = POLLIN;
        pfd[n].fd = r->listen_fd;
        pfd[n++].events = POLLIN;
        for (int i = 0; i < RELAY_MAX_CONNS && !r->hold; i++) {
            for (int k = 0; k < 2; k++) {
                if (r->conns[i][k] < 0)
                    continue;
                idx[n] = i * 2 + k;
                pfd[n].fd = r->conns[i][k];
                pfd[n++].events = POLLIN;
            }
        }
        if (poll(pfd, n, -1) < 0) {
            if (errno == EINTR)
                continue;
            g_error("relay: poll: %s", g_strerror(errno));
        }
        if (pfd[0].revents) {
            char c = 0;

            if (read(r->ctl[0], &c, 1) != 1 || c == 'q') {
                for (int i = 0; i < RELAY_MAX_CONNS; i++)
                    relay_close_pair(r, i);
                return NULL;
            }
            if (c == 'h') {
                /* drop the traffic silently: nothing is read any more */
                r->hold = true;
            } else {
                /* 'c': cut every connection, keep listening */
                r->hold = false;
                for (int i = 0; i < RELAY_MAX_CONNS; i++)
                    relay_close_pair(r, i);
            }
            g_mutex_lock(&r->ack_lock);
            r->acks++;
            g_cond_broadcast(&r->ack_cond);
            g_mutex_unlock(&r->ack_lock);
            continue;
        }
        if (pfd[1].revents & POLLIN) {
            int in = accept(r->listen_fd, NULL, NULL);
            int out = in >= 0 ? relay_connect(r->target_port) : -1;
            int slot = -1;

            for (int i = 0; i < RELAY_MAX_CONNS && slot < 0; i++) {
                if (r->conns[i][0] < 0)
                    slot = i;
            }
            if (in >= 0 && out >= 0 && slot >= 0) {
                r->conns[slot][0] = in;
                r->conns[slot][1] = out;
                g_atomic_int_inc(&r->accepted);
            } else {
                if (in >= 0)
                    close(in);
                if (out >= 0)
                    close(out);
            }
            continue; /* the connection set changed */
        }
        for (nfds_t j = 2; j < n; j++) {
            int i = idx[j] / 2, k = idx[j] % 2;
            ssize_t len;

            if (!pfd[j].revents || r->conns[i][k] < 0)
                continue;
            len = read(r->conns[i][k], buf, 65536);
            if (len < 0 && errno == EINTR)
                continue;
            if (len <= 0 || !relay_write_all(r->conns[i][1 - k], buf, len))
                relay_close_pair(r, i);
        }
    }
}

/* A relay on a loopback port of its own to target_port. */
static Relay *
relay_new(int target_port)
{
    Relay *r = g_new0(Relay, 1);
    struct sockaddr_in sa = {0};
    socklen_t len = sizeof(sa);

    for (int i = 0; i < RELAY_MAX_CONNS; i++)
        r->conns[i][0] = r->conns[i][1] = -1;
    r->target_port = target_port;
    r->listen_fd = ho_socket_tcp_listen("127.0.0.1", 0, 4, NULL);
    g_assert_cmpint(r->listen_fd, >=, 0);
    g_assert_cmpint(getsockname(r->listen_fd, (struct sockaddr *)&sa, &len), ==, 0);
    r->port = ntohs(sa.sin_port);
    g_assert_cmpint(pipe(r->ctl), ==, 0);
    g_mutex_init(&r->ack_lock);
    g_cond_init(&r->ack_cond);
    r->thread = g_thread_new("relay", relay_thread, r);
    return r;
}

static void
relay_send(Relay *r, char c)
{
    g_assert_cmpint(write(r->ctl[1], &c, 1), ==, 1);
}

/* 'h' or 'c', and return once the relay thread acted on it (bounded:
 * 5 s). */
static void
relay_send_wait(Relay *r, char c)
{
    gint64 end = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
    guint before;

    g_mutex_lock(&r->ack_lock);
    before = r->acks;
    g_mutex_unlock(&r->ack_lock);
    relay_send(r, c);
    g_mutex_lock(&r->ack_lock);
    while (r->acks == before)
        if (!g_cond_wait_until(&r->ack_cond, &r->ack_lock, end))
            g_error("the relay did not act on '%c' within 5 s", c);
    g_mutex_unlock(&r->ack_lock);
}

static void
relay_free(Relay *r)
{
    if (!r)
        return;
    relay_send(r, 'q');
    g_thread_join(r->thread);
    close(r->listen_fd);
    close(r->ctl[0]);
    close(r->ctl[1]);
    g_mutex_clear(&r->ack_lock);
    g_cond_clear(&r->ack_cond);
    g_free(r);
}

/* A loopback port nobody listens on. */
static int
closed_port(void)
{
    struct sockaddr_in sa = {0};
    socklen_t len = sizeof(sa);
    int fd = ho_socket_tcp_listen("127.0.0.1", 0, 1, NULL);
    int port;

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(getsockname(fd, (struct sockaddr *)&sa, &len), ==, 0);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

typedef struct {
    QemuMigration *dst;
    const char *host_uuid;
    Relay **relay;   /* non-NULL: a relay is created before the destination's port */
    int recover_port; /* recover: > 0 rewrites the reply to this port */
    Relay **nbd_relay; /* non-NULL: one before the destination's NBD server */
} PcPeer;

typedef struct {
    QemuMigrationReplyFunc cb;
    void *opaque;
    PcPeer *peer;
} PcCall;

static int
uri_port(const char *uri)
{
    const char *colon = strrchr(uri, ':');

    g_assert_nonnull(colon);
    return atoi(colon + 1);
}

static void
pc_reply(json_object *result, const HoError *err, void *opaque)
{
    PcCall *c = opaque;
    g_autoptr(json_object) copy = NULL;
    const char *uri = NULL;

    if (!err && result && c->peer->nbd_relay) {
        json_object *nbd = NULL;
        int64_t nbd_port = 0;

        g_assert_cmpint(json_object_deep_copy(result, &copy, NULL), ==, 0);
        g_assert_cmpint(ho_json_get_object(copy, "nbd", &nbd), ==, 0);
        g_assert_cmpint(ho_json_get_int64(nbd, "port", &nbd_port), ==, 0);
        *c->peer->nbd_relay = relay_new((int)nbd_port);
        json_object_object_add(nbd, "host", json_object_new_string("127.0.0.1"));
        json_object_object_add(nbd, "port", json_object_new_int((*c->peer->nbd_relay)->port));
        result = copy;
    }
    if (!err && result && ho_json_opt_string(result, "uri", &uri) > 0) {
        int port = 0;

        if (c->peer->relay) {
            *c->peer->relay = relay_new(uri_port(uri));
            port = (*c->peer->relay)->port;
        } else if (c->peer->recover_port > 0) {
            port = c->peer->recover_port;
        }
        if (port) {
            g_autofree char *nuri = g_strdup_printf("tcp:127.0.0.1:%d", port);

            if (!copy)
                g_assert_cmpint(json_object_deep_copy(result, &copy, NULL), ==, 0);
            json_object_object_add(copy, "uri", json_object_new_string(nuri));
            result = copy;
        }
    }
    ho_error_reset();
    c->cb(result, err, c->opaque);
    g_free(c);
}

static void
pc_prepare(void *peer, json_object *cookie, QemuMigrationReplyFunc cb, void *opaque)
{
    PcCall *c = g_new0(PcCall, 1);

    c->cb = cb;
    c->opaque = opaque;
    c->peer = peer;
    qemu_migration_dst_prepare(c->peer->dst, cookie, pc_reply, c);
    json_object_put(cookie);
}

static void
pc_finish(void *peer, json_object *args, QemuMigrationReplyFunc cb, void *opaque)
{
    qemu_migration_dst_finish(((PcPeer *)peer)->dst, args, cb, opaque);
    json_object_put(args);
}

static void
pc_recover(void *peer, json_object *args, QemuMigrationReplyFunc cb, void *opaque)
{
    PcCall *c = g_new0(PcCall, 1);

    c->cb = cb;
    c->opaque = opaque;
    c->peer = peer;
    qemu_migration_dst_recover(c->peer->dst, args, pc_reply, c);
    json_object_put(args);
}

static void
pc_pause(void *peer, json_object *args, QemuMigrationReplyFunc cb, void *opaque)
{
    qemu_migration_dst_pause(((PcPeer *)peer)->dst, args, cb, opaque);
    json_object_put(args);
}

static const char *
pc_host_uuid(void *peer)
{
    return ((PcPeer *)peer)->host_uuid;
}

static const QemuMigrationPeerOps pc_peer_ops = {
    .prepare = pc_prepare,
    .finish = pc_finish,
    .host_uuid = pc_host_uuid,
    .hostname = peer_hostname,
    .free = g_free,
    .recover = pc_recover,
    .pause = pc_pause,
};

static void
pc_nbd_stop(void *peer, json_object *args, QemuMigrationReplyFunc cb, void *opaque)
{
    qemu_migration_dst_nbd_stop(((PcPeer *)peer)->dst, args, cb, opaque);
    json_object_put(args);
}

/* A storage copy through the PcPeer (its NBD server behind nbd_relay). */
static const QemuMigrationPeerOps pc_storage_peer_ops = {
    .prepare = pc_prepare,
    .finish = pc_finish,
    .host_uuid = pc_host_uuid,
    .hostname = peer_hostname,
    .free = g_free,
    .nbd_stop = pc_nbd_stop,
};

/* ---- a source boosted at its STOP, then the migration fails ---- */

typedef struct {
    Relay *nbd_relay;
    QemuDomainObj *dom; /* the source */
    bool held;
    bool raised;
    GPtrArray *phases;
} FailWatch;

static void
fail_raised(QemuMonitor *mon, const HoError *err, void *opaque)
{
    FailWatch *w = opaque;

    if (err)
        g_error("migrate-set-parameters max-bandwidth: %s", err->message);
    w->raised = true;
}

/* At PERFORM (every mirror READY and idle: the firmware guest writes
 * nothing) the NBD relay stops forwarding. The source QEMU's STOP then
 * flushes every disk, the NBD targets included, and waits on the relay
 * with the guest stopped. The job event comes from an idle of the loop,
 * which QEMU 10.0 can outrun to its STOP: so the RAM moves at 1 MiB/s
 * until the relay holds, and only then at full speed. */
static void
fail_event(QemuMigration *mig, const char *name, const char *uuid, const char *event,
           json_object *data, void *opaque)
{
    FailWatch *w = opaque;
    const char *phase = NULL;

    if (!g_str_equal(event, "phase") || ho_json_get_string(data, "phase", &phase) < 0) {
        ho_error_reset();
        return;
    }
    g_ptr_array_add(w->phases, g_strdup(phase));
    if (g_str_equal(phase, "perform") && !w->held) {
        json_object *params = json_object_new_object();

        g_assert_nonnull(w->nbd_relay);
        relay_send_wait(w->nbd_relay, 'h');
        w->held = true;
        ho_json_add_int64(params, "max-bandwidth", (int64_t)1 << 40);
        qemu_monitor_json_migrate_set_parameters(qemu_domain_obj_monitor(w->dom), params,
                                                 fail_raised, w);
    }
}

/* Invariant 3 with the switchover boost, on real QEMU: the source's guest
 * stopped for the switchover and its QEMU boosted, then the storage copy
 * breaks (the relay cuts the NBD connections under the flush of STOP); the
 * job fails, the guest runs on on the source, and its QEMU is back at the
 * priority it had. */
static void
test_migrate_fail_boosted(gconstpointer data)
{
    const TestQemuBinary *bin = test_qemu_need_binary(data);
    g_autoptr(GMainContext) ctx = NULL;
    g_auto(StoragePaths) p = {0};
    QemuMigrationConfig scfg = {0}, dcfg = {0};
    QemuMigrationArgs args = {0};
    QemuMigration *smig, *dmig;
    QemuDomainObj *dom;
    QemuProcessNice before, after, now = {0};
    PcPeer *peer;
    FailWatch w = {0};
    MigDone m = {0};
    Fx fs, fd;
    const int boost = 4;
    int spid;
    gint64 end;

    if (!bin)
        return;
    if (geteuid() != 0) {
        g_test_skip("not root: no switchover boost");
        return;
    }
    ctx = g_main_context_new();
    dom = storage_begin(&fs, &fd, ctx, bin, bin, "breaker", &p, &spid);
    g_assert_cmpint(qemu_process_get_nice(spid, &before), ==, 0);
    w.phases = g_ptr_array_new_with_free_func(g_free);

    scfg.host_uuid = "11111111-1111-1111-1111-111111111111";
    scfg.switchover_boost = boost;
    dcfg.host_uuid = "22222222-2222-2222-2222-222222222222";
    dcfg.migration_address = "127.0.0.1";
    dcfg.migration_port_min = 49480;
    dcfg.migration_port_max = 49490;
    dcfg.nbd_port_min = 49491;
    dcfg.nbd_port_max = 49499;
    smig = qemu_migration_new(fs.drv, &scfg, fail_event, &w);
    dmig = qemu_migration_new(fd.drv, &dcfg, NULL, NULL);
    peer = g_new0(PcPeer, 1);
    peer->dst = dmig;
    peer->host_uuid = dcfg.host_uuid;
    peer->nbd_relay = &w.nbd_relay;
    args.live = true;
    args.copy_storage_all = true;
    args.dxml = g_strdup(p.dxml);
    /* Raised to full speed by fail_event once the relay holds. */
    args.has_bandwidth = true;
    args.bandwidth_mib = 1;
    w.dom = dom;
    if (qemu_migration_src_begin(smig, dom, &args, &pc_storage_peer_ops, peer, mig_done_cb,
                                 &m) < 0)
        g_error("begin: %s", ho_error_last_message());
    /* The guest stops for the switchover; its QEMU's flush hangs on the
     * relay. The boost comes from an idle after the STOP: wait for it
     * (bounded), then cut the NBD connections. */
    fx_wait_event(&fs, "breaker suspended migration", START_TIMEOUT_MS);
    g_assert_true(w.held);
    g_assert_true(w.raised);
    end = g_get_monotonic_time() + (gint64)OP_TIMEOUT_MS * 1000;
    while (g_get_monotonic_time() < end) {
        bool never = false;

        g_assert_cmpint(qemu_process_get_nice(spid, &now), ==, 0);
        if (now.threads == MAX(-20, before.threads - boost))
            break;
        test_iterate_until(ctx, &never, 10);
    }
    g_assert_cmpint(now.threads, ==, MAX(-20, before.threads - boost));
    if (now.has_group)
        g_assert_cmpint(now.group, ==, MAX(-20, before.group - boost));
    g_assert_false(m.done);
    relay_send(w.nbd_relay, 'c');
    if (!test_iterate_until(ctx, &m.done, START_TIMEOUT_MS))
        g_error("the migration did not end");

    /* It never got to pre-switchover. */
    {
        g_autofree char *joined = NULL;

        g_ptr_array_add(w.phases, NULL);
        joined = g_strjoinv(" ", (char **)w.phases->pdata);
        g_test_message("phases: %s", joined);
        g_assert_null(strstr(joined, "pre-switchover"));
        g_assert_nonnull(strstr(joined, "perform"));
    }
    g_assert_nonnull(m.err);
    g_test_message("the migration failed as it must: %s", m.err->message);
    g_assert_cmpint(qemu_domain_obj_state(dom), ==, QEMU_DOMAIN_STATE_RUNNING);
    g_assert_cmpint(qemu_domain_obj_pid(dom), ==, spid);
    g_assert_null(qemu_domain_obj_get_job(dom));
    assert_status_state(&fs, "breaker", "running", "unpaused");
    /* Its QEMU is back where it was: every thread and the autogroup. */
    g_assert_cmpint(qemu_process_get_nice(spid, &after), ==, 0);
    g_assert_cmpint(after.threads, ==, before.threads);
    assert_threads_nice(spid, before.threads);
    g_assert_cmpint(after.has_group, ==, before.has_group);
    if (after.has_group)
        g_assert_cmpint(after.group, ==, before.group);
    /* Nothing is left on the destination. */
    fx_wait_event(&fd, "breaker stopped destroyed", OP_TIMEOUT_MS);
    g_assert_null(qemu_driver_lookup(fd.drv, "breaker"));
    ho_error_reset();
    g_assert_false(g_file_test(p.dst_qcow2, G_FILE_TEST_EXISTS));

    relay_free(w.nbd_relay);
    g_ptr_array_unref(w.phases);
    mig_test_end(&fs, &fd, smig, dmig, &args, &m, &fs, dom, spid);
}


typedef struct {
    QemuMigration *smig;
    QemuDomainObj *dom;
    bool perform;
    bool src_postcopy; /* the source job reached phase postcopy */
    bool dst_postcopy; /* the destination job reached phase postcopy */
    bool both_postcopy;
    bool src_paused;
    bool dst_paused;
    bool both_paused;
    bool dst_ended;    /* the destination job reached a terminal phase */
    GString *src_log;  /* phases and events seen, per side */
    GString *dst_log;
} PcWatch;

static void
pc_event(QemuMigration *mig, const char *event, json_object *data, PcWatch *w, bool src)
{
    const char *phase = NULL;
    GString *log = src ? w->src_log : w->dst_log;

    if (g_str_equal(event, "progress"))
        goto out;
    if (g_str_equal(event, "phase") && ho_json_get_string(data, "phase", &phase) == 0)
        g_string_append_printf(log, " %s", phase);
    else
        g_string_append_printf(log, " <%s>", event);
    ho_error_reset();
    if (phase && src && g_str_equal(phase, "perform"))
        w->perform = true;
    if (!src && (g_str_equal(event, "completed") || g_str_equal(event, "failed") ||
                 g_str_equal(event, "cancelled")))
        w->dst_ended = true;
    if (phase && g_str_equal(phase, "postcopy")) {
        if (src)
            w->src_postcopy = true;
        else
            w->dst_postcopy = true;
    }
    if (g_str_equal(event, "postcopy-paused")) {
        if (src)
            w->src_paused = true;
        else
            w->dst_paused = true;
    }
out:
    /* Switch to postcopy as soon as QEMU accepts it (it refuses before
     * migrate went out: the job only warns, the next progress retries). */
    if (src && w->perform && !w->src_postcopy &&
        qemu_migration_any_has_job(w->smig, w->dom) &&
        qemu_migration_src_start_postcopy(w->smig, w->dom) < 0)
        ho_error_reset();
    w->both_paused = w->src_paused && w->dst_paused;
    w->both_postcopy = w->src_postcopy && w->dst_postcopy;
}

static void
pc_src_event(QemuMigration *mig, const char *name, const char *uuid, const char *event,
             json_object *data, void *opaque)
{
    pc_event(mig, event, data, opaque, true);
}

static void
pc_dst_event(QemuMigration *mig, const char *name, const char *uuid, const char *event,
             json_object *data, void *opaque)
{
    pc_event(mig, event, data, opaque, false);
}

/* The MIGRATION statuses and STOP/RESUME events of a recording, in order;
 * *resume_after_pc: a RESUME came after the first postcopy-active. */
static char *
record_sequence(const char *path, bool *resume_after_pc)
{
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;
    GString *s = g_string_new(NULL);
    bool pc = false;

    *resume_after_pc = false;
    if (!g_file_get_contents(path, &text, NULL, NULL))
        g_error("no recording '%s'", path);
    lines = g_strsplit(text, "\n", -1);
    for (guint i = 0; lines[i]; i++) {
        g_autoptr(json_object) obj = NULL;
        json_object *msg = NULL;
        json_object *edata = NULL;
        const char *name = NULL;
        const char *dir = NULL;
        const char *status = NULL;

        if (!lines[i][0])
            continue;
        obj = ho_json_parse(lines[i], strlen(lines[i]));
        g_assert_nonnull(obj);
        if (ho_json_get_string(obj, "dir", &dir) < 0 || !g_str_equal(dir, "recv") ||
            ho_json_get_object(obj, "msg", &msg) < 0 ||
            ho_json_opt_string(msg, "event", &name) <= 0) {
            ho_error_reset();
            continue;
        }
        if (g_str_equal(name, "MIGRATION") && ho_json_get_object(msg, "data", &edata) == 0 &&
            ho_json_get_string(edata, "status", &status) == 0) {
            g_string_append_printf(s, " %s", status);
            if (g_str_equal(status, "postcopy-active"))
                pc = true;
        } else if (g_str_equal(name, "STOP") || g_str_equal(name, "RESUME")) {
            g_string_append_printf(s, " %s", name);
            if (pc && g_str_equal(name, "RESUME"))
                *resume_after_pc = true;
        }
        ho_error_reset();
    }
    return g_string_free(s, FALSE);
}

static void
pc_wait_paused(GMainContext *ctx, PcWatch *w, const char *what)
{
    if (!test_iterate_until(ctx, &w->both_paused, START_TIMEOUT_MS))
        g_error("%s: both sides did not reach postcopy-paused (source %d, destination %d); "
                "source:%s; destination:%s",
                what, w->src_paused, w->dst_paused, w->src_log->str, w->dst_log->str);
}

/* The destination QEMU dies in postcopy-active, its vCPUs running: the
 * guest is lost (DESIGN.md invariant 4). The source job ends saying so;
 * the source QEMU stays, paused, and was never resumed; the destination's
 * job ends too. */
static void
postcopy_dst_dies(GMainContext *ctx, PcWatch *w, MigDone *m, Fx *fs, Fx *fd, QemuDomainObj *dom,
                  int spid, const char *rec_src)
{
    g_autofree char *seq_src = NULL;
    QemuDomainObj *ddom;
    bool resumed_src = true;
    Done d = {0};
    int dpid;

    if (!test_iterate_until(ctx, &w->both_postcopy, START_TIMEOUT_MS))
        g_error("no postcopy; source:%s; destination:%s", w->src_log->str, w->dst_log->str);
    fx_wait_event(fd, "pcguest resumed unpaused", OP_TIMEOUT_MS);
    g_assert_false(m->done);
    ddom = qemu_driver_lookup(fd->drv, "pcguest");
    g_assert_nonnull(ddom);
    dpid = qemu_domain_obj_pid(ddom);
    g_assert_cmpint(dpid, >, 0);
    g_test_message("killing the destination QEMU pid %d in postcopy", dpid);
    g_assert_cmpint(kill(dpid, SIGKILL), ==, 0);
    if (!test_iterate_until(ctx, &m->done, START_TIMEOUT_MS))
        g_error("the source job did not end after the destination QEMU died; source:%s; "
                "destination:%s",
                w->src_log->str, w->dst_log->str);
    g_assert_nonnull(m->err);
    g_test_message("source job: %s", m->err->message);
    g_test_message("source phases:%s; destination phases:%s", w->src_log->str, w->dst_log->str);
    g_assert_nonnull(strstr(m->err->message, "lost"));
    /* The source QEMU is still there, paused, and never ran again. */
    g_assert_true(pid_alive(spid));
    g_assert_true(qemu_domain_obj_is_active(dom));
    g_assert_cmpint(qemu_domain_obj_state(dom), ==, QEMU_DOMAIN_STATE_PAUSED);
    g_assert_false(qemu_migration_any_has_job(w->smig, dom));
    seq_src = record_sequence(rec_src, &resumed_src);
    g_test_message("source QEMU:%s", seq_src);
    g_assert_false(resumed_src);
    g_assert_nonnull(strstr(seq_src, "postcopy-active"));
    /* The destination's job ends, its domain with it. */
    if (!test_iterate_until(ctx, &w->dst_ended, OP_TIMEOUT_MS))
        g_error("the destination job did not end; destination:%s", w->dst_log->str);
    test_qemu_cleanup_forget(dpid);
    qemu_driver_domain_destroy(fs->drv, dom, done_cb, &d);
    wait_ok(fs, &d, OP_TIMEOUT_MS, "destroy");
    test_qemu_cleanup_forget(spid);
}

/* Postcopy on real QEMU (firmware guest with 512 MiB, postcopy bandwidth
 * 1 MiB/s so that it lasts): with cut, the relay between the source and
 * the destination breaks in postcopy-active, both sides reach
 * postcopy-paused with nothing killed, then recovery (on 10.0 a failed
 * attempt to a closed port first) completes the migration. */
static void
run_postcopy(const char *const *pair, bool cut, bool peer_lost, bool dst_dies, int port_base)
{
    const TestQemuBinary *sbin = test_qemu_need(pair[0]);
    const TestQemuBinary *dbin = sbin ? test_qemu_need(pair[1]) : NULL;
    g_autoptr(GMainContext) ctx = NULL;
    g_autofree char *xml = NULL;
    g_autofree char *big = NULL;
    g_autofree char *rec_src = NULL;
    g_autofree char *rec_dst = NULL;
    g_autofree char *seq_src = NULL;
    g_autofree char *seq_dst = NULL;
    g_auto(GStrv) parts = NULL;
    QemuMigrationConfig scfg = {0}, dcfg = {0};
    QemuMigrationArgs args = {0};
    QemuMigration *smig, *dmig;
    QemuDomainObj *dom, *ddom;
    Relay *relay = NULL;
    Relay *relay2 = NULL;
    MigDone resume = {0};
    bool resume_pending = false;
    PcWatch w = {0};
    PcPeer *peer;
    MigDone m = {0};
    Fx fs, fd;
    int spid, dpid;
    bool resumed_src = false, resumed_dst = false;

    if (!sbin || !dbin)
        return;
    ctx = g_main_context_new();
    fx_init_full(&fs, sbin, ctx, NULL);
    fx_init_full(&fd, dbin, ctx, dbin->binary);
    xml = guest_xml("pcguest", UUID3, sbin->binary, "pc", NULL);
    parts = g_strsplit(xml, "<memory unit='MiB'>128</memory>", 2);
    g_assert_nonnull(parts[1]);
    big = g_strjoin("<memory unit='MiB'>8192</memory>", parts[0], parts[1], NULL);
    dom = define_ok(&fs, big);
    spid = start_ok(&fs, dom, false);

    scfg.host_uuid = "11111111-1111-1111-1111-111111111111";
    scfg.hostname = "src-host";
    scfg.progress_interval_ms = 100;
    /* The stall check and 7.2's bound on a recovery attempt; the default
     * (10 s) without cuts. */
    scfg.postcopy_stall_s = cut ? 3 : 0;
    dcfg.host_uuid = "22222222-2222-2222-2222-222222222222";
    dcfg.hostname = "dst-host";
    dcfg.migration_address = "127.0.0.1";
    dcfg.migration_port_min = port_base;
    dcfg.migration_port_max = port_base + 9;
    w.src_log = g_string_new(NULL);
    w.dst_log = g_string_new(NULL);
    w.dom = dom;
    smig = qemu_migration_new(fs.drv, &scfg, pc_src_event, &w);
    dmig = qemu_migration_new(fd.drv, &dcfg, pc_dst_event, &w);
    w.smig = smig;

    rec_src = g_build_filename(fs.dir, "rec.jsonl", NULL);
    rec_dst = g_build_filename(fs.dir, "rec-dst.jsonl", NULL);
    args.record_path = g_strdup(rec_src);
    args.live = true;
    args.postcopy = true;
    /* Precopy at 1 MiB/s too, so that it cannot converge before the switch. */
    args.has_bandwidth = true;
    args.bandwidth_mib = 1;
    args.has_postcopy_bandwidth = true;
    args.postcopy_bandwidth_mib = 1;
    peer = g_new0(PcPeer, 1);
    peer->dst = dmig;
    peer->host_uuid = dcfg.host_uuid;
    peer->relay = &relay;
    if (qemu_migration_src_begin(smig, dom, &args, &pc_peer_ops, peer, mig_done_cb, &m) < 0)
        g_error("begin: %s", ho_error_last_message());

    for (int round = 0; cut && round < 2; round++) {
        MigDone r = {0};
        PcPeer *rp;

        /* Both QEMUs in postcopy-active: a break before the destination
         * got there fails the migration in QEMU (not recoverable). */
        if (!test_iterate_until(ctx, &w.both_postcopy, START_TIMEOUT_MS))
            g_error("no postcopy; source:%s; destination:%s", w.src_log->str, w.dst_log->str);
        if (round == 0) {
            /* ... and its vCPUs running (QEMU's postcopy RUN): a break while
             * the destination still loads the device state fails the
             * incoming migration in QEMU (seen on 10.0), not recoverable. */
            fx_wait_event(&fd, "pcguest resumed unpaused", OP_TIMEOUT_MS);
        }
        g_assert_nonnull(relay);
        g_assert_false(m.done); /* still moving pages at 1 MiB/s */
        w.src_paused = w.dst_paused = w.both_paused = false;
        if (round == 0) {
            relay_send(relay, 'c');
            pc_wait_paused(ctx, &w, "cut");
        } else {
            /* A link that silently drops everything: QEMU does not notice
             * for long; the source's stall check (3 s here) pauses both. */
            relay_send(relay, 'h');
            pc_wait_paused(ctx, &w, "silent drop");
            g_assert_nonnull(strstr(w.src_log->str, "<warning>"));
            relay_send(relay, 'c');
        }
        if (resume_pending) {
            /* The earlier recovery's callback: its migration broke again. */
            if (!test_iterate_until(ctx, &resume.done, OP_TIMEOUT_MS))
                g_error("the earlier recovery did not end at the second break");
            g_assert_nonnull(resume.err);
            g_test_message("earlier recovery at the second break: %s", resume.err->message);
            ho_error_free(resume.err);
            json_object_put(resume.stats);
            memset(&resume, 0, sizeof(resume));
            resume_pending = false;
        }
        /* Nothing was killed, both jobs stay. */
        g_assert_false(m.done);
        g_assert_true(pid_alive(spid));
        g_assert_true(qemu_domain_obj_is_active(dom));
        ddom = qemu_driver_lookup(fd.drv, "pcguest");
        g_assert_nonnull(ddom);
        test_qemu_cleanup_learn(qemu_domain_obj_pid(ddom));
        g_assert_true(qemu_migration_any_has_job(smig, dom));
        g_assert_true(qemu_migration_any_has_job(dmig, ddom));

        if (round == 0) {
            /* A failed attempt: the source's QEMU cannot reach the port
             * (10.0: recover-setup -> paused; 7.2: silent, the bound). */
            rp = g_new0(PcPeer, 1);
            rp->dst = dmig;
            rp->host_uuid = dcfg.host_uuid;
            rp->recover_port = closed_port();
            w.src_paused = w.both_paused = false;
            if (qemu_migration_src_postcopy_resume(smig, dom, &pc_peer_ops, rp, mig_done_cb,
                                                   &r) < 0)
                g_error("resume: %s", ho_error_last_message());
            if (!test_iterate_until(ctx, &r.done, START_TIMEOUT_MS))
                g_error("the failed recovery attempt did not end; source:%s", w.src_log->str);
            g_assert_nonnull(r.err);
            /* Job events come from an idle source: the paused one follows. */
            if (!test_iterate_until(ctx, &w.src_paused, OP_TIMEOUT_MS))
                g_error("no postcopy-paused after the failed attempt; source:%s",
                        w.src_log->str);
            g_test_message("failed recovery attempt: %s", r.err->message);
            g_assert_false(m.done);
            g_assert_true(pid_alive(spid));
            g_assert_true(qemu_migration_any_has_job(smig, dom));
            g_assert_true(qemu_migration_any_has_job(dmig, ddom));
            ho_error_free(r.err);
            json_object_put(r.stats);
            memset(&r, 0, sizeof(r));
        }
        /* The good attempt, straight to the destination's new port on
         * the last round, through a fresh relay before. */
        rp = g_new0(PcPeer, 1);
        rp->dst = dmig;
        rp->host_uuid = dcfg.host_uuid;
        if (round == 0)
            rp->relay = &relay2;
        w.src_postcopy = w.dst_postcopy = w.both_postcopy = false;
        if (qemu_migration_src_postcopy_resume(smig, dom, &pc_peer_ops, rp, mig_done_cb,
                                               &resume) < 0)
            g_error("resume: %s", ho_error_last_message());
        resume_pending = true;
        if (round == 0) {
            if (!test_iterate_until(ctx, &w.both_postcopy, START_TIMEOUT_MS))
                g_error("no recovery; source:%s; destination:%s", w.src_log->str,
                        w.dst_log->str);
            g_assert_nonnull(relay2);
            relay_free(relay);
            relay = relay2;
            relay2 = NULL;
        }
    }
    if (peer_lost) {
        /* The daemons lose each other in postcopy-active (keepalive): each
         * side forces postcopy-paused itself; nothing is killed. */
        g_autoptr(HoError) lost = ho_error_new(HO_ERR_RPC, "%s", "keepalive timed out");
        PcPeer *rp;

        if (!test_iterate_until(ctx, &w.both_postcopy, START_TIMEOUT_MS))
            g_error("no postcopy; source:%s; destination:%s", w.src_log->str, w.dst_log->str);
        fx_wait_event(&fd, "pcguest resumed unpaused", OP_TIMEOUT_MS);
        g_assert_false(m.done);
        qemu_migration_src_peer_lost(smig, UUID3, lost);
        qemu_migration_dst_peer_lost(dmig, UUID3);
        pc_wait_paused(ctx, &w, "peer lost");
        g_assert_false(m.done);
        g_assert_true(pid_alive(spid));
        ddom = qemu_driver_lookup(fd.drv, "pcguest");
        g_assert_nonnull(ddom);
        test_qemu_cleanup_learn(qemu_domain_obj_pid(ddom));
        g_assert_true(qemu_migration_any_has_job(dmig, ddom));
        rp = g_new0(PcPeer, 1);
        rp->dst = dmig;
        rp->host_uuid = dcfg.host_uuid;
        if (qemu_migration_src_postcopy_resume(smig, dom, &pc_peer_ops, rp, mig_done_cb,
                                               &resume) < 0)
            g_error("resume: %s", ho_error_last_message());
        resume_pending = true;
    }
    if (dst_dies) {
        postcopy_dst_dies(ctx, &w, &m, &fs, &fd, dom, spid, rec_src);
        relay_free(relay);
        g_string_free(w.src_log, TRUE);
        g_string_free(w.dst_log, TRUE);
        mig_test_end(&fs, &fd, smig, dmig, &args, &m, NULL, NULL, 0);
        return;
    }
    if (resume_pending) {
        if (!test_iterate_until(ctx, &resume.done, START_TIMEOUT_MS * 5))
            g_error("the recovery did not end; source:%s; destination:%s", w.src_log->str,
                    w.dst_log->str);
        if (resume.err)
            g_error("recovery failed: %s; source:%s; destination:%s", resume.err->message,
                    w.src_log->str, w.dst_log->str);
        json_object_put(resume.stats);
    }
    if (!test_iterate_until(ctx, &m.done, START_TIMEOUT_MS * 5))
        g_error("the migration did not end; source:%s; destination:%s", w.src_log->str,
                w.dst_log->str);
    if (m.err)
        g_error("migration failed: %s; source:%s; destination:%s", m.err->message,
                w.src_log->str, w.dst_log->str);
    g_assert_true(w.src_postcopy);
    fx_wait_event(&fs, "pcguest stopped migrated", OP_TIMEOUT_MS);
    test_qemu_cleanup_forget(spid);
    ddom = qemu_driver_lookup(fd.drv, "pcguest");
    g_assert_nonnull(ddom);
    dpid = qemu_domain_obj_pid(ddom);
    test_qemu_cleanup_learn(dpid);
    g_assert_cmpint(qemu_domain_obj_state(ddom), ==, QEMU_DOMAIN_STATE_RUNNING);
    g_assert_null(qemu_domain_obj_get_job(ddom));

    /* Invariant 4 from the recordings: the source never resumed after
     * postcopy-active; the destination did, once. */
    seq_src = record_sequence(rec_src, &resumed_src);
    seq_dst = record_sequence(rec_dst, &resumed_dst);
    g_test_message("%s -> %s%s: source phases:%s", pair[0], pair[1],
                   cut ? " (cut)" : peer_lost ? " (peer lost)" : "", w.src_log->str);
    g_test_message("destination phases:%s", w.dst_log->str);
    g_test_message("source QEMU:%s", seq_src);
    g_test_message("destination QEMU:%s", seq_dst);
    g_assert_false(resumed_src);
    g_assert_true(resumed_dst);
    g_assert_nonnull(strstr(seq_src, "postcopy-active"));
    /* HANDOVER_TEST_RECORD_DIR: both recordings are kept as
     * DIR/postcopy[-cut|-peer-lost]-SRC-DST{,-dst}.jsonl, the source of
     * tests/qemumigrationdata/recover-*.jsonl (compose.py). */
    if (g_getenv("HANDOVER_TEST_RECORD_DIR")) {
        const char *mode = cut ? "-cut" : peer_lost ? "-peer-lost" : "";
        const char *recs[] = {rec_src, rec_dst};

        for (int k = 0; k < 2; k++) {
            g_autofree char *file = g_strdup_printf("postcopy%s-%s-%s%s.jsonl", mode, sbin->name,
                                                    dbin->name, k ? "-dst" : "");
            g_autofree char *out = g_build_filename(g_getenv("HANDOVER_TEST_RECORD_DIR"), file,
                                                    NULL);
            g_autofree char *text = NULL;
            gsize len = 0;

            g_assert_true(g_file_get_contents(recs[k], &text, &len, NULL));
            g_assert_true(g_file_set_contents(out, text, (gssize)len, NULL));
        }
    }
    if (cut || peer_lost) {
        g_assert_nonnull(strstr(seq_src, "postcopy-paused"));
        g_assert_nonnull(strstr(seq_dst, "postcopy-paused"));
        g_assert_nonnull(strstr(seq_src, "postcopy-recover"));
        if (cut && g_str_equal(sbin->name, "qemu-10.0"))
            g_assert_nonnull(strstr(seq_src, "postcopy-recover-setup postcopy-paused"));
    }

    relay_free(relay);
    g_string_free(w.src_log, TRUE);
    g_string_free(w.dst_log, TRUE);
    mig_test_end(&fs, &fd, smig, dmig, &args, &m, &fd, ddom, dpid);
}

static void
test_migrate_postcopy(gconstpointer data)
{
    const char *const *pair = data;

    run_postcopy(pair, false, false, false, g_str_equal(pair[0], "qemu-7.2") ? 49500 : 49520);
}

static void
test_migrate_postcopy_peer_lost(gconstpointer data)
{
    const char *const *pair = data;

    run_postcopy(pair, false, true, false, g_str_equal(pair[0], "qemu-7.2") ? 49580 : 49600);
}

static void
test_migrate_postcopy_dst_dies(gconstpointer data)
{
    const char *const *pair = data;

    run_postcopy(pair, false, false, true, g_str_equal(pair[0], "qemu-7.2") ? 49620 : 49640);
}

static void
test_migrate_postcopy_cut(gconstpointer data)
{
    const char *const *pair = data;

    run_postcopy(pair, true, false, false, g_str_equal(pair[0], "qemu-7.2") ? 49540 : 49560);
}

static const char *const pair_72[] = {"qemu-7.2", "qemu-7.2"};
static const char *const pair_10[] = {"qemu-10.0", "qemu-10.0"};
static const char *const pair_72_10[] = {"qemu-7.2", "qemu-10.0"};

/* A probe whose QEMU never answers (as QEMU's own monitor startup race
 * can leave it) is killed at the probe timeout and tried again once. The
 * emulator here is a script that is `sleep` the first time (it never
 * accepts the monitor connection) and the real QEMU the second. */
static void
test_probe_retried(void)
{
    const TestQemuBinary *bin = test_qemu_need("qemu-7.2");
    g_autofree char *dir = NULL;
    g_autofree char *script = NULL, *marker = NULL, *pidfile = NULL;
    g_autofree char *text = NULL;
    g_autofree char *pidtext = NULL;
    CapsDone caps;
    Fx f;

    if (!bin)
        return;
    dir = test_make_tmpdir("probe");
    script = g_build_filename(dir, "qemu-system-x86_64", NULL);
    marker = g_build_filename(dir, "first-run", NULL);
    pidfile = g_build_filename(dir, "stuck.pid", NULL);
    text = g_strdup_printf("#!/bin/sh\n"
                           "if [ ! -e '%s' ]; then : > '%s'; echo $$ > '%s'; exec sleep 600; fi\n"
                           "exec '%s' \"$@\"\n",
                           marker, marker, pidfile, bin->binary);
    g_assert_true(g_file_set_contents(script, text, -1, NULL));
    g_assert_cmpint(chmod(script, 0755), ==, 0);

    fx_init_full(&f, bin, NULL, NULL);
    fx_close(&f);
    f.probe_timeout_s = 1;
    fx_open(&f);
    get_caps(&f, script, &caps);
    if (caps.err)
        g_error("probe: %s", caps.err->message);
    g_assert_cmpuint(caps.version / 1000000, ==, 7);
    /* The stuck first "QEMU" was the one probed first, and is gone. */
    g_assert_true(g_file_get_contents(pidfile, &pidtext, NULL, NULL));
    g_assert_cmpint(kill(atoi(pidtext), 0), ==, -1);
    g_assert_cmpint(errno, ==, ESRCH);
    fx_fini(&f);
    (void)ho_file_remove_tree(dir);
}

/* ---- main ----------------------------------------------------------------------------- */

int
main(int argc, char **argv)
{
    const TestQemuBinary *const *bins;

    g_test_init(&argc, &argv, NULL);
    ho_log_init();
    test_qemu_cleanup_install();

    g_test_add_func("/driver/define", test_define);
    g_test_add_func("/driver/stale-status", test_stale_status);
    for (bins = test_qemu_binaries(); *bins; bins++) {
        const TestQemuBinary *bin = *bins;
        g_autofree char *lifecycle = g_strdup_printf("/driver/%s/lifecycle", bin->name);
        g_autofree char *failure = g_strdup_printf("/driver/%s/start-failure", bin->name);
        g_autofree char *restart = g_strdup_printf("/driver/%s/restart", bin->name);
        g_autofree char *crash = g_strdup_printf("/driver/%s/crash", bin->name);
        g_autofree char *nomon = g_strdup_printf("/driver/%s/monitor-unavailable", bin->name);
        g_autofree char *nice = g_strdup_printf("/driver/%s/process-nice", bin->name);

        g_test_add_data_func(lifecycle, bin, test_lifecycle);
        g_test_add_data_func(failure, bin, test_start_failure);
        g_test_add_data_func(restart, bin, test_restart);
        g_test_add_data_func(crash, bin, test_crash);
        g_test_add_data_func(nomon, bin, test_monitor_unavailable);
        g_test_add_data_func(nice, bin, test_process_nice);
        {
            g_autofree char *jp = g_strdup_printf("/driver/%s/job-persist", bin->name);
            g_autofree char *inc = g_strdup_printf("/driver/%s/incoming-start", bin->name);

            g_test_add_data_func(jp, bin, test_job_persist);
            g_autofree char *ab = g_strdup_printf("/driver/%s/migrate-abort", bin->name);

            g_test_add_data_func(inc, bin, test_incoming_start);
            g_test_add_data_func(ab, bin, test_migrate_abort);
        }
        {
            g_autofree char *fb = g_strdup_printf("/driver/%s/migrate-fail-boosted", bin->name);

            g_test_add_data_func(fb, bin, test_migrate_fail_boosted);
        }
    }
    g_test_add_func("/driver/probe-retried", test_probe_retried);
    g_test_add_data_func("/driver/migrate/qemu-7.2", pair_72, test_migrate);
    g_test_add_data_func("/driver/migrate/qemu-10.0", pair_10, test_migrate);
    g_test_add_data_func("/driver/migrate/qemu-7.2-to-10.0", pair_72_10, test_migrate);
    g_test_add_data_func("/driver/migrate-storage/qemu-7.2", pair_72, test_migrate_storage);
    g_test_add_data_func("/driver/migrate-storage-nbd-busy/qemu-7.2", pair_72,
                         test_migrate_storage_nbd_busy);
    g_test_add_data_func("/driver/migrate-storage/qemu-10.0", pair_10, test_migrate_storage);
    g_test_add_data_func("/driver/migrate-storage/qemu-7.2-to-10.0", pair_72_10,
                         test_migrate_storage);
    g_test_add_data_func("/driver/migrate-storage-postcopy/qemu-7.2", pair_72,
                         test_migrate_storage_postcopy);
    g_test_add_data_func("/driver/migrate-storage-postcopy/qemu-10.0", pair_10,
                         test_migrate_storage_postcopy);
    g_test_add_data_func("/driver/migrate-storage-abort/qemu-7.2", pair_72,
                         test_migrate_storage_abort);
    g_test_add_data_func("/driver/migrate-storage-abort/qemu-10.0", pair_10,
                         test_migrate_storage_abort);
    g_test_add_data_func("/driver/migrate-postcopy/qemu-7.2", pair_72, test_migrate_postcopy);
    g_test_add_data_func("/driver/migrate-postcopy/qemu-10.0", pair_10, test_migrate_postcopy);
    g_test_add_data_func("/driver/migrate-postcopy-peer-lost/qemu-7.2", pair_72,
                         test_migrate_postcopy_peer_lost);
    g_test_add_data_func("/driver/migrate-postcopy-peer-lost/qemu-10.0", pair_10,
                         test_migrate_postcopy_peer_lost);
    g_test_add_data_func("/driver/migrate-postcopy-dst-dies/qemu-7.2", pair_72,
                         test_migrate_postcopy_dst_dies);
    g_test_add_data_func("/driver/migrate-postcopy-dst-dies/qemu-10.0", pair_10,
                         test_migrate_postcopy_dst_dies);
    g_test_add_data_func("/driver/migrate-postcopy-cut/qemu-7.2", pair_72,
                         test_migrate_postcopy_cut);
    g_test_add_data_func("/driver/migrate-postcopy-cut/qemu-10.0", pair_10,
                         test_migrate_postcopy_cut);
    return g_test_run();
}
