/*
 * The online backup route. The copy takes seconds to minutes, so the handler
 * defers its answer (APM_API_DEFERRED) and runs apm_store_backup with
 * uv_queue_work: the loop keeps serving, the writer keeps committing. A
 * pending backup keeps the loop alive, so the collector's shutdown waits for
 * it rather than freeing the store under it.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"
#include "server/api/api_backup.h"

struct backup_job {
    uv_work_t work;
    struct apm_store *store;
    struct apm_http_conn *conn;
    char dir[PATH_MAX];
    struct apm_store_backup_info info;
    char err[PATH_MAX + 256];
    int rc;
};

static void run_backup(uv_work_t *w)
{
    struct backup_job *j = w->data;
    j->rc = apm_store_backup(j->store, j->dir, &j->info, j->err, sizeof(j->err));
}

/* The HTTP status of a failed backup: the caller's mistake, a backup running, or ours. */
static int failure_status(int rc)
{
    switch (rc) {
    case -EBUSY:
        return 409;
    case -EINVAL:
    case -ENOTEMPTY:
    case -ENOTDIR:
    case -ENOENT:
    case -EACCES:
    case -EEXIST:
    case -EROFS:
        return 400;
    default:
        return 500;
    }
}

static json_t *answer(const struct backup_job *j)
{
    const struct apm_store_backup_info *i = &j->info;
    return json_pack("{s:s, s:I, s:I, s:f, s:o, s:o*, s:I, s:I}", "dir", j->dir, "bytes",
                     (json_int_t)i->bytes, "other_bytes", (json_int_t)i->other_bytes, "duration",
                     (double)i->duration_us / 1e6, "started", apm_api_time(i->started_ms),
                     "last_sample",
                     i->last_sample_ms ? apm_api_time(i->last_sample_ms) : json_null(), "series",
                     (json_int_t)i->series, "samples", (json_int_t)i->samples);
}

static void backup_done(uv_work_t *w, int status)
{
    struct backup_job *j = w->data;
    json_t *obj = NULL;
    int code = 200;
    if (status != 0)
        code = apm_api_error(&obj, 500, "backup not run: %s", uv_strerror(status));
    else if (j->rc != 0)
        code = apm_api_error(&obj, failure_status(j->rc), "%s", j->err);
    else
        obj = answer(j);
    apm_api_answer(j->conn, code, obj);
    free(j);
}

static int post_backup(const struct apm_api_call *call, json_t **out)
{
    uv_loop_t *loop = call->ctx;
    if (call->conn == NULL)
        return apm_api_error(out, 500, "a backup needs a connection to answer on");
    json_error_t jerr;
    json_t *body = json_loadb(call->req->body, call->req->body_len, 0, &jerr);
    const char *dir = json_string_value(json_object_get(body, "dir"));
    if (!json_is_object(body) || dir == NULL || json_object_size(body) != 1) {
        json_decref(body);
        return apm_api_error(out, 400,
                             "the body must be a JSON object like {\"dir\": \"/var/backups/apm\"}: "
                             "the backup directory, absolute, on the collector's host");
    }
    if (strlen(dir) >= PATH_MAX - 32) {
        json_decref(body);
        return apm_api_error(out, 400, "backup directory name too long (%d bytes at most)",
                             PATH_MAX - 32);
    }
    if (apm_store_backup_running(call->store)) {
        json_decref(body);
        return apm_api_error(out, 409, "a backup is already running; wait for it to finish");
    }
    struct backup_job *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        json_decref(body);
        return apm_api_error(out, 500, "out of memory");
    }
    snprintf(j->dir, sizeof(j->dir), "%s", dir);
    json_decref(body);
    j->store = call->store;
    j->conn = call->conn;
    j->work.data = j;
    int rc = uv_queue_work(loop, &j->work, run_backup, backup_done);
    if (rc != 0) {
        free(j);
        return apm_api_error(out, 500, "cannot start the backup: %s", uv_strerror(rc));
    }
    return APM_API_DEFERRED;
}

int apm_api_backup_register(struct apm_api *api, uv_loop_t *loop)
{
    return apm_api_add_route(api, "POST", "backup", post_backup, loop);
}
