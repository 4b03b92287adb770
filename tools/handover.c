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
#include <glib-unix.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <stddef.h>
#include <unistd.h>
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
static int cmd_migrate(int argc, char **argv);
static int cmd_domjobinfo(int argc, char **argv);
static int cmd_domjobabort(int argc, char **argv);
static int cmd_migrate_postcopy(int argc, char **argv);

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
    {"migrate", N_("DOMAIN DEST-URI"),
     N_("move a running domain to the daemon at DEST-URI (handover+tcp://HOST[:PORT]/system)"),
     cmd_migrate},
    {"domjobinfo", N_("DOMAIN"), N_("show the progress and statistics of a domain's job"),
     cmd_domjobinfo},
    {"domjobabort", N_("DOMAIN"), N_("abort a domain's migration job"), cmd_domjobabort},
    {"migrate-postcopy", N_("DOMAIN"), N_("switch a domain's running migration to postcopy"),
     cmd_migrate_postcopy},
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

/* ---- migration ---- */

/* Largest values the numeric options take. */
#define BANDWIDTH_MAX_MIB (1024u * 1024u)       /* 1 TiB/s */
#define MAX_DOWNTIME_MAX_MS 2000000u            /* QEMU's own limit */
#define PARALLEL_CONNECTIONS_MAX 255u           /* QEMU's multifd-channels limit */
#define MIGRATE_TIMEOUT_MAX_S (7u * 86400u)
#define MIGRATE_DISKS_MAX 256u                  /* the daemon's limit */

/* An option's value as an integer from min to max: 0, or -1 and an error
 * naming the command, the option and the value. */
static int
parse_uint_option(const char *cmd, const char *option, const char *value, guint64 min,
                  guint64 max, guint64 *out)
{
    guint64 v = 0;
    g_autoptr(GError) gerr = NULL;

    if (!g_ascii_string_to_unsigned(value, 10, min, max, &v, &gerr)) {
        print_error(_("%1$s: invalid value '%2$s' for --%3$s: expected an integer from "
                      "%4$" G_GUINT64_FORMAT " to %5$" G_GUINT64_FORMAT),
                    cmd, value, option, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

/* A byte count as virsh shows it: "1.234 GiB". */
static char *
format_bytes(int64_t bytes)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)bytes;
    size_t i = 0;

    if (bytes < 0)
        return g_strdup("?");
    while (v >= 1024.0 && i + 1 < G_N_ELEMENTS(units)) {
        v /= 1024.0;
        i++;
    }
    return g_strdup_printf("%.3f %s", v, units[i]);
}

/* A byte count for a progress line: "430 MiB", "1.0 GiB". */
static char *
format_bytes_short(int64_t bytes)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)bytes;
    size_t i = 0;

    if (bytes < 0)
        return g_strdup("?");
    while (v >= 1024.0 && i + 1 < G_N_ELEMENTS(units)) {
        v /= 1024.0;
        i++;
    }
    if (i > 0 && v < 9.95)
        return g_strdup_printf("%.1f %s", v, units[i]);
    return g_strdup_printf("%.0f %s", v, units[i]);
}

/* Per cent of total done when remaining is left; -1 when unknown. */
static int
percent_done(int64_t total, int64_t remaining)
{
    if (total <= 0 || remaining < 0)
        return -1;
    if (remaining > total)
        return 0;
    return (int)((total - remaining) * 100 / total);
}

/* What the job moved so far of the guest's memory (or, when the daemon
 * gave no memory figures, of its data), in per cent; -1 when unknown. */
static int
job_percent(const HandoverJobInfo *info)
{
    if (info->memory_total >= 0)
        return percent_done(info->memory_total, info->memory_remaining);
    return percent_done(info->data_total, info->data_remaining);
}

typedef struct {
    GMainLoop *loop;
    HandoverConnect *conn;     /* the migrate connection: the worker's once it runs */
    char *name;                /* as given */
    char *uuid;
    char *dest_uri;
    HandoverMigrateParams params;
    bool verbose;
    bool tty;
    bool line_open;            /* a progress line is on the terminal, not ended */
    int interrupts;            /* Ctrl-C so far */
    bool abort_sent;
    bool abort_pending;        /* asked before the job existed: sent at its first event */
    bool job_seen;
    HandoverJobInfo last;      /* the latest statistics, shown again with a new phase */
    bool shown_completed;      /* the completed line is out */
    bool disk_shown;           /* a disk copy line is out (the mirror phase was seen) */
    bool disk_done;            /* ... and its final line too */
    bool warned;               /* the job's warning is printed */
    bool resume;               /* --postcopy-resume: one recovery attempt */
    bool postcopy_shown;       /* the switch to postcopy was announced */
    bool postcopy_paused;      /* the job's latest phase is postcopy-paused */
    /* the worker's outcome */
    int rc;
    HandoverJobInfo completed;
    char *error;
    bool still_paused;         /* a failed recovery left the job postcopy-paused */
} MigrateState;

/* A job event, carried from the worker thread to the main loop. */
typedef struct {
    MigrateState *st;
    char *event;
    HandoverJobInfo info;
} MigrateEvent;

static void
migrate_end_line(MigrateState *st)
{
    if (st->line_open) {
        printf("\n");
        st->line_open = false;
    }
}

