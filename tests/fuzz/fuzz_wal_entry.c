/*
 * Fuzz target for the write-ahead log's entry decoder (server/store/store_log.c):
 * arbitrary bytes as a stored log entry. A damaged entry must give
 * APM_E_DECODE, never a read outside the buffer or a hang.
 */
#include <stddef.h>
#include <stdint.h>

#include "server/store/store_log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct counts {
    uint64_t groups, samples;
    int64_t t_max;
};

static int on_group(void *ctx, uint64_t id)
{
    (void)id;
    ((struct counts *)ctx)->groups++;
    return 0;
}

static int on_sample(void *ctx, int64_t t, int64_t v)
{
    (void)v;
    struct counts *c = ctx;
    c->samples++;
    if (t > c->t_max)
        c->t_max = t;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct counts c = {0, 0, INT64_MIN};
    const struct store_log_visitor v = {on_group, on_sample, &c};
    (void)apm_store_log_decode(data, size, &v);
    const struct store_log_visitor bare = {NULL, on_sample, &c};
    (void)apm_store_log_decode(data, size, &bare);
    return 0;
}
