#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/store/chunk_rc.h"

enum { N = 2000, ROOM = N * APM_CHUNK_RC_MAX_SAMPLE_BYTES };

static uint64_t next_rand(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

/* Numbers of every size: zeros, small, page-sized, int64 extremes. */
static uint64_t pick(uint64_t *seed)
{
    uint64_t r = next_rand(seed);
    switch (r % 6) {
    case 0:
        return 0;
    case 1:
        return (uint64_t)((int64_t)(r >> 8) % 9 - 4);
    case 2:
        return r >> (r >> 58); /* any width */
    case 3:
        return (r >> 3) & 1 ? (uint64_t)INT64_MIN : (uint64_t)INT64_MAX;
    case 4:
        return UINT64_MAX; /* -1 */
    default:
        return r;
    }
}

/* Decodes the first n samples of buf[0..len) and compares them with dt/dv. */
static void check_prefix(const uint8_t *buf, uint32_t len, uint8_t format, uint64_t dt0,
                         const uint64_t *dt, const uint64_t *dv, uint32_t n)
{
    struct apm_chunk_rc rc;
    struct apm_chunk_model m;
    apm_chunk_rc_dec_init(&rc, buf, 0, len);
    apm_chunk_model_init(&m, dt0, format);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t t = 0, v = 0;
        apm_chunk_rc_sample(&rc, &m, (uint8_t *)(uintptr_t)buf, &t, &v);
        assert_true(t == dt[i]);
        assert_true(v == dv[i]);
        assert_true(rc.code < rc.range);
    }
    assert_true(apm_chunk_rc_dec_done(&rc));
}

/* Both range-coded formats (chunk.h: 2, and 3 with its slower settled rate). */
static void every_flush_decodes_alone(uint8_t format)
{
    uint8_t *buf = calloc(1, ROOM);
    uint64_t *dt = malloc(N * sizeof(*dt)), *dv = malloc(N * sizeof(*dv));
    uint64_t seed = 0x243f6a8885a308d3ull;
    struct apm_chunk_rc rc;
    struct apm_chunk_model m;
    apm_chunk_rc_enc_init(&rc, 0);
    apm_chunk_model_init(&m, 1000, format);
    uint32_t longest = 0;
    for (uint32_t i = 0; i < N; i++) {
        dt[i] = pick(&seed);
        dv[i] = pick(&seed);
        uint64_t t = dt[i], v = dv[i];
        apm_chunk_rc_sample(&rc, &m, buf, &t, &v);
        /* Encoding gives the numbers back unchanged. */
        assert_true(t == dt[i] && v == dv[i]);
        uint32_t len = apm_chunk_rc_flush(&rc, buf);
        longest = len > longest ? len : longest;
        /* Every 97th flush (and the last) is checked by decoding it alone. */
        if (i % 97 == 0 || i == N - 1)
            check_prefix(buf, len, format, 1000, dt, dv, i + 1);
    }
    assert_true(longest > 1000);
    free(buf);
    free(dt);
    free(dv);
}

static void test_chunk_rc_every_flush_decodes_alone(void **state)
{
    (void)state;
    every_flush_decodes_alone(2);
    every_flush_decodes_alone(3);
}

static void test_chunk_rc_predicted_numbers_cost_nothing(void **state)
{
    (void)state;
    /* Zeros only: low never moves, every byte is 0 and the flushed stream is empty. */
    uint8_t buf[256] = {0};
    struct apm_chunk_rc rc;
    struct apm_chunk_model m;
    apm_chunk_rc_enc_init(&rc, 0);
    apm_chunk_model_init(&m, 10000, 3);
    for (int i = 0; i < 500; i++) {
        uint64_t t = 10000, v = 0;
        apm_chunk_rc_sample(&rc, &m, buf, &t, &v);
    }
    assert_int_equal(apm_chunk_rc_flush(&rc, buf), 0);
    uint64_t dt[1] = {10000}, dv[1] = {0};
    check_prefix(buf, 0, 3, 10000, dt, dv, 1);
}

static void test_chunk_rc_end_check_refuses_noise(void **state)
{
    (void)state;
    /* Random bytes decode to something, never outside the buffer (ASan build), and fail the end
     * check. */
    uint64_t seed = 99;
    uint8_t noise[64];
    int accepted = 0;
    for (int round = 0; round < 200; round++) {
        for (size_t i = 0; i < sizeof(noise); i++)
            noise[i] = (uint8_t)next_rand(&seed);
        struct apm_chunk_rc rc;
        struct apm_chunk_model m;
        apm_chunk_rc_dec_init(&rc, noise, 0, sizeof(noise));
        apm_chunk_model_init(&m, 0, 3);
        for (int i = 0; i < 300; i++) {
            uint64_t t = 0, v = 0;
            apm_chunk_rc_sample(&rc, &m, noise, &t, &v);
        }
        accepted += apm_chunk_rc_dec_done(&rc);
    }
    /* The stream must hold exactly the flush's number: noise hits that about 1 time in 2^24. */
    assert_int_equal(accepted, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunk_rc_every_flush_decodes_alone),
        cmocka_unit_test(test_chunk_rc_predicted_numbers_cost_nothing),
        cmocka_unit_test(test_chunk_rc_end_check_refuses_noise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
