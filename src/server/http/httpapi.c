/* httpapi.c — SQL over HTTP: /v1/sql, /v1/sessions, /v1/pools (docs/HTTP.md).
 *
 * A request authenticates (HTTP Basic against auth_file or auth_query, or a
 * bearer token from [http_tokens]), names a database, and runs on a pooled
 * connection: for PostgreSQL one of the same pools the PostgreSQL door uses
 * (same limits, same figures), for SQLite the database's libweir reader and
 * writer pools. A session pins one connection across requests until it is
 * deleted or sits idle past http_session_idle_timeout (then it is rolled
 * back and released by the reaper thread).
 *
 * Requests run on the HTTP threads (httpd.c), which may wait on a database;
 * the configuration is read under cfg_rw only long enough to copy what a
 * request needs.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "core/auth.h"
#include "core/authguard.h"
#include "core/hba.h"
#include "http/httpd.h"
#include "core/server.h"
#include "http/sqlexec.h"
#include "http/httpapi.h"
#include "core/log.h"
#include "core/pools.h"
#include "http/promcompat.h"
#include "core/stats.h"
#include "pg/backend.h"

typedef struct hsession {
    char id[33];
    char user[CFG_NAME], db[CFG_NAME];
    const sql_engine *eng;
    void *target; /* the engine's database (a pool, an SQLite pair) */
    weir_conn *conn;
    int64_t created_wall_ms, last_ms; /* last_ms: weir_now_ms() of the last use */
    int64_t idle_timeout_ms;
    bool busy;
    struct hsession *next;
} hsession;

typedef struct huser {
    char name[CFG_NAME];
    int inflight, sessions;
    struct huser *next;
} huser;

#define NCRED    256
#define CRED_TTL 10000 /* ms a verified password is remembered */

typedef struct cred {
    char user[CFG_NAME];
    uint8_t digest[32]; /* sha256(user, 0, password) */
    int64_t until_ms;
} cred;

struct http_api {
    server *s;
    pthread_mutex_t mu; /* everything below */
    hsession *sessions;
    huser *users;
    cred creds[NCRED];
    pthread_t reaper;
    pthread_cond_t cv;
    bool stop, reaper_on;
    _Atomic uint64_t by_class[6]; /* answers by status class: [2] = 2xx ... */
    _Atomic uint64_t sessions_opened, sessions_expired;
    struct schema_cache *schemas; /* GET /v1/databases/{db}/schema, per database and user */
};

typedef struct schema_cache {
    char db[CFG_NAME], user[CFG_NAME];
    char *json; /* the schema document */
    int64_t at_ms;
    struct schema_cache *next;
} schema_cache;

/* What one request needs, copied out of the configuration. */
typedef struct rq_ctx {
    server *s;
    struct http_api *a;
    http_req *rq;
    http_resp *rs;
    char user[CFG_NAME];
    char *password; /* owned: from HTTP Basic (as long as the request head allows) */
    bool have_password, token;
    bool proved;   /* the password was checked against a secret: it may log in to the server */
    char *qsecret; /* owned: trust with auth_query: the secret the lookup found (md5 or plain) */
    bool admin;    /* an admin_users member: may list and end anyone's sessions */
    char dbname[CFG_NAME];
    const sql_engine *eng; /* the kind of the database (pick_db) */
    void *target;          /* and the database itself (open_target) */
    huser *u;
    sql_opts o;
    int64_t wait_ms, idle_ms;
    int64_t connect_ms, login_retry_ms; /* server_connect_timeout, server_login_retry */
    int64_t retry_after_s;              /* a 503's Retry-After; 0: 1 s */
    int max_inflight, max_sessions;
} rq_ctx;

/* --- answers --------------------------------------------------------------------- */

static void answer_raw(http_resp *rs, int status, const sbuf *obj)
{
    rs->status = status;
    rs->body.len = 0;
    sb_add(&rs->body, obj->p, obj->len);
    sb_add(&rs->body, "\n", 1);
}

