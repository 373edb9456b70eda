"""test_server_ops.py — what operators use every day: the console's STATS family,
the HTTP door (/metrics checked with promtool, /health, /ready), the
stats_period log line, and online reload.

Real PostgreSQL, real psql and pgbench; figures are checked to move as load moves.
"""
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import sys
import threading
import time
import unittest
import urllib.error
import urllib.request

import psycopg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (WEIR, Postgres, Weir, basic, error_fields, free_port, raw_startup,  # noqa: E402
                     read_until, scratch_dir, wait_port)

PG = None

# PgBouncer 1.25's columns and names
FIGURES = ["server_assignment_count", "xact_count", "query_count", "received", "sent",
           "xact_time", "query_time", "wait_time", "client_parse_count", "server_parse_count",
           "bind_count", "client_login_count"]
STATS_COLS = (["database"] + ["total_" + f for f in FIGURES] +
              ["avg_" + {"received": "recv", "sent": "sent"}.get(f, f) for f in FIGURES])
TOTALS_PART = ["database"] + [("bytes_" + f if f in ("received", "sent") else f) for f in FIGURES]
AVERAGES_PART = TOTALS_PART[:9] + ["avg_" + f for f in FIGURES[8:]]
TOTALS_NAMES = ["server_assignment_count", "xact_count", "query_count", "client_bytes",
                "server_bytes", "xact_time", "query_time", "wait_time", "ps_client_parse_count",
                "ps_server_parse_count", "ps_bind_count", "client_login_count"]
TOTALS_ROWS = ["total_" + f for f in TOTALS_NAMES] + ["avg_" + f for f in TOTALS_NAMES]


def setUpModule():
    global PG
    PG = Postgres()
    PG.pgbench_init()


def tearDownModule():
    PG.destroy()


def pgbench(w, secs=2, clients=4, extra=()):
    r = subprocess.run(["pgbench", "-n", "-S", "-h", "127.0.0.1", "-p", str(w.port), "-U", "app",
                        "-c", str(clients), "-j", "2", "-T", str(secs), *extra, "appdb"],
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PGPASSWORD="s3cret"))
    m = re.search(r"number of transactions actually processed: (\d+)", r.stdout)
    return (int(m.group(1)) if m else 0), r


def pgbench_finish(test, p, run):
    """Run run() while p (a pgbench started with Popen) goes on, then wait
    for p; it is killed if run() fails first. p must have run clean.
    Returns (run()'s value, pgbench's output)."""
    try:
        got = run()
        out, _ = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    test.assertEqual(p.returncode, 0, out)
    test.assertIn("number of failed transactions: 0", out)
    return got, out


class OpsCase(unittest.TestCase):
    settings = {}

    def setUp(self):
        self.http_port = free_port()
        settings = {"admin_users": "weir", "stats_period": "1",
                    "http_listen_port": str(self.http_port)}
        settings.update(self.settings)
        self.w = Weir(PG, settings=settings, databases=getattr(self, "databases", None))
        self.addCleanup(self.w.stop)
        self.assertTrue(wait_port(self.http_port), self.w.log())

    def admin(self, sql):
        return self.w.admin(sql)

    def get(self, path):
        """(status, body) of an HTTP GET on the door."""
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.http_port, path),
                                        timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()


class TestStatsCommands(OpsCase):
    def stats_row(self):
        rows, r = self.admin("SHOW STATS")
        # PgBouncer 1.25's columns, then total_requests (1.7's name, for old exporters)
        self.assertEqual(rows[0], STATS_COLS + ["total_requests"], r.stderr)
        found = [dict(zip(rows[0], map(lambda v: v if not v.isdigit() else int(v), x)))
                 for x in rows[1:] if x[0] == "appdb"]
        self.assertEqual(len(found), 1, rows)
        self.assertEqual(found[0]["total_requests"], found[0]["total_query_count"])
        return found[0]

    def test_stats_follow_the_load(self):
        n, r = pgbench(self.w, secs=2)
        self.assertGreater(n, 100, r.stdout + r.stderr)
        time.sleep(2.3)  # a whole stats_period after the run ended...
        s = self.stats_row()
        # pgbench -S: one query per transaction; a psql session adds none (console)
        self.assertGreaterEqual(s["total_xact_count"], n)
        self.assertLessEqual(s["total_xact_count"], n + 10)
        self.assertEqual(s["total_query_count"], s["total_xact_count"])
        self.assertGreater(s["total_received"], n * 20)
        self.assertGreater(s["total_sent"], n * 20)
        self.assertGreater(s["total_query_time"], 0)
        self.assertGreaterEqual(s["total_xact_time"], s["total_query_time"] * 0.9)
        # pgbench's 4 clients log in once each (and pgbench may open one more
        # to read the scale); in transaction pooling each transaction is a
        # server assignment
        self.assertGreaterEqual(s["total_client_login_count"], 4)
        self.assertLessEqual(s["total_client_login_count"], 5)
        self.assertGreaterEqual(s["total_server_assignment_count"], s["total_xact_count"])
        # ...so the last period's averages are those of an idle second
        self.assertEqual(s["avg_xact_count"], 0)
        # while load runs, the averages show it
        t = threading.Thread(target=pgbench, args=(self.w, 3))
        t.start()
        time.sleep(2.5)
        s2 = self.stats_row()
        t.join()
        self.assertGreater(s2["avg_xact_count"], 50)
        self.assertGreater(s2["avg_query_time"], 0)
        self.assertGreater(s2["avg_recv"], 0)

        rows, _ = self.admin("SHOW STATS_TOTALS")
        self.assertEqual(rows[0], TOTALS_PART + ["requests"])
        tot = dict(zip(rows[0], rows[1]))
        self.assertGreaterEqual(int(tot["xact_count"]), n)
        rows, _ = self.admin("SHOW STATS_AVERAGES")
        self.assertEqual(rows[0], AVERAGES_PART)
        rows, _ = self.admin("SHOW TOTALS")
        self.assertEqual(rows[0], ["name", "value"])
        self.assertEqual([x[0] for x in rows[1:]], TOTALS_ROWS)
        self.assertGreaterEqual(int(dict(rows[1:])["total_xact_count"]), n)

    def test_stats_period_log_line(self):
        pgbench(self.w, secs=1)
        time.sleep(2.2)
        lines = [ln for ln in self.w.log().splitlines() if " stats: " in ln]
        self.assertGreaterEqual(len(lines), 1, self.w.log()[-2000:])
        self.assertRegex(lines[-1], r"LOG stats: \d+ xacts/s, \d+ queries/s, in \d+ B/s, "
                                    r"out \d+ B/s, xact \d+ us, query \d+ us, wait \d+ us$")
        busy = [ln for ln in lines if not re.search(r"stats: 0 xacts/s", ln)]
        self.assertTrue(busy, lines)


class TestHttpDoor(OpsCase):
    databases = None

    def setUp(self):
        self.dead_port = free_port()  # nothing listens there
        self.databases = {"appdb": "host=127.0.0.1 port=%d dbname=appdb" % PG.port}
        super().setUp()

    def metric(self, text, name, **labels):
        for ln in text.splitlines():
            if not ln.startswith(name + "{") and not ln.startswith(name + " "):
                continue
            if all('%s="%s"' % kv in ln for kv in labels.items()):
                return float(ln.rsplit(" ", 1)[1])
        return None

    @unittest.skipUnless(shutil.which("promtool"), "promtool (Debian prometheus) not installed")
    def test_metrics_pass_promtool_and_move_with_load(self):
        status, before = self.get("/metrics")
        self.assertEqual(status, 200)
        self.assertIn("# TYPE weir_clients gauge", before)
        n, r = pgbench(self.w, secs=2)
        self.assertGreater(n, 100, r.stderr)
        status, text = self.get("/metrics")
        self.assertEqual(status, 200)
        check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                               text=True, timeout=30)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        pool = {"database": "appdb", "user": "app"}
        self.assertGreaterEqual(self.metric(text, "weir_transactions_total", **pool), n)
        self.assertGreaterEqual(self.metric(text, "weir_queries_total", **pool), n)
        self.assertGreater(self.metric(text, "weir_client_received_bytes_total", **pool), 0)
        self.assertGreaterEqual(
            self.metric(text, "weir_query_duration_seconds_count", **pool), n)
        self.assertGreater(self.metric(text, "weir_query_duration_seconds_sum", **pool), 0)
        self.assertEqual(self.metric(text, "weir_query_duration_seconds_bucket",
                                     le="+Inf", **pool),
                         self.metric(text, "weir_query_duration_seconds_count", **pool))
        # the engine's families, in the same labels as the rest: one scheme throughout
        self.assertIsNotNone(self.metric(text, "weir_pool_acquire_seconds_count", **pool))
        self.assertNotIn('pool="', text)
        # pgbouncer_exporter's names, so its dashboards work unchanged
        self.assertEqual(self.metric(text, "pgbouncer_up"), 1)
        self.assertRegex(text, r'(?m)^pgbouncer_version_info\{version="weir \d')
        self.assertGreaterEqual(
            self.metric(text, "pgbouncer_stats_totals_queries_pooled_total", database="appdb"), n)
        self.assertGreaterEqual(
            self.metric(text, "pgbouncer_stats_queries_pooled_total", database="appdb"), n)
        self.assertGreater(self.metric(text, "pgbouncer_stats_totals_queries_duration_seconds_total",
                                       database="appdb"), 0)
        self.assertEqual(self.metric(text, "pgbouncer_databases_pool_size", database="appdb"), 4)
        self.assertIsNotNone(self.metric(text, "pgbouncer_pools_client_active_connections",
                                         **pool))
        self.assertIsNotNone(self.metric(text, "pgbouncer_pools_server_idle_connections", **pool))
        self.assertGreaterEqual(self.metric(text, "pgbouncer_used_clients"), 0)
        self.assertEqual(self.metric(text, "pgbouncer_config_max_client_connections"), 100)
        # more clients than server connections (4): returned connections go
        # straight to waiting clients, counted by whether they stayed on the
        # worker that returned them
        m, r = pgbench(self.w, secs=1, clients=12)
        self.assertGreater(m, 100, r.stderr)
        _, text = self.get("/metrics")
        same = self.metric(text, "weir_pool_handoffs_total", thread="same", **pool)
        other = self.metric(text, "weir_pool_handoffs_total", thread="other", **pool)
        self.assertIsNotNone(other, text)
        self.assertGreater(same + other, m / 10)
        # a client holding a transaction shows up as an active client and server link
        with psycopg.connect(self.w.dsn()) as conn:
            conn.execute("select 1")
            _, text = self.get("/metrics")
            self.assertEqual(self.metric(text, "weir_server_connections", state="active",
                                         **pool), 1)
            self.assertEqual(self.metric(text, "weir_clients", state="active"), 1)
            self.assertEqual(self.metric(text, "pgbouncer_pools_server_active_connections",
                                         **pool), 1)
            self.assertEqual(self.metric(text, "pgbouncer_client_connections", database="appdb",
                                         user="app", state="active"), 1)
            conn.rollback()
        # weir releases the server just after passing ROLLBACK's answer on
        deadline = time.time() + 5
        while True:
            _, text = self.get("/metrics")
            active = self.metric(text, "weir_server_connections", state="active", **pool)
            if active == 0 or time.time() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(active, 0)

    def test_health_ready_and_unknown_paths(self):
        status, body = self.get("/health")
        self.assertEqual((status, json.loads(body)), (200, {"status": "ok"}))
        status, body = self.get("/ready")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body), {"ready": True, "databases": {"appdb": "ok"}})
        status, body = self.get("/nope")
        self.assertEqual(status, 404)
        self.assertIn("/metrics", body)


class TestReadyWithADeadDatabase(OpsCase):
    settings = {"query_wait_timeout": "1"}  # a client of "gone" waits through the retries

    def setUp(self):
        self.dead = free_port()
        self.databases = {"appdb": "host=127.0.0.1 port=%d dbname=appdb" % PG.port,
                          "gone": "host=127.0.0.1 port=%d dbname=gone" % self.dead}
        super().setUp()

    def test_ready_names_the_database_that_is_down(self):
        status, body = self.get("/ready")
        self.assertEqual(status, 503, body)
        v = json.loads(body)
        self.assertFalse(v["ready"])
        self.assertEqual(v["databases"]["appdb"], "ok")
        self.assertIn("127.0.0.1:%d" % self.dead, v["databases"]["gone"])
        self.assertIn("refused", v["databases"]["gone"])
        # a pool that has tried and failed reports the server's error
        r = self.w.psql("select 1", dbname="gone")
        self.assertNotEqual(r.returncode, 0)
        status, body = self.get("/ready")
        self.assertEqual(status, 503)
        self.assertIn("refused", json.loads(body)["databases"]["gone"])
        # and PostgreSQL clients were served all along
        self.assertEqual(self.w.psql("select 7").stdout.strip(), "7")


