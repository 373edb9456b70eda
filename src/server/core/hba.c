/* hba.c — auth_hba_file (pg_hba.conf's syntax) and auth_ident_file
 * (pg_ident.conf's): parsing into rules, and the lookup per login.
 *
 * Syntax, as PostgreSQL's: one record per line, '#' to the end of the line is
 * a comment (outside quotes), a line ending in a backslash goes on in the
 * next one, fields are separated by blanks, a field may be a list separated
 * by commas (blanks around them allowed, as PgBouncer reads it), and a field
 * in double quotes is taken as it is ("" inside quotes is one quote; a quoted
 * keyword is a plain name). The parse is strict: what cannot be honoured is
 * an error naming the file and line.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <regex.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/hba.h"

#define LINE_MAX_LEN  (64 * 1024)        /* one logical line */
#define FILE_MAX_LEN  (16 * 1024 * 1024) /* one file */
#define INCLUDE_DEPTH 8                  /* "@file" inside "@file" */

enum { N_ALL, N_SAMEUSER, N_REPLICATION, N_NAME, N_REGEX };
enum { T_LOCAL, T_HOST, T_HOSTSSL, T_HOSTNOSSL, T_HOSTGSSENC, T_HOSTNOGSSENC };
enum { A_NONE, A_ALL, A_NET };

typedef struct hba_name {
    int kind;
    char *s;     /* N_NAME */
    regex_t *re; /* N_REGEX */
} hba_name;

typedef struct namelist {
    hba_name *v;
    size_t n;
} namelist;

typedef struct rule {
    int line, type;
    namelist dbs, users;
    int addr_kind, family;
    unsigned char addr[16], mask[16];
    int method;
    char method_name[24];
    char *map;
    int clientcert;
} rule;

typedef struct ident_ent {
    char *map, *sys, *user; /* sys: the system name, or a regex's text */
    regex_t *re;            /* sys began with '/' */
    bool user_all;          /* unquoted "all" */
} ident_ent;

struct hba {
    atomic_int refs;
    rule *rules;
    size_t nrules;
    ident_ent *ids;
    size_t nids;
};

/* --- tokens ---------------------------------------------------------------- */

typedef struct tok {
    char *s;
    bool quoted;
} tok;

typedef struct field {
    tok *t;
    size_t n;
} field;

typedef struct perr {
    char *buf;
    size_t len;
    const char *file;
    int line;
} perr;

