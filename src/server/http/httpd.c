/* httpd.c — weir's HTTP/1.1 server (httpd.h has the outline).
 *
 * One acceptor thread, N I/O threads each with its own libevent loop, and a
 * pool of executor threads for handlers that may wait (SQL).
 *
 * A connection lives on one I/O thread for its whole life; requests on it
 * are answered in order. A request the door's classifier marks as quick
 * (/health, /metrics) is answered on the I/O thread; any other is a job:
 * it owns a copy of its head and body, runs on an executor, and its answer
 * comes back to the connection's thread through that thread's queue. While
 * a job runs, its connection reads on but starts no other request.
 *
 * Executors are started on demand up to EXEC_MAX; jobs carry a key (the
 * database) and at most EXEC_PER_KEY jobs of one key run at once, the rest
 * wait in order, so a hung database holds its own requests and no others.
 *
 * Limits (httpd_limits): a cap on connections (503 and close above it), a
 * deadline for a request to arrive whole that starts at its first byte and
 * is not extended by later bytes (408), and an idle timeout between
 * requests. accept() failing for want of descriptors backs off (10 ms,
 * doubling to 1 s) with one log line per 10 s.
 */
#include "http/httpd.h"
#include "core/io.h"
#include "core/tls.h"

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
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define HEAD_MAX     HTTP_HEAD_MAX
#define READ_CHUNK   16384
#define EXEC_MAX     256 /* executor threads at most */
#define EXEC_PER_KEY 64  /* jobs of one key (database) running at once */

static int64_t coarse_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + 1; /* never 0 */
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
typedef struct hjob hjob;

typedef struct hconn {
    hthread *t;
    int fd;
    SSL *tls;        /* HTTPS: every byte through it */
    bool tls_decide; /* prefer: the first byte says TLS or plain */
    bool handshake;  /* the TLS handshake is under way */
    struct event ev;
    short armed; /* the events ev is added for */
    char peer[64];
    char *in;
    size_t in_len, in_cap;
    char *out; /* an answer not yet written whole */
    size_t out_len, out_off;
    bool continued;  /* 100 Continue sent for the request at the head of in */
    bool closing;    /* close once out is written */
    bool busy;       /* a job of this connection runs on an executor */
    bool dead;       /* gone while busy: freed when its job comes back */
    int64_t req_ms;  /* coarse ms of the first byte of the request being read; 0: none */
    int64_t idle_ms; /* coarse ms since when it has had nothing to do */
    struct hconn *prev, *next;
} hconn;

struct hjob {
    hconn *c;
    http_head head;
    char *body;
    http_req rq;
    http_resp rs;
    bool head_only;
    char key[HTTP_KEY_MAX];
    struct hjob *next;
};

typedef struct keyrun {
    char key[HTTP_KEY_MAX];
    int running;
    struct keyrun *next;
} keyrun;

struct hthread {
    httpd *d;
    int id;
    pthread_t thread;
    struct event_base *base;
    int efd;
    struct event efd_ev;
    pthread_mutex_t qlock; /* q (new fds) and done (finished jobs) */
    int *q;
    size_t qlen, qcap;
    hjob *done;
    hconn *conns;
    atomic_int nconns;
    atomic_bool stop; /* loops_stop: on_new ends the loop */
};

struct httpd {
    int lfd;
    int stop_pipe[2];
    pthread_t acceptor;
    int n;
    hthread *t;
    _Atomic size_t max_body;
    atomic_int max_conns;
    _Atomic int64_t req_timeout_ms, idle_timeout_ms;
    atomic_int nconns; /* open connections, all threads */
    _Atomic long long refused, timeouts, accept_errors;
    httpd_tls tls; /* HTTPS, or new_conn NULL */
    http_handler h;
    http_classify classify;
    void *ud;
    void (*log)(void *ud, const char *msg);
    unsigned rr;
    /* executors */
    pthread_mutex_t xmu;
    pthread_cond_t xcv, xgone;
    hjob *jq, *jq_tail; /* waiting, in order */
    keyrun *keys;
    int xthreads, xidle;
    bool xstop;
};

