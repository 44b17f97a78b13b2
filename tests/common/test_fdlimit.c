#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <sys/resource.h>

#include "common/base/fdlimit.h"

/* A soft limit below the hard one is raised to it. */
static void test_fdlimit_raises_soft_to_hard(void **state)
{
    (void)state;
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_max < 64)
        skip();
    struct rlimit low = {.rlim_cur = 32, .rlim_max = rl.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    uint64_t soft = 0;
    assert_int_equal(apm_fdlimit_raise(&soft), 0);
    assert_true(soft == (uint64_t)rl.rlim_max);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &low), 0);
    assert_true(low.rlim_cur == rl.rlim_max);
    /* Again: nothing left to raise, still 0. */
    assert_int_equal(apm_fdlimit_raise(NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fdlimit_raises_soft_to_hard),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
