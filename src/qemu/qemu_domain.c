/*
 * Domain definition: parse and format the domain XML subset (libxml2).
 */
#define HO_LOG_MODULE "qemu.domain"

#include "qemu_domain.h"

#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/tree.h>
#include <stdarg.h>
#include <string.h>

#include "ho_error.h"
#include "ho_file.h"
#include "ho_i18n.h"
#include "ho_log.h"

/* Deepest kept subtree; libxml2 itself stops at 256 levels. */
#define KEEP_DEPTH_MAX 64
/* Most vCPUs we accept (QEMU 10.0's q35 limit). */
#define VCPUS_MAX 4096
/* Longest disk target name: "vd" or "sd" and up to 4 letters. */
#define TARGET_LETTERS_MAX 4
/* AHCI controllers have 6 ports; we add up to 4 controllers. */
#define SATA_PORTS 6
#define SATA_DISKS_MAX (4 * SATA_PORTS)
/* virtio-scsi: we use scsi-id 0..255 on one controller. */
#define SCSI_DISKS_MAX 256
/* ISA serial ports COM1..COM4. */
#define SERIAL_PORTS 4
#define DISK_SERIAL_MAX 64
/* A serial port whose number is assigned after all are parsed. */
#define PORT_UNSET G_MAXUINT

struct _QemuDomainXmlNode {
    char *name;
    GPtrArray *attrs;    /* name, value, name, value, ... (char *) */
    char *text;          /* content of a text-only element, or NULL */
    GPtrArray *children; /* QemuDomainXmlNode, or NULL */
    GPtrArray *raw;      /* <metadata>: children already serialized, or NULL */
};

/* ---- enum string tables ---- */

static const char *const virt_type_names[] = {"kvm", "qemu"};
G_STATIC_ASSERT(G_N_ELEMENTS(virt_type_names) == QEMU_DOMAIN_VIRT_LAST);

static const char *const cpu_mode_names[] = {"", "host-passthrough", "host-model", "custom"};
G_STATIC_ASSERT(G_N_ELEMENTS(cpu_mode_names) == QEMU_DOMAIN_CPU_MODE_LAST);

static const char *const cpu_feature_policy_names[] = {"force", "require", "optional", "disable",
                                                       "forbid"};
G_STATIC_ASSERT(G_N_ELEMENTS(cpu_feature_policy_names) == QEMU_DOMAIN_CPU_FEATURE_LAST);

static const char *const lifecycle_names[] = {
    "destroy", "restart", "preserve", "rename-restart", "coredump-destroy", "coredump-restart"};
G_STATIC_ASSERT(G_N_ELEMENTS(lifecycle_names) == QEMU_DOMAIN_LIFECYCLE_LAST);

static const char *const disk_type_names[] = {"file", "block"};
G_STATIC_ASSERT(G_N_ELEMENTS(disk_type_names) == QEMU_DOMAIN_DISK_TYPE_LAST);

static const char *const disk_format_names[] = {"raw", "qcow2"};
G_STATIC_ASSERT(G_N_ELEMENTS(disk_format_names) == QEMU_DOMAIN_DISK_FORMAT_LAST);

static const char *const disk_cache_names[] = {"default",      "none",       "writeback",
                                               "writethrough", "directsync", "unsafe"};
G_STATIC_ASSERT(G_N_ELEMENTS(disk_cache_names) == QEMU_DOMAIN_DISK_CACHE_LAST);

static const char *const disk_io_names[] = {"default", "threads", "native"};
G_STATIC_ASSERT(G_N_ELEMENTS(disk_io_names) == QEMU_DOMAIN_DISK_IO_LAST);

static const char *const disk_discard_names[] = {"default", "unmap", "ignore"};
G_STATIC_ASSERT(G_N_ELEMENTS(disk_discard_names) == QEMU_DOMAIN_DISK_DISCARD_LAST);

static const char *const disk_bus_names[] = {"virtio", "sata", "scsi"};
G_STATIC_ASSERT(G_N_ELEMENTS(disk_bus_names) == QEMU_DOMAIN_DISK_BUS_LAST);

static const char *const net_model_names[] = {"default", "virtio", "e1000"};
G_STATIC_ASSERT(G_N_ELEMENTS(net_model_names) == QEMU_DOMAIN_NET_MODEL_LAST);

static const char *const chr_type_names[] = {"pty", "file"};
G_STATIC_ASSERT(G_N_ELEMENTS(chr_type_names) == QEMU_DOMAIN_CHR_TYPE_LAST);

static const char *const tristate_names[] = {"default", "on", "off"};
G_STATIC_ASSERT(G_N_ELEMENTS(tristate_names) == QEMU_DOMAIN_TRISTATE_LAST);

static const char *
enum_name(const char *const *table, int last, int value)
{
    if (value < 0 || value >= last)
        return NULL;
    return table[value];
}

/* Index of str in table[first..last), or -1. */
static int
enum_value(const char *const *table, int first, int last, const char *str)
{
    for (int i = first; i < last; i++) {
        if (g_str_equal(table[i], str))
            return i;
    }
    return -1;
}

const char *
qemu_domain_virt_type_to_string(QemuDomainVirtType type)
{
    return enum_name(virt_type_names, QEMU_DOMAIN_VIRT_LAST, type);
}

const char *
qemu_domain_cpu_mode_to_string(QemuDomainCpuMode mode)
{
    return enum_name(cpu_mode_names, QEMU_DOMAIN_CPU_MODE_LAST, mode);
}

const char *
qemu_domain_cpu_feature_policy_to_string(QemuDomainCpuFeaturePolicy policy)
{
    return enum_name(cpu_feature_policy_names, QEMU_DOMAIN_CPU_FEATURE_LAST, policy);
}

const char *
qemu_domain_lifecycle_action_to_string(QemuDomainLifecycleAction action)
{
    return enum_name(lifecycle_names, QEMU_DOMAIN_LIFECYCLE_LAST, action);
}

const char *
qemu_domain_disk_type_to_string(QemuDomainDiskType type)
{
    return enum_name(disk_type_names, QEMU_DOMAIN_DISK_TYPE_LAST, type);
}

const char *
qemu_domain_disk_format_to_string(QemuDomainDiskFormat format)
{
    return enum_name(disk_format_names, QEMU_DOMAIN_DISK_FORMAT_LAST, format);
}

const char *
qemu_domain_disk_cache_to_string(QemuDomainDiskCache cache)
{
    return enum_name(disk_cache_names, QEMU_DOMAIN_DISK_CACHE_LAST, cache);
}

const char *
qemu_domain_disk_bus_to_string(QemuDomainDiskBus bus)
{
    return enum_name(disk_bus_names, QEMU_DOMAIN_DISK_BUS_LAST, bus);
}

const char *
qemu_domain_chr_type_to_string(QemuDomainChrType type)
{
    return enum_name(chr_type_names, QEMU_DOMAIN_CHR_TYPE_LAST, type);
}

/* ---- small value helpers ---- */

void
qemu_domain_uuid_format(const uint8_t uuid[16], char out[37])
{
    g_snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
               uuid[0], uuid[1], uuid[2], uuid[3], uuid[4], uuid[5], uuid[6], uuid[7], uuid[8],
               uuid[9], uuid[10], uuid[11], uuid[12], uuid[13], uuid[14], uuid[15]);
}

bool
qemu_domain_uuid_parse(const char *str, uint8_t uuid[16])
{
    uint8_t tmp[16];
    size_t n = 0;
    const char *p = str;

    /* Dashes may separate bytes anywhere, as libvirt accepts; nothing else. */
    while (*p) {
        if (*p == '-') {
            p++;
            continue;
        }
        if (n == 16 || !g_ascii_isxdigit(p[0]) || !g_ascii_isxdigit(p[1]))
            return false;
        tmp[n++] = (uint8_t)(g_ascii_xdigit_value(p[0]) << 4 | g_ascii_xdigit_value(p[1]));
        p += 2;
    }
    if (n != 16)
        return false;
    memcpy(uuid, tmp, sizeof(tmp));
    return true;
}

void
qemu_domain_mac_format(const uint8_t mac[6], char out[18])
{
    g_snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4],
               mac[5]);
}

static bool
mac_parse(const char *str, uint8_t mac[6])
{
    uint8_t tmp[6];

    for (size_t i = 0; i < 6; i++) {
        const char *p = str + i * 3;

        if (!g_ascii_isxdigit(p[0]) || !g_ascii_isxdigit(p[1]))
            return false;
        if (p[2] != (i == 5 ? '\0' : ':'))
            return false;
        tmp[i] = (uint8_t)(g_ascii_xdigit_value(p[0]) << 4 | g_ascii_xdigit_value(p[1]));
    }
    memcpy(mac, tmp, sizeof(tmp));
    return true;
}

int
qemu_domain_disk_target_index(const char *target)
{
    size_t len;
    int idx = 0;

    if (!target || (!g_str_has_prefix(target, "vd") && !g_str_has_prefix(target, "sd")))
        return -1;
    len = strlen(target + 2);
    if (len == 0 || len > TARGET_LETTERS_MAX)
        return -1;
    /* Bijective base 26: a..z, aa..zz, ... as the kernel names disks. */
    for (size_t i = 2; target[i]; i++) {
        if (target[i] < 'a' || target[i] > 'z')
            return -1;
        idx = idx * 26 + (target[i] - 'a' + 1);
    }
    return idx - 1;
}

char *
qemu_domain_disk_node_name(const QemuDomainDiskDef *disk)
{
    return g_strdup_printf("drive-%s-fmt", disk->target);
}

char *
qemu_domain_disk_file_node_name(const QemuDomainDiskDef *disk)
{
    return g_strdup_printf("drive-%s-file", disk->target);
}

char *
qemu_domain_disk_device_id(const QemuDomainDiskDef *disk)
{
    return g_strdup_printf("disk-%s", disk->target);
}

/* Strict unsigned decimal, surrounding blanks allowed; false on anything else. */
static bool
parse_uint64(const char *str, uint64_t *out)
{
    g_autofree char *copy = g_strstrip(g_strdup(str));
    uint64_t val = 0;

    if (!copy[0])
        return false;
    for (const char *p = copy; *p; p++) {
        if (!g_ascii_isdigit(*p))
            return false;
        if (val > (G_MAXUINT64 - (uint64_t)(*p - '0')) / 10)
            return false;
        val = val * 10 + (uint64_t)(*p - '0');
    }
    *out = val;
    return true;
}

static bool
parse_uint(const char *str, unsigned int max, unsigned int *out)
{
    uint64_t val;

    if (!parse_uint64(str, &val) || val > max)
        return false;
    *out = (unsigned int)val;
    return true;
}

/* Bytes per unit, as libvirt reads them: b/byte/bytes, then k, m, g, t, p, e
 * alone or with "iB" (powers of 1024) or with "B" (powers of 1000), any case. */
static bool
parse_unit(const char *unit, uint64_t *scale)
{
    static const char prefixes[] = "kmgtpe";
    const char *pos;
    uint64_t base;
    uint64_t val = 1;

    if (!unit) {
        *scale = 1024;
        return true;
    }
    if (g_ascii_strcasecmp(unit, "b") == 0 || g_ascii_strcasecmp(unit, "byte") == 0 ||
        g_ascii_strcasecmp(unit, "bytes") == 0) {
        *scale = 1;
        return true;
    }
    if (!unit[0] || !(pos = strchr(prefixes, g_ascii_tolower(unit[0]))))
        return false;
    if (unit[1] == '\0' || g_ascii_strcasecmp(unit + 1, "ib") == 0)
        base = 1024;
    else if (g_ascii_strcasecmp(unit + 1, "b") == 0)
        base = 1000;
    else
        return false;
    for (const char *p = prefixes; p <= pos; p++)
        val *= base;
    *scale = val;
    return true;
}

static bool
is_name_char(char c, const char *extra)
{
    return g_ascii_isalnum(c) || (c && strchr(extra, c));
}

/* Whether str is non-empty and made only of alphanumerics and extra. */
static bool
is_token(const char *str, const char *extra)
{
    if (!str || !str[0])
        return false;
    for (const char *p = str; *p; p++) {
        if (!is_name_char(*p, extra))
            return false;
    }
    return true;
}

/* ---- kept nodes ---- */

