/* curl.c — weir's HTTP driver against libcurl used without a pool, side by
 * side in one run, against a local keep-alive HTTP/1.1 server in this
 * program (a thread per connection answering every request with 200 "ok").
 *
 *   curl [--quick] [--seconds S] [--reps N]
 *
 * At 1 and 8 threads, GET / per second and the latency's p50 and p99 for
 *   weir         weir_http_request() on a pool of as many connections as threads;
 *   weir_mux     the same with multiplex=1: the pool's handles share one multi
 *                handle and its connections, driven by the pool's thread (what
 *                an https:// pool does by default, for HTTP/2): the cost of
 *                that hand-off, over HTTP/1.1;
 *   per_request  a new easy handle per request (a new connection each time);
 *   share        a new easy handle per request, connections from one CURLSH
 *                (CURL_LOCK_DATA_CONNECT): libcurl's own shared connection cache;
 *   handle       one easy handle per thread, kept: the floor (no pool at all,
 *                each thread owns its connection).
 *
 * Then, where Node.js is installed, the same over HTTP/2 with TLS against
 * tests/integration/h2_server.js (Node's http2 module, one process: the
 * server is the bottleneck, and what is compared is what each client asks
 * of it), at 1 and 8 threads:
 *   weir         a pool that switched to multiplexing (all requests as
 *                streams over one connection);
 *   own          multiplex=0: each handle its own HTTP/2 connection;
 *   per_request  a new easy handle per request (a TCP and TLS handshake each).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "weir/weir.h"
#include "weir/weir_http.h"

#include "bench.h"

static int port;
static char url[64], origin[64];

/* --- the server ------------------------------------------------------------------ */

static void *serve_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char buf[8192];
    size_t have = 0;
    static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    for (;;) {
        ssize_t n = read(fd, buf + have, sizeof buf - have);
        if (n <= 0) break;
        have += (size_t)n;
        char *end;
        while ((end = memmem(buf, have, "\r\n\r\n", 4))) { /* GETs: no body */
            size_t used = (size_t)(end + 4 - buf);
            if (write(fd, answer, sizeof answer - 1) < 0) goto out;
            memmove(buf, buf + used, have - used);
            have -= used;
        }
        if (have == sizeof buf) break;
    }
out:
    close(fd);
    return NULL;
}

static void *serve(void *arg)
{
    int ls = (int)(intptr_t)arg;
    for (;;) {
        int fd = accept(ls, NULL, NULL);
        if (fd < 0) continue;
        pthread_t th;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&a, 64 * 1024);
        if (pthread_create(&th, &a, serve_conn, (void *)(intptr_t)fd)) close(fd);
        pthread_attr_destroy(&a);
    }
    return NULL;
}

static int start_server(void)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 4096) ||
        getsockname(ls, (struct sockaddr *)&a, &al))
        return -1;
    pthread_t th;
    if (pthread_create(&th, NULL, serve, (void *)(intptr_t)ls)) return -1;
    pthread_detach(th);
    return ntohs(a.sin_port);
}

/* --- the clients ----------------------------------------------------------------- */

enum kind { WEIR, WEIR_MUX, PER_REQUEST, SHARE, HANDLE, NKINDS, H2_WEIR = NKINDS, H2_OWN, H2_PER };
static const char *const names[] = {"weir", "weir_mux", "per_request", "share", "handle"};

#define MAX_LAT 200000

static char h2_origin[96], h2_url[128], h2_ca[96]; /* the HTTP/2 server's */

typedef struct ctx {
    enum kind kind;
    weir_pool *pool;
    CURLSH *share;
    _Atomic bool *stop;
    pthread_barrier_t *go;
    long n, failed;
    int64_t *lat; /* ns, the first MAX_LAT requests */
} ctx;

static size_t discard(char *d, size_t s, size_t n, void *u)
{
    (void)d;
    (void)u;
    return s * n;
}

