/* auth.c — md5 and SCRAM-SHA-256 (RFC 5802, RFC 7677) on OpenSSL's primitives.
 *
 * SCRAM passwords are SASLprep'd (libidn's RFC 4013 profile) as PostgreSQL
 * and libpq do, so a non-ASCII password works whichever side made the secret.
 */
#include "core/auth.h"
#include "core/config.h"

#include <errno.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <stringprep.h>
#include <sys/random.h>

static void hex(const uint8_t *in, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[in[i] >> 4];
        out[2 * i + 1] = d[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* MD5, looked up in OpenSSL's providers once: EVP_md5() makes every
 * EVP_DigestInit_ex look it up again (a hash table under a lock), which cost
 * more than the two digests of an md5 login. */
static const EVP_MD *md5_md;
static pthread_once_t md5_once = PTHREAD_ONCE_INIT;

static void md5_fetch(void)
{
    md5_md = EVP_MD_fetch(NULL, "MD5", NULL);
}

static void md5_hex2(const void *a, size_t an, const void *b, size_t bn, char out[33])
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    pthread_once(&md5_once, md5_fetch);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, md5_md ? md5_md : EVP_md5(), NULL);
    EVP_DigestUpdate(ctx, a, an);
    EVP_DigestUpdate(ctx, b, bn);
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    hex(md, 16, out);
}

bool auth_is_md5_hash(const char *secret)
{
    return !strncmp(secret, "md5", 3) && strlen(secret) == 35;
}

bool auth_is_scram_secret(const char *secret)
{
    return !strncmp(secret, "SCRAM-SHA-256$", 14);
}

void auth_md5_response(const char *user, const char *secret, const uint8_t salt[4], char out[36])
{
    char inner[33];
    if (auth_is_md5_hash(secret))
        memcpy(inner, secret + 3, 33);
    else
        md5_hex2(secret, strlen(secret), user, strlen(user), inner);
    memcpy(out, "md5", 3);
    md5_hex2(inner, 32, salt, 4, out + 3);
}

bool auth_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb) return false;
    return CRYPTO_memcmp(a, b, la) == 0;
}

/* The kernel's generator (one system call), as PgBouncer and PostgreSQL
 * use: RAND_bytes checked the process id three times per login (system
 * calls) and ran its own generator on top. OpenSSL's is the fallback. */
