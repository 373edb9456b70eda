/* test_http.c — the HTTP driver against local HTTP servers that this program
 * starts: http_server.py (Python's http.server, HTTP/1.1 keep-alive), plain
 * and with TLS from a throwaway CA; and h2_server.js (Node's http2 module),
 * HTTP/2 over TLS (ALPN, with HTTP/1.1 too) and cleartext HTTP/2 by prior
 * knowledge, for multiplexing. */
#include "helpers.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "weir/weir_http.h"
#include "weir/weir_registry.h"

#include "ports.h"

static int plain_port, tls_port;
static int h2_port, h2c_port; /* 0: Node.js is not installed */
enum { NSERVERS = 4 };
static pid_t servers[NSERVERS];
static char tmpdir[64];

/* Ports below the kernel's range for outgoing connections (ports.h). */
static int free_port(void)
{
    static int n;
    return test_port(n++ * 101);
}

static bool port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)port)};
    bool ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* Start a server (python3 or node, with script) on port; its pid, or 0 if it
 * did not come up (node missing). */
static pid_t spawn_with(const char *prog, const char *script, int port, const char *cert,
                        const char *key)
{
    char p[16];
    snprintf(p, sizeof p, "%d", port);
    pid_t pid = fork();
    if (pid == 0) {
        execlp(prog, prog, script, p, cert, key, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500 && !port_open(port); i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid) return 0;
        sleep_ms(10);
    }
    return pid;
}

static pid_t spawn(int port, const char *cert, const char *key)
{
    return spawn_with("python3", WEIR_TEST_DIR "/http_server.py", port, cert, key);
}

static pid_t spawn_h2(int port, const char *cert, const char *key)
{
    return spawn_with("node", WEIR_TEST_DIR "/h2_server.js", port, cert, key);
}

/* A port no other server of this program has. */
static int other_port(void)
{
    for (;;) {
        int p = free_port();
        if (p != plain_port && p != tls_port && p != h2_port && p != h2c_port) return p;
    }
}

static void stop_servers(void)
{
    for (int i = 0; i < NSERVERS; i++)
        if (servers[i] > 0) {
            kill(servers[i], SIGKILL);
            waitpid(servers[i], NULL, 0);
            servers[i] = 0;
        }
    if (tmpdir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
        if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmpdir);
        tmpdir[0] = '\0';
    }
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/weir-http-XXXXXX");
    if (!mkdtemp(tmpdir)) return -1;
    atexit(stop_servers);
    char cmd[512]; /* a certificate naming localhost only (127.0.0.1 is a wrong name) */
    snprintf(cmd, sizeof cmd, "sh %s/test_ca.sh %s DNS:localhost", WEIR_TEST_DIR, tmpdir);
    if (system(cmd)) return -1;
    plain_port = free_port();
    tls_port = other_port();
    char cert[128], key[128];
    snprintf(cert, sizeof cert, "%s/server.crt", tmpdir);
    snprintf(key, sizeof key, "%s/server.key", tmpdir);
    servers[0] = spawn(plain_port, NULL, NULL);
    servers[1] = spawn(tls_port, cert, key);
    h2_port = other_port();
    h2c_port = other_port();
    servers[2] = spawn_h2(h2_port, cert, key);
    servers[3] = spawn_h2(h2c_port, NULL, NULL);
    if (!servers[2] || !servers[3]) {
        fprintf(stderr, "test_http: node (Node.js) did not start h2_server.js: the HTTP/2 "
                        "multiplexing tests are skipped (apt-get install nodejs)\n");
        h2_port = h2c_port = 0;
    }
    return port_open(plain_port) && port_open(tls_port) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    stop_servers();
    return 0;
}

static weir_pool *pool(weir_options *o, const char *query)
{
    char url[256], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", plain_port, query);
    weir_pool *p;
    int rc = weir_http_pool_create(&p, url, o, NULL, err, sizeof err);
    if (rc) fail_msg("weir_http_pool_create: %s: %s", weir_err_name(rc), err);
    return p;
}

