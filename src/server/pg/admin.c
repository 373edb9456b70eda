/* admin.c — the admin console: the virtual database "pgbouncer" (also "weir").
 *
 * Simple-query commands with PgBouncer's names and column sets, so that psql
 * habits, dashboards and exporters keep working. Each command's answer is
 * written into the client's output buffer as RowDescription, DataRows and
 * CommandComplete (or a NOTICE, or an ErrorResponse); the caller adds
 * ReadyForQuery. Users in stats_users may only SHOW.
 */
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "pg/admin.h"

#include "core/io.h"
#include "core/log.h"
#include "core/pools.h"
#include "core/reload.h"
#include "core/server.h"
#include "core/stats.h"
#include "core/worker.h"
#include "pg/client.h"
#include "pg/peering.h"

/* Column types as PgBouncer 1.25 sends them (typed clients notice):
 * counts and settings int4, statistics numeric, names and times text. */
#define T_TEXT    25
#define T_INT8    20
#define T_INT4    23
#define T_NUMERIC 1700

typedef struct col {
    const char *name;
    int type;
} col;

/* RowDescription */
static void put_cols(pq_buf *o, const col *c, int n)
{
    uint8_t body[4096];
    size_t off = 2;
    pq_set16(body, (uint16_t)n);
    for (int i = 0; i < n && off + 64 < sizeof body; i++) {
        size_t l = strlen(c[i].name) + 1;
        memcpy(body + off, c[i].name, l);
        off += l;
        pq_set32(body + off, 0); /* table */
        pq_set16(body + off + 4, 0);
        pq_set32(body + off + 6, (uint32_t)c[i].type);
        pq_set16(body + off + 10, c[i].type == T_INT8 ? 8 : c[i].type == T_INT4 ? 4 : 0xFFFF);
        pq_set32(body + off + 12, 0xFFFFFFFFu); /* typmod -1 */
        pq_set16(body + off + 16, 0);           /* text format */
        off += 18;
    }
    (void)pq_put_msg(o, 'T', body, (uint32_t)off);
}

/* DataRow of n text values (NULL = SQL NULL) */
static void put_row(pq_buf *o, const char *const *v, int n)
{
    size_t len = 2;
    for (int i = 0; i < n; i++) len += 4 + (v[i] ? strlen(v[i]) : 0);
    uint8_t *body = malloc(len);
    if (!body) return;
    pq_set16(body, (uint16_t)n);
    size_t off = 2;
    for (int i = 0; i < n; i++) {
        if (!v[i]) {
            pq_set32(body + off, 0xFFFFFFFFu);
            off += 4;
            continue;
        }
        size_t l = strlen(v[i]);
        pq_set32(body + off, (uint32_t)l);
        memcpy(body + off + 4, v[i], l);
        off += 4 + l;
    }
    (void)pq_put_msg(o, 'D', body, (uint32_t)off);
    free(body);
}

static void put_complete(pq_buf *o, const char *tag)
{
    (void)pq_put_msg(o, 'C', tag, (uint32_t)strlen(tag) + 1);
}

static void put_error(pq_buf *o, const char *sqlstate, const char *msg)
{
    (void)pq_put_error(o, "ERROR", sqlstate, msg);
}

/* NoticeResponse with a message and a detail */
static void put_notice(pq_buf *o, const char *msg, const char *detail)
{
    pq_buf b = {0};
    char hdr[] = "SNOTICE\0VNOTICE\0C00000";
    (void)pq_put_raw(&b, hdr, sizeof hdr);
    (void)pq_put_raw(&b, "M", 1);
    (void)pq_put_raw(&b, msg, (uint32_t)strlen(msg) + 1);
    (void)pq_put_raw(&b, "D", 1);
    (void)pq_put_raw(&b, detail, (uint32_t)strlen(detail) + 1);
    (void)pq_put_raw(&b, "", 1);
    (void)pq_put_msg(o, 'N', b.p, b.end);
    pq_buf_free(&b);
}

static const char help_text[] =
    "\n\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION\n"
    "\tSHOW PEERS|PEER_POOLS\n"
    "\tSHOW SOCKETS|ACTIVE_SOCKETS|LISTS|MEM|STATE\n"
    "\tSHOW DNS_HOSTS|DNS_ZONES\n"
    "\tSHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS\n"
    "\tSET key = arg\n"
    "\tRELOAD\n"
    "\tPAUSE [<db>]\n"
    "\tRESUME [<db>]\n"
    "\tSUSPEND\n"
    "\tDISABLE <db>\n"
    "\tENABLE <db>\n"
    "\tRECONNECT [<db>]\n"
    "\tKILL [<db>]\n"
    "\tKILL_CLIENT <id>\n"
    "\tSHUTDOWN [WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS]\n"
    "\tWAIT_CLOSE [<db>]";

static void show_config(server *s, pq_buf *o)
{
    static const col c[] = {
        {"key", T_TEXT}, {"value", T_TEXT}, {"default", T_TEXT}, {"changeable", T_TEXT}};
    put_cols(o, c, 4);
    size_t n = cfg_key_count();
    for (size_t i = 0; i < n; i++) {
        const char *def, *name = cfg_key_at(i, &def);
        char val[CFG_STR + 16];
        if (cfg_get(&s->cfg, name, val, sizeof val)) continue;
        const char *v[4] = {name, val, def, cfg_key_changeable(name) ? "yes" : "no"};
        put_row(o, v, 4);
    }
    put_complete(o, "SHOW");
}

static void fmt_int(char *b, size_t n, long long v)
{
    snprintf(b, n, "%lld", v);
}

/* server connections open to the [databases] entry `name`, over all its pools */
static long long db_connections(server *s, const char *name)
{
    long long n = 0;
    for (spool *p = s->pools; p; p = p->next) {
        weir_pool_stats st;
        if (!strcmp(p->db, name) && weir_pool_stats_get(p->pool, &st) == 0)
            n += st.total + st.pending;
    }
    return n;
}

/* PgBouncer 1.25's columns. The console is a row of its own, as PgBouncer
 * lists its "pgbouncer" database. */
