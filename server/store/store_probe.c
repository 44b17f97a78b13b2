/*
 * What the probe adds to the store: per-process allocation-site series
 * (site_size, site_count: one pair per "file:line", or per traceback),
 * the traced total (traced) and gc statistics (gc_*), all ordinary series
 * whose key carries the site after the metric byte (docs/store.md).
 *
 * A diff says each site's size now and its change since the previous
 * snapshot, so the site's size at that snapshot is known too: it is stored
 * as a sample just after the previous snapshot's time (PREV_AFTER_MS) unless
 * the series already has one there or later. Growth between any two snapshots
 * is then a difference of stored samples, whichever diffs a site appeared in.
 *
 * "Just after" and not "at": the probe's times are rounded to milliseconds on
 * the way (t and interval separately, so t - interval is the previous t within
 * 1 ms), and a start point that lands on the previous snapshot would be read as
 * growth inside a window that ends there, although it is news only for the
 * next one.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "server/store/store_priv.h"

/* LMDB's default key cap is 511 bytes: host, process id and site must fit together. */
#define MAX_KEY 511u
/* Room a long site keeps: its end, after "...", and a hash of the whole to keep sites apart. */
#define SITE_HASH_LEN 17u

bool apm_store_metric_has_site(enum apm_metric m)
{
    return m == APM_METRIC_SITE_SIZE || m == APM_METRIC_SITE_COUNT;
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* The site's name: "file:line", or the traceback's frames oldest first joined by ';'. */
static char *site_name(const struct apm_site_stat *st)
{
    size_t len = strlen(st->file) + 12;
    for (uint32_t f = 0; f < st->nframes; f++)
        len += strlen(st->frames[f].file) + 12;
    char *s = malloc(len);
    if (s == NULL)
        return NULL;
    size_t n = 0;
    if (st->nframes == 0)
        n = (size_t)snprintf(s, len, "%s:%" PRIu32, st->file, st->line);
    for (uint32_t f = 0; f < st->nframes; f++)
        n += (size_t)snprintf(s + n, len - n, "%s%s:%" PRIu32, f ? ";" : "", st->frames[f].file,
                              st->frames[f].line);
    return s;
}

/*
 * Builds host \0 process id \0 metric [site \0] into key (MAX_KEY bytes).
 * A site too long for the key keeps its end and gets a hash of the whole.
 */
static size_t make_key(char *key, const char *host, const char *pid, enum apm_metric m,
                       const char *site)
{
    size_t hl = strlen(host), pl = strlen(pid), n = 0;
    memcpy(key, host, hl + 1);
    n += hl + 1;
    memcpy(key + n, pid, pl + 1);
    n += pl + 1;
    key[n++] = (char)m;
    if (site == NULL)
        return n;
    size_t sl = strlen(site), room = MAX_KEY - n - 1;
    if (sl <= room) {
        memcpy(key + n, site, sl + 1);
        return n + sl + 1;
    }
    size_t keep = room - 3 - SITE_HASH_LEN;
    n += (size_t)snprintf(key + n, room + 1, "...%s#%016" PRIx64, site + sl - keep, fnv1a(site));
    return n + 1;
}

static int put_point(struct apm_store_txn *t, struct store_series *ser, int64_t ts, int64_t v)
{
    struct apm_series_block blk = {.n = 1, .t_ms = &ts, .value = &v, .metric = ser->metric};
    return apm_store_put_block(t, ser, &blk);
}

/* Rounding slack of t - interval against the previous snapshot's own t. */
#define PREV_SLACK_MS 1
/* Where a diff's start point goes after the previous snapshot: beyond the slack. */
#define PREV_AFTER_MS (PREV_SLACK_MS + 1)

/*
 * Appends v at ts, preceded by prev just after prev_ts when the series has no sample from the
 * previous snapshot (prev_ts, within the rounding slack) or later.
 */
static int put_with_prev(struct apm_store_txn *t, const char *key, size_t klen,
                         const struct apm_proc_desc *p, enum apm_metric m, int64_t prev_ts,
                         int64_t prev, int64_t ts, int64_t v)
{
    struct store_series *ser = NULL;
    int rc = apm_store_series_get(t, key, klen, p->name, p->pid, m, &ser);
    if (rc < 0)
        return rc;
    int64_t at = prev_ts + PREV_AFTER_MS;
    if (prev_ts < ts && at < ts && (ser->nsamples == 0 || ser->last_ms < prev_ts - PREV_SLACK_MS))
        rc = put_point(t, ser, at, prev);
    return rc < 0 ? rc : put_point(t, ser, ts, v);
}

/* Sites a process has, counted from the index once, then kept up to date. */
static int site_count(struct apm_store_txn *t, const char *prefix, size_t plen, uint64_t *count)
{
    struct apm_store *s = t->s;
    if (apm_hashmap_get(&s->site_counts, prefix, plen, count) == 0)
        return 0;
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(t->txn, s->dbi[DB_SERIES_KEY], &cur);
    MDB_val k = {plen, (void *)prefix}, v;
    uint64_t n = 0;
    if (rc == 0)
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && k.mv_size > plen && memcmp(k.mv_data, prefix, plen) == 0) {
        n++;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return apm_store_mdb_error(rc, "site count");
    *count = n;
    return apm_hashmap_put(&s->site_counts, prefix, plen, n);
}

/* Returns 1 when the site may be stored (known, or new and under the cap), 0 when refused. */
static int site_allowed(struct apm_store_txn *t, const char *key, size_t klen, size_t plen)
{
    int rc = apm_store_series_exists(t, key, klen);
    if (rc != 0)
        return rc;
    uint64_t n = 0;
    rc = site_count(t, key, plen, &n);
    if (rc < 0)
        return rc;
    if (n >= t->s->max_sites) {
        t->sites_refused++;
        return 0;
    }
    rc = apm_hashmap_put(&t->s->site_counts, key, plen, n + 1);
    return rc < 0 ? rc : 1;
}

static int put_site(struct apm_store_txn *t, const char *host, const char *pid,
                    const struct apm_proc_desc *p, const struct apm_trace_diff *d,
                    const struct apm_site_stat *st)
{
    char *name = site_name(st);
    if (name == NULL)
        return -ENOMEM;
    char key[MAX_KEY];
    size_t klen = make_key(key, host, pid, APM_METRIC_SITE_SIZE, name);
    size_t plen = make_key(key, host, pid, APM_METRIC_SITE_SIZE, NULL);
    int64_t prev_ts = d->interval_ms > 0 ? d->t_ms - d->interval_ms : d->t_ms;
    int rc = site_allowed(t, key, klen, plen);
    if (rc == 1)
        rc = put_with_prev(t, key, klen, p, APM_METRIC_SITE_SIZE, prev_ts, st->size - st->size_diff,
                           d->t_ms, st->size);
    else if (rc == 0)
        rc = 1; /* refused and counted */
    if (rc == 0) {
        key[plen - 1] = (char)APM_METRIC_SITE_COUNT;
        rc = put_with_prev(t, key, klen, p, APM_METRIC_SITE_COUNT, prev_ts,
                           st->count - st->count_diff, d->t_ms, st->count);
    }
    free(name);
    return rc < 0 ? rc : 0;
}

static int put_plain(struct apm_store_txn *t, const char *host, const char *pid,
                     const struct apm_proc_desc *p, enum apm_metric m, int64_t ts, int64_t v)
{
    char key[MAX_KEY];
    size_t klen = make_key(key, host, pid, m, NULL);
    return put_with_prev(t, key, klen, p, m, ts, v, ts, v);
}

static int put_gc(struct apm_store_txn *t, const char *host, const char *pid,
                  const struct apm_proc_desc *p, const struct apm_gc_stats *g)
{
    int64_t sum[3] = {0, 0, 0};
    for (uint32_t i = 0; i < g->ngen && i < APM_GC_GENERATIONS_MAX; i++) {
        sum[0] += g->gen[i].collections;
        sum[1] += g->gen[i].collected;
        sum[2] += g->gen[i].uncollectable;
    }
    int rc = put_plain(t, host, pid, p, APM_METRIC_GC_COLLECTIONS, g->t_ms, sum[0]);
    if (rc == 0)
        rc = put_plain(t, host, pid, p, APM_METRIC_GC_COLLECTED, g->t_ms, sum[1]);
    if (rc == 0)
        rc = put_plain(t, host, pid, p, APM_METRIC_GC_UNCOLLECTABLE, g->t_ms, sum[2]);
    if (rc == 0)
        rc = put_plain(t, host, pid, p, APM_METRIC_GC_GARBAGE, g->t_ms, g->garbage);
    return rc;
}

int apm_store_put_probe(struct apm_store_txn *t, const char *host, const struct apm_batch *b,
                        char (*pids)[PROCESS_ID_MAX])
{
    int rc = 0;
    for (uint32_t i = 0; i < b->ndiffs && rc == 0; i++) {
        const struct apm_trace_diff *d = &b->diffs[i];
        if (d->proc >= b->nprocs)
            return -EINVAL;
        const struct apm_proc_desc *p = &b->procs[d->proc];
        rc = put_plain(t, host, pids[d->proc], p, APM_METRIC_TRACED, d->t_ms, d->traced_current);
        for (uint32_t k = 0; k < d->nsites && rc == 0; k++)
            rc = put_site(t, host, pids[d->proc], p, d, &d->sites[k]);
    }
    for (uint32_t i = 0; i < b->ngc && rc == 0; i++) {
        const struct apm_gc_stats *g = &b->gc[i];
        if (g->proc >= b->nprocs)
            return -EINVAL;
        rc = put_gc(t, host, pids[g->proc], &b->procs[g->proc], g);
    }
    return rc;
}

/* ---- reading ---- */

/* The host of a process id "host:pid:start_ms" (hosts may hold ':'; pid and start do not). */
static int host_of(const char *process_id, char *host, size_t size)
{
    const char *end = strrchr(process_id, ':');
    if (end == NULL)
        return APM_E_NOTFOUND;
    const char *mid = end;
    while (mid > process_id && *--mid != ':')
        ;
    if (mid == process_id || (size_t)(mid - process_id) >= size)
        return APM_E_NOTFOUND;
    memcpy(host, process_id, (size_t)(mid - process_id));
    host[mid - process_id] = '\0';
    return 0;
}

static int key_for(const char *process_id, enum apm_metric m, const char *site, char *key,
                   size_t *klen)
{
    char host[256];
    if (strlen(process_id) >= PROCESS_ID_MAX || host_of(process_id, host, sizeof(host)) != 0)
        return APM_E_NOTFOUND;
    *klen = make_key(key, host, process_id, m, site);
    return 0;
}

int apm_store_find_series(struct apm_store *s, const char *process_id, enum apm_metric metric,
                          const char *site, uint64_t *id)
{
    char key[MAX_KEY];
    size_t klen;
    int rc =
        key_for(process_id, metric, apm_store_metric_has_site(metric) ? site : NULL, key, &klen);
    if (rc != 0)
        return rc;
    MDB_txn *txn = NULL;
    rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0)
        return apm_store_mdb_error(rc, "read");
    MDB_val k = {klen, key}, v;
    rc = mdb_get(txn, s->dbi[DB_SERIES_KEY], &k, &v);
    if (rc == 0 && v.mv_size == 8)
        *id = apm_store_get_be64(v.mv_data);
    mdb_txn_abort(txn);
    if (rc == MDB_NOTFOUND)
        return APM_E_NOTFOUND;
    return apm_store_mdb_error(rc, "series key");
}

int apm_store_list_process_series(struct apm_store *s, const char *process_id,
                                  enum apm_metric metric, apm_store_series_cb cb, void *ctx)
{
    char prefix[MAX_KEY];
    size_t plen;
    if (key_for(process_id, metric, NULL, prefix, &plen) != 0)
        return 0;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0)
        return apm_store_mdb_error(rc, "read");
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
            else
                stop = cb(ctx, &rec.info) ? 1 : 0;
        }
        if (stop == 0)
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    if (stop < 0)
        return stop;
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : apm_store_mdb_error(rc, "scan");
}