static void
xml_node_free(QemuDomainXmlNode *node)
{
    if (!node)
        return;
    g_free(node->name);
    if (node->attrs)
        g_ptr_array_unref(node->attrs);
    g_free(node->text);
    if (node->children)
        g_ptr_array_unref(node->children);
    if (node->raw)
        g_ptr_array_unref(node->raw);
    g_free(node);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(QemuDomainXmlNode, xml_node_free)

static GPtrArray *
node_array_new(void)
{
    return g_ptr_array_new_with_free_func((GDestroyNotify)xml_node_free);
}

static GPtrArray *
strv_array_copy(const GPtrArray *src)
{
    GPtrArray *dst;

    if (!src)
        return NULL;
    dst = g_ptr_array_new_full(src->len, g_free);
    for (guint i = 0; i < src->len; i++)
        g_ptr_array_add(dst, g_strdup(g_ptr_array_index(src, i)));
    return dst;
}

static QemuDomainXmlNode *xml_node_copy(const QemuDomainXmlNode *src);

static GPtrArray *
node_array_copy(const GPtrArray *src)
{
    GPtrArray *dst;

    if (!src)
        return NULL;
    dst = node_array_new();
    for (guint i = 0; i < src->len; i++)
        g_ptr_array_add(dst, xml_node_copy(g_ptr_array_index(src, i)));
    return dst;
}

static QemuDomainXmlNode *
xml_node_copy(const QemuDomainXmlNode *src)
{
    QemuDomainXmlNode *dst;

    if (!src)
        return NULL;
    dst = g_new0(QemuDomainXmlNode, 1);
    dst->name = g_strdup(src->name);
    dst->attrs = strv_array_copy(src->attrs);
    dst->text = g_strdup(src->text);
    dst->children = node_array_copy(src->children);
    dst->raw = strv_array_copy(src->raw);
    return dst;
}

/* ---- parsing ---- */

typedef struct {
    const char *filename; /* or NULL */
    xmlDocPtr doc;
} ParseCtx;

/* Report an error about the XML, naming the file when there is one. */
static void parse_report(ParseCtx *ctx, HoErrorCode code, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);

static void
parse_report(ParseCtx *ctx, HoErrorCode code, const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (ctx->filename)
        ho_error_report(code, _("'%1$s': %2$s"), ctx->filename, msg);
    else
        ho_error_report(code, "%s", msg);
}

static void
err_unsupported_element(ParseCtx *ctx, const char *path)
{
    parse_report(ctx, HO_ERR_XML, _("unsupported element '%1$s' in domain XML"), path);
}

static void
err_unsupported_attr(ParseCtx *ctx, const char *path)
{
    parse_report(ctx, HO_ERR_XML, _("unsupported attribute '%1$s' in domain XML"), path);
}

static void
err_unsupported_value(ParseCtx *ctx, const char *value, const char *path)
{
    parse_report(ctx, HO_ERR_XML, _("unsupported value '%1$s' of attribute '%2$s'"), value, path);
}

static void
err_unsupported_content(ParseCtx *ctx, const char *value, const char *path)
{
    parse_report(ctx, HO_ERR_XML, _("unsupported value '%1$s' of element '%2$s'"), value, path);
}

static void
err_invalid_value(ParseCtx *ctx, const char *value, const char *path)
{
    parse_report(ctx, HO_ERR_XML, _("invalid value '%1$s' of attribute '%2$s'"), value, path);
}

static void
err_invalid_content(ParseCtx *ctx, const char *value, const char *path)
{
    parse_report(ctx, HO_ERR_XML, _("invalid value '%1$s' of element '%2$s'"), value, path);
}

static void
err_missing_element(ParseCtx *ctx, const char *path)
{
    parse_report(ctx, HO_ERR_XML, _("missing element '%1$s' in domain XML"), path);
}

static void
err_missing_attr(ParseCtx *ctx, const char *path)
{
    parse_report(ctx, HO_ERR_XML, _("missing attribute '%1$s' in domain XML"), path);
}

static void
err_duplicate_element(ParseCtx *ctx, const char *path)
{
    parse_report(ctx, HO_ERR_XML, _("duplicate element '%1$s' in domain XML"), path);
}

/* "prefix:name" of a namespaced node, else its name (g_free it). */
static char *
qualified_name(const xmlChar *name, xmlNsPtr ns)
{
    if (ns && ns->prefix)
        return g_strdup_printf("%s:%s", (const char *)ns->prefix, (const char *)name);
    return g_strdup((const char *)name);
}

static char *
child_path(const char *parent, xmlNodePtr child)
{
    g_autofree char *name = qualified_name(child->name, child->ns);

    return g_strdup_printf("%s/%s", parent, name);
}

static char *
attr_path(const char *parent, const char *name)
{
    return g_strdup_printf("%s/@%s", parent, name);
}

/* An attribute without namespace as a g_malloc'd string, or NULL. */
static char *
get_attr(xmlNodePtr node, const char *name)
{
    xmlChar *val = xmlGetNoNsProp(node, BAD_CAST name);
    char *ret;

    if (!val)
        return NULL;
    ret = g_strdup((const char *)val);
    xmlFree(val);
    return ret;
}

/* Fail on any attribute of node not listed in allowed (NULL-terminated, may be NULL). */
static int
check_attrs(ParseCtx *ctx, xmlNodePtr node, const char *path, const char *const *allowed)
{
    for (xmlAttrPtr attr = node->properties; attr; attr = attr->next) {
        g_autofree char *name = qualified_name(attr->name, attr->ns);
        g_autofree char *apath = NULL;

        if (!attr->ns && allowed && g_strv_contains(allowed, name))
            continue;
        apath = attr_path(path, name);
        err_unsupported_attr(ctx, apath);
        return -1;
    }
    return 0;
}

#define ATTRS(...) ((const char *const[]){__VA_ARGS__, NULL})

static bool
is_blank(const xmlChar *text)
{
    for (const xmlChar *p = text; p && *p; p++) {
        if (!g_ascii_isspace(*p))
            return false;
    }
    return true;
}

/*
 * The element children of node (a new array of xmlNodePtr). Comments and
 * processing instructions are skipped; text between elements must be blank.
 */
static int
element_children(ParseCtx *ctx, xmlNodePtr node, const char *path, GPtrArray **out)
{
    g_autoptr(GPtrArray) elems = g_ptr_array_new();

    for (xmlNodePtr cur = node->children; cur; cur = cur->next) {
        switch (cur->type) {
        case XML_ELEMENT_NODE:
            g_ptr_array_add(elems, cur);
            break;
        case XML_TEXT_NODE:
        case XML_CDATA_SECTION_NODE:
            if (is_blank(cur->content))
                break;
            parse_report(ctx, HO_ERR_XML, _("unexpected text in element '%1$s' in domain XML"),
                         path);
            return -1;
        case XML_COMMENT_NODE:
        case XML_PI_NODE:
            break;
        default:
            parse_report(ctx, HO_ERR_XML, _("unexpected content in element '%1$s' in domain XML"),
                         path);
            return -1;
        }
    }
    *out = g_steal_pointer(&elems);
    return 0;
}

/* Fail unless node has no element children. */
static int
check_no_children(ParseCtx *ctx, xmlNodePtr node, const char *path)
{
    for (xmlNodePtr cur = node->children; cur; cur = cur->next) {
        if (cur->type == XML_ELEMENT_NODE) {
            g_autofree char *cpath = child_path(path, cur);

            err_unsupported_element(ctx, cpath);
            return -1;
        }
        if (cur->type == XML_ENTITY_REF_NODE) {
            parse_report(ctx, HO_ERR_XML, _("unexpected content in element '%1$s' in domain XML"),
                         path);
            return -1;
        }
    }
    return 0;
}

/* An element with neither attributes nor children (<readonly/>). */
static int
check_empty(ParseCtx *ctx, xmlNodePtr node, const char *path)
{
    g_autoptr(GPtrArray) elems = NULL;

    if (check_attrs(ctx, node, path, NULL) < 0 || element_children(ctx, node, path, &elems) < 0)
        return -1;
    if (elems->len > 0) {
        g_autofree char *cpath = child_path(path, g_ptr_array_index(elems, 0));

        err_unsupported_element(ctx, cpath);
        return -1;
    }
    return 0;
}

/* The text of an element that has no attributes except allowed and no element children. */
static int
get_text(ParseCtx *ctx, xmlNodePtr node, const char *path, const char *const *allowed, char **out)
{
    xmlChar *content;

    if (check_attrs(ctx, node, path, allowed) < 0 || check_no_children(ctx, node, path) < 0)
        return -1;
    content = xmlNodeGetContent(node);
    *out = g_strdup(content ? (const char *)content : "");
    xmlFree(content);
    return 0;
}

/* Like get_text, with surrounding blanks removed. */
static int
get_text_stripped(ParseCtx *ctx, xmlNodePtr node, const char *path, const char *const *allowed,
                  char **out)
{
    char *text;

    if (get_text(ctx, node, path, allowed, &text) < 0)
        return -1;
    *out = g_strstrip(text);
    return 0;
}

/* Set *slot to node, failing if an element of that name was seen before. */
static int
take_once(ParseCtx *ctx, xmlNodePtr *slot, xmlNodePtr node, const char *path)
{
    if (*slot) {
        err_duplicate_element(ctx, path);
        return -1;
    }
    *slot = node;
    return 0;
}

static bool
is_named(xmlNodePtr node, const char *name)
{
    return !node->ns && g_str_equal((const char *)node->name, name);
}

/* Copy an element we keep but do not interpret. */
static QemuDomainXmlNode *
keep_node(ParseCtx *ctx, xmlNodePtr node, const char *path, int depth)
{
    g_autoptr(QemuDomainXmlNode) kept = g_new0(QemuDomainXmlNode, 1);
    g_autoptr(GPtrArray) elems = NULL;

    if (node->ns) {
        err_unsupported_element(ctx, path);
        return NULL;
    }
    if (depth > KEEP_DEPTH_MAX) {
        parse_report(ctx, HO_ERR_LIMIT, _("element '%1$s' is nested too deeply"), path);
        return NULL;
    }
    kept->name = g_strdup((const char *)node->name);
    kept->attrs = g_ptr_array_new_with_free_func(g_free);
    for (xmlAttrPtr attr = node->properties; attr; attr = attr->next) {
        xmlChar *val;

        if (attr->ns) {
            g_autofree char *name = qualified_name(attr->name, attr->ns);
            g_autofree char *apath = attr_path(path, name);

            err_unsupported_attr(ctx, apath);
            return NULL;
        }
        val = xmlNodeListGetString(ctx->doc, attr->children, 1);
        g_ptr_array_add(kept->attrs, g_strdup((const char *)attr->name));
        g_ptr_array_add(kept->attrs, g_strdup(val ? (const char *)val : ""));
        xmlFree(val);
    }

    /* Either text or elements: mixed content has no place in domain XML. */
    if (!xmlFirstElementChild(node)) {
        xmlChar *content;

        if (check_no_children(ctx, node, path) < 0)
            return NULL;
        content = xmlNodeGetContent(node);

        if (content && content[0])
            kept->text = g_strdup((const char *)content);
        xmlFree(content);
        return g_steal_pointer(&kept);
    }
    if (element_children(ctx, node, path, &elems) < 0)
        return NULL;
    kept->children = node_array_new();
    for (guint i = 0; i < elems->len; i++) {
        xmlNodePtr child = g_ptr_array_index(elems, i);
        g_autofree char *cpath = child_path(path, child);
        QemuDomainXmlNode *sub = keep_node(ctx, child, cpath, depth + 1);

        if (!sub)
            return NULL;
        g_ptr_array_add(kept->children, sub);
    }
    return g_steal_pointer(&kept);
}

static int
keep_into(ParseCtx *ctx, GPtrArray *list, xmlNodePtr node, const char *path)
{
    QemuDomainXmlNode *kept = keep_node(ctx, node, path, 0);

    if (!kept)
        return -1;
    g_ptr_array_add(list, kept);
    return 0;
}

/*
 * <metadata> holds other applications' elements in their own namespaces:
 * kept as serialized XML, written back as libxml2 writes it (like virsh).
 */
static QemuDomainXmlNode *
keep_metadata(ParseCtx *ctx, xmlNodePtr node, const char *path)
{
    g_autoptr(QemuDomainXmlNode) kept = g_new0(QemuDomainXmlNode, 1);
    g_autoptr(GPtrArray) elems = NULL;

    if (check_attrs(ctx, node, path, NULL) < 0 || element_children(ctx, node, path, &elems) < 0)
        return NULL;
    kept->name = g_strdup("metadata");
    kept->raw = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < elems->len; i++) {
        xmlNodePtr child = g_ptr_array_index(elems, i);
        xmlDocPtr tmp = xmlNewDoc(BAD_CAST "1.0");
        /* A copy in its own document declares the namespaces it uses. */
        xmlNodePtr copy = xmlDocCopyNode(child, tmp, 1);
        xmlBufferPtr buf = xmlBufferCreate();

        if (!copy || !buf) {
            xmlBufferFree(buf);
            xmlFreeDoc(tmp);
            parse_report(ctx, HO_ERR_INTERNAL, _("cannot copy element '%1$s'"), path);
            return NULL;
        }
        xmlDocSetRootElement(tmp, copy);
        xmlNodeDump(buf, tmp, copy, 2, 1);
        g_ptr_array_add(kept->raw, g_strndup((const char *)xmlBufferContent(buf),
                                             (gsize)xmlBufferLength(buf)));
        xmlBufferFree(buf);
        xmlFreeDoc(tmp);
    }
    return g_steal_pointer(&kept);
}

