/* weir_http.h — the HTTP driver (libcurl): a pool of keep-alive connections
 * to one origin, for an application that calls an HTTP API.
 *
 * A pool serves one origin, given as a URL:
 *
 *   https://api.example.com[:port]?option=value&...
 *   http://127.0.0.1:8080
 *
 * (a path in it is ignored; requests name their own). Each pooled
 * connection is a libcurl easy handle. How they hold TCP connections:
 *
 *  - Multiplexed (https://, from the first answer that comes over HTTP/2,
 *    negotiated with ALPN: multiplex=auto; always with multiplex=1 or
 *    http_version=2-prior-knowledge): the pool's handles share one libcurl
 *    multi handle, driven by a thread of the pool's own, and its cache of
 *    connections; the handles that had connections of their own are
 *    evicted (weir_pool_evict_all). Where the server speaks HTTP/2,
 *    concurrent requests from every handle go as streams over one TCP
 *    connection (a second is opened only past the server's limit of
 *    concurrent streams); where it speaks HTTP/1.1, each concurrent request
 *    takes an idle connection from the cache or opens one. A pooled
 *    connection is then a slot for one request at a time: the pool's size
 *    bounds concurrent requests, and weir_http_stats_get() tells the TCP
 *    connections (sockets_open).
 *  - One connection per handle (http://, https:// until HTTP/2 is seen, and
 *    multiplex=0):
 *    a handle holds its own connection to the origin, kept alive between
 *    requests, and runs its transfers in the caller's thread. The pool's
 *    size is the number of connections.
 *
 * Either way a request reuses an open TCP connection and TLS session.
 *
 * Connecting is real: the driver's connect opens the TCP connection under
 * the pool's connect_timeout (libcurl's own connect, so its messages:
 * "Failed to connect to 127.0.0.1 port 1 after 0 ms: Couldn't connect to
 * server"), and hands the socket to the handle; the TLS handshake happens on
 * the first request. So an unreachable origin fails fast, with the engine's
 * backoff, like a database. (Multiplexed, a new slot connects only when the
 * multi handle holds no connection, and its socket goes to the multi
 * handle's next connection. Through a proxy, the connection is opened by
 * the first request instead.) Validation of an idle connection checks that
 * the server has not closed it (no request is sent; multiplexed, libcurl
 * checks a cached connection before it reuses it). At checkin the handle
 * is reset (curl_easy_reset) and given the pool's options again; its
 * connection stays.
 *
 * Options (the URL's query):
 *   ca_file, ca_path      CAs to verify the server with (default: the system's)
 *   verify=0              do not verify the server's certificate (default 1)
 *   cert, key             a client certificate and its key (PEM)
 *   proxy, noproxy        as libcurl's CURLOPT_PROXY / CURLOPT_NOPROXY
 *   http_version=1.1|2|2-prior-knowledge
 *                         2 (default): HTTP/2 over TLS when offered; 1.1:
 *                         never; 2-prior-knowledge: HTTP/2 without asking,
 *                         also over plain http:// ("h2c")
 *   multiplex=auto|0|1    share connections among the pool's handles (above):
 *                         auto (default) once the origin answers over
 *                         HTTP/2; 1 from the start, HTTP/1.1 too; 0 never
 *   timeout=MS            a request's total time (default 30000)
 *   retries=N             retries of an idempotent request (default 3)
 *   retry_max_time=MS     retries stop once this much time has gone (default 10000)
 *   backoff_base=MS, backoff_max=MS
 *                         the delay before retry n is min(max, base * 2^n),
 *                         of which a random half (default 100 and 2000)
 *   max_response=BYTES    the largest body weir_http_request() keeps (default 64 MiB)
 *   user_agent=TEXT       (default "weir/<version>")
 * An unknown option is refused (WEIR_EINVAL, its name in err).
 */
#ifndef WEIR_HTTP_H
#define WEIR_HTTP_H

#include "weir/weir.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef void CURL; /* libcurl's easy handle, as curl/curl.h declares it */

/** The driver; its context comes from weir_http_target_new(). */
WEIR_API const weir_driver *weir_http_driver(void);

/** Parse an http:// or https:// origin URL into a driver context for
 *  weir_pool_create(), which takes ownership. 0 and *ctx, or WEIR_EINVAL with
 *  the reason in err. */
WEIR_API int weir_http_target_new(const char *url, void **ctx, char *err,
                                  size_t errlen) WEIR_MUSTCHECK;

/** Create a pool for the origin in one call (name: the origin, credentials
 *  masked, unless opts names it). */