class TestWaitingAcrossWorkers(OpsCase):
    """cl_waiting is counted by each worker in its own block and summed when
    read: clients waiting on several workers at once add up, and every one
    that leaves the queue (served, or gone while waiting) is taken off."""

    settings = {"workers": "4", "default_pool_size": "1", "worker_pack": "0"}

    def waiting(self):
        rows, r = self.admin("SHOW POOLS")
        found = [dict(zip(rows[0], x)) for x in rows[1:] if x[:2] == ["appdb", "app"]]
        self.assertEqual(len(found), 1, r.stdout + r.stderr)
        _, text = self.get("/metrics")
        m = re.search(r'(?m)^weir_pool_clients\{[^}]*database="appdb"[^}]*state="waiting"[^}]*\} (\d+)',
                      text)
        e = re.search(r'(?m)^pgbouncer_pools_client_waiting_connections\{[^}]*database="appdb"'
                      r'[^}]*\} (\d+)', text)
        self.assertTrue(m and e, text)
        return int(found[0]["cl_waiting"]), int(m.group(1)), int(e.group(1))

    def until(self, want, secs=10):
        end = time.time() + secs
        while time.time() < end:
            got = self.waiting()
            if got == (want,) * 3:
                return
            time.sleep(0.1)
        self.assertEqual(got, (want,) * 3)

    def test_waiting_clients_on_every_worker_add_up(self):
        holder = psycopg.connect(self.w.dsn())  # the only server connection, in a transaction
        holder.execute("select 1")
        # 12 connections hashed over 4 workers' listeners (SO_REUSEPORT): all
        # on one worker has a chance of 4^-11
        conns = [psycopg.connect(self.w.dsn(), autocommit=True) for _ in range(12)]
        out = []
        threads = [threading.Thread(target=lambda c=c: out.append(c.execute("select 7").fetchone()[0]))
                   for c in conns[1:]]
        for t in threads:
            t.start()
        conns[0].pgconn.send_query(b"select 7")  # the one that will leave while waiting
        self.until(12)
        # it goes without a Terminate (after one, its query would still run,
        # as PostgreSQL runs what came before a Terminate): the socket shut
        gone = socket.socket(fileno=os.dup(conns[0].pgconn.socket))
        gone.shutdown(socket.SHUT_RDWR)
        gone.close()
        self.until(11)
        holder.commit()
        for t in threads:
            t.join(15)
        self.assertEqual(out.count(7), 11)
        self.until(0)
        for c in conns + [holder]:
            c.close()

    def test_a_client_that_leaves_while_waiting(self):
        """Gone without a Terminate: dropped at once, its query never runs.
        Gone after a Terminate: what it sent before it runs, as PostgreSQL
        runs what came before a Terminate, and then it is closed."""
        PG.sql("CREATE TABLE IF NOT EXISTS left_waiting (k text); GRANT ALL ON left_waiting TO app;"
               "TRUNCATE left_waiting")
        holder = psycopg.connect(self.w.dsn())
        holder.execute("select 1")
        cut = psycopg.connect(self.w.dsn(), autocommit=True)
        cut.pgconn.send_query(b"insert into left_waiting values ('cut')")
        bye = psycopg.connect(self.w.dsn(), autocommit=True)
        bye.pgconn.send_query(b"insert into left_waiting values ('terminated')")
        self.until(2)
        gone = socket.socket(fileno=os.dup(cut.pgconn.socket))
        gone.shutdown(socket.SHUT_RDWR)
        gone.close()
        self.until(1)  # seen at once
        bye.pgconn.finish()  # Terminate after the query, then the socket closed
        time.sleep(0.3)
        holder.commit()
        self.until(0)
        end = time.time() + 10
        rows = []
        while time.time() < end:
            rows = PG.sql("SELECT k FROM left_waiting ORDER BY k").split()
            if rows:
                break
            time.sleep(0.1)
        time.sleep(0.5)  # the pool has one connection: a second insert would come after
        rows = PG.sql("SELECT k FROM left_waiting ORDER BY k").split()
        self.assertEqual(rows, ["terminated"])
        cut.close()
        holder.close()


class WorkerCounts:
    """weir_worker_clients of a 4-worker weir, and a run of short connections."""

    def per_worker(self):
        _, text = self.get("/metrics")
        got = dict(re.findall(r'(?m)^weir_worker_clients\{worker="(\d+)"\} (\d+)$', text))
        self.assertEqual(sorted(got), ["0", "1", "2", "3"], text)
        return [int(got[str(i)]) for i in range(4)]

    def wait_no_clients(self):
        # The harness's readiness probe (a TCP connection) counts on its
        # worker until that worker sees it close; the counts start from 0.
        end = time.time() + 10
        while time.time() < end and sum(self.per_worker()):
            time.sleep(0.05)
        self.assertEqual(self.per_worker(), [0, 0, 0, 0])

    @staticmethod
    def metric_sum(text, name):
        return sum(float(v) for v in re.findall(r"(?m)^%s(?:\{[^}]*\})? (\S+)$" % name, text))

    def short_connections(self, host):
        """pgbench -C for 4 s through host, 12 clients each holding its
        connection 40 ms. Returns 20 samples of the per-worker counts taken
        from 1.5 s in (ticks, 100 ms, have seen them come and go), and
        (Unix-socket hand-overs, transactions) over those samples."""
        script = os.path.join(tempfile.mkdtemp(prefix="weir-short-"), "short.sql")
        self.addCleanup(shutil.rmtree, os.path.dirname(script), True)
        with open(script, "w") as f:
            f.write("\\sleep 40 ms\nSELECT 1;\n")
        p = subprocess.Popen(["pgbench", "-n", "-C", "-f", script, "-h", host,
                              "-p", str(self.w.port), "-U", "app", "-c", "12", "-j", "2",
                              "-T", "4", "appdb"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True,
                             env=dict(os.environ, PGPASSWORD="s3cret"))

        def sample():
            time.sleep(1.5)
            _, before = self.get("/metrics")
            samples = []
            for _ in range(20):
                samples.append(self.per_worker())
                time.sleep(0.05)
            _, after = self.get("/metrics")
            return before, samples, after

        (before, samples, after), _ = pgbench_finish(self, p, sample)
        handed = (self.metric_sum(after, "weir_unix_handed_total")
                  - self.metric_sum(before, "weir_unix_handed_total"))
        xacts = (self.metric_sum(after, "weir_transactions_total")
                 - self.metric_sum(before, "weir_transactions_total"))
        self.assertGreater(xacts, 50, after)  # they did come and go meanwhile
        self.assertGreater(max(s[0] for s in samples), 5, samples)  # more than UNIX_SLACK at once
        return samples, (handed, xacts)


class TestUnixSocketAcrossWorkers(WorkerCounts, OpsCase):
    """The Unix socket is one socket, not one per worker as TCP's are: worker
    0 alone listens on it, so that a connection wakes one worker and not
    every one. It keeps a connection unless another worker has more than 4
    (UNIX_SLACK) fewer clients; then the one with the fewest gets it.
    Connections through it are spread over the workers within that, none is
    lost, and the counts go back to nothing when they leave."""

    def setUp(self):
        self.sd = tempfile.mkdtemp(prefix="weir-sock-")
        os.chmod(self.sd, 0o755)
        self.addCleanup(shutil.rmtree, self.sd, True)  # after weir stops (cleanups run last first)
        self.settings = {"workers": "4", "unix_socket_dir": self.sd, "worker_pack": "0"}
        super().setUp()
        self.wait_no_clients()

    def connect(self):
        return psycopg.connect(host=self.sd, port=self.w.port, user="app", password="s3cret",
                               dbname="appdb", connect_timeout=10, autocommit=True)

    def test_one_after_another_they_go_round_the_workers(self):
        conns = []
        try:
            for i in range(24):
                conns.append(self.connect())
                self.assertEqual(conns[-1].execute("select %s::int", (i,)).fetchone(), (i,))
                if i == 4:  # the first five stay with worker 0
                    self.assertEqual(self.per_worker(), [5, 0, 0, 0])
                if i == 7:  # then each goes to the one with the fewest
                    self.assertEqual(self.per_worker(), [5, 1, 1, 1])
            self.assertEqual(self.per_worker(), [9, 5, 5, 5])
        finally:
            for c in conns:
                c.close()

    def test_forty_at_once_are_spread_and_served(self):
        got, errors = [], []
        ready = threading.Barrier(41, timeout=60)

        def one(i):
            try:
                with self.connect() as c:
                    got.append(c.execute("select %s::int", (i,)).fetchone()[0])
                    ready.wait()  # all forty are connected now
                    ready.wait()  # the counts have been read
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))
                ready.abort()

        ts = [threading.Thread(target=one, args=(i,)) for i in range(40)]
        for t in ts:
            t.start()
        try:
            ready.wait()
            counts = self.per_worker()
            ready.wait()
        finally:
            for t in ts:
                t.join(60)
        self.assertEqual(errors, [])
        self.assertEqual(sorted(got), list(range(40)))
        self.assertEqual(sum(counts), 40, counts)
        self.assertLessEqual(max(counts) - min(counts), 5, counts)  # UNIX_SLACK + 1
        self.assertGreater(min(counts), 0, counts)

    def test_a_new_connection_per_transaction_loses_none(self):
        r = subprocess.run(["pgbench", "-n", "-S", "-C", "-h", self.sd, "-p", str(self.w.port),
                            "-U", "app", "-c", "8", "-j", "2", "-t", "100", "appdb"],
                           capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, PGPASSWORD="s3cret"))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("number of transactions actually processed: 800/800", r.stdout)
        self.assertIn("number of failed transactions: 0", r.stdout)
        end = time.time() + 10
        while time.time() < end and sum(self.per_worker()):
            time.sleep(0.1)
        self.assertEqual(self.per_worker(), [0, 0, 0, 0])


    def test_short_connections_stay_with_worker_0(self):
        """A connection per transaction, twelve at a time, each held 40 ms:
        more than UNIX_SLACK apart, so the count rule alone would hand most
        of them out. They leave young, and worker 0 has time for them (a few
        hundred logins a second), so once a tick has seen that, worker 0
        keeps them all: nothing is handed out and the other workers stay
        empty. (Held connections still spread: the tests above.)"""
        samples, handed = self.short_connections(self.sd)
        self.assertLessEqual(max(sum(s[1:]) for s in samples), 1, samples)
        self.assertLessEqual(handed[0], handed[1] * 0.05, (handed, samples))

    def test_stopping_while_connections_pour_in(self):
        """SIGQUIT while worker 0 hands connections out to the others: weir
        exits 0 (under the sanitizers: nothing leaked, no race). A connection
        that reaches a worker's queue after its loop ended is closed by
        worker_destroy; this rarely happens here (the workers stop together),
        so the test shows the hand-over does not disturb a shutdown, not that
        path."""
        path = os.path.join(self.sd, ".s.PGSQL.%d" % self.w.port)
        stop = threading.Event()
        opened = []

        def pour():
            while not stop.is_set() and len(opened) < 2000:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(path)
                    s.sendall(raw_startup())
                except OSError:
                    s.close()
                    continue
                opened.append(s)

        ts = [threading.Thread(target=pour) for _ in range(4)]
        for t in ts:
            t.start()
        try:
            end = time.time() + 10
            while len(opened) < 200 and time.time() < end:
                time.sleep(0.01)
            self.assertGreaterEqual(len(opened), 200)
            self.w.stop()  # raises unless weir exits 0
        finally:
            stop.set()
            for t in ts:
                t.join(10)
            for s in opened:
                s.close()


