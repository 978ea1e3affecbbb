/*
 * transport.h - the Raft transport handed to libraft: a proxy around
 * libraft's own TCP transport (raft_uv_tcp) that adjusts every stream
 * before libraft sees it.
 *
 * Today it turns on TCP_NODELAY: libraft 0.15 never does, so a small
 * AppendEntries or its response can sit in Nagle's buffer until the peer's
 * delayed ACK (up to 40 ms on Linux), which showed as a 47 ms p99 commit
 * latency in bench/inject. The same seam is where mutual TLS between nodes
 * goes (a stream handed over after the handshake).
 *
 * Ownership: struct sr_transport is owned by the rnode and must outlive
 * libraft's use of it; close it with sr_transport_close() after raft_close.
 */
#ifndef SR_RAFT_TRANSPORT_H
#define SR_RAFT_TRANSPORT_H

#include <raft.h>
#include <raft/uv.h>

struct sr_transport {
    struct raft_uv_transport outer; /* given to raft_uv_init */
    struct raft_uv_transport inner; /* libraft's TCP transport */
    raft_uv_accept_cb accept_cb;
    raft_uv_transport_close_cb close_cb;
};

int sr_transport_init(struct sr_transport *t, struct uv_loop_s *loop);
/* Releases the inner transport's memory (after its close completed). */
void sr_transport_close(struct sr_transport *t);

#endif
