/* httpparse.c — the HTTP/1.1 request head parser (httpparse.h has the rules). */
#include "http/httpparse.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* RFC 9110 5.6.2: tchar */
static bool tchar(unsigned char ch)
{
    if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
        return true;
    return ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* A field value byte: VCHAR, obs-text, SP or HTAB (no other control). */
static bool vchar(unsigned char ch)
{
    return ch == ' ' || ch == '\t' || (ch > 0x20 && ch != 0x7f);
}

/* Does the comma-separated list v hold token t (case-insensitive)? */
static bool list_has(const char *v, const char *t)
{
    size_t tl = strlen(t);
    while (*v) {
        while (*v == ' ' || *v == '\t' || *v == ',') v++;
        const char *e = v;
        while (*e && *e != ',') e++;
        const char *te = e;
        while (te > v && (te[-1] == ' ' || te[-1] == '\t')) te--;
        if ((size_t)(te - v) == tl && !strncasecmp(v, t, tl)) return true;
        v = e;
    }
    return false;
}

static int bad(int *status, const char **why, int st, const char *msg)
{
    *status = st;
    *why = msg;
    return HTTP_PARSE_BAD;
}

void http_head_free(http_head *h)
{
    if (!h) return;
    free(h->buf);
    h->buf = NULL;
}

int http_parse_head(const char *p, size_t n, http_head *h, int *status, const char **why)
{
    memset(h, 0, sizeof *h);
    /* Empty lines before a request are ignored (a client's stray CRLF after a body). */
    size_t skip = 0;
    while (skip + 1 < n && p[skip] == '\r' && p[skip + 1] == '\n' && skip < 8) skip += 2;
    if (skip < n && p[skip] == '\n')
        return bad(status, why, 400, "malformed request: a line ends in a bare LF");
    p += skip;
    n -= skip;
    /* Find the end of the head, refusing NUL and bare LF as soon as they show. */
    size_t end = 0, lim = n < HTTP_HEAD_MAX ? n : HTTP_HEAD_MAX;
    for (size_t i = 0; i < lim; i++) {
        char ch = p[i];
        if (ch == '\0') return bad(status, why, 400, "malformed request: a NUL byte in the head");
        if (ch == '\n') {
            if (i == 0 || p[i - 1] != '\r')
                return bad(status, why, 400, "malformed request: a line ends in a bare LF");
            if (i >= 3 && p[i - 2] == '\n' && p[i - 3] == '\r') {
                end = i + 1;
                break;
            }
        } else if (i && p[i - 1] == '\r') {
            return bad(status, why, 400, "malformed request: a bare CR");
        }
    }
    if (!end) {
        if (n >= HTTP_HEAD_MAX)
            return bad(status, why, 431, "request line and headers exceed 16 KiB");
        return HTTP_PARSE_NEED;
    }
    char *b = malloc(end + 1);
    if (!b) return bad(status, why, 503, "out of memory");
    memcpy(b, p, end);
    b[end] = '\0';
    h->buf = b;
    h->skip = skip;
    h->len = end;

    /* request-line = method SP request-target SP HTTP-version CRLF */
    char *line = b, *eol = strstr(line, "\r\n"); /* there is one: end was found */
    *eol = '\0';
    char *q = line;
    while (tchar((unsigned char)*q)) q++;
    if (q == line || *q != ' ') goto bad_line;
    *q++ = '\0';
    h->method = line;
    char *target = q;
    while ((unsigned char)*q > 0x20 && (unsigned char)*q != 0x7f) q++;
    if (q == target || *q != ' ') goto bad_line;
    *q++ = '\0';
    if (strncmp(q, "HTTP/", 5)) goto bad_line;
    if (!strcmp(q + 5, "1.1")) {
        h->http10 = false;
    } else if (!strcmp(q + 5, "1.0")) {
        h->http10 = true;
    } else {
        bool digits =
            q[5] >= '0' && q[5] <= '9' && q[6] == '.' && q[7] >= '0' && q[7] <= '9' && !q[8];
        http_head_free(h);
        return digits ? bad(status, why, 505, "only HTTP/1.0 and HTTP/1.1 are served")
                      : bad(status, why, 400, "malformed request line");
    }
    char *qm = strchr(target, '?');
    if (qm) *qm++ = '\0';
    h->path = target;
    h->query = qm ? qm : "";

    bool have_cl = false, have_host = false, have_te = false;
    for (char *l = eol + 2; *l != '\r';) {
        char *e = strstr(l, "\r\n");
        *e = '\0';
        if (*l == ' ' || *l == '\t') {
            http_head_free(h);
            return bad(status, why, 400, "malformed header: obsolete line folding");
        }
        char *c = l;
        while (tchar((unsigned char)*c)) c++;
        if (c == l || *c != ':') {
            const char *msg = *c == ' ' || *c == '\t'
                                  ? "malformed header: whitespace before the colon"
                                  : "malformed header";
            http_head_free(h);
            return bad(status, why, 400, msg);
        }
        if (h->nh == HTTP_MAX_HEADERS) {
            http_head_free(h);
            return bad(status, why, 431, "more than 48 header fields");
        }
        *c = '\0';
        char *v = c + 1;
        for (char *x = v; *x; x++)
            if (!vchar((unsigned char)*x)) {
                http_head_free(h);
                return bad(status, why, 400, "malformed header: a control character in a value");
            }
        while (*v == ' ' || *v == '\t') v++;
        for (char *t = v + strlen(v); t > v && (t[-1] == ' ' || t[-1] == '\t');) *--t = '\0';
        h->hname[h->nh] = l;
        h->hval[h->nh++] = v;
        if (!strcasecmp(l, "Content-Length")) {
            if (have_cl) {
                http_head_free(h);
                return bad(status, why, 400, "more than one Content-Length");
            }
            have_cl = true;
            long long x = 0;
            const char *d = v;
            for (; *d >= '0' && *d <= '9'; d++) {
                if (x > (1LL << 53)) break;
                x = x * 10 + (*d - '0');
            }
            if (d == v || *d) {
                http_head_free(h);
                return bad(status, why, 400, "malformed Content-Length");
            }
            h->content_length = x;
        } else if (!strcasecmp(l, "Transfer-Encoding")) {
            have_te = true;
            h->chunked = h->chunked || list_has(v, "chunked");
        } else if (!strcasecmp(l, "Host")) {
            if (have_host) {
                http_head_free(h);
                return bad(status, why, 400, "more than one Host");
            }
            have_host = true;
        } else if (!strcasecmp(l, "Expect")) {
            h->expect_continue = !strcasecmp(v, "100-continue");
        } else if (!strcasecmp(l, "Connection")) {
            h->conn_close = h->conn_close || list_has(v, "close");
            h->conn_keep_alive = h->conn_keep_alive || list_has(v, "keep-alive");
        }
        l = e + 2;
    }
    if (have_te && have_cl) {
        http_head_free(h);
        return bad(status, why, 400, "both Transfer-Encoding and Content-Length");
    }
    if (have_te && !h->chunked) {
        http_head_free(h);
        return bad(status, why, 501, "Transfer-Encoding not supported: send Content-Length");
    }
    return HTTP_PARSE_OK;
bad_line:
    http_head_free(h);
    return bad(status, why, 400, "malformed request line");
}