class TestConsoleAcrossWorkers(WorkerCounts, OpsCase):
    """SHOW CLIENTS, SHOW SERVERS, SHOW SOCKETS, KILL, KILL_CLIENT, SET and
    RELOAD each take the change lock, and all but SET and RELOAD's reading
    hold every worker for a moment. Console sessions on different workers
    that run them at once all get their answers: a command that finds the
    lock taken while its own worker is among those being held cannot wait
    in place, so it stays unread and runs again once that hold has ended
    (or at its worker's next tick, 100 ms), for 10 s at most; then it
    answers `another configuration change or listing is running; try
    again`."""

    def setUp(self):
        self.sd = tempfile.mkdtemp(prefix="weir-sock-")
        os.chmod(self.sd, 0o755)
        self.addCleanup(shutil.rmtree, self.sd, True)
        # the Unix socket: the first five stay on worker 0, then each goes
        # to the worker with the fewest (TestUnixSocketAcrossWorkers)
        self.settings = {"workers": "4", "unix_socket_dir": self.sd, "worker_pack": "0"}
        super().setUp()
        self.wait_no_clients()

    def console(self):
        return psycopg.connect(host=self.sd, port=self.w.port, user="weir", password="weirpass",
                               dbname="pgbouncer", connect_timeout=10, autocommit=True,
                               cursor_factory=psycopg.ClientCursor)

    def test_listings_and_changes_at_once_on_every_worker_all_answer(self):
        sessions = [self.console() for _ in range(8)]
        app = [psycopg.connect(host=self.sd, port=self.w.port, user="app", password="s3cret",
                               dbname="appdb", autocommit=True) for _ in range(4)]
        try:
            counts = self.per_worker()
            self.assertEqual(sum(counts), 12, counts)
            self.assertGreaterEqual(sum(1 for n in counts if n), 3, counts)
            for c in app:  # server connections for SHOW SERVERS to list
                c.execute("select 1")
            cmds = [["SHOW SERVERS", "SHOW CLIENTS"], ["SHOW SOCKETS", "SHOW ACTIVE_SOCKETS"],
                    ["SHOW CLIENTS", "KILL_CLIENT 999999999"], ["SET client_idle_timeout = 0"],
                    ["RELOAD", "SHOW SERVERS"], ["SHOW SERVERS"], ["SHOW CLIENTS"],
                    ["KILL nosuchdb_here", "SHOW SOCKETS"]]
            done, errors = [0] * 8, []

            def queries():  # the console's own count of its commands
                rows = sessions[0].execute("SHOW TOTALS").fetchall()
                return int(dict(rows)["total_query_count"])

            before = queries()
            end = time.time() + 3

            def run(i):
                cur = sessions[i].cursor()
                n = 0
                while time.time() < end and n < 3000:
                    sql = cmds[i][n % len(cmds[i])]
                    n += 1
                    try:
                        cur.execute(sql)
                        if sql.startswith("SHOW"):
                            self.assertTrue(cur.description, sql)
                            cur.fetchall()
                    except psycopg.Error as e:
                        msg = str(e).strip()
                        if sql.startswith("KILL_CLIENT") and "client not found" in msg:
                            pass
                        elif sql.startswith("KILL nosuchdb") and "no such database" in msg:
                            pass
                        else:
                            errors.append("%s: %s" % (sql, msg))
                            return
                    done[i] = n

            ts = [threading.Thread(target=run, args=(i,)) for i in range(8)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(60)
            self.assertEqual(errors, [])
            # every session kept going (a busy retry costs at most a tick)
            self.assertGreaterEqual(min(done), 10, done)
            # each command counted once however often it was tried, and
            # SHOW TOTALS counts itself, as PgBouncer's does
            self.assertEqual(queries() - before, sum(done) + 1)
            for c in app:  # the pool still serves
                self.assertEqual(c.execute("select 2").fetchone(), (2,))
        finally:
            for c in sessions + app:
                c.close()

    def test_a_command_that_waits_too_long_says_so(self):
        """A reload that hangs reading its files (here an auth_file that is
        a FIFO nobody writes yet; on a real machine, a dead network mount)
        keeps the change lock: a console listing waits 10 s for it, then
        answers the error, and the console goes on with the next command."""
        fifo = os.path.join(self.sd, "users.fifo")
        os.mkfifo(fifo)
        with open(self.w.ini) as f:
            ini = f.read()
        users = re.search(r"(?m)^auth_file = (.*)$", ini).group(1)
        with open(users) as f:
            secrets = f.read()
        with open(self.w.ini, "w") as f:
            f.write(re.sub(r"(?m)^auth_file = .*$", "auth_file = " + fifo, ini))
        con = self.console()
        released = []

        def release():  # the reload goes on with the same users
            if released:
                return
            released.append(1)
            try:  # without blocking: if the reload never began, nobody reads
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                return
            with os.fdopen(fd, "w") as f:
                f.write(secrets)

        self.addCleanup(release)
        try:
            os.kill(self.w.proc.pid, signal.SIGHUP)
            end = time.time() + 10
            while time.time() < end and "got SIGHUP" not in self.w.log():
                time.sleep(0.05)
            t0 = time.time()
            with self.assertRaises(psycopg.Error) as e:
                con.execute("SHOW SERVERS")
            waited = time.time() - t0
            self.assertIn("another configuration change or listing is running; try again",
                          str(e.exception))
            self.assertGreaterEqual(waited, 9.5)
            self.assertLess(waited, 15)
            # what does not take the lock still answers at once
            self.assertTrue(con.execute("SHOW DATABASES").fetchall())
            release()
            end = time.time() + 10
            while time.time() < end and "configuration reloaded" not in self.w.log():
                time.sleep(0.05)
            self.assertIn("configuration reloaded", self.w.log())
            self.assertTrue(con.execute("SHOW SERVERS").description)
        finally:
            con.close()


class TestShortTcpConnections(WorkerCounts, OpsCase):
    """Over TCP the kernel spreads connections over the workers' own
    SO_REUSEPORT sockets by a hash. While connections are short (more left
    within a second of arriving, in the last 100 ms tick, than there are
    clients) and worker 0 has time for them, a BPF program on the port's
    group puts new ones in worker 0's queue; when they stop, it is taken
    back and held connections spread as before."""
    settings = {"workers": "4", "max_client_conn": "500", "worker_pack": "0"}

    def setUp(self):
        super().setUp()
        self.wait_no_clients()

    def connect(self):
        return psycopg.connect(host="127.0.0.1", port=self.w.port, user="app",
                               password="s3cret", dbname="appdb", connect_timeout=10,
                               autocommit=True)

    def test_short_connections_go_to_worker_0_then_held_ones_spread(self):
        samples, _ = self.short_connections("127.0.0.1")
        self.assertLessEqual(max(sum(s[1:]) for s in samples), 1, samples)
        # quiet ticks turn it off; then the hash spreads held connections again
        end = time.time() + 10
        while time.time() < end and sum(self.per_worker()):
            time.sleep(0.05)
        time.sleep(0.5)
        conns = []
        try:
            for i in range(40):
                conns.append(self.connect())
                self.assertEqual(conns[-1].execute("select %s::int", (i,)).fetchone(), (i,))
            counts = self.per_worker()
        finally:
            for c in conns:
                c.close()
        self.assertEqual(sum(counts), 40, counts)
        # hashed: all 40 on two workers or fewer has odds of about 1e-11
        self.assertGreaterEqual(sum(1 for n in counts if n), 3, counts)


    def test_a_pool_arriving_among_short_ones_is_not_all_kept(self):
        """An application's pool of 100 held connections (pgbench -c 100:
        all within some 50 ms) opens while pgbench -C pours short ones in.
        They would all land on worker 0 and stay there, so worker 0 stops
        keeping connections, at the connection that puts it SHORT_MAX_LEAD
        (32) clients ahead of the least loaded worker."""
        env = dict(os.environ, PGPASSWORD="s3cret")
        common = ["-n", "-S", "-h", "127.0.0.1", "-p", str(self.w.port), "-U", "app", "-j", "2"]
        short = subprocess.Popen(["pgbench"] + common + ["-C", "-c", "8", "-T", "5", "appdb"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 env=env)
        held = None
        try:
            time.sleep(1.5)  # short mode is on by now
            held = subprocess.Popen(["pgbench"] + common + ["-c", "100", "-T", "2", "appdb"],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    env=env)
            time.sleep(1)
            counts = self.per_worker()
            out_held, _ = held.communicate(timeout=60)
            out_short, _ = short.communicate(timeout=60)
        finally:
            for p in (short, held):
                if p and p.poll() is None:
                    p.kill()
                    p.wait()
        self.assertEqual(held.returncode, 0, out_held)
        self.assertEqual(short.returncode, 0, out_short)
        self.assertGreaterEqual(sum(counts), 100, counts)
        # 32, the 8 short ones, and those already in worker 0's accept queue
        self.assertLessEqual(counts[0] - min(counts[1:]), 32 + 8 + 16, counts)


class TestPacking(OpsCase):
    """worker_pack: while the load fits in one worker the clients gather on
    worker 0, those that sit idle between transactions moved from the
    other worker's loop at its 100 ms ticks; turned off, worker 0 hands what
    it has beyond its share back. A client that moves keeps its session:
    its prepared statements, its TLS, its place in the pool's counts."""
    settings = {"workers": "2", "worker_pack": "0", "max_client_conn": "500"}

    def per_worker(self):
        _, text = self.get("/metrics")
        got = dict(re.findall(r'(?m)^weir_worker_clients\{worker="(\d+)"\} (\d+)$', text))
        self.assertEqual(sorted(got), ["0", "1"], text)
        return [int(got["0"]), int(got["1"])]

    def metric(self, name):
        _, text = self.get("/metrics")
        m = re.search(r"(?m)^%s (\S+)$" % name, text)
        self.assertTrue(m, text)
        return float(m.group(1))

    def until(self, pred, secs=10):
        end = time.time() + secs
        while time.time() < end:
            got = self.per_worker()
            if pred(got):
                return got
            time.sleep(0.05)
        return self.per_worker()

    def set_pack(self, on):
        _, r = self.admin("SET worker_pack = %d" % on)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_idle_clients_gather_on_worker_0_and_spread_back(self):
        self.until(lambda c: sum(c) == 0)
        conns = []
        try:
            for i in range(24):
                conns.append(psycopg.connect(host="127.0.0.1", port=self.w.port, user="app",
                                             password="s3cret", dbname="appdb",
                                             connect_timeout=10, autocommit=True))
                c = conns[-1]
                # a protocol-level prepared statement weir keeps for it
                self.assertEqual(c.execute("select %s::int + 1", (i,), prepare=True).fetchone(),
                                 (i + 1,))
            spread = self.per_worker()
            # hashed over two sockets: all 24 on one has odds of 2^-23
            self.assertEqual(sum(spread), 24, spread)
            self.assertGreater(spread[1], 0, spread)
            moved0 = self.metric("weir_clients_moved_total")
            self.assertEqual(self.metric("weir_workers_packed"), 0)

            self.set_pack(1)  # calm for 10 ticks: packed, and worker 1's idle clients move
            got = self.until(lambda c: c == [24, 0])
            self.assertEqual(got, [24, 0], self.w.log())
            self.assertEqual(self.metric("weir_workers_packed"), 1)
            self.assertGreaterEqual(self.metric("weir_clients_moved_total") - moved0, spread[1])
            for i, c in enumerate(conns):
                # the same statement, executed again on its new worker
                self.assertEqual(c.execute("select %s::int + 1", (i,), prepare=True).fetchone(),
                                 (i + 1,))
                self.assertEqual(c.execute("select 'after the move'").fetchone(),
                                 ("after the move",))
            rows, r = self.admin("SHOW CLIENTS")
            self.assertEqual(sum(1 for x in rows[1:] if x[1] == "app"), 24, r.stdout + r.stderr)

            moved1 = self.metric("weir_clients_moved_total")
            self.set_pack(0)  # worker 0 keeps its share, hands the rest to worker 1
            got = self.until(lambda c: c[1] >= 8)
            self.assertGreaterEqual(got[1], 8, got)
            self.assertEqual(sum(got), 24, got)
            self.assertEqual(self.metric("weir_workers_packed"), 0)
            self.assertGreaterEqual(self.metric("weir_clients_moved_total") - moved1, 8)
            for i, c in enumerate(conns):
                self.assertEqual(c.execute("select %s::int + 1", (i,), prepare=True).fetchone(),
                                 (i + 1,))
        finally:
            for c in conns:
                c.close()
        self.assertEqual(self.until(lambda c: sum(c) == 0), [0, 0])

    def test_busy_clients_move_and_lose_nothing(self):
        """pgbench's clients move while they run transactions, both ways:
        none fails, and every one is served to the end. The rate is bounded
        so that the load stays light (under the sanitizers too), where
        packing is meant to happen."""
        env = dict(os.environ, PGPASSWORD="s3cret")
        rate = "300" if os.environ.get("WEIR_TEST_SLOW") else "2000"
        p = subprocess.Popen(["pgbench", "-n", "-S", "-M", "extended", "-h", "127.0.0.1", "-p",
                              str(self.w.port), "-U", "app", "-c", "40", "-j", "2", "-T", "6",
                              "-R", rate, "appdb"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env=env)

        def both_ways():
            time.sleep(1)
            moved0 = self.metric("weir_clients_moved_total")
            self.set_pack(1)
            got = self.until(lambda c: c[1] == 0, secs=4)
            moved1 = self.metric("weir_clients_moved_total")
            self.set_pack(0)
            time.sleep(1)
            return got, moved0, moved1, self.metric("weir_clients_moved_total")

        (got, moved0, moved1, moved2), out = pgbench_finish(self, p, both_ways)
        self.assertIn("number of clients: 40", out)
        self.assertEqual(got, [40, 0], out)  # every client came to worker 0 under load
        self.assertGreater(moved1 - moved0, 0)
        self.assertGreater(moved2 - moved1, 0)  # and some went back


    def test_a_busy_worker_0_spreads_the_load(self):
        """Packed, worker 0 alone runs for 85 % of a tick: it spreads, and
        for the next 5 s hands the idle clients it has beyond its share to
        worker 1; once the load is light again for a second after that, it
        packs again. The load here is weir's own work: two console sessions
        that send SHOW VERSION without pause, which the console answers
        itself, so that worker 0's thread, not PostgreSQL, runs out of
        time."""
        self.until(lambda c: sum(c) == 0)
        self.set_pack(1)
        conns, floods = [], []
        stop = threading.Event()
        try:
            for i in range(24):
                conns.append(psycopg.connect(host="127.0.0.1", port=self.w.port, user="app",
                                             password="s3cret", dbname="appdb",
                                             connect_timeout=10, autocommit=True))
                self.assertEqual(conns[-1].execute("select %s::int", (i,)).fetchone(), (i,))
            got = self.until(lambda c: c == [24, 0])
            self.assertEqual(got, [24, 0], self.w.log())
            self.assertEqual(self.metric("weir_workers_packed"), 1)
            changes = self.metric("weir_workers_pack_changes_total")
            moved = self.metric("weir_clients_moved_total")

            # logged in by psycopg (packed: on worker 0), then driven raw
            q = b"SHOW VERSION\0"
            blob = (b"Q" + struct.pack("!I", len(q) + 4) + q) * 20000
            for _ in range(2):
                c = psycopg.connect(host="127.0.0.1", port=self.w.port, user="weir",
                                    password="weirpass", dbname="pgbouncer", connect_timeout=10,
                                    autocommit=True)
                floods.append((c, socket.socket(fileno=os.dup(c.fileno()))))
            self.assertEqual(self.per_worker(), [26, 0])
            answered = [0, 0]

            def send(sk):
                try:
                    while not stop.is_set():
                        sk.sendall(blob)
                except OSError:
                    pass

            def recv(i, sk):
                try:
                    while not stop.is_set():
                        answered[i] += len(sk.recv(1 << 20))
                except OSError:
                    pass

            ts = []
            for i, (_, sk) in enumerate(floods):
                sk.settimeout(2)
                ts += [threading.Thread(target=send, args=(sk,)),
                       threading.Thread(target=recv, args=(i, sk))]
            for t in ts:
                t.start()
            # one tick at 85 % is enough; a machine busy with other work
            # may take a while to give worker 0 that much of a core
            got = self.until(lambda c: c[1] >= 8, secs=20)
            spread_log = self.w.log()
            stop.set()
            for c, sk in floods:
                sk.shutdown(socket.SHUT_RDWR)
            for t in ts:
                t.join(10)
            self.assertGreater(min(answered), 0)
            self.assertIn("workers: spreading the load (worker 0 used", spread_log)
            self.assertGreaterEqual(got[1], 8, (got, spread_log))
            self.assertGreater(self.metric("weir_workers_pack_changes_total"), changes)
            self.assertGreaterEqual(self.metric("weir_clients_moved_total") - moved, 8)
            for i, c in enumerate(conns):  # the moved ones too
                self.assertEqual(c.execute("select %s::int", (i,)).fetchone(), (i,))
            # calm again: after the 5 s hold-off and a calm second, packed
            # again, every idle client back on worker 0
            got = self.until(lambda c: c == [24, 0], secs=15)
            self.assertEqual(got, [24, 0], self.w.log())
            self.assertEqual(self.metric("weir_workers_packed"), 1)
            for i, c in enumerate(conns):
                self.assertEqual(c.execute("select %s::int", (i,)).fetchone(), (i,))
        finally:
            stop.set()
            for c, sk in floods:
                sk.close()
                c.close()
            for c in conns:
                c.close()

class TestHttpConfig(unittest.TestCase):
    def test_port_in_use_refuses_to_start(self):
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        try:
            w = Weir(PG, settings={"http_listen_port": str(port)}, start=False)
            self.addCleanup(w.stop)
            rc, log = w.start_fails()
            self.assertNotEqual(rc, 0)
            self.assertIn("cannot listen for HTTP on 127.0.0.1:%d" % port, log)
        finally:
            s.close()

    def test_bad_port_is_a_config_error(self):
        w = Weir(PG, settings={"http_listen_port": "70000"}, start=False)
        self.addCleanup(w.stop)
        rc, log = w.start_fails()
        self.assertNotEqual(rc, 0)
        self.assertRegex(log, r"weir.ini:\d+: .*http_listen_port.*out of range")


class TestReload(OpsCase):
    settings = {"default_pool_size": "6"}

    def rewrite(self, **changes):
        """Edit [pgbouncer] keys (None: remove) and [databases] entries (db_<name>)."""
        with open(self.w.ini) as f:
            lines = f.read().splitlines()
        out, section = [], None
        for ln in lines:
            if ln.startswith("["):
                section = ln
            key = ln.split("=", 1)[0].strip()
            name = ("db_" + key) if section == "[databases]" else key
            if "=" in ln and name in changes:
                v = changes.pop(name)
                if v is not None:
                    out.append("%s = %s" % (key, v))
                continue
            out.append(ln)
        at = out.index("[databases]") + 1  # new entries
        for k in [k for k in changes if k.startswith("db_")]:
            out.insert(at, "%s = %s" % (k[3:], changes.pop(k)))
        out += ["%s = %s" % kv for kv in changes.items() if kv[1] is not None]
        with open(self.w.ini, "w") as f:
            f.write("\n".join(out) + "\n")

    def config(self):
        rows, _ = self.admin("SHOW CONFIG")
        return {r[0]: r[1] for r in rows[1:]}

    def backends(self):
        return int(PG.sql("select count(*) from pg_stat_activity where usename = 'app'"
                          " and backend_type = 'client backend'").strip())

    def test_reload_under_load_drops_no_client_and_resizes(self):
        bench = threading.Thread(target=lambda: self.__dict__.update(res=pgbench(self.w, 4, 8)))
        bench.start()
        time.sleep(1.0)
        self.assertGreater(self.backends(), 2)
        self.rewrite(default_pool_size="2")
        _, r = self.admin("RELOAD")
        self.assertEqual(r.stderr, "")
        time.sleep(1.0)
        os.kill(self.w.proc.pid, 1)  # SIGHUP: the same again
        bench.join(60)
        n, res = self.res
        self.assertIn("number of failed transactions: 0 ", res.stdout, res.stdout + res.stderr)
        self.assertGreater(n, 100)
        self.assertLessEqual(self.backends(), 2)
        rows, _ = self.admin("SHOW DATABASES")
        self.assertEqual(dict(zip(rows[0], rows[1]))["pool_size"], "2")
        self.assertIn("pool appdb/app: size 6 -> 2", self.w.log())
        self.assertIn("got SIGHUP, reloading", self.w.log())

    def test_bad_file_keeps_the_running_configuration(self):
        with open(self.w.ini, "a") as f:
            f.write("default_pool_size = lots\n")
        _, r = self.admin("RELOAD")
        self.assertRegex(r.stderr, r"RELOAD failed, see logs for additional details \(the "
                                   r"running configuration is kept\): "
                                   r".*weir\.ini:\d+: .*default_pool_size")
        os.kill(self.w.proc.pid, 1)
        deadline = time.time() + 10
        while time.time() < deadline and self.w.log().count("RELOAD failed") < 2:
            time.sleep(0.1)
        self.assertEqual(self.w.log().count("RELOAD failed, keeping the running configuration"), 2)
        self.assertEqual(self.config()["default_pool_size"], "6")
        self.assertEqual(self.w.psql("select 3").stdout.strip(), "3")

    def test_reload_adds_a_database_and_moves_one(self):
        dead = free_port()
        self.rewrite(db_other="host=127.0.0.1 port=%d dbname=appdb" % dead)
        _, r = self.admin("RELOAD")
        self.assertEqual(r.stderr, "")
        _, r = self.admin("SET query_wait_timeout = 1")  # a client waits through the retries
        r = self.w.psql("select 1", dbname="other")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("query_wait_timeout: could not connect to 127.0.0.1:%d" % dead, r.stderr)
        # point it at the real server: the pool reconnects there
        self.rewrite(db_other="host=127.0.0.1 port=%d dbname=appdb" % PG.port)
        _, r = self.admin("RELOAD")
        self.assertEqual(r.stderr, "")
        deadline = time.time() + 10
        while True:
            r = self.w.psql("select 'moved'", dbname="other")
            if r.returncode == 0 or time.time() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(r.stdout.strip(), "moved", r.stderr)
        self.assertIn("pool other/app: its server address, database, password or TLS changed; "
                      "reconnecting", self.w.log())

    def test_reload_reads_the_auth_file_again(self):
        auth = os.path.join(self.w.dir, "users.txt")
        with open(auth) as f:
            text = f.read()
        with open(auth, "w") as f:  # weir's own check of the client now wants newpass
            f.write(text.replace('"app" "s3cret"', '"app" "newpass"'))
        self.assertNotEqual(self.w.psql("select 1", password="newpass").returncode, 0)
        _, r = self.admin("RELOAD")
        self.assertEqual(r.stderr, "")
        r = self.w.psql("select 1", password="s3cret")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("password authentication failed", r.stderr)

    def test_set(self):
        _, r = self.admin("SET query_wait_timeout = 7")
        self.assertEqual(r.stderr, "")
        self.assertEqual(self.config()["query_wait_timeout"], "7")
        _, r = self.admin("SET server_reset_query = 'DISCARD ALL; SELECT ''x'''")
        self.assertEqual(r.stderr, "")
        self.assertEqual(self.config()["server_reset_query"], "DISCARD ALL; SELECT 'x'")
        _, r = self.admin("SET listen_port = 1")
        self.assertIn("listen_port cannot be changed online", r.stderr)
        _, r = self.admin("SET default_pool_size = many")
        self.assertIn("SET default_pool_size failed: not an integer", r.stderr)
        _, r = self.admin("SET nosuchkey = 1")
        self.assertIn("unknown configuration key: nosuchkey", r.stderr)
        _, r = self.admin("SET default_pool_size = 1")
        self.assertEqual(r.stderr, "")
        rows, _ = self.admin("SHOW CONFIG")
        changeable = {x[0]: x[3] for x in rows[1:]}
        self.assertEqual((changeable["default_pool_size"], changeable["listen_port"]),
                         ("yes", "no"))


CONN_COLS = ["type", "user", "database", "replication", "state", "addr", "port", "local_addr",
             "local_port", "connect_time", "request_time", "wait", "wait_us", "close_needed", "ptr",
             "link", "remote_pid", "tls", "application_name", "prepared_statements", "id"]
SOCKET_COLS = CONN_COLS + ["recv_pos", "pkt_pos", "pkt_remain", "send_pos", "send_remain",
                           "pkt_avail", "send_avail"]


class Background:
    """An admin command that may block (PAUSE, WAIT_CLOSE), run on a thread."""

    def __init__(self, w, sql):
        self.result = None
        self.t = threading.Thread(target=lambda: setattr(self, "result", w.admin(sql)))
        self.t.start()

    def done(self, timeout):
        self.t.join(timeout)
        return not self.t.is_alive()


class TestConsoleConnections(OpsCase):
    settings = {"default_pool_size": "2"}

    def rows(self, sql):
        rows, r = self.admin(sql)
        self.assertEqual(r.returncode, 0, r.stderr)
        return [dict(zip(rows[0], x)) for x in rows[1:]], rows[0]

    def held_until_resume(self, fn, what):
        """Run fn on a thread: it must still wait 1.5 s later, and finish
        after RESUME appdb. Returns (fn's result, seconds it took)."""
        out = {}
        t0 = time.monotonic()
        t = threading.Thread(target=lambda: out.update(r=fn(), t=time.monotonic() - t0))
        t.start()
        t.join(1.5)
        self.assertTrue(t.is_alive(), what + " got through before RESUME")
        _, r = self.admin("RESUME appdb")
        self.assertEqual(r.returncode, 0, r.stderr)
        t.join(20)
        self.assertFalse(t.is_alive(), what + " did not go on after RESUME")
        return out["r"], out["t"]

    def test_show_clients_and_servers(self):
        busy = psycopg.connect(self.w.dsn(application_name="busy_app"))
        idle = psycopg.connect(self.w.dsn(application_name="idle_app"))
        self.addCleanup(busy.close)
        self.addCleanup(idle.close)
        pid = busy.execute("SELECT pg_backend_pid()").fetchone()[0]  # a transaction: held
        idle.execute("SELECT 1")
        idle.commit()
        clients, cols = self.rows("SHOW CLIENTS")
        self.assertEqual(cols, CONN_COLS)
        apps = {c["application_name"]: c for c in clients if c["database"] == "appdb"}
        self.assertEqual(set(apps), {"busy_app", "idle_app"})
        self.assertTrue(any(c["database"] == "pgbouncer" for c in clients))  # this console
        b = apps["busy_app"]
        self.assertEqual((b["type"], b["user"], b["state"], b["addr"]), ("C", "app", "active",
                                                                          "127.0.0.1"))
        self.assertEqual(b["local_port"], str(self.w.port))
        self.assertRegex(b["connect_time"], r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$")
        self.assertNotEqual(b["link"], "")
        self.assertEqual(apps["idle_app"]["link"], "")  # transaction mode: no server between
        self.assertEqual(apps["idle_app"]["state"], "idle")
        self.assertEqual(b["replication"], "none")
        servers, cols = self.rows("SHOW SERVERS")
        self.assertEqual(cols, CONN_COLS)
        linked = [s for s in servers if s["link"] == b["ptr"]]
        self.assertEqual(len(linked), 1, servers)
        s = linked[0]
        self.assertEqual((s["type"], s["state"], s["remote_pid"], s["port"]),
                         ("S", "active", str(pid), str(PG.port)))
        self.assertEqual(s["ptr"], b["link"])
        self.assertTrue(all(x["state"] in ("active", "idle") for x in servers), servers)
        # ids: one counter for clients and servers, each its own
        ids = [int(c["id"]) for c in clients] + [int(x["id"]) for x in servers]
        self.assertEqual(len(ids), len(set(ids)), ids)
        socks, cols = self.rows("SHOW SOCKETS")
        self.assertEqual(cols, SOCKET_COLS)
        sock_ids = {x["id"] for x in socks}
        for x in list(apps.values()) + servers:  # every client and server is a socket
            self.assertIn(x["id"], sock_ids)
        active, _ = self.rows("SHOW ACTIVE_SOCKETS")
        self.assertIn(b["id"], [x["id"] for x in active])
        self.assertNotIn(apps["idle_app"]["id"], [x["id"] for x in active])
        busy.commit()
        state, _ = self.rows("SHOW STATE")
        self.assertEqual({r["key"]: r["value"] for r in state},
                         {"active": "yes", "paused": "no", "suspended": "no"})

    def test_pause_waits_for_open_transactions(self):
        conn = psycopg.connect(self.w.dsn())
        self.addCleanup(conn.close)
        conn.execute("SELECT 1")  # a transaction is open
        bg = Background(self.w, "PAUSE")
        self.assertFalse(bg.done(1.0), "PAUSE returned while a transaction was open")
        conn.commit()
        self.assertTrue(bg.done(10))
        self.assertIn("PAUSE", bg.result[1].stdout + bg.result[1].stderr)
        self.assertEqual(bg.result[1].returncode, 0, bg.result[1].stderr)
        state, _ = self.rows("SHOW STATE")
        self.assertEqual({r["key"]: r["value"] for r in state}["paused"], "yes")
        _, r = self.admin("RESUME")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(conn.execute("SELECT 2").fetchone()[0], 2)

    def test_a_query_is_held_while_paused_and_runs_after_resume(self):
        conn = psycopg.connect(self.w.dsn(), autocommit=True)
        self.addCleanup(conn.close)
        conn.execute("SELECT 1")
        bg = Background(self.w, "PAUSE appdb")
        self.assertTrue(bg.done(10))
        self.assertEqual(bg.result[1].returncode, 0, bg.result[1].stderr)
        row, secs = self.held_until_resume(lambda: conn.execute("SELECT 7").fetchone(),
                                           "a query of a paused database")
        self.assertEqual(row[0], 7)
        self.assertGreaterEqual(secs, 1.5)  # answered only after the RESUME

    def test_suspend_holds_clients_and_resume_lets_them_on(self):
        conn = psycopg.connect(self.w.dsn(), autocommit=True)
        self.addCleanup(conn.close)
        conn.execute("SELECT 1")
        _, r = self.admin("SUSPEND")
        self.assertEqual(r.returncode, 0, r.stderr)
        _, r = self.admin("SUSPEND")  # the console is still read; once is enough
        self.assertIn("already suspended", r.stderr)
        out = {}
        t0 = time.monotonic()
        t = threading.Thread(target=lambda: out.update(
            r=conn.execute("SELECT 8").fetchone()[0], t=time.monotonic() - t0))
        t.start()
        late = threading.Thread(target=lambda: out.update(late=self.w.psql("select 9").stdout))
        late.start()  # a new client waits too
        t.join(1.5)
        self.assertTrue(t.is_alive(), "a query was answered while suspended")
        self.assertTrue(late.is_alive(), "a new client was answered while suspended")
        _, r = self.admin("RESUME")
        self.assertEqual(r.returncode, 0, r.stderr)
        t.join(20)
        late.join(20)
        self.assertEqual((out["r"], out["late"].strip()), (8, "9"))
        self.assertGreaterEqual(out["t"], 1.5)

    def test_pause_and_resume_under_pgbench(self):
        out = {}
        t = threading.Thread(target=lambda: out.update(r=pgbench(self.w, secs=4, clients=8)))
        t.start()
        time.sleep(1.0)
        for _ in range(2):
            bg = Background(self.w, "PAUSE appdb")
            self.assertTrue(bg.done(20), "PAUSE did not return under pgbench")
            self.assertEqual(bg.result[1].returncode, 0, bg.result[1].stderr)
            time.sleep(0.5)  # clients wait meanwhile
            _, r = self.admin("RESUME appdb")
            self.assertEqual(r.returncode, 0, r.stderr)
            time.sleep(0.5)
        t.join(60)
        done, r = out["r"]
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("number of failed transactions: 0", r.stdout)
        self.assertGreater(done, 100)

    def test_disable_and_enable(self):
        _, r = self.admin("DISABLE appdb")
        self.assertEqual(r.returncode, 0, r.stderr)
        with self.assertRaises(psycopg.OperationalError) as e:
            psycopg.connect(self.w.dsn(), connect_timeout=10)
        self.assertIn('database "appdb" is disabled', str(e.exception))
        _, r = self.admin("DISABLE nosuch")
        self.assertIn("no such database: nosuch", r.stderr)
        _, r = self.admin("ENABLE appdb")
        self.assertEqual(r.returncode, 0, r.stderr)
        with psycopg.connect(self.w.dsn()) as c:
            self.assertEqual(c.execute("SELECT 1").fetchone()[0], 1)

    def test_reconnect_and_wait_close(self):
        conn = psycopg.connect(self.w.dsn())
        self.addCleanup(conn.close)
        old = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # held in a transaction
        _, r = self.admin("RECONNECT appdb")
        self.assertEqual(r.returncode, 0, r.stderr)
        servers, _ = self.rows("SHOW SERVERS")
        held = [s for s in servers if s["remote_pid"] == str(old)]
        self.assertEqual(held[0]["close_needed"], "1", servers)
        bg = Background(self.w, "WAIT_CLOSE appdb")
        self.assertFalse(bg.done(1.0), "WAIT_CLOSE returned while an old connection was in use")
        conn.commit()  # released, so closed
        self.assertTrue(bg.done(10))
        self.assertEqual(bg.result[1].returncode, 0, bg.result[1].stderr)
        new = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        self.assertNotEqual(new, old)
        conn.commit()

    def test_kill(self):
        conns = [psycopg.connect(self.w.dsn(), autocommit=True) for _ in range(2)]
        for c in conns:
            self.addCleanup(c.close)
            c.execute("SELECT 1")
        _, r = self.admin("KILL appdb")
        self.assertEqual(r.returncode, 0, r.stderr)
        for c in conns:
            with self.assertRaises(psycopg.OperationalError) as e:
                c.execute("SELECT 1")
            self.assertIn('database "appdb" killed (KILL)', str(e.exception))
        # New clients wait until RESUME.
        got, _ = self.held_until_resume(lambda: self.w.psql("SELECT 42"),
                                        "a client of a killed database")
        self.assertEqual(got.stdout.strip(), "42", got.stderr)
        self.assertIn("KILL appdb: 2 clients closed", self.w.log())


    def test_kill_client_and_kill_everyone(self):
        conns = [psycopg.connect(self.w.dsn(application_name="k%d" % i), autocommit=True)
                 for i in range(3)]
        for c in conns:
            self.addCleanup(c.close)
            c.execute("SELECT 1")
        clients, _ = self.rows("SHOW CLIENTS")
        ids = {c["application_name"]: c["id"] for c in clients if c["database"] == "appdb"}
        _, r = self.admin("KILL_CLIENT %s" % ids["k0"])
        self.assertEqual(r.returncode, 0, r.stderr)
        with self.assertRaises(psycopg.OperationalError):
            conns[0].execute("SELECT 1")
        self.assertEqual(conns[1].execute("SELECT 1").fetchone()[0], 1)
        _, r = self.admin("KILL_CLIENT %s" % ids["k0"])  # gone now
        self.assertIn("client not found", r.stderr)
        _, r = self.admin("KILL_CLIENT nonsense")
        self.assertIn("invalid client pointer supplied", r.stderr)
        # KILL alone: every database's clients, not the console's
        _, r = self.admin("KILL")
        self.assertEqual(r.returncode, 0, r.stderr)
        for c in conns[1:]:
            with self.assertRaises(psycopg.OperationalError):
                c.execute("SELECT 1")
        self.assertIn("KILL (every database): 2 clients closed", self.w.log())
        self.admin("RESUME")


class TestPgBouncer125Keys(unittest.TestCase):
    """[databases] and [users] keys of PgBouncer 1.25: taken and honoured; an
    unknown one is a warning with file and line, not a refusal."""

    def test_pool_size_is_the_pool_users_first(self):
        """As PgBouncer: [users] pool_size beats the database's; a database
        with a forced user= sizes its pool by that user, not by the client."""
        PG.sql("do $$ begin if not exists (select from pg_roles where rolname = 'forced_u') "
               "then create role forced_u login password 'fpw'; end if; end $$; "
               "grant connect on database appdb to forced_u")
        base = "host=127.0.0.1 port=%d dbname=appdb pool_size=3" % PG.port
        w = Weir(PG, start=False, settings={"query_wait_timeout": "1"},
                 databases={"appdb": base, "forced": base + " user=forced_u password=fpw"})
        with open(w.ini, "a") as f:
            f.write("[users]\napp = pool_size=1\n")
        try:
            w.start()
            held = psycopg.connect(w.dsn())
            held.execute("select 1")  # holds app's only server connection on appdb
            with self.assertRaises(psycopg.OperationalError) as e:
                with psycopg.connect(w.dsn()) as c:
                    c.execute("select 2")
            self.assertIn("query_wait_timeout", str(e.exception))
            held.close()
            # forced: the pool is forced_u's (3), app's [users] entry does not apply
            held = [psycopg.connect(w.dsn(dbname="forced")) for _ in range(3)]
            pids = {c.execute("select pg_backend_pid()").fetchone()[0] for c in held}
            self.assertEqual(len(pids), 3)
            for c in held:
                c.close()
        finally:
            w.stop()

    def test_min_pool_size_fills_forced_user_pools_at_start(self):
        PG.sql("do $$ begin if not exists (select from pg_roles where rolname = 'warm_u') "
               "then create role warm_u login password 'wpw'; end if; end $$; "
               "grant connect on database appdb to warm_u")
        base = "host=127.0.0.1 port=%d dbname=appdb min_pool_size=2" % PG.port
        w = Weir(PG, settings={"admin_users": "weir"},
                 databases={"warm": base + " user=warm_u password=wpw", "cold": base})

        def count(user):
            return int(PG.sql("select count(*) from pg_stat_activity where usename = '%s'" % user))
        try:
            deadline = time.time() + 10
            while count("warm_u") < 2 and time.time() < deadline:
                time.sleep(0.1)
            self.assertEqual(count("warm_u"), 2, w.log())  # no client came
            rows, _ = w.admin("SHOW POOLS", user="weir", password="weirpass")
            self.assertEqual([r[:2] for r in rows[1:]], [["warm", "warm_u"]])  # cold: none yet
        finally:
            w.stop()

    def test_keys_start_and_limits_hold(self):
        db = ("host=127.0.0.1 port=%d dbname=appdb reserve_pool_size=1 server_lifetime=3600 "
              "query_wait_timeout=5 load_balance_hosts=disable max_db_client_connections=2 "
              "auth_query='SELECT usename, passwd FROM pg_shadow WHERE usename=$1' "
              "frobnicate=1" % PG.port)
        w = Weir(PG, start=False, databases={"appdb": db})
        with open(w.ini, "a") as f:
            f.write("[users]\napp = pool_size=3 reserve_pool_size=1 max_user_client_connections=5 "
                    "query_timeout=30 idle_transaction_timeout=30 client_idle_timeout=1 "
                    "transaction_timeout=30 whatever=2\n")
        try:
            w.start()
            log = w.log()
            self.assertRegex(log, r'weir\.ini:2: database "appdb": unknown parameter\(s\) '
                                  r'frobnicate ignored')
            self.assertIn('user "app": unknown parameter(s) whatever ignored', log)
            conns = [psycopg.connect(w.dsn(), autocommit=True) for _ in range(2)]
            with self.assertRaises(psycopg.OperationalError) as e:
                psycopg.connect(w.dsn())
            self.assertIn("no more connections allowed (max_db_client_connections)",
                          str(e.exception))
            # app's own client_idle_timeout (1 s) closes the idle ones
            time.sleep(2.5)
            for c in conns:
                with self.assertRaises(psycopg.OperationalError) as e:
                    c.execute("select 1")
                self.assertIn("client_idle_timeout", str(e.exception))
                c.close()
            r = w.psql("select 1")  # their places are free again
            self.assertEqual(r.returncode, 0, r.stderr)
        finally:
            w.stop()

    def test_listen_addr_star_takes_ipv6_too(self):
        try:
            with socket.socket(socket.AF_INET6) as probe:
                probe.bind(("::1", 0))
        except OSError:
            self.skipTest("no IPv6 loopback on this machine")
        w = Weir(PG, settings={"listen_addr": "*"})
        try:
            for host in ("127.0.0.1", "::1"):
                r = subprocess.run(["psql", "-X", "-A", "-t", "-h", host, "-p", str(w.port), "-U",
                                    "app", "-d", "appdb", "-c", "select 1"], capture_output=True,
                                   text=True, timeout=30, env=dict(os.environ, PGPASSWORD="s3cret"))
                self.assertEqual((r.returncode, r.stdout.strip()), (0, "1"), host + r.stderr)
            self.assertIn("listening on :::%d" % w.port, w.log())
        finally:
            w.stop()

    def test_sighup_reopens_the_logfile(self):
        """logrotate's way: the file is renamed, SIGHUP, and weir writes a new one."""
        d = scratch_dir("weir-log-")
        path = os.path.join(d, "weir.log")
        w = Weir(PG, settings={"logfile": path})
        try:
            self.assertTrue(os.path.exists(path))
            os.rename(path, path + ".1")
            w.proc.send_signal(signal.SIGHUP)
            for _ in range(50):
                if os.path.exists(path):
                    with open(path) as f:
                        if "got SIGHUP" in f.read():
                            break
                time.sleep(0.1)
            with open(path) as f:
                self.assertIn("got SIGHUP, reloading", f.read())
            with open(path + ".1") as f:
                self.assertNotIn("got SIGHUP", f.read())
        finally:
            w.stop()
            shutil.rmtree(d, ignore_errors=True)

    def test_login_notify_message(self):
        w = Weir(PG, settings={"login_notify_message": "You are now connected to weir"})
        try:
            r = w.psql("select 1")
            self.assertEqual((r.returncode, r.stdout.strip()), (0, "1"), r.stderr)
            self.assertEqual(r.stderr, "NOTICE:  You are now connected to weir\n")
        finally:
            w.stop()

    def test_server_fast_close(self):
        """Session pooling: after RECONNECT a client's server goes at once
        (between transactions), and so does the client, told why."""
        w = Weir(PG, settings={"pool_mode": "session", "server_fast_close": "1",
                               "admin_users": "weir"})
        try:
            idle = psycopg.connect(w.dsn(), autocommit=True)
            idle.execute("select 1")
            busy = psycopg.connect(w.dsn())
            busy.execute("select 1")  # inside a transaction: kept until it ends
            w.admin("RECONNECT appdb", user="weir", password="weirpass")
            time.sleep(1)
            with self.assertRaises(psycopg.OperationalError) as e:
                idle.execute("select 1")
            self.assertIn("database configuration changed", str(e.exception))
            self.assertEqual(busy.execute("select 2").fetchone()[0], 2)
            busy.commit()
            time.sleep(1)
            with self.assertRaises(psycopg.OperationalError):
                busy.execute("select 3")
            self.assertIn("closing because: database configuration changed", w.log())
            idle.close()
            busy.close()
        finally:
            w.stop()

    def test_auto_database_is_logged_once(self):
        w = Weir(PG, databases={"*": "host=127.0.0.1 port=%d" % PG.port})
        try:
            for _ in range(2):
                r = w.psql("select 1")
                self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(w.log().count("registered new auto-database: appdb"), 1, w.log())
        finally:
            w.stop()

    def test_transaction_timeout_per_user(self):
        w = Weir(PG, start=False)
        with open(w.ini, "a") as f:
            f.write("[users]\napp = transaction_timeout=1\n")
        try:
            w.start()
            with psycopg.connect(w.dsn()) as c:
                c.execute("select 1")  # a transaction is open now
                time.sleep(1.8)
                with self.assertRaises(psycopg.OperationalError) as e:
                    c.execute("select 2")
                self.assertIn("transaction timeout", str(e.exception))
        finally:
            w.stop()

    def test_a_per_user_timeout_added_by_reload_applies(self):
        """Without [users] timeouts the workers' tick passes idle clients
        by; a RELOAD that gives a user client_idle_timeout makes the tick
        look at them again, and one that takes it away stops it."""
        w = Weir(PG, settings={"admin_users": "weir"})
        try:
            with open(w.ini, "a") as f:
                f.write("[users]\napp = client_idle_timeout=1\n")
            _, r = w.admin("RELOAD")
            self.assertEqual(r.returncode, 0, r.stderr)
            with psycopg.connect(w.dsn(), autocommit=True) as c:
                c.execute("select 1")
                time.sleep(2.5)
                with self.assertRaises(psycopg.OperationalError) as e:
                    c.execute("select 2")
                self.assertIn("client_idle_timeout", str(e.exception))
            with open(w.ini) as f:
                text = f.read()
            with open(w.ini, "w") as f:
                f.write(text.replace("app = client_idle_timeout=1", "app = pool_size=5"))
            _, r = w.admin("RELOAD")
            self.assertEqual(r.returncode, 0, r.stderr)
            with psycopg.connect(w.dsn(), autocommit=True) as c:
                c.execute("select 1")
                time.sleep(2.5)
                self.assertEqual(c.execute("select 3").fetchone()[0], 3)
        finally:
            w.stop()


class TestHostLists(unittest.TestCase):
    """host=a,b with load_balance_hosts (PgBouncer 1.24+), and the server
    connection lines PgBouncer logs (log_connections, log_disconnections)."""

    def test_disable_moves_past_a_bad_host_and_stays(self):
        db = ("host=no-such-host.invalid,127.0.0.1 port=%d dbname=appdb "
              "load_balance_hosts=disable" % PG.port)
        w = Weir(PG, databases={"appdb": db})
        try:
            conns = [psycopg.connect(w.dsn()) for _ in range(2)]
            for c in conns:
                c.execute("select 1")  # two server connections, both made
            log = w.log()
            self.assertEqual(len(re.findall(r"closing because: server DNS lookup failed", log)), 1,
                             log)
            self.assertEqual(len(re.findall(r"appdb/app@127\.0\.0\.1:%d new connection to server "
                                            r"\(from 127\.0\.0\.1:\d+\)" % PG.port, log)), 2, log)
            for c in conns:
                c.close()
        finally:
            w.stop()

    def test_disable_probes_one_connect_at_a_time(self):
        """Two connections opened at once with a bad first host: the second
        starts where the first found a working one (one DNS failure, not two)."""
        db = ("host=no-such-host.invalid,127.0.0.1 port=%d dbname=appdb "
              "load_balance_hosts=disable" % PG.port)
        w = Weir(PG, databases={"appdb": db})
        try:
            out = []

            def sleeper():
                with psycopg.connect(w.dsn()) as c:
                    out.append(c.execute("select pg_sleep(0.5), 1").fetchone()[1])
            ts = [threading.Thread(target=sleeper) for _ in range(2)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(20)
            self.assertEqual(out, [1, 1])
            log = w.log()
            self.assertEqual(log.count("server DNS lookup failed"), 1, log)
            self.assertEqual(log.count("new connection to server"), 2, log)
        finally:
            w.stop()

    def test_round_robin_takes_each_host_in_turn(self):
        """Good host first: disable stays on it; round-robin starts the
        second connection at the bad one (and moves on from it)."""
        for lb, failures in (("disable", 0), ("round-robin", 1)):
            db = ("host=127.0.0.1,no-such-host.invalid port=%d dbname=appdb "
                  "load_balance_hosts=%s" % (PG.port, lb))
            w = Weir(PG, databases={"appdb": db})
            try:
                conns = [psycopg.connect(w.dsn()) for _ in range(2)]
                for c in conns:
                    c.execute("select 1")
                log = w.log()
                self.assertEqual(len(re.findall("server DNS lookup failed", log)), failures, lb)
                self.assertEqual(len(re.findall("new connection to server", log)), 2, lb)
                for c in conns:
                    c.close()
            finally:
                w.stop()

    def test_every_host_down_is_an_error_naming_one(self):
        db = "host=no-such-host.invalid,127.0.0.1 port=1 dbname=appdb"
        w = Weir(PG, databases={"appdb": db}, settings={"query_wait_timeout": "1"})
        try:
            with self.assertRaises(psycopg.OperationalError) as e:
                psycopg.connect(w.dsn(), connect_timeout=10)
            # the client waited through the retries, then hears why
            self.assertRegex(str(e.exception), "query_wait_timeout: could not (connect to "
                                               "127.0.0.1:1|resolve host \"no-such-host.invalid\")")
            log = w.log()
            self.assertIn("closing because: server DNS lookup failed", log)
            self.assertIn("closing because: connect failed", log)
        finally:
            w.stop()


class TestServerCloseLines(unittest.TestCase):
    """What the pool closes itself is logged in PgBouncer's words, and only
    with the right one: an idle timeout, a RECONNECT; nothing at shutdown."""

    def test_close_reasons(self):
        w = Weir(PG, settings={"server_idle_timeout": "1", "admin_users": "weir"})
        try:
            self.assertEqual(w.psql("select 1").stdout.strip(), "1")
            end = time.monotonic() + 10
            while "closing because: server idle timeout" not in w.log() and \
                    time.monotonic() < end:
                time.sleep(0.2)
            self.assertRegex(w.log(), r"S-\d+: appdb/app@127\.0\.0\.1:\d+ closing because: "
                                      r"server idle timeout")
            with psycopg.connect(w.dsn()) as c:
                c.execute("select 1")  # a server connection held in a transaction
                _, r = w.admin("RECONNECT appdb")
                self.assertEqual(r.returncode, 0, r.stderr)
                c.rollback()  # released: closed, as RECONNECT asked
            end = time.monotonic() + 10
            while "database configuration changed" not in w.log() and time.monotonic() < end:
                time.sleep(0.2)
            self.assertIn("closing because: database configuration changed", w.log())
            self.assertEqual(w.psql("select 1").stdout.strip(), "1")  # a new one, left open
            def others(log):  # close lines but the idle timeout's (1 s: it may come now)
                return log.count("closing because") - log.count("closing because: server idle")

            # the psql's own close line is written after psql has exited: wait
            # until the count holds still for a second (a loaded machine)
            before, still = others(w.log()), time.monotonic()
            end = time.monotonic() + 10
            while time.monotonic() - still < 1 and time.monotonic() < end:
                time.sleep(0.1)
                n = others(w.log())
                if n != before:
                    before, still = n, time.monotonic()
            w.proc.send_signal(signal.SIGTERM)  # every client has left: exits
            self.assertEqual(w.proc.wait(timeout=20), 0)
            self.assertEqual(others(w.log()), before)  # the shutdown itself logs no close line
        finally:
            w.stop()


class TestReplication(unittest.TestCase):
    """replication=database|true (PgBouncer 1.23+): a connection of the
    client's own with its startup parameters, streaming through weir."""

    @classmethod
    def setUpClass(cls):
        dbs = {"appdb": "host=127.0.0.1 port=%d dbname=appdb" % PG.port,
               "replication": "host=127.0.0.1 port=%d dbname=replication" % PG.port}
        cls.w = Weir(PG, databases=dbs)

    @classmethod
    def tearDownClass(cls):
        cls.w.stop()

    def psql(self, conninfo, sql, password="weirpass"):
        return subprocess.run(["psql", "-X", "-A", "-t", "host=127.0.0.1 port=%d %s"
                               % (self.w.port, conninfo), "-c", sql], capture_output=True,
                              text=True, timeout=60, env=dict(os.environ, PGPASSWORD=password))

    def walsenders(self):
        return int(PG.sql("select count(*) from pg_stat_activity where backend_type = 'walsender'"))

    def test_logical_and_physical(self):
        logical = ("user=weir dbname=appdb replication=database application_name=abc "
                   "options='-c enable_seqscan=off'")
        r = self.psql(logical, "IDENTIFY_SYSTEM")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.strip().endswith("|appdb"), r.stdout)
        # the server was logged in with the client's own parameters
        self.assertEqual(self.psql(logical, "SHOW enable_seqscan").stdout.strip(), "off")
        self.assertEqual(self.psql(logical, "SHOW application_name").stdout.strip(), "abc")
        r = self.psql("user=weir dbname=appdb replication=true", "IDENTIFY_SYSTEM")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.psql("user=weir dbname=appdb", "select 1").stdout.strip(), "1")
        deadline = time.time() + 5  # each client's server went with it
        while self.walsenders() and time.time() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.walsenders(), 0)

    def test_pg_basebackup_streams_through_weir(self):
        d = tempfile.mkdtemp(prefix="weir-bb-")
        os.chmod(d, 0o777)
        try:
            r = subprocess.run(["pg_basebackup", "-d", "host=127.0.0.1 port=%d user=weir"
                                % self.w.port, "--checkpoint=fast", "-X", "stream", "-D",
                                os.path.join(d, "bb")], capture_output=True, text=True,
                               timeout=120, env=dict(os.environ, PGPASSWORD="weirpass"))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertTrue(os.path.exists(os.path.join(d, "bb", "PG_VERSION")))
            self.assertTrue(os.listdir(os.path.join(d, "bb", "pg_wal")))
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def test_unprivileged_is_login_failed_with_the_reason_logged(self):
        r = self.psql("user=app dbname=appdb replication=database", "IDENTIFY_SYSTEM",
                      password="s3cret")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("login failed", r.stderr)
        log = self.w.log()
        self.assertIn("must be superuser or replication role to start walsender", log)
        self.assertIn("closing because: login failed (age", log)
        # the ordinary pool of the same user is not harmed
        r = self.psql("user=app dbname=appdb", "select 1", password="s3cret")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "1"), r.stderr)

    def test_full_pool_evicts_an_idle_normal_connection(self):
        """As PgBouncer: replication and normal connections of one database and
        user share pool_size; a replication client finding it full of idle
        normal connections makes one close ("evicted") instead of waiting."""
        w = Weir(PG, settings={"default_pool_size": "1", "query_wait_timeout": "5"},
                 databases={"appdb": "host=127.0.0.1 port=%d dbname=appdb" % PG.port},
                 users={"weir": "weirpass"})
        try:
            env = dict(os.environ, PGPASSWORD="weirpass")
            r = subprocess.run(["psql", "-X", "-A", "-t", "host=127.0.0.1 port=%d user=weir "
                                "dbname=appdb" % w.port, "-c", "select 1"],
                               capture_output=True, text=True, timeout=30, env=env)
            self.assertEqual(r.stdout.strip(), "1", r.stderr)  # the pool's one, now idle
            t0 = time.monotonic()
            r = subprocess.run(["psql", "-X", "-A", "-t", "host=127.0.0.1 port=%d user=weir "
                                "dbname=appdb replication=database" % w.port, "-c",
                                "IDENTIFY_SYSTEM"], capture_output=True, text=True, timeout=30,
                               env=env)
            self.assertEqual(r.returncode, 0, r.stderr + w.log())
            self.assertLess(time.monotonic() - t0, 4)  # not a query_wait_timeout
            self.assertRegex(w.log(), r"S-\d+: appdb/weir@127\.0\.0\.1:\d+ closing because: "
                                      r"evicted")
        finally:
            w.stop()

    def test_bad_value_is_refused(self):
        r = self.psql("user=weir dbname=appdb replication=maybe", "IDENTIFY_SYSTEM")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('invalid value for parameter "replication"', r.stderr)


