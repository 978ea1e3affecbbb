/*
 * rnode.h - this node's Raft instance (canonical raft 0.15, libuv I/O and
 * TCP transport) and the proposal path in front of it.
 *
 * Proposals are packed Op messages. On the leader they are batched: every
 * proposal queued during one loop iteration goes into one Raft entry (an
 * Entry with many ops), cut in a uv_check handle right after the I/O
 * callbacks that produced them. On a follower the same batch is forwarded
 * to the leader in one ProposeReq RPC; the leader answers once the entry is
 * applied. A proposal whose RPC fails is sent again until its deadline (the
 * state machine ignores an op whose code is already present, so a retry
 * cannot duplicate a message).
 *
 * Leadership: libraft 0.15 has no leadership callback and appends no entry
 * when elected, so a timer polls raft_state(); a new leader first commits a
 * raft_barrier() in its term and only then accepts proposals ("ready").
 *
 * Ownership: rnode_propose copies the op bytes. Its callback runs exactly
 * once on the loop thread (applied, duplicate, error or timeout).
 */
#ifndef SR_RAFT_RNODE_H
#define SR_RAFT_RNODE_H

#include <raft.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "node/config.h"
#include "proto/smartrelay.pb-c.h"
#include "queue/fsm.h"
#include "raft/rpc.h"

struct rnode;

/* status: 0 applied, SR_EEXIST already applied before (same code),
 * SR_ETIMEDOUT, SR_ENOTLEADER (lost leadership / no leader), other SR_E*. */
typedef void (*rnode_cb)(void *ud, int status, uint64_t index);

int rnode_start(uv_loop_t *loop, const struct sr_config *cfg,
                struct queue_store *store, struct rpc *rpc, struct rnode **out,
                char *err, size_t errlen);
/* Fails pending proposals with SR_ESHUTDOWN and closes raft; cb runs when
 * every handle is closed. */
void rnode_close(struct rnode *n, void (*cb)(void *), void *arg);

int rnode_propose(struct rnode *n, const Sr__Op *op, unsigned timeout_ms,
                  rnode_cb cb, void *ud);

/* Handles a ProposeReq that came over RPC (leader side). */
void rnode_handle_propose(struct rnode *n, struct rpc_call *call,
                          const Sr__ProposeReq *req);

struct raft *rnode_raft(struct rnode *n);
struct queue_fsm *rnode_fsm(struct rnode *n);
/* True on the leader once its barrier has committed. */
int rnode_is_ready_leader(const struct rnode *n);
/* Leader id (0 = unknown). */
uint64_t rnode_leader(struct rnode *n);
/* Copies the RPC / admin address of a node into buf (from the replicated
 * NodeInfo, else from the static peers). Returns 0 or SR_ENOTFOUND. */
int rnode_rpc_address(struct rnode *n, uint64_t id, char *buf, size_t len);
int rnode_admin_address(struct rnode *n, uint64_t id, char *buf, size_t len);

/* Voters of the current configuration, into ids (cap entries); returns the
 * number. */
unsigned rnode_voters(struct rnode *n, uint64_t *ids, unsigned cap);

/* Membership and leadership, leader only; cb(ud, status). */
typedef void (*rnode_done_cb)(void *ud, int status, const char *msg);
int rnode_add(struct rnode *n, uint64_t id, const char *address, int role,
              rnode_done_cb cb, void *ud);
int rnode_remove(struct rnode *n, uint64_t id, rnode_done_cb cb, void *ud);
int rnode_assign(struct rnode *n, uint64_t id, int role, rnode_done_cb cb,
                 void *ud);
int rnode_transfer(struct rnode *n, uint64_t id, rnode_done_cb cb, void *ud);

/* Called after every applied entry (e == NULL after a snapshot restore). */
void rnode_set_apply_hook(struct rnode *n,
                          void (*fn)(void *ud, uint64_t index,
                                     const Sr__Entry *e, const int *statuses),
                          void *ud);

#endif
