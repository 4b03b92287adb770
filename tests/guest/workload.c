/*
 * The test guest's workload, built static (gcc -static) by
 * scripts/build-test-guest.sh and started by the guest's /init:
 *
 *   workload disk --dev /dev/vda [--blocks N] [--every N] [--rate N]
 *   workload ram --mib M [--rate MIBPS]
 *
 * disk: writes SEQ_BLOCK_SIZE blocks in the format of seqformat.h to a
 * ring at the start of the device, one at a time with O_DIRECT|O_SYNC, so
 * a block is on the (virtual) disk before the next is written. It first
 * reads the ring back and continues after the highest sequence number
 * found, so a guest booted again on the same disk keeps the ring
 * consistent. Prints "HANDOVER-SEQ <seq>" after every N-th write and at
 * least once a second: seq and everything before it has been written.
 *
 * ram: dirties M MiB of anonymous memory in passes (generations); each
 * pass first checks that every page still holds the previous
 * generation's pattern, then writes the new one, so each page's content
 * has to survive a whole pass (and whatever migration happened in it).
 * After a pass: "HANDOVER-RAM ok gen=<g>" (at most one a second) or, at
 * once, "HANDOVER-RAM BAD page=<p> gen=<g> bad_pages=<n>".
 *
 * Output goes to stdout (the serial console) one whole line per write(2),
 * so lines from the two processes never mix.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "seqformat.h"

#define NS_PER_SEC 1000000000ULL
#define SCAN_CHUNK (1024 * 1024)
#define PAGE_BYTES 4096
#define PAGE_WORDS (PAGE_BYTES / 8)

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One line, one write(2). */
static void
say(const char *fmt, ...)
{
    char line[256];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n > (int)sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    while (write(STDOUT_FILENO, line, n) < 0 && errno == EINTR)
        ;
}

static uint64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

