/*
 * The test guest's on-disk sequence format, shared by the guest-side
 * writer (workload.c, built static for the guest) and the host-side
 * checker (seqcheck.c). Plain C, no GLib: the guest has no libraries.
 *
 * The disk is a ring of 4 KiB blocks starting at byte 0. Sequence numbers
 * start at 1 and block s goes to ring index (s - 1) % ring, so the index of
 * every sequence number is fixed: a lost write shows up as a block still
 * holding the sequence number of an earlier pass. All integers are little
 * endian (the guest and the host are both x86_64).
 *
 *   offset  size  field
 *        0     8  magic "HOSEQ001"
 *        8     8  seq        sequence number, >= 1
 *       16     8  index      ring index, (seq - 1) % ring
 *       24     8  ring       blocks in the ring
 *       32     8  mono_ns    the guest's CLOCK_MONOTONIC at the write (informational)
 *       40     8  checksum   seq_block_checksum() of the block
 *       48  4048  filler     seq_filler_word(seq, i) for the 64-bit words i = 6..511
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define SEQ_BLOCK_SIZE 4096
#define SEQ_BLOCK_WORDS (SEQ_BLOCK_SIZE / 8)
#define SEQ_MAGIC "HOSEQ001"
#define SEQ_MAGIC_LEN 8

enum {
    SEQ_WORD_MAGIC = 0,
    SEQ_WORD_SEQ = 1,
    SEQ_WORD_INDEX = 2,
    SEQ_WORD_RING = 3,
    SEQ_WORD_MONO_NS = 4,
    SEQ_WORD_CHECKSUM = 5,
    SEQ_WORD_FILLER = 6, /* first filler word */
};

/* A 64-bit mixer (splitmix64's finaliser): cheap and well spread, so two
 * different sequence numbers never share filler words by accident. */
static inline uint64_t
seq_mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Filler word i (SEQ_WORD_FILLER <= i < SEQ_BLOCK_WORDS) of the block
 * holding seq: a function of both, so a block written with a stale or a
 * foreign sequence number cannot match. */
static inline uint64_t
seq_filler_word(uint64_t seq, unsigned int i)
{
    return seq_mix64(seq * 0x100000001b3ULL + i);
}

static inline uint64_t
seq_load64(const unsigned char *block, unsigned int word)
{
    uint64_t v;

    memcpy(&v, block + (size_t)word * 8, 8);
    return v;
}

static inline void
seq_store64(unsigned char *block, unsigned int word, uint64_t v)
{
    memcpy(block + (size_t)word * 8, &v, 8);
}

/* The checksum of a block: an FNV-1a style hash over its 512 words with
 * the checksum word counted as zero. Never 0, so an all-zero (never
 * written) block cannot pass as valid. */
static inline uint64_t
seq_block_checksum(const unsigned char *block)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    unsigned int i;

    for (i = 0; i < SEQ_BLOCK_WORDS; i++) {
        uint64_t w = i == SEQ_WORD_CHECKSUM ? 0 : seq_load64(block, i);

        h ^= w;
        h *= 0x100000001b3ULL;
        h ^= h >> 29;
    }
    return h ? h : 1;
}

/* Fill block (SEQ_BLOCK_SIZE bytes) for seq in a ring of ring blocks. */
static inline void
seq_block_fill(unsigned char *block, uint64_t seq, uint64_t ring, uint64_t mono_ns)
{
    unsigned int i;

    memcpy(block, SEQ_MAGIC, SEQ_MAGIC_LEN);
    seq_store64(block, SEQ_WORD_SEQ, seq);
    seq_store64(block, SEQ_WORD_INDEX, (seq - 1) % ring);
    seq_store64(block, SEQ_WORD_RING, ring);
    seq_store64(block, SEQ_WORD_MONO_NS, mono_ns);
    for (i = SEQ_WORD_FILLER; i < SEQ_BLOCK_WORDS; i++)
        seq_store64(block, i, seq_filler_word(seq, i));
    seq_store64(block, SEQ_WORD_CHECKSUM, 0);
    seq_store64(block, SEQ_WORD_CHECKSUM, seq_block_checksum(block));
}

typedef enum {
    SEQ_BLOCK_VALID,    /* a well-formed block */
    SEQ_BLOCK_ZERO,     /* all zeroes: never written */
    SEQ_BLOCK_NO_MAGIC, /* something else entirely */
    SEQ_BLOCK_CHECKSUM, /* magic right, checksum wrong: torn or corrupted */
    SEQ_BLOCK_HEADER,   /* checksum right, header inconsistent */
    SEQ_BLOCK_FILLER,   /* checksum right, filler not the one of its seq */
} SeqBlockState;

/* Classify the block found at ring position pos; on SEQ_BLOCK_VALID the
 * seq and ring it holds are stored in *seq and *ring. */
static inline SeqBlockState
seq_block_parse(const unsigned char *block, uint64_t pos, uint64_t *seq, uint64_t *ring)
{
    uint64_t s, r;
    unsigned int i;

    if (memcmp(block, SEQ_MAGIC, SEQ_MAGIC_LEN) != 0) {
        for (i = 0; i < SEQ_BLOCK_WORDS; i++) {
            if (seq_load64(block, i) != 0)
                return SEQ_BLOCK_NO_MAGIC;
        }
        return SEQ_BLOCK_ZERO;
    }
    if (seq_load64(block, SEQ_WORD_CHECKSUM) != seq_block_checksum(block))
        return SEQ_BLOCK_CHECKSUM;
    s = seq_load64(block, SEQ_WORD_SEQ);
    r = seq_load64(block, SEQ_WORD_RING);
    if (s == 0 || r == 0 || pos >= r || seq_load64(block, SEQ_WORD_INDEX) != pos ||
        (s - 1) % r != pos)
        return SEQ_BLOCK_HEADER;
    for (i = SEQ_WORD_FILLER; i < SEQ_BLOCK_WORDS; i++) {
        if (seq_load64(block, i) != seq_filler_word(s, i))
            return SEQ_BLOCK_FILLER;
    }
    *seq = s;
    *ring = r;
    return SEQ_BLOCK_VALID;
}

/* The RAM dirtier's pattern: word i of page p in generation gen is
 * seq_ram_base(p, gen) + i * SEQ_RAM_STEP (one mix per page keeps a pass
 * cheap under TCG). */
#define SEQ_RAM_STEP 0xd6e8feb86659fd93ULL

static inline uint64_t
seq_ram_base(uint64_t page, uint64_t gen)
{
    return seq_mix64(page * 0x9e3779b97f4a7c15ULL ^ gen);
}
