/* weir_registry.h — pools by URL.
 *
 * A registry makes one pool per normalised URL and hands out references to
 * it. The scheme picks the driver: postgres:// or postgresql:// (libpq),
 * sqlite:///absolute/path (a read-write SQLite pool; add ?create=1 to create
 * the file, ?busy_timeout=MS to wait for locks). Normalising lower-cases the
 * scheme and host, turns postgresql:// into postgres:// and adds the default
 * port 5432, so equivalent URLs share a pool. Pool names (for metrics and
 * logs) are the normalised URL with the password masked.
 *
 * A pool nobody holds a reference to and that has had no checkout for
 * unused_close_ms is closed by the registry's janitor thread.
 */
#ifndef WEIR_REGISTRY_H
#define WEIR_REGISTRY_H

#include "weir/weir.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weir_registry weir_registry;

/** Create a registry. defaults: options for new pools (NULL: the library's);
 *  the name option is replaced by the masked URL. unused_close_ms: close a
 *  pool unused this long (0 = never). Returns 0 and *out, or WEIR_ENOMEM. */
WEIR_API int weir_registry_create(weir_registry **out, const weir_options *defaults,
                                  int64_t unused_close_ms) WEIR_MUSTCHECK;

/** Destroy every pool (each waits for its checked-out connections) and the
 *  registry. References still held become invalid. NULL is a no-op. */
WEIR_API void weir_registry_destroy(weir_registry *reg);

/** The pool for url, created on first use, with a reference held for the
 *  caller: the pool stays open until weir_registry_release(). Returns 0 and
 *  *pool, or WEIR_EINVAL (unknown scheme, bad URL, a driver refusing it;
 *  reason in err, which may be NULL), WEIR_ECLOSED (registry closing). */
WEIR_API int weir_registry_acquire(weir_registry *reg, const char *url, weir_pool **pool, char *err,
                                   size_t errlen) WEIR_MUSTCHECK;

/** Drop a reference taken by weir_registry_acquire(). */
WEIR_API void weir_registry_release(weir_registry *reg, weir_pool *pool);

/** Close and forget the pool for url now (waits for its checked-out
 *  connections; references to it must have been released). 0, or
 *  WEIR_ENOTFOUND, or WEIR_EBUSY while references are held. */
WEIR_API int weir_registry_remove(weir_registry *reg, const char *url);

/** How many pools the registry holds. */
WEIR_API size_t weir_registry_count(weir_registry *reg);

/** Call fn for each pool with its stats (under the registry's lock: fn must
 *  not call the registry). Returns the number visited. */
WEIR_API int weir_registry_foreach(weir_registry *reg,
                                   void (*fn)(weir_pool *pool, const weir_pool_stats *st, void *ud),
                                   void *ud);

/** One Prometheus page for every pool (labels pool="<masked URL>"), each
 *  metric family once. Free with free(). NULL if out of memory. */
WEIR_API char *weir_registry_prometheus(weir_registry *reg, size_t *len);

/** Normalise url into out (the registry's key, password included). Returns
 *  0, or WEIR_EINVAL with a reason in err (may be NULL). */
WEIR_API int weir_url_normalize(const char *url, char *out, size_t len, char *err,
                                size_t errlen) WEIR_MUSTCHECK;

#ifdef __cplusplus
}
#endif
#endif
