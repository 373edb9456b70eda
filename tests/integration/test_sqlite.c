/* test_sqlite.c — the SQLite driver and the read/write pair, on real files. */
#include "helpers.h"

#include <sqlite3.h>

#include "weir/weir_sqlite.h"

static void path_of(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", test_dir, name);
}

static weir_sqlite *open_pair(const char *name, int64_t busy_ms, int64_t readers)
{
    char path[256], err[256];
    path_of(path, sizeof path, name);
    weir_sqlite_options so;
    weir_sqlite_options_init(&so);
    so.create = true;
    so.busy_timeout_ms = busy_ms;
    weir_options ro;
    test_options(&ro);
    ro.max_size = readers;
    weir_sqlite *db;
    int rc = weir_sqlite_open(&db, path, &so, &ro, err, sizeof err);
    if (rc) fail_msg("weir_sqlite_open: %s", err);
    return db;
}

static void ok_exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) fail_msg("%s: %s", sql, msg);
}

static int64_t scalar(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) fail_msg("%s", sqlite3_errmsg(db));
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

static void pragmas_are_set(void **state)
{
    (void)state;
    weir_sqlite *db = open_pair("p.db", 5000, 2);
    weir_conn *r;
    assert_int_equal(weir_sqlite_checkout_read(db, &r), 0);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(weir_sqlite_db(r), "PRAGMA journal_mode", -1, &s, NULL), 0);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    assert_int_equal(scalar(weir_sqlite_db(r), "PRAGMA foreign_keys"), 1);
    assert_int_equal(scalar(weir_sqlite_db(r), "PRAGMA synchronous"), 1); /* NORMAL */
    /* readers are read-only */
    assert_int_equal(sqlite3_exec(weir_sqlite_db(r), "CREATE TABLE x (a)", NULL, NULL, NULL),
                     SQLITE_READONLY);
    weir_checkin(r);
    weir_sqlite_close(db);

    /* the caller's pragmas; a bad one is a clear error */
    char path[256], err[256];
    path_of(path, sizeof path, "p.db");
    weir_sqlite_options so;
    weir_sqlite_options_init(&so);
    so.pragmas = "cache_size=-1000; temp_store=MEMORY";
    void *ctx;
    assert_int_equal(weir_sqlite_target_new(path, &so, &ctx, err, sizeof err), 0);
    weir_pool *p;
    assert_int_equal(weir_pool_create(&p, weir_sqlite_driver(), ctx, NULL, NULL), 0);
    weir_conn *c;
    assert_int_equal(weir_checkout(p, &c), 0);
    assert_int_equal(scalar(weir_sqlite_db(c), "PRAGMA cache_size"), -1000);
    assert_int_equal(scalar(weir_sqlite_db(c), "PRAGMA temp_store"), 2);
    weir_checkin(c);
    weir_pool_destroy(p);
}

static void bad_paths_give_clear_errors(void **state)
{
    (void)state;
    char path[256], err[256];
    weir_sqlite *db;
    weir_sqlite_options so;
    weir_sqlite_options_init(&so);
    path_of(path, sizeof path, "missing.db");
    assert_int_equal(weir_sqlite_open(&db, path, &so, NULL, err, sizeof err), WEIR_EINVAL);
    assert_non_null(strstr(err, "no database file"));
    assert_int_not_equal(access(path, F_OK), 0); /* nothing created */
    assert_int_equal(weir_sqlite_open(&db, ":memory:", &so, NULL, err, sizeof err), WEIR_EINVAL);
    assert_non_null(strstr(err, "each connection would get its own empty database"));
    so.create = true;
    path_of(path, sizeof path, "no/such/dir/x.db");
    assert_int_equal(weir_sqlite_open(&db, path, &so, NULL, err, sizeof err), WEIR_EINVAL);
    if (!strstr(err, "cannot open") || !strstr(err, "unable to open database file"))
        fail_msg("err: %s", err);
    assert_int_equal(weir_sqlite_open(&db, "", &so, NULL, err, sizeof err), WEIR_EINVAL);
}

