#ifndef APM_STORE_PRIV_H
#define APM_STORE_PRIV_H

/*
 * What the store's files share: store.c (environment, series index,
 * appending), store_batch.c (a batch's write path), store_probe.c (the
 * probe's series), store_key.c (keys), store_read.c (queries) and
 * store_record.c (value layouts). Calls go one way: store_batch.c calls
 * store_probe.c, both call store.c; everything may call store_key.c and
 * store_record.c. store_pack.c (packed periods) is called by store_read.c
 * and store_retention.c. Nothing outside server/store/ includes this header.
 */
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/base/hashmap.h"
#include "common/base/log.h"
#include "server/store/chunk.h"
#include "server/store/store.h"
#include "server/store/store_log.h"

#define APM_STORE_SCHEMA 2u /* 2: chunk formats 2 and 3, packed periods, the write-ahead log */

/* The named databases, in the order they are opened. */
enum store_db {
    DB_META,       /* "schema", "samples", "dropped", "series_next" -> u32 / u64 */
    DB_SERIES_KEY, /* host \0 process id \0 metric byte [site \0] -> series id (u64) */
    DB_SERIES,     /* series id (big-endian u64) -> series record with the open chunk */
    DB_CHUNKS,     /* series id, first t (both big-endian u64) -> sealed chunk */
    DB_HOSTS,      /* host name with its NUL -> host record */
    DB_PROCESSES,  /* "host:pid:start_ms" with its NUL -> process record */
    DB_WATERMARKS, /* agent id with its NUL -> instance, seq */
    DB_VERDICTS,   /* series id (big-endian u64) -> latest analysis verdict (store_verdict.c) */
    DB_ALERTS,     /* alert id (big-endian u64) -> alert record (store_alerts.c) */
    DB_ROLLUPS,    /* 0xf0, block end, resolution, series id -> block of rollups (store_rollup.c) */
    DB_ROLLUP_WM,  /* series id -> u64 [2]: raw samples before these times are rolled (1m, 1h) */
    DB_RW_CURSOR,  /* series id -> i64: the last sample time remote-write sent (store_rwcursor.c) */
    DB_RW_PENDING, /* series id -> i64: the last sample time of the request in flight (ditto) */
    DB_SILENCES,   /* silence id (big-endian u64) -> silence record (store_alerts.c) */
    DB_PACKED,     /* period start, series id, first t (big-endian) -> chunk (store_pack.c) */
    DB_LOG,        /* entry number (big-endian u64) -> a commit's samples (store_log.c) */
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
    const char *process_name; /* in the allocation, or renamed */
    char *renamed;            /* owned: the process's name when it changed after creation */
    const char *site;         /* in the key after the metric byte for site metrics, else "" */
    int32_t pid;
    enum apm_metric metric;
    int64_t first_ms;
    int64_t last_ms;
    int64_t last_value;
    uint64_t nsamples;
    struct apm_chunk_enc head;
    struct store_series *next_dirty;
    bool dirty;
    /* The write-ahead log (store_log.c). */
    bool appended;                  /* samples appended in this transaction */
    bool ckpt;                      /* on the transaction's list of records to write */
    bool gone;                      /* removed from the store in this transaction */
    struct store_series *next_ckpt; /* that list */
    uint64_t log_seq;               /* 0: DB_SERIES holds it all; else its first log entry since */
    int64_t log_ms;                 /* wall clock of that entry */
    int64_t rec_last;               /* last_ms in its DB_SERIES record, INT64_MIN: no samples */
    struct store_series *fifo_prev, *fifo_next; /* apm_store::fifo, while log_seq != 0 */
    struct store_head *pub;                     /* its published head (store_head.c), or NULL */
};

