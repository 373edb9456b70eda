/* pools.h — server connection pools by (database, user) (pools.c). */
#ifndef WEIR_SERVER_POOLS_H
#define WEIR_SERVER_POOLS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "core/stats.h"
#include "pg/backend.h"
#include "weir/weir.h"

typedef struct server server;

/* A pool /ready and /v1/pools call down: a refused login tripped
 * fail-fast, or its connects fail while it has nothing open (clients wait
 * through the retries meanwhile). */
static inline bool pool_stats_down(const weir_pool_stats *st)
{
    return st->target_down || (st->failing && st->total == 0);
}

/* One pool of server connections: a (database, user) pair. Created on the
 * first login that needs it; freed by pool_idle_timeout once nobody holds
 * it (pins) and it has no server connection, else kept for the server's
 * life. */
typedef struct spool {
    server *srv;
    char db[CFG_NAME], user[CFG_NAME];
    int mode; /* POOL_SESSION / POOL_TRANSACTION / POOL_STATEMENT */
    weir_pool *pool;
    be_target *target;    /* owned by the pool (driver ctx) */
    pthread_mutex_t lock; /* guards welcome */
    bool have_welcome;
    be_params welcome; /* the first server connection's ParameterStatus set */
    /* reserve_pool_size: extra connections once a client has waited
     * reserve_pool_timeout; given back when nobody has waited that long for
     * as long again. */
    atomic_int size; /* read by the engine's threads (pool_on_create) */
    int reserve;
    int64_t reserve_timeout;
    int64_t
        query_wait_ms; /* query_wait_timeout (the database's, else [pgbouncer]'s; no limit: huge) */
    atomic_bool reserve_on;
    atomic_bool
        use_once; /* server_lifetime = 0: a server connection serves one client, as PgBouncer */
    bool private_pool; /* a replication client's own: not in s->pools (pool_release_private) */
    /* pool_size (+ reserve) of (db, user), shared with its replication
     * connections, as PgBouncer counts them; NULL if it could not be made */
    weir_limit *size_limit;
    int64_t idle_timeout_ms; /* the engine's idle_timeout, set before the pool starts */
    atomic_int cl_logged;    /* clients on this pool (SHOW POOLS; those waiting: spool_waiting) */
    /* Holders: each client on it (or looking up a secret through it), each
     * HTTP request and session (pool_get pins, pool_unpin lets go). Only a
     * pool nobody pins may be freed; last_unpin_ms: when the last let go. */
    atomic_int pins;
    _Atomic int64_t last_unpin_ms;
    _Atomic int64_t last_long_wait_ms;
    _Atomic uint64_t close_mark;    /* RECONNECT: connections with an id up to this are closing */
    _Atomic uint64_t close_mark_be; /* the same, as backend ids (server_fast_close) */
    wstats *ws;                     /* one per worker */
    st_sum prev, delta; /* at the last stats_period tick, and the period before it (stats_lock) */
    struct spool *next;
    struct spool *hnext; /* server.pool_ix's chain */
} spool;

/* A shared cap (max_db_connections, max_user_connections) by name. */
typedef struct named_limit {
    char key[CFG_NAME + 8]; /* "db:<name>" or "user:<name>" */
    weir_limit *limit;
    struct named_limit *next;
} named_limit;

/* Logged-in clients by database or by user (max_db_client_connections,
 * max_user_client_connections). An entry exists only while a client is
 * counted in it: the last one out frees it, so names that clients make up
 * (auth_type any or trust, the "*" database) cost nothing once they leave.
 * Kept in s->counts, chains by the key's hash. */
typedef struct named_count {
    char key[CFG_NAME + 8]; /* "db:<name>" or "user:<name>" */
    int n;                  /* under pools_lock */
    struct named_count *next, **pprev;
} named_count;

/* A client logging in to db as user: counted, unless db or user is at its
 * limit (0, or -1 with PgBouncer's message in why); an unlimited one (the
 * console's admin_users) is counted whatever the limits. clients_leave
 * undoes it. */
int clients_admit(server *s, const char *db, const char *user, bool unlimited, named_count **dbc,
                  named_count **userc, char *why, size_t len);
/* How many logged-in clients kind ("db" or "user") name has. Under pools_lock. */
int clients_counted(server *s, const char *kind, const char *name);
/* The user names SHOW USERS lists: [users], auth_file, and every user with
 * clients or a pool; fn is called once per name. Under pools_lock. */
