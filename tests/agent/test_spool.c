/*
 * The agent's disk spool on real files in a temporary directory, with its
 * real thread and a real loop: records come back in order across a close
 * and reopen, the acked cursor survives, the cap drops the oldest unsent
 * records and counts them exactly, a torn or corrupted segment is cut at its
 * first bad CRC and counted, a damaged state file starts a new instance.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "agent/spool.h"
#include "common/base/log.h"

struct env {
    uv_loop_t loop;
    char dir[64];
    struct apm_spool *s;
    bool closed;
    bool answered;
    uint64_t seqs[1024];
    size_t n;
    uint64_t through;
    bool at_end;
    bool data_ok;
};

static void on_read(void *ctx, struct apm_spool_record *list, uint64_t through, bool at_end)
{
    struct env *e = ctx;
    for (struct apm_spool_record *r = list; r != NULL; r = r->next) {
        /* Each test record holds its seq in every byte's low bits. */
        for (size_t i = 0; i < r->len; i++)
            if (r->data[i] != (uint8_t)(r->seq + i))
                e->data_ok = false;
        if (e->n < 1024)
            e->seqs[e->n++] = r->seq;
    }
    apm_spool_records_free(list);
    e->through = through;
    e->at_end = at_end;
    e->answered = true;
}

static void on_closed(void *ctx)
{
    ((struct env *)ctx)->closed = true;
}

static void open_spool(struct env *e, uint64_t max_bytes, uint64_t segment_bytes)
{
    struct apm_spool_options o = {
        .dir = e->dir, .max_bytes = max_bytes, .segment_bytes = segment_bytes, .sync_ms = 50};
    char err[512];
    int rc = apm_spool_open(&e->loop, &o, on_read, e, &e->s, err, sizeof(err));
    if (rc != 0)
        fail_msg("open: %s", err);
}

static void close_spool(struct env *e)
{
    e->closed = false;
    apm_spool_close(e->s, NULL, on_closed, e);
    while (!e->closed)
        uv_run(&e->loop, UV_RUN_ONCE);
    e->s = NULL;
}

/* Reads everything after seq, in as many requests as it takes. */
static void read_all(struct env *e, uint64_t after, size_t max_bytes)
{
    e->n = 0;
    e->data_ok = true;
    for (;;) {
        e->answered = false;
        assert_int_equal(apm_spool_read(e->s, after, max_bytes), 0);
        while (!e->answered)
            uv_run(&e->loop, UV_RUN_ONCE);
        after = e->through;
        if (e->at_end)
            break;
    }
}

static void append(struct env *e, uint64_t seq, size_t len, bool in_memory)
{
    uint8_t buf[4096];
    assert_true(len <= sizeof(buf));
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(seq + i);
    assert_int_equal(apm_spool_append(e->s, seq, 3, buf, len, in_memory), 0);
}

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    snprintf(e->dir, sizeof(e->dir), "/tmp/apm-spool-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    uv_loop_init(&e->loop);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    if (e->s != NULL)
        close_spool(e);
    uv_loop_close(&e->loop);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", e->dir);
    if (system(cmd) != 0)
        return -1;
    free(e);
    return 0;
}

static void seg_file(struct env *e, unsigned num, char *out, size_t size)
{
    snprintf(out, size, "%s/%020u.seg", e->dir, num);
}

static void test_replay_in_order_after_reopen(void **state)
{
    struct env *e = *state;
    open_spool(e, 0, 0);
    uint64_t inst = apm_spool_instance(e->s), first = apm_spool_first_seq(e->s);
    assert_int_equal(first, 1);
    for (uint64_t i = 0; i < 50; i++)
        append(e, first + i, 100 + i, true);
    close_spool(e);

    open_spool(e, 0, 0);
    assert_int_equal(apm_spool_instance(e->s), inst);
    assert_int_equal(apm_spool_first_seq(e->s), first + APM_SPOOL_LEASE);
    read_all(e, 0, 1000); /* several requests: about 1000 bytes each */
    assert_int_equal(e->n, 50);
    assert_true(e->data_ok);
    for (size_t i = 0; i < 50; i++)
        assert_int_equal(e->seqs[i], first + i);
    struct apm_spool_stats st;
    apm_spool_get_stats(e->s, &st);
    assert_int_equal(st.records_replayed, 50);
    assert_int_equal(st.samples_replayed, 150);
    assert_int_equal(st.corrupt, 0);
    /* New records of this run come after the old ones. */
    append(e, apm_spool_first_seq(e->s), 10, true);
    read_all(e, first + 49, 1 << 20);
    assert_int_equal(e->n, 1);
    assert_int_equal(e->seqs[0], first + APM_SPOOL_LEASE);
}