/* GET path: the status; the body into body (may be NULL). */
static int get(weir_pool *p, const char *path, weir_http_resp *rs)
{
    weir_http_req rq = {.path = path};
    return weir_http_request(p, &rq, rs);
}

static long connections(weir_pool *p)
{
    weir_http_resp rs;
    assert_int_equal(get(p, "/stats", &rs), 0);
    const char *n = strstr(rs.body, "\"connections\": ");
    long v = n ? atol(n + 15) : -1;
    weir_http_resp_free(&rs);
    return v;
}

static void requests_reuse_one_connection(void **state)
{
    (void)state;
    weir_options o;
    test_options(&o);
    o.max_size = 1;
    weir_pool *p = pool(&o, "");
    char name[WEIR_NAME_MAX];
    snprintf(name, sizeof name, "http://127.0.0.1:%d", plain_port);
    assert_string_equal(weir_pool_name(p), name);
    long before = connections(p); /* this pool's one connection, and any before */
    char peer[16] = "";
    for (int i = 0; i < 20; i++) {
        weir_http_resp rs;
        assert_int_equal(get(p, "/hello", &rs), 0);
        assert_int_equal(rs.status, 200);
        assert_string_equal(rs.body, "hello");
        assert_int_equal(rs.attempts, 1);
        const char *x = strstr(rs.headers, "X-Peer: ");
        assert_non_null(x);
        char now[16];
        snprintf(now, sizeof now, "%.*s", (int)strcspn(x + 8, "\r\n"), x + 8);
        if (i) assert_string_equal(now, peer); /* the same client port: one connection */
        snprintf(peer, sizeof peer, "%s", now);
        weir_http_resp_free(&rs);
    }
    assert_int_equal(connections(p), before); /* no new connection for 20 requests */
    assert_int_equal(pool_stats(p).created_total, 1);
    weir_pool_destroy(p);
}

static size_t collect(char *d, size_t size, size_t n, void *ud)
{
    strncat(ud, d, size * n < 60 ? size * n : 60);
    return size * n;
}

static void the_raw_handle_is_ready(void **state)
{
    (void)state;
    weir_options o;
    test_options(&o);
    o.max_size = 1;
    weir_pool *p = pool(&o, "");
    for (int i = 0; i < 2; i++) {
        weir_conn *c;
        assert_int_equal(weir_checkout(p, &c), 0);
        CURL *h = weir_http_handle(c);
        char url[128], got[128] = "";
        snprintf(url, sizeof url, "http://127.0.0.1:%d/echo", plain_port);
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "payload");
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, got);
        assert_int_equal(curl_easy_perform(h), CURLE_OK);
        assert_string_equal(got, "POST payload");
        weir_checkin(c); /* reset: the next user gets a GET handle again */
    }
    assert_int_equal(pool_stats(p).created_total, 1);
    weir_pool_destroy(p);
}

static void retries_503_with_backoff(void **state)
{
    (void)state;
    weir_options o;
    test_options(&o);
    weir_pool *p = pool(&o, "?backoff_base=50&backoff_max=200");
    weir_http_resp rs;
    int64_t t0 = weir_now_ns();
    assert_int_equal(get(p, "/flaky?key=r503&fail=2", &rs), 0);
    int64_t took = ms_since(t0);
    assert_int_equal(rs.status, 200);
    assert_int_equal(rs.attempts, 3);
    assert_string_equal(rs.body, "ok after 3");
    weir_http_resp_free(&rs);
    /* backoff: at least half of 50 then half of 100 ms */
    if (took < 75) fail_msg("two retries took %lld ms: no backoff", (long long)took);
    weir_http_stats st;
    assert_int_equal(weir_http_stats_get(p, &st), 0);
    assert_int_equal(st.requests_total, 3);
    assert_int_equal(st.retries_total, 2);
    assert_int_equal(st.responses_total[5], 2);
    assert_int_equal(st.responses_total[2], 1);
    size_t len;
    char *prom = weir_http_prometheus(p, &len);
    assert_non_null(prom);
    char want[160];
    snprintf(want, sizeof want, "weir_http_retries_total{pool=\"http://127.0.0.1:%d\"} 2",
             plain_port);
    if (!strstr(prom, want)) fail_msg("no %s in:\n%s", want, prom);
    assert_non_null(strstr(prom, "class=\"5xx\"} 2"));
    assert_non_null(strstr(prom, "weir_pool_acquire_seconds_count{")); /* the engine's too */
    free(prom);
    /* a server that keeps failing: the last answer, as it is, after the retries */
    weir_pool *q = pool(&o, "?retries=2&backoff_base=10");
    assert_int_equal(get(q, "/flaky?key=r503b&fail=99", &rs), 0);
    assert_int_equal(rs.status, 503);
    assert_int_equal(rs.attempts, 3);
    assert_string_equal(rs.body, "not now");
    weir_http_resp_free(&rs);
    weir_pool_destroy(q);
    weir_pool_destroy(p);
}

