/*
 * The QAPI schema from query-qmp-schema, indexed by name, and a validator
 * for commands against it.
 *
 * Introspection numbers the non-builtin type names ("150", "[443]"), so
 * messages never name a type: they name the command and the path of the
 * member inside its arguments ("capabilities[0].capability").
 */
#define HO_LOG_MODULE "qemu.qapi"

#include "qemu_qapi.h"

#include <string.h>

#include "ho_error.h"
#include "ho_file.h"
#include "ho_i18n.h"
#include "ho_json.h"
#include "ho_log.h"

/* A saved query-qmp-schema reply is about 200 KiB; this bounds a bad file. */
#define QEMU_QAPI_MAX_FILE (64 * 1024 * 1024)
/* How many enum values an error message lists before "...". */
#define QEMU_QAPI_LIST_VALUES 10
/* How many member names an "unknown member" message lists before "...". */
#define QEMU_QAPI_LIST_MEMBERS 12
/* Nesting bound while following types; real schemas nest a few levels. */
#define QEMU_QAPI_MAX_DEPTH 64

struct _QemuQapi {
    json_object *schema;  /* our reference to the whole array */
    GHashTable *types;    /* name -> SchemaInfo (borrowed from schema) */
    GHashTable *commands; /* name -> SchemaInfo of meta-type command */
};

/* One validation run: the command named in messages, and whether errors
 * are reported (not while trying the branches of an alternate). */
typedef struct {
    QemuQapi *qapi;
    const char *command;
    int quiet;
} QapiCheck;

static int qapi_check_value(QapiCheck *chk, const char *type_name, json_object *value,
                            const char *path, int depth);

