/* sqlite.c — the SQLite driver: pragmas, a statement cache, and the read/write pair. */
#include "weir/weir_sqlite.h"

#include "../lib/scheme.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct sq_target {
    char *path;
    char *pragmas;
    bool create, read_only;
    int64_t busy_timeout_ms, stmt_cache;
    _Atomic uint64_t hits, misses;
} sq_target;

typedef struct sq_stmt {
    char *sql;
    sqlite3_stmt *stmt;
    uint64_t last_use;
} sq_stmt;

typedef struct sq_conn {
    sqlite3 *db;
    sq_target *t;
    sq_stmt *cache;
    int ncache;
    uint64_t tick;
} sq_conn;

void weir_sqlite_options_init(weir_sqlite_options *so)
{
    *so = (weir_sqlite_options){.busy_timeout_ms = 5000, .stmt_cache = 32};
}

static void target_free(void *ctx)
{
    sq_target *t = ctx;
    if (!t) return;
    free(t->path);
    free(t->pragmas);
    free(t);
}

int weir_sqlite_target_new(const char *path, const weir_sqlite_options *so, void **ctx, char *err,
                           size_t errlen)
{
    if (!ctx) return WEIR_EINVAL;
    *ctx = NULL;
    weir_sqlite_options d;
    if (!so) {
        weir_sqlite_options_init(&d);
        so = &d;
    }
    if (!path || !*path) {
        snprintf(err, errlen, "SQLite: no database path given");
        return WEIR_EINVAL;
    }
    if (strcmp(path, ":memory:") == 0 || strncmp(path, "file::memory:", 13) == 0) {
        snprintf(err, errlen,
                 "SQLite: \"%s\" cannot be pooled: each connection would get its own empty "
                 "database; use a file",
                 path);
        return WEIR_EINVAL;
    }
    if (!so->create && access(path, F_OK) != 0) {
        snprintf(err, errlen, "SQLite: no database file \"%s\" (ask for create to make one)", path);
        return WEIR_EINVAL;
    }
    if (so->busy_timeout_ms < 0 || so->stmt_cache < 1) {
        snprintf(err, errlen, "SQLite: busy_timeout must be >= 0 and stmt_cache >= 1");
        return WEIR_EINVAL;
    }
    sq_target *t = calloc(1, sizeof *t);
    if (!t || !(t->path = strdup(path)) || (so->pragmas && !(t->pragmas = strdup(so->pragmas)))) {
        target_free(t);
        return WEIR_ENOMEM;
    }
    t->create = so->create;
    t->read_only = so->read_only;
    t->busy_timeout_ms = so->busy_timeout_ms;
    t->stmt_cache = so->stmt_cache;
    *ctx = t;
    return 0;
}

static int exec(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK) return 0;
    snprintf(err, errlen, "SQLite: %s: %s", sql, msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    return WEIR_EDRIVER;
}

static void cache_clear(sq_conn *c)
{
    for (int i = 0; i < c->ncache; i++) {
        sqlite3_finalize(c->cache[i].stmt);
        free(c->cache[i].sql);
    }
    c->ncache = 0;
}

static void sq_close(void *ctx, void *conn)
{
    (void)ctx;
    sq_conn *c = conn;
    cache_clear(c);
    free(c->cache);
    if (c->db) { /* also statements the caller prepared and left behind */
        sqlite3_stmt *s;
        while ((s = sqlite3_next_stmt(c->db, NULL))) sqlite3_finalize(s);
        sqlite3_close(c->db);
    }
    free(c);
}