static void show_databases(server *s, pq_buf *o)
{
    static const col c[] = {{"name", T_TEXT},
                            {"host", T_TEXT},
                            {"port", T_INT4},
                            {"database", T_TEXT},
                            {"force_user", T_TEXT},
                            {"pool_size", T_INT4},
                            {"min_pool_size", T_INT4},
                            {"reserve_pool_size", T_INT4},
                            {"server_lifetime", T_INT4},
                            {"pool_mode", T_TEXT},
                            {"load_balance_hosts", T_TEXT},
                            {"max_connections", T_INT4},
                            {"current_connections", T_INT4},
                            {"max_client_connections", T_INT4},
                            {"current_client_connections", T_INT4},
                            {"paused", T_INT4},
                            {"disabled", T_INT4},
                            /* after PgBouncer 1.25's: reserve_pool_size's name
                             * before 1.24, which Debian's exporter reads */
                            {"reserve_pool", T_INT4}};
    enum { NC = sizeof c / sizeof *c };
    put_cols(o, c, NC);
    const cfg *k = &s->cfg;
    bool *off = calloc(k->ndbs + 1, sizeof *off); /* db_disabled takes pools_lock itself */
    for (size_t i = 0; off && i <= k->ndbs; i++)
        off[i] = db_disabled(s, i < k->ndbs ? k->dbs[i].name : "pgbouncer");
    pthread_mutex_lock(&s->pools_lock);
    for (size_t i = 0; i <= k->ndbs; i++) {
        bool console = i == k->ndbs;
        if (console && cfg_find_db_exact(k, "pgbouncer")) break;
        const cfg_db *d = console ? NULL : &k->dbs[i];
        const char *name = console ? "pgbouncer" : d->name;
        char port[16], size[16], minp[16], res[16], life[24], maxc[16], cur[16], maxcl[16],
            curcl[16], paused[4], disabled[4];
        fmt_int(port, sizeof port, console ? k->listen_port : d->port);
        fmt_int(size, sizeof size,
                console             ? 2
                : d->pool_size >= 0 ? d->pool_size
                                    : k->default_pool_size);
        fmt_int(minp, sizeof minp,
                console                 ? 0
                : d->min_pool_size >= 0 ? d->min_pool_size
                                        : k->min_pool_size);
        fmt_int(res, sizeof res,
                console                ? 0
                : d->reserve_pool >= 0 ? d->reserve_pool
                                       : k->reserve_pool_size);
        int64_t lt = console                   ? 0
                     : d->server_lifetime >= 0 ? d->server_lifetime
                                               : k->server_lifetime;
        fmt_int(life, sizeof life, lt / 1000);
        fmt_int(maxc, sizeof maxc,
                console                      ? 0
                : d->max_db_connections >= 0 ? d->max_db_connections
                                             : k->max_db_connections);
        fmt_int(cur, sizeof cur, console ? 0 : db_connections(s, d->name));
        fmt_int(maxcl, sizeof maxcl,
                !console && d->max_db_client_connections >= 0 ? d->max_db_client_connections
                                                              : k->max_db_client_connections);
        fmt_int(curcl, sizeof curcl, clients_counted(s, "db", name));
        bool any_paused = false;
        for (spool *p = s->pools; p; p = p->next) {
            weir_pool_stats st;
            if (!strcmp(p->db, name) && weir_pool_stats_get(p->pool, &st) == 0 && st.paused)
                any_paused = true;
        }
        snprintf(paused, sizeof paused, "%d", any_paused ? 1 : 0);
        snprintf(disabled, sizeof disabled, "%d", off && off[i] ? 1 : 0);
        char lite[CFG_STR + 16] = "";
        if (!console && d->sqlite_path[0])
            snprintf(lite, sizeof lite, "sqlite://%s", d->sqlite_path);
        if (!console && d->mysql_url[0]) weir_mask_credentials(d->mysql_url, lite, sizeof lite);
        const char *host = console ? NULL : lite[0] ? lite : d->host[0] ? d->host : NULL;
        const char *mode = console                      ? "statement"
                           : d->pool_mode != POOL_UNSET ? cfg_pool_mode_name(d->pool_mode)
                                                        : NULL;
        const char *v[NC] = {name,
                             host,
                             port,
                             console        ? "pgbouncer"
                             : d->dbname[0] ? d->dbname
                                            : d->name,
                             console      ? "pgbouncer"
                             : d->user[0] ? d->user
                                          : NULL,
                             size,
                             minp,
                             res,
                             life,
                             mode,
                             console || !d->load_balance_hosts[0] ? NULL : d->load_balance_hosts,
                             maxc,
                             cur,
                             maxcl,
                             curcl,
                             paused,
                             disabled,
                             res};
        put_row(o, v, NC);
    }
    pthread_mutex_unlock(&s->pools_lock);
    free(off);
    put_complete(o, "SHOW");
}

static void show_pools(server *s, pq_buf *o)
{
    static const col c[] = {{"database", T_TEXT},
                            {"user", T_TEXT},
                            {"cl_active", T_INT4},
                            {"cl_waiting", T_INT4},
                            {"cl_active_cancel_req", T_INT4},
                            {"cl_waiting_cancel_req", T_INT4},
                            {"sv_active", T_INT4},
                            {"sv_active_cancel", T_INT4},
                            {"sv_being_canceled", T_INT4},
                            {"sv_idle", T_INT4},
                            {"sv_used", T_INT4},
                            {"sv_tested", T_INT4},
                            {"sv_login", T_INT4},
                            {"maxwait", T_INT4},
                            {"maxwait_us", T_INT4},
                            {"pool_mode", T_TEXT},
                            {"load_balance_hosts", T_TEXT}};
    put_cols(o, c, 17);
    pthread_mutex_lock(&s->pools_lock);
    for (spool *p = s->pools; p; p = p->next) {
        weir_pool_stats st;
        if (weir_pool_stats_get(p->pool, &st)) continue;
        int waiting = spool_waiting(p, s->nworkers), logged = atomic_load(&p->cl_logged);
        char n[9][24];
        fmt_int(n[0], 24, logged - waiting > 0 ? logged - waiting : 0);
        fmt_int(n[1], 24, waiting);
        fmt_int(n[2], 24, st.active);
        fmt_int(n[3], 24, st.idle);
        fmt_int(n[4], 24, st.pending);
        fmt_int(n[5], 24, st.oldest_wait_us / 1000000);
        fmt_int(n[6], 24, st.oldest_wait_us % 1000000);
        const cfg_db *d = cfg_find_db(&s->cfg, p->db);
        const char *lb = d && d->load_balance_hosts[0] ? d->load_balance_hosts : NULL;
        const char *v[17] = {
            p->db, p->user, n[0], n[1], "0",  "0",  n[2], "0",
            "0",   n[3],    "0",  "0",  n[4], n[5], n[6], cfg_pool_mode_name(p->mode),
            lb};
        put_row(o, v, 17);
    }
    pthread_mutex_unlock(&s->pools_lock);
    put_complete(o, "SHOW");
}

typedef struct users_ctx {
    server *s;
    pq_buf *o;
} users_ctx;

