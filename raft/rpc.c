/* rpc.c - node-to-node RPC over TCP (see rpc.h). */
#include "raft/rpc.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "node/config.h"
#include "node/errors.h"
#include "node/log.h"
#include "node/uvout.h"
#include "proto/codec.h"
#include "raft/peertls.h"

#define RPC_IDLE_MS 120000
#define RPC_SWEEP_MS 100

/* A request waiting for its response; owned by its peer's list. */
struct pending {
    struct pending *next;
    uint64_t id;
    uint64_t deadline;
    rpc_resp_cb cb;
    void *ud;
};

/* Receive buffer shared by both connection kinds. */
struct rbuf {
    uint8_t *p;
    size_t len, cap;
};

/* Outgoing connection to one peer; owned by struct rpc. */
struct peer {
    struct peer *next;
    struct rpc *rpc;
    uint64_t id;
    char address[128];
    union {
        uv_tcp_t tcp;   /* plaintext */
        uv_pipe_t pipe; /* TLS: the plaintext end of a peertls link */
    } h;
    uv_connect_t connect;
    struct peertls_connect *pc; /* TLS connect in flight (state 1) */
    int state; /* 0 closed, 1 connecting, 2 connected, 3 closing */
    struct pending *pending;
    uv_buf_t *queued; /* frames written before connect completes */
    size_t n_queued;
    struct rbuf in;
};

/* Incoming connection; owned by struct rpc; freed in its close callback. */
struct sconn {
    struct sconn *next, *prev;
    struct rpc *rpc;
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    uint64_t peer_id; /* TLS: verified by its certificate; 0 plaintext */
    struct rbuf in;
    struct rpc_call *calls; /* outstanding, so they can be detached */
    uint64_t last_active;
    int closing;
};

struct rpc_call {
    struct rpc_call *next, *prev;
    struct sconn *conn; /* NULL once the connection is gone */
    struct rpc *rpc;
    Sr__Rpc *req;
};

struct rpc {
    uv_loop_t *loop;
    uint64_t self;
    uint64_t next_id;
    uv_tcp_t listener;   /* plaintext */
    struct peertls *tls; /* TLS: listener and links */
    uv_timer_t sweep;
    rpc_handler_fn handler;
    void *ud;
    struct peer *peers;
    struct sconn *conns;
    int open_handles;
    int closing;
};

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    (void)h;
    buf->base = malloc(65536);
    buf->len = buf->base ? 65536 : 0;
}

static int rbuf_add(struct rbuf *b, const char *d, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (p == NULL)
            return SR_ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
    return 0;
}

/* Calls fn for every complete frame; returns SR_EPARSE on a bad frame. */
static int rbuf_frames(struct rbuf *b, void (*fn)(void *, Sr__Rpc *), void *arg)
{
    size_t off = 0;
    int rc = 0;
    for (;;) {
        long n = codec_rpc_frame_size(b->p + off, b->len - off);
        if (n == 0)
            break;
        if (n < 0) {
            rc = SR_EPARSE;
            break;
        }
        Sr__Rpc *m;
        if (codec_rpc_decode(b->p + off, (size_t)n, &m) != 0) {
            rc = SR_EPARSE;
            break;
        }
        off += (size_t)n;
        fn(arg, m);
    }
    memmove(b->p, b->p + off, b->len - off);
    b->len -= off;
    return rc;
}

static int write_frame(uv_stream_t *s, uint8_t *frame, size_t len)
{
    /* A failed queued write shows up as a read error on the same stream. */
    return uvout_write(s, (char *)frame, len, NULL, NULL);
}

static void rpc_unref(struct rpc *r);
static void handle_closed(uv_handle_t *h);

/* ---- client side ---- */

static void peer_fail_all(struct peer *p, int status)
{
    struct pending *list = p->pending;
    p->pending = NULL;
    while (list) {
        struct pending *q = list;
        list = q->next;
        q->cb(q->ud, status, NULL);
        free(q);
    }
}

static void peer_closed(uv_handle_t *h)
{
    struct peer *p = h->data;
    p->state = 0;
    rpc_unref(p->rpc);
}

static void peer_drop(struct peer *p, int status)
{
    if (p->state == 0 || p->state == 3)
        return;
    for (size_t i = 0; i < p->n_queued; i++)
        free(p->queued[i].base);
    free(p->queued);
    p->queued = NULL;
    p->n_queued = 0;
    p->in.len = 0;
    if (p->pc != NULL) { /* TLS connect in flight: no handle yet */
        struct peertls_connect *pc = p->pc;
        p->pc = NULL;
        p->state = 0;
        peertls_connect_cancel(pc);
        peer_fail_all(p, status);
        return;
    }
    p->state = 3;
    uv_close((uv_handle_t *)&p->h, peer_closed);
    peer_fail_all(p, status);
}

