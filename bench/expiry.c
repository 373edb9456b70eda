/* expiry.c — what it costs the engine when many waiting checkouts time out.
 *
 * One connection, held for the whole run; N asynchronous checkouts queued
 * behind it over SPREAD ms, each with the same timeout, so that they
 * expire one after another over the next SPREAD ms, as clients queued
 * behind a stalled database do. Two cases side by side in one run:
 *   ordered  the deadlines grow along the queue: the housekeeper looks at
 *            the queue's head only (pool.c, wq_order);
 *   walked   one checkout with a longer timeout queued first, so the
 *            deadlines are out of order and the housekeeper walks every
 *            waiter at each wake-up, as it did for all queues before.
 * Reported: the process's CPU while the waiters expire (the housekeeper,
 * and the callbacks, which only count), and how late the timeouts fired.
 *
 *   expiry [--quick] [--seconds SPREAD_S] [--reps N]
 *
 *   RESULT expiry case=ordered waiters=N cpu_ms=... late_p50_ms=... late_max_ms=...
 *   RESULT expiry_ratio walked_vs_ordered cpu=...
 *
 * And N queued checkouts cancelled (as by clients that leave while they
 * wait), in the order they came and shuffled: a cancel that walked the
 * queue for its waiter took time growing with the queue, unless the waiter
 * was at its head; one that finds it in the pool's table of requests takes
 * the same time in either order.
 *
 *   RESULT expiry case=cancel order=arrival|shuffled waiters=N ms=...
 *   RESULT expiry_ratio cancel_shuffled_vs_arrival time=...
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "weir/weir.h"
#include "weir_fake.h"

#include "bench.h"

typedef struct slot {
    int64_t deadline_ns, fired_ns;
} slot;

static _Atomic int nfired;

static void on_done(weir_conn *c, int status, void *ud)
{
    (void)c;
    (void)status;
    ((slot *)ud)->fired_ns = weir_now_ns();
    atomic_fetch_add(&nfired, 1);
}

static double cpu_s(void)
{
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (double)r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 + (double)r.ru_stime.tv_sec +
           r.ru_stime.tv_usec / 1e6;
}

/* A pool of one connection of the fake driver, that connection held
 * (*held), so that every checkout after it waits. */
static weir_pool *pool_of_one_held(weir_fake **fk, weir_conn **held)
{
    *fk = weir_fake_new();
    weir_options o;
    weir_options_init(&o);
    o.max_size = 1;
    weir_pool *pool = NULL;
    if (!*fk || weir_pool_create(&pool, weir_fake_driver(), *fk, &o, NULL) != 0) abort();
    if (weir_checkout(pool, held) != 0) abort();
    return pool;
}

static void pool_close(weir_pool *pool, weir_fake *fk, weir_conn *held)
{
    weir_checkin(held);
    weir_pool_destroy(pool);
    weir_fake_free(fk);
}

/* One case: cpu ms while the n waiters expire, and their lateness. */
static void run_case(bool walked, int n, int spread_ms, double *cpu_ms, double *p50, double *max)
{
    weir_fake *fk;
    weir_conn *held;
    weir_pool *pool = pool_of_one_held(&fk, &held);
    int64_t timeout_ms = spread_ms + 300; /* the first expires after the last is queued */
    slot *s = calloc((size_t)n + 1, sizeof *s);
    if (!s) abort();
    atomic_store(&nfired, 0);
    weir_conn *now;
    uint64_t req, long_req = 0;
    if (walked && weir_checkout_async(pool, timeout_ms + spread_ms + 60000, on_done, &s[n], &now,
                                      &long_req) != WEIR_PENDING)
        abort();
    int64_t t0 = weir_now_ns();
    for (int i = 0; i < n; i++) {
        int64_t due = t0 + (int64_t)spread_ms * 1000000 * i / n;
        while (weir_now_ns() < due) usleep(100);
        s[i].deadline_ns = weir_now_ns() + timeout_ms * 1000000;
        if (weir_checkout_async(pool, timeout_ms, on_done, &s[i], &now, &req) != WEIR_PENDING)
            abort();
    }
    double c0 = cpu_s();
    while (atomic_load(&nfired) < n) usleep(2000);
    *cpu_ms = (cpu_s() - c0) * 1000;
    if (walked) weir_checkout_cancel(pool, long_req);
    double *late = malloc((size_t)n * sizeof *late);
    if (!late) abort();
    for (int i = 0; i < n; i++) late[i] = (double)(s[i].fired_ns - s[i].deadline_ns) / 1e6;
    *p50 = bench_median(late, n); /* sorts late */
    *max = late[n - 1];
    free(late);
    free(s);
    pool_close(pool, fk, held);
}

