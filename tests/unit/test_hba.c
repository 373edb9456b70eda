/* test_hba.c — auth_hba_file and auth_ident_file: every kind of rule, every
 * error a user can make (with the message they see), ident maps, and, when
 * PgBouncer's own test vectors are at hand (its suite's hba_test.rules and
 * hba_test.eval), the same answers as PgBouncer on all of them. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/hba.h"

static char warnings[2048];

static void warn(void *ud, const char *msg)
{
    (void)ud;
    size_t n = strlen(warnings);
    snprintf(warnings + n, sizeof warnings - n, "%s\n", msg);
}

static const char *tmpdir(void)
{
    return getenv("WEIR_TEST_TMP") ? getenv("WEIR_TEST_TMP") : "/tmp";
}

static void write_file(const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir(), name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* The method name a login gets ("none" when no rule matches). addr: an IP,
 * or "unix"; flags: "tls", "replication" or "". */
static const char *lookup(const hba *h, const char *db, const char *user, const char *addr,
                          const char *flags)
{
    hba_login q = {.db = db, .user = user};
    q.local = !strcmp(addr, "unix");
    q.tls = strstr(flags, "tls") != NULL;
    q.replication = strstr(flags, "replication") != NULL;
    if (!q.local) {
        if (inet_pton(AF_INET, addr, q.addr) == 1)
            q.family = AF_INET;
        else {
            assert_int_equal(inet_pton(AF_INET6, addr, q.addr), 1);
            q.family = AF_INET6;
        }
    }
    hba_rule_info r;
    static char out[64];
    if (!hba_match(h, &q, &r)) return "none";
    snprintf(out, sizeof out, "%s%s%s", r.method_name, r.map[0] ? " map=" : "", r.map);
    return out;
}

static hba *parse(const char *text)
{
    char err[600] = "";
    warnings[0] = '\0';
    hba *h = hba_parse(text, strlen(text), "hba.conf", tmpdir(), warn, NULL, err, sizeof err);
    if (!h) fail_msg("unexpected error: %s", err);
    return h;
}

