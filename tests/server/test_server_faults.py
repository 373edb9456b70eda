"""test_server_faults.py — weir when things go wrong: timeouts, limits, a
PostgreSQL restart under load, clients vanishing mid-transaction, malformed input.

Each case checks the message a user would see, and that weir goes on serving
everyone else.
"""
import hashlib
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest

import psycopg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Postgres, Weir, error_fields, raw_startup, read_messages,  # noqa: E402
                     read_until)

PG = None


def setUpModule():
    global PG
    PG = Postgres()
    PG.sql("CREATE TABLE IF NOT EXISTS f (id int primary key, v text);"
           " INSERT INTO f VALUES (1, 'one') ON CONFLICT DO NOTHING; GRANT ALL ON f TO app")
    PG.sql("CREATE ROLE app2 LOGIN PASSWORD 's3cret'; GRANT CONNECT ON DATABASE appdb TO app2")
    PG.pgbench_init()


def tearDownModule():
    PG.destroy()


def login(port, **params):
    """A raw protocol client logged in with trust auth; returns the socket."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(raw_startup(**params))
    buf = b""
    while not buf.endswith(b"Z\x00\x00\x00\x05I"):
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError("closed during login: %r" % buf)
        buf += chunk
    return s


def query_msg(sql):
    b = sql.encode() + b"\0"
    return b"Q" + struct.pack("!I", len(b) + 4) + b


def first_error(msgs):
    for t, body in msgs:
        if t == b"E":
            return error_fields(body)
    return None


def backends(dbname="appdb", users=("app",)):
    return int(PG.sql("select count(*) from pg_stat_activity where datname = '%s'"
                      " and usename in (%s) and backend_type = 'client backend'"
                      % (dbname, ",".join("'%s'" % u for u in users))))


class FaultCase(unittest.TestCase):
    settings = {}

    def setUp(self):
        base = {"auth_type": "trust", "pool_mode": "transaction", "default_pool_size": "2"}
        base.update(self.settings)
        self.w = Weir(PG, settings=base)

    def tearDown(self):
        failed = any(e for t, e in (self._outcome.result.errors + self._outcome.result.failures)
                     if e and t is self)
        log = self.w.log()
        self.w.stop()
        if failed:
            sys.stderr.write("---- weir log ----\n" + log[-4000:] + "\n")

    def assert_still_serving(self):
        r = self.w.psql("select 'still here'")
        self.assertEqual(r.stdout.strip(), "still here", r.stderr)


class TestMalformed(FaultCase):
    def expect_error(self, payload, text, login_first=False):
        s = login(self.w.port) if login_first else socket.create_connection(("127.0.0.1", self.w.port))
        s.sendall(payload)
        msgs = read_messages(s)
        s.close()
        err = first_error(msgs)
        self.assertIsNotNone(err, "no ErrorResponse for %r: %r" % (payload[:20], msgs))
        self.assertIn(text, err["M"])
        self.assertEqual(err["C"], "08P01")
        self.assert_still_serving()

    def test_random_bytes(self):
        self.expect_error(b"\x17\x2a\xff\x00" + os.urandom(60), "invalid length of startup packet")

    def test_wrong_protocol_version(self):
        self.expect_error(struct.pack("!II", 8, 0x00020000), "unsupported frontend protocol")

    def test_startup_length_2gb(self):
        self.expect_error(struct.pack("!II", 0x80000000, 196608), "invalid length of startup packet")

    def test_truncated_startup_then_close(self):
        s = socket.create_connection(("127.0.0.1", self.w.port))
        s.sendall(raw_startup()[:11])
        s.close()
        self.assert_still_serving()

    def test_too_many_startup_parameters(self):
        # 64 is the limit (user and database count); PostgreSQL's only bound is
        # the packet's 10 000 bytes
        extra = {"x%02d" % i: "v" for i in range(63)}
        self.expect_error(raw_startup(**extra), "too many startup parameters")
        del extra["x62"]  # 64 in all: read, and its first unknown name refused
        self.expect_error(raw_startup(**extra), "unsupported startup parameter: x00")

    def test_cancel_and_encryption_requests_of_the_wrong_length(self):
        self.expect_error(struct.pack("!III", 12, 80877102, 42), "invalid length of cancel request")
        self.expect_error(struct.pack("!III", 12, 80877103, 0),
                          "invalid length of encryption request")

    def test_bad_startup_layout(self):
        body = struct.pack("!I", 196608) + b"user\0app\0database"  # no terminators
        self.expect_error(struct.pack("!I", len(body) + 4) + body, "invalid startup packet layout")

    def test_unknown_message_type(self):
        self.expect_error(b"y" + struct.pack("!I", 4), "invalid frontend message type 121",
                          login_first=True)

    def test_message_length_2gb(self):
        self.expect_error(b"Q" + struct.pack("!I", 0x80000000) + b"select", "invalid message length",
                          login_first=True)

    def test_message_length_below_4(self):
        self.expect_error(b"Q" + struct.pack("!I", 2), "invalid message length", login_first=True)

    def test_random_garbage_after_login_spares_other_clients(self):
        keep = psycopg.connect(self.w.dsn(), autocommit=True)
        for i in range(20):
            s = login(self.w.port)
            s.sendall(os.urandom(200))
            read_messages(s, timeout=0.5)
            s.close()
        self.assertEqual(keep.execute("select 5").fetchone()[0], 5)
        keep.close()
        self.assert_still_serving()

    def test_unsupported_startup_parameter(self):
        self.expect_error(raw_startup(geqo="off"), "unsupported startup parameter: geqo")
        self.expect_error(raw_startup(options="-c work_mem=1MB"),
                          "unsupported startup parameter in options: work_mem")

    def test_protocol_32_and_extensions_are_negotiated_down(self):
        # libpq 18 with max_protocol_version=3.2 (or latest), or a driver
        # asking for a "_pq_." extension: NegotiateProtocolVersion first (3.0,
        # the extensions weir does not know), then the login goes on at 3.0.
        body = struct.pack("!I", (3 << 16) | 2)
        for k, v in (("user", "app"), ("database", "appdb"), ("_pq_.test_ext", "on"),
                     ("application_name", "neg")):
            body += k.encode() + b"\0" + v.encode() + b"\0"
        body += b"\0"
        s = socket.create_connection(("127.0.0.1", self.w.port), timeout=5)
        s.sendall(struct.pack("!I", len(body) + 4) + body)
        msgs = read_until(s, b"Z")
        self.assertEqual(msgs[0][0], b"v", msgs)
        ver, count = struct.unpack("!II", msgs[0][1][:8])
        self.assertEqual((ver >> 16, ver & 0xFFFF, count), (3, 0, 1))
        self.assertEqual(msgs[0][1][8:], b"_pq_.test_ext\0")
        self.assertEqual([t for t, _ in msgs].count(b"v"), 1)
        s.sendall(query_msg("select current_setting('application_name')"))
        rows = [b for t, b in read_until(s, b"Z") if t == b"D"]
        self.assertEqual(len(rows), 1)
        self.assertTrue(rows[0].endswith(b"neg"), rows)
        s.close()
        # plain 3.0 is not told anything
        s = socket.create_connection(("127.0.0.1", self.w.port), timeout=5)
        s.sendall(raw_startup())
        self.assertNotIn(b"v", [t for t, _ in read_until(s, b"Z")])
        s.close()
        self.assert_still_serving()

    def test_ssl_request_is_declined(self):
        s = socket.create_connection(("127.0.0.1", self.w.port), timeout=5)
        s.sendall(struct.pack("!II", 8, 80877103))
        self.assertEqual(s.recv(1), b"N")
        s.sendall(raw_startup())
        msgs = read_messages(s, timeout=1)
        self.assertIn(b"Z", [t for t, _ in msgs])
        s.close()
        r = self.w.psql("select 1", env={"PGSSLMODE": "prefer"})
        self.assertEqual(r.stdout.strip(), "1", r.stderr)


class TestDisconnects(FaultCase):
    def test_client_gone_mid_transaction_leaves_nothing_open(self):
        s = login(self.w.port)
        s.sendall(query_msg("BEGIN; UPDATE f SET v = 'locked' WHERE id = 1"))
        msgs = read_messages(s, timeout=1)
        self.assertEqual(msgs[-1], (b"Z", b"T"))
        s.close()  # vanishes holding a row lock
        with psycopg.connect(self.w.dsn(), autocommit=True) as c:
            c.execute("SET lock_timeout = '3s'")  # a session SET: ignored by the check below
            with c.transaction():
                c.execute("SET LOCAL lock_timeout = '3s'")
                c.execute("UPDATE f SET v = 'one' WHERE id = 1")
        time.sleep(0.2)
        n = PG.sql("select count(*) from pg_stat_activity where datname = 'appdb'"
                   " and state like 'idle in transaction%'")
        self.assertEqual(n, "0")

    def test_client_gone_mid_query(self):
        s = login(self.w.port)
        s.sendall(query_msg("select pg_sleep(1)"))
        time.sleep(0.1)
        s.close()
        self.assert_still_serving()
        time.sleep(1.2)
        self.assert_still_serving()


class TestTimeouts(FaultCase):
    settings = {"query_timeout": "1", "query_wait_timeout": "1", "client_idle_timeout": "2",
                "idle_transaction_timeout": "1", "client_login_timeout": "1",
                "default_pool_size": "1"}

    def test_query_timeout(self):
        s = login(self.w.port)
        t0 = time.monotonic()
        s.sendall(query_msg("select pg_sleep(4)"))
        err = first_error(read_messages(s))
        self.assertEqual(err["M"], "query timeout")
        self.assertLess(time.monotonic() - t0, 2.5)
        # The pool's one server connection comes back once the cancel of
        # pg_sleep is through; under the sanitizers on a loaded machine that
        # has taken longer than query_wait_timeout (1 s), and the client
        # waiting for it is told so. Serving again is what must hold.
        for _ in range(4):
            r = self.w.psql("select 'still here'")
            if r.stdout.strip() == "still here":
                break
            self.assertIn("query_wait_timeout", r.stderr)
        self.assertEqual(r.stdout.strip(), "still here", r.stderr)

    def test_client_login_timeout(self):
        s = socket.create_connection(("127.0.0.1", self.w.port), timeout=5)
        s.sendall(raw_startup()[:6])  # and nothing more
        err = first_error(read_messages(s, timeout=3))
        self.assertEqual(err["M"], "client_login_timeout")


    def test_idle_transaction_timeout(self):
        s = login(self.w.port)
        s.sendall(query_msg("BEGIN"))
        err = first_error(read_messages(s, timeout=3))
        self.assertEqual(err["M"], "idle transaction timeout")
        time.sleep(0.2)
        self.assertEqual(PG.sql("select count(*) from pg_stat_activity where datname = 'appdb'"
                                " and state like 'idle in transaction%'"), "0")
        self.assert_still_serving()

    def test_client_idle_timeout(self):
        s = login(self.w.port)
        t0 = time.monotonic()
        err = first_error(read_messages(s, timeout=4))
        self.assertEqual(err["M"], "client_idle_timeout")
        self.assertGreater(time.monotonic() - t0, 1.5)


class TestQueryWait(FaultCase):
    settings = {"query_wait_timeout": "1", "default_pool_size": "1"}

    def test_query_wait_timeout(self):
        holder = login(self.w.port)
        holder.sendall(query_msg("BEGIN"))  # holds the only server connection
        read_messages(holder, timeout=0.3)
        s = login(self.w.port)
        t0 = time.monotonic()
        s.sendall(query_msg("select 1"))
        err = first_error(read_messages(s))
        self.assertEqual(err["M"], "query_wait_timeout")
        self.assertLess(time.monotonic() - t0, 2.5)
        holder.close()


class TestQueryWaitPerUser(unittest.TestCase):
    def test_users_query_wait_timeout_beats_the_databases(self):
        db = "host=127.0.0.1 port=%d dbname=appdb pool_size=1 query_wait_timeout=200" % PG.port
        w = Weir(PG, start=False, settings={"pool_mode": "transaction"}, databases={"appdb": db})
        with open(w.ini, "a") as f:
            f.write("[users]\napp = query_wait_timeout=1\n")
        try:
            w.start()
            holder = psycopg.connect(w.dsn())
            holder.execute("select 1")  # holds the only server connection
            t0 = time.monotonic()
            with self.assertRaises(psycopg.OperationalError) as e:
                with psycopg.connect(w.dsn()) as c:
                    c.execute("select 2")
            self.assertIn("query_wait_timeout", str(e.exception))
            self.assertLess(time.monotonic() - t0, 5)
            holder.close()
        finally:
            w.stop()


class TestQueryTimeoutWhileWaiting(FaultCase):
    settings = {"query_timeout": "1", "query_wait_timeout": "10", "default_pool_size": "1",
                "pool_mode": "transaction"}

    def test_a_client_waiting_for_a_server_counts_against_query_timeout(self):
        holder = psycopg.connect(self.w.dsn())
        holder.execute("select 1")  # holds the only server connection
        t0 = time.monotonic()
        with self.assertRaises(psycopg.OperationalError) as e:
            with psycopg.connect(self.w.dsn()) as c:
                c.execute("select 2")
        self.assertIn("query_timeout", str(e.exception))  # PgBouncer's word for a waiting one
        self.assertLess(time.monotonic() - t0, 5)
        holder.close()


class TestQueryWaitNotify(FaultCase):
    settings = {"query_wait_notify": "1", "default_pool_size": "1", "pool_mode": "transaction"}

    def test_a_waiting_client_is_told_once_per_wait(self):
        notices = []
        holder = psycopg.connect(self.w.dsn())
        holder.execute("select 1")  # a transaction holds the only server connection
        c = psycopg.connect(self.w.dsn(), autocommit=True)
        c.add_notice_handler(lambda d: notices.append(d.message_primary))
        t = threading.Timer(2.5, holder.commit)
        t.start()
        self.assertEqual(c.execute("select 2").fetchone()[0], 2)  # waited about 2.5 s
        t.join()
        self.assertEqual(notices, ["No server connection available in postgres backend, "
                                   "client being queued"])
        self.assertEqual(c.execute("select 3").fetchone()[0], 3)  # no wait: no notice
        self.assertEqual(len(notices), 1)
        holder.close()
        c.close()


class TestServerCheckQuery(unittest.TestCase):
    def test_check_runs_before_an_idle_connection_is_reused(self):
        PG.sql("create sequence if not exists weir_check_seq; "
               "grant usage on sequence weir_check_seq to app")
        w = Weir(PG, settings={"server_check_query": "select nextval('weir_check_seq')",
                               "server_check_delay": "0", "pool_mode": "transaction",
                               "default_pool_size": "1"})
        try:
            used = "select case when is_called then last_value else 0 end from weir_check_seq"
            before = int(PG.sql(used))
            pids = set()
            for _ in range(3):
                with psycopg.connect(w.dsn(), autocommit=True) as c:
                    pids.add(c.execute("select pg_backend_pid()").fetchone()[0])
                time.sleep(0.05)
            self.assertEqual(len(pids), 1)  # one server connection, checked and reused
            after = int(PG.sql(used))
            self.assertGreaterEqual(after - before, 2)  # checked before the 2nd and 3rd use
        finally:
            w.stop()

    def test_default_is_an_empty_query(self):
        w = Weir(PG, settings={"admin_users": "weir"})
        try:
            rows, _ = w.admin("SHOW CONFIG", user="weir", password="weirpass")
            conf = {r[0]: r[1] for r in rows[1:]}
            self.assertEqual(conf["server_check_query"], "<empty>")
            with psycopg.connect(w.dsn(), autocommit=True) as c:  # and it serves
                self.assertEqual(c.execute("select 1").fetchone()[0], 1)
        finally:
            w.stop()


class TestServerTimeouts(unittest.TestCase):
    def test_server_connect_timeout(self):
        """A server that accepts but never answers: login times out. As with
        PgBouncer the client waits through the retries (up to
        query_wait_timeout: a server restarting is transparent), then hears
        PgBouncer's word and why."""
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(16)
        port = lst.getsockname()[1]
        db = {"appdb": "host=127.0.0.1 port=%d dbname=appdb" % port}
        w = Weir(PG, settings={"auth_type": "trust", "server_connect_timeout": "1",
                               "query_wait_timeout": "2"}, databases=db)
        try:
            t0 = time.monotonic()
            r = w.psql("select 1")
            self.assertLess(time.monotonic() - t0, 5)
            self.assertGreaterEqual(time.monotonic() - t0, 1.9)
            self.assertIn("query_wait_timeout: server login timed out", r.stderr)
        finally:
            w.stop()
            lst.close()

    def test_server_idle_timeout_and_lifetime(self):
        w = Weir(PG, settings={"auth_type": "trust", "server_idle_timeout": "1",
                               "default_pool_size": "2"},
                 databases={"appdb": "host=127.0.0.1 port=%d dbname=appdb" % PG.port,
                            "otherdb": "host=127.0.0.1 port=%d dbname=postgres" % PG.port})
        try:
            with psycopg.connect(w.dsn(dbname="otherdb"), autocommit=True) as c:
                c.execute("select 1")
                self.assertEqual(backends("postgres"), 1)
                time.sleep(2)
                self.assertEqual(backends("postgres"), 0)  # closed after server_idle_timeout
                c.execute("select 1")  # and reopened on demand
        finally:
            w.stop()
        w = Weir(PG, settings={"auth_type": "trust", "server_lifetime": "1", "default_pool_size": "1"})
        try:
            # (named prepared statements across servers are another matter: plain queries here)
            with psycopg.connect(w.dsn(), autocommit=True, prepare_threshold=None) as c:
                pids = set()
                end = time.monotonic() + 3
                while time.monotonic() < end:
                    pids.add(c.execute("select pg_backend_pid()").fetchone()[0])
                    time.sleep(0.05)
                self.assertGreaterEqual(len(pids), 2)  # retired after server_lifetime, replaced
        finally:
            w.stop()


