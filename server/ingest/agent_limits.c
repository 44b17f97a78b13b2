#include "server/ingest/agent_limits.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"
#include "common/base/hashmap.h"

#define DEFAULT_GRACE_MS 120000u
#define AGENT_ID_MAX 128u

enum { KIND_PROCESSES, KIND_SERIES, KIND_SITES, KINDS };

static const char *const kind_names[KINDS] = {"processes", "series", "sites"};

/* One agent's live sets: 64-bit identity hash -> last reported (ms). */
struct agent {
    struct apm_hashmap live[KINDS];
    uint64_t swept_ms;
    char id[AGENT_ID_MAX];
};

struct apm_agent_limits {
    struct apm_agent_limits_options opt;
    uint64_t max[KINDS];
    struct apm_hashmap agents; /* agent id -> struct agent * */
    uint64_t swept_ms;
};

int apm_agent_limits_new(const struct apm_agent_limits_options *opt, struct apm_agent_limits **out)
{
    struct apm_agent_limits *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return -ENOMEM;
    l->opt = *opt;
    if (l->opt.grace_ms == 0)
        l->opt.grace_ms = DEFAULT_GRACE_MS;
    l->max[KIND_PROCESSES] = l->opt.max_processes ? l->opt.max_processes : 10000;
    l->max[KIND_SERIES] = l->opt.max_series ? l->opt.max_series : 100000;
    l->max[KIND_SITES] = l->opt.max_sites ? l->opt.max_sites : 100000;
    apm_hashmap_init(&l->agents);
    *out = l;
    return 0;
}

static void agent_free(struct agent *a)
{
    for (int k = 0; k < KINDS; k++)
        apm_hashmap_close(&a->live[k]);
    free(a);
}

static void free_one(void *ctx, const void *key, size_t klen, uint64_t value)
{
    (void)ctx;
    (void)key;
    (void)klen;
    agent_free((struct agent *)(uintptr_t)value);
}

void apm_agent_limits_free(struct apm_agent_limits *l)
{
    if (l == NULL)
        return;
    apm_hashmap_foreach(&l->agents, free_one, NULL);
    apm_hashmap_close(&l->agents);
    free(l);
}

/* ---- identities ---- */

struct proc_id {
    int64_t start_ms;
    int32_t pid;
    int32_t metric; /* 0 for the process itself */
};

static uint64_t proc_hash(const struct apm_batch *b, uint32_t proc, enum apm_metric m)
{
    struct proc_id id = {0, 0, (int32_t)m};
    if (proc != APM_PROC_HOST) {
        id.start_ms = b->procs[proc].start_ms;
        id.pid = b->procs[proc].pid;
    }
    return apm_hash_bytes(&id, sizeof(id));
}

static uint64_t site_hash(const struct apm_batch *b, uint32_t proc, const struct apm_site_stat *s)
{
    uint64_t h[3] = {proc_hash(b, proc, APM_METRIC_NONE), apm_hash_bytes(s->file, strlen(s->file)),
                     (uint64_t)s->line << 32 | s->nframes};
    uint64_t id = apm_hash_bytes(h, sizeof(h));
    for (uint32_t f = 0; f < s->nframes; f++) {
        uint64_t fr[3] = {id, apm_hash_bytes(s->frames[f].file, strlen(s->frames[f].file)),
                          s->frames[f].line};
        id = apm_hash_bytes(fr, sizeof(fr));
    }
    return id;
}

/* What one batch reports, per kind, as sorted unique identities. */
struct reported {
    uint64_t *ids[KINDS];
    size_t n[KINDS];
};

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void sort_unique(uint64_t *v, size_t *n)
{
    if (*n == 0)
        return;
    qsort(v, *n, sizeof(*v), cmp_u64);
    size_t k = 1;
    for (size_t i = 1; i < *n; i++)
        if (v[i] != v[k - 1])
            v[k++] = v[i];
    *n = k;
}

static void reported_free(struct reported *r)
{
    for (int k = 0; k < KINDS; k++)
        free(r->ids[k]);
}

