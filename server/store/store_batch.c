/*
 * A batch's write path: the agent's watermark (a batch already stored is
 * acknowledged, not stored again), its host and processes, its series'
 * samples, then the probe's data (store_probe.c). It builds on the series
 * index of store.c and never the other way round.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/timeutil.h"
#include "server/store/store_priv.h"

/* Returns 1 when (instance, seq) is already stored for the agent. */
static int check_watermark(struct apm_store_txn *t, const char *agent_id, uint64_t instance,
                           uint64_t seq)
{
    MDB_val k = {strlen(agent_id) + 1, (void *)agent_id}, v;
    int rc = mdb_get(t->txn, t->s->dbi[DB_WATERMARKS], &k, &v);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return apm_store_mdb_error(rc, "watermark");
    uint64_t stored[2] = {0, 0};
    if (v.mv_size == sizeof(stored))
        memcpy(stored, v.mv_data, sizeof(stored));
    return stored[0] == instance && seq <= stored[1] ? 1 : 0;
}

static int put_watermark(struct apm_store_txn *t, const char *agent_id, uint64_t instance,
                         uint64_t seq)
{
    uint64_t stored[2] = {instance, seq};
    MDB_val k = {strlen(agent_id) + 1, (void *)agent_id}, v = {sizeof(stored), stored};
    return apm_store_mdb_error(mdb_put(t->txn, t->s->dbi[DB_WATERMARKS], &k, &v, 0), "watermark");
}

/*
 * True when the record for key was written within APM_STORE_SEEN_REFRESH_MS
 * of now, so rewriting it would only move last_seen a little. Otherwise
 * remembers now as its last write (the caller writes it).
 */
static bool seen_recently(struct apm_store *s, char kind, const char *id, int64_t now)
{
    char key[PROCESS_ID_MAX + 2];
    key[0] = kind;
    size_t len = strlen(id);
    if (len > PROCESS_ID_MAX)
        len = PROCESS_ID_MAX;
    memcpy(key + 1, id, len);
    uint64_t last;
    if (apm_hashmap_get(&s->seen, key, len + 1, &last) == 0 &&
        now - (int64_t)last < APM_STORE_SEEN_REFRESH_MS)
        return true;
    (void)apm_hashmap_put(&s->seen, key, len + 1, (uint64_t)now);
    return false;
}

/* Upserts one process. Sets *created when the store did not know it. */
static int put_process(struct apm_store_txn *t, const char *host, const struct apm_proc_desc *p,
                       const char *id, int64_t now, bool *created)
{
    *created = false;
    if (seen_recently(t->s, 'p', id, now))
        return 0;
    MDB_val k = {strlen(id) + 1, (void *)id}, v;
    struct apm_process_info info = {.id = id,
                                    .host = host,
                                    .pid = p->pid,
                                    .ppid = p->ppid,
                                    .start_ms = p->start_ms,
                                    .name = p->name,
                                    .cmdline = p->cmdline,
                                    .cgroup = p->cgroup,
                                    .first_seen_ms = now,
                                    .last_seen_ms = now};
    struct apm_process_info old;
    int rc = mdb_get(t->txn, t->s->dbi[DB_PROCESSES], &k, &v);
    *created = rc == MDB_NOTFOUND;
    if (rc == 0 && apm_store_record_parse_process(v.mv_data, v.mv_size, id, &old) == 0)
        info.first_seen_ms = old.first_seen_ms;
    else if (rc != 0 && rc != MDB_NOTFOUND)
        return apm_store_mdb_error(rc, "process");
    size_t len = 0;
    uint8_t *rec = apm_store_record_process(&info, &len);
    if (rec == NULL)
        return -ENOMEM;
    v = (MDB_val){len, rec};
    rc = mdb_put(t->txn, t->s->dbi[DB_PROCESSES], &k, &v, 0);
    free(rec);
    return apm_store_mdb_error(rc, "process");
}

