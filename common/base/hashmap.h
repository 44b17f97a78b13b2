#ifndef APM_HASHMAP_H
#define APM_HASHMAP_H

/*
 * A hash map from byte-string keys to 64-bit values, open addressing with
 * linear probing. The map copies keys; values are plain integers (an index,
 * a reference number or a pointer cast to uintptr_t). Not thread-safe.
 */
#include <stddef.h>
#include <stdint.h>

struct apm_hashmap {
    struct apm_hashmap_slot *slots;
    size_t cap; /* power of two, 0 before first insert */
    size_t len;
};

/* Caller-owned: zero-initialise or call init; release with close. */
void apm_hashmap_init(struct apm_hashmap *m);
void apm_hashmap_close(struct apm_hashmap *m);

/* Looks key up. Returns 0 and *value when found, APM_E_NOTFOUND otherwise. */
int apm_hashmap_get(const struct apm_hashmap *m, const void *key, size_t klen, uint64_t *value);

/* Inserts or replaces. Copies the key. Returns 0 or -ENOMEM. */
int apm_hashmap_put(struct apm_hashmap *m, const void *key, size_t klen, uint64_t value);

/* Removes key if present. Returns 0 or APM_E_NOTFOUND. */
int apm_hashmap_del(struct apm_hashmap *m, const void *key, size_t klen);

/* Calls fn for each entry, in no particular order; fn must not modify the map. */
void apm_hashmap_foreach(const struct apm_hashmap *m,
                         void (*fn)(void *ctx, const void *key, size_t klen, uint64_t value),
                         void *ctx);

/* A 64-bit hash of a byte string, mixed eight bytes a step. */
uint64_t apm_hash_bytes(const void *data, size_t len);

#endif
