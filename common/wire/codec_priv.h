#ifndef APM_CODEC_PRIV_H
#define APM_CODEC_PRIV_H

/*
 * What common/wire/codec.c (frames, processes, series) and common/wire/codec_trace.c
 * (the probe's allocation sites, diffs and gc statistics) share. Nothing
 * outside common/wire/codec*.c includes this header: it is the only other place
 * the generated protobuf-c types appear.
 */
#include <stddef.h>
#include <stdint.h>

#include "apm.pb-c.h"
#include "common/wire/codec.h"

/* Longest string on the wire (bytes). */
#define MAX_STRING_LEN 65536u

struct dec_proc {
    int32_t pid;
    int32_t ppid;
    int64_t start_ms;
    uint32_t name;
    uint32_t cmdline;
    uint32_t cgroup;
};

struct dec_series {
    uint32_t proc; /* connection ref, 0 = host */
    enum apm_metric metric;
    int64_t last;
};

/* An allocation site defined on the connection: string refs checked at definition. */
struct dec_site {
    uint32_t file;
    uint32_t line;
    uint32_t nframes;
    uint32_t *tb; /* nframes pairs (file ref, line), owned */
};

/* What encoding the probe's part of a batch allocates. */
struct enc_trace {
    Apm__SiteDef *sites;
    Apm__SiteDef **site_ptrs;
    size_t nsites;
    uint32_t *tb;
    Apm__SiteStat *stats;
    Apm__SiteStat **stat_ptrs;
    Apm__TraceDiff *diffs;
    Apm__TraceDiff **diff_ptrs;
    size_t ndiffs;
    Apm__GcStats *gc;
    Apm__GcStats **gc_ptrs;
    Apm__GcGeneration *gens;
    Apm__GcGeneration **gen_ptrs;
    size_t ngc;
};

/* Everything one batch encoding allocates, released in one place. */
struct enc_work {
    char **strings;
    size_t nstrings, strings_cap;
    Apm__ProcessDef *procs;
    Apm__ProcessDef **proc_ptrs;
    size_t nprocs;
    Apm__SeriesDef *series;
    Apm__SeriesDef **series_ptrs;
    size_t nseries;
    Apm__Samples *samples;
    Apm__Samples **sample_ptrs;
    size_t nsample_msgs;
    int64_t *deltas;
    Apm__Tick tick;
    Apm__Tick *tick_ptr;
    int32_t *tick_series;
    int64_t *tick_values;
    struct enc_trace trace;
};

/* ---- codec.c ---- */

/* Grows *arr to hold need elements. Returns 0 or -ENOMEM. */
int codec_grow_array(void **arr, uint32_t *cap, uint32_t need, size_t elem);
int codec_valid_string_ref(const struct apm_codec_dec *d, uint32_t ref);
const char *codec_string_at(const struct apm_codec_dec *d, uint32_t ref);
/* Maps a connection process ref to its index in the batch, adding it on first use. */
int codec_batch_proc(const struct apm_codec_dec *d, struct apm_batch *out, uint32_t *map,
                     uint32_t ref, uint32_t *index);
/* Interns s in the connection's string table; ref 0 for NULL or "". */
int codec_intern(struct apm_codec_enc *e, struct enc_work *w, const char *s, uint32_t *ref);
/* Defines process p on the connection the first time it is used. */
int codec_enc_proc(struct apm_codec_enc *e, struct enc_work *w, const struct apm_proc_desc *p,
                   uint32_t *ref);

/* ---- codec_trace.c ---- */

/* Decodes the batch's sites, diffs and gc records into out. */
int codec_dec_trace(struct apm_codec_dec *d, const Apm__Batch *b, struct apm_batch *out,
                    uint32_t *map);
void codec_dec_sites_free(struct apm_codec_dec *d);
/* Builds the batch's sites, diffs and gc messages in w->trace. */
int codec_enc_trace(struct apm_codec_enc *e, struct enc_work *w, const struct apm_batch *b,
                    uint32_t *proc_refs);
/* Points m at what codec_enc_trace built. */
void codec_enc_trace_attach(struct enc_trace *t, Apm__Batch *m);
void codec_enc_trace_free(struct enc_trace *t);

#endif
