/* scheme.h — how a driver joins the registry: the URL scheme it serves, how
 * a URL of it becomes the registry's key, and how the pool for a key is
 * made. Each driver defines one weir__scheme; the build lists the drivers
 * it includes in weir__schemes (schemes.c, generated), so adding a driver
 * touches neither registry.c nor the others. */
#ifndef WEIR_LIB_SCHEME_H
#define WEIR_LIB_SCHEME_H

#include <stddef.h>

#include "weir/weir.h"

typedef struct weir__scheme {
    const char *name;  /* "postgres": URLs are name://...; keys start so */
    const char *alias; /* another name for it ("postgresql"), or NULL */
    /* rest: what follows "://" in the URL. The key into out (len bytes):
     * 0, WEIR_EINVAL with a reason in err, or WEIR_ERANGE. */
    int (*normalize)(const char *url, const char *rest, char *out, size_t len, char *err,
                     size_t errlen);
    /* The pool for a key this scheme made, with options o. */
    int (*make)(const char *key, const weir_options *o, weir_pool **out, char *err, size_t errlen);
} weir__scheme;

/* Every scheme this build has, NULL-terminated (schemes.c). */
extern const weir__scheme *const weir__schemes[];

/* For the drivers' URLs (util.c). */

/* scheme://[userinfo@]host[:port][/path][?query] made a registry key: the
 * host lower-cased, port (the scheme's default, as text) made explicit
 * unless the host names one or is a comma list (libpq's several hosts),
 * then the path and query (keep_path) or the query alone (a pool per
 * origin). 0 or WEIR_ERANGE. */
int weir__normalize_authority(const char *scheme, const char *port, const char *rest,
                              bool keep_path, char *out, size_t len);
/* n bytes of s, %-decoded, as a new string; NULL on a bad escape, an
 * escaped NUL, or no memory. */
char *weir__pct_decode(const char *s, size_t n);

#endif
