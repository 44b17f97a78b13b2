/* Codec: round trips through per-connection state, hostile and truncated input. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "apm.pb-c.h"
#include "common/wire/codec.h"
#include "common/base/error.h"
#include "common/wire/frame.h"

static struct apm_batch *sample_batch(uint64_t seq, int64_t t0, int nprocs)
{
    struct apm_batch *b = apm_batch_new(seq);
    assert_non_null(b);
    for (int i = 0; i < nprocs; i++) {
        char name[32], cmd[64];
        snprintf(name, sizeof(name), "worker-%d.py", i);
        snprintf(cmd, sizeof(cmd), "python3 /srv/worker-%d.py --port %d", i, 8000 + i);
        struct apm_proc_desc p = {.pid = 100 + i,
                                  .ppid = 1,
                                  .start_ms = 1700000000000LL + i,
                                  .name = name,
                                  .cmdline = cmd,
                                  .cgroup = "/system.slice/app.service"};
        uint32_t idx;
        assert_int_equal(apm_batch_add_proc(b, &p, &idx), 0);
        assert_int_equal(apm_batch_add_sample(b, idx, APM_METRIC_RSS, t0, 50000000 + i * 4096), 0);
        assert_int_equal(apm_batch_add_sample(b, idx, APM_METRIC_CGROUP_LIMIT, t0, 1LL << 31), 0);
    }
    assert_int_equal(
        apm_batch_add_sample(b, APM_PROC_HOST, APM_METRIC_MEM_AVAILABLE, t0, 1LL << 33), 0);
    return b;
}

/* Decodes a framed buffer (header included) with the given state. */
static int decode_frame(struct apm_codec_dec *d, const struct apm_frame_out *f, struct apm_msg *m)
{
    return apm_codec_decode(d, f->buf + APM_FRAME_HEADER, f->len - APM_FRAME_HEADER, m);
}

static void assert_batches_equal(const struct apm_batch *a, const struct apm_batch *b)
{
    assert_int_equal(a->seq, b->seq);
    assert_int_equal(a->nsamples, b->nsamples);
    assert_int_equal(a->nseries, b->nseries);
    for (uint32_t i = 0; i < a->nseries; i++) {
        const struct apm_series_block *x = &a->series[i], *y = &b->series[i];
        assert_int_equal(x->metric, y->metric);
        assert_int_equal(x->n, y->n);
        if (x->proc == APM_PROC_HOST) {
            assert_int_equal(y->proc, APM_PROC_HOST);
        } else {
            const struct apm_proc_desc *p = &a->procs[x->proc], *q = &b->procs[y->proc];
            assert_int_equal(p->pid, q->pid);
            assert_int_equal(p->start_ms, q->start_ms);
            assert_string_equal(p->name, q->name);
            assert_string_equal(p->cmdline, q->cmdline);
            assert_string_equal(p->cgroup, q->cgroup);
        }
        for (uint32_t k = 0; k < x->n; k++) {
            assert_int_equal(x->t_ms[k], y->t_ms[k]);
            assert_int_equal(x->value[k], y->value[k]);
        }
    }
}

static void test_codec_batch_roundtrip_over_one_connection(void **state)
{
    (void)state;
    struct apm_codec_enc e;
    struct apm_codec_dec d;
    apm_codec_enc_init(&e);
    apm_codec_dec_init(&d);
    size_t first_len = 0;
    for (int k = 0; k < 5; k++) {
        struct apm_batch *b = sample_batch((uint64_t)k + 1, 1700000000000LL + k * 1000, 20);
        struct apm_frame_out f;
        assert_int_equal(apm_codec_encode_batch(&e, b, &f), 0);
        if (k == 0)
            first_len = f.len;
        else /* strings and processes are sent once per connection */
            assert_true(f.len < first_len / 3);
        struct apm_msg m;
        assert_int_equal(decode_frame(&d, &f, &m), 0);
        assert_int_equal(m.type, APM_MSG_BATCH);
        assert_batches_equal(b, m.u.batch);
        apm_msg_clear(&m);
        apm_batch_free(b);
        free(f.buf);
    }
    apm_codec_enc_close(&e);
    apm_codec_dec_close(&d);
}

