/* prep.c — named prepared statements across server connections (see prep.h). */
#include "pg/prep.h"

#include <ctype.h>
#include <inttypes.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_PREFIX "weir_"
#define NAME_MAX_   32 /* "weir_" and a uint64 */

/* --- the registry: one entry per distinct statement ---------------------- */

typedef struct ps_stmt {
    struct ps_stmt *next;
    uint64_t id, hash;
    int refs;     /* client names pointing here (under the registry's mu) */
    bool retired; /* out of the lookup: its plan went stale (see ps_server_msg) */
    uint32_t len; /* of body: the query, NUL, then the parameter types as Parse has them */
    uint8_t body[];
} ps_stmt;

struct ps_registry {
    pthread_mutex_t mu;
    ps_stmt **b;
    size_t nb, n;
    uint64_t next_id;
};

static uint64_t fnv(const void *p, size_t n)
{
    const uint8_t *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ull;
    }
    return h;
}

ps_registry *ps_registry_new(void)
{
    ps_registry *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->nb = 256;
    r->b = calloc(r->nb, sizeof *r->b);
    if (!r->b) {
        free(r);
        return NULL;
    }
    pthread_mutex_init(&r->mu, NULL);
    r->next_id = 1;
    return r;
}

void ps_registry_free(ps_registry *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->nb; i++)
        while (r->b[i]) {
            ps_stmt *s = r->b[i];
            r->b[i] = s->next;
            free(s);
        }
    free(r->b);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

size_t ps_registry_count(ps_registry *r)
{
    pthread_mutex_lock(&r->mu);
    size_t n = r->n;
    pthread_mutex_unlock(&r->mu);
    return n;
}

static void registry_grow(ps_registry *r)
{
    size_t nb = r->nb * 2;
    ps_stmt **b = calloc(nb, sizeof *b);
    if (!b) return; /* longer chains, still correct */
    for (size_t i = 0; i < r->nb; i++)
        while (r->b[i]) {
            ps_stmt *s = r->b[i];
            r->b[i] = s->next;
            s->next = b[s->hash & (nb - 1)];
            b[s->hash & (nb - 1)] = s;
        }
    free(r->b);
    r->b = b;
    r->nb = nb;
}

/* The entry for body, with one more reference; NULL: out of memory. */
static ps_stmt *intern(ps_registry *r, const uint8_t *body, uint32_t len)
{
    uint64_t h = fnv(body, len);
    pthread_mutex_lock(&r->mu);
    ps_stmt *s = r->b[h & (r->nb - 1)];
    while (s && !(s->hash == h && s->len == len && !memcmp(s->body, body, len))) s = s->next;
    if (!s) {
        s = malloc(sizeof *s + len);
        if (s) {
            s->id = r->next_id++;
            s->hash = h;
            s->refs = 0;
            s->retired = false;
            s->len = len;
            memcpy(s->body, body, len);
            if (r->n >= r->nb) registry_grow(r);
            s->next = r->b[h & (r->nb - 1)];
            r->b[h & (r->nb - 1)] = s;
            r->n++;
        }
    }
    if (s) s->refs++;
    pthread_mutex_unlock(&r->mu);
    return s;
}

static void release(ps_registry *r, ps_stmt *s)
{
    pthread_mutex_lock(&r->mu);
    if (--s->refs == 0) {
        if (!s->retired) {
            ps_stmt **pp = &r->b[s->hash & (r->nb - 1)];
            while (*pp != s) pp = &(*pp)->next;
            *pp = s->next;
            r->n--;
        }
        free(s);
    }
    pthread_mutex_unlock(&r->mu);
}

/* Take s out of the lookup: the next Parse of its text gets a new id, so a
 * new name on the server, prepared there afresh. Those holding s keep it. */
static void retire(ps_registry *r, ps_stmt *s)
{
    pthread_mutex_lock(&r->mu);
    if (!s->retired) {
        ps_stmt **pp = &r->b[s->hash & (r->nb - 1)];
        while (*pp != s) pp = &(*pp)->next;
        *pp = s->next;
        r->n--;
        s->retired = true;
    }
    pthread_mutex_unlock(&r->mu);
}

/* --- a server connection's cache: open addressing on the id -------------- */

/* One more reference to s (a server connection's cache keeps what it has
 * prepared alive, so a client preparing the same text later finds it). */
static void ref(ps_registry *r, ps_stmt *s)
{
    pthread_mutex_lock(&r->mu);
    s->refs++;
    pthread_mutex_unlock(&r->mu);
}

typedef struct slot {
    ps_stmt *st; /* NULL: empty; the slot holds a reference */
    uint64_t used;
} slot;

struct ps_cache {
    ps_registry *reg;
    slot *t;
    uint32_t cap, n; /* cap a power of two, n <= cap / 2 */
    uint64_t clock;
};

static uint32_t slot_of(const ps_cache *sc, uint64_t id)
{
    return (uint32_t)((id * 0x9E3779B97F4A7C15ull) >> 32) & (sc->cap - 1);
}

