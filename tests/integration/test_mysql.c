/* test_mysql.c — the MySQL/MariaDB driver against a real MariaDB server that
 * the harness (mysql_cluster.sh) creates in a temporary directory and
 * removes after, also when a test fails. */
#include "helpers.h"

#include <arpa/inet.h>
#include <errmsg.h>
#include <mysql.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define CLUSTER_SCRIPT "mysql_cluster.sh"
#include "cluster.h"
#include "weir/weir_mysql.h"
#include "weir/weir_registry.h"

static int group_setup(void **state)
{
    (void)state;
    return start_cluster("", 7);
}

static void url(char *buf, size_t len, const char *password, const char *query)
{
    int n = snprintf(buf, len, "mysql://app:%s@127.0.0.1:%d/appdb%s", password, port, query);
    if (n < 0 || (size_t)n >= len) fail_msg("test URL too long for its buffer");
}

static weir_pool *my_pool(weir_options *o, const char *query)
{
    char u[256], err[256];
    url(u, sizeof u, "s3cret", query);
    weir_pool *p;
    int rc = weir_mysql_pool_create(&p, u, o, NULL, err, sizeof err);
    if (rc) fail_msg("weir_mysql_pool_create: %s: %s", weir_err_name(rc), err);
    return p;
}

/* The first column of the first row of sql, or fail. */
static char *q1(MYSQL *m, const char *sql, char *out, size_t len)
{
    if (mysql_query(m, sql)) fail_msg("%s: %s", sql, mysql_error(m));
    MYSQL_RES *r = mysql_store_result(m);
    if (!r) fail_msg("%s: no result: %s", sql, mysql_error(m));
    MYSQL_ROW row = mysql_fetch_row(r);
    if (!row) fail_msg("%s: no row", sql);
    snprintf(out, len, "%s", row[0] ? row[0] : "NULL");
    mysql_free_result(r);
    return out;
}

static void ok(MYSQL *m, const char *sql)
{
    if (mysql_query(m, sql)) fail_msg("%s: %s", sql, mysql_error(m));
    MYSQL_RES *r = mysql_store_result(m);
    if (r) mysql_free_result(r);
}

static unsigned long conn_id(weir_conn *c)
{
    return mysql_thread_id(weir_mysql_conn(c));
}