/* Encodes b on a fresh connection and decodes it; returns the decode's code (*out owned on 0). */
static int roundtrip(struct apm_batch *b, struct apm_batch **out)
{
    struct apm_codec_enc e;
    struct apm_codec_dec d;
    apm_codec_enc_init(&e);
    apm_codec_dec_init(&d);
    struct apm_frame_out f;
    assert_int_equal(apm_codec_encode_batch(&e, b, &f), 0);
    struct apm_msg m;
    int rc = decode_frame(&d, &f, &m);
    *out = rc == 0 ? m.u.batch : NULL;
    free(f.buf);
    apm_codec_enc_close(&e);
    apm_codec_dec_close(&d);
    return rc;
}

static void test_codec_health_counters_roundtrip_and_bad_names_are_refused(void **state)
{
    (void)state;
    struct apm_batch *b = sample_batch(1, 1700000000000LL, 2);
    b->health = calloc(1, sizeof(*b->health));
    assert_non_null(b->health);
    b->health->t_ms = 1700000000123LL;
    assert_int_equal(apm_health_add(b->health, "uplink_samples_acked", UINT64_MAX, false), 0);
    assert_int_equal(apm_health_add(b->health, "watched", 59, true), 0);
    assert_int_equal(apm_health_add(b->health, "Bad-Name", 1, true), -EINVAL);
    assert_int_equal(apm_health_add(b->health, "", 1, true), -EINVAL);
    struct apm_batch *got = NULL;
    assert_int_equal(roundtrip(b, &got), 0);
    assert_non_null(got->health);
    assert_int_equal(got->health->t_ms, 1700000000123LL);
    assert_int_equal(got->health->n, 2);
    assert_string_equal(got->health->c[0].name, "uplink_samples_acked");
    assert_true(got->health->c[0].value == UINT64_MAX);
    assert_false(got->health->c[0].gauge);
    assert_string_equal(got->health->c[1].name, "watched");
    assert_true(got->health->c[1].gauge);
    assert_batches_equal(b, got);
    apm_batch_free(got);
    /* A batch without health decodes without. */
    free(b->health);
    b->health = NULL;
    assert_int_equal(roundtrip(b, &got), 0);
    assert_null(got->health);
    apm_batch_free(got);
    /* A name the agent should never send (the encoder does not check): the batch is refused. */
    b->health = calloc(1, sizeof(*b->health));
    b->health->n = 1;
    snprintf(b->health->c[0].name, sizeof(b->health->c[0].name), "x\ny{}");
    assert_int_equal(roundtrip(b, &got), APM_E_DECODE);
    snprintf(b->health->c[0].name, sizeof(b->health->c[0].name), "%s", "ok");
    assert_int_equal(roundtrip(b, &got), 0);
    apm_batch_free(got);
    apm_batch_free(b);
}

static void test_codec_extreme_values_roundtrip(void **state)
{
    (void)state;
    struct apm_batch *b = apm_batch_new(7);
    struct apm_proc_desc p = {.pid = 1, .start_ms = 5, .name = "x"};
    uint32_t idx;
    assert_int_equal(apm_batch_add_proc(b, &p, &idx), 0);
    int64_t vals[] = {0, INT64_MAX, INT64_MIN, -1, 1, INT64_MAX, 0};
    for (int i = 0; i < 7; i++)
        assert_int_equal(apm_batch_add_sample(b, idx, APM_METRIC_RSS, vals[i] / 3, vals[i]), 0);
    struct apm_batch *got = NULL;
    assert_int_equal(roundtrip(b, &got), 0);
    assert_batches_equal(b, got);
    apm_batch_free(got);
    apm_batch_free(b);
}

