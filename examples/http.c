/* http.c — libweir's HTTP driver as a web backend uses it for an external
 * API: 10 connections kept open, up to 20, 3 retries with backoff.
 *
 *   weir_example_http https://api.example.com /v1/status
 */
#include <stdio.h>
#include <stdlib.h>

#include "weir/weir.h"
#include "weir/weir_http.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s ORIGIN PATH   (e.g. https://example.org /)\n", argv[0]);
        return 2;
    }
    char url[512];
    /* retries, their time budget and the backoff go in the origin's query */
    snprintf(url, sizeof url, "%s?retries=3&backoff_base=200&backoff_max=2000&timeout=10000",
             argv[1]);
    weir_options o;
    weir_options_init(&o);
    o.min_idle = 10; /* kept open */
    o.max_size = 20; /* at most */
    o.connect_timeout_ms = 3000;
    weir_pool *pool;
    char err[256];
    if (weir_http_pool_create(&pool, url, &o, NULL, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    const char *headers[] = {"Accept: application/json", NULL};
    weir_http_req rq = {.method = "GET", .path = argv[2], .headers = headers};
    weir_http_resp rs;
    int rc = weir_http_request(pool, &rq, &rs);
    if (rc) {
        fprintf(stderr, "%s: %s\n", weir_strerror(rc), rs.error);
    } else {
        printf("%ld after %d attempt(s), %zu bytes:\n%.300s\n", rs.status, rs.attempts, rs.body_len,
               rs.body);
        weir_http_resp_free(&rs);
    }
    size_t len;
    char *metrics = weir_http_prometheus(pool, &len);
    if (metrics) fwrite(metrics, 1, len, stdout);
    free(metrics);
    weir_pool_destroy(pool);
    return rc ? 1 : 0;
}
