#include "cli/cmd_top.h"

#include <errno.h>
#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/format.h"
#include "cli/json.h"
#include "common/base/error.h"
#include "common/base/timeutil.h"
#include "common/base/units.h"

#define NCOLS 6

static const char usage[] =
    "usage: apm-cli top --pid P | --process NAME [--host H] [--window W] [--limit N] [--json]\n"
    "  Shows the allocation sites of a traced Python process that grew most over\n"
    "  the window (default 1h): growth, rate per hour, block count growth, size now\n"
    "  and a sparkline. Sites come from the probe's sampler (estimates, their rate\n"
    "  shown with its standard error, \"+13 GiB/h \u00b1 4 %\"), or from tracemalloc\n"
    "  while the process is traced exactly (see apm-cli trace).\n";

struct top_opts {
    struct apm_cli_target t;
    const char *window;
    long limit;
    bool help;
};

static int parse_long(const char *flag, const char *v, long lo, long hi, long *out, char *err,
                      size_t errlen)
{
    char *end = NULL;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (v[0] == '\0' || *end != '\0' || errno != 0 || n < lo || n > hi) {
        snprintf(err, errlen, "%s: '%s' is not a number from %ld to %ld", flag, v, lo, hi);
        return APM_E_USAGE;
    }
    *out = n;
    return 0;
}

static int parse(int argc, char **argv, struct top_opts *o, char *err, size_t errlen)
{
    memset(o, 0, sizeof(*o));
    o->limit = 20;
    for (int i = 0; i < argc; i++) {
        const char *v = NULL;
        int rc;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            o->help = true;
        } else if ((rc = apm_cli_args_value(argc, argv, &i, "--host", &v, err, errlen)) != 0) {
            if (rc < 0)
                return rc;
            o->t.host = v;
        } else if ((rc = apm_cli_args_value(argc, argv, &i, "--process", &v, err, errlen)) != 0) {
            if (rc < 0)
                return rc;
            o->t.process = v;
        } else if ((rc = apm_cli_args_value(argc, argv, &i, "--pid", &v, err, errlen)) != 0) {
            if (rc < 0 || (rc = parse_long("--pid", v, 1, INT32_MAX, &o->t.pid, err, errlen)) != 0)
                return rc;
        } else if ((rc = apm_cli_args_value(argc, argv, &i, "--window", &v, err, errlen)) != 0) {
            int64_t ms;
            if (rc < 0)
                return rc;
            if (apm_duration_parse(v, &ms) != 0 || ms <= 0) {
                snprintf(err, errlen, "--window: '%s' is not a duration such as 30m or 2h", v);
                return APM_E_USAGE;
            }
            o->window = v;
        } else if ((rc = apm_cli_args_value(argc, argv, &i, "--limit", &v, err, errlen)) != 0) {
            if (rc < 0 || (rc = parse_long("--limit", v, 1, 1000, &o->limit, err, errlen)) != 0)
                return rc;
        } else {
            snprintf(err, errlen, "unexpected argument '%s'", argv[i]);
            return APM_E_USAGE;
        }
    }
    if (!o->help && (o->t.process == NULL) == (o->t.pid == 0)) {
        snprintf(err, errlen, "give either --pid P or --process NAME");
        return APM_E_USAGE;
    }
    return 0;
}

int apm_cli_find_process(struct apm_cli_client *c, const struct apm_cli_target *t, char *id,
                         size_t size)
{
    char path[1024] = "/api/v1/processes";
    if (t->host != NULL) {
        char *esc = apm_cli_client_escape(c, t->host);
        if (esc == NULL)
            return APM_CLI_EXIT_COLLECTOR;
        snprintf(path, sizeof(path), "/api/v1/processes?host=%.900s", esc);
        curl_free(esc);
    }
    json_t *doc = NULL;
    if (apm_cli_client_get(c, path, NULL, &doc) != 0)
        return APM_CLI_EXIT_COLLECTOR;
    double best = -1;
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(doc, "processes"), i, p)
    {
        bool match = t->process != NULL ? strcmp(apm_cli_json_str(p, "name", ""), t->process) == 0
                                        : (long)apm_cli_json_num(p, "pid") == t->pid;
        if (match && apm_cli_json_num(p, "last_seen") > best) {
            best = apm_cli_json_num(p, "last_seen");
            snprintf(id, size, "%s", apm_cli_json_str(p, "id", ""));
        }
    }
    json_decref(doc);
    if (best < 0) {
        if (t->process != NULL)
            fprintf(stderr, "apm-cli: no process named '%s'%s%s\n", t->process,
                    t->host ? " on " : "", t->host ? t->host : "");
        else
            fprintf(stderr, "apm-cli: no process with pid %ld%s%s\n", t->pid, t->host ? " on " : "",
                    t->host ? t->host : "");
        return APM_CLI_EXIT_USAGE;
    }
    return 0;
}

