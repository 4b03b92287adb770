/*
 * URIs, parsed with GLib's GUri and held in a plain struct.
 *
 * User, host, path and fragment are kept decoded; the query is kept as
 * written (so that formatting gives it back unchanged) and decoded into
 * params. GUri is lenient about spaces, so text with whitespace or control
 * characters is refused before it gets there.
 */
#define HO_LOG_MODULE "util.uri"

#include "ho_uri.h"

#include <string.h>

#include "ho_error.h"
#include "ho_i18n.h"
#include "ho_log.h"

static bool
uri_text_clean(const char *text)
{
    const unsigned char *p;

    for (p = (const unsigned char *)text; *p; p++) {
        if (*p <= 0x20 || *p == 0x7f)
            return false;
    }
    return true;
}

/* Decode "a=b&c=d" into params; -1 and an error naming text on a bad escape. */
static int
uri_parse_params(const char *text, const char *query, GHashTable *params)
{
    g_auto(GStrv) items = g_strsplit(query, "&", -1);
    size_t i;

    for (i = 0; items[i]; i++) {
        const char *item = items[i];
        const char *eq = strchr(item, '=');
        g_autofree char *raw_name = NULL;
        char *name;
        char *value;

        if (!*item)
            continue; /* "a=1&&b=2" */
        raw_name = eq ? g_strndup(item, eq - item) : g_strdup(item);
        name = g_uri_unescape_string(raw_name, NULL);
        value = g_uri_unescape_string(eq ? eq + 1 : "", NULL);
        if (!name || !*name || !value) {
            g_free(name);
            g_free(value);
            ho_error_report(HO_ERR_URI, _("invalid URI '%1$s': malformed query parameter '%2$s'"),
                            text, item);
            return -1;
        }
        /* The last of repeated names wins. */
        g_hash_table_insert(params, name, value);
    }
    return 0;
}

HoUri *
ho_uri_parse(const char *text)
{
    g_autoptr(GError) gerr = NULL;
    g_autoptr(GUri) guri = NULL;
    g_autoptr(HoUri) uri = NULL;
    const char *s;

    if (!text || !*text) {
        ho_error_report(HO_ERR_URI, _("invalid URI '%1$s': it is empty"), "");
        return NULL;
    }
    if (!uri_text_clean(text)) {
        ho_error_report(HO_ERR_URI,
                        _("invalid URI '%1$s': it contains a space or a control character"),
                        text);
        return NULL;
    }
    guri = g_uri_parse(text, G_URI_FLAGS_ENCODED_QUERY, &gerr);
    if (!guri) {
        ho_error_report(HO_ERR_URI, _("invalid URI '%1$s': %2$s"), text, gerr->message);
        return NULL;
    }

    uri = g_new0(HoUri, 1);
    uri->params = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    uri->scheme = g_strdup(g_uri_get_scheme(guri));
    s = g_uri_get_user(guri);
    uri->user = s && *s ? g_strdup(s) : NULL;
    /* "handover:///system" has an empty authority: no host. */
    s = g_uri_get_host(guri);
    uri->host = s && *s ? g_strdup(s) : NULL;
    uri->port = g_uri_get_port(guri) > 0 ? g_uri_get_port(guri) : 0;
    s = g_uri_get_path(guri);
    uri->path = g_strdup(s ? s : "");
    uri->query = g_strdup(g_uri_get_query(guri));
    uri->fragment = g_strdup(g_uri_get_fragment(guri));

    if (uri->query && uri_parse_params(text, uri->query, uri->params) < 0)
        return NULL;
    return g_steal_pointer(&uri);
}

/* handover's own schemes are always written with an authority ("//"), even
 * an empty one: "handover:///system", not "handover:/system". */
static bool
uri_scheme_wants_authority(const char *scheme)
{
    return scheme &&
           (g_str_equal(scheme, "handover") || g_str_has_prefix(scheme, "handover+"));
}

char *
ho_uri_format(const HoUri *uri)
{
    const char *host = uri->host;
    const char *path = uri->path ? uri->path : "";
    g_autofree char *fixed_path = NULL;

    if (!host && (uri->user || uri->port > 0 || uri_scheme_wants_authority(uri->scheme)))
        host = "";
    /* With an authority the path must be empty or absolute. */
    if (host && *path && *path != '/')
        path = fixed_path = g_strconcat("/", path, NULL);
    return g_uri_join(G_URI_FLAGS_ENCODED_QUERY, uri->scheme, uri->user, host,
                      uri->port > 0 ? uri->port : -1, path, uri->query, uri->fragment);
}

