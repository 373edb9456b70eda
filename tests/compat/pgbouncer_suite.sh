#!/bin/bash
# pgbouncer_suite.sh — PgBouncer 1.25's own pytest suite against weir, with
# tests/compat/expected-failures.txt as the expectation.
#
#   tests/compat/pgbouncer_suite.sh WEIR_BINARY [test/test_x.py ...]
#
# The suite is not part of weir: it is looked for in $WEIR_PGB_SUITE, else in
# ../shared/pgbouncer-suite next to the source tree (where CI has it). When it
# is not there the test says so and is skipped (exit 77).
#
# Every test of the suite runs (2 xdist workers). A test that fails and is not
# in the list is run again on its own, up to twice (a few of the suite's
# tests are timing-sensitive, against PgBouncer too); if it fails each time,
# this fails. A
# listed test that passes is reported, so the list can shrink, but does not
# fail the run (some listed ones fail only some of the time).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
[ $# -ge 1 ] || { sed -n 2,16p "$0"; exit 2; }
bin=$(readlink -f "$1")
shift
suite=${WEIR_PGB_SUITE:-$root/../shared/pgbouncer-suite}
expected="$here/expected-failures.txt"
if [ ! -x "$suite/run.sh" ]; then
    echo "skipped: PgBouncer's test suite not found at $suite (set WEIR_PGB_SUITE to a copy of PgBouncer 1.25's test folder with its run.sh)"
    exit 77
fi
[ -x "$bin" ] || { echo "not an executable: $bin" >&2; exit 2; }

# A short path: the suite's Unix sockets live deep below it (108 bytes at most)
out=$(mktemp -d /tmp/wc.XXXXXX)
chmod 755 "$out"
# Whatever the suite leaves running (a pooler a test restarted, a cluster
# of an interrupted run) lives under $out: stopped on the way out.
reap() {
    pkill -KILL -f "$out/" 2>/dev/null
    sleep 0.5
    rm -rf "$out"
}
trap reap EXIT
trap 'exit 130' INT TERM
# a writable copy: the suite writes its certificates beside its tests
cp -r "$suite" "$out/suite" && chmod -R u+w "$out/suite" || exit 1

# run LOG [pytest args]: the suite; failed and errored test ids, one a line,
# as "test_file.py::test_name[param]", into LOG.ids
run() {
    local log=$1
    shift
    TMPDIR=$out "$out/suite/run.sh" "$bin" -q -rfE --tb=no -p no:cacheprovider "$@" >"$log" 2>&1 </dev/null
    pkill -KILL -f "$out/pgb-suite" 2>/dev/null # poolers and clusters a test left behind
    sed -n -E 's#^(FAILED|ERROR) ([^ ]*/)?test/([^ ]+).*#\3#p' "$log" | sort -u >"$log.ids"
}

start=$(date +%s)
run "$out/all.log" -n 2 "$@"
tail -1 "$out/all.log"
if [ -n "${WEIR_COMPAT_RECORD:-}" ]; then # the ids that failed, for whoever keeps the list
    cp "$out/all.log.ids" "$WEIR_COMPAT_RECORD"
    cp "$out/all.log" "$WEIR_COMPAT_RECORD.log"
fi
grep -v '^#' "$expected" | awk 'NF {print $1}' | sort -u >"$out/expected"
comm -23 "$out/all.log.ids" "$out/expected" >"$out/unexpected"
comm -13 "$out/all.log.ids" "$out/expected" >"$out/now-passing"
if ! grep -qE '[0-9]+ passed' "$out/all.log"; then
    echo "the suite did not run:"
    tail -30 "$out/all.log"
    exit 1
fi
# A failure not listed is run again on its own, up to twice (timing-sensitive
# tests, as PgBouncer has its own): it fails the run only if it fails each time.
for attempt in 1 2; do
    [ -s "$out/unexpected" ] || break
    echo "failed, not in $(basename "$expected"); running them again on their own ($attempt):"
    sed 's/^/  /' "$out/unexpected"
    mapfile -t again < <(sed 's#^#test/#' "$out/unexpected")
    run "$out/again.log" "${again[@]}"
    tail -1 "$out/again.log"
    comm -12 "$out/again.log.ids" "$out/unexpected" >"$out/unexpected2"
    # a test that did not run at all counts as failed
    grep -qE '[0-9]+ passed' "$out/again.log" || cp "$out/unexpected" "$out/unexpected2"
    mv "$out/unexpected2" "$out/unexpected"
done
if [ -s "$out/now-passing" ] && [ $# -eq 0 ]; then
    echo "listed as failing, passed this time (remove from the list when they keep passing):"
    sed 's/^/  /' "$out/now-passing"
fi
echo "PgBouncer suite: $(tail -1 "$out/all.log" | tr -d '=') in $(($(date +%s) - start)) s;" \
    "$(wc -l <"$out/expected") listed as expected failures"
if [ -s "$out/unexpected" ]; then
    echo "FAILED: these tests failed every time and are not expected to:"
    sed 's/^/  /' "$out/unexpected"
    grep -E "^(FAILED|ERROR)" "$out/again.log" | sed 's/^/  /' | head -40
    exit 1
fi
exit 0
