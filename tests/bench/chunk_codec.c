/*
 * Chunk codec benchmark: payload bytes per sample of each chunk format, per
 * trace kind and on the tuning / held-out halves of leakbench, where the bytes
 * go, and encode / decode time per sample. Figures only, no pass/fail;
 * tests/bench/chunk_codec.sh builds and runs it.
 *
 *   chunk_codec TRACE_DIR [CHUNK_SAMPLES]
 *   chunk_codec TRACE_DIR CHUNK_SAMPLES priors   prints formats 2 and 3's prior table
 *
 * Series are cut into chunks as the store does (apm_chunk_enc_restart after
 * CHUNK_SAMPLES, default 120). The tuning half is every other trace in name
 * order (even positions), the held-out half the rest. "time" is what the
 * real timestamps cost over a perfectly regular 10 s grid (the same values
 * coded with t = i * 10 s); "header" counts the fixed bytes and the two
 * varints; "values" is the rest (value stream, the regular time stream,
 * flush).
 */
#include <inttypes.h>
#include <time.h>

#include "server/store/chunk.h"
#include "tests/bench/bench_traces.h"

#define NFORMATS 3
static const uint8_t formats[NFORMATS] = {APM_CHUNK_FORMAT_RICE, APM_CHUNK_FORMAT_RC2,
                                          APM_CHUNK_FORMAT};

struct cost {
    uint64_t samples;
    uint64_t bytes;   /* chunks as stored */
    uint64_t header;  /* of which header */
    uint64_t regular; /* the same values on a regular grid */
};

/* Header bytes of a stored chunk: fixed part, formats 2 and 3's length byte, two varints. */
static size_t header_bytes(const uint8_t *b, size_t len)
{
    size_t pos = 4 + (b[0] != APM_CHUNK_FORMAT_RICE), varints = 0;
    while (pos < len && varints < 2)
        varints += (b[pos++] & 0x80) == 0;
    return pos;
}

/* Encodes one series into chunks; adds stored and header bytes. Regular: t = i * 10 s. */
static void encode_series(const struct series_data *s, uint8_t format, unsigned chunk, bool regular,
                          struct cost *c)
{
    struct apm_chunk_enc e;
    apm_chunk_enc_init(&e);
    apm_chunk_enc_set_format(&e, format);
    for (size_t i = 0; i < s->n; i++) {
        int64_t t = regular ? (int64_t)i * 10000 : s->t[i];
        if (apm_chunk_enc_append(&e, t, s->v[i]) != 0) {
            fprintf(stderr, "%s: append failed at %zu\n", s->name, i);
            exit(1);
        }
        if (e.n == chunk || i + 1 == s->n) {
            if (regular) {
                c->regular += e.len;
            } else {
                c->bytes += e.len;
                c->header += header_bytes(e.buf, e.len);
            }
            apm_chunk_enc_restart(&e);
        }
    }
    if (!regular)
        c->samples += s->n;
    apm_chunk_enc_close(&e);
}

/* "real" for real-*, the kind for syn-NNN-<kind>. */
static void kind_of(const char *name, char *out, size_t size)
{
    if (strncmp(name, "syn-", 4) == 0 && strlen(name) > 8)
        snprintf(out, size, "%s", name + 8);
    else
        snprintf(out, size, "%.*s", (int)strcspn(name, "-"), name);
}

static void print_cost(const char *label, const struct cost c[NFORMATS])
{
    printf("%-24s %7" PRIu64, label, c[0].samples);
    for (int f = 0; f < NFORMATS; f++) {
        double n = (double)(c[f].samples ? c[f].samples : 1);
        printf("  | %5.3f = %5.3f hdr + %5.3f time + %5.3f values", (double)c[f].bytes / n,
               (double)c[f].header / n, ((double)c[f].bytes - (double)c[f].regular) / n,
               ((double)c[f].regular - (double)c[f].header) / n);
    }
    printf("\n");
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); /* CPU time: other jobs share the cores */
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/*
 * Encode then decode time per sample of one format over every series,
 * chunked as stored; returns the checksum of decoded values so nothing is
 * optimised away.
 */
