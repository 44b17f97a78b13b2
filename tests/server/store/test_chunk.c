#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <errno.h>

#include "common/base/error.h"
#include "server/store/chunk.h"

/* A small deterministic generator so failures reproduce. */
static uint64_t next_rand(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

/* Encodes n samples one at a time in a format, decodes them and compares every pair. */
static void roundtrip_format(const int64_t *t, const int64_t *v, uint32_t n, uint8_t format)
{
    struct apm_chunk_enc e;
    apm_chunk_enc_init(&e);
    assert_int_equal(apm_chunk_enc_set_format(&e, format), 0);
    for (uint32_t i = 0; i < n; i++)
        assert_int_equal(apm_chunk_enc_append(&e, t[i], v[i]), 0);
    assert_int_equal(apm_chunk_count(e.buf, e.len), n);
    assert_int_equal(e.buf[0], format);

    struct apm_chunk_iter it;
    assert_int_equal(apm_chunk_iter_init(&it, e.buf, e.len, t[0]), 0);
    int64_t dt, dv;
    for (uint32_t i = 0; i < n; i++) {
        assert_int_equal(apm_chunk_iter_next(&it, &dt, &dv), 1);
        assert_true(dt == t[i]);
        assert_true(dv == v[i]);
    }
    assert_int_equal(apm_chunk_iter_next(&it, &dt, &dv), 0);

    /* Loading the chunk back reproduces the encoder: appending goes on alike. */
    struct apm_chunk_enc l;
    apm_chunk_enc_init(&l);
    int64_t more_t = (int64_t)((uint64_t)t[n - 1] + 1000);
    int64_t more_v = (int64_t)((uint64_t)v[n - 1] + 3);
    assert_int_equal(apm_chunk_enc_load(&l, e.buf, e.len, t[0]), 0);
    assert_int_equal(apm_chunk_enc_append(&l, more_t, more_v), 0);
    assert_int_equal(apm_chunk_enc_append(&e, more_t, more_v), 0);
    assert_int_equal(l.len, e.len);
    assert_memory_equal(l.buf, e.buf, e.len);
    apm_chunk_enc_close(&l);
    apm_chunk_enc_close(&e);
}

/* Every format: format 3 is written, formats 1 and 2 must still read and reload. */
static void roundtrip(const int64_t *t, const int64_t *v, uint32_t n)
{
    roundtrip_format(t, v, n, APM_CHUNK_FORMAT);
    roundtrip_format(t, v, n, APM_CHUNK_FORMAT_RC2);
    roundtrip_format(t, v, n, APM_CHUNK_FORMAT_RICE);
}

static void test_chunk_roundtrips_random_series(void **state)
{
    (void)state;
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    enum { N = 500 };
    int64_t t[N], v[N];
    for (int round = 0; round < 50; round++) {
        int64_t tt = 1700000000000 + (int64_t)(next_rand(&seed) % 1000000);
        int64_t vv = (int64_t)(next_rand(&seed) % 4000000000u);
        for (int i = 0; i < N; i++) {
            tt += 10000 + (int64_t)(next_rand(&seed) % 2001) - 1000;
            vv += ((int64_t)(next_rand(&seed) % 201) - 100) * (round % 2 ? 4096 : 1);
            t[i] = tt;
            v[i] = vv;
        }
        roundtrip(t, v, N);
    }
}

static void test_chunk_roundtrips_negative_deltas_and_jumps(void **state)
{
    (void)state;
    int64_t t[] = {1000, 2000, 1500, 1500, -7000, 900000000000, 900000000001, 0};
    int64_t v[] = {5, -5, 1ll << 40, -(1ll << 40), 0, 3, 4096, -1};
    roundtrip(t, v, 8);
}

static void test_chunk_roundtrips_int64_extremes(void **state)
{
    (void)state;
    int64_t t[] = {INT64_MIN, INT64_MAX, INT64_MIN, 0, INT64_MAX, INT64_MAX, -1, INT64_MIN};
    int64_t v[] = {INT64_MAX, INT64_MIN, INT64_MAX, INT64_MIN, 0, -1, INT64_MIN, INT64_MAX};
    roundtrip(t, v, 8);
    roundtrip(v, t, 8);
}

static void test_chunk_roundtrips_single_and_constant(void **state)
{
    (void)state;
    int64_t t[200], v[200];
    for (int i = 0; i < 200; i++) {
        t[i] = 1700000000000 + i * 1000ll;
        v[i] = 123456789;
    }
    roundtrip(t, v, 1);
    roundtrip(t, v, 200);
}

static void test_chunk_shrinks_shift_without_loss(void **state)
{
    (void)state;
    /* Deltas of 8192 first, then 4096, then an odd one: two rebuilds. */
    int64_t t[40], v[40];
    int64_t vv = 1 << 30;
    for (int i = 0; i < 40; i++) {
        vv += i < 20 ? 8192 : (i < 39 ? -4096 : 7);
        t[i] = i * 15000ll;
        v[i] = vv;
    }
    roundtrip(t, v, 40);
}

static void test_chunk_packs_regular_page_samples_small(void **state)
{
    (void)state;
    /* A steady 10 s series in 4 KiB steps must cost well under 2 bytes a sample. */
    struct apm_chunk_enc e;
    apm_chunk_enc_init(&e);
    uint64_t seed = 42;
    int64_t v = 100 << 20;
    for (int i = 0; i < 120; i++) {
        v += ((int64_t)(next_rand(&seed) % 9) - 4) * 4096;
        assert_int_equal(apm_chunk_enc_append(&e, 1700000000000 + i * 10000ll, v), 0);
    }
    assert_true(e.len < 120 * 2);
    assert_int_equal(e.buf[1], 12);
    apm_chunk_enc_close(&e);
}

static void test_chunk_next_chunk_continues_interval_and_shift(void **state)
{
    (void)state;
    struct apm_chunk_enc e;
    apm_chunk_enc_init(&e);
    int64_t t = 1700000000000, v = 1 << 28;
    for (int i = 0; i < 120; i++)
        assert_int_equal(apm_chunk_enc_append(&e, t + i * 10000ll, v + (i % 3) * 4096), 0);
    uint32_t first_len = e.len;
    apm_chunk_enc_restart(&e);
    int64_t t1 = t + 120 * 10000ll;
    for (int i = 0; i < 120; i++)
        assert_int_equal(apm_chunk_enc_append(&e, t1 + i * 10000ll, v + (i % 3) * 4096), 0);
    /*
     * The carried interval spares the second chunk its large first delta:
     * its coded stream is shorter, though its header's interval takes a
     * byte more (10000 against 0).
     */
    assert_true(e.len - 1 < first_len);
    assert_int_equal(e.buf[1], 12);
    struct apm_chunk_iter it;
    int64_t dt, dv;
    assert_int_equal(apm_chunk_iter_init(&it, e.buf, e.len, t1), 0);
    assert_true(it.dt == 10000);
    for (int i = 0; i < 120; i++) {
        assert_int_equal(apm_chunk_iter_next(&it, &dt, &dv), 1);
        assert_true(dt == t1 + i * 10000ll);
        assert_true(dv == v + (i % 3) * 4096);
    }
    apm_chunk_enc_close(&e);
}

/* Decodes a whole chunk: the last iterator result (0 at a clean end). */
static int decode_all(const uint8_t *buf, size_t len)
{
    struct apm_chunk_iter it;
    int64_t t, v;
    int rc = apm_chunk_iter_init(&it, buf, len, 0);
    if (rc == 0)
        while ((rc = apm_chunk_iter_next(&it, &t, &v)) == 1)
            ;
    return rc;
}

/* Counts the prefixes of a chunk that decode without an error. */
static uint32_t truncations_accepted(const uint8_t *buf, uint32_t len)
{
    uint32_t accepted = 0;
    for (uint32_t cut = 0; cut < len; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, buf, cut);
        accepted += decode_all(copy, cut) != APM_E_DECODE;
        free(copy);
    }
    return accepted;
}