static void peer_on_frame(void *arg, Sr__Rpc *m)
{
    struct peer *p = arg;
    struct pending **pp = &p->pending;
    while (*pp && (*pp)->id != m->id)
        pp = &(*pp)->next;
    if (*pp && m->response) {
        struct pending *q = *pp;
        *pp = q->next;
        q->cb(q->ud, 0, m);
        free(q);
    }
    sr__rpc__free_unpacked(m, NULL);
}

static void peer_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct peer *p = s->data;
    if (n > 0 && rbuf_add(&p->in, buf->base, (size_t)n) == 0) {
        if (rbuf_frames(&p->in, peer_on_frame, p) != 0)
            peer_drop(p, SR_EIO);
    } else if (n < 0) {
        peer_drop(p, SR_EIO);
    }
    free(buf->base);
}

static void peer_up(struct peer *p)
{
    p->state = 2;
    uv_read_start((uv_stream_t *)&p->h, alloc_cb, peer_read);
    for (size_t i = 0; i < p->n_queued; i++)
        write_frame((uv_stream_t *)&p->h, (uint8_t *)p->queued[i].base,
                    p->queued[i].len);
    free(p->queued);
    p->queued = NULL;
    p->n_queued = 0;
}

static void peer_connected(uv_connect_t *c, int status)
{
    struct peer *p = c->data;
    if (p->state != 1)
        return;
    if (status != 0) {
        LOG_DEBUG("event=rpc_connect_failed peer=%llu address=%s error=%s",
                  (unsigned long long)p->id, p->address, uv_strerror(status));
        peer_drop(p, SR_EIO);
        return;
    }
    uv_tcp_nodelay(&p->h.tcp, 1);
    peer_up(p);
}

/* A TLS link to the peer is up (fd), or failed (status). */
static void peer_tls_connected(void *ud, int fd, int status)
{
    struct peer *p = ud;
    if (p->pc == NULL)
        return; /* peer_drop cancelled it */
    p->pc = NULL;
    if (status == 0) {
        uv_pipe_init(p->rpc->loop, &p->h.pipe, 0);
        p->h.pipe.data = p;
        p->rpc->open_handles++;
        if (uv_pipe_open(&p->h.pipe, fd) == 0) {
            peer_up(p);
            return;
        }
        close(fd);
        p->state = 3;
        uv_close((uv_handle_t *)&p->h, peer_closed);
    } else {
        p->state = 0;
    }
    for (size_t i = 0; i < p->n_queued; i++)
        free(p->queued[i].base);
    free(p->queued);
    p->queued = NULL;
    p->n_queued = 0;
    peer_fail_all(p, status == SR_EAUTH ? SR_EAUTH : SR_EIO);
}

static struct peer *peer_get(struct rpc *r, uint64_t id, const char *address)
{
    struct peer *p;
    for (p = r->peers; p; p = p->next)
        if (p->id == id)
            break;
    if (p == NULL) {
        p = calloc(1, sizeof *p);
        if (p == NULL)
            return NULL;
        p->rpc = r;
        p->id = id;
        p->next = r->peers;
        r->peers = p;
    }
    if (strcmp(p->address, address) != 0) {
        peer_drop(p, SR_EIO); /* the peer moved */
        snprintf(p->address, sizeof p->address, "%s", address);
    }
    return p;
}

int rpc_send(struct rpc *r, uint64_t peer_id, const char *address, Sr__Rpc *req,
             unsigned timeout_ms, rpc_resp_cb cb, void *ud)
{
    if (r->closing)
        return SR_ESHUTDOWN;
    struct peer *p = peer_get(r, peer_id, address);
    if (p == NULL)
        return SR_ENOMEM;
    if (p->state == 3)
        return SR_EIO; /* still closing from an error; caller retries */
    if (p->state == 0 && r->tls != NULL) {
        p->state = 1;
        struct peertls_connect *pc;
        int rc = peertls_connect(r->tls, peer_id, address, peer_tls_connected,
                                 p, &pc);
        if (rc != 0) {
            p->state = 0;
            return rc == SR_ENOMEM ? rc : SR_EIO;
        }
        p->pc = pc;
    } else if (p->state == 0) {
        struct sockaddr_storage ss;
        if (config_ip_address(address, &ss) != 0)
            return SR_EINVAL;
        uv_tcp_init(r->loop, &p->h.tcp);
        p->h.tcp.data = p;
        r->open_handles++;
        p->connect.data = p;
        p->state = 1;
        if (uv_tcp_connect(&p->connect, &p->h.tcp, (struct sockaddr *)&ss,
                           peer_connected) != 0) {
            peer_drop(p, SR_EIO);
            return SR_EIO;
        }
    }
    req->version = RPC_VERSION;
    req->id = ++r->next_id;
    req->from = r->self;
    req->response = 0;
    uint8_t *frame;
    size_t len;
    int rc = codec_rpc_encode(req, &frame, &len);
    if (rc != 0)
        return rc;
    struct pending *q = calloc(1, sizeof *q);
    if (q == NULL) {
        free(frame);
        return SR_ENOMEM;
    }
    q->id = req->id;
    q->deadline = uv_now(r->loop) + timeout_ms;
    q->cb = cb;
    q->ud = ud;
    if (p->state == 1) {
        uv_buf_t *nq = realloc(p->queued, (p->n_queued + 1) * sizeof *nq);
        if (nq == NULL) {
            free(frame);
            free(q);
            return SR_ENOMEM;
        }
        p->queued = nq;
        p->queued[p->n_queued++] = uv_buf_init((char *)frame, (unsigned)len);
    } else if (write_frame((uv_stream_t *)&p->h, frame, len) != 0) {
        free(q);
        peer_drop(p, SR_EIO);
        return SR_EIO;
    }
    q->next = p->pending;
    p->pending = q;
    return 0;
}