struct apm_store {
    MDB_env *env;
    int lock_fd; /* DIR/apm.lock, flocked exclusively while the store is open */
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
    uint8_t *scratch; /* series records are laid out here before mdb_put */
    size_t scratch_cap;
    struct apm_store_txn *txn;
    unsigned max_sites;
    int64_t forget_after_ms;
    int64_t forgotten_at_ms; /* wall time of the last sweep of the index */
    /* Process id -> allocation sites stored; counted from LMDB on first use, cleared on abort. */
    struct apm_hashmap site_counts;
    /* Maintenance (store_retention.c), writer thread only. */
    int64_t retention_ms;
    bool rw_hold;             /* keep raw data remote-write has not sent (DB_RW_CURSOR) */
    int64_t rollup_ms[2];     /* retention of the 1m and 1h rollups */
    int64_t rollup_expire[2]; /* the next block start to expire (INT64_MIN: from the oldest) */
    uint64_t maint_next_id;   /* the next series the pass looks at */
    int64_t pressure_cutoff;  /* raw chunks ending before this go now (disk budget), else 0 */
    int64_t oldest_raw_ms;    /* oldest sealed chunk seen by the last pass */
    int64_t pass_oldest_ms;   /* ... by the pass going on */
    int64_t last_prune_log_ms;
    int64_t last_slow_log_ms;
    int64_t last_full_log_ms; /* "store: full", logged once a minute at most (per reason) */
    int last_full_logged;
    int64_t maint_now; /* the wall clock of the slice going on */
    /* Packed periods (store_pack.c): period length (0 = off), the next to pack, this pass's. */
    int64_t pack_ms;
    int64_t pack_next; /* INT64_MIN until a pass packed one ("pack_next" in DB_META) */
    int64_t pack_cur;  /* the period this pass packs, or INT64_MIN */
    long pack_room;    /* free bytes in DB_PACKED's last leaf page, -1 unknown (store_pack.c) */
    int64_t pass_oldest_live; /* oldest sealed chunk left in DB_CHUNKS seen by the pass */
    int64_t oldest_live_ms;   /* ... by the last pass */
    /*
     * The map may only be resized with no transaction open in the process:
     * every transaction outside the writer thread holds this lock shared,
     * and a resize (writer thread, between its transactions) takes it alone.
     */
    pthread_rwlock_t resize_lock;
    uint64_t max_disk;
    /* Any thread. */
    pthread_mutex_t failure_mu;       /* guards failure_log */
    struct apm_log_limit failure_log; /* failed commits, logged rate-limited */
    atomic_uint_fast64_t commits;
    atomic_uint_fast64_t sites_refused;
    atomic_uint_fast64_t forgotten; /* series dropped from the index after forget_after_ms */
    atomic_uint_fast64_t m[16];     /* maintenance counters, enum store_mcounter */
    atomic_uint_fast64_t map_size;
    atomic_int full; /* refusing batches: FULL_BUDGET (nothing left to delete) or FULL_DISK */
    /*
     * Writer thread: whether its last commit failed on a full disk (not a
     * full map); taken by the next apm_store_make_room, since growing the
     * map or deleting data does not give the disk back its space, and the
     * cut-off a deletion needs would close in on now with every failed round.
     */
    atomic_int disk_full;
    /* 1 while apm_store_backup copies: its read transaction holds resize_lock shared. */
    atomic_int backup_running;
    /* The write-ahead log (store_log.c), writer thread only. */
    uint64_t log_next;    /* number of the next log entry */
    int64_t ckpt_ms;      /* a logged series' record is written within this */
    int64_t last_ckpt_ms; /* wall clock of the last commit that chose checkpoints */
    struct store_series *fifo_first, *fifo_last; /* series with log_seq != 0, oldest first */
    size_t fifo_len;
    /* Published heads (store_head.c), any thread. */
    struct store_heads *heads;
};

/* Values of apm_store::full. */
enum { FULL_NO, FULL_BUDGET, FULL_DISK };

