/* promcompat.c — pgbouncer_exporter's metrics from weir's console answers.
 *
 * The exporter (prometheus-community/pgbouncer_exporter) runs SHOW VERSION,
 * LISTS, CONFIG, CLIENTS, DATABASES, STATS_TOTALS and POOLS and maps columns
 * by name. Here the same commands run through admin_query and the answers are
 * read back from the wire format, so the page and the console cannot
 * disagree: one source, two views. */
#include "http/promcompat.h"

#include <math.h>
#include <strings.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/server.h"
#include "core/stats.h"
#include "pg/admin.h"
#include "pg/proto.h"

enum { MAXCOLS = 48 };

/* One console answer: column names and rows of text (NULL for SQL NULL). */
typedef struct table {
    int ncols;
    const char *cols[MAXCOLS];
    uint32_t types[MAXCOLS]; /* type OIDs: int8 20, int4 23, numeric 1700, ... */
    size_t nrows, cap;
    const char **cells; /* nrows * ncols, pointing into buf */
    char *buf;          /* a copy of the answer's bytes, made NUL-terminated */
} table;

/* Reads the RowDescription and DataRows of an answer; false on an error
 * answer or anything unexpected. Cells are copied so that each ends in NUL. */
static bool parse(const uint8_t *p, uint32_t n, table *t)
{
    memset(t, 0, sizeof *t);
    t->buf = malloc((size_t)n * 2 + 1); /* each cell's bytes and a NUL */
    if (!t->buf) return false;
    size_t bo = 0;
    uint32_t i = 0;
    while (i + 5 <= n) {
        char type = (char)p[i];
        uint32_t len = pq_get32(p + i + 1);
        if (len < 4 || len > n - i - 1) return false;
        const uint8_t *body = p + i + 5, *end = p + i + 1 + len;
        i += 1 + len;
        if (type == 'E') return false;
        if (type == 'T') {
            if (end - body < 2) return false;
            int nf = pq_get16(body);
            body += 2;
            if (nf > MAXCOLS) return false;
            for (int f = 0; f < nf; f++) {
                const char *name = (const char *)body;
                const uint8_t *z = memchr(body, 0, (size_t)(end - body));
                if (!z || end - (z + 1) < 18) return false;
                size_t l = (size_t)(z - body);
                memcpy(t->buf + bo, name, l + 1);
                t->cols[f] = t->buf + bo;
                t->types[f] = pq_get32(z + 1 + 6); /* after the table OID and column number */
                bo += l + 1;
                body = z + 1 + 18;
            }
            t->ncols = nf;
        } else if (type == 'D') {
            if (end - body < 2 || pq_get16(body) != t->ncols) return false;
            body += 2;
            if (t->nrows == t->cap) {
                size_t nc = t->cap ? t->cap * 2 : 16;
                const char **c = realloc(t->cells, nc * (size_t)t->ncols * sizeof *c);
                if (!c) return false;
                t->cells = c;
                t->cap = nc;
            }
            for (int f = 0; f < t->ncols; f++) {
                if (end - body < 4) return false;
                uint32_t l = pq_get32(body);
                body += 4;
                const char **cell = &t->cells[t->nrows * (size_t)t->ncols + (size_t)f];
                if (l == 0xffffffffu) {
                    *cell = NULL;
                    continue;
                }
                if (l > (uint32_t)(end - body)) return false;
                memcpy(t->buf + bo, body, l);
                t->buf[bo + l] = '\0';
                *cell = t->buf + bo;
                bo += l + 1;
                body += l;
            }
            t->nrows++;
        }
    }
    return t->ncols > 0;
}

static void table_free(table *t)
{
    free(t->cells);
    free(t->buf);
    memset(t, 0, sizeof *t);
}

/* SHOW what through the console (a stats_users' rights: SHOW only). */
static bool run(server *s, const char *what, table *t)
{
    pq_buf o = {0};
    char db[CFG_NAME] = "";
    char sql[64];
    snprintf(sql, sizeof sql, "SHOW %s", what);
    (void)admin_query(s, false, sql, &o, db);
    bool ok = parse(o.p + o.start, pq_buf_len(&o), t);
    pq_buf_free(&o);
    if (!ok) table_free(t);
    return ok;
}

static int col(const table *t, const char *name)
{
    for (int i = 0; i < t->ncols; i++)
        if (!strcmp(t->cols[i], name)) return i;
    return -1;
}

static const char *cell(const table *t, size_t row, int c)
{
    return c < 0 ? NULL : t->cells[row * (size_t)t->ncols + (size_t)c];
}

static bool number(const char *v, double factor, double *out)
{
    if (!v || !*v) return false;
    char *e;
    double d = strtod(v, &e);
    if (*e || !isfinite(d)) return false;
    *out = d * factor;
    return true;
}

