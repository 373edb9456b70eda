#!/bin/bash
# tls.sh — TLS towards clients: weir vs PgBouncer, side by side, with pgbench.
#
#   build/bench/tls [--quick] [--clients "10 100 1000"] [--secs 10]
#
# One throwaway PostgreSQL; weir and PgBouncer with the same settings
# (transaction pooling, md5 from one auth_file, client_tls_sslmode = require
# with the same key and certificate, made here with openssl); weir also with
# workers = 1, as PgBouncer runs one thread. PgBouncer is
# $PGBOUNCER_BIN, else ../shared/peers/pgbouncer-1.25.2/pgbouncer when it is
# there, else Debian's. Figures, each a line "RESULT tls_pgbench ...":
#   kind=connect: pgbench -C -S, a new TLS connection per transaction
#     (handshakes per second) and the pooler's CPU ms per 1000 of them;
#   kind=steady: pgbench -S over TLS connections held, tps and the pooler's
#     CPU ms per 10 000 transactions.
set -euo pipefail
here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
root=${WEIR_SOURCE_DIR:-$(cd "$here/.." && pwd)}
weir_bin=${WEIR_BIN:-$root/build/weir}
cluster="$root/tests/integration/pg_cluster.sh"
clients="10 100 1000"
secs=10
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) clients="10"; secs=2 ;;
    --clients) clients=$2; shift ;;
    --secs) secs=$2; shift ;;
    *) echo "usage: $0 [--quick] [--clients LIST] [--secs N]" >&2; exit 2 ;;
    esac
    shift
done
pgb=${PGBOUNCER_BIN:-}
[ -z "$pgb" ] && [ -x "$root/../shared/peers/pgbouncer-1.25.2/pgbouncer" ] &&
    pgb="$root/../shared/peers/pgbouncer-1.25.2/pgbouncer"
[ -z "$pgb" ] && pgb=$(command -v pgbouncer || true)
[ -n "$pgb" ] || { echo "pgbouncer not installed (apt-get install pgbouncer)" >&2; exit 1; }
pgb=$(readlink -f "$pgb")
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

. "$here/common.sh"
bench_start tls
weir_port=$((pg_port + 1))
pgb_port=$((pg_port + 2))
weir1_port=$((pg_port + 3))

max=$(echo "$clients" | tr " " "\n" | sort -n | tail -1)
bench_pg $((max + 100))
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$dir/server.key" -out "$dir/server.crt" >/dev/null 2>&1
chmod 600 "$dir/server.key"
common="$(bench_ini)
client_tls_sslmode = require
client_tls_key_file = $dir/server.key
client_tls_cert_file = $dir/server.crt
server_tls_sslmode = disable"
# a copy in $dir, which the postgres user (PgBouncer's, when root) can read
cp "$pgb" "$dir/pgbouncer"
export PGSSLMODE=require
start_poolers "$common" "$dir/pgbouncer"

# run TARGET PORT PID KIND CLIENTS [pgbench args]
run() {
    local target=$1 port=$2 pid=$3 kind=$4 c=$5
    shift 5
    local t0 t1 out n tps per unit
    t0=$(cpu_ticks "$pid")
    out=$(pgbench -n -h 127.0.0.1 -p "$port" -U app -S -c "$c" -j 2 -T "$secs" "$@" appdb 2>&1) || true
    t1=$(cpu_ticks "$pid")
    n=$(echo "$out" | awk '/actually processed/{print $NF}' | cut -d/ -f1)
    tps=$(echo "$out" | awk '/^tps/{printf "%.0f", $3}')
    unit=10000
    [ "$kind" = connect ] && unit=1000
    per=n/a
    [ "${n:-0}" -gt 0 ] && per=$(awk -v d=$((t1 - t0)) -v hz="$hz" -v n="$n" -v u="$unit" \
        'BEGIN{printf "%.0f", d * 1000 / hz * u / n}')
    local failed
    failed=$(echo "$out" | awk '/failed transactions/{print $5}')
    echo "RESULT tls_pgbench target=$target kind=$kind clients=$c tps=${tps:-0} cpu_ms_per_${unit}=$per failed=${failed:-n/a} secs=$secs"
}

for c in $clients; do
    cc=$c
    [ "$cc" -gt 50 ] && cc=50 # new connections per transaction: the handshake rate, not the backlog
    run weir "$weir_port" "$weir_pid" connect "$cc" -C
    run weir_1worker "$weir1_port" "$weir1_pid" connect "$cc" -C
    run pgbouncer "$pgb_port" "$pgb_pid" connect "$cc" -C
    run weir "$weir_port" "$weir_pid" steady "$c"
    run weir_1worker "$weir1_port" "$weir1_pid" steady "$c"
    run pgbouncer "$pgb_port" "$pgb_pid" steady "$c"
done
echo "RESULT tls_pgbench pgbouncer=$("$pgb" --version 2>/dev/null | head -1 | tr ' ' '_')"
