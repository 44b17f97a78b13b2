#include "common/base/text.h"

#include <stdlib.h>
#include <string.h>

void apm_text_fixes_add(struct apm_text_fixes *f, unsigned mask)
{
    if (mask & APM_TEXT_FIX_UTF8)
        f->invalid_utf8++;
    if (mask & APM_TEXT_FIX_CONTROL)
        f->control++;
    if (mask & APM_TEXT_FIX_LENGTH)
        f->too_long++;
}

size_t apm_text_next(const char *s, size_t len, uint32_t *cp, size_t *skip)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned char b = u[0];
    size_t need;
    /* The range the second byte must fall in: it rules out overlong forms,
     * surrogates and code points above U+10FFFF (RFC 3629, table 3-7 of Unicode). */
    unsigned char lo = 0x80, hi = 0xBF;
    uint32_t c;
    if (b < 0x80) {
        *cp = b;
        return 1;
    } else if (b >= 0xC2 && b <= 0xDF) {
        need = 1;
        c = b & 0x1Fu;
    } else if (b >= 0xE0 && b <= 0xEF) {
        need = 2;
        c = b & 0x0Fu;
        if (b == 0xE0)
            lo = 0xA0;
        else if (b == 0xED)
            hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3;
        c = b & 0x07u;
        if (b == 0xF0)
            lo = 0x90;
        else if (b == 0xF4)
            hi = 0x8F;
    } else {
        *skip = 1;
        return 0;
    }
    size_t i = 1;
    for (; i <= need; i++) {
        if (i >= len || u[i] < lo || u[i] > hi) {
            /* The valid-looking prefix is one replacement, as Unicode recommends. */
            *skip = i;
            return 0;
        }
        c = (c << 6) | (u[i] & 0x3Fu);
        lo = 0x80;
        hi = 0xBF;
    }
    *cp = c;
    return i;
}

int apm_text_is_control(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F);
}

/* Appends n bytes if they fit whole; returns 0, or 1 when dst is full. */
static int put(char *dst, size_t size, size_t *at, const char *p, size_t n)
{
    if (*at + n > size - 1)
        return 1;
    memcpy(dst + *at, p, n);
    *at += n;
    return 0;
}

unsigned apm_text_clean(char *dst, size_t size, const char *src, size_t len)
{
    unsigned mask = 0;
    size_t at = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp = 0;
        size_t skip = 0;
        size_t n = apm_text_next(src + i, len - i, &cp, &skip);
        const char *p = src + i;
        size_t plen = n;
        unsigned fix = 0;
        if (n == 0 || apm_text_is_control(cp)) {
            fix = n == 0 ? APM_TEXT_FIX_UTF8 : APM_TEXT_FIX_CONTROL;
            p = APM_TEXT_REPLACEMENT;
            plen = sizeof(APM_TEXT_REPLACEMENT) - 1;
        }
        if (put(dst, size, &at, p, plen) != 0) {
            /* What is cut off is not counted for its other faults. */
            mask |= APM_TEXT_FIX_LENGTH;
            break;
        }
        mask |= fix;
        i += n != 0 ? n : skip;
    }
    dst[at] = '\0';
    return mask;
}

/* True when s (len bytes) is valid UTF-8, and without control characters if asked. */
static int scan(const char *s, size_t len, int controls_ok)
{
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t skip;
        size_t n = apm_text_next(s + i, len - i, &cp, &skip);
        if (n == 0 || (!controls_ok && apm_text_is_control(cp)))
            return 0;
        i += n;
    }
    return 1;
}

int apm_text_utf8_valid(const char *s, size_t len)
{
    return scan(s, len, 1);
}

char *apm_text_dup(const char *s, size_t max, unsigned *mask)
{
    if (s == NULL)
        s = "";
    size_t len = strlen(s);
    if (mask != NULL)
        *mask = 0;
    if (len <= max && scan(s, len, 0)) {
        char *copy = malloc(len + 1);
        if (copy != NULL)
            memcpy(copy, s, len + 1);
        return copy;
    }
    /* A replacement takes at most three bytes per input byte. */
    size_t size = (len <= max / 3 ? len * 3 : max) + 1;
    char *out = malloc(size);
    if (out == NULL)
        return NULL;
    unsigned m = apm_text_clean(out, size, s, len);
    if (mask != NULL)
        *mask = m;
    char *fit = realloc(out, strlen(out) + 1);
    return fit != NULL ? fit : out;
}
