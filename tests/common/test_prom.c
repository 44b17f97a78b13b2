/*
 * The Prometheus text writer and names: label values escaped, HELP and TYPE
 * lines, histograms cumulative with +Inf, counter names built from the
 * registry's words, process labels sorted by name.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/base/error.h"
#include "common/wire/prom.h"

/* Runs the writer into a memory stream and returns the text (owned). */
struct out {
    FILE *f;
    char *text;
    size_t len;
};

static void out_open(struct out *o)
{
    o->text = NULL;
    o->len = 0;
    o->f = open_memstream(&o->text, &o->len);
    assert_non_null(o->f);
}

static char *out_close(struct out *o)
{
    assert_int_equal(fclose(o->f), 0);
    return o->text;
}

static void test_prom_escapes_backslash_quote_and_newline_in_label_values(void **state)
{
    (void)state;
    struct out o;
    out_open(&o);
    struct apm_prom_process_labels pl;
    size_t n = apm_prom_process_labels(&pl, "h\"1", "id\\x", "a\nb", 42);
    apm_prom_sample(o.f, "apm_process_rss_bytes", pl.l, n, 1048576);
    char *text = out_close(&o);
    assert_string_equal(text, "apm_process_rss_bytes{host=\"h\\\"1\",name=\"a\\nb\",pid=\"42\","
                              "process=\"id\\\\x\"} 1048576\n");
    free(text);
}

static void test_prom_family_writes_help_and_type_with_help_escaped(void **state)
{
    (void)state;
    struct out o;
    out_open(&o);
    apm_prom_family(o.f, "apm_x", "gauge", "Line one\\two\nthree \"q\".");
    apm_prom_sample(o.f, "apm_x", NULL, 0, 0.25);
    char *text = out_close(&o);
    assert_string_equal(text, "# HELP apm_x Line one\\\\two\\nthree \"q\".\n"
                              "# TYPE apm_x gauge\n"
                              "apm_x 0.25\n");
    free(text);
}

static void test_prom_writes_special_values_as_the_format_spells_them(void **state)
{
    (void)state;
    struct out o;
    out_open(&o);
    apm_prom_sample(o.f, "a", NULL, 0, 1.0 / 0.0);
    apm_prom_sample(o.f, "a", NULL, 0, -1.0 / 0.0);
    apm_prom_sample(o.f, "a", NULL, 0, 0.0 / 0.0);
    apm_prom_sample(o.f, "a", NULL, 0, -3);
    apm_prom_sample(o.f, "a", NULL, 0, 1e300);
    apm_prom_sample(o.f, "a", NULL, 0, 0.1);
    apm_prom_sample(o.f, "a", NULL, 0, 0.1 + 0.2);
    char *text = out_close(&o);
    assert_string_equal(text,
                        "a +Inf\na -Inf\na NaN\na -3\na 1e+300\na 0.1\na 0.30000000000000004\n");
    free(text);
}

static void test_prom_histogram_is_cumulative_with_inf_sum_and_count(void **state)
{
    (void)state;
    struct apm_histogram h = {0};
    apm_histogram_observe(&h, 500);      /* 0.5 ms: first bucket */
    apm_histogram_observe(&h, 3000);     /* 3 ms: le 0.005 */
    apm_histogram_observe(&h, 3000);     /* again */
    apm_histogram_observe(&h, 60000000); /* 60 s: only +Inf */
    struct out o;
    out_open(&o);
    struct apm_prom_label l[] = {{"kind", "a"}};
    apm_prom_histogram(o.f, "apm_w_seconds", l, 1, &h);
    char *text = out_close(&o);
    assert_non_null(strstr(text, "apm_w_seconds_bucket{kind=\"a\",le=\"0.001\"} 1\n"));
    assert_non_null(strstr(text, "apm_w_seconds_bucket{kind=\"a\",le=\"0.0025\"} 1\n"));
    assert_non_null(strstr(text, "apm_w_seconds_bucket{kind=\"a\",le=\"0.005\"} 3\n"));
    assert_non_null(strstr(text, "apm_w_seconds_bucket{kind=\"a\",le=\"10\"} 3\n"));
    assert_non_null(strstr(text, "apm_w_seconds_bucket{kind=\"a\",le=\"+Inf\"} 4\n"));
    assert_non_null(strstr(text, "apm_w_seconds_sum{kind=\"a\"} 60.0065\n"));
    assert_non_null(strstr(text, "apm_w_seconds_count{kind=\"a\"} 4\n"));
    /* Every bound once, then +Inf, sum and count. */
    size_t lines = 0;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, APM_HISTOGRAM_BUCKETS + 3);
    free(text);
}

