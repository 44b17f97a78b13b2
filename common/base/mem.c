#include "common/base/mem.h"

/* Any C library header defines __GLIBC__ when the library is glibc. */
#include <stdlib.h>

/* The one platform-specific call of this module: glibc can trim every arena. */
#ifdef __GLIBC__
#include <malloc.h>

void apm_mem_release(void)
{
    malloc_trim(0);
}
#else
void apm_mem_release(void)
{
}
#endif