static slot *cache_find(ps_cache *sc, uint64_t id)
{
    if (!sc->cap) return NULL;
    for (uint32_t i = slot_of(sc, id);; i = (i + 1) & (sc->cap - 1)) {
        if (!sc->t[i].st) return NULL;
        if (sc->t[i].st->id == id) return &sc->t[i];
    }
}

/* Enter st, taking over the caller's reference. -1: out of memory (the
 * reference stays the caller's). */
static int cache_put(ps_cache *sc, ps_stmt *st, uint64_t used)
{
    if ((sc->n + 1) * 2 > sc->cap) {
        uint32_t cap = sc->cap ? sc->cap * 2 : 16;
        slot *t = calloc(cap, sizeof *t), *old = sc->t;
        if (!t) return -1;
        uint32_t ocap = sc->cap;
        sc->t = t;
        sc->cap = cap;
        sc->n = 0;
        for (uint32_t i = 0; i < ocap; i++)
            if (old[i].st) (void)cache_put(sc, old[i].st, old[i].used); /* fits: no growth */
        free(old);
    }
    uint32_t i = slot_of(sc, st->id);
    while (sc->t[i].st && sc->t[i].st != st) i = (i + 1) & (sc->cap - 1);
    if (sc->t[i].st) {
        release(sc->reg, st); /* already there */
    } else {
        sc->n++;
    }
    sc->t[i] = (slot){st, used};
    return 0;
}

/* Take id out; its reference goes to the caller. NULL: not there. */
static ps_stmt *cache_take(ps_cache *sc, uint64_t id)
{
    slot *s = cache_find(sc, id);
    if (!s) return NULL;
    ps_stmt *st = s->st;
    uint32_t i = (uint32_t)(s - sc->t), m = sc->cap - 1;
    sc->t[i].st = NULL;
    sc->n--;
    /* Backward shift: move later members of the run into the hole when their home allows. */
    for (uint32_t j = (i + 1) & m; sc->t[j].st; j = (j + 1) & m) {
        uint32_t home = slot_of(sc, sc->t[j].st->id);
        bool movable = i <= j ? (home <= i || home > j) : (home <= i && home > j);
        if (movable) {
            sc->t[i] = sc->t[j];
            sc->t[j].st = NULL;
            i = j;
        }
    }
    return st;
}

static uint64_t cache_oldest(const ps_cache *sc)
{
    uint64_t id = 0, best = UINT64_MAX;
    for (uint32_t i = 0; i < sc->cap; i++)
        if (sc->t[i].st && sc->t[i].used < best) {
            best = sc->t[i].used;
            id = sc->t[i].st->id;
        }
    return id;
}

void ps_cache_clear(ps_cache *sc)
{
    if (!sc) return;
    for (uint32_t i = 0; i < sc->cap; i++)
        if (sc->t[i].st) {
            release(sc->reg, sc->t[i].st);
            sc->t[i].st = NULL;
        }
    sc->n = 0;
}

void ps_cache_free(ps_cache *sc)
{
    if (!sc) return;
    ps_cache_clear(sc);
    free(sc->t);
    free(sc);
}

size_t ps_cache_count(const ps_cache *sc)
{
    return sc ? sc->n : 0;
}

/* --- a client: its names, and the replies it is owed ---------------------- */

typedef struct ps_name {
    struct ps_name *next;
    ps_stmt *st;
    uint64_t hash;
    /* A Parse that failed, or that PostgreSQL skipped (after an error,
     * before the Sync): kept, as PgBouncer keeps it, for drivers that take
     * it as done (psycopg does: a later Bind prepares it on the server
     * then); a new Parse of the name replaces it without a 42P05. */
    bool unconfirmed;
    char name[];
} ps_name;

enum {
    OP_PARSE, /* '1' */
    OP_BIND,  /* '2' */
    OP_DESC,  /* 'T' or 'n' (after 't' for a statement) */
    OP_EXEC,  /* 'C', 'I' or 's' */
    OP_CLOSE, /* '3' */
    OP_SYNC,  /* 'Z' */
    OP_QUERY, /* 'Z' (Query, FunctionCall) */
    OP_SYN,   /* weir's reply from here on: */
    OP_SYN_PARSE = OP_SYN,
    OP_SYN_CLOSE,
    OP_SYN_BIND,
    OP_SYN_NODATA,        /* Describe of the portal */
    OP_SYN_PARAMS_NODATA, /* Describe of the statement: no parameters, no rows */
    OP_SYN_CMD,           /* Execute: CommandComplete DEALLOCATE [ALL] (F_ALL) */
    OP_SYN_DEALLOC,       /* the same and ReadyForQuery (a simple query) */
};
#define F_DROP   1 /* a message weir added: hide its reply */
#define F_CACHED 2 /* a Parse that entered id in the cache: if it fails, take it out */
#define F_EVICT  4 /* a Close that took id out of the cache: if skipped, put it back */
#define F_ALL    8 /* DEALLOCATE ALL */

typedef struct ps_op {
    uint8_t kind, flags;
    uint64_t id;
    char *name;  /* a client's Parse: its name, forgotten if PostgreSQL does not carry it out */
    ps_stmt *st; /* F_EVICT: the statement closed (a reference), back in the cache if skipped */
} ps_op;

