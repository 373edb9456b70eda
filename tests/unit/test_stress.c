/* test_stress.c — many threads, a small pool: the cap holds, nothing is lost,
 * nothing is handed to two callers. */
#include "helpers.h"

typedef struct stress {
    weir_pool *pool;
    weir_fake *fake;
    int64_t max_size;
    int iters;
    unsigned seed;
    _Atomic int64_t *ok, *failed, *async_ok;
    _Atomic int64_t *shared; /* a connection handed to two callers at once */
    _Atomic int *in_use_now, *in_use_max;
} stress;

static void hold(unsigned *seed)
{
    unsigned r = rand_r(seed);
    if ((r & 1023) == 0) { /* now and then a real sleep: the holder is descheduled */
        struct timespec ts = {0, 20000 + (long)(r >> 20) % 100000};
        nanosleep(&ts, NULL);
    } else {
        for (volatile unsigned i = 0; i < (r & 255); i++) {
        }
    }
}

static void use(stress *s, weir_conn *c)
{
    weir_fake_conn *fc = weir_conn_handle(c);
    /* nobody else may hold this connection now */
    /* Worker threads only count; the main thread asserts (cmocka's asserts
     * are not thread-safe). in_use_max is checked against max_size there. */
    int was = __atomic_exchange_n(&fc->in_use, 1, __ATOMIC_ACQ_REL);
    if (was) atomic_fetch_add(s->shared, 1);
    int n = atomic_fetch_add(s->in_use_now, 1) + 1;
    int m = atomic_load(s->in_use_max);
    while (n > m && !atomic_compare_exchange_weak(s->in_use_max, &m, n)) {
    }
    hold(&s->seed);
    atomic_fetch_sub(s->in_use_now, 1);
    __atomic_store_n(&fc->in_use, 0, __ATOMIC_RELEASE);
}

typedef struct async_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int status;
    weir_conn *c;
} async_wait;

static void on_done(weir_conn *c, int status, void *ud)
{
    async_wait *w = ud;
    pthread_mutex_lock(&w->mu);
    w->done = true;
    w->status = status;
    w->c = c;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void *stress_main(void *arg)
{
    stress *s = arg;
    for (int i = 0; i < s->iters; i++) {
        weir_conn *c = NULL;
        int rc;
        if ((i & 63) == 7) { /* one in 64 goes through the asynchronous door */
            async_wait w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0, NULL};
            rc = weir_checkout_async(s->pool, -1, on_done, &w, &c, NULL);
            if (rc == WEIR_PENDING) {
                pthread_mutex_lock(&w.mu);
                while (!w.done) pthread_cond_wait(&w.cv, &w.mu);
                pthread_mutex_unlock(&w.mu);
                rc = w.status;
                c = w.c;
            }
            if (rc == 0) atomic_fetch_add(s->async_ok, 1);
        } else {
            rc = weir_checkout(s->pool, &c);
        }
        if (rc != 0) {
            atomic_fetch_add(s->failed, 1);
            continue;
        }
        use(s, c);
        weir_checkin(c);
        atomic_fetch_add(s->ok, 1);
    }
    return NULL;
}

static void run(int threads, int iters, int64_t max_size)
{
    weir_fake *fk = weir_fake_new();
    weir_options o;
    test_options(&o);
    o.max_size = max_size;
    o.acquire_timeout_ms = 60000;
    weir_pool *p;
    assert_int_equal(weir_pool_create(&p, weir_fake_driver(), fk, &o, NULL), 0);
    _Atomic int64_t ok = 0, failed = 0, async_ok = 0, shared = 0;
    _Atomic int now = 0, max = 0;
    stress *s = calloc((size_t)threads, sizeof *s);
    pthread_t *th = calloc((size_t)threads, sizeof *th);
    int64_t t0 = weir_now_ns();
    for (int i = 0; i < threads; i++) {
        s[i] = (stress){.pool = p,
                        .fake = fk,
                        .max_size = max_size,
                        .iters = iters,
                        .seed = (unsigned)i * 7919u + 1,
                        .ok = &ok,
                        .failed = &failed,
                        .async_ok = &async_ok,
                        .shared = &shared,
                        .in_use_now = &now,
                        .in_use_max = &max};
        pthread_create(&th[i], NULL, stress_main, &s[i]);
    }
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    double secs = (double)(weir_now_ns() - t0) / 1e9;
    weir_pool_stats st = pool_stats(p);
    weir_fake_counts fc = fake_counts(fk);
    printf("stress: %d threads x %d cycles, max_size %lld: %.2f s, %lld ok (%lld async), "
           "%lld failed, peak in use %d, %lld connections opened\n",
           threads, iters, (long long)max_size, secs, (long long)ok, (long long)async_ok,
           (long long)failed, max, (long long)fc.connects);
    assert_int_equal(shared, 0); /* never handed to two callers */
    assert_int_equal(failed, 0);
    assert_int_equal(ok, (int64_t)threads * iters);
    assert_int_equal(st.acquires_total, ok);
    assert_true(fc.max_open <= max_size); /* never more than max_size open */
    assert_true(max <= max_size);
    assert_int_equal(st.active, 0); /* nothing lost: all back */
    assert_int_equal(st.idle, st.total);
    assert_int_equal(fc.open, st.total);
    assert_int_equal(st.waiters, 0);
    weir_pool_destroy(p);
    assert_int_equal(fake_counts(fk).open, 0);
    weir_fake_free(fk);
    free(s);
    free(th);
}

static int iters(void)
{
    const char *e = getenv("WEIR_STRESS_ITERS");
    return e ? atoi(e) : 100000;
}

static void stress_32_threads_pool_8(void **state)
{
    (void)state;
    run(32, iters(), 8);
}

static void stress_8_threads_pool_1(void **state)
{
    (void)state;
    run(8, iters() / 10, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stress_32_threads_pool_8),
        cmocka_unit_test(stress_8_threads_pool_1),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
