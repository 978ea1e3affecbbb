/*
 * node.h - one smartrelayd: wires the state store, body store, Raft, node
 * RPC, the accept pipeline, the SMTP listeners and the admin API onto one
 * libuv loop, and takes them down in order on SIGTERM/SIGINT.
 */
#ifndef SR_NODE_H
#define SR_NODE_H

#include <stddef.h>

#include "node/config.h"

struct sr_node;

/* Starts everything. cfg is borrowed for the node's life. Returns 0 or an
 * SR_E* code with err set. */
int node_start(const struct sr_config *cfg, struct sr_node **out, char *err,
               size_t errlen);
/* Runs the loop until a signal stops the node. Returns the exit code. */
int node_run(struct sr_node *n);

#endif
