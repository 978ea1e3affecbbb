/*
 * floatip.h - the floating IP that customers inject against.
 *
 * The address (floating.address on floating.interface) is held by the Raft
 * leader, and only once its barrier has committed in its term, i.e. once
 * its state is current: it is the node where a commit takes the fewest
 * hops, and `clusterctl leader transfer` (failover) moves leadership and
 * the address together. The holder adds the address with `ip addr add` and
 * announces it with gratuitous ARP (`arping -U`, floating.arp_count times);
 * a node that is no longer the ready leader deletes it; a starting node
 * deletes it in case a crash left it behind.
 *
 * Overlap: an old leader cut off from the majority keeps the address until
 * libraft makes it step down (one election timeout without a majority) plus
 * one poll (20 ms). While both hold it, a client may reach the old one: its
 * proposals cannot commit there (no majority), so the client gets a 4xx and
 * retries; nothing is acknowledged that is not committed, so nothing is
 * lost (docs/ARCHITECTURE.md).
 *
 * Commands run with uv_spawn, one at a time, never blocking the loop.
 * Ownership: owned by the node; loop thread only.
 */
#ifndef SR_FLOATIP_H
#define SR_FLOATIP_H

#include <stdbool.h>
#include <uv.h>

#include "node/config.h"
#include "raft/rnode.h"

struct floatip;

/* Returns 0 with *out NULL when no floating address is configured. */
int floatip_start(uv_loop_t *loop, const struct sr_config *cfg,
                  struct rnode *rn, struct floatip **out, char *err,
                  size_t errlen);
/* Stops following leadership, deletes the address if held, and calls cb
 * when done (every handle closed). */
void floatip_stop(struct floatip *f, void (*cb)(void *), void *arg);
bool floatip_held(const struct floatip *f);

#endif