static int add_row(struct apm_cli_table *t, json_t *s)
{
    char growth[32], rate[32], count[32], size[32], spark[128], est[64];
    apm_units_bytes(apm_cli_json_num(s, "size_growth"), APM_UNITS_PLUS, growth, sizeof(growth));
    double r = apm_cli_json_num(s, "rate_bytes_per_s");
    apm_units_rate(r, APM_UNITS_PLUS, rate, sizeof(rate));
    /* A sampled site is an estimate: its rate carries its standard error. */
    double err = apm_cli_json_num(s, "rate_err_bytes_per_s");
    const char *shown = rate;
    if (strcmp(apm_cli_json_str(s, "source", ""), "sampled") == 0 && r != 0) {
        snprintf(est, sizeof(est), "%s \u00b1 %.0f %%", rate,
                 fmin(999.0, fmax(1.0, 100.0 * err / fabs(r))));
        shown = est;
    }
    apm_units_value(apm_cli_json_num(s, "count_growth"), APM_UNIT_COUNT, APM_UNITS_PLUS, count,
                    sizeof(count));
    apm_units_bytes(apm_cli_json_num(s, "size"), 0, size, sizeof(size));
    double v[64];
    size_t n = 0, k;
    json_t *pt;
    json_array_foreach(json_object_get(s, "points"), k, pt)
    {
        if (n < 64)
            v[n++] = json_number_value(json_array_get(pt, 1));
    }
    if (apm_cli_sparkline(v, n, 24, spark, sizeof(spark)) == 0)
        snprintf(spark, sizeof(spark), "-");
    const char *row[NCOLS] = {apm_cli_json_str(s, "site", ""), growth, shown, count, size, spark};
    return apm_cli_table_add(t, row);
}

static int print_table(json_t *doc, const char *id)
{
    json_t *rows = json_object_get(doc, "sites");
    char w[32];
    apm_duration_format(apm_cli_json_num(doc, "window"), w, sizeof(w));
    if (json_array_size(rows) == 0) {
        apm_cli_line(stdout,
                     "%s: no allocation sites in the last %s (is the process traced? see apm-cli "
                     "trace)",
                     id, w);
        return APM_CLI_EXIT_OK;
    }
    apm_cli_line(stdout, "%s: sites that grew most in the last %s", id, w);
    struct apm_cli_table t;
    apm_cli_table_init(&t, NCOLS);
    const char *head[NCOLS] = {"SITE", "GROWTH", "RATE", "COUNT", "SIZE", "TREND"};
    int rc = apm_cli_table_add(&t, head);
    size_t i;
    json_t *s;
    json_array_foreach(rows, i, s)
    {
        if (rc == 0)
            rc = add_row(&t, s);
    }
    if (rc == 0)
        apm_cli_table_print(&t, stdout);
    apm_cli_table_close(&t);
    if (rc != 0) {
        fprintf(stderr, "apm-cli: out of memory\n");
        return APM_CLI_EXIT_COLLECTOR;
    }
    return APM_CLI_EXIT_OK;
}

int apm_cli_cmd_top(const struct apm_cli_globals *g, int argc, char **argv)
{
    struct top_opts o;
    char err[256];
    if (parse(argc, argv, &o, err, sizeof(err)) != 0) {
        fprintf(stderr, "apm-cli: top: %s (see apm-cli top --help)\n", err);
        return APM_CLI_EXIT_USAGE;
    }
    if (o.help) {
        printf("%s", usage);
        return APM_CLI_EXIT_OK;
    }
    struct apm_cli_client c;
    if (apm_cli_client_init(&c, g) != 0)
        return APM_CLI_EXIT_COLLECTOR;
    char id[400];
    int rc = apm_cli_find_process(&c, &o.t, id, sizeof(id));
    char *esc = rc == 0 ? apm_cli_client_escape(&c, id) : NULL;
    if (rc == 0 && esc == NULL)
        rc = APM_CLI_EXIT_COLLECTOR;
    json_t *doc = NULL;
    if (rc == 0) {
        int64_t ms = 3600000;
        if (o.window != NULL)
            apm_duration_parse(o.window, &ms);
        char path[1200];
        snprintf(path, sizeof(path), "/api/v1/sites?process=%.900s&window=%.3f&limit=%ld", esc,
                 (double)ms / 1000.0, o.limit);
        if (apm_cli_json_get(&c, path, g->json, &doc) != 0)
            rc = APM_CLI_EXIT_COLLECTOR;
    }
    curl_free(esc);
    apm_cli_client_close(&c);
    if (rc == 0 && !g->json)
        rc = print_table(doc, id);
    json_decref(doc);
    return rc;
}
