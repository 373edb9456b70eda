/* http.c — the HTTP driver (libcurl): keep-alive connections to one origin,
 * a real TCP connect in the driver's connect, validation without a request,
 * reset on checkin, a request helper with retries, the registry's http://
 * and https:// schemes.
 *
 * Two ways to hold connections:
 *  - one connection per easy handle (multiplex=0, plain http://, and
 *    https:// until an answer comes over HTTP/2): each pooled handle owns its
 *    TCP connection and runs its transfers with curl_easy_perform in the
 *    caller's thread;
 *  - multiplexed (multiplex=auto once HTTP/2 was seen, multiplex=1, or
 *    http_version=2-prior-knowledge):
 *    the pool's handles share one curl multi handle, driven by a thread of
 *    the pool's own, and its connection cache. Where the server speaks
 *    HTTP/2, concurrent requests from all handles go as streams over one
 *    connection (CURLOPT_PIPEWAIT: a new request waits to learn whether the
 *    open connection multiplexes rather than opening another); over HTTP/1.1
 *    each concurrent request takes an idle cached connection or opens one.
 *    A pooled "connection" is then a slot for one request at a time, and
 *    the pool's size bounds concurrent requests, not TCP connections. */
#include "weir/weir_http.h"

#include "../lib/scheme.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* A pre-connected socket from the driver's connect, waiting for the multi
 * handle to open a connection (multiplexed mode). */
typedef struct stashed {
    int fd;
    int64_t at; /* weir_now_ns() when connected */
} stashed;

enum { STASH_MAX = 8 };
#define STASH_TTL_NS INT64_C(2000000000)

typedef struct mux_job {
    CURL *h;
    CURLcode rc;
    bool done;
    pthread_cond_t cv;
    struct mux_job *next;
} mux_job;

/* The shared multi handle of a multiplexed pool and its thread. */
typedef struct http_mux {
    pthread_mutex_t mu;
    pthread_mutex_t probe_mu; /* one reachability probe at a time */
    pthread_t thr;
    bool started, stop;
    CURLM *m;
    mux_job *queue, *queue_tail; /* submitted, not yet added to m */
    mux_job *running;            /* in m (only the thread touches this list) */
    stashed stash[STASH_MAX];
    int nstash;
    int handed[STASH_MAX]; /* stashed sockets just given to curl: sockopt says "connected" */
    int nhanded;
    _Atomic int sockets;    /* open connection sockets */
    _Atomic int64_t opened; /* connection sockets opened (or handed over), ever */
} http_mux;

typedef struct http_target {
    char origin[512];      /* scheme://host[:port], no credentials, no path */
    char connect_url[520]; /* http://host:port/ for the TCP-only connect */
    bool tls;
    char *ca_file, *ca_path, *cert, *key, *proxy, *noproxy, *user_agent;
    bool verify, http2, h2c;
    int multiplex;       /* MUX_OFF, MUX_AUTO, MUX_ON; -1 until the options are read */
    _Atomic bool mux_on; /* new handles are multiplexed (MUX_AUTO: once HTTP/2 was seen) */
    long cache_max;      /* the multi handle's connection cache */
    http_mux *mux;       /* unless MUX_OFF */
    int64_t timeout_ms, retry_max_time_ms, backoff_base_ms, backoff_max_ms;
    int retries;
    size_t max_response;
    _Atomic int64_t requests, retries_done, responses[6], failures;
    char describe[512];
} http_target;

enum { MUX_OFF, MUX_AUTO, MUX_ON };

typedef struct http_conn {
    CURL *h;
    http_target *t;
    bool mux;        /* this handle's transfers run on the shared multi handle */
    int prefd;       /* connected by connect(), not yet handed to the handle; -1 */
    bool handing;    /* opensocket just gave prefd: sockopt says "connected" */
    bool raw;        /* the caller had the handle (weir_http_handle): reset it at checkin */
    weir_pool *pool; /* set with raw */
    int64_t connect_timeout_ms;
} http_conn;

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static CURLcode lib_rc;

static void lib_init(void)
{
    lib_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* --- the multiplexed mode's multi handle ---------------------------------------- */

static bool sock_alive(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 0; /* a fresh connection has nothing to read yet */
}

/* Close stashed sockets older than the TTL (or all); under x->mu. */
static void stash_expire(http_mux *x, bool all)
{
    int64_t now = weir_now_ns();
    int k = 0;
    for (int i = 0; i < x->nstash; i++) {
        if (all || now - x->stash[i].at > STASH_TTL_NS)
            close(x->stash[i].fd);
        else
            x->stash[k++] = x->stash[i];
    }
    x->nstash = k;
}

static curl_socket_t mux_open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
    http_mux *x = ud;
    int fd = -1;
    if (purpose == CURLSOCKTYPE_IPCXN) {
        pthread_mutex_lock(&x->mu);
        stash_expire(x, false);
        while (fd < 0 && x->nstash > 0) {
            int s = x->stash[--x->nstash].fd;
            if (sock_alive(s) && x->nhanded < STASH_MAX)
                x->handed[x->nhanded++] = fd = s;
            else
                close(s);
        }
        pthread_mutex_unlock(&x->mu);
    }
    if (fd < 0) fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (fd < 0) return CURL_SOCKET_BAD;
    atomic_fetch_add(&x->sockets, 1);
    atomic_fetch_add(&x->opened, 1);
    return fd;
}

