/*
 * Fuzz target for silences: what the API and the store hand to
 * server/alerts/silence.c. The input's first byte picks the path: a matcher
 * as text (apm-cli and the web page send these), or a stored record. Every
 * matcher that parses is formatted and parsed back to the same matcher, and
 * a silence made of it is validated (which compiles its regex within the
 * bounds of common/base/regex_limit.h) and, when valid, matched against an alert.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/alerts/silence.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void use_silence(struct apm_silence *s)
{
    char err[256];
    s->starts_ms = 1000;
    s->ends_ms = 2000;
    if (apm_silence_validate(s, 1500, err, sizeof(err)) != 0)
        return;
    struct apm_silences *set = apm_silences_new(2, 1000);
    if (set == NULL)
        return;
    uint64_t next = 1;
    s->id = 0;
    if (apm_silences_add(set, s, &next) != 0)
        __builtin_trap(); /* a validated silence is accepted */
    struct apm_alert a;
    memset(&a, 0, sizeof(a));
    memcpy(a.rule, "leak", 5);
    memcpy(a.host, "web-3", 6);
    memcpy(a.labels, "team=a,tier=1", 14);
    a.pid = 42;
    (void)apm_silences_match(set, &a, 1500);
    apm_silences_free(set);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096)
        return 0;
    char *text = malloc(size);
    if (text == NULL)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    struct apm_silence *s = calloc(1, sizeof(*s));
    char err[256];
    if (s != NULL && data[0] % 2 == 0) {
        if (apm_silence_matcher_parse(text, &s->m[0], err, sizeof(err)) == 0) {
            char buf[APM_SILENCE_MATCHER_TEXT_MAX + 8];
            struct apm_silence_matcher back;
            apm_silence_matcher_format(&s->m[0], buf, sizeof(buf));
            if (apm_silence_matcher_parse(buf, &back, err, sizeof(err)) != 0 ||
                strcmp(back.name, s->m[0].name) != 0 || back.op != s->m[0].op ||
                strcmp(back.value, s->m[0].value) != 0)
                __builtin_trap(); /* format and parse agree */
            s->n = 1;
            use_silence(s);
        }
    } else if (s != NULL && apm_silence_record_decode(text, size - 1, s) == 0) {
        size_t len = 0;
        char *again = apm_silence_record_encode(s, &len);
        free(again);
        use_silence(s);
    }
    free(s);
    free(text);
    return 0;
}
