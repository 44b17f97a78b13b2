#ifndef APM_AGENT_HEALTH_H
#define APM_AGENT_HEALTH_H

/*
 * The latest health counters each agent reported (proto Health, sent in a
 * batch every few seconds), kept in memory for GET /metrics. One entry per
 * agent id: a newer report replaces it, an older one (a batch replayed from
 * the agent's spool) is ignored, and an agent silent for the grace (the
 * collector's process-grace) is dropped at the next walk. Nothing of it is
 * stored: a restarted collector shows each agent again at its next report.
 *
 * Thread: the loop thread (ingest puts, /metrics walks).
 */
#include <stdint.h>

#include "common/analysis/model.h"

struct apm_agent_health;

/* Returns 0 and *out owned (free with apm_agent_health_free), or -ENOMEM. */
int apm_agent_health_new(int64_t grace_ms, struct apm_agent_health **out);

/* Frees the table. Accepts NULL. */
void apm_agent_health_free(struct apm_agent_health *t);

/*
 * Keeps h (borrowed, copied) as agent's latest report unless the one kept
 * is newer (by h->t_ms); now_ms (the wall clock) marks the agent seen.
 * Returns 0 or -ENOMEM (the table is unchanged).
 */
int apm_agent_health_put(struct apm_agent_health *t, const struct apm_agent_ident *agent,
                         const struct apm_health *h, int64_t now_ms);

/* Called for each agent seen within the grace; strings and h valid during the call only. */
typedef void (*apm_agent_health_fn)(void *ctx, const char *agent_id, const char *host,
                                    const struct apm_health *h);

/* Drops the agents silent for longer than the grace, then calls fn for each other one. */
void apm_agent_health_walk(struct apm_agent_health *t, int64_t now_ms, apm_agent_health_fn fn,
                           void *ctx);

/* How many agents the table holds now. */
size_t apm_agent_health_count(const struct apm_agent_health *t);

#endif