class TestOnlineRestart(unittest.TestCase):
    """-R: the running weir hands over (no socket passing): it stops taking
    clients, serves its own until they leave, then exits."""

    def test_reboot_hands_over_without_cutting_a_query(self):
        sd = tempfile.mkdtemp(prefix="weir-sock-")
        os.chmod(sd, 0o755)
        pidfile = os.path.join(sd, "weir.pid")
        w = Weir(PG, settings={"unix_socket_dir": sd, "pidfile": pidfile})
        new = None
        try:
            out = {}

            def slow():
                with psycopg.connect(w.dsn()) as c:
                    out["r"] = c.execute("select pg_sleep(2), 5").fetchone()[1]
            t = threading.Thread(target=slow)
            t.start()
            time.sleep(0.5)
            new = subprocess.Popen([WEIR, "--reboot", w.ini], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
            w.proc.wait(timeout=20)  # the old one leaves once its client has
            t.join(10)
            self.assertEqual(out.get("r"), 5)  # the query on the old one was not cut
            self.assertEqual(w.proc.returncode, 0)
            with psycopg.connect(w.dsn()) as c:  # the new one serves
                self.assertEqual(c.execute("select 1").fetchone()[0], 1)
            with open(pidfile) as f:  # and its pidfile stayed
                self.assertEqual(int(f.read()), new.pid)
            self.assertTrue(os.path.exists(os.path.join(sd, ".s.PGSQL.%d" % w.port)))
            self.assertIn("SHUTDOWN WAIT_FOR_CLIENTS from the admin console", w.log())
            new.terminate()
            self.assertIn("-R: the running weir stops taking clients", new.communicate(timeout=10)[1])
        finally:
            if new and new.poll() is None:
                new.kill()
                new.wait(10)
            w.stop()
            shutil.rmtree(sd, ignore_errors=True)

    def test_reboot_with_nothing_running_says_so(self):
        sd = tempfile.mkdtemp(prefix="weir-sock-")
        w = Weir(PG, start=False, settings={"unix_socket_dir": sd})
        try:
            r = subprocess.run([WEIR, "-R", w.ini], capture_output=True, text=True, timeout=30)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("-R: no running weir to take over from at", r.stderr + w.log())
        finally:
            shutil.rmtree(sd, ignore_errors=True)


class TestPoolIdleTimeout(OpsCase):
    """pool_idle_timeout (PgBouncer 1.25): a pool nobody has used for that
    long and that has no server connection is freed, and made again by the
    next client; whatever still holds it keeps it."""
    settings = {"pool_idle_timeout": "1", "server_idle_timeout": "1"}

    def pools(self):
        rows, _ = self.admin("SHOW POOLS")
        return [(r[0], r[1]) for r in rows[1:] if r[0] != "pgbouncer"]

    def wait_for(self, cond, secs=8):
        end = time.monotonic() + secs
        while time.monotonic() < end:
            if cond():
                return True
            time.sleep(0.2)
        return cond()

    def http(self, method, path, body=None, headers=None):
        h = {"Authorization": basic("app", "s3cret"), "Content-Type": "application/json"}
        h.update(headers or {})
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.http_port, path),
                                     data=json.dumps(body).encode() if body else None,
                                     headers=h, method=method)
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read().decode() or "null")

    def test_idle_pool_freed_and_made_again(self):
        with psycopg.connect(self.w.dsn()) as c:
            c.execute("select 1")
        self.assertEqual(self.pools(), [("appdb", "app")])
        # scrapes meanwhile neither keep it nor trip over its freeing
        stop = threading.Event()

        def scrape():
            while not stop.is_set():
                self.get("/metrics")
        t = threading.Thread(target=scrape)
        t.start()
        try:
            self.assertTrue(self.wait_for(lambda: self.pools() == []), self.w.log()[-2000:])
        finally:
            stop.set()
            t.join(10)
        self.assertIn("cleaning up idle pool appdb/app", self.w.log())
        self.assertEqual(PG.sql("select count(*) from pg_stat_activity where usename = 'app'"), "0")
        with psycopg.connect(self.w.dsn()) as c:  # a new pool serves
            self.assertEqual(c.execute("select 2").fetchone()[0], 2)
        self.assertEqual(self.pools(), [("appdb", "app")])
        self.assertEqual(self.w.log().count("new pool appdb/app"), 2)

    def test_a_connected_client_keeps_its_pool(self):
        with psycopg.connect(self.w.dsn(), autocommit=True) as c:
            c.execute("select 1")
            time.sleep(3)  # its server connection goes (server_idle_timeout), the pool stays
            self.assertEqual(self.pools(), [("appdb", "app")])
            self.assertEqual(c.execute("select 3").fetchone()[0], 3)
        self.assertNotIn("cleaning up idle pool", self.w.log())

    def test_an_http_session_keeps_its_pool(self):
        sid = self.http("POST", "/v1/databases/appdb/sessions")["id"]
        time.sleep(3)
        self.assertEqual(self.pools(), [("appdb", "app")])
        r = self.http("POST", "/v1/databases/appdb/sql", {"query": "select 4 as n"},
                      {"Weir-Session": sid})
        self.assertEqual(r["rows"], [{"n": 4}])
        self.http("DELETE", "/v1/sessions/" + sid)
        self.assertTrue(self.wait_for(lambda: self.pools() == []), self.w.log()[-2000:])
        # a plain HTTP request makes it again
        self.assertEqual(self.http("POST", "/v1/databases/appdb/sql",
                                   {"query": "select 5 as n"})["rows"], [{"n": 5}])


