#include "agent/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/codec.h"
#include "common/crc32c.h"
#include "common/error.h"
#include "common/log.h"
#include "common/timeutil.h"

#define STATE_MAX 256
#define PENDING_MAX (64u << 20) /* bytes queued for the thread before appends are refused */

struct seg {
    uint64_t num;
    uint64_t bytes;
    uint64_t first_seq, last_seq; /* 0, 0: no record yet */
};

struct pending {
    struct pending *next;
    uint64_t seq;
    uint32_t nsamples;
    bool in_memory;
    size_t len;
    uint8_t data[];
};

struct apm_spool {
    uv_loop_t *loop;
    char dir[4096];
    struct apm_spool_options opt;
    uint64_t instance;
    uint64_t first_seq; /* this run's lease starts here */
    uint64_t next_base; /* the next run's */
    bool discard_all;   /* the state file was bad: old segments cannot be trusted */
    uv_async_t async;
    uv_thread_t thread;
    bool thread_started;
    apm_spool_read_cb on_read;
    void *ctx;
    apm_spool_close_cb close_cb;
    void *close_ctx;
    struct apm_spool_stats *final;
    bool closing;       /* loop side */
    bool read_inflight; /* loop side */

    /* Shared, under mu. */
    uv_mutex_t mu;
    uv_cond_t cond;
    struct pending *w_head, *w_tail;
    size_t w_bytes;
    uint64_t acked;
    uint64_t mem_seq; /* every record up to it is (or was) in the uplink's memory */
    bool read_req;
    uint64_t read_after;
    size_t read_max;
    bool reply_ready;
    struct apm_spool_record *reply;
    uint64_t reply_through;
    bool reply_at_end;
    bool stop;
    bool done;
    struct apm_spool_stats stats;

    /* Spool thread only. */
    struct seg *segs;
    size_t nsegs, segs_cap;
    int cur_fd; /* the last segment, open for appends; -1 none */
    int dir_fd;
    bool dirty, dir_dirty;
    uint64_t dirty_since_ns;
    uint64_t persisted_acked;
    uint64_t last_state_ns;
    uint64_t last_seq_seen;
    uint64_t next_num;
};

/* ---- encoding of records and segments ---- */

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint32_t record_crc(const uint8_t *hdr, const uint8_t *data, size_t len)
{
    /* hdr + 8: seq and nsamples, as written. */
    return apm_crc32c(apm_crc32c(0, hdr + 8, 12), data, len);
}

size_t apm_spool_parse_segment(const uint8_t *buf, size_t len, apm_spool_rec_fn fn, void *ctx,
                               bool *bad)
{
    const size_t magic = sizeof(APM_SPOOL_MAGIC) - 1;
    *bad = false;
    if (len < magic || memcmp(buf, APM_SPOOL_MAGIC, magic) != 0) {
        *bad = len > 0;
        return 0;
    }
    size_t off = magic;
    while (off < len) {
        if (len - off < APM_SPOOL_REC_HEADER) {
            *bad = true;
            break;
        }
        const uint8_t *h = buf + off;
        uint32_t n = get_u32(h);
        if (n > APM_SPOOL_REC_MAX || n > len - off - APM_SPOOL_REC_HEADER ||
            get_u32(h + 4) != record_crc(h, h + APM_SPOOL_REC_HEADER, n)) {
            *bad = true;
            break;
        }
        if (fn != NULL)
            fn(ctx, get_u64(h + 8), get_u32(h + 16), h + APM_SPOOL_REC_HEADER, n);
        off += APM_SPOOL_REC_HEADER + n;
    }
    return off;
}

int apm_spool_encode_batch(const struct apm_batch *b, uint8_t **out, size_t *len)
{
    struct apm_codec_enc enc;
    struct apm_frame_out f;
    apm_codec_enc_init(&enc);
    int rc = apm_codec_encode_batch(&enc, b, &f);
    apm_codec_enc_close(&enc);
    if (rc != 0)
        return rc;
    /* Keep the frame as it is: the 4-byte length header costs less than a copy. */
    *out = f.buf;
    *len = f.len;
    return 0;
}

int apm_spool_decode_batch(const uint8_t *data, size_t len, struct apm_batch **out)
{
    /* The record holds the whole frame: its big-endian length must match. */
    if (len < 4 || ((uint32_t)data[0] << 24 | (uint32_t)data[1] << 16 | (uint32_t)data[2] << 8 |
                    (uint32_t)data[3]) != len - 4)
        return APM_E_DECODE;
    struct apm_codec_dec dec;
    struct apm_msg m;
    apm_codec_dec_init(&dec);
    int rc = apm_codec_decode(&dec, data + 4, len - 4, &m);
    apm_codec_dec_close(&dec);
    if (rc != 0)
        return rc;
    if (m.type != APM_MSG_BATCH) {
        apm_msg_clear(&m);
        return APM_E_DECODE;
    }
    *out = m.u.batch;
    return 0;
}