static void
migrate_put_line(MigrateState *st, const char *line)
{
    if (st->tty) {
        /* One line, rewritten in place. */
        printf("\r%s\033[K", line);
        st->line_open = true;
    } else {
        printf("%s\n", line);
    }
    fflush(stdout);
}

/* The disk copy's line; ready: the mirrors all caught up (the job left
 * the mirror phase), whatever the last figures said. */
static void
migrate_show_disks(MigrateState *st, const HandoverJobInfo *info, bool ready)
{
    int64_t total = info->disk_total;
    int64_t processed = ready ? total : info->disk_processed;
    int pct = ready ? 100 : percent_done(total, info->disk_remaining);
    g_autofree char *done_text = NULL;
    g_autofree char *total_text = NULL;
    g_autofree char *line = NULL;

    if (pct < 0 && total > 0 && processed >= 0 && processed <= total)
        pct = (int)(processed * 100 / total);
    if (pct < 0 || total < 0 || processed < 0) {
        line = g_strdup_printf(_("Copying disks: [  ? %%]"));
    } else {
        done_text = format_bytes_short(processed);
        total_text = format_bytes_short(total);
        line = g_strdup_printf(_("Copying disks: [%1$3d %%] %2$s of %3$s"), pct, done_text,
                               total_text);
    }
    st->disk_shown = true;
    migrate_put_line(st, line);
}

/* Postcopy: the guest runs on the destination, which asks for the pages
 * it misses while the rest is pushed. */
static void
migrate_show_postcopy(MigrateState *st, const HandoverJobInfo *info, const char *phase, int pct,
                      const char *processed, const char *remaining)
{
    g_autofree char *line = NULL;

    if (!st->postcopy_shown && g_str_equal(phase, "postcopy")) {
        st->postcopy_shown = true;
        migrate_end_line(st);
        printf(_("Migration: postcopy: the guest runs on the destination now\n"));
    }
    if (g_str_equal(phase, "postcopy-paused"))
        line = g_strdup(_("Migration: postcopy paused"));
    else if (g_str_equal(phase, "postcopy-recover"))
        line = g_strdup(_("Migration: postcopy recovering"));
    else if (pct < 0)
        line = g_strdup_printf(_("Migration: postcopy [  ? %%]"));
    else if (info->postcopy_requests >= 0)
        line = g_strdup_printf(_("Migration: postcopy [%1$3d %%] %2$s transferred, %3$s "
                                 "remaining, %4$" G_GINT64_FORMAT " page requests"),
                               pct, processed, remaining, info->postcopy_requests);
    else
        line = g_strdup_printf(_("Migration: postcopy [%1$3d %%] %2$s transferred, %3$s "
                                 "remaining"),
                               pct, processed, remaining);
    migrate_put_line(st, line);
    if (g_str_equal(phase, "postcopy-paused"))
        migrate_end_line(st);
}

static void
migrate_show_progress(MigrateState *st, const HandoverJobInfo *info, const char *event)
{
    const char *phase = *info->phase ? info->phase : event;
    int pct = job_percent(info);
    g_autofree char *processed = format_bytes(
        info->memory_processed >= 0 ? info->memory_processed : info->data_processed);
    g_autofree char *remaining = format_bytes(
        info->memory_remaining >= 0 ? info->memory_remaining : info->data_remaining);
    g_autofree char *line = NULL;

    if (g_str_equal(phase, "mirror")) {
        migrate_show_disks(st, info, false);
        return;
    }
    if (st->disk_shown && !st->disk_done) {
        /* The disks are copied (and kept in step) once RAM moves: close
         * their line before the memory's. */
        st->disk_done = true;
        if (!g_str_equal(phase, "failed") && !g_str_equal(phase, "cancelled"))
            migrate_show_disks(st, info, true);
        migrate_end_line(st);
    }
    if (g_str_equal(event, "completed")) {
        pct = 100;
        st->shown_completed = true;
    }
    if (g_str_has_prefix(phase, "postcopy")) {
        migrate_show_postcopy(st, info, phase, pct, processed, remaining);
        return;
    }
    if (pct < 0)
        line = g_strdup_printf(_("Migration: [  ? %%] phase %1$s"), phase);
    else
        line = g_strdup_printf(_("Migration: [%1$3d %%] %2$s transferred, %3$s remaining, "
                                 "phase %4$s"),
                               pct, processed, remaining, phase);
    migrate_put_line(st, line);
}

/* The job's warnings, whether verbose or not: each "warning" event
 * (always), else those a job info lists, when none was printed yet. */
static void
migrate_show_warning(MigrateState *st, const HandoverJobInfo *info, bool event)
{
    if (!*info->warning || (st->warned && !event))
        return;
    st->warned = true;
    migrate_end_line(st);
    g_printerr(_("warning: %1$s\n"), info->warning);
}

static void migrate_send_abort(MigrateState *st);

