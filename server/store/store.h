#ifndef APM_STORE_H
#define APM_STORE_H

/*
 * The collector's store: time series in LMDB, samples packed in per-series
 * chunks (server/store/chunk.c), a series index (host, process, metric) -> id, the
 * hosts and processes seen, and the per-agent dedup watermark.
 *
 * Threads: one writer thread owns the write transactions (server/ingest/writer.c);
 * the read functions may run on any thread, each in its own read transaction.
 * Errors: 0 or a negative code (common/base/error.h); LMDB codes are translated
 * here and nowhere else (MDB_MAP_FULL -> APM_E_FULL, others -> APM_E_STORE).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/counters.h"
#include "common/analysis/model.h"

struct apm_store;
struct apm_store_txn;

struct apm_store_options {
    const char *dir;                /* data directory; created if missing */
    size_t map_size;                /* LMDB map size in bytes; 0 = default (8 GiB) */
    unsigned chunk_samples;         /* samples per sealed chunk; 0 = default (120) */
    bool no_sync;                   /* tests and benchmarks only: skip fsync at commit */
    unsigned max_sites_per_process; /* allocation sites kept per process; 0 = default (1000) */
    /*
     * The writer's in-memory state of a series (its open chunk, its seen
     * times) is forgotten once it had no sample this long (process-grace), and
     * read back from LMDB if it comes back; 0 = default (2 min).
     */
    int64_t forget_after_ms;
    /* Retention (apm_store_maintain): 0 keeps forever. */
    int64_t retention_ms; /* raw samples */
    int64_t rollup_1m_ms; /* 1-minute rollups */
    int64_t rollup_1h_ms; /* 1-hour rollups */
    uint64_t max_disk;    /* budget the map may grow to; 0 = map_size (no growth) */
    /*
     * Remote-write is on: maintenance keeps raw samples after a series'
     * remote-write cursor (apm_store_rw_cursor_put) past the retention, until
     * the disk budget forces them out (counted in rw_unsent_dropped).
     */
    bool rw_hold;
    /*
     * Maintenance re-packs the sealed chunks of each closed period of this
     * length into full pages (docs/store.md, "Packed periods"); 0 = default
     * (2 h), < 0 off.
     */
    int64_t pack_period_ms;
    /*
     * A series' record (with its open chunk) is written within this of the
     * first commit that logged samples newer than it (write-ahead log,
     * docs/store.md); 0 = 30 s.
     */
    int64_t checkpoint_ms;
};

/*
 * Opens (creating if needed) the store in opt->dir and clears stale readers
 * left by dead processes. The directory is locked (flock on DIR/apm.lock)
 * until apm_store_free: a second opener, in this process or another, gets
 * -EBUSY after logging "data directory DIR is locked by pid N". Returns 0 and *out owned (free with
 * apm_store_free), or a negative code; on failure *out is untouched.
 */
int apm_store_open(const struct apm_store_options *opt, struct apm_store **out);

/* Closes the environment. No transaction may be open. Accepts NULL. */
void apm_store_free(struct apm_store *s);

/* ---- writing (writer thread only) ---- */

/* Begins the one write transaction. Returns owned txn (ends with commit or abort). */
int apm_store_txn_begin(struct apm_store *s, struct apm_store_txn **out);

/*
 * Stores one batch from an agent unless it is a duplicate: when the agent's
 * watermark has the same instance and seq <= the stored seq, nothing is
 * written and 1 is returned. Otherwise it writes the samples, records the
 * host and processes, moves the watermark to (instance, seq) in the same
 * transaction and returns 0. Borrows agent and batch. On a negative return
 * the transaction must be aborted.
 */
int apm_store_txn_put_batch(struct apm_store_txn *t, const struct apm_agent_ident *agent,
                            const struct apm_batch *b);

/* Commits durably (fsync unless no_sync) and frees t. Returns 0 or a code. */
int apm_store_txn_commit(struct apm_store_txn *t);

/* Aborts and frees t. Accepts NULL. */
void apm_store_txn_abort(struct apm_store_txn *t);

/* ---- reading (any thread) ---- */

/*
 * The last committed sequence for (agent_id, instance): 0 when the agent is
 * unknown or its stored instance differs (a new agent run starts again).
 */
int apm_store_watermark(struct apm_store *s, const char *agent_id, uint64_t instance,
                        uint64_t *out_seq);

struct apm_host_info {
    const char *host;
    const char *agent_id;
    const char *boot_id;
    const char *version;
    int64_t first_seen_ms;
    int64_t last_seen_ms;
    uint64_t nprocesses; /* processes ever seen on the host */
};

