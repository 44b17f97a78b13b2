/*
 * The probe's part of a batch on the wire: allocation sites (defined once
 * per connection, like series, with interned file names), tracemalloc diffs
 * referring to them, and gc statistics. See docs/protocol.md.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/wire/codec_priv.h"
#include "common/base/error.h"

/* Most sites one diff carries (the probe sends at most 500). */
#define MAX_DIFF_SITES 65535u

static const char KEY_LINENO[] = "lineno";
static const char KEY_TRACEBACK[] = "traceback";

/* ---------------------------------------------------------------- decode */

void codec_dec_sites_free(struct apm_codec_dec *d)
{
    for (uint32_t i = 1; i <= d->nsites; i++)
        free(d->sites[i].tb);
    free(d->sites);
    d->sites = NULL;
    d->nsites = d->sites_cap = 0;
}

static int dec_site_defs(struct apm_codec_dec *d, const Apm__Batch *b)
{
    if (b->n_sites > APM_CODEC_MAX_SITES - d->nsites)
        return APM_E_LIMIT;
    int rc = codec_grow_array((void **)&d->sites, &d->sites_cap,
                              d->nsites + (uint32_t)b->n_sites + 1, sizeof(struct dec_site));
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < b->n_sites; i++) {
        const Apm__SiteDef *s = b->sites[i];
        if (s->ref != d->nsites + 1 || !codec_valid_string_ref(d, s->file) ||
            s->n_traceback % 2 != 0 || s->n_traceback > 2 * (size_t)APM_SITE_FRAMES_MAX)
            return APM_E_DECODE;
        for (size_t k = 0; k < s->n_traceback; k += 2)
            if (!codec_valid_string_ref(d, s->traceback[k]))
                return APM_E_DECODE;
        struct dec_site *ds = &d->sites[d->nsites + 1];
        memset(ds, 0, sizeof(*ds));
        if (s->n_traceback > 0) {
            ds->tb = malloc(s->n_traceback * sizeof(*ds->tb));
            if (ds->tb == NULL)
                return -ENOMEM;
            memcpy(ds->tb, s->traceback, s->n_traceback * sizeof(*ds->tb));
        }
        ds->file = s->file;
        ds->line = s->line;
        ds->nframes = (uint32_t)(s->n_traceback / 2);
        d->nsites++;
    }
    return 0;
}

static int dec_site(const struct apm_codec_dec *d, const Apm__SiteStat *st,
                    struct apm_site_stat *out)
{
    if (st->site == 0 || st->site > d->nsites)
        return APM_E_DECODE;
    const struct dec_site *ds = &d->sites[st->site];
    int rc = apm_site_set(out, codec_string_at(d, ds->file), ds->line, ds->nframes);
    for (uint32_t k = 0; rc == 0 && k < ds->nframes; k++)
        rc = apm_site_set_frame(out, k, codec_string_at(d, ds->tb[2 * k]), ds->tb[2 * k + 1]);
    out->size = st->size;
    out->size_diff = st->size_diff;
    out->count = st->count;
    out->count_diff = st->count_diff;
    out->size_err = st->size_err;
    out->growth_var = st->growth_var;
    return rc;
}

