#ifndef APM_ALERT_RECORD_H
#define APM_ALERT_RECORD_H

/*
 * An alert as stored in the "alerts" database: a JSON object with a version
 * member, every field of struct apm_alert by name. JSON keeps the record
 * readable with mdb_dump and lets later versions add fields; an alert is
 * written a few times in its life, so the bytes do not matter. Any thread.
 */
#include <stddef.h>

#include "server/alerts/alerts.h"

/* Returns an owned buffer of *len bytes (free with free()) or NULL when out of memory. */
char *apm_alert_record_encode(const struct apm_alert *a, size_t *len);

/* Parses a record into *out. Returns 0, or APM_E_PARSE for a damaged or unknown record. */
int apm_alert_record_decode(const void *data, size_t len, struct apm_alert *out);

#endif
