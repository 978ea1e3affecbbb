/*
 * suspend.h - destination suspensions as the delivery engine sees them,
 * and the response rules that start them (policy destinations[].rules).
 *
 * A suspension lives in the replicated state (queue/qaction.h), so every
 * owner, present or future, honours it. The engine reads it through a small
 * cache refreshed from the state every SUSPEND_REFRESH_MS. When a remote
 * reply matches a rule of its destination, the engine proposes a
 * QueueAction suspend for the rule's time and honours it locally at once,
 * without waiting for the commit (for SUSPEND_LOCAL_HOLD_MS at least).
 *
 * Ownership: the delivery engine owns struct suspend; loop thread only.
 */
#ifndef SR_ENGINE_SUSPEND_H
#define SR_ENGINE_SUSPEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SUSPEND_REFRESH_MS 500
#define SUSPEND_LOCAL_HOLD_MS 3000

struct queue_store;
struct rnode;
struct policy_dest;
struct suspend;

struct suspension {
    uint64_t until_ms;   /* QACTION_FOREVER: until resumed */
    unsigned per_minute; /* 0: no delivery at all */
    char reason[200];
};

struct suspend *suspend_new(struct queue_store *store, struct rnode *rn,
                            uint64_t node_id);
void suspend_free(struct suspend *s);

/* Fills *out and returns true when domain is suspended at now_ms. */
bool suspend_get(struct suspend *s, const char *domain, uint64_t now_ms,
                 struct suspension *out);

/* A reply from domain's servers ("421 4.7.0 text", or a connection-level
 * reason): the first rule of pd that matches starts a suspension unless
 * one at least as long is in force. Returns true if it started one. */
bool suspend_check_reply(struct suspend *s, const struct policy_dest *pd,
                         const char *domain, const char *reply,
                         uint64_t now_ms);

#endif
