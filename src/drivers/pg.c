/* pg.c — the PostgreSQL driver: non-blocking connect, validate, reset, close. */
#include "weir/weir_pg.h"

#include "../lib/scheme.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct pg_target {
    char **keys, **vals; /* NULL-terminated, as PQconnectStartParams wants */
    int n;
    char *reset_query;
    char describe[256];
} pg_target;

/* Defaults weir adds unless the conninfo sets them: notice a dead peer. */
static const char *const defaults[][2] = {
    {"keepalives", "1"},       {"keepalives_idle", "30"},     {"keepalives_interval", "10"},
    {"keepalives_count", "3"}, {"tcp_user_timeout", "30000"},
};

/* libpq's messages end in a newline and may span lines: one line, masked. */
static void set_err(char *err, size_t errlen, const char *prefix, const char *msg)
{
    char raw[1024];
    snprintf(raw, sizeof raw, "%s%s", prefix, msg ? msg : "");
    size_t n = strlen(raw);
    while (n && (raw[n - 1] == '\n' || raw[n - 1] == ' ')) raw[--n] = '\0';
    for (char *p = raw; *p; p++)
        if (*p == '\n') *p = ' ';
    weir_mask_credentials(raw, err, errlen);
}

static void target_free(void *ctx)
{
    pg_target *t = ctx;
    if (!t) return;
    for (int i = 0; i < t->n; i++) {
        free(t->keys[i]);
        free(t->vals[i]);
    }
    free(t->keys);
    free(t->vals);
    free(t->reset_query);
    free(t);
}

int weir_pg_target_new(const char *conninfo, const char *reset_query, void **ctx, char *err,
                       size_t errlen)
{
    if (!ctx) return WEIR_EINVAL;
    *ctx = NULL;
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo ? conninfo : "", &perr);
    if (!opts) {
        if (err) set_err(err, errlen, "invalid connection string: ", perr ? perr : "out of memory");
        PQfreemem(perr);
        return WEIR_EINVAL;
    }
    pg_target *t = calloc(1, sizeof *t);
    int cap = 0;
    for (PQconninfoOption *o = opts; o->keyword; o++) cap++;
    cap += (int)(sizeof defaults / sizeof *defaults) + 1;
    if (t) {
        t->keys = calloc((size_t)cap, sizeof(char *));
        t->vals = calloc((size_t)cap, sizeof(char *));
    }
    if (!t || !t->keys || !t->vals) {
        PQconninfoFree(opts);
        target_free(t);
        return WEIR_ENOMEM;
    }
    const char *host = NULL, *port = NULL, *user = NULL, *db = NULL;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val) continue;
        t->keys[t->n] = strdup(o->keyword);
        t->vals[t->n] = strdup(o->val);
        t->n++;
        if (strcmp(o->keyword, "host") == 0)
            host = o->val;
        else if (strcmp(o->keyword, "port") == 0)
            port = o->val;
        else if (strcmp(o->keyword, "user") == 0)
            user = o->val;
        else if (strcmp(o->keyword, "dbname") == 0)
            db = o->val;
    }
    for (size_t d = 0; d < sizeof defaults / sizeof *defaults; d++) {
        bool set = false;
        for (int i = 0; i < t->n; i++) set |= strcmp(t->keys[i], defaults[d][0]) == 0;
        if (set) continue;
        t->keys[t->n] = strdup(defaults[d][0]);
        t->vals[t->n] = strdup(defaults[d][1]);
        t->n++;
    }
    snprintf(t->describe, sizeof t->describe, "postgres://%s@%s%s%s/%s", user ? user : "",
             host ? host : "", port ? ":" : "", port ? port : "", db ? db : "");
    PQconninfoFree(opts);
    bool oom = false;
    for (int i = 0; i < t->n; i++) oom |= !t->keys[i] || !t->vals[i];
    if (reset_query && *reset_query && !(t->reset_query = strdup(reset_query))) oom = true;
    if (oom) {
        target_free(t);
        return WEIR_ENOMEM;
    }
    *ctx = t;
    return 0;
}

/* Wait until fd is ready for `events` or deadline passes. 1 ready, 0 timeout, -1 error. */
static int wait_fd(int fd, short events, int64_t deadline_ns)
{
    for (;;) {
        int64_t left = deadline_ns - weir_now_ns();
        if (left <= 0) return 0;
        struct pollfd pfd = {.fd = fd, .events = events};
        int ms = (int)((left + 999999) / 1000000);
        int r = poll(&pfd, 1, ms);
        if (r > 0) return 1;
        if (r == 0) continue; /* re-check the deadline */
        if (errno != EINTR) return -1;
    }
}

static void quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static int pg_connect(void *ctx, int64_t deadline, void **out, char *err, size_t errlen)
{
    pg_target *t = ctx;
    PGconn *c = PQconnectStartParams((const char *const *)t->keys, (const char *const *)t->vals, 0);
    if (!c) {
        set_err(err, errlen, "", "out of memory");
        return WEIR_ENOMEM;
    }
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    if (PQstatus(c) == CONNECTION_BAD) st = PGRES_POLLING_FAILED;
    while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
        int r = wait_fd(PQsocket(c), st == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline);
        if (r == 0) {
            snprintf(err, errlen, "timeout expired connecting to %s", t->describe);
            PQfinish(c);
            return WEIR_ETIMEDOUT;
        }
        if (r < 0) break;
        st = PQconnectPoll(c);
    }
    if (st != PGRES_POLLING_OK || PQstatus(c) != CONNECTION_OK) {
        set_err(err, errlen, "", PQerrorMessage(c));
        PQfinish(c);
        return WEIR_ECONNECT;
    }
    PQsetNoticeProcessor(c, quiet, NULL); /* see weir_pg.h */
    if (PQsetnonblocking(c, 1) != 0) {
        set_err(err, errlen, "", PQerrorMessage(c));
        PQfinish(c);
        return WEIR_EDRIVER;
    }
    *out = c;
    return 0;
}