static gboolean
migrate_event_main(gpointer data)
{
    MigrateEvent *ev = data;
    MigrateState *st = ev->st;

    st->job_seen = true;
    if (st->abort_pending && !st->abort_sent)
        migrate_send_abort(st);
    if (*ev->info.phase && !g_str_equal(ev->event, "warning"))
        st->postcopy_paused = g_str_equal(ev->info.phase, "postcopy-paused");
    if (g_str_equal(ev->event, "phase")) {
        /* A phase event says only the phase: keep the numbers known. */
        g_strlcpy(st->last.phase, ev->info.phase, sizeof(st->last.phase));
    } else if (g_str_equal(ev->event, "progress") || g_str_equal(ev->event, "completed")) {
        st->last = ev->info;
    }
    migrate_show_warning(st, &ev->info, g_str_equal(ev->event, "warning"));
    if (st->verbose && (g_str_equal(ev->event, "progress") || g_str_equal(ev->event, "phase") ||
                        g_str_equal(ev->event, "completed")))
        migrate_show_progress(st, &st->last, ev->event);
    return G_SOURCE_REMOVE;
}

static void
migrate_event_free(gpointer data)
{
    MigrateEvent *ev = data;

    g_free(ev->event);
    g_free(ev);
}

/* In the worker thread, during the migrate call. */
static void
on_migrate_job(HandoverConnect *conn, const char *name, const char *uuid, const char *event,
               const HandoverJobInfo *info, void *opaque)
{
    MigrateState *st = opaque;
    MigrateEvent *ev;

    if (g_strcmp0(uuid, st->uuid) != 0)
        return;
    ev = g_new0(MigrateEvent, 1);
    ev->st = st;
    ev->event = g_strdup(event);
    ev->info = *info;
    /* The main loop owns it from here. */
    g_idle_add_full(G_PRIORITY_DEFAULT_IDLE, migrate_event_main, ev, migrate_event_free);
}

static gboolean
migrate_done_main(gpointer data)
{
    MigrateState *st = data;

    g_main_loop_quit(st->loop);
    return G_SOURCE_REMOVE;
}

static gpointer
migrate_worker(gpointer data)
{
    MigrateState *st = data;

    handover_job_info_init(&st->completed);
    if (st->resume)
        st->rc = handover_domain_migrate_recover(st->conn, st->uuid, st->dest_uri,
                                                 &st->completed);
    else
        st->rc = handover_domain_migrate(st->conn, st->uuid, st->dest_uri, &st->params,
                                         &st->completed);
    if (st->rc < 0) {
        const HandoverError *err = handover_last_error();

        st->error = g_strdup(err && err->message ? err->message : _("unknown error"));
        /* A failed recovery attempt is answered before the job's phase
         * events reach us: ask where the job stands, so that a job still
         * paused says how to go on. */
        if (st->resume) {
            HandoverJobInfo info;

            handover_job_info_init(&info);
            if (handover_domain_get_job_info(st->conn, st->uuid, false, &info) == 0)
                st->still_paused = g_str_equal(info.phase, "postcopy-paused");
        }
    }
    g_idle_add(migrate_done_main, st);
    return NULL;
}

/* domain.jobabort on a connection of the main thread's own. */
static void
migrate_send_abort(MigrateState *st)
{
    g_autoptr(HandoverConnect) conn = handover_connect_open(connect_uri);

    if (!conn || handover_domain_abort_job(conn, st->uuid) < 0) {
        const HandoverError *err = handover_last_error();

        /* Not started yet: abort as soon as it has. */
        if (!st->job_seen && err && err->code == HANDOVER_ERR_OPERATION_INVALID) {
            st->abort_pending = true;
            return;
        }
        migrate_end_line(st);
        print_api_error();
        return;
    }
    st->abort_sent = true;
}

static gboolean
migrate_on_sigint(gpointer data)
{
    MigrateState *st = data;

    st->interrupts++;
    migrate_end_line(st);
    if (st->interrupts > 1) {
        print_error(_("migrate: interrupted again: not waiting; the daemon finishes or "
                      "unwinds the job on its own"));
        fflush(stderr);
        _exit(EXIT_FAILURE);
    }
    printf(_("Migration: aborting (Ctrl-C again to stop waiting)\n"));
    fflush(stdout);
    migrate_send_abort(st);
    return G_SOURCE_CONTINUE;
}

/* The storage copy options into params (*disks holds the disk names it
 * points to): 0, or -1 and an error naming the option. */
