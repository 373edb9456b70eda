/* config.c — pgbouncer.ini as it is: [databases], [users], [pgbouncer], %include, auth_file.
 *
 * One table of [pgbouncer] keys ({name, type, offset, default}) serves the
 * reader, SHOW CONFIG and SET. Keys PgBouncer knows and weir does not act on
 * are accepted with a warning saying so; unknown keys are a warning naming
 * file:line; a bad value is an error naming file:line and the key.
 */
#include "core/config.h"
#include "core/auth.h" /* SCRAM_MAX_ITER */
#include "core/hba.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <syslog.h>
#include <strings.h>

typedef enum { K_INT, K_BOOL, K_STR, K_NAME, K_TIME, K_MODE, K_AUTH, K_OCTAL } key_type;

typedef struct key {
    const char *name;
    key_type type;
    size_t off;
    const char *def;
} key;

#define K(n, t, d)                                                                                 \
    {                                                                                              \
#n, t, offsetof(cfg, n), d                                                                 \
    }
static const key keys[] = {
    K(listen_addr, K_STR, ""),
    K(listen_port, K_INT, "6432"),
    K(unix_socket_dir, K_STR, "/tmp"),
    K(unix_socket_mode, K_OCTAL, "0777"),
    K(logfile, K_STR, ""),
    K(pidfile, K_STR, ""),
    K(user, K_NAME, ""),
    K(pool_mode, K_MODE, "session"),
    K(auth_type, K_AUTH, "md5"),
    K(auth_file, K_STR, ""),
    K(auth_hba_file, K_STR, ""),
    K(auth_ident_file, K_STR, ""),
    K(auth_user, K_NAME, ""),
    K(auth_dbname, K_NAME, ""),
    K(scram_iterations, K_INT, "4096"),
    K(max_client_prepared_bytes, K_INT, "67108864"),
    K(auth_query, K_STR, "SELECT usename, passwd FROM pg_shadow WHERE usename=$1"),
    K(admin_users, K_STR, ""),
    K(stats_users, K_STR, ""),
    K(ignore_startup_parameters, K_STR, ""),
    /* PgBouncer's default is IntervalStyle alone; pgjdbc sends extra_float_digits
     * at every login, and search_path with currentSchema (docs/SERVER.md) */
    K(track_extra_parameters, K_STR, "IntervalStyle, extra_float_digits, search_path"),
    K(login_notify_message, K_STR, ""),
    K(server_fast_close, K_BOOL, "0"),
    K(max_client_conn, K_INT, "100"),
    K(default_pool_size, K_INT, "20"),
    K(min_pool_size, K_INT, "0"),
    K(warmup_batch, K_INT, "0"),
    K(warmup_pause, K_TIME, "0.1"),
    K(adaptive_pool, K_BOOL, "0"),
    K(adaptive_pool_wait, K_TIME, "0.005"),
    K(adaptive_pool_period, K_TIME, "1"),
    K(reserve_pool_size, K_INT, "0"),
    K(reserve_pool_timeout, K_TIME, "5"),
    K(max_db_connections, K_INT, "0"),
    K(max_user_connections, K_INT, "0"),
    K(server_reset_query, K_STR, "DISCARD ALL"),
    K(server_reset_query_always, K_BOOL, "0"),
    K(server_check_query, K_STR, "<empty>"),
    K(server_check_delay, K_TIME, "30"),
    K(server_lifetime, K_TIME, "3600"),
    K(server_idle_timeout, K_TIME, "600"),
    K(server_connect_timeout, K_TIME, "15"),
    K(server_login_retry, K_TIME, "15"),
    K(query_timeout, K_TIME, "0"),
    K(query_wait_timeout, K_TIME, "120"),
    K(query_wait_notify, K_TIME, "5"),
    K(client_idle_timeout, K_TIME, "0"),
    K(client_login_timeout, K_TIME, "60"),
    K(idle_transaction_timeout, K_TIME, "0"),
    K(cancel_wait_timeout, K_TIME, "10"),
    K(suspend_timeout, K_TIME, "10"),
    K(stats_period, K_TIME, "60"),
    K(max_packet_size, K_INT, "2147483647"),
    K(pkt_buf, K_INT, "4096"),
    K(listen_backlog, K_INT, "128"),
    K(log_connections, K_BOOL, "1"),
    K(log_disconnections, K_BOOL, "1"),
    K(log_pooler_errors, K_BOOL, "1"),
    K(log_stats, K_BOOL, "1"),
    K(syslog, K_BOOL, "0"),
    K(syslog_ident, K_NAME, "pgbouncer"),
    K(syslog_facility, K_NAME, "daemon"),
    K(verbose, K_INT, "0"),
    K(tcp_keepalive, K_BOOL, "1"),
    K(tcp_keepcnt, K_INT, "0"),
    K(tcp_keepidle, K_INT, "0"),
    K(tcp_keepintvl, K_INT, "0"),
    K(tcp_user_timeout, K_INT, "0"),
    K(so_reuseport, K_BOOL, "0"),
    K(application_name_add_host, K_BOOL, "0"),
    K(disable_pqexec, K_BOOL, "0"),
    K(workers, K_INT, "0"),
    K(worker_sched, K_NAME, "normal"),
    K(worker_pack, K_BOOL, "1"),
    K(max_prepared_statements, K_INT, "200"),
    K(client_tls_sslmode, K_NAME, "disable"),
    K(client_tls_key_file, K_STR, ""),
    K(client_tls_cert_file, K_STR, ""),
    K(client_tls_ca_file, K_STR, ""),
    K(client_tls_protocols, K_STR, "secure"),
    K(client_tls_ciphers, K_STR, "default"),
    K(client_tls13_ciphers, K_STR, ""),
    K(client_tls_ecdhcurve, K_NAME, "auto"),
    K(client_tls_dheparams, K_NAME, "auto"),
    K(server_tls_sslmode, K_NAME, "prefer"),
    K(server_tls_key_file, K_STR, ""),
    K(server_tls_cert_file, K_STR, ""),
    K(server_tls_ca_file, K_STR, ""),
    K(server_tls_protocols, K_STR, "secure"),
    K(server_tls_ciphers, K_STR, "default"),
    K(server_tls13_ciphers, K_STR, ""),
    K(max_db_client_connections, K_INT, "0"),
    K(max_user_client_connections, K_INT, "0"),
    K(transaction_timeout, K_TIME, "0"),
    K(peer_id, K_INT, "0"),
    K(pool_idle_timeout, K_TIME, "0"),
    K(http_tls_sslmode, K_NAME, "disable"),
    K(http_tls_key_file, K_STR, ""),
    K(http_tls_cert_file, K_STR, ""),
    K(http_listen_addr, K_STR, ""),
    K(http_listen_port, K_INT, "0"),
    K(http_workers, K_INT, "0"),
    K(http_max_body, K_INT, "1048576"),
    K(http_max_response, K_INT, "16777216"),
    K(http_max_rows, K_INT, "100000"),
    K(http_metrics_pgbouncer, K_BOOL, "1"),
    K(http_statement_timeout, K_TIME, "30"),
    K(http_session_idle_timeout, K_TIME, "60"),
    K(http_schema_ttl, K_TIME, "60"),
    K(http_max_sessions_per_user, K_INT, "16"),
    K(http_max_inflight_per_user, K_INT, "64"),
    K(http_max_connections, K_INT, "1000"),
    K(http_request_timeout, K_TIME, "10"),
    K(http_idle_timeout, K_TIME, "60"),
};
#undef K
#define NKEYS (sizeof keys / sizeof *keys)

