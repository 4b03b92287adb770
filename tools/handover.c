/*
 * handover: the command-line client, virsh-style.
 *
 *     handover [-c URI] COMMAND [OPTIONS] ARGS
 *
 * It uses only the public API (libhandover) and GLib, like any other
 * program would. Commands are a table; each parses its own options with
 * GOptionContext, so `handover COMMAND --help` is generated from the same
 * definitions that are parsed and cannot drift from them.
 *
 * Errors: "error: <message>" on standard error and exit status 1.
 */
#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GETTEXT_PACKAGE HO_GETTEXT_PACKAGE
#include <glib/gi18n-lib.h>

#include "handover/handover.h"

#ifndef HO_LOCALEDIR
# define HO_LOCALEDIR "/usr/local/share/locale"
#endif

/* Largest domain XML file `define` reads (the daemon's own limit). */
#define XML_FILE_MAX (1024 * 1024)
/* The daemon's default when `shutdown` is given no timeout. */
#define DEFAULT_SHUTDOWN_S 60
/* Deepest JSON nesting the capabilities reader accepts. */
#define JSON_MAX_DEPTH 64

G_DEFINE_AUTOPTR_CLEANUP_FUNC(HandoverConnect, handover_connect_close)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(HandoverDomain, handover_domain_free)

typedef struct {
    const char *name;
    const char *params;  /* positional arguments in the usage line */
    const char *summary;
    int (*run)(int argc, char **argv);
} HandoverCommand;

/* -c URI; NULL: HANDOVER_DEFAULT_URI, else handover:///system (libhandover). */
static char *connect_uri;

static int cmd_define(int argc, char **argv);
static int cmd_undefine(int argc, char **argv);
static int cmd_start(int argc, char **argv);
static int cmd_shutdown(int argc, char **argv);
static int cmd_destroy(int argc, char **argv);
static int cmd_suspend(int argc, char **argv);
static int cmd_resume(int argc, char **argv);
static int cmd_list(int argc, char **argv);
static int cmd_dominfo(int argc, char **argv);
static int cmd_domstate(int argc, char **argv);
static int cmd_dumpxml(int argc, char **argv);
static int cmd_event(int argc, char **argv);
static int cmd_version(int argc, char **argv);
static int cmd_capabilities(int argc, char **argv);

static const HandoverCommand commands[] = {
    {"define", N_("FILE"), N_("define (or update) a domain from an XML file"), cmd_define},
    {"undefine", N_("DOMAIN"), N_("remove a domain's persistent definition"), cmd_undefine},
    {"start", N_("DOMAIN"), N_("start a defined domain"), cmd_start},
    {"shutdown", N_("DOMAIN"), N_("ask a domain to power off, and stop it if it does not"),
     cmd_shutdown},
    {"destroy", N_("DOMAIN"), N_("stop a domain at once (kill its QEMU)"), cmd_destroy},
    {"suspend", N_("DOMAIN"), N_("pause a running domain"), cmd_suspend},
    {"resume", N_("DOMAIN"), N_("resume a paused domain"), cmd_resume},
    {"list", "", N_("list domains"), cmd_list},
    {"dominfo", N_("DOMAIN"), N_("show information about a domain"), cmd_dominfo},
    {"domstate", N_("DOMAIN"), N_("show the state of a domain"), cmd_domstate},
    {"dumpxml", N_("DOMAIN"), N_("print the XML definition of a domain"), cmd_dumpxml},
    {"event", "", N_("print domain lifecycle events as they come"), cmd_event},
    {"version", "", N_("print the versions of handover and of the daemon"), cmd_version},
    {"capabilities", "", N_("print what the host's QEMU can do for a migration"),
     cmd_capabilities},
};

/* ---- errors ---- */

static void G_GNUC_PRINTF(1, 2)
print_error(const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_printerr(_("error: %1$s\n"), msg);
}

/* The library's error for the call that just failed. */
static void
print_api_error(void)
{
    const HandoverError *err = handover_last_error();

    print_error("%s", err && err->message ? err->message : _("unknown error"));
}

/* ---- options and arguments ---- */

static const HandoverCommand *
find_command(const char *name)
{
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(commands); i++) {
        if (g_str_equal(commands[i].name, name))
            return &commands[i];
    }
    return NULL;
}

/* Parse a command's options; on --help GLib prints and exits 0. */
static int
parse_options(const char *name, GOptionEntry *entries, int *argc, char ***argv)
{
    const HandoverCommand *cmd = find_command(name);
    g_autofree char *prgname = g_strdup_printf("handover %s", name);
    g_autoptr(GOptionContext) ctx = NULL;
    g_autoptr(GError) gerr = NULL;

    /* The usage line reads "handover COMMAND [OPTION…] PARAMS". */
    g_set_prgname(prgname);
    ctx = g_option_context_new(cmd && *cmd->params ? _(cmd->params) : NULL);
    if (cmd)
        g_option_context_set_summary(ctx, _(cmd->summary));
    g_option_context_add_main_entries(ctx, entries, GETTEXT_PACKAGE);
    g_option_context_set_translation_domain(ctx, GETTEXT_PACKAGE);
    if (!g_option_context_parse(ctx, argc, argv, &gerr)) {
        print_error(_("%1$s: %2$s (see 'handover %1$s --help')"), name, gerr->message);
        return -1;
    }
    return 0;
}

