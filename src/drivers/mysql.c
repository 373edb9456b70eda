/* mysql.c — the MySQL / MariaDB driver (libmariadb): non-blocking connect,
 * validate, reset, close, and the registry's mysql:// scheme. */
#include "weir/weir_mysql.h"

#include "../lib/scheme.h"

#include <errno.h>
#include <errmsg.h>
#include <mysql.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

enum ssl_mode { SSL_DISABLED, SSL_PREFERRED, SSL_REQUIRED, SSL_VERIFY };

#define MAX_ATTRS 16

typedef struct my_target {
    char *host, *user, *password, *db, *unix_socket;
    unsigned port;
    enum ssl_mode ssl;
    char *ssl_ca, *ssl_capath, *ssl_cert, *ssl_key, *ssl_cipher, *tls_version;
    char *charset;
    char *attr_key[MAX_ATTRS], *attr_val[MAX_ATTRS];
    int nattrs;
    unsigned read_timeout, write_timeout;
    bool reset_always;
    char describe[256];
} my_target;

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static int lib_rc;

/* mysql_library_init is not thread-safe; mysql_init would call it lazily. */
static void lib_init(void)
{
    lib_rc = mysql_library_init(0, NULL, NULL);
}

static void target_free(void *ctx)
{
    my_target *t = ctx;
    if (!t) return;
    char **strs[] = {&t->host,        &t->user,       &t->password,    &t->db,
                     &t->unix_socket, &t->ssl_ca,     &t->ssl_capath,  &t->ssl_cert,
                     &t->ssl_key,     &t->ssl_cipher, &t->tls_version, &t->charset};
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++) free(*strs[i]);
    for (int i = 0; i < t->nattrs; i++) {
        free(t->attr_key[i]);
        free(t->attr_val[i]);
    }
    free(t);
}

static int fail(char *err, size_t errlen, const char *url, const char *fmt, const char *what)
{
    char masked[512];
    weir_mask_credentials(url, masked, sizeof masked);
    char why[256];
    snprintf(why, sizeof why, fmt, what);
    if (err && errlen) snprintf(err, errlen, "invalid MySQL URL \"%s\": %s", masked, why);
    return WEIR_EINVAL;
}

static bool parse_uint(const char *v, unsigned max, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long x = strtoul(v, &end, 10);
    if (!*v || *end || errno || x > max || v[0] == '-') return false;
    *out = (unsigned)x;
    return true;
}

