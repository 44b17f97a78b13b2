#ifndef APM_STORE_VERDICT_H
#define APM_STORE_VERDICT_H

/*
 * The latest analysis verdict of each analysed series, kept in the store's
 * "verdicts" database (series id -> one compact record), so that the API
 * answers forecasts without replaying samples and a restarted collector
 * still shows what it last concluded. server/analysis/analyzer.c writes them in its
 * own small transactions (a handful per minute, many records each); the API
 * reads them.
 *
 * Threads: every function may run on any thread. Writes take LMDB's single
 * writer lock, so they wait while the group-commit writer holds it: never
 * call them on the loop thread.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/analysis/analysis.h"
#include "common/analysis/model.h"
#include "server/store/store.h"

/* Where a forecast's limit came from. */
enum apm_limit_source {
    APM_LIMIT_NONE = 0,
    APM_LIMIT_CGROUP,     /* the process's memory cgroup limit */
    APM_LIMIT_CONFIGURED, /* [collector] memory-limit */
    APM_LIMIT_HOST,       /* the host's MemTotal */
};

/* Returns "cgroup", "configured", "host" or NULL for APM_LIMIT_NONE. */
const char *apm_limit_source_name(enum apm_limit_source s);

#define APM_VERDICT_HOST_MAX 256u
#define APM_VERDICT_PROCESS_MAX 320u
#define APM_VERDICT_NAME_MAX 256u

/*
 * One series' latest verdict, as stored and served. What the analyzer tells
 * the alert rules besides is its own message (server/analysis/analyzer.h).
 */
struct apm_verdict_record {
    uint64_t series_id;
    enum apm_metric metric;
    char host[APM_VERDICT_HOST_MAX];
    char process_id[APM_VERDICT_PROCESS_MAX]; /* "host:pid:start_ms" */
    char name[APM_VERDICT_NAME_MAX];
    int32_t pid;
    int64_t start_ms;
    double value; /* the last sample, bytes */
    enum apm_limit_source limit_source;
    struct apm_verdict v; /* times in Unix seconds */
    double evaluated_at;  /* Unix seconds of the last sample judged */
    /* The process replaced one of the same name and cgroup that had reached its limit. */
    bool restarted_at_limit;
};

/*
 * Writes n records (borrowed) in one write transaction and commits. Returns
 * 0 or a negative code (nothing written).
 */
int apm_store_verdict_put(struct apm_store *s, const struct apm_verdict_record *const *recs,
                          size_t n);

/* Reads one series' record into *out. Returns 0, APM_E_NOTFOUND or a code. */
int apm_store_verdict_get(struct apm_store *s, uint64_t series_id, struct apm_verdict_record *out);

/* Calls cb for each record in series id order; rec is valid during the call. Nonzero stops. */
typedef int (*apm_store_verdict_cb)(void *ctx, const struct apm_verdict_record *rec);
int apm_store_verdict_list(struct apm_store *s, apm_store_verdict_cb cb, void *ctx);

#endif