static int mux_sock_opt(void *ud, curl_socket_t fd, curlsocktype purpose)
{
    (void)purpose;
    http_mux *x = ud;
    int rc = CURL_SOCKOPT_OK;
    pthread_mutex_lock(&x->mu);
    for (int i = 0; i < x->nhanded; i++)
        if (x->handed[i] == (int)fd) {
            x->handed[i] = x->handed[--x->nhanded];
            rc = CURL_SOCKOPT_ALREADY_CONNECTED;
            break;
        }
    pthread_mutex_unlock(&x->mu);
    return rc;
}

static int mux_close_socket(void *ud, curl_socket_t fd)
{
    http_mux *x = ud;
    atomic_fetch_sub(&x->sockets, 1);
    return close((int)fd);
}

static void job_finish(http_mux *x, mux_job *j, CURLcode rc)
{
    pthread_mutex_lock(&x->mu);
    j->rc = rc;
    j->done = true;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&x->mu);
}

/* The pool's thread: adds submitted transfers to the multi handle, drives
 * them, hands each result back to its caller. */
static void *mux_main(void *arg)
{
    http_mux *x = arg;
    for (;;) {
        pthread_mutex_lock(&x->mu);
        bool stop = x->stop;
        mux_job *q = x->queue;
        x->queue = x->queue_tail = NULL;
        stash_expire(x, false);
        pthread_mutex_unlock(&x->mu);
        if (stop) break;
        while (q) {
            mux_job *next = q->next;
            CURLMcode mc = curl_multi_add_handle(x->m, q->h);
            if (mc != CURLM_OK) {
                job_finish(x, q, CURLE_FAILED_INIT);
            } else {
                q->next = x->running;
                x->running = q;
            }
            q = next;
        }
        int still;
        curl_multi_perform(x->m, &still);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(x->m, &left))) {
            if (msg->msg != CURLMSG_DONE) continue;
            CURL *h = msg->easy_handle;
            CURLcode rc = msg->data.result; /* msg dies with the removal */
            mux_job **pp = &x->running;
            while (*pp && (*pp)->h != h) pp = &(*pp)->next;
            curl_multi_remove_handle(x->m, h);
            if (*pp) {
                mux_job *j = *pp;
                *pp = j->next;
                job_finish(x, j, rc);
            }
        }
        curl_multi_poll(x->m, NULL, 0, 1000, NULL);
    }
    return NULL;
}

static http_mux *mux_new(void)
{
    http_mux *x = calloc(1, sizeof *x);
    if (!x) return NULL;
    pthread_mutex_init(&x->mu, NULL);
    pthread_mutex_init(&x->probe_mu, NULL);
    return x;
}

/* The multi handle and its thread, on the first connect. */
static int mux_start(http_mux *x, long cache_max, char *err, size_t errlen)
{
    int rc = 0;
    pthread_mutex_lock(&x->mu);
    if (!x->started) {
        x->m = curl_multi_init();
        if (!x->m) {
            rc = WEIR_ENOMEM;
        } else {
            curl_multi_setopt(x->m, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
            curl_multi_setopt(x->m, CURLMOPT_MAXCONNECTS, cache_max);
            if (pthread_create(&x->thr, NULL, mux_main, x)) {
                curl_multi_cleanup(x->m);
                x->m = NULL;
                rc = WEIR_ENOMEM;
            } else {
                x->started = true;
            }
        }
        if (rc) snprintf(err, errlen, "cannot start the HTTP/2 multiplexing thread");
    }
    pthread_mutex_unlock(&x->mu);
    return rc;
}

static void mux_free(http_mux *x)
{
    if (!x) return;
    if (x->started) {
        pthread_mutex_lock(&x->mu);
        x->stop = true;
        pthread_mutex_unlock(&x->mu);
        curl_multi_wakeup(x->m);
        pthread_join(x->thr, NULL);
        for (mux_job *j = x->running; j; j = j->next) curl_multi_remove_handle(x->m, j->h);
        curl_multi_cleanup(x->m); /* closes the cached connections */
    }
    stash_expire(x, true);
    pthread_mutex_destroy(&x->mu);
    pthread_mutex_destroy(&x->probe_mu);
    free(x);
}

/* Run h's transfer on the shared multi handle; back when it is done. */
static CURLcode mux_perform(http_mux *x, CURL *h)
{
    mux_job j = {.h = h};
    pthread_cond_init(&j.cv, NULL);
    pthread_mutex_lock(&x->mu);
    if (x->queue_tail)
        x->queue_tail->next = &j;
    else
        x->queue = &j;
    x->queue_tail = &j;
    pthread_mutex_unlock(&x->mu);
    curl_multi_wakeup(x->m);
    pthread_mutex_lock(&x->mu);
    while (!j.done) pthread_cond_wait(&j.cv, &x->mu);
    pthread_mutex_unlock(&x->mu);
    pthread_cond_destroy(&j.cv);
    return j.rc;
}

static void target_free(void *ctx)
{
    http_target *t = ctx;
    if (!t) return;
    mux_free(t->mux);
    char **strs[] = {&t->ca_file, &t->ca_path, &t->cert,      &t->key,
                     &t->proxy,   &t->noproxy, &t->user_agent};
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++) free(*strs[i]);
    free(t);
}

static int bad(char *err, size_t errlen, const char *url, const char *why)
{
    char masked[512];
    weir_mask_credentials(url, masked, sizeof masked);
    if (err && errlen) snprintf(err, errlen, "invalid HTTP origin \"%s\": %s", masked, why);
    return WEIR_EINVAL;
}

static bool to_i64(const char *v, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi) return false;
    *out = x;
    return true;
}

