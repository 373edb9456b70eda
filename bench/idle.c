/* idle.c — what pools cost a process while nothing happens.
 *
 * A server keeps a pool per (database, user); most of them are idle most of
 * the time. N pools of the fake driver (creator_threads 4, the server's
 * setting), each used once (one checkout and checkin, so one connection),
 * then two cases side by side in one run:
 *   holding  each pool keeps its idle connection: its housekeeper wakes
 *            when the connection is next due, or after 10 s (it used to
 *            tick every housekeeping_period, 250 ms);
 *   empty    every connection closed (weir_pool_evict_all): a pool with
 *            nothing to keep sleeps until it has.
 * Reported per case: the process's threads, its threads' voluntary context
 * switches a second (wake-ups), and its CPU a second, over SECONDS.
 * Creator threads end after creator_idle without a connect to make; the
 * bench sets it to 1 s (5 s by default) and waits that out before it
 * measures. Each case lasts 11 s, past the housekeeper's longest sleep;
 * --quick's 1 s is too short to see those wake-ups in `holding`.
 *
 *   idle [--quick] [--seconds S] [--reps N]
 *
 *   RESULT idle case=holding|empty pools=N threads=... wakeups_per_s=... cpu_ms_per_s=...
 *   RESULT idle_ratio holding_vs_empty wakeups=... cpu=...
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "weir/weir.h"
#include "weir_fake.h"

#include "bench.h"

static double cpu_s(void)
{
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (double)r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 + (double)r.ru_stime.tv_sec +
           r.ru_stime.tv_usec / 1e6;
}

/* The process's threads (*n) and their voluntary context switches, summed. */
static long long switches(int *n)
{
    long long sum = 0;
    *n = 0;
    DIR *d = opendir("/proc/self/task");
    if (!d) abort();
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char path[300], line[256];
        snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue; /* it ended meanwhile */
        (*n)++;
        long long v;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "voluntary_ctxt_switches: %lld", &v) == 1) sum += v;
        fclose(f);
    }
    closedir(d);
    return sum;
}

static void measure(double secs, int *threads, double *wakeups, double *cpu_ms)
{
    int n0, n1;
    long long s0 = switches(&n0);
    double c0 = cpu_s();
    int64_t t0 = weir_now_ns();
    usleep((useconds_t)(secs * 1e6));
    double el = (double)(weir_now_ns() - t0) / 1e9;
    double c1 = cpu_s();
    long long s1 = switches(&n1);
    *threads = n1;
    *wakeups = (double)(s1 - s0) / el;
    *cpu_ms = (c1 - c0) * 1000 / el;
}

static void wait_total(weir_pool **pools, int n, int64_t want)
{
    for (int i = 0; i < n; i++) {
        weir_pool_stats st;
        do {
            if (weir_pool_stats_get(pools[i], &st) != 0) abort();
            if (st.total != want) usleep(2000);
        } while (st.total != want);
    }
}

int main(int argc, char **argv)
{
    double secs = 11; /* past the housekeeper's longest sleep (10 s) */
    int reps = 3;
    if (!bench_args(argc, argv, "idle", 1, &secs, &reps)) return 2;
    bool quick = reps == 1 && secs <= 1;
    int n = quick ? 200 : 500;
    weir_fake *fk = weir_fake_new();
    weir_pool **pools = calloc((size_t)n, sizeof *pools);
    if (!fk || !pools) abort();
    weir_options o;
    weir_options_init(&o);
    o.max_size = 20;
    o.min_idle = 0;
    o.creator_threads = 4;
    o.creator_idle_ms = 1000;
    double thr[2][20], wk[2][20], cpu[2][20];
    for (int r = 0; r < reps; r++) {
        for (int i = 0; i < n; i++) {
            snprintf(o.name, sizeof o.name, "p%d", i);
            if (weir_pool_create(&pools[i], weir_fake_driver(), fk, &o, NULL) != 0) {
                fprintf(stderr, "idle: pool %d could not be made\n", i);
                return 1;
            }
            weir_conn *c = NULL;
            if (weir_checkout_timeout(pools[i], 10000, &c) != 0) abort();
            weir_checkin(c);
        }
        usleep(1500000); /* creator_idle, and a margin */
        int t;
        measure(secs, &t, &wk[0][r], &cpu[0][r]);
        thr[0][r] = t;
        for (int i = 0; i < n; i++) (void)weir_pool_evict_all(pools[i]);
        wait_total(pools, n, 0);
        usleep(300000);
        measure(secs, &t, &wk[1][r], &cpu[1][r]);
        thr[1][r] = t;
        for (int i = 0; i < n; i++) weir_pool_destroy(pools[i]);
    }
    const char *name[2] = {"holding", "empty"};
    double mw[2], mc[2];
    for (int k = 0; k < 2; k++) {
        mw[k] = bench_median(wk[k], reps);
        mc[k] = bench_median(cpu[k], reps);
        printf("RESULT idle case=%s pools=%d threads=%.0f wakeups_per_s=%.0f cpu_ms_per_s=%.2f "
               "seconds=%.1f reps=%d\n",
               name[k], n, bench_median(thr[k], reps), mw[k], mc[k], secs, reps);
    }
    printf("RESULT idle_ratio holding_vs_empty wakeups=%.1f cpu=%.1f\n",
           mw[0] / (mw[1] > 1 ? mw[1] : 1), mc[0] / (mc[1] > 0.01 ? mc[1] : 0.01));
    free(pools);
    weir_fake_free(fk);
    return 0;
}
