/* smpp_client.c - an ESME bind on the libuv loop (see smpp_client.h). */
#include "gateways/smpp_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/config.h"
#include "node/errors.h"
#include "node/log.h"

#define RBUF_MAX (SMPP_PDU_MAX_DEFAULT + 16)
#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 60000
#define TICK_MS 250

enum cstate { C_IDLE, C_CONNECTING, C_BINDING, C_BOUND, C_CLOSING };

struct pending {
    struct pending *next;
    uint32_t seq;
    uint64_t deadline;
    smpp_submit_cb cb;
    void *ud;
};

struct wreq {
    uv_write_t req;
    struct smpp_client *c;
    size_t len;
    uint8_t data[];
};

struct smpp_client {
    uv_loop_t *loop;
    struct smpp_client_opts o;
    char name[64], address[128], system_id[16], password[9], system_type[13];
    struct smpp_client_cbs cbs;
    void *ud;
    struct sockaddr_storage ss;
    uv_tcp_t *tcp; /* NULL when not connected; freed in its close cb */
    uv_connect_t creq;
    uv_timer_t timer;
    enum cstate st;
    uint32_t seq;
    uint8_t *rbuf;
    size_t rlen;
    struct pending *pending;
    unsigned inflight;
    uint64_t last_rx, enquire_sent, bind_deadline;
    uint64_t retry_at;
    unsigned backoff_ms;
    bool closing;
    int handles; /* timer + tcp */
};

static uint32_t next_seq(struct smpp_client *c)
{
    c->seq = c->seq >= 0x7FFFFFFF ? 1 : c->seq + 1;
    return c->seq;
}

static void maybe_free(struct smpp_client *c)
{
    if (c->closing && c->handles == 0) {
        free(c->rbuf);
        free(c);
    }
}

static void fail_pending(struct smpp_client *c, int status)
{
    while (c->pending) {
        struct pending *p = c->pending;
        c->pending = p->next;
        c->inflight--;
        p->cb(p->ud, status, NULL);
        free(p);
    }
}

static void tcp_closed(uv_handle_t *h)
{
    struct smpp_client *c = h->data;
    free(h);
    c->handles--;
    maybe_free(c);
}

/* Drops the connection; reconnects after the backoff unless closing. */
static void drop(struct smpp_client *c, const char *reason)
{
    bool was_bound = c->st == C_BOUND;
    if (c->tcp != NULL) {
        uv_close((uv_handle_t *)c->tcp, tcp_closed);
        c->tcp = NULL;
    }
    c->rlen = 0;
    fail_pending(c, c->closing ? SR_ESHUTDOWN : SR_EIO);
    if (c->closing) {
        c->st = C_CLOSING;
        return;
    }
    c->st = C_IDLE;
    uint64_t j = (uint64_t)rand() % (c->backoff_ms / 2 + 1);
    c->retry_at = uv_now(c->loop) + c->backoff_ms / 2 + j;
    c->backoff_ms =
        c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
    LOG_WARN("event=smpp_down smsc=%s address=%s reason=\"%s\" retry_ms=%llu",
             c->name, c->address, reason,
             (unsigned long long)(c->retry_at - uv_now(c->loop)));
    if (was_bound && c->cbs.state)
        c->cbs.state(c->ud, false, reason);
}

static void written(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct smpp_client *c = w->c;
    free(w);
    if (status < 0 && c->tcp != NULL && !c->closing)
        drop(c, uv_strerror(status));
}

static int send_bytes(struct smpp_client *c, const uint8_t *d, size_t len)
{
    if (c->tcp == NULL)
        return SR_EIO;
    struct wreq *w = malloc(sizeof *w + len);
    if (w == NULL)
        return SR_ENOMEM;
    w->c = c;
    w->len = len;
    memcpy(w->data, d, len);
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)c->tcp, &b, 1, written) != 0) {
        free(w);
        return SR_EIO;
    }
    return 0;
}

