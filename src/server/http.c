/* http.c — weir's HTTP door for operators: /metrics (Prometheus text),
 * /health (the process answers) and /ready (every database reachable, or
 * which is not). Off unless http_listen_port is set.
 *
 * It runs on a thread of its own with libevent's evhttp, not on the
 * workers: a scrape sums every pool's figures and a readiness probe may wait
 * up to a second for a database that does not answer, and neither should
 * delay a single PostgreSQL client.
 */
#include <errno.h>
#include <event2/http.h>
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
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

#include "server.h"

struct http_door {
    server *s;
    struct event_base *base;
    struct evhttp *http;
    pthread_t thread;
    bool running;
};

static void reply(struct evhttp_request *req, int code, const char *reason, const char *type,
                  const char *body, size_t len)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", type);
    evhttp_add_header(h, "Cache-Control", "no-store");
    struct evbuffer *b = evbuffer_new();
    if (b) evbuffer_add(b, body, len);
    evhttp_send_reply(req, code, reason, b);
    if (b) evbuffer_free(b);
}

static void on_metrics(struct evhttp_request *req, void *arg)
{
    struct http_door *d = arg;
    size_t len;
    pthread_rwlock_rdlock(&d->s->cfg_rw);
    char *page = metrics_page(d->s, &len);
    pthread_rwlock_unlock(&d->s->cfg_rw);
    if (!page) {
        reply(req, 500, "Internal Server Error", "text/plain", "out of memory\n", 14);
        return;
    }
    reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", page, len);
    free(page);
}

static void on_health(struct evhttp_request *req, void *arg)
{
    (void)arg;
    reply(req, 200, "OK", "application/json", "{\"status\":\"ok\"}\n", 16);
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
    p->fd = -1;
    const char *host = db->host[0] ? db->host : "/tmp";
    int port = db->port > 0 ? db->port : 5432;
    if (host[0] == '/') {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        int n = snprintf(a.sun_path, sizeof a.sun_path, "%s/.s.PGSQL.%d", host, port);
        if (n < 0 || (size_t)n >= sizeof a.sun_path) {
            snprintf(p->status, sizeof p->status, "socket path too long: %s", host);
            return;
        }
        p->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (p->fd >= 0 && connect(p->fd, (struct sockaddr *)&a, sizeof a) == 0) {
            snprintf(p->status, sizeof p->status, "ok");
            close(p->fd);
            p->fd = -1;
        } else if (p->fd >= 0 && errno != EINPROGRESS && errno != EAGAIN) {
            snprintf(p->status, sizeof p->status, "connect to %s: %s", a.sun_path, strerror(errno));
            close(p->fd);
            p->fd = -1;
        }
        return;
    }
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int e = getaddrinfo(host, ps, &hints, &ai);
    if (e || !ai) {
        snprintf(p->status, sizeof p->status, "cannot resolve %s: %s", host, gai_strerror(e));
        return;
    }
    p->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->fd < 0) {
        snprintf(p->status, sizeof p->status, "socket: %s", strerror(errno));
    } else if (connect(p->fd, ai->ai_addr, ai->ai_addrlen) == 0) {
        snprintf(p->status, sizeof p->status, "ok");
        close(p->fd);
        p->fd = -1;
    } else if (errno != EINPROGRESS) {
        snprintf(p->status, sizeof p->status, "connect to %s:%d: %s", host, port, strerror(errno));
        close(p->fd);
        p->fd = -1;
    }
    freeaddrinfo(ai);
}

/* Wait for every connect in progress, up to timeout_ms in all. */
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

static void json_str(struct evbuffer *b, const char *v)
{
    evbuffer_add(b, "\"", 1);
    for (; *v; v++) {
        unsigned char ch = (unsigned char)*v;
        if (ch == '"' || ch == '\\')
            evbuffer_add_printf(b, "\\%c", ch);
        else if (ch < 0x20)
            evbuffer_add_printf(b, "\\u%04x", ch);
        else
            evbuffer_add(b, v, 1);
    }
    evbuffer_add(b, "\"", 1);
}

/* A database is ready when its pools have not tripped fail-fast; a database
 * without a pool yet is probed with a TCP (or Unix socket) connect. */
