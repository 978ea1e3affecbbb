/*
 * smtp_server.h - the SMTP listeners of a node: libuv sockets, TLS, timeouts
 * and limits around the pure session machine (smtp_session.h), handing
 * complete messages to the accept pipeline (engine/ingest.h).
 *
 * Per connection, checked against the customer's current policy (replicated,
 * so a change applies without restart): the client address must be inside
 * the customer's networks (else 554 5.7.1 and close), the node's sessions
 * for that customer must stay under max_sessions (else 421 4.7.0), and the
 * message size and recipient limits go into the session. Every connection
 * has a timer: smtp.command_timeout_s while waiting for a command,
 * smtp.data_timeout_s inside DATA (RFC 5321 4.5.3.2).
 *
 * Ownership: the server owns its connections; loop thread only.
 */
#ifndef SR_SMTP_SERVER_H
#define SR_SMTP_SERVER_H

#include <uv.h>

#include "engine/ingest.h"
#include "gateways/tls.h"
#include "node/config.h"
#include "queue/policy.h"

struct smtp_server;

struct smtp_server_deps {
    uv_loop_t *loop;
    const struct sr_config *cfg;
    struct ingest *ingest;
    struct tls_ctx *tls; /* NULL: no STARTTLS */
    /* Current policy (never NULL once the node runs); borrowed per call. */
    const struct policy *(*policy)(void *ud);
    void *ud;
    /* Optional: false while the outbound backlog of the cluster or of this
     * customer is over its high-water mark (MAIL gets 452 4.3.1). */
    bool (*accepting)(void *ud, const char *customer);
};

int smtp_server_start(const struct smtp_server_deps *deps,
                      struct smtp_server **out, char *err, size_t errlen);
/* Stops listening and ends every session with 421; cb runs once every
 * handle is closed. */
void smtp_server_close(struct smtp_server *s, void (*cb)(void *), void *arg);
unsigned smtp_server_sessions(const struct smtp_server *s);
/* Opens and closes the listeners that the policy declares
 * (customers[].listen_port on smtp.customer_host) to match the current
 * policy; sessions already open go on. Call after each policy change. */
void smtp_server_apply_policy(struct smtp_server *s);

#endif
