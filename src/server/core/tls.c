/* tls.c — TLS towards clients (tls.h), on OpenSSL as PostgreSQL and
 * PgBouncer use it. */
#include "core/tls.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <stdatomic.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/server.h"

static void ossl_error(char *why, size_t len, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e) ERR_error_string_n(e, buf, sizeof buf);
    snprintf(why, len, "%s%s%s", what, buf[0] ? ": " : "", buf);
    ERR_clear_error();
}

/* "secure" (TLS 1.2 and 1.3), "all", "legacy", or a list like "tlsv1.2,tlsv1.3". */
static int protocols(SSL_CTX *ctx, const char *spec, char *why, size_t len)
{
    int lo = 0, hi = 0;
    char buf[CFG_STR];
    snprintf(buf, sizeof buf, "%s", spec);
    for (char *save = NULL, *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        int a, b;
        if (!strcasecmp(t, "secure")) {
            a = TLS1_2_VERSION, b = TLS1_3_VERSION;
        } else if (!strcasecmp(t, "all") || !strcasecmp(t, "legacy")) {
            a = TLS1_VERSION, b = TLS1_3_VERSION;
        } else if (!strcasecmp(t, "tlsv1.0") || !strcasecmp(t, "tlsv1")) {
            a = b = TLS1_VERSION;
        } else if (!strcasecmp(t, "tlsv1.1")) {
            a = b = TLS1_1_VERSION;
        } else if (!strcasecmp(t, "tlsv1.2")) {
            a = b = TLS1_2_VERSION;
        } else if (!strcasecmp(t, "tlsv1.3")) {
            a = b = TLS1_3_VERSION;
        } else {
            snprintf(why, len, "client_tls_protocols: unknown protocol \"%s\"", t);
            return -1;
        }
        if (!lo || a < lo) lo = a;
        if (b > hi) hi = b;
    }
    if (!lo) lo = TLS1_2_VERSION, hi = TLS1_3_VERSION;
    SSL_CTX_set_min_proto_version(ctx, lo);
    SSL_CTX_set_max_proto_version(ctx, hi);
    return 0;
}

/* The keys of one side: client_tls_* (weir as the TLS server) or server_tls_*. */
typedef struct side {
    bool to_servers;
    const char *sslmode, *key_file, *cert_file, *ca_file, *protocols, *ciphers, *tls13, *ecdh;
    const char *dh, *prefix;
} side;

