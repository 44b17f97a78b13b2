#ifndef APM_COUNTERS_H
#define APM_COUNTERS_H

/*
 * Counters, described once. A module that keeps statistics describes them
 * in a table next to its stats struct (name, kind, unit, help, where the
 * value sits in the struct) and registers the table with a function that
 * copies the struct. Every reader walks the registry: GET /api/v1/status
 * today, a Prometheus /metrics tomorrow; nobody lists counters by hand.
 *
 * Names: a module is a status object ("ingest") and the middle of a metric
 * name; a counter is a member of that object ("connections_accepted") and
 * the end of the name. Both are lowercase [a-z0-9_], so that
 * apm_<module>_<name>[_<unit>][_total] is a valid Prometheus name.
 *
 * The registry is a plain value owned by whoever builds it (the collector);
 * it is not thread-safe: add and remove groups on one thread, and walk them
 * there. The read functions say which thread they may run on.
 */
#include <stddef.h>
#include <stdint.h>

enum apm_counter_kind {
    APM_COUNTER_TOTAL, /* only grows while the program runs (a Prometheus counter) */
    APM_COUNTER_GAUGE, /* a level now: goes up and down */
    /*
     * A latency histogram: the offset is that of a struct apm_histogram in
     * the stats struct, and the unit is "seconds". /metrics writes it as a
     * Prometheus histogram (_bucket, _sum, _count); apm_counter_value gives
     * its count.
     */
    APM_COUNTER_HISTOGRAM,
};

/*
 * Upper bounds of the histogram buckets, in microseconds (1 ms to 10 s, the
 * span of an LMDB commit or an analysis round). Fixed for every histogram,
 * so a reader needs no description of its own.
 */
#define APM_HISTOGRAM_BUCKETS 13u
extern const uint64_t apm_histogram_bounds_us[APM_HISTOGRAM_BUCKETS];

/*
 * Observations counted by bucket: bucket[i] counts those at most
 * apm_histogram_bounds_us[i] and above the previous bound (not cumulative;
 * those above the last bound only in count). Made of uint64_t like every
 * stats struct, so that a group copies it with the rest.
 */
struct apm_histogram {
    uint64_t bucket[APM_HISTOGRAM_BUCKETS];
    uint64_t count;
    uint64_t sum_us; /* the sum of the observations, microseconds */
};

/* Counts one observation of us microseconds in h. The owner's thread (or lock). */
void apm_histogram_observe(struct apm_histogram *h, uint64_t us);

struct apm_counter {
    const char *name; /* NULL ends a table */
    enum apm_counter_kind kind;
    const char *unit; /* Prometheus base unit ("bytes", "seconds"), or "" for a count */
    const char *help; /* one sentence for /metrics' HELP line */
    size_t offset;    /* of its uint64_t in the module's stats struct */
};

/* One entry of a table: the counter `name` at member `field` of the stats struct `type`. */
#define APM_COUNTER(type, field, name, kind, unit, help)                                           \
    {                                                                                              \
        name, kind, unit, help, offsetof(type, field)                                              \
    }

/*
 * Copies the module's stats struct into out (the group's size bytes), for a
 * module whose counters change on other threads (under its lock). Returns 0,
 * or a negative code when the stats cannot be read now.
 */
typedef int (*apm_counters_read_fn)(void *obj, void *out);

#define APM_COUNTERS_MAX_GROUPS 16u
/* The largest stats struct a group may have. */
#define APM_COUNTERS_STATS_MAX 1024u

/* A module's counters: where their values are, the pointer or the getter. */
struct apm_counter_group {
    const char *module;                 /* borrowed (a literal) */
    const struct apm_counter *counters; /* borrowed, terminated by {.name = NULL} */
    size_t size;                        /* of the stats struct */
    const void *stats;         /* the struct itself, when only the walker's thread writes it */
    apm_counters_read_fn read; /* or the getter (then stats is NULL) */
    void *obj;                 /* handed to read; borrowed */
};

struct apm_counters {
    struct apm_counter_group group[APM_COUNTERS_MAX_GROUPS];
    size_t n;
};

/* Empties r. */
void apm_counters_init(struct apm_counters *r);

/*
 * Adds a group (copied; its strings, table and obj borrowed: they must
 * outlive its registration). Returns 0, -EINVAL for a size above
 * APM_COUNTERS_STATS_MAX, or APM_E_LIMIT past APM_COUNTERS_MAX_GROUPS.
 */
int apm_counters_add(struct apm_counters *r, const struct apm_counter_group *g);

/* Removes the groups of module (the module is closing). Accepts an unknown name. */
void apm_counters_remove(struct apm_counters *r, const char *module);

/*
 * Called for each group in the order added: rc is 0 with the copied stats,
 * or the read's error (stats is then NULL).
 */
typedef void (*apm_counters_visit_fn)(void *ctx, const struct apm_counter_group *g, int rc,
                                      const void *stats);

/* Reads every group and calls fn for each. */
void apm_counters_walk(const struct apm_counters *r, apm_counters_visit_fn fn, void *ctx);

/* The value of c in a copied stats struct (a histogram's count). */
uint64_t apm_counter_value(const struct apm_counter *c, const void *stats);

/* The histogram c (APM_COUNTER_HISTOGRAM) in a copied stats struct, copied into out. */
void apm_counter_histogram(const struct apm_counter *c, const void *stats,
                           struct apm_histogram *out);

#endif
