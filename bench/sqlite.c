/* sqlite.c — 100 concurrent writers and 50 concurrent readers on one SQLite
 * file: one shared connection behind a mutex vs weir's read/write pair.
 *
 *   sqlite [--quick] [--seconds S] [--reps N]
 *
 * Three sides, the same file settings (WAL, synchronous=NORMAL):
 *   shared_connection     one connection behind a mutex (the baseline);
 *   weir_read_write_pool  weir's pair: writers check out the one writer;
 *   weir_group_commit     weir's pair, writes through weir_sqlite_write():
 *                         the writes that queue while a group commits go in
 *                         the next group, one transaction, a SAVEPOINT each.
 * A write is one INSERT, acknowledged once committed; a read is an
 * aggregate over an indexed range of 1000 rows. Each thread loops until the
 * time is up. Prints writes/s and reads/s for each side and the ratios to
 * the baseline (medians). --readers-curve adds reads/s with readers only,
 * 1 to 50 threads, for both sides: where this machine's cores stop them;
 * and, for 100 writers alone, the same with synchronous=FULL, and two
 * bounds on group commit under NORMAL: its own path with empty writes
 * (the hand-off), and one thread running groups of 100 inserts with no
 * hand-off at all (SQLite's own work, which one writer does serially).
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
static const char *sync_mode = "NORMAL"; /* the file's synchronous setting, both sides */

typedef struct shared {
    pthread_mutex_t mu;
    sqlite3 *db;
    sqlite3_stmt *ins, *sel;
} shared;

