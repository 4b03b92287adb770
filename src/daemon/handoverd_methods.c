/*
 * The handoverd protocol's methods, mapped onto the QEMU driver.
 *
 * The server has already checked every call's arguments against the
 * tables below, so handlers read them without re-checking their types.
 * A handler either answers at once, returns -1 with the driver's error
 * (the server answers with it), or hands a MethodsOp to an asynchronous
 * driver operation whose completion answers the call. Pending operations
 * are tracked so that a daemon stopping with operations in flight frees
 * their calls.
 */
#define HO_LOG_MODULE "daemon.methods"

#include "handoverd_methods.h"

#include <string.h>

#include "ho_error.h"
#include "ho_i18n.h"
#include "ho_json.h"
#include "ho_log.h"

/* Upper bound of a shutdown timeout a client may ask for (one day). */
#define METHODS_SHUTDOWN_TIMEOUT_MAX 86400

/* How long lifecycle calls wait for a reconnection before the driver gets
 * them anyway (and refuses them if it is still not done). */
#define METHODS_RECONNECT_WAIT_S 60

struct _HandoverdMethods {
    char *hostname;
    char *host_uuid;
    char *default_emulator;
    QemuDriver *driver;  /* not owned */
    HoRpcServer *server; /* not owned */
    GHashTable *pending; /* MethodsOp set: calls waiting for the driver */
    /* UUID -> GPtrArray of MethodsHeld: domains the driver found running
     * at open and is still reconnecting to, with the calls held for them. */
    GHashTable *reconnecting;
    guint reconnect_timer;
    GPtrArray *reconnected; /* UUIDs whose held calls run from release_idle */
    guint release_idle;
};

/* A lifecycle call held until its domain's reconnection is over. */
typedef struct {
    HoRpcCall *call;
    json_object *params;
    HoRpcHandler handler;
} MethodsHeld;

/* A call waiting for an asynchronous driver operation. */
typedef struct {
    HandoverdMethods *m;
    HoRpcCall *call;
    char *emulator; /* host.capabilities: the emulator asked about */
} MethodsOp;

static MethodsOp *
methods_op_new(HandoverdMethods *m, HoRpcCall *call)
{
    MethodsOp *op = g_new0(MethodsOp, 1);

    op->m = m;
    op->call = call;
    g_hash_table_add(m->pending, op);
    return op;
}

static void
methods_op_free(MethodsOp *op)
{
    g_free(op->emulator);
    g_free(op);
}

/* Answer the operation's call (result consumed, or err) and forget it. */
static void
methods_op_finish(MethodsOp *op, json_object *result, const HoError *err)
{
    g_hash_table_remove(op->m->pending, op);
    if (err) {
        json_object_put(result);
        ho_rpc_call_error(op->call, err);
    } else {
        ho_rpc_call_reply(op->call, result);
    }
    methods_op_free(op);
}

/* params may be NULL when the client left them out. */
static const char *
methods_param_string(json_object *params, const char *key)
{
    json_object *val = NULL;

    if (!params || !json_object_object_get_ex(params, key, &val) ||
        !json_object_is_type(val, json_type_string))
        return NULL;
    return json_object_get_string(val);
}

static bool
methods_param_bool(json_object *params, const char *key, bool dflt)
{
    json_object *val = NULL;

    if (!params || !json_object_object_get_ex(params, key, &val) ||
        !json_object_is_type(val, json_type_boolean))
        return dflt;
    return json_object_get_boolean(val);
}

static bool
methods_param_int(json_object *params, const char *key, int64_t *out)
{
    json_object *val = NULL;

    if (!params || !json_object_object_get_ex(params, key, &val) ||
        !json_object_is_type(val, json_type_int))
        return false;
    *out = json_object_get_int64(val);
    return true;
}

static QemuDriver *
methods_driver(HandoverdMethods *m)
{
    if (!m->driver)
        ho_error_report(HO_ERR_INTERNAL, _("the QEMU driver is not running"));
    return m->driver;
}