static int dec_diff(const struct apm_codec_dec *d, const Apm__TraceDiff *td, struct apm_batch *out,
                    uint32_t *map)
{
    bool traceback = strcmp(td->key_type, KEY_TRACEBACK) == 0;
    if (td->process == 0 || td->process > d->nprocs || td->n_top > MAX_DIFF_SITES ||
        (!traceback && strcmp(td->key_type, KEY_LINENO) != 0))
        return APM_E_DECODE;
    uint32_t proc;
    int rc = codec_batch_proc(d, out, map, td->process, &proc);
    struct apm_trace_diff *diff = NULL;
    if (rc == 0)
        rc = apm_batch_append_diff(out, proc, (uint32_t)td->n_top, &diff);
    if (rc != 0)
        return rc;
    diff->t_ms = td->t_ms;
    diff->probe_seq = td->probe_seq;
    diff->session = td->session;
    diff->traceback = traceback;
    diff->frames = td->frames;
    diff->interval_ms = td->interval_ms;
    diff->traced_current = td->traced_current;
    diff->traced_peak = td->traced_peak;
    diff->tracemalloc_memory = td->tracemalloc_memory;
    diff->total_size = td->total_size;
    diff->total_count = td->total_count;
    diff->total_size_diff = td->total_size_diff;
    diff->total_count_diff = td->total_count_diff;
    diff->groups = td->groups;
    diff->truncated = td->truncated;
    diff->sample_bytes = td->sample_bytes;
    diff->samples = td->samples;
    for (size_t i = 0; rc == 0 && i < td->n_top; i++)
        rc = dec_site(d, td->top[i], &diff->sites[i]);
    return rc;
}

static int dec_gc(const struct apm_codec_dec *d, const Apm__GcStats *g, struct apm_batch *out,
                  uint32_t *map)
{
    if (g->process == 0 || g->process > d->nprocs || g->n_generations > APM_GC_GENERATIONS_MAX)
        return APM_E_DECODE;
    struct apm_gc_stats gs;
    memset(&gs, 0, sizeof(gs));
    int rc = codec_batch_proc(d, out, map, g->process, &gs.proc);
    if (rc != 0)
        return rc;
    gs.t_ms = g->t_ms;
    gs.garbage = g->garbage;
    gs.ngen = (uint32_t)g->n_generations;
    for (uint32_t i = 0; i < gs.ngen; i++) {
        gs.gen[i].collections = g->generations[i]->collections;
        gs.gen[i].collected = g->generations[i]->collected;
        gs.gen[i].uncollectable = g->generations[i]->uncollectable;
        gs.gen[i].count = g->generations[i]->count;
    }
    return apm_batch_add_gc(out, &gs);
}

int codec_dec_trace(struct apm_codec_dec *d, const Apm__Batch *b, struct apm_batch *out,
                    uint32_t *map)
{
    int rc = dec_site_defs(d, b);
    for (size_t i = 0; rc == 0 && i < b->n_diffs; i++)
        rc = dec_diff(d, b->diffs[i], out, map);
    for (size_t i = 0; rc == 0 && i < b->n_gc; i++)
        rc = dec_gc(d, b->gc[i], out, map);
    return rc;
}

/* ---------------------------------------------------------------- encode */

void codec_enc_trace_free(struct enc_trace *t)
{
    free(t->sites);
    free(t->site_ptrs);
    free(t->tb);
    free(t->stats);
    free(t->stat_ptrs);
    free(t->diffs);
    free(t->diff_ptrs);
    free(t->gc);
    free(t->gc_ptrs);
    free(t->gens);
    free(t->gen_ptrs);
    memset(t, 0, sizeof(*t));
}

void codec_enc_trace_attach(struct enc_trace *t, Apm__Batch *m)
{
    m->n_sites = t->nsites;
    m->sites = t->site_ptrs;
    m->n_diffs = t->ndiffs;
    m->diffs = t->diff_ptrs;
    m->n_gc = t->ngc;
    m->gc = t->gc_ptrs;
}

