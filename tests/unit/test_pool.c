/* test_pool.c — single-caller behaviour: reuse, LIFO, validation, retirement,
 * hooks, operations, statistics, leaks and fork. */
#include "helpers.h"

#include <sys/wait.h>

static uint64_t serial(weir_conn *c)
{
    return ((weir_fake_conn *)weir_conn_handle(c))->serial;
}

static void checkout_and_reuse(void **state)
{
    fixture *f = *state;
    fixture_open(f);
    weir_conn *c;
    assert_int_equal(weir_checkout(f->pool, &c), 0);
    assert_non_null(weir_conn_handle(c));
    assert_ptr_equal(weir_conn_pool(c), f->pool);
    uint64_t s = serial(c);
    weir_pool_stats st = pool_stats(f->pool);
    assert_int_equal(st.active, 1);
    assert_int_equal(st.total, 1);
    weir_checkin(c);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(weir_checkout(f->pool, &c), 0);
        assert_int_equal(serial(c), s); /* the same connection every time */
        weir_checkin(c);
    }
    st = pool_stats(f->pool);
    assert_int_equal(st.created_total, 1);
    assert_int_equal(st.acquires_total, 101);
    assert_int_equal(st.idle, 1);
    assert_int_equal(st.active, 0);
    assert_int_equal(fake_counts(f->fake).connects, 1);
    weir_checkin(NULL); /* no-op */
    assert_int_equal(weir_checkout(NULL, &c), WEIR_EINVAL);
    assert_int_equal(weir_checkout(f->pool, NULL), WEIR_EINVAL);
    assert_string_equal(weir_pool_name(f->pool), "fake://user:***@fakehost/db");
}

typedef struct take_arg {
    weir_pool *pool;
    uint64_t serials[3];
    int n;
    int rc[3]; /* checked on the main thread: cmocka's asserts are not thread-safe */
} take_arg;

static void *take_n(void *arg)
{
    take_arg *a = arg;
    weir_conn *c[3];
    int got = 0;
    for (int i = 0; i < a->n; i++) {
        if ((a->rc[i] = weir_checkout(a->pool, &c[i])) != 0) break;
        a->serials[i] = serial(c[i]);
        got++;
    }
    for (int i = 0; i < got; i++) weir_checkin(c[i]);
    return NULL;
}

static void idle_is_lifo(void **state)
{
    fixture *f = *state;
    fixture_open(f);
    weir_conn *a, *b, *c;
    assert_int_equal(weir_checkout(f->pool, &a), 0);
    assert_int_equal(weir_checkout(f->pool, &b), 0);
    assert_int_equal(weir_checkout(f->pool, &c), 0);
    uint64_t sa = serial(a), sb = serial(b), sc = serial(c);
    weir_checkin(a); /* parked by this thread */
    weir_checkin(b); /* shared idle list */
    weir_checkin(c); /* shared idle list, on top */
    /* another thread takes the most recently returned first */
    take_arg t = {.pool = f->pool, .n = 2};
    pthread_t th;
    pthread_create(&th, NULL, take_n, &t);
    pthread_join(th, NULL);
    assert_int_equal(t.rc[0], 0);
    assert_int_equal(t.rc[1], 0);
    assert_int_equal(t.serials[0], sc);
    assert_int_equal(t.serials[1], sb);
    /* and this thread still finds its own */
    assert_int_equal(weir_checkout(f->pool, &a), 0);
    assert_int_equal(serial(a), sa);
    weir_checkin(a);
}

/* 0: every checkout of a connection that was returned validates it, however
 * soon (the coarse clock reads 0 ms for a quick return: PgBouncer's
 * server_check_delay = 0 checks every time). */
static void validate_after_zero_means_every_time(void **state)
{
    fixture *f = *state;
    f->o.validate_idle_after_ms = 0;
    fixture_open(f);
    weir_conn *c;
    assert_int_equal(weir_checkout(f->pool, &c), 0); /* new: not validated */
    weir_checkin(c);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(weir_checkout(f->pool, &c), 0);
        weir_checkin(c);
    }
    assert_int_equal(fake_counts(f->fake).validates, 5);
}

static void validates_only_after_idle(void **state)
{
    fixture *f = *state;
    f->o.validate_idle_after_ms = 60;
    fixture_open(f);
    weir_conn *c;
    assert_int_equal(weir_checkout(f->pool, &c), 0);
    uint64_t s = serial(c);
    weir_checkin(c);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(weir_checkout(f->pool, &c), 0);
        weir_checkin(c);
    }
    assert_int_equal(fake_counts(f->fake).validates, 0);
    sleep_ms(100);
    assert_int_equal(weir_checkout(f->pool, &c), 0);
    assert_int_equal(fake_counts(f->fake).validates, 1);
    assert_int_equal(serial(c), s);
    weir_checkin(c);
    /* the server dropped it while idle: validation catches it, the caller gets a new one */
    sleep_ms(100);
    weir_fake_break_all(f->fake);
    assert_int_equal(weir_checkout(f->pool, &c), 0);
    assert_int_not_equal(serial(c), s);
    weir_checkin(c);
    weir_pool_stats st = pool_stats(f->pool);
    assert_int_equal(st.closed_total[WEIR_CLOSE_BROKEN], 1);
    char err[256];
    assert_true(weir_pool_last_error(f->pool, err, sizeof err) > 0);
    assert_string_equal(err, "fake: server closed the connection unexpectedly");
}