struct two {
    uint64_t a;
    uint64_t b;
};

static void test_prom_counter_names_add_unit_and_total_once(void **state)
{
    (void)state;
    static const struct apm_counter c[] = {
        APM_COUNTER(struct two, a, "samples", APM_COUNTER_TOTAL, "", "x"),
        APM_COUNTER(struct two, a, "map_size", APM_COUNTER_GAUGE, "bytes", "x"),
        APM_COUNTER(struct two, a, "rollup_bytes", APM_COUNTER_GAUGE, "bytes", "x"),
        APM_COUNTER(struct two, a, "commit", APM_COUNTER_HISTOGRAM, "seconds", "x"),
        APM_COUNTER(struct two, a, "Bad-name", APM_COUNTER_GAUGE, "", "x"),
        APM_COUNTER(struct two, a, "slice_max", APM_COUNTER_GAUGE, "microseconds", "x"),
    };
    char buf[64];
    assert_int_equal(apm_prom_counter_name(buf, sizeof(buf), "ingest", &c[0]), 0);
    assert_string_equal(buf, "apm_ingest_samples_total");
    assert_int_equal(apm_prom_counter_name(buf, sizeof(buf), "store", &c[1]), 0);
    assert_string_equal(buf, "apm_store_map_size_bytes");
    assert_int_equal(apm_prom_counter_name(buf, sizeof(buf), "store", &c[2]), 0);
    assert_string_equal(buf, "apm_store_rollup_bytes");
    assert_int_equal(apm_prom_counter_name(buf, sizeof(buf), "writer", &c[3]), 0);
    assert_string_equal(buf, "apm_writer_commit_seconds");
    assert_int_equal(apm_prom_counter_name(buf, sizeof(buf), "x", &c[4]), -EINVAL);
    assert_int_equal(apm_prom_counter_name(buf, 10, "ingest", &c[0]), APM_E_LIMIT);
    /* Base units: microseconds are exported as seconds, scaled. */
    assert_int_equal(apm_prom_counter_name(buf, sizeof(buf), "store", &c[5]), 0);
    assert_string_equal(buf, "apm_store_slice_max_seconds");
    assert_true(apm_prom_counter_scale(&c[5]) == 1e-6);
    assert_true(apm_prom_counter_scale(&c[0]) == 1);
}

static void test_prom_metric_names_cover_process_and_host_not_sites(void **state)
{
    (void)state;
    assert_string_equal(apm_prom_metric_name(APM_METRIC_RSS), "apm_process_rss_bytes");
    assert_string_equal(apm_prom_metric_name(APM_METRIC_MEM_TOTAL), "apm_host_mem_total_bytes");
    assert_null(apm_prom_metric_name(APM_METRIC_SITE_SIZE));
    assert_null(apm_prom_metric_name(APM_METRIC_NONE));
    assert_null(apm_prom_metric_name(APM_METRIC_COUNT));
    for (int m = 1; m < APM_METRIC_COUNT; m++) {
        const char *name = apm_prom_metric_name((enum apm_metric)m);
        assert_true(name == NULL || apm_prom_name_valid(name));
    }
}

static void test_prom_validates_names(void **state)
{
    (void)state;
    assert_true(apm_prom_name_valid("apm_a:b_1"));
    assert_false(apm_prom_name_valid("1abc"));
    assert_false(apm_prom_name_valid("a-b"));
    assert_false(apm_prom_name_valid(""));
    assert_true(apm_prom_label_name_valid("host"));
    assert_false(apm_prom_label_name_valid("__name__"));
    assert_false(apm_prom_label_name_valid("a:b"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prom_escapes_backslash_quote_and_newline_in_label_values),
        cmocka_unit_test(test_prom_family_writes_help_and_type_with_help_escaped),
        cmocka_unit_test(test_prom_writes_special_values_as_the_format_spells_them),
        cmocka_unit_test(test_prom_histogram_is_cumulative_with_inf_sum_and_count),
        cmocka_unit_test(test_prom_counter_names_add_unit_and_total_once),
        cmocka_unit_test(test_prom_metric_names_cover_process_and_host_not_sites),
        cmocka_unit_test(test_prom_validates_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
