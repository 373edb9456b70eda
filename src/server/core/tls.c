/* tls.c — TLS towards clients (tls.h), on OpenSSL as PostgreSQL and
 * PgBouncer use it. */
#include "core/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
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

static SSL_CTX *make_ctx(const cfg *k, char *why, size_t len)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        ossl_error(why, len, "cannot make a TLS context");
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (protocols(ctx, k->client_tls_protocols, why, len)) goto fail;
    const char *ciphers = strcasecmp(k->client_tls_ciphers, "default") &&
                                  strcasecmp(k->client_tls_ciphers, "secure")
                              ? k->client_tls_ciphers
                              : "HIGH:!aNULL:!MD5:!3DES";
    if (!SSL_CTX_set_cipher_list(ctx, ciphers)) {
        ossl_error(why, len, "client_tls_ciphers");
        goto fail;
    }
    if (k->client_tls13_ciphers[0] && !SSL_CTX_set_ciphersuites(ctx, k->client_tls13_ciphers)) {
        ossl_error(why, len, "client_tls13_ciphers");
        goto fail;
    }
    if (strcasecmp(k->client_tls_ecdhcurve, "auto") &&
        !SSL_CTX_set1_groups_list(ctx, k->client_tls_ecdhcurve)) {
        ossl_error(why, len, "client_tls_ecdhcurve");
        goto fail;
    }
    if (strcasecmp(k->client_tls_dheparams, "auto") && strcasecmp(k->client_tls_dheparams, "none")) {
        snprintf(why, len, "client_tls_dheparams: only auto and none are supported");
        goto fail;
    }
    if (!strcasecmp(k->client_tls_dheparams, "auto")) SSL_CTX_set_dh_auto(ctx, 1);
    if (SSL_CTX_use_certificate_chain_file(ctx, k->client_tls_cert_file) != 1) {
        ossl_error(why, len, "client_tls_cert_file");
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, k->client_tls_key_file, SSL_FILETYPE_PEM) != 1) {
        ossl_error(why, len, "client_tls_key_file (it must be the key of client_tls_cert_file)");
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ossl_error(why, len, "client_tls_key_file does not match client_tls_cert_file");
        goto fail;
    }
    if (k->client_tls_ca_file[0]) {
        if (SSL_CTX_load_verify_locations(ctx, k->client_tls_ca_file, NULL) != 1) {
            ossl_error(why, len, "client_tls_ca_file");
            goto fail;
        }
        /* Ask for a client certificate; verify-ca and verify-full require one. */
        int mode = SSL_VERIFY_PEER;
        if (cfg_sslmode(k->client_tls_sslmode) >= SSLMODE_VERIFY_CA)
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_CTX_set_verify(ctx, mode, NULL);
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

int tls_client_setup(server *s, char *why, size_t len)
{
    SSL_CTX *ctx = NULL;
    if (cfg_sslmode(s->cfg.client_tls_sslmode) > SSLMODE_DISABLE) {
        ctx = make_ctx(&s->cfg, why, len);
        if (!ctx) return -1;
    }
    pthread_mutex_lock(&s->tls_mu);
    SSL_CTX *old = s->tls_client;
    s->tls_client = ctx;
    pthread_mutex_unlock(&s->tls_mu);
    SSL_CTX_free(old); /* connections made from it hold their own reference */
    return 0;
}

void tls_free(server *s)
{
    SSL_CTX_free(s->tls_client);
    s->tls_client = NULL;
}

SSL *tls_accept_new(server *s, int fd)
{
    pthread_mutex_lock(&s->tls_mu);
    SSL *ssl = s->tls_client ? SSL_new(s->tls_client) : NULL;
    pthread_mutex_unlock(&s->tls_mu);
    if (!ssl) return NULL;
    if (SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

int tls_handshake(SSL *ssl, char *why, size_t len)
{
    ERR_clear_error();
    int r = SSL_do_handshake(ssl);
    if (r == 1) return 1;
    int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ) return 0;
    if (e == SSL_ERROR_WANT_WRITE) return 2;
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
