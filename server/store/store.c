/*
 * The store's environment and write path. docs/store.md describes the layout.
 *
 * The writer thread keeps every series it has touched in an in-memory index
 * (series key -> struct store_series) with the series' open chunk, so that
 * appending a sample costs a hash lookup and a few bits, and each series
 * record (which carries the open chunk) is written once per transaction, at
 * commit, however many batches touched it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/base/error.h"
#include "common/base/fault.h"
#include "common/base/log.h"
#include "common/base/mem.h"
#include "common/base/timeutil.h"
#include "server/store/store_priv.h"

#define DEFAULT_MAP_SIZE (8ull << 30)
#define DEFAULT_CHUNK_SAMPLES 120u
#define DEFAULT_FORGET_MS 120000
#define DEFAULT_PACK_MS (2 * 3600 * 1000LL)
#define DEFAULT_CHECKPOINT_MS 30000

static const char *const db_names[DB_COUNT] = {
    [DB_META] = "meta",
    [DB_SERIES_KEY] = "series_key",
    [DB_SERIES] = "series",
    [DB_CHUNKS] = "chunks",
    [DB_HOSTS] = "hosts",
    [DB_PROCESSES] = "processes",
    [DB_WATERMARKS] = "watermarks",
    [DB_ALERTS] = "alerts",
    [DB_VERDICTS] = "verdicts",
    [DB_ROLLUPS] = "rollups",
    [DB_ROLLUP_WM] = "rollup_wm",
    [DB_RW_CURSOR] = "rw_cursor",
    [DB_RW_PENDING] = "rw_pending",
    [DB_SILENCES] = "silences",
    [DB_PACKED] = "packed",
    [DB_LOG] = "log",
};

/*
 * A failing disk fails every writer at once (batches, verdicts, alerts), and
 * again at each retry: the store's failures share one rate limit, whatever
 * the thread. Errors outside a store's commit (any store) share another.
 */
static pthread_mutex_t global_failure_mu = PTHREAD_MUTEX_INITIALIZER;
static struct apm_log_limit global_failure_log =
    APM_LOG_LIMIT_INIT(APM_LOG_ERROR, "store:", "failed operations", 10000, 1);

static void __attribute__((format(printf, 4, 5)))
log_failure(pthread_mutex_t *mu, struct apm_log_limit *limit, enum apm_log_level level,
            const char *fmt, ...)
{
    pthread_mutex_lock(mu);
    bool pass = apm_log_limit_hit(limit, apm_now_ms());
    pthread_mutex_unlock(mu);
    if (!pass)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    apm_log(level, "%s", line);
}

/*
 * A commit went through: once the failures' window is over, logs their
 * summary (a disk that fills up may let small commits through between
 * failures; that does not start a new round of lines).
 */
static void failures_over(struct apm_store *s)
{
    pthread_mutex_lock(&s->failure_mu);
    if (s->failure_log.start_ms != 0) {
        apm_log_limit_flush(&s->failure_log, apm_now_ms(), false);
        if (s->failure_log.start_ms == 0)
            apm_info("store: commits succeed again");
    }
    pthread_mutex_unlock(&s->failure_mu);
}

/* Translates rc, logging under the limit given. */
static int mdb_error_limited(pthread_mutex_t *mu, struct apm_log_limit *limit, int rc,
                             const char *what)
{
    if (rc == 0)
        return 0;
    if (rc == MDB_MAP_FULL) {
        log_failure(mu, limit, APM_LOG_WARN, "store: %s: map full", what);
        return APM_E_FULL;
    }
    log_failure(mu, limit, APM_LOG_ERROR, "store: %s: %s", what, mdb_strerror(rc));
    return APM_E_STORE;
}

int apm_store_mdb_error(int rc, const char *what)
{
    return mdb_error_limited(&global_failure_mu, &global_failure_log, rc, what);
}

static int commit_error(struct apm_store *s, int rc, bool *disk);

/* Commits; *disk (may be NULL) says whether a failure was a full disk. */
static int store_commit(struct apm_store *s, MDB_txn *txn, bool *disk)
{
    int rc = mdb_txn_commit(txn);
    if (rc == 0) {
        failures_over(s);
        return 0;
    }
    return commit_error(s, rc, disk);
}

