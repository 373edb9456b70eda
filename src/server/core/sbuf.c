/* sbuf.c — the growable byte buffer (sbuf.h). */
#include "core/sbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"

static bool sb_room(sbuf *b, size_t n)
{
    if (b->oom) return false;
    if (b->cap - b->len >= n) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < n) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void sb_add(sbuf *b, const void *p, size_t n)
{
    if (!n || !sb_room(b, n)) return;
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

void sb_str(sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

void sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        sb_add(b, tmp, (size_t)n);
        return;
    }
    if (!sb_room(b, (size_t)n + 1)) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void sb_json_str(sbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (!sb_room(b, n + 2)) return;
    b->p[b->len++] = '"';
    size_t run = 0; /* bytes copied as they are, in one go */
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch < 0x80 && ch != '"' && ch != '\\') {
            run++;
            continue;
        }
        if (ch >= 0x80) {
            size_t l = utf8_seq((const unsigned char *)s + i, n - i);
            if (l) {
                run += l;
                i += l - 1;
                continue;
            }
            /* not UTF-8: U+FFFD, so the answer stays valid JSON */
            sb_add(b, s + i - run, run);
            run = 0;
            sb_add(b, "\\ufffd", 6);
            continue;
        }
        sb_add(b, s + i - run, run);
        run = 0;
        char e[6] = {'\\', 0};
        size_t en = 2;
        switch (ch) {
        case '"':
            e[1] = '"';
            break;
        case '\\':
            e[1] = '\\';
            break;
        case '\n':
            e[1] = 'n';
            break;
        case '\r':
            e[1] = 'r';
            break;
        case '\t':
            e[1] = 't';
            break;
        default:
            memcpy(e, "\\u00", 4);
            e[4] = hex[ch >> 4];
            e[5] = hex[ch & 15];
            en = 6;
        }
        sb_add(b, e, en);
    }
    sb_add(b, s + n - run, run);
    sb_add(b, "\"", 1);
}

void sb_free(sbuf *b)
{
    free(b->p);
    *b = (sbuf){0};
}