static bool plain(CURL *h, bool h2)
{
    curl_easy_setopt(h, CURLOPT_URL, h2 ? h2_url : url);
    if (h2) curl_easy_setopt(h, CURLOPT_CAINFO, h2_ca);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    long code = 0;
    return curl_easy_perform(h) == CURLE_OK &&
           curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK && code == 200;
}

static void *work(void *arg)
{
    ctx *x = arg;
    long n = 0, failed = 0;
    CURL *mine = x->kind == HANDLE ? curl_easy_init() : NULL;
    pthread_barrier_wait(x->go);
    while (!atomic_load_explicit(x->stop, memory_order_relaxed)) {
        int64_t t0 = weir_now_ns();
        bool ok = false;
        switch (x->kind) {
        case WEIR:
        case WEIR_MUX:
        case H2_WEIR:
        case H2_OWN: {
            weir_http_req rq = {.path = x->kind >= H2_WEIR ? "/hello" : "/"};
            weir_http_resp rs;
            ok = weir_http_request(x->pool, &rq, &rs) == 0 && rs.status == 200;
            if (!ok && x->kind >= H2_WEIR && !x->failed)
                fprintf(stderr, "curl bench: %ld %s\n", rs.status, rs.error);
            weir_http_resp_free(&rs);
            break;
        }
        case PER_REQUEST:
        case SHARE:
        case H2_PER: {
            CURL *h = curl_easy_init();
            if (x->kind == SHARE) curl_easy_setopt(h, CURLOPT_SHARE, x->share);
            ok = h && plain(h, x->kind == H2_PER);
            curl_easy_cleanup(h);
            break;
        }
        default:
            ok = plain(mine, false);
        }
        if (!ok) {
            failed++;
            continue;
        }
        if (n < MAX_LAT) x->lat[n] = weir_now_ns() - t0;
        n++;
    }
    if (mine) curl_easy_cleanup(mine);
    x->n = n;
    x->failed = failed;
    return NULL;
}

static pthread_mutex_t share_mu[CURL_LOCK_DATA_LAST];

static void share_lock(CURL *h, curl_lock_data d, curl_lock_access a, void *u)
{
    (void)h;
    (void)a;
    (void)u;
    pthread_mutex_lock(&share_mu[d]);
}

static void share_unlock(CURL *h, curl_lock_data d, void *u)
{
    (void)h;
    (void)u;
    pthread_mutex_unlock(&share_mu[d]);
}

