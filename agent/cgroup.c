#include "agent/cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/procfs.h"
#include "common/base/error.h"

enum hier { HIER_V1 = 1, HIER_V2 = 2 };

/* A file kept open between ticks. fd -1: not open; absent_until: skip retries. */
struct kept_file {
    int fd;
    uint64_t absent_until;
};

/* A missing limit file is looked for again after this many ticks. */
#define ABSENT_RETRY_TICKS 64

struct apm_cgroup {
    enum hier hier;
    char *path;                /* inside the hierarchy, "/" for its root */
    char *dir;                 /* full directory path under the set's root */
    struct apm_cgroup *parent; /* referenced; NULL at the hierarchy's root */
    uint32_t refs;
    struct kept_file usage_file;
    struct kept_file limit_file;
    uint64_t usage_tick; /* tick of the cached usage, 0 = none */
    int usage_rc;
    uint64_t usage;
    uint64_t limit_tick; /* tick of the cached effective limit */
    uint64_t limit;
    bool has_limit;
};

struct apm_cgroup_set {
    enum apm_cgroup_layout layout;
    char v1_base[PATH_MAX]; /* "" when there is no v1 memory hierarchy */
    char v2_base[PATH_MAX]; /* "" when there is no unified hierarchy */
    uint32_t max_fds;
    uint32_t open_fds;
    uint64_t reads;
    struct apm_cgroup **cgs;
    uint32_t ncgs;
    uint32_t cap;
};

static bool skip_path(const char *p, size_t n)
{
    if (n == 0 || n >= APM_CGROUP_PATH_MAX || p[0] != '/')
        return true;
    /* A path with ".." would take us outside the root we were given. */
    for (size_t i = 0; i + 1 < n; i++) {
        if (p[i] == '.' && p[i + 1] == '.' && (i == 0 || p[i - 1] == '/') &&
            (i + 2 == n || p[i + 2] == '/'))
            return true;
    }
    return false;
}

static bool list_has(const char *list, size_t n, const char *word)
{
    size_t wl = strlen(word);
    const char *p = list, *end = list + n;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        if (comma == NULL)
            comma = end;
        if ((size_t)(comma - p) == wl && memcmp(p, word, wl) == 0)
            return true;
        p = comma + 1;
    }
    return false;
}

int apm_cgroup_parse(const char *buf, size_t len, struct apm_cgroup_membership *out)
{
    memset(out, 0, sizeof(*out));
    const char *p = buf, *end = buf + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            eol = end;
        if (eol == p) {
            p = eol + 1;
            continue;
        }
        /* hierarchy-id:controller-list:path */
        const char *c1 = memchr(p, ':', (size_t)(eol - p));
        const char *c2 = c1 ? memchr(c1 + 1, ':', (size_t)(eol - c1 - 1)) : NULL;
        if (c2 == NULL)
            return APM_E_PARSE;
        const char *path = c2 + 1;
        size_t plen = (size_t)(eol - path);
        bool unified = c1 - p == 1 && p[0] == '0' && c2 == c1 + 1;
        char *dst = NULL;
        if (unified && !out->has_v2) {
            dst = out->v2;
            out->has_v2 = !skip_path(path, plen);
        } else if (!unified && !out->has_v1 && list_has(c1 + 1, (size_t)(c2 - c1 - 1), "memory")) {
            dst = out->v1_memory;
            out->has_v1 = !skip_path(path, plen);
        }
        if (dst != NULL && !skip_path(path, plen)) {
            memcpy(dst, path, plen);
            dst[plen] = '\0';
        }
        p = eol + 1;
    }
    return 0;
}