static void test_codec_hello_roundtrip_and_stateless_messages(void **state)
{
    (void)state;
    struct apm_msg_hello h;
    memset(&h, 0, sizeof(h));
    h.protocol = APM_PROTOCOL_VERSION;
    strcpy(h.ident.agent_id, "agent-1");
    strcpy(h.ident.host, "web-3");
    strcpy(h.ident.boot_id, "b00t");
    strcpy(h.ident.version, "0.1.0");
    h.ident.instance = 0x1234567890abcdefULL;
    memcpy(h.token, "secret", 6);
    h.token_len = 6;
    struct apm_frame_out f;
    assert_int_equal(apm_codec_encode_hello(&h, &f), 0);
    assert_true(f.len - APM_FRAME_HEADER <= APM_FRAME_HELLO_MAX);
    struct apm_msg m;
    assert_int_equal(decode_frame(NULL, &f, &m), 0);
    assert_int_equal(m.type, APM_MSG_HELLO);
    assert_string_equal(m.u.hello.ident.host, "web-3");
    assert_int_equal(m.u.hello.ident.instance, h.ident.instance);
    assert_memory_equal(m.u.hello.token, "secret", 6);
    free(f.buf);

    assert_int_equal(apm_codec_encode_ack(42, &f), 0);
    assert_int_equal(decode_frame(NULL, &f, &m), 0);
    assert_int_equal(m.type, APM_MSG_ACK);
    assert_int_equal(m.u.ack_seq, 42);
    free(f.buf);

    struct apm_msg_error err = {.code = APM_WIRE_ERR_AUTH, .retryable = false};
    strcpy(err.text, "wrong token");
    assert_int_equal(apm_codec_encode_error(&err, &f), 0);
    assert_int_equal(decode_frame(NULL, &f, &m), 0);
    assert_int_equal(m.type, APM_MSG_ERROR);
    assert_int_equal(m.u.error.code, APM_WIRE_ERR_AUTH);
    assert_false(m.u.error.retryable);
    assert_string_equal(m.u.error.text, "wrong token");
    free(f.buf);

    struct apm_msg_control c = {.action = APM_CONTROL_TRACE, .pid = 77, .duration_s = 1200};
    assert_int_equal(apm_codec_encode_control(&c, &f), 0);
    assert_int_equal(decode_frame(NULL, &f, &m), 0);
    assert_int_equal(m.type, APM_MSG_CONTROL);
    assert_int_equal(m.u.control.pid, 77);
    assert_int_equal(m.u.control.duration_s, 1200);
    assert_false(m.u.control.exact);
    free(f.buf);
    c.exact = true;
    assert_int_equal(apm_codec_encode_control(&c, &f), 0);
    assert_int_equal(decode_frame(NULL, &f, &m), 0);
    assert_true(m.u.control.exact);
    free(f.buf);
}

static void test_codec_hello_strings_are_cleaned_and_counted(void **state)
{
    (void)state;
    struct apm_msg_hello h;
    memset(&h, 0, sizeof(h));
    h.protocol = APM_PROTOCOL_VERSION;
    strcpy(h.ident.agent_id, "agent\x1b[2J");
    strcpy(h.ident.host, "web\xff");
    memcpy(h.token, "secret", 6);
    h.token_len = 6;
    struct apm_frame_out f;
    assert_int_equal(apm_codec_encode_hello(&h, &f), 0);
    struct apm_msg m;
    assert_int_equal(decode_frame(NULL, &f, &m), 0);
    free(f.buf);
    assert_string_equal(m.u.hello.ident.host, "web" APM_TEXT_REPLACEMENT);
    assert_string_equal(m.u.hello.ident.agent_id, "agent" APM_TEXT_REPLACEMENT "[2J");
    assert_int_equal(m.u.hello.fixes.invalid_utf8, 1);
    assert_int_equal(m.u.hello.fixes.control, 1);
    assert_int_equal(m.u.hello.fixes.too_long, 0);
}

