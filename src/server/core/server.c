/* server.c — starting and stopping the process (server.h): the workers, their
 * listening sockets (TCP per worker with SO_REUSEPORT, the Unix socket
 * shared), the registries both doors use, and the order things stop in. */
#include "core/server.h"

#include <errno.h>
#include <event2/thread.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/authguard.h"
#include "core/log.h"
#include "core/pools.h"
#include "core/worker.h"
#include "pg/peering.h"
#include "pg/prep.h"

/* --- listeners ----------------------------------------------------------- */

/* Can addr be listened on (the port free, the family there)? A socket, or -1. */
static int tcp_listen_quiet(server *s, const char *addr)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", s->cfg.listen_port);
    if (getaddrinfo(addr, port, &hints, &ai)) return -1;
    int one = 1, fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && ai->ai_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd >= 0 && bind(fd, ai->ai_addr, ai->ai_addrlen)) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

/* A worker's listening socket on addr (SO_REUSEPORT: the workers share the
 * port); or, with probe, a socket bound without SO_REUSEPORT and not
 * listening, which says that no other socket listens there (a second weir,
 * or anything else). A probe must not listen: a client connecting in the
 * moment it existed would be taken into its queue by the kernel, then reset
 * when it closes. -1 on failure, logged. */
static int tcp_listen(server *s, const char *addr, bool probe)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", s->cfg.listen_port);
    int g = getaddrinfo(addr, port, &hints, &ai);
    if (g) {
        srv_log(s, "ERROR", "listen_addr %s: %s", addr, gai_strerror(g));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        /* "::" takes IPv6 only; 0.0.0.0 is listened on apart (listen_addr = *) */
        if (ai->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        if (!probe) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    }
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) ||
        (!probe && listen(fd, s->cfg.listen_backlog))) {
        srv_log(s, "ERROR", "cannot listen on %s:%d: %s", addr, s->cfg.listen_port,
                strerror(errno));
        if (fd >= 0) close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    return fd;
}

static int unix_listen(server *s)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(s->unix_path, sizeof s->unix_path, "%s/.s.PGSQL.%d", s->cfg.unix_socket_dir,
             s->cfg.listen_port);
    if (strlen(s->unix_path) >= sizeof sa.sun_path) {
        srv_log(s, "ERROR", "unix_socket_dir too long");
        return -1;
    }
    memcpy(sa.sun_path, s->unix_path, strlen(s->unix_path) + 1);
    /* A stale socket from a dead process is removed; a live one refuses us,
     * except under -R, where the old process keeps its own (unnamed from
     * now on) for the console until it exits. */
    int probe = s->takeover ? -1 : socket(AF_UNIX, SOCK_STREAM, 0);
    if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0) {
        close(probe);
        srv_log(s, "ERROR", "%s is in use by another server", s->unix_path);
        return -1;
    }
    if (probe >= 0) close(probe);
    unlink(s->unix_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) ||
        listen(fd, s->cfg.listen_backlog)) {
        srv_log(s, "ERROR", "cannot listen on %s: %s", s->unix_path, strerror(errno));
        if (fd >= 0) close(fd);
        s->unix_path[0] = '\0';
        return -1;
    }
    chmod(s->unix_path, (mode_t)s->cfg.unix_socket_mode);
    struct stat st;
    s->unix_ino = stat(s->unix_path, &st) ? 0 : st.st_ino;
    return fd;
}

/* The cores this process may run on: its affinity mask (taskset, a
 * container's cpuset), else those online. */
