/*
 * The names the store files things under: a process's id
 * ("host:pid:start_ms") and a series' key in DB_SERIES_KEY (host \0 process
 * id \0 metric byte [site \0]). Every key is built here and nowhere else, so
 * that the writer, the probe's writer and the readers find the same series.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/base/error.h"
#include "server/store/store_priv.h"

/* LMDB's default key cap is 511 bytes: host, process id and site must fit together. */
#define MAX_KEY 511u
/* Room a long site keeps: its end, after "...", and a hash of the whole to keep sites apart. */
#define SITE_HASH_LEN 17u

bool apm_store_metric_has_site(enum apm_metric m)
{
    return m == APM_METRIC_SITE_SIZE || m == APM_METRIC_SITE_COUNT || m == APM_METRIC_SITE_VAR;
}

void apm_store_process_id(char *buf, size_t size, const char *host, int32_t pid, int64_t start_ms)
{
    snprintf(buf, size, "%s:%" PRId32 ":%" PRId64, host, pid, start_ms);
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

size_t apm_store_series_key(char *key, const char *host, const char *process_id, enum apm_metric m,
                            const char *site)
{
    size_t hl = strnlen(host, STORE_HOST_MAX - 1), pl = strnlen(process_id, PROCESS_ID_MAX - 1);
    size_t n = 0;
    memcpy(key, host, hl);
    key[hl] = '\0';
    n += hl + 1;
    memcpy(key + n, process_id, pl);
    key[n + pl] = '\0';
    n += pl + 1;
    key[n++] = (char)m;
    if (site == NULL)
        return n;
    if (n + 4 + SITE_HASH_LEN + 1 > MAX_KEY)
        return 0;
    size_t sl = strlen(site), room = MAX_KEY - n - 1;
    if (sl <= room) {
        memcpy(key + n, site, sl + 1);
        return n + sl + 1;
    }
    size_t keep = room - 3 - SITE_HASH_LEN;
    n += (size_t)snprintf(key + n, room + 1, "...%s#%016" PRIx64, site + sl - keep, fnv1a(site));
    return n + 1;
}

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

int apm_store_process_key(const char *host, const char *process_id, enum apm_metric m,
                          const char *site, char *key, size_t *klen)
{
    char own[STORE_HOST_MAX];
    if (strlen(process_id) >= PROCESS_ID_MAX)
        return APM_E_NOTFOUND;
    if (host == NULL) {
        if (host_of(process_id, own, sizeof(own)) != 0)
            return APM_E_NOTFOUND;
        host = own;
    } else if (strlen(host) >= STORE_HOST_MAX) {
        return APM_E_NOTFOUND;
    }
    *klen = apm_store_series_key(key, host, process_id, m,
                                 apm_store_metric_has_site(m) && site != NULL ? site : NULL);
    return *klen > 0 ? 0 : APM_E_NOTFOUND;
}

int apm_store_find_series(struct apm_store *s, const char *host, const char *process_id,
                          enum apm_metric metric, const char *site, uint64_t *id)
{
    char key[STORE_KEY_BUF];
    size_t klen = 0;
    int rc = apm_store_process_key(host, process_id, metric, site, key, &klen);
    if (rc != 0)
        return rc;
    MDB_txn *txn = NULL;
    rc = apm_store_read_begin(s, &txn);
    if (rc != 0)
        return rc;
    MDB_val k = {klen, key}, v;
    rc = mdb_get(txn, s->dbi[DB_SERIES_KEY], &k, &v);
    if (rc == 0 && v.mv_size == 8)
        *id = apm_store_get_be64(v.mv_data);
    else if (rc == 0)
        rc = MDB_CORRUPTED;
    apm_store_read_end(s, txn);
    if (rc == MDB_NOTFOUND)
        return APM_E_NOTFOUND;
    return apm_store_mdb_error(rc, "series key");
}
