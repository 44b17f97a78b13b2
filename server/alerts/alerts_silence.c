/*
 * The silences the alert engine holds (server/alerts/silence.h for the
 * matching; docs/alerts.md, "Silences"): adding, expiring and listing them
 * under the engine's mutex, marking the alerts they match, and writing them
 * to the store's "silences" database in the engine's rounds.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/base/error.h"
#include "server/alerts/alerts_priv.h"
#include "server/store/store_alerts.h"

void apm_alerts_apply_silences(struct apm_alerts *e, int64_t now_ms)
{
    if (now_ms >= e->silence_edge_ms) {
        e->silence_gen++;
        e->silence_edge_ms = apm_silences_next_edge(e->silences, now_ms);
    }
    uint64_t silenced = 0;
    for (size_t i = 0; i < e->n; i++) {
        struct alert_entry *en = e->items[i];
        if (en->silence_gen != e->silence_gen) {
            en->a.silenced_by = apm_silences_match(e->silences, &en->a, now_ms);
            en->silence_gen = e->silence_gen;
        }
        silenced += en->a.silenced_by != 0 && en->a.state != APM_ALERT_RESOLVED;
    }
    e->stats.silenced = silenced;
    uint64_t c[3];
    apm_silences_count(e->silences, now_ms, c);
    e->stats.silences_pending = c[APM_SILENCE_PENDING];
    e->stats.silences_active = c[APM_SILENCE_ACTIVE];
    e->stats.silences_expired = c[APM_SILENCE_EXPIRED];
}

/*
 * One transaction of its own (silences change seldom; alerts every round).
 * On an error the changes stay to retry; a failed deletion is pruned again
 * at the next start.
 */
int apm_alerts_persist_silences(struct apm_alerts *e, int64_t now_ms)
{
    struct apm_silence_rec *recs = NULL;
    uint64_t *del = NULL;
    size_t n = 0, ndel = 0;
    pthread_mutex_lock(&e->mu);
    int rc = apm_silences_prune(e->silences, now_ms, &del, &ndel);
    if (rc == 0)
        rc = apm_silences_changed(e->silences, &recs, &n);
    uint64_t next_id = e->silence_next_id;
    pthread_mutex_unlock(&e->mu);
    struct apm_store_alert_rec *srecs = n > 0 ? calloc(n, sizeof(*srecs)) : NULL;
    if (rc == 0 && n > 0 && srecs == NULL)
        rc = -ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++)
        srecs[i] = (struct apm_store_alert_rec){recs[i].id, recs[i].buf, recs[i].len};
    if (rc == 0 && e->opt.store != NULL && (n > 0 || ndel > 0))
        rc = apm_store_silences_put(e->opt.store, srecs, n, del, ndel, next_id);
    pthread_mutex_lock(&e->mu);
    if (ndel > 0)
        e->silence_edge_ms = INT64_MIN;
    if (rc == 0)
        apm_silences_persisted(e->silences, recs, n);
    else
        e->stats.persist_errors++;
    pthread_mutex_unlock(&e->mu);
    free(srecs);
    free(del);
    apm_silences_recs_free(recs, n);
    return rc;
}

int apm_alerts_silence_add(struct apm_alerts *e, struct apm_silence *s, int64_t now_ms, char *err,
                           size_t errlen)
{
    int rc = apm_silence_validate(s, now_ms, err, errlen);
    if (rc != 0)
        return rc;
    s->id = 0;
    s->created_ms = s->updated_ms = now_ms;
    pthread_mutex_lock(&e->mu);
    rc = apm_silences_add(e->silences, s, &e->silence_next_id);
    if (rc == APM_E_LIMIT) {
        e->stats.silences_refused++;
        snprintf(err, errlen, "%zu silences are held (silences-max); expire some or wait",
                 e->opt.silences_max);
    } else if (rc != 0) {
        snprintf(err, errlen, "%s", apm_strerror(rc));
    } else {
        e->silence_edge_ms = INT64_MIN;
        apm_alerts_apply_silences(e, now_ms);
        pthread_cond_signal(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
    return rc;
}

int apm_alerts_silence_expire(struct apm_alerts *e, uint64_t id, int64_t now_ms)
{
    pthread_mutex_lock(&e->mu);
    int rc = apm_silences_expire(e->silences, id, now_ms);
    if (rc == 0) {
        e->silence_edge_ms = INT64_MIN;
        apm_alerts_apply_silences(e, now_ms);
        pthread_cond_signal(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
    return rc;
}

int apm_alerts_silence_get(struct apm_alerts *e, uint64_t id, struct apm_silence *out)
{
    pthread_mutex_lock(&e->mu);
    int rc = apm_silences_get(e->silences, id, out);
    pthread_mutex_unlock(&e->mu);
    return rc;
}

size_t apm_alerts_silence_list(struct apm_alerts *e, struct apm_silence *out, size_t max)
{
    pthread_mutex_lock(&e->mu);
    size_t n = apm_silences_list(e->silences, out, max);
    pthread_mutex_unlock(&e->mu);
    return n;
}
