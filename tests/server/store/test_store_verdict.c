#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <lmdb.h>
#include <unistd.h>

#include "common/base/error.h"
#include "server/store/store.h"
#include "server/store/store_verdict.h"
#include "tests/tmpdir.h"

struct fixture {
    char dir[64];
    struct apm_store *store;
};

static void open_store(struct fixture *f)
{
    struct apm_store_options opt = {.dir = f->dir, .no_sync = true};
    assert_int_equal(apm_store_open(&opt, &f->store), 0);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/apm-test-verdict-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    open_store(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    apm_store_free(f->store);
    apm_test_rmtree(f->dir);
    free(f);
    return 0;
}

static void growing_record(struct apm_verdict_record *r)
{
    memset(r, 0, sizeof(*r));
    r->series_id = 7;
    r->metric = APM_METRIC_RSS;
    strcpy(r->host, "web-3");
    strcpy(r->process_id, "web-3:42:1700000000000");
    strcpy(r->name, "app.py");
    r->pid = 42;
    r->start_ms = 1700000000000;
    r->value = 3.5e9;
    r->limit_source = APM_LIMIT_HOST;
    r->v.cls = APM_CLASS_GROWING;
    r->v.confidence = 0.7;
    r->v.rate = 10e6;
    r->v.has_forecast = true;
    r->v.forecast_t = 1700002500.0;
    r->v.forecast_lo_t = 1700002000.0;
    r->v.forecast_hi_t = INFINITY;
    r->v.limit = 24e9;
    r->v.t_last = 1700000400.0;
    r->v.samples = 400;
    r->v.growth_start_t = 1700000330.0;
    r->v.steady = true;
    r->v.doubt = APM_DOUBT_WARMUP;
    r->v.doubt_until_t = 1700000640.0;
    r->evaluated_at = r->v.t_last;
}

static void test_store_verdict_keeps_the_growing_class_and_its_doubt(void **state)
{
    struct fixture *f = *state;
    struct apm_verdict_record r, back;
    growing_record(&r);
    const struct apm_verdict_record *recs[] = {&r};
    assert_int_equal(apm_store_verdict_put(f->store, recs, 1), 0);
    assert_int_equal(apm_store_verdict_get(f->store, 7, &back), 0);
    assert_int_equal(back.v.cls, APM_CLASS_GROWING);
    assert_true(back.v.steady);
    assert_int_equal(back.v.doubt, APM_DOUBT_WARMUP);
    assert_true(back.v.doubt_until_t == r.v.doubt_until_t);
    assert_true(back.v.growth_start_t == r.v.growth_start_t);
    assert_true(back.v.rate == r.v.rate);
    assert_true(isinf(back.v.forecast_hi_t));
    assert_string_equal(back.name, "app.py");
    /* Nothing grows: the times stay unknown. */
    r.v.cls = APM_CLASS_STABLE;
    r.v.steady = false;
    r.v.doubt = APM_DOUBT_NONE;
    r.v.growth_start_t = NAN;
    r.v.doubt_until_t = NAN;
    assert_int_equal(apm_store_verdict_put(f->store, recs, 1), 0);
    assert_int_equal(apm_store_verdict_get(f->store, 7, &back), 0);
    assert_int_equal(back.v.cls, APM_CLASS_STABLE);
    assert_false(back.v.steady);
    assert_true(isnan(back.v.growth_start_t) && isnan(back.v.doubt_until_t));
}

/* A record as the first version of the format laid it out, written straight into LMDB. */
static void put_version_1(const char *dir, uint64_t id)
{
    uint8_t buf[512], *p = buf;
    *p++ = 1;                /* version */
    *p++ = APM_METRIC_RSS;   /* metric */
    *p++ = APM_CLASS_LEAK;   /* class */
    *p++ = 1 | 2;            /* alert, forecast */
    *p++ = APM_LIMIT_CGROUP; /* limit source */
    int32_t pid = 42;
    int64_t start = 1700000000000;
    memcpy(p, &pid, 4);
    p += 4;
    memcpy(p, &start, 8);
    p += 8;
    double d[9] = {1e9,          0.9, 1000.0,       1700009000.0, 1700008000.0,
                   1700010000.0, 2e9, 1700000400.0, 1700000400.0};
    memcpy(p, d, sizeof(d));
    p += sizeof(d);
    uint64_t samples = 400;
    memcpy(p, &samples, 8);
    p += 8;
    static const char strings[] = "web-3\0web-3:42:1700000000000\0app.py";
    memcpy(p, strings, sizeof(strings));
    p += sizeof(strings);
    uint8_t key[8];
    for (int i = 0; i < 8; i++)
        key[i] = (uint8_t)(id >> (56 - 8 * i));
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_open(env, dir, 0, 0640), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "verdicts", 0, &dbi), 0);
    MDB_val k = {sizeof(key), key}, v = {(size_t)(p - buf), buf};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void test_store_verdict_reads_records_of_the_first_version(void **state)
{
    struct fixture *f = *state;
    apm_store_free(f->store);
    f->store = NULL;
    put_version_1(f->dir, 9);
    open_store(f);
    struct apm_verdict_record back;
    assert_int_equal(apm_store_verdict_get(f->store, 9, &back), 0);
    assert_int_equal(back.v.cls, APM_CLASS_LEAK);
    assert_true(back.v.alert && back.v.has_forecast);
    assert_true(back.v.rate == 1000.0);
    assert_true(back.v.forecast_lo_t == 1700008000.0);
    assert_int_equal(back.limit_source, APM_LIMIT_CGROUP);
    assert_string_equal(back.name, "app.py");
    assert_false(back.v.steady);
    assert_int_equal(back.v.doubt, APM_DOUBT_NONE);
    assert_true(isnan(back.v.growth_start_t) && isnan(back.v.doubt_until_t));
}

static int count_row(void *ctx, const struct apm_verdict_record *rec)
{
    (void)rec;
    (*(int *)ctx)++;
    return 0;
}

static void test_store_verdict_skips_a_record_of_an_unknown_class(void **state)
{
    struct fixture *f = *state;
    struct apm_verdict_record r;
    growing_record(&r);
    r.v.cls = (enum apm_class)(APM_CLASS_GROWING + 1);
    const struct apm_verdict_record *recs[] = {&r};
    assert_int_equal(apm_store_verdict_put(f->store, recs, 1), 0);
    struct apm_verdict_record back;
    assert_int_equal(apm_store_verdict_get(f->store, 7, &back), APM_E_STORE);
    int n = 0;
    assert_int_equal(apm_store_verdict_list(f->store, count_row, &n), 0);
    assert_int_equal(n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_store_verdict_keeps_the_growing_class_and_its_doubt,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_verdict_reads_records_of_the_first_version,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_verdict_skips_a_record_of_an_unknown_class,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