static void dirty_is_reset_or_closed(void **state)
{
    fixture *f = *state;
    fixture_open(f);
    weir_conn *c;
    assert_int_equal(weir_checkout(f->pool, &c), 0);
    uint64_t s = serial(c);
    ((weir_fake_conn *)weir_conn_handle(c))->dirty = true; /* e.g. left in a transaction */
    weir_checkin(c);
    assert_int_equal(fake_counts(f->fake).resets, 1);
    assert_int_equal(weir_checkout(f->pool, &c), 0);
    assert_int_equal(serial(c), s);
    assert_false(((weir_fake_conn *)weir_conn_handle(c))->dirty); /* next user sees it clean */
    /* a reset that fails: the connection is closed, never handed on */
    weir_fake_set_reset_fails(f->fake, true);
    ((weir_fake_conn *)weir_conn_handle(c))->dirty = true;
    weir_checkin(c);
    assert_int_equal(fake_counts(f->fake).closes, 1);
    assert_int_equal(weir_checkout(f->pool, &c), 0);
    assert_int_not_equal(serial(c), s);
    assert_false(((weir_fake_conn *)weir_conn_handle(c))->dirty);
    /* marked broken by the caller */
    s = serial(c);
    weir_conn_mark_broken(c);
    weir_checkin(c);
    assert_int_equal(weir_checkout(f->pool, &c), 0);
    assert_int_not_equal(serial(c), s);
    weir_checkin(c);
    assert_int_equal(pool_stats(f->pool).closed_total[WEIR_CLOSE_BROKEN], 2);
}

static void max_uses_retires(void **state)
{
    fixture *f = *state;
    f->o.max_uses = 3;
    fixture_open(f);
    weir_conn *c;
    uint64_t seen[7];
    for (int i = 0; i < 7; i++) {
        assert_int_equal(weir_checkout(f->pool, &c), 0);
        seen[i] = serial(c);
        weir_checkin(c);
    }
    assert_int_equal(seen[0], seen[2]);
    assert_int_not_equal(seen[2], seen[3]);
    assert_int_equal(seen[3], seen[5]);
    assert_int_not_equal(seen[5], seen[6]);
    assert_int_equal(pool_stats(f->pool).closed_total[WEIR_CLOSE_USES], 2);
}

typedef struct expiry {
    int n;
    int64_t min_left, max_left, lifetime;
    int64_t distinct[64];
    int ndistinct;
} expiry;

static void collect_expiry(const weir_conn_info *ci, void *ud)
{
    expiry *e = ud;
    int64_t left = ci->expires_ms - ci->created_ms;
    if (e->n == 0 || left < e->min_left) e->min_left = left;
    if (e->n == 0 || left > e->max_left) e->max_left = left;
    e->n++;
    bool seen = false;
    for (int i = 0; i < e->ndistinct; i++) seen |= e->distinct[i] == left;
    if (!seen && e->ndistinct < 64) e->distinct[e->ndistinct++] = left;
}

static void lifetime_has_jitter(void **state)
{
    fixture *f = *state;
    f->o.max_size = 20;
    f->o.min_idle = 20;
    f->o.max_lifetime_ms = 2000;
    fixture_open(f);
    assert_true(WAIT_FOR(pool_stats(f->pool).idle == 20, 2000));
    expiry e = {0};
    assert_int_equal(weir_pool_foreach_conn(f->pool, collect_expiry, &e), 20);
    /* every lifetime in [95 %, 100 %] of max_lifetime, and not all the same */
    assert_true(e.min_left >= 1900);
    assert_true(e.max_left <= 2000);
    assert_true(e.ndistinct >= 10);
    /* they are retired (and min_idle refills) */
    assert_true(WAIT_FOR(pool_stats(f->pool).closed_total[WEIR_CLOSE_LIFETIME] >= 20, 3000));
    assert_true(WAIT_FOR(pool_stats(f->pool).idle == 20, 2000));
}

static void lifetime_retires_checked_out_on_checkin(void **state)
{
    fixture *f = *state;
    f->o.max_lifetime_ms = 100;
    fixture_open(f);
    weir_conn *c;
    assert_int_equal(weir_checkout(f->pool, &c), 0);
    uint64_t s = serial(c);
    sleep_ms(150); /* expires while checked out: never closed under the caller */
    assert_int_equal(fake_counts(f->fake).closes, 0);
    weir_checkin(c);
    assert_int_equal(fake_counts(f->fake).closes, 1);
    assert_int_equal(weir_checkout(f->pool, &c), 0);
    assert_int_not_equal(serial(c), s);
    weir_checkin(c);
}

static void idle_timeout_keeps_min_idle(void **state)
{
    fixture *f = *state;
    f->o.max_size = 5;
    f->o.min_idle = 2;
    f->o.idle_timeout_ms = 100;
    fixture_open(f);
    weir_conn *c[5];
    for (int i = 0; i < 5; i++) assert_int_equal(weir_checkout(f->pool, &c[i]), 0);
    for (int i = 0; i < 5; i++) weir_checkin(c[i]);
    assert_int_equal(pool_stats(f->pool).total, 5);
    assert_true(WAIT_FOR(pool_stats(f->pool).total == 2, 1000));
    sleep_ms(200); /* and not below min_idle */
    weir_pool_stats st = pool_stats(f->pool);
    assert_int_equal(st.total, 2);
    assert_int_equal(st.closed_total[WEIR_CLOSE_IDLE], 3);
}

static void min_idle_refills(void **state)
{
    fixture *f = *state;
    f->o.max_size = 5;
    f->o.min_idle = 3;
    fixture_open(f);
    assert_true(WAIT_FOR(pool_stats(f->pool).idle == 3, 1000));
    weir_conn *c;
    assert_int_equal(weir_checkout(f->pool, &c), 0);
    weir_conn_mark_broken(c);
    weir_checkin(c);
    assert_true(WAIT_FOR(pool_stats(f->pool).idle == 3, 1000));
    assert_int_equal(fake_counts(f->fake).connects, 4);
}

