/*
 * Fuzz target for what a Python probe sends the agent: newline-separated
 * JSON lines, checked strictly. The first line is parsed as the hello; the
 * rest with that hello, and checked diff and gc lines are turned into a
 * batch as the agent does.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/probe_line.h"
#include "common/analysis/model.h"
#include "common/base/text.h"

/* Whatever the probe sends, the strings the agent keeps are clean (common/base/text.h). */
static void assert_clean(const char *s)
{
    char copy[APM_MODEL_STRING_MAX + 1];
    if (apm_text_clean(copy, sizeof(copy), s, strlen(s)) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct apm_probe_hello hello;
    bool have_hello = false;
    struct apm_batch *b = apm_batch_new(1);
    if (b == NULL)
        return 0;
    struct apm_proc_desc p = {.pid = 42, .start_ms = 1000, .name = "app.py"};
    uint32_t proc = 0;
    apm_batch_add_proc(b, &p, &proc);
    const char *s = (const char *)data, *end = s + size;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t len = nl ? (size_t)(nl - s) : (size_t)(end - s);
        struct apm_probe_line l;
        char why[128];
        if (apm_probe_line_parse(s, len, have_hello ? &hello : NULL, &l, why, sizeof(why)) == 0) {
            if (l.type == APM_PROBE_LINE_HELLO) {
                apm_probe_line_hello(&l, &hello);
                assert_clean(hello.name);
                assert_clean(hello.mode);
                have_hello = true;
            } else if (l.type == APM_PROBE_LINE_DIFF) {
                apm_probe_line_to_diff(&l, b, proc);
            } else if (l.type == APM_PROBE_LINE_GC) {
                apm_probe_line_to_gc(&l, b, proc);
            }
            apm_probe_line_clear(&l);
        }
        s += len + (nl != NULL);
    }
    for (uint32_t i = 0; i < b->ndiffs; i++)
        for (uint32_t k = 0; k < b->diffs[i].nsites; k++)
            if (b->diffs[i].sites[k].file != NULL)
                assert_clean(b->diffs[i].sites[k].file);
    apm_batch_free(b);
    return 0;
}
