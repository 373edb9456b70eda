/* io.h — every read and write on a client or server socket goes through
 * here (io.c), in the clear or over TLS (tls is the connection's SSL, or
 * NULL). Non-blocking sockets; the results are recv(2)'s and send(2)'s:
 * > 0 bytes, 0 at the end, -1 with errno (EAGAIN: try when the socket is
 * ready again). */
#ifndef WEIR_SERVER_IO_H
#define WEIR_SERVER_IO_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

struct iovec;
typedef struct ssl_st SSL;

ssize_t io_recv(int fd, SSL *tls, void *buf, size_t n);
ssize_t io_send(int fd, SSL *tls, const void *buf, size_t n); /* never blocks, no SIGPIPE */
ssize_t io_writev(int fd, const struct iovec *iov, int n);    /* the same, gathered (clear) */
/* Bytes TLS has decrypted and holds for the next io_recv (the socket will
 * not say so): read them before waiting for the socket. */
size_t io_pending(SSL *tls);
/* The next byte on fd, left there; -1 if none is there yet, -2 at the end
 * (or an error). */
int io_peek_byte(int fd);
/* An idle connection has nothing to say: false if it is closed, failed, or
 * has bytes waiting (a server's unasked FATAL). Reads nothing. */
bool io_quiet(int fd);
/* The address and port of fd's peer (peer) or own end (!peer), as SHOW
 * shows them ("unix" and 0 for a Unix socket). */
void sock_addr(int fd, bool peer, char *addr, size_t len, int *port);
/* The same for an address already known (accept's): "unix" and 0 for
 * anything but IPv4 and IPv6. */
void sockaddr_text(const struct sockaddr *sa, char *addr, size_t len, int *port);
/* A new socket id (SHOW CLIENTS/SERVERS/SOCKETS' id, KILL_CLIENT's
 * argument): clients and servers count from one counter, from 1. */
uint64_t io_new_id(void);

#endif
