/* myrun.c — the HTTP door's SQL on MySQL and MariaDB (sqlexec.h's
 * sql_engine_mysql): each [databases] entry "mysql://user:pw@host:port/db"
 * is a libweir pool of its MySQL driver, made on first use. A statement
 * without parameters runs as text (mysql_real_query); with parameters, as a
 * server-side prepared statement ("?" placeholders), values bound by JSON
 * type. The connection's checkin resets its session (COM_RESET_CONNECTION)
 * unless the URL says reset=transaction. Absent from a build without MySQL.
 */
#include "http/sqlexec.h"

#include <ctype.h>
#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/server.h"
#include "weir/weir_mysql.h"

typedef struct my_db {
    char name[CFG_NAME];
    char url[CFG_STR];
    weir_pool *pool; /* NULL if the URL was refused (err says why) */
    char err[300];
    struct my_db *next;
} my_db;

struct my_dbs {
    pthread_mutex_t mu;
    my_db *list;
};

/* --- errors ------------------------------------------------------------------ */

/* A connection-level failure (the statement's fate unknown) rather than the
 * server refusing a statement. */
static bool conn_error(unsigned e)
{
    return e == CR_SERVER_GONE_ERROR || e == CR_SERVER_LOST || e == CR_COMMANDS_OUT_OF_SYNC ||
           e == CR_CONNECTION_ERROR || e == CR_UNKNOWN_ERROR;
}

/* {"message","code" (SQLSTATE),"errno"} and the HTTP status: 400 for what the
 * server refused, 502 when the connection to it broke. */
static int my_error_json(sbuf *err, unsigned e, const char *state, const char *msg)
{
    err->len = 0;
    sb_str(err, "{\"message\":");
    sb_jstr(err, msg);
    sb_str(err, ",\"code\":");
    sb_jstr(err, state && *state ? state : "HY000");
    sb_printf(err, ",\"errno\":%u}", e);
    return conn_error(e) ? 502 : 400;
}

static int my_error(sbuf *err, MYSQL *m)
{
    return my_error_json(err, mysql_errno(m), mysql_sqlstate(m), mysql_error(m));
}

static int stmt_error(sbuf *err, MYSQL_STMT *st)
{
    return my_error_json(err, mysql_stmt_errno(st), mysql_stmt_sqlstate(st), mysql_stmt_error(st));
}

/* --- values ------------------------------------------------------------------ */

static bool binary_charset(const MYSQL_FIELD *f)
{
    return f->charsetnr == 63;
}

static const char *type_name(const MYSQL_FIELD *f)
{
    bool bin = binary_charset(f);
    switch (f->type) {
    case MYSQL_TYPE_DECIMAL:
    case MYSQL_TYPE_NEWDECIMAL:
        return "DECIMAL";
    case MYSQL_TYPE_TINY:
        return "TINYINT";
    case MYSQL_TYPE_SHORT:
        return "SMALLINT";
    case MYSQL_TYPE_INT24:
        return "MEDIUMINT";
    case MYSQL_TYPE_LONG:
        return "INT";
    case MYSQL_TYPE_LONGLONG:
        return "BIGINT";
    case MYSQL_TYPE_FLOAT:
        return "FLOAT";
    case MYSQL_TYPE_DOUBLE:
        return "DOUBLE";
    case MYSQL_TYPE_NULL:
        return "NULL";
    case MYSQL_TYPE_TIMESTAMP:
        return "TIMESTAMP";
    case MYSQL_TYPE_DATE:
    case MYSQL_TYPE_NEWDATE:
        return "DATE";
    case MYSQL_TYPE_TIME:
        return "TIME";
    case MYSQL_TYPE_DATETIME:
        return "DATETIME";
    case MYSQL_TYPE_YEAR:
        return "YEAR";
    case MYSQL_TYPE_BIT:
        return "BIT";
    case MYSQL_TYPE_JSON:
        return "JSON";
    case MYSQL_TYPE_ENUM:
        return "ENUM";
    case MYSQL_TYPE_SET:
        return "SET";
    case MYSQL_TYPE_GEOMETRY:
        return "GEOMETRY";
    case MYSQL_TYPE_VARCHAR:
    case MYSQL_TYPE_VAR_STRING:
        return bin ? "VARBINARY" : "VARCHAR";
    case MYSQL_TYPE_STRING:
        return bin ? "BINARY" : "CHAR";
    case MYSQL_TYPE_TINY_BLOB:
    case MYSQL_TYPE_MEDIUM_BLOB:
    case MYSQL_TYPE_LONG_BLOB:
    case MYSQL_TYPE_BLOB:
        return bin ? "BLOB" : "TEXT";
    default:
        return "UNKNOWN";
    }
}

