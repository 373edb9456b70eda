#!/bin/sh
# deps.sh — install the Debian packages the build and the suite need (as root).
# Prints nothing and changes nothing when everything is there.
set -e
need=""
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for pkg in cmake gcc make pkg-config libcmocka-dev valgrind libpq-dev postgresql-15 libsqlite3-dev libzdb-dev; do
    have "$pkg" || need="$need $pkg"
done
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages:$need (run 'make deps' as root, or install them)" >&2
    exit 1
fi
echo "installing:$need"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq $need >/dev/null
