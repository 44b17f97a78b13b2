/*
 * The remote-write cursor (server/store/store_rwcursor.c): what is put is
 * read back, survives closing and opening the store again, and leaves with
 * its series. Real LMDB files in /tmp.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "server/store/store.h"

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void test_cursor_persists(void **state)
{
    (void)state;
    char dir[] = "/tmp/apm-test-rwcursor-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct apm_store_options opt = {.dir = dir, .rw_hold = true};
    struct apm_store *s = NULL;
    assert_int_equal(apm_store_open(&opt, &s), 0);
    int64_t t = 0;
    assert_int_equal(apm_store_rw_cursor_get(s, 3, &t), APM_E_NOTFOUND);
    uint64_t ids[] = {3, 9, 1ull << 40};
    int64_t ts[] = {1000, -5, INT64_MAX - 1};
    assert_int_equal(apm_store_rw_cursor_put(s, ids, ts, 3), 0);
    int64_t moved = 2000;
    assert_int_equal(apm_store_rw_cursor_put(s, ids, &moved, 1), 0);
    apm_store_free(s);
    s = NULL;
    assert_int_equal(apm_store_open(&opt, &s), 0);
    assert_int_equal(apm_store_rw_cursor_get(s, 3, &t), 0);
    assert_int_equal(t, 2000);
    assert_int_equal(apm_store_rw_cursor_get(s, 9, &t), 0);
    assert_int_equal(t, -5);
    assert_int_equal(apm_store_rw_cursor_get(s, 1ull << 40, &t), 0);
    assert_int_equal(t, INT64_MAX - 1);
    assert_int_equal(apm_store_rw_cursor_get(s, 4, &t), APM_E_NOTFOUND);
    assert_int_equal(apm_store_rw_cursor_put(s, NULL, NULL, 0), 0);
    apm_store_free(s);
    nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cursor_persists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
