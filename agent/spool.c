#include "agent/spool.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "agent/spool_priv.h"
#include "common/base/error.h"
#include "common/base/log.h"
#include "common/base/timeutil.h"

/* ---- the spool thread ---- */

static void count_dropped(struct apm_spool *s, uint64_t records, uint64_t samples, const char *why)
{
    spool_lock(s);
    s->stats.records_dropped += records;
    s->stats.samples_dropped += samples;
    uint64_t total = s->stats.records_dropped;
    spool_unlock(s);
    if (records > 0 && (total == records || total / 100 != (total - records) / 100))
        apm_warn("spool: %s: dropped %" PRIu64 " unsent batches (%" PRIu64 " so far)", why, records,
                 total);
}

static void write_one(struct apm_spool *s, struct pending *p)
{
    if (p->seq > s->last_seq_seen)
        s->last_seq_seen = p->seq;
    struct seg *g = s->nsegs ? &s->segs[s->nsegs - 1] : NULL;
    if (s->cur_fd >= 0 && g != NULL &&
        g->bytes + APM_SPOOL_REC_HEADER + p->len > s->opt.segment_bytes)
        spool_close_segment(s);
    int rc = 0;
    if (s->cur_fd < 0)
        rc = spool_open_new_segment(s);
    if (rc == 0) {
        g = &s->segs[s->nsegs - 1];
        uint8_t h[APM_SPOOL_REC_HEADER];
        apm_spool_record_header(h, p->seq, p->nsamples, p->data, p->len);
        rc = spool_write_all(s->cur_fd, h, sizeof(h));
        if (rc == 0)
            rc = spool_write_all(s->cur_fd, p->data, p->len);
        if (rc != 0 && ftruncate(s->cur_fd, (off_t)g->bytes) != 0)
            spool_close_segment(s); /* a torn tail stays: the next start cuts it */
    }
    if (rc != 0) {
        spool_lock(s);
        uint64_t errs = ++s->stats.write_errors;
        spool_unlock(s);
        if (errs == 1 || errs % 100 == 0)
            apm_warn("spool: cannot write to %s: %s (%" PRIu64 " failed writes)", s->dir,
                     apm_strerror(rc), errs);
        if (!p->in_memory)
            count_dropped(s, 1, p->nsamples, "write failed");
        return;
    }
    g->bytes += APM_SPOOL_REC_HEADER + p->len;
    if (g->first_seq == 0)
        g->first_seq = p->seq;
    g->last_seq = p->seq;
    if (!s->dirty)
        s->dirty_since_ns = apm_mono_ns();
    s->dirty = true;
    spool_lock(s);
    s->stats.records_spooled++;
    s->stats.samples_spooled += p->nsamples;
    spool_unlock(s);
}

/* Deletes acked segments, then the oldest ones while over the cap. */
static void trim(struct apm_spool *s, uint64_t acked, uint64_t mem_seq)
{
    while (s->nsegs > 1 && s->segs[0].last_seq <= acked)
        spool_seg_remove_first(s);
    if (s->nsegs == 1 && s->cur_fd < 0 && s->segs[0].last_seq <= acked)
        spool_seg_remove_first(s);
    uint64_t total = 0;
    for (size_t i = 0; i < s->nsegs; i++)
        total += s->segs[i].bytes;
    while (total > s->opt.max_bytes && s->nsegs > 1) {
        char path[4200];
        spool_seg_path(s, s->segs[0].num, path, sizeof(path));
        uint8_t *buf = NULL;
        size_t len = 0;
        struct scan_ctx c = {.count_after = acked > mem_seq ? acked : mem_seq};
        if (spool_read_file(path, &buf, &len) == 0) {
            bool bad;
            apm_spool_parse_segment(buf, len, spool_scan_rec, &c, &bad);
            free(buf);
        }
        total -= s->segs[0].bytes;
        spool_seg_remove_first(s);
        count_dropped(s, c.records, c.samples, "over spool-max");
    }
    spool_lock(s);
    s->stats.bytes = total;
    s->stats.segments = s->nsegs;
    spool_unlock(s);
}

