#include "cli/cmd_forecast.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/client.h"
#include "cli/commands.h"
#include "cli/format.h"
#include "cli/json.h"
#include "common/base/error.h"
#include "common/base/timeutil.h"
#include "common/base/units.h"

#define NCOLS 8

static const char usage[] =
    "usage: apm-cli forecast [--host H] [--process NAME | --pid P] [--json]\n"
    "  Shows each analysed process: current memory (RSS), the limit it grows\n"
    "  toward (cgroup, configured or host memory), its growth rate, the class\n"
    "  of its behaviour with the confidence (a growing process with no verdict\n"
    "  yet: its rate, how long it has grown and why no verdict), the time left\n"
    "  before it reaches the limit with the plausible range, and its top\n"
    "  growing allocation site.\n";

int apm_cli_forecast_parse(int argc, char **argv, struct apm_cli_forecast_opts *o, char *err,
                           size_t errlen)
{
    memset(o, 0, sizeof(*o));
    for (int i = 0; i < argc; i++) {
        const char *v = NULL;
        int rc;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            o->help = true;
            continue;
        }
        if ((rc = apm_cli_args_value(argc, argv, &i, "--host", &v, err, errlen)) != 0) {
            if (rc < 0)
                return rc;
            o->host = v;
        } else if ((rc = apm_cli_args_value(argc, argv, &i, "--process", &v, err, errlen)) != 0) {
            if (rc < 0)
                return rc;
            o->process = v;
        } else if ((rc = apm_cli_args_value(argc, argv, &i, "--pid", &v, err, errlen)) != 0) {
            if (rc < 0)
                return rc;
            char *end = NULL;
            errno = 0;
            long pid = strtol(v, &end, 10);
            if (v[0] == '\0' || *end != '\0' || errno != 0 || pid < 1 || pid > INT32_MAX) {
                snprintf(err, errlen, "--pid: '%s' is not a process id", v);
                return APM_E_USAGE;
            }
            o->pid = pid;
        } else {
            snprintf(err, errlen, "unexpected argument '%s'", argv[i]);
            return APM_E_USAGE;
        }
    }
    if (o->process != NULL && o->pid != 0) {
        snprintf(err, errlen, "--process and --pid select the same thing: give one");
        return APM_E_USAGE;
    }
    return 0;
}

char *apm_cli_forecast_eta(double tte, double lo, double hi, char *buf, size_t size)
{
    char a[32], b[32], c[32];
    if (!isfinite(tte)) {
        snprintf(buf, size, "-");
        return buf;
    }
    apm_duration_format(tte, a, sizeof(a));
    apm_duration_format(isfinite(lo) ? lo : tte, b, sizeof(b));
    if (isfinite(hi))
        apm_duration_format(hi, c, sizeof(c));
    else
        snprintf(c, sizeof(c), "no bound");
    snprintf(buf, size, "%s (%s - %s)", a, b, c);
    return buf;
}

/* ---- reading the answer ---- */

static void top_suspect(json_t *row, char *buf, size_t size)
{
    json_t *s = json_array_get(json_object_get(row, "suspects"), 0);
    if (s == NULL) {
        snprintf(buf, size, "-");
        return;
    }
    double rate = apm_cli_json_num(s, "rate");
    char r[32];
    if (isfinite(rate))
        snprintf(buf, size, "%s %s", apm_cli_json_str(s, "site", ""),
                 apm_units_rate(rate, APM_UNITS_PLUS, r, sizeof(r)));
    else
        snprintf(buf, size, "%s", apm_cli_json_str(s, "site", ""));
}

char *apm_cli_forecast_class(json_t *r, char *buf, size_t size)
{
    const char *alert = apm_cli_json_true(r, "alert") ? " ALERT" : "";
    const char *cls = apm_cli_json_str(r, "class", ""), *doubt = apm_cli_json_str(r, "doubt", "");
    if (strcmp(cls, "growing") != 0) {
        snprintf(buf, size, "%s (%.0f%%)%s", cls, apm_cli_json_num(r, "confidence") * 100, alert);
        return buf;
    }
    char rate[32], since[32] = "", until[48] = "", d[32];
    double now = apm_cli_json_num(r, "time"), start = apm_cli_json_num(r, "growing_since");
    double by = apm_cli_json_num(r, "verdict_by");
    apm_units_rate(apm_cli_json_num(r, "rate"), APM_UNITS_PLUS, rate, sizeof(rate));
    if (isfinite(start) && isfinite(now))
        snprintf(since, sizeof(since), " for %s",
                 apm_duration_format(fmax(0, now - start), d, sizeof(d)));
    if (doubt[0] != '\0') {
        if (isfinite(by) && isfinite(now))
            snprintf(until, sizeof(until), ", %s doubt until +%s", doubt,
                     apm_duration_format(fmax(0, by - now), d, sizeof(d)));
        else
            snprintf(until, sizeof(until), ", %s doubt", doubt);
    }
    snprintf(buf, size, "growing %s%s%s%s", rate, since, until, alert);
    return buf;
}