int cfg_syslog_facility(const char *name)
{
    static const struct {
        const char *name;
        int v;
    } f[] = {{"auth", LOG_AUTH},     {"authpriv", LOG_AUTHPRIV}, {"daemon", LOG_DAEMON},
             {"user", LOG_USER},     {"local0", LOG_LOCAL0},     {"local1", LOG_LOCAL1},
             {"local2", LOG_LOCAL2}, {"local3", LOG_LOCAL3},     {"local4", LOG_LOCAL4},
             {"local5", LOG_LOCAL5}, {"local6", LOG_LOCAL6},     {"local7", LOG_LOCAL7}};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++)
        if (!strcasecmp(f[i].name, name)) return f[i].v;
    return -1;
}

/* PgBouncer keys weir reads but does not act on (yet): a warning, not an error. */
static const char *const unsupported[] = {
    "unix_socket_group", "server_round_robin", "service_name",
    "job_name",          "conffile",           "autodb_idle_timeout",
    "dns_max_ttl",       "dns_nxdomain_ttl",   "dns_zone_check_period",
    "resolv_conf",       "sbuf_loopcnt",       "tcp_defer_accept",
    "tcp_socket_buffer", "http_listen_addr",   "http_listen_port",
    "auth_ldap_options", /* 1.25's LDAP: auth_type ldap is refused at start */
};

typedef struct reader {
    cfg *c;
    void (*log)(void *ud, bool error, const char *msg);
    void *ud;
    int depth;
    int errors;
    bool saw_main; /* a [pgbouncer] (or [weir]) section header */
} reader;

/* A value's error, written into why; returns -1. Through vsnprintf, so a
 * long value is cut to fit without gcc's truncation warning (its -O2 and
 * higher analysis sees every snprintf into why otherwise). */
static int bad_value(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad_value(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    return -1;
}

static void say(reader *r, bool error, const char *file, int line, const char *fmt, ...)
{
    char msg[1024];
    int n = 0;
    if (file) n = snprintf(msg, sizeof msg, "%s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    if (error) r->errors++;
    if (r->log) r->log(r->ud, error, msg);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    return s;
}

static bool copy_str(char *dst, size_t cap, const char *v)
{
    size_t n = strlen(v);
    if (n >= cap) return false;
    memcpy(dst, v, n + 1);
    return true;
}

static int parse_int(const char *v, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *trim(end)) return -1;
    if (x < lo || x > hi) return -2;
    *out = x;
    return 0;
}

static int parse_bool(const char *v, bool *out)
{
    static const char *const t[] = {"1", "yes", "on", "true"}, *const f[] = {"0", "no", "off",
                                                                             "false"};
    for (size_t i = 0; i < 4; i++) {
        if (!strcasecmp(v, t[i])) return *out = true, 0;
        if (!strcasecmp(v, f[i])) return *out = false, 0;
    }
    return -1;
}

/* Seconds, as PgBouncer reads them (fractions allowed), or with a unit: ms, s, min, h. */
static int parse_time(const char *v, int64_t *ms)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || x < 0) return -1;
    while (isspace((unsigned char)*end)) end++;
    double mult = 1000;
    if (!*end || !strcmp(end, "s"))
        mult = 1000;
    else if (!strcmp(end, "ms"))
        mult = 1;
    else if (!strcmp(end, "min"))
        mult = 60000;
    else if (!strcmp(end, "h"))
        mult = 3600000;
    else
        return -1;
    double r = x * mult;
    if (r > (double)INT64_MAX / 2) return -1;
    *ms = (int64_t)(r + 0.5);
    return 0;
}

static int parse_mode(const char *v)
{
    if (!strcasecmp(v, "session")) return POOL_SESSION;
    if (!strcasecmp(v, "transaction")) return POOL_TRANSACTION;
    if (!strcasecmp(v, "statement")) return POOL_STATEMENT;
    return -1;
}

static int parse_auth(const char *v)
{
    static const struct {
        const char *name;
        int type;
    } t[] = {{"any", AUTH_ANY},
             {"trust", AUTH_TRUST},
             {"plain", AUTH_PLAIN},
             {"md5", AUTH_MD5},
             {"scram-sha-256", AUTH_SCRAM},
             {"cert", AUTH_CERT},
             {"peer", AUTH_PEER},
             {"hba", AUTH_HBA}};
    for (size_t i = 0; i < sizeof t / sizeof *t; i++)
        if (!strcasecmp(v, t[i].name)) return t[i].type;
    return -1;
}

const char *cfg_pool_mode_name(int mode)
{
    return mode == POOL_TRANSACTION ? "transaction"
           : mode == POOL_STATEMENT ? "statement"
                                    : "session";
}

const char *cfg_auth_type_name(int type)
{
    static const char *const n[] = {"any",           "trust", "plain", "md5",
                                    "scram-sha-256", "cert",  "peer",  "hba"};
    return type >= 0 && type <= AUTH_HBA ? n[type] : "?";
}

static const key *key_find(const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (!strcasecmp(keys[i].name, name)) return &keys[i];
    return NULL;
}

static int set_key(cfg *c, const key *k, const char *v, char *why, size_t whylen)
{
    char *p = (char *)c + k->off;
    long long x;
    int rc;
    switch (k->type) {
    case K_INT:
        rc = parse_int(v, 0, INT_MAX, &x);
        if (rc) {
            snprintf(why, whylen, "%s",
                     rc == -1 ? "not an integer" : "out of range (0..2147483647)");
            return -1;
        }
        if (!strcmp(k->name, "http_listen_port") && x > 65535) {
            snprintf(why, whylen, "out of range (0..65535)");
            return -1;
        }
        if (!strcmp(k->name, "listen_port") && (x < 1 || x > 65535)) {
            snprintf(why, whylen, "out of range (1..65535)");
            return -1;
        }
        if (!strcmp(k->name, "peer_id") && x > CFG_PEER_ID_MAX) {
            snprintf(why, whylen, "out of range (0..%d)", CFG_PEER_ID_MAX);
            return -1;
        }
        if (!strcmp(k->name, "scram_iterations") && (x < 1 || x > SCRAM_MAX_ITER)) {
            snprintf(why, whylen, "out of range (1..%d)", SCRAM_MAX_ITER);
            return -1;
        }
        if (!strcmp(k->name, "workers") && x > 256) {
            snprintf(why, whylen, "out of range (0..256)");
            return -1;
        }
        *(int *)p = (int)x;
        return 0;
    case K_OCTAL: {
        char *end;
        errno = 0;
        long m = strtol(v, &end, 8);
        if (errno || end == v || *end || m < 0 || m > 07777) {
            snprintf(why, whylen, "not an octal file mode");
            return -1;
        }
        *(int *)p = (int)m;
        return 0;
    }
    case K_BOOL:
        if (parse_bool(v, (bool *)p)) {
            snprintf(why, whylen, "not a boolean (0/1, yes/no, on/off, true/false)");
            return -1;
        }
        return 0;
    case K_STR:
        if (!copy_str(p, CFG_STR, v)) {
            snprintf(why, whylen, "too long (at most %d bytes)", CFG_STR - 1);
            return -1;
        }
        return 0;
    case K_NAME:
        if (!copy_str(p, CFG_NAME, v)) {
            snprintf(why, whylen, "too long (at most %d bytes)", CFG_NAME - 1);
            return -1;
        }
        if (!strcmp(k->name, "worker_sched") && strcasecmp(v, "batch") && strcasecmp(v, "normal")) {
            snprintf(why, whylen, "must be batch or normal");
            return -1;
        }
        if (!strcmp(k->name, "syslog_facility") && cfg_syslog_facility(v) < 0) {
            snprintf(why, whylen,
                     "unknown facility (auth, authpriv, daemon, user, local0..local7)");
            return -1;
        }
        return 0;
    case K_TIME:
        if (parse_time(v, (int64_t *)p)) {
            snprintf(why, whylen, "not a duration (seconds, or a number with ms, s, min or h)");
            return -1;
        }
        return 0;
    case K_MODE:
        if ((*(int *)p = parse_mode(v)) < 0) {
            *(int *)p = POOL_SESSION;
            snprintf(why, whylen, "must be session, transaction or statement");
            return -1;
        }
        return 0;
    case K_AUTH: {
        int a = parse_auth(v);
        if (a < 0) {
            if (!strcasecmp(v, "pam") || !strcasecmp(v, "ldap"))
                snprintf(why, whylen,
                         "auth_type %s is not supported by weir (use any, trust, plain, md5, "
                         "scram-sha-256, cert, peer or hba)",
                         v);
            else
                snprintf(why, whylen,
                         "must be any, trust, plain, md5, scram-sha-256, cert, peer or hba");
            return -1;
        }
        *(int *)p = a;
        return 0;
    }
    }
    return -1;
}

