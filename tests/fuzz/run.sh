#!/bin/sh
# run.sh SECONDS [BUILD_DIR] — build the libFuzzer targets with clang and fuzz each for SECONDS:
# fuzz_proto (the PostgreSQL door's parsers) and fuzz_http (the HTTP request head).
# Corpora live in BUILD_DIR/fuzz-corpus and BUILD_DIR/fuzz-corpus-http (seeded
# with a few real messages); findings are written to BUILD_DIR/fuzz-findings
# and fail the run.
set -eu
secs=${1:-30}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$(cd "${2:-$root/build}" && pwd)
clang=$(command -v clang || command -v clang-14)
bin="$out/fuzz_proto"
"$clang" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -D_GNU_SOURCE -DSCRAM_MAX_ITER=4096 \
    -I"$root/src/server" -I"$root/include" \
    "$here/fuzz_proto.c" "$root/src/server/proto.c" "$root/src/server/auth.c" -lcrypto -o "$bin"
corpus="$out/fuzz-corpus"
mkdir -p "$corpus" "$out/fuzz-findings"
# seeds: a startup packet, a query + ReadyForQuery, a SCRAM client-first/final pair
printf '\000\000\000\000\037\000\003\000\000user\000app\000database\000x\000\000' >"$corpus/startup"
printf '\005Q\000\000\000\015select 1\000Z\000\000\000\005I' >"$corpus/frames"
printf '\025n,,n=,r=abcdefghijklmnopc=biws,r=abcdefghijklmnop,p=AAAA' >"$corpus/scram"
"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$out/fuzz-findings/" "$corpus" 2>"$out/fuzz.log" || {
    tail -40 "$out/fuzz.log" >&2
    exit 1
}
grep -E "stat::number_of_executed_units|Done" "$out/fuzz.log" | tail -2

hbin="$out/fuzz_http"
"$clang" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -D_GNU_SOURCE \
    -I"$root/src/server" "$here/fuzz_http.c" "$root/src/server/httpparse.c" -o "$hbin"
hcorpus="$out/fuzz-corpus-http"
mkdir -p "$hcorpus"
printf '\377GET /health HTTP/1.1\r\nHost: x\r\n\r\n' >"$hcorpus/get"
printf '\040POST /v1/sql?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\nConnection: keep-alive, close\r\nExpect: 100-continue\r\n\r\n{"query":"select 1"}' >"$hcorpus/post"
printf '\010\r\nGET / HTTP/1.0\r\nTransfer-Encoding: gzip, chunked\r\n\r\n' >"$hcorpus/te"
"$hbin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$out/fuzz-findings/http-" "$hcorpus" 2>"$out/fuzz-http.log" || {
    tail -40 "$out/fuzz-http.log" >&2
    exit 1
}
grep -E "stat::number_of_executed_units|Done" "$out/fuzz-http.log" | tail -2
