/*
 * The remote-write cursor and pending record (docs/store.md, "Remote-write
 * cursor"): per series, the time of the last sample the exporter had
 * acknowledged by its receiver, and, while a request is in flight, the time
 * of the last sample of each series in it. Written by the exporter's thread
 * in its own transactions, as the analysis writes verdicts; read by the
 * exporter at start and by the maintenance, which keeps what the cursor has
 * not passed.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"
#include "server/store/store_priv.h"

/* Puts ids[i] -> t_ms[i] into dbi. Returns an LMDB code. */
static int put_times(MDB_txn *txn, MDB_dbi dbi, const uint64_t *ids, const int64_t *t_ms, size_t n)
{
    int mrc = 0;
    for (size_t i = 0; mrc == 0 && i < n; i++) {
        uint8_t key[8];
        apm_store_put_be64(key, ids[i]);
        MDB_val k = {sizeof(key), key}, v = {sizeof(t_ms[i]), (void *)&t_ms[i]};
        mrc = mdb_put(txn, dbi, &k, &v, 0);
    }
    return mrc;
}

/*
 * One transaction: empties the pending record, moves ncur cursors, then
 * fills the pending record with npend entries.
 */
static int write_txn(struct apm_store *s, const uint64_t *cur_ids, const int64_t *cur_ts,
                     size_t ncur, const uint64_t *pend_ids, const int64_t *pend_ts, size_t npend)
{
    MDB_txn *txn = NULL;
    int rc = apm_store_other_write_begin(s, &txn);
    if (rc < 0)
        return rc;
    int mrc = mdb_drop(txn, s->dbi[DB_RW_PENDING], 0);
    if (mrc == 0)
        mrc = put_times(txn, s->dbi[DB_RW_CURSOR], cur_ids, cur_ts, ncur);
    if (mrc == 0)
        mrc = put_times(txn, s->dbi[DB_RW_PENDING], pend_ids, pend_ts, npend);
    if (mrc != 0) {
        apm_store_read_end(s, txn);
        return apm_store_mdb_error(mrc, "remote-write cursor");
    }
    return apm_store_other_write_commit(s, txn);
}

int apm_store_rw_cursor_put(struct apm_store *s, const uint64_t *ids, const int64_t *t_ms, size_t n)
{
    return write_txn(s, ids, t_ms, n, NULL, NULL, 0);
}

int apm_store_rw_pending_put(struct apm_store *s, const uint64_t *cur_ids, const int64_t *cur_ts,
                             size_t ncur, const uint64_t *ids, const int64_t *t_ms, size_t n)
{
    return write_txn(s, cur_ids, cur_ts, ncur, ids, t_ms, n);
}

int apm_store_rw_pending_get(struct apm_store *s, uint64_t **ids, int64_t **t_ms, size_t *n)
{
    *ids = NULL;
    *t_ms = NULL;
    *n = 0;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    int rc = apm_store_read_begin(s, &txn);
    if (rc < 0)
        return rc;
    MDB_stat st;
    int mrc = mdb_stat(txn, s->dbi[DB_RW_PENDING], &st);
    if (mrc == 0 && st.ms_entries > 0) {
        *ids = malloc(st.ms_entries * sizeof(**ids));
        *t_ms = malloc(st.ms_entries * sizeof(**t_ms));
        if (*ids == NULL || *t_ms == NULL)
            rc = -ENOMEM;
        else
            mrc = mdb_cursor_open(txn, s->dbi[DB_RW_PENDING], &cur);
    }
    MDB_val k, v;
    for (int crc = cur != NULL ? mdb_cursor_get(cur, &k, &v, MDB_FIRST) : MDB_NOTFOUND;
         crc != MDB_NOTFOUND; crc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (crc != 0) {
            mrc = crc;
            break;
        }
        if (k.mv_size != 8 || v.mv_size != sizeof(int64_t) || *n == st.ms_entries) {
            rc = APM_E_STORE;
            break;
        }
        (*ids)[*n] = apm_store_get_be64(k.mv_data);
        memcpy(&(*t_ms)[*n], v.mv_data, sizeof(int64_t));
        (*n)++;
    }
    if (cur != NULL)
        mdb_cursor_close(cur);
    apm_store_read_end(s, txn);
    if (rc == 0 && mrc != 0)
        rc = apm_store_mdb_error(mrc, "remote-write pending record");
    if (rc < 0) {
        free(*ids);
        free(*t_ms);
        *ids = NULL;
        *t_ms = NULL;
        *n = 0;
    }
    return rc;
}

/* The cursor of one series inside txn: 0, or APM_E_NOTFOUND. */
int apm_store_txn_rw_cursor(struct apm_store *s, MDB_txn *txn, uint64_t id, int64_t *t_ms)
{
    uint8_t key[8];
    apm_store_put_be64(key, id);
    MDB_val k = {sizeof(key), key}, v;
    int rc = mdb_get(txn, s->dbi[DB_RW_CURSOR], &k, &v);
    if (rc == MDB_NOTFOUND)
        return APM_E_NOTFOUND;
    if (rc != 0)
        return apm_store_mdb_error(rc, "remote-write cursor");
    if (v.mv_size != sizeof(*t_ms))
        return APM_E_STORE;
    memcpy(t_ms, v.mv_data, sizeof(*t_ms));
    return 0;
}

int apm_store_rw_cursor_get(struct apm_store *s, uint64_t id, int64_t *t_ms)
{
    MDB_txn *txn = NULL;
    int rc = apm_store_read_begin(s, &txn);
    if (rc < 0)
        return rc;
    rc = apm_store_txn_rw_cursor(s, txn, id, t_ms);
    apm_store_read_end(s, txn);
    return rc;
}