static void select_one_through_the_pool(void **state)
{
    (void)state;
    weir_options o;
    test_options(&o);
    weir_pool *p = my_pool(&o, "");
    char v[64], name[WEIR_NAME_MAX];
    snprintf(name, sizeof name, "mysql://app@127.0.0.1:%d/appdb", port);
    assert_string_equal(weir_pool_name(p), name); /* no password in the name */
    for (int i = 0; i < 3; i++) {
        weir_conn *c;
        assert_int_equal(weir_checkout(p, &c), 0);
        MYSQL *m = weir_mysql_conn(c);
        assert_non_null(m);
        assert_string_equal(q1(m, "SELECT 1", v, sizeof v), "1");
        assert_string_equal(q1(m, "SELECT current_user()", v, sizeof v), "app@%");
        assert_string_equal(q1(m, "SELECT @@character_set_client", v, sizeof v), "utf8mb4");
        assert_string_equal(mysql_character_set_name(m), "utf8mb4");
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
    char u[256], err[512];
    url(u, sizeof u, "not-the-password", "");
    weir_options o;
    test_options(&o);
    o.acquire_timeout_ms = 10000;
    weir_pool *p;
    assert_int_equal(weir_mysql_pool_create(&p, u, &o, NULL, err, sizeof err), 0);
    weir_conn *c;
    int64_t t0 = weir_now_ns();
    assert_int_equal(weir_checkout(p, &c), WEIR_ECONNECT);
    assert_true(ms_since(t0) < 2000); /* the server's answer, not a timeout */
    weir_pool_last_error(p, err, sizeof err);
    printf("wrong password: %s\n", err);
    if (!strstr(err, "ERROR 1045 (28000): Access denied for user 'app'@'127.0.0.1' (using "
                     "password: YES)"))
        fail_msg("unexpected error: %s", err);
    assert_null(strstr(err, "not-the-password"));
    weir_pool_destroy(p);
}

static void bad_urls_are_refused(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"mysql://app:pw@h/db?bogus=1", "unknown option \"bogus\""},
        {"mysql://app:pw@h/db?ssl_mode=sometimes", "ssl_mode \"sometimes\" is not"},
        {"mysql://app:pw@h:99999/db", "a bad port"},
        {"mysql://app:pw@h/db?reset", "option \"reset\" has no value"},
        {"mysql://app:p%zz@h/db", "a bad %-escape in the user or password"},
        {"postgres://app:pw@h/db", "it must start with mysql:// or mariadb://"},
        {"mysql://app:pw@h/db?connect_attrs=novalue", "connect_attrs wants key:value"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        weir_pool *p;
        char err[256] = "";
        assert_int_equal(weir_mysql_pool_create(&p, cases[i][0], NULL, NULL, err, sizeof err),
                         WEIR_EINVAL);
        assert_null(p);
        if (!strstr(err, cases[i][1])) fail_msg("%s: err: %s", cases[i][0], err);
        if (strstr(cases[i][0], ":pw@") && strstr(err, ":pw@")) fail_msg("password shown: %s", err);
    }
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
    char u[256], err[512];
    snprintf(u, sizeof u, "mysql://app:s3cret@127.0.0.1:%d/appdb", ntohs(a.sin_port));
    weir_options o;
    test_options(&o);
    o.connect_timeout_ms = 300;
    weir_pool *p;
    assert_int_equal(weir_mysql_pool_create(&p, u, &o, NULL, err, sizeof err), 0);
    weir_conn *c;
    int64_t t0 = weir_now_ns();
    assert_int_equal(weir_checkout_timeout(p, 5000, &c), WEIR_ECONNECT);
    int64_t took = ms_since(t0);
    if (took < 290 || took > 300 + slack_ms() + 100) fail_msg("took %lld ms", (long long)took);
    weir_pool_last_error(p, err, sizeof err);
    if (!strstr(err, "timeout expired connecting to mysql://app@127.0.0.1:"))
        fail_msg("err: %s", err);
    weir_pool_destroy(p);
    close(s);
}

static void nothing_listening_fails_with_the_librarys_message(void **state)
{
    (void)state;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t al = sizeof a;
    getsockname(s, (struct sockaddr *)&a, &al);
    close(s); /* a port nobody listens on */
    char u[256], err[512];
    snprintf(u, sizeof u, "mysql://app:s3cret@127.0.0.1:%d/appdb", ntohs(a.sin_port));
    weir_options o;
    test_options(&o);
    weir_pool *p;
    assert_int_equal(weir_mysql_pool_create(&p, u, &o, NULL, err, sizeof err), 0);
    weir_conn *c;
    assert_int_equal(weir_checkout_timeout(p, 2000, &c), WEIR_ECONNECT);
    weir_pool_last_error(p, err, sizeof err);
    printf("refused: %s\n", err);
    if (!strstr(err, "ERROR 2002 (HY000): Can't connect to server on '127.0.0.1'"))
        fail_msg("err: %s", err);
    weir_pool_destroy(p);
}

static void tls_is_used_and_verified(void **state)
{
    (void)state;
    weir_options o;
    test_options(&o);
    char q[512];
    /* preferred (the default) and required use the server's TLS */
    const char *modes[] = {"", "?ssl_mode=required"};
    for (int i = 0; i < 2; i++) {
        weir_pool *p = my_pool(&o, modes[i]);
        weir_conn *c;
        assert_int_equal(weir_checkout_timeout(p, 2000, &c), 0);
        assert_non_null(mysql_get_ssl_cipher(weir_mysql_conn(c)));
        weir_checkin(c);
        weir_pool_destroy(p);
    }
    /* verify_identity with the CA that signed the server's certificate */
    snprintf(q, sizeof q, "?ssl_mode=verify_identity&ssl_ca=%s/ca.crt", cluster_dir);
    weir_pool *p = my_pool(&o, q);
    weir_conn *c;
    assert_int_equal(weir_checkout_timeout(p, 2000, &c), 0);
    assert_non_null(mysql_get_ssl_cipher(weir_mysql_conn(c)));
    weir_checkin(c);
    weir_pool_destroy(p);
    /* ... and with a CA that signed nothing: refused, with the reason */
    snprintf(q, sizeof q, "?ssl_mode=verify_identity&ssl_ca=%s/other-ca.crt", cluster_dir);
    p = my_pool(&o, q);
    assert_int_equal(weir_checkout_timeout(p, 2000, &c), WEIR_ECONNECT);
    char err[512];
    weir_pool_last_error(p, err, sizeof err);
    printf("wrong CA: %s\n", err);
    if (!strstr(err, "ERROR 2026 (HY000): TLS/SSL error")) fail_msg("err: %s", err);
    weir_pool_destroy(p);
}

