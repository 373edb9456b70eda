/* reload.h — changing a running weir's configuration: RELOAD and SIGHUP
 * (the file again), SET key = value (reload.c). */
#ifndef WEIR_SERVER_RELOAD_H
#define WEIR_SERVER_RELOAD_H

#include <stddef.h>

typedef struct server server;

/* 0, or -1 with err set (the running configuration is then unchanged);
 * CHANGE_BUSY (worker.h) from a worker when another change or listing is
 * running: nothing was done, try again. */
int server_reload(server *s, char *err, size_t errlen);
int server_set(server *s, const char *key, const char *value, char *err, size_t errlen);

#endif
