#include "common/wire/codec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/wire/codec_priv.h"
#include "common/base/error.h"
#include "common/wire/frame.h"

/* Wrapping arithmetic: hostile deltas must not be undefined behaviour. */
static int64_t wrap_add(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a + (uint64_t)b);
}

static int64_t wrap_sub(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a - (uint64_t)b);
}

void apm_msg_clear(struct apm_msg *m)
{
    if (m == NULL)
        return;
    if (m->type == APM_MSG_BATCH)
        apm_batch_free(m->u.batch);
    memset(m, 0, sizeof(*m));
}

/* ---------------------------------------------------------------- decode */

void apm_codec_dec_init(struct apm_codec_dec *d)
{
    memset(d, 0, sizeof(*d));
}

void apm_codec_dec_close(struct apm_codec_dec *d)
{
    if (d == NULL)
        return;
    for (uint32_t i = 1; i <= d->nstrings; i++)
        free(d->strings[i]);
    free(d->strings);
    free(d->procs);
    free(d->series);
    codec_dec_sites_free(d);
    memset(d, 0, sizeof(*d));
}

int codec_grow_array(void **arr, uint32_t *cap, uint32_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    uint32_t ncap = *cap ? *cap : 64;
    while (ncap < need)
        ncap *= 2;
    void *na = realloc(*arr, (size_t)ncap * elem);
    if (na == NULL)
        return -ENOMEM;
    *arr = na;
    *cap = ncap;
    return 0;
}

static int dec_strings(struct apm_codec_dec *d, const Apm__Batch *b)
{
    if (b->n_strings > APM_CODEC_MAX_STRINGS - d->nstrings)
        return APM_E_LIMIT;
    /* Slot 0 is reserved so that refs index the array directly. */
    int rc = codec_grow_array((void **)&d->strings, &d->strings_cap,
                              d->nstrings + (uint32_t)b->n_strings + 1, sizeof(char *));
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < b->n_strings; i++) {
        size_t len = strlen(b->strings[i]);
        if (len > MAX_STRING_LEN)
            return APM_E_DECODE;
        if (d->string_bytes + len > APM_CODEC_MAX_STRING_BYTES)
            return APM_E_LIMIT;
        unsigned fixed = 0;
        char *s = apm_text_dup(b->strings[i], APM_MODEL_STRING_MAX, &fixed);
        if (s == NULL)
            return -ENOMEM;
        apm_text_fixes_add(&d->fixes, fixed);
        d->strings[++d->nstrings] = s;
        d->string_bytes += len;
    }
    return 0;
}

int codec_valid_string_ref(const struct apm_codec_dec *d, uint32_t ref)
{
    return ref <= d->nstrings;
}

const char *codec_string_at(const struct apm_codec_dec *d, uint32_t ref)
{
    return ref == 0 ? "" : d->strings[ref];
}

static int dec_procs(struct apm_codec_dec *d, const Apm__Batch *b)
{
    if (b->n_processes > APM_CODEC_MAX_PROCS - d->nprocs)
        return APM_E_LIMIT;
    int rc = codec_grow_array((void **)&d->procs, &d->procs_cap,
                              d->nprocs + (uint32_t)b->n_processes + 1, sizeof(struct dec_proc));
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < b->n_processes; i++) {
        const Apm__ProcessDef *p = b->processes[i];
        if (p->ref != d->nprocs + 1 || p->pid <= 0 || !codec_valid_string_ref(d, p->name) ||
            !codec_valid_string_ref(d, p->cmdline) || !codec_valid_string_ref(d, p->cgroup))
            return APM_E_DECODE;
        struct dec_proc *dp = &d->procs[++d->nprocs];
        dp->pid = p->pid;
        dp->ppid = p->ppid;
        dp->start_ms = p->start_ms;
        dp->name = p->name;
        dp->cmdline = p->cmdline;
        dp->cgroup = p->cgroup;
    }
    return 0;
}