static void user_row(void *ud, const char *name)
{
    users_ctx *x = ud;
    server *s = x->s;
    const cfg *k = &s->cfg;
    const cfg_user *u = cfg_find_user(k, name);
    char size[16] = "", res[16] = "", maxc[16], cur[16], maxcl[16], curcl[16];
    if (u && u->pool_size >= 0) fmt_int(size, sizeof size, u->pool_size);
    if (u && u->reserve_pool >= 0) fmt_int(res, sizeof res, u->reserve_pool);
    fmt_int(maxc, sizeof maxc,
            u && u->max_user_connections >= 0 ? u->max_user_connections : k->max_user_connections);
    long long n = 0;
    for (spool *p = s->pools; p; p = p->next) {
        weir_pool_stats st;
        if (!strcmp(p->user, name) && weir_pool_stats_get(p->pool, &st) == 0)
            n += st.total + st.pending;
    }
    fmt_int(cur, sizeof cur, n);
    fmt_int(maxcl, sizeof maxcl,
            u && u->max_user_client_connections >= 0 ? u->max_user_client_connections
                                                     : k->max_user_client_connections);
    fmt_int(curcl, sizeof curcl, clients_counted(s, "user", name));
    const char *v[8] = {
        name,  size,
        res,   u && u->pool_mode != POOL_UNSET ? cfg_pool_mode_name(u->pool_mode) : NULL,
        maxc,  cur,
        maxcl, curcl};
    put_row(x->o, v, 8);
}

/* PgBouncer 1.25's columns; pool_size and reserve_pool_size are the
 * [users] entry's, "" when it sets none. */
static void show_users(server *s, pq_buf *o)
{
    static const col c[] = {{"name", T_TEXT},
                            {"pool_size", T_TEXT},
                            {"reserve_pool_size", T_TEXT},
                            {"pool_mode", T_TEXT},
                            {"max_user_connections", T_INT4},
                            {"current_connections", T_INT4},
                            {"max_user_client_connections", T_INT4},
                            {"current_client_connections", T_INT4}};
    put_cols(o, c, 8);
    users_ctx x = {s, o};
    pthread_mutex_lock(&s->pools_lock);
    users_known(s, user_row, &x);
    pthread_mutex_unlock(&s->pools_lock);
    put_complete(o, "SHOW");
}

/* SHOW LISTS: PgBouncer 1.25's fourteen rows, in its order (exporters read
 * them by name: Debian's prometheus-pgbouncer-exporter needs every one).
 * weir keeps no slab caches or DNS cache of its own (getaddrinfo resolves
 * each connect), so free_* and dns_* are 0; every peer has its row in SHOW
 * PEER_POOLS. */
static void show_lists(server *s, pq_buf *o)
{
    static const col c[] = {{"list", T_TEXT}, {"items", T_INT4}};
    long long pools = 0, used = 0, idle = 0, login = 0;
    pthread_mutex_lock(&s->pools_lock);
    for (spool *p = s->pools; p; p = p->next) {
        weir_pool_stats st;
        pools++;
        if (weir_pool_stats_get(p->pool, &st) == 0) {
            used += st.active;
            idle += st.idle;
        }
    }
    pthread_mutex_unlock(&s->pools_lock);
    /* clients logging in: every state before CL_IDLE (counters, no freeze) */
    for (int i = 0; i < s->nworkers; i++)
        for (int st = 0; st < CL_IDLE; st++)
            login += atomic_load_explicit(&s->workers[i].nstate[st], memory_order_relaxed);
    if (login < 0) login = 0;
    long long peers = 0;
    for (size_t i = 0; i < s->cfg.npeers; i++) peers += s->cfg.peers[i].id != s->cfg.peer_id;
    put_cols(o, c, 2);
    struct {
        const char *name;
        long long v;
    } rows[] = {{"databases", (long long)s->cfg.ndbs},
                {"users", (long long)s->cfg.nusers},
                {"peers", peers},
                {"pools", pools},
                {"peer_pools", peers},
                {"free_clients", 0},
                {"used_clients", atomic_load(&s->nclients)},
                {"login_clients", login},
                {"free_servers", 0},
                {"used_servers", used + idle},
                {"dns_names", 0},
                {"dns_zones", 0},
                {"dns_queries", 0},
                {"dns_pending", 0}};
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        char n[24];
        fmt_int(n, sizeof n, rows[i].v);
        const char *v[2] = {rows[i].name, n};
        put_row(o, v, 2);
    }
    put_complete(o, "SHOW");
}

/* SHOW CLIENTS and SHOW SERVERS: PgBouncer 1.25's columns; SHOW SOCKETS
 * adds its buffer columns. */
static const col conn_cols[] = {{"type", T_TEXT},
                                {"user", T_TEXT},
                                {"database", T_TEXT},
                                {"replication", T_TEXT},
                                {"state", T_TEXT},
                                {"addr", T_TEXT},
                                {"port", T_INT4},
                                {"local_addr", T_TEXT},
                                {"local_port", T_INT4},
                                {"connect_time", T_TEXT},
                                {"request_time", T_TEXT},
                                {"wait", T_INT4},
                                {"wait_us", T_INT4},
                                {"close_needed", T_INT4},
                                {"ptr", T_TEXT},
                                {"link", T_TEXT},
                                {"remote_pid", T_INT4},
                                {"tls", T_TEXT},
                                {"application_name", T_TEXT},
                                {"prepared_statements", T_INT4},
                                {"id", T_INT4},
                                /* SHOW SOCKETS only */
                                {"recv_pos", T_INT4},
                                {"pkt_pos", T_INT4},
                                {"pkt_remain", T_INT4},
                                {"send_pos", T_INT4},
                                {"send_remain", T_INT4},
                                {"pkt_avail", T_INT4},
                                {"send_avail", T_INT4}};
#define NSOCK_COLS ((int)(sizeof conn_cols / sizeof *conn_cols))
#define NCONN_COLS (NSOCK_COLS - 7)

/* One row of SHOW CLIENTS or SHOW SERVERS. */
typedef struct conn_row {
    char user[CFG_NAME], db[CFG_NAME], state[16], addr[64], local_addr[64], appname[BE_VALUE];
    int port, local_port;
    int64_t connect_ms, request_ms; /* wall clock, ms */
    int64_t wait_us;
    const void *ptr, *link;
    uint32_t remote_pid;
    size_t prepared;
    bool close_needed; /* a server connection RECONNECT (or a reload) marked */
    char tls[80];      /* "TLSv1.3/TLS_AES_256_GCM_SHA384", or "" */
    uint64_t id;
    size_t in_avail, out_avail; /* bytes buffered from and to the peer (SHOW SOCKETS) */
    bool active;                /* for SHOW ACTIVE_SOCKETS */
    const char *replication;    /* "none", "physical" or "database" */
} conn_row;