static void test_chunk_rejects_damaged_input(void **state)
{
    (void)state;
    struct apm_chunk_enc e, r;
    apm_chunk_enc_init(&e);
    apm_chunk_enc_init(&r);
    assert_int_equal(apm_chunk_enc_set_format(&r, APM_CHUNK_FORMAT_RICE), 0);
    assert_int_equal(apm_chunk_enc_set_format(&r, 4), -EINVAL);
    uint64_t seed = 7;
    for (int i = 0; i < 100; i++) {
        int64_t x = (int64_t)next_rand(&seed);
        assert_int_equal(apm_chunk_enc_append(&e, i * 1000ll, x), 0);
        assert_int_equal(apm_chunk_enc_append(&r, i * 1000ll, x), 0);
    }
    struct apm_chunk_iter it;
    /*
     * Truncated: format 1 runs out of bits. Format 2 carries its length mod
     * 256, since a prefix of a range-coded stream is often a valid stream of
     * other samples (the rest decodes from zero bytes); a cut by a multiple
     * of 256 bytes is caught by the end check (the stream must hold exactly
     * the number the flush writes), but by a chance of about 2^-24.
     */
    assert_int_equal(r.buf[0], APM_CHUNK_FORMAT_RICE);
    assert_int_equal(truncations_accepted(r.buf, r.len), 0);
    assert_true(e.len > 3 * 256);
    assert_int_equal(truncations_accepted(e.buf, e.len), 0);
    /* Trailing garbage is refused too. */
    uint8_t *longer = malloc(e.len + 1);
    memcpy(longer, e.buf, e.len);
    longer[e.len] = 0x5a;
    assert_int_equal(decode_all(longer, e.len + 1), APM_E_DECODE);
    assert_int_equal(decode_all(e.buf, e.len), 0);
    free(longer);
    apm_chunk_enc_close(&r);
    /* A bad format byte or shift is refused. */
    e.buf[0] = 99;
    assert_int_equal(apm_chunk_iter_init(&it, e.buf, e.len, 0), APM_E_DECODE);
    e.buf[0] = APM_CHUNK_FORMAT;
    e.buf[1] = 65;
    assert_int_equal(apm_chunk_iter_init(&it, e.buf, e.len, 0), APM_E_DECODE);
    apm_chunk_enc_close(&e);
    apm_chunk_enc_close(NULL);
}