/* Maintenance counters in apm_store::m, reported by apm_store_stats. */
enum store_mcounter {
    MC_CHUNKS_DELETED,
    MC_CHUNKS_PRUNED,
    MC_HEADS_DROPPED,
    MC_SERIES_REMOVED,
    MC_PROCESSES_REMOVED,
    MC_HOSTS_REMOVED,
    MC_ROLLUPS_WRITTEN,
    MC_ROLLUPS_DELETED,
    MC_SLICES,
    MC_PASSES,
    MC_SLICE_US_MAX,
    MC_MAP_GROWS,
    MC_RW_UNSENT_DROPPED,
    MC_CHUNKS_PACKED,
    MC_COUNT
};

/*
 * Read transactions (and write transactions of threads other than the
 * writer's) begin and end here, under the resize lock shared.
 */
int apm_store_read_begin(struct apm_store *s, MDB_txn **txn);
int apm_store_other_write_begin(struct apm_store *s, MDB_txn **txn);
void apm_store_read_end(struct apm_store *s, MDB_txn *txn);
/* Commits (apm_store_commit) a transaction of apm_store_other_write_begin; releases the lock. */
int apm_store_other_write_commit(struct apm_store *s, MDB_txn *txn);

/* The first sealed chunk's or rollup's key: series id, then a time with its sign bit flipped. */
void apm_store_chunk_key(uint8_t key[16], uint64_t id, int64_t t);
int64_t apm_store_chunk_key_t(const MDB_val *k);

struct store_series_record;

/*
 * Raw samples of a series in an open transaction, from_ms <= t <= to_ms,
 * sealed chunks then the open chunk of rec (store_read.c).
 */
int apm_store_txn_read_samples(struct apm_store *s, MDB_txn *txn, uint64_t id,
                               const struct store_series_record *rec, int64_t from_ms,
                               int64_t to_ms, apm_store_sample_cb cb, void *ctx);

/* The value of a u64 in DB_META (0 when missing), and writing one (store.c). */
/* At the start of a maintenance pass: grows the map early, and sets the pressure cut-off near
 * the disk budget (store_budget.c). */
int apm_store_budget_check(struct apm_store *s, int64_t now);
/* The series index (store_series.c): sets a series' state from its stored record; frees every
 * indexed series (at close). */
int apm_store_series_set(struct store_series *ser, const struct store_series_record *rec);
void apm_store_index_free_all(struct apm_store *s);
int apm_store_meta_get(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t *out);
int apm_store_meta_put(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t value);

/* ---- packed periods (store_pack.c) ---- */

/* DB_PACKED's key: period start, series id, the piece's first t (times with the sign flipped). */
#define PACK_KEY_LEN 24u
void apm_store_pack_key(uint8_t key[PACK_KEY_LEN], int64_t period, uint64_t id, int64_t t);
int64_t apm_store_pack_key_period(const MDB_val *k);
/* The first period start present after period (cur on DB_PACKED), or INT64_MAX. */
int64_t apm_store_pack_next_period(MDB_cursor *cur, int64_t period, int *err);
/*
 * Moves the series' sealed chunks that start before end into DB_PACKED: the
 * samples in [period, end) as pieces of that period appended at the end of
 * the database, earlier (late) ones to the period holding their time, later
 * ones back into DB_CHUNKS as one chunk. Adds the keys written to *keys.
 */
int apm_store_pack_series(struct apm_store_txn *t, uint64_t id, int64_t period, int64_t end,
                          unsigned *keys);
/*
 * Moves the samples before end of a series' open chunk that holds samples
 * on both sides of end into a sealed chunk in DB_CHUNKS (to be packed);
 * the open chunk keeps the rest. The writer's series (marked dirty).
 */
int apm_store_pack_cut_head(struct apm_store_txn *t, struct store_series *ser, int64_t end,
                            unsigned *keys);
/*
 * Calls emit(ctx, piece, first t) for the series' packed pieces that may hold
 * samples in [from_ms, to_ms], in time order. Returns 0, emit's nonzero
 * return, or an error.
 */
int apm_store_packed_read(struct apm_store *s, MDB_txn *txn, uint64_t id, int64_t from_ms,
                          int64_t to_ms, int (*emit)(void *ctx, const MDB_val *v, int64_t first_t),
                          void *ctx);

