#!/bin/sh
# mysql_cluster.sh — a throwaway MariaDB server for the integration tests.
#
#   mysql_cluster.sh start DIR PORT     install a data directory on first use,
#                                       then start and wait; TCP on 127.0.0.1:PORT
#   mysql_cluster.sh stop DIR [MODE]    stop (MODE: fast, the default, or immediate: kill -9)
#   mysql_cluster.sh destroy DIR        stop if running, then remove DIR
#   mysql_cluster.sh sql DIR SQL        run SQL as root over the socket DIR/sock
#
# Users: root (no password, over the socket only) and "app"@"%" (password
# "s3cret") with every right on database "appdb". Run as root, the server
# runs as user mysql. TLS is on unless MY_SSL=0 at start: a throwaway CA
# (DIR/ca.crt) signs the server's certificate for localhost and 127.0.0.1;
# DIR/other-ca.crt is a CA that signed nothing.
set -eu
cmd=$1
dir=$2
bin=/usr/sbin/mariadbd
[ -x "$bin" ] || { echo "mysql_cluster: no MariaDB server found (install mariadb-server)" >&2; exit 1; }
user=$(id -un)
[ "$(id -u)" = 0 ] && user=mysql

running() { [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; }

case "$cmd" in
start)
    port=$3
    if [ ! -d "$dir/data/mysql" ]; then
        mkdir -p "$dir/data"
        [ "$(id -u)" = 0 ] && chown -R mysql "$dir"
        mariadb-install-db --no-defaults --datadir="$dir/data" --user="$user" \
            --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1 ||
            { cat "$dir/install.log" >&2; exit 1; }
        sh "$(dirname "$0")/test_ca.sh" "$dir"
        [ "$(id -u)" = 0 ] && chown mysql "$dir/server.key" "$dir/server.crt"
        created=1
    fi
    tls=""
    [ "${MY_SSL:-1}" = 0 ] ||
        tls="--ssl-ca=$dir/ca.crt --ssl-cert=$dir/server.crt --ssl-key=$dir/server.key"
    "$bin" --no-defaults --user="$user" --datadir="$dir/data" --port="$port" \
        --bind-address=127.0.0.1 --socket="$dir/sock" --pid-file="$dir/pid" \
        --skip-name-resolve --skip-log-bin --innodb-buffer-pool-size=16M \
        --innodb-log-file-size=8M --innodb-flush-log-at-trx-commit=2 --max-connections=500 \
        --log-error="$dir/server.log" $tls >/dev/null 2>&1 &
    i=0
    until mariadb-admin --no-defaults -uroot -S "$dir/sock" ping >/dev/null 2>&1; do
        i=$((i + 1))
        if [ $i -gt 300 ]; then tail -20 "$dir/server.log" >&2; exit 1; fi
        sleep 0.1
    done
    if [ "${created:-0}" = 1 ]; then
        mariadb --no-defaults -uroot -S "$dir/sock" -e "CREATE DATABASE appdb;
            CREATE USER 'app'@'%' IDENTIFIED BY 's3cret';
            GRANT ALL ON appdb.* TO 'app'@'%'; GRANT PROCESS, CONNECTION ADMIN ON *.* TO 'app'@'%';"
    fi
    ;;
stop)
    mode=${3:-fast}
    if running; then
        pid=$(cat "$dir/pid")
        if [ "$mode" = immediate ]; then kill -9 "$pid"; else kill "$pid"; fi
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
        rm -f "$dir/pid"
    fi
    ;;
destroy)
    if running; then kill -9 "$(cat "$dir/pid")"; sleep 0.2; fi
    rm -rf "$dir"
    ;;
sql)
    mariadb --no-defaults -uroot -S "$dir/sock" -N -B appdb -e "$3"
    ;;
*)
    echo "usage: mysql_cluster.sh start|stop|destroy|sql DIR ..." >&2
    exit 2
    ;;
esac
