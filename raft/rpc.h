/*
 * rpc.h - the node-to-node RPC: framed protobuf (proto/codec.h) over TCP on
 * the libuv loop, over mutual TLS when the cluster has certificates. Used to
 * forward proposals to the leader, push and fetch message bodies, and forward
 * admin requests.
 *
 * Requests and responses travel on connections opened by the requester (one
 * per peer, opened on demand, reopened after an error); every request has a
 * deadline, and a dead connection fails its pending requests at once with
 * SR_EIO. Server connections have an idle timeout.
 *
 * Ownership: rpc_send borrows req only during the call (it is packed
 * immediately) and sets its version/id/from. The response passed to a
 * rpc_resp_cb is freed after the callback returns. A handler's request is
 * owned by the rpc layer until rpc_reply(), which must be called exactly once
 * per call (if the connection died meanwhile the reply is dropped).
 * Loop thread only.
 */
#ifndef SR_RAFT_RPC_H
#define SR_RAFT_RPC_H

#include <stdint.h>
#include <uv.h>

#include "proto/smartrelay.pb-c.h"

struct rpc;
struct rpc_call;

typedef void (*rpc_handler_fn)(void *ud, struct rpc_call *call,
                               const Sr__Rpc *req);
typedef void (*rpc_resp_cb)(void *ud, int status, const Sr__Rpc *resp);

/* Mutual TLS between nodes (raft/peertls.h): PEM file names, borrowed. */
struct rpc_tls {
    const char *ca, *cert, *key;
};

/* tls NULL = plaintext TCP. With TLS a request is served only when its
 * `from` is the node id that the peer's certificate proves. */
int rpc_start(uv_loop_t *loop, uint64_t self_id, const char *listen,
              const struct rpc_tls *tls, rpc_handler_fn handler, void *ud,
              struct rpc **out, char *err, size_t errlen);
/* Fails pending requests with SR_ESHUTDOWN, closes every handle; the struct
 * is freed once all handles are closed. */
void rpc_close(struct rpc *r);

/* Sends req to the peer (id, address "host:port"). Returns 0 and later calls
 * cb exactly once (response, SR_ETIMEDOUT, SR_EIO, SR_ESHUTDOWN), or a
 * negative code and never calls cb. */
int rpc_send(struct rpc *r, uint64_t peer_id, const char *address, Sr__Rpc *req,
             unsigned timeout_ms, rpc_resp_cb cb, void *ud);

void rpc_reply(struct rpc_call *call, Sr__Rpc *resp);
uint64_t rpc_call_from(const struct rpc_call *call);

#endif
