/*
 * dsn.h - what a failed delivery tells the sender: a bounce class for the
 * event, and the delivery status notification (RFC 3464) mailed back.
 *
 * Pure functions (no clock, no I/O): the delivery engine passes the time.
 */
#ifndef SR_ENGINE_DSN_H
#define SR_ENGINE_DSN_H

#include <stddef.h>
#include <stdint.h>

/* One of: invalid_recipient, mailbox_full, domain_error, policy_block,
 * content_rejected, relay_denied, message_expired, transient, other.
 * outcome: queue/dqueue.h enum delivery_outcome. Static strings. */
const char *dsn_classify(const char *reply, unsigned outcome);

/* The RFC 3463 status of a reply: its enhanced code when it has one whose
 * class matches the reply code, else X.0.0 from the reply code, else
 * `fallback`. out holds 16 bytes. */
void dsn_status(const char *reply, const char *fallback, char out[16]);

struct dsn_info {
    const char *host;     /* this node's name: Reporting-MTA, From */
    const char *code;     /* the original message's code */
    const char *sender;   /* original reverse-path: the DSN's recipient */
    const char *rcpt;     /* the recipient that failed */
    const char *reply;    /* the remote reply, or the local reason */
    const char *relay;    /* where it was tried ("" if nowhere) */
    unsigned outcome;     /* DELIVERY_BOUNCED or DELIVERY_EXPIRED */
    uint64_t arrival_ms;  /* when the original was accepted */
    uint64_t now_ms;      /* Date: of the DSN */
    const char *original; /* the original message (its header is quoted) */
    size_t original_len;
};

/* Builds the DSN message (CRLF line ends) into a new malloc'd buffer.
 * Returns 0 or SR_ENOMEM / SR_EINVAL (missing fields). */
int dsn_build(const struct dsn_info *in, char **out, size_t *len);

#endif
