/* reload.c — changing the configuration of a running weir: RELOAD and
 * SIGHUP (read the file again), SET key = value (one key).
 *
 * The new configuration is built and checked aside; a bad file changes
 * nothing and the error says why. To swap it in, every worker is held for a
 * moment at a safe point (its eventfd callback, between clients' events), so
 * no worker reads the configuration while it changes; clients stay
 * connected and their bytes wait in the kernel meanwhile. The HTTP thread
 * reads the configuration under cfg_rw. Then the pools are brought in line
 * (pools_apply_config).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/reload.h"

#include "core/log.h"
#include "core/notify.h"
#include "core/pools.h"
#include "core/server.h"
#include "core/tls.h"
#include "core/worker.h"

typedef struct errbuf {
    server *s;
    char *err;
    size_t len;
    bool logged; /* err is a line reload_log already wrote */
} errbuf;

/* cfg_load's messages: warnings to the log, the first error kept for the caller too. */
static void reload_log(void *ud, bool error, const char *msg)
{
    errbuf *e = ud;
    srv_log(e->s, error ? "ERROR" : "WARNING", "%s", msg);
    if (error && e->err && !e->err[0]) {
        snprintf(e->err, e->len, "%s", msg);
        e->logged = true;
    }
}

/* Swap nc in (taking its arrays) with the workers held, keeping what only a
 * restart can change. */
static void install(server *s, cfg *nc)
{
    size_t n = cfg_key_count();
    for (size_t i = 0; i < n; i++) {
        const char *name = cfg_key_at(i, NULL);
        if (cfg_key_changeable(name)) continue;
        char was[CFG_STR + 16], now[CFG_STR + 16];
        if (cfg_get(&s->cfg, name, was, sizeof was) || cfg_get(nc, name, now, sizeof now)) continue;
        if (strcmp(was, now)) {
            srv_log(s, "WARNING", "%s cannot change without a restart; still %s", name, was);
            char why[200];
            (void)cfg_set(nc, name, was, why, sizeof why);
        }
    }
    snprintf(nc->path, sizeof nc->path, "%s", s->cfg.path);
    workers_hold(s);
    cfg old = s->cfg;
    s->cfg = *nc;
    atomic_store(&s->log_connections, nc->log_connections);
    atomic_store(&s->log_disconnections, nc->log_disconnections);
    /* TLS towards servers changed: their connections are remade (as
     * PgBouncer: "database configuration changed") */
    const cfg *o = &old;
    bool tls_out = strcmp(o->server_tls_sslmode, nc->server_tls_sslmode) ||
                   strcmp(o->server_tls_key_file, nc->server_tls_key_file) ||
                   strcmp(o->server_tls_cert_file, nc->server_tls_cert_file) ||
                   strcmp(o->server_tls_ca_file, nc->server_tls_ca_file) ||
                   strcmp(o->server_tls_protocols, nc->server_tls_protocols) ||
                   strcmp(o->server_tls_ciphers, nc->server_tls_ciphers) ||
                   strcmp(o->server_tls13_ciphers, nc->server_tls13_ciphers);
    /* New handshakes use the new certificates; connections keep theirs. A
     * bad file keeps that side's context in use; each side on its own. */
    char why[300];
    if (tls_client_setup(s, why, sizeof why))
        srv_log(s, "ERROR",
                "TLS setup failed: %s; the TLS settings in use towards clients are "
                "kept",
                why);
    if (tls_server_setup(s, why, sizeof why))
        srv_log(s, "ERROR",
                "TLS setup failed: %s; the TLS settings in use towards servers are "
                "kept",
                why);
    if (tls_http_setup(s, why, sizeof why))
        srv_log(s, "ERROR", "TLS setup failed: %s; the HTTPS settings in use are kept", why);
    pools_apply_config(s, tls_out);
    pools_warm(s);
    if (s->config_changed) s->config_changed(s);
    workers_release(s);
    cfg_free(&old);
}

int server_reload(server *s, char *err, size_t errlen)
{
    if (!current_worker)
        pthread_mutex_lock(&s->change_mu);
    else if (change_trylock(s)) {
        snprintf(err, errlen, "another configuration change is in progress");
        return CHANGE_BUSY;
    }
    err[0] = '\0';
    notify_reloading(); /* systemd: RELOADING=1 now, READY=1 once done either way */
    errbuf eb = {s, err, errlen, false};
    cfg nc;
    int rc = cfg_load(&nc, s->cfg.path, reload_log, &eb);
    if (rc == 0 && (rc = cfg_check_logins(&nc, &s->cfg, err, errlen)) != 0) cfg_free(&nc);
    if (rc) {
        if (!err[0]) snprintf(err, errlen, "cannot load %s", s->cfg.path);
        if (eb.logged) /* said just above, once: log readers count lines */
            srv_log(s, "ERROR", "RELOAD failed, keeping the running configuration");
        else
            srv_log(s, "ERROR", "RELOAD failed, keeping the running configuration: %s", err);
    } else {
        install(s, &nc);
        srv_log(s, "LOG", "configuration reloaded from %s", s->cfg.path);
    }
    (void)notify_send("READY=1\nSTATUS=%s", rc ? "RELOAD failed, the running configuration is kept"
                                               : "serving; configuration reloaded");
    pthread_mutex_unlock(&s->change_mu);
    return rc;
}

int server_set(server *s, const char *key, const char *value, char *err, size_t errlen)
{
    if (!cfg_key_changeable(key)) {
        snprintf(err, errlen, "%s cannot be changed online; change the file and restart", key);
        return -1;
    }
    if (change_trylock(s)) {
        snprintf(err, errlen, "another configuration change is in progress");
        return CHANGE_BUSY;
    }
    err[0] = '\0';
    errbuf eb = {s, err, errlen, false};
    cfg nc;
    int rc = cfg_copy(&nc, &s->cfg);
    if (rc) {
        snprintf(err, errlen, "out of memory");
    } else if ((rc = cfg_set(&nc, key, value, err, errlen)) != 0) {
        cfg_free(&nc);
    } else if (!strcmp(key, "auth_file") && cfg_load_auth_file(&nc, reload_log, &eb)) {
        if (!err[0]) snprintf(err, errlen, "cannot read auth_file %s", nc.auth_file);
        cfg_free(&nc);
        rc = -1;
    } else if ((!strcmp(key, "auth_type") || !strcmp(key, "auth_hba_file") ||
                !strcmp(key, "auth_ident_file")) &&
               cfg_load_hba(&nc, reload_log, &eb)) {
        if (!err[0]) snprintf(err, errlen, "cannot read auth_hba_file %s", nc.auth_hba_file);
        cfg_free(&nc);
        rc = -1;
    } else if ((rc = cfg_check_logins(&nc, &s->cfg, err, errlen)) != 0 ||
               (rc = cfg_check_tls(&nc, err, errlen)) != 0) {
        cfg_free(&nc);
    } else {
        install(s, &nc);
        srv_log(s, "LOG", "SET %s = %s", key, value);
    }
    pthread_mutex_unlock(&s->change_mu);
    return rc;
}