typedef struct result {
    double rps, p50_us, p99_us;
    long failed;
} result;

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static result run(enum kind kind, int threads, double secs)
{
    weir_pool *pool = NULL;
    CURLSH *share = NULL;
    if (kind == WEIR || kind == WEIR_MUX || kind == H2_WEIR || kind == H2_OWN) {
        weir_options o;
        weir_options_init(&o);
        o.max_size = threads;
        o.min_idle = threads;
        char err[256];
        char where[256];
        if (kind == H2_WEIR || kind == H2_OWN)
            snprintf(where, sizeof where, "%s?ca_file=%s%s", h2_origin, h2_ca,
                     kind == H2_OWN ? "&multiplex=0" : "");
        else
            snprintf(where, sizeof where, "%s%s", origin, kind == WEIR_MUX ? "?multiplex=1" : "");
        if (weir_http_pool_create(&pool, where, &o, NULL, err, sizeof err)) {
            fprintf(stderr, "curl bench: %s\n", err);
            exit(1);
        }
        if (kind == H2_WEIR) { /* the first answer, over HTTP/2, makes the switch */
            weir_http_req rq = {.path = "/hello"};
            weir_http_resp rs;
            if (weir_http_request(pool, &rq, &rs) != 0 || rs.status != 200) {
                fprintf(stderr, "curl bench: HTTP/2 server: %s\n", rs.error);
                exit(1);
            }
            weir_http_resp_free(&rs);
            weir_http_stats st;
            if (weir_http_stats_get(pool, &st) || !st.multiplexed) {
                fprintf(stderr, "curl bench: the pool did not switch to multiplexing\n");
                exit(1);
            }
        }
        bench_wait_warm(pool, threads);
    }
    if (kind == SHARE) {
        share = curl_share_init();
        curl_share_setopt(share, CURLSHOPT_LOCKFUNC, share_lock);
        curl_share_setopt(share, CURLSHOPT_UNLOCKFUNC, share_unlock);
        curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
        curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    }
    _Atomic bool stop = false;
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, (unsigned)threads + 1);
    ctx *x = calloc((size_t)threads, sizeof *x);
    pthread_t *th = calloc((size_t)threads, sizeof *th);
    for (int i = 0; i < threads; i++) {
        x[i] = (ctx){.kind = kind, .pool = pool, .share = share, .stop = &stop, .go = &go};
        x[i].lat = malloc(MAX_LAT * sizeof(int64_t));
        pthread_create(&th[i], NULL, work, &x[i]);
    }
    pthread_barrier_wait(&go);
    int64_t t0 = weir_now_ns();
    usleep((useconds_t)(secs * 1e6));
    atomic_store(&stop, true);
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    double el = (double)(weir_now_ns() - t0) / 1e9;
    result r = {0};
    long n = 0, kept = 0;
    for (int i = 0; i < threads; i++) {
        n += x[i].n;
        r.failed += x[i].failed;
        kept += x[i].n < MAX_LAT ? x[i].n : MAX_LAT;
    }
    int64_t *all = malloc((size_t)(kept ? kept : 1) * sizeof *all);
    long k = 0;
    for (int i = 0; i < threads; i++) {
        long m = x[i].n < MAX_LAT ? x[i].n : MAX_LAT;
        memcpy(all + k, x[i].lat, (size_t)m * sizeof *all);
        k += m;
        free(x[i].lat);
    }
    qsort(all, (size_t)k, sizeof *all, cmp64);
    r.rps = (double)n / el;
    r.p50_us = k ? (double)all[k / 2] / 1000 : 0;
    r.p99_us = k ? (double)all[k * 99 / 100] / 1000 : 0;
    free(all);
    free(x);
    free(th);
    pthread_barrier_destroy(&go);
    if (pool) weir_pool_destroy(pool);
    if (share) curl_share_cleanup(share);
    return r;
}

/* Node's HTTP/2 server with a throwaway CA; false (and why) if it cannot run. */
static pid_t h2_pid;
static char h2_dir[64];

static bool start_h2(void)
{
    snprintf(h2_dir, sizeof h2_dir, "/tmp/weir-bench-h2-XXXXXX");
    if (!mkdtemp(h2_dir)) return false;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "sh %s/tests/integration/test_ca.sh %s DNS:localhost >/dev/null 2>&1",
             WEIR_SOURCE_DIR, h2_dir);
    if (system(cmd)) {
        printf("curl bench: openssl could not make a test CA: the HTTP/2 figures are skipped\n");
        return false;
    }
    int ls = socket(AF_INET, SOCK_STREAM, 0); /* a free port: bind, then let it go */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (bind(ls, (struct sockaddr *)&a, sizeof a) || getsockname(ls, (struct sockaddr *)&a, &al))
        return false;
    int h2p = ntohs(a.sin_port);
    close(ls);
    char ports[16], cert[96], key[96], script[256];
    snprintf(ports, sizeof ports, "%d", h2p);
    snprintf(cert, sizeof cert, "%s/server.crt", h2_dir);
    snprintf(key, sizeof key, "%s/server.key", h2_dir);
    snprintf(script, sizeof script, "%s/tests/integration/h2_server.js", WEIR_SOURCE_DIR);
    h2_pid = fork();
    if (h2_pid == 0) {
        execlp("node", "node", script, ports, cert, key, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        if (waitpid(h2_pid, NULL, WNOHANG) == h2_pid) {
            printf("curl bench: node (Node.js) did not start: the HTTP/2 figures are skipped\n");
            h2_pid = 0;
            return false;
        }
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in b = a;
        bool up = connect(fd, (struct sockaddr *)&b, sizeof b) == 0;
        close(fd);
        if (up) {
            snprintf(h2_origin, sizeof h2_origin, "https://localhost:%d", h2p);
            snprintf(h2_url, sizeof h2_url, "https://localhost:%d/hello", h2p);
            snprintf(h2_ca, sizeof h2_ca, "%s/ca.crt", h2_dir);
            return true;
        }
        usleep(10000);
    }
    return false;
}

