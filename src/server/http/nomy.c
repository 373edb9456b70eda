/* nomy.c — a build without MySQL (-DWEIR_WITH_MYSQL=OFF): the HTTP door has
 * no MySQL engine, and a mysql:// database is refused. */
#include "http/sqlexec.h"

#include <stdio.h>

const sql_engine *const sql_engine_mysql = NULL;

void sql_mysql_ready(server *s, const cfg_db *db, char *status, size_t len)
{
    (void)s;
    (void)db;
    snprintf(status, len, "this weir was built without MySQL");
}
