/* weir.h — libweir, an embeddable, thread-safe connection pool engine.
 *
 * This header is the specification. Every function says what it does, who
 * owns what, what NULL means and what it returns. Unless a function says
 * otherwise it is thread-safe and may be called from any thread.
 *
 * Return values: 0 on success, or a negative WEIR_E* code (see
 * WEIR_ERRNO_MAP). A few functions return a positive value with a meaning
 * they state (WEIR_PENDING).
 *
 * Fork: a pool belongs to the process that created it. In a child made by
 * fork(), every call on an inherited pool fails with WEIR_EFORK (checked
 * without a system call), and weir_pool_destroy() in the child releases
 * nothing: the parent still owns those connections. Create new pools in the
 * child if it needs any.
 */
#ifndef WEIR_H
#define WEIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define WEIR_API          __attribute__((visibility("default")))
#define WEIR_MUSTCHECK    __attribute__((warn_unused_result))
#define WEIR_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define WEIR_API
#define WEIR_MUSTCHECK
#define WEIR_PRINTF(a, b)
#endif

#define WEIR_VERSION_MAJOR 0
#define WEIR_VERSION_MINOR 1
#define WEIR_VERSION_PATCH 0
#define WEIR_VERSION       "0.1.0"

/** The library's version string, e.g. "0.1.0". Static storage. */
WEIR_API const char *weir_version(void);

/* ------------------------------------------------------------------------
 * Errors
 *
 * One table. Codes are negative, stable and never renumbered; a retired code
 * keeps its slot.
 */
#define WEIR_ERRNO_MAP(XX)                                                                         \
    XX(EINVAL, 1, "invalid argument")                                                              \
    XX(ENOMEM, 2, "out of memory")                                                                 \
    XX(ETIMEDOUT, 3, "timed out waiting for a connection")                                         \
    XX(EBUSY, 4, "too many callers waiting; checkout refused (load shedding)")                     \
    XX(ECLOSED, 5, "pool is closed or draining")                                                   \
    XX(ECONNECT, 6, "could not connect to the target")                                             \
    XX(ECANCELED, 7, "checkout was canceled")                                                      \
    XX(EFORK, 8, "pool was created by the parent process; not usable after fork()")                \
    XX(ENOENT, 9, "no such option")                                                                \
    XX(ERANGE, 10, "value out of range")                                                           \
    XX(ETYPE, 11, "option has another type")                                                       \
    XX(EDRIVER, 12, "driver error")                                                                \
    XX(EALREADY, 13, "request already completed")                                                  \
    XX(ENOTFOUND, 14, "not found")                                                                 \
    XX(EREFUSED, 15, "the target refused the login")

typedef enum weir_errno {
#define WEIR__ERR_ENUM(name, num, msg) WEIR_##name = -(num),
    WEIR_ERRNO_MAP(WEIR__ERR_ENUM)
#undef WEIR__ERR_ENUM
} weir_errno;

/** Returned by weir_checkout_async() when the callback will fire later. */
#define WEIR_PENDING 1

/** A short English description of code (0 gives "success"); unknown codes
 *  give "unknown error". Static storage, never NULL. */
WEIR_API const char *weir_strerror(int code);
/** The code's name, e.g. "WEIR_ETIMEDOUT" ("WEIR_OK" for 0, "WEIR_UNKNOWN"
 *  for unknown codes). Static storage, never NULL. */
WEIR_API const char *weir_err_name(int code);

/* ------------------------------------------------------------------------
 * Handles
 */
/** A pool of connections to one target, made by one driver. */
typedef struct weir_pool weir_pool;
/** One pooled connection. Owned by the pool; the caller holds it between
 *  checkout and checkin and must not use it after checkin. */
typedef struct weir_conn weir_conn;

/* ------------------------------------------------------------------------
 * Drivers
 *
 * A driver makes and looks after the physical connections of one target.
 * The engine never calls a driver function while holding its own lock, and
 * calls the functions for one connection from one thread at a time. `ctx` is
 * the driver context given to weir_pool_create(); `conn` is what connect()
 * returned. `err`/`errlen` receive a human-readable message on failure (the
 * engine masks credentials before showing it to anyone).
 */
