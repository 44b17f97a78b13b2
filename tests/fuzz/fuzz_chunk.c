/*
 * Fuzz target for the store's chunk decoder: arbitrary bytes as a stored
 * chunk, read by the iterator and by the encoder's reload path. A damaged
 * chunk must give APM_E_DECODE, never a read outside the buffer.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "server/store/chunk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t first_t = 0;
    if (size >= 8) {
        memcpy(&first_t, data, 8);
        data += 8;
        size -= 8;
    }
    struct apm_chunk_iter it;
    if (apm_chunk_iter_init(&it, data, size, first_t) == 0) {
        int64_t t, v;
        unsigned guard = 0;
        while (apm_chunk_iter_next(&it, &t, &v) == 1 && ++guard < 1000000)
            ;
    }
    (void)apm_chunk_count(data, size);
    struct apm_chunk_enc e;
    apm_chunk_enc_init(&e);
    if (apm_chunk_enc_load(&e, data, size, first_t) == 0)
        (void)apm_chunk_enc_append(&e, first_t + 1000, 4096);
    apm_chunk_enc_close(&e);
    return 0;
}