struct ps_client {
    /* First, in one cache line: what every transaction reads (the queue,
     * and what ps_client_plain looks at); with a thousand clients the
     * struct is seldom still in the cache. */
    ps_op *q; /* a ring: head, len, cap (a power of two); head back to 0 when it empties */
    uint32_t head, len, cap;
    /* DEALLOCATE sent with the extended protocol (as psycopg does): the
     * unnamed statement is one weir answers (0, or F_ALL | 1), and the
     * portal bound to it (malloc'd, or NULL). */
    uint8_t udealloc;
    /* An error came back before the client's Sync was here: PostgreSQL
     * skips what the client sends until that Sync, so weir passes it on
     * as it is and expects no answer to it. */
    bool skipping;
    bool has_dup; /* dup is set (dup[0] would say so, but dup is off this line) */
    char *dportal;
    uint64_t parse_c, parse_s, bind; /* ps_take_counts */
    /* (the first line ends here: ps_client_new aligns it) */
    ps_registry *reg;
    ps_name **b;
    size_t nb, n;
    uint64_t bytes, max_bytes; /* its statements' texts; max 0: no bound */
    /* A Parse of a name the client already has (PostgreSQL refuses it):
     * that name, for the log (ps_take_duplicate); "" none. */
    char dup[64];
};

_Static_assert(offsetof(ps_client, reg) <= 64, "a transaction's fields fit one cache line");

ps_client *ps_client_new(ps_registry *r, uint64_t max_bytes)
{
    ps_client *pc = aligned_alloc(64, (sizeof *pc + 63) / 64 * 64);
    if (!pc) return NULL;
    memset(pc, 0, sizeof *pc);
    pc->reg = r;
    pc->max_bytes = max_bytes;
    return pc;
}

uint64_t ps_client_bytes(const ps_client *pc)
{
    return pc->bytes;
}

uint64_t ps_client_max_bytes(const ps_client *pc)
{
    return pc->max_bytes;
}

static void name_remove_all(ps_client *pc);

void ps_client_free(ps_client *pc)
{
    if (!pc) return;
    name_remove_all(pc);
    free(pc->b);
    free(pc->dportal);
    ps_client_unlink(pc);
    free(pc->q);
    free(pc);
}

static void pop(ps_client *pc);

void ps_client_unlink(ps_client *pc)
{
    while (pc->len) pop(pc);
    pc->head = 0;
    pc->skipping = false;
}

bool ps_busy(const ps_client *pc)
{
    return pc->len > 0;
}

uint32_t ps_owed(const ps_client *pc)
{
    return pc->len;
}

size_t ps_client_count(const ps_client *pc)
{
    return pc->n;
}

static ps_name **name_slot(ps_client *pc, const char *name, uint64_t h)
{
    ps_name **pp = &pc->b[h & (pc->nb - 1)];
    while (*pp && !((*pp)->hash == h && !strcmp((*pp)->name, name))) pp = &(*pp)->next;
    return pp;
}

static ps_name *name_find(ps_client *pc, const char *name)
{
    if (!pc->nb) return NULL;
    return *name_slot(pc, name, fnv(name, strlen(name)));
}

/* What a name of length l for st counts against max_bytes. */
static uint64_t name_cost(const ps_stmt *st, size_t l)
{
    return (uint64_t)st->len + l;
}

/* 0, -1 (no memory) or PS_TOO_MUCH (over max_bytes: nothing added). */
static int name_add(ps_client *pc, const char *name, ps_stmt *st)
{
    size_t l = strlen(name);
    uint64_t cost = name_cost(st, l);
    if (pc->max_bytes && pc->bytes + cost > pc->max_bytes) return PS_TOO_MUCH;
    if (pc->n >= pc->nb) {
        size_t nb = pc->nb ? pc->nb * 2 : 16;
        ps_name **b = calloc(nb, sizeof *b);
        if (!b) return -1;
        for (size_t i = 0; i < pc->nb; i++)
            while (pc->b[i]) {
                ps_name *e = pc->b[i];
                pc->b[i] = e->next;
                e->next = b[e->hash & (nb - 1)];
                b[e->hash & (nb - 1)] = e;
            }
        free(pc->b);
        pc->b = b;
        pc->nb = nb;
    }
    ps_name *e = malloc(sizeof *e + l + 1);
    if (!e) return -1;
    e->st = st;
    e->unconfirmed = false;
    e->hash = fnv(name, l);
    memcpy(e->name, name, l + 1);
    e->next = pc->b[e->hash & (pc->nb - 1)];
    pc->b[e->hash & (pc->nb - 1)] = e;
    pc->n++;
    pc->bytes += cost;
    return 0;
}

static void name_remove(ps_client *pc, const char *name)
{
    if (!pc->nb) return;
    ps_name **pp = name_slot(pc, name, fnv(name, strlen(name)));
    ps_name *e = *pp;
    if (!e) return;
    *pp = e->next;
    pc->bytes -= name_cost(e->st, strlen(e->name));
    release(pc->reg, e->st);
    free(e);
    pc->n--;
}