static int fail(perr *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(perr *e, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (e->line)
        snprintf(e->buf, e->len, "%s:%d: %s", e->file, e->line, msg);
    else
        snprintf(e->buf, e->len, "%s: %s", e->file, msg);
    return -1;
}

static void field_free(field *f)
{
    for (size_t i = 0; i < f->n; i++) free(f->t[i].s);
    free(f->t);
    f->t = NULL;
    f->n = 0;
}

/* One token at *pp: 1 and *t filled, 0 at the end of the line, -1 on error.
 * *comma: a comma followed it (the list goes on). */
static int read_token(const char **pp, tok *t, bool *comma, perr *e)
{
    const char *p = *pp;
    while (*p == ' ' || *p == '\t' || *p == '\r') p++;
    *comma = false;
    if (!*p || *p == '#') {
        *pp = p;
        return 0;
    }
    size_t cap = strlen(p) + 1, n = 0;
    char *s = malloc(cap);
    if (!s) return fail(e, "out of memory");
    bool inq = false, quoted = false;
    while (*p) {
        char c = *p;
        if (!inq && (c == ' ' || c == '\t' || c == '\r' || c == ',' || c == '#')) break;
        if (c == '"') {
            quoted = true;
            if (inq && p[1] == '"') {
                s[n++] = '"';
                p += 2;
                continue;
            }
            inq = !inq;
            p++;
            continue;
        }
        s[n++] = c;
        p++;
    }
    s[n] = '\0';
    if (inq) {
        free(s);
        return fail(e, "unterminated quoted string");
    }
    while (*p == ' ' || *p == '\t' || *p == '\r') p++;
    if (*p == ',') {
        *comma = true;
        p++;
    }
    if (!n && !quoted) {
        free(s);
        return fail(e, "empty entry in a comma-separated list");
    }
    *pp = p;
    t->s = s;
    t->quoted = quoted;
    return 1;
}

/* One field (a token, or a comma-separated list): 1, 0 at the end of the line, -1. */
static int read_field(const char **pp, field *f, perr *e)
{
    f->t = NULL;
    f->n = 0;
    for (;;) {
        tok t;
        bool comma;
        int r = read_token(pp, &t, &comma, e);
        if (r < 0) {
            field_free(f);
            return -1;
        }
        if (r == 0) {
            if (f->n) { /* a list ending in a comma */
                field_free(f);
                return fail(e, "a comma-separated list ends with a comma");
            }
            return 0;
        }
        tok *nt = realloc(f->t, (f->n + 1) * sizeof *nt);
        if (!nt) {
            free(t.s);
            field_free(f);
            return fail(e, "out of memory");
        }
        f->t = nt;
        f->t[f->n++] = t;
        if (!comma) return 1;
    }
}

/* Read a whole file (at most FILE_MAX_LEN): malloc'd and NUL-terminated, or NULL. */
static char *slurp(const char *path, size_t *len, perr *e)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fail(e, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) break;
        if (n + 1 >= cap) {
            if (cap >= FILE_MAX_LEN) {
                free(buf);
                fclose(f);
                fail(e, "%s is larger than %d bytes", path, FILE_MAX_LEN);
                return NULL;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - 1 - n, f);
        if (!r) break;
        n += r;
    }
    bool bad = ferror(f);
    fclose(f);
    if (!buf) {
        fail(e, "out of memory");
        return NULL;
    }
    if (bad) {
        free(buf);
        fail(e, "cannot read %s", path);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Calls fn on each logical line of text (continuations joined, line numbers
 * of the first physical line). Stops at fn's -1. */
static int each_line(const char *text, size_t len, perr *e,
                     int (*fn)(void *ud, const char *line, perr *e), void *ud)
{
    char *line = malloc(LINE_MAX_LEN + 1);
    if (!line) return fail(e, "out of memory");
    size_t i = 0;
    int phys = 0, rc = 0;
    while (i < len && rc == 0) {
        size_t n = 0;
        e->line = phys + 1;
        for (;;) { /* physical lines until one does not end in a backslash */
            phys++;
            size_t start = i;
            while (i < len && text[i] != '\n') i++;
            size_t end = i;
            if (i < len) i++; /* the newline */
            if (end > start && text[end - 1] == '\r') end--;
            bool more = end > start && text[end - 1] == '\\';
            if (more) end--;
            if (memchr(text + start, '\0', end - start)) {
                free(line);
                return fail(e, "NUL byte in the line");
            }
            if (n + (end - start) > LINE_MAX_LEN) {
                free(line);
                return fail(e, "line longer than %d bytes", LINE_MAX_LEN);
            }
            memcpy(line + n, text + start, end - start);
            n += end - start;
            if (!more || i >= len) break;
        }
        line[n] = '\0';
        rc = fn(ud, line, e);
    }
    free(line);
    return rc;
}

/* --- name lists ------------------------------------------------------------ */

static void names_free(namelist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].s);
        if (l->v[i].re) {
            regfree(l->v[i].re);
            free(l->v[i].re);
        }
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* About how many nodes glibc's regcomp makes of re: it copies a repeated
 * part once per repetition ("x+" is "xx*", "x{2,5}" five x's), so nested
 * repetitions grow exponentially ("a++++...", "((a{9}){9}){9}"). A rough
 * upper bound, to refuse such a pattern before it takes all the memory.
 * Quantifiers stacked on quantifiers ("a?*****...") make its epsilon
 * closures recurse once per level: more than two in a row are refused too. */
#define REGEX_MAX_NODES 4096
static double regex_size(const char *re)
{
    double sum[64] = {0};
    int depth = 0, stacked = 0;
    double last = 0; /* the size of the atom a quantifier would repeat */
    for (const char *p = re; *p; p++) {
        char c = *p;
        if (c == '*' || c == '?' || c == '+' || c == '{') {
            if (++stacked > 2) return 1e300;
        } else {
            stacked = 0;
        }
        if (c == '\\') {
            if (p[1]) p++;
            last = 1;
        } else if (c == '[') {
            const char *q = p + 1;
            if (*q == '^') q++;
            if (*q == ']') q++;
            while (*q && *q != ']') q++;
            p = *q ? q : q - 1;
            last = 1;
        } else if (c == '(') {
            if (depth == 63) return 1e300;
            sum[++depth] = 0;
            last = 0;
            continue;
        } else if (c == ')' && depth > 0) {
            last = sum[depth--] + 1;
        } else if (c == '+' || c == '{') {
            double n = 2;
            if (c == '{') { /* {m}, {m,}, {m,n}: about max(m, n) + 1 copies */
                double m = 0, k = 0;
                const char *q = p + 1;
                while (*q >= '0' && *q <= '9') m = m * 10 + (*q++ - '0');
                if (*q == ',') q++;
                while (*q >= '0' && *q <= '9') k = k * 10 + (*q++ - '0');
                n = (m > k ? m : k) + 1;
                if (*q == '}') p = q;
            }
            sum[depth] += last * (n - 1);
            last *= n;
            if (sum[depth] > 1e12) return 1e300;
            continue;
        } else if (c == '*' || c == '?' || c == '|' || c == '^' || c == '$') {
            sum[depth] += 1;
            continue;
        } else {
            last = 1;
        }
        sum[depth] += last;
    }
    while (depth > 0) sum[depth - 1] += sum[depth], depth--;
    return sum[0];
}

static regex_t *compile(const char *re, int flags, perr *e)
{
    if (strlen(re) > 1024 || regex_size(re) > REGEX_MAX_NODES) {
        fail(e, "regular expression \"%.60s%s\" is too complex (repetitions of repetitions)", re,
             strlen(re) > 60 ? "..." : "");
        return NULL;
    }
    regex_t *r = malloc(sizeof *r);
    if (!r) {
        fail(e, "out of memory");
        return NULL;
    }
    int rc = regcomp(r, re, REG_EXTENDED | flags);
    if (rc) {
        char why[160];
        regerror(rc, r, why, sizeof why);
        free(r);
        fail(e, "invalid regular expression \"%s\": %s", re, why);
        return NULL;
    }
    return r;
}

typedef struct listctx {
    namelist *l;
    bool is_db;
    const char *dir;
    int depth;
} listctx;

static int add_token(listctx *x, const tok *t, perr *e);

/* "@file": its tokens (blanks, commas and newlines between them; comments) join the list. */
static int add_file(listctx *x, const char *fname, perr *e)
{
    if (!x->dir) return fail(e, "\"@%s\": file lists are not read here", fname);
    if (x->depth >= INCLUDE_DEPTH)
        return fail(e, "\"@%s\": file lists nested deeper than %d", fname, INCLUDE_DEPTH);
    char path[4096];
    if (fname[0] == '/')
        snprintf(path, sizeof path, "%s", fname);
    else
        snprintf(path, sizeof path, "%s/%s", x->dir, fname);
    size_t len;
    char *text = slurp(path, &len, e);
    if (!text) return -1;
    if (memchr(text, '\0', len)) {
        free(text);
        return fail(e, "@%s: NUL byte in %s", fname, path);
    }
    int rc = 0;
    x->depth++;
    /* Each line's tokens; an unterminated quote is an error of that file. */
    char *save = NULL;
    for (char *ln = strtok_r(text, "\n", &save); ln && !rc; ln = strtok_r(NULL, "\n", &save)) {
        const char *p = ln;
        for (;;) {
            tok t;
            bool comma;
            int r = read_token(&p, &t, &comma, e);
            if (r < 0) {
                rc = -1;
                break;
            }
            if (r == 0) break;
            rc = add_token(x, &t, e);
            free(t.s);
            if (rc) break;
        }
    }
    x->depth--;
    free(text);
    return rc;
}

static int add_token(listctx *x, const tok *t, perr *e)
{
    const char *s = t->s;
    if (!t->quoted && s[0] == '@') return add_file(x, s + 1, e);
    hba_name nm = {.kind = N_NAME};
    if (!t->quoted && !strcmp(s, "all")) {
        nm.kind = N_ALL;
    } else if (!t->quoted && x->is_db && !strcmp(s, "sameuser")) {
        nm.kind = N_SAMEUSER;
    } else if (!t->quoted && x->is_db && (!strcmp(s, "samerole") || !strcmp(s, "samegroup"))) {
        return fail(e, "\"%s\" is not supported: weir does not know role membership", s);
    } else if (!t->quoted && x->is_db && !strcmp(s, "replication")) {
        nm.kind = N_REPLICATION;
    } else if (!t->quoted && !x->is_db && s[0] == '+') {
        return fail(e,
                    "\"%s\": group membership (+role) is not supported: weir does not know "
                    "role membership; list the users, or use @file",
                    s);
    } else if (s[0] == '/') { /* quoted too: a regex with a comma must be (PostgreSQL 16) */
        nm.kind = N_REGEX;
        if (!(nm.re = compile(s + 1, REG_NOSUB, e))) return -1;
    } else if (!(nm.s = strdup(s))) {
        return fail(e, "out of memory");
    }
    hba_name *nv = realloc(x->l->v, (x->l->n + 1) * sizeof *nv);
    if (!nv) {
        free(nm.s);
        if (nm.re) {
            regfree(nm.re);
            free(nm.re);
        }
        return fail(e, "out of memory");
    }
    x->l->v = nv;
    x->l->v[x->l->n++] = nm;
    return 0;
}

static int field_names(const field *f, namelist *l, bool is_db, const char *dir, perr *e)
{
    listctx x = {l, is_db, dir, 0};
    for (size_t i = 0; i < f->n; i++)
        if (add_token(&x, &f->t[i], e)) return -1;
    return 0;
}

/* --- rules ----------------------------------------------------------------- */

static void rule_free(rule *r)
{
    names_free(&r->dbs);
    names_free(&r->users);
    free(r->map);
}

static const struct {
    const char *name;
    int method;
} methods[] = {
    {"trust", HBA_TRUST},        {"reject", HBA_REJECT},       {"md5", HBA_MD5},
    {"password", HBA_PASSWORD},  {"scram-sha-256", HBA_SCRAM}, {"cert", HBA_CERT},
    {"peer", HBA_PEER},          {"ldap", HBA_UNSUPPORTED},    {"pam", HBA_UNSUPPORTED},
    {"gss", HBA_UNSUPPORTED},    {"sspi", HBA_UNSUPPORTED},    {"ident", HBA_UNSUPPORTED},
    {"radius", HBA_UNSUPPORTED}, {"bsd", HBA_UNSUPPORTED},     {"oauth", HBA_UNSUPPORTED},
};

/* An address with /bits, or an address alone (then the mask is the next
 * field). 1: a mask field is needed, 0: done, -1: error. */
static int parse_addr(rule *r, const char *s, perr *e)
{
    char buf[128];
    if (strlen(s) >= sizeof buf) return fail(e, "invalid address \"%.40s...\"", s);
    snprintf(buf, sizeof buf, "%s", s);
    char *slash = strchr(buf, '/');
    if (slash) *slash = '\0';
    if (inet_pton(AF_INET, buf, r->addr) == 1)
        r->family = AF_INET;
    else if (inet_pton(AF_INET6, buf, r->addr) == 1)
        r->family = AF_INET6;
    else
        return fail(e,
                    "\"%s\" is not an IP address: host names, samehost and samenet are not "
                    "supported; write an address with a mask (e.g. 10.0.0.0/8)",
                    s);
    int max = r->family == AF_INET ? 32 : 128;
    if (!slash) return 1;
    const char *b = slash + 1;
    if (!*b || strlen(b) > 3) return fail(e, "invalid mask length in \"%s\"", s);
    int bits = 0;
    for (const char *p = b; *p; p++) {
        if (!isdigit((unsigned char)*p)) return fail(e, "invalid mask length in \"%s\"", s);
        bits = bits * 10 + (*p - '0');
    }
    if (bits > max) return fail(e, "mask length %d in \"%s\" is more than %d", bits, s, max);
    memset(r->mask, 0, sizeof r->mask);
    for (int i = 0; i < bits; i++) r->mask[i / 8] |= (unsigned char)(0x80 >> (i % 8));
    return 0;
}

static int parse_mask(rule *r, const char *s, perr *e)
{
    unsigned char m[16] = {0};
    int fam = r->family == AF_INET ? AF_INET : AF_INET6;
    if (inet_pton(fam, s, m) != 1)
        return fail(e, "\"%s\" is not an IP mask of the address's family", s);
    /* contiguous ones, then zeros */
    int n = fam == AF_INET ? 4 : 16;
    bool zero = false;
    for (int i = 0; i < n * 8; i++) {
        bool one = m[i / 8] & (0x80 >> (i % 8));
        if (one && zero) return fail(e, "\"%s\" is not a valid mask (its ones must come first)", s);
        if (!one) zero = true;
    }
    memcpy(r->mask, m, sizeof m);
    return 0;
}

typedef struct hba_ctx {
    hba *h;
    const char *dir;
    void (*warn)(void *ud, const char *msg);
    void *ud;
} hba_ctx;

static bool is_include(const field *f)
{
    return f->n == 1 && !f->t[0].quoted &&
           (!strcmp(f->t[0].s, "include") || !strcmp(f->t[0].s, "include_if_exists") ||
            !strcmp(f->t[0].s, "include_dir"));
}

static int hba_line(void *ud, const char *line, perr *e)
{
    hba_ctx *x = ud;
    field f[32];
    size_t nf = 0;
    const char *p = line;
    int rc = 0;
    rule r = {.line = e->line};
    for (;;) {
        if (nf == sizeof f / sizeof *f) {
            rc = fail(e, "too many fields");
            break;
        }
        int got = read_field(&p, &f[nf], e);
        if (got < 0) {
            rc = -1;
            break;
        }
        if (got == 0) break;
        nf++;
    }
    if (rc || !nf) goto out;
    size_t i = 0;
    if (is_include(&f[0])) {
        rc = fail(e, "\"%s\" directives are not supported in auth_hba_file", f[0].t[0].s);
        goto out;
    }
    static const char *const types[] = {"local",     "host",       "hostssl",
                                        "hostnossl", "hostgssenc", "hostnogssenc"};
    r.type = -1;
    for (int k = 0; k < 6; k++)
        if (f[0].n == 1 && !f[0].t[0].quoted && !strcmp(f[0].t[0].s, types[k])) r.type = k;
    if (r.type < 0) {
        rc = fail(e, "invalid connection type \"%s\" (local, host, hostssl or hostnossl)",
                  f[0].t[0].s);
        goto out;
    }
    i = 1;
    if (nf < (r.type == T_LOCAL ? 4u : 5u)) {
        rc = fail(e, "too few fields: expected %s",
                  r.type == T_LOCAL ? "local DATABASE USER METHOD [OPTIONS]"
                                    : "host DATABASE USER ADDRESS METHOD [OPTIONS]");
        goto out;
    }
    if (field_names(&f[i++], &r.dbs, true, x->dir, e) ||
        field_names(&f[i++], &r.users, false, x->dir, e)) {
        rc = -1;
        goto fail_rule;
    }
    if (r.type != T_LOCAL) {
        if (f[i].n != 1) {
            rc = fail(e, "one address per rule");
            goto fail_rule;
        }
        const tok *a = &f[i].t[0];
        i++;
        if (!a->quoted && !strcmp(a->s, "all")) {
            r.addr_kind = A_ALL;
        } else {
            r.addr_kind = A_NET;
            int need = parse_addr(&r, a->s, e);
            if (need < 0) {
                rc = -1;
                goto fail_rule;
            }
            if (need) {
                if (i >= nf || f[i].n != 1 || parse_mask(&r, f[i].t[0].s, e)) {
                    if (i >= nf || f[i].n != 1)
                        fail(e, "address \"%s\" needs a mask: /bits, or a mask field", a->s);
                    rc = -1;
                    goto fail_rule;
                }
                i++;
            }
            for (int k = 0; k < 16; k++) r.addr[k] &= r.mask[k];
        }
    }
    if (i >= nf || f[i].n != 1) {
        rc = fail(e, i >= nf ? "end of line before the method field" : "one method per rule");
        goto fail_rule;
    }
    const char *m = f[i].t[0].s;
    i++;
    r.method = -1;
    for (size_t k = 0; k < sizeof methods / sizeof *methods; k++)
        if (!strcmp(m, methods[k].name)) r.method = methods[k].method;
    if (r.method < 0) {
        rc = fail(e, "invalid authentication method \"%s\"", m);
        goto fail_rule;
    }
    snprintf(r.method_name, sizeof r.method_name, "%s", m);
    for (; i < nf; i++) {
        if (f[i].n != 1) {
            rc = fail(e, "options are name=value, one per field");
            goto fail_rule;
        }
        const char *o = f[i].t[0].s, *eq = strchr(o, '=');
        if (r.method == HBA_UNSUPPORTED) continue; /* ldapserver=... and the like */
        if (!eq) {
            rc = fail(e, "option \"%s\" is not name=value", o);
            goto fail_rule;
        }
        if (!strncmp(o, "map=", 4)) {
            if (r.method != HBA_CERT && r.method != HBA_PEER) {
                rc = fail(e, "map= is for cert and peer rules only");
                goto fail_rule;
            }
            free(r.map);
            if (!(r.map = strdup(eq + 1))) {
                rc = fail(e, "out of memory");
                goto fail_rule;
            }
        } else if (!strncmp(o, "clientcert=", 11)) {
            if (r.type != T_HOSTSSL) {
                rc = fail(e, "clientcert is for hostssl rules only");
                goto fail_rule;
            }
            if (!strcmp(eq + 1, "verify-ca"))
                r.clientcert = 1;
            else if (!strcmp(eq + 1, "verify-full"))
                r.clientcert = 2;
            else {
                rc = fail(e, "clientcert must be verify-ca or verify-full");
                goto fail_rule;
            }
            if (r.method == HBA_CERT && r.clientcert != 2) {
                rc = fail(e, "clientcert only accepts verify-full with method cert");
                goto fail_rule;
            }
        } else {
            rc = fail(e, "unknown option \"%.*s\" for method %s", (int)(eq - o), o, m);
            goto fail_rule;
        }
    }
    /* cert on a rule that TLS-less logins match, and peer on a host rule,
     * load (PgBouncer takes them): such logins are refused when they come. */
    if (r.method == HBA_UNSUPPORTED && x->warn) {
        char msg[300];
        snprintf(msg, sizeof msg,
                 "%s:%d: authentication method %s is not supported by weir: logins this rule "
                 "matches are refused",
                 e->file, e->line, m);
        x->warn(x->ud, msg);
    }
    rule *nr = realloc(x->h->rules, (x->h->nrules + 1) * sizeof *nr);
    if (!nr) {
        rc = fail(e, "out of memory");
        goto fail_rule;
    }
    x->h->rules = nr;
    x->h->rules[x->h->nrules++] = r;
    goto out;
fail_rule:
    rule_free(&r);
out:
    for (size_t k = 0; k < nf; k++) field_free(&f[k]);
    return rc;
}

static int ident_line(void *ud, const char *line, perr *e)
{
    hba *h = ud;
    field f[4];
    size_t nf = 0;
    const char *p = line;
    int rc = 0;
    for (;;) {
        if (nf == 4) {
            rc = fail(e, "too many fields: MAPNAME SYSTEM-USERNAME PG-USERNAME");
            break;
        }
        int r = read_field(&p, &f[nf], e);
        if (r < 0) {
            rc = -1;
            break;
        }
        if (r == 0) break;
        nf++;
    }
    if (rc || !nf) goto out;
    if (is_include(&f[0])) {
        rc = fail(e, "\"%s\" directives are not supported in auth_ident_file", f[0].t[0].s);
        goto out;
    }
    if (nf != 3 || f[0].n != 1 || f[1].n != 1 || f[2].n != 1) {
        rc = fail(e, "expected MAPNAME SYSTEM-USERNAME PG-USERNAME");
        goto out;
    }
    const tok *u = &f[2].t[0], *sy = &f[1].t[0];
    if (!u->quoted && u->s[0] == '+') {
        rc = fail(e, "\"%s\": group membership (+role) is not supported", u->s);
        goto out;
    }
    ident_ent en = {0};
    en.user_all = !u->quoted && !strcmp(u->s, "all");
    if (sy->s[0] == '/' && !(en.re = compile(sy->s + 1, 0, e))) {
        rc = -1;
        goto out;
    }
    en.map = strdup(f[0].t[0].s);
    en.sys = strdup(sy->s);
    en.user = strdup(u->s);
    ident_ent *nv =
        en.map && en.sys && en.user ? realloc(h->ids, (h->nids + 1) * sizeof *nv) : NULL;
    if (!nv) {
        free(en.map);
        free(en.sys);
        free(en.user);
        if (en.re) {
            regfree(en.re);
            free(en.re);
        }
        rc = fail(e, "out of memory");
        goto out;
    }
    h->ids = nv;
    h->ids[h->nids++] = en;
out:
    for (size_t k = 0; k < nf; k++) field_free(&f[k]);
    return rc;
}

/* --- the set ---------------------------------------------------------------- */

static void hba_free(hba *h)
{
    for (size_t i = 0; i < h->nrules; i++) rule_free(&h->rules[i]);
    free(h->rules);
    for (size_t i = 0; i < h->nids; i++) {
        free(h->ids[i].map);
        free(h->ids[i].sys);
        free(h->ids[i].user);
        if (h->ids[i].re) {
            regfree(h->ids[i].re);
            free(h->ids[i].re);
        }
    }
    free(h->ids);
    free(h);
}

void hba_ref(hba *h)
{
    if (h) atomic_fetch_add(&h->refs, 1);
}

void hba_unref(hba *h)
{
    if (h && atomic_fetch_sub(&h->refs, 1) == 1) hba_free(h);
}

size_t hba_rule_count(const hba *h)
{
    return h ? h->nrules : 0;
}

hba *hba_parse(const char *text, size_t len, const char *name, const char *dir,
               void (*warn)(void *ud, const char *msg), void *ud, char *err, size_t errlen)
{
    hba *h = calloc(1, sizeof *h);
    perr e = {err, errlen, name, 0};
    if (!h) {
        fail(&e, "out of memory");
        return NULL;
    }
    atomic_init(&h->refs, 1);
    hba_ctx x = {h, dir, warn, ud};
    if (each_line(text, len, &e, hba_line, &x)) {
        hba_free(h);
        return NULL;
    }
    return h;
}

int hba_parse_ident(hba *h, const char *text, size_t len, const char *name, char *err,
                    size_t errlen)
{
    perr e = {err, errlen, name, 0};
    return each_line(text, len, &e, ident_line, h);
}

hba *hba_load(const char *hba_path, const char *ident_path, void (*warn)(void *ud, const char *msg),
              void *ud, char *err, size_t errlen)
{
    perr e = {err, errlen, hba_path, 0};
    size_t len;
    char *text = slurp(hba_path, &len, &e);
    if (!text) return NULL;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", hba_path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    if (!dir[0]) snprintf(dir, sizeof dir, "/");
    hba *h = hba_parse(text, len, hba_path, dir, warn, ud, err, errlen);
    free(text);
    if (!h || !ident_path || !ident_path[0]) return h;
    e.file = ident_path;
    if (!(text = slurp(ident_path, &len, &e)) ||
        hba_parse_ident(h, text, len, ident_path, err, errlen)) {
        free(text);
        hba_unref(h);
        return NULL;
    }
    free(text);
    return h;
}

/* --- lookups ----------------------------------------------------------------- */

static bool names_match(const namelist *l, const char *s, const char *user, bool db, bool repl)
{
    for (size_t i = 0; i < l->n; i++) {
        const hba_name *n = &l->v[i];
        /* A replication connection matches the "replication" keyword only. */
        if (db && repl) {
            if (n->kind == N_REPLICATION) return true;
            continue;
        }
        switch (n->kind) {
        case N_ALL:
            return true;
        case N_SAMEUSER:
            if (!strcmp(s, user)) return true;
            break;
        case N_NAME:
            if (!strcmp(s, n->s)) return true;
            break;
        case N_REGEX:
            if (!regexec(n->re, s, 0, NULL, 0)) return true;
            break;
        default:
            break;
        }
    }
    return false;
}

bool hba_match(const hba *h, const hba_login *q, hba_rule_info *out)
{
    for (size_t i = 0; h && i < h->nrules; i++) {
        const rule *r = &h->rules[i];
        switch (r->type) {
        case T_LOCAL:
            if (!q->local) continue;
            break;
        case T_HOST:
        case T_HOSTNOGSSENC: /* weir has no GSS encryption */
            if (q->local) continue;
            break;
        case T_HOSTSSL:
            if (q->local || !q->tls) continue;
            break;
        case T_HOSTNOSSL:
            if (q->local || q->tls) continue;
            break;
        default: /* hostgssenc */
            continue;
        }
        if (r->type != T_LOCAL && r->addr_kind == A_NET) {
            if (q->family != r->family) continue;
            int n = r->family == AF_INET ? 4 : 16;
            bool ok = true;
            for (int k = 0; k < n && ok; k++) ok = (q->addr[k] & r->mask[k]) == r->addr[k];
            if (!ok) continue;
        }
        if (!names_match(&r->dbs, q->db, q->user, true, q->replication)) continue;
        if (!names_match(&r->users, q->user, q->user, false, false)) continue;
        out->line = r->line;
        out->method = r->method;
        out->method_name = r->method_name;
        out->map = r->map ? r->map : "";
        out->clientcert = r->clientcert;
        return true;
    }
    return false;
}

bool hba_ident_match(const hba *h, const char *map, const char *sys, const char *user)
{
    for (size_t i = 0; h && i < h->nids; i++) {
        const ident_ent *en = &h->ids[i];
        if (strcmp(en->map, map)) continue;
        if (!en->re) {
            if (strcmp(en->sys, sys)) continue;
            if (en->user_all || !strcmp(en->user, user)) return true;
            continue;
        }
        regmatch_t m[2];
        if (regexec(en->re, sys, 2, m, 0)) continue;
        if (en->user_all) return true;
        const char *sub = strstr(en->user, "\\1");
        if (!sub) {
            if (!strcmp(en->user, user)) return true;
            continue;
        }
        /* \1: what the first group caught (the first \1 only, as PostgreSQL) */
        if (m[1].rm_so < 0) continue;
        size_t pre = (size_t)(sub - en->user), glen = (size_t)(m[1].rm_eo - m[1].rm_so);
        size_t ulen = strlen(user);
        if (ulen < pre || strncmp(user, en->user, pre)) continue;
        if (ulen - pre < glen || strncmp(user + pre, sys + m[1].rm_so, glen)) continue;
        if (!strcmp(user + pre + glen, sub + 2)) return true;
    }
    return false;
}
