/* backend.c — server connections: a libweir driver that speaks PostgreSQL's wire protocol.
 *
 * connect: TCP (or a Unix socket when host starts with '/'), StartupMessage,
 * then cleartext, md5 or SCRAM-SHA-256 authentication with the target's
 * password, then ParameterStatus/BackendKeyData up to ReadyForQuery. All of
 * it is bounded by the engine's deadline. validate runs check_query; reset
 * runs ROLLBACK if a transaction is open and reset_query if the session
 * asked for one. These run on the engine's threads or on the worker that
 * checks the connection in, on a socket nobody else is using.
 */
#include "pg/backend.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/auth.h"
#include "pg/proto.h"
#include "core/tls.h"
#include "core/io.h"

bool be_params_set(be_params *p, const char *name, const char *value)
{
    for (int i = 0; i < p->n; i++) {
        if (strcasecmp(p->name[i], name)) continue;
        if (!strcmp(p->value[i], value)) return false;
        snprintf(p->value[i], BE_VALUE, "%s", value);
        p->ver++;
        return true;
    }
    if (p->n == BE_MAX_PARAMS) return false;
    snprintf(p->name[p->n], BE_NAME, "%s", name);
    snprintf(p->value[p->n], BE_VALUE, "%s", value);
    p->n++;
    p->ver++;
    return true;
}

void be_params_drop(be_params *p, int i)
{
    if (i < 0 || i >= p->n) return;
    p->ver++;
    p->n--;
    if (i == p->n) return;
    memcpy(p->name[i], p->name[p->n], BE_NAME);
    memcpy(p->value[i], p->value[p->n], BE_VALUE);
}

int be_params_find(const be_params *p, const char *name)
{
    for (int i = 0; i < p->n; i++)
        if (!strcasecmp(p->name[i], name)) return i;
    return -1;
}

const char *be_params_get(const be_params *p, const char *name)
{
    int i = be_params_find(p, name);
    return i < 0 ? NULL : p->value[i];
}

int be_quote_literal(const char *s, char *out, size_t outlen)
{
    size_t o = 0;
    if (outlen < 3) return -1;
    out[o++] = '\'';
    for (; *s; s++) {
        if (o + 3 >= outlen) return -1;
        if (*s == '\'') out[o++] = '\'';
        out[o++] = *s;
    }
    out[o++] = '\'';
    out[o] = '\0';
    return 0;
}

int be_wait_fd(int fd, short events, int64_t deadline_ns)
{
    for (;;) {
        int64_t left = deadline_ns - weir_now_ns();
        if (left <= 0) return WEIR_ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = events};
        int64_t ms = (left + 999999) / 1000000;
        int r = poll(&p, 1, ms > 1000000000 ? 1000000000 : (int)ms);
        if (r > 0) return 0;
        if (r < 0 && errno != EINTR) return WEIR_EDRIVER;
    }
}

int be_write_all(int fd, SSL *tls, const uint8_t *p, size_t n, int64_t deadline_ns)
{
    while (n) {
        ssize_t w = io_send(fd, tls, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = be_wait_fd(fd, POLLOUT, deadline_ns);
            if (rc) return rc;
            continue;
        }
        return WEIR_EDRIVER;
    }
    return 0;
}

/* Read one whole message into b; m->body points into b until the next call. */
int be_read_msg(int fd, SSL *tls, pq_buf *b, int64_t deadline_ns, pq_msg *m)
{
    for (;;) {
        int t = pq_buf_take(b, 1u << 30, m);
        if (t == PQ_MSG) return 0;
        if (t == PQ_BAD) return WEIR_EDRIVER;
        uint32_t avail = pq_buf_len(b);
        if (avail >= 5) {
            if (pq_buf_reserve(b, pq_get32(b->p + b->start + 1) + 1 - avail)) return WEIR_ENOMEM;
        } else if (pq_buf_reserve(b, 4096)) {
            return WEIR_ENOMEM;
        }
        ssize_t r = io_recv(fd, tls, b->p + b->end, b->cap - b->end);
        if (r > 0) {
            b->end += (uint32_t)r;
            continue;
        }
        if (r == 0) return WEIR_EDRIVER;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (io_pending(tls)) continue;
            int rc = be_wait_fd(fd, POLLIN, deadline_ns);
            if (rc) return rc;
            continue;
        }
        return WEIR_EDRIVER;
    }
}