WEIR_API int weir_http_pool_create(weir_pool **out, const char *url, const weir_options *opts,
                                   const weir_hooks *hooks, char *err,
                                   size_t errlen) WEIR_MUSTCHECK;

/** The easy handle of a checked-out connection, with the pool's options set
 *  and CURLOPT_URL at the origin's "/". Set CURLOPT_URL to a URL of the same
 *  origin (another origin works, but opens a connection of its own), add
 *  what the request needs, curl_easy_perform() it. Valid until checkin; do
 *  not curl_easy_cleanup() it. NULL if c is NULL. */
WEIR_API CURL *weir_http_handle(const weir_conn *c);

/** Perform the transfer set up on weir_http_handle(c)'s handle, as
 *  curl_easy_perform() does, but through the pool: multiplexed, on the
 *  pool's shared connections (a plain curl_easy_perform() of the handle
 *  works too, but on a connection of its own). Returns a CURLcode. */
WEIR_API int weir_http_perform(const weir_conn *c);

/** A request for weir_http_request(). Zero it, then fill in what you need. */
typedef struct weir_http_req {
    const char *method;         /**< "GET" when NULL */
    const char *path;           /**< path and query on the origin, e.g. "/v1/items?id=3" */
    const char *const *headers; /**< "Name: value" strings, NULL-terminated; may be NULL */
    const void *body;           /**< request body, or NULL */
    size_t body_len;
    int64_t timeout_ms;         /**< the whole attempt; 0: the pool's timeout= */
    int64_t acquire_timeout_ms; /**< waiting for a connection; 0: the pool's */
    bool retry_unsafe;          /**< retry POST/PATCH too (only if the server dedupes) */
} weir_http_req;

/** What came back. Free with weir_http_resp_free(). */
typedef struct weir_http_resp {
    long status;   /**< the final response's status, 0 if none came */
    char *headers; /**< its header block ("HTTP/1.1 200 OK\r\n..."), NUL-terminated */
    size_t headers_len;
    char *body; /**< its body, NUL-terminated (the NUL not counted) */
    size_t body_len;
    int attempts;    /**< 1 + retries made */
    char error[256]; /**< why, when the call did not return 0 */
} weir_http_resp;

/** Run a request on a pooled connection, retrying an idempotent one (GET,
 *  HEAD, OPTIONS, PUT, DELETE, TRACE; others only with retry_unsafe) with
 *  exponential backoff and jitter on a connect failure, a timeout, a
 *  connection dropped before the answer, and on 502, 503, 504 and 429 (for
 *  which a Retry-After in seconds or as a date is waited, if it fits in
 *  retry_max_time). Returns 0 with the final response in *rs (whatever its
 *  status: a 503 after the last retry is returned as such), or
 *  WEIR_ECONNECT (the origin cannot be reached; curl's message in
 *  rs->error), WEIR_ETIMEDOUT (no answer within the timeout, or no
 *  connection within acquire_timeout), WEIR_EDRIVER (any other failure:
 *  TLS verification, a response over max_response, ...), WEIR_EINVAL. */
WEIR_API int weir_http_request(weir_pool *pool, const weir_http_req *rq,
                               weir_http_resp *rs) WEIR_MUSTCHECK;

WEIR_API void weir_http_resp_free(weir_http_resp *rs);

/** A pool's HTTP figures, besides the engine's (weir_pool_stats). */
typedef struct weir_http_stats {
    int64_t requests_total;       /**< attempts made (each retry counts) */
    int64_t retries_total;        /**< attempts after the first */
    int64_t responses_total[6];   /**< by status class: [1] 1xx ... [5] 5xx; [0] other */
    int64_t failures_total;       /**< attempts that got no response (connect, timeout, ...) */
    bool multiplexed;             /**< the pool's handles share connections */
    int64_t sockets_open;         /**< multiplexed: TCP connections open now; -1 otherwise */
    int64_t sockets_opened_total; /**< multiplexed: TCP connections opened, ever; -1 otherwise */
} weir_http_stats;

/** The HTTP figures of a pool made by this driver (WEIR_EINVAL otherwise). */
WEIR_API int weir_http_stats_get(weir_pool *pool, weir_http_stats *st);

/** The pool's Prometheus page: the engine's families (weir_pool_prometheus)
 *  and weir_http_requests_total, weir_http_retries_total,
 *  weir_http_responses_total{class="2xx"...}, weir_http_failures_total.
 *  malloc'd; NULL on error. */
WEIR_API char *weir_http_prometheus(weir_pool *pool, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