static void fail(rq_ctx *x, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail(rq_ctx *x, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sbuf e = {0};
    sql_error(&e, status, code, "%s", msg);
    answer_raw(x->rs, status, &e);
    sb_free(&e);
    if (status == 401)
        sb_str(&x->rs->headers, "WWW-Authenticate: Basic realm=\"weir\", charset=\"UTF-8\"\r\n");
    if (status == 503) /* when to try again: a second, or the next login attempt */
        sb_printf(&x->rs->headers, "Retry-After: %lld\r\n",
                  (long long)(x->retry_after_s > 0 ? x->retry_after_s : 1));
}

static void iso_time(char *out, size_t len, int64_t wall_ms)
{
    time_t t = (time_t)(wall_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, len - n, ".%03dZ", (int)(wall_ms % 1000));
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- users: requests in flight and sessions ---------------------------------------- */

static huser *user_get(struct http_api *a, const char *name) /* under a->mu */
{
    for (huser *u = a->users; u; u = u->next)
        if (!strcmp(u->name, name)) return u;
    huser *u = calloc(1, sizeof *u);
    if (!u) return NULL;
    snprintf(u->name, sizeof u->name, "%s", name);
    u->next = a->users;
    a->users = u;
    return u;
}

/* --- authentication ------------------------------------------------------------------ */

/* sha256(user, 0, password, 0, ctx): ctx is what decided the answer (the
 * secret, or the database whose auth_query gave it), so a password checked
 * against one is never taken for another. */
static void cred_digest(const char *user, const char *password, const char *ctx, uint8_t out[32])
{
    size_t un = strlen(user), pn = strlen(password), cn = strlen(ctx);
    char *b = malloc(un + pn + cn + 2);
    if (!b) {
        memset(out, 0, 32);
        return;
    }
    memcpy(b, user, un);
    b[un] = '\0';
    memcpy(b + un + 1, password, pn);
    b[un + 1 + pn] = '\0';
    memcpy(b + un + pn + 2, ctx, cn);
    auth_sha256(b, un + pn + cn + 2, out);
    free(b);
}

static unsigned cred_slot(const char *user)
{
    unsigned h = 2166136261u;
    for (const char *p = user; *p; p++) h = (h ^ (unsigned char)*p) * 16777619u;
    return h % NCRED;
}

static bool cred_known(struct http_api *a, const char *user, const uint8_t d[32])
{
    pthread_mutex_lock(&a->mu);
    cred *c = &a->creds[cred_slot(user)];
    bool ok = !strcmp(c->user, user) && !memcmp(c->digest, d, 32) && c->until_ms > weir_now_ms();
    pthread_mutex_unlock(&a->mu);
    return ok;
}

static void cred_remember(struct http_api *a, const char *user, const uint8_t d[32])
{
    pthread_mutex_lock(&a->mu);
    cred *c = &a->creds[cred_slot(user)];
    snprintf(c->user, sizeof c->user, "%s", user);
    memcpy(c->digest, d, 32);
    c->until_ms = weir_now_ms() + CRED_TTL;
    pthread_mutex_unlock(&a->mu);
}

static bool url_decode(const char *p, size_t n, char *out, size_t cap);

/* Neon's driver (@neondatabase/serverless) sends its connection string,
 * postgresql://user:password@host/db, in Neon-Connection-String: the
 * database is taken from it, and, without an Authorization header, the user
 * and password too (checked as HTTP Basic's are). The host is the caller's
 * idea of where the database is: weir is. false: 401 or 400 sent. */
static bool neon_conn_string(rq_ctx *x, const char *cs, bool creds)
{
    const char *p = NULL;
    if (!strncmp(cs, "postgresql://", 13))
        p = cs + 13;
    else if (!strncmp(cs, "postgres://", 11))
        p = cs + 11;
    const char *end = p ? p + strcspn(p, "/?#") : NULL;
    const char *at = NULL;
    for (const char *q = p; q && q < end; q++)
        if (*q == '@') at = q;
    if (!p || (creds && !at)) {
        fail(x, 401, "28000",
             "Neon-Connection-String must be postgresql://user:password@host/database");
        return false;
    }
    if (*end == '/') {
        const char *db = end + 1;
        size_t n = strcspn(db, "?#");
        if (n && !url_decode(db, n, x->dbname, sizeof x->dbname)) {
            fail(x, 400, "3D000", "Neon-Connection-String: bad database name");
            return false;
        }
    }
    if (!creds) return true;
    const char *colon = memchr(p, ':', (size_t)(at - p));
    char pw[CFG_STR];
    if (!colon || !url_decode(p, (size_t)(colon - p), x->user, sizeof x->user) || !x->user[0] ||
        !url_decode(colon + 1, (size_t)(at - colon - 1), pw, sizeof pw)) {
        fail(x, 401, "28000", "Neon-Connection-String: malformed user or password");
        return false;
    }
    x->password = strdup(pw);
    explicit_bzero(pw, sizeof pw);
    if (!x->password) {
        fail(x, 500, "53200", "out of memory");
        return false;
    }
    x->have_password = true;
    return true;
}

/* The user's name (and password) from the Authorization header, or from
 * Neon-Connection-String without one; false: 401 sent. */
static bool who(rq_ctx *x)
{
    const char *h = http_header(x->rq, "Authorization");
    const char *neon = http_header(x->rq, "Neon-Connection-String");
    if (neon && !neon_conn_string(x, neon, !h)) return false;
    if (!h && neon) return true;
    if (!h) {
        fail(x, 401, "28000",
             "authentication required: HTTP Basic (user and password) or Authorization: Bearer");
        return false;
    }
    if (!strncasecmp(h, "Basic ", 6)) {
        const char *b = h + 6;
        while (*b == ' ') b++;
        size_t bl = strlen(b);
        uint8_t *dec = malloc(bl / 4 * 3 + 4);
        int n = dec ? auth_b64_decode(b, bl, dec, bl / 4 * 3 + 3) : -1;
        char *colon = n > 0 ? memchr(dec, ':', (size_t)n) : NULL;
        if (!colon || colon == (char *)dec || colon - (char *)dec >= CFG_NAME) {
            free(dec);
            fail(x, 401, "28000", "malformed HTTP Basic credentials");
            return false;
        }
        dec[n] = '\0';
        *colon = '\0';
        snprintf(x->user, sizeof x->user, "%s", (char *)dec);
        size_t pl = (size_t)n - (size_t)(colon + 1 - (char *)dec);
        x->password = malloc(pl + 1);
        if (x->password) {
            memcpy(x->password, colon + 1, pl + 1);
        }
        explicit_bzero(dec, (size_t)n);
        free(dec);
        if (!x->password) {
            fail(x, 500, "53200", "out of memory");
            return false;
        }
        x->have_password = true;
        return true;
    }
    if (!strncasecmp(h, "Bearer ", 7)) {
        const char *t = h + 7;
        while (*t == ' ') t++;
        pthread_rwlock_rdlock(&x->s->cfg_rw);
        const cfg_secret *e = cfg_find_token(&x->s->cfg, t);
        if (e) snprintf(x->user, sizeof x->user, "%s", e->user);
        pthread_rwlock_unlock(&x->s->cfg_rw);
        if (!e) {
            fail(x, 401, "28000", "invalid bearer token");
            return false;
        }
        x->token = true;
        return true;
    }
    fail(x, 401, "28000", "unsupported Authorization scheme: use Basic or Bearer");
    return false;
}

/* auth_query for a user not in auth_file: the secret, or "" (no such user). */
static int secret_by_query(rq_ctx *x, const char *auth_user, const char *query, char **secret,
                           bool *named, char *why, size_t whylen)
{
    server *s = x->s;
    char err[300];
    pthread_rwlock_rdlock(&s->cfg_rw);
    const cfg_db *db = cfg_find_db(&s->cfg, x->dbname);
    spool *ap =
        db ? pool_auth_query(s, db, x->dbname, x->user, auth_user, NULL, err, sizeof err) : NULL;
    pthread_rwlock_unlock(&s->cfg_rw);
    if (!ap) return snprintf(why, whylen, "auth_query: %.200s", db ? err : "no such database"), -1;
    weir_conn *c = NULL;
    int rc = weir_checkout_timeout(ap->pool, x->wait_ms, &c);
    if (rc) {
        char e[256];
        weir_pool_last_error(ap->pool, e, sizeof e);
        pool_unpin(ap);
        return snprintf(why, whylen, "auth_query: %s", e[0] ? e : weir_strerror(rc)), -1;
    }
    backend *be = weir_conn_handle(c);
    rc = pgx_lookup(be, query, x->user, x->wait_ms, secret, named, why, whylen);
    weir_checkin(c);
    pool_unpin(ap);
    return rc;
}

/* x's password against the user's secret from auth_file (from_file), or
 * from auth_query as auth_user (then *secret is set here); false: 401, 429
 * or 503 sent. */
static bool check_password(rq_ctx *x, bool from_file, char *secret, const char *auth_user,
                           const char *query)
{
    server *s = x->s;
    int64_t retry;
    if (!authguard_allow(s->guard, x->user, x->rq->peer, weir_now_ms(), &retry)) {
        fail(x, 429, "28000",
             "too many failed logins for user \"%s\" or from this address: try again in %lld s",
             x->user, (long long)(retry + 999) / 1000);
        sb_printf(&x->rs->headers, "Retry-After: %lld\r\n", (long long)(retry + 999) / 1000);
        return false;
    }
    /* What decided the answer: the secret itself (by its digest), or the
     * database whose auth_query gives it. */
    char ctx[CFG_NAME * 2 + 80];
    if (from_file || !auth_user[0]) {
        uint8_t h[32];
        const char *sx = secret ? secret : "";
        auth_sha256(sx, strlen(sx), h);
        int o = snprintf(ctx, sizeof ctx, "file:");
        for (int i = 0; i < 32; i++) o += snprintf(ctx + o, sizeof ctx - (size_t)o, "%02x", h[i]);
    } else {
        snprintf(ctx, sizeof ctx, "query:%s/%s", x->dbname, auth_user);
    }
    uint8_t d[32];
    cred_digest(x->user, x->password, ctx, d);
    if (cred_known(x->a, x->user, d)) return x->proved = true;
    char *looked = NULL;
    if (!from_file && auth_user[0]) {
        char why[300];
        bool named;
        if (secret_by_query(x, auth_user, query, &looked, &named, why, sizeof why)) {
            /* not yet authenticated: PgBouncer's words; the log has why */
            srv_log(x->s, "WARNING", "HTTP %s/%s %s", x->dbname, x->user, why);
            fail(x, 503, "08P01", "bouncer config error");
            return false;
        }
        secret = looked;
    }
    /* An unknown user (no secret) costs what a SCRAM check costs. */
    bool ok = auth_password_ok(x->user, x->password, secret);
    if (looked) {
        explicit_bzero(looked, strlen(looked));
        free(looked);
    }
    if (ok) {
        x->proved = true;
        cred_remember(x->a, x->user, d);
        authguard_passed(s->guard, x->user, x->rq->peer);
        return true;
    }
    authguard_failed(s->guard, x->user, x->rq->peer, weir_now_ms());
    fail(x, 401, "28P01", "password authentication failed for user \"%s\"", x->user);
    return false;
}

/* Check the password (or token); false: 401 (or 503) sent. */
static bool authenticate(rq_ctx *x)
{
    server *s = x->s;
    if (x->token) return true;
    char *secret = NULL, auth_user[CFG_NAME] = "", query[CFG_STR] = "";
    pthread_rwlock_rdlock(&s->cfg_rw);
    const cfg *k = &s->cfg;
    int type = k->auth_type;
    const cfg_secret *sec = cfg_find_secret(k, x->user);
    bool from_file = sec != NULL, oom = sec && !(secret = strdup(sec->secret));
    bool k_auth_file = k->auth_file[0] != '\0';
    const cfg_db *db = cfg_find_db(k, x->dbname);
    const char *au = db && db->auth_user[0] ? db->auth_user : k->auth_user;
    hba_rule_info rule = {0};
    bool hba_found = false;
    if (type == AUTH_HBA) { /* the HTTP door is a host (or hostssl) connection */
        hba_login q = {.tls = x->rq->tls, .db = x->dbname, .user = x->user};
        unsigned char a6[16];
        if (inet_pton(AF_INET, x->rq->peer, q.addr) == 1) {
            q.family = AF_INET;
        } else if (inet_pton(AF_INET6, x->rq->peer, a6) == 1) {
            static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
            bool m = !memcmp(a6, v4mapped, 12);
            q.family = m ? AF_INET : AF_INET6;
            memcpy(q.addr, m ? a6 + 12 : a6, m ? 4 : 16);
        }
        hba_found = hba_match(k->hba, &q, &rule);
    }
    if (!sec && au[0] && x->eng == &sql_engine_pg) {
        snprintf(auth_user, sizeof auth_user, "%s", au);
        snprintf(query, sizeof query, "%s", db->auth_query[0] ? db->auth_query : k->auth_query);
    }
    pthread_rwlock_unlock(&s->cfg_rw);
    bool ok = false;
    const char *enc = x->rq->tls ? "SSL encryption" : "no encryption";
    static const int by_rule[] = {
        [HBA_TRUST] = AUTH_TRUST, [HBA_MD5] = AUTH_MD5,   [HBA_PASSWORD] = AUTH_PLAIN,
        [HBA_SCRAM] = AUTH_SCRAM, [HBA_CERT] = AUTH_CERT, [HBA_PEER] = AUTH_PEER};
    bool answered = false;
    if (type == AUTH_HBA) {
        answered = true;
        if (!hba_found)
            fail(x, 403, "28000",
                 "no pg_hba.conf entry for host \"%s\", user \"%s\", database \"%s\", %s",
                 x->rq->peer, x->user, x->dbname, enc);
        else if (rule.method == HBA_REJECT)
            fail(x, 403, "28000",
                 "pg_hba.conf rejects connection for host \"%s\", user \"%s\", database "
                 "\"%s\", %s",
                 x->rq->peer, x->user, x->dbname, enc);
        else if (rule.method == HBA_UNSUPPORTED)
            fail(x, 403, "28000",
                 "auth_hba_file line %d: authentication method %s is not supported by weir",
                 rule.line, rule.method_name);
        else if (rule.clientcert)
            fail(x, 403, "28000",
                 "auth_hba_file line %d wants a client certificate: the HTTP door takes none",
                 rule.line);
        else {
            type = by_rule[rule.method];
            answered = false;
        }
    }
    if (answered) {
        /* refused by the rules */
    } else if (oom) {
        fail(x, 500, "53200", "out of memory");
    } else if (type == AUTH_ANY || (type == AUTH_TRUST && (from_file || !k_auth_file))) {
        ok = true;
    } else if (type == AUTH_TRUST) {
        /* as the PostgreSQL door: absent from auth_file, the user must be
         * found by auth_query (when there is an auth_user) */
        char why[300];
        char *found = NULL;
        bool named = false;
        ok = auth_user[0] &&
             !secret_by_query(x, auth_user, query, &found, &named, why, sizeof why) && named;
        x->qsecret = found; /* what the server login may use, as the PostgreSQL door's */
        if (!ok)
            fail(x, 401, "28000", "\"trust\" authentication failed: no such user: %s", x->user);
    } else if (type == AUTH_CERT || type == AUTH_PEER) {
        fail(x, 401, "28000",
             "authentication method %s: the HTTP door takes bearer tokens only "
             "([http_tokens]) for such users",
             cfg_auth_type_name(type));
    } else {
        ok = check_password(x, from_file, secret, auth_user, query);
    }
    if (secret) {
        explicit_bzero(secret, strlen(secret));
        free(secret);
    }
    return ok;
}

/* --- which database ------------------------------------------------------------------ */

static int hexval(int c)
{
    return isdigit(c) ? c - '0' : isxdigit(c) ? (tolower(c) - 'a' + 10) : -1;
}

/* Percent-decode [p, p+n) into out; false if it does not fit or is malformed. */
static bool url_decode(const char *p, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)p[i];
        if (ch == '%') {
            if (i + 2 > n - 1) return false;
            int h = hexval((unsigned char)p[i + 1]), l = hexval((unsigned char)p[i + 2]);
            if (h < 0 || l < 0) return false;
            ch = h * 16 + l;
            i += 2;
        }
        if (o + 1 >= cap || ch == 0) return false;
        out[o++] = (char)ch;
    }
    out[o] = '\0';
    return true;
}

