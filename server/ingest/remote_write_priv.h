#ifndef APM_REMOTE_WRITE_PRIV_H
#define APM_REMOTE_WRITE_PRIV_H

/*
 * Inside remote-write (remote_write.h): the sender's state, shared by
 * remote_write.c (the commit hook's queue, the sender's loop, verdict
 * rounds, setup), remote_write_request.c (the request being built and the
 * cursors), remote_write_scan.c (reading the store after the cursors, the
 * pending request after a restart) and remote_write_http.c (posting with
 * retries). Not for other modules.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/hashmap.h"
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
     * apm_rw_settle() alone when the sender has nothing else to do.
     */
    uint64_t *settle_ids;
    int64_t *settle_ts;
    size_t settle_n;
};

/* Copies src (NULL taken as "") into dst, cut to size bytes. */
void apm_rw_copy_str(char *dst, size_t size, const char *src);

/* Frees a list of queue entries. Accepts NULL. */
void apm_rw_free_entries(struct qentry *e);

/*
 * The request being built (remote_write_request.c). Sender thread only;
 * the functions that return APM_E_CLOSED do so when stopping first.
 */

/* Empties the request (the series' slots with it). */
void apm_rw_req_reset(struct apm_rw *rw);

/* Drops the series with no sample from the request (all sent already). Returns how many remain. */
size_t apm_rw_req_compact(struct apm_rw *rw);

/*
 * Encodes the request being built (compacted, not empty) into *body
 * (returns owned: free). ids and ts (nreq each) receive each series' id and
 * the time of its last sample in the request. Returns 0 or -ENOMEM.
 */
int apm_rw_req_encode(struct apm_rw *rw, uint64_t *ids, int64_t *ts, uint8_t **body, size_t *len);

/* Asks for a pass over the store after the cursors (takes the mutex). */
void apm_rw_set_rescan(struct apm_rw *rw);

/* Forgets the cursors of the last request answered, uncommitted. */
void apm_rw_settle_drop(struct apm_rw *rw);

/* Commits the cursors of the last request answered, emptying the pending record. */
void apm_rw_settle(struct apm_rw *rw);

/*
 * Posts the request being built until the receiver takes or refuses it,
 * then moves the cursors (in the store with the next request's pending
 * record). Returns 0 or APM_E_CLOSED.
 */
int apm_rw_flush(struct apm_rw *rw);

/*
 * The series' state, loaded from the store on first use (id 0: looked up by
 * its labels); NULL when unknown or out of memory.
 */
struct sstate *apm_rw_series_state(struct apm_rw *rw, const char *host, const char *process_id,
                                   enum apm_metric m, uint64_t id);

/* The request's entry for st, added when missing; NULL when out of memory. */
struct pseries *apm_rw_req_series(struct apm_rw *rw, struct sstate *st, enum apm_metric m,
                                  const char *host, const char *process_id, const char *name,
                                  int32_t pid);

/* Appends one sample after the series' cursor (and its last one queued). Returns 0 or -ENOMEM. */
int apm_rw_req_add(struct apm_rw *rw, struct pseries *p, int64_t t, int64_t v);

/* Sends queued entries (borrowed). Returns 0 or APM_E_CLOSED. */
int apm_rw_send_entries(struct apm_rw *rw, struct qentry *e);

/* A pass over every exported series after its cursor (remote_write_scan.c). Returns 0 or
 * APM_E_CLOSED. */
int apm_rw_scan_store(struct apm_rw *rw);

/*
 * Sends the request a dead run left pending again, alone, and moves the
 * cursors past it (remote_write_scan.c). Returns 0 or APM_E_CLOSED (the
 * record stays for the next start).
 */
int apm_rw_resend_pending(struct apm_rw *rw);

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
