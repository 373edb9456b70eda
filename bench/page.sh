#!/bin/bash
# page.sh — what the live page costs: weir's CPU under pgbench with the page
# closed, then open (the requests the page makes every 2 s: /metrics, /ready,
# /v1/pools, /v1/show/servers), in alternating rounds.
#
#   build/bench/page [--quick] [--secs 10] [--rounds 3] [--pages 1]
#
# --pages N polls as N open pages would. Figures, each a line
# "RESULT page pages=N tps=... cpu_ms_per_10000=..." (N = 0: closed), then
# "RESULT page cost_pct=..." (CPU per transaction, open against closed).
set -euo pipefail
here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
root=${WEIR_SOURCE_DIR:-$(cd "$here/.." && pwd)}
weir_bin=${WEIR_BIN:-$root/build/weir}
cluster="$root/tests/integration/pg_cluster.sh"
secs=10
rounds=3
pages=1
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) secs=4; rounds=1 ;;
    --secs) secs=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --pages) pages=$2; shift ;;
    *) echo "usage: $0 [--quick] [--secs N] [--rounds N] [--pages N]" >&2; exit 2 ;;
    esac
    shift
done
command -v curl >/dev/null || { echo "curl not installed (apt-get install curl)" >&2; exit 1; }

. "$here/common.sh"
bench_start page
weir_port=$((pg_port + 1))
http_port=$((pg_port + 2))
bench_pg
printf '"ops" "opspw"\n' >>"$dir/users.txt"
{
    bench_ini
    printf '%s\n' "listen_port = $weir_port" "stats_users = ops" "http_listen_addr = 127.0.0.1" \
        "http_listen_port = $http_port"
} >"$dir/weir.ini"
start_weir "$dir/weir.ini" "$dir/weir.log"
weir_pid=$weir_started
for _ in $(seq 100); do port_busy "$http_port" && break; sleep 0.1; done

poller() { # one open page: its four requests every 2 s
    while :; do
        for u in metrics ready v1/pools v1/show/servers; do
            curl -s -o /dev/null -u ops:opspw "http://127.0.0.1:$http_port/$u" || true
        done
        sleep 2
    done
}

round() { # $1: pages open
    local n=$1 pids="" t0 t1 out tx
    for _ in $(seq "$n"); do
        poller &
        pids="$pids $!"
    done
    t0=$(cpu_ticks "$weir_pid")
    out=$(pgbench -n -S -c 10 -j 2 -T "$secs" -h 127.0.0.1 -p "$weir_port" -U app appdb 2>&1)
    t1=$(cpu_ticks "$weir_pid")
    for p in $pids; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done
    tx=$(echo "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')
    [ -n "$tx" ] && [ "$tx" -gt 0 ] || { echo "$out" >&2; pooler_logs >&2; exit 1; }
    echo "RESULT page pages=$n tps=$((tx / secs)) cpu_ms_per_10000=$(((t1 - t0) * 1000 * 10000 / hz / tx))"
}

closed=() open=()
for _ in $(seq "$rounds"); do
    line=$(round 0); echo "$line"; closed+=("${line##*cpu_ms_per_10000=}")
    line=$(round "$pages"); echo "$line"; open+=("${line##*cpu_ms_per_10000=}")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
c=$(median "${closed[@]}") o=$(median "${open[@]}")
echo "RESULT page pages=$pages closed_cpu_ms_per_10000=$c open_cpu_ms_per_10000=$o cost_pct=$(((o - c) * 100 / (c > 0 ? c : 1)))"
