/*
 * Queries. Each function opens its own read transaction (the environment is
 * MDB_NOTLS, so any thread may call them, alongside the writer), hands the
 * callback pointers into the mapped pages, and aborts the transaction before
 * returning.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"
#include "server/store/store_priv.h"

int apm_store_watermark(struct apm_store *s, const char *agent_id, uint64_t instance,
                        uint64_t *out_seq)
{
    MDB_txn *txn = NULL;
    int rc = apm_store_read_begin(s, &txn);
    if (rc < 0)
        return rc;
    MDB_val k = {strlen(agent_id) + 1, (void *)agent_id}, v;
    uint64_t stored[2] = {0, 0};
    *out_seq = 0;
    rc = mdb_get(txn, s->dbi[DB_WATERMARKS], &k, &v);
    if (rc == 0 && v.mv_size == sizeof(stored)) {
        memcpy(stored, v.mv_data, sizeof(stored));
        if (stored[0] == instance)
            *out_seq = stored[1];
    }
    apm_store_read_end(s, txn);
    return rc == MDB_NOTFOUND ? 0 : apm_store_mdb_error(rc, "watermark");
}

/*
 * Walks a database from the first key >= prefix while keys start with
 * prefix (every key when plen is 0), calling each(ctx, key, value).
 */
static int scan_from(struct apm_store *s, enum store_db db, const void *prefix, size_t plen,
                     const void *start, size_t slen,
                     int (*each)(void *ctx, const MDB_val *k, const MDB_val *v), void *ctx);

static int scan(struct apm_store *s, enum store_db db, const void *prefix, size_t plen,
                int (*each)(void *ctx, const MDB_val *k, const MDB_val *v), void *ctx)
{
    return scan_from(s, db, prefix, plen, prefix, plen, each, ctx);
}

/* As scan, from the first key >= start (which begins with prefix). */
static int scan_from(struct apm_store *s, enum store_db db, const void *prefix, size_t plen,
                     const void *start, size_t slen,
                     int (*each)(void *ctx, const MDB_val *k, const MDB_val *v), void *ctx)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    int rc = apm_store_read_begin(s, &txn);
    if (rc < 0)
        return rc;
    rc = mdb_cursor_open(txn, s->dbi[db], &cur);
    MDB_val k = {slen, (void *)start}, v;
    if (rc == 0)
        rc = mdb_cursor_get(cur, &k, &v, slen ? MDB_SET_RANGE : MDB_FIRST);
    int stop = 0;
    while (rc == 0 && stop == 0) {
        if (plen > 0 && (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0))
            break;
        stop = each(ctx, &k, &v);
        if (stop == 0)
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    apm_store_read_end(s, txn);
    if (stop < 0)
        return stop;
    return rc == MDB_NOTFOUND ? 0 : apm_store_mdb_error(rc, "scan");
}

/* A key stored with its NUL, usable as a C string in place. */
static const char *key_string(const MDB_val *k)
{
    const char *p = k->mv_data;
    return k->mv_size > 0 && p[k->mv_size - 1] == '\0' ? p : NULL;
}

struct host_scan {
    apm_store_host_cb cb;
    void *ctx;
};

static int each_host(void *ctx, const MDB_val *k, const MDB_val *v)
{
    struct host_scan *hs = ctx;
    struct apm_host_info h;
    const char *host = key_string(k);
    if (host == NULL || apm_store_record_parse_host(v->mv_data, v->mv_size, host, &h) < 0)
        return APM_E_STORE;
    return hs->cb(hs->ctx, &h) ? 1 : 0;
}

int apm_store_list_hosts(struct apm_store *s, apm_store_host_cb cb, void *ctx)
{
    struct host_scan hs = {cb, ctx};
    return scan(s, DB_HOSTS, NULL, 0, each_host, &hs);
}

struct process_scan {
    apm_store_process_cb cb;
    void *ctx;
};

static int each_process(void *ctx, const MDB_val *k, const MDB_val *v)
{
    struct process_scan *ps = ctx;
    struct apm_process_info p;
    const char *id = key_string(k);
    if (id == NULL || apm_store_record_parse_process(v->mv_data, v->mv_size, id, &p) < 0)
        return APM_E_STORE;
    return ps->cb(ps->ctx, &p) ? 1 : 0;
}

