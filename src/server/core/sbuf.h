/* sbuf.h — the server's growable byte buffer, with writers for text and
 * JSON strings. */
#ifndef WEIR_SERVER_SBUF_H
#define WEIR_SERVER_SBUF_H

#include <stdbool.h>
#include <stddef.h>

/* A growable byte buffer; after a failed allocation it stays as it was and
 * oom is set (writers check once at the end). */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

void sb_add(sbuf *b, const void *p, size_t n);
void sb_str(sbuf *b, const char *s);
void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s (n bytes) as a JSON string, quotes included. */
void sb_json_str(sbuf *b, const char *s, size_t n);
static inline void sb_jstr(sbuf *b, const char *s)
{
    sb_json_str(b, s, __builtin_strlen(s));
}
void sb_free(sbuf *b);

#endif
