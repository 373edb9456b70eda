/* sqlreq.c — an SQL-over-HTTP request body, decoded and checked, and its
 * statements as PostgreSQL messages (sqlreq.h). */
#include "http/sqlreq.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pg/proto.h"

int sql_error(sbuf *err, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    err->len = 0;
    sb_str(err, "{\"message\":");
    sb_jstr(err, msg);
    sb_str(err, ",\"code\":");
    sb_jstr(err, code);
    sb_str(err, "}");
    return status;
}

/* --- the body ---------------------------------------------------------------------- */

static const char *header(const sql_headers *h, const char *name)
{
    for (int i = 0; h && i < h->n; i++)
        if (!strcasecmp(h->name[i], name)) return h->value[i];
    return NULL;
}

/* A boolean option: the body's key, else the header, else def. */
static bool flag(const json_t *body, const char *key, const sql_headers *h, const char *hdr,
                 bool def)
{
    const json_t *v = json_object_get(body, key);
    if (json_is_boolean(v)) return json_is_true(v);
    const char *s = hdr ? header(h, hdr) : NULL;
    if (s) return !strcasecmp(s, "true") || !strcmp(s, "1");
    return def;
}

/* One statement: {"query": "...", "params": [...]}. 0, or 400 with err set. */
static int statement(const json_t *q, const char **sql, const json_t **params, sbuf *err)
{
    const json_t *s = json_object_get(q, "query");
    const json_t *p = json_object_get(q, "params");
    if (!json_is_string(s)) return sql_error(err, 400, "22023", "\"query\" must be a string");
    if (p && !json_is_array(p) && !json_is_null(p))
        return sql_error(err, 400, "22023", "\"params\" must be an array");
    if (strlen(json_string_value(s)) != json_string_length(s))
        return sql_error(err, 400, "22021", "the query contains a NUL character");
    *sql = json_string_value(s);
    *params = json_is_array(p) ? p : NULL;
    return 0;
}

/* The error object gets the index of the batch statement it is about. */
static void mark_index(sbuf *err, size_t i)
{
    if (err->len && err->p[err->len - 1] == '}') {
        err->len--;
        sb_printf(err, ",\"batchIndex\":%zu}", i);
    }
}

/* "Serializable", "REPEATABLE READ", "read_committed"...: the SQL words, or NULL. */
static const char *isolation_sql(const char *level)
{
    static const struct {
        const char *name, *sql;
    } levels[] = {{"Serializable", "SERIALIZABLE"},
                  {"RepeatableRead", "REPEATABLE READ"},
                  {"ReadCommitted", "READ COMMITTED"},
                  {"ReadUncommitted", "READ UNCOMMITTED"}};
    for (size_t i = 0; i < sizeof levels / sizeof *levels; i++) {
        char alt[32];
        snprintf(alt, sizeof alt, "%s", levels[i].sql);
        if (!strcasecmp(level, levels[i].name) || !strcasecmp(level, alt)) return levels[i].sql;
        for (char *p = alt; *p; p++)
            if (*p == ' ') *p = '_';
        if (!strcasecmp(level, alt)) return levels[i].sql;
    }
    return NULL;
}

static int batch(sql_req *r, const sql_headers *h, sbuf *err)
{
    const json_t *qs = r->queries;
    if (!json_is_array(qs) || !json_array_size(qs))
        return sql_error(err, 400, "22023", "\"queries\" must be a non-empty array");
    for (size_t i = 0; i < json_array_size(qs); i++) {
        const char *sql;
        const json_t *params;
        const json_t *q = json_array_get(qs, i);
        if (!json_is_object(q))
            return sql_error(err, 400, "22023",
                             "queries[%zu] must be {\"query\": ..., \"params\": [...]}", i);
        if (statement(q, &sql, &params, err)) {
            mark_index(err, i);
            return 400;
        }
    }
    const json_t *iso = json_object_get(r->root, "isolationLevel");
    const char *level =
        json_is_string(iso) ? json_string_value(iso) : header(h, "Neon-Batch-Isolation-Level");
    r->read_only = flag(r->root, "readOnly", h, "Neon-Batch-Read-Only", false);
    r->deferrable = flag(r->root, "deferrable", h, "Neon-Batch-Deferrable", false);
    if (level && !(r->isolation = isolation_sql(level)))
        return sql_error(err, 400, "22023",
                         "isolationLevel must be Serializable, RepeatableRead, ReadCommitted or "
                         "ReadUncommitted");
    return 0;
}

