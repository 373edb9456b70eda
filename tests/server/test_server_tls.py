"""TLS on the PostgreSQL door (client_tls_*): real clients (psql, psycopg,
pgbench, openssl s_client) against weir with certificates from a throwaway
CA the test makes with openssl. Each refusal shows the message a user sees.
"""
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest

from harness import (Postgres, Weir, free_port, raw_startup, read_messages, run_pgjdbc,
                     scratch_dir, wait_port)


def w_setting(w, key):
    with open(w.ini) as f:
        for line in f:
            if line.startswith(key + " = "):
                return line.split(" = ", 1)[1].strip()


def http_get(port, path):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path)
    r = c.getresponse()
    return r.status, r.read().decode()

PG = None
CERTS = None


def setUpModule():
    global PG, CERTS
    PG = Postgres()
    CERTS = make_certs()


def tearDownModule():
    PG.destroy()
    shutil.rmtree(CERTS, ignore_errors=True)


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True)


def make_certs():
    """ca (and a second, unrelated ca2); server.crt for localhost and
    127.0.0.1, signed by ca; server2.crt the same with another subject;
    pg.crt for another name (elsewhere.example) only; client.crt (CN=app)."""
    d = tempfile.mkdtemp(prefix="weir-tls-")
    ext = os.path.join(d, "san.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for ca in ("ca", "ca2"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                "/CN=weir test %s" % ca, "-keyout", ca + ".key", "-out", ca + ".crt", cwd=d)
    other = os.path.join(d, "other.ext")
    with open(other, "w") as f:
        f.write("subjectAltName=DNS:elsewhere.example\n")
    for name, cn, extra in (("server", "localhost", ["-extfile", ext]),
                            ("server2", "localhost-renewed", ["-extfile", ext]),
                            ("pg", "elsewhere.example", ["-extfile", other]),
                            ("client", "app", [])):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + cn,
                "-keyout", name + ".key", "-out", name + ".csr", cwd=d)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-out", name + ".crt", *extra, cwd=d)
    for f in os.listdir(d):
        os.chmod(os.path.join(d, f), 0o600)
    return d


def cert(name):
    return os.path.join(CERTS, name)


def tls_weir(mode, users=None, **extra):
    d = scratch_dir("weir-tlsconf-")
    for f in ("server.key", "server.crt", "ca.crt"):
        shutil.copy(cert(f), d)  # a copy: the reload test changes them
    settings = {"client_tls_sslmode": mode,
                "client_tls_key_file": os.path.join(d, "server.key"),
                "client_tls_cert_file": os.path.join(d, "server.crt"),
                "admin_users": "weir"}
    settings.update(extra)
    w = Weir(PG, settings=settings, users=users)
    w.tls_dir = d
    return w


def psql(w, sslmode, sql="select 1", host="127.0.0.1", password_override=None, **params):
    conn = "host=%s port=%d user=app dbname=appdb sslmode=%s" % (host, w.port, sslmode)
    for k, v in params.items():
        conn += " %s=%s" % (k, v)
    return subprocess.run(["psql", "-X", "-A", "-t", "-c", sql, conn], capture_output=True,
                          text=True, timeout=30,
                          env=dict(os.environ, PGPASSWORD=password_override or "s3cret",
                                   PGCONNECT_TIMEOUT="10"))


def server_subject(port):
    """The subject of the certificate weir presents (openssl s_client's STARTTLS)."""
    r = subprocess.run(["openssl", "s_client", "-starttls", "postgres", "-connect",
                        "127.0.0.1:%d" % port], input="", capture_output=True, text=True,
                       timeout=20)
    for line in r.stdout.splitlines():
        if line.startswith("subject="):
            return line
    return r.stdout + r.stderr


