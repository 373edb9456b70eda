/* fuzz_json.c — libFuzzer target: the SQL-over-HTTP request body
 * (sqlreq.c) as an authenticated HTTP client sends it: the JSON decoded and
 * checked with the Neon-* headers its first byte turns on, every accepted
 * statement and its parameters encoded as PostgreSQL messages (which must
 * frame exactly), the session-state scan, and the JSON string writer on the
 * raw bytes (whose output must be valid UTF-8 JSON that jansson reads back).
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pg/proto.h"
#include "http/sqlreq.h"

/* The messages must follow each other exactly to the end of w. */
static void check_frames(const sbuf *w)
{
    size_t at = 0;
    while (at < w->len) {
        if (w->len - at < 5) abort();
        uint32_t n = pq_get32((const uint8_t *)w->p + at + 1);
        if (n < 4 || n > w->len - at - 1) abort();
        at += 1 + n;
    }
}

static void encode(const char *sql, const json_t *params, int64_t max_rows)
{
    sbuf w = {0}, err = {0};
    int st = sql_pg_extended(&w, sql, params, max_rows, &err);
    if (st == 0) {
        check_frames(&w);
    } else if (st != 400 && st != 500) {
        abort();
    }
    sb_free(&w);
    sb_free(&err);
    (void)sql_may_change_session(sql);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 1 << 16) return 0;
    uint8_t sel = data[0];
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    static const char *const names[] = {"Neon-Array-Mode", "Neon-Raw-Text-Output",
                                        "Neon-Batch-Isolation-Level", "Neon-Batch-Read-Only",
                                        "Neon-Batch-Deferrable"};
    static const char *const values[] = {"true", "1", "RepeatableRead", "true", "1"};
    const char *hn[5], *hv[5];
    int nh = 0;
    for (int i = 0; i < 5; i++)
        if (sel & (1 << i)) {
            hn[nh] = names[i];
            hv[nh++] = values[i];
        }
    sql_headers h = {.name = hn, .value = hv, .n = nh};
    sql_opts o = {.timeout_ms = sel & 0x80 ? 1000 : 0};
    sql_req q;
    sbuf err = {0};
    int st = sql_req_decode(&q, &o, body, len, &h, &err);
    if (st) {
        if (st != 400 || !err.len) abort();
        json_t *e = json_loadb(err.p, err.len, 0, NULL); /* the error object is JSON */
        if (!e) abort();
        json_decref(e);
    } else {
        if (!q.root || (!q.queries && !q.sql)) abort();
        int64_t max_rows = (sel >> 5) & 3;
        if (q.queries) {
            for (size_t i = 0; i < json_array_size(q.queries); i++) {
                const char *sql;
                const json_t *params;
                sql_req_statement(&q, i, &sql, &params);
                if (!sql) abort();
                encode(sql, params, max_rows);
            }
        } else {
            encode(q.sql, q.params, max_rows);
        }
        (void)sql_req_may_change_session(&q);
        sql_req_free(&q);
    }
    sb_free(&err);
    /* Any bytes through the JSON string writer read back as one JSON string. */
    sbuf j = {0};
    sb_json_str(&j, body, len);
    json_t *v = j.oom ? NULL : json_loadb(j.p, j.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!j.oom && !json_is_string(v)) abort();
    json_decref(v);
    sb_free(&j);
    return 0;
}
