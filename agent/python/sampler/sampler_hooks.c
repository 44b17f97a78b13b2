/*
 * apm_probe._sampler's allocator hooks (docs/probe.md, "Sampled mode"): each
 * thread counts allocated bytes down to its next sample point, drawn from an
 * exponential distribution with its own random numbers; a block that passes
 * the point is recorded in the table (sampler_table.c), and a free of an
 * address that passes the filter forgets its sample. Installing the hooks
 * and checking that they are in the allocator chain are here too.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <time.h>
#include <unistd.h>

#include "sampler_priv.h"

static struct domain domains[3] = {
    {PYMEM_DOMAIN_RAW, {0}}, {PYMEM_DOMAIN_MEM, {0}}, {PYMEM_DOMAIN_OBJ, {0}}};

_Thread_local struct thread_state apm_sampler_thread __attribute__((tls_model("initial-exec")));

/* --- Random numbers: xorshift64*, seeded per thread ------------------------------- */

static uint64_t splitmix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

_Atomic uint64_t apm_sampler_fixed_seed;
_Atomic uint64_t apm_sampler_seeded_threads;

void apm_sampler_seed(void)
{
    uint64_t fixed = atomic_load_explicit(&apm_sampler_fixed_seed, memory_order_relaxed);
    if (fixed != 0) {
        T.rng = splitmix(fixed + atomic_fetch_add(&apm_sampler_seeded_threads, 1)) | 1;
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    T.rng = splitmix((uint64_t)(uintptr_t)&T ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^
                     ((uint64_t)getpid() << 16));
    if (T.rng == 0)
        T.rng = 1;
}

static double uniform(void)
{
    T.rng ^= T.rng >> 12;
    T.rng ^= T.rng << 25;
    T.rng ^= T.rng >> 27;
    uint64_t x = T.rng * 0x2545F4914F6CDD1Dull;
    return ((double)(x >> 11) + 0.5) * (1.0 / 9007199254740992.0); /* (0, 1) */
}

/* An exponentially distributed distance to the next sample point, in bytes. */
static int64_t draw(uint64_t rate)
{
    double d = -log(uniform()) * (double)rate;
    return d >= 9.0e18 ? INT64_MAX : (int64_t)d + 1;
}

/* The thread passed its sample point inside the block [p, p + size). */
static void sample(void *p, size_t size)
{
    if (T.busy) {
        atomic_fetch_add_explicit(&S.reentrant, 1, memory_order_relaxed);
        return;
    }
    T.busy = 1;
    uint64_t gen = atomic_load_explicit(&S.generation, memory_order_relaxed);
    uint64_t rate = T.rate;
    bool first = T.generation == 0;
    if (first)
        apm_sampler_seed();
    T.generation = gen;
    T.rate = atomic_load_explicit(&S.rate, memory_order_relaxed);
    T.left = draw(T.rate);
    if (!first && atomic_load_explicit(&S.enabled, memory_order_relaxed))
        apm_sampler_record((uintptr_t)p, size, rate);
    T.busy = 0;
}

/* Counts size off this thread's distance to its next sample point: true when passed.
 * CPython's allocator API refuses sizes over PY_SSIZE_T_MAX before any hook is called, so
 * size fits an int64_t. */
static inline bool due(size_t size)
{
    T.left -= (int64_t)size;
    return T.left < 0;
}

/* bits is the filter, which the hooks get as their context: indexed without loading its
 * address first (one shift and mask for the word, one shift and a bit test). */
static inline bool filter_has(const _Atomic uint64_t *bits, uintptr_t addr)
{
    uint64_t word =
        atomic_load_explicit(&bits[(addr >> 10) & (FILTER_WORDS - 1u)], memory_order_relaxed);
    return (word >> ((addr >> 4) % 64)) & 1u;
}

/* --- The hooks: each calls the allocator it replaced, tail-calling it when it can --- */

/*
 * The mem and object domains (pymalloc) serve requests of up to SMALL_REQUEST bytes
 * themselves and hand larger ones, and reallocations that leave their pools, to the raw
 * domain. A block must get one chance to be sampled, and the stack is the same either way:
 * the outer hook counts it and marks the thread nested, and the raw hook lets nested
 * requests through uncounted. Requests of up to SMALL_REQUEST bytes, the bulk, take the
 * short path: a countdown and a tail call.
 *
 * Each domain has its own set of hooks, made from the inline bodies below with the domain
 * as a constant, so that the allocator a hook calls is at a fixed address (one load fewer
 * than through a context pointer). The context every hook gets is the free filter, which a
 * free indexes without first loading its address.
 */
#define SMALL_REQUEST 512u

/* Slow paths, kept out of line so that the fast path of a hook needs no stack frame:
 * a compare, a thread-local countdown and a tail call. */
static __attribute__((noinline)) void *outer_malloc(const PyMemAllocatorEx *prev, size_t size)
{
    T.nested++;
    void *p = prev->malloc(prev->ctx, size);
    T.nested--;
    if (p != NULL && due(size))
        sample(p, size);
    return p;
}

/* A request of up to SMALL_REQUEST bytes that passed the sample point (already counted). */
static __attribute__((noinline)) void *small_malloc_sampled(const PyMemAllocatorEx *prev,
                                                            size_t size)
{
    void *p = prev->malloc(prev->ctx, size);
    if (p != NULL)
        sample(p, size);
    return p;
}

static inline __attribute__((always_inline)) void *malloc_in(const PyMemAllocatorEx *prev,
                                                             size_t size)
{
    if (__builtin_expect(size > SMALL_REQUEST, 0))
        return outer_malloc(prev, size);
    if (__builtin_expect(due(size), 0))
        return small_malloc_sampled(prev, size);
    return prev->malloc(prev->ctx, size);
}

/* calloc: `small` when size <= SMALL_REQUEST and the countdown already passed the point. */
static __attribute__((noinline)) void *outer_calloc(const PyMemAllocatorEx *prev, size_t nelem,
                                                    size_t elsize, size_t size, bool small)
{
    T.nested++;
    void *p = prev->calloc(prev->ctx, nelem, elsize);
    T.nested--;
    if (p != NULL && (small || due(size)))
        sample(p, size);
    return p;
}

static inline __attribute__((always_inline)) void *calloc_in(const PyMemAllocatorEx *prev,
                                                             size_t nelem, size_t elsize)
{
    size_t size = 0;
    if (__builtin_mul_overflow(nelem, elsize, &size))
        return prev->calloc(prev->ctx, nelem, elsize);
    if (size > SMALL_REQUEST)
        return outer_calloc(prev, nelem, elsize, size, false);
    if (__builtin_expect(due(size), 0))
        return outer_calloc(prev, nelem, elsize, size, true);
    return prev->calloc(prev->ctx, nelem, elsize);
}

/*
 * realloc off its fast path: ptr passed the filter (`filtered`; nothing counted yet) or the
 * countdown passed the sample point. A sampled block is forgotten before it moves; should
 * the realloc then fail, the block lives on without its sample (counted in realloc_failed).
 * `outer`: a mem or object hook, which marks the thread nested around the call.
 */
static __attribute__((noinline)) void *realloc_slow(const PyMemAllocatorEx *prev, void *ptr,
                                                    size_t size, bool filtered, bool outer)
{
    bool forgotten = false, passed = !filtered;
    if (filtered) {
        forgotten = apm_sampler_forget_slow((uintptr_t)ptr);
        passed = (outer || !T.nested) && due(size);
    }
    T.nested += outer;
    void *p = prev->realloc(prev->ctx, ptr, size);
    T.nested -= outer;
    if (p == NULL) {
        if (forgotten && size != 0)
            atomic_fetch_add_explicit(&S.realloc_failed, 1, memory_order_relaxed);
    } else if (passed) {
        sample(p, size);
    }
    return p;
}

/* NULL may pass the filter: forget_slow then finds nothing. */
static inline __attribute__((always_inline)) void *
realloc_in(const PyMemAllocatorEx *prev, const _Atomic uint64_t *bits, void *ptr, size_t size)
{
    if (__builtin_expect(filter_has(bits, (uintptr_t)ptr), 0))
        return realloc_slow(prev, ptr, size, true, true);
    if (__builtin_expect(due(size), 0))
        return realloc_slow(prev, ptr, size, false, true);
    T.nested++;
    void *p = prev->realloc(prev->ctx, ptr, size);
    T.nested--;
    return p;
}

/* The raw domain: counted unless a mem or object hook above already counts the request. */
static __attribute__((noinline)) void *raw_sampled(void *p, size_t size)
{
    if (p != NULL)
        sample(p, size);
    return p;
}

static void *raw_malloc(void *ctx, size_t size)
{
    (void)ctx;
    const PyMemAllocatorEx *prev = &domains[0].prev;
    if (T.nested || __builtin_expect(!due(size), 1))
        return prev->malloc(prev->ctx, size);
    return raw_sampled(prev->malloc(prev->ctx, size), size);
}

static void *raw_calloc(void *ctx, size_t nelem, size_t elsize)
{
    (void)ctx;
    const PyMemAllocatorEx *prev = &domains[0].prev;
    size_t size = 0;
    if (T.nested || __builtin_mul_overflow(nelem, elsize, &size) || __builtin_expect(!due(size), 1))
        return prev->calloc(prev->ctx, nelem, elsize);
    return raw_sampled(prev->calloc(prev->ctx, nelem, elsize), size);
}

static void *raw_realloc(void *ctx, void *ptr, size_t size)
{
    const PyMemAllocatorEx *prev = &domains[0].prev;
    if (__builtin_expect(filter_has(ctx, (uintptr_t)ptr), 0))
        return realloc_slow(prev, ptr, size, true, false);
    if (T.nested || __builtin_expect(!due(size), 1))
        return prev->realloc(prev->ctx, ptr, size);
    return realloc_slow(prev, ptr, size, false, false);
}

static __attribute__((noinline)) void free_sampled(const PyMemAllocatorEx *prev, void *ptr)
{
    apm_sampler_forget_slow((uintptr_t)ptr);
    prev->free(prev->ctx, ptr);
}

static inline __attribute__((always_inline)) void free_in(const PyMemAllocatorEx *prev,
                                                          const _Atomic uint64_t *bits, void *ptr)
{
    /* NULL may pass the filter; forget_slow then finds nothing. */
    if (__builtin_expect(filter_has(bits, (uintptr_t)ptr), 0))
        free_sampled(prev, ptr);
    else
        prev->free(prev->ctx, ptr);
}

static void raw_free(void *ctx, void *ptr)
{
    free_in(&domains[0].prev, ctx, ptr);
}

#define OUTER_HOOKS(name, i)                                                                       \
    static void *name##_malloc(void *ctx, size_t size)                                             \
    {                                                                                              \
        (void)ctx;                                                                                 \
        return malloc_in(&domains[i].prev, size);                                                  \
    }                                                                                              \
    static void *name##_calloc(void *ctx, size_t nelem, size_t elsize)                             \
    {                                                                                              \
        (void)ctx;                                                                                 \
        return calloc_in(&domains[i].prev, nelem, elsize);                                         \
    }                                                                                              \
    static void *name##_realloc(void *ctx, void *ptr, size_t size)                                 \
    {                                                                                              \
        return realloc_in(&domains[i].prev, ctx, ptr, size);                                       \
    }                                                                                              \
    static void name##_free(void *ctx, void *ptr)                                                  \
    {                                                                                              \
        free_in(&domains[i].prev, ctx, ptr);                                                       \
    }

OUTER_HOOKS(mem, 1)
OUTER_HOOKS(obj, 2)

static const PyMemAllocatorEx hook_sets[3] = {
    {(void *)apm_sampler_filter, raw_malloc, raw_calloc, raw_realloc, raw_free},
    {(void *)apm_sampler_filter, mem_malloc, mem_calloc, mem_realloc, mem_free},
    {(void *)apm_sampler_filter, obj_malloc, obj_calloc, obj_realloc, obj_free},
};

/*
 * Whether our hook of domain i is in the allocator chain: ours on top, or under another
 * hook that chains to us (tracemalloc started after us). An allocation through the domain
 * must pass our hook, which counts its size off this thread's distance to the next sample.
 */
static bool in_chain(int i)
{
    static void *(*const alloc[3])(size_t) = {PyMem_RawMalloc, PyMem_Malloc, PyObject_Malloc};
    static void (*const release[3])(void *) = {PyMem_RawFree, PyMem_Free, PyObject_Free};
    struct thread_state saved = T;
    T.left = INT64_MAX / 2;
    T.busy = 1; /* should the test block be sampled anyway, nothing is recorded */
    T.nested = 0;
    void *p = alloc[i](24);
    bool seen = T.left <= INT64_MAX / 2 - 24; /* a hook above may allocate too */
    release[i](p);
    T = saved;
    return seen;
}

bool apm_sampler_hooked(void)
{
    for (int i = 0; i < 3; i++)
        if (!in_chain(i))
            return false;
    return true;
}

void apm_sampler_install(void)
{
    for (int i = 0; i < 3; i++) {
        if (S.installed && in_chain(i))
            continue;
        PyMemAllocatorEx cur;
        PyMem_GetAllocator(domains[i].id, &cur);
        domains[i].prev = cur;
        PyMemAllocatorEx ours = hook_sets[i];
        PyMem_SetAllocator(domains[i].id, &ours);
    }
    S.installed = true;
}
