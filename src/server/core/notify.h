/* notify.h — systemd's service notification protocol (notify.c), spoken
 * directly: a datagram to $NOTIFY_SOCKET, no libsystemd needed. */
#ifndef WEIR_SERVER_NOTIFY_H
#define WEIR_SERVER_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

/* Reads NOTIFY_SOCKET and WATCHDOG_USEC/WATCHDOG_PID once. Without
 * NOTIFY_SOCKET every call below does nothing. */
void notify_init(void);
/* Sends one message, "KEY=value" lines ("READY=1\nSTATUS=..."); returns 0,
 * or -1 (not under systemd, or the send failed). */
int notify_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* RELOADING=1 with MONOTONIC_USEC, as Type=notify-reload wants too. */
void notify_reloading(void);
/* WATCHDOG=1 when half of WatchdogSec has passed since the last one, if
 * healthy; call it often (the main loop does, every 100 ms). */
void notify_watchdog(bool healthy);
/* The watchdog interval systemd asked for, in microseconds (0: none). */
uint64_t notify_watchdog_usec(void);

#endif