static void hex_value(sbuf *out, const unsigned char *v, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    sb_str(out, "\"\\\\x");
    for (size_t k = 0; k < n; k++) {
        char h[2] = {hex[v[k] >> 4], hex[v[k] & 15]};
        sb_add(out, h, 2);
    }
    sb_add(out, "\"", 1);
}

/* The text of a number, as MySQL sends it, is a valid JSON number. */
static bool numeric_text(const char *v, size_t n)
{
    size_t i = n && v[0] == '-' ? 1 : 0;
    if (n <= i || !isdigit((unsigned char)v[i])) return false;
    for (size_t k = i; k < n; k++)
        if (!isdigit((unsigned char)v[k]) && v[k] != '.' && v[k] != 'e' && v[k] != 'E' &&
            v[k] != '-' && v[k] != '+')
            return false;
    return true;
}

/* One value in the text form libmariadb gives (n bytes; v NULL: SQL NULL). */
static void my_value(sbuf *out, const MYSQL_FIELD *f, const char *v, size_t n, const sql_opts *o)
{
    if (!v) {
        sb_str(out, "null");
        return;
    }
    bool bin = binary_charset(f);
    if (f->type == MYSQL_TYPE_BIT) { /* its bytes, big-endian */
        unsigned long long x = 0;
        for (size_t k = 0; k < n && k < 8; k++) x = x << 8 | (unsigned char)v[k];
        sb_printf(out, o->raw_text ? "\"%llu\"" : "%llu", x);
        return;
    }
    switch (f->type) {
    case MYSQL_TYPE_TINY_BLOB:
    case MYSQL_TYPE_MEDIUM_BLOB:
    case MYSQL_TYPE_LONG_BLOB:
    case MYSQL_TYPE_BLOB:
    case MYSQL_TYPE_VAR_STRING:
    case MYSQL_TYPE_VARCHAR:
    case MYSQL_TYPE_STRING:
    case MYSQL_TYPE_GEOMETRY:
        if (bin || f->type == MYSQL_TYPE_GEOMETRY) {
            hex_value(out, (const unsigned char *)v, n); /* as PostgreSQL's bytea text */
            return;
        }
        break;
    default:
        break;
    }
    if (o->raw_text) {
        sb_json_str(out, v, n);
        return;
    }
    switch (f->type) {
    case MYSQL_TYPE_TINY:
    case MYSQL_TYPE_SHORT:
    case MYSQL_TYPE_INT24:
    case MYSQL_TYPE_LONG:
    case MYSQL_TYPE_YEAR:
    case MYSQL_TYPE_FLOAT:
    case MYSQL_TYPE_DOUBLE:
        if (numeric_text(v, n)) {
            sb_add(out, v, n);
            return;
        }
        break;
    case MYSQL_TYPE_LONGLONG: /* as int8: a string unless asked (JavaScript's 2^53) */
        if (o->int8_num && numeric_text(v, n)) {
            sb_add(out, v, n);
            return;
        }
        break;
    case MYSQL_TYPE_DECIMAL:
    case MYSQL_TYPE_NEWDECIMAL:
        if (o->numeric_num && numeric_text(v, n)) {
            sb_add(out, v, n);
            return;
        }
        break;
    case MYSQL_TYPE_JSON: {
        json_t *j = json_loadb(v, n, JSON_DECODE_ANY, NULL);
        if (j) {
            json_decref(j);
            sb_add(out, v, n);
            return;
        }
        break;
    }
    default:
        break;
    }
    sb_json_str(out, v, n);
}

static void fields_json(sbuf *out, MYSQL_FIELD *fs, unsigned nf)
{
    sb_str(out, "{\"fields\":[");
    for (unsigned i = 0; i < nf; i++) {
        sb_str(out, i ? ",{\"name\":" : "{\"name\":");
        sb_jstr(out, fs[i].name);
        sb_str(out, ",\"type\":");
        sb_jstr(out, type_name(&fs[i]));
        sb_str(out, "}");
    }
    sb_str(out, "],\"rows\":[");
}