static int set_option(http_target *t, const char *k, char *v, char *why, size_t whylen)
{
    char **slot = !strcmp(k, "ca_file")      ? &t->ca_file
                  : !strcmp(k, "ca_path")    ? &t->ca_path
                  : !strcmp(k, "cert")       ? &t->cert
                  : !strcmp(k, "key")        ? &t->key
                  : !strcmp(k, "proxy")      ? &t->proxy
                  : !strcmp(k, "noproxy")    ? &t->noproxy
                  : !strcmp(k, "user_agent") ? &t->user_agent
                                             : NULL;
    if (slot) {
        free(*slot);
        *slot = v;
        return 0;
    }
    int64_t x;
    int rc = 0;
    if (!strcmp(k, "verify")) {
        if (!strcmp(v, "1") || !strcmp(v, "0"))
            t->verify = v[0] == '1';
        else
            rc = (snprintf(why, whylen, "verify is 0 or 1"), -1);
    } else if (!strcmp(k, "http_version")) {
        const curl_version_info_data *vi = curl_version_info(CURLVERSION_NOW);
        if (!strcmp(v, "2-prior-knowledge") && vi->version_num < 0x080000) {
            /* 7.x switches in a second HTTP/2 layer on a reused connection
             * and fails with "Error in the HTTP2 framing layer" */
            rc = (snprintf(why, whylen,
                           "http_version=2-prior-knowledge needs libcurl 8.0 or later "
                           "(libcurl %s cannot reuse such a connection)",
                           vi->version),
                  -1);
        } else if (!strcmp(v, "2") || !strcmp(v, "1.1") || !strcmp(v, "2-prior-knowledge")) {
            t->http2 = v[0] == '2';
            t->h2c = v[1] == '-';
        } else {
            rc = (snprintf(why, whylen, "http_version is 1.1, 2 or 2-prior-knowledge"), -1);
        }
    } else if (!strcmp(k, "multiplex")) {
        if (!strcmp(v, "1") || !strcmp(v, "0") || !strcmp(v, "auto"))
            t->multiplex = v[0] == '1' ? MUX_ON : v[0] == '0' ? MUX_OFF : MUX_AUTO;
        else
            rc = (snprintf(why, whylen, "multiplex is auto, 0 or 1"), -1);
    } else if (!strcmp(k, "retries")) {
        if (to_i64(v, 0, 100, &x))
            t->retries = (int)x;
        else
            rc = (snprintf(why, whylen, "retries is 0-100"), -1);
    } else if (!strcmp(k, "max_response")) {
        if (to_i64(v, 1, INT64_C(1) << 40, &x))
            t->max_response = (size_t)x;
        else
            rc = (snprintf(why, whylen, "max_response is a number of bytes"), -1);
    } else {
        int64_t *ms = !strcmp(k, "timeout")          ? &t->timeout_ms
                      : !strcmp(k, "retry_max_time") ? &t->retry_max_time_ms
                      : !strcmp(k, "backoff_base")   ? &t->backoff_base_ms
                      : !strcmp(k, "backoff_max")    ? &t->backoff_max_ms
                                                     : NULL;
        if (!ms)
            rc = (snprintf(why, whylen, "unknown option \"%.60s\"", k), -1);
        else if (!to_i64(v, 0, INT64_C(86400000), ms))
            rc = (snprintf(why, whylen, "%s is a number of milliseconds", k), -1);
    }
    free(v);
    return rc;
}

int weir_http_target_new(const char *url, void **ctx, char *err, size_t errlen)
{
    if (!ctx) return WEIR_EINVAL;
    *ctx = NULL;
    if (!url) url = "";
    bool tls;
    const char *rest;
    if (!strncasecmp(url, "http://", 7))
        tls = false, rest = url + 7;
    else if (!strncasecmp(url, "https://", 8))
        tls = true, rest = url + 8;
    else
        return bad(err, errlen, url, "it must start with http:// or https://");
    pthread_once(&lib_once, lib_init);
    if (lib_rc != CURLE_OK) {
        if (err && errlen) snprintf(err, errlen, "libcurl: %s", curl_easy_strerror(lib_rc));
        return WEIR_EDRIVER;
    }
    size_t hl = strcspn(rest, "/?#");
    if (memchr(rest, '@', hl))
        return bad(err, errlen, url, "credentials in the origin (send an Authorization header)");
    if (hl == 0) return bad(err, errlen, url, "no host");
    if (hl > 300) return bad(err, errlen, url, "host too long");
    for (size_t i = 0; i < hl; i++)
        if (isspace((unsigned char)rest[i]) || (unsigned char)rest[i] < 0x21)
            return bad(err, errlen, url, "a blank or control character in the host");
    http_target *t = calloc(1, sizeof *t);
    if (!t) return WEIR_ENOMEM;
    t->tls = tls;
    t->verify = true;
    t->http2 = true;
    t->multiplex = -1;
    t->cache_max = 64;
    t->timeout_ms = 30000;
    t->retries = 3;
    t->retry_max_time_ms = 10000;
    t->backoff_base_ms = 100;
    t->backoff_max_ms = 2000;
    t->max_response = 64u << 20;
    char host[320];
    for (size_t i = 0; i < hl; i++) host[i] = (char)tolower((unsigned char)rest[i]);
    host[hl] = '\0';
    /* the port, explicit */
    const char *colon = host[0] == '[' ? strstr(host, "]:") : strrchr(host, ':');
    if (colon && host[0] == '[') colon++;
    int64_t port = tls ? 443 : 80;
    if (colon) {
        if (!to_i64(colon + 1, 1, 65535, &port)) {
            target_free(t);
            return bad(err, errlen, url, "a bad port");
        }
        host[colon - host] = '\0';
    }
    snprintf(t->origin, sizeof t->origin, "%s://%s:%lld", tls ? "https" : "http", host,
             (long long)port);
    snprintf(t->connect_url, sizeof t->connect_url, "http://%s:%lld/", host, (long long)port);
    snprintf(t->describe, sizeof t->describe, "%s", t->origin);
    const char *q = strchr(rest + hl, '?');
    if (q) {
        const char *p = q + 1;
        while (*p && *p != '#') {
            const char *end = p + strcspn(p, "&#");
            const char *eq = memchr(p, '=', (size_t)(end - p));
            char key[64], why[160];
            if (!eq) {
                snprintf(why, sizeof why, "option \"%.*s\" has no value",
                         (int)((end - p) > 40 ? 40 : end - p), p);
                target_free(t);
                return bad(err, errlen, url, why);
            }
            snprintf(key, sizeof key, "%.*s", (int)(eq - p), p);
            char *v = weir__pct_decode(eq + 1, (size_t)(end - eq - 1));
            if (!v) {
                snprintf(why, sizeof why, "a bad %%-escape in option \"%s\"", key);
                target_free(t);
                return bad(err, errlen, url, why);
            }
            if (set_option(t, key, v, why, sizeof why)) {
                target_free(t);
                return bad(err, errlen, url, why);
            }
            p = *end == '&' ? end + 1 : end;
        }
    }
    if (t->multiplex < 0 || (t->multiplex == MUX_AUTO && t->h2c))
        t->multiplex = t->h2c ? MUX_ON : (tls && t->http2) ? MUX_AUTO : MUX_OFF;
    if (t->multiplex == MUX_AUTO && !t->http2) t->multiplex = MUX_OFF; /* never HTTP/2 */
    atomic_init(&t->mux_on, t->multiplex == MUX_ON);
    if (t->multiplex != MUX_OFF && !(t->mux = mux_new())) {
        target_free(t);
        return WEIR_ENOMEM;
    }
    if (!t->user_agent) {
        char ua[64];
        snprintf(ua, sizeof ua, "weir/%s", weir_version());
        if (!(t->user_agent = strdup(ua))) {
            target_free(t);
            return WEIR_ENOMEM;
        }
    }
    *ctx = t;
    return 0;
}