int apm_store_commit(struct apm_store *s, MDB_txn *txn)
{
    return store_commit(s, txn, NULL);
}

/*
 * A short write: the disk of dir is (nearly) full, or the data file stopped
 * at the process's file-size limit (a write that straddles the limit is cut
 * short; one that starts past it fails with EFBIG).
 */
static bool short_write_was_full(const char *dir)
{
    struct statvfs vfs;
    if (statvfs(dir, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < (1u << 20))
        return true;
    struct rlimit lim;
    struct stat st;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    return getrlimit(RLIMIT_FSIZE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY &&
           stat(path, &st) == 0 && (rlim_t)st.st_size >= lim.rlim_cur;
}

/*
 * A failed commit. LMDB reports a short write as EIO, which on a full disk
 * is ENOSPC in disguise: short_write_was_full tells them apart. A full disk
 * is APM_E_FULL (retryable, like a full map).
 */
static int commit_error(struct apm_store *s, int rc, bool *disk)
{
    const char *dir = NULL;
    /* A quota or a file-size limit is a full disk for the store too. */
    bool full = rc == ENOSPC || rc == EDQUOT || rc == EFBIG ||
                (rc == EIO && mdb_env_get_path(s->env, &dir) == 0 && short_write_was_full(dir));
    if (!full)
        return mdb_error_limited(&s->failure_mu, &s->failure_log, rc, "commit");
    if (dir == NULL)
        mdb_env_get_path(s->env, &dir);
    log_failure(&s->failure_mu, &s->failure_log, APM_LOG_ERROR,
                "store: commit: no space left on the disk of %s", dir ? dir : "the data directory");
    if (disk != NULL)
        *disk = true;
    return APM_E_FULL;
}

void apm_store_put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}

uint64_t apm_store_get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

void apm_store_chunk_key(uint8_t key[16], uint64_t id, int64_t t)
{
    apm_store_put_be64(key, id);
    apm_store_put_be64(key + 8, (uint64_t)t ^ (1ull << 63));
}

int64_t apm_store_chunk_key_t(const MDB_val *k)
{
    return (int64_t)(apm_store_get_be64((const uint8_t *)k->mv_data + 8) ^ (1ull << 63));
}

/* ---- transactions of other threads, under the resize lock ---- */

int apm_store_read_begin(struct apm_store *s, MDB_txn **txn)
{
    pthread_rwlock_rdlock(&s->resize_lock);
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
    if (rc != 0)
        pthread_rwlock_unlock(&s->resize_lock);
    return apm_store_mdb_error(rc, "read");
}

int apm_store_other_write_begin(struct apm_store *s, MDB_txn **txn)
{
    pthread_rwlock_rdlock(&s->resize_lock);
    int rc = mdb_txn_begin(s->env, NULL, 0, txn);
    if (rc != 0)
        pthread_rwlock_unlock(&s->resize_lock);
    return apm_store_mdb_error(rc, "begin");
}

void apm_store_read_end(struct apm_store *s, MDB_txn *txn)
{
    if (txn == NULL)
        return;
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&s->resize_lock);
}

int apm_store_other_write_commit(struct apm_store *s, MDB_txn *txn)
{
    int rc = apm_store_commit(s, txn);
    pthread_rwlock_unlock(&s->resize_lock);
    return rc;
}

/* ---- open and close ---- */

static int make_dir(const char *dir)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(path, 0750) < 0 && errno != EEXIST)
            return -errno;
        *p = c;
        if (c == '\0')
            return 0;
    }
}

int apm_store_meta_get(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t *out)
{
    MDB_val k = {strlen(name), (void *)name}, v;
    int rc = mdb_get(txn, dbi, &k, &v);
    *out = 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc == 0 && v.mv_size == sizeof(*out))
        memcpy(out, v.mv_data, sizeof(*out));
    return rc;
}

int apm_store_meta_put(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t value)
{
    MDB_val k = {strlen(name), (void *)name}, v = {sizeof(value), &value};
    return mdb_put(txn, dbi, &k, &v, 0);
}