int auth_random(void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return RAND_bytes(p, (int)n) == 1 ? 0 : -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int b64_encode(const uint8_t *in, size_t n, char *out, size_t outlen)
{
    if (outlen < 4 * ((n + 2) / 3) + 1) return -1;
    return EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

/* Decode exactly; returns the byte count or -1. */
static int b64_decode(const char *in, size_t n, uint8_t *out, size_t outlen)
{
    if (n % 4 || n > INT_MAX || 3 * (n / 4) > outlen + 2) return -1;
    /* EVP_DecodeBlock writes 3 bytes per 4, padding included: where out has
     * no room for those, decode into scratch space first. */
    uint8_t tmp[128], *dst = 3 * (n / 4) <= outlen ? out : tmp;
    if (dst == tmp && 3 * (n / 4) > sizeof tmp && !(dst = malloc(3 * (n / 4)))) return -1;
    int r = EVP_DecodeBlock(dst, (const unsigned char *)in, (int)n);
    if (r >= 0 && n >= 1 && in[n - 1] == '=') r--;
    if (r >= 0 && n >= 2 && in[n - 2] == '=') r--;
    if (r < 0 || (size_t)r > outlen) r = -1;
    if (r > 0 && dst != out) memcpy(out, dst, (size_t)r);
    if (dst != out && dst != tmp) free(dst);
    return r;
}

static void hmac(const uint8_t *key, size_t klen, const void *d, size_t n, uint8_t out[32])
{
    unsigned len = 32;
    HMAC(EVP_sha256(), key, (int)klen, d, n, out, &len);
}

static void sha256(const uint8_t *d, size_t n, uint8_t out[32])
{
    unsigned len = 32;
    EVP_Digest(d, n, out, &len, EVP_sha256(), NULL);
}

/* A password as SCRAM uses it: SASLprep'd (RFC 4013) as PostgreSQL and libpq
 * do. As PostgreSQL: pure ASCII is taken as it is, and a password that is
 * not valid UTF-8 or that SASLprep refuses (prohibited characters, bad
 * bidirectional text) is used as it is too. NULL when out of memory. */
char *auth_saslprep(const char *password)
{
    bool ascii = true;
    for (const unsigned char *p = (const unsigned char *)password; *p && ascii; p++)
        ascii = *p < 0x80;
    char *out = NULL;
    if (!ascii && stringprep_profile(password, &out, "SASLprep", 0) == STRINGPREP_OK) return out;
    free(out);
    return strdup(password);
}

static int salted_password(const char *password, const uint8_t *salt, int saltlen, int iter,
                           uint8_t out[32])
{
    char *pw = auth_saslprep(password);
    if (!pw) return -1;
    int rc = PKCS5_PBKDF2_HMAC(pw, (int)strlen(pw), salt, saltlen, iter, EVP_sha256(), 32, out) == 1
                 ? 0
                 : -1;
    explicit_bzero(pw, strlen(pw));
    free(pw);
    return rc;
}

int scram_secret_parse(const char *text, scram_secret *s)
{
    const char *p = text;
    if (strncmp(p, "SCRAM-SHA-256$", 14)) return -1;
    p += 14;
    char *end;
    long iter = strtol(p, &end, 10);
    if (end == p || *end != ':' || iter < 1 || iter > SCRAM_MAX_ITER) return -1;
    s->iter = (int)iter;
    p = end + 1;
    const char *d = strchr(p, '$');
    if (!d) return -1;
    s->saltlen = b64_decode(p, (size_t)(d - p), s->salt, sizeof s->salt);
    if (s->saltlen < 1) return -1;
    p = d + 1;
    const char *c = strchr(p, ':');
    if (!c) return -1;
    if (b64_decode(p, (size_t)(c - p), s->stored, 32) != 32) return -1;
    if (b64_decode(c + 1, strlen(c + 1), s->server, 32) != 32) return -1;
    return 0;
}

/* A random key made once per process: the mock salts derive from it. */
static uint8_t proc_key[32];
static int proc_key_rc = -1;
static pthread_once_t proc_key_once = PTHREAD_ONCE_INIT;

static void proc_key_init(void)
{
    proc_key_rc = auth_random(proc_key, sizeof proc_key);
}

/* HMAC(process key, the n parts, each after its length), 32 bytes: 0, or
 * -1 without a random key or memory. */
static int proc_mac(int n, const void *const part[], const size_t len[], uint8_t out[32])
{
    pthread_once(&proc_key_once, proc_key_init);
    if (proc_key_rc) return -1;
    size_t total = 0;
    for (int i = 0; i < n; i++) total += 4 + len[i];
    uint8_t *b = malloc(total), *p = b;
    if (!b) return -1;
    for (int i = 0; i < n; i++) {
        for (int k = 3; k >= 0; k--) *p++ = (uint8_t)(len[i] >> (8 * k));
        memcpy(p, part[i], len[i]);
        p += len[i];
    }
    hmac(proc_key, sizeof proc_key, b, total, out);
    explicit_bzero(b, total); /* the parts may be passwords */
    free(b);
    return 0;
}

/* HMAC(process key, label, user). 0 or -1. */
static int user_mac(const char *label, const char *user, uint8_t out[32])
{
    return proc_mac(2, (const void *[]){label, user}, (size_t[]){strlen(label), strlen(user)}, out);
}

/* Values derived from passwords by PBKDF2 (4096 rounds: most of a
 * millisecond of CPU), kept so that a login storm does not pay it per
 * login: the SCRAM secrets of plain auth_file passwords, and the keys weir
 * logs in to servers with. A value's slot is found by proc_mac() of
 * everything it was derived from, so a changed password (or salt) misses
 * and a stale value is never used; collisions only overwrite. */
typedef struct {
    bool used;
    uint8_t key[32];
    uint8_t val[sizeof(scram_secret)];
} kept_slot;
typedef struct {
    pthread_mutex_t mu;
    int n;
    kept_slot *slots;
    _Atomic uint64_t derived; /* values made rather than found: for the tests */
} kept;

static bool kept_get(kept *k, const uint8_t key[32], void *val, size_t size)
{
    kept_slot *sl = &k->slots[(key[0] | (unsigned)key[1] << 8) % (unsigned)k->n];
    pthread_mutex_lock(&k->mu);
    bool hit = sl->used && CRYPTO_memcmp(sl->key, key, 32) == 0;
    if (hit) memcpy(val, sl->val, size);
    pthread_mutex_unlock(&k->mu);
    if (!hit) atomic_fetch_add(&k->derived, 1); /* the caller derives it now */
    return hit;
}

static void kept_put(kept *k, const uint8_t key[32], const void *val, size_t size)
{
    kept_slot *sl = &k->slots[(key[0] | (unsigned)key[1] << 8) % (unsigned)k->n];
    pthread_mutex_lock(&k->mu);
    sl->used = true;
    memcpy(sl->key, key, 32);
    memcpy(sl->val, val, size);
    pthread_mutex_unlock(&k->mu);
}

/* A user's salt is the same on every login (user_mac), so the secret of
 * its plain password is too, until the password changes; PgBouncer keeps
 * them per user as well. */
static kept_slot secret_slots[1024];
static kept secrets = {PTHREAD_MUTEX_INITIALIZER, 1024, secret_slots, 0};

uint64_t scram_secrets_derived(void)
{
    return atomic_load(&secrets.derived);
}

int scram_secret_for_user(const char *user, const char *password, int iter, scram_secret *s)
{
    uint8_t m[32], salted[32], ck[32], key[32];
    uint8_t it[4] = {(uint8_t)(iter >> 24), (uint8_t)(iter >> 16), (uint8_t)(iter >> 8),
                     (uint8_t)iter}; /* a changed scram_iterations misses */
    if (iter < 1 || iter > SCRAM_MAX_ITER ||
        proc_mac(4, (const void *[]){"secret", user, password, it},
                 (size_t[]){6, strlen(user), strlen(password), 4}, key))
        return -1;
    if (kept_get(&secrets, key, s, sizeof *s)) return 0;
    if (user_mac("salt:", user, m)) return -1;
    s->iter = iter;
    s->saltlen = 16;
    memcpy(s->salt, m, 16);
    if (salted_password(password, s->salt, 16, iter, salted)) return -1;
    hmac(salted, 32, "Client Key", 10, ck);
    sha256(ck, 32, s->stored);
    hmac(salted, 32, "Server Key", 10, s->server);
    explicit_bzero(salted, sizeof salted);
    explicit_bzero(ck, sizeof ck);
    kept_put(&secrets, key, s, sizeof *s);
    return 0;
}

int scram_secret_mock(const char *user, int iter, scram_secret *s)
{
    uint8_t m[32];
    if (user_mac("salt:", user, m)) return -1;
    s->iter = iter; /* as a real user's: the count does not tell them apart */
    s->saltlen = 16;
    memcpy(s->salt, m, 16);
    /* Keys nobody knows: no proof can match them. */
    if (user_mac("stored:", user, s->stored) || user_mac("server:", user, s->server)) return -1;
    return 0;
}

/* Find "k=" attribute at the start of one of the comma-separated parts. */
static const char *attr(const char *msg, size_t len, char k, size_t *vlen)
{
    const char *p = msg, *end = msg + len;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;
        if (e - p >= 2 && p[0] == k && p[1] == '=') {
            *vlen = (size_t)(e - p - 2);
            return p + 2;
        }
        p = e + 1;
    }
    return NULL;
}

static int make_nonce(char *out, size_t outlen)
{
    uint8_t r[18];
    if (auth_random(r, sizeof r)) return -1;
    return b64_encode(r, sizeof r, out, outlen) < 0 ? -1 : 0;
}

/* A SCRAM nonce: printable ASCII but ',' (RFC 5802), as PostgreSQL checks. */
static bool nonce_ok(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x21 || p[i] > 0x7e || p[i] == ',') return false;
    return n > 0;
}

