/* worker.c — a worker thread (worker.h): its event loop, listeners and
 * accept() back-off, the completion queue, the tick, and the safe point
 * where configuration changes hold every worker. */
#include "core/worker.h"

#include <errno.h>
#include <limits.h>
#include <linux/filter.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/pools.h"
#include "core/server.h"
#include "core/stats.h"
#include "weir/weir.h"

/* --- the held clock ----------------------------------------------------------- */

_Thread_local int64_t clock_held_ns;
static _Thread_local int held_depth;

void clock_hold(void)
{
    if (!held_depth++) clock_held_ns = weir_now_ns();
}

void clock_release(void)
{
    if (!--held_depth) clock_held_ns = 0;
}

/* --- accepting ---------------------------------------------------------------- */

/* accept() failed for want of descriptors (or memory): stop accepting on
 * this worker for a while, longer each time (10 ms doubling to 1 s), and say
 * so once per 10 s for the whole server. Clients wait in the listen backlog
 * meanwhile; those already connected are served as before. */
static void accept_pause(worker *w, int err)
{
    server *s = w->srv;
    atomic_fetch_add(&s->accept_errors, 1);
    int64_t now = weir_now_ns() / 1000000, last = atomic_load(&s->accept_log_ms);
    if (now - last >= 10000 && atomic_compare_exchange_strong(&s->accept_log_ms, &last, now))
        srv_log(s, "WARNING",
                "accept() failed: %s; accepting paused for %d ms (%lld failures so far). Raise "
                "the open-files limit (ulimit -n, LimitNOFILE) or lower max_client_conn",
                strerror(err), w->accept_backoff_ms, (long long)atomic_load(&s->accept_errors));
    for (int i = 0; i < w->nlisten; i++) event_del(&w->listen_ev[i]);
    struct timeval tv = {w->accept_backoff_ms / 1000, (w->accept_backoff_ms % 1000) * 1000};
    event_add(&w->accept_retry, &tv);
    w->accept_backoff_ms = w->accept_backoff_ms * 2 > 1000 ? 1000 : w->accept_backoff_ms * 2;
}

static void on_accept_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker *w = arg;
    for (int i = 0; i < w->nlisten; i++)
        if (!w->listen_gone[i]) event_add(&w->listen_ev[i], NULL);
}

/* A shutdown: this worker's TCP listeners close (new connections are
 * refused); the Unix socket stays, for the console. */
static void unlisten(worker *w)
{
    if (w->id == 0) w->srv->nsteer = 0; /* its sockets close now (short_tick) */
    for (int i = 0; i < w->nlisten; i++) {
        evutil_socket_t fd = event_get_fd(&w->listen_ev[i]);
        if (w->listen_gone[i] || fd == w->srv->unix_fd) continue;
        event_del(&w->listen_ev[i]);
        close(fd);
        w->listen_gone[i] = true;
    }
}

/* The Unix socket. Linux spreads TCP connections over the workers' own
 * SO_REUSEPORT sockets, but a Unix socket is one socket: were it in every
 * worker's epoll set, each connection would wake every sleeping worker
 * and all but one would find nothing to accept (with 8 workers on 2 cores
 * a login through it cost 2.0x one worker's CPU, over TCP 1.3x). libevent
 * 2.1 cannot ask for EPOLLEXCLUSIVE, so worker 0 alone listens on it and
 * keeps each connection unless another worker has more than UNIX_SLACK
 * fewer clients; then the one with the fewest gets it. A hand-over wakes
 * that worker (an eventfd write and a wake-up, about what the login costs
 * besides); an imbalance of a few clients costs little, and a burst of
 * short connections (one per transaction) then mostly stays where it was
 * accepted (docs/ARCHITECTURE.md). */
#define UNIX_SLACK 4

