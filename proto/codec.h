/*
 * codec.h - framing of Raft log entries and node RPC messages.
 *
 * Raft entry payload: "SRE1" | u32le length | protobuf Entry | zero padding
 * to a multiple of 8 bytes. The padding works around libraft 0.15 (issue
 * 189: followers corrupt entries whose size is not a multiple of 8 when
 * several travel in one message); the explicit length lets the decoder check
 * that the padding is exactly what it should be.
 *
 * RPC frame on a stream: u32be length | protobuf Rpc. Lengths over
 * CODEC_RPC_MAX are refused before anything is allocated.
 *
 * Decoders never trust a length: every size is checked against the buffer,
 * and a message with an unknown version is refused (SR_EVERSION).
 */
#ifndef SR_CODEC_H
#define SR_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "proto/smartrelay.pb-c.h"

#define ENTRY_VERSION 1
#define RPC_VERSION 1
#define CODEC_ENTRY_MAGIC "SRE1"
#define CODEC_RPC_MAX (64u << 20)

/* Returns the framed size of e. */
size_t codec_entry_size(const Sr__Entry *e);
/* Frames e into out (codec_entry_size(e) bytes, caller-allocated). */
void codec_entry_pack(const Sr__Entry *e, uint8_t *out);
/* Decodes a framed entry. Returns 0 and a new Entry (free with
 * sr__entry__free_unpacked(e, NULL)), or SR_EPARSE / SR_EVERSION. */
int codec_entry_decode(const void *buf, size_t len, Sr__Entry **out);

/* Frames rpc into a new malloc'd buffer (*out, *len). */
int codec_rpc_encode(const Sr__Rpc *rpc, uint8_t **out, size_t *len);
/* Looks at a stream buffer: returns the full frame size when one complete
 * frame is at the start of buf, 0 when more bytes are needed, SR_EPARSE for
 * an oversized or empty frame. */
long codec_rpc_frame_size(const uint8_t *buf, size_t len);
/* Decodes one complete frame (as measured by codec_rpc_frame_size). */
int codec_rpc_decode(const uint8_t *frame, size_t len, Sr__Rpc **out);

#endif
