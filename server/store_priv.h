#ifndef APM_STORE_PRIV_H
#define APM_STORE_PRIV_H

/*
 * What store.c (environment, write path), store_read.c (queries) and
 * store_record.c (value layouts) share. Nothing outside server/store*.c
 * includes this header.
 */
#include <lmdb.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/hashmap.h"
#include "server/chunk.h"
#include "server/store.h"

#define APM_STORE_SCHEMA 1u

/* The named databases, in the order they are opened. */
enum store_db {
    DB_META,       /* "schema", "samples", "dropped" -> u32 / u64 */
    DB_SERIES_KEY, /* host \0 process id \0 metric byte -> series id (u64) */
    DB_SERIES,     /* series id (big-endian u64) -> series record with the open chunk */
    DB_CHUNKS,     /* series id, first t (both big-endian u64) -> sealed chunk */
    DB_HOSTS,      /* host name with its NUL -> host record */
    DB_PROCESSES,  /* "host:pid:start_ms" with its NUL -> process record */
    DB_WATERMARKS, /* agent id with its NUL -> instance, seq */
    DB_VERDICTS,   /* series id (big-endian u64) -> latest analysis verdict (store_verdict.c) */
    DB_ALERTS,     /* alert id (big-endian u64) -> alert record (store_alerts.c) */
    DB_COUNT
};

/*
 * A series as the writer thread keeps it between transactions: its record
 * fields and the open (head) chunk being appended to. Loaded lazily from
 * DB_SERIES; dropped from memory when a transaction that changed it aborts.
 */
struct store_series {
    uint64_t id;
    char *key; /* DB_SERIES_KEY key, klen bytes; host, process id and name follow */
    size_t klen;
    const char *host;
    const char *process_id;
    const char *process_name;
    int32_t pid;
    enum apm_metric metric;
    int64_t first_ms;
    int64_t last_ms;
    int64_t last_value;
    uint64_t nsamples;
    struct apm_chunk_enc head;
    struct store_series *next_dirty;
    bool dirty;
};

struct apm_store {
    MDB_env *env;
    MDB_dbi dbi[DB_COUNT];
    unsigned chunk_samples;
    /* Writer thread only. */
    struct apm_hashmap index; /* series key -> struct store_series * */
    /*
     * Process and host ids -> last_seen_ms last written. Their records are
     * rewritten only when new or older than APM_STORE_SEEN_REFRESH_MS, not
     * on every batch; cleared on abort, since it may name unwritten records.
     */
    struct apm_hashmap seen;
    uint64_t next_series_id;
    uint64_t samples;
    uint64_t dropped;
    struct apm_store_txn *txn;
    /* Any thread. */
    atomic_uint_fast64_t commits;
};

struct apm_store_txn {
    struct apm_store *s;
    MDB_txn *txn;
    struct store_series *dirty;
    uint64_t next_series_id; /* to restore on abort */
    uint64_t samples;
    uint64_t dropped;
};

/* How stale a process's or host's last_seen may be before its record is rewritten. */
#define APM_STORE_SEEN_REFRESH_MS 10000

/* Translates an LMDB return code (logging what it means). */
int apm_store_mdb_error(int rc, const char *what);

/* Big-endian keys keep LMDB's byte order equal to numeric order. */
void apm_store_put_be64(uint8_t *p, uint64_t v);
uint64_t apm_store_get_be64(const uint8_t *p);

/* ---- records (store_record.c); every parse checks lengths ---- */

struct store_series_record {
    struct apm_series_info info;
    uint8_t shift_hint; /* for an empty open chunk: apm_chunk_enc_reset's hints */
    int64_t dt_hint;
    int64_t head_first_t;
    const uint8_t *head;
    size_t head_len;
};

/* Returns an owned buffer of *len bytes (free with free()) or NULL. */
uint8_t *apm_store_record_series(const struct store_series *ser, size_t *len);
int apm_store_record_parse_series(const void *buf, size_t len, uint64_t id,
                                  struct store_series_record *out);

uint8_t *apm_store_record_host(const struct apm_host_info *h, size_t *len);
int apm_store_record_parse_host(const void *buf, size_t len, const char *host,
                                struct apm_host_info *out);

uint8_t *apm_store_record_process(const struct apm_process_info *p, size_t *len);
int apm_store_record_parse_process(const void *buf, size_t len, const char *id,
                                   struct apm_process_info *out);

#endif