typedef struct weir_driver {
    const char *name; /**< e.g. "postgres", "sqlite", "fake" */
    /** Open one connection. Must give up by `deadline_ns` (CLOCK_MONOTONIC
     *  nanoseconds, see weir_now_ns()) and return WEIR_ETIMEDOUT then.
     *  0 and *conn on success; a negative code and a message otherwise. */
    int (*connect)(void *ctx, int64_t deadline_ns, void **conn, char *err, size_t errlen);
    /** Check that conn still works (a real round trip). 0 = healthy. NULL: always healthy. */
    int (*validate)(void *ctx, void *conn, int64_t deadline_ns, char *err, size_t errlen);
    /** Is conn in a state the next user must not see (open transaction,
     *  pending results)? NULL: never dirty. */
    bool (*is_dirty)(void *ctx, void *conn);
    /** Bring a dirty conn back to a clean session. 0 = clean now; anything
     *  else and the engine closes it. NULL: dirty connections are closed. */
    int (*reset)(void *ctx, void *conn, char *err, size_t errlen);
    /** Close conn and free everything it owns. Required. */
    void (*close)(void *ctx, void *conn);
    /** Write a description of the target with credentials masked, e.g.
     *  "postgres://app:***@db:5432/x". Returns the length written. NULL: the
     *  driver's name is used. */
    size_t (*describe)(void *ctx, char *buf, size_t len);
    /** Free ctx when the pool is destroyed. NULL: the caller keeps ownership. */
    void (*ctx_free)(void *ctx);
} weir_driver;

/* ------------------------------------------------------------------------
 * Options
 *
 * Every option has a name, a type, a default and a one-line doc in one
 * table (weir_option_at()); the config file, the C API and the HTTP API all
 * use it. Durations are milliseconds in the struct; as text they accept a
 * unit: "250ms", "30s", "10min", "1h" (a bare number means milliseconds).
 */
typedef enum weir_option_type {
    WEIR_OPT_INT,      /**< int64_t count */
    WEIR_OPT_DURATION, /**< int64_t milliseconds */
    WEIR_OPT_BOOL,     /**< bool */
    WEIR_OPT_STRING,   /**< char[WEIR_NAME_MAX] */
} weir_option_type;

#define WEIR_NAME_MAX 128

typedef struct weir_options {
    char name[WEIR_NAME_MAX]; /**< pool name for metrics and logs; "" = the target's description */
    int64_t max_size;         /**< hard cap on open connections [10] */
    int64_t min_idle;         /**< idle connections kept warm [0] */
    int64_t acquire_timeout_ms; /**< how long a checkout may wait [30 s] */
    int64_t connect_timeout_ms; /**< one connect attempt [10 s] */
    int64_t idle_timeout_ms;    /**< close idle connections above min_idle [10 min]; 0 = never */
    int64_t max_lifetime_ms;    /**< retire connections, minus 0-5 % jitter [30 min]; 0 = never */
    int64_t keepalive_ms;       /**< validate idle connections this often [0 = off] */
    int64_t validate_idle_after_ms; /**< validate on checkout if idle this long [500 ms]; 0 = every
                                       checkout of an idle connection; -1 = never */
    int64_t max_uses;               /**< retire after N checkouts [0 = unlimited] */
    int64_t max_waiters;       /**< over this, checkout fails with WEIR_EBUSY [0 = unlimited] */
    int64_t leak_threshold_ms; /**< report a checkout held longer [0 = off] */
    int64_t backoff_min_ms;    /**< first reconnect delay after a failure [10 ms] */
    int64_t backoff_max_ms;    /**< reconnect delay cap [5 s] */
    bool fail_fast; /**< a connect fails while no usable connection is open (evicted ones do not
                       count): waiters get its error at once [true] */
    bool
        fail_fast_unreachable; /**< fail_fast also when the target cannot be reached; false: only a
                                  driver's WEIR_EREFUSED (the target answered and refused the login)
                                  trips it, and waiters wait through unreachable spells [true] */
    bool wait_while_down;    /**< with fail_fast: a checkout while the target is down waits for the
                                next connect (after the back-off) instead of failing at once; that
                                connect's error still fails every waiter [false] */
    int64_t creator_threads; /**< threads that open connections, at most this many at once: each
                                starts when a connect is needed and none is free [1] */
    int64_t creator_idle_ms; /**< a creator thread with nothing to open this long ends [5 s] */
    int64_t housekeeping_ms; /**< the shortest gap between two housekeeper passes; between them
                                it sleeps until a connection is due [250 ms] */
    int64_t warmup_batch;    /**< connects made for min_idle (nobody waiting) go in batches of
                                this many, one batch done before the next [0 = no limit] */
    int64_t warmup_pause_ms; /**< pause between two warm-up batches [100 ms] */
    bool adaptive;           /**< the pool's size moves between min_idle and max_size (its cap) from
                                what it measures [false] */
    int64_t adaptive_wait_ms; /**< adaptive: checkouts waiting longer than this mean grow [5 ms] */
    int64_t adaptive_period_ms; /**< adaptive: how often the size is reconsidered [1 s] */
} weir_options;

