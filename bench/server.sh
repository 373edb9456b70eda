#!/bin/bash
# server.sh — weir vs PgBouncer vs PostgreSQL directly, with pgbench, in one run.
#
#   build/bench/server [--quick] [--clients "10 50 100 500 1000"] [--secs 15] [--repeat 1]
#                      [--prepared-clients "10 100 500"] [--prepared-only] [--logins-only]
#                      [--server-logins-only] [--rows-only] [--unix] [--names N]
#
# A throwaway PostgreSQL (tests/integration/pg_cluster.sh), weir (the default
# workers, workers = 1, and, as weir_2spread, workers = 2 with worker_pack =
# 0: two loops that both serve clients however light the load), Debian's
# PgBouncer (1.18) and, when they are at hand, PgBouncer 1.25.2 ($WEIR_PGBOUNCER, else
# ../shared/peers/pgbouncer-1.25.2/pgbouncer beside the checkout) and Odyssey
# ($WEIR_ODYSSEY, else ../shared/peers/odyssey-1.5.3/odyssey, 2 workers), each
# skipped with a line saying so when absent; the same settings for all: transaction pooling,
# default_pool_size 20, md5 auth from the same auth_file. With PgBouncer
# 1.25.2 also two of its processes on one port (so_reuseport, 10 server
# connections each, one session for both as weir's workers share one): what
# a PgBouncer user runs to use two cores, the 2-core form of devbench's four. For each client
# count and protocol (simple, extended): pgbench -S through weir, through
# PgBouncer and directly; tps, average latency and the pooler's CPU
# milliseconds per 10k transactions (utime+stime from /proc). Then pgbench -C
# (a new connection per transaction, md5) and the round trip of SELECT 1 on a
# held connection, both once per repeat, and a result of 1000 rows (pgbench
# -f: SELECT aid, bid, abalance of 1000 rows of pgbench_accounts, about 20
# KB a transaction, 10 clients, simple protocol; RESULT lines tagged
# rows=1000): what the rows of a result cost the pooler, once per repeat
# too (--rows-only: that alone, --repeat times); each pooler's RSS with 1000 idle
# clients. Last, named prepared statements in transaction mode: pgbench -S
# -M prepared through weir against weir's own -M extended figure, PgBouncer
# (1.18 passes statement names through: clients fail) and PostgreSQL
# directly. --logins-only: the pgbench -C figures alone, --repeat times.
# --server-logins-only: the poolers with server_lifetime = 0 (a server
# connection serves one transaction and is closed), pgbench -S at 10
# clients through each, --repeat times: what a new server connection costs
# the pooler (its login to PostgreSQL, SCRAM here), RESULT lines tagged
# server_lifetime=0.
# --unix: clients connect through the poolers' Unix sockets instead of TCP
# (PostgreSQL directly stays TCP; PgBouncer 1.25.2 x2 and Odyssey, which
# would each need a socket setup of their own, are left out), RESULT lines
# tagged socket=unix: a Unix socket is one socket however many workers
# serve it.
# --names N: N more users in the auth_file and N more databases in
# [databases], all before the ones the clients use (what a large setup
# has), RESULT lines tagged names=N: with --logins-only, what finding a
# user and a database among many costs a login.
# WEIR_BIN_B=path: a second weir binary measured beside the first (below).
# --auth scram-sha-256: weir's and PgBouncer's clients log in with SCRAM
# (the auth_file password is plain; Odyssey stays md5). --cpu perf: the
# pooler's CPU from perf stat's task-clock instead of /proc's ticks (finer
# for short runs; needs perf).
# Every figure is a line "RESULT server_pgbench key=value ..."; the last
# lines are the medians over --repeat and the ratios between targets
# (bench/server_summary.py, which also reads a saved run).
set -euo pipefail
here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
root=${WEIR_SOURCE_DIR:-$(cd "$here/.." && pwd)}
weir_bin=${WEIR_BIN:-$root/build/weir}
cluster="$root/tests/integration/pg_cluster.sh"

