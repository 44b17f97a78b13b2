#ifndef APM_TOKEN_H
#define APM_TOKEN_H

/*
 * The shared secret between agents and the collector: a file holding one
 * line of text (the collector writes 64 hex characters), mode 0600.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Reads the token from path into buf (cap bytes), trimming trailing
 * whitespace. When the file does not exist and create is true, generates a
 * new random token and writes it with mode 0600 first. Returns 0 and *len, or
 * a negative code with a one-line reason in err.
 */
int apm_token_load(const char *path, bool create, uint8_t *buf, size_t cap, size_t *len, char *err,
                   size_t errlen);

#endif