/* An ErrorResponse as "SEVERITY: message". */
static void error_text(const pq_msg *m, char *out, size_t outlen)
{
    const char *sev = pq_error_field(m, 'S'), *msg = pq_error_field(m, 'M');
    snprintf(out, outlen, "%s: %s", sev ? sev : "ERROR", msg ? msg : "");
}

int be_connect_start(const char *host, int port, bool keepalive, int *fdp, char *err, size_t errlen)
{
    *fdp = -1;
    if (port <= 0) port = 5432;
    int fd;
    if (host[0] == '/' || !host[0]) {
        const char *dir = host[0] ? host : "/tmp";
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int pl = snprintf(sa.sun_path, sizeof sa.sun_path, "%s/.s.PGSQL.%d", dir, port);
        if (pl < 0 || (size_t)pl >= sizeof sa.sun_path) {
            snprintf(err, errlen, "socket directory too long: %s", dir);
            return WEIR_ECONNECT;
        }
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) goto fail;
        *fdp = fd;
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) return 0;
        if (errno == EINPROGRESS || errno == EAGAIN) return 1;
        snprintf(err, errlen, "could not connect to %s: %s", sa.sun_path, strerror(errno));
        close(fd);
        *fdp = -1;
        return WEIR_ECONNECT;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int g = getaddrinfo(host, ps, &hints, &ai);
    if (g || !ai) {
        snprintf(err, errlen, "could not resolve host \"%s\": %s", host, gai_strerror(g));
        return WEIR_ECONNECT;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        freeaddrinfo(ai);
        goto fail;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (keepalive) setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    int r = connect(fd, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    *fdp = fd;
    if (r == 0) return 0;
    if (errno == EINPROGRESS) return 1;
    snprintf(err, errlen, "could not connect to %s:%d: %s", host, port, strerror(errno));
    close(fd);
    *fdp = -1;
    return WEIR_ECONNECT;
fail:
    snprintf(err, errlen, "socket: %s", strerror(errno));
    return WEIR_ECONNECT;
}

static int open_socket(const be_target *t, int64_t deadline_ns, char *err, size_t errlen)
{
    int fd;
    int rc = be_connect_start(t->host, t->port, t->tcp_keepalive, &fd, err, errlen);
    if (rc <= 0) return rc ? rc : fd;
    rc = be_wait_fd(fd, POLLOUT, deadline_ns);
    if (rc) {
        close(fd);
        snprintf(err, errlen, "connect to %s:%d timed out", t->host[0] ? t->host : "/tmp", t->port);
        return rc;
    }
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    if (soerr == 0) return fd;
    close(fd);
    snprintf(err, errlen, "could not connect to %s:%d: %s", t->host[0] ? t->host : "/tmp", t->port,
             strerror(soerr));
    return WEIR_ECONNECT;
}

static int send_startup(int fd, SSL *tls, const be_target *t, int64_t deadline_ns)
{
    pq_buf b = {0};
    size_t n = 8 + 5 + strlen(t->user) + 1 + 9 + strlen(t->dbname) + 1 + t->startup_extra_len + 1;
    if (pq_buf_reserve(&b, (uint32_t)n)) return WEIR_ENOMEM;
    uint8_t *pkt = b.p;
    size_t o = 4;
    pq_set32(pkt + o, PQ_PROTO_V3);
    o += 4;
    const char *kv[] = {"user", t->user, "database", t->dbname};
    for (size_t i = 0; i < 4; i++) {
        size_t l = strlen(kv[i]) + 1;
        memcpy(pkt + o, kv[i], l);
        o += l;
    }
    if (t->startup_extra_len) {
        memcpy(pkt + o, t->startup_extra, t->startup_extra_len);
        o += t->startup_extra_len;
    }
    pkt[o++] = '\0';
    pq_set32(pkt, (uint32_t)o);
    int rc = be_write_all(fd, tls, pkt, o, deadline_ns);
    pq_buf_free(&b);
    return rc;
}

static int send_password(int fd, SSL *tls, const void *p, size_t n, int64_t deadline_ns)
{
    pq_buf b = {0};
    int rc = pq_put_msg(&b, 'p', p, (uint32_t)n) ? WEIR_ENOMEM
                                                 : be_write_all(fd, tls, b.p, b.end, deadline_ns);
    pq_buf_free(&b);
    return rc;
}

/* One authentication request from the server. */
static int handle_auth(int fd, SSL *tls, const be_target *t, const pq_msg *m, scram_client *sc,
                       int64_t deadline_ns, char *err, size_t errlen)
{
    if (m->len < 8) return WEIR_EDRIVER;
    uint32_t code = pq_get32(m->body);
    const uint8_t *data = m->body + 4;
    size_t dlen = m->len - 8;
    const char *pw = t->password ? t->password : "";
    bool md5_only = auth_is_md5_hash(pw);
    switch (code) {
    case 0:
        return 0;
    case 3: /* cleartext */
        if (md5_only || !pw[0]) break;
        return send_password(fd, tls, pw, strlen(pw) + 1, deadline_ns);
    case 5: { /* md5 */
        if (!pw[0] || dlen < 4) break;
        char resp[36];
        auth_md5_response(t->user, pw, data, resp);
        return send_password(fd, tls, resp, 36, deadline_ns);
    }
    case 10: { /* SASL: mechanism list */
        bool ok = false;
        for (const uint8_t *p = data, *end = data + dlen; p < end && *p;) {
            const char *mech = pq_get_str(&p, end);
            if (mech && !strcmp(mech, "SCRAM-SHA-256")) ok = true;
            if (!mech) break;
        }
        if (!ok) {
            snprintf(err, errlen, "server offers no SASL mechanism weir supports");
            return WEIR_EREFUSED;
        }
        if ((!pw[0] || md5_only) && !t->have_keys) break;
        char first[160];
        int n = scram_client_first(sc, first, sizeof first);
        if (n < 0) return WEIR_EDRIVER;
        uint8_t body[200];
        memcpy(body, "SCRAM-SHA-256", 14);
        pq_set32(body + 14, (uint32_t)n);
        memcpy(body + 18, first, (size_t)n);
        return send_password(fd, tls, body, 18 + (size_t)n, deadline_ns);
    }
    case 11: { /* SASLContinue */
        char fin[300];
        const char *why;
        int n = pw[0] && !md5_only
                    ? scram_client_final(sc, pw, (const char *)data, dlen, fin, sizeof fin, &why)
                    : scram_client_final_keys(sc, t->client_key, t->server_key, (const char *)data,
                                              dlen, fin, sizeof fin, &why);
        if (n < 0) {
            snprintf(err, errlen, "%s", why);
            return WEIR_EREFUSED;
        }
        return send_password(fd, tls, fin, (size_t)n, deadline_ns);
    }
    case 12: /* SASLFinal */
        if (scram_client_verify(sc, (const char *)data, dlen)) {
            snprintf(err, errlen, "the server's SCRAM signature is wrong");
            return WEIR_EREFUSED;
        }
        return 0;
    default:
        snprintf(err, errlen, "server asks for an authentication method weir does not support (%u)",
                 code);
        return WEIR_EREFUSED;
    }
    if (md5_only) /* PgBouncer's words first */
        snprintf(err, errlen,
                 "wrong password type: the server asks for %s and user \"%s\" has only an "
                 "md5 hash (a plain password, or the client's own SCRAM login, is needed)",
                 code == 3 ? "a cleartext password" : "SCRAM", t->user);
    else if (t->scram_secret_only) /* PgBouncer's words first */
        snprintf(err, errlen,
                 "wrong password type: user \"%s\" has only a SCRAM secret, which logs in to the "
                 "server only for a client that itself logged in with SCRAM",
                 t->user);
    else
        snprintf(err, errlen, "server asks for a password and none is configured for user \"%s\"",
                 t->user);
    return WEIR_EREFUSED;
}

void be_track(backend *be, const pq_msg *m)
{
    if (m->type == 'S') {
        const uint8_t *p = m->body, *end = m->body + m->len - 4;
        const char *n = pq_get_str(&p, end), *v = n ? pq_get_str(&p, end) : NULL;
        if (v) be_params_set(&be->params, n, v);
    } else if (m->type == 'C') {
        const char *tag = (const char *)m->body;
        if (m->len > 4 && m->body[m->len - 5] == '\0' &&
            (!strcmp(tag, "DISCARD ALL") || !strcmp(tag, "DEALLOCATE ALL")))
            be->ps_gone = true;
    } else if (m->type == 'Z' && m->len == 5) {
        be->txn = (char)m->body[0];
    }
}

/* Send a simple query and read up to ReadyForQuery; an ErrorResponse makes it fail. */
static int run_query(backend *be, const char *sql, int64_t deadline_ns, char *err, size_t errlen)
{
    pq_buf b = {0};
    int rc = pq_put_msg(&b, 'Q', sql, (uint32_t)strlen(sql) + 1)
                 ? WEIR_ENOMEM
                 : be_write_all(be->fd, be->tls, b.p, b.end, deadline_ns);
    pq_buf_reset(&b);
    bool failed = false;
    while (rc == 0) {
        pq_msg m;
        rc = be_read_msg(be->fd, be->tls, &b, deadline_ns, &m);
        if (rc) break;
        be_track(be, &m);
        if (m.type == 'E') {
            failed = true;
            if (err) error_text(&m, err, errlen);
        } else if (m.type == 'Z') {
            break;
        }
    }
    if (rc && err && !failed) snprintf(err, errlen, "server connection lost during \"%.60s\"", sql);
    pq_buf_free(&b);
    return rc ? rc : failed ? WEIR_EDRIVER : 0;
}

static int be_login(be_target *orig, const be_target *t, int64_t deadline_ns, void **out, char *err,
                    size_t errlen);

/* Entry i (0-based) of a comma-separated host list, blanks trimmed, into
 * out; the number of entries. */
static int host_entry(const char *list, int i, char *out, size_t outlen)
{
    int n = 0;
    const char *p = list;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        const char *a = p, *z = p + len;
        while (a < z && (*a == ' ' || *a == '\t')) a++;
        while (z > a && (z[-1] == ' ' || z[-1] == '\t')) z--;
        if (n == i) snprintf(out, outlen, "%.*s", (int)(z - a), a);
        n++;
        if (!e) return n;
        p = e + 1;
    }
}

