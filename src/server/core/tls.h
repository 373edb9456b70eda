/* tls.h — TLS (OpenSSL) towards clients (client_tls_*) and towards servers
 * (server_tls_*): the contexts, remade on RELOAD (a bad file keeps the ones
 * in use), and a connection's handshake and description. Reads and writes
 * go through io.c, which is given the connection's SSL. */
#ifndef WEIR_SERVER_TLS_H
#define WEIR_SERVER_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "core/config.h"

typedef struct ssl_st SSL;
typedef struct server server;
/* The context for connections to servers, one per process, remade on
 * RELOAD: every pool's target points at it. */
typedef struct tls_ref tls_ref;
/* A TLS handshake with a server ended (ok or not); the counts so far. */
void tls_ref_count(tls_ref *r, bool ok);
void tls_ref_counts(tls_ref *r, long long *ok, long long *failed);

/* Make (or remake, after a reload) the context for client connections from
 * s->cfg; with client_tls_sslmode = disable there is none. 0, or -1 with why
 * (the context in use, if any, is kept). */
int tls_client_setup(server *s, char *why, size_t len);
/* The same for connections to servers (server_tls_*): s->tls_out. */
int tls_server_setup(server *s, char *why, size_t len);
/* The same for the HTTP door (http_tls_*; the client_tls_* files when its
 * own are not set), and a TLS connection on one of its sockets. */
int tls_http_setup(server *s, char *why, size_t len);
SSL *tls_http_new(server *s, int fd);
void tls_free(server *s);
/* A TLS connection on fd towards a server at host: SNI, and the checks of
 * sslmode (verify-ca: the chain; verify-full: the chain and the name), or
 * NULL with why. */
SSL *tls_connect_new(tls_ref *r, int fd, const char *host, int sslmode, char *why, size_t len);
/* A TLS connection on fd towards a client, or NULL (no context, or out of
 * memory). The context is taken by reference: a reload does not end it. */
SSL *tls_accept_new(server *s, int fd);
/* One step of the handshake: 1 done, 0 wants to read, 2 wants to write,
 * -1 failed (why says what OpenSSL said). */
int tls_handshake(SSL *ssl, char *why, size_t len);
/* "TLSv1.3/TLS_AES_256_GCM_SHA384" as SHOW CLIENTS' tls column shows it. */
void tls_describe(SSL *ssl, char *out, size_t len);
void tls_close(SSL *ssl); /* a quiet close_notify, then freed */
/* The handshake agreed on ALPN "postgresql". */
bool tls_alpn_postgresql(SSL *ssl);
/* SCRAM's tls-server-end-point binding data (RFC 5929): the hash of weir's
 * own certificate on ssl, with its signature's hash (SHA-256 for MD5 and
 * SHA-1). Its length, or 0. */
size_t tls_cbind(SSL *ssl, unsigned char *out, size_t cap);
/* The CommonName of the certificate the peer presented and the handshake
 * verified, into out: 0; -1 if there is none (no certificate, or no CN). */
int tls_peer_cn(SSL *ssl, char *out, size_t len);

#endif
