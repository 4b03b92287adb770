/*
 * Domain XML: parse and format.
 *
 * Data files in tests/qemudomaindata/:
 *   NAME.xml      -> NAME.out.xml  the definition formatted after parsing
 *   bad-NAME.xml  -> bad-NAME.err  the error message (parsed as "bad-NAME.xml")
 * HANDOVER_TEST_REGENERATE=1 rewrites the expected files for review.
 */
#include <string.h>

#include "ho_error.h"
#include "qemu_domain.h"
#include "testutils.h"

/* Fewer cases found means the data directory went missing or was renamed. */
#define GOOD_CASES_MIN 10
#define BAD_CASES_MIN 40

static char *
read_data(const char *rel)
{
    g_autofree char *path = test_data_path(rel);
    g_autoptr(GError) err = NULL;
    char *data = NULL;

    if (!g_file_get_contents(path, &data, NULL, &err))
        g_error("cannot read '%s': %s", path, err->message);
    return data;
}

static QemuDomainDef *
parse_or_fail(const char *xml, const char *what)
{
    QemuDomainDef *def = qemu_domain_def_parse_string(xml, what);

    if (!def)
        g_error("cannot parse '%s': %s", what, ho_error_last_message());
    return def;
}

static void
test_good(gconstpointer data)
{
    const char *name = data;
    g_autofree char *in_rel = g_strdup_printf("qemudomaindata/%s.xml", name);
    g_autofree char *in_path = test_data_path(in_rel);
    g_autofree char *out_rel = g_strdup_printf("qemudomaindata/%s.out.xml", name);
    g_autofree char *out_path = test_data_path(out_rel);
    g_autoptr(QemuDomainDef) def = qemu_domain_def_parse_file(in_path);
    g_autoptr(QemuDomainDef) again = NULL;
    g_autoptr(QemuDomainDef) copy = NULL;
    g_autofree char *xml = NULL;
    g_autofree char *xml2 = NULL;
    g_autofree char *xml3 = NULL;

    if (!def)
        g_error("cannot parse '%s': %s", in_path, ho_error_last_message());
    xml = qemu_domain_def_format(def);
    g_assert_cmpint(test_compare_to_file(xml, out_path), ==, 0);

    /* What we write we read back to the same definition. */
    again = parse_or_fail(xml, out_path);
    xml2 = qemu_domain_def_format(again);
    g_assert_cmpstr(xml2, ==, xml);

    copy = qemu_domain_def_copy(def);
    g_clear_pointer(&def, qemu_domain_def_free);
    xml3 = qemu_domain_def_format(copy);
    g_assert_cmpstr(xml3, ==, xml);
}

static void
test_bad(gconstpointer data)
{
    const char *name = data;
    g_autofree char *file = g_strdup_printf("%s.xml", name);
    g_autofree char *in_rel = g_strdup_printf("qemudomaindata/%s", file);
    g_autofree char *err_rel = g_strdup_printf("qemudomaindata/%s.err", name);
    g_autofree char *err_path = test_data_path(err_rel);
    g_autofree char *xml = read_data(in_rel);
    g_autofree char *msg = NULL;
    g_autoptr(QemuDomainDef) def = NULL;
    const HoError *err;

    ho_error_reset();
    def = qemu_domain_def_parse_string(xml, file);
    g_assert_null(def);
    err = ho_error_last();
    g_assert_nonnull(err);
    g_assert_cmpint(err->code, ==, HO_ERR_XML);
    g_assert_true(g_str_has_prefix(err->message, "'"));
    msg = g_strdup_printf("%s\n", err->message);
    g_assert_cmpint(test_compare_to_file(msg, err_path), ==, 0);
}

/* A virsh dumpxml of a defined domain comes back byte for byte. */
static void
test_virsh_unchanged(void)
{
    g_autofree char *in = read_data("qemudomaindata/full-inactive.xml");
    g_autoptr(QemuDomainDef) def = parse_or_fail(in, "full-inactive.xml");
    g_autofree char *out = qemu_domain_def_format(def);

    g_assert_cmpstr(out, ==, in);
}