/* PgBouncer's reason for a failed connect, from what open_socket said. */
static const char *fail_reason(int rc, const char *err)
{
    if (!strncmp(err, "could not resolve host", 22)) return "server DNS lookup failed";
    if (rc == WEIR_ETIMEDOUT) return "connect timeout";
    if (!strncmp(err, "could not connect", 17)) return "connect failed";
    return NULL; /* the server refused the login: logged as such */
}

static int be_connect(void *ctx, int64_t deadline_ns, void **out, char *err, size_t errlen)
{
    be_target *orig = ctx, tc;
    pthread_mutex_lock(&orig->mu);
    memcpy(&tc, orig, sizeof tc); /* a reload may change the target meanwhile */
    tc.password = NULL;
    int prc = be_target_set_password(&tc, orig->password);
    char list[sizeof tc.host];
    memcpy(list, tc.host, sizeof list);
    int nhosts = host_entry(list, 0, tc.host, sizeof tc.host);
    unsigned first = orig->host_next;
    if (nhosts > 1 && orig->round_robin) orig->host_next++;
    /* disable, while no entry is known to work: one connect at a time, so
     * that the second starts where the first found a working entry (not at
     * the same bad one) */
    bool probe = nhosts > 1 && !orig->round_robin && !orig->host_ok;
    pthread_mutex_unlock(&orig->mu);
    if (prc) return prc;
    if (probe) {
        pthread_mutex_lock(&orig->probe_mu);
        pthread_mutex_lock(&orig->mu);
        first = orig->host_next;
        pthread_mutex_unlock(&orig->mu);
    }
    int rc = WEIR_ECONNECT;
    for (int k = 0; k < nhosts; k++) {
        host_entry(list, (int)((first + (unsigned)k) % (unsigned)nhosts), tc.host, sizeof tc.host);
        err[0] = 0;
        rc = be_login(orig, &tc, deadline_ns, out, err, errlen);
        if (rc == 0) break;
        const char *why = fail_reason(rc, err);
        static const char refused[] = "server login failed: ";
        if (!why && !strncmp(err, refused, sizeof refused - 1)) {
            /* PgBouncer's reason: the server's message, "login failed" for
             * a replication connection */
            const char *sp = strchr(err + sizeof refused - 1, ' ');
            why = tc.startup_extra ? "login failed" : sp && sp[1] ? sp + 1 : err;
        }
        if (tc.on_fail && why) tc.on_fail(tc.on_fail_ud, tc.host, tc.port, why);
        if (nhosts > 1 && !tc.round_robin) { /* disable: later connections start past it too */
            pthread_mutex_lock(&orig->mu);
            if (orig->host_next == first + (unsigned)k) orig->host_next++;
            pthread_mutex_unlock(&orig->mu);
        }
        if (weir_now_ns() >= deadline_ns) break;
    }
    if (nhosts > 1 && !tc.round_robin) {
        pthread_mutex_lock(&orig->mu);
        orig->host_ok = rc == 0;
        pthread_mutex_unlock(&orig->mu);
    }
    if (probe) pthread_mutex_unlock(&orig->probe_mu);
    (void)be_target_set_password(&tc, NULL);
    return rc;
}

