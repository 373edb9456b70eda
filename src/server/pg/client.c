/* client.c — a client's life: login, authentication, pooling, and the byte pump between it and its
 * server.
 *
 * Each client belongs to one worker and is touched only by that worker's
 * thread; the only things other threads see are its cancel key (under
 * server.keys_lock) and `cancel_conn` (under its cancel_busy flag).
 *
 * Cancels: a CancelRequest naming a client's key is forwarded, from a
 * short-lived thread, to the server connection the client has linked at
 * that moment; the connection's `cancels` count keeps it out of the pool
 * until that cancel has finished (PgBouncer's sv_being_canceled), so a
 * late cancel never reaches the next client's query.
 *
 *   CL_LOGIN --startup_packet()--> CL_AUTH_START --auth_start()--> [CL_AUTH_QUERY
 *            (auth_user's lookup) -->] CL_AUTH_PASSWORD or CL_AUTH_SASL_FIRST -->
 *            CL_AUTH_SASL_FINAL --auth_done()--> CL_WELCOME (no cached
 *            ParameterStatus yet: wait for a server), CL_IDLE, or CL_CONSOLE
 *   CL_IDLE --data, request_server()--> CL_WAITING --link()--> CL_ACTIVE
 *            (or straight to CL_ACTIVE when a connection is free)
 *   CL_ACTIVE --ReadyForQuery 'I', nothing in flight, transaction pooling,
 *            unlink()--> CL_IDLE
 *   any --client_close()--> CL_CLOSED (freed at the next tick, or when its
 *            checkout completes)
 * moves[] below is that diagram as data; set_state refuses anything else.
 *
 * A function that may close its client says so: it returns false (an int
 * one, -1) when the client is gone, and its caller then touches nothing
 * but returns; code that gets no such answer checks c->state == CL_CLOSED.
 *
 * Client -> server bytes go through c->in: scanned for message boundaries
 * (counting the requests that will each end in a ReadyForQuery) and sent
 * as they are. Server -> client bytes go through c->out: scanned for
 * ReadyForQuery and ParameterStatus, and sent as they are. Only weir's own
 * messages (the SETs that bring a server's session in line with the
 * client's parameters) are dropped from the stream.
 */
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <pwd.h>
#include <unistd.h>

#include "pg/client.h"

#include "core/auth.h"
#include "core/authguard.h"
#include "core/hba.h"
#include "core/io.h"
#include "core/log.h"
#include "core/pools.h"
#include "core/server.h"
#include "core/stats.h"
#include "pg/admin.h"
#include "pg/authq.h"
#include "pg/peering.h"

#define HIGH_WATER     (256u * 1024) /* stop reading a side whose output waits above this */
#define READ_CHUNK     16384u
#define LOGIN_CHUNK    1024u      /* reads before login: startup and auth messages are small */
#define CLIENT_MAX_MSG (1u << 30) /* PostgreSQL's own limit for a message */
#define STREAM_OVER    65536u     /* a simple Query or a Bind longer than this streams (ps_whole) */
#define BIND_HEAD_MAX  65536u     /* a streamed Bind's portal and statement names, at most */
/* max_prepared_statements: weir keeps an entry (some 32 bytes) for each
 * reply the server or weir owes a client. A client that pipelines small
 * messages (a Sync is 5 bytes) without reading its replies would have
 * weir queue an entry for each one the sockets hold, about 1.5 million
 * (50 MB); past this many owed, the rest of its messages wait in c->in
 * (and then in the kernel) until the replies bring it under half. */
#define PS_OWED_MAX 16384u

/* A connection to cancel, handed to a short-lived thread. */
typedef struct cancel_req {
    char host[256];
    int port;
    uint32_t pid, key;
    weir_conn *conn; /* kept out of the pool until this cancel finishes */
    struct server *srv;
} cancel_req;

_Static_assert(offsetof(client, sev) <= 9 * 64, "a transaction's fields of a client stay together");

/* Parameters a client may set that weir keeps in line on every server it lands on. */
static const char *const tracked[NTRACKED] = {
    "client_encoding", "DateStyle", "TimeZone", "IntervalStyle", "standard_conforming_strings",
    "application_name"};

/* ------------------------------------------------------------------------ */

static void update_events(client *c);
static void auth_ask(client *c);
static void auth_lookup_send(client *c, weir_conn *conn);
static void client_close(client *c, const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool process_in(client *c);
static void want_put(client *c, size_t i, const char *v, size_t n);

/* Milliseconds (activity for the timeouts, state changes): the coarse clock,
 * a few ms fine and much cheaper to read, several times a transaction. Only
 * compared with each other: the login guard, which the HTTP door feeds too,
 * gets weir_now_ms(). */
static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Microseconds for the traffic figures (wait, query and transaction times):
 * inside the busy callbacks, the time their callback began (clock_hold). */
static int64_t now_us(void)
{
    return (clock_held_ns ? clock_held_ns : weir_now_ns()) / 1000;
}

/* This worker's traffic figures for c's pool; NULL before login and on the console. */
static inline wstats *cws(client *c)
{
    return c->pool && !c->admin ? &c->pool->ws[c->w->id] : NULL;
}

/* pq_buf_reserve may move the data down: keep *scanned pointing at the same byte. */
static int reserve(pq_buf *b, uint32_t *scanned, uint32_t n)
{
    uint32_t rel = *scanned - b->start;
    int rc = pq_buf_reserve(b, n);
    *scanned = b->start + rel;
    return rc;
}

/* The legal moves: bit t of moves[f] allows f -> t. */
#define M(st) (1u << (st))
static const uint32_t moves[CL_NSTATES] = {
    [CL_LOGIN] = M(CL_TLS) | M(CL_AUTH_START) | M(CL_CLOSED),
    [CL_TLS] = M(CL_LOGIN) | M(CL_CLOSED),
    [CL_AUTH_START] = M(CL_AUTH_QUERY) | M(CL_AUTH_PASSWORD) | M(CL_AUTH_SASL_FIRST) |
                      M(CL_WELCOME) | M(CL_IDLE) | M(CL_CONSOLE) | M(CL_CLOSED),
    [CL_AUTH_QUERY] = M(CL_AUTH_PASSWORD) | M(CL_AUTH_SASL_FIRST) | M(CL_WELCOME) | M(CL_IDLE) |
                      M(CL_CLOSED), /* trust: found, in */
    [CL_AUTH_PASSWORD] = M(CL_WELCOME) | M(CL_IDLE) | M(CL_CONSOLE) | M(CL_CLOSED),
    [CL_AUTH_SASL_FIRST] = M(CL_AUTH_SASL_FINAL) | M(CL_CLOSED),
    [CL_AUTH_SASL_FINAL] = M(CL_WELCOME) | M(CL_IDLE) | M(CL_CONSOLE) | M(CL_CLOSED),
    [CL_WELCOME] = M(CL_ACTIVE) | M(CL_CLOSED),
    [CL_IDLE] = M(CL_WAITING) | M(CL_ACTIVE) | M(CL_CLOSED),
    [CL_WAITING] = M(CL_ACTIVE) | M(CL_CLOSED),
    [CL_ACTIVE] = M(CL_IDLE) | M(CL_CLOSED),
    [CL_CONSOLE] = M(CL_CLOSED),
    [CL_CLOSED] = 0,
};

static const char *const state_names[CL_NSTATES] = {
    "login",           "tls",     "auth_start", "auth_query", "auth_password", "auth_sasl_first",
    "auth_sasl_final", "welcome", "idle",       "waiting",    "active",        "console",
    "closed"};

/* The one way a client changes state: checked against moves in every build,
 * with the worker's per-state counts and the pool's waiting count kept. A
 * refused move changes nothing, is logged, and the client is closed at the
 * next tick (false). */
static bool set_state(client *c, cstate to)
{
    cstate from = c->state;
    if (from == to) return true;
    if (!(moves[from] & M(to))) {
        srv_log(c->w->srv, "ERROR", "C-%p: internal error: client state %s -> %s refused",
                (void *)c, state_names[from], state_names[to]);
        c->bad_move = true;
        return false;
    }
    nstate_add(c->w, from, -1);
    if (to != CL_CLOSED)
        nstate_add(c->w, to, 1);
    else
        worker_count_add(&c->w->nclients, -1);
    if (c->counted && (from == CL_WAITING) != (to == CL_WAITING)) /* its worker's block only */
        st_add(&c->pool->ws[c->w->id].waiting, to == CL_WAITING ? 1 : (uint64_t)-1);
    c->state = to;
    c->t_activity = now_ms();
    return true;
}

/* Logged in: to a pool or to the console (whether a server is linked or not). */
static bool logged_in(const client *c)
{
    return c->state >= CL_IDLE && c->state <= CL_CONSOLE;
}

/* --- cancel keys --------------------------------------------------------- */

static size_t key_bucket(server *s, uint32_t key)
{
    return key & (s->keys_cap - 1);
}

static void keys_add(client *c)
{
    server *s = c->w->srv;
    pthread_mutex_lock(&s->keys_lock);
    if (!s->keys) {
        s->keys_cap = 4096;
        s->keys = calloc(s->keys_cap, sizeof *s->keys);
    }
    if (s->keys) {
        size_t b = key_bucket(s, c->my_key);
        c->key_next = s->keys[b];
        s->keys[b] = c;
        s->nkeys++;
    }
    pthread_mutex_unlock(&s->keys_lock);
}

static void keys_remove(client *c)
{
    server *s = c->w->srv;
    pthread_mutex_lock(&s->keys_lock);
    if (s->keys) {
        for (client **pp = &s->keys[key_bucket(s, c->my_key)]; *pp; pp = &(*pp)->key_next)
            if (*pp == c) {
                *pp = c->key_next;
                s->nkeys--;
                break;
            }
    }
    pthread_mutex_unlock(&s->keys_lock);
}

/* A forwarded cancel is over (sent, or never sent): the last one of a
 * connection its client let go gives the connection back. */
static void cancel_finish(cancel_req *r)
{
    backend *be = weir_conn_handle(r->conn);
    if (atomic_fetch_sub(&be->cancels, 1) == (BE_PARKED | 1)) {
        atomic_store(&be->cancels, 0);
        weir_checkin(r->conn);
    }
    atomic_fetch_sub(&r->srv->cancels_inflight, 1);
    free(r);
}

/* cancel_conn's lock. It is held for a few instructions (a pointer
 * stored, or read with the four fields a cancel needs), and taken twice a
 * transaction (link_server, unlink_server) by the client's own thread, so a
 * flag: glibc's mutex cost two calls and some 60 instructions a pair. Only a
 * CancelRequest on another thread can find it taken; it yields meanwhile. */
static void cancel_lock(client *c)
{
    while (atomic_exchange_explicit(&c->cancel_busy, true, memory_order_acquire)) sched_yield();
}

static void cancel_unlock(client *c)
{
    atomic_store_explicit(&c->cancel_busy, false, memory_order_release);
}

static void *cancel_thread(void *arg)
{
    cancel_req *r = arg;
    (void)be_cancel(r->host, r->port, r->pid, r->key, 10000);
    cancel_finish(r);
    return NULL;
}

/* The client whose key (pid, key) is: forward the cancel to the server
 * running its query, if any. false: no such client here. */
static bool cancel_local(server *s, uint32_t pid, uint32_t key)
{
    cancel_req *r = NULL;
    bool found = false;
    pthread_mutex_lock(&s->keys_lock);
    if (s->keys) {
        for (client *c = s->keys[key_bucket(s, key)]; c; c = c->key_next) {
            if (c->my_key != key || c->my_pid != pid) continue;
            found = true;
            cancel_req *m = malloc(sizeof *m); /* (outside the flag: it is held briefly) */
            cancel_lock(c);
            if (c->cancel_conn && c->pool && m) {
                r = m;
                m = NULL;
                backend *be = weir_conn_handle(c->cancel_conn);
                atomic_fetch_add(&be->cancels, 1);
                snprintf(r->host, sizeof r->host, "%s", be->host);
                r->port = be->port;
                r->pid = be->pid;
                r->key = be->key;
                r->conn = c->cancel_conn;
                r->srv = s;
                atomic_fetch_add(&s->cancels_inflight, 1);
            }
            cancel_unlock(c);
            free(m);
            break;
        }
    }
    pthread_mutex_unlock(&s->keys_lock);
    if (!r) return found;
    pthread_t th;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &a, cancel_thread, r)) cancel_finish(r); /* no thread: not sent */
    pthread_attr_destroy(&a);
    return true;
}

/* A CancelRequest. A key of this process's own clients is looked up first:
 * keys given before a RELOAD turned peering on carry no peer id. Else, with
 * peering on, the key names its process: another's is forwarded (or
 * dropped), and this one's is looked up again with its TTL bits restored. */
static void handle_cancel(server *s, uint32_t pid, uint32_t key)
{
    uint32_t k = key;
    if (cancel_local(s, pid, key) || peer_route_cancel(s, pid, &k)) return;
    if (k != key) (void)cancel_local(s, pid, k);
}

/* A server connection that needs a ROLLBACK or the reset query before the
 * next user: the engine's checkin runs them (be_reset), which here would
 * block this worker's loop for a round trip, and until io_timeout when the
 * server is this very worker (a [databases] entry pointing at weir's own
 * console). They run on a short-lived thread instead; the connection stays
 * checked out until they are done, so nobody gets it early. server_stop
 * waits for these as for cancels. */
typedef struct reset_req {
    server *srv;
    weir_conn *conn;
} reset_req;

static void *reset_thread(void *arg)
{
    reset_req *r = arg;
    weir_checkin(r->conn);
    atomic_fetch_sub(&r->srv->cancels_inflight, 1);
    free(r);
    return NULL;
}

static void checkin_off_loop(server *s, weir_conn *conn)
{
    const backend *be = weir_conn_handle(conn);
    reset_req *r = !be->unclean && (be->txn != 'I' || be->needs_reset) ? malloc(sizeof *r) : NULL;
    if (r) {
        *r = (reset_req){s, conn};
        atomic_fetch_add(&s->cancels_inflight, 1);
        pthread_t th;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&th, &a, reset_thread, r);
        pthread_attr_destroy(&a);
        if (rc == 0) return;
        atomic_fetch_sub(&s->cancels_inflight, 1);
        free(r);
    }
    weir_checkin(conn); /* clean (or to be closed): nothing to wait for */
}

/* --- life and death ------------------------------------------------------ */