class TestPoolIdleTimeoutMinPoolSize(OpsCase):
    """A pool with min_pool_size is kept, as PgBouncer 1.25 keeps it, even
    when its database cannot be reached."""
    settings = {"pool_idle_timeout": "1"}

    @property
    def databases(self):
        return {"appdb": "host=127.0.0.1 port=%d dbname=appdb" % PG.port,
                "deaddb": "host=127.0.0.1 port=%d dbname=nosuch user=app password=s3cret "
                          "min_pool_size=2" % free_port()}

    def test_kept(self):
        time.sleep(3)
        rows, _ = self.admin("SHOW POOLS")
        self.assertIn(("deaddb", "app"), [(r[0], r[1]) for r in rows[1:]])
        self.assertNotIn("cleaning up idle pool", self.w.log())


class TestMinPoolSizeUnderACap(unittest.TestCase):
    """min_pool_size above max_db_connections / max_user_connections: the
    pool fills only up to the cap. The engine began filling min_pool_size
    before the caps were attached, and opened 3 where 2 were allowed."""

    @classmethod
    def setUpClass(cls):
        # a database of its own: no other test's backends in the count
        PG.sql("CREATE DATABASE capdb OWNER app")

    def check(self, databases):
        w = Weir(PG, settings={"pool_mode": "transaction"}, databases=databases)
        self.addCleanup(w.stop)
        seen = []
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                seen.append(int(PG.sql("select count(*) from pg_stat_activity where "
                                       "datname = 'capdb'")))
                time.sleep(0.05)
        t = threading.Thread(target=sample)
        t.start()
        try:
            with psycopg.connect(w.dsn(dbname="capped")) as c:
                c.execute("select pg_sleep(1.5)")
        finally:
            stop.set()
            t.join(10)
        self.assertLessEqual(max(seen), 2, seen)
        self.assertEqual(w.log().count("new connection to server"), 2, w.log()[-3000:])

    def test_max_db_connections(self):
        self.check({"capped": "host=127.0.0.1 port=%d dbname=capdb min_pool_size=5 pool_size=5 "
                              "max_db_connections=2" % PG.port})


