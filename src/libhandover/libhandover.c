/*
 * libhandover: the public C API (include/handover/handover.h) over the RPC
 * client (src/rpc/ho_rpc_client.h).
 *
 * Each connection owns a private GMainContext that only its own calls
 * iterate, so the library works the same in programs with or without a
 * GLib main loop and never touches the caller's default context. Calls are
 * synchronous and bounded by the connection's timeout.
 *
 * Errors go into the per-thread slot of src/util/ho_error.h (the copy
 * linked into this library); handover_last_error() shows it through the
 * public HandoverError. Every public call empties the slot first, so after
 * a successful call handover_last_error() is NULL.
 */
#define HO_LOG_MODULE "libhandover"

#include "handover/handover.h"

#include <glib.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ho_error.h"
#include "ho_i18n.h"
#include "ho_json.h"
#include "ho_log.h"
#include "ho_rpc_client.h"
#include "ho_uri.h"

#ifndef HO_LOCALEDIR
# define HO_LOCALEDIR "/usr/local/share/locale"
#endif

#define DEFAULT_TIMEOUT_MS 120000
/* Connecting and the hello exchange: local and quick, or the daemon is stuck. */
#define CONNECT_TIMEOUT_MS 30000
#define DEFAULT_TCP_PORT 16514
#define DEFAULT_SHUTDOWN_S 60
/* Margin on top of a shutdown's own timeout for the daemon to kill and reap. */
#define SHUTDOWN_MARGIN_MS 30000
#define SYSTEM_SOCKET "/run/handover/handoverd.sock"
#define CLIENT_NAME "libhandover " PACKAGE_VERSION_STRING
/* A migrate call returns when its job ends: bounded, but generously. */
#define MIGRATE_MAX_WAIT_MS (24u * 3600u * 1000u)
/* Most disks a migrate call names (the daemon's own limit). */
#define MIGRATE_DISKS_MAX 256

struct _HandoverConnect {
    gint refs;                 /* the caller's handle plus one per domain handle */
    GMainContext *ctx;         /* private; NULL once closed */
    HoRpcConn *rpc;            /* NULL once closed */
    char *daemon_version;
    char *hostname;
    char *host_uuid;
    guint timeout_ms;
    HandoverLifecycleFunc lifecycle_cb;
    void *lifecycle_opaque;
    HandoverJobEventFunc job_cb;
    void *job_opaque;
    bool subscribed;
};

struct _HandoverDomain {
    HandoverConnect *conn;     /* a reference: the handle outlives a close */
    char *name;
    char *uuid;
};

/* ---- errors ---- */

G_STATIC_ASSERT((int)HANDOVER_ERR_NO_DOMAIN == (int)HO_ERR_NO_DOMAIN);

static GPrivate public_error = G_PRIVATE_INIT(g_free);

/* Every public call but the destructors starts here: the catalogue and the
 * log settings (HANDOVER_LOG_LEVEL, ...) once, and an empty error slot. The
 * program owns the locale: no setlocale() here. */
static void
api_enter(void)
{
    static gsize once;

    if (g_once_init_enter(&once)) {
        ho_log_init();
        (void)bindtextdomain(HO_GETTEXT_PACKAGE, HO_LOCALEDIR);
        (void)bind_textdomain_codeset(HO_GETTEXT_PACKAGE, "UTF-8");
        g_once_init_leave(&once, 1);
    }
    ho_error_reset();
}

static HandoverErrorCode
error_code_to_public(HoErrorCode code)
{
    switch (code) {
    case HO_ERR_NONE: return HANDOVER_ERR_NONE;
    case HO_ERR_INTERNAL: return HANDOVER_ERR_INTERNAL;
    case HO_ERR_INVALID_ARG: return HANDOVER_ERR_INVALID_ARG;
    case HO_ERR_SYSTEM: return HANDOVER_ERR_SYSTEM;
    case HO_ERR_JSON: return HANDOVER_ERR_JSON;
    case HO_ERR_XML: return HANDOVER_ERR_XML;
    case HO_ERR_URI: return HANDOVER_ERR_URI;
    case HO_ERR_QMP: return HANDOVER_ERR_QMP;
    case HO_ERR_MONITOR: return HANDOVER_ERR_MONITOR;
    case HO_ERR_TIMEOUT: return HANDOVER_ERR_TIMEOUT;
    case HO_ERR_NO_SUPPORT: return HANDOVER_ERR_NO_SUPPORT;
    case HO_ERR_OPERATION_INVALID: return HANDOVER_ERR_OPERATION_INVALID;
    case HO_ERR_LIMIT: return HANDOVER_ERR_LIMIT;
    case HO_ERR_RPC: return HANDOVER_ERR_RPC;
    case HO_ERR_NO_DOMAIN: return HANDOVER_ERR_NO_DOMAIN;
    case HO_ERR_LAST: break;
    }
    return HANDOVER_ERR_INTERNAL;
}

const HandoverError *
handover_last_error(void)
{
    const HoError *err = ho_error_last();
    HandoverError *pub;

    if (!err)
        return NULL;
    pub = g_private_get(&public_error);
    if (!pub) {
        pub = g_new0(HandoverError, 1);
        g_private_set(&public_error, pub);
    }
    pub->code = error_code_to_public(err->code);
    pub->code_name = ho_error_code_name(err->code);
    pub->message = err->message;
    return pub;
}

/* A caller's NULL where an object is required: report it instead of crashing. */
static bool
check_arg(const void *ptr, const char *func, const char *what)
{
    if (ptr)
        return true;
    ho_error_report(HO_ERR_INVALID_ARG, _("%1$s: '%2$s' must not be NULL"), func, what);
    return false;
}

/* ---- connections ---- */

static char *
default_socket_path(void)
{
    if (geteuid() == 0)
        return g_strdup(SYSTEM_SOCKET);
    return g_build_filename(g_get_user_runtime_dir(), "handover", "handoverd.sock", NULL);
}