/* The domain named by the required "name" argument; NULL and an error. */
static QemuDomainObj *
methods_lookup(HandoverdMethods *m, json_object *params)
{
    QemuDriver *drv = methods_driver(m);
    const char *name = methods_param_string(params, "name");

    if (!drv)
        return NULL;
    if (!name) {
        ho_error_report(HO_ERR_INVALID_ARG, _("missing argument '%1$s'"), "name");
        return NULL;
    }
    return qemu_driver_lookup(drv, name);
}

static void
methods_held_free(MethodsHeld *held)
{
    json_object_put(held->params);
    g_free(held);
}

/* Hold a lifecycle call while the driver is still reconnecting to the
 * domain's QEMU after a restart: the driver refuses operations until its
 * monitor is back, and a client cannot tell when that is. true when held. */
static bool
methods_hold(HandoverdMethods *m, HoRpcCall *call, json_object *params, QemuDomainObj *dom,
             HoRpcHandler handler)
{
    GPtrArray *held = g_hash_table_lookup(m->reconnecting, qemu_domain_obj_uuid(dom));
    MethodsHeld *h;

    if (!held)
        return false;
    h = g_new0(MethodsHeld, 1);
    h->call = call;
    h->params = params ? json_object_get(params) : NULL;
    h->handler = handler;
    g_ptr_array_add(held, h);
    HO_DEBUG("domain '%s': %s held until reconnected", qemu_domain_obj_name(dom),
             ho_rpc_call_method(call));
    return true;
}

/* Run the calls held for one domain (uuid), now that its reconnection ended. */
static void
methods_release(HandoverdMethods *m, const char *uuid)
{
    g_autoptr(GPtrArray) held = NULL;
    g_autofree char *key = NULL;
    guint i;

    if (!g_hash_table_steal_extended(m->reconnecting, uuid, (gpointer *)&key, (gpointer *)&held))
        return;
    for (i = 0; i < held->len; i++) {
        MethodsHeld *h = g_ptr_array_index(held, i);

        if (h->handler(h->call, h->params, m) < 0) {
            g_autoptr(HoError) err = ho_error_steal();

            if (!err)
                err = ho_error_new(HO_ERR_INTERNAL, _("the operation failed"));
            ho_rpc_call_error(h->call, err);
        }
    }
}

/* Held calls go to the driver from an idle callback, not from inside the
 * driver's event emission. */
static gboolean
methods_release_idle(gpointer opaque)
{
    HandoverdMethods *m = opaque;
    g_autoptr(GPtrArray) uuids = g_steal_pointer(&m->reconnected);
    guint i;

    m->release_idle = 0;
    m->reconnected = g_ptr_array_new_with_free_func(g_free);
    for (i = 0; i < uuids->len; i++)
        methods_release(m, g_ptr_array_index(uuids, i));
    return G_SOURCE_REMOVE;
}

static gboolean
methods_reconnect_timeout(gpointer opaque)
{
    HandoverdMethods *m = opaque;
    g_autoptr(GPtrArray) uuids = g_ptr_array_new_with_free_func(g_free);
    GHashTableIter iter;
    gpointer key;
    guint i;

    m->reconnect_timer = 0;
    g_hash_table_iter_init(&iter, m->reconnecting);
    while (g_hash_table_iter_next(&iter, &key, NULL))
        g_ptr_array_add(uuids, g_strdup(key));
    if (uuids->len > 0)
        HO_WARN("%u domain(s) still reconnecting after %d s", uuids->len,
                METHODS_RECONNECT_WAIT_S);
    for (i = 0; i < uuids->len; i++)
        methods_release(m, g_ptr_array_index(uuids, i));
    return G_SOURCE_REMOVE;
}

/* ---- host ---- */