static int cores(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* Half the cores, but two on a machine of two or three: PostgreSQL (and
 * often the clients) share the machine. On 2 cores two loops measured
 * faster than one at every client count on one VM (and level on another);
 * on 16, 8 and 16 loops were level within the spread of runs, 16 at a
 * fifth more CPU per transaction (docs/BENCHMARKS.md, "workers"). While
 * the load fits in one loop the workers pack on the first (worker.c,
 * packing), so the second costs nothing until it is needed. */
static int default_workers(int ncores)
{
    if (ncores <= 1) return 1;
    return ncores / 2 > 2 ? ncores / 2 : 2;
}

int server_start(server *s)
{
    evthread_use_pthreads();
    int ncores = cores();
    s->nworkers = s->cfg.workers > 0 ? s->cfg.workers : default_workers(ncores);
    s->nhttp = !s->cfg.http_listen_port  ? 0
               : s->cfg.http_workers > 0 ? s->cfg.http_workers
               : ncores * 2 > 4          ? ncores * 2
                                         : 4;
    s->nstat = s->nworkers + (s->nhttp ? 1 : 0);
    s->workers = calloc((size_t)s->nworkers, sizeof *s->workers);
    if (!s->workers) return -1;
    if (!(s->console = stats_console_new(s))) return -1;
    s->unix_fd = -1;
    if (s->cfg.syslog) { /* syslog* are fixed until a restart */
        openlog(s->cfg.syslog_ident, LOG_PID, cfg_syslog_facility(s->cfg.syslog_facility));
        s->syslog_on = true;
    }
    s->ps_reg = ps_registry_new();
    s->guard = authguard_new();
    if (!s->ps_reg || !s->guard) return -1;
    for (int i = 0; i < s->nworkers; i++)
        if (worker_init(&s->workers[i], s, i)) return -1;

    /* TCP: with several workers, each gets its own SO_REUSEPORT socket per
     * address and the kernel spreads connections across them. */
    char addrs[CFG_STR * 2] = "";
    { /* "*": every IPv4 and IPv6 address, as PgBouncer */
        char list[CFG_STR];
        snprintf(list, sizeof list, "%s", s->cfg.listen_addr);
        for (char *save = NULL, *a = strtok_r(list, ", ", &save); a;
             a = strtok_r(NULL, ", ", &save)) {
            size_t n = strlen(addrs);
            snprintf(addrs + n, sizeof addrs - n, "%s%s", n ? "," : "",
                     strcmp(a, "*") ? a : "0.0.0.0,*6");
        }
    }
    int nlisten = 0;
    for (char *save = NULL, *a = strtok_r(addrs, ", ", &save); a; a = strtok_r(NULL, ", ", &save)) {
        bool any6 = !strcmp(a, "*6"); /* a machine without IPv6 just says so */
        if (any6) {
            a = "::";
            int probe = tcp_listen_quiet(s, a);
            if (probe < 0) {
                srv_log(s, "LOG", "listen_addr *: no IPv6 here; IPv4 only");
                continue;
            }
            close(probe);
        }
        /* so_reuseport = 0 (PgBouncer's default): the port must be free, so a
         * second weir (or anything else) on it fails instead of sharing it.
         * The workers' own sockets share it among themselves either way. */
        /* -R: the old process closes its listeners once asked; until then
         * the port is not ours (a shared one would split new clients with a
         * listener about to close). */
        for (int i = 0; s->takeover && i < 100; i++) {
            int probe = tcp_listen_quiet(s, a);
            if (probe >= 0) {
                close(probe);
                break;
            }
            usleep(100000);
        }
        if (!s->cfg.so_reuseport) {
            int probe = tcp_listen(s, a, true);
            if (probe < 0) return -1;
            close(probe);
        }
        for (int i = 0; i < s->nworkers; i++) {
            worker *w = &s->workers[i];
            if (w->nlisten >= (int)(sizeof w->listen_ev / sizeof *w->listen_ev) - 1) {
                srv_log(s, "ERROR", "too many listen_addr entries (at most %d)",
                        (int)(sizeof w->listen_ev / sizeof *w->listen_ev) - 1);
                return -1;
            }
            int fd = tcp_listen(s, a, false);
            if (fd < 0 || worker_listen(w, fd)) return -1;
            /* so_reuseport = 1 may share the group with another process:
             * its sockets' indexes are not ours to steer to */
            if (i == 0 && s->nworkers > 1 && !s->cfg.so_reuseport &&
                s->nsteer < (int)(sizeof s->steer_fd / sizeof *s->steer_fd))
                s->steer_fd[s->nsteer++] = fd;
        }
        srv_log(s, "LOG", "listening on %s:%d", a, s->cfg.listen_port);
        nlisten++;
    }
    if (s->cfg.unix_socket_dir[0]) {
        s->unix_fd = unix_listen(s);
        if (s->unix_fd < 0) return -1;
        /* worker 0 alone: it hands the connections out (worker.c, unix_accepted) */
        if (worker_listen(&s->workers[0], s->unix_fd)) return -1;
        srv_log(s, "LOG", "listening on unix:%s", s->unix_path);
        nlisten++;
    }
    if (!nlisten) {
        srv_log(s, "ERROR", "nothing to listen on: set listen_addr or unix_socket_dir");
        return -1;
    }
    return 0;
}

int server_run(server *s)
{
    for (int i = 0; i < s->nworkers; i++)
        if (pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i])) return -1;
    srv_log(s, "LOG", "process up: %s, %d worker%s", WEIR_VERSION_TEXT, s->nworkers,
            s->nworkers == 1 ? "" : "s");
    return 0;
}

