# common.sh — what the server benchmarks share (sourced by server.sh, http.sh
# and tls.sh): a temporary directory and a port for a throwaway PostgreSQL
# (the next ports are left for the poolers), the cleanup of what they start,
# and a process's CPU time.

# bench_start NAME: $dir, $pg_port, and a trap that stops what bench_track
# was given, a PgBouncer whose pidfile is $dir/pgb.pid, and the cluster.
bench_start() {
    dir=$(mktemp -d "/tmp/weir-bench-$1.XXXXXX")
    chmod 755 "$dir"
    pg_port=$((20000 + RANDOM % 20000))
    bench_pids=""
    trap bench_cleanup EXIT
}
bench_track() { bench_pids="$bench_pids $1"; }
bench_cleanup() {
    for p in $bench_pids; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    [ -f "$dir/pgb.pid" ] && kill "$(cat "$dir/pgb.pid")" 2>/dev/null
    sleep 0.3
    sh "$cluster" destroy "$dir/pg" >/dev/null 2>&1 || true
    rm -rf "$dir"
}
# utime + stime of a process, in clock ticks ($hz a second)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
