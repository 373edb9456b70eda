/* utf8.h — UTF-8 checks for text that came from outside (a client's names,
 * an SQLite value) before weir repeats it in an error, a log line or JSON. */
#ifndef WEIR_SERVER_UTF8_H
#define WEIR_SERVER_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* The length (1 to 4) of the well-formed UTF-8 sequence at s (n > 0 bytes
 * available), or 0 if it is not one: overlong forms, surrogates and code
 * points above U+10FFFF are not. */
static inline size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    uint32_t cp, min;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2, cp = c & 0x1fu, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3, cp = c & 0x0fu, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4, cp = c & 0x07u, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

/* In place, the same length: each byte of an ill-formed UTF-8 sequence
 * becomes '?', and each control character but tab a space (no forged log
 * lines, no terminal escapes). */
static inline void utf8_scrub(char *s, size_t n)
{
    unsigned char *p = (unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_seq(p + i, n - i);
        if (!l) {
            p[i++] = '?';
        } else if (l == 1 && ((p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7f)) {
            p[i++] = ' ';
        } else {
            i += l;
        }
    }
}

#endif