static int sq_connect(void *ctx, int64_t deadline, void **out, char *err, size_t errlen)
{
    (void)deadline; /* opening a local file does not block on a peer */
    sq_target *t = ctx;
    int flags = SQLITE_OPEN_NOMUTEX; /* one thread at a time: the pool guarantees it */
    flags |= t->read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
    if (t->create && !t->read_only) flags |= SQLITE_OPEN_CREATE;
    sq_conn *c = calloc(1, sizeof *c);
    if (!c) return WEIR_ENOMEM;
    c->t = t;
    if (!(c->cache = calloc((size_t)t->stmt_cache, sizeof *c->cache))) {
        free(c);
        return WEIR_ENOMEM;
    }
    int rc = sqlite3_open_v2(t->path, &c->db, flags, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "SQLite: cannot open \"%s\": %s", t->path,
                 c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        sq_close(ctx, c);
        return WEIR_ECONNECT;
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db,
                         (int)(t->busy_timeout_ms > 2000000000 ? 2000000000 : t->busy_timeout_ms));
    char sql[512];
    if ((!t->read_only && exec(c->db, "PRAGMA journal_mode=WAL", err, errlen)) ||
        exec(c->db, "PRAGMA synchronous=NORMAL", err, errlen) ||
        exec(c->db, "PRAGMA foreign_keys=ON", err, errlen)) {
        sq_close(ctx, c);
        return WEIR_ECONNECT;
    }
    if (t->pragmas) { /* "a=1;b=2" -> PRAGMA a=1; PRAGMA b=2 */
        char *list = strdup(t->pragmas), *save = NULL;
        for (char *p = list ? strtok_r(list, ";", &save) : NULL; p;
             p = strtok_r(NULL, ";", &save)) {
            while (*p == ' ') p++;
            if (!*p) continue;
            snprintf(sql, sizeof sql, "PRAGMA %s", p);
            if (exec(c->db, sql, err, errlen)) {
                free(list);
                sq_close(ctx, c);
                return WEIR_ECONNECT;
            }
        }
        free(list);
    }
    *out = c;
    return 0;
}

static int sq_validate(void *ctx, void *conn, int64_t deadline, char *err, size_t errlen)
{
    (void)ctx;
    (void)deadline;
    return exec(((sq_conn *)conn)->db, "SELECT 1", err, errlen);
}

static bool sq_is_dirty(void *ctx, void *conn)
{
    (void)ctx;
    sq_conn *c = conn;
    if (!sqlite3_get_autocommit(c->db)) return true;
    for (sqlite3_stmt *s = sqlite3_next_stmt(c->db, NULL); s; s = sqlite3_next_stmt(c->db, s))
        if (sqlite3_stmt_busy(s)) return true;
    return false;
}

static int sq_reset(void *ctx, void *conn, char *err, size_t errlen)
{
    (void)ctx;
    sq_conn *c = conn;
    for (sqlite3_stmt *s = sqlite3_next_stmt(c->db, NULL); s; s = sqlite3_next_stmt(c->db, s))
        if (sqlite3_stmt_busy(s)) sqlite3_reset(s);
    if (!sqlite3_get_autocommit(c->db) && exec(c->db, "ROLLBACK", err, errlen)) return WEIR_EDRIVER;
    return 0;
}

static size_t sq_describe(void *ctx, char *buf, size_t len)
{
    sq_target *t = ctx;
    return (size_t)snprintf(buf, len, "sqlite://%s%s", t->path, t->read_only ? "?mode=ro" : "");
}

static const weir_driver sqlite_driver = {
    .name = "sqlite",
    .connect = sq_connect,
    .validate = sq_validate,
    .is_dirty = sq_is_dirty,
    .reset = sq_reset,
    .close = sq_close,
    .describe = sq_describe,
    .ctx_free = target_free,
};

const weir_driver *weir_sqlite_driver(void)
{
    return &sqlite_driver;
}

sqlite3 *weir_sqlite_db(const weir_conn *c)
{
    return c ? ((sq_conn *)weir_conn_handle(c))->db : NULL;
}

int weir_sqlite_prepare_cached(weir_conn *wc, const char *sql, sqlite3_stmt **out)
{
    if (!wc || !sql || !out) return WEIR_EINVAL;
    *out = NULL;
    sq_conn *c = weir_conn_handle(wc);
    c->tick++;
    for (int i = 0; i < c->ncache; i++) {
        if (strcmp(c->cache[i].sql, sql) == 0) {
            sqlite3_reset(c->cache[i].stmt);
            sqlite3_clear_bindings(c->cache[i].stmt);
            c->cache[i].last_use = c->tick;
            atomic_fetch_add_explicit(&c->t->hits, 1, memory_order_relaxed);
            *out = c->cache[i].stmt;
            return 0;
        }
    }
    atomic_fetch_add_explicit(&c->t->misses, 1, memory_order_relaxed);
    sqlite3_stmt *s;
    if (sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL) != SQLITE_OK)
        return WEIR_EDRIVER;
    if (!s) return WEIR_EINVAL; /* no statement in sql: only blanks or comments */
    int slot = c->ncache;
    if (c->ncache == c->t->stmt_cache) { /* full: evict the least recently used */
        slot = 0;
        for (int i = 1; i < c->ncache; i++)
            if (c->cache[i].last_use < c->cache[slot].last_use) slot = i;
        sqlite3_finalize(c->cache[slot].stmt);
        free(c->cache[slot].sql);
    } else {
        c->ncache++;
    }
    c->cache[slot] = (sq_stmt){.sql = strdup(sql), .stmt = s, .last_use = c->tick};
    if (!c->cache[slot].sql) {
        sqlite3_finalize(s);
        c->cache[slot] = c->cache[--c->ncache];
        return WEIR_ENOMEM;
    }
    *out = s;
    return 0;
}

