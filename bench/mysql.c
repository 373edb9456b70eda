/* mysql.c — weir's MySQL/MariaDB driver against a connection per request and
 * against libzdb's MySQL pool, side by side in one run.
 *
 *   mysql [--quick] [--seconds S] [--reps N]
 *
 * On a throwaway MariaDB server (tests/integration/mysql_cluster.sh), at 1,
 * 2 and 8 threads with a pool as large as the thread count: checkout +
 * SELECT 1 + checkin per second for
 *   weir         the default: every checkin resets the session
 *                (COM_RESET_CONNECTION, one more round trip);
 *   weir_txn     reset=transaction: only an open transaction is rolled back,
 *                session state carries over (what libzdb and most pools do);
 *   libzdb       libzdb's ConnectionPool (no reset either);
 *   per_request  mysql_real_connect + SELECT 1 + mysql_close, no pool.
 * All in plain TCP on 127.0.0.1 (ssl_mode=disabled), as libzdb connects.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <mysql.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#ifdef WEIR_BENCH_ZDB
#include <zdb.h>
#endif

#include "weir/weir.h"
#include "weir/weir_mysql.h"

#include "bench.h"

static char cluster[128];
static int port;
static char url_reset[256], url_txn[256], zdb_url[256];

enum lib { WEIR, WEIR_TXN, ZDB, PER_REQUEST, NLIBS };
static const char *const lib_names[] = {"weir", "weir_txn", "libzdb", "per_request"};

typedef struct ctx {
    enum lib lib;
    weir_pool *wp;
#ifdef WEIR_BENCH_ZDB
    ConnectionPool_T zp;
#endif
    _Atomic bool *stop;
    pthread_barrier_t *go;
    long n, failed;
} ctx;

static bool select1(MYSQL *m)
{
    if (mysql_query(m, "SELECT 1")) return false;
    MYSQL_RES *r = mysql_store_result(m);
    bool ok = r && mysql_fetch_row(r);
    if (r) mysql_free_result(r);
    return ok;
}

#ifdef WEIR_BENCH_ZDB
static bool zdb_select1(Connection_T c)
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
#endif

static bool one(ctx *x)
{
    switch (x->lib) {
    case WEIR:
    case WEIR_TXN: {
        weir_conn *c;
        if (weir_checkout(x->wp, &c) != 0) return false;
        bool ok = select1(weir_mysql_conn(c));
        weir_checkin(c);
        return ok;
    }
    case ZDB: {
#ifdef WEIR_BENCH_ZDB
        Connection_T c = ConnectionPool_getConnection(x->zp);
        if (!c) return false;
        bool ok = zdb_select1(c);
        Connection_close(c);
        return ok;
#else
        return false;
#endif
    }
    default: {
        MYSQL *m = mysql_init(NULL);
        bool ok =
            m &&
            mysql_real_connect(m, "127.0.0.1", "app", "s3cret", "appdb", (unsigned)port, NULL, 0) &&
            select1(m);
        if (m) mysql_close(m);
        return ok;
    }
    }
}

static void *work(void *arg)
{
    ctx *x = arg;
    long n = 0, failed = 0;
    mysql_thread_init();
    pthread_barrier_wait(x->go);
    while (!atomic_load_explicit(x->stop, memory_order_relaxed)) {
        if (one(x))
            n++;
        else
            failed++;
    }
    x->n = n;
    x->failed = failed;
    mysql_thread_end();
    return NULL;
}

typedef struct result {
    double per_s;
    long failed;
} result;

static result run(enum lib lib, int threads, double secs)
{
    weir_pool *wp = NULL;
#ifdef WEIR_BENCH_ZDB
    ConnectionPool_T zp = NULL;
    URL_T url = NULL;
#endif
    if (lib == WEIR || lib == WEIR_TXN) {
        weir_options o;
        weir_options_init(&o);
        o.max_size = threads;
        o.min_idle = threads;
        char err[256];
        int rc = weir_mysql_pool_create(&wp, lib == WEIR ? url_reset : url_txn, &o, NULL, err,
                                        sizeof err);
        if (rc) {
            fprintf(stderr, "mysql bench: weir pool: %s %s\n", weir_err_name(rc), err);
            exit(1);
        }
        bench_wait_warm(wp, threads);
    }
#ifdef WEIR_BENCH_ZDB
    if (lib == ZDB) {
        url = URL_new(zdb_url);
        zp = ConnectionPool_new(url);
        ConnectionPool_setInitialConnections(zp, threads);
        ConnectionPool_setMaxConnections(zp, threads);
        ConnectionPool_start(zp);
    }
#endif
    _Atomic bool stop = false;
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, (unsigned)threads + 1);
    ctx *x = calloc((size_t)threads, sizeof *x);
    pthread_t *th = calloc((size_t)threads, sizeof *th);
    for (int i = 0; i < threads; i++) {
        x[i] = (ctx){.lib = lib, .wp = wp, .stop = &stop, .go = &go};
#ifdef WEIR_BENCH_ZDB
        x[i].zp = zp;
#endif
        pthread_create(&th[i], NULL, work, &x[i]);
    }
    pthread_barrier_wait(&go);
    int64_t t0 = weir_now_ns();
    usleep((useconds_t)(secs * 1e6));
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
#ifdef WEIR_BENCH_ZDB
    if (zp) {
        ConnectionPool_stop(zp);
        ConnectionPool_free(&zp);
        URL_free(&url);
    }
#endif
    return r;
}

static void stop_cluster(void)
{
    char cmd[768];
    snprintf(cmd, sizeof cmd, "%s/tests/integration/mysql_cluster.sh destroy %s", WEIR_SOURCE_DIR,
             cluster);
    if (system(cmd) != 0) fprintf(stderr, "mysql bench: could not remove %s\n", cluster);
}

int main(int argc, char **argv)
{
    double secs = 1;
    int reps = 3;
    if (!bench_args(argc, argv, "mysql", 0.5, &secs, &reps)) return 2;
    if (access("/usr/sbin/mariadbd", X_OK) != 0) {
        printf(
            "RESULT mysql skipped=1 reason=no_mariadb_server (apt-get install mariadb-server)\n");
        return 0;
    }
    snprintf(cluster, sizeof cluster, "/tmp/weir-bench-my-XXXXXX");
    if (!mkdtemp(cluster)) return 1;
    atexit(stop_cluster);
    port = test_port(7001);
    char cmd[768];
    snprintf(cmd, sizeof cmd, "MY_SSL=0 %s/tests/integration/mysql_cluster.sh start %s %d",
             WEIR_SOURCE_DIR, cluster, port);
    if (system(cmd) != 0) return 1;
    mysql_library_init(0, NULL, NULL);
    snprintf(url_reset, sizeof url_reset, "mysql://app:s3cret@127.0.0.1:%d/appdb?ssl_mode=disabled",
             port);
    snprintf(url_txn, sizeof url_txn,
             "mysql://app:s3cret@127.0.0.1:%d/appdb?ssl_mode=disabled&reset=transaction", port);
    snprintf(zdb_url, sizeof zdb_url, "mysql://127.0.0.1:%d/appdb?user=app&password=s3cret", port);

    const int threads[] = {1, 2, 8};
    for (int t = 0; t < 3; t++) {
        double v[NLIBS][20];
        long failed[NLIBS] = {0};
        for (int rep = 0; rep < reps; rep++)
            for (int lib = 0; lib < NLIBS; lib++) {
#ifndef WEIR_BENCH_ZDB
                if (lib == ZDB) {
                    v[lib][rep] = 0;
                    continue;
                }
#endif
                result r = run((enum lib)lib, threads[t], secs);
                v[lib][rep] = r.per_s;
                failed[lib] += r.failed;
            }
        double m[NLIBS];
        for (int lib = 0; lib < NLIBS; lib++) m[lib] = bench_median(v[lib], reps);
        printf("RESULT mysql op=select1 threads=%d", threads[t]);
        for (int lib = 0; lib < NLIBS; lib++) printf(" %s_per_s=%.0f", lib_names[lib], m[lib]);
        printf(" weir_vs_per_request=%.2f weir_txn_vs_per_request=%.2f", m[WEIR] / m[PER_REQUEST],
               m[WEIR_TXN] / m[PER_REQUEST]);
        if (m[ZDB] > 0)
            printf(" weir_vs_libzdb=%.2f weir_txn_vs_libzdb=%.2f", m[WEIR] / m[ZDB],
                   m[WEIR_TXN] / m[ZDB]);
        printf(" failed=%ld reps=%d\n",
               failed[WEIR] + failed[WEIR_TXN] + failed[ZDB] + failed[PER_REQUEST], reps);
        fflush(stdout);
    }
    return 0;
}
