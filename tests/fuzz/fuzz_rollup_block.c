/*
 * Fuzz target for the store's rollup block decoder (docs/store.md, "Rollup
 * blocks"): the first byte picks the block's bucket count (1 to 60), the rest
 * is a stored block. A damaged block must give APM_E_DECODE, never a read
 * outside the buffer; one that decodes encodes back to the same buckets.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/store/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int n = 1 + data[0] % APM_ROLLUP_BLOCK_MAX;
    struct apm_rollup b[APM_ROLLUP_BLOCK_MAX], again[APM_ROLLUP_BLOCK_MAX];
    if (apm_rollup_block_decode(data + 1, size - 1, n, b) != 0)
        return 0;
    uint8_t buf[APM_ROLLUP_BLOCK_MAX * APM_ROLLUP_BLOCK_BYTES + 10];
    size_t len = apm_rollup_block_encode(b, n, buf);
    if (apm_rollup_block_decode(buf, len, n, again) != 0 ||
        memcmp(b, again, sizeof(b[0]) * (size_t)n) != 0)
        abort();
    return 0;
}