static int
migrate_storage_options(bool copy_all, bool copy_inc, bool copy_sync, const char *migrate_disks,
                        const char *disks_port, const char *disks_uri,
                        HandoverMigrateParams *params, char ***disks)
{
    const char *needs = NULL;
    guint64 v = 0;
    size_t i, j;

    if (copy_all && copy_inc) {
        print_error(_("%1$s: --copy-storage-all and --copy-storage-inc cannot be used "
                      "together"),
                    "migrate");
        return -1;
    }
    if (!copy_all && !copy_inc) {
        if (copy_sync)
            needs = "copy-storage-synchronous-writes";
        else if (migrate_disks)
            needs = "migrate-disks";
        else if (disks_port)
            needs = "disks-port";
        else if (disks_uri)
            needs = "disks-uri";
        if (needs) {
            print_error(_("%1$s: --%2$s needs --copy-storage-all or --copy-storage-inc"),
                        "migrate", needs);
            return -1;
        }
    }
    if (disks_port && disks_uri) {
        print_error(_("%1$s: --disks-port and --disks-uri cannot be used together (give the "
                      "port in the URI)"),
                    "migrate");
        return -1;
    }
    params->copy_storage_all = copy_all;
    params->copy_storage_inc = copy_inc;
    params->copy_storage_synchronous_writes = copy_sync;
    if (migrate_disks) {
        g_auto(GStrv) names = g_strsplit(migrate_disks, ",", -1);

        if (!names[0] || g_strv_length(names) > MIGRATE_DISKS_MAX) {
            print_error(_("%1$s: invalid value '%2$s' for --%3$s: expected from 1 to %4$u "
                          "disk names separated by commas"),
                        "migrate", migrate_disks, "migrate-disks", MIGRATE_DISKS_MAX);
            return -1;
        }
        for (i = 0; names[i]; i++) {
            if (!*names[i]) {
                print_error(_("%1$s: invalid value '%2$s' for --%3$s: a disk name is empty"),
                            "migrate", migrate_disks, "migrate-disks");
                return -1;
            }
            for (j = 0; j < i; j++) {
                if (g_str_equal(names[i], names[j])) {
                    print_error(_("%1$s: invalid value '%2$s' for --%3$s: disk '%4$s' is named "
                                  "twice"),
                                "migrate", migrate_disks, "migrate-disks", names[i]);
                    return -1;
                }
            }
        }
        *disks = g_steal_pointer(&names);
        params->migrate_disks = (const char *const *)*disks;
    }
    if (disks_port) {
        if (parse_uint_option("migrate", "disks-port", disks_port, 1, 65535, &v) < 0)
            return -1;
        params->disks_port = (unsigned int)v;
    }
    if (disks_uri) {
        if (!*disks_uri) {
            print_error(_("%1$s: invalid value '' for --%2$s: it must not be empty"), "migrate",
                        "disks-uri");
            return -1;
        }
        params->disks_uri = disks_uri;
    }
    return 0;
}

