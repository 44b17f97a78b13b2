/*
 * A backup of the store: a compacted copy of the LMDB environment taken from
 * one read transaction (mdb_env_copyfd2 with MDB_CP_COMPACT), so the writer
 * goes on committing while it runs, plus the data directory's other files
 * (the tokens, tls/), into a new directory that is a data directory of its
 * own. docs/store.md ("Backup and restore") says how it is used.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/base/error.h"
#include "common/base/log.h"
#include "common/base/timeutil.h"
#include "server/store/store_priv.h"

/* Files of the data directory that are the store's own or its lock: never copied as files. */
static bool skipped(const char *name)
{
    return strcmp(name, "data.mdb") == 0 || strcmp(name, "lock.mdb") == 0 ||
           strcmp(name, "apm.lock") == 0 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0;
}

static int __attribute__((format(printf, 4, 5)))
fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return rc;
}

/* Fsyncs a directory so that the names created in it survive a power cut. */
static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

/* DIR absent (created 0700) or an empty directory (set to 0700). *created says which. */
static int prepare_dir(const char *dir, bool *created, char *err, size_t errlen)
{
    *created = false;
    if (mkdir(dir, 0700) == 0) {
        /* A new name in the parent, which must survive a power cut as well as the files. */
        char parent[PATH_MAX];
        snprintf(parent, sizeof(parent), "%s", dir);
        size_t n = strlen(parent);
        while (n > 1 && parent[n - 1] == '/')
            parent[--n] = '\0';
        char *slash = strrchr(parent, '/');
        slash[slash == parent ? 1 : 0] = '\0'; /* dir is absolute: there is one */
        int rc = sync_dir(parent);
        if (rc != 0) {
            rmdir(dir);
            return fail(err, errlen, rc, "backup: fsync %s: %s", parent, strerror(-rc));
        }
        *created = true;
        return 0;
    }
    if (errno != EEXIST)
        return fail(err, errlen, -errno, "cannot create backup directory %s: %s", dir,
                    strerror(errno));
    DIR *d = opendir(dir);
    if (d == NULL)
        return fail(err, errlen, errno == ENOTDIR ? -ENOTDIR : -errno, "backup directory %s: %s",
                    dir, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            rc = fail(err, errlen, -ENOTEMPTY,
                      "backup directory %s is not empty (it holds %.200s): give a new or empty one",
                      dir, e->d_name);
    closedir(d);
    if (rc == 0 && chmod(dir, 0700) != 0)
        rc = fail(err, errlen, -errno, "backup directory %s: chmod: %s", dir, strerror(errno));
    return rc;
}

/* Copies one regular file with its mode, fsynced. Adds its size to *bytes. */
static int copy_file(const char *from, const char *to, uint64_t *bytes, char *err, size_t errlen)
{
    int in = open(from, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (in < 0)
        return fail(err, errlen, -errno, "backup: cannot read %s: %s", from, strerror(errno));
    struct stat st;
    int rc = fstat(in, &st) == 0 ? 0 : -errno;
    int out = rc == 0 ? open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 0777) : -1;
    if (rc == 0 && out < 0)
        rc = -errno;
    char buf[65536];
    ssize_t n = 0;
    while (rc == 0 && (n = read(in, buf, sizeof(buf))) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || write(out, buf, (size_t)n) != n)
            rc = errno ? -errno : -EIO;
        else
            *bytes += (uint64_t)n;
    }
    if (rc == 0 && fsync(out) != 0)
        rc = -errno;
    close(in);
    if (out >= 0 && close(out) != 0 && rc == 0)
        rc = -errno;
    if (rc != 0)
        return fail(err, errlen, rc, "backup: cannot copy %s to %s: %s", from, to, strerror(-rc));
    return 0;
}

/*
 * Copies the data directory's files outside LMDB: regular files at its top
 * and in its tls/ folder. They are written once at start (tokens,
 * certificates), so copying them now matches the snapshot.
 */
