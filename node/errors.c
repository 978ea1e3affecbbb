/* errors.c - the table of SmartRelay error codes (see errors.h). */
#include "node/errors.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *sr_strerror(int code)
{
    switch (code) {
    case SR_OK:
        return "SR_OK";
    case SR_ENOMEM:
        return "SR_ENOMEM";
    case SR_EINVAL:
        return "SR_EINVAL";
    case SR_EPARSE:
        return "SR_EPARSE";
    case SR_EIO:
        return "SR_EIO";
    case SR_ENOTFOUND:
        return "SR_ENOTFOUND";
    case SR_ENOTLEADER:
        return "SR_ENOTLEADER";
    case SR_ETIMEDOUT:
        return "SR_ETIMEDOUT";
    case SR_EFULL:
        return "SR_EFULL";
    case SR_ESHUTDOWN:
        return "SR_ESHUTDOWN";
    case SR_EVERSION:
        return "SR_EVERSION";
    case SR_EEXIST:
        return "SR_EEXIST";
    case SR_ECANCELED:
        return "SR_ECANCELED";
    case SR_EAUTH:
        return "SR_EAUTH";
    default:
        return "SR_EUNKNOWN";
    }
}

int sr_err(char *err, size_t errlen, int code, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

void sr_sanitize(char *dst, size_t dstlen, const char *src, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 4 < dstlen && i < 64; i++)
        dst[n++] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
    if (len > 64 && n + 4 < dstlen) {
        memcpy(dst + n, "...", 3);
        n += 3;
    }
    dst[n] = '\0';
}