int httpd_threads(const httpd *d)
{
    return d ? d->n : 0;
}

static void limits_store(httpd *d, const httpd_limits *lim)
{
    atomic_store(&d->max_body, lim->max_body);
    atomic_store(&d->max_conns, lim->max_connections);
    atomic_store(&d->req_timeout_ms, lim->request_timeout_ms > 0 ? lim->request_timeout_ms : 10000);
    atomic_store(&d->idle_timeout_ms, lim->idle_timeout_ms > 0 ? lim->idle_timeout_ms : 60000);
}

void httpd_set_limits(httpd *d, const httpd_limits *lim)
{
    if (d) limits_store(d, lim);
}

void httpd_counters_get(const httpd *d, httpd_counters *o)
{
    memset(o, 0, sizeof *o);
    if (!d) return;
    o->connections = atomic_load(&d->nconns);
    o->refused_over_cap = atomic_load(&d->refused);
    o->request_timeouts = atomic_load(&d->timeouts);
    o->accept_errors = atomic_load(&d->accept_errors);
}

static void conn_free(hconn *c)
{
    hthread *t = c->t;
    if (c->armed) event_del(&c->ev);
    c->armed = 0;
    tls_close(c->tls);
    c->tls = NULL;
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    if (c->busy) { /* its job still runs: freed when the job comes back */
        c->dead = true;
        return;
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        t->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    atomic_fetch_sub(&t->nconns, 1);
    atomic_fetch_sub(&t->d->nconns, 1);
    free(c->in);
    free(c->out);
    free(c);
}

static void on_conn(evutil_socket_t fd, short what, void *arg);

/* Watch for what, with the time left before the request deadline (a request
 * is being read) or the idle timeout (nothing pending). A running job has
 * no time limit here: the handler enforces its own. */
static void conn_arm(hconn *c, short what)
{
    httpd *d = c->t->d;
    if (!what) { /* stop watching until told again */
        if (c->armed) event_del(&c->ev);
        c->armed = 0;
        return;
    }
    int64_t now = coarse_ms(), left;
    if (c->busy)
        left = -1;
    else if (c->req_ms)
        left = c->req_ms + atomic_load(&d->req_timeout_ms) - now;
    else
        left = c->idle_ms + atomic_load(&d->idle_timeout_ms) - now;
    if (c->armed != what) {
        if (c->armed) event_del(&c->ev);
        event_assign(&c->ev, c->t->base, c->fd, what | EV_PERSIST, on_conn, c);
        c->armed = what;
    }
    if (left < 0 && !c->busy) left = 0;
    struct timeval tv = {(time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000};
    event_add(&c->ev, left >= 0 ? &tv : NULL);
}

/* Write out what is pending; false if the connection is gone. */
static bool conn_flush(hconn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w = io_send(c->fd, c->tls, c->out + c->out_off, c->out_len - c->out_off);
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
    if (!c->out && !c->tls) { /* over TLS everything goes through out and conn_flush */
        struct iovec iov[2] = {{(void *)head, hlen}, {(void *)body, blen}};
        for (;;) {
            ssize_t w = io_writev(c->fd, iov, blen ? 2 : 1);
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

/* --- executors ------------------------------------------------------------------ */

static keyrun *key_find(httpd *d, const char *key) /* under xmu */
{
    for (keyrun *k = d->keys; k; k = k->next)
        if (!strcmp(k->key, key)) return k;
    return NULL;
}

/* The first waiting job whose key has room, taken off the queue; NULL if none. */
static hjob *job_pick(httpd *d) /* under xmu */
{
    hjob *prev = NULL;
    for (hjob *j = d->jq; j; prev = j, j = j->next) {
        keyrun *k = key_find(d, j->key);
        if (k && k->running >= EXEC_PER_KEY) continue;
        if (!k) {
            k = calloc(1, sizeof *k);
            if (!k) return NULL; /* try again when memory frees up */
            snprintf(k->key, sizeof k->key, "%s", j->key);
            k->next = d->keys;
            d->keys = k;
        }
        k->running++;
        if (prev)
            prev->next = j->next;
        else
            d->jq = j->next;
        if (d->jq_tail == j) d->jq_tail = prev;
        j->next = NULL;
        return j;
    }
    return NULL;
}

static void key_done(httpd *d, const char *key) /* under xmu */
{
    for (keyrun **pp = &d->keys; *pp; pp = &(*pp)->next)
        if (!strcmp((*pp)->key, key)) {
            keyrun *k = *pp;
            if (--k->running == 0) {
                *pp = k->next;
                free(k);
            }
            return;
        }
}

/* A finished job goes back to its connection's thread. */
static void job_return(hjob *j)
{
    hthread *t = j->c->t;
    pthread_mutex_lock(&t->qlock);
    j->next = t->done;
    t->done = j;
    pthread_mutex_unlock(&t->qlock);
    uint64_t one = 1;
    (void)!write(t->efd, &one, sizeof one);
}

static void *exec_main(void *arg)
{
    httpd *d = arg;
    pthread_mutex_lock(&d->xmu);
    for (;;) {
        hjob *j = job_pick(d);
        if (j) {
            pthread_mutex_unlock(&d->xmu);
            d->h(d->ud, &j->rq, &j->rs);
            pthread_mutex_lock(&d->xmu);
            key_done(d, j->key);
            if (d->jq) pthread_cond_signal(&d->xcv); /* one of that key may run now */
            pthread_mutex_unlock(&d->xmu);
            job_return(j);
            pthread_mutex_lock(&d->xmu);
            continue;
        }
        if (d->xstop) break;
        d->xidle++;
        pthread_cond_wait(&d->xcv, &d->xmu);
        d->xidle--;
    }
    if (--d->xthreads == 0) pthread_cond_broadcast(&d->xgone);
    pthread_mutex_unlock(&d->xmu);
    return NULL;
}

static void job_free(hjob *j)
{
    http_head_free(&j->head);
    free(j->body);
    sb_free(&j->rs.body);
    sb_free(&j->rs.headers);
    free(j);
}

/* Queue a job, starting an executor if none is idle. false: out of memory. */
static bool job_submit(httpd *d, hjob *j)
{
    pthread_mutex_lock(&d->xmu);
    if (d->jq_tail)
        d->jq_tail->next = j;
    else
        d->jq = j;
    d->jq_tail = j;
    bool ok = true;
    if (d->xidle > 0) {
        pthread_cond_signal(&d->xcv);
    } else if (d->xthreads < EXEC_MAX) {
        pthread_t th;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&th, &a, exec_main, d) == 0)
            d->xthreads++;
        else if (d->xthreads == 0)
            ok = false;
        pthread_attr_destroy(&a);
    }
    if (!ok) { /* no executor at all: take it back */
        hjob *prev = NULL;
        for (hjob *x = d->jq; x && x != j; x = x->next) prev = x;
        if (prev)
            prev->next = NULL;
        else
            d->jq = NULL;
        d->jq_tail = prev;
    }
    pthread_mutex_unlock(&d->xmu);
    return ok;
}

/* --- requests ------------------------------------------------------------------- */

static bool conn_process(hconn *c);

/* A job's answer, on its connection's thread. */
static void job_finish(hjob *j)
{
    hconn *c = j->c;
    c->busy = false;
    if (c->dead) {
        job_free(j);
        c->dead = false;
        conn_free(c);
        return;
    }
    c->idle_ms = coarse_ms();
    bool ok = send_answer(c, &j->rs, j->head_only);
    job_free(j);
    if (!ok || c->out) return;
    if (conn_process(c) && !c->out) conn_arm(c, EV_READ);
}

/* Parse and answer the requests whole in c->in. false: c is gone. */
static bool conn_process(hconn *c)
{
    httpd *d = c->t->d;
    size_t off = 0;
    bool ok = true;
    while (ok && !c->out && !c->busy && off < c->in_len) {
        char *start = c->in + off;
        size_t avail = c->in_len - off;
        http_head hd;
        int status;
        const char *why;
        int r = http_parse_head(start, avail, &hd, &status, &why);
        if (r == HTTP_PARSE_BAD) {
            refuse(c, status, why);
            return false;
        }
        if (r == HTTP_PARSE_NEED) break;
        size_t hlen = hd.skip + hd.len;
        if (hd.chunked) {
            http_head_free(&hd);
            refuse(c, 411, "chunked request bodies are not supported: send Content-Length");
            return false;
        }
        size_t max_body = atomic_load(&d->max_body);
        if ((unsigned long long)hd.content_length > max_body) {
            char m[160];
            snprintf(m, sizeof m, "request body of %lld bytes exceeds http_max_body (%zu bytes)",
                     hd.content_length, max_body);
            http_head_free(&hd);
            refuse(c, 413, m);
            return false;
        }
        size_t clen = (size_t)hd.content_length;
        if (avail - hlen < clen) {
            bool expect = hd.expect_continue;
            http_head_free(&hd);
            if (expect && !c->continued) {
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                c->continued = true;
                if (!conn_send(c, cont, sizeof cont - 1, NULL, 0)) return false;
            }
            break; /* the body is still coming */
        }
        hjob *j = calloc(1, sizeof *j);
        char *body = clen ? malloc(clen) : NULL;
        if (!j || (clen && !body)) {
            free(j);
            free(body);
            http_head_free(&hd);
            refuse(c, 503, "out of memory");
            return false;
        }
        if (clen) memcpy(body, start + hlen, clen);
        j->c = c;
        j->head = hd;
        j->body = body;
        http_req *rq = &j->rq;
        rq->method = hd.method;
        rq->path = hd.path;
        rq->query = hd.query;
        rq->nh = hd.nh;
        memcpy(rq->hname, j->head.hname, sizeof rq->hname);
        memcpy(rq->hval, j->head.hval, sizeof rq->hval);
        rq->body = body ? body : "";
        rq->body_len = clen;
        rq->thread = c->t->id;
        rq->door = d;
        memcpy(rq->peer, c->peer, sizeof rq->peer);
        rq->tls = c->tls != NULL;
        j->rs.status = 200;
        if (hd.http10 ? !hd.conn_keep_alive : hd.conn_close) j->rs.close = true;
        j->head_only = !strcmp(hd.method, "HEAD");
        off += hlen + clen;
        c->continued = false;
        /* The next request, if some of it is here, starts its clock now. */
        c->req_ms = off < c->in_len ? coarse_ms() : 0;
        bool quick = !d->classify || !d->classify(d->ud, rq, j->key, sizeof j->key);
        if (quick) {
            d->h(d->ud, rq, &j->rs);
            c->idle_ms = coarse_ms();
            ok = send_answer(c, &j->rs, j->head_only);
            job_free(j);
            if (!ok) return false;
            continue;
        }
        c->busy = true;
        if (!job_submit(d, j)) {
            c->busy = false;
            job_free(j);
            refuse(c, 503, "cannot start a request thread");
            return false;
        }
    }
    if (off) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
    if (c->in_len && !c->req_ms) c->req_ms = coarse_ms();
    if (!c->in_len) c->req_ms = 0;
    return true;
}

/* Begin TLS on c (its handshake runs in on_conn, under the request
 * deadline); false if c is gone. */
static bool start_tls(hconn *c)
{
    httpd *d = c->t->d;
    if (!(c->tls = d->tls.new_conn(d->ud, c->fd))) {
        conn_free(c);
        return false;
    }
    c->handshake = true;
    c->req_ms = coarse_ms();
    return true;
}

static void on_conn(evutil_socket_t fd, short what, void *arg)
{
    hconn *c = arg;
    if (what & EV_TIMEOUT) {
        if (c->busy) return; /* a job runs: no limit here */
        if (c->req_ms && !c->out) {
            atomic_fetch_add(&c->t->d->timeouts, 1);
            c->req_ms = 0;
            refuse(c, 408, "the request did not arrive whole within http_request_timeout");
            return;
        }
        conn_free(c);
        return;
    }
    if (c->tls_decide) { /* prefer: a TLS record first means HTTPS */
        int b = io_peek_byte(fd);
        if (b == -1) return;
        c->tls_decide = false;
        if (b == 0x16 && !start_tls(c)) return;
    }
    if (c->handshake) {
        char why[300];
        int r = tls_handshake(c->tls, why, sizeof why);
        if (r < 0) {
            c->t->d->log(c->t->d->ud, why);
            conn_free(c);
            return;
        }
        if (r != 1) {
            conn_arm(c, r == 2 ? EV_WRITE : EV_READ);
            return;
        }
        c->handshake = false;
        c->req_ms = 0;
        c->idle_ms = coarse_ms();
        if (!io_pending(c->tls)) {
            conn_arm(c, EV_READ);
            return;
        }
        what = EV_READ;
    }
    if (what & EV_WRITE) {
        if (!conn_flush(c)) return;
        if (c->out) return;
        c->idle_ms = coarse_ms();
        if (!conn_process(c)) return; /* requests that arrived meanwhile */
        if (!c->out) conn_arm(c, EV_READ);
        return;
    }
    bool got = false;
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
        ssize_t r = io_recv(fd, c->tls, c->in + c->in_len, c->in_cap - c->in_len);
        if (r > 0) {
            c->in_len += (size_t)r;
            got = true;
            /* a short read empties the socket, but TLS gives one record at a time */
            if (c->in_len < c->in_cap && !io_pending(c->tls)) break;
            continue;
        }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        conn_free(c); /* EOF or error */
        return;
    }
    if (got && !c->req_ms && !c->busy) c->req_ms = coarse_ms();
    if (c->busy) {
        /* Nothing to start until the job is back; stop reading when full. */
        if (c->in_len == c->in_cap) conn_arm(c, 0);
        return;
    }
    if (!conn_process(c)) return;
    if (c->out) return;
    if (c->in_len == 0 && c->in_cap > 4 * READ_CHUNK) { /* give back a big body's buffer */
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
    conn_arm(c, c->busy && c->in_len == c->in_cap ? 0 : EV_READ);
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
    hjob *done = t->done;
    t->done = NULL;
    pthread_mutex_unlock(&t->qlock);
    /* From inside the loop: a loopbreak from another thread before the
     * loop had begun would be forgotten when it begins (loops_stop). */
    if (atomic_load(&t->stop)) event_base_loopbreak(t->base);
    /* Finished jobs, oldest first. */
    hjob *rev = NULL;
    while (done) {
        hjob *j = done;
        done = j->next;
        j->next = rev;
        rev = j;
    }
    while (rev) {
        hjob *j = rev;
        rev = j->next;
        job_finish(j);
    }
    for (size_t i = 0; i < n; i++) {
        hconn *c = calloc(1, sizeof *c);
        if (!c) {
            close(q[i]);
            atomic_fetch_sub(&t->nconns, 1);
            atomic_fetch_sub(&t->d->nconns, 1);
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
        c->idle_ms = coarse_ms();
        if (t->d->tls.new_conn) {
            if (t->d->tls.sniff)
                c->tls_decide = true;
            else if (!start_tls(c))
                continue;
        }
        conn_arm(c, EV_READ);
    }
    free(q);
}

/* End the first n connection threads' loops and wait for them. The flag
 * and the eventfd, not event_base_loopbreak from here: a loop that has not
 * begun yet (a stop right after the start) clears a break asked before it. */
static void loops_stop(httpd *d, int n)
{
    for (int i = 0; i < n; i++) {
        atomic_store(&d->t[i].stop, true);
        uint64_t one = 1;
        (void)!write(d->t[i].efd, &one, sizeof one);
    }
    for (int i = 0; i < n; i++) pthread_join(d->t[i].thread, NULL);
}

static void *thread_main(void *arg)
{
    hthread *t = arg;
    event_base_dispatch(t->base);
    return NULL;
}

/* accept() failed for want of descriptors: wait, longer each time, and say
 * so once per 10 s. Returns the next wait. */
static int accept_backoff(httpd *d, int wait_ms, int64_t *last_log, long long *missed)
{
    atomic_fetch_add(&d->accept_errors, 1);
    int64_t now = coarse_ms();
    if (now - *last_log >= 10000) {
        if (d->log) {
            char m[200];
            snprintf(m, sizeof m,
                     "HTTP accept() failed: %s (%lld times); accepting paused for %d ms. "
                     "Raise the open-files limit or lower http_max_connections",
                     strerror(errno), *missed + 1, wait_ms);
            d->log(d->ud, m);
        }
        *last_log = now;
        *missed = 0;
    } else {
        ++*missed;
    }
    poll(NULL, 0, wait_ms);
    return wait_ms * 2 > 1000 ? 1000 : wait_ms * 2;
}

static void *acceptor_main(void *arg)
{
    httpd *d = arg;
    int backoff = 10;
    int64_t last_log = -100000;
    long long missed = 0;
    for (;;) {
        struct pollfd p[2] = {{.fd = d->lfd, .events = POLLIN},
                              {.fd = d->stop_pipe[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0 && errno != EINTR) break;
        if (p[1].revents) break;
        if (!(p[0].revents & POLLIN)) continue;
        int fd = accept4(d->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                backoff = accept_backoff(d, backoff, &last_log, &missed);
            continue;
        }
        backoff = 10;
        int max = atomic_load(&d->max_conns);
        if (max > 0 && atomic_load(&d->nconns) >= max) {
            static const char busy[] =
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                "Content-Length: 60\r\nConnection: close\r\n\r\n"
                "{\"message\":\"too many connections (http_max_connections)\"}\n";
            (void)!io_send(fd, NULL, busy, sizeof busy - 1);
            close(fd);
            atomic_fetch_add(&d->refused, 1);
            continue;
        }
        atomic_fetch_add(&d->nconns, 1);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        /* The thread with the fewest connections; ties in turn. */
        int best = -1, bestn = 0;
        for (int i = 0; i < d->n; i++) {
            int k = (int)((d->rr + (unsigned)i) % (unsigned)d->n);
            int n = atomic_load(&d->t[k].nconns);
            if (best < 0 || n < bestn) best = k, bestn = n;
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
                atomic_fetch_sub(&d->nconns, 1);
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
        while (t->done) { /* jobs that came back after the loop stopped */
            hjob *j = t->done;
            t->done = j->next;
            j->c->busy = false;
            if (j->c->dead) {
                j->c->dead = false;
                conn_free(j->c);
            }
            job_free(j);
        }
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

int httpd_start(httpd **out, const char *addr, int port, int nthreads, const httpd_limits *lim,
                const httpd_tls *tls, http_handler h, http_classify classify, void *ud,
                void (*log)(void *ud, const char *msg), char *err, size_t errlen)
{
    httpd *d = calloc(1, sizeof *d);
    if (!d) return snprintf(err, errlen, "out of memory"), -1;
    if (tls) d->tls = *tls;
    d->h = h;
    d->classify = classify;
    d->ud = ud;
    d->log = log;
    limits_store(d, lim);
    pthread_mutex_init(&d->xmu, NULL);
    pthread_cond_init(&d->xcv, NULL);
    pthread_cond_init(&d->xgone, NULL);
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
        loops_stop(d, started);
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
    /* Running jobs finish; waiting ones are dropped with their connections. */
    pthread_mutex_lock(&d->xmu);
    hjob *waiting = d->jq;
    d->jq = d->jq_tail = NULL;
    d->xstop = true;
    pthread_cond_broadcast(&d->xcv);
    while (d->xthreads > 0) pthread_cond_wait(&d->xgone, &d->xmu);
    pthread_mutex_unlock(&d->xmu);
    loops_stop(d, d->n);
    while (waiting) {
        hjob *j = waiting;
        waiting = j->next;
        j->c->busy = false;
        if (j->c->dead) {
            j->c->dead = false;
            conn_free(j->c);
        }
        job_free(j);
    }
    threads_free(d);
    while (d->keys) {
        keyrun *k = d->keys;
        d->keys = k->next;
        free(k);
    }
    close(d->lfd);
    close(d->stop_pipe[0]);
    close(d->stop_pipe[1]);
    pthread_mutex_destroy(&d->xmu);
    pthread_cond_destroy(&d->xcv);
    pthread_cond_destroy(&d->xgone);
    free(d);
}