typedef struct weir_option_info {
    const char *name;
    weir_option_type type;
    const char *default_text; /**< the default, as text */
    const char *doc;          /**< one line */
} weir_option_info;

/** Fill opts with every option's default. */
WEIR_API void weir_options_init(weir_options *opts);
/** Number of options in the table. */
WEIR_API size_t weir_option_count(void);
/** The i-th option (0 <= i < weir_option_count()), or NULL. Static storage. */
WEIR_API const weir_option_info *weir_option_at(size_t i);
/** The option called name, or NULL. */
WEIR_API const weir_option_info *weir_option_find(const char *name);
/** Set an option from text (a config file or HTTP value). WEIR_ENOENT for an
 *  unknown name, WEIR_EINVAL for unparsable text, WEIR_ERANGE for a value
 *  outside the option's range. opts is unchanged on error. */
WEIR_API int weir_options_set(weir_options *opts, const char *name,
                              const char *value) WEIR_MUSTCHECK;
/** Typed setters. WEIR_ETYPE when name is of another type; WEIR_ENOENT, WEIR_ERANGE as above. */
WEIR_API int weir_options_set_int(weir_options *opts, const char *name, int64_t v) WEIR_MUSTCHECK;
WEIR_API int weir_options_set_ms(weir_options *opts, const char *name, int64_t ms) WEIR_MUSTCHECK;
WEIR_API int weir_options_set_bool(weir_options *opts, const char *name, bool v) WEIR_MUSTCHECK;
WEIR_API int weir_options_set_string(weir_options *opts, const char *name,
                                     const char *v) WEIR_MUSTCHECK;
/** Write an option's current value as text into buf. Returns 0, or WEIR_ENOENT. */
WEIR_API int weir_options_get(const weir_options *opts, const char *name, char *buf, size_t len);
/** Apply a named preset, a set of option values for a kind of use, over opts
 *  (only the options the preset names change; set others after). Presets:
 *  "default" (the library's defaults), "high_throughput", "low_memory",
 *  "serverless"; docs/ENGINE.md gives each one's values and why. Also
 *  weir_options_set(opts, "preset", name). 0, or WEIR_ENOENT for another name. */
WEIR_API int weir_options_preset(weir_options *opts, const char *name) WEIR_MUSTCHECK;
/** The i-th preset's name (0 <= i < weir_preset_count()), or NULL. */
WEIR_API const char *weir_preset_at(size_t i);
WEIR_API size_t weir_preset_count(void);
/** Check the whole set for consistency (max_size >= 1, min_idle <= max_size, ...).
 *  0, or WEIR_EINVAL with a reason in why (may be NULL). */
WEIR_API int weir_options_check(const weir_options *opts, char *why, size_t whylen);

