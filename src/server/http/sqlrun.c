/* sqlrun.c — one statement for the HTTP door, as JSON (sqlrun.h).
 *
 * PostgreSQL: Parse/Bind/Describe/Execute/Sync of the unnamed statement with
 * text parameters and text results, written in one go on a pooled server
 * connection; values are turned into JSON by type OID. A statement that
 * outlives its timeout gets a CancelRequest, and the connection is kept if
 * the server answers it.
 *
 * SQLite: a cached prepared statement on a libweir SQLite connection; the
 * statement timeout is a progress handler.
 */
#include "http/sqlrun.h"

#include <ctype.h>
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/config.h"
#include "pg/proto.h"
#include "weir/weir_sqlite.h"

static int64_t deadline_after(int64_t ms)
{
    return ms > 0 ? weir_now_ns() + ms * 1000000 : INT64_MAX / 2;
}

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
        int rc = be_read_msg(be->fd, b, *dl, m);
        if (rc == 0) be_track(be, m);
        if (rc != WEIR_ETIMEDOUT || *cancelled || o->timeout_ms <= 0) return rc;
        *cancelled = true;
        char host[256];
        int port;
        pthread_mutex_t *mu = (pthread_mutex_t *)&be->target->mu;
        pthread_mutex_lock(mu);
        snprintf(host, sizeof host, "%s", be->target->host[0] ? be->target->host : "/tmp");
        port = be->target->port;
        pthread_mutex_unlock(mu);
        int64_t grace = o->cancel_grace_ms > 0 ? o->cancel_grace_ms : 5000;
        (void)be_cancel(host, port, be->pid, be->key, grace);
        *dl = deadline_after(grace);
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

int pgx_exec(backend *be, const char *sql, const sql_opts *o, sbuf *err)
{
    sbuf w = {0};
    sql_pg_query(&w, sql);
    if (w.oom) return sql_error(err, 500, "53200", "out of memory");
    int64_t dl = deadline_after(o->timeout_ms);
    int rc = be_write_all(be->fd, (uint8_t *)w.p, w.len, dl);
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
    if (!status && be_write_all(be->fd, (uint8_t *)w.p, w.len, dl)) status = lost(be, err, false);
    sb_free(&w);
    return status;
}

typedef struct pg_field {
    const char *name;
    uint32_t type;
} pg_field;

int pgx_run(backend *be, const char *sql, const json_t *params, const sql_opts *o, sbuf *out,
            sbuf *err)
{
    int64_t dl = deadline_after(o->timeout_ms);
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
               char *why, size_t whylen)
{
    sbuf err = {0};
    json_t *params = json_pack("[s]", user);
    int64_t dl = deadline_after(timeout_ms);
    int status = params ? pg_send(be, query, params, 0, dl, &err) : 500;
    json_decref(params);
    *secret = NULL;
    pq_buf b = {0};
    bool cancelled = false, bad = false;
    sql_opts o = {.timeout_ms = timeout_ms};
    while (!status) {
        pq_msg m;
        if (pg_next(be, &b, &m, &dl, &cancelled, &o)) {
            status = lost(be, &err, cancelled);
            break;
        }
        if (m.type == 'Z') break;
        if (m.type == 'E') {
            const char *msg = pq_error_field(&m, 'M');
            snprintf(why, whylen, "%s", msg ? msg : "auth_query failed");
            status = 400;
        } else if (m.type == 'D' && m.len >= 6) {
            const uint8_t *p = m.body, *end = m.body + m.len - 4;
            int n = pq_get16(p);
            p += 2;
            for (int i = 0; i < n && end - p >= 4; i++) {
                int32_t l = (int32_t)pq_get32(p);
                p += 4;
                if (l > end - p) break;
                if (i == (n >= 2 ? 1 : 0) && l > 0 && !*secret) {
                    if (l > CFG_SECRET_MAX || memchr(p, '\0', (size_t)l)) {
                        snprintf(why, whylen, "auth_query: secret longer than %d bytes or with a NUL",
                                 CFG_SECRET_MAX);
                        bad = true; /* read on to ReadyForQuery */
                    } else if ((*secret = malloc((size_t)l + 1))) {
                        memcpy(*secret, p, (size_t)l);
                        (*secret)[l] = '\0';
                    } else {
                        snprintf(why, whylen, "auth_query: out of memory");
                        bad = true;
                    }
                }
                if (l > 0) p += l;
            }
        }
    }
    if (status && status != 400) snprintf(why, whylen, "auth_query: server connection lost");
    if (bad && !status) status = 400;
    pq_buf_free(&b);
    sb_free(&err);
    if (status && *secret) {
        explicit_bzero(*secret, strlen(*secret));
        free(*secret);
        *secret = NULL;
    }
    return status ? -1 : 0;
}

