"""Hostile clients at both doors: malformed and smuggled HTTP, slow clients,
descriptor floods, other users' sessions, slow and hung databases, cancel
races, bad reloads, authentication probing and operational traps. Each test
shows what a client (or the operator) sees, against a real PostgreSQL.
"""
import base64
import hashlib
import http.client
import json
import os
import resource
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest
from pathlib import Path

from harness import (WEIR, basic, Postgres, Weir, error_fields, free_port, raw_startup,
                     read_messages, read_until, wait_port)

PG = None


def setUpModule():
    global PG
    PG = Postgres()


def tearDownModule():
    PG.destroy()


def raw_http(port, data, timeout=10):
    """Send bytes, read until the peer closes; the answer as text."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except (socket.timeout, ConnectionResetError):
            pass
    return out.decode(errors="replace")


def call(port, method, path, body=None, user="app", password="s3cret", headers=None, timeout=30):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = {"Authorization": basic(user, password), "Content-Type": "application/json"}
    h.update(headers or {})
    c.request(method, path, body=json.dumps(body) if body is not None else None, headers=h)
    r = c.getresponse()
    text = r.read().decode()
    c.close()
    try:
        return r.status, json.loads(text)
    except ValueError:
        return r.status, text


class HttpDoor(unittest.TestCase):
    settings = {}

    @classmethod
    def setUpClass(cls):
        cls.http_port = free_port()
        settings = {"http_listen_port": str(cls.http_port), "http_workers": "2",
                    "admin_users": "weir", "stats_users": "watcher",
                    "http_request_timeout": "1", "http_max_connections": "40"}
        settings.update(cls.settings)
        cls.w = Weir(PG, settings=settings,
                     users={"app": "s3cret", "weir": "weirpass", "watcher": "watchpw"})
        if not wait_port(cls.http_port):
            raise RuntimeError(cls.w.log())

    @classmethod
    def tearDownClass(cls):
        cls.w.stop()

    def alive(self):
        """Both doors still answer."""
        st, r = call(self.http_port, "POST", "/v1/databases/appdb/sql", {"query": "select 1 n"})
        self.assertEqual((st, r.get("rows")), (200, [{"n": 1}]), self.w.log()[-3000:])
        self.assertEqual(self.w.psql("select 2").stdout.strip(), "2")


class TestHttpParser(HttpDoor):
    def test_nul_in_request_line_is_400_not_a_crash(self):
        r = raw_http(self.http_port, b"GET / HTTP\0\r\n\r\n")
        self.assertTrue(r.startswith("HTTP/1.1 400 "), r)
        self.assertIn("NUL", r)
        self.alive()

    def test_smuggling_shapes_are_400(self):
        body = b'{"query":"select 1"}'
        auth = basic("app", "s3cret").encode()
        cases = {
            "two Content-Length": b"POST /v1/databases/appdb/sql HTTP/1.1\r\nHost: x\r\n"
                                  b"Authorization: " + auth + b"\r\nContent-Length: 20\r\n"
                                  b"Content-Length: 5\r\n\r\n" + body,
            "space before colon": b"POST /v1/databases/appdb/sql HTTP/1.1\r\nHost: x\r\n"
                                  b"Content-Length : 20\r\n\r\n" + body,
            "NUL in a header": b"GET /health HTTP/1.1\r\nHost: x\0y\r\n\r\n",
            "signed length": b"POST /v1/databases/appdb/sql HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Length: +20\r\n\r\n" + body,
            "bare LF": b"GET /health HTTP/1.1\nHost: x\n\n",
            "bare LF after CRLF line": b"GET /health HTTP/1.1\r\nHost: x\n\r\n",
            "obs-fold": b"GET /health HTTP/1.1\r\nHost: x\r\n y\r\n\r\n",
            "CL with TE": b"POST /v1/sql HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\nabc",
            "two Host": b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "control char in value": b"GET /health HTTP/1.1\r\nHost: a\x01b\r\n\r\n",
        }
        for name, req in cases.items():
            r = raw_http(self.http_port, req)
            self.assertTrue(r.startswith("HTTP/1.1 400 "), "%s: %r" % (name, r))
            self.assertIn("Connection: close", r, name)
        self.alive()

    def test_a_well_formed_request_still_works(self):
        r = raw_http(self.http_port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertTrue(r.startswith("HTTP/1.1 200 OK"), r)

    def test_short_body_is_closed_at_the_request_deadline(self):
        t0 = time.monotonic()
        r = raw_http(self.http_port, b"POST /v1/sql HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                     b"\r\nshort", timeout=20)
        took = time.monotonic() - t0
        self.assertTrue(r.startswith("HTTP/1.1 408 "), r)
        self.assertIn("http_request_timeout", r)
        self.assertLess(took, 5)

    def test_a_slow_drip_is_not_kept_alive(self):
        """One byte every 0.4 s: the 1 s deadline is not extended by each byte."""
        s = socket.create_connection(("127.0.0.1", self.http_port), timeout=10)
        t0 = time.monotonic()
        closed_at = None
        for ch in b"GET /health HTTP/1.1\r\nHost: x\r\n":
            try:
                s.sendall(bytes([ch]))
            except OSError:
                closed_at = time.monotonic() - t0
                break
            time.sleep(0.4)
            if time.monotonic() - t0 > 8:
                break
        s.settimeout(3)
        try:
            data = s.recv(4096)
        except (socket.timeout, ConnectionResetError):
            data = b""
        s.close()
        self.assertTrue(closed_at is not None or data.startswith(b"HTTP/1.1 408"), data)
        self.assertLess(closed_at if closed_at is not None else time.monotonic() - t0, 9)


class TestHttpConnectionCap(HttpDoor):
    """http_max_connections: 40 connections held, each answered once (so
    weir has accepted and counted it: on a loaded machine a connection can
    wait in the listen queue, and a probe then got in under the cap), with a
    request timeout that does not close them meanwhile."""

    settings = {"http_request_timeout": "30"}

    def test_connection_cap(self):
        socks = []
        try:
            for _ in range(40):
                s = socket.create_connection(("127.0.0.1", self.http_port), timeout=10)
                socks.append(s)
                # answered: weir has accepted and counted it (a connection the
                # kernel completed but left in a full listen queue is not yet)
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 200"))
            # once weir has accepted all 40 (slower under the sanitizers), the next is refused
            end = time.monotonic() + 10
            while True:
                time.sleep(0.3)
                r = raw_http(self.http_port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                if r.startswith("HTTP/1.1 503 ") or time.monotonic() > end:
                    break
            self.assertTrue(r.startswith("HTTP/1.1 503 "), r)
            self.assertIn("http_max_connections", r)
        finally:
            for s in socks:
                s.close()
        end = time.monotonic() + 5
        while time.monotonic() < end:
            r = raw_http(self.http_port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            if r.startswith("HTTP/1.1 200"):
                break
            time.sleep(0.1)
        self.assertTrue(r.startswith("HTTP/1.1 200"), r)
        st, m = call(self.http_port, "GET", "/metrics")
        self.assertIn("weir_http_connections_refused_total", m)


class TestDescriptorExhaustion(unittest.TestCase):
    """The PostgreSQL door out of descriptors: accept() fails with EMFILE. weir
    backs off (one log line per 10 s, not a busy loop), and serves again as
    soon as descriptors come free."""

    def test_pg_door_backs_off_and_recovers(self):
        def low_limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (96, 96))
        w = Weir(PG, start=False, settings={"max_client_conn": "1000"})
        w.log_fh = open(w.logfile, "ab")
        w.proc = subprocess.Popen([WEIR, w.ini],
                                  stdout=w.log_fh, stderr=subprocess.STDOUT, preexec_fn=low_limit)
        flood = []
        try:
            self.assertTrue(wait_port(w.port), w.log())
            self.assertIn("max_client_conn", w.log())  # warned at start: 1000 > 96
            for _ in range(120):
                flood.append(socket.create_connection(("127.0.0.1", w.port), timeout=5))
            time.sleep(0.5)
            def cpu():
                with open("/proc/%d/stat" % w.proc.pid) as f:
                    v = f.read().rsplit(")", 1)[1].split()
                return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")
            c0, t0 = cpu(), time.monotonic()
            time.sleep(3)
            used = (cpu() - c0) / (time.monotonic() - t0)
            self.assertLess(used, 0.3, "weir spins on accept(): %.2f cores" % used)
            lines = [ln for ln in w.log().splitlines() if "accept() failed" in ln]
            self.assertTrue(1 <= len(lines) <= 2, lines)
            for f in flood:
                f.close()
            flood = []
            deadline = time.monotonic() + 10
            while True:  # the backlog drains (closed peers), then a real client is served
                r = w.psql("select 1")
                if r.returncode == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            self.assertEqual((r.returncode, r.stdout.strip()), (0, "1"), r.stderr + w.log()[-2000:])
        finally:
            for f in flood:
                f.close()
            w.stop()


class TestSessionsBelongToTheirOwner(HttpDoor):
    def test_stats_user_cannot_see_or_use_a_session(self):
        st, r = call(self.http_port, "POST", "/v1/databases/appdb/sessions")
        self.assertEqual(st, 201, r)
        sid = r["id"]
        st, _ = call(self.http_port, "POST", "/v1/databases/appdb/sql",
                     {"query": "create temp table secret as select 42 v"},
                     headers={"Weir-Session": sid})
        self.assertEqual(st, 200)
        st, lst = call(self.http_port, "GET", "/v1/sessions", user="watcher", password="watchpw")
        self.assertEqual((st, lst["sessions"]), (200, []))
        st, e = call(self.http_port, "POST", "/v1/databases/appdb/sql",
                     {"query": "select v from secret"}, user="watcher", password="watchpw",
                     headers={"Weir-Session": sid})
        self.assertEqual((st, e["code"]), (404, "08003"), e)
        st, e = call(self.http_port, "DELETE", "/v1/sessions/" + sid, user="watcher",
                     password="watchpw")
        self.assertEqual(st, 404)
        # An admin may list and end it, but not run SQL in it.
        st, lst = call(self.http_port, "GET", "/v1/sessions", user="weir", password="weirpass")
        self.assertIn(sid, [x["id"] for x in lst["sessions"]])
        st, e = call(self.http_port, "POST", "/v1/databases/appdb/sql",
                     {"query": "select v from secret"}, user="weir", password="weirpass",
                     headers={"Weir-Session": sid})
        self.assertEqual(st, 404, e)
        st, r = call(self.http_port, "POST", "/v1/databases/appdb/sql",
                     {"query": "select v from secret"}, headers={"Weir-Session": sid})
        self.assertEqual((st, r["rows"]), (200, [{"v": 42}]))
        st, r = call(self.http_port, "DELETE", "/v1/sessions/" + sid, user="weir",
                     password="weirpass")
        self.assertEqual((st, r["ended"]), (200, True))


class Blackhole:
    """A TCP port that accepts connections and never says a word: a hung database."""

    def __init__(self):
        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        self.s.listen(512)
        self.port = self.s.getsockname()[1]
        self.conns = []
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        self.s.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.s.accept()
                self.conns.append(c)
            except (socket.timeout, OSError):
                pass

    def close(self):
        self.stop = True
        self.t.join()
        for c in self.conns:
            c.close()
        self.s.close()


class TestSlowSqlDelaysNoProbe(unittest.TestCase):
    def test_health_metrics_ready_and_other_databases_answer_at_once(self):
        hole = Blackhole()
        http_port = free_port()
        w = Weir(PG, settings={"http_listen_port": str(http_port), "http_workers": "2",
                               "server_connect_timeout": "6", "query_wait_timeout": "8"},
                 databases={"appdb": "host=127.0.0.1 port=%d dbname=appdb" % PG.port,
                            "hung": "host=127.0.0.1 port=%d dbname=appdb" % hole.port})
        try:
            self.assertTrue(wait_port(http_port))
            results = []

            def slow(db, q):
                results.append(call(http_port, "POST", "/v1/databases/%s/sql" % db,
                                    {"query": q}, timeout=30)[0])
            ts = [threading.Thread(target=slow, args=("appdb", "select pg_sleep(3)"))
                  for _ in range(4)]
            ts += [threading.Thread(target=slow, args=("hung", "select 1")) for _ in range(8)]
            for t in ts:
                t.start()
            time.sleep(0.5)
            for path in ("/health", "/metrics", "/ready"):
                t0 = time.monotonic()
                st, _ = call(http_port, "GET", path, timeout=10)
                took = time.monotonic() - t0
                self.assertIn(st, (200, 503), path)
                self.assertLess(took, 1.5 if path == "/ready" else 0.3, path)
            t0 = time.monotonic()
            st, r = call(http_port, "POST", "/v1/databases/appdb/sql", {"query": "select 7 n"},
                         timeout=10)
            self.assertEqual((st, r["rows"]), (200, [{"n": 7}]))
            # Four connections in the pool are asleep; this one waits for the
            # first to come back (3 s), not for the hung database.
            self.assertLess(time.monotonic() - t0, 4.5)
            for t in ts:
                t.join(30)
        finally:
            w.stop()
            hole.close()


class TestStatelessRequestsLeaveNoState(HttpDoor):
    settings = {"default_pool_size": "1"}

    def test_set_without_a_session_does_not_leak(self):
        default = self.w.psql("show search_path").stdout.strip()
        for q in ("set search_path = leaked", "select set_config('search_path', 'leaked', false)",
                  "SET SESSION search_path TO 'a', 'b'"):
            st, r = call(self.http_port, "POST", "/v1/databases/appdb/sql", {"query": q})
            self.assertEqual(st, 200, r)
            st, r = call(self.http_port, "POST", "/v1/databases/appdb/sql",
                         {"query": "show search_path"})
            self.assertEqual(r["rows"][0]["search_path"], default, q)
            self.assertEqual(self.w.psql("show search_path").stdout.strip(), default, q)
        st, r = call(self.http_port, "POST", "/v1/databases/appdb/sql",
                     {"queries": [{"query": "select 1"}, {"query": "set search_path = b"}]})
        self.assertEqual(st, 200, r)
        self.assertEqual(self.w.psql("show search_path").stdout.strip(), default)
        # Inside a session the setting stays, as it should.
        st, r = call(self.http_port, "POST", "/v1/databases/appdb/sessions")
        sid = r["id"]
        call(self.http_port, "POST", "/v1/databases/appdb/sql", {"query": "set search_path = s"},
             headers={"Weir-Session": sid})
        st, r = call(self.http_port, "POST", "/v1/databases/appdb/sql",
                     {"query": "show search_path"}, headers={"Weir-Session": sid})
        self.assertEqual(r["rows"][0]["search_path"], "s")
        call(self.http_port, "DELETE", "/v1/sessions/" + sid)


def pg_login(port, user, dbname, password=None):
    """A raw login: the authentication request weir sends first (code, data), and
    with a password, what it answers to it (messages until it closes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(raw_startup(user=user, database=dbname))
    hdr = s.recv(5)
    n = struct.unpack("!I", hdr[1:5])[0]
    body = b""
    while len(body) < n - 4:
        body += s.recv(n - 4 - len(body))
    first = (hdr[0:1], body)
    rest = []
    if password is not None and hdr[0:1] == b"R" and struct.unpack("!I", body[:4])[0] == 3:
        pw = password.encode() + b"\0"
        s.sendall(b"p" + struct.pack("!I", len(pw) + 4) + pw)
        rest = read_messages(s)
    s.close()
    return first, rest


class TestAuthentication(unittest.TestCase):
    def test_plain_does_not_take_the_stored_hash_and_checks_any_secret(self):
        h = "md5" + hashlib.md5(b"s3cretapp").hexdigest()
        scram = PG.sql("select rolpassword from pg_authid where rolname = 'app'")
        db = {"appdb": "host=127.0.0.1 port=%d dbname=appdb user=app password=s3cret" % PG.port}
        for secret in (h, scram):
            w = Weir(PG, settings={"auth_type": "plain"}, users={"app": secret}, databases=db)
            try:
                r = w.psql("select 1", password=h)
                self.assertNotEqual(r.returncode, 0, "the md5 string itself was taken")
                self.assertIn('password authentication failed for user "app"', r.stderr)
                r = w.psql("select current_user", password="s3cret")
                self.assertEqual((r.returncode, r.stdout.strip()), (0, "app"), r.stderr + w.log())
            finally:
                w.stop()

    def test_scram_refuses_a_user_with_only_an_md5_hash(self):
        h = "md5" + hashlib.md5(b"s3cretapp").hexdigest()
        db = {"appdb": "host=127.0.0.1 port=%d dbname=appdb user=app password=s3cret" % PG.port}
        w = Weir(PG, settings={"auth_type": "scram-sha-256"}, users={"app": h}, databases=db)
        try:
            (t, body), _ = pg_login(w.port, "app", "appdb")
            self.assertEqual(struct.unpack("!I", body[:4])[0], 10, "SCRAM must be asked, not md5")
            r = w.psql("select 1", password="s3cret")
            self.assertNotEqual(r.returncode, 0)
            self.assertIn('password authentication failed for user "app"', r.stderr)
        finally:
            w.stop()

    def test_unknown_database_is_not_revealed_before_authentication(self):
        w = Weir(PG)
        try:
            r = w.psql("select 1", dbname="nosuchdb", password="wrong")
            self.assertIn('password authentication failed for user "app"', r.stderr)
            self.assertNotIn("no such database", r.stderr)
            r = w.psql("select 1", dbname="nosuchdb")
            self.assertIn("no such database: nosuchdb", r.stderr)
        finally:
            w.stop()

    def test_an_unknown_user_is_asked_like_a_known_one(self):
        scram = PG.sql("select rolpassword from pg_authid where rolname = 'app'")
        for auth_type, users, code in (("scram-sha-256", {"app": "s3cret"}, 10),
                                       ("scram-sha-256", {"app": scram}, 10),
                                       ("md5", {"app": "s3cret"}, 5)):
            w = Weir(PG, settings={"auth_type": auth_type}, users=users)
            try:
                for user in ("app", "nobody"):
                    firsts = [pg_login(w.port, user, "appdb")[0][1] for _ in range(2)]
                    self.assertEqual([struct.unpack("!I", f[:4])[0] for f in firsts], [code] * 2)
                if code == 10:  # the salt a user is offered never changes, known or not
                    salts = {}
                    for user in ("app", "nobody"):
                        got = set()
                        for _ in range(2):
                            got.add(scram_salt(w.port, user))
                        self.assertEqual(len(got), 1, (auth_type, user, got))
                        salts[user] = got.pop()
                    self.assertNotEqual(salts["app"], salts["nobody"])
            finally:
                w.stop()

    def test_failed_logins_back_off(self):
        http_port = free_port()
        w = Weir(PG, settings={"http_listen_port": str(http_port)})
        try:
            self.assertTrue(wait_port(http_port))
            codes = [call(http_port, "POST", "/v1/databases/appdb/sql", {"query": "select 1"},
                          password="guess%d" % i)[0] for i in range(8)]
            self.assertEqual(codes[:5], [401] * 5)
            self.assertEqual(codes[5:], [429] * 3, codes)
            st, e = call(http_port, "POST", "/v1/databases/appdb/sql", {"query": "select 1"})
            self.assertEqual(st, 429)
            self.assertIn("too many failed logins", e["message"])
            r = w.psql("select 1")  # the same address on the other door
            self.assertIn("too many failed logins", r.stderr)
            time.sleep(1.2)
            st, r = call(http_port, "POST", "/v1/databases/appdb/sql", {"query": "select 1 n"})
            self.assertEqual(st, 200, r)
            st, m = call(http_port, "GET", "/metrics")
            self.assertRegex(m, r"weir_auth_failures_total [1-9]")
            self.assertRegex(m, r"weir_auth_backoff_refusals_total [1-9]")
        finally:
            w.stop()

    def test_cache_of_a_checked_password_is_per_database(self):
        """A user known only through one database's auth_query is not let into another."""
        PG.sql("do $$ begin if not exists (select from pg_roles where rolname = 'qonly') then "
               "create role qonly login password 'qpw'; end if; end $$")
        http_port = free_port()
        conn = "host=127.0.0.1 port=%d dbname=appdb" % PG.port
        w = Weir(PG, settings={"http_listen_port": str(http_port), "auth_type": "scram-sha-256"},
                 users={"weir": "weirpass", "app": "s3cret"},
                 databases={"withq": conn + " auth_user=weir", "noq": conn})
        try:
            self.assertTrue(wait_port(http_port))
            st, r = call(http_port, "POST", "/v1/databases/withq/sql", {"query": "select 1 n"},
                         user="qonly", password="qpw")
            self.assertEqual(st, 200, r)
            st, r = call(http_port, "POST", "/v1/databases/noq/sql", {"query": "select 1 n"},
                         user="qonly", password="qpw")
            self.assertEqual(st, 401, r)
        finally:
            w.stop()


class TestPoolLoginFollowsTheClients(unittest.TestCase):
    """A pool logs in to the server with what its clients proved (their SCRAM
    keys) when the config holds no password: a new password must reach it, and
    a login that had no keys must not leave a failure behind for one that has."""

    def setUp(self):
        PG.sql("do $$ begin if not exists (select from pg_roles where rolname = 'rot') then "
               "create role rot login; end if; end $$")
        PG.sql("alter role rot password 'old-pw'")

    def secret(self):
        return PG.sql("select rolpassword from pg_authid where rolname = 'rot'")

    def test_a_changed_password_reaches_the_pool_after_reload(self):
        w = Weir(PG, settings={"auth_type": "scram-sha-256", "admin_users": "weir"},
                 users={"rot": self.secret(), "weir": "weirpass"})
        try:
            r = w.psql("select current_user", user="rot", password="old-pw")
            self.assertEqual((r.returncode, r.stdout.strip()), (0, "rot"), r.stderr + w.log())
            PG.sql("alter role rot password 'new-pw'")
            with open(os.path.join(w.dir, "users.txt"), "w") as f:
                f.write('"rot" "%s"\n"weir" "weirpass"\n' % self.secret())
            for cmd in ("RELOAD", "RECONNECT"):
                _, res = w.admin(cmd)
                self.assertEqual(res.returncode, 0, res.stderr)
            r = w.psql("select current_user", user="rot", password="old-pw")
            self.assertIn('password authentication failed for user "rot"', r.stderr)
            # the old keys fail at the server once; the new ones must not meet that error
            for _ in range(3):
                r = w.psql("select current_user", user="rot", password="new-pw")
                self.assertEqual((r.returncode, r.stdout.strip()), (0, "rot"), r.stderr + w.log())
        finally:
            w.stop()

    def test_a_keyless_login_failure_is_not_cached_against_a_client_with_keys(self):
        http_port = free_port()
        w = Weir(PG, start=False, settings={"auth_type": "scram-sha-256",
                                            "http_listen_port": str(http_port),
                                            "server_login_retry": "30"},
                 users={"rot": self.secret(), "weir": "weirpass"})
        with open(w.ini, "a") as f:
            f.write("[http_tokens]\nrot = tok-0123456789abcdef\n")
        try:
            w.start()
            self.assertTrue(wait_port(http_port))
            # a token proves no password: with only a SCRAM secret, weir has
            # nothing to log in to the server with
            st, r = call(http_port, "POST", "/v1/databases/appdb/sql", {"query": "select 1 n"},
                         headers={"Authorization": "Bearer tok-0123456789abcdef"})
            self.assertNotEqual(st, 200, r)
            # the password, proved over SCRAM, gives the pool keys: served at once
            t0 = time.monotonic()
            r = w.psql("select current_user", user="rot", password="old-pw")
            self.assertEqual((r.returncode, r.stdout.strip()), (0, "rot"), r.stderr + w.log())
            self.assertLess(time.monotonic() - t0, 10)
        finally:
            w.stop()


class TestMadeUpNamesLeaveNothing(unittest.TestCase):
    """With auth_type = any and a database without user=, a client may log
    in under any name it makes up. Each name is counted while its client is
    there (max_user_client_connections, SHOW USERS); once it has left and
    its pool is cleaned up, nothing of it stays in weir's memory, and SHOW
    USERS no longer lists it. (Every name ever seen used to stay.)"""

    def test_names_go_with_their_clients(self):
        w = Weir(PG, settings={"auth_type": "any", "pool_idle_timeout": "1",
                               "admin_users": "weir"})
        self.addCleanup(w.stop)

        def users():
            rows, _ = w.admin("SHOW USERS")
            return {r[0]: r[7] for r in rows[1:]}
        names = ["ghost_%d" % i for i in range(20)]
        for n in names:  # PostgreSQL has no such role: each is refused there
            r = w.psql("select 1", user=n, password="x")
            self.assertNotEqual(r.returncode, 0)
            self.assertIn('"%s"' % n, r.stderr)
        import psycopg
        with psycopg.connect(w.dsn(), autocommit=True) as c:  # one that stays
            c.execute("select 1")
            self.assertEqual(users().get("app"), "1")
            end = time.monotonic() + 10
            while time.monotonic() < end and set(names) & set(users()):
                time.sleep(0.2)
            self.assertEqual(set(names) & set(users()), set(), w.log()[-2000:])
            self.assertEqual(users().get("app"), "1")  # still counted
        self.assertIn("cleaning up idle pool appdb/ghost_0", w.log())


class TestLongPasswords(unittest.TestCase):
    """Passwords as long as PostgreSQL takes (PgBouncer allows 65 535 bytes):
    in auth_file, over each auth_type, to the server, and over HTTP Basic;
    SASL messages over 8 kB."""

    LONG = ("pw-" + "x7Q" * 21843)[:65530]

    @classmethod
    def setUpClass(cls):
        PG.sql("do $$ begin if not exists (select from pg_roles where rolname = 'longpw') then "
               "create role longpw login; end if; end $$")
        PG.sql("alter role longpw password '%s'" % cls.LONG)

    def test_each_auth_type_and_the_server_login(self):
        for auth_type in ("scram-sha-256", "md5", "plain"):
            http_port = free_port()
            w = Weir(PG, settings={"auth_type": auth_type, "http_listen_port": str(http_port)},
                     users={"longpw": self.LONG, "weir": "weirpass"})
            try:
                r = w.psql("select current_user", user="longpw", password=self.LONG)
                self.assertEqual((r.returncode, r.stdout.strip()), (0, "longpw"),
                                 auth_type + ": " + r.stderr + w.log()[-2000:])
                r = w.psql("select 1", user="longpw", password=self.LONG[:-1] + "y")
                self.assertIn('password authentication failed for user "longpw"', r.stderr)
            finally:
                w.stop()

    def test_http_basic_with_a_long_password(self):
        mid = self.LONG[:10000]
        PG.sql("alter role longpw password '%s'" % mid)
        http_port = free_port()
        w = Weir(PG, settings={"http_listen_port": str(http_port)},
                 users={"longpw": mid, "weir": "weirpass"})
        try:
            self.assertTrue(wait_port(http_port))
            st, r = call(http_port, "POST", "/v1/databases/appdb/sql",
                         {"query": "select current_user u"}, user="longpw", password=mid)
            self.assertEqual((st, r.get("rows")), (200, [{"u": "longpw"}]), r)
            st, r = call(http_port, "POST", "/v1/databases/appdb/sql", {"query": "select 1"},
                         user="longpw", password=mid + "z")
            self.assertEqual(st, 401, r)
        finally:
            w.stop()
            PG.sql("alter role longpw password '%s'" % self.LONG)

    def test_scram_iterations(self):
        """PgBouncer 1.25's scram_iterations: the rounds of the secrets weir
        makes from plain passwords, and of an unknown user's stand-in (the
        count must not tell them apart); SET changes it for the next login."""
        w = Weir(PG, settings={"auth_type": "scram-sha-256", "scram_iterations": "5000",
                               "admin_users": "weir"}, users={"app": "s3cret", "weir": "weirpass"})

        def offered(user):
            s = socket.create_connection(("127.0.0.1", w.port), timeout=10)
            s.sendall(raw_startup(user=user, database="appdb"))
            read_until(s, b"R")  # AuthenticationSASL
            first = b"n,,n=,r=abcdefgh"
            msg = b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first
            s.sendall(b"p" + struct.pack("!I", len(msg) + 4) + msg)
            (t, body), = read_until(s, b"R")[-1:]  # AuthenticationSASLContinue
            s.close()
            self.assertEqual((t, struct.unpack("!I", body[:4])[0]), (b"R", 11), body[:200])
            return dict(kv.split("=", 1) for kv in body[4:].decode().split(","))["i"]
        try:
            self.assertEqual((offered("app"), offered("nosuchuser")), ("5000", "5000"))
            r = w.psql("select current_user")
            self.assertEqual((r.returncode, r.stdout.strip()), (0, "app"), r.stderr)
            _, r = w.admin("SET scram_iterations = 6000")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual((offered("app"), offered("nosuchuser")), ("6000", "6000"))
            r = w.psql("select current_user")
            self.assertEqual((r.returncode, r.stdout.strip()), (0, "app"), r.stderr)
            _, r = w.admin("SET scram_iterations = 0")
            self.assertIn("out of range (1..10000000)", r.stderr)
        finally:
            w.stop()

    def test_a_sasl_message_over_8_kb(self):
        w = Weir(PG, settings={"auth_type": "scram-sha-256"})
        try:
            nonce = b"N" * 12000
            s = socket.create_connection(("127.0.0.1", w.port), timeout=10)
            s.sendall(raw_startup(user="app", database="appdb"))
            self.assertEqual(struct.unpack("!I", read_messages(s, 1.0)[0][1][:4])[0], 10)
            first = b"n,,n=,r=" + nonce
            msg = b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first
            s.sendall(b"p" + struct.pack("!I", len(msg) + 4) + msg)
            (t, body), = read_messages(s, 1.0)[:1]
            self.assertEqual((t, struct.unpack("!I", body[:4])[0]), (b"R", 11), body[:200])
            self.assertTrue(body[4:].startswith(b"r=" + nonce), body[:100])
            s.close()
            # a nonce that is not printable is refused with PostgreSQL's message
            s = socket.create_connection(("127.0.0.1", w.port), timeout=10)
            s.sendall(raw_startup(user="app", database="appdb"))
            read_messages(s, 1.0)
            first = b"n,,n=,r=ab\x01cd"
            msg = b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first
            s.sendall(b"p" + struct.pack("!I", len(msg) + 4) + msg)
            (t, body), = read_messages(s, 1.0)[:1]
            self.assertEqual(t, b"E")
            self.assertIn("non-printable characters in SCRAM nonce", error_fields(body)["M"])
            s.close()
            r = w.psql("select 1")  # the door still serves
            self.assertEqual(r.returncode, 0, r.stderr)
        finally:
            w.stop()


class TestClientTextInErrors(unittest.TestCase):
    """Names a client sends come back in errors and logs: never as invalid
    UTF-8 (a client library that decodes the message would fail on it), never
    as a forged log line."""

    def test_pg_door_http_door_and_log(self):
        http_port = free_port()
        w = Weir(PG, settings={"http_listen_port": str(http_port)})
        try:
            body = struct.pack("!I", 196608)
            for k, v in ((b"user", b"app"), (b"database", b"appdb"), (b"opt\xff\xc0\x80", b"1")):
                body += k + b"\0" + v + b"\0"
            body += b"\0"
            s = socket.create_connection(("127.0.0.1", w.port), timeout=10)
            s.sendall(struct.pack("!I", len(body) + 4) + body)
            (t, e), = read_messages(s, 2.0)[:1]
            s.close()
            self.assertEqual(t, b"E")
            m = dict((p[0:1], p[1:]) for p in e.split(b"\0") if p)[b"M"]
            self.assertEqual(m.decode("utf-8"), "unsupported startup parameter: opt???")
            # HTTP Basic with a user name that is not UTF-8, and a line feed
            self.assertTrue(wait_port(http_port))
            cred = base64.b64encode(b"ev\xffil\n2099-01-01 FATAL forged:pw").decode()
            c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
            c.request("POST", "/v1/databases/appdb/sql", body=json.dumps({"query": "select 1"}),
                      headers={"Authorization": "Basic " + cred})
            r = c.getresponse()
            raw = r.read()
            c.close()
            self.assertEqual(r.status, 401)
            msg = json.loads(raw.decode("utf-8"))["message"]  # strict: valid UTF-8, valid JSON
            self.assertIn("\ufffd", msg)
            # the login failure is logged with the name, on one line
            r = w.psql("select 1", user="ev\n2099-01-01 FATAL forged", password="x")
            self.assertNotEqual(r.returncode, 0)
            log = w.log()
            self.assertIn("FATAL forged", log)
            self.assertFalse(any(ln.startswith("2099-01-01 FATAL forged") for ln in log.splitlines()),
                             log[-2000:])
        finally:
            w.stop()


def scram_salt(port, user):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(raw_startup(user=user, database="appdb"))
    s.recv(65536)
    first = b"n,,n=,r=abcdefghijklmnopqrstuvwx"
    msg = b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first
    s.sendall(b"p" + struct.pack("!I", len(msg) + 4) + msg)
    data = s.recv(65536)
    s.close()
    text = data[9:].decode()
    return dict(kv.split("=", 1) for kv in text.split(","))["s"]


class TestReloadAndStart(unittest.TestCase):
    def test_reload_of_a_truncated_file_is_refused(self):
        w = Weir(PG, settings={"admin_users": "weir"})
        try:
            good = Path(w.ini).read_text()
            with open(w.ini, "w") as f:
                f.write("[databases]\nappdb = host=127.0.0.1 port=%d dbname=appdb\n" % PG.port)
            _, r = w.admin("RELOAD")
            self.assertIn("no [pgbouncer] section", r.stderr)
            self.assertEqual(w.psql("select 1").stdout.strip(), "1")
            self.assertEqual(w.psql("select 1", user="weir", password="weirpass").returncode, 0)
            with open(w.ini, "w") as f:
                f.write(good.replace("auth_file = ", "; auth_file = "))
            _, r = w.admin("RELOAD")
            self.assertIn("needs auth_file or auth_user", r.stderr)
            _, r = w.admin("SET auth_file = '/nonexistent'")
            self.assertIn("/nonexistent", r.stderr)
            self.assertEqual(w.psql("select 1").stdout.strip(), "1")
        finally:
            w.stop()

    def test_a_directory_is_not_a_config_file(self):
        r = subprocess.run([os.environ.get("WEIR_BIN", "build/weir"), "/tmp"],
                           capture_output=True, text=True, timeout=20)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("not a regular file", r.stdout + r.stderr)

    def refused(self, flag, says, settings=None):
        """weir FLAG on a config it cannot run that way: it exits, saying so."""
        w = Weir(PG, start=False, settings=settings)
        try:
            r = subprocess.run([os.environ.get("WEIR_BIN", "build/weir"), flag, w.ini],
                               capture_output=True, text=True, timeout=20)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn(says, r.stdout + r.stderr)
        finally:
            w.stop()

    def test_daemon_needs_pidfile_and_log(self):
        self.refused("-d", "needs pidfile")
        # a pidfile, but nowhere for the log to go once stderr is closed
        self.refused("-d", "-d (daemon) needs logfile or syslog configured",
                     {"pidfile": os.path.join(tempfile.mkdtemp(), "w.pid")})

    def test_reboot_needs_the_unix_socket(self):
        # the harness sets unix_socket_dir empty
        self.refused("-R", "-R needs unix_socket_dir: the running weir is asked over it")

    def test_second_instance_keeps_the_pidfile_and_the_port(self):
        tmp = tempfile.mkdtemp()
        pidfile = os.path.join(tmp, "weir.pid")
        w = Weir(PG, settings={"pidfile": pidfile})
        try:
            end = time.monotonic() + 5
            while not os.path.exists(pidfile) and time.monotonic() < end:
                time.sleep(0.05)
            self.assertEqual(int(Path(pidfile).read_text()), w.proc.pid)
            w2 = Weir(PG, start=False, settings={"pidfile": pidfile})
            rc, log = w2.start_fails()
            self.assertNotEqual(rc, 0)
            self.assertIn("which is running", log)
            w2.stop()
            self.assertEqual(int(Path(pidfile).read_text()), w.proc.pid)
            # Another weir on the same port (no pidfile) fails: so_reuseport = 0.
            w3 = Weir(PG, start=False)
            with open(w3.ini) as f:
                ini = f.read()
            with open(w3.ini, "w") as f:
                f.write(ini.replace("listen_port = %d" % w3.port, "listen_port = %d" % w.port))
            rc, log = w3.start_fails()
            self.assertNotEqual(rc, 0)
            self.assertIn("in use", log)
            w3.stop()
            self.assertEqual(w.psql("select 1").stdout.strip(), "1")
        finally:
            w.stop()
            shutil.rmtree(tmp, ignore_errors=True)


def strace_works():
    if not shutil.which("strace"):
        return False
    return subprocess.run(["strace", "-o", "/dev/null", "true"], capture_output=True).returncode == 0


class TestStartingUp(unittest.TestCase):
    @unittest.skipUnless(strace_works(), "strace (Debian strace) missing or not allowed to trace")
    def test_only_the_workers_sockets_listen(self):
        """weir checks that its port is free (so_reuseport = 0) with a socket
        it only binds: a probe that listened took the clients that arrived
        in that moment into its queue and reset them when it closed ("server
        closed the connection unexpectedly"). Counted with strace: one
        listen() per worker, none more."""
        w = Weir(PG, start=False, settings={"workers": "3"})
        trace = os.path.join(w.dir, "trace")
        w.log_fh = open(w.logfile, "ab")
        # LeakSanitizer cannot run under ptrace (it stops the process to scan
        # it): in an ASan build its check at exit would abort a traced weir.
        env = dict(os.environ)
        env["ASAN_OPTIONS"] = ":".join(o for o in [env.get("ASAN_OPTIONS", ""), "detect_leaks=0"] if o)
        tracer = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=listen", "-o", trace,
                                   WEIR, w.ini], stdout=w.log_fh, stderr=subprocess.STDOUT, env=env)
        try:
            self.assertTrue(wait_port(w.port), w.log())
            self.assertEqual(w.psql("select 1").stdout.strip(), "1")
        finally:
            with open("/proc/%d/task/%d/children" % (tracer.pid, tracer.pid)) as f:
                os.kill(int(f.read().split()[0]), 3)  # weir, SIGQUIT: stop now
            rc = tracer.wait(30)
            w.log_fh.close()
            with open(trace) as f:
                calls = [ln for ln in f if "listen(" in ln]
            log = w.log()
            w.proc = None
            w.stop()  # removes its directory
        self.assertEqual(rc, 0, log)
        self.assertEqual(len(calls), 3, "".join(calls))