class TestClientTls(unittest.TestCase):
    def test_pgjdbc_over_tls_with_scram(self):
        """Java's own TLS stack and pgjdbc's SCRAM (weir offers -PLUS too):
        the certificate checked against the CA and the address, then
        JdbcClient.java's whole run on two threads."""
        PG.sql("CREATE SCHEMA IF NOT EXISTS jdbc_s AUTHORIZATION app")
        w = tls_weir("require", auth_type="scram-sha-256",
                     users={"app": "s3cret", "weir": "weirpass"})
        try:
            rc, out = run_pgjdbc(w.port, 2, 30, "sslmode=verify-full&sslrootcert=" + cert("ca.crt"))
            self.assertEqual(rc, 0, out + w.log()[-2000:])
            self.assertIn("pgjdbc ok", out)
            rc, out = run_pgjdbc(w.port, 1, 1, "sslmode=verify-full&sslrootcert=" + cert("ca2.crt"))
            self.assertNotEqual(rc, 0)
            self.assertIn("PKIX path", out)  # Java's words for an unknown issuer
        finally:
            w.stop()

    def test_require_refuses_plain_text_and_serves_tls(self):
        import psycopg
        w = tls_weir("require")
        try:
            r = psql(w, "disable")
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("SSL required", r.stderr)
            with psycopg.connect(w.dsn(sslmode="require")) as c:
                self.assertTrue(c.pgconn.ssl_in_use)
                self.assertEqual(c.execute("select 41 + 1").fetchone()[0], 42)
                rows, _ = w.admin("SHOW CLIENTS")
                cols = rows[0]
                tls = [dict(zip(cols, x))["tls"] for x in rows[1:]
                       if dict(zip(cols, x))["database"] == "appdb"]
                self.assertEqual(len(tls), 1, rows)
                self.assertRegex(tls[0], r"^TLSv1\.[23]/")
            # the client checks weir's certificate and name
            r = psql(w, "verify-full", host="localhost", sslrootcert=cert("ca.crt"))
            self.assertEqual((r.returncode, r.stdout.strip()), (0, "1"), r.stderr)
            r = psql(w, "verify-full", host="localhost", sslrootcert=cert("ca2.crt"))
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("certificate verify failed", r.stderr)
            # the Unix socket needs no TLS (nothing crosses a network)
        finally:
            w.stop()

    def test_scram_channel_binding(self):
        """SCRAM-SHA-256-PLUS (tls-server-end-point) over TLS: libpq's
        channel_binding=require works through weir."""
        w = tls_weir("require", auth_type="scram-sha-256")
        try:
            for cb in ("require", "prefer", "disable"):
                r = psql(w, "require", "select current_user", channel_binding=cb)
                self.assertEqual((r.returncode, r.stdout.strip()), (0, "app"),
                                 cb + ": " + r.stderr + w.log()[-1500:])
            r = psql(w, "require", channel_binding="require", password_override="wrong")
            self.assertIn('password authentication failed for user "app"', r.stderr)
        finally:
            w.stop()

    def test_direct_tls_as_postgresql_17(self):
        """sslnegotiation=direct: TLS from the first byte, ALPN "postgresql"
        required (Python's ssl module plays the PostgreSQL 17 client)."""
        import ssl
        w = tls_weir("require")
        try:
            for alpn in (["postgresql"], None):
                ctx = ssl.create_default_context(cafile=cert("ca.crt"))
                if alpn:
                    ctx.set_alpn_protocols(alpn)
                raw = socket.create_connection(("127.0.0.1", w.port), timeout=10)
                s = ctx.wrap_socket(raw, server_hostname="localhost")
                s.sendall(raw_startup())
                try:
                    data = s.recv(65536)
                except (ssl.SSLError, ConnectionResetError):
                    data = b""
                s.close()
                if alpn:
                    self.assertEqual(data[:1], b"R", data)  # asked for a password, over TLS
                else:
                    self.assertEqual(data, b"")
            self.assertIn('direct TLS connection without ALPN protocol "postgresql"', w.log())
        finally:
            w.stop()

    def test_prefer_serves_both(self):
        w = tls_weir("prefer")
        try:
            for mode in ("disable", "prefer", "require"):
                r = psql(w, mode, "select 1")
                self.assertEqual((r.returncode, r.stdout.strip()), (0, "1"), mode + r.stderr)
        finally:
            w.stop()

    def test_tls_clients_move_between_workers(self):
        """worker_pack moves idle clients between the workers' loops: a TLS
        client's session goes with it, and answers larger than one TLS
        record come through after each move."""
        import psycopg
        port = free_port()
        w = tls_weir("require", workers="2", worker_pack="0", http_listen_port=str(port))
        self.assertTrue(wait_port(port), w.log())

        def per_worker():
            _, m = http_get(port, "/metrics")
            return [int(n) for n in re.findall(r'(?m)^weir_worker_clients\{worker="\d+"\} (\d+)$', m)]

        def until(pred):
            end = time.monotonic() + 10
            while not pred(per_worker()) and time.monotonic() < end:
                time.sleep(0.05)
            return per_worker()

        def check_all(conns):
            for i, c in enumerate(conns):
                self.assertTrue(c.pgconn.ssl_in_use)
                got = c.execute("select %s::int, repeat('x', 100000)", (i,)).fetchone()
                self.assertEqual((got[0], len(got[1])), (i, 100000))

        conns = []
        try:
            until(lambda c: sum(c) == 0)
            for _ in range(16):
                conns.append(psycopg.connect(w.dsn(sslmode="require"), autocommit=True))
            check_all(conns)
            spread = per_worker()
            self.assertEqual(sum(spread), 16, spread)
            self.assertGreater(spread[1], 0, spread)  # hashed: all on one has odds of 2^-15
            _, r = w.admin("SET worker_pack = 1")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(until(lambda c: c == [16, 0]), [16, 0], w.log())
            check_all(conns)
            _, r = w.admin("SET worker_pack = 0")
            self.assertEqual(r.returncode, 0, r.stderr)
            got = until(lambda c: c[1] >= 4)
            self.assertGreaterEqual(got[1], 4, got)
            check_all(conns)
        finally:
            for c in conns:
                c.close()
            w.stop()

    def test_client_certificates(self):
        w = tls_weir("verify-ca", client_tls_ca_file=cert("ca.crt"), http_listen_port=str(free_port()))
        w.http_port = w_setting(w, "http_listen_port")
        self.assertTrue(wait_port(int(w.http_port)))
        try:
            r = psql(w, "require", sslcert=cert("client.crt"), sslkey=cert("client.key"))
            self.assertEqual((r.returncode, r.stdout.strip()), (0, "1"), r.stderr + w.log())
            r = psql(w, "require")  # no certificate
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("certificate", r.stderr)
            # the client may see the alert before weir has written its line
            end = time.monotonic() + 5
            while "TLS handshake failed" not in w.log() and time.monotonic() < end:
                time.sleep(0.05)
            self.assertIn("TLS handshake failed", w.log())
            http_port = int(w.http_port)
            st, m = http_get(http_port, "/metrics")
            self.assertRegex(m, r"weir_tls_handshakes_total [1-9]")
            self.assertRegex(m, r"weir_tls_handshake_failures_total [1-9]")
        finally:
            w.stop()

    def test_unencrypted_data_after_the_ssl_request(self):
        w = tls_weir("prefer")
        try:
            s = socket.create_connection(("127.0.0.1", w.port), timeout=10)
            s.sendall(struct.pack("!II", 8, 80877103) + raw_startup())
            msgs = read_messages(s, 15.0)  # weir closes after its answer
            s.close()
            self.assertEqual(msgs[0][0], b"E", msgs)
            self.assertIn(b"received unencrypted data after SSL request", msgs[0][1])
            r = psql(w, "require")
            self.assertEqual(r.returncode, 0, r.stderr)  # the door still serves
        finally:
            w.stop()

    def test_reload_takes_new_certificates_without_dropping_anyone(self):
        PG.pgbench_init()
        w = tls_weir("require")
        try:
            self.assertIn("CN = localhost", server_subject(w.port).replace("CN=", "CN = "))
            out = {}

            def bench():
                out["r"] = subprocess.run(
                    ["pgbench", "-n", "-S", "-c", "4", "-T", "4", "-h", "127.0.0.1", "-p",
                     str(w.port), "-U", "app", "appdb"], capture_output=True, text=True,
                    env=dict(os.environ, PGPASSWORD="s3cret", PGSSLMODE="require"), timeout=60)
            t = threading.Thread(target=bench)
            t.start()
            time.sleep(1)
            for f in ("server.key", "server.crt"):
                shutil.copy(cert(f.replace("server", "server2")), os.path.join(w.tls_dir, f))
            _, r = w.admin("RELOAD")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("localhost-renewed", server_subject(w.port))
            # a bad file: refused, the certificates in use kept
            with open(os.path.join(w.tls_dir, "server.crt"), "w") as f:
                f.write("not a certificate\n")
            _, r = w.admin("RELOAD")
            self.assertIn("the TLS settings in use towards clients are kept", w.log())
            self.assertIn("localhost-renewed", server_subject(w.port))
            t.join(60)
            self.assertEqual(out["r"].returncode, 0, out["r"].stdout + out["r"].stderr)
            self.assertIn("number of failed transactions: 0", out["r"].stdout)
        finally:
            w.stop()

    def test_bad_settings_stop_the_start(self):
        for settings, msg in (
                ({"client_tls_sslmode": "sometimes"}, "client_tls_sslmode must be"),
                ({"client_tls_sslmode": "require"}, "needs client_tls_key_file"),
                ({"client_tls_sslmode": "verify-full", "client_tls_key_file": cert("server.key"),
                  "client_tls_cert_file": cert("server.crt")}, "needs client_tls_ca_file"),
                ({"client_tls_sslmode": "require", "client_tls_key_file": cert("client.key"),
                  "client_tls_cert_file": cert("server.crt")}, "key values mismatch"),
                ({"auth_type": "cert"}, "auth_type = cert needs TLS towards clients")):
            w = Weir(PG, start=False, settings=settings)
            try:
                rc, log = w.start_fails()
                self.assertNotEqual(rc, 0)
                self.assertIn(msg, log)
            finally:
                w.stop()