static void retry_after_is_honoured(void **state)
{
    (void)state;
    weir_options o;
    test_options(&o);
    weir_pool *p = pool(&o, "?backoff_base=10");
    weir_http_resp rs;
    int64_t t0 = weir_now_ns();
    assert_int_equal(get(p, "/flaky?key=ra&fail=1&status=429&retry_after=1", &rs), 0);
    int64_t took = ms_since(t0);
    assert_int_equal(rs.status, 200);
    assert_int_equal(rs.attempts, 2);
    weir_http_resp_free(&rs);
    if (took < 990) fail_msg("Retry-After: 1 waited only %lld ms", (long long)took);
    /* a Retry-After beyond retry_max_time: not waited, the 429 comes back */
    weir_pool *q = pool(&o, "?retry_max_time=500");
    t0 = weir_now_ns();
    assert_int_equal(get(q, "/flaky?key=rb&fail=1&status=429&retry_after=30", &rs), 0);
    assert_int_equal(rs.status, 429);
    assert_int_equal(rs.attempts, 1);
    assert_true(ms_since(t0) < 500);
    weir_http_resp_free(&rs);
    weir_pool_destroy(q);
    weir_pool_destroy(p);
}

static void post_is_not_retried_unless_asked(void **state)
{
    (void)state;
    weir_options o;
    test_options(&o);
    weir_pool *p = pool(&o, "?backoff_base=10");
    weir_http_resp rs;
    weir_http_req rq = {
        .method = "POST", .path = "/flaky?key=post&fail=1", .body = "x", .body_len = 1};
    assert_int_equal(weir_http_request(p, &rq, &rs), 0);
    assert_int_equal(rs.status, 503);
    assert_int_equal(rs.attempts, 1);
    weir_http_resp_free(&rs);
    rq.path = "/flaky?key=post2&fail=1";
    rq.retry_unsafe = true;
    assert_int_equal(weir_http_request(p, &rq, &rs), 0);
    assert_int_equal(rs.status, 200);
    assert_int_equal(rs.attempts, 2);
    weir_http_resp_free(&rs);
    /* PUT is idempotent: retried */
    weir_http_req put = {
        .method = "PUT", .path = "/flaky?key=put&fail=1", .body = "y", .body_len = 1};
    assert_int_equal(weir_http_request(p, &put, &rs), 0);
    assert_int_equal(rs.status, 200);
    assert_int_equal(rs.attempts, 2);
    weir_http_resp_free(&rs);
    weir_pool_destroy(p);
}

static void a_dropped_connection_is_retried(void **state)
{
    (void)state;
    weir_options o;
    test_options(&o);
    weir_pool *p = pool(&o, "?backoff_base=10");
    weir_http_resp rs;
    assert_int_equal(get(p, "/drop?key=drop&fail=1", &rs), 0);
    assert_int_equal(rs.status, 200);
    assert_int_equal(rs.attempts, 2);
    assert_string_equal(rs.body, "ok after 2");
    weir_http_resp_free(&rs);
    weir_http_stats st;
    assert_int_equal(weir_http_stats_get(p, &st), 0);
    assert_int_equal(st.failures_total, 1);
    assert_int_equal(pool_stats(p).closed_total[WEIR_CLOSE_BROKEN], 1);
    weir_pool_destroy(p);
}

