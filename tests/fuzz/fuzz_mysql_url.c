/* fuzz_mysql_url.c — libFuzzer target for the MySQL driver's URL parser
 * (weir_mysql_target_new): a [databases] mysql:// entry, or a URL an
 * application hands to the registry. Whatever the bytes, it gives a target
 * or a refusal that says why, within bounds (ASan, UBSan). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "weir/weir_mysql.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *url = malloc(size + 1);
    if (!url) return 0;
    memcpy(url, data, size);
    url[size] = '\0';
    void *ctx = NULL;
    char err[256] = "";
    int rc = weir_mysql_target_new(url, &ctx, err, sizeof err);
    if (rc == 0) {
        char d[256];
        weir_mysql_driver()->describe(ctx, d, sizeof d);
        weir_mysql_driver()->ctx_free(ctx);
    } else if (rc == WEIR_EINVAL && !err[0]) {
        abort(); /* a refusal always says why */
    }
    free(url);
    return 0;
}
