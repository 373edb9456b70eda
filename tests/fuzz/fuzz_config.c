/* fuzz_config.c — libFuzzer target: the configuration file (config.c), its
 * [databases], [users], [peers], [http_tokens] and [pgbouncer] sections and
 * their key=value strings. The input is the file (a memfd); a file that
 * loads is copied, shown key by key (SHOW CONFIG's cfg_get) and freed.
 * A refusal must say why. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/config.h"

static void on_log(void *ud, bool error, const char *msg)
{
    if (error) *(int *)ud += 1;
    if (!msg[0]) abort(); /* every line says something */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("weir.ini", 0);
        if (fd < 0) abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) || (size && pwrite(fd, data, size, 0) != (ssize_t)size)) abort();
    cfg c;
    int errors = 0;
    if (cfg_load(&c, path, on_log, &errors)) {
        if (!errors) abort(); /* refused without a reason */
        return 0;
    }
    cfg d;
    if (cfg_copy(&d, &c) == 0) {
        for (size_t i = 0; i < cfg_key_count(); i++) {
            const char *def;
            const char *k = cfg_key_at(i, &def);
            char v[1024];
            if (!k || cfg_get(&d, k, v, sizeof v)) abort(); /* every key has a value */
        }
        for (size_t i = 0; i < d.npeers; i++)
            if (cfg_find_peer(&d, d.peers[i].id) == NULL) abort();
        (void)cfg_find_db(&d, "x");
        (void)cfg_find_user(&d, "x");
        cfg_free(&d);
    }
    cfg_free(&c);
    return 0;
}
