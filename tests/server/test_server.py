"""test_server.py — weir with real clients (psql, pgbench, psycopg, node-postgres) and a real PostgreSQL.

Authentication, pooling modes, the extended protocol, COPY, NOTIFY,
parameters, cancel, and the command line.
"""
import hashlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import psycopg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import WEIR, Postgres, Weir, run_pgjdbc, scratch_dir, wait_port  # noqa: E402

PG = None


def setUpModule():
    global PG
    PG = Postgres()
    PG.sql("CREATE TABLE IF NOT EXISTS t (id int primary key, v text); GRANT ALL ON t TO app")
    # auth_query's usual setup: a lookup function that auth_user may call
    PG.sql("CREATE ROLE weir_auth LOGIN PASSWORD 'authpw';"
           " CREATE FUNCTION public.user_lookup(i_username text, OUT uname text, OUT phash text)"
           " RETURNS record LANGUAGE sql SECURITY DEFINER AS"
           " $$ SELECT usename::text, passwd::text FROM pg_catalog.pg_shadow"
           " WHERE usename = i_username $$;"
           " REVOKE ALL ON FUNCTION public.user_lookup(text) FROM public;"
           " GRANT EXECUTE ON FUNCTION public.user_lookup(text) TO weir_auth")
    # a role with an md5 password, let in with md5 over TCP
    PG.sql("SET password_encryption = 'md5'; CREATE ROLE app_md5 LOGIN PASSWORD 'md5pw'")
    hba = os.path.join(PG.dir, "data", "pg_hba.conf")
    with open(hba) as f:
        rules = f.read()
    with open(hba, "w") as f:
        f.write("host all app_md5 127.0.0.1/32 md5\n" + rules)
    PG.sql("SELECT pg_reload_conf()")
    PG.pgbench_init()


def slurp(path):
    with open(path) as f:
        return f.read()


def tearDownModule():
    PG.destroy()


class WeirCase(unittest.TestCase):
    settings = {}
    users = None

    def setUp(self):
        self.w = Weir(PG, settings=self.settings, users=self.users)

    def tearDown(self):
        failed = any(e for _, e in (self._outcome.result.errors + self._outcome.result.failures)
                     if e and _ is self)
        log = self.w.log()
        self.w.stop()
        if failed:
            sys.stderr.write("---- weir log ----\n" + log[-4000:] + "\n")

    def connect(self, **kw):
        return psycopg.connect(self.w.dsn(**kw), autocommit=True)


