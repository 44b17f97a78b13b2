/* The one string check of everything a peer sends: UTF-8, control characters, length. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/base/text.h"

#define FFFD APM_TEXT_REPLACEMENT

static unsigned clean(const char *in, size_t len, char *out, size_t size)
{
    return apm_text_clean(out, size, in, len);
}

static void test_text_keeps_clean_utf8_unchanged(void **state)
{
    (void)state;
    const char *ok = "web-3 caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x90\x8D /srv/app.py";
    char out[128];
    assert_int_equal(clean(ok, strlen(ok), out, sizeof(out)), 0);
    assert_string_equal(out, ok);
    unsigned mask = 99;
    char *d = apm_text_dup(ok, 4096, &mask);
    assert_non_null(d);
    assert_int_equal(mask, 0);
    assert_string_equal(d, ok);
    free(d);
}

static void test_text_replaces_invalid_bytes_with_fffd(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(clean("web\xff", 4, out, sizeof(out)), APM_TEXT_FIX_UTF8);
    assert_string_equal(out, "web" FFFD);
    /* A lone continuation byte, a truncated sequence at the end. */
    assert_int_equal(clean("a\x80z\xE2\x82", 5, out, sizeof(out)), APM_TEXT_FIX_UTF8);
    assert_string_equal(out, "a" FFFD "z" FFFD);
}

static void test_text_refuses_overlong_surrogate_and_above_max(void **state)
{
    (void)state;
    char out[64];
    /* Overlong "/" (C0 AF), overlong NUL (E0 80 80), a surrogate (ED A0 80), U+110000. */
    const char *bad[] = {"\xC0\xAF", "\xE0\x80\x80", "\xED\xA0\x80", "\xF4\x90\x80\x80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(clean(bad[i], strlen(bad[i]), out, sizeof(out)), APM_TEXT_FIX_UTF8);
        assert_null(strstr(out, bad[i]));
        assert_non_null(strstr(out, FFFD));
    }
    /* The largest code point and the last before the surrogates are fine. */
    assert_int_equal(clean("\xF4\x8F\xBF\xBF\xED\x9F\xBF", 7, out, sizeof(out)), 0);
}

static void test_text_replaces_c0_del_and_c1_controls(void **state)
{
    (void)state;
    char out[64];
    /* ESC [ 2 J, a tab, a newline, DEL and U+009B (C1 CSI) in UTF-8. */
    const char *in = "x\x1b[2J\t\n\x7f\xC2\x9By";
    assert_int_equal(clean(in, strlen(in), out, sizeof(out)), APM_TEXT_FIX_CONTROL);
    assert_string_equal(out, "x" FFFD "[2J" FFFD FFFD FFFD FFFD "y");
    for (const char *p = out; *p; p++)
        assert_true((unsigned char)*p >= 0x20 && *p != 0x7f);
}

static void test_text_cuts_long_strings_at_a_character_boundary(void **state)
{
    (void)state;
    char out[6];
    /* "ab" then a 3-byte euro sign and another: 5 bytes of room keep "ab" and one euro. */
    assert_int_equal(clean("ab\xE2\x82\xAC\xE2\x82\xAC", 8, out, sizeof(out)), APM_TEXT_FIX_LENGTH);
    assert_string_equal(out, "ab\xE2\x82\xAC");
    char small[5];
    assert_int_equal(clean("ab\xE2\x82\xAC", 5, small, sizeof(small)), APM_TEXT_FIX_LENGTH);
    assert_string_equal(small, "ab");
    unsigned mask = 0;
    char *d = apm_text_dup("\x01\xff"
                           "abcdef",
                           4, &mask);
    assert_non_null(d);
    assert_int_equal(mask, APM_TEXT_FIX_CONTROL | APM_TEXT_FIX_LENGTH);
    assert_string_equal(d, FFFD);
    free(d);
}

static void test_text_fixes_count_each_reason(void **state)
{
    (void)state;
    struct apm_text_fixes f = {0};
    apm_text_fixes_add(&f, 0);
    apm_text_fixes_add(&f, APM_TEXT_FIX_UTF8 | APM_TEXT_FIX_LENGTH);
    apm_text_fixes_add(&f, APM_TEXT_FIX_CONTROL);
    assert_int_equal(f.invalid_utf8, 1);
    assert_int_equal(f.control, 1);
    assert_int_equal(f.too_long, 1);
}

static void test_text_dup_takes_null_as_empty(void **state)
{
    (void)state;
    char *d = apm_text_dup(NULL, 10, NULL);
    assert_non_null(d);
    assert_string_equal(d, "");
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_keeps_clean_utf8_unchanged),
        cmocka_unit_test(test_text_replaces_invalid_bytes_with_fffd),
        cmocka_unit_test(test_text_refuses_overlong_surrogate_and_above_max),
        cmocka_unit_test(test_text_replaces_c0_del_and_c1_controls),
        cmocka_unit_test(test_text_cuts_long_strings_at_a_character_boundary),
        cmocka_unit_test(test_text_fixes_count_each_reason),
        cmocka_unit_test(test_text_dup_takes_null_as_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
