#!/bin/bash
# http.sh — weir's HTTP door vs its PostgreSQL door, and SQLite over HTTP, in one run.
#
#   build/bench/http [--quick] [--conns "10 100 500"] [--secs 10] [--repeat 1]
#
# A throwaway PostgreSQL (tests/integration/pg_cluster.sh) behind one weir
# (transaction pooling, default_pool_size 20, md5 auth) that also serves an
# SQLite database. For each connection count: wrk (Debian's, 2 threads) posts
# `SELECT 1` and a 100-row query to POST /v1/databases/appdb/sql over
# keep-alive connections, and pgbench sends the same statements through the
# PostgreSQL door with as many clients; the figure is requests/s over tps.
# Then a point read (`SELECT ... WHERE id = ?` with a parameter) on the SQLite
# database over HTTP. Every figure is a line "RESULT http key=value ...";
# with --repeat N each is the median of N runs.
set -euo pipefail
here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
root=${WEIR_SOURCE_DIR:-$(cd "$here/.." && pwd)}
weir_bin=${WEIR_BIN:-$root/build/weir}
cluster="$root/tests/integration/pg_cluster.sh"

conns="10 100 500"
secs=10
repeat=1
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) conns="10 100"; secs=1 ;;
    --conns) conns=$2; shift ;;
    --secs) secs=$2; shift ;;
    --repeat) repeat=$2; shift ;;
    *) echo "usage: $0 [--quick] [--conns LIST] [--secs N] [--repeat N]" >&2; exit 2 ;;
    esac
    shift
done
command -v wrk >/dev/null || { echo "wrk not installed (apt-get install wrk)" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

. "$here/common.sh"
bench_start http
weir_port=$((pg_port + 1))
http_port=$((pg_port + 2))

max_conn=$(( $(echo "$conns" | tr " " "\n" | sort -n | tail -1) + 50 ))
PG_MAX_CONNECTIONS=$max_conn sh "$cluster" start "$dir/pg" "$pg_port" >/dev/null
export PGPASSWORD=s3cret
psql -q -h 127.0.0.1 -p "$pg_port" -U app appdb -c \
    "create table hundred as select g as id, 'item ' || g as name, g * 1.5 as price, now() as added
     from generate_series(1, 100) g" >/dev/null

sqlite3_init="$dir/lite.sql"
{
    echo "create table items (id integer primary key, name text not null, price real not null);"
    echo "with recursive n(i) as (select 1 union all select i + 1 from n where i < 10000)"
    echo "insert into items select i, 'item ' || i, i * 1.5 from n;"
} >"$sqlite3_init"
printf '"app" "s3cret"\n' >"$dir/users.txt"
cat >"$dir/weir.ini" <<EOF
[databases]
appdb = host=127.0.0.1 port=$pg_port dbname=appdb
lite = sqlite://$dir/lite.db create=1 init=$sqlite3_init
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $weir_port
unix_socket_dir =
auth_type = md5
auth_file = $dir/users.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 5000
log_connections = 0
log_disconnections = 0
http_listen_port = $http_port
http_max_inflight_per_user = 0
EOF
[ "$(id -u)" = 0 ] && chown -R postgres "$dir"
start_weir "$dir/weir.ini" "$dir/weir.log"
weir_pid=$weir_started
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$http_port/health" && break
    sleep 0.1
done
kill -0 "$weir_pid" 2>/dev/null || { echo "benchmark: weir did not start; its log:" >&2; pooler_logs >&2; exit 1; }

auth=$(printf 'app:s3cret' | base64)
lua() { # lua NAME BODY
    cat >"$dir/$1.lua" <<EOF
wrk.method = "POST"
wrk.body = '$2'
wrk.headers["Authorization"] = "Basic $auth"
wrk.headers["Content-Type"] = "application/json"
EOF
}
lua select1 '{"query":"SELECT 1"}'
lua rows100 '{"query":"SELECT id, name, price, added FROM hundred"}'
lua point '{"query":"SELECT id, name, price FROM items WHERE id = ?","params":[4242]}'
echo "SELECT 1;" >"$dir/select1.sql"
echo "SELECT id, name, price, added FROM hundred;" >"$dir/rows100.sql"

# Check each body gives 200 once, so a benchmark never counts errors.
for q in select1 rows100; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -u app:s3cret "http://127.0.0.1:$http_port/v1/databases/appdb/sql" \
        -d "$(sed -n "s/^wrk.body = '\(.*\)'$/\1/p" "$dir/$q.lua")")
    [ "$code" = 200 ] || { echo "HTTP $q answered $code" >&2; exit 1; }
done

wrk_rps() { # wrk_rps LUA PATH CONNS -> requests/s (non-2xx counted as failure)
    local out threads=2
    [ "$3" -lt 2 ] && threads=1
    out=$(wrk -t"$threads" -c"$3" -d"${secs}s" -s "$dir/$1.lua" "http://127.0.0.1:$http_port$2" 2>&1)
    if echo "$out" | grep -q "Non-2xx"; then
        echo "wrk saw errors: $out" >&2
        echo 0
        return
    fi
    echo "$out" | awk '/Requests\/sec/{printf "%.0f", $2}'
}
pg_tps() { # pg_tps SQLFILE CLIENTS
    pgbench -n -h 127.0.0.1 -p "$weir_port" -U app -c "$2" -j 2 -T "$secs" -f "$dir/$1.sql" appdb 2>&1 |
        awk '/^tps/{printf "%.0f", $3}'
}
median() { tr " " "\n" | grep -v '^$' | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

for q in select1 rows100; do
    for c in $conns; do
        hs="" ps=""
        for _ in $(seq "$repeat"); do
            hs="$hs $(wrk_rps "$q" /v1/databases/appdb/sql "$c")"
            ps="$ps $(pg_tps "$q" "$c")"
        done
        h=$(echo "$hs" | median)
        p=$(echo "$ps" | median)
        ratio=$(awk -v h="$h" -v p="$p" 'BEGIN{printf "%.2f", (p > 0 ? h / p : 0)}')
        echo "RESULT http query=$q conns=$c http_rps=$h pg_door_tps=$p ratio=$ratio runs=$repeat"
    done
done
code=$(curl -s -o /dev/null -w '%{http_code}' -u app:s3cret "http://127.0.0.1:$http_port/v1/databases/lite/sql" \
    -d '{"query":"SELECT id, name, price FROM items WHERE id = ?","params":[4242]}')
[ "$code" = 200 ] || { echo "SQLite point read answered $code" >&2; exit 1; }
for c in $conns; do
    rs=""
    for _ in $(seq "$repeat"); do rs="$rs $(wrk_rps point /v1/databases/lite/sql "$c")"; done
    echo "RESULT http query=sqlite_point conns=$c http_rps=$(echo "$rs" | median) runs=$repeat"
done
