/*
 * The remote-write cursor (server/store/store_rwcursor.c): what is put is
 * read back, survives closing and opening the store again, and leaves with
 * its series; so does the pending record of the request in flight, which
 * the cursor's commit empties. Real LMDB files in /tmp.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/error.h"
#include "server/store/store.h"
#include "tests/tmpdir.h"

/* A store in a directory of its own, reopened at will (as after a crash). */
struct fixture {
    char dir[64];
    struct apm_store_options opt;
    struct apm_store *s;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/apm-test-rwcursor-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->opt = (struct apm_store_options){.dir = f->dir, .rw_hold = true};
    assert_int_equal(apm_store_open(&f->opt, &f->s), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    apm_store_free(f->s);
    apm_test_rmtree(f->dir);
    free(f);
    return 0;
}

static struct apm_store *reopen(struct fixture *f)
{
    apm_store_free(f->s);
    f->s = NULL;
    assert_int_equal(apm_store_open(&f->opt, &f->s), 0);
    return f->s;
}

static void test_cursor_persists(void **state)
{
    struct fixture *f = *state;
    struct apm_store *s = f->s;
    int64_t t = 0;
    assert_int_equal(apm_store_rw_cursor_get(s, 3, &t), APM_E_NOTFOUND);
    uint64_t ids[] = {3, 9, 1ull << 40};
    int64_t ts[] = {1000, -5, INT64_MAX - 1};
    assert_int_equal(apm_store_rw_cursor_put(s, ids, ts, 3), 0);
    int64_t moved = 2000;
    assert_int_equal(apm_store_rw_cursor_put(s, ids, &moved, 1), 0);
    s = reopen(f);
    assert_int_equal(apm_store_rw_cursor_get(s, 3, &t), 0);
    assert_int_equal(t, 2000);
    assert_int_equal(apm_store_rw_cursor_get(s, 9, &t), 0);
    assert_int_equal(t, -5);
    assert_int_equal(apm_store_rw_cursor_get(s, 1ull << 40, &t), 0);
    assert_int_equal(t, INT64_MAX - 1);
    assert_int_equal(apm_store_rw_cursor_get(s, 4, &t), APM_E_NOTFOUND);
    assert_int_equal(apm_store_rw_cursor_put(s, NULL, NULL, 0), 0);
}

/* Reads the pending record; returns how many series it names. */
static size_t pending(struct apm_store *s, uint64_t *ids, int64_t *ts, size_t max)
{
    uint64_t *gi = NULL;
    int64_t *gt = NULL;
    size_t n = 99;
    assert_int_equal(apm_store_rw_pending_get(s, &gi, &gt, &n), 0);
    assert_true(n <= max);
    if (n > 0) {
        memcpy(ids, gi, n * sizeof(*ids));
        memcpy(ts, gt, n * sizeof(*ts));
    } else {
        assert_null(gi);
        assert_null(gt);
    }
    free(gi);
    free(gt);
    return n;
}

/*
 * The pending record (the request in flight): a put replaces it whole, it
 * survives closing and opening the store (a crash), it comes back in series
 * order, and the cursor's put empties it in the same transaction, even a
 * put of no cursor; a pending put moves the cursors it is given too.
 */
static void test_pending_record_replaced_kept_and_cleared_by_the_cursor(void **state)
{
    struct fixture *f = *state;
    struct apm_store *s = f->s;
    uint64_t ids[4];
    int64_t ts[4];
    assert_int_equal(pending(s, ids, ts, 4), 0);
    uint64_t put1[] = {1ull << 40, 7, 3};
    int64_t t1[] = {-1, 7000, 3000};
    assert_int_equal(apm_store_rw_pending_put(s, NULL, NULL, 0, put1, t1, 3), 0);
    uint64_t put2[] = {9, 3};
    int64_t t2[] = {9000, 3500};
    assert_int_equal(apm_store_rw_pending_put(s, NULL, NULL, 0, put2, t2, 2), 0);
    s = reopen(f);
    assert_int_equal(pending(s, ids, ts, 4), 2);
    assert_int_equal(ids[0], 3);
    assert_int_equal(ts[0], 3500);
    assert_int_equal(ids[1], 9);
    assert_int_equal(ts[1], 9000);
    /* The cursor's commit settles the request: cursor moved, record gone. */
    assert_int_equal(apm_store_rw_cursor_put(s, put2, t2, 2), 0);
    assert_int_equal(pending(s, ids, ts, 4), 0);
    int64_t t = 0;
    assert_int_equal(apm_store_rw_cursor_get(s, 9, &t), 0);
    assert_int_equal(t, 9000);
    /* The next request's record commits the last one's cursors in its transaction. */
    int64_t t3[] = {9900, 3900};
    assert_int_equal(apm_store_rw_pending_put(s, put2, t3, 2, put1, t1, 3), 0);
    assert_int_equal(apm_store_rw_cursor_get(s, 9, &t), 0);
    assert_int_equal(t, 9900);
    assert_int_equal(apm_store_rw_cursor_get(s, 3, &t), 0);
    assert_int_equal(t, 3900);
    assert_int_equal(pending(s, ids, ts, 4), 3);
    assert_int_equal(ids[0], 3);
    assert_int_equal(ts[0], 3000);
    assert_int_equal(ids[2], 1ull << 40);
    assert_int_equal(ts[2], -1);
    assert_int_equal(apm_store_rw_cursor_put(s, NULL, NULL, 0), 0);
    assert_int_equal(pending(s, ids, ts, 4), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cursor_persists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_record_replaced_kept_and_cleared_by_the_cursor,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
