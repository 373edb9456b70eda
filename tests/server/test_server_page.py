"""test_server_page.py — the live page (GET / on the HTTP door): who may see
it, what it is served with, and what a real browser (Debian's headless
Chromium) shows of a weir under pgbench load. The screenshot goes to
$WEIR_PAGE_SCREENSHOT when set (docs/live-page.png is one).
"""
import base64
import http.client
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import psycopg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Postgres, Weir, free_port, wait_port  # noqa: E402

PG = None
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def setUpModule():
    global PG
    PG = Postgres()
    PG.pgbench_init()


def tearDownModule():
    PG.destroy()


class TestLivePage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.http_port = free_port()
        cls.w = Weir(PG, settings={"http_listen_port": str(cls.http_port), "admin_users": "weir",
                                   "stats_users": "bob", "default_pool_size": "4"},
                     users={"app": "s3cret", "weir": "weirpass", "bob": "bobpw"})
        if not wait_port(cls.http_port):
            raise RuntimeError(cls.w.log())

    @classmethod
    def tearDownClass(cls):
        cls.w.stop()

    def get(self, path, user=None, password=None):
        c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
        h = {}
        if user:
            h["Authorization"] = "Basic " + base64.b64encode(
                ("%s:%s" % (user, password)).encode()).decode()
        c.request("GET", path, headers=h)
        r = c.getresponse()
        body = r.read().decode()
        c.close()
        return r, body

    def test_who_may_see_it(self):
        r, _ = self.get("/")
        self.assertEqual(r.status, 401)
        self.assertIn('Basic realm="weir"', r.getheader("WWW-Authenticate"))
        r, _ = self.get("/", "bob", "wrong")
        self.assertEqual(r.status, 401)
        r, body = self.get("/", "app", "s3cret")  # a user, but not of the console
        self.assertEqual(r.status, 403)
        self.assertIn("neither admin_users nor stats_users", body)
        for user, pw in (("bob", "bobpw"), ("weir", "weirpass")):
            r, body = self.get("/", user, pw)
            self.assertEqual(r.status, 200)
            self.assertTrue(r.getheader("Content-Type").startswith("text/html"))
            self.assertIn('<script src="/weir.js">', body)
            csp = r.getheader("Content-Security-Policy")
            self.assertIn("script-src 'self'", csp)
            self.assertIn("frame-ancestors 'none'", csp)
            self.assertEqual(r.getheader("X-Content-Type-Options"), "nosniff")
        # the page's own files, no data in them: served to anyone, with no inline code
        r, js = self.get("/weir.js")
        self.assertEqual((r.status, r.getheader("Content-Type")), (200, "text/javascript; charset=utf-8"))
        self.assertIn("/v1/show/servers", js)
        self.assertNotIn("innerHTML", js)  # server values go in as text only
        r, _ = self.get("/weir.css")
        self.assertEqual(r.status, 200)
        r, _ = self.get("/nothing.js")
        self.assertEqual(r.status, 404)

    @unittest.skipUnless(CHROMIUM, "chromium is not installed (apt-get install chromium)")
    def test_a_browser_shows_the_pools_under_load(self):
        env = dict(os.environ, PGPASSWORD="s3cret")
        bench = subprocess.Popen(["pgbench", "-n", "-S", "-c", "4", "-j", "2", "-T", "40", "-h",
                                  "127.0.0.1", "-p", str(self.w.port), "-U", "app", "appdb"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        # a client whose application_name is markup, holding a server connection
        hostile = psycopg.connect(self.w.dsn(), application_name='<b id="pwned">x</b>')
        hostile.execute("select 1")  # in a transaction: linked to a server
        profile = tempfile.mkdtemp(prefix="weir-chromium-")
        try:
            time.sleep(2)
            url = "http://bob:bobpw@127.0.0.1:%d/" % self.http_port
            base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--user-data-dir=" + profile,
                    "--window-size=1400,1000", "--virtual-time-budget=7000"]
            shot = os.environ.get("WEIR_PAGE_SCREENSHOT") or os.path.join(profile, "page.png")
            r = subprocess.run(base + ["--screenshot=" + shot, url], capture_output=True,
                               text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr[-2000:])
            with open(shot, "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
            self.assertGreater(os.path.getsize(shot), 20000)  # not a blank page
            r = subprocess.run(base + ["--dump-dom", url], capture_output=True, text=True,
                               timeout=120)
            dom = r.stdout
        finally:
            hostile.rollback()
            hostile.close()
            bench.terminate()  # enough load was seen; pgbench stops at -T anyway
            bench.wait(timeout=60)
            shutil.rmtree(profile, ignore_errors=True)
        self.assertIn('id="problem" class="problem" hidden=""', dom, dom[:3000])
        self.assertRegex(dom, r'id="ready" class="badge ok"[^>]*>ready<')
        self.assertRegex(dom, r'id="version"[^>]*>weir \d+\.\d+\.\d+<')
        active = int(re.search(r'id="cl-active">(\d+)<', dom).group(1))
        self.assertGreaterEqual(active, 1)
        tps = re.search(r'id="tps">([\d,.]+)<', dom)
        self.assertIsNotNone(tps, "transactions/s not shown")
        self.assertGreater(float(tps.group(1).replace(",", "")), 0)
        self.assertRegex(dom, r'id="q95">[\d.]+ ms<')
        pools = re.search(r'<table id="pools">.*?<tbody>(.*?)</tbody>', dom, re.S).group(1)
        self.assertIn("<td>appdb</td><td>app</td><td>postgresql</td><td>transaction</td>", pools)
        servers = re.search(r'<table id="servers">.*?<tbody>(.*?)</tbody>', dom, re.S).group(1)
        self.assertGreaterEqual(servers.count("<tr>"), 1)
        # markup from a client is shown as text, never made into elements
        self.assertNotIn('<b id="pwned">', dom)
        self.assertIn("&lt;b id=\"pwned\"&gt;x&lt;/b&gt;", dom)


if __name__ == "__main__":
    unittest.main()