/* Exactly one positional argument after the options: *arg borrows it. */
static int
single_argument(const char *name, const char *what, int argc, char **argv, const char **arg)
{
    if (argc < 2) {
        print_error(_("%1$s: missing %2$s (see 'handover %1$s --help')"), name, what);
        return -1;
    }
    if (argc > 2) {
        print_error(_("%1$s: unexpected argument '%2$s'"), name, argv[2]);
        return -1;
    }
    *arg = argv[1];
    return 0;
}

static int
no_arguments(const char *name, int argc, char **argv)
{
    if (argc > 1) {
        print_error(_("%1$s: unexpected argument '%2$s'"), name, argv[1]);
        return -1;
    }
    return 0;
}

static HandoverConnect *
open_connection(void)
{
    HandoverConnect *conn = handover_connect_open(connect_uri);

    if (!conn)
        print_api_error();
    return conn;
}

/* Connect and look the domain up by name or UUID. */
static HandoverDomain *
open_domain(const char *name, HandoverConnect **conn_out)
{
    g_autoptr(HandoverConnect) conn = open_connection();
    HandoverDomain *dom;

    if (!conn)
        return NULL;
    if (!(dom = handover_domain_lookup_by_name(conn, name))) {
        print_api_error();
        return NULL;
    }
    *conn_out = g_steal_pointer(&conn);
    return dom;
}

/* How a state reads in tables, as virsh writes it. */
static const char *
state_display(HandoverDomainState state)
{
    switch (state) {
    case HANDOVER_DOMAIN_RUNNING: return _("running");
    case HANDOVER_DOMAIN_PAUSED: return _("paused");
    case HANDOVER_DOMAIN_SHUTOFF: return _("shut off");
    case HANDOVER_DOMAIN_CRASHED: return _("crashed");
    case HANDOVER_DOMAIN_SHUTTING_DOWN: return _("in shutdown");
    case HANDOVER_DOMAIN_NOSTATE: break;
    }
    return _("no state");
}

/* ---- JSON: a small reader into GVariant and a writer from it ----
 *
 * The CLI links nothing but libhandover and GLib; the documents it reads
 * (capabilities) and writes (--json) are small. Objects are a{sv} (member
 * order kept), arrays av, integers x, other numbers d, null an empty mv. */

typedef struct {
    const char *p;
    const char *end;
    int depth;
} JsonReader;

static GVariant *json_read_value(JsonReader *r);

