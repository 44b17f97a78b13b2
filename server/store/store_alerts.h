#ifndef APM_STORE_ALERTS_H
#define APM_STORE_ALERTS_H

/*
 * Alert records in the store's "alerts" database: alert id (big-endian u64)
 * -> the alert's record (JSON text written by server/alerts/alerts_round.c), and key 0 ->
 * the next alert id. server/alerts/alerts_round.c writes them in its own transactions, one
 * per round however many alerts changed.
 *
 * Threads: any thread. Writes take LMDB's single writer lock and wait while
 * the group-commit writer holds it: never call them on the loop thread.
 */
#include <stddef.h>
#include <stdint.h>

#include "server/store/store.h"

struct apm_store_alert_rec {
    uint64_t id;      /* >= 1 */
    const void *data; /* borrowed */
    size_t len;
};

/*
 * In one transaction: writes recs[0..n), deletes the ids del[0..ndel) and
 * stores next_id. Returns 0 or a negative code (nothing written).
 */
int apm_store_alerts_put(struct apm_store *s, const struct apm_store_alert_rec *recs, size_t n,
                         const uint64_t *del, size_t ndel, uint64_t next_id);

/* Calls cb for each record in id order (data valid during the call); nonzero stops. */
typedef int (*apm_store_alert_cb)(void *ctx, uint64_t id, const void *data, size_t len);

/* Reads every record and the stored next id (1 when none). Returns 0 or a code. */
int apm_store_alerts_load(struct apm_store *s, apm_store_alert_cb cb, void *ctx, uint64_t *next_id);

/*
 * The same for the "silences" database (silence id -> record written by
 * server/alerts/silence.c, key 0 -> the next silence id), written by the
 * alert engine's thread in its rounds.
 */
int apm_store_silences_put(struct apm_store *s, const struct apm_store_alert_rec *recs, size_t n,
                           const uint64_t *del, size_t ndel, uint64_t next_id);
int apm_store_silences_load(struct apm_store *s, apm_store_alert_cb cb, void *ctx,
                            uint64_t *next_id);

#endif