/* The live XML loses only what libvirt's running QEMU put there. */
static void
test_live_runtime_dropped(void)
{
    g_autofree char *in = read_data("qemudomaindata/full-live.xml");
    g_autoptr(QemuDomainDef) def = parse_or_fail(in, "full-live.xml");
    g_autofree char *out = qemu_domain_def_format(def);
    const QemuDomainDiskDef *vda;
    const QemuDomainChrDef *serial;

    g_assert_null(strstr(out, "id='7'"));
    g_assert_nonnull(strstr(out, "<source file='/var/lib/libvirt/images/web01.qcow2'/>"));
    g_assert_null(strstr(out, "/dev/pts/3"));
    g_assert_nonnull(strstr(out, "<alias name='virtio-disk0'/>"));
    g_assert_nonnull(strstr(out, "<label>+64055:+64055</label>"));
    g_assert_cmpuint(def->disks->len, ==, 2);
    vda = g_ptr_array_index(def->disks, 0);
    g_assert_cmpstr(vda->src, ==, "/var/lib/libvirt/images/web01.qcow2");
    g_assert_cmpint(vda->cache, ==, QEMU_DOMAIN_DISK_CACHE_NONE);
    g_assert_cmpstr(vda->node_name, ==, "drive-vda-fmt");
    g_assert_nonnull(vda->backing_store);
    serial = g_ptr_array_index(def->serials, 0);
    g_assert_cmpint(serial->type, ==, QEMU_DOMAIN_CHR_TYPE_PTY);
    g_assert_null(serial->path);
    g_assert_cmpuint(def->cpu.features->len, ==, 3);
    g_assert_cmpuint(def->cpu.cores, ==, 2);
    g_assert_cmpstr(def->cpu.model, ==, "Skylake-Client-IBRS");
}

static void
test_fields(void)
{
    g_autofree char *in = read_data("qemudomaindata/disks.xml");
    g_autoptr(QemuDomainDef) def = parse_or_fail(in, "disks.xml");
    const QemuDomainDiskDef *disk;
    char uuid[37];

    g_assert_cmpint(def->virt_type, ==, QEMU_DOMAIN_VIRT_KVM);
    g_assert_cmpstr(def->name, ==, "disks");
    qemu_domain_uuid_format(def->uuid, uuid);
    g_assert_cmpstr(uuid, ==, "aa0b1c2d-3e4f-4051-8293-a4b5c6d7e8f9");
    g_assert_cmpuint(def->memory_kib, ==, 512 * 1024);
    g_assert_cmpuint(def->current_memory_kib, ==, 512 * 1024);
    g_assert_cmpuint(def->vcpus, ==, 1);
    g_assert_cmpstr(def->arch, ==, "x86_64");
    g_assert_cmpstr(def->machine, ==, "pc-q35-10.0");
    g_assert_cmpstr(def->emulator, ==, "/opt/qemu/bin/qemu-system-x86_64");
    g_assert_cmpuint(def->disks->len, ==, 4);

    disk = qemu_domain_def_find_disk(def, "sdb");
    g_assert_nonnull(disk);
    g_assert_cmpint(disk->type, ==, QEMU_DOMAIN_DISK_TYPE_BLOCK);
    g_assert_cmpint(disk->format, ==, QEMU_DOMAIN_DISK_FORMAT_RAW);
    g_assert_cmpint(disk->bus, ==, QEMU_DOMAIN_DISK_BUS_SCSI);
    g_assert_true(disk->readonly);
    g_assert_cmpstr(disk->serial, ==, "DATA-0001");
    g_assert_cmpstr(disk->src, ==, "/dev/sdz");

    disk = qemu_domain_def_find_disk(def, "vdaa");
    g_assert_nonnull(disk);
    g_assert_cmpstr(disk->src, ==, "/images/it's & <odd>.qcow2");
    g_assert_cmpint(disk->cache, ==, QEMU_DOMAIN_DISK_CACHE_UNSAFE);
    g_assert_null(qemu_domain_def_find_disk(def, "vdz"));
}

