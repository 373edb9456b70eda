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

#include "ports.h"

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

/* Start one: env is put before the script ("PG_SSL=1 " or ""), salt keeps
 * two programs' ports apart. 0, or -1. */
static int start_cluster(const char *env, int salt)
{
    snprintf(script, sizeof script, "%s/%s", WEIR_TEST_DIR, CLUSTER_SCRIPT);
    snprintf(cluster_dir, sizeof cluster_dir, "/tmp/weir-db-XXXXXX");
    if (!mkdtemp(cluster_dir)) return -1;
    port = test_port(salt);
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