/* ------------------------------------------------------------------------
 * Hooks. All optional (NULL). Each is called outside the pool's lock, on the
 * thread doing the work, with the hook's user data `ud`.
 */
typedef enum weir_log_level {
    WEIR_LOG_DEBUG,
    WEIR_LOG_INFO,
    WEIR_LOG_WARN,
    WEIR_LOG_ERROR
} weir_log_level;

typedef struct weir_hooks {
    void *ud;
    /** After a connection is opened, before anyone uses it (session setup).
     *  Non-zero: the connection is closed and counted as a connect error. */
    int (*on_create)(void *ud, weir_conn *c);
    /** Before a connection is handed to a caller. Non-zero: it is closed
     *  (reason "broken") and the checkout tries another. */
    int (*on_checkout)(void *ud, weir_conn *c);
    /** When a caller checks a connection in, before it is reused. Non-zero:
     *  it is closed (reason "broken"). */
    int (*on_checkin)(void *ud, weir_conn *c);
    /** Just before the driver closes a connection. */
    void (*on_destroy)(void *ud, weir_conn *c);
    /** Log lines (leaks, connect errors, retirements). NULL: WARN and ERROR go to stderr. */
    void (*on_log)(void *ud, weir_log_level level, const char *msg);
} weir_hooks;

/* ------------------------------------------------------------------------
 * Pool lifetime
 */
/** Create a pool. `driver` must stay valid for the pool's life; `ctx` is
 *  passed to every driver call and freed with driver->ctx_free (if set) when
 *  the pool is destroyed, also when this call fails. `opts` and `hooks` are
 *  copied; either may be NULL for defaults. Starts the creator and
 *  housekeeper threads; opens min_idle connections in the background.
 *  Returns 0 and *out, or WEIR_EINVAL (bad options: the reason goes to
 *  hooks->on_log, or stderr without one; weir_options_check() gives it
 *  too), WEIR_ENOMEM. */
WEIR_API int weir_pool_create(weir_pool **out, const weir_driver *driver, void *ctx,
                              const weir_options *opts, const weir_hooks *hooks) WEIR_MUSTCHECK;

/** Close the pool: pending checkouts fail with WEIR_ECLOSED, new ones too;
 *  waits until every checked-out connection is checked in (like pgxpool's
 *  Close), closes everything and frees the pool. NULL is a no-op. The pool
 *  must not be used afterwards. */
WEIR_API void weir_pool_destroy(weir_pool *pool);

/* ------------------------------------------------------------------------
 * Checkout and checkin
 *
 * A checkout takes, in order: the calling thread's own last connection if it
 * is idle (affinity, no lock), else the most recently returned idle
 * connection (LIFO), else another thread's idle one; otherwise the caller
 * waits in FIFO order and takes whatever comes first, a returned connection
 * (handed over directly) or a new one from the creator thread. Connections
 * idle longer than validate_idle_after are validated first; expired or
 * broken ones are replaced.
 */

/** Check out a connection, waiting at most timeout_ms (-1: the pool's
 *  acquire_timeout). Records file:line for leak reports; use the macros.
 *  Returns 0 and *out, or WEIR_ETIMEDOUT, WEIR_EBUSY (max_waiters reached),
 *  WEIR_ECLOSED, WEIR_ECONNECT (fail-fast: the target is down; see
 *  weir_pool_last_error()), WEIR_EFORK. */
WEIR_API int weir_checkout_at(weir_pool *pool, int64_t timeout_ms, weir_conn **out,
                              const char *file, int line) WEIR_MUSTCHECK;
#define weir_checkout(pool, out) weir_checkout_at((pool), -1, (out), __FILE__, __LINE__)
#define weir_checkout_timeout(pool, ms, out)                                                       \
    weir_checkout_at((pool), (ms), (out), __FILE__, __LINE__)

/** Return c to its pool. If the driver says it is dirty it is reset, or
 *  closed if reset fails; if marked broken, expired or over max_uses it is
 *  closed. c must not be used afterwards. NULL is a no-op. */