static void keepalive_finds_dead_idle(void **state)
{
    fixture *f = *state;
    f->o.max_size = 2;
    f->o.min_idle = 2;
    f->o.keepalive_ms = 50;
    fixture_open(f);
    assert_true(WAIT_FOR(pool_stats(f->pool).idle == 2, 1000));
    assert_true(WAIT_FOR(fake_counts(f->fake).validates >= 4, 1000));
    assert_int_equal(pool_stats(f->pool).total, 2);
    weir_fake_break_all(f->fake); /* the server restarted */
    assert_true(WAIT_FOR(pool_stats(f->pool).closed_total[WEIR_CLOSE_BROKEN] == 2, 1000));
    assert_true(WAIT_FOR(pool_stats(f->pool).idle == 2, 1000));
    assert_int_equal(fake_counts(f->fake).connects, 4);
}

typedef struct hook_counts {
    _Atomic int create, checkout, checkin, destroy;
    _Atomic int refuse_checkout;
    _Atomic int last_reason;
} hook_counts;

static int h_create(void *ud, weir_conn *c)
{
    assert_non_null(weir_conn_handle(c));
    atomic_fetch_add(&((hook_counts *)ud)->create, 1);
    return 0;
}
static int h_checkout(void *ud, weir_conn *c)
{
    (void)c;
    hook_counts *h = ud;
    atomic_fetch_add(&h->checkout, 1);
    return atomic_exchange(&h->refuse_checkout, 0);
}
static int h_checkin(void *ud, weir_conn *c)
{
    (void)c;
    atomic_fetch_add(&((hook_counts *)ud)->checkin, 1);
    return 0;
}
static void h_destroy(void *ud, weir_conn *c)
{
    atomic_store(&((hook_counts *)ud)->last_reason, weir_conn_close_reason(c));
    atomic_fetch_add(&((hook_counts *)ud)->destroy, 1);
}

static void hooks_are_called(void **state)
{
    fixture *f = *state;
    f->fake = weir_fake_new();
    hook_counts h = {0};
    weir_hooks hooks = {.ud = &h,
                        .on_create = h_create,
                        .on_checkout = h_checkout,
                        .on_checkin = h_checkin,
                        .on_destroy = h_destroy};
    assert_int_equal(weir_pool_create(&f->pool, weir_fake_driver(), f->fake, &f->o, &hooks), 0);
    weir_conn *c;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(weir_checkout(f->pool, &c), 0);
        weir_checkin(c);
    }
    assert_int_equal(h.create, 1);
    assert_int_equal(h.checkout, 3);
    assert_int_equal(h.checkin, 3);
    /* a checkout hook that refuses: that connection is closed, the caller gets another */
    atomic_store(&h.refuse_checkout, 1);
    assert_int_equal(weir_checkout(f->pool, &c), 0);
    assert_int_equal(h.destroy, 1);
    assert_int_equal(h.last_reason, WEIR_CLOSE_BROKEN); /* the hook's reason, in the hook */
    assert_int_equal(weir_conn_close_reason(c), -1);    /* and none outside it */
    assert_int_equal(h.create, 2);
    weir_checkin(c);
    /* evicted: the reason the server logs as PgBouncer's "closing because: evicted" */
    assert_int_equal(weir_pool_evict_all(f->pool), 1); /* the idle one, closed now */
    assert_int_equal(h.last_reason, WEIR_CLOSE_EVICTED);
    assert_int_equal(weir_checkout(f->pool, &c), 0);
    weir_checkin(c);
    weir_pool_destroy(f->pool);
    f->pool = NULL;
    assert_int_equal(h.destroy, 3);
}

static int refuse_create(void *ud, weir_conn *c)
{
    (void)ud;
    (void)c;
    return -1;
}

static void create_hook_failure_is_a_connect_error(void **state)
{
    fixture *f = *state;
    f->fake = weir_fake_new();
    weir_hooks hooks = {.on_create = refuse_create};
    assert_int_equal(weir_pool_create(&f->pool, weir_fake_driver(), f->fake, &f->o, &hooks), 0);
    weir_conn *c;
    assert_int_equal(weir_checkout_timeout(f->pool, 500, &c), WEIR_ECONNECT);
    char err[256];
    weir_pool_last_error(f->pool, err, sizeof err);
    assert_string_equal(err, "on_create hook refused the connection");
    assert_true(pool_stats(f->pool).connect_errors_total >= 1);
    assert_int_equal(fake_counts(f->fake).open, 0);
}

typedef struct timed_take {
    weir_pool *pool;
    int64_t timeout_ms;
    int rc;
    int64_t waited_ms;
} timed_take;

static void *timed_take_main(void *arg)
{
    timed_take *t = arg;
    weir_conn *c;
    int64_t t0 = weir_now_ns();
    t->rc = weir_checkout_timeout(t->pool, t->timeout_ms, &c);
    t->waited_ms = ms_since(t0);
    if (t->rc == 0) weir_checkin(c);
    return NULL;
}

static void pause_and_resume(void **state)
{
    fixture *f = *state;
    fixture_open(f);
    weir_conn *c;
    assert_int_equal(weir_checkout(f->pool, &c), 0);
    weir_checkin(c);
    assert_int_equal(weir_pool_pause(f->pool), 0);
    assert_true(pool_stats(f->pool).paused);
    timed_take t = {.pool = f->pool, .timeout_ms = 100};
    timed_take_main(&t); /* paused: waits, then times out */
    assert_int_equal(t.rc, WEIR_ETIMEDOUT);
    assert_true(t.waited_ms >= 99);
    t.timeout_ms = 2000;
    pthread_t th;
    pthread_create(&th, NULL, timed_take_main, &t);
    sleep_ms(150);
    assert_int_equal(weir_pool_resume(f->pool), 0);
    pthread_join(th, NULL);
    assert_int_equal(t.rc, 0);
    assert_true(t.waited_ms >= 140 && t.waited_ms < 150 + 2 * slack_ms());
    assert_int_equal(fake_counts(f->fake).connects, 1); /* no connects while paused */
}