/* --- handles ------------------------------------------------------------------ */

static curl_socket_t open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
    http_conn *c = ud;
    if (purpose == CURLSOCKTYPE_IPCXN && c->prefd >= 0) {
        int fd = c->prefd;
        c->prefd = -1;
        c->handing = true;
        return fd;
    }
    c->handing = false;
    int fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    return fd < 0 ? CURL_SOCKET_BAD : fd;
}

static int sock_opt(void *ud, curl_socket_t fd, curlsocktype purpose)
{
    (void)fd;
    (void)purpose;
    http_conn *c = ud;
    if (c->handing) {
        c->handing = false;
        return CURL_SOCKOPT_ALREADY_CONNECTED;
    }
    return CURL_SOCKOPT_OK;
}

/* The pool's options on h (a new handle, or one just reset). */
static void base_options(http_conn *c)
{
    http_target *t = c->t;
    CURL *h = c->h;
    char url[530];
    snprintf(url, sizeof url, "%s/", t->origin);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 30L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 10L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)t->timeout_ms);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION,
                     t->h2c     ? (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE
                     : t->http2 ? (long)CURL_HTTP_VERSION_2TLS
                                : (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, t->verify ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, t->verify ? 2L : 0L);
    if (t->ca_file) curl_easy_setopt(h, CURLOPT_CAINFO, t->ca_file);
    if (t->ca_path) curl_easy_setopt(h, CURLOPT_CAPATH, t->ca_path);
    if (t->cert) curl_easy_setopt(h, CURLOPT_SSLCERT, t->cert);
    if (t->key) curl_easy_setopt(h, CURLOPT_SSLKEY, t->key);
    if (t->proxy) curl_easy_setopt(h, CURLOPT_PROXY, t->proxy);
    if (t->noproxy) curl_easy_setopt(h, CURLOPT_NOPROXY, t->noproxy);
    curl_easy_setopt(h, CURLOPT_USERAGENT, t->user_agent);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, t->tls ? "https" : "http");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, t->tls ? "https" : "http");
    if (c->mux) { /* the connections are the multi handle's */
        curl_easy_setopt(h, CURLOPT_PIPEWAIT, 1L);
        curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, mux_open_socket);
        curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, t->mux);
        curl_easy_setopt(h, CURLOPT_SOCKOPTFUNCTION, mux_sock_opt);
        curl_easy_setopt(h, CURLOPT_SOCKOPTDATA, t->mux);
        curl_easy_setopt(h, CURLOPT_CLOSESOCKETFUNCTION, mux_close_socket);
        curl_easy_setopt(h, CURLOPT_CLOSESOCKETDATA, t->mux);
    } else {
        curl_easy_setopt(h, CURLOPT_MAXCONNECTS, 1L);
        curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, open_socket);
        curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, c);
        curl_easy_setopt(h, CURLOPT_SOCKOPTFUNCTION, sock_opt);
        curl_easy_setopt(h, CURLOPT_SOCKOPTDATA, c);
    }
    curl_easy_setopt(h, CURLOPT_PRIVATE, c);
}

/* Open a TCP connection to the origin, by libcurl (its messages, its
 * resolver, happy eyeballs): a connect-only transfer of http:// to the same
 * host and port, whose socket is kept (*fd) for a handle to do TLS on at
 * its first request. 0, WEIR_ETIMEDOUT or WEIR_ECONNECT with curl's reason. */