static void test_rules(void **state)
{
    (void)state;
    write_file("hba_users.txt", "# admins\nann, \"bob\"\n  carl\n");
    hba *h = parse("# comment line\n"
                   "   \t  \n"
                   "local   all      postgres                 peer map=ops\n"
                   "local   sales    all                      scram-sha-256\n"
                   "local   all      all                      md5\n"
                   "hostssl all      @hba_users.txt  0.0.0.0/0   cert\n"
                   "hostnossl secret all            0.0.0.0/0   reject\n"
                   "host    app,  \"all\"  u1 , u2,u3  10.0.0.0/8  password  # comment\n"
                   "host    sameuser all              all          trust\n"
                   "host    replication repl          ::1/128      trust\n"
                   "host    db       all              192.168.1.0 255.255.255.0 md5\n"
                   "host    \"q\"\"x\"  \"a , b\"         127.0.0.1/32 trust\n"
                   "host    /^tenant_[0-9]+$ /^svc_   127.0.0.0/8  scram-sha-256\n"
                   "host    all      all              fe80::/10    md5\n"
                   "host    ldapdb   all              127.0.0.1/32 ldap ldapserver=x\n"
                   "hostssl all      all              127.0.0.1/32 md5 clientcert=verify-full\n"
                   "host    all      all \\\n"
                   "        127.0.0.0/8 password\n");
    assert_string_equal(warnings, "hba.conf:15: authentication method ldap is not supported by "
                                  "weir: logins this rule matches are refused\n");
    assert_int_equal(hba_rule_count(h), 15);
    /* local: the first matching line wins */
    assert_string_equal(lookup(h, "x", "postgres", "unix", ""), "peer map=ops");
    assert_string_equal(lookup(h, "sales", "ann", "unix", ""), "scram-sha-256");
    assert_string_equal(lookup(h, "other", "ann", "unix", ""), "md5");
    /* hostssl with a user list from @file (relative to the hba file) */
    assert_string_equal(lookup(h, "db", "bob", "1.2.3.4", "tls"), "cert");
    assert_string_equal(lookup(h, "db", "carl", "1.2.3.4", "tls"), "cert");
    /* hostnossl matches only without TLS */
    assert_string_equal(lookup(h, "secret", "dave", "1.2.3.4", ""), "reject");
    /* lists with blanks around commas; quoted "all" is a database named all */
    assert_string_equal(lookup(h, "app", "u2", "10.9.8.7", ""), "password");
    assert_string_equal(lookup(h, "all", "u3", "10.9.8.7", ""), "password");
    assert_string_equal(lookup(h, "nope", "u3", "10.9.8.7", ""), "none");
    /* sameuser, address all */
    assert_string_equal(lookup(h, "eve", "eve", "8.8.8.8", ""), "trust");
    /* replication: only the keyword matches a replication connection, and
     * the keyword matches nothing else */
    assert_string_equal(lookup(h, "replication", "repl", "::1", ""), "none");
    assert_string_equal(lookup(h, "anydb", "repl", "::1", "replication"), "trust");
    assert_string_equal(lookup(h, "eve", "eve", "8.8.8.8", "replication"), "none");
    /* an address with a separate mask */
    assert_string_equal(lookup(h, "db", "zed", "192.168.1.77", ""), "md5");
    assert_string_equal(lookup(h, "db", "zed", "192.168.2.77", ""), "none");
    /* quoting: "" is a quote, commas and blanks inside quotes are the name */
    assert_string_equal(lookup(h, "q\"x", "a , b", "127.0.0.1", ""), "trust");
    assert_string_equal(lookup(h, "q\"x", "a", "127.0.0.1", ""), "password");
    /* regular expressions (PostgreSQL 16's /...) */
    assert_string_equal(lookup(h, "tenant_42", "svc_web", "127.0.0.2", ""), "scram-sha-256");
    assert_string_equal(lookup(h, "tenant_x", "svc_web", "127.0.0.2", ""), "password");
    /* IPv6 masks; an IPv4 rule never matches an IPv6 address */
    assert_string_equal(lookup(h, "z", "y", "fe80::1", ""), "md5");
    assert_string_equal(lookup(h, "z", "y", "fec0::1", ""), "none");
    /* an unsupported method still matches (and the login is refused) */
    assert_string_equal(lookup(h, "ldapdb", "y", "127.0.0.1", ""), "ldap");
    /* clientcert= is carried to the caller */
    hba_login q = {.tls = true, .family = AF_INET, .addr = {127, 0, 0, 1}, .db = "z", .user = "y"};
    hba_rule_info r;
    assert_true(hba_match(h, &q, &r));
    assert_int_equal(r.clientcert, 2);
    assert_int_equal(r.line, 16);
    /* a continued line */
    assert_string_equal(lookup(h, "z", "y", "127.0.0.9", ""), "password");
    hba_unref(h);
}

static void test_masks(void **state)
{
    (void)state;
    hba *q = parse("host \"/^((tenant_[a-z]{1,8}){1,3})$\" /^(svc|app)_[0-9]+$ all md5\n");
    assert_string_equal(lookup(q, "tenant_ab", "app_7", "1.1.1.1", ""), "md5");
    assert_string_equal(lookup(q, "tenant_abcdefghi", "app_7", "1.1.1.1", ""), "none");
    hba_unref(q);
    hba *h = parse("host d u 199.199.199.199/32 trust\n"
                   "host d u 128.0.0.0/9 trust\n"
                   "host d u 128.0.0.0/8 md5\n"
                   "host d u 128.0.0.0/7 password\n"
                   "host d u 128.0.0.0/1 scram-sha-256\n"
                   "host d u 0.0.0.0/0 reject\n"
                   "host d u 10.1.2.3/8 trust\n"); /* bits past the mask do not count */
    assert_string_equal(lookup(h, "d", "u", "199.199.199.199", ""), "trust");
    assert_string_equal(lookup(h, "d", "u", "199.199.199.198", ""), "scram-sha-256");
    assert_string_equal(lookup(h, "d", "u", "128.100.0.1", ""), "trust");
    assert_string_equal(lookup(h, "d", "u", "128.200.0.1", ""), "md5");
    assert_string_equal(lookup(h, "d", "u", "129.0.0.1", ""), "password");
    assert_string_equal(lookup(h, "d", "u", "254.1.1.1", ""), "scram-sha-256");
    assert_string_equal(lookup(h, "d", "u", "1.1.1.1", ""), "reject");
    hba_unref(h);
    h = parse("host d u 10.1.2.3/8 trust\n");
    assert_string_equal(lookup(h, "d", "u", "10.200.0.1", ""), "trust");
    assert_string_equal(lookup(h, "d", "u", "11.1.2.3", ""), "none");
    hba_unref(h);
}

