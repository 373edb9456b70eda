// weir's live page: polls /metrics, /ready, /v1/pools and /v1/show/servers
// every 2 s and draws what the pools are doing. No dependencies; every value
// from the server goes into the page as text (textContent), never as HTML.
"use strict";

const PERIOD_MS = 2000;
const WINDOW_MS = 5 * 60 * 1000; // charts
const PCT_WINDOW_MS = 60 * 1000; // percentiles in the cards and the pools table
const history = []; // {t, tot: Map(pool -> figures)}
let paused = false;

const $ = (id) => document.getElementById(id);

function parseProm(text) {
  const m = new Map();
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const sp = line.lastIndexOf(" ");
    const key = line.slice(0, sp);
    const v = parseFloat(line.slice(sp + 1));
    const b = key.indexOf("{");
    const name = b < 0 ? key : key.slice(0, b);
    const labels = {};
    if (b >= 0) {
      const re = /(\w+)="((?:[^"\\]|\\.)*)"/g;
      let r;
      while ((r = re.exec(key.slice(b))))
        labels[r[1]] = r[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    if (!m.has(name)) m.set(name, []);
    m.get(name).push({ labels, v });
  }
  return m;
}

const poolKey = (db, user) => db + "\u0000" + user;

// Per pool: totals and histogram buckets, from the metrics page.
function figures(prom) {
  const tot = new Map();
  const get = (l) => {
    const k = poolKey(l.database, l.user);
    if (!tot.has(k))
      tot.set(k, { xact: 0, query: 0, qb: new Map(), wb: new Map(), active: 0, waiting: 0 });
    return tot.get(k);
  };
  for (const s of prom.get("weir_transactions_total") || []) get(s.labels).xact = s.v;
  for (const s of prom.get("weir_queries_total") || []) get(s.labels).query = s.v;
  for (const s of prom.get("weir_query_duration_seconds_bucket") || [])
    get(s.labels).qb.set(s.labels.le, s.v);
  for (const s of prom.get("weir_client_wait_seconds_bucket") || [])
    get(s.labels).wb.set(s.labels.le, s.v);
  for (const s of prom.get("weir_pool_clients") || []) get(s.labels)[s.labels.state] = s.v;
  return tot;
}

// The sample at least `ago` ms old (or the oldest one).
function before(ago) {
  const now = history[history.length - 1].t;
  for (let i = history.length - 2; i >= 0; i--) if (now - history[i].t >= ago) return history[i];
  return history.length > 1 ? history[0] : null;
}

// Quantile q of the difference of two cumulative histograms (le -> count).
function quantile(cur, old, q) {
  const les = [...cur.keys()].sort((a, b) => (a === "+Inf" ? 1 : b === "+Inf" ? -1 : a - b));
  const d = les.map((le) => (cur.get(le) || 0) - ((old && old.get(le)) || 0));
  const total = d[d.length - 1];
  if (!(total > 0)) return null;
  const want = q * total;
  let prevLe = 0, prevC = 0;
  for (let i = 0; i < les.length; i++) {
    if (d[i] >= want) {
      if (les[i] === "+Inf") return prevLe; // beyond the last bound
      const le = parseFloat(les[i]);
      const span = d[i] - prevC;
      return span > 0 ? prevLe + ((le - prevLe) * (want - prevC)) / span : le;
    }
    prevLe = les[i] === "+Inf" ? prevLe : parseFloat(les[i]);
    prevC = d[i];
  }
  return null;
}

function sumHist(tot, which) {
  const out = new Map();
  for (const f of tot.values()) for (const [le, c] of f[which]) out.set(le, (out.get(le) || 0) + c);
  return out;
}

function fmtMs(sec) {
  if (sec === null || sec === undefined) return "–";
  const ms = sec * 1000;
  return ms < 1 ? ms.toFixed(3) + " ms" : ms < 100 ? ms.toFixed(1) + " ms" : Math.round(ms) + " ms";
}
const fmtRate = (x) => (x === null ? "–" : x < 10 ? x.toFixed(1) : Math.round(x).toLocaleString("en"));
function fmtAge(sec) {
  if (!(sec >= 0)) return "–";
  if (sec < 120) return Math.round(sec) + " s";
  if (sec < 7200) return Math.round(sec / 60) + " min";
  return (sec / 3600).toFixed(1) + " h";
}
// "2026-11-29 02:55:48 UTC" (the console's times)
function consoleTime(s) {
  const m = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d) UTC$/.exec(s || "");
  return m ? Date.parse(m[1] + "T" + m[2] + "Z") : NaN;
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function fillTable(id, rows) {
  const tbody = $(id).tBodies[0];
  const frag = document.createDocumentFragment();
  for (const r of rows) {
    const tr = document.createElement("tr");
    for (const c of r) cell(tr, c.text, c.cls);
    frag.appendChild(tr);
  }
  tbody.replaceChildren(frag);
}