static void
test_generated_ids(void)
{
    const char *xml = "<domain type='kvm'><name>gen</name><memory>1024</memory>"
                      "<os><type>hvm</type></os><devices><interface type='user'/>"
                      "</devices></domain>";
    g_autoptr(QemuDomainDef) a = parse_or_fail(xml, NULL);
    g_autoptr(QemuDomainDef) b = parse_or_fail(xml, NULL);
    g_autoptr(QemuDomainDef) again = NULL;
    g_autofree char *out = NULL;
    const QemuDomainNetDef *net;
    static const uint8_t zero[16];

    g_assert_true(memcmp(a->uuid, zero, 16) != 0);
    g_assert_true(memcmp(a->uuid, b->uuid, 16) != 0);
    net = g_ptr_array_index(a->nets, 0);
    g_assert_cmpint(net->mac[0], ==, 0x52);
    g_assert_cmpint(net->mac[1], ==, 0x54);
    g_assert_cmpint(net->mac[2], ==, 0x00);
    g_assert_cmpint(net->model, ==, QEMU_DOMAIN_NET_MODEL_DEFAULT);

    /* Once generated, they are part of the definition. */
    out = qemu_domain_def_format(a);
    again = parse_or_fail(out, NULL);
    g_assert_cmpmem(again->uuid, 16, a->uuid, 16);
    g_assert_cmpmem(((QemuDomainNetDef *)g_ptr_array_index(again->nets, 0))->mac, 6, net->mac, 6);
}

static void
test_memory_units(void)
{
    static const struct {
        const char *unit; /* NULL: no attribute */
        const char *value;
        uint64_t kib;
    } cases[] = {
        {NULL, "1024", 1024},
        {"b", "1048576", 1024},
        {"bytes", "1025", 2},
        {"KB", "1024", 1000},
        {"k", "7", 7},
        {"KiB", "7", 7},
        {"MB", "1", 977},
        {"M", "3", 3 * 1024},
        {"MiB", "3", 3 * 1024},
        {"GB", "1", 976563},
        {"G", "2", 2 * 1024 * 1024},
        {"GiB", "2", 2 * 1024 * 1024},
        {"TB", "1", 976562500},
        {"T", "1", G_GUINT64_CONSTANT(1) << 30},
        {"TiB", "1", G_GUINT64_CONSTANT(1) << 30},
        {"mib", "1", 1024},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *unit =
            cases[i].unit ? g_strdup_printf(" unit='%s'", cases[i].unit) : g_strdup("");
        g_autofree char *xml = g_strdup_printf("<domain type='qemu'><name>m</name>"
                                               "<memory%s>%s</memory>"
                                               "<os><type>hvm</type></os></domain>",
                                               unit, cases[i].value);
        g_autoptr(QemuDomainDef) def = parse_or_fail(xml, NULL);

        g_assert_cmpuint(def->memory_kib, ==, cases[i].kib);
        g_assert_cmpuint(def->current_memory_kib, ==, cases[i].kib);
    }
}

static void
test_size_limit(void)
{
    g_autoptr(GString) xml = g_string_new("<domain type='kvm'><name>big</name><description>");
    g_autoptr(QemuDomainDef) def = NULL;
    const HoError *err;

    while (xml->len <= QEMU_DOMAIN_XML_MAX)
        g_string_append(xml, "0123456789abcdef");
    g_string_append(xml, "</description></domain>");
    def = qemu_domain_def_parse_string(xml->str, "big.xml");
    g_assert_null(def);
    err = ho_error_last();
    g_assert_cmpint(err->code, ==, HO_ERR_LIMIT);
    g_assert_cmpstr(err->message, ==, "'big.xml': domain XML is larger than 1048576 bytes");
}