/*
 * Takes the data directory's lock: an exclusive flock on DIR/apm.lock, held
 * (through lock_fd) until apm_store_free, with the holder's pid written in
 * the file for the message a second opener prints. The lock goes with the
 * process, so a kill -9 leaves nothing to clean up.
 */
static int lock_dir(struct apm_store *s, const char *dir)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/apm.lock", dir) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        int e = errno;
        apm_error("store: cannot open %s: %s", path, strerror(e));
        return -e;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t n = e == EWOULDBLOCK ? pread(fd, pid, sizeof(pid) - 1, 0) : -1;
        close(fd);
        if (e != EWOULDBLOCK) {
            apm_error("store: cannot lock %s: %s", path, strerror(e));
            return -e;
        }
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        apm_error("data directory %s is locked by pid %s", dir, pid[0] ? pid : "(unknown)");
        return -EBUSY;
    }
    char buf[32];
    int len = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)len, 0) != len)
        apm_warn("store: cannot write the pid into %s: %s", path, strerror(errno));
    s->lock_fd = fd;
    return 0;
}

/* Adds delta to a counter in DB_META, read inside the write transaction. */
static int add_u64(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t delta)
{
    uint64_t v = 0;
    int rc = apm_store_meta_get(txn, dbi, name, &v);
    return rc != 0 ? rc : apm_store_meta_put(txn, dbi, name, v + delta);
}

/* Opens the databases and checks the schema. */
static int open_dbs(struct apm_store *s, const char *dir)
{
    MDB_txn *txn = NULL;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    for (int i = 0; rc == 0 && i < DB_COUNT; i++)
        rc = mdb_dbi_open(txn, db_names[i], MDB_CREATE, &s->dbi[i]);
    if (rc != 0)
        goto out;
    uint64_t schema = 0;
    rc = apm_store_meta_get(txn, s->dbi[DB_META], "schema", &schema);
    if (rc == 0 && schema > APM_STORE_SCHEMA) {
        apm_error("store: %s holds schema %" PRIu64 ", newer than this collector's %u: run the "
                  "collector that wrote it, or restore a backup taken before the upgrade",
                  dir, schema, APM_STORE_SCHEMA);
        mdb_txn_abort(txn);
        return APM_E_STORE;
    }
    if (rc == 0 && schema != APM_STORE_SCHEMA) {
        /* Schema 1 reads as it is (chunk format 1, no packed periods, no log): the number
         * moves up so that a schema-1 collector, which cannot read the chunk formats, packed
         * periods and log written from now on, refuses this store. */
        if (schema != 0)
            apm_info("store: %s upgraded from schema %" PRIu64 " to %u", dir, schema,
                     APM_STORE_SCHEMA);
        rc = apm_store_meta_put(txn, s->dbi[DB_META], "schema", APM_STORE_SCHEMA);
    }
    uint64_t pack_next = 0; /* stored with the sign bit flipped: 0 (missing) is INT64_MIN */
    if (rc == 0)
        rc = apm_store_meta_get(txn, s->dbi[DB_META], "pack_next", &pack_next);
    s->pack_next = (int64_t)(pack_next ^ (1ull << 63));
    if (rc == 0) {
        rc = mdb_txn_commit(txn);
        txn = NULL;
    }
out:
    if (txn != NULL)
        mdb_txn_abort(txn);
    return apm_store_mdb_error(rc, "open databases");
}