/* --- SHOW CLIENTS and KILL: the console reads and marks the workers' clients
 * (workers frozen) -------------------------------------------------------- */

/* PgBouncer 1.25's client states: active (linked to a server connection),
 * idle (nothing waiting), waiting (for a server); "login" before that. The
 * console's own clients are active while they are being answered. */
static const char *client_state_name(const client *c)
{
    switch (c->state) {
    case CL_ACTIVE:
    case CL_CONSOLE:
        return "active";
    case CL_IDLE:
        return c->be ? "active" : "idle";
    case CL_WAITING:
    case CL_WELCOME:
        return "waiting";
    default:
        return "login";
    }
}

/* Every client of every worker (malloc'd array; free it); link is the
 * backend it is linked to, or NULL. */
static size_t clients_list(server *s, conn_row **out)
{
    size_t n = 0, cap = 0;
    conn_row *rows = NULL;
    int64_t mono = weir_now_ms(), wall = (int64_t)time(NULL) * 1000;
    for (int i = 0; i < s->nworkers; i++)
        for (client *c = s->workers[i].clients; c; c = c->next) {
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 64;
                conn_row *r = realloc(rows, nc * sizeof *r);
                if (!r) goto done; /* out of memory: the rows so far */
                rows = r;
                cap = nc;
            }
            conn_row *r = &rows[n];
            memset(r, 0, sizeof *r);
            snprintf(r->user, sizeof r->user, "%s", c->user);
            snprintf(r->db, sizeof r->db, "%s", c->dbname);
            snprintf(r->state, sizeof r->state, "%s", client_state_name(c));
            r->id = c->id;
            r->in_avail = pq_buf_len(&c->in);
            r->out_avail = pq_buf_len(&c->out);
            r->active = c->state != CL_IDLE || c->be || r->in_avail || r->out_avail;
            sockaddr_text((const struct sockaddr *)&c->peer, r->addr, sizeof r->addr, &r->port);
            sock_addr(c->fd, false, r->local_addr, sizeof r->local_addr, &r->local_port);
            if (c->is_unix) r->port = s->cfg.listen_port;
            r->connect_ms = wall - (mono - c->t_connect);
            r->request_ms = wall - (mono - c->t_activity);
            if (c->state == CL_WAITING) r->wait_us = (weir_now_ns() / 1000) - c->t_wait;
            r->ptr = c;
            r->link = c->be;
            if (c->want_set[NTRACKED - 1])
                snprintf(r->appname, sizeof r->appname, "%s", c->want[NTRACKED - 1]);
            r->replication = c->replication;
            r->prepared = c->ps ? ps_client_count(c->ps) : 0;
            if (c->tls && c->state != CL_TLS) tls_describe(c->tls, r->tls, sizeof r->tls);
            n++;
        }
done:
    *out = rows;
    return n;
}

/* --- KILL ----------------------------------------------------------------- */

/* Wake the workers that have clients to close. */
static void wake_killers(server *s)
{
    uint64_t one = 1;
    for (int i = 0; i < s->nworkers; i++)
        if (atomic_load(&s->workers[i].kill_pending))
            (void)!write(s->workers[i].efd, &one, sizeof one);
}

/* KILL_CLIENT id: mark that client (the console's too); 1, or 0 if none. */
static int clients_kill_id(server *s, uint64_t id)
{
    for (int i = 0; i < s->nworkers; i++)
        for (client *c = s->workers[i].clients; c; c = c->next)
            if (c->id == id && c->state != CL_CLOSED) {
                c->killed = true;
                atomic_store(&s->workers[i].kill_pending, true);
                return 1;
            }
    return 0;
}

/* KILL db ("": every database): mark every client of db but the console's;
 * their workers close them. */
static int clients_kill(server *s, const char *db)
{
    int n = 0;
    for (int i = 0; i < s->nworkers; i++) {
        worker *w = &s->workers[i];
        bool any = false;
        for (client *c = w->clients; c; c = c->next)
            if (!c->admin && (!db[0] || !strcmp(c->dbname, db))) {
                c->killed = true;
                any = true;
                n++;
            }
        if (any) atomic_store(&w->kill_pending, true);
    }
    return n;
}