static void tls_required_fails_closed(void **state)
{
    (void)state;
    /* the same server restarted without TLS: required and verify_identity
     * must refuse, never go plain */
    assert_int_equal(sh("%s stop %s", script, cluster_dir), 0);
    assert_int_equal(sh("MY_SSL=0 %s start %s %d", script, cluster_dir, port), 0);
    weir_options o;
    test_options(&o);
    char q[512];
    snprintf(q, sizeof q, "?ssl_mode=verify_identity&ssl_ca=%s/ca.crt", cluster_dir);
    const char *strict[][2] = {
        {"?ssl_mode=required", "did not start TLS: connection closed"},
        {q, "SSL is required, but the server does not support it"},
    };
    for (int i = 0; i < 2; i++) {
        weir_pool *p = my_pool(&o, strict[i][0]);
        weir_conn *c;
        assert_int_equal(weir_checkout_timeout(p, 2000, &c), WEIR_ECONNECT);
        char err[512];
        weir_pool_last_error(p, err, sizeof err);
        printf("no TLS on the server, %s: %s\n", strict[i][0], err);
        if (!strstr(err, strict[i][1])) fail_msg("err: %s", err);
        weir_pool_destroy(p);
    }
    /* disabled and preferred connect in plain text */
    const char *modes[] = {"?ssl_mode=disabled", "?ssl_mode=preferred"};
    for (int i = 0; i < 2; i++) {
        weir_pool *p = my_pool(&o, modes[i]);
        weir_conn *c;
        assert_int_equal(weir_checkout_timeout(p, 2000, &c), 0);
        assert_null(mysql_get_ssl_cipher(weir_mysql_conn(c)));
        weir_checkin(c);
        weir_pool_destroy(p);
    }
    assert_int_equal(sh("%s stop %s", script, cluster_dir), 0);
    assert_int_equal(sh("%s start %s %d", script, cluster_dir, port), 0);
}

static void open_transaction_is_rolled_back(void **state)
{
    (void)state;
    const char *modes[] = {"", "?reset=transaction"};
    for (int mode = 0; mode < 2; mode++) {
        weir_options o;
        test_options(&o);
        o.max_size = 1;
        weir_pool *p = my_pool(&o, modes[mode]);
        weir_conn *c;
        char v[64];
        assert_int_equal(weir_checkout(p, &c), 0);
        ok(weir_mysql_conn(c), "CREATE TABLE IF NOT EXISTS t_rollback (x int) ENGINE=InnoDB");
        ok(weir_mysql_conn(c), "DELETE FROM t_rollback");
        ok(weir_mysql_conn(c), "BEGIN");
        ok(weir_mysql_conn(c), "INSERT INTO t_rollback VALUES (1)");
        unsigned long id = conn_id(c);
        weir_checkin(c); /* in a transaction: rolled back on the way in */
        assert_int_equal(weir_checkout(p, &c), 0);
        assert_int_equal(conn_id(c), id); /* the same session, clean */
        assert_string_equal(q1(weir_mysql_conn(c), "SELECT count(*) FROM t_rollback", v, sizeof v),
                            "0");
        assert_string_equal(q1(weir_mysql_conn(c), "SELECT @@in_transaction", v, sizeof v), "0");
        weir_checkin(c);
        assert_int_equal(pool_stats(p).created_total, 1);
        weir_pool_destroy(p);
    }
}

