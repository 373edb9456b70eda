/* http.c — weir's HTTP door: /metrics (Prometheus text), /health (the
 * process answers), /ready (every database reachable, or which is not), and
 * the SQL API under /v1/ (httpapi.c). Off unless http_listen_port is set.
 *
 * It runs on threads of its own (httpd.c), not on the workers: a scrape sums
 * every pool's figures, a readiness probe may wait up to a second for a
 * database that does not answer, and an SQL request waits for its database;
 * none of it should delay a single PostgreSQL client. /health and /metrics
 * never wait, so they are answered on the I/O threads; /ready and the SQL
 * API run on executors, keyed by database (classify), so neither slow SQL
 * nor a hung database delays a probe or another database's requests.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/authguard.h"
#include "http/httpd.h"
#include "http/promcompat.h"
#include "core/server.h"
#include "http/http.h"
#include "pg/backend.h"
#include "core/tls.h"
#include "http/httpapi.h"
#include "http/sqlexec.h"
#include "core/log.h"
#include "core/stats.h"
#include "core/pools.h"

struct http_door {
    server *s;
    httpd *d;
};

static void reply(http_resp *rs, int code, const char *type, const char *body, size_t len)
{
    rs->status = code;
    rs->ctype = type;
    sb_add(&rs->body, body, len);
    sb_str(&rs->headers, "Cache-Control: no-store\r\n");
}

/* The live page's files (page_assets.c, made by cmake/embed.cmake). */
extern const unsigned char page_index_html[], page_weir_js[], page_weir_css[];
extern const size_t page_index_html_len, page_weir_js_len, page_weir_css_len;

/* GET /: the page, for admin_users and stats_users (its data comes from
 * /v1/pools and /v1/show/servers, behind the same login); /weir.js and
 * /weir.css hold no data. Scripts only from weir itself: no inline code, no
 * other origin, no framing. */
static bool on_page(server *s, http_req *rq, http_resp *rs)
{
    const char *p = rq->path;
    const unsigned char *body;
    size_t len;
    const char *type;
    if (!strcmp(p, "/")) {
        if (!api_ops_login(s, rq, rs)) return true; /* 401 or 403 in rs */
        body = page_index_html, len = page_index_html_len, type = "text/html; charset=utf-8";
    } else if (!strcmp(p, "/weir.js")) {
        body = page_weir_js, len = page_weir_js_len, type = "text/javascript; charset=utf-8";
    } else if (!strcmp(p, "/weir.css")) {
        body = page_weir_css, len = page_weir_css_len, type = "text/css; charset=utf-8";
    } else {
        return false;
    }
    reply(rs, 200, type, (const char *)body, len);
    sb_str(&rs->headers, "Content-Security-Policy: default-src 'none'; script-src 'self'; "
                         "style-src 'self'; connect-src 'self'; img-src 'self'; "
                         "frame-ancestors 'none'; base-uri 'none'; form-action 'none'\r\n"
                         "X-Content-Type-Options: nosniff\r\n"
                         "X-Frame-Options: DENY\r\n"
                         "Referrer-Policy: no-referrer\r\n");
    return true;
}

