#ifndef APM_WATCH_H
#define APM_WATCH_H

/*
 * Which processes the agent watches. Rules are compiled once (from the
 * [watch] section of the config) and then matched against each new process's
 * name (see PRODUCT.md: the Python script or module, else comm) and memory
 * cgroup path.
 *
 * Matching: a process is watched when it matches at least one name rule (or
 * there is none) and at least one cgroup rule (or there is none). Rules of
 * one kind widen the selection; the two kinds narrow each other, so
 * "name ^worker" with "cgroup /system.slice/app.service" means the workers of
 * that service. No rule at all, or apm_watch_add_all, watches everything.
 *
 * A name rule is a POSIX extended regular expression, unanchored (use ^ and
 * $). A cgroup rule is a path prefix that matches whole components:
 * "/system.slice" matches "/system.slice" and "/system.slice/a.service", not
 * "/system.slice2". A process whose cgroup is unknown ("") matches no
 * cgroup rule.
 *
 * Thread: build on one thread; afterwards apm_watch_match only reads and may
 * be called from any thread.
 */
#include <stdbool.h>
#include <stddef.h>

/* Hard caps, checked before anything is compiled or copied. */
#define APM_WATCH_MAX_RULES 64 /* per kind */
#define APM_WATCH_MAX_LEN 1024 /* bytes of one regex or prefix */

struct apm_watch;

/* *out is returned owned (free with apm_watch_free). Returns 0 or -ENOMEM. */
int apm_watch_new(struct apm_watch **out);

/* Frees the rules. Accepts NULL. */
void apm_watch_free(struct apm_watch *w);

/*
 * Adds a name rule. Borrows regex (compiled). On failure writes one line
 * saying why into err (when errsize > 0) and returns APM_E_CONFIG (bad
 * regex), APM_E_LIMIT (too many rules or too long) or -ENOMEM.
 */
int apm_watch_add_name(struct apm_watch *w, const char *regex, char *err, size_t errsize);

/*
 * Adds a cgroup prefix rule ("/system.slice/app.service"; trailing slashes
 * are ignored). Borrows prefix (copied). Returns 0, APM_E_CONFIG (not an
 * absolute path), APM_E_LIMIT or -ENOMEM, with a reason in err.
 */
int apm_watch_add_cgroup(struct apm_watch *w, const char *prefix, char *err, size_t errsize);

/* Makes every process match, whatever the other rules say. */
void apm_watch_add_all(struct apm_watch *w);

/* True when every process matches. NULL means all. */
bool apm_watch_is_all(const struct apm_watch *w);

/*
 * True when the process is watched. NULL w watches all. Borrows name and
 * cgroup (NULL counts as "").
 */
/*
 * An apm_config_section_fn for the config's [watch] section: ctx is the
 * struct apm_watch being filled. Keys: name = REGEX and cgroup = PREFIX
 * (repeatable), all = true|false. Returns 0, or a negative code with the
 * reason in err (other sections are refused as unknown).
 */
int apm_watch_config_section(void *ctx, const char *section, const char *key, const char *value,
                             char *err, size_t errlen);

bool apm_watch_match(const struct apm_watch *w, const char *name, const char *cgroup);

#endif
