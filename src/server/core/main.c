/* main.c — weir's command line and signals, as PgBouncer's:
 *   weir [-d] [-q] [-v] [-u user] [-V] [-h] config.ini
 * SIGINT: safe shutdown (SHUTDOWN WAIT_FOR_SERVERS: new connections are
 * refused, pools pause, and weir exits once every server connection is back:
 * each transaction ends first); SIGTERM: super-safe shutdown (SHUTDOWN
 * WAIT_FOR_CLIENTS: weir exits once every client has left); SIGQUIT, or a
 * second shutdown signal: immediate shutdown (clients are told "pooler is
 * shutting down"); SIGUSR1: pause, SIGUSR2: resume; SIGHUP: reopen the
 * logfile (logrotate) and reload the config file (a bad file keeps the
 * running configuration).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/handover.h"
#include "core/log.h"
#include "core/notify.h"
#include "core/pools.h"
#include "core/reload.h"
#include "core/server.h"
#include "core/tls.h"
#include "core/worker.h"
#include "http/http.h"
#include "pg/client.h"

/* The logfile opened again at its path (after logrotate renamed it); the
 * old stream is kept if the new one cannot be opened. */
static void reopen_log(server *s)
{
    if (!s->logf || !s->logpath[0]) return;
    FILE *f = fopen(s->logpath, "a");
    if (!f) {
        srv_log(s, "WARNING", "cannot reopen logfile %s: %s; still writing the old one", s->logpath,
                strerror(errno));
        return;
    }
    pthread_mutex_lock(&s->log_lock);
    FILE *old = s->logf;
    s->logf = f;
    pthread_mutex_unlock(&s->log_lock);
    fclose(old);
}

/* The watchdog's question: has every worker's loop turned within half of
 * WatchdogSec (at least 2 s: a reload holds them for a moment)? A stuck
 * worker stops the pings, and systemd restarts weir. */
static bool workers_alive(server *s)
{
    uint64_t wd = notify_watchdog_usec();
    if (!wd) return true;
    int64_t limit = (int64_t)(wd / 2000), now = weir_now_ms();
    if (limit < 2000) limit = 2000;
    for (int i = 0; i < s->nworkers; i++) {
        int64_t t = atomic_load_explicit(&s->workers[i].ticked_ms, memory_order_relaxed);
        if (t && now - t > limit) {
            static bool said;
            if (!said)
                srv_log(s, "WARNING", "worker %d has not run for %lld ms: no WATCHDOG=1", i,
                        (long long)(now - t));
            said = true;
            return false;
        }
    }
    return true;
}

/* The HTTP door first: it reads the pools the workers' stop destroys. */
static void stop(server *s)
{
    atomic_store(&s->shutting_down, true);
    http_stop(s);
    server_stop(s);
}

static void usage(FILE *f)
{
    fprintf(f, "weir is a connection pooler for PostgreSQL, compatible with PgBouncer.\n\n"
               "Usage:\n"
               "  weir [OPTION]... CONFIG_FILE\n\n"
               "Options:\n"
               "  -d, --daemon         run in the background (as a daemon)\n"
               "  -q, --quiet          run quietly (no log lines on stderr)\n"
               "  -v, --verbose        more log lines (repeat for more)\n"
               "  -R, --reboot         online restart: take over from the running weir\n"
               "  -u, --user=USERNAME  run as this user\n"
               "  -V, --version        show the version, then exit\n"
               "  -h, --help           show this help, then exit\n\n"
               "CONFIG_FILE is a pgbouncer.ini: [databases], [users] and [pgbouncer]\n"
               "sections with PgBouncer's keys; see docs/SERVER.md.\n");
}

/* What the config file's reading said before the logfile was open: kept,
 * so that the logfile gets it too (a start refused for a bad config says
 * why where the operator looks, as PgBouncer). */
static char early_log[16384];
static size_t early_len;

static void cfg_log(void *ud, bool error, const char *msg)
{
    server *s = ud;
    srv_log(s, error ? "ERROR" : "WARNING", "%s", msg);
    if (!s->logf && early_len < sizeof early_log) {
        int n = snprintf(early_log + early_len, sizeof early_log - early_len, "%s %s\n",
                         error ? "ERROR" : "WARNING", msg);
        if (n > 0)
            early_len += (size_t)n < sizeof early_log - early_len
                             ? (size_t)n
                             : sizeof early_log - early_len - 1;
    }
}

/* The kept lines into the logfile f, each with the pid, as srv_log writes. */
static void early_to(FILE *f)
{
    char ts[64];
    log_timestamp(ts);
    for (char *line = early_log, *nl; early_len && (nl = strchr(line, '\n')); line = nl + 1)
        fprintf(f, "%s [%d] %.*s\n", ts, (int)getpid(), (int)(nl - line), line);
    fflush(f);
    early_len = 0;
}