static void fmt_time(char *b, size_t n, int64_t wall_ms)
{
    time_t t = (time_t)(wall_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(b, n, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

static void put_conn_row(pq_buf *o, const char *type, const conn_row *r, bool sockets)
{
    char port[16], lport[16], ct[40], rt[40], wait[24], wait_us[24], ptr[24], link[24], pid[16],
        prep[24], id[24], inb[24], outb[24];
    fmt_int(port, sizeof port, r->port);
    fmt_int(lport, sizeof lport, r->local_port);
    fmt_time(ct, sizeof ct, r->connect_ms);
    fmt_time(rt, sizeof rt, r->request_ms);
    fmt_int(wait, sizeof wait, r->wait_us / 1000000);
    fmt_int(wait_us, sizeof wait_us, r->wait_us % 1000000);
    snprintf(ptr, sizeof ptr, "%p", r->ptr);
    if (r->link) snprintf(link, sizeof link, "%p", r->link);
    fmt_int(pid, sizeof pid, r->remote_pid);
    fmt_int(prep, sizeof prep, (long long)r->prepared);
    fmt_int(id, sizeof id, (long long)r->id);
    fmt_int(inb, sizeof inb, (long long)r->in_avail);
    fmt_int(outb, sizeof outb, (long long)r->out_avail);
    /* weir's buffers are not PgBouncer's sbuf: what is buffered each way is
     * pkt_avail and send_avail; the sbuf positions are 0 */
    const char *v[NSOCK_COLS] = {type,       r->user,
                                 r->db,      r->replication ? r->replication : "none",
                                 r->state,   r->addr,
                                 port,       r->local_addr,
                                 lport,      ct,
                                 rt,         wait,
                                 wait_us,    r->close_needed ? "1" : "0",
                                 ptr,        r->link ? link : NULL,
                                 pid,        r->tls[0] ? r->tls : NULL,
                                 r->appname, prep,
                                 id,         "0",
                                 "0",        "0",
                                 "0",        "0",
                                 inb,        outb};
    put_row(o, v, sockets ? NSOCK_COLS : NCONN_COLS);
}

void admin_busy_error(pq_buf *o)
{
    put_error(o, "55006", "another configuration change or listing is running; try again");
}

/* false: busy (another change or listing), nothing written. */
static bool show_clients(server *s, pq_buf *o)
{
    conn_row *rows;
    if (server_freeze(s)) return false;
    size_t n = clients_list(s, &rows);
    server_thaw(s);
    put_cols(o, conn_cols, NCONN_COLS);
    for (size_t i = 0; i < n; i++) put_conn_row(o, "C", &rows[i], false);
    free(rows);
    put_complete(o, "SHOW");
    return true;
}

typedef struct server_walk {
    spool *p;
    const conn_row *clients;
    size_t nclients;
    conn_row *rows;
    size_t n, cap;
    int64_t mono, wall;
} server_walk;

/* Under the pool's lock: the connection exists while we look. */
static void server_row(const weir_conn_info *ci, void *ud)
{
    server_walk *w = ud;
    const backend *be = ci->handle;
    if (!be) return;
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 32;
        conn_row *r = realloc(w->rows, cap * sizeof *r);
        if (!r) return;
        w->rows = r;
        w->cap = cap;
    }
    conn_row *r = &w->rows[w->n++];
    memset(r, 0, sizeof *r);
    snprintf(r->user, sizeof r->user, "%s", w->p->user);
    snprintf(r->db, sizeof r->db, "%s", w->p->db);
    bool linked = false;
    for (size_t i = 0; i < w->nclients; i++)
        if (w->clients[i].link == be) {
            r->link = w->clients[i].ptr;
            linked = true;
        }
    snprintf(r->state, sizeof r->state, "%s",
             linked                         ? "active"
             : !strcmp(ci->state, "busy")   ? "tested"
             : !strcmp(ci->state, "active") ? "used"
                                            : "idle");
    sock_addr(be->fd, true, r->addr, sizeof r->addr, &r->port);
    sock_addr(be->fd, false, r->local_addr, sizeof r->local_addr, &r->local_port);
    r->connect_ms = w->wall - (w->mono - ci->created_ms);
    r->request_ms = w->wall - (w->mono - (ci->taken_ms ? ci->taken_ms : ci->last_used_ms));
    r->ptr = be;
    r->id = be->id;
    r->active = linked;
    r->remote_pid = be->pid;
    const be_ext *x = be->ext;
    r->prepared = x ? ps_cache_count(x->ps) : 0;
    if (be->tls) tls_describe(be->tls, r->tls, sizeof r->tls);
    const char *app = be_params_get(&be->params, "application_name");
    snprintf(r->appname, sizeof r->appname, "%s", app ? app : "");
    r->close_needed = ci->id <= atomic_load(&w->p->close_mark);
}

/* SHOW SERVERS, and SHOW SOCKETS / ACTIVE_SOCKETS (clients and servers).
 * false: busy, nothing written. */
static bool show_servers(server *s, pq_buf *o, bool sockets, bool only_active)
{
    conn_row *clients;
    if (server_freeze(s)) return false;
    server_walk w = {.mono = weir_now_ms(), .wall = (int64_t)time(NULL) * 1000};
    w.nclients = clients_list(s, &clients);
    w.clients = clients;
    pthread_mutex_lock(&s->pools_lock);
    for (spool *p = s->pools; p; p = p->next) {
        w.p = p;
        (void)weir_pool_foreach_conn(p->pool, server_row, &w);
    }
    pthread_mutex_unlock(&s->pools_lock);
    server_thaw(s);
    put_cols(o, conn_cols, sockets ? NSOCK_COLS : NCONN_COLS);
    for (size_t i = 0; sockets && i < w.nclients; i++)
        if (!only_active || clients[i].active) put_conn_row(o, "C", &clients[i], true);
    for (size_t i = 0; i < w.n; i++)
        if (!only_active || w.rows[i].active) put_conn_row(o, "S", &w.rows[i], sockets);
    free(w.rows);
    free(clients);
    put_complete(o, "SHOW");
    return true;
}

/* SHOW MEM: weir's objects (PgBouncer shows its slab caches): how many
 * there are and their size; weir allocates each with malloc, so none is
 * kept free. */
static void show_mem(server *s, pq_buf *o)
{
    static const col c[] = {{"name", T_TEXT},
                            {"size", T_INT4},
                            {"used", T_INT4},
                            {"free", T_INT4},
                            {"memtotal", T_INT4}};
    put_cols(o, c, 5);
    long long servers = 0, pools = 0;
    pthread_mutex_lock(&s->pools_lock);
    for (spool *p = s->pools; p; p = p->next) {
        weir_pool_stats st;
        pools++;
        if (weir_pool_stats_get(p->pool, &st) == 0) servers += st.total;
    }
    pthread_mutex_unlock(&s->pools_lock);
    struct {
        const char *name;
        long long size, used;
    } rows[] = {{"client", (long long)sizeof(client), atomic_load(&s->nclients)},
                {"server", (long long)sizeof(backend), servers},
                {"pool", (long long)sizeof(spool), pools}};
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        char size[24], used[24], total[24];
        fmt_int(size, sizeof size, rows[i].size);
        fmt_int(used, sizeof used, rows[i].used);
        fmt_int(total, sizeof total, rows[i].size * rows[i].used);
        const char *v[5] = {rows[i].name, size, used, "0", total};
        put_row(o, v, 5);
    }
    put_complete(o, "SHOW");
}

/* SHOW PEERS, and SHOW PEER_POOLS: a forward under way is one active
 * cancel request and one server connection to the peer, as PgBouncer counts
 * them; this process's own entry is not a peer. */
static void show_peers(server *s, pq_buf *o, bool pools)
{
    static const col peers[] = {
        {"peer_id", T_INT4}, {"host", T_TEXT}, {"port", T_INT4}, {"pool_size", T_INT4}};
    static const col peer_pools[] = {{"peer_id", T_INT4},
                                     {"cl_active_cancel_req", T_INT4},
                                     {"cl_waiting_cancel_req", T_INT4},
                                     {"sv_active_cancel", T_INT4},
                                     {"sv_login", T_INT4}};
    put_cols(o, pools ? peer_pools : peers, pools ? 5 : 4);
    for (size_t i = 0; i < s->cfg.npeers; i++) {
        const cfg_peer *pe = &s->cfg.peers[i];
        if (pe->id == s->cfg.peer_id) continue;
        char id[16], a[16], b[16];
        fmt_int(id, sizeof id, pe->id);
        if (pools) {
            int active, waiting;
            peer_load(s, pe->id, &active, &waiting);
            fmt_int(a, sizeof a, active);
            fmt_int(b, sizeof b, waiting);
            const char *v[5] = {id, a, b, a, "0"};
            put_row(o, v, 5);
        } else {
            fmt_int(a, sizeof a, pe->port);
            fmt_int(b, sizeof b, pe->pool_size > 0 ? pe->pool_size : s->cfg.default_pool_size);
            const char *v[4] = {id, pe->host, a, b};
            put_row(o, v, 4);
        }
    }
    put_complete(o, "SHOW");
}

/* Commands whose answer has no rows here: no DNS cache (weir resolves a
 * host at each connect). */
static void show_empty(pq_buf *o, const char *what)
{
    static const col hosts[] = {{"hostname", T_TEXT}, {"ttl", T_INT8}, {"addrs", T_TEXT}};
    static const col zones[] = {{"zonename", T_TEXT}, {"serial", T_INT8}, {"count", T_INT4}};
    if (!strcasecmp(what, "DNS_HOSTS"))
        put_cols(o, hosts, 3);
    else
        put_cols(o, zones, 3);
    put_complete(o, "SHOW");
}

static void show_state(server *s, pq_buf *o)
{
    static const col c[] = {{"key", T_TEXT}, {"value", T_TEXT}};
    put_cols(o, c, 2);
    bool paused = atomic_load(&s->paused_all);
    const char *rows[3][2] = {
        {"active", paused ? "no" : "yes"}, {"paused", paused ? "yes" : "no"}, {"suspended", "no"}};
    for (int i = 0; i < 3; i++) put_row(o, rows[i], 2);
    put_complete(o, "SHOW");
}

/* The SHOW STATS family's figures, in PgBouncer 1.25's order and names:
 * twelve totals, then twelve averages. */
enum { NSTAT = 12 };
static const char *const stat_names[NSTAT] = {"server_assignment_count",
                                              "xact_count",
                                              "query_count",
                                              "received",
                                              "sent",
                                              "xact_time",
                                              "query_time",
                                              "wait_time",
                                              "client_parse_count",
                                              "server_parse_count",
                                              "bind_count",
                                              "client_login_count"};
/* SHOW TOTALS' own names (PgBouncer's internal ones) */
static const char *const totals_names[NSTAT] = {"server_assignment_count",
                                                "xact_count",
                                                "query_count",
                                                "client_bytes",
                                                "server_bytes",
                                                "xact_time",
                                                "query_time",
                                                "wait_time",
                                                "ps_client_parse_count",
                                                "ps_server_parse_count",
                                                "ps_bind_count",
                                                "client_login_count"};

static void stat_values(const st_sum *t, const stats_avg *a, uint64_t tv[NSTAT], uint64_t av[NSTAT])
{
    const uint64_t x[NSTAT] = {t->waits,      t->xact,       t->query,    t->recv,
                               t->sent,       t->xact_us,    t->query_us, t->wait_us,
                               t->ps_parse_c, t->ps_parse_s, t->ps_bind,  t->logins};
    const uint64_t y[NSTAT] = {a->assign,   a->xact,    a->query,   a->recv,    a->sent, a->xact_us,
                               a->query_us, a->wait_us, a->parse_c, a->parse_s, a->bind, a->logins};
    memcpy(tv, x, sizeof x);
    memcpy(av, y, sizeof y);
}

enum { COL_STATS_TOTAL, COL_STATS_AVG, COL_TOTALS_PART, COL_AVERAGES_PART };
/* The i-th figure's column name in each command (PgBouncer's quirks kept:
 * avg_recv/avg_sent, bytes_received/bytes_sent, and STATS_AVERAGES'
 * avg_-prefixed prepared-statement and login columns). */
static void stat_col(char *out, size_t len, int kind, int i)
{
    const char *n = stat_names[i];
    bool bytes = i == 3 || i == 4;
    switch (kind) {
    case COL_STATS_TOTAL:
        snprintf(out, len, "total_%s", n);
        break;
    case COL_STATS_AVG:
        snprintf(out, len, "avg_%s", bytes ? (i == 3 ? "recv" : "sent") : n);
        break;
    default:
        snprintf(out, len, "%s%s",
                 bytes                                 ? "bytes_"
                 : kind == COL_AVERAGES_PART && i >= 8 ? "avg_"
                                                       : "",
                 n);
    }
}

/* SHOW STATS, STATS_TOTALS, STATS_AVERAGES and TOTALS: per database (or all),
 * totals since start and averages over the last stats_period. */
static void show_stats(server *s, pq_buf *o, const char *what)
{
    db_stats *d;
    int64_t period;
    size_t n = stats_by_db(s, &d, &period);
    enum {
        ALL,
        TOTALS,
        AVERAGES,
        SUM
    } kind = !strcasecmp(what, "STATS")            ? ALL
             : !strcasecmp(what, "STATS_TOTALS")   ? TOTALS
             : !strcasecmp(what, "STATS_AVERAGES") ? AVERAGES
                                                   : SUM;
    char names[2 * NSTAT][40];
    if (kind == SUM) {
        db_stats all = {.db = ""};
        for (size_t i = 0; i < n; i++) {
            st_sum_add(&all.total, &d[i].total, 1);
            st_sum_add(&all.delta, &d[i].delta, 1);
        }
        stats_avg a;
        stats_average(&all.delta, period, &a);
        uint64_t tv[NSTAT], av[NSTAT];
        stat_values(&all.total, &a, tv, av);
        static const col c[] = {{"name", T_TEXT}, {"value", T_NUMERIC}};
        put_cols(o, c, 2);
        for (int i = 0; i < 2 * NSTAT; i++) {
            char v[24];
            snprintf(names[i], sizeof names[i], "%s_%s", i < NSTAT ? "total" : "avg",
                     totals_names[i % NSTAT]);
            fmt_int(v, sizeof v, (long long)(i < NSTAT ? tv[i] : av[i - NSTAT]));
            const char *r[2] = {names[i], v};
            put_row(o, r, 2);
        }
        free(d);
        put_complete(o, "SHOW");
        return;
    }
    col cols[2 + 2 * NSTAT] = {{"database", T_TEXT}};
    int nc = 1;
    for (int i = 0; i < NSTAT && kind != AVERAGES; i++, nc++) {
        stat_col(names[nc - 1], sizeof names[0], kind == ALL ? COL_STATS_TOTAL : COL_TOTALS_PART,
                 i);
        cols[nc] = (col){names[nc - 1], T_NUMERIC};
    }
    for (int i = 0; i < NSTAT && kind != TOTALS; i++, nc++) {
        stat_col(names[nc - 1], sizeof names[0], kind == ALL ? COL_STATS_AVG : COL_AVERAGES_PART,
                 i);
        cols[nc] = (col){names[nc - 1], T_NUMERIC};
    }
    /* One column after PgBouncer 1.25's: PgBouncer 1.7's name for the query
     * count, which exporters still read (Debian's prometheus-pgbouncer-exporter
     * needs SHOW STATS' total_requests; pgbouncer_exporter maps STATS_TOTALS'
     * requests); readers by name ignore it. */
    if (kind == ALL) cols[nc++] = (col){"total_requests", T_NUMERIC};
    if (kind == TOTALS) cols[nc++] = (col){"requests", T_NUMERIC};
    put_cols(o, cols, nc);
    for (size_t i = 0; i < n; i++) {
        stats_avg a;
        stats_average(&d[i].delta, period, &a);
        uint64_t tv[NSTAT], av[NSTAT];
        stat_values(&d[i].total, &a, tv, av);
        char num[2 * NSTAT + 1][24];
        const char *v[2 + 2 * NSTAT] = {d[i].db};
        int nv = 1;
        for (int k = 0; k < NSTAT && kind != AVERAGES; k++, nv++) {
            fmt_int(num[nv - 1], 24, (long long)tv[k]);
            v[nv] = num[nv - 1];
        }
        for (int k = 0; k < NSTAT && kind != TOTALS; k++, nv++) {
            fmt_int(num[nv - 1], 24, (long long)av[k]);
            v[nv] = num[nv - 1];
        }
        if (kind == ALL || kind == TOTALS) {
            fmt_int(num[nv - 1], 24, (long long)tv[2]);
            v[nv] = num[nv - 1];
            nv++;
        }
        put_row(o, v, nv);
    }
    free(d);
    put_complete(o, "SHOW");
}

/* Split "WORD rest" (case-insensitive WORD), trimming spaces and a trailing ';'. */
static void normalise(const char *sql, char *out, size_t outlen)
{
    while (isspace((unsigned char)*sql)) sql++;
    snprintf(out, outlen, "%s", sql);
    size_t n = strlen(out);
    while (n && (isspace((unsigned char)out[n - 1]) || out[n - 1] == ';')) out[--n] = '\0';
}

static bool word(const char **p, const char *w)
{
    size_t n = strlen(w);
    if (strncasecmp(*p, w, n) || ((*p)[n] && !isspace((unsigned char)(*p)[n]))) return false;
    *p += n;
    while (isspace((unsigned char)**p)) (*p)++;
    return true;
}

/* SET key = value (or TO value; value may be 'quoted', '' for a quote).
 * false: busy, nothing written. */
static bool admin_set(server *s, const char *p, pq_buf *o)
{
    char key[64], val[CFG_STR];
    size_t n = 0;
    while (*p && !isspace((unsigned char)*p) && *p != '=' && n + 1 < sizeof key) key[n++] = *p++;
    key[n] = '\0';
    while (isspace((unsigned char)*p)) p++;
    if (*p == '=')
        p++;
    else if (!strncasecmp(p, "TO", 2) && isspace((unsigned char)p[2]))
        p += 2;
    else
        key[0] = '\0';
    while (isspace((unsigned char)*p)) p++;
    n = 0;
    if (*p == '\'') {
        for (p++; *p && n + 1 < sizeof val; p++) {
            if (*p == '\'' && p[1] == '\'')
                p++;
            else if (*p == '\'')
                break;
            val[n++] = *p;
        }
    } else {
        while (*p && n + 1 < sizeof val) val[n++] = *p++;
    }
    val[n] = '\0';
    if (!key[0]) {
        put_error(o, "42601", "syntax: SET key = value");
        return true;
    }
    char err[300];
    int rc = server_set(s, key, val, err, sizeof err);
    if (rc == CHANGE_BUSY) return false;
    if (rc) {
        char m[400];
        snprintf(m, sizeof m, "SET %s failed: %s", key, err);
        put_error(o, "22023", m);
        return true;
    }
    put_complete(o, "SET");
    return true;
}

bool admin_wait_done(server *s, int kind, const char *db, pq_buf *o)
{
    if (kind == ADMIN_WAIT_SUSPEND) { /* every worker has stopped reading its clients */
        for (int i = 0; i < s->nworkers; i++)
            if (!atomic_load(&s->workers[i].suspended_seen)) return false;
        put_complete(o, "SUSPEND");
        return true;
    }
    if (kind == ADMIN_WAIT_PAUSE ? !pools_quiet(s, db) : pools_closing(s, db)) return false;
    put_complete(o, kind == ADMIN_WAIT_PAUSE ? "PAUSE" : "WAIT_CLOSE");
    return true;
}

static void no_such_db(pq_buf *o, const char *db)
{
    char m[160];
    snprintf(m, sizeof m, "no such database: %.100s", db);
    put_error(o, "08P01", m);
}

int admin_query(server *s, bool full, const char *sql, pq_buf *o, char *wait_db)
{
    char cmd[512];
    normalise(sql, cmd, sizeof cmd);
    const char *p = cmd;
    if (word(&p, "SHOW")) {
        char what[64];
        snprintf(what, sizeof what, "%s", p);
        if (!strcasecmp(what, "HELP")) {
            put_notice(o, "Console usage", help_text);
            put_complete(o, "SHOW");
        } else if (!strcasecmp(what, "VERSION")) {
            static const col c[] = {{"version", T_TEXT}};
            put_cols(o, c, 1);
            const char *v[1] = {WEIR_VERSION_TEXT};
            put_row(o, v, 1);
            put_complete(o, "SHOW");
        } else if (!strcasecmp(what, "CONFIG")) {
            show_config(s, o);
        } else if (!strcasecmp(what, "DATABASES")) {
            show_databases(s, o);
        } else if (!strcasecmp(what, "POOLS")) {
            show_pools(s, o);
        } else if (!strcasecmp(what, "USERS")) {
            show_users(s, o);
        } else if (!strcasecmp(what, "LISTS")) {
            show_lists(s, o);
        } else if (!strcasecmp(what, "STATS") || !strcasecmp(what, "STATS_TOTALS") ||
                   !strcasecmp(what, "STATS_AVERAGES") || !strcasecmp(what, "TOTALS")) {
            show_stats(s, o, what);
        } else if (!strcasecmp(what, "CLIENTS")) {
            if (!show_clients(s, o)) return ADMIN_WAIT_BUSY;
        } else if (!strcasecmp(what, "SERVERS")) {
            if (!show_servers(s, o, false, false)) return ADMIN_WAIT_BUSY;
        } else if (!strcasecmp(what, "SOCKETS") || !strcasecmp(what, "ACTIVE_SOCKETS")) {
            if (!show_servers(s, o, true, !strcasecmp(what, "ACTIVE_SOCKETS")))
                return ADMIN_WAIT_BUSY;
        } else if (!strcasecmp(what, "MEM")) {
            show_mem(s, o);
        } else if (!strcasecmp(what, "PEERS") || !strcasecmp(what, "PEER_POOLS")) {
            show_peers(s, o, !strcasecmp(what, "PEER_POOLS"));
        } else if (!strcasecmp(what, "DNS_HOSTS") || !strcasecmp(what, "DNS_ZONES")) {
            show_empty(o, what);
        } else if (!strcasecmp(what, "STATE")) {
            show_state(s, o);
        } else {
            char m[160];
            snprintf(m, sizeof m, "bad SHOW command: %.100s (see SHOW HELP)", what);
            put_error(o, "42601", m);
        }
        return 0;
    }
    if (!full) {
        put_error(o, "42501", "admin access needed");
        return 0;
    }
    if (word(&p, "SUSPEND")) {
        /* PgBouncer's: no client socket is read until RESUME (the console's
         * are); what was read is answered and flushed. */
        if (atomic_load(&s->shutting_down)) {
            put_error(o, "08P01", "pooler is shutting down");
        } else if (atomic_exchange(&s->suspended, true)) {
            put_error(o, "08P01", "already suspended");
        } else {
            srv_log(s, "LOG", "SUSPEND (admin console): client sockets are not read until RESUME");
            /* answered once every worker has taken it in (its next tick) */
            return ADMIN_WAIT_SUSPEND;
        }
        return 0;
    }
    if (word(&p, "PAUSE") || word(&p, "RESUME")) {
        bool pause = !strncasecmp(cmd, "PAUSE", 5);
        if (atomic_load(&s->shutting_down)) {
            put_error(o, "08P01", "pooler is shutting down");
            return 0;
        }
        if (!pause && !*p && atomic_exchange(&s->suspended, false)) {
            srv_log(s, "LOG", "RESUME (admin console): client sockets are read again");
            put_complete(o, "RESUME");
            return 0;
        }
        if (!pools_pause(s, p, pause, "admin console")) {
            no_such_db(o, p);
            return 0;
        }
        if (!pause) {
            put_complete(o, "RESUME");
            return 0;
        }
        /* PAUSE answers once every server connection is released. */
        snprintf(wait_db, CFG_NAME, "%s", p);
        return admin_wait_done(s, ADMIN_WAIT_PAUSE, p, o) ? 0 : ADMIN_WAIT_PAUSE;
    }
    if (word(&p, "DISABLE") || word(&p, "ENABLE")) {
        bool off = !strncasecmp(cmd, "DISABLE", 7);
        if (!*p) {
            put_error(o, "42601", off ? "DISABLE needs a database" : "ENABLE needs a database");
        } else if (!db_set_disabled(s, p, off)) {
            no_such_db(o, p);
        } else {
            put_complete(o, off ? "DISABLE" : "ENABLE");
        }
        return 0;
    }
    if (word(&p, "RECONNECT")) {
        if (!pools_reconnect(s, p))
            no_such_db(o, p);
        else
            put_complete(o, "RECONNECT");
        return 0;
    }
    if (word(&p, "WAIT_CLOSE")) {
        if (*p && !cfg_find_db_exact(&s->cfg, p)) {
            no_such_db(o, p);
            return 0;
        }
        snprintf(wait_db, CFG_NAME, "%s", p);
        return admin_wait_done(s, ADMIN_WAIT_CLOSE, p, o) ? 0 : ADMIN_WAIT_CLOSE;
    }
    if (word(&p, "KILL_CLIENT")) {
        char *end = NULL;
        errno = 0;
        unsigned long long id = strtoull(p, &end, 10);
        if (!*p || !end || *end || errno || *p == '-') {
            put_error(o, "08P01", "invalid client pointer supplied");
            return 0;
        }
        if (server_freeze(s)) return ADMIN_WAIT_BUSY;
        int n = clients_kill_id(s, id);
        server_thaw(s);
        wake_killers(s);
        if (!n) {
            put_error(o, "08P01", "client not found");
            return 0;
        }
        srv_log(s, "LOG", "KILL_CLIENT %llu", id);
        put_complete(o, "KILL_CLIENT");
        return 0;
    }
    if (word(&p, "KILL")) {
        if (*p && !cfg_find_db_exact(&s->cfg, p)) {
            no_such_db(o, p);
            return 0;
        }
        if (server_freeze(s)) return ADMIN_WAIT_BUSY;
        /* New clients of db wait until RESUME, as in PgBouncer. */
        (void)pools_pause(s, p, true, "KILL");
        int n = clients_kill(s, p);
        server_thaw(s);
        wake_killers(s);
        (void)pools_reconnect(s, p);
        srv_log(s, "LOG", "KILL %s: %d client%s closed", *p ? p : "(every database)", n,
                n == 1 ? "" : "s");
        put_complete(o, "KILL");
        return 0;
    }
    if (word(&p, "RELOAD") && !*p) {
        char err[400];
        int rc = server_reload(s, err, sizeof err);
        if (rc == CHANGE_BUSY) return ADMIN_WAIT_BUSY;
        if (rc) {
            char m[500];
            snprintf(m, sizeof m,
                     "RELOAD failed, see logs for additional details (the running configuration "
                     "is kept): %s",
                     err);
            put_error(o, "F0000", m);
            return 0;
        }
        put_complete(o, "RELOAD");
        return 0;
    }
    if (word(&p, "SET")) return admin_set(s, p, o) ? 0 : ADMIN_WAIT_BUSY;
    if (word(&p, "SHUTDOWN")) {
        /* as PgBouncer's signals: SIGQUIT now, SIGINT for WAIT_FOR_SERVERS,
         * SIGTERM for WAIT_FOR_CLIENTS; main's sigwait takes them */
        int sig = !*p                                  ? SIGQUIT
                  : !strcasecmp(p, "WAIT_FOR_SERVERS") ? SIGINT
                  : !strcasecmp(p, "WAIT_FOR_CLIENTS") ? SIGTERM
                                                       : 0;
        if (!sig) {
            put_error(o, "42601", "SHUTDOWN takes nothing, WAIT_FOR_SERVERS or WAIT_FOR_CLIENTS");
            return 0;
        }
        srv_log(s, "LOG", "SHUTDOWN%s%s from the admin console", *p ? " " : "", p);
        put_complete(o, "SHUTDOWN");
        kill(getpid(), sig);
        return 0;
    }
    char m[300];
    snprintf(m, sizeof m, "invalid command '%.200s', use SHOW HELP;", cmd);
    put_error(o, "42601", m);
    return 0;
}