/* The statement's first word, upper-cased, as the command. */
static void command_of(const char *sql, char *cmd, size_t len)
{
    const char *s = sql;
    for (;;) { /* skip blanks and comments */
        while (isspace((unsigned char)*s) || *s == '(') s++;
        if (s[0] == '/' && s[1] == '*') {
            const char *e = strstr(s + 2, "*/");
            if (!e) break;
            s = e + 2;
        } else if ((s[0] == '-' && s[1] == '-') || s[0] == '#') {
            s += strcspn(s, "\n");
        } else {
            break;
        }
    }
    size_t n = 0;
    while (n + 1 < len && isalpha((unsigned char)s[n])) {
        cmd[n] = (char)toupper((unsigned char)s[n]);
        n++;
    }
    cmd[n] = '\0';
}

static void result_end(sbuf *out, const char *sql, bool has_rows, int64_t rows,
                       unsigned long long affected, const sql_opts *o)
{
    char cmd[32];
    command_of(sql, cmd, sizeof cmd);
    sb_str(out, "],\"command\":");
    sb_jstr(out, cmd);
    if (has_rows)
        sb_printf(out, ",\"rowCount\":%lld", (long long)rows);
    else if (affected != (unsigned long long)-1)
        sb_printf(out, ",\"rowCount\":%llu", affected);
    else
        sb_str(out, ",\"rowCount\":null");
    sb_printf(out, ",\"rowAsArray\":%s}", o->array_mode ? "true" : "false");
}

static int too_many(sbuf *err, const sql_opts *o)
{
    return sql_error(err, 400, "54000", "the result has more than %lld rows (http_max_rows)",
                     (long long)o->max_rows);
}

static int too_big(sbuf *err, const sql_opts *o)
{
    return sql_error(err, 400, "54000", "the response exceeds http_max_response (%zu bytes)",
                     o->max_bytes);
}

static void row_start(sbuf *out, int64_t rows, const sql_opts *o)
{
    sb_str(out, rows ? (o->array_mode ? ",[" : ",{") : (o->array_mode ? "[" : "{"));
}

static void cell_start(sbuf *out, const MYSQL_FIELD *f, unsigned i, const sql_opts *o)
{
    if (i) sb_add(out, ",", 1);
    if (!o->array_mode) {
        sb_jstr(out, f->name);
        sb_add(out, ":", 1);
    }
}

/* --- running ----------------------------------------------------------------- */

static bool is_mariadb(MYSQL *m)
{
    const char *v = mysql_get_server_info(m);
    return v && strstr(v, "MariaDB");
}

/* The statement timeout, as the server's own limit (MariaDB's
 * max_statement_time, MySQL's max_execution_time, SELECT only). */
static int set_timeout(MYSQL *m, const sql_opts *o, sbuf *err)
{
    char sql[96];
    if (is_mariadb(m))
        snprintf(sql, sizeof sql, "SET SESSION max_statement_time=%.3f",
                 o->timeout_ms > 0 ? (double)o->timeout_ms / 1000 : 0.0);
    else
        snprintf(sql, sizeof sql, "SET SESSION max_execution_time=%lld",
                 o->timeout_ms > 0 ? (long long)o->timeout_ms : 0LL);
    return mysql_real_query(m, sql, strlen(sql)) ? my_error(err, m) : 0;
}

static bool blank(const char *s)
{
    while (isspace((unsigned char)*s) || *s == ';') s++;
    return !*s;
}

static bool timed_out(unsigned e)
{
    return e == ER_STATEMENT_TIMEOUT || e == 3024 /* MySQL's ER_QUERY_TIMEOUT */;
}

static int timeout_error(sbuf *err, unsigned e, const sql_opts *o)
{
    err->len = 0;
    sb_printf(err,
              "{\"message\":\"canceling statement due to statement timeout (%lld ms)\","
              "\"code\":\"70100\",\"errno\":%u}",
              (long long)o->timeout_ms, e);
    return 400;
}