/* The user's secret ("" when there is none). */
static const char *secret_of(const client *c)
{
    return c->secret ? c->secret : "";
}

static void clear_secret(client *c)
{
    if (c->secret) {
        explicit_bzero(c->secret, strlen(c->secret));
        free(c->secret);
    }
    c->secret = NULL;
}

/* The first n bytes of s become the secret; false when out of memory. */
static bool set_secret(client *c, const char *s, size_t n)
{
    clear_secret(c);
    if (!n) return true;
    if (!(c->secret = malloc(n + 1))) return false;
    memcpy(c->secret, s, n);
    c->secret[n] = '\0';
    return true;
}

static void free_client(client *c)
{
    /* a replication client's own pool: its server was checked in (and
     * closed) by now, and no cancel can be on its way to it */
    if (c->pool && c->pool->private_pool)
        pool_release_private(c->pool);
    else
        pool_unpin(c->pool);
    c->pool = NULL;
    free(c->repl);
    free(c->xwant);
    clear_secret(c);
    pq_buf_free(&c->in);
    pq_buf_free(&c->out);
    pq_buf_free(&c->pre);
    ps_client_free(c->ps);
    if (c->scram) scram_server_clear(c->scram);
    free(c->scram);
    free(c);
}

/* Give the server back: clean if nothing is in flight, else it is closed. */
static void unlink_server(client *c, bool client_gone)
{
    if (!c->conn) return;
    c->ps_full = false;
    if (c->sev_flags) {
        event_del(&c->sev);
        c->sev_flags = 0;
    }
    c->watch->c = NULL; /* stays registered: see be_watch */
    c->watch = NULL;
    cancel_lock(c);
    c->cancel_conn = NULL; /* from here no cancel can start for it */
    cancel_unlock(c);
    backend *be = c->be;
    bool in_flight = c->pending > 0 || c->skip_rfq > 0 || c->sst.left || pq_buf_len(&c->pre) ||
                     c->in_scanned != c->in.start || c->unsynced || c->cst.left ||
                     (c->ps && ps_busy(c->ps));
    if (client_gone && in_flight) be->unclean = true;
    if (c->pool->mode == POOL_SESSION && client_gone)
        be->needs_reset = be->target->reset_query[0] != '\0';
    else if (c->w->srv->cfg.server_reset_query_always)
        be->needs_reset = be->target->reset_query[0] != '\0';
    weir_conn *conn = c->conn;
    c->conn = NULL;
    c->be = NULL;
    c->pending = 0;
    c->in_xact = false;
    c->skip_rfq = 0;
    c->unsynced = false;
    c->sst = (pq_stream){0};
    c->xst = (pq_stream){0};
    c->xdrop = false;
    c->sst_drop = false;
    if (c->ps) ps_client_unlink(c->ps);
    pq_buf_reset(&c->pre);
    if (be->unclean || atomic_load(&c->pool->use_once)) weir_conn_mark_broken(conn);
    /* A cancel still on its way to this connection: the last one to finish
     * checks it in (cancel_thread). */
    if (atomic_fetch_or(&be->cancels, BE_PARKED) != 0) return;
    atomic_store(&be->cancels, 0);
    checkin_off_loop(c->w->srv, conn);
}

static void auth_lookup_end(client *c, bool clean);
static const char *peer_of(client *c, char *buf, size_t len);
static int new_cancel_key(client *c);

enum { WHO_LEN = 2 * CFG_NAME + 80 };
/* "db/user@addr:port" as PgBouncer's log lines name a client (pgBadger reads
 * it): "@unix:port" over the Unix socket. */
static const char *who(client *c, char *buf, size_t len)
{
    char addr[64] = "unix";
    int port = c->w->srv->cfg.listen_port;
    if (!c->is_unix) sockaddr_text((const struct sockaddr *)&c->peer, addr, sizeof addr, &port);
    snprintf(buf, len, "%s/%s@%s:%d", c->dbname[0] ? c->dbname : "(nodb)",
             c->user[0] ? c->user : "(nouser)", addr, port);
    return buf;
}

/* A worker's list of its clients (the tick walks it), and the counts
 * that follow it: nclients, and nstate[st] of a client in state st. */
static void clients_link(worker *w, client *c, cstate st)
{
    c->prev = NULL;
    c->next = w->clients;
    if (c->next) c->next->prev = c;
    w->clients = c;
    nstate_add(w, st, 1);
    worker_count_add(&w->nclients, 1);
}

