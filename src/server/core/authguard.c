/* authguard.c — back-off for failed logins (authguard.h has the rules).
 *
 * A fixed table of entries ("u:" user or "a:" address), open-addressed by
 * hash with a short probe; when the probe finds no room, the entry with the
 * oldest failure in it is replaced. One mutex guards it all: it is taken
 * once per login attempt, never on the query path.
 */
#include "core/authguard.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS  4096
#define PROBE  8
#define KEYLEN 72
#define FORGET 600000 /* ms without a failure */

typedef struct entry {
    char key[KEYLEN];
    int fails;     /* in a row */
    int64_t last;  /* ms of the last failure */
    int64_t until; /* refused until */
} entry;

struct authguard {
    pthread_mutex_t mu;
    uint64_t failed, refused;
    entry e[SLOTS];
};

static const struct {
    char kind;
    int after;
    int64_t first, max;
} rule[2] = {{'u', 20, 1000, 5000}, {'a', 5, 1000, 60000}};

authguard *authguard_new(void)
{
    authguard *g = calloc(1, sizeof *g);
    if (g) pthread_mutex_init(&g->mu, NULL);
    return g;
}

void authguard_free(authguard *g)
{
    if (!g) return;
    pthread_mutex_destroy(&g->mu);
    free(g);
}

static unsigned hash(const char *k)
{
    unsigned h = 2166136261u;
    for (; *k; k++) h = (h ^ (unsigned char)*k) * 16777619u;
    return h;
}

/* The entry for key, or NULL; with make, a fresh or reused one. Under mu. */
static entry *find(authguard *g, const char *key, bool make, int64_t now)
{
    unsigned h = hash(key);
    entry *victim = NULL;
    for (int i = 0; i < PROBE; i++) {
        entry *e = &g->e[(h + (unsigned)i) % SLOTS];
        if (e->key[0] && !strcmp(e->key, key)) {
            if (now - e->last > FORGET && e->until <= now) e->fails = 0;
            return e;
        }
        if (!victim || !e->key[0] || (victim->key[0] && e->last < victim->last)) victim = e;
    }
    if (!make) return NULL;
    memset(victim, 0, sizeof *victim);
    snprintf(victim->key, sizeof victim->key, "%s", key);
    return victim;
}

static void keyof(char *out, char kind, const char *name)
{
    snprintf(out, KEYLEN, "%c:%.*s", kind, KEYLEN - 3, name ? name : "");
}

bool authguard_allow(authguard *g, const char *user, const char *peer, int64_t now,
                     int64_t *retry_ms)
{
    if (!g) return true;
    const char *names[2] = {user, peer};
    int64_t wait = 0;
    pthread_mutex_lock(&g->mu);
    for (int r = 0; r < 2; r++) {
        if (!names[r] || !names[r][0]) continue;
        char k[KEYLEN];
        keyof(k, rule[r].kind, names[r]);
        entry *e = find(g, k, false, now);
        if (e && e->until > now && e->until - now > wait) wait = e->until - now;
    }
    if (wait) g->refused++;
    pthread_mutex_unlock(&g->mu);
    *retry_ms = wait;
    return wait == 0;
}

void authguard_failed(authguard *g, const char *user, const char *peer, int64_t now)
{
    if (!g) return;
    const char *names[2] = {user, peer};
    pthread_mutex_lock(&g->mu);
    g->failed++;
    for (int r = 0; r < 2; r++) {
        if (!names[r] || !names[r][0]) continue;
        char k[KEYLEN];
        keyof(k, rule[r].kind, names[r]);
        entry *e = find(g, k, true, now);
        e->fails++;
        e->last = now;
        if (e->fails >= rule[r].after) {
            int n = e->fails - rule[r].after; /* doublings */
            int64_t w = rule[r].first;
            while (n-- > 0 && w < rule[r].max) w *= 2;
            if (w > rule[r].max) w = rule[r].max;
            e->until = now + w;
        }
    }
    pthread_mutex_unlock(&g->mu);
}

void authguard_passed(authguard *g, const char *user, const char *peer)
{
    if (!g) return;
    const char *names[2] = {user, peer};
    pthread_mutex_lock(&g->mu);
    for (int r = 0; r < 2; r++) {
        if (!names[r] || !names[r][0]) continue;
        char k[KEYLEN];
        keyof(k, rule[r].kind, names[r]);
        entry *e = find(g, k, false, 0);
        if (e) memset(e, 0, sizeof *e);
    }
    pthread_mutex_unlock(&g->mu);
}

void authguard_counts(authguard *g, uint64_t *failed, uint64_t *refused)
{
    *failed = *refused = 0;
    if (!g) return;
    pthread_mutex_lock(&g->mu);
    *failed = g->failed;
    *refused = g->refused;
    pthread_mutex_unlock(&g->mu);
}
