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
from harness import WEIR, Postgres, Weir  # noqa: E402

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
        d = tempfile.mkdtemp(prefix="weir-log-")
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


if __name__ == "__main__":
    unittest.main()