void scram_server_clear(scram_server *st)
{
    free(st->nonce);
    free(st->client_first_bare);
    free(st->server_first);
    st->nonce = st->client_first_bare = st->server_first = NULL;
}

int scram_server_first(scram_server *st, const char *msg, size_t len, const char **why)
{
    *why = "malformed SCRAM message";
    if (len < 3 || len > CFG_SECRET_MAX || memchr(msg, '\0', len)) return -1;
    /* gs2 header: "p=tls-server-end-point,," (SCRAM-SHA-256-PLUS), "n,," (no
     * channel binding) or "y,," (the client could, but thinks weir cannot:
     * with TLS on, that is a downgrade, refused as PostgreSQL does) */
    const char *c1 = memchr(msg, ',', len);
    if (!c1) return -1;
    if (msg[0] == 'p') {
        static const char tsep[] = "p=tls-server-end-point";
        if (!st->plus) {
            *why = "the client selected SCRAM-SHA-256 without channel binding, but the SCRAM "
                   "message includes channel binding data";
            return -1;
        }
        if ((size_t)(c1 - msg) != sizeof tsep - 1 || memcmp(msg, tsep, sizeof tsep - 1)) {
            *why = "unsupported SCRAM channel-binding type";
            return -1;
        }
    } else if (st->plus) {
        *why = "channel binding is required by SCRAM-SHA-256-PLUS";
        return -1;
    } else if ((msg[0] != 'n' && msg[0] != 'y') || c1 != msg + 1) {
        return -1;
    } else if (msg[0] == 'y' && st->cbind_len) {
        *why = "SCRAM channel binding negotiation error";
        return -1;
    }
    const char *c2 = memchr(c1 + 1, ',', len - (size_t)(c1 + 1 - msg));
    if (!c2 || (size_t)(c2 + 1 - msg) >= sizeof st->gs2) return -1;
    memcpy(st->gs2, msg, (size_t)(c2 + 1 - msg));
    st->gs2[c2 + 1 - msg] = '\0';
    const char *bare = c2 + 1;
    size_t blen = len - (size_t)(bare - msg);
    size_t nlen;
    const char *cn = attr(bare, blen, 'r', &nlen);
    if (!cn || !nonce_ok(cn, nlen)) {
        if (cn) *why = "non-printable characters in SCRAM nonce";
        return -1;
    }
    scram_server_clear(st);
    char sn[32], salt[100];
    if (make_nonce(sn, sizeof sn) ||
        b64_encode(st->sec.salt, (size_t)st->sec.saltlen, salt, sizeof salt) < 0)
        return -1;
    size_t snl = strlen(sn), fl = nlen + snl + strlen(salt) + 32;
    st->client_first_bare = malloc(blen + 1);
    st->nonce = malloc(nlen + snl + 1);
    st->server_first = malloc(fl);
    if (!st->client_first_bare || !st->nonce || !st->server_first) {
        scram_server_clear(st);
        *why = "out of memory";
        return -1;
    }
    memcpy(st->client_first_bare, bare, blen);
    st->client_first_bare[blen] = '\0';
    memcpy(st->nonce, cn, nlen);
    memcpy(st->nonce + nlen, sn, snl + 1);
    snprintf(st->server_first, fl, "r=%s,s=%s,i=%d", st->nonce, salt, st->sec.iter);
    return 0;
}

