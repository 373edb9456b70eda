/* server.h — the process: the server object every module hangs off (its
 * configuration, workers, pools, log, and the doors' shared state), and
 * starting and stopping it (server.c: listeners, workers). */
#ifndef WEIR_SERVER_SERVER_H
#define WEIR_SERVER_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "core/config.h"

#define COUNT_BUCKETS 256  /* server.counts */
#define POOL_BUCKETS  1024 /* server.pool_ix */

#define WEIR_VERSION      "0.1.0"
#define WEIR_VERSION_TEXT "weir " WEIR_VERSION

typedef struct server server;
typedef struct worker worker;
typedef struct worker_door worker_door;
typedef struct spool spool;
typedef struct named_limit named_limit;
typedef struct ps_registry ps_registry;
struct client;

struct server {
    cfg cfg;
    const worker_door *door; /* what the workers do with connections (pg/client.c) */
    int nworkers;
    int nhttp; /* HTTP request threads */
    int nstat; /* blocks of a pool's wstats: one per worker, then one the HTTP door shares */
    worker *workers;
    int unix_fd;
    int steer_fd[8]; /* worker 0's TCP sockets, one per address (worker.c, steer) */
    int nsteer;
    bool steered; /* worker 0's thread: new TCP connections go to worker 0 */
    /* Packing (worker.c): while the load fits in one worker, every client
     * gathers on worker 0. Changed by worker 0's thread only. */
    atomic_bool packed;
    int pack_calm;                  /* worker 0: calm ticks in a row (< 0: after leaving) */
    int pack_skip;                  /* worker 0: ticks to let pass before the next try to move */
    _Atomic uint64_t clients_moved; /* clients moved from one worker to another */
    _Atomic uint64_t pack_changes;  /* times packing began or ended */
    char unix_path[300];
    pthread_mutex_t pools_lock;
    spool *pools;
    spool *pool_ix[POOL_BUCKETS]; /* the same pools, chained by database and user (pools.c) */
    named_limit *limits;          /* under pools_lock */
    /* logged-in clients by database and user: chains by the name's hash (pools.c) */
    struct named_count *counts[COUNT_BUCKETS];
    atomic_int nclients;
    _Atomic long long accept_errors;                /* accept() failing for want of descriptors */
    _Atomic long long tls_handshakes, tls_failures; /* TLS handshakes with clients and servers */
    struct authguard *guard;     /* failed-login back-off, both doors (authguard.h) */
    atomic_int cancels_inflight; /* cancel and reset threads running (server_stop waits for them) */
    struct peering *peering;     /* forwards to [peers] under way (pg/peering.c) */
    _Atomic int64_t accept_log_ms; /* the last time that was logged */
    /* cancel keys: (pid, key) given to clients -> the client */
    pthread_mutex_t keys_lock;
    struct client **keys;
    size_t keys_cap, nkeys;
    atomic_bool shutting_down;
    atomic_int shutdown_mode; /* SHUTDOWN_*: a shutdown that waits, begun by server_shutdown */
    bool quiet;
    bool takeover;          /* -R: started to take over from a running weir (handover.h) */
    unsigned long unix_ino; /* the Unix socket's inode, to unlink only our own */
    int verbose;
    FILE *logf;            /* under log_lock once workers run */
    char logpath[CFG_STR]; /* the logfile's path at start (SIGHUP reopens it) */
    pthread_mutex_t log_lock;
    pthread_mutex_t stats_lock;
    int64_t stats_at_ms, stats_period_ms; /* the last stats_period tick, and its length */
    /* The console's figures (SHOW STATS' "pgbouncer" row, as PgBouncer's):
     * not a pool, only its ws (one block per worker), prev and delta. */
    struct spool *console;
    struct http_door *http; /* http_listen_addr/port, or NULL */
    struct http_api *api;   /* the SQL-over-HTTP state (httpapi.c) */
    struct lite_dbs *lite;  /* the HTTP door's SQLite databases (literun.c) */
    struct my_dbs *mysql;   /* the HTTP door's MySQL databases (myrun.c) */
    /* After a reload or SET has swapped cfg (workers held): what else must
     * follow it (the HTTP door's limits); NULL: nothing. */
    void (*config_changed)(server *s);
    /* configuration changes (reload.c): one at a time (change_mu); workers
     * held at a safe point while cfg is swapped (worker.c); other threads
     * read cfg under cfg_rw */
    pthread_mutex_t change_mu, hold_mu;
    pthread_cond_t hold_cv;
    atomic_bool holding;
    int held;
    pthread_rwlock_t cfg_rw;
    ps_registry *ps_reg; /* max_prepared_statements: every statement clients prepared */
    /* DISABLE db: names refused at login (under pools_lock) */
    char (*disabled)[CFG_NAME];
    size_t ndisabled;
    atomic_bool log_connections, log_disconnections; /* cfg's, for the engine's threads */
    atomic_bool suspended;  /* SUSPEND: clients' sockets are not read until RESUME */
    atomic_bool paused_all; /* PAUSE without a database (SHOW STATE) */
    bool syslog_on;         /* syslog = 1 at start (fixed until a restart) */
    /* TLS towards clients (tls.c): the context, remade by a reload */
    pthread_mutex_t tls_mu;
    struct ssl_ctx_st *tls_client; /* NULL: client_tls_sslmode = disable */
    struct ssl_ctx_st *tls_http;   /* NULL: http_tls_sslmode = disable */
    struct tls_ref *tls_out;       /* towards servers (server_tls_*; tls.c) */
};

/* Listeners and workers, not yet running (s->door set first). 0 or -1. */
int server_start(server *s);
/* The workers' threads start: from now on a RELOAD may change s->cfg, so
 * whatever reads it unlocked at start (the HTTP door) starts before. */
int server_run(server *s);
/* Stop the loops, join the workers, close everything. */
void server_stop(server *s);

/* A shutdown that waits, as PgBouncer 1.25's: both stop accepting (the TCP
 * listeners close; the Unix socket stays, for the console only).
 * WAIT_FOR_SERVERS (SIGINT) also pauses every pool and closes the clients
 * waiting for a server ("server shutting down"); weir exits once every
 * server connection is back. WAIT_FOR_CLIENTS (SIGTERM) exits once every
 * client but the console's has left. */
enum { SHUTDOWN_NONE, SHUTDOWN_WAIT_FOR_SERVERS, SHUTDOWN_WAIT_FOR_CLIENTS };
void server_shutdown(server *s, int mode);
/* Clients other than the console's, on every worker. */
int server_app_clients(server *s);

#endif