/* One key=value of the query. 0, or -1 with the problem in why. */
static int set_option(my_target *t, const char *k, char *v, char *why, size_t whylen)
{
    char **slot = !strcmp(k, "unix_socket") || !strcmp(k, "socket") ? &t->unix_socket
                  : !strcmp(k, "ssl_ca")                            ? &t->ssl_ca
                  : !strcmp(k, "ssl_capath")                        ? &t->ssl_capath
                  : !strcmp(k, "ssl_cert")                          ? &t->ssl_cert
                  : !strcmp(k, "ssl_key")                           ? &t->ssl_key
                  : !strcmp(k, "ssl_cipher")                        ? &t->ssl_cipher
                  : !strcmp(k, "tls_version")                       ? &t->tls_version
                  : !strcmp(k, "charset")                           ? &t->charset
                                                                    : NULL;
    if (slot) {
        free(*slot);
        *slot = v;
        return 0;
    }
    int rc = 0;
    if (!strcmp(k, "ssl_mode") || !strcmp(k, "sslmode")) {
        if (!strcasecmp(v, "disabled") || !strcasecmp(v, "disable"))
            t->ssl = SSL_DISABLED;
        else if (!strcasecmp(v, "preferred") || !strcasecmp(v, "prefer"))
            t->ssl = SSL_PREFERRED;
        else if (!strcasecmp(v, "required") || !strcasecmp(v, "require"))
            t->ssl = SSL_REQUIRED;
        else if (!strcasecmp(v, "verify_ca") || !strcasecmp(v, "verify_identity") ||
                 !strcasecmp(v, "verify-ca") || !strcasecmp(v, "verify-full"))
            t->ssl = SSL_VERIFY;
        else {
            snprintf(why, whylen,
                     "ssl_mode \"%.40s\" is not disabled, preferred, required, verify_ca or "
                     "verify_identity",
                     v);
            rc = -1;
        }
    } else if (!strcmp(k, "read_timeout") || !strcmp(k, "write_timeout")) {
        if (!parse_uint(v, 86400,
                        !strcmp(k, "read_timeout") ? &t->read_timeout : &t->write_timeout)) {
            snprintf(why, whylen, "%s \"%.40s\" is not a number of seconds (0-86400)", k, v);
            rc = -1;
        }
    } else if (!strcmp(k, "reset")) {
        if (!strcmp(v, "always"))
            t->reset_always = true;
        else if (!strcmp(v, "transaction"))
            t->reset_always = false;
        else {
            snprintf(why, whylen, "reset \"%.40s\" is not always or transaction", v);
            rc = -1;
        }
    } else if (!strcmp(k, "connect_attrs")) {
        for (char *save = NULL, *kv = strtok_r(v, ",", &save); kv && !rc;
             kv = strtok_r(NULL, ",", &save)) {
            char *colon = strchr(kv, ':');
            if (!colon || colon == kv || t->nattrs == MAX_ATTRS) {
                snprintf(why, whylen, "connect_attrs wants key:value,... (at most %d)", MAX_ATTRS);
                rc = -1;
                break;
            }
            *colon = '\0';
            t->attr_key[t->nattrs] = strdup(kv);
            t->attr_val[t->nattrs] = strdup(colon + 1);
            if (!t->attr_key[t->nattrs] || !t->attr_val[t->nattrs]) {
                snprintf(why, whylen, "out of memory");
                rc = -1;
            }
            t->nattrs++;
        }
    } else {
        snprintf(why, whylen, "unknown option \"%.60s\"", k);
        rc = -1;
    }
    free(v);
    return rc;
}

