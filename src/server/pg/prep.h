/* prep.h — named prepared statements across server connections (max_prepared_statements).
 *
 * In transaction and statement pooling a client's next transaction may land
 * on another server connection, where the statements it prepared do not
 * exist. weir keeps them itself:
 *
 *  - ps_registry, one per server: every distinct statement (query text and
 *    parameter types) gets an id, and on PostgreSQL the name "weir_<id>".
 *    Clients preparing the same query share it.
 *  - ps_client, one per client: its own statement names -> registry
 *    entries, and the queue of replies it is owed (see below).
 *  - ps_cache, one per server connection: which weir_<id> it has prepared,
 *    at most max_prepared_statements, the least recently used closed first.
 *
 * Client messages naming a statement are rewritten: Parse of a statement the
 * server already has is not sent (weir answers ParseComplete itself), Bind
 * and Describe of one it lacks get a Parse first (whose ParseComplete weir
 * hides), Close of a statement is answered by weir (the server keeps it for
 * others), and DEALLOCATE name / ALL sent as a simple query is answered by
 * weir too. The queue keeps weir's own replies in the place PostgreSQL would
 * have put them, and after an ErrorResponse drops what PostgreSQL skips up
 * to the next Sync. A statement whose plan went stale (0A000 cached plan must
 * not change result type) leaves the registry, so the client's retry, and
 * every later Parse of its text, prepares it afresh under a new name.
 */
#ifndef WEIR_SERVER_PREP_H
#define WEIR_SERVER_PREP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pg/proto.h"

typedef struct ps_registry ps_registry;
typedef struct ps_cache ps_cache;
typedef struct ps_client ps_client;

ps_registry *ps_registry_new(void);
void ps_registry_free(ps_registry *r); /* after every client is gone */
size_t ps_registry_count(ps_registry *r);

/* max_bytes: what the texts of the statements one client keeps may add up
 * to (max_client_prepared_bytes; 0: no bound). A Parse past it is not
 * taken: ps_client_msg says PS_TOO_MUCH. */
ps_client *ps_client_new(ps_registry *r, uint64_t max_bytes);
uint64_t ps_client_bytes(const ps_client *pc);
uint64_t ps_client_max_bytes(const ps_client *pc); /* as given at login */
#define PS_TOO_MUCH (-2)
void ps_client_free(ps_client *pc);
/* The client let go of its server connection: forget the replies owed. */
void ps_client_unlink(ps_client *pc);
/* Replies still owed by the server (or by weir): the link must stay. */
bool ps_busy(const ps_client *pc);
/* How many replies are owed (each a queue entry of some 32 bytes): the
 * caller stops taking the client's messages past a bound of its own. */
uint32_t ps_owed(const ps_client *pc);
size_t ps_client_count(const ps_client *pc); /* its statement names */

void ps_cache_free(ps_cache *sc);
void ps_cache_clear(ps_cache *sc);
size_t ps_cache_count(const ps_cache *sc);

/* The whole-message types the translation needs to see whole. */
#define PS_WHOLE_IN  "XPBDCQES"
#define PS_WHOLE_OUT "ZSCE"

/* One whole client message of type t (a type in PS_WHOLE_IN) for a server
 * connection whose cache is *sc (made when NULL): what goes to the server is
 * appended to to_server. max: max_prepared_statements. 0, -1: out of
 * memory, or PS_TOO_MUCH: a Parse past the client's max_bytes. */
int ps_client_msg(ps_client *pc, ps_cache **sc, uint32_t max, char t, const uint8_t *body,
                  uint32_t len, pq_buf *to_server);
/* The head of a Bind too long to hold whole: head (nh bytes) is its portal
 * and statement names, NUL-terminated; len is its whole body's length. Done
 * as ps_client_msg would, except that the len - nh bytes after the names
 * are not here: 0, the rewritten Bind's header and names are in to_server,
 * its length counting those bytes, which the caller passes after it as
 * they are; 1, weir answers this Bind itself and the caller drops them; -1,
 * out of memory. */
int ps_client_bind_head(ps_client *pc, ps_cache **sc, uint32_t max, const uint8_t *head,
                        uint32_t nh, uint32_t len, pq_buf *to_server);
/* A run of whole client messages at p (n bytes, each at most max_len)
 * that ends with a Sync and names no statement: unnamed Parse (not a
 * DEALLOCATE of one of the client's names), Bind of the unnamed statement,
 * Describe, Execute, Flush; or a simple Query first, on its own, that is
 * not such a DEALLOCATE either. It needs no translation, and its replies
 * none either: they pass as they are up to the ReadyForQuery of its Sync
 * or Query, which is all the run needs noted (one op where ps_client_msg
 * would note one per message; the same replies come out). 1: *used bytes
 * are such a run, to be passed as they are; 0: none here (the messages go
 * one by one through ps_client_msg); -1: out of memory. */
int ps_client_plain(ps_client *pc, const uint8_t *p, uint32_t n, uint32_t max_len, uint32_t *used);
/* Named-statement traffic since the last call (then zeroed): client Parse
 * messages, Parse messages sent to servers, Bind messages. */
void ps_take_counts(ps_client *pc, uint64_t *parse_c, uint64_t *parse_s, uint64_t *bind);
/* The name of a statement the client prepared again since the last call
 * (PostgreSQL refuses that): true, with it in name. */
bool ps_take_duplicate(ps_client *pc, char *name, size_t n);
/* A client message not in PS_WHOLE_IN (its header): noted, passed as is. */
int ps_client_other(ps_client *pc, char t);

/* A server message of type t (body, len bytes: whole for PS_WHOLE_OUT
 * types, else NULL). false: it answers a message weir added; hide it. */
bool ps_server_msg(ps_client *pc, ps_cache *sc, char t, const uint8_t *body, uint32_t len);
/* The same, told as PS_KEEP (pass it on, else hide it) | PS_DUE (weir's own
 * replies are due now, ps_due_now): the framing's loop asks for them only
 * when this says so, not after every server message. */
enum { PS_KEEP = 1, PS_DUE = 2 };
int ps_server_reply(ps_client *pc, ps_cache *sc, char t, const uint8_t *body, uint32_t len);
/* Weir's own replies due now, appended to out; *nrfq: how many are
 * ReadyForQuery (txn: the transaction status they carry). 0 or -1. */
int ps_due(ps_client *pc, char txn, pq_buf *out, int *nrfq);
bool ps_due_now(const ps_client *pc); /* whether ps_due has something to add now */

#endif
