/* admin.h — the admin console (admin.c): the virtual database "pgbouncer"
 * (also "weir") with PgBouncer's commands. */
#ifndef WEIR_SERVER_ADMIN_H
#define WEIR_SERVER_ADMIN_H

#include <stdbool.h>

#include "pg/proto.h"

typedef struct server server;

/* Run one simple query; the answer goes into o (without ReadyForQuery).
 * full: an admin_users member; else stats_users, who may only SHOW.
 * Returns 0, or ADMIN_WAIT_*: the answer waits until admin_wait_done (db
 * set to the command's database, CFG_NAME bytes); ADMIN_WAIT_BUSY: another
 * change or listing is running (core/worker.h, change_trylock), nothing
 * was done or written, and the caller runs the command again later, or
 * answers admin_busy_error when it has waited too long. */
enum { ADMIN_WAIT_PAUSE = 1, ADMIN_WAIT_CLOSE = 2, ADMIN_WAIT_SUSPEND = 3, ADMIN_WAIT_BUSY = 4 };
int admin_query(server *s, bool full, const char *sql, pq_buf *o, char *db);
/* The waiting command's condition: true when met (CommandComplete then in o). */
bool admin_wait_done(server *s, int kind, const char *db, pq_buf *o);
void admin_busy_error(pq_buf *o);

#endif
