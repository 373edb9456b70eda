/* stats.c — traffic figures: per pool and worker counters summed on demand,
 * the stats_period tick (averages and the "stats:" log line), and weir's
 * own Prometheus families after the engine's.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/server.h"
#include "core/stats.h"
#include "core/sbuf.h"
#include "core/log.h"
#include "core/pools.h"
#include "core/worker.h"
#include "pg/client.h"
#include "http/httpapi.h"

const int64_t st_bounds_us[ST_NB] = {100,     250,     500,     1000,    2500,   5000,
                                     10000,   25000,   50000,   100000,  250000, 500000,
                                     1000000, 2500000, 5000000, 10000000};

/* The counters one time of this kind adds to: its histogram bucket, count and total. */
static void st_fields(wstats *w, int kind, int64_t us, _Atomic uint64_t **bucket,
                      _Atomic uint64_t **n, _Atomic uint64_t **total)
{
    int b = 0;
    while (b < ST_NB && us > st_bounds_us[b]) b++;
    *bucket = &w->h[kind][b];
    *n = kind == ST_QUERY ? &w->query : kind == ST_XACT ? &w->xact : &w->waits;
    *total = kind == ST_QUERY ? &w->query_us : kind == ST_XACT ? &w->xact_us : &w->wait_us;
}

void st_time(wstats *w, int kind, int64_t us)
{
    if (us < 0) us = 0;
    _Atomic uint64_t *bucket, *n, *total;
    st_fields(w, kind, us, &bucket, &n, &total);
    st_add(bucket, 1);
    st_add(n, 1);
    st_add(total, (uint64_t)us);
}