// A small line chart: series = [{color, points: [[t, y]...]}], time on x.
function chart(id, series, unit) {
  const cv = $(id);
  const dpr = window.devicePixelRatio || 1;
  const w = cv.clientWidth || cv.width, h = cv.clientHeight || cv.height;
  cv.width = w * dpr;
  cv.height = h * dpr;
  const g = cv.getContext("2d");
  g.scale(dpr, dpr);
  g.clearRect(0, 0, w, h);
  const now = Date.now();
  let max = 0;
  for (const s of series) for (const p of s.points) if (p[1] !== null) max = Math.max(max, p[1]);
  max = max > 0 ? max * 1.15 : 1;
  const left = 44, bottom = h - 14;
  g.strokeStyle = "#e3e6eb";
  g.fillStyle = "#6b7280";
  g.font = "11px system-ui, sans-serif";
  for (let i = 0; i <= 2; i++) {
    const y = bottom - ((bottom - 6) * i) / 2;
    g.beginPath();
    g.moveTo(left, y);
    g.lineTo(w, y);
    g.stroke();
    const v = (max * i) / 2;
    g.fillText(v === 0 ? "0" : v < 10 ? v.toPrecision(2) : Math.round(v).toString(), 2, y + 4);
  }
  g.fillText("-5 min", left, h - 2);
  g.fillText("now" + (unit ? " (" + unit + ")" : ""), w - 60, h - 2);
  for (const s of series) {
    g.strokeStyle = s.color;
    g.lineWidth = 1.6;
    g.beginPath();
    let pen = false;
    for (const [t, y] of s.points) {
      if (y === null) { pen = false; continue; }
      const x = left + ((w - left) * (t - (now - WINDOW_MS))) / WINDOW_MS;
      const yy = bottom - ((bottom - 6) * y) / max;
      if (pen) g.lineTo(x, yy); else g.moveTo(x, yy);
      pen = true;
    }
    g.stroke();
  }
}

// Absolute, from the origin: a page opened as http://user:pw@host/ must not
// fetch URLs that carry the credentials (the browser's login is reused).
const at = (path) => new URL(path, location.origin).href;

async function fetchText(path) {
  const r = await fetch(at(path), { cache: "no-store", credentials: "same-origin" });
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.text();
}
async function fetchJson(path, okStatuses) {
  const r = await fetch(at(path), { cache: "no-store", credentials: "same-origin" });
  if (!r.ok && !(okStatuses || []).includes(r.status)) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}

async function tick() {
  if (paused) return;
  let prom, ready, pools, servers;
  try {
    [prom, ready, pools, servers] = await Promise.all([
      fetchText("/metrics").then(parseProm),
      fetchJson("/ready", [503]),
      fetchJson("/v1/pools"),
      fetchJson("/v1/show/servers"),
    ]);
    $("problem").hidden = true;
  } catch (e) {
    $("problem").textContent = "cannot refresh: " + e.message;
    $("problem").hidden = false;
    return;
  }
  const t = Date.now();
  const tot = figures(prom);
  history.push({ t, tot });
  while (history.length > 2 && t - history[1].t > WINDOW_MS) history.shift();
  render(prom, ready, pools, servers);
}

function rates(cur, old) {
  if (!old) return { tps: null, qps: null };
  const dt = (cur.t - old.t) / 1000;
  let x = 0, q = 0;
  for (const [k, f] of cur.tot) {
    const o = old.tot.get(k);
    x += f.xact - (o ? o.xact : 0);
    q += f.query - (o ? o.query : 0);
  }
  return { tps: dt > 0 ? x / dt : null, qps: dt > 0 ? q / dt : null };
}

