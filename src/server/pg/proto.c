/* proto.c — PostgreSQL wire protocol (v3): buffers, framing, builders, startup parsing. */
#include "pg/proto.h"
#include "core/utf8.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Spare buffers, per thread. A client in transaction pooling goes idle after
 * every transaction and gives its buffers back (shed_buffers: a thousand
 * idle clients must not hold 32 KB each), then needs them again for the
 * next query. A freed buffer of up to SPARE_CAP bytes is therefore kept for
 * the next one this thread fills, SPARE_N at most: no malloc and free per
 * transaction. The spares are freed when the thread ends. Not under
 * AddressSanitizer, which should see every buffer freed. */
#if defined(__SANITIZE_ADDRESS__)
#define WEIR_NO_SPARES 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WEIR_NO_SPARES 1
#endif
#endif
#ifndef WEIR_NO_SPARES
enum { SPARE_N = 32, SPARE_CAP = 16384 };
typedef struct spare {
    uint8_t *p;
    uint32_t cap;
} spare;
static __thread spare spares[SPARE_N];
static __thread int nspares;
static __thread bool spares_registered;
static pthread_key_t spare_key;
static pthread_once_t spare_once = PTHREAD_ONCE_INIT;

static void spares_drop(void *unused)
{
    (void)unused;
    for (int i = 0; i < nspares; i++) free(spares[i].p);
    nspares = 0;
    spares_registered = false; /* a buffer freed after this registers again */
}

static void spare_key_make(void)
{
    (void)pthread_key_create(&spare_key, spares_drop);
}

static bool spare_keep(uint8_t *p, uint32_t cap)
{
    if (cap > SPARE_CAP || nspares == SPARE_N) return false;
    if (!spares_registered) { /* so that the thread's end frees them */
        pthread_once(&spare_once, spare_key_make);
        if (pthread_setspecific(spare_key, &spares_registered)) return false;
        spares_registered = true;
    }
    spares[nspares++] = (spare){p, cap};
    return true;
}

/* The most recent spare that holds n bytes, else the most recent. */
static void spare_take(pq_buf *b, uint32_t n)
{
    if (!nspares) return;
    int top = nspares - 1, k = top;
    if (spares[top].cap < n)
        for (int i = top - 1; i >= 0; i--)
            if (spares[i].cap >= n) {
                k = i;
                break;
            }
    b->p = spares[k].p;
    b->cap = spares[k].cap;
    b->start = b->end = 0;
    nspares = top;
    if (k != top) /* the rest keep their order, most recent last */
        memmove(&spares[k], &spares[k + 1], (size_t)(top - k) * sizeof *spares);
}
#else
static bool spare_keep(uint8_t *p, uint32_t cap)
{
    (void)p;
    (void)cap;
    return false;
}

static void spare_take(pq_buf *b, uint32_t n)
{
    (void)b;
    (void)n;
}
#endif

void pq_buf_free(pq_buf *b)
{
    if (b->p && !spare_keep(b->p, b->cap)) free(b->p);
    b->p = NULL;
    b->cap = b->start = b->end = 0;
}

int pq_buf_reserve(pq_buf *b, uint32_t n)
{
    if (b->cap - b->end >= n) return 0;
    if (!b->p) {
        spare_take(b, n);
        if (b->cap >= n) return 0;
    }
    if (b->start) {
        memmove(b->p, b->p + b->start, b->end - b->start);
        b->end -= b->start;
        b->start = 0;
        if (b->cap - b->end >= n) return 0;
    }
    uint64_t want = (uint64_t)b->end + n, cap = b->cap ? b->cap : 256;
    while (cap < want) cap *= 2;
    if (cap > UINT32_MAX) return -1;
    uint8_t *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = (uint32_t)cap;
    return 0;
}

int pq_put_raw(pq_buf *b, const void *p, uint32_t n)
{
    if (pq_buf_reserve(b, n)) return -1;
    memcpy(b->p + b->end, p, n);
    b->end += n;
    return 0;
}

int pq_put_msg(pq_buf *b, char type, const void *body, uint32_t n)
{
    if (pq_buf_reserve(b, n + 5)) return -1;
    uint8_t *o = b->p + b->end;
    if (type) *o++ = (uint8_t)type;
    pq_set32(o, n + 4);
    if (n) memcpy(o + 4, body, n);
    b->end += n + 4 + (type ? 1 : 0);
    return 0;
}

static int put_report(pq_buf *b, char type, const char *severity, const char *sqlstate,
                      const char *msg);

int pq_put_error(pq_buf *b, const char *severity, const char *sqlstate, const char *msg)
{
    return put_report(b, 'E', severity, sqlstate, msg);
}

