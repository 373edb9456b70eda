/* options.c — the option table: every pool option's name, type, default and doc. */
#include "internal.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct option_def {
    weir_option_info info;
    size_t offset;
    int64_t min, max; /* range for INT/DURATION */
} option_def;

#define OFF(f) offsetof(weir_options, f)
#define DAY    (24LL * 3600 * 1000)
/* clang-format off */
static const option_def options[] = {
    {{"name", WEIR_OPT_STRING, "", "pool name in metrics and logs (default: the target, credentials masked)"}, OFF(name), 0, 0},
    {{"max_size", WEIR_OPT_INT, "10", "hard cap on open connections"}, OFF(max_size), 1, 1000000},
    {{"min_idle", WEIR_OPT_INT, "0", "idle connections kept open by the housekeeper"}, OFF(min_idle), 0, 1000000},
    {{"acquire_timeout", WEIR_OPT_DURATION, "30s", "how long a checkout may wait for a connection"}, OFF(acquire_timeout_ms), 0, 365 * DAY},
    {{"connect_timeout", WEIR_OPT_DURATION, "10s", "limit on one connect attempt"}, OFF(connect_timeout_ms), 1, DAY},
    {{"idle_timeout", WEIR_OPT_DURATION, "10min", "close connections idle this long, above min_idle (0 = never)"}, OFF(idle_timeout_ms), 0, 365 * DAY},
    {{"max_lifetime", WEIR_OPT_DURATION, "30min", "retire connections this old, minus a random 0-5 % (0 = never)"}, OFF(max_lifetime_ms), 0, 365 * DAY},
    {{"keepalive", WEIR_OPT_DURATION, "0", "validate idle connections this often (0 = off)"}, OFF(keepalive_ms), 0, 365 * DAY},
    {{"validate_idle_after", WEIR_OPT_DURATION, "500ms", "validate on checkout a connection idle longer than this (-1 = never)"}, OFF(validate_idle_after_ms), -1, 365 * DAY},
    {{"max_uses", WEIR_OPT_INT, "0", "retire a connection after this many checkouts (0 = unlimited)"}, OFF(max_uses), 0, INT64_MAX},
    {{"max_waiters", WEIR_OPT_INT, "0", "refuse checkouts with WEIR_EBUSY when this many are waiting (0 = unlimited)"}, OFF(max_waiters), 0, INT64_MAX},
    {{"leak_threshold", WEIR_OPT_DURATION, "0", "report a connection checked out longer than this (0 = off)"}, OFF(leak_threshold_ms), 0, 365 * DAY},
    {{"backoff_min", WEIR_OPT_DURATION, "10ms", "first reconnect delay after a failed connect (doubles, jittered)"}, OFF(backoff_min_ms), 1, DAY},
    {{"backoff_max", WEIR_OPT_DURATION, "5s", "longest reconnect delay"}, OFF(backoff_max_ms), 1, DAY},
    {{"fail_fast", WEIR_OPT_BOOL, "true", "when the target is down, waiters get the connect error at once instead of a timeout"}, OFF(fail_fast), 0, 1},
    {{"fail_fast_unreachable", WEIR_OPT_BOOL, "true", "fail_fast also when the target cannot be reached (false: only when it refuses the login, WEIR_EREFUSED)"}, OFF(fail_fast_unreachable), 0, 1},
    {{"wait_while_down", WEIR_OPT_BOOL, "false", "with fail_fast: a checkout while the target is down waits for the next connect attempt instead of failing at once"}, OFF(wait_while_down), 0, 1},
    {{"creator_threads", WEIR_OPT_INT, "1", "threads that open connections in the background, at most this many at once"}, OFF(creator_threads), 1, WEIR__CREATORS_MAX},
    {{"creator_idle", WEIR_OPT_DURATION, "5s", "a creator thread with nothing to open for this long ends (one starts again when needed)"}, OFF(creator_idle_ms), 10, DAY},
    {{"housekeeping_period", WEIR_OPT_DURATION, "250ms", "the shortest gap between two housekeeper passes (idle, lifetime, keepalive, leaks, min_idle); it sleeps until a connection is due"}, OFF(housekeeping_ms), 10, 60000},
    {{"warmup_batch", WEIR_OPT_INT, "0", "open min_idle connections at most this many at a time (0 = no limit)"}, OFF(warmup_batch), 0, 1000000},
    {{"warmup_pause", WEIR_OPT_DURATION, "100ms", "pause between two warm-up batches"}, OFF(warmup_pause_ms), 0, DAY},
    {{"adaptive", WEIR_OPT_BOOL, "false", "let the pool's size move between min_idle and max_size from the waits and use it measures"}, OFF(adaptive), 0, 1},
    {{"adaptive_wait", WEIR_OPT_DURATION, "5ms", "adaptive: more than 5 % of checkouts waiting longer than this, or a caller waiting, grows the pool"}, OFF(adaptive_wait_ms), 0, DAY},
    {{"adaptive_period", WEIR_OPT_DURATION, "1s", "adaptive: how often the size is reconsidered (3 quiet periods in a row shrink it)"}, OFF(adaptive_period_ms), 10, DAY},
};
/* clang-format on */
#define NOPTIONS (sizeof options / sizeof *options)

