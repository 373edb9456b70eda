#!/usr/bin/python3
"""smoke.py — install the built Debian packages on this machine and use them
as an operator would (CI runs it after `make deb`, as root):

  tests/package/smoke.py build-deb/*.deb

It installs them with apt-get (dependencies from Debian), checks what the
packages set up (the weir user, directories, permissions, man pages, the unit,
logrotate, pkg-config), starts /usr/bin/weir as the unit does (user weir, the
packaged /etc/weir/weir.ini, a fake NOTIFY_SOCKET as systemd is not running
here), serves SQL over the HTTP door, rotates the log, reloads, stops, and
purges the packages. /etc/weir/userlist.txt is put back as it was.
"""
import base64
import json
import os
import pwd
import grp
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HTTP = "http://127.0.0.1:6480"


def sh(*cmd, check=True, **kw):
    print("+", " ".join(cmd), flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        sys.exit("FAILED: %s\n%s%s" % (" ".join(cmd), r.stdout, r.stderr))
    return r


def expect(cond, what):
    if not cond:
        sys.exit("FAILED: " + what)
    print("ok:", what, flush=True)


def get(path, user=None, password=None, body=None):
    req = urllib.request.Request(HTTP + path, data=body)
    if user:
        req.add_header("Authorization",
                       "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode())
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def main():
    if os.geteuid() != 0:
        print("smoke.py: skipped: installing packages needs root")
        return
    debs = [os.path.abspath(p) for p in sys.argv[1:]]
    expect(len(debs) == 3, "three packages given: weir, libweir0, libweir-dev")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    sh("apt-get", "install", "-y", "-q", "--reinstall", *debs, env=env)

    # what the packages set up
    pw = pwd.getpwnam("weir")
    expect(pw.pw_dir == "/var/lib/weir", "user weir, home /var/lib/weir")
    for d in ("/var/log/weir", "/var/lib/weir"):
        st = os.stat(d)
        expect(st.st_uid == pw.pw_uid and stat.S_IMODE(st.st_mode) == 0o750, d + " weir's, 0750")
    st = os.stat("/etc/weir/userlist.txt")
    expect(st.st_uid == 0 and st.st_gid == grp.getgrnam("weir").gr_gid and
           stat.S_IMODE(st.st_mode) == 0o640, "/etc/weir/userlist.txt root:weir 0640")
    conffiles = sh("dpkg-query", "-W", "-f=${Conffiles}", "weir").stdout
    for f in ("/etc/weir/weir.ini", "/etc/weir/userlist.txt", "/etc/logrotate.d/weir"):
        expect(f in conffiles, f + " is a conffile")
    expect(os.path.exists("/usr/share/man/man1/weir.1.gz") and
           os.path.exists("/usr/share/man/man5/weir.ini.5.gz"), "man pages weir(1), weir.ini(5)")
    for tool in ("man", "systemd-analyze", "logrotate"):
        if not shutil.which(tool):
            print("skipped: %s is not installed, its check is not run" % tool)
    if shutil.which("man"):
        r = sh("man", "-P", "cat", "weir")
        expect("connection pooler for PostgreSQL" in r.stdout, "man weir shows the page")
    if shutil.which("systemd-analyze"):
        r = sh("systemd-analyze", "verify", "--man=no", "/lib/systemd/system/weir.service",
               check=False)
        expect(r.returncode == 0 and not r.stderr.strip(), "the unit verifies: " + r.stderr)
    if shutil.which("logrotate"):
        r = sh("logrotate", "-d", "/etc/logrotate.d/weir", check=False)
        expect(r.returncode == 0, "logrotate accepts /etc/logrotate.d/weir: " + r.stderr[-500:])
    libs = sh("pkg-config", "--libs", "weir").stdout.split()
    expect({"-lweir", "-lpq", "-lsqlite3"} <= set(libs), "pkg-config --libs weir: " + " ".join(libs))
    tmp = tempfile.mkdtemp()
    src = os.path.join(tmp, "app.c")
    with open(src, "w") as f:
        f.write('#include <weir/weir.h>\n#include <libpq-fe.h>\n#include <stdio.h>\n'
                'int main(void){printf("%s %d\\n", weir_version(), PQlibVersion() > 0);'
                'return 0;}\n')
    cflags = sh("pkg-config", "--cflags", "--libs", "weir").stdout.split()
    sh("cc", src, "-o", os.path.join(tmp, "app"), *cflags)
    expect(sh(os.path.join(tmp, "app")).stdout.strip().endswith(" 1"), "a program builds against libweir-dev")
    shutil.rmtree(tmp)

    # run it as the unit does
    with open("/etc/weir/userlist.txt") as f:
        userlist = f.read()
    with open("/etc/weir/weir.ini") as f:
        ini = f.read()
    os.makedirs("/run/weir", exist_ok=True)
    os.chown("/run/weir", pw.pw_uid, pw.pw_gid)
    nd = tempfile.mkdtemp()
    os.chmod(nd, 0o755)
    nsock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    npath = os.path.join(nd, "notify")
    nsock.bind(npath)
    os.chmod(npath, 0o777)
    nsock.settimeout(15)

    def notified(key):
        while True:
            msg = dict(ln.split("=", 1) for ln in nsock.recv(4096).decode().split("\n") if "=" in ln)
            if key in msg:
                return msg

    # as the unit's User=weir (the process itself, no wrapper between)
    proc = subprocess.Popen(["/usr/bin/weir", "-q", "/etc/weir/weir.ini"], user="weir",
                            group="weir", extra_groups=[], stdout=subprocess.DEVNULL,
                            env=dict(os.environ, NOTIFY_SOCKET=npath))
    try:
        ready = notified("READY")
        expect(ready["READY"] == "1", "READY=1 on the notify socket: " + ready.get("STATUS", ""))
        with open("/run/weir/weir.pid") as f:
            expect(int(f.read()) == int(ready["MAINPID"]), "pidfile /run/weir/weir.pid")
        status, body = get("/health")
        expect(status == 200, "GET /health: %d %s" % (status, body))
        status, _ = get("/")
        expect(status == 401, "the live page asks for a login (%d)" % status)
        # an operator adds a user who may see the page, then reloads
        with open("/etc/weir/userlist.txt", "a") as f:
            f.write('"ops" "smoke-test-password"\n')
        with open("/etc/weir/weir.ini", "w") as f:
            f.write(ini.replace("\nstats_users =\n", "\nstats_users = ops\n"))
        os.kill(int(ready["MAINPID"]), signal.SIGHUP)
        notified("RELOADING")
        again = notified("READY")
        expect("reloaded" in again.get("STATUS", ""), "RELOADING=1 then READY=1 on SIGHUP")
        status, body = get("/v1/databases/demo/sql", "ops", "smoke-test-password",
                           json.dumps({"query": "select 40 + 2 as answer"}).encode())
        expect(status == 200 and "42" in body, "SQL over HTTP on the demo database: " + body[:200])
        status, body = get("/", "ops", "smoke-test-password")
        expect(status == 200 and "<html" in body.lower(), "the live page for a stats_users member")
        # logrotate's way: rename, then SIGHUP (its postrotate)
        os.rename("/var/log/weir/weir.log", "/var/log/weir/weir.log.1")
        sh("sh", "-c", 'kill -HUP "$(cat /run/weir/weir.pid)"')
        notified("READY")
        st = os.stat("/var/log/weir/weir.log")
        expect(st.st_uid == pw.pw_uid, "a new /var/log/weir/weir.log after SIGHUP, weir's")
        # stop as the unit does (KillSignal=SIGINT)
        os.kill(int(ready["MAINPID"]), signal.SIGINT)
        notified("STOPPING")
        expect(proc.wait(timeout=30) == 0, "SIGINT: STOPPING=1, exit 0")
        expect(not os.path.exists("/run/weir/weir.pid"), "the pidfile is gone")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        with open("/etc/weir/userlist.txt", "w") as f:
            f.write(userlist)
        with open("/etc/weir/weir.ini", "w") as f:
            f.write(ini)
        nsock.close()
        shutil.rmtree(nd, ignore_errors=True)

    sh("apt-get", "purge", "-y", "-q", "weir", "libweir-dev", "libweir0", env=env)
    expect(not os.path.exists("/var/log/weir") and not os.path.exists("/etc/weir/weir.ini"),
           "purge removes /etc/weir and /var/log/weir")
    print("smoke test passed")


if __name__ == "__main__":
    main()