typedef struct task {
    bool weir, writer, group;
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

static int insert_one(weir_conn *c, void *ud)
{
    sqlite3_stmt *s;
    if (weir_sqlite_prepare_cached(c, INSERT_SQL, &s)) return SQLITE_ERROR;
    return step_stmt(s, true, ud) ? SQLITE_OK : SQLITE_ERROR;
}

/* The ceiling: a write with nothing in it. What group commit's own path
 * costs a blocked caller (queue, wake-up, savepoint, an empty commit), and
 * so the most writes per second it could give if SQLite's work were free. */
static int write_nothing(weir_conn *c, void *ud)
{
    (void)c;
    (void)ud;
    return SQLITE_OK;
}
static bool empty_writes;

static void *work(void *arg)
{
    task *t = arg;
    pthread_barrier_wait(t->go);
    while (!atomic_load_explicit(t->stop, memory_order_relaxed)) {
        bool ok;
        if (t->weir && t->writer && t->group) {
            ok = weir_sqlite_write(t->pair, empty_writes ? write_nothing : insert_one, &t->seed,
                                   NULL, 0) == 0;
        } else if (t->weir) {
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

/* The other ceiling: SQLite's own work for a group, with no hand-off at
 * all. One thread, one connection, groups of 100 writes each in its
 * SAVEPOINT, one COMMIT per group: the writer is one connection, so no
 * group commit (on any number of cores) writes faster than this. */
static bool step_plain(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE;
}

static double serial_groups(double secs)
{
    seed_file();
    sqlite3 *db;
    must(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL), db, "open");
    char pragma[64];
    snprintf(pragma, sizeof pragma, "PRAGMA synchronous=%s", sync_mode);
    must(sqlite3_exec(db, pragma, NULL, NULL, NULL), db, "pragma");
    sqlite3_stmt *st[5];
    static const char *const sql[5] = {"BEGIN IMMEDIATE", "SAVEPOINT weir_write", INSERT_SQL,
                                       "RELEASE weir_write", "COMMIT"};
    for (int i = 0; i < 5; i++) must(sqlite3_prepare_v2(db, sql[i], -1, &st[i], NULL), db, sql[i]);
    unsigned seed = 1;
    long n = 0;
    int64_t t0 = weir_now_ns(), end = t0 + (int64_t)(secs * 1e9);
    while (weir_now_ns() < end) {
        bool ok = step_plain(st[0]);
        for (int i = 0; i < 100 && ok; i++, n++)
            ok = step_plain(st[1]) && step_stmt(st[2], true, &seed) && step_plain(st[3]);
        if (!ok || !step_plain(st[4])) must(SQLITE_ERROR, db, "serial group");
    }
    double el = (double)(weir_now_ns() - t0) / 1e9;
    for (int i = 0; i < 5; i++) sqlite3_finalize(st[i]);
    sqlite3_close(db);
    return (double)n / el;
}

typedef struct result {
    double writes, reads;
    long errors;
} result;

static result run(bool use_weir, bool group, int writers, int readers, double secs)
{
    seed_file();
    shared sh = {.mu = PTHREAD_MUTEX_INITIALIZER};
    weir_sqlite *pair = NULL;
    if (use_weir) {
        weir_sqlite_options so;
        weir_sqlite_options_init(&so);
        so.busy_timeout_ms = 10000;
        char pragmas[64];
        snprintf(pragmas, sizeof pragmas, "synchronous=%s", sync_mode);
        so.pragmas = pragmas;
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
        char pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA synchronous=%s", sync_mode);
        must(sqlite3_exec(sh.db, pragma, NULL, NULL, NULL), sh.db, "pragma");
        must(sqlite3_prepare_v2(sh.db, INSERT_SQL, -1, &sh.ins, NULL), sh.db, "prepare");
        must(sqlite3_prepare_v2(sh.db, SELECT_SQL, -1, &sh.sel, NULL), sh.db, "prepare");
    }
    int N = writers + readers;
    _Atomic bool stop = false;
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, (unsigned)N + 1);
    static task t[WRITERS + READERS];
    pthread_t th[WRITERS + READERS];
    for (int i = 0; i < N; i++) {
        t[i] = (task){.weir = use_weir,
                      .group = group,
                      .writer = i < writers,
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
    bool curve = false;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--readers-curve")) {
            curve = true;
            for (int k = i; k < argc - 1; k++) argv[k] = argv[k + 1];
            argc--;
            break;
        }
    if (!bench_args(argc, argv, "sqlite", 1.5, &secs, &reps)) return 2;
    char dir[] = "/tmp/weir-bench-sqlite-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    snprintf(path, sizeof path, "%s/bench.db", dir);
    static const char *const modes[] = {"shared_connection", "weir_read_write_pool",
                                        "weir_group_commit"};
    double w[3][20], r[3][20];
    long errors[3] = {0, 0, 0};
    for (int rep = 0; rep < reps; rep++)
        for (int m = 0; m < 3; m++) {
            result x = run(m > 0, m == 2, WRITERS, READERS, secs);
            w[m][rep] = x.writes;
            r[m][rep] = x.reads;
            errors[m] += x.errors;
        }
    double mw[3], mr[3];
    for (int m = 0; m < 3; m++) {
        mw[m] = bench_median(w[m], reps);
        mr[m] = bench_median(r[m], reps);
        printf("RESULT sqlite mode=%s writers=%d readers=%d writes_per_s=%.0f reads_per_s=%.0f "
               "errors=%ld reps=%d\n",
               modes[m], WRITERS, READERS, mw[m], mr[m], errors[m], reps);
    }
    printf("RESULT sqlite writes_ratio=%.2f reads_ratio=%.2f group_writes_ratio=%.2f "
           "group_reads_ratio=%.2f\n",
           mw[1] / mw[0], mr[1] / mr[0], mw[2] / mw[0], mr[2] / mr[0]);
    if (curve) {
        /* writers alone: what group commit does when readers leave it the CPU */
        double wa[20], wb[20], wc[20];
        for (int rep = 0; rep < reps; rep++) {
            wa[rep] = run(false, false, WRITERS, 0, secs).writes;
            wb[rep] = run(true, false, WRITERS, 0, secs).writes;
            wc[rep] = run(true, true, WRITERS, 0, secs).writes;
        }
        double mwa = bench_median(wa, reps), mwb = bench_median(wb, reps),
               mwc = bench_median(wc, reps);
        printf("RESULT sqlite_writers synchronous=NORMAL writers=%d readers=0 "
               "shared_writes_per_s=%.0f weir_pool_writes_per_s=%.0f weir_group_writes_per_s=%.0f "
               "group_ratio=%.2f reps=%d\n",
               WRITERS, mwa, mwb, mwc, mwc / mwa, reps);
        /* the same group commit with empty writes: its ceiling on this machine */
        empty_writes = true;
        for (int rep = 0; rep < reps; rep++) wc[rep] = run(true, true, WRITERS, 0, secs).writes;
        empty_writes = false;
        for (int rep = 0; rep < reps; rep++) wb[rep] = serial_groups(secs);
        double mwe = bench_median(wc, reps), mws = bench_median(wb, reps);
        printf("RESULT sqlite_writers synchronous=NORMAL writers=%d readers=0 "
               "weir_group_empty_writes_per_s=%.0f handoff_bound_ratio=%.2f "
               "serial_group_writes_per_s=%.0f sqlite_bound_ratio=%.2f reps=%d\n",
               WRITERS, mwe, mwe / mwa, mws, mws / mwa, reps);
        /* durable commits: each one waits for the disk, which a group shares */
        sync_mode = "FULL";
        for (int rep = 0; rep < reps; rep++) {
            wa[rep] = run(false, false, WRITERS, 0, secs).writes;
            wc[rep] = run(true, true, WRITERS, 0, secs).writes;
        }
        mwa = bench_median(wa, reps);
        mwc = bench_median(wc, reps);
        printf("RESULT sqlite_writers synchronous=FULL writers=%d readers=0 "
               "shared_writes_per_s=%.0f weir_group_writes_per_s=%.0f group_ratio=%.2f reps=%d\n",
               WRITERS, mwa, mwc, mwc / mwa, reps);
        sync_mode = "NORMAL";
        static const int rs[] = {1, 2, 4, 8, 16, 50};
        for (size_t i = 0; i < sizeof rs / sizeof *rs; i++) {
            double a[20], b[20];
            for (int rep = 0; rep < reps; rep++) {
                a[rep] = run(false, false, 0, rs[i], secs).reads;
                b[rep] = run(true, false, 0, rs[i], secs).reads;
            }
            double ma = bench_median(a, reps), mb = bench_median(b, reps);
            printf("RESULT sqlite_readers readers=%d shared_reads_per_s=%.0f weir_reads_per_s=%.0f "
                   "ratio=%.2f reps=%d\n",
                   rs[i], ma, mb, mb / ma, reps);
            fflush(stdout);
        }
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