/* Packs a batch built with the generated types: our encoder only ever sends clean strings. */
static void test_codec_batch_strings_are_cleaned_and_counted(void **state)
{
    (void)state;
    char *longs = malloc(APM_MODEL_STRING_MAX + 100);
    assert_non_null(longs);
    memset(longs, 'a', APM_MODEL_STRING_MAX + 99);
    longs[APM_MODEL_STRING_MAX + 99] = '\0';
    char *strings[] = {"web\xff.py", "python3 \x1b]0;pwned\x07 app.py", longs};
    Apm__ProcessDef p = APM__PROCESS_DEF__INIT;
    p.ref = 1;
    p.pid = 10;
    p.start_ms = 1700000000000LL;
    p.name = 1;
    p.cmdline = 2;
    p.cgroup = 3;
    Apm__ProcessDef *pp = &p;
    Apm__SeriesDef sd = APM__SERIES_DEF__INIT;
    sd.ref = 1;
    sd.process = 1;
    sd.metric = APM__METRIC__METRIC_RSS;
    Apm__SeriesDef *sdp = &sd;
    int64_t t = 0, v = 4096;
    Apm__Samples smp = APM__SAMPLES__INIT;
    smp.series = 1;
    smp.n_t_delta = smp.n_v_delta = 1;
    smp.t_delta = &t;
    smp.v_delta = &v;
    Apm__Samples *smpp = &smp;
    Apm__Batch b = APM__BATCH__INIT;
    b.seq = 1;
    b.base_ms = 1700000000000LL;
    b.n_strings = 3;
    b.strings = strings;
    b.n_processes = 1;
    b.processes = &pp;
    b.n_series = 1;
    b.series = &sdp;
    b.n_samples = 1;
    b.samples = &smpp;
    Apm__Frame fr = APM__FRAME__INIT;
    fr.msg_case = APM__FRAME__MSG_BATCH;
    fr.batch = &b;
    size_t len = apm__frame__get_packed_size(&fr);
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    apm__frame__pack(&fr, buf);
    free(longs);

    struct apm_codec_dec d;
    apm_codec_dec_init(&d);
    struct apm_msg m;
    assert_int_equal(apm_codec_decode(&d, buf, len, &m), 0);
    free(buf);
    const struct apm_proc_desc *pd = &m.u.batch->procs[0];
    assert_string_equal(pd->name, "web" APM_TEXT_REPLACEMENT ".py");
    assert_string_equal(pd->cmdline,
                        "python3 " APM_TEXT_REPLACEMENT "]0;pwned" APM_TEXT_REPLACEMENT " app.py");
    assert_int_equal(strlen(pd->cgroup), APM_MODEL_STRING_MAX);
    assert_int_equal(d.fixes.invalid_utf8, 1);
    assert_int_equal(d.fixes.control, 1);
    assert_int_equal(d.fixes.too_long, 1);
    apm_msg_clear(&m);
    apm_codec_dec_close(&d);
}

static void test_codec_batch_refused_without_connection_state(void **state)
{
    (void)state;
    struct apm_codec_enc e;
    apm_codec_enc_init(&e);
    struct apm_batch *b = sample_batch(1, 1000, 2);
    struct apm_frame_out f;
    assert_int_equal(apm_codec_encode_batch(&e, b, &f), 0);
    struct apm_msg m;
    assert_int_equal(decode_frame(NULL, &f, &m), APM_E_PROTO);
    free(f.buf);
    apm_batch_free(b);
    apm_codec_enc_close(&e);
}