int apm_store_list_processes(struct apm_store *s, const char *host, apm_store_process_cb cb,
                             void *ctx)
{
    struct process_scan ps = {cb, ctx};
    if (host == NULL)
        return scan(s, DB_PROCESSES, NULL, 0, each_process, &ps);
    /* Process ids start with "host:", so one host's processes are adjacent. */
    size_t hlen = strlen(host);
    char *prefix = malloc(hlen + 2);
    if (prefix == NULL)
        return -ENOMEM;
    memcpy(prefix, host, hlen);
    prefix[hlen] = ':';
    prefix[hlen + 1] = '\0';
    int rc = scan(s, DB_PROCESSES, prefix, hlen + 1, each_process, &ps);
    free(prefix);
    return rc;
}

struct series_scan {
    struct apm_store *s;
    const struct apm_series_filter *f;
    apm_store_series_cb cb;
    void *ctx;
};

static bool str_matches(const char *want, const char *have)
{
    return want == NULL || want[0] == '\0' || strcmp(want, have) == 0;
}

static bool series_matches(const struct apm_series_filter *f, const struct apm_series_info *i)
{
    if (f == NULL)
        return true;
    return str_matches(f->host, i->host) && str_matches(f->process_name, i->process_name) &&
           str_matches(f->process_id, i->process_id) && (f->pid == 0 || f->pid == i->pid) &&
           (f->metric == APM_METRIC_NONE || f->metric == i->metric);
}

static int each_series(void *ctx, const MDB_val *k, const MDB_val *v)
{
    struct series_scan *ss = ctx;
    struct store_series_record rec;
    if (k->mv_size != 8 || apm_store_record_parse_series(v->mv_data, v->mv_size,
                                                         apm_store_get_be64(k->mv_data), &rec) < 0)
        return APM_E_STORE;
    if (!series_matches(ss->f, &rec.info))
        return 0;
    apm_store_series_info_live(ss->s, &rec.info);
    return ss->cb(ss->ctx, &rec.info) ? 1 : 0;
}

int apm_store_list_series(struct apm_store *s, const struct apm_series_filter *f,
                          apm_store_series_cb cb, void *ctx)
{
    struct series_scan ss = {s, f, cb, ctx};
    uint8_t start[8];
    if (f == NULL || f->after_id == 0)
        return scan(s, DB_SERIES, NULL, 0, each_series, &ss);
    if (f->after_id == UINT64_MAX)
        return 0;
    apm_store_put_be64(start, f->after_id + 1);
    return scan_from(s, DB_SERIES, NULL, 0, start, sizeof(start), each_series, &ss);
}

int apm_store_get_record(struct apm_store *s, MDB_txn *txn, uint64_t id,
                         struct store_series_record *rec)
{
    uint8_t idkey[8];
    apm_store_put_be64(idkey, id);
    MDB_val k = {8, idkey}, v;
    int rc = mdb_get(txn, s->dbi[DB_SERIES], &k, &v);
    if (rc == MDB_NOTFOUND)
        return APM_E_NOTFOUND;
    if (rc != 0)
        return apm_store_mdb_error(rc, "series");
    return apm_store_record_parse_series(v.mv_data, v.mv_size, id, rec) < 0 ? APM_E_STORE : 0;
}

int apm_store_get_series(struct apm_store *s, uint64_t id, apm_store_series_cb cb, void *ctx)
{
    MDB_txn *txn = NULL;
    struct store_series_record rec;
    int rc = apm_store_read_begin(s, &txn);
    if (rc < 0)
        return rc;
    rc = apm_store_get_record(s, txn, id, &rec);
    if (rc == 0) {
        apm_store_series_info_live(s, &rec.info);
        cb(ctx, &rec.info);
    }
    apm_store_read_end(s, txn);
    return rc;
}

/* Emits the chunk's samples in [from, to]. Returns 1 when the callback stopped. */
static int emit_chunk(const void *buf, size_t len, int64_t first_t, int64_t from, int64_t to,
                      apm_store_sample_cb cb, void *ctx)
{
    struct apm_chunk_iter it;
    int64_t t, v;
    if (apm_chunk_iter_init(&it, buf, len, first_t) < 0)
        return APM_E_STORE;
    int rc;
    while ((rc = apm_chunk_iter_next(&it, &t, &v)) == 1) {
        if (t > to)
            return 0;
        if (t >= from && cb(ctx, t, v) != 0)
            return 1;
    }
    return rc < 0 ? APM_E_STORE : 0;
}

/*
 * Positions cur on the first sealed chunk of the series that may hold
 * samples at or after from: the last chunk starting at or before from, or
 * else the first one starting after it.
 */
