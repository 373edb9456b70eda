/* config.h — the server's configuration: pgbouncer.ini read as it is, plus weir's own keys. */
#ifndef WEIR_SERVER_CONFIG_H
#define WEIR_SERVER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CFG_NAME 64
#define CFG_STR  256
/* The longest password or secret weir takes (auth_file, auth_query, a
 * client's password message): PostgreSQL's longest authentication message. */
#define CFG_SECRET_MAX 65535

enum pool_mode { POOL_SESSION = 0, POOL_TRANSACTION = 1, POOL_STATEMENT = 2, POOL_UNSET = -1 };

enum auth_type {
    AUTH_ANY,   /* no password, and the [databases] user is used for every client */
    AUTH_TRUST, /* no password */
    AUTH_PLAIN, /* cleartext password */
    AUTH_MD5,
    AUTH_SCRAM,
    AUTH_CERT, /* a TLS client certificate whose CN is the user name */
    AUTH_PEER, /* the Unix socket peer's OS user name is the user name */
    AUTH_HBA,  /* per login, by auth_hba_file's first matching rule */
};

struct hba;

/* One [databases] entry. Numbers at -1 mean "not set: use [pgbouncer]'s". */
typedef struct cfg_db {
    char name[CFG_NAME];
    char host[CFG_STR];
    int port;
    char dbname[CFG_NAME];
    char user[CFG_NAME];
    char password[CFG_STR];
    char auth_user[CFG_NAME];
    char auth_dbname[CFG_NAME]; /* where auth_query runs ("": the client's database) */
    int pool_size, min_pool_size, reserve_pool, max_db_connections;
    int max_db_client_connections; /* logged-in clients of this database; -1: [pgbouncer]'s */
    int adaptive_pool;             /* 0/1; -1: [pgbouncer]'s */
    int64_t query_wait_timeout, server_lifetime; /* ms; -1: [pgbouncer]'s */
    char auth_query[CFG_STR];                    /* "": [pgbouncer]'s */
    char load_balance_hosts[CFG_NAME];           /* PgBouncer 1.24's; one host only here */
    int pool_mode;
    char connect_query[CFG_STR];
    char client_encoding[CFG_NAME], datestyle[CFG_NAME], timezone[CFG_NAME];
    char application_name[CFG_NAME];
    /* "sqlite:///path" (or a path relative to the config file): an SQLite
     * database, served over HTTP only */
    char sqlite_path[CFG_STR];
    bool sqlite_create;        /* create=1: make the file if missing */
    char sqlite_init[CFG_STR]; /* init=file.sql: run once, when the file is created */
    /* "mysql://user:pw@host:port/db?...": a MySQL or MariaDB database,
     * served over HTTP only (libweir's MySQL driver) */
    char mysql_url[CFG_STR];
} cfg_db;

/* A database the PostgreSQL door does not serve (SQLite, MySQL): HTTP only. */
static inline bool cfg_db_http_only(const cfg_db *d)
{
    return d->sqlite_path[0] || d->mysql_url[0];
}

/* One [users] entry. Numbers at -1 mean "not set: use [pgbouncer]'s". */
typedef struct cfg_user {
    char name[CFG_NAME];
    int pool_mode;
    int max_user_connections;
    int pool_size, reserve_pool, max_user_client_connections;
    int64_t query_timeout, idle_transaction_timeout, client_idle_timeout, transaction_timeout,
        query_wait_timeout; /* ms */
} cfg_user;

/* One [peers] entry: where cancel requests carrying its peer_id go. */
typedef struct cfg_peer {
    int id;             /* 1..16383 */
    char host[CFG_STR]; /* a name, an address, or a Unix socket directory */
    int port;
    int pool_size; /* cancel requests in flight to it at once; -1: default_pool_size */
} cfg_peer;

#define CFG_PEER_ID_MAX 16383

/* One auth_file line. */
typedef struct cfg_secret {
    char user[CFG_NAME];
    char *
        secret; /* owned: plain, "md5<32 hex>" or "SCRAM-SHA-256$<iter>:<salt>$<stored>:<server>" */
} cfg_secret;

/* Open addressing over an array's names: entry index + 1 per slot, 0 free;
 * no table (slot NULL) for a few entries or when memory ran out: then the
 * lookup walks the array. */
typedef struct cfg_index {
    uint32_t *slot;
    size_t mask;
    uint64_t seed;
} cfg_index;

