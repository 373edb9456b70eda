/* pgrun.c — the HTTP door's SQL on PostgreSQL (sqlexec.h's sql_engine_pg):
 * Parse/Bind/Describe/Execute/Sync of the unnamed statement with text
 * parameters and text results, written in one go on a connection of weir's
 * pools; values are turned into JSON by type OID. A statement that
 * outlives its timeout gets a CancelRequest, and the connection is kept if
 * the server answers it. Also auth_query for the HTTP door (pgx_lookup).
 */
#include "http/sqlexec.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/pools.h"
#include "core/server.h"
#include "pg/authq.h"
#include "pg/proto.h"

/* The first word of a command tag or statement, and the count at its end. */
static void result_tail(sbuf *out, const char *tag, int64_t rows_seen)
{
    size_t w = 0;
    while (tag[w] && tag[w] != ' ') w++;
    const char *last = strrchr(tag, ' ');
    sb_str(out, "],\"command\":");
    sb_json_str(out, tag, w);
    sb_str(out, ",\"rowCount\":");
    if (last && isdigit((unsigned char)last[1]))
        sb_str(out, last + 1);
    else if (!strncmp(tag, "SELECT", 6) || rows_seen)
        sb_printf(out, "%lld", (long long)rows_seen);
    else
        sb_str(out, "null");
}

/* --- PostgreSQL values ------------------------------------------------------ */

static const struct {
    uint32_t array, elem;
} arrays[] = {
    {1000, 16},   {1005, 21},   {1007, 23},   {1016, 20},   {1021, 700},  {1022, 701},
    {1231, 1700}, {199, 114},   {3807, 3802}, {1028, 26},   {1009, 25},   {1015, 1043},
    {1014, 1042}, {2951, 2950}, {1182, 1082}, {1115, 1114}, {1185, 1184}, {1183, 1083},
    {1187, 1186}, {1001, 17},   {1003, 19},   {1002, 18},   {1041, 869},  {651, 650},
    {1040, 829},  {1270, 1266},
};

static uint32_t array_elem(uint32_t oid)
{
    for (size_t i = 0; i < sizeof arrays / sizeof *arrays; i++)
        if (arrays[i].array == oid) return arrays[i].elem;
    return 0;
}

/* PostgreSQL's text of a finite number is a valid JSON number. */
static bool finite_number(const char *v, size_t n)
{
    size_t i = n && v[0] == '-' ? 1 : 0;
    return n > i && isdigit((unsigned char)v[i]);
}

static bool pg_array(sbuf *b, uint32_t el, const char **pp, const char *end, const sql_opts *o,
                     sbuf *tmp);

static void pg_value(sbuf *b, uint32_t oid, const char *v, size_t n, const sql_opts *o)
{
    if (o->raw_text) {
        sb_json_str(b, v, n);
        return;
    }
    switch (oid) {
    case 21: /* int2 */
    case 23: /* int4 */
    case 26: /* oid */
        sb_add(b, v, n);
        return;
    case 20: /* int8 */
        if (o->int8_num)
            sb_add(b, v, n);
        else
            sb_json_str(b, v, n);
        return;
    case 700: /* float4 */
    case 701: /* float8 */
        if (finite_number(v, n))
            sb_add(b, v, n);
        else
            sb_json_str(b, v, n); /* NaN, Infinity, -Infinity */
        return;
    case 1700: /* numeric */
        if (o->numeric_num && finite_number(v, n))
            sb_add(b, v, n);
        else
            sb_json_str(b, v, n);
        return;
    case 16: /* bool */
        sb_str(b, n && v[0] == 't' ? "true" : "false");
        return;
    case 114:  /* json */
    case 3802: /* jsonb */
        sb_add(b, v, n);
        return;
    }
    uint32_t el = array_elem(oid);
    if (el) {
        sbuf arr = {0}, tmp = {0};
        const char *p = v, *end = v + n;
        if (p < end && *p == '[') { /* "[1:2]={...}": lower bounds other than 1 */
            while (p < end && *p != '=') p++;
            p++;
        }
        bool ok = pg_array(&arr, el, &p, end, o, &tmp) && p == end && !arr.oom;
        if (ok)
            sb_add(b, arr.p, arr.len);
        else
            sb_json_str(b, v, n);
        sb_free(&arr);
        sb_free(&tmp);
        return;
    }
    sb_json_str(b, v, n);
}