WEIR_API void weir_checkin(weir_conn *c);

/** Mark a checked-out connection as broken: checkin will close it. */
WEIR_API void weir_conn_mark_broken(weir_conn *c);
/** The driver's connection (for the fake driver a weir_fake_conn*, for
 *  PostgreSQL a PGconn*). Valid while c is checked out. */
WEIR_API void *weir_conn_handle(const weir_conn *c);
/** The pool c belongs to. */
WEIR_API weir_pool *weir_conn_pool(const weir_conn *c);
/** Milliseconds since c was last checked in or out (coarse clock, ~4 ms).
 *  In an on_checkout hook: how long it sat idle. */
WEIR_API int64_t weir_conn_idle_ms(const weir_conn *c);
/** Inside the on_destroy hook: why the connection is being closed
 *  (WEIR_CLOSE_IDLE, _LIFETIME, _BROKEN, _USES, _EVICTED, as counted in
 *  closed_total); -1 outside the hook. */
WEIR_API int weir_conn_close_reason(const weir_conn *c);

/** Completion of an asynchronous checkout: status 0 and c, or a negative
 *  code (WEIR_ETIMEDOUT, WEIR_ECLOSED, WEIR_ECONNECT, WEIR_ECANCELED) and c
 *  NULL. Fires exactly once, possibly on another thread: the thread that
 *  checked a connection in, the creator thread, the housekeeper thread
 *  (timeouts), or the thread calling weir_checkout_cancel() or
 *  weir_pool_destroy(). It must not block for long. */
typedef void (*weir_checkout_cb)(weir_conn *c, int status, void *ud);

/** Asynchronous checkout for event loops. If a connection is available now,
 *  returns 0 with *now set and the callback is NOT called. Otherwise returns
 *  WEIR_PENDING, writes a request id to *req (may be NULL) and cb fires
 *  later. On failure (WEIR_EBUSY, WEIR_ECLOSED, WEIR_ECONNECT, WEIR_EFORK,
 *  WEIR_ENOMEM) returns the code and cb is never called. */
WEIR_API int weir_checkout_async_at(weir_pool *pool, int64_t timeout_ms, weir_checkout_cb cb,
                                    void *ud, weir_conn **now, uint64_t *req, const char *file,
                                    int line) WEIR_MUSTCHECK;
#define weir_checkout_async(pool, ms, cb, ud, now, req)                                            \
    weir_checkout_async_at((pool), (ms), (cb), (ud), (now), (req), __FILE__, __LINE__)

/** Cancel a pending asynchronous checkout. Returns 0 after its callback has
 *  fired with WEIR_ECANCELED on this thread, or WEIR_EALREADY if it has
 *  already completed (or is completing) with another status; its callback
 *  then fires, or has fired, as usual (also for a request whose connection
 *  failed validation and that was queued again). Constant time, however many
 *  wait. */
WEIR_API int weir_checkout_cancel(weir_pool *pool, uint64_t req);

/* ------------------------------------------------------------------------
 * Operations
 */
/** Pause: checkouts wait (up to their timeout) instead of being served, no
 *  connections are opened for them. Checked-out connections are unaffected. */
WEIR_API int weir_pool_pause(weir_pool *pool);
/** Resume after pause; waiters are served in order. */
WEIR_API int weir_pool_resume(weir_pool *pool);
/** Drain: refuse new checkouts (WEIR_ECLOSED), fail waiters with
 *  WEIR_ECLOSED, close idle connections, wait up to timeout_ms (-1: forever)
 *  for checked-out ones to come back, and close them. The pool stays closed;
 *  destroy it afterwards. 0, or WEIR_ETIMEDOUT if some were still out. */
WEIR_API int weir_pool_drain(weir_pool *pool, int64_t timeout_ms);
/** Change max_size and min_idle (min_idle -1: unchanged). Surplus idle
 *  connections close now, surplus checked-out ones on checkin. */
