/* bench.h — what the benchmarks share: medians, the command line, and a
 * throwaway PostgreSQL cluster (tests/integration/pg_cluster.sh). */
#ifndef WEIR_BENCH_H
#define WEIR_BENCH_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weir/weir.h"

static int bench_cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median of v[0..n) (sorts v). */
static inline double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmpd);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Wait until the pool has n idle connections: timing starts on a warm pool,
 * as it would in a running service. */
static inline void bench_wait_warm(weir_pool *pool, int64_t n)
{
    weir_pool_stats st;
    do {
        usleep(5000);
        if (weir_pool_stats_get(pool, &st) != 0) exit(1);
    } while (st.idle < n);
}

#ifdef WEIR_FAKE_H
/* A pool of n connections of the fake driver, all open and idle (*fk: the
 * driver's state, for weir_fake_free after weir_pool_destroy). */
static inline weir_pool *bench_fake_pool(int n, weir_fake **fk)
{
    *fk = weir_fake_new();
    weir_options o;
    weir_options_init(&o);
    o.max_size = n;
    o.min_idle = n;
    weir_pool *pool = NULL;
    if (!*fk || weir_pool_create(&pool, weir_fake_driver(), *fk, &o, NULL) != 0) abort();
    bench_wait_warm(pool, n);
    return pool;
}
#endif

/* --quick, --seconds S, --reps N (1..20). False after printing the usage. */
static inline bool bench_args(int argc, char **argv, const char *name, double quick_secs,
                              double *secs, int *reps)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            *secs = quick_secs, *reps = 1;
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            *secs = atof(argv[++i]);
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            *reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--quick] [--seconds S] [--reps N]\n", name);
            return false;
        }
    }
    if (*reps < 1 || *reps > 20) *reps = 3;
    return true;
}

#ifdef WEIR_SOURCE_DIR
#include "../tests/integration/ports.h"

static char bench_cluster[128];

static void bench_pg_stop(void)
{
    if (!bench_cluster[0]) return;
    char cmd[768];
    snprintf(cmd, sizeof cmd, "%s/tests/integration/pg_cluster.sh destroy %s", WEIR_SOURCE_DIR,
             bench_cluster);
    if (system(cmd) != 0) fprintf(stderr, "bench: could not remove %s\n", bench_cluster);
    bench_cluster[0] = '\0';
}

/* Start a throwaway cluster (removed at exit); its port in *port, false if
 * it failed. The port is picked as the tests pick theirs: free, and below the
 * kernel's range for outgoing connections, whose TIME_WAIT leftovers from the
 * benchmark before (thousands of connections opened per request) kept
 * PostgreSQL from binding a port drawn from inside it. A cluster that still
 * cannot bind is made again on another port, up to three times. */
static inline bool bench_pg_start(int salt, int *port)
{
    static bool registered;
    if (!registered) {
        atexit(bench_pg_stop);
        registered = true;
    }
    for (int attempt = 0; attempt < 3; attempt++) {
        snprintf(bench_cluster, sizeof bench_cluster, "/tmp/weir-bench-pg-XXXXXX");
        if (!mkdtemp(bench_cluster)) return false;
        *port = test_port(salt + attempt * 211);
        char cmd[768];
        snprintf(cmd, sizeof cmd, "%s/tests/integration/pg_cluster.sh start %s %d", WEIR_SOURCE_DIR,
                 bench_cluster, *port);
        if (system(cmd) == 0) return true;
        fprintf(stderr, "bench: PostgreSQL did not start on port %d; trying another\n", *port);
        bench_pg_stop();
    }
    return false;
}
#endif

#endif