struct apm_process_info {
    const char *id; /* "host:pid:start_ms" */
    const char *host;
    int32_t pid;
    int32_t ppid;
    int64_t start_ms;
    const char *name;
    const char *cmdline;
    const char *cgroup;
    int64_t first_seen_ms;
    int64_t last_seen_ms;
};

struct apm_series_info {
    uint64_t id;
    const char *host;
    const char *process_id; /* "" for host series */
    const char *process_name;
    int32_t pid; /* 0 for host series */
    enum apm_metric metric;
    const char *site; /* site_size/site_count: the allocation site ("file:line"); else "" */
    int64_t first_ms;
    int64_t last_ms;
    int64_t last_value;
    uint64_t nsamples;
};

/* Filter for apm_store_list_series; NULL or 0 fields match everything. */
struct apm_series_filter {
    const char *host;
    const char *process_name;
    const char *process_id;
    int32_t pid;
    enum apm_metric metric;
    uint64_t after_id; /* paging: only series with a larger id (0 = from the first) */
};

/* Callbacks receive pointers valid only during the call; return nonzero to stop. */
typedef int (*apm_store_host_cb)(void *ctx, const struct apm_host_info *h);
typedef int (*apm_store_process_cb)(void *ctx, const struct apm_process_info *p);
typedef int (*apm_store_series_cb)(void *ctx, const struct apm_series_info *s);
typedef int (*apm_store_sample_cb)(void *ctx, int64_t t_ms, int64_t value);

int apm_store_list_hosts(struct apm_store *s, apm_store_host_cb cb, void *ctx);
/* host may be NULL for every host. */
int apm_store_list_processes(struct apm_store *s, const char *host, apm_store_process_cb cb,
                             void *ctx);
int apm_store_list_series(struct apm_store *s, const struct apm_series_filter *f,
                          apm_store_series_cb cb, void *ctx);
/* Returns APM_E_NOTFOUND for an unknown id. */
int apm_store_get_series(struct apm_store *s, uint64_t id, apm_store_series_cb cb, void *ctx);
/* Samples of one series with from_ms <= t <= to_ms, in time order. */
int apm_store_read_samples(struct apm_store *s, uint64_t series_id, int64_t from_ms, int64_t to_ms,
                           apm_store_sample_cb cb, void *ctx);

struct apm_store_stats {
    uint64_t series;
    uint64_t samples; /* samples stored (excluding duplicates) */
    uint64_t dropped; /* samples refused: not newer than their series' last sample */
    uint64_t chunks;
    uint64_t bytes_on_disk; /* size of the LMDB data file's used pages */
    uint64_t commits;
    uint64_t sites_refused; /* new allocation sites refused over the per-process cap, this run */
    uint64_t forgotten;     /* series the writer forgot after forget_after_ms, this run */
    /* Maintenance (apm_store_maintain), this run. */
    uint64_t chunks_deleted; /* sealed chunks deleted for retention */
    uint64_t chunks_pruned;  /* sealed chunks deleted early for the disk budget */
    uint64_t heads_dropped;  /* open chunks of idle series emptied for retention */
    uint64_t series_removed; /* series with nothing left, removed from the index */
    uint64_t processes_removed;
    uint64_t hosts_removed;
    uint64_t rollups_written;   /* rollup buckets written (in blocks) */
    uint64_t rollups_deleted;   /* rollup blocks deleted for their retention (layout 1: buckets) */
    uint64_t rollup_bytes;      /* pages of the rollup database */
    uint64_t slices;            /* maintenance slices committed */
    uint64_t passes;            /* maintenance passes over every series finished */
    uint64_t slice_us_max;      /* longest maintenance slice, microseconds, commit included */
    uint64_t map_size;          /* current LMDB map size */
    uint64_t max_disk;          /* the budget the map may grow to */
    uint64_t map_grows;         /* times the map was doubled */
    uint64_t full;              /* 1 while batches are refused: full and nothing left to delete */
    uint64_t rw_unsent_dropped; /* raw samples remote-write had not sent, deleted for the budget */
    uint64_t chunks_packed;     /* sealed chunks moved into packed periods */
};
int apm_store_stats(struct apm_store *s, struct apm_store_stats *out);

/* ---- maintenance (writer thread, between write transactions) ---- */

/*
 * One slice of the maintenance pass: for the next series in id order, rolls
 * up raw samples into 1-minute and 1-hour buckets, deletes sealed chunks
 * older than the retention (and, near the disk budget, the oldest ones),
 * rollups older than theirs, and series, processes and hosts with nothing
 * left. Stops after about max_keys keys written or deleted or max_us
 * microseconds, commits, and returns 1 when the pass reached the last series
 * (the next call starts a new pass), 0 when more remains, or a negative code.
 * now_ms is the wall clock. No transaction may be open.
 */
