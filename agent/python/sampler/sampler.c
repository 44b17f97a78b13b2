/*
 * apm_probe._sampler: a sampled allocation tracker for CPython 3.11 and 3.12
 * (docs/probe.md, "Sampled mode").
 *
 * The raw, mem and object allocators are wrapped with PyMem_SetAllocator; each
 * wrapper calls the allocator it replaced. Allocations are sampled by bytes: a
 * Poisson process with one point every `rate` bytes on average, so an
 * allocation of s bytes is sampled with probability 1 - exp(-s / rate). Each
 * thread counts down its own exponentially drawn distance to the next point
 * (thread-local, no lock, no shared cache line on the fast path).
 *
 * A sampled block gets an entry in a preallocated table: its address, size,
 * the rate it was drawn at, an id, and up to `frames` Python frames (interned
 * file name, line) read from the thread's frame chain. Nothing is allocated
 * inside a hook. free() and realloc() of a sampled address remove its entry
 * (realloc then samples the new block like a fresh allocation, which is how
 * tracemalloc attributes it too), so the table holds the live sampled blocks.
 *
 * Threads. Samples are recorded only by a thread that holds the GIL (a raw
 * allocation without it is counted in skipped_nogil and not sampled). The
 * table is changed under a spinlock; frees look an address up without it
 * (acquire loads of an open-addressing key array) and take it only when the
 * address is there, so a free that has nothing to do with a sample costs a
 * load or two. The hooks never raise and never call back into Python.
 *
 * Fork: the child keeps the table (its heap holds the same blocks), the lock is
 * released in the child and every thread's random state is reseeded.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x030D0000
#error "apm_probe._sampler reads the frames of CPython 3.11 and 3.12 only"
#endif

#define Py_BUILD_CORE 1
#include "internal/pycore_frame.h"
#undef Py_BUILD_CORE

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_CAPACITY (1u << 15)
#define MAX_CAPACITY (1u << 22)
#define MAX_FRAMES 100u
#define FILES_SLOTS (1u << 13) /* interned file names; 3/4 of them usable */
#define NO_FILE UINT32_MAX
#define ADDR_EMPTY ((uintptr_t)0)
#define ADDR_TOMB ((uintptr_t)1)
/* A one-hash counting Bloom filter over the sampled addresses: a free looks at one bit of
 * an 8 KiB bitmap that stays in cache and, almost always, at nothing more. The counts
 * behind the bits are touched under the lock only, so a bit clears when its last
 * address goes and false hits stay at (live samples) / 65536. */
#define FILTER_LOG2 16u
#define FILTER_WORDS ((1u << FILTER_LOG2) / 64u)
#define MIN_RATE 1u
#define MAX_RATE (1ull << 40)

struct slot {
    _Atomic uintptr_t addr;
    uint32_t entry;
};

struct entry {
    uintptr_t addr; /* ADDR_EMPTY when on the free list */
    size_t size;
    uint64_t id;
    uint64_t rate; /* mean bytes between samples when this one was drawn */
    uint32_t nframes;
    uint32_t next_free;
};

struct frame {
    uint32_t file; /* index into files, or NO_FILE */
    int32_t line;
};

struct domain {
    PyMemAllocatorDomain id;
    PyMemAllocatorEx prev;
};

static struct domain domains[3] = {
    {PYMEM_DOMAIN_RAW, {0}}, {PYMEM_DOMAIN_MEM, {0}}, {PYMEM_DOMAIN_OBJ, {0}}};

static struct {
    bool installed;
    _Atomic int enabled;
    _Atomic uint64_t rate;
    _Atomic uint64_t generation; /* bumped by rate changes: threads redraw at their next point */
    /* The table: sized at the first start(), kept for the life of the process. */
    uint32_t capacity, max_frames, mask;
    uint32_t want_frames; /* frames recorded per sample, <= max_frames */
    struct entry *entries;
    struct frame *frames;
    struct slot *slots[2];
    _Atomic(struct slot *) table;
    uint32_t free_head, used, tombs;
    uint32_t filter_counts[1u << FILTER_LOG2];
    _Atomic uint32_t live;
    atomic_flag lock;
    uint64_t next_id;
    /* Interned file names (strong references), written with the GIL held. */
    PyObject *files[FILES_SLOTS];
    uint32_t nfiles;
    /* Counters. */
    _Atomic uint64_t samples, dropped_full, skipped_nogil, no_frame, files_full, reentrant, removed,
        realloc_failed;
} S = {.lock = ATOMIC_FLAG_INIT};

