/* authq.h — auth_query (PgBouncer's): a user's secret, asked of the
 * database as auth_user. One request writer and one answer reader for both
 * doors: the PostgreSQL door runs them on its worker's loop (client.c), the
 * HTTP door on its executor thread (pgrun.c). The answer is read the way
 * PgBouncer reads it: two columns (user name, secret), the first row. */
#ifndef WEIR_SERVER_AUTHQ_H
#define WEIR_SERVER_AUTHQ_H

#include <stdbool.h>

#include "pg/proto.h"

typedef struct authq {
    bool got_row;
    bool named;    /* the row's first column (the user name) is not NULL: the user exists */
    char *secret;  /* owned: the first row's second column; NULL if NULL, empty or no row */
    char err[256]; /* the server's error, or what was wrong with its answer */
} authq;

/* Parse, Bind ($1 = user, as text), Execute and Sync of query, appended to
 * b. 0, or -1 (out of memory). */
int authq_request(pq_buf *b, const char *query, const char *user);
/* One message of the answer: 1 at ReadyForQuery (done; err set if the
 * lookup failed), 0 for more, -1 if the message is malformed (err set). */
int authq_answer(authq *q, const pq_msg *m);
/* The secret, wiped; err cleared. */
void authq_clear(authq *q);

#endif