static void a_slow_server_hits_the_timeout(void **state)
{
    (void)state;
    weir_options o;
    test_options(&o);
    weir_pool *p = pool(&o, "?timeout=300&retries=0");
    weir_http_resp rs;
    int64_t t0 = weir_now_ns();
    assert_int_equal(get(p, "/slow?ms=2000", &rs), WEIR_ETIMEDOUT);
    int64_t took = ms_since(t0);
    if (took < 290 || took > 300 + slack_ms() + 200) fail_msg("took %lld ms", (long long)took);
    if (!strstr(rs.error, "Operation timed out after")) fail_msg("error: %s", rs.error);
    /* a request's own timeout wins over the pool's */
    weir_http_req rq = {.path = "/slow?ms=400", .timeout_ms = 2000};
    assert_int_equal(weir_http_request(p, &rq, &rs), 0);
    assert_int_equal(rs.status, 200);
    weir_http_resp_free(&rs);
    weir_pool_destroy(p);
}

static void an_unreachable_origin_fails_fast(void **state)
{
    (void)state;
    int dead = free_port(); /* nothing listens there */
    char url[128], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d?retries=0", dead);
    weir_options o;
    test_options(&o);
    o.acquire_timeout_ms = 5000;
    weir_pool *p;
    assert_int_equal(weir_http_pool_create(&p, url, &o, NULL, err, sizeof err), 0);
    weir_http_resp rs;
    int64_t t0 = weir_now_ns();
    assert_int_equal(get(p, "/hello", &rs), WEIR_ECONNECT);
    assert_true(ms_since(t0) < 1000); /* the refusal, not the acquire timeout */
    printf("unreachable: %s\n", rs.error);
    char want[96];
    snprintf(want, sizeof want, "Failed to connect to 127.0.0.1 port %d", dead);
    if (!strstr(rs.error, want)) fail_msg("error: %s", rs.error);
    weir_pool_last_error(p, err, sizeof err);
    if (!strstr(err, want)) fail_msg("last error: %s", err);
    /* while it is down, the next callers fail fast too (the engine's fail-fast) */
    t0 = weir_now_ns();
    assert_int_equal(get(p, "/hello", &rs), WEIR_ECONNECT);
    assert_true(ms_since(t0) < 1000);
    weir_pool_destroy(p);
}

static void tls_with_a_test_ca(void **state)
{
    (void)state;
    weir_options o;
    test_options(&o);
    char url[512], err[256];
    snprintf(url, sizeof url, "https://localhost:%d?ca_file=%s/ca.crt", tls_port, tmpdir);
    weir_pool *p;
    assert_int_equal(weir_http_pool_create(&p, url, &o, NULL, err, sizeof err), 0);
    for (int i = 0; i < 3; i++) {
        weir_http_resp rs;
        assert_int_equal(get(p, "/hello", &rs), 0);
        assert_int_equal(rs.status, 200);
        assert_string_equal(rs.body, "hello");
        weir_http_resp_free(&rs);
    }
    assert_int_equal(pool_stats(p).created_total, 1);
    weir_pool_destroy(p);
    /* verification is on by default: without the CA, refused with curl's reason */
    snprintf(url, sizeof url, "https://localhost:%d?retries=0", tls_port);
    assert_int_equal(weir_http_pool_create(&p, url, &o, NULL, err, sizeof err), 0);
    weir_http_resp rs;
    assert_int_equal(get(p, "/hello", &rs), WEIR_EDRIVER);
    printf("unknown CA: %s\n", rs.error);
    if (!strstr(rs.error, "SSL certificate problem")) fail_msg("error: %s", rs.error);
    weir_pool_destroy(p);
    /* a name the certificate does not carry (it names localhost only) */
    snprintf(url, sizeof url, "https://127.0.0.1:%d?retries=0&ca_file=%s/ca.crt", tls_port, tmpdir);
    assert_int_equal(weir_http_pool_create(&p, url, &o, NULL, err, sizeof err), 0);
    assert_int_equal(get(p, "/hello", &rs), WEIR_EDRIVER);
    printf("wrong name: %s\n", rs.error);
    if (!strstr(rs.error, "no alternative certificate subject name matches target host name "
                          "'127.0.0.1'"))
        fail_msg("error: %s", rs.error);
    weir_pool_destroy(p);
}