/* Text protocol: no parameters. */
static int run_text(MYSQL *m, const char *sql, const sql_opts *o, sbuf *out, sbuf *err)
{
    if (mysql_real_query(m, sql, strlen(sql))) {
        unsigned e = mysql_errno(m);
        return timed_out(e) ? timeout_error(err, e, o) : my_error(err, m);
    }
    MYSQL_RES *r = mysql_use_result(m);
    size_t start = out->len;
    if (!r) {
        if (mysql_field_count(m)) return my_error(err, m);
        fields_json(out, NULL, 0);
        result_end(out, sql, false, 0, mysql_affected_rows(m), o);
        return 0;
    }
    unsigned nf = mysql_num_fields(r);
    MYSQL_FIELD *fs = mysql_fetch_fields(r);
    fields_json(out, fs, nf);
    int64_t rows = 0;
    int status = 0;
    MYSQL_ROW row;
    while ((row = mysql_fetch_row(r))) {
        if (o->max_rows && rows == o->max_rows) {
            status = too_many(err, o);
            break;
        }
        unsigned long *len = mysql_fetch_lengths(r);
        row_start(out, rows, o);
        for (unsigned i = 0; i < nf; i++) {
            cell_start(out, &fs[i], i, o);
            my_value(out, &fs[i], row[i], len[i], o);
        }
        sb_add(out, o->array_mode ? "]" : "}", 1);
        rows++;
        if (o->max_bytes && out->len - start > o->max_bytes) {
            status = too_big(err, o);
            break;
        }
    }
    if (!status && mysql_errno(m)) {
        unsigned e = mysql_errno(m);
        status = timed_out(e) ? timeout_error(err, e, o) : my_error(err, m);
    }
    /* Stopped early: libmariadb would read every row left before the next
     * statement. Leave them: the connection is then in an unknown state,
     * which the driver closes at checkin rather than drain it. */
    if (row) r->handle = NULL;
    mysql_free_result(r);
    if (status) {
        out->len = start;
        return status;
    }
    result_end(out, sql, true, rows, 0, o);
    return 0;
}

/* Bind params (a JSON array) to st's placeholders. bufs keeps what the binds
 * point at until execution. */
static int bind_params(MYSQL_STMT *st, const json_t *params, MYSQL_BIND *b, long long *ints,
                       double *dbls, char **dumps, sbuf *err)
{
    unsigned want = (unsigned)mysql_stmt_param_count(st);
    unsigned have = (unsigned)json_array_size(params);
    if (want != have)
        return sql_error(err, 400, "08P01",
                         "bind message supplies %u parameters, but prepared statement requires %u",
                         have, want);
    for (unsigned i = 0; i < have; i++) {
        const json_t *v = json_array_get(params, i);
        memset(&b[i], 0, sizeof b[i]);
        switch (json_typeof(v)) {
        case JSON_NULL:
            b[i].buffer_type = MYSQL_TYPE_NULL;
            break;
        case JSON_INTEGER:
            ints[i] = (long long)json_integer_value(v);
            b[i].buffer_type = MYSQL_TYPE_LONGLONG;
            b[i].buffer = &ints[i];
            break;
        case JSON_REAL:
            dbls[i] = json_real_value(v);
            b[i].buffer_type = MYSQL_TYPE_DOUBLE;
            b[i].buffer = &dbls[i];
            break;
        case JSON_TRUE:
        case JSON_FALSE:
            ints[i] = json_is_true(v);
            b[i].buffer_type = MYSQL_TYPE_LONGLONG;
            b[i].buffer = &ints[i];
            break;
        case JSON_STRING:
            b[i].buffer_type = MYSQL_TYPE_STRING;
            b[i].buffer = (void *)json_string_value(v);
            b[i].buffer_length = (unsigned long)json_string_length(v);
            break;
        default:
            if (!(dumps[i] = json_dumps(v, JSON_COMPACT)))
                return sql_error(err, 500, "53200", "out of memory");
            b[i].buffer_type = MYSQL_TYPE_STRING;
            b[i].buffer = dumps[i];
            b[i].buffer_length = (unsigned long)strlen(dumps[i]);
        }
    }
    if (have && mysql_stmt_bind_param(st, b)) return stmt_error(err, st);
    return 0;
}

/* Binary protocol: a prepared statement with parameters; every result column
 * is fetched as text (libmariadb converts), then typed as run_text does. */
