/*
 * peertls.h - mutual TLS between nodes, for the Raft transport and the node
 * RPC.
 *
 * Every node has a certificate signed by the cluster CA whose CN and DNS
 * name are "node<ID>" (clusterctl cert create). A link is a TCP connection
 * on which both sides run a TLS 1.3 handshake, each verifying the other's
 * chain against the CA; the connecting side also requires the certificate
 * to name the node id it dialled. It then sends a fixed-size hello (purpose,
 * its node id, its address) inside TLS; the accepting side requires the
 * claimed id to be the one in the certificate. Only then is the link handed
 * to its user, as the plaintext end of a socketpair (a file descriptor the
 * user opens with uv_pipe_open): this module pumps bytes between that
 * socketpair, OpenSSL's memory BIOs and the TCP socket, with backpressure
 * both ways. libraft takes any uv_stream_t, so it runs unchanged on top.
 *
 * Timeouts: the TCP connect, the handshake and the hello must finish within
 * PEERTLS_HANDSHAKE_MS; after that the user's protocol owns liveness (Raft
 * heartbeats, RPC deadlines), and when the user closes its end, or the peer
 * closes the TCP side, the whole link closes.
 *
 * Ownership: a struct peertls is created and closed by its user (the Raft
 * transport, the RPC layer); peertls_close() stops the listener, cancels
 * pending connects and closes every live link, and the struct frees itself
 * once its last handle has closed. A link's fd belongs to the user once its
 * callback has it. Loop thread only.
 */
#ifndef SR_RAFT_PEERTLS_H
#define SR_RAFT_PEERTLS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define PEERTLS_HANDSHAKE_MS 5000

/* What a link is for; a listener accepts only its own purpose. */
enum { PEERTLS_RAFT = 'R', PEERTLS_RPC = 'P' };

struct peertls;
struct peertls_connect;

/* fd: the plaintext socketpair end, now the user's. */
typedef void (*peertls_accept_cb)(void *ud, int fd, uint64_t peer_id,
                                  const char *peer_address);
/* status 0 and fd >= 0, or a negative SR_E* code (SR_ECANCELED after
 * peertls_connect_cancel or peertls_close) and fd -1. */
typedef void (*peertls_connect_cb)(void *ud, int fd, int status);

/* Loads the CA, certificate and key (refused with a message when they do
 * not load or do not match). self_address is sent in the hello. */
int peertls_new(uv_loop_t *loop, int purpose, uint64_t self_id,
                const char *self_address, const char *ca_file,
                const char *cert_file, const char *key_file,
                struct peertls **out, char *err, size_t errlen);

int peertls_listen(struct peertls *p, const char *address, peertls_accept_cb cb,
                   void *ud, char *err, size_t errlen);

/* Dials address, expecting node peer_id there. Returns 0 and later calls cb
 * exactly once (unless cancelled first), or a negative code. *out (may be
 * NULL) stays valid until cb runs. */
int peertls_connect(struct peertls *p, uint64_t peer_id, const char *address,
                    peertls_connect_cb cb, void *ud,
                    struct peertls_connect **out);
/* Abandons a pending connect: its callback runs now with SR_ECANCELED. */
void peertls_connect_cancel(struct peertls_connect *c);

void peertls_close(struct peertls *p);

/* The hello, exposed for the fuzz target: parses one, checking magic and
 * purpose. Returns 0 and fills id/address (NUL-terminated, size addrlen). */
#define PEERTLS_HELLO_LEN 280
int peertls_hello_parse(const unsigned char *hello, int purpose, uint64_t *id,
                        char *address, size_t addrlen);

#endif
