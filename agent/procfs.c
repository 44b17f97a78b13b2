#include "agent/procfs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/base/error.h"

/* Skips blanks, then parses an unsigned decimal. Advances *p past it. */
static bool parse_u64(const char **p, const char *end, uint64_t *out)
{
    const char *s = *p;
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    if (s == end || *s < '0' || *s > '9')
        return false;
    uint64_t v = 0;
    while (s < end && *s >= '0' && *s <= '9') {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
        s++;
    }
    *p = s;
    *out = v;
    return true;
}

/* Skips blanks and one token (a signed number, a word). */
static bool skip_token(const char **p, const char *end)
{
    const char *s = *p;
    while (s < end && *s == ' ')
        s++;
    if (s == end || *s == '\n')
        return false;
    while (s < end && *s != ' ' && *s != '\n')
        s++;
    *p = s;
    return true;
}

int apm_procfs_parse_stat(const char *buf, size_t len, struct apm_procfs_stat *out)
{
    const char *end = buf + len;
    const char *open = memchr(buf, '(', len);
    const char *close = NULL;
    /* The comm may itself contain ')': the real one is the last in the line. */
    for (const char *q = end; q > buf; q--) {
        if (q[-1] == ')') {
            close = q - 1;
            break;
        }
    }
    if (open == NULL || close == NULL || close < open)
        return APM_E_PARSE;

    memset(out, 0, sizeof(*out));
    const char *p = buf;
    uint64_t v;
    if (!parse_u64(&p, open, &v) || v > INT32_MAX)
        return APM_E_PARSE;
    out->pid = (int32_t)v;
    size_t n = (size_t)(close - open - 1);
    if (n >= sizeof(out->comm))
        n = sizeof(out->comm) - 1;
    memcpy(out->comm, open + 1, n);
    out->comm[n] = '\0';

    p = close + 1;
    while (p < end && *p == ' ')
        p++;
    if (p == end)
        return APM_E_PARSE;
    out->state = *p++;
    /* Fields are numbered from 1 as in proc(5); the state was field 3. */
    for (int field = 4; field <= 24; field++) {
        switch (field) {
        case 4:
            if (!parse_u64(&p, end, &v) || v > INT32_MAX)
                return APM_E_PARSE;
            out->ppid = (int32_t)v;
            break;
        case 9:
            if (!parse_u64(&p, end, &v) || v > UINT32_MAX)
                return APM_E_PARSE;
            out->flags = (uint32_t)v;
            break;
        case 22:
            if (!parse_u64(&p, end, &out->starttime_ticks))
                return APM_E_PARSE;
            break;
        case 24:
            if (!parse_u64(&p, end, &out->rss_pages))
                return APM_E_PARSE;
            break;
        default:
            if (!skip_token(&p, end))
                return APM_E_PARSE;
        }
    }
    return 0;
}

int apm_procfs_parse_statm(const char *buf, size_t len, struct apm_procfs_statm *out)
{
    const char *p = buf, *end = buf + len;
    if (!parse_u64(&p, end, &out->size) || !parse_u64(&p, end, &out->resident) ||
        !parse_u64(&p, end, &out->shared))
        return APM_E_PARSE;
    return 0;
}

/*
 * Calls fn for each "Key: value" line whose value is a number (the unit
 * after it, if any, is left to fn's caller to know).
 */
typedef void (*kv_fn)(void *ctx, const char *key, size_t keylen, uint64_t value);

static void for_each_kv(const char *buf, size_t len, kv_fn fn, void *ctx)
{
    const char *p = buf, *end = buf + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            eol = end;
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        uint64_t v;
        const char *q = colon ? colon + 1 : NULL;
        if (colon != NULL && parse_u64(&q, eol, &v))
            fn(ctx, p, (size_t)(colon - p), v);
        p = eol + 1;
    }
}

static bool key_is(const char *key, size_t keylen, const char *want)
{
    return strlen(want) == keylen && memcmp(key, want, keylen) == 0;
}

struct rollup_ctx {
    struct apm_procfs_rollup *r;
    bool have_pss;
};

