/* httpapi.h — SQL over HTTP (httpapi.c): authentication, which database,
 * sessions, limits; statements run by an engine (sqlexec.h). */
#ifndef WEIR_SERVER_HTTPAPI_H
#define WEIR_SERVER_HTTPAPI_H

#include <stdbool.h>

#include "core/sbuf.h"
#include "http/httpd.h"

typedef struct server server;

int api_start(server *s); /* opens the SQLite databases, starts the session reaper */
void api_stop(server *s); /* ends every session, closes the SQLite databases */
/* path is below /v1/ */
void api_handle(server *s, http_req *rq, http_resp *rs, const char *path);
void api_metrics(server *s, sbuf *b); /* Prometheus lines */
/* The live page's login: an admin_users or stats_users member with a proved
 * password or token. false: the 401/403 answer is in rs. */
bool api_ops_login(server *s, http_req *rq, http_resp *rs);

#endif
