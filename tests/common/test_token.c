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
#include "common/base/token.h"

struct fixture {
    char dir[64];
    char path[128];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/apm-test-token-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/token", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    unlink(f->path);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void write_token(const char *path, const char *text, mode_t mode)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    assert_int_equal(chmod(path, mode), 0);
}

static int load(const char *path, bool create, char *err, size_t errlen, size_t *len)
{
    uint8_t buf[256];
    return apm_token_load(path, create, buf, sizeof(buf), len, err, errlen);
}

static void test_token_created_private_and_long(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    size_t len = 0;
    assert_int_equal(load(f->path, true, err, sizeof(err), &len), 0);
    assert_int_equal(len, 64);
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* And it loads again as it is. */
    assert_int_equal(load(f->path, false, err, sizeof(err), &len), 0);
}

static void test_token_readable_by_others_is_refused(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    size_t len = 0;
    write_token(f->path, "0123456789abcdef0123456789abcdef\n", 0644);
    assert_int_equal(load(f->path, false, err, sizeof(err), &len), APM_E_CONFIG);
    assert_non_null(strstr(err, f->path));
    assert_non_null(strstr(err, "mode 0644"));
    assert_non_null(strstr(err, "chmod 600"));
    /* Group alone is refused too; 0400 is fine. */
    assert_int_equal(chmod(f->path, 0640), 0);
    assert_int_equal(load(f->path, false, err, sizeof(err), &len), APM_E_CONFIG);
    assert_int_equal(chmod(f->path, 0400), 0);
    assert_int_equal(load(f->path, false, err, sizeof(err), &len), 0);
    assert_int_equal(len, 32);
}

static void test_token_shorter_than_16_bytes_is_refused(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    size_t len = 0;
    write_token(f->path, "0123456789abcde\n", 0600); /* 15 bytes and a newline */
    assert_int_equal(load(f->path, false, err, sizeof(err), &len), APM_E_CONFIG);
    assert_non_null(strstr(err, f->path));
    assert_non_null(strstr(err, "15 bytes"));
    write_token(f->path, "0123456789abcdef\n", 0600);
    assert_int_equal(load(f->path, false, err, sizeof(err), &len), 0);
    assert_int_equal(len, 16);
}

static void test_token_empty_or_missing_is_refused(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    size_t len = 0;
    assert_true(load(f->path, false, err, sizeof(err), &len) < 0);
    assert_non_null(strstr(err, f->path));
    write_token(f->path, " \n", 0600);
    assert_int_equal(load(f->path, false, err, sizeof(err), &len), APM_E_CONFIG);
    assert_non_null(strstr(err, "empty"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_token_created_private_and_long, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_readable_by_others_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_shorter_than_16_bytes_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_token_empty_or_missing_is_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