static int probe(http_target *t, int64_t timeout_ms, int *fd, char *err, size_t errlen)
{
    *fd = -1;
    CURL *h = curl_easy_init();
    char ebuf[CURL_ERROR_SIZE] = "";
    CURLcode rc = CURLE_OUT_OF_MEMORY;
    if (h) {
        curl_easy_setopt(h, CURLOPT_URL, t->connect_url);
        curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, ebuf);
        rc = curl_easy_perform(h);
    }
    curl_socket_t s = CURL_SOCKET_BAD;
    if (rc == CURLE_OK) curl_easy_getinfo(h, CURLINFO_ACTIVESOCKET, &s);
    if (s != CURL_SOCKET_BAD) *fd = fcntl((int)s, F_DUPFD_CLOEXEC, 0);
    if (h) curl_easy_cleanup(h); /* closes its own copy */
    if (*fd >= 0) return 0;
    if (rc == CURLE_OK) rc = CURLE_COULDNT_CONNECT;
    snprintf(err, errlen, "%s", ebuf[0] ? ebuf : curl_easy_strerror(rc));
    return rc == CURLE_OPERATION_TIMEDOUT ? WEIR_ETIMEDOUT : WEIR_ECONNECT;
}

/* Keep fd for the multi handle's next connection (or close it: stash full). */
static void stash_push(http_mux *x, int fd)
{
    pthread_mutex_lock(&x->mu);
    if (x->nstash < STASH_MAX)
        x->stash[x->nstash++] = (stashed){fd, weir_now_ns()};
    else
        close(fd);
    pthread_mutex_unlock(&x->mu);
}

static int http_connect(void *ctx, int64_t deadline, void **out, char *err, size_t errlen)
{
    http_target *t = ctx;
    int64_t left = (deadline - weir_now_ns()) / 1000000;
    if (left < 1) left = 1;
    http_conn *c = calloc(1, sizeof *c);
    if (!c) return WEIR_ENOMEM;
    c->t = t;
    c->prefd = -1;
    c->connect_timeout_ms = left;
    if (!(c->h = curl_easy_init())) {
        free(c);
        snprintf(err, errlen, "out of memory");
        return WEIR_ENOMEM;
    }
    c->mux = atomic_load(&t->mux_on);
    base_options(c);
    if (c->mux) {
        int rc = mux_start(t->mux, t->cache_max, err, errlen);
        if (rc) {
            curl_easy_cleanup(c->h);
            free(c);
            return rc;
        }
    }
    /* Multiplexed, a slot needs no connection of its own: the origin is
     * known to be reachable while the multi handle holds a connection, or
     * a fresh socket waits in the stash. */
    bool probe_needed = !t->proxy;
    if (c->mux && probe_needed) {
        pthread_mutex_lock(&t->mux->probe_mu); /* concurrent connects: one probe */
        pthread_mutex_lock(&t->mux->mu);
        stash_expire(t->mux, false);
        probe_needed = atomic_load(&t->mux->sockets) == 0 && t->mux->nstash == 0;
        pthread_mutex_unlock(&t->mux->mu);
        if (!probe_needed) pthread_mutex_unlock(&t->mux->probe_mu);
    }
    if (probe_needed) {
        int fd, rc = probe(t, left, &fd, err, errlen);
        if (c->mux) {
            if (!rc) stash_push(t->mux, fd); /* for the multi handle's next connection */
            pthread_mutex_unlock(&t->mux->probe_mu);
        } else {
            c->prefd = fd; /* for the handle's first request */
        }
        if (rc) {
            curl_easy_cleanup(c->h);
            free(c);
            return rc;
        }
    }
    *out = c;
    return 0;
}

/* The connection's socket: the handle's, or the one not yet handed over. */
static int conn_fd(http_conn *c)
{
    if (c->prefd >= 0) return c->prefd;
    curl_socket_t s = CURL_SOCKET_BAD;
    if (curl_easy_getinfo(c->h, CURLINFO_ACTIVESOCKET, &s) != CURLE_OK) return -1;
    return s == CURL_SOCKET_BAD ? -1 : (int)s;
}

/* Idle and healthy: nothing to read, or (TLS) records the server may send
 * unasked, like session tickets; not closed, no error. */
static int http_validate(void *ctx, void *conn, int64_t deadline, char *err, size_t errlen)
{
    (void)deadline;
    http_target *t = ctx;
    http_conn *c = conn;
    if (c->mux) return 0; /* no connection of its own: curl checks its cache's before reuse */
    int fd = conn_fd(c);
    if (fd < 0) {
        if (t->proxy) return 0; /* opened by the next request */
        snprintf(err, errlen, "the connection to %s was closed", t->describe);
        return WEIR_EDRIVER;
    }
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 0) == 0) return 0;
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0 && t->tls && !(p.revents & (POLLERR | POLLHUP))) return 0;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    snprintf(err, errlen, "the connection to %s was closed by the server", t->describe);
    return WEIR_EDRIVER;
}

/* multiplex=auto: h's last transfer came over HTTP/2, so the origin offers
 * it; new handles share the multi handle from now on. True if this call
 * made the switch. */
static bool learn_http2(http_target *t, http_conn *c)
{
    if (t->multiplex != MUX_AUTO || c->mux || atomic_load(&t->mux_on)) return false;
    long v = 0;
    if (curl_easy_getinfo(c->h, CURLINFO_HTTP_VERSION, &v) != CURLE_OK ||
        v != CURL_HTTP_VERSION_2_0)
        return false;
    bool off = false;
    return atomic_compare_exchange_strong(&t->mux_on, &off, true);
}

/* A transfer on c's handle, multiplexed or not; pool: where c came from. */
static CURLcode conn_perform(weir_pool *pool, http_conn *c)
{
    CURLcode cc = c->mux ? mux_perform(c->t->mux, c->h) : curl_easy_perform(c->h);
    if (cc == CURLE_OK && learn_http2(c->t, c))
        weir_pool_evict_all(pool); /* the handles with connections of their own give way */
    return cc;
}