class TestLimits(FaultCase):
    settings = {"max_client_conn": "2"}

    def test_max_client_conn(self):
        a = psycopg.connect(self.w.dsn(), autocommit=True)
        b = psycopg.connect(self.w.dsn(), autocommit=True)
        with self.assertRaisesRegex(psycopg.OperationalError,
                                    r"no more connections allowed \(max_client_conn\)"):
            psycopg.connect(self.w.dsn())
        a.close()
        time.sleep(0.2)
        with psycopg.connect(self.w.dsn(), autocommit=True) as c:  # a slot is free again
            self.assertEqual(c.execute("select 1").fetchone()[0], 1)
        b.close()

    def test_a_place_freed_is_taken_at_once(self):
        """At the limit, a client that closes and one that connects right
        after it: the second may land on another worker, which accepts it
        before the first one's worker has seen it go. It is let in: the
        limit is checked again when its start-up packet arrives."""
        with psycopg.connect(self.w.dsn(), autocommit=True) as held:
            for i in range(150):
                with psycopg.connect(self.w.dsn(), autocommit=True) as c:
                    self.assertEqual(c.execute("select %s", (i,)).fetchone()[0], i)
            self.assertEqual(held.execute("select 1").fetchone()[0], 1)


class TestClientLimits(unittest.TestCase):
    """max_db_client_connections and max_user_client_connections with four
    workers: the count is the process's, a client over it hears which limit
    refused it, and a place freed is taken at once."""

    def start(self, **settings):
        base = {"pool_mode": "transaction", "workers": "4"}
        base.update(settings)
        w = Weir(PG, settings=base)
        self.addCleanup(w.stop)
        return w

    def md5_login(self, w, tail=b""):
        """A raw client through md5 auth, tail sent in the same write as its
        password (a client that does not wait for AuthenticationOk)."""
        s = socket.create_connection(("127.0.0.1", w.port), timeout=5)
        self.addCleanup(s.close)
        s.sendall(raw_startup())
        _, body = read_until(s, b"R")[-1]
        self.assertEqual(struct.unpack("!I", body[:4])[0], 5, "md5 must be asked")
        inner = hashlib.md5(b"s3cretapp").hexdigest().encode()
        pw = b"md5" + hashlib.md5(inner + body[4:8]).hexdigest().encode() + b"\0"
        s.sendall(b"p" + struct.pack("!I", len(pw) + 4) + pw + tail)
        return s

    def check_limit(self, w, name):
        held = [psycopg.connect(w.dsn(), autocommit=True) for _ in range(2)]
        for c in held:
            self.addCleanup(c.close)
        with self.assertRaisesRegex(psycopg.OperationalError,
                                    r"no more connections allowed \(%s\)" % name):
            psycopg.connect(w.dsn())
        # A query sent behind the password while the login is looked at
        # again (admit_later) is not taken for an authentication message.
        s = self.md5_login(w, tail=b"Q\x00\x00\x00\x0dselect 1\x00")
        msgs = read_messages(s)
        errors = [error_fields(b) for t, b in msgs if t == b"E"]
        self.assertEqual(len(errors), 1, msgs)
        self.assertEqual(errors[0]["M"], "no more connections allowed (%s)" % name)
        self.assertNotIn(b"Z", [t for t, _ in msgs])
        held[0].close()
        # the place is free: the same pipelined login is let in, its query answered
        s = self.md5_login(w, tail=b"Q\x00\x00\x00\x0dselect 7\x00")
        msgs = read_until(s, b"Z", count=2)  # its login's ReadyForQuery, then its query's
        self.assertIn((b"D", struct.pack("!HI", 1, 1) + b"7"), msgs)
        s.close()
        for c in held[1:]:
            self.assertEqual(c.execute("select 1").fetchone()[0], 1)

    def test_max_db_client_connections(self):
        self.check_limit(self.start(max_db_client_connections="2"), "max_db_client_connections")

    def test_max_user_client_connections(self):
        self.check_limit(self.start(max_user_client_connections="2"),
                         "max_user_client_connections")

    def test_a_refused_client_counts_no_more_once_it_reads_why(self):
        """A client weir refuses (here: PostgreSQL refuses its server
        login) is out of SHOW USERS and SHOW DATABASES by the time it reads
        its error: the counts are given up before the error is written, so
        a console on another worker never sees a client that has gone."""
        dbs = {"appdb": "host=127.0.0.1 port=%d dbname=appdb" % PG.port,
               "gonedb": "host=127.0.0.1 port=%d dbname=no_such_database" % PG.port}
        w = Weir(PG, settings={"pool_mode": "transaction", "workers": "4", "admin_users": "weir"},
                 databases=dbs)
        self.addCleanup(w.stop)
        console = psycopg.connect(w.dsn(user="weir", password="weirpass", dbname="pgbouncer"),
                                  autocommit=True, cursor_factory=psycopg.ClientCursor)
        self.addCleanup(console.close)

        def counts():
            users = {r[0]: r[7] for r in console.execute("SHOW USERS").fetchall()}
            dbrows = {r[0]: r[13] for r in console.execute("SHOW DATABASES").fetchall()}
            return users.get("app", 0), dbrows["gonedb"]

        for _ in range(40):
            with self.assertRaisesRegex(psycopg.OperationalError, "no_such_database"):
                psycopg.connect(w.dsn(dbname="gonedb"))
            self.assertEqual(counts(), (0, 0))

    def test_a_place_freed_is_taken_at_once(self):
        """At the limit, a client that closes and one that connects right
        after it, often on another worker that has not yet read the first
        one's Terminate: the second is let in (its login is finished again
        at its worker's next tick before it would be refused)."""
        w = self.start(max_db_client_connections="2", max_user_client_connections="2")
        with psycopg.connect(w.dsn(), autocommit=True) as held:
            for i in range(150):
                with psycopg.connect(w.dsn(), autocommit=True) as c:
                    self.assertEqual(c.execute("select %s", (i,)).fetchone()[0], i)
            self.assertEqual(held.execute("select 1").fetchone()[0], 1)

    def test_a_query_behind_the_password_is_answered_when_let_in_at_the_tick(self):
        """A client over the limit whose login is finished again at the
        tick, and let in then, with a query sent in the same write as its
        password: the query is in weir's buffer already, so letting it in
        must also run it (no more bytes will come to wake the worker). A
        place is freed 30-75 ms after its password: mostly after its login
        was put off and before the tick looks again (let in), sometimes
        after (refused, and never a ReadyForQuery then)."""
        w = self.start(max_db_client_connections="2")
        held = psycopg.connect(w.dsn(), autocommit=True)
        self.addCleanup(held.close)
        other = psycopg.connect(w.dsn(), autocommit=True)
        let_in = 0
        for i in range(40):
            s = self.md5_login(w, tail=b"Q\x00\x00\x00\x0dselect 7\x00")
            time.sleep(0.03 + 0.005 * (i % 10))  # its login ended over the limit
            other.close()  # a place is freed before, or while, its login waits
            try:  # let in: its login's ReadyForQuery, then its query's
                got = read_until(s, b"Z", timeout=5, count=2)
            except ConnectionError as e:  # refused at the tick: closed with the error
                self.assertIn("max_db_client_connections", str(e))
                self.assertNotIn("(b'Z'", str(e))
            else:
                let_in += 1
                self.assertIn((b"D", struct.pack("!HI", 1, 1) + b"7"), got)
            s.close()
            other = psycopg.connect(w.dsn(), autocommit=True)
        other.close()
        self.assertGreater(let_in, 0)


