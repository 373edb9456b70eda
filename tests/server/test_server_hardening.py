"""Hostile clients at both doors: malformed and smuggled HTTP, slow clients,
descriptor floods, other users' sessions, slow and hung databases, cancel
races, bad reloads, authentication probing and operational traps. Each test
shows what a client (or the operator) sees, against a real PostgreSQL.
"""
import base64
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

from harness import Postgres, Weir, error_fields, free_port, raw_startup, read_messages, wait_port

PG = None


def setUpModule():
    global PG
    PG = Postgres()


def tearDownModule():
    PG.destroy()


def basic(user, password):
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


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

    def test_connection_cap(self):
        socks = []
        try:
            for _ in range(40):
                socks.append(socket.create_connection(("127.0.0.1", self.http_port), timeout=5))
            time.sleep(0.3)
            r = raw_http(self.http_port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
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


if __name__ == "__main__":
    unittest.main()
