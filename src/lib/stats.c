/* stats.c — histograms and the Prometheus text exposition of a pool. */
#include "internal.h"

#include <ctype.h>
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
}

static void head(weir__buf *b, const char *name, const char *type, const char *help)
{
    weir__buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{labels[,extra]}: labels is the pool's label text, already escaped. */
static void series(weir__buf *b, const char *name, const char *labels, const char *extra)
{
    weir__buf_printf(b, "%s{%s%s%s}", name, labels, extra ? "," : "", extra ? extra : "");
}

/* Appends v escaped (\\, \", \n) to out[*o..]; false if it does not fit. */
static bool escape_into(char *out, size_t cap, size_t *o, const char *v)
{
    for (; *v; v++) {
        const char *e = *v == '\\' ? "\\\\" : *v == '"' ? "\\\"" : *v == '\n' ? "\\n" : NULL;
        size_t k = e ? 2 : 1;
        if (*o + k >= cap) return false;
        if (e)
            memcpy(out + *o, e, 2);
        else
            out[*o] = *v;
        *o += k;
    }
    out[*o] = '\0';
    return true;
}

static bool label_name_ok(const char *n)
{
    if (!n || !(isalpha((unsigned char)n[0]) || n[0] == '_')) return false;
    if (n[0] == '_' && n[1] == '_') return false;
    for (const char *c = n; *c; c++)
        if (!(isalnum((unsigned char)*c) || *c == '_')) return false;
    return strcmp(n, "state") && strcmp(n, "reason") && strcmp(n, "le") && strcmp(n, "direction") &&
           strcmp(n, "thread");
}

int weir_pool_set_metric_labels(weir_pool *p, const char *const *names, const char *const *values,
                                size_t n)
{
    if (!p || (n && (!names || !values))) return WEIR_EINVAL;
    char text[WEIR__LABELS_MAX] = "";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (!label_name_ok(names[i]) || !values[i]) return WEIR_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(names[j], names[i])) return WEIR_EINVAL;
        int w = snprintf(text + o, sizeof text - o, "%s%s=\"", i ? "," : "", names[i]);
        if (w < 0 || (size_t)w >= sizeof text - o) return WEIR_EINVAL;
        o += (size_t)w;
        if (!escape_into(text, sizeof text, &o, values[i]) || o + 2 > sizeof text)
            return WEIR_EINVAL;
        text[o++] = '"';
        text[o] = '\0';
    }
    pthread_mutex_lock(&p->mu);
    memcpy(p->metric_labels, text, o + 1);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

static void hist_text(weir__buf *b, const char *name, const char *labels, const double *bounds,
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
        series(b, metric, labels, le);
        weir__buf_printf(b, " %" PRIu64 "\n", cum);
    }
    snprintf(metric, sizeof metric, "%s_sum", name);
    series(b, metric, labels, NULL);
    weir__buf_printf(b, " %.9g\n", sum);
    snprintf(metric, sizeof metric, "%s_count", name);
    series(b, metric, labels, NULL);
    weir__buf_printf(b, " %" PRIu64 "\n", cum);
}

/* One pool's figures, read once per page. */
typedef struct snap {
    weir_pool *p;
    weir_pool_stats st;
    uint64_t acq[WEIR__ACQ_NB + 1], con[WEIR__ACQ_NB + 1], use[WEIR__USAGE_NB + 1];
    double acq_sum, con_sum, use_sum;
    char labels[WEIR__LABELS_MAX]; /* escaped: pool="<name>", or the pool's own */
} snap;