class TestSharedLimits(unittest.TestCase):
    """max_db_connections, max_user_connections and reserve_pool_size, seen from PostgreSQL."""

    def start(self, settings, databases=None):
        base = {"auth_type": "trust", "pool_mode": "transaction", "query_wait_timeout": "5"}
        base.update(settings)
        w = Weir(PG, settings=base, users={"app": "s3cret", "app2": "s3cret"}, databases=databases)
        self.addCleanup(w.stop)
        return w

    def hold(self, w, user="app", dbname="appdb"):
        """A client inside a transaction: it keeps its server connection."""
        c = psycopg.connect(w.dsn(user=user, dbname=dbname))
        c.execute("select 1")
        self.addCleanup(c.close)
        return c

    def timed_select(self, w, user, dbname="appdb"):
        t0 = time.monotonic()
        with psycopg.connect(w.dsn(user=user, dbname=dbname), autocommit=True) as c:
            v = c.execute("select 42").fetchone()[0]
        return v, time.monotonic() - t0

    def test_max_db_connections_across_users(self):
        w = self.start({"max_db_connections": "2", "default_pool_size": "5"})
        a, b = self.hold(w), self.hold(w)
        self.assertEqual(backends(users=("app", "app2")), 2)
        result = {}
        t = threading.Thread(target=lambda: result.update(r=self.timed_select(w, "app2")))
        t.start()
        time.sleep(0.5)
        self.assertTrue(t.is_alive(), "app2 got a third connection to appdb")
        self.assertEqual(backends(users=("app", "app2")), 2)
        a.commit()  # app's connection goes idle: app2's waiter takes its place
        t.join(5)
        self.assertEqual(result["r"][0], 42)
        # weir closed app's connection before it opened app2's, but the
        # backend of the closed one may still be exiting (it is listed until
        # it has): under load once it was, so give it a moment
        deadline = time.monotonic() + 3
        while backends(users=("app", "app2")) > 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertLessEqual(backends(users=("app", "app2")), 2)
        b.commit()

    def test_max_db_connections_wait_times_out(self):
        w = self.start({"max_db_connections": "1", "query_wait_timeout": "1"})
        self.hold(w)
        with self.assertRaisesRegex(psycopg.OperationalError, "query_wait_timeout"):
            self.timed_select(w, "app2")
        self.assertEqual(backends(users=("app", "app2")), 1)

    def test_max_user_connections_across_databases(self):
        dbs = {"appdb": "host=127.0.0.1 port=%d dbname=appdb" % PG.port,
               "appdb2": "host=127.0.0.1 port=%d dbname=appdb" % PG.port}
        w = self.start({"max_user_connections": "1", "default_pool_size": "3"}, databases=dbs)
        a = self.hold(w, dbname="appdb")
        result = {}
        t = threading.Thread(target=lambda: result.update(r=self.timed_select(w, "app", "appdb2")))
        t.start()
        time.sleep(0.5)
        self.assertTrue(t.is_alive(), "app got a second server connection")
        self.assertEqual(backends(), 1)
        a.commit()
        t.join(5)
        self.assertEqual(result["r"][0], 42)
        self.assertEqual(backends(), 1)
        # app2 has its own budget
        self.assertEqual(self.timed_select(w, "app2")[0], 42)

    def test_reserve_pool(self):
        w = self.start({"default_pool_size": "1", "reserve_pool_size": "1",
                        "reserve_pool_timeout": "0.5"})
        a = self.hold(w)
        v, took = self.timed_select(w, "app")  # waits 0.5 s, then gets a reserve connection
        self.assertEqual(v, 42)
        self.assertGreaterEqual(took, 0.4)
        self.assertLess(took, 3)
        self.assertIn("taking connections from reserve_pool", w.log())
        # and one line per connection taken from it, as PgBouncer counts them
        self.assertEqual(w.log().count("taking connection from reserve_pool"), 1, w.log())
        a.commit()
        deadline = time.monotonic() + 5
        while "reserve_pool given back" not in w.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        self.assertIn("reserve_pool given back", w.log())
        # the reserve connection is closed (at once if idle, else when released;
        # its PostgreSQL backend exits a moment later)
        deadline = time.monotonic() + 5
        while backends() != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(backends(), 1)


