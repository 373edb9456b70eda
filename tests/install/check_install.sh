#!/bin/sh
# check_install.sh — install into a temporary prefix, then build and run a
# program against it with pkg-config, once shared and once static.
set -eu
build_dir=$1
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build_dir" --prefix "$prefix" >/dev/null
libdir=$(ls -d "$prefix"/lib*/pkgconfig | head -1)
export PKG_CONFIG_PATH=$libdir
cat > "$prefix/app.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <weir/weir.h>
#include <libpq-fe.h>
#include <sqlite3.h>
int main(void)
{
    /* a program that calls the drivers' libraries itself, through the
     * handles weir_conn_handle() gives, needs nothing but weir's flags */
    if (PQlibVersion() <= 0 || sqlite3_libversion_number() <= 0) return 1;
    weir_options o;
    weir_options_init(&o);
    if (weir_options_set(&o, "max_size", "3") != 0 || o.max_size != 3) return 1;
    if (strcmp(weir_err_name(WEIR_ETIMEDOUT), "WEIR_ETIMEDOUT") != 0) return 1;
    printf("installed weir %s works\n", weir_version());
    return 0;
}
C
cc "$prefix/app.c" -o "$prefix/app-shared" $(pkg-config --cflags --libs weir)
LD_LIBRARY_PATH=$(dirname "$libdir") "$prefix/app-shared"
# static libweir.a, shared libpq and SQLite (Debian ships no static libpq
# dependencies, so pkg-config --static cannot be used for libpq here)
cc "$prefix/app.c" -o "$prefix/app-static" $(pkg-config --cflags weir) \
    "$(dirname "$libdir")/libweir.a" $(pkg-config --libs weir | sed 's/-lweir\b//') -lpthread
"$prefix/app-static"
# only the API is exported from the shared library
if nm -D --defined-only "$(dirname "$libdir")/libweir.so" | grep -v ' weir_' | grep -q ' T '; then
    echo "libweir.so exports symbols outside the weir_ prefix:" >&2
    nm -D --defined-only "$(dirname "$libdir")/libweir.so" | grep ' T ' | grep -v ' weir_' >&2
    exit 1
fi
# the man pages, when pandoc made them
if [ -f "$build_dir/man/weir.1" ]; then
    for m in man1/weir.1 man5/weir.ini.5; do
        [ -s "$prefix/share/man/$m" ] || { echo "make install did not install $m" >&2; exit 1; }
    done
    if command -v man >/dev/null && ! man -l -P cat "$prefix/share/man/man1/weir.1" 2>/dev/null | grep -q "connection pooler"; then
        echo "man weir.1 does not render" >&2
        exit 1
    fi
else
    echo "man pages not built (pandoc not installed): their install is not checked"
fi
