/* errors.c — the error table: codes, names and messages from WEIR_ERRNO_MAP. */
#include "weir/weir.h"

const char *weir_strerror(int code)
{
    switch (code) {
    case 0:
        return "success";
#define XX(name, num, msg)                                                                         \
    case -(num):                                                                                   \
        return msg;
        WEIR_ERRNO_MAP(XX)
#undef XX
    default:
        return "unknown error";
    }
}

const char *weir_err_name(int code)
{
    switch (code) {
    case 0:
        return "WEIR_OK";
#define XX(name, num, msg)                                                                         \
    case -(num):                                                                                   \
        return "WEIR_" #name;
        WEIR_ERRNO_MAP(XX)
#undef XX
    default:
        return "WEIR_UNKNOWN";
    }
}

const char *weir_version(void)
{
    return WEIR_VERSION;
}