static void send_header(struct smpp_client *c, uint32_t cmd, uint32_t status,
                        uint32_t seq)
{
    uint8_t buf[SMPP_HEADER_LEN];
    size_t len;
    char err[SR_ERRMSG_SIZE];
    if (smpp_pdu_pack_header(cmd, status, seq, buf, sizeof buf, &len, err,
                             sizeof err) == 0)
        send_bytes(c, buf, len);
}

static void on_pdu(struct smpp_client *c, const uint8_t *buf, size_t len)
{
    struct smpp_pdu p;
    uint32_t nack = 0;
    char err[SR_ERRMSG_SIZE];
    int rc = smpp_pdu_unpack(buf, len, 0, &p, &nack, err, sizeof err);
    if (rc != 0) {
        LOG_WARN("event=smpp_bad_pdu smsc=%s error=\"%s\"", c->name, err);
        if (p.hdr.id & SMPP_RESP) {
            /* a response we cannot read: fail what it answers */
        } else {
            send_header(c, SMPP_GENERIC_NACK, nack ? nack : SMPP_RSYSERR,
                        p.hdr.seq);
            return;
        }
    }
    c->last_rx = uv_now(c->loop);
    switch (p.hdr.id) {
    case SMPP_BIND_TRANSCEIVER | SMPP_RESP:
    case SMPP_BIND_TRANSMITTER | SMPP_RESP:
    case SMPP_BIND_RECEIVER | SMPP_RESP:
        if (c->st != C_BINDING || p.hdr.id != (c->o.bind_cmd | SMPP_RESP))
            return;
        if (p.hdr.status != 0) {
            char why[64];
            snprintf(why, sizeof why, "bind refused, status 0x%02x",
                     p.hdr.status);
            drop(c, why);
            return;
        }
        c->st = C_BOUND;
        c->backoff_ms = BACKOFF_MIN_MS;
        LOG_INFO("event=smpp_bound smsc=%s address=%s system_id=%s", c->name,
                 c->address, c->system_id);
        if (c->cbs.state)
            c->cbs.state(c->ud, true, "bound");
        return;
    case SMPP_SUBMIT_SM | SMPP_RESP:
    case SMPP_GENERIC_NACK: {
        for (struct pending **pp = &c->pending; *pp; pp = &(*pp)->next) {
            struct pending *q = *pp;
            if (q->seq != p.hdr.seq)
                continue;
            *pp = q->next;
            c->inflight--;
            int st = (int)p.hdr.status;
            if (rc != 0 && st == 0)
                st = SMPP_RSYSERR;
            if (p.hdr.id == SMPP_GENERIC_NACK && st == 0)
                st = SMPP_RSYSERR;
            q->cb(q->ud, st, st == 0 ? p.message_id : NULL);
            free(q);
            return;
        }
        return;
    }
    case SMPP_DELIVER_SM: {
        uint8_t out[SMPP_PACK_MAX];
        size_t ol;
        if (smpp_pdu_pack_deliver_sm_resp(p.hdr.seq, 0, out, sizeof out, &ol,
                                          err, sizeof err) == 0)
            send_bytes(c, out, ol);
        if (c->cbs.deliver)
            c->cbs.deliver(c->ud, &p);
        return;
    }
    case SMPP_ENQUIRE_LINK:
        send_header(c, SMPP_ENQUIRE_LINK | SMPP_RESP, 0, p.hdr.seq);
        return;
    case SMPP_ENQUIRE_LINK | SMPP_RESP:
        c->enquire_sent = 0;
        return;
    case SMPP_UNBIND:
        send_header(c, SMPP_UNBIND | SMPP_RESP, 0, p.hdr.seq);
        drop(c, "the SMSC unbound");
        return;
    case SMPP_UNBIND | SMPP_RESP:
        drop(c, "unbound");
        return;
    default:
        if (!(p.hdr.id & SMPP_RESP))
            send_header(c, SMPP_GENERIC_NACK, SMPP_RINVCMDID, p.hdr.seq);
        return;
    }
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)hint;
    struct smpp_client *c = h->data;
    size_t room = RBUF_MAX - c->rlen;
    *b = uv_buf_init((char *)c->rbuf + c->rlen, (unsigned)room);
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    struct smpp_client *c = s->data;
    if (n < 0) {
        drop(c, n == UV_EOF ? "connection closed by the SMSC"
                            : uv_strerror((int)n));
        return;
    }
    c->rlen += (size_t)n;
    size_t off = 0; /* PDUs handled; the rest moves down once, at the end */
    while (c->tcp != NULL && c->rlen - off >= SMPP_HEADER_LEN) {
        struct smpp_hdr h;
        uint32_t nack;
        char err[SR_ERRMSG_SIZE];
        int rc = smpp_pdu_frame(c->rbuf + off, c->rlen - off, 0, &h, &nack, err,
                                sizeof err);
        if (rc == SMPP_FRAME_MORE)
            break;
        if (rc != SMPP_FRAME_PDU) {
            send_header(c, SMPP_GENERIC_NACK, nack, h.seq);
            drop(c, err);
            return;
        }
        on_pdu(c, c->rbuf + off, h.length);
        if (c->tcp == NULL)
            return;
        off += h.length;
    }
    memmove(c->rbuf, c->rbuf + off, c->rlen - off);
    c->rlen -= off;
    if (c->rlen >= RBUF_MAX && c->tcp != NULL)
        drop(c, "PDU larger than the read buffer");
}

