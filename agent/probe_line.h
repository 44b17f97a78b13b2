#ifndef APM_PROBE_LINE_H
#define APM_PROBE_LINE_H

/*
 * One line of the probe protocol (docs/probe-protocol.md), checked strictly:
 * every field of the line's type present, of its type and in its range, and
 * no other field. A checked diff or gc line is then turned into the batch
 * model. Nothing here trusts the line's "pid": the caller knows the peer.
 *
 * Thread: any; no state besides the arguments.
 */
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/analysis/model.h"

enum apm_probe_line_type {
    APM_PROBE_LINE_HELLO = 1,
    APM_PROBE_LINE_GC,
    APM_PROBE_LINE_DIFF,
    APM_PROBE_LINE_TRACE_STATE,
    APM_PROBE_LINE_STATS,
    APM_PROBE_LINE_OBJECTS,
    APM_PROBE_LINE_CONTROL_ERROR,
};

/* What the agent keeps of a connection's hello. */
struct apm_probe_hello {
    int64_t claimed_pid; /* informative only */
    uint32_t top_n;
    char name[257];
    char mode[16];
};

/* A checked line. Clear with apm_probe_line_clear. */
struct apm_probe_line {
    enum apm_probe_line_type type;
    json_t *obj; /* owned */
};

/*
 * Parses and checks one line (without its newline). hello is the
 * connection's hello, or NULL before it (then only a hello is accepted).
 * Returns 0 and *out, or APM_E_PARSE with a reason in why (for logs).
 */
int apm_probe_line_parse(const char *line, size_t len, const struct apm_probe_hello *hello,
                         struct apm_probe_line *out, char *why, size_t why_size);

void apm_probe_line_clear(struct apm_probe_line *l);

/* Copies what the agent keeps from a checked hello line. */
void apm_probe_line_hello(const struct apm_probe_line *l, struct apm_probe_hello *out);

/*
 * Appends a checked diff (or gc) line to b as a diff (gc record) of process
 * proc. Borrows l. Returns 0, -EINVAL or -ENOMEM.
 */
int apm_probe_line_to_diff(const struct apm_probe_line *l, struct apm_batch *b, uint32_t proc);
int apm_probe_line_to_gc(const struct apm_probe_line *l, struct apm_batch *b, uint32_t proc);

#endif
