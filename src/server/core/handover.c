/* handover.c — -R: the running weir is asked, over its console, to let a new
 * process take the new clients (see handover.h). A minimal PostgreSQL
 * protocol client: a startup packet, one simple query, blocking with a
 * deadline. */
#include "core/handover.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define DEADLINE_MS 10000

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int recv_all(int fd, void *p, size_t n, int64_t deadline)
{
    char *c = p;
    while (n) {
        int left = (int)(deadline - now_ms());
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&pfd, 1, left) <= 0) return -1;
        ssize_t r = recv(fd, c, n, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

/* The next message: its type, and up to cap bytes of its body in buf
 * (NUL-terminated; the rest read and dropped). -1: gone or too slow. */
static int next_msg(int fd, char *type, char *buf, size_t cap, int64_t deadline)
{
    uint8_t h[5];
    if (recv_all(fd, h, 5, deadline)) return -1;
    uint32_t len = ((uint32_t)h[1] << 24) | ((uint32_t)h[2] << 16) | ((uint32_t)h[3] << 8) | h[4];
    if (len < 4 || len > (1u << 20)) return -1;
    len -= 4;
    size_t keep = len < cap - 1 ? len : cap - 1;
    if (recv_all(fd, buf, keep, deadline)) return -1;
    buf[keep] = 0;
    for (uint32_t rest = len - (uint32_t)keep; rest > 0;) {
        char sink[256];
        uint32_t n = rest < sizeof sink ? rest : (uint32_t)sizeof sink;
        if (recv_all(fd, sink, n, deadline)) return -1;
        rest -= n;
    }
    *type = (char)h[0];
    return (int)keep;
}

/* An ErrorResponse's message field. */
static const char *error_message(const char *body, int len)
{
    for (int i = 0; i < len && body[i];) {
        if (body[i] == 'M') return body + i + 1;
        i += (int)strlen(body + i) + 1;
    }
    return "(no message)";
}

int handover_request(const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        snprintf(err, errlen, "socket path too long: %s", path);
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
        snprintf(err, errlen, "no running weir to take over from at %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    int64_t deadline = now_ms() + DEADLINE_MS;
    static const char params[] = "user\0pgbouncer\0database\0pgbouncer\0application_name\0weir "
                                 "-R\0";
    uint8_t pkt[8 + sizeof params];
    uint32_t n = (uint32_t)(8 + sizeof params); /* sizeof counts the final NUL */
    uint32_t be = htonl(n), proto = htonl(196608);
    memcpy(pkt, &be, 4);
    memcpy(pkt + 4, &proto, 4);
    memcpy(pkt + 8, params, sizeof params);
    char body[512], type = 0;
    int len;
    int rc = -1;
    if (send_all(fd, pkt, n)) goto gone;
    for (;;) { /* login: AuthenticationOk, then parameters, until ReadyForQuery */
        if ((len = next_msg(fd, &type, body, sizeof body, deadline)) < 0) goto gone;
        if (type == 'E') {
            snprintf(err, errlen, "the running weir refused its console: %s",
                     error_message(body, len));
            goto out;
        }
        if (type == 'R' && (len < 4 || body[0] || body[1] || body[2] || body[3])) {
            snprintf(err, errlen,
                     "the running weir's console asks for a password over %s; -R needs the "
                     "console open to weir's own OS user there, as user pgbouncer",
                     path);
            goto out;
        }
        if (type == 'Z') break;
    }
    static const char q[] = "SHUTDOWN WAIT_FOR_CLIENTS";
    uint8_t qm[5 + sizeof q];
    qm[0] = 'Q';
    be = htonl((uint32_t)(4 + sizeof q));
    memcpy(qm + 1, &be, 4);
    memcpy(qm + 5, q, sizeof q);
    if (send_all(fd, qm, sizeof qm)) goto gone;
    for (;;) {
        if ((len = next_msg(fd, &type, body, sizeof body, deadline)) < 0) {
            /* the console closes once the shutdown is under way: fine */
            rc = 0;
            goto out;
        }
        if (type == 'E') {
            snprintf(err, errlen, "the running weir refused SHUTDOWN: %s",
                     error_message(body, len));
            goto out;
        }
        if (type == 'Z') {
            rc = 0;
            goto out;
        }
    }
gone:
    snprintf(err, errlen, "the running weir at %s did not answer its console", path);
out:
    (void)send_all(fd, "X\0\0\0\4", 5); /* Terminate, politely */
    close(fd);
    return rc;
}