/* ---- files ---- */

static void seg_path(const struct apm_spool *s, uint64_t num, char *out, size_t size)
{
    snprintf(out, size, "%s/%020" PRIu64 ".seg", s->dir, num);
}

static int read_file(const char *path, uint8_t **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL) {
        close(fd);
        return -ENOMEM;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, buf + got, n - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    *out = buf;
    *len = got;
    return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static unsigned state_format(const struct apm_spool *s, uint64_t acked, char *buf)
{
    char body[STATE_MAX];
    int n = snprintf(body, sizeof(body),
                     "apm-spool 1 instance=%016" PRIx64 " next=%" PRIu64 " acked=%" PRIu64,
                     s->instance, s->next_base, acked);
    uint32_t crc = apm_crc32c(0, body, (size_t)n);
    return (unsigned)snprintf(buf, STATE_MAX, "%s crc=%08" PRIx32 "\n", body, crc);
}

/* Replaces the state file crash-atomically. */
static int state_write(struct apm_spool *s, uint64_t acked, int dir_fd)
{
    char path[4200], tmp[4200], buf[STATE_MAX];
    snprintf(path, sizeof(path), "%s/state", s->dir);
    snprintf(tmp, sizeof(tmp), "%s/state.tmp", s->dir);
    unsigned n = state_format(s, acked, buf);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        return -errno;
    int rc = write_all(fd, (const uint8_t *)buf, n);
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    close(fd);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc == 0 && dir_fd >= 0 && fsync(dir_fd) != 0)
        rc = -errno;
    return rc;
}

/* 1: read; 0: no state file; negative: unreadable or damaged. */
static int state_read(struct apm_spool *s, uint64_t *acked)
{
    char path[4200], buf[STATE_MAX + 1];
    snprintf(path, sizeof(path), "%s/state", s->dir);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return errno == ENOENT ? 0 : -errno;
    size_t n = fread(buf, 1, STATE_MAX, f);
    fclose(f);
    buf[n] = '\0';
    uint64_t inst = 0, next = 0, ack = 0;
    uint32_t crc = 0;
    char *c = strstr(buf, " crc=");
    if (c == NULL ||
        sscanf(buf, "apm-spool 1 instance=%16" SCNx64 " next=%" SCNu64 " acked=%" SCNu64, &inst,
               &next, &ack) != 3 ||
        sscanf(c, " crc=%8" SCNx32, &crc) != 1 || crc != apm_crc32c(0, buf, (size_t)(c - buf)) ||
        next == 0)
        return APM_E_PARSE;
    s->instance = inst;
    s->first_seq = next;
    *acked = ack;
    return 1;
}

/* ---- the spool thread ---- */

static void lock(struct apm_spool *s)
{
    uv_mutex_lock(&s->mu);
}

static void unlock(struct apm_spool *s)
{
    uv_mutex_unlock(&s->mu);
}

static int seg_add(struct apm_spool *s, const struct seg *g)
{
    if (s->nsegs == s->segs_cap) {
        size_t cap = s->segs_cap ? s->segs_cap * 2 : 16;
        struct seg *n = realloc(s->segs, cap * sizeof(*n));
        if (n == NULL)
            return -ENOMEM;
        s->segs = n;
        s->segs_cap = cap;
    }
    s->segs[s->nsegs++] = *g;
    return 0;
}

static void seg_remove_first(struct apm_spool *s)
{
    char path[4200];
    seg_path(s, s->segs[0].num, path, sizeof(path));
    if (unlink(path) != 0 && errno != ENOENT)
        apm_warn("spool: cannot delete %s: %s", path, strerror(errno));
    memmove(s->segs, s->segs + 1, (s->nsegs - 1) * sizeof(*s->segs));
    s->nsegs--;
    s->dir_dirty = true;
}

struct scan_ctx {
    struct seg *g;
    uint64_t count_after; /* count records with seq above it */
    uint64_t records, samples;
};