static void bad_origins_are_refused(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"ftp://x", "must start with http:// or https://"},
        {"http://user:pw@x", "credentials in the origin"},
        {"http://x:0", "a bad port"},
        {"http://x?retries=-1", "retries is 0-100"},
        {"http://x?colour=blue", "unknown option \"colour\""},
        {"http://x?timeout", "option \"timeout\" has no value"},
        {"http://", "no host"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        weir_pool *p;
        char err[256] = "";
        assert_int_equal(weir_http_pool_create(&p, cases[i][0], NULL, NULL, err, sizeof err),
                         WEIR_EINVAL);
        if (!strstr(err, cases[i][1])) fail_msg("%s: err: %s", cases[i][0], err);
        if (strstr(err, ":pw@")) fail_msg("password shown: %s", err);
    }
}

static void the_registry_pools_per_origin(void **state)
{
    (void)state;
    weir_options o;
    test_options(&o);
    weir_registry *reg;
    assert_int_equal(weir_registry_create(&reg, &o, 0), 0);
    char a[128], b[128], err[256];
    snprintf(a, sizeof a, "http://127.0.0.1:%d/v1/items", plain_port);
    snprintf(b, sizeof b, "HTTP://127.0.0.1:%d", plain_port);
    weir_pool *pa, *pb;
    assert_int_equal(weir_registry_acquire(reg, a, &pa, err, sizeof err), 0);
    assert_int_equal(weir_registry_acquire(reg, b, &pb, err, sizeof err), 0);
    assert_ptr_equal(pa, pb); /* one origin, one pool */
    weir_http_resp rs;
    assert_int_equal(get(pa, "/hello", &rs), 0);
    assert_int_equal(rs.status, 200);
    weir_http_resp_free(&rs);
    weir_registry_release(reg, pa);
    weir_registry_release(reg, pb);
    weir_registry_destroy(reg);
}

static void a_connection_the_server_closed_is_replaced(void **state)
{
    (void)state;
    weir_options o;
    test_options(&o);
    o.max_size = 1;
    o.validate_idle_after_ms = 0;
    weir_pool *p = pool(&o, "?retries=0");
    weir_http_resp rs;
    /* answered, then the server closes the idle connection 50 ms later (as
     * a server's keep-alive timeout does): validation on the next checkout
     * finds the socket closed, and a new connection serves */
    assert_int_equal(get(p, "/idle-close?ms=50", &rs), 0);
    assert_int_equal(rs.status, 200);
    weir_http_resp_free(&rs);
    sleep_ms(200);
    assert_int_equal(get(p, "/hello", &rs), 0);
    assert_int_equal(rs.status, 200);
    weir_http_resp_free(&rs);
    assert_int_equal(rs.attempts, 1);
    assert_int_equal(pool_stats(p).created_total, 2);
    assert_int_equal(pool_stats(p).closed_total[WEIR_CLOSE_BROKEN], 1);
    weir_pool_destroy(p);
}

/* --- HTTP/2 multiplexing (h2_server.js) ------------------------------------- */

static void need_node(void)
{
    if (!h2_port) skip();
}

static weir_pool *h2_pool(weir_options *o, bool tls, const char *query)
{
    char url[512], err[256];
    if (tls)
        snprintf(url, sizeof url, "https://localhost:%d?ca_file=%s/ca.crt%s", h2_port, tmpdir,
                 query);
    else
        snprintf(url, sizeof url, "http://127.0.0.1:%d?http_version=2-prior-knowledge%s", h2c_port,
                 query);
    weir_pool *p;
    int rc = weir_http_pool_create(&p, url, o, NULL, err, sizeof err);
    if (rc) fail_msg("weir_http_pool_create(%s): %s: %s", url, weir_err_name(rc), err);
    return p;
}

/* The TLS h2 server's count of TCP connections accepted, asked outside the
 * pool (less the connections these questions made). */