int cfg_set(cfg *c, const char *name, const char *value, char *why, size_t whylen)
{
    const key *k = key_find(name);
    if (!k) {
        snprintf(why, whylen, "unknown configuration key: %s", name);
        return -1;
    }
    cfg tmp = *c; /* keep c unchanged on error */
    if (set_key(&tmp, k, value, why, whylen)) return -1;
    memcpy((char *)c + k->off, (char *)&tmp + k->off,
           k->type == K_STR    ? CFG_STR
           : k->type == K_NAME ? CFG_NAME
           : k->type == K_TIME ? sizeof(int64_t)
           : k->type == K_BOOL ? sizeof(bool)
                               : sizeof(int));
    return 0;
}

size_t cfg_key_count(void)
{
    return NKEYS;
}

const char *cfg_key_at(size_t i, const char **def)
{
    if (i >= NKEYS) return NULL;
    if (def) *def = keys[i].def;
    return keys[i].name;
}

int cfg_get(const cfg *c, const char *name, char *buf, size_t len)
{
    const key *k = key_find(name);
    if (!k) return -1;
    const char *p = (const char *)c + k->off;
    switch (k->type) {
    case K_INT:
        snprintf(buf, len, "%d", *(const int *)p);
        break;
    case K_OCTAL:
        snprintf(buf, len, "0%o", (unsigned)*(const int *)p);
        break;
    case K_BOOL:
        snprintf(buf, len, "%d", *(const bool *)p ? 1 : 0);
        break;
    case K_STR:
    case K_NAME:
        snprintf(buf, len, "%s", p);
        break;
    case K_TIME: {
        int64_t ms = *(const int64_t *)p;
        if (ms % 1000)
            snprintf(buf, len, "%.3f", (double)ms / 1000);
        else
            snprintf(buf, len, "%lld", (long long)(ms / 1000));
        break;
    }
    case K_MODE:
        snprintf(buf, len, "%s", cfg_pool_mode_name(*(const int *)p));
        break;
    case K_AUTH:
        snprintf(buf, len, "%s", cfg_auth_type_name(*(const int *)p));
        break;
    }
    return 0;
}

/* libpq-style "k=v k2='v 2'" into (key, value) pairs; calls fn for each. */
static int parse_connstr(const char *s,
                         int (*fn)(void *ud, const char *k, const char *v, char *why, size_t wl),
                         void *ud, char *why, size_t whylen)
{
    const char *p = s;
    for (;;) {
        while (isspace((unsigned char)*p)) p++;
        if (!*p) return 0;
        char k[64], v[CFG_STR];
        size_t kn = 0, vn = 0;
        while (*p && *p != '=' && !isspace((unsigned char)*p)) {
            if (kn + 1 >= sizeof k) return bad_value(why, whylen, "key too long");
            k[kn++] = *p++;
        }
        k[kn] = '\0';
        while (isspace((unsigned char)*p)) p++;
        if (*p != '=') return bad_value(why, whylen, "missing \"=\" after \"%s\"", k);
        p++;
        while (isspace((unsigned char)*p)) p++;
        if (*p == '\'') {
            p++;
            while (*p && *p != '\'') {
                if (*p == '\\' && p[1]) p++;
                if (vn + 1 >= sizeof v) return bad_value(why, whylen, "value too long");
                v[vn++] = *p++;
            }
            if (*p != '\'') return bad_value(why, whylen, "unterminated quoted string");
            p++;
        } else {
            while (*p && !isspace((unsigned char)*p)) {
                if (vn + 1 >= sizeof v) return bad_value(why, whylen, "value too long");
                v[vn++] = *p++;
            }
        }
        v[vn] = '\0';
        if (fn(ud, k, v, why, whylen)) return -1;
    }
}

/* What a [databases] or [users] line's keys go into; keys weir does not
 * know are listed in ignored (a warning, as PgBouncer gives). */
typedef struct field_sink {
    void *entry;
    char ignored[200];
} field_sink;

static void ignore_key(field_sink *f, const char *k)
{
    size_t n = strlen(f->ignored);
    snprintf(f->ignored + n, sizeof f->ignored - n, "%s%s", n ? ", " : "", k);
}

static int db_field(void *ud, const char *k, const char *v, char *why, size_t whylen)
{
    field_sink *f = ud;
    cfg_db *d = f->entry;
    long long x;
    struct {
        const char *name;
        char *dst;
        size_t cap;
    } strs[] = {
        {"host", d->host, sizeof d->host},
        {"dbname", d->dbname, sizeof d->dbname},
        {"user", d->user, sizeof d->user},
        {"password", d->password, sizeof d->password},
        {"auth_user", d->auth_user, sizeof d->auth_user},
        {"auth_dbname", d->auth_dbname, sizeof d->auth_dbname},
        {"auth_query", d->auth_query, sizeof d->auth_query},
        {"connect_query", d->connect_query, sizeof d->connect_query},
        {"client_encoding", d->client_encoding, sizeof d->client_encoding},
        {"datestyle", d->datestyle, sizeof d->datestyle},
        {"timezone", d->timezone, sizeof d->timezone},
        {"application_name", d->application_name, sizeof d->application_name},
        {"load_balance_hosts", d->load_balance_hosts, sizeof d->load_balance_hosts},
    };
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++) {
        if (strcasecmp(k, strs[i].name)) continue;
        if (!copy_str(strs[i].dst, strs[i].cap, v))
            return bad_value(why, whylen, "%s: value too long", k);
        return 0;
    }
    struct {
        const char *name;
        int *dst;
        long long lo, hi;
    } ints[] = {
        {"port", &d->port, 1, 65535},
        {"pool_size", &d->pool_size, 0, INT_MAX},
        {"min_pool_size", &d->min_pool_size, 0, INT_MAX},
        {"reserve_pool", &d->reserve_pool, 0, INT_MAX},
        {"reserve_pool_size", &d->reserve_pool, 0, INT_MAX}, /* PgBouncer 1.25's name */
        {"max_db_connections", &d->max_db_connections, 0, INT_MAX},
        {"max_db_client_connections", &d->max_db_client_connections, 0, INT_MAX},
        {"adaptive_pool", &d->adaptive_pool, 0, 1},
    };
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        if (strcasecmp(k, ints[i].name)) continue;
        if (parse_int(v, ints[i].lo, ints[i].hi, &x))
            return bad_value(why, whylen, "%s: bad value \"%s\"", k, v);
        *ints[i].dst = (int)x;
        return 0;
    }
    struct {
        const char *name;
        int64_t *dst;
    } times[] = {{"query_wait_timeout", &d->query_wait_timeout},
                 {"server_lifetime", &d->server_lifetime}};
    for (size_t i = 0; i < sizeof times / sizeof *times; i++) {
        if (strcasecmp(k, times[i].name)) continue;
        if (parse_time(v, times[i].dst))
            return bad_value(why, whylen, "%s: not a duration: \"%s\"", k, v);
        return 0;
    }
    if (!strcasecmp(k, "pool_mode")) {
        if ((d->pool_mode = parse_mode(v)) < 0)
            return bad_value(why, whylen, "pool_mode: must be session, transaction or statement");
        return 0;
    }
    ignore_key(f, k);
    return 0;
}