class TestAuth(unittest.TestCase):
    """Each auth method, succeeding and failing, with PostgreSQL's message."""

    def check(self, auth_type, users, ok_password, bad_password="wrong", databases=None,
              settings=None, user="app"):
        conf = {"auth_type": auth_type}
        conf.update(settings or {})
        w = Weir(PG, settings=conf, users=users, databases=databases)
        try:
            r = w.psql("select current_user", password=ok_password, user=user)
            self.assertEqual(r.returncode, 0, r.stderr + w.log())
            self.assertEqual(r.stdout.strip(), user)
            if bad_password is not None:
                r = w.psql("select 1", password=bad_password, user=user)
                self.assertNotEqual(r.returncode, 0)
                self.assertIn('password authentication failed for user "%s"' % user, r.stderr)
                with self.assertRaisesRegex(psycopg.OperationalError,
                                            'password authentication failed for user "%s"' % user):
                    psycopg.connect(w.dsn(password=bad_password, user=user))
            # an unknown user looks the same as a wrong password
            r = w.psql("select 1", user="nobody", password="x")
            if auth_type not in ("trust", "any"):
                self.assertIn('password authentication failed for user "nobody"', r.stderr)
            if auth_type == "scram-sha-256":  # PgBouncer's words too
                self.assertIn("SASL authentication failed: password authentication failed",
                              r.stderr)
        finally:
            w.stop()

    def test_md5(self):
        self.check("md5", {"app": "s3cret"}, "s3cret")

    def test_md5_hash_in_auth_file(self):
        h = "md5" + hashlib.md5(b"s3cretapp").hexdigest()
        db = {"appdb": "host=127.0.0.1 port=%d dbname=appdb password=s3cret" % PG.port}
        self.check("md5", {"app": h}, "s3cret", databases=db)

    def test_scram_with_plain_password(self):
        self.check("scram-sha-256", {"app": "s3cret"}, "s3cret")

    def test_scram_password_is_saslprepped_as_postgresql_does(self):
        """A non-ASCII password: PostgreSQL keeps the SCRAM secret of its
        SASLprep form (U+2168 ROMAN NUMERAL NINE is "IX", U+00AD is
        nothing), libpq proves with that form, and weir, which holds the
        password in plain text in auth_file, must derive the same key on
        both sides (the client's login and its own login to PostgreSQL)."""
        pw = "\u2168p\u00e4ss\u00adw\u00f6rd"
        PG.sql("do $$ begin if not exists (select from pg_roles where rolname = 'uni') then "
               "create role uni login; end if; end $$; set password_encryption = "
               "'scram-sha-256'; alter role uni password '%s'; grant connect on database "
               "appdb to uni" % pw)
        w = Weir(PG, settings={"auth_type": "scram-sha-256"}, users={"uni": pw})
        try:
            for given in (pw, "IXp\u00e4ssw\u00f6rd"):  # the same password after SASLprep
                r = w.psql("select current_user", user="uni", password=given)
                self.assertEqual((r.returncode, r.stdout.strip()), (0, "uni"), r.stderr + w.log())
            r = w.psql("select 1", user="uni", password="IXpassword")
            self.assertIn('password authentication failed for user "uni"', r.stderr)
        finally:
            w.stop()

    def test_scram_with_scram_secret(self):
        secret = PG.sql("select rolpassword from pg_authid where rolname = 'app'")
        self.assertTrue(secret.startswith("SCRAM-SHA-256$"))
        db = {"appdb": "host=127.0.0.1 port=%d dbname=appdb user=app password=s3cret" % PG.port}
        self.check("scram-sha-256", {"app": secret}, "s3cret", databases=db)

    def test_md5_auth_type_with_scram_secret_uses_scram(self):
        secret = PG.sql("select rolpassword from pg_authid where rolname = 'app'")
        db = {"appdb": "host=127.0.0.1 port=%d dbname=appdb user=app password=s3cret" % PG.port}
        self.check("md5", {"app": secret}, "s3cret", databases=db)

    def test_scram_secret_logs_in_to_the_server_with_the_clients_keys(self):
        """No password for the server anywhere: the client's SCRAM proof is passed through."""
        secret = PG.sql("select rolpassword from pg_authid where rolname = 'app'")
        self.check("scram-sha-256", {"app": secret}, "s3cret")

    AUTH_QUERY = {"auth_user": "weir_auth",
                  "auth_query": "SELECT uname, phash FROM public.user_lookup($1)"}

    def test_auth_query_scram(self):
        """app is not in auth_file: its SCRAM secret comes from the database."""
        self.check("scram-sha-256", {"weir_auth": "authpw"}, "s3cret", settings=self.AUTH_QUERY)

    def test_a_clients_search_path_does_not_reach_auth_query(self):
        """PgBouncer's CVE-2025-12819: a search_path in the startup packet
        (tracked by default here) ran the auth_query under it. The lookup
        below finds the user only if its search_path is not the client's."""
        q = ("SELECT uname, phash FROM public.user_lookup($1) "
             "WHERE pg_catalog.current_setting('search_path') NOT LIKE '%evil%'")
        w = Weir(PG, settings={"auth_user": "weir_auth", "auth_query": q,
                               "auth_type": "scram-sha-256"}, users={"weir_auth": "authpw"})
        try:
            r = w.psql("show search_path", env={"PGOPTIONS": "-c search_path=evil,public"})
            self.assertEqual((r.returncode, r.stdout.strip()), (0, "evil,public"),
                             r.stderr + w.log()[-2000:])
        finally:
            w.stop()

    def test_auth_query_md5(self):
        self.check("md5", {"weir_auth": "authpw"}, "md5pw", settings=self.AUTH_QUERY,
                   user="app_md5")

    def test_auth_query_with_the_databases_auth_user(self):
        db = {"appdb": "host=127.0.0.1 port=%d dbname=appdb auth_user=weir_auth" % PG.port}
        self.check("scram-sha-256", {"weir_auth": "authpw"}, "s3cret", databases=db,
                   settings={"auth_query": self.AUTH_QUERY["auth_query"]})

    def test_auth_dbname_runs_auth_query_elsewhere(self):
        """otherdb has no user_lookup(): auth_dbname sends the lookup to appdb's."""
        if not PG.sql("select 1 from pg_database where datname = 'otherdb'"):
            PG.sql("create database otherdb owner app")
        base = "host=127.0.0.1 port=%d" % PG.port
        for per_db in (True, False):
            dbs = {"appdb": base + " dbname=appdb",
                   "otherdb": base + " dbname=otherdb" + (" auth_dbname=appdb" if per_db else "")}
            settings = dict(self.AUTH_QUERY)
            if not per_db:
                settings["auth_dbname"] = "appdb"
            w = Weir(PG, settings=dict(settings, auth_type="scram-sha-256"),
                     users={"weir_auth": "authpw"}, databases=dbs)
            try:
                r = w.psql("select current_database()", dbname="otherdb")
                self.assertEqual((r.returncode, r.stdout.strip()), (0, "otherdb"),
                                 r.stderr + w.log())
            finally:
                w.stop()
        # without it, the lookup runs in otherdb, where the function is not
        w = Weir(PG, settings=dict(self.AUTH_QUERY, auth_type="scram-sha-256"),
                 users={"weir_auth": "authpw"},
                 databases={"otherdb": base + " dbname=otherdb"})
        try:
            r = w.psql("select 1", dbname="otherdb")
            self.assertIn("bouncer config error", r.stderr)
            self.assertIn("auth_query failed", w.log())
        finally:
            w.stop()

    def test_auth_dbname_missing_disabled_or_reserved(self):
        """A missing auth_dbname: the client learns only "bouncer config
        error", the log says which; a disabled one says so; "pgbouncer" (the
        console) cannot be one: per database, its logins fail as missing;
        in [pgbouncer], weir does not start."""
        base = "host=127.0.0.1 port=%d" % PG.port
        dbs = {"appdb": base + " dbname=appdb",
               "lost": base + " dbname=appdb auth_dbname=nowhere",
               "console": base + " dbname=appdb auth_dbname=pgbouncer",
               "viaapp": base + " dbname=appdb auth_dbname=appdb"}
        w = Weir(PG, settings=dict(self.AUTH_QUERY, auth_type="scram-sha-256",
                                   admin_users="weir_auth"),
                 users={"weir_auth": "authpw"}, databases=dbs)
        try:
            r = w.psql("select 1", dbname="lost")
            self.assertIn("bouncer config error", r.stderr)
            self.assertNotIn("nowhere", r.stderr)
            self.assertIn('authentication database "nowhere" is not configured', w.log())
            r = w.psql("select 1", dbname="console")
            self.assertIn("bouncer config error", r.stderr)
            self.assertIn('cannot use the reserved "pgbouncer" database as an auth_dbname',
                          w.log())
            self.assertEqual(w.psql("select 1", dbname="viaapp").returncode, 0)
            rows, res = w.admin("DISABLE appdb", user="weir_auth", password="authpw")
            self.assertEqual(res.returncode, 0, res.stderr)
            r = w.psql("select 1", dbname="viaapp")
            self.assertIn('authentication database "appdb" is disabled', r.stderr)
        finally:
            w.stop()
        logfile = os.path.join(scratch_dir("weir-log-"), "weir.log")
        w = Weir(PG, settings=dict(self.AUTH_QUERY, auth_dbname="pgbouncer", logfile=logfile),
                 start=False)
        try:
            rc, log = w.start_fails()
            self.assertNotEqual(rc, 0)
            self.assertIn('cannot use the reserved "pgbouncer" database as an auth_dbname', log)
            with open(logfile) as f:  # the logfile says why too, though it was not open yet
                text = f.read()
            self.assertIn('cannot use the reserved "pgbouncer" database as an auth_dbname', text)
            self.assertIn("not starting", text)
        finally:
            w.stop()

    def test_trust_looks_up_users_absent_from_auth_file(self):
        import base64
        import http.client
        import json
        from harness import free_port
        http_port = free_port()
        w = Weir(PG, settings=dict(self.AUTH_QUERY, auth_type="trust",
                                   http_listen_port=str(http_port)),
                 users={"weir_auth": "authpw"})
        try:
            self.assertTrue(wait_port(http_port))
            for user, status in (("app_md5", 200), ("nobody", 401)):  # the HTTP door the same
                c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=20)
                auth = base64.b64encode(("%s:x" % user).encode()).decode()
                c.request("POST", "/v1/databases/appdb/sql", json.dumps({"query": "select 1 n"}),
                          {"Authorization": "Basic " + auth})
                r = c.getresponse()
                body = r.read().decode()
                self.assertEqual(r.status, status, body)
                if status == 401:
                    self.assertIn("no such user: nobody", body)
            # app_md5 is found by auth_query; its md5 hash logs weir in to the server
            r = w.psql("select current_user", user="app_md5", password="")
            self.assertEqual((r.returncode, r.stdout.strip()), (0, "app_md5"), r.stderr + w.log())
            r = w.psql("select 1", user="nobody", password="")
            self.assertIn("no such user: nobody", r.stderr)
        finally:
            w.stop()

    def test_auth_query_failing(self):
        """A broken auth_query: the log says why (the client, not yet
        authenticated, only PgBouncer's "bouncer config error"), and weir goes
        on serving."""
        w = Weir(PG, settings={"auth_type": "md5", "auth_user": "weir_auth",
                               "auth_query": "SELECT usename, passwd FROM pg_shadow WHERE usename=$1"},
                 users={"weir_auth": "authpw"})
        try:
            r = w.psql("select 1")
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("bouncer config error", r.stderr)
            self.assertNotIn("permission denied", r.stderr)
            self.assertIn("auth_query failed: permission denied", w.log())
            self.assertNotIn("authpw", w.log())
            r = w.psql("select current_user", user="weir_auth", password="authpw")
            self.assertEqual(r.stdout.strip(), "weir_auth", r.stderr)
        finally:
            w.stop()

    def test_plain(self):
        self.check("plain", {"app": "s3cret"}, "s3cret")

    def test_trust(self):
        self.check("trust", {"app": "s3cret"}, "anything", bad_password=None)
        w = Weir(PG, settings={"auth_type": "trust"}, users={"app": "s3cret"})
        try:
            r = w.psql("select 1", user="stranger", password="x")
            self.assertIn("no such user: stranger", r.stderr)
        finally:
            w.stop()

    def test_any(self):
        db = {"appdb": "host=127.0.0.1 port=%d dbname=appdb user=app password=s3cret" % PG.port}
        self.check("any", {}, "whatever", bad_password=None, databases=db)

    def test_server_password_wrong(self):
        """The server refuses weir: the client hears why, masked, and nothing hangs."""
        db = {"appdb": "host=127.0.0.1 port=%d dbname=appdb user=app password=nope" % PG.port}
        w = Weir(PG, settings={"auth_type": "trust"}, users={"app": ""}, databases=db)
        try:
            r = w.psql("select 1")
            self.assertNotEqual(r.returncode, 0)
            self.assertIn('password authentication failed for user "app"', r.stderr)
            # the server's own words reach the client, PgBouncer's line the log
            self.assertIn('server login failed: FATAL password authentication failed for user '
                          '"app"', w.log())
            self.assertIn('closing because: password authentication failed for user "app" (age=',
                          w.log())
            self.assertNotIn("nope", r.stderr + w.log())
        finally:
            w.stop()