/* Each mistake: no rules at all, and the message names the file and line. */
static void test_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text, *msg;
    } cases[] = {
        {"hots all all 1.2.3.4/32 md5\n",
         "hba.conf:1: invalid connection type \"hots\" (local, host, hostssl or hostnossl)"},
        {"\nhost \"all all 1.2.3.4/32 md5\n", "hba.conf:2: unterminated quoted string"},
        {"host all all 1.2.3.4 md5\n", "hba.conf:1: \"md5\" is not an IP mask of the address's "
                                       "family"},
        {"host all all 1.2.3.4\n", "hba.conf:1: too few fields: expected host DATABASE USER "
                                   "ADDRESS METHOD [OPTIONS]"},
        {"host all all db.example.com md5\n",
         "hba.conf:1: \"db.example.com\" is not an IP address: host names, samehost and samenet "
         "are not supported; write an address with a mask (e.g. 10.0.0.0/8)"},
        {"host all all 1.2.3.4/33 md5\n", "hba.conf:1: mask length 33 in \"1.2.3.4/33\" is more "
                                          "than 32"},
        {"host all all 1.2.3.4 255.0.255.0 md5\n",
         "hba.conf:1: \"255.0.255.0\" is not a valid mask (its ones must come first)"},
        {"host all +admins 1.2.3.4/32 md5\n",
         "hba.conf:1: \"+admins\": group membership (+role) is not supported: weir does not know "
         "role membership; list the users, or use @file"},
        {"host samerole all 1.2.3.4/32 md5\n",
         "hba.conf:1: \"samerole\" is not supported: weir does not know role membership"},
        {"host all all 1.2.3.4/32 md5 map=x\n", "hba.conf:1: map= is for cert and peer rules only"},
        {"host all all 1.2.3.4/32 md5 clientcert=verify-ca\n",
         "hba.conf:1: clientcert is for hostssl rules only"},
        {"host all all 1.2.3.4/32 md5 radius=1\n",
         "hba.conf:1: unknown option \"radius\" for method md5"},
        {"host all all 1.2.3.4/32 kerberos\n",
         "hba.conf:1: invalid authentication method \"kerberos\""},
        {"include other.conf\n",
         "hba.conf:1: \"include\" directives are not supported in auth_hba_file"},
        {"host all all 1.2.3.4/32 md5,\n", "hba.conf:1: a comma-separated list ends with a comma"},
        {"local all a,,b md5\n", "hba.conf:1: empty entry in a comma-separated list"},
        {"host /a++++++++++++++++++++++++++++++++++++++++ all 1.2.3.4/32 md5\n",
         "hba.conf:1: regular expression \"a++++++++++++++++++++++++++++++++++++++++\" is too "
         "complex (repetitions of repetitions)"},
        {"host all /(((a{99}){99}){99}) 1.2.3.4/32 md5\n",
         "hba.conf:1: regular expression \"(((a{99}){99}){99})\" is too complex (repetitions "
         "of repetitions)"},
        /* found by fuzz_hba: stacked quantifiers made regcomp recurse for seconds */
        {"host all /^(.*)p?*** 1.2.3.4/32 md5\n",
         "hba.conf:1: regular expression \"^(.*)p?***\" is too complex (repetitions of "
         "repetitions)"},
        {"host all all 1.2.3.4/32,5.6.7.8/32 md5\n", "hba.conf:1: one address per rule"},
        {"host all all 1.2.3.4 a,b\n",
         "hba.conf:1: address \"1.2.3.4\" needs a mask: /bits, or a mask field"},
        {"host all all 1.2.3.4/ md5\n", "hba.conf:1: invalid mask length in \"1.2.3.4/\""},
        {"host all all 1.2.3.4/2x md5\n", "hba.conf:1: invalid mask length in \"1.2.3.4/2x\""},
        {"host all all 1111111111111111111111111111111111111111111111111111111111111111111111"
         "111111111111111111111111111111111111111111111111111111111111/8 md5\n",
         "hba.conf:1: invalid address \"1111111111111111111111111111111111111111...\""},
        {"host all all all md5 a=b,c=d\n", "hba.conf:1: options are name=value, one per field"},
        {"host all all all md5 foo\n", "hba.conf:1: option \"foo\" is not name=value"},
        {"hostssl all all all md5 clientcert=1\n",
         "hba.conf:1: clientcert must be verify-ca or verify-full"},
        {"hostssl all all all cert clientcert=verify-ca\n",
         "hba.conf:1: clientcert only accepts verify-full with method cert"},
        {"host all all all md5 a=1 a=2 a=3 a=4 a=5 a=6 a=7 a=8 a=9 a=10 a=11 a=12 a=13 a=14 a=15 "
         "a=16 a=17 a=18 a=19 a=20 a=21 a=22 a=23 a=24 a=25 a=26 a=27 a=28\n",
         "hba.conf:1: too many fields"},
        {"local all @missing.txt md5\n", NULL /* names the file: checked by prefix */},
        {"host /a( all 1.2.3.4/32 md5\n", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char err[600] = "";
        hba *h = hba_parse(cases[i].text, strlen(cases[i].text), "hba.conf", tmpdir(), NULL, NULL,
                           err, sizeof err);
        if (h) fail_msg("case %zu loaded: %s", i, cases[i].text);
        if (cases[i].msg)
            assert_string_equal(err, cases[i].msg);
        else
            assert_true(!strncmp(err, "hba.conf:1: ", 12));
    }
    char err[200];
    const char nul[] = "host all all 1.2.3.4/32 md5\nlocal \0 all md5\n";
    assert_null(hba_parse(nul, sizeof nul - 1, "hba.conf", NULL, NULL, NULL, err, sizeof err));
    assert_string_equal(err, "hba.conf:2: NUL byte in the line");
    /* no folder given (the fuzzer's way): @file is an error, not a read */
    assert_null(hba_parse("local all @x md5", 16, "hba.conf", NULL, NULL, NULL, err, sizeof err));
    assert_string_equal(err, "hba.conf:1: \"@x\": file lists are not read here");
    /* a logical line (continued with backslashes) over 64 KB */
    size_t big = 70 * 1024;
    char *longl = malloc(big + 1);
    assert_non_null(longl);
    for (size_t k = 0; k < big; k++)
        longl[k] = k % 1000 == 999 ? '\n' : k % 1000 == 998 ? '\\' : 'a';
    longl[big] = '\0';
    char lerr[200];
    assert_null(hba_parse(longl, big, "hba.conf", NULL, NULL, NULL, lerr, sizeof lerr));
    free(longl);
    assert_string_equal(lerr, "hba.conf:1: line longer than 65536 bytes");
    /* "@file" lists nest 8 deep at most: n0 names n1, ..., n9 */
    for (int k = 0; k < 10; k++) {
        char name[32], text[32];
        snprintf(name, sizeof name, "nest%d.txt", k);
        snprintf(text, sizeof text, "@nest%d.txt\n", k + 1);
        write_file(name, text);
    }
    assert_null(hba_parse("local all @nest0.txt md5\n", 25, "hba.conf", tmpdir(), NULL, NULL, err,
                          sizeof err));
    assert_string_equal(err, "hba.conf:1: \"@nest8.txt\": file lists nested deeper than 8");
    assert_null(hba_load("/nonexistent/hba.conf", NULL, NULL, NULL, err, sizeof err));
    assert_string_equal(err, "/nonexistent/hba.conf: cannot open /nonexistent/hba.conf: No such "
                             "file or directory");
}

