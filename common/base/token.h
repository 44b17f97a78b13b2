#ifndef APM_TOKEN_H
#define APM_TOKEN_H

/*
 * The shared secret between agents and the collector: a file holding one
 * line of text (the collector writes 64 hex characters), mode 0600.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The shortest token accepted, in bytes (after trailing whitespace is trimmed). */
#define APM_TOKEN_MIN 16

/*
 * Reads the token from path into buf (cap bytes), trimming trailing
 * whitespace. When the file does not exist and create is true, generates a
 * new random token and writes it with mode 0600 first. A file that group or
 * others may access (any of mode 077), or a token shorter than APM_TOKEN_MIN,
 * is refused. Returns 0 and *len, or a negative code with a one-line reason
 * naming the file in err.
 */
int apm_token_load(const char *path, bool create, uint8_t *buf, size_t cap, size_t *len, char *err,
                   size_t errlen);

/*
 * True when a (alen bytes) equals b (blen bytes) and both are non-empty.
 * Compares the whole secret whatever the input, so timing says nothing
 * about it.
 */
bool apm_token_equal(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);

#endif