/* One level of an array literal at *pp ('{'), as a JSON array. */
static bool pg_array(sbuf *b, uint32_t el, const char **pp, const char *end, const sql_opts *o,
                     sbuf *tmp)
{
    const char *p = *pp;
    if (p >= end || *p != '{') return false;
    p++;
    sb_add(b, "[", 1);
    if (p < end && *p == '}') {
        sb_add(b, "]", 1);
        *pp = p + 1;
        return true;
    }
    for (bool first = true;; first = false) {
        if (!first) sb_add(b, ",", 1);
        if (p >= end) return false;
        if (*p == '{') {
            if (!pg_array(b, el, &p, end, o, tmp)) return false;
        } else if (*p == '"') {
            tmp->len = 0;
            for (p++; p < end && *p != '"'; p++) {
                if (*p == '\\' && p + 1 < end) p++;
                sb_add(tmp, p, 1);
            }
            if (p >= end) return false;
            p++;
            pg_value(b, el, tmp->p ? tmp->p : "", tmp->len, o);
        } else {
            const char *s = p;
            while (p < end && *p != ',' && *p != '}') p++;
            size_t n = (size_t)(p - s);
            if (n == 4 && !strncasecmp(s, "NULL", 4))
                sb_str(b, "null");
            else
                pg_value(b, el, s, n, o);
        }
        if (p >= end) return false;
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p != '}') return false;
        p++;
        break;
    }
    sb_add(b, "]", 1);
    *pp = p;
    return true;
}

/* An ErrorResponse as the error object. */
static void pg_error_json(sbuf *err, const pq_msg *m, bool timed_out, int64_t timeout_ms)
{
    static const struct {
        char f;
        const char *name;
    } fields[] = {
        {'C', "code"},          {'S', "severity"}, {'D', "detail"},
        {'H', "hint"},          {'P', "position"}, {'p', "internalPosition"},
        {'q', "internalQuery"}, {'W', "where"},    {'s', "schema"},
        {'t', "table"},         {'c', "column"},   {'d', "dataType"},
        {'n', "constraint"},    {'F', "file"},     {'L', "line"},
        {'R', "routine"},
    };
    const char *code = pq_error_field(m, 'C'), *msg = pq_error_field(m, 'M');
    err->len = 0;
    sb_str(err, "{\"message\":");
    if (timed_out && code && !strcmp(code, "57014")) {
        char t[160];
        snprintf(t, sizeof t, "canceling statement due to statement timeout (%lld ms)",
                 (long long)timeout_ms);
        sb_jstr(err, t);
    } else {
        sb_jstr(err, msg ? msg : "");
    }
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        const char *v = pq_error_field(m, fields[i].f);
        if (!v) continue;
        sb_printf(err, ",\"%s\":", fields[i].name);
        sb_jstr(err, v);
    }
    sb_str(err, "}");
}

/* Read the next message (be_track applied); past the statement's deadline,
 * cancel it once and wait the grace period for the server's answer. */
static int pg_next(backend *be, pq_buf *b, pq_msg *m, int64_t *dl, bool *cancelled,
                   const sql_opts *o)
{
    for (;;) {
        int rc = be_read_msg(be->fd, be->tls, b, *dl, m);
        if (rc == 0) be_track(be, m);
        if (rc != WEIR_ETIMEDOUT || *cancelled || o->timeout_ms <= 0) return rc;
        *cancelled = true;
        int64_t grace = o->cancel_grace_ms > 0 ? o->cancel_grace_ms : 5000;
        (void)be_cancel(be->host, be->port, be->pid, be->key, grace);
        *dl = sql_deadline_after(grace);
    }
}

static int lost(backend *be, sbuf *err, bool cancelled)
{
    be->unclean = true;
    if (cancelled)
        return sql_error(err, 504, "57014",
                         "statement timed out and the server did not answer the cancel request");
    return sql_error(err, 502, "08006", "server connection lost");
}

static int pgx_exec(backend *be, const char *sql, const sql_opts *o, sbuf *err)
{
    sbuf w = {0};
    sql_pg_query(&w, sql);
    if (w.oom) return sql_error(err, 500, "53200", "out of memory");
    int64_t dl = sql_deadline_after(o->timeout_ms);
    int rc = be_write_all(be->fd, be->tls, (uint8_t *)w.p, w.len, dl);
    sb_free(&w);
    if (rc) return lost(be, err, false);
    pq_buf b = {0};
    bool cancelled = false;
    int status = 0;
    for (;;) {
        pq_msg m;
        if (pg_next(be, &b, &m, &dl, &cancelled, o)) {
            status = lost(be, err, cancelled);
            break;
        }
        if (m.type == 'E' && !status) {
            pg_error_json(err, &m, cancelled, o->timeout_ms);
            status = 400;
        }
        if (m.type == 'Z') break;
    }
    pq_buf_free(&b);
    return status;
}

