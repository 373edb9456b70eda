/* stats.h — traffic figures: per-pool blocks written by one worker each
 * (st_*), the SHOW STATS family's sums and averages, the stats_period tick
 * and log line, and weir's own Prometheus families (stats.c). */
#ifndef WEIR_SERVER_STATS_H
#define WEIR_SERVER_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/sbuf.h"

typedef struct server server;
typedef struct spool spool;

/* Traffic figures of one pool, one block per worker: only that worker
 * writes its block (st_add: a relaxed load and store, no locked
 * instruction), readers sum the blocks. Times in microseconds. */
#define ST_NB 16 /* histogram bounds; one more bucket for +Inf */
enum { ST_QUERY, ST_XACT, ST_WAIT, ST_NH };
typedef struct st_sum {
    uint64_t xact, query, recv, sent, xact_us, query_us, wait_us, waits;
    uint64_t ps_parse_c, ps_parse_s, ps_bind; /* prepared statements (prep.h) */
    uint64_t logins;                          /* clients logged in */
    uint64_t h[ST_NH][ST_NB + 1];
} st_sum;
typedef struct wstats {
    _Atomic uint64_t xact, query, recv, sent, xact_us, query_us, wait_us, waits;
    _Atomic uint64_t ps_parse_c, ps_parse_s, ps_bind;
    _Atomic uint64_t logins;
    _Atomic uint64_t h[ST_NH][ST_NB + 1];
    /* A gauge, not a total: this worker's clients waiting for a server
     * (+1 and -1 in two's complement; spool_waiting sums the blocks). */
    _Atomic uint64_t waiting;
} __attribute__((aligned(64))) wstats;
extern const int64_t st_bounds_us[ST_NB];

static inline void st_add(_Atomic uint64_t *a, uint64_t v)
{
    atomic_store_explicit(a, atomic_load_explicit(a, memory_order_relaxed) + v,
                          memory_order_relaxed);
}
/* One query, transaction or wait of us microseconds. */
void st_time(wstats *w, int kind, int64_t us);
void st_time_shared(wstats *w, int kind, int64_t us); /* a block written by several threads */
/* a += b, field by field (b subtracted when sign < 0). */
void st_sum_add(st_sum *a, const st_sum *b, int sign);

void spool_sum(const spool *p, int nworkers, st_sum *out);
/* The pool's clients waiting for a server (SHOW POOLS' cl_waiting): the
 * workers' gauges summed. */
int spool_waiting(const spool *p, int nworkers);
void stats_tick(server *s, int64_t now_ms); /* worker 0, every tick */
/* Per second (counts, bytes) and per item (times, us) over a period. */
typedef struct stats_avg {
    uint64_t xact, query, recv, sent, xact_us, query_us, wait_us;
    uint64_t assign, parse_c, parse_s, bind, logins; /* per second */
} stats_avg;
void stats_average(const st_sum *delta, int64_t period_ms, stats_avg *a);
/* Totals and the last period's figures, summed per database: a malloc'd
 * array (free it), in pool order; *period_ms is 0 before the first period. */
typedef struct db_stats {
    char db[CFG_NAME];
    st_sum total, delta;
} db_stats;
size_t stats_by_db(server *s, db_stats **out, int64_t *period_ms);
/* The console's figures block (server.h: console), and its end. */
spool *stats_console_new(server *s);
void stats_console_free(spool *p);
char *metrics_page(server *s, size_t *len); /* malloc'd; NULL: no memory */
/* A Prometheus label value, escaped as the exposition format wants (\\, \", \n). */
void sb_label(sbuf *b, const char *v);

#endif
