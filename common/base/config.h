#ifndef APM_CONFIG_H
#define APM_CONFIG_H

/*
 * Settings from an INI file and from command-line flags, described once by a
 * table of options. INI keys are the long flag names ("data-dir", "listen"),
 * grouped in sections ("[agent]", "[collector]", "[watch]"). Flags override
 * the file. Every error is one line naming the file, line and key, or the
 * flag; nothing is ever silently defaulted.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum apm_opt_type {
    APM_OPT_STRING,   /* char[size] */
    APM_OPT_INT,      /* int64_t, within [min, max] */
    APM_OPT_DURATION, /* int64_t milliseconds, "N[s|m|h|d]", within [min, max] ms */
    APM_OPT_BOOL,     /* bool: true/false/yes/no/on/off/1/0 */
    APM_OPT_ENDPOINT, /* char[size], "HOST:PORT" or "[V6]:PORT", validated */
    APM_OPT_SIZE,     /* int64_t bytes, "N[K|M|G]" (binary), within [min, max] */
};

struct apm_opt {
    const char *section; /* INI section holding the key */
    const char *key;     /* INI key and long flag name (without "--") */
    enum apm_opt_type type;
    size_t offset; /* offsetof(struct ..., field) */
    size_t size;   /* for strings: buffer size */
    int64_t min, max;
    bool flag;        /* also accepted as --key on the command line */
    const char *help; /* one line for --help and docs */
};

/* Handler for sections the table does not know ("[rule NAME]"); 0 accepts. */
typedef int (*apm_config_section_fn)(void *ctx, const char *section, const char *key,
                                     const char *value, char *err, size_t errlen);

/*
 * Loads path into dst through opts (terminated by an entry with key NULL).
 * Unknown sections go to other (NULL = error). Returns 0, or APM_E_CONFIG
 * with "FILE:LINE: key 'K' in [S]: reason" in err; -errno when the file cannot
 * be read ("FILE: reason").
 */
int apm_config_load(const char *path, const struct apm_opt *opts, void *dst,
                    apm_config_section_fn other, void *ctx, char *err, size_t errlen);

/*
 * As apm_config_load, from the len bytes at text (not NUL-terminated; read,
 * never written); name stands for the file in error lines.
 */
int apm_config_load_mem(const char *name, const char *text, size_t len, const struct apm_opt *opts,
                        void *dst, apm_config_section_fn other, void *ctx, char *err,
                        size_t errlen);

/* Sets one option from its text. Returns 0 or APM_E_CONFIG with the reason in err. */
int apm_config_set(const struct apm_opt *opt, void *dst, const char *value, char *err,
                   size_t errlen);

/* Finds the option for a flag or key name, or NULL. section NULL matches any. */
const struct apm_opt *apm_config_find(const struct apm_opt *opts, const char *section,
                                      const char *key);

/*
 * Splits "HOST:PORT", "[V6]:PORT" or ":PORT" into host (size hostlen) and
 * port. Returns 0 or APM_E_CONFIG.
 */
int apm_endpoint_split(const char *s, char *host, size_t hostlen, int *port);

enum apm_args_pass {
    APM_ARGS_CONFIG, /* apply only --config, so the file can be read first */
    APM_ARGS_REST,   /* apply every other flag, on top of the file */
};

/*
 * Applies "--key VALUE", "--key=VALUE" and bare "--key" (booleans) from argv
 * to dst through opts, in one of two passes. Prints one line naming the flag
 * to stderr ("PROG: flag '--listen': ...") and returns APM_E_USAGE on any
 * unknown flag, missing value, bad value or stray argument.
 */
int apm_config_args(const char *prog, int argc, char **argv, const struct apm_opt *opts, void *dst,
                    enum apm_args_pass pass);

/* The value's placeholder in help and man pages: "DURATION", "N", ... ("" for booleans). */
const char *apm_config_arg_name(enum apm_opt_type type);

/* Prints the flags of opts as help lines to stdout. */
void apm_config_print_help(const struct apm_opt *opts);

#endif