static void on_metrics(server *s, const http_req *rq, http_resp *rs)
{
    size_t len;
    pthread_rwlock_rdlock(&s->cfg_rw);
    char *page = metrics_page(s, &len);
    pthread_rwlock_unlock(&s->cfg_rw);
    if (!page) {
        reply(rs, 500, "text/plain", "out of memory\n", 14);
        return;
    }
    reply(rs, 200, "text/plain; version=0.0.4; charset=utf-8", page, len);
    api_metrics(s, &rs->body);
    uint64_t failed, refused;
    authguard_counts(s->guard, &failed, &refused);
    httpd_counters hc;
    httpd_counters_get(rq->door, &hc);
    long long srv_ok, srv_failed;
    tls_ref_counts(s->tls_out, &srv_ok, &srv_failed);
    sb_printf(&rs->body,
              "# HELP weir_auth_failures_total Failed password attempts, both doors.\n"
              "# TYPE weir_auth_failures_total counter\nweir_auth_failures_total %llu\n"
              "# HELP weir_auth_backoff_refusals_total Login attempts refused unchecked by the "
              "failed-login back-off.\n"
              "# TYPE weir_auth_backoff_refusals_total counter\n"
              "weir_auth_backoff_refusals_total %llu\n"
              "# HELP weir_accept_errors_total accept() failures for want of descriptors or "
              "memory, both doors.\n"
              "# TYPE weir_accept_errors_total counter\nweir_accept_errors_total %lld\n"
              "# HELP weir_tls_handshakes_total TLS handshakes completed with clients.\n"
              "# TYPE weir_tls_handshakes_total counter\nweir_tls_handshakes_total %lld\n"
              "# HELP weir_tls_handshake_failures_total TLS handshakes with clients that failed "
              "(a bad or missing certificate, a protocol or cipher mismatch).\n"
              "# TYPE weir_tls_handshake_failures_total counter\n"
              "weir_tls_handshake_failures_total %lld\n"
              "# HELP weir_tls_server_handshakes_total TLS handshakes completed with "
              "servers (server_tls_sslmode).\n"
              "# TYPE weir_tls_server_handshakes_total counter\n"
              "weir_tls_server_handshakes_total %lld\n"
              "# HELP weir_tls_server_handshake_failures_total TLS handshakes with servers "
              "that failed or timed out (a certificate refused, a protocol mismatch).\n"
              "# TYPE weir_tls_server_handshake_failures_total counter\n"
              "weir_tls_server_handshake_failures_total %lld\n"
              "# HELP weir_http_connections Open HTTP connections.\n"
              "# TYPE weir_http_connections gauge\nweir_http_connections %lld\n"
              "# HELP weir_http_connections_refused_total HTTP connections refused with 503 "
              "at http_max_connections.\n"
              "# TYPE weir_http_connections_refused_total counter\n"
              "weir_http_connections_refused_total %lld\n"
              "# HELP weir_http_request_timeouts_total HTTP requests not received whole "
              "within http_request_timeout (408).\n"
              "# TYPE weir_http_request_timeouts_total counter\n"
              "weir_http_request_timeouts_total %lld\n",
              (unsigned long long)failed, (unsigned long long)refused,
              (long long)atomic_load(&s->accept_errors) + hc.accept_errors,
              (long long)atomic_load(&s->tls_handshakes), (long long)atomic_load(&s->tls_failures),
              srv_ok, srv_failed, hc.connections, hc.refused_over_cap, hc.request_timeouts);
    free(page);
    promcompat_page(s, &rs->body); /* outside cfg_rw: it takes it itself */
}

/* --- /ready ---------------------------------------------------------------- */

typedef struct probe {
    const cfg_db *db;
    char status[300]; /* "ok" or why not */
    int fd;           /* a TCP or Unix connect in progress, or -1 */
} probe;

/* Start a non-blocking connect to db's server; fills status when it cannot start. */
static void probe_start(probe *p)
{
    const cfg_db *db = p->db;
    int rc = be_connect_start(db->host, db->port, false, &p->fd, p->status, sizeof p->status);
    if (rc == 0) {
        snprintf(p->status, sizeof p->status, "ok");
        close(p->fd);
        p->fd = -1;
    }
}