class TestTransactionPooling(WeirCase):
    settings = {"pool_mode": "transaction", "default_pool_size": "1"}

    def test_no_leak_of_transaction_or_set_local(self):
        a, b = self.connect(), self.connect()
        a.execute("BEGIN")
        a.execute("SET LOCAL work_mem = '1MB'")
        a.execute("INSERT INTO t VALUES (1001, 'uncommitted')")
        pid_a = a.execute("select pg_backend_pid()").fetchone()[0]
        result = {}

        def other():
            # waits for the only server connection, then must see a clean session
            result["row"] = b.execute(
                "select current_setting('work_mem'), txid_current_if_assigned(),"
                " (select count(*) from t where id = 1001), pg_backend_pid()").fetchone()

        th = threading.Thread(target=other)
        th.start()
        time.sleep(0.3)
        self.assertNotIn("row", result)  # still waiting: the connection is in a's transaction
        a.execute("ROLLBACK")
        th.join(10)
        work_mem, xid, count, pid_b = result["row"]
        self.assertEqual(pid_b, pid_a)  # the same server connection ...
        self.assertEqual(work_mem, "4MB")  # ... without a's SET LOCAL
        self.assertIsNone(xid)  # ... outside a's transaction
        self.assertEqual(count, 0)
        a.close()
        b.close()

    def test_extended_protocol_params(self):
        with self.connect() as c:
            for i in range(50):
                row = c.execute("select %s::int + 1, %s::text", (i, "x" * i)).fetchone()
                self.assertEqual(row, (i + 1, "x" * i))
            with c.transaction():
                c.execute("INSERT INTO t VALUES (%s, %s)", (2001, "a"))
                c.execute("UPDATE t SET v = %s WHERE id = %s", ("b", 2001))
            self.assertEqual(c.execute("select v from t where id = 2001").fetchone()[0], "b")
            c.execute("DELETE FROM t WHERE id = 2001")

    def test_pipeline(self):
        with self.connect() as c:
            with c.pipeline():
                curs = [c.execute("select %s::int", (i,)) for i in range(20)]
            self.assertEqual([cu.fetchone()[0] for cu in curs], list(range(20)))

    def test_error_then_clean(self):
        with self.connect() as c:
            with self.assertRaises(psycopg.errors.DivisionByZero):
                c.execute("select 1/0")
            with self.assertRaises(psycopg.errors.UndefinedTable):
                c.execute("select * from nope where x = %s", (1,))
            self.assertEqual(c.execute("select 2").fetchone()[0], 2)

    def test_copy_in_and_out(self):
        with self.connect() as c:
            with c.transaction():
                c.execute("CREATE TABLE IF NOT EXISTS copy_t (a int, b text)")
                c.execute("TRUNCATE copy_t")
                with c.cursor().copy("COPY copy_t FROM STDIN") as cp:
                    for i in range(5000):
                        cp.write_row((i, "row %d" % i))
            self.assertEqual(c.execute("select count(*), sum(a) from copy_t").fetchone(),
                             (5000, sum(range(5000))))
            out = bytearray()
            with c.cursor().copy("COPY (select a, b from copy_t order by a) TO STDOUT") as cp:
                for chunk in cp:
                    out += chunk
            lines = bytes(out).decode().splitlines()
            self.assertEqual(len(lines), 5000)
            self.assertEqual(lines[4999], "4999\trow 4999")

    def test_large_result(self):
        with self.connect() as c:
            rows = c.execute("select g, repeat('x', 1000) from generate_series(1, 20000) g").fetchall()
            self.assertEqual(len(rows), 20000)
            self.assertEqual(rows[-1][0], 20000)

    def test_parameters_follow_the_client(self):
        """Each client sees its own startup parameters on a shared server connection."""
        a = self.connect(application_name="alpha")
        b = psycopg.connect(self.w.dsn(application_name="beta"), autocommit=True)
        a.execute("SET TimeZone = 'Asia/Tokyo'")  # a session SET, followed as a parameter
        for _ in range(3):
            self.assertEqual(a.execute("show application_name").fetchone()[0], "alpha")
            self.assertEqual(b.execute("show application_name").fetchone()[0], "beta")
            self.assertEqual(a.execute("show timezone").fetchone()[0], "Asia/Tokyo")
            self.assertNotEqual(b.execute("show timezone").fetchone()[0], "Asia/Tokyo")
        self.assertEqual(a.info.parameter_status("application_name"), "alpha")
        self.assertEqual(b.info.parameter_status("application_name"), "beta")
        a.close()
        b.close()

    def test_parameters_long_and_alike_on_one_connection(self):
        """Clients alike share the one server connection without a SET between them; a
        client whose values are too long to compare in one piece (a 63-byte
        application_name, a long TimeZone) still gets its own."""
        long_app = "x" * 63
        a = self.connect(application_name="same")
        b = psycopg.connect(self.w.dsn(application_name="same"), autocommit=True)
        c = psycopg.connect(self.w.dsn(application_name=long_app), autocommit=True)
        c.execute("SET TimeZone = 'America/Argentina/ComodRivadavia'")
        for _ in range(3):
            for conn, app in ((a, "same"), (b, "same"), (c, long_app), (a, "same")):
                row = conn.execute("select current_setting('application_name'),"
                                   " current_setting('TimeZone')").fetchone()
                self.assertEqual(row[0], app)
                if conn is c:
                    self.assertEqual(row[1], "America/Argentina/ComodRivadavia")
                else:
                    self.assertNotEqual(row[1], "America/Argentina/ComodRivadavia")
        a.close()
        b.close()
        c.close()

    def test_database_entry_parameters_are_defaults(self):
        """[databases] timezone= and application_name= apply unless the client sends its own."""
        db = {"appdb": "host=127.0.0.1 port=%d dbname=appdb timezone=Asia/Tokyo"
                       " application_name=from_ini" % PG.port}
        w = Weir(PG, databases=db)
        try:
            with psycopg.connect(w.dsn(), autocommit=True) as a, \
                    psycopg.connect(w.dsn(application_name="mine"), autocommit=True) as b:
                self.assertEqual(a.execute("show timezone").fetchone()[0], "Asia/Tokyo")
                self.assertEqual(a.execute("show application_name").fetchone()[0], "from_ini")
                self.assertEqual(b.execute("show application_name").fetchone()[0], "mine")
                self.assertEqual(a.info.parameter_status("TimeZone"), "Asia/Tokyo")
        finally:
            w.stop()

    def test_psql_and_pgbench(self):
        r = self.w.psql("select 40 + 2")
        self.assertEqual(r.stdout.strip(), "42", r.stderr)
        env = dict(os.environ, PGPASSWORD="s3cret")
        for mode in ("simple", "extended"):
            r = subprocess.run(["pgbench", "-n", "-h", "127.0.0.1", "-p", str(self.w.port), "-U", "app",
                                "-c", "8", "-j", "2", "-t", "300", "-M", mode, "-S", "appdb"],
                               capture_output=True, text=True, env=env, timeout=120)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("number of transactions actually processed: 2400/2400", r.stdout)
            self.assertIn("number of failed transactions: 0", r.stdout)

    def test_node_postgres(self):
        node_path = os.environ.get("WEIR_NODE_PATH", "")
        if not node_path or not os.path.isdir(node_path):
            self.fail("node-postgres not found: set WEIR_NODE_PATH (scripts/deps.sh prepares it)")
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node_client.js")
        env = dict(os.environ, NODE_PATH=node_path, WEIR_PORT=str(self.w.port))
        r = subprocess.run(["node", script], capture_output=True, text=True, env=env, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("node-postgres ok", r.stdout)

    def test_pgjdbc(self):
        """pgjdbc as it comes, no settings for it: it sends extra_float_digits
        (and search_path, from currentSchema) at login, which PgBouncer
        refuses unless told to ignore them; tests/server/JdbcClient.java.
        Its worker threads log in with assumeMinServerVersion, so that the
        extra_float_digits they check is the one of their login (3) rather
        than a SET that stays on one server connection (docs/SERVER.md)."""
        PG.sql("CREATE SCHEMA IF NOT EXISTS jdbc_s AUTHORIZATION app")
        rc, out = run_pgjdbc(self.w.port, 4, 200)
        self.assertEqual(rc, 0, out)
        self.assertIn("pgjdbc ok", out)


class TestOptionsParameter(WeirCase):
    """libpq's options ("-c name=value"): the parameters weir keeps in line
    follow each client across pooled server connections; others are refused
    with the name, unless ignore_startup_parameters names them."""
    settings = {"pool_mode": "transaction", "default_pool_size": "1",
                "ignore_startup_parameters": "geqo", "admin_users": "weir"}

    def opts(self, options):
        return psycopg.connect(self.w.dsn(), autocommit=True, options=options)

    def value(self, sql, options):
        with self.opts(options) as c:
            return c.execute(sql).fetchone()[0]

    def test_settings_taken_and_kept_in_line(self):
        opts = "-c timezone=Europe/Lisbon  -c    datestyle=German,\\ YMD"
        with self.opts(opts) as a, self.connect() as b:
            self.assertEqual(a.execute("SHOW timezone").fetchone()[0], "Europe/Lisbon")
            self.assertEqual(a.execute("SHOW datestyle").fetchone()[0], "German, YMD")
            # the one server connection goes between them, each sees its own
            self.assertNotEqual(b.execute("SHOW timezone").fetchone()[0], "Europe/Lisbon")
            self.assertEqual(a.execute("SHOW timezone").fetchone()[0], "Europe/Lisbon")
        self.assertEqual(self.value("SHOW timezone", "--timezone=Asia/Tokyo"), "Asia/Tokyo")
        # named in ignore_startup_parameters: taken as given, not applied
        self.assertEqual(self.value("SHOW geqo", "-c geqo=off"), "on")
        # in track_extra_parameters by default (pgjdbc sends it): applied
        self.assertEqual(self.value("SHOW extra_float_digits", "-c extra_float_digits=2"), "2")
        self.assertEqual(self.value("SHOW extra_float_digits", ""), "1")

    def test_refusals_and_ignore_options(self):
        for opts, msg in (("-d", "unsupported options startup parameter: only '-c config=val' "
                                 "and '--config=val' are allowed"),
                          ("-c timezone", "only '-c config=val'"),
                          ("-c enable_seqscan=false",
                           "unsupported startup parameter in options: enable_seqscan")):
            with self.assertRaises(psycopg.OperationalError) as e:
                self.opts(opts)
            self.assertIn(msg, str(e.exception))
        _, r = self.w.admin("SET ignore_startup_parameters = options")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.value("SHOW enable_seqscan", "-c enable_seqscan=false"), "on")
        self.assertEqual(self.value("SHOW timezone", "-ctimezone=Europe/Lisbon -cx=y"),
                         "Europe/Lisbon")


