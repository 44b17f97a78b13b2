/*
 * Temporary directories of the tests: removed with everything in them.
 * Header only, included by each test that makes one.
 */
#ifndef APM_TEST_TMPDIR_H
#define APM_TEST_TMPDIR_H

#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>

static inline int apm_test_rm_entry(const char *path, const struct stat *st, int flag,
                                    struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes dir and everything under it, without following symbolic links. */
static inline void apm_test_rmtree(const char *dir)
{
    nftw(dir, apm_test_rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

#endif