/* Run sql with a deadline; 0 if every result succeeded. */
static int run(PGconn *c, const char *sql, int64_t deadline, char *err, size_t errlen)
{
    if (!PQsendQuery(c, sql)) {
        set_err(err, errlen, "", PQerrorMessage(c));
        return WEIR_EDRIVER;
    }
    int f;
    while ((f = PQflush(c)) == 1)
        if (wait_fd(PQsocket(c), POLLOUT, deadline) <= 0) goto timeout;
    if (f < 0) goto failed;
    int rc = 0;
    for (;;) {
        while (PQisBusy(c)) {
            int r = wait_fd(PQsocket(c), POLLIN, deadline);
            if (r == 0) goto timeout;
            if (r < 0 || !PQconsumeInput(c)) goto failed;
        }
        PGresult *res = PQgetResult(c);
        if (!res) break;
        ExecStatusType s = PQresultStatus(res);
        if (rc == 0 && s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK && s != PGRES_EMPTY_QUERY) {
            set_err(err, errlen, "", PQresultErrorMessage(res));
            rc = WEIR_EDRIVER;
        }
        PQclear(res);
    }
    return rc;
timeout:
    snprintf(err, errlen, "timeout running \"%s\"", sql);
    return WEIR_ETIMEDOUT;
failed:
    set_err(err, errlen, "", PQerrorMessage(c));
    return WEIR_EDRIVER;
}

static int pg_validate(void *ctx, void *conn, int64_t deadline, char *err, size_t errlen)
{
    (void)ctx;
    PGconn *c = conn;
    if (PQstatus(c) != CONNECTION_OK || PQtransactionStatus(c) != PQTRANS_IDLE) {
        set_err(err, errlen, "", PQerrorMessage(c));
        return WEIR_EDRIVER;
    }
    return run(c, "", deadline, err, errlen);
}

static bool pg_is_dirty(void *ctx, void *conn)
{
    pg_target *t = ctx;
    PGconn *c = conn;
    return t->reset_query || PQstatus(c) != CONNECTION_OK || PQtransactionStatus(c) != PQTRANS_IDLE;
}

#define RESET_DEADLINE_NS (5LL * 1000000000)

static int pg_reset(void *ctx, void *conn, char *err, size_t errlen)
{
    pg_target *t = ctx;
    PGconn *c = conn;
    if (PQstatus(c) != CONNECTION_OK) {
        set_err(err, errlen, "", PQerrorMessage(c));
        return WEIR_EDRIVER;
    }
    PGTransactionStatusType ts = PQtransactionStatus(c);
    if (ts == PQTRANS_ACTIVE || ts == PQTRANS_UNKNOWN) {
        snprintf(err, errlen, "connection returned with a query still running");
        return WEIR_EDRIVER;
    }
    int64_t deadline = weir_now_ns() + RESET_DEADLINE_NS;
    if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR) {
        int rc = run(c, "ROLLBACK", deadline, err, errlen);
        if (rc) return rc;
    }
    if (t->reset_query) {
        int rc = run(c, t->reset_query, deadline, err, errlen);
        if (rc) return rc;
    }
    return PQtransactionStatus(c) == PQTRANS_IDLE ? 0 : WEIR_EDRIVER;
}

static void pg_close(void *ctx, void *conn)
{
    (void)ctx;
    PQfinish(conn);
}

static size_t pg_describe(void *ctx, char *buf, size_t len)
{
    pg_target *t = ctx;
    return (size_t)snprintf(buf, len, "%s", t->describe);
}

static const weir_driver pg_driver = {
    .name = "postgres",
    .connect = pg_connect,
    .validate = pg_validate,
    .is_dirty = pg_is_dirty,
    .reset = pg_reset,
    .close = pg_close,
    .describe = pg_describe,
    .ctx_free = target_free,
};

const weir_driver *weir_pg_driver(void)
{
    return &pg_driver;
}

int weir_pg_pool_create(weir_pool **out, const char *conninfo, const char *reset_query,
                        const weir_options *opts, const weir_hooks *hooks, char *err, size_t errlen)
{
    if (out) *out = NULL;
    void *ctx;
    char tmp[256];
    int rc =
        weir_pg_target_new(conninfo, reset_query, &ctx, err ? err : tmp, err ? errlen : sizeof tmp);
    if (rc) return rc;
    return weir_pool_create(out, &pg_driver, ctx, opts, hooks);
}

PGconn *weir_pg_conn(const weir_conn *c)
{
    return c ? weir_conn_handle(c) : NULL;
}

/* --- the registry's postgres:// scheme ------------------------------------ */

/* postgres://[userinfo@]host[:port][/db][?query]: the host lower-cased, the
 * default port made explicit, "postgresql" spelt "postgres". */
static int pg_normalize(const char *url, const char *rest, char *out, size_t len, char *err,
                        size_t errlen)
{
    (void)url;
    (void)err;
    (void)errlen;
    return weir__normalize_authority("postgres", "5432", rest, true, out, len);
}

static int pg_make(const char *key, const weir_options *o, weir_pool **out, char *err,
                   size_t errlen)
{
    return weir_pg_pool_create(out, key, NULL, o, NULL, err, errlen);
}

const weir__scheme weir__scheme_pg = {"postgres", "postgresql", pg_normalize, pg_make};