static void on_ready(struct evhttp_request *req, void *arg)
{
    struct http_door *d = arg;
    server *s = d->s;
    pthread_rwlock_rdlock(&s->cfg_rw); /* a reload waits for this probe */
    const cfg *k = &s->cfg;
    probe *v = calloc(k->ndbs ? k->ndbs : 1, sizeof *v);
    if (!v) {
        pthread_rwlock_unlock(&s->cfg_rw);
        reply(req, 500, "Internal Server Error", "text/plain", "out of memory\n", 14);
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < k->ndbs; i++) {
        const cfg_db *db = &k->dbs[i];
        if (!strcmp(db->name, "*")) continue;
        probe *p = &v[n++];
        p->db = db;
        p->fd = -1;
        bool have = false, down = false;
        pthread_mutex_lock(&s->pools_lock);
        for (spool *sp = s->pools; sp; sp = sp->next) {
            if (strcmp(sp->db, db->name)) continue;
            weir_pool_stats st;
            have = true;
            if (weir_pool_stats_get(sp->pool, &st) == 0 && st.target_down && !down) {
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
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        pthread_rwlock_unlock(&s->cfg_rw);
        free(v);
        reply(req, 500, "Internal Server Error", "text/plain", "out of memory\n", 14);
        return;
    }
    for (size_t i = 0; i < n; i++) ready = ready && !strcmp(v[i].status, "ok");
    evbuffer_add_printf(b, "{\"ready\":%s,\"databases\":{", ready ? "true" : "false");
    for (size_t i = 0; i < n; i++) {
        if (i) evbuffer_add(b, ",", 1);
        json_str(b, v[i].db->name);
        evbuffer_add(b, ":", 1);
        json_str(b, v[i].status);
    }
    evbuffer_add_printf(b, "}}\n");
    pthread_rwlock_unlock(&s->cfg_rw);
    free(v);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_send_reply(req, ready ? 200 : 503, ready ? "OK" : "Service Unavailable", b);
    evbuffer_free(b);
}

static void on_other(struct evhttp_request *req, void *arg)
{
    (void)arg;
    static const char body[] = "{\"error\":\"not found: try /metrics, /health or /ready\"}\n";
    reply(req, 404, "Not Found", "application/json", body, sizeof body - 1);
}

static void *http_main(void *arg)
{
    struct http_door *d = arg;
    event_base_dispatch(d->base);
    return NULL;
}

int http_start(server *s)
{
    const cfg *k = &s->cfg;
    if (!k->http_listen_port) return 0;
    struct http_door *d = calloc(1, sizeof *d);
    if (!d) return -1;
    d->s = s;
    d->base = event_base_new();
    d->http = d->base ? evhttp_new(d->base) : NULL;
    if (!d->http) {
        if (d->base) event_base_free(d->base);
        free(d);
        return -1;
    }
    const char *addr = k->http_listen_addr[0] ? k->http_listen_addr : "127.0.0.1";
    if (!strcmp(addr, "*")) addr = "0.0.0.0";
    if (!evhttp_bind_socket_with_handle(d->http, addr, (ev_uint16_t)k->http_listen_port)) {
        srv_log(s, "ERROR", "cannot listen for HTTP on %s:%d: %s", addr, k->http_listen_port,
                strerror(errno));
        evhttp_free(d->http);
        event_base_free(d->base);
        free(d);
        return -1;
    }
    evhttp_set_allowed_methods(d->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_cb(d->http, "/metrics", on_metrics, d);
    evhttp_set_cb(d->http, "/health", on_health, d);
    evhttp_set_cb(d->http, "/ready", on_ready, d);
    evhttp_set_gencb(d->http, on_other, d);
    evhttp_set_timeout(d->http, 30);
    if (pthread_create(&d->thread, NULL, http_main, d) != 0) {
        evhttp_free(d->http);
        event_base_free(d->base);
        free(d);
        return -1;
    }
    d->running = true;
    s->http = d;
    srv_log(s, "LOG", "HTTP on %s:%d (/metrics, /health, /ready)", addr, k->http_listen_port);
    return 0;
}

void http_stop(server *s)
{
    struct http_door *d = s->http;
    if (!d) return;
    event_base_loopbreak(d->base);
    if (d->running) pthread_join(d->thread, NULL);
    evhttp_free(d->http);
    event_base_free(d->base);
    free(d);
    s->http = NULL;
}
