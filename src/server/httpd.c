/* httpd.c — weir's HTTP/1.1 server (httpd.h has the outline).
 *
 * One acceptor thread, N request threads each with its own libevent loop.
 * A connection lives on one thread for its whole life; requests on it are
 * answered in order. A handler runs to completion on its thread (it may wait
 * for a database), so a thread serves its other connections after it; new
 * connections go to the thread with the fewest.
 */
#include "httpd.h"

#include <errno.h>
#include <fcntl.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define HEAD_MAX     16384 /* request line and headers */
#define IDLE_TIMEOUT 60    /* seconds a kept-alive connection may sit idle */
#define READ_CHUNK   16384

static int64_t coarse_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + 1; /* never 0 */
}

/* --- sbuf ----------------------------------------------------------------- */

static bool sb_room(sbuf *b, size_t n)
{
    if (b->oom) return false;
    if (b->cap - b->len >= n) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < n) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void sb_add(sbuf *b, const void *p, size_t n)
{
    if (!n || !sb_room(b, n)) return;
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

void sb_str(sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

void sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        sb_add(b, tmp, (size_t)n);
        return;
    }
    if (!sb_room(b, (size_t)n + 1)) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void sb_json_str(sbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (!sb_room(b, n + 2)) return;
    b->p[b->len++] = '"';
    size_t run = 0; /* bytes copied as they are, in one go */
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\') {
            run++;
            continue;
        }
        sb_add(b, s + i - run, run);
        run = 0;
        char e[6] = {'\\', 0};
        size_t en = 2;
        switch (ch) {
        case '"':
            e[1] = '"';
            break;
        case '\\':
            e[1] = '\\';
            break;
        case '\n':
            e[1] = 'n';
            break;
        case '\r':
            e[1] = 'r';
            break;
        case '\t':
            e[1] = 't';
            break;
        default:
            memcpy(e, "\\u00", 4);
            e[4] = hex[ch >> 4];
            e[5] = hex[ch & 15];
            en = 6;
        }
        sb_add(b, e, en);
    }
    sb_add(b, s + n - run, run);
    sb_add(b, "\"", 1);
}

void sb_free(sbuf *b)
{
    free(b->p);
    *b = (sbuf){0};
}

/* --- requests ----------------------------------------------------------------- */

const char *http_header(const http_req *rq, const char *name)
{
    for (int i = 0; i < rq->nh; i++)
        if (!strcasecmp(rq->hname[i], name)) return rq->hval[i];
    return NULL;
}

const char *http_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

typedef struct hthread hthread;

typedef struct hconn {
    hthread *t;
    int fd;
    struct event ev;
    char peer[64];
    char *in;
    size_t in_len, in_cap;
    char *out; /* an answer not yet written whole */
    size_t out_len, out_off;
    bool continued; /* 100 Continue sent for the request at the head of in */
    bool closing;   /* close once out is written */
    struct hconn *prev, *next;
} hconn;

struct hthread {
    httpd *d;
    int id;
    pthread_t thread;
    struct event_base *base;
    int efd;
    struct event efd_ev;
    pthread_mutex_t qlock;
    int *q;
    size_t qlen, qcap;
    hconn *conns;
    atomic_int nconns;
    _Atomic int64_t busy_since; /* coarse ms when its running handler started; 0: none */
};

struct httpd {
    int lfd;
    int stop_pipe[2];
    pthread_t acceptor;
    int n;
    hthread *t;
    _Atomic size_t max_body;
    http_handler h;
    void *ud;
    unsigned rr;
};

int httpd_threads(const httpd *d)
{
    return d ? d->n : 0;
}

void httpd_set_max_body(httpd *d, size_t max_body)
{
    if (d) atomic_store(&d->max_body, max_body);
}

static void conn_free(hconn *c)
{
    hthread *t = c->t;
    event_del(&c->ev);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        t->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    atomic_fetch_sub(&t->nconns, 1);
    free(c->in);
    free(c->out);
    free(c);
}

static void on_conn(evutil_socket_t fd, short what, void *arg);

