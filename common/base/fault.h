#ifndef APM_FAULT_H
#define APM_FAULT_H

/*
 * Crash points for tests (docs/testing.md, "Crash points"). A crash point is
 * a named place in the code where a kill -9 must not lose anything acked.
 * It is compiled into every build and does nothing unless the environment
 * variable APM_FAULT names it: APM_FAULT=NAME kills the process with SIGKILL
 * the first time the point is passed, APM_FAULT=NAME:N the N-th time. The
 * line "fault: crash point NAME: SIGKILL" goes to stderr first, so that a
 * test can tell its kill from another death. Any thread.
 */

/* Kills the process when APM_FAULT names this point (and its count is reached). */
void apm_fault_point(const char *name);

#endif
