/* test_registry.c — pools by URL: normalising, sharing, removing, closing
 * unused pools, and one metrics page for all. SQLite files stand in for
 * targets; test_pg covers a postgres:// URL. */
#include "helpers.h"

#include "weir/weir_registry.h"

static void normalising(void **state)
{
    (void)state;
    char out[512], err[256];
    struct {
        const char *in, *want;
    } ok[] = {
        {"POSTGRESQL://App:pw@DB.Example:6000/x", "postgres://App:pw@db.example:6000/x"},
        {"postgres://h/x", "postgres://h:5432/x"},
        {"postgres://u@H/x?sslmode=disable", "postgres://u@h:5432/x?sslmode=disable"},
        {"postgres://u@h1,h2:5433/x?target_session_attrs=read-write",
         "postgres://u@h1,h2:5433/x?target_session_attrs=read-write"},
        {"postgres://[::1]/x", "postgres://[::1]:5432/x"},
        {"sqlite:///var/lib/x.db", "sqlite:///var/lib/x.db"},
        {"SQLite:///a.db?create=1", "sqlite:///a.db?create=1"},
#ifdef WEIR_WITH_MYSQL
        {"MariaDB://app:pw@DB/shop", "mysql://app:pw@db:3306/shop"},
        {"mysql://app@[::1]:3307/shop?reset=transaction",
         "mysql://app@[::1]:3307/shop?reset=transaction"},
#endif
#ifdef WEIR_WITH_HTTP
        {"HTTPS://API.Example.com/v1/items?x=1", "https://api.example.com:443?x=1"},
        {"http://127.0.0.1:8080/", "http://127.0.0.1:8080"},
#endif
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        assert_int_equal(weir_url_normalize(ok[i].in, out, sizeof out, err, sizeof err), 0);
        assert_string_equal(out, ok[i].want);
    }
    assert_int_equal(weir_url_normalize("redis://h/x", out, sizeof out, err, sizeof err),
                     WEIR_EINVAL);
    assert_non_null(strstr(err, "unknown scheme \"redis\" (known: postgres://, postgresql://, "
                                "sqlite://"));
    assert_int_equal(weir_url_normalize("sqlite://rel.db", out, sizeof out, err, sizeof err),
                     WEIR_EINVAL);
    assert_non_null(strstr(err, "absolute path"));
    assert_int_equal(weir_url_normalize("user:secret@host", out, sizeof out, err, sizeof err),
                     WEIR_EINVAL);
    assert_null(strstr(err, "secret"));
}

static void url(char *buf, size_t len, const char *name, const char *query)
{
    snprintf(buf, len, "sqlite://%s/%s%s", test_dir, name, query);
}

static void same_url_same_pool(void **state)
{
    (void)state;
    weir_registry *r;
    assert_int_equal(weir_registry_create(&r, NULL, 0), 0);
    char u1[256], u2[256], u3[256], err[256];
    url(u1, sizeof u1, "a.db", "?create=1");
    snprintf(u2, sizeof u2, "SQLITE://%s/a.db?create=1", test_dir);
    url(u3, sizeof u3, "b.db", "?create=1");
    weir_pool *p1, *p2, *p3;
    assert_int_equal(weir_registry_acquire(r, u1, &p1, err, sizeof err), 0);
    assert_int_equal(weir_registry_acquire(r, u2, &p2, err, sizeof err), 0);
    assert_ptr_equal(p1, p2);
    assert_int_equal(weir_registry_acquire(r, u3, &p3, err, sizeof err), 0);
    assert_ptr_not_equal(p1, p3);
    assert_int_equal(weir_registry_count(r), 2);
    weir_conn *c;
    assert_int_equal(weir_checkout(p1, &c), 0);
    weir_checkin(c);
    /* removing needs the references back */
    assert_int_equal(weir_registry_remove(r, u1), WEIR_EBUSY);
    weir_registry_release(r, p1);
    weir_registry_release(r, p2);
    assert_int_equal(weir_registry_remove(r, u1), 0);
    assert_int_equal(weir_registry_remove(r, u1), WEIR_ENOTFOUND);
    assert_int_equal(weir_registry_count(r), 1);
    /* bad URLs and a file that is not there */
    char bad[256];
    url(bad, sizeof bad, "missing.db", "");
    assert_int_equal(weir_registry_acquire(r, bad, &p1, err, sizeof err), WEIR_EINVAL);
    assert_non_null(strstr(err, "no database file"));
    url(bad, sizeof bad, "a.db", "?colour=blue");
    assert_int_equal(weir_registry_acquire(r, bad, &p1, err, sizeof err), WEIR_EINVAL);
    assert_string_equal(err, "unknown sqlite URL parameter \"colour=blue\"");
    weir_registry_release(r, p3);
    weir_registry_destroy(r);
}

