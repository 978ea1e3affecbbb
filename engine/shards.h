/*
 * shards.h - delivery leases and shard ownership, as seen by this node.
 *
 * Every node renews its delivery lease through the log every
 * SHARDS_RENEW_MS (LeaseRenew, lease SHARDS_LEASE_MS from the entry's time).
 * Locally it counts its lease from the moment it *sent* the renewal, which
 * is before the entry's time, so its own view ends no later than the
 * cluster's (clock rates assumed equal to within SHARDS_MARGIN_MS per
 * lease).
 *
 * The ready leader assigns shards (queue/shard.h): a shard keeps its owner
 * while that owner's lease is valid; a shard with no owner, or whose owner's
 * lease has expired, goes to a live node chosen by rendezvous hashing. The
 * state machine refuses any other move (queue/dqueue.c). When a node comes
 * back, the owners of the shards that rendezvous hashing now gives to it
 * hand them over: they start no new work for them (shards_owned() leaves
 * them out), wait until their deliveries for them are settled, and
 * release them (ShardRelease); the leader then assigns them to the node
 * that came back. Nothing is in flight across a hand-over, so it adds no
 * duplicate.
 *
 * A node may start a delivery for a shard when the table names it and its
 * local lease is valid: shards_owned(). In-flight deliveries may outlive the
 * lease; that is the at-least-once window (docs/ARCHITECTURE.md).
 *
 * Ownership: the node owns struct shards; loop thread only.
 */
#ifndef SR_ENGINE_SHARDS_H
#define SR_ENGINE_SHARDS_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "queue/shard.h"

#define SHARDS_LEASE_MS 5000
#define SHARDS_RENEW_MS 1000
#define SHARDS_MARGIN_MS 250

struct shards;
struct rnode;
struct queue_store;

int shards_start(uv_loop_t *loop, uint64_t self, struct queue_store *store,
                 struct rnode *rn, struct shards **out);
void shards_stop(struct shards *s);

/* Bit i set: this node may start deliveries for shard i now. */
uint64_t shards_owned(struct shards *s);
/* busy(ud, shard): this node still has deliveries of shard in flight
 * (not settled). Shards are released only when it says false. */
void shards_set_busy(struct shards *s, bool (*busy)(void *ud, unsigned shard),
                     void *ud);
/* Whether this node's own lease is valid now (local clock). */
int shards_lease_valid(struct shards *s);

#endif