static int put_host(struct apm_store_txn *t, const struct apm_agent_ident *agent, int64_t now,
                    uint64_t new_processes)
{
    if (new_processes == 0 && seen_recently(t->s, 'h', agent->host, now))
        return 0;
    MDB_val k = {strlen(agent->host) + 1, (void *)agent->host}, v;
    struct apm_host_info info = {.host = agent->host,
                                 .agent_id = agent->agent_id,
                                 .boot_id = agent->boot_id,
                                 .version = agent->version,
                                 .first_seen_ms = now,
                                 .last_seen_ms = now,
                                 .nprocesses = new_processes};
    struct apm_host_info old;
    int rc = mdb_get(t->txn, t->s->dbi[DB_HOSTS], &k, &v);
    if (rc == 0 && apm_store_record_parse_host(v.mv_data, v.mv_size, agent->host, &old) == 0) {
        info.first_seen_ms = old.first_seen_ms;
        info.nprocesses += old.nprocesses;
    } else if (rc != 0 && rc != MDB_NOTFOUND) {
        return apm_store_mdb_error(rc, "host");
    }
    size_t len = 0;
    uint8_t *rec = apm_store_record_host(&info, &len);
    if (rec == NULL)
        return -ENOMEM;
    v = (MDB_val){len, rec};
    rc = mdb_put(t->txn, t->s->dbi[DB_HOSTS], &k, &v, 0);
    free(rec);
    return apm_store_mdb_error(rc, "host");
}

/* pids[i] is the process id ("host:pid:start_ms") of b->procs[i], made once per batch. */
static int put_series(struct apm_store_txn *t, const struct apm_agent_ident *agent,
                      const struct apm_batch *b, char (*pids)[PROCESS_ID_MAX],
                      const struct apm_series_block *blk)
{
    char key[STORE_KEY_BUF];
    const struct apm_proc_desc *p = NULL;
    if (blk->proc != APM_PROC_HOST) {
        if (blk->proc >= b->nprocs)
            return -EINVAL;
        p = &b->procs[blk->proc];
    }
    if (apm_metric_name(blk->metric) == NULL || apm_store_metric_has_site(blk->metric))
        return -EINVAL;
    size_t klen =
        apm_store_series_key(key, agent->host, p != NULL ? pids[blk->proc] : "", blk->metric, NULL);
    struct store_series *ser = NULL;
    int rc =
        apm_store_series_get(t, key, klen, p ? p->name : "", p ? p->pid : 0, blk->metric, &ser);
    return rc < 0 ? rc : apm_store_put_block(t, ser, blk);
}

int apm_store_txn_put_batch(struct apm_store_txn *t, const struct apm_agent_ident *agent,
                            const struct apm_batch *b)
{
    int rc = check_watermark(t, agent->agent_id, agent->instance, b->seq);
    if (rc != 0)
        return rc;
    int64_t now = apm_now_ms();
    uint64_t created = 0;
    char(*pids)[PROCESS_ID_MAX] = malloc(((size_t)b->nprocs + 1) * PROCESS_ID_MAX);
    if (pids == NULL)
        return -ENOMEM;
    for (uint32_t i = 0; i < b->nprocs && rc == 0; i++) {
        bool is_new = false;
        apm_store_process_id(pids[i], PROCESS_ID_MAX, agent->host, b->procs[i].pid,
                             b->procs[i].start_ms);
        rc = put_process(t, agent->host, &b->procs[i], pids[i], now, &is_new);
        created += is_new;
    }
    if (rc == 0)
        rc = put_host(t, agent, now, created);
    for (uint32_t i = 0; i < b->nseries && rc == 0; i++)
        rc = put_series(t, agent, b, pids, &b->series[i]);
    if (rc == 0)
        rc = apm_store_put_probe(t, agent->host, b, pids);
    free(pids);
    if (rc == 0)
        rc = put_watermark(t, agent->agent_id, agent->instance, b->seq);
    return rc;
}