static void
sleep_until_ns(uint64_t deadline)
{
    struct timespec ts = {.tv_sec = deadline / NS_PER_SEC, .tv_nsec = deadline % NS_PER_SEC};

    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* A steady rate of events per second: wait for the next slot. A pacer
 * more than a second behind (the VM was paused) starts afresh instead of
 * catching up in a burst. */
typedef struct {
    uint64_t interval_ns; /* 0: no limit */
    uint64_t next_ns;
} Pacer;

static void
pacer_init(Pacer *p, uint64_t per_sec)
{
    p->interval_ns = per_sec ? NS_PER_SEC / per_sec : 0;
    p->next_ns = now_ns();
}

static void
pacer_wait(Pacer *p)
{
    uint64_t now;

    if (!p->interval_ns)
        return;
    now = now_ns();
    if (now > p->next_ns + NS_PER_SEC)
        p->next_ns = now;
    if (p->next_ns > now)
        sleep_until_ns(p->next_ns);
    p->next_ns += p->interval_ns;
}

static int
parse_u64(const char *s, const char *what, uint64_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') {
        say("HANDOVER-WORKLOAD error: bad %s '%s'", what, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int
device_size(int fd, uint64_t *size)
{
    struct stat st;

    if (fstat(fd, &st) < 0)
        return -1;
    if (S_ISBLK(st.st_mode))
        return ioctl(fd, BLKGETSIZE64, size);
    *size = (uint64_t)st.st_size;
    return 0;
}

/* The highest sequence number of a valid block of this ring, or 0. */
static uint64_t
disk_scan(int fd, uint64_t ring, unsigned char *buf)
{
    uint64_t pos = 0, max_seq = 0;

    while (pos < ring) {
        uint64_t want = ring - pos;
        ssize_t got;
        uint64_t i;

        if (want > SCAN_CHUNK / SEQ_BLOCK_SIZE)
            want = SCAN_CHUNK / SEQ_BLOCK_SIZE;
        got = pread(fd, buf, want * SEQ_BLOCK_SIZE, (off_t)(pos * SEQ_BLOCK_SIZE));
        if (got < 0 && errno == EINTR)
            continue;
        if (got < SEQ_BLOCK_SIZE) {
            say("HANDOVER-DISK error: cannot read block %" PRIu64 ": %s", pos,
                got < 0 ? strerror(errno) : "short read");
            break;
        }
        for (i = 0; i < (uint64_t)got / SEQ_BLOCK_SIZE; i++) {
            uint64_t seq, r;

            if (seq_block_parse(buf + i * SEQ_BLOCK_SIZE, pos + i, &seq, &r) == SEQ_BLOCK_VALID &&
                r == ring && seq > max_seq)
                max_seq = seq;
        }
        pos += (uint64_t)got / SEQ_BLOCK_SIZE;
    }
    return max_seq;
}

static int
run_disk(const char *dev, uint64_t blocks, uint64_t every, uint64_t rate)
{
    unsigned char *buf;
    uint64_t size, ring, seq, last_print_ns;
    Pacer pacer;
    int fd;

    fd = open(dev, O_RDWR | O_DIRECT | O_SYNC | O_CLOEXEC);
    if (fd < 0) {
        say("HANDOVER-DISK error: cannot open '%s': %s", dev, strerror(errno));
        return 1;
    }
    if (device_size(fd, &size) < 0) {
        say("HANDOVER-DISK error: cannot get the size of '%s': %s", dev, strerror(errno));
        return 1;
    }
    ring = size / SEQ_BLOCK_SIZE;
    if (blocks && blocks < ring)
        ring = blocks;
    if (ring == 0) {
        say("HANDOVER-DISK error: '%s' holds no whole block", dev);
        return 1;
    }
    if (posix_memalign((void **)&buf, SEQ_BLOCK_SIZE, SCAN_CHUNK) != 0) {
        say("HANDOVER-DISK error: out of memory");
        return 1;
    }
    seq = disk_scan(fd, ring, buf) + 1;
    say("HANDOVER-DISK start seq=%" PRIu64 " ring=%" PRIu64 " dev=%s", seq, ring, dev);

    pacer_init(&pacer, rate);
    last_print_ns = now_ns();
    for (;; seq++) {
        uint64_t idx = (seq - 1) % ring, now;
        ssize_t n;

        pacer_wait(&pacer);
        seq_block_fill(buf, seq, ring, now_ns());
        while ((n = pwrite(fd, buf, SEQ_BLOCK_SIZE, (off_t)(idx * SEQ_BLOCK_SIZE))) !=
               SEQ_BLOCK_SIZE) {
            if (n < 0 && errno == EINTR)
                continue;
            /* Keep the sequence: retry the same block until it is written. */
            say("HANDOVER-DISK error: write of seq=%" PRIu64 " failed: %s", seq,
                n < 0 ? strerror(errno) : "short write");
            sleep(1);
        }
        now = now_ns();
        if (seq % every == 0 || now - last_print_ns >= NS_PER_SEC) {
            say("HANDOVER-SEQ %" PRIu64, seq);
            last_print_ns = now;
        }
    }
    return 0;
}

static int
run_ram(uint64_t mib, uint64_t rate)
{
    uint64_t pages = mib * 1024 * 1024 / PAGE_BYTES;
    uint64_t pages_per_mib = 1024 * 1024 / PAGE_BYTES;
    uint64_t gen, last_print_ns = 0;
    uint64_t *mem;
    Pacer pacer;

    if (pages == 0) {
        say("HANDOVER-RAM error: nothing to dirty");
        return 1;
    }
    mem = mmap(NULL, pages * PAGE_BYTES, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (mem == MAP_FAILED) {
        say("HANDOVER-RAM error: cannot allocate %" PRIu64 " MiB: %s", mib, strerror(errno));
        return 1;
    }
    say("HANDOVER-RAM start mib=%" PRIu64, mib);
    pacer_init(&pacer, rate);

    for (gen = 1;; gen++) {
        uint64_t p, bad = 0, first_bad = 0, now;

        for (p = 0; p < pages; p++) {
            uint64_t *page = mem + p * PAGE_WORDS;
            uint64_t old = seq_ram_base(p, gen - 1);
            uint64_t new = seq_ram_base(p, gen);
            unsigned int i;

            if (p % pages_per_mib == 0)
                pacer_wait(&pacer);
            /* Generation 0 is the untouched buffer: nothing to check. */
            if (gen > 1) {
                for (i = 0; i < PAGE_WORDS; i++) {
                    if (page[i] != old + (uint64_t)i * SEQ_RAM_STEP) {
                        if (!bad++)
                            first_bad = p;
                        break;
                    }
                }
            }
            for (i = 0; i < PAGE_WORDS; i++)
                page[i] = new + (uint64_t)i *SEQ_RAM_STEP;
        }
        now = now_ns();
        if (bad) {
            say("HANDOVER-RAM BAD page=%" PRIu64 " gen=%" PRIu64 " bad_pages=%" PRIu64, first_bad,
                gen, bad);
        } else if (gen > 1 && now - last_print_ns >= NS_PER_SEC) {
            say("HANDOVER-RAM ok gen=%" PRIu64, gen);
            last_print_ns = now;
        }
    }
    return 0;
}

static void
usage(void)
{
    say("HANDOVER-WORKLOAD error: usage: workload disk --dev PATH [--blocks N] [--every N] "
        "[--rate N] | workload ram --mib M [--rate MIBPS]");
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"dev", required_argument, NULL, 'd'},   {"blocks", required_argument, NULL, 'b'},
        {"every", required_argument, NULL, 'e'}, {"rate", required_argument, NULL, 'r'},
        {"mib", required_argument, NULL, 'm'},   {NULL, 0, NULL, 0},
    };
    const char *mode, *dev = NULL;
    uint64_t blocks = 0, every = 64, rate = 0, mib = 32;
    int c;

    if (argc < 2) {
        usage();
        return 2;
    }
    mode = argv[1];
    optind = 2;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            dev = optarg;
            break;
        case 'b':
            if (parse_u64(optarg, "--blocks", &blocks) < 0)
                return 2;
            break;
        case 'e':
            if (parse_u64(optarg, "--every", &every) < 0)
                return 2;
            if (every == 0)
                every = 1;
            break;
        case 'r':
            if (parse_u64(optarg, "--rate", &rate) < 0)
                return 2;
            break;
        case 'm':
            if (parse_u64(optarg, "--mib", &mib) < 0)
                return 2;
            if (mib > 1024 * 1024) {
                say("HANDOVER-WORKLOAD error: --mib %" PRIu64 " is too large", mib);
                return 2;
            }
            break;
        default:
            usage();
            return 2;
        }
    }
    if (optind != argc) {
        usage();
        return 2;
    }
    if (strcmp(mode, "disk") == 0 && dev)
        return run_disk(dev, blocks, every, rate);
    if (strcmp(mode, "ram") == 0)
        return run_ram(mib, rate);
    usage();
    return 2;
}