/* ---- rollups (store_rollup.c) ---- */

/* Index 0 (1 minute) or 1 (1 hour) of a resolution. */
#define ROLLUP_RES(i) ((i) == 0 ? (int64_t)APM_ROLLUP_1M : (int64_t)APM_ROLLUP_1H)

/* Floor division of t by r, times r: the start of t's bucket (also for t < 0). */
int64_t apm_rollup_floor(int64_t t, int64_t r);
void apm_rollup_add(struct apm_rollup *r, int64_t v);
/* a then b (b later in time) -> a. */
void apm_rollup_merge(struct apm_rollup *a, const struct apm_rollup *b);
/* Layout 1's key (one bucket an entry; read and moved, no longer written): series id, resolution
 * index, bucket start. Its ids sort before ROLLUP_TAG, and its length differs. */
#define ROLLUP_KEY_LEN 17u
void apm_rollup_key(uint8_t key[ROLLUP_KEY_LEN], uint64_t id, int res_i, int64_t start);
int apm_rollup_decode(const void *buf, size_t len, struct apm_rollup *out);
/*
 * Layout 2: blocks of consecutive buckets, one entry per (resolution, block,
 * series), written once, ROLLUP_GRACE after the block's end (store_retention.c);
 * its key: ROLLUP_TAG, key time = block end + ROLLUP_GRACE (sign bit flipped),
 * resolution index, series id (big-endian). The key time is about when the
 * block is written, so a pass's blocks (every series in id order) go after
 * every key before them, whichever the resolution, and fill pages.
 */
#define ROLLUP_TAG 0xf0u
#define ROLLUP_BLOCK_KEY_LEN 18u
#define ROLLUP_BLOCK_MAX APM_ROLLUP_BLOCK_MAX
#define ROLLUP_BLOCK_BUCKETS(i) ((i) == 0 ? 60 : 24)
#define ROLLUP_BLOCK(i) (ROLLUP_RES(i) * ROLLUP_BLOCK_BUCKETS(i))
/*
 * How long after its end a block is written: longer than a kept series'
 * interval (at most a quarter of the bucket) and its batches' delay.
 */
#define ROLLUP_GRACE(i) ((i) == 0 ? 10 * 60000LL : 2 * 3600000LL)
#define ROLLUP_KEY_TIME(i, start) ((start) + ROLLUP_BLOCK(i) + ROLLUP_GRACE(i))
void apm_rollup_block_key(uint8_t key[ROLLUP_BLOCK_KEY_LEN], int res_i, int64_t start, uint64_t id);
/* 0, or -1 for a key that is not a block's (layout 1). */
int apm_rollup_block_key_parse(const MDB_val *k, int *res_i, int64_t *start, uint64_t *id);
/* The block codec is in store.h (apm_rollup_block_encode, a fuzz target's too). */
/* Reads rollups in a transaction (see apm_store_read_rollups). */
int apm_store_txn_read_rollups(struct apm_store *s, MDB_txn *txn, uint64_t id, int res_i,
                               int64_t from_ms, int64_t to_ms, apm_store_rollup_cb cb, void *ctx);
/* The watermarks: raw samples before wm[i] are in the rollups of resolution i. */
int apm_store_rollup_wm(struct apm_store *s, MDB_txn *txn, uint64_t id, int64_t wm[2]);
/* The remote-write cursor of one series inside txn (store_rwcursor.c): 0 or APM_E_NOTFOUND. */
int apm_store_txn_rw_cursor(struct apm_store *s, MDB_txn *txn, uint64_t id, int64_t *t_ms);

