#include "cli/commands.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/client.h"
#include "cli/format.h"
#include "cli/json.h"
#include "common/base/error.h"
#include "common/analysis/model.h"
#include "common/base/timeutil.h"
#include "common/base/units.h"

/* ---- shared ---- */

/* Handles the options every query command takes alone: --help and nothing else. */
static int no_options(const char *cmd, const char *usage, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("%s", usage);
            return -1;
        }
        fprintf(stderr, "apm-cli: %s: unexpected argument '%s' (see apm-cli %s --help)\n", cmd,
                argv[i], cmd);
        return APM_CLI_EXIT_USAGE;
    }
    return 0;
}

/* One GET on a client of its own; the answer printed with --json. Returns an exit code. */
static int query(const struct apm_cli_globals *g, const char *path, json_t **doc)
{
    struct apm_cli_client c;
    if (apm_cli_client_init(&c, g) != 0)
        return APM_CLI_EXIT_COLLECTOR;
    int rc = apm_cli_json_get(&c, path, g->json, doc);
    apm_cli_client_close(&c);
    return rc == 0 ? APM_CLI_EXIT_OK : APM_CLI_EXIT_COLLECTOR;
}

static const char *ago(double t, double now, char *buf, size_t size)
{
    char d[32];
    if (!isfinite(t) || t <= 0)
        return "-";
    apm_duration_format(now - t, d, sizeof(d));
    snprintf(buf, size, "%s ago", d);
    return buf;
}

static double now_seconds(void)
{
    return (double)apm_now_ms() / 1000.0;
}

/* ---- status ---- */

static const char status_usage[] = "usage: apm-cli status [--json]\n"
                                   "  Shows the collector's version and counters.\n";

/* Prints an object's members as "key  value" rows, nested objects as "a.b". */
static void status_rows(struct apm_cli_table *t, const char *prefix, json_t *obj)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        char name[256], value[256];
        snprintf(name, sizeof(name), "%s%s%s", prefix, prefix[0] ? "." : "", key);
        if (json_is_object(v)) {
            status_rows(t, name, v);
            continue;
        }
        if (json_is_string(v))
            snprintf(value, sizeof(value), "%s", json_string_value(v));
        else if (json_is_integer(v) && strstr(key, "bytes") != NULL)
            apm_units_bytes((double)json_integer_value(v), 0, value, sizeof(value));
        else if (json_is_integer(v))
            snprintf(value, sizeof(value), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        else if (json_is_real(v))
            snprintf(value, sizeof(value), "%.3f", json_real_value(v));
        else if (json_is_boolean(v))
            snprintf(value, sizeof(value), "%s", json_is_true(v) ? "yes" : "no");
        else if (json_is_null(v))
            snprintf(value, sizeof(value), "-");
        else
            snprintf(value, sizeof(value), "[%zu items]", json_array_size(v));
        const char *row[2] = {name, value};
        apm_cli_table_add(t, row);
    }
}

int apm_cli_cmd_status(const struct apm_cli_globals *g, int argc, char **argv)
{
    int rc = no_options("status", status_usage, argc, argv);
    if (rc != 0)
        return rc < 0 ? APM_CLI_EXIT_OK : rc;
    json_t *doc = NULL;
    if ((rc = query(g, "/api/v1/status", &doc)) != 0 || g->json) {
        json_decref(doc);
        return rc;
    }
    struct apm_cli_table t;
    apm_cli_table_init(&t, 2);
    const char *row[2] = {"collector", g->server};
    apm_cli_table_add(&t, row);
    json_t *time = json_object_get(doc, "time"), *started = json_object_get(doc, "started");
    if (json_is_number(time) && json_is_number(started)) {
        char up[32];
        apm_duration_format(json_number_value(time) - json_number_value(started), up, sizeof(up));
        const char *urow[2] = {"uptime", up};
        apm_cli_table_add(&t, urow);
        json_object_del(doc, "time");
        json_object_del(doc, "started");
    }
    status_rows(&t, "", doc);
    apm_cli_table_print(&t, stdout);
    apm_cli_table_close(&t);
    json_decref(doc);
    return APM_CLI_EXIT_OK;
}