class TestTrackExtraParameters(WeirCase):
    """track_extra_parameters (PgBouncer 1.25): more startup parameters kept
    in line across pooled server connections; search_path is the usual one.
    PostgreSQL 15 does not report search_path, so weir remembers what it SET
    on each server connection, and forgets it when the reset query runs."""
    settings = {"pool_mode": "transaction", "default_pool_size": "1",
                "track_extra_parameters": "IntervalStyle, search_path, statement_timeout"}

    def test_a_refused_value_does_not_undo_the_others(self):
        """The extra parameters go in a query of their own: a value PostgreSQL
        refuses leaves the tracked ones (timezone here) applied."""
        with self.opts("-c timezone=Asia/Tokyo -c statement_timeout=nonsense") as a:
            self.assertEqual(a.execute("SHOW timezone").fetchone()[0], "Asia/Tokyo")
            self.assertEqual(a.execute("SELECT 2").fetchone()[0], 2)

    def opts(self, options):
        return psycopg.connect(self.w.dsn(), autocommit=True, options=options)

    def test_search_path_follows_each_client(self):
        PG.sql("CREATE SCHEMA IF NOT EXISTS extra_a AUTHORIZATION app")
        with self.opts("-c search_path=extra_a,public") as a, self.connect() as b, \
                self.opts("-c search_path=pg_catalog") as c:
            # as PostgreSQL itself shows and reads them (checked against it directly)
            for _ in range(2):  # one server connection between the three
                self.assertEqual(a.execute("SHOW search_path").fetchone()[0], "extra_a,public")
                self.assertEqual(a.execute("SELECT current_schemas(false)").fetchone()[0],
                                 ["extra_a", "public"])
                self.assertEqual(c.execute("SHOW search_path").fetchone()[0], "pg_catalog")
                # b set nothing: it gets the server's default, not c's (PgBouncer
                # leaves the last client's value)
                self.assertEqual(b.execute("SHOW search_path").fetchone()[0], '"$user", public')
                self.assertEqual(b.execute("SELECT current_schemas(false)").fetchone()[0],
                                 ["public"])
                self.assertEqual(a.execute("SHOW search_path").fetchone()[0], "extra_a,public")
        # a startup parameter of its own works as well as options
        r = subprocess.run(["psql", "-X", "-A", "-t", "-c", "SHOW search_path",
                            "host=127.0.0.1 port=%d user=app dbname=appdb password=s3cret "
                            "options='-c search_path=extra_a'" % self.w.port],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.stdout.strip(), "extra_a", r.stderr)

    def test_not_listed_is_refused(self):
        w2 = Weir(PG, settings={"pool_mode": "transaction", "track_extra_parameters": "IntervalStyle"})
        try:
            with self.assertRaises(psycopg.OperationalError) as e:
                psycopg.connect(w2.dsn(), options="-c search_path=public")
            self.assertIn("unsupported startup parameter in options: search_path",
                          str(e.exception))
        finally:
            w2.stop()

    def test_the_default_list(self):
        """IntervalStyle as PgBouncer, and what pgjdbc sends: extra_float_digits
        at every login, search_path with currentSchema."""
        w2 = Weir(PG, settings={"pool_mode": "transaction", "default_pool_size": "1"})
        try:
            with psycopg.connect(w2.dsn(), autocommit=True,
                                 options="-c extra_float_digits=3 -c search_path=pg_catalog") as a, \
                    psycopg.connect(w2.dsn(), autocommit=True) as b:
                for _ in range(2):
                    self.assertEqual(a.execute("SHOW extra_float_digits").fetchone()[0], "3")
                    self.assertEqual(a.execute("SHOW search_path").fetchone()[0], "pg_catalog")
                    self.assertEqual(b.execute("SHOW extra_float_digits").fetchone()[0], "1")
                    self.assertEqual(b.execute("SHOW search_path").fetchone()[0],
                                     '"$user", public')
        finally:
            w2.stop()



