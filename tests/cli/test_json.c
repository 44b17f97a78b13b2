/* The CLI's JSON reading layer: forgiving getters over the collector's answers. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/json.h"

static void test_json_getters_forgive_absent_and_mistyped_members(void **state)
{
    (void)state;
    json_t *o = json_loads("{\"s\":\"web-1\",\"i\":42,\"r\":1.5,\"n\":null,\"t\":true,\"f\":false}",
                           0, NULL);
    assert_non_null(o);
    assert_string_equal(apm_cli_json_str(o, "s", NULL), "web-1");
    assert_null(apm_cli_json_str(o, "missing", NULL));
    assert_string_equal(apm_cli_json_str(o, "i", ""), "");
    assert_string_equal(apm_cli_json_str(o, "n", "-"), "-");
    assert_float_equal(apm_cli_json_num(o, "i"), 42.0, 0);
    assert_float_equal(apm_cli_json_num(o, "r"), 1.5, 0);
    assert_true(isnan(apm_cli_json_num(o, "n")));
    assert_true(isnan(apm_cli_json_num(o, "s")));
    assert_true(isnan(apm_cli_json_num(o, "missing")));
    assert_true(apm_cli_json_true(o, "t"));
    assert_false(apm_cli_json_true(o, "f"));
    assert_false(apm_cli_json_true(o, "i"));
    assert_false(apm_cli_json_true(o, "missing"));
    /* Not an object at all (a member that is absent one level up). */
    assert_null(apm_cli_json_str(NULL, "s", NULL));
    assert_true(isnan(apm_cli_json_num(json_object_get(o, "nothing"), "r")));
    json_decref(o);
}

/* Returns what apm_cli_json_print wrote for text. */
static void printed(const char *text, char *out, size_t size)
{
    fflush(stdout);
    FILE *f = tmpfile();
    assert_non_null(f);
    int saved = dup(1);
    dup2(fileno(f), 1);
    apm_cli_json_print(text);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    rewind(f);
    size_t n = fread(out, 1, size - 1, f);
    out[n] = '\0';
    fclose(f);
}

static void test_json_print_ends_the_answer_with_one_newline(void **state)
{
    (void)state;
    char out[64];
    printed("{\"a\":1}", out, sizeof(out));
    assert_string_equal(out, "{\"a\":1}\n");
    printed("{\"a\":1}\n", out, sizeof(out));
    assert_string_equal(out, "{\"a\":1}\n");
    printed("", out, sizeof(out));
    assert_string_equal(out, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_getters_forgive_absent_and_mistyped_members),
        cmocka_unit_test(test_json_print_ends_the_answer_with_one_newline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
