/* fsm.c - libraft state machine over the LMDB store (see fsm.h). */
#include "queue/fsm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/errors.h"
#include "node/log.h"
#include "proto/codec.h"

static void fatal(const char *what, uint64_t index, int rc)
{
    LOG_ERROR("event=fatal what=\"%s\" index=%llu error=%s", what,
              (unsigned long long)index, sr_strerror(rc));
    fprintf(stderr, "smartrelayd: fatal: %s at index %llu: %s\n", what,
            (unsigned long long)index, sr_strerror(rc));
    abort();
}

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf,
                     void **result)
{
    struct queue_fsm *f = fsm->data;
    /* libraft sets last_applied after apply returns. */
    uint64_t index = raft_last_applied(f->raft) + 1;
    Sr__Entry *e;
    int rc = codec_entry_decode(buf->base, buf->len, &e);
    if (rc != 0)
        fatal("undecodable log entry", index, rc);
    if (e->n_ops > f->cap) {
        int *p = realloc(f->statuses, e->n_ops * sizeof *p);
        if (p == NULL)
            fatal("out of memory applying entry", index, SR_ENOMEM);
        f->statuses = p;
        f->cap = e->n_ops;
    }
    if (index <= queue_store_applied(f->store)) {
        /* Replayed after a restart: already in the state. */
        for (size_t i = 0; i < e->n_ops; i++)
            f->statuses[i] = SR_EEXIST;
    } else {
        queue_store_apply(f->store, index, e, f->statuses);
        if (f->on_apply)
            f->on_apply(f->ud, index, e, f->statuses);
    }
    if (f->on_result)
        f->on_result(f->result_ud, index, e->n_ops, f->statuses);
    f->result.index = index;
    f->result.n = e->n_ops;
    f->result.statuses = f->statuses;
    *result = &f->result;
    sr__entry__free_unpacked(e, NULL);
    return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[],
                        unsigned *n_bufs)
{
    struct queue_fsm *f = fsm->data;
    uint8_t *data;
    size_t len;
    int rc = queue_store_snapshot(f->store, &data, &len);
    if (rc != 0)
        return RAFT_NOMEM;
    struct raft_buffer *b = malloc(sizeof *b);
    if (b == NULL) {
        free(data);
        return RAFT_NOMEM;
    }
    b->base = data;
    b->len = len;
    *bufs = b;
    *n_bufs = 1;
    LOG_INFO("event=snapshot index=%llu bytes=%zu",
             (unsigned long long)queue_store_applied(f->store), len);
    return 0;
}

static int fsm_snapshot_finalize(struct raft_fsm *fsm,
                                 struct raft_buffer *bufs[], unsigned *n_bufs)
{
    (void)fsm;
    for (unsigned i = 0; i < *n_bufs; i++)
        free((*bufs)[i].base);
    free(*bufs);
    *bufs = NULL;
    *n_bufs = 0;
    return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    struct queue_fsm *f = fsm->data;
    int rc = queue_store_restore(f->store, buf->base, buf->len);
    if (rc != 0) {
        LOG_ERROR("event=restore_failed bytes=%zu error=%s", buf->len,
                  sr_strerror(rc));
        return RAFT_CORRUPT;
    }
    LOG_INFO("event=restored index=%llu bytes=%zu",
             (unsigned long long)queue_store_applied(f->store), buf->len);
    /* On success the FSM owns the buffer (raft.h). */
    raft_free(buf->base);
    if (f->on_apply)
        f->on_apply(f->ud, queue_store_applied(f->store), NULL, NULL);
    return 0;
}

void queue_fsm_init(struct queue_fsm *f, struct raft *raft,
                    struct queue_store *store)
{
    memset(f, 0, sizeof *f);
    f->fsm.version = 2;
    f->fsm.data = f;
    f->fsm.apply = fsm_apply;
    f->fsm.snapshot = fsm_snapshot;
    f->fsm.restore = fsm_restore;
    f->fsm.snapshot_finalize = fsm_snapshot_finalize;
    f->raft = raft;
    f->store = store;
}

void queue_fsm_close(struct queue_fsm *f)
{
    free(f->statuses);
    f->statuses = NULL;
    f->cap = 0;
}
