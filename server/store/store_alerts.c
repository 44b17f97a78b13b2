/*
 * Alert and silence records in the "alerts" and "silences" databases
 * (store_alerts.h). The store does not look inside a record:
 * server/alerts/ owns their formats. Both databases have the same shape
 * (id -> record, key 0 -> the next id), so one pair of functions serves them.
 */
#include "server/store/store_alerts.h"

#include <errno.h>
#include <string.h>

#include "common/base/error.h"
#include "server/store/store_priv.h"

static int records_put(struct apm_store *s, int db, const struct apm_store_alert_rec *recs,
                       size_t n, const uint64_t *del, size_t ndel, uint64_t next_id)
{
    MDB_txn *txn = NULL;
    int rc = apm_store_other_write_begin(s, &txn);
    if (rc != 0)
        return rc;
    MDB_dbi dbi = s->dbi[db];
    uint8_t key[8];
    for (size_t i = 0; rc == 0 && i < n; i++) {
        apm_store_put_be64(key, recs[i].id);
        MDB_val k = {8, key}, v = {recs[i].len, (void *)recs[i].data};
        rc = mdb_put(txn, dbi, &k, &v, 0);
    }
    for (size_t i = 0; rc == 0 && i < ndel; i++) {
        apm_store_put_be64(key, del[i]);
        MDB_val k = {8, key};
        rc = mdb_del(txn, dbi, &k, NULL);
        if (rc == MDB_NOTFOUND)
            rc = 0;
    }
    if (rc == 0) {
        uint8_t val[8];
        apm_store_put_be64(key, 0);
        apm_store_put_be64(val, next_id);
        MDB_val k = {8, key}, v = {8, val};
        rc = mdb_put(txn, dbi, &k, &v, 0);
    }
    if (rc != 0) {
        apm_store_read_end(s, txn);
        return apm_store_mdb_error(rc, db == DB_ALERTS ? "alerts: write" : "silences: write");
    }
    rc = apm_store_other_write_commit(s, txn);
    if (rc == 0)
        atomic_fetch_add(&s->commits, 1);
    return rc;
}

static int records_load(struct apm_store *s, int db, apm_store_alert_cb cb, void *ctx,
                        uint64_t *next_id)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    *next_id = 1;
    int rc = apm_store_read_begin(s, &txn);
    if (rc < 0)
        return rc;
    rc = mdb_cursor_open(txn, s->dbi[db], &cur);
    MDB_val k, v;
    int op = MDB_FIRST;
    while (rc == 0 && (rc = mdb_cursor_get(cur, &k, &v, (MDB_cursor_op)op)) == 0) {
        op = MDB_NEXT;
        if (k.mv_size != 8)
            continue;
        uint64_t id = apm_store_get_be64(k.mv_data);
        if (id == 0) {
            if (v.mv_size == 8)
                *next_id = apm_store_get_be64(v.mv_data);
            continue;
        }
        if (cb(ctx, id, v.mv_data, v.mv_size) != 0)
            break;
    }
    if (rc == MDB_NOTFOUND)
        rc = 0;
    if (cur != NULL)
        mdb_cursor_close(cur);
    apm_store_read_end(s, txn);
    return apm_store_mdb_error(rc, db == DB_ALERTS ? "alerts: load" : "silences: load");
}

int apm_store_alerts_put(struct apm_store *s, const struct apm_store_alert_rec *recs, size_t n,
                         const uint64_t *del, size_t ndel, uint64_t next_id)
{
    return records_put(s, DB_ALERTS, recs, n, del, ndel, next_id);
}

int apm_store_alerts_load(struct apm_store *s, apm_store_alert_cb cb, void *ctx, uint64_t *next_id)
{
    return records_load(s, DB_ALERTS, cb, ctx, next_id);
}

int apm_store_silences_put(struct apm_store *s, const struct apm_store_alert_rec *recs, size_t n,
                           const uint64_t *del, size_t ndel, uint64_t next_id)
{
    return records_put(s, DB_SILENCES, recs, n, del, ndel, next_id);
}

int apm_store_silences_load(struct apm_store *s, apm_store_alert_cb cb, void *ctx,
                            uint64_t *next_id)
{
    return records_load(s, DB_SILENCES, cb, ctx, next_id);
}
