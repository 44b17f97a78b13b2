#ifndef APM_MEM_H
#define APM_MEM_H

/*
 * Giving memory back. After a large free (a flood of processes forgotten
 * after process-grace) the C library may keep the freed pages in its arenas,
 * so the process's RSS would stay at its peak although nothing uses them.
 * Any thread.
 */

/* Returns the free pages of every malloc arena to the kernel where the C library can. */
void apm_mem_release(void);

#endif