/* Short connections stay with worker 0 while it has time for them. With
 * a connection per transaction a client lives for one login and one
 * query: a worker that gets a few of them wakes for each of their events
 * alone (through the Unix socket, every one handed out cost about five
 * context switches more than one kept: pgbench -C, 10 clients, 2 workers,
 * 66-73 us of CPU per login against 56-64 with all on worker 0; 8 workers
 * 71-84 against 58-60). The imbalance of keeping them does not last: they
 * leave within milliseconds. So worker 0, at each tick, looks at how many
 * clients left within SHORT_YOUNG_MS of arriving (each worker counts its
 * own) and how much of the tick it ran (its thread's CPU clock). While
 * more left young than there are clients in all, and it ran for less
 * than SHORT_BUSY_PCT of the tick, short connections stay with it: the
 * Unix socket's connections are all kept, and the kernel is asked to put
 * new TCP connections in worker 0's queue (steer). When it is busier, the
 * count rule and the kernel's hash spread them again. Held connections
 * (few leave young) never turn this on, so an imbalance that would last
 * is not built from them. */
#define SHORT_BUSY_PCT 75
#define SHORT_YOUNG_MS 1000
/* Connections that arrive while short ones pour in stay on worker 0
 * whatever their lifetime; held ones (an application's pool starting: 100
 * connections within 50 ms) would stay there. So worker 0 stops keeping
 * them, at once, when it has this many clients more than the least loaded
 * worker (short_lead_ok, at each connection it accepts). */
#define SHORT_MAX_LEAD 32
/* A health check now and then is not a pour: at least this many young
 * leavers in a tick (100 a second; below that, spreading costs little). */
#define SHORT_MIN_GONE 10

void worker_client_left(worker *w, int64_t lived_ms)
{
    if (lived_ms < SHORT_YOUNG_MS) worker_count_add64(&w->young_gone, 1);
}

/* A classic BPF program on a SO_REUSEPORT group returns the index of the
 * socket that gets a connection: worker i's socket is index i, as the
 * workers listen in order (server.c) and none of ours closes before the
 * shutdown. An index past the last falls back to the kernel's hash. */
static void steer(server *s, bool to_worker0)
{
    struct sock_filter code[] = {BPF_STMT(BPF_RET | BPF_K, to_worker0 ? 0 : 0xffffffffu)};
    struct sock_fprog prog = {.len = 1, .filter = code};
    for (int i = 0; i < s->nsteer; i++)
        if (setsockopt(s->steer_fd[i], SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof prog)) {
            srv_log(s, "WARNING", "SO_ATTACH_REUSEPORT_CBPF: %s; TCP connections stay spread",
                    strerror(errno));
            s->nsteer = 0;
            return;
        }
    s->steered = to_worker0;
}

/* Worker 0 is not more than SHORT_MAX_LEAD clients ahead of the least
 * loaded worker; if it is, it stops keeping short connections until its
 * next tick, and TCP is spread by the hash again at once. */
static bool short_lead_ok(worker *w)
{
    server *s = w->srv;
    if (atomic_load_explicit(&s->packed, memory_order_relaxed)) return true; /* all come here */
    int least = INT_MAX;
    for (int i = 1; i < s->nworkers; i++) {
        int k = worker_nclients(&s->workers[i]);
        if (k < least) least = k;
    }
    if (worker_nclients(w) - least <= SHORT_MAX_LEAD) return true;
    w->keep_short = false;
    if (s->steered) steer(s, false);
    return false;
}

bool worker_short_keep(int64_t cpu_ns, int64_t wall_ns, uint64_t gone, int nclients)
{
    bool busy = wall_ns > 0 && cpu_ns * 100 >= wall_ns * SHORT_BUSY_PCT;
    return !busy && gone >= SHORT_MIN_GONE && gone >= (uint64_t)(nclients > 0 ? nclients : 0);
}

/* New TCP connections go to worker 0 while short ones pour in or the
 * load is packed there. */
static void steer_update(worker *w)
{
    server *s = w->srv;
    bool want = w->keep_short || atomic_load_explicit(&s->packed, memory_order_relaxed);
    if (s->nsteer && want != s->steered && !atomic_load(&w->stop)) steer(s, want);
}

