/* pools.c — server connection pools by (database, user): made on the first
 * login that needs one, with what the pool logs in with (target_conn), the
 * shared caps (max_db_connections, max_user_connections), and what the
 * console and a reload do to them: apply a new config, RECONNECT, PAUSE,
 * DISABLE, and the reserve pool. */
#include "core/pools.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/auth.h"
#include "core/io.h"
#include "core/log.h"
#include "core/server.h"
#include "core/worker.h"
#include "pg/prep.h"

static void pool_log(void *ud, weir_log_level level, const char *msg)
{
    spool *p = ud;
    /* adaptive_pool's size changes are said always, as the engine's other
     * INFO lines are not (validation failures, ...: with verbose) */
    if (level >= WEIR_LOG_WARN || p->srv->verbose ||
        (level == WEIR_LOG_INFO && strstr(msg, ": adaptive ")))
        srv_log(p->srv,
                level >= WEIR_LOG_ERROR  ? "ERROR"
                : level == WEIR_LOG_WARN ? "WARNING"
                                         : "LOG",
                "S: %s/%s %s", p->db, p->user, msg);
}

/* A server connection waiting in the pool must have nothing to say: if its
 * socket is readable the server closed it (or is about to), or sent
 * something unasked (a FATAL from an admin shutdown). */
static int pool_on_checkout(void *ud, weir_conn *c)
{
    (void)ud;
    /* Busy connections are not checked: a syscall per transaction is too
     * dear, and a server that died mid-burst shows on the first read. */
    if (weir_conn_idle_ms(c) < 50) return 0;
    const backend *be = weir_conn_handle(c);
    return io_quiet(be->fd) ? 0 : -1;
}

/* A new server connection: logged as PgBouncer's "new connection to
 * server" (log_connections), and, once past the pool's own size, as taken
 * from the reserve pool, one line each, as PgBouncer counts them. */
static int pool_on_create(void *ud, weir_conn *c)
{
    spool *p = ud;
    const backend *be = weir_conn_handle(c);
    if (atomic_load(&p->reserve_on)) {
        weir_pool_stats st;
        weir_pool_stats_get(p->pool, &st);
        if (st.total + st.pending > atomic_load(&p->size))
            srv_log(p->srv, "LOG", "S-%llu: %s/%s taking connection from reserve_pool",
                    (unsigned long long)be->id, p->db, p->user);
    }
    if (atomic_load(&p->srv->log_connections)) {
        char addr[64];
        int port = 0;
        sock_addr(be->fd, false, addr, sizeof addr, &port);
        bool v6 = strchr(addr, ':') != NULL; /* as PgBouncer: [::1]:port */
        srv_log(p->srv, "LOG", "S-%llu: %s/%s@%s:%d new connection to server (from %s%s%s:%d)",
                (unsigned long long)be->id, p->db, p->user, be->host[0] ? be->host : "unix",
                be->port, v6 ? "[" : "", addr, v6 ? "]" : "", port);
    }
    return 0;
}

/* A server connect that failed at one host (of a list, maybe), worded as
 * PgBouncer's log_disconnections line. */
static void pool_on_connect_fail(void *ud, const char *host, int port, const char *why)
{
    spool *p = ud;
    if (atomic_load(&p->srv->log_disconnections))
        srv_log(p->srv, "LOG", "S: %s/%s@%s:%d closing because: %s (age=0s)", p->db, p->user,
                host[0] ? host : "unix", port, why);
}

/* Before a server connection is closed: the door lets go of it (its
 * registrations in every worker). */
static void pool_on_destroy(void *ud, weir_conn *c)
{
    spool *p = ud;
    backend *be = weir_conn_handle(c);
    if (be && be->ext && p->srv->door->server_gone) p->srv->door->server_gone(be);
    /* PgBouncer's words for what the pool closes itself (log_disconnections).
     * The engine's "idle" covers an idle timeout and a pool shrinking (a
     * RELOAD, the reserve given back): told apart by how long it sat. Not
     * at shutdown, nor for a replication client's own pool going with it. */
    if (!be || p->private_pool || atomic_load(&p->srv->shutting_down) ||
        !atomic_load(&p->srv->log_disconnections))
        return;
    int r = weir_conn_close_reason(c);
    const char *why = NULL;
    if (be->id <= atomic_load(&p->close_mark_be)) /* RECONNECT, or the server moved */
        why = "database configuration changed";
    else if (r == WEIR_CLOSE_LIFETIME)
        why = "server lifetime over";
    else if (r == WEIR_CLOSE_EVICTED)
        why = "evicted";
    else if (r == WEIR_CLOSE_IDLE)
        why = p->idle_timeout_ms > 0 && weir_conn_idle_ms(c) >= p->idle_timeout_ms
                  ? "server idle timeout"
                  : "too many servers in the pool";
    if (why)
        srv_log(p->srv, "LOG", "S-%llu: %s/%s@%s:%d closing because: %s",
                (unsigned long long)be->id, p->db, p->user, be->host[0] ? be->host : "unix",
                be->port, why);
}

/* The shared limit called key with cap max, made on first use. Under pools_lock. */
static weir_limit *limit_get(server *s, const char *kind, const char *name, int max)
{
    char key[sizeof((named_limit *)0)->key];
    snprintf(key, sizeof key, "%s:%s", kind, name);
    for (named_limit *n = s->limits; n; n = n->next)
        if (!strcmp(n->key, key)) return n->limit;
    named_limit *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    if (weir_limit_create(&n->limit, max)) {
        free(n);
        return NULL;
    }
    snprintf(n->key, sizeof n->key, "%s", key);
    n->next = s->limits;
    s->limits = n;
    return n->limit;
}