static int trace_alloc(struct enc_trace *t, const struct apm_batch *b, size_t *max_frames)
{
    size_t nsites = 0, nframes = 0;
    *max_frames = 0;
    for (uint32_t i = 0; i < b->ndiffs; i++) {
        nsites += b->diffs[i].nsites;
        for (uint32_t k = 0; k < b->diffs[i].nsites; k++) {
            size_t f = b->diffs[i].sites[k].nframes;
            nframes += f;
            if (f > *max_frames)
                *max_frames = f;
        }
    }
    size_t ns = nsites ? nsites : 1, nd = b->ndiffs ? b->ndiffs : 1, ng = b->ngc ? b->ngc : 1;
    t->sites = calloc(ns, sizeof(*t->sites));
    t->site_ptrs = calloc(ns, sizeof(*t->site_ptrs));
    t->tb = calloc(2 * nframes + 1, sizeof(*t->tb));
    t->stats = calloc(ns, sizeof(*t->stats));
    t->stat_ptrs = calloc(ns, sizeof(*t->stat_ptrs));
    t->diffs = calloc(nd, sizeof(*t->diffs));
    t->diff_ptrs = calloc(nd, sizeof(*t->diff_ptrs));
    t->gc = calloc(ng, sizeof(*t->gc));
    t->gc_ptrs = calloc(ng, sizeof(*t->gc_ptrs));
    t->gens = calloc(ng * APM_GC_GENERATIONS_MAX, sizeof(*t->gens));
    t->gen_ptrs = calloc(ng * APM_GC_GENERATIONS_MAX, sizeof(*t->gen_ptrs));
    if (!t->sites || !t->site_ptrs || !t->tb || !t->stats || !t->stat_ptrs || !t->diffs ||
        !t->diff_ptrs || !t->gc || !t->gc_ptrs || !t->gens || !t->gen_ptrs)
        return -ENOMEM;
    return 0;
}

/*
 * Finds or defines the site. key is scratch room for 2 + 2 * nframes words:
 * the site's identity on the connection is its string refs and lines.
 */
static int enc_site(struct apm_codec_enc *e, struct enc_work *w, const struct apm_site_stat *st,
                    uint32_t *key, uint32_t **tb_next, uint32_t *ref)
{
    int rc = codec_intern(e, w, st->file, &key[0]);
    key[1] = st->line;
    for (uint32_t f = 0; rc == 0 && f < st->nframes; f++) {
        rc = codec_intern(e, w, st->frames[f].file, &key[2 + 2 * f]);
        key[3 + 2 * f] = st->frames[f].line;
    }
    if (rc != 0)
        return rc;
    size_t klen = (2 + 2 * (size_t)st->nframes) * sizeof(*key);
    uint64_t v;
    if (apm_hashmap_get(&e->sites, key, klen, &v) == 0) {
        *ref = (uint32_t)v;
        return 0;
    }
    if (e->nsites >= APM_CODEC_MAX_SITES)
        return APM_E_LIMIT;
    rc = apm_hashmap_put(&e->sites, key, klen, e->nsites + 1);
    if (rc != 0)
        return rc;
    struct enc_trace *t = &w->trace;
    Apm__SiteDef *d = &t->sites[t->nsites];
    apm__site_def__init(d);
    d->ref = ++e->nsites;
    d->file = key[0];
    d->line = key[1];
    d->n_traceback = 2 * (size_t)st->nframes;
    d->traceback = *tb_next;
    memcpy(*tb_next, key + 2, d->n_traceback * sizeof(*key));
    *tb_next += d->n_traceback;
    t->site_ptrs[t->nsites++] = d;
    *ref = d->ref;
    return 0;
}

