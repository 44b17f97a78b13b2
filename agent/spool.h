#ifndef APM_SPOOL_H
#define APM_SPOOL_H

/*
 * The agent's disk spool: every batch is appended to a segment file before
 * (or while) it is sent, so that what the collector has not acked survives a
 * collector outage, a SIGTERM and (but for the last second) a kill -9.
 *
 * Files in the spool directory:
 *   state          instance, the next run's first seq, the acked cursor;
 *                  replaced whole (write state.tmp, fsync, rename, fsync dir)
 *   NNNN...N.seg   segments: an 8-byte magic, then records
 *                  [u32 len][u32 crc32c][u64 seq][u32 nsamples][len bytes]
 *                  (little endian; the CRC covers seq, nsamples and the bytes);
 *                  the payload is the batch encoded alone (apm_spool_encode_batch)
 *
 * Each run keeps the instance of the spool (so the collector's watermark
 * for (agent id, instance) dedupes what it committed but never acked) and
 * takes seqs from a fresh lease of 2^32 numbers above every earlier run's.
 *
 * One thread of its own does all file I/O: appends, an fdatasync at most
 * sync-interval after a write, the cursor, deleting acked segments, the cap
 * (oldest segment first, its unsent records counted as dropped) and replay
 * reads. The loop thread only queues and receives (uv_async). Opening reads
 * and rewrites the small state file, before the loop runs.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/analysis/model.h"

#define APM_SPOOL_MAGIC "APMSPL1\n"
#define APM_SPOOL_REC_HEADER 20u
#define APM_SPOOL_REC_MAX (16u << 20)
#define APM_SPOOL_LEASE (1ull << 32)

struct apm_spool;

struct apm_spool_options {
    const char *dir;        /* created if missing (mode 0750) */
    uint64_t max_bytes;     /* 0 = 256 MiB */
    uint64_t segment_bytes; /* 0 = min(4 MiB, max_bytes / 4) */
    uint64_t sync_ms;       /* 0 = 1000 */
};

struct apm_spool_stats {
    uint64_t records_spooled; /* appended to a segment */
    uint64_t samples_spooled;
    uint64_t records_replayed; /* read back and handed to the uplink */
    uint64_t samples_replayed;
    uint64_t records_dropped; /* unsent records deleted by the cap, or not written */
    uint64_t samples_dropped;
    uint64_t corrupt;       /* torn or bad-CRC places found (each discards the rest of a segment) */
    uint64_t corrupt_bytes; /* bytes discarded from them */
    uint64_t write_errors;
    uint64_t syncs;
    uint64_t bytes; /* gauge: segment bytes on disk */
    uint64_t segments;
};

/* One record read back, in a list ordered by seq. Free with apm_spool_records_free. */
struct apm_spool_record {
    struct apm_spool_record *next;
    uint64_t seq;
    uint32_t nsamples;
    size_t len;
    uint8_t data[];
};

/*
 * Answer to apm_spool_read, on the loop thread: the records after the
 * requested seq (owned by the callee), and through: every record up to it
 * was returned or is gone (acked, dropped, corrupt). at_end: the reader
 * reached the end of what had been appended when it read.
 */
typedef void (*apm_spool_read_cb)(void *ctx, struct apm_spool_record *list, uint64_t through,
                                  bool at_end);
typedef void (*apm_spool_close_cb)(void *ctx);

/* Returns 0 and *out, or a negative code with err filled (names the file). */
int apm_spool_open(uv_loop_t *loop, const struct apm_spool_options *opt, apm_spool_read_cb on_read,
                   void *ctx, struct apm_spool **out, char *err, size_t errlen);

/* The instance to put in Hello, and the first seq of this run. */
uint64_t apm_spool_instance(const struct apm_spool *s);
uint64_t apm_spool_first_seq(const struct apm_spool *s);

/*
 * Queues one record (copied) for the spool thread. in_memory: the uplink
 * holds it too, so the cap deleting it from disk does not lose it.
 * Returns 0, or -ENOMEM when out of memory or when 64 MiB already wait for
 * the thread (a disk that does not keep up); then it is counted as dropped
 * unless in_memory.
 */
int apm_spool_append(struct apm_spool *s, uint64_t seq, uint32_t nsamples, const uint8_t *data,
                     size_t len, bool in_memory);

/* Everything up to seq is acked: the cursor moves (persisted within sync-interval). */
void apm_spool_ack(struct apm_spool *s, uint64_t seq);

/*
 * Asks for the records after seq, up to about max_bytes; the answer comes
 * through on_read. One request at a time: returns APM_E_LIMIT while one is
 * pending.
 */
int apm_spool_read(struct apm_spool *s, uint64_t after, size_t max_bytes);

void apm_spool_get_stats(struct apm_spool *s, struct apm_spool_stats *out);

/*
 * Writes and syncs everything queued, persists the cursor, stops the thread
 * and closes the handle, then fills *final (may be NULL) with the last
 * counters, calls cb and frees. No read answer after this.
 */
void apm_spool_close(struct apm_spool *s, struct apm_spool_stats *final, apm_spool_close_cb cb,
                     void *ctx);

void apm_spool_records_free(struct apm_spool_record *list);

/* A batch encoded alone (its own string tables), and back. 0 or a negative code. */
int apm_spool_encode_batch(const struct apm_batch *b, uint8_t **out, size_t *len);
int apm_spool_decode_batch(const uint8_t *data, size_t len, struct apm_batch **out);

/*
 * Walks a segment's bytes (magic included). Calls fn for each record whose
 * CRC holds, in order; stops at the first torn or bad record. Returns the
 * length of the valid prefix; *bad tells whether anything followed it.
 * Pure: the fuzz target drives it.
 */
typedef void (*apm_spool_rec_fn)(void *ctx, uint64_t seq, uint32_t nsamples, const uint8_t *data,
                                 size_t len);
size_t apm_spool_parse_segment(const uint8_t *buf, size_t len, apm_spool_rec_fn fn, void *ctx,
                               bool *bad);

/* Fills a record's header (length, CRC, seq, sample count) for the payload data[0..len). */
void apm_spool_record_header(uint8_t h[APM_SPOOL_REC_HEADER], uint64_t seq, uint32_t nsamples,
                             const uint8_t *data, size_t len);

#endif
