#!/bin/sh
# pg_cluster.sh — a throwaway PostgreSQL cluster for the integration tests.
#
#   pg_cluster.sh start DIR PORT      initdb on first use, then start and wait;
#                                     scram-sha-256 over TCP on 127.0.0.1:PORT
#   pg_cluster.sh stop DIR [MODE]     stop (MODE: fast, the default, or immediate)
#   pg_cluster.sh destroy DIR         stop if running, then remove DIR
#   pg_cluster.sh psql DIR PORT SQL   run SQL as the superuser over the socket
#
# Roles: superuser "weir" (password "weirpass"), "app" (password "s3cret")
# owning database "appdb". Run as root, the cluster runs as user postgres.
# With PG_SSL=1 at creation: TLS on (a throwaway CA in DIR/ca.crt signs the
# server's certificate for localhost and 127.0.0.1; DIR/other-ca.crt is a CA
# that signed nothing) and TCP logins over TLS only (hostssl).
set -eu
cmd=$1
dir=$2
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$bin/initdb" ] || { echo "pg_cluster: no PostgreSQL server found (install postgresql-15)" >&2; exit 1; }

as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
start)
    port=$3
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        mkdir -p "$dir/data"
        echo weirpass > "$dir/pwfile"
        [ "$(id -u)" = 0 ] && chown -R postgres "$dir"
        as_pg "$bin/initdb" -D "$dir/data" -U weir --pwfile="$dir/pwfile" \
            --auth-local=trust --auth-host=scram-sha-256 -E UTF8 >"$dir/initdb.log" 2>&1 ||
            { cat "$dir/initdb.log" >&2; exit 1; }
        cat >>"$dir/data/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
max_connections = ${PG_MAX_CONNECTIONS:-200}
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
        if [ "${PG_SSL:-0}" = 1 ]; then
            sh "$(dirname "$0")/test_ca.sh" "$dir"
            [ "$(id -u)" = 0 ] && chown postgres "$dir/server.key" "$dir/server.crt"
            printf "ssl = on\nssl_cert_file = '%s/server.crt'\nssl_key_file = '%s/server.key'\n" \
                "$dir" "$dir" >>"$dir/data/postgresql.conf"
            sed -i 's/^host /hostssl /' "$dir/data/pg_hba.conf"
        fi
        created=1
    fi
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start >/dev/null ||
        { tail -20 "$dir/server.log" >&2; exit 1; }
    if [ "${created:-0}" = 1 ]; then
        as_pg "$bin/psql" -q -X -h "$dir" -p "$port" -U weir -d postgres -v ON_ERROR_STOP=1 \
            -c "CREATE ROLE app LOGIN PASSWORD 's3cret'" -c "CREATE DATABASE appdb OWNER app" >/dev/null
    fi
    ;;
stop)
    mode=${3:-fast}
    as_pg "$bin/pg_ctl" -D "$dir/data" -m "$mode" -w -t 30 stop >/dev/null 2>&1 || true
    ;;
destroy)
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    ;;
psql)
    as_pg "$bin/psql" -q -X -A -t -h "$dir" -p "$3" -U weir -d appdb -v ON_ERROR_STOP=1 -c "$4"
    ;;
*)
    echo "usage: pg_cluster.sh start|stop|destroy|psql DIR ..." >&2
    exit 2
    ;;
esac