/* The exporter's column mapping for one namespace. */
typedef struct mapping {
    const char *column, *metric, *type, *help;
    double factor;
} mapping;

static const mapping databases_map[] = {
    {"pool_size", "pool_size", "gauge", "Maximum number of server connections", 1},
    {"reserve_pool_size", "reserve_pool", "gauge",
     "Maximum number of additional connections for this database", 1},
    {"max_connections", "max_connections", "gauge",
     "Maximum number of allowed connections for this database", 1},
    {"current_connections", "current_connections", "gauge",
     "Current number of connections for this database", 1},
    {"paused", "paused", "gauge", "1 if this database is currently paused, else 0", 1},
    {"disabled", "disabled", "gauge", "1 if this database is currently disabled, else 0", 1},
    {NULL, NULL, NULL, NULL, 0}};
static const char *const databases_labels[] = {"name",       "host",      "port", "database",
                                               "force_user", "pool_mode", NULL};

static const mapping stats_map[] = {
    {"query_count", "queries_pooled_total", "counter", "Total number of SQL queries pooled", 1},
    {"query_time", "queries_duration_seconds_total", "counter",
     "Total number of seconds spent by pgbouncer when actively connected to PostgreSQL, "
     "executing queries",
     1e-6},
    {"bytes_received", "received_bytes_total", "counter",
     "Total volume in bytes of network traffic received by pgbouncer, shown as bytes", 1},
    {"requests", "queries_total", "counter",
     "Total number of SQL requests pooled by pgbouncer, shown as requests", 1},
    {"bytes_sent", "sent_bytes_total", "counter",
     "Total volume in bytes of network traffic sent by pgbouncer, shown as bytes", 1},
    {"wait_time", "client_wait_seconds_total", "counter",
     "Time spent by clients waiting for a server in seconds", 1e-6},
    {"xact_count", "sql_transactions_pooled_total", "counter",
     "Total number of SQL transactions pooled", 1},
    {"xact_time", "server_in_transaction_seconds_total", "counter",
     "Total number of seconds spent by pgbouncer when connected to PostgreSQL in a transaction, "
     "either idle in transaction or executing queries",
     1e-6},
    {"client_parse_count", "client_parses_total", "counter",
     "Total number of prepared statement Parse messages received from clients", 1},
    {"server_parse_count", "server_parses_total", "counter",
     "Total number of prepared statement Parse messages sent by pgbouncer to PostgreSQL", 1},
    {"bind_count", "binds_total", "counter",
     "Total number of prepared statements readied for execution with a Bind message", 1},
    {"server_assignment_count", "server_assignments_total", "counter",
     "Total number of client connections which have been served since process start", 1},
    {NULL, NULL, NULL, NULL, 0}};
static const char *const stats_labels[] = {"database", NULL};

static const mapping pools_map[] = {
    {"cl_active", "client_active_connections", "gauge",
     "Client connections linked to server connection and able to process queries", 1},
    {"cl_active_cancel_req", "client_active_cancel_connections", "gauge",
     "Client connections that have forwarded query cancellations to the server and are waiting "
     "for the server response",
     1},
    {"cl_waiting", "client_waiting_connections", "gauge",
     "Client connections waiting on a server connection", 1},
    {"cl_waiting_cancel_req", "client_waiting_cancel_connections", "gauge",
     "Client connections that have not forwarded query cancellations to the server yet", 1},
    {"sv_active", "server_active_connections", "gauge",
     "Server connections linked to a client connection", 1},
    {"sv_active_cancel", "server_active_cancel_connections", "gauge",
     "Server connections that are currently forwarding a cancel request", 1},
    {"sv_being_canceled", "server_being_canceled_connections", "gauge",
     "Servers waiting to become idle until in-flight cancel requests have completed", 1},
    {"sv_idle", "server_idle_connections", "gauge",
     "Server connections idle and ready for a client query", 1},
    {"sv_used", "server_used_connections", "gauge",
     "Server connections idle more than server_check_delay, needing server_check_query", 1},
    {"sv_tested", "server_testing_connections", "gauge",
     "Server connections currently running either server_reset_query or server_check_query", 1},
    {"sv_login", "server_login_connections", "gauge",
     "Server connections currently in the process of logging in", 1},
    {"maxwait", "client_maxwait_seconds", "gauge", "Age of oldest unserved client connection", 1},
    {NULL, NULL, NULL, NULL, 0}};
static const char *const pools_labels[] = {"database", "user", NULL};