static void name_remove_all(ps_client *pc)
{
    for (size_t i = 0; i < pc->nb; i++)
        while (pc->b[i]) {
            ps_name *e = pc->b[i];
            pc->b[i] = e->next;
            release(pc->reg, e->st);
            free(e);
        }
    pc->n = 0;
    pc->bytes = 0;
}

static int push_named(ps_client *pc, uint8_t kind, uint8_t flags, uint64_t id, const char *name)
{
    char *nm = NULL;
    if (name && !(nm = strdup(name))) return -1;
    if (pc->len == pc->cap) {
        uint32_t cap = pc->cap ? pc->cap * 2 : 16;
        ps_op *q = malloc(cap * sizeof *q);
        if (!q) {
            free(nm);
            return -1;
        }
        for (uint32_t i = 0; i < pc->len; i++) q[i] = pc->q[(pc->head + i) & (pc->cap - 1)];
        free(pc->q);
        pc->q = q;
        pc->cap = cap;
        pc->head = 0;
    }
    pc->q[(pc->head + pc->len) & (pc->cap - 1)] = (ps_op){kind, flags, id, nm, NULL};
    pc->len++;
    return 0;
}

static int push(ps_client *pc, uint8_t kind, uint8_t flags, uint64_t id)
{
    return push_named(pc, kind, flags, id, NULL);
}

static ps_op *head(ps_client *pc)
{
    return pc->len ? &pc->q[pc->head] : NULL;
}

static void pop(ps_client *pc)
{
    free(pc->q[pc->head].name);
    if (pc->q[pc->head].st) release(pc->reg, pc->q[pc->head].st);
    pc->head = (pc->head + 1) & (pc->cap - 1);
    if (--pc->len == 0) pc->head = 0; /* the next op in the same line as the last */
}

/* --- client messages ------------------------------------------------------ */

static int put_name(char *out, uint64_t id)
{
    return snprintf(out, NAME_MAX_, NAME_PREFIX "%" PRIu64, id);
}

/* A message of type t: parts concatenated as its body. */
static int put_parts(pq_buf *o, char t, const void *a, uint32_t na, const void *b, uint32_t nb,
                     const void *c, uint32_t nc)
{
    uint32_t n = na + nb + nc;
    if (pq_buf_reserve(o, n + 5)) return -1;
    uint8_t *p = o->p + o->end;
    *p = (uint8_t)t;
    pq_set32(p + 1, n + 4);
    p += 5;
    if (na) memcpy(p, a, na);
    if (nb) memcpy(p + na, b, nb);
    if (nc) memcpy(p + na + nb, c, nc);
    o->end += n + 5;
    return 0;
}

/* Room for one more statement in the cache: Close the least recently used. */
static int make_room(ps_client *pc, ps_cache *sc, uint32_t max, pq_buf *o)
{
    while (sc->n >= max && sc->n) {
        uint64_t id = cache_oldest(sc);
        char nm[NAME_MAX_];
        int l = put_name(nm, id);
        ps_stmt *st = cache_take(sc, id);
        if (put_parts(o, 'C', "S", 1, nm, (uint32_t)l + 1, NULL, 0) ||
            push(pc, OP_CLOSE, F_DROP | F_EVICT, id)) {
            release(pc->reg, st);
            return -1;
        }
        pc->q[(pc->head + pc->len - 1) & (pc->cap - 1)].st = st;
    }
    return 0;
}

/* st is being prepared on the server: the cache holds a reference. */
static int cache_enter(ps_client *pc, ps_cache *sc, ps_stmt *st)
{
    ref(pc->reg, st);
    if (!cache_put(sc, st, ++sc->clock)) return 0;
    release(pc->reg, st);
    return -1;
}

/* Make sure the server has st: if it lacks it, a Parse (op flags, and the
 * client's name if it is the client's own Parse). 1: a Parse was sent, 0:
 * the server has it, -1: out of memory. */
static int prepare_on(ps_client *pc, ps_cache *sc, uint32_t max, ps_stmt *st, uint8_t flags,
                      const char *name, pq_buf *o)
{
    slot *s = cache_find(sc, st->id);
    if (s) {
        s->used = ++sc->clock;
        return 0;
    }
    char nm[NAME_MAX_];
    int l = put_name(nm, st->id);
    if (make_room(pc, sc, max, o) || cache_enter(pc, sc, st) ||
        put_parts(o, 'P', nm, (uint32_t)l + 1, st->body, st->len, NULL, 0) ||
        push_named(pc, OP_PARSE, flags | F_CACHED, st->id, name))
        return -1;
    pc->parse_s++;
    return 1;
}

/* Before a Bind or Describe of st: a Parse whose reply is hidden, if needed. */
static int ensure(ps_client *pc, ps_cache *sc, uint32_t max, ps_stmt *st, pq_buf *o)
{
    return prepare_on(pc, sc, max, st, F_DROP, NULL, o) < 0 ? -1 : 0;
}

/* DEALLOCATE [PREPARE] { name | ALL } [;] as a whole query: 1 with *all or
 * the name (folded to lower case unless quoted) in out, else 0. */