/* Only the parameters a scheme knows: a typo must not be ignored silently. */
static int
check_uri_params(const HoUri *uri, const char *text, const char *allowed)
{
    GHashTableIter iter;
    gpointer key;

    if (!uri->params)
        return 0;
    g_hash_table_iter_init(&iter, uri->params);
    while (g_hash_table_iter_next(&iter, &key, NULL)) {
        if (!allowed || !g_str_equal(key, allowed)) {
            ho_error_report(HO_ERR_URI, _("unknown parameter '%1$s' in URI '%2$s'"),
                            (const char *)key, text);
            return -1;
        }
    }
    return 0;
}

static HoRpcConn *
connect_uri(const char *text, GMainContext *ctx)
{
    g_autoptr(HoUri) uri = ho_uri_parse(text);

    if (!uri)
        return NULL;
    if (!g_str_equal(uri->path, "/system")) {
        ho_error_report(HO_ERR_URI, _("unsupported path '%1$s' in URI '%2$s': use '/system'"),
                        uri->path, text);
        return NULL;
    }
    if (g_str_equal(uri->scheme, "handover") || g_str_equal(uri->scheme, "handover+unix")) {
        bool is_unix = g_str_equal(uri->scheme, "handover+unix");
        const char *socket = is_unix ? ho_uri_get_param(uri, "socket") : NULL;
        g_autofree char *path = NULL;

        if (uri->host && *uri->host) {
            ho_error_report(HO_ERR_URI, _("URI '%1$s' names a host: use handover+tcp for a "
                                          "remote daemon"), text);
            return NULL;
        }
        if (check_uri_params(uri, text, is_unix ? "socket" : NULL) < 0)
            return NULL;
        if (socket && !*socket) {
            ho_error_report(HO_ERR_URI, _("empty socket path in URI '%1$s'"), text);
            return NULL;
        }
        path = socket ? g_strdup(socket) : default_socket_path();
        HO_DEBUG("connecting to %s", path);
        return ho_rpc_conn_open_unix(path, CLIENT_NAME, ctx, CONNECT_TIMEOUT_MS);
    }
    if (g_str_equal(uri->scheme, "handover+tcp")) {
        if (!uri->host || !*uri->host) {
            ho_error_report(HO_ERR_URI, _("URI '%1$s' has no host"), text);
            return NULL;
        }
        if (check_uri_params(uri, text, NULL) < 0)
            return NULL;
        HO_DEBUG("connecting to %s port %d", uri->host, uri->port ? uri->port : DEFAULT_TCP_PORT);
        return ho_rpc_conn_open_tcp(uri->host, uri->port ? uri->port : DEFAULT_TCP_PORT,
                                    CLIENT_NAME, ctx, CONNECT_TIMEOUT_MS);
    }
    ho_error_report(HO_ERR_URI, _("unsupported scheme '%1$s' in URI '%2$s'"), uri->scheme,
                    text);
    return NULL;
}

static char *
hello_string(json_object *hello, const char *key)
{
    const char *val = NULL;

    if (hello)
        (void)ho_json_opt_string(hello, key, &val);
    return g_strdup(val ? val : "");
}

static void
connect_unref(HandoverConnect *conn)
{
    if (!conn || !g_atomic_int_dec_and_test(&conn->refs))
        return;
    g_free(conn->daemon_version);
    g_free(conn->hostname);
    g_free(conn->host_uuid);
    g_free(conn);
}

HandoverConnect *
handover_connect_open(const char *uri)
{
    const char *text = uri;
    g_autoptr(GMainContext) ctx = NULL;
    HoRpcConn *rpc;
    HandoverConnect *conn;
    json_object *hello;

    api_enter();
    if (!text)
        text = g_getenv("HANDOVER_DEFAULT_URI");
    if (!text || !*text)
        text = "handover:///system";
    ctx = g_main_context_new();
    if (!(rpc = connect_uri(text, ctx)))
        return NULL;

    conn = g_new0(HandoverConnect, 1);
    conn->refs = 1;
    conn->ctx = g_steal_pointer(&ctx);
    conn->rpc = rpc;
    conn->timeout_ms = DEFAULT_TIMEOUT_MS;
    hello = ho_rpc_conn_get_hello(rpc);
    conn->daemon_version = hello_string(hello, "daemon");
    conn->hostname = hello_string(hello, "hostname");
    conn->host_uuid = hello_string(hello, "host_uuid");
    HO_DEBUG("connected to %s (%s)", conn->daemon_version, conn->hostname);
    return conn;
}

void
handover_connect_close(HandoverConnect *conn)
{
    if (!conn)
        return;
    if (conn->rpc) {
        /* Nothing of ours may run while the connection is torn down. */
        ho_rpc_conn_set_callbacks(conn->rpc, NULL, NULL, NULL);
        g_clear_pointer(&conn->rpc, ho_rpc_conn_free);
    }
    g_clear_pointer(&conn->ctx, g_main_context_unref);
    conn->lifecycle_cb = NULL;
    conn->job_cb = NULL;
    connect_unref(conn);
}

void
handover_connect_set_timeout(HandoverConnect *conn, unsigned int timeout_ms)
{
    api_enter();
    if (!check_arg(conn, "handover_connect_set_timeout", "conn"))
        return;
    conn->timeout_ms = timeout_ms ? timeout_ms : DEFAULT_TIMEOUT_MS;
}

const char *
handover_connect_get_daemon_version(HandoverConnect *conn)
{
    api_enter();
    if (!check_arg(conn, "handover_connect_get_daemon_version", "conn"))
        return NULL;
    return conn->daemon_version;
}

const char *
handover_connect_get_hostname(HandoverConnect *conn)
{
    api_enter();
    if (!check_arg(conn, "handover_connect_get_hostname", "conn"))
        return NULL;
    return conn->hostname;
}

const char *
handover_connect_get_host_uuid(HandoverConnect *conn)
{
    api_enter();
    if (!check_arg(conn, "handover_connect_get_host_uuid", "conn"))
        return NULL;
    return conn->host_uuid;
}

/* The connection is usable for a call: not NULL, not closed, not broken. */
static bool
connect_check(HandoverConnect *conn, const char *func)
{
    if (!check_arg(conn, func, "conn"))
        return false;
    if (!conn->rpc) {
        ho_error_report(HO_ERR_INVALID_ARG, _("%1$s: the connection is closed"), func);
        return false;
    }
    return true;
}

