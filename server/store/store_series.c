/*
 * The writer's in-memory series index (docs/store.md, "The open chunk"): series
 * key -> its state (record fields and the head chunk's encoder), loaded from
 * LMDB on first use, created with the next series id, renamed, released.
 * Writer thread only.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"
#include "common/base/log.h"
#include "common/base/mem.h"
#include "server/store/store_priv.h"

static void series_free(struct store_series *ser)
{
    if (ser == NULL)
        return;
    apm_chunk_enc_close(&ser->head);
    free(ser->renamed);
    free(ser);
}

void apm_store_series_release(struct apm_store *s, struct store_series *ser, bool unpublish)
{
    if (ser != NULL && unpublish)
        apm_store_head_unpublish(s, ser->id);
    series_free(ser);
}

static void free_indexed(void *ctx, const void *key, size_t klen, uint64_t value)
{
    (void)ctx;
    (void)key;
    (void)klen;
    series_free((struct store_series *)(uintptr_t)value);
}

/* Allocates a series with its key and strings in one block. */
static struct store_series *series_alloc(const char *key, size_t klen, const char *name)
{
    size_t nlen = strlen(name) + 1;
    struct store_series *ser = calloc(1, sizeof(*ser) + klen + nlen);
    if (ser == NULL)
        return NULL;
    ser->key = (char *)(ser + 1);
    memcpy(ser->key, key, klen);
    ser->klen = klen;
    ser->host = ser->key;
    ser->process_id = ser->key + strlen(ser->key) + 1;
    ser->process_name = ser->key + klen;
    /* host \0 process id \0 metric byte, then for site metrics the site with its NUL. */
    size_t site_at = strlen(ser->key) + 1 + strlen(ser->process_id) + 1 + 1;
    ser->site = site_at < klen ? ser->key + site_at : "";
    memcpy(ser->key + klen, name, nlen);
    apm_chunk_enc_init(&ser->head);
    ser->rec_last = INT64_MIN;
    return ser;
}

/* Reads a series the index does not hold yet. Returns 0, APM_E_NOTFOUND or an error. */
static int series_load(struct apm_store_txn *t, const char *key, size_t klen,
                       struct store_series **out)
{
    struct apm_store *s = t->s;
    MDB_val k = {klen, (void *)key}, v;
    int rc = mdb_get(t->txn, s->dbi[DB_SERIES_KEY], &k, &v);
    if (rc == MDB_NOTFOUND)
        return APM_E_NOTFOUND;
    if (rc != 0 || v.mv_size != 8)
        return apm_store_mdb_error(rc ? rc : MDB_CORRUPTED, "series key");
    uint8_t idkey[8];
    memcpy(idkey, v.mv_data, 8);
    uint64_t id = apm_store_get_be64(idkey);
    k = (MDB_val){8, idkey};
    rc = mdb_get(t->txn, s->dbi[DB_SERIES], &k, &v);
    if (rc != 0)
        return apm_store_mdb_error(rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc, "series record");
    struct store_series_record rec;
    if (apm_store_record_parse_series(v.mv_data, v.mv_size, id, &rec) < 0) {
        apm_error("store: series %" PRIu64 ": damaged record", id);
        return APM_E_STORE;
    }
    return apm_store_series_from_record(key, klen, id, &rec, out);
}

/* Sets ser's fields and open chunk to those of its record. */
int apm_store_series_set(struct store_series *ser, const struct store_series_record *rec)
{
    ser->pid = rec->info.pid;
    ser->metric = rec->info.metric;
    ser->first_ms = rec->info.first_ms;
    ser->last_ms = rec->info.last_ms;
    ser->last_value = rec->info.last_value;
    ser->nsamples = rec->info.nsamples;
    ser->rec_last = rec->info.nsamples > 0 ? rec->info.last_ms : INT64_MIN;
    apm_chunk_enc_reset(&ser->head, rec->shift_hint, rec->dt_hint);
    if (rec->head_len > 0) {
        int rc = apm_chunk_enc_load(&ser->head, rec->head, rec->head_len, rec->head_first_t);
        if (rc < 0) {
            apm_error("store: series %" PRIu64 ": damaged open chunk", ser->id);
            return rc == -ENOMEM ? rc : APM_E_STORE;
        }
    }
    return 0;
}

