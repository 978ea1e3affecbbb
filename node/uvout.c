/* uvout.c - try-then-queue stream writes (see uvout.h). */
#include "node/uvout.h"

#include <stdlib.h>
#include <string.h>

#include "node/errors.h"

struct uvout_req {
    uv_write_t w;
    char *buf;
    uvout_cb done;
    void *ud;
};

static void written(uv_write_t *w, int status)
{
    struct uvout_req *r = (struct uvout_req *)w;
    uvout_cb done = r->done;
    void *ud = r->ud;
    free(r->buf);
    free(r);
    if (done)
        done(ud, status);
}

int uvout_write(uv_stream_t *s, char *buf, size_t len, uvout_cb done, void *ud)
{
    size_t off = 0;
    uv_buf_t b = uv_buf_init(buf, (unsigned)len);
    int n = uv_try_write(s, &b, 1);
    if (n > 0)
        off = (size_t)n;
    else if (n != UV_EAGAIN && n != UV_ENOSYS) {
        free(buf);
        return SR_EIO;
    }
    if (off == len) {
        free(buf);
        return 0;
    }
    struct uvout_req *r = malloc(sizeof *r);
    if (r == NULL) {
        free(buf);
        return SR_ENOMEM;
    }
    r->buf = buf;
    r->done = done;
    r->ud = ud;
    b = uv_buf_init(buf + off, (unsigned)(len - off));
    if (uv_write(&r->w, s, &b, 1, written) != 0) {
        free(buf);
        free(r);
        return SR_EIO;
    }
    return 0;
}

int uvout_write_copy(uv_stream_t *s, const char *buf, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
    int n = uv_try_write(s, &b, 1);
    size_t off = n > 0 ? (size_t)n : 0;
    if (n < 0 && n != UV_EAGAIN && n != UV_ENOSYS)
        return SR_EIO;
    if (off == len)
        return 0;
    char *rest = malloc(len - off);
    if (rest == NULL)
        return SR_ENOMEM;
    memcpy(rest, buf + off, len - off);
    return uvout_write(s, rest, len - off, NULL, NULL);
}
