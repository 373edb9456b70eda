#!/bin/sh
# run.sh SECONDS [BUILD_DIR] — build the libFuzzer targets with clang and fuzz each for SECONDS:
# fuzz_proto (the PostgreSQL door's parsers), fuzz_http (the HTTP request head), fuzz_json
# (the SQL-over-HTTP body and its PostgreSQL messages) and fuzz_prep (prepared-statement
# rewriting of client messages in transaction pooling), fuzz_hba (auth_hba_file and
# auth_ident_file), fuzz_config (the configuration file) and fuzz_urls (the MySQL and HTTP
# drivers' URLs).
# Corpora live in BUILD_DIR/fuzz-corpus-<target> (seeded with a few real
# messages); findings are written to BUILD_DIR/fuzz-findings and fail the run.
set -eu
secs=${1:-30}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$(cd "${2:-$root/build}" && pwd)
clang=$(command -v clang || command -v clang-14)
mkdir -p "$out/fuzz-findings"

# build NAME SOURCES... ; then seeds go into $out/fuzz-corpus-NAME ; then fuzz NAME
build() {
    name=$1
    shift
    "$clang" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -D_GNU_SOURCE \
        -DSCRAM_MAX_ITER=4096 -I"$root/src/server" -I"$root/include" "$@" -o "$out/$name"
    mkdir -p "$out/fuzz-corpus-$name"
}
fuzz() {
    "$out/$1" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$out/fuzz-findings/$1-" "$out/fuzz-corpus-$1" 2>"$out/$1.log" || {
        tail -40 "$out/$1.log" >&2
        exit 1
    }
    echo "$1:"
    grep -E "stat::number_of_executed_units|Done" "$out/$1.log" | tail -2
}

build fuzz_proto "$here/fuzz_proto.c" "$root/src/server/pg/proto.c" "$root/src/server/core/auth.c" -lcrypto $(pkg-config --libs libidn)
c="$out/fuzz-corpus-fuzz_proto"
# seeds: a startup packet, a query + ReadyForQuery, a SCRAM client-first/final pair
printf '\000\000\000\000\037\000\003\000\000user\000app\000database\000x\000\000' >"$c/startup"
printf '\000\000\000\000\062\000\003\000\000user\000app\000options\000-c a=b --c-d=e\\ f -cx=y\000\000' >"$c/options"
printf '\000\000\000\000\034\000\003\000\002user\000app\000_pq_.x\000on\000\000' >"$c/protocol32"
printf '\005Q\000\000\000\015select 1\000Z\000\000\000\005I' >"$c/frames"
printf '\025n,,n=,r=abcdefghijklmnopc=biws,r=abcdefghijklmnop,p=AAAA' >"$c/scram"
fuzz fuzz_proto

build fuzz_http "$here/fuzz_http.c" "$root/src/server/http/httpparse.c"
c="$out/fuzz-corpus-fuzz_http"
# seeds: the first byte picks where a second parse cuts the input
printf '\377GET /health HTTP/1.1\r\nHost: x\r\n\r\n' >"$c/get"
printf '\040POST /v1/sql?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\nConnection: keep-alive, close\r\nExpect: 100-continue\r\n\r\n{"query":"select 1"}' >"$c/post"
printf '\010\r\nGET / HTTP/1.0\r\nTransfer-Encoding: gzip, chunked\r\n\r\n' >"$c/te"
fuzz fuzz_http

build fuzz_json "$here/fuzz_json.c" "$root/src/server/http/sqlreq.c" "$root/src/server/core/sbuf.c" \
    "$root/src/server/pg/proto.c" $(pkg-config --cflags --libs jansson)
c="$out/fuzz-corpus-fuzz_json"
# seeds: the first byte turns Neon-* headers on
printf '\000{"query":"select $1::int, $2","params":[1,"x\\u00e9",null,[1,[2,null]],{"a":1},true,1.5]}' >"$c/one"
printf '\037{"queries":[{"query":"set x = 1"},{"query":"select 1","params":[]}],"isolationLevel":"Serializable","readOnly":true}' >"$c/batch"
printf '\200{"query":"select 1","statementTimeout":5,"arrayMode":true}' >"$c/opts"
fuzz fuzz_json

