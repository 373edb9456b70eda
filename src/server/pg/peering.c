/* peering.c — cancel requests forwarded between peered processes (see peering.h). */
#include "pg/peering.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "pg/backend.h"

#define TTL_MASK 0x03u

/* Byte i of the 8-byte key (process id, then secret, big-endian). */
void peer_stamp(int peer_id, uint32_t *pid, uint32_t *key)
{
    uint32_t id = (uint32_t)peer_id;
    *pid = (*pid & 0x7f0000ffu) | (id & 0xffu) << 16 | (id >> 8 & 0xffu) << 8;
    *key |= TTL_MASK; /* forwarded at most three times */
}

int peer_id_of(uint32_t pid)
{
    return (int)((pid >> 16 & 0xffu) | (pid >> 8 & 0xffu) << 8);
}

/* How busy forwarding to one peer is (kept across reloads, by id). */
typedef struct peer_load_s {
    int id, active, waiting;
} peer_load_s;

struct peering {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    peer_load_s *v;
    size_t n;
};

static pthread_mutex_t init_mu = PTHREAD_MUTEX_INITIALIZER;

static struct peering *state(server *s)
{
    pthread_mutex_lock(&init_mu);
    if (!s->peering && (s->peering = calloc(1, sizeof *s->peering))) {
        pthread_mutex_init(&s->peering->mu, NULL);
        pthread_condattr_t a;
        pthread_condattr_init(&a);
        pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
        pthread_cond_init(&s->peering->cv, &a);
        pthread_condattr_destroy(&a);
    }
    struct peering *p = s->peering;
    pthread_mutex_unlock(&init_mu);
    return p;
}

/* The entry for id, made if missing (under mu). NULL: out of memory. */
static peer_load_s *load_of(struct peering *p, int id)
{
    for (size_t i = 0; i < p->n; i++)
        if (p->v[i].id == id) return &p->v[i];
    peer_load_s *v = realloc(p->v, (p->n + 1) * sizeof *v);
    if (!v) return NULL;
    p->v = v;
    p->v[p->n] = (peer_load_s){.id = id};
    return &p->v[p->n++];
}

typedef struct fwd {
    server *s;
    int id, pool_size;
    char host[CFG_STR];
    int port;
    uint32_t pid, key;
    int64_t wait_ms;
} fwd;

static void *forward_thread(void *arg)
{
    fwd *f = arg;
    server *s = f->s;
    struct peering *p = state(s);
    bool go = false;
    if (p) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += f->wait_ms / 1000;
        until.tv_nsec += (long)(f->wait_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&p->mu);
        peer_load_s *l = load_of(p, f->id);
        if (l) {
            l->waiting++;
            int rc = 0;
            while (l->active >= f->pool_size && rc != ETIMEDOUT) {
                rc = pthread_cond_timedwait(&p->cv, &p->mu, &until);
                l = load_of(p, f->id); /* the array may have moved */
            }
            l->waiting--;
            if (l->active < f->pool_size) {
                l->active++;
                go = true;
            }
        }
        pthread_mutex_unlock(&p->mu);
    }
    if (!go) {
        srv_log(s, "WARNING", "could not forward cancel request to peer %d: %s", f->id,
                p ? "too many cancel requests in flight to it" : "out of memory");
    } else {
        int rc = be_cancel(f->host, f->port, f->pid, f->key, 10000);
        if (rc)
            srv_log(s, "WARNING", "could not forward cancel request to peer %d at %s:%d", f->id,
                    f->host, f->port);
        pthread_mutex_lock(&p->mu);
        load_of(p, f->id)->active--; /* exists: made above, never removed */
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    atomic_fetch_sub(&s->cancels_inflight, 1);
    free(f);
    return NULL;
}

bool peer_route_cancel(server *s, uint32_t pid, uint32_t *key)
{
    int me = s->cfg.peer_id;
    if (me <= 0) return false;
    int id = peer_id_of(pid);
    if (id == me) {
        *key |= TTL_MASK; /* as stored: the TTL bits were spent on the way */
        return false;
    }
    if (!(*key & TTL_MASK)) {
        srv_log(s, "LOG", "failed to forward cancel request because its TTL was exhausted");
        return true;
    }
    const cfg_peer *pe = cfg_find_peer(&s->cfg, id);
    if (!pe) {
        srv_log(s, "LOG", "could not find peer to forward request to (peer_id %d)", id);
        return true;
    }
    fwd *f = malloc(sizeof *f);
    if (!f) return true;
    *f = (fwd){.s = s,
               .id = id,
               .pool_size = pe->pool_size > 0 ? pe->pool_size : s->cfg.default_pool_size,
               .port = pe->port,
               .pid = pid,
               .key = *key - 1, /* one hop spent */
               .wait_ms = s->cfg.cancel_wait_timeout > 0 ? s->cfg.cancel_wait_timeout : 10000};
    if (f->pool_size < 1) f->pool_size = 1;
    snprintf(f->host, sizeof f->host, "%s", pe->host);
    atomic_fetch_add(&s->cancels_inflight, 1);
    pthread_t th;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &a, forward_thread, f)) {
        atomic_fetch_sub(&s->cancels_inflight, 1);
        free(f);
        srv_log(s, "WARNING", "could not forward cancel request to peer %d: no thread", id);
    }
    pthread_attr_destroy(&a);
    return true;
}

void peer_load(server *s, int id, int *active, int *waiting)
{
    *active = *waiting = 0;
    struct peering *p = state(s);
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->n; i++)
        if (p->v[i].id == id) {
            *active = p->v[i].active;
            *waiting = p->v[i].waiting;
        }
    pthread_mutex_unlock(&p->mu);
}

void peer_free(server *s)
{
    if (!s->peering) return;
    pthread_mutex_destroy(&s->peering->mu);
    pthread_cond_destroy(&s->peering->cv);
    free(s->peering->v);
    free(s->peering);
    s->peering = NULL;
}
