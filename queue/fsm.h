/*
 * fsm.h - the Raft state machine: libraft's struct raft_fsm over the LMDB
 * store (store.h).
 *
 * apply() decodes one framed entry (proto/codec.h) and applies it in one
 * LMDB transaction together with its index. libraft 0.15 replays every entry
 * after the last snapshot at each start, so entries at or below the stored
 * applied index are skipped. apply never fails: an entry that cannot be
 * decoded stops the node loudly (abort) before anything is half-applied,
 * since a failing apply would be retried forever.
 *
 * The result handed to raft_apply's callback is a pointer to an int array
 * (one status per op) owned by the fsm and valid until the next apply: the
 * leader's callback runs right after the apply of its entry.
 *
 * Snapshots (fsm version 2) serialize the whole LMDB state; bodies are not in
 * it, so its size does not depend on message sizes.
 */
#ifndef SR_QUEUE_FSM_H
#define SR_QUEUE_FSM_H

#include <raft.h>

#include "proto/smartrelay.pb-c.h"
#include "queue/store.h"

struct queue_fsm_result {
    uint64_t index;
    size_t n;
    const int *statuses;
};

/* Owned by the node; loop thread only. */
struct queue_fsm {
    struct raft_fsm fsm;       /* fsm.data points back here */
    struct raft *raft;         /* borrowed, to learn the index being applied */
    struct queue_store *store; /* borrowed */
    int *statuses;
    size_t cap;
    struct queue_fsm_result result;
    /* Called after each applied (not skipped) entry. */
    void (*on_apply)(void *ud, uint64_t index, const Sr__Entry *e,
                     const int *statuses);
    void *ud;
    /* Called after every entry with its per-op statuses, skipped replays
     * included (all SR_EEXIST). libraft 0.22 queues apply callbacks and
     * runs them after a whole run of entries was applied, so the result
     * pointer it hands them must not be relied on: the proposer takes the
     * statuses here, by index (raft/rnode.c). */
    void (*on_result)(void *ud, uint64_t index, size_t n_ops,
                      const int *statuses);
    void *result_ud;
};

void queue_fsm_init(struct queue_fsm *f, struct raft *raft,
                    struct queue_store *store);
void queue_fsm_close(struct queue_fsm *f);

#endif