int weir_mysql_target_new(const char *url, void **ctx, char *err, size_t errlen)
{
    if (!ctx) return WEIR_EINVAL;
    *ctx = NULL;
    if (!url) url = "";
    const char *rest = NULL;
    if (!strncasecmp(url, "mysql://", 8))
        rest = url + 8;
    else if (!strncasecmp(url, "mariadb://", 10))
        rest = url + 10;
    if (!rest) return fail(err, errlen, url, "%s", "it must start with mysql:// or mariadb://");
    pthread_once(&lib_once, lib_init);
    if (lib_rc) {
        if (err && errlen) snprintf(err, errlen, "libmariadb could not be initialised");
        return WEIR_EDRIVER;
    }
    my_target *t = calloc(1, sizeof *t);
    if (!t) return WEIR_ENOMEM;
    t->ssl = SSL_PREFERRED;
    t->reset_always = true;
    t->port = 3306;

    const char *auth_end = rest + strcspn(rest, "/?#");
    const char *at = NULL;
    for (const char *p = rest; p < auth_end; p++)
        if (*p == '@') at = p;
    const char *hostp = rest;
    if (at) {
        const char *colon = memchr(rest, ':', (size_t)(at - rest));
        const char *uend = colon ? colon : at;
        if (!(t->user = weir__pct_decode(rest, (size_t)(uend - rest))) ||
            (colon && !(t->password = weir__pct_decode(colon + 1, (size_t)(at - colon - 1))))) {
            target_free(t);
            return fail(err, errlen, url, "%s", "a bad %-escape in the user or password");
        }
        hostp = at + 1;
    }
    /* host[:port], host may be [v6] */
    const char *host_end = auth_end, *portp = NULL;
    if (*hostp == '[') {
        const char *close = memchr(hostp, ']', (size_t)(auth_end - hostp));
        if (!close) {
            target_free(t);
            return fail(err, errlen, url, "%s", "an IPv6 address without its closing ]");
        }
        if (!(t->host = weir__pct_decode(hostp + 1, (size_t)(close - hostp - 1)))) goto oom;
        if (close + 1 < auth_end && close[1] == ':') portp = close + 2;
    } else {
        const char *colon = memchr(hostp, ':', (size_t)(auth_end - hostp));
        if (colon) {
            portp = colon + 1;
            host_end = colon;
        }
        if (!(t->host = weir__pct_decode(hostp, (size_t)(host_end - hostp)))) goto oom;
    }
    if (portp) {
        char pb[16];
        size_t pl = (size_t)(auth_end - portp);
        if (pl == 0 || pl >= sizeof pb) {
            target_free(t);
            return fail(err, errlen, url, "%s", "a bad port");
        }
        memcpy(pb, portp, pl);
        pb[pl] = '\0';
        if (!parse_uint(pb, 65535, &t->port) || !t->port) {
            target_free(t);
            return fail(err, errlen, url, "%s", "a bad port");
        }
    }
    const char *p = auth_end;
    if (*p == '/') {
        const char *dend = p + 1 + strcspn(p + 1, "?#");
        if (!(t->db = weir__pct_decode(p + 1, (size_t)(dend - p - 1)))) {
            target_free(t);
            return fail(err, errlen, url, "%s", "a bad %-escape in the database name");
        }
        p = dend;
    }
    if (*p == '?') {
        p++;
        while (*p && *p != '#') {
            const char *end = p + strcspn(p, "&#");
            const char *eq = memchr(p, '=', (size_t)(end - p));
            if (!eq) {
                char k[64];
                snprintf(k, sizeof k, "%.*s", (int)(end - p), p);
                target_free(t);
                return fail(err, errlen, url, "option \"%s\" has no value", k);
            }
            char key[64];
            snprintf(key, sizeof key, "%.*s", (int)(eq - p), p);
            char *v = weir__pct_decode(eq + 1, (size_t)(end - eq - 1));
            if (!v) {
                target_free(t);
                return fail(err, errlen, url, "a bad %%-escape in option \"%s\"", key);
            }
            char why[160];
            if (set_option(t, key, v, why, sizeof why)) {
                target_free(t);
                return fail(err, errlen, url, "%s", why);
            }
            p = *end == '&' ? end + 1 : end;
        }
    }
    if (!t->charset && !(t->charset = strdup("utf8mb4"))) goto oom;
    bool have_prog = false;
    for (int i = 0; i < t->nattrs; i++) have_prog |= !strcmp(t->attr_key[i], "program_name");
    if (!have_prog && t->nattrs < MAX_ATTRS) {
        t->attr_key[t->nattrs] = strdup("program_name");
        t->attr_val[t->nattrs] = strdup("weir");
        t->nattrs++;
        if (!t->attr_key[t->nattrs - 1] || !t->attr_val[t->nattrs - 1]) goto oom;
    }
    if (t->unix_socket)
        snprintf(t->describe, sizeof t->describe, "mysql://%s@%s/%s", t->user ? t->user : "",
                 t->unix_socket, t->db ? t->db : "");
    else
        snprintf(t->describe, sizeof t->describe, "mysql://%s@%s%s%s:%u/%s", t->user ? t->user : "",
                 strchr(t->host, ':') ? "[" : "", t->host, strchr(t->host, ':') ? "]" : "", t->port,
                 t->db ? t->db : "");
    *ctx = t;
    return 0;
oom:
    target_free(t);
    return WEIR_ENOMEM;
}

/* The library's message, as the mysql client prints it, masked. */
static void set_err(char *err, size_t errlen, MYSQL *m)
{
    char raw[768];
    snprintf(raw, sizeof raw, "ERROR %u (%s): %s", mysql_errno(m), mysql_sqlstate(m),
             mysql_error(m));
    weir_mask_credentials(raw, err, errlen);
}

/* Wait for what a non-blocking call asked for (st: MYSQL_WAIT_* bits), up to
 * deadline. The bits that happened, or -1 when the deadline passed first. */