static int add_row(struct apm_cli_table *t, json_t *r)
{
    char proc[300], cur[32], lim[64], rate[32], cls[160], eta[96], sus[300];
    /* A process that replaced one stopped at its limit says so: the leak has been there before. */
    snprintf(proc, sizeof(proc), "%s (%.0f%s)", apm_cli_json_str(r, "name", ""),
             apm_cli_json_num(r, "pid"),
             apm_cli_json_true(r, "restarted_at_limit") ? ", restarted at limit" : "");
    apm_units_bytes(apm_cli_json_num(r, "value"), 0, cur, sizeof(cur));
    double limit = apm_cli_json_num(r, "limit");
    if (isfinite(limit)) {
        char l[32];
        apm_units_bytes(limit, 0, l, sizeof(l));
        snprintf(lim, sizeof(lim), "%s %s", l, apm_cli_json_str(r, "limit_source", ""));
    } else {
        snprintf(lim, sizeof(lim), "-");
    }
    double rt = apm_cli_json_num(r, "rate");
    if (isfinite(rt) && rt != 0)
        apm_units_rate(rt, APM_UNITS_PLUS, rate, sizeof(rate));
    else
        snprintf(rate, sizeof(rate), "-");
    apm_cli_forecast_class(r, cls, sizeof(cls));
    apm_cli_forecast_eta(apm_cli_json_num(r, "time_to_exhaustion"),
                         apm_cli_json_num(r, "time_to_exhaustion_lo"),
                         apm_cli_json_num(r, "time_to_exhaustion_hi"), eta, sizeof(eta));
    top_suspect(r, sus, sizeof(sus));
    const char *row[NCOLS] = {proc, apm_cli_json_str(r, "host", ""), cur, lim, rate, cls, eta, sus};
    return apm_cli_table_add(t, row);
}

static int print_table(json_t *doc)
{
    json_t *rows = json_object_get(doc, "forecasts");
    if (json_array_size(rows) == 0) {
        printf("no analysed process matches (analysis needs a few dozen samples per process)\n");
        return APM_CLI_EXIT_OK;
    }
    struct apm_cli_table t;
    apm_cli_table_init(&t, NCOLS);
    const char *head[NCOLS] = {
        "PROCESS",    "HOST", "CURRENT", "LIMIT", "RATE", "CLASS", "TIME TO EXHAUSTION",
        "TOP SUSPECT"};
    int rc = apm_cli_table_add(&t, head);
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r)
    {
        if (rc == 0)
            rc = add_row(&t, r);
    }
    if (rc == 0)
        apm_cli_table_print(&t, stdout);
    apm_cli_table_close(&t);
    if (rc != 0) {
        fprintf(stderr, "apm-cli: out of memory\n");
        return APM_CLI_EXIT_COLLECTOR;
    }
    if (apm_cli_json_true(doc, "truncated"))
        printf("(more rows than one answer holds: narrow with --host or --process)\n");
    return APM_CLI_EXIT_OK;
}

/* ---- the command ---- */

int apm_cli_cmd_forecast(const struct apm_cli_globals *g, int argc, char **argv)
{
    struct apm_cli_forecast_opts o;
    char err[256];
    if (apm_cli_forecast_parse(argc, argv, &o, err, sizeof(err)) != 0) {
        fprintf(stderr, "apm-cli: forecast: %s (see apm-cli forecast --help)\n", err);
        return APM_CLI_EXIT_USAGE;
    }
    if (o.help) {
        printf("%s", usage);
        return APM_CLI_EXIT_OK;
    }
    struct apm_cli_client c;
    if (apm_cli_client_init(&c, g) != 0)
        return APM_CLI_EXIT_COLLECTOR;
    char path[2048] = "/api/v1/forecasts", pid[32];
    snprintf(pid, sizeof(pid), "%ld", o.pid);
    int bad = apm_cli_client_add_param(&c, path, sizeof(path), "host", o.host) != 0 ||
              apm_cli_client_add_param(&c, path, sizeof(path), "process", o.process) != 0 ||
              apm_cli_client_add_param(&c, path, sizeof(path), "pid", o.pid ? pid : NULL) != 0;
    if (bad) {
        apm_cli_client_close(&c);
        fprintf(stderr, "apm-cli: forecast: filter too long\n");
        return APM_CLI_EXIT_USAGE;
    }
    json_t *doc = NULL;
    int rc = apm_cli_json_get(&c, path, g->json, &doc);
    apm_cli_client_close(&c);
    if (rc != 0)
        return APM_CLI_EXIT_COLLECTOR;
    rc = g->json ? APM_CLI_EXIT_OK : print_table(doc);
    json_decref(doc);
    return rc;
}