void server_stop(server *s)
{
    atomic_store(&s->shutting_down, true); /* the HTTP door, which reads the pools, is stopped */
    /* Under change_mu: a hold in progress (packing: worker.c) ends with
     * every worker still in its loop, and none begins after. */
    pthread_mutex_lock(&s->change_mu);
    for (int i = 0; i < s->nworkers; i++) {
        atomic_store(&s->workers[i].stop, true);
        event_base_loopbreak(s->workers[i].base);
    }
    pthread_mutex_unlock(&s->change_mu);
    for (int i = 0; i < s->nworkers; i++) pthread_join(s->workers[i].thread, NULL);
    /* Completions that arrived after a worker stopped. */
    for (int i = 0; i < s->nworkers; i++) s->door->close_all(&s->workers[i]);
    /* Cancels in flight give their connections back when they finish (at
     * most be_cancel's 10 s). */
    for (int i = 0; i < 1100 && atomic_load(&s->cancels_inflight) > 0; i++) usleep(10000);
    pools_destroy(s);
    if (!atomic_load(&s->cancels_inflight)) peer_free(s);
    for (int i = 0; i < s->nworkers; i++) worker_drain(&s->workers[i]);
    for (int i = 0; i < s->nworkers; i++) worker_destroy(&s->workers[i]);
    if (s->unix_fd >= 0) {
        close(s->unix_fd);
        /* only if the name is still ours: after -R it is the new process's */
        struct stat st;
        if (!stat(s->unix_path, &st) && st.st_ino == s->unix_ino) unlink(s->unix_path);
    }
    free(s->workers);
    stats_console_free(s->console);
    s->console = NULL;
    free(s->keys);
    free(s->disabled);
    ps_registry_free(s->ps_reg); /* after the last client */
    s->ps_reg = NULL;
    authguard_free(s->guard);
    s->guard = NULL;
}

void server_shutdown(server *s, int mode)
{
    int none = SHUTDOWN_NONE;
    if (!atomic_compare_exchange_strong(&s->shutdown_mode, &none, mode)) return;
    atomic_store(&s->shutting_down, true); /* new logins: the console's only */
    if (mode == SHUTDOWN_WAIT_FOR_SERVERS) (void)pools_pause(s, "", true, "shutdown");
    uint64_t one = 1;
    for (int i = 0; i < s->nworkers; i++) {
        worker *w = &s->workers[i];
        atomic_store(&w->unlisten_pending, true);
        if (mode == SHUTDOWN_WAIT_FOR_SERVERS) atomic_store(&w->close_waiting_pending, true);
        (void)!write(w->efd, &one, sizeof one);
    }
}

int server_app_clients(server *s)
{
    int n = 0;
    for (int i = 0; i < s->nworkers; i++) n += s->door->app_clients(&s->workers[i]);
    return n;
}