/* The free filter's bits, out of S so that a free indexes them without an offset. */
static _Atomic uint64_t filter[FILTER_WORDS] __attribute__((aligned(64)));

struct thread_state {
    int64_t left; /* bytes to the next sample point */
    uint64_t rate;
    uint64_t generation; /* 0: not drawn yet */
    uint64_t rng;
    int busy;
    int nested; /* inside a mem or object hook: the raw hook below must not count again */
};

static _Thread_local struct thread_state T __attribute__((tls_model("initial-exec")));

/* --- Random numbers: xorshift64*, seeded per thread ------------------------------- */

static uint64_t splitmix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Nonzero: threads are seeded from it and their order of first sampling (tests). */
static _Atomic uint64_t fixed_seed;
static _Atomic uint64_t seeded_threads;

static void seed(void)
{
    uint64_t fixed = atomic_load_explicit(&fixed_seed, memory_order_relaxed);
    if (fixed != 0) {
        T.rng = splitmix(fixed + atomic_fetch_add(&seeded_threads, 1)) | 1;
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

/* --- The table ------------------------------------------------------------------- */

static void lock(void)
{
    while (atomic_flag_test_and_set_explicit(&S.lock, memory_order_acquire))
        sched_yield();
}

static void unlock(void)
{
    atomic_flag_clear_explicit(&S.lock, memory_order_release);
}

static uint32_t hash(uintptr_t addr)
{
    return (uint32_t)(((uint64_t)addr >> 4) * 0x9E3779B97F4A7C15ull >> 32);
}

/* Address bits 4 to 19, no multiply: blocks are 16-byte aligned, so the bits of a 1 MiB
 * window are all distinct and a free pays two shifts, a mask and a bit test. Page-aligned
 * blocks (large ones) share 1/256 of the bits: a false hit costs them a key-array probe. */
static uint32_t filter_bit(uintptr_t addr)
{
    return (uint32_t)(addr >> 4) & ((1u << FILTER_LOG2) - 1u);
}

/* bits is the filter, which the hooks get as their context: indexed without loading its
 * address first (one shift and mask for the word, one shift and a bit test). */
static inline bool filter_has(const _Atomic uint64_t *bits, uintptr_t addr)
{
    uint64_t word =
        atomic_load_explicit(&bits[(addr >> 10) & (FILTER_WORDS - 1u)], memory_order_relaxed);
    return (word >> ((addr >> 4) % 64)) & 1u;
}

/* Lock held. */
static void filter_add(uintptr_t addr)
{
    uint32_t b = filter_bit(addr);
    if (S.filter_counts[b]++ == 0)
        atomic_fetch_or_explicit(&filter[b / 64], 1ull << (b % 64), memory_order_release);
}

/* Lock held. */
static void filter_del(uintptr_t addr)
{
    uint32_t b = filter_bit(addr);
    if (--S.filter_counts[b] == 0)
        atomic_fetch_and_explicit(&filter[b / 64], ~(1ull << (b % 64)), memory_order_release);
}

/* The slot holding addr in t, or UINT32_MAX. */
static uint32_t find(struct slot *t, uintptr_t addr)
{
    uint32_t i = hash(addr) & S.mask;
    for (uint32_t n = 0; n <= S.mask; n++, i = (i + 1) & S.mask) {
        uintptr_t a = atomic_load_explicit(&t[i].addr, memory_order_acquire);
        if (a == addr)
            return i;
        if (a == ADDR_EMPTY)
            return UINT32_MAX;
    }
    return UINT32_MAX;
}

/* Copies the live slots into the other key array and publishes it (lock held). */
static void rebuild(void)
{
    struct slot *old = atomic_load_explicit(&S.table, memory_order_relaxed);
    struct slot *fresh = old == S.slots[0] ? S.slots[1] : S.slots[0];
    for (uint32_t i = 0; i <= S.mask; i++)
        atomic_store_explicit(&fresh[i].addr, ADDR_EMPTY, memory_order_relaxed);
    for (uint32_t i = 0; i <= S.mask; i++) {
        uintptr_t a = atomic_load_explicit(&old[i].addr, memory_order_relaxed);
        if (a == ADDR_EMPTY || a == ADDR_TOMB)
            continue;
        uint32_t k = hash(a) & S.mask;
        while (atomic_load_explicit(&fresh[k].addr, memory_order_relaxed) != ADDR_EMPTY)
            k = (k + 1) & S.mask;
        fresh[k].entry = old[i].entry;
        atomic_store_explicit(&fresh[k].addr, a, memory_order_release);
    }
    S.tombs = 0;
    atomic_store_explicit(&S.table, fresh, memory_order_release);
}

/* Removes the entry at slot i of t (lock held). */
static void drop_slot(struct slot *t, uint32_t i)
{
    struct entry *e = &S.entries[t[i].entry];
    filter_del(e->addr);
    e->addr = ADDR_EMPTY;
    e->next_free = S.free_head;
    S.free_head = t[i].entry;
    atomic_store_explicit(&t[i].addr, ADDR_TOMB, memory_order_release);
    S.used--;
    S.tombs++;
    atomic_fetch_sub_explicit(&S.live, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&S.removed, 1, memory_order_relaxed);
}

/* The address passed the filter: look for it, and drop its entry if it is there (true). */
static bool forget_slow(uintptr_t addr)
{
    /* NULL passes the filter when a sample sits at a 1 MiB boundary: find() would take
     * it for the first empty slot. */
    if (addr == ADDR_EMPTY)
        return false;
    struct slot *t = atomic_load_explicit(&S.table, memory_order_acquire);
    if (t == NULL || find(t, addr) == UINT32_MAX)
        return false;
    if (T.busy) {
        atomic_fetch_add_explicit(&S.reentrant, 1, memory_order_relaxed);
        return false;
    }
    lock();
    t = atomic_load_explicit(&S.table, memory_order_relaxed);
    uint32_t i = find(t, addr);
    if (i != UINT32_MAX)
        drop_slot(t, i);
    unlock();
    return i != UINT32_MAX;
}

/* Interns a file name (GIL held): its index, or NO_FILE when the table is full. */
static uint32_t intern(PyObject *name)
{
    uint32_t i = hash((uintptr_t)name) & (FILES_SLOTS - 1);
    for (;;) {
        if (S.files[i] == name)
            return i;
        if (S.files[i] == NULL)
            break;
        i = (i + 1) & (FILES_SLOTS - 1);
    }
    if (S.nfiles >= FILES_SLOTS / 4 * 3) {
        atomic_fetch_add_explicit(&S.files_full, 1, memory_order_relaxed);
        return NO_FILE;
    }
    Py_INCREF(name); /* a reference count, no allocation */
    S.files[i] = name;
    S.nfiles++;
    return i;
}

/* Reads up to max_frames frames of the current thread, innermost first (GIL held). */
static uint32_t read_frames(PyThreadState *ts, struct frame *out)
{
    uint32_t n = 0;
    _PyInterpreterFrame *f = ts->cframe != NULL ? ts->cframe->current_frame : NULL;
    while (f != NULL && n < S.want_frames) {
        if (!_PyFrame_IsIncomplete(f)) {
            PyCodeObject *code = f->f_code;
            int line =
                PyCode_Addr2Line(code, _PyInterpreterFrame_LASTI(f) * (int)sizeof(_Py_CODEUNIT));
            out[n].file = PyUnicode_Check(code->co_filename) ? intern(code->co_filename) : NO_FILE;
            out[n].line = line < 0 ? 0 : line;
            n++;
        }
        f = f->previous;
    }
    return n;
}

static void record(uintptr_t addr, size_t size, uint64_t rate)
{
    if (!PyGILState_Check()) {
        atomic_fetch_add_explicit(&S.skipped_nogil, 1, memory_order_relaxed);
        return;
    }
    PyThreadState *ts = _PyThreadState_UncheckedGet();
    if (ts == NULL || S.entries == NULL) {
        atomic_fetch_add_explicit(&S.skipped_nogil, 1, memory_order_relaxed);
        return;
    }
    lock();
    struct slot *t = atomic_load_explicit(&S.table, memory_order_relaxed);
    uint32_t i = find(t, addr);
    if (i != UINT32_MAX)
        drop_slot(t, i); /* a stale entry: its free was not seen */
    if (S.free_head == UINT32_MAX) {
        unlock();
        atomic_fetch_add_explicit(&S.dropped_full, 1, memory_order_relaxed);
        return;
    }
    if (S.tombs > (S.mask + 1) / 4)
        rebuild();
    t = atomic_load_explicit(&S.table, memory_order_relaxed);
    uint32_t idx = S.free_head;
    struct entry *e = &S.entries[idx];
    S.free_head = e->next_free;
    e->addr = addr;
    e->size = size;
    e->rate = rate;
    e->id = ++S.next_id;
    e->nframes = read_frames(ts, &S.frames[(size_t)idx * S.max_frames]);
    if (e->nframes == 0)
        atomic_fetch_add_explicit(&S.no_frame, 1, memory_order_relaxed);
    uint32_t k = hash(addr) & S.mask;
    for (;;) {
        uintptr_t a = atomic_load_explicit(&t[k].addr, memory_order_relaxed);
        if (a == ADDR_EMPTY || a == ADDR_TOMB)
            break;
        k = (k + 1) & S.mask;
    }
    if (atomic_load_explicit(&t[k].addr, memory_order_relaxed) == ADDR_TOMB)
        S.tombs--;
    t[k].entry = idx;
    filter_add(addr);
    atomic_store_explicit(&t[k].addr, addr, memory_order_release);
    S.used++;
    atomic_fetch_add_explicit(&S.live, 1, memory_order_relaxed);
    unlock();
    atomic_fetch_add_explicit(&S.samples, 1, memory_order_relaxed);
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
        seed();
    T.generation = gen;
    T.rate = atomic_load_explicit(&S.rate, memory_order_relaxed);
    T.left = draw(T.rate);
    if (!first && atomic_load_explicit(&S.enabled, memory_order_relaxed))
        record((uintptr_t)p, size, rate);
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
        forgotten = forget_slow((uintptr_t)ptr);
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
    forget_slow((uintptr_t)ptr);
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
    {(void *)filter, raw_malloc, raw_calloc, raw_realloc, raw_free},
    {(void *)filter, mem_malloc, mem_calloc, mem_realloc, mem_free},
    {(void *)filter, obj_malloc, obj_calloc, obj_realloc, obj_free},
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

static bool hooked(void)
{
    for (int i = 0; i < 3; i++)
        if (!in_chain(i))
            return false;
    return true;
}

/* Puts our hook on top of each domain whose chain does not hold it yet (GIL held). */
static void install(void)
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

/*
 * Pass-through hooks (benchmarks only, tests/bench/probe_overhead.py "floor"): each calls
 * the allocator it replaced and does nothing else. What they cost is what any
 * PyMem_SetAllocator hook costs on a given interpreter, apart from the hook's own work.
 */
static struct domain pass_domains[3] = {
    {PYMEM_DOMAIN_RAW, {0}}, {PYMEM_DOMAIN_MEM, {0}}, {PYMEM_DOMAIN_OBJ, {0}}};
static bool pass_installed;

static void *pass_malloc(void *ctx, size_t size)
{
    struct domain *d = ctx;
    return d->prev.malloc(d->prev.ctx, size);
}

static void *pass_calloc(void *ctx, size_t nelem, size_t elsize)
{
    struct domain *d = ctx;
    return d->prev.calloc(d->prev.ctx, nelem, elsize);
}

static void *pass_realloc(void *ctx, void *ptr, size_t size)
{
    struct domain *d = ctx;
    return d->prev.realloc(d->prev.ctx, ptr, size);
}

static void pass_free(void *ctx, void *ptr)
{
    struct domain *d = ctx;
    d->prev.free(d->prev.ctx, ptr);
}

/* --- Fork ------------------------------------------------------------------------ */

static void at_fork_prepare(void)
{
    lock();
}

static void at_fork_parent(void)
{
    unlock();
}

static void at_fork_child(void)
{
    atomic_flag_clear_explicit(&S.lock, memory_order_relaxed);
    T.busy = 0;
    if (T.generation != 0)
        seed(); /* parent and child must not sample the same points */
}

/* --- Python API ------------------------------------------------------------------ */

/* Drops every entry (GIL held) and the file names no entry needs any more. */
static void clear_table(void)
{
    if (S.entries == NULL)
        return;
    lock();
    struct slot *t = atomic_load_explicit(&S.table, memory_order_relaxed);
    for (uint32_t i = 0; i <= S.mask; i++) {
        uintptr_t a = atomic_load_explicit(&t[i].addr, memory_order_relaxed);
        if (a != ADDR_EMPTY && a != ADDR_TOMB)
            drop_slot(t, i);
    }
    rebuild();
    unlock();
    /* With no entry left, no frame names a file: release them all (outside the lock,
     * since freeing a string goes through the hooks). */
    PyObject *files[FILES_SLOTS];
    memcpy(files, S.files, sizeof(files));
    memset(S.files, 0, sizeof(S.files));
    S.nfiles = 0;
    for (uint32_t i = 0; i < FILES_SLOTS; i++)
        Py_XDECREF(files[i]);
}

#define RETIRED_MAX 64
static void *retired[RETIRED_MAX];
static unsigned retired_n;

static int allocate_table(uint32_t capacity, uint32_t frames)
{
    uint32_t slots = 1;
    while (slots < capacity * 2u)
        slots <<= 1;
    struct entry *entries = calloc(capacity, sizeof(*entries));
    struct frame *fr = calloc((size_t)capacity * frames, sizeof(*fr));
    struct slot *a = calloc(slots, sizeof(*a)), *b = calloc(slots, sizeof(*b));
    if (entries == NULL || fr == NULL || a == NULL || b == NULL) {
        free(entries);
        free(fr);
        free(a);
        free(b);
        return -1;
    }
    for (uint32_t i = 0; i < capacity; i++)
        entries[i].next_free = i + 1 < capacity ? i + 1 : UINT32_MAX;
    lock();
    /* A free may still be looking through the old key arrays without the lock: they are
     * retired, not freed, and stay reachable (start() with more frames is rare). */
    if (S.entries != NULL && retired_n < RETIRED_MAX) {
        retired[retired_n++] = S.entries;
        retired[retired_n++] = S.frames;
        retired[retired_n++] = S.slots[0];
        retired[retired_n++] = S.slots[1];
    }
    S.entries = entries;
    S.frames = fr;
    S.slots[0] = a;
    S.slots[1] = b;
    S.capacity = capacity;
    S.max_frames = frames;
    S.mask = slots - 1;
    S.free_head = 0;
    S.used = 0;
    S.tombs = 0;
    atomic_store_explicit(&S.table, a, memory_order_release);
    unlock();
    return 0;
}

static PyObject *sampler_start(PyObject *self, PyObject *args, PyObject *kw)
{
    (void)self;
    static char *names[] = {"sample_bytes", "frames", "capacity", "seed", NULL};
    unsigned long long rate = 512 * 1024, seed_value = 0;
    unsigned int frames = 1, capacity = DEFAULT_CAPACITY;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|KIIK:start", names, &rate, &frames, &capacity,
                                     &seed_value))
        return NULL;
    if (rate < MIN_RATE || rate > MAX_RATE || frames < 1 || frames > MAX_FRAMES || capacity < 1 ||
        capacity > MAX_CAPACITY) {
        PyErr_SetString(PyExc_ValueError, "sample_bytes, frames or capacity out of range");
        return NULL;
    }
    if (S.entries == NULL || S.capacity < capacity || S.max_frames < frames) {
        if (S.entries != NULL && retired_n >= RETIRED_MAX) {
            PyErr_SetString(PyExc_ValueError, "the sample table was resized too often");
            return NULL;
        }
        atomic_store(&S.enabled, 0);
        clear_table();
        if (allocate_table(capacity, frames) != 0)
            return PyErr_NoMemory();
    }
    S.want_frames = frames;
    if (seed_value != 0) {
        atomic_store(&fixed_seed, seed_value);
        atomic_store(&seeded_threads, 0);
        T.generation = 0; /* this thread draws afresh from the seed */
    }
    atomic_store(&S.rate, rate);
    atomic_fetch_add(&S.generation, 1);
    install();
    atomic_store(&S.enabled, 1);
    Py_RETURN_NONE;
}

static PyObject *sampler_set_rate(PyObject *self, PyObject *arg)
{
    (void)self;
    unsigned long long rate = PyLong_AsUnsignedLongLong(arg);
    if (PyErr_Occurred())
        return NULL;
    if (rate < MIN_RATE || rate > MAX_RATE) {
        PyErr_SetString(PyExc_ValueError, "sample_bytes out of range");
        return NULL;
    }
    atomic_store(&S.rate, rate);
    atomic_fetch_add(&S.generation, 1);
    Py_RETURN_NONE;
}

static PyObject *sampler_stop(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    atomic_store(&S.enabled, 0);
    clear_table();
    Py_RETURN_NONE;
}

static PyObject *sampler_clear(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    clear_table();
    Py_RETURN_NONE;
}

static PyObject *sampler_hooked(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return PyBool_FromLong(S.installed && hooked());
}

/* Installs the pass-through hooks once (GIL held); start() may stack ours on top. */
static PyObject *sampler_passthrough(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    if (!pass_installed) {
        for (int i = 0; i < 3; i++) {
            PyMem_GetAllocator(pass_domains[i].id, &pass_domains[i].prev);
            PyMemAllocatorEx pass = {&pass_domains[i], pass_malloc, pass_calloc, pass_realloc,
                                     pass_free};
            PyMem_SetAllocator(pass_domains[i].id, &pass);
        }
        pass_installed = true;
    }
    Py_RETURN_NONE;
}

struct copied {
    struct entry e;
    struct frame f[];
};

static PyObject *frames_tuple(const struct frame *f, uint32_t n)
{
    PyObject *t = PyTuple_New(n);
    for (uint32_t i = 0; t != NULL && i < n; i++) {
        PyObject *file = f[i].file == NO_FILE ? NULL : S.files[f[i].file];
        PyObject *pair = file != NULL ? Py_BuildValue("(Oi)", file, f[i].line)
                                      : Py_BuildValue("(si)", "<unknown>", f[i].line);
        if (pair == NULL)
            Py_CLEAR(t);
        else
            PyTuple_SET_ITEM(t, i, pair);
    }
    return t;
}

/* [(id, size, rate, ((file, line), ...) innermost first), ...] of the live samples. */
static PyObject *sampler_samples(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    if (S.entries == NULL)
        return PyList_New(0);
    size_t one = sizeof(struct copied) + sizeof(struct frame) * S.max_frames;
    lock();
    uint32_t n = S.used;
    char *buf = malloc(one * (n ? n : 1)); /* libc, not PyMem: no hook while locked */
    uint32_t k = 0;
    if (buf != NULL) {
        struct slot *t = atomic_load_explicit(&S.table, memory_order_relaxed);
        for (uint32_t i = 0; i <= S.mask && k < n; i++) {
            uintptr_t a = atomic_load_explicit(&t[i].addr, memory_order_relaxed);
            if (a == ADDR_EMPTY || a == ADDR_TOMB)
                continue;
            struct copied *c = (struct copied *)(buf + one * k++);
            c->e = S.entries[t[i].entry];
            memcpy(c->f, &S.frames[(size_t)t[i].entry * S.max_frames],
                   sizeof(struct frame) * c->e.nframes);
        }
    }
    unlock();
    if (buf == NULL)
        return PyErr_NoMemory();
    PyObject *list = PyList_New(k);
    for (uint32_t i = 0; list != NULL && i < k; i++) {
        struct copied *c = (struct copied *)(buf + one * i);
        PyObject *frames = frames_tuple(c->f, c->e.nframes);
        PyObject *item = frames == NULL ? NULL
                                        : Py_BuildValue("(KnKN)", (unsigned long long)c->e.id,
                                                        (Py_ssize_t)c->e.size,
                                                        (unsigned long long)c->e.rate, frames);
        if (item == NULL)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, i, item);
    }
    free(buf);
    return list;
}

