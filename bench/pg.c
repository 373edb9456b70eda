/* pg.c — SELECT 1 over TCP with scram-sha-256: a new connection per request
 * vs weir's pool vs a bare persistent libpq connection, side by side.
 *
 *   pg [--quick] [--seconds S] [--reps N]
 *
 * Starts a throwaway PostgreSQL cluster with tests/integration/pg_cluster.sh
 * (as the postgres user when run as root) and removes it afterwards. For 1
 * and 8 threads, runs each mode for S seconds, REPS times, interleaved, and
 * prints medians of throughput and of the runs' median and p99 latencies.
 */
#define _GNU_SOURCE
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weir/weir.h"
#include "weir/weir_pg.h"

#include "bench.h"

enum mode { PER_REQUEST, POOLED, BARE, NMODES };
static const char *const mode_names[NMODES] = {"per_request", "pooled", "bare"};

static char conninfo[256];

typedef struct worker {
    enum mode mode;
    weir_pool *pool;
    _Atomic bool *stop;
    pthread_barrier_t *go;
    int64_t *lat; /* ns, one per request */
    size_t nlat, cap;
    long errors;
} worker;

static bool select1(PGconn *c)
{
    PGresult *r = PQexec(c, "SELECT 1");
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), "1") == 0;
    PQclear(r);
    return ok;
}

static void *work(void *arg)
{
    worker *w = arg;
    PGconn *own = NULL;
    if (w->mode == BARE) {
        own = PQconnectdb(conninfo);
        if (PQstatus(own) != CONNECTION_OK) {
            fprintf(stderr, "pg bench: %s", PQerrorMessage(own));
            exit(1);
        }
    }
    pthread_barrier_wait(w->go);
    while (!atomic_load_explicit(w->stop, memory_order_relaxed) && w->nlat < w->cap) {
        int64_t t0 = weir_now_ns();
        bool ok = false;
        if (w->mode == PER_REQUEST) {
            PGconn *c = PQconnectdb(conninfo);
            ok = PQstatus(c) == CONNECTION_OK && select1(c);
            PQfinish(c);
        } else if (w->mode == POOLED) {
            weir_conn *c;
            if (weir_checkout(w->pool, &c) == 0) {
                ok = select1(weir_pg_conn(c));
                if (!ok) weir_conn_mark_broken(c);
                weir_checkin(c);
            }
        } else {
            ok = select1(own);
        }
        if (!ok) w->errors++;
        w->lat[w->nlat++] = weir_now_ns() - t0;
    }
    PQfinish(own);
    return NULL;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

typedef struct result {
    double rps, p50_us, p99_us;
    long errors;
} result;

static result run(enum mode m, int threads, double secs)
{
    weir_pool *pool = NULL;
    if (m == POOLED) {
        weir_options o;
        weir_options_init(&o);
        o.max_size = threads;
        o.min_idle = threads;
        char err[256];
        if (weir_pg_pool_create(&pool, conninfo, NULL, &o, NULL, err, sizeof err) != 0) {
            fprintf(stderr, "pg bench: %s\n", err);
            exit(1);
        }
        bench_wait_warm(pool, threads);
    }
    _Atomic bool stop = false;
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, (unsigned)threads + 1);
    worker *w = calloc((size_t)threads, sizeof *w);
    pthread_t *th = calloc((size_t)threads, sizeof *th);
    size_t cap = 2000000;
    for (int i = 0; i < threads; i++) {
        w[i] = (worker){.mode = m, .pool = pool, .stop = &stop, .go = &go, .cap = cap};
        w[i].lat = malloc(cap * sizeof(int64_t));
        pthread_create(&th[i], NULL, work, &w[i]);
    }
    pthread_barrier_wait(&go);
    int64_t t0 = weir_now_ns();
    usleep((useconds_t)(secs * 1e6));
    atomic_store(&stop, true);
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    double el = (double)(weir_now_ns() - t0) / 1e9;
    size_t n = 0;
    for (int i = 0; i < threads; i++) n += w[i].nlat;
    int64_t *all = malloc((n ? n : 1) * sizeof *all);
    size_t k = 0;
    result r = {0};
    for (int i = 0; i < threads; i++) {
        memcpy(all + k, w[i].lat, w[i].nlat * sizeof *all);
        k += w[i].nlat;
        r.errors += w[i].errors;
        free(w[i].lat);
    }
    qsort(all, n, sizeof *all, cmp64);
    r.rps = (double)n / el;
    r.p50_us = n ? (double)all[n / 2] / 1e3 : 0;
    r.p99_us = n ? (double)all[(size_t)((double)n * 0.99)] / 1e3 : 0;
    free(all);
    free(w);
    free(th);
    pthread_barrier_destroy(&go);
    weir_pool_destroy(pool);
    return r;
}

int main(int argc, char **argv)
{
    double secs = 3;
    int reps = 3;
    if (!bench_args(argc, argv, "pg", 1, &secs, &reps)) return 2;
    int port;
    if (!bench_pg_start(0, &port)) return 1;
    snprintf(conninfo, sizeof conninfo,
             "host=127.0.0.1 port=%d user=app password=s3cret dbname=appdb", port);

    const int threads[] = {1, 8};
    for (size_t t = 0; t < 2; t++) {
        double rps[NMODES][20], p50[NMODES][20], p99[NMODES][20];
        long errors[NMODES] = {0};
        for (int rep = 0; rep < reps; rep++)
            for (int m = 0; m < NMODES; m++) {
                result r = run((enum mode)m, threads[t], m == PER_REQUEST ? secs / 2 : secs);
                rps[m][rep] = r.rps;
                p50[m][rep] = r.p50_us;
                p99[m][rep] = r.p99_us;
                errors[m] += r.errors;
            }
        double mr[NMODES], m50[NMODES], m99[NMODES];
        for (int m = 0; m < NMODES; m++) {
            mr[m] = bench_median(rps[m], reps);
            m50[m] = bench_median(p50[m], reps);
            m99[m] = bench_median(p99[m], reps);
            printf("RESULT pg mode=%s threads=%d requests_per_s=%.0f p50_us=%.1f p99_us=%.1f "
                   "errors=%ld reps=%d\n",
                   mode_names[m], threads[t], mr[m], m50[m], m99[m], errors[m], reps);
        }
        printf("RESULT pg threads=%d pooled_vs_per_request_p50=%.1fx "
               "pooled_vs_per_request_throughput=%.1fx pooled_vs_bare_throughput=%.3f\n",
               threads[t], m50[PER_REQUEST] / m50[POOLED], mr[POOLED] / mr[PER_REQUEST],
               mr[POOLED] / mr[BARE]);
        fflush(stdout);
    }
    return 0;
}