class TestHttps(unittest.TestCase):
    def curl(self, url, *args):
        return subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", cert("ca.crt")] +
                              list(args) + [url], capture_output=True, text=True, timeout=30)

    def test_require_and_prefer(self):
        for mode in ("require", "prefer"):
            port = free_port()
            w = tls_weir("disable", http_listen_port=str(port), http_tls_sslmode=mode)
            try:
                self.assertTrue(wait_port(port))
                base = "https://localhost:%d" % port
                r = self.curl(base + "/health")
                self.assertEqual(r.returncode, 0, r.stderr + w.log())
                self.assertIn('"ok"', r.stdout)
                # SQL with Basic credentials, and an answer of many TLS records
                r = self.curl(base + "/v1/databases/appdb/sql", "-u", "app:s3cret", "-d",
                              '{"query": "select repeat(\'x\', 200000) big"}')
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn("x" * 200000, r.stdout)
                r = self.curl("http://127.0.0.1:%d/health" % port)
                if mode == "require":
                    self.assertNotEqual(r.returncode, 0)  # plain HTTP gets no answer
                else:
                    self.assertEqual(r.returncode, 0, r.stderr)
                    self.assertIn('"ok"', r.stdout)
            finally:
                w.stop()

    def test_the_door_needs_a_certificate(self):
        w = Weir(PG, start=False, settings={"http_listen_port": str(free_port()),
                                            "http_tls_sslmode": "require"})
        try:
            rc, log = w.start_fails()
            self.assertNotEqual(rc, 0)
            self.assertIn("http_tls_sslmode = require needs http_tls_key_file", log)
        finally:
            w.stop()