static void test_chunk_stops_at_max_samples(void **state)
{
    (void)state;
    struct apm_chunk_enc e;
    apm_chunk_enc_init(&e);
    for (uint32_t i = 0; i < APM_CHUNK_MAX_SAMPLES; i++)
        assert_int_equal(apm_chunk_enc_append(&e, i, 0), 0);
    assert_int_equal(apm_chunk_enc_append(&e, 1ll << 40, 0), APM_E_LIMIT);
    assert_int_equal(apm_chunk_count(e.buf, e.len), APM_CHUNK_MAX_SAMPLES);
    apm_chunk_enc_close(&e);
}

/* Appends 120 samples of a steady 10 s series with page-sized noise. */
static void append_noisy(struct apm_chunk_enc *e, int64_t t0, uint64_t seed)
{
    int64_t v = 100 << 20;
    for (int i = 0; i < 120; i++) {
        v += ((int64_t)(next_rand(&seed) % 9) - 4) * 4096 * (i % 4 == 0);
        assert_int_equal(apm_chunk_enc_append(e, t0 + i * 10000ll, v), 0);
    }
}

static void test_chunk_format1_head_reloads_as_format1_then_seals_into_format2(void **state)
{
    (void)state;
    /* A store written before format 2: its open chunk is format 1. */
    struct apm_chunk_enc old, e;
    apm_chunk_enc_init(&old);
    apm_chunk_enc_set_format(&old, APM_CHUNK_FORMAT_RICE);
    for (int i = 0; i < 50; i++)
        assert_int_equal(apm_chunk_enc_append(&old, i * 10000ll, (100 + i % 5) << 12), 0);
    apm_chunk_enc_init(&e);
    assert_int_equal(apm_chunk_enc_load(&e, old.buf, old.len, 0), 0);
    /* It keeps growing in format 1, byte for byte as the old encoder would. */
    assert_int_equal(apm_chunk_enc_append(&e, 50 * 10000ll, 7 << 12), 0);
    assert_int_equal(apm_chunk_enc_append(&old, 50 * 10000ll, 7 << 12), 0);
    assert_int_equal(e.buf[0], APM_CHUNK_FORMAT_RICE);
    assert_int_equal(e.len, old.len);
    assert_memory_equal(e.buf, old.buf, old.len);
    /* The next chunk is format 2 and carries the shift and the interval. */
    apm_chunk_enc_restart(&e);
    assert_int_equal(apm_chunk_enc_append(&e, 51 * 10000ll, 9 << 12), 0);
    assert_int_equal(apm_chunk_enc_append(&e, 52 * 10000ll, 10 << 12), 0);
    assert_int_equal(e.buf[0], APM_CHUNK_FORMAT);
    assert_int_equal(e.buf[1], 12);
    struct apm_chunk_iter it;
    int64_t t, v;
    assert_int_equal(apm_chunk_iter_init(&it, e.buf, e.len, 51 * 10000ll), 0);
    assert_int_equal(apm_chunk_iter_next(&it, &t, &v), 1);
    assert_int_equal(apm_chunk_iter_next(&it, &t, &v), 1);
    assert_true(t == 52 * 10000ll && v == 10 << 12);
    assert_int_equal(apm_chunk_iter_next(&it, &t, &v), 0);
    apm_chunk_enc_close(&old);
    apm_chunk_enc_close(&e);
}