static long server_connections(void)
{
    static long asked;
    asked++;
    CURL *h = curl_easy_init();
    char url[512], got[128] = "";
    snprintf(url, sizeof url, "https://localhost:%d/stats", h2_port);
    curl_easy_setopt(h, CURLOPT_URL, url);
    snprintf(url, sizeof url, "%s/ca.crt", tmpdir);
    curl_easy_setopt(h, CURLOPT_CAINFO, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, got);
    assert_int_equal(curl_easy_perform(h), CURLE_OK);
    curl_easy_cleanup(h);
    const char *n = strstr(got, "\"connections\":");
    assert_non_null(n);
    return atol(n + 14) - asked;
}

typedef struct gate_run {
    weir_pool *pool;
    const char *path;
    bool raw; /* weir_http_handle + weir_http_perform instead of weir_http_request */
    int rc;
    long status;
    char body[128], proto[8], err[256];
} gate_run;

static void *gate_thread(void *arg)
{
    gate_run *g = arg;
    if (!g->raw) {
        weir_http_resp rs;
        weir_http_req rq = {.path = g->path};
        g->rc = weir_http_request(g->pool, &rq, &rs);
        g->status = rs.status;
        snprintf(g->err, sizeof g->err, "%s", rs.error);
        if (!g->rc) {
            snprintf(g->body, sizeof g->body, "%s", rs.body);
            const char *x = strstr(rs.headers, "x-proto: ");
            if (x) snprintf(g->proto, sizeof g->proto, "%.*s", (int)strcspn(x + 9, "\r\n"), x + 9);
        }
        weir_http_resp_free(&rs);
        return NULL;
    }
    weir_conn *c;
    if ((g->rc = weir_checkout(g->pool, &c))) return NULL;
    CURL *h = weir_http_handle(c);
    char url[512];
    snprintf(url, sizeof url, "%s%s", weir_pool_name(g->pool), g->path); /* named by origin */
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, g->body);
    g->rc = weir_http_perform(c);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &g->status);
    long v = 0;
    curl_easy_getinfo(h, CURLINFO_HTTP_VERSION, &v);
    snprintf(g->proto, sizeof g->proto, "%s", v == CURL_HTTP_VERSION_2_0 ? "2.0" : "1.1");
    weir_checkin(c);
    return NULL;
}

/* n requests at once to /gate?n=n, which answers only once all n are in
 * flight together; each must come back 200 with want as its body. */
static void gate(weir_pool *p, const char *key, int n, bool some_raw, const char *want,
                 const char *proto)
{
    char path[96];
    snprintf(path, sizeof path, "/gate?key=%s&n=%d", key, n);
    gate_run runs[16];
    pthread_t th[16];
    assert_true(n <= 16);
    for (int i = 0; i < n; i++) {
        runs[i] = (gate_run){.pool = p, .path = path, .raw = some_raw && i % 2};
        assert_int_equal(pthread_create(&th[i], NULL, gate_thread, &runs[i]), 0);
    }
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < n; i++) {
        if (runs[i].rc || runs[i].status != 200 || strcmp(runs[i].body, want) ||
            strcmp(runs[i].proto, proto))
            fail_msg("request %d%s: rc %d %s, status %ld, HTTP %s, \"%s\" (want \"%s\", HTTP %s)",
                     i, runs[i].raw ? " (raw handle)" : "", runs[i].rc, runs[i].err, runs[i].status,
                     runs[i].proto, runs[i].body, want, proto);
    }
}

static weir_http_stats http_stats(weir_pool *p)
{
    weir_http_stats st;
    assert_int_equal(weir_http_stats_get(p, &st), 0);
    return st;
}