static int parse_deallocate(const char *q, bool *all, char *out, size_t outlen)
{
    const char *p = q;
    while (isspace((unsigned char)*p)) p++;
    /* (the first letter alone turns away almost every query: this runs for each) */
    if ((*p | 0x20) != 'd' || strncasecmp(p, "deallocate", 10) || !isspace((unsigned char)p[10]))
        return 0;
    p += 10;
    while (isspace((unsigned char)*p)) p++;
    if (!strncasecmp(p, "prepare", 7) && isspace((unsigned char)p[7])) {
        p += 7;
        while (isspace((unsigned char)*p)) p++;
    }
    size_t n = 0;
    bool quoted = *p == '"';
    if (quoted) {
        for (p++;; p++) {
            if (!*p) return 0;
            if (*p == '"') {
                if (p[1] != '"') break;
                p++;
            }
            if (n + 1 >= outlen) return 0;
            out[n++] = *p;
        }
        p++;
    } else {
        while (isalnum((unsigned char)*p) || *p == '_' || *p == '$' || (unsigned char)*p >= 0x80) {
            if (n + 1 >= outlen) return 0;
            out[n++] = (char)tolower((unsigned char)*p);
            p++;
        }
    }
    out[n] = '\0';
    if (!n) return 0;
    while (isspace((unsigned char)*p)) p++;
    if (*p == ';') p++;
    while (isspace((unsigned char)*p)) p++;
    if (*p) return 0;
    *all = !quoted && !strcmp(out, "all");
    return 1;
}

#define DEALLOC_NAME 256
/* q is a DEALLOCATE of this client's statements: ALL (*all), or a name it
 * has (in name). Any other query, a DEALLOCATE of a name it has not (the
 * server's to refuse), or no query: false. */
static bool own_deallocate(ps_client *pc, const char *q, bool *all, char name[DEALLOC_NAME])
{
    return q && parse_deallocate(q, all, name, DEALLOC_NAME) && (*all || name_find(pc, name));
}

/* A Bind's header, portal and statement names and the nrest bytes of rest
 * into o; its length counts follow more bytes the caller passes after it.
 * 0, or -1: out of memory. */
static int put_bind(pq_buf *o, const char *portal, const char *name, const uint8_t *rest,
                    uint32_t nrest, uint32_t follow)
{
    uint32_t lp = (uint32_t)strlen(portal) + 1, ln = (uint32_t)strlen(name) + 1;
    if (pq_buf_reserve(o, 5 + lp + ln + nrest)) return -1;
    uint8_t *w = o->p + o->end;
    *w = 'B';
    pq_set32(w + 1, 4 + lp + ln + nrest + follow);
    memcpy(w + 5, portal, lp);
    memcpy(w + 5 + lp, name, ln);
    if (nrest) memcpy(w + 5 + lp + ln, rest, nrest);
    o->end += 5 + lp + ln + nrest;
    return 0;
}

/* A Bind of portal to statement name: rest (nrest bytes: its parameters and
 * formats) follows the names, and then follow more bytes that the caller
 * streams after it. 0: the Bind (rewritten) is in o, with the length for all
 * of it; 1: weir answers it itself, nothing is written (the caller drops
 * what follows); -1: out of memory. */
static int bind_msg(ps_client *pc, ps_cache *sc, uint32_t max, const char *portal, const char *name,
                    const uint8_t *rest, uint32_t nrest, uint32_t follow, pq_buf *o)
{
    if (pc->skipping) /* skipped by the server until the Sync: as it is */
        return put_bind(o, portal, name, rest, nrest, follow);
    if (pc->dportal && !strcmp(portal, pc->dportal)) {
        free(pc->dportal); /* that portal is bound anew */
        pc->dportal = NULL;
    }
    if (!*name && pc->udealloc) {
        /* one such portal is kept: a second one takes the first's place,
         * whose Execute then goes to the server (which has no such portal) */
        char *d = strdup(portal);
        if (!d) return -1;
        free(pc->dportal);
        pc->dportal = d;
        return push(pc, OP_SYN_BIND, 0, 0) ? -1 : 1;
    }
    ps_name *e = *name ? name_find(pc, name) : NULL;
    char nm[NAME_MAX_];
    if (e) {
        pc->bind++;
        if (ensure(pc, sc, max, e->st, o)) return -1;
        name = nm;
        put_name(nm, e->st->id);
    }
    if (push(pc, OP_BIND, 0, e ? e->st->id : 0)) return -1;
    return put_bind(o, portal, name, rest, nrest, follow);
}

int ps_client_bind_head(ps_client *pc, ps_cache **scp, uint32_t max, const uint8_t *head,
                        uint32_t nh, uint32_t len, pq_buf *o)
{
    if (!*scp) {
        if (!(*scp = calloc(1, sizeof **scp))) return -1;
        (*scp)->reg = pc->reg;
    }
    const uint8_t *p = head, *end = head + nh;
    const char *portal = pq_get_str(&p, end), *name = portal ? pq_get_str(&p, end) : NULL;
    if (!name || p != end || nh > len) return -1; /* the caller found the names */
    return bind_msg(pc, *scp, max ? max : 1, portal, name, NULL, 0, len - nh, o);
}

