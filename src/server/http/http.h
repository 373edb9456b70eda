/* http.h — the HTTP door (http.c): /metrics, /health, /ready, and /v1/ for
 * SQL over HTTP (httpapi.h), on the HTTP/1.1 server (httpd.h). Started
 * and stopped by main, after and before the workers. */
#ifndef WEIR_SERVER_HTTP_H
#define WEIR_SERVER_HTTP_H

typedef struct server server;

int http_start(server *s); /* 0: listening, or off (no http_listen_port) */
void http_stop(server *s);
void http_config_changed(server *s); /* after a reload or SET (s->config_changed) */

#endif