WEIR_API int weir_pool_resize(weir_pool *pool, int64_t max_size, int64_t min_idle);
/** Turn adaptive sizing on or off on a live pool, with its target wait and
 *  period (<= 0: unchanged). On: the size the pool has now is where the
 *  controller starts. Off: the size goes back to the cap. */
WEIR_API int weir_pool_set_adaptive(weir_pool *pool, bool on, int64_t wait_ms, int64_t period_ms);
/** Close every idle connection now and every checked-out one when it comes
 *  back (after a failover). Returns how many were closed now. */
WEIR_API int weir_pool_evict_all(weir_pool *pool);
/** The caller knows the target may accept connections now (new credentials,
 *  a repaired network): forget the failed connects, so a pool that is down
 *  (fail_fast) stops failing checkouts at once and the next connect is tried
 *  without waiting out the back-off. A connect already under way when this
 *  is called does not count if it fails (it may have used the old
 *  credentials): it is tried again at once. */
WEIR_API int weir_pool_retry_now(weir_pool *pool);

/* ------------------------------------------------------------------------
 * Shared limits: one cap on open connections across several pools (all the
 * pools of one database, or of one user). A pool attached to a limit opens a
 * connection only while the limit has room; when it is full and the pool has
 * callers waiting, the pool asks the other pools on the limit to close one
 * idle connection each, so a busy pool is not starved by an idle one.
 */
typedef struct weir_limit weir_limit;
/** A limit of max open connections (max >= 1). 0, WEIR_EINVAL or WEIR_ENOMEM. */
WEIR_API int weir_limit_create(weir_limit **out, int64_t max);
/** Free a limit no pool is attached to any more (destroy the pools first). */
WEIR_API void weir_limit_destroy(weir_limit *limit);
/** Change the cap. Lowering it closes nothing; pools just open no more until
 *  they are under it. 0 or WEIR_EINVAL. */
WEIR_API int weir_limit_set_max(weir_limit *limit, int64_t max);
/** Connections counted against the limit now (open and connecting). */
WEIR_API int64_t weir_limit_used(const weir_limit *limit);
WEIR_API int64_t weir_limit_max(const weir_limit *limit);
/** Attach pool to limit (at most WEIR_MAX_LIMITS per pool). The pool's open
 *  connections count at once; it detaches itself when destroyed. 0,
 *  WEIR_EINVAL or WEIR_EBUSY (already WEIR_MAX_LIMITS). */
#define WEIR_MAX_LIMITS 4
WEIR_API int weir_pool_attach_limit(weir_pool *pool, weir_limit *limit);

/** The last connect or validation error the driver reported, with
 *  credentials masked, copied into buf. Returns its length (0 if none). */
WEIR_API size_t weir_pool_last_error(weir_pool *pool, char *buf, size_t len);
/** The driver and the driver context the pool was created with (for
 *  drivers' own helpers). Valid for the pool's life. */
WEIR_API const weir_driver *weir_pool_driver(const weir_pool *pool);
WEIR_API void *weir_pool_driver_ctx(const weir_pool *pool);
/** The pool's name (the "name" option or the target's masked description).
 *  Valid for the pool's life. */
WEIR_API const char *weir_pool_name(const weir_pool *pool);

/* ------------------------------------------------------------------------
 * Statistics
 */
enum weir_close_reason {
    WEIR_CLOSE_IDLE,
    WEIR_CLOSE_LIFETIME,
    WEIR_CLOSE_BROKEN,
    WEIR_CLOSE_USES,
    WEIR_CLOSE_EVICTED,
    WEIR_CLOSE_REASONS
};