static void rollup_kv(void *ctx, const char *key, size_t keylen, uint64_t kb)
{
    struct rollup_ctx *c = ctx;
    uint64_t bytes = kb * 1024;
    if (key_is(key, keylen, "Rss")) {
        c->r->rss += bytes;
    } else if (key_is(key, keylen, "Pss")) {
        c->r->pss += bytes;
        c->have_pss = true;
    } else if (key_is(key, keylen, "Private_Clean")) {
        c->r->private_clean += bytes;
    } else if (key_is(key, keylen, "Private_Dirty")) {
        c->r->private_dirty += bytes;
    } else if (key_is(key, keylen, "Private_Hugetlb")) {
        c->r->private_hugetlb += bytes;
    } else if (key_is(key, keylen, "Swap")) {
        c->r->swap += bytes;
    }
}

int apm_procfs_parse_rollup(const char *buf, size_t len, struct apm_procfs_rollup *out)
{
    memset(out, 0, sizeof(*out));
    struct rollup_ctx c = {.r = out};
    for_each_kv(buf, len, rollup_kv, &c);
    return c.have_pss ? 0 : APM_E_PARSE;
}

struct meminfo_ctx {
    struct apm_procfs_meminfo *m;
    bool have_total;
    bool have_available;
    uint64_t free, buffers, cached;
};

static void meminfo_kv(void *ctx, const char *key, size_t keylen, uint64_t kb)
{
    struct meminfo_ctx *c = ctx;
    if (key_is(key, keylen, "MemTotal")) {
        c->m->total = kb * 1024;
        c->have_total = true;
    } else if (key_is(key, keylen, "MemAvailable")) {
        c->m->available = kb * 1024;
        c->have_available = true;
    } else if (key_is(key, keylen, "MemFree")) {
        c->free = kb * 1024;
    } else if (key_is(key, keylen, "Buffers")) {
        c->buffers = kb * 1024;
    } else if (key_is(key, keylen, "Cached")) {
        c->cached = kb * 1024;
    }
}

int apm_procfs_parse_meminfo(const char *buf, size_t len, struct apm_procfs_meminfo *out)
{
    memset(out, 0, sizeof(*out));
    struct meminfo_ctx c = {.m = out};
    for_each_kv(buf, len, meminfo_kv, &c);
    if (!c.have_total)
        return APM_E_PARSE;
    /* Kernels before 3.14 lack MemAvailable; this is what free(1) did then. */
    if (!c.have_available)
        out->available = c.free + c.buffers + c.cached;
    return 0;
}

int apm_procfs_parse_btime(const char *buf, size_t len, int64_t *btime_s)
{
    const char *p = buf, *end = buf + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            eol = end;
        if (eol - p > 6 && memcmp(p, "btime ", 6) == 0) {
            const char *q = p + 6;
            uint64_t v;
            if (!parse_u64(&q, eol, &v) || v > INT64_MAX)
                return APM_E_PARSE;
            *btime_s = (int64_t)v;
            return 0;
        }
        p = eol + 1;
    }
    return APM_E_PARSE;
}

