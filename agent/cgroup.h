#ifndef APM_CGROUP_H
#define APM_CGROUP_H

/*
 * Memory cgroups: which one a process is in, and its usage and limit.
 *
 * Hosts come in three layouts, all handled:
 *   v1      the memory controller mounted at <root>/memory
 *           (memory.usage_in_bytes, memory.limit_in_bytes);
 *   v2      the unified hierarchy at <root> (memory.current, memory.max);
 *   hybrid  v1 controllers plus the unified hierarchy at <root>/unified. The
 *           memory controller lives in exactly one hierarchy: a process's v1
 *           "memory" line wins, and the unified path is used otherwise.
 *
 * A set interns cgroups: every process in one cgroup shares one struct
 * apm_cgroup, and apm_cgroup_read caches its figures per tick, so a hundred
 * processes in one cgroup cost one read per tick. Usage and limit files stay
 * open between ticks (pread at offset 0) up to a descriptor budget.
 *
 * The limit reported is the effective one: the smallest limit of the cgroup
 * and its ancestors, since a parent's limit caps its children (v2 always, v1
 * with use_hierarchy, the default on every current kernel).
 *
 * Thread: a set and its cgroups belong to one thread at a time.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum apm_cgroup_layout {
    APM_CGROUP_LAYOUT_NONE = 0, /* no cgroup hierarchy found under the root */
    APM_CGROUP_LAYOUT_V1 = 1,
    APM_CGROUP_LAYOUT_V2 = 2,
    APM_CGROUP_LAYOUT_HYBRID = 3,
};

/* Longest cgroup path we keep; longer ones are treated as unknown. */
#define APM_CGROUP_PATH_MAX 512

/* What /proc/<pid>/cgroup says about memory. Paths start with '/'. */
struct apm_cgroup_membership {
    bool has_v1;                         /* a v1 line lists the memory controller */
    bool has_v2;                         /* a "0::" unified line is present */
    char v1_memory[APM_CGROUP_PATH_MAX]; /* path in the v1 memory hierarchy */
    char v2[APM_CGROUP_PATH_MAX];        /* path in the unified hierarchy */
};

/* One reading. Bytes. */
struct apm_cgroup_mem {
    uint64_t usage;
    uint64_t limit; /* effective limit; meaningful only when has_limit */
    bool has_limit; /* false when neither the cgroup nor an ancestor is limited */
};

/*
 * v1 writes "no limit" as the largest page-aligned long (9223372036854771712
 * with 4 KiB pages). Any value at or above this bound means unlimited.
 */
#define APM_CGROUP_V1_UNLIMITED ((uint64_t)1 << 62)

struct apm_cgroup_set;
struct apm_cgroup;

/*
 * Parses the text of /proc/<pid>/cgroup. Lines other than a v1 memory line
 * and the unified line are ignored; paths with ".." components (a process in
 * another cgroup namespace) or longer than APM_CGROUP_PATH_MAX are ignored.
 * Returns 0 or APM_E_PARSE when a line is malformed.
 * Thread: pure function.
 */
int apm_cgroup_parse(const char *buf, size_t len, struct apm_cgroup_membership *out);

/*
 * Parses a limit file: v2 "max" or v1's huge value give *has_limit false.
 * Returns 0 or APM_E_PARSE.
 */
int apm_cgroup_parse_limit(const char *buf, size_t len, uint64_t *limit, bool *has_limit);

/*
 * Creates a set over the hierarchy mounted at root ("/sys/fs/cgroup"),
 * detecting the layout once. max_fds caps the descriptors kept open (0 keeps
 * none: every read opens and closes). A root with no hierarchy is not an
 * error: the layout is NONE and every apm_cgroup_get fails.
 * Borrows root (copied). *out is returned owned (free with apm_cgroup_set_free).
 * Returns 0, -ENOMEM or -ENAMETOOLONG.
 */
int apm_cgroup_set_new(const char *root, uint32_t max_fds, struct apm_cgroup_set **out);

/* Frees the set. Every cgroup from apm_cgroup_get must have been put. Accepts NULL. */
void apm_cgroup_set_free(struct apm_cgroup_set *set);

enum apm_cgroup_layout apm_cgroup_set_layout(const struct apm_cgroup_set *set);

/* Number of cgroup files read so far (how well the per-tick cache works). */
uint64_t apm_cgroup_set_reads(const struct apm_cgroup_set *set);

/* Number of descriptors the set keeps open now. */
uint32_t apm_cgroup_set_open_fds(const struct apm_cgroup_set *set);

/*
 * Finds or creates the memory cgroup of a membership, per the layout rules
 * above, and takes a reference on it. Borrows m. *out is valid until
 * apm_cgroup_put. Returns 0, APM_E_NOTFOUND when the layout has no
 * hierarchy for this membership, or -ENOMEM.
 */
int apm_cgroup_get(struct apm_cgroup_set *set, const struct apm_cgroup_membership *m,
                   struct apm_cgroup **out);

/* Drops a reference; the last one closes the cgroup's files. Accepts NULL. */
void apm_cgroup_put(struct apm_cgroup_set *set, struct apm_cgroup *cg);

/* The cgroup's path inside its hierarchy ("/system.slice/app.service"). Borrowed. */
const char *apm_cgroup_path(const struct apm_cgroup *cg);

/*
 * Reads usage and effective limit. Within one tick (any value that changes
 * between scans) the first call reads the files and later calls return the
 * same figures without I/O. Returns 0, or a negative code when the usage file
 * cannot be read (the root of a v2 hierarchy has none; a removed cgroup).
 */
int apm_cgroup_read(struct apm_cgroup_set *set, struct apm_cgroup *cg, uint64_t tick,
                    struct apm_cgroup_mem *out);

#endif