static int reported_collect(const struct apm_batch *b, struct reported *r)
{
    memset(r, 0, sizeof(*r));
    size_t nsites = 0;
    for (uint32_t i = 0; i < b->ndiffs; i++)
        nsites += b->diffs[i].nsites;
    size_t cap[KINDS] = {b->nprocs, b->nseries, nsites};
    for (int k = 0; k < KINDS; k++) {
        r->ids[k] = malloc((cap[k] ? cap[k] : 1) * sizeof(uint64_t));
        if (r->ids[k] == NULL) {
            reported_free(r);
            return -ENOMEM;
        }
    }
    for (uint32_t i = 0; i < b->nprocs; i++)
        r->ids[KIND_PROCESSES][r->n[KIND_PROCESSES]++] = proc_hash(b, i, APM_METRIC_NONE);
    for (uint32_t i = 0; i < b->nseries; i++)
        r->ids[KIND_SERIES][r->n[KIND_SERIES]++] =
            proc_hash(b, b->series[i].proc, b->series[i].metric);
    for (uint32_t i = 0; i < b->ndiffs; i++)
        for (uint32_t k = 0; k < b->diffs[i].nsites; k++)
            r->ids[KIND_SITES][r->n[KIND_SITES]++] =
                site_hash(b, b->diffs[i].proc, &b->diffs[i].sites[k]);
    for (int k = 0; k < KINDS; k++)
        sort_unique(r->ids[k], &r->n[k]);
    return 0;
}

/* ---- liveness ---- */

struct expired {
    uint64_t *keys;
    size_t n, cap;
    uint64_t before_ms;
    int oom;
};

static void find_expired(void *ctx, const void *key, size_t klen, uint64_t value)
{
    struct expired *e = ctx;
    (void)klen;
    if (value >= e->before_ms || e->oom)
        return;
    if (e->n == e->cap) {
        size_t ncap = e->cap ? e->cap * 2 : 256;
        uint64_t *nk = realloc(e->keys, ncap * sizeof(*nk));
        if (nk == NULL) {
            e->oom = 1;
            return;
        }
        e->keys = nk;
        e->cap = ncap;
    }
    memcpy(&e->keys[e->n++], key, sizeof(uint64_t));
}

/* Forgets what agent a has not reported since now_ms - grace. */
static void agent_sweep(struct apm_agent_limits *l, struct agent *a, uint64_t now_ms)
{
    a->swept_ms = now_ms;
    if (now_ms < l->opt.grace_ms)
        return;
    for (int k = 0; k < KINDS; k++) {
        struct expired e = {.before_ms = now_ms - l->opt.grace_ms};
        apm_hashmap_foreach(&a->live[k], find_expired, &e);
        for (size_t i = 0; i < e.n; i++)
            (void)apm_hashmap_del(&a->live[k], &e.keys[i], sizeof(uint64_t));
        free(e.keys);
    }
}

static struct agent *agent_find(const struct apm_agent_limits *l, const char *agent_id)
{
    uint64_t v;
    if (apm_hashmap_get(&l->agents, agent_id, strnlen(agent_id, AGENT_ID_MAX - 1), &v) == 0)
        return (struct agent *)(uintptr_t)v;
    return NULL;
}

static struct agent *agent_get(struct apm_agent_limits *l, const char *agent_id)
{
    struct agent *a = agent_find(l, agent_id);
    if (a != NULL)
        return a;
    size_t len = strnlen(agent_id, AGENT_ID_MAX - 1);
    a = calloc(1, sizeof(*a));
    if (a == NULL)
        return NULL;
    memcpy(a->id, agent_id, len);
    for (int k = 0; k < KINDS; k++)
        apm_hashmap_init(&a->live[k]);
    if (apm_hashmap_put(&l->agents, a->id, len, (uint64_t)(uintptr_t)a) != 0) {
        agent_free(a);
        return NULL;
    }
    return a;
}

/* How many of the reported identities the agent does not have live. */
static size_t count_new(const struct agent *a, int k, const struct reported *r)
{
    size_t n = 0;
    uint64_t v;
    for (size_t i = 0; i < r->n[k]; i++)
        if (apm_hashmap_get(&a->live[k], &r->ids[k][i], sizeof(uint64_t), &v) != 0)
            n++;
    return n;
}

