/* mysql.c — libweir's MySQL driver: a pool shared by threads, each running a
 * query on a connection it checks out, and the pool's figures after.
 *
 *   weir_example_mysql 'mysql://app:secret@127.0.0.1:3306/appdb'
 */
#include <mysql.h>
#include <pthread.h>
#include <stdio.h>

#include "weir/weir.h"
#include "weir/weir_mysql.h"

static void *worker(void *arg)
{
    weir_pool *pool = arg;
    for (int i = 0; i < 100; i++) {
        weir_conn *c;
        int rc = weir_checkout(pool, &c);
        if (rc) {
            char why[256];
            weir_pool_last_error(pool, why, sizeof why);
            fprintf(stderr, "checkout: %s: %s\n", weir_strerror(rc), why);
            return NULL;
        }
        MYSQL *m = weir_mysql_conn(c);
        if (mysql_query(m, "SELECT CONNECTION_ID(), NOW()") == 0) {
            MYSQL_RES *r = mysql_store_result(m);
            MYSQL_ROW row = r ? mysql_fetch_row(r) : NULL;
            if (row && i == 0) printf("connection %s at %s\n", row[0], row[1]);
            if (r) mysql_free_result(r);
        } else {
            fprintf(stderr, "query: %s\n", mysql_error(m));
        }
        weir_checkin(c); /* the session is reset on the way in */
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s mysql://user:password@host:port/database\n", argv[0]);
        return 2;
    }
    weir_options o;
    weir_options_init(&o);
    o.max_size = 4;
    o.min_idle = 1;
    weir_pool *pool;
    char err[256];
    if (weir_mysql_pool_create(&pool, argv[1], &o, NULL, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    pthread_t th[8];
    for (int i = 0; i < 8; i++) pthread_create(&th[i], NULL, worker, pool);
    for (int i = 0; i < 8; i++) pthread_join(th[i], NULL);
    weir_pool_stats st;
    weir_pool_stats_get(pool, &st);
    printf("%s: 800 checkouts by 8 threads on %lld connections\n", weir_pool_name(pool),
           (long long)st.created_total);
    weir_pool_destroy(pool);
    return 0;
}
