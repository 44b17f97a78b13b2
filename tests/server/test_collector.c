/*
 * The collector object in one process: it starts on loopback with port 0,
 * registers every module's counters under names a Prometheus /metrics can
 * use, and stops with every handle closed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/base/counters.h"
#include "server/collector.h"
#include "tests/tmpdir.h"

static bool metric_word(const char *s)
{
    if (s == NULL || *s == '\0')
        return false;
    for (; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    }
    return true;
}

struct seen {
    char modules[1024];
    unsigned groups;
    unsigned counters;
};

static void check_group(void *ctx, const struct apm_counter_group *g, int rc, const void *stats)
{
    struct seen *s = ctx;
    assert_int_equal(rc, 0);
    assert_non_null(stats);
    assert_true(metric_word(g->module));
    size_t n = strlen(s->modules);
    snprintf(s->modules + n, sizeof(s->modules) - n, "%s ", g->module);
    s->groups++;
    for (const struct apm_counter *c = g->counters; c->name != NULL; c++) {
        assert_true(metric_word(c->name));
        assert_true(c->unit[0] == '\0' || metric_word(c->unit));
        size_t width =
            c->kind == APM_COUNTER_HISTOGRAM ? sizeof(struct apm_histogram) : sizeof(uint64_t);
        assert_true(c->offset + width <= g->size);
        /* A sentence for the HELP line. */
        size_t hl = strlen(c->help);
        assert_true(hl > 8 && c->help[0] >= 'A' && c->help[0] <= 'Z' && c->help[hl - 1] == '.');
        for (const struct apm_counter *d = g->counters; d != c; d++)
            assert_string_not_equal(d->name, c->name);
        s->counters++;
    }
}

static void test_collector_registers_every_module_counters_with_metric_names(void **state)
{
    (void)state;
    char dir[] = "/tmp/apm-test-collector-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct apm_collector_config cfg;
    apm_collector_config_defaults(&cfg);
    snprintf(cfg.data_dir, sizeof(cfg.data_dir), "%s/data", dir);
    snprintf(cfg.listen, sizeof(cfg.listen), "127.0.0.1:0");
    snprintf(cfg.http, sizeof(cfg.http), "127.0.0.1:0");
    cfg.no_sync = true;
    char err[256] = "";
    struct apm_alert_config *alerts = NULL;
    assert_int_equal(apm_collector_config_read(&cfg, &alerts, err, sizeof(err)), 0);

    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct apm_collector *c = NULL;
    assert_int_equal(apm_collector_start(&loop, &cfg, alerts, &c), 0);
    struct seen s = {.modules = ""};
    apm_counters_walk(apm_collector_counters(c), check_group, &s);
    assert_string_equal(s.modules, "store api alerts notify ingest writer analysis http ");
    /*
     * 26 + 3 + 13 + 5 + 27 + 7 + 14 + 11 (the writer's commit and the analysis round
     * histograms among them; the store's chunks_packed; the alerts' five silence counters;
     * the analysis's skipped_at_stop):
     * status once showed 3 of the HTTP server's 8 less.
     */
    assert_int_equal(s.counters, 106);

    apm_collector_stop(c);
    uv_run(&loop, UV_RUN_DEFAULT);
    /* Closed modules leave the registry. */
    s = (struct seen){.modules = ""};
    apm_counters_walk(apm_collector_counters(c), check_group, &s);
    assert_string_equal(s.modules, "store api alerts notify analysis ");
    apm_collector_free(c);
    assert_int_equal(uv_loop_close(&loop), 0);
    apm_test_rmtree(dir);
}

/* Reads an INI holding text into a default configuration; returns what the reader returned. */
static int read_ini(const char *text, struct apm_collector_config *cfg, char *err, size_t errlen)
{
    char path[] = "/tmp/apm-test-collector-ini-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    apm_collector_config_defaults(cfg);
    snprintf(cfg->config, sizeof(cfg->config), "%s", path);
    struct apm_alert_config *alerts = NULL;
    int rc = apm_collector_config_read(cfg, &alerts, err, errlen);
    apm_alert_config_free(alerts);
    unlink(path);
    return rc;
}

static void test_collector_reads_the_startup_doubt(void **state)
{
    (void)state;
    struct apm_collector_config cfg;
    char err[256] = "";
    apm_collector_config_defaults(&cfg);
    assert_int_equal(cfg.analysis.startup_ms, 6 * 3600 * 1000);
    assert_int_equal(read_ini("[analysis]\nstartup = 30m\n", &cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg.analysis.startup_ms, 30 * 60 * 1000);
    assert_int_equal(read_ini("[analysis]\nstartup = 0\n", &cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg.analysis.startup_ms, 0);
    assert_int_not_equal(read_ini("[analysis]\nstartup = soon\n", &cfg, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "startup"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_collector_reads_the_startup_doubt),
        cmocka_unit_test(test_collector_registers_every_module_counters_with_metric_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
