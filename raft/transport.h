/*
 * transport.h - the Raft transport handed to libraft.
 *
 * With cluster TLS configured (cluster.tls_*), every Raft connection is a
 * mutual-TLS link (raft/peertls.h): the dialled node must present the
 * certificate of the node id libraft asked for, an accepted node must
 * present the certificate of the id it claims, and libraft gets the
 * plaintext side as a stream only after that. A node without a certificate
 * from the cluster CA can neither join nor send entries.
 *
 * Without TLS it is a proxy around libraft's own TCP transport (raft_uv_tcp)
 * that turns on TCP_NODELAY on every stream: libraft never does, so a small
 * AppendEntries or its response can sit in Nagle's buffer until the peer's
 * delayed ACK (up to 40 ms on Linux), which showed as a 47 ms p99 commit
 * latency in bench/inject.
 *
 * Ownership: struct sr_transport is owned by the rnode and must outlive
 * libraft's use of it; close it with sr_transport_close() after raft_close.
 */
#ifndef SR_RAFT_TRANSPORT_H
#define SR_RAFT_TRANSPORT_H

#include <raft.h>
#include <raft/uv.h>
#include <stdbool.h>

struct peertls;
struct sr_config;
struct tconnect;

struct sr_transport {
    struct raft_uv_transport outer; /* given to raft_uv_init */
    struct uv_loop_s *loop;
    raft_uv_accept_cb accept_cb;
    raft_uv_transport_close_cb close_cb;
    /* plaintext mode */
    struct raft_uv_transport inner; /* libraft's TCP transport */
    bool plain;
    /* TLS mode */
    const struct sr_config *cfg; /* borrowed: the TLS file names */
    struct peertls *tls;
    struct tconnect *connecting; /* pending connects, for close */
    uv_idle_t closer;            /* defers close_cb by one loop turn */
};

/* cfg must outlive the transport. */
int sr_transport_init(struct sr_transport *t, struct uv_loop_s *loop,
                      const struct sr_config *cfg);
/* Releases what is left after libraft's close completed. */
void sr_transport_close(struct sr_transport *t);

#endif