int apm_store_maintain(struct apm_store *s, int64_t now_ms, unsigned max_keys, int64_t max_us);

/*
 * Called after a write transaction failed with APM_E_FULL (writer thread, no
 * transaction open): doubles the map if the budget allows, else deletes the
 * oldest raw chunks. Returns 1 when there is room to try again, 0 when
 * nothing could be freed (the store is full: batches are refused, reads go
 * on), or a negative code.
 */
int apm_store_make_room(struct apm_store *s, int64_t now_ms);

/* Why the store refuses batches now, or NULL when it does not. Any thread. */
const char *apm_store_full_reason(struct apm_store *s);

/* ---- the remote-write cursor (store_rwcursor.c) ---- */

/*
 * Records, for n series, the time of the last sample remote-write sent, and
 * empties the pending record, in one durable write transaction of the
 * caller's thread (like verdicts: a database the writer thread keeps no
 * state of). n may be 0 (only the pending record goes). Any thread but the
 * writer's. Returns 0 or a code.
 */
int apm_store_rw_cursor_put(struct apm_store *s, const uint64_t *ids, const int64_t *t_ms,
                            size_t n);

/*
 * Moves the cursors of ncur series (the request answered before this one;
 * ncur may be 0) and replaces the pending record with n series: the request
 * remote-write is about to send, as per series the time of its last sample
 * in it (it holds the samples after the series' cursor up to that time).
 * One durable write transaction, written before the request goes;
 * apm_store_rw_cursor_put, or the next request's call, settles it once the
 * receiver answered. Any thread but the writer's. Returns 0 or a code.
 */
int apm_store_rw_pending_put(struct apm_store *s, const uint64_t *cur_ids, const int64_t *cur_ts,
                             size_t ncur, const uint64_t *ids, const int64_t *t_ms, size_t n);

/*
 * The pending record, in series id order: 0 with *n series (0: none) in
 * *ids and *t_ms (returns owned: free both with free(); NULL when *n is 0),
 * or a code (and nothing to free). Any thread.
 */
int apm_store_rw_pending_get(struct apm_store *s, uint64_t **ids, int64_t **t_ms, size_t *n);

/* The cursor of one series: 0 and *t_ms, or APM_E_NOTFOUND (nothing sent yet). Any thread. */
int apm_store_rw_cursor_get(struct apm_store *s, uint64_t id, int64_t *t_ms);

/* ---- rollups ---- */

#define APM_ROLLUP_1M 60000
#define APM_ROLLUP_1H 3600000

struct apm_rollup {
    int64_t min;
    int64_t max;
    int64_t sum; /* wraps modulo 2^64, as the codec does */
    int64_t last;
    uint64_t count;
};

typedef int (*apm_store_rollup_cb)(void *ctx, int64_t start_ms, const struct apm_rollup *r);

/*
 * A stored block of n consecutive buckets (n <= APM_ROLLUP_BLOCK_MAX; those
 * with count 0 are absent), the value of a rollup entry (docs/store.md,
 * "Rollup blocks"). Encoding writes at most n x APM_ROLLUP_BLOCK_BYTES + 10
 * bytes and returns the length; decoding returns 0 or APM_E_DECODE.
 */
#define APM_ROLLUP_BLOCK_MAX 60
#define APM_ROLLUP_BLOCK_BYTES 60u
size_t apm_rollup_block_encode(const struct apm_rollup *b, int n, uint8_t *buf);
int apm_rollup_block_decode(const void *buf, size_t len, int n, struct apm_rollup *b);

/*
 * Stored rollup buckets of one series at resolution res_ms (APM_ROLLUP_1M or
 * APM_ROLLUP_1H) with from_ms <= start <= to_ms, in time order. Buckets are
 * [start, start + res) aligned to multiples of res since the epoch.
 */
int apm_store_read_rollups(struct apm_store *s, uint64_t series_id, int64_t res_ms, int64_t from_ms,
                           int64_t to_ms, apm_store_rollup_cb cb, void *ctx);

enum apm_store_agg { APM_AGG_MEAN, APM_AGG_MIN, APM_AGG_MAX, APM_AGG_LAST };

/* "mean", "min", "max", "last" -> *out. Returns 0 or APM_E_PARSE. */
int apm_store_agg_parse(const char *name, enum apm_store_agg *out);

typedef int (*apm_store_point_cb)(void *ctx, int64_t t_ms, double value);

/*
 * One point per step: buckets [k*step, (k+1)*step) overlapping [from, to],
 * each with the aggregate of the samples in it, in time order; empty buckets
 * are skipped. Answered from the coarsest stored resolution that divides
 * step (1 h, 1 min), the samples not rolled up yet read raw. *res_ms (may be
 * NULL) says which resolution answered (0 = raw). step_ms > 0.
 */
