/* proto.h — PostgreSQL wire protocol (v3) pieces: buffers, message framing, builders. */
#ifndef WEIR_SERVER_PROTO_H
#define WEIR_SERVER_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PQ_PROTO_V3    196608u   /* 3.0 */
#define PQ_CANCEL_CODE 80877102u /* 1234.5678 */
#define PQ_SSL_CODE    80877103u /* 1234.5679 */
#define PQ_GSSENC_CODE 80877104u /* 1234.5680 */
#define PQ_STARTUP_MAX 10000u    /* PostgreSQL's own limit for a startup packet */
#define PQ_MAX_PARAMS  64

/* A byte buffer with a read position: data lives in [start, end). */
typedef struct pq_buf {
    uint8_t *p;
    uint32_t cap, start, end;
} pq_buf;

void pq_buf_free(pq_buf *b);
/* Make room for n more bytes at end (compacting, then growing). 0 or -1. */
int pq_buf_reserve(pq_buf *b, uint32_t n);
/* Is t (not 0) one of the message types in set? Sets are a few letters: a
 * loop costs less than a strchr call, and this runs on every message. */
static inline bool pq_type_in(const char *set, char t)
{
    for (; *set; set++)
        if (*set == t) return true;
    return false;
}

static inline uint32_t pq_buf_len(const pq_buf *b)
{
    return b->end - b->start;
}
static inline void pq_buf_reset(pq_buf *b)
{
    b->start = b->end = 0;
}

/* Message builders: each appends one whole message. 0 or -1 (out of memory). */
int pq_put_raw(pq_buf *b, const void *p, uint32_t n);
/* type 0: no type byte (startup-style). body as given. */
int pq_put_msg(pq_buf *b, char type, const void *body, uint32_t n);
/* ErrorResponse (severity "ERROR"/"FATAL") with SQLSTATE and message. */
int pq_put_error(pq_buf *b, const char *severity, const char *sqlstate, const char *msg);
/* A NoticeResponse (severity NOTICE, 00000) saying msg. */
int pq_put_notice(pq_buf *b, const char *msg);
int pq_put_auth(pq_buf *b, uint32_t code, const void *data, uint32_t n);
int pq_put_param(pq_buf *b, const char *name, const char *value);
int pq_put_key(pq_buf *b, uint32_t pid, uint32_t key);
int pq_put_ready(pq_buf *b, char status);

static inline uint32_t pq_get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint16_t pq_get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}
static inline void pq_set16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline void pq_set32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* A startup-phase packet: StartupMessage, CancelRequest, SSLRequest, GSSENCRequest. */
typedef struct pq_startup {
    uint32_t code; /* protocol version, or one of the *_CODE values */
    uint32_t cancel_pid, cancel_key;
    int nparams;
    const char *names[PQ_MAX_PARAMS], *values[PQ_MAX_PARAMS]; /* point into the packet */
} pq_startup;

/* Parse a whole startup packet (len includes the 4-byte length). 0, or -1
 * with a reason in why (for the client's ErrorResponse). The packet must be
 * writable only in that names and values point into it. */
int pq_parse_startup(const uint8_t *p, uint32_t len, pq_startup *out, const char **why);
const char *pq_startup_get(const pq_startup *s, const char *name);
/* A protocol extension the client asks for ("_pq_." names): weir knows none. */
bool pq_startup_extension(const char *name);
/* NegotiateProtocolVersion ('v'), as PostgreSQL sends it, when the startup
 * packet asked for a minor version past 3.0 or for protocol extensions:
 * 3.0, and the extensions' names. 0 (written, or nothing to say) or -1. */
int pq_put_negotiate(pq_buf *b, const pq_startup *st);
/* The "options" startup parameter as PostgreSQL splits it (blanks separate,
 * a backslash takes the next character as it is): only "-c name=value",
 * "-cname=value" and "--name=value" are taken, each given to fn. 0, or -1
 * with why (PgBouncer's words) for anything else. */
int pq_parse_options(const char *opts, void (*fn)(void *ud, const char *name, const char *value),
                     void *ud, const char **why);

/* Framing of a stream of typed messages ('T' + int32 length + body). */
typedef struct pq_stream {
    uint32_t left; /* bytes of the current message still to come */
} pq_stream;

typedef struct pq_msg {
    char type;
    uint32_t len;        /* the length field (includes itself, excludes the type byte) */
    const uint8_t *body; /* whole body, or NULL if the message is passed through in parts */
} pq_msg;

enum {
    PQ_NEED = 0, /* not enough bytes for the next step: read more */
    PQ_PASS = 1, /* *used bytes continue a message already announced */
    PQ_MSG = 2,  /* a message header (and body if whole); *used bytes */
    PQ_BAD = -1, /* a length below 4 or above max_len */
};

/* One step over [p, p+n). Messages whose type is in `whole` are returned
 * with their body once all of it is in the buffer (PQ_NEED until then);
 * others are returned by header (5 bytes), and their body as PQ_PASS parts. */
int pq_next(pq_stream *st, const uint8_t *p, uint32_t n, uint32_t max_len, const char *whole,
            pq_msg *m, uint32_t *used);

/* Read a NUL-terminated string from [*p, end); NULL if there is none. */
const char *pq_get_str(const uint8_t **p, const uint8_t *end);

/* The next whole message at the front of b, consumed (m->body points into
 * b, valid until b changes): PQ_MSG, PQ_NEED, or PQ_BAD for a length below 4
 * or above max_len. */
int pq_buf_take(pq_buf *b, uint32_t max_len, pq_msg *m);

/* A field ('S', 'C', 'M', ...) of an ErrorResponse or NoticeResponse; NULL if absent. */
const char *pq_error_field(const pq_msg *m, char field);

#endif