int be_target_set_password(be_target *t, const char *pw)
{
    if (t->password) {
        explicit_bzero(t->password, strlen(t->password));
        free(t->password);
    }
    t->password = NULL;
    if (!pw || !*pw) return 0;
    return (t->password = strdup(pw)) ? 0 : WEIR_ENOMEM;
}

void be_target_free(void *p)
{
    be_target *t = p;
    if (!t) return;
    (void)be_target_set_password(t, NULL);
    free(t->startup_extra);
    free(t);
}

/* SSLRequest, then the TLS handshake if the server says 'S' (be->tls set).
 * sslmode prefer goes on in plain text after an 'N'; require and stronger
 * fail, as libpq does. 0, or an error with err set. */
static int tls_to_server(backend *be, const be_target *t, int64_t deadline_ns, char *err,
                         size_t errlen)
{
    static const uint8_t req[8] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};
    int rc = be_write_all(be->fd, NULL, req, sizeof req, deadline_ns);
    char answer = 0;
    while (rc == 0) {
        ssize_t n = io_recv(be->fd, NULL, &answer, 1);
        if (n == 1) break;
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            rc = be_wait_fd(be->fd, POLLIN, deadline_ns);
            continue;
        }
        rc = WEIR_ECONNECT;
    }
    if (rc) {
        snprintf(err, errlen,
                 rc == WEIR_ETIMEDOUT ? "server login timed out"
                                      : "server closed the connection at its SSLRequest");
        return rc;
    }
    if (answer == 'N') {
        if (t->sslmode < SSLMODE_REQUIRE) return 0;
        snprintf(err, errlen,
                 "server does not support SSL, but SSL was required "
                 "(server_tls_sslmode = %s)",
                 t->sslmode == SSLMODE_REQUIRE     ? "require"
                 : t->sslmode == SSLMODE_VERIFY_CA ? "verify-ca"
                                                   : "verify-full");
        return WEIR_EREFUSED; /* a setting to fix, not a spell to wait out */
    }
    if (answer != 'S') {
        snprintf(err, errlen, "unexpected answer to SSLRequest from the server");
        return WEIR_EREFUSED;
    }
    char why[300];
    be->tls = tls_connect_new(t->tls, be->fd, t->host, t->sslmode, why, sizeof why);
    for (int r = be->tls ? 0 : -1; r != 1;) {
        if (r < 0) {
            if (be->tls) tls_ref_count(t->tls, false);
            snprintf(err, errlen, "TLS to the server failed: %s", why);
            return WEIR_EREFUSED; /* a certificate that does not verify: fail fast */
        }
        r = tls_handshake(be->tls, why, sizeof why);
        if (r == 0 || r == 2) {
            int w = be_wait_fd(be->fd, r == 0 ? POLLIN : POLLOUT, deadline_ns);
            if (w) {
                tls_ref_count(t->tls, false);
                snprintf(err, errlen, "TLS to the server timed out");
                return w;
            }
        }
    }
    tls_ref_count(t->tls, true);
    return 0;
}

