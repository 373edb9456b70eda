/* stats.c — histograms and the Prometheus text exposition of a pool. */
#include "internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

const double weir__acq_bounds[WEIR__ACQ_NB] = {0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005,
                                               0.01,    0.05,    0.1,    0.5,    1,     5};
const int64_t weir__usage_bounds_ms[WEIR__USAGE_NB] = {1,   5,    10,   50,    100,
                                                       500, 1000, 5000, 10000, 60000};

void weir__hist_observe(weir__hist *h, int64_t ns)
{
    double s = (double)ns / 1e9;
    int b = 0;
    while (b < WEIR__ACQ_NB && s > weir__acq_bounds[b]) b++;
    atomic_fetch_add_explicit(&h->counts[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, (uint64_t)(ns > 0 ? ns : 0), memory_order_relaxed);
    atomic_fetch_add_explicit(&h->n, 1, memory_order_relaxed);
}

/* Prometheus label values escape \, " and newline. */
static void label(weir__buf *b, const char *v)
{
    char tmp[WEIR_NAME_MAX * 2 + 1];
    size_t o = 0;
    for (; *v && o + 2 < sizeof tmp; v++) {
        if (*v == '\\' || *v == '"')
            tmp[o++] = '\\', tmp[o++] = *v;
        else if (*v == '\n')
            tmp[o++] = '\\', tmp[o++] = 'n';
        else
            tmp[o++] = *v;
    }
    tmp[o] = '\0';
    weir__buf_printf(b, "%s", tmp);
}

static void head(weir__buf *b, const char *name, const char *type, const char *help)
{
    weir__buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void series(weir__buf *b, const char *name, const char *pool, const char *extra)
{
    weir__buf_printf(b, "%s{pool=\"", name);
    label(b, pool);
    weir__buf_printf(b, "\"%s%s}", extra ? "," : "", extra ? extra : "");
}

static void hist_text(weir__buf *b, const char *name, const char *pool, const double *bounds,
                      int nb, const uint64_t *counts, double sum)
{
    char metric[96], le[64];
    uint64_t cum = 0;
    snprintf(metric, sizeof metric, "%s_bucket", name);
    for (int i = 0; i <= nb; i++) {
        cum += counts[i];
        if (i < nb)
            snprintf(le, sizeof le, "le=\"%g\"", bounds[i]);
        else
            snprintf(le, sizeof le, "le=\"+Inf\"");
        series(b, metric, pool, le);
        weir__buf_printf(b, " %" PRIu64 "\n", cum);
    }
    snprintf(metric, sizeof metric, "%s_sum", name);
    series(b, metric, pool, NULL);
    weir__buf_printf(b, " %.9g\n", sum);
    snprintf(metric, sizeof metric, "%s_count", name);
    series(b, metric, pool, NULL);
    weir__buf_printf(b, " %" PRIu64 "\n", cum);
}

static void gauge(weir__buf *b, const char *name, const char *type, const char *help,
                  const char *pool, int64_t v)
{
    head(b, name, type, help);
    series(b, name, pool, NULL);
    weir__buf_printf(b, " %" PRId64 "\n", v);
}

void weir__pool_prometheus_append(weir_pool *p, weir__buf *b)
{
    weir_pool_stats st;
    if (weir_pool_stats_get(p, &st) != 0) return;
    const char *n = p->name;

    head(b, "weir_pool_connections", "gauge", "Open connections by state.");
    series(b, "weir_pool_connections", n, "state=\"idle\"");
    weir__buf_printf(b, " %" PRId64 "\n", st.idle);
    series(b, "weir_pool_connections", n, "state=\"active\"");
    weir__buf_printf(b, " %" PRId64 "\n", st.active);
    gauge(b, "weir_pool_pending_connections", "gauge", "Connects in progress.", n, st.pending);
    gauge(b, "weir_pool_waiters", "gauge", "Callers waiting for a connection.", n, st.waiters);
    gauge(b, "weir_pool_max_connections", "gauge", "Cap on open connections.", n, st.max_size);

    /* acquire: slow-path waits are timed precisely; lock-free checkouts do
     * not wait and are counted as 0 s (first bucket). */
    uint64_t counts[WEIR__ACQ_NB + 1];
    uint64_t slow = 0;
    for (int i = 0; i <= WEIR__ACQ_NB; i++) {
        counts[i] = atomic_load(&p->acquire_hist.counts[i]);
        slow += counts[i];
    }
    if ((uint64_t)st.acquires_total > slow) counts[0] += (uint64_t)st.acquires_total - slow;
    head(b, "weir_pool_acquire_seconds", "histogram", "Time to check out a connection.");
    hist_text(b, "weir_pool_acquire_seconds", n, weir__acq_bounds, WEIR__ACQ_NB, counts,
              (double)atomic_load(&p->acquire_hist.sum_ns) / 1e9);

    uint64_t ucounts[WEIR__USAGE_NB + 1] = {0};
    uint64_t usum = 0;
    double ubounds[WEIR__USAGE_NB];
    for (int i = 0; i < WEIR__USAGE_NB; i++) ubounds[i] = (double)weir__usage_bounds_ms[i] / 1000;
    pthread_mutex_lock(&p->mu);
    for (int s = 0; s < p->nslots; s++) {
        weir_conn *c = p->slots[s];
        for (int i = 0; i <= WEIR__USAGE_NB; i++)
            ucounts[i] += atomic_load_explicit(&c->usage_counts[i], memory_order_relaxed);
        usum += atomic_load_explicit(&c->usage_sum_ms, memory_order_relaxed);
    }
    pthread_mutex_unlock(&p->mu);
    head(b, "weir_pool_usage_seconds", "histogram",
         "Time a connection was held between checkout and checkin.");
    hist_text(b, "weir_pool_usage_seconds", n, ubounds, WEIR__USAGE_NB, ucounts,
              (double)usum / 1000);

    for (int i = 0; i <= WEIR__ACQ_NB; i++) counts[i] = atomic_load(&p->connect_hist.counts[i]);
    head(b, "weir_pool_connect_seconds", "histogram", "Time to open a connection.");
    hist_text(b, "weir_pool_connect_seconds", n, weir__acq_bounds, WEIR__ACQ_NB, counts,
              (double)atomic_load(&p->connect_hist.sum_ns) / 1e9);

    gauge(b, "weir_pool_connections_created_total", "counter", "Connections opened.", n,
          st.created_total);
    static const char *const reasons[WEIR_CLOSE_REASONS] = {"idle", "lifetime", "broken", "uses",
                                                            "evicted"};
    head(b, "weir_pool_connections_closed_total", "counter", "Connections closed, by reason.");
    for (int r = 0; r < WEIR_CLOSE_REASONS; r++) {
        char extra[48];
        snprintf(extra, sizeof extra, "reason=\"%s\"", reasons[r]);
        series(b, "weir_pool_connections_closed_total", n, extra);
        weir__buf_printf(b, " %" PRId64 "\n", st.closed_total[r]);
    }
    gauge(b, "weir_pool_acquire_timeouts_total", "counter", "Checkouts that timed out.", n,
          st.acquire_timeouts_total);
    gauge(b, "weir_pool_acquire_shed_total", "counter",
          "Checkouts refused because max_waiters were waiting.", n, st.shed_total);
    gauge(b, "weir_pool_connect_errors_total", "counter", "Failed connect attempts.", n,
          st.connect_errors_total);
    gauge(b, "weir_pool_leaks_total", "counter", "Checkouts held longer than leak_threshold.", n,
          st.leaks_total);
    gauge(b, "weir_pool_target_up", "gauge", "0 while fail-fast reports the target down.", n,
          st.target_down ? 0 : 1);
}

char *weir_pool_prometheus(weir_pool *p, size_t *len)
{
    if (len) *len = 0;
    if (!p || weir__forked(p)) return NULL;
    weir__buf b = {0};
    weir__pool_prometheus_append(p, &b);
    if (b.failed || !b.data) {
        free(b.data);
        return NULL;
    }
    if (len) *len = b.len;
    return b.data;
}
