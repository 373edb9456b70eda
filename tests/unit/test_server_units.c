/* test_server_units.c — the server's pure parts: config reading, SCRAM, md5, wire framing,
 * worker 0's rule for short connections. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/auth.h"
#include "core/config.h"
#include "core/server.h"
#include "core/worker.h"
#include "pg/prep.h"
#include "pg/proto.h"

static char logbuf[4096];

static void cap_log(void *ud, bool error, const char *msg)
{
    (void)ud;
    size_t n = strlen(logbuf);
    snprintf(logbuf + n, sizeof logbuf - n, "%s %s\n", error ? "E" : "W", msg);
}

static const char *write_file(const char *name, const char *text)
{
    static char path[512];
    const char *dir = getenv("WEIR_TEST_TMP") ? getenv("WEIR_TEST_TMP") : "/tmp";
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_config_defaults_and_values(void **state)
{
    (void)state;
    logbuf[0] = '\0';
    const char *p =
        write_file("u1.ini", "[databases]\n"
                             "appdb = host=db1 port=6543 dbname=real user=u password='p w'\n"
                             "* = host=fallback\n"
                             "[users]\n"
                             "bob = pool_mode=session max_user_connections=3\n"
                             "[pgbouncer]\n"
                             "pool_mode = transaction\n"
                             "query_wait_timeout = 0.5\n"
                             "server_lifetime = 2min\n"
                             "admin_users = alice, bob\n"
                             "workers = 3\n");
    cfg c;
    assert_int_equal(cfg_load(&c, p, cap_log, NULL), 0);
    assert_string_equal(logbuf, "");
    assert_int_equal(c.pool_mode, POOL_TRANSACTION);
    assert_int_equal(c.query_wait_timeout, 500);
    assert_int_equal(c.server_lifetime, 120000);
    assert_int_equal(c.listen_port, 6432);     /* PgBouncer's default */
    assert_int_equal(c.default_pool_size, 20); /* PgBouncer's default */
    assert_int_equal(c.auth_type, AUTH_MD5);   /* PgBouncer's default */
    assert_string_equal(c.server_reset_query, "DISCARD ALL");
    assert_int_equal(c.workers, 3);
    const cfg_db *d = cfg_find_db(&c, "appdb");
    assert_non_null(d);
    assert_string_equal(d->host, "db1");
    assert_int_equal(d->port, 6543);
    assert_string_equal(d->dbname, "real");
    assert_string_equal(d->password, "p w");
    const cfg_db *star = cfg_find_db(&c, "other");
    assert_non_null(star);
    assert_string_equal(star->host, "fallback");
    const cfg_user *u = cfg_find_user(&c, "bob");
    assert_non_null(u);
    assert_int_equal(u->pool_mode, POOL_SESSION);
    assert_int_equal(u->max_user_connections, 3);
    assert_true(cfg_list_has(c.admin_users, "bob"));
    assert_false(cfg_list_has(c.admin_users, "bo"));
    char buf[64];
    assert_int_equal(cfg_get(&c, "query_wait_timeout", buf, sizeof buf), 0);
    assert_string_equal(buf, "0.500");
    char why[128];
    assert_int_equal(cfg_set(&c, "default_pool_size", "x", why, sizeof why), -1);
    assert_string_equal(why, "not an integer");
    assert_int_equal(c.default_pool_size, 20); /* unchanged */
    assert_int_equal(cfg_set(&c, "default_pool_size", "7", why, sizeof why), 0);
    assert_int_equal(c.default_pool_size, 7);
    cfg_free(&c);
}

/* Thousands of databases, [users] entries and auth_file lines are found by
 * hash: each name finds its own entry (the first of a name written twice),
 * a name not there finds none (a database's falls back to "*"), and so
 * after an auth_file reload and in a copy (RELOAD, SET). */
static void test_config_lookups_by_name_at_scale(void **state)
{
    (void)state;
    enum { N = 3000 };
    const char *dir = getenv("WEIR_TEST_TMP") ? getenv("WEIR_TEST_TMP") : "/tmp";
    char authp[512], inip[512];
    snprintf(authp, sizeof authp, "%s/u_scale_auth.txt", dir);
    snprintf(inip, sizeof inip, "%s/u_scale.ini", dir);
    FILE *f = fopen(authp, "w");
    assert_non_null(f);
    for (int i = 0; i < N; i++) fprintf(f, "\"user%d\" \"pw%d\"\n", i, i);
    fprintf(f, "\"user7\" \"second\"\n"); /* the first line of a name is the one used */
    fclose(f);
    f = fopen(inip, "w");
    assert_non_null(f);
    fprintf(f, "[databases]\n");
    for (int i = 0; i < N; i++) fprintf(f, "db%d = host=h%d dbname=real%d\n", i, i, i);
    fprintf(f, "db5 = host=again\n* = host=fallback\n[users]\n"); /* db5: the later line */
    for (int i = 0; i < N; i++) fprintf(f, "u%d = pool_size=%d\n", i, i % 50 + 1);
    fprintf(f, "u9 = pool_size=77\n"); /* a second entry of a user: the first is found */
    fprintf(f, "[pgbouncer]\nauth_file = %s\n", authp);
    fclose(f);
    cfg c;
    logbuf[0] = '\0';
    assert_int_equal(cfg_load(&c, inip, cap_log, NULL), 0);
    assert_non_null(c.db_ix.slot); /* found by hash, not by a walk */
    assert_non_null(c.user_ix.slot);
    assert_non_null(c.secret_ix.slot);
    cfg copy;
    assert_int_equal(cfg_copy(&copy, &c), 0);
    for (int round = 0; round < 2; round++) {
        const cfg *k = round == 1 ? &copy : &c;
        char name[64], want[64];
        for (int i = 0; i < N; i++) {
            snprintf(name, sizeof name, "db%d", i);
            const cfg_db *d = cfg_find_db_exact(k, name);
            assert_non_null(d);
            assert_string_equal(d->name, name);
            snprintf(want, sizeof want, "h%d", i);
            assert_string_equal(d->host, i == 5 ? "again" : want);
            snprintf(name, sizeof name, "u%d", i);
            const cfg_user *u = cfg_find_user(k, name);
            assert_non_null(u);
            assert_string_equal(u->name, name);
            assert_int_equal(u->pool_size, i % 50 + 1);
            snprintf(name, sizeof name, "user%d", i);
            const cfg_secret *sc = cfg_find_secret(k, name);
            assert_non_null(sc);
            assert_string_equal(sc->user, name);
            snprintf(want, sizeof want, "pw%d", i);
            assert_string_equal(sc->secret, want);
        }
        assert_null(cfg_find_db_exact(k, "db3000"));
        assert_string_equal(cfg_find_db(k, "db3000")->host, "fallback");
        assert_string_equal(cfg_find_db(k, "")->host, "fallback");
        assert_null(cfg_find_user(k, "u-1"));
        assert_null(cfg_find_user(k, ""));
        assert_null(cfg_find_secret(k, "user30000"));
        assert_null(cfg_find_secret(k, "User1"));
        if (round == 1) {
            /* the auth_file again, shorter: the old lines are not found */
            f = fopen(authp, "w");
            assert_non_null(f);
            for (int i = 0; i < 20; i++) fprintf(f, "\"user%d\" \"new%d\"\n", i, i);
            fclose(f);
            assert_int_equal(cfg_load_auth_file(&c, cap_log, NULL), 0);
            assert_string_equal(cfg_find_secret(&c, "user19")->secret, "new19");
            assert_null(cfg_find_secret(&c, "user20"));
            assert_null(cfg_find_secret(&c, "user2999"));
            /* and one so short that it is walked */
            f = fopen(authp, "w");
            assert_non_null(f);
            fprintf(f, "\"solo\" \"x\"\n");
            fclose(f);
            assert_int_equal(cfg_load_auth_file(&c, cap_log, NULL), 0);
            assert_null(c.secret_ix.slot);
            assert_string_equal(cfg_find_secret(&c, "solo")->secret, "x");
            assert_null(cfg_find_secret(&c, "user1"));
            /* the copy kept its own */
            assert_string_equal(cfg_find_secret(&copy, "user2999")->secret, "pw2999");
        }
    }
    cfg_free(&copy);
    cfg_free(&c);
    unlink(authp);
    unlink(inip);
}