typedef struct weir_pool_stats {
    int64_t total;    /**< open connections (idle + active) */
    int64_t idle;     /**< open and not checked out */
    int64_t active;   /**< checked out */
    int64_t pending;  /**< connects in progress */
    int64_t waiters;  /**< callers waiting for a connection */
    int64_t max_size; /**< current cap (with adaptive: the size it chose, at most cap) */
    int64_t cap;      /**< the max_size asked for (with adaptive, the most max_size may grow to) */
    int64_t adaptive_grows_total, adaptive_shrinks_total; /**< adaptive size changes */
    int64_t acquires_total;
    int64_t acquire_timeouts_total;
    int64_t shed_total; /**< checkouts refused with WEIR_EBUSY */
    int64_t created_total;
    int64_t connect_errors_total;
    int64_t closed_total[WEIR_CLOSE_REASONS];
    int64_t leaks_total;
    int64_t oldest_wait_us; /**< how long the longest-waiting caller has waited; 0 = none */
    bool paused;
    bool target_down; /**< fail-fast has tripped and no connect has succeeded since */
    bool failing;     /**< the last connect failed (weir_pool_last_error says why) */
    /** Checkins that handed their connection straight to a waiting caller... */
    int64_t handoffs_total;
    /** ...and of those, to a caller on another thread than the one returning
     *  it (a wake-up of that thread; for an event loop, a connection that
     *  moves to another loop). See docs/ENGINE.md, "Fairness". */
    int64_t handoffs_other_thread_total;
} weir_pool_stats;

/** Snapshot the pool's figures into *st. */
WEIR_API int weir_pool_stats_get(weir_pool *pool, weir_pool_stats *st);

typedef struct weir_conn_info {
    uint64_t id;          /**< unique in the pool, increasing */
    const char *state;    /**< "idle", "active", "busy" (engine work) */
    int64_t created_ms;   /**< weir_now_ms() when opened */
    int64_t last_used_ms; /**< when last checked in (or created) */
    int64_t taken_ms;     /**< when checked out, if active */
    int64_t expires_ms;   /**< when max_lifetime (with its jitter) retires it; 0 = never */
    uint64_t uses;        /**< completed checkouts */
    const char *file;     /**< where it was checked out, if active */
    int line;
    void *handle; /**< the driver's connection (as weir_conn_handle); read-only use */
} weir_conn_info;

/** Call fn once for each open connection (under the pool's lock: fn must
 *  not call back into the pool). Returns the number visited. */
WEIR_API int weir_pool_foreach_conn(weir_pool *pool, void (*fn)(const weir_conn_info *ci, void *ud),
                                    void *ud);

/** The pool's metrics in Prometheus text exposition format (names from the
 *  design: weir_pool_connections, weir_pool_acquire_seconds, ...). Returns
 *  a NUL-terminated string the caller frees with free(), or NULL (no memory).
 *  *len (may be NULL) receives its length. */
WEIR_API char *weir_pool_prometheus(weir_pool *pool, size_t *len);

/** The labels that name this pool's series on the Prometheus page, in place
 *  of the default pool="<name>": n pairs (label names as Prometheus wants
 *  them, [a-zA-Z_][a-zA-Z0-9_]*, not "__"-prefixed, and none of the labels
 *  the families use themselves: state, reason, le); values are escaped
 *  here. n = 0 restores pool="<name>". 0, or WEIR_EINVAL (a bad name, or
 *  more than 1 KiB of labels in all). */
WEIR_API int weir_pool_set_metric_labels(weir_pool *pool, const char *const *names,
                                         const char *const *values, size_t n);

/** One page for n pools (each family's HELP and TYPE once, then every pool's
 *  series), as weir_pool_prometheus(). An empty page ("") for n = 0. */
WEIR_API char *weir_pools_prometheus(weir_pool *const *pools, size_t n, size_t *len);

/* ------------------------------------------------------------------------
 * Utilities
 */
/** CLOCK_MONOTONIC in nanoseconds / milliseconds (the engine's clock). */
WEIR_API int64_t weir_now_ns(void);
WEIR_API int64_t weir_now_ms(void);
/** Copy src to dst (dstlen bytes, always NUL-terminated) with credentials
 *  masked: the password of a URL's userinfo ("postgres://u:***@h") and the
 *  value of password=/pass= key-value pairs. Returns strlen(dst). */
WEIR_API size_t weir_mask_credentials(const char *src, char *dst, size_t dstlen);

#ifdef __cplusplus
}
#endif
#endif /* WEIR_H */