/* Open and log in a connection for orig, from t (a private copy of it). */
static int be_login(be_target *orig, const be_target *t, int64_t deadline_ns, void **out, char *err,
                    size_t errlen)
{
    int fd = open_socket(t, deadline_ns, err, errlen);
    if (fd < 0) return fd;
    backend *be = calloc(1, sizeof *be);
    if (!be) {
        close(fd);
        return WEIR_ENOMEM;
    }
    be->fd = fd;
    be->id = io_new_id();
    be->txn = 'I';
    be->target = orig;
    snprintf(be->host, sizeof be->host, "%s", t->host);
    be->port = t->port;
    pq_buf b = {0};
    scram_client sc;
    /* TLS over TCP only, as libpq: a Unix socket does not cross a network. */
    bool tcp = t->host[0] && t->host[0] != '/';
    int rc =
        tcp && t->sslmode >= SSLMODE_PREFER ? tls_to_server(be, t, deadline_ns, err, errlen) : 0;
    if (rc == 0) rc = send_startup(fd, be->tls, t, deadline_ns);
    while (rc == 0) {
        pq_msg m;
        rc = be_read_msg(fd, be->tls, &b, deadline_ns, &m);
        if (rc && err[0] && !b.end) break; /* the TLS step said why */
        if (rc) {
            snprintf(err, errlen,
                     rc == WEIR_ETIMEDOUT ? "server login timed out"
                                          : "server closed the connection during login");
            break;
        }
        if (m.type == 'R') {
            rc = handle_auth(fd, be->tls, t, &m, &sc, deadline_ns, err, errlen);
        } else if (m.type == 'E') {
            /* PgBouncer's words: "server login failed: FATAL <message>" */
            const char *sev = pq_error_field(&m, 'S'), *msg = pq_error_field(&m, 'M');
            const char *code = pq_error_field(&m, 'C');
            snprintf(err, errlen, "server login failed: %s %s", sev ? sev : "ERROR",
                     msg ? msg : "");
            /* it answered, and said no; but "the database system is starting
             * up" (or shutting down, or not yet accepting connections:
             * 57P03) says not now, not no: as PgBouncer, the clients waiting
             * are not told, they wait for the next attempt */
            rc = code && !strcmp(code, "57P03") ? WEIR_ECONNECT : WEIR_EREFUSED;
        } else if (m.type == 'S') {
            const uint8_t *p = m.body, *end = m.body + m.len - 4;
            const char *n = pq_get_str(&p, end), *v = n ? pq_get_str(&p, end) : NULL;
            if (v) be_params_set(&be->params, n, v);
        } else if (m.type == 'K' && m.len == 12) {
            be->pid = pq_get32(m.body);
            be->key = pq_get32(m.body + 4);
        } else if (m.type == 'Z') {
            break;
        }
    }
    pq_buf_free(&b);
    if (rc == 0 && t->connect_query[0]) {
        char e[400];
        rc = run_query(be, t->connect_query, deadline_ns, e, sizeof e);
        if (rc) {
            snprintf(err, errlen, "connect_query failed: %s", e);
            rc = WEIR_EREFUSED;
        }
    }
    if (rc) {
        tls_close(be->tls);
        close(fd);
        free(be);
        /* refused (the server said no): clients waiting hear it at once;
         * unreachable, timed out, or not yet accepting connections (57P03):
         * they wait for the next attempt */
        return rc == WEIR_ETIMEDOUT || rc == WEIR_ENOMEM || rc == WEIR_EREFUSED ? rc
                                                                                : WEIR_ECONNECT;
    }
    *out = be;
    return 0;
}

