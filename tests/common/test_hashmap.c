/* Hash map: insert, replace, delete with backward shift, checked against a plain array. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/base/error.h"
#include "common/base/hashmap.h"

static void test_hashmap_put_get_replace(void **state)
{
    (void)state;
    struct apm_hashmap m;
    apm_hashmap_init(&m);
    uint64_t v = 0;
    assert_int_equal(apm_hashmap_get(&m, "a", 1, &v), APM_E_NOTFOUND);
    assert_int_equal(apm_hashmap_put(&m, "a", 1, 1), 0);
    assert_int_equal(apm_hashmap_put(&m, "", 0, 7), 0);
    assert_int_equal(apm_hashmap_put(&m, "a", 1, 2), 0);
    assert_int_equal(apm_hashmap_get(&m, "a", 1, &v), 0);
    assert_int_equal(v, 2);
    assert_int_equal(apm_hashmap_get(&m, "", 0, &v), 0);
    assert_int_equal(v, 7);
    assert_int_equal(m.len, 2);
    apm_hashmap_close(&m);
    apm_hashmap_close(NULL);
}

static void test_hashmap_random_ops_match_reference(void **state)
{
    (void)state;
    enum { KEYS = 3000 };
    static int64_t ref[KEYS]; /* -1 = absent */
    for (int i = 0; i < KEYS; i++)
        ref[i] = -1;
    struct apm_hashmap m;
    apm_hashmap_init(&m);
    srand(42);
    for (int op = 0; op < 200000; op++) {
        uint32_t k = (uint32_t)rand() % KEYS;
        int what = rand() % 3;
        if (what == 0) {
            assert_int_equal(apm_hashmap_put(&m, &k, sizeof(k), (uint64_t)op), 0);
            ref[k] = op;
        } else if (what == 1) {
            int rc = apm_hashmap_del(&m, &k, sizeof(k));
            assert_int_equal(rc, ref[k] >= 0 ? 0 : APM_E_NOTFOUND);
            ref[k] = -1;
        } else {
            uint64_t v;
            int rc = apm_hashmap_get(&m, &k, sizeof(k), &v);
            if (ref[k] >= 0) {
                assert_int_equal(rc, 0);
                assert_int_equal(v, (uint64_t)ref[k]);
            } else {
                assert_int_equal(rc, APM_E_NOTFOUND);
            }
        }
    }
    size_t live = 0;
    for (uint32_t k = 0; k < KEYS; k++) {
        uint64_t v;
        int rc = apm_hashmap_get(&m, &k, sizeof(k), &v);
        assert_int_equal(rc, ref[k] >= 0 ? 0 : APM_E_NOTFOUND);
        live += ref[k] >= 0;
    }
    assert_int_equal(m.len, live);
    apm_hashmap_close(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hashmap_put_get_replace),
        cmocka_unit_test(test_hashmap_random_ops_match_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