int apm_store_open(const struct apm_store_options *opt, struct apm_store **out)
{
    unsigned chunk_samples = opt->chunk_samples ? opt->chunk_samples : DEFAULT_CHUNK_SAMPLES;
    if (opt->dir == NULL || chunk_samples < 2 || chunk_samples > APM_CHUNK_MAX_SAMPLES)
        return -EINVAL;
    int rc = make_dir(opt->dir);
    if (rc < 0) {
        apm_error("store: cannot create %s: %s", opt->dir, apm_strerror(rc));
        return rc;
    }
    struct apm_store *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->lock_fd = -1;
    rc = lock_dir(s, opt->dir);
    if (rc < 0) {
        free(s);
        return rc;
    }
    pthread_mutex_init(&s->failure_mu, NULL);
    s->failure_log = (struct apm_log_limit)APM_LOG_LIMIT_INIT(APM_LOG_ERROR,
                                                              "store:", "failed commits", 10000, 1);
    s->chunk_samples = chunk_samples;
    apm_hashmap_init(&s->index);
    apm_hashmap_init(&s->seen);
    apm_hashmap_init(&s->site_counts);
    s->max_sites = opt->max_sites_per_process ? opt->max_sites_per_process : 1000;
    s->forget_after_ms = opt->forget_after_ms > 0 ? opt->forget_after_ms : DEFAULT_FORGET_MS;
    s->forgotten_at_ms = apm_now_ms();
    atomic_init(&s->commits, 0);
    atomic_init(&s->sites_refused, 0);
    atomic_init(&s->forgotten, 0);
    for (int i = 0; i < MC_COUNT; i++)
        atomic_init(&s->m[i], 0);
    atomic_init(&s->full, FULL_NO);
    atomic_init(&s->disk_full, 0);
    atomic_init(&s->backup_running, 0);
    pthread_rwlock_init(&s->resize_lock, NULL);
    s->retention_ms = opt->retention_ms;
    s->rw_hold = opt->rw_hold;
    s->rollup_ms[0] = opt->rollup_1m_ms;
    s->rollup_ms[1] = opt->rollup_1h_ms;
    s->rollup_expire[0] = s->rollup_expire[1] = INT64_MIN;
    s->pack_ms = opt->pack_period_ms == 0 ? DEFAULT_PACK_MS : opt->pack_period_ms;
    s->pack_ms = s->pack_ms < 0 ? 0 : s->pack_ms;
    s->pack_cur = INT64_MIN;
    s->pack_room = -1;
    s->oldest_live_ms = INT64_MAX;
    s->ckpt_ms = opt->checkpoint_ms > 0 ? opt->checkpoint_ms : DEFAULT_CHECKPOINT_MS;
    s->log_next = 1;
    s->last_ckpt_ms = apm_now_ms();
    size_t map_size = opt->map_size ? opt->map_size : DEFAULT_MAP_SIZE;
    if (opt->max_disk > 0 && opt->max_disk < map_size)
        map_size = (size_t)opt->max_disk;
    s->max_disk = opt->max_disk > map_size ? opt->max_disk : map_size;
    unsigned flags = MDB_NOTLS | (opt->no_sync ? MDB_NOSYNC : 0);
    rc = mdb_env_create(&s->env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(s->env, DB_COUNT);
    if (rc == 0)
        rc = mdb_env_set_mapsize(s->env, map_size);
    if (rc == 0)
        rc = mdb_env_open(s->env, opt->dir, flags, 0640);
    int dead = 0;
    if (rc == 0)
        rc = mdb_reader_check(s->env, &dead);
    if (dead > 0)
        apm_info("store: cleared %d stale readers", dead);
    rc = apm_store_mdb_error(rc, opt->dir);
    if (rc == 0)
        rc = apm_store_heads_new(&s->heads);
    if (rc == 0)
        rc = open_dbs(s, opt->dir);
    /* Samples committed since their series' records were written: back into the open chunks. */
    if (rc == 0)
        rc = apm_store_log_replay(s, NULL);
    MDB_envinfo info;
    if (rc == 0 && mdb_env_info(s->env, &info) == 0)
        atomic_init(&s->map_size, info.me_mapsize); /* an existing file may be larger */
    if (rc < 0) {
        apm_store_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void apm_store_free(struct apm_store *s)
{
    if (s == NULL)
        return;
    /* A clean close leaves nothing to replay: the next start is quick. */
    if (s->env != NULL && s->heads != NULL)
        apm_store_checkpoint_all(s);
    apm_store_index_free_all(s);
    apm_hashmap_close(&s->index);
    apm_hashmap_close(&s->seen);
    free(s->scratch);
    apm_hashmap_close(&s->site_counts);
    apm_store_heads_free(s->heads);
    if (s->env != NULL)
        mdb_env_close(s->env);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    apm_log_limit_flush(&s->failure_log, apm_now_ms(), true);
    pthread_mutex_destroy(&s->failure_mu);
    pthread_rwlock_destroy(&s->resize_lock);
    free(s);
}

/* ---- transactions ---- */

/*
 * The first free series id, read from the store inside the write transaction:
 * the last key of DB_SERIES plus one, or the "series_next" mark in DB_META if
 * higher (so that an id stays used should its series ever be deleted). No
 * counter is kept in memory between transactions.
 */
static int next_series_id(struct apm_store *s, MDB_txn *txn, uint64_t *out)
{
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    *out = 1;
    int rc = mdb_cursor_open(txn, s->dbi[DB_SERIES], &cur);
    if (rc == 0)
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    if (rc == 0 && k.mv_size == 8)
        *out = apm_store_get_be64(k.mv_data) + 1;
    if (rc == MDB_NOTFOUND)
        rc = 0;
    if (cur != NULL)
        mdb_cursor_close(cur);
    uint64_t mark = 0;
    if (rc == 0)
        rc = apm_store_meta_get(txn, s->dbi[DB_META], "series_next", &mark);
    if (rc == 0 && mark > *out)
        *out = mark;
    return apm_store_mdb_error(rc, "series ids");
}

int apm_store_txn_begin(struct apm_store *s, struct apm_store_txn **out)
{
    if (s->txn != NULL)
        return -EBUSY;
    struct apm_store_txn *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    int rc = mdb_txn_begin(s->env, NULL, 0, &t->txn);
    if (rc != 0) {
        free(t);
        return apm_store_mdb_error(rc, "begin");
    }
    t->s = s;
    rc = next_series_id(s, t->txn, &t->next_series_id);
    t->first_series_id = t->next_series_id;
    if (rc < 0) {
        mdb_txn_abort(t->txn);
        free(t);
        return rc;
    }
    s->txn = t;
    atomic_store(&s->disk_full, 0); /* it says how the last transaction ended */
    *out = t;
    return 0;
}

struct idle {
    int64_t before_ms;
    void **found; /* series, or seen keys */
    size_t n, cap;
};

static void collect(struct idle *c, void *p)
{
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 256;
        void **nf = realloc(c->found, ncap * sizeof(*nf));
        if (nf == NULL)
            return; /* forgotten at a later sweep */
        c->found = nf;
        c->cap = ncap;
    }
    c->found[c->n++] = p;
}

static void idle_series(void *ctx, const void *key, size_t klen, uint64_t value)
{
    (void)key;
    (void)klen;
    struct store_series *ser = (struct store_series *)(uintptr_t)value;
    /* Only a series whose record holds everything: its log entries may go. */
    if (!ser->dirty && !ser->ckpt && ser->log_seq == 0 &&
        ser->last_ms < ((struct idle *)ctx)->before_ms)
        collect(ctx, ser);
}

struct idle_key {
    size_t klen;
    char key[];
};

static void idle_seen(void *ctx, const void *key, size_t klen, uint64_t value)
{
    struct idle *c = ctx;
    if ((int64_t)value >= c->before_ms)
        return;
    struct idle_key *k = malloc(sizeof(*k) + klen);
    if (k == NULL)
        return;
    k->klen = klen;
    memcpy(k->key, key, klen);
    collect(c, k);
}

/*
 * Forgets what the writer keeps of series and processes that had nothing
 * new for forget_after_ms: PRODUCT.md's process-grace, after which a process
 * is no longer live. Their records are in LMDB and are read back if they
 * return. The site counts are dropped whole and recounted on demand.
 */
static void forget_idle(struct apm_store *s, int64_t now_ms)
{
    s->forgotten_at_ms = now_ms;
    struct idle c = {.before_ms = now_ms - s->forget_after_ms};
    apm_hashmap_foreach(&s->index, idle_series, &c);
    size_t nseries = c.n;
    for (size_t i = 0; i < c.n; i++) {
        struct store_series *ser = c.found[i];
        apm_hashmap_del(&s->index, ser->key, ser->klen);
        apm_store_series_release(s, ser, true);
    }
    c.n = 0;
    apm_hashmap_foreach(&s->seen, idle_seen, &c);
    for (size_t i = 0; i < c.n; i++) {
        struct idle_key *k = c.found[i];
        apm_hashmap_del(&s->seen, k->key, k->klen);
        free(k);
    }
    free(c.found);
    apm_hashmap_close(&s->site_counts);
    apm_hashmap_init(&s->site_counts);
    if (nseries > 0) {
        atomic_fetch_add(&s->forgotten, nseries);
        apm_mem_release();
    }
}

/*
 * After an abort: the series the transaction changed go back to their
 * records (or leave the index, when their record holds everything), and
 * those with samples only in the log get them back from it.
 */
static void txn_undo(struct apm_store_txn *t)
{
    struct apm_store *s = t->s;
    struct apm_hashmap only;
    apm_hashmap_init(&only);
    MDB_txn *rtxn = NULL;
    struct store_series *next;
    for (struct store_series *ser = t->ckpt; ser != NULL; ser = next) {
        next = ser->next_ckpt;
        ser->next_ckpt = NULL;
        ser->ckpt = false;
        ser->gone = false;
    }
    for (struct store_series *ser = t->dirty; ser != NULL; ser = next) {
        next = ser->next_dirty;
        ser->next_dirty = NULL;
        ser->dirty = false;
        ser->appended = false;
        ser->gone = false;
        struct store_series_record rec;
        uint8_t idkey[8];
        apm_store_put_be64(idkey, ser->id);
        int rc = -1;
        if (ser->log_seq != 0 && (rtxn != NULL || apm_store_read_begin(s, &rtxn) == 0) &&
            apm_store_get_record(s, rtxn, ser->id, &rec) == 0 &&
            apm_store_series_set(ser, &rec) == 0)
            rc = apm_hashmap_put(&only, idkey, 8, (uint64_t)(uintptr_t)ser);
        if (rc < 0 && ser->log_seq != 0)
            apm_error("store: series %" PRIu64 ": cannot go back to its record", ser->id);
        if (ser->log_seq == 0) {
            apm_hashmap_del(&s->index, ser->key, ser->klen);
            apm_store_series_release(s, ser, false);
        }
    }
    apm_store_read_end(s, rtxn);
    if (only.len > 0) {
        int rc = apm_store_log_replay(s, &only);
        if (rc < 0)
            apm_error("store: replaying the log after an abort: %s", apm_strerror(rc));
    }
    apm_hashmap_close(&only);
}

/* Ends t: the changed series either become clean (kept) or are forgotten. */
static void txn_end(struct apm_store_txn *t, bool committed, uint64_t first_seq)
{
    struct apm_store *s = t->s;
    struct store_series *next, *gone = NULL;
    if (committed) {
        gone = apm_store_log_committed(t, first_seq, apm_now_ms());
        for (struct store_series *ser = gone; ser != NULL; ser = next) {
            next = ser->fifo_next;
            apm_hashmap_del(&s->index, ser->key, ser->klen);
            apm_store_series_release(s, ser, true);
        }
    } else {
        txn_undo(t);
    }
    free(t->log);
    free(t->cuts);
    if (committed) {
        if (t->samples > 0)
            atomic_store(&s->full, FULL_NO); /* batches are taken again */
        atomic_fetch_add(&s->commits, 1);
        atomic_fetch_add(&s->sites_refused, t->sites_refused);
        int64_t now = apm_now_ms();
        if (now - s->forgotten_at_ms >= s->forget_after_ms / 4)
            forget_idle(s, now);
    } else {
        apm_hashmap_close(&s->seen);
        apm_hashmap_init(&s->seen);
        apm_hashmap_close(&s->site_counts);
        apm_hashmap_init(&s->site_counts);
    }
    s->txn = NULL;
    free(t);
}

int apm_store_write_series(struct apm_store_txn *t, const struct store_series *ser)
{
    size_t len = 0;
    uint8_t *rec = apm_store_record_series(ser, &t->s->scratch, &t->s->scratch_cap, &len);
    if (rec == NULL)
        return -ENOMEM;
    uint8_t idkey[8];
    apm_store_put_be64(idkey, ser->id);
    MDB_val k = {8, idkey}, v = {len, rec};
    int rc = mdb_put(t->txn, t->s->dbi[DB_SERIES], &k, &v, 0);
    return apm_store_mdb_error(rc, "series record");
}

int apm_store_txn_commit(struct apm_store_txn *t)
{
    uint64_t first_seq = 0;
    int rc = apm_store_log_commit(t, &first_seq);
    if (rc == 0 && t->samples > 0)
        rc = apm_store_mdb_error(add_u64(t->txn, t->s->dbi[DB_META], "samples", t->samples),
                                 "counters");
    if (rc == 0 && t->dropped > 0)
        rc = apm_store_mdb_error(add_u64(t->txn, t->s->dbi[DB_META], "dropped", t->dropped),
                                 "counters");
    if (rc == 0 && t->next_series_id != t->first_series_id)
        rc = apm_store_mdb_error(
            apm_store_meta_put(t->txn, t->s->dbi[DB_META], "series_next", t->next_series_id),
            "counters");
    if (rc < 0) {
        apm_store_txn_abort(t);
        return rc;
    }
    /* The writer's own failures only: its next call for room reads what the last one was. */
    bool disk = false;
    bool logged = t->log_len > 0, ckpt_logged = t->ckpt_logged;
    rc = store_commit(t->s, t->txn, &disk);
    atomic_store(&t->s->disk_full, disk);
    /* Crash points (common/base/fault.h): committed, not published nor acked yet. */
    if (rc == 0 && logged)
        apm_fault_point("store-logged");
    if (rc == 0 && ckpt_logged)
        apm_fault_point("store-checkpoint");
    txn_end(t, rc == 0, first_seq);
    return rc;
}

void apm_store_txn_abort(struct apm_store_txn *t)
{
    if (t == NULL)
        return;
    mdb_txn_abort(t->txn);
    txn_end(t, false, 0);
}

/* ---- appending ---- */

/* Moves a full open chunk into DB_CHUNKS and starts the next one. */
static int seal(struct apm_store_txn *t, struct store_series *ser)
{
    uint8_t key[16];
    apm_store_chunk_key(key, ser->id, ser->head.first_t);
    MDB_val k = {sizeof(key), key}, v = {ser->head.len, ser->head.buf};
    int rc = mdb_put(t->txn, t->s->dbi[DB_CHUNKS], &k, &v, 0);
    if (rc != 0)
        return apm_store_mdb_error(rc, "chunk");
    apm_chunk_enc_restart(&ser->head);
    apm_store_checkpoint_later(t, ser); /* the record and its chunks, in the same commit */
    return 0;
}

/*
 * Appends a block's samples. A sample not newer than the series' last one
 * (a resent or reordered sample) is dropped and counted: the head chunk only
 * grows forward in time, so reads never need to merge.
 */
int apm_store_put_block(struct apm_store_txn *t, struct store_series *ser,
                        const struct apm_series_block *blk)
{
    /* The samples taken go to the log entry too (store_log.c). */
    uint32_t taken = 0;
    bool any = ser->nsamples > 0;
    int64_t last = ser->last_ms;
    for (uint32_t i = 0; i < blk->n; i++)
        if (!any || blk->t_ms[i] > last) {
            any = true;
            last = blk->t_ms[i];
            taken++;
        }
    if (taken > 0 && apm_store_log_group(t, ser, taken) < 0)
        return -ENOMEM;
    if (taken > 0)
        ser->appended = true;
    for (uint32_t i = 0; i < blk->n; i++) {
        int64_t ts = blk->t_ms[i];
        if (ser->nsamples > 0 && ts <= ser->last_ms) {
            t->dropped++;
            continue;
        }
        int rc = apm_chunk_enc_append(&ser->head, ts, blk->value[i]);
        if (rc < 0)
            return rc;
        apm_store_log_sample(t, ts, blk->value[i]);
        if (ser->nsamples++ == 0)
            ser->first_ms = ts;
        ser->last_ms = ts;
        ser->last_value = blk->value[i];
        t->samples++;
        if (ser->head.n >= t->s->chunk_samples && (rc = seal(t, ser)) < 0)
            return rc;
    }
    return 0;
}