int pq_put_notice(pq_buf *b, const char *msg)
{
    return put_report(b, 'N', "NOTICE", "00000", msg);
}

static int put_report(pq_buf *b, char type, const char *severity, const char *sqlstate,
                      const char *msg)
{
    size_t ls = strlen(severity), lc = strlen(sqlstate), lm = strlen(msg);
    if (lm > 8000) lm = 8000;
    uint32_t n = (uint32_t)(4 + ls + 1 + ls + 1 + lc + 1 + lm + 1 + 1); /* 4 field codes */
    if (pq_buf_reserve(b, n + 5)) return -1;
    uint8_t *o = b->p + b->end;
    *o++ = (uint8_t)type;
    pq_set32(o, n + 4);
    o += 4;
    *o++ = 'S';
    memcpy(o, severity, ls + 1), o += ls + 1;
    *o++ = 'V';
    memcpy(o, severity, ls + 1), o += ls + 1;
    *o++ = 'C';
    memcpy(o, sqlstate, lc + 1), o += lc + 1;
    *o++ = 'M';
    memcpy(o, msg, lm);
    utf8_scrub((char *)o, lm); /* a client's names in it are not trusted to be UTF-8 */
    o += lm;
    *o++ = '\0';
    *o++ = '\0';
    b->end += n + 5;
    return 0;
}

int pq_put_auth(pq_buf *b, uint32_t code, const void *data, uint32_t n)
{
    if (pq_buf_reserve(b, n + 9)) return -1;
    uint8_t *o = b->p + b->end;
    o[0] = 'R';
    pq_set32(o + 1, n + 8);
    pq_set32(o + 5, code);
    if (n) memcpy(o + 9, data, n);
    b->end += n + 9;
    return 0;
}

int pq_put_param(pq_buf *b, const char *name, const char *value)
{
    size_t ln = strlen(name) + 1, lv = strlen(value) + 1;
    if (ln + lv > 4096) return -1;
    uint8_t tmp[4096];
    memcpy(tmp, name, ln);
    memcpy(tmp + ln, value, lv);
    return pq_put_msg(b, 'S', tmp, (uint32_t)(ln + lv));
}

int pq_put_key(pq_buf *b, uint32_t pid, uint32_t key)
{
    uint8_t body[8];
    pq_set32(body, pid);
    pq_set32(body + 4, key);
    return pq_put_msg(b, 'K', body, 8);
}

int pq_put_ready(pq_buf *b, char status)
{
    uint8_t s = (uint8_t)status;
    return pq_put_msg(b, 'Z', &s, 1);
}

const char *pq_get_str(const uint8_t **p, const uint8_t *end)
{
    const uint8_t *s = *p;
    const uint8_t *z = memchr(s, '\0', (size_t)(end - s));
    if (!z) return NULL;
    *p = z + 1;
    return (const char *)s;
}

int pq_buf_take(pq_buf *b, uint32_t max_len, pq_msg *m)
{
    uint32_t avail = pq_buf_len(b);
    if (avail < 5) return PQ_NEED;
    const uint8_t *p = b->p + b->start;
    uint32_t len = pq_get32(p + 1);
    if (len < 4 || len > max_len) return PQ_BAD;
    if (avail - 1 < len) return PQ_NEED;
    *m = (pq_msg){.type = (char)p[0], .len = len, .body = p + 5};
    b->start += len + 1;
    return PQ_MSG;
}

const char *pq_error_field(const pq_msg *m, char field)
{
    const uint8_t *p = m->body, *end = m->body + m->len - 4;
    while (p < end && *p) {
        char f = (char)*p++;
        const char *v = pq_get_str(&p, end);
        if (!v) return NULL;
        if (f == field) return v;
    }
    return NULL;
}