static int
cmd_migrate(int argc, char **argv)
{
    gboolean live = FALSE, persistent = FALSE, undefinesource = FALSE, paused = FALSE;
    gboolean auto_converge = FALSE, parallel = FALSE, timeout_abort = FALSE, unsafe = FALSE;
    gboolean verbose = FALSE;
    g_autofree char *dname = NULL;
    g_autofree char *xml_file = NULL;
    g_autofree char *migrateuri = NULL;
    g_autofree char *listen_address = NULL;
    g_autofree char *bandwidth = NULL;
    g_autofree char *max_downtime = NULL;
    g_autofree char *parallel_connections = NULL;
    g_autofree char *timeout = NULL;
    g_autofree char *record = NULL;
    gboolean copy_all = FALSE, copy_inc = FALSE, copy_sync = FALSE;
    g_autofree char *migrate_disks = NULL;
    g_autofree char *disks_port = NULL;
    g_autofree char *disks_uri = NULL;
    gboolean postcopy = FALSE, postcopy_after_precopy = FALSE, postcopy_resume = FALSE;
    g_autofree char *postcopy_bandwidth = NULL;
    g_autofree char *mode = NULL;
    GOptionEntry entries[] = {
        {"live", 0, 0, G_OPTION_ARG_NONE, &live,
         N_("keep the guest running while its memory moves"), NULL},
        {"persistent", 0, 0, G_OPTION_ARG_NONE, &persistent,
         N_("define the domain on the destination"), NULL},
        {"undefinesource", 0, 0, G_OPTION_ARG_NONE, &undefinesource,
         N_("undefine the domain on the source once it moved"), NULL},
        {"paused", 0, 0, G_OPTION_ARG_NONE, &paused,
         N_("leave the domain paused on the destination"), NULL},
        {"dname", 0, 0, G_OPTION_ARG_STRING, &dname,
         N_("the domain's name on the destination"), N_("NAME")},
        {"xml", 0, 0, G_OPTION_ARG_FILENAME, &xml_file,
         N_("the domain XML to use on the destination"), N_("FILE")},
        {"migrateuri", 0, 0, G_OPTION_ARG_STRING, &migrateuri,
         N_("where the migration stream goes (tcp://HOST[:PORT])"), N_("URI")},
        {"listen-address", 0, 0, G_OPTION_ARG_STRING, &listen_address,
         N_("the address the destination QEMU listens on"), N_("ADDR")},
        {"bandwidth", 0, 0, G_OPTION_ARG_STRING, &bandwidth,
         N_("limit the migration to this many MiB/s"), N_("MiB/s")},
        {"max-downtime", 0, 0, G_OPTION_ARG_STRING, &max_downtime,
         N_("the longest pause of the guest at the switchover"), N_("ms")},
        {"auto-converge", 0, 0, G_OPTION_ARG_NONE, &auto_converge,
         N_("slow the guest's vCPUs down when it dirties memory too fast"), NULL},
        {"parallel", 0, 0, G_OPTION_ARG_NONE, &parallel,
         N_("send memory over several connections at once"), NULL},
        {"parallel-connections", 0, 0, G_OPTION_ARG_STRING, &parallel_connections,
         N_("how many connections --parallel uses"), N_("N")},
        {"timeout", 0, 0, G_OPTION_ARG_STRING, &timeout,
         N_("after SECONDS, pause the guest so the migration can finish"), N_("SECONDS")},
        {"timeout-abort", 0, 0, G_OPTION_ARG_NONE, &timeout_abort,
         N_("abort instead of pausing the guest when --timeout expires"), NULL},
        {"unsafe", 0, 0, G_OPTION_ARG_NONE, &unsafe,
         N_("migrate even with a disk cache mode that is unsafe for shared storage"), NULL},
        {"verbose", 0, 0, G_OPTION_ARG_NONE, &verbose, N_("show the migration's progress"),
         NULL},
        {"record", 0, 0, G_OPTION_ARG_FILENAME, &record,
         N_("record the job's QMP exchanges into FILE (on the source host)"), N_("FILE")},
        {"copy-storage-all", 0, 0, G_OPTION_ARG_NONE, &copy_all,
         N_("copy the domain's local disks to the destination"), NULL},
        {"copy-storage-inc", 0, 0, G_OPTION_ARG_NONE, &copy_inc,
         N_("copy only the top image of each disk; the destination has the backing chain"),
         NULL},
        {"copy-storage-synchronous-writes", 0, 0, G_OPTION_ARG_NONE, &copy_sync,
         N_("complete the guest's disk writes only once the destination has them too"), NULL},
        {"migrate-disks", 0, 0, G_OPTION_ARG_STRING, &migrate_disks,
         N_("copy only these disks (the others must be shared)"), N_("vda,vdb,...")},
        {"disks-port", 0, 0, G_OPTION_ARG_STRING, &disks_port,
         N_("the port of the destination's NBD server for the disk copy"), N_("PORT")},
        {"disks-uri", 0, 0, G_OPTION_ARG_STRING, &disks_uri,
         N_("where the disk copy goes (tcp://HOST[:PORT] or unix:PATH)"), N_("URI")},
        {"postcopy", 0, 0, G_OPTION_ARG_NONE, &postcopy,
         N_("allow switching to postcopy (see 'handover migrate-postcopy')"), NULL},
        {"postcopy-after-precopy", 0, 0, G_OPTION_ARG_NONE, &postcopy_after_precopy,
         N_("switch to postcopy after the first full pass over the memory"), NULL},
        {"postcopy-bandwidth", 0, 0, G_OPTION_ARG_STRING, &postcopy_bandwidth,
         N_("limit the migration to this many MiB/s once in postcopy"), N_("MiB/s")},
        {"postcopy-resume", 0, 0, G_OPTION_ARG_NONE, &postcopy_resume,
         N_("recover a migration paused in postcopy (DEST-URI: the same destination daemon)"),
         NULL},
        {"mode", 0, 0, G_OPTION_ARG_STRING, &mode,
         N_("normal, or cpr-transfer: replace the domain's QEMU on this host (no DEST-URI)"),
         N_("MODE")},
        {NULL}};
    g_auto(GStrv) disks = NULL;
    g_autofree char *xml = NULL;
    g_autofree char *record_path = NULL;
    g_autoptr(HandoverDomain) dom = NULL;
    g_autoptr(GThread) worker = NULL;
    MigrateState st = {0};
    bool cpr = false;
    guint64 v = 0;
    guint sigint_id;
    int rc;

    if (parse_options("migrate", entries, &argc, &argv) < 0)
        return -1;
    {
        /* The options that mean nothing to a recovery or a CPR transfer. */
        const struct {
            const char *name;
            bool given;
            bool cpr_ok;
        } given[] = {
            {"live", live, true},
            {"persistent", persistent, false},
            {"undefinesource", undefinesource, false},
            {"paused", paused, false},
            {"dname", dname != NULL, false},
            {"xml", xml_file != NULL, true},
            {"migrateuri", migrateuri != NULL, false},
            {"listen-address", listen_address != NULL, false},
            {"bandwidth", bandwidth != NULL, true},
            {"max-downtime", max_downtime != NULL, true},
            {"auto-converge", auto_converge, false},
            {"parallel", parallel, false},
            {"parallel-connections", parallel_connections != NULL, false},
            {"timeout", timeout != NULL, true},
            {"timeout-abort", timeout_abort, true},
            {"unsafe", unsafe, true},
            {"record", record != NULL, true},
            {"copy-storage-all", copy_all, false},
            {"copy-storage-inc", copy_inc, false},
            {"copy-storage-synchronous-writes", copy_sync, false},
            {"migrate-disks", migrate_disks != NULL, false},
            {"disks-port", disks_port != NULL, false},
            {"disks-uri", disks_uri != NULL, false},
            {"postcopy", postcopy, false},
            {"postcopy-after-precopy", postcopy_after_precopy, false},
            {"postcopy-bandwidth", postcopy_bandwidth != NULL, false},
            {"mode", mode != NULL, true},
        };
        size_t i;

        if (mode && !g_str_equal(mode, "normal") && !g_str_equal(mode, "cpr-transfer")) {
            print_error(_("%1$s: invalid value '%2$s' for --%3$s: expected 'normal' or "
                          "'cpr-transfer'"),
                        "migrate", mode, "mode");
            return -1;
        }
        if (!postcopy && postcopy_after_precopy) {
            print_error(_("%1$s: --%2$s needs --postcopy"), "migrate", "postcopy-after-precopy");
            return -1;
        }
        if (!postcopy && postcopy_bandwidth) {
            print_error(_("%1$s: --%2$s needs --postcopy"), "migrate", "postcopy-bandwidth");
            return -1;
        }
        for (i = 0; postcopy_resume && i < G_N_ELEMENTS(given); i++) {
            if (given[i].given) {
                print_error(_("%1$s: --postcopy-resume cannot be used with --%2$s: the paused "
                              "job goes on with the options it was started with"),
                            "migrate", given[i].name);
                return -1;
            }
        }
        st.resume = postcopy_resume;
        if (mode && g_str_equal(mode, "cpr-transfer")) {
            for (i = 0; i < G_N_ELEMENTS(given); i++) {
                if (given[i].given && !given[i].cpr_ok) {
                    print_error(_("%1$s: --mode cpr-transfer cannot be used with --%2$s: it "
                                  "replaces the domain's QEMU on this host"),
                                "migrate", given[i].name);
                    return -1;
                }
            }
            if (argc < 2) {
                print_error(_("%1$s: missing %2$s (see 'handover %1$s --help')"), "migrate",
                            _("DOMAIN"));
                return -1;
            }
            if (argc > 2) {
                print_error(_("%1$s: --mode cpr-transfer takes no DEST-URI ('%2$s'): it "
                              "replaces the domain's QEMU on this host"),
                            "migrate", argv[2]);
                return -1;
            }
            cpr = true;
        }
    }
    if (!cpr && argc < 3) {
        print_error(_("%1$s: missing %2$s (see 'handover %1$s --help')"), "migrate",
                    argc < 2 ? _("DOMAIN and DEST-URI") : _("DEST-URI"));
        return -1;
    }
    if (argc > 3) {
        print_error(_("%1$s: unexpected argument '%2$s'"), "migrate", argv[3]);
        return -1;
    }

    handover_migrate_params_init(&st.params);
    st.params.live = live;
    st.params.persistent = persistent;
    st.params.undefine_source = undefinesource;
    st.params.paused = paused;
    st.params.auto_converge = auto_converge;
    st.params.parallel = parallel;
    st.params.timeout_abort = timeout_abort;
    st.params.unsafe = unsafe;
    if (dname && !*dname) {
        print_error(_("%1$s: invalid value '' for --%2$s: it must not be empty"), "migrate",
                    "dname");
        return -1;
    }
    st.params.dname = dname;
    st.params.migrate_uri = migrateuri;
    st.params.listen_address = listen_address;
    if (bandwidth) {
        if (parse_uint_option("migrate", "bandwidth", bandwidth, 1, BANDWIDTH_MAX_MIB, &v) < 0)
            return -1;
        st.params.has_bandwidth = true;
        st.params.bandwidth_mib = v;
    }
    if (max_downtime) {
        if (parse_uint_option("migrate", "max-downtime", max_downtime, 1, MAX_DOWNTIME_MAX_MS,
                              &v) < 0)
            return -1;
        st.params.has_max_downtime = true;
        st.params.max_downtime_ms = v;
    }
    if (parallel_connections) {
        if (!parallel) {
            print_error(_("%1$s: --parallel-connections needs --parallel"), "migrate");
            return -1;
        }
        if (parse_uint_option("migrate", "parallel-connections", parallel_connections, 1,
                              PARALLEL_CONNECTIONS_MAX, &v) < 0)
            return -1;
        st.params.parallel_connections = (unsigned int)v;
    }
    if (timeout) {
        if (parse_uint_option("migrate", "timeout", timeout, 1, MIGRATE_TIMEOUT_MAX_S, &v) < 0)
            return -1;
        st.params.timeout_s = (unsigned int)v;
    } else if (timeout_abort) {
        print_error(_("%1$s: --timeout-abort needs --timeout"), "migrate");
        return -1;
    }
    if (migrate_storage_options(copy_all, copy_inc, copy_sync, migrate_disks, disks_port,
                                disks_uri, &st.params, &disks) < 0)
        return -1;
    st.params.postcopy = postcopy;
    st.params.postcopy_after_precopy = postcopy_after_precopy;
    if (postcopy_bandwidth) {
        if (parse_uint_option("migrate", "postcopy-bandwidth", postcopy_bandwidth, 1,
                              BANDWIDTH_MAX_MIB, &v) < 0)
            return -1;
        st.params.has_postcopy_bandwidth = true;
        st.params.postcopy_bandwidth_mib = v;
    }
    st.params.mode = mode;
    if (xml_file) {
        if (!(xml = read_xml_file(xml_file)))
            return -1;
        st.params.xml = xml;
    }
    if (record) {
        /* The daemon resolves paths from its own directory, not ours. */
        record_path = g_canonicalize_filename(record, NULL);
        st.params.record_path = record_path;
    }

    if (!(dom = open_domain(argv[1], &st.conn)))
        return -1;
    st.name = argv[1];
    st.uuid = (char *)handover_domain_get_uuid(dom);
    st.dest_uri = cpr ? NULL : argv[2];
    st.verbose = verbose;
    st.tty = isatty(STDOUT_FILENO);
    handover_job_info_init(&st.last);
    if (handover_connect_register_job(st.conn, on_migrate_job, &st) < 0) {
        print_api_error();
        handover_connect_close(st.conn);
        return -1;
    }

    /* The call blocks until the job ends: it runs in a thread of its own
     * (with the connection, one connection per thread), and this one
     * handles Ctrl-C and shows the progress. */
    st.loop = g_main_loop_new(NULL, FALSE);
    sigint_id = g_unix_signal_add(SIGINT, migrate_on_sigint, &st);
    worker = g_thread_new("migrate", migrate_worker, &st);
    g_main_loop_run(st.loop);
    (void)g_thread_join(g_steal_pointer(&worker));
    g_source_remove(sigint_id);
    /* Events the worker queued before it ended. */
    while (g_main_context_iteration(NULL, FALSE))
        ;
    g_main_loop_unref(st.loop);
    handover_connect_close(st.conn);

    migrate_show_warning(&st, &st.completed, false);
    if (st.rc == 0) {
        if (st.verbose && !st.shown_completed) {
            migrate_show_progress(&st, &st.completed, "completed");
            migrate_end_line(&st);
        }
        rc = 0;
    } else {
        migrate_end_line(&st);
        if (st.postcopy_paused || st.still_paused) {
            /* The job lives on in the daemon: say how to go on. A failed
             * recovery attempt also says why it failed. */
            if (st.resume)
                print_error("%s", st.error);
            print_error(_("postcopy paused: recoverable with handover migrate "
                          "--postcopy-resume %1$s %2$s"),
                        st.name, st.dest_uri);
        } else {
            if (st.abort_sent || st.abort_pending) {
                printf(_("Migration: cancelled\n"));
                fflush(stdout);
            }
            print_error("%s", st.error);
        }
        rc = -1;
    }
    g_free(st.error);
    return rc;
}