static int copy_others(const char *src, const char *dst, const char *sub, uint64_t *bytes,
                       char *err, size_t errlen)
{
    char from[PATH_MAX], to[PATH_MAX];
    snprintf(from, sizeof(from), "%s%s%s", src, sub[0] ? "/" : "", sub);
    DIR *d = opendir(from);
    if (d == NULL)
        return errno == ENOENT && sub[0]
                   ? 0
                   : fail(err, errlen, -errno, "backup: %s: %s", from, strerror(errno));
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (skipped(e->d_name))
            continue;
        struct stat st;
        const char *sep = sub[0] ? "/" : "";
        if (snprintf(from, sizeof(from), "%s%s%s/%s", src, sep, sub, e->d_name) >=
                (int)sizeof(from) ||
            snprintf(to, sizeof(to), "%s%s%s/%s", dst, sep, sub, e->d_name) >= (int)sizeof(to)) {
            rc = fail(err, errlen, -ENAMETOOLONG, "backup: a path in %s is too long", src);
            break;
        }
        if (lstat(from, &st) != 0)
            continue; /* gone since readdir */
        if (S_ISREG(st.st_mode)) {
            rc = copy_file(from, to, bytes, err, errlen);
        } else if (S_ISDIR(st.st_mode) && sub[0] == '\0' && strcmp(e->d_name, "tls") == 0) {
            if (mkdir(to, st.st_mode & 0777) != 0)
                rc = fail(err, errlen, -errno, "backup: cannot create %s: %s", to, strerror(errno));
            else
                rc = copy_others(src, dst, "tls", bytes, err, errlen);
            if (rc == 0)
                rc = sync_dir(to);
        }
    }
    closedir(d);
    return rc;
}

/*
 * Reads what the copy holds: series, samples and the newest sample. (Its
 * transaction id says nothing: a compacting copy starts again at 1.)
 */
static int newest_sample(void *ctx, int64_t t, int64_t v)
{
    (void)v;
    int64_t *newest = ctx;
    if (t > *newest)
        *newest = t;
    return 0;
}

static int describe_copy(const char *path, struct apm_store_backup_info *out)
{
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_dbi series, meta;
    int rc = mdb_env_create(&env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(env, DB_COUNT);
    if (rc == 0)
        rc = mdb_env_open(env, path, MDB_RDONLY | MDB_NOSUBDIR | MDB_NOLOCK, 0600);
    if (rc == 0)
        rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
    if (rc == 0)
        rc = mdb_dbi_open(txn, "series", 0, &series);
    if (rc == 0)
        rc = mdb_dbi_open(txn, "meta", 0, &meta);
    if (rc == 0) {
        MDB_val k = {7, "samples"}, v;
        if (mdb_get(txn, meta, &k, &v) == 0 && v.mv_size == 8)
            memcpy(&out->samples, v.mv_data, 8);
        rc = mdb_cursor_open(txn, series, &cur);
    }
    MDB_val k, v;
    int crc = rc == 0 ? mdb_cursor_get(cur, &k, &v, MDB_FIRST) : rc;
    for (; crc == 0; crc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct store_series_record rec;
        if (k.mv_size != 8 || apm_store_record_parse_series(
                                  v.mv_data, v.mv_size, apm_store_get_be64(k.mv_data), &rec) < 0)
            continue;
        out->series++;
        if (rec.info.nsamples > 0 && rec.info.last_ms > out->last_sample_ms)
            out->last_sample_ms = rec.info.last_ms;
    }
    if (rc == 0 && crc != MDB_NOTFOUND)
        rc = crc;
    mdb_cursor_close(cur);
    cur = NULL;
    /* The newest samples may be only in the write-ahead log (docs/store.md). */
    MDB_dbi log;
    if (rc == 0 && mdb_dbi_open(txn, "log", 0, &log) == 0 &&
        (rc = mdb_cursor_open(txn, log, &cur)) == 0) {
        const struct store_log_visitor vis = {NULL, newest_sample, &out->last_sample_ms};
        for (crc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); crc == 0;
             crc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
            (void)apm_store_log_decode(v.mv_data, v.mv_size, &vis);
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return apm_store_mdb_error(rc, "backup: read the copy");
}

struct copy_job {
    struct apm_store *s;
    int fd;
    int rc;
    int64_t started_ms;
};

/*
 * The copy, on a thread of its own at nice +10 (on Linux the nice value is
 * a thread's, and LMDB's writing thread inherits it): on a busy machine the
 * writer and the loop get the CPU first, and the backup takes longer.
 */
static void *copy_thread(void *p)
{
    struct copy_job *j = p;
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10) != 0)
        apm_debug("store: backup runs at the normal priority: %s", strerror(errno));
    pthread_rwlock_rdlock(&j->s->resize_lock);
    j->started_ms = apm_now_ms();
    j->rc = mdb_env_copyfd2(j->s->env, j->fd, MDB_CP_COMPACT);
    pthread_rwlock_unlock(&j->s->resize_lock);
    return NULL;
}

/*
 * The compacted copy of the environment into fd, under the resize lock
 * shared. Written with O_DIRECT where the file system has it, as
 * mdb_env_copy2 does: hundreds of megabytes of dirty page cache would
 * otherwise be flushed while the writer waits on its own fsync.
 */