static void scan_rec(void *ctx, uint64_t seq, uint32_t nsamples, const uint8_t *data, size_t len)
{
    struct scan_ctx *c = ctx;
    (void)data;
    (void)len;
    if (c->g != NULL) {
        if (c->g->first_seq == 0)
            c->g->first_seq = seq;
        c->g->last_seq = seq;
    }
    if (seq > c->count_after) {
        c->records++;
        c->samples += nsamples;
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Finds the segments left by earlier runs, validates them, cuts each at its first bad record. */
static void scan(struct apm_spool *s)
{
    DIR *d = opendir(s->dir);
    if (d == NULL)
        return;
    uint64_t *nums = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l != 24 || strcmp(de->d_name + 20, ".seg") != 0 ||
            strspn(de->d_name, "0123456789") != 20)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            uint64_t *nn = realloc(nums, cap * sizeof(*nums));
            if (nn == NULL)
                break;
            nums = nn;
        }
        nums[n++] = strtoull(de->d_name, NULL, 10);
    }
    closedir(d);
    if (n > 0)
        qsort(nums, n, sizeof(*nums), cmp_u64);
    uint64_t acked;
    lock(s);
    acked = s->acked;
    unlock(s);
    uint64_t pending_records = 0, pending_samples = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4200];
        struct seg g = {.num = nums[i]};
        s->next_num = nums[i] + 1;
        seg_path(s, g.num, path, sizeof(path));
        uint8_t *buf = NULL;
        size_t len = 0;
        if (read_file(path, &buf, &len) != 0)
            continue;
        struct scan_ctx c = {.g = &g, .count_after = acked};
        bool bad = false;
        size_t valid = s->discard_all ? 0 : apm_spool_parse_segment(buf, len, scan_rec, &c, &bad);
        free(buf);
        if (s->discard_all && len > 0)
            bad = true;
        if (bad) {
            lock(s);
            s->stats.corrupt++;
            s->stats.corrupt_bytes += len - valid;
            unlock(s);
            apm_warn("spool: %s: %s at offset %zu: discarded %zu bytes from there", path,
                     s->discard_all ? "state file unusable" : "torn or bad-CRC record", valid,
                     len - valid);
            if (truncate(path, (off_t)valid) != 0)
                apm_warn("spool: cannot truncate %s: %s", path, strerror(errno));
        }
        g.bytes = valid;
        if (g.last_seq == 0 || g.last_seq <= acked) {
            if (unlink(path) != 0)
                apm_warn("spool: cannot delete %s: %s", path, strerror(errno));
            continue;
        }
        if (g.last_seq > s->last_seq_seen)
            s->last_seq_seen = g.last_seq;
        pending_records += c.records;
        pending_samples += c.samples;
        if (seg_add(s, &g) != 0)
            break;
    }
    free(nums);
    if (pending_records > 0)
        apm_info("spool: %s: %" PRIu64 " unacked batches (%" PRIu64
                 " samples) from earlier runs to replay",
                 s->dir, pending_records, pending_samples);
}

static int open_new_segment(struct apm_spool *s)
{
    char path[4200];
    struct seg g = {.num = s->next_num, .bytes = sizeof(APM_SPOOL_MAGIC) - 1};
    seg_path(s, g.num, path, sizeof(path));
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0)
        return -errno;
    int rc = write_all(fd, (const uint8_t *)APM_SPOOL_MAGIC, g.bytes);
    if (rc == 0)
        rc = seg_add(s, &g);
    if (rc != 0) {
        close(fd);
        unlink(path);
        return rc;
    }
    s->next_num++;
    s->cur_fd = fd;
    s->dir_dirty = true;
    return 0;
}

static void sync_now(struct apm_spool *s)
{
    if (s->dirty && s->cur_fd >= 0 && fdatasync(s->cur_fd) != 0)
        apm_warn("spool: fdatasync: %s", strerror(errno));
    if (s->dir_dirty && fsync(s->dir_fd) != 0)
        apm_warn("spool: fsync %s: %s", s->dir, strerror(errno));
    if (s->dirty || s->dir_dirty) {
        lock(s);
        s->stats.syncs++;
        unlock(s);
    }
    s->dirty = s->dir_dirty = false;
}

static void close_segment(struct apm_spool *s)
{
    if (s->cur_fd < 0)
        return;
    sync_now(s);
    close(s->cur_fd);
    s->cur_fd = -1;
}