int sql_req_decode(sql_req *r, sql_opts *o, const char *body, size_t len, const sql_headers *h,
                   sbuf *err)
{
    memset(r, 0, sizeof *r);
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return sql_error(err, 400, "22P02", "malformed JSON at line %d, column %d: %s", je.line,
                         je.column, je.text);
    int st = 0;
    if (!json_is_object(root)) {
        st = sql_error(err, 400, "22P02",
                       "the body must be a JSON object: {\"query\": ..., \"params\": [...]}");
        goto out;
    }
    o->array_mode = flag(root, "arrayMode", h, "Neon-Array-Mode", false);
    o->raw_text = flag(root, "rawTextOutput", h, "Neon-Raw-Text-Output", false);
    o->int8_num = flag(root, "int8AsNumber", h, NULL, false);
    o->numeric_num = flag(root, "numericAsNumber", h, NULL, false);
    const json_t *t = json_object_get(root, "statementTimeout");
    if (t) {
        if (!json_is_integer(t) || json_integer_value(t) <= 0) {
            st = sql_error(err, 400, "22023",
                           "statementTimeout must be a positive number of milliseconds");
            goto out;
        }
        int64_t ms = json_integer_value(t);
        if (!o->timeout_ms || ms < o->timeout_ms) o->timeout_ms = ms;
    }
    r->root = root;
    r->queries = json_object_get(root, "queries");
    st = r->queries ? batch(r, h, err) : statement(root, &r->sql, &r->params, err);
out:
    if (st) {
        json_decref(root);
        memset(r, 0, sizeof *r);
    }
    return st;
}

void sql_req_free(sql_req *r)
{
    json_decref(r->root);
    memset(r, 0, sizeof *r);
}

void sql_req_statement(const sql_req *r, size_t i, const char **sql, const json_t **params)
{
    const json_t *q = json_array_get(r->queries, i);
    *sql = json_string_value(json_object_get(q, "query"));
    const json_t *p = json_object_get(q, "params");
    *params = json_is_array(p) ? p : NULL;
}

bool sql_may_change_session(const char *q)
{
    static const char *const words[] = {"set",     "reset",  "set_config", "prepare",   "listen",
                                        "declare", "load",   "temp",       "temporary", "pragma",
                                        "attach",  "detach", NULL};
    for (const char *p = q; *p;) {
        unsigned char ch = (unsigned char)*p;
        if (!(isalpha(ch) || ch == '_')) {
            p++;
            continue;
        }
        const char *w = p;
        while (isalnum((unsigned char)*p) || *p == '_' || *p == '$') p++;
        size_t n = (size_t)(p - w);
        if (n >= 11 && !strncasecmp(w, "pg_advisory", 11)) return true;
        for (int i = 0; words[i]; i++)
            if (strlen(words[i]) == n && !strncasecmp(w, words[i], n)) return true;
    }
    return false;
}

bool sql_req_may_change_session(const sql_req *r)
{
    if (!r->queries) return r->sql && sql_may_change_session(r->sql);
    for (size_t i = 0; i < json_array_size(r->queries); i++) {
        const char *sql;
        const json_t *params;
        sql_req_statement(r, i, &sql, &params);
        if (sql && sql_may_change_session(sql)) return true;
    }
    return false;
}

/* --- parameters as PostgreSQL text -------------------------------------------------- */