static int drop_privileges(server *s, const char *user)
{
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        srv_log(s, "ERROR", "could not find user '%s' to switch to", user);
        return -1;
    }
    if (getuid() == pw->pw_uid) return 0;
    if (setgroups(0, NULL) || setgid(pw->pw_gid) || setuid(pw->pw_uid)) {
        srv_log(s, "ERROR", "could not switch to user '%s': %s", user, strerror(errno));
        return -1;
    }
    return 0;
}

static int daemonize(server *s)
{
    pid_t pid = fork();
    if (pid < 0) {
        srv_log(s, "ERROR", "fork: %s", strerror(errno));
        return -1;
    }
    if (pid > 0) _exit(0);
    setsid();
    pid = fork();
    if (pid < 0) return -1;
    if (pid > 0) _exit(0);
    int fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
        dup2(fd, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        if (fd > 2) close(fd);
    }
    s->quiet = true;
    return 0;
}

/* Does the pidfile still name this process? */
static bool pidfile_is_mine(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return false;
    long pid = 0;
    int n = fscanf(f, "%ld", &pid);
    fclose(f);
    return n == 1 && pid == (long)getpid();
}

/* A pidfile that names a live process means another weir runs: refuse. A
 * stale one is removed. */
static int check_pidfile(server *s, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    long pid = 0;
    int n = fscanf(f, "%ld", &pid);
    fclose(f);
    if (n == 1 && pid > 0 && pid != getpid() && (kill((pid_t)pid, 0) == 0 || errno == EPERM)) {
        srv_log(s, "ERROR", "pidfile %s names process %ld, which is running: another instance?",
                path, pid);
        return -1;
    }
    unlink(path);
    return 0;
}

/* Raise the soft open-files limit to the hard one, and say when the
 * configuration may need more descriptors than that. */
static void fd_limits(server *s)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl)) return;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit want = {rl.rlim_max, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &want) == 0) rl = want;
    }
    const cfg *k = &s->cfg;
    long long need = 64 + k->max_client_conn; /* logs, listeners, eventfds, spare */
    for (size_t i = 0; i < k->ndbs; i++) {
        const cfg_db *db = &k->dbs[i];
        if (cfg_db_http_only(db)) continue;
        int size = db->pool_size >= 0 ? db->pool_size : k->default_pool_size;
        int reserve = db->reserve_pool >= 0 ? db->reserve_pool : k->reserve_pool_size;
        int cap = db->max_db_connections > 0 ? db->max_db_connections : k->max_db_connections;
        need += cap > 0 && cap < size + reserve ? cap : size + reserve;
    }
    if (k->http_listen_port) need += k->http_max_connections > 0 ? k->http_max_connections : 0;
    if (rl.rlim_cur != RLIM_INFINITY && (long long)rl.rlim_cur < need)
        srv_log(s, "WARNING",
                "file descriptor limit: %lld (hard %lld), but max_client_conn (%d) + server "
                "connections + http_max_connections need at least %lld: raise LimitNOFILE / "
                "ulimit -n, or lower the limits",
                (long long)rl.rlim_cur, (long long)rl.rlim_max, k->max_client_conn, need);
    else if (s->verbose)
        srv_log(s, "LOG", "file descriptor limit: %lld (hard %lld), at least %lld needed",
                (long long)rl.rlim_cur, (long long)rl.rlim_max, need);
}