clients="10 50 100 500 1000"
secs=15
repeat=1
idle_clients=1000
quick=0
prepared_clients="10 100 500"
prepared_only=0
logins_only=0
rows_only=0
server_logins_only=0
unix=0
auth=md5
cpu_src=proc
names=0
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) quick=1; clients="20"; secs=1; idle_clients=200; prepared_clients="20" ;;
    --clients) clients=$2; shift ;;
    --secs) secs=$2; shift ;;
    --repeat) repeat=$2; shift ;;
    --prepared-clients) prepared_clients=$2; shift ;;
    --prepared-only) prepared_only=1 ;;
    --logins-only) logins_only=1 ;;
    --rows-only) rows_only=1 ;;
    --server-logins-only) server_logins_only=1 ;;
    --unix) unix=1 ;;
    --auth) auth=$2; shift ;;
    --cpu) cpu_src=$2; shift ;;
    --names) names=$2; shift ;;
    *) echo "usage: $0 [--quick] [--clients LIST] [--secs N] [--repeat N] [--prepared-clients LIST] [--prepared-only] [--logins-only] [--server-logins-only] [--rows-only] [--unix] [--auth md5|scram-sha-256] [--cpu proc|perf] [--names N]" >&2; exit 2 ;;
    esac
    shift
done
case "$auth" in md5 | scram-sha-256) ;; *) echo "--auth: md5 or scram-sha-256" >&2; exit 2 ;; esac
case "$cpu_src" in
proc) ;;
perf) command -v perf >/dev/null || { echo "--cpu perf: perf not installed (apt-get install linux-perf)" >&2; exit 1; } ;;
*) echo "--cpu: proc or perf" >&2; exit 2 ;;
esac
command -v pgbouncer >/dev/null || { echo "pgbouncer not installed (apt-get install pgbouncer)" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

. "$here/common.sh"
bench_start server
# Every RESULT line is kept too; at the end (whichever way the run ends)
# bench/server_summary.py prints the medians of the repeats and the ratios
# the benchmark is judged by, as RESULT server_median and server_ratio lines.
result() {
    echo "$1"
    echo "$1" >>"$dir/results.txt"
}
summary() {
    if [ -s "$dir/results.txt" ] && command -v python3 >/dev/null; then
        python3 "$here/server_summary.py" "$dir/results.txt" || true
    fi
}
trap 'summary; bench_cleanup' EXIT
weir_port=$((pg_port + 1))
pgb_port=$((pg_port + 2))
weir1_port=$((pg_port + 3))

max_conn=$(( $(echo "$clients $prepared_clients" | tr " " "\n" | sort -n | tail -1) + 200 )) # + 6 pools of 20, and room
bench_pg "$max_conn"
common=$(bench_ini "$auth")
result_tag=""
if [ "$names" -gt 0 ]; then
    seq "$names" | awk '{ printf "\"user%d\" \"md5%032d\"\n", $1, $1 }' >"$dir/names.txt"
    cat "$dir/users.txt" >>"$dir/names.txt"
    mv "$dir/names.txt" "$dir/users.txt"
    seq "$names" | awk -v p="$pg_port" '{ printf "db%d = host=127.0.0.1 port=%d dbname=appdb\n", $1, p }' \
        >"$dir/dbs.txt"
    common=$(printf '%s\n' "$common" | awk -v f="$dir/dbs.txt" \
        '{ print } NR == 1 { while ((getline l < f) > 0) print l }')
    result_tag="names=$names"
fi
if [ "$server_logins_only" = 1 ]; then
    common="$common
server_lifetime = 0"
    result_tag="${result_tag:+$result_tag }server_lifetime=0"
fi
# --unix: every weir and PgBouncer here has its socket in $dir/sock (the
# port tells them apart); clients of the poolers connect there.
client_host=127.0.0.1
if [ "$unix" = 1 ]; then
    mkdir -p "$dir/sock"
    chmod 777 "$dir/sock"
    common=${common/unix_socket_dir =/unix_socket_dir = $dir\/sock}
    result_tag="${result_tag:+$result_tag }socket=unix"
    client_host=$dir/sock
fi
start_poolers "$common" "$(command -v pgbouncer)"

# More targets: weir with 2 workers kept spread, PgBouncer 1.25.2 and Odyssey (optional).
weir2_port=$((pg_port + 4))
pgb125_port=$((pg_port + 5))
ody_port=$((pg_port + 6))
pgb125x2_port=$((pg_port + 7))
printf '%s\nlisten_port = %s\nworkers = 2\nworker_pack = 0\n' "$common" "$weir2_port" >"$dir/weir2.ini"
start_weir "$dir/weir2.ini" "$dir/weir2.log"
weir2_pid=$weir_started
targets="weir:$weir_port:$weir_pid weir_1worker:$weir1_port:$weir1_pid weir_2spread:$weir2_port:$weir2_pid pgbouncer:$pgb_port:$pgb_pid"
# WEIR_BIN_B: another weir binary beside this one (the same settings, the
# default workers and one worker), measured in turn with it in each round:
# a change's before and after in one run, targets weir_b and weir_b_1worker.
weirb_port=$((pg_port + 8))
weirb1_port=$((pg_port + 9))
weirb_pid=0
weirb1_pid=0
if [ -n "${WEIR_BIN_B:-}" ]; then
    printf '%s\nlisten_port = %s\n' "$common" "$weirb_port" >"$dir/weirb.ini"
    printf '%s\nlisten_port = %s\nworkers = 1\n' "$common" "$weirb1_port" >"$dir/weirb1.ini"
    weir_bin=$WEIR_BIN_B start_weir "$dir/weirb.ini" "$dir/weirb.log"
    weirb_pid=$weir_started
    weir_bin=$WEIR_BIN_B start_weir "$dir/weirb1.ini" "$dir/weirb1.log"
    weirb1_pid=$weir_started
    targets="$targets weir_b:$weirb_port:$weirb_pid weir_b_1worker:$weirb1_port:$weirb1_pid"
fi
as_user() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pgb125=${WEIR_PGBOUNCER:-$root/../shared/peers/pgbouncer-1.25.2/pgbouncer}
if [ -x "$pgb125" ] && [ "$unix" = 1 ]; then
    echo "benchmark: --unix: PgBouncer 1.25.2 x2 (two processes cannot share one Unix socket) left out" >&2
fi
if [ -x "$pgb125" ]; then
    printf '%s\nlisten_port = %s\nlogfile = %s/pgb125.log\npidfile = %s/pgb125.pid\n' \
        "$common" "$pgb125_port" "$dir" "$dir" >"$dir/pgb125.ini"
    [ "$(id -u)" = 0 ] && chown postgres "$dir/pgb125.ini"
    as_user sh -c "ulimit -n \$(ulimit -Hn); '$pgb125' -d -q '$dir/pgb125.ini'"
    for k in a b; do
        printf '%s\nlisten_port = %s\nso_reuseport = 1\nlogfile = %s/pgb125x2%s.log\npidfile = %s/pgb125x2%s.pid\n' \
            "${common/default_pool_size = 20/default_pool_size = 10}" "$pgb125x2_port" "$dir" $k "$dir" $k >"$dir/pgb125x2$k.ini"
        [ "$(id -u)" = 0 ] && chown postgres "$dir/pgb125x2$k.ini"
    done
    [ "$unix" = 1 ] ||
        as_user setsid sh -c "ulimit -n \$(ulimit -Hn); '$pgb125' -q '$dir/pgb125x2a.ini' & '$pgb125' -q '$dir/pgb125x2b.ini' & wait" >/dev/null 2>&1 &
else
    echo "benchmark: PgBouncer 1.25.2 not found at $pgb125 (set WEIR_PGBOUNCER): skipped" >&2
fi
ody=${WEIR_ODYSSEY:-$root/../shared/peers/odyssey-1.5.3/odyssey}
if [ "$unix" = 1 ]; then
    [ -x "$ody" ] && echo "benchmark: --unix: Odyssey (TCP only in its comparison config) left out" >&2
    ody=/nonexistent
fi
if [ -x "$ody" ]; then
    # the comparison config of ../shared/peers/odyssey-1.5.3 (2 workers), on our ports
    cat >"$dir/odyssey.conf" <<EOF
log_format "%p %t %l [%i %s] (%c) %m\\n"
pid_file "$dir/odyssey.pid"
daemonize yes
log_file "$dir/odyssey.log"
log_debug no
log_config no
log_session no
log_query no
log_stats no
workers 2
resolvers 1
readahead 8192
cache_coroutine 0
coroutine_stack_size 16
nodelay yes
keepalive 15
listen {
    host "127.0.0.1"
    port $ody_port
    backlog 128
    tls "disable"
}
storage "pg" {
    type "remote"
    host "127.0.0.1:$pg_port"
}
database "appdb" {
    user "app" {
        authentication "md5"
        password "s3cret"
        storage "pg"
        storage_user "app"
        storage_password "s3cret"
        pool "transaction"
        pool_size 20
        pool_timeout 0
        pool_discard no
        pool_cancel yes
        pool_rollback yes
    }
}
EOF
    [ "$(id -u)" = 0 ] && chown postgres "$dir/odyssey.conf"
    as_user sh -c "ulimit -n \$(ulimit -Hn); '$ody' '$dir/odyssey.conf'" >/dev/null 2>&1
else
    echo "benchmark: Odyssey not found at $ody (set WEIR_ODYSSEY): skipped" >&2
fi
for _ in $(seq 100); do
    ok=1
    psql -h 127.0.0.1 -p "$weir2_port" -U app -d appdb -Atc 'select 1' >/dev/null 2>&1 || ok=0
    if [ -x "$pgb125" ]; then
        psql -h 127.0.0.1 -p "$pgb125_port" -U app -d appdb -Atc 'select 1' >/dev/null 2>&1 || ok=0
        if [ "$unix" = 0 ]; then
            psql -h 127.0.0.1 -p "$pgb125x2_port" -U app -d appdb -Atc 'select 1' >/dev/null 2>&1 || ok=0
            [ -s "$dir/pgb125x2a.pid" ] && [ -s "$dir/pgb125x2b.pid" ] || ok=0
        fi
    fi
    if [ -x "$ody" ]; then
        psql -h 127.0.0.1 -p "$ody_port" -U app -d appdb -Atc 'select 1' >/dev/null 2>&1 || ok=0
    fi
    if [ "$weirb_pid" != 0 ]; then
        psql -h 127.0.0.1 -p "$weirb_port" -U app -d appdb -Atc 'select 1' >/dev/null 2>&1 || ok=0
        psql -h 127.0.0.1 -p "$weirb1_port" -U app -d appdb -Atc 'select 1' >/dev/null 2>&1 || ok=0
    fi
    [ "$ok" = 1 ] && break
    sleep 0.1
done
if [ -x "$pgb125" ]; then
    pgb125_pid=$(cat "$dir/pgb125.pid" 2>/dev/null || echo 0)
    [ "$pgb125_pid" != 0 ] && targets="$targets pgbouncer_1.25:$pgb125_port:$pgb125_pid"
    x2a=$(cat "$dir/pgb125x2a.pid" 2>/dev/null || echo 0)
    x2b=$(cat "$dir/pgb125x2b.pid" 2>/dev/null || echo 0)
    [ "$x2a" != 0 ] && [ "$x2b" != 0 ] && targets="$targets pgbouncer_1.25_x2:$pgb125x2_port:$x2a,$x2b"
fi
if [ -x "$ody" ]; then
    ody_pid=$(cat "$dir/odyssey.pid" 2>/dev/null || echo 0)
    [ "$ody_pid" != 0 ] && targets="$targets odyssey:$ody_port:$ody_pid"
fi


# One SELECT 1 round trip on a held connection, run once per repeat so that
# the figure has a median like the others. Each pooler's round trips fall
# in two groups here (about 60 and about 78 us: whether client, pooler and
# backend end up taking turns on one core), so a single run of $secs
# seconds lands in one or the other. The repeat is split into $secs rounds
# of one second, each target in turn: each round is a RESULT line.
printf 'SELECT 1;\n' >"$dir/one.sql"
roundtrip() {
    local t tn tp lat round rounds=${secs%.*}
    [ "${rounds:-0}" -lt 1 ] || [ "$quick" = 1 ] && rounds=1
    for round in $(seq "$rounds"); do
        for t in "direct:$pg_port:0" $targets; do
            IFS=: read -r tn tp _ <<<"$t"
            [ "$quick" = 1 ] && case "$tn" in weir | direct | pgbouncer) ;; *) continue ;; esac # --quick: under 20 s
            lat=$(pgbench -n -h "$([ "$tn" = direct ] && echo 127.0.0.1 || echo "$client_host")" -p "$tp" -U app -c 1 $([ "$quick" = 1 ] && echo "-t 3000" || echo "-T 1") -f "$dir/one.sql" appdb 2>&1 |
                awk '/latency average/{print $4}')
            result "RESULT server_roundtrip target=$tn select1_us=$(awk -v l="$lat" 'BEGIN{printf "%.1f", l * 1000}') round=$round${result_tag:+ $result_tag}"
        done
    done
}

