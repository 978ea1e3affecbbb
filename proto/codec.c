/* codec.c - entry and RPC framing (see codec.h). */
#include "proto/codec.h"

#include <stdlib.h>
#include <string.h>

#include "node/errors.h"

static void put_u32le(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static size_t pad8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

size_t codec_entry_size(const Sr__Entry *e)
{
    return pad8(8 + sr__entry__get_packed_size(e));
}

void codec_entry_pack(const Sr__Entry *e, uint8_t *out)
{
    size_t n = sr__entry__get_packed_size(e);
    size_t total = pad8(8 + n);
    memcpy(out, CODEC_ENTRY_MAGIC, 4);
    put_u32le(out + 4, (uint32_t)n);
    sr__entry__pack(e, out + 8);
    memset(out + 8 + n, 0, total - 8 - n);
}

int codec_entry_decode(const void *buf, size_t len, Sr__Entry **out)
{
    const uint8_t *p = buf;
    *out = NULL;
    if (len < 8 || len % 8 != 0 || memcmp(p, CODEC_ENTRY_MAGIC, 4) != 0)
        return SR_EPARSE;
    size_t n = get_u32le(p + 4);
    if (n > len - 8 || pad8(8 + n) != len)
        return SR_EPARSE;
    for (size_t i = 8 + n; i < len; i++)
        if (p[i] != 0)
            return SR_EPARSE;
    Sr__Entry *e = sr__entry__unpack(NULL, n, p + 8);
    if (e == NULL)
        return SR_EPARSE;
    if (e->version != ENTRY_VERSION) {
        sr__entry__free_unpacked(e, NULL);
        return SR_EVERSION;
    }
    for (size_t i = 0; i < e->n_ops; i++) {
        if (e->ops[i]->op_case == SR__OP__OP__NOT_SET) {
            sr__entry__free_unpacked(e, NULL);
            return SR_EPARSE;
        }
    }
    *out = e;
    return 0;
}

int codec_rpc_encode(const Sr__Rpc *rpc, uint8_t **out, size_t *len)
{
    size_t n = sr__rpc__get_packed_size(rpc);
    if (n > CODEC_RPC_MAX)
        return SR_EINVAL;
    uint8_t *b = malloc(4 + n);
    if (b == NULL)
        return SR_ENOMEM;
    b[0] = (uint8_t)(n >> 24);
    b[1] = (uint8_t)(n >> 16);
    b[2] = (uint8_t)(n >> 8);
    b[3] = (uint8_t)n;
    sr__rpc__pack(rpc, b + 4);
    *out = b;
    *len = 4 + n;
    return 0;
}

long codec_rpc_frame_size(const uint8_t *buf, size_t len)
{
    if (len < 4)
        return 0;
    uint32_t n = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 |
                 (uint32_t)buf[2] << 8 | buf[3];
    if (n == 0 || n > CODEC_RPC_MAX)
        return SR_EPARSE;
    if (len < 4 + (size_t)n)
        return 0;
    return (long)n + 4;
}

int codec_rpc_decode(const uint8_t *frame, size_t len, Sr__Rpc **out)
{
    *out = NULL;
    long want = codec_rpc_frame_size(frame, len);
    if (want <= 0 || (size_t)want != len)
        return SR_EPARSE;
    Sr__Rpc *r = sr__rpc__unpack(NULL, len - 4, frame + 4);
    if (r == NULL)
        return SR_EPARSE;
    if (r->version != RPC_VERSION) {
        sr__rpc__free_unpacked(r, NULL);
        return SR_EVERSION;
    }
    *out = r;
    return 0;
}