static void connected(uv_connect_t *req, int status)
{
    struct smpp_client *c = req->data;
    if (c->tcp == NULL || c->closing)
        return;
    if (status < 0) {
        drop(c, uv_strerror(status));
        return;
    }
    uv_tcp_nodelay(c->tcp, 1);
    c->st = C_BINDING;
    c->rlen = 0;
    c->last_rx = uv_now(c->loop);
    c->bind_deadline = uv_now(c->loop) + c->o.resp_timeout_ms;
    uv_read_start((uv_stream_t *)c->tcp, alloc_cb, read_cb);
    struct smpp_bind b = {c->system_id, c->password, c->system_type, 0, 0,
                          NULL};
    uint8_t out[SMPP_PACK_MAX];
    size_t len;
    char err[SR_ERRMSG_SIZE];
    if (smpp_pdu_pack_bind(c->o.bind_cmd, next_seq(c), &b, out, sizeof out,
                           &len, err, sizeof err) != 0 ||
        send_bytes(c, out, len) != 0)
        drop(c, "cannot send bind");
}

static void dial(struct smpp_client *c)
{
    c->tcp = malloc(sizeof *c->tcp);
    if (c->tcp == NULL)
        return;
    uv_tcp_init(c->loop, c->tcp);
    c->tcp->data = c;
    c->handles++;
    c->st = C_CONNECTING;
    c->creq.data = c;
    c->bind_deadline = uv_now(c->loop) + c->o.resp_timeout_ms;
    int rc =
        uv_tcp_connect(&c->creq, c->tcp, (struct sockaddr *)&c->ss, connected);
    if (rc != 0)
        drop(c, uv_strerror(rc));
}

static void tick(uv_timer_t *t)
{
    struct smpp_client *c = t->data;
    uint64_t now = uv_now(c->loop);
    if (c->closing)
        return;
    if (c->st == C_IDLE && now >= c->retry_at) {
        dial(c);
        return;
    }
    if ((c->st == C_CONNECTING || c->st == C_BINDING) &&
        now > c->bind_deadline) {
        drop(c, "no bind response in time");
        return;
    }
    if (c->st != C_BOUND)
        return;
    for (struct pending *p = c->pending; p; p = p->next) {
        if (now > p->deadline) {
            /* a lost response: the SMSC state is unknown, start over */
            drop(c, "submit_sm response timed out");
            return;
        }
    }
    if (c->enquire_sent && now > c->enquire_sent + c->o.resp_timeout_ms) {
        drop(c, "enquire_link response timed out");
        return;
    }
    if (!c->enquire_sent && now > c->last_rx + c->o.enquire_ms) {
        c->enquire_sent = now;
        send_header(c, SMPP_ENQUIRE_LINK, 0, next_seq(c));
    }
}

