"""http_server.py PORT [CERT KEY] — a local HTTP/1.1 server for the HTTP
driver's tests (keep-alive; TLS when given a certificate and key).

  GET  /hello                       200 "hello", X-Peer: the client's port
  GET  /stats                       {"connections": N} accepted so far
  ANY  /flaky?key=K&fail=N[&status=S][&retry_after=V]
                                    the first N requests of K get S (503),
                                    with Retry-After: V if given; then 200
  GET  /drop?key=K&fail=N           the first N requests of K: connection
                                    closed without an answer; then 200
  GET  /slow?ms=M                   200 after M ms
  GET  /idle-close?ms=M             200, then the connection closed M ms later
  GET  /count?key=K                 how many requests K has had
  ANY  /echo                        200 "METHOD body"
"""
import http.server
import json
import socket
import ssl
import sys
import threading
import time
import urllib.parse

lock = threading.Lock()
hits = {}
connections = 0


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        global connections
        with lock:
            connections += 1
        super().setup()

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", headers=None):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Peer", str(self.client_address[1]))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        key = q.get("key", "")
        with lock:
            hits[key] = hits.get(key, 0) + 1
            seen = hits[key]
        if u.path == "/hello":
            self.reply(200, b"hello")
        elif u.path == "/stats":
            self.reply(200, json.dumps({"connections": connections}).encode())
        elif u.path == "/flaky":
            if seen <= int(q.get("fail", "0")):
                h = {"Retry-After": q["retry_after"]} if "retry_after" in q else {}
                self.reply(int(q.get("status", "503")), b"not now", h)
            else:
                self.reply(200, b"ok after %d" % seen)
        elif u.path == "/drop":
            if seen <= int(q.get("fail", "0")):
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            self.reply(200, b"ok after %d" % seen)
        elif u.path == "/idle-close":
            self.reply(200, b"bye soon")
            conn = self.connection

            def close():
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            threading.Timer(int(q.get("ms", "100")) / 1000, close).start()
        elif u.path == "/slow":
            time.sleep(int(q.get("ms", "1000")) / 1000)
            self.reply(200, b"slow")
        elif u.path == "/count":
            with lock:
                c = hits.get(key, 0) - 1  # not this request itself
            self.reply(200, str(c).encode())
        elif u.path == "/echo":
            self.reply(200, self.command.encode() + b" " + body)
        else:
            self.reply(404, b"no such path")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = handle_any


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    port = int(sys.argv[1])
    srv = Server(("127.0.0.1", port), Handler)
    if len(sys.argv) > 3:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[2], sys.argv[3])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
