/*
 * Verdict records in the "verdicts" database. A record is a version byte, fixed-size
 * fields in host byte order (an LMDB file is not portable across byte orders
 * anyway), then host, process id and name, each with its NUL. Every parse
 * checks lengths, so a damaged record is an error, never a crash.
 *
 * Version 2 adds the growing class, why it has no verdict yet (doubt byte and
 * doubt_until_t), when the growth began and whether its rate is steady.
 * Version 1 records (written before) still read: the new fields then say
 * nothing is known (NAN times, no doubt, not steady). Records are rewritten
 * in version 2 as soon as their series is judged again.
 */
#include "server/store/store_verdict.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"
#include "server/store/store_priv.h"

#define RECORD_VERSION 2u
#define NDOUBLES 11u
/* version, metric, class, flags, limit source, doubt; pid; start; doubles; samples */
#define FIXED_LEN (6u + 4u + 8u + NDOUBLES * 8u + 8u)
/* Version 1: no doubt byte, the first 9 doubles. */
#define V1_NDOUBLES 9u
#define V1_FIXED_LEN (5u + 4u + 8u + V1_NDOUBLES * 8u + 8u)
#define FLAG_ALERT 1u
#define FLAG_FORECAST 2u
#define FLAG_RESTARTED 4u
#define FLAG_STEADY 8u

const char *apm_limit_source_name(enum apm_limit_source s)
{
    switch (s) {
    case APM_LIMIT_CGROUP:
        return "cgroup";
    case APM_LIMIT_CONFIGURED:
        return "configured";
    case APM_LIMIT_HOST:
        return "host";
    case APM_LIMIT_NONE:
        break;
    }
    return NULL;
}

static void doubles_of(const struct apm_verdict_record *r, double d[NDOUBLES])
{
    d[0] = r->value;
    d[1] = r->v.confidence;
    d[2] = r->v.rate;
    d[3] = r->v.forecast_t;
    d[4] = r->v.forecast_lo_t;
    d[5] = r->v.forecast_hi_t;
    d[6] = r->v.limit;
    d[7] = r->v.t_last;
    d[8] = r->evaluated_at;
    d[9] = r->v.growth_start_t;
    d[10] = r->v.doubt_until_t;
}

/* Returns an owned buffer of *len bytes (free with free()) or NULL. */
static uint8_t *encode(const struct apm_verdict_record *r, size_t *len)
{
    size_t hl = strnlen(r->host, sizeof(r->host) - 1) + 1;
    size_t pl = strnlen(r->process_id, sizeof(r->process_id) - 1) + 1;
    size_t nl = strnlen(r->name, sizeof(r->name) - 1) + 1;
    uint8_t *buf = malloc(FIXED_LEN + hl + pl + nl);
    if (buf == NULL)
        return NULL;
    uint8_t *p = buf;
    *p++ = RECORD_VERSION;
    *p++ = (uint8_t)r->metric;
    *p++ = (uint8_t)r->v.cls;
    *p++ =
        (uint8_t)((r->v.alert ? FLAG_ALERT : 0) | (r->v.has_forecast ? FLAG_FORECAST : 0) |
                  (r->restarted_at_limit ? FLAG_RESTARTED : 0) | (r->v.steady ? FLAG_STEADY : 0));
    *p++ = (uint8_t)r->limit_source;
    *p++ = (uint8_t)r->v.doubt;
    memcpy(p, &r->pid, 4);
    p += 4;
    memcpy(p, &r->start_ms, 8);
    p += 8;
    double d[NDOUBLES];
    doubles_of(r, d);
    memcpy(p, d, sizeof(d));
    p += sizeof(d);
    uint64_t samples = r->v.samples;
    memcpy(p, &samples, 8);
    p += 8;
    /* Each string is copied up to its cap and then terminated. */
    memcpy(p, r->host, hl - 1);
    p[hl - 1] = '\0';
    p += hl;
    memcpy(p, r->process_id, pl - 1);
    p[pl - 1] = '\0';
    p += pl;
    memcpy(p, r->name, nl - 1);
    p[nl - 1] = '\0';
    *len = FIXED_LEN + hl + pl + nl;
    return buf;
}

/* Copies the NUL-terminated string at *p (within end) into dst. Returns 0 or -1. */
static int take_string(const uint8_t **p, const uint8_t *end, char *dst, size_t size)
{
    const uint8_t *nul = memchr(*p, '\0', (size_t)(end - *p));
    if (nul == NULL || (size_t)(nul - *p) >= size)
        return -1;
    memcpy(dst, *p, (size_t)(nul - *p) + 1);
    *p = nul + 1;
    return 0;
}