size_t weir_option_count(void)
{
    return NOPTIONS;
}

const weir_option_info *weir_option_at(size_t i)
{
    return i < NOPTIONS ? &options[i].info : NULL;
}

static const option_def *find(const char *name)
{
    if (!name) return NULL;
    for (size_t i = 0; i < NOPTIONS; i++)
        if (strcmp(options[i].info.name, name) == 0) return &options[i];
    return NULL;
}

const weir_option_info *weir_option_find(const char *name)
{
    const option_def *d = find(name);
    return d ? &d->info : NULL;
}

int weir__parse_duration_ms(const char *s, int64_t *out)
{
    if (!s) return WEIR_EINVAL;
    while (isspace((unsigned char)*s)) s++;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (end == s || errno) return WEIR_EINVAL;
    while (isspace((unsigned char)*end)) end++;
    double mul = 1;
    /* A bare number would be seconds in a pgbouncer.ini and milliseconds to
     * HikariCP's users: ambiguous, so refused. 0 and -1 mean the same in any
     * unit (off, never). */
    if (*end == '\0' && v != 0 && v != -1) return WEIR_EINVAL;
    if (*end == '\0' || strcmp(end, "ms") == 0)
        mul = 1;
    else if (strcmp(end, "us") == 0)
        mul = 0.001;
    else if (strcmp(end, "s") == 0)
        mul = 1000;
    else if (strcmp(end, "min") == 0 || strcmp(end, "m") == 0)
        mul = 60000;
    else if (strcmp(end, "h") == 0)
        mul = 3600000;
    else if (strcmp(end, "d") == 0)
        mul = 86400000;
    else
        return WEIR_EINVAL;
    double ms = v * mul;
    if (ms > 9.0e15 || ms < -9.0e15) return WEIR_ERANGE;
    *out = (int64_t)(ms < 0 ? ms - 0.5 : ms + 0.5);
    return 0;
}

static int parse_int(const char *s, int64_t *out)
{
    while (isspace((unsigned char)*s)) s++;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s) return WEIR_EINVAL;
    while (isspace((unsigned char)*end)) end++;
    if (*end) return WEIR_EINVAL;
    if (errno) return WEIR_ERANGE;
    *out = v;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) return *out = true, 0;
        if (strcasecmp(s, no[i]) == 0) return *out = false, 0;
    }
    return WEIR_EINVAL;
}

static int set_number(weir_options *o, const option_def *d, int64_t v)
{
    if (v < d->min || v > d->max) return WEIR_ERANGE;
    *(int64_t *)((char *)o + d->offset) = v;
    return 0;
}

