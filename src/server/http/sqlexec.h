/* sqlexec.h — how the HTTP door runs SQL on one kind of database. httpapi.c
 * speaks only this interface; each kind implements it: PostgreSQL through
 * weir's own pools and wire protocol (pgrun.c), SQLite through libweir's
 * SQLite driver (literun.c, absent from a build without SQLite), MySQL and
 * MariaDB through libweir's MySQL driver (myrun.c, absent without it).
 *
 * A result is {"command","rowCount","rows","fields","rowAsArray"}; an error is
 * {"message","code",...} with PostgreSQL's fields, and an HTTP status.
 */
#ifndef WEIR_SERVER_SQLEXEC_H
#define WEIR_SERVER_SQLEXEC_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "core/pools.h"
#include "core/sbuf.h"
#include "http/sqlreq.h"
#include "pg/backend.h"
#include "weir/weir.h"

typedef struct server server;

typedef struct sql_engine {
    const char *kind; /* "postgresql", "sqlite" or "mysql" */
    /* The database behind db (the entry for dbname) for user, made or
     * opened on first use: *t is
     * the engine's (a pool, an SQLite pair). cr: what the user's login
     * proved. 0, or an HTTP status with the SQLSTATE in *code and the reason
     * in err. Called under cfg_rw. */
    int (*target)(server *s, const cfg_db *db, const char *dbname, const char *user,
                  const login_creds *cr, void **t, const char **code, char *err, size_t errlen);
    /* One more holder of t (delta 1), or one less (-1): target's *t comes
     * held once, for the request. NULL: t lives as long as the server. */
    void (*hold)(void *t, int delta);
    /* Where a request's connection comes from; write: it will write
     * (SQLite: the writer rather than a reader). */
    weir_pool *(*pool)(void *t, bool write);
    /* One statement on *c, its result appended to out. Unless pinned (a
     * batch or a session), the engine may move to another connection of t
     * (SQLite: a write found on a reader goes to the writer). 0 or a status. */
    int (*run)(void *t, weir_conn **c, bool pinned, int64_t wait_ms, const char *sql,
               const json_t *params, const sql_opts *o, sbuf *out, sbuf *err);
    /* A statement of weir's own (BEGIN ..., COMMIT, ROLLBACK), no result. */
    int (*exec)(weir_conn *c, const char *sql, const sql_opts *o, sbuf *err);
    char (*txn)(weir_conn *c); /* 'I' idle, 'T' in a transaction, 'E' in a failed one */
    /* The BEGIN of a batch that opens its own transaction. */
    void (*begin)(const sql_req *q, bool writer, char *out, size_t len);
    /* A request without a session is done with c (then checked in): leave
     * nothing on it for the next user. */
    void (*done)(void *t, weir_conn *c, const sql_req *q);
    /* A session ends with c (rolled back already, then checked in). */
    void (*end_session)(void *t, weir_conn *c);
    bool (*lost)(weir_conn *c); /* c can no longer be trusted: its session ends */
    /* The figures block the HTTP door writes for t, or NULL. */
    wstats *(*stats)(server *s, void *t);
    /* Every database of this kind in /v1/pools (JSON objects, comma first
     * unless *first). */
    void (*list)(server *s, sbuf *b, bool *first);
    int (*start)(server *s); /* api_start: open what the configuration names */
    void (*stop)(server *s); /* api_stop, after the last session */
} sql_engine;

extern const sql_engine sql_engine_pg;
extern const sql_engine *const sql_engine_sqlite; /* NULL in a build without SQLite */
extern const sql_engine *const sql_engine_mysql;  /* NULL in a build without MySQL */

/* /ready for a MySQL database: "ok" once its pool hands out a connection
 * (within a second), else why not, in status. */
void sql_mysql_ready(server *s, const cfg_db *db, char *status, size_t len);

/* One JSON object of /v1/pools; extra: more members of the engine's own
 * (",\"name\":value..."), or NULL. */
void sql_pool_json(sbuf *b, const char *db, const char *user, const char *kind, const char *mode,
                   weir_pool *p, const char *extra);

/* auth_query: the secret (second column) for user in *secret (malloc'd; NULL
 * if there is no row or it is NULL or empty); *named: the row names a user
 * (the user exists, whatever its secret). 0, or -1 with a reason in why. */
int pgx_lookup(backend *be, const char *query, const char *user, int64_t timeout_ms, char **secret,
               bool *named, char *why, size_t whylen);

static inline int64_t sql_deadline_after(int64_t ms)
{
    return ms > 0 ? weir_now_ns() + ms * 1000000 : INT64_MAX / 2;
}

#endif