static void count_dropped(struct apm_spool *s, uint64_t records, uint64_t samples, const char *why)
{
    lock(s);
    s->stats.records_dropped += records;
    s->stats.samples_dropped += samples;
    uint64_t total = s->stats.records_dropped;
    unlock(s);
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
        close_segment(s);
    int rc = 0;
    if (s->cur_fd < 0)
        rc = open_new_segment(s);
    if (rc == 0) {
        g = &s->segs[s->nsegs - 1];
        uint8_t h[APM_SPOOL_REC_HEADER];
        put_u32(h, (uint32_t)p->len);
        put_u64(h + 8, p->seq);
        put_u32(h + 16, p->nsamples);
        put_u32(h + 4, record_crc(h, p->data, p->len));
        rc = write_all(s->cur_fd, h, sizeof(h));
        if (rc == 0)
            rc = write_all(s->cur_fd, p->data, p->len);
        if (rc != 0 && ftruncate(s->cur_fd, (off_t)g->bytes) != 0)
            close_segment(s); /* a torn tail stays: the next start cuts it */
    }
    if (rc != 0) {
        lock(s);
        uint64_t errs = ++s->stats.write_errors;
        unlock(s);
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
    lock(s);
    s->stats.records_spooled++;
    s->stats.samples_spooled += p->nsamples;
    unlock(s);
}

/* Deletes acked segments, then the oldest ones while over the cap. */
static void trim(struct apm_spool *s, uint64_t acked, uint64_t mem_seq)
{
    while (s->nsegs > 1 && s->segs[0].last_seq <= acked)
        seg_remove_first(s);
    if (s->nsegs == 1 && s->cur_fd < 0 && s->segs[0].last_seq <= acked)
        seg_remove_first(s);
    uint64_t total = 0;
    for (size_t i = 0; i < s->nsegs; i++)
        total += s->segs[i].bytes;
    while (total > s->opt.max_bytes && s->nsegs > 1) {
        char path[4200];
        seg_path(s, s->segs[0].num, path, sizeof(path));
        uint8_t *buf = NULL;
        size_t len = 0;
        struct scan_ctx c = {.count_after = acked > mem_seq ? acked : mem_seq};
        if (read_file(path, &buf, &len) == 0) {
            bool bad;
            apm_spool_parse_segment(buf, len, scan_rec, &c, &bad);
            free(buf);
        }
        total -= s->segs[0].bytes;
        seg_remove_first(s);
        count_dropped(s, c.records, c.samples, "over spool-max");
    }
    lock(s);
    s->stats.bytes = total;
    s->stats.segments = s->nsegs;
    unlock(s);
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
        seg_path(s, s->segs[i].num, path, sizeof(path));
        uint8_t *buf = NULL;
        size_t len = 0;
        if (read_file(path, &buf, &len) != 0)
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
    lock(s);
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
    unlock(s);
}

static void thread_main(void *arg)
{
    struct apm_spool *s = arg;
    scan(s);
    lock(s);
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
        unlock(s);

        while (w != NULL) {
            struct pending *next = w->next;
            write_one(s, w);
            free(w);
            w = next;
        }
        uint64_t now = apm_mono_ns(), sync_ns = s->opt.sync_ms * 1000000ull;
        if ((s->dirty || s->dir_dirty) && (stop || now - s->dirty_since_ns >= sync_ns))
            sync_now(s);
        if (acked != s->persisted_acked && (stop || now - s->last_state_ns >= sync_ns)) {
            int rc = state_write(s, acked, s->dir_fd);
            if (rc != 0)
                apm_warn("spool: cannot write %s/state: %s", s->dir, apm_strerror(rc));
            else
                s->persisted_acked = acked;
            s->last_state_ns = now;
        }
        trim(s, acked, mem_seq);
        if (want_read)
            do_read(s, after > acked ? after : acked, max); /* acked records are not replayed */
        lock(s);
        if (stop && s->w_head == NULL)
            break;
    }
    s->done = true;
    uv_async_send(&s->async);
    unlock(s);
    close_segment(s);
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
    lock(s);
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
    unlock(s);
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
    int rc = state_read(s, &acked);
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
    rc = state_write(s, acked, s->dir_fd);
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
    lock(s);
    /* A disk that does not keep up must not grow the agent's memory without bound. */
    struct pending *p = s->w_bytes + len > PENDING_MAX ? NULL : malloc(sizeof(*p) + len);
    if (p == NULL || s->stop) {
        if (!in_memory) {
            s->stats.records_dropped++;
            s->stats.samples_dropped += nsamples;
        }
        unlock(s);
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
    unlock(s);
    return 0;
}

void apm_spool_ack(struct apm_spool *s, uint64_t seq)
{
    lock(s);
    if (seq > s->acked)
        s->acked = seq;
    unlock(s);
}

int apm_spool_read(struct apm_spool *s, uint64_t after, size_t max_bytes)
{
    if (s->read_inflight || s->closing)
        return APM_E_LIMIT;
    s->read_inflight = true;
    lock(s);
    s->read_req = true;
    s->read_after = after;
    s->read_max = max_bytes;
    uv_cond_signal(&s->cond);
    unlock(s);
    return 0;
}

void apm_spool_get_stats(struct apm_spool *s, struct apm_spool_stats *out)
{
    lock(s);
    *out = s->stats;
    unlock(s);
}

void apm_spool_close(struct apm_spool *s, struct apm_spool_stats *final, apm_spool_close_cb cb,
                     void *ctx)
{
    s->closing = true;
    s->final = final;
    s->close_cb = cb;
    s->close_ctx = ctx;
    lock(s);
    s->stop = true;
    uv_cond_signal(&s->cond);
    unlock(s);
}

void apm_spool_records_free(struct apm_spool_record *list)
{
    while (list != NULL) {
        struct apm_spool_record *n = list->next;
        free(list);
        list = n;
    }
}