static void qapi_report(QapiCheck *chk, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void
qapi_report(QapiCheck *chk, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;

    if (chk->quiet)
        return;
    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    ho_error_report(HO_ERR_INVALID_ARG, "%s", msg);
}

static const char *
qapi_get_str(json_object *obj, const char *key)
{
    json_object *val;

    if (!json_object_object_get_ex(obj, key, &val) || !json_object_is_type(val, json_type_string))
        return NULL;
    return json_object_get_string(val);
}

static json_object *
qapi_get_array(json_object *obj, const char *key)
{
    json_object *val;

    if (!json_object_object_get_ex(obj, key, &val) || !json_object_is_type(val, json_type_array))
        return NULL;
    return val;
}

void
qemu_qapi_free(QemuQapi *qapi)
{
    if (!qapi)
        return;
    g_clear_pointer(&qapi->types, g_hash_table_unref);
    g_clear_pointer(&qapi->commands, g_hash_table_unref);
    json_object_put(qapi->schema);
    g_free(qapi);
}

QemuQapi *
qemu_qapi_new(json_object *schema)
{
    g_autoptr(QemuQapi) qapi = NULL;
    size_t n;

    if (!schema || !json_object_is_type(schema, json_type_array)) {
        ho_error_report(HO_ERR_JSON, _("query-qmp-schema reply is not an array"));
        return NULL;
    }

    qapi = g_new0(QemuQapi, 1);
    qapi->schema = json_object_get(schema);
    qapi->types = g_hash_table_new(g_str_hash, g_str_equal);
    qapi->commands = g_hash_table_new(g_str_hash, g_str_equal);

    n = json_object_array_length(schema);
    for (size_t i = 0; i < n; i++) {
        json_object *info = json_object_array_get_idx(schema, i);
        const char *name;
        const char *meta;

        if (!json_object_is_type(info, json_type_object) || !(name = qapi_get_str(info, "name")) ||
            !(meta = qapi_get_str(info, "meta-type"))) {
            ho_error_report(HO_ERR_JSON,
                            _("query-qmp-schema entry %1$zu has no 'name' or 'meta-type'"), i);
            return NULL;
        }
        if (strcmp(meta, "command") == 0)
            g_hash_table_insert(qapi->commands, (char *)name, info);
        else if (strcmp(meta, "event") != 0)
            g_hash_table_insert(qapi->types, (char *)name, info);
    }

    HO_DEBUG("schema with %u types and %u commands", g_hash_table_size(qapi->types),
             g_hash_table_size(qapi->commands));
    return g_steal_pointer(&qapi);
}

QemuQapi *
qemu_qapi_load(const char *path)
{
    g_autofree char *data = NULL;
    size_t len = 0;
    g_autoptr(json_object) schema = NULL;

    if (ho_file_read_all(path, QEMU_QAPI_MAX_FILE, &data, &len) < 0)
        return NULL;
    if (!(schema = ho_json_parse(data, len)))
        return NULL;
    return qemu_qapi_new(schema);
}

/* The JSON type of a value, as messages name it. */
static const char *
qapi_json_type_name(json_object *value)
{
    switch (json_object_get_type(value)) {
    case json_type_null:
        return "null";
    case json_type_boolean:
        return "boolean";
    case json_type_double:
        return "number";
    case json_type_int:
        return "integer";
    case json_type_object:
        return "object";
    case json_type_array:
        return "array";
    case json_type_string:
        return "string";
    }
    return "?";
}

/* Whether a builtin's json-type admits this value. */
static bool
qapi_builtin_accepts(const char *json_type, json_object *value)
{
    enum json_type t = json_object_get_type(value);

    if (strcmp(json_type, "value") == 0)
        return true;
    if (strcmp(json_type, "string") == 0)
        return t == json_type_string;
    if (strcmp(json_type, "int") == 0)
        return t == json_type_int;
    if (strcmp(json_type, "number") == 0)
        return t == json_type_int || t == json_type_double;
    if (strcmp(json_type, "boolean") == 0)
        return t == json_type_boolean;
    if (strcmp(json_type, "null") == 0)
        return t == json_type_null;
    if (strcmp(json_type, "object") == 0)
        return t == json_type_object;
    if (strcmp(json_type, "array") == 0)
        return t == json_type_array;
    return false;
}

/* The JSON type a builtin's json-type names, for messages. */
static const char *
qapi_builtin_type_name(const char *json_type)
{
    if (strcmp(json_type, "int") == 0)
        return "integer";
    if (strcmp(json_type, "value") == 0)
        return "any value";
    return json_type;
}

/* Whether values of this JSON type can be of type_name at all: how an
 * alternate picks its branch, as QEMU does, by the JSON type. */
static bool
qapi_type_admits(QemuQapi *qapi, const char *type_name, json_object *value, int depth)
{
    json_object *info = g_hash_table_lookup(qapi->types, type_name);
    const char *meta;
    enum json_type t = json_object_get_type(value);

    if (!info || depth > QEMU_QAPI_MAX_DEPTH)
        return false;
    meta = qapi_get_str(info, "meta-type");
    if (strcmp(meta, "builtin") == 0) {
        const char *jt = qapi_get_str(info, "json-type");
        return jt && qapi_builtin_accepts(jt, value);
    }
    if (strcmp(meta, "enum") == 0)
        return t == json_type_string;
    if (strcmp(meta, "object") == 0)
        return t == json_type_object;
    if (strcmp(meta, "array") == 0)
        return t == json_type_array;
    if (strcmp(meta, "alternate") == 0) {
        json_object *members = qapi_get_array(info, "members");
        size_t n = members ? json_object_array_length(members) : 0;

        for (size_t i = 0; i < n; i++) {
            const char *mt = qapi_get_str(json_object_array_get_idx(members, i), "type");
            if (mt && qapi_type_admits(qapi, mt, value, depth + 1))
                return true;
        }
    }
    return false;
}

/* A short description of what a type expects, for messages. */
static const char *
qapi_type_expects(QemuQapi *qapi, const char *type_name)
{
    json_object *info = g_hash_table_lookup(qapi->types, type_name);
    const char *meta = info ? qapi_get_str(info, "meta-type") : NULL;

    if (!meta)
        return "?";
    if (strcmp(meta, "builtin") == 0) {
        const char *jt = qapi_get_str(info, "json-type");
        return jt ? qapi_builtin_type_name(jt) : "?";
    }
    if (strcmp(meta, "enum") == 0)
        return "string";
    return meta; /* "object", "array" */
}

/* Values of an enum ("values", or the names in "members" if a future
 * QEMU drops "values"); NULL-terminated, borrowed strings. */
static GPtrArray *
qapi_enum_values(json_object *info)
{
    GPtrArray *vals = g_ptr_array_new();
    json_object *arr = qapi_get_array(info, "values");
    size_t n;

    if (arr) {
        n = json_object_array_length(arr);
        for (size_t i = 0; i < n; i++) {
            json_object *v = json_object_array_get_idx(arr, i);
            if (json_object_is_type(v, json_type_string))
                g_ptr_array_add(vals, (char *)json_object_get_string(v));
        }
    } else if ((arr = qapi_get_array(info, "members"))) {
        n = json_object_array_length(arr);
        for (size_t i = 0; i < n; i++) {
            const char *name = qapi_get_str(json_object_array_get_idx(arr, i), "name");
            if (name)
                g_ptr_array_add(vals, (char *)name);
        }
    }
    g_ptr_array_add(vals, NULL);
    return vals;
}

/* "a, b, c, ..." of at most max names. */
static char *
qapi_join_some(const char *const *names, guint count, guint max)
{
    GString *s = g_string_new(NULL);

    for (guint i = 0; i < count && i < max; i++) {
        if (i > 0)
            g_string_append(s, ", ");
        g_string_append(s, names[i]);
    }
    if (count > max)
        g_string_append(s, ", ...");
    return g_string_free(s, FALSE);
}

static char *
qapi_path_member(const char *path, const char *name)
{
    return *path ? g_strdup_printf("%s.%s", path, name) : g_strdup(name);
}

/* The members of an object type for this value: its own, and for a flat
 * union those of the branch the value's tag selects, recursively (a
 * branch may itself be a union). Tags are collected so they are checked
 * first: a bad tag explains the rest better than "unknown member". */
static int
qapi_collect_members(QapiCheck *chk, json_object *info, json_object *value, GHashTable *members,
                     GPtrArray *order, GPtrArray *tags, int depth)
{
    json_object *arr = qapi_get_array(info, "members");
    const char *tag = qapi_get_str(info, "tag");
    size_t n = arr ? json_object_array_length(arr) : 0;

    if (depth > QEMU_QAPI_MAX_DEPTH) {
        qapi_report(chk, _("%1$s: schema nests too deeply"), chk->command);
        return -1;
    }

    for (size_t i = 0; i < n; i++) {
        json_object *m = json_object_array_get_idx(arr, i);
        const char *name = qapi_get_str(m, "name");

        if (!name || !qapi_get_str(m, "type"))
            continue;
        if (!g_hash_table_contains(members, name))
            g_ptr_array_add(order, (char *)name);
        g_hash_table_insert(members, (char *)name, m);
    }

    if (tag) {
        json_object *variants = qapi_get_array(info, "variants");
        json_object *tagval = NULL;
        size_t nv = variants ? json_object_array_length(variants) : 0;

        g_ptr_array_add(tags, (char *)tag);
        if (!json_object_object_get_ex(value, tag, &tagval) ||
            !json_object_is_type(tagval, json_type_string))
            return 0;
        /* A tag value with no branch is an empty branch (or a bad value,
         * which checking the tag member reports). */
        for (size_t i = 0; i < nv; i++) {
            json_object *v = json_object_array_get_idx(variants, i);
            const char *vcase = qapi_get_str(v, "case");
            const char *vtype = qapi_get_str(v, "type");
            json_object *vinfo;

            if (!vcase || !vtype || strcmp(vcase, json_object_get_string(tagval)) != 0)
                continue;
            if (!(vinfo = g_hash_table_lookup(chk->qapi->types, vtype))) {
                qapi_report(chk, _("%1$s: type '%2$s' is not in the schema"), chk->command, vtype);
                return -1;
            }
            return qapi_collect_members(chk, vinfo, value, members, order, tags, depth + 1);
        }
    }
    return 0;
}

static int
qapi_check_member(QapiCheck *chk, json_object *member, json_object *value, const char *path,
                  int depth)
{
    g_autofree char *mpath = qapi_path_member(path, qapi_get_str(member, "name"));

    return qapi_check_value(chk, qapi_get_str(member, "type"), value, mpath, depth + 1);
}

static int
qapi_check_object(QapiCheck *chk, json_object *info, json_object *value, const char *path,
                  int depth)
{
    g_autoptr(GHashTable) members = g_hash_table_new(g_str_hash, g_str_equal);
    g_autoptr(GPtrArray) order = g_ptr_array_new();
    g_autoptr(GPtrArray) tags = g_ptr_array_new();

    if (qapi_collect_members(chk, info, value, members, order, tags, depth) < 0)
        return -1;

    for (guint i = 0; i < tags->len; i++) {
        json_object *m = g_hash_table_lookup(members, tags->pdata[i]);
        json_object *v;

        if (m && json_object_object_get_ex(value, tags->pdata[i], &v) &&
            qapi_check_member(chk, m, v, path, depth) < 0)
            return -1;
    }

    json_object_object_foreach(value, key, val)
    {
        json_object *m = g_hash_table_lookup(members, key);

        if (!m) {
            g_autofree char *mpath = qapi_path_member(path, key);
            g_autofree char *known = qapi_join_some((const char *const *)order->pdata, order->len,
                                                    QEMU_QAPI_LIST_MEMBERS);

            if (order->len == 0)
                qapi_report(chk, _("%1$s: unknown member '%2$s' (no members are accepted)"),
                            chk->command, mpath);
            else
                qapi_report(chk, _("%1$s: unknown member '%2$s' (expected one of %3$s)"),
                            chk->command, mpath, known);
            return -1;
        }
        if (qapi_check_member(chk, m, val, path, depth) < 0)
            return -1;
    }

    for (guint i = 0; i < order->len; i++) {
        const char *name = order->pdata[i];
        json_object *m = g_hash_table_lookup(members, name);

        if (!json_object_object_get_ex(m, "default", NULL) &&
            !json_object_object_get_ex(value, name, NULL)) {
            g_autofree char *mpath = qapi_path_member(path, name);
            qapi_report(chk, _("%1$s: missing required member '%2$s'"), chk->command, mpath);
            return -1;
        }
    }
    return 0;
}

static int
qapi_check_alternate(QapiCheck *chk, json_object *info, json_object *value, const char *path,
                     int depth)
{
    json_object *arr = qapi_get_array(info, "members");
    size_t n = arr ? json_object_array_length(arr) : 0;
    g_autoptr(GPtrArray) fitting = g_ptr_array_new();
    g_autoptr(GPtrArray) expected = g_ptr_array_new();
    g_autofree char *list = NULL;

    for (size_t i = 0; i < n; i++) {
        const char *mt = qapi_get_str(json_object_array_get_idx(arr, i), "type");

        if (!mt)
            continue;
        g_ptr_array_add(expected, (char *)qapi_type_expects(chk->qapi, mt));
        if (qapi_type_admits(chk->qapi, mt, value, depth + 1))
            g_ptr_array_add(fitting, (char *)mt);
    }

    if (fitting->len > 1) {
        /* Several branches take this JSON type (an enum and a string, say):
         * any that validates will do. */
        for (guint i = 0; i < fitting->len; i++) {
            int rc;

            chk->quiet++;
            rc = qapi_check_value(chk, fitting->pdata[i], value, path, depth + 1);
            chk->quiet--;
            if (rc == 0)
                return 0;
        }
    }
    if (fitting->len > 0)
        return qapi_check_value(chk, fitting->pdata[0], value, path, depth + 1);

    list = qapi_join_some((const char *const *)expected->pdata, expected->len, expected->len);
    qapi_report(chk, _("%1$s: member '%2$s': expected one of the JSON types %3$s, got %4$s"),
                chk->command, path, list, qapi_json_type_name(value));
    return -1;
}

static int
qapi_check_value(QapiCheck *chk, const char *type_name, json_object *value, const char *path,
                 int depth)
{
    json_object *info = g_hash_table_lookup(chk->qapi->types, type_name);
    const char *meta = info ? qapi_get_str(info, "meta-type") : NULL;
    const char *expect;

    if (!meta) {
        qapi_report(chk, _("%1$s: member '%2$s': type '%3$s' is not in the schema"), chk->command,
                    path, type_name);
        return -1;
    }
    if (depth > QEMU_QAPI_MAX_DEPTH) {
        qapi_report(chk, _("%1$s: member '%2$s': value nests too deeply"), chk->command, path);
        return -1;
    }

    if (strcmp(meta, "alternate") == 0)
        return qapi_check_alternate(chk, info, value, path, depth);

    expect = qapi_type_expects(chk->qapi, type_name);
    if (!qapi_type_admits(chk->qapi, type_name, value, depth)) {
        qapi_report(chk, _("%1$s: member '%2$s': expected %3$s, got %4$s"), chk->command, path,
                    expect, qapi_json_type_name(value));
        return -1;
    }

    if (strcmp(meta, "enum") == 0) {
        g_autoptr(GPtrArray) vals = qapi_enum_values(info);
        const char *str = json_object_get_string(value);
        g_autofree char *list = NULL;

        for (guint i = 0; i + 1 < vals->len; i++) {
            if (strcmp(vals->pdata[i], str) == 0)
                return 0;
        }
        list =
            qapi_join_some((const char *const *)vals->pdata, vals->len - 1, QEMU_QAPI_LIST_VALUES);
        qapi_report(chk, _("%1$s: member '%2$s': '%3$s' is not one of %4$s"), chk->command, path,
                    str, list);
        return -1;
    }

    if (strcmp(meta, "array") == 0) {
        const char *elem = qapi_get_str(info, "element-type");
        size_t n = json_object_array_length(value);

        for (size_t i = 0; i < n; i++) {
            g_autofree char *epath = g_strdup_printf("%s[%zu]", path, i);

            if (qapi_check_value(chk, elem ? elem : "", json_object_array_get_idx(value, i), epath,
                                 depth + 1) < 0)
                return -1;
        }
        return 0;
    }

    if (strcmp(meta, "object") == 0)
        return qapi_check_object(chk, info, value, path, depth);

    return 0; /* a builtin that admits the value */
}

int
qemu_qapi_check_command(QemuQapi *qapi, const char *command, json_object *args)
{
    QapiCheck chk = {.qapi = qapi, .command = command};
    json_object *cmd = g_hash_table_lookup(qapi->commands, command);
    const char *arg_type;
    json_object *info;
    g_autoptr(json_object) empty = NULL;

    if (!cmd) {
        ho_error_report(HO_ERR_INVALID_ARG, _("unknown command '%1$s'"), command);
        return -1;
    }
    if (!args)
        args = empty = json_object_new_object();
    if (!json_object_is_type(args, json_type_object)) {
        ho_error_report(HO_ERR_INVALID_ARG, _("%1$s: arguments must be an object, not %2$s"),
                        command, qapi_json_type_name(args));
        return -1;
    }

    arg_type = qapi_get_str(cmd, "arg-type");
    info = arg_type ? g_hash_table_lookup(qapi->types, arg_type) : NULL;
    if (!info) {
        /* No arg-type means no arguments. */
        if (json_object_object_length(args) == 0)
            return 0;
        ho_error_report(HO_ERR_INVALID_ARG, _("%1$s: the command takes no arguments"), command);
        return -1;
    }
    return qapi_check_value(&chk, arg_type, args, "", 0);
}

/* Arrays and alternates in the way of a member path: arrays lead to their
 * element type; an alternate to its first object branch. */
static json_object *
qapi_unwrap(QemuQapi *qapi, json_object *info)
{
    for (int i = 0; info && i < QEMU_QAPI_MAX_DEPTH; i++) {
        const char *meta = qapi_get_str(info, "meta-type");
        const char *next = NULL;

        if (strcmp(meta, "array") == 0) {
            next = qapi_get_str(info, "element-type");
        } else if (strcmp(meta, "alternate") == 0) {
            json_object *arr = qapi_get_array(info, "members");
            size_t n = arr ? json_object_array_length(arr) : 0;

            for (size_t j = 0; j < n && !next; j++) {
                const char *mt = qapi_get_str(json_object_array_get_idx(arr, j), "type");
                json_object *mi = mt ? g_hash_table_lookup(qapi->types, mt) : NULL;
                const char *mm = mi ? qapi_get_str(mi, "meta-type") : NULL;

                if (mm && (strcmp(mm, "object") == 0 || strcmp(mm, "enum") == 0))
                    next = mt;
            }
        } else {
            return info;
        }
        info = next ? g_hash_table_lookup(qapi->types, next) : NULL;
    }
    return NULL;
}

/* The type of member name in object info, its flat-union branches
 * included. */
static const char *
qapi_find_member_type(QemuQapi *qapi, json_object *info, const char *name, int depth)
{
    json_object *arr = qapi_get_array(info, "members");
    json_object *variants = qapi_get_array(info, "variants");
    size_t n = arr ? json_object_array_length(arr) : 0;

    if (depth > QEMU_QAPI_MAX_DEPTH)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        json_object *m = json_object_array_get_idx(arr, i);
        const char *mname = qapi_get_str(m, "name");

        if (mname && strcmp(mname, name) == 0)
            return qapi_get_str(m, "type");
    }
    n = variants ? json_object_array_length(variants) : 0;
    for (size_t i = 0; i < n; i++) {
        const char *vt = qapi_get_str(json_object_array_get_idx(variants, i), "type");
        json_object *vinfo = vt ? g_hash_table_lookup(qapi->types, vt) : NULL;
        const char *found;

        if (vinfo && (found = qapi_find_member_type(qapi, vinfo, name, depth + 1)))
            return found;
    }
    return NULL;
}