/* A synchronous call on conn; params consumed. 0 and *result (a new
 * reference, may be NULL when result is NULL), or -1 and an error. */
static int
call(HandoverConnect *conn, const char *method, json_object *params, json_object **result,
     guint timeout_ms)
{
    g_autoptr(json_object) reply = NULL;

    if (!conn->rpc) {
        json_object_put(params);
        ho_error_report(HO_ERR_INVALID_ARG, _("%1$s: the connection is closed"), method);
        return -1;
    }
    if (ho_rpc_conn_call_sync(conn->rpc, method, params, &reply,
                              timeout_ms ? timeout_ms : conn->timeout_ms) < 0)
        return -1;
    if (!json_object_is_type(reply, json_type_object)) {
        ho_error_report(HO_ERR_RPC, _("the daemon's reply to '%1$s' is not an object"), method);
        return -1;
    }
    if (result)
        *result = g_steal_pointer(&reply);
    return 0;
}

/* Pretty JSON text, malloc'ed for the caller's free(). */
static char *
json_to_malloc_string(json_object *obj)
{
    const char *text = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PRETTY |
                                                               JSON_C_TO_STRING_NOSLASHESCAPE);
    char *copy = strdup(text);

    if (!copy)
        g_error("out of memory");
    return copy;
}

char *
handover_connect_get_capabilities(HandoverConnect *conn, const char *emulator)
{
    g_autoptr(json_object) params = json_object_new_object();
    g_autoptr(json_object) result = NULL;

    api_enter();
    if (!connect_check(conn, "handover_connect_get_capabilities"))
        return NULL;
    if (emulator)
        ho_json_add_string(params, "emulator", emulator);
    if (call(conn, "host.capabilities", g_steal_pointer(&params), &result, 0) < 0)
        return NULL;
    return json_to_malloc_string(result);
}

char *
handover_connect_get_info(HandoverConnect *conn)
{
    g_autoptr(json_object) result = NULL;

    api_enter();
    if (!connect_check(conn, "handover_connect_get_info"))
        return NULL;
    if (call(conn, "host.info", NULL, &result, 0) < 0)
        return NULL;
    return json_to_malloc_string(result);
}

/* ---- domains ---- */

static const char *const state_names[] = {
    [HANDOVER_DOMAIN_NOSTATE] = "nostate",
    [HANDOVER_DOMAIN_RUNNING] = "running",
    [HANDOVER_DOMAIN_PAUSED] = "paused",
    [HANDOVER_DOMAIN_SHUTOFF] = "shutoff",
    [HANDOVER_DOMAIN_CRASHED] = "crashed",
    [HANDOVER_DOMAIN_SHUTTING_DOWN] = "shutting-down",
};

const char *
handover_domain_state_name(HandoverDomainState state)
{
    if ((unsigned int)state >= G_N_ELEMENTS(state_names))
        return state_names[HANDOVER_DOMAIN_NOSTATE];
    return state_names[state];
}

/* A state from the wire; one this library does not know is "nostate". */
static HandoverDomainState
state_from_name(const char *name)
{
    size_t i;

    for (i = 1; i < G_N_ELEMENTS(state_names); i++) {
        if (g_str_equal(state_names[i], name))
            return (HandoverDomainState)i;
    }
    HO_DEBUG("unknown domain state '%s'", name);
    return HANDOVER_DOMAIN_NOSTATE;
}

static HandoverDomain *
domain_new(HandoverConnect *conn, const char *name, const char *uuid)
{
    HandoverDomain *dom = g_new0(HandoverDomain, 1);

    g_atomic_int_inc(&conn->refs);
    dom->conn = conn;
    dom->name = g_strdup(name);
    dom->uuid = g_strdup(uuid);
    return dom;
}

/* A handle from a reply object with "name" and "uuid". */
static HandoverDomain *
domain_from_json(HandoverConnect *conn, json_object *obj)
{
    const char *name;
    const char *uuid;

    if (ho_json_get_string(obj, "name", &name) < 0 || ho_json_get_string(obj, "uuid", &uuid) < 0)
        return NULL;
    return domain_new(conn, name, uuid);
}

void
handover_domain_free(HandoverDomain *dom)
{
    if (!dom)
        return;
    connect_unref(dom->conn);
    g_free(dom->name);
    g_free(dom->uuid);
    g_free(dom);
}

const char *
handover_domain_get_name(const HandoverDomain *dom)
{
    api_enter();
    if (!check_arg(dom, "handover_domain_get_name", "dom"))
        return NULL;
    return dom->name;
}

const char *
handover_domain_get_uuid(const HandoverDomain *dom)
{
    api_enter();
    if (!check_arg(dom, "handover_domain_get_uuid", "dom"))
        return NULL;
    return dom->uuid;
}

int
handover_connect_list_domains(HandoverConnect *conn, HandoverDomain ***domains,
                              unsigned int flags)
{
    g_autoptr(json_object) params = json_object_new_object();
    g_autoptr(json_object) result = NULL;
    g_autoptr(GPtrArray) found = NULL;
    json_object *array;
    bool want_active = !flags || (flags & HANDOVER_LIST_ACTIVE);
    bool want_inactive = !flags || (flags & HANDOVER_LIST_INACTIVE);
    HandoverDomain **out;
    size_t i;

    api_enter();
    if (!connect_check(conn, "handover_connect_list_domains") ||
        !check_arg(domains, "handover_connect_list_domains", "domains"))
        return -1;
    if (flags & ~(unsigned int)(HANDOVER_LIST_ACTIVE | HANDOVER_LIST_INACTIVE)) {
        ho_error_report(HO_ERR_INVALID_ARG, _("%1$s: unknown flags 0x%2$x"),
                        "handover_connect_list_domains", flags);
        return -1;
    }
    ho_json_add_bool(params, "all", want_inactive);
    if (call(conn, "domain.list", g_steal_pointer(&params), &result, 0) < 0)
        return -1;
    if (ho_json_get_array(result, "domains", &array) < 0)
        return -1;

    found = g_ptr_array_new_with_free_func((GDestroyNotify)handover_domain_free);
    for (i = 0; i < json_object_array_length(array); i++) {
        json_object *entry = json_object_array_get_idx(array, i);
        const char *state;
        bool active;
        HandoverDomain *dom;

        if (!json_object_is_type(entry, json_type_object)) {
            ho_error_report(HO_ERR_RPC, _("entry %1$zu of the daemon's domain list is not an "
                                          "object"), i);
            return -1;
        }
        if (ho_json_get_string(entry, "state", &state) < 0)
            return -1;
        active = !g_str_equal(state, "shutoff");
        if ((active && !want_active) || (!active && !want_inactive))
            continue;
        if (!(dom = domain_from_json(conn, entry)))
            return -1;
        g_ptr_array_add(found, dom);
    }

    /* The caller frees the array with free(): malloc it ourselves. */
    out = malloc((found->len + 1) * sizeof(*out));
    if (!out)
        g_error("out of memory");
    g_ptr_array_set_free_func(found, NULL);
    for (i = 0; i < found->len; i++)
        out[i] = g_ptr_array_index(found, i);
    out[i] = NULL;
    *domains = out;
    return (int)i;
}

