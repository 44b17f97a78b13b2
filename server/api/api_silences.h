#ifndef APM_API_SILENCES_H
#define APM_API_SILENCES_H

/*
 * The silence endpoints (docs/api.md): GET /api/v1/silences (pending,
 * active and recently ended ones), POST /api/v1/silences {"matchers":
 * [...], "ends_at" or "duration", "starts_at", "created_by", "comment"},
 * GET /api/v1/silences/{id} and DELETE /api/v1/silences/{id} (expire now).
 * Writes need the API token when the collector has one, as every write
 * route. Loop thread; the engine's calls hold its mutex only.
 */
#include "server/alerts/alerts.h"
#include "server/api/api.h"

/* Adds the routes to api; engine is borrowed and must outlive it. Returns 0 or a code. */
int apm_api_silences_register(struct apm_api *api, struct apm_alerts *engine);

#endif
