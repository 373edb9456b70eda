/* authq.c — auth_query's request and answer (authq.h). */
#include "pg/authq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"

int authq_request(pq_buf *b, const char *query, const char *user)
{
    size_t ql = strlen(query), ul = strlen(user);
    if (ql > CFG_SECRET_MAX * 4u || ul > CFG_NAME) return -1;
    uint8_t *body = malloc(ql + ul + 32);
    if (!body) return -1;
    /* Parse (unnamed): name, query, no parameter types */
    body[0] = '\0';
    memcpy(body + 1, query, ql + 1);
    pq_set16(body + 2 + ql, 0);
    int rc = pq_put_msg(b, 'P', body, (uint32_t)(ql + 4));
    /* Bind: portal, statement, no formats (text), one parameter, no result formats */
    uint8_t *o = body;
    *o++ = '\0';
    *o++ = '\0';
    pq_set16(o, 0);
    pq_set16(o + 2, 1);
    pq_set32(o + 4, (uint32_t)ul);
    memcpy(o + 8, user, ul);
    pq_set16(o + 8 + ul, 0);
    rc |= pq_put_msg(b, 'B', body, (uint32_t)(12 + ul));
    static const uint8_t exec[5] = {0, 0, 0, 0, 0}; /* portal "", no row limit */
    rc |= pq_put_msg(b, 'E', exec, sizeof exec);
    rc |= pq_put_msg(b, 'S', NULL, 0);
    free(body);
    return rc ? -1 : 0;
}

static void set_secret(authq *q, const uint8_t *p, size_t n)
{
    authq_clear(q);
    if (!n) return;
    if (n > CFG_SECRET_MAX || memchr(p, '\0', n)) {
        snprintf(q->err, sizeof q->err, "secret from auth_query longer than %d bytes or with a NUL",
                 CFG_SECRET_MAX);
        return;
    }
    if (!(q->secret = malloc(n + 1))) {
        snprintf(q->err, sizeof q->err, "out of memory");
        return;
    }
    memcpy(q->secret, p, n);
    q->secret[n] = '\0';
}

int authq_answer(authq *q, const pq_msg *m)
{
    const uint8_t *p = m->body, *e = m->body + m->len - 4;
    if (m->type == 'E') {
        const char *msg = pq_error_field(m, 'M');
        if (!q->err[0]) snprintf(q->err, sizeof q->err, "%s", msg ? msg : "error");
    } else if (m->type == 'D' && !q->got_row) {
        /* usename, passwd: the second column is the secret (NULL: none) */
        q->got_row = true;
        if (e - p < 2 || pq_get16(p) < 2) {
            snprintf(q->err, sizeof q->err, "auth_query must return two columns");
            return 0;
        }
        p += 2;
        for (int col = 0; col < 2; col++) {
            if (e - p < 4) goto bad;
            int32_t len = (int32_t)pq_get32(p);
            p += 4;
            if (len < 0) continue; /* NULL */
            if (col == 0) q->named = true;
            if (e - p < len) goto bad;
            if (col == 1) set_secret(q, p, (size_t)len);
            p += len;
        }
    } else if (m->type == 'Z') {
        if (q->err[0]) authq_clear(q);
        return 1;
    }
    return 0;
bad:
    snprintf(q->err, sizeof q->err, "malformed answer from the server");
    return -1;
}

void authq_clear(authq *q)
{
    if (q->secret) {
        explicit_bzero(q->secret, strlen(q->secret));
        free(q->secret);
    }
    q->secret = NULL;
}
