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
#include "handoverd_peer.h"

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

    QemuMigration *mig;      /* not owned */
    HandoverdPeerConfig peer_cfg;
    char *peer_client_name;
    GHashTable *migrations;  /* MethodsMigrate set: domain.migrate calls not answered */
    bool recovered;          /* qemu_migration_any_recover ran */
    guint recover_idle;
    GPtrArray *lost;         /* UUIDs whose source daemon went away, for lost_idle */
    guint lost_idle;
    bool stopping;           /* the server is going: closing peers lose nothing */
};

/* A domain.migrate call: connecting to the destination, then the job. */
typedef struct {
    HandoverdMethods *m;
    HoRpcCall *call;
    char *name;
    char *uuid;
    char *dest_uri;
    QemuMigrationArgs args;
    HandoverdPeer *peer; /* until handed to the orchestrator */
    bool in_job;
    bool resume;         /* domain.migrate_recover: one postcopy recovery attempt */
    bool resumed;        /* resume: the job left postcopy-paused since the attempt began */
    bool answered;       /* the call was answered when the job paused in postcopy; the
                          * job goes on, and its end only frees this */
} MethodsMigrate;

/* The incoming migrations one source daemon's connection prepared and has
 * not finished yet: if that connection closes, the orchestrator hears. */
typedef struct {
    HandoverdMethods *m;
    GHashTable *uuids; /* set of UUID strings */
} MethodsPeerSession;

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

/* Once every domain found at open is reconnected (or given up on), the
 * orchestrator finishes or unwinds the jobs they were in. */
static void
methods_maybe_recover(HandoverdMethods *m)
{
    if (!m->mig || m->recovered || m->stopping || g_hash_table_size(m->reconnecting) > 0)
        return;
    m->recovered = true;
    HO_DEBUG("every domain reconnected: recovering migration jobs");
    qemu_migration_any_recover(m->mig);
}

