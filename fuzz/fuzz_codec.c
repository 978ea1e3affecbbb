/* fuzz_codec.c - libFuzzer target for the log-entry and RPC decoders
 * (proto/codec.h), and the snapshot restore path of the store. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* as a Raft entry payload */
    Sr__Entry *e;
    if (codec_entry_decode(data, size, &e) == 0)
        sr__entry__free_unpacked(e, NULL);
    /* with valid framing around arbitrary protobuf bytes */
    size_t total = (8 + size + 7) & ~(size_t)7;
    uint8_t *buf = calloc(1, total);
    memcpy(buf, CODEC_ENTRY_MAGIC, 4);
    buf[4] = (uint8_t)size;
    buf[5] = (uint8_t)(size >> 8);
    buf[6] = (uint8_t)(size >> 16);
    buf[7] = (uint8_t)(size >> 24);
    memcpy(buf + 8, data, size);
    if (codec_entry_decode(buf, total, &e) == 0)
        sr__entry__free_unpacked(e, NULL);
    free(buf);
    /* as a stream of RPC frames */
    size_t off = 0;
    for (;;) {
        long n = codec_rpc_frame_size(data + off, size - off);
        if (n <= 0)
            break;
        Sr__Rpc *r;
        if (codec_rpc_decode(data + off, (size_t)n, &r) == 0)
            sr__rpc__free_unpacked(r, NULL);
        off += (size_t)n;
    }
    return 0;
}
