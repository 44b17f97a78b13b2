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
 *
 * This file is the Python module and the fork handlers; the hooks are in
 * sampler_hooks.c, the table in sampler_table.c (sampler_priv.h).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "sampler_priv.h"

#define DEFAULT_CAPACITY (1u << 15)
#define MAX_CAPACITY (1u << 22)
#define MAX_FRAMES 100u
#define MIN_RATE 1u
#define MAX_RATE (1ull << 40)

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
    apm_sampler_lock();
}

static void at_fork_parent(void)
{
    apm_sampler_unlock();
}

static void at_fork_child(void)
{
    atomic_flag_clear_explicit(&S.lock, memory_order_relaxed);
    T.busy = 0;
    if (T.generation != 0)
        apm_sampler_seed(); /* parent and child must not sample the same points */
}

/* --- Python API ------------------------------------------------------------------ */

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
        if (S.entries != NULL && apm_sampler_retired_n >= RETIRED_MAX) {
            PyErr_SetString(PyExc_ValueError, "the sample table was resized too often");
            return NULL;
        }
        atomic_store(&S.enabled, 0);
        apm_sampler_clear_table();
        if (apm_sampler_allocate_table(capacity, frames) != 0)
            return PyErr_NoMemory();
    }
    S.want_frames = frames;
    if (seed_value != 0) {
        atomic_store(&apm_sampler_fixed_seed, seed_value);
        atomic_store(&apm_sampler_seeded_threads, 0);
        T.generation = 0; /* this thread draws afresh from the seed */
    }
    atomic_store(&S.rate, rate);
    atomic_fetch_add(&S.generation, 1);
    apm_sampler_install();
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
    apm_sampler_clear_table();
    Py_RETURN_NONE;
}

static PyObject *sampler_clear(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    apm_sampler_clear_table();
    Py_RETURN_NONE;
}

static PyObject *sampler_hooked(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return PyBool_FromLong(S.installed && apm_sampler_hooked());
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
    apm_sampler_lock();
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
    apm_sampler_unlock();
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
                         S.installed && apm_sampler_hooked() ? Py_True : Py_False, "sample_bytes",
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