static void
test_parse_file_errors(void)
{
    g_autofree char *dir = test_make_tmpdir("domain");
    g_autofree char *missing = g_build_filename(dir, "missing.xml", NULL);
    g_autofree char *bad = g_build_filename(dir, "bad.xml", NULL);
    g_autofree char *expected = NULL;
    g_autoptr(QemuDomainDef) def = NULL;

    def = qemu_domain_def_parse_file(missing);
    g_assert_null(def);
    g_assert_nonnull(strstr(ho_error_last_message(), missing));

    g_assert_true(g_file_set_contents(bad, "<domain type='kvm'><hostdev/></domain>", -1, NULL));
    def = qemu_domain_def_parse_file(bad);
    g_assert_null(def);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_XML);
    expected = g_strdup_printf("'%s': unsupported element '/domain/hostdev' in domain XML", bad);
    g_assert_cmpstr(ho_error_last_message(), ==, expected);
}

static void
test_uuid(void)
{
    uint8_t uuid[16];
    char out[37];

    g_assert_true(qemu_domain_uuid_parse("3F1A2B4C-5D6E-4F70-8192-A3B4C5D6E7F8", uuid));
    qemu_domain_uuid_format(uuid, out);
    g_assert_cmpstr(out, ==, "3f1a2b4c-5d6e-4f70-8192-a3b4c5d6e7f8");
    g_assert_true(qemu_domain_uuid_parse("3f1a2b4c5d6e4f708192a3b4c5d6e7f8", uuid));
    qemu_domain_uuid_format(uuid, out);
    g_assert_cmpstr(out, ==, "3f1a2b4c-5d6e-4f70-8192-a3b4c5d6e7f8");
    g_assert_false(qemu_domain_uuid_parse("", uuid));
    g_assert_false(qemu_domain_uuid_parse("3f1a2b4c-5d6e-4f70-8192-a3b4c5d6e7f", uuid));
    g_assert_false(qemu_domain_uuid_parse("3f1a2b4c-5d6e-4f70-8192-a3b4c5d6e7f80", uuid));
    g_assert_false(qemu_domain_uuid_parse("3f1a2b4c-5d6e-4f70-8192-a3b4c5d6e7fg", uuid));
    g_assert_false(qemu_domain_uuid_parse("3f1a2b4c-5d6e-4f70-8192-a3b4c5d6e7f-8", uuid));
    /* The output is untouched on failure. */
    qemu_domain_uuid_format(uuid, out);
    g_assert_cmpstr(out, ==, "3f1a2b4c-5d6e-4f70-8192-a3b4c5d6e7f8");
}

static void
test_disk_names(void)
{
    QemuDomainDiskDef disk = {.target = (char *)"sdb"};
    g_autofree char *fmt = qemu_domain_disk_node_name(&disk);
    g_autofree char *file = qemu_domain_disk_file_node_name(&disk);
    g_autofree char *dev = qemu_domain_disk_device_id(&disk);

    g_assert_cmpstr(fmt, ==, "drive-sdb-fmt");
    g_assert_cmpstr(file, ==, "drive-sdb-file");
    g_assert_cmpstr(dev, ==, "disk-sdb");

    g_assert_cmpint(qemu_domain_disk_target_index("vda"), ==, 0);
    g_assert_cmpint(qemu_domain_disk_target_index("sdb"), ==, 1);
    g_assert_cmpint(qemu_domain_disk_target_index("vdz"), ==, 25);
    g_assert_cmpint(qemu_domain_disk_target_index("vdaa"), ==, 26);
    g_assert_cmpint(qemu_domain_disk_target_index("vdba"), ==, 52);
    g_assert_cmpint(qemu_domain_disk_target_index("vd"), ==, -1);
    g_assert_cmpint(qemu_domain_disk_target_index("hda"), ==, -1);
    g_assert_cmpint(qemu_domain_disk_target_index("vdA"), ==, -1);
    g_assert_cmpint(qemu_domain_disk_target_index("vdaaaaa"), ==, -1);
    g_assert_cmpint(qemu_domain_disk_target_index(NULL), ==, -1);
}