class TestTrackExtraParametersSession(WeirCase):
    settings = {"pool_mode": "session", "default_pool_size": "1",
                "track_extra_parameters": "search_path"}

    def test_reset_query_forgets_what_weir_set(self):
        """Session pooling: the reset query (DISCARD ALL) undoes the SET; the
        next client that wants the same search_path gets it set again."""
        pids = set()
        for _ in range(3):
            with psycopg.connect(self.w.dsn(), autocommit=True,
                                 options="-c search_path=pg_catalog,public") as a:
                self.assertEqual(a.execute("SHOW search_path").fetchone()[0],
                                 "pg_catalog,public")
                pids.add(a.execute("SELECT pg_backend_pid()").fetchone()[0])
            with self.connect() as b:  # no search_path: the server's default after the reset
                self.assertEqual(b.execute("SHOW search_path").fetchone()[0], '"$user", public')
        self.assertEqual(len(pids), 1)  # the one server connection, reset between clients


class TestSessionPooling(WeirCase):
    settings = {"pool_mode": "session", "default_pool_size": "1"}

    def test_set_persists_and_is_reset_for_the_next_client(self):
        c = self.connect()
        c.execute("SET work_mem = '2MB'")
        c.execute("PREPARE p AS select 1")
        pid = c.execute("select pg_backend_pid()").fetchone()[0]
        for _ in range(3):
            self.assertEqual(c.execute("show work_mem").fetchone()[0], "2MB")
        c.close()
        d = self.connect()
        row = d.execute("select current_setting('work_mem'), pg_backend_pid(),"
                        " (select count(*) from pg_prepared_statements)").fetchone()
        self.assertEqual(row, ("4MB", pid, 0))  # same connection, DISCARD ALL ran
        d.close()

    def test_listen_notify(self):
        listener = self.connect()
        got = []
        listener.add_notify_handler(lambda n: got.append((n.channel, n.payload)))
        listener.execute("LISTEN weir_chan")
        w2 = Weir(PG, settings={"pool_mode": "transaction"})
        try:
            with psycopg.connect(w2.dsn(), autocommit=True) as other:
                other.execute("NOTIFY weir_chan, 'hello'")
            deadline = time.monotonic() + 5
            while not got and time.monotonic() < deadline:
                listener.execute("select 1")  # reads what the server sent meanwhile
                time.sleep(0.05)
            self.assertEqual(got, [("weir_chan", "hello")])
        finally:
            w2.stop()
            listener.close()

    def test_notice_passes_through(self):
        c = self.connect()
        seen = []
        c.add_notice_handler(lambda d: seen.append(d.message_primary))
        c.execute("DO $$ BEGIN RAISE NOTICE 'weir notice'; END $$")
        self.assertEqual(seen, ["weir notice"])
        c.close()


class TestCancel(WeirCase):
    settings = {"pool_mode": "transaction", "default_pool_size": "2"}

    def test_cancel_reaches_only_its_query(self):
        a, b = self.connect(), self.connect()
        done = {}

        def slow(conn, key):
            try:
                conn.execute("select pg_sleep(5)")
                done[key] = "finished"
            except psycopg.errors.QueryCanceled:
                done[key] = "canceled"

        ta = threading.Thread(target=slow, args=(a, "a"))
        tb = threading.Thread(target=lambda: done.__setitem__(
            "b", b.execute("select pg_sleep(1.5), 'b ok'").fetchone()[1]))
        t0 = time.monotonic()
        ta.start()
        tb.start()
        time.sleep(0.5)
        a.cancel()
        ta.join(10)
        tb.join(10)
        self.assertEqual(done["a"], "canceled")
        self.assertLess(time.monotonic() - t0, 4)
        self.assertEqual(done["b"], "b ok")
        self.assertEqual(a.execute("select 'a again'").fetchone()[0], "a again")
        a.close()
        b.close()

    def test_cancel_with_nothing_running_is_harmless(self):
        a = self.connect()
        a.cancel()
        time.sleep(0.2)
        self.assertEqual(a.execute("select 1").fetchone()[0], 1)
        a.close()