static bool take(weir_pool *p, snap *s)
{
    memset(s, 0, sizeof *s);
    s->p = p;
    if (weir_pool_stats_get(p, &s->st) != 0) return false;
    /* acquire: slow-path waits are timed precisely; lock-free checkouts do
     * not wait and are counted as 0 s (first bucket). */
    uint64_t slow = 0;
    for (int i = 0; i <= WEIR__ACQ_NB; i++) {
        s->acq[i] = atomic_load(&p->acquire_hist.counts[i]);
        slow += s->acq[i];
        s->con[i] = atomic_load(&p->connect_hist.counts[i]);
    }
    if ((uint64_t)s->st.acquires_total > slow) s->acq[0] += (uint64_t)s->st.acquires_total - slow;
    s->acq_sum = (double)atomic_load(&p->acquire_hist.sum_ns) / 1e9;
    s->con_sum = (double)atomic_load(&p->connect_hist.sum_ns) / 1e9;
    uint64_t usum = 0;
    pthread_mutex_lock(&p->mu);
    if (p->metric_labels[0]) {
        memcpy(s->labels, p->metric_labels, sizeof s->labels);
    } else {
        size_t o = sizeof "pool=\"" - 1;
        memcpy(s->labels, "pool=\"", o + 1);
        (void)escape_into(s->labels, sizeof s->labels - 1, &o, p->name); /* names are short */
        s->labels[o++] = '"';
        s->labels[o] = '\0';
    }
    for (int k = 0; k < p->nslots; k++) {
        weir_conn *c = p->slots[k];
        for (int i = 0; i <= WEIR__USAGE_NB; i++)
            s->use[i] += atomic_load_explicit(&c->usage_counts[i], memory_order_relaxed);
        usum += atomic_load_explicit(&c->usage_sum_ms, memory_order_relaxed);
    }
    pthread_mutex_unlock(&p->mu);
    s->use_sum = (double)usum / 1000;
    return true;
}

/* weir__usage_bounds_ms in seconds */
static const double usage_bounds[WEIR__USAGE_NB] = {0.001, 0.005, 0.01, 0.05, 0.1,
                                                    0.5,   1,     5,    10,   60};

typedef void (*family_fn)(weir__buf *b, const char *metric, const snap *s);

static void f_connections(weir__buf *b, const char *m, const snap *s)
{
    series(b, m, s->labels, "state=\"idle\"");
    weir__buf_printf(b, " %" PRId64 "\n", s->st.idle);
    series(b, m, s->labels, "state=\"active\"");
    weir__buf_printf(b, " %" PRId64 "\n", s->st.active);
}

#define GAUGE_FN(fname, expr)                                                                      \
    static void fname(weir__buf *b, const char *m, const snap *s)                                  \
    {                                                                                              \
        series(b, m, s->labels, NULL);                                                             \
        weir__buf_printf(b, " %" PRId64 "\n", (int64_t)(expr));                                    \
    }
GAUGE_FN(f_pending, s->st.pending)
GAUGE_FN(f_waiters, s->st.waiters)
GAUGE_FN(f_max, s->st.max_size)
GAUGE_FN(f_created, s->st.created_total)
GAUGE_FN(f_timeouts, s->st.acquire_timeouts_total)
GAUGE_FN(f_shed, s->st.shed_total)
GAUGE_FN(f_connect_errors, s->st.connect_errors_total)
GAUGE_FN(f_leaks, s->st.leaks_total)
GAUGE_FN(f_up, s->st.target_down ? 0 : 1)

static void f_acquire(weir__buf *b, const char *m, const snap *s)
{
    hist_text(b, m, s->labels, weir__acq_bounds, WEIR__ACQ_NB, s->acq, s->acq_sum);
}
static void f_usage(weir__buf *b, const char *m, const snap *s)
{
    hist_text(b, m, s->labels, usage_bounds, WEIR__USAGE_NB, s->use, s->use_sum);
}
static void f_connect(weir__buf *b, const char *m, const snap *s)
{
    hist_text(b, m, s->labels, weir__acq_bounds, WEIR__ACQ_NB, s->con, s->con_sum);
}
static void f_closed(weir__buf *b, const char *m, const snap *s)
{
    static const char *const reasons[WEIR_CLOSE_REASONS] = {"idle", "lifetime", "broken", "uses",
                                                            "evicted"};
    for (int r = 0; r < WEIR_CLOSE_REASONS; r++) {
        char extra[48];
        snprintf(extra, sizeof extra, "reason=\"%s\"", reasons[r]);
        series(b, m, s->labels, extra);
        weir__buf_printf(b, " %" PRId64 "\n", s->st.closed_total[r]);
    }
}

