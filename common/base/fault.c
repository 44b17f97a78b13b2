/*
 * Crash points (fault.h). The environment is read at each pass: a point sits
 * on a path that costs a network round trip or a disk commit anyway, and no
 * state is kept but the count of passes of the named point.
 */
#include "common/base/fault.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Passes of the point APM_FAULT names: one count, since it names one point. */
static atomic_ulong passes;

void apm_fault_point(const char *name)
{
    const char *env = getenv("APM_FAULT");
    if (env == NULL || env[0] == '\0')
        return;
    size_t len = strlen(name);
    if (strncmp(env, name, len) != 0 || (env[len] != '\0' && env[len] != ':'))
        return;
    unsigned long want = env[len] == ':' ? strtoul(env + len + 1, NULL, 10) : 1;
    if (atomic_fetch_add(&passes, 1) + 1 < want)
        return;
    char line[160];
    int n = snprintf(line, sizeof(line), "fault: crash point %s: SIGKILL\n", name);
    if (n > 0 &&
        write(STDERR_FILENO, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1) < 0)
        n = 0; /* nothing to do: the process dies either way */
    kill(getpid(), SIGKILL);
}
