#include "common/base/hashmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"

struct apm_hashmap_slot {
    uint8_t *key; /* NULL = empty */
    size_t klen;
    uint64_t hash;
    uint64_t value;
};

static uint64_t mix(uint64_t h)
{
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return h;
}

uint64_t apm_hash_bytes(const void *data, size_t len)
{
    /* Eight bytes a step: keys here are ids and paths tens of bytes long. */
    const uint8_t *p = data;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (uint64_t)len;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ mix(w)) * 0x94d049bb133111ebull;
        p += 8;
        len -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, len);
    h = (h ^ mix(w ^ 0xff51afd7ed558ccdull)) * 0x94d049bb133111ebull;
    return mix(h);
}

void apm_hashmap_init(struct apm_hashmap *m)
{
    memset(m, 0, sizeof(*m));
}

void apm_hashmap_close(struct apm_hashmap *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i].key);
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

static struct apm_hashmap_slot *find(const struct apm_hashmap *m, const void *key, size_t klen,
                                     uint64_t h)
{
    if (m->cap == 0)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct apm_hashmap_slot *s = &m->slots[i];
        if (s->key == NULL)
            return s;
        if (s->hash == h && s->klen == klen && memcmp(s->key, key, klen) == 0)
            return s;
    }
}

static int grow(struct apm_hashmap *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 16;
    struct apm_hashmap_slot *ns = calloc(ncap, sizeof(*ns));
    if (ns == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        struct apm_hashmap_slot *s = &m->slots[i];
        if (s->key == NULL)
            continue;
        size_t j = s->hash & (ncap - 1);
        while (ns[j].key != NULL)
            j = (j + 1) & (ncap - 1);
        ns[j] = *s;
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return 0;
}

int apm_hashmap_get(const struct apm_hashmap *m, const void *key, size_t klen, uint64_t *value)
{
    struct apm_hashmap_slot *s = find(m, key, klen, apm_hash_bytes(key, klen));
    if (s == NULL || s->key == NULL)
        return APM_E_NOTFOUND;
    *value = s->value;
    return 0;
}

int apm_hashmap_put(struct apm_hashmap *m, const void *key, size_t klen, uint64_t value)
{
    uint64_t h = apm_hash_bytes(key, klen);
    struct apm_hashmap_slot *s = find(m, key, klen, h);
    if (s != NULL && s->key != NULL) {
        s->value = value;
        return 0;
    }
    /* Keep the load factor under 0.7 so probes stay short. */
    if ((m->len + 1) * 10 > m->cap * 7) {
        int rc = grow(m);
        if (rc != 0)
            return rc;
        s = find(m, key, klen, h);
    }
    uint8_t *k = malloc(klen ? klen : 1);
    if (k == NULL)
        return -ENOMEM;
    memcpy(k, key, klen);
    s->key = k;
    s->klen = klen;
    s->hash = h;
    s->value = value;
    m->len++;
    return 0;
}

int apm_hashmap_del(struct apm_hashmap *m, const void *key, size_t klen)
{
    struct apm_hashmap_slot *s = find(m, key, klen, apm_hash_bytes(key, klen));
    if (s == NULL || s->key == NULL)
        return APM_E_NOTFOUND;
    free(s->key);
    s->key = NULL;
    m->len--;
    /* Backward-shift deletion keeps probe chains intact without tombstones. */
    size_t mask = m->cap - 1;
    size_t hole = (size_t)(s - m->slots);
    for (size_t i = (hole + 1) & mask; m->slots[i].key != NULL; i = (i + 1) & mask) {
        size_t home = m->slots[i].hash & mask;
        /* Move the entry into the hole if its home does not lie in (hole, i]. */
        int in_range = hole <= i ? (home > hole && home <= i) : (home > hole || home <= i);
        if (!in_range) {
            m->slots[hole] = m->slots[i];
            m->slots[i].key = NULL;
            hole = i;
        }
    }
    return 0;
}

void apm_hashmap_foreach(const struct apm_hashmap *m,
                         void (*fn)(void *ctx, const void *key, size_t klen, uint64_t value),
                         void *ctx)
{
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].key != NULL)
            fn(ctx, m->slots[i].key, m->slots[i].klen, m->slots[i].value);
    }
}
