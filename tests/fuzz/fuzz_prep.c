/* fuzz_prep.c — libFuzzer target: prepared-statement rewriting (prep.c),
 * which reads every Parse, Bind, Describe, Close, Execute, Sync and simple
 * Query a client sends in transaction pooling, and the server's answers to
 * them. The input is a script of frames: one byte (low bit: client or
 * server, next bits: occasionally the client lets go of its server; 16: the
 * body is raw client bytes offered as a plain run), the
 * message type, a 16-bit length and the body. Two clients share one
 * registry and one server connection's cache, with room for 3 statements so
 * that eviction happens. What goes to the server must frame exactly.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pg/prep.h"
#include "pg/proto.h"

static void check_frames(const pq_buf *b)
{
    uint32_t at = b->start;
    while (at < b->end) {
        if (b->end - at < 5) abort();
        uint32_t n = pq_get32(b->p + at + 1);
        if (n < 4 || n > b->end - at - 1) abort();
        at += 1 + n;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 16) return 0;
    ps_registry *reg = ps_registry_new();
    /* the second client under a small max_client_prepared_bytes */
    ps_client *pc[2] = {ps_client_new(reg, 0), ps_client_new(reg, 256)};
    ps_cache *sc = NULL;
    pq_buf to_server = {0}, out = {0};
    size_t at = 0;
    int cur = 0;
    while (size - at >= 4) {
        uint8_t ctl = data[at];
        char t = (char)data[at + 1];
        uint32_t n = (uint32_t)data[at + 2] << 8 | data[at + 3];
        at += 4;
        if (n > size - at) n = (uint32_t)(size - at);
        /* the body in a block of its own, so ASan sees a read past it */
        uint8_t *body = malloc(n ? n : 1);
        if (!body) break;
        memcpy(body, data + at, n);
        at += n;
        if ((ctl & 2) && !ps_busy(pc[cur])) { /* as client.c lets go of a server */
            ps_client_unlink(pc[cur]);
            cur ^= 1;
        }
        ps_client *c = pc[cur];
        const uint8_t *z1 = n ? memchr(body, 0, n) : NULL;
        const uint8_t *z2 = z1 ? memchr(z1 + 1, 0, n - (size_t)(z1 + 1 - body)) : NULL;
        if (!(ctl & 1) && (ctl & 16)) {
            /* the body as bytes off the client's socket: a plain run is
             * passed as it is, whole messages ending with its Sync, or a
             * simple Query alone */
            uint32_t used = 0;
            int rc = ps_client_plain(c, body, n, 4096, &used);
            if (rc < 0) abort();
            if (rc == 1) {
                if (used > n) abort();
                uint32_t o = 0, last = 0; /* whole messages, the last a Sync, or one Query */
                while (o < used) {
                    if (used - o < 5 || pq_get32(body + o + 1) > used - o - 1) abort();
                    last = o;
                    o += 1 + pq_get32(body + o + 1);
                }
                if (!used || (body[last] != 'S' && !(last == 0 && body[0] == 'Q'))) abort();
                if (pq_put_raw(&to_server, body, used)) abort();
                check_frames(&to_server);
                to_server.start = to_server.end = 0;
            }
        } else if (!(ctl & 1) && t == 'B' && (ctl & 8) && z2) {
            /* a Bind as client.c streams a long one: its names, then the rest as it is */
            uint32_t nh = (uint32_t)(z2 + 1 - body);
            int rc = ps_client_bind_head(c, &sc, 3, body, nh, n, &to_server);
            if (rc < 0) abort();
            if (rc == 0 && pq_put_raw(&to_server, body + nh, n - nh)) abort();
            check_frames(&to_server);
            to_server.start = to_server.end = 0;
        } else if (!(ctl & 1)) {
            int rc = strchr(PS_WHOLE_IN, t) && t ? ps_client_msg(c, &sc, 3, t, body, n, &to_server)
                                                 : ps_client_other(c, t);
            if (rc == PS_TOO_MUCH && cur == 1 && t == 'P') { /* client.c closes it */
                free(body);
                break;
            }
            if (rc) abort(); /* only out of memory may fail */
            if (ps_client_bytes(pc[1]) > 256) abort();
            check_frames(&to_server);
            to_server.start = to_server.end = 0;
        } else {
            bool whole = t && strchr(PS_WHOLE_OUT, t);
            int r = ps_server_reply(c, sc, t, whole ? body : NULL, n);
            int nrfq = 0;
            bool now = r & PS_DUE;
            if (now != ps_due_now(c)) abort();
            if (ps_due(c, (ctl & 4) ? 'T' : 'I', &out, &nrfq)) abort();
            /* client.c asks for its replies only after PS_DUE */
            if (now != (out.end > 0)) abort();
            check_frames(&out);
            out.start = out.end = 0;
        }
        free(body);
        uint64_t a, b, d;
        ps_take_counts(c, &a, &b, &d);
    }
    ps_client_free(pc[0]);
    ps_client_free(pc[1]);
    ps_cache_free(sc);
    ps_registry_free(reg);
    pq_buf_free(&to_server);
    pq_buf_free(&out);
    return 0;
}
