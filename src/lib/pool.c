/* pool.c — the pool engine: checkout, checkin, waiters, creator and housekeeper.
 *
 * Design notes
 * ------------
 * A pool owns an array of slots (struct weir_conn). A slot is allocated once
 * and never freed before the pool, so a pointer to it stays valid for the
 * pool's life; a slot holds at most one physical connection at a time.
 *
 * A slot's state is the set it belongs to (all changes via slot_set/slot_cas):
 *
 *            slot_reserve()              idle_push()             idle_pop()
 *   EMPTY ------------------> BUSY ----------------> IDLE ------------------> INUSE
 *     ^   (creator_main)       |  (no waiter)          ^   checkin_slow():      |  |
 *     |                        |                       +---- idle_push() -------+  |
 *     |                        +-- complete(): hand-off to a waiter ---> INUSE     |
 *     |                                                                            |
 *     |   close_conn()              park_or_slow(): store PARKED (release)         |
 *     +----------------- BUSY <----------- PARKED <--------------------------------+
 *      (housekeep(),                         |
 *       drain_step(),                        +--> INUSE: try_fast() / steal()
 *       collect_idle())                           (CAS PARKED -> INUSE)
 *
 * Invariants
 * - IDLE slots are on the idle list and change state only under the lock.
 * - PARKED slots are on no list; any thread may claim one with a CAS. The
 *   thread that parked it finds it again through its thread-local cache
 *   (affinity, HikariCP's ConcurrentBag idea) without taking the lock.
 * - total = open connections + connects in flight <= max_size (except for a
 *   moment after a shrink; over_cap then routes checkins to the slow path).
 * - A waiter is on the FIFO queue until the thread that serves, fails or
 *   times it out removes it, under the lock. nwaiters counts the queue.
 * - No driver call and no hook is made while holding the lock.
 *
 * Lost wake-ups. A fast checkin parks its slot and then reads nwaiters; a
 * new waiter increments nwaiters and then scans for PARKED slots. Either the
 * checkin sees the waiter (and takes the slot back to hand it over) or the
 * waiter sees the parked slot. That needs a StoreLoad barrier on both sides;
 * the waiter (slow side) pays for it with membarrier(2) so the checkin (hot
 * side) needs only a compiler barrier. Without membarrier both use a full fence.
 * Fairness. Waiters are served in FIFO order. A returned connection is handed
 * straight to the oldest waiter if it is awake (spinning), asynchronous, or
 * has waited over HANDOFF_AFTER_NS; otherwise it goes on the idle list and
 * the oldest waiter is woken to take it. A thread already running may take
 * it first; that avoids a convoy behind sleeping threads and bounds the
 * unfairness to about a millisecond (Go's sync.Mutex does the same).
 * Locality: a checkin hands the connection to an async waiter queued by its
 * own thread, if one queued at most LOCAL_SKEW_NS (5 ms) after the oldest or
 * has waited at least a quarter as long (an event loop serving its own
 * client wakes nobody; local_may_pass).
 *
 * A waiter pays for the barrier only before it sleeps, and only if no barrier
 * was made since the queue last became non-empty (p->fenced): every checkin
 * after a barrier sees nwaiters >= 1 until the queue empties, and every slot
 * parked before it is visible to the scan that follows it. A waiter served
 * while spinning needs none: a checkin that saw it handed the slot over, and
 * one that did not left it parked for the scan before sleeping.
 */

#include "internal.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <linux/membarrier.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* How long the first waiter spins before sleeping. */
#define SPIN_NS 20000
/* A waiter that has waited this long gets returned connections handed to it
 * directly, even while asleep (like Go's sync.Mutex starvation mode). */
#define HANDOFF_AFTER_NS 1000000
/* A returned connection goes to the oldest asynchronous waiter queued by the
 * thread returning it rather than to the oldest waiter, if that one queued at
 * most this much later than the oldest (see local_may_pass) ... */
#define LOCAL_SKEW_NS 5000000 /* 5 ms */
/* ... or if it has waited at least 1/LOCAL_SHARE as long as the oldest. */
#define LOCAL_SHARE 4
/* A checkout with no one waiting looks this far down the idle list for a
 * connection its own thread returned (see idle_pop_near). */
#define IDLE_LOOK 8

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#define LIKELY(x)   __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ---- process-wide state: fork detection and the barrier --------------- */

static _Atomic unsigned fork_gen;
static bool have_membarrier;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static _Atomic uint64_t next_pool_id = 1;

static void on_fork_child(void)
{
    atomic_fetch_add(&fork_gen, 1);
}

