// h2_server.js PORT [CERT KEY] — a local HTTP/2 server for the HTTP driver's
// tests, on Node's http2 module: with a certificate, TLS with ALPN offering
// h2 and http/1.1; without, cleartext HTTP/2 by prior knowledge only (h2c).
//
//   GET /hello              200 "hello"; X-Proto: the request's HTTP version,
//                           X-Conn: the number of the TCP connection it came on
//   GET /gate?key=K&n=N     held until N requests of K are in flight at once,
//                           then each gets 200 "N on C connection(s)"; after
//                           5 s without N, 504 "M of N"
//   GET /slow?ms=M          200 after M ms
//   GET /stats              {"connections": TCP connections accepted so far}
//   ANY /echo               200 "METHOD body"
'use strict';
const http2 = require('http2');
const fs = require('fs');

const port = Number(process.argv[2]);
let connections = 0; // TCP connections accepted
let nextId = 0;      // numbers for HTTP/2 sessions and HTTP/1.1 sockets
const ids = new WeakMap();
const gates = new Map();

function connOf(req) {
  const owner = req.httpVersionMajor === 2 ? req.stream.session : req.socket;
  if (!ids.has(owner)) ids.set(owner, ++nextId);
  return ids.get(owner);
}

function handler(req, res) {
  const u = new URL(req.url, 'http://x');
  const send = (status, body, headers) => {
    res.writeHead(status, Object.assign({'content-type': 'text/plain',
      'x-proto': req.httpVersion, 'x-conn': String(connOf(req))}, headers || {}));
    res.end(body);
  };
  switch (u.pathname) {
  case '/hello':
    return send(200, 'hello');
  case '/slow':
    return setTimeout(() => send(200, 'slow'), Number(u.searchParams.get('ms') || 0));
  case '/stats':
    return send(200, JSON.stringify({connections}));
  case '/echo': {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => send(200, req.method + ' ' + Buffer.concat(chunks).toString()));
    return;
  }
  case '/gate': {
    const key = u.searchParams.get('key') || '';
    const n = Number(u.searchParams.get('n') || 1);
    let g = gates.get(key);
    if (!g) {
      g = {waiting: [], conns: new Set()};
      g.timer = setTimeout(() => {
        gates.delete(key);
        for (const w of g.waiting) w.send(504, g.waiting.length + ' of ' + n);
      }, 5000);
      gates.set(key, g);
    }
    g.waiting.push({send});
    g.conns.add(connOf(req));
    if (g.waiting.length >= n) {
      clearTimeout(g.timer);
      gates.delete(key);
      for (const w of g.waiting) w.send(200, n + ' on ' + g.conns.size + ' connection(s)');
    }
    return;
  }
  default:
    return send(404, 'no such path');
  }
}

let server;
if (process.argv[3]) {
  server = http2.createSecureServer({
    key: fs.readFileSync(process.argv[4]),
    cert: fs.readFileSync(process.argv[3]),
    allowHTTP1: true,
  }, handler);
} else {
  server = http2.createServer({}, handler);
}
server.on('connection', () => { connections++; });
server.listen(port, '127.0.0.1');
