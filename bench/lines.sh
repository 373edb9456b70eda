#!/bin/bash
# lines.sh — what a transaction costs weir in user space, counted by
# valgrind's cachegrind instead of timed: on a small shared machine timings
# of a few per cent drown in the noise, counts do not.
#
#   build/bench/lines [--quick] [--clients "100 1000"] [--protocol "simple extended"] [--tx N]
#
# One weir worker (transaction pooling, pool 20, md5) runs under cachegrind
# with a 1 MB 16-way last-level cache (a server core's own L2: what a client
# whose memory is not there costs), and pgbench -S -j 2 runs through it
# twice, N and 3N transactions in all. The difference of the two runs'
# totals over 2N is one transaction's cost without the logins and the
# start: instructions (ir), data reads and writes (dr, dw), first-level
# data misses (d1mr, d1mw) and last-level ones (llmr, llmw). Work done by
# the clock (the 100 ms tick, the engine's housekeeper) counts with the
# transactions, and weighs more than in a real run: under valgrind weir is
# some 5 times slower. A throwaway PostgreSQL (tests/integration/pg_cluster.sh).
# WEIR_BIN_B=path: a second weir measured the same way, tagged bin=b (the
# first bin=a). Each figure is a line "RESULT server_lines key=value ...".
set -euo pipefail
here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
root=${WEIR_SOURCE_DIR:-$(cd "$here/.." && pwd)}
weir_bin=${WEIR_BIN:-$root/build/weir}
cluster="$root/tests/integration/pg_cluster.sh"

clients="100 1000"
protocols="simple extended"
tx=20000
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) clients="200"; protocols="simple"; tx=2000 ;;
    --clients) clients=$2; shift ;;
    --protocol) protocols=$2; shift ;;
    --tx) tx=$2; shift ;;
    *) echo "usage: $0 [--quick] [--clients LIST] [--protocol LIST] [--tx N]" >&2; exit 2 ;;
    esac
    shift
done
if ! command -v valgrind >/dev/null; then
    echo "RESULT server_lines skipped=1 reason=no-valgrind (apt-get install valgrind)"
    exit 0
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

. "$here/common.sh"
bench_start lines
weir_port=$((pg_port + 1))
bench_pg $(( $(echo "$clients" | tr " " "\n" | sort -n | tail -1) + 100 ))
{
    bench_ini
    printf 'listen_port = %s\nworkers = 1\n' "$weir_port"
} >"$dir/weir.ini"
[ "$(id -u)" = 0 ] && chown -R postgres "$dir"

# one_run BIN CLIENTS PROTOCOL TX OUT: cachegrind's totals of weir serving
# pgbench -t TX/CLIENTS per client, in OUT
one_run() {
    local bin=$1 c=$2 proto=$3 n=$4 out=$5 pid t
    setsid valgrind --tool=cachegrind --cache-sim=yes --LL=1048576,16,64 \
        --cachegrind-out-file="$out" "$bin" "$dir/weir.ini" >"$dir/weir.log" 2>&1 &
    pid=$!
    bench_track "$pid"
    for t in $(seq 200); do
        psql -h 127.0.0.1 -p "$weir_port" -U app -d appdb -Atc 'select 1' >/dev/null 2>&1 && break
        [ "$t" = 200 ] && { echo "benchmark: weir did not start under valgrind; its log:" >&2; tail -20 "$dir/weir.log" >&2; exit 1; }
        sleep 0.2
    done
    local per=$(( (n + c - 1) / c ))
    if ! pgbench -n -S -M "$proto" -c "$c" -j 2 -t "$per" -h 127.0.0.1 -p "$weir_port" -U app appdb \
        >"$dir/pgbench.log" 2>&1; then
        echo "benchmark: pgbench failed:" >&2; tail -5 "$dir/pgbench.log" >&2; exit 1
    fi
    kill -INT "$pid"
    wait "$pid" 2>/dev/null || true
    echo $((per * c))
}

# totals FILE: "Ir Dr Dw D1mr D1mw DLmr DLmw" from cachegrind's summary line
totals() {
    awk '/^events:/ { for (i = 2; i <= NF; i++) ev[i] = $i }
         /^summary:/ { for (i = 2; i <= NF; i++) v[ev[i]] = $i }
         END { print v["Ir"], v["Dr"], v["Dw"], v["D1mr"], v["D1mw"], v["DLmr"], v["DLmw"] }' "$1"
}

measure() {
    local tag=$1 bin=$2 c p n1 n3
    for c in $clients; do
        for p in $protocols; do
            n1=$(one_run "$bin" "$c" "$p" "$tx" "$dir/cg1.out")
            n3=$(one_run "$bin" "$c" "$p" $((3 * tx)) "$dir/cg3.out")
            paste <(totals "$dir/cg1.out" | tr ' ' '\n') <(totals "$dir/cg3.out" | tr ' ' '\n') |
                awk -v d=$((n3 - n1)) -v tag="$tag" -v c="$c" -v p="$p" '
                    { v[NR] = ($2 - $1) / d }
                    END { printf "RESULT server_lines bin=%s clients=%d protocol=%s ir=%.0f dr=%.0f dw=%.0f d1mr=%.1f d1mw=%.1f llmr=%.1f llmw=%.1f\n",
                          tag, c, p, v[1], v[2], v[3], v[4], v[5], v[6], v[7] }'
        done
    done
}

measure a "$weir_bin"
if [ -n "${WEIR_BIN_B:-}" ]; then
    measure b "$WEIR_BIN_B"
fi
