/*
 * store.h - the replicated state in LMDB: messages with per-recipient state,
 * indexes by state and by destination domain, counters, the cluster policy
 * and node addresses.
 *
 * Deterministic: queue_store_apply() depends only on its arguments and the
 * current state (no clock, no randomness, times come in the entry), so the
 * same log gives byte-identical databases on every node; queue_store_digest()
 * hashes them for comparison.
 *
 * Durability: the Raft log is the source of truth. The LMDB environment is
 * opened with MDB_NOSYNC (a process crash keeps everything written, the OS
 * has it); the applied index is stored in the same transaction as the state
 * it produced, so after a restart the entries replayed by Raft that are
 * already in the state are skipped (queue/fsm.c). queue_store_sync() flushes
 * to disk and is called from a worker thread.
 *
 * Failure: an apply that cannot be written (disk full, map full) aborts the
 * process loudly: continuing would let this node's state diverge.
 *
 * Threads: the loop thread only, except queue_store_sync().
 */
#ifndef SR_QUEUE_STORE_H
#define SR_QUEUE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "proto/smartrelay.pb-c.h"

enum rcpt_state {
    RCPT_QUEUED = 0,
    RCPT_INFLIGHT = 1,
    RCPT_DEFERRED = 2,
    RCPT_DELIVERED = 3,
    RCPT_BOUNCED = 4,
    RCPT_EXPIRED = 5,
    RCPT_HELD = 6,
    RCPT_QUARANTINED = 7,
    RCPT_SUPPRESSED = 8, /* the customer's suppression list has it */
    RCPT_SUBMITTED = 9,  /* SMS handed to an SMSC, receipts awaited */
    RCPT_STATE_MAX = 10
};

const char *queue_rcpt_state_name(unsigned state);

struct queue_store;

int queue_store_open(const char *dir, struct queue_store **out, char *err,
                     size_t errlen);
void queue_store_close(struct queue_store *s);
int queue_store_sync(struct queue_store *s);

uint64_t queue_store_applied(struct queue_store *s);

/* Applies one entry's operations atomically with index. statuses (n_ops
 * long) receives per-op results: 0 applied, SR_EEXIST already present,
 * SR_ETIMEDOUT stamped past its deadline, SR_EPARSE invalid policy,
 * SR_ENOTFOUND holder added to an unknown message; QueueAction and
 * RateGrant ops return a count >= 0 on success (qaction.h, tbucket.h). Never
 * fails: aborts the process if LMDB cannot write. */
void queue_store_apply(struct queue_store *s, uint64_t index,
                       const Sr__Entry *e, int *statuses);

/* Lookups. Returned objects are new; free with sr__..._free_unpacked. */
int queue_store_get_message(struct queue_store *s, const char *code,
                            Sr__StoredMessage **out);
int queue_store_get_node(struct queue_store *s, uint64_t id,
                         Sr__NodeInfo **out);
/* *json is malloc'd, or NULL with SR_ENOTFOUND when no policy was set. */
int queue_store_get_policy(struct queue_store *s, char **json);
/* Recipient counts by state and the number of messages. */
void queue_store_counts(struct queue_store *s, uint64_t counts[RCPT_STATE_MAX],
                        uint64_t *messages);
/* Calls fn for up to limit message codes in key order (0 = all). */
void queue_store_list(struct queue_store *s, size_t limit,
                      void (*fn)(void *ud, const char *code), void *ud);

/* Calls fn for up to limit stored messages with codes after `after` (""
 * or NULL = from the start), in code order; copies the last code seen into
 * last ("" when the end was reached). Returns the number visited. */
int queue_store_scan(struct queue_store *s, const char *after, size_t limit,
                     void (*fn)(void *ud, const Sr__StoredMessage *m), void *ud,
                     char *last, size_t lastlen);

/* SHA-256 over every database in key order, with the applied index. */
void queue_store_digest(struct queue_store *s, uint8_t out[32],
                        uint64_t *applied);

/* Serializes the whole state into a new malloc'd buffer. */
int queue_store_snapshot(struct queue_store *s, uint8_t **buf, size_t *len);
/* Replaces the whole state with a snapshot. SR_EPARSE leaves the state
 * untouched (the transaction is aborted). */
int queue_store_restore(struct queue_store *s, const uint8_t *buf, size_t len);

#endif