static int
methods_host_info(HoRpcCall *call, json_object *params, void *opaque)
{
    HandoverdMethods *m = opaque;
    QemuDriver *drv = methods_driver(m);
    g_autoptr(GPtrArray) doms = NULL;
    const char *why = NULL;
    const char *accel;
    json_object *res;
    int64_t defined = 0;
    int64_t running = 0;
    guint i;

    if (!drv)
        return -1;
    doms = qemu_driver_list(drv);
    for (i = 0; i < doms->len; i++) {
        const QemuDomainObj *dom = g_ptr_array_index(doms, i);

        if (qemu_domain_obj_is_persistent(dom))
            defined++;
        if (qemu_domain_obj_is_active(dom))
            running++;
    }
    accel = qemu_driver_accel(drv, &why);

    res = json_object_new_object();
    ho_json_add_string(res, "hostname", m->hostname);
    ho_json_add_string(res, "host_uuid", m->host_uuid);
    ho_json_add_string(res, "version", PACKAGE_VERSION_STRING);
    ho_json_add_string(res, "accel", accel);
    if (why)
        ho_json_add_string(res, "accel_reason", why);
    ho_json_add_string(res, "emulator", m->default_emulator);
    ho_json_add_int64(res, "domains_defined", defined);
    ho_json_add_int64(res, "domains_running", running);
    ho_rpc_call_reply(call, res);
    return 0;
}

static void
methods_caps_done(QemuDriver *drv, const QemuCaps *caps, const HoError *err, void *opaque)
{
    MethodsOp *op = opaque;
    json_object *res;

    if (err) {
        methods_op_finish(op, NULL, err);
        return;
    }
    res = qemu_caps_to_json(caps);
    ho_json_add_string(res, "emulator", op->emulator);
    ho_json_add_string(res, "accel", qemu_driver_accel(drv, NULL));
    methods_op_finish(op, res, NULL);
}

static int
methods_host_capabilities(HoRpcCall *call, json_object *params, void *opaque)
{
    HandoverdMethods *m = opaque;
    QemuDriver *drv = methods_driver(m);
    const char *emulator = methods_param_string(params, "emulator");
    MethodsOp *op;

    if (!drv)
        return -1;
    if (emulator && !*emulator) {
        ho_error_report(HO_ERR_INVALID_ARG, _("argument '%1$s' is empty"), "emulator");
        return -1;
    }
    op = methods_op_new(m, call);
    op->emulator = g_strdup(emulator ? emulator : m->default_emulator);
    qemu_driver_get_caps(drv, emulator, methods_caps_done, op);
    return 0;
}

/* ---- definitions ---- */

static int
methods_domain_define(HoRpcCall *call, json_object *params, void *opaque)
{
    HandoverdMethods *m = opaque;
    QemuDriver *drv = methods_driver(m);
    const char *xml = methods_param_string(params, "xml");
    QemuDomainObj *dom;
    json_object *res;

    if (!drv)
        return -1;
    if (!xml) {
        ho_error_report(HO_ERR_INVALID_ARG, _("missing argument '%1$s'"), "xml");
        return -1;
    }
    if (!(dom = qemu_driver_define(drv, xml)))
        return -1;
    res = json_object_new_object();
    ho_json_add_string(res, "name", qemu_domain_obj_name(dom));
    ho_json_add_string(res, "uuid", qemu_domain_obj_uuid(dom));
    ho_rpc_call_reply(call, res);
    return 0;
}

static int
methods_domain_undefine(HoRpcCall *call, json_object *params, void *opaque)
{
    HandoverdMethods *m = opaque;
    QemuDomainObj *dom = methods_lookup(m, params);

    if (!dom || qemu_driver_undefine(m->driver, dom) < 0)
        return -1;
    ho_rpc_call_reply(call, NULL);
    return 0;
}

/* ---- lifecycle ---- */

static void
methods_start_done(QemuDriver *drv, QemuDomainObj *dom, const HoError *err, void *opaque)
{
    MethodsOp *op = opaque;
    json_object *res;

    if (err) {
        methods_op_finish(op, NULL, err);
        return;
    }
    res = json_object_new_object();
    ho_json_add_string(res, "name", qemu_domain_obj_name(dom));
    ho_json_add_string(res, "state", qemu_domain_state_to_string(qemu_domain_obj_state(dom)));
    ho_json_add_int64(res, "pid", qemu_domain_obj_pid(dom));
    methods_op_finish(op, res, NULL);
}