function render(prom, ready, pools, servers) {
  const cur = history[history.length - 1], prev = history.length > 1 ? history[history.length - 2] : null;
  const ver = (prom.get("pgbouncer_version_info") || [])[0];
  $("version").textContent = ver ? ver.labels.version : "";
  $("updated").textContent = new Date(cur.t).toLocaleTimeString();
  const rb = $("ready");
  rb.textContent = ready.ready ? "ready" : "not ready";
  rb.className = "badge " + (ready.ready ? "ok" : "bad");
  rb.title = JSON.stringify(ready.databases || {});

  const byState = {};
  for (const s of prom.get("weir_clients") || []) byState[s.labels.state] = s.v;
  for (const st of ["active", "idle", "waiting", "login"]) $("cl-" + st).textContent = byState[st] ?? "–";
  const r = rates(cur, prev);
  $("tps").textContent = fmtRate(r.tps);
  $("qps").textContent = fmtRate(r.qps);
  let open = 0;
  for (const s of prom.get("weir_server_connections") || []) open += s.v;
  $("servers-open").textContent = open;
  $("sessions").textContent = pools.sessions;

  const old = before(PCT_WINDOW_MS);
  const qAll = sumHist(cur.tot, "qb"), wAll = sumHist(cur.tot, "wb");
  const qOld = old ? sumHist(old.tot, "qb") : null, wOld = old ? sumHist(old.tot, "wb") : null;
  for (const [id, q] of [["50", 0.5], ["95", 0.95], ["99", 0.99]]) {
    $("q" + id).textContent = fmtMs(quantile(qAll, qOld, q));
    $("w" + id).textContent = fmtMs(quantile(wAll, wOld, q));
  }

  // charts: each sample against the one before it
  const rate = [[], []], qs = [[], [], []], ws = [[], [], []];
  for (let i = 1; i < history.length; i++) {
    const a = history[i], b = history[i - 1];
    const rr = rates(a, b);
    rate[0].push([a.t, rr.tps]);
    rate[1].push([a.t, rr.qps]);
    const qa = sumHist(a.tot, "qb"), qb = sumHist(b.tot, "qb");
    const wa = sumHist(a.tot, "wb"), wb = sumHist(b.tot, "wb");
    [0.5, 0.95, 0.99].forEach((q, k) => {
      const x = quantile(qa, qb, q), y = quantile(wa, wb, q);
      qs[k].push([a.t, x === null ? null : x * 1000]);
      ws[k].push([a.t, y === null ? null : y * 1000]);
    });
  }
  const colors = ["#2563eb", "#db2777", "#0d9488"];
  chart("chart-rate", [{ color: colors[0], points: rate[0] }, { color: colors[1], points: rate[1] }], "/s");
  chart("chart-query", qs.map((p, k) => ({ color: colors[k], points: p })), "ms");
  chart("chart-wait", ws.map((p, k) => ({ color: colors[k], points: p })), "ms");

  // pools: /v1/pools, with the metrics of the same database and user
  const rows = [];
  for (const p of pools.pools) {
    const k = poolKey(p.database, p.user ?? "");
    const f = cur.tot.get(k), o = old && old.tot.get(k), pr = prev && prev.tot.get(k);
    const dt = prev ? (cur.t - prev.t) / 1000 : 0;
    const tps = f && pr && dt > 0 ? (f.xact - pr.xact) / dt : null;
    const state = p.down ? ["down", "state-bad"] : p.paused ? ["paused", "state-warn"] : ["ok", "state-ok"];
    rows.push([
      { text: p.database }, { text: p.user ?? "" }, { text: p.kind }, { text: p.mode },
      { text: p.size, cls: "n" }, { text: p.open, cls: "n" }, { text: p.active, cls: "n" },
      { text: p.idle, cls: "n" }, { text: p.connecting, cls: "n" },
      { text: f ? f.active : "", cls: "n" }, { text: f ? f.waiting : p.waiting, cls: "n" },
      { text: p.oldest_wait_us ? fmtMs(p.oldest_wait_us / 1e6) : "", cls: "n" },
      { text: f ? fmtRate(tps) : "", cls: "n" },
      { text: f ? fmtMs(quantile(f.qb, o && o.qb, 0.95)) : "", cls: "n" },
      { text: f ? fmtMs(quantile(f.wb, o && o.wb, 0.95)) : "", cls: "n" },
      { text: state[0], cls: state[1] },
    ]);
  }
  fillTable("pools", rows);

  const col = (name) => servers.columns.indexOf(name);
  const srows = servers.rows.map((s) => {
    const ct = consoleTime(s[col("connect_time")]), rt = consoleTime(s[col("request_time")]);
    return [
      { text: s[col("database")] }, { text: s[col("user")] }, { text: s[col("state")] },
      { text: (s[col("addr")] ?? "") + ":" + (s[col("port")] ?? "") },
      { text: fmtAge((cur.t - ct) / 1000), cls: "n" }, { text: fmtAge((cur.t - rt) / 1000) + " ago", cls: "n" },
      { text: s[col("application_name")] ?? "" }, { text: s[col("tls")] ?? "" },
    ];
  });
  fillTable("servers", srows);

  const errs = [];
  for (const p of pools.pools) if (p.last_error) errs.push([{ text: p.database }, { text: p.user ?? "" }, { text: p.last_error, cls: "err" }]);
  for (const [db, v] of Object.entries(ready.databases || {}))
    if (v !== "ok" && !errs.some((e) => e[0].text === db)) errs.push([{ text: db }, { text: "" }, { text: v, cls: "err" }]);
  fillTable("errors", errs);
}

$("pause").addEventListener("click", () => {
  paused = !paused;
  $("pause").textContent = paused ? "resume" : "pause";
  if (!paused) tick();
});
tick();
setInterval(tick, PERIOD_MS);