static int run_prepared(MYSQL *m, const char *sql, const json_t *params, const sql_opts *o,
                        sbuf *out, sbuf *err)
{
    MYSQL_STMT *st = mysql_stmt_init(m);
    if (!st) return sql_error(err, 500, "53200", "out of memory");
    size_t np = json_array_size(params);
    MYSQL_BIND *pb = calloc(np + 1, sizeof *pb);
    long long *ints = calloc(np + 1, sizeof *ints);
    double *dbls = calloc(np + 1, sizeof *dbls);
    char **dumps = calloc(np + 1, sizeof *dumps);
    MYSQL_RES *meta = NULL;
    MYSQL_BIND *rb = NULL;
    unsigned long *lens = NULL;
    my_bool *nulls = NULL, *errs = NULL;
    char **bufs = NULL;
    unsigned nf = 0;
    size_t start = out->len;
    int status = 0;
    if (!pb || !ints || !dbls || !dumps) {
        status = sql_error(err, 500, "53200", "out of memory");
        goto done;
    }
    /* A read-only cursor: rows come in batches as fetched, so that a result
     * cut short at http_max_rows leaves nothing to drain. */
    unsigned long cursor = CURSOR_TYPE_READ_ONLY, prefetch = 256;
    mysql_stmt_attr_set(st, STMT_ATTR_CURSOR_TYPE, &cursor);
    mysql_stmt_attr_set(st, STMT_ATTR_PREFETCH_ROWS, &prefetch);
    if (mysql_stmt_prepare(st, sql, (unsigned long)strlen(sql))) {
        status = stmt_error(err, st);
        goto done;
    }
    if ((status = bind_params(st, params, pb, ints, dbls, dumps, err))) goto done;
    if (mysql_stmt_execute(st)) {
        unsigned e = mysql_stmt_errno(st);
        status = timed_out(e) ? timeout_error(err, e, o) : stmt_error(err, st);
        goto done;
    }
    meta = mysql_stmt_result_metadata(st);
    if (!meta) {
        fields_json(out, NULL, 0);
        result_end(out, sql, false, 0, (unsigned long long)mysql_stmt_affected_rows(st), o);
        goto done;
    }
    nf = mysql_num_fields(meta);
    MYSQL_FIELD *fs = mysql_fetch_fields(meta);
    rb = calloc(nf, sizeof *rb);
    lens = calloc(nf, sizeof *lens);
    nulls = calloc(nf, sizeof *nulls);
    errs = calloc(nf, sizeof *errs);
    bufs = calloc(nf, sizeof *bufs);
    if (!rb || !lens || !nulls || !errs || !bufs) {
        status = sql_error(err, 500, "53200", "out of memory");
        goto done;
    }
    for (unsigned i = 0; i < nf; i++) {
        bool text = fs[i].type != MYSQL_TYPE_BIT;
        rb[i].buffer_type = text ? MYSQL_TYPE_STRING : MYSQL_TYPE_BIT;
        rb[i].buffer_length = 128;
        if (!(bufs[i] = malloc(rb[i].buffer_length))) {
            status = sql_error(err, 500, "53200", "out of memory");
            goto done;
        }
        rb[i].buffer = bufs[i];
        rb[i].length = &lens[i];
        rb[i].is_null = &nulls[i];
        rb[i].error = &errs[i];
    }
    if (mysql_stmt_bind_result(st, rb)) {
        status = stmt_error(err, st);
        goto done;
    }
    fields_json(out, fs, nf);
    int64_t rows = 0;
    int rc;
    while ((rc = mysql_stmt_fetch(st)) == 0 || rc == MYSQL_DATA_TRUNCATED) {
        if (o->max_rows && rows == o->max_rows) {
            status = too_many(err, o);
            break;
        }
        row_start(out, rows, o);
        for (unsigned i = 0; i < nf; i++) {
            if (!nulls[i] && lens[i] > rb[i].buffer_length) { /* longer than the buffer */
                char *bigger = realloc(bufs[i], lens[i]);
                if (!bigger) {
                    status = sql_error(err, 500, "53200", "out of memory");
                    break;
                }
                bufs[i] = bigger;
                rb[i].buffer = bigger;
                rb[i].buffer_length = lens[i];
                if (mysql_stmt_fetch_column(st, &rb[i], i, 0)) {
                    status = stmt_error(err, st);
                    break;
                }
            }
            cell_start(out, &fs[i], i, o);
            my_value(out, &fs[i], nulls[i] ? NULL : bufs[i], lens[i], o);
        }
        if (status) break;
        sb_add(out, o->array_mode ? "]" : "}", 1);
        rows++;
        if (rc == MYSQL_DATA_TRUNCATED) /* buffers grew: bind them again */
            (void)mysql_stmt_bind_result(st, rb);
        if (o->max_bytes && out->len - start > o->max_bytes) {
            status = too_big(err, o);
            break;
        }
    }
    if (!status && rc == 1) {
        unsigned e = mysql_stmt_errno(st);
        status = timed_out(e) ? timeout_error(err, e, o) : stmt_error(err, st);
    }
    if (!status) result_end(out, sql, true, rows, 0, o);
done:
    if (status) out->len = start;
    if (meta) mysql_free_result(meta);
    mysql_stmt_close(st); /* frees what is left of the result */
    for (unsigned i = 0; bufs && i < nf; i++) free(bufs[i]);
    for (size_t i = 0; dumps && i < np; i++) free(dumps[i]);
    free(bufs);
    free(errs);
    free(nulls);
    free(lens);
    free(rb);
    free(dumps);
    free(dbls);
    free(ints);
    free(pb);
    return status;
}

