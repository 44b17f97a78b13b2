/*
 * apm_probe._sampler's table of live samples (sampler_priv.h): a preallocated
 * array of entries with their frames, found by address through an
 * open-addressing key array that frees read without the lock, behind a
 * one-hash counting Bloom filter; the interned file names; and recording a
 * sample with the thread's frames. Changed under a spinlock.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x030D0000
#error "apm_probe._sampler reads the frames of CPython 3.11 and 3.12 only"
#endif

#define Py_BUILD_CORE 1
#include "internal/pycore_frame.h"
#undef Py_BUILD_CORE

#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "sampler_priv.h"

struct apm_sampler_state apm_sampler = {.lock = ATOMIC_FLAG_INIT};

_Atomic uint64_t apm_sampler_filter[FILTER_WORDS] __attribute__((aligned(64)));

/* --- The table ------------------------------------------------------------------- */

void apm_sampler_lock(void)
{
    while (atomic_flag_test_and_set_explicit(&S.lock, memory_order_acquire))
        sched_yield();
}

void apm_sampler_unlock(void)
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

/* Lock held. */
static void filter_add(uintptr_t addr)
{
    uint32_t b = filter_bit(addr);
    if (S.filter_counts[b]++ == 0)
        atomic_fetch_or_explicit(&apm_sampler_filter[b / 64], 1ull << (b % 64),
                                 memory_order_release);
}

/* Lock held. */
static void filter_del(uintptr_t addr)
{
    uint32_t b = filter_bit(addr);
    if (--S.filter_counts[b] == 0)
        atomic_fetch_and_explicit(&apm_sampler_filter[b / 64], ~(1ull << (b % 64)),
                                  memory_order_release);
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

bool apm_sampler_forget_slow(uintptr_t addr)
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
    apm_sampler_lock();
    t = atomic_load_explicit(&S.table, memory_order_relaxed);
    uint32_t i = find(t, addr);
    if (i != UINT32_MAX)
        drop_slot(t, i);
    apm_sampler_unlock();
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

void apm_sampler_record(uintptr_t addr, size_t size, uint64_t rate)
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
    apm_sampler_lock();
    struct slot *t = atomic_load_explicit(&S.table, memory_order_relaxed);
    uint32_t i = find(t, addr);
    if (i != UINT32_MAX)
        drop_slot(t, i); /* a stale entry: its free was not seen */
    if (S.free_head == UINT32_MAX) {
        apm_sampler_unlock();
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
    apm_sampler_unlock();
    atomic_fetch_add_explicit(&S.samples, 1, memory_order_relaxed);
}

void apm_sampler_clear_table(void)
{
    if (S.entries == NULL)
        return;
    apm_sampler_lock();
    struct slot *t = atomic_load_explicit(&S.table, memory_order_relaxed);
    for (uint32_t i = 0; i <= S.mask; i++) {
        uintptr_t a = atomic_load_explicit(&t[i].addr, memory_order_relaxed);
        if (a != ADDR_EMPTY && a != ADDR_TOMB)
            drop_slot(t, i);
    }
    rebuild();
    apm_sampler_unlock();
    /* With no entry left, no frame names a file: release them all (outside the lock,
     * since freeing a string goes through the hooks). */
    PyObject *files[FILES_SLOTS];
    memcpy(files, S.files, sizeof(files));
    memset(S.files, 0, sizeof(S.files));
    S.nfiles = 0;
    for (uint32_t i = 0; i < FILES_SLOTS; i++)
        Py_XDECREF(files[i]);
}

static void *retired[RETIRED_MAX];
unsigned apm_sampler_retired_n;

int apm_sampler_allocate_table(uint32_t capacity, uint32_t frames)
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
    apm_sampler_lock();
    /* A free may still be looking through the old key arrays without the lock: they are
     * retired, not freed, and stay reachable (start() with more frames is rare). */
    if (S.entries != NULL && apm_sampler_retired_n < RETIRED_MAX) {
        retired[apm_sampler_retired_n++] = S.entries;
        retired[apm_sampler_retired_n++] = S.frames;
        retired[apm_sampler_retired_n++] = S.slots[0];
        retired[apm_sampler_retired_n++] = S.slots[1];
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
    apm_sampler_unlock();
    return 0;
}