static void test_codec_refuses_references_from_another_connection(void **state)
{
    (void)state;
    /* The second batch refers to processes defined only in the first. */
    struct apm_codec_enc e;
    apm_codec_enc_init(&e);
    struct apm_batch *b1 = sample_batch(1, 1000, 3), *b2 = sample_batch(2, 2000, 3);
    struct apm_frame_out f1, f2;
    assert_int_equal(apm_codec_encode_batch(&e, b1, &f1), 0);
    assert_int_equal(apm_codec_encode_batch(&e, b2, &f2), 0);
    struct apm_codec_dec fresh;
    apm_codec_dec_init(&fresh);
    struct apm_msg m;
    assert_int_equal(decode_frame(&fresh, &f2, &m), APM_E_DECODE);
    apm_codec_dec_close(&fresh);
    free(f1.buf);
    free(f2.buf);
    apm_batch_free(b1);
    apm_batch_free(b2);
    apm_codec_enc_close(&e);
}

static void test_codec_truncated_and_garbage_input_is_refused(void **state)
{
    (void)state;
    struct apm_codec_enc e;
    apm_codec_enc_init(&e);
    struct apm_batch *b = sample_batch(1, 1000, 5);
    struct apm_frame_out f;
    assert_int_equal(apm_codec_encode_batch(&e, b, &f), 0);
    size_t len = f.len - APM_FRAME_HEADER;
    int refused = 0;
    for (size_t cut = 1; cut < len; cut++) {
        struct apm_codec_dec d;
        apm_codec_dec_init(&d);
        struct apm_msg m;
        int rc = apm_codec_decode(&d, f.buf + APM_FRAME_HEADER, cut, &m);
        if (rc != 0)
            refused++;
        apm_msg_clear(&m);
        apm_codec_dec_close(&d);
    }
    /* Nearly every cut is malformed; a cut at a field boundary may decode but never crashes. */
    assert_true(refused > (int)len / 2);
    uint8_t garbage[256];
    srand(1);
    for (int round = 0; round < 200; round++) {
        for (size_t i = 0; i < sizeof(garbage); i++)
            garbage[i] = (uint8_t)rand();
        struct apm_codec_dec d;
        apm_codec_dec_init(&d);
        struct apm_msg m;
        if (apm_codec_decode(&d, garbage, sizeof(garbage), &m) == 0)
            apm_msg_clear(&m);
        apm_codec_dec_close(&d);
    }
    free(f.buf);
    apm_batch_free(b);
    apm_codec_enc_close(&e);
}

/* Adds a lineno diff of three sites and a traceback diff, plus gc, for process 0. */
static void add_probe_data(struct apm_batch *b, int64_t t, int64_t grow)
{
    struct apm_trace_diff *d;
    assert_int_equal(apm_batch_append_diff(b, 0, 3, &d), 0);
    d->t_ms = t;
    d->probe_seq = 7;
    d->session = 2;
    d->frames = 1;
    d->interval_ms = 5000;
    d->traced_current = 123456789;
    d->traced_peak = 223456789;
    d->tracemalloc_memory = 4096;
    d->total_size = 99999;
    d->total_count = 888;
    d->total_size_diff = -5;
    d->total_count_diff = 3;
    d->groups = 42;
    d->truncated = 1;
    const char *files[] = {"/srv/app/cache.py", "/usr/lib/python3.11/json/decoder.py",
                           "/srv/app/cache.py"};
    for (uint32_t i = 0; i < 3; i++) {
        assert_int_equal(apm_site_set(&d->sites[i], files[i], 88 + i, 0), 0);
        d->sites[i].size = 1000 * (int64_t)(i + 1) + grow;
        d->sites[i].size_diff = grow - (int64_t)i;
        d->sites[i].count = 10 + i;
        d->sites[i].count_diff = -(int64_t)i;
    }
    assert_int_equal(apm_batch_append_diff(b, 0, 1, &d), 0);
    d->t_ms = t + 1;
    d->traceback = true;
    assert_int_equal(apm_site_set(&d->sites[0], "/srv/app/cache.py", 88, 2), 0);
    assert_int_equal(apm_site_set_frame(&d->sites[0], 0, "/srv/app/main.py", 12), 0);
    assert_int_equal(apm_site_set_frame(&d->sites[0], 1, "/srv/app/cache.py", 88), 0);
    d->sites[0].size = INT64_MAX;
    /* A sampled diff: the rate and each site's errors travel too. */
    assert_int_equal(apm_batch_append_diff(b, 0, 1, &d), 0);
    d->t_ms = t + 2;
    d->sample_bytes = 524288;
    d->samples = 97;
    assert_int_equal(apm_site_set(&d->sites[0], "/srv/app/cache.py", 88, 0), 0);
    d->sites[0].size = 50 << 20;
    d->sites[0].size_err = 5 << 20;
    d->sites[0].growth_var = (int64_t)1 << 61;
    struct apm_gc_stats g = {.proc = 0, .t_ms = t, .ngen = 3, .garbage = 2};
    for (uint32_t i = 0; i < 3; i++)
        g.gen[i] = (struct apm_gc_generation){100 - i, 50 - i, i, 700 + i};
    assert_int_equal(apm_batch_add_gc(b, &g), 0);
}

