/* promcompat.h — /metrics in pgbouncer_exporter's names (promcompat.c). */
#ifndef WEIR_SERVER_PROMCOMPAT_H
#define WEIR_SERVER_PROMCOMPAT_H

#include "core/sbuf.h"

typedef struct server server;

/* Appends the families prometheus-community/pgbouncer_exporter makes from
 * the console (pgbouncer_up, pgbouncer_version_info, pgbouncer_pools_*,
 * pgbouncer_databases_*, pgbouncer_stats_*, pgbouncer_config_*, the SHOW
 * LISTS gauges, pgbouncer_client_connections), read from weir's own console
 * answers, so that dashboards built on that exporter work against weir's
 * /metrics unchanged. Call it without holding cfg_rw (SHOW CLIENTS holds
 * the workers, which takes it). */
void promcompat_page(server *s, sbuf *b);

/* The admin console's answer to SHOW what (POOLS, CLIENTS, SERVERS,
 * DATABASES, STATS, LISTS, USERS, MEM, TOTALS, STATE, VERSION) as JSON:
 * {"columns":[...],"rows":[[...],...]}, numbers as numbers, NULL as null.
 * 0; -1 for a command not in that list; -2 if the console refused (busy).
 * Call it without holding cfg_rw. */
int console_json(server *s, const char *what, sbuf *b);

#endif