static uint64_t time_format(const struct series_data *series, size_t nseries, uint8_t format,
                            unsigned chunk, double *enc_ns, double *dec_ns)
{
    size_t total = 0, nchunks = 0, cap = 1024;
    struct stored {
        uint8_t *buf;
        size_t len;
        int64_t first_t;
    } *chunks = malloc(cap * sizeof(*chunks));
    double t0 = now_ns();
    for (size_t s = 0; s < nseries; s++) {
        struct apm_chunk_enc e;
        apm_chunk_enc_init(&e);
        apm_chunk_enc_set_format(&e, format);
        for (size_t i = 0; i < series[s].n; i++) {
            apm_chunk_enc_append(&e, series[s].t[i], series[s].v[i]);
            if (e.n == chunk || i + 1 == series[s].n) {
                if (nchunks == cap)
                    chunks = realloc(chunks, (cap *= 2) * sizeof(*chunks));
                chunks[nchunks].buf = malloc(e.len);
                memcpy(chunks[nchunks].buf, e.buf, e.len);
                chunks[nchunks].len = e.len;
                chunks[nchunks++].first_t = e.first_t;
                apm_chunk_enc_restart(&e);
            }
        }
        total += series[s].n;
        apm_chunk_enc_close(&e);
    }
    double t1 = now_ns();
    uint64_t sum = 0;
    for (size_t c = 0; c < nchunks; c++) {
        struct apm_chunk_iter it;
        int64_t t, v;
        if (apm_chunk_iter_init(&it, chunks[c].buf, chunks[c].len, chunks[c].first_t) < 0)
            exit(1);
        while (apm_chunk_iter_next(&it, &t, &v) == 1)
            sum += (uint64_t)v ^ (uint64_t)t;
    }
    double t2 = now_ns();
    for (size_t c = 0; c < nchunks; c++)
        free(chunks[c].buf);
    free(chunks);
    *enc_ns = (t1 - t0) / (double)total;
    *dec_ns = (t2 - t1) / (double)total;
    return sum;
}

/*
 * Appending as the store does under load: many series, one sample of each
 * per tick, so every encoder is out of cache when its turn comes. Returns
 * CPU ns per sample of nseries x ticks appends (chunks restarted when full).
 */
static double time_fleet(uint8_t format, unsigned chunk, size_t nseries, size_t ticks)
{
    struct apm_chunk_enc *enc = calloc(nseries, sizeof(*enc));
    for (size_t s = 0; s < nseries; s++) {
        apm_chunk_enc_init(&enc[s]);
        apm_chunk_enc_set_format(&enc[s], format);
    }
    uint64_t x = 42;
    double t0 = now_ns();
    for (size_t i = 0; i < ticks; i++)
        for (size_t s = 0; s < nseries; s++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            /* As store_bytes.sh's rate test: page noise of 64 pages around a level. */
            int64_t v = ((int64_t)(64 + s % 512) << 20) + (int64_t)(x % 64) * 4096;
            apm_chunk_enc_append(&enc[s], 1700000000000 + (int64_t)i * 1000, v);
            if (enc[s].n == chunk)
                apm_chunk_enc_restart(&enc[s]);
        }
    double ns = (now_ns() - t0) / (double)(nseries * ticks);
    for (size_t s = 0; s < nseries; s++)
        apm_chunk_enc_close(&enc[s]);
    free(enc);
    return ns;
}

static void report(const char *title, struct series_data *series, size_t n, unsigned chunk)
{
    enum { MAX_KINDS = 64 };
    static char kinds[MAX_KINDS][64];
    static struct cost by_kind[MAX_KINDS][NFORMATS];
    struct cost all[NFORMATS] = {0}, half[2][NFORMATS] = {0};
    size_t nkinds = 0;
    memset(by_kind, 0, sizeof(by_kind));
    for (size_t s = 0; s < n; s++) {
        char kind[64];
        kind_of(series[s].name, kind, sizeof(kind));
        size_t k = 0;
        while (k < nkinds && strcmp(kinds[k], kind) != 0)
            k++;
        if (k == nkinds && nkinds < MAX_KINDS)
            snprintf(kinds[nkinds++], sizeof(kinds[0]), "%s", kind);
        for (int f = 0; f < NFORMATS; f++) {
            struct cost c = {0};
            encode_series(&series[s], formats[f], chunk, false, &c);
            encode_series(&series[s], formats[f], chunk, true, &c);
            struct cost *dst[3] = {&by_kind[k < MAX_KINDS ? k : 0][f], &all[f], &half[s % 2][f]};
            for (int d = 0; d < 3; d++) {
                dst[d]->samples += c.samples;
                dst[d]->bytes += c.bytes;
                dst[d]->header += c.header;
                dst[d]->regular += c.regular;
            }
        }
    }
    printf("%s, %u samples a chunk: payload bytes/sample, format 1 | format 2 | format 3\n", title,
           chunk);
    for (size_t k = 0; k < nkinds; k++)
        print_cost(kinds[k], by_kind[k]);
    print_cost("tuning half (even)", half[0]);
    print_cost("held-out half (odd)", half[1]);
    print_cost("all", all);
}