/* Out of w's list only: its counts are set_state's (CL_CLOSED) or the caller's. */
static void clients_unlink(worker *w, client *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        w->clients = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

/* c is gone: out of its counts and lists, its socket closed. last, if
 * any, is written just before the close (best effort: one non-blocking
 * write), after everything c counted in is given up, so that a client that
 * reads its error and at once connects again, or asks the console, finds
 * the place free whichever worker serves it. */
static void destroy_with(client *c, const pq_buf *last);

static void destroy(client *c)
{
    destroy_with(c, NULL);
}

static void destroy_with(client *c, const pq_buf *last)
{
    worker *w = c->w;
    server *s = w->srv;
    if (c->state == CL_CLOSED) return;
    if (c->cev_flags) event_del(&c->cev);
    c->cev_flags = 0;
    if (c->aq) auth_lookup_end(c, false);
    unlink_server(c, true);
    (void)set_state(c, CL_CLOSED);
    worker_client_left(w, now_ms() - c->t_connect);
    if (c->counted) {
        atomic_fetch_sub(&c->pool->cl_logged, 1);
        c->counted = false;
    }
    clients_leave(s, c->dbc, c->userc);
    c->dbc = c->userc = NULL;
    if (c->my_key || c->my_pid) keys_remove(c);
    clients_unlink(w, c);
    atomic_fetch_sub(&s->nclients, 1);
    if (last) {
        /* Whatever was already on its way to the client goes first. */
        uint32_t pend = c->out_scanned - c->out.start;
        if (pend) (void)!io_send(c->fd, c->tls, c->out.p + c->out.start, pend);
        (void)!io_send(c->fd, c->tls, last->p, last->end);
    }
    tls_close(c->tls);
    c->tls = NULL;
    close(c->fd);
    c->fd = -1;
    if (c->checkout_pending) {
        /* Its completion is (or will be) in our queue: freed there. */
        (void)weir_checkout_cancel(c->pool->pool, c->req);
        return;
    }
    /* Freed on the next tick: callers up the stack may still look at c->fd. */
    c->next = w->graveyard;
    w->graveyard = c;
}

static void free_graveyard(worker *w)
{
    while (w->graveyard) {
        client *c = w->graveyard;
        w->graveyard = c->next;
        free_client(c);
    }
}

/* Best effort: the error goes out with one non-blocking write, then the client is gone. */
static void client_close(client *c, const char *sqlstate, const char *fmt, ...)
{
    if (fmt) {
        char msg[512], wb[WHO_LEN];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        /* as PgBouncer words it: "pooler error", then "closing because" */
        if (c->w->srv->cfg.log_pooler_errors)
            srv_log(c->w->srv, "WARNING", "C-%p: %s pooler error: %s", (void *)c,
                    who(c, wb, sizeof wb), msg);
        if (c->w->srv->cfg.log_disconnections)
            srv_log(c->w->srv, "LOG", "C-%p: %s closing because: %s (age=%llds)", (void *)c,
                    who(c, wb, sizeof wb), msg, (long long)(now_ms() - c->t_connect) / 1000);
        pq_buf tmp = {0};
        destroy_with(c, pq_put_error(&tmp, "FATAL", sqlstate, msg) == 0 ? &tmp : NULL);
        pq_buf_free(&tmp);
        return;
    }
    if (c->w->srv->cfg.log_disconnections && logged_in(c)) {
        char wb[WHO_LEN];
        srv_log(c->w->srv, "LOG", "C-%p: %s closing because: client close request", (void *)c,
                who(c, wb, sizeof wb));
    }
    destroy(c);
}

/* --- writing ------------------------------------------------------------- */

/* Send what is ready in c->out. false if the client is gone (c freed). */
static bool flush_out(client *c)
{
    while (c->out_scanned > c->out.start) {
        ssize_t n = io_send(c->fd, c->tls, c->out.p + c->out.start, c->out_scanned - c->out.start);
        if (n > 0) {
            c->out.start += (uint32_t)n;
            wstats *ws = cws(c);
            if (ws) st_add(&ws->sent, (uint64_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
        destroy(c);
        return false;
    }
    if (c->out.start == c->out.end) {
        c->out.start = c->out.end = c->out_scanned = 0;
    }
    return true;
}

/* Send pre (weir's own SETs) and the scanned part of c->in to the server. false: server lost. */
static bool flush_in(client *c)
{
    if (!c->be) return true;
    pq_buf *bufs[2] = {&c->pre, &c->in};
    /* With prepared statements everything goes through c->pre (ps_translate):
     * what is left in c->in is not translated yet (the start of a streamed
     * Bind whose names are still coming, or the rest past PS_OWED_MAX). */
    for (int i = 0; i < (c->ps ? 1 : 2); i++) {
        pq_buf *b = bufs[i];
        uint32_t *lim = i ? &c->in_scanned : &b->end;
        while (*lim > b->start) {
            ssize_t n = io_send(c->be->fd, c->be->tls, b->p + b->start, *lim - b->start);
            if (n > 0) {
                b->start += (uint32_t)n;
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
            return false;
        }
        if (b->start == b->end) {
            b->start = b->end = 0;
            if (i) c->in_scanned = 0;
        }
        if (pq_buf_len(b)) return true; /* pre must be gone before in goes */
    }
    return true;
}

static void server_lost(client *c)
{
    if (c->be) c->be->unclean = true;
    client_close(c, "08P01", "server conn crashed?");
}

/* --- the server side ----------------------------------------------------- */

static void on_server(evutil_socket_t fd, short what, void *arg);

/* Readable server connection registered in this worker. No client: it is
 * idle in the pool or another worker's now; stop watching it here. */
static void on_watch(evutil_socket_t fd, short what, void *arg)
{
    be_watch *bw = arg;
    if (!bw->c) {
        event_del(&bw->ev);
        bw->added = false;
        return;
    }
    on_server(fd, what, bw->c);
}

static void server_event(evutil_socket_t fd, short what, client *c);

static void on_server(evutil_socket_t fd, short what, void *arg)
{
    worker *w = current_worker;
    clock_hold();
    worker_scope_begin(w);
    server_event(fd, what, arg);
    worker_scope_end(w);
    clock_release();
}

/* Transaction and statement pooling: give the server back when the client
 * has nothing in flight and no transaction open. */
static void release_if_done(client *c)
{
    if (!c->conn || c->pool->mode == POOL_SESSION) return;
    if (c->pending || c->skip_rfq || c->unsynced || c->be->txn != 'I' || c->sst.left ||
        c->in_scanned != c->in.start || c->cst.left || pq_buf_len(&c->pre) ||
        (c->ps && ps_busy(c->ps)))
        return;
    unlink_server(c, false);
    set_state(c, CL_IDLE);
}

/* A ReadyForQuery answering the client's oldest request: its figures. */
static void rfq_seen(client *c, char status)
{
    int64_t now = now_us();
    wstats *ws = cws(c);
    if (c->pending) {
        c->pending--;
        if (ws) st_time(ws, ST_QUERY, now - c->t_query);
        c->t_query = now; /* the next one in the pipeline, if any */
    }
    if (status == 'I' && c->in_xact && !c->pending) {
        c->in_xact = false;
        if (ws) st_time(ws, ST_XACT, now - c->t_xact);
    }
    c->t_activity = now / 1000;
}

/* Insert n bytes at *wr in c->out, whose unscanned part is [*rd, *end):
 * into the gap left by dropped messages, else moving the rest up. */
static int out_splice(client *c, uint32_t *wr, uint32_t *rd, uint32_t *end, const uint8_t *src,
                      uint32_t n)
{
    if (*rd - *wr < n) {
        uint32_t need = n - (*rd - *wr);
        if (c->out.cap - *end < need) {
            uint64_t cap = c->out.cap ? c->out.cap : 256;
            while (cap - *end < need) cap *= 2;
            if (cap > UINT32_MAX) return -1;
            uint8_t *p = realloc(c->out.p, cap);
            if (!p) return -1;
            c->out.p = p;
            c->out.cap = (uint32_t)cap;
        }
        memmove(c->out.p + *rd + need, c->out.p + *rd, *end - *rd);
        *rd += need;
        *end += need;
    }
    memcpy(c->out.p + *wr, src, n);
    *wr += n;
    return 0;
}

/* Weir's own replies to prepared-statement messages that are due now, into
 * c->out at *wr. -1: out of memory. */
static int ps_emit(client *c, uint32_t *wr, uint32_t *rd, uint32_t *end)
{
    if (!ps_due_now(c->ps)) return 0; /* (most calls: on every server message) */
    pq_buf tmp = {0};
    int nrfq = 0;
    int rc = ps_due(c->ps, c->be ? c->be->txn : 'I', &tmp, &nrfq);
    if (!rc && tmp.end) rc = out_splice(c, wr, rd, end, tmp.p, tmp.end);
    pq_buf_free(&tmp);
    while (nrfq-- > 0) rfq_seen(c, c->be ? c->be->txn : 'I');
    return rc;
}

/* Scan new server bytes in c->out: note ReadyForQuery and ParameterStatus,
 * drop the replies to weir's own queries. false: protocol error. */
static bool scan_out(client *c)
{
    uint32_t rd = c->out_scanned, wr = c->out_scanned, end = c->out.end;
    bool ok = true;
    const char *whole = c->ps ? PS_WHOLE_OUT : "ZS";
    /* weir's own replies can be due at the start, and then only when a
     * reply ends one of the client's requests (ps_server_reply) */
    bool due = c->ps != NULL;
    while (rd < end) {
        if (due && !c->sst.left) {
            if (ps_emit(c, &wr, &rd, &end)) {
                ok = false;
                break;
            }
            due = false;
        }
        uint8_t *p = c->out.p;
        /* DataRows, the bulk of a result: a run of whole ones is kept as it
         * is, each looked at only for its length. None of them ends a
         * request (ps_server_reply keeps a DataRow and changes nothing), so
         * the run takes the path below only while weir's own query's rows
         * are dropped (skip_rfq) or weir's replies are due. */
        if (!c->sst.left && !c->skip_rfq && end - rd >= 5 && p[rd] == 'D' &&
            !(c->ps && ps_due_now(c->ps))) {
            uint32_t run = rd;
            while (end - run >= 5 && p[run] == 'D') {
                uint32_t len = pq_get32(p + run + 1);
                if (len < 4 || len > CLIENT_MAX_MSG || end - run - 1 < len) break;
                run += 1 + len;
            }
            if (run > rd) {
                if (wr != rd) memmove(p + wr, p + rd, run - rd);
                wr += run - rd;
                rd = run;
                continue;
            }
        }
        pq_msg m;
        uint32_t used;
        int r = pq_next(&c->sst, p + rd, end - rd, CLIENT_MAX_MSG, whole, &m, &used);
        if (r == PQ_NEED) break;
        if (r == PQ_BAD) {
            ok = false;
            break;
        }
        bool keep = true;
        if (r == PQ_PASS) {
            keep = !c->sst_drop;
        } else {
            keep = c->skip_rfq == 0;
            if (keep && c->ps) {
                int r2 =
                    ps_server_reply(c->ps, ((be_ext *)c->be->ext)->ps, m.type, m.body, m.len - 4);
                keep = r2 & PS_KEEP;
                if (r2 & PS_DUE) due = true;
            }
            c->sst_drop = !keep && !m.body;
            if (m.type == 'Z' && m.len == 5) {
                c->be->txn = (char)m.body[0];
                if (c->skip_rfq) {
                    c->skip_rfq--;
                } else {
                    rfq_seen(c, (char)m.body[0]);
                    /* Statement pooling: a transaction left open is refused.
                     * The error takes this ReadyForQuery's place, so the
                     * client, still waiting for it, reads the reason. */
                    if (c->pool->mode == POOL_STATEMENT && m.body[0] != 'I' && !c->pending) {
                        c->stmt_refused = true;
                        keep = false;
                    }
                }
            } else if (m.type == 'S' && m.body) {
                const uint8_t *q = m.body, *e = m.body + m.len - 4;
                const char *n = pq_get_str(&q, e), *v = n ? pq_get_str(&q, e) : NULL;
                if (v) {
                    be_params_set(&c->be->params, n, v);
                    if (keep)
                        for (size_t i = 0; i < NTRACKED; i++)
                            if (!strcasecmp(tracked[i], n)) want_put(c, i, v, strlen(v));
                }
            }
        }
        if (keep) {
            if (wr != rd) memmove(p + wr, p + rd, used);
            wr += used;
        }
        rd += used;
    }
    if (ok && due && !c->sst.left && ps_emit(c, &wr, &rd, &end)) ok = false;
    if (wr != rd) memmove(c->out.p + wr, c->out.p + rd, end - rd);
    c->out.end = wr + (end - rd);
    c->out_scanned = wr;
    return ok;
}

/* false: c is gone */
static bool read_server(client *c)
{
    if (reserve(&c->out, &c->out_scanned, READ_CHUNK)) {
        server_lost(c);
        return false;
    }
    ssize_t n = io_recv(c->be->fd, c->be->tls, c->out.p + c->out.end, c->out.cap - c->out.end);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        server_lost(c);
        return false;
    }
    if (n < 0) return true;
    c->out.end += (uint32_t)n;
    if (!scan_out(c)) {
        server_lost(c);
        return false;
    }
    if (c->stmt_refused) {
        c->be->unclean = true; /* closing it rolls the transaction back */
        client_close(c, "08P01", "transaction blocks not allowed in statement pooling mode");
        return false;
    }
    if (!flush_out(c)) return false;
    release_if_done(c);
    if (!c->conn && pq_buf_len(&c->in)) return process_in(c);
    if (c->ps_full && ps_owed(c->ps) < PS_OWED_MAX / 2) return process_in(c); /* see PS_OWED_MAX */
    return true;
}

static void server_event(evutil_socket_t fd, short what, client *c)
{
    (void)fd;
    if (what & EV_WRITE) {
        if (!flush_in(c)) {
            server_lost(c);
            return;
        }
    }
    if ((what & EV_READ) && c->be && !read_server(c)) return;
    update_events(c);
}

/* track_extra_parameters, as a query of its own after the tracked SETs, so
 * that a value PostgreSQL refuses cannot roll those back with it.
 * PostgreSQL may not report these (search_path before 18), so the value
 * weir sets on a server is remembered as the server's own until the reset
 * query; a change a client makes with SET itself is not seen (as in
 * PgBouncer). set_config() reads the value as the startup packet's -c does
 * (search_path=a,b is two schemas; SET search_path='a,b' is one). */
static void sync_extra(client *c)
{
    backend *be = c->be;
    char sql[4096];
    size_t o = 0;
    /* What weir set here for another client and this one did not ask for
     * goes back to the session's default (RESET: what a connection of its
     * own would have), or the client would run with the other's search_path.
     * PgBouncer leaves it. The names are identifiers weir checked (letters,
     * digits, _ and .), quoted so that none is read as a keyword (ALL). */
    for (int i = 0; be->xset && i < be->xset->n;) {
        const char *name = be->xset->name[i];
        if (c->xwant && be_params_get(c->xwant, name)) {
            i++;
            continue;
        }
        int n = snprintf(sql + o, sizeof sql - o, "RESET \"%s\";", name);
        if (n < 0 || (size_t)n >= sizeof sql - o) break;
        o += (size_t)n;
        be_params_drop(be->xset, i); /* the last entry moves to i */
    }
    for (int i = 0; c->xwant && i < c->xwant->n; i++) {
        if (!be->xset && !(be->xset = calloc(1, sizeof *be->xset))) break;
        const char *name = c->xwant->name[i], *want = c->xwant->value[i];
        const char *have = be_params_get(&be->params, name); /* reported */
        if (!have) have = be_params_get(be->xset, name);
        if (have && !strcmp(have, want)) continue;
        char lit[2 * BE_VALUE + 3], nlit[2 * BE_NAME + 3];
        if (be_quote_literal(want, lit, sizeof lit) || be_quote_literal(name, nlit, sizeof nlit))
            continue;
        int n = snprintf(sql + o, sizeof sql - o, "SELECT pg_catalog.set_config(%s,%s,false);",
                         nlit, lit);
        if (n < 0 || (size_t)n >= sizeof sql - o) break;
        o += (size_t)n;
        be_params_set(be->xset, name, want);
    }
    if (o && pq_put_msg(&c->pre, 'Q', sql, (uint32_t)o + 1) == 0) c->skip_rfq++;
}

/* The server's value of tracked parameter i, or NULL: where it is in the
 * server's params is remembered (a lookup by name was a dozen string
 * compares, on every transaction). */
static const char *tracked_have(backend *be, size_t i)
{
    be_ext *x = be->ext;
    const be_params *p = &be->params;
    int k = x->tidx[i];
    if (k > 0 && k <= p->n) return p->value[k - 1];
    if (k < 0 && x->tidx_n == p->n) return NULL;
    k = be_params_find(p, tracked[i]);
    x->tidx[i] = (int8_t)(k < 0 ? -1 : k + 1);
    x->tidx_n = p->n;
    return k < 0 ? NULL : p->value[k];
}

/* Pack the NTRACKED values v (NULL: absent) into out (PACK_MAX): its
 * length, 0 when one is absent or they do not fit. */
static uint8_t pack_values(const char *const v[NTRACKED], uint8_t *out)
{
    size_t o = 0;
    for (size_t i = 0; i < NTRACKED; i++) {
        if (!v[i]) return 0;
        size_t n = strlen(v[i]);
        if (o + 1 + n > PACK_MAX) return 0;
        out[o++] = (uint8_t)n;
        memcpy(out + o, v[i], n);
        o += n;
    }
    return (uint8_t)o;
}

/* The client wants tracked parameter i to be the n bytes at v (cut to
 * BE_VALUE): the one way a want is set, so the packed form stays true. */
static void want_put(client *c, size_t i, const char *v, size_t n)
{
    snprintf(c->want[i], BE_VALUE, "%.*s", (int)n, v);
    c->want_set[i] = true;
    const char *all[NTRACKED];
    for (size_t k = 0; k < NTRACKED; k++) all[k] = c->want_set[k] ? c->want[k] : NULL;
    c->want_len = pack_values(all, c->want_pack);
}

/* Does the server have every value the client wants? Compares the packed
 * forms; false when either has none (then each value is compared). */
static bool params_match(client *c)
{
    if (!c->want_len) return false;
    backend *be = c->be;
    be_ext *x = be->ext;
    if (x->have_ver != be->params.ver) {
        const char *v[NTRACKED];
        for (size_t i = 0; i < NTRACKED; i++) v[i] = tracked_have(be, i);
        x->have_len = pack_values(v, x->have);
        x->have_ver = be->params.ver;
    }
    return x->have_len == c->want_len && !memcmp(x->have, c->want_pack, c->want_len);
}

/* Bring the server's session in line with what the client believes it set. */
static void sync_params(client *c)
{
    char sql[2048];
    size_t o = 0;
    bool same = params_match(c); /* most links: nothing to set, known from one compare */
    for (size_t i = 0; !same && i < NTRACKED; i++) {
        if (!c->want_set[i]) continue;
        const char *have = tracked_have(c->be, i);
        if (have && !strcmp(have, c->want[i])) continue;
        char lit[2 * BE_VALUE + 3];
        if (be_quote_literal(c->want[i], lit, sizeof lit)) continue;
        int n = snprintf(sql + o, sizeof sql - o, "SET %s=%s;", tracked[i], lit);
        if (n < 0 || (size_t)n >= sizeof sql - o) break;
        o += (size_t)n;
    }
    if (o && pq_put_msg(&c->pre, 'Q', sql, (uint32_t)o + 1) == 0) c->skip_rfq++;
    sync_extra(c);
}

static void send_welcome(client *c);

/* false: c is gone */
static bool link_server(client *c, weir_conn *conn)
{
    c->conn = conn;
    c->be = weir_conn_handle(conn);
    c->sst = (pq_stream){0};
    c->sst_drop = false;
    if (!c->be->ext) {
        int n = c->w->srv->nworkers;
        be_ext *x = calloc(1, sizeof *x + (size_t)n * sizeof(be_watch));
        if (!x) {
            weir_conn_mark_broken(conn);
            weir_checkin(conn);
            c->conn = NULL;
            c->be = NULL;
            client_close(c, "53200", "out of memory");
            return false;
        }
        x->n = n;
        c->be->ext = x;
    }
    c->watch = &((be_ext *)c->be->ext)->w[c->w->id];
    c->watch->c = c;
    c->sev_flags = 0;
    cancel_lock(c);
    if (!c->pool->private_pool) c->cancel_conn = conn; /* see free_client */
    cancel_unlock(c);
    if (c->state == CL_WELCOME) {
        spool *p = c->pool;
        pthread_mutex_lock(&p->lock);
        if (!p->have_welcome) {
            p->welcome = c->be->params;
            p->have_welcome = true;
        }
        pthread_mutex_unlock(&p->lock);
        send_welcome(c);
        if (!flush_out(c)) return false;
    }
    set_state(c, CL_ACTIVE);
    sync_params(c);
    release_if_done(c);
    return true;
}

/* Why no server connection came, if weir knows (its last connect failed):
 * ": <error>" after PgBouncer's word, else "". */
static void wait_reason(client *c, char *out, size_t n)
{
    weir_pool_stats st;
    char e[380] = "";
    out[0] = 0;
    if (c->pool && !weir_pool_stats_get(c->pool->pool, &st) && st.failing)
        weir_pool_last_error(c->pool->pool, e, sizeof e);
    if (e[0]) snprintf(out, n, ": %s", e);
}

/* cached: the engine answered at once, from a refused login's error it
 * keeps until an attempt succeeds (no attempt was made for this client). */
static void checkout_failed(client *c, int status, bool cached)
{
    if (status == WEIR_ETIMEDOUT) {
        char e[400];
        wait_reason(c, e, sizeof e);
        client_close(c, "08P01", "query_wait_timeout%s", e);
    } else if (status == WEIR_ECONNECT) {
        /* The last login's error (cached until server_login_retry): the
         * server's own words when it refused ("server login failed: FATAL
         * <message>" gives <message>, as PgBouncer passes it on), else why
         * weir could not reach it. */
        char e[400];
        weir_pool_last_error(c->pool->pool, e, sizeof e);
        const char *msg = e;
        static const char pre[] = "server login failed: ";
        if (!strncmp(e, pre, sizeof pre - 1)) {
            const char *sp = strchr(e + sizeof pre - 1, ' ');
            if (sp && sp[1]) msg = sp + 1;
        }
        if (c->pool->private_pool && msg != e) /* a replication login: PgBouncer's words; */
            msg = "login failed";              /* the server's are in the log */
        /* cached: PgBouncer's check_fast_fail words around it */
        client_close(c, "08P01", "%s%s%s",
                     cached ? "server login has been failing, cached error: " : "",
                     msg[0] ? msg : "server login failed", cached ? " (server_login_retry)" : "");
    } else if (status == WEIR_ECLOSED) {
        client_close(c, "08P01", "pooler is shutting down");
    } else {
        client_close(c, "08P01", "no server connection available: %s", weir_strerror(status));
    }
}

/* The engine's callback (any thread): the result goes to c's worker. */
static void on_checkout(weir_conn *conn, int status, void *ud)
{
    client *c = ud;
    c->done_conn = conn;
    c->done_status = status;
    worker_post(c->w, &c->done);
}

/* false: c is gone */
static bool request_server(client *c)
{
    if (atomic_load(&c->w->srv->shutdown_mode) == SHUTDOWN_WAIT_FOR_SERVERS) {
        /* the pools are paused for good: as PgBouncer, the client goes */
        client_close(c, "08P01", "server shutting down");
        return false;
    }
    weir_conn *conn = NULL;
    int64_t wait = c->pool->query_wait_ms; /* the database's, else [pgbouncer]'s */
    int rc = weir_checkout_async(c->pool->pool, wait, on_checkout, c, &conn, &c->req);
    if (rc == 0) {
        st_time(&c->pool->ws[c->w->id], ST_WAIT, 0);
        return link_server(c, conn) && process_in(c);
    }
    if (rc == WEIR_PENDING) {
        c->t_wait = now_us();
        c->wait_notified = false;
        /* Only now: a checkout served at once never counts as waiting. Its
         * completion runs on this thread, after this returns. */
        if (c->state != CL_WELCOME) set_state(c, CL_WAITING);
        c->checkout_pending = true;
        update_events(c);
        return true;
    }
    checkout_failed(c, rc, true);
    return false;
}

/* A checkout finished (c's worker): link the server, or say why not. */
static void checkout_done(completion *cp)
{
    client *c = (client *)((char *)cp - offsetof(client, done));
    weir_conn *conn = c->done_conn;
    c->checkout_pending = false;
    if (c->state == CL_CLOSED) { /* closed while it waited */
        if (conn) weir_checkin(conn);
        free_client(c);
        return;
    }
    if (c->done_status) {
        checkout_failed(c, c->done_status, false);
        return;
    }
    if (c->state == CL_AUTH_QUERY) {
        auth_lookup_send(c, conn);
        return;
    }
    st_time(&c->pool->ws[c->w->id], ST_WAIT, now_us() - c->t_wait);
    if (link_server(c, conn)) process_in(c);
}

/* --- the client side ----------------------------------------------------- */

static bool valid_frontend_type(char t)
{
    return pq_type_in("BCcdDEfFHPpQSX", t);
}

/* Which message types at p (n bytes) must be framed whole. With prepared
 * statements weir reads Parse, Bind, Describe, Close and Query messages
 * whole to rename statements; a Query longer than STREAM_OVER streams
 * instead (it cannot be a DEALLOCATE weir needs to see), so a huge query
 * costs no buffer of its size. Parse and Bind of any size are held whole. */
static const char *ps_whole(const client *c, const uint8_t *p, uint32_t n)
{
    if (!c->ps) return "X";
    if (n >= 5 && (p[0] == 'Q' || p[0] == 'B') && pq_get32(p + 1) > STREAM_OVER) return "X";
    return PS_WHOLE_IN;
}

/* Scan new client bytes: count requests, notice Terminate. false: closed. */
static bool scan_in(client *c)
{
    c->in_whole_need = false;
    while (c->in_scanned < c->in.end) {
        pq_msg m;
        uint32_t used;
        const uint8_t *p = c->in.p + c->in_scanned;
        uint32_t n = c->in.end - c->in_scanned;
        int r =
            pq_next(&c->cst, p, n, CLIENT_MAX_MSG, c->cst.left ? "" : ps_whole(c, p, n), &m, &used);
        if (r == PQ_NEED) {
            c->in_whole_need = n >= 5; /* a whole message's header is here, its body coming */
            break;
        }
        if (r == PQ_BAD) {
            client_close(c, "08P01", "invalid message length");
            return false;
        }
        if (r == PQ_MSG) {
            if (!valid_frontend_type(m.type)) {
                client_close(c, "08P01", "invalid frontend message type %d", (unsigned char)m.type);
                return false;
            }
            if (m.type == 'X') {
                c->terminate = true;
                c->in.end = c->in_scanned; /* nothing after Terminate matters */
                break;
            }
            if (m.type == 'Q' || m.type == 'S' || m.type == 'F') {
                if (c->pending++ == 0) {
                    c->t_query = now_us();
                    if (!c->in_xact) {
                        c->in_xact = true;
                        c->t_xact = c->t_query;
                    }
                }
                c->unsynced = false;
            } else if (m.type != 'd' && m.type != 'c' && m.type != 'f' && m.type != 'H') {
                c->unsynced = true;
            }
        }
        c->in_scanned += used;
    }
    return true;
}

/* A Bind over STREAM_OVER at p (n bytes of it here): only its portal and
 * statement names are looked at (prep.h), the rest streams. 1: done,
 * c->in moved past the names; 0: the names are not all here yet; -1: c is
 * gone. */
static int bind_head(client *c, const uint8_t *p, uint32_t n, uint32_t max)
{
    uint32_t len = pq_get32(p + 1) - 4, avail = n - 5 < len ? n - 5 : len;
    const uint8_t *b = p + 5, *z1 = memchr(b, 0, avail);
    const uint8_t *z2 = z1 ? memchr(z1 + 1, 0, avail - (uint32_t)(z1 + 1 - b)) : NULL;
    if (!z2) {
        if (avail < len && avail < BIND_HEAD_MAX) return 0;
        client_close(c, "08P01",
                     "invalid Bind message: portal and statement names missing or "
                     "longer than %u bytes",
                     BIND_HEAD_MAX);
        return -1;
    }
    uint32_t nh = (uint32_t)(z2 + 1 - b);
    int rc = ps_client_bind_head(c->ps, &((be_ext *)c->be->ext)->ps, max, b, nh, len, &c->pre);
    if (rc < 0) {
        client_close(c, "53200", "out of memory");
        return -1;
    }
    c->xst.left = len - nh;
    c->xdrop = rc == 1 && c->xst.left > 0;
    c->in.start += 5 + nh;
    return 1;
}

/* max_prepared_statements: move the scanned client messages to c->pre,
 * statement names rewritten for the linked server (prep.h), and put the
 * replies weir makes itself in c->out; stop at PS_OWED_MAX replies owed
 * (c->ps_full). false: c is gone. */
static bool ps_translate_some(client *c)
{
    be_ext *x = c->be->ext;
    if (c->be->ps_gone) {
        ps_cache_clear(x->ps);
        c->be->ps_gone = false;
    }
    uint32_t max = (uint32_t)c->w->srv->cfg.max_prepared_statements;
    /* A plain run (ps_client_plain) is looked for here and after each Sync:
     * a look that fails is not repeated at every message that follows, so
     * a long run without a Sync is read once more, not once per message. */
    bool try_plain = true;
    c->ps_full = false;
    while (c->in.start < c->in_scanned) {
        if (!c->xst.left && ps_owed(c->ps) >= PS_OWED_MAX) {
            c->ps_full = true; /* read_server comes back for the rest */
            break;
        }
        pq_msg m;
        uint32_t used;
        const uint8_t *p = c->in.p + c->in.start;
        uint32_t n = c->in_scanned - c->in.start;
        if (try_plain && !c->xst.left) {
            uint32_t run = 0;
            int plain = ps_client_plain(c->ps, p, n, STREAM_OVER, &run);
            if (plain < 0 || (plain > 0 && pq_put_raw(&c->pre, p, run))) {
                client_close(c, "53200", "out of memory");
                return false;
            }
            if (plain > 0) {
                c->in.start += run;
                continue;
            }
            try_plain = false;
        }
        if (!c->xst.left && n >= 5 && p[0] == 'B' && pq_get32(p + 1) > STREAM_OVER) {
            int rc = bind_head(c, p, n, max);
            if (rc < 0) return false;
            if (rc == 0) break; /* its names are still coming */
            continue;
        }
        int r =
            pq_next(&c->xst, p, n, CLIENT_MAX_MSG, c->xst.left ? "" : ps_whole(c, p, n), &m, &used);
        if (r == PQ_NEED || r == PQ_BAD) break; /* cannot happen: scan_in framed these bytes */
        int rc = 0;
        if (r == PQ_MSG && m.body) {
            rc = ps_client_msg(c->ps, &x->ps, max, m.type, m.body, m.len - 4, &c->pre);
            if (rc == PS_TOO_MUCH) { /* one client must not fill weir's memory */
                client_close(c, "54000",
                             "the prepared statements of this client would take more than %llu "
                             "bytes (max_client_prepared_bytes)",
                             (unsigned long long)ps_client_max_bytes(c->ps));
                return false;
            }
            char dup[64], wb[WHO_LEN];
            if (ps_take_duplicate(c->ps, dup, sizeof dup)) /* PgBouncer's line */
                srv_log(c->w->srv, "LOG", "C-%p: %s prepared statement '%s' was already prepared",
                        (void *)c, who(c, wb, sizeof wb), dup);
        } else if (r == PQ_PASS && c->xdrop) {
            c->xdrop = c->xst.left > 0; /* the rest of a Bind weir answered itself */
        } else {
            rc = r == PQ_MSG ? ps_client_other(c->ps, m.type) : 0;
            if (!rc) rc = pq_put_raw(&c->pre, c->in.p + c->in.start, used);
        }
        if (rc) {
            client_close(c, "53200", "out of memory");
            return false;
        }
        if (r == PQ_MSG && m.type == 'S') try_plain = true;
        c->in.start += used;
    }
    if (c->in.start == c->in.end) c->in.start = c->in.end = c->in_scanned = 0;
    uint64_t pc, ps, b;
    ps_take_counts(c->ps, &pc, &ps, &b);
    wstats *ws = cws(c);
    if (ws && (pc | ps | b)) {
        st_add(&ws->ps_parse_c, pc);
        st_add(&ws->ps_parse_s, ps);
        st_add(&ws->ps_bind, b);
    }
    if (c->sst.left) return true; /* in the middle of a server message: later */
    uint32_t wr = c->out_scanned, rd = wr, end = c->out.end;
    if (ps_emit(c, &wr, &rd, &end)) {
        client_close(c, "53200", "out of memory");
        return false;
    }
    c->out.end = end;
    c->out_scanned = wr;
    return flush_out(c);
}

static bool ps_translate(client *c)
{
    /* replies weir owed itself went out at the end: on if that took the
     * count under half (no server reply would come to call it again) */
    do {
        if (!ps_translate_some(c)) return false;
    } while (c->ps_full && ps_owed(c->ps) < PS_OWED_MAX / 2);
    return true;
}

/* Client data after login: pass it to the server, getting one first if
 * needed. false: c is gone. */
static bool admin_input(client *c);

static bool process_in(client *c)
{
    if (c->state == CL_CONSOLE) return admin_input(c);
    if (!scan_in(c)) return false;
    if (c->state == CL_WAITING || c->state == CL_WELCOME) {
        update_events(c); /* keep it until a server comes */
        return true;
    }
    if (c->terminate && c->in_scanned == c->in.start) {
        client_close(c, NULL, NULL);
        return false;
    }
    if (c->in_scanned == c->in.start) {
        update_events(c);
        return true;
    }
    if (!c->conn) return request_server(c); /* linking calls back into process_in */
    if (c->ps && !ps_translate(c)) return false;
    if (!flush_in(c)) {
        server_lost(c);
        return false;
    }
    if (c->terminate && c->in_scanned == c->in.start) {
        client_close(c, NULL, NULL);
        return false;
    }
    if (c->ps) release_if_done(c); /* weir may have answered everything itself */
    update_events(c);
    return true;
}

/* The end of a login, the one writer of it: AuthenticationOk, the
 * ParameterStatus set w, the client's BackendKeyData, ReadyForQuery. */
static void put_welcome(client *c, const be_params *w)
{
    pq_buf *o = &c->out;
    (void)pq_put_auth(o, 0, NULL, 0);
    for (int i = 0; i < w->n; i++) (void)pq_put_param(o, w->name[i], w->value[i]);
    (void)pq_put_key(o, c->my_pid, c->my_key);
    if (c->w->srv->cfg.login_notify_message[0])
        (void)pq_put_notice(o, c->w->srv->cfg.login_notify_message);
    (void)pq_put_ready(o, 'I');
    c->out_scanned = c->out.end;
}

/* A pooled login: the pool's first server's parameters, the client's own
 * tracked ones over them. */
static void send_welcome(client *c)
{
    spool *p = c->pool;
    be_params w;
    pthread_mutex_lock(&p->lock);
    w = p->welcome;
    pthread_mutex_unlock(&p->lock);
    for (size_t i = 0; i < NTRACKED; i++) {
        if (c->want_set[i]) {
            be_params_set(&w, tracked[i], c->want[i]);
        } else {
            const char *v = be_params_get(&w, tracked[i]);
            if (v) want_put(c, i, v, strlen(v));
        }
    }
    put_welcome(c, &w);
    if (c->w->srv->cfg.log_connections) {
        char tls[128] = "";
        if (c->tls) { /* as PgBouncer: " tls=TLSv1.3/TLS_AES_256_GCM_SHA384" */
            memcpy(tls, " tls=", 5);
            tls_describe(c->tls, tls + 5, sizeof tls - 5);
        }
        char wb[WHO_LEN];
        srv_log(c->w->srv, "LOG", "C-%p: %s login attempt: db=%s user=%s%s", (void *)c,
                who(c, wb, sizeof wb), c->dbname, c->user, tls);
    }
}

static void admin_login(client *c);

/* A client over max_db_client_connections or max_user_client_connections
 * when its login ends: as with max_client_conn, a client of the same
 * database or user that left just before may belong to another worker that
 * has not yet read its Terminate. The login is finished again at this
 * worker's next tick (at most 100 ms), and refused only if still over then.
 * true: put off (the first time). */
static bool admit_later(client *c)
{
    if (c->admit_try) return false;
    c->admit_try = 1;
    return true;
}

static void auth_done(client *c)
{
    server *s = c->w->srv;
    char err[300];
    if (c->admin) {
        admin_login(c);
        return;
    }
    if (c->auth_method != AUTH_ANY && c->auth_method != AUTH_TRUST) {
        char peer[64];
        authguard_passed(s->guard, c->user, peer_of(c, peer, sizeof peer));
    }
    const cfg_db *db = cfg_find_db(&s->cfg, c->dbname);
    /* Only now, authenticated, may a client learn which databases exist. */
    if (!db) {
        client_close(c, "08P01", "no such database: %s", c->dbname);
        return;
    }
    if (cfg_db_http_only(db)) {
        client_close(c, "08P01",
                     "database \"%s\" is %s database: weir serves it over HTTP only "
                     "(POST /v1/databases/%s/sql)",
                     c->dbname, db->sqlite_path[0] ? "an SQLite" : "a MySQL", c->dbname);
        return;
    }
    if (clients_admit(s, c->dbname, c->user, false, &c->dbc, &c->userc, err, sizeof err)) {
        if (admit_later(c)) return;
        client_close(c, "53300", "%s", err);
        return;
    }
    login_creds cr = {.secret = c->secret_from_query ? c->secret : NULL};
    if (c->scram && c->scram->have_client_key) {
        cr.client_key = c->scram->client_key;
        cr.server_key = c->scram->sec.server;
    }
    if (db && db_disabled(s, c->dbname)) {
        client_close(c, "08P01", "database \"%s\" is disabled", c->dbname);
        return;
    }
    if (c->repl) {
        repl_spec rs = {c->repl, c->repl_len};
        c->pool = pool_replication(s, db, c->dbname, c->user, &cr, &rs, err, sizeof err);
    } else {
        c->pool = pool_get(s, db, c->dbname, c->user, NULL, &cr, err, sizeof err);
    }
    if (!c->pool) {
        client_close(c, "08P01", "%s", db ? err : "no such database");
        return;
    }
    if (c->pool->mode != POOL_SESSION && s->cfg.max_prepared_statements > 0 &&
        !(c->ps = ps_client_new(s->ps_reg, (uint64_t)s->cfg.max_client_prepared_bytes))) {
        client_close(c, "53200", "out of memory");
        return;
    }
    if (new_cancel_key(c)) {
        client_close(c, "58000", "could not generate a cancel key: no random bytes");
        return;
    }
    atomic_fetch_add(&c->pool->cl_logged, 1);
    st_add(&c->pool->ws[c->w->id].logins, 1); /* this worker's block: only it writes */
    c->counted = true;
    keys_add(c);
    pthread_mutex_lock(&c->pool->lock);
    bool have = c->pool->have_welcome;
    pthread_mutex_unlock(&c->pool->lock);
    if (!have) {
        set_state(c, CL_WELCOME);
        (void)request_server(c);
        return;
    }
    send_welcome(c);
    if (!flush_out(c)) return;
    set_state(c, CL_IDLE);
    (void)process_in(c);
}

/* --- auth_query ----------------------------------------------------------
 * A user who is not in auth_file: its secret is asked of the database with
 * auth_query ($1 = the user name), over a pooled connection logged in as
 * auth_user. The query runs on this worker's loop like any client's. */

typedef struct auth_lookup {
    weir_conn *conn;
    struct event ev; /* readable server, or the time limit */
    pq_buf buf;
    authq q; /* the answer so far (authq.h) */
} auth_lookup;

static void auth_lookup_start(client *c, const cfg_db *db, const char *auth_user)
{
    server *s = c->w->srv;
    char err[300];
    int why;
    spool *ap = pool_auth_query(s, db, c->dbname, c->user, auth_user, &why, err, sizeof err);
    if (!ap && why == AUTHDB_NOT_CONFIGURED) {
        /* as PgBouncer: the detail for the operator, not for a client
         * that has not logged in yet */
        char wb[WHO_LEN];
        srv_log(s, "WARNING", "C-%p: %s %s", (void *)c, who(c, wb, sizeof wb), err);
        client_close(c, "08P01", "bouncer config error");
        return;
    }
    if (!ap) {
        client_close(c, "08P01", why == AUTHDB_DISABLED ? "%s" : "auth_query failed: %s", err);
        return;
    }
    c->aq = calloc(1, sizeof *c->aq);
    if (!c->aq) {
        client_close(c, "53200", "out of memory");
        return;
    }
    c->pool = ap; /* until auth_done picks the client's own */
    set_state(c, CL_AUTH_QUERY);
    int64_t wait = s->cfg.query_wait_timeout > 0 ? s->cfg.query_wait_timeout : INT64_C(1) << 40;
    weir_conn *conn = NULL;
    int rc = weir_checkout_async(ap->pool, wait, on_checkout, c, &conn, &c->req);
    if (rc == 0) {
        auth_lookup_send(c, conn);
    } else if (rc == WEIR_PENDING) {
        c->checkout_pending = true;
        update_events(c);
    } else {
        checkout_failed(c, rc, true);
    }
}

/* Give the connection back (closed unless the exchange ended cleanly). */
static void auth_lookup_end(client *c, bool clean)
{
    auth_lookup *aq = c->aq;
    c->aq = NULL;
    if (event_initialized(&aq->ev)) event_del(&aq->ev);
    if (aq->conn) {
        backend *be = weir_conn_handle(aq->conn);
        if (!clean || be->txn != 'I') weir_conn_mark_broken(aq->conn);
        weir_checkin(aq->conn);
    }
    pq_buf_free(&aq->buf);
    authq_clear(&aq->q);
    free(aq);
}

static void auth_lookup_fail(client *c, const char *reason)
{
    char why[256]; /* reason may live in c->aq, which goes first */
    snprintf(why, sizeof why, "%s", reason);
    char wb[WHO_LEN];
    srv_log(c->w->srv, "WARNING", "C-%p: %s auth_query failed: %s", (void *)c,
            who(c, wb, sizeof wb), why);
    auth_lookup_end(c, false);
    /* as PgBouncer: a client not yet authenticated learns nothing of the
     * server's error; the log has it */
    client_close(c, "08P01", "bouncer config error");
}

static void on_auth_reply(evutil_socket_t fd, short what, void *arg)
{
    client *c = arg;
    auth_lookup *aq = c->aq;
    if (what & EV_TIMEOUT) {
        auth_lookup_fail(c, "no answer from the server in time");
        return;
    }
    if (pq_buf_reserve(&aq->buf, 4096)) {
        auth_lookup_fail(c, "out of memory");
        return;
    }
    SSL *tls = ((backend *)weir_conn_handle(aq->conn))->tls;
    ssize_t n = io_recv(fd, tls, aq->buf.p + aq->buf.end, aq->buf.cap - aq->buf.end);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (n <= 0) {
        auth_lookup_fail(c, "server connection lost");
        return;
    }
    aq->buf.end += (uint32_t)n;
    if (io_pending(tls)) event_active(&aq->ev, EV_READ, 0); /* TLS holds more */
    for (;;) {
        pq_msg m;
        int t = pq_buf_take(&aq->buf, 1u << 20, &m);
        if (t == PQ_NEED) return;
        if (t == PQ_BAD) {
            auth_lookup_fail(c, "malformed answer from the server");
            return;
        }
        int r = authq_answer(&aq->q, &m);
        if (m.type == 'Z' && m.len == 5)
            ((backend *)weir_conn_handle(aq->conn))->txn = (char)m.body[0];
        if (r < 0 || (r > 0 && aq->q.err[0])) {
            auth_lookup_fail(c, aq->q.err);
            return;
        }
        if (r > 0) break;
    }
    /* No row, or no secret: no such user, which fails like a wrong password. */
    clear_secret(c);
    c->secret = aq->q.secret; /* taken over */
    aq->q.secret = NULL;
    c->secret_from_query = c->secret != NULL;
    bool found = aq->q.named; /* a function returning a record answers NULLs for nobody */
    auth_lookup_end(c, true);
    pool_unpin(c->pool); /* the auth_query pool: the client's own comes next */
    c->pool = NULL;
    if (c->auth_method == AUTH_TRUST) { /* trust: found is enough */
        if (found)
            auth_done(c);
        else
            client_close(c, "28000", "\"trust\" authentication failed: no such user: %s", c->user);
        return;
    }
    auth_ask(c);
}

/* The auth_user connection came: send auth_query with the user's name. */
static void auth_lookup_send(client *c, weir_conn *conn)
{
    auth_lookup *aq = c->aq;
    aq->conn = conn;
    backend *be = weir_conn_handle(conn);
    pq_buf *b = &aq->buf;
    const cfg *k = &c->w->srv->cfg;
    const cfg_db *db = cfg_find_db(k, c->dbname);
    int rc = authq_request(b, db && db->auth_query[0] ? db->auth_query : k->auth_query, c->user);
    /* A few hundred bytes to an idle connection go in one send. */
    ssize_t n = rc ? -1 : io_send(be->fd, be->tls, b->p, b->end);
    bool sent = n >= 0 && (uint32_t)n == b->end;
    pq_buf_reset(b);
    if (!sent) {
        auth_lookup_fail(c, "cannot send auth_query");
        return;
    }
    int64_t ms = be->target->io_timeout_ms;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    event_assign(&aq->ev, c->w->base, be->fd, EV_READ | EV_PERSIST, on_auth_reply, c);
    event_add(&aq->ev, &tv);
}

/* --- the admin console --------------------------------------------------- */

static void admin_login(client *c)
{
    server *s = c->w->srv;
    bool full = c->admin_peer || cfg_list_has(s->cfg.admin_users, c->user);
    bool stats = full || cfg_list_has(s->cfg.stats_users, c->user) || s->cfg.auth_type == AUTH_ANY;
    if (!stats) {
        client_close(c, "08P01", "not allowed");
        return;
    }
    c->admin_full = full;
    char err[200]; /* counted as PgBouncer counts its console's clients; admins never refused */
    if (clients_admit(s, c->dbname, c->user, full, &c->dbc, &c->userc, err, sizeof err)) {
        if (admit_later(c)) return;
        client_close(c, "53300", "%s", err);
        return;
    }
    st_add(&s->console->ws[c->w->id].logins, 1);
    if (new_cancel_key(c)) {
        client_close(c, "58000", "could not generate a cancel key: no random bytes");
        return;
    }
    /* The console's own parameters; its version is weir's, as PgBouncer's
     * console says "<version>/bouncer". */
    static const char *const console[][2] = {{"server_version", WEIR_VERSION "/weir"},
                                             {"server_encoding", "UTF8"},
                                             {"client_encoding", "UTF8"},
                                             {"DateStyle", "ISO"},
                                             {"standard_conforming_strings", "on"},
                                             {"integer_datetimes", "on"},
                                             {"application_name", ""}};
    be_params w = {0};
    for (size_t i = 0; i < sizeof console / sizeof *console; i++)
        be_params_set(&w, console[i][0], console[i][1]);
    put_welcome(c, &w);
    char wb[WHO_LEN];
    srv_log(s, "LOG", "C-%p: %s login to the admin console (%s)", (void *)c, who(c, wb, sizeof wb),
            full ? "admin" : "stats");
    set_state(c, CL_CONSOLE);
    if (flush_out(c)) (void)process_in(c);
}

/* How long a console command that finds another change or listing running
 * (ADMIN_WAIT_BUSY) is tried again (after each hold of its worker, and at
 * each tick) before it answers that. */
#define ADMIN_BUSY_MAX_MS 10000

/* Admin console input: simple queries only. false: c is gone. */
static bool admin_input(client *c)
{
    while (!c->admin_wait) {
        pq_msg m;
        uint32_t at = c->in.start;
        int t = pq_buf_take(&c->in, 65536, &m);
        if (t == PQ_NEED) break;
        if (t == PQ_BAD) {
            client_close(c, "08P01", "invalid message length");
            return false;
        }
        if (m.type == 'X') {
            client_close(c, NULL, NULL);
            return false;
        }
        if (m.type != 'Q' || m.len < 5 || m.body[m.len - 5] != '\0') {
            client_close(c, "08P01", "the admin console takes simple queries only");
            return false;
        }
        wstats *ws = &c->w->srv->console->ws[c->w->id]; /* SHOW STATS' "pgbouncer" row */
        if (!c->admin_busy_ms) { /* once, before it runs: SHOW TOTALS counts itself */
            st_add(&ws->query, 1);
            st_add(&ws->xact, 1);
            st_add(&ws->recv, m.len + 1);
        }
        uint32_t before = c->out.end;
        c->admin_wait =
            admin_query(c->w->srv, c->admin_full, (const char *)m.body, &c->out, c->admin_wait_db);
        if (c->admin_wait == ADMIN_WAIT_BUSY) {
            /* Another change or listing has the change lock (and may hold
             * this worker too): the command stays unread, and runs again
             * once that hold ends (console_retry) or at the next tick
             * (timeouts), for ADMIN_BUSY_MAX_MS at most. */
            int64_t now = now_ms();
            if (!c->admin_busy_ms) c->admin_busy_ms = now;
            if (now - c->admin_busy_ms < ADMIN_BUSY_MAX_MS) {
                c->in.start = at;
                c->w->console_retry = true;
                break;
            }
            c->admin_wait = 0;
            admin_busy_error(&c->out);
        }
        c->admin_busy_ms = 0;
        st_add(&ws->sent, c->out.end - before);
        if (!c->admin_wait) (void)pq_put_ready(&c->out, 'I');
        c->out_scanned = c->out.end;
        if (c->admin_wait) break; /* later commands wait for this one (worker_timeouts) */
    }
    c->in_scanned = c->in.start;
    if (!flush_out(c)) return false;
    update_events(c);
    return true;
}

/* A console command that found the change lock taken, again (with what
 * came after it). false: c is gone. */
static bool admin_retry(client *c)
{
    c->admin_wait = 0;
    c->t_activity = now_ms();
    return admin_input(c);
}

/* worker_door.console_retry: after a hold of w ended. */
static void console_retry(worker *w)
{
    client *next;
    for (client *c = w->clients; c; c = next) {
        next = c->next;
        if (c->admin_wait == ADMIN_WAIT_BUSY) (void)admin_retry(c);
    }
}

/* The client's address for the login back-off; NULL for a Unix socket. */
static const char *peer_of(client *c, char *buf, size_t len)
{
    int port;
    if (c->is_unix) return NULL;
    sockaddr_text((const struct sockaddr *)&c->peer, buf, len, &port);
    return buf;
}

/* PostgreSQL's words; a failed SCRAM exchange adds PgBouncer's. */
static void auth_failed(client *c, bool sasl)
{
    char peer[64];
    authguard_failed(c->w->srv->guard, c->user, peer_of(c, peer, sizeof peer), weir_now_ms());
    /* PgBouncer's phrase first, PostgreSQL's after it */
    client_close(c, "28P01", "%spassword authentication failed for user \"%s\"",
                 sasl ? "SASL authentication failed: " : "", c->user);
}

/* A BackendKeyData for c: a process id in PostgreSQL's range (a positive
 * int4: clients pass it to pg_terminate_backend) and a random key. -1: no
 * random bytes; the login must fail. */
static int new_cancel_key(client *c)
{
    uint32_t r[2];
    if (auth_random(r, sizeof r)) return -1;
    c->my_pid = r[0];
    c->my_key = r[1];
    c->my_pid &= 0x7fffffffu;
    if (c->w->srv->cfg.peer_id > 0) peer_stamp(c->w->srv->cfg.peer_id, &c->my_pid, &c->my_key);
    if (!c->my_pid) c->my_pid = 1;
    return 0;
}

/* The uid at the other end of a Unix socket; (uid_t)-1 if unknown. */
static uid_t peer_uid(const client *c)
{
    struct ucred cr;
    socklen_t l = sizeof cr;
    if (!c->is_unix || getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cr, &l)) return (uid_t)-1;
    return cr.uid;
}

/* The OS user name of uid: 0, or -1. */
static int os_user(uid_t uid, char *out, size_t len)
{
    struct passwd pw, *r = NULL;
    char buf[4096];
    if (uid == (uid_t)-1 || getpwuid_r(uid, &pw, buf, sizeof buf, &r) || !r) return -1;
    return snprintf(out, len, "%s", pw.pw_name) < (int)len ? 0 : -1;
}

/* The client's address for an hba lookup (IPv4-mapped IPv6 as IPv4). */
static void hba_addr(const client *c, hba_login *q)
{
    const struct sockaddr_storage *ss = &c->peer;
    q->family = AF_UNSPEC;
    if (ss->ss_family == AF_INET) {
        q->family = AF_INET;
        memcpy(q->addr, &((const struct sockaddr_in *)ss)->sin_addr, 4);
    } else if (ss->ss_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            q->family = AF_INET;
            memcpy(q->addr, a->s6_addr + 12, 4);
        } else {
            q->family = AF_INET6;
            memcpy(q->addr, a->s6_addr, 16);
        }
    }
}

/* auth_type = hba: the first rule of auth_hba_file matching this login
 * decides its method (c->auth_method, c->auth_map). 0, or -1 with the
 * client closed, in PostgreSQL's words. */
static int hba_pick(client *c)
{
    server *s = c->w->srv;
    hba_login q = {.local = c->is_unix, .tls = c->tls != NULL, .db = c->dbname, .user = c->user};
    if (!q.local) hba_addr(c, &q);
    char host[64] = "[local]";
    if (!q.local) peer_of(c, host, sizeof host);
    const char *enc = c->tls ? "SSL encryption" : "no encryption";
    hba_rule_info r;
    if (!hba_match(s->cfg.hba, &q, &r)) {
        client_close(c, "28000",
                     "no pg_hba.conf entry for host \"%s\", user \"%s\", database \"%s\", %s", host,
                     c->user, c->dbname, enc);
        return -1;
    }
    static const int method[] = {
        [HBA_TRUST] = AUTH_TRUST, [HBA_MD5] = AUTH_MD5,   [HBA_PASSWORD] = AUTH_PLAIN,
        [HBA_SCRAM] = AUTH_SCRAM, [HBA_CERT] = AUTH_CERT, [HBA_PEER] = AUTH_PEER};
    if (r.method == HBA_REJECT) {
        client_close(c, "28000",
                     "pg_hba.conf rejects connection for host \"%s\", user \"%s\", database "
                     "\"%s\", %s",
                     host, c->user, c->dbname, enc);
        return -1;
    }
    if (r.method == HBA_UNSUPPORTED) {
        client_close(c, "28000",
                     "authentication method %s (auth_hba_file line %d) is not supported by weir",
                     r.method_name, r.line);
        return -1;
    }
    if (r.clientcert) { /* a password method that also wants a valid certificate */
        char cn[CFG_NAME + 1];
        if (tls_peer_cn(c->tls, cn, sizeof cn)) {
            client_close(c, "28000",
                         "connection requires a valid client certificate (auth_hba_file line %d)",
                         r.line);
            return -1;
        }
        if (r.clientcert == 2 && strcmp(cn, c->user)) {
            client_close(c, "28000",
                         "certificate validation (clientcert=verify-full) failed for user "
                         "\"%s\": CN mismatch",
                         c->user);
            return -1;
        }
    }
    c->auth_method = method[r.method];
    snprintf(c->auth_map, sizeof c->auth_map, "%s", r.map);
    return 0;
}

/* Does the name the certificate or the OS vouches for (sys) let the client
 * log in as its user: equal, or by the rule's ident map. */
static bool ident_ok(client *c, const char *sys, const char *how)
{
    if (!c->auth_map[0]) return !strcmp(sys, c->user);
    if (hba_ident_match(c->w->srv->cfg.hba, c->auth_map, sys, c->user)) return true;
    srv_log(c->w->srv, "WARNING",
            "C-%p: %s/%s ident map \"%s\" has no match for %s \"%s\" as user \"%s\"", (void *)c,
            c->dbname, c->user, c->auth_map, how, sys, c->user);
    return false;
}

/* Start authenticating per auth_type (or auth_hba_file's rule). */
static void auth_start(client *c)
{
    server *s = c->w->srv;
    int type = s->cfg.auth_type;
    c->auth_method = type;
    c->auth_map[0] = '\0';
    if (type == AUTH_ANY) {
        auth_done(c);
        return;
    }
    /* The console, over the Unix socket, to user pgbouncer by the OS user
     * weir runs as: no password (PgBouncer's way in for its operator). */
    if (c->admin && c->is_unix && !strcmp(c->user, "pgbouncer") && peer_uid(c) == geteuid()) {
        c->admin_peer = true;
        auth_done(c);
        return;
    }
    if (type == AUTH_HBA) {
        if (hba_pick(c)) return;
        type = c->auth_method;
    }
    if (type == AUTH_CERT) {
        char cn[CFG_NAME + 1];
        if (!c->tls)
            client_close(c, "28000", "certificate authentication needs TLS (sslmode=require)");
        else if (tls_peer_cn(c->tls, cn, sizeof cn))
            client_close(c, "28000", "TLS client certificate missing");
        else if (!c->auth_map[0] && strcmp(cn, c->user))
            client_close(c, "28000", "TLS certificate name mismatch: \"%s\" is not user \"%s\"", cn,
                         c->user);
        else if (!ident_ok(c, cn, "certificate name"))
            client_close(c, "28000", "certificate authentication failed for user \"%s\"", c->user);
        else
            auth_done(c);
        return;
    }
    if (type == AUTH_PEER) {
        char os[CFG_NAME];
        if (!c->is_unix)
            client_close(c, "28000", "peer authentication works over the Unix socket only");
        else if (os_user(peer_uid(c), os, sizeof os) || !ident_ok(c, os, "OS user"))
            client_close(c, "28000", "peer authentication failed for user \"%s\"", c->user);
        else
            auth_done(c);
        return;
    }
    const cfg_secret *sec = cfg_find_secret(&s->cfg, c->user);
    if (type == AUTH_TRUST) {
        if (!sec) {
            /* A user absent from auth_file is looked up with auth_query
             * when there is an auth_user, and refused only if not found. */
            const cfg_db *db = cfg_find_db(&s->cfg, c->dbname);
            const char *au = db && db->auth_user[0] ? db->auth_user : s->cfg.auth_user;
            if (db && !cfg_db_http_only(db) && au[0]) {
                auth_lookup_start(c, db, au);
                return;
            }
            if (s->cfg.auth_file[0]) {
                client_close(c, "28000", "\"trust\" authentication failed: no such user: %s",
                             c->user);
                return;
            }
        }
        auth_done(c);
        return;
    }
    char peer[64];
    int64_t retry;
    if (!authguard_allow(s->guard, c->user, peer_of(c, peer, sizeof peer), weir_now_ms(), &retry)) {
        client_close(c, "28000",
                     "too many failed logins for user \"%s\" or from this address: try again "
                     "in %lld s",
                     c->user, (long long)(retry + 999) / 1000);
        return;
    }
    if (!sec) {
        const cfg_db *db = cfg_find_db(&s->cfg, c->dbname);
        const char *au = db && db->auth_user[0] ? db->auth_user : s->cfg.auth_user;
        if (db && au[0]) {
            auth_lookup_start(c, db, au);
            return;
        }
        /* Ask anyway, so that a missing user looks like a wrong password. */
        clear_secret(c);
    } else if (!set_secret(c, sec->secret, strlen(sec->secret))) {
        client_close(c, "53200", "out of memory");
        return;
    }
    auth_ask(c);
}

/* Ask the client for its password by the method auth_type and its secret
 * allow. A user who does not exist is asked exactly as one who does (for
 * SCRAM: a mock secret whose salt is the same on every login, as
 * PostgreSQL's mock authentication), and fails only after answering. */
static void auth_ask(client *c)
{
    int type = c->auth_method;
    const char *secret = secret_of(c);
    bool is_scram = auth_is_scram_secret(secret), is_md5 = auth_is_md5_hash(secret);
    /* auth_type = md5 takes SCRAM from a user whose secret is SCRAM (an md5
     * hash cannot be made from it); auth_type = scram-sha-256 never takes
     * md5: a user with only an md5 hash cannot log in (as PostgreSQL). */
    bool use_scram = type == AUTH_SCRAM || (type == AUTH_MD5 && is_scram);
    if (use_scram) {
        c->scram = calloc(1, sizeof *c->scram);
        if (!c->scram) {
            client_close(c, "53200", "out of memory");
            return;
        }
        int rc;
        if (is_scram) {
            rc = scram_secret_parse(secret, &c->scram->sec);
            if (rc) {
                client_close(c, "28P01", "invalid SCRAM secret for user \"%s\"", c->user);
                return;
            }
        } else if (secret[0] && !is_md5) {
            rc = scram_secret_for_user(c->user, secret, c->w->srv->cfg.scram_iterations,
                                       &c->scram->sec);
        } else {
            clear_secret(c); /* no user, or only an md5 hash: the proof cannot pass */
            rc = scram_secret_mock(c->user, c->w->srv->cfg.scram_iterations, &c->scram->sec);
        }
        if (rc) {
            client_close(c, "58000", "could not prepare authentication: no random bytes");
            return;
        }
        /* Over TLS, channel binding too (tls-server-end-point), preferred first. */
        static const char mech[] = "SCRAM-SHA-256\0";
        static const char mech_plus[] = "SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0";
        c->scram->cbind_len =
            c->tls ? tls_cbind(c->tls, c->scram->cbind, sizeof c->scram->cbind) : 0;
        if (c->scram->cbind_len)
            (void)pq_put_auth(&c->out, 10, mech_plus, sizeof mech_plus);
        else
            (void)pq_put_auth(&c->out, 10, mech, sizeof mech);
        set_state(c, CL_AUTH_SASL_FIRST);
    } else if (type == AUTH_MD5) {
        if (auth_random(c->salt, 4)) {
            client_close(c, "58000", "could not prepare authentication: no random bytes");
            return;
        }
        (void)pq_put_auth(&c->out, 5, c->salt, 4);
        set_state(c, CL_AUTH_PASSWORD);
    } else {
        (void)pq_put_auth(&c->out, 3, NULL, 0);
        set_state(c, CL_AUTH_PASSWORD);
    }
    c->out_scanned = c->out.end;
    if (flush_out(c)) update_events(c);
}

static bool check_password(client *c, const char *pw, uint32_t len)
{
    if (c->state != CL_AUTH_PASSWORD || !len || pw[len - 1] != '\0') return false;
    /* Cleartext: checked against the secret whatever its kind; the stored
     * md5 string itself is not a password. */
    const char *secret = secret_of(c);
    if (c->auth_method == AUTH_PLAIN) return auth_password_ok(c->user, pw, secret);
    if (!secret[0] || auth_is_scram_secret(secret)) return false;
    char expect[36];
    auth_md5_response(c->user, secret, c->salt, expect);
    return auth_equal(expect, pw);
}

/* One authentication message ('p') from the client. */
static void auth_message(client *c, const pq_msg *m)
{
    const char *why = NULL;
    uint32_t blen = m->len - 4;
    if (m->type != 'p') {
        client_close(c, "08P01", "expected password response, got message type %d",
                     (unsigned char)m->type);
        return;
    }
    if (c->state == CL_AUTH_PASSWORD) {
        if (!check_password(c, (const char *)m->body, blen)) {
            auth_failed(c, false);
            return;
        }
        auth_done(c);
        return;
    }
    if (c->state == CL_AUTH_SASL_FIRST) {
        const uint8_t *q = m->body, *e = m->body + blen;
        const char *mech = pq_get_str(&q, e);
        bool plus = mech && c->scram->cbind_len && !strcmp(mech, "SCRAM-SHA-256-PLUS");
        if (!mech || (!plus && strcmp(mech, "SCRAM-SHA-256"))) {
            client_close(c, "08P01", "client selected an invalid SASL authentication mechanism");
            return;
        }
        c->scram->plus = plus;
        if (e - q < 4 || pq_get32(q) != (uint32_t)(e - q - 4)) {
            client_close(c, "08P01", "malformed SASL message");
            return;
        }
        if (scram_server_first(c->scram, (const char *)q + 4, (size_t)(e - q - 4), &why)) {
            client_close(c, "08P01", "%s", why);
            return;
        }
        const char *out = c->scram->server_first;
        (void)pq_put_auth(&c->out, 11, out, (uint32_t)strlen(out));
        c->out_scanned = c->out.end;
        set_state(c, CL_AUTH_SASL_FINAL);
        if (flush_out(c)) update_events(c);
        return;
    }
    char out[128];
    if (!c->secret ||
        scram_server_final(c->scram, (const char *)m->body, blen, out, sizeof out, &why)) {
        if (why && strcmp(why, "password authentication failed") && c->secret)
            client_close(c, "08P01", "%s", why);
        else
            auth_failed(c, true);
        return;
    }
    (void)pq_put_auth(&c->out, 12, out, (uint32_t)strlen(out));
    c->out_scanned = c->out.end;
    auth_done(c);
}

/* One step of the TLS handshake (CL_TLS). */
static void tls_step(client *c)
{
    char why[300];
    int r = tls_handshake(c->tls, why, sizeof why);
    if (r == 1) atomic_fetch_add(&c->w->srv->tls_handshakes, 1);
    if (r < 0) {
        atomic_fetch_add(&c->w->srv->tls_failures, 1);
        char peer[64];
        srv_log(c->w->srv, "WARNING", "C-%p: %s: %s", (void *)c, peer_of(c, peer, sizeof peer),
                why);
        destroy(c); /* mid-handshake there is no way to tell the client more */
        return;
    }
    c->tls_want_write = r == 2;
    if (r == 1 && c->tls_direct && !tls_alpn_postgresql(c->tls)) {
        /* as PostgreSQL 17: direct TLS must say it is for postgresql */
        srv_log(c->w->srv, "WARNING",
                "C-%p: direct TLS connection without ALPN protocol \"postgresql\"", (void *)c);
        destroy(c);
        return;
    }
    if (r == 1) set_state(c, CL_LOGIN);
    update_events(c);
    if (r == 1 && io_pending(c->tls)) event_active(&c->cev, EV_READ, 0);
}

/* The replication startup parameter: 0 none, 1 physical, 2 logical
 * (database), -1 not a value PostgreSQL takes. */
static int replication_kind(const char *v)
{
    static const char *const yes[] = {"true", "on", "yes", "1"}, *const no[] = {"false", "off",
                                                                                "no", "0"};
    if (!strcasecmp(v, "database")) return 2;
    for (size_t i = 0; i < 4; i++) {
        if (!strcasecmp(v, yes[i])) return 1;
        if (!strcasecmp(v, no[i])) return 0;
    }
    return -1;
}

static bool ignored_param(server *s, const char *name)
{
    return cfg_list_has(s->cfg.ignore_startup_parameters, name);
}

/* A startup parameter weir keeps in line (tracked, or named by
 * track_extra_parameters): 0 taken, -1 not one of them, 1 too long. */
static int take_param(client *c, const char *name, const char *value)
{
    for (size_t k = 0; k < NTRACKED; k++)
        if (!strcasecmp(tracked[k], name)) {
            size_t n = strlen(value);
            if (n >= BE_VALUE && k != NTRACKED - 1) return 1;
            if (n >= BE_VALUE) { /* application_name: clipped (PostgreSQL clips it to 63) */
                n = BE_VALUE - 1;
                while (n > 0 && ((unsigned char)value[n] & 0xC0) == 0x80) n--;
            }
            want_put(c, k, value, n);
            return 0;
        }
    /* track_extra_parameters: a GUC-like name (letters, digits, _ and .,
     * as PostgreSQL's), up to NEXTRA of them */
    if (!cfg_list_has_nocase(c->w->srv->cfg.track_extra_parameters, name)) return -1;
    size_t nl = strlen(name);
    if (!nl || nl >= BE_NAME) return -1;
    for (const char *q = name; *q; q++)
        if (!(isalnum((unsigned char)*q) || *q == '_' || *q == '.')) return -1;
    if (strlen(value) >= BE_VALUE) return 1;
    if (!c->xwant && !(c->xwant = calloc(1, sizeof *c->xwant))) return -1;
    if (!be_params_get(c->xwant, name) && c->xwant->n == NEXTRA) return -1;
    (void)be_params_set(c->xwant, name, value);
    return 0;
}

typedef struct opt_ctx {
    client *c;
    char err[160]; /* the first refusal */
} opt_ctx;

static void opt_one(void *ud, const char *name, const char *value)
{
    opt_ctx *x = ud;
    server *s = x->c->w->srv;
    int r = take_param(x->c, name, value);
    if (r == 0 || x->err[0]) return;
    if (r < 0 && (ignored_param(s, name) || ignored_param(s, "options"))) return;
    if (r > 0)
        snprintf(x->err, sizeof x->err,
                 "startup parameter %.64s in options: its value is longer "
                 "than %d bytes",
                 name, BE_VALUE - 1);
    else
        snprintf(x->err, sizeof x->err, "unsupported startup parameter in options: %.64s", name);
}

/* The startup packet, or an SSL/GSS/cancel request. */
static void startup_packet(client *c)
{
    server *s = c->w->srv;
    uint32_t avail = pq_buf_len(&c->in);
    if (avail < 4) return;
    uint8_t *p = c->in.p + c->in.start;
    uint32_t len = pq_get32(p);
    if (len < 8 || len > PQ_STARTUP_MAX) {
        client_close(c, "08P01", "invalid length of startup packet");
        return;
    }
    if (avail < len) return;
    pq_startup st;
    const char *why;
    if (pq_parse_startup(p, len, &st, &why)) {
        client_close(c, "08P01", "%s", why);
        return;
    }
    c->in.start += len;
    c->in_scanned = c->in.start;
    if (st.code == PQ_SSL_CODE && !c->tls && s->tls_client) {
        /* Bytes sent after the SSLRequest would be taken as if they had come
         * over TLS (CVE-2021-23222's lesson): refuse them. */
        if (pq_buf_len(&c->in)) {
            client_close(c, "08P01", "received unencrypted data after SSL request");
            return;
        }
        (void)pq_put_raw(&c->out, "S", 1);
        c->out_scanned = c->out.end;
        if (!flush_out(c)) return;
        if (!(c->tls = tls_accept_new(s, c->fd))) {
            srv_log(s, "WARNING", "C-%p: cannot start TLS (out of memory)", (void *)c);
            destroy(c);
            return;
        }
        set_state(c, CL_TLS);
        tls_step(c);
        return;
    }
    if (st.code == PQ_SSL_CODE || st.code == PQ_GSSENC_CODE) {
        /* No TLS here (client_tls_sslmode = disable, or already on; no GSS):
         * 'N', and the client goes on as it is. */
        (void)pq_put_raw(&c->out, "N", 1);
        c->out_scanned = c->out.end;
        if (flush_out(c)) update_events(c);
        return;
    }
    if (st.code == PQ_CANCEL_CODE) {
        handle_cancel(s, st.cancel_pid, st.cancel_key);
        destroy(c);
        return;
    }
    if (!c->tls && !c->is_unix && cfg_sslmode(s->cfg.client_tls_sslmode) >= SSLMODE_REQUIRE) {
        client_close(c, "28000", "SSL required");
        return;
    }
    /* Over the limit when accepted, and still over now: a client that left
     * just before this one came, on another worker that had not yet seen it
     * go, has usually freed its place by the time this start-up packet
     * arrives. If not, the packet is put back and looked at again at the
     * worker's next tick (at most 100 ms): that worker was late to read the
     * Terminate, and the place is free by then. Refused only if still over. */
    if (c->reject && atomic_load(&s->nclients) > s->cfg.max_client_conn) {
        if (!c->reject_deferred) {
            c->reject_deferred = true;
            c->in.start -= len; /* nothing read it since it was taken */
            c->in_scanned = c->in.start;
            return;
        }
        client_close(c, "08P01", "no more connections allowed (max_client_conn)");
        return;
    }
    const char *user = pq_startup_get(&st, "user");
    const char *dbn = pq_startup_get(&st, "database");
    if (!user || !*user) {
        client_close(c, "08P01", "no username supplied");
        return;
    }
    snprintf(c->user, sizeof c->user, "%s", user);
    snprintf(c->dbname, sizeof c->dbname, "%s", dbn && *dbn ? dbn : user);
    /* replication=database|true: a replication connection (PgBouncer 1.23+),
     * its startup parameters passed to its own server as they are */
    const char *rv = pq_startup_get(&st, "replication");
    int repl = rv ? replication_kind(rv) : 0;
    if (repl < 0) {
        client_close(c, "08P01", "invalid value for parameter \"replication\": \"%.40s\"", rv);
        return;
    }
    if (repl > 0) {
        size_t n = 0;
        for (int i = 0; i < st.nparams; i++)
            if (strcmp(st.names[i], "user") && strcmp(st.names[i], "database") &&
                !pq_startup_extension(st.names[i]))
                n += strlen(st.names[i]) + strlen(st.values[i]) + 2;
        if (!(c->repl = malloc(n ? n : 1))) {
            client_close(c, "53200", "out of memory");
            return;
        }
        for (int i = 0; i < st.nparams; i++) {
            if (!strcmp(st.names[i], "user") || !strcmp(st.names[i], "database") ||
                pq_startup_extension(st.names[i]))
                continue;
            (void)take_param(c, st.names[i], st.values[i]); /* for SHOW CLIENTS' sake */
            size_t a = strlen(st.names[i]) + 1, b = strlen(st.values[i]) + 1;
            memcpy(c->repl + c->repl_len, st.names[i], a);
            memcpy(c->repl + c->repl_len + a, st.values[i], b);
            c->repl_len += a + b;
        }
        c->replication = repl == 2 ? "database" : "physical";
    }
    for (int i = 0; i < st.nparams && !repl; i++) {
        const char *n = st.names[i];
        if (!strcmp(n, "user") || !strcmp(n, "database") || !strcmp(n, "options") ||
            pq_startup_extension(n))
            continue;
        int r = take_param(c, n, st.values[i]);
        if (r == 0 || (r < 0 && ignored_param(s, n))) continue;
        if (r > 0)
            client_close(c, "08P01", "startup parameter %s: its value is longer than %d bytes", n,
                         BE_VALUE - 1);
        else
            client_close(c, "08P01", "unsupported startup parameter: %s", n);
        return;
    }
    /* options: "-c name=value" settings of the parameters weir keeps in
     * line; others are refused unless ignore_startup_parameters names them
     * (or names options itself), as PgBouncer 1.25 */
    const char *opts = repl ? NULL : pq_startup_get(&st, "options");
    if (opts) {
        opt_ctx x = {.c = c};
        const char *bad;
        if (pq_parse_options(opts, opt_one, &x, &bad)) {
            client_close(c, "08P01", "%s", bad);
            return;
        }
        if (x.err[0]) {
            client_close(c, "08P01", "%s", x.err);
            return;
        }
    }
    /* A client that asked for protocol 3.2 (libpq 18's max_protocol_version)
     * or for "_pq_." extensions is told, before anything else, that this is
     * 3.0 without extensions, as PostgreSQL and PgBouncer 1.25 tell it; it
     * goes on at 3.0 or leaves. The extensions are not passed on: a server
     * connection is shared, and weir speaks 3.0 to it. */
    if (pq_put_negotiate(&c->out, &st)) {
        client_close(c, "53200", "out of memory");
        return;
    }
    c->out_scanned = c->out.end;
    bool console = (!strcmp(c->dbname, "pgbouncer") || !strcmp(c->dbname, "weir")) &&
                   !cfg_find_db_exact(&s->cfg, c->dbname);
    if (atomic_load(&s->shutting_down) && !console) { /* only the console, while shutting down */
        client_close(c, "08P01", "pooler is shutting down");
        return;
    }
    if (console) {
        c->admin = true;
        set_state(c, CL_AUTH_START);
        auth_start(c);
        return;
    }
    /* An unknown database is only said after authentication (auth_done):
     * before it, a wrong password must not learn which databases exist. */
    const cfg_db *db = cfg_find_db(&s->cfg, c->dbname);
    if (db) { /* the [databases] entry's defaults for what the client did not send */
        const char *defaults[NTRACKED] = {
            db->client_encoding, db->datestyle, db->timezone, NULL, NULL, db->application_name};
        for (size_t k = 0; k < NTRACKED; k++)
            if (!c->want_set[k] && defaults[k] && defaults[k][0])
                want_put(c, k, defaults[k], strlen(defaults[k]));
    }
    set_state(c, CL_AUTH_START);
    auth_start(c);
}

static void login_data(client *c)
{
    /* admit_try 1: its login ends at the next tick (admit_later); what came
     * after its last authentication message waits for then */
    while (c->admit_try != 1 &&
           (c->state == CL_LOGIN || c->state == CL_AUTH_PASSWORD ||
            c->state == CL_AUTH_SASL_FIRST || c->state == CL_AUTH_SASL_FINAL)) {
        if (c->state == CL_LOGIN) {
            uint32_t before = pq_buf_len(&c->in);
            startup_packet(c);
            if (c->state == CL_CLOSED) return;
            if (pq_buf_len(&c->in) == before && c->state == CL_LOGIN) return; /* need more */
            continue;
        }
        pq_msg m;
        int t = pq_buf_take(&c->in, CFG_SECRET_MAX + 4, &m);
        if (t == PQ_NEED) return;
        if (t == PQ_BAD) {
            client_close(c, "08P01", "invalid length of authentication message");
            return;
        }
        c->in_scanned = c->in.start;
        auth_message(c, &m);
        if (c->state == CL_CLOSED) return;
    }
}

static void client_event(evutil_socket_t fd, short what, client *c);

static void on_client(evutil_socket_t fd, short what, void *arg)
{
    worker *w = current_worker;
    clock_hold();
    worker_scope_begin(w);
    client_event(fd, what, arg);
    worker_scope_end(w);
    clock_release();
}

static void client_event(evutil_socket_t fd, short what, client *c)
{
    if (c->state == CL_TLS) {
        tls_step(c);
        return;
    }
    /* A TLS record as the very first byte: direct TLS, no SSLRequest (a
     * startup packet begins with its length, never 0x16). */
    if (c->state == CL_LOGIN && !c->tls && !pq_buf_len(&c->in) && c->w->srv->tls_client &&
        (what & EV_READ)) {
        if (io_peek_byte(fd) == 0x16) {
            if (!(c->tls = tls_accept_new(c->w->srv, c->fd))) {
                destroy(c);
                return;
            }
            c->tls_direct = true;
            set_state(c, CL_TLS);
            tls_step(c);
            return;
        }
    }
    if (what & EV_WRITE) {
        if (!flush_out(c)) return;
        if (!c->conn && (c->state == CL_IDLE || c->state == CL_CONSOLE) && pq_buf_len(&c->in)) {
            (void)process_in(c);
            return;
        }
    }
    if (what & EV_READ) {
        if (reserve(&c->in, &c->in_scanned, c->state < CL_IDLE ? LOGIN_CHUNK : READ_CHUNK)) {
            client_close(c, "53200", "out of memory");
            return;
        }
        ssize_t n = io_recv(fd, c->tls, c->in.p + c->in.end, c->in.cap - c->in.end);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            if (logged_in(c) && c->w->srv->cfg.log_disconnections) {
                char wb[WHO_LEN];
                srv_log(c->w->srv, "LOG", "C-%p: %s closing because: client unexpected eof",
                        (void *)c, who(c, wb, sizeof wb));
            }
            destroy(c);
            return;
        }
        if (n > 0) {
            c->in.end += (uint32_t)n;
            c->t_activity = now_ms();
            /* TLS may hold more, already read from the socket: come back for it. */
            if (io_pending(c->tls)) event_active(&c->cev, EV_READ, 0);
            wstats *ws = cws(c);
            if (ws) st_add(&ws->recv, (uint64_t)n);
            if (c->state < CL_WELCOME) {
                login_data(c);
                if (c->state == CL_CLOSED) return;
                if (c->state < CL_WELCOME) {
                    update_events(c);
                    return;
                }
            }
            (void)process_in(c);
            return;
        }
    }
    update_events(c);
}

static void set_event(client *c, struct event *ev, int fd, short *cur, short want,
                      event_callback_fn cb)
{
    if (*cur == want) return;
    if (*cur) event_del(ev);
    *cur = want;
    if (!want) return;
    event_assign(ev, c->w->base, fd, want | EV_PERSIST, cb, c);
    event_add(ev, NULL);
}

/* An idle client with nothing buffered holds no buffers: a thousand idle
 * clients cost their sockets and this struct, not 32 KB each. */
static void shed_buffers(client *c)
{
    if (c->conn || (c->state != CL_IDLE && c->state != CL_CONSOLE) || c->cst.left ||
        pq_buf_len(&c->in) || c->out.start != c->out.end || pq_buf_len(&c->pre))
        return;
    pq_buf_free(&c->in);
    pq_buf_free(&c->out);
    pq_buf_free(&c->pre);
    c->in_scanned = c->out_scanned = 0;
}

static void update_events(client *c)
{
    if (c->state == CL_CLOSED) return;
    if (c->state == CL_TLS) {
        set_event(c, &c->cev, c->fd, &c->cev_flags, c->tls_want_write ? EV_WRITE : EV_READ,
                  on_client);
        return;
    }
    if (c->in.p || c->out.p) shed_buffers(c);
    short cw = 0;
    /* Read while what waits for the server is under the high-water mark, or
     * while a message weir must see whole is still arriving (its size is
     * the client's to choose, up to PostgreSQL's 1 GB) with nothing before
     * it waiting: not once whole messages wait in c->in (PS_OWED_MAX) or
     * c->pre is over the mark, or a client that pipelines small messages
     * (each read ending in part of one) would have c->pre grow without
     * bound while the server does not read. */
    /* (not while its login waits for the next tick, admit_later: what it
     * sends meanwhile stays with the kernel) */
    if (!c->terminate && c->admit_try != 1 &&
        (pq_buf_len(&c->in) + pq_buf_len(&c->pre) < HIGH_WATER ||
         (c->in_whole_need && c->in_scanned == c->in.start && pq_buf_len(&c->pre) < HIGH_WATER)) &&
        (c->admin || !logged_in(c) || !atomic_load(&c->w->srv->suspended))) /* SUSPEND */
        cw |= EV_READ;
    if (c->out_scanned > c->out.start) cw |= EV_WRITE;
    set_event(c, &c->cev, c->fd, &c->cev_flags, cw, on_client);
    /* Bytes TLS already took off the socket wake nobody: come back for them. */
    if ((cw & EV_READ) && io_pending(c->tls)) event_active(&c->cev, EV_READ, 0);
    if (c->be) {
        be_watch *bw = c->watch;
        bool rd = c->out_scanned - c->out.start < HIGH_WATER;
        if (rd && !bw->added) {
            if (!event_initialized(&bw->ev) || event_get_base(&bw->ev) != c->w->base)
                event_assign(&bw->ev, c->w->base, c->be->fd, EV_READ | EV_PERSIST, on_watch, bw);
            event_add(&bw->ev, NULL);
            bw->added = true;
        } else if (!rd && bw->added) {
            event_del(&bw->ev);
            bw->added = false;
        }
        if (rd && io_pending(c->be->tls)) event_active(&bw->ev, EV_READ, 0);
        short sw = pq_buf_len(&c->pre) || (c->in_scanned > c->in.start && !c->ps) ? EV_WRITE : 0;
        set_event(c, &c->sev, c->be->fd, &c->sev_flags, sw, on_server);
    }
}

/* --- accepting and timeouts ---------------------------------------------- */

static void client_accept(worker *w, int fd, bool is_unix, const struct sockaddr *peer,
                          socklen_t peer_len)
{
    server *s = w->srv;
    /* on a line of its own, so the transaction's fields take as few as they can */
    client *c = aligned_alloc(64, (sizeof *c + 63) / 64 * 64);
    if (!c) {
        close(fd);
        return;
    }
    memset(c, 0, sizeof *c);
    c->w = w;
    c->fd = fd;
    c->id = io_new_id();
    c->is_unix = is_unix;
    c->peer.ss_family = AF_UNSPEC;
    if (!is_unix) {
        /* kept for the log lines, the hba and the login back-off, which
         * would otherwise ask the kernel each time */
        socklen_t l = sizeof c->peer;
        if (peer_len > 0 && peer_len <= sizeof c->peer)
            memcpy(&c->peer, peer, peer_len);
        else if (getpeername(fd, (struct sockaddr *)&c->peer, &l))
            c->peer.ss_family = AF_UNSPEC;
    }
    c->done.fn = checkout_done;
    c->t_connect = c->t_activity = now_ms();
    if (!is_unix) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (s->cfg.tcp_keepalive) setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    }
    int n = atomic_fetch_add(&s->nclients, 1) + 1;
    if (n > s->cfg.max_client_conn) c->reject = true;
    c->state = CL_LOGIN;
    clients_link(w, c, CL_LOGIN);
    update_events(c);
}

