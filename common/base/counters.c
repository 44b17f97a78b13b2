#include "common/base/counters.h"

#include <errno.h>
#include <string.h>

#include "common/base/error.h"

void apm_counters_init(struct apm_counters *r)
{
    memset(r, 0, sizeof(*r));
}

int apm_counters_add(struct apm_counters *r, const struct apm_counter_group *g)
{
    if (g->size > APM_COUNTERS_STATS_MAX || (g->read == NULL) == (g->stats == NULL) ||
        g->counters == NULL)
        return -EINVAL;
    if (r->n >= APM_COUNTERS_MAX_GROUPS)
        return APM_E_LIMIT;
    r->group[r->n++] = *g;
    return 0;
}

void apm_counters_remove(struct apm_counters *r, const char *module)
{
    size_t k = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (strcmp(r->group[i].module, module) != 0)
            r->group[k++] = r->group[i];
    }
    r->n = k;
}

void apm_counters_walk(const struct apm_counters *r, apm_counters_visit_fn fn, void *ctx)
{
    /* Aligned for the uint64_t members every stats struct is made of. */
    uint64_t stats[APM_COUNTERS_STATS_MAX / sizeof(uint64_t)];
    for (size_t i = 0; i < r->n; i++) {
        const struct apm_counter_group *g = &r->group[i];
        int rc = 0;
        if (g->read != NULL)
            rc = g->read(g->obj, stats);
        else
            memcpy(stats, g->stats, g->size);
        fn(ctx, g, rc, rc == 0 ? stats : NULL);
    }
}

const uint64_t apm_histogram_bounds_us[APM_HISTOGRAM_BUCKETS] = {
    1000,   2500,   5000,    10000,   25000,   50000,    100000,
    250000, 500000, 1000000, 2500000, 5000000, 10000000,
};

void apm_histogram_observe(struct apm_histogram *h, uint64_t us)
{
    for (unsigned i = 0; i < APM_HISTOGRAM_BUCKETS; i++) {
        if (us <= apm_histogram_bounds_us[i]) {
            h->bucket[i]++;
            break;
        }
    }
    h->count++;
    h->sum_us += us;
}

void apm_counter_histogram(const struct apm_counter *c, const void *stats,
                           struct apm_histogram *out)
{
    memcpy(out, (const char *)stats + c->offset, sizeof(*out));
}

uint64_t apm_counter_value(const struct apm_counter *c, const void *stats)
{
    if (c->kind == APM_COUNTER_HISTOGRAM) {
        struct apm_histogram h;
        apm_counter_histogram(c, stats, &h);
        return h.count;
    }
    uint64_t v;
    memcpy(&v, (const char *)stats + c->offset, sizeof(v));
    return v;
}
