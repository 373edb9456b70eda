/* loops.c — event loops sharing one saturated pool: weir's server pattern
 * without the network.
 *
 * T threads each run a loop over its own clients; together they have many
 * more clients than the pool has connections, so nearly every checkout
 * queues (weir_checkout_async) and nearly every checkin hands its connection
 * to a waiter. A completion goes to the waiter's own loop through a locked
 * queue and an eventfd, as weir's workers do (src/server/core/worker.c). A
 * client that gets a connection gives it straight back and asks again: the
 * figure is the engine's hand-off alone, the cost that bounds the server
 * when clients outnumber server connections.
 *
 * Side by side in one run: the same loops with the pool split into T
 * private pools, one per loop and no lock (what T PgBouncer processes on
 * one port amount to; the floor for sharing), whose hand-offs go through
 * the same completion queue. Reported: hand-offs per second, the ratio, and
 * the share of hand-offs that crossed threads.
 *
 * Then the same with each connection held for a while (a query's time):
 * the pool, not the hand-off, bounds the rate, and every client waits
 * longer than the engine's 5 ms locality window, which is the regime of a
 * server at 1000 clients. There the figure to watch is the share of
 * hand-offs that cross threads (each one a wake-up of another loop, the
 * connection unused meanwhile), and the rate against the partitioned
 * floor's.
 *
 *   loops [--quick] [--seconds S] [--reps N]
 *
 * Prints `RESULT loops ...` and `RESULT loops_held ...` lines.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "weir/weir.h"
#include "weir_fake.h"

#include "bench.h"

typedef struct loop loop;
typedef struct client {
    loop *l;
    weir_conn *conn;
    uint64_t req;
    int64_t due; /* with a hold: when it gives its connection back */
    bool pending;
    struct client *next;
} client;

struct loop {
    weir_pool *pool;
    pthread_mutex_t qmu; /* completions from any thread */
    client *qhead, **qtail;
    int efd;
    client *rhead, **rtail; /* this loop's clients holding a connection */
    client *clients;
    int nclients;
    /* the partitioned floor: this loop's own connections and waiters */
    int nfree;
    client *whead, **wtail;
    long handoffs, cross, errors;
    int64_t hold_ns; /* how long a client keeps its connection; 0: not at all */
    _Atomic bool *stop;
    pthread_barrier_t *go;
    bool shared;
};

static _Thread_local loop *cur_loop;

static void ready_push(loop *l, client *c)
{
    /* pushed in time order, so the list stays sorted by due */
    if (l->hold_ns) c->due = weir_now_ns() + l->hold_ns;
    c->next = NULL;
    *l->rtail = c;
    l->rtail = &c->next;
}

static void post(loop *l, client *c)
{
    c->next = NULL;
    pthread_mutex_lock(&l->qmu);
    bool was_empty = !l->qhead;
    *l->qtail = c;
    l->qtail = &c->next;
    pthread_mutex_unlock(&l->qmu);
    if (cur_loop == l) return; /* drained on this pass */
    if (cur_loop) cur_loop->cross++;
    uint64_t one = 1;
    if (was_empty) (void)!write(l->efd, &one, sizeof one);
}

static void on_conn(weir_conn *conn, int status, void *ud)
{
    client *c = ud;
    (void)status; /* no connection: drain() counts the error */
    c->conn = conn;
    post(c->l, c);
}

static void request(loop *l, client *c)
{
    if (!l->shared) {
        if (l->nfree > 0) {
            l->nfree--;
            c->conn = (weir_conn *)c; /* a token */
            ready_push(l, c);
        } else {
            c->next = NULL;
            *l->wtail = c;
            l->wtail = &c->next;
        }
        return;
    }
    weir_conn *now = NULL;
    c->pending = true;
    int rc = weir_checkout_async(l->pool, 5000, on_conn, c, &now, &c->req);
    if (rc == WEIR_PENDING) return;
    c->pending = false;
    if (rc != 0) {
        l->errors++;
        return;
    }
    c->conn = now;
    ready_push(l, c);
}