static void array_literal(sbuf *t, const json_t *a)
{
    sb_add(t, "{", 1);
    for (size_t i = 0; i < json_array_size(a); i++) {
        const json_t *v = json_array_get(a, i);
        if (i) sb_add(t, ",", 1);
        if (json_is_null(v)) {
            sb_str(t, "NULL");
        } else if (json_is_array(v)) {
            array_literal(t, v); /* as deep as jansson parses: 2048 levels */
        } else if (json_is_integer(v)) {
            sb_printf(t, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        } else if (json_is_real(v)) {
            sb_printf(t, "%.17g", json_real_value(v));
        } else if (json_is_boolean(v)) {
            sb_str(t, json_is_true(v) ? "true" : "false");
        } else {
            char *dump = json_is_string(v) ? NULL : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            const char *s = dump ? dump : json_string_value(v);
            size_t n = dump ? strlen(dump) : json_string_length(v);
            sb_add(t, "\"", 1);
            for (size_t k = 0; k < n; k++) {
                if (s[k] == '"' || s[k] == '\\') sb_add(t, "\\", 1);
                sb_add(t, s + k, 1);
            }
            sb_add(t, "\"", 1);
            free(dump);
        }
    }
    sb_add(t, "}", 1);
}

/* A JSON parameter as PostgreSQL text into t; false for null. */
static bool param_text(sbuf *t, const json_t *v)
{
    t->len = 0;
    switch (json_typeof(v)) {
    case JSON_NULL:
        return false;
    case JSON_STRING:
        sb_add(t, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        sb_printf(t, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL:
        sb_printf(t, "%.17g", json_real_value(v));
        break;
    case JSON_TRUE:
        sb_str(t, "true");
        break;
    case JSON_FALSE:
        sb_str(t, "false");
        break;
    case JSON_ARRAY:
        array_literal(t, v);
        break;
    case JSON_OBJECT: {
        char *dump = json_dumps(v, JSON_COMPACT);
        if (dump)
            sb_str(t, dump);
        else
            t->oom = true;
        free(dump);
        break;
    }
    }
    return true;
}

/* --- PostgreSQL messages ------------------------------------------------------------ */

static size_t msg_begin(sbuf *w, char type)
{
    sb_add(w, &type, 1);
    sb_add(w, "\0\0\0\0", 4);
    return w->len - 4;
}

static void msg_end(sbuf *w, size_t at)
{
    if (!w->oom) pq_set32((uint8_t *)w->p + at, (uint32_t)(w->len - at));
}

static void put16(sbuf *w, int v)
{
    uint8_t b[2];
    pq_set16(b, (uint16_t)v);
    sb_add(w, b, 2);
}

static void put32(sbuf *w, uint32_t v)
{
    uint8_t b[4];
    pq_set32(b, v);
    sb_add(w, b, 4);
}

void sql_pg_query(sbuf *w, const char *sql)
{
    size_t at = msg_begin(w, 'Q');
    sb_add(w, sql, strlen(sql) + 1);
    msg_end(w, at);
}

int sql_pg_extended(sbuf *w, const char *sql, const json_t *params, int64_t max_rows, sbuf *err)
{
    size_t np = json_array_size(params);
    if (np > 65535) return sql_error(err, 400, "54000", "more than 65535 parameters");
    sbuf t = {0};
    size_t at = msg_begin(w, 'P');
    sb_add(w, "", 1);
    sb_add(w, sql, strlen(sql) + 1);
    put16(w, 0);
    msg_end(w, at);
    at = msg_begin(w, 'B');
    sb_add(w, "\0", 2); /* portal "", statement "" */
    put16(w, 0);        /* parameters in text */
    put16(w, (int)np);
    for (size_t i = 0; i < np; i++) {
        if (!param_text(&t, json_array_get(params, i))) {
            put32(w, 0xffffffffu);
            continue;
        }
        if (t.len > 0x3fffffff) { /* PostgreSQL's 1 GB */
            sb_free(&t);
            return sql_error(err, 400, "54000", "parameter %zu is over 1 GB", i + 1);
        }
        put32(w, (uint32_t)t.len);
        sb_add(w, t.p, t.len);
    }
    put16(w, 0); /* results in text */
    msg_end(w, at);
    at = msg_begin(w, 'D');
    sb_add(w, "P", 2);
    msg_end(w, at);
    at = msg_begin(w, 'E');
    sb_add(w, "", 1);
    put32(w, max_rows > 0 && max_rows < INT32_MAX ? (uint32_t)max_rows + 1 : 0);
    msg_end(w, at);
    at = msg_begin(w, 'S');
    msg_end(w, at);
    bool oom = w->oom || t.oom;
    sb_free(&t);
    return oom ? sql_error(err, 500, "53200", "out of memory") : 0;
}
