#!/bin/bash
# relay.sh — what io_uring could save a pooler: pgbench through a bare relay
# built on epoll and on io_uring, two ways (bench/relay.c), with weir (one worker) beside
# them, PostgreSQL behind all three.
#
#   build/bench/relay [--quick] [--clients "1 10 100"] [--secs 5] [--repeat 3]
#
# The relays pass bytes without reading them (pgbench logs in to PostgreSQL
# through them); weir pools (transaction mode, pool 20, md5 from an
# auth_file). Each is one thread. For each client count and protocol
# (simple, extended), every target in turn in each round: pgbench -S, tps
# and the target's CPU milliseconds per 10 000 transactions (utime+stime
# from /proc, io_uring's kernel workers included: they are threads of the
# process). Lines "RESULT relay ..." per run, then the medians and the
# ratios: relay_uring and relay_uring_ms (multishot reads into a ring of
# buffers) against relay_epoll (what io_uring saves the floor),
# weir_1worker against relay_epoll (what pooling costs above the floor).
set -euo pipefail
here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
root=${WEIR_SOURCE_DIR:-$(cd "$here/.." && pwd)}
weir_bin=${WEIR_BIN:-$root/build/weir}
relay_bin=${WEIR_RELAY:-$(dirname "$weir_bin")/bench/relayd}
cluster="$root/tests/integration/pg_cluster.sh"

clients="1 10 100"
secs=5
repeat=3
protocols="simple extended"
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) clients="10"; secs=2; repeat=1; protocols="simple" ;;
    --clients) clients=$2; shift ;;
    --secs) secs=$2; shift ;;
    --repeat) repeat=$2; shift ;;
    *) echo "usage: $0 [--quick] [--clients LIST] [--secs N] [--repeat N]" >&2; exit 2 ;;
    esac
    shift
done
[ -x "$relay_bin" ] || { echo "relay: $relay_bin not built (make bench)" >&2; exit 1; }

. "$here/common.sh"
bench_start relay
results=$dir/results.txt
result() {
    echo "$1"
    echo "$1" >>"$results"
}
# the medians over the rounds, then the ratios, from $results
summary() {
    [ -s "$results" ] || return 0
    awk '
    function median(list,   n, v, i, j, t) {
        n = split(list, v, " ")
        for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
        return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    }
    /^RESULT relay / {
        for (i = 3; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
        k = f["clients"] SUBSEP f["protocol"]
        cells[k] = 1
        tps[k, f["target"]] = tps[k, f["target"]] " " f["tps"]
        cpu[k, f["target"]] = cpu[k, f["target"]] " " f["cpu_ms_per_10k"]
        targets[f["target"]] = 1
    }
    END {
        for (k in cells) {
            split(k, c, SUBSEP)
            for (t in targets) if ((k, t) in tps) {
                mt[k, t] = median(tps[k, t]); mc[k, t] = median(cpu[k, t])
                printf "RESULT relay_median clients=%s protocol=%s target=%s tps=%.0f cpu_ms_per_10k=%.1f\n", c[1], c[2], t, mt[k, t], mc[k, t]
            }
            line = ""
            n = split("uring:relay_uring uring_ms:relay_uring_ms weir1:weir_1worker", against, " ")
            for (i = 1; i <= n; i++) {
                split(against[i], a, ":")
                if ((k, a[2]) in mc && mc[k, "relay_epoll"] > 0)
                    line = line sprintf(" %s_vs_epoll_cpu=%.2f %s_vs_epoll_tps=%.2f", a[1], mc[k, a[2]] / mc[k, "relay_epoll"], a[1], mt[k, a[2]] / mt[k, "relay_epoll"])
            }
            if (line != "") printf "RESULT relay_ratio clients=%s protocol=%s%s\n", c[1], c[2], line
        }
    }' "$results" | sort
}
trap 'summary; bench_cleanup' EXIT

max=$(( $(echo "$clients" | tr " " "\n" | sort -n | tail -1) * 2 + 50 ))
bench_pg "$max"
weir_port=$((pg_port + 1))

# weir, then the relays on the next ports; a relay that exits at once
# (no io_uring here) is left out with its reason
printf '%s\nlisten_port = %s\nworkers = 1\n' "$(bench_ini md5)" "$weir_port" >"$dir/weir1.ini"
[ "$(id -u)" = 0 ] && chown -R postgres "$dir"
start_weir "$dir/weir1.ini" "$dir/weir1.log"
targets="weir_1worker:$weir_port:$weir_started"
relays=""
port=$weir_port
for m in epoll uring uring_ms; do
    port=$((port + 1))
    setsid "$relay_bin" "$m" "$port" "$pg_port" 2>"$dir/relay_$m.log" &
    bench_track $!
    relays="$relays relay_$m:$port:$!"
done
sleep 0.3
for t in $relays; do
    IFS=: read -r tn _ pid <<<"$t"
    if kill -0 "$pid" 2>/dev/null; then
        targets="$targets $t"
    else
        echo "benchmark: $tn skipped: $(cat "$dir/$tn.log")" >&2
    fi
done
for t in $targets; do
    IFS=: read -r _ p _ <<<"$t"
    for _ in $(seq 100); do
        psql -h 127.0.0.1 -p "$p" -U app -d appdb -Atc 'select 1' >/dev/null 2>&1 && break
        sleep 0.1
    done
done

for round in $(seq "$repeat"); do
    for c in $clients; do
        for mode in $protocols; do
            for t in $targets; do
                IFS=: read -r tn tp pid <<<"$t"
                t0=$(cpu_ticks "$pid")
                out=$(pgbench -n -h 127.0.0.1 -p "$tp" -U app -S -M "$mode" -c "$c" -j "$([ "$c" -gt 1 ] && echo 2 || echo 1)" -T "$secs" appdb 2>&1) || true
                t1=$(cpu_ticks "$pid")
                n=$(echo "$out" | awk '/actually processed/{print $NF}' | cut -d/ -f1)
                if [ "${n:-0}" -le 0 ]; then
                    echo "benchmark: pgbench through $tn failed:" >&2
                    echo "$out" | tail -5 >&2
                    exit 1
                fi
                tps=$(echo "$out" | awk '/^tps/{printf "%.0f", $3}')
                cpu=$(awk -v d=$((t1 - t0)) -v hz="$hz" -v n="$n" 'BEGIN{printf "%.1f", d * 1000 / hz * 10000 / n}')
                result "RESULT relay target=$tn clients=$c protocol=$mode tps=$tps cpu_ms_per_10k=$cpu round=$round"
            done
        done
    done
done
