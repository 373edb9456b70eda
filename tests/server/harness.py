"""harness.py — a real PostgreSQL and a real weir for the server tests.

PostgreSQL comes from tests/integration/pg_cluster.sh (a throwaway cluster in
a temporary directory: superuser weir/weirpass, role app/s3cret owning appdb,
SCRAM over TCP). weir is the binary under test, started with a pgbouncer.ini
written by the test; its log is kept and shown when a test fails.
"""
import atexit
import base64
import os
import shutil
import random
import socket
import struct
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PG_CLUSTER = os.path.join(HERE, "..", "integration", "pg_cluster.sh")
WEIR = os.environ.get("WEIR_BIN", os.path.join(HERE, "..", "..", "build", "weir"))


def basic(user, password):
    """An HTTP Basic Authorization value."""
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


_handed_out = set()


def _ephemeral_low():
    """Where the kernel's ports for outgoing connections begin."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def scratch_dir(prefix):
    """A temporary folder that is removed when the test process ends."""
    d = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, d, True)
    return d


def free_port():
    """A port nobody listens on now, and not one this process was given
    before (the kernel may hand the same free port to two calls in a row:
    weir's listen_port and http_listen_port then collided). Below the range
    of ports for outgoing connections when there is room: the tests beside
    this one open connections by the thousand, and one of them could hold a
    port between this check and the server's bind."""
    low = _ephemeral_low()
    for _ in range(200):
        if low > 21000:
            port = random.randrange(20000, low)
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
        else:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no fresh free port in 200 tries")


def wait_port(port, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


class Postgres:
    """One throwaway cluster for a test module."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="weir-pg-")
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.start()

    def start(self):
        subprocess.run(["sh", PG_CLUSTER, "start", self.dir, str(self.port)], check=True)

    def stop(self, mode="fast"):
        subprocess.run(["sh", PG_CLUSTER, "stop", self.dir, mode], check=True)

    def sql(self, q):
        """Run q as the superuser over the socket; returns stdout (tuples only)."""
        r = subprocess.run(["sh", PG_CLUSTER, "psql", self.dir, str(self.port), q],
                           capture_output=True, text=True, check=True)
        return r.stdout.strip()

    def pgbench_init(self):
        """pgbench's tables (scale 1) in appdb, owned by app."""
        subprocess.run(["pgbench", "-i", "-q", "-s", "1", "-h", "127.0.0.1", "-p", str(self.port),
                        "-U", "app", "appdb"], env=dict(os.environ, PGPASSWORD="s3cret"),
                       check=True, capture_output=True)

    def destroy(self):
        subprocess.run(["sh", PG_CLUSTER, "destroy", self.dir], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


class Weir:
    """weir with a config built from `databases` (name -> connstr) and `settings`."""

    def __init__(self, pg, settings=None, databases=None, users_file=None, users=None,
                 start=True, raw_ini=None):
        self.dir = tempfile.mkdtemp(prefix="weir-srv-")
        self.port = free_port()
        self.pg = pg
        self.ini = os.path.join(self.dir, "weir.ini")
        self.logfile = os.path.join(self.dir, "weir.log")
        auth_file = os.path.join(self.dir, "users.txt")
        with open(auth_file, "w") as f:
            for u, p in (users or {"app": "s3cret", "weir": "weirpass"}).items():
                f.write('"%s" "%s"\n' % (u, p))
        if databases is None:
            databases = {"appdb": "host=127.0.0.1 port=%d dbname=appdb" % pg.port}
        conf = {
            "listen_addr": "127.0.0.1",
            "listen_port": str(self.port),
            "unix_socket_dir": "",
            "auth_type": "md5",
            "auth_file": users_file or auth_file,
            "pool_mode": "transaction",
            "default_pool_size": "4",
            "server_login_retry": "0.2",
            "workers": "2",
        }
        conf.update(settings or {})
        with open(self.ini, "w") as f:
            if raw_ini is not None:
                f.write(raw_ini)
            else:
                f.write("[databases]\n")
                for k, v in databases.items():
                    f.write("%s = %s\n" % (k, v))
                f.write("[pgbouncer]\n")
                for k, v in conf.items():
                    if v is not None:  # None: leave the key out (its default)
                        f.write("%s = %s\n" % (k, v))
        self.proc = None
        if start:
            self.start()

    def start(self, expect_ok=True, env=None, prefix=()):
        """prefix: a command that execs weir (taskset -c 0 ...)"""
        self.log_fh = open(self.logfile, "ab")
        self.proc = subprocess.Popen([*prefix, WEIR, self.ini], stdout=self.log_fh,
                                     stderr=subprocess.STDOUT, env=env)
        if expect_ok and not wait_port(self.port):
            raise RuntimeError("weir did not start:\n" + self.log())
        return self.proc

    def log(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, sig=3):  # SIGQUIT: now (SIGTERM waits for the clients to leave)
        rc = None
        # weir gone already, killed by a signal (a crash: SIGSEGV, or SIGABRT
        # from a sanitizer): no test expects that, so say it here, not as
        # "server closed the connection unexpectedly" in whatever ran next
        died = self.proc.returncode if self.proc and self.proc.poll() is not None else None
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                rc = self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError("weir did not stop within 20 s:\n" + self.log())
        if self.proc:
            self.log_fh.close()
        log = self.log()
        shutil.rmtree(self.dir, ignore_errors=True)
        # A clean shutdown exits 0; under the sanitizers a leak or error does not.
        if rc is not None and rc != 0:
            raise RuntimeError("weir exited with %d on shutdown:\n%s" % (rc, log[-6000:]))
        if died is not None and died < 0:
            raise RuntimeError("weir died of signal %d before it was stopped:\n%s"
                               % (-died, log[-6000:]))

    def dsn(self, user="app", password="s3cret", dbname="appdb", **kw):
        d = "host=127.0.0.1 port=%d user=%s dbname=%s" % (self.port, user, dbname)
        if password is not None:
            d += " password=%s" % password
        for k, v in kw.items():
            d += " %s=%s" % (k, v)
        return d

    def psql(self, sql, user="app", password="s3cret", dbname="appdb", env=None):
        e = dict(os.environ)
        e.update({"PGPASSWORD": password or "", "PGCONNECT_TIMEOUT": "10"})
        e.update(env or {})
        return subprocess.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                               "-p", str(self.port), "-U", user, "-d", dbname, "-c", sql],
                              capture_output=True, text=True, env=e, timeout=60)

    def admin(self, sql, user="weir", password="weirpass", dbname="pgbouncer"):
        """(rows, result) of an admin console command: rows as lists, the header first."""
        e = dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="10")
        r = subprocess.run(["psql", "-X", "-A", "-F", "|", "-P", "footer=off", "-h", "127.0.0.1",
                            "-p", str(self.port), "-U", user, "-d", dbname, "-c", sql],
                           capture_output=True, text=True, env=e, timeout=30)
        return [ln.split("|") for ln in r.stdout.splitlines() if ln], r

    def start_fails(self, timeout=20):
        """Start weir expecting it to refuse: (exit code, log)."""
        p = self.start(expect_ok=False)
        return p.wait(timeout), self.log()


