/*
 * repair.h - body repair: keep every queued message's body on a majority.
 *
 * A background scan walks the message records in code order, a few hundred
 * per tick, and for each message still in the queue:
 *   - if this node is named a holder but has no copy (a replaced machine, a
 *     lost disk), it fetches the body from another holder (BodyGet),
 *     checks its SHA-256 against the record and stores it;
 *   - if fewer holders than a majority of the current voters are still
 *     voters (holders were removed from the cluster), the first voters by
 *     id that do not hold it (as many as are missing; every node computes
 *     the same choice from the same state) fetch a copy, store it and
 *     propose a HolderAdd op, so the record names them.
 * The scan restarts every `period` and right after a snapshot restore.
 * Bounded: at most REPAIR_INFLIGHT bodies are being fetched at once.
 *
 * Ownership: owned by the node; loop thread only.
 */
#ifndef SR_ENGINE_REPAIR_H
#define SR_ENGINE_REPAIR_H

#include <stdint.h>
#include <uv.h>

#include "node/config.h"
#include "queue/bodystore.h"
#include "queue/store.h"
#include "raft/rnode.h"
#include "raft/rpc.h"

struct repair;

int repair_start(uv_loop_t *loop, const struct sr_config *cfg,
                 struct queue_store *store, struct body_store *bodies,
                 struct rnode *rn, struct rpc *rpc, struct repair **out);
/* Stops scanning; the struct is freed once in-flight fetches finish. */
void repair_stop(struct repair *r);
/* Starts a new pass soon (e.g. after a snapshot restore). */
void repair_kick(struct repair *r);
/* Bodies fetched and stored since start. */
uint64_t repair_fetched(const struct repair *r);

#endif