static void
json_skip_space(JsonReader *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

static bool
json_read_hex4(JsonReader *r, gunichar *out)
{
    gunichar v = 0;
    int i;

    if (r->end - r->p < 4)
        return false;
    for (i = 0; i < 4; i++) {
        int d = g_ascii_xdigit_value(r->p[i]);

        if (d < 0)
            return false;
        v = v * 16 + (gunichar)d;
    }
    r->p += 4;
    *out = v;
    return true;
}

/* A string after its opening quote; NULL when malformed. */
static char *
json_read_string(JsonReader *r)
{
    g_autoptr(GString) s = g_string_new(NULL);

    while (r->p < r->end) {
        char c = *r->p++;
        gunichar u;

        if (c == '"')
            return g_string_free(g_steal_pointer(&s), FALSE);
        if ((unsigned char)c < 0x20)
            return NULL;
        if (c != '\\') {
            g_string_append_c(s, c);
            continue;
        }
        if (r->p >= r->end)
            return NULL;
        switch (*r->p++) {
        case '"': g_string_append_c(s, '"'); break;
        case '\\': g_string_append_c(s, '\\'); break;
        case '/': g_string_append_c(s, '/'); break;
        case 'b': g_string_append_c(s, '\b'); break;
        case 'f': g_string_append_c(s, '\f'); break;
        case 'n': g_string_append_c(s, '\n'); break;
        case 'r': g_string_append_c(s, '\r'); break;
        case 't': g_string_append_c(s, '\t'); break;
        case 'u':
            if (!json_read_hex4(r, &u))
                return NULL;
            if (u >= 0xd800 && u < 0xdc00) {
                gunichar low;

                if (r->end - r->p < 2 || r->p[0] != '\\' || r->p[1] != 'u')
                    return NULL;
                r->p += 2;
                if (!json_read_hex4(r, &low) || low < 0xdc00 || low >= 0xe000)
                    return NULL;
                u = 0x10000 + ((u - 0xd800) << 10) + (low - 0xdc00);
            } else if (u >= 0xdc00 && u < 0xe000) {
                return NULL;
            }
            if (u == 0)
                return NULL;
            g_string_append_unichar(s, u);
            break;
        default:
            return NULL;
        }
    }
    return NULL;
}

static GVariant *
json_read_number(JsonReader *r)
{
    const char *start = r->p;
    g_autofree char *text = NULL;
    bool integer = true;
    char *endp = NULL;

    while (r->p < r->end && (g_ascii_isdigit(*r->p) || strchr("+-.eE", *r->p))) {
        if (!g_ascii_isdigit(*r->p) && *r->p != '-')
            integer = false;
        r->p++;
    }
    if (r->p == start)
        return NULL;
    text = g_strndup(start, (gsize)(r->p - start));
    errno = 0;
    if (integer) {
        gint64 v = g_ascii_strtoll(text, &endp, 10);

        if (*endp == '\0' && errno == 0)
            return g_variant_new_int64(v);
    }
    errno = 0;
    {
        double d = g_ascii_strtod(text, &endp);

        if (*endp != '\0' || errno != 0)
            return NULL;
        return g_variant_new_double(d);
    }
}

static bool
json_read_literal(JsonReader *r, const char *word)
{
    size_t len = strlen(word);

    if ((size_t)(r->end - r->p) < len || strncmp(r->p, word, len) != 0)
        return false;
    r->p += len;
    return true;
}

static GVariant *
json_read_container(JsonReader *r, bool object)
{
    g_auto(GVariantBuilder) b =
        G_VARIANT_BUILDER_INIT(object ? G_VARIANT_TYPE("a{sv}") : G_VARIANT_TYPE("av"));
    char close = object ? '}' : ']';

    if (++r->depth > JSON_MAX_DEPTH)
        return NULL;
    json_skip_space(r);
    if (r->p < r->end && *r->p == close) {
        r->p++;
        r->depth--;
        return g_variant_builder_end(&b);
    }
    for (;;) {
        g_autofree char *key = NULL;
        GVariant *val;

        json_skip_space(r);
        if (object) {
            if (r->p >= r->end || *r->p++ != '"' || !(key = json_read_string(r)))
                return NULL;
            json_skip_space(r);
            if (r->p >= r->end || *r->p++ != ':')
                return NULL;
        }
        if (!(val = json_read_value(r)))
            return NULL;
        if (object)
            g_variant_builder_add(&b, "{sv}", key, val);
        else
            g_variant_builder_add(&b, "v", val);
        json_skip_space(r);
        if (r->p >= r->end)
            return NULL;
        if (*r->p == close) {
            r->p++;
            r->depth--;
            return g_variant_builder_end(&b);
        }
        if (*r->p++ != ',')
            return NULL;
    }
}

/* A floating reference, or NULL when malformed. */
static GVariant *
json_read_value(JsonReader *r)
{
    json_skip_space(r);
    if (r->p >= r->end)
        return NULL;
    switch (*r->p) {
    case '{':
        r->p++;
        return json_read_container(r, true);
    case '[':
        r->p++;
        return json_read_container(r, false);
    case '"': {
        char *s;

        r->p++;
        if (!(s = json_read_string(r)))
            return NULL;
        return g_variant_new_take_string(s);
    }
    case 't':
        return json_read_literal(r, "true") ? g_variant_new_boolean(TRUE) : NULL;
    case 'f':
        return json_read_literal(r, "false") ? g_variant_new_boolean(FALSE) : NULL;
    case 'n':
        return json_read_literal(r, "null") ? g_variant_new_maybe(G_VARIANT_TYPE_VARIANT, NULL)
                                            : NULL;
    default:
        return json_read_number(r);
    }
}

/* Parse a whole document; NULL and an error printed when malformed. */
static GVariant *
json_parse(const char *text, const char *what)
{
    JsonReader r = {text, text + strlen(text), 0};
    g_autoptr(GVariant) val = NULL;

    if (g_utf8_validate(text, -1, NULL))
        val = json_read_value(&r);
    if (val)
        g_variant_ref_sink(val);
    json_skip_space(&r);
    if (!val || r.p != r.end) {
        print_error(_("malformed JSON in %1$s"), what);
        return NULL;
    }
    return g_steal_pointer(&val);
}

static void
json_write_string(GString *out, const char *s)
{
    g_string_append_c(out, '"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"' || c == '\\')
            g_string_append_printf(out, "\\%c", c);
        else if (c == '\n')
            g_string_append(out, "\\n");
        else if (c < 0x20)
            g_string_append_printf(out, "\\u%04x", c);
        else
            g_string_append_c(out, (char)c);
    }
    g_string_append_c(out, '"');
}

static void
json_write(GString *out, GVariant *val, int indent)
{
    GVariantIter iter;
    GVariant *child;
    const char *key;
    bool first = true;
    bool object;

    if (g_variant_is_of_type(val, G_VARIANT_TYPE_VARIANT)) {
        g_autoptr(GVariant) inner = g_variant_get_variant(val);

        json_write(out, inner, indent);
        return;
    }
    if (g_variant_is_of_type(val, G_VARIANT_TYPE_STRING)) {
        json_write_string(out, g_variant_get_string(val, NULL));
    } else if (g_variant_is_of_type(val, G_VARIANT_TYPE_BOOLEAN)) {
        g_string_append(out, g_variant_get_boolean(val) ? "true" : "false");
    } else if (g_variant_is_of_type(val, G_VARIANT_TYPE_INT64)) {
        g_string_append_printf(out, "%" G_GINT64_FORMAT, g_variant_get_int64(val));
    } else if (g_variant_is_of_type(val, G_VARIANT_TYPE_UINT64)) {
        g_string_append_printf(out, "%" G_GUINT64_FORMAT, g_variant_get_uint64(val));
    } else if (g_variant_is_of_type(val, G_VARIANT_TYPE_DOUBLE)) {
        char buf[G_ASCII_DTOSTR_BUF_SIZE];

        g_string_append(out, g_ascii_dtostr(buf, sizeof(buf), g_variant_get_double(val)));
    } else if (g_variant_is_of_type(val, G_VARIANT_TYPE("a{sv}")) ||
               g_variant_is_of_type(val, G_VARIANT_TYPE("av"))) {
        object = g_variant_is_of_type(val, G_VARIANT_TYPE("a{sv}"));
        if (g_variant_n_children(val) == 0) {
            g_string_append(out, object ? "{}" : "[]");
            return;
        }
        g_string_append_c(out, object ? '{' : '[');
        g_variant_iter_init(&iter, val);
        for (;;) {
            if (object) {
                if (!g_variant_iter_next(&iter, "{&sv}", &key, &child))
                    break;
            } else if (!g_variant_iter_next(&iter, "v", &child)) {
                break;
            }
            g_string_append_printf(out, "%s\n%*s", first ? "" : ",", (indent + 1) * 2, "");
            if (object) {
                json_write_string(out, key);
                g_string_append(out, ": ");
            }
            json_write(out, child, indent + 1);
            g_variant_unref(child);
            first = false;
        }
        g_string_append_printf(out, "\n%*s%c", indent * 2, "", object ? '}' : ']');
    } else {
        g_string_append(out, "null");
    }
}

