/* test_sqlite.c — the SQLite driver and the read/write pair, on real files. */
#include "helpers.h"

#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* ---- group commit ---- */

typedef struct gw {
    weir_sqlite *db;
    int64_t k; /* the row's key */
    int64_t v; /* written as +v then -v: the table's sum stays 0 */
    bool fail; /* then insert a duplicate key after +v: the write fails */
    int rc;
    char err[256];
    pthread_t th;
} gw;

static int pair_write(weir_conn *c, void *ud)
{
    gw *w = ud;
    sqlite3_stmt *s;
    if (weir_sqlite_prepare_cached(c, "INSERT INTO g (k, v) VALUES (?1, ?2)", &s))
        return sqlite3_errcode(weir_sqlite_db(c));
    sqlite3_bind_int64(s, 1, w->k);
    sqlite3_bind_int64(s, 2, w->v);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return rc;
    sqlite3_bind_int64(s, 1, w->fail ? w->k : -w->k); /* a duplicate key fails */
    sqlite3_bind_int64(s, 2, -w->v);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static void *gw_main(void *arg)
{
    gw *w = arg;
    w->rc = weir_sqlite_write(w->db, pair_write, w, w->err, sizeof w->err);
    return NULL;
}

static void group_setup_table(weir_sqlite *db)
{
    weir_conn *c;
    assert_int_equal(weir_sqlite_checkout_write(db, &c), 0);
    ok_exec(weir_sqlite_db(c), "CREATE TABLE g (k INTEGER PRIMARY KEY, v INTEGER NOT NULL)");
    weir_checkin(c);
}

static int64_t g_count(weir_sqlite *db, const char *sql)
{
    weir_conn *c;
    assert_int_equal(weir_sqlite_checkout_read(db, &c), 0);
    int64_t n = scalar(weir_sqlite_db(c), sql);
    weir_checkin(c);
    return n;
}

/* Three writes queued behind a running group commit together as the next
 * one; the middle one breaks a constraint and fails alone. */
static void a_failing_write_fails_alone_in_its_group(void **state)
{
    (void)state;
    weir_sqlite *db = open_pair("group1.db", 5000, 2);
    group_setup_table(db);
    weir_conn *hold;
    assert_int_equal(weir_sqlite_checkout_write(db, &hold), 0); /* the writer is busy */
    gw a = {.db = db, .k = 1, .v = 10};
    pthread_create(&a.th, NULL, gw_main, &a); /* leads a group of itself, waits for the writer */
    sleep_ms(100);
    gw w[3] = {{.db = db, .k = 2, .v = 20},
               {.db = db, .k = 3, .v = 30, .fail = true},
               {.db = db, .k = 4, .v = 40}};
    for (int i = 0; i < 3; i++) {
        pthread_create(&w[i].th, NULL, gw_main, &w[i]);
        sleep_ms(30); /* in this order */
    }
    sleep_ms(100);
    int64_t groups0;
    weir_sqlite_group_stats(db, &groups0, NULL, NULL);
    weir_checkin(hold);
    pthread_join(a.th, NULL);
    for (int i = 0; i < 3; i++) pthread_join(w[i].th, NULL);
    assert_int_equal(a.rc, 0);
    assert_int_equal(w[0].rc, 0);
    assert_int_equal(w[1].rc, SQLITE_CONSTRAINT_PRIMARYKEY); /* its own (extended) code */
    if (!strstr(w[1].err, "UNIQUE constraint failed: g.k")) fail_msg("err: %s", w[1].err);
    assert_int_equal(w[2].rc, 0);
    int64_t groups, writes, failed;
    weir_sqlite_group_stats(db, &groups, &writes, &failed);
    assert_int_equal(groups - groups0, 2); /* a's, then the three together */
    assert_int_equal(writes, 4);
    assert_int_equal(failed, 0);
    /* the failed write left nothing (its +30 rolled back), the others all */
    assert_int_equal(g_count(db, "SELECT count(*) FROM g"), 6);
    assert_int_equal(g_count(db, "SELECT count(*) FROM g WHERE abs(k) = 3"), 0);
    assert_int_equal(g_count(db, "SELECT sum(v) FROM g"), 0);
    weir_sqlite_close(db);
}

static int rollback_write(weir_conn *c, void *ud)
{
    (void)ud; /* a conflict resolved by rolling back the whole transaction */
    sqlite3_stmt *s;
    if (weir_sqlite_prepare_cached(c, "INSERT OR ROLLBACK INTO g (k, v) VALUES (1, 0)", &s))
        return SQLITE_ERROR;
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

typedef struct rbw {
    weir_sqlite *db;
    int rc;
    char err[256];
    pthread_t th;
} rbw;

static void *rbw_main(void *arg)
{
    rbw *w = arg;
    w->rc = weir_sqlite_write(w->db, rollback_write, NULL, w->err, sizeof w->err);
    return NULL;
}

/* A write whose failure rolls back the whole transaction takes the group's
 * earlier writes with it: they are told, not acknowledged. */
static void a_rollback_conflict_fails_the_writes_it_undid(void **state)
{
    (void)state;
    weir_sqlite *db = open_pair("group3.db", 5000, 2);
    group_setup_table(db);
    gw one = {.db = db, .k = 1, .v = 10};
    assert_int_equal(weir_sqlite_write(db, pair_write, &one, one.err, sizeof one.err), 0);
    weir_conn *hold;
    assert_int_equal(weir_sqlite_checkout_write(db, &hold), 0);
    gw a = {.db = db, .k = 50, .v = 1};
    pthread_create(&a.th, NULL, gw_main, &a); /* a group of itself, waiting for the writer */
    sleep_ms(100);
    gw b = {.db = db, .k = 60, .v = 6};
    rbw r = {.db = db};
    gw d = {.db = db, .k = 70, .v = 7};
    pthread_create(&b.th, NULL, gw_main, &b);
    sleep_ms(30);
    pthread_create(&r.th, NULL, rbw_main, &r); /* k = 1 exists: ROLLBACK */
    sleep_ms(30);
    pthread_create(&d.th, NULL, gw_main, &d);
    sleep_ms(100);
    weir_checkin(hold);
    pthread_join(a.th, NULL);
    pthread_join(b.th, NULL);
    pthread_join(r.th, NULL);
    pthread_join(d.th, NULL);
    assert_int_equal(a.rc, 0);
    assert_int_equal(r.rc & 0xff, SQLITE_CONSTRAINT);
    assert_int_equal(b.rc, WEIR_EDRIVER); /* undone with the transaction */
    if (!strstr(b.err, "rolled back with its group")) fail_msg("err: %s", b.err);
    assert_int_equal(d.rc, 0); /* after it, in a transaction of its own */
    assert_int_equal(g_count(db, "SELECT count(*) FROM g WHERE abs(k) = 60"), 0);
    assert_int_equal(g_count(db, "SELECT count(*) FROM g WHERE abs(k) IN (50, 70)"), 4);
    weir_sqlite_close(db);
}

typedef struct gload {
    weir_sqlite *db;
    int id, n, ok, failed, wrong;
    _Atomic bool *stop;
    pthread_t th;
} gload;

static void *gload_main(void *arg)
{
    gload *l = arg;
    for (int i = 0; i < l->n; i++) {
        gw w = {
            .db = l->db, .k = (int64_t)l->id * 100000 + i + 1, .v = i + 1, .fail = (i % 7) == 3};
        w.rc = weir_sqlite_write(l->db, pair_write, &w, w.err, sizeof w.err);
        if (w.fail) {
            if ((w.rc & 0xff) == SQLITE_CONSTRAINT)
                l->failed++;
            else
                l->wrong++;
        } else if (w.rc == 0) {
            l->ok++;
        } else {
            l->wrong++;
        }
    }
    return NULL;
}

static void *greader_main(void *arg)
{
    gload *l = arg;
    while (!atomic_load(l->stop)) {
        weir_conn *c;
        if (weir_sqlite_checkout_read(l->db, &c)) continue;
        if (scalar(weir_sqlite_db(c), "SELECT coalesce(sum(v), 0) FROM g") != 0) l->wrong++;
        weir_checkin(c);
        l->ok++;
    }
    return NULL;
}

/* 16 threads, 200 writes each, one in seven failing: every caller gets its
 * own result, the writes come in groups, and readers only ever see whole
 * writes (the table's sum stays 0: a half-applied write would break it). */
static void results_reach_their_callers_and_readers_see_whole_writes(void **state)
{
    (void)state;
    weir_sqlite *db = open_pair("group2.db", 5000, 4);
    group_setup_table(db);
    enum { W = 16, N = 200, R = 2 };
    gload l[W + R];
    _Atomic bool stop = false;
    for (int i = 0; i < R; i++) {
        l[W + i] = (gload){.db = db, .stop = &stop};
        pthread_create(&l[W + i].th, NULL, greader_main, &l[W + i]);
    }
    for (int i = 0; i < W; i++) {
        l[i] = (gload){.db = db, .id = i + 1, .n = N};
        pthread_create(&l[i].th, NULL, gload_main, &l[i]);
    }
    int ok = 0, failed = 0, wrong = 0;
    for (int i = 0; i < W; i++) {
        pthread_join(l[i].th, NULL);
        ok += l[i].ok;
        failed += l[i].failed;
        wrong += l[i].wrong;
    }
    atomic_store(&stop, true);
    int reads = 0;
    for (int i = 0; i < R; i++) {
        pthread_join(l[W + i].th, NULL);
        reads += l[W + i].ok;
        wrong += l[W + i].wrong;
    }
    int64_t groups, writes, fc;
    weir_sqlite_group_stats(db, &groups, &writes, &fc);
    printf("group commit: %d writes (%d failed as meant) in %lld groups, %d reads, %d wrong\n",
           ok + failed, failed, (long long)groups, reads, wrong);
    assert_int_equal(wrong, 0);
    assert_int_equal(ok + failed, W * N);
    assert_int_equal(writes, W * N);
    assert_true(groups < writes); /* they did go together */
    assert_int_equal(g_count(db, "SELECT count(*) FROM g"), 2 * ok);
    assert_int_equal(g_count(db, "SELECT sum(v) FROM g"), 0);
    weir_sqlite_close(db);
}

static int ack_write(weir_conn *c, void *ud)
{
    sqlite3_stmt *s;
    if (weir_sqlite_prepare_cached(c, "INSERT INTO acked (id) VALUES (?1)", &s))
        return sqlite3_errcode(weir_sqlite_db(c));
    sqlite3_bind_int64(s, 1, *(int64_t *)ud);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

typedef struct acker {
    weir_sqlite *db;
    int fd, id;
    pthread_mutex_t *mu;
} acker;

static void *acker_main(void *arg)
{
    acker *a = arg;
    for (int64_t i = 1;; i++) {
        int64_t id = (int64_t)a->id * 1000000 + i;
        if (weir_sqlite_write(a->db, ack_write, &id, NULL, 0) != 0) continue;
        pthread_mutex_lock(a->mu); /* acknowledged: the caller was told it is stored */
        if (write(a->fd, &id, sizeof id) != sizeof id) _exit(3);
        pthread_mutex_unlock(a->mu);
    }
    return NULL;
}

/* A process writing through group commit with synchronous=FULL is killed
 * with SIGKILL: every write it was told had committed is in the file. */
static void kill_9_loses_no_acknowledged_write(void **state)
{
    (void)state;
    char path[256];
    path_of(path, sizeof path, "crash.db");
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        weir_sqlite_options so;
        weir_sqlite_options_init(&so);
        so.create = true;
        so.pragmas = "synchronous=FULL";
        weir_sqlite *db;
        char err[256];
        if (weir_sqlite_open(&db, path, &so, NULL, err, sizeof err)) _exit(2);
        weir_conn *c;
        if (weir_sqlite_checkout_write(db, &c)) _exit(2);
        sqlite3_exec(weir_sqlite_db(c), "CREATE TABLE acked (id INTEGER PRIMARY KEY)", NULL, NULL,
                     NULL);
        weir_checkin(c);
        pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
        acker a[8];
        pthread_t th[8];
        for (int i = 0; i < 8; i++) {
            a[i] = (acker){.db = db, .fd = p[1], .id = i + 1, .mu = &mu};
            pthread_create(&th[i], NULL, acker_main, &a[i]);
        }
        for (;;) pause();
    }
    close(p[1]);
    sleep_ms(600);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    int64_t id, n = 0;
    sqlite3 *h;
    assert_int_equal(sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *s;
    assert_int_equal(
        sqlite3_prepare_v2(h, "SELECT count(*) FROM acked WHERE id = ?1", -1, &s, NULL), SQLITE_OK);
    int64_t missing = 0;
    while (read(p[0], &id, sizeof id) == sizeof id) {
        n++;
        sqlite3_bind_int64(s, 1, id);
        assert_int_equal(sqlite3_step(s), SQLITE_ROW);
        if (sqlite3_column_int64(s, 0) != 1) missing++;
        sqlite3_reset(s);
    }
    sqlite3_finalize(s);
    int64_t stored = scalar(h, "SELECT count(*) FROM acked");
    sqlite3_close(h);
    close(p[0]);
    printf("kill -9: %lld writes acknowledged, %lld in the file, %lld missing\n", (long long)n,
           (long long)stored, (long long)missing);
    assert_true(n > 0);
    assert_int_equal(missing, 0);
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
        cmocka_unit_test(a_failing_write_fails_alone_in_its_group),
        cmocka_unit_test(a_rollback_conflict_fails_the_writes_it_undid),
        cmocka_unit_test(results_reach_their_callers_and_readers_see_whole_writes),
        cmocka_unit_test(kill_9_loses_no_acknowledged_write),
    };
    return cmocka_run_group_tests(tests, tmpdir_setup, tmpdir_teardown);
}
