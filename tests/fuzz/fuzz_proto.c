/* fuzz_proto.c — libFuzzer target: what the PostgreSQL door parses from a client before it
 * is authenticated (with fuzz_prep, which covers the prepared-statement rewriting of what it
 * sends afterwards, and fuzz_http and fuzz_json, the HTTP door's request head and body, this
 * is every parser of client input in weir).
 *
 * The input is cut in two at a point taken from its first byte, and fed to:
 * the startup-packet parser, the message framer (as bytes arrive in two
 * reads, the way the worker sees them), the SCRAM server exchange, and the
 * SCRAM secret parser. Any crash, leak, overflow or UB is a finding.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/auth.h"
#include "pg/proto.h"

static void frame(const uint8_t *data, size_t size, uint32_t cut)
{
    pq_stream st = {0};
    uint32_t pos = 0, avail = cut < size ? cut : (uint32_t)size;
    while (pos < size) {
        pq_msg m;
        uint32_t used;
        int r = pq_next(&st, data + pos, avail - pos, 1u << 30, "ZSX", &m, &used);
        if (r == PQ_BAD) return;
        if (r == PQ_NEED) {
            if (avail == size) return;
            avail = (uint32_t)size;
            continue;
        }
        if (r == PQ_MSG && m.body && m.type == 'S') {
            const uint8_t *q = m.body, *e = m.body + m.len - 4;
            const char *n = pq_get_str(&q, e);
            if (n) (void)pq_get_str(&q, e);
        }
        if (used == 0 || used > avail - pos) abort(); /* the framer must always make progress */
        pos += used;
    }
}

/* Each setting of an options parameter: a name (never empty) and a value. */
static void opt_seen(void *ud, const char *name, const char *value)
{
    (void)ud;
    if (!name[0] || strchr(name, '=') || !value) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 1 << 16) return 0;
    uint32_t cut = data[0];
    data++;
    size--;

    if (size >= 4) {
        pq_startup st;
        const char *why;
        uint32_t len = pq_get32(data);
        if (len <= size && pq_parse_startup(data, len, &st, &why) == 0) {
            const char *opts = pq_startup_get(&st, "options");
            if (opts && pq_parse_options(opts, opt_seen, NULL, &why) && !why) abort();
            /* the answer to a 3.2 or "_pq_." request: a whole message, its
             * length what it says */
            pq_buf nb = {0};
            if (pq_put_negotiate(&nb, &st) == 0 && nb.end &&
                (nb.end < 13 || pq_get32(nb.p + 1) != nb.end - 1))
                abort();
            pq_buf_free(&nb);
        }
    }
    frame(data, size, cut);

    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    scram_secret sec;
    (void)scram_secret_parse(text, &sec);

    static scram_server ss;
    static int ready;
    if (!ready) {
        memset(&ss, 0, sizeof ss);
        ready = scram_secret_for_user("u", "pw", 4096, &ss.sec) == 0;
    }
    char out[512];
    const char *why;
    scram_server st = ss;
    uint32_t half = cut < size ? cut : (uint32_t)size;
    if (scram_server_first(&st, text, half, &why) == 0)
        (void)scram_server_final(&st, text + half, size - half, out, sizeof out, &why);
    scram_server_clear(&st);
    scram_client sc;
    memset(&sc, 0, sizeof sc);
    strcpy(sc.nonce, "abc");
    strcpy(sc.client_first_bare, "n=,r=abc");
    if (scram_client_final(&sc, "pw", text, size, out, sizeof out, &why) > 0)
        (void)scram_client_verify(&sc, text, size);
    free(text);
    return 0;
}
