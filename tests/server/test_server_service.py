"""test_server_service.py — weir as a Debian service: systemd's notify protocol
(through a fake NOTIFY_SOCKET, as systemd itself is not running in the suite),
the shipped unit file checked by systemd-analyze, logrotate's SIGHUP, and what
operators' existing tools read from the console.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import WEIR, Postgres, Weir, free_port, scratch_dir  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PG = None


def setUpModule():
    global PG
    PG = Postgres()


def tearDownModule():
    PG.destroy()


class FakeSystemd:
    """The receiving end of sd_notify: a datagram socket, at a path or abstract."""

    def __init__(self, abstract=False):
        self.dir = tempfile.mkdtemp(prefix="weir-notify-")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            self.name = "@weir-test-%d-%d" % (os.getpid(), time.monotonic_ns())
            self.sock.bind("\0" + self.name[1:])
        else:
            self.name = os.path.join(self.dir, "notify")
            self.sock.bind(self.name)
        self.got = []

    def env(self, **extra):
        e = dict(os.environ, NOTIFY_SOCKET=self.name)
        e.update(extra)
        return e

    def wait_for(self, key, timeout=10.0):
        """The first message (as a dict) with `key` set, after those seen."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.sock.settimeout(max(0.01, end - time.monotonic()))
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                break
            msg = dict(line.split("=", 1) for line in data.split("\n") if "=" in line)
            self.got.append(msg)
            if key in msg:
                return msg
        raise AssertionError("no %s within %.0f s; got %r" % (key, timeout, self.got))

    def close(self):
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class TestNotify(unittest.TestCase):
    def run_notify(self, abstract):
        sd = FakeSystemd(abstract)
        w = Weir(PG, start=False)
        try:
            w.start(env=sd.env())
            ready = sd.wait_for("READY")
            self.assertEqual(ready["READY"], "1")
            self.assertEqual(int(ready["MAINPID"]), w.proc.pid)
            self.assertIn("serving on port %d" % w.port, ready["STATUS"])
            # a reload: RELOADING=1 with a monotonic time, then READY=1 again
            w.proc.send_signal(signal.SIGHUP)
            rel = sd.wait_for("RELOADING")
            self.assertEqual(rel["RELOADING"], "1")
            self.assertGreater(int(rel["MONOTONIC_USEC"]), 0)
            again = sd.wait_for("READY")
            self.assertIn("reloaded", again["STATUS"])
            # a bad file: still READY (the running configuration is kept), and it says so
            with open(w.ini, "a") as f:
                f.write("default_pool_size = many\n")
            w.proc.send_signal(signal.SIGHUP)
            sd.wait_for("RELOADING")
            bad = sd.wait_for("READY")
            self.assertIn("RELOAD failed", bad["STATUS"])
            self.assertEqual(w.psql("select 1").stdout.strip(), "1")
            # SIGINT (KillSignal in the unit): STOPPING=1 first
            w.proc.send_signal(signal.SIGINT)
            stop = sd.wait_for("STOPPING")
            self.assertEqual(stop["STOPPING"], "1")
            self.assertEqual(w.proc.wait(timeout=20), 0)
        finally:
            w.stop()
            sd.close()

    def test_path_socket(self):
        self.run_notify(abstract=False)

    def test_abstract_socket(self):
        self.run_notify(abstract=True)

    def test_watchdog(self):
        sd = FakeSystemd()
        w = Weir(PG, start=False)
        try:
            w.start(env=sd.env(WATCHDOG_USEC="400000"))
            sd.wait_for("READY")
            t0 = time.monotonic()
            for _ in range(4):
                sd.wait_for("WATCHDOG", timeout=2)
            # every half interval (0.2 s), give or take the 0.1 s tick
            self.assertLess(time.monotonic() - t0, 2.0)
        finally:
            w.stop()
            sd.close()

    def test_watchdog_meant_for_another_pid(self):
        sd = FakeSystemd()
        w = Weir(PG, start=False)
        try:
            w.start(env=sd.env(WATCHDOG_USEC="200000", WATCHDOG_PID="1"))
            sd.wait_for("READY")
            with self.assertRaises(AssertionError):
                sd.wait_for("WATCHDOG", timeout=1)
        finally:
            w.stop()
            sd.close()

    def test_without_systemd_nothing_changes(self):
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        w = Weir(PG, start=False)
        try:
            w.start(env=env)
            self.assertEqual(w.psql("select 1").stdout.strip(), "1")
        finally:
            w.stop()

    def test_notify_socket_gone(self):
        """A NOTIFY_SOCKET nobody listens on does not stop weir from serving."""
        env = dict(os.environ, NOTIFY_SOCKET="/nonexistent/notify")
        w = Weir(PG, start=False)
        try:
            w.start(env=env)
            self.assertEqual(w.psql("select 1").stdout.strip(), "1")
        finally:
            w.stop()


