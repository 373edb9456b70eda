/* peering.h — cancel requests between weir processes behind one load
 * balancer (peer_id and [peers], as PgBouncer 1.21+).
 *
 * A CancelRequest travels on a connection of its own, so a TCP load
 * balancer (or so_reuseport) may hand it to a process other than the one
 * serving the query. With peer_id set, each cancel key carries its
 * process's id, and a process that gets a key of another id forwards the
 * request to that peer, at most three times (a TTL in the key).
 *
 * The key's layout is PgBouncer's, so weir and PgBouncer processes can be
 * peered with each other (during a migration, say): of the 8 bytes of
 * BackendKeyData (process id, then secret, both big-endian), bytes 1 and 2
 * hold the peer id (low byte first) and the two low bits of byte 7 the TTL.
 * 45 bits of the key stay random.
 */
#ifndef WEIR_SERVER_PEERING_H
#define WEIR_SERVER_PEERING_H

#include <stdbool.h>
#include <stdint.h>

#include "core/server.h"

/* A new client's key with peer id stamped in (peer_id > 0). */
void peer_stamp(int peer_id, uint32_t *pid, uint32_t *key);
/* The peer id a key carries. */
int peer_id_of(uint32_t pid);

/* A CancelRequest (pid, key) that reached this process. With peering on
 * and the key naming another peer: forwarded to it (or dropped, logged,
 * when its TTL is spent or the peer is unknown) and true. Else false, with
 * *key as this process stored it. Called on a worker (reads s->cfg). */
bool peer_route_cancel(server *s, uint32_t pid, uint32_t *key);

/* Forwards to peer id under way (sent, awaiting the peer's close) and
 * waiting for room under its pool_size (SHOW PEER_POOLS). */
void peer_load(server *s, int id, int *active, int *waiting);

/* At exit, once no forward is in flight. */
void peer_free(server *s);

#endif
