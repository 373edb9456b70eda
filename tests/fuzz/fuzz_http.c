/* fuzz_http.c — libFuzzer target: the HTTP/1.1 request head parser
 * (httpparse.c), the first thing weir reads from an unauthenticated HTTP
 * client. Every input is parsed as it would arrive whole and cut short at
 * every length its first byte picks: the parser must never read past what it
 * is given, and an accepted head must be self-consistent.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/httpparse.h"

static void check(const char *p, size_t n)
{
    http_head h;
    int status;
    const char *why;
    int r = http_parse_head(p, n, &h, &status, &why);
    if (r == HTTP_PARSE_OK) {
        if (h.skip + h.len > n || !h.method || !h.path || !h.query || h.nh > HTTP_MAX_HEADERS)
            abort();
        if (h.content_length < 0) abort();
        for (int i = 0; i < h.nh; i++)
            if (!h.hname[i] || !h.hval[i] || !*h.hname[i]) abort();
        http_head_free(&h);
    } else if (r == HTTP_PARSE_BAD) {
        if (status < 400 || status > 599 || !why) abort();
    } else if (r != HTTP_PARSE_NEED) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 1 << 15) return 0;
    size_t cut = data[0];
    data++;
    size--;
    /* A copy of exactly size bytes, so ASan sees any read past the end. */
    char *p = malloc(size ? size : 1);
    if (!p) return 0;
    memcpy(p, data, size);
    check(p, size);
    if (cut < size) check(p, cut);
    free(p);
    return 0;
}