static void assert_probe_data_equal(const struct apm_batch *a, const struct apm_batch *b)
{
    assert_int_equal(a->ndiffs, b->ndiffs);
    for (uint32_t i = 0; i < a->ndiffs; i++) {
        const struct apm_trace_diff *x = &a->diffs[i], *y = &b->diffs[i];
        assert_int_equal(a->procs[x->proc].pid, b->procs[y->proc].pid);
        assert_int_equal(x->t_ms, y->t_ms);
        assert_int_equal(x->probe_seq, y->probe_seq);
        assert_int_equal(x->session, y->session);
        assert_int_equal(x->traceback, y->traceback);
        assert_int_equal(x->interval_ms, y->interval_ms);
        assert_int_equal(x->traced_current, y->traced_current);
        assert_int_equal(x->traced_peak, y->traced_peak);
        assert_int_equal(x->total_size_diff, y->total_size_diff);
        assert_int_equal(x->groups, y->groups);
        assert_int_equal(x->truncated, y->truncated);
        assert_int_equal(x->sample_bytes, y->sample_bytes);
        assert_int_equal(x->samples, y->samples);
        assert_int_equal(x->nsites, y->nsites);
        for (uint32_t k = 0; k < x->nsites; k++) {
            const struct apm_site_stat *s = &x->sites[k], *t = &y->sites[k];
            assert_string_equal(s->file, t->file);
            assert_int_equal(s->line, t->line);
            assert_int_equal(s->size, t->size);
            assert_int_equal(s->size_diff, t->size_diff);
            assert_int_equal(s->count, t->count);
            assert_int_equal(s->count_diff, t->count_diff);
            assert_int_equal(s->size_err, t->size_err);
            assert_int_equal(s->growth_var, t->growth_var);
            assert_int_equal(s->nframes, t->nframes);
            for (uint32_t f = 0; f < s->nframes; f++) {
                assert_string_equal(s->frames[f].file, t->frames[f].file);
                assert_int_equal(s->frames[f].line, t->frames[f].line);
            }
        }
    }
    assert_int_equal(a->ngc, b->ngc);
    for (uint32_t i = 0; i < a->ngc; i++) {
        assert_int_equal(a->gc[i].t_ms, b->gc[i].t_ms);
        assert_int_equal(a->gc[i].ngen, b->gc[i].ngen);
        assert_int_equal(a->gc[i].garbage, b->gc[i].garbage);
        assert_memory_equal(a->gc[i].gen, b->gc[i].gen, sizeof(a->gc[i].gen));
    }
}