struct read_ctx {
    uint64_t after;
    size_t max, got;
    struct apm_spool_record *head, *tail;
    uint64_t last;
    bool full;
    bool oom;
};

static void read_rec(void *ctx, uint64_t seq, uint32_t nsamples, const uint8_t *data, size_t len)
{
    struct read_ctx *r = ctx;
    if (seq <= r->after || r->full || r->oom || seq <= r->last)
        return;
    struct apm_spool_record *rec = malloc(sizeof(*rec) + len);
    if (rec == NULL) {
        r->oom = true;
        return;
    }
    rec->next = NULL;
    rec->seq = seq;
    rec->nsamples = nsamples;
    rec->len = len;
    memcpy(rec->data, data, len);
    if (r->tail)
        r->tail->next = rec;
    else
        r->head = rec;
    r->tail = rec;
    r->last = seq;
    r->got += len;
    if (r->got >= r->max)
        r->full = true;
}

static void do_read(struct apm_spool *s, uint64_t after, size_t max)
{
    struct read_ctx r = {.after = after, .max = max ? max : 1, .last = 0};
    for (size_t i = 0; i < s->nsegs && !r.full && !r.oom; i++) {
        if (s->segs[i].last_seq <= after)
            continue;
        char path[4200];
        spool_seg_path(s, s->segs[i].num, path, sizeof(path));
        uint8_t *buf = NULL;
        size_t len = 0;
        if (spool_read_file(path, &buf, &len) != 0)
            continue;
        bool bad;
        apm_spool_parse_segment(buf, len < s->segs[i].bytes ? len : s->segs[i].bytes, read_rec, &r,
                                &bad);
        free(buf);
    }
    uint64_t samples = 0, records = 0;
    for (struct apm_spool_record *p = r.head; p != NULL; p = p->next) {
        records++;
        samples += p->nsamples;
    }
    bool at_end = !r.full && !r.oom;
    uint64_t through = at_end ? s->last_seq_seen : r.last;
    if (through < after)
        through = after;
    spool_lock(s);
    s->reply = r.head;
    s->reply_through = through;
    s->reply_at_end = at_end;
    s->reply_ready = true;
    if (through > s->mem_seq)
        s->mem_seq = through;
    s->stats.records_replayed += records;
    s->stats.samples_replayed += samples;
    if (!s->done)
        uv_async_send(&s->async);
    spool_unlock(s);
}

static void thread_main(void *arg)
{
    struct apm_spool *s = arg;
    spool_scan(s);
    spool_lock(s);
    for (;;) {
        while (!s->stop && s->w_head == NULL && !(s->read_req && !s->reply_ready)) {
            uint64_t now = apm_mono_ns(), sync_ns = s->opt.sync_ms * 1000000ull;
            uint64_t due = s->dirty ? s->dirty_since_ns + sync_ns : now + sync_ns;
            if (s->acked != s->persisted_acked && s->last_state_ns + sync_ns < due)
                due = s->last_state_ns + sync_ns;
            if (due <= now)
                break;
            if (uv_cond_timedwait(&s->cond, &s->mu, due - now) != 0)
                break;
        }
        struct pending *w = s->w_head;
        s->w_head = s->w_tail = NULL;
        s->w_bytes = 0;
        uint64_t acked = s->acked, mem_seq = s->mem_seq;
        bool want_read = s->read_req && !s->reply_ready;
        uint64_t after = s->read_after;
        size_t max = s->read_max;
        if (want_read)
            s->read_req = false;
        bool stop = s->stop;
        spool_unlock(s);

        while (w != NULL) {
            struct pending *next = w->next;
            write_one(s, w);
            free(w);
            w = next;
        }
        uint64_t now = apm_mono_ns(), sync_ns = s->opt.sync_ms * 1000000ull;
        if ((s->dirty || s->dir_dirty) && (stop || now - s->dirty_since_ns >= sync_ns))
            spool_sync_now(s);
        if (acked != s->persisted_acked && (stop || now - s->last_state_ns >= sync_ns)) {
            int rc = spool_state_write(s, acked, s->dir_fd);
            if (rc != 0)
                apm_warn("spool: cannot write %s/state: %s", s->dir, apm_strerror(rc));
            else
                s->persisted_acked = acked;
            s->last_state_ns = now;
        }
        trim(s, acked, mem_seq);
        if (want_read)
            do_read(s, after > acked ? after : acked, max); /* acked records are not replayed */
        spool_lock(s);
        if (stop && s->w_head == NULL)
            break;
    }
    s->done = true;
    uv_async_send(&s->async);
    spool_unlock(s);
    spool_close_segment(s);
}

