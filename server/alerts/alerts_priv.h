#ifndef APM_ALERTS_PRIV_H
#define APM_ALERTS_PRIV_H

/*
 * The alert engine's state, shared by its files: alerts.c (start, thread,
 * rules, acks, listings), alerts_observe.c (observations through the
 * lifecycle), alerts_round.c (ageing, persistence, notifications) and
 * alerts_silence.c (the silences it holds). Nothing outside
 * server/alerts/alerts*.c includes this.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/hashmap.h"
#include "common/base/log.h"
#include "server/alerts/alerts.h"
#include "server/alerts/silence.h"

struct alert_entry {
    struct apm_alert a;
    uint64_t version;     /* bumped on every change */
    uint64_t persisted;   /* the version last written */
    bool inflight;        /* a notification is with delivery */
    bool gone;            /* deleted (a pending alert that never fired); freed after persisting */
    int64_t refreshed_ms; /* last refresh sent to Alertmanager */
    uint64_t silence_gen; /* silenced_by is right for this generation of the silences */
};

struct apm_alerts {
    struct apm_alerts_options opt;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool started, stop;
    bool closing; /* the last round persists but notifies nothing */
    struct apm_alert_rule *rules;
    size_t nrules;
    bool any_bloat;
    struct alert_entry **items; /* every alert held, in id order */
    size_t n, cap;
    struct apm_hashmap active; /* rule \0 series id -> struct alert_entry * (pending or firing) */
    struct apm_hashmap tracks; /* series id -> struct apm_alert_track * */
    uint64_t next_id;
    uint64_t *deleted; /* ids to delete from the store next round */
    size_t ndeleted, capdeleted;
    struct apm_alerts_stats stats;
    struct apm_log_limit persist_log; /* a failing disk fails every round: rate-limited */
    struct apm_silences *silences;
    uint64_t silence_next_id;
    /*
     * What the silences match changes only when one is added, expired or
     * removed, a rule's labels change, or a start or end passes: then the
     * generation moves on and each alert is matched again, once. Set
     * silence_edge_ms to INT64_MIN to ask for that.
     */
    uint64_t silence_gen;
    int64_t silence_edge_ms; /* the next start or end of a silence */
};

/*
 * Writes the key of the active alert of (rule, series) into key (at least
 * APM_ALERT_NAME_MAX + 9 bytes). Returns its length.
 */
size_t apm_alerts_active_key(const char *rule, uint64_t series, char *key);

/* Appends en to the alerts held. Returns 0 or -ENOMEM. Under the mutex. */
int apm_alerts_items_push(struct apm_alerts *e, struct alert_entry *en);

/*
 * Copies src (NULL taken as "") into dst (size bytes), cleaned of control
 * characters (common/base/text.h) and cut at a character boundary.
 */
void apm_alerts_copy_str(char *dst, size_t size, const char *src);

/* Notes a change of en (its version) and writes its summary again. Under the mutex. */
void apm_alerts_touch(struct alert_entry *en);

/* Ends an episode: a firing alert resolves; a pending one is forgotten. Under the mutex. */
void apm_alerts_close_alert(struct apm_alerts *e, struct alert_entry *en, int64_t now_ms);

/* Marks every held alert with the active silence that matches it at now_ms. Under the mutex. */
void apm_alerts_apply_silences(struct apm_alerts *e, int64_t now_ms);

/*
 * Writes the silences changed since the last round and deletes those past
 * keeping. Takes the mutex itself. Returns 0 or the store's error.
 */
int apm_alerts_persist_silences(struct apm_alerts *e, int64_t now_ms);

#endif