HandoverDomain *
handover_domain_define_xml(HandoverConnect *conn, const char *xml)
{
    g_autoptr(json_object) params = json_object_new_object();
    g_autoptr(json_object) result = NULL;

    api_enter();
    if (!connect_check(conn, "handover_domain_define_xml") ||
        !check_arg(xml, "handover_domain_define_xml", "xml"))
        return NULL;
    ho_json_add_string(params, "xml", xml);
    if (call(conn, "domain.define", g_steal_pointer(&params), &result, 0) < 0)
        return NULL;
    return domain_from_json(conn, result);
}

HandoverDomain *
handover_domain_lookup_by_name(HandoverConnect *conn, const char *name)
{
    g_autoptr(json_object) params = json_object_new_object();
    g_autoptr(json_object) result = NULL;

    api_enter();
    if (!connect_check(conn, "handover_domain_lookup_by_name") ||
        !check_arg(name, "handover_domain_lookup_by_name", "name"))
        return NULL;
    ho_json_add_string(params, "name", name);
    if (call(conn, "domain.info", g_steal_pointer(&params), &result, 0) < 0)
        return NULL;
    return domain_from_json(conn, result);
}

/* A call about one domain: params gets "name" (the UUID, which stays
 * bound to this domain even if another one takes its name later). */
static int
domain_call(HandoverDomain *dom, const char *func, const char *method, json_object *params,
            json_object **result, guint timeout_ms)
{
    if (!check_arg(dom, func, "dom") || !connect_check(dom->conn, func)) {
        json_object_put(params);
        return -1;
    }
    if (!params)
        params = json_object_new_object();
    ho_json_add_string(params, "name", dom->uuid && *dom->uuid ? dom->uuid : dom->name);
    return call(dom->conn, method, params, result, timeout_ms);
}

int
handover_domain_start(HandoverDomain *dom, unsigned int flags)
{
    g_autoptr(json_object) params = json_object_new_object();

    api_enter();
    if (flags & ~(unsigned int)HANDOVER_START_PAUSED) {
        ho_error_report(HO_ERR_INVALID_ARG, _("%1$s: unknown flags 0x%2$x"),
                        "handover_domain_start", flags);
        return -1;
    }
    if (flags & HANDOVER_START_PAUSED)
        ho_json_add_bool(params, "paused", true);
    return domain_call(dom, "handover_domain_start", "domain.start", g_steal_pointer(&params),
                       NULL, 0);
}

int
handover_domain_shutdown(HandoverDomain *dom, unsigned int timeout_s, bool *forced)
{
    g_autoptr(json_object) params = json_object_new_object();
    g_autoptr(json_object) result = NULL;
    guint64 wait_ms = (guint64)(timeout_s ? timeout_s : DEFAULT_SHUTDOWN_S) * 1000 +
                      SHUTDOWN_MARGIN_MS;
    bool was_forced = false;

    api_enter();
    if (timeout_s > G_MAXINT32) {
        ho_error_report(HO_ERR_INVALID_ARG, _("%1$s: timeout %2$u s is too large"),
                        "handover_domain_shutdown", timeout_s);
        return -1;
    }
    if (timeout_s)
        ho_json_add_int64(params, "timeout", timeout_s);
    /* The reply comes when the guest has stopped: wait for the whole
     * shutdown, not just the usual bound. */
    if (dom && dom->conn && wait_ms < dom->conn->timeout_ms)
        wait_ms = dom->conn->timeout_ms;
    if (domain_call(dom, "handover_domain_shutdown", "domain.shutdown",
                    g_steal_pointer(&params), &result, (guint)MIN(wait_ms, G_MAXUINT)) < 0)
        return -1;
    if (ho_json_opt_bool(result, "forced", &was_forced) < 0)
        return -1;
    if (forced)
        *forced = was_forced;
    return 0;
}

int
handover_domain_destroy(HandoverDomain *dom)
{
    api_enter();
    return domain_call(dom, "handover_domain_destroy", "domain.destroy", NULL, NULL, 0);
}

int
handover_domain_suspend(HandoverDomain *dom)
{
    api_enter();
    return domain_call(dom, "handover_domain_suspend", "domain.suspend", NULL, NULL, 0);
}

int
handover_domain_resume(HandoverDomain *dom)
{
    api_enter();
    return domain_call(dom, "handover_domain_resume", "domain.resume", NULL, NULL, 0);
}

int
handover_domain_undefine(HandoverDomain *dom)
{
    api_enter();
    return domain_call(dom, "handover_domain_undefine", "domain.undefine", NULL, NULL, 0);
}

