/* sqlite.c — 100 concurrent writers and 50 concurrent readers on one SQLite
 * file: one shared connection behind a mutex vs weir's read/write pair.
 *
 *   sqlite [--quick] [--seconds S] [--reps N]
 *
 * Both sides use the same file settings (WAL, synchronous=NORMAL). A write
 * is one INSERT (its own transaction); a read is an aggregate over an
 * indexed range of 1000 rows. Each thread loops until the time is up.
 * Prints writes/s and reads/s for each side and the ratios (medians).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weir/weir.h"
#include "weir/weir_sqlite.h"

#include "bench.h"

enum { WRITERS = 100, READERS = 50, ROWS = 20000 };

static char path[256];

typedef struct shared {
    pthread_mutex_t mu;
    sqlite3 *db;
    sqlite3_stmt *ins, *sel;
} shared;

typedef struct task {
    bool weir, writer;
    weir_sqlite *pair;
    shared *sh;
    _Atomic bool *stop;
    pthread_barrier_t *go;
    unsigned seed;
    long ops, errors;
} task;

#define INSERT_SQL "INSERT INTO t (k, v) VALUES (?1, ?2)"
#define SELECT_SQL "SELECT count(*), sum(v) FROM t WHERE k BETWEEN ?1 AND ?1 + 1000"

static bool step_stmt(sqlite3_stmt *s, bool writer, unsigned *seed)
{
    int k = (int)(rand_r(seed) % ROWS);
    sqlite3_bind_int(s, 1, k);
    if (writer) sqlite3_bind_int(s, 2, k % 97);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return writer ? rc == SQLITE_DONE : rc == SQLITE_ROW;
}

static void *work(void *arg)
{
    task *t = arg;
    pthread_barrier_wait(t->go);
    while (!atomic_load_explicit(t->stop, memory_order_relaxed)) {
        bool ok;
        if (t->weir) {
            weir_conn *c;
            weir_pool *p = t->writer ? weir_sqlite_writer(t->pair) : weir_sqlite_reader(t->pair);
            if (weir_checkout(p, &c) != 0) {
                t->errors++;
                continue;
            }
            sqlite3_stmt *s;
            ok = weir_sqlite_prepare_cached(c, t->writer ? INSERT_SQL : SELECT_SQL, &s) == 0 &&
                 step_stmt(s, t->writer, &t->seed);
            weir_checkin(c);
        } else {
            pthread_mutex_lock(&t->sh->mu);
            ok = step_stmt(t->writer ? t->sh->ins : t->sh->sel, t->writer, &t->seed);
            pthread_mutex_unlock(&t->sh->mu);
        }
        if (ok)
            t->ops++;
        else
            t->errors++;
    }
    return NULL;
}

static void must(int rc, sqlite3 *db, const char *what)
{
    if (rc != SQLITE_OK) {
        fprintf(stderr, "sqlite bench: %s: %s\n", what, sqlite3_errmsg(db));
        exit(1);
    }
}

static void seed_file(void)
{
    unlink(path);
    sqlite3 *db;
    must(sqlite3_open(path, &db), db, "open");
    must(sqlite3_exec(
             db,
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
             "CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER, v INTEGER);"
             "CREATE INDEX t_k ON t (k);"
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)"
             " INSERT INTO t (k, v) SELECT i, i % 97 FROM n;",
             NULL, NULL, NULL),
         db, "seed");
    sqlite3_close(db);
}

typedef struct result {
    double writes, reads;
    long errors;
} result;

static result run(bool use_weir, double secs)
{
    seed_file();
    shared sh = {.mu = PTHREAD_MUTEX_INITIALIZER};
    weir_sqlite *pair = NULL;
    if (use_weir) {
        weir_sqlite_options so;
        weir_sqlite_options_init(&so);
        so.busy_timeout_ms = 10000;
        weir_options ro;
        weir_options_init(&ro);
        ro.max_size = 4; /* readers: 2 cores, a little headroom for descheduling */
        ro.min_idle = 4;
        char err[256];
        if (weir_sqlite_open(&pair, path, &so, &ro, err, sizeof err) != 0) {
            fprintf(stderr, "sqlite bench: %s\n", err);
            exit(1);
        }
    } else {
        must(sqlite3_open_v2(path, &sh.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL),
             sh.db, "open");
        must(sqlite3_exec(sh.db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL), sh.db, "pragma");
        must(sqlite3_prepare_v2(sh.db, INSERT_SQL, -1, &sh.ins, NULL), sh.db, "prepare");
        must(sqlite3_prepare_v2(sh.db, SELECT_SQL, -1, &sh.sel, NULL), sh.db, "prepare");
    }
    enum { N = WRITERS + READERS };
    _Atomic bool stop = false;
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, N + 1);
    static task t[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        t[i] = (task){.weir = use_weir,
                      .writer = i < WRITERS,
                      .pair = pair,
                      .sh = &sh,
                      .stop = &stop,
                      .go = &go,
                      .seed = (unsigned)i + 1};
        pthread_create(&th[i], NULL, work, &t[i]);
    }
    pthread_barrier_wait(&go);
    int64_t t0 = weir_now_ns();
    usleep((useconds_t)(secs * 1e6));
    atomic_store(&stop, true);
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    double el = (double)(weir_now_ns() - t0) / 1e9;
    result r = {0};
    for (int i = 0; i < N; i++) {
        if (t[i].writer)
            r.writes += (double)t[i].ops;
        else
            r.reads += (double)t[i].ops;
        r.errors += t[i].errors;
    }
    r.writes /= el;
    r.reads /= el;
    pthread_barrier_destroy(&go);
    if (pair)
        weir_sqlite_close(pair);
    else {
        sqlite3_finalize(sh.ins);
        sqlite3_finalize(sh.sel);
        sqlite3_close(sh.db);
    }
    return r;
}

int main(int argc, char **argv)
{
    double secs = 3;
    int reps = 3;
    if (!bench_args(argc, argv, "sqlite", 1.5, &secs, &reps)) return 2;
    char dir[] = "/tmp/weir-bench-sqlite-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    snprintf(path, sizeof path, "%s/bench.db", dir);
    double sw[20], sr[20], ww[20], wr[20];
    long errors[2] = {0, 0};
    for (int rep = 0; rep < reps; rep++) {
        result a = run(false, secs), b = run(true, secs);
        sw[rep] = a.writes;
        sr[rep] = a.reads;
        ww[rep] = b.writes;
        wr[rep] = b.reads;
        errors[0] += a.errors;
        errors[1] += b.errors;
    }
    double msw = bench_median(sw, reps), msr = bench_median(sr, reps), mww = bench_median(ww, reps),
           mwr = bench_median(wr, reps);
    printf("RESULT sqlite mode=shared_connection writers=%d readers=%d writes_per_s=%.0f "
           "reads_per_s=%.0f errors=%ld reps=%d\n",
           WRITERS, READERS, msw, msr, errors[0], reps);
    printf("RESULT sqlite mode=weir_read_write_pool writers=%d readers=%d writes_per_s=%.0f "
           "reads_per_s=%.0f errors=%ld reps=%d\n",
           WRITERS, READERS, mww, mwr, errors[1], reps);
    printf("RESULT sqlite writes_ratio=%.2f reads_ratio=%.2f\n", mww / msw, mwr / msr);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
