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
# twice, N and 3N transactions in all, each time after 5 transactions per
# client that fill the pool. The difference of the two runs'
# totals over 2N is one transaction's cost without the logins and the
# start: instructions (ir), data reads and writes (dr, dw), first-level
# data misses (d1mr, d1mw) and last-level ones (llmr, llmw). Work done by
# the clock (the 100 ms tick, the engine's housekeeper) counts with the
# transactions, and weighs more than in a real run: under valgrind weir is
# some 5 times slower. A throwaway PostgreSQL (tests/integration/pg_cluster.sh).
# WEIR_BIN_B=path: a second weir measured the same way, tagged bin=b (the
# first bin=a). PgBouncer 1.25.2 ($WEIR_PGBOUNCER, else
# ../shared/peers/pgbouncer-1.25.2/pgbouncer beside the checkout; skipped
# when neither is there) is measured the same way too, tagged
# bin=pgbouncer_1.25, and each of weir's figures is then also given as a
# ratio to its (RESULT server_lines_ratio); not with --quick (see below).
# servers=A,B: the server connections open at the end of the two runs,
# which must be alike (a warning says when they are not). Each figure is
# a line "RESULT server_lines key=value ...". WEIR_LINES_KEEP=DIR: each
# run's cachegrind file is copied there (TAG-CLIENTS-PROTOCOL-1.out and -3.out)
# for `cg_diff` and `cg_annotate`: which functions the difference is in.
set -euo pipefail
here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
root=${WEIR_SOURCE_DIR:-$(cd "$here/.." && pwd)}
weir_bin=${WEIR_BIN:-$root/build/weir}
cluster="$root/tests/integration/pg_cluster.sh"

clients="100 1000"
protocols="simple extended"
quick=0
tx=20000
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) clients="100"; protocols="simple"; tx=1000; quick=1 ;;
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
{
    bench_ini
    printf 'listen_port = %s\n' "$weir_port"
} >"$dir/pgb.ini"
[ "$(id -u)" = 0 ] && chown -R postgres "$dir"
pgb125=${WEIR_PGBOUNCER:-$root/../shared/peers/pgbouncer-1.25.2/pgbouncer}

# one_run BIN CLIENTS PROTOCOL TX OUT: cachegrind's totals of weir (or, when
# BIN is $pgb125, PgBouncer, which will not run as root) serving pgbench -t
# TX/CLIENTS per client, in OUT
one_run() {
    local bin=$1 c=$2 proto=$3 n=$4 out=$5 pid t ini=$dir/weir.ini as=()
    if [ "$bin" = "$pgb125" ]; then
        ini=$dir/pgb.ini
        [ "$(id -u)" = 0 ] && as=(setpriv --reuid=postgres --regid=postgres --init-groups)
    fi
    rm -f "$out"
    setsid "${as[@]}" valgrind --tool=cachegrind --cache-sim=yes --LL=1048576,16,64 \
        --cachegrind-out-file="$out" "$bin" "$ini" >"$dir/pooler.log" 2>&1 &
    pid=$!
    bench_track "$pid"
    for t in $(seq 200); do
        psql -h 127.0.0.1 -p "$weir_port" -U app -d appdb -Atc 'select 1' >/dev/null 2>&1 && break
        [ "$t" = 200 ] && { echo "benchmark: $bin did not start under valgrind; its log:" >&2; tail -20 "$dir/pooler.log" >&2; exit 1; }
        sleep 0.2
    done
    # first the same few transactions per client in both runs: the pool
    # opens all its server connections (PgBouncer opens them as clients
    # queue, each a SCRAM login; the longer run would otherwise open more)
    local per=$(( (n + c - 1) / c ))
    for t in 5 "$per"; do
        if ! pgbench -n -S -M "$proto" -c "$c" -j 2 -t "$t" -h 127.0.0.1 -p "$weir_port" -U app appdb \
            >"$dir/pgbench.log" 2>&1; then
            echo "benchmark: pgbench failed:" >&2; tail -5 "$dir/pgbench.log" >&2; exit 1
        fi
    done
    # the server connections the pooler opened (its only ones to the
    # cluster): the two runs of a cell must end with as many (measure)
    psql -h 127.0.0.1 -p "$pg_port" -U app -d appdb -Atc \
        "select count(*) from pg_stat_activity where usename = 'app' and pid <> pg_backend_pid()" \
        >"$out.servers" 2>/dev/null || echo "?" >"$out.servers"
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
            if [ -n "${WEIR_LINES_KEEP:-}" ]; then
                mkdir -p "$WEIR_LINES_KEEP"
                cp "$dir/cg1.out" "$WEIR_LINES_KEEP/$tag-$c-$p-1.out"
                cp "$dir/cg3.out" "$WEIR_LINES_KEEP/$tag-$c-$p-3.out"
            fi
            local s1 s3
            s1=$(cat "$dir/cg1.out.servers") s3=$(cat "$dir/cg3.out.servers")
            # a server login (SCRAM, some 10^7 instructions under valgrind)
            # more in one run than the other is not a transaction's cost
            [ "$s1" = "$s3" ] || echo "benchmark: bin=$tag clients=$c protocol=$p: the runs ended with $s1 and $s3 server connections; this cell counts the logins' difference too" >&2
            paste <(totals "$dir/cg1.out" | tr ' ' '\n') <(totals "$dir/cg3.out" | tr ' ' '\n') |
                awk -v d=$((n3 - n1)) -v tag="$tag" -v c="$c" -v p="$p" -v srv="$s1,$s3" '
                    { v[NR] = ($2 - $1) / d }
                    END { printf "RESULT server_lines bin=%s clients=%d protocol=%s ir=%.0f dr=%.0f dw=%.0f d1mr=%.1f d1mw=%.1f llmr=%.1f llmw=%.1f servers=%s\n",
                          tag, c, p, v[1], v[2], v[3], v[4], v[5], v[6], v[7], srv }'
        done
    done
}

measure a "$weir_bin" | tee "$dir/results"
if [ -n "${WEIR_BIN_B:-}" ]; then
    measure b "$WEIR_BIN_B"
fi
if [ "$quick" = 1 ]; then
    # PgBouncer opens its server connections one at a time as clients
    # queue, slowly under valgrind: --quick's few transactions do not fill
    # its pool alike in both runs (the counts came out 4 800 to 128 000)
    echo "benchmark: --quick: PgBouncer left out (its pool fills at its own pace; the full run measures it)" >&2
elif [ -x "$pgb125" ]; then
    measure pgbouncer_1.25 "$pgb125" | tee -a "$dir/results"
    # weir's figures over PgBouncer's, cell by cell
    awk '{ for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
           k = v["clients"] " " v["protocol"]
           for (f in v) if (f != "bin" && f != "clients" && f != "protocol") x[v["bin"], k, f] = v[f]
           keys[k] = 1 }
         END { for (k in keys) {
                 split(k, cp, " ")
                 line = ""
                 n = split("ir dr dw d1mr d1mw llmr llmw", fs, " ")
                 for (i = 1; i <= n; i++) {
                     b = x["pgbouncer_1.25", k, fs[i]]; a = x["a", k, fs[i]]
                     line = line sprintf(" %s=%s", fs[i], b > 0 ? sprintf("%.2f", a / b) : "na")
                 }
                 printf "RESULT server_lines_ratio weir_vs=pgbouncer_1.25 clients=%d protocol=%s%s\n", cp[1], cp[2], line
               } }' "$dir/results" | sort -k4,4V -k5,5
else
    echo "benchmark: PgBouncer 1.25.2 not found at $pgb125 (set WEIR_PGBOUNCER): skipped" >&2
fi
