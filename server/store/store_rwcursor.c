/*
 * The remote-write cursor (docs/store.md, "Remote-write cursor"): per
 * series, the time of the last sample the exporter had acknowledged by its
 * receiver. Written by the exporter's thread in its own transactions, as
 * the analysis writes verdicts; read by the exporter at start and by the
 * maintenance, which keeps what the cursor has not passed.
 */
#include <string.h>

#include "common/error.h"
#include "server/store/store_priv.h"

int apm_store_rw_cursor_put(struct apm_store *s, const uint64_t *ids, const int64_t *t_ms, size_t n)
{
    if (n == 0)
        return 0;
    MDB_txn *txn = NULL;
    int rc = apm_store_other_write_begin(s, &txn);
    if (rc < 0)
        return rc;
    int mrc = 0;
    for (size_t i = 0; mrc == 0 && i < n; i++) {
        uint8_t key[8];
        apm_store_put_be64(key, ids[i]);
        MDB_val k = {sizeof(key), key}, v = {sizeof(t_ms[i]), (void *)&t_ms[i]};
        mrc = mdb_put(txn, s->dbi[DB_RW_CURSOR], &k, &v, 0);
    }
    if (mrc != 0) {
        apm_store_read_end(s, txn);
        return apm_store_mdb_error(mrc, "remote-write cursor");
    }
    return apm_store_other_write_commit(s, txn);
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
