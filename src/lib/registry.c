/* registry.c — pools by normalised URL, with references and a janitor. */
#include "internal.h"
#include "weir/weir_registry.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "scheme.h"

#define URL_MAX 1024

typedef struct entry {
    char key[URL_MAX];
    weir_pool *pool;
    int refs;
    int64_t last_acquires;
    int64_t idle_since_ms; /* when it was last seen unused */
} entry;

struct weir_registry {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_condattr_t cattr;
    entry *e;
    size_t n, cap;
    weir_options defaults;
    int64_t unused_close_ms;
    bool stopping;
    pthread_t janitor;
    bool janitor_started;
};

/* The scheme called name (by its name or alias), or NULL. */
static const weir__scheme *scheme_named(const char *name, size_t n)
{
    for (const weir__scheme *const *s = weir__schemes; *s; s++)
        if ((strlen((*s)->name) == n && !strncasecmp((*s)->name, name, n)) ||
            ((*s)->alias && strlen((*s)->alias) == n && !strncasecmp((*s)->alias, name, n)))
            return *s;
    return NULL;
}

int weir_url_normalize(const char *url, char *out, size_t len, char *err, size_t errlen)
{
    if (!url || !out) return WEIR_EINVAL;
    const char *sep = strstr(url, "://");
    if (!sep || sep == url) {
        /* not echoed: without a scheme we cannot tell where a password is */
        if (err && errlen) snprintf(err, errlen, "not a URL (expected scheme://...)");
        return WEIR_EINVAL;
    }
    size_t sl = (size_t)(sep - url);
    const weir__scheme *sc = sl < 32 ? scheme_named(url, sl) : NULL;
    if (!sc) {
        if (err && errlen) {
            int o = snprintf(err, errlen,
                             "unknown scheme \"%.*s\" (known:", (int)(sl < 32 ? sl : 32), url);
            for (const weir__scheme *const *s = weir__schemes; *s && o >= 0 && (size_t)o < errlen;
                 s++) {
                o += snprintf(err + o, errlen - (size_t)o, "%s %s://",
                              s == weir__schemes ? "" : ",", (*s)->name);
                if ((*s)->alias && (size_t)o < errlen)
                    o += snprintf(err + o, errlen - (size_t)o, ", %s://", (*s)->alias);
            }
            if (o >= 0 && (size_t)o < errlen)
                snprintf(err + o, errlen - (size_t)o, "%s)", weir__schemes[0] ? "" : " none");
        }
        return WEIR_EINVAL;
    }
    char tmp[256];
    if (!err) err = tmp, errlen = sizeof tmp;
    return sc->normalize(url, sep + 3, out, len, err, errlen);
}

static weir_pool **all_pools(weir_registry *r, size_t *n) /* under the lock */
{
    weir_pool **v = malloc(sizeof *v * (r->n ? r->n : 1));
    *n = 0;
    if (v)
        for (size_t i = 0; i < r->n; i++) v[(*n)++] = r->e[i].pool;
    return v;
}

static void *janitor_main(void *arg)
{
    weir_registry *r = arg;
    pthread_mutex_lock(&r->mu);
    while (!r->stopping) {
        int64_t period = r->unused_close_ms / 4;
        if (period > 1000) period = 1000;
        if (period < 10) period = 10;
        int64_t wake = weir_now_ns() + period * 1000000;
        struct timespec ts = {wake / 1000000000, wake % 1000000000};
        pthread_cond_timedwait(&r->cv, &r->mu, &ts);
        if (r->stopping) break;
        int64_t now = weir_now_ms();
        for (size_t i = 0; i < r->n;) {
            entry *e = &r->e[i];
            weir_pool_stats st;
            if (weir_pool_stats_get(e->pool, &st) != 0) {
                i++;
                continue;
            }
            bool used = e->refs > 0 || st.active > 0 || st.waiters > 0 ||
                        st.acquires_total != e->last_acquires;
            e->last_acquires = st.acquires_total;
            if (used) {
                e->idle_since_ms = now;
                i++;
                continue;
            }
            if (now - e->idle_since_ms < r->unused_close_ms) {
                i++;
                continue;
            }
            weir_pool *p = e->pool;
            r->e[i] = r->e[--r->n]; /* forget it, then close it unlocked */
            pthread_mutex_unlock(&r->mu);
            weir__log(p, WEIR_LOG_INFO, "registry: closing pool %s, unused for %lld ms",
                      weir_pool_name(p), (long long)r->unused_close_ms);
            weir_pool_destroy(p);
            pthread_mutex_lock(&r->mu);
        }
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

int weir_registry_create(weir_registry **out, const weir_options *defaults, int64_t unused_close_ms)
{
    if (!out || unused_close_ms < 0) return WEIR_EINVAL;
    *out = NULL;
    weir_registry *r = calloc(1, sizeof *r);
    if (!r) return WEIR_ENOMEM;
    if (defaults)
        r->defaults = *defaults;
    else
        weir_options_init(&r->defaults);
    r->unused_close_ms = unused_close_ms;
    pthread_mutex_init(&r->mu, NULL);
    pthread_condattr_init(&r->cattr);
    pthread_condattr_setclock(&r->cattr, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &r->cattr);
    if (unused_close_ms > 0) {
        if (pthread_create(&r->janitor, NULL, janitor_main, r) != 0) {
            weir_registry_destroy(r);
            return WEIR_ENOMEM;
        }
        r->janitor_started = true;
    }
    *out = r;
    return 0;
}

void weir_registry_destroy(weir_registry *r)
{
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (r->janitor_started) pthread_join(r->janitor, NULL);
    for (size_t i = 0; i < r->n; i++) weir_pool_destroy(r->e[i].pool);
    free(r->e);
    pthread_cond_destroy(&r->cv);
    pthread_condattr_destroy(&r->cattr);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static entry *find(weir_registry *r, const char *key)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->e[i].key, key) == 0) return &r->e[i];
    return NULL;
}

