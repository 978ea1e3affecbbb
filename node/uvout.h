/*
 * uvout.h - writes to a libuv stream that try the socket first.
 *
 * libuv's uv_write() of a buffer that the kernel takes at once still
 * schedules a write callback and, once the queue drains, re-arms the
 * descriptor in epoll (one epoll_ctl per reply on a busy SMTP session).
 * uvout_write() calls uv_try_write() first and queues only what the socket
 * did not take, so the common small reply costs one write(2).
 *
 * Ownership: `buf` (malloc'd) is taken in every case: freed at once when
 * all of it was written or on error, else after the queued write completes.
 * `done`, when not NULL, runs only for a queued write, with its status and
 * `ud`; a write that completed at once has nothing more to report.
 * Ordering is kept: uv_try_write refuses while earlier writes are queued.
 */
#ifndef SR_NODE_UVOUT_H
#define SR_NODE_UVOUT_H

#include <stddef.h>
#include <uv.h>

typedef void (*uvout_cb)(void *ud, int status);

/* 0, or a negative SR_ code (the stream refused the write). */
int uvout_write(uv_stream_t *s, char *buf, size_t len, uvout_cb done, void *ud);

/* The same for a buffer the caller keeps: only what the socket did not
 * take at once is copied (and queued). */
int uvout_write_copy(uv_stream_t *s, const char *buf, size_t len);

#endif
