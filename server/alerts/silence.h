#ifndef APM_SILENCE_H
#define APM_SILENCE_H

/*
 * Silences by label matcher, as Alertmanager users know them
 * (docs/alerts.md, "Silences"): a set of matchers on an alert's labels, a
 * start, an end, an author and a comment. While a silence is active, every
 * alert whose labels it matches (alerts that do not exist yet included) is
 * silenced: listed as such and not notified. When it ends, or is expired
 * early, a still firing alert is notified then.
 *
 * This module is the plain part: parsing and validating matchers, matching
 * an alert, the record stored in the "silences" database, and the set the
 * engine keeps (struct apm_silences, not thread-safe: server/alerts/alerts*.c
 * hold it under its mutex). Pure functions otherwise; any thread.
 */
#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/alerts/alerts.h"

#define APM_SILENCE_MAX_MATCHERS 16u
#define APM_SILENCE_NAME_MAX 64u
#define APM_SILENCE_VALUE_MAX 256u
#define APM_SILENCE_AUTHOR_MAX 128u
#define APM_SILENCE_COMMENT_MAX 512u
/* A matcher written as text: name, operator, value (quoted or not). */
#define APM_SILENCE_MATCHER_TEXT_MAX (APM_SILENCE_NAME_MAX + 2 + 2 * APM_SILENCE_VALUE_MAX)
/* The longest a silence may last. */
#define APM_SILENCE_MAX_DURATION_MS (365LL * 86400 * 1000)

enum apm_silence_op {
    APM_SILENCE_EQ = 0, /* =  the label's value is the text */
    APM_SILENCE_NE,     /* != it is not */
    APM_SILENCE_RE,     /* =~ the whole value matches the regex */
    APM_SILENCE_NRE,    /* !~ it does not */
};

/* "=", "!=", "=~", "!~". */
const char *apm_silence_op_name(enum apm_silence_op op);

struct apm_silence_matcher {
    char name[APM_SILENCE_NAME_MAX];
    enum apm_silence_op op;
    char value[APM_SILENCE_VALUE_MAX];
};

enum apm_silence_state { APM_SILENCE_PENDING = 0, APM_SILENCE_ACTIVE, APM_SILENCE_EXPIRED };

const char *apm_silence_state_name(enum apm_silence_state s);

/* A silence as created, listed and stored. Plain data: copy it freely. */
struct apm_silence {
    uint64_t id; /* 0 until the set assigns one */
    struct apm_silence_matcher m[APM_SILENCE_MAX_MATCHERS];
    unsigned n;
    int64_t starts_ms, ends_ms; /* Unix ms; ends > starts */
    int64_t created_ms;
    int64_t updated_ms; /* the last change (creation, early expiry) */
    char created_by[APM_SILENCE_AUTHOR_MAX];
    char comment[APM_SILENCE_COMMENT_MAX];
};

/* The silence's state at now_ms. */
enum apm_silence_state apm_silence_state_at(const struct apm_silence *s, int64_t now_ms);

/*
 * Parses one matcher written as amtool does: NAME OP VALUE with OP one of
 * "=", "!=", "=~", "!~", NAME a label name ([A-Za-z_][A-Za-z0-9_]*) and
 * VALUE the rest, optionally in double quotes (\" and \\ escape inside).
 * Returns 0, or APM_E_PARSE with a reason naming the part in err.
 */
int apm_silence_matcher_parse(const char *text, struct apm_silence_matcher *m, char *err,
                              size_t errlen);

/* Writes the matcher as text (NAME OP "VALUE") into buf. Returns buf. */
char *apm_silence_matcher_format(const struct apm_silence_matcher *m, char *buf, size_t size);

/*
 * Checks a silence before it is added: 1 to APM_SILENCE_MAX_MATCHERS
 * matchers with valid names, regexes that compile within the limits of
 * common/base/regex_limit.h, at least one matcher that does not match an empty
 * value (a silence of everything is refused, as Alertmanager does), ends
 * after starts and after now_ms, at most APM_SILENCE_MAX_DURATION_MS long,
 * author and comment free of control characters. Returns 0, or
 * APM_E_PARSE with a reason naming the field ("matchers[1]: ...",
 * "ends_at: ...") in err.
 */