static void
json_print(GVariant *val)
{
    g_autoptr(GString) out = g_string_new(NULL);

    json_write(out, val, 0);
    printf("%s\n", out->str);
}

/* ---- commands ---- */

/* A domain XML file, whole, bounded and UTF-8 (it travels as JSON). */
static char *
read_xml_file(const char *path)
{
    g_autofree char *text = NULL;
    FILE *f = fopen(path, "re");
    size_t len;
    int err;

    if (!f) {
        print_error(_("cannot open '%1$s': %2$s"), path, g_strerror(errno));
        return NULL;
    }
    text = g_malloc(XML_FILE_MAX + 1);
    len = fread(text, 1, XML_FILE_MAX + 1, f);
    err = ferror(f) ? errno : 0;
    fclose(f);
    if (err) {
        print_error(_("cannot read '%1$s': %2$s"), path, g_strerror(err));
        return NULL;
    }
    if (len > XML_FILE_MAX) {
        print_error(_("'%1$s' is larger than %2$d bytes"), path, XML_FILE_MAX);
        return NULL;
    }
    text[len] = '\0';
    if (strlen(text) != len || !g_utf8_validate(text, (gssize)len, NULL)) {
        print_error(_("'%1$s' is not UTF-8 text"), path);
        return NULL;
    }
    return g_steal_pointer(&text);
}

static int
cmd_define(int argc, char **argv)
{
    GOptionEntry entries[] = {{NULL}};
    g_autoptr(HandoverConnect) conn = NULL;
    g_autoptr(HandoverDomain) dom = NULL;
    g_autofree char *xml = NULL;
    const char *file;

    if (parse_options("define", entries, &argc, &argv) < 0 ||
        single_argument("define", _("FILE"), argc, argv, &file) < 0)
        return -1;
    if (!(xml = read_xml_file(file)) || !(conn = open_connection()))
        return -1;
    if (!(dom = handover_domain_define_xml(conn, xml))) {
        print_api_error();
        return -1;
    }
    printf(_("Domain '%1$s' defined from %2$s\n"), handover_domain_get_name(dom), file);
    return 0;
}

/* The commands that take one DOMAIN, no option and print one line. */
typedef enum {
    SIMPLE_UNDEFINE,
    SIMPLE_DESTROY,
    SIMPLE_SUSPEND,
    SIMPLE_RESUME,
} SimpleAction;

static int
run_simple(const char *name, SimpleAction action, int argc, char **argv)
{
    GOptionEntry entries[] = {{NULL}};
    g_autoptr(HandoverConnect) conn = NULL;
    g_autoptr(HandoverDomain) dom = NULL;
    const char *arg;
    int rc = -1;

    if (parse_options(name, entries, &argc, &argv) < 0 ||
        single_argument(name, _("DOMAIN"), argc, argv, &arg) < 0 ||
        !(dom = open_domain(arg, &conn)))
        return -1;
    switch (action) {
    case SIMPLE_UNDEFINE: rc = handover_domain_undefine(dom); break;
    case SIMPLE_DESTROY: rc = handover_domain_destroy(dom); break;
    case SIMPLE_SUSPEND: rc = handover_domain_suspend(dom); break;
    case SIMPLE_RESUME: rc = handover_domain_resume(dom); break;
    }
    if (rc < 0) {
        print_api_error();
        return -1;
    }
    switch (action) {
    case SIMPLE_UNDEFINE:
        printf(_("Domain '%1$s' has been undefined\n"), handover_domain_get_name(dom));
        break;
    case SIMPLE_DESTROY:
        printf(_("Domain '%1$s' destroyed\n"), handover_domain_get_name(dom));
        break;
    case SIMPLE_SUSPEND:
        printf(_("Domain '%1$s' suspended\n"), handover_domain_get_name(dom));
        break;
    case SIMPLE_RESUME:
        printf(_("Domain '%1$s' resumed\n"), handover_domain_get_name(dom));
        break;
    }
    return 0;
}

static int
cmd_undefine(int argc, char **argv)
{
    return run_simple("undefine", SIMPLE_UNDEFINE, argc, argv);
}

static int
cmd_destroy(int argc, char **argv)
{
    return run_simple("destroy", SIMPLE_DESTROY, argc, argv);
}

static int
cmd_suspend(int argc, char **argv)
{
    return run_simple("suspend", SIMPLE_SUSPEND, argc, argv);
}

static int
cmd_resume(int argc, char **argv)
{
    return run_simple("resume", SIMPLE_RESUME, argc, argv);
}

