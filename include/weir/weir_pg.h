/* weir_pg.h — the PostgreSQL driver (libpq).
 *
 * Connections are opened without blocking past the pool's connect_timeout
 * (PQconnectStartParams + PQconnectPoll), from a URL ("postgres://...",
 * "postgresql://...") or a libpq key=value string. Multi-host lists and
 * target_session_attrs are passed to libpq as they are. TCP keepalives and
 * tcp_user_timeout are on by default so a dead peer is noticed; a value the
 * caller gives wins.
 *
 * Validation is a real round trip (an empty query). A connection is dirty
 * when it is not idle (PQtransactionStatus) or when a reset query is set; a
 * reset runs ROLLBACK if a transaction is open or failed, then the reset
 * query; a connection that is ACTIVE, UNKNOWN or bad is closed instead.
 * libpq's messages are kept with passwords masked. Server notices are
 * discarded by default (a pool's connections have no terminal to print to);
 * install your own with PQsetNoticeProcessor() after checkout if you want
 * them. Connections are left in non-blocking mode (PQsetnonblocking), which
 * PQexec() and the other blocking calls handle.
 */
#ifndef WEIR_PG_H
#define WEIR_PG_H

#include "weir/weir.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pg_conn PGconn; /* libpq's handle, as libpq-fe.h declares it */

/** The driver; its context comes from weir_pg_target_new(). */
WEIR_API const weir_driver *weir_pg_driver(void);

/** Parse conninfo (URL or key=value) into a driver context for
 *  weir_pool_create(), which takes ownership. reset_query (may be NULL) runs
 *  on every checkin, e.g. "DISCARD ALL". Returns 0 and *ctx, or WEIR_EINVAL
 *  with libpq's reason (masked) in err. */
WEIR_API int weir_pg_target_new(const char *conninfo, const char *reset_query, void **ctx,
                                char *err, size_t errlen) WEIR_MUSTCHECK;

/** Create a pool for conninfo in one call (name: the masked target unless
 *  opts names it). Returns what weir_pool_create() returns, or WEIR_EINVAL
 *  for a conninfo libpq cannot parse (reason in err, may be NULL). */
WEIR_API int weir_pg_pool_create(weir_pool **out, const char *conninfo, const char *reset_query,
                                 const weir_options *opts, const weir_hooks *hooks, char *err,
                                 size_t errlen) WEIR_MUSTCHECK;

/** The PGconn of a checked-out connection (NULL if c is NULL). Valid until
 *  checkin; do not PQfinish it. */
WEIR_API PGconn *weir_pg_conn(const weir_conn *c);

#ifdef __cplusplus
}
#endif
#endif
