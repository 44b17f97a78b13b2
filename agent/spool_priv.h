#ifndef APM_AGENT_SPOOL_PRIV_H
#define APM_AGENT_SPOOL_PRIV_H

/* The spool's state, shared by spool.c (the thread and the loop side) and spool_disk.c (segment
 * files and the state file, touched by the spool thread only, and at open). */

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "agent/spool.h"

#define PENDING_MAX (64u << 20) /* bytes queued for the thread before appends are refused */

struct seg {
    uint64_t num;
    uint64_t bytes;
    uint64_t first_seq, last_seq; /* 0, 0: no record yet */
};

struct pending {
    struct pending *next;
    uint64_t seq;
    uint32_t nsamples;
    bool in_memory;
    size_t len;
    uint8_t data[];
};

struct apm_spool {
    uv_loop_t *loop;
    char dir[4096];
    struct apm_spool_options opt;
    uint64_t instance;
    uint64_t first_seq; /* this run's lease starts here */
    uint64_t next_base; /* the next run's */
    bool discard_all;   /* the state file was bad: old segments cannot be trusted */
    uv_async_t async;
    uv_thread_t thread;
    bool thread_started;
    apm_spool_read_cb on_read;
    void *ctx;
    apm_spool_close_cb close_cb;
    void *close_ctx;
    struct apm_spool_stats *final;
    bool closing;       /* loop side */
    bool read_inflight; /* loop side */

    /* Shared, under mu. */
    uv_mutex_t mu;
    uv_cond_t cond;
    struct pending *w_head, *w_tail;
    size_t w_bytes;
    uint64_t acked;
    uint64_t mem_seq; /* every record up to it is (or was) in the uplink's memory */
    bool read_req;
    uint64_t read_after;
    size_t read_max;
    bool reply_ready;
    struct apm_spool_record *reply;
    uint64_t reply_through;
    bool reply_at_end;
    bool stop;
    bool done;
    struct apm_spool_stats stats;

    /* Spool thread only. */
    struct seg *segs;
    size_t nsegs, segs_cap;
    int cur_fd; /* the last segment, open for appends; -1 none */
    int dir_fd;
    bool dirty, dir_dirty;
    uint64_t dirty_since_ns;
    uint64_t persisted_acked;
    uint64_t last_state_ns;
    uint64_t last_seq_seen;
    uint64_t next_num;
};

static inline void spool_lock(struct apm_spool *s)
{
    uv_mutex_lock(&s->mu);
}

static inline void spool_unlock(struct apm_spool *s)
{
    uv_mutex_unlock(&s->mu);
}

/* ---- spool_disk.c: segment files and the state file ---- */

void spool_seg_path(const struct apm_spool *s, uint64_t num, char *out, size_t size);
/* Reads a whole file into a malloc'd buffer: 0 or -errno. */
int spool_read_file(const char *path, uint8_t **out, size_t *len);
int spool_write_all(int fd, const uint8_t *p, size_t n);
/* Persists the acked cursor (atomically, through a temporary file in dir_fd). */
int spool_state_write(struct apm_spool *s, uint64_t acked, int dir_fd);
int spool_state_read(struct apm_spool *s, uint64_t *acked);
/* spool_scan_rec (an apm_spool_parse_segment callback) counts a segment's records into a
 * struct scan_ctx, and fills g's seq range when g is not NULL. */
struct scan_ctx {
    struct seg *g;
    uint64_t count_after; /* count records with seq above it */
    uint64_t records, samples;
};
void spool_scan_rec(void *ctx, uint64_t seq, uint32_t nsamples, const uint8_t *data, size_t len);
void spool_seg_remove_first(struct apm_spool *s);
/* Finds the segments left by earlier runs, cuts torn tails, and rebuilds the segment list. */
void spool_scan(struct apm_spool *s);
int spool_open_new_segment(struct apm_spool *s);
void spool_sync_now(struct apm_spool *s);
void spool_close_segment(struct apm_spool *s);

#endif