class TestAdaptivePool(OpsCase):
    """adaptive_pool: a pool's size moves between min_pool_size (at least 1)
    and pool_size from the waits it measures. A load step of 12 clients on a
    pool of 16 grows it (never past 16), and after the load it gives the
    connections back; every change is logged and counted, and SET turns it
    off on the live pool (its size back to the cap)."""
    settings = {"pool_mode": "transaction", "default_pool_size": "16",
                "server_idle_timeout": "600", "adaptive_pool": "1",
                "adaptive_pool_period": "0.2"}

    def backends(self):
        return int(PG.sql("select count(*) from pg_stat_activity where usename = 'app' "
                          "and datname = 'appdb'"))

    def metric(self, name):
        _, body = self.get("/metrics")
        m = re.search(r'^%s\{[^}]*database="appdb"[^}]*\} (\d+)' % name, body, re.M)
        return int(m.group(1)) if m else None

    def test_grows_under_load_and_gives_back(self):
        with psycopg.connect(self.w.dsn(), autocommit=True) as c:
            c.execute("select 1")
        self.assertEqual(self.metric("weir_pool_max_connections"), 1)  # starts at the floor
        stop = threading.Event()
        errors = []

        def client():
            try:
                with psycopg.connect(self.w.dsn(), autocommit=True) as c:
                    while not stop.is_set():
                        c.execute("select pg_sleep(0.02)")
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
        seen = []
        threads = [threading.Thread(target=client) for _ in range(12)]
        for t in threads:
            t.start()
        try:
            for _ in range(30):  # 3 s of load
                seen.append(self.backends())
                time.sleep(0.1)
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        self.assertEqual(errors, [])
        self.assertGreaterEqual(max(seen), 8, seen)  # it grew to what the load needs
        self.assertLessEqual(max(seen), 16, seen)  # never past pool_size
        grows = self.w.log().count("adaptive size")
        self.assertGreaterEqual(grows, 1, self.w.log()[-2000:])
        # after the load: three quiet periods per step, a quarter each time
        end = time.monotonic() + 15
        while time.monotonic() < end and self.backends() > 2:
            time.sleep(0.2)
        self.assertLessEqual(self.backends(), 2, self.w.log()[-3000:])
        self.assertRegex(self.w.log(), r"adaptive size \d+ -> \d+ \(at most \d+ in use")
        changes = self.metric("weir_pool_adaptive_changes_total")
        self.assertIsNotNone(changes)
        self.assertGreaterEqual(changes, 2)
        # off on the live pool: its size is the cap again
        _, r = self.admin("SET adaptive_pool = 0")
        self.assertIn("SET", str(r))
        end = time.monotonic() + 5
        while time.monotonic() < end and self.metric("weir_pool_max_connections") != 16:
            time.sleep(0.1)
        self.assertEqual(self.metric("weir_pool_max_connections"), 16)
        self.assertIn("adaptive sizing off", self.w.log())

    def test_show_config(self):
        rows, _ = self.admin("SHOW CONFIG")
        conf = {r[0]: r[1] for r in rows[1:]}
        self.assertEqual(conf.get("adaptive_pool"), "1")
        self.assertEqual(conf.get("adaptive_pool_period"), "0.200")