# spreads TARGET: the lines in a packing weir's log that say its load
# spread over the workers (worker.c, packing); 0 for the others
spreads() {
    local f
    case "$1" in
    weir) f=$dir/weir.log ;;
    weir_b) f=$dir/weirb.log ;;
    *) echo 0 && return ;;
    esac
    grep -c 'workers: spreading' "$f" 2>/dev/null || true
}

# run_pgbench TARGET PORT PID CLIENTS MODE [extra pgbench args]
run_pgbench() {
    local target=$1 port=$2 pid=$3 c=$4 mode=$5
    shift 5
    local t0=0 t1=0 out pp=0 s0
    s0=$(spreads "$target")
    [ "$pid" != 0 ] && t0=$(cpu_ticks "$pid")
    if [ "$pid" != 0 ] && [ "$cpu_src" = perf ]; then
        perf stat -x, -e task-clock -p "$pid" -o "$dir/perf.txt" >/dev/null 2>&1 &
        pp=$!
    fi
    local host=$client_host
    [ "$target" = direct ] && host=127.0.0.1
    # the built-in select-only script, or $pg_script (rows below)
    out=$(pgbench -n -h "$host" -p "$port" -U app ${pg_script:+-f "$pg_script"} $([ -n "${pg_script:-}" ] || echo -S) \
        -M "$mode" -c "$c" -j 2 -T "$secs" "$@" appdb 2>&1) || true
    [ "$pid" != 0 ] && t1=$(cpu_ticks "$pid")
    if [ "$pp" != 0 ]; then
        kill -INT "$pp" 2>/dev/null || true
        wait "$pp" 2>/dev/null || true
    fi
    local n tps lat failed
    n=$(echo "$out" | awk '/actually processed/{print $NF}' | cut -d/ -f1)
    tps=$(echo "$out" | awk '/^tps/{printf "%.0f", $3}')
    lat=$(echo "$out" | awk '/latency average/{print $4}')
    failed=$(echo "$out" | awk '/failed transactions/{print $5}')
    local cpu="n/a"
    if [ "$pid" != 0 ] && [ "${n:-0}" -gt 0 ]; then
        if [ "$pp" != 0 ]; then # task-clock in ms, all the pooler's threads (and processes)
            cpu=$(awk -F, -v n="$n" '$3 ~ /^task-clock/ {printf "%.0f", $1 * 10000 / n}' "$dir/perf.txt")
        else
            cpu=$(awk -v d=$((t1 - t0)) -v hz="$hz" -v n="$n" 'BEGIN{printf "%.0f", d * 1000 / hz * 10000 / n}')
        fi
    fi
    local err
    err=$(echo "$out" | grep -m1 -o 'ERROR: .*' | tr ' ' '_' || true)
    local aborted spread
    aborted=$(echo "$out" | grep -c 'client [0-9]* .*aborted' || true)
    spread=$(($(spreads "$target") - s0)) # the default weir left one loop during this run
    [ "$spread" -gt 0 ] || spread=""
    result "RESULT server_pgbench target=$target mode=$mode clients=$c tps=${tps:-0} lat_ms=${lat:-n/a} cpu_ms_per_10k=${cpu:-n/a} cpu_src=$cpu_src failed=${failed:-n/a} aborted=$aborted secs=$secs${result_tag:+ $result_tag}${err:+ error=$err}${spread:+ spread=$spread} $*"
    last_tps=${tps:-0}
}