/* [pgbouncer]. Durations in milliseconds. */
typedef struct cfg {
    char listen_addr[CFG_STR];
    int listen_port;
    char unix_socket_dir[CFG_STR];
    int unix_socket_mode;
    char logfile[CFG_STR], pidfile[CFG_STR];
    char user[CFG_NAME];
    int pool_mode;
    int auth_type;
    char auth_file[CFG_STR];
    char auth_hba_file[CFG_STR], auth_ident_file[CFG_STR];
    char auth_user[CFG_NAME];
    char auth_dbname[CFG_NAME]; /* where auth_query runs ("": the client's database) */
    char auth_query[CFG_STR];
    char admin_users[CFG_STR], stats_users[CFG_STR];
    char ignore_startup_parameters[CFG_STR];
    char track_extra_parameters[CFG_STR]; /* more parameters kept in line (client.c) */
    int max_client_conn, default_pool_size, min_pool_size, reserve_pool_size;
    int warmup_batch;     /* min_pool_size opened this many at a time per pool (0: no limit) */
    int64_t warmup_pause; /* ms between two batches */
    bool adaptive_pool;   /* pools size themselves up to their pool_size (the engine's adaptive) */
    int64_t adaptive_pool_wait, adaptive_pool_period; /* ms: its target wait, its period */
    int max_db_connections, max_user_connections;
    int64_t reserve_pool_timeout;
    char server_reset_query[CFG_STR];
    bool server_reset_query_always;
    char server_check_query[CFG_STR];
    char login_notify_message[CFG_STR]; /* a NOTICE to every client after its login */
    int64_t server_check_delay, server_lifetime, server_idle_timeout, server_connect_timeout,
        server_login_retry, query_timeout, query_wait_timeout, query_wait_notify,
        client_idle_timeout, client_login_timeout, idle_transaction_timeout, cancel_wait_timeout,
        suspend_timeout, stats_period;
    int max_packet_size, pkt_buf, listen_backlog;
    bool log_connections, log_disconnections, log_pooler_errors, log_stats, syslog;
    bool server_fast_close; /* session clients on a server marked closing go at once */
    char syslog_ident[CFG_NAME], syslog_facility[CFG_NAME];
    int verbose;
    bool tcp_keepalive, so_reuseport, application_name_add_host, disable_pqexec;
    int tcp_keepcnt, tcp_keepidle, tcp_keepintvl, tcp_user_timeout;
    char worker_sched[CFG_NAME]; /* "batch": workers run SCHED_BATCH (no wake-up preemption);
                                    default "normal" */
    bool worker_pack; /* light load: the workers' clients gather on worker 0 (worker.c, packing) */
    int max_prepared_statements;   /* per server connection, transaction/statement mode; 0 = off */
    int max_client_prepared_bytes; /* the texts of one client's named statements; 0 = no bound */
    int scram_iterations;          /* PBKDF2 rounds of the SCRAM secrets weir makes (plain auth_file
                                      passwords, and unknown users' stand-ins) */
    int max_db_client_connections, max_user_client_connections; /* 0 = no limit */
    int64_t transaction_timeout; /* a transaction open longer is ended; 0 = none */
    int peer_id; /* this process in a [peers] group (cancel keys carry it); 0 = no peering */
    int64_t pool_idle_timeout; /* a pool unused that long, with no server connection, is freed */
    /* TLS towards clients (PgBouncer's client_tls_*; tls.c) */
    char client_tls_sslmode[CFG_NAME]; /* disable, allow, prefer, require, verify-ca, verify-full */
    char client_tls_key_file[CFG_STR], client_tls_cert_file[CFG_STR], client_tls_ca_file[CFG_STR];
    char client_tls_protocols[CFG_STR], client_tls_ciphers[CFG_STR], client_tls13_ciphers[CFG_STR];
    char client_tls_ecdhcurve[CFG_NAME], client_tls_dheparams[CFG_NAME];
    /* TLS towards servers (server_tls_*) */
    char server_tls_sslmode[CFG_NAME];
    char server_tls_key_file[CFG_STR], server_tls_cert_file[CFG_STR], server_tls_ca_file[CFG_STR];
    char server_tls_protocols[CFG_STR], server_tls_ciphers[CFG_STR], server_tls13_ciphers[CFG_STR];
    /* weir's own */
    int workers;                     /* event-loop threads; 0 = number of cores */
    char http_listen_addr[CFG_STR];  /* the HTTP door (/metrics, /health, /ready); off unless set */
    char http_tls_sslmode[CFG_NAME]; /* disable, prefer (HTTPS and HTTP on one port), require */
    char http_tls_key_file[CFG_STR], http_tls_cert_file[CFG_STR]; /* "": the client_tls_* ones */
    int http_listen_port;
    int http_workers;               /* HTTP request threads; 0 = twice the cores, at least 4 */
    int http_max_body;              /* bytes of a request body (413 above) */
    int http_max_response;          /* bytes of a response */
    int http_max_rows;              /* rows of one result; 0 = no limit */
    bool http_metrics_pgbouncer;    /* /metrics also in pgbouncer_exporter's names */
    int64_t http_statement_timeout; /* per statement; 0 = none */
    int64_t http_session_idle_timeout;
    int64_t http_schema_ttl; /* GET .../schema served from the cache this long; 0: never cached */
    int http_max_sessions_per_user, http_max_inflight_per_user; /* 0 = no limit */
    int http_max_connections;     /* open HTTP connections; 0 = no limit */
    int64_t http_request_timeout; /* a request's head and body, from its first byte */
    int64_t http_idle_timeout;    /* a kept-alive connection between requests */

    /* A name's entry by hash (cfg_index): [databases], [users] and the
     * auth_file are looked up at every login, and have thousands of entries
     * in some setups. Built when the file is read, and for a copy. */
    cfg_index db_ix, user_ix, secret_ix;
    cfg_db *dbs;
    size_t ndbs;
    cfg_user *users;
    size_t nusers;
    bool users_timeouts; /* some [users] entry sets a timeout the workers' tick applies */
    cfg_peer *peers;
    size_t npeers;
    cfg_secret *secrets;
    size_t nsecrets;
    struct hba *hba;    /* auth_type = hba: the rules (shared by copies, by reference count) */
    cfg_secret *tokens; /* [http_tokens]: user = bearer token (user, secret = token) */
    size_t ntokens;
    char path[CFG_STR];
} cfg;

