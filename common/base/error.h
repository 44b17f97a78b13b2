#ifndef APM_ERROR_H
#define APM_ERROR_H

/*
 * Error codes. Functions return 0 or a negative code: either a negated errno
 * value (-ENOMEM, -EINVAL, ...) or one of the project codes below. LMDB and
 * protobuf-c codes are translated at one boundary each (store.c, codec.c).
 */
enum apm_error {
    APM_E_BASE = -10000,
    APM_E_FRAME_TOO_BIG = -10001, /* frame length above the hard maximum */
    APM_E_DECODE = -10002,        /* malformed protobuf or field out of range */
    APM_E_AUTH = -10003,          /* wrong or missing token */
    APM_E_PROTO = -10004,         /* message not allowed in this state */
    APM_E_STORE = -10005,         /* store failure (LMDB) */
    APM_E_CONFIG = -10006,        /* bad configuration */
    APM_E_LIMIT = -10007,         /* a hard cap was reached */
    APM_E_NOTFOUND = -10008,      /* no such object */
    APM_E_FULL = -10009,          /* store map or queue full */
    APM_E_CLOSED = -10010,        /* the object is shutting down */
    APM_E_USAGE = -10011,         /* bad command-line usage */
    APM_E_PARSE = -10012,         /* malformed text input (file, JSON line) */
    APM_E_FRAME_EMPTY = -10013,   /* frame length 0 */
    APM_E_TLS = -10014,           /* TLS handshake or record failure */
    APM_E_LAST = -10015,
};

/* Returns a static, human-readable description of err (0, -errno or APM_E_*). */
const char *apm_strerror(int err);

#endif