static void f_handoffs(weir__buf *b, const char *m, const snap *s)
{
    series(b, m, s->labels, "thread=\"same\"");
    weir__buf_printf(b, " %" PRId64 "\n", s->st.handoffs_total - s->st.handoffs_other_thread_total);
    series(b, m, s->labels, "thread=\"other\"");
    weir__buf_printf(b, " %" PRId64 "\n", s->st.handoffs_other_thread_total);
}

static void f_adaptive(weir__buf *b, const char *m, const snap *s)
{
    series(b, m, s->labels, "direction=\"grow\"");
    weir__buf_printf(b, " %" PRId64 "\n", s->st.adaptive_grows_total);
    series(b, m, s->labels, "direction=\"shrink\"");
    weir__buf_printf(b, " %" PRId64 "\n", s->st.adaptive_shrinks_total);
}

/* The families, in page order: each family's series stay together. */
static const struct family {
    const char *name, *type, *help;
    family_fn fn;
} families[] = {
    {"weir_pool_connections", "gauge", "Open connections by state.", f_connections},
    {"weir_pool_pending_connections", "gauge", "Connects in progress.", f_pending},
    {"weir_pool_waiters", "gauge", "Callers waiting for a connection.", f_waiters},
    {"weir_pool_max_connections", "gauge", "Cap on open connections.", f_max},
    {"weir_pool_acquire_seconds", "histogram", "Time to check out a connection.", f_acquire},
    {"weir_pool_usage_seconds", "histogram",
     "Time a connection was held between checkout and checkin.", f_usage},
    {"weir_pool_connect_seconds", "histogram", "Time to open a connection.", f_connect},
    {"weir_pool_connections_created_total", "counter", "Connections opened.", f_created},
    {"weir_pool_connections_closed_total", "counter", "Connections closed, by reason.", f_closed},
    {"weir_pool_acquire_timeouts_total", "counter", "Checkouts that timed out.", f_timeouts},
    {"weir_pool_acquire_shed_total", "counter",
     "Checkouts refused because max_waiters were waiting.", f_shed},
    {"weir_pool_connect_errors_total", "counter", "Failed connect attempts.", f_connect_errors},
    {"weir_pool_leaks_total", "counter", "Checkouts held longer than leak_threshold.", f_leaks},
    {"weir_pool_target_up", "gauge", "0 while fail-fast reports the target down.", f_up},
    {"weir_pool_adaptive_changes_total", "counter", "Size changes made by adaptive sizing.",
     f_adaptive},
    {"weir_pool_handoffs_total", "counter",
     "Connections a checkin handed straight to a waiting caller, by whether the caller was on "
     "the returning thread.",
     f_handoffs},
};

void weir__prometheus_page(weir_pool *const *pools, size_t n, weir__buf *b)
{
    snap *snaps = calloc(n ? n : 1, sizeof *snaps);
    if (!snaps) {
        b->failed = true;
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!weir__forked(pools[i]) && take(pools[i], &snaps[k])) k++;
    for (size_t f = 0; f < sizeof families / sizeof *families && k; f++) {
        head(b, families[f].name, families[f].type, families[f].help);
        for (size_t i = 0; i < k; i++) families[f].fn(b, families[f].name, &snaps[i]);
    }
    free(snaps);
}

char *weir_pools_prometheus(weir_pool *const *pools, size_t n, size_t *len)
{
    if (len) *len = 0;
    if (n && !pools) return NULL;
    weir__buf b = {0};
    weir__prometheus_page(pools, n, &b);
    if (b.failed) {
        free(b.data);
        return NULL;
    }
    if (!b.data) { /* no pools: an empty, valid page */
        b.data = calloc(1, 1);
        if (!b.data) return NULL;
    }
    if (len) *len = b.len;
    return b.data;
}

char *weir_pool_prometheus(weir_pool *p, size_t *len)
{
    if (len) *len = 0;
    if (!p || weir__forked(p)) return NULL;
    return weir_pools_prometheus(&p, 1, len);
}