static int myx_run(weir_conn *c, const char *sql, const json_t *params, const sql_opts *o,
                   sbuf *out, sbuf *err)
{
    MYSQL *m = weir_mysql_conn(c);
    if (blank(sql)) { /* nothing to run, as PostgreSQL's EmptyQueryResponse */
        sb_str(out,
               "{\"fields\":[],\"rows\":[],\"command\":\"\",\"rowCount\":null,\"rowAsArray\":");
        sb_str(out, o->array_mode ? "true}" : "false}");
        return 0;
    }
    int status = set_timeout(m, o, err);
    if (status) return status;
    if (params && json_array_size(params)) return run_prepared(m, sql, params, o, out, err);
    return run_text(m, sql, o, out, err);
}

/* --- the databases ------------------------------------------------------------- */

static my_db *my_get(server *s, const cfg_db *db)
{
    struct my_dbs *a = s->mysql;
    pthread_mutex_lock(&a->mu);
    my_db *l = a->list;
    while (l && (strcmp(l->name, db->name) || strcmp(l->url, db->mysql_url))) l = l->next;
    if (!l && (l = calloc(1, sizeof *l))) {
        snprintf(l->name, sizeof l->name, "%s", db->name);
        snprintf(l->url, sizeof l->url, "%s", db->mysql_url);
        weir_options o;
        weir_options_init(&o);
        snprintf(o.name, sizeof o.name, "%s", db->name);
        o.max_size = db->pool_size > 0              ? db->pool_size
                     : s->cfg.default_pool_size > 0 ? s->cfg.default_pool_size
                                                    : 20;
        o.acquire_timeout_ms = s->cfg.query_wait_timeout > 0 ? s->cfg.query_wait_timeout : 120000;
        if (s->cfg.server_connect_timeout > 0) o.connect_timeout_ms = s->cfg.server_connect_timeout;
        if (s->cfg.server_idle_timeout > 0) o.idle_timeout_ms = s->cfg.server_idle_timeout;
        int64_t life = db->server_lifetime >= 0 ? db->server_lifetime : s->cfg.server_lifetime;
        if (life > 0) o.max_lifetime_ms = life;
        char err[256] = "";
        if (weir_mysql_pool_create(&l->pool, db->mysql_url, &o, NULL, err, sizeof err)) {
            l->pool = NULL;
            snprintf(l->err, sizeof l->err, "%.290s", err);
            srv_log(s, "ERROR", "database %s: %s", db->name, l->err);
        }
        l->next = a->list;
        a->list = l;
    }
    pthread_mutex_unlock(&a->mu);
    return l;
}

void sql_mysql_ready(server *s, const cfg_db *db, char *status, size_t len)
{
    my_db *l = s->mysql ? my_get(s, db) : NULL;
    if (!l || !l->pool) {
        snprintf(status, len, "%s", l ? l->err : "not started");
        return;
    }
    weir_conn *c;
    if (weir_checkout_timeout(l->pool, 1000, &c) == 0) {
        weir_checkin(c);
        snprintf(status, len, "ok");
        return;
    }
    char e[256] = "";
    weir_pool_last_error(l->pool, e, sizeof e);
    snprintf(status, len, "%s", e[0] ? e : "no connection within 1 s");
}

/* --- the engine ------------------------------------------------------------------ */

static int my_target(server *s, const cfg_db *db, const char *dbname, const char *user,
                     const login_creds *cr, void **t, const char **code, char *err, size_t errlen)
{
    (void)dbname;
    (void)user;
    (void)cr;
    my_db *l = my_get(s, db);
    *t = l;
    *code = "08001";
    if (l && l->pool) return 0;
    snprintf(err, errlen, "%s", l ? l->err : "out of memory");
    return 503;
}