static void give_back(loop *l, client *c)
{
    if (!l->shared) {
        client *w = l->whead;
        c->conn = NULL;
        if (w) {
            l->whead = w->next;
            if (!l->whead) l->wtail = &l->whead;
            w->conn = (weir_conn *)w;
            post(l, w); /* the same completion path as weir's local hand-off */
        } else {
            l->nfree++;
        }
        return;
    }
    weir_conn *conn = c->conn;
    c->conn = NULL;
    weir_checkin(conn);
}

/* Move completions to the ready list; true if there were any. */
static bool drain(loop *l)
{
    pthread_mutex_lock(&l->qmu);
    client *c = l->qhead;
    l->qhead = NULL;
    l->qtail = &l->qhead;
    pthread_mutex_unlock(&l->qmu);
    bool any = c != NULL;
    while (c) {
        client *n = c->next;
        c->pending = false;
        if (c->conn) {
            ready_push(l, c);
        } else {
            l->errors++;
            request(l, c); /* ask again */
        }
        c = n;
    }
    return any;
}

static void *loop_main(void *arg)
{
    loop *l = arg;
    cur_loop = l;
    pthread_barrier_wait(l->go);
    for (int i = 0; i < l->nclients; i++) request(l, &l->clients[i]);
    while (!atomic_load_explicit(l->stop, memory_order_relaxed)) {
        drain(l);
        int64_t now = l->hold_ns ? weir_now_ns() : 0;
        if (!l->rhead || l->rhead->due > now) { /* nothing to give back yet */
            int64_t ns = l->rhead ? l->rhead->due - now : 10000000;
            struct timespec ts = {0, ns};
            struct pollfd pf = {.fd = l->efd, .events = POLLIN};
            if (ppoll(&pf, 1, &ts, NULL) > 0) {
                uint64_t v;
                (void)!read(l->efd, &v, sizeof v);
            }
            continue;
        }
        /* this pass's batch: the clients due by now (all of them without a
         * hold); hand-offs to this loop join the next */
        client *c = l->rhead, **end = &l->rhead;
        while (*end && (*end)->due <= now) end = &(*end)->next;
        l->rhead = *end;
        *end = NULL;
        if (!l->rhead) l->rtail = &l->rhead;
        while (c) {
            client *n = c->next;
            give_back(l, c);
            l->handoffs++;
            request(l, c);
            c = n;
        }
    }
    if (!l->shared) return NULL;
    /* Wind down: cancel what still waits. Each pending checkout ends in one
     * completion on the queue: cancelled (no connection) or served. */
    int outstanding = 0;
    for (int i = 0; i < l->nclients; i++) {
        client *c = &l->clients[i];
        if (!c->pending) continue;
        outstanding++;
        (void)weir_checkout_cancel(l->pool, c->req);
    }
    for (;;) {
        for (client *c = l->rhead; c; c = c->next) {
            weir_checkin(c->conn);
            c->conn = NULL;
        }
        l->rhead = NULL;
        l->rtail = &l->rhead;
        pthread_mutex_lock(&l->qmu);
        client *c = l->qhead;
        l->qhead = NULL;
        l->qtail = &l->qhead;
        pthread_mutex_unlock(&l->qmu);
        while (c) {
            client *n = c->next;
            if (c->conn) ready_push(l, c);
            outstanding--;
            c = n;
        }
        if (!l->rhead && outstanding <= 0) break;
        if (!l->rhead) {
            struct pollfd pf = {.fd = l->efd, .events = POLLIN};
            if (poll(&pf, 1, 10) > 0) {
                uint64_t v;
                (void)!read(l->efd, &v, sizeof v);
            }
        }
    }
    return NULL;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* One timed run: hand-offs per second; *cross_share: those that crossed threads. */
static double measure(bool shared, int threads, int pool_size, int clients_per_loop,
                      int64_t hold_ns, double seconds, double *cross_share)
{
    weir_fake *fk = NULL;
    weir_pool *pool = shared ? bench_fake_pool(pool_size, &fk) : NULL;
    _Atomic bool stop = false;
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, (unsigned)threads + 1);
    loop *ls = calloc((size_t)threads, sizeof *ls);
    pthread_t *th = calloc((size_t)threads, sizeof *th);
    for (int i = 0; i < threads; i++) {
        loop *l = &ls[i];
        l->pool = pool;
        l->shared = shared;
        pthread_mutex_init(&l->qmu, NULL);
        l->qtail = &l->qhead;
        l->rtail = &l->rhead;
        l->wtail = &l->whead;
        l->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        l->nclients = clients_per_loop;
        l->hold_ns = hold_ns;
        l->clients = calloc((size_t)clients_per_loop, sizeof(client));
        for (int k = 0; k < clients_per_loop; k++) l->clients[k].l = l;
        l->nfree = pool_size / threads + (i < pool_size % threads);
        l->stop = &stop;
        l->go = &go;
        if (l->efd < 0 || !l->clients) abort();
        pthread_create(&th[i], NULL, loop_main, l);
    }
    pthread_barrier_wait(&go);
    int64_t t0 = weir_now_ns();
    sleep_s(seconds);
    atomic_store(&stop, true);
    double el = (double)(weir_now_ns() - t0) / 1e9;
    long total = 0, cross = 0, errors = 0;
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < threads; i++) {
        total += ls[i].handoffs;
        cross += ls[i].cross;
        errors += ls[i].errors;
        close(ls[i].efd);
        pthread_mutex_destroy(&ls[i].qmu);
        free(ls[i].clients);
    }
    if (errors) fprintf(stderr, "loops: %ld checkout errors\n", errors);
    pthread_barrier_destroy(&go);
    free(ls);
    free(th);
    if (shared) {
        weir_pool_destroy(pool);
        weir_fake_free(fk);
    }
    if (cross_share) *cross_share = total ? (double)cross / (double)total : 0;
    return (double)total / el;
}

