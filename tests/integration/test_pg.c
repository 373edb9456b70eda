/* test_pg.c — the PostgreSQL driver against a real PostgreSQL 15 that the
 * harness (pg_cluster.sh) creates in a temporary directory and removes after,
 * also when a test fails. */
#include "helpers.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "cluster.h"
#include "weir/weir_pg.h"

static int group_setup(void **state)
{
    (void)state;
    return start_cluster("", 0);
}

static void conninfo(char *buf, size_t len, const char *password)
{
    snprintf(buf, len, "postgresql://app:%s@127.0.0.1:%d/appdb", password, port);
}

static weir_pool *pg_pool(weir_options *o, const char *reset_query)
{
    char ci[256], err[256];
    conninfo(ci, sizeof ci, "s3cret");
    weir_pool *p;
    int rc = weir_pg_pool_create(&p, ci, reset_query, o, NULL, err, sizeof err);
    if (rc) fail_msg("weir_pg_pool_create: %s: %s", weir_err_name(rc), err);
    return p;
}

static PGresult *q(PGconn *c, const char *sql)
{
    /* the driver leaves connections non-blocking; PQexec copes with that */
    return PQexec(c, sql);
}

static char *q1(PGconn *c, const char *sql, char *out, size_t len)
{
    PGresult *r = q(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    snprintf(out, len, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return out;
}

static void select_one_through_the_pool(void **state)
{
    (void)state;
    weir_options o;
    test_options(&o);
    weir_pool *p = pg_pool(&o, NULL);
    char v[64], name[WEIR_NAME_MAX];
    snprintf(name, sizeof name, "postgres://app@127.0.0.1:%d/appdb", port);
    assert_string_equal(weir_pool_name(p), name); /* no password in the name */
    for (int i = 0; i < 3; i++) {
        weir_conn *c;
        assert_int_equal(weir_checkout(p, &c), 0);
        PGconn *pg = weir_pg_conn(c);
        assert_non_null(pg);
        assert_string_equal(q1(pg, "SELECT 1", v, sizeof v), "1");
        assert_string_equal(q1(pg, "SELECT current_user", v, sizeof v), "app");
        /* keepalives are on by default */
        assert_string_equal(PQparameterStatus(pg, "server_encoding"), "UTF8");
        weir_checkin(c);
    }
    weir_pool_stats st = pool_stats(p);
    assert_int_equal(st.created_total, 1);
    assert_int_equal(st.acquires_total, 3);
    weir_pool_destroy(p);
}

static void wrong_password_fails_at_once(void **state)
{
    (void)state;
    char ci[256], err[512];
    conninfo(ci, sizeof ci, "not-the-password");
    weir_options o;
    test_options(&o);
    o.acquire_timeout_ms = 10000;
    weir_pool *p;
    assert_int_equal(weir_pg_pool_create(&p, ci, NULL, &o, NULL, err, sizeof err), 0);
    weir_conn *c;
    int64_t t0 = weir_now_ns();
    assert_int_equal(weir_checkout(p, &c), WEIR_ECONNECT);
    assert_true(ms_since(t0) < 2000); /* the server's answer, not a timeout */
    weir_pool_last_error(p, err, sizeof err);
    if (!strstr(err, "password authentication failed for user \"app\""))
        fail_msg("unexpected error: %s", err);
    assert_null(strstr(err, "not-the-password"));
    weir_pool_destroy(p);
}

static void multi_host_list_is_passed_to_libpq(void **state)
{
    (void)state;
    /* the first host refuses (nothing listens on port 1); libpq moves on to the second */
    char ci[256], err[256], v[64];
    snprintf(ci, sizeof ci,
             "host=127.0.0.1,127.0.0.1 port=1,%d user=app password=s3cret dbname=appdb "
             "target_session_attrs=read-write",
             port);
    weir_options o;
    test_options(&o);
    weir_pool *p;
    assert_int_equal(weir_pg_pool_create(&p, ci, NULL, &o, NULL, err, sizeof err), 0);
    weir_conn *c;
    assert_int_equal(weir_checkout(p, &c), 0);
    char want[16];
    snprintf(want, sizeof want, "%d", port);
    assert_string_equal(PQport(weir_pg_conn(c)), want);
    assert_string_equal(q1(weir_pg_conn(c), "SELECT 1", v, sizeof v), "1");
    weir_checkin(c);
    weir_pool_destroy(p);
}

static void bad_conninfo_is_refused(void **state)
{
    (void)state;
    weir_pool *p;
    char err[256];
    assert_int_equal(
        weir_pg_pool_create(&p, "host=x bogus_key=1", NULL, NULL, NULL, err, sizeof err),
        WEIR_EINVAL);
    assert_null(p);
    if (!strstr(err, "invalid connection option \"bogus_key\"")) fail_msg("err: %s", err);
}

static void connect_timeout_against_a_silent_listener(void **state)
{
    (void)state;
    /* accepts the TCP handshake (backlog) and never says a word */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s, 16), 0);
    socklen_t al = sizeof a;
    getsockname(s, (struct sockaddr *)&a, &al);
    char ci[256], err[512];
    snprintf(ci, sizeof ci, "host=127.0.0.1 port=%d user=app password=s3cret dbname=appdb",
             ntohs(a.sin_port));
    weir_options o;
    test_options(&o);
    o.connect_timeout_ms = 300;
    weir_pool *p;
    assert_int_equal(weir_pg_pool_create(&p, ci, NULL, &o, NULL, err, sizeof err), 0);
    weir_conn *c;
    int64_t t0 = weir_now_ns();
    assert_int_equal(weir_checkout_timeout(p, 5000, &c), WEIR_ECONNECT);
    int64_t took = ms_since(t0);
    if (took < 290 || took > 300 + slack_ms() + 100) fail_msg("took %lld ms", (long long)took);
    weir_pool_last_error(p, err, sizeof err);
    if (!strstr(err, "timeout expired connecting to postgres://app@127.0.0.1:"))
        fail_msg("err: %s", err);
    weir_pool_destroy(p);
    close(s);
}