int apm_silence_validate(const struct apm_silence *s, int64_t now_ms, char *err, size_t errlen);

/*
 * The value of label name on alert a (written into buf when it is a number):
 * alertname (also: rule), severity, kind, host, process (the process name,
 * as Alertmanager gets it; also: name), process_id, pid, metric, then the
 * rule's labels. An absent label is "" (Alertmanager's rule). Returns a
 * pointer into a or buf.
 */
const char *apm_silence_alert_label(const struct apm_alert *a, const char *name, char *buf,
                                    size_t size);

/*
 * The record in the "silences" database: a JSON object with a version.
 * encode returns an owned buffer of *len bytes (free with free()) or NULL;
 * decode returns 0 or APM_E_PARSE for a damaged or unknown record (it also
 * validates the matchers, not the times).
 */
char *apm_silence_record_encode(const struct apm_silence *s, size_t *len);
int apm_silence_record_decode(const void *data, size_t len, struct apm_silence *out);

/* ---- the set the engine keeps (not thread-safe) ---- */

struct apm_silences;

/*
 * An empty set holding at most max silences (expired ones included) and
 * keeping expired ones keep_ms before removing them. Returns owned (free
 * with apm_silences_free) or NULL.
 */
struct apm_silences *apm_silences_new(size_t max, int64_t keep_ms);
void apm_silences_free(struct apm_silences *set);

/*
 * Adds s (validated with apm_silence_validate; copied), giving it the id
 * next_id when s->id is 0 (*next_id then advances) or keeping s->id (a
 * stored silence being loaded). Returns 0, APM_E_LIMIT when the set is full,
 * APM_E_PARSE when a regex does not compile, or -ENOMEM.
 */
int apm_silences_add(struct apm_silences *set, struct apm_silence *s, uint64_t *next_id);

/*
 * Ends silence id at now_ms (an early expiry; a pending one ends before it
 * starts). Returns 0, 1 when it had already ended (nothing changes), or
 * APM_E_NOTFOUND.
 */
int apm_silences_expire(struct apm_silences *set, uint64_t id, int64_t now_ms);

/* Copies silence id. Returns 0 or APM_E_NOTFOUND. */
int apm_silences_get(const struct apm_silences *set, uint64_t id, struct apm_silence *out);

/* Copies up to max silences into out, newest first. Returns how many there are. */
size_t apm_silences_list(const struct apm_silences *set, struct apm_silence *out, size_t max);

/* The id of an active silence that matches a at now_ms, or 0. */
uint64_t apm_silences_match(const struct apm_silences *set, const struct apm_alert *a,
                            int64_t now_ms);

/*
 * The first time after now_ms at which a silence starts or ends (when what
 * the set matches can change by itself), or INT64_MAX.
 */
int64_t apm_silences_next_edge(const struct apm_silences *set, int64_t now_ms);

/* How many silences are pending, active and expired at now_ms. */
void apm_silences_count(const struct apm_silences *set, int64_t now_ms, uint64_t out[3]);

/*
 * Persistence. apm_silences_changed encodes every silence changed since it
 * was last written into *recs (n of them; returns owned: free each buf, then
 * the array, with apm_silences_recs_free); after the store took them,
 * apm_silences_persisted marks those versions written. apm_silences_prune
 * removes silences that ended more than keep_ms ago and returns their ids in
 * a new array (*del, *ndel; free() it) for the caller to delete from the
 * store; a deletion that fails is pruned again at the next start, where the
 * loaded silence is past keeping as well. Each returns 0 or -ENOMEM.
 */
struct apm_silence_rec {
    uint64_t id;
    char *buf; /* owned by the caller after apm_silences_changed */
    size_t len;
    uint64_t version;
};
int apm_silences_changed(struct apm_silences *set, struct apm_silence_rec **recs, size_t *n);
void apm_silences_persisted(struct apm_silences *set, const struct apm_silence_rec *recs, size_t n);
void apm_silences_recs_free(struct apm_silence_rec *recs, size_t n);
int apm_silences_prune(struct apm_silences *set, int64_t now_ms, uint64_t **del, size_t *ndel);

#endif