static int
parse_enum_attr(ParseCtx *ctx, xmlNodePtr node, const char *path, const char *name,
                const char *const *table, int first, int last, int *out)
{
    g_autofree char *val = get_attr(node, name);
    g_autofree char *apath = NULL;
    int v;

    if (!val)
        return 0;
    if ((v = enum_value(table, first, last, val)) < 0) {
        apath = attr_path(path, name);
        err_unsupported_value(ctx, val, apath);
        return -1;
    }
    *out = v;
    return 1;
}

/* A string attribute that must be one of choices (NULL-terminated); kept as given. */
static int
parse_choice_attr(ParseCtx *ctx, xmlNodePtr node, const char *path, const char *name,
                  const char *const *choices, char **out)
{
    g_autofree char *val = get_attr(node, name);

    if (!val)
        return 0;
    if (!g_strv_contains(choices, val)) {
        g_autofree char *apath = attr_path(path, name);

        err_unsupported_value(ctx, val, apath);
        return -1;
    }
    g_free(*out);
    *out = g_steal_pointer(&val);
    return 0;
}

static int
parse_memory(ParseCtx *ctx, xmlNodePtr node, const char *path, uint64_t *kib)
{
    g_autofree char *unit = get_attr(node, "unit");
    g_autofree char *text = NULL;
    uint64_t val;
    uint64_t scale;
    uint64_t bytes;
    uint64_t kib_val;

    if (get_text(ctx, node, path, ATTRS("unit"), &text) < 0)
        return -1;
    if (!parse_unit(unit, &scale)) {
        g_autofree char *apath = attr_path(path, "unit");

        err_invalid_value(ctx, unit, apath);
        return -1;
    }
    if (!parse_uint64(text, &val) || val == 0 || val > G_MAXUINT64 / scale) {
        err_invalid_content(ctx, text, path);
        return -1;
    }
    /* Round up to whole KiB, as libvirt does. */
    bytes = val * scale;
    kib_val = bytes / 1024 + (bytes % 1024 != 0);
    if (kib_val > G_MAXUINT64 / 1024) {
        err_invalid_content(ctx, text, path);
        return -1;
    }
    *kib = kib_val;
    return 0;
}

static int
parse_vcpu(ParseCtx *ctx, xmlNodePtr node, const char *path, QemuDomainDef *def)
{
    g_autofree char *text = NULL;
    g_autofree char *current = get_attr(node, "current");
    g_autofree char *cpuset = get_attr(node, "cpuset");
    unsigned int cur;

    if (get_text_stripped(ctx, node, path, ATTRS("placement", "cpuset", "current"), &text) < 0)
        return -1;
    if (!parse_uint(text, VCPUS_MAX, &def->vcpus) || def->vcpus == 0) {
        err_invalid_content(ctx, text, path);
        return -1;
    }
    if (parse_choice_attr(ctx, node, path, "placement", ATTRS("static", "auto"),
                          &def->vcpu_placement) < 0)
        return -1;
    if (cpuset) {
        if (!cpuset[0] || strspn(cpuset, "0123456789,-^") != strlen(cpuset)) {
            g_autofree char *apath = attr_path(path, "cpuset");

            err_invalid_value(ctx, cpuset, apath);
            return -1;
        }
        def->vcpu_cpuset = g_steal_pointer(&cpuset);
    }
    /* Fewer online vCPUs than the maximum means CPU hotplug: not ours. */
    if (current && (!parse_uint(current, VCPUS_MAX, &cur) || cur != def->vcpus)) {
        g_autofree char *apath = attr_path(path, "current");

        err_unsupported_value(ctx, current, apath);
        return -1;
    }
    return 0;
}

static int
parse_os(ParseCtx *ctx, xmlNodePtr node, const char *path, QemuDomainDef *def)
{
    g_autoptr(GPtrArray) elems = NULL;
    xmlNodePtr type = NULL;
    xmlNodePtr kernel = NULL;
    xmlNodePtr initrd = NULL;
    xmlNodePtr cmdline = NULL;
    xmlNodePtr boot = NULL;

    if (check_attrs(ctx, node, path, NULL) < 0 || element_children(ctx, node, path, &elems) < 0)
        return -1;
    for (guint i = 0; i < elems->len; i++) {
        xmlNodePtr child = g_ptr_array_index(elems, i);
        g_autofree char *cpath = child_path(path, child);
        int rc = 0;

        if (is_named(child, "type")) {
            rc = take_once(ctx, &type, child, cpath);
        } else if (is_named(child, "kernel")) {
            if ((rc = take_once(ctx, &kernel, child, cpath)) == 0)
                rc = get_text(ctx, child, cpath, NULL, &def->os_kernel);
        } else if (is_named(child, "initrd")) {
            if ((rc = take_once(ctx, &initrd, child, cpath)) == 0)
                rc = get_text(ctx, child, cpath, NULL, &def->os_initrd);
        } else if (is_named(child, "cmdline")) {
            if ((rc = take_once(ctx, &cmdline, child, cpath)) == 0)
                rc = get_text(ctx, child, cpath, NULL, &def->os_cmdline);
        } else if (is_named(child, "boot")) {
            g_autofree char *dev = get_attr(child, "dev");
            g_autofree char *dpath = attr_path(cpath, "dev");

            if ((rc = take_once(ctx, &boot, child, cpath)) < 0)
                break;
            if (check_attrs(ctx, child, cpath, ATTRS("dev")) < 0 ||
                check_no_children(ctx, child, cpath) < 0)
                return -1;
            if (!dev) {
                err_missing_attr(ctx, dpath);
                return -1;
            }
            /* Booting from anything but the disks needs hardware we do not add. */
            if (!g_str_equal(dev, "hd")) {
                err_unsupported_value(ctx, dev, dpath);
                return -1;
            }
            def->os_boot_hd = true;
        } else if (is_named(child, "bootmenu")) {
            rc = keep_into(ctx, def->os_extras, child, cpath);
        } else {
            err_unsupported_element(ctx, cpath);
            rc = -1;
        }
        if (rc < 0)
            return -1;
    }

    if (!type) {
        g_autofree char *tpath = g_strdup_printf("%s/type", path);

        err_missing_element(ctx, tpath);
        return -1;
    } else {
        g_autofree char *tpath = g_strdup_printf("%s/type", path);
        g_autofree char *text = NULL;
        g_autofree char *arch = get_attr(type, "arch");
        g_autofree char *machine = get_attr(type, "machine");

        if (get_text_stripped(ctx, type, tpath, ATTRS("arch", "machine"), &text) < 0)
            return -1;
        if (!g_str_equal(text, "hvm")) {
            err_unsupported_content(ctx, text, tpath);
            return -1;
        }
        if (arch && !g_str_equal(arch, "x86_64")) {
            g_autofree char *apath = attr_path(tpath, "arch");

            err_unsupported_value(ctx, arch, apath);
            return -1;
        }
        def->arch = g_strdup("x86_64");
        if (machine) {
            if (!is_token(machine, "._-")) {
                g_autofree char *apath = attr_path(tpath, "machine");

                err_invalid_value(ctx, machine, apath);
                return -1;
            }
            def->machine = g_steal_pointer(&machine);
        }
    }
    return 0;
}

static void
cpu_feature_free(QemuDomainCpuFeature *feature)
{
    if (!feature)
        return;
    g_free(feature->name);
    g_free(feature);
}

static int
parse_cpu_topology(ParseCtx *ctx, xmlNodePtr node, const char *path, QemuDomainCpuDef *cpu)
{
    static const char *const names[] = {"sockets", "dies", "cores", "threads"};
    unsigned int *slots[] = {&cpu->sockets, &cpu->dies, &cpu->cores, &cpu->threads};

    if (check_attrs(ctx, node, path, ATTRS("sockets", "dies", "cores", "threads")) < 0 ||
        check_no_children(ctx, node, path) < 0)
        return -1;
    for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
        g_autofree char *val = get_attr(node, names[i]);
        g_autofree char *apath = attr_path(path, names[i]);

        if (!val) {
            /* libvirt lets dies default to 1; the others are required. */
            if (g_str_equal(names[i], "dies")) {
                *slots[i] = 1;
                continue;
            }
            err_missing_attr(ctx, apath);
            return -1;
        }
        if (!parse_uint(val, VCPUS_MAX, slots[i]) || *slots[i] == 0) {
            err_invalid_value(ctx, val, apath);
            return -1;
        }
    }
    return 0;
}

static int
parse_cpu_feature(ParseCtx *ctx, xmlNodePtr node, const char *path, QemuDomainCpuDef *cpu)
{
    g_autofree char *name = get_attr(node, "name");
    g_autofree char *npath = attr_path(path, "name");
    QemuDomainCpuFeature *feature;
    int policy = QEMU_DOMAIN_CPU_FEATURE_REQUIRE;

    if (check_attrs(ctx, node, path, ATTRS("policy", "name")) < 0 ||
        check_no_children(ctx, node, path) < 0)
        return -1;
    if (parse_enum_attr(ctx, node, path, "policy", cpu_feature_policy_names, 0,
                        QEMU_DOMAIN_CPU_FEATURE_LAST, &policy) < 0)
        return -1;
    if (!name) {
        err_missing_attr(ctx, npath);
        return -1;
    }
    if (!is_token(name, "._-")) {
        err_invalid_value(ctx, name, npath);
        return -1;
    }
    feature = g_new0(QemuDomainCpuFeature, 1);
    feature->name = g_steal_pointer(&name);
    feature->policy = policy;
    g_ptr_array_add(cpu->features, feature);
    return 0;
}