static void test_acked_cursor_survives(void **state)
{
    struct env *e = *state;
    open_spool(e, 0, 0);
    for (uint64_t s = 1; s <= 10; s++)
        append(e, s, 64, true);
    apm_spool_ack(e->s, 6);
    close_spool(e);
    open_spool(e, 0, 0);
    read_all(e, 0, 1 << 20);
    assert_int_equal(e->n, 4);
    assert_int_equal(e->seqs[0], 7);
    assert_int_equal(e->seqs[3], 10);
    /* All acked: the next start deletes the segments. */
    apm_spool_ack(e->s, 10);
    close_spool(e);
    open_spool(e, 0, 0);
    struct apm_spool_stats st;
    read_all(e, 0, 1 << 20);
    assert_int_equal(e->n, 0);
    apm_spool_get_stats(e->s, &st);
    assert_int_equal(st.segments, 0);
}

static void test_cap_drops_oldest_counted(void **state)
{
    struct env *e = *state;
    /* 64 KiB cap, 16 KiB segments, 300 records of 1000 bytes that are only on disk. */
    open_spool(e, 64 << 10, 16 << 10);
    for (uint64_t s = 1; s <= 300; s++)
        append(e, s, 1000, false);
    read_all(e, 0, 1 << 20);
    struct apm_spool_stats st;
    apm_spool_get_stats(e->s, &st);
    assert_int_equal(st.records_spooled, 300);
    assert_true(st.bytes <= 64 << 10);
    assert_true(st.records_dropped > 200);
    /* Exactly: what is left plus what was dropped is everything, and the newest are kept. */
    assert_int_equal(e->n + st.records_dropped, 300);
    assert_int_equal(st.samples_dropped, 3 * st.records_dropped);
    assert_int_equal(e->seqs[0], st.records_dropped + 1);
    assert_int_equal(e->seqs[e->n - 1], 300);
    assert_true(e->data_ok);
}

static void test_cap_does_not_count_records_held_in_memory(void **state)
{
    struct env *e = *state;
    open_spool(e, 64 << 10, 16 << 10);
    for (uint64_t s = 1; s <= 300; s++)
        append(e, s, 1000, true);
    read_all(e, 300, 1 << 20);
    struct apm_spool_stats st;
    apm_spool_get_stats(e->s, &st);
    assert_int_equal(st.records_dropped, 0);
    assert_true(st.bytes <= 64 << 10);
}

static void corrupt_byte(const char *path, long off)
{
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, off, SEEK_SET), 0);
    int c = fgetc(f);
    assert_int_equal(fseek(f, off, SEEK_SET), 0);
    fputc(c ^ 0x5a, f);
    fclose(f);
}

static void test_bad_crc_discards_from_there(void **state)
{
    struct env *e = *state;
    open_spool(e, 0, 0);
    for (uint64_t s = 1; s <= 10; s++)
        append(e, s, 100, true);
    close_spool(e);
    char path[128];
    seg_file(e, 0, path, sizeof(path));
    /* Record k (from 0) starts at 8 + k * 120; damage the payload of record 4. */
    corrupt_byte(path, 8 + 4 * 120 + 20 + 50);
    open_spool(e, 0, 0);
    read_all(e, 0, 1 << 20);
    assert_int_equal(e->n, 4);
    assert_int_equal(e->seqs[3], 4);
    assert_true(e->data_ok);
    struct apm_spool_stats st;
    apm_spool_get_stats(e->s, &st);
    assert_int_equal(st.corrupt, 1);
    assert_int_equal(st.corrupt_bytes, 6 * 120);
    close_spool(e);
    /* The segment was cut: the next start finds nothing wrong. */
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_size, 8 + 4 * 120);
    open_spool(e, 0, 0);
    read_all(e, 0, 1 << 20);
    apm_spool_get_stats(e->s, &st);
    assert_int_equal(st.corrupt, 0);
    assert_int_equal(e->n, 4);
}