void weir_sqlite_cache_stats(weir_pool *pool, uint64_t *hits, uint64_t *misses)
{
    uint64_t h = 0, m = 0;
    if (weir_pool_driver(pool) == &sqlite_driver) {
        sq_target *t = weir_pool_driver_ctx(pool);
        h = atomic_load(&t->hits);
        m = atomic_load(&t->misses);
    }
    if (hits) *hits = h;
    if (misses) *misses = m;
}

/* ---- the read/write pair ---- */

/* A write waiting for, or part of, a group (on its caller's stack). */
typedef struct gc_job {
    weir_sqlite_write_fn fn;
    void *ud;
    int rc;
    bool done, lead; /* set under gc_mu, before the one post that wakes it */
    char *err;
    size_t errlen;
    sem_t wake;
    struct gc_job *next;
} gc_job;

struct weir_sqlite {
    weir_pool *writer, *reader;
    /* group commit */
    pthread_mutex_t gc_mu;
    gc_job *gc_head, *gc_tail;
    bool gc_leading; /* a caller is running a group, or about to */
    int64_t gc_max;  /* writes in one group at most */
    _Atomic int64_t gc_groups, gc_writes, gc_failed_commits;
};

int weir_sqlite_open(weir_sqlite **out, const char *path, const weir_sqlite_options *so,
                     const weir_options *reader_opts, char *err, size_t errlen)
{
    if (!out) return WEIR_EINVAL;
    *out = NULL;
    weir_sqlite_options wso, rso;
    if (so)
        wso = *so;
    else
        weir_sqlite_options_init(&wso);
    wso.read_only = false;
    rso = wso;
    rso.read_only = true;
    rso.create = false;
    weir_sqlite *db = calloc(1, sizeof *db);
    if (!db) return WEIR_ENOMEM;
    pthread_mutex_init(&db->gc_mu, NULL);
    db->gc_max = 1000;
    void *wctx = NULL, *rctx = NULL;
    int rc = weir_sqlite_target_new(path, &wso, &wctx, err, errlen);
    if (rc) goto fail;
    weir_options wo;
    if (reader_opts)
        wo = *reader_opts;
    else
        weir_options_init(&wo);
    wo.max_size = 1;
    wo.min_idle = 1;
    wo.max_lifetime_ms = 0;
    wo.idle_timeout_ms = 0;
    snprintf(wo.name, sizeof wo.name, "sqlite://%s (write)", path);
    if ((rc = weir_pool_create(&db->writer, &sqlite_driver, wctx, &wo, NULL))) goto fail;
    /* open the writer now: it creates the file and sets WAL before any reader */
    weir_conn *c;
    if ((rc = weir_checkout_timeout(db->writer, 5000, &c))) {
        weir_pool_last_error(db->writer, err, errlen);
        goto fail;
    }
    weir_checkin(c);
    if ((rc = weir_sqlite_target_new(path, &rso, &rctx, err, errlen))) goto fail;
    weir_options ro;
    if (reader_opts)
        ro = *reader_opts;
    else
        weir_options_init(&ro);
    if (!ro.name[0]) snprintf(ro.name, sizeof ro.name, "sqlite://%s (read)", path);
    if ((rc = weir_pool_create(&db->reader, &sqlite_driver, rctx, &ro, NULL))) goto fail;
    *out = db;
    return 0;
fail:
    weir_sqlite_close(db);
    return rc == WEIR_ECONNECT ? WEIR_EINVAL : rc;
}

void weir_sqlite_close(weir_sqlite *db)
{
    if (!db) return;
    weir_pool_destroy(db->reader);
    weir_pool_destroy(db->writer);
    pthread_mutex_destroy(&db->gc_mu);
    free(db);
}

/* ---- group commit ---- */

static void job_fail(gc_job *j, int rc, const char *msg)
{
    j->rc = rc;
    if (j->err && j->errlen) snprintf(j->err, j->errlen, "%s", msg);
}

