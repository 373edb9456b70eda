/* authguard.h — back-off for failed logins, by user and by peer address,
 * shared by both doors.
 *
 * Each failed password attempt is counted against the user name and the
 * client's address. Past a few failures in a row, further attempts are
 * refused at once, without checking the password (so guessing costs the
 * server nothing), for a window that doubles with each further failure:
 *   by address: after 5 failures, 1 s doubling to 60 s;
 *   by user:    after 20 failures, 1 s doubling to 5 s (short: a guesser
 *               must not lock a real user out for long).
 * A successful login clears both. An entry with no failure for 10 minutes
 * is forgotten. Thread-safe; one per server.
 */
#ifndef WEIR_SERVER_AUTHGUARD_H
#define WEIR_SERVER_AUTHGUARD_H

#include <stdbool.h>
#include <stdint.h>

typedef struct authguard authguard;

authguard *authguard_new(void);
void authguard_free(authguard *g); /* NULL is a no-op */

/* May user (from peer) try a password now? true, or false with *retry_ms
 * set: how long until it may. */
bool authguard_allow(authguard *g, const char *user, const char *peer, int64_t now_ms,
                     int64_t *retry_ms);
void authguard_failed(authguard *g, const char *user, const char *peer, int64_t now_ms);
void authguard_passed(authguard *g, const char *user, const char *peer);

/* Totals for /metrics: failed attempts, and attempts refused by the back-off. */
void authguard_counts(authguard *g, uint64_t *failed, uint64_t *refused);

#endif
