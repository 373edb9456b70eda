/* worker.h — a worker thread: one libevent loop serving its share of the
 * connections, its listeners (with the accept() back-off), a queue of
 * completions other threads hand it, its 100 ms tick, and the safe point
 * where a configuration change holds it (worker.c). What it does with a
 * connection is its door's (worker_door: the PostgreSQL door, pg/client.c). */
#ifndef WEIR_SERVER_WORKER_H
#define WEIR_SERVER_WORKER_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/socket.h>

typedef struct server server;
typedef struct worker worker;
struct backend;

/* Work handed to a worker from another thread (or queued by its own):
 * fn runs on the worker's thread. The node lives in its owner (a client),
 * so queueing allocates nothing and cannot fail. */
typedef struct completion {
    struct completion *next;
    void (*fn)(struct completion *cp);
} completion;

/* The door a worker serves: called on the worker's thread. */
typedef struct worker_door worker_door;
struct worker_door {
    /* A new connection; peer: the address accept gave (peer_len 0: none). */
    void (*accept)(worker *w, int fd, bool is_unix, const struct sockaddr *peer,
                   socklen_t peer_len);
    void (*tick)(worker *w);        /* every 100 ms: timeouts, freeing */
    void (*kill_marked)(worker *w); /* KILL marked some connections */
    void (*close_all)(worker *w);   /* shutting down */
    /* A server connection is about to close (any thread): drop what the
     * door keeps for it (be->ext). */
    void (*server_gone)(struct backend *be);
    /* SHUTDOWN WAIT_FOR_SERVERS: close the clients waiting for a server. */
    void (*close_waiting)(worker *w);
    /* Clients other than the console's (any thread: read from counts). */
    int (*app_clients)(worker *w);
    /* Packing (worker.c): move up to max of from's clients that sit idle
     * between transactions, with nothing buffered or pending, the i-th
     * movable one to to[i % nto] (from itself among them: it stays).
     * Called on worker 0's thread with every other worker held at its
     * safe point. Returns how many moved. */
    int (*move_idle)(worker *from, worker *const *to, int nto, int max);
    /* Console commands that found the change lock taken (change_trylock):
     * run them again, now that a hold of this worker has ended. */
    void (*console_retry)(worker *w);
    int idle_state; /* the nstate index of clients idle between transactions */
};

#define WORKER_NSTATES 16 /* per-state connection counts: the door's states fit */

struct worker {
    server *srv;
    int id;
    pthread_t thread;
    struct event_base *base;
    int nlisten;
    struct event listen_ev[8];
    atomic_bool suspended_seen; /* the door's view of s->suspended (its tick) */
    bool listen_gone[8];        /* a TCP listener closed by a shutdown (the Unix one stays) */
    struct event tick;
    struct event accept_retry; /* listening resumes after an accept() back-off */
    int accept_backoff_ms;
    int efd; /* eventfd: completions are queued */
    struct event efd_ev;
    struct event local_ev; /* completions queued by this worker's own thread: no syscall */
    int local_scope;       /* inside a socket callback: its own completions run at its end */
    completion *own_head, **own_tail; /* completions it queued itself (its thread only) */
    pthread_mutex_t qlock;
    completion *qhead, **qtail; /* completions other threads queued to this worker (qlock) */
    struct client *clients;     /* every client of this worker (the door's) */
    struct client *graveyard;   /* freed at the next tick */
    _Atomic int
        nstate[WORKER_NSTATES]; /* clients in each state, written by this worker (nstate_add) */
    _Atomic int nclients;       /* the sum of nstate, one count that another thread reads whole */
    _Atomic int inbound; /* Unix-socket clients handed to it, not yet taken (unix_accepted) */
    _Atomic uint64_t young_gone;  /* its clients that left within a second (worker_client_left) */
    _Atomic uint64_t unix_handed; /* worker 0: Unix-socket connections it handed out */
    /* worker 0's view, from its tick (short_tick): */
    uint64_t young_seen; /* the sum of young_gone at the last tick */
    int64_t tick_cpu_ns, tick_wall_ns;
    bool keep_short;          /* short connections stay with worker 0 (worker.c) */
    bool console_retry;       /* its thread: a console command waits for the change lock */
    atomic_bool kill_pending; /* KILL marked some of its clients */
    atomic_bool unlisten_pending, close_waiting_pending; /* a shutdown began (server_shutdown) */
    atomic_bool stop;
    _Atomic int64_t ticked_ms; /* weir_now_ms() at its last tick: the watchdog's proof of life */
    _Atomic int64_t cpu_ns;    /* its thread's CPU clock at its last tick (packing) */
    int64_t cpu_seen;          /* worker 0's thread: cpu_ns as worker 0 last read it */
};