/* x->dbname: from the path (given), the Weir-Database header, a database
 * named like the user, or the only one configured. Then the pool or the
 * SQLite database, and the request's limits. false: an error was sent. */
static bool pick_db(rq_ctx *x, const char *from_path)
{
    server *s = x->s;
    const char *h = http_header(x->rq, "Weir-Database");
    if (from_path)
        snprintf(x->dbname, sizeof x->dbname, "%s", from_path);
    else if (h)
        snprintf(x->dbname, sizeof x->dbname, "%s", h);
    pthread_rwlock_rdlock(&s->cfg_rw);
    const cfg *k = &s->cfg;
    if (!x->dbname[0]) {
        if (cfg_find_db_exact(k, x->user)) {
            snprintf(x->dbname, sizeof x->dbname, "%s", x->user);
        } else {
            const cfg_db *only = NULL;
            size_t n = 0;
            for (size_t i = 0; i < k->ndbs; i++)
                if (strcmp(k->dbs[i].name, "*")) only = &k->dbs[i], n++;
            if (n == 1) snprintf(x->dbname, sizeof x->dbname, "%s", only->name);
        }
    }
    const cfg_db *db = x->dbname[0] ? cfg_find_db(k, x->dbname) : NULL;
    x->eng = !db                  ? NULL
             : db->sqlite_path[0] ? sql_engine_sqlite
             : db->mysql_url[0]   ? sql_engine_mysql
                                  : &sql_engine_pg;
    const char *kind = db && db->mysql_url[0] ? "MySQL" : "SQLite"; /* when x->eng is NULL */
    x->o.max_rows = k->http_max_rows;
    x->o.max_bytes = (size_t)k->http_max_response;
    x->o.timeout_ms = k->http_statement_timeout;
    x->o.cancel_grace_ms = k->cancel_wait_timeout > 0 ? k->cancel_wait_timeout : 5000;
    x->wait_ms = k->query_wait_timeout > 0 ? k->query_wait_timeout : INT64_C(1) << 40;
    x->connect_ms = k->server_connect_timeout > 0 ? k->server_connect_timeout : 15000;
    x->login_retry_ms = k->server_login_retry > 0 ? k->server_login_retry : 1000;
    x->idle_ms = k->http_session_idle_timeout;
    x->max_inflight = k->http_max_inflight_per_user;
    x->max_sessions = k->http_max_sessions_per_user;
    x->admin = cfg_list_has(k->admin_users, x->user);
    pthread_rwlock_unlock(&s->cfg_rw);
    if (!x->dbname[0]) {
        fail(x, 400, "3D000",
             "which database? POST /v1/databases/{name}/sql, or send a Weir-Database header");
        return false;
    }
    if (!db) {
        fail(x, 404, "3D000", "no such database: %s", x->dbname);
        return false;
    }
    if (!x->eng) {
        fail(x, 503, "0A000", "database %s is %s database, and this weir was built without %s",
             x->dbname, kind[0] == 'S' ? "an SQLite" : "a MySQL", kind);
        return false;
    }
    return true;
}