static void
test_copy_independent(void)
{
    g_autofree char *in = read_data("qemudomaindata/full-live.xml");
    g_autoptr(QemuDomainDef) def = parse_or_fail(in, "full-live.xml");
    g_autoptr(QemuDomainDef) copy = qemu_domain_def_copy(def);
    g_autofree char *before = qemu_domain_def_format(def);
    g_autofree char *after = NULL;
    QemuDomainDiskDef *disk = g_ptr_array_index(copy->disks, 0);

    g_free(copy->name);
    copy->name = g_strdup("renamed");
    g_free(disk->src);
    disk->src = g_strdup("/elsewhere.qcow2");
    g_ptr_array_set_size(copy->extras, 0);
    g_ptr_array_remove_index(copy->nets, 0);
    after = qemu_domain_def_format(def);
    g_assert_cmpstr(after, ==, before);

    qemu_domain_def_free(NULL);
    qemu_domain_disk_def_free(NULL);
}

static gint
compare_names(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* NAME.xml files of qemudomaindata/, good ones or bad- ones, sorted. */
static GPtrArray *
list_cases(bool bad)
{
    g_autofree char *dir_path = test_data_path("qemudomaindata");
    g_autoptr(GDir) dir = g_dir_open(dir_path, 0, NULL);
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
    const char *entry;

    if (!dir)
        g_error("cannot open '%s'", dir_path);
    while ((entry = g_dir_read_name(dir))) {
        if (!g_str_has_suffix(entry, ".xml") || g_str_has_suffix(entry, ".out.xml"))
            continue;
        if (g_str_has_prefix(entry, "bad-") != bad)
            continue;
        g_ptr_array_add(names, g_strndup(entry, strlen(entry) - strlen(".xml")));
    }
    g_ptr_array_sort(names, compare_names);
    return names;
}

int
main(int argc, char **argv)
{
    g_autoptr(GPtrArray) good = NULL;
    g_autoptr(GPtrArray) bad = NULL;

    g_test_init(&argc, &argv, NULL);
    good = list_cases(false);
    bad = list_cases(true);
    g_assert_cmpuint(good->len, >=, GOOD_CASES_MIN);
    g_assert_cmpuint(bad->len, >=, BAD_CASES_MIN);

    for (guint i = 0; i < good->len; i++) {
        g_autofree char *path =
            g_strdup_printf("/domain/good/%s", (char *)g_ptr_array_index(good, i));

        g_test_add_data_func(path, g_ptr_array_index(good, i), test_good);
    }
    for (guint i = 0; i < bad->len; i++) {
        g_autofree char *path =
            g_strdup_printf("/domain/bad/%s", (char *)g_ptr_array_index(bad, i));

        g_test_add_data_func(path, g_ptr_array_index(bad, i), test_bad);
    }
    g_test_add_func("/domain/virsh-unchanged", test_virsh_unchanged);
    g_test_add_func("/domain/live-runtime-dropped", test_live_runtime_dropped);
    g_test_add_func("/domain/fields", test_fields);
    g_test_add_func("/domain/generated-ids", test_generated_ids);
    g_test_add_func("/domain/memory-units", test_memory_units);
    g_test_add_func("/domain/size-limit", test_size_limit);
    g_test_add_func("/domain/parse-file-errors", test_parse_file_errors);
    g_test_add_func("/domain/uuid", test_uuid);
    g_test_add_func("/domain/disk-names", test_disk_names);
    g_test_add_func("/domain/copy-independent", test_copy_independent);
    return g_test_run();
}