static void session_state_does_not_leak_to_the_next_user(void **state)
{
    (void)state;
    weir_options o;
    test_options(&o);
    o.max_size = 1;
    weir_pool *p = my_pool(&o, "");
    weir_conn *c;
    char v[128];
    assert_int_equal(weir_checkout(p, &c), 0);
    MYSQL *m = weir_mysql_conn(c);
    ok(m, "SET @secret = 'alice''s'");
    ok(m, "SET SESSION sql_mode = 'ANSI_QUOTES'");
    ok(m, "SET SESSION time_zone = '+05:00'");
    ok(m, "CREATE TEMPORARY TABLE t_tmp (x int)");
    unsigned long id = conn_id(c);
    weir_checkin(c);
    assert_int_equal(weir_checkout(p, &c), 0);
    m = weir_mysql_conn(c);
    assert_int_equal(conn_id(c), id); /* the same connection, reset (COM_RESET_CONNECTION) */
    assert_string_equal(q1(m, "SELECT @secret", v, sizeof v), "NULL");
    assert_null(strstr(q1(m, "SELECT @@session.sql_mode", v, sizeof v), "ANSI_QUOTES"));
    assert_string_not_equal(q1(m, "SELECT @@session.time_zone", v, sizeof v), "+05:00");
    assert_int_not_equal(mysql_query(m, "SELECT * FROM t_tmp"), 0);
    assert_int_equal(mysql_errno(m), 1146); /* ER_NO_SUCH_TABLE */
    weir_checkin(c);
    weir_pool_destroy(p);

    /* reset=transaction keeps the session as it was: documented, and shown */
    p = my_pool(&o, "?reset=transaction");
    assert_int_equal(weir_checkout(p, &c), 0);
    ok(weir_mysql_conn(c), "SET @kept = 7");
    weir_checkin(c);
    assert_int_equal(weir_checkout(p, &c), 0);
    assert_string_equal(q1(weir_mysql_conn(c), "SELECT @kept", v, sizeof v), "7");
    weir_checkin(c);
    weir_pool_destroy(p);
}

static void killed_connection_is_found_by_validation(void **state)
{
    (void)state;
    weir_options o;
    test_options(&o);
    o.max_size = 1;
    o.validate_idle_after_ms = 0; /* validate every checkout that was idle at all */
    weir_pool *p = my_pool(&o, "?reset=transaction");
    weir_conn *c;
    char v[64];
    assert_int_equal(weir_checkout(p, &c), 0);
    unsigned long id = conn_id(c);
    weir_checkin(c);
    assert_int_equal(sh("%s sql %s 'KILL CONNECTION %lu'", script, cluster_dir, id), 0);
    sleep_ms(20); /* the coarse clock must move for "idle longer than 0 ms" */
    assert_int_equal(weir_checkout(p, &c), 0);
    assert_int_not_equal(conn_id(c), id);
    assert_string_equal(q1(weir_mysql_conn(c), "SELECT 1", v, sizeof v), "1");
    weir_checkin(c);
    assert_int_equal(pool_stats(p).closed_total[WEIR_CLOSE_BROKEN], 1);
    weir_pool_destroy(p);
}

static void result_left_unread_closes_the_connection(void **state)
{
    (void)state;
    weir_options o;
    test_options(&o);
    o.max_size = 1;
    weir_pool *p = my_pool(&o, "");
    weir_conn *c;
    char v[64];
    assert_int_equal(weir_checkout(p, &c), 0);
    MYSQL *m = weir_mysql_conn(c);
    assert_int_equal(mysql_query(m, "SELECT seq FROM seq_1_to_100000"), 0);
    MYSQL_RES *r = mysql_use_result(m); /* rows stream; the caller reads one */
    assert_non_null(r);
    assert_non_null(mysql_fetch_row(r));
    unsigned long id = conn_id(c);
    weir_checkin(c); /* unknown state: closed, not handed on */
    mysql_free_result(r);
    assert_int_equal(weir_checkout(p, &c), 0);
    assert_int_not_equal(conn_id(c), id);
    assert_string_equal(q1(weir_mysql_conn(c), "SELECT 2", v, sizeof v), "2");
    weir_checkin(c);
    weir_pool_destroy(p);
}