static int seek_chunks(MDB_cursor *cur, uint64_t id, int64_t from, MDB_val *k, MDB_val *v)
{
    uint8_t key[16];
    apm_store_chunk_key(key, id, from);
    *k = (MDB_val){sizeof(key), key};
    int rc = mdb_cursor_get(cur, k, v, MDB_SET_RANGE);
    bool exact = rc == 0 && k->mv_size == 16 && memcmp(k->mv_data, key, 16) == 0;
    if (exact)
        return 0;
    int prc = mdb_cursor_get(cur, k, v, rc == 0 ? MDB_PREV : MDB_LAST);
    if (prc == 0 && k->mv_size == 16 && apm_store_get_be64(k->mv_data) == id)
        return 0;
    if (rc == 0 && prc == 0)
        return mdb_cursor_get(cur, k, v, MDB_NEXT);
    if (rc == 0 && prc == MDB_NOTFOUND)
        return mdb_cursor_get(cur, k, v, MDB_FIRST);
    return prc;
}

struct range {
    int64_t from, to;
    apm_store_sample_cb cb;
    void *ctx;
};

static int emit_piece(void *ctx, const MDB_val *v, int64_t first_t)
{
    struct range *r = ctx;
    return emit_chunk(v->mv_data, v->mv_size, first_t, r->from, r->to, r->cb, r->ctx);
}

int apm_store_txn_read_samples(struct apm_store *s, MDB_txn *txn, uint64_t id,
                               const struct store_series_record *rec, int64_t from_ms,
                               int64_t to_ms, apm_store_sample_cb cb, void *ctx)
{
    MDB_cursor *cur = NULL;
    if (from_ms > to_ms)
        return 0;
    /* Packed periods hold the series' oldest samples (store_pack.c), then DB_CHUNKS. */
    struct range r = {from_ms, to_ms, cb, ctx};
    int rc = apm_store_packed_read(s, txn, id, from_ms, to_ms, emit_piece, &r);
    if (rc != 0)
        return rc;
    rc = apm_store_mdb_error(mdb_cursor_open(txn, s->dbi[DB_CHUNKS], &cur), "chunks");
    if (rc < 0)
        return rc;
    MDB_val k, v;
    int mrc = seek_chunks(cur, id, from_ms, &k, &v);
    while (mrc == 0 && rc == 0) {
        if (k.mv_size != 16 || apm_store_get_be64(k.mv_data) != id ||
            apm_store_chunk_key_t(&k) > to_ms)
            break;
        rc = emit_chunk(v.mv_data, v.mv_size, apm_store_chunk_key_t(&k), from_ms, to_ms, cb, ctx);
        if (rc == 0)
            mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND)
        rc = apm_store_mdb_error(mrc, "chunks");
    mdb_cursor_close(cur);
    /* The open chunk in the series record holds the newest samples. */
    if (rc == 0 && rec->head_len > 0)
        rc = emit_chunk(rec->head, rec->head_len, rec->head_first_t, from_ms, to_ms, cb, ctx);
    return rc;
}

int apm_store_read_samples(struct apm_store *s, uint64_t series_id, int64_t from_ms, int64_t to_ms,
                           apm_store_sample_cb cb, void *ctx)
{
    MDB_txn *txn = NULL;
    struct store_series_record rec;
    struct store_head_snap head;
    int rc = apm_store_read_begin(s, &txn);
    if (rc < 0)
        return rc;
    /* The record, sealed chunks and open chunk in LMDB, then what only the log holds yet. */
    rc = apm_store_read_record(s, &txn, series_id, &rec, &head);
    if (rc == 0)
        rc = apm_store_txn_read_samples(s, txn, series_id, &rec, from_ms, to_ms, cb, ctx);
    if (rc == 0)
        rc = apm_store_head_emit(&head, &rec, from_ms, to_ms, cb, ctx);
    if (rc == 1)
        rc = 0;
    apm_store_head_snap_free(&head);
    apm_store_read_end(s, txn);
    return rc;
}