class TestAdminConsole(unittest.TestCase):
    """The admin console (database "pgbouncer" or "weir") with PgBouncer's columns."""

    POOLS_COLS = ["database", "user", "cl_active", "cl_waiting", "cl_active_cancel_req",
                  "cl_waiting_cancel_req", "sv_active", "sv_active_cancel", "sv_being_canceled",
                  "sv_idle", "sv_used", "sv_tested", "sv_login", "maxwait", "maxwait_us",
                  "pool_mode", "load_balance_hosts"]
    DATABASES_COLS = ["name", "host", "port", "database", "force_user", "pool_size",
                      "min_pool_size", "reserve_pool_size", "server_lifetime", "pool_mode",
                      "load_balance_hosts", "max_connections", "current_connections",
                      "max_client_connections", "current_client_connections", "paused",
                      "disabled",
                      "reserve_pool"]  # after PgBouncer 1.25's: its pre-1.24 name, for exporters
    USERS_COLS = ["name", "pool_size", "reserve_pool_size", "pool_mode", "max_user_connections",
                  "current_connections", "max_user_client_connections",
                  "current_client_connections"]

    def setUp(self):
        self.w = Weir(PG, settings={"admin_users": "weir", "stats_users": "app",
                                    "default_pool_size": "1", "query_wait_timeout": "10"},
                      users={"app": "s3cret", "weir": "weirpass", "weir_auth": "authpw"})
        self.addCleanup(self.w.stop)

    def admin(self, sql, **kw):
        return self.w.admin(sql, **kw)

    def pool_row(self):
        rows, r = self.admin("SHOW POOLS")
        self.assertEqual(rows[0], self.POOLS_COLS, r.stderr)
        found = [dict(zip(rows[0], x)) for x in rows[1:] if x[0] == "appdb" and x[1] == "app"]
        self.assertEqual(len(found), 1, rows)
        return found[0]

    def test_show_commands_follow_the_pools(self):
        self.assertEqual(self.w.psql("select 1").stdout.strip(), "1")
        p = self.pool_row()
        self.assertEqual((p["sv_idle"], p["sv_active"], p["cl_waiting"]), ("1", "0", "0"))
        self.assertEqual(p["pool_mode"], "transaction")
        holder = psycopg.connect(self.w.dsn())  # holds the only server connection
        holder.execute("select 1")
        result = {}
        waiter = threading.Thread(target=lambda: result.update(v=self.w.psql("select 2").stdout))
        waiter.start()
        time.sleep(0.6)
        p = self.pool_row()
        self.assertEqual((p["sv_active"], p["sv_idle"], p["cl_waiting"]), ("1", "0", "1"))
        self.assertGreaterEqual(int(p["cl_active"]), 1)
        self.assertGreater(int(p["maxwait"]) * 1000000 + int(p["maxwait_us"]), 300000)
        holder.commit()
        waiter.join(10)
        self.assertEqual(result["v"].strip(), "2")
        holder.close()
        rows, _ = self.admin("SHOW DATABASES")
        self.assertEqual(rows[0], self.DATABASES_COLS)
        db = dict(zip(rows[0], rows[1]))
        self.assertEqual((db["name"], db["port"], db["pool_size"]), ("appdb", str(PG.port), "1"))
        rows, _ = self.admin("SHOW VERSION", dbname="weir")
        self.assertRegex(rows[1][0], r"^weir \d+\.\d+\.\d+")
        rows, _ = self.admin("SHOW CONFIG")
        self.assertEqual(rows[0], ["key", "value", "default", "changeable"])
        conf = {x[0]: x[1] for x in rows[1:]}
        self.assertEqual(conf["default_pool_size"], "1")
        self.assertEqual(conf["query_wait_timeout"], "10")
        rows, _ = self.admin("SHOW LISTS")
        lists = {x[0]: x[1] for x in rows[1:]}
        self.assertEqual((lists["databases"], lists["pools"]), ("1", "1"))
        _, r = self.admin("SHOW HELP")
        self.assertIn("SHOW HELP|CONFIG|DATABASES|POOLS", r.stderr)
        _, r = self.admin("SHOW NONSENSE")
        self.assertIn("bad SHOW command: NONSENSE", r.stderr)
        _, r = self.admin("DROP TABLE t")
        self.assertIn("invalid command 'DROP TABLE t', use SHOW HELP;", r.stderr)

    def test_column_types_as_pgbouncer_sends_them(self):
        """Typed clients see PgBouncer 1.25's column types: counts and
        settings int4, statistics numeric, names and times text."""
        import psycopg
        INT4, INT8, NUMERIC, TEXT = 23, 20, 1700, 25
        self.assertEqual(self.w.psql("select 1").stdout.strip(), "1")
        want = {
            "POOLS": {"database": TEXT, "cl_active": INT4, "maxwait_us": INT4, "pool_mode": TEXT,
                      "load_balance_hosts": TEXT},
            "DATABASES": {"name": TEXT, "port": INT4, "pool_size": INT4, "pool_mode": TEXT,
                          "disabled": INT4},
            "USERS": {"name": TEXT, "pool_size": TEXT, "reserve_pool_size": TEXT,
                      "max_user_connections": INT4},
            "LISTS": {"list": TEXT, "items": INT4},
            "STATS": {"database": TEXT, "total_xact_count": NUMERIC, "avg_wait_time": NUMERIC},
            "STATS_TOTALS": {"xact_count": NUMERIC},
            "TOTALS": {"name": TEXT, "value": NUMERIC},
            "CLIENTS": {"port": INT4, "connect_time": TEXT, "wait_us": INT4, "ptr": TEXT,
                        "id": INT4},
            "SERVERS": {"remote_pid": INT4, "prepared_statements": INT4},
            "MEM": {"name": TEXT, "size": INT4},
            "PEER_POOLS": {"peer_id": INT4, "sv_login": INT4},
            "DNS_ZONES": {"serial": INT8, "count": INT4},
        }
        with psycopg.connect(self.w.dsn(user="weir", password="weirpass", dbname="pgbouncer"),
                             autocommit=True) as c:
            for what, cols in want.items():
                cur = c.execute("SHOW " + what)
                types = {d.name: d.type_code for d in cur.description}
                for name, oid in cols.items():
                    self.assertEqual(types.get(name), oid, "SHOW %s column %s" % (what, name))
                cur.fetchall()  # and the values parse as those types

    def test_client_counts_and_limits_in_show_users_and_databases(self):
        """SHOW USERS lists [users], auth_file users and users with clients,
        with the limits in force and how many clients each has; SHOW
        DATABASES counts clients per database, the console's own row too.
        The console's clients count; admin_users are never refused by
        max_user_client_connections, stats_users are."""
        import psycopg
        with open(self.w.ini, "a") as f:
            f.write("max_user_client_connections = 1\n[users]\napp = pool_size=3 "
                    "max_user_client_connections=2\n")
        _, r = self.admin("RELOAD")
        self.assertEqual(r.returncode, 0, r.stderr)
        with psycopg.connect(self.w.dsn()) as a, psycopg.connect(self.w.dsn()) as b:
            rows, _ = self.admin("SHOW USERS")
            self.assertEqual(rows[0], self.USERS_COLS)
            users = {x[0]: dict(zip(rows[0], x)) for x in rows[1:]}
            self.assertEqual(set(users), {"app", "weir", "weir_auth"})
            app = users["app"]
            self.assertEqual((app["pool_size"], app["reserve_pool_size"]), ("3", ""))
            self.assertEqual((app["max_user_client_connections"],
                              app["current_client_connections"]), ("2", "2"))
            self.assertEqual(users["weir"]["current_client_connections"], "1")  # this console
            self.assertEqual(users["weir"]["max_user_client_connections"], "1")
            r = self.w.psql("select 1")
            self.assertIn("no more connections allowed (max_user_client_connections)", r.stderr)
            rows, _ = self.admin("SHOW DATABASES")
            dbs = {x[0]: dict(zip(rows[0], x)) for x in rows[1:]}
            self.assertEqual(dbs["appdb"]["current_client_connections"], "2")
            self.assertEqual(dbs["pgbouncer"]["current_client_connections"], "1")
            self.assertEqual(dbs["pgbouncer"]["force_user"], "pgbouncer")
            # an admin past the limit still gets in; a stats user does not
            console = self.w.dsn(user="weir", password="weirpass", dbname="pgbouncer")
            with psycopg.connect(console, autocommit=True), \
                    psycopg.connect(console, autocommit=True) as c2:
                rows = c2.execute("SHOW USERS").fetchall()
                self.assertEqual({x[0]: x[7] for x in rows}["weir"], 2)
            _, r = self.admin("SHOW POOLS", user="app", password="s3cret")
            self.assertIn("no more connections allowed (max_user_client_connections)", r.stderr)
        _, r = self.admin("SET max_user_client_connections = 0")
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_who_may_log_in(self):
        rows, r = self.admin("SHOW POOLS", user="app", password="s3cret")  # stats_users
        self.assertEqual(rows[0][0], "database", r.stderr)
        _, r = self.admin("PAUSE", user="app", password="s3cret")
        self.assertIn("admin access needed", r.stderr)
        # KILL_CLIENT too (PgBouncer before 1.25.2 let any console user run it)
        rows, _ = self.admin("SHOW CLIENTS")
        _, r = self.admin("KILL_CLIENT %s" % rows[1][rows[0].index("id")], user="app",
                          password="s3cret")
        self.assertIn("admin access needed", r.stderr)
        _, r = self.admin("SHOW POOLS", user="weir_auth", password="authpw")
        self.assertIn("not allowed", r.stderr)
        _, r = self.admin("SHOW POOLS", user="weir", password="wrong")
        self.assertIn('password authentication failed for user "weir"', r.stderr)

    def test_pause_and_resume_under_pgbench(self):
        env = dict(os.environ, PGPASSWORD="s3cret")
        bench = subprocess.Popen(["pgbench", "-n", "-h", "127.0.0.1", "-p", str(self.w.port), "-U",
                                  "app", "-c", "4", "-j", "2", "-T", "4", "-S", "appdb"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 env=env)
        time.sleep(1)
        rows, r = self.admin("PAUSE appdb")
        self.assertIn("PAUSE", r.stdout + r.stderr)
        rows, _ = self.admin("SHOW DATABASES")
        self.assertEqual(dict(zip(rows[0], rows[1]))["paused"], "1")
        time.sleep(0.7)
        self.admin("RESUME appdb")
        out = bench.communicate(timeout=60)[0]
        self.assertEqual(bench.returncode, 0, out)
        self.assertIn("number of failed transactions: 0", out)
        _, r = self.admin("PAUSE nosuchdb")
        self.assertIn("no such database: nosuchdb", r.stderr)

    def test_shutdown(self):
        _, r = self.admin("SHUTDOWN")
        self.assertEqual(self.w.proc.wait(10), 0)


class TestCommandLine(unittest.TestCase):
    def run_weir(self, *args):
        return subprocess.run([WEIR, *args], capture_output=True, text=True, timeout=30)

    def test_version_and_help(self):
        r = self.run_weir("-V")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^weir \d+\.\d+\.\d+")
        r = self.run_weir("-h")
        self.assertEqual(r.returncode, 0)
        for opt in ("-d", "-q", "-v", "-u", "-V", "-h"):
            self.assertIn(opt, r.stdout)

    def test_safe_shutdown_waits_for_the_transaction(self):
        """SIGINT: new connections are refused, an open transaction finishes, then weir exits 0."""
        w = Weir(PG, settings={"auth_type": "trust"})
        try:
            a = psycopg.connect(w.dsn())
            a.execute("INSERT INTO t VALUES (9001, 'safe') ON CONFLICT (id) DO UPDATE SET v = 'safe'")
            w.proc.send_signal(2)
            time.sleep(0.5)
            with self.assertRaisesRegex(psycopg.OperationalError, "Connection refused"):
                psycopg.connect(w.dsn())
            self.assertIsNone(w.proc.poll(), "weir left before the transaction ended")
            a.commit()
            self.assertEqual(w.proc.wait(10), 0)
            a.close()
            self.assertEqual(PG.sql("select v from t where id = 9001"), "safe")
            self.assertIn("safe shutdown: waiting for transactions to end", w.log())
        finally:
            w.stop()

    def test_shutdown_modes(self):
        """PgBouncer 1.25's: SIGTERM (SHUTDOWN WAIT_FOR_CLIENTS) stops accepting
        and exits once the clients have left, the console still reachable
        over the Unix socket meanwhile; SHUTDOWN WAIT_FOR_SERVERS closes the
        clients that want a server ("server shutting down"); a second
        signal, or SIGQUIT, stops at once; RESUME and SIGUSR2 are refused."""
        sock = tempfile.mkdtemp(prefix="weir-sock-")
        self.addCleanup(shutil.rmtree, sock, True)
        settings = {"auth_type": "trust", "unix_socket_dir": sock, "admin_users": "weir",
                    "pool_mode": "transaction"}

        def console(sql):
            return subprocess.run(["psql", "-X", "-A", "-t", "-h", sock, "-p", str(w.port),
                                   "-U", "weir", "-d", "pgbouncer", "-c", sql],
                                  capture_output=True, text=True, timeout=30)
        w = Weir(PG, settings=settings)
        try:
            a = psycopg.connect(w.dsn(), autocommit=True)
            w.proc.send_signal(15)
            time.sleep(0.5)
            self.assertEqual(a.execute("select 1").fetchone()[0], 1)  # still served
            with self.assertRaisesRegex(psycopg.OperationalError, "Connection refused"):
                psycopg.connect(w.dsn())
            r = console("SHOW VERSION")
            self.assertEqual(r.returncode, 0, r.stderr)
            r = console("RESUME")
            self.assertIn("pooler is shutting down", r.stderr)
            r = subprocess.run(["psql", "-X", "-h", sock, "-p", str(w.port), "-U", "app", "-d",
                                "appdb", "-c", "select 1"], capture_output=True, text=True,
                               timeout=30)
            self.assertIn("pooler is shutting down", r.stderr)  # the socket: console only
            w.proc.send_signal(12)
            time.sleep(0.3)
            self.assertIsNone(w.proc.poll())
            a.close()  # the last client leaves
            self.assertEqual(w.proc.wait(10), 0)
            log = w.log()
            self.assertIn("got SIGUSR2 while shutting down, ignoring", log)
            self.assertIn("every client has left; shutting down", log)
        finally:
            w.stop()
        w = Weir(PG, settings=dict(settings, default_pool_size="1"))
        try:
            holder = psycopg.connect(w.dsn())
            holder.execute("select 1")  # a transaction holds the only server connection
            waiter = psycopg.connect(w.dsn(), autocommit=True)
            done = {}

            def wait():
                try:
                    waiter.execute("select 2")
                    done["r"] = "served"
                except psycopg.OperationalError as e:
                    done["r"] = str(e)
            th = threading.Thread(target=wait)
            th.start()
            time.sleep(0.5)  # waiting for the server connection
            r = console("SHUTDOWN WAIT_FOR_SERVERS")
            self.assertEqual(r.returncode, 0, r.stderr)
            th.join(10)
            self.assertIn("server shutting down", done.get("r", ""))
            self.assertEqual(holder.execute("select 3").fetchone()[0], 3)  # its transaction goes on
            self.assertIsNone(w.proc.poll())
            holder.commit()  # the server connection is back: weir exits
            self.assertEqual(w.proc.wait(10), 0)
            self.assertIn("closing because: server shutting down", w.log())
        finally:
            w.stop()
        w = Weir(PG, settings=settings)
        try:
            a = psycopg.connect(w.dsn(), autocommit=True)
            w.proc.send_signal(15)
            time.sleep(0.3)
            w.proc.send_signal(15)  # a second one: now
            self.assertEqual(w.proc.wait(10), 0)
            self.assertIn("got SIGTERM, shutting down now", w.log())
            a.close()
        finally:
            w.stop()

    def test_daemon_pidfile_and_logfile(self):
        w = Weir(PG, start=False, settings={"auth_type": "trust"})
        pidfile = os.path.join(w.dir, "weir.pid")
        logfile = os.path.join(w.dir, "daemon.log")
        with open(w.ini, "a") as f:
            f.write("pidfile = %s\nlogfile = %s\n" % (pidfile, logfile))
        try:
            r = self.run_weir("-d", w.ini)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout + r.stderr, "")  # a daemon says nothing on the terminal
            deadline = time.monotonic() + 10
            while not os.path.exists(pidfile) and time.monotonic() < deadline:
                time.sleep(0.05)
            pid = int(slurp(pidfile))
            self.assertTrue(wait_port(w.port), "the daemon is not listening")
            self.assertEqual(w.psql("select 7").stdout.strip(), "7")
            os.kill(pid, 15)
            while os.path.exists("/proc/%d" % pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertFalse(os.path.exists(pidfile), "pidfile left behind")
            self.assertIn("shutdown complete", slurp(logfile))
        finally:
            w.stop()

    def test_run_as_user(self):
        w = Weir(PG, start=False, settings={"auth_type": "trust"})
        try:
            if os.getuid() != 0:
                r = self.run_weir("-u", "root", w.ini)
                self.assertNotEqual(r.returncode, 0)
                self.assertIn("could not switch to user 'root'", r.stderr)
                return
            os.chmod(w.dir, 0o755)
            os.chmod(w.ini, 0o644)
            os.chmod(os.path.join(w.dir, "users.txt"), 0o644)
            p = subprocess.Popen([WEIR, "-u", "nobody", w.ini], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            try:
                self.assertTrue(wait_port(w.port), "weir -u nobody is not listening")
                self.assertEqual(w.psql("select 7").stdout.strip(), "7")
                uid = [ln for ln in slurp("/proc/%d/status" % p.pid).splitlines()
                       if ln.startswith("Uid:")][0]
                self.assertEqual(int(uid.split()[1]), pwd.getpwnam("nobody").pw_uid)
            finally:
                p.terminate()
                self.assertEqual(p.wait(10), 0)
            r = self.run_weir("-u", "no_such_user_here", w.ini)
            self.assertIn("could not find user 'no_such_user_here'", r.stderr)
        finally:
            w.stop()

    def test_missing_config(self):
        r = self.run_weir("/nonexistent/weir.ini")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("cannot open config file /nonexistent/weir.ini", r.stderr)

    def test_bad_value_refuses_to_start_naming_file_line_key(self):
        w = Weir(PG, start=False, raw_ini="[databases]\nappdb = host=127.0.0.1\n[pgbouncer]\n"
                                          "listen_port = 1\npool_mode = sometimes\n")
        try:
            rc, log = w.start_fails()
            self.assertNotEqual(rc, 0)
            self.assertIn("weir.ini:5: invalid value \"sometimes\" for pool_mode", log)
            self.assertIn("cannot load config file %s; not starting" % w.ini, log)
        finally:
            w.stop()

    def test_bad_database_line(self):
        w = Weir(PG, start=False, raw_ini="[databases]\nappdb = host=127.0.0.1 port=notaport\n")
        try:
            rc, log = w.start_fails()
            self.assertNotEqual(rc, 0)
            self.assertIn("weir.ini:2: database \"appdb\": port: bad value \"notaport\"", log)
        finally:
            w.stop()

    def test_unknown_key_warns_and_include_works(self):
        port = None
        w = Weir(PG, start=False, raw_ini="")
        port = w.port
        inc = os.path.join(w.dir, "more.ini")
        with open(inc, "w") as f:
            f.write("[pgbouncer]\nlisten_port = %d\nno_such_key = 1\n" % port)
        with open(w.ini, "w") as f:
            f.write("[databases]\nappdb = host=127.0.0.1 port=%d\n[pgbouncer]\n"
                    "listen_addr = 127.0.0.1\nunix_socket_dir =\nauth_type = md5\n"
                    "auth_file = %s/users.txt\n%%include more.ini\n" % (PG.port, w.dir))
        try:
            w.start()
            self.assertIn("more.ini:3: unknown configuration key \"no_such_key\"; ignored", w.log())
            r = w.psql("select 1")
            self.assertEqual(r.stdout.strip(), "1", r.stderr)
        finally:
            w.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