/* A [users] entry's timeout, else [pgbouncer]'s (ms; 0: none). */
static int64_t user_timeout(const cfg_user *u, size_t off, int64_t global)
{
    if (!u) return global;
    int64_t v = *(const int64_t *)((const char *)u + off);
    return v >= 0 ? v : global;
}

/* With nothing configured that can end a client between or in its
 * transactions, may the tick pass c by? Read from its first line only: with
 * a thousand clients a walk that reads five lines of each is a miss per
 * line and client, every 100 ms (docs/ARCHITECTURE.md, "Counted against PgBouncer"). */
static bool tick_quiet(const cfg *k, const client *c, int64_t now)
{
    if (c->bad_move || c->admit_try == 1) return false;
    if (c->state == CL_IDLE || c->state == CL_ACTIVE) return true;
    if (c->state != CL_WAITING || c->pool->reserve > 0) return false;
    return k->query_wait_notify <= 0 || c->wait_notified ||
           now - c->t_wait / 1000 < k->query_wait_notify;
}

static void timeouts(worker *w)
{
    const cfg *k = &w->srv->cfg;
    int64_t now = now_ms();
    bool per_user = k->users_timeouts; /* set as the config is read */
    bool quiet = !per_user && k->client_idle_timeout <= 0 && k->query_timeout <= 0 &&
                 k->idle_transaction_timeout <= 0 && k->transaction_timeout <= 0 &&
                 !k->server_fast_close;
    client *next;
    for (client *c = w->clients; c; c = next) {
        next = c->next;
        if (quiet && tick_quiet(k, c, now)) continue;
        int64_t idle = now - c->t_activity;
        if (c->bad_move) {
            client_close(c, "08P01", "internal error (the log says which)");
            continue;
        }
        if (c->admin_wait == ADMIN_WAIT_BUSY) {
            (void)admin_retry(c);
            continue;
        }
        if (c->admin_wait) {
            if (admin_wait_done(w->srv, c->admin_wait, c->admin_wait_db, &c->out)) {
                c->admin_wait = 0;
                (void)pq_put_ready(&c->out, 'I');
                c->out_scanned = c->out.end;
                c->t_activity = now;
                (void)admin_input(c); /* flushes; runs what came meanwhile */
            }
            continue;
        }
        const cfg_user *u = per_user && c->state >= CL_IDLE ? cfg_find_user(k, c->user) : NULL;
        int64_t idle_to =
            user_timeout(u, offsetof(cfg_user, client_idle_timeout), k->client_idle_timeout);
        int64_t query_to = user_timeout(u, offsetof(cfg_user, query_timeout), k->query_timeout);
        int64_t itx_to = user_timeout(u, offsetof(cfg_user, idle_transaction_timeout),
                                      k->idle_transaction_timeout);
        int64_t tx_to =
            user_timeout(u, offsetof(cfg_user, transaction_timeout), k->transaction_timeout);
        if (tx_to > 0 && c->in_xact && c->state != CL_CONSOLE && now - c->t_xact / 1000 > tx_to) {
            client_close(c, "08P01", "transaction timeout");
            continue;
        }
        if (k->server_fast_close && c->be && c->pool && !c->pending && c->be->txn == 'I' &&
            (c->state == CL_IDLE || c->state == CL_ACTIVE) &&
            c->be->id <= atomic_load(&c->pool->close_mark_be)) {
            /* RECONNECT or a changed database: a session's server goes now,
             * between transactions, and so does its client */
            client_close(c, "08P01", "database configuration changed");
            continue;
        }
        /* query_timeout counts a wait for a server connection too, a new
         * client's first one included, as PgBouncer, which words it so */
        if ((c->state == CL_WAITING || (c->state == CL_WELCOME && c->checkout_pending)) &&
            query_to > 0 && now - c->t_wait / 1000 > query_to) {
            char e[400];
            wait_reason(c, e, sizeof e);
            client_close(c, "08P01", "query_timeout%s", e);
            continue;
        }
        if (c->reject_deferred && c->state == CL_LOGIN) {
            login_data(c); /* its start-up packet again: let in, or refused */
            if (c->state == CL_CLOSED) continue;
        }
        if (c->admit_try == 1) {
            c->admit_try = 2;
            /* the end of its login again: refused, or let in, which also
             * runs what it sent behind its password and reads it again
             * (auth_done ends in process_in, which sets its events) */
            auth_done(c);
            if (c->state == CL_CLOSED) continue;
        }
        switch (c->state) {
        case CL_LOGIN:
        case CL_TLS:
        case CL_AUTH_START:
        case CL_AUTH_QUERY:
        case CL_AUTH_PASSWORD:
        case CL_AUTH_SASL_FIRST:
        case CL_AUTH_SASL_FINAL:
        case CL_WELCOME:
            if (k->client_login_timeout > 0 && now - c->t_connect > k->client_login_timeout)
                client_close(c, "08P01", "client_login_timeout");
            break;
        case CL_IDLE:
        case CL_CONSOLE:
            if (idle_to > 0 && idle > idle_to) client_close(c, "08P01", "client_idle_timeout");
            break;
        case CL_WAITING:
            /* the engine times the wait (query_wait_timeout); query_timeout
             * counts it too (see above) */
            if (c->pool->reserve > 0 && idle >= c->pool->reserve_timeout)
                pool_reserve_wanted(c->pool, now);
            /* query_wait_notify: told once per wait, in PgBouncer's words */
            if (k->query_wait_notify > 0 && !c->wait_notified &&
                now - c->t_wait / 1000 >= k->query_wait_notify && c->out.end == c->out_scanned) {
                c->wait_notified = true;
                (void)pq_put_notice(&c->out, "No server connection available in postgres "
                                             "backend, client being queued");
                c->out_scanned = c->out.end;
                if (!flush_out(c)) continue;
                update_events(c);
            }
            break;
        case CL_ACTIVE:
            if (c->pending) {
                if (query_to > 0 && now - c->t_query / 1000 > query_to)
                    client_close(c, "08P01", "query timeout"); /* PgBouncer's words */
            } else if (c->be && c->be->txn != 'I') {
                if (itx_to > 0 && idle > itx_to)
                    client_close(c, "08P01", "idle transaction timeout");
            } else if (idle_to > 0 && idle > idle_to) {
                client_close(c, "08P01", "client_idle_timeout");
            }
            break;
        case CL_CLOSED:
        case CL_NSTATES:
            break;
        }
    }
}

