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
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ho_error.h"
#include "ho_file.h"
#include "ho_json.h"
#include "ho_log.h"
#include "qemu_domain.h"
#include "qemu_driver.h"
#include "qemu_monitor.h"
#include "qemu_process.h"
#include "testqemu.h"
#include "testutils.h"

#define START_TIMEOUT_MS 60000
#define OP_TIMEOUT_MS 20000
#define UUID1 "6c3b9c2e-0d5f-4a38-9d3e-1f2a3b4c5d01"
#define UUID2 "6c3b9c2e-0d5f-4a38-9d3e-1f2a3b4c5d02"
#define UUID3 "6c3b9c2e-0d5f-4a38-9d3e-1f2a3b4c5d03"

/* ---- QEMUs to kill whatever happens --------------------------------------- */

#define MAX_LEARNED 64
static volatile sig_atomic_t learned[MAX_LEARNED];

static void
learn_pid(int pid)
{
    g_assert_cmpint(pid, >, 0);
    for (int i = 0; i < MAX_LEARNED; i++) {
        if (learned[i] == pid)
            return;
    }
    for (int i = 0; i < MAX_LEARNED; i++) {
        if (learned[i] == 0) {
            learned[i] = pid;
            return;
        }
    }
    g_error("too many QEMU pids");
}

/* The driver saw it exit: its pid may be reused from now on. */
static void
forget_pid(int pid)
{
    for (int i = 0; i < MAX_LEARNED; i++) {
        if (learned[i] == pid)
            learned[i] = 0;
    }
}

static void
kill_learned(void)
{
    for (int i = 0; i < MAX_LEARNED; i++) {
        if (learned[i] > 0)
            (void)kill((pid_t)learned[i], SIGKILL);
        learned[i] = 0;
    }
}

static void
fatal_signal(int sig)
{
    /* kill() is async-signal-safe. */
    for (int i = 0; i < MAX_LEARNED; i++) {
        if (learned[i] > 0)
            (void)kill((pid_t)learned[i], SIGKILL);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void
install_cleanup(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = fatal_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGABRT, &sa, NULL);
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    atexit(kill_learned);
}

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
    f->drv = NULL;
    f->drv = qemu_driver_open(&cfg, f->ctx, event_cb, f);
    if (!f->drv)
        g_error("cannot open the driver: %s", ho_error_last_message());
}

static void
fx_init(Fx *f, const TestQemuBinary *bin)
{
    memset(f, 0, sizeof(*f));
    f->bin = bin;
    f->dir = test_make_tmpdir("drv");
    f->state_dir = g_build_filename(f->dir, "state", NULL);
    f->runtime_dir = g_build_filename(f->dir, "run", NULL);
    f->log_dir = g_build_filename(f->dir, "log", NULL);
    f->ctx = g_main_context_new();
    f->events = g_ptr_array_new_with_free_func(g_free);
    fx_open(f);
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
    kill_learned();
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

        (void)g_file_get_contents(path, &log, NULL, NULL);
        g_error("start failed: %s\nlog:\n%s", d.err->message, log ? log : "");
    }
    done_clear(&d);
    pid = qemu_domain_obj_pid(dom);
    learn_pid(pid);
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
    forget_pid(pid);
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
    forget_pid(pid);
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
    forget_pid(pid);
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
    forget_pid(pid);
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
    forget_pid(pid);
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
    forget_pid(pid);
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
    forget_pid(pid);
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
    learn_pid(sleeper);
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
    forget_pid(sleeper);
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

/* ---- main ----------------------------------------------------------------------------- */

int
main(int argc, char **argv)
{
    const TestQemuBinary *const *bins;

    g_test_init(&argc, &argv, NULL);
    ho_log_init();
    install_cleanup();

    g_test_add_func("/driver/define", test_define);
    g_test_add_func("/driver/stale-status", test_stale_status);
    for (bins = test_qemu_binaries(); *bins; bins++) {
        const TestQemuBinary *bin = *bins;
        g_autofree char *lifecycle = g_strdup_printf("/driver/%s/lifecycle", bin->name);
        g_autofree char *failure = g_strdup_printf("/driver/%s/start-failure", bin->name);
        g_autofree char *restart = g_strdup_printf("/driver/%s/restart", bin->name);
        g_autofree char *crash = g_strdup_printf("/driver/%s/crash", bin->name);
        g_autofree char *nomon = g_strdup_printf("/driver/%s/monitor-unavailable", bin->name);

        g_test_add_data_func(lifecycle, bin, test_lifecycle);
        g_test_add_data_func(failure, bin, test_start_failure);
        g_test_add_data_func(restart, bin, test_restart);
        g_test_add_data_func(crash, bin, test_crash);
        g_test_add_data_func(nomon, bin, test_monitor_unavailable);
    }
    return g_test_run();
}