/* ---- hosts ---- */

static const char hosts_usage[] = "usage: apm-cli hosts [--json]\n"
                                  "  Lists the hosts whose agents report to the collector.\n";

int apm_cli_cmd_hosts(const struct apm_cli_globals *g, int argc, char **argv)
{
    int rc = no_options("hosts", hosts_usage, argc, argv);
    if (rc != 0)
        return rc < 0 ? APM_CLI_EXIT_OK : rc;
    json_t *doc = NULL;
    if ((rc = query(g, "/api/v1/hosts", &doc)) != 0 || g->json) {
        json_decref(doc);
        return rc;
    }
    json_t *hosts = json_object_get(doc, "hosts");
    if (json_array_size(hosts) == 0) {
        printf("no hosts have reported yet\n");
        json_decref(doc);
        return APM_CLI_EXIT_OK;
    }
    struct apm_cli_table t;
    apm_cli_table_init(&t, 5);
    const char *head[5] = {"HOST", "AGENT", "VERSION", "PROCESSES", "LAST SEEN"};
    apm_cli_table_add(&t, head);
    double now = now_seconds();
    size_t i;
    json_t *h;
    json_array_foreach(hosts, i, h)
    {
        char procs[32], seen[48];
        snprintf(procs, sizeof(procs), "%.0f", apm_cli_json_num(h, "processes"));
        const char *row[5] = {apm_cli_json_str(h, "host", NULL),
                              apm_cli_json_str(h, "agent_id", NULL),
                              apm_cli_json_str(h, "version", NULL), procs,
                              ago(apm_cli_json_num(h, "last_seen"), now, seen, sizeof(seen))};
        apm_cli_table_add(&t, row);
    }
    apm_cli_table_print(&t, stdout);
    apm_cli_table_close(&t);
    json_decref(doc);
    return APM_CLI_EXIT_OK;
}

/* ---- processes ---- */

static const char processes_usage[] =
    "usage: apm-cli processes [--host H] [--all] [--json]\n"
    "  Lists the live processes (a sample within process-grace), of one host with\n"
    "  --host; --all lists those no longer live too.\n";

int apm_cli_cmd_processes(const struct apm_cli_globals *g, int argc, char **argv)
{
    const char *host = NULL;
    bool all = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("%s", processes_usage);
            return APM_CLI_EXIT_OK;
        }
        if (strcmp(argv[i], "--all") == 0) {
            all = true;
        } else if (strcmp(argv[i], "--host") == 0 && i + 1 < argc) {
            host = argv[++i];
        } else {
            fprintf(stderr,
                    "apm-cli: processes: unexpected argument '%s' (see apm-cli processes "
                    "--help)\n",
                    argv[i]);
            return APM_CLI_EXIT_USAGE;
        }
    }
    struct apm_cli_client c;
    if (apm_cli_client_init(&c, g) != 0)
        return APM_CLI_EXIT_COLLECTOR;
    char path[1024];
    char *esc = host != NULL ? apm_cli_client_escape(&c, host) : NULL;
    if (host != NULL && esc == NULL) {
        apm_cli_client_close(&c);
        return APM_CLI_EXIT_COLLECTOR;
    }
    snprintf(path, sizeof(path), "/api/v1/processes%s%s%s%.900s", all ? "" : "?live=true",
             host == NULL ? "" : (all ? "?" : "&"), host == NULL ? "" : "host=", esc ? esc : "");
    curl_free(esc);
    json_t *doc = NULL;
    int rc = apm_cli_json_get(&c, path, g->json, &doc);
    apm_cli_client_close(&c);
    if (rc != 0 || g->json) {
        json_decref(doc);
        return rc == 0 ? APM_CLI_EXIT_OK : APM_CLI_EXIT_COLLECTOR;
    }
    json_t *procs = json_object_get(doc, "processes");
    if (json_array_size(procs) == 0) {
        printf("no %sprocesses%s%s\n", all ? "" : "live ", host ? " on " : "", host ? host : "");
        json_decref(doc);
        return APM_CLI_EXIT_OK;
    }
    struct apm_cli_table t;
    apm_cli_table_init(&t, 6);
    const char *head[6] = {"HOST", "NAME", "PID", "LIVE", "LAST SEEN", "ID"};
    apm_cli_table_add(&t, head);
    double now = now_seconds();
    size_t i;
    json_t *p;
    json_array_foreach(procs, i, p)
    {
        char pid[32], seen[48];
        snprintf(pid, sizeof(pid), "%.0f", apm_cli_json_num(p, "pid"));
        const char *row[6] = {apm_cli_json_str(p, "host", NULL),
                              apm_cli_json_str(p, "name", NULL),
                              pid,
                              json_is_true(json_object_get(p, "live")) ? "yes" : "no",
                              ago(apm_cli_json_num(p, "last_seen"), now, seen, sizeof(seen)),
                              apm_cli_json_str(p, "id", NULL)};
        apm_cli_table_add(&t, row);
    }
    apm_cli_table_print(&t, stdout);
    apm_cli_table_close(&t);
    if (json_is_true(json_object_get(doc, "truncated")))
        printf("(more processes than one answer holds: narrow with --host)\n");
    json_decref(doc);
    return APM_CLI_EXIT_OK;
}