static void probes_finish(probe *v, size_t n, int timeout_ms)
{
    struct pollfd *pf = calloc(n ? n : 1, sizeof *pf);
    if (!pf) return;
    int64_t until = weir_now_ms() + timeout_ms;
    for (;;) {
        nfds_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (v[i].fd >= 0) pf[k++] = (struct pollfd){.fd = v[i].fd, .events = POLLOUT};
        int64_t left = until - weir_now_ms();
        if (!k || left <= 0) break;
        if (poll(pf, k, (int)left) < 0 && errno != EINTR) break;
        for (nfds_t j = 0; j < k; j++) {
            if (!pf[j].revents) continue;
            probe *p = NULL;
            for (size_t i = 0; i < n && !p; i++)
                if (v[i].fd == pf[j].fd) p = &v[i];
            int err = 0;
            socklen_t el = sizeof err;
            getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &el);
            if (err)
                snprintf(p->status, sizeof p->status, "connect to %s:%d: %s",
                         p->db->host[0] ? p->db->host : "/tmp", p->db->port, strerror(err));
            else
                snprintf(p->status, sizeof p->status, "ok");
            close(p->fd);
            p->fd = -1;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (v[i].fd >= 0) {
            snprintf(v[i].status, sizeof v[i].status, "connect to %s:%d: timed out after %d ms",
                     v[i].db->host[0] ? v[i].db->host : "/tmp", v[i].db->port, timeout_ms);
            close(v[i].fd);
            v[i].fd = -1;
        }
    free(pf);
}

/* A database is ready when its pools have not tripped fail-fast; a database
 * without a pool yet is probed with a TCP (or Unix socket) connect. */
static void on_ready(server *s, http_resp *rs)
{
    pthread_rwlock_rdlock(&s->cfg_rw); /* a reload waits for this probe */
    const cfg *k = &s->cfg;
    probe *v = calloc(k->ndbs ? k->ndbs : 1, sizeof *v);
    if (!v) {
        pthread_rwlock_unlock(&s->cfg_rw);
        reply(rs, 500, "text/plain", "out of memory\n", 14);
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < k->ndbs; i++) {
        const cfg_db *db = &k->dbs[i];
        if (!strcmp(db->name, "*")) continue;
        probe *p = &v[n++];
        p->db = db;
        p->fd = -1;
        if (db->sqlite_path[0]) { /* the file is there and readable */
            if (access(db->sqlite_path, R_OK) == 0)
                snprintf(p->status, sizeof p->status, "ok");
            else
                snprintf(p->status, sizeof p->status, "%s: %s", db->sqlite_path, strerror(errno));
            continue;
        }
        if (db->mysql_url[0]) { /* its pool can hand out a connection */
            sql_mysql_ready(s, db, p->status, sizeof p->status);
            continue;
        }
        bool have = false, down = false;
        pthread_mutex_lock(&s->pools_lock);
        for (spool *sp = s->pools; sp; sp = sp->next) {
            if (strcmp(sp->db, db->name)) continue;
            weir_pool_stats st;
            have = true;
            if (weir_pool_stats_get(sp->pool, &st) == 0 && pool_stats_down(&st) && !down) {
                down = true;
                char e[256];
                weir_pool_last_error(sp->pool, e, sizeof e);
                snprintf(p->status, sizeof p->status, "%s", e[0] ? e : "server login failing");
            }
        }
        pthread_mutex_unlock(&s->pools_lock);
        if (have && !down) snprintf(p->status, sizeof p->status, "ok");
        if (!have) probe_start(p);
    }
    int64_t t = k->server_connect_timeout > 0 && k->server_connect_timeout < 1000
                    ? k->server_connect_timeout
                    : 1000;
    probes_finish(v, n, (int)t);
    bool ready = true;
    sbuf *b = &rs->body;
    for (size_t i = 0; i < n; i++) ready = ready && !strcmp(v[i].status, "ok");
    sb_printf(b, "{\"ready\":%s,\"databases\":{", ready ? "true" : "false");
    for (size_t i = 0; i < n; i++) {
        if (i) sb_add(b, ",", 1);
        sb_jstr(b, v[i].db->name);
        sb_add(b, ":", 1);
        sb_jstr(b, v[i].status);
    }
    sb_str(b, "}}\n");
    pthread_rwlock_unlock(&s->cfg_rw);
    free(v);
    rs->status = ready ? 200 : 503;
    sb_str(&rs->headers, "Cache-Control: no-store\r\n");
}

/* Quick (false) or an executor's, keyed by the database it will wait for. */
static bool classify(void *ud, const http_req *rq, char *key, size_t keylen)
{
    (void)ud;
    const char *p = rq->path;
    if (!strcmp(p, "/ready")) { /* its probes may wait up to a second */
        snprintf(key, keylen, "/ready");
        return true;
    }
    /* /metrics asks the console, which may wait for a reload; the page's
     * login may check a SCRAM secret or wait for auth_query */
    if (!strcmp(p, "/metrics") || !strcmp(p, "/")) {
        snprintf(key, keylen, "%s", p[1] ? "/metrics" : "/page");
        return true;
    }
    /* /sql is /v1/sql, where Neon's driver sends its requests */
    if (strncmp(p, "/v1/", 4) && strcmp(p, "/sql")) return false; /* /health, /metrics, 404s */
    const char *db = NULL;
    size_t n = 0;
    if (!strncmp(p, "/v1/databases/", 14)) {
        db = p + 14;
        const char *e = strchr(db, '/');
        n = e ? (size_t)(e - db) : strlen(db);
    } else if ((db = http_header(rq, "Weir-Database"))) {
        n = strlen(db);
    } else {
        db = "";
    }
    snprintf(key, keylen, "db:%.*s", (int)(n < keylen - 4 ? n : keylen - 4), db);
    return true;
}

static void on_request(void *ud, http_req *rq, http_resp *rs)
{
    struct http_door *d = ud;
    server *s = d->s;
    bool get = !strcmp(rq->method, "GET") || !strcmp(rq->method, "HEAD");
    if (!strncmp(rq->path, "/v1/", 4)) {
        api_handle(s, rq, rs, rq->path + 4);
        return;
    }
    if (!strcmp(rq->path, "/sql")) { /* Neon's driver's path */
        api_handle(s, rq, rs, "sql");
        return;
    }
    const char *p = rq->path;
    if (!strcmp(p, "/metrics") || !strcmp(p, "/health") || !strcmp(p, "/ready")) {
        if (!get) {
            static const char body[] = "{\"message\":\"use GET\"}\n";
            reply(rs, 405, "application/json", body, sizeof body - 1);
            sb_str(&rs->headers, "Allow: GET, HEAD\r\n");
        } else if (p[1] == 'm') {
            on_metrics(s, rq, rs);
        } else if (p[1] == 'h') {
            reply(rs, 200, "application/json", "{\"status\":\"ok\"}\n", 16);
        } else {
            on_ready(s, rs);
        }
        return;
    }
    if (get && on_page(s, rq, rs)) return;
    static const char body[] =
        "{\"message\":\"not found: try /, /metrics, /health, /ready or /v1/sql\"}\n";
    reply(rs, 404, "application/json", body, sizeof body - 1);
}

static void limits_of(const cfg *k, httpd_limits *lim)
{
    lim->max_body = (size_t)k->http_max_body;
    lim->max_connections = k->http_max_connections;
    lim->request_timeout_ms = k->http_request_timeout;
    lim->idle_timeout_ms = k->http_idle_timeout;
}

static void door_log(void *ud, const char *msg)
{
    struct http_door *d = ud;
    srv_log(d->s, "WARNING", "%s", msg);
}

/* An accepted connection's TLS (the door's ud is the http_door). */
static SSL *https_conn(void *ud, int fd)
{
    return tls_http_new(((struct http_door *)ud)->s, fd);
}

int http_start(server *s)
{
    const cfg *k = &s->cfg;
    if (!k->http_listen_port) return 0;
    struct http_door *d = calloc(1, sizeof *d);
    if (!d) return -1;
    d->s = s;
    if (api_start(s)) {
        api_stop(s);
        free(d);
        return -1;
    }
    const char *addr = k->http_listen_addr[0] ? k->http_listen_addr : "127.0.0.1";
    if (!strcmp(addr, "*")) addr = "0.0.0.0";
    char err[300];
    httpd_limits lim;
    limits_of(k, &lim);
    int tm = cfg_sslmode(k->http_tls_sslmode);
    httpd_tls tls = {.new_conn = tm > SSLMODE_DISABLE ? https_conn : NULL,
                     .sniff = tm == SSLMODE_PREFER};
    if (httpd_start(&d->d, addr, k->http_listen_port, s->nhttp, &lim, &tls, on_request, classify, d,
                    door_log, err, sizeof err)) {
        srv_log(s, "ERROR", "%s", err);
        api_stop(s);
        free(d);
        return -1;
    }
    s->http = d;
    srv_log(s, "LOG", "HTTP%s on %s:%d, %d threads (/v1/sql, /v1/sessions, /metrics, /ready)",
            tm == SSLMODE_REQUIRE  ? "S"
            : tm == SSLMODE_PREFER ? " and HTTPS"
                                   : "",
            addr, k->http_listen_port, s->nhttp);
    return 0;
}

void http_config_changed(server *s)
{
    if (!s->http) return;
    httpd_limits lim;
    limits_of(&s->cfg, &lim);
    httpd_set_limits(s->http->d, &lim);
}

void http_stop(server *s)
{
    struct http_door *d = s->http;
    if (!d) return;
    httpd_stop(d->d); /* no request runs after this */
    api_stop(s);
    free(d);
    s->http = NULL;
}