static int
cmd_start(int argc, char **argv)
{
    gboolean paused = FALSE;
    GOptionEntry entries[] = {
        {"paused", 0, 0, G_OPTION_ARG_NONE, &paused,
         N_("leave the guest paused after starting it"), NULL},
        {NULL}};
    g_autoptr(HandoverConnect) conn = NULL;
    g_autoptr(HandoverDomain) dom = NULL;
    const char *arg;

    if (parse_options("start", entries, &argc, &argv) < 0 ||
        single_argument("start", _("DOMAIN"), argc, argv, &arg) < 0 ||
        !(dom = open_domain(arg, &conn)))
        return -1;
    if (handover_domain_start(dom, paused ? HANDOVER_START_PAUSED : 0) < 0) {
        print_api_error();
        return -1;
    }
    if (paused)
        printf(_("Domain '%1$s' started (paused)\n"), handover_domain_get_name(dom));
    else
        printf(_("Domain '%1$s' started\n"), handover_domain_get_name(dom));
    return 0;
}

static int
cmd_shutdown(int argc, char **argv)
{
    gint timeout = 0;
    GOptionEntry entries[] = {
        {"timeout", 0, 0, G_OPTION_ARG_INT, &timeout,
         N_("seconds to wait for the guest before stopping it by force (default 60)"),
         N_("S")},
        {NULL}};
    g_autoptr(HandoverConnect) conn = NULL;
    g_autoptr(HandoverDomain) dom = NULL;
    const char *arg;
    bool forced = false;

    if (parse_options("shutdown", entries, &argc, &argv) < 0)
        return -1;
    if (timeout < 0) {
        print_error(_("shutdown: invalid timeout '%1$d': it must be positive"), timeout);
        return -1;
    }
    if (single_argument("shutdown", _("DOMAIN"), argc, argv, &arg) < 0 ||
        !(dom = open_domain(arg, &conn)))
        return -1;
    if (handover_domain_shutdown(dom, (unsigned int)timeout, &forced) < 0) {
        print_api_error();
        return -1;
    }
    if (forced)
        printf(_("Domain '%1$s' did not power off within %2$d s and was stopped by force\n"),
               handover_domain_get_name(dom), timeout ? timeout : DEFAULT_SHUTDOWN_S);
    else
        printf(_("Domain '%1$s' has been shut down\n"), handover_domain_get_name(dom));
    return 0;
}

typedef struct {
    HandoverDomain *dom;
    HandoverDomainInfo info;
} ListEntry;

static void
list_entry_clear(ListEntry *e)
{
    handover_domain_free(e->dom);
}

static GVariant *
domain_json(HandoverDomain *dom, const HandoverDomainInfo *info, bool full)
{
    g_auto(GVariantBuilder) b = G_VARIANT_BUILDER_INIT(G_VARIANT_TYPE("a{sv}"));

    g_variant_builder_add(&b, "{sv}", "name", g_variant_new_string(handover_domain_get_name(dom)));
    g_variant_builder_add(&b, "{sv}", "uuid", g_variant_new_string(handover_domain_get_uuid(dom)));
    g_variant_builder_add(&b, "{sv}", "state",
                          g_variant_new_string(handover_domain_state_name(info->state)));
    if (info->pid > 0)
        g_variant_builder_add(&b, "{sv}", "pid", g_variant_new_int64(info->pid));
    if (full) {
        g_variant_builder_add(&b, "{sv}", "vcpus", g_variant_new_int64(info->vcpus));
        g_variant_builder_add(&b, "{sv}", "max_memory_kib",
                              g_variant_new_uint64(info->max_memory_kib));
        g_variant_builder_add(&b, "{sv}", "memory_kib", g_variant_new_uint64(info->memory_kib));
    }
    g_variant_builder_add(&b, "{sv}", "persistent", g_variant_new_boolean(info->persistent));
    return g_variant_builder_end(&b);
}