/* ---- server side ---- */

static void sconn_closed(uv_handle_t *h)
{
    struct sconn *c = h->data;
    struct rpc *r = c->rpc;
    for (struct rpc_call *k = c->calls; k; k = k->next)
        k->conn = NULL;
    free(c->in.p);
    free(c);
    rpc_unref(r);
}

static void sconn_close(struct sconn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    if (c->prev)
        c->prev->next = c->next;
    else
        c->rpc->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    uv_close((uv_handle_t *)&c->h, sconn_closed);
}

static void sconn_on_frame(void *arg, Sr__Rpc *m)
{
    struct sconn *c = arg;
    if (m->response || c->closing) {
        sr__rpc__free_unpacked(m, NULL);
        return;
    }
    if (c->peer_id != 0 && m->from != c->peer_id) {
        /* A node may only speak for itself: its certificate names it. */
        LOG_WARN("event=rpc_refused reason=\"from %llu on a link "
                 "authenticated as node %llu\"",
                 (unsigned long long)m->from, (unsigned long long)c->peer_id);
        sr__rpc__free_unpacked(m, NULL);
        sconn_close(c);
        return;
    }
    struct rpc_call *k = calloc(1, sizeof *k);
    if (k == NULL) {
        sr__rpc__free_unpacked(m, NULL);
        return;
    }
    k->conn = c;
    k->rpc = c->rpc;
    k->req = m;
    k->next = c->calls;
    if (c->calls)
        c->calls->prev = k;
    c->calls = k;
    c->rpc->handler(c->rpc->ud, k, m);
}

static void sconn_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct sconn *c = s->data;
    if (n > 0 && rbuf_add(&c->in, buf->base, (size_t)n) == 0) {
        c->last_active = uv_now(c->rpc->loop);
        if (rbuf_frames(&c->in, sconn_on_frame, c) != 0) {
            LOG_WARN("event=rpc_bad_frame");
            sconn_close(c);
        }
    } else if (n < 0) {
        sconn_close(c);
    }
    free(buf->base);
}

static void sconn_start(struct rpc *r, struct sconn *c)
{
    c->last_active = uv_now(r->loop);
    c->next = r->conns;
    if (r->conns)
        r->conns->prev = c;
    r->conns = c;
    uv_read_start((uv_stream_t *)&c->h, alloc_cb, sconn_read);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct rpc *r = server->data;
    if (status != 0)
        return;
    struct sconn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return;
    c->rpc = r;
    uv_tcp_init(r->loop, &c->h.tcp);
    c->h.tcp.data = c;
    r->open_handles++;
    if (uv_accept(server, (uv_stream_t *)&c->h.tcp) != 0) {
        c->closing = 1;
        uv_close((uv_handle_t *)&c->h, sconn_closed);
        return;
    }
    uv_tcp_nodelay(&c->h.tcp, 1);
    sconn_start(r, c);
}

/* A peer's TLS link is up and authenticated as node peer_id. */
static void on_tls_connection(void *ud, int fd, uint64_t peer_id,
                              const char *address)
{
    (void)address;
    struct rpc *r = ud;
    struct sconn *c = r->closing ? NULL : calloc(1, sizeof *c);
    if (c == NULL) {
        close(fd);
        return;
    }
    c->rpc = r;
    c->peer_id = peer_id;
    uv_pipe_init(r->loop, &c->h.pipe, 0);
    c->h.pipe.data = c;
    r->open_handles++;
    if (uv_pipe_open(&c->h.pipe, fd) != 0) {
        close(fd);
        c->closing = 1;
        uv_close((uv_handle_t *)&c->h, sconn_closed);
        return;
    }
    sconn_start(r, c);
}