class TestTlsSettingsOnline(unittest.TestCase):
    def test_ciphers_online_and_a_bad_list_kept_out(self):
        w = tls_weir("require", client_tls_protocols="tlsv1.3",
                     client_tls13_ciphers="TLS_CHACHA20_POLY1305_SHA256", log_connections="1")
        try:
            r = psql(w, "require")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("login attempt: db=appdb user=app tls=TLSv1.3/"
                          "TLS_CHACHA20_POLY1305_SHA256", w.log())
            rows, res = w.admin("SET client_tls13_ciphers = 'TLS_AES_256_GCM_SHA384'")
            self.assertEqual(res.returncode, 0, res.stderr)
            self.assertEqual(psql(w, "require").returncode, 0)
            self.assertIn("tls=TLSv1.3/TLS_AES_256_GCM_SHA384", w.log())
            rows, res = w.admin("SET client_tls13_ciphers = 'unknown'")
            self.assertIn("failed to set the TLSv1.3 cipher suites (client_tls13_ciphers)",
                          w.log())
            r = psql(w, "require")  # the context in use is kept
            self.assertEqual(r.returncode, 0, r.stderr)
        finally:
            w.stop()


class TestCertAndPeerLogins(unittest.TestCase):
    def test_cert_the_certificate_names_the_user(self):
        w = tls_weir("require", client_tls_ca_file=cert("ca.crt"), auth_type="cert")
        try:
            with_cert = {"sslcert": cert("client.crt"), "sslkey": cert("client.key")}
            r = psql(w, "require", "select current_user", **with_cert)  # CN=app, user app
            self.assertEqual((r.returncode, r.stdout.strip()), (0, "app"), r.stderr + w.log())
            conn = "host=127.0.0.1 port=%d user=weir dbname=appdb sslmode=require sslcert=%s " \
                   "sslkey=%s" % (w.port, cert("client.crt"), cert("client.key"))
            r = subprocess.run(["psql", "-X", "-c", "select 1", conn], capture_output=True,
                               text=True, timeout=30)
            self.assertIn('TLS certificate name mismatch: "app" is not user "weir"', r.stderr)
            r = psql(w, "require")
            self.assertIn("TLS client certificate missing", r.stderr)
        finally:
            w.stop()

    def test_peer_and_the_consoles_own_way_in(self):
        import pwd
        me = pwd.getpwuid(os.geteuid()).pw_name
        PG.sql("do $$ begin if not exists (select from pg_roles where rolname = '%s') then "
               "create role \"%s\" login password 'mepw'; end if; end $$" % (me, me))
        sock = tempfile.mkdtemp(prefix="weir-sock-")
        w = Weir(PG, settings={"auth_type": "peer", "unix_socket_dir": sock},
                 users={me: "mepw", "app": "s3cret"})
        try:
            def over_socket(user, db="appdb", sql="select current_user"):
                return subprocess.run(["psql", "-X", "-A", "-t", "-h", sock, "-p", str(w.port),
                                       "-U", user, "-d", db, "-c", sql], capture_output=True,
                                      text=True, timeout=30)
            r = over_socket(me)
            self.assertEqual((r.returncode, r.stdout.strip()), (0, me), r.stderr + w.log())
            r = over_socket("app")
            self.assertIn('peer authentication failed for user "app"', r.stderr)
            r = w.psql("select 1")  # TCP
            self.assertIn("peer authentication works over the Unix socket only", r.stderr)
            r = over_socket("pgbouncer", "pgbouncer", "SHOW VERSION")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("weir", r.stdout)
        finally:
            w.stop()
            shutil.rmtree(sock, ignore_errors=True)