static PyObject *sampler_stats(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    uint32_t slots = S.entries ? S.mask + 1 : 0;
    size_t table_bytes =
        (size_t)S.capacity * (sizeof(struct entry) + sizeof(struct frame) * S.max_frames) +
        2 * (size_t)slots * sizeof(struct slot);
    return Py_BuildValue("{s:O,s:O,s:K,s:I,s:I,s:I,s:n,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:I}",
                         "enabled", atomic_load(&S.enabled) ? Py_True : Py_False, "hooked",
                         S.installed && hooked() ? Py_True : Py_False, "sample_bytes",
                         (unsigned long long)atomic_load(&S.rate), "live", atomic_load(&S.live),
                         "capacity", S.capacity, "frames", S.max_frames, "table_bytes",
                         (Py_ssize_t)table_bytes, "samples",
                         (unsigned long long)atomic_load(&S.samples), "removed",
                         (unsigned long long)atomic_load(&S.removed), "dropped_full",
                         (unsigned long long)atomic_load(&S.dropped_full), "skipped_nogil",
                         (unsigned long long)atomic_load(&S.skipped_nogil), "no_frame",
                         (unsigned long long)atomic_load(&S.no_frame), "files_full",
                         (unsigned long long)atomic_load(&S.files_full), "reentrant",
                         (unsigned long long)atomic_load(&S.reentrant), "realloc_failed",
                         (unsigned long long)atomic_load(&S.realloc_failed), "files", S.nfiles);
}