int main(int argc, char **argv)
{
    double secs = 1.0;
    int reps = 5;
    if (!bench_args(argc, argv, "loops", 0.3, &secs, &reps)) return 2;
    const int pool_size = 16;
    const int threads[] = {1, 2, 4};
    const int clients_total[] = {64, 512};
    for (size_t ci = 0; ci < 2; ci++)
        for (size_t ti = 0; ti < 3; ti++) {
            int t = threads[ti], per = clients_total[ci] / t;
            double w[20], f[20], x[20];
            for (int k = 0; k < reps; k++) { /* interleaved: both see the same noise */
                w[k] = measure(true, t, pool_size, per, 0, secs, &x[k]);
                f[k] = measure(false, t, pool_size, per, 0, secs, NULL);
            }
            double mw = bench_median(w, reps), mf = bench_median(f, reps);
            double mx = bench_median(x, reps);
            printf("RESULT loops threads=%d pool=%d clients=%d weir_handoffs_per_s=%.0f "
                   "partitioned_per_s=%.0f ratio_vs_partitioned=%.2f cross_thread_share=%.3f "
                   "weir_ns_per_handoff=%.1f reps=%d\n",
                   t, pool_size, per * t, mw, mf, mw / mf, mx, 1e9 * t / mw, reps);
            fflush(stdout);
        }
    /* Held: 512 clients, 16 connections held 500 us each: at most 32 000
     * hand-offs a second, so each client waits about 16 ms. */
    const int64_t hold_us = 500;
    for (size_t ti = 1; ti < 3; ti++) {
        int t = threads[ti], per = 512 / t;
        double w[20], f[20], x[20];
        for (int k = 0; k < reps; k++) {
            w[k] = measure(true, t, pool_size, per, hold_us * 1000, secs, &x[k]);
            f[k] = measure(false, t, pool_size, per, hold_us * 1000, secs, NULL);
        }
        double mw = bench_median(w, reps), mf = bench_median(f, reps);
        double mx = bench_median(x, reps);
        printf("RESULT loops_held threads=%d pool=%d clients=%d hold_us=%lld "
               "weir_handoffs_per_s=%.0f partitioned_per_s=%.0f ratio_vs_partitioned=%.2f "
               "cross_thread_share=%.4f wait_ms=%.1f reps=%d\n",
               t, pool_size, per * t, (long long)hold_us, mw, mf, mw / mf, mx,
               mw > 0 ? 1000.0 * per * t / mw : 0, reps);
        fflush(stdout);
    }
    return 0;
}
