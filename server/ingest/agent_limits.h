#ifndef APM_AGENT_LIMITS_H
#define APM_AGENT_LIMITS_H

/*
 * Cardinality limits per agent: how many processes, series and allocation
 * sites one agent id may keep live at once. Without them one token holder
 * can define processes until the collector's memory runs out (a quarter of a
 * million in 25 s was enough for 1.9 GB).
 *
 * "Live" is PRODUCT.md's one definition: a process (a series, a site) is live
 * until its agent has not reported it for process-grace. Each agent's live
 * sets are kept as 64-bit hashes of their identities with the time they were
 * last reported, so this module's own memory is bounded by the limits it
 * enforces (about 100 bytes per live item; docs/benchmarks.md).
 *
 * A batch that would take its agent over a limit is refused whole, before it
 * reaches the writer: nothing of it is stored or counted as live, and the
 * caller answers Error{LIMIT} naming the limit (docs/protocol.md).
 *
 * Thread: not thread-safe; the ingest calls it on the loop thread.
 */
#include <stddef.h>
#include <stdint.h>

#include "common/analysis/model.h"

enum apm_agent_limit {
    APM_AGENT_LIMIT_NONE = 0,
    APM_AGENT_LIMIT_PROCESSES,
    APM_AGENT_LIMIT_SERIES,
    APM_AGENT_LIMIT_SITES,
};

struct apm_agent_limits_options {
    uint64_t grace_ms;      /* live until unreported this long; 0 = 2 min */
    uint64_t max_processes; /* per agent; 0 = 10000 */
    uint64_t max_series;    /* 0 = 100000 */
    uint64_t max_sites;     /* 0 = 100000 */
};

struct apm_agent_limits;

/* Returns 0 and *out owned (free with apm_agent_limits_free), or -ENOMEM. opt is copied. */
int apm_agent_limits_new(const struct apm_agent_limits_options *opt, struct apm_agent_limits **out);

/* Accepts NULL. */
void apm_agent_limits_free(struct apm_agent_limits *l);

/*
 * Admits batch b (borrowed) of agent_id at now_ms (a monotonic clock in ms).
 * Returns 0 when the agent stays within every limit (what b reports is then
 * live for the agent, as of now_ms); APM_E_LIMIT when it would not, with
 * *which set and why holding a sentence that names the limit and its value
 * (nothing is recorded); or -ENOMEM (nothing is recorded either).
 */
int apm_agent_limits_admit(struct apm_agent_limits *l, const char *agent_id,
                           const struct apm_batch *b, uint64_t now_ms, enum apm_agent_limit *which,
                           char *why, size_t whylen);

/*
 * Forgets what has not been reported for grace_ms, and agents with nothing
 * live left. Cheap to call often: it does the work at most every grace_ms / 4.
 */
void apm_agent_limits_sweep(struct apm_agent_limits *l, uint64_t now_ms);

/* What one agent has live now (0s for an unknown agent), for tests and status. */
struct apm_agent_live {
    uint64_t processes;
    uint64_t series;
    uint64_t sites;
};
void apm_agent_limits_live(const struct apm_agent_limits *l, const char *agent_id,
                           struct apm_agent_live *out);

/* Agents with something live (or not yet swept). */
size_t apm_agent_limits_agents(const struct apm_agent_limits *l);

#endif