/* One family per mapped column present, a series per row. */
static void namespace(sbuf *b, const char *ns, const table *t, const mapping *m,
                      const char *const *labels)
{
    int lc[8], nl = 0;
    for (; labels[nl]; nl++) lc[nl] = col(t, labels[nl]);
    for (; m->column; m++) {
        int c = col(t, m->column);
        if (c < 0) continue;
        sb_printf(b, "# HELP pgbouncer_%s_%s %s\n# TYPE pgbouncer_%s_%s %s\n", ns, m->metric,
                  m->help, ns, m->metric, m->type);
        for (size_t r = 0; r < t->nrows; r++) {
            double v;
            if (!number(cell(t, r, c), m->factor, &v)) continue;
            sb_printf(b, "pgbouncer_%s_%s{", ns, m->metric);
            for (int l = 0; l < nl; l++) {
                sb_printf(b, "%s%s=\"", l ? "," : "", labels[l]);
                sb_label(b, cell(t, r, lc[l]));
                sb_str(b, "\"");
            }
            sb_printf(b, "} %.17g\n", v);
        }
    }
}

static const struct {
    const char *list, *metric, *help;
} lists_map[] = {{"databases", "databases", "Count of databases"},
                 {"users", "users", "Count of users"},
                 {"pools", "pools", "Count of pools"},
                 {"free_clients", "free_clients", "Count of free clients"},
                 {"used_clients", "used_clients", "Count of used clients"},
                 {"login_clients", "login_clients", "Count of clients in login state"},
                 {"free_servers", "free_servers", "Count of free servers"},
                 {"used_servers", "used_servers", "Count of used servers"},
                 {"dns_names", "cached_dns_names", "Count of DNS names in the cache"},
                 {"dns_zones", "cached_dns_zones", "Count of DNS zones in the cache"},
                 {"dns_queries", "in_flight_dns_queries", "Count of in-flight DNS queries"}};

static const struct {
    const char *key, *metric, *help;
} config_map[] = {
    {"max_client_conn", "max_client_connections", "Config maximum number of client connections"},
    {"max_user_connections", "max_user_connections",
     "Config maximum number of server connections per user"}};

/* Two rows' columns as a key/value lookup (SHOW LISTS, SHOW CONFIG). */
static const char *lookup(const table *t, const char *key)
{
    for (size_t r = 0; r < t->nrows; r++)
        if (cell(t, r, 0) && !strcmp(cell(t, r, 0), key)) return cell(t, r, 1);
    return NULL;
}

/* SHOW CLIENTS grouped by database, user, application_name and state. */
typedef struct group {
    const char *db, *user, *app, *state;
    long n;
} group;

static void clients(sbuf *b, const table *t)
{
    int cd = col(t, "database"), cu = col(t, "user"), ca = col(t, "application_name"),
        cs = col(t, "state");
    if (cd < 0 || cu < 0 || cs < 0) return;
    group *g = calloc(t->nrows ? t->nrows : 1, sizeof *g);
    if (!g) return;
    size_t ng = 0;
    for (size_t r = 0; r < t->nrows; r++) {
        const char *d = cell(t, r, cd), *u = cell(t, r, cu), *a = ca >= 0 ? cell(t, r, ca) : "",
                   *st = cell(t, r, cs);
        d = d ? d : "", u = u ? u : "", a = a ? a : "", st = st ? st : "";
        size_t k = 0;
        while (k < ng && (strcmp(g[k].db, d) || strcmp(g[k].user, u) || strcmp(g[k].app, a) ||
                          strcmp(g[k].state, st)))
            k++;
        if (k == ng) g[ng++] = (group){d, u, a, st, 0};
        g[k].n++;
    }
    sb_str(b, "# HELP pgbouncer_client_connections Number of client connections grouped by "
              "database, user, application name, and state\n"
              "# TYPE pgbouncer_client_connections gauge\n");
    for (size_t k = 0; k < ng; k++) {
        sb_str(b, "pgbouncer_client_connections{database=\"");
        sb_label(b, g[k].db);
        sb_str(b, "\",user=\"");
        sb_label(b, g[k].user);
        sb_str(b, "\",application_name=\"");
        sb_label(b, g[k].app);
        sb_str(b, "\",state=\"");
        sb_label(b, g[k].state);
        sb_printf(b, "\"} %ld\n", g[k].n);
    }
    free(g);
}

static bool needs_freeze(const char *what)
{
    return !strcasecmp(what, "CLIENTS") || !strcasecmp(what, "SERVERS") ||
           !strcasecmp(what, "SOCKETS") || !strcasecmp(what, "ACTIVE_SOCKETS");
}

/* The console's answer to SHOW what, read as the console reads it: under
 * cfg_rw, but for the commands that hold the workers (which take it). */