/* Worker 0, at its tick: over the last tick of dw ns, its thread ran dc. */
static void short_tick(worker *w, int64_t dc, int64_t dw)
{
    server *s = w->srv;
    uint64_t young = 0;
    int n = 0;
    for (int i = 0; i < s->nworkers; i++) {
        young += atomic_load_explicit(&s->workers[i].young_gone, memory_order_relaxed);
        n += worker_nclients(&s->workers[i]);
    }
    uint64_t gone = young - w->young_seen;
    w->young_seen = young;
    w->keep_short = worker_short_keep(dc, dw, gone, n);
    if (w->keep_short) (void)short_lead_ok(w);
    steer_update(w);
}

/* --- packing ------------------------------------------------------------------ */

/* Two loops cost more CPU per transaction than one that could carry the
 * same load: each wakes for fewer events (on 2 cores, 2 workers took
 * 1.11-1.29x one worker's CPU per transaction, with 0.66-0.71 epoll_wait
 * calls and context switches a transaction against 0.42-0.53). So while
 * the workers together use less than PACK_ENTER_PCT of one core for
 * PACK_CALM_TICKS ticks in a row, the load is packed on worker 0: new
 * connections go to it (the Unix socket's, and TCP's through the same BPF
 * program as short connections), and at each tick worker 0 moves the other
 * workers' clients that sit idle between transactions to itself. When
 * worker 0 alone runs for PACK_LEAVE_PCT of a tick, it spreads: new
 * connections are hashed again, and at each tick of the PACK_HOLDOFF_TICKS
 * that follow, in which it does not pack, it hands the idle clients it has
 * beyond its share round the other workers; the gap between the two
 * bounds and the hold-off keep a load near either from moving clients back
 * and forth (docs/ARCHITECTURE.md, "Packing"). */
#define PACK_ENTER_PCT     70
#define PACK_CALM_TICKS    10
#define PACK_LEAVE_PCT     85
#define PACK_HOLDOFF_TICKS 50
#define PACK_MOVE_MAX      1024 /* clients moved per tick at most */

bool worker_pack_next(bool packed, int *calm, int64_t total_ns, int64_t own_ns, int64_t wall_ns)
{
    if (wall_ns <= 0) return packed;
    if (packed) {
        if (own_ns * 100 < wall_ns * PACK_LEAVE_PCT) return true;
        *calm = -PACK_HOLDOFF_TICKS;
        return false;
    }
    if (*calm < 0) {
        (*calm)++;
        return false;
    }
    if (total_ns * 100 >= wall_ns * PACK_ENTER_PCT) {
        *calm = 0;
        return false;
    }
    if (++*calm < PACK_CALM_TICKS) return false;
    *calm = 0;
    return true;
}

static int64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Worker 0 holds the others at their safe points (between events) to move
 * clients between their loops. Not while a change or listing holds
 * change_mu, nor once the server stops (server_stop sets every worker's
 * stop under change_mu, so none has left its loop while this holds). */
static bool pack_hold(server *s)
{
    if (pthread_mutex_trylock(&s->change_mu)) return false;
    for (int i = 0; i < s->nworkers; i++)
        if (atomic_load(&s->workers[i].stop)) {
            pthread_mutex_unlock(&s->change_mu);
            return false;
        }
    workers_hold(s);
    return true;
}

static void pack_release(server *s)
{
    workers_release(s);
    pthread_mutex_unlock(&s->change_mu);
}

