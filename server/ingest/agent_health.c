#include "server/ingest/agent_health.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/hashmap.h"

struct entry {
    char agent_id[sizeof(((struct apm_agent_ident *)0)->agent_id)];
    char host[sizeof(((struct apm_agent_ident *)0)->host)];
    int64_t seen_ms;
    struct apm_health h;
};

struct apm_agent_health {
    int64_t grace_ms;
    struct apm_hashmap by_agent; /* agent id -> struct entry * */
};

int apm_agent_health_new(int64_t grace_ms, struct apm_agent_health **out)
{
    struct apm_agent_health *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    t->grace_ms = grace_ms;
    apm_hashmap_init(&t->by_agent);
    *out = t;
    return 0;
}

static void free_entry(void *ctx, const void *key, size_t klen, uint64_t value)
{
    (void)ctx;
    (void)key;
    (void)klen;
    free((struct entry *)(uintptr_t)value);
}

void apm_agent_health_free(struct apm_agent_health *t)
{
    if (t == NULL)
        return;
    apm_hashmap_foreach(&t->by_agent, free_entry, NULL);
    apm_hashmap_close(&t->by_agent);
    free(t);
}

int apm_agent_health_put(struct apm_agent_health *t, const struct apm_agent_ident *agent,
                         const struct apm_health *h, int64_t now_ms)
{
    size_t klen = strlen(agent->agent_id);
    uint64_t v = 0;
    struct entry *e = NULL;
    if (apm_hashmap_get(&t->by_agent, agent->agent_id, klen, &v) == 0) {
        e = (struct entry *)(uintptr_t)v;
    } else {
        e = calloc(1, sizeof(*e));
        if (e == NULL)
            return -ENOMEM;
        if (apm_hashmap_put(&t->by_agent, agent->agent_id, klen, (uintptr_t)e) != 0) {
            free(e);
            return -ENOMEM;
        }
        memcpy(e->agent_id, agent->agent_id, klen + 1);
        e->h.t_ms = INT64_MIN;
    }
    e->seen_ms = now_ms;
    snprintf(e->host, sizeof(e->host), "%s", agent->host);
    if (h->t_ms >= e->h.t_ms)
        e->h = *h;
    return 0;
}

struct walk {
    struct apm_agent_health *t;
    int64_t now_ms;
    struct entry **stale;
    size_t nstale;
    apm_agent_health_fn fn;
    void *ctx;
};

static void visit(void *ctx, const void *key, size_t klen, uint64_t value)
{
    (void)key;
    (void)klen;
    struct walk *w = ctx;
    struct entry *e = (struct entry *)(uintptr_t)value;
    if (w->now_ms - e->seen_ms > w->t->grace_ms) {
        if (w->stale != NULL)
            w->stale[w->nstale++] = e;
        return;
    }
    if (w->fn != NULL)
        w->fn(w->ctx, e->agent_id, e->host, &e->h);
}

void apm_agent_health_walk(struct apm_agent_health *t, int64_t now_ms, apm_agent_health_fn fn,
                           void *ctx)
{
    /* The stale ones are removed after the walk: the map may not change during foreach. */
    struct walk w = {.t = t, .now_ms = now_ms, .fn = fn, .ctx = ctx};
    w.stale = t->by_agent.len > 0 ? calloc(t->by_agent.len, sizeof(*w.stale)) : NULL;
    apm_hashmap_foreach(&t->by_agent, visit, &w);
    for (size_t i = 0; i < w.nstale; i++) {
        apm_hashmap_del(&t->by_agent, w.stale[i]->agent_id, strlen(w.stale[i]->agent_id));
        free(w.stale[i]);
    }
    free(w.stale);
}

size_t apm_agent_health_count(const struct apm_agent_health *t)
{
    return t->by_agent.len;
}