struct apm_store_txn {
    struct apm_store *s;
    MDB_txn *txn;
    struct store_series *dirty;
    uint64_t next_series_id;  /* read from the store at begin; ids created in this txn follow */
    uint64_t first_series_id; /* next_series_id at begin */
    uint64_t samples;
    uint64_t dropped;
    uint64_t sites_refused;
    /* The samples appended, for the log entry (store_log.c); cuts: where entries end. */
    uint8_t *log;
    size_t log_len, log_cap;
    size_t log_entry_start;
    uint64_t log_id; /* the previous group's id, t and value in the entry being built */
    int64_t log_t, log_v;
    size_t *cuts;
    size_t ncuts, cuts_cap;
    struct store_series *ckpt; /* series whose record is written at commit */
    bool ckpt_logged;          /* ... some of which had samples only in the log */
};

/* ---- the write-ahead log (store_log.c) ---- */

/* Logs n samples of ser being appended (accepted ones only). Returns 0 or -ENOMEM. */
int apm_store_log_group(struct apm_store_txn *t, const struct store_series *ser, uint32_t n);
void apm_store_log_sample(struct apm_store_txn *t, int64_t ts, int64_t v);
/* Puts ser on t's list of records written at commit (a seal, a new series, maintenance). */
void apm_store_checkpoint_later(struct apm_store_txn *t, struct store_series *ser);
/*
 * At commit, before the records are written: picks the oldest logged series
 * due, appends the log entries and deletes those no series needs any more.
 */
int apm_store_log_commit(struct apm_store_txn *t, uint64_t *first_seq);
/*
 * After a successful commit: the series' log state and published heads; empties
 * t's lists. Returns the series removed from the store, chained by fifo_next
 * (to free).
 */
struct store_series *apm_store_log_committed(struct apm_store_txn *t, uint64_t first_seq,
                                             int64_t now_ms);
/*
 * Replays the log into the writer's series: every series when only is NULL
 * (open), else only the ids in only (8-byte big-endian keys -> struct
 * store_series *, reset to their records). Writes nothing.
 */
int apm_store_log_replay(struct apm_store *s, struct apm_hashmap *only);
/* Writes the record of every series with samples only in the log (a clean close). */
void apm_store_checkpoint_all(struct apm_store *s);
/* Unlinks ser from the checkpoint queue. */
void apm_store_fifo_unlink(struct apm_store *s, struct store_series *ser);
/* Writes ser's record now (a maintenance read wants it current) and at commit. */
int apm_store_series_sync(struct apm_store_txn *t, uint64_t id, struct store_series_record *rec);
/* The series was removed from the store in t: forgotten at commit (at once if untouched). */
void apm_store_series_gone(struct apm_store_txn *t, struct store_series *ser);
/* Frees a series of the writer's index (its published head stays unless unpublish). */
void apm_store_series_release(struct apm_store *s, struct store_series *ser, bool unpublish);
/* Builds a writer's series from its record (store.c). */
int apm_store_series_from_record(const char *key, size_t klen, uint64_t id,
                                 const struct store_series_record *rec, struct store_series **out);
/* Writes ser's record in t (store.c). */
int apm_store_write_series(struct apm_store_txn *t, const struct store_series *ser);

/* ---- published heads (store_head.c) ---- */

struct store_head;
struct store_heads;
/* A reader's copy of a published head. */
struct store_head_snap {
    bool found;
    int64_t ckpt_t;
    int64_t first_ms, last_ms, last_value;
    uint64_t nsamples;
    int64_t head_first_t;
    uint8_t *buf; /* owned */
    uint32_t len;
};
int apm_store_heads_new(struct store_heads **out);
void apm_store_heads_free(struct store_heads *h);
/* Copies ser's head and fields for readers (writer thread, after a commit). */
int apm_store_head_publish(struct apm_store *s, struct store_series *ser);
void apm_store_head_unpublish(struct apm_store *s, uint64_t id);
/*
 * Reads the record of id in *txn and copies its published head into snap
 * (free with apm_store_head_snap_free); renews *txn (apm_store_read_begin)
 * when a checkpoint committed after its snapshot. Any thread but the writer's.
 */
int apm_store_read_record(struct apm_store *s, MDB_txn **txn, uint64_t id,
                          struct store_series_record *rec, struct store_head_snap *snap);