static int user_field(void *ud, const char *k, const char *v, char *why, size_t whylen)
{
    field_sink *f = ud;
    cfg_user *u = f->entry;
    long long x;
    if (!strcasecmp(k, "pool_mode")) {
        if ((u->pool_mode = parse_mode(v)) < 0)
            return bad_value(why, whylen, "pool_mode: must be session, transaction or statement");
        return 0;
    }
    struct {
        const char *name;
        int *dst;
    } ints[] = {{"max_user_connections", &u->max_user_connections},
                {"pool_size", &u->pool_size},
                {"reserve_pool", &u->reserve_pool},
                {"reserve_pool_size", &u->reserve_pool},
                {"max_user_client_connections", &u->max_user_client_connections}};
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        if (strcasecmp(k, ints[i].name)) continue;
        if (parse_int(v, 0, INT_MAX, &x))
            return bad_value(why, whylen, "%s: bad value \"%s\"", k, v);
        *ints[i].dst = (int)x;
        return 0;
    }
    struct {
        const char *name;
        int64_t *dst;
    } times[] = {{"query_timeout", &u->query_timeout},
                 {"idle_transaction_timeout", &u->idle_transaction_timeout},
                 {"client_idle_timeout", &u->client_idle_timeout},
                 {"transaction_timeout", &u->transaction_timeout},
                 {"query_wait_timeout", &u->query_wait_timeout}};
    for (size_t i = 0; i < sizeof times / sizeof *times; i++) {
        if (strcasecmp(k, times[i].name)) continue;
        if (parse_time(v, times[i].dst))
            return bad_value(why, whylen, "%s: not a duration: \"%s\"", k, v);
        return 0;
    }
    ignore_key(f, k);
    return 0;
}

/* path as given if absolute, else relative to the directory of file. */
static bool path_near(char *dst, size_t cap, const char *file, const char *path)
{
    const char *slash = strrchr(file, '/');
    int n = path[0] == '/' || !slash
                ? snprintf(dst, cap, "%s", path)
                : snprintf(dst, cap, "%.*s/%s", (int)(slash - file), file, path);
    return n >= 0 && (size_t)n < cap;
}

static int lite_field(void *ud, const char *k, const char *v, char *why, size_t whylen)
{
    void **a = ud;
    cfg_db *d = a[0];
    const char *file = a[1];
    long long x;
    if (!strcasecmp(k, "pool_size")) {
        if (parse_int(v, 1, INT_MAX, &x))
            return bad_value(why, whylen, "pool_size: bad value \"%s\"", v);
        d->pool_size = (int)x;
        return 0;
    }
    if (!strcasecmp(k, "create")) {
        if (parse_bool(v, &d->sqlite_create))
            return bad_value(why, whylen, "create: bad value \"%s\"", v);
        return 0;
    }
    if (!strcasecmp(k, "init")) {
        if (!path_near(d->sqlite_init, sizeof d->sqlite_init, file, v))
            return bad_value(why, whylen, "init: path too long");
        return 0;
    }
    return bad_value(why, whylen,
                     "\"%s\" does not apply to an SQLite database (pool_size, create, init do)", k);
}

/* "sqlite:///abs/path [pool_size=N] [create=1] [init=file.sql]"; a path
 * without the leading slash is relative to the config file's directory. */
static int lite_entry(cfg_db *d, const char *file, const char *val, char *why, size_t whylen)
{
    if (strncmp(val, "sqlite://", 9))
        return bad_value(why, whylen, "an SQLite database is written sqlite:///path/to/file.db");
    const char *p = val + 9, *e = p;
    while (*e && !isspace((unsigned char)*e)) e++;
    char path[CFG_STR];
    if (e == p || (size_t)(e - p) >= sizeof path)
        return bad_value(why, whylen, "missing or too long SQLite path in \"%s\"", val);
    snprintf(path, sizeof path, "%.*s", (int)(e - p), p);
    if (!strcmp(path, ":memory:") || !strcmp(path, "/:memory:"))
        return bad_value(why, whylen,
                         "\":memory:\" would give each connection its own empty database");
    if (!path_near(d->sqlite_path, sizeof d->sqlite_path, file, path))
        return bad_value(why, whylen, "SQLite path too long");
    d->host[0] = '\0';
    d->port = 0;
    void *a[2] = {d, (void *)file};
    return parse_connstr(e, lite_field, a, why, whylen);
}

static int my_field(void *ud, const char *k, const char *v, char *why, size_t whylen)
{
    cfg_db *d = ud;
    long long x;
    if (!strcasecmp(k, "pool_size")) {
        if (parse_int(v, 1, INT_MAX, &x))
            return bad_value(why, whylen, "pool_size: bad value \"%s\"", v);
        d->pool_size = (int)x;
        return 0;
    }
    if (!strcasecmp(k, "server_lifetime")) {
        if (parse_time(v, &d->server_lifetime))
            return bad_value(why, whylen, "server_lifetime: not a duration: \"%s\"", v);
        return 0;
    }
    return bad_value(why, whylen,
                     "\"%s\" does not apply to a MySQL database (pool_size, server_lifetime do; "
                     "the driver's options go in the URL)",
                     k);
}

/* "mysql://user:pw@host:port/db?opt=v [pool_size=N] [server_lifetime=T]"
 * (or mariadb://): the URL as libweir's MySQL driver reads it. */
static int my_entry(cfg_db *d, const char *val, char *why, size_t whylen)
{
    const char *e = val;
    while (*e && !isspace((unsigned char)*e)) e++;
    if ((size_t)(e - val) >= sizeof d->mysql_url)
        return bad_value(why, whylen, "MySQL URL too long");
    snprintf(d->mysql_url, sizeof d->mysql_url, "%.*s", (int)(e - val), val);
    d->host[0] = '\0';
    d->port = 0;
    return parse_connstr(e, my_field, d, why, whylen);
}

