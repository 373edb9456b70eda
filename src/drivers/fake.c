/* fake.c — a fault-injecting driver with no I/O, for tests and benchmarks. */
#define _GNU_SOURCE
#include "weir_fake.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct weir_fake {
    _Atomic int64_t connect_delay_ms, validate_delay_ms, close_delay_ms;
    _Atomic int64_t fail_at; /* absolute attempt number to fail, 0 = off */
    _Atomic bool down, reset_fails;
    _Atomic int64_t connects, connect_failures, open, max_open, validates, validate_failures,
        resets, closes, serial, connecting, max_connecting;
    _Atomic uint32_t break_gen; /* bumped by break_all */
    pthread_mutex_t mu;
    char error[256];
};

typedef struct fconn {
    weir_fake_conn pub;
    uint32_t break_gen;
} fconn;

static void sleep_until_ns(int64_t until)
{
    struct timespec ts = {.tv_sec = until / 1000000000, .tv_nsec = until % 1000000000};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
    }
}

static int connect_body(weir_fake *f, int64_t n, int64_t deadline, void **out, char *err,
                        size_t errlen);

static int fk_connect(void *ctx, int64_t deadline, void **out, char *err, size_t errlen)
{
    weir_fake *f = ctx;
    int64_t n = atomic_fetch_add(&f->connects, 1) + 1;
    int64_t now_in = atomic_fetch_add(&f->connecting, 1) + 1;
    int64_t mc = atomic_load(&f->max_connecting);
    while (now_in > mc && !atomic_compare_exchange_weak(&f->max_connecting, &mc, now_in)) {
    }
    int rc = connect_body(f, n, deadline, out, err, errlen);
    atomic_fetch_sub(&f->connecting, 1);
    return rc;
}

static int connect_body(weir_fake *f, int64_t n, int64_t deadline, void **out, char *err,
                        size_t errlen)
{
    int64_t delay = atomic_load(&f->connect_delay_ms);
    if (delay > 0) {
        int64_t until = weir_now_ns() + delay * 1000000;
        if (until > deadline) {
            sleep_until_ns(deadline);
            atomic_fetch_add(&f->connect_failures, 1);
            snprintf(err, errlen, "fake: connect timed out");
            return WEIR_ETIMEDOUT;
        }
        sleep_until_ns(until);
    }
    if (atomic_load(&f->down) || atomic_load(&f->fail_at) == n) {
        atomic_fetch_add(&f->connect_failures, 1);
        pthread_mutex_lock(&f->mu);
        snprintf(err, errlen, "%s", f->error);
        pthread_mutex_unlock(&f->mu);
        return WEIR_ECONNECT;
    }
    fconn *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "fake: out of memory");
        return WEIR_ENOMEM;
    }
    c->pub.fake = f;
    c->pub.serial = (uint64_t)atomic_fetch_add(&f->serial, 1) + 1;
    c->break_gen = atomic_load(&f->break_gen);
    int64_t open = atomic_fetch_add(&f->open, 1) + 1;
    int64_t m = atomic_load(&f->max_open);
    while (open > m && !atomic_compare_exchange_weak(&f->max_open, &m, open)) {
    }
    *out = c;
    return 0;
}

static int fk_validate(void *ctx, void *conn, int64_t deadline, char *err, size_t errlen)
{
    weir_fake *f = ctx;
    fconn *c = conn;
    atomic_fetch_add(&f->validates, 1);
    int64_t delay = atomic_load(&f->validate_delay_ms);
    if (delay > 0) {
        int64_t until = weir_now_ns() + delay * 1000000;
        sleep_until_ns(until < deadline ? until : deadline);
    }
    if (c->pub.broken || c->break_gen != atomic_load(&f->break_gen) || atomic_load(&f->down)) {
        atomic_fetch_add(&f->validate_failures, 1);
        snprintf(err, errlen, "fake: server closed the connection unexpectedly");
        return WEIR_EDRIVER;
    }
    return 0;
}

static bool fk_is_dirty(void *ctx, void *conn)
{
    (void)ctx;
    return ((fconn *)conn)->pub.dirty;
}

static int fk_reset(void *ctx, void *conn, char *err, size_t errlen)
{
    weir_fake *f = ctx;
    fconn *c = conn;
    atomic_fetch_add(&f->resets, 1);
    if (atomic_load(&f->reset_fails)) {
        snprintf(err, errlen, "fake: reset failed");
        return WEIR_EDRIVER;
    }
    c->pub.dirty = false;
    return 0;
}

static void fk_close(void *ctx, void *conn)
{
    weir_fake *f = ctx;
    int64_t delay = atomic_load(&f->close_delay_ms);
    if (delay > 0) sleep_until_ns(weir_now_ns() + delay * 1000000);
    atomic_fetch_add(&f->closes, 1);
    atomic_fetch_sub(&f->open, 1);
    free(conn);
}

static size_t fk_describe(void *ctx, char *buf, size_t len)
{
    (void)ctx;
    return (size_t)snprintf(buf, len, "fake://user:secret@fakehost/db");
}

static const weir_driver fake_driver = {
    .name = "fake",
    .connect = fk_connect,
    .validate = fk_validate,
    .is_dirty = fk_is_dirty,
    .reset = fk_reset,
    .close = fk_close,
    .describe = fk_describe,
};

const weir_driver *weir_fake_driver(void)
{
    return &fake_driver;
}

weir_fake *weir_fake_new(void)
{
    weir_fake *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    pthread_mutex_init(&f->mu, NULL);
    snprintf(f->error, sizeof f->error, "fake: could not connect to server: Connection refused");
    return f;
}

void weir_fake_free(weir_fake *f)
{
    if (!f) return;
    pthread_mutex_destroy(&f->mu);
    free(f);
}

void weir_fake_set_connect_delay_ms(weir_fake *f, int64_t ms)
{
    atomic_store(&f->connect_delay_ms, ms);
}
void weir_fake_set_validate_delay_ms(weir_fake *f, int64_t ms)
{
    atomic_store(&f->validate_delay_ms, ms);
}
void weir_fake_set_close_delay_ms(weir_fake *f, int64_t ms)
{
    atomic_store(&f->close_delay_ms, ms);
}
void weir_fake_fail_nth_connect(weir_fake *f, int64_t n)
{
    atomic_store(&f->fail_at, n ? atomic_load(&f->connects) + n : 0);
}
void weir_fake_set_down(weir_fake *f, bool down)
{
    atomic_store(&f->down, down);
}
void weir_fake_set_reset_fails(weir_fake *f, bool fails)
{
    atomic_store(&f->reset_fails, fails);
}
void weir_fake_break_all(weir_fake *f)
{
    atomic_fetch_add(&f->break_gen, 1);
}
void weir_fake_set_error(weir_fake *f, const char *msg)
{
    pthread_mutex_lock(&f->mu);
    snprintf(f->error, sizeof f->error, "%s", msg);
    pthread_mutex_unlock(&f->mu);
}

void weir_fake_counts_get(weir_fake *f, weir_fake_counts *o)
{
    o->connects = atomic_load(&f->connects);
    o->connect_failures = atomic_load(&f->connect_failures);
    o->open = atomic_load(&f->open);
    o->max_open = atomic_load(&f->max_open);
    o->validates = atomic_load(&f->validates);
    o->validate_failures = atomic_load(&f->validate_failures);
    o->resets = atomic_load(&f->resets);
    o->closes = atomic_load(&f->closes);
    o->max_connecting = atomic_load(&f->max_connecting);
}