/* SHUTDOWN WAIT_FOR_SERVERS: the clients waiting for a server go (those
 * that would wait later go in request_server). */
static void close_waiting(worker *w)
{
    client *next;
    for (client *c = w->clients; c; c = next) {
        next = c->next;
        if (c->state == CL_WAITING || c->state == CL_WELCOME)
            client_close(c, "08P01", "server shutting down");
    }
}

/* Clients other than the console's (read from the worker's counts). */
static int app_clients(worker *w)
{
    int n = 0;
    for (int st = 0; st < CL_NSTATES; st++)
        if (st != CL_CONSOLE && st != CL_CLOSED) n += atomic_load(&w->nstate[st]);
    return n;
}

/* On shutdown: every client goes, servers are given back. */
static void close_all(worker *w)
{
    while (w->clients) client_close(w->clients, "08P01", "pooler is shutting down");
    worker_drain(w);
    free_graveyard(w);
}

/* A worker closes the clients KILL (admin.c) marked. */
static void kill_marked(worker *w)
{
    client *next;
    for (client *c = w->clients; c; c = next) {
        next = c->next;
        if (c->killed) client_close(c, "08P01", "database \"%s\" killed (KILL)", c->dbname);
    }
}

static void tick(worker *w)
{
    bool susp = atomic_load(&w->srv->suspended);
    if (susp != atomic_load(&w->suspended_seen)) { /* SUSPEND or RESUME: every client again */
        client *next;
        for (client *c = w->clients; c; c = next) {
            next = c->next;
            update_events(c);
        }
        atomic_store(&w->suspended_seen, susp);
    }
    timeouts(w);
    free_graveyard(w);
}