static int dec_series(struct apm_codec_dec *d, const Apm__Batch *b)
{
    if (b->n_series > APM_CODEC_MAX_SERIES - d->nseries)
        return APM_E_LIMIT;
    int rc = codec_grow_array((void **)&d->series, &d->series_cap,
                              d->nseries + (uint32_t)b->n_series + 1, sizeof(struct dec_series));
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < b->n_series; i++) {
        const Apm__SeriesDef *s = b->series[i];
        enum apm_metric m = (enum apm_metric)s->metric;
        if (s->ref != d->nseries + 1 || s->process > d->nprocs || apm_metric_name(m) == NULL ||
            m == APM_METRIC_SITE_SIZE || m == APM_METRIC_SITE_COUNT ||
            m >= APM_METRIC_GC_COLLECTIONS || (s->process == 0) != apm_metric_is_host(m))
            return APM_E_DECODE;
        struct dec_series *ds = &d->series[++d->nseries];
        ds->proc = s->process;
        ds->metric = m;
        ds->last = 0;
    }
    return 0;
}

int codec_batch_proc(const struct apm_codec_dec *d, struct apm_batch *out, uint32_t *map,
                     uint32_t ref, uint32_t *index)
{
    if (ref == 0) {
        *index = APM_PROC_HOST;
        return 0;
    }
    if (map[ref] != UINT32_MAX) {
        *index = map[ref];
        return 0;
    }
    const struct dec_proc *dp = &d->procs[ref];
    struct apm_proc_desc desc = {
        .pid = dp->pid,
        .ppid = dp->ppid,
        .start_ms = dp->start_ms,
        .name = (char *)codec_string_at(d, dp->name),
        .cmdline = (char *)codec_string_at(d, dp->cmdline),
        .cgroup = (char *)codec_string_at(d, dp->cgroup),
    };
    int rc = apm_batch_append_proc(out, &desc, index);
    if (rc == 0)
        map[ref] = *index;
    return rc;
}

static int dec_tick(struct apm_codec_dec *d, int64_t base, const Apm__Tick *tk,
                    struct apm_batch *out, uint32_t *map)
{
    if (tk->n_series_delta != tk->n_v_delta)
        return APM_E_DECODE;
    int64_t t = wrap_add(base, tk->t_delta);
    int64_t ref = 0;
    for (size_t i = 0; i < tk->n_series_delta; i++) {
        ref += tk->series_delta[i];
        if (ref <= 0 || ref > (int64_t)d->nseries)
            return APM_E_DECODE;
        struct dec_series *ds = &d->series[ref];
        uint32_t proc;
        int rc = codec_batch_proc(d, out, map, ds->proc, &proc);
        if (rc != 0)
            return rc;
        struct apm_series_block *blk;
        rc = apm_batch_append_block(out, proc, ds->metric, 1, &blk);
        if (rc != 0)
            return rc;
        ds->last = wrap_add(ds->last, tk->v_delta[i]);
        blk->t_ms[0] = t;
        blk->value[0] = ds->last;
        blk->n = 1;
        out->nsamples++;
    }
    return 0;
}

static int dec_samples(struct apm_codec_dec *d, const Apm__Batch *b, struct apm_batch *out,
                       uint32_t *map)
{
    int rc = 0;
    for (size_t i = 0; i < b->n_samples; i++) {
        const Apm__Samples *s = b->samples[i];
        if (s->series == 0 || s->series > d->nseries || s->n_t_delta != s->n_v_delta ||
            s->n_t_delta == 0 || s->n_t_delta > UINT32_MAX / 2) {
            rc = APM_E_DECODE;
            break;
        }
        struct dec_series *ds = &d->series[s->series];
        uint32_t proc;
        rc = codec_batch_proc(d, out, map, ds->proc, &proc);
        if (rc != 0)
            break;
        struct apm_series_block *blk;
        rc = apm_batch_append_block(out, proc, ds->metric, (uint32_t)s->n_t_delta, &blk);
        if (rc != 0)
            break;
        int64_t t = b->base_ms, v = ds->last;
        for (size_t k = 0; k < s->n_t_delta; k++) {
            t = wrap_add(t, s->t_delta[k]);
            v = wrap_add(v, s->v_delta[k]);
            blk->t_ms[k] = t;
            blk->value[k] = v;
        }
        blk->n = (uint32_t)s->n_t_delta;
        out->nsamples += blk->n;
        ds->last = v;
    }
    for (size_t i = 0; rc == 0 && i < b->n_ticks; i++)
        rc = dec_tick(d, b->base_ms, b->ticks[i], out, map);
    return rc;
}