static void resize_shrinks_and_grows(void **state)
{
    fixture *f = *state;
    f->o.max_size = 4;
    fixture_open(f);
    weir_conn *c[6];
    for (int i = 0; i < 4; i++) assert_int_equal(weir_checkout(f->pool, &c[i]), 0);
    assert_int_equal(weir_pool_resize(f->pool, 2, -1), 0);
    assert_int_equal(pool_stats(f->pool).max_size, 2);
    for (int i = 0; i < 4; i++) weir_checkin(c[i]);
    weir_pool_stats st = pool_stats(f->pool);
    assert_int_equal(st.total, 2); /* the surplus closed on checkin */
    assert_int_equal(fake_counts(f->fake).open, 2);
    assert_int_equal(weir_pool_resize(f->pool, 6, 1), 0);
    for (int i = 0; i < 6; i++) assert_int_equal(weir_checkout(f->pool, &c[i]), 0);
    assert_int_equal(pool_stats(f->pool).total, 6);
    timed_take t = {.pool = f->pool, .timeout_ms = 50};
    timed_take_main(&t);
    assert_int_equal(t.rc, WEIR_ETIMEDOUT);
    for (int i = 0; i < 6; i++) weir_checkin(c[i]);
    assert_int_equal(weir_pool_resize(f->pool, 3, -1), 0); /* idle surplus closes at once */
    assert_int_equal(pool_stats(f->pool).total, 3);
    assert_int_equal(weir_pool_resize(f->pool, 0, -1), WEIR_EINVAL);
    assert_int_equal(weir_pool_resize(f->pool, 2, 3), WEIR_EINVAL);
}

static void evict_all_after_failover(void **state)
{
    fixture *f = *state;
    fixture_open(f);
    weir_conn *a, *b, *c;
    assert_int_equal(weir_checkout(f->pool, &a), 0);
    assert_int_equal(weir_checkout(f->pool, &b), 0);
    assert_int_equal(weir_checkout(f->pool, &c), 0);
    weir_checkin(a);
    weir_checkin(b);
    assert_int_equal(weir_pool_evict_all(f->pool), 2);
    assert_int_equal(fake_counts(f->fake).open, 1);
    weir_checkin(c); /* closed on return */
    assert_int_equal(fake_counts(f->fake).open, 0);
    assert_int_equal(pool_stats(f->pool).closed_total[WEIR_CLOSE_EVICTED], 3);
    assert_int_equal(weir_checkout(f->pool, &a), 0);
    assert_int_equal(serial(a), 4);
    weir_checkin(a);
}

typedef struct where {
    const char *file;
    int line;
    int active;
} where;

static void find_active(const weir_conn_info *ci, void *ud)
{
    where *w = ud;
    if (strcmp(ci->state, "active") != 0) return;
    w->active++;
    w->file = ci->file;
    w->line = ci->line;
}