/* ---- job information ---- */

static const char *
job_type(const HandoverJobInfo *info)
{
    if (g_str_equal(info->phase, "completed"))
        return _("Completed");
    if (g_str_equal(info->phase, "failed"))
        return _("Failed");
    if (g_str_equal(info->phase, "cancelled"))
        return _("Cancelled");
    return _("Unbounded");
}

static void
print_job_ms(const char *label, int64_t ms)
{
    if (ms >= 0)
        printf("%-21s %-12" G_GINT64_FORMAT " %s\n", label, ms, "ms");
}

static void
print_job_bytes(const char *label, int64_t bytes)
{
    g_autofree char *text = NULL;

    if (bytes < 0)
        return;
    text = format_bytes(bytes);
    printf("%-21s %s\n", label, text);
}

/* Microseconds as milliseconds with one decimal: "3.1". */
static char *
format_us_as_ms(int64_t us)
{
    return g_strdup_printf("%" G_GINT64_FORMAT ".%" G_GINT64_FORMAT, (us + 50) / 1000,
                           ((us + 50) % 1000) / 100);
}

/* "Switchover: 3.1 ms (QEMU 2.4 ms, handover 0.7 ms)": the orchestrator's
 * share of the guest's pause, from QEMU's pre-switchover to
 * migrate-continue, split into waiting for QEMU and its own work. */
