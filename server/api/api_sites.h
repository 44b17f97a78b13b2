#ifndef APM_API_SITES_H
#define APM_API_SITES_H

/*
 * The probe's endpoints (docs/api.md):
 *   GET  /api/v1/sites?process=ID[&window=S|&from=T&to=T][&limit=N]
 *        allocation sites of a process ranked by growth (server/analysis/sites.h);
 *   POST /api/v1/processes/{id}/trace  {"for": S}
 *        asks the process's agent to trace it for S seconds (0: stop); 202
 *        with what was sent, 404 when the process or its agent is unknown.
 *
 * Thread: the loop thread (API handlers).
 */
#include "server/api/api.h"

/*
 * Adds the routes. A trace request goes out through the API's trace_fn
 * (apm_api_send_trace). Returns 0 or the error of apm_api_add_route.
 */
int apm_api_sites_register(struct apm_api *api);

#endif