/* ---- series ---- */

/* Series drawn in one table: each costs a request for its samples. */
#define APM_CLI_TABLE_LIMIT "200"

static const char series_usage[] =
    "usage: apm-cli series [--host H] [--pid P] [--process NAME] [--metric M]\n"
    "                      [--window 10m] [--step S] [--cursor C] [--json]\n"
    "  Lists stored series with their last value and a sparkline of the last\n"
    "  --window of samples (a duration: 90s, 10m, 1h30m), one point per character (or per --step,\n"
    "  a duration; each point the mean of its step). Metrics: rss, pss, uss, swap,\n"
    "  cgroup_usage, cgroup_limit, mem_available, mem_total, traced, site_size,\n"
    "  site_count. Pages: --cursor C goes on after the last page's \"next\"\n"
    "  (the table prints it when more series exist).\n";

int apm_cli_series_parse(int argc, char **argv, struct apm_cli_series_opts *o, char *err,
                         size_t errlen)
{
    memset(o, 0, sizeof(*o));
    o->window_ms = APM_CLI_DEFAULT_WINDOW_MS;
    for (int i = 0; i < argc; i++) {
        const char *v = NULL;
        int m;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            o->help = true;
        } else if ((m = apm_cli_args_value(argc, argv, &i, "--host", &o->host, err, errlen))) {
            if (m < 0)
                return m;
        } else if ((m = apm_cli_args_value(argc, argv, &i, "--process", &o->process, err,
                                           errlen))) {
            if (m < 0)
                return m;
        } else if ((m = apm_cli_args_value(argc, argv, &i, "--metric", &o->metric, err, errlen))) {
            enum apm_metric metric;
            if (m < 0)
                return m;
            if (apm_metric_parse(o->metric, &metric) != 0) {
                snprintf(err, errlen, "--metric: unknown metric '%s' (see apm-cli series --help)",
                         o->metric);
                return APM_E_USAGE;
            }
        } else if ((m = apm_cli_args_value(argc, argv, &i, "--pid", &v, err, errlen))) {
            char *end = NULL;
            if (m < 0)
                return m;
            o->pid = strtol(v, &end, 10);
            if (*v == '\0' || *end != '\0' || o->pid <= 0 || o->pid > INT32_MAX) {
                snprintf(err, errlen, "--pid: expected a process id, got '%s'", v);
                return APM_E_USAGE;
            }
        } else if ((m = apm_cli_args_value(argc, argv, &i, "--step", &v, err, errlen))) {
            if (m < 0)
                return m;
            if (apm_duration_parse(v, &o->step_ms) != 0 || o->step_ms <= 0) {
                snprintf(err, errlen, "--step: expected a duration like 10s, 1m or 1h, got '%s'",
                         v);
                return APM_E_USAGE;
            }
        } else if ((m = apm_cli_args_value(argc, argv, &i, "--cursor", &o->cursor, err, errlen))) {
            char *end = NULL;
            if (m < 0)
                return m;
            unsigned long long c = strtoull(o->cursor, &end, 10);
            if (*o->cursor < '0' || *o->cursor > '9' || *end != '\0' ||
                c > (unsigned long long)INT64_MAX) {
                snprintf(err, errlen,
                         "--cursor: expected the \"next\" of a previous page, got '%s'", o->cursor);
                return APM_E_USAGE;
            }
        } else if ((m = apm_cli_args_value(argc, argv, &i, "--window", &v, err, errlen))) {
            if (m < 0)
                return m;
            if (apm_duration_parse(v, &o->window_ms) != 0 || o->window_ms <= 0) {
                snprintf(err, errlen, "--window: expected a duration like 10m, 2h or 1d, got '%s'",
                         v);
                return APM_E_USAGE;
            }
        } else {
            snprintf(err, errlen, "series: unknown argument '%s' (see apm-cli series --help)",
                     argv[i]);
            return APM_E_USAGE;
        }
    }
    return 0;
}