static int
methods_domain_start(HoRpcCall *call, json_object *params, void *opaque)
{
    HandoverdMethods *m = opaque;
    QemuDomainObj *dom = methods_lookup(m, params);

    if (!dom)
        return -1;
    if (methods_hold(m, call, params, dom, methods_domain_start))
        return 0;
    qemu_driver_domain_start(m->driver, dom, methods_param_bool(params, "paused", false),
                             methods_start_done, methods_op_new(m, call));
    return 0;
}

static void
methods_shutdown_done(QemuDriver *drv, QemuDomainObj *dom, const HoError *err, void *opaque)
{
    MethodsOp *op = opaque;
    json_object *res;

    if (err) {
        methods_op_finish(op, NULL, err);
        return;
    }
    /* The protocol's result: {} when the guest stopped by itself. */
    res = json_object_new_object();
    if (qemu_domain_obj_shutdown_forced(dom))
        ho_json_add_bool(res, "forced", true);
    methods_op_finish(op, res, NULL);
}

static int
methods_domain_shutdown(HoRpcCall *call, json_object *params, void *opaque)
{
    HandoverdMethods *m = opaque;
    QemuDomainObj *dom;
    int64_t timeout = 0;

    if (methods_param_int(params, "timeout", &timeout) &&
        (timeout < 0 || timeout > METHODS_SHUTDOWN_TIMEOUT_MAX)) {
        ho_error_report(HO_ERR_INVALID_ARG,
                        _("argument '%1$s' must be from 0 to %2$d seconds, not %3$lld"), "timeout",
                        METHODS_SHUTDOWN_TIMEOUT_MAX, (long long)timeout);
        return -1;
    }
    if (!(dom = methods_lookup(m, params)))
        return -1;
    if (methods_hold(m, call, params, dom, methods_domain_shutdown))
        return 0;
    /* 0 lets the driver use the configured shutdown_timeout. */
    qemu_driver_domain_shutdown(m->driver, dom, (unsigned int)timeout, methods_shutdown_done,
                                methods_op_new(m, call));
    return 0;
}

/* Completion of an operation whose result is {}. */
static void
methods_empty_done(QemuDriver *drv, QemuDomainObj *dom, const HoError *err, void *opaque)
{
    methods_op_finish(opaque, NULL, err);
}

/* destroy, suspend and resume: look the domain up, wait for the driver
 * if it is still recovering, start the operation; the result is {}. */
typedef void (*MethodsSimpleOp)(QemuDriver *drv, QemuDomainObj *dom, QemuDriverDoneFunc cb,
                                void *opaque);

static int
methods_simple(HoRpcCall *call, json_object *params, HandoverdMethods *m, HoRpcHandler self,
               MethodsSimpleOp op)
{
    QemuDomainObj *dom = methods_lookup(m, params);

    if (!dom)
        return -1;
    if (methods_hold(m, call, params, dom, self))
        return 0;
    op(m->driver, dom, methods_empty_done, methods_op_new(m, call));
    return 0;
}

static int
methods_domain_destroy(HoRpcCall *call, json_object *params, void *opaque)
{
    return methods_simple(call, params, opaque, methods_domain_destroy,
                          qemu_driver_domain_destroy);
}

static int
methods_domain_suspend(HoRpcCall *call, json_object *params, void *opaque)
{
    return methods_simple(call, params, opaque, methods_domain_suspend,
                          qemu_driver_domain_suspend);
}

static int
methods_domain_resume(HoRpcCall *call, json_object *params, void *opaque)
{
    return methods_simple(call, params, opaque, methods_domain_resume,
                          qemu_driver_domain_resume);
}

/* ---- queries ---- */

