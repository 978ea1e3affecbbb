/*
 * deliver.h - the delivery engine: sends the recipients of the shards this
 * node owns to their destinations and records each outcome through Raft.
 *
 * Every DELIVER_TICK_MS (and soon after new messages are applied) the
 * engine walks the due index of its shards (engine/shards.h,
 * queue/dqueue.h), groups due recipients by message and destination domain
 * into jobs, loads each job's body (locally, or from a holder over RPC,
 * checked against its SHA-256), and queues the job on its destination. A
 * destination opens up to delivery.max_connections_per_domain SMTP
 * connections (gateways/smtp_client.h) to the policy's route for the domain
 * or, without one, to its MX hosts in preference order (engine/mx.h, each
 * address tried in turn), and sends up to delivery.messages_per_connection
 * messages on each.
 *
 * Outcomes, per recipient, as DeliveryResult proposals: 2xx after DATA =
 * delivered; 5xx, a null MX or a domain that does not exist = bounced; any
 * other failure = deferred with exponential backoff and jitter
 * (delivery.retry_min_s doubling up to delivery.retry_max_s), or expired
 * once the message is older than delivery.max_age_s. A recipient stays in
 * this node's in-flight set until its result is committed (the proposal is
 * retried), so it is never sent twice by the same owner; a failover between
 * the remote 250 and that commit is the at-least-once window
 * (docs/ARCHITECTURE.md).
 *
 * Bounces: each bounced or expired recipient of a message with a sender
 * gets a DSN (engine/dsn.h) from the node owning the recipient's shard,
 * injected like any message (bodies on a majority, then Raft); the state
 * machine takes the DSN only while that bounce still waits for one, so a
 * bounce yields one DSN even if two nodes generated it.
 *
 * Ownership: the node owns struct deliver; loop thread only.
 */
#ifndef SR_ENGINE_DELIVER_H
#define SR_ENGINE_DELIVER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "node/config.h"

#define DELIVER_TICK_MS 200

struct deliver;
struct queue_store;
struct body_store;
struct rnode;
struct rpc;
struct shards;
struct policy;
struct ingest;

struct deliver_deps {
    uv_loop_t *loop;
    const struct sr_config *cfg;
    struct queue_store *store;
    struct body_store *bodies;
    struct rnode *rn;
    struct rpc *rpc;
    struct shards *shards;
    struct ingest *ingest; /* to inject the DSNs it generates */
    /* Current policy (never NULL once the node runs); borrowed per call. */
    const struct policy *(*policy)(void *ud);
    void *ud;
};

int deliver_start(const struct deliver_deps *deps, struct deliver **out,
                  char *err, size_t errlen);
/* Closes connections (their jobs stay due and are retried by whoever owns
 * the shard next) and frees the engine once its handles have closed. */
void deliver_stop(struct deliver *d);
/* Whether deliveries of shard are in flight here (jobs not settled):
 * engine/shards.h hands a shard over only when not. */
bool deliver_busy(void *ud, unsigned shard);
/* The SMS side (engine/sms.h), for the admin API. */
struct sms_engine *deliver_sms(struct deliver *d);
/* New work may be due: scan soon. */
void deliver_kick(struct deliver *d);

struct deliver_stats {
    uint64_t jobs, delivered, deferred, bounced, expired;
    uint64_t postponed;  /* recipients held back by a suspension */
    uint64_t suppressed; /* recipients on a suppression list */
    unsigned inflight, connections;
};
void deliver_get_stats(const struct deliver *d, struct deliver_stats *st);

#endif
