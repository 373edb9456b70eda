/* literun.c — the HTTP door's SQL on SQLite (sqlexec.h's sql_engine_sqlite):
 * each [databases] entry "sqlite:///path" is a libweir SQLite pair (one
 * writer, N readers), opened on first use (and created, with its init
 * script, when asked). A statement runs as a cached prepared statement; it
 * starts on a reader and moves to the writer if it writes, where a lone
 * INSERT/UPDATE/DELETE joins a group commit (weir_sqlite_write) with other
 * requests' writes; the statement timeout is a progress handler. Absent
 * from a build without SQLite.
 */
#include "http/sqlexec.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/log.h"
#include "core/server.h"
#include "weir/weir_sqlite.h"

typedef struct lite_db {
    char name[CFG_NAME];
    char path[CFG_STR];
    weir_sqlite *db; /* NULL if it could not be opened (err says why) */
    char err[300];
    struct lite_db *next;
} lite_db;

struct lite_dbs {
    pthread_mutex_t mu;
    lite_db *list;
};

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

static int litx_run(weir_conn *c, const char *sql, const json_t *params, const sql_opts *o,
                    sbuf *out, sbuf *err, bool *writer_needed)
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
    lite_clock k = {.deadline_ns = sql_deadline_after(o->timeout_ms)};
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

static int litx_exec(weir_conn *c, const char *sql, sbuf *err)
{
    sqlite3 *db = weir_sqlite_db(c);
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : lite_error(err, db, sqlite3_extended_errcode(db), NULL, NULL);
}

/* --- the databases ------------------------------------------------------------- */

/* Open (or create, and run its init script) an SQLite database. */
static void lite_open(server *s, lite_db *l, const cfg_db *db)
{
    struct stat st;
    bool fresh = stat(db->sqlite_path, &st) != 0 && errno == ENOENT;
    weir_sqlite_options so;
    weir_sqlite_options_init(&so);
    so.create = db->sqlite_create;
    weir_options ro;
    weir_options_init(&ro);
    snprintf(ro.name, sizeof ro.name, "%s/reader", db->name);
    ro.max_size = db->pool_size > 0 ? db->pool_size : s->nhttp > 0 ? s->nhttp : 4;
    ro.acquire_timeout_ms = s->cfg.query_wait_timeout > 0 ? s->cfg.query_wait_timeout : 120000;
    char err[256] = "";
    if (weir_sqlite_open(&l->db, db->sqlite_path, &so, &ro, err, sizeof err)) {
        l->db = NULL;
        snprintf(l->err, sizeof l->err, "cannot open SQLite database: %.250s", err);
        srv_log(s, "ERROR", "database %s: %s", db->name, l->err);
        return;
    }
    if (fresh && db->sqlite_init[0]) {
        FILE *f = fopen(db->sqlite_init, "r");
        char *sql = NULL;
        size_t n = 0;
        if (f) {
            fseek(f, 0, SEEK_END);
            long len = ftell(f);
            fseek(f, 0, SEEK_SET);
            sql = len >= 0 ? malloc((size_t)len + 1) : NULL;
            n = sql ? fread(sql, 1, (size_t)len, f) : 0;
            fclose(f);
        }
        weir_conn *c = NULL;
        if (!sql) {
            srv_log(s, "ERROR", "database %s: cannot read init script %s: %s", db->name,
                    db->sqlite_init, strerror(errno));
        } else if (weir_sqlite_checkout_write(l->db, &c) == 0) {
            sql[n] = '\0';
            sbuf e = {0};
            if (litx_exec(c, sql, &e))
                srv_log(s, "ERROR", "database %s: init script %s: %.*s", db->name, db->sqlite_init,
                        (int)e.len, e.p);
            else
                srv_log(s, "LOG", "database %s: created %s with %s", db->name, db->sqlite_path,
                        db->sqlite_init);
            sb_free(&e);
            weir_checkin(c);
        }
        free(sql);
    }
}

/* The SQLite database name, opened on first use (a reload may add one). */
static lite_db *lite_get(server *s, const cfg_db *db)
{
    struct lite_dbs *a = s->lite;
    pthread_mutex_lock(&a->mu);
    lite_db *l = a->list;
    while (l && (strcmp(l->name, db->name) || strcmp(l->path, db->sqlite_path))) l = l->next;
    if (!l && (l = calloc(1, sizeof *l))) {
        snprintf(l->name, sizeof l->name, "%s", db->name);
        snprintf(l->path, sizeof l->path, "%s", db->sqlite_path);
        lite_open(s, l, db);
        l->next = a->list;
        a->list = l;
    }
    pthread_mutex_unlock(&a->mu);
    return l;
}

/* --- the engine ------------------------------------------------------------------ */

static int lite_target(server *s, const cfg_db *db, const char *dbname, const char *user,
                       const login_creds *cr, void **t, const char **code, char *err, size_t errlen)
{
    (void)dbname;
    (void)user;
    (void)cr;
    lite_db *l = lite_get(s, db);
    *t = l;
    *code = "58030";
    if (l && l->db) return 0;
    snprintf(err, errlen, "%s", l ? l->err : "out of memory");
    return 503;
}

static weir_pool *lite_pool(void *t, bool write)
{
    weir_sqlite *db = ((lite_db *)t)->db;
    return write ? weir_sqlite_writer(db) : weir_sqlite_reader(db);
}

/* One statement of a group commit (weir_sqlite_write), on the writer. */
typedef struct lite_gw {
    const char *sql;
    const json_t *params;
    const sql_opts *o;
    sbuf *out, *err;
    int status;
} lite_gw;

static int lite_group_fn(weir_conn *c, void *ud)
{
    lite_gw *g = ud;
    g->status = litx_run(c, g->sql, g->params, g->o, g->out, g->err, NULL);
    return g->status ? SQLITE_ERROR : SQLITE_OK;
}

