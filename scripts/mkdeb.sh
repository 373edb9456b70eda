#!/bin/sh
# mkdeb.sh — build weir's Debian packages (make deb):
#   weir          the server, its systemd unit, /etc/weir, logrotate, man pages, docs
#   libweir0      the pool library, shared
#   libweir-dev   its headers, the static library, libweir.so and weir.pc
# into $BUILD_DEB (build-deb/). Plain dpkg-deb, no debian/ source tree: the
# build is CMake's, the package scripts live in scripts/deb/. Dependencies
# come from dpkg-shlibdeps; lintian checks the result when it is installed.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out=${BUILD_DEB:-$root/build-deb}
version=$(sed -n 's/^project(weir VERSION \([0-9.]*\).*/\1/p' "$root/CMakeLists.txt")
debversion="$version-1"
arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)

command -v pandoc >/dev/null || { echo "mkdeb: pandoc is needed for the man pages (apt-get install pandoc)" >&2; exit 1; }

cmake -S "$root" -B "$out/cmake" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr \
    -DCMAKE_INSTALL_LIBDIR="lib/$multiarch" -DWEIR_TESTS=OFF -DWEIR_BENCH=OFF >/dev/null
cmake --build "$out/cmake" -j "$(nproc)" >/dev/null
all="$out/all"
rm -rf "$all" "$out/weir" "$out/libweir0" "$out/libweir-dev" "$out"/*.deb
DESTDIR="$all" cmake --install "$out/cmake" >/dev/null

# --- weir --------------------------------------------------------------------
p="$out/weir"
mkdir -p "$p/DEBIAN" "$p/usr/bin" "$p/usr/share/man/man1" "$p/usr/share/man/man5" \
    "$p/etc/weir" "$p/etc/logrotate.d" "$p/lib/systemd/system" "$p/usr/share/doc/weir"
install -m 0755 "$all/usr/bin/weir" "$p/usr/bin/weir"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$p/usr/bin/weir"
gzip -9n <"$all/usr/share/man/man1/weir.1" >"$p/usr/share/man/man1/weir.1.gz"
gzip -9n <"$all/usr/share/man/man5/weir.ini.5" >"$p/usr/share/man/man5/weir.ini.5.gz"
install -m 0644 "$root/etc/weir.ini" "$p/etc/weir/weir.ini"
install -m 0644 "$root/etc/userlist.txt" "$p/etc/weir/userlist.txt" # postinst: 0640 root:weir
install -m 0644 "$root/etc/weir.logrotate" "$p/etc/logrotate.d/weir"
install -m 0644 "$root/etc/weir.service" "$p/lib/systemd/system/weir.service"
for d in SERVER HTTP SECURITY COMPATIBILITY; do
    gzip -9n <"$root/docs/$d.md" >"$p/usr/share/doc/weir/$d.md.gz"
done
install -m 0644 "$root/README.md" "$p/usr/share/doc/weir/README.md"

copyright() { # the machine-readable copyright file Debian wants
    cat <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: weir

Files: *
Copyright: 2026 The weir authors
License: Expat
EOF
    sed -n '5,$p' "$root/LICENSE" | sed 's/^$/./; s/^/ /'
}
copyright >"$p/usr/share/doc/weir/copyright"
changelog() { # $1: package name
    printf '%s (%s) unstable; urgency=medium\n\n  * Built from the weir source tree.\n\n -- weir authors <weir@example.org>  %s\n' \
        "$1" "$debversion" "$(date -R -d @"${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)}")" |
        gzip -9n
}
changelog weir >"$p/usr/share/doc/weir/changelog.Debian.gz"

for s in postinst prerm postrm; do install -m 0755 "$root/scripts/deb/weir.$s" "$p/DEBIAN/$s"; done
printf '/etc/weir/weir.ini\n/etc/weir/userlist.txt\n/etc/logrotate.d/weir\n' >"$p/DEBIAN/conffiles"

shlibdeps() { # $1: package, then files: the Depends their libraries need
    pkg=$1
    shift
    dir=$(mktemp -d)
    mkdir "$dir/debian"
    printf 'Source: weir\n\nPackage: %s\nArchitecture: any\n' "$pkg" >"$dir/debian/control"
    (cd "$dir" && dpkg-shlibdeps -O "$@" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
    rm -rf "$dir"
}
depends=$(shlibdeps weir "$p/usr/bin/weir")
size=$(du -ks "$p" | cut -f1)
cat >"$p/DEBIAN/control" <<EOF
Package: weir
Version: $debversion
Architecture: $arch
Maintainer: weir authors <weir@example.org>
Installed-Size: $size
Depends: $depends, adduser, init-system-helpers (>= 1.52)
Suggests: postgresql-client
Section: database
Priority: optional
Description: connection pooler for PostgreSQL, compatible with PgBouncer
 weir reads pgbouncer.ini as it is and speaks PgBouncer's admin console,
 runs one worker thread per core, serves SQL over HTTP/JSON with sessions,
 a live page of its pools and Prometheus metrics (in its own names and in
 pgbouncer_exporter's), and supports TLS on every door and PgBouncer's
 authentication methods (hba, cert, peer, scram-sha-256, md5).
EOF

# --- libweir0 and libweir-dev ---------------------------------------------------
l="$out/libweir0"
rm -rf "$l"
mkdir -p "$l/DEBIAN" "$l/usr/lib/$multiarch" "$l/usr/share/doc/libweir0"
cp -a "$all/usr/lib/$multiarch/"libweir.so.* "$l/usr/lib/$multiarch/"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$l/usr/lib/$multiarch/"libweir.so.*.*
copyright >"$l/usr/share/doc/libweir0/copyright"
changelog libweir0 >"$l/usr/share/doc/libweir0/changelog.Debian.gz"
printf 'libweir 0 libweir0 (>= %s)\n' "$version" >"$l/DEBIAN/shlibs"
printf 'activate-noawait ldconfig\n' >"$l/DEBIAN/triggers"
ldepends=$(shlibdeps libweir0 "$l/usr/lib/$multiarch/"libweir.so.*.*)
cat >"$l/DEBIAN/control" <<EOF
Package: libweir0
Version: $debversion
Architecture: $arch
Maintainer: weir authors <weir@example.org>
Installed-Size: $(du -ks "$l" | cut -f1)
Depends: $ldepends
Section: libs
Priority: optional
Description: embeddable connection pool engine
 libweir pools connections to PostgreSQL, SQLite and MySQL/MariaDB (and any driver you
 write): min/max sizes, timeouts, lifetimes, validation, fair waiters,
 load shedding, reconnect back-off, pause/drain/resize and Prometheus
 metrics, thread-safe, with a registry of pools keyed by URL.
EOF

d="$out/libweir-dev"
mkdir -p "$d/DEBIAN" "$d/usr/lib/$multiarch/pkgconfig" "$d/usr/include" "$d/usr/share/doc/libweir-dev"
cp -a "$all/usr/include/weir" "$d/usr/include/"
cp -a "$all/usr/lib/$multiarch/libweir.so" "$all/usr/lib/$multiarch/libweir.a" "$d/usr/lib/$multiarch/"
strip --strip-debug "$d/usr/lib/$multiarch/libweir.a"
install -m 0644 "$all/usr/lib/$multiarch/pkgconfig/weir.pc" "$d/usr/lib/$multiarch/pkgconfig/weir.pc"
copyright >"$d/usr/share/doc/libweir-dev/copyright"
changelog libweir-dev >"$d/usr/share/doc/libweir-dev/changelog.Debian.gz"
cat >"$d/DEBIAN/control" <<EOF
Package: libweir-dev
Version: $debversion
Architecture: $arch
Maintainer: weir authors <weir@example.org>
Installed-Size: $(du -ks "$d" | cut -f1)
Depends: libweir0 (= $debversion), libpq-dev, libsqlite3-dev, libmariadb-dev, libcurl4-openssl-dev
Section: libdevel
Priority: optional
Description: embeddable connection pool engine (development files)
 libweir pools connections to PostgreSQL, SQLite and MySQL/MariaDB (and any driver you
 write). This package has the headers, the static library, libweir.so and
 weir.pc for pkg-config.
EOF

find "$p" "$l" "$d" -type d -exec chmod 0755 {} +
for pkg in weir libweir0 libweir-dev; do
    dpkg-deb --root-owner-group -Zxz --build "$out/$pkg" "$out/${pkg}_${debversion}_$arch.deb" >/dev/null
    echo "built $out/${pkg}_${debversion}_$arch.deb"
done
if command -v lintian >/dev/null; then
    lintian --tag-display-limit 0 "$out/"*_"${debversion}_$arch.deb" || true
fi