/* Presets: named sets of values. Each changes only what it names. */
typedef struct preset {
    const char *name;
    const char *const (*kv)[2];
    size_t n;
} preset;

/* Many short checkouts from many threads, a database that can take the
 * connections: keep them open and warm, validate rarely, open in parallel. */
static const char *const high_throughput[][2] = {
    {"max_size", "50"},        {"min_idle", "10"},
    {"creator_threads", "4"},  {"validate_idle_after", "5s"},
    {"idle_timeout", "30min"}, {"acquire_timeout", "5s"},
    {"warmup_batch", "5"},     {"warmup_pause", "50ms"},
};
/* Few connections, none kept for nothing: each costs memory here and a
 * backend process on the server. */
static const char *const low_memory[][2] = {
    {"max_size", "4"},         {"min_idle", "0"},        {"idle_timeout", "1min"},
    {"max_lifetime", "10min"}, {"creator_threads", "1"},
};
/* A function that freezes between invocations and may be one of thousands:
 * nothing kept warm, idle connections given back fast, every reused one
 * checked (a thaw finds connections the server or a NAT has dropped),
 * short timeouts, errors at once. */
static const char *const serverless[][2] = {
    {"max_size", "5"},
    {"min_idle", "0"},
    {"idle_timeout", "10s"},
    {"max_lifetime", "5min"},
    {"validate_idle_after", "0"},
    {"acquire_timeout", "5s"},
    {"connect_timeout", "3s"},
    {"fail_fast", "true"},
    {"backoff_max", "1s"},
};
#define PRESET(n, t)                                                                               \
    {                                                                                              \
        n, t, sizeof t / sizeof *t                                                                 \
    }
static const preset presets[] = {
    {"default", NULL, 0},
    PRESET("high_throughput", high_throughput),
    PRESET("low_memory", low_memory),
    PRESET("serverless", serverless),
};

size_t weir_preset_count(void)
{
    return sizeof presets / sizeof *presets;
}

const char *weir_preset_at(size_t i)
{
    return i < weir_preset_count() ? presets[i].name : NULL;
}

int weir_options_preset(weir_options *o, const char *name)
{
    if (!o || !name) return WEIR_EINVAL;
    for (size_t i = 0; i < weir_preset_count(); i++) {
        if (strcasecmp(presets[i].name, name)) continue;
        if (!presets[i].kv) { /* default: the library's, the name kept */
            char keep[WEIR_NAME_MAX];
            memcpy(keep, o->name, sizeof keep);
            weir_options_init(o);
            memcpy(o->name, keep, sizeof keep);
            return 0;
        }
        weir_options t = *o;
        for (size_t k = 0; k < presets[i].n; k++)
            if (weir_options_set(&t, presets[i].kv[k][0], presets[i].kv[k][1])) return WEIR_EINVAL;
        *o = t;
        return 0;
    }
    return WEIR_ENOENT;
}

int weir_options_set(weir_options *o, const char *name, const char *value)
{
    if (name && !strcmp(name, "preset")) {
        if (!o || !value) return WEIR_EINVAL;
        return weir_options_preset(o, value) == WEIR_ENOENT ? WEIR_EINVAL : 0;
    }
    const option_def *d = find(name);
    if (!d) return WEIR_ENOENT;
    if (!o || !value) return WEIR_EINVAL;
    int64_t v;
    int rc;
    switch (d->info.type) {
    case WEIR_OPT_INT:
        if ((rc = parse_int(value, &v))) return rc;
        return set_number(o, d, v);
    case WEIR_OPT_DURATION:
        if ((rc = weir__parse_duration_ms(value, &v))) return rc;
        return set_number(o, d, v);
    case WEIR_OPT_BOOL: {
        bool b;
        if ((rc = parse_bool(value, &b))) return rc;
        *(bool *)((char *)o + d->offset) = b;
        return 0;
    }
    case WEIR_OPT_STRING:
        if (strlen(value) >= WEIR_NAME_MAX) return WEIR_ERANGE;
        strcpy((char *)o + d->offset, value);
        return 0;
    }
    return WEIR_EINVAL;
}

