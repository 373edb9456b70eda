/* helpers.h — shared test scaffolding: pools over the fake driver, timing, threads. */
#ifndef WEIR_TEST_HELPERS_H
#define WEIR_TEST_HELPERS_H

#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "weir/weir.h"
#include "weir_fake.h"

static inline void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static inline int64_t ms_since(int64_t start_ns)
{
    return (weir_now_ns() - start_ns) / 1000000;
}

/* Under valgrind or a sanitizer everything runs several times slower. */
static inline bool slow_env(void)
{
    const char *s = getenv("WEIR_TEST_SLOW");
    return s && *s && strcmp(s, "0") != 0;
}

/* Timing margin: 50 ms as the engine promises; generous under valgrind and
 * sanitizers, whose runs are for memory and thread errors, not timing. */
static inline int64_t slack_ms(void)
{
    return slow_env() ? 1500 : 50;
}

typedef struct fixture {
    weir_fake *fake;
    weir_pool *pool;
    weir_options o;
} fixture;

/* Options for tests: short timeouts so failures show quickly. */
static inline void test_options(weir_options *o)
{
    weir_options_init(o);
    o->acquire_timeout_ms = 2000;
    o->connect_timeout_ms = 1000;
    o->housekeeping_ms = 20;
    o->validate_idle_after_ms = -1;
}

static inline void fixture_open(fixture *f)
{
    if (!f->fake) f->fake = weir_fake_new();
    assert_non_null(f->fake);
    assert_int_equal(weir_pool_create(&f->pool, weir_fake_driver(), f->fake, &f->o, NULL), 0);
}

static inline void fixture_close(fixture *f)
{
    /* A test that failed while holding a connection would make destroy wait
     * for ever: drain with a limit first and say so instead. */
    if (f->pool && weir_pool_drain(f->pool, 5000) != 0) {
        fprintf(stderr, "teardown: a connection is still checked out; pool not destroyed\n");
        f->pool = NULL;
        f->fake = NULL;
        return;
    }
    weir_pool_destroy(f->pool);
    f->pool = NULL;
    weir_fake_free(f->fake);
    f->fake = NULL;
}

/* cmocka setup/teardown for tests that use a fixture (the pool is opened by the test). */
static inline int fixture_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    test_options(&f->o);
    *state = f;
    return 0;
}

static inline int fixture_teardown(void **state)
{
    fixture *f = *state;
    if (f->pool)
        fixture_close(f);
    else
        weir_fake_free(f->fake);
    free(f);
    return 0;
}

/* A temporary directory for a test group: test_dir, removed afterwards. */
static char test_dir[128];

static inline int tmpdir_setup(void **state)
{
    (void)state;
    snprintf(test_dir, sizeof test_dir, "/tmp/weir-test-XXXXXX");
    return mkdtemp(test_dir) ? 0 : -1;
}

static inline int tmpdir_teardown(void **state)
{
    (void)state;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", test_dir);
    return system(cmd);
}

static inline weir_fake_counts fake_counts(weir_fake *fk)
{
    weir_fake_counts c;
    weir_fake_counts_get(fk, &c);
    return c;
}

static inline weir_pool_stats pool_stats(weir_pool *p)
{
    weir_pool_stats st;
    assert_int_equal(weir_pool_stats_get(p, &st), 0);
    return st;
}

/* Wait (bounded) until cond holds; returns whether it did. */
#define WAIT_FOR(cond, ms)                                                                         \
    ({                                                                                             \
        int64_t t0_ = weir_now_ns();                                                               \
        while (!(cond) && ms_since(t0_) < (ms)) sleep_ms(2);                                       \
        (cond);                                                                                    \
    })

/* A log hook that keeps the last warning. */
typedef struct log_capture {
    pthread_mutex_t mu;
    char last[1024];
    int warnings;
} log_capture;

static inline void capture_log(void *ud, weir_log_level lvl, const char *msg)
{
    log_capture *lc = ud;
    if (lvl < WEIR_LOG_WARN) return;
    pthread_mutex_lock(&lc->mu);
    snprintf(lc->last, sizeof lc->last, "%s", msg);
    lc->warnings++;
    pthread_mutex_unlock(&lc->mu);
}

#endif
