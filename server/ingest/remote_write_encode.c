/*
 * Remote-write's encoding (remote_write_encode.h): the labels of a series,
 * the verdict gauges of a process, and the WriteRequest (protobuf-c, the
 * only user of the generated prompb code) compressed with snappy.
 */
#include "server/ingest/remote_write_encode.h"

#include <errno.h>
#include <math.h>
#include <snappy-c.h>
#include <stdlib.h>

#include "common/analysis/analysis.h"
#include "prompb.pb-c.h"

size_t apm_rw_series_labels(struct apm_rw_series *s, struct apm_prom_process_labels *pl,
                            enum apm_metric m, const char *host, const char *process_id,
                            const char *name, int32_t pid)
{
    const char *metric = apm_prom_metric_name(m);
    s->nlabels = 0;
    if (metric == NULL)
        return 0;
    s->labels[s->nlabels++] = (struct apm_prom_label){"__name__", metric};
    if (process_id == NULL || process_id[0] == '\0' || apm_metric_is_host(m)) {
        s->labels[s->nlabels++] = (struct apm_prom_label){"host", host != NULL ? host : ""};
        return s->nlabels;
    }
    size_t n = apm_prom_process_labels(pl, host, process_id, name, pid);
    for (size_t i = 0; i < n; i++)
        if (pl->l[i].value[0] != '\0')
            s->labels[s->nlabels++] = pl->l[i];
    return s->nlabels;
}

int apm_rw_encode(const struct apm_rw_series *series, size_t n, uint8_t **out, size_t *len)
{
    size_t nlabels = 0, nsamples = 0;
    for (size_t i = 0; i < n; i++) {
        nlabels += series[i].nlabels;
        nsamples += series[i].n;
    }
    Prometheus__TimeSeries *ts = calloc(n ? n : 1, sizeof(*ts));
    Prometheus__TimeSeries **tsp = calloc(n ? n : 1, sizeof(*tsp));
    Prometheus__Label *lb = calloc(nlabels ? nlabels : 1, sizeof(*lb));
    Prometheus__Label **lbp = calloc(nlabels ? nlabels : 1, sizeof(*lbp));
    Prometheus__Sample *sm = calloc(nsamples ? nsamples : 1, sizeof(*sm));
    Prometheus__Sample **smp = calloc(nsamples ? nsamples : 1, sizeof(*smp));
    uint8_t *pb = NULL, *z = NULL;
    int rc = -ENOMEM;
    if (ts == NULL || tsp == NULL || lb == NULL || lbp == NULL || sm == NULL || smp == NULL)
        goto out;
    size_t li = 0, si = 0;
    for (size_t i = 0; i < n; i++) {
        prometheus__time_series__init(&ts[i]);
        tsp[i] = &ts[i];
        ts[i].labels = &lbp[li];
        ts[i].n_labels = series[i].nlabels;
        for (size_t j = 0; j < series[i].nlabels; j++, li++) {
            prometheus__label__init(&lb[li]);
            lb[li].name = (char *)series[i].labels[j].name;
            lb[li].value = (char *)series[i].labels[j].value;
            lbp[li] = &lb[li];
        }
        ts[i].samples = &smp[si];
        ts[i].n_samples = series[i].n;
        for (size_t j = 0; j < series[i].n; j++, si++) {
            prometheus__sample__init(&sm[si]);
            sm[si].timestamp = series[i].t_ms[j];
            sm[si].value =
                series[i].fvalue != NULL ? series[i].fvalue[j] : (double)series[i].value[j];
            smp[si] = &sm[si];
        }
    }
    Prometheus__WriteRequest wr = PROMETHEUS__WRITE_REQUEST__INIT;
    wr.timeseries = tsp;
    wr.n_timeseries = n;
    size_t plen = prometheus__write_request__get_packed_size(&wr);
    pb = malloc(plen ? plen : 1);
    size_t zlen = snappy_max_compressed_length(plen);
    z = malloc(zlen);
    if (pb == NULL || z == NULL)
        goto out;
    prometheus__write_request__pack(&wr, pb);
    if (snappy_compress((const char *)pb, plen, (char *)z, &zlen) != SNAPPY_OK) {
        rc = -EINVAL;
        goto out;
    }
    *out = z;
    *len = zlen;
    z = NULL;
    rc = 0;
out:
    free(z);
    free(pb);
    free(smp);
    free(sm);
    free(lbp);
    free(lb);
    free(tsp);
    free(ts);
    return rc;
}

size_t apm_rw_verdict_series(const struct apm_verdict_record *r, double now_s,
                             struct apm_prom_process_labels *pl, struct apm_rw_series *s,
                             double *val)
{
    const struct apm_verdict *v = &r->v;
    size_t np = apm_prom_process_labels(pl, r->host, r->process_id, r->name, r->pid);
    size_t n = 0;
    /* apm_verdict_info (1, the class a label), then the families /metrics carries after it. */
    for (size_t k = 0; k < APM_RW_VERDICT_FAMILIES; k++) {
        const char *name = APM_PROM_VERDICT_INFO;
        double value = 1;
        if (k > 0) {
            name = apm_prom_verdict_families[k - 1].name;
            if (!apm_prom_verdict_value(v, now_s, k - 1, &value))
                continue;
        }
        struct apm_rw_series *g = &s[n];
        g->nlabels = 0;
        g->labels[g->nlabels++] = (struct apm_prom_label){"__name__", name};
        if (k == 0) /* "class" sorts before "host" */
            g->labels[g->nlabels++] =
                (struct apm_prom_label){"class", apm_analysis_class_name(v->cls)};
        for (size_t i = 0; i < np; i++)
            if (pl->l[i].value[0] != '\0')
                g->labels[g->nlabels++] = pl->l[i];
        val[n] = value;
        g->fvalue = &val[n];
        g->n = 1;
        n++;
    }
    return n;
}