static void test_ident(void **state)
{
    (void)state;
    hba *h = parse("local all all peer map=m\n");
    const char *id = "# MAPNAME SYSTEM-USERNAME PG-USERNAME\n"
                     "m     alice            alice\n"
                     "m     alice            reports\n"
                     "m     \"root\"           all\n"
                     "m     /^(.*)@corp\\.example$   \\1\n"
                     "m     /^svc-             \"all\"\n"
                     "other bob              bob\n";
    char err[300];
    assert_int_equal(hba_parse_ident(h, id, strlen(id), "ident.conf", err, sizeof err), 0);
    assert_true(hba_ident_match(h, "m", "alice", "alice"));
    assert_true(hba_ident_match(h, "m", "alice", "reports"));
    assert_false(hba_ident_match(h, "m", "alice", "postgres"));
    assert_true(hba_ident_match(h, "m", "root", "anyone")); /* all */
    assert_true(hba_ident_match(h, "m", "carol@corp.example", "carol"));
    assert_false(hba_ident_match(h, "m", "carol@corp.example", "dave"));
    assert_false(hba_ident_match(h, "m", "carol@corpXexample", "carol"));
    assert_true(hba_ident_match(h, "m", "svc-web", "all")); /* quoted: a user named all */
    assert_false(hba_ident_match(h, "m", "svc-web", "web"));
    assert_false(hba_ident_match(h, "m", "bob", "bob")); /* another map's line */
    assert_true(hba_ident_match(h, "other", "bob", "bob"));
    const char *bad = "m alice\n";
    assert_int_equal(hba_parse_ident(h, bad, strlen(bad), "ident.conf", err, sizeof err), -1);
    assert_string_equal(err, "ident.conf:1: expected MAPNAME SYSTEM-USERNAME PG-USERNAME");
    bad = "m a b c\n";
    assert_int_equal(hba_parse_ident(h, bad, strlen(bad), "ident.conf", err, sizeof err), -1);
    assert_string_equal(err, "ident.conf:1: too many fields: MAPNAME SYSTEM-USERNAME PG-USERNAME");
    bad = "m x +grp\n";
    assert_int_equal(hba_parse_ident(h, bad, strlen(bad), "ident.conf", err, sizeof err), -1);
    assert_string_equal(err, "ident.conf:1: \"+grp\": group membership (+role) is not supported");
    hba_unref(h);
}