/* Parse/Bind/Describe/Execute/Sync of sql with params (text). */
static int pg_send(backend *be, const char *sql, const json_t *params, int64_t max_rows, int64_t dl,
                   sbuf *err)
{
    const char *enc = be_params_get(&be->params, "client_encoding");
    if (enc && strcasecmp(enc, "UTF8") && strcasecmp(enc, "UTF-8")) {
        sql_opts so = {0};
        int st = pgx_exec(be, "SET client_encoding TO 'UTF8'", &so, err);
        if (st) return st;
    }
    sbuf w = {0};
    int status = sql_pg_extended(&w, sql, params, max_rows, err);
    if (!status && be_write_all(be->fd, be->tls, (uint8_t *)w.p, w.len, dl))
        status = lost(be, err, false);
    sb_free(&w);
    return status;
}

typedef struct pg_field {
    const char *name;
    uint32_t type;
} pg_field;

static int pgx_run(backend *be, const char *sql, const json_t *params, const sql_opts *o, sbuf *out,
                   sbuf *err)
{
    int64_t dl = sql_deadline_after(o->timeout_ms);
    int status = pg_send(be, sql, params, o->max_rows, dl, err);
    if (status) return status;
    pq_buf b = {0};
    bool cancelled = false, head = false;
    size_t start = out->len;
    pg_field *f = NULL;
    uint8_t *tdesc = NULL;
    int nf = 0;
    int64_t rows = 0;
    char tag[64] = "";
    for (;;) {
        pq_msg m;
        if (pg_next(be, &b, &m, &dl, &cancelled, o)) {
            status = lost(be, err, cancelled);
            break;
        }
        const uint8_t *p = m.body, *end = m.body + m.len - 4;
        if (m.type == 'Z') break;
        if (status) continue; /* drain to ReadyForQuery */
        switch (m.type) {
        case 'T': {
            free(tdesc);
            free(f);
            tdesc = malloc(m.len);
            nf = m.len >= 6 ? pq_get16(p) : 0;
            f = calloc(nf ? (size_t)nf : 1, sizeof *f);
            if (!tdesc || !f) {
                status = sql_error(err, 500, "53200", "out of memory");
                break;
            }
            memcpy(tdesc, m.body, m.len - 4);
            p = tdesc + 2;
            end = tdesc + m.len - 4;
            sb_str(out, "{\"fields\":[");
            for (int i = 0; i < nf; i++) {
                const char *name = pq_get_str(&p, end);
                if (!name || end - p < 18) {
                    status = lost(be, err, false);
                    break;
                }
                f[i].name = name;
                f[i].type = pq_get32(p + 6);
                sb_str(out, i ? ",{\"name\":" : "{\"name\":");
                sb_jstr(out, name);
                sb_printf(out,
                          ",\"dataTypeID\":%u,\"tableID\":%u,\"columnID\":%d,\"dataTypeSize\":%d,"
                          "\"dataTypeModifier\":%d,\"format\":\"text\"}",
                          f[i].type, pq_get32(p), (int16_t)pq_get16(p + 4),
                          (int16_t)pq_get16(p + 10), (int32_t)pq_get32(p + 12));
                p += 18;
            }
            sb_str(out, "],\"rows\":[");
            head = true;
            break;
        }
        case 'n': /* NoData */
            sb_str(out, "{\"fields\":[],\"rows\":[");
            head = true;
            break;
        case 'D': {
            int n = end - p >= 2 ? pq_get16(p) : -1;
            p += 2;
            if (!head || n != nf) {
                status = lost(be, err, false);
                break;
            }
            sb_str(out, rows ? (o->array_mode ? ",[" : ",{") : (o->array_mode ? "[" : "{"));
            for (int i = 0; i < n; i++) {
                if (end - p < 4) break;
                int32_t len = (int32_t)pq_get32(p);
                p += 4;
                if (i) sb_add(out, ",", 1);
                if (!o->array_mode) {
                    sb_jstr(out, f[i].name);
                    sb_add(out, ":", 1);
                }
                if (len < 0) {
                    sb_str(out, "null");
                } else {
                    if (end - p < len) len = (int32_t)(end - p);
                    pg_value(out, f[i].type, (const char *)p, (size_t)len, o);
                    p += len;
                }
            }
            sb_add(out, o->array_mode ? "]" : "}", 1);
            rows++;
            if (o->max_bytes && out->len - start > o->max_bytes)
                status =
                    sql_error(err, 400, "54000",
                              "the response exceeds http_max_response (%zu bytes)", o->max_bytes);
            break;
        }
        case 's': /* PortalSuspended: Execute's row limit was reached */
            status =
                sql_error(err, 400, "54000", "the result has more than %lld rows (http_max_rows)",
                          (long long)o->max_rows);
            break;
        case 'C':
            snprintf(tag, sizeof tag, "%.*s", (int)(m.len > 4 ? m.len - 5 : 0),
                     (const char *)m.body);
            break;
        case 'E':
            pg_error_json(err, &m, cancelled, o->timeout_ms);
            status = 400;
            break;
        }
    }
    if (!status && !head) status = lost(be, err, false);
    if (status) {
        out->len = start;
    } else {
        result_tail(out, tag, rows);
        sb_str(out, o->array_mode ? ",\"rowAsArray\":true}" : ",\"rowAsArray\":false}");
    }
    free(f);
    free(tdesc);
    pq_buf_free(&b);
    return status;
}