static int
methods_domain_list(HoRpcCall *call, json_object *params, void *opaque)
{
    HandoverdMethods *m = opaque;
    QemuDriver *drv = methods_driver(m);
    bool all = methods_param_bool(params, "all", false);
    g_autoptr(GPtrArray) doms = NULL;
    json_object *list;
    json_object *res;
    guint i;

    if (!drv)
        return -1;
    doms = qemu_driver_list(drv);
    list = json_object_new_array();
    for (i = 0; i < doms->len; i++) {
        const QemuDomainObj *dom = g_ptr_array_index(doms, i);
        bool active = qemu_domain_obj_is_active(dom);
        json_object *entry;

        if (!all && !active)
            continue;
        entry = json_object_new_object();
        ho_json_add_string(entry, "name", qemu_domain_obj_name(dom));
        ho_json_add_string(entry, "uuid", qemu_domain_obj_uuid(dom));
        ho_json_add_string(entry, "state",
                           qemu_domain_state_to_string(qemu_domain_obj_state(dom)));
        ho_json_add_bool(entry, "persistent", qemu_domain_obj_is_persistent(dom));
        /* The driver numbers no domains; the QEMU pid is unique among the
         * running ones and survives a daemon restart. */
        if (active && qemu_domain_obj_pid(dom) > 0)
            ho_json_add_int64(entry, "id", qemu_domain_obj_pid(dom));
        json_object_array_add(list, entry);
    }
    res = json_object_new_object();
    ho_json_add(res, "domains", list);
    ho_rpc_call_reply(call, res);
    return 0;
}

/* The keys of domain.info the driver's summary provides. */
static const char *const methods_info_keys[] = {
    "max_memory_kib", "memory_kib", "vcpus", "emulator", "machine", "accel", "job",
};

static int
methods_domain_info(HoRpcCall *call, json_object *params, void *opaque)
{
    HandoverdMethods *m = opaque;
    QemuDomainObj *dom = methods_lookup(m, params);
    g_autoptr(json_object) summary = NULL;
    const char *reason;
    json_object *res;
    size_t i;

    if (!dom)
        return -1;
    summary = qemu_domain_obj_info_json(dom);

    /* Exactly the documented keys, absent ones left out rather than null. */
    res = json_object_new_object();
    ho_json_add_string(res, "name", qemu_domain_obj_name(dom));
    ho_json_add_string(res, "uuid", qemu_domain_obj_uuid(dom));
    ho_json_add_string(res, "state", qemu_domain_state_to_string(qemu_domain_obj_state(dom)));
    if ((reason = qemu_domain_obj_state_reason(dom)))
        ho_json_add_string(res, "reason", reason);
    ho_json_add_bool(res, "persistent", qemu_domain_obj_is_persistent(dom));
    if (qemu_domain_obj_is_active(dom) && qemu_domain_obj_pid(dom) > 0)
        ho_json_add_int64(res, "pid", qemu_domain_obj_pid(dom));
    for (i = 0; i < G_N_ELEMENTS(methods_info_keys); i++) {
        json_object *val = NULL;

        if (summary && json_object_object_get_ex(summary, methods_info_keys[i], &val) && val)
            ho_json_add(res, methods_info_keys[i], json_object_get(val));
    }
    ho_rpc_call_reply(call, res);
    return 0;
}

static int
methods_domain_state(HoRpcCall *call, json_object *params, void *opaque)
{
    HandoverdMethods *m = opaque;
    QemuDomainObj *dom = methods_lookup(m, params);
    const char *reason;
    json_object *res;

    if (!dom)
        return -1;
    res = json_object_new_object();
    ho_json_add_string(res, "state", qemu_domain_state_to_string(qemu_domain_obj_state(dom)));
    if ((reason = qemu_domain_obj_state_reason(dom)))
        ho_json_add_string(res, "reason", reason);
    ho_rpc_call_reply(call, res);
    return 0;
}

static int
methods_domain_get_xml(HoRpcCall *call, json_object *params, void *opaque)
{
    HandoverdMethods *m = opaque;
    QemuDomainObj *dom = methods_lookup(m, params);
    bool inactive = methods_param_bool(params, "inactive", false);
    const QemuDomainDef *def;
    g_autofree char *xml = NULL;
    json_object *res;

    if (!dom)
        return -1;
    if (!(def = qemu_domain_obj_def(dom, inactive))) {
        ho_error_report(HO_ERR_OPERATION_INVALID, _("domain '%1$s' has no persistent definition"),
                        qemu_domain_obj_name(dom));
        return -1;
    }
    xml = qemu_domain_def_format(def);
    res = json_object_new_object();
    ho_json_add_string(res, "xml", xml);
    ho_rpc_call_reply(call, res);
    return 0;
}