int ps_client_msg(ps_client *pc, ps_cache **scp, uint32_t max, char t, const uint8_t *body,
                  uint32_t len, pq_buf *o)
{
    if (!*scp) {
        if (!(*scp = calloc(1, sizeof **scp))) return -1;
        (*scp)->reg = pc->reg;
    }
    ps_cache *sc = *scp;
    if (!max) max = 1;
    if (pc->skipping) { /* the server skips it: as it is, no answer expected */
        if (t == 'P') { /* a named Parse is kept, unconfirmed (see ps_name) */
            const uint8_t *q = body, *qend = body + len;
            const char *name = pq_get_str(&q, qend);
            if (name && *name && !name_find(pc, name)) {
                ps_stmt *st = intern(pc->reg, q, (uint32_t)(qend - q));
                if (!st) return -1;
                int rc = name_add(pc, name, st);
                if (rc) {
                    release(pc->reg, st);
                    return rc;
                }
                name_find(pc, name)->unconfirmed = true;
            }
        }
        if (t != 'S') return put_parts(o, t, body, len, NULL, 0, NULL, 0);
        pc->skipping = false;
    }
    const uint8_t *p = body, *end = body + len;
    char nm[NAME_MAX_];
    switch (t) {
    case 'P': {
        const char *name = pq_get_str(&p, end);
        if (name && !*name) {
            const uint8_t *qp = p;
            const char *q = pq_get_str(&qp, end);
            bool all = false;
            char dn[DEALLOC_NAME];
            pc->udealloc = 0;
            if (own_deallocate(pc, q, &all, dn)) {
                if (all)
                    name_remove_all(pc);
                else
                    name_remove(pc, dn);
                pc->udealloc = (uint8_t)(1 | (all ? F_ALL : 0));
                return push(pc, OP_SYN_PARSE, 0, 0);
            }
        }
        if (!name || !*name) {
            if (push(pc, OP_PARSE, 0, 0)) return -1;
            break;
        }
        /* p: the query and parameter types, as the registry keeps them */
        pc->parse_c++;
        ps_name *e = name_find(pc, name);
        if (e && e->unconfirmed) { /* never really prepared: this Parse replaces it */
            name_remove(pc, name);
            e = NULL;
        }
        if (e) {
            /* Already exists: the server says so, naming weir's statement. */
            snprintf(pc->dup, sizeof pc->dup, "%s", name);
            pc->has_dup = true;
            if (ensure(pc, sc, max, e->st, o)) return -1;
            int l = put_name(nm, e->st->id);
            return put_parts(o, 'P', nm, (uint32_t)l + 1, e->st->body, e->st->len, NULL, 0) ||
                           push(pc, OP_PARSE, 0, 0)
                       ? -1
                       : 0;
        }
        ps_stmt *st = intern(pc->reg, p, (uint32_t)(end - p));
        if (!st) return -1;
        int added = name_add(pc, name, st);
        if (added) {
            release(pc->reg, st);
            return added;
        }
        /* Sent as weir's statement, or answered by weir if the server has it. */
        int rc = prepare_on(pc, sc, max, st, 0, name, o);
        return rc ? (rc < 0 ? -1 : 0) : push_named(pc, OP_SYN_PARSE, 0, 0, name);
    }
    case 'B': {
        const char *portal = pq_get_str(&p, end), *name = portal ? pq_get_str(&p, end) : NULL;
        if (!name) {
            if (push(pc, OP_BIND, 0, 0)) return -1;
            break; /* malformed: the server says so */
        }
        int rc = bind_msg(pc, sc, max, portal, name, p, (uint32_t)(end - p), 0, o);
        return rc < 0 ? -1 : 0;
    }
    case 'D':
    case 'C': {
        uint8_t op = t == 'D' ? OP_DESC : OP_CLOSE;
        if (len >= 2 && body[len - 1] == '\0') {
            const char *n = (const char *)body + 1;
            if (body[0] == 'P' && pc->dportal && !strcmp(n, pc->dportal)) {
                if (t == 'D') return push(pc, OP_SYN_NODATA, 0, 0);
                free(pc->dportal);
                pc->dportal = NULL;
                return push(pc, OP_SYN_CLOSE, 0, 0);
            }
            if (body[0] == 'S' && !*n && pc->udealloc) {
                if (t == 'D') return push(pc, OP_SYN_PARAMS_NODATA, 0, 0);
                pc->udealloc = 0;
                return push(pc, OP_SYN_CLOSE, 0, 0);
            }
        }
        if (len < 2 || body[0] != 'S') {
            if (push(pc, op, 0, 0)) return -1;
            break;
        }
        p = body + 1;
        const char *name = pq_get_str(&p, end);
        if (!name || !*name) {
            if (push(pc, op, 0, 0)) return -1;
            break;
        }
        ps_name *e = name_find(pc, name);
        if (t == 'C') {
            /* The server keeps it for others; closing an unknown name is no error. */
            name_remove(pc, name);
            return push(pc, OP_SYN_CLOSE, 0, 0);
        }
        if (!e) {
            if (push(pc, op, 0, 0)) return -1;
            break;
        }
        if (ensure(pc, sc, max, e->st, o)) return -1;
        int l = put_name(nm, e->st->id);
        return put_parts(o, 'D', "S", 1, nm, (uint32_t)l + 1, NULL, 0) || push(pc, op, 0, 0) ? -1
                                                                                             : 0;
    }
    case 'Q': {
        const char *q = pq_get_str(&p, end);
        bool all = false;
        char name[DEALLOC_NAME];
        if (own_deallocate(pc, q, &all, name)) {
            if (all)
                name_remove_all(pc);
            else
                name_remove(pc, name);
            return push(pc, OP_SYN_DEALLOC, all ? F_ALL : 0, 0);
        }
        if (push(pc, OP_QUERY, 0, 0)) return -1;
        break;
    }
    case 'E':
        if (pc->dportal && len > 0 && memchr(body, 0, len) &&
            !strcmp((const char *)body, pc->dportal))
            return push(pc, OP_SYN_CMD, pc->udealloc & F_ALL, 0);
        if (push(pc, OP_EXEC, 0, 0)) return -1;
        break;
    case 'S':
        if (push(pc, OP_SYNC, 0, 0)) return -1;
        break;
    default:
        break;
    }
    return put_parts(o, t, body, len, NULL, 0, NULL, 0);
}