/* st_time for a block several threads write (the HTTP executors'): locked adds. */
void st_time_shared(wstats *w, int kind, int64_t us)
{
    if (us < 0) us = 0;
    _Atomic uint64_t *bucket, *n, *total;
    st_fields(w, kind, us, &bucket, &n, &total);
    atomic_fetch_add_explicit(bucket, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(n, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(total, (uint64_t)us, memory_order_relaxed);
}

#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)

void spool_sum(const spool *p, int nworkers, st_sum *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < nworkers; i++) {
        const wstats *w = &p->ws[i];
        out->xact += LD(w->xact);
        out->query += LD(w->query);
        out->recv += LD(w->recv);
        out->sent += LD(w->sent);
        out->xact_us += LD(w->xact_us);
        out->query_us += LD(w->query_us);
        out->wait_us += LD(w->wait_us);
        out->waits += LD(w->waits);
        out->ps_parse_c += LD(w->ps_parse_c);
        out->ps_parse_s += LD(w->ps_parse_s);
        out->ps_bind += LD(w->ps_bind);
        out->logins += LD(w->logins);
        for (int k = 0; k < ST_NH; k++)
            for (int b = 0; b <= ST_NB; b++) out->h[k][b] += LD(w->h[k][b]);
    }
}

int spool_waiting(const spool *p, int nworkers)
{
    uint64_t n = 0;
    for (int i = 0; i < nworkers; i++) n += LD(p->ws[i].waiting);
    int64_t v = (int64_t)n; /* a block's -1s wrap; the sum of every block does not */
    return v > 0 ? (int)v : 0;
}

void st_sum_add(st_sum *a, const st_sum *b, int sign)
{
    uint64_t *x = (uint64_t *)a;
    const uint64_t *y = (const uint64_t *)b;
    for (size_t i = 0; i < sizeof *a / sizeof(uint64_t); i++) x[i] += sign > 0 ? y[i] : -y[i];
}

void stats_tick(server *s, int64_t now_ms)
{
    int64_t period = s->cfg.stats_period > 0 ? s->cfg.stats_period : 60000;
    if (!s->stats_at_ms) s->stats_at_ms = now_ms;
    if (now_ms - s->stats_at_ms < period) return;
    st_sum total = {0};
    pthread_mutex_lock(&s->pools_lock);
    pthread_mutex_lock(&s->stats_lock);
    for (spool *p = s->pools; p; p = p->next) {
        st_sum cur;
        spool_sum(p, s->nstat, &cur);
        p->delta = cur;
        st_sum_add(&p->delta, &p->prev, -1);
        p->prev = cur;
        st_sum_add(&total, &p->delta, 1);
    }
    if (s->console) { /* its own period; not in the log line's traffic */
        st_sum cur;
        spool_sum(s->console, s->nstat, &cur);
        s->console->delta = cur;
        st_sum_add(&s->console->delta, &s->console->prev, -1);
        s->console->prev = cur;
    }
    s->stats_period_ms = now_ms - s->stats_at_ms;
    s->stats_at_ms = now_ms;
    int64_t ms = s->stats_period_ms;
    pthread_mutex_unlock(&s->stats_lock);
    pthread_mutex_unlock(&s->pools_lock);
    if (s->cfg.log_stats) {
        stats_avg a;
        stats_average(&total, ms, &a);
        srv_log(s, "LOG",
                "stats: %" PRIu64 " xacts/s, %" PRIu64 " queries/s, in %" PRIu64
                " B/s, out %" PRIu64 " B/s, xact %" PRIu64 " us, query %" PRIu64
                " us, wait %" PRIu64 " us",
                a.xact, a.query, a.recv, a.sent, a.xact_us, a.query_us, a.wait_us);
    }
}

void stats_average(const st_sum *d, int64_t period_ms, stats_avg *a)
{
    memset(a, 0, sizeof *a);
    if (period_ms <= 0) return;
    a->xact = d->xact * 1000 / (uint64_t)period_ms;
    a->query = d->query * 1000 / (uint64_t)period_ms;
    a->recv = d->recv * 1000 / (uint64_t)period_ms;
    a->sent = d->sent * 1000 / (uint64_t)period_ms;
    a->xact_us = d->xact ? d->xact_us / d->xact : 0;
    a->query_us = d->query ? d->query_us / d->query : 0;
    a->wait_us = d->waits ? d->wait_us / d->waits : 0;
    a->assign = d->waits * 1000 / (uint64_t)period_ms; /* every assignment records its wait */
    a->parse_c = d->ps_parse_c * 1000 / (uint64_t)period_ms;
    a->parse_s = d->ps_parse_s * 1000 / (uint64_t)period_ms;
    a->bind = d->ps_bind * 1000 / (uint64_t)period_ms;
    a->logins = d->logins * 1000 / (uint64_t)period_ms;
}

static bool grow_stats(db_stats **out, size_t *cap)
{
    size_t nc = *cap ? *cap * 2 : 8;
    db_stats *v = realloc(*out, nc * sizeof *v);
    if (!v) return false;
    *out = v;
    *cap = nc;
    return true;
}

spool *stats_console_new(server *s)
{
    spool *p = calloc(1, sizeof *p);
    size_t wsz = sizeof(wstats) * (size_t)(s->nstat > 0 ? s->nstat : 1);
    wstats *ws = p ? aligned_alloc(_Alignof(wstats), wsz) : NULL;
    if (!ws) {
        free(p);
        return NULL;
    }
    memset(ws, 0, wsz);
    p->ws = ws;
    p->srv = s;
    snprintf(p->db, sizeof p->db, "pgbouncer");
    snprintf(p->user, sizeof p->user, "pgbouncer");
    return p;
}

void stats_console_free(spool *p)
{
    if (!p) return;
    free(p->ws);
    free(p);
}

size_t stats_by_db(server *s, db_stats **out, int64_t *period_ms)
{
    *out = NULL;
    size_t n = 0, cap = 0;
    pthread_mutex_lock(&s->pools_lock);
    pthread_mutex_lock(&s->stats_lock);
    *period_ms = s->stats_period_ms;
    for (spool *p = s->pools; p; p = p->next) {
        size_t i = 0;
        while (i < n && strcmp((*out)[i].db, p->db)) i++;
        if (i == n) {
            if (n == cap) {
                cap = cap ? cap * 2 : 8;
                db_stats *v = realloc(*out, cap * sizeof *v);
                if (!v) break;
                *out = v;
            }
            memset(&(*out)[n], 0, sizeof **out);
            snprintf((*out)[n].db, sizeof(*out)[n].db, "%s", p->db);
            n++;
        }
        st_sum cur;
        spool_sum(p, s->nstat, &cur);
        st_sum_add(&(*out)[i].total, &cur, 1);
        st_sum_add(&(*out)[i].delta, &p->delta, 1);
    }
    if (s->console && !(n == cap && !grow_stats(out, &cap))) { /* the console's row, last */
        db_stats *d = &(*out)[n++];
        memset(d, 0, sizeof *d);
        snprintf(d->db, sizeof d->db, "pgbouncer");
        spool_sum(s->console, s->nstat, &d->total);
        d->delta = s->console->delta;
    }
    pthread_mutex_unlock(&s->stats_lock);
    pthread_mutex_unlock(&s->pools_lock);
    return n;
}

/* --- Prometheus ----------------------------------------------------------- */

void sb_label(sbuf *b, const char *v)
{
    for (; v && *v; v++) {
        if (*v == '\\' || *v == '"')
            sb_printf(b, "\\%c", *v);
        else if (*v == '\n')
            sb_str(b, "\\n");
        else
            sb_add(b, v, 1);
    }
}

static void head(sbuf *b, const char *name, const char *type, const char *help)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void pool_series(sbuf *b, const char *name, const spool *p, const char *extra)
{
    sb_printf(b, "%s{database=\"", name);
    sb_label(b, p->db);
    sb_printf(b, "\",user=\"");
    sb_label(b, p->user);
    sb_printf(b, "\"%s%s}", extra ? "," : "", extra ? extra : "");
}

typedef struct psnap {
    spool *p;
    st_sum sum;
    weir_pool_stats st;
    int logged, waiting;
} psnap;

static void hist(sbuf *b, const char *name, const psnap *v, size_t n, int kind)
{
    char metric[96], le[48];
    for (size_t i = 0; i < n; i++) {
        uint64_t cum = 0, sum_us = 0;
        snprintf(metric, sizeof metric, "%s_bucket", name);
        for (int k = 0; k <= ST_NB; k++) {
            cum += v[i].sum.h[kind][k];
            if (k < ST_NB)
                snprintf(le, sizeof le, "le=\"%g\"", (double)st_bounds_us[k] / 1e6);
            else
                snprintf(le, sizeof le, "le=\"+Inf\"");
            pool_series(b, metric, v[i].p, le);
            sb_printf(b, " %" PRIu64 "\n", cum);
        }
        sum_us = kind == ST_QUERY  ? v[i].sum.query_us
                 : kind == ST_XACT ? v[i].sum.xact_us
                                   : v[i].sum.wait_us;
        snprintf(metric, sizeof metric, "%s_sum", name);
        pool_series(b, metric, v[i].p, NULL);
        sb_printf(b, " %.6f\n", (double)sum_us / 1e6);
        snprintf(metric, sizeof metric, "%s_count", name);
        pool_series(b, metric, v[i].p, NULL);
        sb_printf(b, " %" PRIu64 "\n", cum);
    }
}

#define COUNTER(name, help, field)                                                                 \
    do {                                                                                           \
        head(&b, name, "counter", help);                                                           \
        for (size_t i = 0; i < n; i++) {                                                           \
            pool_series(&b, name, v[i].p, NULL);                                                   \
            sb_printf(&b, " %" PRIu64 "\n", v[i].sum.field);                                       \
        }                                                                                          \
    } while (0)

char *metrics_page(server *s, size_t *len)
{
    *len = 0;
    sbuf b = {0};
    /* Each pool is pinned while the page is made (pool_idle_timeout may
     * free an unpinned one), quietly: a scrape is not use. */
    pthread_mutex_lock(&s->pools_lock);
    size_t n = 0;
    for (spool *p = s->pools; p; p = p->next) n++;
    psnap *v = calloc(n ? n : 1, sizeof *v);
    weir_pool **wp = calloc(n ? n : 1, sizeof *wp);
    if (!v || !wp) {
        pthread_mutex_unlock(&s->pools_lock);
        free(v);
        free(wp);
        return NULL;
    }
    size_t k = 0;
    for (spool *p = s->pools; p; p = p->next, k++) {
        v[k].p = p;
        wp[k] = p->pool;
        pool_pin(p);
    }
    pthread_mutex_unlock(&s->pools_lock);
    size_t elen = 0;
    char *engine = weir_pools_prometheus(wp, n, &elen);
    free(wp);
    if (!engine) {
        for (size_t i = 0; i < n; i++) pool_unpin_quiet(v[i].p);
        free(v);
        return NULL;
    }
    sb_printf(&b, "%s", engine);
    free(engine);
    for (size_t i = 0; i < n; i++) {
        spool_sum(v[i].p, s->nstat, &v[i].sum);
        (void)weir_pool_stats_get(v[i].p->pool, &v[i].st);
        v[i].logged = atomic_load(&v[i].p->cl_logged);
        v[i].waiting = spool_waiting(v[i].p, s->nworkers);
    }

    /* clients, all pools */
    static const char *const gname[4] = {"login", "idle", "waiting", "active"};
    /* every state before CL_IDLE is logging in; the console counts as idle */
    static const int group[CL_NSTATES] = {
        [CL_IDLE] = 1, [CL_CONSOLE] = 1, [CL_WAITING] = 2, [CL_ACTIVE] = 3};
    long long by[4] = {0};
    for (int w = 0; w < s->nworkers; w++)
        for (int st = 0; st < CL_NSTATES; st++)
            by[group[st]] += atomic_load_explicit(&s->workers[w].nstate[st], memory_order_relaxed);
    head(&b, "weir_clients", "gauge",
         "Client connections by state (login includes authentication).");
    for (int g = 0; g < 4; g++)
        sb_printf(&b, "weir_clients{state=\"%s\"} %lld\n", gname[g], by[g] < 0 ? 0 : by[g]);
    head(&b, "weir_worker_clients", "gauge",
         "Client connections each worker serves (every state but closed; the console's too).");
    for (int w = 0; w < s->nworkers; w++) {
        int nw = worker_nclients(&s->workers[w]);
        sb_printf(&b, "weir_worker_clients{worker=\"%d\"} %d\n", w, nw < 0 ? 0 : nw);
    }
    head(&b, "weir_unix_handed_total", "counter",
         "Unix-socket connections worker 0 accepted and handed to another worker.");
    sb_printf(
        &b, "weir_unix_handed_total %llu\n",
        (unsigned long long)atomic_load_explicit(&s->workers[0].unix_handed, memory_order_relaxed));
    head(&b, "weir_workers_packed", "gauge",
         "1 while the load is packed on worker 0 (worker_pack), else 0.");
    sb_printf(&b, "weir_workers_packed %d\n", atomic_load(&s->packed) ? 1 : 0);
    head(&b, "weir_workers_pack_changes_total", "counter",
         "Times packing on worker 0 began or ended.");
    sb_printf(&b, "weir_workers_pack_changes_total %llu\n",
              (unsigned long long)atomic_load_explicit(&s->pack_changes, memory_order_relaxed));
    head(&b, "weir_clients_moved_total", "counter",
         "Idle clients moved from one worker to another (packing and spreading).");
    sb_printf(&b, "weir_clients_moved_total %llu\n",
              (unsigned long long)atomic_load_explicit(&s->clients_moved, memory_order_relaxed));
    head(&b, "weir_clients_max", "gauge", "max_client_conn.");
    sb_printf(&b, "weir_clients_max %d\n", s->cfg.max_client_conn);

    head(&b, "weir_pool_clients", "gauge",
         "Logged-in clients of a pool: active (linked to a server or idle) and waiting for one.");
    for (size_t i = 0; i < n; i++) {
        int act = v[i].logged - v[i].waiting;
        pool_series(&b, "weir_pool_clients", v[i].p, "state=\"active\"");
        sb_printf(&b, " %d\n", act > 0 ? act : 0);
        pool_series(&b, "weir_pool_clients", v[i].p, "state=\"waiting\"");
        sb_printf(&b, " %d\n", v[i].waiting);
    }
    head(&b, "weir_server_connections", "gauge",
         "Server connections of a pool: active (linked to a client), idle, login (connecting).");
    for (size_t i = 0; i < n; i++) {
        pool_series(&b, "weir_server_connections", v[i].p, "state=\"active\"");
        sb_printf(&b, " %" PRId64 "\n", v[i].st.active);
        pool_series(&b, "weir_server_connections", v[i].p, "state=\"idle\"");
        sb_printf(&b, " %" PRId64 "\n", v[i].st.idle);
        pool_series(&b, "weir_server_connections", v[i].p, "state=\"login\"");
        sb_printf(&b, " %" PRId64 "\n", v[i].st.pending);
    }
    COUNTER("weir_transactions_total", "Transactions completed.", xact);
    COUNTER("weir_queries_total", "Queries completed (ReadyForQuery answers to clients).", query);
    COUNTER("weir_client_received_bytes_total", "Bytes received from clients.", recv);
    COUNTER("weir_client_sent_bytes_total", "Bytes sent to clients.", sent);
    COUNTER("weir_prepared_client_parses_total",
            "Parse messages of named statements from clients (max_prepared_statements).",
            ps_parse_c);
    COUNTER("weir_prepared_server_parses_total",
            "Parse messages of named statements sent to servers: first use on a server "
            "connection, or prepared again after eviction.",
            ps_parse_s);
    COUNTER("weir_prepared_binds_total", "Bind messages naming a client's prepared statement.",
            ps_bind);
    head(&b, "weir_query_duration_seconds", "histogram",
         "Time from a client's request to the server's ReadyForQuery.");
    hist(&b, "weir_query_duration_seconds", v, n, ST_QUERY);
    head(&b, "weir_transaction_duration_seconds", "histogram",
         "Time from a transaction's first request to its end.");
    hist(&b, "weir_transaction_duration_seconds", v, n, ST_XACT);
    head(&b, "weir_client_wait_seconds", "histogram",
         "Time a client waited for a server connection (0 when one was free).");
    hist(&b, "weir_client_wait_seconds", v, n, ST_WAIT);
    for (size_t i = 0; i < n; i++) pool_unpin_quiet(v[i].p);
    free(v);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}
