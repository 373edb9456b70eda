/* client.h — a PostgreSQL-door client (client.c): its states and the
 * struct the console (admin.c) reads for SHOW CLIENTS and marks for KILL;
 * the door the workers serve (pg_door); what the door keeps per server
 * connection. */
#ifndef WEIR_SERVER_CLIENT_H
#define WEIR_SERVER_CLIENT_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/tls.h"
#include "core/worker.h"
#include "pg/backend.h"
#include "pg/prep.h"
#include "pg/proto.h"
#include "weir/weir.h"

typedef struct client client;
typedef struct spool spool;
typedef struct scram_server scram_server;

/* A client's state; client.c has the diagram and the table of legal moves
 * (set_state is the only way to change it, and refuses any other). */
typedef enum cstate {
    CL_LOGIN,           /* waiting for the startup packet */
    CL_TLS,             /* the TLS handshake after an SSLRequest; then CL_LOGIN again */
    CL_AUTH_START,      /* the authentication method is being chosen */
    CL_AUTH_QUERY,      /* the user's secret is being looked up with auth_query */
    CL_AUTH_PASSWORD,   /* cleartext or md5 asked */
    CL_AUTH_SASL_FIRST, /* SCRAM: client-first-message awaited */
    CL_AUTH_SASL_FINAL, /* SCRAM: client-final-message awaited */
    CL_WELCOME,         /* authenticated; the pool's first server brings the parameters */
    CL_IDLE,            /* logged in, no server connection */
    CL_WAITING,         /* waiting for a server connection */
    CL_ACTIVE,          /* linked to a server connection */
    CL_CONSOLE,         /* logged in to the admin console */
    CL_CLOSED,          /* socket closed: freed at the next tick, or when its checkout completes */
    CL_NSTATES
} cstate;
_Static_assert(CL_NSTATES <= WORKER_NSTATES, "a worker counts every client state");

#define NTRACKED 6 /* parameters kept in line on every server (client.c: tracked) */
/* The tracked values packed (per value: its length, its bytes), so that a
 * client's wants and a server's values compare with one memcmp over a line
 * or two instead of a string compare of two cold 128-byte arrays each
 * (sync_params). Values that do not fit are compared one by one. */
#define PACK_MAX 96
#define NEXTRA   8 /* and of track_extra_parameters, per client */

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
    /* Where each tracked parameter is in the server's params: k + 1 for
     * params.value[k]; 0 not looked up; -1 absent when params had tidx_n
     * entries (they are only ever added to) */
    int8_t tidx[NTRACKED];
    int tidx_n;
    /* The server's tracked values packed (PACK_MAX), as of params.ver
     * have_ver (0, as made: none yet, and then have_len is 0 too); have_len
     * 0: not all there, or too long */
    uint32_t have_ver;
    uint8_t have_len;
    uint8_t have[PACK_MAX];
    int n;
    be_watch w[];
} be_ext;

