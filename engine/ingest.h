/*
 * ingest.h - the accept pipeline: from a complete SMTP message to "kept on a
 * majority".
 *
 *   1. a code is drawn (node/code.h) and a Received: header prepended;
 *   2. the body is written to the local body store and pushed to every other
 *      voter over RPC (BodyPut); each holder answers once it has fsynced;
 *   3. once `copies` holders (default: a majority of the voters, this node
 *      included) have it, a small MessageAccept record naming the holders is
 *      proposed through Raft;
 *   4. when the record is applied on the leader the client gets 250 with the
 *      code. Anything that does not finish by the commit deadline gets a
 *      4xx; the record carries that deadline and the state machine drops it
 *      if the leader stamps the entry later, so a late commit cannot turn a
 *      4xx into a kept message in the common case (docs/ARCHITECTURE.md
 *      lists the remaining window).
 *
 * Ownership: ingest copies the envelope and body. A job lives until every
 * request it started has completed; ingest_detach() only stops the callback
 * (the client went away). Loop thread only.
 */
#ifndef SR_ENGINE_INGEST_H
#define SR_ENGINE_INGEST_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "gateways/smtp_session.h"
#include "node/code.h"
#include "node/config.h"
#include "queue/bodystore.h"
#include "raft/rnode.h"
#include "raft/rpc.h"

struct ingest;
struct ingest_job;

/* status 0: kept, code is the message code. Otherwise SR_ETIMEDOUT,
 * SR_EFULL (overloaded), SR_EIO, SR_ESHUTDOWN. */
typedef void (*ingest_cb)(void *ud, int status, const char *code);

struct ingest_meta {
    const char *customer;
    const char *client_addr; /* "ip" */
    const char *client_name; /* HELO */
    bool tls;
    /* A DSN generated here for recipient dsn_for_rcpt of message
     * dsn_for_code (NULL otherwise): committed at most once per bounce. */
    const char *dsn_for_code;
    unsigned dsn_for_rcpt;
};

int ingest_new(uv_loop_t *loop, const struct sr_config *cfg, unsigned boot,
               struct body_store *bodies, struct rnode *rn, struct rpc *rpc,
               struct ingest **out);
void ingest_free(struct ingest *in);

int ingest_submit(struct ingest *in, const struct smtp_envelope *env,
                  const struct ingest_meta *meta, const char *body, size_t len,
                  ingest_cb cb, void *ud, struct ingest_job **job);
void ingest_detach(struct ingest_job *job);

/* Serves a BodyPut from a peer: verifies the digest, stores, replies. */
void ingest_handle_body_put(struct ingest *in, struct rpc_call *call,
                            const Sr__BodyPut *put);
void ingest_handle_body_get(struct ingest *in, struct rpc_call *call,
                            const Sr__BodyGet *get);

/* Jobs in flight (for backpressure and the admin API). */
unsigned ingest_inflight(const struct ingest *in);

#endif