static int decode(const void *buf, size_t len, uint64_t id, struct apm_verdict_record *r)
{
    const uint8_t *p = buf, *end = p + len;
    if (len < 1 || (p[0] != RECORD_VERSION && p[0] != 1u))
        return APM_E_STORE;
    bool v1 = p[0] == 1u;
    size_t fixed = v1 ? V1_FIXED_LEN : FIXED_LEN;
    if (len < fixed || p[1] >= APM_METRIC_COUNT || p[2] > APM_CLASS_GROWING ||
        p[4] > APM_LIMIT_HOST || (!v1 && p[5] > APM_DOUBT_STEP))
        return APM_E_STORE;
    memset(r, 0, sizeof(*r));
    r->series_id = id;
    r->metric = (enum apm_metric)p[1];
    r->v.cls = (enum apm_class)p[2];
    r->v.alert = (p[3] & FLAG_ALERT) != 0;
    r->v.has_forecast = (p[3] & FLAG_FORECAST) != 0;
    r->restarted_at_limit = (p[3] & FLAG_RESTARTED) != 0;
    r->v.steady = (p[3] & FLAG_STEADY) != 0;
    r->limit_source = (enum apm_limit_source)p[4];
    r->v.doubt = v1 ? APM_DOUBT_NONE : (enum apm_doubt)p[5];
    p += v1 ? 5 : 6;
    memcpy(&r->pid, p, 4);
    p += 4;
    memcpy(&r->start_ms, p, 8);
    p += 8;
    double d[NDOUBLES] = {[9] = NAN, [10] = NAN};
    size_t nd = v1 ? V1_NDOUBLES : NDOUBLES;
    memcpy(d, p, nd * 8);
    p += nd * 8;
    r->value = d[0];
    r->v.confidence = d[1];
    r->v.rate = d[2];
    r->v.forecast_t = d[3];
    r->v.forecast_lo_t = d[4];
    r->v.forecast_hi_t = d[5];
    r->v.limit = d[6];
    r->v.t_last = d[7];
    r->evaluated_at = d[8];
    r->v.growth_start_t = d[9];
    r->v.doubt_until_t = d[10];
    uint64_t samples;
    memcpy(&samples, p, 8);
    p += 8;
    r->v.samples = (size_t)samples;
    if (take_string(&p, end, r->host, sizeof(r->host)) != 0 ||
        take_string(&p, end, r->process_id, sizeof(r->process_id)) != 0 ||
        take_string(&p, end, r->name, sizeof(r->name)) != 0 || p != end)
        return APM_E_STORE;
    return 0;
}

int apm_store_verdict_put(struct apm_store *s, const struct apm_verdict_record *const *recs,
                          size_t n)
{
    if (n == 0)
        return 0;
    MDB_txn *txn = NULL;
    int rc = apm_store_other_write_begin(s, &txn);
    if (rc < 0)
        return rc;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        size_t len = 0;
        uint8_t *buf = encode(recs[i], &len);
        if (buf == NULL) {
            apm_store_read_end(s, txn);
            return -ENOMEM;
        }
        uint8_t key[8];
        apm_store_put_be64(key, recs[i]->series_id);
        MDB_val k = {sizeof(key), key}, v = {len, buf};
        rc = mdb_put(txn, s->dbi[DB_VERDICTS], &k, &v, 0);
        free(buf);
    }
    if (rc != 0) {
        apm_store_read_end(s, txn);
        return apm_store_mdb_error(rc, "verdicts");
    }
    return apm_store_other_write_commit(s, txn);
}

int apm_store_verdict_get(struct apm_store *s, uint64_t series_id, struct apm_verdict_record *out)
{
    MDB_txn *txn = NULL;
    int rc = apm_store_read_begin(s, &txn);
    if (rc < 0)
        return rc;
    uint8_t key[8];
    apm_store_put_be64(key, series_id);
    MDB_val k = {sizeof(key), key}, v;
    rc = mdb_get(txn, s->dbi[DB_VERDICTS], &k, &v);
    if (rc == MDB_NOTFOUND)
        rc = APM_E_NOTFOUND;
    else if (rc != 0)
        rc = apm_store_mdb_error(rc, "verdict");
    else
        rc = decode(v.mv_data, v.mv_size, series_id, out);
    apm_store_read_end(s, txn);
    return rc;
}

int apm_store_verdict_list(struct apm_store *s, apm_store_verdict_cb cb, void *ctx)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    struct apm_verdict_record *rec = malloc(sizeof(*rec));
    if (rec == NULL)
        return -ENOMEM;
    int rc = apm_store_read_begin(s, &txn);
    if (rc < 0) {
        free(rec);
        return rc;
    }
    rc = mdb_cursor_open(txn, s->dbi[DB_VERDICTS], &cur);
    MDB_val k, v;
    if (rc == 0)
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    int stop = 0;
    while (rc == 0 && stop == 0) {
        /* A damaged record is skipped: one bad entry must not hide the others. */
        if (k.mv_size == 8 && decode(v.mv_data, v.mv_size, apm_store_get_be64(k.mv_data), rec) == 0)
            stop = cb(ctx, rec);
        if (stop == 0)
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    apm_store_read_end(s, txn);
    free(rec);
    if (stop != 0)
        return 0;
    return rc == MDB_NOTFOUND ? 0 : apm_store_mdb_error(rc, "verdicts");
}