int scram_server_final(scram_server *st, const char *msg, size_t len, char *out, size_t outlen,
                       const char **why)
{
    *why = "malformed SCRAM message";
    if (!st->nonce || len > CFG_SECRET_MAX || memchr(msg, '\0', len)) return -1;
    size_t cl = 0, rl = 0, pl = 0;
    const char *c = attr(msg, len, 'c', &cl), *r = attr(msg, len, 'r', &rl);
    const char *p = attr(msg, len, 'p', &pl);
    if (!c || !r || !p) return -1;
    /* c= is base64(gs2 header, then the binding data for -PLUS) */
    uint8_t cb[sizeof st->gs2 + sizeof st->cbind];
    size_t gl = strlen(st->gs2), bl0 = st->plus ? st->cbind_len : 0;
    memcpy(cb, st->gs2, gl);
    if (bl0) memcpy(cb + gl, st->cbind, bl0);
    char want[2 * (sizeof cb) + 4];
    int wl = b64_encode(cb, gl + bl0, want, sizeof want);
    if (wl < 0 || cl != (size_t)wl || CRYPTO_memcmp(c, want, cl)) {
        *why = "SCRAM channel binding check failed";
        return -1;
    }
    if (rl != strlen(st->nonce) || memcmp(r, st->nonce, rl)) {
        *why = "SCRAM nonce mismatch";
        return -1;
    }
    uint8_t proof[32];
    if (p < msg + 3 || b64_decode(p, pl, proof, sizeof proof) != 32) return -1;
    /* client-final-without-proof: everything before ",p=" */
    size_t wlen = (size_t)(p - 3 - msg);
    size_t bl = strlen(st->client_first_bare), fl = strlen(st->server_first);
    size_t an = bl + 1 + fl + 1 + wlen;
    char *am = malloc(an + 1);
    if (!am) {
        *why = "out of memory";
        return -1;
    }
    memcpy(am, st->client_first_bare, bl);
    am[bl] = ',';
    memcpy(am + bl + 1, st->server_first, fl);
    am[bl + 1 + fl] = ',';
    memcpy(am + bl + fl + 2, msg, wlen);
    am[an] = '\0';
    uint8_t csig[32], ck[32], h[32], ssig[32];
    hmac(st->sec.stored, 32, am, an, csig);
    hmac(st->sec.server, 32, am, an, ssig);
    free(am);
    for (int i = 0; i < 32; i++) ck[i] = proof[i] ^ csig[i];
    sha256(ck, 32, h);
    if (CRYPTO_memcmp(h, st->sec.stored, 32)) {
        *why = "password authentication failed";
        return -1;
    }
    memcpy(st->client_key, ck, 32);
    st->have_client_key = true;
    char b[64];
    if (b64_encode(ssig, 32, b, sizeof b) < 0) return -1;
    if ((size_t)snprintf(out, outlen, "v=%s", b) >= outlen) return -1;
    return 0;
}