static void conn_arm(hconn *c, short what)
{
    event_del(&c->ev);
    event_assign(&c->ev, c->t->base, c->fd, what | EV_PERSIST, on_conn, c);
    struct timeval tv = {IDLE_TIMEOUT, 0};
    event_add(&c->ev, &tv);
}

/* Write out what is pending; false if the connection is gone. */
static bool conn_flush(hconn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w > 0) {
            c->out_off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            conn_arm(c, EV_WRITE);
            return true;
        }
        conn_free(c);
        return false;
    }
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_off = 0;
    if (c->closing) {
        conn_free(c);
        return false;
    }
    return true;
}

/* Queue an answer: head and body written together, the rest kept for later. */
static bool conn_send(hconn *c, const char *head, size_t hlen, const char *body, size_t blen)
{
    size_t done = 0, total = hlen + blen;
    if (!c->out) {
        struct iovec iov[2] = {{(void *)head, hlen}, {(void *)body, blen}};
        for (;;) {
            ssize_t w = writev(c->fd, iov, blen ? 2 : 1);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                conn_free(c);
                return false;
            }
            done = w > 0 ? (size_t)w : 0;
            break;
        }
    }
    if (done == total) return c->closing ? (conn_free(c), false) : true;
    size_t left = total - done;
    char *p = realloc(c->out, c->out_len + left);
    if (!p) {
        conn_free(c);
        return false;
    }
    c->out = p;
    if (done < hlen) {
        memcpy(p + c->out_len, head + done, hlen - done);
        c->out_len += hlen - done;
        done = hlen;
    }
    memcpy(p + c->out_len, body + (done - hlen), total - done);
    c->out_len += total - done;
    return conn_flush(c);
}