static int
parse_cpu(ParseCtx *ctx, xmlNodePtr node, const char *path, QemuDomainCpuDef *cpu)
{
    g_autoptr(GPtrArray) elems = NULL;
    xmlNodePtr model = NULL;
    xmlNodePtr vendor = NULL;
    xmlNodePtr topology = NULL;
    int mode = QEMU_DOMAIN_CPU_MODE_CUSTOM;
    guint nfeatures = 0;

    if (check_attrs(ctx, node, path, ATTRS("mode", "match", "check", "migratable")) < 0 ||
        element_children(ctx, node, path, &elems) < 0)
        return -1;
    if (parse_enum_attr(ctx, node, path, "mode", cpu_mode_names,
                        QEMU_DOMAIN_CPU_MODE_HOST_PASSTHROUGH, QEMU_DOMAIN_CPU_MODE_LAST,
                        &mode) < 0)
        return -1;
    cpu->mode = mode;
    if (parse_choice_attr(ctx, node, path, "match", ATTRS("minimum", "exact", "strict"),
                          &cpu->match) < 0 ||
        parse_choice_attr(ctx, node, path, "check", ATTRS("none", "partial", "full"),
                          &cpu->check) < 0 ||
        parse_choice_attr(ctx, node, path, "migratable", ATTRS("on", "off"), &cpu->migratable) < 0)
        return -1;

    for (guint i = 0; i < elems->len; i++) {
        xmlNodePtr child = g_ptr_array_index(elems, i);
        g_autofree char *cpath = child_path(path, child);

        if (is_named(child, "model")) {
            g_autofree char *text = NULL;

            if (take_once(ctx, &model, child, cpath) < 0 ||
                get_text_stripped(ctx, child, cpath, ATTRS("fallback"), &text) < 0 ||
                parse_choice_attr(ctx, child, cpath, "fallback", ATTRS("allow", "forbid"),
                                  &cpu->fallback) < 0)
                return -1;
            if (text[0]) {
                /* Only a custom CPU names its model; the others take the host's. */
                if (cpu->mode != QEMU_DOMAIN_CPU_MODE_CUSTOM) {
                    err_unsupported_element(ctx, cpath);
                    return -1;
                }
                if (!is_token(text, "._-")) {
                    err_invalid_content(ctx, text, cpath);
                    return -1;
                }
                cpu->model = g_steal_pointer(&text);
            }
        } else if (is_named(child, "vendor")) {
            if (take_once(ctx, &vendor, child, cpath) < 0 ||
                get_text_stripped(ctx, child, cpath, NULL, &cpu->vendor) < 0)
                return -1;
        } else if (is_named(child, "topology")) {
            if (take_once(ctx, &topology, child, cpath) < 0 ||
                parse_cpu_topology(ctx, child, cpath, cpu) < 0)
                return -1;
        } else if (is_named(child, "feature")) {
            g_autofree char *fpath = g_strdup_printf("%s[%u]", cpath, ++nfeatures);

            if (parse_cpu_feature(ctx, child, fpath, cpu) < 0)
                return -1;
        } else {
            err_unsupported_element(ctx, cpath);
            return -1;
        }
    }
    return 0;
}

static int
parse_memory_backing(ParseCtx *ctx, xmlNodePtr node, const char *path, QemuDomainDef *def)
{
    g_autoptr(GPtrArray) elems = NULL;
    xmlNodePtr source = NULL;
    xmlNodePtr access = NULL;

    if (check_attrs(ctx, node, path, NULL) < 0 || element_children(ctx, node, path, &elems) < 0)
        return -1;
    for (guint i = 0; i < elems->len; i++) {
        xmlNodePtr child = g_ptr_array_index(elems, i);
        g_autofree char *cpath = child_path(path, child);

        if (is_named(child, "source")) {
            g_autofree char *type = NULL;

            if (take_once(ctx, &source, child, cpath) < 0 ||
                check_attrs(ctx, child, cpath, ATTRS("type")) < 0 ||
                check_no_children(ctx, child, cpath) < 0 ||
                parse_choice_attr(ctx, child, cpath, "type", ATTRS("anonymous", "memfd"), &type) <
                    0)
                return -1;
            def->memfd = g_strcmp0(type, "memfd") == 0;
        } else if (is_named(child, "access")) {
            g_autofree char *mode = NULL;

            if (take_once(ctx, &access, child, cpath) < 0 ||
                check_attrs(ctx, child, cpath, ATTRS("mode")) < 0 ||
                check_no_children(ctx, child, cpath) < 0 ||
                parse_choice_attr(ctx, child, cpath, "mode", ATTRS("shared", "private"), &mode) <
                    0)
                return -1;
            def->shared = g_strcmp0(mode, "shared") == 0;
        } else {
            err_unsupported_element(ctx, cpath);
            return -1;
        }
    }
    return 0;
}

static int
parse_lifecycle(ParseCtx *ctx, xmlNodePtr node, const char *path, bool crash,
                QemuDomainLifecycleAction *out)
{
    g_autofree char *text = NULL;
    int last = crash ? QEMU_DOMAIN_LIFECYCLE_LAST : QEMU_DOMAIN_LIFECYCLE_COREDUMP_DESTROY;
    int val;

    if (get_text_stripped(ctx, node, path, NULL, &text) < 0)
        return -1;
    if ((val = enum_value(lifecycle_names, 0, last, text)) < 0) {
        err_unsupported_content(ctx, text, path);
        return -1;
    }
    *out = val;
    return 0;
}

void
qemu_domain_disk_def_free(QemuDomainDiskDef *disk)
{
    if (!disk)
        return;
    g_free(disk->src);
    g_free(disk->target);
    g_free(disk->serial);
    g_free(disk->node_name);
    xml_node_free(disk->backing_store);
    if (disk->extras)
        g_ptr_array_unref(disk->extras);
    g_free(disk);
}

static int
parse_disk_driver(ParseCtx *ctx, xmlNodePtr node, const char *path, QemuDomainDiskDef *disk)
{
    g_autofree char *name = get_attr(node, "name");
    int format = QEMU_DOMAIN_DISK_FORMAT_RAW;
    int cache = QEMU_DOMAIN_DISK_CACHE_DEFAULT;
    int io = QEMU_DOMAIN_DISK_IO_DEFAULT;
    int discard = QEMU_DOMAIN_DISK_DISCARD_DEFAULT;

    if (check_attrs(ctx, node, path, ATTRS("name", "type", "cache", "io", "discard")) < 0 ||
        check_no_children(ctx, node, path) < 0)
        return -1;
    if (name && !g_str_equal(name, "qemu")) {
        g_autofree char *apath = attr_path(path, "name");

        err_unsupported_value(ctx, name, apath);
        return -1;
    }
    if (parse_enum_attr(ctx, node, path, "type", disk_format_names, 0,
                        QEMU_DOMAIN_DISK_FORMAT_LAST, &format) < 0 ||
        parse_enum_attr(ctx, node, path, "cache", disk_cache_names, QEMU_DOMAIN_DISK_CACHE_NONE,
                        QEMU_DOMAIN_DISK_CACHE_LAST, &cache) < 0 ||
        parse_enum_attr(ctx, node, path, "io", disk_io_names, QEMU_DOMAIN_DISK_IO_THREADS,
                        QEMU_DOMAIN_DISK_IO_LAST, &io) < 0 ||
        parse_enum_attr(ctx, node, path, "discard", disk_discard_names,
                        QEMU_DOMAIN_DISK_DISCARD_UNMAP, QEMU_DOMAIN_DISK_DISCARD_LAST,
                        &discard) < 0)
        return -1;
    disk->format = format;
    disk->cache = cache;
    disk->io = io;
    disk->discard = discard;
    /* Linux native AIO needs O_DIRECT: QEMU refuses it otherwise. */
    if (disk->io == QEMU_DOMAIN_DISK_IO_NATIVE && disk->cache != QEMU_DOMAIN_DISK_CACHE_NONE &&
        disk->cache != QEMU_DOMAIN_DISK_CACHE_DIRECTSYNC) {
        g_autofree char *apath = attr_path(path, "io");

        parse_report(ctx, HO_ERR_XML,
                     _("attribute '%1$s' is 'native', which needs cache 'none' or 'directsync'"),
                     apath);
        return -1;
    }
    return 0;
}

static int
parse_disk_source(ParseCtx *ctx, xmlNodePtr node, const char *path, QemuDomainDiskDef *disk)
{
    const char *attr = disk->type == QEMU_DOMAIN_DISK_TYPE_FILE ? "file" : "dev";
    g_autofree char *apath = attr_path(path, attr);

    /* index= is libvirt's runtime numbering of the backing chain: dropped. */
    if (check_attrs(ctx, node, path, (const char *const[]){attr, "index", NULL}) < 0 ||
        check_no_children(ctx, node, path) < 0)
        return -1;
    disk->src = get_attr(node, attr);
    if (!disk->src) {
        err_missing_attr(ctx, apath);
        return -1;
    }
    if (!disk->src[0]) {
        err_invalid_value(ctx, disk->src, apath);
        return -1;
    }
    return 0;
}

static int
parse_disk_target(ParseCtx *ctx, xmlNodePtr node, const char *path, QemuDomainDiskDef *disk)
{
    g_autofree char *dpath = attr_path(path, "dev");
    int bus = -1;
    int idx;

    if (check_attrs(ctx, node, path, ATTRS("dev", "bus")) < 0 ||
        check_no_children(ctx, node, path) < 0 ||
        parse_enum_attr(ctx, node, path, "bus", disk_bus_names, 0, QEMU_DOMAIN_DISK_BUS_LAST,
                        &bus) < 0)
        return -1;
    disk->target = get_attr(node, "dev");
    if (!disk->target) {
        err_missing_attr(ctx, dpath);
        return -1;
    }
    idx = qemu_domain_disk_target_index(disk->target);
    if (bus < 0) {
        /* libvirt's default bus follows the name: vdX virtio, sdX SCSI. */
        bus = g_str_has_prefix(disk->target, "sd") ? QEMU_DOMAIN_DISK_BUS_SCSI
                                                   : QEMU_DOMAIN_DISK_BUS_VIRTIO;
    }
    disk->bus = bus;
    if (idx < 0 ||
        g_str_has_prefix(disk->target, "vd") != (disk->bus == QEMU_DOMAIN_DISK_BUS_VIRTIO)) {
        err_invalid_value(ctx, disk->target, dpath);
        return -1;
    }
    if ((disk->bus == QEMU_DOMAIN_DISK_BUS_SATA && idx >= SATA_DISKS_MAX) ||
        (disk->bus == QEMU_DOMAIN_DISK_BUS_SCSI && idx >= SCSI_DISKS_MAX)) {
        err_unsupported_value(ctx, disk->target, dpath);
        return -1;
    }
    return 0;
}

static QemuDomainDiskDef *
parse_disk(ParseCtx *ctx, xmlNodePtr node, const char *path)
{
    g_autoptr(QemuDomainDiskDef) disk = g_new0(QemuDomainDiskDef, 1);
    g_autoptr(GPtrArray) elems = NULL;
    g_autofree char *device = get_attr(node, "device");
    xmlNodePtr driver = NULL;
    xmlNodePtr source = NULL;
    xmlNodePtr backing = NULL;
    xmlNodePtr target = NULL;
    xmlNodePtr readonly = NULL;
    xmlNodePtr serial = NULL;
    xmlNodePtr boot = NULL;
    int type = QEMU_DOMAIN_DISK_TYPE_FILE;

    disk->extras = node_array_new();
    if (check_attrs(ctx, node, path, ATTRS("type", "device")) < 0 ||
        parse_enum_attr(ctx, node, path, "type", disk_type_names, 0, QEMU_DOMAIN_DISK_TYPE_LAST,
                        &type) < 0)
        return NULL;
    disk->type = type;
    if (device && !g_str_equal(device, "disk")) {
        g_autofree char *apath = attr_path(path, "device");

        err_unsupported_value(ctx, device, apath);
        return NULL;
    }
    if (element_children(ctx, node, path, &elems) < 0)
        return NULL;

    for (guint i = 0; i < elems->len; i++) {
        xmlNodePtr child = g_ptr_array_index(elems, i);
        g_autofree char *cpath = child_path(path, child);
        int rc;

        if (is_named(child, "driver")) {
            if ((rc = take_once(ctx, &driver, child, cpath)) == 0)
                rc = parse_disk_driver(ctx, child, cpath, disk);
        } else if (is_named(child, "source")) {
            if ((rc = take_once(ctx, &source, child, cpath)) == 0)
                rc = parse_disk_source(ctx, child, cpath, disk);
        } else if (is_named(child, "backingStore")) {
            if ((rc = take_once(ctx, &backing, child, cpath)) == 0) {
                disk->backing_store = keep_node(ctx, child, cpath, 0);
                rc = disk->backing_store ? 0 : -1;
            }
        } else if (is_named(child, "target")) {
            if ((rc = take_once(ctx, &target, child, cpath)) == 0)
                rc = parse_disk_target(ctx, child, cpath, disk);
        } else if (is_named(child, "readonly")) {
            if ((rc = take_once(ctx, &readonly, child, cpath)) == 0)
                rc = check_empty(ctx, child, cpath);
            disk->readonly = true;
        } else if (is_named(child, "serial")) {
            if ((rc = take_once(ctx, &serial, child, cpath)) == 0 &&
                (rc = get_text_stripped(ctx, child, cpath, NULL, &disk->serial)) == 0 &&
                (!is_token(disk->serial, " ._+-") || strlen(disk->serial) > DISK_SERIAL_MAX)) {
                err_invalid_content(ctx, disk->serial, cpath);
                rc = -1;
            }
        } else if (is_named(child, "boot")) {
            g_autofree char *order = get_attr(child, "order");
            g_autofree char *opath = attr_path(cpath, "order");

            if ((rc = take_once(ctx, &boot, child, cpath)) == 0 &&
                (rc = check_attrs(ctx, child, cpath, ATTRS("order"))) == 0 &&
                (rc = check_no_children(ctx, child, cpath)) == 0) {
                if (!order) {
                    err_missing_attr(ctx, opath);
                    rc = -1;
                } else if (!parse_uint(order, G_MAXINT, &disk->boot_order) ||
                           disk->boot_order == 0) {
                    err_invalid_value(ctx, order, opath);
                    rc = -1;
                }
            }
        } else if (is_named(child, "alias") || is_named(child, "address")) {
            rc = keep_into(ctx, disk->extras, child, cpath);
        } else {
            err_unsupported_element(ctx, cpath);
            rc = -1;
        }
        if (rc < 0)
            return NULL;
    }

    if (!source || !target) {
        g_autofree char *mpath = g_strdup_printf("%s/%s", path, source ? "target" : "source");

        err_missing_element(ctx, mpath);
        return NULL;
    }
    /* QEMU's ide-hd refuses read-only drives. */
    if (disk->readonly && disk->bus == QEMU_DOMAIN_DISK_BUS_SATA) {
        parse_report(ctx, HO_ERR_XML, _("read-only disk '%1$s' is not supported on bus 'sata'"),
                     disk->target);
        return NULL;
    }
    disk->node_name = qemu_domain_disk_node_name(disk);
    return g_steal_pointer(&disk);
}