/* The agent's health counters: bounded, names checked, never trusted further. */
static int dec_health(const Apm__Health *h, struct apm_batch *out)
{
    if (h == NULL)
        return 0;
    if (h->n_counters > APM_HEALTH_MAX)
        return APM_E_DECODE;
    out->health = calloc(1, sizeof(*out->health));
    if (out->health == NULL)
        return -ENOMEM;
    out->health->t_ms = h->t_ms;
    for (size_t i = 0; i < h->n_counters; i++) {
        const Apm__HealthCounter *c = h->counters[i];
        if (apm_health_add(out->health, c->name, c->value, c->gauge) != 0)
            return APM_E_DECODE;
    }
    return 0;
}

static int dec_batch(struct apm_codec_dec *d, const Apm__Batch *b, struct apm_msg *out)
{
    if (d == NULL)
        return APM_E_PROTO;
    if (b->seq == 0)
        return APM_E_DECODE;
    struct apm_batch *batch = apm_batch_new(b->seq);
    if (batch == NULL)
        return -ENOMEM;
    size_t total = 0;
    for (size_t i = 0; i < b->n_samples; i++)
        total += b->samples[i]->n_t_delta;
    for (size_t i = 0; i < b->n_ticks; i++)
        total += b->ticks[i]->n_series_delta;
    int rc = apm_batch_reserve(batch, total);
    if (rc == 0)
        rc = dec_strings(d, b);
    if (rc == 0)
        rc = dec_procs(d, b);
    if (rc == 0)
        rc = dec_series(d, b);
    /* Connection process ref -> index in this batch, filled on first use. */
    uint32_t *map = NULL;
    if (rc == 0 && (map = malloc(((size_t)d->nprocs + 1) * sizeof(*map))) == NULL)
        rc = -ENOMEM;
    if (rc == 0) {
        memset(map, 0xff, ((size_t)d->nprocs + 1) * sizeof(*map));
        rc = dec_samples(d, b, batch, map);
    }
    if (rc == 0)
        rc = codec_dec_trace(d, b, batch, map);
    if (rc == 0)
        rc = dec_health(b->health, batch);
    free(map);
    if (rc != 0) {
        apm_batch_free(batch);
        return rc;
    }
    out->type = APM_MSG_BATCH;
    out->u.batch = batch;
    return 0;
}

/* Cleans a Hello string into its fixed buffer, counting what it changed. */
static void copy_str(char *dst, size_t size, const char *src, struct apm_text_fixes *fixes)
{
    apm_text_fixes_add(fixes, apm_text_clean(dst, size, src, strlen(src)));
}

static int dec_hello(const Apm__Hello *h, struct apm_msg *out)
{
    struct apm_msg_hello *o = &out->u.hello;
    if (h->token.len > APM_TOKEN_MAX || h->agent_id[0] == '\0' || h->host[0] == '\0')
        return APM_E_DECODE;
    copy_str(o->ident.agent_id, sizeof(o->ident.agent_id), h->agent_id, &o->fixes);
    copy_str(o->ident.host, sizeof(o->ident.host), h->host, &o->fixes);
    copy_str(o->ident.boot_id, sizeof(o->ident.boot_id), h->boot_id, &o->fixes);
    copy_str(o->ident.version, sizeof(o->ident.version), h->version, &o->fixes);
    o->protocol = h->protocol;
    o->ident.instance = h->instance;
    if (h->token.len > 0)
        memcpy(o->token, h->token.data, h->token.len);
    o->token_len = h->token.len;
    out->type = APM_MSG_HELLO;
    return 0;
}

