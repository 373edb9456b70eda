/* httpparse.h — the HTTP/1.1 request head parser: bytes in, a request head
 * or a refusal out. Pure (no I/O, no globals), so the server and the fuzzer
 * run the same code.
 *
 * Strict where RFC 9112 says a server MUST reject, because a lenient parser
 * behind or in front of a proxy is how requests are smuggled: a NUL, a bare
 * LF, a space before a header's colon, obs-fold, two Content-Length headers,
 * a Content-Length that is not 1*DIGIT, Content-Length with
 * Transfer-Encoding, two Host headers: each is a 400.
 */
#ifndef WEIR_SERVER_HTTPPARSE_H
#define WEIR_SERVER_HTTPPARSE_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_MAX_HEADERS 48
#define HTTP_HEAD_MAX    16384 /* request line and headers */

typedef struct http_head {
    char *buf;          /* malloc'd copy of the head, NUL-split; the strings below point in */
    size_t skip;        /* empty lines before the request line (tolerated, RFC 9112 2.2) */
    size_t len;         /* bytes of the head from the request line, final CRLF CRLF included */
    const char *method; /* a token */
    const char *path;   /* origin-form target without the query, not decoded */
    const char *query;  /* after '?', or "" */
    bool http10;
    int nh;
    const char *hname[HTTP_MAX_HEADERS], *hval[HTTP_MAX_HEADERS];
    long long content_length;         /* 0 when absent */
    bool chunked;                     /* Transfer-Encoding: chunked (the caller answers 411) */
    bool expect_continue;             /* Expect: 100-continue */
    bool conn_close, conn_keep_alive; /* tokens of Connection */
} http_head;

enum { HTTP_PARSE_BAD = -1, HTTP_PARSE_NEED = 0, HTTP_PARSE_OK = 1 };

/* Parse the request head at the start of [p, p+n). HTTP_PARSE_OK: *h is
 * filled (free h->buf with http_head_free); HTTP_PARSE_NEED: more bytes are
 * needed (nothing to free); HTTP_PARSE_BAD: *status (400, 431, 501, 505) and
 * *why (a static string) say why, nothing to free. Bytes that cannot start
 * a valid head are refused before the head is complete. */
int http_parse_head(const char *p, size_t n, http_head *h, int *status, const char **why);
void http_head_free(http_head *h); /* NULL buf is a no-op */

#endif