void rpc_reply(struct rpc_call *k, Sr__Rpc *resp)
{
    struct sconn *c = k->conn;
    if (c != NULL) {
        if (k->prev)
            k->prev->next = k->next;
        else
            c->calls = k->next;
        if (k->next)
            k->next->prev = k->prev;
        if (!c->closing) {
            resp->version = RPC_VERSION;
            resp->id = k->req->id;
            resp->from = k->rpc->self;
            resp->response = 1;
            uint8_t *frame;
            size_t len;
            if (codec_rpc_encode(resp, &frame, &len) == 0)
                write_frame((uv_stream_t *)&c->h, frame, len);
        }
    }
    sr__rpc__free_unpacked(k->req, NULL);
    free(k);
}

uint64_t rpc_call_from(const struct rpc_call *k)
{
    return k->req->from; /* with TLS, checked against the certificate */
}

/* ---- lifecycle ---- */

static void sweep(uv_timer_t *t)
{
    struct rpc *r = t->data;
    uint64_t now = uv_now(r->loop);
    for (struct peer *p = r->peers; p; p = p->next) {
        struct pending **pp = &p->pending;
        while (*pp) {
            struct pending *q = *pp;
            if (q->deadline <= now) {
                *pp = q->next;
                q->cb(q->ud, SR_ETIMEDOUT, NULL);
                free(q);
            } else {
                pp = &q->next;
            }
        }
    }
    for (struct sconn *c = r->conns, *next; c; c = next) {
        next = c->next;
        if (c->calls == NULL && now - c->last_active > RPC_IDLE_MS)
            sconn_close(c);
    }
}

int rpc_start(uv_loop_t *loop, uint64_t self_id, const char *listen,
              const struct rpc_tls *tls, rpc_handler_fn handler, void *ud,
              struct rpc **out, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    if (config_ip_address(listen, &ss) != 0)
        return sr_err(err, errlen, SR_EINVAL, "rpc.listen: bad address %s",
                      listen);
    struct rpc *r = calloc(1, sizeof *r);
    if (r == NULL)
        return SR_ENOMEM;
    r->loop = loop;
    r->self = self_id;
    r->handler = handler;
    r->ud = ud;
    if (tls != NULL) {
        char e[SR_ERRMSG_SIZE];
        int rc = peertls_new(loop, PEERTLS_RPC, self_id, listen, tls->ca,
                             tls->cert, tls->key, &r->tls, e, sizeof e);
        if (rc != 0) {
            free(r);
            return sr_err(err, errlen, rc, "%s", e);
        }
        rc = peertls_listen(r->tls, listen, on_tls_connection, r, e, sizeof e);
        uv_timer_init(loop, &r->sweep);
        r->sweep.data = r;
        r->open_handles = 1;
        if (rc != 0) {
            r->closing = 1;
            peertls_close(r->tls);
            uv_close((uv_handle_t *)&r->sweep, handle_closed);
            return sr_err(err, errlen, SR_EIO, "rpc.listen %s", e);
        }
        uv_timer_start(&r->sweep, sweep, RPC_SWEEP_MS, RPC_SWEEP_MS);
        *out = r;
        return 0;
    }
    uv_tcp_init(loop, &r->listener);
    r->listener.data = r;
    r->open_handles = 2;
    int rc = uv_tcp_bind(&r->listener, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&r->listener, 128, on_connection);
    uv_timer_init(loop, &r->sweep);
    r->sweep.data = r;
    if (rc != 0) {
        r->closing = 1;
        uv_close((uv_handle_t *)&r->listener, handle_closed);
        uv_close((uv_handle_t *)&r->sweep, handle_closed);
        return sr_err(err, errlen, SR_EIO, "rpc.listen %s: %s", listen,
                      uv_strerror(rc));
    }
    uv_timer_start(&r->sweep, sweep, RPC_SWEEP_MS, RPC_SWEEP_MS);
    *out = r;
    return 0;
}

static void rpc_unref(struct rpc *r)
{
    if (--r->open_handles == 0 && r->closing) {
        while (r->peers) {
            struct peer *p = r->peers;
            r->peers = p->next;
            free(p->in.p);
            free(p);
        }
        free(r);
    }
}

static void handle_closed(uv_handle_t *h)
{
    rpc_unref(h->data);
}

void rpc_close(struct rpc *r)
{
    r->closing = 1;
    for (struct peer *p = r->peers; p; p = p->next) {
        peer_drop(p, SR_ESHUTDOWN);
        peer_fail_all(p, SR_ESHUTDOWN);
    }
    while (r->conns)
        sconn_close(r->conns);
    if (r->tls != NULL)
        peertls_close(r->tls);
    else
        uv_close((uv_handle_t *)&r->listener, handle_closed);
    uv_close((uv_handle_t *)&r->sweep, handle_closed);
}