static PyMethodDef methods[] = {
    {"start", (PyCFunction)(void (*)(void))sampler_start, METH_VARARGS | METH_KEYWORDS,
     "start(sample_bytes=524288, frames=1, capacity=32768, seed=0): install the hooks (once) "
     "and sample; a nonzero seed makes the sample points repeatable (tests)."},
    {"set_rate", sampler_set_rate, METH_O, "set_rate(sample_bytes): mean bytes between samples."},
    {"stop", sampler_stop, METH_NOARGS, "Stop sampling and drop the table (hooks stay)."},
    {"clear", sampler_clear, METH_NOARGS, "Drop every sample."},
    {"hooked", sampler_hooked, METH_NOARGS, "Whether our hooks are the current allocators."},
    {"passthrough", sampler_passthrough, METH_NOARGS,
     "Install hooks that only call the allocator they replaced (benchmarks: the floor cost "
     "of any allocator hook)."},
    {"samples", sampler_samples, METH_NOARGS,
     "The live samples: [(id, size, sample_bytes, ((file, line), ...)), ...]."},
    {"stats", sampler_stats, METH_NOARGS, "Counters of the sampler."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "apm_probe._sampler",
    "Sampled allocation tracker of apm_probe (docs/probe.md).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__sampler(void);

PyMODINIT_FUNC PyInit__sampler(void)
{
    /* The frame layout read above is that of the minor version compiled against. */
    if ((Py_Version >> 16) != ((unsigned long)PY_VERSION_HEX >> 16)) {
        PyErr_Format(PyExc_ImportError, "apm_probe._sampler was built for Python %d.%d",
                     PY_MAJOR_VERSION, PY_MINOR_VERSION);
        return NULL;
    }
    static bool fork_hooks;
    if (!fork_hooks) {
        if (pthread_atfork(at_fork_prepare, at_fork_parent, at_fork_child) != 0) {
            PyErr_SetString(PyExc_ImportError, "apm_probe._sampler: pthread_atfork failed");
            return NULL;
        }
        fork_hooks = true;
    }
    return PyModule_Create(&module);
}
