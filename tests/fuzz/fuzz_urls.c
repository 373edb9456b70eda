/* fuzz_urls.c — libFuzzer target for the drivers' URL parsers: the MySQL
 * driver's (weir_mysql_target_new: a [databases] mysql:// entry, or a URL an
 * application hands to the registry) and the HTTP driver's origins
 * (weir_http_target_new). The first byte picks the parser. Whatever the
 * bytes, each gives a target or a refusal that says why, within bounds
 * (ASan, UBSan). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "weir/weir_http.h"
#include "weir/weir_mysql.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    bool http = data[0] & 1;
    char *url = malloc(size);
    if (!url) return 0;
    memcpy(url, data + 1, size - 1);
    url[size - 1] = '\0';
    const weir_driver *d = http ? weir_http_driver() : weir_mysql_driver();
    void *ctx = NULL;
    char err[256] = "";
    int rc = http ? weir_http_target_new(url, &ctx, err, sizeof err)
                  : weir_mysql_target_new(url, &ctx, err, sizeof err);
    if (rc == 0) {
        char desc[600];
        d->describe(ctx, desc, sizeof desc);
        d->ctx_free(ctx);
    } else if (rc == WEIR_EINVAL && !err[0]) {
        abort(); /* a refusal always says why */
    }
    free(url);
    return 0;
}