char **
qemu_qapi_enum_members(QemuQapi *qapi, const char *command, const char *member, gboolean ret)
{
    json_object *cmd = g_hash_table_lookup(qapi->commands, command);
    const char *type_name;
    json_object *info;
    g_auto(GStrv) parts = NULL;
    g_autoptr(GPtrArray) vals = NULL;
    char **out;

    if (!cmd)
        return NULL;
    type_name = qapi_get_str(cmd, ret ? "ret-type" : "arg-type");
    info = type_name ? g_hash_table_lookup(qapi->types, type_name) : NULL;

    parts = g_strsplit(member ? member : "", ".", -1);
    for (guint i = 0; parts[i] && info; i++) {
        if (!*parts[i])
            continue;
        info = qapi_unwrap(qapi, info);
        if (!info || strcmp(qapi_get_str(info, "meta-type"), "object") != 0)
            return NULL;
        type_name = qapi_find_member_type(qapi, info, parts[i], 0);
        info = type_name ? g_hash_table_lookup(qapi->types, type_name) : NULL;
    }
    info = info ? qapi_unwrap(qapi, info) : NULL;
    if (!info || strcmp(qapi_get_str(info, "meta-type"), "enum") != 0)
        return NULL;

    vals = qapi_enum_values(info);
    out = g_new0(char *, vals->len);
    for (guint i = 0; i + 1 < vals->len; i++)
        out[i] = g_strdup(vals->pdata[i]);
    return out;
}
