/* handover.h — -R (--reboot): an online restart without passing sockets.
 *
 * PgBouncer's -R takes the running process's sockets over. weir hands over
 * instead: the new process logs in to the running one's console over the
 * Unix socket (user pgbouncer, as the same OS user: no password), asks for
 * SHUTDOWN WAIT_FOR_CLIENTS, and starts once the old one has closed its
 * TCP listeners. The old process serves the clients it has until they leave,
 * then exits; new clients go to the new one. Nothing a client has open is
 * cut, but a connection open on the old process stays there. */
#ifndef WEIR_SERVER_HANDOVER_H
#define WEIR_SERVER_HANDOVER_H

#include <stddef.h>

/* Ask the weir listening on the Unix socket path (unix_socket_dir's
 * .s.PGSQL.<port>) to shut down once its clients have left. 0, or -1 with
 * err saying why (nobody there, a password asked, the command refused). */
int handover_request(const char *path, char *err, size_t errlen);

#endif