/* Read path into c (which is reset first). Warnings (unknown keys) and the
 * first error go to `log` as "file:line: message" lines; returns 0, or -1 on
 * an error, and then c holds nothing to free. */
int cfg_load(cfg *c, const char *path, void (*log)(void *ud, bool error, const char *msg),
             void *ud);
void cfg_free(cfg *c);
/* Reload auth_file into c (part of cfg_load; also on its own). 0 or -1. */
int cfg_load_auth_file(cfg *c, void (*log)(void *ud, bool error, const char *msg), void *ud);
/* (Re)load auth_hba_file and auth_ident_file into c when auth_type = hba
 * (part of cfg_load; also on its own). 0 or -1. */
int cfg_load_hba(cfg *c, void (*log)(void *ud, bool error, const char *msg), void *ud);

const cfg_db *cfg_find_db(const cfg *c, const char *name);       /* exact, else "*", else NULL */
const cfg_db *cfg_find_db_exact(const cfg *c, const char *name); /* no "*" fallback */
const cfg_user *cfg_find_user(const cfg *c, const char *name);
const cfg_peer *cfg_find_peer(const cfg *c, int id);
const cfg_secret *cfg_find_secret(const cfg *c, const char *user);
/* The [http_tokens] entry whose token is token (constant time per entry), or NULL. */
const cfg_secret *cfg_find_token(const cfg *c, const char *token);
/* sslmode names, as libpq's and PgBouncer's, in order of strength. */
enum {
    SSLMODE_DISABLE,
    SSLMODE_ALLOW,
    SSLMODE_PREFER,
    SSLMODE_REQUIRE,
    SSLMODE_VERIFY_CA,
    SSLMODE_VERIFY_FULL
};
int cfg_sslmode(const char *mode); /* SSLMODE_*, or -1 */
/* The TLS keys make sense together (cfg_load and reload call it). 0, or -1 with why. */
int cfg_check_tls(const cfg *c, char *why, size_t len);
/* Is name in a comma-separated list like admin_users? */
bool cfg_list_has(const char *list, const char *name);
/* The same, case aside (parameter names). */
bool cfg_list_has_nocase(const char *list, const char *name);

const char *cfg_pool_mode_name(int mode);
const char *cfg_auth_type_name(int type);

/* The [pgbouncer] keys in table order: the i-th name (and its default), or NULL. */
size_t cfg_key_count(void);
const char *cfg_key_at(size_t i, const char **def);
/* The value of [pgbouncer] key `name` as text (SHOW CONFIG). 0, or -1 if unknown. */
int cfg_get(const cfg *c, const char *name, char *buf, size_t len);
/* Set one [pgbouncer] key from text. 0, or -1 with a reason in why. */
int cfg_set(cfg *c, const char *name, const char *value, char *why, size_t whylen);
/* A deep copy (its own arrays); 0, or -1 without memory. */
int cfg_copy(cfg *dst, const cfg *src);
/* LOG_* of a syslog_facility name; -1 if unknown. */
int cfg_syslog_facility(const char *name);
/* Would c lock every user out (password authentication with no auth_file
 * and no auth_user, or an auth_file emptied while running has users)?
 * 0, or -1 with why set. running may be NULL. */
int cfg_check_logins(const cfg *c, const cfg *running, char *why, size_t len);
/* false for keys only a restart can change (sockets, user, workers, ...). */
bool cfg_key_changeable(const char *name);

#endif