static void test_codec_probe_diffs_roundtrip_with_interned_sites(void **state)
{
    (void)state;
    struct apm_codec_enc e;
    struct apm_codec_dec d;
    apm_codec_enc_init(&e);
    apm_codec_dec_init(&d);
    size_t first_len = 0;
    for (int k = 0; k < 3; k++) {
        struct apm_batch *b = sample_batch((uint64_t)k + 1, 1700000000000LL + k * 1000, 1);
        add_probe_data(b, 1700000000000LL + k * 1000, k * 4096);
        struct apm_frame_out f;
        assert_int_equal(apm_codec_encode_batch(&e, b, &f), 0);
        if (k == 0)
            first_len = f.len;
        else /* File names and sites are defined once per connection. */
            assert_true(f.len + 60 < first_len);
        struct apm_msg m;
        assert_int_equal(decode_frame(&d, &f, &m), 0);
        assert_int_equal(m.type, APM_MSG_BATCH);
        assert_probe_data_equal(b, m.u.batch);
        assert_true(apm_batch_has_data(m.u.batch));
        apm_msg_clear(&m);
        free(f.buf);
        apm_batch_free(b);
    }
    assert_int_equal(e.nsites, 4); /* three lineno sites and one traceback */
    apm_codec_enc_close(&e);
    apm_codec_dec_close(&d);
}

static void test_codec_diff_with_undefined_site_is_refused(void **state)
{
    (void)state;
    struct apm_codec_enc e1;
    struct apm_codec_dec d;
    apm_codec_enc_init(&e1);
    apm_codec_dec_init(&d);
    /* The second frame refers to sites the first one defined, which d never saw. */
    struct apm_batch *b = sample_batch(1, 1000, 1);
    add_probe_data(b, 1000, 1);
    struct apm_frame_out f1, f2;
    assert_int_equal(apm_codec_encode_batch(&e1, b, &f1), 0);
    assert_int_equal(apm_codec_encode_batch(&e1, b, &f2), 0);
    struct apm_msg m;
    assert_int_equal(decode_frame(&d, &f2, &m), APM_E_DECODE);
    free(f1.buf);
    free(f2.buf);
    apm_batch_free(b);
    apm_codec_enc_close(&e1);
    apm_codec_dec_close(&d);
}

static void test_codec_samples_per_byte_are_compact(void **state)
{
    (void)state;
    /* A steady-state tick: 500 processes x 2 metrics already known on the connection. */
    struct apm_codec_enc e;
    apm_codec_enc_init(&e);
    struct apm_batch *b1 = sample_batch(1, 1700000000000LL, 500);
    struct apm_batch *b2 = sample_batch(2, 1700000001000LL, 500);
    struct apm_frame_out f1, f2;
    assert_int_equal(apm_codec_encode_batch(&e, b1, &f1), 0);
    assert_int_equal(apm_codec_encode_batch(&e, b2, &f2), 0);
    double per_sample = (double)f2.len / (double)b2->nsamples;
    print_message("steady-state wire bytes per sample: %.2f\n", per_sample);
    assert_true(per_sample < 6.0);
    free(f1.buf);
    free(f2.buf);
    apm_batch_free(b1);
    apm_batch_free(b2);
    apm_codec_enc_close(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_batch_roundtrip_over_one_connection),
        cmocka_unit_test(test_codec_extreme_values_roundtrip),
        cmocka_unit_test(test_codec_health_counters_roundtrip_and_bad_names_are_refused),
        cmocka_unit_test(test_codec_hello_roundtrip_and_stateless_messages),
        cmocka_unit_test(test_codec_hello_strings_are_cleaned_and_counted),
        cmocka_unit_test(test_codec_batch_strings_are_cleaned_and_counted),
        cmocka_unit_test(test_codec_batch_refused_without_connection_state),
        cmocka_unit_test(test_codec_refuses_references_from_another_connection),
        cmocka_unit_test(test_codec_truncated_and_garbage_input_is_refused),
        cmocka_unit_test(test_codec_samples_per_byte_are_compact),
        cmocka_unit_test(test_codec_probe_diffs_roundtrip_with_interned_sites),
        cmocka_unit_test(test_codec_diff_with_undefined_site_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