int apm_store_series_from_record(const char *key, size_t klen, uint64_t id,
                                 const struct store_series_record *rec, struct store_series **out)
{
    struct store_series *ser = series_alloc(key, klen, rec->info.process_name);
    if (ser == NULL)
        return -ENOMEM;
    ser->id = id;
    int rc = apm_store_series_set(ser, rec);
    if (rc < 0) {
        series_free(ser);
        return rc;
    }
    *out = ser;
    return 0;
}

static int series_create(struct apm_store_txn *t, const char *key, size_t klen, const char *name,
                         int32_t pid, enum apm_metric metric, struct store_series **out)
{
    struct store_series *ser = series_alloc(key, klen, name);
    if (ser == NULL)
        return -ENOMEM;
    ser->id = t->next_series_id;
    ser->pid = pid;
    ser->metric = metric;
    uint8_t idkey[8];
    apm_store_put_be64(idkey, ser->id);
    MDB_val k = {klen, (void *)key}, v = {8, idkey};
    int rc = mdb_put(t->txn, t->s->dbi[DB_SERIES_KEY], &k, &v, MDB_NOOVERWRITE);
    if (rc != 0) {
        series_free(ser);
        return apm_store_mdb_error(rc, "new series");
    }
    t->next_series_id++;
    *out = ser;
    return 0;
}

/*
 * Finds or creates the series and marks it dirty in t. A series created or
 * loaded here joins the index at once: abort removes every dirty series.
 */
int apm_store_series_exists(struct apm_store_txn *t, const char *key, size_t klen)
{
    uint64_t ptr;
    if (apm_hashmap_get(&t->s->index, key, klen, &ptr) == 0)
        return 1;
    MDB_val k = {klen, (void *)key}, v;
    int rc = mdb_get(t->txn, t->s->dbi[DB_SERIES_KEY], &k, &v);
    if (rc == MDB_NOTFOUND)
        return 0;
    return rc == 0 ? 1 : apm_store_mdb_error(rc, "series key");
}

int apm_store_series_get(struct apm_store_txn *t, const char *key, size_t klen, const char *name,
                         int32_t pid, enum apm_metric metric, struct store_series **out)
{
    struct apm_store *s = t->s;
    uint64_t ptr;
    struct store_series *ser = NULL;
    int rc = 0;
    if (apm_hashmap_get(&s->index, key, klen, &ptr) == 0) {
        ser = (struct store_series *)(uintptr_t)ptr;
    } else {
        bool created = false;
        rc = series_load(t, key, klen, &ser);
        if (rc == APM_E_NOTFOUND) {
            rc = series_create(t, key, klen, name, pid, metric, &ser);
            created = true;
        }
        if (rc < 0)
            return rc;
        rc = apm_hashmap_put(&s->index, key, klen, (uint64_t)(uintptr_t)ser);
        if (rc < 0) {
            series_free(ser);
            return rc;
        }
        /* A new series' record is written at once: its key must lead to a record. */
        if (created)
            apm_store_checkpoint_later(t, ser);
    }
    /*
     * A process may be first seen before its exec (fork, then exec a few
     * milliseconds later) or renamed by a launcher: the series follows the
     * name the process has now, since queries select by it.
     */
    if (name[0] != '\0' && strcmp(ser->process_name, name) != 0) {
        char *n = strdup(name);
        if (n != NULL) {
            free(ser->renamed);
            ser->renamed = n;
            ser->process_name = n;
            apm_store_checkpoint_later(t, ser); /* the record names the process */
        }
    }
    if (!ser->dirty) {
        ser->dirty = true;
        ser->next_dirty = t->dirty;
        t->dirty = ser;
    }
    *out = ser;
    return 0;
}

void apm_store_index_free_all(struct apm_store *s)
{
    apm_hashmap_foreach(&s->index, free_indexed, NULL);
}