static int be_validate(void *ctx, void *conn, int64_t deadline_ns, char *err, size_t errlen)
{
    const be_target *t = ctx;
    backend *be = conn;
    if (!t->check) return 0;
    return run_query(be, t->check_query, deadline_ns, err, errlen);
}

static bool be_is_dirty(void *ctx, void *conn)
{
    (void)ctx;
    const backend *be = conn;
    return be->unclean || be->txn != 'I' || be->needs_reset;
}

static int be_reset(void *ctx, void *conn, char *err, size_t errlen)
{
    const be_target *t = ctx;
    backend *be = conn;
    if (be->unclean) return WEIR_EDRIVER;
    int64_t deadline = weir_now_ns() + t->io_timeout_ms * 1000000;
    if (be->txn != 'I') {
        int rc = run_query(be, "ROLLBACK", deadline, err, errlen);
        if (rc) return rc;
    }
    if (be->needs_reset && t->reset_query[0]) {
        if (be->xset) be->xset->n = 0; /* DISCARD ALL (or the reset query) undid weir's SETs */
        int rc = run_query(be, t->reset_query, deadline, err, errlen);
        if (rc) return rc;
    }
    be->needs_reset = false;
    return be->txn == 'I' ? 0 : WEIR_EDRIVER;
}

static void be_close(void *ctx, void *conn)
{
    (void)ctx;
    backend *be = conn;
    if (!be) return;
    /* Terminate politely; the socket is closed either way. */
    static const uint8_t term[5] = {'X', 0, 0, 0, 4};
    if (!be->unclean) (void)!io_send(be->fd, be->tls, term, sizeof term);
    tls_close(be->tls);
    close(be->fd);
    free(be->xset);
    free(be);
}

