#ifndef APM_PROCFS_H
#define APM_PROCFS_H

/*
 * Readers of the Linux /proc files the sampler needs. Every path is built
 * under a root directory given by the caller ("/proc" in production, a
 * fixture tree in tests), so nothing here assumes the real /proc.
 *
 * The parse functions work on text already in memory and never allocate; the
 * read functions fill caller buffers. All of them return 0 or a negative
 * code: -ENOENT or -ESRCH when the process is gone (normal: processes exit
 * at any moment), -EACCES when we may not look, APM_E_PARSE when the text is
 * not what the kernel writes, or another -errno from open/read.
 * Thread: no shared state; safe from any thread.
 */
#include <stddef.h>
#include <stdint.h>

/* Largest /proc/<pid>/stat we accept; the kernel writes about 300 bytes. */
#define APM_PROCFS_STAT_MAX 1024
/* A comm is at most 64 bytes (kernel worker names), including the NUL. */
#define APM_PROCFS_COMM_MAX 64

/* The fields of /proc/<pid>/stat that the sampler uses. */
struct apm_procfs_stat {
    int32_t pid;
    char comm[APM_PROCFS_COMM_MAX]; /* without the parentheses */
    char state;                     /* R, S, D, Z, ... */
    int32_t ppid;
    uint32_t flags;           /* PF_* flags; APM_PROCFS_PF_KTHREAD marks kernel threads */
    uint64_t starttime_ticks; /* since boot, in sysconf(_SC_CLK_TCK) units */
    uint64_t rss_pages;       /* resident pages, as statm's second field */
};

#define APM_PROCFS_PF_KTHREAD 0x00200000u

/* /proc/<pid>/statm, in pages. */
struct apm_procfs_statm {
    uint64_t size;
    uint64_t resident;
    uint64_t shared;
};

/* /proc/<pid>/smaps_rollup, in bytes (the kernel writes kB). */
struct apm_procfs_rollup {
    uint64_t rss;
    uint64_t pss;
    uint64_t private_clean;
    uint64_t private_dirty;
    uint64_t private_hugetlb;
    uint64_t swap;
};

/* /proc/meminfo, in bytes. */
struct apm_procfs_meminfo {
    uint64_t total;
    uint64_t available;
};

/*
 * Parses the text of /proc/<pid>/stat. The comm may contain spaces and
 * parentheses ("(my (weird) name)"): it ends at the last ')'. buf need not be
 * NUL-terminated. Returns 0 or APM_E_PARSE.
 */
int apm_procfs_parse_stat(const char *buf, size_t len, struct apm_procfs_stat *out);

/* Parses /proc/<pid>/statm. Returns 0 or APM_E_PARSE. */
int apm_procfs_parse_statm(const char *buf, size_t len, struct apm_procfs_statm *out);

/*
 * Parses /proc/<pid>/smaps_rollup (or a whole smaps file: fields are summed).
 * Returns 0 or APM_E_PARSE when no Pss line is present.
 */
int apm_procfs_parse_rollup(const char *buf, size_t len, struct apm_procfs_rollup *out);

/* Parses /proc/meminfo. Returns 0 or APM_E_PARSE when MemTotal is absent. */
int apm_procfs_parse_meminfo(const char *buf, size_t len, struct apm_procfs_meminfo *out);

/* Parses the btime line of /proc/stat (boot time, Unix seconds). */
int apm_procfs_parse_btime(const char *buf, size_t len, int64_t *btime_s);

/*
 * Reads a whole small file into buf (at most size - 1 bytes, NUL-terminated)
 * and sets *len. A file longer than the buffer is truncated, not an error.
 * An empty read of a /proc file means the process is gone: -ESRCH.
 */
int apm_procfs_read_path(const char *path, char *buf, size_t size, size_t *len);

/* The same from an open descriptor at offset 0 (pread): cheap re-reads. */
int apm_procfs_pread(int fd, char *buf, size_t size, size_t *len);

/*
 * Opens <root>/<pid>/<file> read-only and close-on-exec. Returns the
 * descriptor (owned: close it) or a negative code.
 */
int apm_procfs_open(const char *root, int32_t pid, const char *file);

/* Reads and parses <root>/<pid>/stat. */
int apm_procfs_read_stat(const char *root, int32_t pid, struct apm_procfs_stat *out);

/* Reads and parses the statm behind an open descriptor (apm_procfs_open). */
int apm_procfs_read_statm_fd(int fd, struct apm_procfs_statm *out);

/* Reads and parses <root>/<pid>/statm. */
int apm_procfs_read_statm(const char *root, int32_t pid, struct apm_procfs_statm *out);

/* Reads and parses <root>/<pid>/smaps_rollup. */
int apm_procfs_read_rollup(const char *root, int32_t pid, struct apm_procfs_rollup *out);

/*
 * Reads <root>/<pid>/cmdline raw: arguments separated (and usually ended) by
 * NUL bytes, at most size - 1 bytes. *len is 0 for kernel threads and zombies.
 */
int apm_procfs_read_cmdline(const char *root, int32_t pid, char *buf, size_t size, size_t *len);

/* Reads <root>/<pid>/comm without its trailing newline. */
int apm_procfs_read_comm(const char *root, int32_t pid, char *buf, size_t size);

/* Reads <root>/<pid>/cgroup raw (parse it with apm_cgroup_parse). */
int apm_procfs_read_cgroup(const char *root, int32_t pid, char *buf, size_t size, size_t *len);

/* Reads and parses <root>/meminfo. */
int apm_procfs_read_meminfo(const char *root, struct apm_procfs_meminfo *out);

/* Reads <root>/stat and returns the boot time in Unix seconds. */
int apm_procfs_read_btime(const char *root, int64_t *btime_s);

#endif
