# common.sh — what the server benchmarks share (sourced by server.sh, http.sh,
# tls.sh and relay.sh): a temporary directory and a port for a throwaway PostgreSQL
# (the next ports are left for the poolers), the cleanup of what they start,
# and a process's CPU time.

# bench_start NAME: $dir, $pg_port, and a trap that stops what bench_track
# was given, a PgBouncer whose pidfile is $dir/pgb.pid, and the cluster.
bench_start() {
    dir=$(mktemp -d "/tmp/weir-bench-$1.XXXXXX")
    chmod 755 "$dir"
    # ten ports in a row that nothing uses: the cluster's and the poolers',
    # below the kernel's range for outgoing connections (whose TIME_WAIT
    # leftovers would keep a server from binding)
    local try p busy lo=32768
    read -r p _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null && [ "$p" -gt 21000 ] && lo=$p
    for try in $(seq 50); do
        pg_port=$((20000 + RANDOM % (lo - 20010)))
        busy=0
        for p in $(seq "$pg_port" $((pg_port + 9))); do
            port_busy "$p" && busy=1 && break
        done
        [ "$busy" = 0 ] && break
    done
    bench_pids=""
    trap bench_cleanup EXIT
}
port_busy() {
    if command -v ss >/dev/null 2>&1; then
        [ -n "$(ss -Htan "sport = :$1" 2>/dev/null)" ]
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}
bench_track() { bench_pids="$bench_pids $1"; }
bench_cleanup() {
    for p in $bench_pids; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    local f
    for f in "$dir"/pgb*.pid "$dir/odyssey.pid"; do
        [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
    done
    sleep 0.3
    sh "$cluster" destroy "$dir/pg" >/dev/null 2>&1 || true
    rm -rf "$dir"
}
# utime + stime of a process, in clock ticks ($hz a second), or summed over
# several ("PID,PID": a pooler of several processes); a pooler that has gone
# away ends the benchmark with its log, not a bare awk error
cpu_ticks() {
    local p sum=0
    for p in ${1//,/ }; do
        if [ ! -r "/proc/$p/stat" ]; then
            echo "benchmark: the pooler with pid $p has exited; its log:" >&2
            pooler_logs >&2
            exit 1
        fi
        sum=$((sum + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$sum"
}
pooler_logs() {
    local f
    for f in "$dir"/weir*.log "$dir/pgb.log"; do
        [ -f "$f" ] && echo "== $f" && tail -20 "$f"
    done
    return 0
}
hz=$(getconf CLK_TCK)

# bench_pg [MAX_CONNECTIONS]: the throwaway PostgreSQL on $pg_port with
# pgbench's tables (scale 1), PGPASSWORD for app, and $dir/users.txt, the
# poolers' auth_file, with app's password
bench_pg() {
    PG_MAX_CONNECTIONS=${1:-200} sh "$cluster" start "$dir/pg" "$pg_port" >/dev/null
    export PGPASSWORD=s3cret
    pgbench -i -q -s 1 -h 127.0.0.1 -p "$pg_port" -U app appdb >/dev/null 2>&1
    printf '"app" "s3cret"\n' >"$dir/users.txt"
}

# bench_ini [AUTH]: what every benchmark's poolers share (the database appdb,
# AUTH (md5) from $dir/users.txt, transaction pooling, pool 20, room for
# 5000 clients, no log line per connection); each adds its own after it
bench_ini() {
    printf '%s\n' "[databases]" "appdb = host=127.0.0.1 port=$pg_port dbname=appdb" "[pgbouncer]" \
        "listen_addr = 127.0.0.1" "unix_socket_dir =" "auth_type = ${1:-md5}" \
        "auth_file = $dir/users.txt" "pool_mode = transaction" "default_pool_size = 20" \
        "max_client_conn = 5000" "log_connections = 0" "log_disconnections = 0"
}

# start_weir INI LOG: weir in a session of its own, as PgBouncer (-d) and
# Odyssey (daemonize yes) run here. With the kernel's autogroup scheduling
# (on by default) every session is one group with one share of the CPU: weir
# started from this script's session would share a single share with
# pgbench, while each daemon has one to itself. Sets weir_started.
start_weir() {
    setsid "$weir_bin" "$1" >"$2" 2>&1 &
    weir_started=$!
    bench_track "$weir_started"
}

# start_poolers COMMON PGBOUNCER: weir ($weir_port, and $weir1_port with one
# worker: PgBouncer has one thread) and PgBouncer ($pgb_port) from the same
# pgbouncer.ini text COMMON; sets weir_pid, weir1_pid, pgb_pid.
start_poolers() {
    local common=$1 pgb=$2
    printf '%s\nlisten_port = %s\n' "$common" "$weir_port" >"$dir/weir.ini"
    printf '%s\nlisten_port = %s\nworkers = 1\n' "$common" "$weir1_port" >"$dir/weir1.ini"
    printf '%s\nlisten_port = %s\nlogfile = %s/pgb.log\npidfile = %s/pgb.pid\n' \
        "$common" "$pgb_port" "$dir" "$dir" >"$dir/pgb.ini"
    [ "$(id -u)" = 0 ] && chown -R postgres "$dir"
    start_weir "$dir/weir.ini" "$dir/weir.log"
    weir_pid=$weir_started
    start_weir "$dir/weir1.ini" "$dir/weir1.log"
    weir1_pid=$weir_started
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- sh -c "ulimit -n \$(ulimit -Hn); '$pgb' -d -q '$dir/pgb.ini'"
    else
        "$pgb" -d -q "$dir/pgb.ini"
    fi
    for _ in $(seq 100); do
        [ -f "$dir/pgb.pid" ] &&
            psql -h 127.0.0.1 -p "$weir_port" -U app -d appdb -Atc 'select 1' >/dev/null 2>&1 &&
            psql -h 127.0.0.1 -p "$weir1_port" -U app -d appdb -Atc 'select 1' >/dev/null 2>&1 &&
            psql -h 127.0.0.1 -p "$pgb_port" -U app -d appdb -Atc 'select 1' >/dev/null 2>&1 && break
        sleep 0.1
    done
    pgb_pid=$(cat "$dir/pgb.pid" 2>/dev/null || echo 0)
    local p
    for p in "$weir_pid" "$weir1_pid" "$pgb_pid"; do
        if ! kill -0 "$p" 2>/dev/null; then
            echo "benchmark: a pooler did not start (pid $p); logs:" >&2
            pooler_logs >&2
            exit 1
        fi
    done
}
