/* cluster.h — a throwaway PostgreSQL for an integration test program, made
 * by pg_cluster.sh in a temporary directory and removed at exit, also when a
 * test aborts. One per program. A program that defines CLUSTER_SCRIPT first
 * gets another server made the same way (mysql_cluster.sh: MariaDB). */
#ifndef WEIR_TEST_CLUSTER_H
#define WEIR_TEST_CLUSTER_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef CLUSTER_SCRIPT
#define CLUSTER_SCRIPT "pg_cluster.sh"
#endif

static char cluster_dir[256];
static int port;
static char script[512];

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

static void destroy_cluster(void)
{
    if (cluster_dir[0]) sh("%s destroy %s", script, cluster_dir);
    cluster_dir[0] = '\0';
}

/* A port for the server: free now, and below the kernel's range of ports
 * for outgoing connections (ip_local_port_range), which the tests running
 * beside this one draw from by the thousand: one of their connections held
 * a cluster's port once, and PostgreSQL could not bind it. */
static int cluster_port(int salt)
{
    int lo = 32768, hi;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f) {
        int a;
        if (fscanf(f, "%d %d", &a, &hi) == 2 && a > 21000) lo = a;
        fclose(f);
    }
    long span = lo - 20000;
    for (long i = 0; i < 64; i++) {
        int p = 20000 + (int)((getpid() + salt + i * 7919) % span);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)p),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
        if (fd >= 0) close(fd);
        if (ok) return p;
    }
    return 20000 + (int)((getpid() + salt) % span);
}

/* Start one: env is put before the script ("PG_SSL=1 " or ""), salt keeps
 * two programs' ports apart. 0, or -1. */
static int start_cluster(const char *env, int salt)
{
    snprintf(script, sizeof script, "%s/%s", WEIR_TEST_DIR, CLUSTER_SCRIPT);
    snprintf(cluster_dir, sizeof cluster_dir, "/tmp/weir-db-XXXXXX");
    if (!mkdtemp(cluster_dir)) return -1;
    port = cluster_port(salt);
    atexit(destroy_cluster);
    return sh("%s%s start %s %d", env, script, cluster_dir, port) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    destroy_cluster();
    return 0;
}

#endif