/*
 * Formats 2 and 3's starting probabilities: each context's final
 * probability, averaged over the chunks (where it was used) of the tuning
 * half, coded in format 2 from a flat start (1/2, first step 0) as the
 * table was made.
 */
static void print_priors(struct series_data *series, size_t n, unsigned chunk)
{
    static double sum[APM_CHUNK_RC_PROBS], used[APM_CHUNK_RC_PROBS];
    for (size_t s = 0; s < n; s += 2) {
        struct apm_chunk_enc e;
        apm_chunk_enc_init(&e);
        apm_chunk_enc_set_format(&e, APM_CHUNK_FORMAT_RC2);
        for (size_t i = 0; i < series[s].n; i++) {
            apm_chunk_enc_append(&e, series[s].t[i], series[s].v[i]);
            if (e.n == 1)
                for (unsigned k = 0; k < APM_CHUNK_RC_PROBS; k++)
                    e.model.p[k] = 1024 << 2;
            if (e.n == chunk || i + 1 == series[s].n) {
                for (unsigned k = 0; k < APM_CHUNK_RC_PROBS; k++)
                    if (e.model.p[k] & 3) { /* a step: the context was used */
                        sum[k] += e.model.p[k] >> 2;
                        used[k]++;
                    }
                apm_chunk_enc_restart(&e);
            }
        }
        apm_chunk_enc_close(&e);
    }
    printf("static const uint16_t prior[APM_CHUNK_RC_PROBS] = {");
    for (unsigned k = 0; k < APM_CHUNK_RC_PROBS; k++) {
        double p = used[k] > 0 ? sum[k] / used[k] + 0.5 : 1024;
        printf("%s%u", k ? ", " : "", (unsigned)(p < 31 ? 31 : p > 2017 ? 2017 : p));
    }
    printf("};\n");
}

int main(int argc, char **argv)
{
    static struct series_data series[MAX_TRACES];
    if (argc < 2) {
        fprintf(stderr, "usage: chunk_codec TRACE_DIR [CHUNK_SAMPLES]\n");
        return 2;
    }
    unsigned chunk = argc > 2 ? (unsigned)atoi(argv[2]) : 120;
    size_t n = load_dir(argv[1], series);
    if (n == 0 || chunk < 2) {
        fprintf(stderr, "no traces in %s\n", argv[1]);
        return 1;
    }
    if (argc > 3 && strcmp(argv[3], "priors") == 0) {
        print_priors(series, n, chunk);
        return 0;
    }
    report("leakbench", series, n, chunk);
    static struct series_data synth[100];
    for (size_t i = 0; i < 100; i++)
        make_synthetic(&synth[i], (unsigned)i, 7200);
    report("synthetic 1 s", synth, 100, chunk);

    /* Interleaved repeats: the machine is shared, the minimum is the figure. */
    double best[NFORMATS][2];
    uint64_t check[NFORMATS] = {0};
    for (int f = 0; f < NFORMATS; f++)
        best[f][0] = best[f][1] = 1e30;
    for (int round = 0; round < 5; round++)
        for (int f = 0; f < NFORMATS; f++) {
            double enc, dec;
            check[f] = time_format(series, n, formats[f], chunk, &enc, &dec);
            best[f][0] = enc < best[f][0] ? enc : best[f][0];
            best[f][1] = dec < best[f][1] ? dec : best[f][1];
        }
    for (int f = 0; f < NFORMATS; f++)
        printf("format %u: encode %.1f ns/sample, decode %.1f ns/sample (best of 5, leakbench)\n",
               formats[f], best[f][0], best[f][1]);
    double fleet[NFORMATS] = {1e30, 1e30, 1e30};
    for (int round = 0; round < 3; round++)
        for (int f = 0; f < NFORMATS; f++) {
            double ns = time_fleet(formats[f], chunk, 50000, 60);
            fleet[f] = ns < fleet[f] ? ns : fleet[f];
        }
    for (int f = 0; f < NFORMATS; f++)
        printf("format %u: encode %.1f ns/sample, 50,000 series one sample a tick (best of 3)\n",
               formats[f], fleet[f]);
    bool alike = check[0] == check[1] && check[1] == check[2];
    printf("decoded alike: %s\n", alike ? "yes" : "NO");
    return alike ? 0 : 1;
}
