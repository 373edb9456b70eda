/* backend.h — server connections: a libweir driver that logs in to PostgreSQL over its wire
 * protocol. */
#ifndef WEIR_SERVER_BACKEND_H
#define WEIR_SERVER_BACKEND_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/tls.h"
#include "weir/weir.h"

#define BE_MAX_PARAMS 32
#define BE_NAME       64
#define BE_VALUE      128

typedef struct be_params {
    int n;
    uint32_t ver; /* moves on with every change (be_params_set, be_params_drop) */
    char name[BE_MAX_PARAMS][BE_NAME];
    char value[BE_MAX_PARAMS][BE_VALUE];
} be_params;

/* Set (or add) name=value; returns true if the value changed. */
bool be_params_set(be_params *p, const char *name, const char *value);
/* Remove entry i, the last one taking its place: not for a server's own
 * params (whose indexes are remembered), only for weir's lists. */
void be_params_drop(be_params *p, int i);
const char *be_params_get(const be_params *p, const char *name);
/* Where name is in p (its index; entries are only ever added), or -1. */
int be_params_find(const be_params *p, const char *name);

/* What a pool's connections are opened with (the driver context), made with
 * the pool. Where and as whom (host, port, dbname, password, the keys)
 * change on a reload or a client's new password: read and write them under
 * mu (be_connect takes a copy; a connection keeps its own host and port). The queries,
 * timeouts and describe are fixed for the pool's life. */
typedef struct be_target {
    pthread_mutex_t mu;
    char host[256];
    int port;
    char dbname[64], user[64];
    char *password; /* owned: plain, or "md5..." (enough for md5 auth only); NULL = none */
    /* SCRAM pass-through: a client's ClientKey and the ServerKey of its
     * secret, used when there is no plain password. */
    bool have_keys;
    bool scram_secret_only; /* auth_file has only a SCRAM secret for the user (for the message) */
    uint8_t client_key[32], server_key[32];
    bool check; /* server_check_query is set: check_query ("": an empty query) */
    char check_query[256];
    char reset_query[256];
    char connect_query[256];
    int64_t io_timeout_ms; /* for check, reset and connect queries */
    bool tcp_keepalive;
    int sslmode;  /* server_tls_sslmode (SSLMODE_*); over a Unix socket, never TLS */
    tls_ref *tls; /* the server's context for connections to servers */
    char describe[256];
    /* More startup parameters (name\0value\0 pairs; owned, NULL: none): a
     * replication client's, passed on as they are. */
    char *startup_extra;
    size_t startup_extra_len;
    /* host may be a comma-separated list (PgBouncer 1.24): round_robin
     * (load_balance_hosts = round-robin) starts each new connection at the
     * next entry; otherwise (disable) at the entry that last worked. A
     * failed entry moves on to the next, within the same connect. Under mu. */
    bool round_robin;
    unsigned host_next;
    bool host_ok;             /* disable: the entry at host_next worked last time */
    pthread_mutex_t probe_mu; /* disable, no entry known to work: one connect at a time */
    /* A failed attempt at one host, for the log (may be NULL): why is
     * PgBouncer's "closing because" reason. */
    void (*on_fail)(void *ud, const char *host, int port, const char *why);
    void *on_fail_ud;
} be_target;

/* Replace t's password (NULL or "": none); the old one is wiped. Under mu
 * once the target is shared. 0, or WEIR_ENOMEM (then t has none). */
int be_target_set_password(be_target *t, const char *pw);
/* Start a non-blocking connect to a PostgreSQL server: host is a name or
 * an address, or a socket directory ("" or beginning with '/': the Unix
 * socket <dir>/.s.PGSQL.<port>, /tmp when empty); port 5432 when 0. The one
 * way weir connects to a server (server logins, cancels, /ready's probes).
 * *fd is the socket. 0: connected; 1: under way (wait for POLLOUT, then
 * read SO_ERROR); WEIR_ECONNECT with err set. */
int be_connect_start(const char *host, int port, bool keepalive, int *fd, char *err, size_t errlen);
/* The driver's ctx_free: the password wiped, then t. */
void be_target_free(void *t);

/* One server connection. While a client holds it, the client's worker owns
 * all I/O on fd; otherwise the engine's threads may validate or reset it. */
typedef struct backend {
    int fd;
    uint64_t id;      /* io_new_id(): SHOW SERVERS' id */
    char txn;         /* status of the last ReadyForQuery: 'I', 'T' or 'E' */
    bool needs_reset; /* run reset_query before the next user (session pooling) */
    bool unclean;     /* released with a request in flight: never reuse */
    bool ps_gone; /* a reset ran DISCARD ALL / DEALLOCATE ALL: its prepared statements are gone */
    uint32_t pid, key; /* BackendKeyData, for cancel requests */
    be_params params;  /* ParameterStatus as the server last reported it */
    be_params *xset;   /* track_extra_parameters weir SET here (not reported); NULL: none */
    be_target *target; /* its pool's (whose address may have moved since: see host) */
    SSL *tls;          /* TLS to the server (server_tls_sslmode), or NULL */
    char host[256];    /* where this connection went (cancels go there): "" = /tmp */
    int port;
    void *ext; /* the server's per-connection state (its event registrations); NULL at connect */
    /* CancelRequests forwarded to this connection and not yet finished, and
     * BE_PARKED once its client let it go meanwhile: then the last cancel to
     * finish checks it in, so no later client's query can be cancelled. */
    _Atomic unsigned cancels;
} backend;
#define BE_PARKED 0x80000000u

extern const weir_driver be_driver;

/* Send a CancelRequest for (pid, key) to the target's server: opens a new
 * connection, as the protocol wants. Blocking, bounded by timeout_ms. */
int be_cancel(const char *host, int port, uint32_t pid, uint32_t key, int64_t timeout_ms);

/* Blocking I/O on a server connection's non-blocking socket, bounded by a
 * deadline (weir_now_ns() clock): WEIR_ETIMEDOUT, WEIR_EDRIVER or 0. */
int be_wait_fd(int fd, short events, int64_t deadline_ns);
int be_write_all(int fd, SSL *tls, const uint8_t *p, size_t n, int64_t deadline_ns);
/* Read one whole message into b; m->body points into b until the next call. */
struct pq_buf;
struct pq_msg;
int be_read_msg(int fd, SSL *tls, struct pq_buf *b, int64_t deadline_ns, struct pq_msg *m);

/* What a message from the server changes in weir's record of the connection:
 * ParameterStatus (params), a DISCARD ALL / DEALLOCATE ALL tag (ps_gone),
 * ReadyForQuery (txn). Every reader of server messages outside the byte
 * pump calls it. */
struct backend;
void be_track(struct backend *be, const struct pq_msg *m);

/* Quote s as an SQL string literal into out ('...' with '' for '). */
int be_quote_literal(const char *s, char *out, size_t outlen);

#endif
