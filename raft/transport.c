/* transport.c - the Raft transport: mutual TLS links, or libraft's TCP
 * transport with TCP_NODELAY (see transport.h). */
#include "raft/transport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "node/config.h"
#include "node/errors.h"
#include "raft/peertls.h"

/* ---- plaintext: proxy around raft_uv_tcp ---- */

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

static void on_accept(struct raft_uv_transport *inner, raft_id id,
                      const char *address, struct uv_stream_s *stream)
{
    struct sr_transport *t = inner->data;
    tune(stream);
    t->accept_cb(&t->outer, id, address, stream);
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

static void on_inner_closed(struct raft_uv_transport *inner)
{
    struct sr_transport *t = inner->data;
    if (t->close_cb)
        t->close_cb(&t->outer);
}

/* ---- TLS: peertls links handed to libraft as pipes ---- */

/* A pending TLS connect; freed after libraft's callback ran. */
struct tconnect {
    struct tconnect *next, *prev;
    struct sr_transport *t;
    struct raft_uv_connect *req;
    struct peertls_connect *pc;
};

/* Wraps the plaintext fd in a pipe allocated with raft_malloc: libraft
 * frees the streams it closes with raft_free. */
static struct uv_stream_s *open_stream(struct sr_transport *t, int fd)
{
    uv_pipe_t *pipe = raft_malloc(sizeof *pipe);
    if (pipe == NULL) {
        close(fd);
        return NULL;
    }
    uv_pipe_init(t->loop, pipe, 0);
    if (uv_pipe_open(pipe, fd) != 0) {
        close(fd);
        uv_close((uv_handle_t *)pipe, (uv_close_cb)raft_free);
        return NULL;
    }
    return (struct uv_stream_s *)pipe;
}

static void on_tls_accept(void *ud, int fd, uint64_t peer_id,
                          const char *address)
{
    struct sr_transport *t = ud;
    struct uv_stream_s *s = open_stream(t, fd);
    if (s != NULL)
        t->accept_cb(&t->outer, peer_id, address, s);
}

static void on_tls_connect(void *ud, int fd, int status)
{
    struct tconnect *c = ud;
    struct sr_transport *t = c->t;
    if (c->prev)
        c->prev->next = c->next;
    else
        t->connecting = c->next;
    if (c->next)
        c->next->prev = c->prev;
    struct raft_uv_connect *req = c->req;
    free(c);
    if (status == 0) {
        struct uv_stream_s *s = open_stream(t, fd);
        if (s != NULL) {
            req->cb(req, s, 0);
            return;
        }
        status = SR_ENOMEM;
    }
    req->cb(req, NULL,
            status == SR_ECANCELED ? RAFT_CANCELED : RAFT_NOCONNECTION);
}

static void on_closer(uv_handle_t *h)
{
    struct sr_transport *t = h->data;
    if (t->close_cb)
        t->close_cb(&t->outer);
}

/* ---- the raft_uv_transport methods ---- */

static int t_init(struct raft_uv_transport *outer, raft_id id,
                  const char *address)
{
    struct sr_transport *t = outer->impl;
    if (t->plain) {
        int rc = t->inner.init(&t->inner, id, address);
        if (rc != 0)
            memcpy(outer->errmsg, t->inner.errmsg, sizeof outer->errmsg);
        return rc;
    }
    char err[SR_ERRMSG_SIZE];
    int rc = peertls_new(t->loop, PEERTLS_RAFT, id, address,
                         t->cfg->cluster_tls_ca, t->cfg->cluster_tls_cert,
                         t->cfg->cluster_tls_key, &t->tls, err, sizeof err);
    if (rc != 0) {
        snprintf(outer->errmsg, sizeof outer->errmsg, "%s", err);
        return RAFT_INVALID;
    }
    return 0;
}

static int t_listen(struct raft_uv_transport *outer, raft_uv_accept_cb cb)
{
    struct sr_transport *t = outer->impl;
    t->accept_cb = cb;
    if (t->plain) {
        int rc = t->inner.listen(&t->inner, on_accept);
        if (rc != 0)
            memcpy(outer->errmsg, t->inner.errmsg, sizeof outer->errmsg);
        return rc;
    }
    char err[SR_ERRMSG_SIZE];
    if (peertls_listen(t->tls, t->cfg->raft_listen, on_tls_accept, t, err,
                       sizeof err) != 0) {
        snprintf(outer->errmsg, sizeof outer->errmsg, "%s", err);
        return RAFT_IOERR;
    }
    return 0;
}

static int t_connect(struct raft_uv_transport *outer,
                     struct raft_uv_connect *req, raft_id id,
                     const char *address, raft_uv_connect_cb cb)
{
    struct sr_transport *t = outer->impl;
    req->cb = cb;
    if (t->plain) {
        struct connect_req *r = calloc(1, sizeof *r);
        if (r == NULL)
            return RAFT_NOMEM;
        r->outer = req;
        r->inner.data = r;
        int rc =
            t->inner.connect(&t->inner, &r->inner, id, address, on_connect);
        if (rc != 0) {
            free(r);
            memcpy(outer->errmsg, t->inner.errmsg, sizeof outer->errmsg);
        }
        return rc;
    }
    struct tconnect *c = calloc(1, sizeof *c);
    if (c == NULL)
        return RAFT_NOMEM;
    c->t = t;
    c->req = req;
    int rc = peertls_connect(t->tls, id, address, on_tls_connect, c, &c->pc);
    if (rc != 0) {
        free(c);
        snprintf(outer->errmsg, sizeof outer->errmsg, "connect %s: %s", address,
                 sr_strerror(rc));
        return rc == SR_ENOMEM ? RAFT_NOMEM : RAFT_NOCONNECTION;
    }
    c->next = t->connecting;
    if (t->connecting)
        t->connecting->prev = c;
    t->connecting = c;
    return 0;
}

static void t_close(struct raft_uv_transport *outer,
                    raft_uv_transport_close_cb cb)
{
    struct sr_transport *t = outer->impl;
    t->close_cb = cb;
    if (t->plain) {
        t->inner.close(&t->inner, on_inner_closed);
        return;
    }
    while (t->connecting)
        peertls_connect_cancel(t->connecting->pc); /* unlinks it */
    if (t->tls) {
        peertls_close(t->tls);
        t->tls = NULL;
    }
    /* libraft wants the callback after close returns. */
    uv_close((uv_handle_t *)&t->closer, on_closer);
}

int sr_transport_init(struct sr_transport *t, struct uv_loop_s *loop,
                      const struct sr_config *cfg)
{
    memset(t, 0, sizeof *t);
    t->loop = loop;
    t->cfg = cfg;
    t->plain = cfg->cluster_tls_ca == NULL;
    if (t->plain) {
        t->inner.version = 1;
        int rc = raft_uv_tcp_init(&t->inner, loop);
        if (rc != 0)
            return rc;
        t->inner.data = t;
    } else {
        uv_idle_init(loop, &t->closer);
        t->closer.data = t;
    }
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
    if (t->plain)
        raft_uv_tcp_close(&t->inner);
}
