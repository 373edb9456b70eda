/* server.h — the weir daemon's shared types: the server, its workers, pools and clients. */
#ifndef WEIR_SERVER_SERVER_H
#define WEIR_SERVER_SERVER_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "pg/backend.h"
#include "core/config.h"
#include "pg/prep.h"
#include "pg/proto.h"
#include "weir/weir.h"

#define WEIR_VERSION_TEXT "weir 0.1.0"

typedef struct server server;
typedef struct worker worker;

/* A client's state (client.c has the diagram). */
typedef enum cstate {
    CL_LOGIN,
    CL_AUTH_QUERY,    /* the user's secret is being looked up with auth_query */
    CL_AUTH_PASSWORD, /* cleartext or md5 asked */
    CL_AUTH_SASL_FIRST,
    CL_AUTH_SASL_FINAL,
    CL_WELCOME,
    CL_IDLE,
    CL_WAITING,
    CL_ACTIVE,
    CL_NSTATES
} cstate;
typedef struct client client;

/* Traffic figures of one pool, one block per worker: only that worker
 * writes its block (st_add: a relaxed load and store, no locked
 * instruction), readers sum the blocks. Times in microseconds. */
#define ST_NB 16 /* histogram bounds; one more bucket for +Inf */
enum { ST_QUERY, ST_XACT, ST_WAIT, ST_NH };
typedef struct st_sum {
    uint64_t xact, query, recv, sent, xact_us, query_us, wait_us, waits;
    uint64_t ps_parse_c, ps_parse_s, ps_bind; /* prepared statements (prep.h) */
    uint64_t h[ST_NH][ST_NB + 1];
} st_sum;
typedef struct wstats {
    _Atomic uint64_t xact, query, recv, sent, xact_us, query_us, wait_us, waits;
    _Atomic uint64_t ps_parse_c, ps_parse_s, ps_bind;
    _Atomic uint64_t h[ST_NH][ST_NB + 1];
} __attribute__((aligned(64))) wstats;
extern const int64_t st_bounds_us[ST_NB];

static inline void st_add(_Atomic uint64_t *a, uint64_t v)
{
    atomic_store_explicit(a, atomic_load_explicit(a, memory_order_relaxed) + v,
                          memory_order_relaxed);
}
/* One query, transaction or wait of us microseconds. */
void st_time(wstats *w, int kind, int64_t us);
void st_time_shared(wstats *w, int kind, int64_t us); /* a block written by several threads */
/* a += b, field by field (b subtracted when sign < 0). */
void st_sum_add(st_sum *a, const st_sum *b, int sign);

/* One pool of server connections: a (database, user) pair. Created on the
 * first login that needs it and kept for the server's life. */
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
    int size, reserve;
    int64_t reserve_timeout;
    atomic_bool reserve_on;
    atomic_int cl_logged, cl_waiting; /* clients on this pool, and those waiting (SHOW POOLS) */
    _Atomic int64_t last_long_wait_ms;
    _Atomic uint64_t close_mark; /* RECONNECT: connections with an id up to this are closing */
    wstats *ws;                  /* one per worker */
    st_sum prev, delta; /* at the last stats_period tick, and the period before it (stats_lock) */
    struct spool *next;
} spool;

/* A shared cap (max_db_connections, max_user_connections) by name. */
typedef struct named_limit {
    char key[CFG_NAME + 8]; /* "db:<name>" or "user:<name>" */
    weir_limit *limit;
    struct named_limit *next;
} named_limit;

/* A server connection's read registration in one worker's event loop. It
 * stays registered while the connection waits in the pool, so a worker that
 * gets the same connection back (the engine's thread affinity) pays no
 * epoll_ctl. Only that worker touches it, except the thread closing the
 * connection (pool hook on_destroy), which deletes every registration first. */
typedef struct be_watch {
    struct event ev;
    client *c; /* this worker's client using the connection, or NULL */
    bool added;
} be_watch;

typedef struct be_ext {
    ps_cache *ps; /* its prepared statements (max_prepared_statements); NULL until the first */
    int n;
    be_watch w[];
} be_ext;

/* A connection to cancel, handed to a short-lived thread. */
typedef struct cancel_req {
    char host[256];
    int port;
    uint32_t pid, key;
    weir_conn *conn; /* kept out of the pool until this cancel finishes */
    struct server *srv;
} cancel_req;

/* A completed asynchronous checkout, queued to the client's worker. */
typedef struct completion {
    client *c;
    weir_conn *conn;
    int status;
} completion;

