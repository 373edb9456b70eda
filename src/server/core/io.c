/* io.c — reads and writes on client and server sockets (io.h). */
#include "core/io.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdatomic.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>

/* An OpenSSL result as recv/send's. */
static ssize_t tls_result(SSL *tls, int r)
{
    if (r > 0) return r;
    switch (SSL_get_error(tls, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        if (!errno) return 0; /* the peer closed without close_notify */
        return -1;
    default:
        ERR_clear_error();
        errno = EPROTO;
        return -1;
    }
}

ssize_t io_recv(int fd, SSL *tls, void *buf, size_t n)
{
    if (!tls) return recv(fd, buf, n, 0);
    if (n > INT_MAX) n = INT_MAX;
    errno = 0;
    return tls_result(tls, SSL_read(tls, buf, (int)n));
}

ssize_t io_send(int fd, SSL *tls, const void *buf, size_t n)
{
    if (!tls) return send(fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (!n) return 0;
    if (n > INT_MAX) n = INT_MAX;
    errno = 0;
    return tls_result(tls, SSL_write(tls, buf, (int)n));
}

/* Bytes OpenSSL holds that the socket will not announce again: decrypted
 * ones, and (with read-ahead) records read from the socket but not yet
 * decrypted. */
size_t io_pending(SSL *tls)
{
    return tls ? (size_t)SSL_pending(tls) + (SSL_has_pending(tls) ? 1 : 0) : 0;
}

ssize_t io_writev(int fd, const struct iovec *iov, int n)
{
    struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
    return sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
}

int io_peek_byte(int fd)
{
    unsigned char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 1                                                                  ? b
           : n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) ? -2
                                                                                   : -1;
}

bool io_quiet(int fd)
{
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

void sockaddr_text(const struct sockaddr *sa, char *addr, size_t len, int *port)
{
    snprintf(addr, len, "unix");
    *port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &a->sin_addr, addr, (socklen_t)len);
        *port = ntohs(a->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, addr, (socklen_t)len);
        *port = ntohs(a->sin6_port);
    }
}

void sock_addr(int fd, bool peer, char *addr, size_t len, int *port)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if ((peer ? getpeername(fd, (struct sockaddr *)&ss, &sl)
              : getsockname(fd, (struct sockaddr *)&ss, &sl)))
        ss.ss_family = AF_UNSPEC;
    sockaddr_text((struct sockaddr *)&ss, addr, len, port);
}

uint64_t io_new_id(void)
{
    static _Atomic uint64_t next = 1;
    return atomic_fetch_add(&next, 1);
}
