/*
 * sms.h - SMS delivery: email recipients in a customer's SMS domains
 * (policy customers[].sms) become SMS submitted over SMPP.
 *
 * Every node keeps one transceiver bind to every SMSC of the policy
 * (gateways/smpp_client.h), so that a receipt can arrive on any node: each
 * receipt becomes an SmsReceipt op (queue/smsq.h) matched in the state.
 * The owner of a recipient's shard sends it: the text is taken from the
 * message on a worker thread (engine/sms_mime.h), the sender and subject
 * applied as the customer's policy says, the number normalised, the route
 * chosen (the longest prefix of sms_routes; among its SMSCs the bound ones
 * with a free window, by priority then cost; an SMSC that throttles is
 * paused for a second and the next is tried), the text encoded and split
 * for that SMSC (engine/sms_text.h) and the parts submitted. The outcome:
 *  - every part accepted: SUBMITTED with the SMSC's message ids;
 *  - no SMSC available, throttled, a temporary error or no response:
 *    deferred (the recipient is tried again with the usual backoff; parts
 *    accepted before a failure are sent again then: at-least-once);
 *  - a permanent SMPP error, an invalid number or sender, a text over the
 *    customer's parts limit when it rejects: bounced.
 * Each SMSC's per_second is a cluster-wide rate (engine/rates.h, scope
 * "smsc:NAME"), one token per submit_sm.
 *
 * Ownership: the delivery engine owns struct sms_engine; loop thread only.
 */
#ifndef SR_ENGINE_SMS_H
#define SR_ENGINE_SMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct policy;
struct rnode;
struct rates;
struct sms_engine;

struct sms_outcome {
    unsigned outcome; /* DELIVERY_SUBMITTED, _DEFERRED or _BOUNCED */
    char reply[300];
    char smsc[33];
    char **ids; /* normalised message ids, one per part (SUBMITTED) */
    size_t n_ids;
};

struct sms_engine *sms_engine_new(uv_loop_t *loop, struct rnode *rn,
                                  struct rates *rates, uint64_t node_id);
/* Unbinds and frees; sends in flight end with a deferral. */
void sms_engine_free(struct sms_engine *e);
/* Makes the binds match the policy's SMSCs (cheap when unchanged). */
void sms_engine_policy(struct sms_engine *e, const struct policy *p);

/* Sends recipient rcpt (index idx) of message code, whose raw message is
 * body (borrowed until done). done runs once, on the loop; the outcome's
 * ids are freed after it returns. Returns 0 or SR_ENOMEM. */
int sms_send(struct sms_engine *e, const struct policy *p, const char *customer,
             const char *code, const char *rcpt, unsigned idx,
             const uint8_t *body, size_t len,
             void (*done)(void *ud, const struct sms_outcome *o), void *ud);

/* clusterctl sms routes: every (route, SMSC) of the policy with this
 * node's view: bound, paused (throttled), messages sent. */
size_t sms_engine_routes(struct sms_engine *e, const struct policy *p,
                         void (*fn)(void *ud, const char *prefix,
                                    const char *smsc, unsigned priority,
                                    unsigned cost, unsigned share, bool bound,
                                    bool paused, uint64_t sent),
                         void *ud);
/* clusterctl sms test NUMBER: the route and SMSC a message to number would
 * take now from this node. 0, SR_EINVAL (not a number), SR_ENOTFOUND (no
 * route, or no SMSC of it available: smsc ""). e164 holds 17 bytes. */
int sms_engine_test(struct sms_engine *e, const struct policy *p,
                    const char *number, char *e164, char *prefix, size_t plen,
                    char *smsc, size_t slen);

/* For status: binds bound now / configured. */
void sms_engine_binds(const struct sms_engine *e, unsigned *bound,
                      unsigned *total);

#endif
