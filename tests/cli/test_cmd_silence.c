/* apm-cli silence: add, list and expire, their options and refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "cli/cmd_silence.h"
#include "common/base/error.h"

static int parse(struct apm_cli_silence_opts *o, char *err, int argc, char **argv)
{
    return apm_cli_silence_parse(argc, argv, "ana", o, err, 256);
}

static void test_silence_add_takes_matchers_and_options_in_any_order(void **state)
{
    (void)state;
    struct apm_cli_silence_opts o;
    char err[256] = "";
    char *argv[] = {"add",
                    "alertname=leak",
                    "--for",
                    "90m",
                    "host=~\"web-.*\"",
                    "--comment=known leak",
                    "--author",
                    "ops"};
    assert_int_equal(parse(&o, err, 8, argv), 0);
    assert_int_equal(o.action, APM_CLI_SILENCE_ADD);
    assert_int_equal(o.nmatchers, 2);
    assert_string_equal(o.matchers[0], "alertname=leak");
    assert_string_equal(o.matchers[1], "host=~\"web-.*\"");
    assert_int_equal(o.for_ms, 90 * 60000);
    assert_string_equal(o.comment, "known leak");
    assert_string_equal(o.author, "ops");

    char *plain[] = {"add", "process!=cron"};
    assert_int_equal(parse(&o, err, 2, plain), 0);
    assert_int_equal(o.for_ms, 2 * 3600000);
    assert_string_equal(o.author, "ana"); /* $USER */
    assert_string_equal(o.comment, "");
}

static void test_silence_list_and_expire(void **state)
{
    (void)state;
    struct apm_cli_silence_opts o;
    char err[256] = "";
    char *list[] = {"list"};
    assert_int_equal(parse(&o, err, 1, list), 0);
    assert_int_equal(o.action, APM_CLI_SILENCE_LIST);
    char *expire[] = {"expire", "42"};
    assert_int_equal(parse(&o, err, 2, expire), 0);
    assert_int_equal(o.action, APM_CLI_SILENCE_EXPIRE);
    assert_int_equal(o.id, 42);
    char *help[] = {"add", "--help"};
    assert_int_equal(parse(&o, err, 2, help), 0);
    assert_true(o.help);
}

static void refused(int argc, char **argv, const char *why)
{
    struct apm_cli_silence_opts o;
    char err[256] = "";
    assert_int_equal(parse(&o, err, argc, argv), APM_E_USAGE);
    if (strstr(err, why) == NULL)
        fail_msg("'%s' does not say '%s'", err, why);
}

static void test_silence_refuses_what_it_cannot_send(void **state)
{
    (void)state;
    refused(0, NULL, "add, list or expire");
    char *none[] = {"add", "--for", "1h"};
    refused(3, none, "at least one matcher");
    char *bad_for[] = {"add", "a=b", "--for", "soon"};
    refused(4, bad_for, "--for 'soon'");
    char *zero_for[] = {"add", "a=b", "--for", "0"};
    refused(4, zero_for, "--for '0'");
    char *flag[] = {"add", "a=b", "--state", "x"};
    refused(4, flag, "unexpected '--state'");
    char *no_value[] = {"add", "a=b", "--comment"};
    refused(3, no_value, "--comment");
    char *no_id[] = {"expire"};
    refused(1, no_id, "which silence");
    char *bad_id[] = {"expire", "0"};
    refused(2, bad_id, "which silence");
    char *extra[] = {"list", "all"};
    refused(2, extra, "unexpected 'all'");
    char *verb[] = {"remove", "1"};
    refused(2, verb, "unexpected 'remove'");
    char *many[20] = {"add"};
    for (int i = 1; i < 20; i++)
        many[i] = "a=b";
    refused(20, many, "at most 16 matchers");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_silence_add_takes_matchers_and_options_in_any_order),
        cmocka_unit_test(test_silence_list_and_expire),
        cmocka_unit_test(test_silence_refuses_what_it_cannot_send),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