class TestAdaptivePoolPerDatabase(OpsCase):
    """adaptive_pool=1 on one [databases] entry: that pool is adaptive (it
    starts at 1), the others keep their pool_size."""

    @property
    def databases(self):
        return {"appdb": "host=127.0.0.1 port=%d dbname=appdb pool_size=7" % PG.port,
                "adapt": "host=127.0.0.1 port=%d dbname=appdb pool_size=7 adaptive_pool=1"
                         % PG.port}

    def test_only_that_pool(self):
        for db in ("appdb", "adapt"):
            with psycopg.connect(self.w.dsn(dbname=db), autocommit=True) as c:
                c.execute("select 1")
        _, body = self.get("/metrics")
        sizes = dict(re.findall(r'^weir_pool_max_connections\{[^}]*database="(\w+)"[^}]*\} (\d+)',
                                body, re.M))
        self.assertEqual(sizes, {"appdb": "7", "adapt": "1"})


class TestWorkerSched(unittest.TestCase):
    """worker_sched: the workers run the normal policy by default, and
    SCHED_BATCH with worker_sched = batch; the main thread keeps the normal
    one either way; a bad value refuses to start, naming the key."""

    @staticmethod
    def policies(pid):
        out = {}
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[int(tid)] = int(fields[38])  # policy, field 41 of stat
        return out

    def check(self, settings, want):
        w = Weir(PG, settings=settings)
        self.addCleanup(w.stop)
        with psycopg.connect(w.dsn()) as c:  # the workers are up
            c.execute("select 1")
        pol = self.policies(w.proc.pid)
        self.assertEqual(pol[w.proc.pid], 0)  # the main thread: SCHED_OTHER
        workers = [t for t, p in pol.items() if p == want]
        self.assertGreaterEqual(len(workers), 2 if want == 3 else 1, pol)
        return pol

    def test_batch(self):
        # SCHED_BATCH: the two workers, and the pool's threads they started
        self.check({"workers": "2", "worker_sched": "batch"}, 3)

    def test_normal_by_default(self):
        pol = self.check({"workers": "2"}, 0)
        self.assertNotIn(3, pol.values())
        pol = self.check({"workers": "2", "worker_sched": "normal"}, 0)
        self.assertNotIn(3, pol.values())

    def test_bad_value(self):
        w = Weir(PG, start=False, settings={"worker_sched": "fifo"})
        self.addCleanup(w.stop)
        rc, log = w.start_fails()
        self.assertNotEqual(rc, 0)
        self.assertIn('invalid value "fifo" for worker_sched', log)