int apm_codec_decode(struct apm_codec_dec *d, const uint8_t *payload, size_t len,
                     struct apm_msg *out)
{
    memset(out, 0, sizeof(*out));
    Apm__Frame *f = apm__frame__unpack(NULL, len, payload);
    if (f == NULL)
        return APM_E_DECODE;
    int rc = 0;
    switch (f->msg_case) {
    case APM__FRAME__MSG_HELLO:
        rc = dec_hello(f->hello, out);
        break;
    case APM__FRAME__MSG_HELLO_ACK:
        out->type = APM_MSG_HELLO_ACK;
        out->u.hello_ack.last_seq = f->hello_ack->last_seq;
        out->u.hello_ack.max_frame = f->hello_ack->max_frame;
        break;
    case APM__FRAME__MSG_BATCH:
        rc = dec_batch(d, f->batch, out);
        break;
    case APM__FRAME__MSG_ACK:
        out->type = APM_MSG_ACK;
        out->u.ack_seq = f->ack->seq;
        break;
    case APM__FRAME__MSG_ERROR:
        out->type = APM_MSG_ERROR;
        out->u.error.code = (enum apm_wire_error)f->error->code;
        out->u.error.retryable = f->error->retryable;
        out->u.error.seq = f->error->seq;
        /* The peer's words reach a log line: cleaned like every other string. */
        apm_text_clean(out->u.error.text, sizeof(out->u.error.text), f->error->text,
                       strlen(f->error->text));
        break;
    case APM__FRAME__MSG_CONTROL: {
        const Apm__Control *c = f->control;
        if (c->action != APM__CONTROL__ACTION__ACTION_TRACE &&
            c->action != APM__CONTROL__ACTION__ACTION_STOP) {
            rc = APM_E_DECODE;
            break;
        }
        out->type = APM_MSG_CONTROL;
        out->u.control.action = (enum apm_control_action)c->action;
        out->u.control.pid = c->pid;
        out->u.control.start_ms = c->start_ms;
        out->u.control.duration_s = c->duration_s;
        out->u.control.max_memory = c->max_memory;
        out->u.control.frames = c->frames;
        out->u.control.exact = c->exact;
        break;
    }
    default:
        rc = APM_E_DECODE;
        break;
    }
    apm__frame__free_unpacked(f, NULL);
    if (rc != 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

/* ---------------------------------------------------------------- encode */

static int pack_frame(const Apm__Frame *f, struct apm_frame_out *out)
{
    size_t len = apm__frame__get_packed_size(f);
    if (len > APM_FRAME_MAX)
        return APM_E_FRAME_TOO_BIG;
    uint8_t *buf = malloc(APM_FRAME_HEADER + len);
    if (buf == NULL)
        return -ENOMEM;
    apm_frame_put_header(buf, (uint32_t)len);
    apm__frame__pack(f, buf + APM_FRAME_HEADER);
    out->buf = buf;
    out->len = APM_FRAME_HEADER + len;
    return 0;
}

int apm_codec_encode_hello(const struct apm_msg_hello *h, struct apm_frame_out *out)
{
    Apm__Hello m = APM__HELLO__INIT;
    m.protocol = h->protocol ? h->protocol : APM_PROTOCOL_VERSION;
    m.agent_id = (char *)h->ident.agent_id;
    m.host = (char *)h->ident.host;
    m.boot_id = (char *)h->ident.boot_id;
    m.version = (char *)h->ident.version;
    m.token.data = (uint8_t *)h->token;
    m.token.len = h->token_len;
    m.instance = h->ident.instance;
    Apm__Frame f = APM__FRAME__INIT;
    f.msg_case = APM__FRAME__MSG_HELLO;
    f.hello = &m;
    return pack_frame(&f, out);
}

int apm_codec_encode_hello_ack(uint64_t last_seq, uint32_t max_frame, struct apm_frame_out *out)
{
    Apm__HelloAck m = APM__HELLO_ACK__INIT;
    m.last_seq = last_seq;
    m.max_frame = max_frame;
    Apm__Frame f = APM__FRAME__INIT;
    f.msg_case = APM__FRAME__MSG_HELLO_ACK;
    f.hello_ack = &m;
    return pack_frame(&f, out);
}

int apm_codec_encode_ack(uint64_t seq, struct apm_frame_out *out)
{
    Apm__Ack m = APM__ACK__INIT;
    m.seq = seq;
    Apm__Frame f = APM__FRAME__INIT;
    f.msg_case = APM__FRAME__MSG_ACK;
    f.ack = &m;
    return pack_frame(&f, out);
}

int apm_codec_encode_error(const struct apm_msg_error *e, struct apm_frame_out *out)
{
    Apm__Error m = APM__ERROR__INIT;
    m.code = (Apm__ErrorCode)e->code;
    m.retryable = e->retryable;
    m.text = (char *)e->text;
    m.seq = e->seq;
    Apm__Frame f = APM__FRAME__INIT;
    f.msg_case = APM__FRAME__MSG_ERROR;
    f.error = &m;
    return pack_frame(&f, out);
}

int apm_codec_encode_control(const struct apm_msg_control *c, struct apm_frame_out *out)
{
    Apm__Control m = APM__CONTROL__INIT;
    m.action = (Apm__Control__Action)c->action;
    m.pid = c->pid;
    m.start_ms = c->start_ms;
    m.duration_s = c->duration_s;
    m.max_memory = c->max_memory;
    m.frames = c->frames;
    m.exact = c->exact;
    Apm__Frame f = APM__FRAME__INIT;
    f.msg_case = APM__FRAME__MSG_CONTROL;
    f.control = &m;
    return pack_frame(&f, out);
}

void apm_codec_enc_init(struct apm_codec_enc *e)
{
    memset(e, 0, sizeof(*e));
    apm_hashmap_init(&e->strings);
    apm_hashmap_init(&e->procs);
    apm_hashmap_init(&e->sites);
}

void apm_codec_enc_close(struct apm_codec_enc *e)
{
    if (e == NULL)
        return;
    apm_hashmap_close(&e->strings);
    apm_hashmap_close(&e->procs);
    free(e->series_of);
    apm_hashmap_close(&e->sites);
    free(e->last);
    memset(e, 0, sizeof(*e));
}

bool apm_codec_enc_full(const struct apm_codec_enc *e)
{
    return e->nstrings > APM_CODEC_MAX_STRINGS / 2 || e->nprocs > APM_CODEC_MAX_PROCS / 2 ||
           e->nseries > APM_CODEC_MAX_SERIES / 2 || e->nsites > APM_CODEC_MAX_SITES / 2;
}

static void enc_work_free(struct enc_work *w)
{
    free(w->strings);
    free(w->procs);
    free(w->proc_ptrs);
    free(w->series);
    free(w->series_ptrs);
    free(w->samples);
    free(w->sample_ptrs);
    free(w->deltas);
    free(w->tick_series);
    free(w->tick_values);
    codec_enc_trace_free(&w->trace);
}

int codec_intern(struct apm_codec_enc *e, struct enc_work *w, const char *s, uint32_t *ref)
{
    if (s == NULL || s[0] == '\0') {
        *ref = 0;
        return 0;
    }
    size_t len = strlen(s);
    if (len > MAX_STRING_LEN)
        return APM_E_LIMIT; /* batches cap their strings far below this */
    uint64_t v;
    if (apm_hashmap_get(&e->strings, s, len, &v) == 0) {
        *ref = (uint32_t)v;
        return 0;
    }
    if (e->nstrings >= APM_CODEC_MAX_STRINGS)
        return APM_E_LIMIT;
    if (w->nstrings == w->strings_cap) {
        size_t cap = w->strings_cap ? w->strings_cap * 2 : 64;
        char **ns = realloc(w->strings, cap * sizeof(*ns));
        if (ns == NULL)
            return -ENOMEM;
        w->strings = ns;
        w->strings_cap = cap;
    }
    int rc = apm_hashmap_put(&e->strings, s, len, e->nstrings + 1);
    if (rc != 0)
        return rc;
    /* The message borrows the batch's text; it is packed before b changes. */
    w->strings[w->nstrings++] = (char *)s;
    *ref = ++e->nstrings;
    return 0;
}

int codec_enc_proc(struct apm_codec_enc *e, struct enc_work *w, const struct apm_proc_desc *p,
                   uint32_t *ref)
{
    /*
     * The description is part of the key: a process renamed by its exec (or
     * moved to another cgroup) is defined again under a new reference, so
     * the collector sees its current name on this connection too.
     */
    uint64_t h = 0;
    const char *strs[3] = {p->name, p->cmdline, p->cgroup};
    for (int i = 0; i < 3; i++) {
        const char *x = strs[i] != NULL ? strs[i] : "";
        h = h * 31 + apm_hash_bytes(x, strlen(x));
    }
    struct {
        int32_t pid;
        int32_t pad;
        int64_t start_ms;
        uint64_t desc;
    } key = {p->pid, 0, p->start_ms, h};
    uint64_t v;
    if (apm_hashmap_get(&e->procs, &key, sizeof(key), &v) == 0) {
        *ref = (uint32_t)v;
        return 0;
    }
    if (e->nprocs >= APM_CODEC_MAX_PROCS)
        return APM_E_LIMIT;
    Apm__ProcessDef *d = &w->procs[w->nprocs];
    apm__process_def__init(d);
    int rc = codec_intern(e, w, p->name, &d->name);
    if (rc == 0)
        rc = codec_intern(e, w, p->cmdline, &d->cmdline);
    if (rc == 0)
        rc = codec_intern(e, w, p->cgroup, &d->cgroup);
    if (rc == 0)
        rc = apm_hashmap_put(&e->procs, &key, sizeof(key), e->nprocs + 1);
    if (rc != 0)
        return rc;
    d->ref = ++e->nprocs;
    d->pid = p->pid;
    d->ppid = p->ppid;
    d->start_ms = p->start_ms;
    w->proc_ptrs[w->nprocs++] = d;
    *ref = d->ref;
    return 0;
}

static int enc_series(struct apm_codec_enc *e, struct enc_work *w, uint32_t proc_ref,
                      enum apm_metric metric, uint32_t *ref)
{
    /*
     * Series of one process sit side by side in a flat table indexed by process reference:
     * a few bytes per process instead of a hash entry and a copied key per series.
     */
    if ((unsigned)metric >= APM_METRIC_COUNT)
        return -EINVAL;
    size_t slot = (size_t)proc_ref * APM_METRIC_COUNT + (size_t)metric;
    if (slot < e->series_of_cap && e->series_of[slot] != 0) {
        *ref = e->series_of[slot];
        return 0;
    }
    if (e->nseries >= APM_CODEC_MAX_SERIES)
        return APM_E_LIMIT;
    if (e->nseries + 2 > e->last_cap) {
        uint32_t cap = e->last_cap ? e->last_cap * 2 : 256;
        int64_t *nl = realloc(e->last, cap * sizeof(*nl));
        if (nl == NULL)
            return -ENOMEM;
        e->last = nl;
        e->last_cap = cap;
    }
    if (slot >= e->series_of_cap) {
        size_t cap = e->series_of_cap ? e->series_of_cap : 64 * APM_METRIC_COUNT;
        while (cap <= slot)
            cap *= 2;
        uint32_t *ns = realloc(e->series_of, cap * sizeof(*ns));
        if (ns == NULL)
            return -ENOMEM;
        memset(ns + e->series_of_cap, 0, (cap - e->series_of_cap) * sizeof(*ns));
        e->series_of = ns;
        e->series_of_cap = (uint32_t)cap;
    }
    e->series_of[slot] = e->nseries + 1;
    Apm__SeriesDef *d = &w->series[w->nseries];
    apm__series_def__init(d);
    d->ref = ++e->nseries;
    d->process = proc_ref;
    d->metric = (Apm__Metric)metric;
    e->last[d->ref] = 0;
    w->series_ptrs[w->nseries++] = d;
    *ref = d->ref;
    return 0;
}

static int enc_alloc(struct enc_work *w, const struct apm_batch *b)
{
    size_t np = b->nprocs ? b->nprocs : 1, ns = b->nseries ? b->nseries : 1;
    w->procs = calloc(np, sizeof(*w->procs));
    w->proc_ptrs = calloc(np, sizeof(*w->proc_ptrs));
    w->series = calloc(ns, sizeof(*w->series));
    w->series_ptrs = calloc(ns, sizeof(*w->series_ptrs));
    w->samples = calloc(ns, sizeof(*w->samples));
    w->sample_ptrs = calloc(ns, sizeof(*w->sample_ptrs));
    w->deltas = calloc(2 * (b->nsamples ? b->nsamples : 1), sizeof(*w->deltas));
    w->tick_series = calloc(ns, sizeof(*w->tick_series));
    w->tick_values = calloc(ns, sizeof(*w->tick_values));
    if (!w->procs || !w->proc_ptrs || !w->series || !w->series_ptrs || !w->samples ||
        !w->sample_ptrs || !w->deltas || !w->tick_series || !w->tick_values)
        return -ENOMEM;
    apm__tick__init(&w->tick);
    w->tick.series_delta = w->tick_series;
    w->tick.v_delta = w->tick_values;
    return 0;
}

static int enc_blocks(struct apm_codec_enc *e, struct enc_work *w, const struct apm_batch *b,
                      uint32_t *proc_refs, int64_t base)
{
    int64_t *dp = w->deltas;
    int64_t last_ref = 0;
    for (uint32_t i = 0; i < b->nseries; i++) {
        const struct apm_series_block *blk = &b->series[i];
        uint32_t pref = 0;
        if (blk->proc != APM_PROC_HOST) {
            if (proc_refs[blk->proc] == 0) {
                int rc = codec_enc_proc(e, w, &b->procs[blk->proc], &proc_refs[blk->proc]);
                if (rc != 0)
                    return rc;
            }
            pref = proc_refs[blk->proc];
        }
        uint32_t sref;
        int rc = enc_series(e, w, pref, blk->metric, &sref);
        if (rc != 0)
            return rc;
        if (blk->n == 1 && blk->t_ms[0] == base) {
            /* Single samples at the batch's instant go into the tick's columns. */
            size_t k = w->tick.n_series_delta++;
            w->tick.n_v_delta++;
            w->tick_series[k] = (int32_t)((int64_t)sref - last_ref);
            last_ref = sref;
            w->tick_values[k] = wrap_sub(blk->value[0], e->last[sref]);
            e->last[sref] = blk->value[0];
            continue;
        }
        Apm__Samples *s = &w->samples[w->nsample_msgs];
        apm__samples__init(s);
        s->series = sref;
        s->n_t_delta = s->n_v_delta = blk->n;
        s->t_delta = dp;
        s->v_delta = dp + blk->n;
        int64_t t = base, v = e->last[sref];
        for (uint32_t k = 0; k < blk->n; k++) {
            s->t_delta[k] = wrap_sub(blk->t_ms[k], t);
            s->v_delta[k] = wrap_sub(blk->value[k], v);
            t = blk->t_ms[k];
            v = blk->value[k];
        }
        e->last[sref] = v;
        dp += 2 * (size_t)blk->n;
        w->sample_ptrs[w->nsample_msgs++] = s;
    }
    return 0;
}

int apm_codec_encode_batch(struct apm_codec_enc *e, const struct apm_batch *b,
                           struct apm_frame_out *out)
{
    struct enc_work w;
    memset(&w, 0, sizeof(w));
    uint32_t *proc_refs = calloc(b->nprocs ? b->nprocs : 1, sizeof(*proc_refs));
    int rc = proc_refs ? enc_alloc(&w, b) : -ENOMEM;
    int64_t base = 0;
    for (uint32_t i = 0; i < b->nseries; i++) {
        if (b->series[i].n > 0) {
            base = b->series[i].t_ms[0];
            break;
        }
    }
    if (rc == 0)
        rc = enc_blocks(e, &w, b, proc_refs, base);
    if (rc == 0)
        rc = codec_enc_trace(e, &w, b, proc_refs);
    Apm__Health health = APM__HEALTH__INIT;
    Apm__HealthCounter hc[APM_HEALTH_MAX];
    Apm__HealthCounter *hc_ptrs[APM_HEALTH_MAX];
    if (rc == 0 && b->health != NULL && b->health->n > APM_HEALTH_MAX)
        rc = -EINVAL;
    for (uint32_t i = 0; rc == 0 && b->health != NULL && i < b->health->n; i++) {
        apm__health_counter__init(&hc[i]);
        hc[i].name = (char *)b->health->c[i].name;
        hc[i].value = b->health->c[i].value;
        hc[i].gauge = b->health->c[i].gauge;
        hc_ptrs[i] = &hc[i];
    }
    if (rc == 0) {
        Apm__Batch m = APM__BATCH__INIT;
        if (b->health != NULL) {
            health.t_ms = b->health->t_ms;
            health.n_counters = b->health->n;
            health.counters = hc_ptrs;
            m.health = &health;
        }
        m.seq = b->seq;
        m.base_ms = base;
        m.n_strings = w.nstrings;
        m.strings = w.strings;
        m.n_processes = w.nprocs;
        m.processes = w.proc_ptrs;
        m.n_series = w.nseries;
        m.series = w.series_ptrs;
        m.n_samples = w.nsample_msgs;
        m.samples = w.sample_ptrs;
        if (w.tick.n_series_delta > 0) {
            w.tick_ptr = &w.tick;
            m.n_ticks = 1;
            m.ticks = &w.tick_ptr;
        }
        codec_enc_trace_attach(&w.trace, &m);
        Apm__Frame f = APM__FRAME__INIT;
        f.msg_case = APM__FRAME__MSG_BATCH;
        f.batch = &m;
        rc = pack_frame(&f, out);
    }
    free(proc_refs);
    enc_work_free(&w);
    return rc;
}
