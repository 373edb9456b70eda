/* weir_mysql.h — the MySQL / MariaDB driver (libmariadb, MariaDB Connector/C).
 *
 * One driver for every server that speaks MySQL's protocol (MySQL 5.7 and 8,
 * MariaDB 10.2 and later, and the engines that copy it). Targets are URLs:
 *
 *   mysql://user:password@host:port/database?option=value&...
 *   mariadb://...                       (the same driver, the same keys)
 *
 * user, password and database are percent-decoded. The port defaults to
 * 3306. As with every MySQL client, the host "localhost" means the server's
 * Unix socket (the library's default path, or unix_socket=); any other host,
 * 127.0.0.1 included, is TCP. Options (names as MySQL's clients spell them):
 *
 *   unix_socket=/path      connect over this Unix socket (host ignored)
 *   ssl_mode=              disabled | preferred (default: TLS when the server
 *                          offers it, unverified) | required (TLS or fail,
 *                          unverified) | verify_ca | verify_identity (TLS,
 *                          certificate checked against ssl_ca or the system's
 *                          CAs, and the host name too: libmariadb always
 *                          checks the name when it verifies, so verify_ca is
 *                          as strict as verify_identity)
 *   ssl_ca, ssl_capath, ssl_cert, ssl_key, ssl_cipher, tls_version
 *                          files and choices for TLS (tls_version: e.g.
 *                          "TLSv1.2,TLSv1.3")
 *   charset=               the connection's character set (default utf8mb4)
 *   connect_attrs=k:v,...  connection attributes the server shows in
 *                          performance_schema.session_connect_attrs
 *                          (program_name=weir unless given)
 *   read_timeout, write_timeout
 *                          seconds a blocking read or write of the caller's
 *                          may wait (default: none, as libmariadb)
 *   reset=                 always (default): every checkin runs
 *                          COM_RESET_CONNECTION (mysql_reset_connection):
 *                          a transaction left open is rolled back and the
 *                          session's variables, temporary tables, user
 *                          variables, locks and prepared statements are
 *                          dropped, so nothing leaks to the next user |
 *                          transaction: only a connection with a transaction
 *                          open is cleaned (ROLLBACK); session state carries
 *                          over to the next user (as most pools do), for one
 *                          round trip less per use
 *
 * An unknown option is refused (WEIR_EINVAL, its name in err). Connects are
 * non-blocking (libmariadb's MYSQL_OPT_NONBLOCK API) and given up at the
 * pool's connect_timeout to the millisecond; validation (mysql_ping) and the
 * reset are bounded the same way. TCP keepalives (30 s idle, 10 s interval,
 * 3 probes) and a 30 s TCP_USER_TIMEOUT are set so that a dead server is
 * noticed. Auto-reconnect stays off: a lost connection is the pool's to
 * replace, never silently reopened with a fresh session.
 *
 * A connection in a state the pool cannot clean (a result not read to its
 * end, commands out of sync, the server gone) is closed at checkin, not
 * handed on. Errors keep the server's text as the mysql client prints it,
 * "ERROR 1045 (28000): Access denied for user ...", with passwords masked.
 */
#ifndef WEIR_MYSQL_H
#define WEIR_MYSQL_H

#include "weir/weir.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct st_mysql MYSQL; /* libmariadb's handle, as mysql.h declares it */

/** The driver; its context comes from weir_mysql_target_new(). */
WEIR_API const weir_driver *weir_mysql_driver(void);

/** Parse a mysql:// or mariadb:// URL into a driver context for
 *  weir_pool_create(), which takes ownership. Returns 0 and *ctx, or
 *  WEIR_EINVAL with the reason in err (the URL masked). */
WEIR_API int weir_mysql_target_new(const char *url, void **ctx, char *err,
                                   size_t errlen) WEIR_MUSTCHECK;

/** Create a pool for url in one call (name: the masked target unless opts
 *  names it). Returns what weir_pool_create() returns, or WEIR_EINVAL for a
 *  URL that cannot be parsed (reason in err, may be NULL). */
WEIR_API int weir_mysql_pool_create(weir_pool **out, const char *url, const weir_options *opts,
                                    const weir_hooks *hooks, char *err,
                                    size_t errlen) WEIR_MUSTCHECK;

/** The MYSQL handle of a checked-out connection (NULL if c is NULL). Valid
 *  until checkin; do not mysql_close() it. Blocking calls (mysql_query(),
 *  mysql_stmt_*()) work on it as on any handle. */
WEIR_API MYSQL *weir_mysql_conn(const weir_conn *c);

#ifdef __cplusplus
}
#endif
#endif