static int typed(weir_options *o, const char *name, weir_option_type t, const option_def **d)
{
    *d = find(name);
    if (!*d) return WEIR_ENOENT;
    if (!o) return WEIR_EINVAL;
    if ((*d)->info.type != t) return WEIR_ETYPE;
    return 0;
}

int weir_options_set_int(weir_options *o, const char *name, int64_t v)
{
    const option_def *d;
    int rc = typed(o, name, WEIR_OPT_INT, &d);
    return rc ? rc : set_number(o, d, v);
}

int weir_options_set_ms(weir_options *o, const char *name, int64_t ms)
{
    const option_def *d;
    int rc = typed(o, name, WEIR_OPT_DURATION, &d);
    return rc ? rc : set_number(o, d, ms);
}

int weir_options_set_bool(weir_options *o, const char *name, bool v)
{
    const option_def *d;
    int rc = typed(o, name, WEIR_OPT_BOOL, &d);
    if (rc) return rc;
    *(bool *)((char *)o + d->offset) = v;
    return 0;
}

int weir_options_set_string(weir_options *o, const char *name, const char *v)
{
    const option_def *d;
    int rc = typed(o, name, WEIR_OPT_STRING, &d);
    if (rc) return rc;
    if (!v) return WEIR_EINVAL;
    return weir_options_set(o, name, v);
}

int weir_options_get(const weir_options *o, const char *name, char *buf, size_t len)
{
    const option_def *d = find(name);
    if (!d) return WEIR_ENOENT;
    if (!o || !buf) return WEIR_EINVAL;
    const char *p = (const char *)o + d->offset;
    switch (d->info.type) {
    case WEIR_OPT_INT:
        snprintf(buf, len, "%" PRId64, *(const int64_t *)p);
        break;
    case WEIR_OPT_DURATION:
        snprintf(buf, len, "%" PRId64 "ms", *(const int64_t *)p);
        break;
    case WEIR_OPT_BOOL:
        snprintf(buf, len, "%s", *(const bool *)p ? "true" : "false");
        break;
    case WEIR_OPT_STRING:
        snprintf(buf, len, "%s", p);
        break;
    }
    return 0;
}

void weir_options_init(weir_options *o)
{
    memset(o, 0, sizeof *o);
    for (size_t i = 0; i < NOPTIONS; i++) {
        int rc = weir_options_set(o, options[i].info.name, options[i].info.default_text);
        (void)rc; /* the table's defaults parse; test_options checks it */
    }
}

int weir_options_check(const weir_options *o, char *why, size_t whylen)
{
    const char *msg = NULL;
    if (!o)
        msg = "no options";
    else if (o->max_size < 1)
        msg = "max_size must be at least 1";
    else if (o->min_idle > o->max_size)
        msg = "min_idle must not exceed max_size";
    else if (o->backoff_min_ms > o->backoff_max_ms)
        msg = "backoff_min must not exceed backoff_max";
    else if (o->creator_threads < 1)
        msg = "creator_threads must be at least 1";
    else {
        for (size_t i = 0; i < NOPTIONS; i++) {
            const option_def *d = &options[i];
            if (d->info.type != WEIR_OPT_INT && d->info.type != WEIR_OPT_DURATION) continue;
            int64_t v = *(const int64_t *)((const char *)o + d->offset);
            if (v < d->min || v > d->max) {
                if (why) snprintf(why, whylen, "%s is out of range", d->info.name);
                return WEIR_EINVAL;
            }
        }
    }
    if (msg) {
        if (why) snprintf(why, whylen, "%s", msg);
        return WEIR_EINVAL;
    }
    if (why && whylen) why[0] = '\0';
    return 0;
}