def auth_request(port, user, database="appdb"):
    """The first answer to a startup packet over TCP: ('R', code) for an
    authentication request (3 cleartext, 5 md5, 10 SASL), or ('E', text)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    data = b""
    try:  # the first whole message (a loaded machine may take its time)
        s.sendall(raw_startup(user=user, database=database))
        while len(data) < 5 or len(data) < 1 + struct.unpack("!I", data[1:5])[0]:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    t, body = data[0:1], data[5:1 + struct.unpack("!I", data[1:5])[0]]
    if t == b"R":
        return "R", struct.unpack("!I", body[:4])[0]
    return t.decode(), body.decode(errors="replace")


class TestHba(unittest.TestCase):
    """auth_type = hba: pg_hba.conf rules with every method weir has, an
    ident map for cert and for peer, a user list from @file, a method weir
    does not have; RELOAD with new rules and with a broken file."""

    def setUp(self):
        import pwd
        self.me = me = pwd.getpwuid(os.geteuid()).pw_name
        PG.sql("do $$ begin if not exists (select from pg_roles where rolname = '%s') then "
               "create role \"%s\" login password 'mepw'; end if; end $$" % (me, me))
        self.sock = tempfile.mkdtemp(prefix="weir-sock-")
        d = self.conf = tempfile.mkdtemp(prefix="weir-hba-")
        self.hba = os.path.join(d, "hba.conf")
        self.rules = (
            "# TYPE  DATABASE   USER        ADDRESS        METHOD\n"
            "local   pgbouncer  pgbouncer                  peer\n"
            "local   appdb      all                        peer map=ops\n"
            "hostssl appdb      app,weir    127.0.0.1/32   cert map=certs\n"
            "hostnossl appdb    app         127.0.0.1/32   scram-sha-256\n"
            "host    appdb      weir        127.0.0.1/32   md5\n"
            "host    appdb      blocked     127.0.0.1/32   reject\n"
            "host    appdb      ldapuser    127.0.0.1/32   ldap ldapserver=ldap.example\n"
            "host    pgbouncer  weir        127.0.0.1/32   password\n"
            "host    appdb      @trusted.txt  127.0.0.0 255.0.0.0  trust\n")
        with open(self.hba, "w") as f:
            f.write(self.rules)
        with open(os.path.join(d, "trusted.txt"), "w") as f:
            f.write("# users trusted from this host\n%s\n" % me)
        with open(os.path.join(d, "ident.conf"), "w") as f:
            f.write("ops    %s   app\nops    %s   %s\ncerts  app  app\ncerts  app  weir\n"
                    % (me, me, me))
        self.w = tls_weir("prefer", users={"app": "s3cret", "weir": "weirpass", me: "mepw"},
                          client_tls_ca_file=cert("ca.crt"), auth_type="hba",
                          auth_hba_file=self.hba,
                          auth_ident_file=os.path.join(d, "ident.conf"),
                          unix_socket_dir=self.sock, admin_users="weir",
                          http_listen_port=str(free_port()), http_listen_addr="127.0.0.1")

    def tearDown(self):
        self.w.stop()
        shutil.rmtree(self.sock, ignore_errors=True)
        shutil.rmtree(self.conf, ignore_errors=True)

    def over_socket(self, user, db="appdb", sql="select current_user"):
        return subprocess.run(["psql", "-X", "-A", "-t", "-h", self.sock, "-p", str(self.w.port),
                               "-U", user, "-d", db, "-c", sql], capture_output=True, text=True,
                              timeout=30)

    def tcp(self, user, sslmode="disable", password="", db="appdb", **params):
        conn = "host=127.0.0.1 port=%d user=%s dbname=%s sslmode=%s" % (self.w.port, user, db,
                                                                        sslmode)
        for k, v in params.items():
            conn += " %s=%s" % (k, v)
        return subprocess.run(["psql", "-X", "-A", "-t", "-c", "select current_user", conn],
                              capture_output=True, text=True, timeout=30,
                              env=dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="10"))

    def test_every_method(self):
        w, me = self.w, self.me
        self.assertIn("authentication method ldap is not supported by weir: logins this rule "
                      "matches are refused", w.log())
        # peer with an ident map: the OS user may be app, and itself, not weir
        r = self.over_socket("app")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "app"), r.stderr + w.log())
        r = self.over_socket(me)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, me), r.stderr)
        r = self.over_socket("weir")
        self.assertIn('peer authentication failed for user "weir"', r.stderr)
        self.assertIn('ident map "ops" has no match for OS user "%s" as user "weir"' % me, w.log())
        # peer for the console's pgbouncer user
        r = self.over_socket("pgbouncer", "pgbouncer", "SHOW VERSION")
        self.assertEqual(r.returncode, 0, r.stderr)
        # cert with an ident map: CN=app may be app or weir
        with_cert = {"sslcert": cert("client.crt"), "sslkey": cert("client.key"),
                     "sslrootcert": cert("ca.crt")}
        for user in ("app", "weir"):
            r = self.tcp(user, "verify-full", host="localhost", **with_cert)
            self.assertEqual((r.returncode, r.stdout.strip()), (0, user), r.stderr + w.log())
        r = self.tcp("app", "require")  # the cert rule, and no certificate
        self.assertIn("TLS client certificate missing", r.stderr)
        # scram-sha-256 for app without TLS (hostnossl), md5 for weir: the
        # request weir makes says which
        self.assertEqual(auth_request(w.port, "app"), ("R", 10))
        self.assertEqual(auth_request(w.port, "weir"), ("R", 5))
        self.assertEqual(auth_request(w.port, "weir", "pgbouncer"), ("R", 3))
        r = self.tcp("app", password="s3cret")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "app"), r.stderr)
        r = self.tcp("app", password="wrong")
        self.assertIn('password authentication failed for user "app"', r.stderr)
        rows, res = w.admin("SHOW VERSION")  # password method, on the console
        self.assertEqual(res.returncode, 0, res.stderr)
        # trust, for a user listed in @trusted.txt
        r = self.tcp(me)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, me), r.stderr)
        # reject, no rule, a method weir does not have
        r = self.tcp("blocked")
        self.assertIn('pg_hba.conf rejects connection for host "127.0.0.1", user "blocked", '
                      'database "appdb", no encryption', r.stderr)
        r = self.tcp("nobody", db="otherdb")
        self.assertIn('no pg_hba.conf entry for host "127.0.0.1", user "nobody", database '
                      '"otherdb", no encryption', r.stderr)
        r = self.tcp("nobody", "require", db="otherdb")
        self.assertIn('database "otherdb", SSL encryption', r.stderr)
        r = self.tcp("ldapuser")
        self.assertIn("authentication method ldap (auth_hba_file line 8) is not supported by "
                      "weir", r.stderr)

    def test_http_door_follows_the_rules(self):
        import base64
        import http.client
        import json

        def post(user, password):
            c = http.client.HTTPConnection("127.0.0.1", int(w_setting(self.w, "http_listen_port")),
                                           timeout=10)
            auth = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
            c.request("POST", "/v1/databases/appdb/sql", json.dumps({"query": "select 1 as x"}),
                      {"Authorization": "Basic " + auth, "Content-Type": "application/json"})
            r = c.getresponse()
            out = r.status, r.read().decode()
            c.close()
            return out
        # the HTTP door listens a moment after the PostgreSQL one
        self.assertTrue(wait_port(int(w_setting(self.w, "http_listen_port"))), self.w.log())
        st, body = post("app", "s3cret")  # hostnossl scram-sha-256: the password is checked
        self.assertEqual(st, 200, body)
        st, body = post("app", "wrong")
        self.assertEqual(st, 401, body)
        st, body = post("blocked", "x")
        self.assertEqual(st, 403, body)
        self.assertIn("pg_hba.conf rejects connection for host", body)

    def test_reload_new_rules_and_a_broken_file(self):
        w = self.w
        self.assertEqual(self.tcp("app", password="s3cret").returncode, 0)
        with open(self.hba, "w") as f:
            f.write("host appdb app 127.0.0.1/32 reject\n" + self.rules)
        rows, r = w.admin("RELOAD")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.tcp("app", password="s3cret")
        self.assertIn("pg_hba.conf rejects connection", r.stderr)
        # a mistake keeps the rules in use, and says where it is
        with open(self.hba, "w") as f:
            f.write(self.rules + "host appdb app 10.0.0.0/40 md5\n")
        rows, r = w.admin("RELOAD")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("hba.conf:11: mask length 40 in \"10.0.0.0/40\" is more than 32",
                      r.stderr)
        r = self.tcp("app", password="s3cret")
        self.assertIn("pg_hba.conf rejects connection", r.stderr)
        self.assertEqual(self.tcp("weir", password="weirpass").returncode, 0)

    def test_start_refuses_a_broken_file(self):
        with open(self.hba, "a") as f:
            f.write("host all +admins 127.0.0.1/32 md5\n")
        w2 = Weir(PG, settings={"auth_type": "hba", "auth_hba_file": self.hba}, start=False)
        try:
            rc, log = w2.start_fails()
            self.assertNotEqual(rc, 0)
            self.assertIn("hba.conf:11: \"+admins\": group membership (+role) is not supported",
                          log)
        finally:
            w2.stop()


class TestServerTls(unittest.TestCase):
    """weir to PostgreSQL over TLS: a cluster with ssl = on that only takes
    hostssl connections, and a certificate for another name than the one
    weir dials, so that verify-ca passes and verify-full must not."""

    @classmethod
    def setUpClass(cls):
        cls.pg = Postgres()
        data = os.path.join(cls.pg.dir, "data")
        for src, dst in (("pg.crt", "server.crt"), ("pg.key", "server.key")):
            shutil.copy(cert(src), os.path.join(data, dst))
            os.chmod(os.path.join(data, dst), 0o600)
            if os.getuid() == 0:
                shutil.chown(os.path.join(data, dst), "postgres")
        with open(os.path.join(data, "postgresql.conf"), "a") as f:
            f.write("ssl = on\n")
        hba = os.path.join(data, "pg_hba.conf")
        with open(hba) as f:
            lines = f.read().replace("host    all", "hostssl all").replace(
                "host    replication", "hostssl replication")
        with open(hba, "w") as f:
            f.write(lines)
        cls.pg.stop()
        cls.pg.start()

    @classmethod
    def tearDownClass(cls):
        cls.pg.destroy()

    def weir(self, pg, mode, **extra):
        settings = {"server_tls_sslmode": mode, "server_login_retry": "0.2"}
        settings.update(extra)
        return Weir(pg, settings=settings)

    def ssl_in_use(self, w):
        return w.psql("select ssl from pg_stat_ssl where pid = pg_backend_pid()")

    def test_modes_against_a_hostssl_only_server(self):
        for mode, extra in (("prefer", {}), ("require", {}),
                            ("verify-ca", {"server_tls_ca_file": cert("ca.crt")})):
            w = self.weir(self.pg, mode, **extra)
            try:
                r = self.ssl_in_use(w)
                self.assertEqual((r.returncode, r.stdout.strip()), (0, "t"),
                                 mode + ": " + r.stderr + w.log()[-1500:])
            finally:
                w.stop()

    def test_verification_failures_are_refused_and_said(self):
        for mode, ca, why in (("verify-full", "ca.crt", "IP address mismatch"),
                              ("verify-ca", "ca2.crt", "certificate verify failed"),
                              ("disable", "ca.crt", "no encryption")):
            w = self.weir(self.pg, mode, server_tls_ca_file=cert(ca))
            try:
                r = w.psql("select 1")
                self.assertNotEqual(r.returncode, 0, mode)
                self.assertIn(why, r.stderr, mode)
            finally:
                w.stop()

    def test_a_tls_change_remakes_server_connections_and_forgets_the_failure(self):
        """A wrong CA: refused, and the failure is cached (server_login_retry
        is long here). SET server_tls_ca_file to the right one: the next
        login connects at once. A RELOAD that changes another server_tls_*
        key closes the pool's connections ("database configuration
        changed"); one that changes nothing keeps them."""
        http_port = free_port()
        w = self.weir(self.pg, "verify-ca", server_tls_ca_file=cert("ca2.crt"),
                      server_login_retry="60", admin_users="weir",
                      http_listen_port=str(http_port))

        def metric(name):
            st, page = http_get(http_port, "/metrics")
            return int(re.search(r"^%s (\d+)$" % name, page, re.M).group(1))
        try:
            r = w.psql("select 1")
            self.assertIn("certificate verify failed", r.stderr)
            self.assertGreaterEqual(metric("weir_tls_server_handshake_failures_total"), 1)
            self.assertEqual(metric("weir_tls_server_handshakes_total"), 0)
            rows, res = w.admin("SET server_tls_ca_file = '%s'" % cert("ca.crt"))
            self.assertEqual(res.returncode, 0, res.stderr)
            r = self.ssl_in_use(w)
            self.assertEqual((r.returncode, r.stdout.strip()), (0, "t"), r.stderr + w.log())
            self.assertGreaterEqual(metric("weir_tls_server_handshakes_total"), 1)
            pid = w.psql("select pg_backend_pid()").stdout.strip()
            with open(w.ini) as f:  # the file says what SET did: RELOAD changes nothing
                text = f.read().replace(cert("ca2.crt"), cert("ca.crt"))
            with open(w.ini, "w") as f:
                f.write(text)
            said = w.log().count("TLS changed; reconnecting")
            self.assertEqual(said, 1)  # the SET's
            w.admin("RELOAD")  # nothing changed: the same server connection
            self.assertEqual(w.psql("select pg_backend_pid()").stdout.strip(), pid)
            self.assertEqual(w.log().count("TLS changed; reconnecting"), said)
            with open(w.ini, "a") as f:
                f.write("server_tls_protocols = tlsv1.3\n")
            w.admin("RELOAD")
            self.assertIn("pool appdb/app: its server address, database, password or TLS "
                          "changed; reconnecting", w.log())
            r = w.psql("select pg_backend_pid(), version from pg_stat_ssl "
                       "where pid = pg_backend_pid()")
            self.assertEqual(r.returncode, 0, r.stderr)
            newpid, version = r.stdout.strip().split("|")
            self.assertNotEqual(newpid, pid)
            self.assertEqual(version, "TLSv1.3")
        finally:
            w.stop()

    def test_require_never_falls_back_to_plain_text(self):
        w = self.weir(PG, "require")  # the module's cluster has ssl = off
        try:
            r = w.psql("select 1")
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("server does not support SSL, but SSL was required", r.stderr)
        finally:
            w.stop()
        w = self.weir(PG, "prefer")  # prefer does
        try:
            r = self.ssl_in_use(w)
            self.assertEqual((r.returncode, r.stdout.strip()), (0, "f"), r.stderr)
        finally:
            w.stop()

    def test_tls_on_both_sides_under_pgbench(self):
        self.pg.pgbench_init()
        w = Weir(self.pg, settings={
            "client_tls_sslmode": "require", "client_tls_key_file": cert("server.key"),
            "client_tls_cert_file": cert("server.crt"), "server_tls_sslmode": "verify-ca",
            "server_tls_ca_file": cert("ca.crt")})
        try:
            r = subprocess.run(["pgbench", "-n", "-c", "8", "-T", "3", "-h", "127.0.0.1", "-p",
                                str(w.port), "-U", "app", "appdb"], capture_output=True, text=True,
                               env=dict(os.environ, PGPASSWORD="s3cret", PGSSLMODE="require"),
                               timeout=60)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr + w.log()[-1500:])
            self.assertIn("number of failed transactions: 0", r.stdout)
        finally:
            w.stop()


if __name__ == "__main__":
    unittest.main()
