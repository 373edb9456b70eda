/* demo.c — a tour of libweir on the fake driver: threads share a pool of 4. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "weir/weir.h"
#include "weir_fake.h"

static void *worker(void *arg)
{
    weir_pool *pool = arg;
    for (int i = 0; i < 200; i++) {
        weir_conn *c;
        int rc = weir_checkout(pool, &c);
        if (rc != 0) {
            fprintf(stderr, "checkout: %s\n", weir_strerror(rc));
            continue;
        }
        struct timespec hold = {0, 200000}; /* "run a query": 0.2 ms */
        nanosleep(&hold, NULL);
        weir_checkin(c);
    }
    return NULL;
}

int main(void)
{
    weir_fake *target = weir_fake_new();
    weir_fake_set_connect_delay_ms(target, 20); /* a connect costs 20 ms, like PostgreSQL here */
    weir_options o;
    weir_options_init(&o);
    if (weir_options_set(&o, "max_size", "4") || weir_options_set(&o, "name", "demo")) return 1;
    weir_pool *pool;
    int rc = weir_pool_create(&pool, weir_fake_driver(), target, &o, NULL);
    if (rc != 0) {
        fprintf(stderr, "weir_pool_create: %s\n", weir_strerror(rc));
        return 1;
    }
    printf("weir %s: 8 threads x 200 checkouts on a pool of at most 4 connections\n",
           weir_version());
    int64_t t0 = weir_now_ns();
    pthread_t th[8];
    for (int i = 0; i < 8; i++) pthread_create(&th[i], NULL, worker, pool);
    for (int i = 0; i < 8; i++) pthread_join(th[i], NULL);
    double secs = (double)(weir_now_ns() - t0) / 1e9;

    weir_pool_stats st;
    if (weir_pool_stats_get(pool, &st) != 0) return 1;
    weir_fake_counts fc;
    weir_fake_counts_get(target, &fc);
    printf("%lld checkouts in %.2f s; %lld connections opened (a connection per request "
           "would have opened %lld and spent %.1f s connecting)\n",
           (long long)st.acquires_total, secs, (long long)fc.connects, (long long)st.acquires_total,
           (double)st.acquires_total * 0.020);
    size_t len;
    char *metrics = weir_pool_prometheus(pool, &len);
    printf("\n--- Prometheus metrics (%zu bytes), first lines ---\n", len);
    int lines = 0;
    for (char *p = metrics; p && *p && lines < 12; p++) {
        putchar(*p);
        if (*p == '\n') lines++;
    }
    free(metrics);
    weir_pool_destroy(pool);
    weir_fake_free(target);
    return 0;
}