/* A statement that writes rows and nothing else (INSERT, UPDATE, DELETE,
 * REPLACE, or WITH ... one of those): it can share a transaction. DDL,
 * VACUUM, PRAGMA and what could change the session keep the writer to
 * themselves. */
static bool groupable(const char *sql)
{
    const char *s = sql;
    while (isspace((unsigned char)*s) || *s == '(') s++;
    static const char *const dml[] = {"INSERT", "UPDATE", "DELETE", "REPLACE", "WITH"};
    for (size_t i = 0; i < sizeof dml / sizeof *dml; i++) {
        size_t n = strlen(dml[i]);
        if (!strncasecmp(s, dml[i], n) && !isalnum((unsigned char)s[n]) && s[n] != '_')
            return !sql_may_change_session(sql);
    }
    return false;
}

static int lite_run(void *t, weir_conn **c, bool pinned, int64_t wait_ms, const char *sql,
                    const json_t *params, const sql_opts *o, sbuf *out, sbuf *err)
{
    bool need = false;
    int st = litx_run(*c, sql, params, o, out, err, pinned ? NULL : &need);
    if (st || !need) return st;
    /* A write on a reader: move to the writer for it. */
    weir_checkin(*c);
    *c = NULL;
    if (groupable(sql)) { /* committed with the writes that come meanwhile */
        lite_gw g = {.sql = sql, .params = params, .o = o, .out = out, .err = err};
        size_t start = out->len;
        char msg[300];
        int rc = weir_sqlite_write(((lite_db *)t)->db, lite_group_fn, &g, msg, sizeof msg);
        if (rc == 0 || g.status) return g.status;
        out->len = start; /* ran, but its group did not commit */
        return sql_error(err, 503, "40001", "the write was not committed: %s", msg);
    }
    if (weir_checkout_timeout(lite_pool(t, true), wait_ms, c))
        return sql_error(err, 503, "53300", "no SQLite writer within query_wait_timeout");
    return litx_run(*c, sql, params, o, out, err, NULL);
}

static int lite_exec(weir_conn *c, const char *sql, const sql_opts *o, sbuf *err)
{
    (void)o;
    return litx_exec(c, sql, err);
}

static char lite_txn(weir_conn *c)
{
    return sqlite3_get_autocommit(weir_sqlite_db(c)) ? 'I' : 'T';
}

static void lite_begin(const sql_req *q, bool writer, char *out, size_t len)
{
    (void)q;
    snprintf(out, len, "%s", writer ? "BEGIN IMMEDIATE" : "BEGIN");
}

/* SQLite connections are not reset: one whose state a request could have
 * changed (PRAGMA, ATTACH, temp objects) is closed, and the pool opens a
 * fresh one. */
static void lite_done(void *t, weir_conn *c, const sql_req *q)
{
    (void)t;
    if (sql_req_may_change_session(q)) weir_conn_mark_broken(c);
}

static void lite_end_session(void *t, weir_conn *c)
{
    (void)t;
    (void)c;
}

static bool lite_lost(weir_conn *c)
{
    (void)c;
    return false;
}

static wstats *lite_stats(server *s, void *t)
{
    (void)s;
    (void)t;
    return NULL;
}

static void lite_list(server *s, sbuf *b, bool *first)
{
    struct lite_dbs *a = s->lite;
    if (!a) return;
    pthread_mutex_lock(&a->mu);
    for (lite_db *l = a->list; l; l = l->next) {
        if (!l->db) continue;
        if (!*first) sb_add(b, ",", 1);
        *first = false;
        int64_t groups, writes, failed;
        weir_sqlite_group_stats(l->db, &groups, &writes, &failed);
        char gc[160]; /* the writer's group commits */
        snprintf(gc, sizeof gc,
                 ",\"group_commits\":%lld,\"group_writes\":%lld,\"group_failed\":%lld",
                 (long long)groups, (long long)writes, (long long)failed);
        sql_pool_json(b, l->name, NULL, "sqlite", "writer", weir_sqlite_writer(l->db), gc);
        sb_add(b, ",", 1);
        sql_pool_json(b, l->name, NULL, "sqlite", "reader", weir_sqlite_reader(l->db), NULL);
    }
    pthread_mutex_unlock(&a->mu);
}

/* Open every SQLite database the configuration names, so that a bad path
 * shows in the log at start, not at the first request. */
static int lite_start(server *s)
{
    if (!(s->lite = calloc(1, sizeof *s->lite))) return -1;
    pthread_mutex_init(&s->lite->mu, NULL);
    for (size_t i = 0; i < s->cfg.ndbs; i++)
        if (s->cfg.dbs[i].sqlite_path[0]) (void)lite_get(s, &s->cfg.dbs[i]);
    return 0;
}

static void lite_stop(server *s)
{
    struct lite_dbs *a = s->lite;
    if (!a) return;
    while (a->list) {
        lite_db *l = a->list;
        a->list = l->next;
        weir_sqlite_close(l->db);
        free(l);
    }
    pthread_mutex_destroy(&a->mu);
    free(a);
    s->lite = NULL;
}

static const sql_engine engine = {.kind = "sqlite",
                                  .target = lite_target,
                                  .pool = lite_pool,
                                  .run = lite_run,
                                  .exec = lite_exec,
                                  .txn = lite_txn,
                                  .begin = lite_begin,
                                  .done = lite_done,
                                  .end_session = lite_end_session,
                                  .lost = lite_lost,
                                  .stats = lite_stats,
                                  .list = lite_list,
                                  .start = lite_start,
                                  .stop = lite_stop};

const sql_engine *const sql_engine_sqlite = &engine;
