/*
 * smpp_client.h - one ESME bind to an SMSC (SMPP 3.4) on the libuv loop.
 *
 * The client connects, binds (as a transceiver unless told otherwise:
 * transmitter or receiver), and stays bound: it sends
 * enquire_link when the link is quiet, answers the SMSC's enquire_link and
 * unbind, acknowledges every deliver_sm (receipts go to the receipt
 * callback), and after any failure (refused bind, lost connection, a
 * response that does not come within resp_timeout_ms) reconnects with
 * exponential backoff and jitter (1 s doubling to 60 s). Submits travel
 * in a window: at most `window` submit_sm without their response.
 *
 * Every PDU goes through gateways/smpp_pdu.h (checked framing and bodies
 * before libsmpp34 sees them); that module and this one run on the loop
 * thread only.
 *
 * Ownership: the caller owns the client until smpp_client_close, which
 * unbinds (when bound), fails the pending submits with SR_ESHUTDOWN and
 * frees the client once its handles are closed.
 */
#ifndef SR_GATEWAYS_SMPP_CLIENT_H
#define SR_GATEWAYS_SMPP_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "gateways/smpp_pdu.h"

struct smpp_client;

struct smpp_client_opts {
    const char *name;      /* for logs: the SMSC's name in the policy */
    const char *address;   /* "ip:port" or "[ipv6]:port" */
    const char *system_id; /* at most 15 */
    const char *password;  /* at most 8 */
    const char *system_type;
    unsigned window;          /* submits without response; default 10 */
    unsigned resp_timeout_ms; /* default 10000 */
    unsigned enquire_ms;      /* quiet time before enquire_link; 30000 */
    /* SMPP_BIND_TRANSCEIVER (0 means it), SMPP_BIND_TRANSMITTER (submits,
     * no deliver_sm) or SMPP_BIND_RECEIVER (deliver_sm only: never ready
     * for submits) */
    uint32_t bind_cmd;
};

struct smpp_client_cbs {
    /* bound (true) or not any more (false, with the reason) */
    void (*state)(void *ud, bool bound, const char *reason);
    /* a deliver_sm (already acknowledged) */
    void (*deliver)(void *ud, const struct smpp_pdu *p);
};

/* Result of a submit: status is the submit_sm_resp command_status (0 =
 * accepted, message_id set), or a negative SR_E*: SR_ETIMEDOUT (no
 * response), SR_EIO (the connection went), SR_ESHUTDOWN (closed). */
typedef void (*smpp_submit_cb)(void *ud, int status, const char *message_id);

int smpp_client_new(uv_loop_t *loop, const struct smpp_client_opts *o,
                    const struct smpp_client_cbs *cbs, void *ud,
                    struct smpp_client **out, char *err, size_t errlen);
void smpp_client_close(struct smpp_client *c);

/* Bound, and the window has room. */
bool smpp_client_ready(const struct smpp_client *c);
bool smpp_client_bound(const struct smpp_client *c);
unsigned smpp_client_inflight(const struct smpp_client *c);

/* Sends one submit_sm; SR_EFULL when not ready, SR_EINVAL when it cannot
 * be packed. cb runs exactly once unless this returns non-zero. */
int smpp_client_submit(struct smpp_client *c, const struct smpp_sm *m,
                       smpp_submit_cb cb, void *ud, char *err, size_t errlen);

#endif