static int wait_for(MYSQL *m, int st, int64_t deadline)
{
    struct pollfd pfd = {.fd = (int)mysql_get_socket(m), .events = 0};
    if (st & MYSQL_WAIT_READ) pfd.events |= POLLIN;
    if (st & MYSQL_WAIT_WRITE) pfd.events |= POLLOUT;
    if (st & MYSQL_WAIT_EXCEPT) pfd.events |= POLLPRI;
    int64_t lib = INT64_MAX;
    if (st & MYSQL_WAIT_TIMEOUT)
        lib = weir_now_ns() + (int64_t)mysql_get_timeout_value_ms(m) * 1000000;
    for (;;) {
        int64_t now = weir_now_ns();
        if (now >= deadline) return -1;
        if (now >= lib) return MYSQL_WAIT_TIMEOUT;
        int64_t until = deadline < lib ? deadline : lib;
        int ms = (int)((until - now + 999999) / 1000000);
        int r = poll(&pfd, pfd.fd >= 0 && pfd.events ? 1 : 0, ms);
        if (r > 0) {
            int ev = 0;
            if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) ev |= MYSQL_WAIT_READ;
            if (pfd.revents & (POLLOUT | POLLHUP | POLLERR)) ev |= MYSQL_WAIT_WRITE;
            if (pfd.revents & POLLPRI) ev |= MYSQL_WAIT_EXCEPT;
            return ev & st ? ev & st : st & (MYSQL_WAIT_READ | MYSQL_WAIT_WRITE);
        }
        if (r < 0 && errno != EINTR) return st; /* let the library see the error */
    }
}

/* Run a non-blocking call to its end: start is the _start call's status,
 * CONT(ev) the _cont call. On timeout sets timed_out and stops. */
#define DRIVE(m, st, deadline, timed_out, CONT)                                                    \
    do {                                                                                           \
        while (st) {                                                                               \
            int ev_ = wait_for((m), (st), (deadline));                                             \
            if (ev_ < 0) {                                                                         \
                (timed_out) = true;                                                                \
                break;                                                                             \
            }                                                                                      \
            st = CONT(ev_);                                                                        \
        }                                                                                          \
    } while (0)

/* A dead server is noticed on an idle TCP connection, as the PostgreSQL
 * driver does. */
static void keepalive(MYSQL *m)
{
    int fd = (int)mysql_get_socket(m);
    struct sockaddr_storage sa;
    socklen_t sl = sizeof sa;
    if (fd < 0 || getsockname(fd, (struct sockaddr *)&sa, &sl) ||
        (sa.ss_family != AF_INET && sa.ss_family != AF_INET6))
        return;
    int on = 1, idle = 30, intvl = 10, cnt = 3;
    unsigned user_timeout = 30000;
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof user_timeout);
}

static int my_connect(void *ctx, int64_t deadline, void **out, char *err, size_t errlen)
{
    my_target *t = ctx;
    MYSQL *m = mysql_init(NULL);
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return WEIR_ENOMEM;
    }
    my_bool off = 0, on = 1;
    mysql_options(m, MYSQL_OPT_NONBLOCK, 0);
    mysql_options(m, MYSQL_OPT_RECONNECT, &off);
    mysql_options(m, MYSQL_SET_CHARSET_NAME, t->charset);
    /* libmariadb's own connect timeout only bounds the TCP connect; ours is
     * the deadline, enforced below. Give it a second more so ours fires. */
    int64_t left_ms = (deadline - weir_now_ns()) / 1000000;
    unsigned secs = left_ms > 0 ? (unsigned)(left_ms / 1000 + 2) : 1;
    mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &secs);
    if (t->read_timeout) mysql_options(m, MYSQL_OPT_READ_TIMEOUT, &t->read_timeout);
    if (t->write_timeout) mysql_options(m, MYSQL_OPT_WRITE_TIMEOUT, &t->write_timeout);
    if (t->unix_socket) {
        unsigned proto = MYSQL_PROTOCOL_SOCKET;
        mysql_options(m, MYSQL_OPT_PROTOCOL, &proto);
    }
    if (t->ssl != SSL_DISABLED) {
        mysql_ssl_set(m, t->ssl_key, t->ssl_cert, t->ssl_ca, t->ssl_capath, t->ssl_cipher);
        if (t->tls_version) mysql_options(m, MARIADB_OPT_TLS_VERSION, t->tls_version);
        /* In libmariadb 3.3 "enforce" asks for TLS (use_ssl) but still goes
         * plain with a server that has none: preferred. required is checked
         * after the handshake, below; verifying refuses such a server. */
        my_bool verify = t->ssl == SSL_VERIFY;
        mysql_options(m, MYSQL_OPT_SSL_ENFORCE, &on);
        mysql_options(m, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &verify);
    } else {
        mysql_options(m, MYSQL_OPT_SSL_ENFORCE, &off);
    }
    for (int i = 0; i < t->nattrs; i++)
        mysql_optionsv(m, MYSQL_OPT_CONNECT_ATTR_ADD, t->attr_key[i], t->attr_val[i]);

    MYSQL *ret = NULL;
    bool timed_out = false;
    int st = mysql_real_connect_start(&ret, m, t->unix_socket ? NULL : t->host, t->user,
                                      t->password, t->db, t->port, t->unix_socket, 0);