int smpp_client_new(uv_loop_t *loop, const struct smpp_client_opts *o,
                    const struct smpp_client_cbs *cbs, void *ud,
                    struct smpp_client **out, char *err, size_t errlen)
{
    struct smpp_client *c = calloc(1, sizeof *c);
    if (c == NULL || (c->rbuf = malloc(RBUF_MAX)) == NULL) {
        free(c);
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    }
    c->loop = loop;
    c->o = *o;
    snprintf(c->name, sizeof c->name, "%s", o->name ? o->name : "smsc");
    snprintf(c->address, sizeof c->address, "%s", o->address);
    snprintf(c->system_id, sizeof c->system_id, "%s",
             o->system_id ? o->system_id : "");
    snprintf(c->password, sizeof c->password, "%s",
             o->password ? o->password : "");
    snprintf(c->system_type, sizeof c->system_type, "%s",
             o->system_type ? o->system_type : "");
    if (c->o.window == 0)
        c->o.window = 10;
    if (c->o.bind_cmd == 0)
        c->o.bind_cmd = SMPP_BIND_TRANSCEIVER;
    if (c->o.resp_timeout_ms == 0)
        c->o.resp_timeout_ms = 10000;
    if (c->o.enquire_ms == 0)
        c->o.enquire_ms = 30000;
    c->cbs = *cbs;
    c->ud = ud;
    c->backoff_ms = BACKOFF_MIN_MS;
    if (config_ip_address(o->address, &c->ss) != 0) {
        free(c->rbuf);
        free(c);
        return sr_err(err, errlen, SR_EINVAL, "smsc address %s: want ip:port",
                      o->address);
    }
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->handles = 1;
    uv_timer_start(&c->timer, tick, 0, TICK_MS);
    *out = c;
    return 0;
}

static void timer_closed(uv_handle_t *h)
{
    struct smpp_client *c = h->data;
    c->handles--;
    maybe_free(c);
}

void smpp_client_close(struct smpp_client *c)
{
    if (c == NULL)
        return;
    if (c->st == C_BOUND)
        send_header(c, SMPP_UNBIND, 0, next_seq(c)); /* best effort */
    c->closing = true;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, timer_closed);
    drop(c, "closing");
}

bool smpp_client_bound(const struct smpp_client *c)
{
    return c->st == C_BOUND;
}

bool smpp_client_ready(const struct smpp_client *c)
{
    return c->st == C_BOUND && c->o.bind_cmd != SMPP_BIND_RECEIVER &&
           c->inflight < c->o.window;
}

unsigned smpp_client_inflight(const struct smpp_client *c)
{
    return c->inflight;
}

int smpp_client_submit(struct smpp_client *c, const struct smpp_sm *m,
                       smpp_submit_cb cb, void *ud, char *err, size_t errlen)
{
    if (!smpp_client_ready(c))
        return sr_err(err, errlen, SR_EFULL, "not bound or window full");
    uint8_t out[SMPP_PACK_MAX];
    size_t len;
    uint32_t seq = next_seq(c);
    int rc =
        smpp_pdu_pack_submit_sm(seq, m, out, sizeof out, &len, err, errlen);
    if (rc != 0)
        return rc;
    struct pending *p = calloc(1, sizeof *p);
    if (p == NULL)
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    p->seq = seq;
    p->deadline = uv_now(c->loop) + c->o.resp_timeout_ms;
    p->cb = cb;
    p->ud = ud;
    if (send_bytes(c, out, len) != 0) {
        free(p);
        return sr_err(err, errlen, SR_EIO, "cannot write");
    }
    p->next = c->pending;
    c->pending = p;
    c->inflight++;
    return 0;
}