typedef struct reader_arg {
    weir_sqlite *db;
    int64_t seen;
} reader_arg;

static void *read_count(void *arg)
{
    reader_arg *a = arg;
    weir_conn *r;
    assert_int_equal(weir_sqlite_checkout_read(a->db, &r), 0);
    a->seen = scalar(weir_sqlite_db(r), "SELECT count(*) FROM t");
    weir_checkin(r);
    return NULL;
}

static void readers_see_committed_data_during_a_write(void **state)
{
    (void)state;
    weir_sqlite *db = open_pair("rw.db", 5000, 4);
    weir_conn *w;
    assert_int_equal(weir_sqlite_checkout_write(db, &w), 0);
    ok_exec(weir_sqlite_db(w), "CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2)");
    ok_exec(weir_sqlite_db(w), "BEGIN; INSERT INTO t VALUES (3)");
    /* mid-transaction: four readers at once see the committed two rows, not blocked */
    reader_arg a[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (reader_arg){.db = db};
        pthread_create(&th[i], NULL, read_count, &a[i]);
    }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++) assert_int_equal(a[i].seen, 2);
    ok_exec(weir_sqlite_db(w), "COMMIT");
    weir_checkin(w);
    reader_arg b = {.db = db};
    read_count(&b);
    assert_int_equal(b.seen, 3);
    weir_sqlite_close(db);
}

static void one_writer_at_a_time(void **state)
{
    (void)state;
    weir_sqlite *db = open_pair("w.db", 5000, 2);
    weir_conn *w, *w2;
    assert_int_equal(weir_sqlite_checkout_write(db, &w), 0);
    assert_int_equal(weir_checkout_timeout(weir_sqlite_writer(db), 100, &w2), WEIR_ETIMEDOUT);
    weir_checkin(w);
    assert_int_equal(weir_checkout_timeout(weir_sqlite_writer(db), 100, &w2), 0);
    weir_checkin(w2);
    assert_int_equal(pool_stats(weir_sqlite_writer(db)).max_size, 1);
    weir_sqlite_close(db);
}

typedef struct holder {
    const char *path;
    int64_t hold_ms;
} holder;

static void *hold_write_lock(void *arg)
{
    holder *h = arg;
    sqlite3 *ext;
    assert_int_equal(sqlite3_open(h->path, &ext), SQLITE_OK);
    ok_exec(ext, "BEGIN IMMEDIATE; INSERT INTO t VALUES (100)");
    sleep_ms(h->hold_ms);
    ok_exec(ext, "COMMIT");
    sqlite3_close(ext);
    return NULL;
}

static void busy_database_waits_then_reports(void **state)
{
    (void)state;
    char path[256];
    path_of(path, sizeof path, "busy.db");
    weir_sqlite *db = open_pair("busy.db", 100, 2);
    weir_conn *w;
    assert_int_equal(weir_sqlite_checkout_write(db, &w), 0);
    ok_exec(weir_sqlite_db(w), "CREATE TABLE t (x INTEGER)");
    weir_checkin(w);
    /* another process-like writer holds the lock longer than busy_timeout */
    holder h = {path, 600};
    pthread_t th;
    pthread_create(&th, NULL, hold_write_lock, &h);
    sleep_ms(100);
    assert_int_equal(weir_sqlite_checkout_write(db, &w), 0);
    int64_t t0 = weir_now_ns();
    int rc = sqlite3_exec(weir_sqlite_db(w), "INSERT INTO t VALUES (1)", NULL, NULL, NULL);
    int64_t took = ms_since(t0);
    assert_int_equal(rc & 0xff, SQLITE_BUSY);
    assert_string_equal(sqlite3_errmsg(weir_sqlite_db(w)), "database is locked");
    assert_true(took >= 90);
    weir_checkin(w);
    pthread_join(th, NULL);
    weir_sqlite_close(db);
    /* with a longer busy_timeout the same write waits for the lock and succeeds */
    db = open_pair("busy.db", 3000, 2);
    h.hold_ms = 200;
    pthread_create(&th, NULL, hold_write_lock, &h);
    sleep_ms(50);
    assert_int_equal(weir_sqlite_checkout_write(db, &w), 0);
    ok_exec(weir_sqlite_db(w), "INSERT INTO t VALUES (2)");
    weir_checkin(w);
    pthread_join(th, NULL);
    weir_conn *r;
    assert_int_equal(weir_sqlite_checkout_read(db, &r), 0);
    assert_int_equal(scalar(weir_sqlite_db(r), "SELECT count(*) FROM t"), 3);
    weir_checkin(r);
    weir_sqlite_close(db);
}