static bool http_is_dirty(void *ctx, void *conn)
{
    http_target *t = ctx;
    http_conn *c = conn;
    if (c->raw && learn_http2(t, c)) /* the caller's own curl_easy_perform() */
        weir_pool_evict_all(c->pool);
    /* raw: the caller may have set anything on it; a handle of the other
     * kind than new ones get (the origin turned out to speak HTTP/2) */
    return c->raw || c->mux != atomic_load(&t->mux_on);
}

static int http_reset(void *ctx, void *conn, char *err, size_t errlen)
{
    http_target *t = ctx;
    http_conn *c = conn;
    if (c->mux != atomic_load(&t->mux_on)) {
        snprintf(err, errlen,
                 "%s speaks HTTP/2: the pool's handles share multiplexed connections now",
                 t->describe);
        return WEIR_EDRIVER;
    }
    curl_easy_reset(c->h); /* options back to libcurl's; the connection stays */
    base_options(c);
    c->raw = false;
    return 0;
}

static void http_close(void *ctx, void *conn)
{
    (void)ctx;
    http_conn *c = conn;
    if (c->prefd >= 0) close(c->prefd);
    curl_easy_cleanup(c->h);
    free(c);
}

static size_t http_describe(void *ctx, char *buf, size_t len)
{
    http_target *t = ctx;
    return (size_t)snprintf(buf, len, "%s", t->describe);
}

static const weir_driver http_driver = {
    .name = "http",
    .connect = http_connect,
    .validate = http_validate,
    .is_dirty = http_is_dirty,
    .reset = http_reset,
    .close = http_close,
    .describe = http_describe,
    .ctx_free = target_free,
};

const weir_driver *weir_http_driver(void)
{
    return &http_driver;
}

int weir_http_pool_create(weir_pool **out, const char *url, const weir_options *opts,
                          const weir_hooks *hooks, char *err, size_t errlen)
{
    if (out) *out = NULL;
    void *ctx;
    char tmp[256];
    int rc = weir_http_target_new(url, &ctx, err ? err : tmp, err ? errlen : sizeof tmp);
    if (rc) return rc;
    http_target *t = ctx;
    if (opts && opts->max_size > t->cache_max)
        t->cache_max = opts->max_size < 100000 ? (long)opts->max_size : 100000;
    return weir_pool_create(out, &http_driver, ctx, opts, hooks);
}

int weir_http_perform(const weir_conn *c)
{
    http_conn *hc = c ? weir_conn_handle(c) : NULL;
    if (!hc) return CURLE_BAD_FUNCTION_ARGUMENT;
    hc->raw = true;
    return conn_perform(weir_conn_pool(c), hc);
}

CURL *weir_http_handle(const weir_conn *c)
{
    http_conn *hc = c ? weir_conn_handle(c) : NULL;
    if (!hc) return NULL;
    hc->raw = true;
    hc->pool = weir_conn_pool(c);
    return hc->h;
}

/* --- requests ------------------------------------------------------------------ */

typedef struct sink {
    char *p;
    size_t len, cap, max;
    bool over;
} sink;

static bool sink_add(sink *s, const char *d, size_t n)
{
    if (s->len + n > s->max) {
        s->over = true;
        return false;
    }
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 1024;
        while (cap < s->len + n + 1) cap *= 2;
        char *p = realloc(s->p, cap);
        if (!p) return false;
        s->p = p;
        s->cap = cap;
    }
    memcpy(s->p + s->len, d, n);
    s->len += n;
    s->p[s->len] = '\0';
    return true;
}

static size_t on_body(char *d, size_t size, size_t n, void *ud)
{
    return sink_add(ud, d, size * n) ? size * n : 0;
}

static size_t on_header(char *d, size_t size, size_t n, void *ud)
{
    sink *s = ud;
    if (size * n >= 5 && !strncmp(d, "HTTP/", 5)) s->len = 0; /* a new response (after 1xx) */
    return sink_add(s, d, size * n) ? size * n : 0;
}

static bool idempotent(const char *m)
{
    static const char *const ok[] = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        if (!strcmp(m, ok[i])) return true;
    return false;
}

/* Retry-After of the header block, in ms from now; -1 if none or unreadable. */
static int64_t retry_after_ms(const char *hdrs)
{
    for (const char *p = hdrs; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncasecmp(p, "Retry-After:", 12)) continue;
        p += 12;
        while (*p == ' ' || *p == '\t') p++;
        char v[128];
        size_t n = strcspn(p, "\r\n");
        snprintf(v, sizeof v, "%.*s", (int)(n < sizeof v ? n : sizeof v - 1), p);
        int64_t secs;
        if (to_i64(v, 0, 86400 * 30, &secs)) return secs * 1000;
        time_t when = curl_getdate(v, NULL);
        if (when < 0) return -1;
        int64_t ms = ((int64_t)when - (int64_t)time(NULL)) * 1000;
        return ms < 0 ? 0 : ms;
    }
    return -1;
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

static bool retryable_curl(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
}

/* The error code for an attempt that got no answer: rc from the checkout,
 * cc from the transfer. */
static int failure_code(int rc, CURLcode cc)
{
    if (rc == WEIR_ECONNECT || cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST)
        return WEIR_ECONNECT;
    if (rc == WEIR_ETIMEDOUT || cc == CURLE_OPERATION_TIMEDOUT) return WEIR_ETIMEDOUT;
    return rc ? rc : WEIR_EDRIVER;
}