static void
net_def_free(QemuDomainNetDef *net)
{
    if (!net)
        return;
    if (net->extras)
        g_ptr_array_unref(net->extras);
    g_free(net);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(QemuDomainNetDef, net_def_free)

static QemuDomainNetDef *
parse_interface(ParseCtx *ctx, xmlNodePtr node, const char *path)
{
    g_autoptr(QemuDomainNetDef) net = g_new0(QemuDomainNetDef, 1);
    g_autoptr(GPtrArray) elems = NULL;
    g_autofree char *type = get_attr(node, "type");
    g_autofree char *tpath = attr_path(path, "type");
    xmlNodePtr mac = NULL;
    xmlNodePtr model = NULL;

    net->extras = node_array_new();
    if (check_attrs(ctx, node, path, ATTRS("type")) < 0)
        return NULL;
    if (!type) {
        err_missing_attr(ctx, tpath);
        return NULL;
    }
    if (!g_str_equal(type, "user")) {
        err_unsupported_value(ctx, type, tpath);
        return NULL;
    }
    if (element_children(ctx, node, path, &elems) < 0)
        return NULL;

    for (guint i = 0; i < elems->len; i++) {
        xmlNodePtr child = g_ptr_array_index(elems, i);
        g_autofree char *cpath = child_path(path, child);

        if (is_named(child, "mac")) {
            g_autofree char *addr = get_attr(child, "address");
            g_autofree char *apath = attr_path(cpath, "address");

            if (take_once(ctx, &mac, child, cpath) < 0 ||
                check_attrs(ctx, child, cpath, ATTRS("address")) < 0 ||
                check_no_children(ctx, child, cpath) < 0)
                return NULL;
            if (!addr) {
                err_missing_attr(ctx, apath);
                return NULL;
            }
            /* A guest NIC needs a unicast address. */
            if (!mac_parse(addr, net->mac) || (net->mac[0] & 1)) {
                err_invalid_value(ctx, addr, apath);
                return NULL;
            }
        } else if (is_named(child, "model")) {
            g_autofree char *mtype = get_attr(child, "type");
            g_autofree char *mpath = attr_path(cpath, "type");
            int val;

            if (take_once(ctx, &model, child, cpath) < 0 ||
                check_attrs(ctx, child, cpath, ATTRS("type")) < 0 ||
                check_no_children(ctx, child, cpath) < 0)
                return NULL;
            if (!mtype) {
                err_missing_attr(ctx, mpath);
                return NULL;
            }
            val = enum_value(net_model_names, QEMU_DOMAIN_NET_MODEL_VIRTIO,
                             QEMU_DOMAIN_NET_MODEL_LAST, mtype);
            if (val < 0) {
                err_unsupported_value(ctx, mtype, mpath);
                return NULL;
            }
            net->model = val;
        } else if (is_named(child, "alias") || is_named(child, "address")) {
            if (keep_into(ctx, net->extras, child, cpath) < 0)
                return NULL;
        } else {
            err_unsupported_element(ctx, cpath);
            return NULL;
        }
    }

    if (!mac) {
        /* libvirt's choice for a missing address: QEMU's OUI and random bytes. */
        guint32 rnd = g_random_int();

        net->mac[0] = 0x52;
        net->mac[1] = 0x54;
        net->mac[2] = 0x00;
        net->mac[3] = (uint8_t)(rnd >> 16);
        net->mac[4] = (uint8_t)(rnd >> 8);
        net->mac[5] = (uint8_t)rnd;
    }
    return g_steal_pointer(&net);
}

static void
chr_def_free(QemuDomainChrDef *chr)
{
    if (!chr)
        return;
    g_free(chr->path);
    if (chr->extras)
        g_ptr_array_unref(chr->extras);
    g_free(chr);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(QemuDomainChrDef, chr_def_free)

static int
parse_chr_source(ParseCtx *ctx, xmlNodePtr node, const char *path, QemuDomainChrDef *chr)
{
    g_autofree char *src = get_attr(node, "path");
    int append = QEMU_DOMAIN_TRISTATE_ABSENT;

    if (check_attrs(ctx, node, path, ATTRS("path", "append")) < 0 ||
        check_no_children(ctx, node, path) < 0 ||
        parse_enum_attr(ctx, node, path, "append", tristate_names, QEMU_DOMAIN_TRISTATE_ON,
                        QEMU_DOMAIN_TRISTATE_LAST, &append) < 0)
        return -1;
    /* The path of a pty is where libvirt's QEMU put it: runtime data, dropped. */
    if (chr->type == QEMU_DOMAIN_CHR_TYPE_PTY)
        return 0;
    if (!src || !src[0]) {
        g_autofree char *apath = attr_path(path, "path");

        if (src)
            err_invalid_value(ctx, src, apath);
        else
            err_missing_attr(ctx, apath);
        return -1;
    }
    chr->path = g_steal_pointer(&src);
    chr->append = append;
    return 0;
}

static int
parse_chr_target(ParseCtx *ctx, xmlNodePtr node, const char *path, bool console,
                 QemuDomainChrDef *chr, bool *has_port)
{
    g_autofree char *type = get_attr(node, "type");
    g_autofree char *port = get_attr(node, "port");
    g_autoptr(GPtrArray) elems = NULL;
    const char *want = console ? "serial" : "isa-serial";

    if (check_attrs(ctx, node, path, ATTRS("type", "port")) < 0 ||
        element_children(ctx, node, path, &elems) < 0)
        return -1;
    if (type && !g_str_equal(type, want)) {
        g_autofree char *apath = attr_path(path, "type");

        err_unsupported_value(ctx, type, apath);
        return -1;
    }
    if (port) {
        if (!parse_uint(port, SERIAL_PORTS - 1, &chr->port)) {
            g_autofree char *apath = attr_path(path, "port");

            err_unsupported_value(ctx, port, apath);
            return -1;
        }
        *has_port = true;
    }
    for (guint i = 0; i < elems->len; i++) {
        xmlNodePtr child = g_ptr_array_index(elems, i);
        g_autofree char *cpath = child_path(path, child);
        g_autofree char *name = get_attr(child, "name");

        if (console || !is_named(child, "model") || i > 0) {
            err_unsupported_element(ctx, cpath);
            return -1;
        }
        if (check_attrs(ctx, child, cpath, ATTRS("name")) < 0 ||
            check_no_children(ctx, child, cpath) < 0)
            return -1;
        if (g_strcmp0(name, "isa-serial") != 0) {
            g_autofree char *apath = attr_path(cpath, "name");

            if (name)
                err_unsupported_value(ctx, name, apath);
            else
                err_missing_attr(ctx, apath);
            return -1;
        }
    }
    return 0;
}

static QemuDomainChrDef *
parse_chr(ParseCtx *ctx, xmlNodePtr node, const char *path, bool console,
          unsigned int default_port)
{
    g_autoptr(QemuDomainChrDef) chr = g_new0(QemuDomainChrDef, 1);
    g_autoptr(GPtrArray) elems = NULL;
    g_autofree char *type = get_attr(node, "type");
    g_autofree char *tpath = attr_path(path, "type");
    xmlNodePtr source = NULL;
    xmlNodePtr target = NULL;
    bool has_port = false;
    int val;

    chr->extras = node_array_new();
    /* tty= repeats the pty path of a running libvirt guest: dropped. */
    if (check_attrs(ctx, node, path, ATTRS("type", "tty")) < 0)
        return NULL;
    if (!type) {
        err_missing_attr(ctx, tpath);
        return NULL;
    }
    if ((val = enum_value(chr_type_names, 0, QEMU_DOMAIN_CHR_TYPE_LAST, type)) < 0) {
        err_unsupported_value(ctx, type, tpath);
        return NULL;
    }
    chr->type = val;
    if (element_children(ctx, node, path, &elems) < 0)
        return NULL;

    for (guint i = 0; i < elems->len; i++) {
        xmlNodePtr child = g_ptr_array_index(elems, i);
        g_autofree char *cpath = child_path(path, child);
        int rc;

        if (is_named(child, "source")) {
            if ((rc = take_once(ctx, &source, child, cpath)) == 0)
                rc = parse_chr_source(ctx, child, cpath, chr);
        } else if (is_named(child, "target")) {
            if ((rc = take_once(ctx, &target, child, cpath)) == 0)
                rc = parse_chr_target(ctx, child, cpath, console, chr, &has_port);
        } else if (is_named(child, "alias")) {
            rc = keep_into(ctx, chr->extras, child, cpath);
        } else {
            err_unsupported_element(ctx, cpath);
            rc = -1;
        }
        if (rc < 0)
            return NULL;
    }
    if (chr->type == QEMU_DOMAIN_CHR_TYPE_FILE && !source) {
        g_autofree char *spath = g_strdup_printf("%s/source", path);

        err_missing_element(ctx, spath);
        return NULL;
    }
    if (!has_port)
        chr->port = default_port;
    return g_steal_pointer(&chr);
}

/* Serials without a port get the lowest free ones, after those given explicitly. */
static int
assign_serial_ports(ParseCtx *ctx, QemuDomainDef *def)
{
    bool used[SERIAL_PORTS] = {false};

    for (guint i = 0; i < def->serials->len; i++) {
        QemuDomainChrDef *chr = g_ptr_array_index(def->serials, i);

        if (chr->port == PORT_UNSET)
            continue;
        if (used[chr->port]) {
            parse_report(ctx, HO_ERR_XML, _("duplicate serial port '%1$u' in domain XML"),
                         chr->port);
            return -1;
        }
        used[chr->port] = true;
    }
    for (guint i = 0; i < def->serials->len; i++) {
        QemuDomainChrDef *chr = g_ptr_array_index(def->serials, i);
        unsigned int port = 0;

        if (chr->port != PORT_UNSET)
            continue;
        while (port < SERIAL_PORTS && used[port])
            port++;
        if (port == SERIAL_PORTS) {
            parse_report(ctx, HO_ERR_XML, _("too many serial ports in domain XML, at most %1$d"),
                         SERIAL_PORTS);
            return -1;
        }
        used[port] = true;
        chr->port = port;
    }
    return 0;
}

static int
parse_devices(ParseCtx *ctx, xmlNodePtr node, const char *path, QemuDomainDef *def)
{
    g_autoptr(GPtrArray) elems = NULL;
    xmlNodePtr emulator = NULL;
    unsigned int ndisks = 0;
    unsigned int nnets = 0;
    unsigned int nserials = 0;
    unsigned int nconsoles = 0;
    unsigned int ncontrollers = 0;
    unsigned int ninputs = 0;

    if (check_attrs(ctx, node, path, NULL) < 0 || element_children(ctx, node, path, &elems) < 0)
        return -1;
    for (guint i = 0; i < elems->len; i++) {
        xmlNodePtr child = g_ptr_array_index(elems, i);
        g_autofree char *cpath = child_path(path, child);

        if (is_named(child, "emulator")) {
            if (take_once(ctx, &emulator, child, cpath) < 0 ||
                get_text_stripped(ctx, child, cpath, NULL, &def->emulator) < 0)
                return -1;
            if (!def->emulator[0]) {
                err_invalid_content(ctx, def->emulator, cpath);
                return -1;
            }
        } else if (is_named(child, "disk")) {
            g_autofree char *dpath = g_strdup_printf("%s[%u]", cpath, ++ndisks);
            QemuDomainDiskDef *disk = parse_disk(ctx, child, dpath);

            if (!disk)
                return -1;
            g_ptr_array_add(def->disks, disk);
            if (qemu_domain_def_find_disk(def, disk->target) != disk) {
                parse_report(ctx, HO_ERR_XML, _("duplicate disk target '%1$s' in domain XML"),
                             disk->target);
                return -1;
            }
        } else if (is_named(child, "interface")) {
            g_autofree char *ipath = g_strdup_printf("%s[%u]", cpath, ++nnets);
            QemuDomainNetDef *net = parse_interface(ctx, child, ipath);

            if (!net)
                return -1;
            g_ptr_array_add(def->nets, net);
        } else if (is_named(child, "serial") || is_named(child, "console")) {
            bool console = is_named(child, "console");
            GPtrArray *list = console ? def->consoles : def->serials;
            unsigned int n = console ? ++nconsoles : ++nserials;
            g_autofree char *spath = g_strdup_printf("%s[%u]", cpath, n);
            QemuDomainChrDef *chr =
                parse_chr(ctx, child, spath, console, console ? 0 : PORT_UNSET);

            if (!chr)
                return -1;
            g_ptr_array_add(list, chr);
        } else if (is_named(child, "controller") || is_named(child, "input")) {
            unsigned int n = is_named(child, "input") ? ++ninputs : ++ncontrollers;
            g_autofree char *kpath = g_strdup_printf("%s[%u]", cpath, n);

            if (keep_into(ctx, def->device_extras, child, kpath) < 0)
                return -1;
        } else if (is_named(child, "memballoon")) {
            if (keep_into(ctx, def->device_extras, child, cpath) < 0)
                return -1;
        } else {
            err_unsupported_element(ctx, cpath);
            return -1;
        }
    }
    return assign_serial_ports(ctx, def);
}

/* <features> we keep: they describe what QEMU's x86 machines give anyway. */
static int
check_features(ParseCtx *ctx, xmlNodePtr node, const char *path)
{
    static const char *const known[] = {"acpi", "apic", "pae", "vmport", NULL};
    g_autoptr(GPtrArray) elems = NULL;

    if (check_attrs(ctx, node, path, NULL) < 0 || element_children(ctx, node, path, &elems) < 0)
        return -1;
    for (guint i = 0; i < elems->len; i++) {
        xmlNodePtr child = g_ptr_array_index(elems, i);

        if (child->ns || !g_strv_contains(known, (const char *)child->name)) {
            g_autofree char *cpath = child_path(path, child);

            err_unsupported_element(ctx, cpath);
            return -1;
        }
    }
    return 0;
}

static QemuDomainDef *
domain_def_new(void)
{
    QemuDomainDef *def = g_new0(QemuDomainDef, 1);

    def->vcpus = 1;
    def->on_poweroff = QEMU_DOMAIN_LIFECYCLE_DESTROY;
    def->on_reboot = QEMU_DOMAIN_LIFECYCLE_RESTART;
    def->on_crash = QEMU_DOMAIN_LIFECYCLE_DESTROY;
    def->os_extras = node_array_new();
    def->cpu.features = g_ptr_array_new_with_free_func((GDestroyNotify)cpu_feature_free);
    def->disks = g_ptr_array_new_with_free_func((GDestroyNotify)qemu_domain_disk_def_free);
    def->nets = g_ptr_array_new_with_free_func((GDestroyNotify)net_def_free);
    def->serials = g_ptr_array_new_with_free_func((GDestroyNotify)chr_def_free);
    def->consoles = g_ptr_array_new_with_free_func((GDestroyNotify)chr_def_free);
    def->extras = node_array_new();
    def->device_extras = node_array_new();
    return def;
}

/* Checks that span several elements. */
static int
validate_def(ParseCtx *ctx, QemuDomainDef *def)
{
    const QemuDomainCpuDef *cpu = &def->cpu;
    guint64 product = (guint64)cpu->sockets * cpu->dies * cpu->cores * cpu->threads;

    if (cpu->sockets && product != def->vcpus) {
        parse_report(ctx, HO_ERR_XML,
                     _("CPU topology '/domain/cpu/topology' gives %1$" G_GUINT64_FORMAT
                       " vCPUs, but '/domain/vcpu' is %2$u"),
                     product, def->vcpus);
        return -1;
    }
    for (guint i = 0; i < def->disks->len; i++) {
        QemuDomainDiskDef *disk = g_ptr_array_index(def->disks, i);

        if (!disk->boot_order)
            continue;
        if (def->os_boot_hd) {
            parse_report(ctx, HO_ERR_XML,
                         _("per-device boot order cannot be combined with '/domain/os/boot'"));
            return -1;
        }
        for (guint j = 0; j < i; j++) {
            QemuDomainDiskDef *other = g_ptr_array_index(def->disks, j);

            if (other->boot_order == disk->boot_order) {
                parse_report(ctx, HO_ERR_XML, _("duplicate boot order '%1$u' in domain XML"),
                             disk->boot_order);
                return -1;
            }
        }
    }
    /* libvirt clamps the balloon to the maximum rather than failing. */
    if (def->current_memory_kib == 0 || def->current_memory_kib > def->memory_kib)
        def->current_memory_kib = def->memory_kib;
    if (!def->vcpu_placement)
        def->vcpu_placement = g_strdup("static");
    return 0;
}

static int
parse_name(ParseCtx *ctx, xmlNodePtr node, const char *path, QemuDomainDef *def)
{
    if (get_text(ctx, node, path, NULL, &def->name) < 0)
        return -1;
    /* The name becomes part of file names and log lines. */
    if (!def->name[0] || strchr(def->name, '/') || !g_utf8_validate(def->name, -1, NULL)) {
        err_invalid_content(ctx, def->name, path);
        return -1;
    }
    for (const char *p = def->name; *p; p++) {
        if (g_ascii_iscntrl(*p)) {
            err_invalid_content(ctx, def->name, path);
            return -1;
        }
    }
    return 0;
}

static int
parse_uuid(ParseCtx *ctx, xmlNodePtr node, const char *path, QemuDomainDef *def)
{
    g_autofree char *text = NULL;

    if (get_text_stripped(ctx, node, path, NULL, &text) < 0)
        return -1;
    if (!qemu_domain_uuid_parse(text, def->uuid)) {
        err_invalid_content(ctx, text, path);
        return -1;
    }
    return 0;
}

static QemuDomainDef *
parse_domain(ParseCtx *ctx, xmlNodePtr root)
{
    /* Singletons we interpret, and those we keep as they are. */
    static const char *const kept_once[] = {"title", "description", "resource", "features",
                                            "clock", "pm",          NULL};
    g_autoptr(QemuDomainDef) def = domain_def_new();
    g_autoptr(GPtrArray) elems = NULL;
    g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
    const char *path = "/domain";
    int virt = -1;
    unsigned int nseclabels = 0;
    bool have_uuid = false;

    if (!is_named(root, "domain")) {
        g_autofree char *name = qualified_name(root->name, root->ns);

        parse_report(ctx, HO_ERR_XML, _("unexpected root element '%1$s', expected 'domain'"),
                     name);
        return NULL;
    }
    /* id= is the running domain's number under libvirt: dropped. */
    if (check_attrs(ctx, root, path, ATTRS("type", "id")) < 0 ||
        parse_enum_attr(ctx, root, path, "type", virt_type_names, 0, QEMU_DOMAIN_VIRT_LAST,
                        &virt) < 0)
        return NULL;
    if (virt < 0) {
        err_missing_attr(ctx, "/domain/@type");
        return NULL;
    }
    def->virt_type = virt;
    if (element_children(ctx, root, path, &elems) < 0)
        return NULL;

    for (guint i = 0; i < elems->len; i++) {
        xmlNodePtr child = g_ptr_array_index(elems, i);
        g_autofree char *cpath = child_path(path, child);
        const char *name = (const char *)child->name;
        int rc;

        if (child->ns) {
            err_unsupported_element(ctx, cpath);
            return NULL;
        }
        if (!g_str_equal(name, "seclabel")) {
            if (g_hash_table_contains(seen, name)) {
                err_duplicate_element(ctx, cpath);
                return NULL;
            }
            g_hash_table_add(seen, (gpointer)child->name);
        }

        if (g_str_equal(name, "name")) {
            rc = parse_name(ctx, child, cpath, def);
        } else if (g_str_equal(name, "uuid")) {
            rc = parse_uuid(ctx, child, cpath, def);
            have_uuid = true;
        } else if (g_str_equal(name, "memory")) {
            rc = parse_memory(ctx, child, cpath, &def->memory_kib);
        } else if (g_str_equal(name, "currentMemory")) {
            rc = parse_memory(ctx, child, cpath, &def->current_memory_kib);
        } else if (g_str_equal(name, "memoryBacking")) {
            rc = parse_memory_backing(ctx, child, cpath, def);
        } else if (g_str_equal(name, "vcpu")) {
            rc = parse_vcpu(ctx, child, cpath, def);
        } else if (g_str_equal(name, "os")) {
            rc = parse_os(ctx, child, cpath, def);
        } else if (g_str_equal(name, "cpu")) {
            rc = parse_cpu(ctx, child, cpath, &def->cpu);
        } else if (g_str_equal(name, "on_poweroff")) {
            rc = parse_lifecycle(ctx, child, cpath, false, &def->on_poweroff);
        } else if (g_str_equal(name, "on_reboot")) {
            rc = parse_lifecycle(ctx, child, cpath, false, &def->on_reboot);
        } else if (g_str_equal(name, "on_crash")) {
            rc = parse_lifecycle(ctx, child, cpath, true, &def->on_crash);
        } else if (g_str_equal(name, "devices")) {
            rc = parse_devices(ctx, child, cpath, def);
        } else if (g_str_equal(name, "metadata")) {
            QemuDomainXmlNode *kept = keep_metadata(ctx, child, cpath);

            rc = kept ? 0 : -1;
            if (kept)
                g_ptr_array_add(def->extras, kept);
        } else if (g_str_equal(name, "seclabel")) {
            g_autofree char *spath = g_strdup_printf("%s[%u]", cpath, ++nseclabels);

            rc = keep_into(ctx, def->extras, child, spath);
        } else if (g_strv_contains(kept_once, name)) {
            rc = g_str_equal(name, "features") ? check_features(ctx, child, cpath) : 0;
            if (rc == 0)
                rc = keep_into(ctx, def->extras, child, cpath);
        } else {
            err_unsupported_element(ctx, cpath);
            rc = -1;
        }
        if (rc < 0)
            return NULL;
    }

    if (!def->name) {
        err_missing_element(ctx, "/domain/name");
        return NULL;
    }
    if (!def->memory_kib) {
        err_missing_element(ctx, "/domain/memory");
        return NULL;
    }
    if (!def->arch) {
        err_missing_element(ctx, "/domain/os");
        return NULL;
    }
    if (!have_uuid) {
        g_autofree char *uuid = g_uuid_string_random();

        if (!qemu_domain_uuid_parse(uuid, def->uuid)) {
            parse_report(ctx, HO_ERR_INTERNAL, _("cannot generate a UUID"));
            return NULL;
        }
    }
    if (validate_def(ctx, def) < 0)
        return NULL;
    return g_steal_pointer(&def);
}

/* What the libxml2 callbacks saw during one parse. */
typedef struct {
    bool dtd;          /* a <!DOCTYPE> was met */
    char *first_error; /* libxml2's first error message (the later ones follow from it) */
    int first_line;
} ParseState;

/* SAX callback for <!DOCTYPE ...>: stop at once, before any entity is declared. */
static void
reject_dtd(void *opaque, const xmlChar *name, const xmlChar *external_id, const xmlChar *system_id)
{
    xmlParserCtxtPtr pctx = opaque;
    ParseState *state = pctx->_private;

    state->dtd = true;
    xmlStopParser(pctx);
}

/* libxml2 would print its errors to stderr; we keep the first and report it. */
static void
record_xml_error(void *opaque, xmlErrorPtr error)
{
    xmlParserCtxtPtr pctx = opaque;
    ParseState *state = pctx->_private;

    if (state->first_error || !error || error->level < XML_ERR_ERROR)
        return;
    state->first_error = g_strstrip(g_strdup(error->message ? error->message : "?"));
    state->first_line = error->line;
}

static gsize xml_initialized;

QemuDomainDef *
qemu_domain_def_parse_string(const char *xml, const char *filename)
{
    ParseCtx ctx = {.filename = filename};
    xmlParserCtxtPtr pctx;
    QemuDomainDef *def = NULL;
    ParseState state = {0};
    size_t len;

    if (!xml) {
        parse_report(&ctx, HO_ERR_INVALID_ARG, _("no domain XML given"));
        return NULL;
    }
    len = strnlen(xml, QEMU_DOMAIN_XML_MAX + 1);
    if (len > QEMU_DOMAIN_XML_MAX) {
        parse_report(&ctx, HO_ERR_LIMIT, _("domain XML is larger than %1$d bytes"),
                     QEMU_DOMAIN_XML_MAX);
        return NULL;
    }
    if (g_once_init_enter(&xml_initialized)) {
        /* libxml2 sets up its globals here; doing it once up front is thread-safe. */
        xmlInitParser();
        g_once_init_leave(&xml_initialized, 1);
    }
    pctx = xmlCreateMemoryParserCtxt(xml, (int)len);
    if (!pctx) {
        parse_report(&ctx, HO_ERR_INTERNAL, _("cannot create an XML parser"));
        return NULL;
    }
    /* No network, no entity substitution, no DTD loading; blank text dropped. */
    xmlCtxtUseOptions(pctx, XML_PARSE_NONET | XML_PARSE_NOBLANKS | XML_PARSE_NOERROR |
                                XML_PARSE_NOWARNING);
    pctx->_private = &state;
    pctx->sax->internalSubset = reject_dtd;
    pctx->sax->serror = record_xml_error;

    (void)xmlParseDocument(pctx);
    ctx.doc = pctx->myDoc;
    if (state.dtd) {
        parse_report(&ctx, HO_ERR_XML, _("a DTD is not allowed in domain XML"));
    } else if (!pctx->wellFormed || !ctx.doc) {
        parse_report(&ctx, HO_ERR_XML, _("malformed domain XML at line %1$d: %2$s"),
                     state.first_line, state.first_error ? state.first_error : "?");
    } else {
        def = parse_domain(&ctx, xmlDocGetRootElement(ctx.doc));
    }
    g_free(state.first_error);
    xmlFreeDoc(pctx->myDoc);
    pctx->myDoc = NULL;
    xmlFreeParserCtxt(pctx);
    if (def)
        HO_DEBUG("parsed domain '%s' from %s", def->name, filename ? filename : "a string");
    return def;
}

QemuDomainDef *
qemu_domain_def_parse_file(const char *path)
{
    g_autofree char *data = NULL;
    size_t len;

    if (ho_file_read_all(path, QEMU_DOMAIN_XML_MAX, &data, &len) < 0)
        return NULL;
    if (strlen(data) != len) {
        ho_error_report(HO_ERR_XML, _("'%1$s': domain XML contains a NUL byte"), path);
        return NULL;
    }
    return qemu_domain_def_parse_string(data, path);
}

/* ---- formatting ---- */

static void
fmt_escaped(GString *buf, const char *str, bool attr)
{
    for (const char *p = str; *p; p++) {
        switch (*p) {
        case '&':
            g_string_append(buf, "&amp;");
            break;
        case '<':
            g_string_append(buf, "&lt;");
            break;
        case '>':
            g_string_append(buf, "&gt;");
            break;
        case '\'':
            g_string_append(buf, "&apos;");
            break;
        case '"':
            g_string_append(buf, "&quot;");
            break;
        case '\n':
        case '\r':
        case '\t':
            /* Attribute values would lose these to normalization. */
            if (attr)
                g_string_append_printf(buf, "&#%d;", *p);
            else
                g_string_append_c(buf, *p);
            break;
        default:
            g_string_append_c(buf, *p);
        }
    }
}

static void
fmt_indent(GString *buf, int level)
{
    for (int i = 0; i < level; i++)
        g_string_append(buf, "  ");
}

/* "<name" at level; the caller adds attributes and closes the tag. */
static void
fmt_open(GString *buf, int level, const char *name)
{
    fmt_indent(buf, level);
    g_string_append_printf(buf, "<%s", name);
}

/* " name='value'", nothing for a NULL value. */
static void
fmt_attr(GString *buf, const char *name, const char *value)
{
    if (!value)
        return;
    g_string_append_printf(buf, " %s='", name);
    fmt_escaped(buf, value, true);
    g_string_append_c(buf, '\'');
}

static void
fmt_attr_uint(GString *buf, const char *name, unsigned int value)
{
    g_string_append_printf(buf, " %s='%u'", name, value);
}

static void
fmt_close(GString *buf, int level, const char *name)
{
    fmt_indent(buf, level);
    g_string_append_printf(buf, "</%s>\n", name);
}

/* <name>text</name> on one line, nothing for NULL text. */
static void
fmt_text_element(GString *buf, int level, const char *name, const char *text)
{
    if (!text)
        return;
    fmt_open(buf, level, name);
    g_string_append_c(buf, '>');
    fmt_escaped(buf, text, false);
    g_string_append_printf(buf, "</%s>\n", name);
}

static void
fmt_node(GString *buf, int level, const QemuDomainXmlNode *node)
{
    fmt_open(buf, level, node->name);
    for (guint i = 0; node->attrs && i + 1 < node->attrs->len; i += 2)
        fmt_attr(buf, g_ptr_array_index(node->attrs, i), g_ptr_array_index(node->attrs, i + 1));

    if (node->raw) {
        if (node->raw->len == 0) {
            g_string_append(buf, "/>\n");
            return;
        }
        g_string_append(buf, ">\n");
        for (guint i = 0; i < node->raw->len; i++) {
            fmt_indent(buf, level + 1);
            g_string_append_printf(buf, "%s\n", (const char *)g_ptr_array_index(node->raw, i));
        }
        fmt_close(buf, level, node->name);
    } else if (node->children && node->children->len) {
        g_string_append(buf, ">\n");
        for (guint i = 0; i < node->children->len; i++)
            fmt_node(buf, level + 1, g_ptr_array_index(node->children, i));
        fmt_close(buf, level, node->name);
    } else if (node->text) {
        g_string_append_c(buf, '>');
        fmt_escaped(buf, node->text, false);
        g_string_append_printf(buf, "</%s>\n", node->name);
    } else {
        g_string_append(buf, "/>\n");
    }
}

/* The kept nodes of list with this name, in their order. */
static void
fmt_kept(GString *buf, int level, const GPtrArray *list, const char *name)
{
    for (guint i = 0; list && i < list->len; i++) {
        const QemuDomainXmlNode *node = g_ptr_array_index(list, i);

        if (g_str_equal(node->name, name))
            fmt_node(buf, level, node);
    }
}

static void
fmt_all_kept(GString *buf, int level, const GPtrArray *list)
{
    for (guint i = 0; list && i < list->len; i++)
        fmt_node(buf, level, g_ptr_array_index(list, i));
}

static void
fmt_memory(GString *buf, const char *name, uint64_t kib)
{
    fmt_open(buf, 1, name);
    g_string_append_printf(buf, " unit='KiB'>%" G_GUINT64_FORMAT "</%s>\n", kib, name);
}

static void
fmt_os(GString *buf, const QemuDomainDef *def)
{
    fmt_open(buf, 1, "os");
    g_string_append(buf, ">\n");
    fmt_open(buf, 2, "type");
    fmt_attr(buf, "arch", def->arch);
    fmt_attr(buf, "machine", def->machine);
    g_string_append(buf, ">hvm</type>\n");
    fmt_text_element(buf, 2, "kernel", def->os_kernel);
    fmt_text_element(buf, 2, "initrd", def->os_initrd);
    fmt_text_element(buf, 2, "cmdline", def->os_cmdline);
    if (def->os_boot_hd) {
        fmt_open(buf, 2, "boot");
        g_string_append(buf, " dev='hd'/>\n");
    }
    fmt_all_kept(buf, 2, def->os_extras);
    fmt_close(buf, 1, "os");
}

static void
fmt_cpu(GString *buf, const QemuDomainCpuDef *cpu)
{
    if (cpu->mode == QEMU_DOMAIN_CPU_MODE_NONE)
        return;
    fmt_open(buf, 1, "cpu");
    fmt_attr(buf, "mode", qemu_domain_cpu_mode_to_string(cpu->mode));
    fmt_attr(buf, "match", cpu->match);
    fmt_attr(buf, "check", cpu->check);
    fmt_attr(buf, "migratable", cpu->migratable);
    if (!cpu->model && !cpu->fallback && !cpu->vendor && !cpu->sockets &&
        cpu->features->len == 0) {
        g_string_append(buf, "/>\n");
        return;
    }
    g_string_append(buf, ">\n");
    if (cpu->model || cpu->fallback) {
        fmt_open(buf, 2, "model");
        fmt_attr(buf, "fallback", cpu->fallback);
        if (cpu->model) {
            g_string_append_c(buf, '>');
            fmt_escaped(buf, cpu->model, false);
            g_string_append(buf, "</model>\n");
        } else {
            g_string_append(buf, "/>\n");
        }
    }
    fmt_text_element(buf, 2, "vendor", cpu->vendor);
    if (cpu->sockets) {
        fmt_open(buf, 2, "topology");
        fmt_attr_uint(buf, "sockets", cpu->sockets);
        fmt_attr_uint(buf, "dies", cpu->dies);
        fmt_attr_uint(buf, "cores", cpu->cores);
        fmt_attr_uint(buf, "threads", cpu->threads);
        g_string_append(buf, "/>\n");
    }
    for (guint i = 0; i < cpu->features->len; i++) {
        const QemuDomainCpuFeature *feature = g_ptr_array_index(cpu->features, i);

        fmt_open(buf, 2, "feature");
        fmt_attr(buf, "policy", qemu_domain_cpu_feature_policy_to_string(feature->policy));
        fmt_attr(buf, "name", feature->name);
        g_string_append(buf, "/>\n");
    }
    fmt_close(buf, 1, "cpu");
}

static void
fmt_disk(GString *buf, const QemuDomainDiskDef *disk)
{
    fmt_open(buf, 2, "disk");
    fmt_attr(buf, "type", qemu_domain_disk_type_to_string(disk->type));
    g_string_append(buf, " device='disk'>\n");

    fmt_open(buf, 3, "driver");
    fmt_attr(buf, "name", "qemu");
    fmt_attr(buf, "type", qemu_domain_disk_format_to_string(disk->format));
    if (disk->cache != QEMU_DOMAIN_DISK_CACHE_DEFAULT)
        fmt_attr(buf, "cache", qemu_domain_disk_cache_to_string(disk->cache));
    if (disk->io != QEMU_DOMAIN_DISK_IO_DEFAULT)
        fmt_attr(buf, "io", disk_io_names[disk->io]);
    if (disk->discard != QEMU_DOMAIN_DISK_DISCARD_DEFAULT)
        fmt_attr(buf, "discard", disk_discard_names[disk->discard]);
    g_string_append(buf, "/>\n");

    fmt_open(buf, 3, "source");
    fmt_attr(buf, disk->type == QEMU_DOMAIN_DISK_TYPE_FILE ? "file" : "dev", disk->src);
    g_string_append(buf, "/>\n");
    if (disk->backing_store)
        fmt_node(buf, 3, disk->backing_store);

    fmt_open(buf, 3, "target");
    fmt_attr(buf, "dev", disk->target);
    fmt_attr(buf, "bus", qemu_domain_disk_bus_to_string(disk->bus));
    g_string_append(buf, "/>\n");
    if (disk->readonly) {
        fmt_indent(buf, 3);
        g_string_append(buf, "<readonly/>\n");
    }
    fmt_text_element(buf, 3, "serial", disk->serial);
    if (disk->boot_order) {
        fmt_open(buf, 3, "boot");
        fmt_attr_uint(buf, "order", disk->boot_order);
        g_string_append(buf, "/>\n");
    }
    fmt_all_kept(buf, 3, disk->extras);
    fmt_close(buf, 2, "disk");
}

static void
fmt_net(GString *buf, const QemuDomainNetDef *net)
{
    char mac[18];

    qemu_domain_mac_format(net->mac, mac);
    fmt_open(buf, 2, "interface");
    g_string_append(buf, " type='user'>\n");
    fmt_open(buf, 3, "mac");
    fmt_attr(buf, "address", mac);
    g_string_append(buf, "/>\n");
    if (net->model != QEMU_DOMAIN_NET_MODEL_DEFAULT) {
        fmt_open(buf, 3, "model");
        fmt_attr(buf, "type", net_model_names[net->model]);
        g_string_append(buf, "/>\n");
    }
    fmt_all_kept(buf, 3, net->extras);
    fmt_close(buf, 2, "interface");
}

static void
fmt_chr(GString *buf, const QemuDomainChrDef *chr, bool console)
{
    const char *name = console ? "console" : "serial";

    fmt_open(buf, 2, name);
    fmt_attr(buf, "type", qemu_domain_chr_type_to_string(chr->type));
    g_string_append(buf, ">\n");
    if (chr->path) {
        fmt_open(buf, 3, "source");
        fmt_attr(buf, "path", chr->path);
        if (chr->append != QEMU_DOMAIN_TRISTATE_ABSENT)
            fmt_attr(buf, "append", tristate_names[chr->append]);
        g_string_append(buf, "/>\n");
    }
    fmt_open(buf, 3, "target");
    fmt_attr(buf, "type", console ? "serial" : "isa-serial");
    fmt_attr_uint(buf, "port", chr->port);
    if (console) {
        g_string_append(buf, "/>\n");
    } else {
        g_string_append(buf, ">\n");
        fmt_indent(buf, 4);
        g_string_append(buf, "<model name='isa-serial'/>\n");
        fmt_close(buf, 3, "target");
    }
    fmt_all_kept(buf, 3, chr->extras);
    fmt_close(buf, 2, name);
}

static void
fmt_devices(GString *buf, const QemuDomainDef *def)
{
    if (!def->emulator && !def->disks->len && !def->nets->len && !def->serials->len &&
        !def->consoles->len && !def->device_extras->len) {
        fmt_indent(buf, 1);
        g_string_append(buf, "<devices/>\n");
        return;
    }
    fmt_indent(buf, 1);
    g_string_append(buf, "<devices>\n");
    fmt_text_element(buf, 2, "emulator", def->emulator);
    for (guint i = 0; i < def->disks->len; i++)
        fmt_disk(buf, g_ptr_array_index(def->disks, i));
    fmt_kept(buf, 2, def->device_extras, "controller");
    for (guint i = 0; i < def->nets->len; i++)
        fmt_net(buf, g_ptr_array_index(def->nets, i));
    for (guint i = 0; i < def->serials->len; i++)
        fmt_chr(buf, g_ptr_array_index(def->serials, i), false);
    for (guint i = 0; i < def->consoles->len; i++)
        fmt_chr(buf, g_ptr_array_index(def->consoles, i), true);
    fmt_kept(buf, 2, def->device_extras, "input");
    fmt_kept(buf, 2, def->device_extras, "memballoon");
    fmt_close(buf, 1, "devices");
}

char *
qemu_domain_def_format(const QemuDomainDef *def)
{
    GString *buf = g_string_sized_new(4096);
    char uuid[37];

    qemu_domain_uuid_format(def->uuid, uuid);
    /* libvirt's element order, so that virsh's output comes back unchanged. */
    g_string_append_printf(buf, "<domain type='%s'>\n",
                           qemu_domain_virt_type_to_string(def->virt_type));
    fmt_text_element(buf, 1, "name", def->name);
    fmt_text_element(buf, 1, "uuid", uuid);
    fmt_kept(buf, 1, def->extras, "title");
    fmt_kept(buf, 1, def->extras, "description");
    fmt_kept(buf, 1, def->extras, "metadata");
    fmt_memory(buf, "memory", def->memory_kib);
    fmt_memory(buf, "currentMemory", def->current_memory_kib);
    if (def->memfd || def->shared) {
        fmt_indent(buf, 1);
        g_string_append(buf, "<memoryBacking>\n");
        if (def->memfd) {
            fmt_indent(buf, 2);
            g_string_append(buf, "<source type='memfd'/>\n");
        }
        if (def->shared) {
            fmt_indent(buf, 2);
            g_string_append(buf, "<access mode='shared'/>\n");
        }
        fmt_close(buf, 1, "memoryBacking");
    }
    fmt_open(buf, 1, "vcpu");
    fmt_attr(buf, "placement", def->vcpu_placement ? def->vcpu_placement : "static");
    fmt_attr(buf, "cpuset", def->vcpu_cpuset);
    g_string_append_printf(buf, ">%u</vcpu>\n", def->vcpus);
    fmt_kept(buf, 1, def->extras, "resource");
    fmt_os(buf, def);
    fmt_kept(buf, 1, def->extras, "features");
    fmt_cpu(buf, &def->cpu);
    fmt_kept(buf, 1, def->extras, "clock");
    fmt_text_element(buf, 1, "on_poweroff",
                     qemu_domain_lifecycle_action_to_string(def->on_poweroff));
    fmt_text_element(buf, 1, "on_reboot", qemu_domain_lifecycle_action_to_string(def->on_reboot));
    fmt_text_element(buf, 1, "on_crash", qemu_domain_lifecycle_action_to_string(def->on_crash));
    fmt_kept(buf, 1, def->extras, "pm");
    fmt_devices(buf, def);
    fmt_kept(buf, 1, def->extras, "seclabel");
    g_string_append(buf, "</domain>\n");
    return g_string_free(buf, FALSE);
}

/* ---- copy and free ---- */

static QemuDomainDiskDef *
disk_def_copy(const QemuDomainDiskDef *src)
{
    QemuDomainDiskDef *dst = g_new0(QemuDomainDiskDef, 1);

    *dst = *src;
    dst->src = g_strdup(src->src);
    dst->target = g_strdup(src->target);
    dst->serial = g_strdup(src->serial);
    dst->node_name = g_strdup(src->node_name);
    dst->backing_store = xml_node_copy(src->backing_store);
    dst->extras = node_array_copy(src->extras);
    return dst;
}

static QemuDomainNetDef *
net_def_copy(const QemuDomainNetDef *src)
{
    QemuDomainNetDef *dst = g_new0(QemuDomainNetDef, 1);

    *dst = *src;
    dst->extras = node_array_copy(src->extras);
    return dst;
}

static QemuDomainChrDef *
chr_def_copy(const QemuDomainChrDef *src)
{
    QemuDomainChrDef *dst = g_new0(QemuDomainChrDef, 1);

    *dst = *src;
    dst->path = g_strdup(src->path);
    dst->extras = node_array_copy(src->extras);
    return dst;
}

QemuDomainDef *
qemu_domain_def_copy(const QemuDomainDef *src)
{
    QemuDomainDef *dst = domain_def_new();

    dst->virt_type = src->virt_type;
    dst->name = g_strdup(src->name);
    memcpy(dst->uuid, src->uuid, sizeof(dst->uuid));
    dst->memory_kib = src->memory_kib;
    dst->current_memory_kib = src->current_memory_kib;
    dst->vcpus = src->vcpus;
    dst->vcpu_placement = g_strdup(src->vcpu_placement);
    dst->vcpu_cpuset = g_strdup(src->vcpu_cpuset);
    dst->arch = g_strdup(src->arch);
    dst->machine = g_strdup(src->machine);
    dst->os_kernel = g_strdup(src->os_kernel);
    dst->os_initrd = g_strdup(src->os_initrd);
    dst->os_cmdline = g_strdup(src->os_cmdline);
    dst->os_boot_hd = src->os_boot_hd;
    for (guint i = 0; src->os_extras && i < src->os_extras->len; i++)
        g_ptr_array_add(dst->os_extras, xml_node_copy(g_ptr_array_index(src->os_extras, i)));

    dst->cpu.mode = src->cpu.mode;
    dst->cpu.model = g_strdup(src->cpu.model);
    dst->cpu.fallback = g_strdup(src->cpu.fallback);
    dst->cpu.match = g_strdup(src->cpu.match);
    dst->cpu.check = g_strdup(src->cpu.check);
    dst->cpu.migratable = g_strdup(src->cpu.migratable);
    dst->cpu.vendor = g_strdup(src->cpu.vendor);
    dst->cpu.sockets = src->cpu.sockets;
    dst->cpu.dies = src->cpu.dies;
    dst->cpu.cores = src->cpu.cores;
    dst->cpu.threads = src->cpu.threads;
    for (guint i = 0; src->cpu.features && i < src->cpu.features->len; i++) {
        const QemuDomainCpuFeature *f = g_ptr_array_index(src->cpu.features, i);
        QemuDomainCpuFeature *copy = g_new0(QemuDomainCpuFeature, 1);

        copy->name = g_strdup(f->name);
        copy->policy = f->policy;
        g_ptr_array_add(dst->cpu.features, copy);
    }

    dst->memfd = src->memfd;
    dst->shared = src->shared;
    dst->on_poweroff = src->on_poweroff;
    dst->on_reboot = src->on_reboot;
    dst->on_crash = src->on_crash;
    dst->emulator = g_strdup(src->emulator);
    for (guint i = 0; src->disks && i < src->disks->len; i++)
        g_ptr_array_add(dst->disks, disk_def_copy(g_ptr_array_index(src->disks, i)));
    for (guint i = 0; src->nets && i < src->nets->len; i++)
        g_ptr_array_add(dst->nets, net_def_copy(g_ptr_array_index(src->nets, i)));
    for (guint i = 0; src->serials && i < src->serials->len; i++)
        g_ptr_array_add(dst->serials, chr_def_copy(g_ptr_array_index(src->serials, i)));
    for (guint i = 0; src->consoles && i < src->consoles->len; i++)
        g_ptr_array_add(dst->consoles, chr_def_copy(g_ptr_array_index(src->consoles, i)));
    for (guint i = 0; src->extras && i < src->extras->len; i++)
        g_ptr_array_add(dst->extras, xml_node_copy(g_ptr_array_index(src->extras, i)));
    for (guint i = 0; src->device_extras && i < src->device_extras->len; i++)
        g_ptr_array_add(dst->device_extras,
                        xml_node_copy(g_ptr_array_index(src->device_extras, i)));
    return dst;
}

static void
ptr_array_unref0(GPtrArray *array)
{
    if (array)
        g_ptr_array_unref(array);
}

void
qemu_domain_def_free(QemuDomainDef *def)
{
    if (!def)
        return;
    g_free(def->name);
    g_free(def->vcpu_placement);
    g_free(def->vcpu_cpuset);
    g_free(def->arch);
    g_free(def->machine);
    g_free(def->os_kernel);
    g_free(def->os_initrd);
    g_free(def->os_cmdline);
    ptr_array_unref0(def->os_extras);
    g_free(def->cpu.model);
    g_free(def->cpu.fallback);
    g_free(def->cpu.match);
    g_free(def->cpu.check);
    g_free(def->cpu.migratable);
    g_free(def->cpu.vendor);
    ptr_array_unref0(def->cpu.features);
    g_free(def->emulator);
    ptr_array_unref0(def->disks);
    ptr_array_unref0(def->nets);
    ptr_array_unref0(def->serials);
    ptr_array_unref0(def->consoles);
    ptr_array_unref0(def->extras);
    ptr_array_unref0(def->device_extras);
    g_free(def);
}

QemuDomainDiskDef *
qemu_domain_def_find_disk(const QemuDomainDef *def, const char *target)
{
    for (guint i = 0; def->disks && i < def->disks->len; i++) {
        QemuDomainDiskDef *disk = g_ptr_array_index(def->disks, i);

        if (g_strcmp0(disk->target, target) == 0)
            return disk;
    }
    return NULL;
}
