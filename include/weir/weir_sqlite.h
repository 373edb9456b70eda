/* weir_sqlite.h — the SQLite driver, and a read/write pair of pools.
 *
 * Every connection gets WAL mode (set once by the writer), busy_timeout,
 * synchronous=NORMAL and foreign_keys=ON, then the caller's pragmas. Each
 * connection keeps a bounded LRU cache of prepared statements
 * (weir_sqlite_prepare_cached()); cached statements are reset on checkin and
 * an open transaction is rolled back.
 *
 * SQLite rewards one writer and many readers: weir_sqlite_open() makes a
 * pair, a writer pool of exactly one read-write connection and a reader pool
 * of read-only connections on the same file, with separate checkouts.
 *
 * Nothing is created where the caller did not ask: a missing file is an
 * error unless `create` is set, and ":memory:" is refused (each connection
 * would see its own empty database).
 */
#ifndef WEIR_SQLITE_H
#define WEIR_SQLITE_H

#include "weir/weir.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sqlite3 sqlite3;
typedef struct sqlite3_stmt sqlite3_stmt;

typedef struct weir_sqlite_options {
    bool create;             /**< create the file if missing [false] */
    bool read_only;          /**< open connections read-only [false] */
    int64_t busy_timeout_ms; /**< sqlite3_busy_timeout [5000] */
    int64_t stmt_cache;      /**< prepared statements kept per connection [32], at least 1 */
    const char *pragmas;     /**< extra "name=value;name=value" pragmas, may be NULL */
} weir_sqlite_options;

/** Fill so with the defaults above. */
WEIR_API void weir_sqlite_options_init(weir_sqlite_options *so);

/** The driver for one pool; its context comes from weir_sqlite_target_new(). */
WEIR_API const weir_driver *weir_sqlite_driver(void);

/** A driver context for the database file at path (so NULL: defaults). The
 *  pool takes ownership. WEIR_EINVAL with a reason in err for ":memory:", an
 *  empty path, or a missing file without create. */
WEIR_API int weir_sqlite_target_new(const char *path, const weir_sqlite_options *so, void **ctx,
                                    char *err, size_t errlen) WEIR_MUSTCHECK;

/** The sqlite3 handle of a checked-out connection (NULL if c is NULL).
 *  Valid until checkin; do not close it. */
WEIR_API sqlite3 *weir_sqlite_db(const weir_conn *c);

/** Prepare sql on c, or take it from c's statement cache (reset, bindings
 *  cleared). The statement belongs to the cache: do not finalize it; it is
 *  valid until checkin. Returns 0, WEIR_EINVAL if sql holds no statement
 *  (only blanks or comments), or WEIR_EDRIVER with SQLite's message
 *  available from sqlite3_errmsg(weir_sqlite_db(c)). */
WEIR_API int weir_sqlite_prepare_cached(weir_conn *c, const char *sql,
                                        sqlite3_stmt **out) WEIR_MUSTCHECK;

/** Statement cache figures summed over every connection a pool has had. */
WEIR_API void weir_sqlite_cache_stats(weir_pool *pool, uint64_t *hits, uint64_t *misses);

/* ---- the read/write pair ---- */
typedef struct weir_sqlite weir_sqlite;

/** Open a pair on path: a writer pool (max_size 1, read-write) and a reader
 *  pool (read-only; its size and timeouts from reader_opts, NULL for
 *  defaults). so applies to both (so->read_only is ignored). Returns 0 and
 *  *out, or WEIR_EINVAL with a reason in err. The writer connection is
 *  opened at once, so a bad path is reported here. */
WEIR_API int weir_sqlite_open(weir_sqlite **out, const char *path, const weir_sqlite_options *so,
                              const weir_options *reader_opts, char *err,
                              size_t errlen) WEIR_MUSTCHECK;
/** Close both pools (waits for checked-out connections). NULL is a no-op. */
WEIR_API void weir_sqlite_close(weir_sqlite *db);
/** The two pools, for checkout with a timeout, stats and metrics. */
WEIR_API weir_pool *weir_sqlite_writer(weir_sqlite *db);
WEIR_API weir_pool *weir_sqlite_reader(weir_sqlite *db);
#define weir_sqlite_checkout_write(db, out) weir_checkout(weir_sqlite_writer(db), (out))
#define weir_sqlite_checkout_read(db, out)  weir_checkout(weir_sqlite_reader(db), (out))

/* ---- group commit ---- */

/** A write for weir_sqlite_write(): run it on c (the writer connection;
 *  weir_sqlite_db(c), weir_sqlite_prepare_cached(c, ...)), without BEGIN or
 *  COMMIT of its own. Return SQLITE_OK to keep what it did, or an SQLite
 *  error code to have it rolled back, alone. It may run on another caller's
 *  thread (the group's leader); keep what it reads and writes in ud. */
typedef int (*weir_sqlite_write_fn)(weir_conn *c, void *ud);

/** Group commit: run fn as one write of its own, committed together with
 *  the writes other threads hand in meanwhile. While one group commits, the
 *  writes that arrive queue; the first of them then runs them all, in order,
 *  in one transaction (BEGIN IMMEDIATE ... COMMIT), each inside its own
 *  SAVEPOINT, so that a write that fails is rolled back alone and gets its
 *  own error. Returns once the group's COMMIT is done, with the durability
 *  of a commit of its own under the database's `synchronous` setting:
 *  0 (fn returned SQLITE_OK and the group committed), fn's SQLite error code
 *  (positive, extended as the driver's connections report them, e.g.
 *  SQLITE_CONSTRAINT_UNIQUE; its changes undone, the others' kept; SQLite's
 *  message in err), or a negative WEIR_ code when the group could not commit
 *  (every write in it then failed; the reason in err). A failure that rolls
 *  back the whole transaction (ON CONFLICT ROLLBACK, RAISE(ROLLBACK)) undoes
 *  the group's earlier writes too: they get WEIR_EDRIVER ("rolled back with
 *  its group"), never a false success. Readers see a group whole or not at
 *  all. err may be NULL. */
WEIR_API int weir_sqlite_write(weir_sqlite *db, weir_sqlite_write_fn fn, void *ud, char *err,
                               size_t errlen);

/** Groups committed, writes in them, and commits that failed, so far. */
WEIR_API void weir_sqlite_group_stats(weir_sqlite *db, int64_t *groups, int64_t *writes,
                                      int64_t *failed_commits);

#ifdef __cplusplus
}
#endif
#endif