int weir_http_request(weir_pool *pool, const weir_http_req *rq, weir_http_resp *rs)
{
    if (!rs) return WEIR_EINVAL;
    memset(rs, 0, sizeof *rs);
    if (!pool || !rq || weir_pool_driver(pool) != &http_driver) {
        snprintf(rs->error, sizeof rs->error, "not a pool of the HTTP driver");
        return WEIR_EINVAL;
    }
    http_target *t = weir_pool_driver_ctx(pool);
    const char *method = rq->method && *rq->method ? rq->method : "GET";
    const char *path = rq->path && *rq->path ? rq->path : "/";
    if (path[0] != '/' || strpbrk(path, " \r\n")) {
        snprintf(rs->error, sizeof rs->error, "the path must start with / and hold no blanks");
        return WEIR_EINVAL;
    }
    char *url = malloc(strlen(t->origin) + strlen(path) + 1);
    if (!url) return WEIR_ENOMEM;
    sprintf(url, "%s%s", t->origin, path);
    struct curl_slist *hdrs = NULL;
    for (const char *const *h = rq->headers; h && *h; h++) {
        struct curl_slist *n = curl_slist_append(hdrs, *h);
        if (!n) {
            curl_slist_free_all(hdrs);
            free(url);
            return WEIR_ENOMEM;
        }
        hdrs = n;
    }
    bool may_retry = rq->retry_unsafe || idempotent(method);
    int64_t start = weir_now_ns(), budget = t->retry_max_time_ms * 1000000;
    uint64_t seed = (uint64_t)start ^ (uint64_t)(uintptr_t)rs;
    if (!seed) seed = 1;
    sink body = {.max = t->max_response}, head = {.max = 1 << 20};
    int result = 0;
    for (int attempt = 0;; attempt++) {
        weir_conn *wc;
        int rc = weir_checkout_timeout(
            pool, rq->acquire_timeout_ms > 0 ? rq->acquire_timeout_ms : -1, &wc);
        CURLcode cc = CURLE_OK;
        char ebuf[CURL_ERROR_SIZE] = "";
        long status = 0;
        if (rc) {
            if (rc == WEIR_ECONNECT || rc == WEIR_ETIMEDOUT)
                weir_pool_last_error(pool, ebuf, sizeof ebuf);
            if (!ebuf[0]) snprintf(ebuf, sizeof ebuf, "%s", weir_strerror(rc));
        } else {
            http_conn *c = weir_conn_handle(wc);
            CURL *h = c->h;
            body.len = head.len = 0;
            body.over = false;
            curl_easy_setopt(h, CURLOPT_URL, url);
            curl_easy_setopt(h, CURLOPT_ERRORBUFFER, ebuf);
            curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
            curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
            curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
            curl_easy_setopt(h, CURLOPT_HEADERDATA, &head);
            if (hdrs) curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
            if (rq->timeout_ms > 0) curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)rq->timeout_ms);
            if (!strcmp(method, "HEAD")) {
                curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
            } else if (rq->body || strcmp(method, "GET")) {
                curl_easy_setopt(h, CURLOPT_POSTFIELDS, rq->body ? rq->body : "");
                curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
            }
            if (strcmp(method, "GET") && strcmp(method, "HEAD") && strcmp(method, "POST"))
                curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
            cc = conn_perform(pool, c);
            /* what this request set, back to the pool's (cheaper than a
             * curl_easy_reset at checkin; the buffers were on this stack) */
            curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
            curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, NULL);
            curl_easy_setopt(h, CURLOPT_WRITEDATA, NULL);
            curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, NULL);
            curl_easy_setopt(h, CURLOPT_HEADERDATA, NULL);
            curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, NULL);
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)-1);
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL); /* the caller's body is theirs */
            curl_easy_setopt(h, CURLOPT_NOBODY, 0L);
            curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
            curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)t->timeout_ms);
            atomic_fetch_add(&t->requests, 1);
            if (attempt) atomic_fetch_add(&t->retries_done, 1);
            if (cc == CURLE_OK) {
                curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
                long cls = status / 100;
                atomic_fetch_add(&t->responses[cls >= 1 && cls <= 5 ? cls : 0], 1);
            } else {
                atomic_fetch_add(&t->failures, 1);
                if (!ebuf[0]) snprintf(ebuf, sizeof ebuf, "%s", curl_easy_strerror(cc));
                if (body.over)
                    snprintf(ebuf, sizeof ebuf,
                             "the response is larger than max_response (%zu bytes)",
                             t->max_response);
                weir_conn_mark_broken(wc); /* its connection's state is unknown */
            }
            weir_checkin(wc);
        }
        rs->attempts = attempt + 1;
        /* what to do now */
        bool again = false;
        int64_t wait = -1;
        if (rc == 0 && cc == CURLE_OK) {
            if (may_retry && (status == 502 || status == 503 || status == 504 || status == 429)) {
                again = true;
                wait = retry_after_ms(head.p);
            }
            if (!again) {
                rs->status = status;
                break;
            }
        } else if (rc == WEIR_ECONNECT || (rc == 0 && retryable_curl(cc))) {
            again = may_retry;
            if (!again) {
                snprintf(rs->error, sizeof rs->error, "%s", ebuf);
                result = failure_code(rc, cc);
                break;
            }
        } else {
            snprintf(rs->error, sizeof rs->error, "%s", ebuf);
            result = failure_code(rc, cc);
            break;
        }
        /* again: if count and time allow */
        int64_t backoff = t->backoff_base_ms << (attempt < 20 ? attempt : 20);
        if (backoff > t->backoff_max_ms) backoff = t->backoff_max_ms;
        backoff = backoff / 2 +
                  (backoff > 1 ? (int64_t)(rng_next(&seed) % (uint64_t)(backoff / 2 + 1)) : 0);
        if (wait >= 0) backoff = wait; /* the server said when */
        int64_t spent = weir_now_ns() - start;
        if (attempt >= t->retries || spent + backoff * 1000000 > budget) {
            if (rc == 0 && cc == CURLE_OK) { /* the last answer, as it is */
                rs->status = status;
            } else {
                snprintf(rs->error, sizeof rs->error, "%.200s (after %d attempts)", ebuf,
                         attempt + 1);
                result = failure_code(rc, cc);
            }
            break;
        }
        sleep_ms(backoff);
    }
    if (result == 0) {
        rs->headers = head.p ? head.p : strdup("");
        rs->headers_len = head.len;
        rs->body = body.p ? body.p : strdup("");
        rs->body_len = body.len;
        head.p = body.p = NULL;
        if (!rs->headers || !rs->body) {
            weir_http_resp_free(rs);
            result = WEIR_ENOMEM;
        }
    }
    free(head.p);
    free(body.p);
    curl_slist_free_all(hdrs);
    free(url);
    return result;
}

