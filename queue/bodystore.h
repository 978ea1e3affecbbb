/*
 * bodystore.h - the node-local store of message bodies.
 *
 * Bodies are kept out of the Raft log and snapshot (docs/ARCHITECTURE.md,
 * "Where message bodies live"): each holder writes a body once, here, and a
 * put completes only once the body is fsynced. The store is an LMDB
 * environment written by one worker thread that commits every pending put in
 * one transaction (group commit: one fsync for a batch of messages), so the
 * loop never waits on the disk.
 *
 * Ownership: put borrows data until its callback; get hands the callback a
 * malloc'd copy that the callback owns. Callbacks run on the loop thread.
 * A call that fails synchronously (negative return) never fires its
 * callback.
 */
#ifndef SR_BODYSTORE_H
#define SR_BODYSTORE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct body_store;

typedef void (*body_done_cb)(void *ud, int status);
typedef void (*body_get_cb)(void *ud, int status, uint8_t *data, size_t len);

/* window_us: when the previous batch held more than one body, the worker
 * waits this long for more before it writes and syncs (0 = never). */
int body_store_open(uv_loop_t *loop, const char *dir, unsigned window_us,
                    struct body_store **out, char *err, size_t errlen);
/* Changes the window for the batches that follow (any thread). */
void body_store_set_window(struct body_store *b, unsigned window_us);
/* Finishes queued work, stops the worker, closes the handle; the store is
 * freed when the loop runs the close callback. */
void body_store_close(struct body_store *b);

int body_store_put(struct body_store *b, const char *code, const uint8_t *data,
                   size_t len, body_done_cb cb, void *ud);
int body_store_get(struct body_store *b, const char *code, body_get_cb cb,
                   void *ud);
int body_store_del(struct body_store *b, const char *code, body_done_cb cb,
                   void *ud);

/* cb(ud, 0) if the body is here, SR_ENOTFOUND if not; reads nothing. */
int body_store_has(struct body_store *b, const char *code, body_done_cb cb,
                   void *ud);
/* Number of bodies held (as of the last batch the worker finished). */
uint64_t body_store_count(struct body_store *b);

/* Segment size (default 256 MiB); tests make it small to exercise
 * rolling. Call before the first put. */
void body_store_set_segment_max(struct body_store *b, uint64_t bytes);

/* Counters for the admin API. */
void body_store_stats(struct body_store *b, uint64_t *puts, uint64_t *bytes,
                      uint64_t *commits);

#endif
