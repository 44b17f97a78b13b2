/*
 * Value layouts of the store's records. Numbers are in host byte order (an
 * LMDB file is not portable across byte orders anyway); strings are stored
 * with their NUL so that readers hand out pointers into the mapped page
 * without copying. Each record starts with a version byte.
 */
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"
#include "server/store/store_priv.h"

#define RECORD_VERSION 1u
#define MAX_STRING 65535u

struct packer {
    uint8_t *buf;
    size_t len;
};

struct unpacker {
    const uint8_t *buf;
    size_t len;
    size_t pos;
    bool bad;
};

static void pack(struct packer *p, const void *src, size_t n)
{
    memcpy(p->buf + p->len, src, n);
    p->len += n;
}

static void pack_u64(struct packer *p, uint64_t v)
{
    pack(p, &v, sizeof(v));
}

static void pack_i64(struct packer *p, int64_t v)
{
    pack(p, &v, sizeof(v));
}

static void pack_i32(struct packer *p, int32_t v)
{
    pack(p, &v, sizeof(v));
}

static void pack_u16(struct packer *p, size_t v)
{
    uint16_t u = (uint16_t)v;
    pack(p, &u, sizeof(u));
}

static void unpack(struct unpacker *u, void *dst, size_t n)
{
    if (u->bad || u->len - u->pos < n) {
        u->bad = true;
        memset(dst, 0, n);
        return;
    }
    memcpy(dst, u->buf + u->pos, n);
    u->pos += n;
}

static uint64_t unpack_u64(struct unpacker *u)
{
    uint64_t v;
    unpack(u, &v, sizeof(v));
    return v;
}

static int64_t unpack_i64(struct unpacker *u)
{
    int64_t v;
    unpack(u, &v, sizeof(v));
    return v;
}

static int32_t unpack_i32(struct unpacker *u)
{
    int32_t v;
    unpack(u, &v, sizeof(v));
    return v;
}

static uint16_t unpack_u16(struct unpacker *u)
{
    uint16_t v;
    unpack(u, &v, sizeof(v));
    return v;
}

static uint8_t unpack_u8(struct unpacker *u)
{
    uint8_t v;
    unpack(u, &v, sizeof(v));
    return v;
}

/* A string of len bytes followed by its NUL, pointed to in place. */
static const char *unpack_str(struct unpacker *u, size_t len)
{
    if (u->bad || u->len - u->pos < len + 1 || u->buf[u->pos + len] != '\0') {
        u->bad = true;
        return "";
    }
    const char *s = (const char *)u->buf + u->pos;
    u->pos += len + 1;
    return s;
}

static bool strings_fit(const char *const *strs, size_t n, size_t *total)
{
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(strs[i]);
        if (l > MAX_STRING)
            return false;
        *total += l + 1;
    }
    return true;
}

static void pack_strings(struct packer *p, const char *const *strs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        pack_u16(p, strlen(strs[i]));
    for (size_t i = 0; i < n; i++)
        pack(p, strs[i], strlen(strs[i]) + 1);
}

static void unpack_strings(struct unpacker *u, const char **out[], size_t n)
{
    uint16_t lens[4];
    for (size_t i = 0; i < n; i++)
        lens[i] = unpack_u16(u);
    for (size_t i = 0; i < n; i++)
        *out[i] = unpack_str(u, lens[i]);
}

/* ---- series: fields, strings, then the open chunk ---- */

uint8_t *apm_store_record_series(const struct store_series *ser, uint8_t **scratch, size_t *cap,
                                 size_t *len)
{
    /* Site series carry their site as a fourth string; other records are unchanged. */
    const char *strs[] = {ser->host, ser->process_id, ser->process_name, ser->site};
    size_t nstrs = apm_store_metric_has_site(ser->metric) ? 4 : 3;
    size_t total = 4 + 4 + 4 + 6 * 8 + 4 * 2;
    if (!strings_fit(strs, nstrs, &total))
        return NULL;
    size_t head_len = ser->head.n ? ser->head.len : 0;
    total += head_len;
    if (total > *cap) {
        size_t ncap = total < 4096 ? 4096 : total * 2;
        uint8_t *nb = realloc(*scratch, ncap);
        if (nb == NULL)
            return NULL;
        *scratch = nb;
        *cap = ncap;
    }
    struct packer p = {.buf = *scratch};
    uint8_t fixed[4] = {RECORD_VERSION, (uint8_t)ser->metric, ser->head.shift_hint, 0};
    pack(&p, fixed, sizeof(fixed));
    pack_i32(&p, ser->pid);
    pack(&p, &(uint32_t){(uint32_t)head_len}, 4);
    pack_i64(&p, ser->first_ms);
    pack_i64(&p, ser->last_ms);
    pack_i64(&p, ser->last_value);
    pack_i64(&p, ser->head.first_t);
    pack_i64(&p, ser->head.base_dt);
    pack_u64(&p, ser->nsamples);
    pack_strings(&p, strs, nstrs);
    if (head_len)
        pack(&p, ser->head.buf, head_len);
    *len = p.len;
    return p.buf;
}

