/* sqlrun.h — running one statement for the HTTP door and writing its result
 * as JSON: on a PostgreSQL server connection of weir's pools (wire protocol,
 * extended query, text results) or on an SQLite connection of libweir's
 * SQLite driver.
 *
 * A result is {"command","rowCount","rows","fields","rowAsArray"}; an error is
 * {"message","code",...} with PostgreSQL's fields, and an HTTP status.
 */
#ifndef WEIR_SERVER_SQLRUN_H
#define WEIR_SERVER_SQLRUN_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "pg/backend.h"
#include "http/httpd.h"
#include "http/sqlreq.h"
#include "weir/weir.h"


/* PostgreSQL. Each returns 0 (result appended to out), or an HTTP status with
 * the error object in err. A connection that can no longer be trusted has
 * be->unclean set (its pool closes it on checkin). */
int pgx_run(backend *be, const char *sql, const json_t *params, const sql_opts *o, sbuf *out,
            sbuf *err);
/* A statement of weir's own (BEGIN ..., COMMIT, ROLLBACK, SET ...), no result. */
int pgx_exec(backend *be, const char *sql, const sql_opts *o, sbuf *err);
/* auth_query: the secret (second column) for user in *secret (malloc'd; NULL
 * if there is no row or it is NULL or empty). 0, or -1 with a reason in why. */
int pgx_lookup(backend *be, const char *query, const char *user, int64_t timeout_ms, char **secret,
               char *why, size_t whylen);

/* SQLite, on a checked-out connection of a weir_sqlite pool. If writer_needed
 * is not NULL and the statement would write, nothing runs: *writer_needed is
 * set and 0 returned (the caller moves to the writer). */
int litx_run(weir_conn *c, const char *sql, const json_t *params, const sql_opts *o, sbuf *out,
             sbuf *err, bool *writer_needed);
int litx_exec(weir_conn *c, const char *sql, sbuf *err);


#endif