int pgx_lookup(backend *be, const char *query, const char *user, int64_t timeout_ms, char **secret,
               bool *named, char *why, size_t whylen)
{
    *secret = NULL;
    *named = false;
    sbuf err = {0};
    pq_buf b = {0};
    int64_t dl = sql_deadline_after(timeout_ms);
    int status = 0;
    if (authq_request(&b, query, user))
        status = sql_error(&err, 500, "53200", "out of memory");
    else if (be_write_all(be->fd, be->tls, b.p, b.end, dl))
        status = lost(be, &err, false);
    pq_buf_reset(&b);
    authq q = {0};
    bool cancelled = false;
    sql_opts o = {.timeout_ms = timeout_ms};
    while (!status) {
        pq_msg m;
        if (pg_next(be, &b, &m, &dl, &cancelled, &o)) {
            status = lost(be, &err, cancelled);
            break;
        }
        int r = authq_answer(&q, &m);
        if (r < 0) {
            be->unclean = true; /* the rest of the answer cannot be found */
            status = 502;
        }
        if (r) break;
    }
    if (status && !q.err[0])
        snprintf(why, whylen, "auth_query: server connection lost");
    else if (q.err[0])
        snprintf(why, whylen, "auth_query: %s", q.err);
    pq_buf_free(&b);
    sb_free(&err);
    if (status || q.err[0]) {
        authq_clear(&q);
        return -1;
    }
    *secret = q.secret; /* NULL when there is no such user */
    *named = q.named;
    return 0;
}

/* --- the engine ------------------------------------------------------------------ */

static int pg_target(server *s, const cfg_db *db, const char *dbname, const char *user,
                     const login_creds *cr, void **t, const char **code, char *err, size_t errlen)
{
    spool *p = pool_get(s, db, dbname, user, NULL, cr, err, errlen);
    *t = p;
    *code = "08P01";
    return p ? 0 : 503;
}

static void pg_hold(void *t, int delta)
{
    if (delta > 0)
        pool_pin(t); /* held already: nothing can free it */
    else
        pool_unpin(t);
}

static weir_pool *pg_pool(void *t, bool write)
{
    (void)write;
    return ((spool *)t)->pool;
}

static int pg_run(void *t, weir_conn **c, bool pinned, int64_t wait_ms, const char *sql,
                  const json_t *params, const sql_opts *o, sbuf *out, sbuf *err)
{
    (void)t;
    (void)pinned;
    (void)wait_ms;
    return pgx_run(weir_conn_handle(*c), sql, params, o, out, err);
}

static int pg_exec(weir_conn *c, const char *sql, const sql_opts *o, sbuf *err)
{
    return pgx_exec(weir_conn_handle(c), sql, o, err);
}

static char pg_txn(weir_conn *c)
{
    return ((const backend *)weir_conn_handle(c))->txn;
}

