#ifndef APM_SAMPLER_PRIV_H
#define APM_SAMPLER_PRIV_H

/*
 * Inside apm_probe._sampler: the state its three files share. sampler.c is
 * the Python module (start, stop, samples, stats) and the fork handlers;
 * sampler_hooks.c the allocator hooks, the per-thread countdown to the next
 * sample point and installing the hooks; sampler_table.c the table of live
 * samples (its lock, free filter, key arrays and file names). Nothing else
 * includes this.
 *
 * Every name declared here is hidden (the module exports PyInit__sampler
 * alone), so that the hooks reach the shared state PC-relative, as they did
 * when it was all one file's statics, and not through the GOT. Include it
 * after every other header: it names the state S and T, as the code does.
 */
#ifndef PY_SSIZE_T_CLEAN
#define PY_SSIZE_T_CLEAN
#endif
#include <Python.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* Most arrays resizes retire, kept reachable (sampler_table.c): start() refuses more. */
#define RETIRED_MAX 64

#pragma GCC visibility push(hidden)

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

struct apm_sampler_state {
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
};

/* The sampler's state: one per process, as the allocator hooks are. */
extern struct apm_sampler_state apm_sampler;

/* The free filter's bits, out of S so that a free indexes them without an offset. */
extern _Atomic uint64_t apm_sampler_filter[FILTER_WORDS];

struct thread_state {
    int64_t left; /* bytes to the next sample point */
    uint64_t rate;
    uint64_t generation; /* 0: not drawn yet */
    uint64_t rng;
    int busy;
    int nested; /* inside a mem or object hook: the raw hook below must not count again */
};

/* This thread's countdown and random state (sampler_hooks.c). */
extern _Thread_local struct thread_state apm_sampler_thread
    __attribute__((tls_model("initial-exec")));

/* Nonzero: threads are seeded from it and their order of first sampling (tests). */
extern _Atomic uint64_t apm_sampler_fixed_seed;
extern _Atomic uint64_t apm_sampler_seeded_threads;

/* How many arrays resizes retired (at most RETIRED_MAX). GIL held. */
extern unsigned apm_sampler_retired_n;

/* The table's spinlock. */
void apm_sampler_lock(void);
void apm_sampler_unlock(void);

/* The address passed the filter: look for it, and drop its entry if it is there (true). */
bool apm_sampler_forget_slow(uintptr_t addr);

/*
 * Records a sample of the block at addr drawn at rate, with the calling
 * thread's frames; counted and skipped without the GIL or a table.
 */
void apm_sampler_record(uintptr_t addr, size_t size, uint64_t rate);

/* Drops every entry (GIL held) and the file names no entry needs any more. */
void apm_sampler_clear_table(void);

/*
 * Makes the table capacity entries of frames frames each, the old one
 * retired (GIL held, the table cleared). Returns 0, or -1 out of memory.
 */
int apm_sampler_allocate_table(uint32_t capacity, uint32_t frames);

/* Seeds this thread's random numbers (from the fixed seed when one is set). */
void apm_sampler_seed(void);

/* Puts our hook on top of each domain whose chain does not hold it yet (GIL held). */
void apm_sampler_install(void);

/* Whether our hooks are in every domain's allocator chain (GIL held). */
bool apm_sampler_hooked(void);

#pragma GCC visibility pop

/* The short names the code uses for the state, in the files that include this last. */
#define S apm_sampler
#define T apm_sampler_thread

#endif
