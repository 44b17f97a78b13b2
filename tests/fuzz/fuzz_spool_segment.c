/*
 * Fuzz target for the agent's spool segment reader: arbitrary bytes as a
 * segment file (magic, records with a CRC each), and every record whose CRC
 * holds decoded as the batch it should hold, as the agent does at replay.
 */
#include <stddef.h>
#include <stdint.h>

#include "agent/spool.h"
#include "common/analysis/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_record(void *ctx, uint64_t seq, uint32_t nsamples, const uint8_t *p, size_t len)
{
    size_t *n = ctx;
    struct apm_batch *b = NULL;
    (void)seq;
    (void)nsamples;
    if (apm_spool_decode_batch(p, len, &b) == 0)
        apm_batch_free(b);
    (*n)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t n = 0;
    bool bad = false;
    size_t valid = apm_spool_parse_segment(data, size, on_record, &n, &bad);
    if (valid > size || (!bad && valid != size && size > 0))
        __builtin_trap();
    return 0;
}
