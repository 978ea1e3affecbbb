/*
 * rates.h - cluster-wide sending rates: the general throttling agreement
 * (policy global.per_second) and each customer's messages per second and
 * per hour (policy customers[].per_second, per_hour).
 *
 * These limits span shards, so no single owner holds them. Each node leases
 * tokens from a replicated token bucket per scope (queue/tbucket.h): when it
 * has none it proposes a RateGrant for a quarter second's worth (at least
 * one), spends what the committed entry granted within
 * TBUCKET_GRANT_TTL_MS, and drops the rest. After a refusal it waits until
 * the bucket can have refilled one token before it asks again.
 *
 * Buckets: per_second scopes hold one second's worth; per_hour scopes one
 * minute's worth (at least one token). So over any interval of T seconds
 * the whole cluster sends at most burst + rate * (T + 1) messages of a
 * scope; tests/integration/test_rates.py measures that at the destination
 * with two nodes sending.
 *
 * Ownership: the delivery engine owns struct rates; loop thread only.
 * Proposals in flight keep it alive after rates_free (freed by the last).
 */
#ifndef SR_ENGINE_RATES_H
#define SR_ENGINE_RATES_H

#include <stdbool.h>
#include <stdint.h>

struct rnode;
struct policy;
struct rates;

/* on_grant runs when tokens arrive (to wake up waiting destinations). */
struct rates *rates_new(struct rnode *rn, uint64_t node_id,
                        void (*on_grant)(void *ud), void *ud);
void rates_free(struct rates *r);

/* May one message of customer be sent now? Takes one token of every scope
 * that limits it, or none; asks for more where it lacks them. */
bool rates_take(struct rates *r, const struct policy *p, const char *customer,
                uint64_t now_ms);

/* One token of a scope of its own (e.g. "smsc:NAME" for an SMSC's
 * contractual rate): per_hour refill, burst bucket size. */
bool rates_take_scope(struct rates *r, const char *scope, uint64_t per_hour,
                      uint32_t burst, uint64_t now_ms);

#endif
