#include "common/base/error.h"

#include <string.h>

static const char *const project_errors[] = {
    [-(APM_E_FRAME_TOO_BIG - APM_E_BASE)] = "frame too big",
    [-(APM_E_DECODE - APM_E_BASE)] = "malformed message",
    [-(APM_E_AUTH - APM_E_BASE)] = "authentication failed",
    [-(APM_E_PROTO - APM_E_BASE)] = "protocol violation",
    [-(APM_E_STORE - APM_E_BASE)] = "store error",
    [-(APM_E_CONFIG - APM_E_BASE)] = "configuration error",
    [-(APM_E_LIMIT - APM_E_BASE)] = "limit reached",
    [-(APM_E_NOTFOUND - APM_E_BASE)] = "not found",
    [-(APM_E_FULL - APM_E_BASE)] = "full",
    [-(APM_E_CLOSED - APM_E_BASE)] = "closed",
    [-(APM_E_USAGE - APM_E_BASE)] = "usage error",
    [-(APM_E_PARSE - APM_E_BASE)] = "parse error",
    [-(APM_E_FRAME_EMPTY - APM_E_BASE)] = "empty frame (length 0)",
    [-(APM_E_TLS - APM_E_BASE)] = "TLS failure",
};

const char *apm_strerror(int err)
{
    if (err == 0)
        return "success";
    if (err < APM_E_BASE && err > APM_E_LAST) {
        const char *s = project_errors[-(err - APM_E_BASE)];
        return s ? s : "unknown error";
    }
    if (err < 0 && err > APM_E_BASE)
        return strerror(-err);
    return "unknown error";
}