static void test_config_errors_name_file_line(void **state)
{
    (void)state;
    cfg c;
    logbuf[0] = '\0';
    const char *p = write_file("u2.ini", "[pgbouncer]\nlisten_port = 70000\n");
    assert_int_equal(cfg_load(&c, p, cap_log, NULL), -1);
    assert_non_null(
        strstr(logbuf, "u2.ini:2: invalid value \"70000\" for listen_port: out of range"));

    logbuf[0] = '\0';
    p = write_file("u3.ini", "[pgbouncer]\nauth_type = pam\n");
    assert_int_equal(cfg_load(&c, p, cap_log, NULL), -1);
    assert_non_null(strstr(logbuf,
                           "u3.ini:2: invalid value \"pam\" for auth_type: auth_type pam is not "
                           "supported by weir"));

    logbuf[0] = '\0';
    p = write_file("u3b.ini", "[pgbouncer]\nauth_type = hba\n");
    assert_int_equal(cfg_load(&c, p, cap_log, NULL), -1);
    assert_non_null(strstr(logbuf, "auth_type = hba needs auth_hba_file"));

    logbuf[0] = '\0';
    p = write_file("u4.ini", "[pgbouncer]\nmystery = 1\nserver_round_robin = 1\nlisten_port\n");
    assert_int_equal(cfg_load(&c, p, cap_log, NULL), -1);
    assert_non_null(strstr(logbuf, "W "));
    assert_non_null(strstr(logbuf, "u4.ini:2: unknown configuration key \"mystery\"; ignored"));
    assert_non_null(
        strstr(logbuf, "u4.ini:3: server_round_robin is not supported by weir; ignored"));
    assert_non_null(strstr(logbuf, "u4.ini:4: syntax error: expected key = value"));

    logbuf[0] = '\0';
    p = write_file("u5.ini", "[databases]\nx = host='unterminated\n");
    assert_int_equal(cfg_load(&c, p, cap_log, NULL), -1);
    assert_non_null(strstr(logbuf, "u5.ini:2: database \"x\": unterminated quoted string"));

    logbuf[0] = '\0';
    p = write_file("u6.ini", "[pgbouncer]\nauth_file = /nonexistent/users.txt\n");
    assert_int_equal(cfg_load(&c, p, cap_log, NULL), -1);
    assert_non_null(strstr(logbuf, "cannot open auth_file /nonexistent/users.txt"));
}

static void test_auth_file(void **state)
{
    (void)state;
    const char *af =
        write_file("u7.txt", "\"alice\" \"pw\"\n; comment\n\"bo\"\"b\" \"md5abc\"\nbroken\n");
    char ini[600];
    snprintf(ini, sizeof ini, "[pgbouncer]\nauth_file = %s\n", af);
    char p[512];
    snprintf(p, sizeof p, "%s", write_file("u7.ini", ini));
    cfg c;
    logbuf[0] = '\0';
    assert_int_equal(cfg_load(&c, p, cap_log, NULL), -1); /* line 4 is broken */
    assert_non_null(strstr(logbuf, "u7.txt:4: syntax error: expected \"user\" \"password\""));
    (void)write_file("u7.txt", "\"alice\" \"pw\"\n; comment\n\"bo\"\"b\" \"md5abc\"\n");
    assert_int_equal(cfg_load(&c, p, cap_log, NULL), 0);
    assert_string_equal(cfg_find_secret(&c, "alice")->secret, "pw");
    assert_string_equal(cfg_find_secret(&c, "bo\"b")->secret, "md5abc");
    assert_null(cfg_find_secret(&c, "carol"));
    cfg_free(&c);
}