class TestStatementMode(FaultCase):
    settings = {"pool_mode": "statement"}

    def test_single_statements_pass_and_transactions_are_refused(self):
        with psycopg.connect(self.w.dsn(), autocommit=True) as c:
            self.assertEqual(c.execute("select 1").fetchone()[0], 1)
            # one Query message with a whole transaction in it ends idle: allowed
            c.execute("begin; select 1; commit")
        c = psycopg.connect(self.w.dsn())  # psycopg opens a transaction
        with self.assertRaisesRegex(psycopg.OperationalError,
                                    "transaction blocks not allowed in statement pooling mode"):
            c.execute("select 1")
            c.execute("select 2")
        c.close()
        time.sleep(0.2)
        self.assertEqual(PG.sql("select count(*) from pg_stat_activity where datname = 'appdb'"
                                " and state like 'idle in transaction%'"), "0")
        self.assert_still_serving()


class TestRestart(FaultCase):
    settings = {"default_pool_size": "4", "server_login_retry": "0.2"}

    def test_postgres_restart_under_load(self):
        env = dict(os.environ, PGPASSWORD="s3cret")
        bench = subprocess.Popen(["pgbench", "-n", "-h", "127.0.0.1", "-p", str(self.w.port), "-U", "app",
                                  "-c", "4", "-j", "2", "-T", "6", "-S", "appdb"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        time.sleep(1.5)
        PG.stop("fast")
        time.sleep(0.5)
        PG.start()
        back = time.monotonic()
        ok_at = None
        while time.monotonic() - back < 10:
            r = self.w.psql("select 'recovered'")
            if r.stdout.strip() == "recovered":
                ok_at = time.monotonic()
                break
            self.assertTrue("server" in r.stderr or "closed" in r.stderr, r.stderr)
            time.sleep(0.1)
        out, err = bench.communicate(timeout=30)
        self.assertIsNotNone(ok_at, "weir did not recover within 10 s:\n" + self.w.log()[-2000:])
        self.assertLess(ok_at - back, 5)
        # pgbench's clients saw errors (or finished before the restart hit them)
        self.assertIn("number of transactions actually processed", out + err)
        # and the pool serves a burst again
        r = subprocess.run(["pgbench", "-n", "-h", "127.0.0.1", "-p", str(self.w.port), "-U", "app",
                            "-c", "4", "-j", "2", "-t", "200", "-S", "appdb"],
                           capture_output=True, text=True, env=env, timeout=60)
        self.assertIn("number of failed transactions: 0", r.stdout, r.stderr)



class StartingUp:
    """A PostgreSQL that says it is starting up: the first `n` connections
    get PostgreSQL's FATAL 57P03 after their startup packet; later ones are
    passed to the real server byte for byte."""

    def __init__(self, target_port, n):
        self.target, self.left = target_port, n
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.refused = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            refuse = self.left > 0  # decided here, in one thread: exactly n refused
            self.left -= refuse
            threading.Thread(target=self.one, args=(c, refuse), daemon=True).start()

    @staticmethod
    def read_packet(c):
        head = b""
        while len(head) < 4:
            head += c.recv(4 - len(head))
        n = struct.unpack("!I", head)[0]
        body = b""
        while len(body) < n - 4:
            body += c.recv(n - 4 - len(body))
        return head + body

    def one(self, c, refuse):
        with c:
            if refuse:
                pkt = self.read_packet(c)
                if pkt[4:8] == struct.pack("!I", 80877103):  # SSLRequest: no
                    c.sendall(b"N")
                    pkt = self.read_packet(c)
                f = (b"SFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0\0")
                c.sendall(b"E" + struct.pack("!I", len(f) + 4) + f)
                self.refused += 1
                return
            up = socket.create_connection(("127.0.0.1", self.target))

            def pump(a, b):
                try:
                    while True:
                        d = a.recv(65536)
                        if not d:
                            break
                        b.sendall(d)
                except OSError:
                    pass
                for x in (a, b):
                    try:
                        x.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            t = threading.Thread(target=pump, args=(up, c), daemon=True)
            t.start()
            pump(c, up)
            t.join(5)
            up.close()

    def close(self):
        self.sock.close()


class TestServerRefusals(unittest.TestCase):
    """A server login refused (PgBouncer's kill_pool_logins and
    check_fast_fail) against one that is only not yet possible (57P03)."""

    def test_a_refused_login_fails_every_client_at_once_and_is_tried_once(self):
        db = "host=127.0.0.1 port=%d dbname=appdb user=app password=wrong" % PG.port
        w = Weir(PG, databases={"appdb": db}, settings={"server_login_retry": "30"})
        self.addCleanup(w.stop)
        for i in range(4):
            t0 = time.monotonic()
            r = w.psql("select 1")
            took = time.monotonic() - t0
            self.assertNotEqual(r.returncode, 0)
            # the first asks the server, the others hear its answer at once,
            # not after the next attempt 30 s later, in PgBouncer's words
            said = 'password authentication failed for user "app"'
            if i:
                said = ("server login has been failing, cached error: %s (server_login_retry)"
                        % said)
            self.assertIn(said, r.stderr)
            self.assertLess(took, 5, "client %d waited %.1f s" % (i, took))
        self.assertEqual(w.log().count("server login failed: FATAL password authentication"),
                         1, w.log()[-2000:])

    def test_starting_up_is_waited_out(self):
        fake = StartingUp(PG.port, 3)
        self.addCleanup(fake.close)
        db = "host=127.0.0.1 port=%d dbname=appdb" % fake.port
        w = Weir(PG, databases={"appdb": db},
                 settings={"server_login_retry": "0.2", "query_wait_timeout": "20"})
        self.addCleanup(w.stop)
        results = []

        def client():
            results.append(w.psql("select 'served'"))
        ts = [threading.Thread(target=client) for _ in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        self.assertEqual(len(results), 3)
        for r in results:  # nobody was told: each waited for an attempt that worked
            self.assertEqual((r.returncode, r.stdout.strip()), (0, "served"), r.stderr)
        self.assertEqual(fake.refused, 3)
        self.assertIn("the database system is starting up", w.log())

if __name__ == "__main__":
    unittest.main(verbosity=2)