/*
 * A format 2 chunk as the encoder before format 3 wrote it (the fuzz seed
 * growing-jitter-f2, tests/fuzz/make_corpus_chunk.c): it still decodes to
 * its samples, reloads and grows as format 2 byte for byte, and the next
 * chunk is format 3.
 */
static const uint8_t format2_chunk[] = {
    0x02, 0x0c, 0x78, 0x00, 0x67, 0x80, 0xc2, 0xd7, 0x2f, 0x00, 0xd7, 0x7c, 0x2e, 0x48, 0x28,
    0xaf, 0x98, 0x42, 0xce, 0xe4, 0x35, 0xb8, 0xfe, 0x49, 0x21, 0x13, 0x29, 0xa1, 0x44, 0xff,
    0x19, 0x17, 0x3a, 0x31, 0x37, 0xd3, 0x4c, 0x3f, 0xd2, 0xd3, 0xed, 0x88, 0xbe, 0x37, 0xfe,
    0xa6, 0xd5, 0xcb, 0x32, 0x86, 0xd9, 0x02, 0x85, 0xdc, 0xd7, 0x41, 0xbe, 0x01, 0x5e, 0xea,
    0x44, 0x60, 0xb8, 0x5d, 0xf9, 0x66, 0xad, 0xc0, 0xdf, 0x60, 0x00, 0xb6, 0x21, 0xcd, 0xa3,
    0x44, 0xa8, 0x04, 0xe0, 0x1a, 0x50, 0xbf, 0x7d, 0x30, 0x71, 0xb2, 0x4d, 0x19, 0xd2, 0x23,
    0xeb, 0x0f, 0xf3, 0x00, 0xe4, 0x90, 0x7f, 0x6c, 0x02, 0xcf, 0x09, 0x3b, 0x4f,
};

