/* nolite.c — a build without SQLite (-DWEIR_WITH_SQLITE=OFF): the HTTP
 * door has no SQLite engine, and an sqlite:// database is refused. */
#include "http/sqlexec.h"

const sql_engine *const sql_engine_sqlite = NULL;