static int
cmd_list(int argc, char **argv)
{
    gboolean all = FALSE;
    gboolean json = FALSE;
    GOptionEntry entries[] = {
        {"all", 0, 0, G_OPTION_ARG_NONE, &all, N_("include inactive domains"), NULL},
        {"json", 0, 0, G_OPTION_ARG_NONE, &json, N_("print JSON"), NULL},
        {NULL}};
    g_autoptr(HandoverConnect) conn = NULL;
    g_autoptr(GArray) entries_found = g_array_new(FALSE, TRUE, sizeof(ListEntry));
    HandoverDomain **doms = NULL;
    int n, i;

    g_array_set_clear_func(entries_found, (GDestroyNotify)list_entry_clear);
    if (parse_options("list", entries, &argc, &argv) < 0 || no_arguments("list", argc, argv) < 0 ||
        !(conn = open_connection()))
        return -1;
    n = handover_connect_list_domains(conn, &doms,
                                      all ? 0 : (unsigned int)HANDOVER_LIST_ACTIVE);
    if (n < 0) {
        print_api_error();
        return -1;
    }
    for (i = 0; i < n; i++) {
        ListEntry e = {doms[i], {0}};

        if (handover_domain_get_info(e.dom, &e.info) < 0) {
            const HandoverError *err = handover_last_error();

            /* A transient domain that stopped meanwhile is simply gone. */
            if (err && err->code == HANDOVER_ERR_NO_DOMAIN) {
                handover_domain_free(e.dom);
                continue;
            }
            print_api_error();
            for (; i < n; i++)
                handover_domain_free(doms[i]);
            free(doms);
            return -1;
        }
        g_array_append_val(entries_found, e);
    }
    free(doms);

    if (json) {
        g_auto(GVariantBuilder) b = G_VARIANT_BUILDER_INIT(G_VARIANT_TYPE("av"));
        g_autoptr(GVariant) doc = NULL;

        for (i = 0; i < (int)entries_found->len; i++) {
            ListEntry *e = &g_array_index(entries_found, ListEntry, i);

            g_variant_builder_add(&b, "v", domain_json(e->dom, &e->info, false));
        }
        doc = g_variant_ref_sink(g_variant_builder_end(&b));
        json_print(doc);
        return 0;
    }

    {
        /* virsh's table: columns as wide as their widest cell, 3 spaces apart. */
        g_autoptr(GPtrArray) ids = g_ptr_array_new_with_free_func(g_free);
        const char *h_id = _("Id");
        const char *h_name = _("Name");
        const char *h_state = _("State");
        int w_id = (int)g_utf8_strlen(h_id, -1);
        int w_name = (int)g_utf8_strlen(h_name, -1);
        int w_state = (int)g_utf8_strlen(h_state, -1);
        g_autofree char *dashes = NULL;

        for (i = 0; i < (int)entries_found->len; i++) {
            ListEntry *e = &g_array_index(entries_found, ListEntry, i);
            char *id = e->info.pid > 0 ? g_strdup_printf("%d", e->info.pid) : g_strdup("-");

            g_ptr_array_add(ids, id);
            w_id = MAX(w_id, (int)g_utf8_strlen(id, -1));
            w_name = MAX(w_name, (int)g_utf8_strlen(handover_domain_get_name(e->dom), -1));
            w_state = MAX(w_state, (int)g_utf8_strlen(state_display(e->info.state), -1));
        }
        printf(" %-*s   %-*s   %s\n", w_id, h_id, w_name, h_name, h_state);
        dashes = g_strnfill((gsize)(w_id + w_name + w_state + 8), '-');
        printf("%s\n", dashes);
        for (i = 0; i < (int)entries_found->len; i++) {
            ListEntry *e = &g_array_index(entries_found, ListEntry, i);

            printf(" %-*s   %-*s   %s\n", w_id, (const char *)g_ptr_array_index(ids, i), w_name,
                   handover_domain_get_name(e->dom), state_display(e->info.state));
        }
        printf("\n");
    }
    return 0;
}

static int
cmd_dominfo(int argc, char **argv)
{
    gboolean json = FALSE;
    GOptionEntry entries[] = {
        {"json", 0, 0, G_OPTION_ARG_NONE, &json, N_("print JSON"), NULL},
        {NULL}};
    g_autoptr(HandoverConnect) conn = NULL;
    g_autoptr(HandoverDomain) dom = NULL;
    g_autofree char *id = NULL;
    HandoverDomainInfo info = {0};
    const char *arg;

    if (parse_options("dominfo", entries, &argc, &argv) < 0 ||
        single_argument("dominfo", _("DOMAIN"), argc, argv, &arg) < 0 ||
        !(dom = open_domain(arg, &conn)))
        return -1;
    if (handover_domain_get_info(dom, &info) < 0) {
        print_api_error();
        return -1;
    }
    if (json) {
        g_autoptr(GVariant) doc = g_variant_ref_sink(domain_json(dom, &info, true));

        json_print(doc);
        return 0;
    }
    id = info.pid > 0 ? g_strdup_printf("%d", info.pid) : g_strdup("-");
    printf("%-16s%s\n", _("Id:"), id);
    printf("%-16s%s\n", _("Name:"), handover_domain_get_name(dom));
    printf("%-16s%s\n", _("UUID:"), handover_domain_get_uuid(dom));
    printf("%-16s%s\n", _("State:"), state_display(info.state));
    printf("%-16s%u\n", _("CPU(s):"), info.vcpus);
    printf("%-16s%" G_GUINT64_FORMAT " KiB\n", _("Max memory:"), (guint64)info.max_memory_kib);
    printf("%-16s%" G_GUINT64_FORMAT " KiB\n", _("Used memory:"), (guint64)info.memory_kib);
    printf("%-16s%s\n", _("Persistent:"), info.persistent ? _("yes") : _("no"));
    printf("\n");
    return 0;
}

static int
cmd_domstate(int argc, char **argv)
{
    gboolean reason = FALSE;
    GOptionEntry entries[] = {
        {"reason", 0, 0, G_OPTION_ARG_NONE, &reason, N_("also print why it is in that state"),
         NULL},
        {NULL}};
    g_autoptr(HandoverConnect) conn = NULL;
    g_autoptr(HandoverDomain) dom = NULL;
    HandoverDomainState state;
    char *why = NULL;
    const char *arg;

    if (parse_options("domstate", entries, &argc, &argv) < 0 ||
        single_argument("domstate", _("DOMAIN"), argc, argv, &arg) < 0 ||
        !(dom = open_domain(arg, &conn)))
        return -1;
    if (handover_domain_get_state(dom, &state, reason ? &why : NULL) < 0) {
        print_api_error();
        return -1;
    }
    if (why)
        printf("%s (%s)\n\n", state_display(state), why);
    else
        printf("%s\n\n", state_display(state));
    free(why);
    return 0;
}