static int read_loop(int fd, bool positional, char *buf, size_t size, size_t *len)
{
    size_t n = 0;
    if (size == 0)
        return -EINVAL;
    while (n < size - 1) {
        ssize_t r = positional ? pread(fd, buf + n, size - 1 - n, (off_t)n)
                               : read(fd, buf + n, size - 1 - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            buf[n] = '\0';
            return -errno;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        /*
         * /proc and cgroup files hand out their whole text in one read when
         * the buffer is big enough, so a short read is the end: skipping the
         * read that would return 0 saves a system call per file per tick.
         */
        if ((size_t)r < size - 1 - (n - (size_t)r))
            break;
    }
    buf[n] = '\0';
    *len = n;
    return 0;
}

int apm_procfs_read_path(const char *path, char *buf, size_t size, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = read_loop(fd, false, buf, size, len);
    close(fd);
    return rc;
}

int apm_procfs_pread(int fd, char *buf, size_t size, size_t *len)
{
    return read_loop(fd, true, buf, size, len);
}

static int pid_path(char *path, size_t size, const char *root, int32_t pid, const char *file)
{
    int n = snprintf(path, size, "%s/%d/%s", root, (int)pid, file);
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

int apm_procfs_open(const char *root, int32_t pid, const char *file)
{
    char path[PATH_MAX];
    int rc = pid_path(path, sizeof(path), root, pid, file);
    if (rc < 0)
        return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

static int read_pid_file(const char *root, int32_t pid, const char *file, char *buf, size_t size,
                         size_t *len)
{
    char path[PATH_MAX];
    int rc = pid_path(path, sizeof(path), root, pid, file);
    if (rc < 0)
        return rc;
    return apm_procfs_read_path(path, buf, size, len);
}

int apm_procfs_read_stat(const char *root, int32_t pid, struct apm_procfs_stat *out)
{
    char buf[APM_PROCFS_STAT_MAX];
    size_t len = 0;
    int rc = read_pid_file(root, pid, "stat", buf, sizeof(buf), &len);
    if (rc < 0)
        return rc;
    if (len == 0)
        return -ESRCH;
    return apm_procfs_parse_stat(buf, len, out);
}

int apm_procfs_read_statm_fd(int fd, struct apm_procfs_statm *out)
{
    char buf[128];
    size_t len = 0;
    int rc = apm_procfs_pread(fd, buf, sizeof(buf), &len);
    if (rc < 0)
        return rc;
    if (len == 0)
        return -ESRCH;
    return apm_procfs_parse_statm(buf, len, out);
}

int apm_procfs_read_statm(const char *root, int32_t pid, struct apm_procfs_statm *out)
{
    char buf[128];
    size_t len = 0;
    int rc = read_pid_file(root, pid, "statm", buf, sizeof(buf), &len);
    if (rc < 0)
        return rc;
    if (len == 0)
        return -ESRCH;
    return apm_procfs_parse_statm(buf, len, out);
}

int apm_procfs_read_rollup(const char *root, int32_t pid, struct apm_procfs_rollup *out)
{
    /* smaps_rollup is about 1 KiB; a larger buffer also takes a short smaps. */
    char buf[4096];
    size_t len = 0;
    int rc = read_pid_file(root, pid, "smaps_rollup", buf, sizeof(buf), &len);
    if (rc < 0)
        return rc;
    if (len == 0)
        return -ESRCH;
    return apm_procfs_parse_rollup(buf, len, out);
}

int apm_procfs_read_cmdline(const char *root, int32_t pid, char *buf, size_t size, size_t *len)
{
    return read_pid_file(root, pid, "cmdline", buf, size, len);
}

int apm_procfs_read_comm(const char *root, int32_t pid, char *buf, size_t size)
{
    size_t len = 0;
    int rc = read_pid_file(root, pid, "comm", buf, size, &len);
    if (rc < 0)
        return rc;
    if (len == 0)
        return -ESRCH;
    if (buf[len - 1] == '\n')
        buf[len - 1] = '\0';
    return 0;
}

int apm_procfs_read_cgroup(const char *root, int32_t pid, char *buf, size_t size, size_t *len)
{
    return read_pid_file(root, pid, "cgroup", buf, size, len);
}

int apm_procfs_read_meminfo(const char *root, struct apm_procfs_meminfo *out)
{
    char path[PATH_MAX];
    char buf[8192];
    size_t len = 0;
    int n = snprintf(path, sizeof(path), "%s/meminfo", root);
    if (n < 0 || (size_t)n >= sizeof(path))
        return -ENAMETOOLONG;
    int rc = apm_procfs_read_path(path, buf, sizeof(buf), &len);
    if (rc < 0)
        return rc;
    return apm_procfs_parse_meminfo(buf, len, out);
}

int apm_procfs_read_btime(const char *root, int64_t *btime_s)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/stat", root);
    if (n < 0 || (size_t)n >= sizeof(path))
        return -ENAMETOOLONG;
    /*
     * Line by line: on big hosts the "intr" line before btime runs to tens of
     * kilobytes, so no fixed buffer fits the whole file.
     */
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return -errno;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = APM_E_PARSE;
    while ((len = getline(&line, &cap, f)) >= 0) {
        if (len > 6 && memcmp(line, "btime ", 6) == 0) {
            rc = apm_procfs_parse_btime(line, (size_t)len, btime_s);
            break;
        }
    }
    free(line);
    fclose(f);
    return rc;
}
