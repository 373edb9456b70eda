/* util.c — clocks, credential masking and a growable string buffer. */

#include "internal.h"
#include "scheme.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

int64_t weir_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t weir_now_ms(void)
{
    return weir_now_ns() / 1000000;
}

/* Keys whose value is a secret in "key=value" text (libpq conninfo, URL query). */
static const char *const secret_keys[] = {"password", "pass", "passwd", "pwd", "secret", "token"};

static size_t secret_key_at(const char *s, const char *start)
{
    /* s points at a key candidate; it must start a word */
    if (s > start && (s[-1] == '_' || (s[-1] >= 'a' && s[-1] <= 'z') ||
                      (s[-1] >= 'A' && s[-1] <= 'Z') || (s[-1] >= '0' && s[-1] <= '9')))
        return 0;
    for (size_t i = 0; i < sizeof secret_keys / sizeof *secret_keys; i++) {
        size_t n = strlen(secret_keys[i]);
        if (strncasecmp(s, secret_keys[i], n) != 0) continue;
        size_t j = n;
        while (s[j] == ' ') j++;
        if (s[j] == '=') return j + 1;
    }
    return 0;
}

size_t weir_mask_credentials(const char *src, char *dst, size_t dstlen)
{
    if (!dst || dstlen == 0) return 0;
    size_t o = 0;
#define PUT(ch)                                                                                    \
    do {                                                                                           \
        char ch_ = (ch); /* always evaluated */                                                    \
        if (o + 1 < dstlen) dst[o++] = ch_;                                                        \
    } while (0)
#define PUTS(str)                                                                                  \
    do {                                                                                           \
        for (const char *p_ = (str); *p_; p_++) PUT(*p_);                                          \
    } while (0)
    if (!src) src = "";
    const char *s = src;
    while (*s) {
        /* scheme://user:password@host */
        if (s[0] == ':' && s[1] == '/' && s[2] == '/') {
            PUTS("://");
            s += 3;
            const char *at = NULL;
            for (const char *p = s; *p && *p != '/' && *p != ' ' && *p != '?'; p++)
                if (*p == '@') at = p; /* last @ before the path */
            const char *colon = NULL;
            if (at)
                for (const char *p = s; p < at; p++)
                    if (*p == ':') {
                        colon = p;
                        break;
                    }
            if (at && colon) {
                while (s < colon) PUT(*s++);
                PUTS(":***");
                s = at;
            }
            continue;
        }
        size_t k = secret_key_at(s, src);
        if (k) {
            for (size_t i = 0; i < k; i++) PUT(s[i]);
            s += k;
            while (*s == ' ') PUT(*s++);
            if (*s == '\'') { /* quoted conninfo value, with \' escapes */
                s++;
                while (*s && *s != '\'') s += (s[0] == '\\' && s[1]) ? 2 : 1;
                if (*s) s++;
            } else {
                while (*s && *s != ' ' && *s != '&' && *s != ';' && *s != ',') s++;
            }
            PUTS("***");
            continue;
        }
        PUT(*s++);
    }
    dst[o] = '\0';
    return o;
#undef PUT
#undef PUTS
}

void weir__buf_printf(weir__buf *b, const char *fmt, ...)
{
    if (b->failed) return;
    for (;;) {
        size_t room = b->cap - b->len;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->cap ? b->data + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t ncap = b->cap ? b->cap * 2 : 4096;
        while (ncap - b->len <= (size_t)n) ncap *= 2;
        char *nd = realloc(b->data, ncap);
        if (!nd) {
            b->failed = true;
            return;
        }
        b->data = nd;
        b->cap = ncap;
    }
}

int weir__normalize_authority(const char *scheme, const char *port, const char *rest,
                              bool keep_path, char *out, size_t len)
{
    const char *end = rest + strcspn(rest, keep_path ? "/?" : "/?#");
    const char *at = NULL;
    for (const char *p = rest; p < end; p++)
        if (*p == '@') at = p;
    const char *hostp = at ? at + 1 : rest;
    char host[320];
    size_t hl = (size_t)(end - hostp);
    if (hl >= sizeof host) return WEIR_ERANGE;
    for (size_t i = 0; i < hl; i++) host[i] = (char)tolower((unsigned char)hostp[i]);
    host[hl] = '\0';
    bool has_port = host[0] == '[' ? strstr(host, "]:") != NULL : strchr(host, ':') != NULL;
    bool add = !has_port && !strchr(host, ',') && host[0];
    const char *q = strchr(end, '?');
    const char *tail = keep_path ? end : q ? q : "";
    int n = snprintf(out, len, "%s://%.*s%s%s%s%s", scheme, at ? (int)(at - rest + 1) : 0, rest,
                     host, add ? ":" : "", add ? port : "", tail);
    return n < 0 || (size_t)n >= len ? WEIR_ERANGE : 0;
}

char *weir__pct_decode(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            out[o++] = s[i];
            continue;
        }
        if (i + 2 >= n || !isxdigit((unsigned char)s[i + 1]) ||
            !isxdigit((unsigned char)s[i + 2])) {
            free(out);
            return NULL;
        }
        char hex[3] = {s[i + 1], s[i + 2], 0};
        int v = (int)strtol(hex, NULL, 16);
        if (!v) { /* a NUL would cut the value short */
            free(out);
            return NULL;
        }
        out[o++] = (char)v;
        i += 2;
    }
    out[o] = '\0';
    return out;
}