static int
cmd_dumpxml(int argc, char **argv)
{
    gboolean inactive = FALSE;
    GOptionEntry entries[] = {
        {"inactive", 0, 0, G_OPTION_ARG_NONE, &inactive,
         N_("print the persistent definition, not the running one"), NULL},
        {NULL}};
    g_autoptr(HandoverConnect) conn = NULL;
    g_autoptr(HandoverDomain) dom = NULL;
    char *xml;
    const char *arg;

    if (parse_options("dumpxml", entries, &argc, &argv) < 0 ||
        single_argument("dumpxml", _("DOMAIN"), argc, argv, &arg) < 0 ||
        !(dom = open_domain(arg, &conn)))
        return -1;
    if (!(xml = handover_domain_get_xml_desc(dom, inactive ? HANDOVER_XML_INACTIVE : 0))) {
        print_api_error();
        return -1;
    }
    fputs(xml, stdout);
    if (!*xml || xml[strlen(xml) - 1] != '\n')
        fputc('\n', stdout);
    free(xml);
    return 0;
}

typedef struct {
    unsigned int count;
} EventState;

static void
on_lifecycle(HandoverConnect *conn, const char *name, const char *uuid, const char *event,
             const char *detail, void *opaque)
{
    EventState *st = opaque;

    st->count++;
    if (detail)
        printf(_("event 'lifecycle' for domain '%1$s': %2$s %3$s\n"), name, event, detail);
    else
        printf(_("event 'lifecycle' for domain '%1$s': %2$s\n"), name, event);
    /* Someone is watching this as it happens, often through a pipe. */
    fflush(stdout);
}

static int
cmd_event(int argc, char **argv)
{
    gboolean loop = FALSE;
    gint timeout = 0;
    GOptionEntry entries[] = {
        {"loop", 0, 0, G_OPTION_ARG_NONE, &loop,
         N_("go on after the first event (until the timeout or Ctrl-C)"), NULL},
        {"timeout", 0, 0, G_OPTION_ARG_INT, &timeout,
         N_("stop waiting after S seconds (default: wait forever)"), N_("S")},
        {NULL}};
    g_autoptr(HandoverConnect) conn = NULL;
    EventState st = {0};
    gint64 deadline = 0;

    if (parse_options("event", entries, &argc, &argv) < 0 || no_arguments("event", argc, argv) < 0)
        return -1;
    if (timeout < 0) {
        print_error(_("event: invalid timeout '%1$d': it must be positive"), timeout);
        return -1;
    }
    if (!(conn = open_connection()))
        return -1;
    if (handover_connect_register_lifecycle(conn, on_lifecycle, &st) < 0) {
        print_api_error();
        return -1;
    }
    if (timeout)
        deadline = g_get_monotonic_time() + (gint64)timeout * G_USEC_PER_SEC;
    while (loop || st.count == 0) {
        /* An hour at a time when there is no deadline: "forever" in steps. */
        guint wait_ms = 3600 * 1000;

        if (deadline) {
            gint64 left_us = deadline - g_get_monotonic_time();

            if (left_us <= 0)
                break;
            wait_ms = (guint)MIN((left_us + 999) / 1000, (gint64)wait_ms);
        }
        if (handover_connect_run_events(conn, wait_ms) < 0) {
            print_api_error();
            return -1;
        }
    }
    return 0;
}

static int
cmd_version(int argc, char **argv)
{
    GOptionEntry entries[] = {{NULL}};
    g_autoptr(HandoverConnect) conn = NULL;

    if (parse_options("version", entries, &argc, &argv) < 0 ||
        no_arguments("version", argc, argv) < 0)
        return -1;
    printf(_("Client: handover %1$s\n"), PACKAGE_VERSION_STRING);
    /* The daemon's part only when one is reachable: this must work without. */
    conn = handover_connect_open(connect_uri);
    if (conn) {
        printf(_("Daemon: %1$s on host '%2$s'\n"), handover_connect_get_daemon_version(conn),
               handover_connect_get_hostname(conn));
    }
    return 0;
}

/* The features `capabilities` always lists, "no" when absent; the
 * document's other flags follow them. */
static const char *const known_features[] = {
    "events", "pause-before-switchover", "postcopy-ram", "return-path", "late-block-activate",
    "auto-converge", "multifd", "postcopy-preempt", "block", "postcopy-recover-setup",
    "cpr-transfer", "migrate-channels", "blockdev-mirror", "block-export-add",
    "migrate-recover", "migrate-pause", "migrate-continue", "query-jobs", NULL,
};

/* A string member (borrowed from dict), "?" when absent or not a string. */
static const char *
lookup_string(GVariant *dict, const char *key)
{
    const char *s;

    return g_variant_lookup(dict, key, "&s", &s) ? s : "?";
}

static gint64
lookup_int(GVariant *dict, const char *key)
{
    gint64 v;

    return g_variant_lookup(dict, key, "x", &v) ? v : 0;
}