class TestCancelKeys(unittest.TestCase):
    def test_backend_pids_fit_in_int4(self):
        import psycopg
        w = Weir(PG)
        try:
            for _ in range(20):
                with psycopg.connect(w.dsn()) as c:
                    pid = c.info.backend_pid
                    self.assertTrue(0 < pid < 2 ** 31, pid)
                    c.execute("select pg_terminate_backend(%s) is not null", (pid,))
        finally:
            w.stop()


class TestCancelRace(unittest.TestCase):
    def test_a_late_cancel_never_hits_another_client(self):
        """Clients cancel their own short queries at random moments (many cancels
        arrive just as the query ends) while other clients share the same two
        server connections; no query of the others may be cancelled."""
        import psycopg
        import random
        w = Weir(PG, settings={"default_pool_size": "2"})
        stop = time.monotonic() + 6
        victims_cancelled, victim_queries, cancels = [], [0], [0]

        def victim():
            with psycopg.connect(w.dsn(), autocommit=True) as c:
                while time.monotonic() < stop:
                    try:
                        c.execute("select count(*) from generate_series(1, 2000)")
                        victim_queries[0] += 1
                    except psycopg.errors.QueryCanceled as e:
                        victims_cancelled.append(str(e))

        def canceller():
            with psycopg.connect(w.dsn(), autocommit=True) as c:
                while time.monotonic() < stop:
                    t = threading.Timer(random.uniform(0, 0.003), c.cancel)
                    t.start()
                    try:
                        c.execute("select pg_sleep(0.001)")
                    except psycopg.errors.QueryCanceled:
                        pass
                    t.join()
                    cancels[0] += 1
        try:
            ts = [threading.Thread(target=victim) for _ in range(4)]
            ts += [threading.Thread(target=canceller) for _ in range(4)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(30)
            self.assertGreater(cancels[0], 100)
            self.assertGreater(victim_queries[0], 100)
            self.assertEqual(victims_cancelled, [])
        finally:
            w.stop()


def peak_rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0


class TestLargeMessages(unittest.TestCase):
    """Messages far above the 256 KiB read mark pass in every mode. A simple
    query and a Bind (its parameters) stream, so weir's memory stays small
    whatever their size; a Parse, whose text weir keeps for other server
    connections, is held whole."""

    def run_sizes(self, mode, prepared):
        import psycopg
        w = Weir(PG, settings={"pool_mode": mode, "max_prepared_statements": prepared,
                               "default_pool_size": "2"})
        try:
            sizes = (300 * 1024, 16 << 20, 100 << 20)
            # Memory bounds in the plain build (sanitizers multiply memory).
            bounded = not os.environ.get("WEIR_TEST_SLOW")
            with psycopg.connect(w.dsn(), autocommit=True) as c:
                cur = psycopg.ClientCursor(c)  # the simple query protocol: one 'Q' message
                for n in sizes:
                    cur.execute("select length('%s')" % ("x" * n))
                    self.assertEqual(cur.fetchone()[0], n)
                if bounded:
                    self.assertLess(peak_rss_mb(w.proc.pid), 64, "a streamed query was buffered")
                for prepare in (False, True):  # unnamed, then a named statement
                    for n in sizes:  # Parse/Bind/Execute with one big parameter
                        r = c.execute("select length(%s::text)", ("y" * n,),
                                      prepare=prepare).fetchone()
                        self.assertEqual(r[0], n)
                if bounded:
                    self.assertLess(peak_rss_mb(w.proc.pid), 64, "a Bind was buffered")
                # a 16 MiB statement text in a named Parse: held whole, passes
                big = "select length('%s')" % ("z" * (16 << 20))
                self.assertEqual(c.execute(big, prepare=True).fetchone()[0], 16 << 20)
                self.assertEqual(c.execute("select 1").fetchone()[0], 1)
            self.assertEqual(w.psql("select 2").stdout.strip(), "2")
        finally:
            w.stop()

    def test_transaction_mode_with_prepared_statements(self):
        self.run_sizes("transaction", "200")

    def test_transaction_mode_without(self):
        self.run_sizes("transaction", "0")

    def test_session_mode(self):
        self.run_sizes("session", "200")


class TestManySmallMessages(unittest.TestCase):
    """What a client sends without a Sync is looked at a bounded number of
    times. With prepared statements on, weir passes a run of messages that
    names no statement as it is, up to its Sync; a run with no Sync in
    sight is read once more, not once more for each of its messages (which
    would make 400 000 five-byte Flush messages, 2 MB, cost about 3.5 s
    of a worker's time here instead of 0.2)."""

    def test_flushes_without_a_sync_are_answered_at_once(self):
        w = Weir(PG, settings={"auth_type": "trust", "max_prepared_statements": "200"})
        try:
            s = socket.create_connection(("127.0.0.1", w.port))
            s.sendall(raw_startup())
            read_until(s, b"Z")
            t0 = time.monotonic()
            s.sendall(b"H\0\0\0\x04" * 400000 + b"S\0\0\0\x04")
            read_until(s, b"Z", timeout=60)
            took = time.monotonic() - t0
            q = b"select 41 + 1\0"
            s.sendall(b"Q" + struct.pack("!I", len(q) + 4) + q)
            msgs = read_until(s, b"Z")
            rows = [b for t, b in msgs if t == b"D"]
            self.assertEqual(len(rows), 1)
            self.assertTrue(rows[0].endswith(b"42"), rows)
            s.close()
            self.assertLess(took, 15 if os.environ.get("WEIR_TEST_SLOW") else 2, took)
        finally:
            w.stop()


if __name__ == "__main__":
    unittest.main()