int pq_parse_startup(const uint8_t *p, uint32_t len, pq_startup *out, const char **why)
{
    memset(out, 0, sizeof *out);
    if (len < 8 || len > PQ_STARTUP_MAX) {
        *why = "invalid length of startup packet";
        return -1;
    }
    out->code = pq_get32(p + 4);
    if (out->code == PQ_CANCEL_CODE) {
        if (len != 16) {
            *why = "invalid length of cancel request";
            return -1;
        }
        out->cancel_pid = pq_get32(p + 8);
        out->cancel_key = pq_get32(p + 12);
        return 0;
    }
    if (out->code == PQ_SSL_CODE || out->code == PQ_GSSENC_CODE) {
        if (len != 8) {
            *why = "invalid length of encryption request";
            return -1;
        }
        return 0;
    }
    if (out->code >> 16 != 3) {
        *why = "unsupported frontend protocol: weir speaks protocol 3.0";
        return -1;
    }
    const uint8_t *q = p + 8, *end = p + len;
    for (;;) {
        if (q >= end) {
            *why = "invalid startup packet layout: expected terminator as last byte";
            return -1;
        }
        if (*q == '\0') {
            if (q + 1 != end) {
                *why = "invalid startup packet layout: expected terminator as last byte";
                return -1;
            }
            break;
        }
        const char *name = pq_get_str(&q, end);
        const char *value = name ? pq_get_str(&q, end) : NULL;
        if (!value) {
            *why = "invalid startup packet layout: expected terminator as last byte";
            return -1;
        }
        if (out->nparams == PQ_MAX_PARAMS) {
            *why = "too many startup parameters";
            return -1;
        }
        out->names[out->nparams] = name;
        out->values[out->nparams] = value;
        out->nparams++;
    }
    return 0;
}

const char *pq_startup_get(const pq_startup *s, const char *name)
{
    for (int i = 0; i < s->nparams; i++)
        if (!strcmp(s->names[i], name)) return s->values[i];
    return NULL;
}

bool pq_startup_extension(const char *name)
{
    return !strncmp(name, "_pq_.", 5);
}

int pq_put_negotiate(pq_buf *b, const pq_startup *st)
{
    uint8_t body[8 + PQ_STARTUP_MAX]; /* the names come from one startup packet */
    uint32_t n = 8, count = 0;
    for (int i = 0; i < st->nparams; i++)
        if (pq_startup_extension(st->names[i])) {
            size_t l = strlen(st->names[i]) + 1;
            memcpy(body + n, st->names[i], l);
            n += (uint32_t)l;
            count++;
        }
    if (st->code == PQ_PROTO_V3 && !count) return 0;
    pq_set32(body, PQ_PROTO_V3); /* the newest minor version weir speaks */
    pq_set32(body + 4, count);
    return pq_put_msg(b, 'v', body, n);
}

int pq_next(pq_stream *st, const uint8_t *p, uint32_t n, uint32_t max_len, const char *whole,
            pq_msg *m, uint32_t *used)
{
    if (st->left) {
        if (!n) return PQ_NEED;
        *used = n < st->left ? n : st->left;
        st->left -= *used;
        return PQ_PASS;
    }
    if (n < 5) return PQ_NEED;
    m->type = (char)p[0];
    m->len = pq_get32(p + 1);
    if (m->len < 4 || m->len > max_len) return PQ_BAD;
    if (pq_type_in(whole, m->type)) {
        if (n - 1 < m->len) return PQ_NEED;
        m->body = p + 5;
        *used = m->len + 1;
        return PQ_MSG;
    }
    m->body = NULL;
    *used = 5;
    st->left = m->len - 4;
    return PQ_MSG;
}

/* The next blank-separated word of *pp into out (backslash escapes), or
 * false at the end. out has room for strlen(*pp) + 1. */
static bool opt_word(const char **pp, char *out)
{
    const char *p = *pp;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    if (!*p) return false;
    size_t n = 0;
    while (*p && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
        if (*p == '\\' && p[1]) p++;
        out[n++] = *p++;
    }
    out[n] = '\0';
    *pp = p;
    return true;
}

int pq_parse_options(const char *opts, void (*fn)(void *ud, const char *name, const char *value),
                     void *ud, const char **why)
{
    static const char bad[] =
        "unsupported options startup parameter: only '-c config=val' and '--config=val' are "
        "allowed";
    size_t len = strlen(opts);
    char *w = malloc(len + 1);
    if (!w) {
        *why = "out of memory";
        return -1;
    }
    int rc = 0;
    const char *p = opts;
    while (rc == 0 && opt_word(&p, w)) {
        char *setting;
        if (!strcmp(w, "-c")) { /* "-c name=value": the setting is the next word */
            if (!opt_word(&p, w)) {
                rc = -1;
                break;
            }
            setting = w;
        } else if (!strncmp(w, "-c", 2)) {
            setting = w + 2;
        } else if (!strncmp(w, "--", 2)) {
            setting = w + 2;
            for (char *q = setting; *q && *q != '='; q++) /* --foo-bar=x is foo_bar */
                if (*q == '-') *q = '_';
        } else {
            rc = -1;
            break;
        }
        char *eq = strchr(setting, '=');
        if (!eq || eq == setting) {
            rc = -1;
            break;
        }
        *eq = '\0';
        fn(ud, setting, eq + 1);
    }
    free(w);
    if (rc) *why = bad;
    return rc;
}