static int enc_diff(struct apm_codec_enc *e, struct enc_work *w, const struct apm_batch *b,
                    const struct apm_trace_diff *diff, uint32_t *proc_refs, uint32_t *key,
                    uint32_t **tb_next, size_t *stat_next)
{
    if (diff->proc >= b->nprocs)
        return -EINVAL;
    int rc = 0;
    if (proc_refs[diff->proc] == 0)
        rc = codec_enc_proc(e, w, &b->procs[diff->proc], &proc_refs[diff->proc]);
    if (rc != 0)
        return rc;
    struct enc_trace *t = &w->trace;
    Apm__TraceDiff *m = &t->diffs[t->ndiffs];
    apm__trace_diff__init(m);
    m->process = proc_refs[diff->proc];
    m->t_ms = diff->t_ms;
    m->probe_seq = diff->probe_seq;
    m->key_type = (char *)(diff->traceback ? KEY_TRACEBACK : KEY_LINENO);
    m->frames = diff->frames;
    m->traced_current = diff->traced_current;
    m->traced_peak = diff->traced_peak;
    m->tracemalloc_memory = diff->tracemalloc_memory;
    m->total_size = diff->total_size;
    m->total_count = diff->total_count;
    m->session = diff->session;
    m->interval_ms = diff->interval_ms;
    m->total_size_diff = diff->total_size_diff;
    m->total_count_diff = diff->total_count_diff;
    m->groups = diff->groups;
    m->truncated = diff->truncated;
    m->sample_bytes = diff->sample_bytes;
    m->samples = diff->samples;
    m->n_top = diff->nsites;
    m->top = &t->stat_ptrs[*stat_next];
    for (uint32_t k = 0; k < diff->nsites; k++) {
        const struct apm_site_stat *st = &diff->sites[k];
        Apm__SiteStat *ms = &t->stats[*stat_next];
        apm__site_stat__init(ms);
        rc = enc_site(e, w, st, key, tb_next, &ms->site);
        if (rc != 0)
            return rc;
        ms->size = st->size;
        ms->size_diff = st->size_diff;
        ms->count = st->count;
        ms->count_diff = st->count_diff;
        ms->size_err = st->size_err;
        ms->growth_var = st->growth_var;
        t->stat_ptrs[(*stat_next)++] = ms;
    }
    t->diff_ptrs[t->ndiffs++] = m;
    return 0;
}

static int enc_gc(struct apm_codec_enc *e, struct enc_work *w, const struct apm_batch *b,
                  const struct apm_gc_stats *g, uint32_t *proc_refs)
{
    if (g->proc >= b->nprocs || g->ngen > APM_GC_GENERATIONS_MAX)
        return -EINVAL;
    int rc = 0;
    if (proc_refs[g->proc] == 0)
        rc = codec_enc_proc(e, w, &b->procs[g->proc], &proc_refs[g->proc]);
    if (rc != 0)
        return rc;
    struct enc_trace *t = &w->trace;
    size_t base = t->ngc * APM_GC_GENERATIONS_MAX;
    Apm__GcStats *m = &t->gc[t->ngc];
    apm__gc_stats__init(m);
    m->process = proc_refs[g->proc];
    m->t_ms = g->t_ms;
    m->garbage = g->garbage;
    m->n_generations = g->ngen;
    m->generations = &t->gen_ptrs[base];
    for (uint32_t i = 0; i < g->ngen; i++) {
        Apm__GcGeneration *gm = &t->gens[base + i];
        apm__gc_generation__init(gm);
        gm->collections = g->gen[i].collections;
        gm->collected = g->gen[i].collected;
        gm->uncollectable = g->gen[i].uncollectable;
        gm->count = g->gen[i].count;
        t->gen_ptrs[base + i] = gm;
    }
    t->gc_ptrs[t->ngc++] = m;
    return 0;
}

int codec_enc_trace(struct apm_codec_enc *e, struct enc_work *w, const struct apm_batch *b,
                    uint32_t *proc_refs)
{
    if (b->ndiffs == 0 && b->ngc == 0)
        return 0;
    size_t max_frames = 0;
    int rc = trace_alloc(&w->trace, b, &max_frames);
    uint32_t *key = rc == 0 ? malloc((2 + 2 * max_frames) * sizeof(*key)) : NULL;
    if (rc == 0 && key == NULL)
        rc = -ENOMEM;
    uint32_t *tb_next = w->trace.tb;
    size_t stat_next = 0;
    for (uint32_t i = 0; rc == 0 && i < b->ndiffs; i++)
        rc = enc_diff(e, w, b, &b->diffs[i], proc_refs, key, &tb_next, &stat_next);
    for (uint32_t i = 0; rc == 0 && i < b->ngc; i++)
        rc = enc_gc(e, w, b, &b->gc[i], proc_refs);
    free(key);
    return rc;
}
