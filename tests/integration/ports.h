/* ports.h — a port for a server a test starts. */
#ifndef WEIR_TEST_PORTS_H
#define WEIR_TEST_PORTS_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

/* A port for a test's server: free now, and below the kernel's range of ports
 * for outgoing connections (ip_local_port_range), which the tests running
 * beside this one draw from by the thousand: one of their connections held
 * a cluster's port once, and PostgreSQL could not bind it. */
static int test_port(int salt)
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

#endif