int64_t apm_cli_series_step(const struct apm_cli_series_opts *o)
{
    if (o->step_ms > 0)
        return o->step_ms;
    int64_t step = (o->window_ms + APM_CLI_SPARK_WIDTH - 1) / APM_CLI_SPARK_WIDTH;
    int64_t unit = step >= 3600000 ? 3600000 : step >= 60000 ? 60000 : 1;
    step = (step + unit - 1) / unit * unit;
    return step > 0 ? step : 1;
}

/* Draws the recent samples of one series; "" when it has none in the window. */
static int series_spark(const struct apm_cli_globals *g, struct apm_cli_client *c, json_t *s,
                        int64_t window_ms, int64_t step_ms, char *spark, size_t size)
{
    spark[0] = '\0';
    json_t *id = json_object_get(s, "id");
    double last = apm_cli_json_num(s, "last");
    if (!json_is_integer(id) || !isfinite(last))
        return 0;
    char path[256];
    snprintf(path, sizeof(path),
             "/api/v1/series/%" JSON_INTEGER_FORMAT "/samples?from=%.3f&to=%.3f&step=%.3f",
             json_integer_value(id), fmax(0, last - (double)window_ms / 1000.0), last,
             (double)step_ms / 1000.0);
    json_t *doc = NULL;
    (void)g;
    if (apm_cli_client_get(c, path, NULL, &doc) != 0)
        return APM_CLI_EXIT_COLLECTOR;
    json_t *samples = json_object_get(doc, "samples");
    size_t n = json_array_size(samples);
    double *v = malloc((n ? n : 1) * sizeof(*v));
    if (v != NULL) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            json_t *val = json_array_get(json_array_get(samples, i), 1);
            if (json_is_number(val))
                v[k++] = json_number_value(val);
        }
        apm_cli_sparkline(v, k, APM_CLI_SPARK_WIDTH, spark, size);
        free(v);
    }
    json_decref(doc);
    return 0;
}