/* ---- the table ---- */

static const HoRpcArgSpec args_none[] = {
    {NULL, 0, false},
};
static const HoRpcArgSpec args_caps[] = {
    {"emulator", HO_RPC_ARG_STRING, false},
    {NULL, 0, false},
};
static const HoRpcArgSpec args_define[] = {
    {"xml", HO_RPC_ARG_STRING, true},
    {NULL, 0, false},
};
static const HoRpcArgSpec args_name[] = {
    {"name", HO_RPC_ARG_STRING, true},
    {NULL, 0, false},
};
static const HoRpcArgSpec args_start[] = {
    {"name", HO_RPC_ARG_STRING, true},
    {"paused", HO_RPC_ARG_BOOL, false},
    {NULL, 0, false},
};
static const HoRpcArgSpec args_shutdown[] = {
    {"name", HO_RPC_ARG_STRING, true},
    {"timeout", HO_RPC_ARG_INT, false},
    {NULL, 0, false},
};
static const HoRpcArgSpec args_list[] = {
    {"all", HO_RPC_ARG_BOOL, false},
    {NULL, 0, false},
};
static const HoRpcArgSpec args_get_xml[] = {
    {"name", HO_RPC_ARG_STRING, true},
    {"inactive", HO_RPC_ARG_BOOL, false},
    {NULL, 0, false},
};

static const HoRpcMethod methods_table[] = {
    {"host.info", methods_host_info, args_none, HO_RPC_METHOD_LOCAL},
    {"host.capabilities", methods_host_capabilities, args_caps, HO_RPC_METHOD_LOCAL},
    {"domain.define", methods_domain_define, args_define, HO_RPC_METHOD_LOCAL},
    {"domain.undefine", methods_domain_undefine, args_name, HO_RPC_METHOD_LOCAL},
    {"domain.start", methods_domain_start, args_start, HO_RPC_METHOD_LOCAL},
    {"domain.shutdown", methods_domain_shutdown, args_shutdown, HO_RPC_METHOD_LOCAL},
    {"domain.destroy", methods_domain_destroy, args_name, HO_RPC_METHOD_LOCAL},
    {"domain.suspend", methods_domain_suspend, args_name, HO_RPC_METHOD_LOCAL},
    {"domain.resume", methods_domain_resume, args_name, HO_RPC_METHOD_LOCAL},
    {"domain.list", methods_domain_list, args_list, HO_RPC_METHOD_LOCAL},
    {"domain.info", methods_domain_info, args_name, HO_RPC_METHOD_LOCAL},
    {"domain.state", methods_domain_state, args_name, HO_RPC_METHOD_LOCAL},
    {"domain.get_xml", methods_domain_get_xml, args_get_xml, HO_RPC_METHOD_LOCAL},
};

const HoRpcMethod *
handoverd_methods_table(size_t *n)
{
    *n = G_N_ELEMENTS(methods_table);
    return methods_table;
}

/* ---- state ---- */

HandoverdMethods *
handoverd_methods_new(const char *hostname, const char *host_uuid, const char *default_emulator)
{
    HandoverdMethods *m = g_new0(HandoverdMethods, 1);

    m->hostname = g_strdup(hostname);
    m->host_uuid = g_strdup(host_uuid);
    m->default_emulator = g_strdup(default_emulator);
    m->pending = g_hash_table_new(NULL, NULL);
    m->reconnecting =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_ptr_array_unref);
    m->reconnected = g_ptr_array_new_with_free_func(g_free);
    return m;
}

