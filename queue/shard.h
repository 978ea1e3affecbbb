/*
 * shard.h - delivery shards: which shard a destination belongs to, and
 * which live node should own a shard.
 *
 * Pure functions, shared by the state machine (queue/dqueue.c, which
 * indexes due recipients by shard) and the leader's assignment
 * (engine/shards.c), so both always agree.
 */
#ifndef SR_QUEUE_SHARD_H
#define SR_QUEUE_SHARD_H

#include <stddef.h>
#include <stdint.h>

#define SHARD_COUNT 64

/* FNV-1a of the lower-cased domain, modulo SHARD_COUNT. */
unsigned shard_of_domain(const char *domain, size_t len);
/* Shard of the domain part of "local@domain" (the whole string if no @). */
unsigned shard_of_rcpt(const char *address);

/* Rendezvous (highest random weight) choice among n candidate node ids:
 * the same inputs give the same owner everywhere, and removing a node moves
 * only the shards it owned. Returns 0 when n == 0. */
uint64_t shard_pick_owner(unsigned shard, const uint64_t *nodes, size_t n);

#endif