struct worker {
    server *srv;
    int id;
    pthread_t thread;
    struct event_base *base;
    int nlisten;
    struct event listen_ev[8];
    struct event tick;
    struct event accept_retry; /* listening resumes after an accept() back-off */
    int accept_backoff_ms;
    int efd; /* eventfd: completions are queued */
    struct event efd_ev;
    struct event local_ev; /* completions queued by this worker's own thread: no syscall */
    pthread_mutex_t qlock;
    completion *q;
    size_t qlen, qcap;
    client *clients;                /* every client of this worker, for timeouts */
    client *graveyard;              /* freed at the end of the loop turn */
    _Atomic int nstate[CL_NSTATES]; /* clients in each state, written by this worker (nstate_add) */
    atomic_bool kill_pending;       /* KILL marked some of its clients */
    atomic_bool stop;
};

/* Only the worker itself changes its nstate: a relaxed load and store. */
static inline void nstate_add(worker *w, cstate st, int d)
{
    atomic_store_explicit(&w->nstate[st],
                          atomic_load_explicit(&w->nstate[st], memory_order_relaxed) + d,
                          memory_order_relaxed);
}

struct server {
    cfg cfg;
    int nworkers;
    int nhttp; /* HTTP request threads */
    int nstat; /* blocks of a pool's wstats: one per worker, then one the HTTP door shares */
    worker *workers;
    int unix_fd;
    char unix_path[300];
    pthread_mutex_t pools_lock;
    spool *pools;
    named_limit *limits; /* under pools_lock */
    atomic_int nclients;
    _Atomic long long accept_errors; /* accept() failing for want of descriptors */
    struct authguard *guard;         /* failed-login back-off, both doors (authguard.h) */
    atomic_int cancels_inflight;     /* cancel threads running (server_stop waits for them) */
    _Atomic int64_t accept_log_ms;   /* the last time that was logged */
    /* cancel keys: (pid, key) given to clients -> the client */
    pthread_mutex_t keys_lock;
    client **keys;
    size_t keys_cap, nkeys;
    atomic_bool shutting_down;
    bool quiet;
    int verbose;
    FILE *logf;
    pthread_mutex_t log_lock;
    pthread_mutex_t stats_lock;
    int64_t stats_at_ms, stats_period_ms; /* the last stats_period tick, and its length */
    struct http_door *http;               /* http_listen_addr/port, or NULL */
    struct http_api *api;                 /* the SQL-over-HTTP state (httpapi.c) */
    /* configuration changes (reload.c): one at a time (change_mu); workers
     * held at a safe point while cfg is swapped; the HTTP thread reads cfg
     * under cfg_rw */
    pthread_mutex_t change_mu, hold_mu;
    pthread_cond_t hold_cv;
    atomic_bool holding;
    int held;
    pthread_rwlock_t cfg_rw;
    ps_registry *ps_reg; /* max_prepared_statements: every statement clients prepared */
    /* DISABLE db: names refused at login (under pools_lock) */
    char (*disabled)[CFG_NAME];
    size_t ndisabled;
    atomic_bool paused_all; /* PAUSE without a database (SHOW STATE) */
    bool syslog_on;         /* syslog = 1 at start (fixed until a restart) */
};

