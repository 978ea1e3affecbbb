/*
 * qaction.h - actions on the outbound queue that operators (clusterctl
 * queue ...) and the delivery engine's response rules take, applied as
 * QueueAction ops, and the suspensions they leave in the state.
 *
 *   suspend DOMAIN  no delivery to DOMAIN (or, with per_minute, at most that
 *                   many transactions a minute) until a time or until
 *                   resumed; the owner postpones what comes due meanwhile.
 *   resume DOMAIN   ends the suspension; the domain's waiting recipients
 *                   become due now.
 *   retry DOMAIN|CODE  the waiting recipients become due now.
 *   bounce CODE     the message's waiting recipients fail permanently
 *                   (a bounce event and a DSN, as for a 5xx).
 *
 * A suspension is stored under "susp:<domain>" in the meta table with the
 * entry time it began; one whose until has passed (in entry time) is
 * ignored by readers and dropped by the next action. Retry and resume walk
 * the domain index: their cost grows with the messages kept for that
 * domain, which is why they are operator actions and not per-message ones.
 *
 * Apply runs inside the entry's transaction (store.c) and follows the
 * rules of store.h: deterministic, times from the entry.
 */
#ifndef SR_QUEUE_QACTION_H
#define SR_QUEUE_QACTION_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/smartrelay.pb-c.h"

struct queue_store;

enum queue_action {
    QUEUE_SUSPEND = 1,
    QUEUE_RESUME = 2,
    QUEUE_RETRY = 3,
    QUEUE_BOUNCE = 4,
};

#define QACTION_FOREVER UINT64_MAX /* stored until_ms of "until resumed" */

/* Returns the number of recipients moved (>= 0; suspend: 0), or
 * SR_EINVAL (bad action or arguments), SR_ENOTFOUND (no such message,
 * or resume of a domain that is not suspended). */
int qaction_apply(struct queue_store *s, MDB_txn *txn, uint64_t time_ms,
                  const Sr__QueueAction *a);

/* ---- reads (loop thread) ---- */

/* The suspension of domain still in force at now_ms: 0 and *out (free with
 * sr__stored_suspension__free_unpacked), or SR_ENOTFOUND. */
int qaction_suspension(struct queue_store *s, const char *domain,
                       uint64_t now_ms, Sr__StoredSuspension **out);

/* Calls fn for every suspension in force at now_ms; returns how many. */
size_t qaction_suspensions(struct queue_store *s, uint64_t now_ms,
                           void (*fn)(void *ud, const Sr__StoredSuspension *x),
                           void *ud);

const char *qaction_name(unsigned action);

#endif
