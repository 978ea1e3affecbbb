/* transport.c - proxy Raft transport that sets TCP_NODELAY (see
 * transport.h). */
#include "raft/transport.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* A connect request in flight; freed after its callback. */
struct connect_req {
    struct raft_uv_connect inner;
    struct raft_uv_connect *outer;
};

static void tune(struct uv_stream_s *stream)
{
    if (stream != NULL && stream->type == UV_TCP)
        uv_tcp_nodelay((uv_tcp_t *)stream, 1);
}

static int t_init(struct raft_uv_transport *outer, raft_id id,
                  const char *address)
{
    struct sr_transport *t = outer->impl;
    int rc = t->inner.init(&t->inner, id, address);
    if (rc != 0)
        memcpy(outer->errmsg, t->inner.errmsg, sizeof outer->errmsg);
    return rc;
}

static void on_accept(struct raft_uv_transport *inner, raft_id id,
                      const char *address, struct uv_stream_s *stream)
{
    struct sr_transport *t = inner->data;
    tune(stream);
    t->accept_cb(&t->outer, id, address, stream);
}

static int t_listen(struct raft_uv_transport *outer, raft_uv_accept_cb cb)
{
    struct sr_transport *t = outer->impl;
    t->accept_cb = cb;
    int rc = t->inner.listen(&t->inner, on_accept);
    if (rc != 0)
        memcpy(outer->errmsg, t->inner.errmsg, sizeof outer->errmsg);
    return rc;
}

static void on_connect(struct raft_uv_connect *inner,
                       struct uv_stream_s *stream, int status)
{
    struct connect_req *r = inner->data;
    struct raft_uv_connect *outer = r->outer;
    free(r);
    if (status == 0)
        tune(stream);
    outer->cb(outer, stream, status);
}

static int t_connect(struct raft_uv_transport *outer,
                     struct raft_uv_connect *req, raft_id id,
                     const char *address, raft_uv_connect_cb cb)
{
    struct sr_transport *t = outer->impl;
    struct connect_req *r = calloc(1, sizeof *r);
    if (r == NULL)
        return RAFT_NOMEM;
    req->cb = cb;
    r->outer = req;
    r->inner.data = r;
    int rc = t->inner.connect(&t->inner, &r->inner, id, address, on_connect);
    if (rc != 0) {
        free(r);
        memcpy(outer->errmsg, t->inner.errmsg, sizeof outer->errmsg);
    }
    return rc;
}

static void on_inner_closed(struct raft_uv_transport *inner)
{
    struct sr_transport *t = inner->data;
    if (t->close_cb)
        t->close_cb(&t->outer);
}

static void t_close(struct raft_uv_transport *outer,
                    raft_uv_transport_close_cb cb)
{
    struct sr_transport *t = outer->impl;
    t->close_cb = cb;
    t->inner.close(&t->inner, on_inner_closed);
}

int sr_transport_init(struct sr_transport *t, struct uv_loop_s *loop)
{
    memset(t, 0, sizeof *t);
    t->inner.version = 1; /* libraft 0.22 checks it */
    int rc = raft_uv_tcp_init(&t->inner, loop);
    if (rc != 0)
        return rc;
    t->inner.data = t;
    t->outer.version = 1;
    t->outer.impl = t;
    t->outer.init = t_init;
    t->outer.listen = t_listen;
    t->outer.connect = t_connect;
    t->outer.close = t_close;
    return 0;
}

void sr_transport_close(struct sr_transport *t)
{
    raft_uv_tcp_close(&t->inner);
}
