#ifndef APM_FDLIMIT_H
#define APM_FDLIMIT_H

/*
 * The descriptor limit. The collector and the agent raise their soft
 * RLIMIT_NOFILE to the hard limit at start, so that their own connection
 * caps, not EMFILE from accept(), decide who is refused.
 */
#include <stdint.h>

/*
 * Raises the soft RLIMIT_NOFILE to the hard one. Returns 0 with the soft
 * limit now in effect in *soft (may be NULL), or -errno.
 */
int apm_fdlimit_raise(uint64_t *soft);

#endif