/* Worker 0, at its tick (after short_tick, with the same figures). */
static void pack_tick(worker *w, int64_t own_ns, int64_t dw)
{
    server *s = w->srv;
    int64_t total = own_ns;
    for (int i = 1; i < s->nworkers; i++) {
        worker *o = &s->workers[i];
        int64_t c = atomic_load_explicit(&o->cpu_ns, memory_order_relaxed);
        total += c - o->cpu_seen;
        o->cpu_seen = c;
    }
    bool was = atomic_load_explicit(&s->packed, memory_order_relaxed);
    bool now = s->cfg.worker_pack && worker_pack_next(was, &s->pack_calm, total, own_ns, dw);
    if (!s->cfg.worker_pack) { /* turned off by a reload: spread as after packing */
        if (was)
            s->pack_calm = -PACK_HOLDOFF_TICKS;
        else if (s->pack_calm < 0)
            s->pack_calm++;
    }
    if (now != was) {
        atomic_store(&s->packed, now);
        s->pack_skip = 0; /* a new packing moves at once */
        atomic_fetch_add_explicit(&s->pack_changes, 1, memory_order_relaxed);
        steer_update(w);
        /* at most once per PACK_HOLDOFF_TICKS + PACK_CALM_TICKS ticks each way */
        if (now)
            srv_log(s, "LOG",
                    "workers: the load is packed on worker 0 (the workers used %d%% of a core "
                    "in the last tick)",
                    (int)(total * 100 / dw));
        else if (s->cfg.worker_pack)
            srv_log(s, "LOG", "workers: spreading the load (worker 0 used %d%% of the last tick)",
                    (int)(own_ns * 100 / (dw > 0 ? dw : 1)));
        else
            srv_log(s, "LOG", "workers: spreading the load (worker_pack = 0)");
    }
    int moved = 0;
    if (now) {
        bool any = false; /* idle clients elsewhere (read from their counts) */
        for (int i = 1; i < s->nworkers; i++)
            if (atomic_load_explicit(&s->workers[i].nstate[s->door->idle_state],
                                     memory_order_relaxed))
                any = true;
        /* Idle clients that cannot move (reads off in a SUSPEND, say)
         * are counted idle all the same: after a hold that moved none,
         * the next try waits PACK_CALM_TICKS, not one tick. */
        if (s->pack_skip > 0) {
            s->pack_skip--;
        } else if (any && pack_hold(s)) {
            for (int i = 1; i < s->nworkers && moved < PACK_MOVE_MAX; i++)
                moved += s->door->move_idle(&s->workers[i], &w, 1, PACK_MOVE_MAX - moved);
            pack_release(s);
            if (!moved) s->pack_skip = PACK_CALM_TICKS;
        }
    } else if (was || s->pack_calm < 0) {
        /* Spreading, and for the hold-off after it: worker 0 keeps its
         * share, and hands what it has beyond it round the others as its
         * clients come to be idle. */
        int all = 0;
        for (int i = 0; i < s->nworkers; i++) all += worker_nclients(&s->workers[i]);
        int excess = worker_nclients(w) - all / s->nworkers;
        if (excess > UNIX_SLACK && pack_hold(s)) {
            worker *to[256]; /* the others (workers <= 256) */
            int nto = 0;
            for (int i = 1; i < s->nworkers && nto < 256; i++) to[nto++] = &s->workers[i];
            moved = s->door->move_idle(w, to, nto, excess < PACK_MOVE_MAX ? excess : PACK_MOVE_MAX);
            pack_release(s);
        }
    }
    if (moved) atomic_fetch_add_explicit(&s->clients_moved, (uint64_t)moved, memory_order_relaxed);
}

typedef struct handed {
    completion cp; /* first: on_handed gets it */
    worker *w;
    int fd;
} handed;

static void on_handed(completion *cp)
{
    handed *h = (handed *)cp;
    worker *w = h->w;
    int fd = h->fd;
    free(h);
    /* Before the client is counted: for a moment worker_load counts it
     * nowhere, never twice. Too low a count can only make worker 0 hand
     * over one more; too high would let worker 0 keep one too many. */
    atomic_fetch_sub(&w->inbound, 1);
    w->srv->door->accept(w, fd, true, NULL, 0);
}

/* Clients a worker has or is about to get. Each count is changed by one
 * worker: nclients by its own, inbound by worker 0 (up) and its own
 * (down). Counted exactly, as clients only arrive, worker 0 keeps no
 * worker more than UNIX_SLACK + 1 clients above the least loaded. */