static void test_chunk_format2_still_reads_then_seals_into_format3(void **state)
{
    (void)state;
    int64_t t0 = 1700000000000LL, t, v;
    struct apm_chunk_iter it;
    assert_int_equal(apm_chunk_iter_init(&it, format2_chunk, sizeof(format2_chunk), t0), 0);
    for (int i = 0; i < 120; i++) {
        assert_int_equal(apm_chunk_iter_next(&it, &t, &v), 1);
        assert_true(t == t0 + i * 10000LL + (i % 3) * 7);
        assert_true(v == 50000000 + (int64_t)i * 4096 * 3 - (i % 7) * 4096);
    }
    assert_int_equal(apm_chunk_iter_next(&it, &t, &v), 0);
    struct apm_chunk_enc e, f2;
    apm_chunk_enc_init(&e);
    apm_chunk_enc_init(&f2);
    assert_int_equal(apm_chunk_enc_load(&e, format2_chunk, sizeof(format2_chunk), t0), 0);
    assert_int_equal(apm_chunk_enc_set_format(&f2, APM_CHUNK_FORMAT_RC2), 0);
    assert_int_equal(apm_chunk_enc_load(&f2, format2_chunk, sizeof(format2_chunk), t0), 0);
    assert_int_equal(apm_chunk_enc_append(&e, t0 + 1200000, 50000000), 0);
    assert_int_equal(apm_chunk_enc_append(&f2, t0 + 1200000, 50000000), 0);
    assert_int_equal(e.buf[0], APM_CHUNK_FORMAT_RC2);
    assert_int_equal(e.len, f2.len);
    assert_memory_equal(e.buf, f2.buf, e.len);
    apm_chunk_enc_restart(&e);
    assert_int_equal(apm_chunk_enc_append(&e, t0 + 1210000, 50004096), 0);
    assert_int_equal(e.buf[0], APM_CHUNK_FORMAT);
    apm_chunk_enc_close(&e);
    apm_chunk_enc_close(&f2);
}

/*
 * Format 3 against format 2 on the same noisy series, long enough for the
 * contexts to settle: the slower settled rate codes it in fewer bytes.
 */
static void test_chunk_format3_is_denser_than_format2_on_long_noise(void **state)
{
    (void)state;
    struct apm_chunk_enc f2, f3;
    apm_chunk_enc_init(&f2);
    apm_chunk_enc_init(&f3);
    apm_chunk_enc_set_format(&f2, APM_CHUNK_FORMAT_RC2);
    uint64_t seed = 5;
    int64_t v = 100 << 20;
    for (int i = 0; i < 2000; i++) {
        v += ((int64_t)(next_rand(&seed) % 33) - 16) * 4096;
        assert_int_equal(apm_chunk_enc_append(&f2, i * 10000ll, v), 0);
        assert_int_equal(apm_chunk_enc_append(&f3, i * 10000ll, v), 0);
    }
    assert_int_equal(f2.buf[0], APM_CHUNK_FORMAT_RC2);
    assert_int_equal(f3.buf[0], APM_CHUNK_FORMAT);
    printf("2000 samples of noise: format 2 %u bytes, format 3 %u bytes\n", f2.len, f3.len);
    assert_true(f3.len < f2.len);
    apm_chunk_enc_close(&f2);
    apm_chunk_enc_close(&f3);
}

/*
 * Format 3 keeps its time grid across a gap of whole missing steps (and a
 * change of interval still restarts it): a jittered 60 s series with a few
 * samples missing now and then, then a move to 120 s, decodes exactly and
 * costs format 3 less than format 2, which restarts the grid at each gap.
 * The value is constant so that the time stream decides (without the gap
 * rule format 3 is larger here: 1,107 bytes against 1,102).
 */