#define CONNECT_CONT(ev) mysql_real_connect_cont(&ret, m, ev)
    DRIVE(m, st, deadline, timed_out, CONNECT_CONT);
#undef CONNECT_CONT
    if (timed_out) {
        snprintf(err, errlen, "timeout expired connecting to %s", t->describe);
        mysql_close(m);
        return WEIR_ETIMEDOUT;
    }
    if (!ret) {
        set_err(err, errlen, m);
        mysql_close(m);
        return WEIR_ECONNECT;
    }
    /* libmariadb refuses a server without TLS only when it verifies the
     * certificate; for required, refuse here, before any statement. (Its
     * default authentication sends a scramble, never the password.) */
    if (t->ssl == SSL_REQUIRED && !mysql_get_ssl_cipher(m)) {
        snprintf(err, errlen,
                 "TLS required (ssl_mode=required) but %s did not start TLS: connection closed",
                 t->describe);
        mysql_close(m);
        return WEIR_ECONNECT;
    }
    keepalive(m);
    *out = m;
    return 0;
}

static int my_validate(void *ctx, void *conn, int64_t deadline, char *err, size_t errlen)
{
    my_target *t = ctx;
    MYSQL *m = conn;
    if (m->status != MYSQL_STATUS_READY) {
        snprintf(err, errlen, "connection not ready (a result not read to its end)");
        return WEIR_EDRIVER;
    }
    int rc = 0;
    bool timed_out = false;
    int st = mysql_ping_start(&rc, m);
#define PING_CONT(ev) mysql_ping_cont(&rc, m, ev)
    DRIVE(m, st, deadline, timed_out, PING_CONT);
#undef PING_CONT
    if (timed_out) {
        snprintf(err, errlen, "timeout validating a connection to %s", t->describe);
        return WEIR_ETIMEDOUT;
    }
    if (rc) {
        set_err(err, errlen, m);
        return WEIR_EDRIVER;
    }
    return 0;
}

static unsigned server_status(MYSQL *m)
{
    unsigned s = 0;
    if (mariadb_get_infov(m, MARIADB_CONNECTION_SERVER_STATUS, &s)) s = m->server_status;
    return s;
}

/* The connection itself is in doubt (not just the last statement). */
static bool broken(MYSQL *m)
{
    unsigned e = mysql_errno(m);
    return m->status != MYSQL_STATUS_READY || e == CR_SERVER_GONE_ERROR || e == CR_SERVER_LOST ||
           e == CR_COMMANDS_OUT_OF_SYNC || e == CR_UNKNOWN_ERROR;
}

static bool my_is_dirty(void *ctx, void *conn)
{
    my_target *t = ctx;
    MYSQL *m = conn;
    return t->reset_always || broken(m) ||
           (server_status(m) & (SERVER_STATUS_IN_TRANS | SERVER_MORE_RESULTS_EXIST));
}

