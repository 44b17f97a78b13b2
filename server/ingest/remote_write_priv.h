#ifndef APM_REMOTE_WRITE_PRIV_H
#define APM_REMOTE_WRITE_PRIV_H

/*
 * Inside remote-write (remote_write.h): the sender's state, shared by
 * remote_write.c (queue, requests, reading the store, verdict rounds) and
 * remote_write_http.c (posting with retries). Not for other modules.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/hashmap.h"
#include "server/ingest/remote_write.h"

/* One exported block of a committed batch. */
struct qentry {
    struct qentry *next;
    enum apm_metric metric;
    int32_t pid;
    char host[APM_STORE_HOST_MAX];
    char process_id[APM_STORE_PROCESS_ID_MAX];
    char name[256];
    uint32_t n;
    int64_t *t;
    int64_t *v;
};

/* What the sender knows of a series: its id and cursor (the last time sent). */
struct sstate {
    uint64_t id;
    int64_t sent;
    size_t slot; /* its index in the request being built, plus 1; 0: not in it */
};

/* A series of the request being built; owns copies of its label values. */
struct pseries {
    struct sstate *st;
    enum apm_metric metric;
    int32_t pid;
    char host[APM_STORE_HOST_MAX];
    char process_id[APM_STORE_PROCESS_ID_MAX];
    char name[256];
    int64_t *t, *v;
    size_t n, cap;
};

struct apm_rw {
    struct apm_store *store;
    struct apm_rw_options opt;
    char *url;
    struct curl_slist *headers;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    /* Guarded by mu. */
    struct qentry *head, *tail;
    bool rescan;
    bool stopping;
    struct apm_rw_stats stats;
    /* Sender thread only. */
    struct apm_hashmap series; /* series key -> struct sstate * */
    struct pseries *req;
    size_t nreq, req_cap, req_samples;
    /*
     * The cursors of the last request answered, not in the store yet: the
     * next request's pending record commits them in its transaction, or
     * settle() alone when the sender has nothing else to do.
     */
    uint64_t *settle_ids;
    int64_t *settle_ts;
    size_t settle_n;
};

/* True once apm_rw_free began. Any thread. */
bool apm_rw_stopping(struct apm_rw *rw);

/* Waits ms or until stopping. Returns true when stopping. Sender thread. */
bool apm_rw_sleep_ms(struct apm_rw *rw, uint64_t ms);

/* What a request carries, for its counters and its log lines. */
enum apm_rw_kind {
    APM_RW_STORED, /* stored samples after the cursors */
    APM_RW_GAUGES, /* verdict gauges, stamped at sending */
    APM_RW_RESEND, /* the request in flight when the last run died (the pending record) */
};

/*
 * Posts one body of n samples until the receiver takes it (2xx: *refused
 * false) or refuses it for good (4xx but 429: *refused true, logged,
 * counted, dropped), retrying the rest with backoff and jitter; kind says
 * which counters the samples go to. Returns 0 either way, or APM_E_CLOSED
 * when stopping first. Sender thread.
 */
int apm_rw_deliver(struct apm_rw *rw, const uint8_t *body, size_t len, uint64_t n,
                   enum apm_rw_kind kind, bool *refused);

#endif
