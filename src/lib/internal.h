/* internal.h — the engine's private structures, shared by the files of src/lib. */
#ifndef WEIR_INTERNAL_H
#define WEIR_INTERNAL_H

#include "weir/weir.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define WEIR__CACHELINE 64

/* A connection slot's state. The state is the set the slot belongs to; every
 * change goes through slot_set()/slot_cas() in pool.c, which assert the old
 * state. See pool.c's opening comment for the diagram. */
enum weir__state {
    WEIR__EMPTY = 0, /* no physical connection; the slot is free */
    WEIR__IDLE,      /* on the shared idle list (changed only under the lock) */
    WEIR__PARKED,    /* idle, remembered by the thread that returned it (lock-free) */
    WEIR__INUSE,     /* checked out by a caller */
    WEIR__BUSY,      /* held by the engine: connecting, validating, closing */
};

/* A creator thread's entry (weir_pool.cr_state). */
enum { WEIR__CR_FREE = 0, WEIR__CR_RUNNING, WEIR__CR_DONE };
#define WEIR__CREATORS_MAX 64 /* creator_threads at most (options.c) */

/* Histogram bucket upper bounds, in seconds. */
#define WEIR__ACQ_NB     12   /* acquire and connect */
#define WEIR__USAGE_NB   10   /* usage (kept in ms on the hot path) */
#define WEIR__LABELS_MAX 1024 /* weir_pool_set_metric_labels: escaped text */
extern const double weir__acq_bounds[WEIR__ACQ_NB];
extern const int64_t weir__usage_bounds_ms[WEIR__USAGE_NB];

typedef struct weir__hist {
    _Atomic uint64_t counts[WEIR__ACQ_NB + 1]; /* last = +Inf */
    _Atomic uint64_t sum_ns;
} weir__hist;

struct weir_conn {
    /* Written by the holder on the hot path; one cache line per slot. */
    _Alignas(WEIR__CACHELINE) _Atomic int state;
    weir_pool *pool;
    void *handle;
    bool broken;
    int close_reason;   /* WEIR_CLOSE_*, while on_destroy runs; -1 otherwise */
    uint32_t gen;       /* pool's evict generation when opened */
    int64_t expires_ms; /* 0 = never */
    _Atomic int64_t last_used_ms;
    _Atomic int64_t taken_ms;
    _Atomic(const char *) file;
    _Atomic int line;
    _Atomic uint64_t uses; /* checkouts of this slot, all connections (holder writes; relaxed) */
    _Atomic uint64_t conn_uses;     /* checkouts of the current connection */
    _Atomic uint64_t leak_reported; /* value of uses when a leak was reported, + 1 */
    _Atomic uint64_t usage_counts[WEIR__USAGE_NB + 1];
    _Atomic uint64_t usage_sum_ms;
    /* Engine fields, under the pool's lock. */
    uint64_t id;
    int64_t created_ms;
    int64_t validated_ms;
    struct weir_conn *idle_prev, *idle_next;
    const void *returned_by; /* the thread that last put it on the idle list (tl_me) */
};

struct weir__owner_q;

typedef struct weir__waiter {
    struct weir__waiter *prev, *next;
    struct weir__waiter *oprev, *onext; /* on oq, if any */
    struct weir__owner_q *oq;           /* async: its owner's queue (NULL: none had room) */
    weir_conn *conn;
    int status;
    _Atomic bool done;
    _Atomic bool spinning; /* awake and polling `done`, unlocked */
    bool woken;            /* signalled to look at the idle list */
    bool from_idle;        /* conn came from the idle list: validate before use */
    bool async;
    pthread_cond_t cv; /* sync waiters */
    weir_checkout_cb cb;
    void *ud;
    uint32_t req_slot; /* async, while queued: its entry in the pool's reqs, index + 1 */
    int64_t start_ns, deadline_ns;
    const void *owner; /* async: the thread that queued it (checkin_slow's local preference) */
    const char *file;
    int line;
} weir__waiter;

/* A queued async waiter by its request (weir_checkout_cancel): the request
 * names the entry and its generation, so a cancel finds its waiter without
 * walking the queue, and a request that ended no longer matches. */
typedef struct weir__req {
    weir__waiter *w; /* NULL: free */
    uint32_t gen;    /* bumped each time the entry is taken */
    uint32_t next;   /* free: the next free entry's index + 1, 0 none */
} weir__req;

/* One thread's async waiters in one pool, oldest first: a checkin finds the
 * oldest waiter of its own thread without walking the whole queue. */
typedef struct weir__owner_q {
    const void *owner; /* the thread (its tl_me); free for another while head is NULL */
    weir__waiter *head, *tail;
} weir__owner_q;
#define WEIR__OWNER_QS 64

enum weir__run { WEIR__RUNNING, WEIR__PAUSED, WEIR__DRAINING, WEIR__CLOSED };

struct weir_pool {
    /* Read on every checkout/checkin; written rarely. */
    _Alignas(WEIR__CACHELINE) uint64_t id;
    unsigned fork_gen;
    _Atomic int run;
    _Atomic int nwaiters;
    _Atomic uint32_t evict_gen;
    _Atomic bool over_cap;
    const weir_driver *drv;
    void *ctx;
    /* hot-path thresholds precomputed from the options: one compare each */
    int64_t validate_after_eff; /* INT64_MAX when validation is off */
    uint64_t max_uses_eff;      /* UINT64_MAX when unlimited */
    bool plain_checkout;        /* no on_checkout hook */
    bool plain_checkin;         /* no on_checkin hook */
    weir_options o;
    weir_hooks hooks;