static bool parse_uint(const char *buf, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; i < len && buf[i] >= '0' && buf[i] <= '9'; i++) {
        unsigned d = (unsigned)(buf[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return i > 0 && (i == len || buf[i] == '\n');
}

int apm_cgroup_parse_limit(const char *buf, size_t len, uint64_t *limit, bool *has_limit)
{
    uint64_t v;
    if (len >= 3 && memcmp(buf, "max", 3) == 0 && (len == 3 || buf[3] == '\n')) {
        *has_limit = false;
        *limit = 0;
        return 0;
    }
    if (!parse_uint(buf, len, &v))
        return APM_E_PARSE;
    *has_limit = v < APM_CGROUP_V1_UNLIMITED;
    *limit = *has_limit ? v : 0;
    return 0;
}

static bool exists(const char *dir, const char *file)
{
    char path[PATH_MAX];
    struct stat st;
    int n = snprintf(path, sizeof(path), "%s/%s", dir, file);
    return n > 0 && (size_t)n < sizeof(path) && stat(path, &st) == 0;
}

static int set_base(char *dst, const char *root, const char *sub)
{
    int n = snprintf(dst, PATH_MAX, "%s%s", root, sub);
    return n < 0 || n >= PATH_MAX ? -ENAMETOOLONG : 0;
}

int apm_cgroup_set_new(const char *root, uint32_t max_fds, struct apm_cgroup_set **out)
{
    struct apm_cgroup_set *set = calloc(1, sizeof(*set));
    if (set == NULL)
        return -ENOMEM;
    set->max_fds = max_fds;
    int rc = 0;
    if (exists(root, "cgroup.controllers")) {
        rc = set_base(set->v2_base, root, "");
    } else {
        if (exists(root, "memory/memory.usage_in_bytes"))
            rc = set_base(set->v1_base, root, "/memory");
        if (rc == 0 && exists(root, "unified/cgroup.controllers"))
            rc = set_base(set->v2_base, root, "/unified");
    }
    if (rc < 0) {
        free(set);
        return rc;
    }
    bool v1 = set->v1_base[0] != '\0', v2 = set->v2_base[0] != '\0';
    set->layout = v1 && v2 ? APM_CGROUP_LAYOUT_HYBRID
                  : v1     ? APM_CGROUP_LAYOUT_V1
                  : v2     ? APM_CGROUP_LAYOUT_V2
                           : APM_CGROUP_LAYOUT_NONE;
    *out = set;
    return 0;
}

static void close_file(struct apm_cgroup_set *set, struct kept_file *f)
{
    if (f->fd >= 0) {
        close(f->fd);
        set->open_fds--;
    }
    f->fd = -1;
}

static void cg_destroy(struct apm_cgroup_set *set, struct apm_cgroup *cg)
{
    close_file(set, &cg->usage_file);
    close_file(set, &cg->limit_file);
    free(cg->path);
    free(cg->dir);
    free(cg);
}

void apm_cgroup_set_free(struct apm_cgroup_set *set)
{
    if (set == NULL)
        return;
    /* Leaked references would be a caller bug; free what is left anyway. */
    for (uint32_t i = 0; i < set->ncgs; i++)
        cg_destroy(set, set->cgs[i]);
    free(set->cgs);
    free(set);
}

enum apm_cgroup_layout apm_cgroup_set_layout(const struct apm_cgroup_set *set)
{
    return set->layout;
}

uint64_t apm_cgroup_set_reads(const struct apm_cgroup_set *set)
{
    return set->reads;
}

uint32_t apm_cgroup_set_open_fds(const struct apm_cgroup_set *set)
{
    return set->open_fds;
}

const char *apm_cgroup_path(const struct apm_cgroup *cg)
{
    return cg->path;
}

static struct apm_cgroup *find(struct apm_cgroup_set *set, enum hier h, const char *path,
                               size_t plen)
{
    for (uint32_t i = 0; i < set->ncgs; i++) {
        struct apm_cgroup *cg = set->cgs[i];
        if (cg->hier == h && strncmp(cg->path, path, plen) == 0 && cg->path[plen] == '\0')
            return cg;
    }
    return NULL;
}

/* Finds or creates the cgroup path[0..plen) and takes a reference on it. */
static int intern(struct apm_cgroup_set *set, enum hier h, const char *path, size_t plen,
                  struct apm_cgroup **out)
{
    /* "/a/b/" and "/a/b" are one cgroup. */
    while (plen > 1 && path[plen - 1] == '/')
        plen--;
    struct apm_cgroup *cg = find(set, h, path, plen);
    if (cg != NULL) {
        cg->refs++;
        *out = cg;
        return 0;
    }
    struct apm_cgroup *parent = NULL;
    if (plen > 1) {
        size_t pl = plen;
        while (pl > 0 && path[pl - 1] != '/')
            pl--;
        int rc = intern(set, h, path, pl > 1 ? pl - 1 : 1, &parent);
        if (rc < 0)
            return rc;
    }
    if (set->ncgs == set->cap) {
        uint32_t cap = set->cap ? set->cap * 2 : 16;
        struct apm_cgroup **n = realloc(set->cgs, cap * sizeof(*n));
        if (n == NULL)
            goto oom;
        set->cgs = n;
        set->cap = cap;
    }
    cg = calloc(1, sizeof(*cg));
    if (cg == NULL)
        goto oom;
    const char *base = h == HIER_V1 ? set->v1_base : set->v2_base;
    size_t blen = strlen(base);
    cg->path = strndup(path, plen);
    cg->dir = malloc(blen + plen + 1);
    if (cg->path == NULL || cg->dir == NULL) {
        free(cg->path);
        free(cg->dir);
        free(cg);
        goto oom;
    }
    memcpy(cg->dir, base, blen);
    memcpy(cg->dir + blen, path, plen);
    cg->dir[blen + plen] = '\0';
    cg->hier = h;
    cg->parent = parent;
    cg->refs = 1;
    cg->usage_file.fd = -1;
    cg->limit_file.fd = -1;
    set->cgs[set->ncgs++] = cg;
    *out = cg;
    return 0;
oom:
    apm_cgroup_put(set, parent);
    return -ENOMEM;
}

int apm_cgroup_get(struct apm_cgroup_set *set, const struct apm_cgroup_membership *m,
                   struct apm_cgroup **out)
{
    *out = NULL;
    if (set->v1_base[0] != '\0' && m->has_v1)
        return intern(set, HIER_V1, m->v1_memory, strlen(m->v1_memory), out);
    if (set->v2_base[0] != '\0' && m->has_v2)
        return intern(set, HIER_V2, m->v2, strlen(m->v2), out);
    return APM_E_NOTFOUND;
}

void apm_cgroup_put(struct apm_cgroup_set *set, struct apm_cgroup *cg)
{
    while (cg != NULL && --cg->refs == 0) {
        struct apm_cgroup *parent = cg->parent;
        for (uint32_t i = 0; i < set->ncgs; i++) {
            if (set->cgs[i] == cg) {
                set->cgs[i] = set->cgs[--set->ncgs];
                break;
            }
        }
        cg_destroy(set, cg);
        cg = parent;
    }
}

/*
 * Reads one file of the cgroup, through the kept descriptor when there is
 * one. A read error closes the descriptor so that the next tick reopens it.
 */
static int read_file(struct apm_cgroup_set *set, struct apm_cgroup *cg, struct kept_file *f,
                     const char *name, uint64_t tick, char *buf, size_t size, size_t *len)
{
    if (f->fd < 0 && tick < f->absent_until)
        return -ENOENT;
    set->reads++;
    if (f->fd < 0) {
        char path[PATH_MAX];
        int n = snprintf(path, sizeof(path), "%s/%s", cg->dir, name);
        if (n < 0 || (size_t)n >= sizeof(path))
            return -ENAMETOOLONG;
        if (set->open_fds >= set->max_fds)
            return apm_procfs_read_path(path, buf, size, len);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            int err = -errno;
            if (err == -ENOENT)
                f->absent_until = tick + ABSENT_RETRY_TICKS;
            return err;
        }
        f->fd = fd;
        set->open_fds++;
    }
    int rc = apm_procfs_pread(f->fd, buf, size, len);
    if (rc < 0)
        close_file(set, f);
    return rc;
}

static void read_limit(struct apm_cgroup_set *set, struct apm_cgroup *cg, uint64_t tick)
{
    if (cg->limit_tick == tick)
        return;
    char buf[64];
    size_t len;
    const char *name = cg->hier == HIER_V1 ? "memory.limit_in_bytes" : "memory.max";
    uint64_t own = 0;
    bool has_own = false;
    if (read_file(set, cg, &cg->limit_file, name, tick, buf, sizeof(buf), &len) == 0)
        (void)apm_cgroup_parse_limit(buf, len, &own, &has_own);
    cg->limit = own;
    cg->has_limit = has_own;
    if (cg->parent != NULL) {
        read_limit(set, cg->parent, tick);
        if (cg->parent->has_limit && (!cg->has_limit || cg->parent->limit < cg->limit)) {
            cg->limit = cg->parent->limit;
            cg->has_limit = true;
        }
    }
    cg->limit_tick = tick;
}

int apm_cgroup_read(struct apm_cgroup_set *set, struct apm_cgroup *cg, uint64_t tick,
                    struct apm_cgroup_mem *out)
{
    if (cg->usage_tick != tick) {
        char buf[64];
        size_t len;
        const char *name = cg->hier == HIER_V1 ? "memory.usage_in_bytes" : "memory.current";
        cg->usage_rc = read_file(set, cg, &cg->usage_file, name, tick, buf, sizeof(buf), &len);
        if (cg->usage_rc == 0 && !parse_uint(buf, len, &cg->usage))
            cg->usage_rc = APM_E_PARSE;
        cg->usage_tick = tick;
    }
    if (cg->usage_rc < 0)
        return cg->usage_rc;
    read_limit(set, cg, tick);
    out->usage = cg->usage;
    out->limit = cg->limit;
    out->has_limit = cg->has_limit;
    return 0;
}