int apm_store_stats(struct apm_store *s, struct apm_store_stats *out)
{
    MDB_txn *txn = NULL;
    MDB_stat st;
    MDB_envinfo info;
    memset(out, 0, sizeof(*out));
    int rc = apm_store_read_begin(s, &txn);
    if (rc < 0)
        return rc;
    rc = mdb_stat(txn, s->dbi[DB_SERIES], &st);
    out->series = st.ms_entries;
    if (rc == 0)
        rc = mdb_stat(txn, s->dbi[DB_CHUNKS], &st);
    out->chunks = st.ms_entries;
    if (rc == 0)
        rc = mdb_stat(txn, s->dbi[DB_PACKED], &st);
    out->chunks += st.ms_entries;
    MDB_val k = {7, "samples"}, v;
    if (rc == 0 && mdb_get(txn, s->dbi[DB_META], &k, &v) == 0 && v.mv_size == 8)
        memcpy(&out->samples, v.mv_data, 8);
    k = (MDB_val){7, "dropped"};
    if (rc == 0 && mdb_get(txn, s->dbi[DB_META], &k, &v) == 0 && v.mv_size == 8)
        memcpy(&out->dropped, v.mv_data, 8);
    if (rc == 0)
        rc = mdb_env_info(s->env, &info);
    if (rc == 0)
        out->bytes_on_disk = (uint64_t)(info.me_last_pgno + 1) * st.ms_psize;
    if (rc == 0)
        rc = mdb_stat(txn, s->dbi[DB_ROLLUPS], &st);
    if (rc == 0)
        out->rollup_bytes =
            (uint64_t)(st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages) * st.ms_psize;
    out->commits = atomic_load(&s->commits);
    out->sites_refused = atomic_load(&s->sites_refused);
    out->forgotten = atomic_load(&s->forgotten);
    out->chunks_deleted = atomic_load(&s->m[MC_CHUNKS_DELETED]);
    out->chunks_pruned = atomic_load(&s->m[MC_CHUNKS_PRUNED]);
    out->heads_dropped = atomic_load(&s->m[MC_HEADS_DROPPED]);
    out->series_removed = atomic_load(&s->m[MC_SERIES_REMOVED]);
    out->processes_removed = atomic_load(&s->m[MC_PROCESSES_REMOVED]);
    out->hosts_removed = atomic_load(&s->m[MC_HOSTS_REMOVED]);
    out->rollups_written = atomic_load(&s->m[MC_ROLLUPS_WRITTEN]);
    out->rollups_deleted = atomic_load(&s->m[MC_ROLLUPS_DELETED]);
    out->slices = atomic_load(&s->m[MC_SLICES]);
    out->passes = atomic_load(&s->m[MC_PASSES]);
    out->slice_us_max = atomic_load(&s->m[MC_SLICE_US_MAX]);
    out->map_grows = atomic_load(&s->m[MC_MAP_GROWS]);
    out->rw_unsent_dropped = atomic_load(&s->m[MC_RW_UNSENT_DROPPED]);
    out->chunks_packed = atomic_load(&s->m[MC_CHUNKS_PACKED]);
    out->map_size = atomic_load(&s->map_size);
    out->max_disk = s->max_disk;
    out->full = atomic_load(&s->full) != FULL_NO;
    apm_store_read_end(s, txn);
    return apm_store_mdb_error(rc, "stats");
}