/* After authentication: the database, from its engine. */
static bool open_target(rq_ctx *x)
{
    server *s = x->s;
    if (db_disabled(s, x->dbname)) {
        fail(x, 503, "57P03", "database \"%s\" is disabled", x->dbname);
        return false;
    }
    char err[300] = "";
    const char *code = "08P01";
    int st = 404;
    pthread_rwlock_rdlock(&s->cfg_rw);
    const cfg_db *db = cfg_find_db(&s->cfg, x->dbname);
    if (db) {
        /* Only a password that was checked lends itself to the server login
         * (under trust the client's is just what it typed). */
        login_creds cr = {.secret = x->proved ? x->password : x->qsecret};
        st = x->eng->target(s, db, x->dbname, x->user, &cr, &x->target, &code, err, sizeof err);
    }
    pthread_rwlock_unlock(&s->cfg_rw);
    if (st == 404) {
        fail(x, 404, "3D000", "no such database: %s", x->dbname);
        return false;
    }
    if (st) {
        fail(x, st, code, "%s", err);
        return false;
    }
    return true;
}

static bool pool_down(weir_pool *p)
{
    weir_pool_stats st;
    return weir_pool_stats_get(p, &st) == 0 && pool_stats_down(&st);
}

/* Check out a connection; false: 503 sent. A database that is down is
 * answered within a second (its pool known down: the wait only lets a login
 * attempt that is due now serve the request), or once the first connect
 * attempt has failed (within server_connect_timeout), with its error and a
 * Retry-After of the next login attempt: an HTTP caller is not held for
 * query_wait_timeout by a server that is not there. A busy pool is waited
 * for as before. */
static bool take(rq_ctx *x, weir_pool *p, weir_conn **c)
{
    int64_t first = pool_down(p) ? 1000 : x->connect_ms + 1000;
    if (first > x->wait_ms) first = x->wait_ms;
    int rc = weir_checkout_timeout(p, first, c);
    if (rc == WEIR_ETIMEDOUT && x->wait_ms > first)
        rc = pool_down(p) ? WEIR_ECONNECT : weir_checkout_timeout(p, x->wait_ms - first, c);
    if (!rc) return true;
    char e[256] = "";
    weir_pool_last_error(p, e, sizeof e);
    if (rc == WEIR_ECONNECT) x->retry_after_s = (x->login_retry_ms + 999) / 1000;
    if (rc == WEIR_ETIMEDOUT)
        fail(x, 503, "53300", "no connection to %s within query_wait_timeout (%lld ms)%s%s",
             x->dbname, (long long)x->wait_ms, e[0] ? ": " : "", e);
    else
        fail(x, 503, "08006", "cannot connect to %s: %s", x->dbname, e[0] ? e : weir_strerror(rc));
    return false;
}

/* --- the request body ---------------------------------------------------------------- */

/* The body decoded (sqlreq.c); false: 400 sent. */
static bool read_body(rq_ctx *x, sql_req *q)
{
    sql_headers h = {.name = x->rq->hname, .value = x->rq->hval, .n = x->rq->nh};
    sbuf err = {0};
    int st = sql_req_decode(q, &x->o, x->rq->body, x->rq->body_len, &h, &err);
    if (st) answer_raw(x->rs, st, &err);
    sb_free(&err);
    return st == 0;
}

/* --- running ------------------------------------------------------------------------- */

typedef struct runner {
    rq_ctx *x;
    weir_conn *conn; /* from the engine's pool; it may move it (SQLite: to the writer) */
    bool writer;     /* conn is the writer (SQLite) */
    bool pinned;     /* a batch or session: stay on conn */
} runner;

/* One statement; result appended to out. 0 or an HTTP status (err set). */
static int run_one(runner *r, const char *sql, const json_t *params, sbuf *out, sbuf *err)
{
    rq_ctx *x = r->x;
    weir_conn *before = r->conn;
    int st = x->eng->run(x->target, &r->conn, r->pinned, x->wait_ms, sql, params, &x->o, out, err);
    if (r->conn != before) r->writer = true;
    return st;
}

/* {"queries": [...]}: one transaction (unless a session's is already open). */
static int run_batch(runner *r, const sql_req *q, sbuf *out, sbuf *err)
{
    rq_ctx *x = r->x;
    size_t n = json_array_size(q->queries);
    bool own = x->eng->txn(r->conn) == 'I';
    if (own) {
        char begin[128];
        x->eng->begin(q, r->writer, begin, sizeof begin);
        int st = x->eng->exec(r->conn, begin, &x->o, err);
        if (st) return st;
    }
    sb_str(out, "{\"results\":[");
    for (size_t i = 0; i < n; i++) {
        const char *sql;
        const json_t *params;
        sql_req_statement(q, i, &sql, &params);
        if (i) sb_add(out, ",", 1);
        int st = run_one(r, sql, params, out, err);
        if (st) {
            if (err->len && err->p[err->len - 1] == '}') { /* which statement failed */
                err->len--;
                sb_printf(err, ",\"batchIndex\":%zu}", i);
            }
            if (own && r->conn) {
                sbuf e2 = {0};
                (void)x->eng->exec(r->conn, "ROLLBACK", &x->o, &e2);
                sb_free(&e2);
            }
            return st;
        }
    }
    if (own) {
        int st = x->eng->exec(r->conn, "COMMIT", &x->o, err);
        if (st) return st;
    }
    sb_str(out, "]}");
    return 0;
}

/* The body's statement or batch on r's connection. */
static int run_body(runner *r, const sql_req *q, sbuf *out, sbuf *err)
{
    return q->queries ? run_batch(r, q, out, err) : run_one(r, q->sql, q->params, out, err);
}

static void count(rq_ctx *x, int64_t us, bool xact)
{
    wstats *ws = x->eng->stats(x->s, x->target);
    if (!ws) return;
    st_time_shared(ws, ST_QUERY, us);
    if (xact) st_time_shared(ws, ST_XACT, us);
}

/* --- sessions ------------------------------------------------------------------------ */

/* Roll back and release a session that is out of the table. */
static void session_end(server *s, hsession *h, const char *why)
{
    bool rolled = false;
    if (h->conn) {
        sbuf e = {0};
        if (h->eng->txn(h->conn) != 'I' && !h->eng->lost(h->conn)) {
            rolled = true;
            sql_opts o = {.timeout_ms = 5000};
            (void)h->eng->exec(h->conn, "ROLLBACK", &o, &e);
        }
        h->eng->end_session(h->target, h->conn);
        sb_free(&e);
        weir_checkin(h->conn);
    }
    if (h->eng->hold) h->eng->hold(h->target, -1);
    srv_log(s, "LOG", "HTTP session %.8s… (%s/%s) %s%s", h->id, h->db, h->user, why,
            rolled ? ", open transaction rolled back" : "");
    pthread_mutex_lock(&s->api->mu);
    huser *u = user_get(s->api, h->user);
    if (u) u->sessions--;
    pthread_mutex_unlock(&s->api->mu);
    free(h);
}

/* Session id, not busy: marked busy for a request (its owner only: nobody
 * else runs SQL in it), or taken out of the table to end it (its owner or an
 * admin). Anyone else gets the same 404 as for an id that does not exist.
 * NULL: 404 or 409 sent. */