void weir_http_resp_free(weir_http_resp *rs)
{
    if (!rs) return;
    free(rs->headers);
    free(rs->body);
    rs->headers = rs->body = NULL;
    rs->headers_len = rs->body_len = 0;
}

int weir_http_stats_get(weir_pool *pool, weir_http_stats *st)
{
    if (!pool || !st || weir_pool_driver(pool) != &http_driver) return WEIR_EINVAL;
    http_target *t = weir_pool_driver_ctx(pool);
    st->requests_total = atomic_load(&t->requests);
    st->retries_total = atomic_load(&t->retries_done);
    for (int i = 0; i < 6; i++) st->responses_total[i] = atomic_load(&t->responses[i]);
    st->failures_total = atomic_load(&t->failures);
    st->multiplexed = atomic_load(&t->mux_on);
    st->sockets_open = t->mux ? atomic_load(&t->mux->sockets) : -1;
    st->sockets_opened_total = t->mux ? atomic_load(&t->mux->opened) : -1;
    return 0;
}

char *weir_http_prometheus(weir_pool *pool, size_t *len)
{
    weir_http_stats st;
    if (len) *len = 0;
    if (weir_http_stats_get(pool, &st)) return NULL;
    size_t n;
    char *page = weir_pool_prometheus(pool, &n);
    if (!page) return NULL;
    char label[600];
    size_t o = 0;
    for (const char *s = weir_pool_name(pool); *s && o + 3 < sizeof label; s++) {
        if (*s == '"' || *s == '\\') label[o++] = '\\';
        label[o++] = *s == '\n' ? ' ' : *s;
    }
    label[o] = '\0';
    size_t cap = n + 2048 + 8 * sizeof label;
    char *out = realloc(page, cap);
    if (!out) {
        free(page);
        return NULL;
    }
    static const char *const cls[] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
    int w = snprintf(out + n, cap - n,
                     "# HELP weir_http_requests_total HTTP attempts made (each retry counts).\n"
                     "# TYPE weir_http_requests_total counter\n"
                     "weir_http_requests_total{pool=\"%s\"} %lld\n"
                     "# HELP weir_http_retries_total HTTP attempts after the first.\n"
                     "# TYPE weir_http_retries_total counter\n"
                     "weir_http_retries_total{pool=\"%s\"} %lld\n"
                     "# HELP weir_http_failures_total HTTP attempts that got no response.\n"
                     "# TYPE weir_http_failures_total counter\n"
                     "weir_http_failures_total{pool=\"%s\"} %lld\n"
                     "# HELP weir_http_responses_total HTTP responses by status class.\n"
                     "# TYPE weir_http_responses_total counter\n",
                     label, (long long)st.requests_total, label, (long long)st.retries_total, label,
                     (long long)st.failures_total);
    n += (size_t)w;
    for (int i = 1; i <= 6; i++) {
        int k = i % 6;
        w = snprintf(out + n, cap - n, "weir_http_responses_total{pool=\"%s\",class=\"%s\"} %lld\n",
                     label, cls[k], (long long)st.responses_total[k]);
        n += (size_t)w;
    }
    if (st.multiplexed) {
        w = snprintf(out + n, cap - n,
                     "# HELP weir_http_sockets_open TCP connections the pool's handles share.\n"
                     "# TYPE weir_http_sockets_open gauge\n"
                     "weir_http_sockets_open{pool=\"%s\"} %lld\n",
                     label, (long long)st.sockets_open);
        n += (size_t)w;
    }
    if (len) *len = n;
    return out;
}

/* --- the registry's http:// and https:// schemes ------------------------------- */

/* scheme://host[:port][?query]: the host lower-cased, the port explicit, the
 * path dropped (a pool is per origin). */
static int http_normalize(const char *url, const char *rest, char *out, size_t len, char *err,
                          size_t errlen)
{
    (void)url;
    (void)err;
    (void)errlen;
    return weir__normalize_authority("http", "80", rest, false, out, len);
}

static int https_normalize(const char *url, const char *rest, char *out, size_t len, char *err,
                           size_t errlen)
{
    (void)url;
    (void)err;
    (void)errlen;
    return weir__normalize_authority("https", "443", rest, false, out, len);
}

static int http_make(const char *key, const weir_options *o, weir_pool **out, char *err,
                     size_t errlen)
{
    return weir_http_pool_create(out, key, o, NULL, err, errlen);
}

const weir__scheme weir__scheme_http = {"http", NULL, http_normalize, http_make};
const weir__scheme weir__scheme_https = {"https", NULL, https_normalize, http_make};