/* The connection part of a pool's target: where, as whom, with what secret. */
static void target_conn(const cfg *k, const cfg_db *db, const char *dbname, const char *user,
                        const login_creds *cr, be_target *t)
{
    snprintf(t->host, sizeof t->host, "%s", db->host);
    t->round_robin = strcmp(db->load_balance_hosts, "disable") != 0;
    t->port = db->port;
    snprintf(t->dbname, sizeof t->dbname, "%s", db->dbname[0] ? db->dbname : dbname);
    snprintf(t->user, sizeof t->user, "%s", user);
    if (db->user[0] && db->password[0]) {
        (void)be_target_set_password(t, db->password);
    } else {
        /* A plain password from auth_file, else the database's, else an md5
         * hash from auth_file (enough for md5 servers only). */
        const cfg_secret *sec = cfg_find_secret(k, user);
        const char *sx = sec ? sec->secret : cr ? cr->secret : NULL;
        const char *cs = cr ? cr->secret : NULL; /* a password the client proved (HTTP Basic) */
        if (cs && *cs && !auth_is_scram_secret(cs) && !auth_is_md5_hash(cs) && sx &&
            (auth_is_scram_secret(sx) || auth_is_md5_hash(sx)))
            sx = cs;
        bool plain = sx && *sx && !auth_is_scram_secret(sx) && !auth_is_md5_hash(sx);
        if (plain || (sx && !db->password[0] && auth_is_md5_hash(sx)))
            (void)be_target_set_password(t, sx);
        else if (db->password[0])
            (void)be_target_set_password(t, db->password);
        t->scram_secret_only = !plain && sx && auth_is_scram_secret(sx);
        /* No plain password: log in with the client's own SCRAM keys. */
        if (!plain && cr && cr->client_key && cr->server_key) {
            t->have_keys = true;
            memcpy(t->client_key, cr->client_key, 32);
            memcpy(t->server_key, cr->server_key, 32);
        }
    }
}

/* query_wait_timeout for a pool: the user's, else the database's, else
 * [pgbouncer]'s (ms; none: huge). */
static int64_t pool_query_wait(const cfg *k, const cfg_db *db, const char *user)
{
    const cfg_user *u = cfg_find_user(k, user);
    int64_t qwt = u && u->query_wait_timeout >= 0 ? u->query_wait_timeout
                  : db->query_wait_timeout >= 0   ? db->query_wait_timeout
                                                  : k->query_wait_timeout;
    return qwt > 0 ? qwt : INT64_C(1) << 40;
}

/* adaptive_pool for a pool: the database's, else [pgbouncer]'s; its wait
 * and period are [pgbouncer]'s (ms; the engine's bounds: a wait of at least
 * 1 ms, a period of at least 10 ms). The cap stays pool_size (plus the
 * reserve while it is on); the floor is min_pool_size (at least 1). */
static void pool_adaptive(const cfg *k, const cfg_db *db, bool *on, int64_t *wait_ms,
                          int64_t *period_ms)
{
    *on = db->adaptive_pool >= 0 ? db->adaptive_pool == 1 : k->adaptive_pool;
    *wait_ms = k->adaptive_pool_wait >= 1 ? k->adaptive_pool_wait : 1;
    *period_ms = k->adaptive_pool_period >= 10 ? k->adaptive_pool_period : 10;
}

/* A pool's size, min_pool_size, reserve and mode from the config. */
static void pool_shape(const cfg *k, const cfg_db *db, const char *user, int *size, int *minp,
                       int *reserve, int *mode)
{
    /* As PgBouncer: the pool's user's setting ([users]; the forced user's
     * for a database with user=), else the database's, else [pgbouncer]'s. */
    const cfg_user *u = cfg_find_user(k, user);
    int sz = u && u->pool_size >= 0 ? u->pool_size
             : db->pool_size >= 0   ? db->pool_size
                                    : k->default_pool_size;
    *size = sz > 0 ? sz : 1;
    int m = db->min_pool_size >= 0 ? db->min_pool_size : k->min_pool_size;
    *minp = m < *size ? m : *size;
    *reserve = u && u->reserve_pool >= 0 ? u->reserve_pool
               : db->reserve_pool >= 0   ? db->reserve_pool
                                         : k->reserve_pool_size;
    *mode = u && u->pool_mode != POOL_UNSET ? u->pool_mode
            : db->pool_mode != POOL_UNSET   ? db->pool_mode
                                            : k->pool_mode;
}

/* A client that proved its password brings what the pool should log in
 * with when the config has no password for the user: its SCRAM keys, or the
 * password itself. If that differs from what the pool has (a new secret
 * after ALTER ROLE and RELOAD, or a pool first made by a login that had no
 * keys), the pool takes it, and a pool whose logins have been failing tries
 * again at once rather than answering with the old cached error. Under
 * pools_lock. */