void
handoverd_methods_free(HandoverdMethods *m)
{
    g_autoptr(HoError) err = NULL;
    GHashTableIter iter;
    gpointer key;

    if (!m)
        return;
    if (m->reconnect_timer)
        g_source_remove(m->reconnect_timer);
    if (m->release_idle)
        g_source_remove(m->release_idle);
    g_ptr_array_unref(m->reconnected);
    if (g_hash_table_size(m->reconnecting) > 0) {
        GHashTableIter hiter;
        gpointer value;

        err = ho_error_new(HO_ERR_OPERATION_INVALID,
                           _("handoverd stopped before the operation completed"));
        g_hash_table_iter_init(&hiter, m->reconnecting);
        while (g_hash_table_iter_next(&hiter, NULL, &value)) {
            GPtrArray *held = value;
            guint i;

            for (i = 0; i < held->len; i++)
                ho_rpc_call_error(((MethodsHeld *)g_ptr_array_index(held, i))->call, err);
        }
    }
    g_hash_table_unref(m->reconnecting);
    if (g_hash_table_size(m->pending) > 0) {
        /* The driver was freed without completing them: the server is
         * gone too, so these answers go nowhere, but the calls are freed. */
        if (!err)
            err = ho_error_new(HO_ERR_OPERATION_INVALID,
                               _("handoverd stopped before the operation completed"));
        HO_DEBUG("dropping %u pending calls", g_hash_table_size(m->pending));
        g_hash_table_iter_init(&iter, m->pending);
        while (g_hash_table_iter_next(&iter, &key, NULL)) {
            MethodsOp *op = key;

            g_hash_table_iter_remove(&iter);
            ho_rpc_call_error(op->call, err);
            methods_op_free(op);
        }
    }
    g_hash_table_unref(m->pending);
    g_free(m->hostname);
    g_free(m->host_uuid);
    g_free(m->default_emulator);
    g_free(m);
}

void
handoverd_methods_set_driver(HandoverdMethods *m, QemuDriver *drv)
{
    g_autoptr(GPtrArray) doms = NULL;
    guint i;

    m->driver = drv;
    if (!drv)
        return;
    /* Every domain running now was found at open: the driver reconnects
     * to it and tells the outcome with an event (started/reconnected,
     * stopped, ...), queued on the loop, so none has come yet. */
    doms = qemu_driver_list(drv);
    for (i = 0; i < doms->len; i++) {
        const QemuDomainObj *dom = g_ptr_array_index(doms, i);

        if (!qemu_domain_obj_is_active(dom))
            continue;
        g_hash_table_insert(m->reconnecting, g_strdup(qemu_domain_obj_uuid(dom)),
                            g_ptr_array_new_with_free_func((GDestroyNotify)methods_held_free));
    }
    if (g_hash_table_size(m->reconnecting) > 0 && !m->reconnect_timer)
        m->reconnect_timer =
            g_timeout_add_seconds(METHODS_RECONNECT_WAIT_S, methods_reconnect_timeout, m);
}

void
handoverd_methods_set_server(HandoverdMethods *m, HoRpcServer *srv)
{
    m->server = srv;
}

json_object *
handoverd_methods_hello_info(const HandoverdMethods *m)
{
    json_object *info = json_object_new_object();

    ho_json_add_string(info, "daemon", "handoverd " PACKAGE_VERSION_STRING);
    ho_json_add_string(info, "hostname", m->hostname);
    ho_json_add_string(info, "host_uuid", m->host_uuid);
    return info;
}

void
handoverd_methods_driver_event(QemuDriver *drv, QemuDomainObj *dom, const char *event,
                               const char *detail, void *opaque)
{
    HandoverdMethods *m = opaque;
    json_object *data;

    HO_INFO("domain '%s': %s%s%s", qemu_domain_obj_name(dom), event, detail ? " " : "",
            detail ? detail : "");
    if (m->server) {
        data = json_object_new_object();
        ho_json_add_string(data, "name", qemu_domain_obj_name(dom));
        ho_json_add_string(data, "uuid", qemu_domain_obj_uuid(dom));
        ho_json_add_string(data, "event", event);
        if (detail)
            ho_json_add_string(data, "detail", detail);
        ho_rpc_server_emit_event(m->server, "domain.lifecycle", data);
    }
    /* The first event after open ends the domain's reconnection. */
    if (m->driver && g_hash_table_contains(m->reconnecting, qemu_domain_obj_uuid(dom))) {
        g_ptr_array_add(m->reconnected, g_strdup(qemu_domain_obj_uuid(dom)));
        if (!m->release_idle)
            m->release_idle = g_idle_add(methods_release_idle, m);
    }
}