static void
print_switchover(const HandoverJobInfo *info)
{
    g_autofree char *total = NULL;
    g_autofree char *qemu = NULL;
    g_autofree char *own = NULL;
    g_autofree char *split = NULL;

    if (info->switchover_us < 0)
        return;
    total = format_us_as_ms(info->switchover_us);
    if (info->switchover_qemu_us < 0 || info->switchover_own_us < 0) {
        printf("%-21s %s ms\n", _("Switchover:"), total);
        return;
    }
    qemu = format_us_as_ms(info->switchover_qemu_us);
    own = format_us_as_ms(info->switchover_own_us);
    split = g_strdup_printf(_("%1$s ms (QEMU %2$s ms, handover %3$s ms)"), total, qemu, own);
    printf("%-21s %s\n", _("Switchover:"), split);
}

static void
print_job_info(const HandoverJobInfo *info)
{
    printf("%-21s %s\n", _("Job type:"), job_type(info));
    if (*info->side)
        printf("%-21s %s\n", _("Operation:"),
               g_str_equal(info->side, "dst") || g_str_equal(info->side, "destination")
                   ? _("Incoming migration")
                   : _("Outgoing migration"));
    if (*info->phase)
        printf("%-21s %s\n", _("Phase:"), info->phase);
    print_job_ms(_("Time elapsed:"), info->elapsed_ms);
    print_job_ms(_("Setup time:"), info->setup_ms);
    print_job_bytes(_("Data processed:"), info->data_processed);
    print_job_bytes(_("Data remaining:"), info->data_remaining);
    print_job_bytes(_("Data total:"), info->data_total);
    print_job_bytes(_("Memory processed:"), info->memory_processed);
    print_job_bytes(_("Memory remaining:"), info->memory_remaining);
    print_job_bytes(_("Memory total:"), info->memory_total);
    if (info->bandwidth_bps >= 0) {
        g_autofree char *bw = format_bytes(info->bandwidth_bps);

        printf("%-21s %s/s\n", _("Memory bandwidth:"), bw);
    }
    if (info->dirty_rate_pps >= 0)
        printf("%-21s %-12" G_GINT64_FORMAT " %s\n", _("Dirty rate:"), info->dirty_rate_pps,
               _("pages/s"));
    if (info->iteration >= 0)
        printf("%-21s %" G_GINT64_FORMAT "\n", _("Iteration:"), info->iteration);
    print_job_ms(_("Expected downtime:"), info->expected_downtime_ms);
    print_job_ms(_("Downtime limit:"), info->downtime_limit_ms);
    print_job_ms(_("Downtime:"), info->downtime_ms);
    print_job_ms(_("Total time:"), info->total_ms);
    print_job_ms(_("Orchestrator time:"), info->orchestrator_ms);
    print_job_bytes(_("Disk processed:"), info->disk_processed);
    print_job_bytes(_("Disk remaining:"), info->disk_remaining);
    print_job_bytes(_("Disk total:"), info->disk_total);
    if (info->disk_bandwidth_bps >= 0) {
        g_autofree char *bw = format_bytes(info->disk_bandwidth_bps);

        printf("%-21s %s/s\n", _("Disk bandwidth:"), bw);
    }
    print_switchover(info);
    if (info->postcopy_requests >= 0)
        printf("%-21s %" G_GINT64_FORMAT "\n", _("Postcopy requests:"), info->postcopy_requests);
    print_job_bytes(_("Postcopy data:"), info->postcopy_bytes);
    if (g_str_equal(info->phase, "postcopy-paused"))
        printf("%-21s %s\n", _("Postcopy:"),
               _("paused, recoverable with 'handover migrate --postcopy-resume'"));
    if (*info->warning)
        printf("%-21s %s\n", _("Warning:"), info->warning);
    if (*info->error)
        printf("%-21s %s\n", _("Error:"), info->error);
}