/* Is every server connection back in its pool? */
static bool all_released(server *s)
{
    bool all = true;
    pthread_mutex_lock(&s->pools_lock);
    for (spool *p = s->pools; p && all; p = p->next) {
        weir_pool_stats st;
        if (weir_pool_stats_get(p->pool, &st) == 0 && st.active > 0) all = false;
    }
    pthread_mutex_unlock(&s->pools_lock);
    return all;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"daemon", no_argument, NULL, 'd'},     {"quiet", no_argument, NULL, 'q'},
        {"verbose", no_argument, NULL, 'v'},    {"reboot", no_argument, NULL, 'R'},
        {"user", required_argument, NULL, 'u'}, {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0},
    };
    bool daemon = false;
    const char *run_as = NULL;
    static server srv;
    server *s = &srv;
    pthread_mutex_init(&s->log_lock, NULL);
    pthread_mutex_init(&s->pools_lock, NULL);
    pthread_mutex_init(&s->keys_lock, NULL);
    pthread_mutex_init(&s->stats_lock, NULL);
    pthread_mutex_init(&s->change_mu, NULL);
    pthread_mutex_init(&s->hold_mu, NULL);
    pthread_mutex_init(&s->tls_mu, NULL);
    pthread_cond_init(&s->hold_cv, NULL);
    pthread_rwlock_init(&s->cfg_rw, NULL);
    int ch;
    while ((ch = getopt_long(argc, argv, "dqvu:VhR", longopts, NULL)) != -1) {
        switch (ch) {
        case 'd':
            daemon = true;
            break;
        case 'q':
            s->quiet = true;
            break;
        case 'v':
            s->verbose++;
            break;
        case 'u':
            run_as = optarg;
            break;
        case 'V':
            printf("%s\n", WEIR_VERSION_TEXT);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        case 'R':
            s->takeover = true;
            break;
        default:
            usage(stderr);
            return 1;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "weir: need exactly one config file\n");
        usage(stderr);
        return 1;
    }
    /* RELOAD reads the file again, maybe after -d changed directory. */
    char path[PATH_MAX];
    const char *cfg_path = realpath(argv[optind], path) ? path : argv[optind];
    if (cfg_load(&s->cfg, cfg_path, cfg_log, s)) {
        srv_log(s, "ERROR", "cannot load config file %s; not starting", argv[optind]);
        FILE *lf = s->cfg.logfile[0] ? fopen(s->cfg.logfile, "a") : NULL;
        if (lf) {
            cfg_log(s, true, "cannot load config file; not starting");
            early_to(lf);
            fclose(lf);
        }
        return 1;
    }
    s->verbose += s->cfg.verbose;
    atomic_store(&s->log_connections, s->cfg.log_connections);
    atomic_store(&s->log_disconnections, s->cfg.log_disconnections);
    if (s->cfg.logfile[0]) {
        snprintf(s->logpath, sizeof s->logpath, "%.*s", (int)sizeof s->logpath - 1, s->cfg.logfile);
        s->logf = fopen(s->cfg.logfile, "a");
        if (!s->logf) {
            srv_log(s, "ERROR", "cannot open logfile %s: %s", s->cfg.logfile, strerror(errno));
            return 1;
        }
        early_to(s->logf); /* the config's warnings, read before it was open */
    }
    if (daemon && !s->cfg.pidfile[0]) {
        srv_log(s, "ERROR", "-d (daemon) needs pidfile configured");
        return 1;
    }
    if (daemon && !s->cfg.logfile[0] && !s->cfg.syslog) {
        srv_log(s, "ERROR", "-d (daemon) needs logfile or syslog configured");
        return 1;
    }
    if (s->takeover) {
        /* -R: the running weir is asked to hand over (handover.h) */
        char hpath[PATH_MAX], herr[400];
        if (!s->cfg.unix_socket_dir[0]) {
            srv_log(s, "ERROR", "-R needs unix_socket_dir: the running weir is asked over it");
            return 1;
        }
        snprintf(hpath, sizeof hpath, "%.*s/.s.PGSQL.%d", (int)sizeof s->cfg.unix_socket_dir - 1,
                 s->cfg.unix_socket_dir, s->cfg.listen_port);
        if (handover_request(hpath, herr, sizeof herr)) {
            srv_log(s, "ERROR", "-R: %s", herr);
            return 1;
        }
        srv_log(s, "LOG",
                "-R: the running weir stops taking clients and exits once its own "
                "have left; this one takes the new ones");
    } else if (s->cfg.pidfile[0] && check_pidfile(s, s->cfg.pidfile)) {
        return 1;
    }
    fd_limits(s); /* before dropping privileges: only root may raise the hard limit */
    if (run_as && drop_privileges(s, run_as)) return 1;
    if (!run_as && s->cfg.user[0] && getuid() == 0 && drop_privileges(s, s->cfg.user)) return 1;
    if (daemon && daemonize(s)) return 1;
    notify_init(); /* after -d (the pid systemd watches), before any thread reads it */

    /* Workers inherit this mask: signals are taken here, with sigwait. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* pidfile cannot change without a restart; read it before the workers
     * start, since a RELOAD swaps s->cfg under them. */
    char pidpath[PATH_MAX];
    snprintf(pidpath, sizeof pidpath, "%.*s", (int)sizeof s->cfg.pidfile - 1, s->cfg.pidfile);
    s->door = &pg_door;
    s->config_changed = http_config_changed;
    char why[300];
    if (tls_client_setup(s, why, sizeof why) || tls_server_setup(s, why, sizeof why) ||
        tls_http_setup(s, why, sizeof why)) {
        srv_log(s, "ERROR", "TLS: %s; not starting", why);
        return 1;
    }
    if (server_start(s) || http_start(s) || server_run(s)) {
        srv_log(s, "ERROR", "startup failed");
        return 1;
    }
    pthread_mutex_lock(&s->change_mu); /* s->cfg may change under a RELOAD from now on */
    pools_warm(s);
    int port = s->cfg.listen_port; /* cannot change online */
    pthread_mutex_unlock(&s->change_mu);
    /* Only now, listening: a start that fails never touches a live weir's pidfile. */
    bool wrote_pid = false;
    if (pidpath[0]) {
        char tmp[PATH_MAX + 8];
        snprintf(tmp, sizeof tmp, "%s.tmp", pidpath);
        FILE *pf = fopen(tmp, "w");
        if (!pf || fprintf(pf, "%d\n", (int)getpid()) < 0 || fclose(pf) || rename(tmp, pidpath)) {
            srv_log(s, "ERROR", "cannot write pidfile %s: %s", pidpath, strerror(errno));
            stop(s);
            return 1;
        }
        wrote_pid = true;
    }
    (void)notify_send("READY=1\nMAINPID=%d\nSTATUS=serving on port %d", (int)getpid(), port);
    bool said_stopping = false;
    int said_clients = -1;
    struct timespec said_at = {0, 0};
    for (;;) {
        int mode = atomic_load(&s->shutdown_mode);
        notify_watchdog(workers_alive(s));
        if (mode && !said_stopping) {
            said_stopping = true;
            (void)notify_send("STOPPING=1\nSTATUS=%s",
                              mode == SHUTDOWN_WAIT_FOR_CLIENTS
                                  ? "shutting down once every client has left"
                                  : "shutting down once every transaction has ended");
        } else if (!mode) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            int n = atomic_load(&s->nclients);
            if (n != said_clients && now.tv_sec - said_at.tv_sec >= 2) {
                said_clients = n;
                said_at = now;
                (void)notify_send("STATUS=serving on port %d, %d client connections", port, n);
            }
        }
        if (mode == SHUTDOWN_WAIT_FOR_SERVERS && all_released(s)) {
            srv_log(s, "LOG", "every server connection is back; shutting down");
            break;
        }
        if (mode == SHUTDOWN_WAIT_FOR_CLIENTS && server_app_clients(s) == 0) {
            srv_log(s, "LOG", "every client has left; shutting down");
            break;
        }
        struct timespec tick = {0, 100000000};
        int sig = sigtimedwait(&set, NULL, &tick);
        if (sig < 0) continue;
        const char *name = sig == SIGINT    ? "SIGINT"
                           : sig == SIGTERM ? "SIGTERM"
                           : sig == SIGQUIT ? "SIGQUIT"
                                            : "";
        if (sig == SIGQUIT || ((sig == SIGTERM || sig == SIGINT) && mode)) {
            srv_log(s, "LOG", "got %s, shutting down now", name);
            break;
        }
        if (sig == SIGINT) {
            srv_log(s, "LOG",
                    "got SIGINT, safe shutdown: waiting for transactions to end "
                    "(SIGINT, SIGTERM or SIGQUIT to stop now)");
            server_shutdown(s, SHUTDOWN_WAIT_FOR_SERVERS);
            continue;
        }
        if (sig == SIGTERM) {
            srv_log(s, "LOG",
                    "got SIGTERM, shutdown once every client has left (SIGINT, SIGTERM or "
                    "SIGQUIT to stop now)");
            server_shutdown(s, SHUTDOWN_WAIT_FOR_CLIENTS);
            continue;
        }
        if ((sig == SIGUSR1 || sig == SIGUSR2) && mode) {
            srv_log(s, "LOG", "got %s while shutting down, ignoring",
                    sig == SIGUSR1 ? "SIGUSR1" : "SIGUSR2");
            continue;
        }
        if (sig == SIGUSR1) (void)pools_pause(s, "", true, "SIGUSR1");
        if (sig == SIGUSR2) (void)pools_pause(s, "", false, "SIGUSR2");
        if (sig == SIGHUP) {
            char err[400];
            reopen_log(s); /* logrotate moved it away: a new file at the same path */
            srv_log(s, "LOG", "got SIGHUP, reloading"); /* cfg is read under change_mu */
            (void)server_reload(s, err, sizeof err);    /* it logs the outcome */
        }
    }
    if (!said_stopping) (void)notify_send("STOPPING=1\nSTATUS=shutting down");
    stop(s);
    tls_free(s);
    if (wrote_pid && pidfile_is_mine(pidpath)) unlink(pidpath); /* after -R: the new one's */
    cfg_free(&s->cfg);
    srv_log(s, "LOG", "shutdown complete");
    if (s->logf) fclose(s->logf);
    return 0;
}