/* The keys weir logs in to a server with: a server offers a role the same
 * salt and iteration count on every login (its stored secret), so they are
 * kept too; a server that offers another salt each time only fills slots. */
static kept_slot key_slots[256];
static kept server_keys_kept = {PTHREAD_MUTEX_INITIALIZER, 256, key_slots, 0};

uint64_t scram_client_keys_derived(void)
{
    return atomic_load(&server_keys_kept.derived);
}

/* ClientKey and ServerKey (both[0..31], both[32..63]) for password, salt and
 * iter. 0 or -1. */
static int server_keys(const char *password, const uint8_t *salt, int saltlen, int iter,
                       uint8_t both[64])
{
    uint8_t key[32],
        it[4] = {(uint8_t)(iter >> 24), (uint8_t)(iter >> 16), (uint8_t)(iter >> 8), (uint8_t)iter};
    bool keyed = proc_mac(4, (const void *[]){"server", password, it, salt},
                          (size_t[]){6, strlen(password), 4, (size_t)saltlen}, key) == 0;
    if (keyed && kept_get(&server_keys_kept, key, both, 64)) return 0;
    uint8_t salted[32];
    if (salted_password(password, salt, saltlen, iter, salted)) return -1;
    hmac(salted, 32, "Client Key", 10, both);
    hmac(salted, 32, "Server Key", 10, both + 32);
    explicit_bzero(salted, sizeof salted);
    if (keyed) kept_put(&server_keys_kept, key, both, 64);
    return 0;
}

int scram_client_first(scram_client *st, char *out, size_t outlen)
{
    if (make_nonce(st->nonce, sizeof st->nonce)) return -1;
    snprintf(st->client_first_bare, sizeof st->client_first_bare, "n=,r=%s", st->nonce);
    int n = snprintf(out, outlen, "n,,%s", st->client_first_bare);
    return n < 0 || (size_t)n >= outlen ? -1 : n;
}

/* Check server-first against our nonce; r, rl: the combined nonce. 0 or -1. */
static int client_check_first(const scram_client *st, const char *server_first, size_t len,
                              const char **r, size_t *rl, const char **why)
{
    *why = "malformed SCRAM message from the server";
    if (len > 512 || memchr(server_first, '\0', len)) return -1;
    *r = attr(server_first, len, 'r', rl);
    if (!*r) return -1;
    size_t nl = strlen(st->nonce);
    if (*rl <= nl || memcmp(*r, st->nonce, nl)) {
        *why = "SCRAM nonce mismatch from the server";
        return -1;
    }
    return 0;
}