static void on_cancel(weir_conn *c, int status, void *ud)
{
    (void)c;
    (void)status;
    (void)ud;
}

/* ms to cancel n queued checkouts, in the order they came or shuffled (as
 * clients that leave while they wait: a closing application, a network cut). */
static double cancel_case(bool shuffled, int n)
{
    weir_fake *fk;
    weir_conn *held, *now;
    weir_pool *pool = pool_of_one_held(&fk, &held);
    uint64_t *req = malloc((size_t)n * sizeof *req);
    if (!req) abort();
    for (int i = 0; i < n; i++)
        if (weir_checkout_async(pool, 600000, on_cancel, NULL, &now, &req[i]) != WEIR_PENDING)
            abort();
    uint64_t x = 88172645463325252ULL; /* xorshift: the same order every run */
    for (int i = n - 1; shuffled && i > 0; i--) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int j = (int)(x % (uint64_t)(i + 1));
        uint64_t t = req[i];
        req[i] = req[j];
        req[j] = t;
    }
    int64_t t0 = weir_now_ns();
    for (int i = 0; i < n; i++)
        if (weir_checkout_cancel(pool, req[i]) != 0) abort();
    double ms = (double)(weir_now_ns() - t0) / 1e6;
    free(req);
    pool_close(pool, fk, held);
    return ms;
}

int main(int argc, char **argv)
{
    double secs = 2;
    int reps = 3;
    if (!bench_args(argc, argv, "expiry", 0.5, &secs, &reps)) return 2;
    int spread_ms = (int)(secs * 1000);
    if (spread_ms < 100) spread_ms = 100;
    int n = spread_ms * 10; /* ten a millisecond: 20 000 over 2 s */
    double cpu[2][20], p50[2][20], mx[2][20];
    for (int r = 0; r < reps; r++)
        for (int k = 0; k < 2; k++)
            run_case(k == 1, n, spread_ms, &cpu[k][r], &p50[k][r], &mx[k][r]);
    const char *name[2] = {"ordered", "walked"};
    double med[2];
    for (int k = 0; k < 2; k++) {
        med[k] = bench_median(cpu[k], reps);
        printf("RESULT expiry case=%s waiters=%d spread_ms=%d cpu_ms=%.1f late_p50_ms=%.2f "
               "late_max_ms=%.2f reps=%d\n",
               name[k], n, spread_ms, med[k], bench_median(p50[k], reps), bench_median(mx[k], reps),
               reps);
    }
    printf("RESULT expiry_ratio walked_vs_ordered cpu=%.1f\n", med[1] / (med[0] > 0 ? med[0] : 1));
    double cms[2][20];
    for (int r = 0; r < reps; r++)
        for (int k = 0; k < 2; k++) cms[k][r] = cancel_case(k == 1, n);
    double cmed[2] = {bench_median(cms[0], reps), bench_median(cms[1], reps)};
    printf("RESULT expiry case=cancel order=arrival waiters=%d ms=%.2f reps=%d\n", n, cmed[0],
           reps);
    printf("RESULT expiry case=cancel order=shuffled waiters=%d ms=%.2f reps=%d\n", n, cmed[1],
           reps);
    printf("RESULT expiry_ratio cancel_shuffled_vs_arrival time=%.1f\n",
           cmed[1] / (cmed[0] > 0 ? cmed[0] : 1));
    return 0;
}
