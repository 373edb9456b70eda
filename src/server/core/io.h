/* io.h — every read and write on a client or server socket goes through
 * here (io.c), so that TLS later changes this module, the listener and the
 * server login, and nothing else. Non-blocking sockets; the results are
 * recv(2)'s and send(2)'s (errno set). */
#ifndef WEIR_SERVER_IO_H
#define WEIR_SERVER_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct iovec;

ssize_t io_recv(int fd, void *buf, size_t n);
ssize_t io_send(int fd, const void *buf, size_t n); /* never blocks, no SIGPIPE */
ssize_t io_writev(int fd, const struct iovec *iov, int n); /* the same, gathered */
/* An idle connection has nothing to say: false if it is closed, failed, or
 * has bytes waiting (a server's unasked FATAL). Reads nothing. */
bool io_quiet(int fd);
/* The address and port of fd's peer (peer) or own end (!peer), as SHOW
 * shows them ("unix" and 0 for a Unix socket). */
void sock_addr(int fd, bool peer, char *addr, size_t len, int *port);

#endif