static void
print_capabilities(GVariant *doc)
{
    g_autoptr(GVariant) version = g_variant_lookup_value(doc, "version", G_VARIANT_TYPE("a{sv}"));
    g_autoptr(GVariant) flags = g_variant_lookup_value(doc, "flags", G_VARIANT_TYPE("av"));
    g_autoptr(GHashTable) present = g_hash_table_new(g_str_hash, g_str_equal);
    g_autoptr(GPtrArray) order = g_ptr_array_new();
    size_t i;

    for (i = 0; flags && i < g_variant_n_children(flags); i++) {
        g_autoptr(GVariant) boxed = g_variant_get_child_value(flags, i);
        g_autoptr(GVariant) name = g_variant_get_variant(boxed);

        if (g_variant_is_of_type(name, G_VARIANT_TYPE_STRING)) {
            const char *s = g_variant_get_string(name, NULL);

            g_hash_table_add(present, (char *)s);
            g_ptr_array_add(order, (char *)s);
        }
    }

    printf(_("emulator:     %1$s\n"), lookup_string(doc, "emulator"));
    if (version) {
        printf(_("version:      %1$" G_GINT64_FORMAT ".%2$" G_GINT64_FORMAT ".%3$" G_GINT64_FORMAT
                 " (%4$s)\n"),
               lookup_int(version, "major"), lookup_int(version, "minor"),
               lookup_int(version, "micro"), lookup_string(doc, "package"));
    }
    printf(_("accelerator:  %1$s\n"), lookup_string(doc, "accel"));
    printf(_("features:\n"));
    for (i = 0; known_features[i]; i++) {
        printf("  %-26s %s\n", known_features[i],
               g_hash_table_contains(present, known_features[i]) ? _("yes") : _("no"));
    }
    for (i = 0; i < order->len; i++) {
        const char *name = g_ptr_array_index(order, i);

        if (!g_strv_contains(known_features, name))
            printf("  %-26s %s\n", name, _("yes"));
    }
}

static int
cmd_capabilities(int argc, char **argv)
{
    g_autofree char *emulator = NULL;
    gboolean json = FALSE;
    GOptionEntry entries[] = {
        {"emulator", 0, 0, G_OPTION_ARG_FILENAME, &emulator,
         N_("the QEMU binary to probe (default: the daemon's default emulator)"), N_("PATH")},
        {"json", 0, 0, G_OPTION_ARG_NONE, &json, N_("print JSON"), NULL},
        {NULL}};
    g_autoptr(HandoverConnect) conn = NULL;
    g_autoptr(GVariant) doc = NULL;
    g_autofree char *path = NULL;
    char *text;

    if (parse_options("capabilities", entries, &argc, &argv) < 0 ||
        no_arguments("capabilities", argc, argv) < 0)
        return -1;
    /* The daemon resolves paths from its own directory, not ours. */
    if (emulator && strchr(emulator, '/'))
        path = g_canonicalize_filename(emulator, NULL);
    if (!(conn = open_connection()))
        return -1;
    if (!(text = handover_connect_get_capabilities(conn, path ? path : emulator))) {
        print_api_error();
        return -1;
    }
    if (json) {
        printf("%s\n", text);
        free(text);
        return 0;
    }
    doc = json_parse(text, _("the daemon's capabilities"));
    free(text);
    if (!doc)
        return -1;
    if (!g_variant_is_of_type(doc, G_VARIANT_TYPE("a{sv}"))) {
        print_error(_("the daemon's capabilities are not a JSON object"));
        return -1;
    }
    print_capabilities(doc);
    return 0;
}

/* ---- main ---- */

static char *
commands_description(void)
{
    GString *s = g_string_new(_("Commands:"));
    size_t i;

    g_string_append_c(s, '\n');
    for (i = 0; i < G_N_ELEMENTS(commands); i++)
        g_string_append_printf(s, "  %-14s %s\n", commands[i].name, _(commands[i].summary));
    g_string_append(s, _("\nRun 'handover COMMAND --help' for a command's options."));
    return g_string_free(s, FALSE);
}

/* The options before COMMAND; parsing stops at the first non-option. */
static int
parse_global_options(int *argc, char ***argv)
{
    GOptionEntry entries[] = {
        {"connect", 'c', 0, G_OPTION_ARG_STRING, &connect_uri,
         N_("the daemon to talk to (default: $HANDOVER_DEFAULT_URI, else handover:///system)"),
         N_("URI")},
        {NULL}};
    g_autoptr(GOptionContext) ctx = g_option_context_new(_("COMMAND [OPTION…] [ARG…]"));
    g_autoptr(GError) gerr = NULL;
    g_autofree char *desc = commands_description();

    g_set_prgname("handover");
    g_option_context_set_summary(ctx, _("Manage the guests of a handoverd."));
    g_option_context_set_description(ctx, desc);
    g_option_context_set_strict_posix(ctx, TRUE);
    g_option_context_add_main_entries(ctx, entries, GETTEXT_PACKAGE);
    g_option_context_set_translation_domain(ctx, GETTEXT_PACKAGE);
    if (!g_option_context_parse(ctx, argc, argv, &gerr)) {
        print_error(_("%1$s (see 'handover --help')"), gerr->message);
        return -1;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    const HandoverCommand *cmd;
    int rc;

    (void)setlocale(LC_ALL, "");
    (void)bindtextdomain(GETTEXT_PACKAGE, HO_LOCALEDIR);
    (void)bind_textdomain_codeset(GETTEXT_PACKAGE, "UTF-8");

    if (parse_global_options(&argc, &argv) < 0)
        return EXIT_FAILURE;
    if (argc < 2) {
        print_error(_("no command given (see 'handover --help')"));
        return EXIT_FAILURE;
    }
    if (g_str_equal(argv[1], "help")) {
        g_autofree char *desc = commands_description();

        printf(_("Usage: handover [-c URI] COMMAND [OPTION…] [ARG…]\n\n%1$s\n"), desc);
        return EXIT_SUCCESS;
    }
    if (!(cmd = find_command(argv[1]))) {
        print_error(_("unknown command '%1$s' (see 'handover --help')"), argv[1]);
        return EXIT_FAILURE;
    }
    rc = cmd->run(argc - 1, argv + 1);
    g_free(connect_uri);
    return rc < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
