/* auth.h — password checks: md5 and SCRAM-SHA-256, both as server (clients) and client
 * (PostgreSQL). */
#ifndef WEIR_SERVER_AUTH_H
#define WEIR_SERVER_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "md5" + hex(md5(hex(md5(password + user)) + salt)), what a client sends.
 * secret is a plain password or an "md5<32 hex>" hash of one. out: 36 bytes. */
void auth_md5_response(const char *user, const char *secret, const uint8_t salt[4], char out[36]);
/* Is secret an "md5<32 hex>" hash (as opposed to a plain password or a SCRAM secret)? */
bool auth_is_md5_hash(const char *secret);
/* Is secret a SCRAM secret ("SCRAM-SHA-256$...")? */
bool auth_is_scram_secret(const char *secret);
/* Constant-time comparison of two NUL-terminated strings. */
bool auth_equal(const char *a, const char *b);
/* password as SCRAM uses it (SASLprep, RFC 4013, as PostgreSQL: as it is
 * when pure ASCII, not UTF-8, or refused by SASLprep); malloc'd, or NULL. */
char *auth_saslprep(const char *password);
/* Does password match secret (plain, "md5..." hash or SCRAM secret) for user?
 * An empty or NULL secret (no such user) is false, after as much work as a
 * SCRAM secret costs, so the answer's time does not tell. */
bool auth_password_ok(const char *user, const char *password, const char *secret);
/* Standard base64 of n characters into out; the length, or -1. */
int auth_b64_decode(const char *in, size_t n, uint8_t *out, size_t outlen);
void auth_sha256(const void *d, size_t n, uint8_t out[32]);
/* Fill buf with n random bytes (the kernel's, else OpenSSL's). 0 or -1. */
int auth_random(void *buf, size_t n);

typedef struct scram_secret {
    int iter;
    uint8_t salt[64];
    int saltlen;
    uint8_t stored[32], server[32];
} scram_secret;

/* The most PBKDF2 iterations weir accepts from a secret or a server; each
 * costs about 1 µs, so more is a stall, not security. The fuzzer builds with a
 * lower value so that one input cannot spend seconds here. */
#ifndef SCRAM_MAX_ITER
#define SCRAM_MAX_ITER 10000000
#endif

/* "SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>". 0 or -1. */
int scram_secret_parse(const char *text, scram_secret *s);
/* A secret for user's plain password: iter iterations (scram_iterations), and
 * a salt derived from user and a random key made once per process, so a user
 * is offered the same salt on every login. 0 or -1. */
int scram_secret_for_user(const char *user, const char *password, int iter, scram_secret *s);
/* How many secrets scram_secret_for_user has derived (PBKDF2) rather than
 * found kept: for the tests. */
uint64_t scram_secrets_derived(void);
/* A secret for a user who does not exist: the salt and iteration count
 * scram_secret_for_user would give, keys no password matches (PostgreSQL's
 * mock authentication). 0, or -1 if no random key could be made. */
int scram_secret_mock(const char *user, int iter, scram_secret *s);

/* Server side: a client proving it knows the secret. The strings are owned
 * (each as long as the client's nonce makes it); scram_server_clear frees
 * them. */
typedef struct scram_server {
    scram_secret sec;
    /* Channel binding (tls-server-end-point), set before the first message:
     * cbind is the hash of weir's TLS certificate (cbind_len 0: no TLS), and
     * plus says the client chose SCRAM-SHA-256-PLUS. */
    uint8_t cbind[64];
    size_t cbind_len;
    bool plus;
    char gs2[64]; /* the client's gs2 header, as sent ("n,,", "p=tls-server-end-point,,") */
    char *nonce;  /* the client's nonce and weir's */
    char *client_first_bare; /* as the client sent it */
    char *server_first;      /* as weir sent it */
    /* After a good proof: the client's ClientKey, with which weir can log in
     * to PostgreSQL as this user without knowing the password, as long as
     * the server holds the same secret (SCRAM pass-through). */
    bool have_client_key;
    uint8_t client_key[32];
} scram_server;

/* client-first-message in (at most CFG_SECRET_MAX bytes, as PostgreSQL); 0
 * with the server-first-message to send in st->server_first, or -1 with why. */
int scram_server_first(scram_server *st, const char *msg, size_t len, const char **why);
/* client-final-message in, server-final-message out. 0 (proof good), or -1 with why. */
int scram_server_final(scram_server *st, const char *msg, size_t len, char *out, size_t outlen,
                       const char **why);
/* Free what the exchange allocated (st itself is the caller's). */
void scram_server_clear(scram_server *st);

/* Client side: weir logging in to PostgreSQL. */
typedef struct scram_client {
    char nonce[64];
    char client_first_bare[128];
    uint8_t server_signature[32];
} scram_client;

/* client-first-message ("n,,n=,r=..."). Returns its length, or -1. */
int scram_client_first(scram_client *st, char *out, size_t outlen);
/* server-first in, client-final out. Returns its length, or -1 with why.
 * The keys derived from password and the server's salt and iteration count
 * are kept (256 slots) for the next login that gets the same. */
int scram_client_final(scram_client *st, const char *password, const char *server_first, size_t len,
                       char *out, size_t outlen, const char **why);
/* The same, from a ClientKey and ServerKey instead of a password (pass-through). */
int scram_client_final_keys(scram_client *st, const uint8_t client_key[32],
                            const uint8_t server_key[32], const char *server_first, size_t len,
                            char *out, size_t outlen, const char **why);
/* How many ClientKey/ServerKey pairs scram_client_final has derived
 * (PBKDF2) rather than found kept from an earlier login with the same
 * password, salt and iteration count: for the tests. */
uint64_t scram_client_keys_derived(void);
/* server-final in: 0 if the server proved it knows the secret too. */
int scram_client_verify(const scram_client *st, const char *server_final, size_t len);

#endif