static void stats_conn_info_and_prometheus(void **state)
{
    fixture *f = *state;
    snprintf(f->o.name, sizeof f->o.name, "orders \"eu\"");
    fixture_open(f);
    weir_conn *c, *d;
    assert_int_equal(weir_checkout(f->pool, &c), 0);
    int line = __LINE__ + 1;
    assert_int_equal(weir_checkout(f->pool, &d), 0);
    weir_checkin(c);
    where w = {0};
    assert_int_equal(weir_pool_foreach_conn(f->pool, find_active, &w), 2);
    assert_int_equal(w.active, 1);
    assert_non_null(strstr(w.file, "test_pool.c"));
    assert_int_equal(w.line, line);
    size_t len;
    char *text = weir_pool_prometheus(f->pool, &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    const char *must[] = {
        "weir_pool_connections{pool=\"orders \\\"eu\\\"\",state=\"idle\"} 1\n",
        "weir_pool_connections{pool=\"orders \\\"eu\\\"\",state=\"active\"} 1\n",
        "weir_pool_waiters{pool=\"orders \\\"eu\\\"\"} 0\n",
        "weir_pool_max_connections{pool=\"orders \\\"eu\\\"\"} 10\n",
        "# TYPE weir_pool_acquire_seconds histogram\n",
        "weir_pool_acquire_seconds_count{pool=\"orders \\\"eu\\\"\"} 2\n",
        "weir_pool_acquire_seconds_bucket{pool=\"orders \\\"eu\\\"\",le=\"+Inf\"} 2\n",
        "# TYPE weir_pool_usage_seconds histogram\n",
        "weir_pool_usage_seconds_count{pool=\"orders \\\"eu\\\"\"} 1\n",
        "# TYPE weir_pool_connect_seconds histogram\n",
        "weir_pool_connect_seconds_count{pool=\"orders \\\"eu\\\"\"} 2\n",
        "weir_pool_connections_created_total{pool=\"orders \\\"eu\\\"\"} 2\n",
        "weir_pool_connections_closed_total{pool=\"orders \\\"eu\\\"\",reason=\"lifetime\"} 0\n",
        "weir_pool_acquire_timeouts_total{pool=\"orders \\\"eu\\\"\"} 0\n",
        "weir_pool_connect_errors_total{pool=\"orders \\\"eu\\\"\"} 0\n",
        "weir_pool_leaks_total{pool=\"orders \\\"eu\\\"\"} 0\n",
        "# TYPE weir_pool_handoffs_total counter\n",
        "weir_pool_handoffs_total{pool=\"orders \\\"eu\\\"\",thread=\"same\"} 0\n",
        "weir_pool_handoffs_total{pool=\"orders \\\"eu\\\"\",thread=\"other\"} 0\n",
    };
    for (size_t i = 0; i < sizeof must / sizeof *must; i++) {
        if (!strstr(text, must[i])) fail_msg("missing from metrics: %s\n%s", must[i], text);
    }
    free(text);

    /* labels of the caller's choosing in place of pool="...", escaped */
    const char *ln[2] = {"database", "user"}, *lv[2] = {"app\\db", "bob\n\"x\""};
    assert_int_equal(weir_pool_set_metric_labels(f->pool, ln, lv, 2), 0);
    text = weir_pool_prometheus(f->pool, NULL);
    assert_non_null(text);
    const char *want = "weir_pool_connections{database=\"app\\\\db\",user=\"bob\\n\\\"x\\\"\","
                       "state=\"idle\"} 1\n";
    if (!strstr(text, want)) fail_msg("missing from metrics: %s\n%s", want, text);
    assert_null(strstr(text, "pool=\""));
    free(text);
    /* refused: bad names, reserved names, duplicates, too long */
    const char *bad[] = {"1x", "__x", "state", "le", "reason", "direction", "thread", "a-b", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *n1[1] = {bad[i]}, *v1[1] = {"v"};
        assert_int_equal(weir_pool_set_metric_labels(f->pool, n1, v1, 1), WEIR_EINVAL);
    }
    const char *dn[2] = {"a", "a"}, *dv[2] = {"1", "2"};
    assert_int_equal(weir_pool_set_metric_labels(f->pool, dn, dv, 2), WEIR_EINVAL);
    char big[1100];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    const char *bn[1] = {"a"}, *bv[1] = {big};
    assert_int_equal(weir_pool_set_metric_labels(f->pool, bn, bv, 1), WEIR_EINVAL);
    /* n = 0: back to pool="..." */
    assert_int_equal(weir_pool_set_metric_labels(f->pool, NULL, NULL, 0), 0);
    text = weir_pool_prometheus(f->pool, NULL);
    assert_non_null(strstr(text, "weir_pool_waiters{pool=\"orders \\\"eu\\\"\"} 0\n"));
    free(text);
    weir_checkin(d);
}

static void leak_report_names_file_and_line(void **state)
{
    fixture *f = *state;
    f->fake = weir_fake_new();
    f->o.leak_threshold_ms = 50;
    log_capture lc = {.mu = PTHREAD_MUTEX_INITIALIZER};
    weir_hooks hooks = {.ud = &lc, .on_log = capture_log};
    assert_int_equal(weir_pool_create(&f->pool, weir_fake_driver(), f->fake, &f->o, &hooks), 0);
    weir_conn *c;
    int line = __LINE__ + 1;
    assert_int_equal(weir_checkout(f->pool, &c), 0);
    assert_true(WAIT_FOR(pool_stats(f->pool).leaks_total == 1, 1000));
    sleep_ms(100); /* reported once per checkout, not every tick */
    assert_int_equal(pool_stats(f->pool).leaks_total, 1);
    char want[128];
    snprintf(want, sizeof want, "test_pool.c:%d has been held for", line);
    pthread_mutex_lock(&lc.mu);
    if (!strstr(lc.last, want)) fail_msg("leak report '%s' lacks '%s'", lc.last, want);
    assert_non_null(strstr(lc.last, "possible connection leak"));
    assert_null(strstr(lc.last, "secret")); /* the pool name is masked */
    pthread_mutex_unlock(&lc.mu);
    weir_checkin(c);
    /* a short checkout is not a leak */
    assert_int_equal(weir_checkout(f->pool, &c), 0);
    weir_checkin(c);
    sleep_ms(120);
    assert_int_equal(pool_stats(f->pool).leaks_total, 1);
}

static void forked_child_is_refused(void **state)
{
    fixture *f = *state;
    fixture_open(f);
    weir_conn *c;
    assert_int_equal(weir_checkout(f->pool, &c), 0);
    weir_checkin(c);
    fflush(NULL);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        /* the child reports through the pipe: under valgrind its exit status
         * also carries the (intended) unreleased pool */
        weir_conn *cc;
        int rc[3];
        rc[0] = weir_checkout(f->pool, &cc);
        weir_pool_stats st;
        rc[1] = weir_pool_stats_get(f->pool, &st);
        rc[2] = weir_pool_resize(f->pool, 3, -1);
        weir_pool_destroy(f->pool); /* releases nothing in the child */
        ssize_t n = write(fds[1], rc, sizeof rc);
        _exit(n == (ssize_t)sizeof rc ? 0 : 1);
    }
    close(fds[1]);
    int rc[3] = {0, 0, 0};
    assert_int_equal(read(fds[0], rc, sizeof rc), (ssize_t)sizeof rc);
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(rc[0], WEIR_EFORK);
    assert_int_equal(rc[1], WEIR_EFORK);
    assert_int_equal(rc[2], WEIR_EFORK);
    /* the parent's pool and connection are untouched */
    assert_int_equal(weir_checkout(f->pool, &c), 0);
    assert_int_equal(serial(c), 1);
    weir_checkin(c);
    assert_int_equal(fake_counts(f->fake).closes, 0);
}

/* A shared limit caps the pools on it together; a pool with a caller waiting
 * gets a unit by making another pool close an idle connection; raising the
 * cap lets a waiter through; destroying a pool gives its units back. */