/* --- SQLite ---------------------------------------------------------------------- */

static const char *lite_code(int rc)
{
    static const char *names[] = {
        "SQLITE_OK",       "SQLITE_ERROR",     "SQLITE_INTERNAL", "SQLITE_PERM",
        "SQLITE_ABORT",    "SQLITE_BUSY",      "SQLITE_LOCKED",   "SQLITE_NOMEM",
        "SQLITE_READONLY", "SQLITE_INTERRUPT", "SQLITE_IOERR",    "SQLITE_CORRUPT",
        "SQLITE_NOTFOUND", "SQLITE_FULL",      "SQLITE_CANTOPEN", "SQLITE_PROTOCOL",
        "SQLITE_EMPTY",    "SQLITE_SCHEMA",    "SQLITE_TOOBIG",   "SQLITE_CONSTRAINT",
        "SQLITE_MISMATCH", "SQLITE_MISUSE",    "SQLITE_NOLFS",    "SQLITE_AUTH",
        "SQLITE_FORMAT",   "SQLITE_RANGE",     "SQLITE_NOTADB",
    };
    int p = rc & 0xff;
    return p >= 0 && p < (int)(sizeof names / sizeof *names) ? names[p] : "SQLITE_ERROR";
}

typedef struct lite_clock {
    int64_t deadline_ns;
    bool fired;
} lite_clock;

static int lite_progress(void *arg)
{
    lite_clock *k = arg;
    if (weir_now_ns() < k->deadline_ns) return 0;
    k->fired = true;
    return 1;
}

static int lite_error(sbuf *err, sqlite3 *db, int rc, const lite_clock *k, const sql_opts *o)
{
    if (k && k->fired)
        return sql_error(err, 400, "57014",
                         "canceling statement due to statement timeout (%lld ms)",
                         (long long)o->timeout_ms);
    err->len = 0;
    sb_str(err, "{\"message\":");
    sb_jstr(err, sqlite3_errmsg(db));
    sb_str(err, ",\"code\":");
    sb_jstr(err, lite_code(rc));
    sb_printf(err, ",\"extendedCode\":%d}", rc);
    return 400;
}

static bool blank(const char *s)
{
    while (isspace((unsigned char)*s) || *s == ';') s++;
    return !*s;
}