class TestWorkersDefault(unittest.TestCase):
    """Without `workers`, weir runs half the cores it may use (its affinity
    mask: taskset, a container's cpuset), but two on two or three cores and
    one on one; the start-up line says how many."""

    def workers_on(self, cpus):
        w = Weir(PG, start=False, settings={"workers": None})
        self.addCleanup(w.stop)
        w.start(prefix=["taskset", "-c", ",".join(map(str, cpus))])
        with psycopg.connect(w.dsn()) as c:
            self.assertEqual(c.execute("select 1").fetchone(), (1,))
        m = re.search(r"process up: .*, (\d+) workers?$", w.log(), re.M)
        self.assertIsNotNone(m, w.log())
        return int(m.group(1))

    def test_the_count_follows_the_cores_it_may_use(self):
        have = sorted(os.sched_getaffinity(0))
        self.assertEqual(self.workers_on(have[:1]), 1)
        if len(have) < 2:
            self.skipTest("one core here: 2 and more not tried")
        self.assertEqual(self.workers_on(have[:2]), 2)
        if len(have) >= 3:
            self.assertEqual(self.workers_on(have[:3]), 2)
        if len(have) >= 8:
            self.assertEqual(self.workers_on(have[:8]), 4)


class TestResetOffTheLoop(unittest.TestCase):
    """The ROLLBACK and server_reset_query a released server connection
    needs run off the worker's event loop: its other clients are not held
    up for that round trip, and a [databases] entry that points at weir's own
    console (its reset goes to this very worker) cannot stall it."""

    def test_a_slow_reset_does_not_hold_up_the_worker(self):
        w = Weir(PG, settings={"workers": "1", "pool_mode": "session",
                               "server_reset_query": "SELECT pg_sleep(2)"})
        self.addCleanup(w.stop)
        with psycopg.connect(w.dsn(), autocommit=True) as a:
            a.execute("select 1")
        # a's server connection is being reset for 2 s; b, on the same
        # (only) worker, gets another connection and is served at once
        t0 = time.monotonic()
        with psycopg.connect(w.dsn(), autocommit=True) as b:
            self.assertEqual(b.execute("select 7").fetchone()[0], 7)
        self.assertLess(time.monotonic() - t0, 1.0, w.log()[-2000:])

    def test_a_database_pointing_at_the_console_itself(self):
        w = Weir(PG, start=False, settings={"workers": "1", "pool_mode": "session",
                                            "admin_users": "weir", "stats_users": "app"})
        with open(w.ini, "a") as f:
            f.write("[databases]\nloop = host=127.0.0.1 port=%d dbname=pgbouncer\n" % w.port)
        w.start()
        self.addCleanup(w.stop)
        for i in range(3):  # each release resets the connection to weir's own console
            t0 = time.monotonic()
            with psycopg.connect(w.dsn(dbname="loop"), autocommit=True,
                                 connect_timeout=5) as c:
                self.assertTrue(c.execute("SHOW VERSION").fetchone()[0].startswith("weir"))
            self.assertLess(time.monotonic() - t0, 3.0, w.log()[-3000:])


class TestPeering(unittest.TestCase):
    """peer_id and [peers]: a CancelRequest that a load balancer hands to
    another weir process reaches the one serving the query. The cancel
    goes to B's port directly here, as a balancer would send it."""

    def setUp(self):
        self.a = Weir(PG, start=False, settings={"auth_type": "trust", "peer_id": "1",
                                                  "admin_users": "weir"})
        self.b = Weir(PG, start=False, settings={"auth_type": "trust", "peer_id": "2",
                                                  "admin_users": "weir"})
        peers = "[peers]\n1 = host=127.0.0.1 port=%d\n2 = host=127.0.0.1 port=%d pool_size=3\n" % (
            self.a.port, self.b.port)
        for w in (self.a, self.b):  # the same [peers] for both: each skips its own
            with open(w.ini, "a") as f:
                f.write(peers)
            w.start()
            self.addCleanup(w.stop)

    def login(self, w):
        """A raw client of w: (socket, pid, key) from its BackendKeyData."""
        s = socket.create_connection(("127.0.0.1", w.port), timeout=10)
        s.sendall(raw_startup())
        pid = key = None
        for t, body in read_until(s, b"Z"):
            if t == b"K":
                pid, key = struct.unpack("!II", body)
        self.assertIsNotNone(pid)
        return s, pid, key

    def cancel(self, w, pid, key):
        c = socket.create_connection(("127.0.0.1", w.port), timeout=10)
        c.sendall(struct.pack("!IIII", 16, 80877102, pid, key))
        c.settimeout(15)
        self.assertEqual(c.recv(1), b"")  # weir closes it once it is dealt with
        c.close()

    def run_sleep(self, s, secs):
        s.sendall(b"Q" + struct.pack("!I", 4 + len("select pg_sleep(%s)" % secs) + 1) +
                  ("select pg_sleep(%s)" % secs).encode() + b"\0")

    def outcome(self, s):
        """The SQLSTATE of the query's error, or "ok"."""
        for t, body in read_until(s, b"Z"):
            if t == b"E":
                return error_fields(body).get("C")
        return "ok"

    def test_cancel_on_the_other_process_is_forwarded(self):
        s, pid, key = self.login(self.a)
        # the key carries peer id 1 (bytes 1 and 2, PgBouncer's layout), TTL bits set
        self.assertEqual((pid >> 16 & 0xff) | (pid >> 8 & 0xff) << 8, 1)
        self.assertEqual(key & 3, 3)
        t0 = time.monotonic()
        self.run_sleep(s, 5)
        time.sleep(0.5)
        self.cancel(self.b, pid, key)
        self.assertEqual(self.outcome(s), "57014")  # canceling statement due to user request
        self.assertLess(time.monotonic() - t0, 4)
        s.close()
        # B shows its peer (A), not itself
        rows, r = self.b.admin("SHOW PEERS")
        self.assertEqual(rows, [["peer_id", "host", "port", "pool_size"],
                                ["1", "127.0.0.1", str(self.a.port), "4"]], r.stderr)
        for _ in range(50):  # the forward ends when A has closed its side
            rows, _ = self.b.admin("SHOW PEER_POOLS")
            if rows[1:] == [["1", "0", "0", "0", "0"]]:
                break
            time.sleep(0.1)
        self.assertEqual(rows, [["peer_id", "cl_active_cancel_req", "cl_waiting_cancel_req",
                                 "sv_active_cancel", "sv_login"], ["1", "0", "0", "0", "0"]])
        rows, _ = self.a.admin("SHOW LISTS")
        self.assertIn(["peers", "1"], rows)

    def test_cancel_on_its_own_process_still_works(self):
        s, pid, key = self.login(self.a)
        self.run_sleep(s, 5)
        time.sleep(0.5)
        self.cancel(self.a, pid, key)
        self.assertEqual(self.outcome(s), "57014")
        s.close()

    def test_keys_given_before_peering_was_turned_on(self):
        """A RELOAD that turns peering on: clients already in hold keys
        without a peer id; a cancel for one still reaches it."""
        w = Weir(PG, settings={"auth_type": "trust", "admin_users": "weir"})
        self.addCleanup(w.stop)
        s, pid, key = self.login(w)
        with open(w.ini, "a") as f:
            f.write("[pgbouncer]\npeer_id = 1\n[peers]\n2 = host=127.0.0.1 port=%d\n" % self.b.port)
        rows, r = w.admin("RELOAD")
        self.assertEqual(r.returncode, 0, r.stderr)
        rows, _ = w.admin("SHOW PEERS")
        self.assertEqual(len(rows), 2)  # the header and peer 2: the reload took
        self.run_sleep(s, 5)
        time.sleep(0.5)
        t0 = time.monotonic()
        self.cancel(w, pid, key)
        self.assertEqual(self.outcome(s), "57014", w.log()[-2000:])
        self.assertLess(time.monotonic() - t0, 3)
        s.close()

    def test_spent_ttl_and_unknown_peer_are_dropped_and_logged(self):
        s, pid, key = self.login(self.a)
        self.run_sleep(s, 1)
        time.sleep(0.3)
        self.cancel(self.b, pid, key & ~3)  # forwarded three times already
        unknown = (pid & 0x7f0000ff) | 7 << 16  # peer 7 is in no [peers]
        self.cancel(self.b, unknown, key)
        self.assertEqual(self.outcome(s), "ok")  # not cancelled
        s.close()
        self.assertIn("failed to forward cancel request because its TTL was exhausted",
                      self.b.log())
        self.assertIn("could not find peer to forward request to (peer_id 7)", self.b.log())

    def test_peered_with_pgbouncer(self):
        """The key layout is PgBouncer's: a PgBouncer 1.25 process and weir
        forward each other's cancels (a migration behind one balancer)."""
        exe = os.environ.get("WEIR_PGBOUNCER") or os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "peers",
            "pgbouncer-1.25.2", "pgbouncer")
        if not os.access(exe, os.X_OK):
            self.skipTest("PgBouncer 1.25 not at hand (WEIR_PGBOUNCER, or ../shared/peers)")
        d = tempfile.mkdtemp(prefix="weir-pgb-")
        self.addCleanup(shutil.rmtree, d, True)
        os.chmod(d, 0o777)  # as root PgBouncer runs as nobody (-u)
        port = free_port()
        with open(os.path.join(d, "users.txt"), "w") as f:
            f.write('"app" "s3cret"\n')
        with open(os.path.join(d, "pgb.ini"), "w") as f:
            f.write("[databases]\nappdb = host=127.0.0.1 port=%d dbname=appdb\n[pgbouncer]\n"
                    "listen_addr = 127.0.0.1\nlisten_port = %d\nunix_socket_dir =\n"
                    "auth_type = trust\nauth_file = %s/users.txt\npool_mode = transaction\n"
                    "logfile = %s/pgb.log\npeer_id = 3\n[peers]\n1 = host=127.0.0.1 port=%d\n"
                    % (PG.port, port, d, d, self.a.port))
        for n in os.listdir(d):
            os.chmod(os.path.join(d, n), 0o666)
        p = subprocess.Popen([exe] + (["-u", "nobody"] if os.getuid() == 0 else []) +
                             [os.path.join(d, "pgb.ini")], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        self.addCleanup(p.wait, 10)
        self.addCleanup(p.terminate)
        self.assertTrue(wait_port(port))
        with open(self.a.ini, "a") as f:  # A learns of peer 3 by RELOAD
            f.write("3 = host=127.0.0.1 port=%d\n" % port)
        self.a.admin("RELOAD")
        for home, other in ((port, self.a), (self.a.port, None)):
            s = socket.create_connection(("127.0.0.1", home), timeout=10)
            s.sendall(raw_startup())
            pid = key = None
            for t, body in read_until(s, b"Z"):
                pid, key = struct.unpack("!II", body) if t == b"K" else (pid, key)
            self.run_sleep(s, 5)
            time.sleep(0.5)
            if other:  # PgBouncer's client, cancelled through weir
                self.cancel(other, pid, key)
            else:  # weir's client, cancelled through PgBouncer
                c = socket.create_connection(("127.0.0.1", port), timeout=10)
                c.sendall(struct.pack("!IIII", 16, 80877102, pid, key))
                c.settimeout(15)
                c.recv(1)
                c.close()
            self.assertEqual(self.outcome(s), "57014")
            s.close()

    def test_config_errors(self):
        w = Weir(PG, start=False, settings={"peer_id": "16384"})
        self.addCleanup(w.stop)
        rc, log = w.start_fails()
        self.assertNotEqual(rc, 0)
        self.assertIn('invalid value "16384" for peer_id: out of range (0..16383)', log)
        w2 = Weir(PG, start=False, settings={"peer_id": "1"})
        self.addCleanup(w2.stop)
        with open(w2.ini, "a") as f:
            f.write("[peers]\n3 = port=7000\n")
        rc, log = w2.start_fails()
        self.assertNotEqual(rc, 0)
        self.assertIn("host was not provided for peer 3", log)


class TestSyslogConfig(unittest.TestCase):
    def test_unknown_facility_is_a_config_error(self):
        w = Weir(PG, settings={"syslog": "1", "syslog_facility": "nosuch"}, start=False)
        self.addCleanup(w.stop)
        rc, log = w.start_fails()
        self.assertNotEqual(rc, 0)
        self.assertIn("syslog_facility", log)
        self.assertIn("unknown facility", log)


if __name__ == "__main__":
    unittest.main()