static void shared_limit_caps_and_reclaims(void **state)
{
    fixture *f = *state;
    f->o.max_size = 5;
    fixture_open(f); /* pool A */
    weir_fake *fb = weir_fake_new();
    weir_pool *b;
    assert_int_equal(weir_pool_create(&b, weir_fake_driver(), fb, &f->o, NULL), 0);
    weir_limit *l;
    assert_int_equal(weir_limit_create(&l, 0), WEIR_EINVAL);
    assert_int_equal(weir_limit_create(&l, 3), 0);

    /* attaching counts what the pool already has open */
    weir_conn *a[4], *bc[2];
    assert_int_equal(weir_checkout(f->pool, &a[0]), 0);
    assert_int_equal(weir_pool_attach_limit(f->pool, l), 0);
    assert_int_equal(weir_pool_attach_limit(b, l), 0);
    assert_int_equal(weir_pool_attach_limit(b, l), 0); /* twice is once */
    assert_int_equal(weir_limit_used(l), 1);
    assert_int_equal(weir_checkout(f->pool, &a[1]), 0);
    assert_int_equal(weir_checkout(f->pool, &a[2]), 0);
    assert_int_equal(weir_limit_used(l), 3);

    /* full: A's fourth caller times out although A itself has room */
    int64_t t0 = weir_now_ns();
    assert_int_equal(weir_checkout_timeout(f->pool, 200, &a[3]), WEIR_ETIMEDOUT);
    assert_true(ms_since(t0) >= 150);
    assert_int_equal(pool_stats(f->pool).total, 3);

    /* A's connections go idle; B's caller gets one of their units */
    weir_checkin(a[1]);
    weir_checkin(a[2]);
    t0 = weir_now_ns();
    assert_int_equal(weir_checkout_timeout(b, 2000, &bc[0]), 0);
    assert_true(ms_since(t0) < 200 + slack_ms());
    assert_int_equal(weir_limit_used(l), 3);
    assert_int_equal(pool_stats(f->pool).total, 2);
    assert_int_equal(pool_stats(f->pool).closed_total[WEIR_CLOSE_EVICTED], 1);

    /* nothing idle anywhere: B waits until the cap goes up */
    assert_int_equal(weir_checkout(f->pool, &a[1]), 0);
    assert_int_equal(weir_checkout_timeout(b, 150, &bc[1]), WEIR_ETIMEDOUT);
    assert_int_equal(weir_limit_set_max(l, 4), 0);
    assert_int_equal(weir_limit_max(l), 4);
    assert_int_equal(weir_checkout_timeout(b, 2000, &bc[1]), 0);
    assert_int_equal(weir_limit_used(l), 4);

    /* destroying B gives its two units back */
    weir_checkin(bc[0]);
    weir_checkin(bc[1]);
    weir_pool_destroy(b);
    weir_fake_free(fb);
    assert_int_equal(weir_limit_used(l), 2);
    assert_int_equal(weir_checkout(f->pool, &a[2]), 0);
    assert_int_equal(weir_checkout(f->pool, &a[3]), 0);
    assert_int_equal(weir_limit_used(l), 4);
    for (int i = 0; i < 4; i++) weir_checkin(a[i]);
    fixture_close(f);
    assert_int_equal(weir_limit_used(l), 0);
    weir_limit_destroy(l);
}

/* A pool that made another close an idle connection opens one in its
 * place even if the caller that asked was served meanwhile by one of its
 * own coming back: the pools on the limit end with as many connections as
 * before, not one fewer (PgBouncer's test_max_db_connections counts them). */
static void shared_limit_replaces_what_it_reclaimed(void **state)
{
    fixture *f = *state;
    f->o.max_size = 4;
    fixture_open(f); /* pool A, whose closes are slow */
    weir_fake_set_close_delay_ms(f->fake, 300);
    weir_fake *fb = weir_fake_new();
    weir_pool *b;
    assert_int_equal(weir_pool_create(&b, weir_fake_driver(), fb, &f->o, NULL), 0);
    weir_limit *l;
    assert_int_equal(weir_limit_create(&l, 2), 0);
    assert_int_equal(weir_pool_attach_limit(f->pool, l), 0);
    assert_int_equal(weir_pool_attach_limit(b, l), 0);
    weir_conn *a, *bc;
    assert_int_equal(weir_checkout(f->pool, &a), 0);
    weir_checkin(a); /* A: one idle */
    assert_int_equal(weir_checkout(b, &bc), 0);
    assert_int_equal(weir_limit_used(l), 2);

    /* B's second caller waits: B asks A, A starts closing (300 ms) */
    timed_take t = {.pool = b, .timeout_ms = 2000};
    pthread_t th;
    pthread_create(&th, NULL, timed_take_main, &t);
    sleep_ms(100);
    /* B's own connection comes back and serves that caller first */
    weir_checkin(bc);
    pthread_join(th, NULL);
    assert_int_equal(t.rc, 0);
    assert_true(t.waited_ms < 250);
    /* A's close ends, the unit is free: B opens one in its place */
    int64_t t0 = weir_now_ns();
    while (pool_stats(f->pool).total > 0 && ms_since(t0) < 2000) sleep_ms(10);
    while (pool_stats(b).total < 2 && ms_since(t0) < 2000) sleep_ms(10);
    assert_int_equal(pool_stats(f->pool).total, 0);
    assert_int_equal(pool_stats(f->pool).closed_total[WEIR_CLOSE_EVICTED], 1);
    assert_int_equal(pool_stats(b).total, 2);
    assert_int_equal(weir_limit_used(l), 2);
    sleep_ms(150); /* and no more than that */
    assert_int_equal(fake_counts(fb).connects, 2);
    weir_pool_destroy(b);
    weir_fake_free(fb);
    fixture_close(f);
    weir_limit_destroy(l);
}