typedef struct racer {
    weir_registry *r;
    const char *url;
    weir_pool *got;
} racer;

static void *race(void *arg)
{
    racer *a = arg;
    char err[256];
    assert_int_equal(weir_registry_acquire(a->r, a->url, &a->got, err, sizeof err), 0);
    return NULL;
}

static void concurrent_first_use_makes_one_pool(void **state)
{
    (void)state;
    weir_registry *r;
    assert_int_equal(weir_registry_create(&r, NULL, 0), 0);
    char u[256];
    url(u, sizeof u, "race.db", "?create=1");
    racer a[8];
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
        a[i] = (racer){.r = r, .url = u};
        pthread_create(&th[i], NULL, race, &a[i]);
    }
    for (int i = 0; i < 8; i++) pthread_join(th[i], NULL);
    for (int i = 1; i < 8; i++) assert_ptr_equal(a[i].got, a[0].got);
    assert_int_equal(weir_registry_count(r), 1);
    for (int i = 0; i < 8; i++) weir_registry_release(r, a[i].got);
    weir_registry_destroy(r);
}

static void unused_pools_are_closed(void **state)
{
    (void)state;
    weir_registry *r;
    assert_int_equal(weir_registry_create(&r, NULL, 200), 0);
    char u[256], err[256];
    url(u, sizeof u, "idle.db", "?create=1");
    weir_pool *p;
    assert_int_equal(weir_registry_acquire(r, u, &p, err, sizeof err), 0);
    weir_conn *c;
    assert_int_equal(weir_checkout(p, &c), 0);
    weir_checkin(c);
    sleep_ms(400); /* held by a reference: stays */
    assert_int_equal(weir_registry_count(r), 1);
    weir_registry_release(r, p);
    int64_t t0 = weir_now_ns();
    assert_true(WAIT_FOR(weir_registry_count(r) == 0, 2000));
    assert_true(ms_since(t0) >= 190);
    weir_registry_destroy(r);
}

static void one_metrics_page(void **state)
{
    (void)state;
    weir_registry *r;
    assert_int_equal(weir_registry_create(&r, NULL, 0), 0);
    size_t len;
    char *empty = weir_registry_prometheus(r, &len);
    assert_non_null(empty);
    assert_int_equal(len, 0);
    free(empty);
    char u1[256], u2[256], err[256];
    url(u1, sizeof u1, "m1.db", "?create=1");
    url(u2, sizeof u2, "m2.db", "?create=1");
    weir_pool *p1, *p2;
    assert_int_equal(weir_registry_acquire(r, u1, &p1, err, sizeof err), 0);
    assert_int_equal(weir_registry_acquire(r, u2, &p2, err, sizeof err), 0);
    char *page = weir_registry_prometheus(r, &len);
    assert_non_null(page);
    /* each family once, a series per pool, and the families not interleaved */
    const char *fam = "# TYPE weir_pool_waiters gauge\n";
    char *first = strstr(page, fam);
    assert_non_null(first);
    assert_null(strstr(first + 1, fam));
    char s1[400], s2[400];
    snprintf(
        s1, sizeof s1,
        "# TYPE weir_pool_waiters gauge\nweir_pool_waiters{pool=\"sqlite://%s/m1.db?create=1\"} "
        "0\nweir_pool_waiters{pool=\"sqlite://%s/m2.db?create=1\"} 0\n",
        test_dir, test_dir);
    snprintf(
        s2, sizeof s2,
        "# TYPE weir_pool_waiters gauge\nweir_pool_waiters{pool=\"sqlite://%s/m2.db?create=1\"} "
        "0\nweir_pool_waiters{pool=\"sqlite://%s/m1.db?create=1\"} 0\n",
        test_dir, test_dir);
    if (!strstr(page, s1) && !strstr(page, s2)) fail_msg("page:\n%s", page);
    free(page);
    weir_registry_release(r, p1);
    weir_registry_release(r, p2);
    weir_registry_destroy(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(normalising),
        cmocka_unit_test(same_url_same_pool),
        cmocka_unit_test(concurrent_first_use_makes_one_pool),
        cmocka_unit_test(unused_pools_are_closed),
        cmocka_unit_test(one_metrics_page),
    };
    return cmocka_run_group_tests(tests, tmpdir_setup, tmpdir_teardown);
}