static void open_transaction_is_rolled_back(void **state)
{
    (void)state;
    weir_options o;
    test_options(&o);
    o.max_size = 1;
    weir_pool *p = pg_pool(&o, NULL);
    weir_conn *c;
    char v[64];
    assert_int_equal(weir_checkout(p, &c), 0);
    PQclear(q(weir_pg_conn(c), "CREATE TABLE IF NOT EXISTS t_rollback (x int)"));
    PQclear(q(weir_pg_conn(c), "BEGIN"));
    PQclear(q(weir_pg_conn(c), "INSERT INTO t_rollback VALUES (1)"));
    PQclear(q(weir_pg_conn(c), "SET LOCAL application_name = 'leaky'"));
    assert_int_equal(PQtransactionStatus(weir_pg_conn(c)), PQTRANS_INTRANS);
    int pid = PQbackendPID(weir_pg_conn(c));
    weir_checkin(c); /* in a transaction: rolled back on the way in */
    assert_int_equal(weir_checkout(p, &c), 0);
    assert_int_equal(PQbackendPID(weir_pg_conn(c)), pid); /* the same session, clean */
    assert_int_equal(PQtransactionStatus(weir_pg_conn(c)), PQTRANS_IDLE);
    assert_string_equal(q1(weir_pg_conn(c), "SELECT count(*) FROM t_rollback", v, sizeof v), "0");
    assert_string_not_equal(q1(weir_pg_conn(c), "SHOW application_name", v, sizeof v), "leaky");
    /* a failed transaction too */
    PQclear(q(weir_pg_conn(c), "BEGIN"));
    PQclear(q(weir_pg_conn(c), "SELECT 1/0"));
    assert_int_equal(PQtransactionStatus(weir_pg_conn(c)), PQTRANS_INERROR);
    weir_checkin(c);
    assert_int_equal(weir_checkout(p, &c), 0);
    assert_int_equal(PQtransactionStatus(weir_pg_conn(c)), PQTRANS_IDLE);
    assert_string_equal(q1(weir_pg_conn(c), "SELECT 2", v, sizeof v), "2");
    weir_checkin(c);
    weir_pool_destroy(p);
}

static void reset_query_runs_on_checkin(void **state)
{
    (void)state;
    weir_options o;
    test_options(&o);
    o.max_size = 1;
    weir_pool *p = pg_pool(&o, "DISCARD ALL");
    weir_conn *c;
    char v[64];
    assert_int_equal(weir_checkout(p, &c), 0);
    PQclear(q(weir_pg_conn(c), "SET application_name = 'session-state'"));
    weir_checkin(c);
    assert_int_equal(weir_checkout(p, &c), 0);
    assert_string_equal(q1(weir_pg_conn(c), "SHOW application_name", v, sizeof v), "");
    weir_checkin(c);
    weir_pool_destroy(p);
}

static void terminated_backend_is_replaced(void **state)
{
    (void)state;
    weir_options o;
    test_options(&o);
    o.max_size = 1;
    o.validate_idle_after_ms = 0; /* validate every checkout that was idle at all */
    weir_pool *p = pg_pool(&o, NULL);
    weir_conn *c;
    char v[64];
    assert_int_equal(weir_checkout(p, &c), 0);
    int pid = PQbackendPID(weir_pg_conn(c));
    weir_checkin(c);
    assert_int_equal(sh("%s psql %s %d 'SELECT pg_terminate_backend(%d)' >/dev/null", script,
                        cluster_dir, port, pid),
                     0);
    sleep_ms(20); /* the coarse clock must move for "idle longer than 0 ms" */
    assert_int_equal(weir_checkout(p, &c), 0);
    assert_int_not_equal(PQbackendPID(weir_pg_conn(c)), pid);
    assert_string_equal(q1(weir_pg_conn(c), "SELECT 1", v, sizeof v), "1");
    weir_checkin(c);
    assert_int_equal(pool_stats(p).closed_total[WEIR_CLOSE_BROKEN], 1);
    weir_pool_destroy(p);
}

