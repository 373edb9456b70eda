/* notify.c — sd_notify without libsystemd: the protocol is one datagram of
 * "KEY=value" lines to the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or
 * "@name" for the abstract namespace). Debian's pgbouncer.service is
 * Type=notify; so is etc/weir.service. */
#include "core/notify.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_un addr;
static socklen_t addrlen; /* 0: not under systemd */
static uint64_t wd_usec, wd_last;

static uint64_t now_usec(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

void notify_init(void)
{
    const char *p = getenv("NOTIFY_SOCKET");
    addrlen = 0;
    if (p && (p[0] == '/' || p[0] == '@') && strlen(p) < sizeof addr.sun_path) {
        memset(&addr, 0, sizeof addr);
        addr.sun_family = AF_UNIX;
        size_t n = strlen(p);
        memcpy(addr.sun_path, p, n);
        if (p[0] == '@') addr.sun_path[0] = '\0'; /* abstract: no trailing NUL counted */
        addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (p[0] == '/'));
    }
    /* WATCHDOG_PID, when set, names the process meant: not a child of ours. */
    const char *w = getenv("WATCHDOG_USEC"), *wp = getenv("WATCHDOG_PID");
    wd_usec = 0;
    if (addrlen && w && (!wp || atol(wp) == (long)getpid())) wd_usec = strtoull(w, NULL, 10);
    wd_last = now_usec();
}

int notify_send(const char *fmt, ...)
{
    if (!addrlen) return -1;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    if ((size_t)n >= sizeof msg) n = sizeof msg - 1;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    ssize_t w = sendto(fd, msg, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&addr, addrlen);
    close(fd);
    return w == n ? 0 : -1;
}

void notify_reloading(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    (void)notify_send("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading the configuration",
                      (unsigned long long)t.tv_sec * 1000000ull +
                          (unsigned long long)t.tv_nsec / 1000ull);
}

void notify_watchdog(bool healthy)
{
    if (!wd_usec || !healthy) return; /* systemd restarts a weir that stops saying it */
    uint64_t now = now_usec();
    if (now - wd_last < wd_usec / 2) return;
    wd_last = now;
    (void)notify_send("WATCHDOG=1");
}

uint64_t notify_watchdog_usec(void)
{
    return wd_usec;
}
