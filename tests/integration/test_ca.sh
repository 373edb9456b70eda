#!/bin/sh
# test_ca.sh DIR [SAN] — a throwaway CA for the tests, in DIR:
#   ca.crt/ca.key         the CA (CN weir-test-ca)
#   other-ca.crt          a CA that signed nothing (a wrong CA)
#   server.crt/server.key the server's certificate, signed by ca.crt, CN
#                         localhost, subjectAltName SAN (default
#                         DNS:localhost,IP:127.0.0.1); the key mode 600
# openssl's output goes to DIR/openssl.log, shown on failure.
set -eu
dir=$1
san=${2:-DNS:localhost,IP:127.0.0.1}
(cd "$dir" &&
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=weir-test-ca \
        -keyout ca.key -out ca.crt &&
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca \
        -keyout other-ca.key -out other-ca.crt &&
    openssl req -newkey rsa:2048 -nodes -subj /CN=localhost \
        -keyout server.key -out server.csr &&
    printf 'subjectAltName=%s\n' "$san" >san.ext &&
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
        -days 2 -extfile san.ext -out server.crt) >"$dir/openssl.log" 2>&1 ||
    { cat "$dir/openssl.log" >&2; exit 1; }
chmod 600 "$dir/server.key"