/* min_idle does not push a pool past a shared limit, nor make it take
 * another pool's idle connections. */
static void shared_limit_bounds_min_idle(void **state)
{
    fixture *f = *state;
    f->o.max_size = 4;
    fixture_open(f);
    weir_limit *l;
    assert_int_equal(weir_limit_create(&l, 2), 0);
    assert_int_equal(weir_pool_attach_limit(f->pool, l), 0);
    weir_conn *c;
    assert_int_equal(weir_checkout(f->pool, &c), 0);
    weir_checkin(c);
    weir_fake *fb = weir_fake_new();
    weir_pool *b;
    assert_int_equal(weir_pool_create(&b, weir_fake_driver(), fb, &f->o, NULL), 0);
    assert_int_equal(weir_pool_attach_limit(b, l), 0);
    assert_int_equal(weir_pool_resize(b, 4, 3), 0);
    sleep_ms(200);
    assert_int_equal(weir_limit_used(l), 2);
    assert_int_equal(pool_stats(f->pool).total, 1); /* not reclaimed for min_idle */
    assert_true(pool_stats(b).total <= 1);
    weir_pool_destroy(b);
    weir_fake_free(fb);
    fixture_close(f);
    weir_limit_destroy(l);
}

/* min_idle of 12 with 8 creator threads and a 50 ms connect: without
 * warm-up the target sees 8 connects at once; with warmup_batch = 3 never
 * more than 3, in batches with a pause between; a caller who waits is
 * served at once all the same. */
static void warmup_fills_min_idle_in_batches(void **state)
{
    fixture *f = *state;
    f->fake = weir_fake_new();
    weir_fake_set_connect_delay_ms(f->fake, 50);
    f->o.min_idle = 12;
    f->o.max_size = 20;
    f->o.creator_threads = 8;
    fixture_open(f);
    assert_true(WAIT_FOR(pool_stats(f->pool).idle >= 12, 5000));
    int64_t storm = fake_counts(f->fake).max_connecting;
    fixture_close(f);
    assert_true(storm > 3); /* what warm-up prevents */

    f->fake = weir_fake_new();
    weir_fake_set_connect_delay_ms(f->fake, 50);
    f->o.warmup_batch = 3;
    f->o.warmup_pause_ms = 100;
    int64_t t0 = weir_now_ns();
    fixture_open(f);
    assert_true(WAIT_FOR(pool_stats(f->pool).idle >= 12, 10000));
    int64_t took = ms_since(t0);
    weir_fake_counts c = fake_counts(f->fake);
    printf("warm-up: 12 connections in %lld ms, at most %lld connecting at once (%lld without)\n",
           (long long)took, (long long)c.max_connecting, (long long)storm);
    assert_true(c.max_connecting <= 3);
    /* 4 batches of 50 ms, 3 pauses of 100 ms */
    assert_true(took >= 4 * 50 + 3 * 100 - 20);
    fixture_close(f);

    /* a waiting caller is not held back by the warm-up */
    f->fake = weir_fake_new();
    weir_fake_set_connect_delay_ms(f->fake, 50);
    f->o.warmup_pause_ms = 2000;
    fixture_open(f);
    assert_true(WAIT_FOR(pool_stats(f->pool).total >= 3, 2000)); /* the first batch */
    weir_conn *held[4];
    for (int i = 0; i < 3; i++) assert_int_equal(weir_checkout(f->pool, &held[i]), 0);
    t0 = weir_now_ns();
    assert_int_equal(weir_checkout(f->pool, &held[3]), 0); /* in the 2 s pause */
    assert_true(ms_since(t0) < 1000);
    for (int i = 0; i < 4; i++) weir_checkin(held[i]);
    fixture_close(f);
}

typedef struct step_load {
    weir_pool *pool;
    _Atomic bool *stop;
    int64_t hold_ms;
    int64_t n, waited_over_20ms;
    pthread_t th;
} step_load;

static void *step_main(void *arg)
{
    step_load *l = arg;
    while (!atomic_load(l->stop)) {
        weir_conn *c;
        int64_t t0 = weir_now_ns();
        if (weir_checkout(l->pool, &c) != 0) continue;
        if (ms_since(t0) > 20) l->waited_over_20ms++;
        sleep_ms(l->hold_ms);
        weir_checkin(c);
        l->n++;
    }
    return NULL;
}

static _Atomic int adaptive_log_lines;

static void count_adaptive(void *ud, weir_log_level level, const char *msg)
{
    (void)ud;
    if (level == WEIR_LOG_INFO && strstr(msg, "adaptive size"))
        atomic_fetch_add(&adaptive_log_lines, 1);
}

/* Adaptive sizing under a load step: 12 threads each holding a connection
 * 5 ms, in a loop, for 2 s, then nothing. The pool (cap 30) starts at
 * min_idle 2, grows to what the load needs, does not move while the load is
 * steady, and gives the connections back after it; every change logged and
 * counted. */