int
handover_domain_get_info(HandoverDomain *dom, HandoverDomainInfo *info)
{
    g_autoptr(json_object) result = NULL;
    const char *state;
    uint64_t max_memory, memory, vcpus;
    int64_t pid = 0;
    bool persistent;

    api_enter();
    if (!check_arg(info, "handover_domain_get_info", "info"))
        return -1;
    if (domain_call(dom, "handover_domain_get_info", "domain.info", NULL, &result, 0) < 0)
        return -1;
    if (ho_json_get_string(result, "state", &state) < 0 ||
        ho_json_get_uint64(result, "max_memory_kib", &max_memory) < 0 ||
        ho_json_get_uint64(result, "memory_kib", &memory) < 0 ||
        ho_json_get_uint64(result, "vcpus", &vcpus) < 0 ||
        ho_json_get_bool(result, "persistent", &persistent) < 0 ||
        ho_json_opt_int64(result, "pid", &pid) < 0)
        return -1;
    if (vcpus > G_MAXUINT || pid < 0 || pid > G_MAXINT) {
        ho_error_report(HO_ERR_RPC, _("the daemon's domain information is out of range"));
        return -1;
    }
    info->state = state_from_name(state);
    info->max_memory_kib = max_memory;
    info->memory_kib = memory;
    info->vcpus = (unsigned int)vcpus;
    info->persistent = persistent;
    info->pid = (int)pid;
    return 0;
}

int
handover_domain_get_state(HandoverDomain *dom, HandoverDomainState *state, char **reason)
{
    g_autoptr(json_object) result = NULL;
    const char *name;
    const char *why = NULL;
    char *copy = NULL;

    api_enter();
    if (!check_arg(state, "handover_domain_get_state", "state"))
        return -1;
    if (domain_call(dom, "handover_domain_get_state", "domain.state", NULL, &result, 0) < 0)
        return -1;
    if (ho_json_get_string(result, "state", &name) < 0 ||
        ho_json_opt_string(result, "reason", &why) < 0)
        return -1;
    *state = state_from_name(name);
    if (reason) {
        copy = why ? strdup(why) : NULL;
        if (why && !copy)
            g_error("out of memory");
        *reason = copy;
    }
    return 0;
}

char *
handover_domain_get_xml_desc(HandoverDomain *dom, unsigned int flags)
{
    g_autoptr(json_object) params = json_object_new_object();
    g_autoptr(json_object) result = NULL;
    const char *xml;
    char *copy;

    api_enter();
    if (flags & ~(unsigned int)HANDOVER_XML_INACTIVE) {
        ho_error_report(HO_ERR_INVALID_ARG, _("%1$s: unknown flags 0x%2$x"),
                        "handover_domain_get_xml_desc", flags);
        return NULL;
    }
    if (flags & HANDOVER_XML_INACTIVE)
        ho_json_add_bool(params, "inactive", true);
    if (domain_call(dom, "handover_domain_get_xml_desc", "domain.get_xml",
                    g_steal_pointer(&params), &result, 0) < 0)
        return NULL;
    if (ho_json_get_string(result, "xml", &xml) < 0)
        return NULL;
    if (!(copy = strdup(xml)))
        g_error("out of memory");
    return copy;
}

/* ---- migration ---- */

void
handover_migrate_params_init(HandoverMigrateParams *params)
{
    if (!params)
        return;
    memset(params, 0, sizeof(*params));
    params->size = sizeof(*params);
}

void
handover_job_info_init(HandoverJobInfo *info)
{
    if (!info)
        return;
    memset(info, 0, sizeof(*info));
    info->size = sizeof(*info);
    info->elapsed_ms = info->setup_ms = -1;
    info->data_total = info->data_processed = info->data_remaining = -1;
    info->memory_total = info->memory_processed = info->memory_remaining = -1;
    info->bandwidth_bps = info->dirty_rate_pps = info->iteration = -1;
    info->expected_downtime_ms = info->downtime_ms = info->total_ms = -1;
    info->orchestrator_ms = -1;
    info->disk_total = info->disk_processed = info->disk_remaining = -1;
    info->disk_bandwidth_bps = -1;
    info->switchover_us = info->switchover_qemu_us = info->switchover_own_us = -1;
    info->postcopy_requests = info->postcopy_bytes = -1;
    info->downtime_limit_ms = -1;
}

/* The caller's structure may be older (smaller) than ours: write only its
 * first size bytes, and never more than ours. */
static int
job_info_check(const HandoverJobInfo *info, const char *func)
{
    if (!check_arg(info, func, "info"))
        return -1;
    if (info->size < offsetof(HandoverJobInfo, elapsed_ms)) {
        ho_error_report(HO_ERR_INVALID_ARG,
                        _("%1$s: 'info' is not initialised (call handover_job_info_init)"),
                        func);
        return -1;
    }
    return 0;
}

static void
job_info_copy_out(HandoverJobInfo *out, const HandoverJobInfo *full)
{
    size_t size = MIN(out->size, sizeof(*full));

    memcpy(out, full, size);
    out->size = size;
}

static const struct {
    const char *key;
    size_t offset;
} job_info_numbers[] = {
    {"elapsed_ms", offsetof(HandoverJobInfo, elapsed_ms)},
    {"setup_ms", offsetof(HandoverJobInfo, setup_ms)},
    {"data_total", offsetof(HandoverJobInfo, data_total)},
    {"data_processed", offsetof(HandoverJobInfo, data_processed)},
    {"data_remaining", offsetof(HandoverJobInfo, data_remaining)},
    {"memory_total", offsetof(HandoverJobInfo, memory_total)},
    {"memory_processed", offsetof(HandoverJobInfo, memory_processed)},
    {"memory_remaining", offsetof(HandoverJobInfo, memory_remaining)},
    {"bandwidth_bps", offsetof(HandoverJobInfo, bandwidth_bps)},
    {"dirty_rate_pps", offsetof(HandoverJobInfo, dirty_rate_pps)},
    {"iteration", offsetof(HandoverJobInfo, iteration)},
    {"expected_downtime_ms", offsetof(HandoverJobInfo, expected_downtime_ms)},
    {"downtime_ms", offsetof(HandoverJobInfo, downtime_ms)},
    {"total_ms", offsetof(HandoverJobInfo, total_ms)},
    {"orchestrator_ms", offsetof(HandoverJobInfo, orchestrator_ms)},
    {"disk_total", offsetof(HandoverJobInfo, disk_total)},
    {"disk_processed", offsetof(HandoverJobInfo, disk_processed)},
    {"disk_remaining", offsetof(HandoverJobInfo, disk_remaining)},
    {"disk_bandwidth_bps", offsetof(HandoverJobInfo, disk_bandwidth_bps)},
    {"postcopy_requests", offsetof(HandoverJobInfo, postcopy_requests)},
    {"postcopy_bytes", offsetof(HandoverJobInfo, postcopy_bytes)},
    {"downtime_limit_ms", offsetof(HandoverJobInfo, downtime_limit_ms)},
};

