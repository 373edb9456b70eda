/* zdb.c — weir against libzdb, the existing C pool library, side by side.
 *
 *   zdb [--quick] [--seconds S] [--reps N]
 *
 * On a throwaway PostgreSQL cluster (tests/integration/pg_cluster.sh) and an
 * SQLite file, at 1, 2 and 8 threads with a pool as large as the thread
 * count: checkout+checkin cycles per second, and checkout + SELECT 1 +
 * checkin per second. Then a pool of 4 under 8 threads ("momentarily full"):
 * how many checkouts failed. libzdb returns NULL when the pool is full; weir
 * waits (up to acquire_timeout).
 */
#define _GNU_SOURCE
#include <libpq-fe.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zdb.h>

#include "weir/weir.h"
#include "weir/weir_pg.h"
#include "weir/weir_sqlite.h"

#include "bench.h"

static char sqlite_dir[128];
static char pg_conninfo[256], pg_zdb_url[256], sqlite_path[256], sqlite_zdb_url[300];

enum lib { WEIR, ZDB };
enum db { PG, SQLITE };
enum op { CYCLE, QUERY };

typedef struct ctx {
    enum lib lib;
    enum db db;
    enum op op;
    weir_pool *wp;
    ConnectionPool_T zp;
    _Atomic bool *stop;
    pthread_barrier_t *go;
    long n, failed;
} ctx;

static bool weir_query(weir_conn *c, enum db db)
{
    if (db == PG) {
        PGresult *r = PQexec(weir_pg_conn(c), "SELECT 1");
        bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
        PQclear(r);
        return ok;
    }
    sqlite3_stmt *s;
    if (weir_sqlite_prepare_cached(c, "SELECT 1", &s) != 0) return false;
    return sqlite3_step(s) == SQLITE_ROW;
}

static bool zdb_query(Connection_T c)
{
    volatile bool ok = false;
    TRY
    {
        ResultSet_T r = Connection_executeQuery(c, "SELECT 1");
        ok = ResultSet_next(r);
    }
    ELSE
    {
        ok = false;
    }
    END_TRY;
    return ok;
}

static void *work(void *arg)
{
    ctx *x = arg;
    long n = 0, failed = 0; /* locals: the ctx array would share cache lines */
    pthread_barrier_wait(x->go);
    while (!atomic_load_explicit(x->stop, memory_order_relaxed)) {
        for (int i = 0; i < 16; i++) {
            if (x->lib == WEIR) {
                weir_conn *c;
                if (weir_checkout(x->wp, &c) != 0) {
                    failed++;
                    continue;
                }
                if (x->op == QUERY && !weir_query(c, x->db)) failed++;
                weir_checkin(c);
            } else {
                Connection_T c = ConnectionPool_getConnection(x->zp);
                if (!c) {
                    failed++;
                    continue;
                }
                if (x->op == QUERY && !zdb_query(c)) failed++;
                Connection_close(c);
            }
            n++;
        }
    }
    x->n = n;
    x->failed = failed;
    return NULL;
}

static void sleep_s(double s)
{
    usleep((useconds_t)(s * 1e6));
}

typedef struct result {
    double per_s;
    long failed;
} result;