static SSL_CTX *make_ctx(const side *k, char *why, size_t len)
{
    SSL_CTX *ctx = SSL_CTX_new(k->to_servers ? TLS_client_method() : TLS_server_method());
    if (!ctx) {
        ossl_error(why, len, "cannot make a TLS context");
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 (k->to_servers ? 0 : SSL_OP_CIPHER_SERVER_PREFERENCE));
    /* Buffers kept between records (SSL_MODE_RELEASE_BUFFERS would save
     * ~34 KB per idle connection at a malloc and free per record). */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* One recv() per burst of records, not two per record (header, then
     * body); io_pending() counts what is read ahead. */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    char what[64];
#define WHAT(key) (snprintf(what, sizeof what, "%s_%s", k->prefix, key), what)
    if (protocols(ctx, k->protocols, why, len)) goto fail;
    const char *ciphers = strcasecmp(k->ciphers, "default") && strcasecmp(k->ciphers, "secure")
                              ? k->ciphers
                              : "HIGH:!aNULL:!MD5:!3DES";
    if (!SSL_CTX_set_cipher_list(ctx, ciphers)) {
        ossl_error(why, len, WHAT("ciphers"));
        goto fail;
    }
    if (k->tls13[0] && !SSL_CTX_set_ciphersuites(ctx, k->tls13)) {
        snprintf(what, sizeof what, "failed to set the TLSv1.3 cipher suites (%s13_ciphers)",
                 k->prefix);
        ossl_error(why, len, what);
        goto fail;
    }
    if (k->ecdh && strcasecmp(k->ecdh, "auto") && !SSL_CTX_set1_groups_list(ctx, k->ecdh)) {
        ossl_error(why, len, WHAT("ecdhcurve"));
        goto fail;
    }
    if (k->dh && strcasecmp(k->dh, "auto") && strcasecmp(k->dh, "none")) {
        snprintf(why, len, "%s_dheparams: only auto and none are supported", k->prefix);
        goto fail;
    }
    if (k->dh && !strcasecmp(k->dh, "auto")) SSL_CTX_set_dh_auto(ctx, 1);
    /* Towards servers the certificate is weir's own client certificate,
     * optional, and used only when both files are given. */
    bool pair = !k->to_servers || (k->cert_file[0] && k->key_file[0]);
    if (pair && k->cert_file[0] && SSL_CTX_use_certificate_chain_file(ctx, k->cert_file) != 1) {
        ossl_error(why, len, WHAT("cert_file"));
        goto fail;
    }
    if (pair && k->key_file[0] &&
        SSL_CTX_use_PrivateKey_file(ctx, k->key_file, SSL_FILETYPE_PEM) != 1) {
        snprintf(what, sizeof what, "%s_key_file (it must be the key of %s_cert_file)", k->prefix,
                 k->prefix);
        ossl_error(why, len, what);
        goto fail;
    }
    if (pair && k->key_file[0] && SSL_CTX_check_private_key(ctx) != 1) {
        ossl_error(why, len, WHAT("key_file does not match the cert_file"));
        goto fail;
    }
    if (k->ca_file[0] && SSL_CTX_load_verify_locations(ctx, k->ca_file, NULL) != 1) {
        ossl_error(why, len, WHAT("ca_file"));
        goto fail;
    }
    if (k->to_servers) {
        /* the system's CAs, for verify-ca and verify-full only: reading
         * the bundle is some 235 million instructions (60 ms of CPU here) at
         * every start and RELOAD, which prefer and require never use */
        if (!k->ca_file[0] && cfg_sslmode(k->sslmode) >= SSLMODE_VERIFY_CA)
            SSL_CTX_set_default_verify_paths(ctx);
    } else if (k->ca_file[0]) {
        /* Ask for a client certificate; verify-ca and verify-full require one. */
        int mode = SSL_VERIFY_PEER;
        if (cfg_sslmode(k->sslmode) >= SSLMODE_VERIFY_CA) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_CTX_set_verify(ctx, mode, NULL);
    }
#undef WHAT
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* ALPN: "postgresql" when the client offers it (PostgreSQL 17's direct TLS
 * requires it; libpq sends it with every TLS connection). */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    static const unsigned char pg[] = "\x0apostgresql";
    unsigned char *sel = NULL;
    if (SSL_select_next_proto(&sel, outlen, pg, sizeof pg - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

bool tls_alpn_postgresql(SSL *ssl)
{
    const unsigned char *p = NULL;
    unsigned int n = 0;
    SSL_get0_alpn_selected(ssl, &p, &n);
    return n == 10 && !memcmp(p, "postgresql", 10);
}

struct tls_ref {
    pthread_mutex_t mu;
    SSL_CTX *ctx;                           /* NULL: server_tls_sslmode = disable */
    _Atomic long long handshakes, failures; /* with servers (/metrics) */
};

void tls_ref_count(tls_ref *r, bool ok)
{
    if (r) atomic_fetch_add(ok ? &r->handshakes : &r->failures, 1);
}

void tls_ref_counts(tls_ref *r, long long *ok, long long *failed)
{
    *ok = r ? atomic_load(&r->handshakes) : 0;
    *failed = r ? atomic_load(&r->failures) : 0;
}

/* Make the context for side k when on (else none) and put it in *slot under
 * mu; the old one goes (connections made from it hold their own reference). */
static int install_ctx(const side *k, bool on, bool alpn, pthread_mutex_t *mu, SSL_CTX **slot,
                       char *why, size_t len)
{
    SSL_CTX *ctx = NULL;
    if (on) {
        if (!(ctx = make_ctx(k, why, len))) return -1;
        if (alpn) SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    }
    pthread_mutex_lock(mu);
    SSL_CTX *old = *slot;
    *slot = ctx;
    pthread_mutex_unlock(mu);
    SSL_CTX_free(old);
    return 0;
}

/* A TLS connection accepted on fd from the context in *slot, or NULL. */
static SSL *accept_from(pthread_mutex_t *mu, SSL_CTX *const *slot, int fd)
{
    pthread_mutex_lock(mu);
    SSL *ssl = *slot ? SSL_new(*slot) : NULL;
    pthread_mutex_unlock(mu);
    if (!ssl) return NULL;
    if (SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

/* The client_tls_* keys (the HTTP door's: its own key and certificate when set). */
static side towards_clients(const cfg *c, bool http)
{
    bool own = http && c->http_tls_key_file[0];
    return (side){false,
                  http ? "require" : c->client_tls_sslmode,
                  own ? c->http_tls_key_file : c->client_tls_key_file,
                  own ? c->http_tls_cert_file : c->client_tls_cert_file,
                  http ? "" : c->client_tls_ca_file,
                  c->client_tls_protocols,
                  c->client_tls_ciphers,
                  c->client_tls13_ciphers,
                  c->client_tls_ecdhcurve,
                  c->client_tls_dheparams,
                  own ? "http_tls" : "client_tls"};
}

int tls_client_setup(server *s, char *why, size_t len)
{
    side k = towards_clients(&s->cfg, false);
    return install_ctx(&k, cfg_sslmode(s->cfg.client_tls_sslmode) > SSLMODE_DISABLE, true,
                       &s->tls_mu, &s->tls_client, why, len);
}

int tls_http_setup(server *s, char *why, size_t len)
{
    side k = towards_clients(&s->cfg, true);
    return install_ctx(&k, cfg_sslmode(s->cfg.http_tls_sslmode) > SSLMODE_DISABLE, false,
                       &s->tls_mu, &s->tls_http, why, len);
}

SSL *tls_http_new(server *s, int fd)
{
    return accept_from(&s->tls_mu, &s->tls_http, fd);
}

int tls_server_setup(server *s, char *why, size_t len)
{
    const cfg *c = &s->cfg;
    side k = {true,
              c->server_tls_sslmode,
              c->server_tls_key_file,
              c->server_tls_cert_file,
              c->server_tls_ca_file,
              c->server_tls_protocols,
              c->server_tls_ciphers,
              c->server_tls13_ciphers,
              NULL,
              NULL,
              "server_tls"};
    if (!s->tls_out) {
        if (!(s->tls_out = calloc(1, sizeof *s->tls_out))) {
            snprintf(why, len, "out of memory");
            return -1;
        }
        pthread_mutex_init(&s->tls_out->mu, NULL);
    }
    return install_ctx(&k, cfg_sslmode(c->server_tls_sslmode) > SSLMODE_DISABLE, false,
                       &s->tls_out->mu, &s->tls_out->ctx, why, len);
}

void tls_free(server *s)
{
    SSL_CTX_free(s->tls_client);
    s->tls_client = NULL;
    SSL_CTX_free(s->tls_http);
    s->tls_http = NULL;
    if (s->tls_out) {
        SSL_CTX_free(s->tls_out->ctx);
        pthread_mutex_destroy(&s->tls_out->mu);
        free(s->tls_out);
        s->tls_out = NULL;
    }
}

SSL *tls_connect_new(tls_ref *r, int fd, const char *host, int sslmode, char *why, size_t len)
{
    SSL *ssl = NULL;
    if (r) {
        pthread_mutex_lock(&r->mu);
        ssl = r->ctx ? SSL_new(r->ctx) : NULL;
        pthread_mutex_unlock(&r->mu);
    }
    if (!ssl) {
        snprintf(why, len, r && r->ctx ? "out of memory" : "no TLS context for servers");
        return NULL;
    }
    SSL_set_connect_state(ssl);
    bool literal = strspn(host, "0123456789.") == strlen(host) || strchr(host, ':');
    if (SSL_set_fd(ssl, fd) != 1 || (!literal && SSL_set_tlsext_host_name(ssl, host) != 1)) {
        ossl_error(why, len, "cannot set up TLS");
        SSL_free(ssl);
        return NULL;
    }
    if (sslmode >= SSLMODE_VERIFY_CA) {
        SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
        if (sslmode == SSLMODE_VERIFY_FULL && SSL_set1_host(ssl, host) != 1) {
            ossl_error(why, len, "cannot check the server's name");
            SSL_free(ssl);
            return NULL;
        }
    } else {
        SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL); /* require: encrypted, not checked (libpq) */
    }
    return ssl;
}

SSL *tls_accept_new(server *s, int fd)
{
    return accept_from(&s->tls_mu, &s->tls_client, fd);
}

int tls_handshake(SSL *ssl, char *why, size_t len)
{
    ERR_clear_error();
    int r = SSL_do_handshake(ssl);
    if (r == 1) return 1;
    int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ) return 0;
    if (e == SSL_ERROR_WANT_WRITE) return 2;
    long v = SSL_get_verify_result(ssl);
    if (v != X509_V_OK) {
        snprintf(why, len, "TLS handshake failed: certificate verify failed: %s",
                 X509_verify_cert_error_string(v));
        ERR_clear_error();
        return -1;
    }
    ossl_error(why, len, "TLS handshake failed");
    return -1;
}

void tls_describe(SSL *ssl, char *out, size_t len)
{
    const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
    snprintf(out, len, "%s/%s", SSL_get_version(ssl), c ? SSL_CIPHER_get_name(c) : "?");
}

void tls_close(SSL *ssl)
{
    if (!ssl) return;
    ERR_clear_error();
    (void)SSL_shutdown(ssl); /* one close_notify, not waited for */
    SSL_free(ssl);
    ERR_clear_error();
}

int tls_peer_cn(SSL *ssl, char *out, size_t len)
{
    out[0] = '\0';
    if (!ssl || SSL_get_verify_result(ssl) != X509_V_OK) return -1;
    X509 *x = SSL_get1_peer_certificate(ssl);
    if (!x) return -1;
    int n = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, out, (int)len);
    X509_free(x);
    /* A CN with a NUL inside would compare equal to its prefix: refuse it. */
    return n > 0 && (size_t)n < len && strlen(out) == (size_t)n ? 0 : -1;
}

size_t tls_cbind(SSL *ssl, unsigned char *out, size_t cap)
{
    X509 *x = SSL_get_certificate(ssl); /* not a new reference */
    int md_nid = NID_undef, pk_nid;
    if (!x || !OBJ_find_sigid_algs(X509_get_signature_nid(x), &md_nid, &pk_nid)) return 0;
    const EVP_MD *md =
        md_nid == NID_md5 || md_nid == NID_sha1 ? EVP_sha256() : EVP_get_digestbynid(md_nid);
    unsigned int n = 0;
    if (!md || (size_t)EVP_MD_size(md) > cap || X509_digest(x, md, out, &n) != 1) return 0;
    return n;
}
