#include "common/base/fdlimit.h"

#include <errno.h>
#include <stddef.h>
#include <sys/resource.h>

int apm_fdlimit_raise(uint64_t *soft)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -errno;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            return -errno;
    }
    if (soft != NULL)
        *soft = (uint64_t)rl.rlim_cur;
    return 0;
}