/* ---- PostgreSQL stopped and started under load ---- */
typedef struct loader {
    weir_pool *pool;
    _Atomic bool *stop;
    _Atomic int64_t *last_ok_ns;
    int ok, econnect, query_errors, other;
    int64_t longest_ms;
    char last_error[256];
    pthread_t th;
} loader;

static void *load_main(void *arg)
{
    loader *l = arg;
    while (!atomic_load(l->stop)) {
        weir_conn *c;
        int64_t t0 = weir_now_ns();
        int rc = weir_checkout_timeout(l->pool, 2000, &c);
        if (rc == 0) {
            PGresult *r = PQexec(weir_pg_conn(c), "SELECT 1");
            if (PQresultStatus(r) == PGRES_TUPLES_OK) {
                l->ok++;
                atomic_store(l->last_ok_ns, weir_now_ns());
            } else {
                l->query_errors++;
                weir_conn_mark_broken(c); /* the server went away under us */
            }
            PQclear(r);
            weir_checkin(c);
        } else if (rc == WEIR_ECONNECT) {
            l->econnect++;
            weir_pool_last_error(l->pool, l->last_error, sizeof l->last_error);
            sleep_ms(5);
        } else {
            l->other++;
        }
        int64_t took = ms_since(t0);
        if (took > l->longest_ms) l->longest_ms = took;
    }
    return NULL;
}

static void restart_under_load(void **state)
{
    (void)state;
    weir_options o;
    test_options(&o);
    o.max_size = 4;
    o.backoff_max_ms = 250; /* recovery comes within one backoff step */
    weir_pool *p = pg_pool(&o, NULL);
    _Atomic bool stop = false;
    _Atomic int64_t last_ok = 0;
    enum { N = 8 };
    loader l[N];
    for (int i = 0; i < N; i++) {
        l[i] = (loader){.pool = p, .stop = &stop, .last_ok_ns = &last_ok};
        pthread_create(&l[i].th, NULL, load_main, &l[i]);
    }
    sleep_ms(500);
    assert_int_equal(sh("%s stop %s immediate", script, cluster_dir), 0);
    int64_t down_at = weir_now_ns();
    sleep_ms(1000);
    assert_int_equal(sh("%s start %s %d", script, cluster_dir, port),
                     0); /* returns when accepting */
    int64_t up_at = weir_now_ns();
    bool recovered = WAIT_FOR(atomic_load(&last_ok) > up_at, 3000);
    int64_t recovery_ms = (atomic_load(&last_ok) - up_at) / 1000000;
    sleep_ms(300);
    atomic_store(&stop, true);
    for (int i = 0; i < N; i++) pthread_join(l[i].th, NULL);
    int ok = 0, econnect = 0, qerr = 0, other = 0;
    int64_t longest = 0;
    const char *msg = "";
    for (int i = 0; i < N; i++) {
        ok += l[i].ok;
        econnect += l[i].econnect;
        qerr += l[i].query_errors;
        other += l[i].other;
        if (l[i].longest_ms > longest) longest = l[i].longest_ms;
        if (l[i].last_error[0]) msg = l[i].last_error;
    }
    printf("restart: %d ok, %d fail-fast errors, %d query errors, %d other; longest call %lld ms; "
           "down %lld ms; served again %lld ms after PostgreSQL accepted connections\n"
           "restart: error seen while down: %s\n",
           ok, econnect, qerr, other, (long long)longest, (long long)((up_at - down_at) / 1000000),
           (long long)recovery_ms, msg);
    assert_true(recovered);
    assert_true(recovery_ms <= 1000);
    assert_true(econnect > 0);  /* waiters failed fast while it was down ... */
    assert_int_equal(other, 0); /* ... and nobody hung until a timeout */
    assert_true(longest < 2000);
    if (!strstr(msg, "127.0.0.1") && !strstr(msg, "Connection refused"))
        fail_msg("expected libpq's message, got: %s", msg);
    weir_pool_destroy(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(select_one_through_the_pool),
        cmocka_unit_test(wrong_password_fails_at_once),
        cmocka_unit_test(multi_host_list_is_passed_to_libpq),
        cmocka_unit_test(bad_conninfo_is_refused),
        cmocka_unit_test(connect_timeout_against_a_silent_listener),
        cmocka_unit_test(open_transaction_is_rolled_back),
        cmocka_unit_test(reset_query_runs_on_checkin),
        cmocka_unit_test(terminated_backend_is_replaced),
        cmocka_unit_test(restart_under_load),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