static void global_init(void)
{
    pthread_atfork(NULL, NULL, on_fork_child);
#if !defined(__SANITIZE_THREAD__)
    const char *off = getenv("WEIR_NO_MEMBARRIER"); /* for comparison and debugging */
    if (off && *off && *off != '0') return;
    long q = syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (q > 0 && (q & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
        syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0)
        have_membarrier = true;
#endif
}

bool weir__forked(const weir_pool *pool)
{
    return UNLIKELY(pool->fork_gen != atomic_load_explicit(&fork_gen, memory_order_relaxed));
}

static inline void light_fence(void)
{
    if (LIKELY(have_membarrier))
        atomic_signal_fence(memory_order_seq_cst);
    else
        atomic_thread_fence(memory_order_seq_cst);
}

static void heavy_fence(void)
{
    if (have_membarrier)
        syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
    else
        atomic_thread_fence(memory_order_seq_cst);
}

/* ---- thread-local affinity cache ---------------------------------------- */

#define TL_WAYS 8
typedef struct tl_entry {
    uint64_t pool_id;
    weir_conn *slot;
} tl_entry;
/* initial-exec: no __tls_get_addr call on the hot path, also in libweir.so */
static _Thread_local tl_entry tl_cache[TL_WAYS] __attribute__((tls_model("initial-exec")));

static inline tl_entry *tl_for(const weir_pool *pool)
{
    return &tl_cache[pool->id % TL_WAYS];
}

/* This thread, as an async waiter's owner. */
static _Thread_local char tl_me __attribute__((tls_model("initial-exec")));

/* Async waiters, kept per thread for the next checkout that queues. When
 * clients outnumber connections every checkout queues one, and glibc's
 * allocator served that size from its general bins, not its per-thread
 * cache: 350–500 instructions per checkout in malloc and free
 * (docs/ARCHITECTURE.md, "Counted against PgBouncer"). A thread keeps
 * WSPARE_N at most and frees them when it ends. Not under AddressSanitizer,
 * which should see every waiter freed. */
#if defined(__SANITIZE_ADDRESS__)
#define WEIR_NO_WSPARES 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WEIR_NO_WSPARES 1
#endif
#endif
#ifndef WEIR_NO_WSPARES
enum { WSPARE_N = 64 };
static _Thread_local weir__waiter *tl_wspare __attribute__((tls_model("initial-exec")));
static _Thread_local int tl_nwspare __attribute__((tls_model("initial-exec")));
static _Thread_local bool tl_wspare_reg __attribute__((tls_model("initial-exec")));
static pthread_key_t wspare_key;
static pthread_once_t wspare_once = PTHREAD_ONCE_INIT;

static void wspare_drop(void *unused)
{
    (void)unused;
    while (tl_wspare) {
        weir__waiter *w = tl_wspare;
        tl_wspare = w->next;
        free(w);
    }
    tl_nwspare = 0;
    tl_wspare_reg = false; /* a waiter freed after this registers again */
}

static void wspare_key_make(void)
{
    (void)pthread_key_create(&wspare_key, wspare_drop);
}
#endif

static weir__waiter *waiter_new(void)
{
#ifndef WEIR_NO_WSPARES
    weir__waiter *w = tl_wspare;
    if (w) {
        tl_wspare = w->next;
        tl_nwspare--;
        return w;
    }
#endif
    return malloc(sizeof(weir__waiter));
}

static void waiter_free(weir__waiter *w)
{
#ifndef WEIR_NO_WSPARES
    if (tl_nwspare < WSPARE_N) {
        if (!tl_wspare_reg) { /* so that the thread's end frees them */
            pthread_once(&wspare_once, wspare_key_make);
            if (pthread_setspecific(wspare_key, &tl_wspare_reg)) {
                free(w);
                return;
            }
            tl_wspare_reg = true;
        }
        w->next = tl_wspare;
        tl_wspare = w;
        tl_nwspare++;
        return;
    }
#endif
    free(w);
}

/* ---- logging ------------------------------------------------------------ */

void weir__log(weir_pool *pool, weir_log_level lvl, const char *fmt, ...)
{
    char raw[1024], msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    weir_mask_credentials(raw, msg, sizeof msg);
    if (pool->hooks.on_log)
        pool->hooks.on_log(pool->hooks.ud, lvl, msg);
    else if (lvl >= WEIR_LOG_WARN)
        fprintf(stderr, "weir: %s\n", msg);
}

static const char *state_name(int s)
{
    static const char *const names[] = {"empty", "idle", "parked", "active", "busy"};
    return s >= 0 && s <= WEIR__BUSY ? names[s] : "?";
}

/* ---- state changes -------------------------------------------------------- */

static inline void slot_set(weir_conn *c, int from, int to)
{
    int old = atomic_exchange_explicit(&c->state, to, memory_order_acq_rel);
    (void)old;
    (void)from;
    assert(old == from && "slot in unexpected state");
}

static inline bool slot_cas(weir_conn *c, int from, int to)
{
    int exp = from;
    return atomic_compare_exchange_strong_explicit(&c->state, &exp, to, memory_order_acquire,
                                                   memory_order_relaxed);
}

static inline int slot_state(const weir_conn *c)
{
    return atomic_load_explicit((_Atomic int *)&c->state, memory_order_acquire);
}

static void lock(weir_pool *p)
{
    pthread_mutex_lock(&p->mu);
}
static void unlock(weir_pool *p)
{
    pthread_mutex_unlock(&p->mu);
}

static void update_over_cap(weir_pool *p)
{
    atomic_store_explicit(&p->over_cap, p->total > p->o.max_size, memory_order_relaxed);
}

static uint64_t rng_next(weir_pool *p) /* under the lock; xorshift64* */
{
    p->rng ^= p->rng >> 12;
    p->rng ^= p->rng << 25;
    p->rng ^= p->rng >> 27;
    return p->rng * 2685821657736338717ULL;
}

static double rng_unit(weir_pool *p)
{
    return (double)(rng_next(p) >> 11) / 9007199254740992.0;
}

static struct timespec ts_of(int64_t ns)
{
    struct timespec ts = {.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
    return ts;
}

/* ---- the idle list (under the lock) ------------------------------------------ */

static void idle_push(weir_pool *p, weir_conn *c, int from)
{
    slot_set(c, from, WEIR__IDLE);
    c->idle_prev = NULL;
    c->idle_next = p->idle_head;
    if (p->idle_head) p->idle_head->idle_prev = c;
    p->idle_head = c;
    p->nidle_list++;
}

static void idle_remove(weir_pool *p, weir_conn *c, int to)
{
    slot_set(c, WEIR__IDLE, to);
    if (c->idle_prev)
        c->idle_prev->idle_next = c->idle_next;
    else
        p->idle_head = c->idle_next;
    if (c->idle_next) c->idle_next->idle_prev = c->idle_prev;
    c->idle_prev = c->idle_next = NULL;
    p->nidle_list--;
}

static weir_conn *idle_pop(weir_pool *p)
{
    weir_conn *c = p->idle_head;
    if (c) idle_remove(p, c, WEIR__INUSE);
    return c;
}

/* The idle connection most recently returned by this thread, among the
 * IDLE_LOOK most recent; else the most recent. An event loop that finds the
 * connection it returned gets one whose socket it still watches: no
 * registration moves between threads (docs/ENGINE.md, "Where a checkout's
 * connection comes from"). */
static weir_conn *idle_pop_near(weir_pool *p)
{
    weir_conn *c = p->idle_head;
    for (int i = 0; c && i < IDLE_LOOK; i++, c = c->idle_next)
        if (c->returned_by == &tl_me) {
            idle_remove(p, c, WEIR__INUSE);
            return c;
        }
    return idle_pop(p);
}

/* Claim another thread's parked slot (under the lock, to scan the array).
 * Once a scan made after the heavy fence has found none, none can stay
 * parked until the queue empties: every later park sees nwaiters >= 1 and
 * takes its slot back to hand it over (see "Lost wake-ups"). So while
 * clients queue, checkouts skip the scan of every slot. */
static weir_conn *steal(weir_pool *p)
{
    if (p->none_parked) return NULL;
    for (int i = 0; i < p->nslots; i++) {
        weir_conn *c = p->slots[i];
        if (slot_state(c) == WEIR__PARKED && slot_cas(c, WEIR__PARKED, WEIR__INUSE)) return c;
    }
    if (p->fenced) p->none_parked = true;
    return NULL;
}

/* ---- waiters (under the lock) ------------------------------------------------ */

/* The queue of owner's async waiters in p (under the lock); NULL if none.
 * With create, one is made: a free entry, else another thread's with
 * nobody waiting (only when all 64 are taken, so that two threads do not
 * keep taking one entry from each other). This thread's answer is cached,
 * a miss too: a thread that never queued in p (a checkin from a thread
 * with no waiters) does not scan the table on every checkin. A waiter put
 * back by another thread (fire_async) may get an entry this cache does
 * not know; the owner finds it at its next enqueue. */
typedef struct tl_oq_entry {
    uint64_t pool_id;
    weir__owner_q *q; /* NULL: none */
} tl_oq_entry;
static _Thread_local tl_oq_entry tl_oq[TL_WAYS] __attribute__((tls_model("initial-exec")));

static weir__owner_q *owner_q(weir_pool *p, const void *owner, bool create)
{
    tl_oq_entry *e = owner == &tl_me ? &tl_oq[p->id % TL_WAYS] : NULL;
    if (e && e->pool_id == p->id) {
        if (e->q && e->q->owner == owner) return e->q;
        /* none, or handed on while empty: this thread has no waiters here */
        if (!create) return NULL;
    }
    weir__owner_q *q = NULL, *unused = NULL, *empty = NULL;
    for (int i = 0; i < WEIR__OWNER_QS && !q; i++) {
        weir__owner_q *o = &p->oq[i];
        if (o->owner == owner)
            q = o;
        else if (!o->owner && !unused)
            unused = o;
        else if (!o->head && !empty)
            empty = o;
    }
    if (!q && create && (q = unused ? unused : empty)) q->owner = owner;
    if (e) {
        e->pool_id = p->id;
        e->q = q;
    }
    return q;
}

static void oq_link(weir__waiter *w, bool front)
{
    weir__owner_q *q = w->oq;
    if (front) {
        w->oprev = NULL;
        w->onext = q->head;
        if (q->head)
            q->head->oprev = w;
        else
            q->tail = w;
        q->head = w;
    } else {
        w->onext = NULL;
        w->oprev = q->tail;
        if (q->tail)
            q->tail->onext = w;
        else
            q->head = w;
        q->tail = w;
    }
}

static void oq_unlink(weir__waiter *w)
{
    weir__owner_q *q = w->oq;
    if (w->oprev)
        w->oprev->onext = w->onext;
    else
        q->head = w->onext;
    if (w->onext)
        w->onext->oprev = w->oprev;
    else
        q->tail = w->oprev;
    w->oprev = w->onext = NULL;
    w->oq = NULL;
}

static void wq_push_back(weir_pool *p, weir__waiter *w)
{
    w->next = NULL;
    w->prev = p->wq_tail;
    if (p->wq_tail)
        p->wq_tail->next = w;
    else
        p->wq_head = w;
    p->wq_tail = w;
    atomic_fetch_add(&p->nwaiters, 1);
}

static void wq_push_front(weir_pool *p, weir__waiter *w)
{
    w->prev = NULL;
    w->next = p->wq_head;
    if (p->wq_head)
        p->wq_head->prev = w;
    else
        p->wq_tail = w;
    p->wq_head = w;
    atomic_fetch_add(&p->nwaiters, 1);
}

/* An entry in reqs for async waiter w (under the lock): its request, 0 if
 * out of memory. Freed entries are taken again last freed first, so the
 * entries in use stay few and warm. */
static uint64_t req_take(weir_pool *p, weir__waiter *w)
{
    if (!p->reqs_free) {
        uint32_t n = p->nreqs ? p->nreqs * 2 : 64;
        if (n <= p->nreqs || n > (UINT32_C(1) << 30)) return 0;
        weir__req *r = realloc(p->reqs, n * sizeof *r);
        if (!r) return 0;
        for (uint32_t i = n; i-- > p->nreqs;) {
            r[i] = (weir__req){NULL, 0, p->reqs_free};
            p->reqs_free = i + 1;
        }
        p->reqs = r;
        p->nreqs = n;
    }
    uint32_t i = p->reqs_free - 1;
    weir__req *e = &p->reqs[i];
    p->reqs_free = e->next;
    e->w = w;
    e->gen++;
    w->req_slot = i + 1;
    return (uint64_t)e->gen << 32 | (i + 1);
}

static void req_release(weir_pool *p, weir__waiter *w)
{
    weir__req *e = &p->reqs[w->req_slot - 1];
    e->w = NULL;
    e->next = p->reqs_free;
    p->reqs_free = w->req_slot;
    w->req_slot = 0;
}

static void wq_remove(weir_pool *p, weir__waiter *w)
{
    if (w->req_slot) req_release(p, w);
    if (w->prev)
        w->prev->next = w->next;
    else
        p->wq_head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        p->wq_tail = w->prev;
    w->prev = w->next = NULL;
    if (w->oq) oq_unlink(w);
    if (w->woken) {
        w->woken = false;
        p->nwoken--;
    }
    if (atomic_fetch_sub(&p->nwaiters, 1) == 1) {
        p->fenced = p->none_parked = false;
        p->wq_unordered = false; /* empty: in order again */
        p->wq_last_deadline = INT64_MIN;
    }
}

/* Keep the async waiters' deadlines in queue order, so that the housekeeper
 * finds the next to expire at the head instead of walking every waiter at
 * each wake-up (with thousands waiting and their deadlines spread, that walk
 * held the lock most of the time: docs/ENGINE.md, "Timeouts of many
 * waiters"). Checkouts that started on other threads a little earlier reach
 * the lock in any order (a thread can be preempted between reading the
 * clock and taking the lock, for a few ms on a busy machine): a deadline up
 * to ORDER_SLACK_NS before the latest queued is moved to it (the timeout
 * fires that much later, inside the engine's 50 ms). A shorter timeout than
 * the others' marks the queue unordered until it empties, and the
 * housekeeper walks it as before. */
#define ORDER_SLACK_NS 10000000
static void wq_order(weir_pool *p, weir__waiter *w, bool front)
{
    if (!w->async) return;
    if (front) { /* back at the head: in order if not later than the next one's */
        weir__waiter *nx = w->next;
        if (nx && (!nx->async || nx->deadline_ns < w->deadline_ns)) p->wq_unordered = true;
        if (w->deadline_ns > p->wq_last_deadline) p->wq_last_deadline = w->deadline_ns;
        return;
    }
    if (w->deadline_ns < p->wq_last_deadline) {
        if (p->wq_last_deadline - w->deadline_ns <= ORDER_SLACK_NS)
            w->deadline_ns = p->wq_last_deadline;
        else
            p->wq_unordered = true;
    }
    if (w->deadline_ns > p->wq_last_deadline) p->wq_last_deadline = w->deadline_ns;
}

/* Complete waiter w (already removed from the queue) with conn or status.
 * Sync waiters are signalled now; async ones are appended to *fire and
 * completed by fire_async() once the lock is released. */
static void complete(weir__waiter *w, weir_conn *c, int status, bool from_idle, weir__waiter **fire)
{
    w->conn = c;
    w->status = status;
    w->from_idle = from_idle;
    atomic_store_explicit(&w->done, true, memory_order_release);
    if (w->async) {
        w->next = *fire;
        *fire = w;
    } else {
        pthread_cond_signal(&w->cv);
    }
}

static void fail_all_waiters(weir_pool *p, int status, weir__waiter **fire)
{
    while (p->wq_head) {
        weir__waiter *w = p->wq_head;
        wq_remove(p, w);
        complete(w, NULL, status, false, fire);
    }
}

/* Hand idle connections to waiters, oldest first. */
static void serve_waiters(weir_pool *p, weir__waiter **fire)
{
    if (atomic_load_explicit(&p->run, memory_order_relaxed) != WEIR__RUNNING) return;
    while (p->wq_head) {
        weir_conn *c = idle_pop(p);
        if (!c) c = steal(p);
        if (!c) return;
        weir__waiter *w = p->wq_head;
        wq_remove(p, w);
        complete(w, c, 0, true, fire);
    }
}

/* How many more connects the pool needs now (under the lock): for waiters
 * not covered by connects in flight, up to min_idle, one owed to a shared
 * limit or one to probe a target that is down; within max_size. */
static int64_t need_count(weir_pool *p)
{
    int run = atomic_load_explicit(&p->run, memory_order_relaxed);
    if (p->stopping || run == WEIR__DRAINING || run == WEIR__CLOSED) return 0;
    int64_t room = p->o.max_size - p->total;
    if (room <= 0) return 0;
    int64_t n = 0;
    int64_t waiting = run == WEIR__PAUSED ? 0 : atomic_load(&p->nwaiters);
    if (waiting > p->in_flight) n = waiting - p->in_flight;
    if (p->o.min_idle - p->total > n) n = p->o.min_idle - p->total;
    /* Another pool closed an idle connection because this one asked: open
     * it here even if the caller that asked was served meanwhile by a
     * connection of this pool coming back, so that the pools on the limit
     * keep as many connections as before, not one fewer. */
    if (n == 0 && run == WEIR__RUNNING && p->reclaim_owed > 0) n = 1;
    if (n == 0 && p->down && p->total == 0) n = 1; /* probe so the pool recovers by itself */
    return n < room ? n : room;
}

static bool need_create(weir_pool *p)
{
    return need_count(p) > 0;
}

static void *creator_main(void *arg);
static void set_last_error(weir_pool *p, const char *msg);

#define HK_DORMANT      INT64_MAX /* hk_sleep_until while the housekeeper has nothing to keep */
#define HK_MAX_SLEEP_MS 10000     /* the longest it sleeps while it keeps anything */

/* Under the lock: something the housekeeper's next pass depends on changed
 * (a connection opened, the sizes, an eviction, adaptive sizing, a failed
 * creator start): it makes a pass now and sleeps again from there. */
static void hk_wake(weir_pool *p)
{
    p->hk_recompute = true;
    if (p->hk_sleep_until) pthread_cond_signal(&p->hk_cv);
}

/* Start one of the pool's threads with every signal blocked but the
 * synchronous ones, whatever the calling thread blocks: the application's
 * signals go to its own threads. */
static int thread_start(pthread_t *t, void *(*fn)(void *), weir_pool *p)
{
    sigset_t all, old;
    sigfillset(&all);
    sigdelset(&all, SIGSEGV); /* faults stay faults */
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(t, NULL, fn, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

/* Start a creator thread in a free entry (under the lock). */
static void creator_start(weir_pool *p)
{
    int i = 0;
    while (i < p->o.creator_threads && p->cr_state[i] == WEIR__CR_RUNNING) i++;
    if (i == p->o.creator_threads) return;
    if (p->cr_state[i] == WEIR__CR_DONE) { /* it has let go of the lock: its end is near */
        pthread_join(p->creators[i], NULL);
        p->cr_state[i] = WEIR__CR_FREE;
    }
    int rc = thread_start(&p->creators[i], creator_main, p);
    if (rc != 0) {
        char err[160];
        snprintf(err, sizeof err, "cannot start a thread to connect: %s", strerror(rc));
        set_last_error(p, err);
        if (!p->cr_start_failed) weir__log(p, WEIR_LOG_ERROR, "pool %s: %s", p->name, err);
        p->cr_start_failed = true; /* the housekeeper's next tick tries again */
        hk_wake(p);
        return;
    }
    p->cr_start_failed = false;
    p->cr_state[i] = WEIR__CR_RUNNING;
    p->cr_running++;
    p->cr_starting++; /* until it first holds the lock */
}

/* Under the lock: for each connect needed that no creator on its way
 * (woken, or starting) covers, a waiting creator is woken, else, below
 * creator_threads, one is started; a second kick for the same need adds
 * none. */
static void kick_creator(weir_pool *p)
{
    int64_t need = need_count(p);
    while (need > p->cr_signalled + p->cr_starting) {
        if (p->cr_waiting > p->cr_signalled) {
            p->cr_signalled++;
            pthread_cond_signal(&p->creator_cv);
        } else if (p->cr_running < p->o.creator_threads) {
            int before = p->cr_starting;
            creator_start(p);
            if (p->cr_starting == before) return; /* could not: the housekeeper retries */
        } else {
            return; /* every creator is busy: each looks again when done */
        }
    }
}

/* ---- shared limits -------------------------------------------------------------
 * Each limit counts the total (open + connecting) of every pool attached to
 * it. A pool takes a unit when total goes up and gives it back when total
 * goes down, both under its own lock; the count itself is an atomic, so a
 * pool never needs a limit's mutex while it holds its own. The limit's mutex
 * guards its pool list and is always taken before any pool's lock.
 */

static bool limits_reserve(weir_pool *p) /* under p's lock */
{
    for (int i = 0; i < p->nlimits; i++) {
        weir_limit *l = p->limits[i];
        int64_t u = atomic_load(&l->used);
        bool got = false;
        while (u < atomic_load(&l->max))
            if ((got = atomic_compare_exchange_weak(&l->used, &u, u + 1))) break;
        if (!got) {
            while (i-- > 0) atomic_fetch_sub(&p->limits[i]->used, 1);
            return false;
        }
    }
    return true;
}

static void limits_release(weir_pool *p) /* under p's lock */
{
    for (int i = 0; i < p->nlimits; i++) atomic_fetch_sub(&p->limits[i]->used, 1);
}

/* Units came free: wake the creators of the pools on the limits ls, all but
 * p (NULL: all). ls are p's limits copied under its lock: p itself may be
 * gone by now if that was its last connection. Not under any lock. */
static void limits_kick(const weir_pool *p, weir_limit *const *ls, int n)
{
    for (int i = 0; i < n; i++) {
        weir_limit *l = ls[i];
        pthread_mutex_lock(&l->mu);
        for (int j = 0; j < l->npools; j++) {
            weir_pool *q = l->pools[j];
            if (q == p) continue;
            lock(q);
            kick_creator(q);
            unlock(q);
        }
        pthread_mutex_unlock(&l->mu);
    }
}

static bool has_idle(weir_pool *p) /* under p's lock */
{
    if (p->idle_head) return true;
    for (int i = 0; i < p->nslots; i++)
        if (slot_state(p->slots[i]) == WEIR__PARKED) return true;
    return false;
}

/* p has waiters and a full limit: ask one other pool on it with an idle
 * connection to close one (its housekeeper does it, and the freed unit
 * kicks p's creator). Not under any lock. Returns how many pools were
 * asked: p owes the limit that many connections (need_create). */
static int limits_reclaim(weir_pool *p)
{
    int asked_n = 0;
    for (int i = 0; i < p->nlimits; i++) {
        weir_limit *l = p->limits[i];
        if (atomic_load(&l->used) < atomic_load(&l->max)) continue;
        pthread_mutex_lock(&l->mu);
        for (int j = 0; j < l->npools; j++) {
            weir_pool *q = l->pools[j];
            if (q == p) continue;
            lock(q);
            bool asked = has_idle(q);
            if (asked) {
                q->reclaim++;
                q->reclaim_owed = 0; /* giving up connections, not opening more */
                pthread_cond_signal(&q->hk_cv);
            }
            unlock(q);
            if (asked) {
                asked_n++;
                break;
            }
        }
        pthread_mutex_unlock(&l->mu);
    }
    return asked_n;
}

/* ---- closing ---------------------------------------------------------------- */

/* Close the connection in c, which the caller holds (INUSE or BUSY). */
static void close_conn(weir_pool *p, weir_conn *c, int reason)
{
    c->close_reason = reason;
    if (p->hooks.on_destroy) p->hooks.on_destroy(p->hooks.ud, c);
    c->close_reason = -1;
    p->drv->close(p->ctx, c->handle);
    atomic_fetch_add(&p->closed_total[reason], 1);
    lock(p);
    int s = slot_state(c);
    assert(s == WEIR__INUSE || s == WEIR__BUSY);
    slot_set(c, s, WEIR__EMPTY);
    c->handle = NULL;
    p->total--;
    limits_release(p);
    weir_limit *ls[WEIR_MAX_LIMITS];
    int nl = p->nlimits;
    memcpy(ls, p->limits, (size_t)nl * sizeof *ls);
    update_over_cap(p);
    kick_creator(p);
    pthread_cond_broadcast(&p->drain_cv);
    unlock(p);
    if (nl) limits_kick(p, ls, nl); /* p must not be touched from here */
}

static const char *const reason_names[WEIR_CLOSE_REASONS] = {"idle", "lifetime", "broken", "uses",
                                                             "evicted"};

static void set_last_error(weir_pool *p, const char *msg) /* under the lock */
{
    weir_mask_credentials(msg, p->last_error, sizeof p->last_error);
}

/* ---- checkout ---------------------------------------------------------------- */

/* The holder's bookkeeping (relaxed: only the holder writes these). */
static inline void record_checkout(weir_conn *c, int64_t now, const char *file, int line)
{
    c->broken = false;
    atomic_store_explicit(&c->uses, atomic_load_explicit(&c->uses, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_store_explicit(&c->conn_uses,
                          atomic_load_explicit(&c->conn_uses, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_store_explicit(&c->file, file, memory_order_relaxed);
    atomic_store_explicit(&c->line, line, memory_order_relaxed);
    /* last, with release: a reader that sees this taken_ms sees this use */
    atomic_store_explicit(&c->taken_ms, now, memory_order_release);
}

/* The caller holds c (INUSE): the full checks. Retire it if it must not be
 * used, validate it if it has been idle long, run the checkout hook, and
 * record the checkout. Returns false if c was closed (the caller tries again). */
static __attribute__((noinline)) bool prepare_slow(weir_pool *p, weir_conn *c, const char *file,
                                                   int line, bool fresh)
{
    int64_t now = weir__coarse_ms();
    int reason = -1;
    if (c->gen != atomic_load_explicit(&p->evict_gen, memory_order_relaxed))
        reason = WEIR_CLOSE_EVICTED;
    else if (c->expires_ms && now >= c->expires_ms)
        reason = WEIR_CLOSE_LIFETIME;
    else if (!fresh && now - atomic_load_explicit(&c->last_used_ms, memory_order_relaxed) >=
                           p->validate_after_eff) {
        char err[512] = "";
        int rc = p->drv->validate(
            p->ctx, c->handle, weir_now_ns() + p->o.connect_timeout_ms * 1000000, err, sizeof err);
        if (rc != 0) {
            lock(p);
            set_last_error(p, err[0] ? err : weir_strerror(rc));
            unlock(p);
            weir__log(p, WEIR_LOG_INFO, "pool %s: connection #%" PRIu64 " failed validation: %s",
                      p->name, c->id, err);
            reason = WEIR_CLOSE_BROKEN;
        }
    }
    if (reason < 0 && p->hooks.on_checkout && p->hooks.on_checkout(p->hooks.ud, c) != 0)
        reason = WEIR_CLOSE_BROKEN;
    if (reason >= 0) {
        close_conn(p, c, reason);
        return false;
    }
    record_checkout(c, now, file, line);
    return true;
}

/* The common case inline; anything unusual goes to prepare_slow(). */
static inline bool prepare(weir_pool *p, weir_conn *c, const char *file, int line, bool fresh)
{
    int64_t now = weir__coarse_ms();
    if (UNLIKELY(c->gen != atomic_load_explicit(&p->evict_gen, memory_order_relaxed) ||
                 (c->expires_ms && now >= c->expires_ms) || !p->plain_checkout ||
                 (!fresh && now - atomic_load_explicit(&c->last_used_ms, memory_order_relaxed) >=
                                p->validate_after_eff)))
        return prepare_slow(p, c, file, line, fresh);
    record_checkout(c, now, file, line);
    return true;
}

/* The lock-free path: this thread's own parked connection. */
static inline weir_conn *try_fast(weir_pool *p, const char *file, int line)
{
    if (UNLIKELY(atomic_load_explicit(&p->run, memory_order_relaxed) != WEIR__RUNNING)) return NULL;
    tl_entry *e = tl_for(p);
    weir_conn *c = e->slot;
    /* read before the CAS: a slot another thread holds is not pulled into
     * this core's cache in exclusive state for nothing */
    if (e->pool_id != p->id || !c || slot_state(c) != WEIR__PARKED ||
        !slot_cas(c, WEIR__PARKED, WEIR__INUSE))
        return NULL;
    if (LIKELY(prepare(p, c, file, line, false))) return c;
    return NULL;
}

static int run_error(int run)
{
    return run == WEIR__DRAINING || run == WEIR__CLOSED ? WEIR_ECLOSED : 0;
}

/* Under the lock: take an idle or parked connection, or return an error, or
 * NULL with *rc = 0 when the caller must wait. */
static weir_conn *take_locked(weir_pool *p, int *rc)
{
    int run = atomic_load_explicit(&p->run, memory_order_relaxed);
    if ((*rc = run_error(run))) return NULL;
    if (run == WEIR__RUNNING) {
        weir_conn *c = idle_pop_near(p);
        if (!c) c = steal(p);
        if (c) return c;
        if (p->down && p->o.fail_fast && !p->o.wait_while_down) {
            *rc = WEIR_ECONNECT;
            return NULL;
        }
    }
    if (p->o.max_waiters > 0 && atomic_load(&p->nwaiters) >= p->o.max_waiters) {
        atomic_fetch_add(&p->shed_total, 1);
        *rc = WEIR_EBUSY;
    }
    return NULL;
}

/* Before a queued waiter sleeps: make sure a heavy fence separates the
 * queue becoming non-empty from this look for parked slots (see "Lost
 * wake-ups"). Under the lock; w is queued. Returns a claimed slot or NULL. */
static weir_conn *fence_and_look(weir_pool *p, weir__waiter *w)
{
    if (p->fenced) return NULL;
    heavy_fence();
    p->fenced = true;
    weir_conn *c = NULL;
    if (atomic_load_explicit(&p->run, memory_order_relaxed) == WEIR__RUNNING) c = steal(p);
    if (c) wq_remove(p, w);
    return c;
}

/* Enqueue w and look once more for a connection parked meanwhile. Under the
 * lock. Returns a claimed slot (w not queued) or NULL (w queued). An async
 * waiter is fenced at once; a sync one spins first and is fenced before it
 * sleeps. */
static weir_conn *enqueue(weir_pool *p, weir__waiter *w, bool front)
{
    if (front)
        wq_push_front(p, w);
    else
        wq_push_back(p, w);
    wq_order(p, w, front);
    if (w->async && (w->oq = owner_q(p, w->owner, true))) oq_link(w, front);
    weir_conn *c = NULL;
    if (atomic_load_explicit(&p->run, memory_order_relaxed) == WEIR__RUNNING) c = steal(p);
    if (c) {
        wq_remove(p, w);
        return c;
    }
    if (w->async && (c = fence_and_look(p, w))) return c;
    kick_creator(p);
    return NULL;
}

static int checkout_slow(weir_pool *p, int64_t timeout_ms, weir_conn **out, const char *file,
                         int line);

int weir_checkout_at(weir_pool *p, int64_t timeout_ms, weir_conn **out, const char *file, int line)
{
    if (UNLIKELY(!p || !out)) return WEIR_EINVAL;
    if (UNLIKELY(weir__forked(p))) {
        *out = NULL;
        return WEIR_EFORK;
    }
    weir_conn *c = try_fast(p, file, line);
    if (LIKELY(c != NULL)) {
        *out = c;
        return 0;
    }
    return checkout_slow(p, timeout_ms, out, file, line);
}

static __attribute__((noinline)) int checkout_slow(weir_pool *p, int64_t timeout_ms,
                                                   weir_conn **out, const char *file, int line)
{
    *out = NULL;
    weir_conn *c;
    int64_t start = weir_now_ns();
    int64_t deadline = start + (timeout_ms < 0 ? p->o.acquire_timeout_ms : timeout_ms) * 1000000;
    weir__waiter w = {.start_ns = start, .deadline_ns = deadline, .file = file, .line = line};
    bool cv_ready = false, front = false;
    int rc = 0;
    lock(p);
    for (;;) {
        c = take_locked(p, &rc);
        bool from_idle = true;
        if (!c && rc == 0) {
            if (!cv_ready) {
                pthread_cond_init(&w.cv, &p->cattr);
                cv_ready = true;
            }
            w.done = false;
            c = enqueue(p, &w, front);
            if (!c && p->wq_head == &w) {
                /* Next in line: the hand-off may be a moment away. Spin
                 * briefly, unlocked, rather than pay for sleep and wake-up. */
                atomic_store(&w.spinning, true);
                unlock(p);
                int64_t until = weir_now_ns() + SPIN_NS;
                for (unsigned i = 1; !atomic_load_explicit(&w.done, memory_order_acquire); i++) {
                    cpu_relax();
                    if (i % 64 == 0 && weir_now_ns() > until) break;
                }
                lock(p);
                atomic_store(&w.spinning, false);
            }
            if (!c && !w.done) c = fence_and_look(p, &w);
            if (!c) {
                struct timespec ts = ts_of(deadline);
                while (!w.done) {
                    int e = pthread_cond_timedwait(&w.cv, &p->mu, &ts);
                    if (w.done) break;
                    if (w.woken) { /* running now: no longer a pending wake-up */
                        w.woken = false;
                        p->nwoken--;
                    }
                    /* woken to look at the idle list (see checkin_slow) */
                    if (atomic_load_explicit(&p->run, memory_order_relaxed) == WEIR__RUNNING) {
                        c = idle_pop(p);
                        if (!c) c = steal(p);
                        if (c) {
                            wq_remove(p, &w);
                            break;
                        }
                    }
                    if (e == ETIMEDOUT) {
                        wq_remove(p, &w);
                        atomic_fetch_add(&p->acquire_timeouts_total, 1);
                        rc = WEIR_ETIMEDOUT;
                        break;
                    }
                }
                if (w.done) {
                    rc = w.status;
                    c = w.conn;
                    from_idle = w.from_idle;
                }
            }
        }
        unlock(p);
        if (!c) break;
        if (prepare(p, c, file, line, !from_idle)) {
            weir__hist_observe(&p->acquire_hist, weir_now_ns() - start);
            *out = c;
            break;
        }
        front = true; /* it was our turn: keep it */
        lock(p);
    }
    if (cv_ready) pthread_cond_destroy(&w.cv);
    if (rc == WEIR_ETIMEDOUT) {
        char err[512];
        size_t n = weir_pool_last_error(p, err, sizeof err);
        weir__log(p, WEIR_LOG_DEBUG, "pool %s: checkout at %s:%d timed out%s%s", p->name,
                  file ? file : "?", line, n ? "; last connect error: " : "", n ? err : "");
    }
    return rc;
}

/* Complete async waiters collected under the lock. Runs unlocked. A
 * connection that came from the idle list is validated first; if it is bad
 * the waiter goes back to the head of the queue. */
static void fire_async(weir_pool *p, weir__waiter *list)
{
    while (list) {
        weir__waiter *w = list;
        list = w->next;
        w->next = NULL;
        if (w->conn && !prepare(p, w->conn, w->file, w->line, !w->from_idle)) {
            lock(p);
            int rc = 0;
            weir_conn *c = take_locked(p, &rc);
            if (!c && rc == 0) c = enqueue(p, w, true);
            unlock(p);
            if (c) {
                w->conn = c;
                w->from_idle = true;
                w->next = list; /* try again with this one */
                list = w;
                continue;
            }
            if (rc == 0) continue; /* queued again */
            w->conn = NULL;
            w->status = rc;
        }
        if (w->conn) weir__hist_observe(&p->acquire_hist, weir_now_ns() - w->start_ns);
        w->cb(w->conn, w->status, w->ud);
        waiter_free(w);
    }
}

int weir_checkout_async_at(weir_pool *p, int64_t timeout_ms, weir_checkout_cb cb, void *ud,
                           weir_conn **now, uint64_t *req, const char *file, int line)
{
    if (!p || !cb || !now) return WEIR_EINVAL;
    *now = NULL;
    if (weir__forked(p)) return WEIR_EFORK;
    weir_conn *c = try_fast(p, file, line);
    if (c) {
        *now = c;
        return 0;
    }
    int64_t start = weir_now_ns();
    for (;;) {
        int rc = 0;
        lock(p);
        c = take_locked(p, &rc);
        if (c || rc) {
            unlock(p);
            if (rc) return rc;
            if (prepare(p, c, file, line, false)) {
                weir__hist_observe(&p->acquire_hist, weir_now_ns() - start);
                *now = c;
                return 0;
            }
            continue;
        }
        weir__waiter *w = waiter_new();
        if (!w) {
            unlock(p);
            return WEIR_ENOMEM;
        }
        *w = (weir__waiter){
            .async = true,
            .cb = cb,
            .ud = ud,
            .file = file,
            .line = line,
            .start_ns = start,
            .deadline_ns =
                start + (timeout_ms < 0 ? p->o.acquire_timeout_ms : timeout_ms) * 1000000,
            .owner = &tl_me,
        };
        /* an entry to cancel it by, if the caller takes its request (given
         * back by wq_remove) */
        uint64_t id = 0;
        if (req && !(id = req_take(p, w))) {
            unlock(p);
            waiter_free(w);
            return WEIR_ENOMEM;
        }
        c = enqueue(p, w, false);
        if (!c) {
            if (req) *req = id;
            /* The housekeeper keeps the deadline: wake it only if it would sleep past it
             * (with FIFO waiters and one timeout, deadlines only grow: rarely). */
            if (p->hk_sleep_until && w->deadline_ns < p->hk_sleep_until)
                pthread_cond_signal(&p->hk_cv);
            unlock(p);
            return WEIR_PENDING;
        }
        unlock(p);
        waiter_free(w);
        if (prepare(p, c, file, line, false)) {
            weir__hist_observe(&p->acquire_hist, weir_now_ns() - start);
            *now = c;
            return 0;
        }
    }
}

int weir_checkout_cancel(weir_pool *p, uint64_t req)
{
    if (!p) return WEIR_EINVAL;
    if (weir__forked(p)) return WEIR_EFORK;
    uint32_t i = (uint32_t)req, gen = (uint32_t)(req >> 32);
    lock(p);
    /* a waiter has an entry only while it is queued (req_take, wq_remove) */
    weir__waiter *w = i && i <= p->nreqs && p->reqs[i - 1].gen == gen ? p->reqs[i - 1].w : NULL;
    if (!w) {
        unlock(p);
        return WEIR_EALREADY;
    }
    wq_remove(p, w);
    unlock(p);
    w->cb(NULL, WEIR_ECANCELED, w->ud);
    waiter_free(w);
    return 0;
}

/* ---- checkin ------------------------------------------------------------------ */

static void usage_observe(weir_conn *c, int64_t ms)
{
    int b = 0;
    while (b < WEIR__USAGE_NB && ms > weir__usage_bounds_ms[b]) b++;
    atomic_store_explicit(&c->usage_counts[b],
                          atomic_load_explicit(&c->usage_counts[b], memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_store_explicit(&c->usage_sum_ms,
                          atomic_load_explicit(&c->usage_sum_ms, memory_order_relaxed) +
                              (uint64_t)ms,
                          memory_order_relaxed);
}

/* May l, this thread's oldest async waiter, be served before w, the oldest
 * of all? Yes if it queued at most LOCAL_SKEW_NS after w, or if it has
 * itself waited at least 1/LOCAL_SHARE as long as w: a waiter is passed
 * over only by one that came within 5 ms of it or has waited a quarter as
 * long (docs/ENGINE.md, "Fairness"). The relative part matters once waits
 * pass 5 ms: with every loop's clients queued for 10 ms, the loops' queues
 * drift more than 5 ms apart all the time, and an absolute bound alone sent
 * connections across threads (and halved weir's throughput on 16 cores). */
static inline bool local_may_pass(const weir__waiter *w, const weir__waiter *l)
{
    int64_t gap = l->start_ns - w->start_ns; /* = w's wait - l's wait */
    if (gap <= LOCAL_SKEW_NS) return true;
    /* l's wait >= w's / LOCAL_SHARE: gap <= w's wait * (1 - 1/LOCAL_SHARE) */
    return gap * LOCAL_SHARE <= (weir_now_ns() - w->start_ns) * (LOCAL_SHARE - 1);
}

static __attribute__((noinline)) void checkin_slow(weir_pool *p, weir_conn *c)
{
    weir__waiter *fire = NULL;
    lock(p);
    int run = atomic_load_explicit(&p->run, memory_order_relaxed);
    if (run == WEIR__DRAINING || run == WEIR__CLOSED || p->total > p->o.max_size) {
        unlock(p);
        close_conn(p, c, WEIR_CLOSE_IDLE);
        return;
    }
    weir__waiter *w = run == WEIR__RUNNING ? p->wq_head : NULL;
    /* Locality: an event loop that returns a connection and also has a
     * client waiting for one serves that client itself: no wake-up of
     * another thread, and the connection's socket stays with the loop that
     * has it registered, within the bound of local_may_pass(). The thread's
     * oldest waiter is the head of its own queue: no walk past the others'. */
    if (w && w->async && w->owner != &tl_me) {
        weir__owner_q *q = owner_q(p, &tl_me, false);
        weir__waiter *l = q ? q->head : NULL;
        if (l && local_may_pass(w, l)) w = l;
    }
    if (w && (w->async || atomic_load(&w->spinning) ||
              weir_now_ns() - w->start_ns >= HANDOFF_AFTER_NS)) {
        wq_remove(p, w);
        p->handoffs[w->owner != &tl_me]++; /* a sync waiter is always another thread */
        complete(w, c, 0, false, &fire);   /* hand-off: still INUSE */
    } else {
        /* The oldest waiter is asleep and has not waited long: wake it to
         * take c from the idle list, and let a running thread take c first
         * if it is quicker (no convoy behind a sleeping thread). */
        c->returned_by = &tl_me;
        idle_push(p, c, WEIR__INUSE);
        /* At most one pending wake-up per idle connection: two connections
         * returned in a row wake two waiters, but a waiter woken and not yet
         * running is not joined by another for the same connection. Async
         * waiters are served by hand-off only. */
        if (p->nwoken < p->nidle_list) {
            while (w && (w->woken || w->async)) w = w->next;
            if (w) {
                w->woken = true;
                p->nwoken++;
                pthread_cond_signal(&w->cv);
            }
        }
    }
    unlock(p);
    if (fire) fire_async(p, fire);
}

/* Park c for this thread, lock-free, unless a waiter needs it; else the slow path. */
static inline void park_or_slow(weir_pool *p, weir_conn *c)
{
    if (LIKELY(atomic_load_explicit(&p->run, memory_order_relaxed) == WEIR__RUNNING &&
               !atomic_load_explicit(&p->over_cap, memory_order_relaxed))) {
        tl_entry *e = tl_for(p);
        weir_conn *mine = e->pool_id == p->id ? e->slot : NULL;
        if (!mine || mine == c || slot_state(mine) != WEIR__PARKED) {
            e->pool_id = p->id;
            e->slot = c;
            atomic_store_explicit(&c->state, WEIR__PARKED, memory_order_release);
            light_fence();
            if (LIKELY(atomic_load_explicit(&p->nwaiters, memory_order_relaxed) == 0)) return;
            if (!slot_cas(c, WEIR__PARKED, WEIR__INUSE)) return; /* a waiter took it */
        }
    }
    checkin_slow(p, c);
}

/* Checkin with something to look at: retire, reset, or the hook. `dirty`
 * is the driver's answer, already asked by weir_checkin(). */
static __attribute__((noinline)) void checkin_attention(weir_pool *p, weir_conn *c, int64_t now,
                                                        bool dirty)
{
    int reason = -1;
    if (c->broken)
        reason = WEIR_CLOSE_BROKEN;
    else if (atomic_load_explicit(&c->conn_uses, memory_order_relaxed) >= p->max_uses_eff)
        reason = WEIR_CLOSE_USES;
    else if (c->expires_ms && now >= c->expires_ms)
        reason = WEIR_CLOSE_LIFETIME;
    else if (c->gen != atomic_load_explicit(&p->evict_gen, memory_order_relaxed))
        reason = WEIR_CLOSE_EVICTED;
    else if (dirty) {
        char err[512] = "";
        if (!p->drv->reset || p->drv->reset(p->ctx, c->handle, err, sizeof err) != 0) {
            weir__log(p, WEIR_LOG_INFO,
                      "pool %s: connection #%" PRIu64 " returned dirty and could not be reset%s%s",
                      p->name, c->id, err[0] ? ": " : "", err);
            reason = WEIR_CLOSE_BROKEN;
        }
    }
    if (reason < 0 && p->hooks.on_checkin && p->hooks.on_checkin(p->hooks.ud, c) != 0)
        reason = WEIR_CLOSE_BROKEN;
    if (reason >= 0) {
        close_conn(p, c, reason);
        return;
    }
    park_or_slow(p, c);
}

void weir_checkin(weir_conn *c)
{
    if (UNLIKELY(!c)) return;
    weir_pool *p = c->pool;
    if (UNLIKELY(weir__forked(p))) return; /* the parent's connection: leave it alone */
    int64_t now = weir__coarse_ms();
    usage_observe(c, now - atomic_load_explicit(&c->taken_ms, memory_order_relaxed));
    atomic_store_explicit(&c->last_used_ms, now, memory_order_relaxed);
    bool dirty = p->drv->is_dirty && p->drv->is_dirty(p->ctx, c->handle);
    if (UNLIKELY(dirty || c->broken ||
                 atomic_load_explicit(&c->conn_uses, memory_order_relaxed) >= p->max_uses_eff ||
                 (c->expires_ms && now >= c->expires_ms) ||
                 c->gen != atomic_load_explicit(&p->evict_gen, memory_order_relaxed) ||
                 !p->plain_checkin)) {
        checkin_attention(p, c, now, dirty);
        return;
    }
    park_or_slow(p, c);
}

void weir_conn_mark_broken(weir_conn *c)
{
    if (c) c->broken = true;
}

void *weir_conn_handle(const weir_conn *c)
{
    return c ? c->handle : NULL;
}

weir_pool *weir_conn_pool(const weir_conn *c)
{
    return c ? c->pool : NULL;
}

int weir_conn_close_reason(const weir_conn *c)
{
    return c ? c->close_reason : -1;
}

int64_t weir_conn_idle_ms(const weir_conn *c)
{
    return weir__coarse_ms() - atomic_load_explicit(&c->last_used_ms, memory_order_relaxed);
}

/* ---- the creator --------------------------------------------------------------- */

static weir_conn *slot_reserve(weir_pool *p) /* under the lock: an EMPTY slot, now BUSY */
{
    for (int i = 0; i < p->nslots; i++)
        if (slot_state(p->slots[i]) == WEIR__EMPTY) {
            slot_set(p->slots[i], WEIR__EMPTY, WEIR__BUSY);
            return p->slots[i];
        }
    if (p->nslots == p->slots_cap) {
        int ncap = p->slots_cap ? p->slots_cap * 2 : 16;
        weir_conn **ns = realloc(p->slots, (size_t)ncap * sizeof *ns);
        if (!ns) return NULL;
        p->slots = ns;
        p->slots_cap = ncap;
    }
    weir_conn *c = aligned_alloc(WEIR__CACHELINE, sizeof(weir_conn));
    if (!c) return NULL;
    memset(c, 0, sizeof *c);
    c->pool = p;
    c->close_reason = -1;
    atomic_init(&c->state, WEIR__BUSY);
    p->slots[p->nslots++] = c;
    return c;
}

/* Open connections that may still serve: not connecting, not evicted (an
 * evicted one in use is closed when it comes back). Under the lock. */
static int usable_conns(weir_pool *p)
{
    uint32_t gen = atomic_load(&p->evict_gen);
    int n = 0;
    for (int i = 0; i < p->nslots; i++)
        if (slot_state(p->slots[i]) != WEIR__EMPTY && p->slots[i]->gen == gen) n++;
    return n;
}

static int64_t backoff_ns(weir_pool *p) /* under the lock */
{
    double ms = (double)p->o.backoff_min_ms;
    for (int i = 1; i < p->consecutive_failures && ms < (double)p->o.backoff_max_ms; i++) ms *= 2;
    if (ms > (double)p->o.backoff_max_ms) ms = (double)p->o.backoff_max_ms;
    ms *= 0.5 + 0.5 * rng_unit(p); /* equal jitter */
    return (int64_t)(ms * 1e6);
}

/* A creator waits on creator_cv (under the lock; until ts, or NULL: no
 * limit), counted as waiting so that kick_creator wakes it rather than
 * starting another. */
static int creator_wait(weir_pool *p, const struct timespec *ts)
{
    p->cr_waiting++;
    int rc = ts ? pthread_cond_timedwait(&p->creator_cv, &p->mu, ts)
                : pthread_cond_wait(&p->creator_cv, &p->mu);
    p->cr_waiting--;
    if (p->cr_signalled > 0) p->cr_signalled--;
    return rc;
}

static void *creator_main(void *arg)
{
    weir_pool *p = arg;
    pthread_setname_np(pthread_self(), "weir-connect"); /* top -H, gdb, /proc/PID/task */
    lock(p);
    p->cr_starting--;
    while (!p->stopping) {
        if (!need_create(p)) {
            p->warm_made = 0; /* nothing more to open: the next fill starts a batch */
            p->warm_pause_ns = 0;
            struct timespec ts = ts_of(weir_now_ns() + p->o.creator_idle_ms * 1000000);
            if (creator_wait(p, &ts) == ETIMEDOUT && !need_create(p)) break; /* idle: end */
            continue;
        }
        int64_t now = weir_now_ns();
        if (now < p->next_attempt_ns) {
            struct timespec ts = ts_of(p->next_attempt_ns);
            creator_wait(p, &ts);
            continue;
        }
        /* Gradual warm-up: connects nobody waits for (min_idle) go in
         * batches of warmup_batch, each finished before a pause and the
         * next, so that many pools starting at once do not storm the
         * target. A caller waiting is served at once, batch or not. */
        bool for_waiter =
            atomic_load(&p->run) == WEIR__RUNNING && atomic_load(&p->nwaiters) > p->in_flight;
        bool warm = p->o.warmup_batch > 0 && !for_waiter;
        if (warm) {
            if (p->warm_made >= p->o.warmup_batch) {
                if (p->in_flight > 0) { /* the batch is still connecting */
                    creator_wait(p, NULL);
                    continue;
                }
                if (!p->warm_pause_ns) p->warm_pause_ns = now + p->o.warmup_pause_ms * 1000000;
                if (now < p->warm_pause_ns) {
                    struct timespec ts = ts_of(p->warm_pause_ns);
                    creator_wait(p, &ts);
                    continue;
                }
                p->warm_made = 0;
                p->warm_pause_ns = 0;
            }
            p->warm_made++;
        }
        if (!limits_reserve(p)) {
            if (warm) p->warm_made--; /* not begun */
            /* A shared limit is full. With callers waiting, ask another pool
             * for an idle connection and look again soon; otherwise (min_idle
             * only) wait for a unit to come free. */
            int run = atomic_load(&p->run);
            if (run == WEIR__RUNNING && atomic_load(&p->nwaiters) > p->in_flight) {
                if (now - p->reclaim_asked_ns >= 100000000) {
                    p->reclaim_asked_ns = now;
                    unlock(p);
                    int asked = limits_reclaim(p);
                    lock(p);
                    /* Not summed over rounds: an ask whose close never
                     * came (the idle one was taken first) is not owed
                     * for ever; one round's count (one per limit) is. */
                    if (asked > p->reclaim_owed) p->reclaim_owed = asked;
                }
                struct timespec ts = ts_of(weir_now_ns() + 100000000);
                creator_wait(p, &ts);
            } else {
                creator_wait(p, NULL);
            }
            continue;
        }
        if (p->reclaim_owed > 0) p->reclaim_owed--; /* the unit is back with this pool */
        weir_conn *c = slot_reserve(p);
        if (c) c->gen = UINT32_MAX; /* connecting: counts as no usable connection yet */
        if (!c) {
            if (warm) p->warm_made--;
            limits_release(p);
            set_last_error(p, "out of memory");
            p->next_attempt_ns = now + 100000000;
            continue;
        }
        p->total++;
        p->in_flight++;
        update_over_cap(p);
        if (p->hk_sleep_until == HK_DORMANT) hk_wake(p); /* a connection to keep */
        uint64_t gen = p->retry_gen;
        unlock(p);

        char err[512] = "";
        void *h = NULL;
        int rc =
            p->drv->connect(p->ctx, now + p->o.connect_timeout_ms * 1000000, &h, err, sizeof err);
        c->handle = h;
        if (rc == 0 && p->hooks.on_create && p->hooks.on_create(p->hooks.ud, c) != 0) {
            p->drv->close(p->ctx, h);
            c->handle = NULL;
            snprintf(err, sizeof err, "on_create hook refused the connection");
            rc = WEIR_EDRIVER;
        }
        int64_t done = weir_now_ns();
        weir__waiter *fire = NULL;
        weir_conn *close_now = NULL;
        lock(p);
        p->in_flight--;
        if (p->o.warmup_batch > 0) pthread_cond_broadcast(&p->creator_cv); /* a batch may be done */
        if (rc != 0) {
            slot_set(c, WEIR__BUSY, WEIR__EMPTY);
            p->total--;
            limits_release(p);
            update_over_cap(p);
            atomic_fetch_add(&p->connect_errors_total, 1);
            set_last_error(p, err[0] ? err : weir_strerror(rc));
            /* Begun before weir_pool_retry_now: it says nothing about the
             * target as it is now; try again at once. */
            bool stale = gen != p->retry_gen;
            if (!stale) p->consecutive_failures++;
            p->next_attempt_ns = stale ? 0 : done + backoff_ns(p);
            bool trip = !stale && p->o.fail_fast &&
                        (rc == WEIR_EREFUSED || p->o.fail_fast_unreachable) && usable_conns(p) == 0;
            if (trip) {
                if (!p->down)
                    weir__log(p, WEIR_LOG_WARN, "pool %s: target down: %s", p->name, p->last_error);
                p->down = true;
                fail_all_waiters(p, WEIR_ECONNECT, &fire);
            }
        } else {
            weir__hist_observe(&p->connect_hist, done - now);
            atomic_fetch_add(&p->created_total, 1);
            if (p->down)
                weir__log(p, WEIR_LOG_WARN, "pool %s: target is back after %d failed connects",
                          p->name, p->consecutive_failures);
            p->down = false;
            p->consecutive_failures = 0;
            p->next_attempt_ns = 0;
            /* Open now, it is due no sooner than the housekeeper's longest
             * sleep from now; but the idle connections become closable
             * when this one takes the pool above min_idle. */
            if (p->hk_sleep_until == HK_DORMANT || p->total - p->in_flight == p->o.min_idle + 1)
                hk_wake(p);
            int64_t nowms = weir__coarse_ms();
            c->id = ++p->next_conn_id;
            c->gen = atomic_load(&p->evict_gen);
            c->created_ms = c->validated_ms = nowms;
            atomic_store(&c->last_used_ms, nowms);
            c->broken = false;
            atomic_store(&c->conn_uses, 0);
            c->expires_ms = 0;
            if (p->o.max_lifetime_ms > 0)
                c->expires_ms = nowms + p->o.max_lifetime_ms -
                                (int64_t)(0.05 * rng_unit(p) * (double)p->o.max_lifetime_ms);
            int run = atomic_load(&p->run);
            if (run == WEIR__DRAINING || run == WEIR__CLOSED || p->stopping) {
                close_now = c;
            } else if (run == WEIR__RUNNING && p->wq_head) {
                weir__waiter *w = p->wq_head;
                wq_remove(p, w);
                slot_set(c, WEIR__BUSY, WEIR__INUSE);
                complete(w, c, 0, false, &fire);
            } else {
                c->returned_by = NULL; /* new: no thread watches it yet */
                idle_push(p, c, WEIR__BUSY);
            }
        }
        unlock(p);
        if (rc != 0 && p->nlimits) limits_kick(p, p->limits, p->nlimits);
        if (close_now) close_conn(p, close_now, WEIR_CLOSE_EVICTED);
        if (fire) fire_async(p, fire);
        lock(p);
    }
    /* ended (idle, or the pool stops): the entry is joined by the next
     * start in it, or by weir_pool_destroy */
    p->cr_running--;
    for (int i = 0; i < p->o.creator_threads; i++)
        if (p->cr_state[i] == WEIR__CR_RUNNING && pthread_equal(p->creators[i], pthread_self())) {
            p->cr_state[i] = WEIR__CR_DONE;
            break;
        }
    unlock(p);
    return NULL;
}

/* ---- adaptive sizing ---------------------------------------------------------------- */

static int collect_idle(weir_pool *p, weir_conn **out, int64_t limit);

/* The size adaptive sizing chose (under the lock): set, counted, logged. */
static void adapt_set(weir_pool *p, int64_t next, const char *why)
{
    int64_t size = p->o.max_size;
    p->o.max_size = next;
    update_over_cap(p);
    atomic_fetch_add(next > size ? &p->ad_grows : &p->ad_shrinks, 1);
    weir__log(p, WEIR_LOG_INFO, "pool %s: adaptive size %lld -> %lld (%s)", p->name,
              (long long)size, (long long)next, why);
}

/* A grow: by half at least, to need at least, at most to the cap. */
static int64_t adapt_grown(weir_pool *p, int64_t need)
{
    int64_t size = p->o.max_size, next = size + (size / 2 > 1 ? size / 2 : 1);
    if (next < need) next = need;
    return next > p->cap ? p->cap : next;
}

/* Under the lock, on each housekeeper tick of an adaptive pool. Samples the
 * most connections in use plus callers waiting; every adaptive_period,
 * grows the size when checkouts waited (more than 5 % of them longer than
 * adaptive_wait, or a caller waiting now), and shrinks it after 3 quiet
 * periods in a row (the peak at most half the size), never within 3
 * periods of a grow: it moves up fast and down slowly, so a steady load
 * does not make it oscillate. Idle connections above a new, smaller size
 * go into close[] (*nclose). */
static void adapt(weir_pool *p, int64_t now, weir_conn **close, int *nclose, int closecap)
{
    int64_t busy = 0;
    for (int i = 0; i < p->nslots; i++)
        if (slot_state(p->slots[i]) == WEIR__INUSE) busy++;
    int64_t waiting = atomic_load(&p->nwaiters);
    if (busy + waiting > p->ad_peak) p->ad_peak = busy + waiting;
    /* callers waiting with every connection busy: grow now, not at the
     * period's end (a burst would wait a whole period otherwise) */
    char why[160];
    if (waiting > 0 && busy >= p->o.max_size && p->o.max_size < p->cap && p->ad_next_ns) {
        snprintf(why, sizeof why, "%lld in use, %lld waiting", (long long)busy, (long long)waiting);
        adapt_set(p, adapt_grown(p, busy + waiting), why);
        p->ad_quiet = 0;
        p->ad_hold = 3;
        return;
    }
    if (now < p->ad_next_ns) return;
    bool first = p->ad_next_ns == 0;
    p->ad_next_ns = now + p->o.adaptive_period_ms * 1000000;
    uint64_t total = 0, slow = 0;
    for (int b = 0; b <= WEIR__ACQ_NB; b++) {
        uint64_t c = atomic_load(&p->acquire_hist.counts[b]);
        uint64_t d = c - p->ad_seen[b];
        p->ad_seen[b] = c;
        total += d;
        /* bucket b holds waits above bounds[b - 1]: slow if that is past the target */
        if (b > 0 && weir__acq_bounds[b - 1] * 1000 >= (double)p->o.adaptive_wait_ms) slow += d;
    }
    int64_t peak = p->ad_peak;
    p->ad_peak = busy + waiting;
    if (first) return; /* the first period starts now */
    int64_t size = p->o.max_size, floor = p->o.min_idle > 1 ? p->o.min_idle : 1;
    if (p->ad_hold > 0) p->ad_hold--;
    if ((slow > 0 && slow * 20 > total) || waiting > 0) {
        p->ad_quiet = 0;
        if (size < p->cap) {
            snprintf(why, sizeof why,
                     "%llu of %llu checkouts waited over %lld ms, %lld waiting now",
                     (unsigned long long)slow, (unsigned long long)total,
                     (long long)p->o.adaptive_wait_ms, (long long)waiting);
            adapt_set(p, adapt_grown(p, peak), why);
            p->ad_hold = 3;
        }
    } else if (peak * 2 <= size && size > floor) {
        if (++p->ad_quiet >= 3 && p->ad_hold == 0) {
            int64_t next = size * 3 / 4;
            if (next < peak + 1) next = peak + 1;
            if (next < floor) next = floor;
            if (next >= size) next = size - 1;
            snprintf(why, sizeof why, "at most %lld in use in each of the last 3 periods",
                     (long long)peak);
            adapt_set(p, next, why);
            p->ad_quiet = 0;
            if (p->total > next)
                *nclose =
                    collect_idle(p, close, p->total - next < closecap ? p->total - next : closecap);
        }
    } else {
        p->ad_quiet = 0;
    }
}

/* ---- the housekeeper -------------------------------------------------------------- */

typedef struct hk_job {
    weir_conn *c;
    int action; /* close reason, or -1 = validate (keepalive) */
} hk_job;

#define HK_STACK_JOBS 64

static int collect_idle(weir_pool *p, weir_conn **out, int64_t limit);

/* Under the lock. *jobs is `stack` when it is big enough (no allocation per
 * tick for pools of up to HK_STACK_JOBS connections), else malloc'd. */
static void housekeep(weir_pool *p, hk_job *stack, hk_job **jobs, int *njobs, int64_t *due_ms)
{
    int64_t now = weir__coarse_ms();
    int64_t due = INT64_MAX; /* the earliest time a connection kept now is due for something */
    int64_t open = p->total - p->in_flight;
    uint32_t gen = atomic_load(&p->evict_gen);
    *njobs = 0;
    *due_ms = now; /* unless told otherwise: look again after housekeeping_period */
    *jobs = p->nslots <= HK_STACK_JOBS ? stack : malloc(sizeof(hk_job) * (size_t)p->nslots);
    if (!*jobs) return;
    for (int i = 0; i < p->nslots; i++) {
        weir_conn *c = p->slots[i];
        int s = slot_state(c);
        if (s == WEIR__INUSE) {
            int64_t taken = atomic_load_explicit(&c->taken_ms, memory_order_acquire);
            uint64_t uses = atomic_load_explicit(&c->uses, memory_order_relaxed);
            /* Handed over but not yet recorded by its new holder: taken_ms is
             * still the previous checkout's, older than the last checkin. */
            bool in_transit = taken < atomic_load_explicit(&c->last_used_ms, memory_order_relaxed);
            if (p->o.leak_threshold_ms > 0) {
                int64_t d =
                    in_transit ? now + p->o.leak_threshold_ms : taken + p->o.leak_threshold_ms;
                if (atomic_load(&c->leak_reported) != uses + 1 && d < due) due = d;
            }
            if (p->o.leak_threshold_ms > 0 && !in_transit &&
                now - taken >= p->o.leak_threshold_ms &&
                atomic_load(&c->leak_reported) != uses + 1) {
                atomic_store(&c->leak_reported, uses + 1);
                atomic_fetch_add(&p->leaks_total, 1);
                const char *file = atomic_load_explicit(&c->file, memory_order_relaxed);
                weir__log(p, WEIR_LOG_WARN,
                          "pool %s: possible connection leak: connection #%" PRIu64
                          " checked out at %s:%d has been held for %" PRId64
                          " ms (leak_threshold %" PRId64 " ms)",
                          p->name, c->id, file ? file : "?",
                          atomic_load_explicit(&c->line, memory_order_relaxed), now - taken,
                          p->o.leak_threshold_ms);
            }
            continue;
        }
        if (s != WEIR__IDLE && s != WEIR__PARKED) continue;
        int64_t last = atomic_load_explicit(&c->last_used_ms, memory_order_relaxed);
        int action = -2;
        if (c->gen != gen)
            action = WEIR_CLOSE_EVICTED;
        else if (c->expires_ms && now >= c->expires_ms)
            action = WEIR_CLOSE_LIFETIME;
        else if (p->o.idle_timeout_ms > 0 && now - last >= p->o.idle_timeout_ms &&
                 open > p->o.min_idle)
            action = WEIR_CLOSE_IDLE;
        else if (p->o.keepalive_ms > 0 && p->drv->validate &&
                 now - (last > c->validated_ms ? last : c->validated_ms) >= p->o.keepalive_ms)
            action = -1;
        if (action < 0) { /* kept, or validated and kept: when is it due? */
            if (c->expires_ms && c->expires_ms < due) due = c->expires_ms;
            if (p->o.idle_timeout_ms > 0 && open > p->o.min_idle &&
                last + p->o.idle_timeout_ms < due)
                due = last + p->o.idle_timeout_ms;
            int64_t v = last > c->validated_ms ? last : c->validated_ms;
            if (action == -2 && p->o.keepalive_ms > 0 && p->drv->validate &&
                v + p->o.keepalive_ms < due)
                due = v + p->o.keepalive_ms; /* (validated now: due a keepalive from now) */
        }
        if (action == -2) continue;
        if (s == WEIR__IDLE)
            idle_remove(p, c, WEIR__BUSY);
        else if (!slot_cas(c, WEIR__PARKED, WEIR__BUSY))
            continue;
        if (action >= 0) open--;
        (*jobs)[(*njobs)++] = (hk_job){c, action};
    }
    /* Another pool on a shared limit has callers waiting: give up one idle
     * connection, min_idle notwithstanding. */
    for (; p->reclaim > 0; p->reclaim--) {
        weir_conn *c;
        if (collect_idle(p, &c, 1) == 0) {
            p->reclaim = 0;
            break;
        }
        (*jobs)[(*njobs)++] = (hk_job){c, WEIR_CLOSE_EVICTED};
    }
    *due_ms = due;
}

/* How long the housekeeper may sleep after a pass (under the lock): until
 * the earliest connection is due (due_ms, coarse clock), but at least
 * housekeeping_period, and at most the shortest of idle_timeout,
 * keepalive, leak_threshold and the shortest lifetime, since a connection
 * checked in or out meanwhile is due no earlier than that from now; and
 * HK_MAX_SLEEP_MS at most. With adaptive sizing, every period. Async
 * waiters' deadlines and hk_wake wake it sooner. */
static int64_t hk_gap_ms(weir_pool *p, int64_t due_ms)
{
    int64_t period = p->o.housekeeping_ms;
    if (p->o.adaptive || p->cr_start_failed) return period; /* a controller; a start to retry */
    int64_t cap = HK_MAX_SLEEP_MS;
    int64_t t[] = {p->o.idle_timeout_ms, p->o.keepalive_ms, p->o.leak_threshold_ms,
                   p->o.max_lifetime_ms - p->o.max_lifetime_ms / 20};
    for (size_t i = 0; i < sizeof t / sizeof *t; i++)
        if (t[i] > 0 && t[i] < cap) cap = t[i];
    /* the coarse clock runs up to its resolution (4 ms) behind */
    int64_t gap = due_ms == INT64_MAX ? cap : due_ms - weir__coarse_ms() + 5;
    if (gap > cap) gap = cap;
    return gap > period ? gap : period;
}

static void *housekeeper_main(void *arg)
{
    weir_pool *p = arg;
    pthread_setname_np(pthread_self(), "weir-housekeep");
    lock(p);
    int64_t next_tick = weir_now_ns();
    while (!p->stopping) {
        /* Nothing to keep: no connection (open or opening), nobody queued,
         * nothing to open, no adaptive controller. Sleep until that
         * changes (hk_wake, an async waiter's deadline, a reclaim)
         * instead of ticking: a server with many pools that have closed
         * their connections wakes for none of them. */
        if (p->total == 0 && !p->wq_head && !p->reclaim && !p->o.adaptive && !p->cr_start_failed &&
            !need_create(p)) {
            p->hk_sleep_until = HK_DORMANT;
            pthread_cond_wait(&p->hk_cv, &p->mu);
            p->hk_sleep_until = 0;
            continue;
        }
        int64_t now = weir_now_ns();
        if (p->hk_recompute) { /* hk_wake: a pass now */
            p->hk_recompute = false;
            next_tick = now;
        }
        int64_t wake = next_tick;
        for (weir__waiter *w = p->wq_head; w; w = w->next) {
            if (!w->async) continue;
            if (w->deadline_ns < wake) wake = w->deadline_ns;
            if (!p->wq_unordered) break; /* the first is the earliest */
        }
        if (now < wake && !p->reclaim) {
            struct timespec ts = ts_of(wake);
            p->hk_sleep_until = wake;
            pthread_cond_timedwait(&p->hk_cv, &p->mu, &ts);
            p->hk_sleep_until = 0;
            continue;
        }
        weir__waiter *fire = NULL;
        for (weir__waiter *w = p->wq_head, *nx; w; w = nx) {
            nx = w->next;
            if (!w->async) continue;
            if (w->deadline_ns > now) {
                if (!p->wq_unordered) break; /* in order: none after it is due */
                continue;
            }
            wq_remove(p, w);
            atomic_fetch_add(&p->acquire_timeouts_total, 1);
            complete(w, NULL, WEIR_ETIMEDOUT, false, &fire);
        }
        if (now < next_tick && !p->reclaim) {
            unlock(p);
            fire_async(p, fire);
            lock(p);
            continue;
        }
        weir_conn *shrunk[64];
        int nshrunk = 0;
        if (p->o.adaptive) adapt(p, now, shrunk, &nshrunk, 64);
        hk_job stack[HK_STACK_JOBS], *jobs;
        int njobs;
        int64_t due_ms;
        housekeep(p, stack, &jobs, &njobs, &due_ms);
        next_tick = now + hk_gap_ms(p, due_ms) * 1000000;
        serve_waiters(p, &fire); /* belt and braces: nothing idle while someone waits */
        kick_creator(p);         /* min_idle */
        unlock(p);
        fire_async(p, fire);
        for (int i = 0; i < nshrunk; i++) close_conn(p, shrunk[i], WEIR_CLOSE_IDLE);
        for (int i = 0; jobs && i < njobs; i++) {
            weir_conn *c = jobs[i].c;
            if (jobs[i].action >= 0) {
                weir__log(p, WEIR_LOG_DEBUG, "pool %s: closing connection #%" PRIu64 " (%s)",
                          p->name, c->id, reason_names[jobs[i].action]);
                close_conn(p, c, jobs[i].action);
                continue;
            }
            char err[512] = "";
            int rc = p->drv->validate(p->ctx, c->handle,
                                      weir_now_ns() + p->o.connect_timeout_ms * 1000000, err,
                                      sizeof err);
            if (rc != 0) {
                lock(p);
                set_last_error(p, err[0] ? err : weir_strerror(rc));
                unlock(p);
                close_conn(p, c, WEIR_CLOSE_BROKEN);
                continue;
            }
            weir__waiter *f2 = NULL;
            lock(p);
            c->validated_ms = weir__coarse_ms();
            idle_push(p, c, WEIR__BUSY);
            serve_waiters(p, &f2);
            unlock(p);
            fire_async(p, f2);
        }
        if (jobs != stack) free(jobs);
        lock(p);
    }
    unlock(p);
    return NULL;
}

/* ---- lifetime ---------------------------------------------------------------------- */

int weir_pool_create(weir_pool **out, const weir_driver *drv, void *ctx, const weir_options *opts,
                     const weir_hooks *hooks)
{
    if (out) *out = NULL;
    if (!out || !drv || !drv->connect || !drv->close) {
        if (drv && drv->ctx_free) drv->ctx_free(ctx);
        return WEIR_EINVAL;
    }
    pthread_once(&once, global_init);
    weir_options o;
    if (opts)
        o = *opts;
    else
        weir_options_init(&o);
    char why[128];
    if (weir_options_check(&o, why, sizeof why) != 0) {
        char msg[192];
        snprintf(msg, sizeof msg, "invalid pool options: %s", why);
        if (hooks && hooks->on_log)
            hooks->on_log(hooks->ud, WEIR_LOG_ERROR, msg);
        else
            fprintf(stderr, "weir: %s\n", msg);
        if (drv->ctx_free) drv->ctx_free(ctx);
        return WEIR_EINVAL;
    }
    weir_pool *p = aligned_alloc(WEIR__CACHELINE, sizeof *p);
    if (!p) {
        if (drv->ctx_free) drv->ctx_free(ctx);
        return WEIR_ENOMEM;
    }
    memset(p, 0, sizeof *p);
    p->id = atomic_fetch_add(&next_pool_id, 1);
    p->fork_gen = atomic_load(&fork_gen);
    p->drv = drv;
    p->ctx = ctx;
    p->o = o;
    p->cap = o.max_size;
    if (o.adaptive) /* start at the floor; the controller grows it as load shows */
        p->o.max_size = o.min_idle > 1 ? o.min_idle : 1;
    if (hooks) p->hooks = *hooks;
    p->validate_after_eff =
        o.validate_idle_after_ms >= 0 && drv->validate ? o.validate_idle_after_ms : INT64_MAX;
    p->max_uses_eff = o.max_uses > 0 ? (uint64_t)o.max_uses : UINT64_MAX;
    p->plain_checkout = !p->hooks.on_checkout;
    p->plain_checkin = !p->hooks.on_checkin;
    p->rng = (uint64_t)weir_now_ns() ^ (p->id * 0x9E3779B97F4A7C15ULL) ^ (uintptr_t)p;
    if (!p->rng) p->rng = 1;
    if (o.name[0]) {
        weir_mask_credentials(o.name, p->name, sizeof p->name);
    } else if (drv->describe) {
        char d[WEIR_NAME_MAX];
        drv->describe(ctx, d, sizeof d);
        weir_mask_credentials(d, p->name, sizeof p->name);
    } else {
        snprintf(p->name, sizeof p->name, "%s", drv->name ? drv->name : "pool");
    }
    /* Adaptive: a thread that finds the lock taken spins briefly before it
     * sleeps; the sections it guards are short (docs/ARCHITECTURE.md). */
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
#if defined(__GLIBC__)
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
#endif
    pthread_mutex_init(&p->mu, &ma);
    pthread_mutexattr_destroy(&ma);
    pthread_condattr_init(&p->cattr);
    pthread_condattr_setclock(&p->cattr, CLOCK_MONOTONIC);
    pthread_cond_init(&p->creator_cv, &p->cattr);
    pthread_cond_init(&p->hk_cv, &p->cattr);
    p->wq_last_deadline = INT64_MIN;
    pthread_cond_init(&p->drain_cv, &p->cattr);
    /* the creators start as connects are needed (kick_creator) */
    p->creators = calloc((size_t)o.creator_threads, sizeof(pthread_t));
    p->cr_state = calloc((size_t)o.creator_threads, 1);
    int rc = p->creators && p->cr_state ? 0 : WEIR_ENOMEM;
    if (rc == 0) {
        if (thread_start(&p->housekeeper, housekeeper_main, p) != 0)
            rc = WEIR_ENOMEM;
        else
            p->hk_started = true;
    }
    if (rc != 0) {
        weir_pool_destroy(p);
        return rc;
    }
    lock(p);
    kick_creator(p);
    unlock(p);
    *out = p;
    return 0;
}

/* Close what is idle now; true when nothing is out or connecting. Under the lock. */
static bool drain_step(weir_pool *p, weir_conn ***closing, int *n)
{
    *n = 0;
    *closing = malloc(sizeof(weir_conn *) * (size_t)(p->nslots ? p->nslots : 1));
    bool busy = p->in_flight > 0;
    for (int i = 0; i < p->nslots; i++) {
        weir_conn *c = p->slots[i];
        int s = slot_state(c);
        if (s == WEIR__IDLE && *closing) {
            idle_remove(p, c, WEIR__BUSY);
            (*closing)[(*n)++] = c;
        } else if (s == WEIR__PARKED && *closing && slot_cas(c, WEIR__PARKED, WEIR__BUSY)) {
            (*closing)[(*n)++] = c;
        } else if (s != WEIR__EMPTY) {
            busy = true;
        }
    }
    return !busy && *n == 0;
}

int weir_pool_drain(weir_pool *p, int64_t timeout_ms)
{
    if (!p) return WEIR_EINVAL;
    if (weir__forked(p)) return WEIR_EFORK;
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : weir_now_ns() + timeout_ms * 1000000;
    weir__waiter *fire = NULL;
    lock(p);
    int run = atomic_load(&p->run);
    if (run != WEIR__CLOSED) atomic_store(&p->run, WEIR__DRAINING);
    fail_all_waiters(p, WEIR_ECLOSED, &fire);
    unlock(p);
    fire_async(p, fire);
    int rc = 0;
    lock(p);
    for (;;) {
        weir_conn **closing;
        int n;
        bool done = drain_step(p, &closing, &n);
        if (n) {
            unlock(p);
            for (int i = 0; i < n; i++) close_conn(p, closing[i], WEIR_CLOSE_IDLE);
            free(closing);
            lock(p);
            continue;
        }
        free(closing);
        if (done) break;
        int64_t now = weir_now_ns();
        if (now >= deadline) {
            rc = WEIR_ETIMEDOUT;
            break;
        }
        /* fast checkins park without signalling: look again every 5 ms */
        int64_t wake = now + 5000000 < deadline ? now + 5000000 : deadline;
        struct timespec ts = ts_of(wake);
        pthread_cond_timedwait(&p->drain_cv, &p->mu, &ts);
    }
    if (rc == 0) atomic_store(&p->run, WEIR__CLOSED);
    unlock(p);
    return rc;
}

void weir_pool_destroy(weir_pool *p)
{
    if (!p) return;
    if (weir__forked(p)) return; /* the parent owns these connections and threads */
    int rc = weir_pool_drain(p, -1);
    (void)rc;
    lock(p);
    p->stopping = true; /* no creator starts from now on */
    pthread_cond_broadcast(&p->creator_cv);
    pthread_cond_broadcast(&p->hk_cv);
    pthread_t join[WEIR__CREATORS_MAX];
    int njoin = 0;
    for (int i = 0; p->cr_state && i < p->o.creator_threads; i++)
        if (p->cr_state[i] != WEIR__CR_FREE) join[njoin++] = p->creators[i];
    unlock(p);
    for (int i = 0; i < njoin; i++) pthread_join(join[i], NULL);
    if (p->hk_started) pthread_join(p->housekeeper, NULL);
    /* a creator may have opened one more connection while stopping */
    for (int i = 0; i < p->nslots; i++) {
        weir_conn *c = p->slots[i];
        if (slot_state(c) != WEIR__EMPTY && c->handle) p->drv->close(p->ctx, c->handle);
        free(c);
    }
    for (int i = 0; i < p->nlimits; i++) {
        weir_limit *l = p->limits[i];
        pthread_mutex_lock(&l->mu);
        atomic_fetch_sub(&l->used, p->total);
        for (int j = 0; j < l->npools; j++)
            if (l->pools[j] == p) {
                l->pools[j] = l->pools[--l->npools];
                break;
            }
        pthread_mutex_unlock(&l->mu);
    }
    for (size_t i = 0; i < TL_WAYS; i++)
        if (tl_cache[i].pool_id == p->id) tl_cache[i] = (tl_entry){0, NULL};
    free(p->slots);
    free(p->reqs);
    free(p->creators);
    free(p->cr_state);
    pthread_cond_destroy(&p->creator_cv);
    pthread_cond_destroy(&p->hk_cv);
    pthread_cond_destroy(&p->drain_cv);
    pthread_condattr_destroy(&p->cattr);
    pthread_mutex_destroy(&p->mu);
    if (p->drv->ctx_free) p->drv->ctx_free(p->ctx);
    free(p);
}

/* ---- operations ---------------------------------------------------------------------- */

int weir_pool_pause(weir_pool *p)
{
    if (!p) return WEIR_EINVAL;
    if (weir__forked(p)) return WEIR_EFORK;
    lock(p);
    int run = atomic_load(&p->run);
    int rc = run_error(run);
    if (run == WEIR__RUNNING) atomic_store(&p->run, WEIR__PAUSED);
    unlock(p);
    return rc;
}

int weir_pool_resume(weir_pool *p)
{
    if (!p) return WEIR_EINVAL;
    if (weir__forked(p)) return WEIR_EFORK;
    weir__waiter *fire = NULL;
    lock(p);
    int run = atomic_load(&p->run);
    int rc = run_error(run);
    if (run == WEIR__PAUSED) {
        atomic_store(&p->run, WEIR__RUNNING);
        serve_waiters(p, &fire);
        kick_creator(p);
    }
    unlock(p);
    fire_async(p, fire);
    return rc;
}

/* Take every idle connection (for resize and evict); under the lock. */
static int collect_idle(weir_pool *p, weir_conn **out, int64_t limit)
{
    int n = 0;
    while (n < limit && p->idle_head) {
        weir_conn *c = p->idle_head;
        idle_remove(p, c, WEIR__BUSY);
        out[n++] = c;
    }
    for (int i = 0; i < p->nslots && n < limit; i++)
        if (slot_state(p->slots[i]) == WEIR__PARKED &&
            slot_cas(p->slots[i], WEIR__PARKED, WEIR__BUSY))
            out[n++] = p->slots[i];
    return n;
}

int weir_pool_set_adaptive(weir_pool *p, bool on, int64_t wait_ms, int64_t period_ms)
{
    if (!p) return WEIR_EINVAL;
    if (weir__forked(p)) return WEIR_EFORK;
    weir__waiter *fire = NULL;
    lock(p);
    if (wait_ms > 0) p->o.adaptive_wait_ms = wait_ms;
    if (period_ms > 0) p->o.adaptive_period_ms = period_ms;
    if (on == p->o.adaptive) { /* a reload that changed nothing here */
        unlock(p);
        return 0;
    }
    p->o.adaptive = on;
    p->ad_next_ns = 0; /* a fresh first period */
    p->ad_peak = 0;
    p->ad_quiet = p->ad_hold = 0;
    if (!on && p->o.max_size != p->cap) {
        p->o.max_size = p->cap;
        update_over_cap(p);
    }
    weir__log(p, WEIR_LOG_INFO, "pool %s: adaptive sizing %s (size %lld, cap %lld)", p->name,
              on ? "on" : "off", (long long)p->o.max_size, (long long)p->cap);
    serve_waiters(p, &fire); /* off: the size grew to the cap */
    kick_creator(p);
    hk_wake(p); /* on: the controller runs on its ticks */
    unlock(p);
    fire_async(p, fire);
    return 0;
}

int weir_pool_resize(weir_pool *p, int64_t max_size, int64_t min_idle)
{
    if (!p || max_size < 1) return WEIR_EINVAL;
    if (weir__forked(p)) return WEIR_EFORK;
    weir__waiter *fire = NULL;
    lock(p);
    if (min_idle < 0) min_idle = p->o.min_idle;
    if (min_idle > max_size) {
        unlock(p);
        return WEIR_EINVAL;
    }
    p->cap = max_size;
    if (p->o.adaptive) { /* the chosen size stays, within the new bounds */
        int64_t floor = min_idle > 1 ? min_idle : 1;
        if (p->o.max_size > max_size) p->o.max_size = max_size;
        if (p->o.max_size < floor) p->o.max_size = floor;
        max_size = p->o.max_size;
    }
    p->o.max_size = max_size;
    p->o.min_idle = min_idle;
    update_over_cap(p);
    weir_conn **closing = malloc(sizeof(weir_conn *) * (size_t)(p->nslots ? p->nslots : 1));
    int n = 0;
    if (closing && p->total > max_size) n = collect_idle(p, closing, p->total - max_size);
    serve_waiters(p, &fire);
    kick_creator(p);
    hk_wake(p); /* min_idle moved: which idle connections may time out */
    unlock(p);
    for (int i = 0; i < n; i++) close_conn(p, closing[i], WEIR_CLOSE_IDLE);
    free(closing);
    fire_async(p, fire);
    return 0;
}

int weir_pool_evict_all(weir_pool *p)
{
    if (!p) return WEIR_EINVAL;
    if (weir__forked(p)) return WEIR_EFORK;
    lock(p);
    atomic_fetch_add(&p->evict_gen, 1);
    weir_conn **closing = malloc(sizeof(weir_conn *) * (size_t)(p->nslots ? p->nslots : 1));
    int n = closing ? collect_idle(p, closing, p->nslots) : 0;
    hk_wake(p); /* for one parked again just before the eviction */
    unlock(p);
    for (int i = 0; i < n; i++) close_conn(p, closing[i], WEIR_CLOSE_EVICTED);
    free(closing);
    return n;
}

int weir_pool_retry_now(weir_pool *p)
{
    if (!p) return WEIR_EINVAL;
    if (weir__forked(p)) return WEIR_EFORK;
    lock(p);
    p->retry_gen++;
    if (p->down || p->consecutive_failures) {
        p->down = false;
        p->consecutive_failures = 0;
        p->next_attempt_ns = 0;
        kick_creator(p);
    }
    unlock(p);
    return 0;
}

int weir_limit_create(weir_limit **out, int64_t max)
{
    if (!out) return WEIR_EINVAL;
    *out = NULL;
    if (max < 1) return WEIR_EINVAL;
    weir_limit *l = calloc(1, sizeof *l);
    if (!l) return WEIR_ENOMEM;
    atomic_init(&l->used, 0);
    atomic_init(&l->max, max);
    pthread_mutex_init(&l->mu, NULL);
    *out = l;
    return 0;
}

void weir_limit_destroy(weir_limit *l)
{
    if (!l) return;
    pthread_mutex_destroy(&l->mu);
    free(l->pools);
    free(l);
}

int weir_limit_set_max(weir_limit *l, int64_t max)
{
    if (!l || max < 1) return WEIR_EINVAL;
    atomic_store(&l->max, max);
    limits_kick(NULL, &l, 1);
    return 0;
}

int64_t weir_limit_used(const weir_limit *l)
{
    return l ? atomic_load(&((weir_limit *)l)->used) : 0;
}

int64_t weir_limit_max(const weir_limit *l)
{
    return l ? atomic_load(&((weir_limit *)l)->max) : 0;
}

int weir_pool_attach_limit(weir_pool *p, weir_limit *l)
{
    if (!p || !l) return WEIR_EINVAL;
    pthread_mutex_lock(&l->mu);
    for (int j = 0; j < l->npools; j++)
        if (l->pools[j] == p) {
            pthread_mutex_unlock(&l->mu);
            return 0;
        }
    if (l->npools == l->cap) {
        int ncap = l->cap ? l->cap * 2 : 8;
        weir_pool **np = realloc(l->pools, (size_t)ncap * sizeof *np);
        if (!np) {
            pthread_mutex_unlock(&l->mu);
            return WEIR_ENOMEM;
        }
        l->pools = np;
        l->cap = ncap;
    }
    lock(p);
    if (p->nlimits == WEIR_MAX_LIMITS) {
        unlock(p);
        pthread_mutex_unlock(&l->mu);
        return WEIR_EBUSY;
    }
    p->limits[p->nlimits] = l;
    atomic_fetch_add(&p->nlimits, 1);
    atomic_fetch_add(&l->used, p->total);
    unlock(p);
    l->pools[l->npools++] = p;
    pthread_mutex_unlock(&l->mu);
    return 0;
}

size_t weir_pool_last_error(weir_pool *p, char *buf, size_t len)
{
    if (!p || !buf || !len) return 0;
    lock(p);
    snprintf(buf, len, "%s", p->last_error);
    unlock(p);
    return strlen(buf);
}

const char *weir_pool_name(const weir_pool *p)
{
    return p ? p->name : "";
}

/* ---- statistics -------------------------------------------------------------------- */

int weir_pool_stats_get(weir_pool *p, weir_pool_stats *st)
{
    if (!p || !st) return WEIR_EINVAL;
    if (weir__forked(p)) return WEIR_EFORK;
    memset(st, 0, sizeof *st);
    lock(p);
    for (int i = 0; i < p->nslots; i++) {
        weir_conn *c = p->slots[i];
        int s = slot_state(c);
        if (s == WEIR__IDLE || s == WEIR__PARKED)
            st->idle++;
        else if (s == WEIR__INUSE)
            st->active++;
        st->acquires_total += (int64_t)atomic_load_explicit(&c->uses, memory_order_relaxed);
    }
    st->total = p->total - p->in_flight;
    st->pending = p->in_flight;
    st->waiters = atomic_load(&p->nwaiters);
    st->max_size = p->o.max_size;
    st->cap = p->cap;
    st->paused = atomic_load(&p->run) == WEIR__PAUSED;
    st->target_down = p->down;
    st->failing = p->consecutive_failures > 0;
    if (p->wq_head) st->oldest_wait_us = (weir_now_ns() - p->wq_head->start_ns) / 1000;
    st->handoffs_total = p->handoffs[0] + p->handoffs[1];
    st->handoffs_other_thread_total = p->handoffs[1];
    unlock(p);
    st->acquire_timeouts_total = atomic_load(&p->acquire_timeouts_total);
    st->shed_total = atomic_load(&p->shed_total);
    st->created_total = atomic_load(&p->created_total);
    st->connect_errors_total = atomic_load(&p->connect_errors_total);
    for (int r = 0; r < WEIR_CLOSE_REASONS; r++)
        st->closed_total[r] = atomic_load(&p->closed_total[r]);
    st->leaks_total = atomic_load(&p->leaks_total);
    st->adaptive_grows_total = atomic_load(&p->ad_grows);
    st->adaptive_shrinks_total = atomic_load(&p->ad_shrinks);
    return 0;
}

int weir_pool_foreach_conn(weir_pool *p, void (*fn)(const weir_conn_info *, void *), void *ud)
{
    if (!p || !fn) return WEIR_EINVAL;
    if (weir__forked(p)) return WEIR_EFORK;
    int n = 0;
    lock(p);
    for (int i = 0; i < p->nslots; i++) {
        weir_conn *c = p->slots[i];
        int s = slot_state(c);
        if (s == WEIR__EMPTY || (s == WEIR__BUSY && !c->id)) continue;
        bool active = s == WEIR__INUSE;
        weir_conn_info ci = {
            .id = c->id,
            .state = s == WEIR__PARKED ? "idle" : state_name(s),
            .created_ms = c->created_ms,
            .last_used_ms = atomic_load_explicit(&c->last_used_ms, memory_order_relaxed),
            .taken_ms = active ? atomic_load_explicit(&c->taken_ms, memory_order_relaxed) : 0,
            .expires_ms = c->expires_ms,
            .uses = atomic_load_explicit(&c->conn_uses, memory_order_relaxed),
            .file = active ? atomic_load_explicit(&c->file, memory_order_relaxed) : NULL,
            .line = active ? atomic_load_explicit(&c->line, memory_order_relaxed) : 0,
            .handle = c->handle,
        };
        fn(&ci, ud);
        n++;
    }
    unlock(p);
    return n;
}

const weir_driver *weir_pool_driver(const weir_pool *p)
{
    return p ? p->drv : NULL;
}

void *weir_pool_driver_ctx(const weir_pool *p)
{
    return p ? p->ctx : NULL;
}
