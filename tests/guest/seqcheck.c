/*
 * seqcheck: check a disk image the test guest's disk writer wrote
 * (tests/guest/workload.c, format in seqformat.h).
 *
 *   seqcheck [--format raw|qcow2] [--min-seq N] [--quiet] IMAGE
 *
 * Reads the image (a qcow2 image, detected by its magic or named with
 * --format, is first converted with `qemu-img convert -O raw` into a
 * temporary file; HANDOVER_QEMU_IMG names another qemu-img), validates
 * every block of the ring and checks that the ring holds exactly the last
 * pass of a contiguous sequence ending at the highest sequence number
 * found: block i must hold the largest seq <= max_seq with
 * (seq - 1) % ring == i, or be all zeroes when no such seq exists yet. A
 * lost write leaves an older seq behind; a torn write fails the checksum.
 *
 * Prints "max_seq=N blocks=M valid=K" on stdout (M: blocks examined, K:
 * valid blocks among them) and the first problems on stderr. Exit status:
 * 0 consistent (and max_seq >= --min-seq), 1 inconsistent, 2 cannot check.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "seqformat.h"

#define MAX_REPORTED 10
/* Bound the per-block bookkeeping (16 bytes a block): 64 GiB of image. */
#define MAX_BLOCKS (16ULL * 1024 * 1024)
#define READ_CHUNK_BLOCKS 256

static const char *const state_names[] = {
    [SEQ_BLOCK_VALID] = "valid",
    [SEQ_BLOCK_ZERO] = "never written",
    [SEQ_BLOCK_NO_MAGIC] = "no magic (foreign data)",
    [SEQ_BLOCK_CHECKSUM] = "bad checksum (torn or corrupted)",
    [SEQ_BLOCK_HEADER] = "header does not match its position",
    [SEQ_BLOCK_FILLER] = "filler does not match its seq",
};

typedef struct {
    bool quiet;
    guint problems;
} Report;

