/* log.c — the server's log: stderr (unless quiet), logfile and syslog, with
 * credentials masked and client text scrubbed (no forged lines). */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "core/server.h"
#include "core/utf8.h"
#include "weir/weir.h"

void log_timestamp(char ts[64])
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    localtime_r(&now.tv_sec, &tm); /* local time (TZ), named as PgBouncer names it */
    size_t n = strftime(ts, 64, "%Y-%m-%d %H:%M:%S", &tm);
    char zone[16];
    if (!strftime(zone, sizeof zone, "%Z", &tm) || !zone[0]) strftime(zone, sizeof zone, "%z", &tm);
    snprintf(ts + n, 64 - n, ".%03ld %s", now.tv_nsec / 1000000, zone);
}

void srv_log(server *s, const char *level, const char *fmt, ...)
{
    char ts[64], msg[1200];
    log_timestamp(ts);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char masked[1200];
    weir_mask_credentials(msg, masked, sizeof masked);
    utf8_scrub(masked, strlen(masked)); /* names from clients: no forged lines */
    pthread_mutex_lock(&s->log_lock);
    if (!s->quiet) fprintf(stderr, "%s [%d] %s %s\n", ts, (int)getpid(), level, masked);
    if (s->logf) {
        fprintf(s->logf, "%s [%d] %s %s\n", ts, (int)getpid(), level, masked);
        fflush(s->logf);
    }
    pthread_mutex_unlock(&s->log_lock);
    if (s->syslog_on) {
        int prio = !strcmp(level, "ERROR") || !strcmp(level, "FATAL") ? LOG_ERR
                   : !strcmp(level, "WARNING")                        ? LOG_WARNING
                                                                      : LOG_INFO;
        syslog(prio, "%s %s", level, masked);
    }
}
