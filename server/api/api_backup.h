#ifndef APM_API_BACKUP_H
#define APM_API_BACKUP_H

/*
 * POST /api/v1/backup {"dir": "/abs/path"}: an online backup of the store
 * (apm_store_backup) on a libuv worker thread while ingest goes on, answered
 * when it ends with its size, duration and the newest sample it covers; 409
 * while another runs. docs/api.md describes the answer.
 */
#include <uv.h>

#include "server/api/api.h"

/*
 * Adds the route to api; the backups run on loop's thread pool (loop
 * borrowed; must outlive the API). Returns as apm_api_add_route. Loop
 * thread, before serving.
 */
int apm_api_backup_register(struct apm_api *api, uv_loop_t *loop);

#endif