static hsession *session_claim(rq_ctx *x, const char *id, bool remove)
{
    struct http_api *a = x->a;
    pthread_mutex_lock(&a->mu);
    hsession **pp = &a->sessions;
    while (*pp && strcmp((*pp)->id, id)) pp = &(*pp)->next;
    hsession *h = *pp;
    if (h && strcmp(h->user, x->user) && !(remove && x->admin)) h = NULL;
    bool busy = h && h->busy;
    if (h && !busy) {
        if (remove)
            *pp = h->next;
        else
            h->busy = true;
    }
    pthread_mutex_unlock(&a->mu);
    if (!h) {
        fail(x, 404, "08003", "no such session: %s (it may have expired)", id);
        return NULL;
    }
    if (busy) {
        fail(x, 409, "55006", "session %s is running another request", id);
        return NULL;
    }
    return h;
}

/* Give a session back after a request; one whose connection broke ends. */
static void session_give(rq_ctx *x, hsession *h)
{
    struct http_api *a = x->a;
    bool broken = h->eng->lost(h->conn);
    pthread_mutex_lock(&a->mu);
    h->busy = false;
    h->last_ms = weir_now_ms();
    if (broken) {
        hsession **pp = &a->sessions;
        while (*pp && *pp != h) pp = &(*pp)->next;
        if (*pp) *pp = h->next;
    }
    pthread_mutex_unlock(&a->mu);
    if (broken) session_end(x->s, h, "ended: its server connection was lost");
}

static void session_json(sbuf *b, const hsession *h, int64_t now_ms, int64_t now_wall)
{
    char created[40], expires[40];
    iso_time(created, sizeof created, h->created_wall_ms);
    int64_t left = h->idle_timeout_ms > 0 ? h->last_ms + h->idle_timeout_ms - now_ms : 0;
    iso_time(expires, sizeof expires, now_wall + (left > 0 ? left : 0));
    sb_str(b, "{\"id\":");
    sb_jstr(b, h->id);
    sb_str(b, ",\"database\":");
    sb_jstr(b, h->db);
    sb_str(b, ",\"user\":");
    sb_jstr(b, h->user);
    sb_printf(b, ",\"created_at\":\"%s\",\"expires_at\":", created);
    if (h->idle_timeout_ms > 0)
        sb_printf(b, "\"%s\"", expires);
    else
        sb_str(b, "null");
    sb_printf(b, ",\"idle_timeout_ms\":%lld,\"idle_ms\":%lld,\"busy\":%s",
              (long long)h->idle_timeout_ms, (long long)(now_ms - h->last_ms),
              h->busy ? "true" : "false");
    if (!h->busy && h->conn) {
        char txn = h->eng->txn(h->conn);
        const char *t = txn == 'I'   ? "idle"
                        : txn == 'T' ? "in transaction"
                                     : "in failed transaction";
        sb_printf(b, ",\"state\":\"%s\"", t);
    }
    sb_str(b, "}");
}

static void session_create(rq_ctx *x)
{
    struct http_api *a = x->a;
    pthread_mutex_lock(&a->mu);
    bool full = x->max_sessions > 0 && x->u->sessions >= x->max_sessions;
    if (!full) x->u->sessions++;
    pthread_mutex_unlock(&a->mu);
    if (full) {
        fail(x, 429, "53300", "user \"%s\" has %d sessions open (http_max_sessions_per_user)",
             x->user, x->max_sessions);
        return;
    }
    hsession *h = calloc(1, sizeof *h);
    uint8_t rnd[16];
    weir_conn *c = NULL;
    if (!h || auth_random(rnd, sizeof rnd) || !take(x, x->eng->pool(x->target, true), &c)) {
        if (!h)
            fail(x, 500, "53200", "out of memory");
        else if (x->rs->status == 200)
            fail(x, 500, "58000", "no random bytes");
        free(h);
        pthread_mutex_lock(&a->mu);
        x->u->sessions--;
        pthread_mutex_unlock(&a->mu);
        return;
    }
    for (int i = 0; i < 16; i++) snprintf(h->id + 2 * i, 3, "%02x", rnd[i]);
    snprintf(h->user, sizeof h->user, "%s", x->user);
    snprintf(h->db, sizeof h->db, "%s", x->dbname);
    h->eng = x->eng;
    h->target = x->target;
    if (h->eng->hold) h->eng->hold(h->target, 1); /* the session's own hold */
    h->conn = c;
    h->created_wall_ms = wall_ms();
    h->last_ms = weir_now_ms();
    h->idle_timeout_ms = x->idle_ms;
    pthread_mutex_lock(&a->mu);
    h->next = a->sessions;
    a->sessions = h;
    x->rs->status = 201;
    session_json(&x->rs->body, h, weir_now_ms(), wall_ms());
    pthread_mutex_unlock(&a->mu);
    sb_add(&x->rs->body, "\n", 1);
    a->sessions_opened++;
}

static void session_delete(rq_ctx *x, const char *id)
{
    hsession *h = session_claim(x, id, true);
    if (!h) return;
    bool open = h->eng->txn(h->conn) != 'I';
    x->rs->status = 200;
    sb_printf(&x->rs->body, "{\"id\":\"%s\",\"ended\":true,\"rolledBack\":%s}\n", h->id,
              open ? "true" : "false");
    session_end(x->s, h, "deleted");
}

static void session_list(rq_ctx *x)
{
    struct http_api *a = x->a;
    int64_t now = weir_now_ms(), wall = wall_ms();
    sbuf *b = &x->rs->body;
    sb_str(b, "{\"sessions\":[");
    pthread_mutex_lock(&a->mu);
    bool first = true;
    for (hsession *h = a->sessions; h; h = h->next) {
        if (strcmp(h->user, x->user) && !x->admin) continue; /* ids are secrets */
        if (!first) sb_add(b, ",", 1);
        first = false;
        session_json(b, h, now, wall);
    }
    pthread_mutex_unlock(&a->mu);
    sb_str(b, "]}\n");
    x->rs->status = 200;
}