int apm_store_record_parse_series(const void *buf, size_t len, uint64_t id,
                                  struct store_series_record *out)
{
    struct unpacker u = {.buf = buf, .len = len};
    memset(out, 0, sizeof(*out));
    uint8_t version = unpack_u8(&u);
    out->info.id = id;
    out->info.metric = (enum apm_metric)unpack_u8(&u);
    out->shift_hint = unpack_u8(&u);
    (void)unpack_u8(&u);
    out->info.pid = unpack_i32(&u);
    uint32_t head_len;
    unpack(&u, &head_len, sizeof(head_len));
    out->info.first_ms = unpack_i64(&u);
    out->info.last_ms = unpack_i64(&u);
    out->info.last_value = unpack_i64(&u);
    out->head_first_t = unpack_i64(&u);
    out->dt_hint = unpack_i64(&u);
    out->info.nsamples = unpack_u64(&u);
    const char **strs[] = {&out->info.host, &out->info.process_id, &out->info.process_name,
                           &out->info.site};
    out->info.site = "";
    unpack_strings(&u, strs, apm_store_metric_has_site(out->info.metric) ? 4 : 3);
    if (u.bad || version != RECORD_VERSION || u.len - u.pos != head_len)
        return APM_E_DECODE;
    out->head = u.buf + u.pos;
    out->head_len = head_len;
    return 0;
}

/* ---- hosts: seen times, process count, agent strings ---- */

uint8_t *apm_store_record_host(const struct apm_host_info *h, size_t *len)
{
    const char *strs[] = {h->agent_id, h->boot_id, h->version};
    size_t total = 1 + 3 * 8 + 3 * 2;
    if (!strings_fit(strs, 3, &total))
        return NULL;
    struct packer p = {.buf = malloc(total)};
    if (p.buf == NULL)
        return NULL;
    pack(&p, &(uint8_t){RECORD_VERSION}, 1);
    pack_i64(&p, h->first_seen_ms);
    pack_i64(&p, h->last_seen_ms);
    pack_u64(&p, h->nprocesses);
    pack_strings(&p, strs, 3);
    *len = p.len;
    return p.buf;
}

int apm_store_record_parse_host(const void *buf, size_t len, const char *host,
                                struct apm_host_info *out)
{
    struct unpacker u = {.buf = buf, .len = len};
    memset(out, 0, sizeof(*out));
    uint8_t version = unpack_u8(&u);
    out->host = host;
    out->first_seen_ms = unpack_i64(&u);
    out->last_seen_ms = unpack_i64(&u);
    out->nprocesses = unpack_u64(&u);
    const char **strs[] = {&out->agent_id, &out->boot_id, &out->version};
    unpack_strings(&u, strs, 3);
    return u.bad || version != RECORD_VERSION || u.pos != len ? APM_E_DECODE : 0;
}

/* ---- processes: identity, seen times, descriptive strings ---- */

uint8_t *apm_store_record_process(const struct apm_process_info *pr, size_t *len)
{
    const char *strs[] = {pr->host, pr->name, pr->cmdline, pr->cgroup};
    size_t total = 1 + 2 * 4 + 3 * 8 + 4 * 2;
    if (!strings_fit(strs, 4, &total))
        return NULL;
    struct packer p = {.buf = malloc(total)};
    if (p.buf == NULL)
        return NULL;
    pack(&p, &(uint8_t){RECORD_VERSION}, 1);
    pack_i32(&p, pr->pid);
    pack_i32(&p, pr->ppid);
    pack_i64(&p, pr->start_ms);
    pack_i64(&p, pr->first_seen_ms);
    pack_i64(&p, pr->last_seen_ms);
    pack_strings(&p, strs, 4);
    *len = p.len;
    return p.buf;
}

int apm_store_record_parse_process(const void *buf, size_t len, const char *id,
                                   struct apm_process_info *out)
{
    struct unpacker u = {.buf = buf, .len = len};
    memset(out, 0, sizeof(*out));
    uint8_t version = unpack_u8(&u);
    out->id = id;
    out->pid = unpack_i32(&u);
    out->ppid = unpack_i32(&u);
    out->start_ms = unpack_i64(&u);
    out->first_seen_ms = unpack_i64(&u);
    out->last_seen_ms = unpack_i64(&u);
    const char **strs[] = {&out->host, &out->name, &out->cmdline, &out->cgroup};
    unpack_strings(&u, strs, 4);
    return u.bad || version != RECORD_VERSION || u.pos != len ? APM_E_DECODE : 0;
}
