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

#include "common/base/error.h"
#include "server/store/store_priv.h"

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
    char key[STORE_KEY_BUF];
    size_t klen = apm_store_series_key(key, host, pid, APM_METRIC_SITE_SIZE, name);
    size_t plen = apm_store_series_key(key, host, pid, APM_METRIC_SITE_SIZE, NULL);
    if (klen == 0) {
        free(name);
        t->sites_refused++; /* host and process id leave no room for a site */
        return 0;
    }
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
    /* A sampled site's error: its running variance (0 before it was seen: conservative). */
    if (rc == 0 && d->sample_bytes > 0) {
        key[plen - 1] = (char)APM_METRIC_SITE_VAR;
        rc = put_with_prev(t, key, klen, p, APM_METRIC_SITE_VAR, prev_ts, 0, d->t_ms,
                           st->growth_var);
    }
    free(name);
    return rc < 0 ? rc : 0;
}

static int put_plain(struct apm_store_txn *t, const char *host, const char *pid,
                     const struct apm_proc_desc *p, enum apm_metric m, int64_t ts, int64_t v)
{
    char key[STORE_KEY_BUF];
    size_t klen = apm_store_series_key(key, host, pid, m, NULL);
    return put_with_prev(t, key, klen, p, m, ts, v, ts, v);
}

static int put_gc(struct apm_store_txn *t, const char *host, const char *pid,
                  const struct apm_proc_desc *p, const struct apm_gc_stats *g)
{
    int64_t sum[APM_GC_METRICS];
    apm_gc_totals(g, sum);
    int rc = 0;
    for (int i = 0; i < APM_GC_METRICS && rc == 0; i++)
        rc = put_plain(t, host, pid, p, apm_gc_metrics[i], g->t_ms, sum[i]);
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