/* ---- loop side ---- */

static void on_async_closed(uv_handle_t *h)
{
    struct apm_spool *s = h->data;
    apm_spool_close_cb cb = s->close_cb;
    void *ctx = s->close_ctx;
    if (s->final != NULL)
        *s->final = s->stats;
    apm_spool_records_free(s->reply);
    while (s->w_head != NULL) {
        struct pending *p = s->w_head;
        s->w_head = p->next;
        free(p);
    }
    if (s->dir_fd >= 0)
        close(s->dir_fd);
    uv_cond_destroy(&s->cond);
    uv_mutex_destroy(&s->mu);
    free(s->segs);
    free(s);
    if (cb != NULL)
        cb(ctx);
}

static void on_async(uv_async_t *a)
{
    struct apm_spool *s = a->data;
    spool_lock(s);
    struct apm_spool_record *list = NULL;
    uint64_t through = 0;
    bool at_end = false, have = s->reply_ready, done = s->done;
    if (have) {
        list = s->reply;
        through = s->reply_through;
        at_end = s->reply_at_end;
        s->reply = NULL;
        s->reply_ready = false;
    }
    spool_unlock(s);
    if (have) {
        s->read_inflight = false;
        if (s->closing)
            apm_spool_records_free(list);
        else
            s->on_read(s->ctx, list, through, at_end);
    }
    if (done && s->thread_started) {
        uv_thread_join(&s->thread); /* it has returned from its loop: no wait to speak of */
        s->thread_started = false;
        uv_close((uv_handle_t *)&s->async, on_async_closed);
    }
}

int apm_spool_open(uv_loop_t *loop, const struct apm_spool_options *opt, apm_spool_read_cb on_read,
                   void *ctx, struct apm_spool **out, char *err, size_t errlen)
{
    struct apm_spool *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, errlen, "spool: out of memory");
        return -ENOMEM;
    }
    snprintf(s->dir, sizeof(s->dir), "%s", opt->dir);
    s->opt = *opt;
    s->opt.dir = NULL;
    if (s->opt.max_bytes == 0)
        s->opt.max_bytes = 256ull << 20;
    if (s->opt.segment_bytes == 0) {
        s->opt.segment_bytes = s->opt.max_bytes / 4;
        if (s->opt.segment_bytes > (4u << 20))
            s->opt.segment_bytes = 4u << 20;
    }
    if (s->opt.sync_ms == 0)
        s->opt.sync_ms = 1000;
    s->on_read = on_read;
    s->ctx = ctx;
    s->cur_fd = -1;
    s->dir_fd = -1;
    if (mkdir(s->dir, 0750) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "spool directory %s: %s", s->dir, strerror(errno));
        free(s);
        return -errno;
    }
    s->dir_fd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dir_fd < 0) {
        int e = -errno;
        snprintf(err, errlen, "spool directory %s: %s", s->dir, strerror(-e));
        free(s);
        return e;
    }
    uint64_t acked = 0;
    int rc = spool_state_read(s, &acked);
    if (rc <= 0) {
        if (rc < 0) {
            apm_warn("spool: %s/state: %s: starting a new instance; the old segments are "
                     "discarded and counted as corrupt",
                     s->dir, rc == APM_E_PARSE ? "damaged" : apm_strerror(rc));
            s->discard_all = true;
        }
        if (getrandom(&s->instance, sizeof(s->instance), 0) != (ssize_t)sizeof(s->instance))
            s->instance = uv_hrtime() ^ (uint64_t)getpid();
        s->first_seq = 1;
        acked = 0;
    }
    if (s->first_seq > UINT64_MAX - 2 * APM_SPOOL_LEASE) {
        /* 2^32 restarts later: a new instance starts the numbers again. */
        if (getrandom(&s->instance, sizeof(s->instance), 0) != (ssize_t)sizeof(s->instance))
            s->instance ^= uv_hrtime();
        s->first_seq = 1;
    }
    s->next_base = s->first_seq + APM_SPOOL_LEASE;
    s->acked = s->persisted_acked = acked;
    rc = spool_state_write(s, acked, s->dir_fd);
    if (rc != 0) {
        snprintf(err, errlen, "spool: cannot write %s/state: %s", s->dir, apm_strerror(rc));
        close(s->dir_fd);
        free(s);
        return rc;
    }
    s->last_state_ns = apm_mono_ns();
    uv_mutex_init(&s->mu);
    uv_cond_init(&s->cond);
    uv_async_init(loop, &s->async, on_async);
    s->async.data = s;
    s->loop = loop;
    rc = uv_thread_create(&s->thread, thread_main, s);
    if (rc != 0) {
        snprintf(err, errlen, "spool: cannot start its thread: %s", uv_strerror(rc));
        s->closing = true;
        uv_close((uv_handle_t *)&s->async, on_async_closed);
        return rc;
    }
    s->thread_started = true;
    *out = s;
    return 0;
}