/* Whether the message at p (type t, body of len bytes) is plain: unnamed,
 * no DEALLOCATE of a name this client has, nothing weir answers itself.
 * Only while the client is in the plain state (ps_client_plain). */
static bool plain_msg(ps_client *pc, char t, const uint8_t *body, uint32_t len)
{
    const uint8_t *p = body, *end = body + len;
    switch (t) {
    case 'P': {
        const char *name = pq_get_str(&p, end), *q = name ? pq_get_str(&p, end) : NULL;
        if (!q || *name) return false;
        bool all = false;
        char dn[DEALLOC_NAME];
        return !own_deallocate(pc, q, &all, dn);
    }
    case 'B': {
        const char *portal = pq_get_str(&p, end), *name = portal ? pq_get_str(&p, end) : NULL;
        return name && !*name;
    }
    case 'D': /* a portal, or the unnamed statement */
        return len >= 2 && body[len - 1] == '\0' &&
               (body[0] == 'P' || (body[0] == 'S' && !body[1]));
    case 'E':
    case 'H':
        return true;
    default:
        return false;
    }
}

int ps_client_plain(ps_client *pc, const uint8_t *p, uint32_t n, uint32_t max_len, uint32_t *used)
{
    if (pc->skipping || pc->dportal || pc->udealloc) return 0;
    uint32_t o = 0;
    while (n - o >= 5) {
        char t = (char)p[o];
        uint32_t len = pq_get32(p + o + 1);
        if (len < 4 || len > max_len || n - o - 1 < len) return 0;
        if (t == 'Q' && o == 0) { /* a simple query on its own: as ps_client_msg passes it */
            const uint8_t *b = p + 5, *e = p + 1 + len;
            bool all = false;
            char dn[DEALLOC_NAME];
            if (own_deallocate(pc, pq_get_str(&b, e), &all, dn)) return 0;
            if (push(pc, OP_QUERY, 0, 0)) return -1;
            *used = 1 + len;
            return 1;
        }
        if (t == 'S') {
            if (push(pc, OP_SYNC, 0, 0)) return -1;
            *used = o + 1 + len;
            return 1;
        }
        if (!plain_msg(pc, t, p + o + 5, len - 4)) return 0;
        o += 1 + len;
    }
    return 0;
}

void ps_take_counts(ps_client *pc, uint64_t *parse_c, uint64_t *parse_s, uint64_t *bind)
{
    *parse_c = pc->parse_c;
    *parse_s = pc->parse_s;
    *bind = pc->bind;
    pc->parse_c = pc->parse_s = pc->bind = 0;
}

int ps_client_other(ps_client *pc, char t)
{
    if (pc->skipping) return 0; /* skipped by the server until the Sync */
    /* 'Q' here is a long simple query passed through without a look inside. */
    return t == 'F' || t == 'Q' ? push(pc, OP_QUERY, 0, 0) : 0;
}

/* --- server messages ------------------------------------------------------ */

static bool terminal(uint8_t kind, char t)
{
    switch (kind) {
    case OP_PARSE:
        return t == '1';
    case OP_BIND:
        return t == '2';
    case OP_DESC:
        return t == 'T' || t == 'n';
    case OP_EXEC:
        return t == 'C' || t == 'I' || t == 's';
    case OP_CLOSE:
        return t == '3';
    default:
        return t == 'Z';
    }
}

/* An op PostgreSQL did not carry out (it failed, or was skipped after an error). */
static void undo(ps_client *pc, ps_cache *sc, ps_op *op)
{
    if (op->name) { /* the client's Parse failed or was skipped: kept, unconfirmed (ps_name) */
        ps_name *e = name_find(pc, op->name);
        if (e) e->unconfirmed = true;
    }
    if (!sc) return;
    if (op->kind == OP_PARSE && (op->flags & F_CACHED)) {
        ps_stmt *st = cache_take(sc, op->id);
        if (st) release(pc->reg, st);
    } else if (op->kind == OP_CLOSE && (op->flags & F_EVICT) && op->st) {
        /* still on the server: back in, the first to go next time */
        if (!cache_put(sc, op->st, 0)) op->st = NULL;
    }
}

