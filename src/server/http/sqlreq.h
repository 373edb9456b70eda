/* sqlreq.h — an SQL-over-HTTP request as weir reads it, with no I/O: the
 * JSON body decoded and checked (options, one statement or a batch, its
 * isolation), the statements as PostgreSQL messages, and whether a request
 * could leave state on its connection. Everything here is input from a
 * client; fuzz_json runs it as it is.
 */
#ifndef WEIR_SERVER_SQLREQ_H
#define WEIR_SERVER_SQLREQ_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/sbuf.h"

typedef struct sql_opts {
    bool array_mode;         /* rows as arrays instead of objects */
    bool int8_num;           /* int8 as a JSON number (default: a string) */
    bool numeric_num;        /* numeric as a JSON number (default: a string) */
    bool raw_text;           /* every value as PostgreSQL's text (null stays null) */
    int64_t max_rows;        /* more rows than this is an error; 0 = no limit */
    size_t max_bytes;        /* a response longer than this is an error; 0 = no limit */
    int64_t timeout_ms;      /* statement timeout; 0 = none */
    int64_t cancel_grace_ms; /* after a cancel, how long to wait for the server's answer */
} sql_opts;

/* A decoded body: {"query": "...", "params": [...]} or {"queries": [...]},
 * with the options of both shapes (and their Neon-* header forms). */
typedef struct sql_req {
    json_t *root;          /* owned: the whole body */
    const json_t *queries; /* a batch (each element checked), or NULL */
    const char *sql;       /* without a batch: the statement */
    const json_t *params;  /* and its parameters, or NULL */
    const char *isolation; /* a batch's isolation level as SQL words, or NULL */
    bool read_only, deferrable;
} sql_req;

/* The request headers a body's options may come from. */
typedef struct sql_headers {
    const char *const *name, *const *value;
    int n;
} sql_headers;

/* Decode body (len bytes) into r, setting o's flags; a statementTimeout in
 * the body only lowers o->timeout_ms. 0, or an HTTP status (400) with the
 * error object in err (then nothing is left to free). */
int sql_req_decode(sql_req *r, sql_opts *o, const char *body, size_t len, const sql_headers *h,
                   sbuf *err);
void sql_req_free(sql_req *r);
/* Statement i of a batch (already checked by sql_req_decode). */
void sql_req_statement(const sql_req *r, size_t i, const char **sql, const json_t **params);
/* Could the request leave state on its connection beyond its transaction
 * (SET, set_config, PREPARE, LISTEN, DECLARE ... WITH HOLD, LOAD, temporary
 * tables, session advisory locks; SQLite's PRAGMA, ATTACH, DETACH)? A scan for those words
 * anywhere, literals and comments included (dynamic SQL runs what is in them): a false alarm costs
 * a DISCARD ALL, a miss would leak state to another request. */
bool sql_req_may_change_session(const sql_req *r);
bool sql_may_change_session(const char *sql);

/* sql as a simple Query message, appended to w. */
void sql_pg_query(sbuf *w, const char *sql);
/* Parse, Bind (params as text), Describe, Execute (max_rows + 1 when
 * limited, so that one row too many shows) and Sync, appended to w. 0, or an
 * HTTP status with the error object in err. */
int sql_pg_extended(sbuf *w, const char *sql, const json_t *params, int64_t max_rows, sbuf *err);

/* An error object of weir's own: {"message": msg, "code": code}. Returns status. */
int sql_error(sbuf *err, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