static void *grow(void *arr, size_t n, size_t size)
{
    if (n && (n < 4 || (n & (n - 1)))) return arr; /* capacity 4, then doubles at powers of two */
    void *p = realloc(arr, (n ? n * 2 : 4) * size);
    return p;
}

/* --- name indexes ---------------------------------------------------------- */

/* Fewer entries than this are walked: a table would not be faster. */
#define INDEX_MIN 8

/* FNV-1a from a seed drawn per table, then mixed: the names come from the
 * config, the names looked up from clients, who cannot choose which slots
 * a name falls in without the seed. */
static size_t name_hash(uint64_t seed, const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 32;
    return (size_t)h;
}

/* The name of entry i of an array of n entries of `stride` bytes whose name
 * is at `off` in each. */
#define NAME_AT(base, i, stride, off) ((const char *)(base) + (i) * (stride) + (off))

static void index_free(cfg_index *ix)
{
    free(ix->slot);
    *ix = (cfg_index){0};
}

/* Entry i into ix's table (which has room), unless its name is there: the
 * first entry of a name is the one found, as by a walk. */
static void index_insert(cfg_index *ix, const void *base, size_t i, size_t stride, size_t off)
{
    const char *name = NAME_AT(base, i, stride, off);
    for (size_t h = name_hash(ix->seed, name) & ix->mask;; h = (h + 1) & ix->mask) {
        if (!ix->slot[h]) {
            ix->slot[h] = (uint32_t)i + 1;
            return;
        }
        if (!strcmp(NAME_AT(base, ix->slot[h] - 1, stride, off), name)) return;
    }
}

/* The first entry of each name, as the walk finds it. Out of memory: no
 * table, and lookups walk. */
static void index_build(cfg_index *ix, const void *base, size_t n, size_t stride, size_t off)
{
    index_free(ix);
    if (n < INDEX_MIN || n > UINT32_MAX / 4) return;
    size_t cap = 16;
    while (cap < 2 * n) cap <<= 1;
    uint32_t *slot = calloc(cap, sizeof *slot);
    if (!slot) return;
    uint64_t seed;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
        seed = (uint64_t)(uintptr_t)slot ^ (uint64_t)time(NULL);
    ix->slot = slot;
    ix->mask = cap - 1;
    ix->seed = seed;
    for (size_t i = 0; i < n; i++) index_insert(ix, base, i, stride, off);
}

/* Entry n - 1, just appended to an array of n, into ix: the table is made
 * again, twice as large, when it is half full (or when there was none). */
static void index_add(cfg_index *ix, const void *base, size_t n, size_t stride, size_t off)
{
    if (!ix->slot || 2 * n > ix->mask + 1)
        index_build(ix, base, n, stride, off);
    else
        index_insert(ix, base, n - 1, stride, off);
}

/* The entry named name, or -1. */
static long index_find(const cfg_index *ix, const void *base, size_t n, size_t stride, size_t off,
                       const char *name)
{
    if (!ix->slot) {
        for (size_t i = 0; i < n; i++)
            if (!strcmp(NAME_AT(base, i, stride, off), name)) return (long)i;
        return -1;
    }
    for (size_t h = name_hash(ix->seed, name) & ix->mask;; h = (h + 1) & ix->mask) {
        uint32_t k = ix->slot[h];
        if (!k) return -1;
        if (k <= n && !strcmp(NAME_AT(base, k - 1, stride, off), name)) return (long)k - 1;
    }
}

static int add_db(reader *r, const char *file, int line, const char *name, const char *val)
{
    cfg *c = r->c;
    cfg_db d = {.port = 5432,
                .pool_size = -1,
                .min_pool_size = -1,
                .reserve_pool = -1,
                .max_db_connections = -1,
                .max_db_client_connections = -1,
                .query_wait_timeout = -1,
                .server_lifetime = -1,
                .adaptive_pool = -1,
                .pool_mode = POOL_UNSET};
    field_sink sink = {.entry = &d};
    if (!copy_str(d.name, sizeof d.name, name)) {
        say(r, true, file, line, "database name \"%s\" too long", name);
        return -1;
    }
    char why[256];
    if (!strncmp(val, "sqlite:", 7)) {
        if (lite_entry(&d, file, val, why, sizeof why) || !strcmp(name, "*")) {
            say(r, true, file, line, "database \"%s\": %s", name,
                strcmp(name, "*") ? why : "the fallback database \"*\" cannot be SQLite");
            return -1;
        }
    } else if (!strncasecmp(val, "mysql://", 8) || !strncasecmp(val, "mariadb://", 10)) {
        if (my_entry(&d, val, why, sizeof why) || !strcmp(name, "*")) {
            say(r, true, file, line, "database \"%s\": %s", name,
                strcmp(name, "*") ? why : "the fallback database \"*\" cannot be MySQL");
            return -1;
        }
    } else if (parse_connstr(val, db_field, &sink, why, sizeof why)) {
        say(r, true, file, line, "database \"%s\": %s", name, why);
        return -1;
    }
    if (sink.ignored[0])
        say(r, false, file, line, "database \"%s\": unknown parameter(s) %s ignored", name,
            sink.ignored);
    if (!d.dbname[0]) copy_str(d.dbname, sizeof d.dbname, strcmp(name, "*") ? name : "");
    /* (by the index as the file is read: a walk per line was quadratic, 16 s
     * to start with 20 000 databases) */
    long i = index_find(&c->db_ix, c->dbs, c->ndbs, sizeof *c->dbs, offsetof(cfg_db, name), name);
    if (i >= 0) {
        c->dbs[i] = d; /* a later definition replaces an earlier one, as in PgBouncer */
        return 0;
    }
    cfg_db *p = grow(c->dbs, c->ndbs, sizeof *p);
    if (!p) return -1;
    c->dbs = p;
    c->dbs[c->ndbs++] = d;
    index_add(&c->db_ix, c->dbs, c->ndbs, sizeof *c->dbs, offsetof(cfg_db, name));
    return 0;
}

static int add_user(reader *r, const char *file, int line, const char *name, const char *val)
{
    cfg *c = r->c;
    cfg_user u = {.pool_mode = POOL_UNSET,
                  .max_user_connections = -1,
                  .pool_size = -1,
                  .reserve_pool = -1,
                  .max_user_client_connections = -1,
                  .query_timeout = -1,
                  .idle_transaction_timeout = -1,
                  .client_idle_timeout = -1,
                  .transaction_timeout = -1,
                  .query_wait_timeout = -1};
    field_sink sink = {.entry = &u};
    if (!copy_str(u.name, sizeof u.name, name)) {
        say(r, true, file, line, "user name \"%s\" too long", name);
        return -1;
    }
    char why[256];
    if (parse_connstr(val, user_field, &sink, why, sizeof why)) {
        say(r, true, file, line, "user \"%s\": %s", name, why);
        return -1;
    }
    if (sink.ignored[0])
        say(r, false, file, line, "user \"%s\": unknown parameter(s) %s ignored", name,
            sink.ignored);
    cfg_user *p = grow(c->users, c->nusers, sizeof *p);
    if (!p) return -1;
    c->users = p;
    c->users[c->nusers++] = u;
    index_add(&c->user_ix, c->users, c->nusers, sizeof *c->users, offsetof(cfg_user, name));
    if (u.client_idle_timeout >= 0 || u.query_timeout >= 0 || u.idle_transaction_timeout >= 0 ||
        u.transaction_timeout >= 0)
        c->users_timeouts = true;
    return 0;
}