build fuzz_prep "$here/fuzz_prep.c" "$root/src/server/pg/prep.c" "$root/src/server/pg/proto.c" -lpthread
c="$out/fuzz-corpus-fuzz_prep"
# seeds: Parse "s1" / Bind / Execute / Sync from client 0, then the server's answers
printf '\000P\000\022s1\000select 1\000\000\000\000B\000\016\000s1\000\000\000\000\000\000\000\000\000E\000\005\000\000\000\000\000\000S\000\000\0011\000\000\0012\000\000\001C\000\011SELECT 1\000\001Z\000\001I' >"$c/parse"
printf '\002Q\000\020deallocate all\000\000C\000\007\000S\000\000\002P\000\022s1\000select 2\000\000\000' >"$c/dealloc"
# the unnamed statement a DEALLOCATE ALL, bound (as client.c streams a Bind) to two
# portals in turn, the first then executed (a leak once fixed in bind_msg)
printf '\000P\000\022\000DEALLOCATE ALL\000\000\000\010B\000\012p1\000\000\000\000\000\000\000\000\010B\000\012p2\000\000\000\000\000\000\000\000\000E\000\007p1\000\000\000\000\000\000S\000\000' >"$c/dealloc-portals"
# a plain run (unnamed statements up to a Sync) as raw client bytes, then its replies
printf '\020\170\000\064\120\000\000\000\020\000\163\145\154\145\143\164\040\061\000\000\000\102\000\000\000\014\000\000\000\000\000\000\000\000\104\000\000\000\006\120\000\105\000\000\000\011\000\000\000\000\000\123\000\000\000\004\001\061\000\000\001\062\000\000\001\156\000\000\001\103\000\011\123\105\114\105\103\124\040\061\000\001\132\000\001\111' >"$c/plain"
fuzz fuzz_prep

build fuzz_hba "$here/fuzz_hba.c" "$root/src/server/core/hba.c"
c="$out/fuzz-corpus-fuzz_hba"
# seeds: rules of every kind, then (after a 0xff byte) an ident map
printf 'local all postgres peer map=m\nhost "q""x",all u1 , u2 10.0.0.0/8 md5 # c\nhostssl all @f 0.0.0.0/0 cert\nhost db all 192.168.1.0 255.255.255.0 trust\nhost /^t_ all ::1/128 ldap ldapserver=x\nhostssl all all all scram-sha-256 clientcert=verify-full\nhost replication,sameuser all all \\\n reject\n\377m alice alice\nm /^(.*)@corp$ \\1\nm "root" all\n' >"$c/rules"
fuzz fuzz_hba

build fuzz_config "$here/fuzz_config.c" "$root/src/server/core/config.c" "$root/src/server/core/hba.c"
c="$out/fuzz-corpus-fuzz_config"
# seeds: every section, a key of each type, a peer list
printf '[databases]\nappdb = host=127.0.0.1,::1 port=5432 dbname=app pool_size=5 min_pool_size=1 load_balance_hosts=round-robin\n* = host=/tmp\n[users]\napp = pool_mode=session max_user_connections=3 query_timeout=1.5\n[peers]\n1 = host=/tmp/w1 port=6432 pool_size=4\n2 = host=10.0.0.2\n[http_tokens]\nbot = 0123456789abcdef0123\n[pgbouncer]\nlisten_port = 6432\npeer_id = 1\nauth_type = md5\npool_mode = transaction\nserver_lifetime = 10min\nunix_socket_mode = 0700\nso_reuseport = yes\n' >"$c/full"
printf '[pgbouncer]\n%%include missing.ini\nlisten_port = 0\n[weird section\nkey\n = v\n' >"$c/bad"
fuzz fuzz_config

if pkg-config --exists libmariadb libcurl; then
    build fuzz_urls "$here/fuzz_urls.c" "$root/src/drivers/mysql.c" "$root/src/drivers/http.c" \
        "$root/src/lib/util.c" "$root/src/lib/pool.c" "$root/src/lib/options.c" \
        "$root/src/lib/errors.c" "$root/src/lib/stats.c" -I"$root/src/lib" \
        $(pkg-config --cflags --libs libmariadb libcurl) -lpthread
    c="$out/fuzz-corpus-fuzz_urls"
    printf '\000mysql://app:s3cret@db.example:3307/shop?ssl_mode=verify_identity&ssl_ca=/etc/ca.pem&connect_attrs=a:1,b:2&reset=transaction&read_timeout=5' >"$c/mysql"
    printf '\000mariadb://u%%40x:p%%3Aw@[::1]/d%%20b?unix_socket=/run/mysqld/mysqld.sock&charset=latin1' >"$c/escapes"
    printf '\001https://API.example.com:8443/v1?retries=2&backoff_base=50&ca_file=/etc/ca.pem&http_version=1.1&timeout=500' >"$c/http"
    fuzz fuzz_urls
else
    echo "fuzz_urls: skipped (libmariadb or libcurl not installed)"
fi
