/*
 * The disk budget (docs/store.md, "Disk budget" and "A full disk"): the map
 * doubles while under max-disk, and at a pass's start the oldest raw data is
 * marked to go when the store nears the budget; when a batch does not fit,
 * apm_store_make_room grows the map or deletes the oldest raw chunks, and
 * refuses batches (retryably) when nothing is left to delete or the disk is
 * full. Writer thread only; the deletions themselves are store_retention.c's.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#include "common/base/error.h"
#include "common/base/log.h"
#include "common/base/timeutil.h"
#include "server/store/store_priv.h"

/* Share of the budget above which the oldest raw chunks go before their retention. */
#define PRESSURE_PERCENT 90u
/* Share of the map above which it is doubled (while under the budget). */
#define GROW_PERCENT 75u
/* Longest wait for readers to finish before a resize. */
#define RESIZE_WAIT_MS 500
/* A refusal for the same reason is logged again after this long at the earliest. */
#define FULL_LOG_EVERY_MS 60000

/* Pages used now: the file's high-water mark less the free pages LMDB will reuse. */
static int used_bytes(struct apm_store *s, MDB_txn *txn, uint64_t *used, uint64_t *file)
{
    MDB_envinfo info;
    MDB_stat st;
    MDB_cursor *cur = NULL;
    int rc = mdb_env_info(s->env, &info);
    if (rc == 0)
        rc = mdb_env_stat(s->env, &st);
    if (rc == 0)
        rc = mdb_cursor_open(txn, 0 /* the free list */, &cur);
    uint64_t free_pages = 0;
    MDB_val k, v;
    int op = MDB_FIRST;
    while (rc == 0 && (rc = mdb_cursor_get(cur, &k, &v, (MDB_cursor_op)op)) == 0) {
        op = MDB_NEXT;
        size_t n = 0;
        if (v.mv_size >= sizeof(n))
            memcpy(&n, v.mv_data, sizeof(n));
        free_pages += n;
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND)
        return apm_store_mdb_error(rc, "free list");
    uint64_t pages = (uint64_t)info.me_last_pgno + 1;
    *file = pages * st.ms_psize;
    *used = (pages > free_pages ? pages - free_pages : 0) * st.ms_psize;
    return 0;
}

/*
 * Doubles the map, up to the budget, when no transaction is open: other
 * threads' transactions hold resize_lock shared, so this waits for them (at
 * most RESIZE_WAIT_MS) and new ones wait for it. Returns 1 when it grew.
 */
static int grow(struct apm_store *s)
{
    uint64_t cur = atomic_load(&s->map_size);
    if (cur >= s->max_disk)
        return 0;
    uint64_t next = cur * 2 < s->max_disk ? cur * 2 : s->max_disk;
    /* A backup's read transaction lasts the whole copy: waiting for it would stall ingest. */
    int running = 1;
    if (atomic_compare_exchange_strong(&s->backup_running, &running, 2))
        apm_warn("store: map not grown while a backup runs; it grows once the backup ends");
    if (running != 0)
        return 0;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += (long)RESIZE_WAIT_MS * 1000000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    if (pthread_rwlock_timedwrlock(&s->resize_lock, &until) != 0) {
        apm_warn("store: map not grown: readers held it for %d ms", RESIZE_WAIT_MS);
        return 0;
    }
    int rc = mdb_env_set_mapsize(s->env, (size_t)next);
    pthread_rwlock_unlock(&s->resize_lock);
    if (rc != 0)
        return apm_store_mdb_error(rc, "map size");
    atomic_store(&s->map_size, next);
    atomic_fetch_add(&s->m[MC_MAP_GROWS], 1);
    apm_info("store: map grown to %" PRIu64 " bytes (budget %" PRIu64 ")", next, s->max_disk);
    return 1;
}

/*
 * Growing early is for a disk with room for the larger map: a full disk gets
 * nothing from it (a map that fills up grows through apm_store_make_room).
 */
static bool disk_has_room(struct apm_store *s, uint64_t bytes)
{
    const char *dir = NULL;
    struct statvfs v;
    return mdb_env_get_path(s->env, &dir) != 0 || statvfs(dir, &v) != 0 ||
           (uint64_t)v.f_bavail * v.f_frsize >= bytes;
}