static size_t be_describe(void *ctx, char *buf, size_t len)
{
    const be_target *t = ctx;
    return (size_t)snprintf(buf, len, "%s", t->describe);
}

const weir_driver be_driver = {
    .name = "postgres-wire",
    .connect = be_connect,
    .validate = be_validate,
    .is_dirty = be_is_dirty,
    .reset = be_reset,
    .close = be_close,
    .describe = be_describe,
    .ctx_free = be_target_free,
};

int be_cancel(const char *host, int port, uint32_t pid, uint32_t key, int64_t timeout_ms)
{
    be_target t = {.port = port};
    snprintf(t.host, sizeof t.host, "%s", host);
    char err[256];
    int64_t deadline = weir_now_ns() + timeout_ms * 1000000;
    int fd = open_socket(&t, deadline, err, sizeof err);
    if (fd < 0) return fd;
    uint8_t pkt[16];
    pq_set32(pkt, 16);
    pq_set32(pkt + 4, PQ_CANCEL_CODE);
    pq_set32(pkt + 8, pid);
    pq_set32(pkt + 12, key);
    int rc = be_write_all(fd, NULL, pkt, sizeof pkt, deadline);
    /* The server closes the socket when done; wait for that, bounded. */
    if (rc == 0 && be_wait_fd(fd, POLLIN, deadline) == 0) {
        char c;
        (void)!io_recv(fd, NULL, &c, 1);
    }
    close(fd);
    return rc;
}
