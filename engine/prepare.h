/*
 * prepare.h - a message made ready for one recipient before it is sent:
 * the customer's re-wrap (engine/rewrap.h) and DKIM signatures
 * (engine/dkim.h), on libuv's worker threads, never on the loop.
 *
 * prepare_start copies from the policy everything the worker needs (the
 * policy may change while it runs) and borrows the message bytes, which
 * must stay valid until done runs on the loop. DKIM signers are made on
 * the loop when first needed (each reads its key files, a few KB) and
 * kept per customer and key set; a key that cannot be read is retried
 * after PREPARE_RETRY_MS, and meanwhile mail goes out unsigned with a note,
 * as opendkim does when a key is missing (the alternative, holding mail,
 * would turn one missing file into a growing queue).
 *
 * If the re-wrap refuses its input (SR_EINVAL) the message goes out as it
 * was, with a note; a body the re-wrap could not parse is still signed.
 *
 * Ownership: the delivery engine owns struct prepare; loop thread only,
 * except inside the work itself. prepare_free only when no work runs.
 */
#ifndef SR_ENGINE_PREPARE_H
#define SR_ENGINE_PREPARE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define PREPARE_RETRY_MS 60000

struct prepare;
struct policy;

/* What done gets; msg (malloc'd, taken by the callee) is NULL when the
 * original bytes go out; sender "" when the envelope sender stays. */
struct prepare_out {
    char *msg;
    size_t len;
    char sender[320];
    char note[256]; /* why something was skipped, "" if nothing */
};

struct prepare *prepare_new(void);
void prepare_free(struct prepare *p);

/* Re-wraps and signs msg for rcpt (index idx of message code) of customer
 * under policy pol. Returns 0 (done will run on the loop) or SR_EINVAL
 * (the customer has no re-wrap), SR_ENOMEM. */
int prepare_start(struct prepare *p, uv_loop_t *loop, const struct policy *pol,
                  const char *customer, const char *code, const char *rcpt,
                  uint32_t idx, const char *msg, size_t len,
                  void (*done)(void *ud, const struct prepare_out *out),
                  void *ud);

#endif