static int peer_field(void *ud, const char *k, const char *v, char *why, size_t whylen)
{
    field_sink *f = ud;
    cfg_peer *p = f->entry;
    long long x;
    if (!strcasecmp(k, "host")) {
        if (!copy_str(p->host, sizeof p->host, v)) return bad_value(why, whylen, "host: too long");
        return 0;
    }
    if (!strcasecmp(k, "port")) {
        if (parse_int(v, 1, 65535, &x))
            return bad_value(why, whylen, "port: bad value \"%s\" (1..65535)", v);
        p->port = (int)x;
        return 0;
    }
    if (!strcasecmp(k, "pool_size")) {
        if (parse_int(v, 1, INT_MAX, &x))
            return bad_value(why, whylen, "pool_size: bad value \"%s\"", v);
        p->pool_size = (int)x;
        return 0;
    }
    ignore_key(f, k);
    return 0;
}

/* [peers]: "<peer_id> = host=... port=... pool_size=..." */
static int add_peer(reader *r, const char *file, int line, const char *name, const char *val)
{
    cfg *c = r->c;
    cfg_peer pe = {.port = 6432, .pool_size = -1};
    long long id;
    if (parse_int(name, 1, CFG_PEER_ID_MAX, &id)) {
        say(r, true, file, line, "[peers] \"%s\": a peer id must be 1..%d", name, CFG_PEER_ID_MAX);
        return -1;
    }
    pe.id = (int)id;
    field_sink sink = {.entry = &pe};
    char why[256];
    if (parse_connstr(val, peer_field, &sink, why, sizeof why)) {
        say(r, true, file, line, "peer %d: %s", pe.id, why);
        return -1;
    }
    if (sink.ignored[0])
        say(r, false, file, line, "peer %d: unknown parameter(s) %s ignored", pe.id, sink.ignored);
    if (!pe.host[0]) {
        say(r, true, file, line, "host was not provided for peer %d", pe.id);
        return -1;
    }
    for (size_t i = 0; i < c->npeers; i++)
        if (c->peers[i].id == pe.id) {
            c->peers[i] = pe; /* the later line wins, as in [databases] */
            return 0;
        }
    cfg_peer *p = grow(c->peers, c->npeers, sizeof *p);
    if (!p) return -1;
    c->peers = p;
    c->peers[c->npeers++] = pe;
    return 0;
}

static bool is_unsupported(const char *k)
{
    for (size_t i = 0; i < sizeof unsupported / sizeof *unsupported; i++)
        if (!strcasecmp(unsupported[i], k)) return true;
    return false;
}

static int read_file(reader *r, const char *path, char *section, size_t seclen)
{
    if (++r->depth > 10) {
        say(r, true, path, 0, "%%include nested too deeply");
        return -1;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        say(r, true, NULL, 0, "cannot open config file %s: %s", path, strerror(errno));
        r->depth--;
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
        say(r, true, NULL, 0, "config file %s is not a regular file", path);
        fclose(f);
        r->depth--;
        return -1;
    }
    char *buf = NULL;
    size_t bufcap = 0;
    int lineno = 0, rc = 0;
    while (getline(&buf, &bufcap, f) >= 0) {
        lineno++;
        char *s = trim(buf);
        if (!*s || *s == ';' || *s == '#') continue;
        if (!strncmp(s, "%include", 8) && isspace((unsigned char)s[8])) {
            char *inc = trim(s + 8);
            char full[CFG_STR * 2];
            if (inc[0] != '/' && strrchr(path, '/'))
                snprintf(full, sizeof full, "%.*s/%s", (int)(strrchr(path, '/') - path), path, inc);
            else
                snprintf(full, sizeof full, "%s", inc);
            if (read_file(r, full, section, seclen)) rc = -1;
            continue;
        }
        if (*s == '[') {
            char *e = strchr(s, ']');
            if (!e) {
                say(r, true, path, lineno, "syntax error: unterminated section header");
                rc = -1;
                continue;
            }
            *e = '\0';
            snprintf(section, seclen, "%s", trim(s + 1));
            if (!strcasecmp(section, "pgbouncer") || !strcasecmp(section, "weir"))
                r->saw_main = true;
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            say(r, true, path, lineno, "syntax error: expected key = value");
            rc = -1;
            continue;
        }
        *eq = '\0';
        char *k = trim(s), *v = trim(eq + 1);
        if (!*k) {
            say(r, true, path, lineno, "syntax error: missing key before \"=\"");
            rc = -1;
            continue;
        }
        if (!strcasecmp(section, "databases")) {
            if (add_db(r, path, lineno, k, v)) rc = -1;
        } else if (!strcasecmp(section, "users")) {
            if (add_user(r, path, lineno, k, v)) rc = -1;
        } else if (!strcasecmp(section, "peers")) {
            if (add_peer(r, path, lineno, k, v)) rc = -1;
        } else if (!strcasecmp(section, "http_tokens")) {
            cfg_secret t = {.secret = NULL};
            if (!copy_str(t.user, sizeof t.user, k) || strlen(v) < 16 || strlen(v) >= CFG_STR) {
                say(r, true, path, lineno, "[http_tokens] %s: a token must be 16 to %d characters",
                    k, CFG_STR - 1);
                rc = -1;
                continue;
            }
            cfg_secret *arr = grow(r->c->tokens, r->c->ntokens, sizeof *arr);
            if (!arr || !(t.secret = strdup(v))) return -1;
            r->c->tokens = arr;
            r->c->tokens[r->c->ntokens++] = t;
        } else if (!strcasecmp(section, "pgbouncer") || !strcasecmp(section, "weir")) {
            const key *kk = key_find(k);
            if (!kk) {
                if (is_unsupported(k))
                    say(r, false, path, lineno, "%s is not supported by weir; ignored", k);
                else
                    say(r, false, path, lineno, "unknown configuration key \"%s\"; ignored", k);
                continue;
            }
            char why[256];
            if (set_key(r->c, kk, v, why, sizeof why)) {
                say(r, true, path, lineno, "invalid value \"%s\" for %s: %s", v, kk->name, why);
                rc = -1;
            }
        } else if (!section[0]) {
            say(r, true, path, lineno, "key \"%s\" outside of any section", k);
            rc = -1;
        } else {
            say(r, false, path, lineno, "unknown section [%s]; ignored", section);
        }
    }
    free(buf);
    fclose(f);
    r->depth--;
    return rc;
}

/* c's name indexes for its arrays as they are (a copy's; reading a file
 * keeps them as it appends: add_db, add_user, cfg_load_auth_file). */
static void cfg_reindex(cfg *c)
{
    index_build(&c->db_ix, c->dbs, c->ndbs, sizeof *c->dbs, offsetof(cfg_db, name));
    index_build(&c->user_ix, c->users, c->nusers, sizeof *c->users, offsetof(cfg_user, name));
    index_build(&c->secret_ix, c->secrets, c->nsecrets, sizeof *c->secrets,
                offsetof(cfg_secret, user));
}

static void index_free_all(cfg *c)
{
    index_free(&c->db_ix);
    index_free(&c->user_ix);
    index_free(&c->secret_ix);
}

static void set_defaults(cfg *c)
{
    memset(c, 0, sizeof *c);
    char why[128];
    for (size_t i = 0; i < NKEYS; i++) (void)set_key(c, &keys[i], keys[i].def, why, sizeof why);
}