static void
print_job_json(const HandoverJobInfo *info)
{
    static const struct {
        const char *key;
        size_t offset;
    } numbers[] = {
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
        {"switchover_us", offsetof(HandoverJobInfo, switchover_us)},
        {"switchover_qemu_us", offsetof(HandoverJobInfo, switchover_qemu_us)},
        {"switchover_own_us", offsetof(HandoverJobInfo, switchover_own_us)},
        {"postcopy_requests", offsetof(HandoverJobInfo, postcopy_requests)},
        {"postcopy_bytes", offsetof(HandoverJobInfo, postcopy_bytes)},
        {"downtime_limit_ms", offsetof(HandoverJobInfo, downtime_limit_ms)},
    };
    g_autoptr(GString) out = g_string_new("{\n  \"phase\": ");
    size_t i;

    json_write_string(out, info->phase);
    g_string_append(out, ",\n  \"side\": ");
    json_write_string(out, info->side);
    for (i = 0; i < G_N_ELEMENTS(numbers); i++) {
        int64_t v = *(const int64_t *)((const char *)info + numbers[i].offset);

        if (v >= 0)
            g_string_append_printf(out, ",\n  \"%s\": %" G_GINT64_FORMAT, numbers[i].key, v);
    }
    if (*info->warning) {
        g_string_append(out, ",\n  \"warning\": ");
        json_write_string(out, info->warning);
    }
    if (*info->error) {
        g_string_append(out, ",\n  \"error\": ");
        json_write_string(out, info->error);
    }
    g_string_append(out, "\n}");
    printf("%s\n", out->str);
}

static int
cmd_domjobinfo(int argc, char **argv)
{
    gboolean completed = FALSE;
    gboolean json = FALSE;
    GOptionEntry entries[] = {
        {"completed", 0, 0, G_OPTION_ARG_NONE, &completed,
         N_("show the last job that ended instead of the running one"), NULL},
        {"json", 0, 0, G_OPTION_ARG_NONE, &json, N_("print JSON"), NULL},
        {NULL}};
    g_autoptr(HandoverConnect) conn = NULL;
    HandoverJobInfo info;
    const char *name;

    if (parse_options("domjobinfo", entries, &argc, &argv) < 0 ||
        single_argument("domjobinfo", _("DOMAIN"), argc, argv, &name) < 0)
        return -1;
    if (!(conn = open_connection()))
        return -1;
    handover_job_info_init(&info);
    if (handover_domain_get_job_info(conn, name, completed, &info) < 0) {
        print_api_error();
        return -1;
    }
    if (json)
        print_job_json(&info);
    else
        print_job_info(&info);
    return 0;
}

static int
cmd_domjobabort(int argc, char **argv)
{
    gboolean postcopy = FALSE;
    GOptionEntry entries[] = {
        {"postcopy", 0, 0, G_OPTION_ARG_NONE, &postcopy,
         N_("pause a postcopy migration instead (it stays recoverable with 'handover migrate "
            "--postcopy-resume')"),
         NULL},
        {NULL}};
    g_autoptr(HandoverConnect) conn = NULL;
    const char *name;

    if (parse_options("domjobabort", entries, &argc, &argv) < 0 ||
        single_argument("domjobabort", _("DOMAIN"), argc, argv, &name) < 0)
        return -1;
    if (!(conn = open_connection()))
        return -1;
    if (handover_domain_abort_job_flags(conn, name,
                                        postcopy ? HANDOVER_ABORT_JOB_POSTCOPY : 0) < 0) {
        print_api_error();
        return -1;
    }
    return 0;
}

static int
cmd_migrate_postcopy(int argc, char **argv)
{
    GOptionEntry entries[] = {{NULL}};
    g_autoptr(HandoverConnect) conn = NULL;
    const char *name;

    if (parse_options("migrate-postcopy", entries, &argc, &argv) < 0 ||
        single_argument("migrate-postcopy", _("DOMAIN"), argc, argv, &name) < 0)
        return -1;
    if (!(conn = open_connection()))
        return -1;
    if (handover_domain_migrate_postcopy(conn, name) < 0) {
        print_api_error();
        return -1;
    }
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
        g_string_append_printf(s, "  %-16s %s\n", commands[i].name, _(commands[i].summary));
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
