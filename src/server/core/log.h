/* log.h — the server's log (log.c). */
#ifndef WEIR_SERVER_LOG_H
#define WEIR_SERVER_LOG_H

typedef struct server server;

/* One line at level ("LOG", "WARNING", "ERROR", "FATAL") to stderr (unless
 * quiet), the logfile and syslog. Passwords in connection strings are
 * masked; ill-formed UTF-8 and control characters from clients scrubbed. */
void srv_log(server *s, const char *level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Now, as log lines begin, in local time with its zone, as PgBouncer writes
 * it: "2026-01-02 03:04:05.678 CET" (ts: 64 bytes). */
void log_timestamp(char ts[64]);

#endif
