/*
 * store_int.h - what the state store's own modules share (store.c and
 * dqueue.c): the LMDB handles and the write helpers. Not for anyone else;
 * the public interface is store.h.
 */
#ifndef SR_QUEUE_STORE_INT_H
#define SR_QUEUE_STORE_INT_H

#include <lmdb.h>
#include <stdint.h>

/* The databases, in digest and snapshot order. Never reorder: the snapshot
 * format refers to them by position; new ones go at the end. */
enum {
    DB_META,
    DB_MSGS,
    DB_IDX_STATE,
    DB_IDX_DOMAIN,
    DB_NODES,
    DB_DUE,    /* shard, due time, code, rcpt -> "": what to deliver when */
    DB_EVENTS, /* sequence -> Event: delivery events, for export */
    DB_COUNT
};

/* Owned by the node; the loop thread uses it (see store.h). */
struct queue_store {
    MDB_env *env;
    MDB_dbi dbi[DB_COUNT];
    uint64_t applied; /* cache of meta "applied" */
};

/* Aborts the process, loudly: a write the state needs failed. */
void store_die(const char *what, int rc) __attribute__((noreturn));
void store_put(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t klen,
               const void *v, size_t vlen);
void store_count_add(struct queue_store *s, MDB_txn *txn, const char *name,
                     int64_t delta);
/* The stored message `code` in txn, unpacked (the caller frees it with
 * sr__stored_message__free_unpacked), or NULL when code is empty or not
 * stored; an undecodable record aborts (store_die). */
Sr__StoredMessage *store_load_msg(struct queue_store *s, MDB_txn *txn,
                                  const char *code);

#endif
