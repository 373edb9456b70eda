#!/usr/bin/env python3
"""server_summary.py — medians and ratios from bench/server's RESULT lines.

    build/bench/server --repeat 5 ... | tee run.txt
    python3 bench/server_summary.py run.txt        (or: ... | python3 bench/server_summary.py)

bench/server prints one RESULT line per pgbench run; with --repeat N each
cell has N of them. This prints, as lines a script can read:

  RESULT server_median target=T mode=M clients=C [connect=1] [server_lifetime=0] [socket=unix] [for=prepared] [rows=N]
         tps=<median> cpu_ms_per_10k=<median> runs=N tps_min=.. tps_max=.. [spread_runs=K]
  RESULT server_median_roundtrip target=T select1_us=<median> rounds=N
  RESULT server_ratio what=W mode=M clients=C [...] value=<a/b>

Each ratio is of two medians of the same cell (same mode, client count and
flags), so both sides come from the same run. A run in which pgbench
reported an error or aborted clients (PgBouncer 1.18 with -M prepared) is
counted as failed_runs and left out of the medians. The ratios are those the
benchmarks are judged by: the default weir against PgBouncer 1.25.2, against
two PgBouncer 1.25.2 processes and against Odyssey (tps, and CPU per
transaction), two workers' CPU against one worker's, and, when the run had
a second binary (WEIR_BIN_B), weir against weir_b. A target missing from
the run leaves its ratios out.

Given the 16-core bundle's results instead (RESULT devbench lines), it
prints RESULT devbench_ratio lines: weir at each worker count against four
PgBouncer processes, the newest single PgBouncer and Odyssey at the same
workers (tps and CPU per transaction), each target's tps at the highest
client count against the lowest, and the SELECT 1 round trip.
"""
import re
import statistics
import sys

PAIR = re.compile(r"(\w[\w.]*)=(\S+)")

# (name, numerator target, denominator target, field)
RATIOS = [
    ("tps_weir_vs_pgbouncer_1.25", "weir", "pgbouncer_1.25", "tps"),
    ("tps_weir_vs_pgbouncer_1.25_x2", "weir", "pgbouncer_1.25_x2", "tps"),
    ("tps_weir_vs_pgbouncer_1.18", "weir", "pgbouncer", "tps"),
    ("tps_weir_vs_odyssey", "weir", "odyssey", "tps"),
    ("tps_weir_vs_direct", "weir", "direct", "tps"),
    ("cpu_weir_vs_pgbouncer_1.25", "weir", "pgbouncer_1.25", "cpu"),
    ("cpu_weir_vs_pgbouncer_1.25_x2", "weir", "pgbouncer_1.25_x2", "cpu"),
    ("cpu_weir_vs_odyssey", "weir", "odyssey", "cpu"),
    ("cpu_weir_vs_weir_1worker", "weir", "weir_1worker", "cpu"),
    ("cpu_weir_2spread_vs_weir_1worker", "weir_2spread", "weir_1worker", "cpu"),
    ("cpu_pgbouncer_1.25_x2_vs_pgbouncer_1.25", "pgbouncer_1.25_x2", "pgbouncer_1.25", "cpu"),
    ("tps_weir_vs_weir_b", "weir", "weir_b", "tps"),
    ("cpu_weir_vs_weir_b", "weir", "weir_b", "cpu"),
    ("tps_weir_1worker_vs_weir_b_1worker", "weir_1worker", "weir_b_1worker", "tps"),
    ("cpu_weir_1worker_vs_weir_b_1worker", "weir_1worker", "weir_b_1worker", "cpu"),
]


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def read(lines):
    cells, rounds = {}, {}
    for ln in lines:
        if ln.startswith("RESULT server_pgbench "):
            d = dict(PAIR.findall(ln))
            flags = []
            if re.search(r"\s-C\s*$", ln):
                flags.append("connect=1")
            if "server_lifetime" in d:
                flags.append("server_lifetime=" + d["server_lifetime"])
            if "socket" in d:
                flags.append("socket=" + d["socket"])
            if "for" in d:  # weir's -M extended baseline of the prepared runs
                flags.append("for=" + d["for"])
            if "rows" in d:  # a result of that many rows per transaction
                flags.append("rows=" + d["rows"])
            key = (d.get("mode", "?"), int(d.get("clients", 0)), " ".join(flags))
            bad = d.get("aborted", "0") != "0" or "error" in d
            spread = "spread" in d  # the default weir left one loop (packing) in this run
            cells.setdefault(key, {}).setdefault(d.get("target", "?"), []).append(
                (None, None, True, spread) if bad
                else (num(d.get("tps")), num(d.get("cpu_ms_per_10k")), False, spread))
        elif ln.startswith("RESULT server_roundtrip "):
            d = dict(PAIR.findall(ln))
            v = num(d.get("select1_us"))
            if v is not None:
                rounds.setdefault(d.get("target", "?"), []).append(v)
    return cells, rounds


def med(runs, i):
    xs = [r[i] for r in runs if r[i] is not None]
    return statistics.median(xs) if xs else None


def fmt(x):
    return "%.0f" % x if x is not None else "n/a"


def version(name):
    return tuple(int(x) for x in re.findall(r"\d+", name))