static int worker_load(worker *w)
{
    return worker_nclients(w) + atomic_load_explicit(&w->inbound, memory_order_relaxed);
}

static void unix_accepted(worker *w, int fd)
{
    server *s = w->srv;
    worker *to = w;
    if (s->nworkers > 1 && !atomic_load(&w->stop)) {
        int best = worker_load(w) - UNIX_SLACK;
        for (int i = 0; i < s->nworkers; i++) {
            worker *o = &s->workers[i];
            if (o == w || atomic_load(&o->stop)) continue;
            int n = worker_load(o);
            if (n < best) best = n, to = o;
        }
        if ((w->keep_short && short_lead_ok(w)) || atomic_load(&s->packed)) to = w;
    }
    handed *h = to != w ? malloc(sizeof *h) : NULL;
    if (!h) { /* its own, or no memory to hand it over: keep it */
        s->door->accept(w, fd, true, NULL, 0);
        return;
    }
    h->cp.fn = on_handed;
    h->w = to;
    h->fd = fd;
    atomic_fetch_add(&to->inbound, 1);
    worker_count_add64(&w->unix_handed, 1);
    worker_post(to, &h->cp);
}

static void on_accept(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    worker *w = arg;
    bool is_unix = fd == w->srv->unix_fd;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int c = accept4(fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                accept_pause(w, errno);
            return;
        }
        w->accept_backoff_ms = 10;
        if (is_unix) {
            unix_accepted(w, c);
        } else {
            w->srv->door->accept(w, c, false, (struct sockaddr *)&ss, sl <= sizeof ss ? sl : 0);
            if (w->id == 0 && w->srv->steered) (void)short_lead_ok(w); /* worker 0's own */
        }
    }
}

int worker_listen(worker *w, int fd)
{
    if (w->nlisten >= (int)(sizeof w->listen_ev / sizeof *w->listen_ev)) return -1;
    event_assign(&w->listen_ev[w->nlisten], w->base, fd, EV_READ | EV_PERSIST, on_accept, w);
    event_add(&w->listen_ev[w->nlisten], NULL);
    w->nlisten++;
    return 0;
}

/* --- completions ---------------------------------------------------------- */

void worker_post(worker *w, completion *cp)
{
    cp->next = NULL;
    if (current_worker == w) { /* its own thread: its own list, no lock, no syscall */
        *w->own_tail = cp;
        w->own_tail = &cp->next;
        if (!w->local_scope) event_active(&w->local_ev, EV_READ, 0); /* else: at the scope's end */
        return;
    }
    pthread_mutex_lock(&w->qlock);
    bool was_empty = !w->qhead;
    *w->qtail = cp;
    w->qtail = &cp->next;
    pthread_mutex_unlock(&w->qlock);
    /* A queue that had something already has its wake-up on the way (an
     * eventfd write): the worker drains it all (worker_drain empties it
     * until it stays empty), so hand-offs that come in a burst cost one
     * write and one wake-up. */
    if (!was_empty) return;
    uint64_t one = 1;
    (void)!write(w->efd, &one, sizeof one);
}

/* Run a taken list of completions, in order. */
static void run_list(completion *cp)
{
    while (cp) {
        completion *next = cp->next; /* fn may free cp's owner */
        cp->fn(cp);
        cp = next;
    }
}

/* What the worker queued to itself, and what those queue in turn. */
static void run_own(worker *w)
{
    while (w->own_head) {
        completion *cp = w->own_head;
        w->own_head = NULL;
        w->own_tail = &w->own_head;
        run_list(cp);
    }
}

void worker_drain(worker *w)
{
    for (;;) {
        pthread_mutex_lock(&w->qlock);
        completion *cp = w->qhead;
        w->qhead = NULL;
        w->qtail = &w->qhead;
        pthread_mutex_unlock(&w->qlock);
        if (!cp) break;
        run_list(cp);
    }
    run_own(w);
}

void worker_scope_begin(worker *w)
{
    if (w) w->local_scope++;
}