class TestUnitFile(unittest.TestCase):
    @unittest.skipUnless(shutil.which("systemd-analyze"), "systemd-analyze is not installed")
    def test_unit_verifies(self):
        with open(os.path.join(ROOT, "etc", "weir.service")) as f:
            unit = f.read()
        self.assertIn("Type=notify", unit)
        self.assertIn("ExecReload=/bin/kill -HUP $MAINPID", unit)
        d = tempfile.mkdtemp(prefix="weir-unit-")
        try:
            p = os.path.join(d, "weir.service")
            with open(p, "w") as f:
                f.write(unit.replace("/usr/bin/weir", WEIR))
            r = subprocess.run(["systemd-analyze", "verify", "--man=no", p],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stderr.strip(), "", "systemd-analyze complained")
        finally:
            shutil.rmtree(d, ignore_errors=True)


class TestLogrotate(unittest.TestCase):
    def test_sighup_reopens_the_logfile(self):
        """logrotate without copytruncate: rename, SIGHUP, a new file at the path."""
        d = scratch_dir("weir-log-")
        logf = os.path.join(d, "weir.log")
        w = Weir(PG, settings={"logfile": logf})
        try:
            self.assertEqual(w.psql("select 1").stdout.strip(), "1")
            os.rename(logf, logf + ".1")
            w.proc.send_signal(signal.SIGHUP)
            end = time.monotonic() + 10
            while not os.path.exists(logf) and time.monotonic() < end:
                time.sleep(0.05)
            self.assertTrue(os.path.exists(logf), "no new logfile after SIGHUP")
            self.assertEqual(w.psql("select 1").stdout.strip(), "1")
            time.sleep(0.3)
            with open(logf) as f:
                new = f.read()
            self.assertIn("got SIGHUP, reloading", new)
            with open(logf + ".1") as f:
                old = f.read()
            self.assertNotIn("got SIGHUP", old)
        finally:
            w.stop()
            shutil.rmtree(d, ignore_errors=True)


