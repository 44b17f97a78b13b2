#ifndef APM_API_ALERTS_H
#define APM_API_ALERTS_H

/*
 * The alert endpoints (docs/api.md): GET /api/v1/alerts[?state=][&limit=],
 * GET /api/v1/alerts/{id} and POST /api/v1/alerts/{id}/ack {"for": S,
 * "comment": "..."}. Loop thread; the engine's calls hold its mutex only.
 */
#include "server/alerts/alerts.h"
#include "server/api/api.h"

/* Adds the routes to api; engine is borrowed and must outlive it. Returns 0 or a code. */
int apm_api_alerts_register(struct apm_api *api, struct apm_alerts *engine);

#endif