static void *reaper_main(void *arg)
{
    server *s = arg;
    struct http_api *a = s->api;
    pthread_mutex_lock(&a->mu);
    while (!a->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 250000000;
        if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
        pthread_cond_timedwait(&a->cv, &a->mu, &ts);
        int64_t now = weir_now_ms();
        hsession *done = NULL;
        for (hsession **pp = &a->sessions; *pp;) {
            hsession *h = *pp;
            if (!h->busy && h->idle_timeout_ms > 0 && now - h->last_ms >= h->idle_timeout_ms) {
                *pp = h->next;
                h->next = done;
                done = h;
            } else {
                pp = &h->next;
            }
        }
        if (!done) continue;
        pthread_mutex_unlock(&a->mu);
        while (done) {
            hsession *h = done;
            done = h->next;
            a->sessions_expired++;
            session_end(s, h, "expired (http_session_idle_timeout)");
        }
        pthread_mutex_lock(&a->mu);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

/* --- /v1/sql ------------------------------------------------------------------------- */

static void schema_after(rq_ctx *x, const sql_req *q);

static void sql_request(rq_ctx *x)
{
    sql_req q;
    if (!read_body(x, &q)) return;
    const char *sid = http_header(x->rq, "Weir-Session");
    hsession *h = sid ? session_claim(x, sid, false) : NULL;
    if (sid && !h) {
        sql_req_free(&q);
        return;
    }
    if (h && strcmp(h->db, x->dbname)) {
        session_give(x, h);
        sql_req_free(&q);
        fail(x, 400, "08P01", "session %s belongs to database %s, not %s", sid, h->db, x->dbname);
        return;
    }
    runner r = {.x = x};
    bool batch = q.queries != NULL;
    if (h) {
        r.conn = h->conn;
        r.writer = r.pinned = true;
    } else {
        /* A statement starts where its engine says (SQLite: on a reader, moving
         * to the writer if it writes); a batch takes the writer unless it is
         * read-only. */
        r.pinned = batch;
        r.writer = batch && !q.read_only;
        if (!take(x, x->eng->pool(x->target, r.writer), &r.conn)) {
            sql_req_free(&q);
            return;
        }
    }
    sbuf out = {0}, err = {0};
    int64_t t0 = weir_now_ns();
    int st = run_body(&r, &q, &out, &err);
    count(x, (weir_now_ns() - t0) / 1000, !h);
    schema_after(x, &q); /* whatever the outcome: a batch may have run some of it */
    if (h) {
        h->conn = r.conn;
        session_give(x, h);
    } else if (r.conn) {
        /* A request without a session is its own unit: what it set must not
         * reach the next user of the connection. */
        x->eng->done(x->target, r.conn, &q);
        weir_checkin(r.conn);
    }
    if (st)
        answer_raw(x->rs, st, &err);
    else
        answer_raw(x->rs, 200, &out);
    /* the engine's own 503, or a server connection lost under the request */
    if (st == 503 || st == 502) sb_str(&x->rs->headers, "Retry-After: 1\r\n");
    sb_free(&out);
    sb_free(&err);
    sql_req_free(&q);
}

/* --- /v1/pools ----------------------------------------------------------------------- */

static void pools_list(rq_ctx *x)
{
    server *s = x->s;
    sbuf *b = &x->rs->body;
    bool first = true;
    sb_str(b, "{\"pools\":[");
    sql_engine_pg.list(s, b, &first);
    if (sql_engine_sqlite) sql_engine_sqlite->list(s, b, &first);
    if (sql_engine_mysql) sql_engine_mysql->list(s, b, &first);
    int nsess = 0;
    pthread_mutex_lock(&x->a->mu);
    for (hsession *h = x->a->sessions; h; h = h->next) nsess++;
    pthread_mutex_unlock(&x->a->mu);
    sb_printf(b, "],\"sessions\":%d}\n", nsess);
    x->rs->status = 200;
}

/* --- the operators' views: /v1/pools, /v1/show/{what}, the live page ----------------- */

/* A proved password (or token) of an admin_users or stats_users member, as
 * the console asks of SHOW; false: 401 or 403 sent. */
static bool ops_auth(rq_ctx *x)
{
    if (!who(x)) return false;
    /* No database is named: one is picked only to know where auth_query would run. */
    if (!pick_db(x, NULL)) {
        if (x->rs->status != 400) return false;
        x->rs->status = 200;
        x->rs->body.len = 0;
        x->rs->headers.len = 0;
    }
    if (!authenticate(x)) return false;
    pthread_rwlock_rdlock(&x->s->cfg_rw);
    bool ok = cfg_list_has(x->s->cfg.admin_users, x->user) ||
              cfg_list_has(x->s->cfg.stats_users, x->user);
    pthread_rwlock_unlock(&x->s->cfg_rw);
    if (!ok)
        fail(x, 403, "42501", "user \"%s\" is in neither admin_users nor stats_users", x->user);
    return ok;
}

static void show_json(rq_ctx *x, const char *what)
{
    sbuf *b = &x->rs->body;
    b->len = 0;
    int rc = console_json(x->s, what, b);
    if (rc == -1) {
        fail(x, 404, "42704",
             "not found: /v1/show/{pools|clients|servers|databases|stats|lists|users|mem|"
             "totals|state|version}");
        return;
    }
    if (rc) {
        fail(x, 503, "55006", "another configuration change or listing is running; try again");
        return;
    }
    x->rs->status = 200;
}

static void ctx_free(rq_ctx *x)
{
    if (x->target && x->eng->hold) x->eng->hold(x->target, -1);
    x->target = NULL;
    if (x->password) {
        explicit_bzero(x->password, strlen(x->password));
        free(x->password);
        x->password = NULL;
    }
    if (x->qsecret) {
        explicit_bzero(x->qsecret, strlen(x->qsecret));
        free(x->qsecret);
        x->qsecret = NULL;
    }
}

bool api_ops_login(server *s, http_req *rq, http_resp *rs)
{
    rq_ctx x = {.s = s, .a = s->api, .rq = rq, .rs = rs};
    bool ok = ops_auth(&x);
    ctx_free(&x);
    if (rs->status >= 100 && rs->status < 600) x.a->by_class[rs->status / 100]++;
    return ok;
}

/* --- the entry points ---------------------------------------------------------------- */

/* --- /v1/databases/{db}/schema ------------------------------------------------------- */

/* One query that gives the whole schema as one JSON text, per engine: the
 * database builds the document itself. PostgreSQL: the tables, views and
 * materialized views the user may use, outside the system schemas (its own
 * temporary ones included). */
static const char schema_pg[] =
    "SELECT json_build_object('tables', coalesce(json_agg(t ORDER BY t->>'schema', t->>'name'), "
    "'[]'::json))::text FROM (SELECT json_build_object("
    "'schema', n.nspname, 'name', c.relname, 'kind', CASE c.relkind WHEN 'v' THEN 'view' "
    "WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table' ELSE 'table' END, "
    "'columns', (SELECT coalesce(json_agg(json_build_object('name', a.attname, 'type', "
    "format_type(a.atttypid, a.atttypmod), 'nullable', NOT a.attnotnull, 'default', "
    "pg_get_expr(d.adbin, d.adrelid)) ORDER BY a.attnum), '[]') FROM pg_attribute a LEFT JOIN "
    "pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum WHERE a.attrelid = c.oid AND "
    "a.attnum > 0 AND NOT a.attisdropped), "
    "'primaryKey', (SELECT json_agg(a.attname ORDER BY k.ord) FROM pg_constraint p CROSS JOIN "
    "LATERAL unnest(p.conkey) WITH ORDINALITY k(attnum, ord) JOIN pg_attribute a ON a.attrelid = "
    "p.conrelid AND a.attnum = k.attnum WHERE p.conrelid = c.oid AND p.contype = 'p'), "
    "'foreignKeys', (SELECT coalesce(json_agg(json_build_object('name', f.conname, 'columns', "
    "(SELECT json_agg(a.attname ORDER BY k.ord) FROM unnest(f.conkey) WITH ORDINALITY k(attnum, "
    "ord) JOIN pg_attribute a ON a.attrelid = f.conrelid AND a.attnum = k.attnum), 'references', "
    "json_build_object('schema', rn.nspname, 'table', rc.relname, 'columns', (SELECT "
    "json_agg(a.attname ORDER BY k.ord) FROM unnest(f.confkey) WITH ORDINALITY k(attnum, ord) "
    "JOIN pg_attribute a ON a.attrelid = f.confrelid AND a.attnum = k.attnum))) ORDER BY "
    "f.conname), '[]') FROM pg_constraint f JOIN pg_class rc ON rc.oid = f.confrelid JOIN "
    "pg_namespace rn ON rn.oid = rc.relnamespace WHERE f.conrelid = c.oid AND f.contype = 'f'), "
    "'indexes', (SELECT coalesce(json_agg(json_build_object('name', ic.relname, 'unique', "
    "i.indisunique, 'primary', i.indisprimary, 'columns', (SELECT json_agg(coalesce(a.attname, "
    "pg_get_indexdef(i.indexrelid, k.ord::int, true)) ORDER BY k.ord) FROM "
    "unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord) LEFT JOIN pg_attribute a ON "
    "a.attrelid = i.indrelid AND a.attnum = k.attnum AND k.attnum > 0), 'definition', "
    "pg_get_indexdef(i.indexrelid)) ORDER BY ic.relname), '[]') FROM pg_index i JOIN pg_class ic "
    "ON ic.oid = i.indexrelid WHERE i.indrelid = c.oid)) AS t "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname NOT IN ('pg_catalog', "
    "'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND (n.nspname NOT LIKE "
    "'pg\\_temp\\_%' OR n.oid = pg_my_temp_schema()) AND has_table_privilege(c.oid, "
    "'SELECT, INSERT, UPDATE, DELETE')) s";

/* SQLite: from sqlite_schema and the pragma functions. */
static const char schema_lite[] =
    "SELECT json_object('tables', (SELECT json_group_array(json(t)) FROM (SELECT "
    "json_object('schema', 'main', 'name', m.name, 'kind', m.type, "
    "'columns', (SELECT json_group_array(json_object('name', c.name, 'type', c.type, "
    "'nullable', json(CASE WHEN c.\"notnull\" THEN 'false' ELSE 'true' END), 'default', "
    "c.dflt_value)) FROM pragma_table_info(m.name) c), "
    "'primaryKey', (SELECT CASE WHEN count(*) THEN json_group_array(name) END FROM (SELECT name "
    "FROM pragma_table_info(m.name) WHERE pk > 0 ORDER BY pk)), "
    "'foreignKeys', (SELECT json_group_array(json_object('columns', json(cols), 'references', "
    "json_object('table', tbl, 'columns', json(refs)))) FROM (SELECT id, \"table\" AS tbl, "
    "json_group_array(\"from\") AS cols, json_group_array(\"to\") AS refs FROM (SELECT * FROM "
    "pragma_foreign_key_list(m.name) ORDER BY id, seq) GROUP BY id)), "
    "'indexes', (SELECT json_group_array(json_object('name', il.name, 'unique', json(CASE WHEN "
    "il.\"unique\" THEN 'true' ELSE 'false' END), 'primary', json(CASE WHEN il.origin = 'pk' "
    "THEN 'true' ELSE 'false' END), 'columns', (SELECT json_group_array(ii.name) FROM "
    "pragma_index_info(il.name) ii))) FROM pragma_index_list(m.name) il)) AS t "
    "FROM sqlite_schema m WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite\\_%' "
    "ESCAPE '\\' ORDER BY m.name)))";

/* A statement that changes the schema (weir drops its cached copy). */
static bool is_ddl(const char *sql)
{
    while (isspace((unsigned char)*sql) || *sql == '(') sql++;
    static const char *const words[] = {"CREATE", "ALTER", "DROP", "RENAME", "COMMENT"};
    for (size_t i = 0; i < sizeof words / sizeof *words; i++) {
        size_t n = strlen(words[i]);
        if (!strncasecmp(sql, words[i], n) && !isalnum((unsigned char)sql[n])) return true;
    }
    return false;
}

/* Drop db's cached schemas (user's only, unless NULL). Under a->mu. */
static void schema_drop(struct http_api *a, const char *db, const char *user)
{
    for (schema_cache **pp = &a->schemas; *pp;) {
        schema_cache *c = *pp;
        if (strcmp(c->db, db) || (user && strcmp(c->user, user))) {
            pp = &c->next;
            continue;
        }
        *pp = c->next;
        free(c->json);
        free(c);
    }
}

static void schema_forget(struct http_api *a, const char *db)
{
    pthread_mutex_lock(&a->mu);
    schema_drop(a, db, NULL);
    pthread_mutex_unlock(&a->mu);
}

/* After a request that ran DDL on db: its cached schema is stale. */
static void schema_after(rq_ctx *x, const sql_req *q)
{
    bool ddl = false;
    if (q->queries) {
        for (size_t i = 0; i < json_array_size(q->queries) && !ddl; i++) {
            const char *sql;
            const json_t *params;
            sql_req_statement(q, i, &sql, &params);
            ddl = sql && is_ddl(sql);
        }
    } else {
        ddl = q->sql && is_ddl(q->sql);
    }
    if (ddl) schema_forget(x->a, x->dbname);
}

static void schema_answer(rq_ctx *x, const char *doc, bool cached, int64_t age_ms)
{
    sbuf *b = &x->rs->body;
    b->len = 0;
    sb_str(b, "{\"database\":");
    sb_jstr(b, x->dbname);
    sb_printf(b, ",\"cached\":%s,\"ageMs\":%lld,\"schema\":", cached ? "true" : "false",
              (long long)age_ms);
    sb_str(b, doc);
    sb_str(b, "}\n");
    x->rs->status = 200;
}

static void schema_request(rq_ctx *x)
{
    server *s = x->s;
    const char *sql = !strcmp(x->eng->kind, "postgresql") ? schema_pg
                      : !strcmp(x->eng->kind, "sqlite")   ? schema_lite
                                                          : NULL;
    if (!sql) {
        fail(x, 501, "0A000", "no schema listing for %s databases yet", x->eng->kind);
        return;
    }
    pthread_rwlock_rdlock(&s->cfg_rw);
    int64_t ttl = s->cfg.http_schema_ttl;
    pthread_rwlock_unlock(&s->cfg_rw);
    const char *sid = http_header(x->rq, "Weir-Session");
    bool refresh = false; /* ?refresh=1, among any other parameters */
    for (const char *q = x->rq->query; q && *q && !refresh;
         q = strchr(q, '&'), q = q ? q + 1 : NULL)
        refresh = !strncmp(q, "refresh=1", 9) && (q[9] == '\0' || q[9] == '&');
    int64_t now = weir_now_ms();
    if (!sid && !refresh && ttl > 0) { /* from the cache while it is fresh */
        pthread_mutex_lock(&x->a->mu);
        for (schema_cache *c = x->a->schemas; c; c = c->next)
            if (!strcmp(c->db, x->dbname) && !strcmp(c->user, x->user) && now - c->at_ms < ttl) {
                char *doc = strdup(c->json);
                int64_t age = now - c->at_ms;
                pthread_mutex_unlock(&x->a->mu);
                if (doc)
                    schema_answer(x, doc, true, age);
                else
                    fail(x, 500, "53200", "out of memory");
                free(doc);
                return;
            }
        pthread_mutex_unlock(&x->a->mu);
    }
    /* From the database: in a session, on its connection (what its
     * transaction sees; not cached); else on a connection of the pool. */
    hsession *h = sid ? session_claim(x, sid, false) : NULL;
    if (sid && !h) return;
    if (h && strcmp(h->db, x->dbname)) {
        session_give(x, h);
        fail(x, 400, "08P01", "session %s belongs to database %s, not %s", sid, h->db, x->dbname);
        return;
    }
    runner r = {.x = x, .pinned = true};
    if (h)
        r.conn = h->conn;
    else if (!take(x, x->eng->pool(x->target, false), &r.conn))
        return;
    sql_opts saved = x->o;
    x->o.array_mode = x->o.raw_text = true;
    x->o.max_rows = 0;
    x->o.max_bytes = 0;
    sbuf out = {0}, err = {0};
    int st = run_one(&r, sql, NULL, &out, &err);
    x->o = saved;
    if (h) {
        h->conn = r.conn;
        session_give(x, h);
    } else if (r.conn) {
        weir_checkin(r.conn);
    }
    json_t *res = st ? NULL : json_loadb(out.p, out.len, 0, NULL);
    const char *doc =
        json_string_value(json_array_get(json_array_get(json_object_get(res, "rows"), 0), 0));
    if (st) {
        answer_raw(x->rs, st, &err);
    } else if (!doc) {
        fail(x, 500, "XX000", "the schema query gave no document");
    } else {
        schema_answer(x, doc, false, 0);
        schema_cache *c = h ? NULL : calloc(1, sizeof *c);
        if (c && (c->json = strdup(doc))) {
            snprintf(c->db, sizeof c->db, "%s", x->dbname);
            snprintf(c->user, sizeof c->user, "%s", x->user);
            c->at_ms = now;
            pthread_mutex_lock(&x->a->mu);
            schema_drop(x->a, c->db, c->user);
            c->next = x->a->schemas;
            x->a->schemas = c;
            pthread_mutex_unlock(&x->a->mu);
        } else {
            free(c);
        }
    }
    json_decref(res);
    sb_free(&out);
    sb_free(&err);
}

void api_handle(server *s, http_req *rq, http_resp *rs, const char *path)
{
    rq_ctx x = {.s = s, .a = s->api, .rq = rq, .rs = rs};
    const char *m = rq->method;
    bool get = !strcmp(m, "GET") || !strcmp(m, "HEAD"), post = !strcmp(m, "POST");
    if (!strcmp(path, "pools") || !strncmp(path, "show/", 5)) {
        if (!get) goto method;
        if (!ops_auth(&x)) goto done;
        if (path[0] == 'p')
            pools_list(&x);
        else
            show_json(&x, path + 5);
        goto done;
    }
    /* /v1/databases/{name}/sql and /v1/databases/{name}/sessions */
    char dbp[CFG_NAME] = "";
    const char *rest = path;
    if (!strncmp(path, "databases/", 10)) {
        const char *name = path + 10, *slash = strchr(name, '/');
        if (!slash || !url_decode(name, (size_t)(slash - name), dbp, sizeof dbp) || !dbp[0]) {
            fail(&x, 404, "3D000", "not found: use /v1/databases/{name}/sql");
            goto done;
        }
        rest = slash + 1;
    }
    bool sql = !strcmp(rest, "sql"), sessions = !strcmp(rest, "sessions");
    bool schema = dbp[0] && !strcmp(rest, "schema");
    const char *sid = !strncmp(rest, "sessions/", 9) ? rest + 9 : NULL;
    if (!sql && !sessions && !schema && !(sid && *sid && !dbp[0])) {
        fail(&x, 404, "42704",
             "not found: /v1/sql, /v1/databases/{name}/sql, /v1/databases/{name}/schema, "
             "/v1/sessions, /v1/pools");
        goto done;
    }
    if ((sql && !post) || (schema && !get) || (sessions && !post && !get) ||
        (sid && strcmp(m, "DELETE")))
        goto method;
    if (!who(&x)) goto done;
    if (sid || (sessions && get)) {
        /* No database is named: one is picked only to know where auth_query would run. */
        if (!pick_db(&x, dbp[0] ? dbp : NULL)) {
            if (rs->status != 400) goto done; /* 404 of a named database */
            rs->status = 200;
            rs->body.len = 0;
        }
        if (!authenticate(&x)) goto done; /* pick_db set x.admin */
        if (sid)
            session_delete(&x, sid);
        else
            session_list(&x);
        goto done;
    }
    if (!pick_db(&x, dbp[0] ? dbp : NULL) || !authenticate(&x) || !open_target(&x)) goto done;
    pthread_mutex_lock(&x.a->mu);
    x.u = user_get(x.a, x.user);
    bool over = x.u && x.max_inflight > 0 && x.u->inflight >= x.max_inflight;
    if (x.u && !over) x.u->inflight++;
    pthread_mutex_unlock(&x.a->mu);
    if (!x.u) {
        fail(&x, 500, "53200", "out of memory");
        goto done;
    }
    if (over) {
        fail(&x, 429, "53300", "user \"%s\" has %d requests in flight (http_max_inflight_per_user)",
             x.user, x.max_inflight);
        goto done;
    }
    if (sql)
        sql_request(&x);
    else if (schema)
        schema_request(&x);
    else
        session_create(&x);
    pthread_mutex_lock(&x.a->mu);
    x.u->inflight--;
    pthread_mutex_unlock(&x.a->mu);
    goto done;
method:
    fail(&x, 405, "42501", "method %s not allowed here", m);
done:
    ctx_free(&x);
    if (rs->status >= 100 && rs->status < 600) x.a->by_class[rs->status / 100]++;
}

int api_start(server *s)
{
    struct http_api *a = calloc(1, sizeof *a);
    if (!a) return -1;
    a->s = s;
    pthread_mutex_init(&a->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_cond_init(&a->cv, &ca);
    pthread_condattr_destroy(&ca);
    s->api = a;
    /* Each engine opens what it serves now: errors show at start, and the
     * demo database is created. */
    pthread_rwlock_rdlock(&s->cfg_rw);
    int rc = sql_engine_pg.start(s) || (sql_engine_sqlite && sql_engine_sqlite->start(s)) ||
             (sql_engine_mysql && sql_engine_mysql->start(s));
    for (size_t i = 0; !sql_engine_mysql && i < s->cfg.ndbs; i++)
        if (s->cfg.dbs[i].mysql_url[0])
            srv_log(s, "WARNING",
                    "database %s is a MySQL database, and this weir was built without MySQL: "
                    "its requests are refused",
                    s->cfg.dbs[i].name);
    for (size_t i = 0; !sql_engine_sqlite && i < s->cfg.ndbs; i++)
        if (s->cfg.dbs[i].sqlite_path[0])
            srv_log(s, "WARNING",
                    "database %s is an SQLite database, and this weir was built without SQLite: "
                    "its requests are refused",
                    s->cfg.dbs[i].name);
    pthread_rwlock_unlock(&s->cfg_rw);
    if (rc) return -1;
    if (pthread_create(&a->reaper, NULL, reaper_main, s) == 0) a->reaper_on = true;
    return a->reaper_on ? 0 : -1;
}

void api_stop(server *s)
{
    struct http_api *a = s->api;
    if (!a) return;
    pthread_mutex_lock(&a->mu);
    a->stop = true;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    if (a->reaper_on) pthread_join(a->reaper, NULL);
    while (a->sessions) {
        hsession *h = a->sessions;
        a->sessions = h->next;
        session_end(s, h, "ended: weir is shutting down");
    }
    while (a->schemas) {
        schema_cache *c = a->schemas;
        a->schemas = c->next;
        free(c->json);
        free(c);
    }
    sql_engine_pg.stop(s);
    if (sql_engine_sqlite) sql_engine_sqlite->stop(s);
    if (sql_engine_mysql) sql_engine_mysql->stop(s);
    while (a->users) {
        huser *u = a->users;
        a->users = u->next;
        free(u);
    }
    pthread_cond_destroy(&a->cv);
    pthread_mutex_destroy(&a->mu);
    free(a);
    s->api = NULL;
}

void api_metrics(server *s, sbuf *b)
{
    struct http_api *a = s->api;
    if (!a) return;
    sb_str(b, "# HELP weir_http_requests_total HTTP API answers by status class.\n"
              "# TYPE weir_http_requests_total counter\n");
    for (int c = 2; c <= 5; c++)
        sb_printf(b, "weir_http_requests_total{class=\"%dxx\"} %llu\n", c,
                  (unsigned long long)a->by_class[c]);
    int n = 0;
    pthread_mutex_lock(&a->mu);
    for (hsession *h = a->sessions; h; h = h->next) n++;
    pthread_mutex_unlock(&a->mu);
    sb_printf(b,
              "# HELP weir_http_sessions Open HTTP sessions.\n# TYPE weir_http_sessions gauge\n"
              "weir_http_sessions %d\n"
              "# HELP weir_http_sessions_opened_total HTTP sessions opened.\n"
              "# TYPE weir_http_sessions_opened_total counter\n"
              "weir_http_sessions_opened_total %llu\n"
              "# HELP weir_http_sessions_expired_total HTTP sessions ended by "
              "http_session_idle_timeout.\n"
              "# TYPE weir_http_sessions_expired_total counter\n"
              "weir_http_sessions_expired_total %llu\n",
              n, (unsigned long long)a->sessions_opened, (unsigned long long)a->sessions_expired);
}