/* One prepared statement of the group's own, run to its end. */
static int gc_step(weir_conn *c, const char *sql)
{
    sqlite3_stmt *s;
    if (weir_sqlite_prepare_cached(c, sql, &s)) return sqlite3_errcode(weir_sqlite_db(c));
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* Run the jobs from..(n of them) as one transaction on the writer, each in a
 * SAVEPOINT of its own; then COMMIT. Each job's rc is set. */
static void gc_run(weir_sqlite *db, gc_job *first, int n)
{
    weir_conn *c;
    char msg[512];
    int rc = weir_checkout(db->writer, &c);
    if (rc) {
        char e[300] = "";
        weir_pool_last_error(db->writer, e, sizeof e);
        snprintf(msg, sizeof msg, "no SQLite writer: %s", e[0] ? e : weir_strerror(rc));
        for (gc_job *j = first; n--; j = j->next) job_fail(j, rc, msg);
        return;
    }
    sqlite3 *h = weir_sqlite_db(c);
    bool open = false;
    gc_job *j = first, *tx_first = first; /* the first write of the open transaction */
    for (int i = 0; i < n; i++, j = j->next) {
        if (!open) {
            tx_first = j;
            if ((rc = gc_step(c, "BEGIN IMMEDIATE")) != SQLITE_OK) {
                snprintf(msg, sizeof msg, "SQLite: BEGIN IMMEDIATE: %s", sqlite3_errmsg(h));
                for (int k = i; k < n; k++, j = j->next) job_fail(j, WEIR_EDRIVER, msg);
                break;
            }
            open = true;
        }
        if ((rc = gc_step(c, "SAVEPOINT weir_write")) != SQLITE_OK) {
            snprintf(msg, sizeof msg, "SQLite: SAVEPOINT: %s", sqlite3_errmsg(h));
            job_fail(j, WEIR_EDRIVER, msg);
            continue;
        }
        j->rc = j->fn(c, j->ud);
        if (sqlite3_get_autocommit(h)) { /* the transaction ended inside fn */
            open = false;
            if (j->rc == SQLITE_OK) { /* fn committed: the earlier writes went with it */
                job_fail(j, SQLITE_MISUSE,
                         "a grouped write must not end the transaction (it was committed)");
                continue;
            }
            /* A failure that rolls the whole transaction back (ON CONFLICT
             * ROLLBACK, RAISE(ROLLBACK)): the earlier writes of the group
             * were undone with it, and are told so. */
            if (j->err && j->errlen && !j->err[0])
                snprintf(j->err, j->errlen, "%s", sqlite3_errmsg(h));
            for (gc_job *k = tx_first; k != j; k = k->next)
                if (k->rc == SQLITE_OK)
                    job_fail(k, WEIR_EDRIVER,
                             "rolled back with its group: another write in it ended the "
                             "transaction (ON CONFLICT ROLLBACK)");
            continue;
        }
        if (j->rc != SQLITE_OK) {
            if (j->err && j->errlen && !j->err[0])
                snprintf(j->err, j->errlen, "%s", sqlite3_errmsg(h));
            gc_step(c, "ROLLBACK TO weir_write"); /* this write alone */
        }
        gc_step(c, "RELEASE weir_write");
    }
    if (open) {
        if ((rc = gc_step(c, "COMMIT")) != SQLITE_OK) {
            snprintf(msg, sizeof msg, "SQLite: COMMIT of a group of %d: %s", n, sqlite3_errmsg(h));
            gc_step(c, "ROLLBACK");
            atomic_fetch_add(&db->gc_failed_commits, 1);
            j = first;
            for (int i = 0; i < n; i++, j = j->next)
                if (j->rc == SQLITE_OK) job_fail(j, WEIR_EDRIVER, msg);
        }
    }
    weir_checkin(c);
    atomic_fetch_add(&db->gc_groups, 1);
    atomic_fetch_add(&db->gc_writes, n);
}

int weir_sqlite_write(weir_sqlite *db, weir_sqlite_write_fn fn, void *ud, char *err, size_t errlen)
{
    if (!db || !fn) return WEIR_EINVAL;
    if (err && errlen) err[0] = '\0';
    gc_job me = {.fn = fn, .ud = ud, .err = err, .errlen = errlen};
    (void)sem_init(&me.wake, 0, 0); /* process-private: cannot fail */
    pthread_mutex_lock(&db->gc_mu);
    if (db->gc_tail)
        db->gc_tail->next = &me;
    else
        db->gc_head = &me;
    db->gc_tail = &me;
    if (!db->gc_leading) {
        db->gc_leading = true;
        me.lead = true;
    }
    bool lead = me.lead; /* read here: a leader sets it under gc_mu */
    pthread_mutex_unlock(&db->gc_mu);
    /* Posted once: when this write is done, or when it is to lead the next
     * group. Waiting on a semaphore of its own, outside gc_mu, a woken
     * caller does not then queue for the mutex the leader holds. */
    if (!lead)
        while (sem_wait(&me.wake) && errno == EINTR) {
        }
    if (!me.done) {
        /* Lead one group: what is queued now, this write first among them
         * (it is at the head), up to gc_max; the writes that come meanwhile
         * queue for the next group, led by the first of them. */
        pthread_mutex_lock(&db->gc_mu);
        gc_job *first = db->gc_head;
        int n = 0;
        gc_job *last = NULL;
        for (gc_job *j = first; j && n < db->gc_max; j = j->next) last = j, n++;
        db->gc_head = last->next;
        if (!db->gc_head) db->gc_tail = NULL;
        pthread_mutex_unlock(&db->gc_mu);
        gc_run(db, first, n);
        pthread_mutex_lock(&db->gc_mu);
        gc_job *j = first;
        for (int i = 0; i < n; i++, j = j->next) j->done = true;
        gc_job *next_lead = db->gc_head;
        if (next_lead)
            next_lead->lead = true;
        else
            db->gc_leading = false;
        pthread_mutex_unlock(&db->gc_mu);
        /* The wake-ups, after the unlock: the next leader's first, so that
         * its group runs while this thread wakes the callers of this one.
         * A job may return (and its stack go) once posted: its next is read
         * first. */
        if (next_lead) sem_post(&next_lead->wake);
        j = first;
        for (int i = 0; i < n; i++) {
            gc_job *next = j->next;
            if (j != &me) sem_post(&j->wake);
            j = next;
        }
    }
    sem_destroy(&me.wake);
    return me.rc;
}

void weir_sqlite_group_stats(weir_sqlite *db, int64_t *groups, int64_t *writes,
                             int64_t *failed_commits)
{
    if (groups) *groups = db ? atomic_load(&db->gc_groups) : 0;
    if (writes) *writes = db ? atomic_load(&db->gc_writes) : 0;
    if (failed_commits) *failed_commits = db ? atomic_load(&db->gc_failed_commits) : 0;
}

weir_pool *weir_sqlite_writer(weir_sqlite *db)
{
    return db ? db->writer : NULL;
}
weir_pool *weir_sqlite_reader(weir_sqlite *db)
{
    return db ? db->reader : NULL;
}

/* --- the registry's sqlite:// scheme -------------------------------------- */

/* sqlite:///absolute/path[?create=1&busy_timeout=MS] */
static int lite_normalize(const char *url, const char *rest, char *out, size_t len, char *err,
                          size_t errlen)
{
    if (rest[0] != '/') {
        snprintf(err, errlen, "sqlite URL needs an absolute path: sqlite:///path/to/db (got %s)",
                 url);
        return WEIR_EINVAL;
    }
    int n = snprintf(out, len, "sqlite://%s", rest);
    return n < 0 || (size_t)n >= len ? WEIR_ERANGE : 0;
}

static int lite_make(const char *key, const weir_options *o, weir_pool **out, char *err,
                     size_t errlen)
{
    char path[1024];
    if (snprintf(path, sizeof path, "%s", key + 9) >= (int)sizeof path) return WEIR_ERANGE;
    weir_sqlite_options so;
    weir_sqlite_options_init(&so);
    char *q = strchr(path, '?');
    if (q) {
        *q++ = '\0';
        for (char *save = NULL, *kv = strtok_r(q, "&", &save); kv;
             kv = strtok_r(NULL, "&", &save)) {
            if (strcmp(kv, "create=1") == 0 || strcmp(kv, "create=true") == 0)
                so.create = true;
            else if (strncmp(kv, "busy_timeout=", 13) == 0)
                so.busy_timeout_ms = atoll(kv + 13);
            else {
                snprintf(err, errlen, "unknown sqlite URL parameter \"%s\"", kv);
                return WEIR_EINVAL;
            }
        }
    }
    void *ctx;
    int rc = weir_sqlite_target_new(path, &so, &ctx, err, errlen);
    if (rc) return rc;
    return weir_pool_create(out, weir_sqlite_driver(), ctx, o, NULL);
}

const weir__scheme weir__scheme_sqlite = {"sqlite", NULL, lite_normalize, lite_make};
