/* server.h — the weir daemon's shared types: the server, its workers, pools and clients. */
#ifndef WEIR_SERVER_SERVER_H
#define WEIR_SERVER_SERVER_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "config.h"
#include "proto.h"
#include "weir/weir.h"

#define WEIR_VERSION_TEXT "weir 0.1.0"

typedef struct server server;
typedef struct worker worker;
typedef struct client client;

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
    int n;
    be_watch w[];
} be_ext;

/* A connection to cancel, handed to a short-lived thread. */
typedef struct cancel_req {
    char host[256];
    int port;
    uint32_t pid, key;
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
    int efd; /* eventfd: completions are queued */
    struct event efd_ev;
    struct event local_ev; /* completions queued by this worker's own thread: no syscall */
    pthread_mutex_t qlock;
    completion *q;
    size_t qlen, qcap;
    client *clients;   /* every client of this worker, for timeouts */
    client *graveyard; /* freed at the end of the loop turn */
    atomic_bool stop;
};

struct server {
    cfg cfg;
    int nworkers;
    worker *workers;
    int unix_fd;
    char unix_path[300];
    pthread_mutex_t pools_lock;
    spool *pools;
    named_limit *limits; /* under pools_lock */
    atomic_int nclients;
    /* cancel keys: (pid, key) given to clients -> the client */
    pthread_mutex_t keys_lock;
    client **keys;
    size_t keys_cap, nkeys;
    atomic_bool shutting_down;
    bool quiet;
    int verbose;
    FILE *logf;
    pthread_mutex_t log_lock;
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
/* Pause or resume every pool, or those of database db ("" = all). false: no
 * such database. why goes to the log. */
bool pools_pause(server *s, const char *db, bool pause, const char *why);

/* The admin console: run one simple query; the answer goes into o (without ReadyForQuery).
 * full: an admin_users member; else stats_users, who may only SHOW. */
void admin_query(server *s, bool full, const char *sql, pq_buf *o);

/* Reserve pools: take or give back reserve connections (each worker's tick). */
void pool_reserve_wanted(spool *p, int64_t now_ms);
void pools_reserve_tick(server *s, int64_t now_ms);

extern _Thread_local worker *current_worker;

/* worker.c */
void *worker_main(void *arg);
int worker_init(worker *w, server *s, int id);
void worker_destroy(worker *w);

#endif