static result run(enum lib lib, enum db db, enum op op, int pool_size, int threads, double secs)
{
    weir_pool *wp = NULL;
    ConnectionPool_T zp = NULL;
    URL_T url = NULL;
    if (lib == WEIR) {
        weir_options o;
        weir_options_init(&o);
        o.max_size = pool_size;
        o.min_idle = pool_size;
        char err[256];
        int rc;
        if (db == PG) {
            rc = weir_pg_pool_create(&wp, pg_conninfo, NULL, &o, NULL, err, sizeof err);
        } else {
            void *tctx;
            rc = weir_sqlite_target_new(sqlite_path, NULL, &tctx, err, sizeof err);
            if (!rc) rc = weir_pool_create(&wp, weir_sqlite_driver(), tctx, &o, NULL);
        }
        if (rc) {
            fprintf(stderr, "zdb bench: weir pool: %s %s\n", weir_err_name(rc), err);
            exit(1);
        }
        bench_wait_warm(wp, pool_size);
    } else {
        url = URL_new(db == PG ? pg_zdb_url : sqlite_zdb_url);
        zp = ConnectionPool_new(url);
        ConnectionPool_setInitialConnections(zp, pool_size);
        ConnectionPool_setMaxConnections(zp, pool_size);
        ConnectionPool_start(zp);
    }
    _Atomic bool stop = false;
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, (unsigned)threads + 1);
    ctx *x = calloc((size_t)threads, sizeof *x);
    pthread_t *th = calloc((size_t)threads, sizeof *th);
    for (int i = 0; i < threads; i++) {
        x[i] = (ctx){.lib = lib, .db = db, .op = op, .wp = wp, .zp = zp, .stop = &stop, .go = &go};
        pthread_create(&th[i], NULL, work, &x[i]);
    }
    pthread_barrier_wait(&go);
    int64_t t0 = weir_now_ns();
    sleep_s(secs);
    atomic_store(&stop, true);
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    double el = (double)(weir_now_ns() - t0) / 1e9;
    result r = {0};
    long n = 0;
    for (int i = 0; i < threads; i++) {
        n += x[i].n;
        r.failed += x[i].failed;
    }
    r.per_s = (double)n / el;
    free(x);
    free(th);
    pthread_barrier_destroy(&go);
    if (wp) weir_pool_destroy(wp);
    if (zp) {
        ConnectionPool_stop(zp);
        ConnectionPool_free(&zp);
        URL_free(&url);
    }
    return r;
}

static void cleanup(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", sqlite_dir);
    if (system(cmd) != 0) fprintf(stderr, "zdb bench: cleanup failed\n");
}

int main(int argc, char **argv)
{
    double secs = 1;
    int reps = 3;
    if (!bench_args(argc, argv, "zdb", 0.4, &secs, &reps)) return 2;
    snprintf(sqlite_dir, sizeof sqlite_dir, "/tmp/weir-bench-zdb-sqlite-XXXXXX");
    if (!mkdtemp(sqlite_dir)) return 1;
    atexit(cleanup);
    int port;
    if (!bench_pg_start(5003, &port)) return 1;
    snprintf(pg_conninfo, sizeof pg_conninfo,
             "host=127.0.0.1 port=%d user=app password=s3cret dbname=appdb", port);
    snprintf(pg_zdb_url, sizeof pg_zdb_url,
             "postgresql://127.0.0.1:%d/appdb?user=app&password=s3cret", port);
    snprintf(sqlite_path, sizeof sqlite_path, "%s/bench.db", sqlite_dir);
    snprintf(sqlite_zdb_url, sizeof sqlite_zdb_url, "sqlite://%s", sqlite_path);
    sqlite3 *init;
    if (sqlite3_open(sqlite_path, &init) != SQLITE_OK) return 1;
    sqlite3_exec(init, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
    sqlite3_close(init);

    const char *dbs[] = {"postgres", "sqlite"};
    const char *ops[] = {"cycle", "select1"};
    const int threads[] = {1, 2, 8};
    for (int db = 0; db < 2; db++)
        for (int op = 0; op < 2; op++)
            for (int t = 0; t < 3; t++) {
                double w[20], z[20];
                long wf = 0, zf = 0;
                for (int rep = 0; rep < reps; rep++) {
                    result a = run(WEIR, db, op, threads[t], threads[t], secs);
                    result b = run(ZDB, db, op, threads[t], threads[t], secs);
                    w[rep] = a.per_s;
                    z[rep] = b.per_s;
                    wf += a.failed;
                    zf += b.failed;
                }
                double mw = bench_median(w, reps), mz = bench_median(z, reps);
                printf("RESULT zdb db=%s op=%s threads=%d weir_per_s=%.0f libzdb_per_s=%.0f "
                       "ratio=%.2f weir_failed=%ld libzdb_failed=%ld reps=%d\n",
                       dbs[db], ops[op], threads[t], mw, mz, mw / mz, wf, zf, reps);
                fflush(stdout);
            }
    /* momentarily full: 8 threads, 4 connections */
    for (int db = 0; db < 2; db++) {
        result a = run(WEIR, db, CYCLE, 4, 8, secs);
        result b = run(ZDB, db, CYCLE, 4, 8, secs);
        printf("RESULT zdb db=%s check=pool_full pool=4 threads=8 weir_per_s=%.0f "
               "weir_failed_checkouts=%ld libzdb_per_s=%.0f libzdb_failed_checkouts=%ld\n",
               dbs[db], a.per_s, a.failed, b.per_s, b.failed);
    }
    return 0;
}