static int series_table(const struct apm_cli_globals *g, struct apm_cli_client *c, json_t *doc,
                        int64_t window_ms, int64_t step_ms)
{
    json_t *list = json_object_get(doc, "series");
    if (json_array_size(list) == 0) {
        printf("no series match\n");
        return APM_CLI_EXIT_OK;
    }
    char wbuf[32], trend[48];
    apm_duration_format((double)window_ms / 1000.0, wbuf, sizeof(wbuf));
    snprintf(trend, sizeof(trend), "LAST %s", wbuf);
    struct apm_cli_table t;
    apm_cli_table_init(&t, 8);
    const char *head[8] = {"ID", "HOST", "PID", "PROCESS", "METRIC", "VALUE", "SAMPLES", trend};
    apm_cli_table_add(&t, head);
    int rc = 0;
    size_t i;
    json_t *s;
    json_array_foreach(list, i, s)
    {
        char id[32], pid[16], value[32], count[32], spark[APM_CLI_SPARK_WIDTH * 3 + 1];
        const char *metric = apm_cli_json_str(s, "metric", NULL);
        double lv = apm_cli_json_num(s, "last_value");
        snprintf(id, sizeof(id), "%.0f", apm_cli_json_num(s, "id"));
        json_t *jpid = json_object_get(s, "pid");
        if (json_is_integer(jpid))
            snprintf(pid, sizeof(pid), "%" JSON_INTEGER_FORMAT, json_integer_value(jpid));
        else
            snprintf(pid, sizeof(pid), "-");
        enum apm_metric m = APM_METRIC_NONE;
        if (metric != NULL)
            apm_metric_parse(metric, &m);
        apm_units_value(lv, apm_metric_unit(m), 0, value, sizeof(value));
        snprintf(count, sizeof(count), "%.0f", apm_cli_json_num(s, "samples"));
        rc = series_spark(g, c, s, window_ms, step_ms, spark, sizeof(spark));
        if (rc != 0)
            break;
        const char *name = apm_cli_json_str(s, "name", NULL);
        const char *row[8] = {id,     apm_cli_json_str(s, "host", NULL),
                              pid,    name ? name : "(host)",
                              metric, value,
                              count,  spark};
        apm_cli_table_add(&t, row);
    }
    if (rc == 0) {
        apm_cli_table_print(&t, stdout);
        const char *next = apm_cli_json_str(doc, "next", NULL);
        if (next != NULL)
            printf("(more series exist: the next page is --cursor %s; or narrow the query with "
                   "--host, --process or --metric)\n",
                   next);
        else if (json_is_true(json_object_get(doc, "truncated")))
            printf("(more series exist: narrow the query with --host, --process or --metric)\n");
    }
    apm_cli_table_close(&t);
    return rc;
}

int apm_cli_cmd_series(const struct apm_cli_globals *g, int argc, char **argv)
{
    struct apm_cli_series_opts o;
    char err[256];
    if (apm_cli_series_parse(argc, argv, &o, err, sizeof(err)) != 0) {
        fprintf(stderr, "apm-cli: %s\n", err);
        return APM_CLI_EXIT_USAGE;
    }
    if (o.help) {
        printf("%s", series_usage);
        return APM_CLI_EXIT_OK;
    }
    struct apm_cli_client c;
    if (apm_cli_client_init(&c, g) != 0)
        return APM_CLI_EXIT_COLLECTOR;
    char q[2048] = "/api/v1/series";
    char pid[16];
    snprintf(pid, sizeof(pid), "%ld", o.pid);
    if (apm_cli_client_add_param(&c, q, sizeof(q), "host", o.host) != 0 ||
        apm_cli_client_add_param(&c, q, sizeof(q), "process", o.process) != 0 ||
        apm_cli_client_add_param(&c, q, sizeof(q), "metric", o.metric) != 0 ||
        apm_cli_client_add_param(&c, q, sizeof(q), "pid", o.pid ? pid : NULL) != 0 ||
        apm_cli_client_add_param(&c, q, sizeof(q), "cursor", o.cursor) != 0 ||
        apm_cli_client_add_param(&c, q, sizeof(q), "limit", g->json ? NULL : APM_CLI_TABLE_LIMIT) !=
            0) {
        fprintf(stderr, "apm-cli: series: the filter values are too long\n");
        apm_cli_client_close(&c);
        return APM_CLI_EXIT_USAGE;
    }
    json_t *doc = NULL;
    int rc = APM_CLI_EXIT_COLLECTOR;
    if (apm_cli_json_get(&c, q, g->json, &doc) == 0)
        rc = g->json ? APM_CLI_EXIT_OK
                     : series_table(g, &c, doc, o.window_ms, apm_cli_series_step(&o));
    json_decref(doc);
    apm_cli_client_close(&c);
    return rc;
}