static void http2_requests_share_one_connection(void **state)
{
    (void)state;
    need_node();
    weir_options o;
    test_options(&o);
    o.max_size = 8;
    weir_pool *p = h2_pool(&o, true, "");
    /* multiplex=auto (https://): one connection per handle until the origin
     * is seen to speak HTTP/2 */
    assert_false(http_stats(p).multiplexed);
    weir_http_resp rs;
    assert_int_equal(get(p, "/hello", &rs), 0);
    assert_int_equal(rs.status, 200);
    assert_non_null(strstr(rs.headers, "HTTP/2 200"));
    weir_http_resp_free(&rs);
    assert_true(http_stats(p).multiplexed);
    assert_int_equal(pool_stats(p).closed_total[WEIR_CLOSE_EVICTED], 1); /* it gave way */
    long before = server_connections();
    /* 8 requests in flight together, half of them on raw handles: one
     * connection carries all 8 streams */
    gate(p, "tls8", 8, true, "8 on 1 connection(s)", "2.0");
    gate(p, "tls8b", 8, false, "8 on 1 connection(s)", "2.0");
    assert_int_equal(server_connections(), before + 1);
    weir_http_stats st = http_stats(p);
    assert_int_equal(st.sockets_open, 1);
    assert_int_equal(st.sockets_opened_total, 1);
    assert_int_equal(pool_stats(p).created_total, 1 + 8); /* 8 slots on one connection */
    size_t len;
    char *prom = weir_http_prometheus(p, &len);
    assert_non_null(prom);
    if (!strstr(prom, "weir_http_sockets_open{pool=\"https://localhost:")) fail_msg("%s", prom);
    free(prom);
    weir_pool_destroy(p);
    /* learnt from a raw handle's own curl_easy_perform() too, at its checkin */
    p = h2_pool(&o, true, "");
    weir_conn *c;
    assert_int_equal(weir_checkout(p, &c), 0);
    CURL *h = weir_http_handle(c);
    char url[128], got[128] = "";
    snprintf(url, sizeof url, "https://localhost:%d/hello", h2_port);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, got);
    assert_int_equal(curl_easy_perform(h), CURLE_OK);
    assert_string_equal(got, "hello");
    assert_false(http_stats(p).multiplexed);
    weir_checkin(c);
    assert_true(http_stats(p).multiplexed);
    assert_int_equal(pool_stats(p).closed_total[WEIR_CLOSE_EVICTED], 1);
    gate(p, "raw4", 4, true, "4 on 1 connection(s)", "2.0");
    weir_pool_destroy(p);
}

static void http2_prior_knowledge_on_plain_http(void **state)
{
    (void)state;
    need_node();
    weir_options o;
    test_options(&o);
    o.max_size = 4;
    if (curl_version_info(CURLVERSION_NOW)->version_num < 0x080000) {
        /* libcurl 7.x cannot reuse a prior-knowledge connection: refused */
        char url[128], err[256];
        snprintf(url, sizeof url, "http://127.0.0.1:%d?http_version=2-prior-knowledge", h2c_port);
        weir_pool *p;
        assert_int_equal(weir_http_pool_create(&p, url, &o, NULL, err, sizeof err), WEIR_EINVAL);
        printf("libcurl 7: %s\n", err);
        if (!strstr(err, "needs libcurl 8.0 or later")) fail_msg("err: %s", err);
        return;
    }
    weir_pool *p = h2_pool(&o, false, "");
    assert_true(http_stats(p).multiplexed);
    weir_http_resp rs;
    assert_int_equal(get(p, "/hello", &rs), 0);
    weir_http_resp_free(&rs);
    gate(p, "h2c4", 4, false, "4 on 1 connection(s)", "2.0");
    assert_int_equal(http_stats(p).sockets_opened_total, 1);
    weir_pool_destroy(p);
}

static void http1_shares_the_pool_connections(void **state)
{
    (void)state;
    need_node();
    weir_options o;
    test_options(&o);
    o.max_size = 4;
    /* multiplexed over HTTP/1.1: a connection per request in flight, kept in
     * the shared cache and reused by any handle */
    weir_pool *p = h2_pool(&o, true, "&http_version=1.1&multiplex=1");
    gate(p, "h1x4", 4, false, "4 on 4 connection(s)", "1.1");
    weir_http_stats st = http_stats(p);
    assert_int_equal(st.sockets_open, 4);
    int64_t opened = st.sockets_opened_total;
    for (int i = 0; i < 20; i++) {
        weir_http_resp rs;
        assert_int_equal(get(p, "/hello", &rs), 0);
        assert_int_equal(rs.status, 200);
        assert_non_null(strstr(rs.headers, "HTTP/1.1 200"));
        weir_http_resp_free(&rs);
    }
    assert_int_equal(http_stats(p).sockets_opened_total, opened); /* reused */
    weir_pool_destroy(p);
    /* and without multiplex, the default for HTTP/1.1 */
    p = h2_pool(&o, true, "&http_version=1.1");
    assert_false(http_stats(p).multiplexed);
    assert_int_equal(http_stats(p).sockets_open, -1);
    weir_pool_destroy(p);
}