int apm_store_read_steps(struct apm_store *s, uint64_t series_id, int64_t from_ms, int64_t to_ms,
                         int64_t step_ms, enum apm_store_agg agg, apm_store_point_cb cb, void *ctx,
                         int64_t *res_ms);

/* The resolution apm_store_read_steps uses for step_ms: 3600000, 60000 or 0 (raw). */
int64_t apm_store_step_resolution(int64_t step_ms);

/* ---- backup (store_backup.c) ---- */

struct apm_store_backup_info {
    uint64_t bytes;         /* the copy's data.mdb */
    uint64_t other_bytes;   /* the data directory's other files copied (tokens, tls/) */
    uint64_t duration_us;   /* the whole backup, files and fsyncs included */
    int64_t started_ms;     /* wall clock when the copy began: every commit before is in it */
    int64_t last_sample_ms; /* the newest sample in the copy; 0 without any */
    uint64_t series;        /* series in the copy */
    uint64_t samples;       /* samples ever stored, as the copy's meta counts them */
};

/*
 * Copies the store, compacted, into dir, an absolute path that is absent
 * (created 0700) or an empty directory (set to 0700), as a data directory
 * of its own: dir/data.mdb from one read transaction (the writer goes on
 * committing meanwhile; the map does not grow until it ends), then the data
 * directory's other regular files (tokens) and its tls/ folder. The copy is
 * written as data.mdb.partial, fsynced and renamed; on failure what was
 * written is removed. One backup at a time per store. Fills *out and
 * returns 0, or a negative code with the reason in err (errlen bytes):
 * -EBUSY (a backup is running), -EINVAL, -ENOTEMPTY, -ENOTDIR (dir), or
 * another errno/APM_E_ code. Blocks for the whole copy: any thread but the
 * loop's, and not the writer's.
 */
int apm_store_backup(struct apm_store *s, const char *dir, struct apm_store_backup_info *out,
                     char *err, size_t errlen);

/* True while apm_store_backup runs. Any thread. */
bool apm_store_backup_running(struct apm_store *s);

/* Adds the "store" counters to r; reading them opens a read transaction. Any thread. */
int apm_store_add_counters(struct apm_store *s, struct apm_counters *r);

/*
 * Every series of one process with the given metric (for site metrics, one
 * per allocation site), in key order: one range read of the series index.
 * process_id is "host:pid:start_ms". Callback contract as above.
 */
int apm_store_list_process_series(struct apm_store *s, const char *process_id,
                                  enum apm_metric metric, apm_store_series_cb cb, void *ctx);

/*
 * The id of one series: (host, process_id, metric, site). host NULL takes the
 * host from the process id; process_id "" names a host series; site is used
 * for site metrics only (NULL or "" otherwise). Returns 0, APM_E_NOTFOUND or
 * an error. Any thread (one read transaction).
 */
int apm_store_find_series(struct apm_store *s, const char *host, const char *process_id,
                          enum apm_metric metric, const char *site, uint64_t *id);

/*
 * Tests only (NULL otherwise): called by a reader between reading a series'
 * record and copying its published head (docs/store.md, "Write-ahead log"),
 * the window in which a checkpoint may commit. Set before any reader starts.
 */
extern void (*apm_store_test_read_hook)(uint64_t series_id);

/* Longest process id ("host:pid:start_ms") and host name, each with its NUL. */
#define APM_STORE_PROCESS_ID_MAX 320
#define APM_STORE_HOST_MAX 256
/* Room for any series key apm_store_series_key builds (one with a site is at most 511). */
#define APM_STORE_KEY_MAX (APM_STORE_HOST_MAX + APM_STORE_PROCESS_ID_MAX + 1)

/*
 * Builds a series' key, host \0 process id \0 metric byte [site \0], into
 * key (APM_STORE_KEY_MAX bytes): the name of the series in the store, and
 * the key the analyzer indexes its series by. process_id "" for a host series;
 * site NULL for none. Host and process id are cut at their caps; a site too
 * long for LMDB's 511-byte key keeps its end and gets a hash of the whole.
 * Returns the key's length, or 0 when host and process id leave no room for
 * a site. Any thread.
 */
size_t apm_store_series_key(char *key, const char *host, const char *process_id, enum apm_metric m,
                            const char *site);

/* Writes the id of a process, "host:pid:start_ms", into buf (size bytes, truncated). */
void apm_store_process_id(char *buf, size_t size, const char *host, int32_t pid, int64_t start_ms);

#endif