void srv_log(server *s, const char *level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

int server_start(server *s); /* listeners, workers */
void server_stop(server *s); /* stop loops, join workers, close everything */

/* What a client's login taught weir about its credentials, for server logins
 * when the config has no password for the user. */
typedef struct login_creds {
    const char *secret;        /* from auth_query (md5 hash, SCRAM secret or plain); NULL */
    const uint8_t *client_key; /* after a SCRAM login: the ClientKey (32 bytes); NULL */
    const uint8_t *server_key; /* and the secret's ServerKey */
} login_creds;

/* The pool for (dbname, user): user is the [databases] entry's forced user,
 * else as_user if given (auth_user's pool), else the client's. */
spool *pool_get(server *s, const cfg_db *db, const char *dbname, const char *client_user,
                const char *as_user, const login_creds *cr, char *err, size_t errlen);
void pools_destroy(server *s);
void pools_apply_config(server *s); /* after a reload or SET, workers held */
/* RECONNECT: close the server connections of db ("" = all) as they are
 * released; pools_closing: some of them are still open (WAIT_CLOSE). */
bool pools_reconnect(server *s, const char *db);
bool pools_closing(server *s, const char *db);
/* PAUSE's wait: no server connection of db ("" = all) is in use or logging in. */
bool pools_quiet(server *s, const char *db);
/* DISABLE/ENABLE db: false if there is no such database. */
bool db_set_disabled(server *s, const char *db, bool off);
bool db_disabled(server *s, const char *db);
/* KILL db: close every client of db (workers frozen); returns how many. */
int clients_kill(server *s, const char *db);
void worker_kill_marked(worker *w); /* a worker closes the clients KILL marked */
/* Pause or resume every pool, or those of database db ("" = all). false: no
 * such database. why goes to the log. */
bool pools_pause(server *s, const char *db, bool pause, const char *why);

/* One row of SHOW CLIENTS (clients_list) or SHOW SERVERS. */
typedef struct conn_row {
    char user[CFG_NAME], db[CFG_NAME], state[16], addr[64], local_addr[64], appname[BE_VALUE];
    int port, local_port;
    int64_t connect_ms, request_ms; /* wall clock, ms */
    int64_t wait_us;
    const void *ptr, *link;
    uint32_t remote_pid;
    size_t prepared;
    bool close_needed; /* a server connection RECONNECT (or a reload) marked */
} conn_row;
/* Every client of every worker (malloc'd array; free it); link is the
 * backend it is linked to, or NULL. Workers must be frozen. */
size_t clients_list(server *s, conn_row **out);
/* The address and port of fd's peer (peer) or own end (!peer), as SHOW shows them. */
void sock_addr(int fd, bool peer, char *addr, size_t len, int *port);
/* Hold every worker at its safe point (reload.c); -1: another change or
 * listing is running (only when called from a worker). */
int server_freeze(server *s);
void server_thaw(server *s);

/* The admin console: run one simple query; the answer goes into o (without ReadyForQuery).
 * full: an admin_users member; else stats_users, who may only SHOW.
 * Returns 0, or ADMIN_WAIT_*: the answer waits until admin_wait_done (db
 * set to the command's database, CFG_NAME bytes). */
enum { ADMIN_WAIT_PAUSE = 1, ADMIN_WAIT_CLOSE = 2 };
int admin_query(server *s, bool full, const char *sql, pq_buf *o, char *db);
/* The waiting command's condition: true when met (CommandComplete then in o). */
bool admin_wait_done(server *s, int kind, const char *db, pq_buf *o);

/* Reserve pools: take or give back reserve connections (each worker's tick). */
void pool_reserve_wanted(spool *p, int64_t now_ms);
void pools_reserve_tick(server *s, int64_t now_ms);

/* stats.c: the SHOW STATS family, the stats_period tick and log line, and
 * weir's own Prometheus families. */
void spool_sum(const spool *p, int nworkers, st_sum *out);
void stats_tick(server *s, int64_t now_ms); /* worker 0, every tick */
/* Per second (counts, bytes) and per item (times, us) over a period. */
typedef struct stats_avg {
    uint64_t xact, query, recv, sent, xact_us, query_us, wait_us;
} stats_avg;
void stats_average(const st_sum *delta, int64_t period_ms, stats_avg *a);
/* Totals and the last period's figures, summed per database: a malloc'd
 * array (free it), in pool order; *period_ms is 0 before the first period. */
typedef struct db_stats {
    char db[CFG_NAME];
    st_sum total, delta;
} db_stats;
size_t stats_by_db(server *s, db_stats **out, int64_t *period_ms);
char *metrics_page(server *s, size_t *len); /* malloc'd; NULL: no memory */

/* http.c: the HTTP door: /metrics, /health, /ready and the SQL API (httpapi.c). */
int http_start(server *s); /* 0: listening, or off (no http_listen_port) */
void http_stop(server *s);
void http_config_changed(server *s); /* after a reload or SET */

/* httpapi.c: SQL over HTTP. */
struct http_req;
struct http_resp;
struct sbuf;
int api_start(server *s); /* opens the SQLite databases, starts the session reaper */
void api_stop(server *s); /* ends every session, closes the SQLite databases */
/* path is below /v1/ */
void api_handle(server *s, struct http_req *rq, struct http_resp *rs, const char *path);
void api_metrics(server *s, struct sbuf *b); /* Prometheus lines */

/* reload.c: RELOAD/SIGHUP and SET. 0, or -1 with err set (the running
 * configuration is then unchanged). */
int server_reload(server *s, char *err, size_t errlen);
int server_set(server *s, const char *key, const char *value, char *err, size_t errlen);
void worker_hold_point(worker *w); /* a worker's safe point */

extern _Thread_local worker *current_worker;

/* worker.c */
void *worker_main(void *arg);
int worker_init(worker *w, server *s, int id);
void worker_destroy(worker *w);

#endif