/* Durations the daemon gives in milliseconds (maybe fractional) and, more
 * precisely, in microseconds under the same name with "_us": the
 * structure holds microseconds. */
static const struct {
    const char *key_ms;
    const char *key_us;
    size_t offset;
} job_info_durations[] = {
    {"switchover_ms", "switchover_us", offsetof(HandoverJobInfo, switchover_us)},
    {"switchover_qemu_ms", "switchover_qemu_us", offsetof(HandoverJobInfo, switchover_qemu_us)},
    {"switchover_own_ms", "switchover_own_us", offsetof(HandoverJobInfo, switchover_own_us)},
};

static bool
json_is_number(json_object *val)
{
    return json_object_is_type(val, json_type_int) || json_object_is_type(val, json_type_double);
}

/* The job's warnings ("warnings", an array of strings) joined by "; ". */
static void
job_info_warnings(json_object *obj, HandoverJobInfo *info)
{
    g_autoptr(GString) text = g_string_new(NULL);
    json_object *arr;
    size_t i, n;

    if (!json_object_object_get_ex(obj, "warnings", &arr) ||
        !json_object_is_type(arr, json_type_array))
        return;
    n = json_object_array_length(arr);
    for (i = 0; i < n; i++) {
        json_object *w = json_object_array_get_idx(arr, i);

        if (!json_object_is_type(w, json_type_string))
            continue;
        if (text->len)
            g_string_append(text, "; ");
        g_string_append(text, json_object_get_string(w));
    }
    g_strlcpy(info->warning, text->str, sizeof(info->warning));
}

/* The daemon's job info object into a full structure. Lenient: a field of
 * the wrong type is left unknown (a newer daemon may say more). */
static void
job_info_from_json(json_object *obj, HandoverJobInfo *info)
{
    json_object *val;
    size_t i;

    handover_job_info_init(info);
    if (!obj || !json_object_is_type(obj, json_type_object))
        return;
    if (json_object_object_get_ex(obj, "phase", &val) && json_object_is_type(val, json_type_string))
        g_strlcpy(info->phase, json_object_get_string(val), sizeof(info->phase));
    if (json_object_object_get_ex(obj, "side", &val) && json_object_is_type(val, json_type_string))
        g_strlcpy(info->side, json_object_get_string(val), sizeof(info->side));
    for (i = 0; i < G_N_ELEMENTS(job_info_numbers); i++) {
        if (json_object_object_get_ex(obj, job_info_numbers[i].key, &val) && json_is_number(val))
            *(int64_t *)((char *)info + job_info_numbers[i].offset) = json_object_get_int64(val);
    }
    for (i = 0; i < G_N_ELEMENTS(job_info_durations); i++) {
        int64_t *out = (int64_t *)((char *)info + job_info_durations[i].offset);
        double ms;

        if (json_object_object_get_ex(obj, job_info_durations[i].key_us, &val) &&
            json_is_number(val)) {
            *out = json_object_get_int64(val);
        } else if (json_object_object_get_ex(obj, job_info_durations[i].key_ms, &val) &&
                   json_is_number(val)) {
            ms = json_object_get_double(val);
            /* Negative or absurd values stay unknown rather than wrap. */
            if (ms >= 0 && ms < 1e12)
                *out = (int64_t)(ms * 1000.0 + 0.5);
        }
    }
    job_info_warnings(obj, info);
    if (json_object_object_get_ex(obj, "error", &val)) {
        json_object *msg;

        if (json_object_is_type(val, json_type_string))
            g_strlcpy(info->error, json_object_get_string(val), sizeof(info->error));
        else if (json_object_object_get_ex(val, "message", &msg) &&
                 json_object_is_type(msg, json_type_string))
            g_strlcpy(info->error, json_object_get_string(msg), sizeof(info->error));
    }
}

/* The parameters as the domain.migrate method names them; NULL and an
 * error when they are not usable. */