def devbench(lines):
    """The 16-core bundle's RESULT devbench lines (one run per cell, or the
    median of several): the ratios its targets are judged by."""
    cells, rt = {}, {}
    for ln in lines:
        d = dict(PAIR.findall(ln))
        bad = d.get("rc", "0") != "0" or d.get("aborted", "0") not in ("0", "n/a") or "error" in d
        if ln.startswith("RESULT devbench "):
            key = (d.get("proto", "?"), int(d.get("clients", 0)))
            tgt = "%s/%s" % (d.get("target", "?"), d.get("workers", "?"))
            if not bad:
                cells.setdefault(key, {}).setdefault(tgt, []).append(
                    (num(d.get("tps")), num(d.get("cpu_ms_per_10k")), False))
        elif ln.startswith("RESULT devbench_select1 ") and not bad:
            tgt = "%s/%s" % (d.get("target", "?"), d.get("workers", "?"))
            v = num(d.get("select1_us"))
            if v is not None:
                rt.setdefault(tgt, []).append(v)
    if not cells and not rt:
        return False
    names = {t for c in cells.values() for t in c} | set(rt)
    x4 = sorted(t for t in names if t.startswith("pgbouncer-") and "-reuseport/" in t)
    singles = sorted((t for t in names if t.startswith("pgbouncer-") and "-reuseport/" not in t),
                     key=version)
    latest = singles[-1] if singles else None
    weirs = sorted((t for t in names if t.startswith("weir/")), key=version)
    for (proto, clients), c in sorted(cells.items()):
        tag = "proto=%s clients=%d" % (proto, clients)
        for w in weirs:
            if w not in c:
                continue
            n = w.split("/")[1]
            pairs = [("pgbouncer_x4", t) for t in x4] + [("pgbouncer_latest", latest),
                                                          ("odyssey", "odyssey/" + n)]
            for what, other in pairs:
                if other not in c:
                    continue
                for field, i in (("tps", 0), ("cpu", 1)):
                    a, b = med(c[w], i), med(c[other], i)
                    if a is not None and b:
                        print("RESULT devbench_ratio what=%s_weir_vs_%s workers=%s %s value=%.2f"
                              " ref=%s ref_value=%s" % (field, what, n, tag, a / b,
                                                        other.split("/")[0], fmt(b)))
    # the throughput kept from the lowest client count to the highest
    counts = {}
    for (proto, clients) in cells:
        counts.setdefault(proto, []).append(clients)
    for proto, cs in counts.items():
        lo, hi = min(cs), max(cs)
        if lo == hi:
            continue
        for t in weirs + x4:
            a, b = cells[(proto, hi)].get(t), cells[(proto, lo)].get(t)
            if a and b and med(b, 0):
                print("RESULT devbench_ratio what=tps_%d_vs_%d target=%s proto=%s value=%.2f" %
                      (hi, lo, t, proto, med(a, 0) / med(b, 0)))
    if latest in rt:
        for w in weirs:
            if w in rt:
                print("RESULT devbench_ratio what=select1_weir_vs_pgbouncer_latest workers=%s "
                      "value=%.2f" % (w.split("/")[1],
                                      statistics.median(rt[w]) / statistics.median(rt[latest])))
    return True


def main():
    src = open(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] != "-" else sys.stdin
    lines = src.readlines()
    cells, rounds = read(lines)
    if devbench(lines) and not cells and not rounds:
        return 0
    if not cells and not rounds:
        print("server_summary: no RESULT server_pgbench, server_roundtrip or devbench lines",
              file=sys.stderr)
        return 1
    modes = {"simple": 0, "extended": 1, "prepared": 2}
    for key in sorted(cells, key=lambda k: (k[2], modes.get(k[0], 9), k[1])):
        mode, clients, flags = key
        tag = "mode=%s clients=%d%s" % (mode, clients, " " + flags if flags else "")
        for target, runs in cells[key].items():
            tps = [r[0] for r in runs if r[0] is not None]
            failed = sum(1 for r in runs if r[2])
            spread = sum(1 for r in runs if r[3])
            print("RESULT server_median target=%s %s tps=%s cpu_ms_per_10k=%s runs=%d "
                  "tps_min=%s tps_max=%s%s%s" % (target, tag, fmt(med(runs, 0)), fmt(med(runs, 1)),
                                                 len(runs) - failed, fmt(min(tps) if tps else None),
                                                 fmt(max(tps) if tps else None),
                                                 " failed_runs=%d" % failed if failed else "",
                                                 " spread_runs=%d" % spread if spread else ""))
        for name, a, b, field in RATIOS:
            if a not in cells[key] or b not in cells[key]:
                continue
            i = 0 if field == "tps" else 1
            x, y = med(cells[key][a], i), med(cells[key][b], i)
            if x is None or not y:
                continue
            print("RESULT server_ratio what=%s %s value=%.2f" % (name, tag, x / y))
    for target, v in rounds.items():
        print("RESULT server_median_roundtrip target=%s select1_us=%.1f rounds=%d" %
              (target, statistics.median(v), len(v)))
    if "weir" in rounds and "pgbouncer_1.25" in rounds:
        print("RESULT server_ratio what=select1_weir_vs_pgbouncer_1.25 value=%.2f" %
              (statistics.median(rounds["weir"]) / statistics.median(rounds["pgbouncer_1.25"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