/* Emits the head's samples newer than rec's in [from_ms, to_ms]: 0, 1 (stopped) or a code. */
int apm_store_head_emit(const struct store_head_snap *snap, const struct store_series_record *rec,
                        int64_t from_ms, int64_t to_ms, apm_store_sample_cb cb, void *ctx);
void apm_store_head_snap_free(struct store_head_snap *snap);
/* Brings a record's last_ms, last_value, nsamples (first_ms) up to the published head. */
void apm_store_head_overlay(const struct store_head_snap *snap, struct apm_series_info *info);
int apm_store_series_info_live(struct apm_store *s, struct apm_series_info *info);

#define PROCESS_ID_MAX APM_STORE_PROCESS_ID_MAX
#define STORE_HOST_MAX APM_STORE_HOST_MAX
#define STORE_KEY_BUF APM_STORE_KEY_MAX

/* ---- keys (store_key.c, with apm_store_series_key) ---- */

/* True for metrics whose series key carries an allocation site. */
bool apm_store_metric_has_site(enum apm_metric m);

/*
 * The key of process_id's series of metric m (with site for site metrics; site
 * NULL gives the prefix of all of them) into key (STORE_KEY_BUF bytes). host
 * NULL takes the host from the process id. Returns 0, or APM_E_NOTFOUND for a
 * name no series can have.
 */
int apm_store_process_key(const char *host, const char *process_id, enum apm_metric m,
                          const char *site, char *key, size_t *klen);

/*
 * Finds or creates the series with this key and marks it dirty in t
 * (store.c). name and pid describe the process for a new series.
 */
int apm_store_series_get(struct apm_store_txn *t, const char *key, size_t klen, const char *name,
                         int32_t pid, enum apm_metric metric, struct store_series **out);
/* True when the series exists (in the writer's index or in LMDB). */
int apm_store_series_exists(struct apm_store_txn *t, const char *key, size_t klen);
/* Appends one block of samples to a series (store.c). */
int apm_store_put_block(struct apm_store_txn *t, struct store_series *ser,
                        const struct apm_series_block *blk);
/*
 * Stores the batch's tracemalloc diffs and gc records (store_probe.c, called
 * by store_batch.c):
 * pids[i] is the process id of b->procs[i].
 */
int apm_store_put_probe(struct apm_store_txn *t, const char *host, const struct apm_batch *b,
                        char (*pids)[PROCESS_ID_MAX]);

/* How stale a process's or host's last_seen may be before its record is rewritten. */
#define APM_STORE_SEEN_REFRESH_MS 10000

/* Reads a series record in txn. Returns 0, APM_E_NOTFOUND or an error (store_read.c). */
int apm_store_get_record(struct apm_store *s, MDB_txn *txn, uint64_t id,
                         struct store_series_record *rec);

/*
 * Commits txn (which ends, whatever the outcome). Returns 0, APM_E_FULL for a
 * full disk (a short write LMDB calls EIO) or APM_E_STORE; failures are
 * logged under one rate limit shared by every thread, and the first commit
 * after them logs their summary.
 */
int apm_store_commit(struct apm_store *s, MDB_txn *txn);

/* Translates an LMDB return code (logging what it means, rate-limited). */
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
/*
 * Lays out a series record in *scratch (grown as needed; owned by the
 * caller, reused across records). Returns *scratch, or NULL when out of memory.
 */
uint8_t *apm_store_record_series(const struct store_series *ser, uint8_t **scratch, size_t *cap,
                                 size_t *len);
int apm_store_record_parse_series(const void *buf, size_t len, uint64_t id,
                                  struct store_series_record *out);

uint8_t *apm_store_record_host(const struct apm_host_info *h, size_t *len);
int apm_store_record_parse_host(const void *buf, size_t len, const char *host,
                                struct apm_host_info *out);

uint8_t *apm_store_record_process(const struct apm_process_info *p, size_t *len);
int apm_store_record_parse_process(const void *buf, size_t len, const char *id,
                                   struct apm_process_info *out);

#endif
