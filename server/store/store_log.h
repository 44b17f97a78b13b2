#ifndef APM_STORE_LOG_H
#define APM_STORE_LOG_H

/*
 * The write-ahead log's entry format (store_log.c, docs/store.md "Write-ahead
 * log"): decoding, for the store and for the fuzz target.
 */
#include <stddef.h>
#include <stdint.h>

/* Called for each group (group may be NULL), then for each of its samples; < 0 stops. */
struct store_log_visitor {
    int (*group)(void *ctx, uint64_t id);
    int (*sample)(void *ctx, int64_t t, int64_t v);
    void *ctx;
};

/*
 * Walks one log entry. Returns 0, a callback's negative return, or
 * APM_E_DECODE for a damaged entry (never reads outside buf).
 */
int apm_store_log_decode(const void *buf, size_t len, const struct store_log_visitor *v);

#endif