void users_known(server *s, void (*fn)(void *ud, const char *name), void *ud);
void clients_leave(server *s, named_count *dbc, named_count *userc);

/* What a client's login taught weir about its credentials, for server logins
 * when the config has no password for the user. */
typedef struct login_creds {
    const char *secret;        /* from auth_query (md5 hash, SCRAM secret or plain); NULL */
    const uint8_t *client_key; /* after a SCRAM login: the ClientKey (32 bytes); NULL */
    const uint8_t *server_key; /* and the secret's ServerKey */
} login_creds;

/* The pool for (dbname, user): user is the [databases] entry's forced user,
 * else as_user if given (auth_user's pool), else the client's. A client that
 * proved its password (cr) hands the pool what it proved. The pool comes
 * pinned: the caller calls pool_unpin when done with it. */
spool *pool_get(server *s, const cfg_db *db, const char *dbname, const char *client_user,
                const char *as_user, const login_creds *cr, char *err, size_t errlen);
/* A replication client's startup parameters, passed to its server as they
 * are: name\0value\0 pairs, "replication" among them. */
typedef struct repl_spec {
    const char *params;
    size_t len;
} repl_spec;
/* A replication client's own pool (PgBouncer 1.23+): one server connection
 * logged in with the client's startup parameters, session mode, closed
 * when the client goes; replication connections of one (database, user)
 * share its pool_size. Not listed in s->pools; pool_release_private frees it
 * once its client has let go of it. */
spool *pool_replication(server *s, const cfg_db *db, const char *dbname, const char *client_user,
                        const login_creds *cr, const repl_spec *repl, char *err, size_t errlen);
void pool_release_private(spool *p);
/* Done with a pool from pool_get or pool_auth_query (NULL, or a private
 * pool: nothing). */
void pool_unpin(spool *p);
/* One more pin on a pool the caller holds already, or that it reached
 * under pools_lock. quiet: pool_unpin_quiet lets go, which does not count
 * as use of the pool (a /metrics scrape must not keep a pool alive). */
void pool_pin(spool *p);
void pool_unpin_quiet(spool *p);
/* pool_idle_timeout: free the pools nobody has pinned for that long that
 * have no server connection, no min_pool_size and are not paused (worker
 * 0's tick). */
void pools_idle_tick(server *s, int64_t now_ms);
/* Where auth_query runs for a client of db (the entry for dbname): the pool
 * of auth_user on the database's auth_dbname, else [pgbouncer]'s, else the
 * client's database itself. Both doors look secrets up through it. NULL with
 * err, and *why (may be NULL) saying whether the auth_dbname is missing
 * from [databases] or disabled. */
enum { AUTHDB_OTHER, AUTHDB_NOT_CONFIGURED, AUTHDB_DISABLED };
spool *pool_auth_query(server *s, const cfg_db *db, const char *dbname, const char *client_user,
                       const char *auth_user, int *why, char *err, size_t errlen); /* pinned */
void pools_destroy(server *s);
/* After a reload or SET, workers held; tls_out: TLS towards servers changed
 * (every pool's connections are remade). */
void pools_apply_config(server *s, bool tls_out);
/* Databases with a forced user= and a min_pool_size get their pool now (at
 * start and after a reload), so that it fills before any client comes, as
 * PgBouncer's janitor does; other pools are made by their first client. */
void pools_warm(server *s);
/* RECONNECT: close the server connections of db ("" = all) as they are
 * released; pools_closing: some of them are still open (WAIT_CLOSE). */
bool pools_reconnect(server *s, const char *db);
bool pools_closing(server *s, const char *db);
/* PAUSE's wait: no server connection of db ("" = all) is in use or logging in. */
bool pools_quiet(server *s, const char *db);
/* DISABLE/ENABLE db: false if there is no such database. */
bool db_set_disabled(server *s, const char *db, bool off);
bool db_disabled(server *s, const char *db);
/* Pause or resume every pool, or those of database db ("" = all). false: no
 * such database. why goes to the log. */
bool pools_pause(server *s, const char *db, bool pause, const char *why);
/* Reserve pools: take or give back reserve connections (each worker's tick). */
void pool_reserve_wanted(spool *p, int64_t now_ms);
void pools_reserve_tick(server *s, int64_t now_ms);

#endif