static void test_torn_tail_and_later_segments_kept(void **state)
{
    struct env *e = *state;
    open_spool(e, 0, 0);
    for (uint64_t s = 1; s <= 5; s++)
        append(e, s, 100, true);
    close_spool(e);
    open_spool(e, 0, 0); /* the second run writes segment 1 */
    read_all(e, 0, 1 << 20);
    uint64_t first = apm_spool_first_seq(e->s);
    for (uint64_t i = 0; i < 3; i++)
        append(e, first + i, 100, true);
    close_spool(e);
    char path[128];
    seg_file(e, 0, path, sizeof(path));
    assert_int_equal(truncate(path, 8 + 2 * 120 + 30), 0); /* a torn third record */
    open_spool(e, 0, 0);
    read_all(e, 0, 1 << 20);
    assert_int_equal(e->n, 5);
    assert_int_equal(e->seqs[1], 2);
    assert_int_equal(e->seqs[2], first);
    assert_int_equal(e->seqs[4], first + 2);
    struct apm_spool_stats st;
    apm_spool_get_stats(e->s, &st);
    assert_int_equal(st.corrupt, 1);
    assert_int_equal(st.corrupt_bytes, 30);
}

static void test_damaged_state_starts_afresh(void **state)
{
    struct env *e = *state;
    open_spool(e, 0, 0);
    uint64_t inst = apm_spool_instance(e->s);
    for (uint64_t s = 1; s <= 5; s++)
        append(e, s, 100, true);
    close_spool(e);
    char path[128];
    snprintf(path, sizeof(path), "%s/state", e->dir);
    corrupt_byte(path, 30);
    open_spool(e, 0, 0);
    assert_true(apm_spool_instance(e->s) != inst);
    assert_int_equal(apm_spool_first_seq(e->s), 1);
    read_all(e, 0, 1 << 20);
    assert_int_equal(e->n, 0);
    struct apm_spool_stats st;
    apm_spool_get_stats(e->s, &st);
    assert_int_equal(st.corrupt, 1);
    assert_int_equal(st.corrupt_bytes, 8 + 5 * 120);
}

static void test_unwritable_dir_is_a_clear_error(void **state)
{
    struct env *e = *state;
    struct apm_spool_options o = {.dir = "/proc/apm-no-such-spool"};
    char err[512] = "";
    struct apm_spool *s = NULL;
    assert_true(apm_spool_open(&e->loop, &o, on_read, e, &s, err, sizeof(err)) != 0);
    assert_non_null(strstr(err, "/proc/apm-no-such-spool"));
}

static void test_batch_round_trip(void **state)
{
    (void)state;
    struct apm_batch *b = apm_batch_new(77);
    struct apm_proc_desc p = {.pid = 42, .start_ms = 1000, .name = "app.py", .cmdline = "x"};
    uint32_t idx;
    assert_int_equal(apm_batch_add_proc(b, &p, &idx), 0);
    assert_int_equal(apm_batch_add_sample(b, idx, APM_METRIC_RSS, 5000, 123456), 0);
    assert_int_equal(apm_batch_add_sample(b, idx, APM_METRIC_RSS, 6000, 123999), 0);
    uint8_t *buf;
    size_t len;
    assert_int_equal(apm_spool_encode_batch(b, &buf, &len), 0);
    struct apm_batch *d = NULL;
    assert_int_equal(apm_spool_decode_batch(buf, len, &d), 0);
    assert_int_equal(d->seq, 77);
    assert_int_equal(d->nsamples, 2);
    assert_string_equal(d->procs[0].name, "app.py");
    apm_batch_free(d);
    d = NULL;
    assert_true(apm_spool_decode_batch(buf, len - 1, &d) != 0);
    free(buf);
    apm_batch_free(b);
}

int main(void)
{
    apm_log_init("test_spool", APM_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_replay_in_order_after_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_acked_cursor_survives, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cap_drops_oldest_counted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cap_does_not_count_records_held_in_memory, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_crc_discards_from_there, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail_and_later_segments_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_state_starts_afresh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwritable_dir_is_a_clear_error, setup, teardown),
        cmocka_unit_test(test_batch_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