# rotate N WORD...: the words from the (N mod count)-th on, then the ones
# before it. Round r measures the poolers starting from the r-th, so that no
# pooler is always the first after a change of client count or protocol
# (each pooler's figure is a median over the rounds anyway).
rotate() {
    local n=$1
    shift
    n=$((n % $#))
    echo "${@:n+1}" "${@:1:n}"
}

# Named prepared statements in transaction mode (max_prepared_statements).
prepared() {
    for r in $(seq "$repeat"); do
        for c in $prepared_clients; do
            # weir's own -M extended figure beside it, tagged so that the
            # summary does not pool it with the extended runs above
            local tag=$result_tag
            result_tag="${tag:+$tag }for=prepared"
            run_pgbench weir "$weir_port" "$weir_pid" "$c" extended
            result_tag=$tag
            local ext=$last_tps
            run_pgbench weir "$weir_port" "$weir_pid" "$c" prepared
            local prep=$last_tps
            result "RESULT server_prepared clients=$c weir_extended_tps=$ext weir_prepared_tps=$prep ratio=$(awk -v a="$prep" -v b="$ext" 'BEGIN{printf "%.2f", b ? a / b : 0}')"
            run_pgbench pgbouncer "$pgb_port" "$pgb_pid" "$c" prepared
            if [ "$quick" != 1 ] && [ "${pgb125_pid:-0}" != 0 ]; then
                run_pgbench pgbouncer_1.25 "$pgb125_port" "$pgb125_pid" "$c" prepared
            fi
            [ "$c" -gt 200 ] && continue # as above: PostgreSQL takes 200 here
            [ "$quick" = 1 ] && continue
            run_pgbench direct "$pg_port" 0 "$c" prepared
        done
    done
}
if [ "$prepared_only" = 1 ]; then
    prepared
    exit 0
fi

# A new connection per transaction (pgbench -C), md5 (PgBouncer and weir;
# direct is SCRAM here): a login's cost. With --logins-only, PgBouncer
# 1.25.2 x2 too.
logins() {
    local full=$secs t tn tp tpid list
    [ "$quick" = 1 ] && secs=1
    list="weir:$weir_port:$weir_pid"
    [ "$quick" = 1 ] || list="$list weir_1worker:$weir1_port:$weir1_pid"
    if [ "$weirb_pid" != 0 ] && [ "$quick" != 1 ]; then
        list="$list weir_b:$weirb_port:$weirb_pid weir_b_1worker:$weirb1_port:$weirb1_pid"
    fi
    list="$list pgbouncer:$pgb_port:$pgb_pid"
    if [ "$quick" != 1 ] && [ "${pgb125_pid:-0}" != 0 ]; then
        list="$list pgbouncer_1.25:$pgb125_port:$pgb125_pid"
        if [ "$logins_only" = 1 ] && [ "${x2a:-0}" != 0 ] && [ "${x2b:-0}" != 0 ]; then
            list="$list pgbouncer_1.25_x2:$pgb125x2_port:$x2a,$x2b"
        fi
    fi
    # shellcheck disable=SC2086 # the list is words
    for t in $(rotate $((${r:-1} - 1)) $list); do # r: the round, as below
        IFS=: read -r tn tp tpid <<<"$t"
        run_pgbench "$tn" "$tp" "$tpid" 10 simple -C
    done
    secs=$full
}
if [ "$logins_only" = 1 ]; then
    for r in $(seq "$repeat"); do logins; done
    exit 0
fi
# A result of 1000 rows per transaction, 10 clients, every pooler in turn:
# what passing rows on costs (a pooler frames every message of a result).
printf 'SELECT aid, bid, abalance FROM pgbench_accounts WHERE aid <= 1000;\n' >"$dir/rows.sql"
chmod 644 "$dir/rows.sql"
rows() {
    local t tn tp tpid tag=$result_tag
    pg_script=$dir/rows.sql
    result_tag="${tag:+$tag }rows=1000"
    # shellcheck disable=SC2086 # the list is words
    for t in $(rotate $((${r:-1} - 1)) $targets); do
        IFS=: read -r tn tp tpid <<<"$t"
        run_pgbench "$tn" "$tp" "$tpid" 10 simple
    done
    result_tag=$tag
    pg_script=
}
if [ "$rows_only" = 1 ]; then
    for r in $(seq "$repeat"); do rows; done
    exit 0
fi
# A new server connection per transaction (server_lifetime = 0 above): the
# pooler's side of a server login, the poolers in turn in each round.
if [ "$server_logins_only" = 1 ]; then
    for r in $(seq "$repeat"); do
        for t in $targets; do
            IFS=: read -r tn tp tpid <<<"$t"
            case "$tn" in odyssey | weir_2spread) continue ;; esac # Odyssey keeps its own lifetime
            run_pgbench "$tn" "$tp" "$tpid" 10 simple
        done
    done
    exit 0
fi

for r in $(seq "$repeat"); do
    for c in $clients; do
        for mode in simple extended; do
            # --quick: the simple protocol only, and PostgreSQL directly at the smallest
            # count only (SCRAM logins of many clients would eat a short run)
            [ "$quick" = 1 ] && [ "$mode" = extended ] && continue
            # shellcheck disable=SC2086 # the list is words
            for t in $(rotate $((r - 1)) $targets); do
                IFS=: read -r tn tp tpid <<<"$t"
                # --quick: weir and PgBouncer only (under 20 s)
                [ "$quick" = 1 ] && case "$tn" in weir | pgbouncer) ;; *) continue ;; esac
                run_pgbench "$tn" "$tp" "$tpid" "$c" "$mode"
            done
            [ "$quick" = 1 ] && [ "$c" != "${clients%% *}" ] && continue
            # PostgreSQL here takes 200 connections: more fail, and the flood of
            # refused logins disturbs the next figure, so direct stops at 200.
            [ "$c" -gt 200 ] && continue
            run_pgbench direct "$pg_port" 0 "$c" "$mode"
        done
    done
    logins
    [ "$quick" = 1 ] || rows
    roundtrip
done

# RSS with idle clients: they log in and sleep
printf '\\sleep %s s\n' "$([ "$quick" = 1 ] && echo 1 || echo 3)" >"$dir/idle.sql"
for t in "weir $weir_port $weir_pid" "pgbouncer $pgb_port $pgb_pid"; do
    set -- $t
    pgbench -n -h "$client_host" -p "$2" -U app -c "$idle_clients" -j 2 -t 1 -f "$dir/idle.sql" appdb >/dev/null 2>&1 &
    bp=$!
    sleep $([ "$quick" = 1 ] && echo 0.7 || echo 2.5)
    rss=$(awk '/VmRSS/{print $2}' "/proc/$3/status")
    wait $bp || true
    result "RESULT server_rss target=$1 idle_clients=$idle_clients rss_kb=$rss"
done

prepared