static void registry_keys_mysql_and_mariadb_alike(void **state)
{
    (void)state;
    weir_options o;
    test_options(&o);
    weir_registry *reg;
    char err[256], a[256], b[256], v[64];
    assert_int_equal(weir_registry_create(&reg, &o, 0), 0);
    snprintf(a, sizeof a, "mysql://app:s3cret@127.0.0.1:%d/appdb", port);
    snprintf(b, sizeof b, "MariaDB://app:s3cret@127.0.0.1:%d/appdb", port);
    weir_pool *pa, *pb;
    assert_int_equal(weir_registry_acquire(reg, a, &pa, err, sizeof err), 0);
    assert_int_equal(weir_registry_acquire(reg, b, &pb, err, sizeof err), 0);
    assert_ptr_equal(pa, pb); /* one pool: the same server, spelt two ways */
    assert_int_equal(weir_registry_count(reg), 1);
    weir_conn *c;
    assert_int_equal(weir_checkout(pa, &c), 0);
    assert_string_equal(q1(weir_mysql_conn(c), "SELECT 3", v, sizeof v), "3");
    weir_checkin(c);
    size_t len;
    char *prom = weir_registry_prometheus(reg, &len);
    assert_non_null(prom);
    assert_null(strstr(prom, "s3cret"));
    assert_non_null(strstr(prom, "pool=\"mysql://app:***@127.0.0.1:"));
    free(prom);
    weir_registry_release(reg, pa);
    weir_registry_release(reg, pb);
    weir_registry_destroy(reg);
}

/* ---- MariaDB stopped and started under load ---- */
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
            MYSQL *m = weir_mysql_conn(c);
            MYSQL_RES *r = NULL;
            if (mysql_query(m, "SELECT 1") == 0 && (r = mysql_store_result(m))) {
                l->ok++;
                atomic_store(l->last_ok_ns, weir_now_ns());
            } else {
                l->query_errors++; /* the server went away under us: the driver sees it */
            }
            if (r) mysql_free_result(r);
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
    weir_pool *p = my_pool(&o, "?read_timeout=2");
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
    assert_int_equal(sh("%s start %s %d", script, cluster_dir, port), 0); /* returns when up */
    int64_t up_at = weir_now_ns();
    bool recovered = WAIT_FOR(atomic_load(&last_ok) > up_at, 3000);
    int64_t recovery_ms = (atomic_load(&last_ok) - up_at) / 1000000;
    sleep_ms(300);
    atomic_store(&stop, true);
    for (int i = 0; i < N; i++) pthread_join(l[i].th, NULL);
    int oks = 0, econnect = 0, qerr = 0, other = 0;
    int64_t longest = 0;
    const char *msg = "";
    for (int i = 0; i < N; i++) {
        oks += l[i].ok;
        econnect += l[i].econnect;
        qerr += l[i].query_errors;
        other += l[i].other;
        if (l[i].longest_ms > longest) longest = l[i].longest_ms;
        if (l[i].last_error[0]) msg = l[i].last_error;
    }
    printf("restart: %d ok, %d fail-fast errors, %d query errors, %d other; longest call %lld ms; "
           "down %lld ms; served again %lld ms after MariaDB accepted connections\n"
           "restart: error seen while down: %s\n",
           oks, econnect, qerr, other, (long long)longest, (long long)((up_at - down_at) / 1000000),
           (long long)recovery_ms, msg);
    assert_true(recovered);
    assert_true(recovery_ms <= 1000 + slack_ms());
    assert_true(econnect > 0);  /* waiters failed fast while it was down ... */
    assert_int_equal(other, 0); /* ... and nobody hung until a timeout */
    assert_true(longest < 2500);
    if (!strstr(msg, "ERROR 2002 (HY000)")) fail_msg("expected libmariadb's message, got: %s", msg);
    weir_pool_destroy(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(select_one_through_the_pool),
        cmocka_unit_test(wrong_password_fails_at_once),
        cmocka_unit_test(bad_urls_are_refused),
        cmocka_unit_test(connect_timeout_against_a_silent_listener),
        cmocka_unit_test(nothing_listening_fails_with_the_librarys_message),
        cmocka_unit_test(tls_is_used_and_verified),
        cmocka_unit_test(tls_required_fails_closed),
        cmocka_unit_test(open_transaction_is_rolled_back),
        cmocka_unit_test(session_state_does_not_leak_to_the_next_user),
        cmocka_unit_test(killed_connection_is_found_by_validation),
        cmocka_unit_test(result_left_unread_closes_the_connection),
        cmocka_unit_test(registry_keys_mysql_and_mariadb_alike),
        cmocka_unit_test(restart_under_load),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