/* Before a server connection closes (the pool's on_destroy, any thread):
 * drop its registrations in every worker. */
static void server_gone(backend *be)
{
    be_ext *x = be->ext;
    for (int i = 0; i < x->n; i++)
        if (event_initialized(&x->w[i].ev))
            event_del(&x->w[i].ev); /* waits for a running callback */
    ps_cache_free(x->ps);
    free(x);
    be->ext = NULL;
}

/* --- packing: clients moved between workers ------------------------------------ */

/* Idle between transactions with nothing in flight: no server, no
 * checkout, nothing buffered either way (TLS included), reading, and
 * nothing the tick or a KILL has yet to do with it. Such a client is its
 * struct and its socket's read registration, so it can change loops. */
static bool movable(const client *c)
{
    return c->state == CL_IDLE && !c->conn && !c->checkout_pending && !c->pending && !c->killed &&
           !c->terminate && !c->bad_move && !c->admit_try && !c->aq && !c->admin_wait &&
           !c->reject_deferred && !c->in_whole_need && !c->sev_flags && c->cev_flags == EV_READ &&
           !c->cst.left && !pq_buf_len(&c->in) && c->out.start == c->out.end &&
           !pq_buf_len(&c->pre) && !io_pending(c->tls);
}

/* worker_door.move_idle: on worker 0's thread, every other worker held at
 * its safe point (worker.c, pack_hold), so no loop runs these clients'
 * callbacks meanwhile. Data that arrives while one moves waits in its
 * socket; the new loop's registration (level-triggered) sees it. */
static int move_idle(worker *from, worker *const *to, int nto, int max)
{
    int moved = 0, i = 0;
    client *next;
    for (client *c = from->clients; c && moved < max; c = next) {
        next = c->next;
        if (!movable(c)) continue;
        worker *dst = to[i++ % nto];
        if (dst == from) continue;
        event_del(&c->cev);
        c->cev_flags = 0;
        clients_unlink(from, c);
        nstate_add(from, CL_IDLE, -1);
        worker_count_add(&from->nclients, -1);
        c->w = dst;
        clients_link(dst, c, CL_IDLE);
        update_events(c); /* registered in dst's loop */
        moved++;
    }
    return moved;
}

const worker_door pg_door = {.accept = client_accept,
                             .tick = tick,
                             .kill_marked = kill_marked,
                             .close_all = close_all,
                             .server_gone = server_gone,
                             .close_waiting = close_waiting,
                             .app_clients = app_clients,
                             .move_idle = move_idle,
                             .console_retry = console_retry,
                             .idle_state = CL_IDLE};