static json_object *
migrate_params_to_json(const HandoverMigrateParams *params)
{
    HandoverMigrateParams p;
    json_object *obj;

    handover_migrate_params_init(&p);
    if (params) {
        if (params->size < offsetof(HandoverMigrateParams, live)) {
            ho_error_report(HO_ERR_INVALID_ARG,
                            _("%1$s: 'params' is not initialised (call "
                              "handover_migrate_params_init)"),
                            "handover_domain_migrate");
            return NULL;
        }
        memcpy(&p, params, MIN(params->size, sizeof(p)));
    }
    obj = json_object_new_object();
    if (p.live)
        ho_json_add_bool(obj, "live", true);
    if (p.persistent)
        ho_json_add_bool(obj, "persistent", true);
    if (p.undefine_source)
        ho_json_add_bool(obj, "undefine_source", true);
    if (p.paused)
        ho_json_add_bool(obj, "paused", true);
    if (p.dname)
        ho_json_add_string(obj, "dname", p.dname);
    if (p.xml)
        ho_json_add_string(obj, "xml", p.xml);
    if (p.migrate_uri)
        ho_json_add_string(obj, "migrate_uri", p.migrate_uri);
    if (p.listen_address)
        ho_json_add_string(obj, "listen_address", p.listen_address);
    if (p.has_bandwidth)
        ho_json_add(obj, "bandwidth_mib", json_object_new_uint64(p.bandwidth_mib));
    if (p.has_max_downtime)
        ho_json_add(obj, "max_downtime_ms", json_object_new_uint64(p.max_downtime_ms));
    if (p.auto_converge)
        ho_json_add_bool(obj, "auto_converge", true);
    if (p.parallel)
        ho_json_add_bool(obj, "parallel", true);
    if (p.parallel_connections)
        ho_json_add_int64(obj, "parallel_connections", p.parallel_connections);
    if (p.timeout_s)
        ho_json_add_int64(obj, "timeout_s", p.timeout_s);
    if (p.timeout_abort)
        ho_json_add_bool(obj, "timeout_abort", true);
    if (p.unsafe)
        ho_json_add_bool(obj, "unsafe", true);
    if (p.record_path)
        ho_json_add_string(obj, "record", p.record_path);
    if (p.copy_storage_all)
        ho_json_add_bool(obj, "copy_storage_all", true);
    if (p.copy_storage_inc)
        ho_json_add_bool(obj, "copy_storage_inc", true);
    if (p.copy_storage_synchronous_writes)
        ho_json_add_bool(obj, "copy_storage_synchronous_writes", true);
    if (p.migrate_disks) {
        json_object *arr = json_object_new_array();
        size_t i;

        for (i = 0; p.migrate_disks[i]; i++) {
            if (i >= MIGRATE_DISKS_MAX) {
                json_object_put(arr);
                json_object_put(obj);
                ho_error_report(HO_ERR_INVALID_ARG,
                                _("%1$s: 'migrate_disks' names more than %2$d disks"),
                                "handover_domain_migrate", MIGRATE_DISKS_MAX);
                return NULL;
            }
            json_object_array_add(arr, json_object_new_string(p.migrate_disks[i]));
        }
        ho_json_add(obj, "migrate_disks", arr);
    }
    if (p.disks_port)
        ho_json_add_int64(obj, "disks_port", p.disks_port);
    if (p.disks_uri)
        ho_json_add_string(obj, "disks_uri", p.disks_uri);
    if (p.postcopy)
        ho_json_add_bool(obj, "postcopy", true);
    if (p.postcopy_after_precopy)
        ho_json_add_bool(obj, "postcopy_after_precopy", true);
    if (p.has_postcopy_bandwidth)
        ho_json_add(obj, "postcopy_bandwidth_mib",
                    json_object_new_uint64(p.postcopy_bandwidth_mib));
    if (p.mode)
        ho_json_add_string(obj, "mode", p.mode);
    return obj;
}

static bool
migrate_params_is_cpr(json_object *args)
{
    json_object *val;

    return json_object_object_get_ex(args, "mode", &val) &&
           json_object_is_type(val, json_type_string) &&
           g_str_equal(json_object_get_string(val), "cpr-transfer");
}

int
handover_domain_migrate(HandoverConnect *conn, const char *name, const char *dest_uri,
                        const HandoverMigrateParams *params, HandoverJobInfo *completed)
{
    g_autoptr(json_object) req = NULL;
    g_autoptr(json_object) result = NULL;
    json_object *args;
    HandoverJobInfo full;

    api_enter();
    if (!connect_check(conn, "handover_domain_migrate") ||
        !check_arg(name, "handover_domain_migrate", "name"))
        return -1;
    if (completed && job_info_check(completed, "handover_domain_migrate") < 0)
        return -1;
    if (!(args = migrate_params_to_json(params)))
        return -1;
    /* A CPR transfer stays on this host; the daemon refuses a dest_uri with it. */
    if (!dest_uri && !migrate_params_is_cpr(args) &&
        !check_arg(dest_uri, "handover_domain_migrate", "dest_uri")) {
        json_object_put(args);
        return -1;
    }
    req = json_object_new_object();
    ho_json_add_string(req, "name", name);
    if (dest_uri)
        ho_json_add_string(req, "dest_uri", dest_uri);
    ho_json_add(req, "params", args);
    if (call(conn, "domain.migrate", g_steal_pointer(&req), &result,
             MAX(MIGRATE_MAX_WAIT_MS, conn->timeout_ms)) < 0)
        return -1;
    if (completed) {
        job_info_from_json(result, &full);
        job_info_copy_out(completed, &full);
    }
    return 0;
}

int
handover_domain_get_job_info(HandoverConnect *conn, const char *name, bool completed,
                             HandoverJobInfo *info)
{
    g_autoptr(json_object) req = NULL;
    g_autoptr(json_object) result = NULL;
    HandoverJobInfo full;

    api_enter();
    if (!connect_check(conn, "handover_domain_get_job_info") ||
        !check_arg(name, "handover_domain_get_job_info", "name") ||
        job_info_check(info, "handover_domain_get_job_info") < 0)
        return -1;
    req = json_object_new_object();
    ho_json_add_string(req, "name", name);
    if (completed)
        ho_json_add_bool(req, "completed", true);
    if (call(conn, "domain.jobinfo", g_steal_pointer(&req), &result, 0) < 0)
        return -1;
    job_info_from_json(result, &full);
    job_info_copy_out(info, &full);
    return 0;
}

int
handover_domain_abort_job(HandoverConnect *conn, const char *name)
{
    return handover_domain_abort_job_flags(conn, name, 0);
}

int
handover_domain_abort_job_flags(HandoverConnect *conn, const char *name, unsigned int flags)
{
    json_object *req;

    api_enter();
    if (!connect_check(conn, "handover_domain_abort_job") ||
        !check_arg(name, "handover_domain_abort_job", "name"))
        return -1;
    if (flags & ~(unsigned int)HANDOVER_ABORT_JOB_POSTCOPY) {
        ho_error_report(HO_ERR_INVALID_ARG, _("%1$s: unknown flags 0x%2$x"),
                        "handover_domain_abort_job_flags",
                        flags & ~(unsigned int)HANDOVER_ABORT_JOB_POSTCOPY);
        return -1;
    }
    req = json_object_new_object();
    ho_json_add_string(req, "name", name);
    if (flags & HANDOVER_ABORT_JOB_POSTCOPY)
        ho_json_add_bool(req, "postcopy", true);
    return call(conn, "domain.jobabort", req, NULL, 0);
}

