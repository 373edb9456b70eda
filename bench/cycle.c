/* cycle.c — checkout+checkin cycles per second: weir against a floor.
 *
 * The floor is the simplest correct pool: a free-list behind one pthread
 * mutex and condition variable. Both run the same loop, in the same process,
 * side by side, on the fake driver (no I/O), for pools of 8 and 1 at 1, 2, 8
 * and 32 threads. Each figure is the median of several runs.
 *
 *   cycle [--quick] [--reps N] [--seconds S] [--pool 8|1] [--threads 1|2|8|32]
 *
 * Prints `RESULT cycle ...` lines. Also counts heap allocations made during a
 * measured single-thread run (malloc/calloc/realloc are wrapped below).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "weir/weir.h"
#include "weir_fake.h"

#include "bench.h"

/* ---- allocation counter: every malloc in this process goes through here.
 * `nallocs` counts all of them; `cycle_allocs` only those made on a thread
 * that is running checkout/checkin cycles (libweir's own threads are not). */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
static _Atomic long nallocs, cycle_allocs;
static _Thread_local bool in_cycles;
static void count_alloc(void)
{
    atomic_fetch_add_explicit(&nallocs, 1, memory_order_relaxed);
    if (in_cycles) atomic_fetch_add_explicit(&cycle_allocs, 1, memory_order_relaxed);
}
void *malloc(size_t n)
{
    count_alloc();
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b)
{
    count_alloc();
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n)
{
    count_alloc();
    return __libc_realloc(p, n);
}

/* ---- the floor ---- */
typedef struct floor_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    void **free;
    int nfree;
} floor_pool;

static void *floor_get(floor_pool *f)
{
    pthread_mutex_lock(&f->mu);
    while (f->nfree == 0) pthread_cond_wait(&f->cv, &f->mu);
    void *c = f->free[--f->nfree];
    pthread_mutex_unlock(&f->mu);
    return c;
}

static void floor_put(floor_pool *f, void *c)
{
    pthread_mutex_lock(&f->mu);
    f->free[f->nfree++] = c;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

/* ---- the loop ---- */
typedef struct run {
    bool weir;
    weir_pool *pool;
    floor_pool *floor;
    _Atomic bool *stop;
    pthread_barrier_t *go;
    long cycles;
    int errors;
} run;

static void *loop(void *arg)
{
    run *r = arg;
    long n = 0;
    pthread_barrier_wait(r->go);
    in_cycles = true;
    if (r->weir) {
        while (!atomic_load_explicit(r->stop, memory_order_relaxed)) {
            for (int i = 0; i < 64; i++) {
                weir_conn *c;
                if (weir_checkout(r->pool, &c) != 0) {
                    r->errors++;
                    continue;
                }
                weir_checkin(c);
            }
            n += 64;
        }
    } else {
        while (!atomic_load_explicit(r->stop, memory_order_relaxed)) {
            for (int i = 0; i < 64; i++) floor_put(r->floor, floor_get(r->floor));
            n += 64;
        }
    }
    in_cycles = false;
    r->cycles = n;
    return NULL;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* One timed run; returns cycles per second. */
static double measure(bool use_weir, int pool_size, int threads, double seconds, long *allocs,
                      long *in_cycle_allocs)
{
    weir_fake *fk = NULL;
    weir_pool *pool = NULL;
    floor_pool fl = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0};
    if (use_weir) {
        pool = bench_fake_pool(pool_size, &fk);
    } else {
        fl.free = calloc((size_t)pool_size, sizeof(void *));
        for (int i = 0; i < pool_size; i++) fl.free[fl.nfree++] = (void *)(intptr_t)(i + 1);
    }
    _Atomic bool stop = false;
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, (unsigned)threads + 1);
    run *r = calloc((size_t)threads, sizeof *r);
    pthread_t *th = calloc((size_t)threads, sizeof *th);
    for (int i = 0; i < threads; i++) {
        r[i] = (run){.weir = use_weir, .pool = pool, .floor = &fl, .stop = &stop, .go = &go};
        pthread_create(&th[i], NULL, loop, &r[i]);
    }
    pthread_barrier_wait(&go);
    long a0 = atomic_load(&nallocs), c0 = atomic_load(&cycle_allocs);
    int64_t t0 = weir_now_ns();
    sleep_s(seconds);
    atomic_store(&stop, true);
    long a1 = atomic_load(&nallocs), c1 = atomic_load(&cycle_allocs);
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    double el = (double)(weir_now_ns() - t0) / 1e9;
    long total = 0;
    for (int i = 0; i < threads; i++) {
        total += r[i].cycles;
        if (r[i].errors) fprintf(stderr, "cycle: %d checkout errors\n", r[i].errors);
    }
    if (allocs) *allocs = a1 - a0;
    if (in_cycle_allocs) *in_cycle_allocs = c1 - c0;
    pthread_barrier_destroy(&go);
    free(r);
    free(th);
    if (use_weir) {
        weir_pool_destroy(pool);
        weir_fake_free(fk);
    } else {
        free(fl.free);
    }
    return (double)total / el;
}

int main(int argc, char **argv)
{
    int reps = 5, only_pool = 0, only_threads = 0;
    double secs = 1.0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            reps = 3, secs = 0.25;
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            secs = atof(argv[++i]);
        else if (strcmp(argv[i], "--pool") == 0 && i + 1 < argc)
            only_pool = atoi(argv[++i]);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            only_threads = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: cycle [--quick] [--reps N] [--seconds S] [--pool 8|1] "
                            "[--threads 1|2|8|32]\n");
            return 2;
        }
    }
    if (reps < 1 || reps > 50) reps = 5;
    const int sizes[] = {8, 1};
    const int threads[] = {1, 2, 8, 32};
    for (size_t si = 0; si < 2; si++) {
        for (size_t ti = 0; ti < 4; ti++) {
            if ((only_pool && only_pool != sizes[si]) ||
                (only_threads && only_threads != threads[ti]))
                continue;
            double w[50], f[50];
            for (int k = 0; k < reps; k++) { /* interleaved, so both see the same noise */
                w[k] = measure(true, sizes[si], threads[ti], secs, NULL, NULL);
                f[k] = measure(false, sizes[si], threads[ti], secs, NULL, NULL);
            }
            double mw = bench_median(w, reps), mf = bench_median(f, reps);
            printf("RESULT cycle pool=%d threads=%d weir_cycles_per_s=%.0f floor_cycles_per_s=%.0f "
                   "weir_ns_per_cycle=%.1f floor_ns_per_cycle=%.1f ratio_vs_floor=%.2f reps=%d\n",
                   sizes[si], threads[ti], mw, mf, 1e9 * threads[ti] / mw, 1e9 * threads[ti] / mf,
                   mw / mf, reps);
            fflush(stdout);
        }
    }
    for (int threads_n = 1; threads_n <= 8; threads_n *= 8) {
        long allocs = 0, in_cycle = 0;
        double rate = measure(true, 8, threads_n, secs, &allocs, &in_cycle);
        printf("RESULT cycle check=heap_allocations pool=8 threads=%d cycles=%.0f "
               "allocations_in_cycles=%ld allocations_per_cycle=%.9f allocations_process=%ld\n",
               threads_n, rate * secs, in_cycle, (double)in_cycle / (rate * secs), allocs);
    }
    return 0;
}