static void pool_take_login(server *s, spool *p, const cfg_db *db, const login_creds *cr)
{
    if (!cr || (!cr->client_key && !(cr->secret && *cr->secret))) return;
    be_target *n = calloc(1, sizeof *n);
    if (!n) return;
    target_conn(&s->cfg, db, p->db, p->user, cr, n);
    const char *np = n->password ? n->password : "";
    be_target *t = p->target;
    pthread_mutex_lock(&t->mu);
    bool changed = (np[0] || n->have_keys) &&
                   (strcmp(np, t->password ? t->password : "") || n->have_keys != t->have_keys ||
                    (n->have_keys && (memcmp(n->client_key, t->client_key, 32) ||
                                      memcmp(n->server_key, t->server_key, 32))));
    if (changed) {
        (void)be_target_set_password(t, np);
        t->have_keys = n->have_keys;
        memcpy(t->client_key, n->client_key, 32);
        memcpy(t->server_key, n->server_key, 32);
    }
    pthread_mutex_unlock(&t->mu);
    (void)be_target_set_password(n, NULL);
    explicit_bzero(n, sizeof *n);
    free(n);
    if (changed) (void)weir_pool_retry_now(p->pool);
}

static spool *pool_make(server *s, const cfg_db *db, const char *dbname, const char *user,
                        const login_creds *cr, const repl_spec *repl, char *err, size_t errlen);

/* FNV-1a of the string s, from h: the hash of both tables of names here. */
static uint32_t fnv1a(uint32_t h, const char *s)
{
    for (const unsigned char *k = (const unsigned char *)s; *k; k++) h = (h ^ *k) * 16777619u;
    return h;
}

/* The chain of server.pool_ix that the pool of dbname and user is in: every
 * login looks its pool up, and a server may have thousands. Under pools_lock. */
static spool **pool_chain(server *s, const char *dbname, const char *user)
{
    uint32_t h = fnv1a(2166136261u, dbname);
    h = (h ^ 0xff) * 16777619u; /* (no name has this byte: "ab","c" and "a","bc" differ) */
    return &s->pool_ix[fnv1a(h, user) % POOL_BUCKETS];
}

/* Out of server.pool_ix. Under pools_lock. */
static void pool_unindex(server *s, spool *p)
{
    for (spool **pp = pool_chain(s, p->db, p->user); *pp; pp = &(*pp)->hnext)
        if (*pp == p) {
            *pp = p->hnext;
            return;
        }
}

spool *pool_get(server *s, const cfg_db *db, const char *dbname, const char *client_user,
                const char *as_user, const login_creds *cr, char *err, size_t errlen)
{
    const char *user = as_user ? as_user : db->user[0] ? db->user : client_user;
    if (strcmp(user, client_user)) cr = NULL; /* a client's credentials are for itself only */
    pthread_mutex_lock(&s->pools_lock);
    spool *p;
    spool **chain = pool_chain(s, dbname, user);
    for (p = *chain; p; p = p->hnext)
        if (!strcmp(p->db, dbname) && !strcmp(p->user, user)) break;
    if (p) {
        pool_pin(p);
        pool_take_login(s, p, db, cr);
        pthread_mutex_unlock(&s->pools_lock);
        return p;
    }
    /* The first pool of a database the "*" entry stands for, as PgBouncer's
     * auto-database */
    bool autodb = !strcmp(db->name, "*");
    for (spool *q = s->pools; autodb && q; q = q->next)
        if (!strcmp(q->db, dbname)) autodb = false;
    p = pool_make(s, db, dbname, user, cr, NULL, err, errlen);
    if (p) {
        atomic_store(&p->pins, 1);
        p->next = s->pools;
        s->pools = p;
        p->hnext = *chain;
        *chain = p;
    }
    pthread_mutex_unlock(&s->pools_lock);
    if (!p) return NULL;
    if (autodb) srv_log(s, "LOG", "registered new auto-database: %s", p->db);
    srv_log(s, "LOG", "new pool %s/%s (%s, %s pooling, size %d)", p->db, p->user,
            p->target->describe, cfg_pool_mode_name(p->mode), atomic_load(&p->size));
    return p;
}

spool *pool_replication(server *s, const cfg_db *db, const char *dbname, const char *client_user,
                        const login_creds *cr, const repl_spec *repl, char *err, size_t errlen)
{
    const char *user = db->user[0] ? db->user : client_user;
    if (strcmp(user, client_user)) cr = NULL;
    pthread_mutex_lock(&s->pools_lock);
    spool *p = pool_make(s, db, dbname, user, cr, repl, err, errlen);
    pthread_mutex_unlock(&s->pools_lock);
    return p;
}

static void spool_free(spool *p)
{
    weir_pool_destroy(p->pool);
    pthread_mutex_destroy(&p->lock);
    free(p->ws);
    free(p);
}

void pool_release_private(spool *p)
{
    if (!p || !p->private_pool) return;
    spool_free(p);
}

void pool_unpin(spool *p)
{
    if (!p || p->private_pool) return;
    atomic_store(&p->last_unpin_ms, weir_now_ms());
    atomic_fetch_sub(&p->pins, 1);
}

void pool_pin(spool *p)
{
    atomic_fetch_add(&p->pins, 1);
}

void pool_unpin_quiet(spool *p)
{
    atomic_fetch_sub(&p->pins, 1);
}

