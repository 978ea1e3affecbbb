/* node_int.h - the node's parts, shared by node.c and admin.c only. */
#ifndef SR_NODE_INT_H
#define SR_NODE_INT_H

#include <uv.h>

#include "engine/ingest.h"
#include "engine/deliver.h"
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
/* A customer whose outbound backlog is over its max_queued. */
struct full_customer {
    struct full_customer *next;
    char name[65];
};

struct sr_node {
    uv_loop_t loop;
    bool backlog_full;          /* over delivery.queue_high_water */
    struct full_customer *full; /* customers over max_queued */
    const struct sr_config *cfg;
    unsigned boot;
    struct queue_store *store;
    struct body_store *bodies;
    struct rpc *rpc;
    struct rnode *rn;
    struct ingest *ingest;
    struct repair *repair;
    struct shards *shards;   /* delivery leases and shard ownership */
    struct deliver *deliver; /* outbound delivery of the shards it owns */
    struct floatip *floatip; /* NULL without floating.address */
    struct tls_ctx *tls;
    struct smtp_server *smtp;
    struct http_server *admin;
    struct http_server *track; /* tracking endpoints, or NULL */
    struct policy *policy;     /* current, parsed; replaced on apply */
    uv_signal_t sigterm, sigint;
    uv_timer_t sync;
    struct admin_wait *admin_waits; /* changes waiting for a leader */
    int stopping;
    int pending_close;
};

/* The admin API entry points (admin.c). */
void admin_http(void *ud, struct http_conn *c, const struct http_request *req);
/* The tracking endpoints (track.c). */
void track_http(void *ud, struct http_conn *c, const struct http_request *req);
void admin_rpc(struct sr_node *n, struct rpc_call *call,
               const Sr__AdminReq *req);
/* Answers 503 to every change still waiting for a leader. */
void admin_stop(struct sr_node *n);

#endif
