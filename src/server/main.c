/* main.c — weir's command line and signals, as PgBouncer's:
 *   weir [-d] [-q] [-v] [-u user] [-V] [-h] config.ini
 * SIGINT: safe shutdown (new clients are refused, pools pause, and weir exits
 * once every server connection is back: each transaction ends first);
 * SIGTERM, or a second SIGINT: immediate shutdown (clients are told "pooler
 * is shutting down"); SIGUSR1: pause, SIGUSR2: resume; SIGHUP: reload the
 * config file (a bad file keeps the running configuration).
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
#include <sys/stat.h>
#include <unistd.h>

#include "server.h"

static void usage(FILE *f)
{
    fprintf(f, "weir is a connection pooler for PostgreSQL, compatible with PgBouncer.\n\n"
               "Usage:\n"
               "  weir [OPTION]... CONFIG_FILE\n\n"
               "Options:\n"
               "  -d, --daemon         run in the background (as a daemon)\n"
               "  -q, --quiet          run quietly (no log lines on stderr)\n"
               "  -v, --verbose        more log lines (repeat for more)\n"
               "  -u, --user=USERNAME  run as this user\n"
               "  -V, --version        show the version, then exit\n"
               "  -h, --help           show this help, then exit\n\n"
               "CONFIG_FILE is a pgbouncer.ini: [databases], [users] and [pgbouncer]\n"
               "sections with PgBouncer's keys; see docs/SERVER.md.\n");
}

static void cfg_log(void *ud, bool error, const char *msg)
{
    server *s = ud;
    srv_log(s, error ? "ERROR" : "WARNING", "%s", msg);
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
        {"daemon", no_argument, NULL, 'd'},
        {"quiet", no_argument, NULL, 'q'},
        {"verbose", no_argument, NULL, 'v'},
        {"user", required_argument, NULL, 'u'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
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
            fprintf(stderr, "weir: -R (online restart) is not supported\n");
            return 1;
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
        return 1;
    }
    s->verbose += s->cfg.verbose;
    if (s->cfg.logfile[0]) {
        s->logf = fopen(s->cfg.logfile, "a");
        if (!s->logf) {
            srv_log(s, "ERROR", "cannot open logfile %s: %s", s->cfg.logfile, strerror(errno));
            return 1;
        }
    }
    if (run_as && drop_privileges(s, run_as)) return 1;
    if (!run_as && s->cfg.user[0] && getuid() == 0 && drop_privileges(s, s->cfg.user)) return 1;
    if (daemon && daemonize(s)) return 1;
    if (s->cfg.pidfile[0]) {
        FILE *pf = fopen(s->cfg.pidfile, "w");
        if (!pf) {
            srv_log(s, "ERROR", "cannot write pidfile %s: %s", s->cfg.pidfile, strerror(errno));
            return 1;
        }
        fprintf(pf, "%d\n", (int)getpid());
        fclose(pf);
    }

    /* Workers inherit this mask: signals are taken here, with sigwait. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (server_start(s)) {
        srv_log(s, "ERROR", "startup failed");
        return 1;
    }
    bool safe_shutdown = false;
    for (;;) {
        if (safe_shutdown && all_released(s)) {
            srv_log(s, "LOG", "every server connection is back; shutting down");
            break;
        }
        struct timespec tick = {0, 100000000};
        int sig = sigtimedwait(&set, NULL, &tick);
        if (sig < 0) continue;
        if (sig == SIGTERM || (sig == SIGINT && safe_shutdown)) {
            srv_log(s, "LOG", "got %s, shutting down now", sig == SIGINT ? "SIGINT" : "SIGTERM");
            break;
        }
        if (sig == SIGINT) {
            srv_log(s, "LOG",
                    "got SIGINT, safe shutdown: waiting for transactions to end "
                    "(SIGTERM to stop now)");
            atomic_store(&s->shutting_down, true); /* new clients are refused */
            (void)pools_pause(s, "", true, "safe shutdown");
            safe_shutdown = true;
            continue;
        }
        if (sig == SIGUSR1) (void)pools_pause(s, "", true, "SIGUSR1");
        if (sig == SIGUSR2) (void)pools_pause(s, "", false, "SIGUSR2");
        if (sig == SIGHUP) {
            char err[400];
            srv_log(s, "LOG", "got SIGHUP, reloading"); /* cfg is read under change_mu */
            (void)server_reload(s, err, sizeof err);    /* it logs the outcome */
        }
    }
    server_stop(s);
    if (s->cfg.pidfile[0]) unlink(s->cfg.pidfile);
    cfg_free(&s->cfg);
    srv_log(s, "LOG", "shutdown complete");
    if (s->logf) fclose(s->logf);
    return 0;
}