static int copy_env(struct apm_store *s, int fd, struct apm_store_backup_info *out)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags != -1)
        (void)fcntl(fd, F_SETFL, flags | O_DIRECT);
    struct copy_job j = {.s = s, .fd = fd};
    pthread_t th;
    int rc = pthread_create(&th, NULL, copy_thread, &j);
    if (rc != 0)
        return rc;
    pthread_join(th, NULL);
    out->started_ms = j.started_ms;
    return j.rc;
}

static int backup_into(struct apm_store *s, const char *dir, struct apm_store_backup_info *out,
                       char *err, size_t errlen)
{
    const char *src = NULL;
    char tmp[PATH_MAX], final[PATH_MAX];
    if (mdb_env_get_path(s->env, &src) != 0 ||
        snprintf(tmp, sizeof(tmp), "%s/data.mdb.partial", dir) >= (int)sizeof(tmp))
        return fail(err, errlen, -ENAMETOOLONG, "backup directory name too long: %.200s", dir);
    snprintf(final, sizeof(final), "%s/data.mdb", dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return fail(err, errlen, -errno, "backup: cannot create %s: %s", tmp, strerror(errno));
    int rc = copy_env(s, fd, out);
    if (rc != 0) {
        rc = fail(err, errlen, rc == ENOSPC ? APM_E_FULL : APM_E_STORE,
                  "backup: copying the store into %s failed: %s", tmp, mdb_strerror(rc));
    } else if (fdatasync(fd) != 0) {
        rc = fail(err, errlen, -errno, "backup: fsync %s: %s", tmp, strerror(errno));
    }
    struct stat st;
    if (rc == 0 && fstat(fd, &st) == 0)
        out->bytes = (uint64_t)st.st_size;
    if (close(fd) != 0 && rc == 0)
        rc = fail(err, errlen, -errno, "backup: close %s: %s", tmp, strerror(errno));
    if (rc == 0 && rename(tmp, final) != 0)
        rc = fail(err, errlen, -errno, "backup: rename %s: %s", tmp, strerror(errno));
    if (rc != 0) {
        unlink(tmp);
        return rc;
    }
    rc = copy_others(src, dir, "", &out->other_bytes, err, errlen);
    if (rc == 0 && (rc = sync_dir(dir)) != 0)
        fail(err, errlen, rc, "backup: fsync %s: %s", dir, strerror(-rc));
    if (rc == 0 && (rc = describe_copy(final, out)) != 0)
        fail(err, errlen, rc, "backup: the copy in %s cannot be read back", final);
    return rc;
}

/* Removes what a failed backup left in dir (files, tls/), and dir when it made it. */
static void clean_up(const char *dir, bool created)
{
    char path[PATH_MAX];
    const char *subs[] = {"/tls", ""};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s%s", dir, subs[i]);
        DIR *d = opendir(path);
        struct dirent *e;
        while (d != NULL && (e = readdir(d)) != NULL) {
            char f[PATH_MAX];
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
                snprintf(f, sizeof(f), "%s/%s", path, e->d_name) < (int)sizeof(f))
                unlink(f);
        }
        if (d != NULL)
            closedir(d);
        if (i == 0)
            rmdir(path);
    }
    if (created)
        rmdir(dir);
}

int apm_store_backup(struct apm_store *s, const char *dir, struct apm_store_backup_info *out,
                     char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    err[0] = '\0';
    if (dir == NULL || dir[0] == '\0')
        return fail(err, errlen, -EINVAL, "backup: no directory given");
    if (dir[0] != '/')
        return fail(err, errlen, -EINVAL,
                    "backup directory %.200s is not an absolute path (it is on the collector's "
                    "host)",
                    dir);
    int idle = 0;
    if (!atomic_compare_exchange_strong(&s->backup_running, &idle, 1))
        return fail(err, errlen, -EBUSY, "a backup is already running; wait for it to finish");
    uint64_t t0 = apm_mono_ns();
    bool created = false;
    int rc = prepare_dir(dir, &created, err, errlen);
    if (rc == 0) {
        apm_info("store: backup into %s started", dir);
        rc = backup_into(s, dir, out, err, errlen);
        if (rc != 0)
            clean_up(dir, created);
    }
    out->duration_us = (apm_mono_ns() - t0) / 1000;
    atomic_store(&s->backup_running, 0);
    if (rc != 0) {
        apm_error("store: %s", err);
        return rc;
    }
    apm_info("store: backup into %s done: %" PRIu64 " bytes in %" PRIu64 " ms, %" PRIu64
             " series, newest sample at %" PRId64 " ms",
             dir, out->bytes, out->duration_us / 1000, out->series, out->last_sample_ms);
    return 0;
}

bool apm_store_backup_running(struct apm_store *s)
{
    return atomic_load(&s->backup_running) != 0;
}
