/*
 * tbucket.h - cluster-wide rates as token buckets in the replicated state.
 *
 * A rate that spans nodes (the global agreement, a customer's messages per
 * second or per hour) cannot be split by shard the way destination limits
 * are. Nodes lease tokens instead: a RateGrant op asks for `want` tokens of
 * a scope; apply refills the scope's bucket by the entry time elapsed
 * (per_hour tokens an hour, at most `burst`), grants what is there up
 * to want, and returns the number granted as the op's status. Apply is
 * serial, so the grants of all nodes together never exceed burst plus the
 * refill, whatever the nodes do; a node spends a grant within
 * TBUCKET_GRANT_TTL_MS of receiving it or drops it (engine/rates.c).
 *
 * Bucket: key "tb:<scope>" in the meta table, 16 bytes: the tokens in
 * units of 1/3,600,000 (so per_hour units accrue per ms, exactly) and the
 * entry time of the last refill (big-endian). A new bucket starts full.
 * A leader whose clock runs behind the last refill refills nothing.
 */
#ifndef SR_QUEUE_TBUCKET_H
#define SR_QUEUE_TBUCKET_H

#include <lmdb.h>
#include <stdint.h>

#include "proto/smartrelay.pb-c.h"

struct queue_store;

#define TBUCKET_WANT_MAX 100000
#define TBUCKET_GRANT_TTL_MS 1000
#define TBUCKET_PER_HOUR_MAX (3600ull * 1000000)
#define TBUCKET_REFILL_MAX_MS (7200ull * 1000) /* a full bucket anyway */

/* Returns the tokens granted (0..want) or SR_EINVAL. */
int tbucket_apply(struct queue_store *s, MDB_txn *txn, uint64_t time_ms,
                  const Sr__RateGrant *g);

/* Tokens left in scope's bucket as of its last refill (tests, status). */
uint64_t tbucket_tokens(struct queue_store *s, const char *scope);

#endif