void worker_scope_end(worker *w)
{
    if (!w) return;
    if (w->local_scope == 1)
        run_own(w); /* the outermost: still in scope, so what these queue runs here too */
    w->local_scope--;
}

/* --- the safe point ---------------------------------------------------------- */

/* Called by a worker at its safe point: wait while a change is in progress.
 * true: it waited. */
static bool hold_point(worker *w)
{
    server *s = w->srv;
    if (!atomic_load_explicit(&s->holding, memory_order_acquire)) return false;
    pthread_mutex_lock(&s->hold_mu);
    bool held = s->holding;
    if (held) {
        s->held++;
        pthread_cond_broadcast(&s->hold_cv);
        while (s->holding) pthread_cond_wait(&s->hold_cv, &s->hold_mu);
        s->held--;
    }
    pthread_mutex_unlock(&s->hold_mu);
    return held;
}

/* Hold every worker but the caller's own (if the caller is one). */
void workers_hold(server *s)
{
    pthread_mutex_lock(&s->hold_mu);
    atomic_store_explicit(&s->holding, true, memory_order_release);
    int want = s->nworkers - (current_worker ? 1 : 0);
    uint64_t one = 1;
    for (int i = 0; i < s->nworkers; i++)
        if (&s->workers[i] != current_worker) (void)!write(s->workers[i].efd, &one, sizeof one);
    while (s->held < want) pthread_cond_wait(&s->hold_cv, &s->hold_mu);
    pthread_rwlock_wrlock(&s->cfg_rw);
}

void workers_release(server *s)
{
    pthread_rwlock_unlock(&s->cfg_rw);
    atomic_store_explicit(&s->holding, false, memory_order_release);
    pthread_cond_broadcast(&s->hold_cv);
    pthread_mutex_unlock(&s->hold_mu);
}

int change_trylock(server *s)
{
    /* Whoever holds change_mu holds it briefly (a listing or a kill for one
     * walk, packing for a few microseconds per client moved, a reload for
     * the time of reading its files), so a short wait usually gets it. But
     * once the holder holds the workers it waits for this one too, at its
     * safe point, which a worker inside an event callback is not at: then,
     * or after about a thousand yields, the caller answers CHANGE_BUSY and
     * tries again later (the console: once the hold ends, or at its
     * worker's next tick). */
    for (int spins = 0; pthread_mutex_trylock(&s->change_mu);) {
        if ((current_worker && atomic_load(&s->holding)) || ++spins > 1000) return CHANGE_BUSY;
        sched_yield();
    }
    return 0;
}

int server_freeze(server *s)
{
    if (current_worker) {
        if (change_trylock(s)) return CHANGE_BUSY;
    } else {
        pthread_mutex_lock(&s->change_mu);
    }
    workers_hold(s);
    return 0;
}

void server_thaw(server *s)
{
    workers_release(s);
    pthread_mutex_unlock(&s->change_mu);
}

/* --- the loop ----------------------------------------------------------------- */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker *w = arg;
    atomic_store_explicit(&w->ticked_ms, weir_now_ms(), memory_order_relaxed);
    w->srv->door->tick(w);
    int64_t cpu = thread_cpu_ns();
    atomic_store_explicit(&w->cpu_ns, cpu, memory_order_relaxed);
    if (w->id == 0) {
        if (w->srv->nworkers > 1) {
            int64_t wall = weir_now_ns();
            int64_t dc = cpu - w->tick_cpu_ns, dw = w->tick_wall_ns ? wall - w->tick_wall_ns : 0;
            w->tick_cpu_ns = cpu;
            w->tick_wall_ns = wall;
            short_tick(w, dc, dw);
            pack_tick(w, dc, dw);
        }
        int64_t now = weir_now_ns() / 1000000;
        pools_reserve_tick(w->srv, now);
        pools_idle_tick(w->srv, now);
        stats_tick(w->srv, now);
    }
    if (atomic_load(&w->stop)) event_base_loopbreak(w->base);
}