int
handover_domain_migrate_postcopy(HandoverConnect *conn, const char *name)
{
    json_object *req;

    api_enter();
    if (!connect_check(conn, "handover_domain_migrate_postcopy") ||
        !check_arg(name, "handover_domain_migrate_postcopy", "name"))
        return -1;
    req = json_object_new_object();
    ho_json_add_string(req, "name", name);
    return call(conn, "domain.migrate_postcopy", req, NULL, 0);
}

int
handover_domain_migrate_recover(HandoverConnect *conn, const char *name, const char *dest_uri,
                                HandoverJobInfo *completed)
{
    g_autoptr(json_object) req = NULL;
    g_autoptr(json_object) result = NULL;
    HandoverJobInfo full;

    api_enter();
    if (!connect_check(conn, "handover_domain_migrate_recover") ||
        !check_arg(name, "handover_domain_migrate_recover", "name") ||
        !check_arg(dest_uri, "handover_domain_migrate_recover", "dest_uri"))
        return -1;
    if (completed && job_info_check(completed, "handover_domain_migrate_recover") < 0)
        return -1;
    req = json_object_new_object();
    ho_json_add_string(req, "name", name);
    ho_json_add_string(req, "dest_uri", dest_uri);
    if (call(conn, "domain.migrate_recover", g_steal_pointer(&req), &result,
             MAX(MIGRATE_MAX_WAIT_MS, conn->timeout_ms)) < 0)
        return -1;
    if (completed) {
        job_info_from_json(result, &full);
        job_info_copy_out(completed, &full);
    }
    return 0;
}

/* ---- events ---- */

static void
on_job_event(HandoverConnect *conn, json_object *data)
{
    const char *name = NULL;
    const char *uuid = NULL;
    const char *what = NULL;
    json_object *info_obj = NULL;
    HandoverJobInfo info;

    if (!conn->job_cb)
        return;
    if (!data || ho_json_get_string(data, "name", &name) < 0 ||
        ho_json_get_string(data, "uuid", &uuid) < 0 ||
        ho_json_get_string(data, "event", &what) < 0 ||
        ho_json_opt_object(data, "data", &info_obj) < 0) {
        HO_WARN("malformed job event: %s", ho_error_last_message());
        ho_error_reset();
        return;
    }
    job_info_from_json(info_obj, &info);
    /* A warning event's data is {"message"}: the warning itself. */
    if (g_str_equal(what, "warning") && info_obj) {
        const char *msg = NULL;

        if (ho_json_opt_string(info_obj, "message", &msg) < 0)
            ho_error_reset();
        if (msg)
            g_strlcpy(info.warning, msg, sizeof(info.warning));
    }
    conn->job_cb(conn, name, uuid, what, &info, conn->job_opaque);
}

static void on_event(HoRpcConn *rpc, const char *event, json_object *data, gint64 ts_us,
                     void *opaque);

/* Events are asked for once per connection, by the first registration. */
static int
events_subscribe(HandoverConnect *conn)
{
    if (conn->subscribed)
        return 0;
    ho_rpc_conn_set_callbacks(conn->rpc, on_event, NULL, conn);
    if (call(conn, "events.subscribe", NULL, NULL, 0) < 0)
        return -1;
    conn->subscribed = true;
    return 0;
}

int
handover_connect_register_job(HandoverConnect *conn, HandoverJobEventFunc cb, void *opaque)
{
    api_enter();
    if (!connect_check(conn, "handover_connect_register_job") ||
        !check_arg(cb, "handover_connect_register_job", "cb"))
        return -1;
    if (conn->job_cb) {
        ho_error_report(HO_ERR_OPERATION_INVALID,
                        _("a job event callback is already registered on this connection"));
        return -1;
    }
    /* Installed before subscribing: the first event may come right behind the reply. */
    conn->job_cb = cb;
    conn->job_opaque = opaque;
    if (events_subscribe(conn) < 0) {
        conn->job_cb = NULL;
        conn->job_opaque = NULL;
        return -1;
    }
    return 0;
}

static void
on_event(HoRpcConn *rpc, const char *event, json_object *data, gint64 ts_us, void *opaque)
{
    HandoverConnect *conn = opaque;
    const char *name = NULL;
    const char *uuid = NULL;
    const char *what = NULL;
    const char *detail = NULL;

    if (g_str_equal(event, "domain.job")) {
        on_job_event(conn, data);
        return;
    }
    if (!g_str_equal(event, "domain.lifecycle") || !conn->lifecycle_cb)
        return;
    /* A malformed event is the daemon's bug; skip it, the caller can do nothing. */
    if (!data || ho_json_get_string(data, "name", &name) < 0 ||
        ho_json_get_string(data, "uuid", &uuid) < 0 ||
        ho_json_get_string(data, "event", &what) < 0 ||
        ho_json_opt_string(data, "detail", &detail) < 0) {
        HO_WARN("malformed lifecycle event: %s", ho_error_last_message());
        ho_error_reset();
        return;
    }
    conn->lifecycle_cb(conn, name, uuid, what, detail, conn->lifecycle_opaque);
}

int
handover_connect_register_lifecycle(HandoverConnect *conn, HandoverLifecycleFunc cb,
                                    void *opaque)
{
    api_enter();
    if (!connect_check(conn, "handover_connect_register_lifecycle") ||
        !check_arg(cb, "handover_connect_register_lifecycle", "cb"))
        return -1;
    if (conn->lifecycle_cb) {
        ho_error_report(HO_ERR_OPERATION_INVALID,
                        _("a lifecycle callback is already registered on this connection"));
        return -1;
    }
    /* Installed before subscribing: the first event may come right behind the reply. */
    conn->lifecycle_cb = cb;
    conn->lifecycle_opaque = opaque;
    if (events_subscribe(conn) < 0) {
        conn->lifecycle_cb = NULL;
        conn->lifecycle_opaque = NULL;
        return -1;
    }
    return 0;
}

int
handover_connect_run_events(HandoverConnect *conn, unsigned int timeout_ms)
{
    api_enter();
    if (!connect_check(conn, "handover_connect_run_events"))
        return -1;
    /* The RPC layer has no "forever" 0; ours means "only what is there". */
    return ho_rpc_conn_wait_event(conn->rpc, timeout_ms ? timeout_ms : 1);
}