static void statement_cache_hits_and_evicts(void **state)
{
    (void)state;
    char path[256], err[256];
    path_of(path, sizeof path, "cache.db");
    weir_sqlite_options so;
    weir_sqlite_options_init(&so);
    so.create = true;
    so.stmt_cache = 2;
    void *ctx;
    assert_int_equal(weir_sqlite_target_new(path, &so, &ctx, err, sizeof err), 0);
    weir_options o;
    test_options(&o);
    o.max_size = 1;
    weir_pool *p;
    assert_int_equal(weir_pool_create(&p, weir_sqlite_driver(), ctx, &o, NULL), 0);
    weir_conn *c;
    assert_int_equal(weir_checkout(p, &c), 0);
    sqlite3_stmt *s, *first;
    uint64_t hits, misses;
    for (int i = 0; i < 10; i++) {
        assert_int_equal(weir_sqlite_prepare_cached(c, "SELECT ?1 + 1", &s), 0);
        if (i == 0) first = s;
        assert_ptr_equal(s, first);
        sqlite3_bind_int(s, 1, i);
        assert_int_equal(sqlite3_step(s), SQLITE_ROW);
        assert_int_equal(sqlite3_column_int(s, 0), i + 1);
    }
    weir_sqlite_cache_stats(p, &hits, &misses);
    assert_int_equal(hits, 9);
    assert_int_equal(misses, 1);
    /* LRU, bound 2: A B A C (evicts B) A (hit) B (miss) */
    const char *seq[] = {"SELECT 1", "SELECT 2", "SELECT 1", "SELECT 3", "SELECT 1", "SELECT 2"};
    for (size_t i = 0; i < 6; i++) assert_int_equal(weir_sqlite_prepare_cached(c, seq[i], &s), 0);
    weir_sqlite_cache_stats(p, &hits, &misses);
    assert_int_equal(hits, 9 + 2);
    assert_int_equal(misses, 1 + 4);
    /* a statement still stepping and an open transaction are cleaned on checkin */
    ok_exec(weir_sqlite_db(c), "CREATE TABLE IF NOT EXISTS t (x); INSERT INTO t VALUES (1), (2)");
    assert_int_equal(weir_sqlite_prepare_cached(c, "SELECT x FROM t", &s), 0);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW); /* left mid-result */
    ok_exec(weir_sqlite_db(c), "BEGIN; INSERT INTO t VALUES (3)");
    weir_checkin(c);
    assert_int_equal(weir_checkout(p, &c), 0);
    assert_int_equal(sqlite3_get_autocommit(weir_sqlite_db(c)), 1);
    assert_int_equal(sqlite3_stmt_busy(s), 0);
    assert_int_equal(scalar(weir_sqlite_db(c), "SELECT count(*) FROM t"), 2);
    weir_checkin(c);
    weir_pool_destroy(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pragmas_are_set),
        cmocka_unit_test(bad_paths_give_clear_errors),
        cmocka_unit_test(readers_see_committed_data_during_a_write),
        cmocka_unit_test(one_writer_at_a_time),
        cmocka_unit_test(busy_database_waits_then_reports),
        cmocka_unit_test(statement_cache_hits_and_evicts),
    };
    return cmocka_run_group_tests(tests, tmpdir_setup, tmpdir_teardown);
}