/* More bad lines, and the words each gets: refused (-1) or warned (0). */
static void test_config_messages(void **state)
{
    (void)state;
    static const struct {
        const char *ini;
        int rc;
        const char *says;
    } cases[] = {
        {"listen_port = 6432\n", -1, "u8.ini:1: key \"listen_port\" outside of any section"},
        {"[databases]\nl = sqlite:/tmp/x.db\n", -1,
         "u8.ini:2: database \"l\": an SQLite database is written sqlite:///path/to/file.db"},
        {"[databases]\nl = sqlite://:memory:\n", -1,
         "database \"l\": \":memory:\" would give each connection its own empty database"},
        {"[databases]\nl = sqlite:///tmp/x.db host=h\n", -1,
         "database \"l\": \"host\" does not apply to an SQLite database (pool_size, create, "
         "init do)"},
        {"[databases]\n* = sqlite:///tmp/x.db\n", -1,
         "database \"*\": the fallback database \"*\" cannot be SQLite"},
        {"[databases]\nm = mysql://u@h/db host=h\n", -1,
         "database \"m\": \"host\" does not apply to a MySQL database"},
        {"[peers]\n0 = host=h\n", -1, "u8.ini:2: [peers] \"0\": a peer id must be 1..16383"},
        {"[peers]\n16384 = host=h\n", -1, "[peers] \"16384\": a peer id must be 1..16383"},
        {"[pgbouncer]\nclient_tls_sslmode = require\n", -1,
         "client_tls_sslmode = require needs client_tls_key_file and client_tls_cert_file"},
        {"[pgbouncer]\nclient_tls_sslmode = verify-ca\nclient_tls_key_file = k\n"
         "client_tls_cert_file = c\n",
         -1,
         "client_tls_sslmode = verify-ca needs client_tls_ca_file (to check client "
         "certificates against)"},
        {"[pgbouncer]\nclient_tls_sslmode = sure\n", -1,
         "client_tls_sslmode must be disable, allow, prefer, require, verify-ca or verify-full"},
        {"[pgbouncer]\nauth_ldap_options = ldapserver=x\n", 0,
         "u8.ini:2: auth_ldap_options is not supported by weir; ignored"},
        {"[pgbouncer]\nauth_type = any\n[databases]\nd = host=h\n", 0,
         "auth_type = any: database \"d\" has no user=, clients' names are used"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cfg c;
        logbuf[0] = '\0';
        const char *p = write_file("u8.ini", cases[i].ini);
        int rc = cfg_load(&c, p, cap_log, NULL);
        if (rc != cases[i].rc || !strstr(logbuf, cases[i].says))
            fail_msg("case %zu: rc %d, log: %s", i, rc, logbuf);
        if (rc == 0) cfg_free(&c);
    }
    /* a password over 65 535 bytes in auth_file */
    char *big = malloc(CFG_SECRET_MAX + 32);
    assert_non_null(big);
    int n = snprintf(big, 32, "\"alice\" \"");
    memset(big + n, 'x', CFG_SECRET_MAX + 1);
    snprintf(big + n + CFG_SECRET_MAX + 1, 4, "\"\n");
    const char *af = write_file("u9.txt", big);
    free(big);
    char ini[600];
    snprintf(ini, sizeof ini, "[pgbouncer]\nauth_file = %s\n", af);
    cfg c;
    logbuf[0] = '\0';
    assert_int_equal(cfg_load(&c, write_file("u9.ini", ini), cap_log, NULL), -1);
    assert_non_null(
        strstr(logbuf, "u9.txt:1: the password of \"alice\" is longer than 65535 bytes"));
}

/* RFC 7677's example, from the client's side. */
static void test_scram_rfc7677_client(void **state)
{
    (void)state;
    scram_client sc;
    memset(&sc, 0, sizeof sc);
    snprintf(sc.nonce, sizeof sc.nonce, "rOprNGfwEbeRWgbNEkqO");
    snprintf(sc.client_first_bare, sizeof sc.client_first_bare, "n=user,r=rOprNGfwEbeRWgbNEkqO");
    const char *sf =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    char out[256];
    const char *why;
    int n = scram_client_final(&sc, "pencil", sf, strlen(sf), out, sizeof out, &why);
    assert_true(n > 0);
    assert_string_equal(out, "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                             "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
    const char *fin = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
    assert_int_equal(scram_client_verify(&sc, fin, strlen(fin)), 0);
    const char *bad = "v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
    assert_int_equal(scram_client_verify(&sc, bad, strlen(bad)), -1);
}

/* SASL messages as long as PostgreSQL takes; nonces it would refuse; a
 * client-final whose proof comes first (once read before the message). */
static void test_scram_server_limits(void **state)
{
    (void)state;
    scram_server ss;
    memset(&ss, 0, sizeof ss);
    assert_int_equal(scram_secret_for_user("u", "pw", 4096, &ss.sec), 0);
    const char *why;
    size_t n = 20000;
    char *m = malloc(65537);
    assert_non_null(m);
    memcpy(m, "n,,n=,r=", 8);
    memset(m + 8, 'k', n - 8);
    m[n] = '\0';
    assert_int_equal(scram_server_first(&ss, m, n, &why), 0);
    assert_int_equal(strncmp(ss.server_first, "r=kkkk", 6), 0);
    assert_true(strlen(ss.nonce) > n - 8);
    char out[128];
    assert_int_equal(scram_server_final(&ss, "p=AAAA,c=biws,r=x", 17, out, sizeof out, &why), -1);
    assert_int_equal(scram_server_first(&ss, "n,,n=,r=a\001b", 11, &why), -1);
    assert_string_equal(why, "non-printable characters in SCRAM nonce");
    assert_int_equal(scram_server_first(&ss, "n,,n=,r=a,b", 11, &why), 0); /* nonce "a" */
    memset(m + 8, 'k', 65536 - 8);
    assert_int_equal(scram_server_first(&ss, m, 65536, &why), -1); /* over 65 535 */
    /* channel binding: a downgrade ("y" while weir offers -PLUS) and binding
     * data under the plain mechanism are refused */
    ss.cbind_len = 32;
    assert_int_equal(scram_server_first(&ss, "y,,n=,r=abc", 11, &why), -1);
    assert_string_equal(why, "SCRAM channel binding negotiation error");
    assert_int_equal(scram_server_first(&ss, "p=tls-server-end-point,,n=,r=abc", 32, &why), -1);
    ss.plus = true;
    assert_int_equal(scram_server_first(&ss, "n,,n=,r=abc", 11, &why), -1);
    assert_string_equal(why, "channel binding is required by SCRAM-SHA-256-PLUS");
    assert_int_equal(scram_server_first(&ss, "p=tls-unique,,n=,r=abc", 22, &why), -1);
    assert_string_equal(why, "unsupported SCRAM channel-binding type");
    assert_int_equal(scram_server_first(&ss, "p=tls-server-end-point,,n=,r=abc", 32, &why), 0);
    free(m);
    scram_server_clear(&ss);
}

/* The words each side gives a bad SCRAM message: the client's final with
 * the wrong binding, the wrong nonce or no proof; a server's first with a
 * nonce that does not extend ours, no nonce, or too many iterations. */
static void test_scram_bad_messages(void **state)
{
    (void)state;
    scram_server ss;
    memset(&ss, 0, sizeof ss);
    assert_int_equal(scram_secret_for_user("u", "pw", 4096, &ss.sec), 0);
    const char *why;
    assert_int_equal(scram_server_first(&ss, "n,,n=,r=abc", 11, &why), 0);
    char fin[256], out[128];
    /* c=eSws is "y,,": not the header this client sent ("n,,", c=biws) */
    int n = snprintf(fin, sizeof fin, "c=eSws,r=%s,p=AAAA", ss.nonce);
    assert_int_equal(scram_server_final(&ss, fin, (size_t)n, out, sizeof out, &why), -1);
    assert_string_equal(why, "SCRAM channel binding check failed");
    n = snprintf(fin, sizeof fin, "c=biws,r=%sX,p=AAAA", ss.nonce);
    assert_int_equal(scram_server_final(&ss, fin, (size_t)n, out, sizeof out, &why), -1);
    assert_string_equal(why, "SCRAM nonce mismatch");
    n = snprintf(fin, sizeof fin, "c=biws,r=%s", ss.nonce);
    assert_int_equal(scram_server_final(&ss, fin, (size_t)n, out, sizeof out, &why), -1);
    assert_string_equal(why, "malformed SCRAM message");
    scram_server_clear(&ss);

    scram_client sc;
    char first[128];
    assert_true(scram_client_first(&sc, first, sizeof first) > 0);
    char sf[256], cf[256];
    n = snprintf(sf, sizeof sf, "r=someone-else%s,s=QUJD,i=4096", sc.nonce);
    why = NULL;
    assert_int_equal(scram_client_final(&sc, "pw", sf, (size_t)n, cf, sizeof cf, &why), -1);
    assert_string_equal(why, "SCRAM nonce mismatch from the server");
    why = NULL;
    assert_int_equal(scram_client_final(&sc, "pw", "s=QUJD,i=4096", 13, cf, sizeof cf, &why), -1);
    assert_string_equal(why, "malformed SCRAM message from the server");
    n = snprintf(sf, sizeof sf, "r=%sxyz,s=QUJD,i=%d", sc.nonce, SCRAM_MAX_ITER + 1);
    why = NULL;
    assert_int_equal(scram_client_final(&sc, "pw", sf, (size_t)n, cf, sizeof cf, &why), -1);
    assert_string_equal(why, "the server asks for more SCRAM iterations than weir allows");
}

/* Our server side against our client side, with right and wrong passwords. */
static void test_scram_round_trip(void **state)
{
    (void)state;
    for (int wrong = 0; wrong < 2; wrong++) {
        scram_server ss;
        memset(&ss, 0, sizeof ss);
        assert_int_equal(scram_secret_for_user("u", "s3cret", 4096, &ss.sec), 0);
        scram_client sc;
        char first[128], sfirst[256], cfinal[256], sfinal[128];
        const char *why;
        int n = scram_client_first(&sc, first, sizeof first);
        assert_true(n > 0);
        assert_int_equal(scram_server_first(&ss, first, (size_t)n, &why), 0);
        snprintf(sfirst, sizeof sfirst, "%s", ss.server_first);
        n = scram_client_final(&sc, wrong ? "guess" : "s3cret", sfirst, strlen(sfirst), cfinal,
                               sizeof cfinal, &why);
        assert_true(n > 0);
        int rc = scram_server_final(&ss, cfinal, (size_t)n, sfinal, sizeof sfinal, &why);
        if (wrong) {
            assert_int_equal(rc, -1);
            assert_string_equal(why, "password authentication failed");
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(scram_client_verify(&sc, sfinal, strlen(sfinal)), 0);
        }
        scram_server_clear(&ss);
    }
    /* A secret as PostgreSQL stores it parses; junk does not. */
    scram_secret s;
    assert_int_equal(scram_secret_parse("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
                                        "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
                                        "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
                                        &s),
                     0);
    assert_int_equal(s.iter, 4096);
    assert_int_equal(s.saltlen, 16);
    assert_int_equal(scram_secret_parse("SCRAM-SHA-256$x:y$z", &s), -1);
    assert_int_equal(scram_secret_parse("md5abc", &s), -1);
}

/* Secrets of plain passwords are kept per user and password: the same
 * password gives the same secret again, a changed password never the old
 * one (a proof with the old password fails after the change). */
static bool scram_login(const char *user, const char *stored_pw, const char *client_pw)
{
    scram_server ss;
    memset(&ss, 0, sizeof ss);
    if (scram_secret_for_user(user, stored_pw, 4096, &ss.sec)) return false;
    scram_client sc;
    char first[128], sfirst[256], cfinal[256], sfinal[128];
    const char *why;
    int n = scram_client_first(&sc, first, sizeof first);
    bool ok = n > 0 && scram_server_first(&ss, first, (size_t)n, &why) == 0;
    if (ok) {
        snprintf(sfirst, sizeof sfirst, "%s", ss.server_first);
        n = scram_client_final(&sc, client_pw, sfirst, strlen(sfirst), cfinal, sizeof cfinal, &why);
        ok = n > 0 && scram_server_final(&ss, cfinal, (size_t)n, sfinal, sizeof sfinal, &why) == 0;
    }
    scram_server_clear(&ss);
    return ok;
}

static void test_scram_secret_cache(void **state)
{
    (void)state;
    scram_secret a, b, c;
    uint64_t d0 = scram_secrets_derived();
    assert_int_equal(scram_secret_for_user("cu", "first", 4096, &a), 0);
    assert_int_equal(scram_secret_for_user("cu", "first", 4096, &b), 0);
    assert_memory_equal(&a, &b, sizeof a);
    assert_int_equal(scram_secrets_derived(), d0 + 1); /* the second was kept */
    assert_int_equal(scram_secret_for_user("cu", "second", 4096, &c), 0);
    assert_int_equal(scram_secrets_derived(), d0 + 2); /* a new password: derived */
    assert_memory_equal(a.salt, c.salt, 16);           /* the user's salt */
    assert_memory_not_equal(a.stored, c.stored, 32);
    assert_memory_not_equal(a.server, c.server, 32);
    assert_int_equal(scram_secret_for_user("other", "first", 4096, &b), 0); /* another user */
    assert_memory_not_equal(a.stored, b.stored, 32);
    /* scram_iterations changed: derived afresh with the new count, not the kept one */
    uint64_t di = scram_secrets_derived();
    assert_int_equal(scram_secret_for_user("cu", "first", 5000, &b), 0);
    assert_int_equal(scram_secrets_derived(), di + 1);
    assert_int_equal(b.iter, 5000);
    assert_memory_equal(a.salt, b.salt, 16);
    assert_memory_not_equal(a.stored, b.stored, 32);
    scram_secret m;
    assert_int_equal(scram_secret_mock("nobody", 5000, &m), 0); /* an unknown user's too */
    assert_int_equal(m.iter, 5000);
    assert_int_equal(scram_secret_for_user("cu", "first", 0, &b), -1);
    assert_true(scram_login("cu", "first", "first"));
    assert_true(scram_login("cu", "second", "second"));
    assert_false(scram_login("cu", "second", "first"));
    assert_false(scram_login("cu", "first", "second"));
    /* many users: slots are shared, a collision recomputes, never mixes */
    for (int i = 0; i < 3000; i += 97) {
        char u[16];
        snprintf(u, sizeof u, "u%d", i);
        assert_true(scram_login(u, "pw", "pw"));
        assert_false(scram_login(u, "pw", "px"));
    }
    assert_true(scram_login("cu", "first", "first"));
    uint64_t d1 = scram_secrets_derived();
    for (int i = 0; i < 10; i++) assert_true(scram_login("cu", "first", "first"));
    assert_true(scram_secrets_derived() - d1 <= 1); /* at most once more (a collision) */
}

/* The keys weir logs in to a server with are kept per password, salt and
 * iteration count: a second login with the same ones derives nothing, a
 * wrong password or another salt (another role's secret) is derived anew
 * and never answered with kept keys. */
static void test_scram_client_key_cache(void **state)
{
    (void)state;
    uint64_t k0 = scram_client_keys_derived();
    assert_true(scram_login("ck", "pw1", "pw1"));
    assert_int_equal(scram_client_keys_derived(), k0 + 1);
    for (int i = 0; i < 10; i++) assert_true(scram_login("ck", "pw1", "pw1"));
    assert_int_equal(scram_client_keys_derived(), k0 + 1); /* kept */
    assert_false(scram_login("ck", "pw1", "pw2"));         /* another password: derived, refused */
    assert_int_equal(scram_client_keys_derived(), k0 + 2);
    assert_false(scram_login("ck", "pw1", "pw2"));
    assert_int_equal(scram_client_keys_derived(), k0 + 2); /* its keys were kept too */
    assert_true(scram_login("ck", "pw1", "pw1")); /* (derived again if the two shared a slot) */
    uint64_t k1 = scram_client_keys_derived();
    assert_true(scram_login("ck2", "pw1", "pw1")); /* the same password, another salt */
    assert_int_equal(scram_client_keys_derived(), k1 + 1);
    for (int i = 0; i < 600; i += 7) { /* more secrets than slots */
        char u[16];
        snprintf(u, sizeof u, "k%d", i);
        assert_true(scram_login(u, "pw", "pw"));
        assert_false(scram_login(u, "pw", "px"));
    }
}

static void test_md5(void **state)
{
    (void)state;
    /* Known answers from an independent implementation (Python's hashlib):
     * md5("s3cretapp") and "md5" + md5(that + salt 01 02 03 04). */
    uint8_t salt[4] = {1, 2, 3, 4};
    char a[36], b[36];
    auth_md5_response("app", "s3cret", salt, a);
    assert_string_equal(a, "md51460f94130eb931937bbd6439ee8ab57");
    auth_md5_response("app", "md5f543b608e355623527b0e4f12e5981e8", salt, b);
    assert_string_equal(b, "md51460f94130eb931937bbd6439ee8ab57");
    assert_true(auth_equal("abc", "abc"));
    assert_false(auth_equal("abc", "abd"));
    assert_false(auth_equal("abc", "abcd"));
}

/* A startup packet: length, code, then plen bytes of parameters. */
static uint32_t startup_packet(uint8_t *pkt, uint32_t code, const char *params, uint32_t plen)
{
    memcpy(pkt + 8, params, plen);
    pq_set32(pkt, 8 + plen);
    pq_set32(pkt + 4, code);
    return 8 + plen;
}

static void test_startup_parse(void **state)
{
    (void)state;
    uint8_t pkt[64];
    uint32_t n = startup_packet(pkt, PQ_PROTO_V3, "user\0app\0database\0x\0\0", 21);
    pq_startup st;
    const char *why = NULL;
    assert_int_equal(pq_parse_startup(pkt, n, &st, &why), 0);
    assert_int_equal(st.nparams, 2);
    assert_string_equal(pq_startup_get(&st, "user"), "app");
    assert_string_equal(pq_startup_get(&st, "database"), "x");
    /* missing final terminator */
    assert_int_equal(pq_parse_startup(pkt, n - 1, &st, &why), -1);
    assert_non_null(strstr(why, "layout"));
    /* protocol 2 */
    pq_set32(pkt + 4, 0x00020000);
    assert_int_equal(pq_parse_startup(pkt, n, &st, &why), -1);
    assert_non_null(strstr(why, "unsupported frontend protocol"));
    /* cancel request */
    uint8_t cr[16];
    pq_set32(cr, 16);
    pq_set32(cr + 4, PQ_CANCEL_CODE);
    pq_set32(cr + 8, 42);
    pq_set32(cr + 12, 99);
    assert_int_equal(pq_parse_startup(cr, 16, &st, &why), 0);
    assert_int_equal(st.cancel_pid, 42);
    assert_int_equal(st.cancel_key, 99);
    assert_int_equal(pq_parse_startup(cr, 12, &st, &why), -1);
}

/* A startup packet asking for 3.2 or for "_pq_." extensions gets
 * NegotiateProtocolVersion: 3.0 and the extensions' names; plain 3.0 gets
 * nothing. */
static void test_negotiate_protocol(void **state)
{
    (void)state;
    uint8_t pkt[128];
    uint32_t n = startup_packet(pkt, (3u << 16) | 2u, "user\0app\0_pq_.a\0on\0_pq_.bb\0x\0\0", 30);
    pq_startup st;
    const char *why = NULL;
    assert_int_equal(pq_parse_startup(pkt, n, &st, &why), 0);
    assert_true(pq_startup_extension(st.names[1]));
    assert_false(pq_startup_extension(st.names[0]));
    pq_buf b = {0};
    assert_int_equal(pq_put_negotiate(&b, &st), 0);
    static const char want[] = "v\0\0\0\x1b\0\3\0\0\0\0\0\2_pq_.a\0_pq_.bb"; /* and its '\0' */
    assert_int_equal(b.end, sizeof want);
    assert_memory_equal(b.p, want, sizeof want);
    /* 3.2 alone: the version, no names */
    n = startup_packet(pkt, (3u << 16) | 2u, "user\0app\0\0", 10);
    assert_int_equal(pq_parse_startup(pkt, n, &st, &why), 0);
    b.end = 0;
    assert_int_equal(pq_put_negotiate(&b, &st), 0);
    assert_int_equal(b.end, 13);
    assert_int_equal(pq_get32(b.p + 5), PQ_PROTO_V3);
    assert_int_equal(pq_get32(b.p + 9), 0);
    /* 3.0 without extensions: nothing */
    pq_set32(pkt + 4, PQ_PROTO_V3);
    assert_int_equal(pq_parse_startup(pkt, n, &st, &why), 0);
    b.end = 0;
    assert_int_equal(pq_put_negotiate(&b, &st), 0);
    assert_int_equal(b.end, 0);
    free(b.p);
}

/* Framing is the same whichever way the bytes are cut. */
static void test_framing_any_split(void **state)
{
    (void)state;
    pq_buf b = {0};
    assert_int_equal(pq_put_msg(&b, 'Q', "select 1", 9), 0);
    assert_int_equal(pq_put_msg(&b, 'D', "0123456789", 10), 0);
    assert_int_equal(pq_put_ready(&b, 'T'), 0);
    for (uint32_t cut = 0; cut <= b.end; cut++) {
        pq_stream st = {0};
        char types[8] = "";
        int nt = 0;
        char zstatus = 0;
        uint32_t pos = 0, avail = cut;
        while (pos < b.end) {
            pq_msg m;
            uint32_t used;
            int r = pq_next(&st, b.p + pos, avail - pos, 1u << 30, "Z", &m, &used);
            if (r == PQ_NEED) {
                assert_true(avail < b.end);
                avail = b.end; /* the rest arrives */
                continue;
            }
            assert_int_not_equal(r, PQ_BAD);
            if (r == PQ_MSG) {
                types[nt++] = m.type;
                if (m.type == 'Z') zstatus = (char)m.body[0];
            }
            pos += used;
        }
        assert_string_equal(types, "QDZ");
        assert_int_equal(zstatus, 'T');
    }
    /* a length below 4 or above the limit is refused */
    pq_stream st = {0};
    pq_msg m;
    uint32_t used;
    uint8_t bad[5] = {'Q', 0, 0, 0, 3};
    assert_int_equal(pq_next(&st, bad, 5, 1u << 30, "", &m, &used), PQ_BAD);
    uint8_t big[5] = {'Q', 0x80, 0, 0, 0};
    assert_int_equal(pq_next(&st, big, 5, 1u << 30, "", &m, &used), PQ_BAD);
    pq_buf_free(&b);
}

/* An ErrorResponse is exactly as long as it says: fields, then one terminator. */
static void test_error_message_layout(void **state)
{
    (void)state;
    pq_buf b = {0};
    assert_int_equal(pq_put_error(&b, "FATAL", "08P01", "boom"), 0);
    assert_int_equal(b.p[0], 'E');
    uint32_t len = pq_get32(b.p + 1);
    assert_int_equal(b.end, 1 + len);
    assert_int_equal(len, 4 + (1 + 6) * 2 + (1 + 6) + (1 + 5) + 1);
    assert_memory_equal(b.p + 5, "SFATAL\0VFATAL\0C08P01\0Mboom\0\0", len - 4);
    pq_buf_free(&b);
}

/* --- prepared statements (prep.c) --------------------------------------- */

/* A Parse, Bind or Close body. */
static uint32_t body_of(uint8_t *b, const char *a, const char *c, bool types)
{
    uint32_t n = 0;
    size_t l = strlen(a) + 1;
    memcpy(b, a, l);
    n += (uint32_t)l;
    if (c) {
        l = strlen(c) + 1;
        memcpy(b + n, c, l);
        n += (uint32_t)l;
    }
    if (types) {
        b[n++] = 0;
        b[n++] = 0;
    }
    return n;
}

/* The types of the messages in o, as a string. */
static void types_of(const pq_buf *o, char *out)
{
    uint32_t at = o->start;
    size_t k = 0;
    while (at + 5 <= o->end) {
        out[k++] = (char)o->p[at];
        at += 1 + pq_get32(o->p + at + 1);
    }
    out[k] = '\0';
}

static void test_prep_shared_and_elided(void **state)
{
    (void)state;
    ps_registry *r = ps_registry_new();
    ps_client *a = ps_client_new(r, 0), *b = ps_client_new(r, 0);
    ps_cache *sc = NULL;
    pq_buf o = {0}, due = {0};
    uint8_t body[128] = {0};
    char t[32];
    int nrfq;
    /* a prepares "s" on the server: a Parse of weir_1 goes out */
    assert_int_equal(ps_client_msg(a, &sc, 10, 'P', body, body_of(body, "s", "SELECT 1", true), &o),
                     0);
    assert_int_equal(ps_client_msg(a, &sc, 10, 'S', NULL, 0, &o), 0);
    types_of(&o, t);
    assert_string_equal(t, "PS");
    assert_memory_equal(o.p + 5, "weir_1", 7);
    assert_true(ps_server_msg(a, sc, '1', NULL, 0));
    assert_true(ps_server_msg(a, sc, 'Z', (const uint8_t *)"I", 1));
    assert_false(ps_busy(a));
    /* b prepares the same text as "other": nothing goes out, weir answers */
    pq_buf_reset(&o);
    assert_int_equal(
        ps_client_msg(b, &sc, 10, 'P', body, body_of(body, "other", "SELECT 1", true), &o), 0);
    assert_int_equal(o.end, 0);
    assert_int_equal(ps_due(b, 'I', &due, &nrfq), 0);
    types_of(&due, t);
    assert_string_equal(t, "1");
    assert_int_equal(ps_registry_count(r), 1);
    assert_int_equal(ps_cache_count(sc), 1);
    /* Close by a: answered by weir, the server keeps it for b */
    pq_buf_reset(&due);
    assert_int_equal(ps_client_msg(a, &sc, 10, 'C', (const uint8_t *)"Ss", 3, &o), 0);
    assert_int_equal(o.end, 0);
    assert_int_equal(ps_due(a, 'I', &due, &nrfq), 0);
    types_of(&due, t);
    assert_string_equal(t, "3");
    assert_int_equal(ps_client_count(a), 0);
    assert_int_equal(ps_cache_count(sc), 1);
    ps_client_free(a);
    ps_client_free(b);
    ps_cache_free(sc); /* the last reference: the registry is empty again */
    assert_int_equal(ps_registry_count(r), 0);
    pq_buf_free(&o);
    pq_buf_free(&due);
    ps_registry_free(r);
}

/* Client messages framed into b, as a client sends them. */
static void put_frame(pq_buf *b, char t, const void *body, uint32_t n)
{
    assert_int_equal(pq_put_msg(b, t, body, n), 0);
}

/* A plain run (unnamed statements only, up to a Sync) passes as it is with
 * one op noted; its replies pass too, in order with weir's own replies
 * that were due before it. Named statements, a DEALLOCATE of one of the
 * client's names, or a missing Sync leave the messages to ps_client_msg. */
static void test_prep_plain_runs(void **state)
{
    (void)state;
    ps_registry *r = ps_registry_new();
    ps_client *c = ps_client_new(r, 0);
    ps_cache *sc = NULL;
    pq_buf in = {0}, o = {0}, due = {0};
    uint8_t body[128] = {0};
    char t[32];
    int nrfq;
    uint32_t used = 0;
    /* Parse "" SELECT 1, Bind "" "", Describe portal, Execute, Sync */
    put_frame(&in, 'P', body, body_of(body, "", "SELECT 1", true));
    uint8_t bind[] = {0, 0, 0, 0, 0, 0, 0, 0};
    put_frame(&in, 'B', bind, sizeof bind);
    put_frame(&in, 'D', "P", 2);
    put_frame(&in, 'E', "\0\0\0\0", 5);
    uint32_t before_sync = in.end;
    put_frame(&in, 'S', NULL, 0);
    assert_int_equal(ps_client_plain(c, in.p, before_sync, 65536, &used), 0); /* no Sync yet */
    assert_false(ps_busy(c));
    assert_int_equal(ps_client_plain(c, in.p, in.end, 65536, &used), 1);
    assert_int_equal(used, in.end);
    assert_true(ps_busy(c));
    const char *replies = "12TDC";
    for (const char *x = replies; *x; x++) {
        assert_true(ps_server_msg(c, sc, *x, NULL, 0));
        assert_false(ps_due_now(c));
        assert_true(ps_busy(c)); /* its ReadyForQuery is still owed */
    }
    assert_true(ps_server_msg(c, sc, 'Z', (const uint8_t *)"I", 1));
    assert_false(ps_busy(c));
    /* an error in the run: passed on, and the next run is plain again */
    assert_int_equal(ps_client_plain(c, in.p, in.end, 65536, &used), 1);
    assert_true(ps_server_msg(c, sc, 'E', NULL, 0));
    assert_true(ps_server_msg(c, sc, 'Z', (const uint8_t *)"I", 1));
    assert_false(ps_busy(c));
    assert_int_equal(ps_client_plain(c, in.p, in.end, 65536, &used), 1);
    assert_true(ps_server_msg(c, sc, 'Z', (const uint8_t *)"I", 1));
    /* the client prepares "s1" */
    assert_int_equal(
        ps_client_msg(c, &sc, 10, 'P', body, body_of(body, "s1", "SELECT 2", true), &o), 0);
    assert_int_equal(ps_client_msg(c, &sc, 10, 'S', NULL, 0, &o), 0);
    assert_true(ps_server_msg(c, sc, '1', NULL, 0));
    assert_true(ps_server_msg(c, sc, 'Z', (const uint8_t *)"I", 1));
    /* not plain: a Bind of s1, a Describe of s1, a DEALLOCATE of s1 */
    pq_buf x = {0};
    uint8_t named_bind[] = {0, 's', '1', 0, 0, 0, 0, 0, 0, 0};
    put_frame(&x, 'B', named_bind, sizeof named_bind);
    put_frame(&x, 'S', NULL, 0);
    assert_int_equal(ps_client_plain(c, x.p, x.end, 65536, &used), 0);
    pq_buf_reset(&x);
    put_frame(&x, 'D', "Ss1", 4);
    put_frame(&x, 'S', NULL, 0);
    assert_int_equal(ps_client_plain(c, x.p, x.end, 65536, &used), 0);
    pq_buf_reset(&x);
    put_frame(&x, 'P', body, body_of(body, "", "DEALLOCATE s1", true));
    put_frame(&x, 'S', NULL, 0);
    assert_int_equal(ps_client_plain(c, x.p, x.end, 65536, &used), 0);
    /* a DEALLOCATE of a name the client does not have is the server's */
    pq_buf_reset(&x);
    put_frame(&x, 'P', body, body_of(body, "", "DEALLOCATE other", true));
    put_frame(&x, 'S', NULL, 0);
    assert_int_equal(ps_client_plain(c, x.p, x.end, 65536, &used), 1);
    assert_true(ps_server_msg(c, sc, '1', NULL, 0));
    assert_true(ps_server_msg(c, sc, 'Z', (const uint8_t *)"I", 1));
    assert_false(ps_busy(c));
    /* a simple Query first is a plain run of its own, up to its end; one
     * that DEALLOCATEs s1 is not (weir forgets the name) */
    pq_buf q = {0};
    put_frame(&q, 'Q', "SELECT 1", 9);
    put_frame(&q, 'Q', "SELECT 2", 9);
    assert_int_equal(ps_client_plain(c, q.p, q.end, 65536, &used), 1);
    assert_int_equal(used, 1 + 4 + 9);
    assert_true(ps_busy(c));
    assert_int_equal(ps_server_reply(c, sc, 'C', (const uint8_t *)"SELECT 1", 9), PS_KEEP);
    assert_int_equal(ps_server_reply(c, sc, 'Z', (const uint8_t *)"I", 1), PS_KEEP);
    assert_false(ps_busy(c));
    pq_buf_reset(&q);
    put_frame(&q, 'Q', "DEALLOCATE s1", 14);
    assert_int_equal(ps_client_plain(c, q.p, q.end, 65536, &used), 0);
    assert_false(ps_busy(c));
    pq_buf_free(&q);
    /* a message longer than the bound goes one by one */
    assert_int_equal(ps_client_plain(c, in.p, in.end, 8, &used), 0);
    /* Pipelined: Parse "", Close s1 (weir answers), Sync, one by one; then
     * a plain run. Weir's CloseComplete comes after the server's
     * ParseComplete, before the first ReadyForQuery. */
    pq_buf_reset(&o);
    assert_int_equal(ps_client_msg(c, &sc, 10, 'P', body, body_of(body, "", "SELECT 3", true), &o),
                     0);
    assert_int_equal(ps_client_msg(c, &sc, 10, 'C', (const uint8_t *)"Ss1", 4, &o), 0);
    assert_int_equal(ps_client_msg(c, &sc, 10, 'S', NULL, 0, &o), 0);
    assert_int_equal(ps_client_plain(c, in.p, in.end, 65536, &used), 1);
    assert_false(ps_due_now(c));
    /* the ParseComplete ends the Parse: the CloseComplete is due (PS_DUE) */
    assert_int_equal(ps_server_reply(c, sc, '1', NULL, 0), PS_KEEP | PS_DUE);
    assert_true(ps_due_now(c));
    assert_int_equal(ps_due(c, 'I', &due, &nrfq), 0);
    types_of(&due, t);
    assert_string_equal(t, "3");
    assert_int_equal(ps_server_reply(c, sc, 'Z', (const uint8_t *)"I", 1), PS_KEEP);
    assert_true(ps_busy(c)); /* the run's replies */
    for (const char *y = replies; *y; y++) assert_true(ps_server_msg(c, sc, *y, NULL, 0));
    assert_true(ps_server_msg(c, sc, 'Z', (const uint8_t *)"I", 1));
    assert_false(ps_busy(c));
    /* after an unnamed Parse of DEALLOCATE ALL weir answers for the unnamed
     * statement's Describe: not plain until that Sync is through */
    pq_buf_reset(&o);
    assert_int_equal(
        ps_client_msg(c, &sc, 10, 'P', body, body_of(body, "", "DEALLOCATE ALL", true), &o), 0);
    assert_int_equal(ps_client_plain(c, in.p, in.end, 65536, &used), 0);
    /* two portals bound to that statement: weir answers both Binds and
     * sends nothing; the second takes the first's place (the first is not
     * leaked: ASan checks) */
    uint32_t sent = o.end;
    memset(body, 0, sizeof body);
    assert_int_equal(ps_client_msg(c, &sc, 10, 'B', body, body_of(body, "p1", "", false) + 6, &o),
                     0);
    memset(body, 0, sizeof body);
    assert_int_equal(ps_client_msg(c, &sc, 10, 'B', body, body_of(body, "p2", "", false) + 6, &o),
                     0);
    assert_int_equal(o.end, sent);
    assert_int_equal(ps_client_msg(c, &sc, 10, 'E', (const uint8_t *)"p2\0\0\0\0", 7, &o), 0);
    assert_int_equal(o.end, sent); /* weir answers the Execute of p2 itself */
    ps_client_free(c);
    ps_cache_free(sc);
    pq_buf_free(&in);
    pq_buf_free(&o);
    pq_buf_free(&due);
    pq_buf_free(&x);
    ps_registry_free(r);
}

/* max_client_prepared_bytes: a Parse that would take a client's statements
 * (text, parameter types and name) past the bound is not taken; a Close
 * gives the room back. */
static void test_prep_client_bound(void **state)
{
    (void)state;
    ps_registry *r = ps_registry_new();
    ps_client *c = ps_client_new(r, 40);
    ps_cache *sc = NULL;
    pq_buf o = {0}, due = {0};
    uint8_t body[128] = {0};
    int nrfq;
    /* "a" + "SELECT 1\0" + 2 bytes of types: 1 + 9 + 2 = 12 bytes each */
    const char *names[] = {"a", "b", "c", "d"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(
            ps_client_msg(c, &sc, 10, 'P', body, body_of(body, names[i], "SELECT 1", true), &o), 0);
        assert_int_equal(ps_client_bytes(c), 12u * (unsigned)(i + 1));
    }
    assert_int_equal(ps_client_msg(c, &sc, 10, 'P', body, body_of(body, "d", "SELECT 1", true), &o),
                     PS_TOO_MUCH);
    assert_int_equal(ps_client_count(c), 3);
    assert_int_equal(ps_client_bytes(c), 36);
    assert_int_equal(ps_client_msg(c, &sc, 10, 'S', NULL, 0, &o), 0);
    (void)ps_server_msg(c, sc, '1', NULL, 0);
    (void)ps_server_msg(c, sc, 'Z', (const uint8_t *)"I", 1);
    (void)ps_due(c, 'I', &due, &nrfq);
    assert_int_equal(ps_client_msg(c, &sc, 10, 'C', (const uint8_t *)"Sa", 3, &o), 0);
    assert_int_equal(ps_client_bytes(c), 24);
    assert_int_equal(ps_client_msg(c, &sc, 10, 'P', body, body_of(body, "d", "SELECT 1", true), &o),
                     0);
    assert_int_equal(ps_client_bytes(c), 36);
    ps_client_free(c);
    ps_cache_free(sc);
    assert_int_equal(ps_registry_count(r), 0);
    pq_buf_free(&o);
    pq_buf_free(&due);
    ps_registry_free(r);
}

static void test_prep_eviction_and_failed_pipeline(void **state)
{
    (void)state;
    ps_registry *r = ps_registry_new();
    ps_client *c = ps_client_new(r, 0);
    ps_cache *sc = NULL;
    pq_buf o = {0};
    uint8_t body[128] = {0};
    char t[64];
    /* max 2: the third statement closes the least recently used first */
    const char *q[] = {"SELECT 1", "SELECT 2", "SELECT 3"};
    char nm[8];
    for (int i = 0; i < 3; i++) {
        snprintf(nm, sizeof nm, "s%d", i);
        assert_int_equal(ps_client_msg(c, &sc, 2, 'P', body, body_of(body, nm, q[i], true), &o), 0);
    }
    assert_int_equal(ps_client_msg(c, &sc, 2, 'S', NULL, 0, &o), 0);
    types_of(&o, t);
    assert_string_equal(t, "PPCPS");
    assert_int_equal(ps_cache_count(sc), 2);
    /* replies: ParseComplete x2, CloseComplete (hidden), ParseComplete, ReadyForQuery */
    assert_true(ps_server_msg(c, sc, '1', NULL, 0));
    assert_true(ps_server_msg(c, sc, '1', NULL, 0));
    assert_false(ps_server_msg(c, sc, '3', NULL, 0));
    assert_true(ps_server_msg(c, sc, '1', NULL, 0));
    assert_true(ps_server_msg(c, sc, 'Z', (const uint8_t *)"I", 1));
    /* s0 was closed: a Bind of it prepares it again (reply hidden), evicting another */
    pq_buf_reset(&o);
    assert_int_equal(ps_client_msg(c, &sc, 2, 'B', body, body_of(body, "", "s0", false) + 6, &o),
                     0);
    types_of(&o, t);
    assert_string_equal(t, "CPB");
    /* ... and the pipeline fails at the Bind: PostgreSQL skips to Sync */
    assert_int_equal(ps_client_msg(c, &sc, 2, 'P', body, body_of(body, "new", "SELEC", true), &o),
                     0);
    assert_int_equal(ps_client_msg(c, &sc, 2, 'S', NULL, 0, &o), 0);
    assert_false(ps_server_msg(c, sc, '3', NULL, 0));
    assert_false(ps_server_msg(c, sc, '1', NULL, 0));
    assert_true(ps_server_msg(c, sc, 'E', NULL, 0));
    assert_true(ps_server_msg(c, sc, 'Z', (const uint8_t *)"I", 1));
    assert_false(ps_busy(c));
    /* the skipped Parse's name is kept, unconfirmed (as PgBouncer keeps it:
     * psycopg takes it as prepared), and the cache holds what the server has */
    assert_int_equal(ps_client_count(c), 4);
    assert_int_equal(ps_cache_count(sc), 2);
    /* a new Parse of that name replaces it: sent, not refused as a duplicate */
    pq_buf_reset(&o);
    assert_int_equal(
        ps_client_msg(c, &sc, 2, 'P', body, body_of(body, "new", "SELECT 9", true), &o), 0);
    assert_int_equal(ps_client_count(c), 4);
    types_of(&o, t);
    assert_non_null(strchr(t, 'P'));
    assert_null(strchr(t, 'E'));
    ps_client_free(c);
    ps_cache_free(sc);
    assert_int_equal(ps_registry_count(r), 0);
    pq_buf_free(&o);
    ps_registry_free(r);
}

static void opt_collect(void *ud, const char *name, const char *value)
{
    char *out = ud;
    size_t n = strlen(out);
    snprintf(out + n, 512 - n, "[%s=%s]", name, value);
}

/* The options startup parameter, split as PostgreSQL splits it. */
static void test_options_parameter(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } ok[] = {
        {"  -c    datestyle=German,\\ YMD", "[datestyle=German, YMD]"},
        {"-c timezone=Europe/Lisbon  -c    datestyle=German,\\ YMD",
         "[timezone=Europe/Lisbon][datestyle=German, YMD]"},
        {"-ctimezone=UTC  --date-style=ISO", "[timezone=UTC][date_style=ISO]"},
        {"-c t\\imezone=\\E\\u\\r\\o\\pe/Lisbon", "[timezone=Europe/Lisbon]"},
        {"-c a=", "[a=]"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        char out[512] = "";
        const char *why = NULL;
        assert_int_equal(pq_parse_options(ok[i].in, opt_collect, out, &why), 0);
        assert_string_equal(out, ok[i].out);
    }
    static const char *const bad[] = {"-d", "-c timezone", "-c", "-c =x", "timezone=UTC", "--=x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char out[512] = "";
        const char *why = NULL;
        assert_int_equal(pq_parse_options(bad[i], opt_collect, out, &why), -1);
        assert_string_equal(why, "unsupported options startup parameter: only '-c config=val' "
                                 "and '--config=val' are allowed");
    }
}

/* SASLprep (RFC 4013) as PostgreSQL applies it to SCRAM passwords. */
/* Worker 0 keeps short connections while more clients left young in the
 * last tick than are connected (at least 10), unless its thread ran for 75 %
 * of the tick or more: then they spread, however fast they pour in. */
static void test_short_connections_rule(void **state)
{
    (void)state;
    const int64_t ms = 1000000;
    /* a pour: 50 left young, 12 connected */
    assert_true(worker_short_keep(20 * ms, 100 * ms, 50, 12));
    assert_true(worker_short_keep(74 * ms, 100 * ms, 50, 12));
    /* busy: 75 % of the tick or more */
    assert_false(worker_short_keep(75 * ms, 100 * ms, 50, 12));
    assert_false(worker_short_keep(99 * ms, 100 * ms, 5000, 12));
    assert_false(worker_short_keep(150 * ms, 100 * ms, 50, 12)); /* threads' clocks drift */
    /* the tick's length is what counts, not 100 ms: a late tick of 400 ms */
    assert_true(worker_short_keep(250 * ms, 400 * ms, 50, 12));
    assert_false(worker_short_keep(300 * ms, 400 * ms, 50, 12));
    /* the first tick has no span yet: not busy */
    assert_true(worker_short_keep(5000 * ms, 0, 50, 12));
    assert_true(worker_short_keep(5000 * ms, -1, 50, 12));
    /* a health check now and then is not a pour: at least 10 */
    assert_false(worker_short_keep(0, 100 * ms, 9, 0));
    assert_true(worker_short_keep(0, 100 * ms, 10, 0));
    /* held clients outnumber those that left young */
    assert_false(worker_short_keep(10 * ms, 100 * ms, 99, 100));
    assert_true(worker_short_keep(10 * ms, 100 * ms, 100, 100));
    assert_false(worker_short_keep(10 * ms, 100 * ms, 0, 0));
}

/* Packing: the load gathers on worker 0 after 10 ticks in a row in which
 * the workers together ran less than 70 % of one core; it spreads at the
 * first tick in which worker 0 alone ran 85 % or more, and then packs
 * again no sooner than 50 ticks later, and only after 10 calm ones. */
static void test_packing_rule(void **state)
{
    (void)state;
    const int64_t ms = 1000000;
    int calm = 0;
    /* nine calm ticks are not enough, the tenth packs */
    for (int i = 0; i < 9; i++)
        assert_false(worker_pack_next(false, &calm, 69 * ms, 40 * ms, 100 * ms));
    assert_true(worker_pack_next(false, &calm, 69 * ms, 40 * ms, 100 * ms));
    assert_int_equal(calm, 0);
    /* a busy tick in between starts the count again */
    for (int i = 0; i < 9; i++)
        assert_false(worker_pack_next(false, &calm, 20 * ms, 20 * ms, 100 * ms));
    assert_false(worker_pack_next(false, &calm, 70 * ms, 20 * ms, 100 * ms));
    assert_int_equal(calm, 0);
    /* the tick's own length counts: 150 ms of CPU in a late 250 ms tick is calm */
    calm = 9;
    assert_true(worker_pack_next(false, &calm, 150 * ms, 150 * ms, 250 * ms));
    /* packed: it stays below 85 % of worker 0's own tick, whatever the others ran */
    calm = 0;
    assert_true(worker_pack_next(true, &calm, 300 * ms, 84 * ms, 100 * ms));
    /* worker 0 at 85 %: spread, and wait 50 ticks */
    assert_false(worker_pack_next(true, &calm, 85 * ms, 85 * ms, 100 * ms));
    assert_int_equal(calm, -50);
    for (int i = 0; i < 50; i++)
        assert_false(worker_pack_next(false, &calm, 1 * ms, 1 * ms, 100 * ms));
    assert_int_equal(calm, 0);
    for (int i = 0; i < 9; i++)
        assert_false(worker_pack_next(false, &calm, 1 * ms, 1 * ms, 100 * ms));
    assert_true(worker_pack_next(false, &calm, 1 * ms, 1 * ms, 100 * ms));
    /* no span yet (the first tick): nothing changes */
    calm = 9;
    assert_false(worker_pack_next(false, &calm, 0, 0, 0));
    assert_int_equal(calm, 9);
    assert_true(worker_pack_next(true, &calm, 500 * ms, 500 * ms, -1));
}

/* A completion a worker queues to itself inside a socket callback runs at
 * the callback's end (worker_scope_end), with whatever it queues in turn;
 * outside one it waits for the loop (local_ev). */
typedef struct scope_job {
    completion cp; /* first */
    worker *w;
    int runs;
    struct scope_job *then; /* queued by this one when it runs */
} scope_job;

static void scope_job_run(completion *cp)
{
    scope_job *j = (scope_job *)cp;
    j->runs++;
    if (j->then) worker_post(j->w, &j->then->cp);
}

static void test_worker_own_handoffs(void **state)
{
    (void)state;
    server *s = calloc(1, sizeof *s);
    worker *w = calloc(1, sizeof *w);
    assert_non_null(s);
    assert_non_null(w);
    s->unix_fd = -1;
    assert_int_equal(worker_init(w, s, 0), 0);
    current_worker = w;
    scope_job b = {{NULL, scope_job_run}, w, 0, NULL};
    scope_job a = {{NULL, scope_job_run}, w, 0, &b};

    /* in a callback's scope: nothing runs until its end, then both */
    worker_scope_begin(w);
    worker_scope_begin(w); /* nested: the outermost end runs them */
    worker_post(w, &a.cp);
    worker_scope_end(w);
    assert_int_equal(a.runs, 0);
    worker_scope_end(w);
    assert_int_equal(a.runs, 1);
    assert_int_equal(b.runs, 1);
    assert_null(w->own_head);
    assert_null(w->qhead); /* its own hand-offs never take the shared queue's lock */
    assert_false(event_pending(&w->local_ev, EV_READ, NULL)); /* nothing left for the loop */

    /* outside a scope: queued, run by the loop */
    a.runs = b.runs = 0;
    a.then = NULL;
    worker_post(w, &a.cp);
    assert_int_equal(a.runs, 0);
    assert_true(event_pending(&w->local_ev, EV_READ, NULL));
    assert_int_equal(event_base_loop(w->base, EVLOOP_NONBLOCK), 0);
    assert_int_equal(a.runs, 1);

    /* another thread's worker (none here): no scope, no crash */
    worker_scope_begin(NULL);
    worker_scope_end(NULL);

    current_worker = NULL;
    worker_destroy(w);
    free(w);
    free(s);
}

static void test_saslprep(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"s3cret", "s3cret"},   /* ASCII: as it is */
        {"a\x07b", "a\x07b"},   /* ASCII, even a control character */
        {"I\xc2\xadX", "IX"},   /* U+00AD maps to nothing */
        {"\xe2\x85\xa8", "IX"}, /* U+2168: NFKC */
        {"\xc2\xaa", "a"},      /* U+00AA: NFKC */
        {"a\xc2\xa0"
         "b",
         "a b"},                            /* a non-ASCII space is a space */
        {"\xff\xfe", "\xff\xfe"},           /* not UTF-8: as it is */
        {"a\xef\xbf\xbe", "a\xef\xbf\xbe"}, /* U+FFFE is prohibited: as it is */
        {"\xd8\xa7"
         "1",
         "\xd8\xa7"
         "1"}, /* bad bidi (RandAL, then L/EN): as it is */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *p = auth_saslprep(cases[i].in);
        assert_non_null(p);
        assert_string_equal(p, cases[i].out);
        free(p);
    }
    /* A SCRAM secret of "IX" (as PostgreSQL stores it for the password
     * U+2168) takes every form of that password, and nothing else. */
    const char *secret = "SCRAM-SHA-256$4096:d2Vpci1zYXNscHJlcC0xNg==$oGNPz1Uc2MNASHETy+94TbycNv"
                         "xPC/Tz1WhWQSUGKjM=:8YjGFutO6/pXR7RbHDUYGuzcoUlV9DPGo57ByxxJ+3w=";
    assert_true(auth_password_ok("u", "IX", secret));
    assert_true(auth_password_ok("u", "\xe2\x85\xa8", secret));
    assert_true(auth_password_ok("u", "I\xc2\xadX", secret));
    assert_false(auth_password_ok("u", "IY", secret));
    assert_false(auth_password_ok("u", "ix", secret));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults_and_values),
        cmocka_unit_test(test_config_lookups_by_name_at_scale),
        cmocka_unit_test(test_config_errors_name_file_line),
        cmocka_unit_test(test_auth_file),
        cmocka_unit_test(test_scram_rfc7677_client),
        cmocka_unit_test(test_scram_round_trip),
        cmocka_unit_test(test_scram_secret_cache),
        cmocka_unit_test(test_scram_client_key_cache),
        cmocka_unit_test(test_scram_server_limits),
        cmocka_unit_test(test_scram_bad_messages),
        cmocka_unit_test(test_config_messages),
        cmocka_unit_test(test_md5),
        cmocka_unit_test(test_short_connections_rule),
        cmocka_unit_test(test_packing_rule),
        cmocka_unit_test(test_worker_own_handoffs),
        cmocka_unit_test(test_startup_parse),
        cmocka_unit_test(test_negotiate_protocol),
        cmocka_unit_test(test_framing_any_split),
        cmocka_unit_test(test_error_message_layout),
        cmocka_unit_test(test_prep_shared_and_elided),
        cmocka_unit_test(test_prep_eviction_and_failed_pipeline),
        cmocka_unit_test(test_prep_client_bound),
        cmocka_unit_test(test_prep_plain_runs),
        cmocka_unit_test(test_saslprep),
        cmocka_unit_test(test_options_parameter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
