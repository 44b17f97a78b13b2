#ifndef APM_API_FORECAST_H
#define APM_API_FORECAST_H

/*
 * The analysis endpoints of the JSON API (docs/api.md): GET /api/v1/forecasts
 * (every analysed series' latest verdict and forecast, filtered) and
 * GET /api/v1/series/{id}/analysis (one series). Both read the verdicts the
 * analyzer stored (server/store/store_verdict.h), so they cost one read
 * transaction and never wait for analysis.
 *
 * Thread: the loop thread, like every route.
 */
#include "server/api/api.h"

/* Adds both routes to api. Returns 0 or apm_api_add_route's code. Loop thread, before serving. */
int apm_api_forecast_register(struct apm_api *api);

#endif