static void on_efd(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    uint64_t v;
    (void)!read(fd, &v, sizeof v);
    worker *w = arg;
    if (hold_point(w) && w->console_retry) {
        /* the hold that made a console command wait has ended: at once,
         * not at the next tick */
        w->console_retry = false;
        w->srv->door->console_retry(w);
    }
    if (atomic_exchange(&w->kill_pending, false)) w->srv->door->kill_marked(w);
    if (atomic_exchange(&w->unlisten_pending, false)) unlisten(w);
    if (atomic_exchange(&w->close_waiting_pending, false)) w->srv->door->close_waiting(w);
    worker_scope_begin(w);
    worker_drain(w);
    worker_scope_end(w);
    if (atomic_load(&w->stop)) event_base_loopbreak(w->base);
}

_Thread_local worker *current_worker;

static void on_local(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker *w = arg;
    clock_hold();
    worker_scope_begin(w);
    worker_scope_end(w); /* runs what it queued, and what those queue */
    clock_release();
}

int worker_init(worker *w, server *s, int id)
{
    memset(w, 0, sizeof *w);
    w->srv = s;
    w->id = id;
    w->base = event_base_new();
    w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!w->base || w->efd < 0) return -1;
    pthread_mutex_init(&w->qlock, NULL);
    w->qtail = &w->qhead;
    w->own_tail = &w->own_head;
    event_assign(&w->efd_ev, w->base, w->efd, EV_READ | EV_PERSIST, on_efd, w);
    event_add(&w->efd_ev, NULL);
    event_assign(&w->local_ev, w->base, -1, 0, on_local, w);
    event_assign(&w->tick, w->base, -1, EV_PERSIST, on_tick, w);
    event_assign(&w->accept_retry, w->base, -1, 0, on_accept_retry, w);
    w->accept_backoff_ms = 10;
    struct timeval tv = {0, 100000};
    event_add(&w->tick, &tv);
    return 0;
}

/* worker_sched = batch: the worker runs SCHED_BATCH (the same nice value,
 * the same share of the CPU), so that a wake-up does not preempt the task
 * running where it lands: on a machine the pooler shares with the database
 * and its clients, the worker then takes several events per wake-up instead
 * of one. It needs no privilege. Not the default: it saved 2-5 % of CPU per
 * transaction under load, but SELECT 1 at one client measured 78 us
 * against 63 with the normal policy: under SCHED_BATCH the round trip never
 * reached the fast mode in which (most likely) client, worker and backend
 * take turns on one core (docs/BENCHMARKS.md, "worker_sched"). */
static void worker_sched(worker *w)
{
#ifdef SCHED_BATCH
    if (strcasecmp(w->srv->cfg.worker_sched, "batch")) return;
    struct sched_param sp = {.sched_priority = 0};
    int rc = pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
    if (rc && w->id == 0)
        srv_log(w->srv, "WARNING", "worker_sched = batch: %s; workers keep the normal policy",
                strerror(rc));
#else
    (void)w;
#endif
}

void *worker_main(void *arg)
{
    worker *w = arg;
    current_worker = w;
    worker_sched(w);
    event_base_dispatch(w->base);
    w->srv->door->close_all(w);
    return NULL;
}

void worker_destroy(worker *w)
{
    for (int i = 0; i < w->nlisten; i++) {
        if (w->listen_gone[i]) continue;
        evutil_socket_t fd = event_get_fd(&w->listen_ev[i]);
        event_del(&w->listen_ev[i]);
        if (fd != w->srv->unix_fd) close(fd); /* this worker's own TCP socket */
    }
    /* Unix-socket clients handed to it after its loop ended: closed. */
    for (completion *cp = w->qhead, *next; cp; cp = next) {
        next = cp->next;
        if (cp->fn == on_handed) {
            close(((handed *)cp)->fd);
            free(cp);
        }
    }
    event_del(&w->efd_ev);
    event_del(&w->tick);
    event_del(&w->accept_retry);
    if (w->base) event_base_free(w->base);
    if (w->efd >= 0) close(w->efd);
    pthread_mutex_destroy(&w->qlock);
}