uint64_t apm_spool_instance(const struct apm_spool *s)
{
    return s->instance;
}

uint64_t apm_spool_first_seq(const struct apm_spool *s)
{
    return s->first_seq;
}

int apm_spool_append(struct apm_spool *s, uint64_t seq, uint32_t nsamples, const uint8_t *data,
                     size_t len, bool in_memory)
{
    spool_lock(s);
    /* A disk that does not keep up must not grow the agent's memory without bound. */
    struct pending *p = s->w_bytes + len > PENDING_MAX ? NULL : malloc(sizeof(*p) + len);
    if (p == NULL || s->stop) {
        if (!in_memory) {
            s->stats.records_dropped++;
            s->stats.samples_dropped += nsamples;
        }
        spool_unlock(s);
        free(p);
        return -ENOMEM;
    }
    p->next = NULL;
    p->seq = seq;
    p->nsamples = nsamples;
    p->in_memory = in_memory;
    p->len = len;
    memcpy(p->data, data, len);
    if (s->w_tail)
        s->w_tail->next = p;
    else
        s->w_head = p;
    s->w_tail = p;
    s->w_bytes += len;
    if (in_memory && seq > s->mem_seq)
        s->mem_seq = seq;
    uv_cond_signal(&s->cond);
    spool_unlock(s);
    return 0;
}

void apm_spool_ack(struct apm_spool *s, uint64_t seq)
{
    spool_lock(s);
    if (seq > s->acked)
        s->acked = seq;
    spool_unlock(s);
}

int apm_spool_read(struct apm_spool *s, uint64_t after, size_t max_bytes)
{
    if (s->read_inflight || s->closing)
        return APM_E_LIMIT;
    s->read_inflight = true;
    spool_lock(s);
    s->read_req = true;
    s->read_after = after;
    s->read_max = max_bytes;
    uv_cond_signal(&s->cond);
    spool_unlock(s);
    return 0;
}

void apm_spool_get_stats(struct apm_spool *s, struct apm_spool_stats *out)
{
    spool_lock(s);
    *out = s->stats;
    spool_unlock(s);
}

void apm_spool_close(struct apm_spool *s, struct apm_spool_stats *final, apm_spool_close_cb cb,
                     void *ctx)
{
    s->closing = true;
    s->final = final;
    s->close_cb = cb;
    s->close_ctx = ctx;
    spool_lock(s);
    s->stop = true;
    uv_cond_signal(&s->cond);
    spool_unlock(s);
}

void apm_spool_records_free(struct apm_spool_record *list)
{
    while (list != NULL) {
        struct apm_spool_record *n = list->next;
        free(list);
        list = n;
    }
}