/* Returns the first kind the batch would take over its limit, or KINDS. */
static int over_limit(const struct apm_agent_limits *l, const struct agent *a,
                      const struct reported *r, size_t *total)
{
    for (int k = 0; k < KINDS; k++) {
        *total = a->live[k].len + count_new(a, k, r);
        if (*total > l->max[k])
            return k;
    }
    return KINDS;
}

int apm_agent_limits_admit(struct apm_agent_limits *l, const char *agent_id,
                           const struct apm_batch *b, uint64_t now_ms, enum apm_agent_limit *which,
                           char *why, size_t whylen)
{
    *which = APM_AGENT_LIMIT_NONE;
    if (whylen > 0)
        why[0] = '\0';
    struct reported r;
    int rc = reported_collect(b, &r);
    if (rc != 0)
        return rc;
    struct agent *a = agent_get(l, agent_id);
    if (a == NULL) {
        reported_free(&r);
        return -ENOMEM;
    }
    size_t total = 0;
    int k = over_limit(l, a, &r, &total);
    if (k < KINDS && now_ms != a->swept_ms) {
        /* What is over may be only what expired since the last sweep. */
        agent_sweep(l, a, now_ms);
        k = over_limit(l, a, &r, &total);
    }
    if (k < KINDS) {
        static const enum apm_agent_limit code[KINDS] = {
            APM_AGENT_LIMIT_PROCESSES, APM_AGENT_LIMIT_SERIES, APM_AGENT_LIMIT_SITES};
        *which = code[k];
        snprintf(why, whylen,
                 "batch %llu would make %zu live %s for agent '%s', over max-%s-per-agent (%llu)",
                 (unsigned long long)b->seq, total, kind_names[k], a->id, kind_names[k],
                 (unsigned long long)l->max[k]);
        reported_free(&r);
        return APM_E_LIMIT;
    }
    for (k = 0; k < KINDS && rc == 0; k++)
        for (size_t i = 0; i < r.n[k] && rc == 0; i++)
            rc = apm_hashmap_put(&a->live[k], &r.ids[k][i], sizeof(uint64_t), now_ms);
    reported_free(&r);
    return rc;
}

struct sweep_ctx {
    struct apm_agent_limits *l;
    uint64_t now_ms;
    struct agent **empty;
    size_t nempty, cap;
};

static void sweep_one(void *ctx, const void *key, size_t klen, uint64_t value)
{
    struct sweep_ctx *s = ctx;
    (void)key;
    (void)klen;
    struct agent *a = (struct agent *)(uintptr_t)value;
    agent_sweep(s->l, a, s->now_ms);
    if (a->live[KIND_PROCESSES].len + a->live[KIND_SERIES].len + a->live[KIND_SITES].len > 0)
        return;
    if (s->nempty == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 16;
        struct agent **ne = realloc(s->empty, ncap * sizeof(*ne));
        if (ne == NULL)
            return; /* forgotten at a later sweep */
        s->empty = ne;
        s->cap = ncap;
    }
    s->empty[s->nempty++] = a;
}

void apm_agent_limits_sweep(struct apm_agent_limits *l, uint64_t now_ms)
{
    if (now_ms - l->swept_ms < l->opt.grace_ms / 4)
        return;
    l->swept_ms = now_ms;
    struct sweep_ctx s = {.l = l, .now_ms = now_ms};
    apm_hashmap_foreach(&l->agents, sweep_one, &s);
    for (size_t i = 0; i < s.nempty; i++) {
        (void)apm_hashmap_del(&l->agents, s.empty[i]->id, strlen(s.empty[i]->id));
        agent_free(s.empty[i]);
    }
    free(s.empty);
}

void apm_agent_limits_live(const struct apm_agent_limits *l, const char *agent_id,
                           struct apm_agent_live *out)
{
    memset(out, 0, sizeof(*out));
    const struct agent *a = agent_find(l, agent_id);
    if (a == NULL)
        return;
    out->processes = a->live[KIND_PROCESSES].len;
    out->series = a->live[KIND_SERIES].len;
    out->sites = a->live[KIND_SITES].len;
}

size_t apm_agent_limits_agents(const struct apm_agent_limits *l)
{
    return l->agents.len;
}
