/*
 * dqueue.h - the delivery side of the replicated state: delivery leases,
 * the shard table, when each pending recipient is due, the outcome of each
 * attempt and the events that outcomes leave behind.
 *
 * Shards (queue/shard.h) split the outbound queue by destination domain.
 * The leader assigns each shard to a node with a live lease (ShardAssign);
 * apply only moves a shard whose current owner is nobody or whose lease has
 * expired as of the entry's time, so the state never has two owners with
 * valid leases. A node delivers a shard's recipients while the table names
 * it and its own lease, measured from before it asked, has not run out
 * (engine/shards.c).
 *
 * DB_DUE holds one key per pending recipient: shard (1 byte), due time (8
 * bytes, big-endian), code, NUL, recipient number. The owner walks its
 * shards in due order. A DeliveryResult moves recipients on: delivered and
 * bounced leave the queue and leave an Event; deferred gets a new due time.
 * A result for a recipient that is no longer pending (a duplicate attempt,
 * after a failover) is ignored, so results are idempotent.
 *
 * Same determinism and failure rules as store.h.
 */
#ifndef SR_QUEUE_DQUEUE_H
#define SR_QUEUE_DQUEUE_H

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/smartrelay.pb-c.h"
#include "queue/shard.h"

struct queue_store;

enum delivery_outcome {
    DELIVERY_DELIVERED = 1,
    DELIVERY_DEFERRED = 2,
    DELIVERY_BOUNCED = 3,
    DELIVERY_EXPIRED = 4,
    DELIVERY_SUPPRESSED = 5, /* not sent: the address is suppressed */
    /* events that are not delivery outcomes */
    EVENT_OPEN = 6,
    EVENT_CLICK = 7,
    EVENT_UNSUBSCRIBE = 8,
    DELIVERY_SUBMITTED = 9, /* SMS: accepted by the SMSC, receipts awaited */
    EVENT_SMS_RECEIPT = 10, /* SMS: a receipt for one part */
};

const char *delivery_outcome_name(unsigned outcome);

/* ---- apply (store.c, inside the entry's transaction) ---- */

/* Indexes a new message's recipients as due at time_ms. */
void dqueue_index_new(struct queue_store *s, MDB_txn *txn, const char *code,
                      Sr__StoredMessage *m, uint64_t time_ms);
int dqueue_apply_lease(struct queue_store *s, MDB_txn *txn, uint64_t time_ms,
                       const Sr__LeaseRenew *l);
/* SR_EINVAL: wrong number of owners. 0 even when some shards kept their
 * owner because its lease was still valid. */
int dqueue_apply_shards(struct queue_store *s, MDB_txn *txn, uint64_t time_ms,
                        const Sr__ShardAssign *a);
/* An open, click or unsubscribe of a known message (else SR_ENOTFOUND,
 * SR_EINVAL): an Event; an unsubscribe also puts the recipient on the
 * customer's suppression list ("supp:" customer NUL address). */
int dqueue_apply_track(struct queue_store *s, MDB_txn *txn, uint64_t time_ms,
                       const Sr__TrackEvent *t);

/* Unowns the listed shards that r->node still owns; returns how many
 * (>= 0), SR_EINVAL before any assignment. */
int dqueue_apply_release(struct queue_store *s, MDB_txn *txn,
                         const Sr__ShardRelease *r);
/* SR_ENOTFOUND unknown message, SR_EINVAL bad outcome or recipient,
 * SR_EEXIST nothing was pending any more. A postponed result (the
 * destination is suspended) only moves the due time: no attempt, no
 * event. */
int dqueue_apply_result(struct queue_store *s, MDB_txn *txn, uint64_t time_ms,
                        const Sr__DeliveryResult *r);

/* Appends an event (apply only). */
void dqueue_event(struct queue_store *s, MDB_txn *txn, const Sr__Event *e);
/* Moves recipient i of m from its state to `to` in the state index and the
 * counters (m itself is updated; the caller stores it). */
void dqueue_set_state(struct queue_store *s, MDB_txn *txn, const char *code,
                      Sr__StoredMessage *m, unsigned i, unsigned to);

/* Moves pending recipient i of message m (code) to due_ms in the due
 * index and in m; the caller stores m (dqueue_put_message). */
void dqueue_reschedule(struct queue_store *s, MDB_txn *txn, const char *code,
                       Sr__StoredMessage *m, unsigned i, uint64_t due_ms);
void dqueue_put_message(struct queue_store *s, MDB_txn *txn, const char *code,
                        const Sr__StoredMessage *m);

/* A DSN for (code, rcpt) is being applied: 0 when the bounce was waiting
 * for it (the mark is taken), SR_EEXIST when not (already generated). */
int dqueue_take_dsn(struct queue_store *s, MDB_txn *txn, const char *code,
                    unsigned rcpt);

/* ---- reads (loop thread) ---- */

/* Calls fn for up to limit bounced or expired recipients, in shards of
 * shard_mask, whose DSN to the sender has not been generated yet. */
size_t dqueue_dsn_pending(struct queue_store *s, uint64_t shard_mask,
                          size_t limit,
                          void (*fn)(void *ud, const char *code, unsigned rcpt),
                          void *ud);

/* Calls fn for up to limit recipients that wait for delivery (queued,
 * then deferred), with their message; returns how many were visited. */
size_t dqueue_pending_scan(struct queue_store *s, size_t limit,
                           void (*fn)(void *ud, const Sr__StoredMessage *m,
                                      unsigned rcpt),
                           void *ud);

/* SMTP transactions recorded for domain (by any node) in the 10-second
 * buckets of entry time that end after since_ms: at least those since
 * since_ms, at most 10 s more. For destination throttles that hold
 * across an owner change. */
uint64_t dqueue_sends(struct queue_store *s, const char *domain,
                      uint64_t since_ms);

/* out[i]: whether customer's suppression list holds addrs[i]
 * (case-insensitive; a NULL address is not), in one read transaction. */
void dqueue_suppressed_many(struct queue_store *s, const char *customer,
                            const char *const *addrs, size_t n, bool *out);

/* Recipients of this customer's messages still queued or deferred. */
uint64_t dqueue_customer_pending(struct queue_store *s, const char *customer);

/* The shard table; owners are 0 before the first assignment. */
void dqueue_shards(struct queue_store *s, uint64_t owners[SHARD_COUNT],
                   uint64_t *epoch);
/* Fills up to cap (node, lease expiry in entry time) pairs; returns n. */
size_t dqueue_leases(struct queue_store *s, uint64_t *nodes, uint64_t *expiry,
                     size_t cap);

/* Calls fn for recipients due at or before now_ms in the shards of
 * shard_mask (bit i = shard i), earliest first per shard, at most limit in
 * total. Returns how many were visited. */
size_t dqueue_due(struct queue_store *s, uint64_t shard_mask, uint64_t now_ms,
                  size_t limit,
                  void (*fn)(void *ud, const char *code, unsigned rcpt,
                             uint64_t due_ms),
                  void *ud);

/* Calls fn for up to limit events with sequence numbers after `after`;
 * returns the last sequence visited (after, if none). */
uint64_t dqueue_events(struct queue_store *s, uint64_t after, size_t limit,
                       void (*fn)(void *ud, uint64_t seq, const Sr__Event *e),
                       void *ud);

#endif