    _Alignas(WEIR__CACHELINE) pthread_mutex_t mu;
    pthread_condattr_t cattr;
    pthread_cond_t creator_cv, hk_cv, drain_cv;
    int64_t hk_sleep_until; /* while the housekeeper sleeps: when it wakes; else 0 */
    bool hk_recompute;      /* hk_wake: the next pass is due now */
    weir_conn **slots;
    int nslots, slots_cap;
    int64_t total;     /* open + connecting */
    int64_t in_flight; /* connecting */
    weir_conn *idle_head;
    int64_t nidle_list;              /* length of the idle list */
    int64_t nwoken;                  /* waiters signalled to look at it that have not run yet */
    weir__waiter *wq_head, *wq_tail; /* FIFO */
    /* Unless wq_unordered, the queued async waiters' deadlines grow from
     * the head to the tail, and the housekeeper looks at the head only;
     * wq_last_deadline is the latest queued since the queue was last empty
     * (enqueue, wq_remove). */
    int64_t wq_last_deadline;
    bool wq_unordered;
    weir__req *reqs;           /* queued async waiters by request (weir__req) */
    uint32_t nreqs, reqs_free; /* reqs_free: a free entry's index + 1, 0 none */
    uint64_t next_conn_id;
    bool stopping;
    bool down;          /* fail-fast tripped */
    uint64_t retry_gen; /* weir_pool_retry_now calls: older attempts' failures do not count */
    bool fenced;        /* a heavy fence was made since the queue last became non-empty */
    bool none_parked;   /* fenced, and a scan after the fence found no PARKED slot */
    int consecutive_failures;
    int64_t next_attempt_ns;
    int64_t warm_made; /* connects begun in this warm-up batch (warmup_batch) */
    /* adaptive sizing (o.max_size is the size chosen; cap the one asked for) */
    int64_t cap;
    int64_t ad_next_ns;                 /* next reconsideration */
    uint64_t ad_seen[WEIR__ACQ_NB + 1]; /* the acquire histogram then */
    int64_t ad_peak;                    /* most in use + waiting since */
    int ad_quiet, ad_hold;              /* quiet periods in a row; periods before a shrink may */
    _Atomic int64_t ad_grows, ad_shrinks;
    int64_t warm_pause_ns; /* the pause after a full batch ends here; 0: none */
    uint64_t rng;
    /* Creator threads start when a connect is needed and none is free to
     * make it, creator_threads at most, and end after creator_idle_ms with
     * nothing to open (under the lock; docs/ENGINE.md, "Threads and fork"). */
    pthread_t *creators;  /* creator_threads entries */
    uint8_t *cr_state;    /* per entry: WEIR__CR_FREE, _RUNNING, _DONE (ended, not yet joined) */
    int cr_running;       /* started and not ended */
    int cr_waiting;       /* of those, waiting on creator_cv */
    int cr_signalled;     /* signals sent to waiting creators and not yet taken */
    int cr_starting;      /* started and not yet holding the lock */
    bool cr_start_failed; /* the last start failed (logged once until one starts) */
    pthread_t housekeeper;
    bool hk_started;
    weir_limit *limits[WEIR_MAX_LIMITS]; /* shared caps; each counts p->total */
    _Atomic int nlimits;                 /* only grows until destroy; limits[i] set before it */
    int64_t reclaim;                     /* idle connections other pools asked this one to close */
    int64_t reclaim_owed;     /* connections other pools closed at this one's asking, not yet
                                 opened again here */
    int64_t reclaim_asked_ns; /* when this pool last asked others (one creator at a time) */

    /* statistics (atomics: bumped on paths outside the lock) */
    _Atomic int64_t created_total, connect_errors_total, acquire_timeouts_total, shed_total,
        leaks_total, closed_total[WEIR_CLOSE_REASONS];
    int64_t handoffs[2]; /* under mu: checkins handed to a waiter of the same thread, another */
    weir__hist acquire_hist, connect_hist;
    char last_error[512];
    char name[WEIR_NAME_MAX];
    char metric_labels[WEIR__LABELS_MAX]; /* "" for pool="<name>"; under mu */
    /* each thread's async waiters (under mu); last, off the lines the lock's
     * other fields share */
    weir__owner_q oq[WEIR__OWNER_QS];
};

/* The hot path's clock: CLOCK_MONOTONIC_COARSE (a few ns through the vDSO,
 * resolution of the kernel tick) in milliseconds. */
static inline int64_t weir__coarse_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A shared cap on open connections across pools (pool.c). */
struct weir_limit {
    _Atomic int64_t used, max;
    pthread_mutex_t mu; /* guards pools; taken before any pool's lock */
    weir_pool **pools;
    int npools, cap;
};

/* util.c */
typedef struct weir__buf {
    char *data;
    size_t len, cap;
    bool failed;
} weir__buf;
void weir__buf_printf(weir__buf *b, const char *fmt, ...) WEIR_PRINTF(2, 3);

/* options.c */
int weir__parse_duration_ms(const char *s, int64_t *out);

/* stats.c */
void weir__hist_observe(weir__hist *h, int64_t ns);
/* One page for several pools; each metric family's series grouped together. */
void weir__prometheus_page(weir_pool *const *pools, size_t n, weir__buf *b);

/* pool.c */
void weir__log(weir_pool *pool, weir_log_level lvl, const char *fmt, ...) WEIR_PRINTF(3, 4);
bool weir__forked(const weir_pool *pool);

#endif