/* "user" "secret" per line; "" inside quotes is a quote. */
static int parse_quoted(const char **pp, char *out, size_t cap)
{
    const char *p = *pp;
    while (isspace((unsigned char)*p)) p++;
    if (*p != '"') return -1;
    p++;
    size_t n = 0;
    for (;;) {
        if (!*p) return -1;
        if (*p == '"') {
            if (p[1] != '"') break;
            p++;
        }
        if (n + 1 >= cap) return -1;
        out[n++] = *p++;
    }
    out[n] = '\0';
    *pp = p + 1;
    return 0;
}

static void secrets_free(cfg_secret *a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i].secret) {
            explicit_bzero(a[i].secret, strlen(a[i].secret));
            free(a[i].secret);
        }
    free(a);
}

/* A copy of n secrets, each string its own; NULL when out of memory. */
static cfg_secret *secrets_copy(const cfg_secret *src, size_t n)
{
    cfg_secret *a = calloc(n, sizeof *a);
    if (!a) return NULL;
    for (size_t i = 0; i < n; i++) {
        a[i] = src[i];
        if (!(a[i].secret = strdup(src[i].secret))) {
            secrets_free(a, i);
            return NULL;
        }
    }
    return a;
}

int cfg_load_auth_file(cfg *c, void (*log)(void *ud, bool error, const char *msg), void *ud)
{
    reader r = {.c = c, .log = log, .ud = ud};
    secrets_free(c->secrets, c->nsecrets);
    index_free(&c->secret_ix);
    c->secrets = NULL;
    c->nsecrets = 0;
    if (!c->auth_file[0]) return 0;
    FILE *f = fopen(c->auth_file, "r");
    if (!f) {
        say(&r, true, NULL, 0, "cannot open auth_file %s: %s", c->auth_file, strerror(errno));
        return -1;
    }
    char *buf = NULL;
    size_t bufcap = 0;
    ssize_t n;
    int lineno = 0, rc = 0;
    while ((n = getline(&buf, &bufcap, f)) >= 0) {
        lineno++;
        const char *p = trim(buf);
        if (!*p || *p == ';' || *p == '#') continue;
        cfg_secret s = {.secret = malloc((size_t)n + 1)};
        if (!s.secret) {
            say(&r, true, c->auth_file, lineno, "out of memory");
            rc = -1;
            break;
        }
        if (parse_quoted(&p, s.user, sizeof s.user) || parse_quoted(&p, s.secret, (size_t)n + 1)) {
            say(&r, true, c->auth_file, lineno, "syntax error: expected \"user\" \"password\"");
            free(s.secret);
            rc = -1;
            continue;
        }
        if (strlen(s.secret) > CFG_SECRET_MAX) {
            say(&r, true, c->auth_file, lineno, "the password of \"%s\" is longer than %d bytes",
                s.user, CFG_SECRET_MAX);
            free(s.secret);
            rc = -1;
            continue;
        }
        cfg_secret *arr = grow(c->secrets, c->nsecrets, sizeof *arr);
        if (!arr) {
            free(s.secret);
            break;
        }
        c->secrets = arr;
        c->secrets[c->nsecrets++] = s;
    }
    free(buf);
    fclose(f);
    index_build(&c->secret_ix, c->secrets, c->nsecrets, sizeof *c->secrets,
                offsetof(cfg_secret, user));
    return rc;
}

static void hba_warn(void *ud, const char *msg)
{
    say(ud, false, NULL, 0, "%s", msg);
}

int cfg_load_hba(cfg *c, void (*log)(void *ud, bool error, const char *msg), void *ud)
{
    reader r = {.c = c, .log = log, .ud = ud};
    hba_unref(c->hba);
    c->hba = NULL;
    if (c->auth_type != AUTH_HBA) return 0;
    if (!c->auth_hba_file[0]) {
        say(&r, true, NULL, 0, "auth_type = hba needs auth_hba_file (rules in pg_hba.conf's form)");
        return -1;
    }
    char err[600];
    c->hba = hba_load(c->auth_hba_file, c->auth_ident_file, hba_warn, &r, err, sizeof err);
    if (!c->hba) {
        say(&r, true, NULL, 0, "%s", err);
        return -1;
    }
    return 0;
}

int cfg_load(cfg *c, const char *path, void (*log)(void *ud, bool error, const char *msg), void *ud)
{
    set_defaults(c);
    snprintf(c->path, sizeof c->path, "%s", path);
    reader r = {.c = c, .log = log, .ud = ud};
    char section[CFG_NAME] = "";
    int rc = read_file(&r, path, section, sizeof section);
    if (rc == 0 && !r.saw_main) {
        say(&r, true, path, 0,
            "no [pgbouncer] section: a file without one would run every setting at its default");
        rc = -1;
    }
    if (rc == 0 && c->auth_file[0] && cfg_load_auth_file(c, log, ud)) rc = -1;
    if (rc == 0 && cfg_load_hba(c, log, ud)) rc = -1;
    if (rc == 0 && !strcmp(c->auth_dbname, "pgbouncer") && !cfg_find_db_exact(c, "pgbouncer")) {
        say(&r, true, path, 0, "cannot use the reserved \"pgbouncer\" database as an auth_dbname");
        rc = -1;
    }
    char why[256];
    if (rc == 0 && cfg_check_tls(c, why, sizeof why)) {
        say(&r, true, path, 0, "%s", why);
        rc = -1;
    }
    if (rc == 0 && c->auth_type == AUTH_ANY) {
        for (size_t i = 0; i < c->ndbs; i++)
            if (!c->dbs[i].user[0]) {
                say(&r, false, path, 0,
                    "auth_type = any: database \"%s\" has no user=, clients' names are used",
                    c->dbs[i].name);
            }
    }
    if (rc) cfg_free(c);
    return rc;
}

int cfg_sslmode(const char *mode)
{
    static const char *const modes[] = {"disable", "allow",     "prefer",
                                        "require", "verify-ca", "verify-full"};
    for (int i = 0; i < 6; i++)
        if (!strcasecmp(mode, modes[i])) return i;
    return -1;
}

int cfg_check_tls(const cfg *c, char *why, size_t len)
{
    int cm = cfg_sslmode(c->client_tls_sslmode), sm = cfg_sslmode(c->server_tls_sslmode);
    if (cm < 0 || sm < 0) {
        snprintf(why, len,
                 "%s_tls_sslmode must be disable, allow, prefer, require, verify-ca or verify-full",
                 cm < 0 ? "client" : "server");
        return -1;
    }
    if (cm > SSLMODE_DISABLE && (!c->client_tls_key_file[0] || !c->client_tls_cert_file[0])) {
        snprintf(why, len,
                 "client_tls_sslmode = %s needs client_tls_key_file and "
                 "client_tls_cert_file",
                 c->client_tls_sslmode);
        return -1;
    }
    if (cm >= SSLMODE_VERIFY_CA && !c->client_tls_ca_file[0]) {
        snprintf(why, len,
                 "client_tls_sslmode = %s needs client_tls_ca_file (to check client "
                 "certificates against)",
                 c->client_tls_sslmode);
        return -1;
    }
    int hm = cfg_sslmode(c->http_tls_sslmode);
    if (hm != SSLMODE_DISABLE && hm != SSLMODE_PREFER && hm != SSLMODE_REQUIRE) {
        snprintf(why, len, "http_tls_sslmode must be disable, prefer or require");
        return -1;
    }
    if (hm != SSLMODE_DISABLE &&
        !(c->http_tls_key_file[0] ? c->http_tls_cert_file[0]
                                  : c->client_tls_key_file[0] && c->client_tls_cert_file[0])) {
        snprintf(why, len,
                 "http_tls_sslmode = %s needs http_tls_key_file and http_tls_cert_file "
                 "(or client_tls_key_file and client_tls_cert_file)",
                 c->http_tls_sslmode);
        return -1;
    }
    if (c->auth_type == AUTH_CERT && (cm == SSLMODE_DISABLE || !c->client_tls_ca_file[0])) {
        snprintf(why, len,
                 "auth_type = cert needs TLS towards clients (client_tls_sslmode) and "
                 "client_tls_ca_file to check their certificates");
        return -1;
    }
    /* A lone server_tls_key_file or server_tls_cert_file is taken (SET sets
     * one at a time, as PgBouncer's tests do); weir presents a client
     * certificate to servers only once both are there (tls.c). */
    return 0;
}