static void lite_value(sbuf *out, sqlite3_stmt *st, int i, const char *decl, const sql_opts *o)
{
    int t = sqlite3_column_type(st, i);
    if (t == SQLITE_NULL) {
        sb_str(out, "null");
        return;
    }
    if (o->raw_text && t != SQLITE_BLOB) {
        sb_json_str(out, (const char *)sqlite3_column_text(st, i),
                    (size_t)sqlite3_column_bytes(st, i));
        return;
    }
    switch (t) {
    case SQLITE_INTEGER: {
        long long v = sqlite3_column_int64(st, i);
        if (decl && (!strcasecmp(decl, "BOOLEAN") || !strcasecmp(decl, "BOOL")) &&
            (v == 0 || v == 1))
            sb_str(out, v ? "true" : "false");
        else
            sb_printf(out, "%lld", v);
        return;
    }
    case SQLITE_FLOAT: {
        double v = sqlite3_column_double(st, i);
        if (!isfinite(v)) {
            sb_jstr(out, isnan(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity");
            return;
        }
        char buf[40];
        snprintf(buf, sizeof buf, "%.15g", v);
        if (strtod(buf, NULL) != v) snprintf(buf, sizeof buf, "%.17g", v);
        if (!strpbrk(buf, ".eEn")) strcat(buf, ".0"); /* stays a float for clients that care */
        sb_str(out, buf);
        return;
    }
    case SQLITE_TEXT: {
        const char *v = (const char *)sqlite3_column_text(st, i);
        size_t n = (size_t)sqlite3_column_bytes(st, i);
        if (decl && !strcasecmp(decl, "JSON")) {
            json_t *j = json_loadb(v, n, JSON_DECODE_ANY, NULL);
            if (j) {
                json_decref(j);
                sb_add(out, v, n);
                return;
            }
        }
        sb_json_str(out, v, n);
        return;
    }
    default: { /* BLOB: PostgreSQL's bytea text, \x and hex */
        static const char hex[] = "0123456789abcdef";
        const unsigned char *v = sqlite3_column_blob(st, i);
        int n = sqlite3_column_bytes(st, i);
        sb_str(out, "\"\\\\x");
        for (int k = 0; k < n; k++) {
            char h[2] = {hex[v[k] >> 4], hex[v[k] & 15]};
            sb_add(out, h, 2);
        }
        sb_add(out, "\"", 1);
    }
    }
}

static int lite_bind(sqlite3_stmt *st, const json_t *params, sbuf *err)
{
    int want = sqlite3_bind_parameter_count(st);
    int have = (int)json_array_size(params);
    if (want != have)
        return sql_error(err, 400, "08P01",
                         "bind message supplies %d parameters, but prepared statement requires %d",
                         have, want);
    for (int i = 0; i < have; i++) {
        const json_t *v = json_array_get(params, (size_t)i);
        int rc;
        switch (json_typeof(v)) {
        case JSON_NULL:
            rc = sqlite3_bind_null(st, i + 1);
            break;
        case JSON_INTEGER:
            rc = sqlite3_bind_int64(st, i + 1, json_integer_value(v));
            break;
        case JSON_REAL:
            rc = sqlite3_bind_double(st, i + 1, json_real_value(v));
            break;
        case JSON_TRUE:
            rc = sqlite3_bind_int(st, i + 1, 1);
            break;
        case JSON_FALSE:
            rc = sqlite3_bind_int(st, i + 1, 0);
            break;
        case JSON_STRING:
            rc = sqlite3_bind_text(st, i + 1, json_string_value(v), (int)json_string_length(v),
                                   SQLITE_TRANSIENT);
            break;
        default: {
            char *dump = json_dumps(v, JSON_COMPACT);
            rc = dump ? sqlite3_bind_text(st, i + 1, dump, -1, free) : SQLITE_NOMEM;
        }
        }
        if (rc != SQLITE_OK)
            return sql_error(err, 400, lite_code(rc), "parameter $%d: %s", i + 1,
                             sqlite3_errstr(rc));
    }
    return 0;
}

int litx_run(weir_conn *c, const char *sql, const json_t *params, const sql_opts *o, sbuf *out,
             sbuf *err, bool *writer_needed)
{
    sqlite3 *db = weir_sqlite_db(c);
    sqlite3_stmt *st = NULL;
    int rc = blank(sql) ? WEIR_EINVAL : weir_sqlite_prepare_cached(c, sql, &st);
    if (rc == WEIR_EINVAL) { /* nothing to run, as PostgreSQL's EmptyQueryResponse */
        sb_str(out,
               "{\"fields\":[],\"rows\":[],\"command\":\"\",\"rowCount\":null,\"rowAsArray\":");
        sb_str(out, o->array_mode ? "true}" : "false}");
        return 0;
    }
    if (rc == WEIR_ENOMEM) return sql_error(err, 500, "53200", "out of memory");
    if (rc) return lite_error(err, db, sqlite3_extended_errcode(db), NULL, o);
    const char *text = sqlite3_sql(st);
    if (text && !blank(sql + strlen(text)))
        return sql_error(err, 400, "42601",
                         "cannot insert multiple commands into a prepared statement");
    if (writer_needed && !sqlite3_stmt_readonly(st)) {
        *writer_needed = true;
        return 0;
    }
    int status = lite_bind(st, params, err);
    if (status) return status;
    lite_clock k = {.deadline_ns = deadline_after(o->timeout_ms)};
    if (o->timeout_ms > 0) sqlite3_progress_handler(db, 1000, lite_progress, &k);
    size_t start = out->len;
    int nc = sqlite3_column_count(st);
    sb_str(out, "{\"fields\":[");
    for (int i = 0; i < nc; i++) {
        const char *decl = sqlite3_column_decltype(st, i);
        sb_str(out, i ? ",{\"name\":" : "{\"name\":");
        sb_jstr(out, sqlite3_column_name(st, i));
        sb_str(out, ",\"type\":");
        if (decl)
            sb_jstr(out, decl);
        else
            sb_str(out, "null");
        sb_str(out, "}");
    }
    sb_str(out, "],\"rows\":[");
    int64_t rows = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (o->max_rows && rows == o->max_rows) {
            status =
                sql_error(err, 400, "54000", "the result has more than %lld rows (http_max_rows)",
                          (long long)o->max_rows);
            break;
        }
        sb_str(out, rows ? (o->array_mode ? ",[" : ",{") : (o->array_mode ? "[" : "{"));
        for (int i = 0; i < nc; i++) {
            if (i) sb_add(out, ",", 1);
            if (!o->array_mode) {
                sb_jstr(out, sqlite3_column_name(st, i));
                sb_add(out, ":", 1);
            }
            lite_value(out, st, i, sqlite3_column_decltype(st, i), o);
        }
        sb_add(out, o->array_mode ? "]" : "}", 1);
        rows++;
        if (o->max_bytes && out->len - start > o->max_bytes) {
            status = sql_error(err, 400, "54000",
                               "the response exceeds http_max_response (%zu bytes)", o->max_bytes);
            break;
        }
    }
    if (!status && rc != SQLITE_DONE)
        status = lite_error(err, db, sqlite3_extended_errcode(db), &k, o);
    if (o->timeout_ms > 0) sqlite3_progress_handler(db, 0, NULL, NULL);
    if (!status) {
        /* The command: the statement's first word, as PostgreSQL's tag would start. */
        const char *s = text ? text : sql;
        while (isspace((unsigned char)*s) || *s == '(') s++;
        char cmd[32];
        size_t n = 0;
        while (n + 1 < sizeof cmd && isalpha((unsigned char)s[n])) {
            cmd[n] = (char)toupper((unsigned char)s[n]);
            n++;
        }
        cmd[n] = '\0';
        sb_str(out, "],\"command\":");
        sb_jstr(out, cmd);
        bool dml = !strcmp(cmd, "INSERT") || !strcmp(cmd, "UPDATE") || !strcmp(cmd, "DELETE") ||
                   !strcmp(cmd, "REPLACE");
        if (dml && !nc)
            sb_printf(out, ",\"rowCount\":%lld", (long long)sqlite3_changes64(db));
        else if (nc)
            sb_printf(out, ",\"rowCount\":%lld", (long long)rows);
        else
            sb_str(out, ",\"rowCount\":null");
        sb_printf(out, ",\"rowAsArray\":%s}", o->array_mode ? "true" : "false");
    } else {
        out->len = start;
    }
    sqlite3_reset(st); /* ends its read transaction now, not at checkin */
    return status;
}

int litx_exec(weir_conn *c, const char *sql, sbuf *err)
{
    sqlite3 *db = weir_sqlite_db(c);
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : lite_error(err, db, sqlite3_extended_errcode(db), NULL, NULL);
}
