/* adaptive.c — adaptive sizing against fixed sizes on a bursty load.
 *
 *   adaptive [--quick] [--seconds S] [--reps N]
 *
 * On the fake driver (a 20 ms connect, like a PostgreSQL login here), 16
 * threads each loop on checkout, 2 ms of "query", checkin. The load comes in
 * bursts: all 16 threads for a quarter of each cycle, 2 threads for the rest.
 * Three pools run the same load in turn: fixed small (4), fixed large (16),
 * and adaptive (min_idle 2, cap 16). For each: the mean latency of a use
 * (checkout to checkin), the mean, p50 and p99 of a checkout's wait, and the
 * connections open on average (sampled every 5 ms). Prints
 * `RESULT adaptive ...` lines.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weir/weir.h"
#include "weir_fake.h"

#include "bench.h"

enum { THREADS = 16, QUIET = 2, MAX_SAMPLES = 400000 };

typedef struct worker {
    weir_pool *pool;
    int idx;
    _Atomic bool *stop;
    _Atomic bool *burst;
    int64_t *waits;
    long n;
    int64_t latency_sum; /* checkout to checkin, ns */
    pthread_t th;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    while (!atomic_load(w->stop)) {
        if (w->idx >= QUIET && !atomic_load(w->burst)) {
            usleep(1000);
            continue;
        }
        weir_conn *c;
        int64_t t0 = weir_now_ns();
        if (weir_checkout(w->pool, &c) != 0) continue;
        int64_t waited = weir_now_ns() - t0;
        if (w->n < MAX_SAMPLES) w->waits[w->n] = waited;
        w->n++;
        usleep(2000);
        weir_checkin(c);
        w->latency_sum += weir_now_ns() - t0;
    }
    return NULL;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

typedef struct result {
    double p50_ms, p99_ms, mean_wait_ms, mean_latency_ms, avg_open, ops;
} result;

static result run(int64_t max_size, bool adaptive, double secs)
{
    weir_fake *fk = weir_fake_new();
    weir_fake_set_connect_delay_ms(fk, 20);
    weir_options o;
    weir_options_init(&o);
    o.max_size = max_size;
    o.min_idle = adaptive ? 2 : max_size;
    o.adaptive = adaptive;
    o.adaptive_wait_ms = 2;
    o.adaptive_period_ms = 100;
    o.housekeeping_ms = 20;
    o.idle_timeout_ms = 0;
    o.acquire_timeout_ms = 10000;
    o.creator_threads = 4;
    weir_pool *p;
    if (weir_pool_create(&p, weir_fake_driver(), fk, &o, NULL)) exit(1);
    bench_wait_warm(p, adaptive ? 2 : max_size);
    _Atomic bool stop = false, burst = false;
    worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){.pool = p, .idx = i, .stop = &stop, .burst = &burst};
        w[i].waits = malloc(MAX_SAMPLES * sizeof(int64_t));
        pthread_create(&w[i].th, NULL, work, &w[i]);
    }
    int64_t t0 = weir_now_ns(), end = t0 + (int64_t)(secs * 1e9);
    int64_t cycle_ns = 2000000000; /* a burst of 0.5 s every 2 s */
    double open_sum = 0;
    long samples = 0;
    while (weir_now_ns() < end) {
        int64_t in = (weir_now_ns() - t0) % cycle_ns;
        atomic_store(&burst, in < cycle_ns / 4);
        weir_pool_stats st;
        weir_pool_stats_get(p, &st);
        open_sum += (double)(st.total + st.pending);
        samples++;
        usleep(5000);
    }
    atomic_store(&stop, true);
    long n = 0, all_n = 0;
    double lat = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(w[i].th, NULL);
        n += w[i].n < MAX_SAMPLES ? w[i].n : MAX_SAMPLES;
        all_n += w[i].n;
        lat += (double)w[i].latency_sum;
    }
    int64_t *all = malloc((size_t)(n ? n : 1) * sizeof *all);
    long k = 0;
    for (int i = 0; i < THREADS; i++) {
        long m = w[i].n < MAX_SAMPLES ? w[i].n : MAX_SAMPLES;
        memcpy(all + k, w[i].waits, (size_t)m * sizeof *all);
        k += m;
        free(w[i].waits);
    }
    qsort(all, (size_t)k, sizeof *all, cmp64);
    double wsum = 0;
    for (long i = 0; i < k; i++) wsum += (double)all[i];
    result r = {.p50_ms = k ? (double)all[k / 2] / 1e6 : 0,
                .p99_ms = k ? (double)all[k * 99 / 100] / 1e6 : 0,
                .mean_wait_ms = k ? wsum / (double)k / 1e6 : 0,
                .mean_latency_ms = all_n ? lat / (double)all_n / 1e6 : 0,
                .avg_open = samples ? open_sum / (double)samples : 0,
                .ops = (double)k / secs};
    free(all);
    weir_pool_destroy(p);
    weir_fake_free(fk);
    return r;
}

int main(int argc, char **argv)
{
    double secs = 8;
    int reps = 3;
    if (!bench_args(argc, argv, "adaptive", 4, &secs, &reps)) return 2;
    static const struct {
        const char *name;
        int64_t size;
        bool adaptive;
    } pools[] = {{"fixed_small", 4, false}, {"fixed_large", 16, false}, {"adaptive", 16, true}};
    for (int i = 0; i < 3; i++) {
        double p50[20], p99[20], mw[20], ml[20], open[20], ops[20];
        for (int rep = 0; rep < reps; rep++) {
            result r = run(pools[i].size, pools[i].adaptive, secs);
            p50[rep] = r.p50_ms;
            p99[rep] = r.p99_ms;
            mw[rep] = r.mean_wait_ms;
            ml[rep] = r.mean_latency_ms;
            open[rep] = r.avg_open;
            ops[rep] = r.ops;
        }
        printf("RESULT adaptive pool=%s cap=%lld mean_latency_ms=%.3f mean_wait_ms=%.3f "
               "wait_p50_ms=%.3f wait_p99_ms=%.3f avg_open=%.1f checkouts_per_s=%.0f reps=%d\n",
               pools[i].name, (long long)pools[i].size, bench_median(ml, reps),
               bench_median(mw, reps), bench_median(p50, reps), bench_median(p99, reps),
               bench_median(open, reps), bench_median(ops, reps), reps);
        fflush(stdout);
    }
    return 0;
}
