/* fuzz_hba.c — libFuzzer target: auth_hba_file and auth_ident_file (hba.c).
 * The input is the rules, then (after a 0xff byte) an ident file; the rules
 * that load are asked about a few logins and the maps about a few names.
 * Nothing is read from the file system ("@file" is refused without a folder). */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/hba.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    const char *cut = memchr(p, 0xff, size);
    size_t n1 = cut ? (size_t)(cut - p) : size;
    char err[600];
    hba *h = hba_parse(p, n1, "hba.conf", NULL, NULL, NULL, err, sizeof err);
    if (!h) {
        if (!err[0]) abort(); /* a refusal always says why */
        return 0;
    }
    if (cut && hba_parse_ident(h, cut + 1, size - n1 - 1, "ident.conf", err, sizeof err) && !err[0])
        abort();
    static const struct {
        bool local, tls, repl;
        const char *addr, *db, *user;
    } q[] = {{true, false, false, NULL, "db", "user"},
             {false, false, false, "127.0.0.1", "all", "all"},
             {false, true, false, "10.1.2.3", "db", "db"},
             {false, false, true, "::1", "replication", "admin"},
             {false, true, false, "fe80::1", "x\"y", "a , b"}};
    for (size_t i = 0; i < sizeof q / sizeof *q; i++) {
        hba_login l = {.local = q[i].local,
                       .tls = q[i].tls,
                       .replication = q[i].repl,
                       .db = q[i].db,
                       .user = q[i].user};
        if (q[i].addr) {
            l.family = strchr(q[i].addr, ':') ? AF_INET6 : AF_INET;
            inet_pton(l.family, q[i].addr, l.addr);
        }
        hba_rule_info r;
        bool found = hba_match(h, &l, &r);
        if (found && (r.method < HBA_TRUST || r.method > HBA_UNSUPPORTED || !r.method_name ||
                      !r.map || r.line < 1))
            abort();
        (void)hba_ident_match(h, found ? r.map : "m", q[i].user, q[i].db);
    }
    (void)hba_ident_match(h, "m", "alice@corp", "alice");
    hba_unref(h);
    return 0;
}