/* At the start of a pass: grows the map early, and sets the pressure cut-off near the budget. */
int apm_store_budget_check(struct apm_store *s, int64_t now)
{
    MDB_txn *txn = NULL;
    uint64_t used = 0, file = 0;
    int rc = apm_store_mdb_error(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn), "read");
    if (rc == 0)
        rc = used_bytes(s, txn, &used, &file);
    mdb_txn_abort(txn);
    if (rc < 0)
        return rc;
    uint64_t map = atomic_load(&s->map_size);
    if (file > map / 100 * GROW_PERCENT && disk_has_room(s, map) && (rc = grow(s)) < 0)
        return rc;
    s->oldest_raw_ms = s->pass_oldest_ms;
    if (used > s->max_disk / 100 * PRESSURE_PERCENT && s->oldest_raw_ms < now) {
        /* The oldest eighth of the raw time span goes in this pass. */
        int64_t from =
            s->pressure_cutoff > s->oldest_raw_ms ? s->pressure_cutoff : s->oldest_raw_ms;
        s->pressure_cutoff = from + (now - from) / 8 + 1;
    } else {
        s->pressure_cutoff = 0;
    }
    return 0;
}

/*
 * Batches are refused from now on, for the reason given. Logged when it
 * starts, at most once a minute: a disk that fills up lets small commits
 * through between failures, each of which ends the refusal.
 */
static void refuse(struct apm_store *s, int why)
{
    int64_t now = apm_now_ms();
    if (atomic_exchange(&s->full, why) != why &&
        (why != s->last_full_logged || now - s->last_full_log_ms >= FULL_LOG_EVERY_MS)) {
        s->last_full_log_ms = now;
        s->last_full_logged = why;
        apm_error("store: full: %s", apm_store_full_reason(s));
    }
}

int apm_store_make_room(struct apm_store *s, int64_t now_ms)
{
    /*
     * A full disk: neither a larger map nor deleted chunks give it space (the
     * file does not shrink), and each failed round would move the deletion's
     * cut-off an eighth closer to now. The batches are refused until it takes
     * writes again; nothing is deleted.
     */
    if (atomic_exchange(&s->disk_full, 0)) {
        refuse(s, FULL_DISK);
        return 0;
    }
    int rc = grow(s);
    if (rc != 0)
        return rc;
    /* The map can grow once the backup ends: refuse (retryably) rather than delete data. */
    if (atomic_load(&s->backup_running) != 0 && atomic_load(&s->map_size) < s->max_disk)
        return 0;
    /* At the budget: the oldest raw chunks go, a pass at a time, until one frees something. */
    uint64_t before = atomic_load(&s->m[MC_CHUNKS_PRUNED]) + atomic_load(&s->m[MC_CHUNKS_DELETED]);
    s->pack_cur = INT64_MIN; /* deleting only: packing needs room first */
    for (int round = 0; round < 8; round++) {
        /* Without a finished pass the oldest chunk is unknown: the cut-off starts a year back. */
        bool known = s->oldest_raw_ms != 0 && s->oldest_raw_ms != INT64_MAX;
        int64_t from = known ? s->oldest_raw_ms : now_ms - 365LL * 86400000;
        if (s->pressure_cutoff > from)
            from = s->pressure_cutoff;
        s->pressure_cutoff = from + (now_ms - from) / 8 + 1;
        s->maint_next_id = 1;
        s->pass_oldest_ms = INT64_MAX;
        /*
         * Small slices: at a full map, each commit needs a few free pages of
         * its own. A slice too large for them fails whole (and changed
         * nothing): the same place again with half the keys.
         */
        unsigned slice_keys = 256;
        do {
            rc = apm_store_maintain(s, now_ms, slice_keys, 200000);
            if (rc == APM_E_FULL && slice_keys > 1 && !atomic_load(&s->disk_full)) {
                slice_keys /= 2;
                rc = 0;
            }
        } while (rc == 0);
        uint64_t after =
            atomic_load(&s->m[MC_CHUNKS_PRUNED]) + atomic_load(&s->m[MC_CHUNKS_DELETED]);
        if (after > before) {
            s->maint_next_id = 0;
            return 1;
        }
        if (rc < 0)
            break;
        s->oldest_raw_ms = s->pass_oldest_ms;
        if (s->oldest_raw_ms == INT64_MAX)
            break; /* no sealed chunk is left */
    }
    if (atomic_exchange(&s->disk_full, 0)) {
        refuse(s, FULL_DISK);
        return 0;
    }
    if (rc == APM_E_FULL || rc >= 0) {
        refuse(s, FULL_BUDGET);
        return 0;
    }
    return rc;
}

const char *apm_store_full_reason(struct apm_store *s)
{
    switch (atomic_load(&s->full)) {
    case FULL_BUDGET:
        return "the store reached max-disk and holds no raw chunk old enough to delete; batches "
               "are refused (agents retry), reads go on; raise max-disk or lower retention";
    case FULL_DISK:
        return "the disk of the data directory is full (below max-disk); batches are refused "
               "(agents retry), reads go on, nothing is deleted; free space on that disk";
    default:
        return NULL;
    }
}