def raw_startup(user="app", database="appdb", **params):
    body = struct.pack("!I", 196608)
    for k, v in dict(user=user, database=database, **params).items():
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def read_until(sock, t, timeout=15.0, count=1):
    """Read messages up to and including the count-th of type t; returns
    [(type, body)]. (What came after it is lost: ask for every message
    needed in one call.)"""
    sock.settimeout(timeout)
    data, out = b"", []
    while True:
        while len(data) >= 5 and len(data) >= 1 + struct.unpack("!I", data[1:5])[0]:
            n = struct.unpack("!I", data[1:5])[0]
            out.append((data[0:1], data[5:1 + n]))
            data = data[1 + n:]
            if out[-1][0] == t:
                count -= 1
                if not count:
                    return out
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before %r; so far %r" % (t, out))
        data += chunk


def read_messages(sock, timeout=5.0):
    """Read until the peer closes or goes quiet; returns [(type, body)]."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    out = []
    while len(data) >= 5:
        t = data[0:1]
        n = struct.unpack("!I", data[1:5])[0]
        out.append((t, data[5:1 + n]))
        data = data[1 + n:]
    if data:
        out.append((data[0:1], b""))
    return out


def error_fields(body):
    f = {}
    for part in body.split(b"\0"):
        if part:
            f[part[0:1].decode()] = part[1:].decode(errors="replace")
    return f


def run_pgjdbc(port, threads, iterations, url_params=""):
    """Compile and run JdbcClient.java (pgjdbc from Debian's
    libpostgresql-jdbc-java) against weir's port: (returncode, output).
    url_params are added to its JDBC URL (sslmode=..., for instance)."""
    jar = os.environ.get("WEIR_PGJDBC", "/usr/share/java/postgresql.jar")
    if not os.path.exists(jar) or not shutil.which("javac"):
        raise AssertionError("pgjdbc or javac not found (scripts/deps.sh installs "
                             "libpostgresql-jdbc-java and openjdk-17-jdk-headless)")
    out = tempfile.mkdtemp(prefix="weir-jdbc-")
    try:
        r = subprocess.run(["javac", "-cp", jar, "-d", out, os.path.join(HERE, "JdbcClient.java")],
                           capture_output=True, text=True, timeout=120)
        if r.returncode:
            return r.returncode, r.stdout + r.stderr
        r = subprocess.run(["java", "-cp", jar + ":" + out, "JdbcClient", str(port), str(threads),
                            str(iterations), url_params], capture_output=True, text=True,
                           timeout=120)
        return r.returncode, r.stdout + r.stderr[-3000:]
    finally:
        shutil.rmtree(out, ignore_errors=True)