class TestPgBadger(unittest.TestCase):
    @unittest.skipUnless(shutil.which("pgbadger"), "pgbadger is not installed")
    def test_pgbadger_reads_the_log_as_pgbouncers(self):
        """pgBadger (Debian) recognises weir's log as PgBouncer's by itself
        and reports its connections per database, user and host, and errors."""
        w = Weir(PG, settings={"log_connections": "1", "log_disconnections": "1",
                               "stats_period": "1"})
        try:
            for _ in range(12):
                self.assertEqual(w.psql("select 1").stdout.strip(), "1")
            self.assertNotEqual(w.psql("select 1", password="wrong").returncode, 0)
            time.sleep(1.5)  # a stats line
            log = w.log()
        finally:
            w.stop()
        self.assertRegex(log, r"(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \S+ \[\d+\] LOG "
                              r"C-0x[0-9a-f]+: appdb/app@127\.0\.0\.1:\d+ login attempt: "
                              r"db=appdb user=app")
        self.assertRegex(log, r"(?m) LOG stats: \d+ xacts/s, \d+ queries/s, in \d+ B/s")
        d = tempfile.mkdtemp(prefix="weir-pgbadger-")
        try:
            path = os.path.join(d, "weir.log")
            with open(path, "w") as f:
                f.write(log)
            out = os.path.join(d, "report.txt")
            r = subprocess.run(["pgbadger", "-q", "-x", "text", "-o", out, path],
                               capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(out) as f:
                report = f.read()
        finally:
            shutil.rmtree(d, ignore_errors=True)
        self.assertIn("pgBouncer connections per database", report, report)
        m = re.search(r"(?m)^appdb - ([\d,]+)$", report)
        self.assertIsNotNone(m, report)
        self.assertGreaterEqual(int(m.group(1).replace(",", "")), 12)
        self.assertRegex(report, r"(?m)^127\.0\.0\.1 - [\d,]+$")
        self.assertIn('password authentication failed for user "app"', report)


# pgbouncer_exporter's (prometheus-community, Go) queries and column mapping,
# from its collector.go: SHOW <namespace> -> {column: metric suffix}; labels
# are the columns mapped to LABEL there.
GO_EXPORTER = {
    "databases": {"pool_size": "pool_size", "reserve_pool_size": "reserve_pool",
                  "max_connections": "max_connections",
                  "current_connections": "current_connections", "paused": "paused",
                  "disabled": "disabled"},
    "stats_totals": {"query_count": "queries_pooled_total",
                     "query_time": "queries_duration_seconds_total",
                     "bytes_received": "received_bytes_total", "requests": "queries_total",
                     "bytes_sent": "sent_bytes_total", "wait_time": "client_wait_seconds_total",
                     "xact_count": "sql_transactions_pooled_total",
                     "xact_time": "server_in_transaction_seconds_total",
                     "client_parse_count": "client_parses_total",
                     "server_parse_count": "server_parses_total", "bind_count": "binds_total",
                     "server_assignment_count": "server_assignments_total"},
    "pools": {"cl_active": "client_active_connections",
              "cl_active_cancel_req": "client_active_cancel_connections",
              "cl_waiting": "client_waiting_connections",
              "cl_waiting_cancel_req": "client_waiting_cancel_connections",
              "sv_active": "server_active_connections",
              "sv_active_cancel": "server_active_cancel_connections",
              "sv_being_canceled": "server_being_canceled_connections",
              "sv_idle": "server_idle_connections", "sv_used": "server_used_connections",
              "sv_tested": "server_testing_connections", "sv_login": "server_login_connections",
              "maxwait": "client_maxwait_seconds"},
}
GO_LABELS = {"databases": ["name", "host", "port", "database", "force_user", "pool_mode"],
             "stats_totals": ["database"], "pools": ["database", "user"]}
GO_LISTS = {"databases": "databases", "users": "users", "pools": "pools",
            "free_clients": "free_clients", "used_clients": "used_clients",
            "login_clients": "login_clients", "free_servers": "free_servers",
            "used_servers": "used_servers", "dns_names": "cached_dns_names",
            "dns_zones": "cached_dns_zones", "dns_queries": "in_flight_dns_queries"}
GO_CONFIG = {"max_client_conn": "config_max_client_connections",
             "max_user_connections": "config_max_user_connections"}


class TestExporters(unittest.TestCase):
    """The exporters operators already run, against weir's console."""

    @classmethod
    def setUpClass(cls):
        cls.w = Weir(PG, settings={"admin_users": "pgbouncer", "max_user_connections": "50"},
                     users={"app": "s3cret", "weir": "weirpass", "pgbouncer": "exporterpw"})

    @classmethod
    def tearDownClass(cls):
        cls.w.stop()

    def traffic(self):
        for _ in range(3):
            self.assertEqual(self.w.psql("select 1").stdout.strip(), "1")

    def test_go_exporter_queries_yield_every_metric(self):
        """Each query pgbouncer_exporter sends, read as it reads them: every
        mapped column is there and numeric, every label column is there."""
        import psycopg
        self.traffic()
        held = psycopg.connect(self.w.dsn())  # one client for SHOW CLIENTS' grouping
        metrics = {"up", "version_info"}
        try:
            with psycopg.connect(self.w.dsn(user="pgbouncer", password="exporterpw",
                                            dbname="pgbouncer"), autocommit=True) as c:
                cur = c.execute("SHOW VERSION")
                self.assertEqual([d.name for d in cur.description], ["version"])
                self.assertRegex(cur.fetchone()[0], r"\d+\.\d+")
                cur = c.execute("SHOW LISTS")
                self.assertEqual(len(cur.description), 2)
                lists = dict(cur.fetchall())
                for k, name in GO_LISTS.items():
                    self.assertIn(k, lists)
                    float(lists[k])
                    metrics.add(name)
                self.assertEqual(int(lists["used_clients"]), 2)  # held and this one
                cur = c.execute("SHOW CONFIG")
                self.assertIn(len(cur.description), (3, 4))
                conf = {r[0]: r[1] for r in cur.fetchall()}
                for k, name in GO_CONFIG.items():
                    float(conf[k])
                    metrics.add(name)
                cur = c.execute("SHOW CLIENTS")
                cols = [d.name for d in cur.description]
                for k in ("database", "user", "state", "application_name"):
                    self.assertIn(k, cols)
                if cur.fetchall():
                    metrics.add("client_connections")
                for ns, mapping in GO_EXPORTER.items():
                    cur = c.execute("SHOW %s" % ns.upper())
                    cols = [d.name for d in cur.description]
                    rows = cur.fetchall()
                    self.assertTrue(rows, ns)
                    for label in GO_LABELS[ns]:
                        self.assertIn(label, cols, "SHOW %s lacks label column %s" % (ns, label))
                    for col, suffix in mapping.items():
                        self.assertIn(col, cols, "SHOW %s lacks %s" % (ns, col))
                        for r in rows:
                            v = r[cols.index(col)]
                            self.assertIsNotNone(v, (ns, col))
                            float(v)
                        metrics.add("%s_%s" % (ns, suffix))
        finally:
            held.close()
        # 2 + 11 lists + 2 config + client_connections + 6 + 12 + 12
        self.assertEqual(len(metrics), 46, sorted(metrics))

    def test_debian_exporter_scrapes(self):
        """Debian's prometheus-pgbouncer-exporter: starts, and its page has
        every family it knows, with weir's figures."""
        exe = "/usr/bin/prometheus-pgbouncer-exporter"
        if not os.path.exists(exe):
            self.skipTest("prometheus-pgbouncer-exporter is not installed")
        self.traffic()
        port = free_port()
        env = dict(os.environ, PGPASSWORD="exporterpw")
        p = subprocess.Popen([exe, "--pgbouncer-host", "127.0.0.1", "--pgbouncer-port",
                              str(self.w.port), "--pgbouncer-user", "pgbouncer", "--host",
                              "127.0.0.1", "--port", str(port)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        try:
            import urllib.request
            body = None
            end = time.monotonic() + 20
            while time.monotonic() < end and p.poll() is None:
                try:
                    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port,
                                                timeout=5) as r:
                        body = r.read().decode()
                    break
                except OSError:
                    time.sleep(0.2)
            if body is None:
                p.kill()
                self.fail("exporter did not serve:\n" + p.stdout.read().decode())
            for fam in ("pgbouncer_requests_total", "pgbouncer_received_bytes_total",
                        "pgbouncer_active_clients", "pgbouncer_waiting_clients",
                        "pgbouncer_pool_size", "pgbouncer_reserve_pool", "pgbouncer_dns_names",
                        "pgbouncer_used_clients", "pgbouncer_login_clients"):
                self.assertRegex(body, r"(?m)^%s(\{|\s)" % fam, body[:3000])
            m = re.search(r'(?m)^pgbouncer_requests_total\{database="appdb"\} (\S+)', body)
            self.assertIsNotNone(m, body[:3000])
            self.assertGreaterEqual(float(m.group(1)), 3)
            # a second scrape: the exporter keeps its one console connection
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
                self.assertEqual(r.status, 200)
            self.assertIsNone(p.poll())
        finally:
            p.terminate()
            out = p.communicate(timeout=10)[0].decode()
        self.assertNotIn("Traceback", out)


if __name__ == "__main__":
    unittest.main()