/* A copy of the configuration shares the rules; the last one out frees them. */
static void test_refcount(void **state)
{
    (void)state;
    hba *h = parse("local all all trust\n");
    hba_ref(h);
    hba_unref(h);
    assert_string_equal(lookup(h, "a", "b", "unix", ""), "trust");
    hba_unref(h);
    hba_unref(NULL);
}

/* PgBouncer's own vectors: every line of hba_test.eval gets the method
 * PgBouncer gives it. They are read where they are, when they are there. */
static void test_pgbouncer_vectors(void **state)
{
    (void)state;
    const char *dir = getenv("WEIR_PGB_SUITE_TEST");
    char rules[600], eval[600];
    snprintf(rules, sizeof rules, "%s/hba_test.rules", dir ? dir : "");
    snprintf(eval, sizeof eval, "%s/hba_test.eval", dir ? dir : "");
    FILE *f = dir ? fopen(eval, "r") : NULL;
    if (!f) {
        printf("# skipped: PgBouncer's hba_test.eval not found (set WEIR_PGB_SUITE_TEST to its "
               "suite's test folder)\n");
        skip();
    }
    char err[600];
    hba *h = hba_load(rules, NULL, NULL, NULL, err, sizeof err);
    if (!h) fail_msg("hba_test.rules: %s", err);
    char line[512];
    int n = 0, lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (!*p || *p == '#' || *p == '\n') continue;
        /* fields are separated by tabs (a name may hold blanks: "a , b") */
        char *fld[5] = {"", "", "", "", ""}, *save = NULL;
        int got = 0;
        for (char *t = strtok_r(p, "\t\n", &save); t && got < 5; t = strtok_r(NULL, "\t\n", &save))
            fld[got++] = t;
        if (got < 4) fail_msg("hba_test.eval:%d: cannot read", lineno);
        const char *exp = fld[0], *db = fld[1], *user = fld[2], *addr = fld[3], *flags = fld[4];
        const char *m = lookup(h, db, user, addr, flags);
        const char *want = strcmp(exp, "reject") ? exp : "reject";
        if (strcmp(m, want) && !(!strcmp(want, "reject") && !strcmp(m, "none")))
            fail_msg("hba_test.eval:%d: %s %s %s %s: weir says %s", lineno, db, user, addr, flags,
                     m);
        n++;
    }
    fclose(f);
    printf("# %d of PgBouncer's hba vectors agree\n", n);
    assert_true(n > 50);
    hba_unref(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules),    cmocka_unit_test(test_masks),
        cmocka_unit_test(test_errors),   cmocka_unit_test(test_ident),
        cmocka_unit_test(test_refcount), cmocka_unit_test(test_pgbouncer_vectors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
