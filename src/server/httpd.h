/* httpd.h — weir's HTTP/1.1 server: an acceptor thread hands each connection
 * to the least-loaded of N request threads; each thread reads requests
 * (keep-alive, pipelining), calls the handler synchronously and writes the
 * answer. Request bodies need a Content-Length; one above the limit is
 * refused with 413 before it is read (and "Expect: 100-continue" is honoured,
 * so curl never sends it).
 */
#ifndef WEIR_SERVER_HTTPD_H
#define WEIR_SERVER_HTTPD_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

#define HTTP_MAX_HEADERS 48

typedef struct http_req {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* without the query string, not decoded */
    const char *query;  /* after '?', or "" */
    int nh;
    const char *hname[HTTP_MAX_HEADERS], *hval[HTTP_MAX_HEADERS];
    const char *body;
    size_t body_len;
    int thread;    /* which request thread, 0..n-1 */
    char peer[64]; /* the client's address */
} http_req;

/* A request header (case-insensitive name), or NULL. */
const char *http_header(const http_req *rq, const char *name);

typedef struct http_resp {
    int status;
    const char *ctype; /* Content-Type; "application/json" if NULL */
    sbuf body;
    sbuf headers; /* extra "Name: value\r\n" lines */
    bool close;   /* close the connection after this answer */
} http_resp;

const char *http_reason(int status);

typedef void (*http_handler)(void *ud, http_req *rq, http_resp *rs);

typedef struct httpd httpd;

/* Listen on addr:port and start nthreads request threads. 0, or -1 with a
 * reason in err. */
int httpd_start(httpd **out, const char *addr, int port, int nthreads, size_t max_body,
                http_handler h, void *ud, char *err, size_t errlen);
void httpd_set_max_body(httpd *d, size_t max_body);
void httpd_stop(httpd *d); /* NULL is a no-op */
int httpd_threads(const httpd *d);

#endif
