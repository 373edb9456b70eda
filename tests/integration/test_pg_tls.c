/* test_pg_tls.c — the PostgreSQL driver's TLS (libpq's sslmode) against a
 * real PostgreSQL 15 with ssl = on that accepts TCP logins over TLS only
 * (hostssl), made by pg_cluster.sh with a throwaway CA: verify-full works
 * and is TLS on the server's side (pg_stat_ssl), a wrong CA and a host name
 * mismatch are refused with libpq's message, and nothing falls back to
 * plain text. */
#include "helpers.h"

#include <libpq-fe.h>

#include "cluster.h"
#include "weir/weir_pg.h"

static int group_setup(void **state)
{
    (void)state;
    return start_cluster("PG_SSL=1 ", 7919);
}

/* A pool on host with these TLS settings; its first checkout's result. */
static int try_pool(const char *host, const char *tls, weir_pool **out, char *err, size_t errlen)
{
    char ci[768];
    snprintf(ci, sizeof ci, "host=%s port=%d dbname=appdb user=app password=s3cret %s", host, port,
             tls);
    weir_options o;
    test_options(&o);
    o.acquire_timeout_ms = 10000;
    int rc = weir_pg_pool_create(out, ci, NULL, &o, NULL, err, errlen);
    if (rc) fail_msg("weir_pg_pool_create: %s: %s", weir_err_name(rc), err);
    weir_conn *c;
    rc = weir_checkout(*out, &c);
    if (rc == 0) {
        PGconn *pg = weir_pg_conn(c);
        PGresult *r = PQexec(pg, "SELECT ssl::text || ' ' || version FROM pg_stat_ssl "
                                 "WHERE pid = pg_backend_pid()");
        if (PQresultStatus(r) != PGRES_TUPLES_OK) fail_msg("%s", PQresultErrorMessage(r));
        snprintf(err, errlen, "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
        weir_checkin(c);
    } else {
        weir_pool_last_error(*out, err, errlen);
    }
    return rc;
}

static void expect_error(const char *err, const char *want)
{
    if (!strstr(err, want)) fail_msg("expected \"%s\" in: %s", want, err);
}

static void verify_full_is_tls_on_the_server(void **state)
{
    (void)state;
    char tls[512], err[512];
    weir_pool *p;
    snprintf(tls, sizeof tls, "sslmode=verify-full sslrootcert=%s/ca.crt", cluster_dir);
    assert_int_equal(try_pool("localhost", tls, &p, err, sizeof err), 0);
    expect_error(err, "true TLSv1.3"); /* pg_stat_ssl: ssl = t, the protocol */
    weir_pool_destroy(p);
    /* the certificate names 127.0.0.1 too */
    assert_int_equal(try_pool("127.0.0.1", tls, &p, err, sizeof err), 0);
    expect_error(err, "true");
    weir_pool_destroy(p);
}

static void require_never_falls_back(void **state)
{
    (void)state;
    char err[512];
    weir_pool *p;
    assert_int_equal(try_pool("127.0.0.1", "sslmode=require", &p, err, sizeof err), 0);
    expect_error(err, "true");
    weir_pool_destroy(p);
    /* libpq's default, prefer, takes TLS where the server offers it */
    assert_int_equal(try_pool("127.0.0.1", "", &p, err, sizeof err), 0);
    expect_error(err, "true");
    weir_pool_destroy(p);
}

static void wrong_ca_is_refused(void **state)
{
    (void)state;
    char tls[512], err[512];
    weir_pool *p;
    snprintf(tls, sizeof tls, "sslmode=verify-ca sslrootcert=%s/other-ca.crt", cluster_dir);
    int64_t t0 = weir_now_ns();
    assert_int_equal(try_pool("localhost", tls, &p, err, sizeof err), WEIR_ECONNECT);
    assert_true(ms_since(t0) < 5000); /* libpq's answer, not a timeout */
    expect_error(err, "certificate verify failed");
    assert_null(strstr(err, "s3cret")); /* masked */
    weir_pool_destroy(p);
}

static void host_name_mismatch_is_refused(void **state)
{
    (void)state;
    char tls[512], err[512];
    weir_pool *p;
    /* connect to 127.0.0.1, but verify the name "db.example.org" */
    snprintf(tls, sizeof tls, "hostaddr=127.0.0.1 sslmode=verify-full sslrootcert=%s/ca.crt",
             cluster_dir);
    assert_int_equal(try_pool("db.example.org", tls, &p, err, sizeof err), WEIR_ECONNECT);
    expect_error(err, "does not match host name \"db.example.org\"");
    weir_pool_destroy(p);
}

static void plain_text_is_refused_by_hostssl(void **state)
{
    (void)state;
    char err[512];
    weir_pool *p;
    assert_int_equal(try_pool("127.0.0.1", "sslmode=disable", &p, err, sizeof err), WEIR_ECONNECT);
    expect_error(err, "no pg_hba.conf entry for host \"127.0.0.1\"");
    expect_error(err, "no encryption");
    weir_pool_destroy(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(verify_full_is_tls_on_the_server),
        cmocka_unit_test(require_never_falls_back),
        cmocka_unit_test(wrong_ca_is_refused),
        cmocka_unit_test(host_name_mismatch_is_refused),
        cmocka_unit_test(plain_text_is_refused_by_hostssl),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