static void problem(Report *r, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void
problem(Report *r, const char *fmt, ...)
{
    va_list ap;

    if (r->problems++ >= MAX_REPORTED || r->quiet)
        return;
    va_start(ap, fmt);
    fputs("seqcheck: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static bool
is_qcow2(const char *path)
{
    unsigned char magic[4] = {0};
    FILE *f = fopen(path, "rbe");
    bool ret;

    if (!f)
        return false;
    ret = fread(magic, 1, sizeof(magic), f) == sizeof(magic) && memcmp(magic, "QFI\xfb", 4) == 0;
    fclose(f);
    return ret;
}

/* Convert a qcow2 image into raw in tmpdir; the raw path, or NULL. */
static char *
convert_to_raw(const char *image, const char *tmpdir)
{
    const char *qemu_img = g_getenv("HANDOVER_QEMU_IMG");
    g_autofree char *raw = g_build_filename(tmpdir, "image.raw", NULL);
    g_autoptr(GError) err = NULL;
    g_autofree char *errout = NULL;
    const char *argv[] = {
        qemu_img ? qemu_img : "qemu-img", "convert", "-O", "raw", image, raw, NULL};
    int status = 0;

    if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, &errout,
                      &status, &err)) {
        fprintf(stderr, "seqcheck: cannot run '%s': %s\n", argv[0], err->message);
        return NULL;
    }
    if (!g_spawn_check_wait_status(status, &err)) {
        fprintf(stderr, "seqcheck: qemu-img convert of '%s' failed: %s\n%s", image, err->message,
                errout ? errout : "");
        return NULL;
    }
    return g_steal_pointer(&raw);
}

/* Read every block: states[i] and seqs[i] (0 unless valid), and the ring
 * size valid blocks agree on (*ring 0 when none is valid). */
static int
read_blocks(const char *path, Report *rep, guint64 *nblocks, guint8 **states_out,
            guint64 **seqs_out, guint64 *ring_out)
{
    g_autofree unsigned char *buf = g_malloc((size_t)READ_CHUNK_BLOCKS * SEQ_BLOCK_SIZE);
    g_autofree guint8 *states = NULL;
    g_autofree guint64 *seqs = NULL;
    guint64 n, pos = 0, ring = 0;
    struct stat st;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        fprintf(stderr, "seqcheck: cannot open '%s': %s\n", path, g_strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    n = (guint64)st.st_size / SEQ_BLOCK_SIZE;
    if (n > MAX_BLOCKS) {
        fprintf(stderr, "seqcheck: '%s' is too large (%" G_GUINT64_FORMAT " blocks)\n", path, n);
        close(fd);
        return -1;
    }
    states = g_new0(guint8, n ? n : 1);
    seqs = g_new0(guint64, n ? n : 1);
    while (pos < n) {
        guint64 want = MIN(n - pos, READ_CHUNK_BLOCKS), i;
        ssize_t got = pread(fd, buf, want * SEQ_BLOCK_SIZE, (off_t)(pos * SEQ_BLOCK_SIZE));

        if (got < 0 && errno == EINTR)
            continue;
        if (got < SEQ_BLOCK_SIZE) {
            fprintf(stderr, "seqcheck: cannot read '%s' at block %" G_GUINT64_FORMAT ": %s\n",
                    path, pos, got < 0 ? g_strerror(errno) : "short read");
            close(fd);
            return -1;
        }
        for (i = 0; i < (guint64)got / SEQ_BLOCK_SIZE; i++) {
            guint64 seq = 0, r = 0;
            SeqBlockState s = seq_block_parse(buf + i * SEQ_BLOCK_SIZE, pos + i, &seq, &r);

            /* A header naming another ring is judged against the first one seen. */
            if (s == SEQ_BLOCK_VALID && ring && r != ring) {
                problem(rep,
                        "block %" G_GUINT64_FORMAT ": ring of %" G_GUINT64_FORMAT
                        " blocks, earlier blocks say %" G_GUINT64_FORMAT,
                        pos + i, r, ring);
                s = SEQ_BLOCK_HEADER;
                seq = 0;
            } else if (s == SEQ_BLOCK_VALID) {
                ring = r;
            }
            states[pos + i] = s;
            seqs[pos + i] = seq;
        }
        pos += (guint64)got / SEQ_BLOCK_SIZE;
    }
    close(fd);
    *nblocks = n;
    *ring_out = ring;
    *states_out = g_steal_pointer(&states);
    *seqs_out = g_steal_pointer(&seqs);
    return 0;
}

static int
check_image(const char *raw, guint64 min_seq, bool quiet)
{
    g_autofree guint8 *states = NULL;
    g_autofree guint64 *seqs = NULL;
    Report rep = {.quiet = quiet};
    guint64 n = 0, ring = 0, blocks, max_seq = 0, valid = 0, i;

    if (read_blocks(raw, &rep, &n, &states, &seqs, &ring) < 0)
        return 2;
    if (ring > n) {
        problem(&rep,
                "the ring has %" G_GUINT64_FORMAT " blocks, the image only %" G_GUINT64_FORMAT,
                ring, n);
        ring = n;
    }
    /* Without a valid block the whole image is examined (and must be empty). */
    blocks = ring ? ring : n;

    for (i = 0; i < blocks; i++) {
        if (states[i] == SEQ_BLOCK_VALID) {
            valid++;
            max_seq = MAX(max_seq, seqs[i]);
        }
    }
    for (i = 0; i < blocks; i++) {
        /* The last seq <= max_seq that maps to block i, or 0 (none yet). */
        guint64 expected = max_seq > i ? max_seq - (max_seq - 1 - i) % ring : 0;

        if (states[i] != SEQ_BLOCK_VALID && states[i] != SEQ_BLOCK_ZERO) {
            problem(&rep, "block %" G_GUINT64_FORMAT ": %s", i, state_names[states[i]]);
        } else if (states[i] == SEQ_BLOCK_ZERO && expected) {
            problem(&rep,
                    "block %" G_GUINT64_FORMAT ": never written, expected seq %" G_GUINT64_FORMAT
                    " (a lost write)",
                    i, expected);
        } else if (states[i] == SEQ_BLOCK_VALID && seqs[i] != expected) {
            problem(&rep,
                    "block %" G_GUINT64_FORMAT ": holds seq %" G_GUINT64_FORMAT
                    ", expected %" G_GUINT64_FORMAT " (a lost write)",
                    i, seqs[i], expected);
        }
    }
    if (max_seq < min_seq)
        problem(&rep, "max_seq %" G_GUINT64_FORMAT " is below the minimum %" G_GUINT64_FORMAT,
                max_seq, min_seq);
    if (rep.problems > MAX_REPORTED && !quiet)
        fprintf(stderr, "seqcheck: ... %u problems in all\n", rep.problems);

    printf("max_seq=%" G_GUINT64_FORMAT " blocks=%" G_GUINT64_FORMAT " valid=%" G_GUINT64_FORMAT
           "\n",
           max_seq, blocks, valid);
    return rep.problems ? 1 : 0;
}

int
main(int argc, char **argv)
{
    g_autofree char *format = NULL;
    gint64 min_seq = 0;
    gboolean quiet = FALSE;
    GOptionEntry entries[] = {
        {"format", 'f', 0, G_OPTION_ARG_STRING, &format, "image format (raw, qcow2)", "FMT"},
        {"min-seq", 'm', 0, G_OPTION_ARG_INT64, &min_seq, "fail below this max_seq", "N"},
        {"quiet", 'q', 0, G_OPTION_ARG_NONE, &quiet, "do not list problems", NULL},
        {NULL},
    };
    g_autoptr(GOptionContext) octx = g_option_context_new("IMAGE");
    g_autoptr(GError) err = NULL;
    g_autofree char *tmpdir = NULL;
    g_autofree char *raw = NULL;
    const char *image;
    int ret;

    g_option_context_add_main_entries(octx, entries, NULL);
    g_option_context_set_summary(octx, "Check a disk image written by the handover test "
                                       "guest's disk writer.");
    if (!g_option_context_parse(octx, &argc, &argv, &err)) {
        fprintf(stderr, "seqcheck: %s\n", err->message);
        return 2;
    }
    if (argc != 2 || min_seq < 0) {
        fprintf(stderr, "usage: seqcheck [--format raw|qcow2] [--min-seq N] [--quiet] IMAGE\n");
        return 2;
    }
    image = argv[1];
    if (!format)
        format = g_strdup(is_qcow2(image) ? "qcow2" : "raw");
    if (g_str_equal(format, "qcow2")) {
        tmpdir = g_dir_make_tmp("seqcheck-XXXXXX", &err);
        if (!tmpdir) {
            fprintf(stderr, "seqcheck: cannot create a temporary directory: %s\n", err->message);
            return 2;
        }
        raw = convert_to_raw(image, tmpdir);
    } else if (g_str_equal(format, "raw")) {
        raw = g_strdup(image);
    } else {
        fprintf(stderr, "seqcheck: unknown format '%s'\n", format);
        return 2;
    }
    ret = raw ? check_image(raw, (guint64)min_seq, quiet) : 2;
    if (tmpdir) {
        g_autofree char *tmpraw = g_build_filename(tmpdir, "image.raw", NULL);

        (void)g_unlink(tmpraw);
        (void)g_rmdir(tmpdir);
    }
    return ret;
}