static void test_chunk_format3_keeps_the_grid_across_gaps(void **state)
{
    (void)state;
    enum { N = 600 };
    static int64_t t[N], v[N];
    uint64_t seed = 11;
    int64_t grid = 1700000000000LL;
    for (int i = 0; i < N; i++) {
        grid += i < 500 ? ((i % 40 == 39) ? 3 : 1) * 60000LL : 120000LL;
        t[i] = grid + (int64_t)(next_rand(&seed) % 6001) - 3000;
        v[i] = 100 << 20;
    }
    struct apm_chunk_enc f2, f3;
    apm_chunk_enc_init(&f2);
    apm_chunk_enc_init(&f3);
    apm_chunk_enc_set_format(&f2, APM_CHUNK_FORMAT_RC2);
    for (int i = 0; i < N; i++) {
        assert_int_equal(apm_chunk_enc_append(&f2, t[i], v[i]), 0);
        assert_int_equal(apm_chunk_enc_append(&f3, t[i], v[i]), 0);
    }
    printf("gaps: format 2 %u bytes, format 3 %u bytes\n", f2.len, f3.len);
    assert_true(f3.len * 20 < f2.len * 19);
    struct apm_chunk_iter it;
    int64_t dt, dv;
    assert_int_equal(apm_chunk_iter_init(&it, f3.buf, f3.len, t[0]), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(apm_chunk_iter_next(&it, &dt, &dv), 1);
        assert_true(dt == t[i] && dv == v[i]);
    }
    assert_int_equal(apm_chunk_iter_next(&it, &dt, &dv), 0);
    apm_chunk_enc_close(&f2);
    apm_chunk_enc_close(&f3);
}

static void test_chunk_format2_is_denser_than_format1(void **state)
{
    (void)state;
    struct apm_chunk_enc f1, f2;
    apm_chunk_enc_init(&f1);
    apm_chunk_enc_init(&f2);
    apm_chunk_enc_set_format(&f1, APM_CHUNK_FORMAT_RICE);
    append_noisy(&f1, 0, 99);
    append_noisy(&f2, 0, 99);
    /* Plateaus cost format 1 a bit per sample and per stream, format 2 far less. */
    assert_true(f2.len * 10 < f1.len * 8);
    /*
     * A constant series at its usual interval is its header alone (5 fixed
     * bytes and two varints of 4 and 3): every decision went the predicted
     * way, so the range coder wrote only zero bytes, which are dropped.
     */
    apm_chunk_enc_restart(&f2);
    for (int i = 120; i < 240; i++)
        assert_int_equal(apm_chunk_enc_append(&f2, i * 10000ll, 1 << 20), 0);
    assert_int_equal(f2.len, 12);
    apm_chunk_enc_close(&f1);
    apm_chunk_enc_close(&f2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunk_roundtrips_random_series),
        cmocka_unit_test(test_chunk_roundtrips_negative_deltas_and_jumps),
        cmocka_unit_test(test_chunk_roundtrips_int64_extremes),
        cmocka_unit_test(test_chunk_roundtrips_single_and_constant),
        cmocka_unit_test(test_chunk_shrinks_shift_without_loss),
        cmocka_unit_test(test_chunk_packs_regular_page_samples_small),
        cmocka_unit_test(test_chunk_next_chunk_continues_interval_and_shift),
        cmocka_unit_test(test_chunk_rejects_damaged_input),
        cmocka_unit_test(test_chunk_stops_at_max_samples),
        cmocka_unit_test(test_chunk_format1_head_reloads_as_format1_then_seals_into_format2),
        cmocka_unit_test(test_chunk_format2_is_denser_than_format1),
        cmocka_unit_test(test_chunk_format2_still_reads_then_seals_into_format3),
        cmocka_unit_test(test_chunk_format3_is_denser_than_format2_on_long_noise),
        cmocka_unit_test(test_chunk_format3_keeps_the_grid_across_gaps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
