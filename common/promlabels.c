#include "common/promlabels.h"

#include <stdio.h>

static const char *const names[APM_METRIC_COUNT] = {
    [APM_METRIC_RSS] = "apm_process_rss_bytes",
    [APM_METRIC_PSS] = "apm_process_pss_bytes",
    [APM_METRIC_USS] = "apm_process_uss_bytes",
    [APM_METRIC_SWAP] = "apm_process_swap_bytes",
    [APM_METRIC_CGROUP_USAGE] = "apm_process_cgroup_usage_bytes",
    [APM_METRIC_CGROUP_LIMIT] = "apm_process_cgroup_limit_bytes",
    [APM_METRIC_MEM_AVAILABLE] = "apm_host_mem_available_bytes",
    [APM_METRIC_MEM_TOTAL] = "apm_host_mem_total_bytes",
    [APM_METRIC_TRACED] = "apm_process_traced_bytes",
};

const char *apm_prom_metric_name(enum apm_metric m)
{
    if ((int)m <= 0 || m >= APM_METRIC_COUNT)
        return NULL;
    return names[m];
}

size_t apm_prom_series_labels(struct apm_prom_label *out, enum apm_metric m, const char *host,
                              const char *process_id, const char *name, int32_t pid,
                              char pidbuf[16])
{
    const char *metric = apm_prom_metric_name(m);
    if (metric == NULL)
        return 0;
    size_t n = 0;
    /* Sorted by name: "__name__" < "host" < "name" < "pid" < "process". */
    out[n++] = (struct apm_prom_label){"__name__", metric};
    out[n++] = (struct apm_prom_label){"host", host != NULL ? host : ""};
    if (process_id == NULL || process_id[0] == '\0' || apm_metric_is_host(m))
        return n;
    snprintf(pidbuf, 16, "%d", (int)pid);
    if (name != NULL && name[0] != '\0') /* an empty value is no label to Prometheus */
        out[n++] = (struct apm_prom_label){"name", name};
    out[n++] = (struct apm_prom_label){"pid", pidbuf};
    out[n++] = (struct apm_prom_label){"process", process_id};
    return n;
}
