/* Frame reader: partial reads, byte-at-a-time input, oversize and zero lengths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/base/error.h"
#include "common/wire/frame.h"

struct seen {
    int frames;
    size_t total;
    uint8_t last[64];
    size_t last_len;
    int stop_after;
};

static int on_frame(void *ctx, const uint8_t *p, size_t len)
{
    struct seen *s = ctx;
    s->frames++;
    s->total += len;
    s->last_len = len < sizeof(s->last) ? len : sizeof(s->last);
    memcpy(s->last, p, s->last_len);
    if (s->stop_after && s->frames == s->stop_after)
        return APM_E_CLOSED;
    return 0;
}

static size_t make_frames(uint8_t *out, int n, uint32_t len)
{
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        apm_frame_put_header(out + off, len);
        memset(out + off + 4, 'a' + i, len);
        off += 4 + len;
    }
    return off;
}

static void test_frame_whole_frames_in_one_read(void **state)
{
    (void)state;
    uint8_t buf[1024];
    size_t n = make_frames(buf, 3, 100);
    struct apm_frame_reader r;
    apm_frame_reader_init(&r, 4096);
    struct seen s = {0};
    assert_int_equal(apm_frame_reader_feed(&r, buf, n, on_frame, &s), 0);
    assert_int_equal(s.frames, 3);
    assert_int_equal(s.total, 300);
    assert_int_equal(s.last[0], 'c');
    apm_frame_reader_close(&r);
}

static void test_frame_byte_at_a_time(void **state)
{
    (void)state;
    uint8_t buf[1024];
    size_t n = make_frames(buf, 4, 50);
    struct apm_frame_reader r;
    apm_frame_reader_init(&r, 4096);
    struct seen s = {0};
    for (size_t i = 0; i < n; i++)
        assert_int_equal(apm_frame_reader_feed(&r, buf + i, 1, on_frame, &s), 0);
    assert_int_equal(s.frames, 4);
    assert_int_equal(s.total, 200);
    assert_int_equal(s.last[49], 'd');
    apm_frame_reader_close(&r);
}

static void test_frame_split_across_reads_at_every_offset(void **state)
{
    (void)state;
    uint8_t buf[1024];
    size_t n = make_frames(buf, 2, 30);
    for (size_t cut = 0; cut <= n; cut++) {
        struct apm_frame_reader r;
        apm_frame_reader_init(&r, 4096);
        struct seen s = {0};
        assert_int_equal(apm_frame_reader_feed(&r, buf, cut, on_frame, &s), 0);
        assert_int_equal(apm_frame_reader_feed(&r, buf + cut, n - cut, on_frame, &s), 0);
        assert_int_equal(s.frames, 2);
        apm_frame_reader_close(&r);
    }
}

static void test_frame_refuses_oversize_length_before_payload(void **state)
{
    (void)state;
    uint8_t hdr[4];
    apm_frame_put_header(hdr, 4097);
    struct apm_frame_reader r;
    apm_frame_reader_init(&r, 4096);
    struct seen s = {0};
    /* Only the header arrives: the refusal must not wait for (or buffer) the payload. */
    assert_int_equal(apm_frame_reader_feed(&r, hdr, 4, on_frame, &s), APM_E_FRAME_TOO_BIG);
    assert_int_equal(s.frames, 0);
    assert_true(r.cap < 4096);
    apm_frame_reader_close(&r);
}

static void test_frame_refuses_oversize_length_split_header(void **state)
{
    (void)state;
    uint8_t hdr[4];
    apm_frame_put_header(hdr, 0xffffffffu);
    struct apm_frame_reader r;
    apm_frame_reader_init(&r, 4096);
    struct seen s = {0};
    assert_int_equal(apm_frame_reader_feed(&r, hdr, 2, on_frame, &s), 0);
    assert_int_equal(apm_frame_reader_feed(&r, hdr + 2, 2, on_frame, &s), APM_E_FRAME_TOO_BIG);
    apm_frame_reader_close(&r);
}

static void test_frame_refuses_zero_length(void **state)
{
    (void)state;
    uint8_t hdr[4] = {0, 0, 0, 0};
    struct apm_frame_reader r;
    apm_frame_reader_init(&r, 4096);
    struct seen s = {0};
    assert_int_equal(apm_frame_reader_feed(&r, hdr, 4, on_frame, &s), APM_E_FRAME_EMPTY);
    apm_frame_reader_close(&r);
}

static void test_frame_max_can_grow_after_auth(void **state)
{
    (void)state;
    static uint8_t buf[20000];
    size_t n = make_frames(buf, 1, 10000);
    struct apm_frame_reader r;
    apm_frame_reader_init(&r, 4096);
    apm_frame_reader_set_max(&r, 16384);
    struct seen s = {0};
    assert_int_equal(apm_frame_reader_feed(&r, buf, n, on_frame, &s), 0);
    assert_int_equal(s.frames, 1);
    apm_frame_reader_close(&r);
}

static void test_frame_callback_error_stops_feeding(void **state)
{
    (void)state;
    uint8_t buf[1024];
    size_t n = make_frames(buf, 3, 10);
    struct apm_frame_reader r;
    apm_frame_reader_init(&r, 4096);
    struct seen s = {.stop_after = 1};
    assert_int_equal(apm_frame_reader_feed(&r, buf, n, on_frame, &s), APM_E_CLOSED);
    assert_int_equal(s.frames, 1);
    apm_frame_reader_close(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_whole_frames_in_one_read),
        cmocka_unit_test(test_frame_byte_at_a_time),
        cmocka_unit_test(test_frame_split_across_reads_at_every_offset),
        cmocka_unit_test(test_frame_refuses_oversize_length_before_payload),
        cmocka_unit_test(test_frame_refuses_oversize_length_split_header),
        cmocka_unit_test(test_frame_refuses_zero_length),
        cmocka_unit_test(test_frame_max_can_grow_after_auth),
        cmocka_unit_test(test_frame_callback_error_stops_feeding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