static void stop_h2(void)
{
    if (h2_pid > 0) {
        kill(h2_pid, SIGKILL);
        waitpid(h2_pid, NULL, 0);
    }
    if (h2_dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", h2_dir);
        if (system(cmd)) fprintf(stderr, "could not remove %s\n", h2_dir);
    }
}

int main(int argc, char **argv)
{
    double secs = 1;
    int reps = 3;
    if (!bench_args(argc, argv, "curl", 0.5, &secs, &reps)) return 2;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_init(&share_mu[i], NULL);
    if ((port = start_server()) <= 0) return 1;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
    snprintf(origin, sizeof origin, "http://127.0.0.1:%d", port);
    const int threads[] = {1, 8};
    for (int t = 0; t < 2; t++) {
        double rps[NKINDS][20], p50[NKINDS][20], p99[NKINDS][20];
        long failed = 0;
        for (int rep = 0; rep < reps; rep++)
            for (int k = 0; k < NKINDS; k++) {
                result r = run((enum kind)k, threads[t], secs);
                rps[k][rep] = r.rps;
                p50[k][rep] = r.p50_us;
                p99[k][rep] = r.p99_us;
                failed += r.failed;
            }
        printf("RESULT curl threads=%d", threads[t]);
        double m[NKINDS];
        for (int k = 0; k < NKINDS; k++) {
            m[k] = bench_median(rps[k], reps);
            printf(" %s_rps=%.0f %s_p50_us=%.0f %s_p99_us=%.0f", names[k], m[k], names[k],
                   bench_median(p50[k], reps), names[k], bench_median(p99[k], reps));
        }
        printf(" weir_vs_per_request=%.2f weir_vs_share=%.2f weir_vs_handle=%.2f "
               "mux_vs_weir=%.2f failed=%ld reps=%d\n",
               m[WEIR] / m[PER_REQUEST], m[WEIR] / m[SHARE], m[WEIR] / m[HANDLE],
               m[WEIR_MUX] / m[WEIR], failed, reps);
        fflush(stdout);
    }
    if (start_h2()) {
        for (int t = 0; t < 2; t++) {
            static const enum kind h2k[] = {H2_WEIR, H2_OWN, H2_PER};
            static const char *const h2n[] = {"weir", "own", "per_request"};
            double rps[3][20], p50[3][20], p99[3][20], m[3];
            long failed = 0;
            for (int rep = 0; rep < reps; rep++)
                for (int k = 0; k < 3; k++) {
                    result r = run(h2k[k], threads[t], secs);
                    rps[k][rep] = r.rps;
                    p50[k][rep] = r.p50_us;
                    p99[k][rep] = r.p99_us;
                    failed += r.failed;
                }
            printf("RESULT curl_h2 threads=%d", threads[t]);
            for (int k = 0; k < 3; k++) {
                m[k] = bench_median(rps[k], reps);
                printf(" %s_rps=%.0f %s_p50_us=%.0f %s_p99_us=%.0f", h2n[k], m[k], h2n[k],
                       bench_median(p50[k], reps), h2n[k], bench_median(p99[k], reps));
            }
            printf(" weir_vs_own=%.2f weir_vs_per_request=%.2f failed=%ld reps=%d\n", m[0] / m[1],
                   m[0] / m[2], failed, reps);
            fflush(stdout);
        }
    }
    stop_h2();
    return 0;
}