static void pg_begin(const sql_req *q, bool writer, char *out, size_t len)
{
    (void)writer;
    snprintf(out, len, "BEGIN%s%s%s%s", q->isolation ? " ISOLATION LEVEL " : "",
             q->isolation ? q->isolation : "", q->read_only ? " READ ONLY" : "",
             q->deferrable ? " DEFERRABLE" : "");
}

/* In session pooling a request is a session that ends: server_reset_query
 * runs before the connection's next user. In transaction pooling, what the
 * request could have set for the session is undone (DISCARD ALL), or the
 * connection closed if that fails. */
static void pg_done(void *t, weir_conn *c, const sql_req *q)
{
    spool *p = t;
    backend *be = weir_conn_handle(c);
    if (p->mode == POOL_SESSION) {
        be->needs_reset = be->target->reset_query[0] != '\0';
        return;
    }
    if (be->unclean || !sql_req_may_change_session(q)) return;
    sbuf e = {0};
    sql_opts o = {.timeout_ms = 5000};
    if (be->txn != 'I') (void)pgx_exec(be, "ROLLBACK", &o, &e);
    if (be->txn != 'I' || pgx_exec(be, "DISCARD ALL", &o, &e)) be->unclean = true;
    sb_free(&e);
    if (be->unclean) weir_conn_mark_broken(c);
}

static void pg_end_session(void *t, weir_conn *c)
{
    spool *p = t;
    backend *be = weir_conn_handle(c);
    if (p->mode == POOL_SESSION) be->needs_reset = be->target->reset_query[0] != '\0';
}

static bool pg_lost(weir_conn *c)
{
    return ((const backend *)weir_conn_handle(c))->unclean;
}

static wstats *pg_stats(server *s, void *t)
{
    return &((spool *)t)->ws[s->nworkers];
}

void sql_pool_json(sbuf *b, const char *db, const char *user, const char *kind, const char *mode,
                   weir_pool *p, const char *extra)
{
    weir_pool_stats st;
    if (weir_pool_stats_get(p, &st)) return;
    sb_str(b, "{\"database\":");
    sb_jstr(b, db);
    sb_str(b, ",\"user\":");
    if (user)
        sb_jstr(b, user);
    else
        sb_str(b, "null");
    sb_printf(b,
              ",\"kind\":\"%s\",\"mode\":\"%s\",\"size\":%lld,\"open\":%lld,\"idle\":%lld,"
              "\"active\":%lld,\"connecting\":%lld,\"waiting\":%lld,\"acquires\":%lld,"
              "\"acquire_timeouts\":%lld,\"created\":%lld,\"connect_errors\":%lld,"
              "\"oldest_wait_us\":%lld,\"paused\":%s,\"down\":%s",
              kind, mode, (long long)st.max_size, (long long)st.total, (long long)st.idle,
              (long long)st.active, (long long)st.pending, (long long)st.waiters,
              (long long)st.acquires_total, (long long)st.acquire_timeouts_total,
              (long long)st.created_total, (long long)st.connect_errors_total,
              (long long)st.oldest_wait_us, st.paused ? "true" : "false",
              pool_stats_down(&st) ? "true" : "false");
    char err[512];
    if (weir_pool_last_error(p, err, sizeof err) > 0) { /* masked by the engine */
        sb_str(b, ",\"last_error\":");
        sb_jstr(b, err);
    }
    if (extra) sb_str(b, extra);
    sb_str(b, "}");
}

static void pg_list(server *s, sbuf *b, bool *first)
{
    pthread_mutex_lock(&s->pools_lock);
    for (spool *p = s->pools; p; p = p->next) {
        if (!*first) sb_add(b, ",", 1);
        *first = false;
        sql_pool_json(b, p->db, p->user, "postgresql", cfg_pool_mode_name(p->mode), p->pool, NULL);
    }
    pthread_mutex_unlock(&s->pools_lock);
}

static int pg_start(server *s)
{
    (void)s; /* pools are made on first use */
    return 0;
}

static void pg_stop(server *s)
{
    (void)s; /* the pools are the server's */
}

const sql_engine sql_engine_pg = {.kind = "postgresql",
                                  .target = pg_target,
                                  .hold = pg_hold,
                                  .pool = pg_pool,
                                  .run = pg_run,
                                  .exec = pg_exec,
                                  .txn = pg_txn,
                                  .begin = pg_begin,
                                  .done = pg_done,
                                  .end_session = pg_end_session,
                                  .lost = pg_lost,
                                  .stats = pg_stats,
                                  .list = pg_list,
                                  .start = pg_start,
                                  .stop = pg_stop};
