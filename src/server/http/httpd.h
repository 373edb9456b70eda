/* httpd.h — weir's HTTP/1.1 server: an acceptor thread hands each connection
 * to the least-loaded of N I/O threads; each reads requests (keep-alive,
 * pipelining, answered in order), answers quick ones itself and hands the
 * others to executor threads (httpd.c has the design). Request bodies need a Content-Length; one
 * above the limit is refused with 413 before it is read (and "Expect: 100-continue" is honoured, so
 * curl never sends it).
 */
#ifndef WEIR_SERVER_HTTPD_H
#define WEIR_SERVER_HTTPD_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/sbuf.h"

#include "http/httpparse.h"

typedef struct http_req {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* without the query string, not decoded */
    const char *query;  /* after '?', or "" */
    int nh;
    const char *hname[HTTP_MAX_HEADERS], *hval[HTTP_MAX_HEADERS];
    const char *body;
    size_t body_len;
    int thread;               /* which I/O thread read it, 0..n-1 */
    const struct httpd *door; /* the server that read it (httpd_counters_get) */
    char peer[64];            /* the client's address */
    bool tls;                 /* it came over HTTPS */
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

/* Answers rq: on the connection's I/O thread for a quick request, else on
 * an executor thread (any number at once: the handler is thread-safe). */
typedef void (*http_handler)(void *ud, http_req *rq, http_resp *rs);
/* false: rq is quick (answered at once on the I/O thread: it must never
 * wait). true: it runs on an executor, and key (NUL-terminated, at most
 * keylen bytes) names what it waits for, e.g. its database: at most
 * EXEC_PER_KEY requests of one key run at once. */
#define HTTP_KEY_MAX 72
typedef bool (*http_classify)(void *ud, const http_req *rq, char *key, size_t keylen);

typedef struct httpd httpd;

/* What one connection may hold and for how long; changed on reload. */
typedef struct httpd_limits {
    size_t max_body;            /* bytes of a request body (413 above) */
    int max_connections;        /* open connections; above it a new one gets 503 and is closed */
    int64_t request_timeout_ms; /* a request must arrive whole within this of its first byte */
    int64_t idle_timeout_ms;    /* a kept-alive connection with nothing pending is closed */
} httpd_limits;

/* TLS on the door: new_conn makes an accepted socket's TLS state (NULL: it
 * is closed). sniff: a connection whose first byte is not a TLS record is
 * served in plain HTTP on the same port; otherwise every one must be TLS. */
typedef struct ssl_st SSL;
typedef struct httpd_tls {
    SSL *(*new_conn)(void *ud, int fd);
    bool sniff;
} httpd_tls;

/* Counters for /metrics (relaxed reads). */
typedef struct httpd_counters {
    long long connections, refused_over_cap, request_timeouts, accept_errors;
} httpd_counters;

/* Listen on addr:port and start nthreads request threads. 0, or -1 with a
 * reason in err. log (may be NULL) gets the door's own warnings, such as
 * accept() failing for want of file descriptors (once per 10 s at most). */
int httpd_start(httpd **out, const char *addr, int port, int nthreads, const httpd_limits *lim,
                const httpd_tls *tls, http_handler h, http_classify classify, void *ud,
                void (*log)(void *ud, const char *msg), char *err, size_t errlen);
void httpd_set_limits(httpd *d, const httpd_limits *lim);
void httpd_counters_get(const httpd *d, httpd_counters *out);
void httpd_stop(httpd *d); /* NULL is a no-op */
int httpd_threads(const httpd *d);

#endif