/* Only the worker itself changes its counts: a relaxed load and store. */
static inline void worker_count_add(_Atomic int *n, int d)
{
    atomic_store_explicit(n, atomic_load_explicit(n, memory_order_relaxed) + d,
                          memory_order_relaxed);
}

static inline void worker_count_add64(_Atomic uint64_t *n, uint64_t d)
{
    atomic_store_explicit(n, atomic_load_explicit(n, memory_order_relaxed) + d,
                          memory_order_relaxed);
}

static inline void nstate_add(worker *w, int st, int d)
{
    worker_count_add(&w->nstate[st], d);
}

/* The clients w serves now: every state (a closed client is in none).
 * Summing nstate from another thread could count a client twice while it
 * moves from one state to another; this count changes only when a client
 * comes or goes. */
static inline int worker_nclients(worker *w)
{
    return atomic_load_explicit(&w->nclients, memory_order_relaxed);
}

/* A client of w left after lived_ms (its own worker calls it). */
void worker_client_left(worker *w, int64_t lived_ms);

/* Worker 0's decision at its tick (worker.c, "Short connections stay with
 * worker 0"): over a tick of wall_ns in which its thread ran cpu_ns, gone
 * clients left young and nclients are connected in all, do short
 * connections stay with it? wall_ns 0 (the first tick) is not busy. */
bool worker_short_keep(int64_t cpu_ns, int64_t wall_ns, uint64_t gone, int nclients);

/* Packing (worker.c): over a tick of wall_ns in which the workers' threads
 * ran total_ns together and worker 0's own_ns, is the load packed on worker
 * 0 from now on? *calm counts the calm ticks in a row (negative: the ticks
 * still to wait after packing ended). wall_ns <= 0 changes nothing. */
bool worker_pack_next(bool packed, int *calm, int64_t total_ns, int64_t own_ns, int64_t wall_ns);

/* change_mu, taken without blocking for long: 0, or CHANGE_BUSY when
 * another change, listing or packing hold has it, at once if that one is
 * holding the workers (it waits for this one, if a worker, to come to its
 * safe point). The console then tries the command again once the hold has
 * ended, or at the next tick (client.c, admin_input). */
#define CHANGE_BUSY (-2)
int change_trylock(server *s);

extern _Thread_local worker *current_worker; /* the worker running this thread, or NULL */

/* A socket callback of the worker running this thread: completions it
 * queues to itself (a server connection it gave back, handed to one of its
 * own waiting clients) run at worker_scope_end, before the loop goes on to
 * the other events of its batch, instead of after them (docs/ARCHITECTURE.md,
 * "Hand-offs on the same worker"). NULL-safe: no worker, no scope. */
void worker_scope_begin(worker *w);
void worker_scope_end(worker *w);

/* The held clock. Inside the busy event callbacks (client and server
 * sockets, the worker's local queue: clock_hold() at their start,
 * clock_release() at their end; they nest) clock_held_ns is the
 * weir_now_ns() read when the outermost began, and 0 anywhere else. The
 * traffic figures read it instead of the clock, as PgBouncer caches the
 * time per loop: a transaction read the clock several times for figures
 * that a callback's own few microseconds do not change. */
extern _Thread_local int64_t clock_held_ns;
void clock_hold(void);
void clock_release(void);

int worker_init(worker *w, server *s, int id);
void *worker_main(void *arg);
void worker_destroy(worker *w);
/* Queue cp to w (any thread); fn runs on w's thread, in the order each
 * thread queued them (w's own, on a list of its own: no lock). */
void worker_post(worker *w, completion *cp);
/* Run what is queued now (w's thread, or after it stopped). */
void worker_drain(worker *w);
/* Accept on fd (a listening socket) in w's loop. 0 or -1. */
int worker_listen(worker *w, int fd);

/* A configuration change: hold every worker at its safe point (between
 * events) while cfg is swapped, then let them go. CHANGE_BUSY: another
 * change or listing is running (only when called from a worker). */
int server_freeze(server *s);
void server_thaw(server *s);
/* The same with change_mu already held by the caller (reload.c): every
 * worker but the caller's own waits at its safe point, and cfg_rw is
 * write-locked, until workers_release. */
void workers_hold(server *s);
void workers_release(server *s);

#endif