#define RESET_DEADLINE_NS (5LL * 1000000000)

static int my_reset(void *ctx, void *conn, char *err, size_t errlen)
{
    my_target *t = ctx;
    MYSQL *m = conn;
    if (broken(m) || (server_status(m) & SERVER_MORE_RESULTS_EXIST)) {
        snprintf(err, errlen, "connection returned in an unknown state (%s)",
                 mysql_errno(m) ? mysql_error(m) : "results not read to their end");
        return WEIR_EDRIVER;
    }
    int64_t deadline = weir_now_ns() + RESET_DEADLINE_NS;
    bool timed_out = false;
    if (t->reset_always) {
        int rc = 0;
        int st = mysql_reset_connection_start(&rc, m);
#define RESET_CONT(ev) mysql_reset_connection_cont(&rc, m, ev)
        DRIVE(m, st, deadline, timed_out, RESET_CONT);
#undef RESET_CONT
        if (!timed_out && rc) {
            set_err(err, errlen, m);
            return WEIR_EDRIVER;
        }
    } else {
        my_bool rc = 0;
        int st = mysql_rollback_start(&rc, m);
#define ROLLBACK_CONT(ev) mysql_rollback_cont(&rc, m, ev)
        DRIVE(m, st, deadline, timed_out, ROLLBACK_CONT);
#undef ROLLBACK_CONT
        if (!timed_out && rc) {
            set_err(err, errlen, m);
            return WEIR_EDRIVER;
        }
    }
    if (timed_out) {
        snprintf(err, errlen, "timeout resetting a connection to %s", t->describe);
        return WEIR_ETIMEDOUT;
    }
    /* libmariadb keeps the status of the statement before a reset (the
     * server rolled back all the same); after a ROLLBACK it is current. */
    return !t->reset_always && (server_status(m) & SERVER_STATUS_IN_TRANS) ? WEIR_EDRIVER : 0;
}

static void my_close(void *ctx, void *conn)
{
    (void)ctx;
    mysql_close(conn);
}

static size_t my_describe(void *ctx, char *buf, size_t len)
{
    my_target *t = ctx;
    return (size_t)snprintf(buf, len, "%s", t->describe);
}

static const weir_driver my_driver = {
    .name = "mysql",
    .connect = my_connect,
    .validate = my_validate,
    .is_dirty = my_is_dirty,
    .reset = my_reset,
    .close = my_close,
    .describe = my_describe,
    .ctx_free = target_free,
};

const weir_driver *weir_mysql_driver(void)
{
    return &my_driver;
}

int weir_mysql_pool_create(weir_pool **out, const char *url, const weir_options *opts,
                           const weir_hooks *hooks, char *err, size_t errlen)
{
    if (out) *out = NULL;
    void *ctx;
    char tmp[256];
    int rc = weir_mysql_target_new(url, &ctx, err ? err : tmp, err ? errlen : sizeof tmp);
    if (rc) return rc;
    return weir_pool_create(out, &my_driver, ctx, opts, hooks);
}

MYSQL *weir_mysql_conn(const weir_conn *c)
{
    return c ? weir_conn_handle(c) : NULL;
}

/* --- the registry's mysql:// scheme --------------------------------------- */

/* mysql://[userinfo@]host[:port][/db][?query]: the host lower-cased, the
 * default port made explicit, "mariadb" spelt "mysql". */
static int my_normalize(const char *url, const char *rest, char *out, size_t len, char *err,
                        size_t errlen)
{
    (void)url;
    (void)err;
    (void)errlen;
    return weir__normalize_authority("mysql", "3306", rest, true, out, len);
}

static int my_make(const char *key, const weir_options *o, weir_pool **out, char *err,
                   size_t errlen)
{
    return weir_mysql_pool_create(out, key, o, NULL, err, errlen);
}

const weir__scheme weir__scheme_mysql = {"mysql", "mariadb", my_normalize, my_make};