/* client-final from ClientKey and ServerKey; remembers the signature to expect. */
static int client_final_from_keys(scram_client *st, const uint8_t ck[32], const uint8_t sk[32],
                                  const char *server_first, size_t len, const char *r, size_t rl,
                                  char *out, size_t outlen)
{
    uint8_t stored[32], csig[32], proof[32];
    sha256(ck, 32, stored);
    char without[256];
    int wn = snprintf(without, sizeof without, "c=biws,r=%.*s", (int)rl, r);
    if (wn < 0 || (size_t)wn >= sizeof without) return -1;
    char am[1024];
    int an = snprintf(am, sizeof am, "%s,%.*s,%s", st->client_first_bare, (int)len, server_first,
                      without);
    if (an < 0 || (size_t)an >= sizeof am) return -1;
    hmac(stored, 32, am, (size_t)an, csig);
    for (int k = 0; k < 32; k++) proof[k] = ck[k] ^ csig[k];
    hmac(sk, 32, am, (size_t)an, st->server_signature);
    char pb[64];
    if (b64_encode(proof, 32, pb, sizeof pb) < 0) return -1;
    int n = snprintf(out, outlen, "%s,p=%s", without, pb);
    return n < 0 || (size_t)n >= outlen ? -1 : n;
}

int scram_client_final(scram_client *st, const char *password, const char *server_first, size_t len,
                       char *out, size_t outlen, const char **why)
{
    const char *r;
    size_t rl = 0, sl = 0, il = 0;
    if (client_check_first(st, server_first, len, &r, &rl, why)) return -1;
    const char *s = attr(server_first, len, 's', &sl), *i = attr(server_first, len, 'i', &il);
    if (!s || !i || il > 9) return -1;
    char itxt[10];
    memcpy(itxt, i, il);
    itxt[il] = '\0';
    int iter = atoi(itxt);
    uint8_t salt[64];
    int saltlen = b64_decode(s, sl, salt, sizeof salt);
    if (iter < 1 || iter > SCRAM_MAX_ITER || saltlen < 1) {
        if (iter > SCRAM_MAX_ITER)
            *why = "the server asks for more SCRAM iterations than weir allows";
        return -1;
    }
    uint8_t keys[64];
    if (server_keys(password, salt, saltlen, iter, keys)) return -1;
    int n = client_final_from_keys(st, keys, keys + 32, server_first, len, r, rl, out, outlen);
    explicit_bzero(keys, sizeof keys);
    return n;
}

int scram_client_final_keys(scram_client *st, const uint8_t client_key[32],
                            const uint8_t server_key[32], const char *server_first, size_t len,
                            char *out, size_t outlen, const char **why)
{
    const char *r;
    size_t rl;
    if (client_check_first(st, server_first, len, &r, &rl, why)) return -1;
    return client_final_from_keys(st, client_key, server_key, server_first, len, r, rl, out,
                                  outlen);
}

int scram_client_verify(const scram_client *st, const char *server_final, size_t len)
{
    size_t vl;
    const char *v = attr(server_final, len, 'v', &vl);
    uint8_t sig[32];
    if (!v || b64_decode(v, vl, sig, sizeof sig) != 32) return -1;
    return CRYPTO_memcmp(sig, st->server_signature, 32) ? -1 : 0;
}

int auth_b64_decode(const char *in, size_t n, uint8_t *out, size_t outlen)
{
    return b64_decode(in, n, out, outlen);
}

void auth_sha256(const void *d, size_t n, uint8_t out[32])
{
    sha256(d, n, out);
}

bool auth_password_ok(const char *user, const char *password, const char *secret)
{
    if (!secret || !secret[0]) { /* no such user: spend what a SCRAM check spends, then no */
        scram_secret s;
        uint8_t salted[32];
        if (scram_secret_mock(user, 4096, &s) == 0)
            (void)salted_password(password, s.salt, s.saltlen, s.iter, salted);
        return false;
    }
    if (auth_is_scram_secret(secret)) {
        scram_secret s;
        uint8_t salted[32], client_key[32], stored[32];
        if (scram_secret_parse(secret, &s) ||
            salted_password(password, s.salt, s.saltlen, s.iter, salted))
            return false;
        hmac(salted, 32, "Client Key", 10, client_key);
        sha256(client_key, 32, stored);
        return CRYPTO_memcmp(stored, s.stored, 32) == 0;
    }
    if (auth_is_md5_hash(secret)) {
        char h[36];
        memcpy(h, "md5", 3);
        md5_hex2(password, strlen(password), user, strlen(user), h + 3);
        return auth_equal(h, secret);
    }
    return auth_equal(password, secret);
}