static bool show(server *s, const char *what, table *t)
{
    if (needs_freeze(what)) return run(s, what, t);
    pthread_rwlock_rdlock(&s->cfg_rw);
    bool ok = run(s, what, t);
    pthread_rwlock_unlock(&s->cfg_rw);
    return ok;
}

static const char *const showable[] = {"POOLS",  "CLIENTS", "SERVERS", "DATABASES",
                                       "STATS",  "LISTS",   "USERS",   "MEM",
                                       "TOTALS", "STATE",   "VERSION"};

int console_json(server *s, const char *what, sbuf *b)
{
    bool known = false;
    for (size_t i = 0; i < sizeof showable / sizeof *showable; i++)
        if (!strcasecmp(what, showable[i])) known = true;
    if (!known) return -1;
    table t;
    if (!show(s, what, &t)) return -2;
    sb_str(b, "{\"columns\":[");
    for (int c = 0; c < t.ncols; c++) {
        if (c) sb_str(b, ",");
        sb_jstr(b, t.cols[c]);
    }
    sb_str(b, "],\"rows\":[");
    for (size_t r = 0; r < t.nrows; r++) {
        sb_str(b, r ? ",[" : "[");
        for (int c = 0; c < t.ncols; c++) {
            if (c) sb_str(b, ",");
            const char *v = cell(&t, r, c);
            uint32_t ty = t.types[c];
            double d;
            if (!v)
                sb_str(b, "null");
            else if ((ty == 20 || ty == 21 || ty == 23 || ty == 1700) && number(v, 1, &d))
                sb_str(b, v); /* the console's own digits */
            else
                sb_jstr(b, v);
        }
        sb_str(b, "]");
    }
    sb_str(b, "]}\n");
    table_free(&t);
    return 0;
}

void promcompat_page(server *s, sbuf *b)
{
    pthread_rwlock_rdlock(&s->cfg_rw);
    bool on = s->cfg.http_metrics_pgbouncer;
    pthread_rwlock_unlock(&s->cfg_rw);
    if (!on) return;
    table ver, lists, conf, dbs, stats, pools, cl;
    bool okv = show(s, "VERSION", &ver), okl = show(s, "LISTS", &lists),
         okc = show(s, "CONFIG", &conf), okd = show(s, "DATABASES", &dbs),
         oks = show(s, "STATS_TOTALS", &stats), okp = show(s, "POOLS", &pools),
         okcl = show(s, "CLIENTS", &cl);
    bool up = okv && okl && okc && okd && oks && okp && okcl;
    sb_printf(b,
              "# HELP pgbouncer_up The pgbouncer scrape succeeded\n# TYPE pgbouncer_up gauge\n"
              "pgbouncer_up %d\n",
              up ? 1 : 0);
    if (okv && ver.nrows) {
        sb_str(b, "# HELP pgbouncer_version_info The pgbouncer version info\n"
                  "# TYPE pgbouncer_version_info gauge\npgbouncer_version_info{version=\"");
        sb_label(b, cell(&ver, 0, 0));
        sb_str(b, "\"} 1\n");
    }
    if (okl)
        for (size_t i = 0; i < sizeof lists_map / sizeof *lists_map; i++) {
            double v;
            if (!number(lookup(&lists, lists_map[i].list), 1, &v)) continue;
            sb_printf(b, "# HELP pgbouncer_%s %s\n# TYPE pgbouncer_%s gauge\npgbouncer_%s %.17g\n",
                      lists_map[i].metric, lists_map[i].help, lists_map[i].metric,
                      lists_map[i].metric, v);
        }
    if (okc)
        for (size_t i = 0; i < sizeof config_map / sizeof *config_map; i++) {
            double v;
            if (!number(lookup(&conf, config_map[i].key), 1, &v)) continue;
            sb_printf(b,
                      "# HELP pgbouncer_config_%s %s\n# TYPE pgbouncer_config_%s gauge\n"
                      "pgbouncer_config_%s %.17g\n",
                      config_map[i].metric, config_map[i].help, config_map[i].metric,
                      config_map[i].metric, v);
        }
    if (okcl) clients(b, &cl);
    if (okd) namespace(b, "databases", &dbs, databases_map, databases_labels);
    if (oks) { /* the exporter's names since 0.10 (2024), and before: dashboards use either */
        namespace(b, "stats_totals", &stats, stats_map, stats_labels);
        namespace(b, "stats", &stats, stats_map, stats_labels);
    }
    if (okp) namespace(b, "pools", &pools, pools_map, pools_labels);
    table *all[] = {okv ? &ver : NULL,   okl ? &lists : NULL, okc ? &conf : NULL, okd ? &dbs : NULL,
                    oks ? &stats : NULL, okp ? &pools : NULL, okcl ? &cl : NULL};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (all[i]) table_free(all[i]);
}