struct client {
    /* What a transaction reads and writes comes first, together: with a
     * thousand clients a client's struct is seldom still in the cache when
     * its next query comes, and each line it touches is a miss
     * (docs/ARCHITECTURE.md, "A client's lines"). free_client and the
     * login are the only readers of most of what follows the marker. The
     * first line is also all the tick reads of a client it passes by
     * (tick_quiet). */
    worker *w;
    client *prev, *next; /* the worker's clients: the tick walks them (timeouts) */
    spool *pool;
    cstate state;
    bool terminate, checkout_pending, unsynced, stmt_refused;
    bool wait_notified; /* query_wait_notify's NOTICE sent for this wait */
    bool xdrop;         /* ps: the rest of the message at xst is dropped, not passed */
    bool sst_drop;
    bool in_whole_need; /* c->in ends in part of a message weir must see whole: read on */
    bool in_xact;
    bool admin;        /* on the admin console */
    bool bad_move;     /* set_state refused a move: the next tick closes it */
    uint8_t admit_try; /* over a db/user client limit at login: 1 waits for the tick, 2 did */
    int skip_rfq, pending;
    int64_t t_wait; /* us: the checkout's start */
    int fd;
    short cev_flags, sev_flags;
    uint32_t in_scanned, out_scanned;
    weir_conn *conn;
    backend *be;
    be_watch *watch; /* the server's read registration in this worker */
    ps_client *ps;   /* named prepared statements kept by weir (transaction/statement mode) */
    SSL *tls;        /* after an SSLRequest answered 'S': every byte goes through it */
    /* track_extra_parameters the client set (names as it sent them);
     * allocated on the first, as few clients send any */
    be_params *xwant;
    uint64_t req;
    int64_t t_activity;      /* ms */
    int64_t t_query, t_xact; /* us: the oldest request in flight, the open transaction's start */
    completion done;         /* the checkout's result, queued to the worker (checkout_done) */
    weir_conn *done_conn;
    int done_status;
    /* (these two fill the line's last 4 bytes: each transaction reads them) */
    uint8_t want_len; /* want packed (PACK_MAX): 0 when one is not set, or they do not fit */
    bool counted;     /* in its pool's cl_logged (set_state) */
    pq_buf in, out, pre;
    pq_stream cst, sst;
    pq_stream xst;            /* ps: the framing of c->in as it is translated */
    _Atomic bool cancel_busy; /* cancel_conn's lock, against handle_cancel on another thread */
    bool ps_full; /* ps: PS_OWED_MAX replies owed; the rest of c->in waits for them (in padding) */
    weir_conn *cancel_conn;      /* the linked server, while a cancel may be forwarded to it */
    struct event cev;            /* the client's socket */
    uint8_t want_pack[PACK_MAX]; /* want_len's bytes (its first ones only, as a rule) */
    /* --- the rest: the login, the console, the tick, the close --- */
    struct event sev; /* write interest on the server, when a send was short */
    uint64_t id;      /* io_new_id(): SHOW CLIENTS' id, KILL_CLIENT's argument */
    bool reject;
    bool reject_deferred; /* over max_client_conn at start-up: looked at again next tick */
    /* A replication connection: its startup parameters (name\0value\0
     * pairs, owned) for its own server, and SHOW CLIENTS' word for it. */
    char *repl;
    size_t repl_len;
    const char *replication;         /* NULL, "physical" or "database" */
    bool admin_full;                 /* an admin_users member */
    bool admin_peer;                 /* user pgbouncer over the Unix socket by weir's own OS user */
    struct named_count *dbc, *userc; /* counted by database and user (clients_admit) */
    bool is_unix;
    struct sockaddr_storage peer; /* the other end (TCP), as accept gave it */
    bool killed;                  /* KILL: closed by its worker (worker_kill_marked) */
    int admin_wait;               /* ADMIN_WAIT_*: the answer waits (PAUSE, WAIT_CLOSE) */
    char admin_wait_db[CFG_NAME];
    int64_t admin_busy_ms; /* ADMIN_WAIT_BUSY: when the command first found the change lock taken */
    bool tls_want_write;   /* the handshake waits to write */
    bool tls_direct;       /* TLS from the first byte (PostgreSQL 17's sslnegotiation=direct) */
    char user[CFG_NAME], dbname[CFG_NAME];
    char *secret; /* owned: the user's secret while logging in; NULL: none (or no such user) */
    char want[NTRACKED][BE_VALUE];
    bool want_set[NTRACKED];
    uint32_t my_pid, my_key;
    client *key_next;
    int64_t t_connect; /* ms */
    uint8_t salt[4];
    scram_server *scram;
    struct auth_lookup *aq; /* during CL_AUTH_QUERY */
    bool secret_from_query;
    int auth_method;         /* AUTH_*: auth_type, or auth_hba_file's rule for this login */
    char auth_map[CFG_NAME]; /* that rule's map= (cert, peer), or "" */
};

/* What the layout above promises (client structs are 64-byte aligned): the
 * tick's pass-by reads the first line only, and counted and want_len share
 * the line of t_query, which every transaction touches. */
_Static_assert(offsetof(client, t_wait) + sizeof(int64_t) <= 64,
               "tick_quiet's fields are on a client's first line");
_Static_assert(offsetof(client, counted) / 64 == offsetof(client, t_query) / 64 &&
                   offsetof(client, want_len) / 64 == offsetof(client, t_query) / 64,
               "counted and want_len are on a line each transaction touches");

/* The PostgreSQL door: what a worker does with its connections. */
extern const worker_door pg_door;

#endif