int cfg_check_logins(const cfg *c, const cfg *running, char *why, size_t len)
{
    bool password =
        c->auth_type == AUTH_PLAIN || c->auth_type == AUTH_MD5 || c->auth_type == AUTH_SCRAM;
    if (!password || c->auth_user[0]) return 0;
    bool db_auth_user = false;
    for (size_t i = 0; i < c->ndbs; i++) db_auth_user = db_auth_user || c->dbs[i].auth_user[0];
    if (db_auth_user) return 0;
    if (!c->auth_file[0]) {
        snprintf(why, len,
                 "auth_type = %s needs auth_file or auth_user: without them every login, "
                 "the admin's too, would fail",
                 cfg_auth_type_name(c->auth_type));
        return -1;
    }
    if (!c->nsecrets && running && running->nsecrets) {
        snprintf(why, len,
                 "auth_file %s has no users (the running one has %zu): every login would fail",
                 c->auth_file, running->nsecrets);
        return -1;
    }
    return 0;
}

int cfg_copy(cfg *dst, const cfg *src)
{
    *dst = *src;
    dst->dbs = NULL;
    dst->users = NULL;
    dst->peers = NULL;
    dst->secrets = NULL;
    dst->tokens = NULL;
    dst->nsecrets = dst->ntokens = 0; /* until copied: what cfg_free may free */
    dst->db_ix = dst->user_ix = dst->secret_ix = (cfg_index){0}; /* src's: rebuilt below */
    hba_ref(dst->hba); /* shared: the rules never change once read */
    if (src->ndbs && !(dst->dbs = malloc(src->ndbs * sizeof *src->dbs))) goto fail;
    if (src->nusers && !(dst->users = malloc(src->nusers * sizeof *src->users))) goto fail;
    if (src->npeers && !(dst->peers = malloc(src->npeers * sizeof *src->peers))) goto fail;
    if (src->ntokens && !(dst->tokens = secrets_copy(src->tokens, src->ntokens))) goto fail;
    dst->ntokens = src->ntokens;
    if (src->nsecrets && !(dst->secrets = secrets_copy(src->secrets, src->nsecrets))) goto fail;
    dst->nsecrets = src->nsecrets;
    if (src->ndbs) memcpy(dst->dbs, src->dbs, src->ndbs * sizeof *src->dbs);
    if (src->nusers) memcpy(dst->users, src->users, src->nusers * sizeof *src->users);
    if (src->npeers) memcpy(dst->peers, src->peers, src->npeers * sizeof *src->peers);
    cfg_reindex(dst);
    return 0;
fail:
    cfg_free(dst);
    return -1;
}

/* Keys a running weir cannot take: sockets, process identity, threads. */
static const char *const fixed_keys[] = {
    "listen_addr",  "listen_port",    "unix_socket_dir", "unix_socket_mode", "user",
    "pidfile",      "logfile",        "workers",         "http_listen_addr", "http_listen_port",
    "so_reuseport", "listen_backlog", "syslog",          "syslog_ident",     "syslog_facility",
    "http_workers", "worker_sched"};

bool cfg_key_changeable(const char *name)
{
    for (size_t i = 0; i < sizeof fixed_keys / sizeof *fixed_keys; i++)
        if (!strcmp(fixed_keys[i], name)) return false;
    return true;
}

void cfg_free(cfg *c)
{
    if (!c) return;
    free(c->dbs);
    free(c->users);
    free(c->peers);
    secrets_free(c->secrets, c->nsecrets);
    secrets_free(c->tokens, c->ntokens);
    hba_unref(c->hba);
    index_free_all(c);
    c->hba = NULL;
    c->dbs = NULL;
    c->users = NULL;
    c->peers = NULL;
    c->secrets = NULL;
    c->tokens = NULL;
    c->ndbs = c->nusers = c->npeers = c->nsecrets = c->ntokens = 0;
    c->users_timeouts = false;
}

const cfg_db *cfg_find_db(const cfg *c, const char *name)
{
    const cfg_db *d = cfg_find_db_exact(c, name);
    return d ? d : cfg_find_db_exact(c, "*");
}

const cfg_peer *cfg_find_peer(const cfg *c, int id)
{
    for (size_t i = 0; i < c->npeers; i++)
        if (c->peers[i].id == id) return &c->peers[i];
    return NULL;
}

const cfg_db *cfg_find_db_exact(const cfg *c, const char *name)
{
    long i = index_find(&c->db_ix, c->dbs, c->ndbs, sizeof *c->dbs, offsetof(cfg_db, name), name);
    return i < 0 ? NULL : &c->dbs[i];
}

const cfg_user *cfg_find_user(const cfg *c, const char *name)
{
    long i = index_find(&c->user_ix, c->users, c->nusers, sizeof *c->users,
                        offsetof(cfg_user, name), name);
    return i < 0 ? NULL : &c->users[i];
}

const cfg_secret *cfg_find_secret(const cfg *c, const char *user)
{
    long i = index_find(&c->secret_ix, c->secrets, c->nsecrets, sizeof *c->secrets,
                        offsetof(cfg_secret, user), user);
    return i < 0 ? NULL : &c->secrets[i];
}

const cfg_secret *cfg_find_token(const cfg *c, const char *token)
{
    size_t tn = strlen(token);
    const cfg_secret *found = NULL;
    for (size_t i = 0; i < c->ntokens; i++) {
        const char *t = c->tokens[i].secret;
        size_t n = strlen(t);
        unsigned char diff = (unsigned char)(n != tn);
        for (size_t k = 0; k < n; k++) diff |= (unsigned char)(t[k] ^ (k < tn ? token[k] : 0));
        if (!diff && !found) found = &c->tokens[i];
    }
    return found;
}

static bool list_has(const char *list, const char *name, bool nocase)
{
    size_t n = strlen(name);
    const char *p = list;
    while (*p) {
        while (*p == ',' || isspace((unsigned char)*p)) p++;
        const char *s = p;
        while (*p && *p != ',') p++;
        const char *e = p;
        while (e > s && isspace((unsigned char)e[-1])) e--;
        if ((size_t)(e - s) == n && !(nocase ? strncasecmp(s, name, n) : strncmp(s, name, n)))
            return true;
    }
    return false;
}

bool cfg_list_has(const char *list, const char *name)
{
    return list_has(list, name, false);
}

bool cfg_list_has_nocase(const char *list, const char *name)
{
    return list_has(list, name, true);
}
