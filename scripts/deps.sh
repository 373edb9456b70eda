#!/bin/sh
# deps.sh — install the Debian packages the build and the suite need (as root).
# Prints nothing and changes nothing when everything is there.
#
# node-postgres: Debian's node-pg wants Debian's nodejs, which conflicts with
# a nodejs from elsewhere; the tests only need its JavaScript, so the .debs are
# fetched with apt-get download and unpacked into $WEIR_NODE_DIR.
#
#   scripts/deps.sh         everything: the build, the suite and the benchmarks
#   scripts/deps.sh build   only what building weir needs (make run)
set -e
need=""
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
build="cmake gcc make pkg-config libcmocka-dev libpq-dev libsqlite3-dev libmariadb-dev libcurl4-openssl-dev libevent-dev libssl-dev \
    libjansson-dev libidn-dev"
suite="valgrind postgresql-15 mariadb-server libzdb-dev pgbouncer python3-psycopg clang libclang-rt-14-dev \
    nodejs prometheus wrk openssl curl systemd prometheus-pgbouncer-exporter pgbadger \
    liburing-dev pandoc dpkg-dev lintian chromium logrotate man-db strace openjdk-17-jdk-headless libpostgresql-jdbc-java python3-asyncpg"
pkgs=$build
[ "${1:-}" = build ] || pkgs="$build $suite"
for pkg in $pkgs; do
    have "$pkg" || need="$need $pkg"
done
node_dir=${WEIR_NODE_DIR:-/var/cache/weir-test/node}
node_missing=0
[ "${1:-}" = build ] || [ -f "$node_dir/usr/share/nodejs/pg/lib/index.js" ] || node_missing=1
[ -z "$need" ] && [ "$node_missing" = 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages:$need$([ $node_missing = 1 ] && echo ' node-pg (unpacked)')" \
        "(run 'make deps' as root, or install them)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
if [ -n "$need" ]; then
    echo "installing:$need"
    apt-get install -y -qq $need >/dev/null
fi
if [ "$node_missing" = 1 ]; then
    echo "unpacking node-pg into $node_dir"
    tmp=$(mktemp -d)
    chmod 755 "$tmp"
    (cd "$tmp" && apt-get download -qq node-pg node-split2 node-xtend node-readable-stream >/dev/null 2>&1)
    mkdir -p "$node_dir"
    for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$node_dir"; done
    rm -rf "$tmp"
fi