static gboolean
methods_recover_idle(gpointer opaque)
{
    HandoverdMethods *m = opaque;

    m->recover_idle = 0;
    methods_maybe_recover(m);
    return G_SOURCE_REMOVE;
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
    methods_maybe_recover(m);
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

/* ---- migration ---- */

static bool methods_is_cpr(json_object *args_obj);

static QemuMigration *
methods_mig(HandoverdMethods *m)
{
    if (!m->mig)
        ho_error_report(HO_ERR_INTERNAL, _("the migration orchestrator is not running"));
    return m->mig;
}

static void
methods_migrate_free(MethodsMigrate *op)
{
    handoverd_peer_free(op->peer);
    qemu_migration_args_clear(&op->args);
    g_free(op->name);
    g_free(op->uuid);
    g_free(op->dest_uri);
    g_free(op);
}

/* Answer a domain.migrate call (result consumed, or err) and forget it. */
static void
methods_migrate_finish(MethodsMigrate *op, json_object *result, const HoError *err)
{
    g_hash_table_remove(op->m->migrations, op);
    if (op->answered) {
        json_object_put(result);
    } else if (err) {
        json_object_put(result);
        ho_rpc_call_error(op->call, err);
    } else {
        ho_rpc_call_reply(op->call, result);
    }
    methods_migrate_free(op);
}

static void
methods_migrate_done(QemuMigration *mig, const char *uuid, const HoError *err, json_object *stats,
                     void *opaque)
{
    MethodsMigrate *op = opaque;

    if (err)
        HO_INFO("domain '%s': %s to '%s' failed: %s", op->name,
                op->resume ? "postcopy recovery" : "migration",
                op->dest_uri ? op->dest_uri : "this host", err->message);
    else
        HO_INFO("domain '%s': %s to '%s' completed", op->name,
                op->resume ? "postcopy recovery" : "migration",
                op->dest_uri ? op->dest_uri : "this host");
    methods_migrate_finish(op, err ? NULL : json_object_get(stats), err);
}

/* The connection to the destination broke while the job ran. */
static void
methods_migrate_peer_lost(HandoverdPeer *peer, const HoError *err, void *opaque)
{
    MethodsMigrate *op = opaque;
    g_autofree char *uuid = g_strdup(op->uuid);
    HandoverdMethods *m = op->m;

    /* op may be answered and freed from inside: keep what we need. */
    if (m->mig && !m->stopping)
        qemu_migration_src_peer_lost(m->mig, uuid, err);
}

static void
methods_migrate_opened(HandoverdPeer *peer, const HoError *err, void *opaque)
{
    MethodsMigrate *op = opaque;
    HandoverdMethods *m = op->m;
    QemuDomainObj *dom;

    if (err) {
        methods_migrate_finish(op, NULL, err);
        return;
    }
    /* Before anything changes: the same host cannot take its own guest. */
    if (m->host_uuid && g_str_equal(handoverd_peer_host_uuid(peer), m->host_uuid)) {
        g_autoptr(HoError) same =
            ho_error_new(HO_ERR_OPERATION_INVALID,
                         _("cannot migrate domain '%1$s' to '%2$s': it is this host (host UUID "
                           "%3$s)"),
                         op->name, op->dest_uri, m->host_uuid);

        methods_migrate_finish(op, NULL, same);
        return;
    }
    if (!methods_mig(m) || !methods_driver(m) || !(dom = qemu_driver_lookup(m->driver, op->uuid))) {
        g_autoptr(HoError) gone = ho_error_steal();

        methods_migrate_finish(op, NULL, gone);
        return;
    }
    handoverd_peer_set_lost(peer, methods_migrate_peer_lost, op);
    op->in_job = true;
    /* The orchestrator owns the peer from here, whatever it answers. */
    if (op->resume) {
        if (qemu_migration_src_postcopy_resume(m->mig, dom, handoverd_peer_ops(),
                                               g_steal_pointer(&op->peer), methods_migrate_done,
                                               op) < 0) {
            g_autoptr(HoError) refused = ho_error_steal();

            methods_migrate_finish(op, NULL, refused);
        }
        return;
    }
    if (qemu_migration_src_begin(m->mig, dom, &op->args, handoverd_peer_ops(),
                                 g_steal_pointer(&op->peer), methods_migrate_done, op) < 0) {
        g_autoptr(HoError) refused = ho_error_steal();

        methods_migrate_finish(op, NULL, refused);
    }
}

static int
methods_domain_migrate(HoRpcCall *call, json_object *params, void *opaque)
{
    HandoverdMethods *m = opaque;
    const char *dest_uri = methods_param_string(params, "dest_uri");
    json_object *args_obj = NULL;
    g_autoptr(json_object) empty = NULL;
    g_autofree char *host = NULL;
    QemuDomainObj *dom;
    MethodsMigrate *op;
    int port;

    if (!json_object_object_get_ex(params, "params", &args_obj))
        args_obj = empty = json_object_new_object();
    /* dest_uri is required unless the domain stays on this host. */
    if (!dest_uri && !methods_is_cpr(args_obj)) {
        ho_error_report(HO_ERR_INVALID_ARG, _("missing argument '%1$s' of '%2$s'"), "dest_uri",
                        "domain.migrate");
        return -1;
    }
    if (!(dom = methods_lookup(m, params)) || !methods_mig(m))
        return -1;
    if (methods_is_cpr(args_obj)) {
        if (dest_uri) {
            ho_error_report(HO_ERR_INVALID_ARG,
                            _("cannot migrate domain '%1$s' with mode 'cpr-transfer' to '%2$s': "
                              "CPR transfer replaces the QEMU on this host and takes no "
                              "destination URI"),
                            qemu_domain_obj_name(dom), dest_uri);
            return -1;
        }
    } else if (handoverd_peer_parse_uri(dest_uri, &host, &port) < 0) {
        return -1;
    }
    if (!qemu_domain_obj_is_active(dom)) {
        ho_error_report(HO_ERR_OPERATION_INVALID,
                        _("cannot migrate domain '%1$s': it is not running"),
                        qemu_domain_obj_name(dom));
        return -1;
    }
    if (qemu_migration_any_has_job(m->mig, dom)) {
        ho_error_report(HO_ERR_OPERATION_INVALID,
                        _("cannot migrate domain '%1$s': it is already in a migration job"),
                        qemu_domain_obj_name(dom));
        return -1;
    }

    op = g_new0(MethodsMigrate, 1);
    if (qemu_migration_args_from_json(args_obj, &op->args) < 0) {
        g_free(op);
        return -1;
    }
    op->m = m;
    op->call = call;
    op->name = g_strdup(qemu_domain_obj_name(dom));
    op->uuid = g_strdup(qemu_domain_obj_uuid(dom));
    op->dest_uri = g_strdup(dest_uri);
    if (!dest_uri) {
        /* CPR transfer: a new QEMU on this host, no peer daemon. */
        g_hash_table_add(m->migrations, op);
        op->in_job = true;
        HO_INFO("domain '%s': CPR transfer to a new QEMU on this host", op->name);
        if (qemu_migration_src_cpr_transfer(m->mig, dom, &op->args, methods_migrate_done, op) <
            0) {
            g_hash_table_remove(m->migrations, op);
            methods_migrate_free(op);
            return -1;
        }
        return 0;
    }
    op->peer = handoverd_peer_connect(dest_uri, &m->peer_cfg, methods_migrate_opened, op);
    if (!op->peer) {
        methods_migrate_free(op);
        return -1;
    }
    g_hash_table_add(m->migrations, op);
    HO_INFO("domain '%s': migrating to '%s'", op->name, dest_uri);
    return 0;
}

/* Whether domain.migrate's params ask for a CPR transfer (the orchestrator
 * checks the value itself; only "cpr-transfer" changes what the daemon does). */
static bool
methods_is_cpr(json_object *args_obj)
{
    return g_strcmp0(methods_param_string(args_obj, "mode"), "cpr-transfer") == 0;
}

/* 0 when the domain has a migration job, else -1 and an error. */
static int
methods_need_job(HandoverdMethods *m, QemuDomainObj *dom)
{
    if (qemu_migration_any_has_job(m->mig, dom))
        return 0;
    ho_error_report(HO_ERR_OPERATION_INVALID, _("domain '%1$s' has no migration job"),
                    qemu_domain_obj_name(dom));
    return -1;
}

/* handover migrate-postcopy: switch the running precopy to postcopy. */
static int
methods_domain_migrate_postcopy(HoRpcCall *call, json_object *params, void *opaque)
{
    HandoverdMethods *m = opaque;
    QemuDomainObj *dom = methods_lookup(m, params);

    if (!dom || !methods_mig(m) || methods_need_job(m, dom) < 0 ||
        qemu_migration_src_start_postcopy(m->mig, dom) < 0)
        return -1;
    HO_INFO("domain '%s': switching the migration to postcopy", qemu_domain_obj_name(dom));
    ho_rpc_call_reply(call, NULL);
    return 0;
}

/* handover migrate --postcopy-resume: a fresh connection to the
 * destination daemon, then one recovery attempt of the paused job. */
static int
methods_domain_migrate_recover(HoRpcCall *call, json_object *params, void *opaque)
{
    HandoverdMethods *m = opaque;
    QemuDomainObj *dom = methods_lookup(m, params);
    const char *dest_uri = methods_param_string(params, "dest_uri");
    g_autofree char *host = NULL;
    MethodsMigrate *op;
    int port;

    if (!dom || !methods_mig(m) || handoverd_peer_parse_uri(dest_uri, &host, &port) < 0)
        return -1;
    if (methods_hold(m, call, params, dom, methods_domain_migrate_recover))
        return 0;
    if (methods_need_job(m, dom) < 0)
        return -1;
    op = g_new0(MethodsMigrate, 1);
    op->m = m;
    op->call = call;
    op->resume = true;
    op->name = g_strdup(qemu_domain_obj_name(dom));
    op->uuid = g_strdup(qemu_domain_obj_uuid(dom));
    op->dest_uri = g_strdup(dest_uri);
    op->peer = handoverd_peer_connect(dest_uri, &m->peer_cfg, methods_migrate_opened, op);
    if (!op->peer) {
        methods_migrate_free(op);
        return -1;
    }
    g_hash_table_add(m->migrations, op);
    HO_INFO("domain '%s': resuming the postcopy migration through '%s'", op->name, dest_uri);
    return 0;
}

/* The job of uuid paused in postcopy: the domain.migrate call waiting for
 * it (and a recovery attempt that had got the job going again) is
 * answered now, since the job stays paused until someone resumes it; the
 * job's end later only frees the call's state. */
static void
methods_migrate_postcopy_phase(HandoverdMethods *m, const char *uuid, const char *phase)
{
    bool paused = g_str_equal(phase, "postcopy-paused");
    GHashTableIter iter;
    gpointer key;

    if (!paused && !g_str_equal(phase, "postcopy"))
        return;
    g_hash_table_iter_init(&iter, m->migrations);
    while (g_hash_table_iter_next(&iter, &key, NULL)) {
        MethodsMigrate *op = key;
        g_autoptr(HoError) err = NULL;

        if (op->answered || !op->in_job || g_strcmp0(op->uuid, uuid) != 0)
            continue;
        if (!paused) {
            op->resumed = op->resume;
            continue;
        }
        /* A recovery attempt that fails reports its own error. */
        if (op->resume && !op->resumed)
            continue;
        err = ho_error_new(HO_ERR_OPERATION_INVALID,
                           _("the migration of domain '%1$s' is paused in postcopy and stays "
                             "recoverable: the guest runs on the destination with the memory "
                             "it has; resume the migration with 'handover migrate "
                             "--postcopy-resume %1$s DEST-URI'"),
                           op->name);
        op->answered = true;
        ho_rpc_call_error(op->call, err);
        op->call = NULL;
    }
}

static void
methods_jobinfo_done(json_object *info, const HoError *err, void *opaque)
{
    methods_op_finish(opaque, err ? NULL : json_object_get(info), err);
}

static int
methods_domain_jobinfo(HoRpcCall *call, json_object *params, void *opaque)
{
    HandoverdMethods *m = opaque;
    QemuDomainObj *dom = methods_lookup(m, params);

    if (!dom || !methods_mig(m))
        return -1;
    /* After a restart the job comes back once the domain is reconnected. */
    if (methods_hold(m, call, params, dom, methods_domain_jobinfo))
        return 0;
    qemu_migration_any_job_info(m->mig, dom, methods_param_bool(params, "completed", false),
                                methods_jobinfo_done, methods_op_new(m, call));
    return 0;
}

static int
methods_domain_jobabort(HoRpcCall *call, json_object *params, void *opaque)
{
    HandoverdMethods *m = opaque;
    QemuDomainObj *dom = methods_lookup(m, params);

    if (!dom || !methods_mig(m))
        return -1;
    if (methods_hold(m, call, params, dom, methods_domain_jobabort))
        return 0;
    if (methods_param_bool(params, "postcopy", false)) {
        /* domjobabort --postcopy: migrate-pause, the job stays recoverable. */
        if (methods_need_job(m, dom) < 0 ||
            qemu_migration_any_pause_postcopy(m->mig, dom) < 0)
            return -1;
        HO_INFO("domain '%s': postcopy migration paused on request",
                qemu_domain_obj_name(dom));
    } else if (qemu_migration_any_abort(m->mig, dom) < 0) {
        return -1;
    }
    ho_rpc_call_reply(call, NULL);
    return 0;
}

/* ---- migration: the destination's side, called by the source daemon ---- */

static gboolean
methods_lost_idle(gpointer opaque)
{
    HandoverdMethods *m = opaque;
    g_autoptr(GPtrArray) uuids = g_steal_pointer(&m->lost);
    guint i;

    m->lost_idle = 0;
    m->lost = g_ptr_array_new_with_free_func(g_free);
    for (i = 0; i < uuids->len; i++) {
        const char *uuid = g_ptr_array_index(uuids, i);

        HO_WARN("the source daemon of incoming domain %s went away", uuid);
        if (m->mig)
            qemu_migration_dst_peer_lost(m->mig, uuid);
    }
    return G_SOURCE_REMOVE;
}

/* The source daemon's connection closed (a GDestroyNotify of the server). */
static void
methods_peer_session_closed(gpointer data)
{
    MethodsPeerSession *ps = data;
    HandoverdMethods *m = ps->m;
    GHashTableIter iter;
    gpointer key;

    if (!m->stopping) {
        g_hash_table_iter_init(&iter, ps->uuids);
        while (g_hash_table_iter_next(&iter, &key, NULL))
            g_ptr_array_add(m->lost, g_strdup(key));
        /* Not from inside the server's close: the orchestrator may answer
         * calls of other clients from there. */
        if (m->lost->len > 0 && !m->lost_idle)
            m->lost_idle = g_idle_add(methods_lost_idle, m);
    }
    g_hash_table_unref(ps->uuids);
    g_free(ps);
}

static MethodsPeerSession *
methods_peer_session(HandoverdMethods *m, HoRpcCall *call)
{
    MethodsPeerSession *ps = ho_rpc_call_get_session(call);

    if (ps)
        return ps;
    if (!ho_rpc_call_client_connected(call))
        return NULL;
    ps = g_new0(MethodsPeerSession, 1);
    ps->m = m;
    ps->uuids = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    ho_rpc_call_set_session(call, ps, methods_peer_session_closed);
    return ps;
}

/* The domain UUID a prepare is about: its reply's, else the cookie's. */
static const char *
methods_prepare_uuid(json_object *result, json_object *cookie)
{
    json_object *val;

    if (result && json_object_object_get_ex(result, "uuid", &val) &&
        json_object_is_type(val, json_type_string))
        return json_object_get_string(val);
    if (cookie && json_object_object_get_ex(cookie, "uuid", &val) &&
        json_object_is_type(val, json_type_string))
        return json_object_get_string(val);
    return NULL;
}

typedef struct {
    HandoverdMethods *m;
    HoRpcCall *call;
    json_object *cookie; /* prepare */
    char *uuid;          /* finish */
    MethodsOp *op;
} MethodsPeerOp;

static void
methods_prepare_done(json_object *result, const HoError *err, void *opaque)
{
    MethodsPeerOp *pop = opaque;
    HandoverdMethods *m = pop->m;

    if (!err) {
        const char *uuid = methods_prepare_uuid(result, pop->cookie);
        MethodsPeerSession *ps = methods_peer_session(m, pop->call);

        if (!uuid) {
            HO_WARN("migration.prepare: no domain UUID in the cookie or the reply; a lost "
                    "source daemon cannot be noticed");
        } else if (ps) {
            g_hash_table_add(ps->uuids, g_strdup(uuid));
        } else if (!m->stopping) {
            /* The source went away while we prepared. */
            g_ptr_array_add(m->lost, g_strdup(uuid));
            if (!m->lost_idle)
                m->lost_idle = g_idle_add(methods_lost_idle, m);
        }
    }
    methods_op_finish(pop->op, err ? NULL : json_object_get(result), err);
    json_object_put(pop->cookie);
    g_free(pop->uuid);
    g_free(pop);
}

static int
methods_migration_prepare(HoRpcCall *call, json_object *params, void *opaque)
{
    HandoverdMethods *m = opaque;
    MethodsPeerOp *pop;
    json_object *cookie = NULL;

    if (!methods_mig(m))
        return -1;
    json_object_object_get_ex(params, "cookie", &cookie);
    pop = g_new0(MethodsPeerOp, 1);
    pop->m = m;
    pop->call = call;
    pop->cookie = json_object_get(cookie);
    pop->op = methods_op_new(m, call);
    HO_INFO("%s: migration.prepare", ho_rpc_call_client_label(call));
    qemu_migration_dst_prepare(m->mig, cookie, methods_prepare_done, pop);
    return 0;
}

static void
methods_finish_done(json_object *result, const HoError *err, void *opaque)
{
    MethodsPeerOp *pop = opaque;
    MethodsPeerSession *ps = ho_rpc_call_get_session(pop->call);

    /* Answered: a close from now on loses nothing of this job. */
    if (ps && pop->uuid)
        g_hash_table_remove(ps->uuids, pop->uuid);
    methods_op_finish(pop->op, err ? NULL : json_object_get(result), err);
    g_free(pop->uuid);
    g_free(pop);
}

static int
methods_migration_finish(HoRpcCall *call, json_object *params, void *opaque)
{
    HandoverdMethods *m = opaque;
    MethodsPeerOp *pop;
    json_object *args = NULL;
    json_object *val;

    if (!methods_mig(m))
        return -1;
    json_object_object_get_ex(params, "args", &args);
    pop = g_new0(MethodsPeerOp, 1);
    pop->m = m;
    pop->call = call;
    if (json_object_object_get_ex(args, "uuid", &val) && json_object_is_type(val, json_type_string))
        pop->uuid = g_strdup(json_object_get_string(val));
    pop->op = methods_op_new(m, call);
    HO_INFO("%s: migration.finish", ho_rpc_call_client_label(call));
    qemu_migration_dst_finish(m->mig, args, methods_finish_done, pop);
    return 0;
}

static void
methods_nbd_stop_done(json_object *result, const HoError *err, void *opaque)
{
    MethodsOp *op = opaque;

    methods_op_finish(op, err ? NULL : json_object_get(result), err);
}

/* Storage copy: the source's mirrors are gone; stop the NBD server of the
 * incoming QEMU before it activates its images. */
static int
methods_migration_nbd_stop(HoRpcCall *call, json_object *params, void *opaque)
{
    HandoverdMethods *m = opaque;
    json_object *args = NULL;

    if (!methods_mig(m))
        return -1;
    json_object_object_get_ex(params, "args", &args);
    HO_DEBUG("%s: migration.nbd_stop", ho_rpc_call_client_label(call));
    qemu_migration_dst_nbd_stop(m->mig, args, methods_nbd_stop_done, methods_op_new(m, call));
    return 0;
}

/* The domain of a peer call's {"args": {"uuid"}} with a migration job;
 * NULL and an error. */
static QemuDomainObj *
methods_peer_job_domain(HandoverdMethods *m, json_object *args)
{
    const char *uuid = methods_param_string(args, "uuid");
    QemuDomainObj *dom;

    if (!methods_mig(m) || !methods_driver(m))
        return NULL;
    if (!uuid) {
        ho_error_report(HO_ERR_INVALID_ARG, _("missing argument '%1$s'"), "args.uuid");
        return NULL;
    }
    if (!(dom = qemu_driver_lookup(m->driver, uuid)) || methods_need_job(m, dom) < 0)
        return NULL;
    return dom;
}

/* Hold a peer call about a job ({"args": {"uuid"}}) while its domain is
 * still being reconnected after a restart: its job comes back after that.
 * true when held. */
static bool
methods_hold_peer(HandoverdMethods *m, HoRpcCall *call, json_object *params, json_object *args,
                  HoRpcHandler self)
{
    const char *uuid = methods_param_string(args, "uuid");
    QemuDomainObj *dom;

    if (!uuid || !m->driver || g_hash_table_size(m->reconnecting) == 0)
        return false;
    dom = qemu_driver_lookup(m->driver, uuid);
    if (!dom) {
        ho_error_reset();
        return false;
    }
    return methods_hold(m, call, params, dom, self);
}

static void
methods_recover_done(json_object *result, const HoError *err, void *opaque)
{
    MethodsPeerOp *pop = opaque;
    MethodsPeerSession *ps = NULL;

    /* This connection carries the job from now on: if it closes before
     * migration.finish, the orchestrator hears (as after a prepare). */
    if (!err && pop->uuid && (ps = methods_peer_session(pop->m, pop->call)))
        g_hash_table_add(ps->uuids, g_strdup(pop->uuid));
    methods_op_finish(pop->op, err ? NULL : json_object_get(result), err);
    g_free(pop->uuid);
    g_free(pop);
}

/* Postcopy recovery, destination: listen again (migrate-recover). */
static int
methods_migration_recover(HoRpcCall *call, json_object *params, void *opaque)
{
    HandoverdMethods *m = opaque;
    json_object *args = NULL;
    MethodsPeerOp *pop;

    json_object_object_get_ex(params, "args", &args);
    if (methods_hold_peer(m, call, params, args, methods_migration_recover))
        return 0;
    if (!methods_peer_job_domain(m, args))
        return -1;
    pop = g_new0(MethodsPeerOp, 1);
    pop->m = m;
    pop->call = call;
    pop->uuid = g_strdup(methods_param_string(args, "uuid"));
    pop->op = methods_op_new(m, call);
    HO_INFO("%s: migration.recover", ho_rpc_call_client_label(call));
    qemu_migration_dst_recover(m->mig, args, methods_recover_done, pop);
    return 0;
}

static void
methods_pause_done(json_object *result, const HoError *err, void *opaque)
{
    methods_op_finish(opaque, err ? NULL : json_object_get(result), err);
}

/* Postcopy, destination: force postcopy-paused (migrate-pause). */
static int
methods_migration_pause(HoRpcCall *call, json_object *params, void *opaque)
{
    HandoverdMethods *m = opaque;
    json_object *args = NULL;

    json_object_object_get_ex(params, "args", &args);
    if (methods_hold_peer(m, call, params, args, methods_migration_pause))
        return 0;
    /* No domain or job needed: the orchestrator answers for a job that
     * ended here with the guest lost too. */
    if (!methods_mig(m))
        return -1;
    if (!methods_param_string(args, "uuid")) {
        ho_error_report(HO_ERR_INVALID_ARG, _("missing argument '%1$s'"), "args.uuid");
        return -1;
    }
    HO_INFO("%s: migration.pause", ho_rpc_call_client_label(call));
    qemu_migration_dst_pause(m->mig, args, methods_pause_done, methods_op_new(m, call));
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
static const HoRpcArgSpec args_migrate[] = {
    {"name", HO_RPC_ARG_STRING, true},
    {"dest_uri", HO_RPC_ARG_STRING, false}, /* required unless params.mode is cpr-transfer */
    {"params", HO_RPC_ARG_OBJECT, false},
    {NULL, 0, false},
};
static const HoRpcArgSpec args_recover[] = {
    {"name", HO_RPC_ARG_STRING, true},
    {"dest_uri", HO_RPC_ARG_STRING, true},
    {NULL, 0, false},
};
static const HoRpcArgSpec args_jobabort[] = {
    {"name", HO_RPC_ARG_STRING, true},
    {"postcopy", HO_RPC_ARG_BOOL, false},
    {NULL, 0, false},
};
static const HoRpcArgSpec args_jobinfo[] = {
    {"name", HO_RPC_ARG_STRING, true},
    {"completed", HO_RPC_ARG_BOOL, false},
    {NULL, 0, false},
};
static const HoRpcArgSpec args_prepare[] = {
    {"cookie", HO_RPC_ARG_OBJECT, true},
    {NULL, 0, false},
};
static const HoRpcArgSpec args_finish[] = {
    {"args", HO_RPC_ARG_OBJECT, true},
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
    {"domain.migrate", methods_domain_migrate, args_migrate, HO_RPC_METHOD_LOCAL},
    {"domain.jobinfo", methods_domain_jobinfo, args_jobinfo, HO_RPC_METHOD_LOCAL},
    {"domain.jobabort", methods_domain_jobabort, args_jobabort, HO_RPC_METHOD_LOCAL},
    {"domain.migrate_postcopy", methods_domain_migrate_postcopy, args_name,
     HO_RPC_METHOD_LOCAL},
    {"domain.migrate_recover", methods_domain_migrate_recover, args_recover,
     HO_RPC_METHOD_LOCAL},
    /* Called by a source daemon over TCP (and served on the UNIX socket too). */
    {"migration.prepare", methods_migration_prepare, args_prepare, HO_RPC_METHOD_PEER},
    {"migration.finish", methods_migration_finish, args_finish, HO_RPC_METHOD_PEER},
    {"migration.nbd_stop", methods_migration_nbd_stop, args_finish, HO_RPC_METHOD_PEER},
    {"migration.recover", methods_migration_recover, args_finish, HO_RPC_METHOD_PEER},
    {"migration.pause", methods_migration_pause, args_finish, HO_RPC_METHOD_PEER},
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
    m->migrations = g_hash_table_new(NULL, NULL);
    m->lost = g_ptr_array_new_with_free_func(g_free);
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
    if (m->recover_idle)
        g_source_remove(m->recover_idle);
    if (m->lost_idle)
        g_source_remove(m->lost_idle);
    g_ptr_array_unref(m->lost);
    g_ptr_array_unref(m->reconnected);
    if (g_hash_table_size(m->migrations) > 0) {
        GHashTableIter miter;
        gpointer op;

        if (!err)
            err = ho_error_new(HO_ERR_OPERATION_INVALID,
                               _("handoverd stopped before the operation completed"));
        g_hash_table_iter_init(&miter, m->migrations);
        while (g_hash_table_iter_next(&miter, &op, NULL)) {
            g_hash_table_iter_remove(&miter);
            if (!((MethodsMigrate *)op)->answered)
                ho_rpc_call_error(((MethodsMigrate *)op)->call, err);
            methods_migrate_free(op);
        }
    }
    g_hash_table_unref(m->migrations);
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
    g_free(m->peer_client_name);
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
    if (!srv)
        m->stopping = true;
}

void
handoverd_methods_set_migration(HandoverdMethods *m, QemuMigration *mig,
                                const HandoverdPeerConfig *peer_cfg)
{
    m->mig = mig;
    if (!mig)
        return;
    g_free(m->peer_client_name);
    m->peer_client_name = g_strdup_printf("handoverd %s (host %s)", PACKAGE_VERSION_STRING,
                                          m->hostname ? m->hostname : "?");
    m->peer_cfg = *peer_cfg;
    m->peer_cfg.client_name = m->peer_client_name;
    if (!m->recover_idle)
        m->recover_idle = g_idle_add(methods_recover_idle, m);
}

void
handoverd_methods_migration_event(QemuMigration *mig, const char *name, const char *uuid,
                                  const char *event, json_object *data, void *opaque)
{
    HandoverdMethods *m = opaque;
    json_object *ev;

    if (!g_str_equal(event, "progress"))
        HO_INFO("domain '%s': job %s", name, event);
    if (!m->server)
        return;
    ev = json_object_new_object();
    ho_json_add_string(ev, "name", name);
    ho_json_add_string(ev, "uuid", uuid);
    ho_json_add_string(ev, "event", event);
    ho_json_add(ev, "data", data ? json_object_get(data) : json_object_new_object());
    ho_rpc_server_emit_event(m->server, "domain.job", ev);
    /* After the event, so that a client sees the phase before the answer. */
    if (g_str_equal(event, "phase") && methods_param_string(data, "phase"))
        methods_migrate_postcopy_phase(m, uuid, methods_param_string(data, "phase"));
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
