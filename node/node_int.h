/* node_int.h - the node's parts, shared by node.c and admin.c only. */
#ifndef SR_NODE_INT_H
#define SR_NODE_INT_H

#include <uv.h>

#include "engine/ingest.h"
#include "engine/repair.h"
#include "engine/shards.h"
#include "gateways/http_server.h"
#include "gateways/smtp_server.h"
#include "gateways/tls.h"
#include "node/config.h"
#include "node/floatip.h"
#include "queue/bodystore.h"
#include "queue/policy.h"
#include "queue/store.h"
#include "raft/rnode.h"
#include "raft/rpc.h"

/* Owned by main(); loop thread only. */
struct sr_node {
    uv_loop_t loop;
    const struct sr_config *cfg;
    unsigned boot;
    struct queue_store *store;
    struct body_store *bodies;
    struct rpc *rpc;
    struct rnode *rn;
    struct ingest *ingest;
    struct repair *repair;
    struct shards *shards;   /* delivery leases and shard ownership */
    struct floatip *floatip; /* NULL without floating.address */
    struct tls_ctx *tls;
    struct smtp_server *smtp;
    struct http_server *admin;
    struct policy *policy; /* current, parsed; replaced on apply */
    uv_signal_t sigterm, sigint;
    uv_timer_t sync;
    struct admin_wait *admin_waits; /* changes waiting for a leader */
    int stopping;
    int pending_close;
};

/* The admin API entry points (admin.c). */
void admin_http(void *ud, struct http_conn *c, const struct http_request *req);
void admin_rpc(struct sr_node *n, struct rpc_call *call,
               const Sr__AdminReq *req);
/* Answers 503 to every change still waiting for a leader. */
void admin_stop(struct sr_node *n);

#endif