static const struct apm_counter counters[] = {
    APM_COUNTER(struct apm_store_stats, series, "series", APM_COUNTER_GAUGE, "",
                "Series in the store."),
    APM_COUNTER(struct apm_store_stats, samples, "samples", APM_COUNTER_TOTAL, "",
                "Samples in the store."),
    APM_COUNTER(struct apm_store_stats, dropped, "dropped", APM_COUNTER_TOTAL, "",
                "Samples refused for not being newer than the last of their series."),
    APM_COUNTER(struct apm_store_stats, chunks, "chunks", APM_COUNTER_GAUGE, "",
                "Sealed chunks in the store."),
    APM_COUNTER(struct apm_store_stats, bytes_on_disk, "bytes_on_disk", APM_COUNTER_GAUGE, "bytes",
                "Used size of the LMDB data file."),
    APM_COUNTER(struct apm_store_stats, commits, "commits", APM_COUNTER_TOTAL, "",
                "Write transactions committed since the start."),
    APM_COUNTER(struct apm_store_stats, sites_refused, "sites_refused", APM_COUNTER_TOTAL, "",
                "New allocation sites refused over the per-process cap since the start."),
    APM_COUNTER(struct apm_store_stats, forgotten, "forgotten", APM_COUNTER_TOTAL, "",
                "Series whose in-memory state was dropped after process-grace without samples."),
    APM_COUNTER(struct apm_store_stats, chunks_deleted, "chunks_deleted", APM_COUNTER_TOTAL, "",
                "Sealed chunks deleted for being older than the retention."),
    APM_COUNTER(struct apm_store_stats, chunks_pruned, "chunks_pruned", APM_COUNTER_TOTAL, "",
                "Sealed chunks deleted before their retention to stay within max-disk."),
    APM_COUNTER(struct apm_store_stats, heads_dropped, "heads_dropped", APM_COUNTER_TOTAL, "",
                "Open chunks of idle series deleted for being older than the retention."),
    APM_COUNTER(struct apm_store_stats, series_removed, "series_removed", APM_COUNTER_TOTAL, "",
                "Series removed from the index with nothing left at any resolution."),
    APM_COUNTER(struct apm_store_stats, processes_removed, "processes_removed", APM_COUNTER_TOTAL,
                "", "Processes removed with no series left."),
    APM_COUNTER(struct apm_store_stats, hosts_removed, "hosts_removed", APM_COUNTER_TOTAL, "",
                "Hosts removed with no series left."),
    APM_COUNTER(struct apm_store_stats, rollups_written, "rollups_written", APM_COUNTER_TOTAL, "",
                "Rollup buckets written (in blocks)."),
    APM_COUNTER(struct apm_store_stats, rollups_deleted, "rollups_deleted", APM_COUNTER_TOTAL, "",
                "Rollup blocks deleted for being older than their retention."),
    APM_COUNTER(struct apm_store_stats, rollup_bytes, "rollup_bytes", APM_COUNTER_GAUGE, "bytes",
                "Pages of the rollup database."),
    APM_COUNTER(struct apm_store_stats, slices, "maintenance_slices", APM_COUNTER_TOTAL, "",
                "Maintenance slices committed (rollups and deletions)."),
    APM_COUNTER(struct apm_store_stats, passes, "maintenance_passes", APM_COUNTER_TOTAL, "",
                "Maintenance passes over every series finished."),
    APM_COUNTER(struct apm_store_stats, slice_us_max, "slice_max", APM_COUNTER_GAUGE,
                "microseconds",
                "Longest maintenance slice, commit included (ingest waits at most this long)."),
    APM_COUNTER(struct apm_store_stats, map_size, "map_size", APM_COUNTER_GAUGE, "bytes",
                "LMDB map size now (grows by doubling up to max_disk)."),
    APM_COUNTER(struct apm_store_stats, max_disk, "max_disk", APM_COUNTER_GAUGE, "bytes",
                "Disk budget the map may grow to."),
    APM_COUNTER(struct apm_store_stats, map_grows, "map_grows", APM_COUNTER_TOTAL, "",
                "Times the map was doubled."),
    APM_COUNTER(
        struct apm_store_stats, full, "full", APM_COUNTER_GAUGE, "",
        "Set to 1 while batches are refused: the disk is full, or the budget is reached and no "
        "raw chunk is left to delete."),
    APM_COUNTER(struct apm_store_stats, rw_unsent_dropped, "rw_unsent_dropped", APM_COUNTER_TOTAL,
                "", "Raw samples remote-write had not sent yet, deleted for the disk budget."),
    APM_COUNTER(struct apm_store_stats, chunks_packed, "chunks_packed", APM_COUNTER_TOTAL, "",
                "Sealed chunks re-packed into the pages of a closed period."),
    {.name = NULL},
};

static int read_counters(void *obj, void *out)
{
    return apm_store_stats(obj, out);
}

int apm_store_add_counters(struct apm_store *obj, struct apm_counters *r)
{
    struct apm_counter_group g = {.module = "store",
                                  .counters = counters,
                                  .size = sizeof(struct apm_store_stats),
                                  .read = read_counters,
                                  .obj = obj};
    return apm_counters_add(r, &g);
}

int apm_store_list_process_series(struct apm_store *s, const char *process_id,
                                  enum apm_metric metric, apm_store_series_cb cb, void *ctx)
{
    char prefix[STORE_KEY_BUF];
    size_t plen = 0;
    if (apm_store_process_key(NULL, process_id, metric, NULL, prefix, &plen) != 0)
        return 0;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    int rc = apm_store_read_begin(s, &txn);
    if (rc != 0)
        return rc;
    rc = mdb_cursor_open(txn, s->dbi[DB_SERIES_KEY], &cur);
    MDB_val k = {plen, prefix}, v;
    if (rc == 0)
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    int stop = 0;
    bool site = apm_store_metric_has_site(metric);
    while (rc == 0 && stop == 0 && k.mv_size >= plen && memcmp(k.mv_data, prefix, plen) == 0) {
        if ((k.mv_size > plen) == site && v.mv_size == 8) {
            uint8_t idkey[8];
            memcpy(idkey, v.mv_data, 8);
            MDB_val ik = {8, idkey}, rv;
            struct store_series_record rec;
            if (mdb_get(txn, s->dbi[DB_SERIES], &ik, &rv) != 0 ||
                apm_store_record_parse_series(rv.mv_data, rv.mv_size, apm_store_get_be64(idkey),
                                              &rec) < 0)
                stop = APM_E_STORE;
            else {
                apm_store_series_info_live(s, &rec.info);
                stop = cb(ctx, &rec.info) ? 1 : 0;
            }
        }
        if (stop == 0)
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    apm_store_read_end(s, txn);
    if (stop < 0)
        return stop;
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : apm_store_mdb_error(rc, "scan");
}