/* GET /hello until it is answered 200 (5 s at most): the origin is back. */
static void served_again(weir_pool *p, weir_http_resp *rs)
{
    int rc = -1;
    for (int i = 0; i < 100 && rc; i++) {
        rc = get(p, "/hello", rs);
        if (rc) sleep_ms(50);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(rs->status, 200);
}

static void a_multiplexed_origin_down_and_back(void **state)
{
    (void)state;
    need_node();
    int port = other_port();
    char url[512], err[256], cert[128], key[128];
    snprintf(url, sizeof url, "https://localhost:%d?ca_file=%s/ca.crt&retries=0", port, tmpdir);
    snprintf(cert, sizeof cert, "%s/server.crt", tmpdir);
    snprintf(key, sizeof key, "%s/server.key", tmpdir);
    weir_options o;
    test_options(&o);
    o.acquire_timeout_ms = 5000;
    weir_pool *p;
    assert_int_equal(weir_http_pool_create(&p, url, &o, NULL, err, sizeof err), 0);
    weir_http_resp rs;
    int64_t t0 = weir_now_ns();
    assert_int_equal(get(p, "/hello", &rs), WEIR_ECONNECT); /* nothing listens yet */
    assert_true(ms_since(t0) < 1000);
    char want[96];
    snprintf(want, sizeof want, "Failed to connect to localhost port %d", port);
    if (!strstr(rs.error, want)) fail_msg("error: %s", rs.error);
    pid_t srv = spawn_h2(port, cert, key);
    assert_true(srv > 0);
    /* up: served once the engine's backoff allows a new connect */
    served_again(p, &rs);
    weir_http_resp_free(&rs);
    /* the server dies: the request fails with curl's reason, not a hang */
    kill(srv, SIGKILL);
    waitpid(srv, NULL, 0);
    int rc = get(p, "/hello", &rs);
    printf("server gone: %s: %s\n", weir_err_name(rc), rs.error);
    assert_int_not_equal(rc, 0);
    /* and back on the same port: served again */
    srv = spawn_h2(port, cert, key);
    assert_true(srv > 0);
    served_again(p, &rs);
    assert_non_null(strstr(rs.headers, "HTTP/2 200"));
    weir_http_resp_free(&rs);
    assert_int_equal(http_stats(p).sockets_open, 1);
    kill(srv, SIGKILL);
    waitpid(srv, NULL, 0);
    weir_pool_destroy(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(requests_reuse_one_connection),
        cmocka_unit_test(the_raw_handle_is_ready),
        cmocka_unit_test(retries_503_with_backoff),
        cmocka_unit_test(retry_after_is_honoured),
        cmocka_unit_test(post_is_not_retried_unless_asked),
        cmocka_unit_test(a_dropped_connection_is_retried),
        cmocka_unit_test(a_slow_server_hits_the_timeout),
        cmocka_unit_test(an_unreachable_origin_fails_fast),
        cmocka_unit_test(tls_with_a_test_ca),
        cmocka_unit_test(bad_origins_are_refused),
        cmocka_unit_test(the_registry_pools_per_origin),
        cmocka_unit_test(a_connection_the_server_closed_is_replaced),
        cmocka_unit_test(http2_requests_share_one_connection),
        cmocka_unit_test(http2_prior_knowledge_on_plain_http),
        cmocka_unit_test(http1_shares_the_pool_connections),
        cmocka_unit_test(a_multiplexed_origin_down_and_back),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