static weir_pool *my_pool(void *t, bool write)
{
    (void)write;
    return ((my_db *)t)->pool;
}

static int my_run(void *t, weir_conn **c, bool pinned, int64_t wait_ms, const char *sql,
                  const json_t *params, const sql_opts *o, sbuf *out, sbuf *err)
{
    (void)t;
    (void)pinned;
    (void)wait_ms;
    return myx_run(*c, sql, params, o, out, err);
}

/* weir's own statements (BEGIN's, COMMIT, ROLLBACK): one or two, split at
 * ';' (never a client's text: the isolation words come from a fixed list). */
static int my_exec(weir_conn *c, const char *sql, const sql_opts *o, sbuf *err)
{
    (void)o;
    MYSQL *m = weir_mysql_conn(c);
    while (*sql) {
        size_t n = strcspn(sql, ";");
        if (mysql_real_query(m, sql, (unsigned long)n)) return my_error(err, m);
        sql += n + (sql[n] == ';');
    }
    return 0;
}

static char my_txn(weir_conn *c)
{
    unsigned st = 0;
    MYSQL *m = weir_mysql_conn(c);
    if (mariadb_get_infov(m, MARIADB_CONNECTION_SERVER_STATUS, &st)) st = m->server_status;
    return st & SERVER_STATUS_IN_TRANS ? 'T' : 'I';
}

static void my_begin(const sql_req *q, bool writer, char *out, size_t len)
{
    (void)writer;
    /* MySQL sets the isolation of the next transaction with a statement of
     * its own (my_exec runs both); DEFERRABLE has no MySQL counterpart. */
    snprintf(out, len, "%s%s%sSTART TRANSACTION%s",
             q->isolation ? "SET TRANSACTION ISOLATION LEVEL " : "",
             q->isolation ? q->isolation : "", q->isolation ? ";" : "",
             q->read_only ? " READ ONLY" : "");
}

static void my_done(void *t, weir_conn *c, const sql_req *q)
{
    (void)t;
    (void)c;
    (void)q; /* the driver's checkin resets the session */
}

static void my_end_session(void *t, weir_conn *c)
{
    (void)t;
    (void)c;
}

static bool my_lost(weir_conn *c)
{
    MYSQL *m = weir_mysql_conn(c);
    return conn_error(mysql_errno(m)) || m->status != MYSQL_STATUS_READY;
}

static wstats *my_stats(server *s, void *t)
{
    (void)s;
    (void)t;
    return NULL;
}

static void my_list(server *s, sbuf *b, bool *first)
{
    struct my_dbs *a = s->mysql;
    if (!a) return;
    pthread_mutex_lock(&a->mu);
    for (my_db *l = a->list; l; l = l->next) {
        if (!l->pool) continue;
        if (!*first) sb_add(b, ",", 1);
        *first = false;
        sql_pool_json(b, l->name, NULL, "mysql", "transaction", l->pool, NULL);
    }
    pthread_mutex_unlock(&a->mu);
}

/* Make a pool for every MySQL database the configuration names, so that a
 * bad URL shows in the log at start (connections open on first use). */
static int my_start(server *s)
{
    if (!(s->mysql = calloc(1, sizeof *s->mysql))) return -1;
    pthread_mutex_init(&s->mysql->mu, NULL);
    for (size_t i = 0; i < s->cfg.ndbs; i++)
        if (s->cfg.dbs[i].mysql_url[0]) (void)my_get(s, &s->cfg.dbs[i]);
    return 0;
}

static void my_stop(server *s)
{
    struct my_dbs *a = s->mysql;
    if (!a) return;
    while (a->list) {
        my_db *l = a->list;
        a->list = l->next;
        weir_pool_destroy(l->pool);
        free(l);
    }
    pthread_mutex_destroy(&a->mu);
    free(a);
    s->mysql = NULL;
}

static const sql_engine engine = {.kind = "mysql",
                                  .target = my_target,
                                  .pool = my_pool,
                                  .run = my_run,
                                  .exec = my_exec,
                                  .txn = my_txn,
                                  .begin = my_begin,
                                  .done = my_done,
                                  .end_session = my_end_session,
                                  .lost = my_lost,
                                  .stats = my_stats,
                                  .list = my_list,
                                  .start = my_start,
                                  .stop = my_stop};

const sql_engine *const sql_engine_mysql = &engine;
