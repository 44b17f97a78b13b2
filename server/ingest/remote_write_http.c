/*
 * Remote-write's HTTP side (remote_write_priv.h): one POST with libcurl,
 * aborted through the progress callback when the sender stops, and the
 * retry loop around it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "common/base/error.h"
#include "common/base/log.h"
#include "common/base/timeutil.h"
#include "server/ingest/remote_write_priv.h"

bool apm_rw_stopping(struct apm_rw *rw)
{
    pthread_mutex_lock(&rw->mu);
    bool s = rw->stopping;
    pthread_mutex_unlock(&rw->mu);
    return s;
}

bool apm_rw_sleep_ms(struct apm_rw *rw, uint64_t ms)
{
    struct timespec until = apm_realtime_after_ns(ms * 1000000u);
    pthread_mutex_lock(&rw->mu);
    while (!rw->stopping && pthread_cond_timedwait(&rw->cond, &rw->mu, &until) != ETIMEDOUT) {
    }
    bool s = rw->stopping;
    pthread_mutex_unlock(&rw->mu);
    return s;
}

static size_t discard(char *p, size_t size, size_t n, void *ctx)
{
    (void)p;
    (void)ctx;
    return size * n;
}

static int on_progress(void *ctx, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt;
    (void)dn;
    (void)ut;
    (void)un;
    return apm_rw_stopping(ctx) ? 1 : 0;
}

/* One POST. Returns the HTTP status, or 0 when no answer came (errbuf says why). */
static long post(struct apm_rw *rw, const uint8_t *body, size_t len, char *errbuf)
{
    CURL *curl = curl_easy_init();
    if (curl == NULL) {
        snprintf(errbuf, CURL_ERROR_SIZE, "cannot create a curl handle");
        return 0;
    }
    errbuf[0] = '\0';
    curl_easy_setopt(curl, CURLOPT_URL, rw->url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, rw->headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)rw->opt.timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)rw->opt.timeout_ms);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, rw);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "apm-collector/" APM_VERSION);
    CURLcode rc = curl_easy_perform(curl);
    long status = 0;
    if (rc == CURLE_OK)
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    else if (errbuf[0] == '\0')
        snprintf(errbuf, CURL_ERROR_SIZE, "%s", curl_easy_strerror(rc));
    curl_easy_cleanup(curl);
    return status;
}

/* Counts one attempt's outcome. */
static void count(struct apm_rw *rw, long status, bool ok, bool refused, uint64_t n,
                  enum apm_rw_kind kind)
{
    bool gauges = kind == APM_RW_GAUGES, resend = kind == APM_RW_RESEND;
    pthread_mutex_lock(&rw->mu);
    rw->stats.last_status = (uint64_t)status;
    rw->stats.requests += ok;
    rw->stats.samples_sent += ok && !gauges ? n : 0;
    rw->stats.verdict_samples += ok && gauges ? n : 0;
    rw->stats.resent += (ok || refused) && resend;
    rw->stats.resent_rejected += refused && resend;
    rw->stats.rejected += refused && !resend;
    rw->stats.samples_rejected += refused && !resend ? n : 0;
    rw->stats.retries += !ok && !refused;
    pthread_mutex_unlock(&rw->mu);
}

int apm_rw_deliver(struct apm_rw *rw, const uint8_t *body, size_t len, uint64_t n,
                   enum apm_rw_kind kind, bool *refused)
{
    char errbuf[CURL_ERROR_SIZE];
    for (unsigned attempt = 0;; attempt++) {
        long status = post(rw, body, len, errbuf);
        bool ok = status >= 200 && status < 300;
        *refused = status >= 400 && status < 500 && status != 429;
        count(rw, status, ok, *refused, n, kind);
        if (ok)
            return 0;
        if (*refused && kind == APM_RW_RESEND) {
            /* Once per start at most: there is one pending record. */
            apm_warn("remote-write: %s refused the %" PRIu64 " samples in flight at the last "
                     "run's end, sent again alone, with HTTP %ld: taken as delivered before it "
                     "ended (resent_rejected)",
                     rw->url, n, status);
            return 0;
        }
        if (*refused) {
            apm_warn("remote-write: %s refused %" PRIu64 " samples with HTTP %ld: dropped", rw->url,
                     n, status);
            return 0;
        }
        if (apm_rw_stopping(rw))
            return APM_E_CLOSED;
        uint64_t delay = apm_backoff_ms(attempt, (uint64_t)rw->opt.backoff_min_ms,
                                        (uint64_t)rw->opt.backoff_max_ms);
        if (attempt % 10 == 0 && status != 0)
            apm_warn("remote-write: %s: HTTP %ld; retrying (attempt %u)", rw->url, status,
                     attempt + 1);
        else if (attempt % 10 == 0) /* no answer: curl says why */
            apm_warn("remote-write: %s: %s; retrying (attempt %u)", rw->url, errbuf, attempt + 1);
        if (apm_rw_sleep_ms(rw, delay))
            return APM_E_CLOSED;
    }
}