static void adaptive_size_follows_a_load_step(void **state)
{
    fixture *f = *state;
    f->o.min_idle = 2;
    f->o.max_size = 30;
    f->o.adaptive = true;
    f->o.adaptive_wait_ms = 2;
    f->o.adaptive_period_ms = 100;
    f->o.housekeeping_ms = 20;
    f->o.idle_timeout_ms = 0;
    f->fake = weir_fake_new();
    weir_hooks h = {.on_log = count_adaptive};
    assert_int_equal(weir_pool_create(&f->pool, weir_fake_driver(), f->fake, &f->o, &h), 0);
    assert_true(WAIT_FOR(pool_stats(f->pool).idle >= 2, 2000));
    weir_pool_stats st = pool_stats(f->pool);
    assert_int_equal(st.max_size, 2); /* starts at the floor */
    assert_int_equal(st.cap, 30);
    enum { N = 12 };
    _Atomic bool stop = false;
    step_load l[N];
    for (int i = 0; i < N; i++) {
        l[i] = (step_load){.pool = f->pool, .stop = &stop, .hold_ms = 5};
        pthread_create(&l[i].th, NULL, step_main, &l[i]);
    }
    sleep_ms(1000); /* it grows within a few periods */
    weir_pool_stats mid = pool_stats(f->pool);
    sleep_ms(1000); /* the second second: steady */
    weir_pool_stats end = pool_stats(f->pool);
    atomic_store(&stop, true);
    int64_t waited = 0, n = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(l[i].th, NULL);
        waited += l[i].waited_over_20ms;
        n += l[i].n;
    }
    printf("adaptive: size %lld after 1 s, %lld after 2 s (grows %lld, shrinks %lld); "
           "%lld checkouts, %lld waited over 20 ms\n",
           (long long)mid.max_size, (long long)end.max_size, (long long)end.adaptive_grows_total,
           (long long)end.adaptive_shrinks_total, (long long)n, (long long)waited);
    assert_true(mid.max_size >= N);  /* what the load needs */
    assert_true(mid.max_size <= 30); /* never past the cap */
    /* steady load: no shrink, at most one more step up */
    assert_int_equal(end.adaptive_shrinks_total, mid.adaptive_shrinks_total);
    assert_true(end.adaptive_grows_total - mid.adaptive_grows_total <= 1);
    assert_true(end.total <= end.max_size);
    /* after the load: back down to the floor, step by step */
    /* the shrink sets the size under the lock and closes the idle
     * connections above it just after: total follows a moment later */
    assert_true(
        WAIT_FOR(pool_stats(f->pool).max_size == 2 && pool_stats(f->pool).total <= 2, 10000));
    st = pool_stats(f->pool);
    assert_int_equal(st.max_size, 2);
    assert_true(st.adaptive_shrinks_total >= 2);
    assert_int_equal(atomic_load(&adaptive_log_lines),
                     st.adaptive_grows_total + st.adaptive_shrinks_total);
    size_t len;
    char *page = weir_pool_prometheus(f->pool, &len);
    assert_non_null(strstr(page, "weir_pool_adaptive_changes_total{pool=\""));
    free(page);
}

/* weir_pool_set_adaptive on a live pool: off, the size is the cap at once
 * and load does not move it; on again, it starts from there and shrinks
 * back to the floor; a bad pool is refused. */
static void adaptive_turned_off_and_on(void **state)
{
    fixture *f = *state;
    f->o.min_idle = 1;
    f->o.max_size = 9;
    f->o.adaptive = true;
    f->o.adaptive_period_ms = 50;
    f->o.housekeeping_ms = 20;
    f->fake = weir_fake_new();
    assert_int_equal(weir_pool_create(&f->pool, weir_fake_driver(), f->fake, &f->o, NULL), 0);
    assert_int_equal(pool_stats(f->pool).max_size, 1);
    assert_int_equal(weir_pool_set_adaptive(f->pool, false, 0, 0), 0);
    weir_pool_stats st = pool_stats(f->pool);
    assert_int_equal(st.max_size, 9);
    assert_int_equal(st.cap, 9);
    /* 5 held at once: served without any adaptive change */
    weir_conn *c[5];
    for (int i = 0; i < 5; i++) assert_int_equal(weir_checkout_timeout(f->pool, 1000, &c[i]), 0);
    for (int i = 0; i < 5; i++) weir_checkin(c[i]);
    st = pool_stats(f->pool);
    assert_int_equal(st.adaptive_grows_total + st.adaptive_shrinks_total, 0);
    /* on again: from 9 down to the floor, the idle connections closed */
    assert_int_equal(weir_pool_set_adaptive(f->pool, true, 3, 50), 0);
    assert_true(
        WAIT_FOR(pool_stats(f->pool).max_size == 1 && pool_stats(f->pool).total <= 1, 10000));
    st = pool_stats(f->pool);
    assert_int_equal(st.max_size, 1);
    assert_true(st.adaptive_shrinks_total >= 2);
    assert_int_equal(weir_pool_set_adaptive(NULL, true, 0, 0), WEIR_EINVAL);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)
    const struct CMUnitTest tests[] = {
        T(checkout_and_reuse),
        T(idle_is_lifo),
        T(validate_after_zero_means_every_time),
        T(validates_only_after_idle),
        T(dirty_is_reset_or_closed),
        T(max_uses_retires),
        T(lifetime_has_jitter),
        T(lifetime_retires_checked_out_on_checkin),
        T(idle_timeout_keeps_min_idle),
        T(min_idle_refills),
        T(keepalive_finds_dead_idle),
        T(hooks_are_called),
        T(create_hook_failure_is_a_connect_error),
        T(pause_and_resume),
        T(resize_shrinks_and_grows),
        T(evict_all_after_failover),
        T(stats_conn_info_and_prometheus),
        T(leak_report_names_file_and_line),
        T(forked_child_is_refused),
        T(shared_limit_caps_and_reclaims),
        T(shared_limit_bounds_min_idle),
        T(shared_limit_replaces_what_it_reclaimed),
        T(warmup_fills_min_idle_in_batches),
        T(adaptive_size_follows_a_load_step),
        T(adaptive_turned_off_and_on),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