static bool send_answer(hconn *c, http_resp *rs, bool head_only)
{
    if (rs->body.oom || rs->headers.oom) {
        sb_free(&rs->body);
        rs->status = 500;
        rs->ctype = "application/json";
        sb_str(&rs->body, "{\"message\":\"out of memory\"}\n");
        rs->close = true;
    }
    if (rs->close) c->closing = true;
    char head[1024];
    int n =
        snprintf(head, sizeof head,
                 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%.*s%s\r\n",
                 rs->status, http_reason(rs->status), rs->ctype ? rs->ctype : "application/json",
                 rs->body.len, (int)(rs->headers.len < 600 ? rs->headers.len : 0),
                 rs->headers.p ? rs->headers.p : "", c->closing ? "Connection: close\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof head) n = 0;
    return conn_send(c, head, (size_t)n, rs->body.p, head_only ? 0 : rs->body.len);
}

/* An answer of weir's own before the request is read whole; closes after. */
static void refuse(hconn *c, int status, const char *msg)
{
    http_resp rs = {.status = status, .close = true};
    sb_str(&rs.body, "{\"message\":");
    sb_jstr(&rs.body, msg);
    sb_str(&rs.body, "}\n");
    send_answer(c, &rs, false);
    sb_free(&rs.body);
}

static char *find_crlf2(char *p, size_t n)
{
    for (size_t i = 3; i < n; i++)
        if (p[i] == '\n' && p[i - 1] == '\r' && p[i - 2] == '\n' && p[i - 3] == '\r')
            return p + i + 1;
    return NULL;
}

/* Parse and answer the requests whole in c->in. false: c is gone. */
static bool conn_process(hconn *c)
{
    httpd *d = c->t->d;
    size_t off = 0;
    bool ok = true;
    while (ok && !c->out && off < c->in_len) {
        char *start = c->in + off;
        size_t avail = c->in_len - off;
        char *end = find_crlf2(start, avail < HEAD_MAX ? avail : HEAD_MAX);
        if (!end) {
            if (avail >= HEAD_MAX) {
                refuse(c, 431, "request line and headers exceed 16 KiB");
                return false;
            }
            break;
        }
        size_t hlen = (size_t)(end - start);
        /* Parse in a copy: the handler gets NUL-terminated strings. */
        char *h = malloc(hlen + 1);
        if (!h) {
            conn_free(c);
            return false;
        }
        memcpy(h, start, hlen);
        h[hlen] = '\0';
        http_req rq = {.thread = c->t->id};
        memcpy(rq.peer, c->peer, sizeof rq.peer);
        char *line = h, *nl = strstr(line, "\r\n");
        *nl = '\0';
        char *sp1 = strchr(line, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
        if (!sp1 || !sp2 || strncmp(sp2 + 1, "HTTP/1.", 7) || !sp2[8] || sp2[9]) {
            free(h);
            refuse(c, 400, "malformed request line");
            return false;
        }
        *sp1 = *sp2 = '\0';
        bool http10 = sp2[8] == '0';
        rq.method = line;
        char *target = sp1 + 1, *q = strchr(target, '?');
        if (q) *q++ = '\0';
        rq.path = target;
        rq.query = q ? q : "";
        bool bad = false, chunked = false, expect = false;
        long long clen = 0;
        const char *conn_hdr = NULL;
        for (char *p = nl + 2; *p && !(p[0] == '\r' && p[1] == '\n');) {
            char *e = strstr(p, "\r\n");
            if (!e) break;
            *e = '\0';
            char *colon = strchr(p, ':');
            if (!colon || colon == p || rq.nh == HTTP_MAX_HEADERS) {
                bad = true;
                break;
            }
            *colon = '\0';
            char *v = colon + 1;
            while (*v == ' ' || *v == '\t') v++;
            for (char *t = v + strlen(v); t > v && (t[-1] == ' ' || t[-1] == '\t');) *--t = '\0';
            rq.hname[rq.nh] = p;
            rq.hval[rq.nh++] = v;
            if (!strcasecmp(p, "Content-Length")) {
                char *x;
                errno = 0;
                clen = strtoll(v, &x, 10);
                if (errno || *x || clen < 0 || x == v) bad = true;
            } else if (!strcasecmp(p, "Transfer-Encoding")) {
                chunked = strcasecmp(v, "identity") != 0;
            } else if (!strcasecmp(p, "Expect")) {
                expect = !strcasecmp(v, "100-continue");
            } else if (!strcasecmp(p, "Connection")) {
                conn_hdr = v;
            }
            p = e + 2;
        }
        if (bad) {
            free(h);
            refuse(c, 400, "malformed header");
            return false;
        }
        if (chunked) {
            free(h);
            refuse(c, 411, "chunked request bodies are not supported: send Content-Length");
            return false;
        }
        size_t max_body = atomic_load(&d->max_body);
        if ((unsigned long long)clen > max_body) {
            char m[160];
            snprintf(m, sizeof m, "request body of %lld bytes exceeds http_max_body (%zu bytes)",
                     clen, max_body);
            free(h);
            refuse(c, 413, m);
            return false;
        }
        if (avail - hlen < (size_t)clen) {
            free(h);
            if (expect && !c->continued) {
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                c->continued = true;
                if (!conn_send(c, cont, sizeof cont - 1, NULL, 0)) return false;
            }
            break; /* the body is still coming */
        }
        rq.body = start + hlen;
        rq.body_len = (size_t)clen;
        http_resp rs = {.status = 200};
        if (http10 ? !(conn_hdr && !strcasecmp(conn_hdr, "keep-alive"))
                   : (conn_hdr && !strcasecmp(conn_hdr, "close")))
            rs.close = true;
        atomic_store_explicit(&c->t->busy_since, coarse_ms(), memory_order_relaxed);
        d->h(d->ud, &rq, &rs);
        atomic_store_explicit(&c->t->busy_since, 0, memory_order_relaxed);
        bool head_only = !strcmp(rq.method, "HEAD");
        free(h);
        off += hlen + (size_t)clen;
        c->continued = false;
        ok = send_answer(c, &rs, head_only);
        sb_free(&rs.body);
        sb_free(&rs.headers);
        if (!ok) return false;
    }
    if (off) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
    return true;
}

static void on_conn(evutil_socket_t fd, short what, void *arg)
{
    hconn *c = arg;
    if (what & EV_TIMEOUT) {
        conn_free(c);
        return;
    }
    if (what & EV_WRITE) {
        if (!conn_flush(c)) return;
        if (c->out) return;
        conn_arm(c, EV_READ);
        if (!conn_process(c)) return; /* requests that arrived meanwhile */
        return;
    }
    for (;;) {
        size_t max_body = atomic_load(&c->t->d->max_body);
        if (c->in_cap - c->in_len < READ_CHUNK / 2) {
            size_t cap = c->in_cap ? c->in_cap * 2 : READ_CHUNK;
            if (cap > HEAD_MAX + max_body + READ_CHUNK) cap = HEAD_MAX + max_body + READ_CHUNK;
            if (cap > c->in_cap) {
                char *p = realloc(c->in, cap);
                if (!p) {
                    conn_free(c);
                    return;
                }
                c->in = p;
                c->in_cap = cap;
            }
            /* Full of pipelined requests: answer those first, read the rest after. */
            if (c->in_len == c->in_cap) break;
        }
        ssize_t r = recv(fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (r > 0) {
            c->in_len += (size_t)r;
            if (c->in_len < c->in_cap) break;
            continue;
        }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        conn_free(c); /* EOF or error */
        return;
    }
    if (!conn_process(c)) return;
    if (c->out) return;
    if (c->in_len == 0 && c->in_cap > 4 * READ_CHUNK) { /* give back a big body's buffer */
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
}

static void on_new(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    hthread *t = arg;
    uint64_t v;
    (void)!read(fd, &v, sizeof v);
    pthread_mutex_lock(&t->qlock);
    int *q = t->q;
    size_t n = t->qlen;
    t->q = NULL;
    t->qlen = t->qcap = 0;
    pthread_mutex_unlock(&t->qlock);
    for (size_t i = 0; i < n; i++) {
        hconn *c = calloc(1, sizeof *c);
        if (!c) {
            close(q[i]);
            atomic_fetch_sub(&t->nconns, 1);
            continue;
        }
        c->t = t;
        c->fd = q[i];
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        char host[NI_MAXHOST] = "?";
        if (getpeername(c->fd, (struct sockaddr *)&ss, &sl) == 0)
            getnameinfo((struct sockaddr *)&ss, sl, host, sizeof host, NULL, 0, NI_NUMERICHOST);
        snprintf(c->peer, sizeof c->peer, "%.*s", (int)sizeof c->peer - 1, host);
        c->next = t->conns;
        if (t->conns) t->conns->prev = c;
        t->conns = c;
        event_assign(&c->ev, t->base, c->fd, EV_READ | EV_PERSIST, on_conn, c);
        struct timeval tv = {IDLE_TIMEOUT, 0};
        event_add(&c->ev, &tv);
    }
    free(q);
}

static void *thread_main(void *arg)
{
    hthread *t = arg;
    event_base_dispatch(t->base);
    return NULL;
}

static void *acceptor_main(void *arg)
{
    httpd *d = arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = d->lfd, .events = POLLIN},
                              {.fd = d->stop_pipe[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0 && errno != EINTR) break;
        if (p[1].revents) break;
        if (!(p[0].revents & POLLIN)) continue;
        int fd = accept4(d->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) poll(NULL, 0, 50); /* let fds free up */
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        /* The thread with the fewest connections, passing over threads
         * stuck in one request (a slow statement) for 100 ms or more; ties
         * in turn. */
        int best = -1, bestn = 0;
        bool best_stuck = true;
        int64_t now = coarse_ms();
        for (int i = 0; i < d->n; i++) {
            int k = (int)((d->rr + (unsigned)i) % (unsigned)d->n);
            int n = atomic_load(&d->t[k].nconns);
            int64_t since = atomic_load_explicit(&d->t[k].busy_since, memory_order_relaxed);
            bool stuck = since && now - since >= 100;
            if (best < 0 || (best_stuck && !stuck) || (stuck == best_stuck && n < bestn))
                best = k, bestn = n, best_stuck = stuck;
        }
        d->rr++;
        hthread *t = &d->t[best];
        atomic_fetch_add(&t->nconns, 1);
        pthread_mutex_lock(&t->qlock);
        if (t->qlen == t->qcap) {
            size_t cap = t->qcap ? t->qcap * 2 : 16;
            int *q = realloc(t->q, cap * sizeof *q);
            if (!q) {
                pthread_mutex_unlock(&t->qlock);
                atomic_fetch_sub(&t->nconns, 1);
                close(fd);
                continue;
            }
            t->q = q;
            t->qcap = cap;
        }
        t->q[t->qlen++] = fd;
        pthread_mutex_unlock(&t->qlock);
        uint64_t one64 = 1;
        (void)!write(t->efd, &one64, sizeof one64);
    }
    return NULL;
}

static int listen_on(const char *addr, int port, char *err, size_t errlen)
{
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai = NULL;
    int e = getaddrinfo(addr, ps, &hints, &ai);
    if (e || !ai) {
        snprintf(err, errlen, "cannot resolve %s: %s", addr, gai_strerror(e));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 1024)) {
        snprintf(err, errlen, "cannot listen for HTTP on %s:%d: %s", addr, port, strerror(errno));
        if (fd >= 0) close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

static void threads_free(httpd *d)
{
    for (int i = 0; i < d->n; i++) {
        hthread *t = &d->t[i];
        while (t->conns) conn_free(t->conns);
        for (size_t k = 0; k < t->qlen; k++) close(t->q[k]);
        free(t->q);
        if (t->base) {
            if (event_initialized(&t->efd_ev)) event_del(&t->efd_ev);
            event_base_free(t->base);
        }
        if (t->efd >= 0) close(t->efd);
        pthread_mutex_destroy(&t->qlock);
    }
    free(d->t);
}

int httpd_start(httpd **out, const char *addr, int port, int nthreads, size_t max_body,
                http_handler h, void *ud, char *err, size_t errlen)
{
    httpd *d = calloc(1, sizeof *d);
    if (!d) return snprintf(err, errlen, "out of memory"), -1;
    d->h = h;
    d->ud = ud;
    atomic_init(&d->max_body, max_body);
    d->n = nthreads > 0 ? nthreads : 1;
    d->lfd = listen_on(addr, port, err, errlen);
    d->t = calloc((size_t)d->n, sizeof *d->t);
    if (d->lfd < 0 || !d->t || pipe2(d->stop_pipe, O_CLOEXEC)) {
        if (d->lfd >= 0)
            close(d->lfd);
        else if (!d->t)
            snprintf(err, errlen, "out of memory");
        free(d->t);
        free(d);
        return -1;
    }
    for (int i = 0; i < d->n; i++) {
        d->t[i].d = d;
        d->t[i].id = i;
        d->t[i].efd = -1;
        pthread_mutex_init(&d->t[i].qlock, NULL);
    }
    int started = 0;
    for (int i = 0; i < d->n; i++) {
        hthread *t = &d->t[i];
        t->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        t->base = event_base_new();
        if (t->efd < 0 || !t->base) break;
        event_assign(&t->efd_ev, t->base, t->efd, EV_READ | EV_PERSIST, on_new, t);
        event_add(&t->efd_ev, NULL);
        if (pthread_create(&t->thread, NULL, thread_main, t)) break;
        started++;
    }
    if (started < d->n || pthread_create(&d->acceptor, NULL, acceptor_main, d)) {
        snprintf(err, errlen, "cannot start the HTTP threads");
        for (int i = 0; i < started; i++) event_base_loopbreak(d->t[i].base);
        for (int i = 0; i < started; i++) pthread_join(d->t[i].thread, NULL);
        threads_free(d);
        close(d->lfd);
        close(d->stop_pipe[0]);
        close(d->stop_pipe[1]);
        free(d);
        return -1;
    }
    *out = d;
    return 0;
}

void httpd_stop(httpd *d)
{
    if (!d) return;
    (void)!write(d->stop_pipe[1], "x", 1);
    pthread_join(d->acceptor, NULL);
    for (int i = 0; i < d->n; i++) event_base_loopbreak(d->t[i].base);
    for (int i = 0; i < d->n; i++) {
        uint64_t one = 1; /* wake a loop idle in epoll_wait */
        (void)!write(d->t[i].efd, &one, sizeof one);
        pthread_join(d->t[i].thread, NULL);
    }
    threads_free(d);
    close(d->lfd);
    close(d->stop_pipe[0]);
    close(d->stop_pipe[1]);
    free(d);
}