/* An ErrorResponse saying a prepared statement's result type changed under
 * it (a table it reads was altered): 0A000 from RevalidateCachedQuery, or by
 * its English text where the routine is not sent. PostgreSQL keeps failing
 * that statement until it is prepared again, which a driver does by Close
 * and Parse; weir, which shares the statement, would answer that Parse from
 * its registry and the failure would go on for everyone. */
static bool stale_plan(const uint8_t *body, uint32_t len)
{
    const uint8_t *p = body, *end = body + len;
    bool code = false, where = false;
    while (p < end && *p) {
        char f = (char)*p++;
        const char *v = pq_get_str(&p, end);
        if (!v) return false;
        if (f == 'C')
            code = !strcmp(v, "0A000");
        else if (f == 'R' && !strcmp(v, "RevalidateCachedQuery"))
            where = true;
        else if (f == 'M' && !strcmp(v, "cached plan must not change result type"))
            where = true;
    }
    return code && where;
}

bool ps_due_now(const ps_client *pc)
{
    return pc->len && pc->q[pc->head].kind >= OP_SYN;
}

/* (this runs for every message a server sends: a row or a description that
 * ends nothing returns at the third test) */
int ps_server_reply(ps_client *pc, ps_cache *sc, char t, const uint8_t *body, uint32_t len)
{
    /* (the lengths first: this runs for every CommandComplete) */
    if (t == 'C' && body &&
        ((len == sizeof "DISCARD ALL" && !memcmp(body, "DISCARD ALL", len)) ||
         (len == sizeof "DEALLOCATE ALL" && !memcmp(body, "DEALLOCATE ALL", len)))) {
        if (sc) ps_cache_clear(sc);
        /* the client's own command: its statements are gone, as on
         * PostgreSQL (a later Bind of one is "does not exist") */
        name_remove_all(pc);
    }
    ps_op *op = head(pc);
    if (!op) return PS_KEEP;
    if (op->kind >= OP_SYN) return PS_KEEP | PS_DUE;
    if (t == 'E') {
        if (op->kind == OP_SYNC || op->kind == OP_QUERY) return PS_KEEP;
        if (op->kind == OP_BIND && op->id && sc && body && stale_plan(body, len)) {
            slot *s = cache_find(sc, op->id);
            if (s) retire(pc->reg, s->st);
        }
        /* PostgreSQL skips everything up to the next Sync, weir's replies included. */
        do {
            undo(pc, sc, op);
            pop(pc);
        } while ((op = head(pc)) && op->kind != OP_SYNC);
        if (!op) pc->skipping = true; /* its Sync has not come yet */
        return PS_KEEP | (ps_due_now(pc) ? PS_DUE : 0);
    }
    if (!terminal(op->kind, t)) return PS_KEEP;
    bool keep = !(op->flags & F_DROP);
    pop(pc);
    return (keep ? PS_KEEP : 0) | (ps_due_now(pc) ? PS_DUE : 0);
}

bool ps_server_msg(ps_client *pc, ps_cache *sc, char t, const uint8_t *body, uint32_t len)
{
    return ps_server_reply(pc, sc, t, body, len) & PS_KEEP;
}

int ps_due(ps_client *pc, char txn, pq_buf *out, int *nrfq)
{
    *nrfq = 0;
    ps_op *op;
    while ((op = head(pc)) && op->kind >= OP_SYN) {
        int rc = 0;
        switch (op->kind) {
        case OP_SYN_PARSE:
            rc = pq_put_msg(out, '1', NULL, 0);
            break;
        case OP_SYN_CLOSE:
            rc = pq_put_msg(out, '3', NULL, 0);
            break;
        case OP_SYN_BIND:
            rc = pq_put_msg(out, '2', NULL, 0);
            break;
        case OP_SYN_NODATA:
            rc = pq_put_msg(out, 'n', NULL, 0);
            break;
        case OP_SYN_PARAMS_NODATA:
            rc = pq_put_msg(out, 't', "\0\0", 2) || pq_put_msg(out, 'n', NULL, 0);
            break;
        default: {
            const char *tag = op->flags & F_ALL ? "DEALLOCATE ALL" : "DEALLOCATE";
            rc = pq_put_msg(out, 'C', tag, (uint32_t)strlen(tag) + 1);
            if (!rc && op->kind == OP_SYN_DEALLOC) {
                rc = pq_put_ready(out, txn);
                (*nrfq)++;
            }
        }
        }
        if (rc) return -1;
        pop(pc);
    }
    return 0;
}

bool ps_take_duplicate(ps_client *pc, char *name, size_t n)
{
    if (!pc || !pc->has_dup) return false;
    snprintf(name, n, "%s", pc->dup);
    pc->has_dup = false;
    return true;
}