void pools_idle_tick(server *s, int64_t now)
{
    int64_t limit = s->cfg.pool_idle_timeout;
    static int64_t scanned; /* worker 0's tick only: every 250 ms is enough */
    if (limit <= 0 || now - scanned < 250) return;
    scanned = now;
    spool *dead = NULL;
    pthread_mutex_lock(&s->pools_lock);
    for (spool **pp = &s->pools; *pp;) {
        spool *p = *pp;
        weir_pool_stats st;
        int size = 0, minp = 0, reserve = 0, mode = 0;
        const cfg_db *db = cfg_find_db(&s->cfg, p->db);
        if (db) pool_shape(&s->cfg, db, p->user, &size, &minp, &reserve, &mode);
        /* Nobody can pin it from here: pool_get takes pools_lock too. */
        bool idle = atomic_load(&p->pins) == 0 && now - atomic_load(&p->last_unpin_ms) >= limit &&
                    (!db || minp <= 0) && weir_pool_stats_get(p->pool, &st) == 0 && st.total == 0 &&
                    st.pending == 0 && st.waiters == 0 && !st.paused;
        if (!idle) {
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        pool_unindex(s, p);
        p->next = dead;
        dead = p;
    }
    pthread_mutex_unlock(&s->pools_lock);
    while (dead) {
        spool *p = dead;
        dead = p->next;
        srv_log(s, "LOG", "cleaning up idle pool %s/%s", p->db, p->user);
        spool_free(p); /* its figures leave SHOW STATS' sums with it, as in PgBouncer */
    }
}

/* A new pool, under pools_lock; repl: a replication client's own (one
 * server connection with the client's startup parameters, closed after it,
 * counted against pool_size with the other replication connections of the
 * same database and user). */
static spool *pool_make(server *s, const cfg_db *db, const char *dbname, const char *user,
                        const login_creds *cr, const repl_spec *repl, char *err, size_t errlen)
{
    const cfg *k = &s->cfg;
    spool *p = calloc(1, sizeof *p);
    be_target *t = calloc(1, sizeof *t);
    size_t wsz = sizeof(wstats) * (size_t)(s->nstat > 0 ? s->nstat : 1);
    wstats *ws = aligned_alloc(_Alignof(wstats), wsz);
    if (!p || !t || !ws) {
        free(p);
        free(t);
        free(ws);
        snprintf(err, errlen, "no memory for pool");
        return NULL;
    }
    p->srv = s;
    memset(ws, 0, wsz);
    p->ws = ws;
    snprintf(p->db, sizeof p->db, "%s", dbname);
    snprintf(p->user, sizeof p->user, "%s", user);
    int size, minp, reserve;
    pool_shape(k, db, user, &size, &minp, &reserve, &p->mode);
    const int shared_max = size + reserve; /* before a replication pool drops reserve */
    pthread_mutex_init(&p->lock, NULL);

    pthread_mutex_init(&t->mu, NULL);
    pthread_mutex_init(&t->probe_mu, NULL);
    target_conn(k, db, dbname, user, cr, t);
    /* PgBouncer 1.25: "<empty>" sends an empty query, "" checks nothing */
    t->check = k->server_check_query[0] != 0;
    snprintf(t->check_query, sizeof t->check_query, "%s",
             strcmp(k->server_check_query, "<empty>") ? k->server_check_query : "");
    snprintf(t->reset_query, sizeof t->reset_query, "%s", k->server_reset_query);
    snprintf(t->connect_query, sizeof t->connect_query, "%s", db->connect_query);
    t->io_timeout_ms = k->server_connect_timeout > 0 ? k->server_connect_timeout : 15000;
    t->on_fail = pool_on_connect_fail;
    t->on_fail_ud = p;
    t->tcp_keepalive = k->tcp_keepalive;
    t->sslmode = cfg_sslmode(k->server_tls_sslmode);
    t->tls = s->tls_out;
    snprintf(t->describe, sizeof t->describe, "postgres://%.60s@%.120s:%d/%.60s", t->user,
             t->host[0] ? t->host : "/tmp", t->port, t->dbname);
    if (repl) { /* a walsender takes no SQL of weir's own */
        t->check = false;
        t->reset_query[0] = t->connect_query[0] = 0;
        if (!(t->startup_extra = malloc(repl->len ? repl->len : 1))) {
            be_target_free(t);
            free(ws);
            free(p);
            snprintf(err, errlen, "no memory for pool");
            return NULL;
        }
        memcpy(t->startup_extra, repl->params, repl->len);
        t->startup_extra_len = repl->len;
        p->mode = POOL_SESSION;
        p->private_pool = true;
    }

    weir_options o;
    weir_options_init(&o);
    snprintf(o.name, sizeof o.name, "%s/%s", p->db, p->user);
    o.max_size = size;
    /* min_pool_size is set once the shared caps are attached (below): the
     * engine starts filling min_idle at once, and connects begun before a
     * cap is attached would be over it (max_db_connections = 2 with
     * min_pool_size = 5 opened 3). */
    o.min_idle = 0;
    p->query_wait_ms = pool_query_wait(k, db, user);
    o.acquire_timeout_ms = p->query_wait_ms;
    o.connect_timeout_ms = k->server_connect_timeout > 0 ? k->server_connect_timeout : 15000;
    o.idle_timeout_ms = k->server_idle_timeout;
    p->idle_timeout_ms = o.idle_timeout_ms; /* for the close lines (a pool option: fixed) */
    o.max_lifetime_ms = db->server_lifetime >= 0 ? db->server_lifetime : k->server_lifetime;
    atomic_store(&p->use_once, o.max_lifetime_ms == 0);
    o.validate_idle_after_ms = k->server_check_query[0] ? k->server_check_delay : -1;
    /* As PgBouncer: one attempt per server_login_retry after a failure, not
     * a quick ramp that would knock on a refusing server many times a second */
    int64_t retry = k->server_login_retry > 0 ? k->server_login_retry : 1;
    o.backoff_min_ms = retry;
    o.backoff_max_ms = retry;
    /* A refused login (the server said no: a wrong password, no such
     * database, a certificate that does not verify) fails the clients
     * waiting at once (PgBouncer's kill_pool_logins), and those that come
     * while the pool has no usable connection get that error at once too
     * (its check_fast_fail), until an attempt succeeds: the creator tries
     * again every server_login_retry. While the server cannot be reached,
     * or says it is starting up or shutting down (57P03, backend.c), the
     * pool is not down: clients wait through the retries, up to
     * query_wait_timeout, so a PostgreSQL restart is transparent. */
    o.fail_fast = true;
    o.wait_while_down = false;
    o.fail_fast_unreachable = false;
    if (repl) {
        snprintf(o.name, sizeof o.name, "%.50s/%.50s (replication)", p->db, p->user);
        o.max_size = 1;
        o.min_idle = 0;
        o.validate_idle_after_ms = -1;
        atomic_store(&p->use_once, true);
        reserve = 0;
    }
    o.creator_threads = o.max_size < 4 ? o.max_size : 4;
    o.warmup_batch = k->warmup_batch;
    o.warmup_pause_ms = k->warmup_pause;
    if (!repl) pool_adaptive(k, db, &o.adaptive, &o.adaptive_wait_ms, &o.adaptive_period_ms);
    weir_hooks h = {.ud = p,
                    .on_log = pool_log,
                    .on_checkout = pool_on_checkout,
                    .on_create = pool_on_create,
                    .on_destroy = pool_on_destroy};
    int rc = weir_pool_create(&p->pool, &be_driver, t, &o, &h);
    if (rc) {
        pthread_mutex_destroy(&p->lock);
        free(p->ws);
        free(p);
        snprintf(err, errlen, "cannot create pool: %s", weir_strerror(rc));
        return NULL;
    }
    /* /metrics: one label scheme on the page, the engine's families too */
    const char *ln[2] = {"database", "user"}, *lv[2] = {p->db, p->user};
    (void)weir_pool_set_metric_labels(p->pool, ln, lv, 2);
    p->target = t;
    p->size = (int)o.max_size;
    p->reserve = reserve;
    p->reserve_timeout = k->reserve_pool_timeout;
    /* Shared caps, attached before the pool opens anything (no checkout can
     * come before pool_make returns, and min_idle is 0 until below). */
    int maxdb = db->max_db_connections >= 0 ? db->max_db_connections : k->max_db_connections;
    const cfg_user *pu = cfg_find_user(k, user);
    int maxuser =
        pu && pu->max_user_connections >= 0 ? pu->max_user_connections : k->max_user_connections;
    weir_limit *ldb = maxdb > 0 ? limit_get(s, "db", dbname, maxdb) : NULL;
    weir_limit *luser = maxuser > 0 ? limit_get(s, "user", user, maxuser) : NULL;
    if ((maxdb > 0 && (!ldb || weir_pool_attach_limit(p->pool, ldb))) ||
        (maxuser > 0 && (!luser || weir_pool_attach_limit(p->pool, luser))))
        srv_log(s, "WARNING", "pool %s/%s: cannot apply max_db_connections/max_user_connections",
                p->db, p->user);
    char key[CFG_NAME];
    snprintf(key, sizeof key, "%.30s/%.30s", dbname, user);
    if (repl) { /* replication connections of (db, user) share its pool_size */
        weir_limit *lr = limit_get(s, "repl", key, size);
        if (!lr || weir_pool_attach_limit(p->pool, lr))
            srv_log(s, "WARNING", "pool %s/%s: cannot apply pool_size to replication", p->db,
                    p->user);
    }
    /* ... and with the normal connections, reserve included: a replication
     * client on a full pool makes an idle normal connection close
     * ("evicted"), as in PgBouncer */
    p->size_limit = limit_get(s, "size", key, shared_max);
    if (!p->size_limit || weir_pool_attach_limit(p->pool, p->size_limit)) {
        p->size_limit = NULL;
        srv_log(s, "WARNING", "pool %s/%s: cannot share pool_size with replication", p->db,
                p->user);
    }
    if (!repl && minp > 0) (void)weir_pool_resize(p->pool, o.max_size, minp);
    return p;
}

void pools_destroy(server *s)
{
    spool *p = s->pools;
    s->pools = NULL;
    memset(s->pool_ix, 0, sizeof s->pool_ix);
    while (p) {
        spool *next = p->next;
        spool_free(p);
        p = next;
    }
    while (s->limits) {
        named_limit *n = s->limits;
        s->limits = n->next;
        weir_limit_destroy(n->limit);
        free(n);
    }
    for (int i = 0; i < COUNT_BUCKETS; i++)
        while (s->counts[i]) {
            named_count *n = s->counts[i];
            s->counts[i] = n->next;
            free(n);
        }
}

/* After a reload or SET, with every worker held: bring each pool in line
 * with s->cfg (size, min_pool_size, reserve, mode, and the server it goes
 * to: a pool whose host, port, dbname or password changed closes its
 * connections as they come back, like PgBouncer's RECONNECT). */
static void mark_closing(spool *p);

void pools_apply_config(server *s, bool tls_out)
{
    const cfg *k = &s->cfg;
    pthread_mutex_lock(&s->pools_lock);
    for (spool *p = s->pools; p; p = p->next) {
        const cfg_db *db = cfg_find_db(k, p->db);
        if (!db) {
            srv_log(s, "LOG", "pool %s/%s: database no longer in the config; new logins refused",
                    p->db, p->user);
            continue;
        }
        int size = 0, minp = 0, reserve = 0, mode = 0;
        pool_shape(k, db, p->user, &size, &minp, &reserve, &mode);
        if (size != p->size || reserve != p->reserve) {
            int64_t cap = size + (atomic_load(&p->reserve_on) ? reserve : 0);
            if (p->size_limit) (void)weir_limit_set_max(p->size_limit, size + reserve);
            (void)weir_pool_resize(p->pool, cap, minp);
            srv_log(s, "LOG", "pool %s/%s: size %d -> %d", p->db, p->user, p->size, size);
        }
        p->size = size;
        p->reserve = reserve;
        p->reserve_timeout = k->reserve_pool_timeout;
        if (!p->private_pool) {
            bool on;
            int64_t wait, period;
            pool_adaptive(k, db, &on, &wait, &period);
            (void)weir_pool_set_adaptive(p->pool, on, wait, period);
        }
        p->query_wait_ms = pool_query_wait(k, db, p->user); /* workers are held */
        p->mode = mode;
        int64_t lifetime = db->server_lifetime >= 0 ? db->server_lifetime : k->server_lifetime;
        atomic_store(&p->use_once, lifetime == 0);
        be_target *t = p->target, n;
        memset(&n, 0, sizeof n);
        target_conn(k, db, p->db, p->user, NULL, &n);
        pthread_mutex_lock(&t->mu);
        int sslmode = cfg_sslmode(k->server_tls_sslmode);
        bool moved = tls_out || sslmode != t->sslmode || strcmp(n.host, t->host) ||
                     n.port != t->port || strcmp(n.dbname, t->dbname) ||
                     (n.password && strcmp(n.password, t->password ? t->password : ""));
        t->round_robin = n.round_robin;
        if (moved) {
            t->sslmode = sslmode;
            t->host_next = 0;
            t->host_ok = false;
            snprintf(t->host, sizeof t->host, "%s", n.host);
            t->port = n.port;
            snprintf(t->dbname, sizeof t->dbname, "%s", n.dbname);
            if (n.password) (void)be_target_set_password(t, n.password);
        }
        pthread_mutex_unlock(&t->mu);
        (void)be_target_set_password(&n, NULL);
        if (moved) {
            srv_log(s, "LOG",
                    "pool %s/%s: its server address, database, password or TLS changed; "
                    "reconnecting",
                    p->db, p->user);
            mark_closing(p);
            (void)weir_pool_evict_all(p->pool);
            (void)weir_pool_retry_now(p->pool); /* a login failure cached before is moot */
        }
    }
    pthread_mutex_unlock(&s->pools_lock);
}

void pools_warm(server *s)
{
    const cfg *k = &s->cfg;
    for (size_t i = 0; i < k->ndbs; i++) {
        const cfg_db *db = &k->dbs[i];
        int minp = db->min_pool_size >= 0 ? db->min_pool_size : k->min_pool_size;
        if (!db->user[0] || minp <= 0 || cfg_db_http_only(db) || !strcmp(db->name, "*")) continue;
        char err[256];
        spool *p = pool_get(s, db, db->name, db->user, NULL, NULL, err, sizeof err);
        if (!p)
            srv_log(s, "WARNING", "pool %s/%s: cannot make it for min_pool_size: %s", db->name,
                    db->user, err);
        pool_unpin(p);
    }
}

static void max_id(const weir_conn_info *ci, void *ud)
{
    uint64_t *m = ud;
    if (ci->id > m[0]) m[0] = ci->id;
    const backend *be = ci->handle;
    if (be && be->id > m[1]) m[1] = be->id;
}

/* The connections open now are the ones closing (ids only grow). */
static void mark_closing(spool *p)
{
    uint64_t m[2] = {0, 0};
    (void)weir_pool_foreach_conn(p->pool, max_id, m);
    atomic_store(&p->close_mark, m[0]);
    atomic_store(&p->close_mark_be, m[1]);
}

bool pools_reconnect(server *s, const char *db)
{
    if (db[0] && !cfg_find_db_exact(&s->cfg, db)) return false;
    pthread_mutex_lock(&s->pools_lock);
    for (spool *p = s->pools; p; p = p->next)
        if (!db[0] || !strcmp(p->db, db)) {
            mark_closing(p);
            (void)weir_pool_evict_all(p->pool);
        }
    pthread_mutex_unlock(&s->pools_lock);
    srv_log(s, "LOG", "RECONNECT %s: server connections close as they are released",
            db[0] ? db : "every pool");
    return true;
}

typedef struct old_conns {
    uint64_t mark;
    bool any;
} old_conns;

static void find_old(const weir_conn_info *ci, void *ud)
{
    old_conns *o = ud;
    if (ci->id <= o->mark) o->any = true;
}

bool pools_closing(server *s, const char *db)
{
    bool any = false;
    pthread_mutex_lock(&s->pools_lock);
    for (spool *p = s->pools; p && !any; p = p->next) {
        if (db[0] && strcmp(p->db, db)) continue;
        old_conns o = {atomic_load(&p->close_mark), false};
        if (o.mark) (void)weir_pool_foreach_conn(p->pool, find_old, &o);
        any = o.any;
    }
    pthread_mutex_unlock(&s->pools_lock);
    return any;
}

bool pools_quiet(server *s, const char *db)
{
    bool quiet = true;
    pthread_mutex_lock(&s->pools_lock);
    for (spool *p = s->pools; p && quiet; p = p->next) {
        weir_pool_stats st;
        if ((!db[0] || !strcmp(p->db, db)) && weir_pool_stats_get(p->pool, &st) == 0)
            quiet = st.active == 0 && st.pending == 0;
    }
    pthread_mutex_unlock(&s->pools_lock);
    return quiet;
}

bool db_disabled(server *s, const char *db)
{
    bool off = false;
    pthread_mutex_lock(&s->pools_lock);
    for (size_t i = 0; i < s->ndisabled && !off; i++) off = !strcmp(s->disabled[i], db);
    pthread_mutex_unlock(&s->pools_lock);
    return off;
}

bool db_set_disabled(server *s, const char *db, bool off)
{
    if (!db[0] || !cfg_find_db_exact(&s->cfg, db)) return false;
    pthread_mutex_lock(&s->pools_lock);
    size_t i = 0;
    while (i < s->ndisabled && strcmp(s->disabled[i], db)) i++;
    if (off && i == s->ndisabled) {
        char(*d)[CFG_NAME] = realloc(s->disabled, (s->ndisabled + 1) * sizeof *d);
        if (d) {
            s->disabled = d;
            snprintf(d[s->ndisabled++], CFG_NAME, "%s", db);
        }
    } else if (!off && i < s->ndisabled) {
        memmove(&s->disabled[i], &s->disabled[i + 1], (s->ndisabled - i - 1) * sizeof *s->disabled);
        s->ndisabled--;
    }
    pthread_mutex_unlock(&s->pools_lock);
    srv_log(s, "LOG", "%s %s (admin console)", off ? "DISABLE" : "ENABLE", db);
    return true;
}

bool pools_pause(server *s, const char *db, bool pause, const char *why)
{
    if (db[0] && !cfg_find_db(&s->cfg, db)) return false;
    if (!db[0]) atomic_store(&s->paused_all, pause);
    pthread_mutex_lock(&s->pools_lock);
    for (spool *p = s->pools; p; p = p->next)
        if (!db[0] || !strcmp(p->db, db))
            (void)(pause ? weir_pool_pause(p->pool) : weir_pool_resume(p->pool));
    pthread_mutex_unlock(&s->pools_lock);
    srv_log(s, "LOG", "%s %s (%s)", pause ? "paused" : "resumed", db[0] ? db : "every pool", why);
    return true;
}

/* A client of p has waited reserve_pool_timeout: open the reserve. */
void pool_reserve_wanted(spool *p, int64_t now)
{
    if (p->reserve <= 0) return;
    atomic_store(&p->last_long_wait_ms, now);
    bool off = false;
    if (!atomic_compare_exchange_strong(&p->reserve_on, &off, true)) return;
    srv_log(p->srv, "LOG", "S: %s/%s taking connections from reserve_pool (up to %d more)", p->db,
            p->user, p->reserve);
    (void)weir_pool_resize(p->pool, p->size + p->reserve, -1);
}

/* Give reserves back once nobody has waited long for reserve_pool_timeout. */
void pools_reserve_tick(server *s, int64_t now)
{
    pthread_mutex_lock(&s->pools_lock);
    for (spool *p = s->pools; p; p = p->next) {
        if (!atomic_load(&p->reserve_on)) continue;
        int64_t quiet = p->reserve_timeout > 1000 ? p->reserve_timeout : 1000;
        if (now - atomic_load(&p->last_long_wait_ms) < quiet) continue;
        bool on = true;
        if (!atomic_compare_exchange_strong(&p->reserve_on, &on, false)) continue;
        (void)weir_pool_resize(p->pool, p->size, -1);
        srv_log(s, "LOG", "S: %s/%s reserve_pool given back", p->db, p->user);
    }
    pthread_mutex_unlock(&s->pools_lock);
}

spool *pool_auth_query(server *s, const cfg_db *db, const char *dbname, const char *client_user,
                       const char *auth_user, int *why, char *err, size_t errlen)
{
    if (why) *why = AUTHDB_OTHER;
    /* The console (no [databases] entry of its name: db is "*") takes
     * [pgbouncer]'s auth_dbname first, as PgBouncer; a database its own. */
    bool console = (!strcmp(dbname, "pgbouncer") || !strcmp(dbname, "weir")) &&
                   !cfg_find_db_exact(&s->cfg, dbname);
    const char *adb = console ? (s->cfg.auth_dbname[0] ? s->cfg.auth_dbname : db->auth_dbname)
                              : (db->auth_dbname[0] ? db->auth_dbname : s->cfg.auth_dbname);
    if (!strcmp(adb, "pgbouncer") && !cfg_find_db_exact(&s->cfg, adb)) {
        snprintf(err, errlen, "cannot use the reserved \"pgbouncer\" database as an auth_dbname");
        if (why) *why = AUTHDB_NOT_CONFIGURED;
        return NULL;
    }
    if (!adb[0]) return pool_get(s, db, dbname, client_user, auth_user, NULL, err, errlen);
    const cfg_db *a = cfg_find_db(&s->cfg, adb);
    if (!a || cfg_db_http_only(a)) {
        snprintf(err, errlen, "authentication database \"%s\" is not configured", adb);
        if (why) *why = AUTHDB_NOT_CONFIGURED;
        return NULL;
    }
    if (db_disabled(s, adb)) {
        snprintf(err, errlen, "authentication database \"%s\" is disabled", adb);
        if (why) *why = AUTHDB_DISABLED;
        return NULL;
    }
    return pool_get(s, a, adb, client_user, auth_user, NULL, err, errlen);
}

/* The chain of s->counts that key ("db:NAME", "user:NAME") belongs to
 * (FNV-1a). */
static named_count **count_chain(server *s, const char *key)
{
    return &s->counts[fnv1a(2166136261u, key) % COUNT_BUCKETS];
}

/* The count called kind:name, or NULL. Under pools_lock. */
static named_count *count_find(server *s, const char *key)
{
    for (named_count *n = *count_chain(s, key); n; n = n->next)
        if (!strcmp(n->key, key)) return n;
    return NULL;
}

/* The count of logged-in clients called kind:name, made on first use (n 0;
 * count_put frees it while n is 0). Under pools_lock. */
static named_count *count_get(server *s, const char *kind, const char *name)
{
    char key[sizeof((named_count *)0)->key];
    snprintf(key, sizeof key, "%s:%s", kind, name);
    named_count *n = count_find(s, key);
    if (n) return n;
    if (!(n = calloc(1, sizeof *n))) return NULL;
    snprintf(n->key, sizeof n->key, "%s", key);
    named_count **head = count_chain(s, key);
    n->next = *head;
    if (n->next) n->next->pprev = &n->next;
    n->pprev = head;
    *head = n;
    return n;
}

/* Done with n (NULL: nothing): freed when no client is counted in it.
 * Under pools_lock. */
static void count_put(named_count *n)
{
    if (!n || n->n > 0) return;
    *n->pprev = n->next;
    if (n->next) n->next->pprev = n->pprev;
    free(n);
}

typedef struct namebag {
    char (*v)[CFG_NAME];
    size_t n;
} namebag;

static void bag_add(namebag *b, const char *name)
{
    for (size_t i = 0; i < b->n; i++)
        if (!strcmp(b->v[i], name)) return;
    char(*nv)[CFG_NAME] = realloc(b->v, (b->n + 1) * sizeof *nv);
    if (!nv) return;
    b->v = nv;
    snprintf(b->v[b->n++], CFG_NAME, "%s", name);
}

void users_known(server *s, void (*fn)(void *ud, const char *name), void *ud)
{
    const cfg *k = &s->cfg;
    namebag b = {0};
    for (size_t i = 0; i < k->nusers; i++) bag_add(&b, k->users[i].name);
    for (size_t i = 0; i < k->nsecrets; i++) bag_add(&b, k->secrets[i].user);
    for (int i = 0; i < COUNT_BUCKETS; i++)
        for (named_count *n = s->counts[i]; n; n = n->next)
            if (!strncmp(n->key, "user:", 5)) bag_add(&b, n->key + 5);
    for (spool *p = s->pools; p; p = p->next) bag_add(&b, p->user);
    for (size_t i = 0; i < b.n; i++) fn(ud, b.v[i]);
    free(b.v);
}

int clients_counted(server *s, const char *kind, const char *name)
{
    char key[sizeof((named_count *)0)->key];
    snprintf(key, sizeof key, "%s:%s", kind, name);
    named_count *n = count_find(s, key);
    return n ? n->n : 0;
}

int clients_admit(server *s, const char *db, const char *user, bool unlimited, named_count **dbc,
                  named_count **userc, char *why, size_t len)
{
    const cfg *k = &s->cfg;
    const cfg_db *d = cfg_find_db(k, db);
    const cfg_user *u = cfg_find_user(k, user);
    int maxdb = d && d->max_db_client_connections >= 0 ? d->max_db_client_connections
                                                       : k->max_db_client_connections;
    int maxuser = u && u->max_user_client_connections >= 0 ? u->max_user_client_connections
                                                           : k->max_user_client_connections;
    *dbc = *userc = NULL;
    pthread_mutex_lock(&s->pools_lock);
    named_count *a = count_get(s, "db", db), *b = count_get(s, "user", user);
    int rc = 0;
    if (!a || !b) {
        snprintf(why, len, "out of memory");
        rc = -1;
    } else if (!unlimited && maxdb > 0 && a->n >= maxdb) {
        snprintf(why, len, "no more connections allowed (max_db_client_connections)");
        rc = -1;
    } else if (!unlimited && maxuser > 0 && b->n >= maxuser) {
        snprintf(why, len, "no more connections allowed (max_user_client_connections)");
        rc = -1;
    } else {
        a->n++;
        b->n++;
        *dbc = a;
        *userc = b;
    }
    if (rc) { /* the entries this refusal made go again */
        count_put(a);
        count_put(b);
    }
    pthread_mutex_unlock(&s->pools_lock);
    return rc;
}

void clients_leave(server *s, named_count *dbc, named_count *userc)
{
    if (!dbc) return;
    pthread_mutex_lock(&s->pools_lock);
    dbc->n--;
    userc->n--;
    count_put(dbc);
    count_put(userc);
    pthread_mutex_unlock(&s->pools_lock);
}