const char *
ho_uri_get_param(const HoUri *uri, const char *name)
{
    if (!uri || !uri->params || !name)
        return NULL;
    return g_hash_table_lookup(uri->params, name);
}

void
ho_uri_free(HoUri *uri)
{
    if (!uri)
        return;
    g_free(uri->scheme);
    g_free(uri->user);
    g_free(uri->host);
    g_free(uri->path);
    g_free(uri->query);
    g_free(uri->fragment);
    if (uri->params)
        g_hash_table_unref(uri->params);
    g_free(uri);
}

static bool
uri_hostname_valid(const char *host)
{
    const char *p;

    for (p = host; *p; p++) {
        if (!g_ascii_isalnum(*p) && *p != '.' && *p != '-' && *p != '_')
            return false;
    }
    return true;
}

static bool
uri_port_parse(const char *text, int *port)
{
    size_t n = strlen(text);
    int val = 0;
    size_t i;

    if (n == 0 || n > 5)
        return false;
    for (i = 0; i < n; i++) {
        if (!g_ascii_isdigit(text[i]))
            return false;
        val = val * 10 + (text[i] - '0');
    }
    if (val < 1 || val > 65535)
        return false;
    *port = val;
    return true;
}

int
ho_uri_parse_hostport(const char *text, char **host, int *port)
{
    g_autofree char *h = NULL;
    const char *port_text;
    int p;

    if (!text || !*text) {
        ho_error_report(HO_ERR_URI, _("invalid address '%1$s': it is empty"), "");
        return -1;
    }

    if (text[0] == '[') {
        const char *close = strchr(text, ']');

        if (!close) {
            ho_error_report(HO_ERR_URI,
                            _("invalid address '%1$s': missing ']' after the IPv6 address"),
                            text);
            return -1;
        }
        h = g_strndup(text + 1, close - text - 1);
        if (!*h) {
            ho_error_report(HO_ERR_URI, _("invalid address '%1$s': empty host"), text);
            return -1;
        }
        if (!strchr(h, ':') || !g_hostname_is_ip_address(h)) {
            ho_error_report(HO_ERR_URI, _("invalid address '%1$s': '%2$s' is not an IPv6 address"),
                            text, h);
            return -1;
        }
        if (close[1] == '\0') {
            ho_error_report(HO_ERR_URI, _("invalid address '%1$s': missing port"), text);
            return -1;
        }
        if (close[1] != ':') {
            ho_error_report(HO_ERR_URI, _("invalid address '%1$s': expected ':' after ']'"),
                            text);
            return -1;
        }
        port_text = close + 2;
    } else {
        const char *colon = strrchr(text, ':');

        if (!colon) {
            ho_error_report(HO_ERR_URI, _("invalid address '%1$s': missing port"), text);
            return -1;
        }
        h = g_strndup(text, colon - text);
        if (!*h) {
            ho_error_report(HO_ERR_URI, _("invalid address '%1$s': empty host"), text);
            return -1;
        }
        if (strchr(h, ':')) {
            ho_error_report(HO_ERR_URI,
                            _("invalid address '%1$s': an IPv6 address must be written in "
                              "brackets"),
                            text);
            return -1;
        }
        if (!uri_hostname_valid(h)) {
            ho_error_report(HO_ERR_URI, _("invalid address '%1$s': invalid host '%2$s'"), text,
                            h);
            return -1;
        }
        port_text = colon + 1;
    }

    if (!*port_text) {
        ho_error_report(HO_ERR_URI, _("invalid address '%1$s': missing port"), text);
        return -1;
    }
    if (!uri_port_parse(port_text, &p)) {
        ho_error_report(HO_ERR_URI,
                        _("invalid address '%1$s': port '%2$s' is not a number from 1 to 65535"),
                        text, port_text);
        return -1;
    }
    *host = g_steal_pointer(&h);
    *port = p;
    return 0;
}

char *
ho_uri_format_hostport(const char *host, int port)
{
    if (host && strchr(host, ':'))
        return g_strdup_printf("[%s]:%d", host, port);
    return g_strdup_printf("%s:%d", host ? host : "", port);
}
