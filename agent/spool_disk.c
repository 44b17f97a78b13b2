/* The spool's files: numbered segment files of records and the state file with the acked
 * cursor. Called by the spool thread (and at open, before it starts). */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/spool_priv.h"
#include "common/base/crc32c.h"
#include "common/base/error.h"
#include "common/base/log.h"
#include "common/base/timeutil.h"

#define STATE_MAX 256

void spool_seg_path(const struct apm_spool *s, uint64_t num, char *out, size_t size)
{
    snprintf(out, size, "%s/%020" PRIu64 ".seg", s->dir, num);
}

int spool_read_file(const char *path, uint8_t **out, size_t *len)
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

int spool_write_all(int fd, const uint8_t *p, size_t n)
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
int spool_state_write(struct apm_spool *s, uint64_t acked, int dir_fd)
{
    char path[4200], tmp[4200], buf[STATE_MAX];
    snprintf(path, sizeof(path), "%s/state", s->dir);
    snprintf(tmp, sizeof(tmp), "%s/state.tmp", s->dir);
    unsigned n = state_format(s, acked, buf);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        return -errno;
    int rc = spool_write_all(fd, (const uint8_t *)buf, n);
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
int spool_state_read(struct apm_spool *s, uint64_t *acked)
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

void spool_seg_remove_first(struct apm_spool *s)
{
    char path[4200];
    spool_seg_path(s, s->segs[0].num, path, sizeof(path));
    if (unlink(path) != 0 && errno != ENOENT)
        apm_warn("spool: cannot delete %s: %s", path, strerror(errno));
    memmove(s->segs, s->segs + 1, (s->nsegs - 1) * sizeof(*s->segs));
    s->nsegs--;
    s->dir_dirty = true;
}

void spool_scan_rec(void *ctx, uint64_t seq, uint32_t nsamples, const uint8_t *data, size_t len)
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
void spool_scan(struct apm_spool *s)
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
    spool_lock(s);
    acked = s->acked;
    spool_unlock(s);
    uint64_t pending_records = 0, pending_samples = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4200];
        struct seg g = {.num = nums[i]};
        s->next_num = nums[i] + 1;
        spool_seg_path(s, g.num, path, sizeof(path));
        uint8_t *buf = NULL;
        size_t len = 0;
        if (spool_read_file(path, &buf, &len) != 0)
            continue;
        struct scan_ctx c = {.g = &g, .count_after = acked};
        bool bad = false;
        size_t valid =
            s->discard_all ? 0 : apm_spool_parse_segment(buf, len, spool_scan_rec, &c, &bad);
        free(buf);
        if (s->discard_all && len > 0)
            bad = true;
        if (bad) {
            spool_lock(s);
            s->stats.corrupt++;
            s->stats.corrupt_bytes += len - valid;
            spool_unlock(s);
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

int spool_open_new_segment(struct apm_spool *s)
{
    char path[4200];
    struct seg g = {.num = s->next_num, .bytes = sizeof(APM_SPOOL_MAGIC) - 1};
    spool_seg_path(s, g.num, path, sizeof(path));
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0)
        return -errno;
    int rc = spool_write_all(fd, (const uint8_t *)APM_SPOOL_MAGIC, g.bytes);
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

void spool_sync_now(struct apm_spool *s)
{
    if (s->dirty && s->cur_fd >= 0 && fdatasync(s->cur_fd) != 0)
        apm_warn("spool: fdatasync: %s", strerror(errno));
    if (s->dir_dirty && fsync(s->dir_fd) != 0)
        apm_warn("spool: fsync %s: %s", s->dir, strerror(errno));
    if (s->dirty || s->dir_dirty) {
        spool_lock(s);
        s->stats.syncs++;
        spool_unlock(s);
    }
    s->dirty = s->dir_dirty = false;
}

void spool_close_segment(struct apm_spool *s)
{
    if (s->cur_fd < 0)
        return;
    spool_sync_now(s);
    close(s->cur_fd);
    s->cur_fd = -1;
}