/* Make the pool for a normalised key (outside the registry's lock). */
static int make_pool(weir_registry *r, const char *key, weir_pool **out, char *err, size_t errlen)
{
    weir_options o = r->defaults;
    weir_mask_credentials(key, o.name, sizeof o.name);
    char tmp[256];
    if (!err) err = tmp, errlen = sizeof tmp;
    const char *sep = strstr(key, "://");
    const weir__scheme *sc = sep ? scheme_named(key, (size_t)(sep - key)) : NULL;
    if (!sc) return WEIR_EINVAL; /* keys come from weir_url_normalize */
    return sc->make(key, &o, out, err, errlen);
}

int weir_registry_acquire(weir_registry *r, const char *url, weir_pool **out, char *err,
                          size_t errlen)
{
    if (!r || !out) return WEIR_EINVAL;
    *out = NULL;
    char key[URL_MAX];
    int rc = weir_url_normalize(url, key, sizeof key, err, errlen);
    if (rc) return rc;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        if (r->stopping) {
            pthread_mutex_unlock(&r->mu);
            return WEIR_ECLOSED;
        }
        entry *e = find(r, key);
        if (e) {
            e->refs++;
            *out = e->pool;
            pthread_mutex_unlock(&r->mu);
            return 0;
        }
        /* create outside the lock; if another thread won the race, use its pool */
        pthread_mutex_unlock(&r->mu);
        weir_pool *p;
        rc = make_pool(r, key, &p, err, errlen);
        if (rc) return rc == WEIR_ENOMEM ? rc : WEIR_EINVAL;
        pthread_mutex_lock(&r->mu);
        if (find(r, key)) {
            pthread_mutex_unlock(&r->mu);
            weir_pool_destroy(p);
            pthread_mutex_lock(&r->mu);
            continue;
        }
        if (r->n == r->cap) {
            size_t ncap = r->cap ? r->cap * 2 : 8;
            entry *ne = realloc(r->e, ncap * sizeof *ne);
            if (!ne) {
                pthread_mutex_unlock(&r->mu);
                weir_pool_destroy(p);
                return WEIR_ENOMEM;
            }
            r->e = ne;
            r->cap = ncap;
        }
        entry *ne = &r->e[r->n++];
        memset(ne, 0, sizeof *ne);
        snprintf(ne->key, sizeof ne->key, "%s", key);
        ne->pool = p;
        ne->refs = 1;
        ne->idle_since_ms = weir_now_ms();
        *out = p;
        pthread_mutex_unlock(&r->mu);
        return 0;
    }
}

void weir_registry_release(weir_registry *r, weir_pool *pool)
{
    if (!r || !pool) return;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n; i++)
        if (r->e[i].pool == pool && r->e[i].refs > 0) {
            r->e[i].refs--;
            r->e[i].idle_since_ms = weir_now_ms();
            break;
        }
    pthread_mutex_unlock(&r->mu);
}

int weir_registry_remove(weir_registry *r, const char *url)
{
    if (!r) return WEIR_EINVAL;
    char key[URL_MAX];
    int rc = weir_url_normalize(url, key, sizeof key, NULL, 0);
    if (rc) return rc;
    pthread_mutex_lock(&r->mu);
    entry *e = find(r, key);
    if (!e) {
        pthread_mutex_unlock(&r->mu);
        return WEIR_ENOTFOUND;
    }
    if (e->refs > 0) {
        pthread_mutex_unlock(&r->mu);
        return WEIR_EBUSY;
    }
    weir_pool *p = e->pool;
    *e = r->e[--r->n];
    pthread_mutex_unlock(&r->mu);
    weir_pool_destroy(p);
    return 0;
}

size_t weir_registry_count(weir_registry *r)
{
    if (!r) return 0;
    pthread_mutex_lock(&r->mu);
    size_t n = r->n;
    pthread_mutex_unlock(&r->mu);
    return n;
}

int weir_registry_foreach(weir_registry *r,
                          void (*fn)(weir_pool *, const weir_pool_stats *, void *), void *ud)
{
    if (!r || !fn) return WEIR_EINVAL;
    int n = 0;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n; i++) {
        weir_pool_stats st;
        if (weir_pool_stats_get(r->e[i].pool, &st) != 0) continue;
        fn(r->e[i].pool, &st, ud);
        n++;
    }
    pthread_mutex_unlock(&r->mu);
    return n;
}

char *weir_registry_prometheus(weir_registry *r, size_t *len)
{
    if (len) *len = 0;
    if (!r) return NULL;
    pthread_mutex_lock(&r->mu); /* pools stay alive while the page is written */
    size_t n;
    weir_pool **v = all_pools(r, &n);
    char *page = v ? weir_pools_prometheus(v, n, len) : NULL;
    pthread_mutex_unlock(&r->mu);
    free(v);
    return page;
}
