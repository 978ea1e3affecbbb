/*
 * http_server.c - HTTP/1.1 server on the libuv loop (see http_server.h).
 *
 * What it does: accepts TCP connections, feeds their bytes to the pure
 * parser (http.c) and hands each complete request to the handler, one at a
 * time per connection. Reading stops while the handler holds a request, so
 * a pipelining client cannot make us buffer without bound, and answers go
 * out in request order by construction. After the answer the next buffered
 * request (if any) is parsed before more bytes are read.
 *
 * TLS (http_server_set_tls): every connection accepted after it is TLS
 * from its first byte, on the memory-BIO wrapper of gateways/tls.h.
 * Ciphertext read from the socket goes through tls_conn_feed(); the
 * plaintext of one read is gathered in the server's pbuf and then handed to
 * conn_pump() exactly like plaintext bytes from the socket, so parsing,
 * dispatch, pipelining and back-pressure are the same code for both. Every
 * answer goes through conn_write(), which for TLS encrypts it and queues
 * the ciphertext (and handshake records, alerts, session tickets: anything
 * tls_conn_drain() gives) on the socket.
 *
 * What it does not do: chunked bodies (the parser refuses them with 501),
 * routing or authentication (the handler's job), name resolution (the
 * listen address must be numeric), client certificates, close_notify (a
 * Connection: close answer ends with a TCP shutdown; our answers always
 * carry a Content-Length, so a client never needs the EOF to frame them).
 *
 * How it fails: a parse error is answered with its status and
 * {"error":...}, then the connection is shut down; a socket error or the
 * idle timeout closes the connection silently. A TLS handshake that fails
 * (a protocol error, a plaintext client, a client that rejects our
 * certificate) ends the connection: the alert OpenSSL made, if any, is
 * sent, then it closes as after "Connection: close". A TLS error after the
 * handshake (including the peer's close_notify) counts as the peer's EOF.
 * A connection closed while the handler holds its request stays allocated
 * (detached from its handles) until the handler calls http_reply(), which
 * then only frees it.
 *
 * Closing: after "Connection: close" we shut down the write side and keep
 * reading (and discarding) for LINGER_MS, because closing a socket with
 * unread input makes the kernel send RST, and an RST can destroy our
 * answer before the client has read it (e.g. a 413 sent while the client
 * is still uploading).
 *
 * Loop thread only. Every socket has a timer: idle_ms while waiting for the
 * peer (read or write), LINGER_MS while lingering, none while the handler
 * works (that is the application's deadline, not the peer's). During a
 * TLS handshake the timer started at accept is not restarted by traffic:
 * the whole handshake must finish within idle_ms, so a peer trickling
 * handshake bytes cannot hold a connection.
 */
#include "gateways/http_server.h"

#include <assert.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateways/tls.h"
#include "node/errors.h"

#define HTTP_DEFAULT_MAX_HEADER (16 * 1024)
#define HTTP_DEFAULT_MAX_BODY (1024 * 1024)
#define HTTP_DEFAULT_IDLE_MS 30000
#define HTTP_DEFAULT_MAX_CONNS 512
#define HTTP_LINGER_MS 2000
#define HTTP_BACKLOG 128
/* Answers queued but not yet taken by the kernel: above HIGH we stop
 * reading and dispatching (a client that pipelines without reading its
 * answers must not grow our memory), below LOW we go on. */
#define HTTP_WRITE_HIGH (256 * 1024)
#define HTTP_WRITE_LOW (64 * 1024)

struct http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    http_handler_fn handler;
    void *ud;

    size_t max_header;
    size_t max_body;
    unsigned idle_ms;
    unsigned max_conns;

    struct http_conn *conns; /* every conn whose handles are still open */
    unsigned n_conns;
    unsigned live; /* listener + n_conns: handles not yet closed */

    bool closing;
    void (*close_cb)(void *);
    void *close_arg;

    struct tls_ctx *tls; /* owned; NULL = plaintext. Conns accepted while
                            set are TLS. */
    /* The plaintext of one TLS read, gathered before it is pumped (shared
     * like rbuf; owned, grows as needed). */
    char *pbuf;
    size_t pbuf_len, pbuf_cap;

    /* One read buffer for all connections: the parser copies what it
     * keeps, and libuv runs alloc_cb/read_cb pairs one at a time. */
    char rbuf[64 * 1024];
};

struct http_conn {
    struct http_server *s; /* NULL once the handles are closed */
    struct http_conn *prev, *next;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown_req;
    struct http_parser *p;
    struct tls_conn *tls; /* owned; NULL = plaintext */
    /* The request the handler holds: it must outlive the handler call
     * (borrowed until http_reply), so it cannot live on conn_pump's stack. */
    struct http_request req;
    char peer[64];

    unsigned handles_open; /* tcp + timer until their close callbacks */
    bool reading;
    bool pending;       /* the handler holds a request (until http_reply) */
    bool head;          /* the pending request is a HEAD: no body in answer */
    bool keep_alive;    /* the pending request allows another one after */
    bool pumping;       /* conn_pump() is on the stack */
    bool eof;           /* the peer has finished sending */
    bool draining;      /* answered with Connection: close; shutting down */
    bool write_blocked; /* paused until the write queue drains to LOW */
    bool shut_done;     /* the shutdown completed; lingering */
    bool closing;       /* uv_close() was called on the handles */
    bool tls_failed;    /* the peer broke TLS; no more feeding */
};

/* One uv_write: the bytes are data[] (plaintext answers), or ext when set
 * (ciphertext from tls_conn_drain; owned, freed with the request). */
struct http_wreq {
    uv_write_t req;
    struct http_conn *c;
    char *ext;
    size_t len;
    char data[];
};

static void conn_pump(struct http_conn *c, const char *data, size_t len);

/* ---- addresses ---- */

/* "1.2.3.4:80" or "[::1]:80" -> sockaddr; numeric only, so it never
 * blocks on DNS. */
static int http_parse_addr(const char *addr, struct sockaddr_storage *ss)
{
    char host[64];
    const char *port;
    bool v6 = false;
    size_t hl;

    if (addr[0] == '[') {
        const char *rb = strchr(addr, ']');
        if (rb == NULL || rb[1] != ':')
            return SR_EINVAL;
        hl = (size_t)(rb - addr - 1);
        if (hl == 0 || hl >= sizeof(host))
            return SR_EINVAL;
        memcpy(host, addr + 1, hl);
        port = rb + 2;
        v6 = true;
    } else {
        const char *colon = strrchr(addr, ':');
        if (colon == NULL || colon == addr)
            return SR_EINVAL;
        hl = (size_t)(colon - addr);
        if (hl >= sizeof(host) || memchr(addr, ':', hl) != NULL)
            return SR_EINVAL;
        memcpy(host, addr, hl);
        port = colon + 1;
    }
    host[hl] = '\0';

    size_t pl = strlen(port);
    if (pl == 0 || pl > 5 || strspn(port, "0123456789") != pl)
        return SR_EINVAL;
    long pn = strtol(port, NULL, 10);
    if (pn > 65535)
        return SR_EINVAL;

    memset(ss, 0, sizeof(*ss));
    if (v6)
        return uv_ip6_addr(host, (int)pn, (struct sockaddr_in6 *)ss) == 0
                   ? 0
                   : SR_EINVAL;
    return uv_ip4_addr(host, (int)pn, (struct sockaddr_in *)ss) == 0
               ? 0
               : SR_EINVAL;
}

static void http_format_addr(const struct sockaddr_storage *ss, char *out,
                             size_t outlen)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        uv_ip6_name(a, ip, sizeof(ip));
        port = ntohs(a->sin6_port);
        snprintf(out, outlen, "[%s]:%d", ip, port);
    } else if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        uv_ip4_name(a, ip, sizeof(ip));
        port = ntohs(a->sin_port);
        snprintf(out, outlen, "%s:%d", ip, port);
    } else {
        snprintf(out, outlen, "?");
    }
}

/* ---- server lifetime ---- */

static void server_maybe_finish(struct http_server *s)
{
    if (!s->closing || s->live > 0)
        return;
    void (*cb)(void *) = s->close_cb;
    void *arg = s->close_arg;
    /* Conns still pending keep their SSL, which holds its own reference
     * to the SSL_CTX. */
    tls_ctx_free(s->tls);
    free(s->pbuf);
    free(s);
    if (cb != NULL)
        cb(arg);
}

static void on_listener_closed(uv_handle_t *h)
{
    struct http_server *s = h->data;
    s->live--;
    server_maybe_finish(s);
}

/* Start failed after uv_tcp_init: the memory can only go once libuv is
 * done with the handle. No user callback is involved. */
static void on_failed_listener_closed(uv_handle_t *h)
{
    free(h->data);
}

/* ---- connection lifetime ---- */

static void conn_free(struct http_conn *c)
{
    http_parser_free(c->p);
    tls_conn_free(c->tls);
    free(c);
}

/* False while a TLS handshake is in progress: then traffic does not
 * restart the timer (see the top of the file). */
static bool conn_handshaken(const struct http_conn *c)
{
    return c->tls == NULL || tls_conn_established(c->tls);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    struct http_conn *c = h->data;
    if (--c->handles_open > 0)
        return;
    struct http_server *s = c->s;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    s->n_conns--;
    s->live--;
    c->s = NULL;
    /* A pending conn lives on until http_reply(), as the header promises. */
    if (!c->pending)
        conn_free(c);
    server_maybe_finish(s);
}

static void conn_close(struct http_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    c->reading = false;
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

static void on_timer(uv_timer_t *t)
{
    conn_close(t->data);
}

static void conn_timer(struct http_conn *c, unsigned ms)
{
    if (!c->closing)
        uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct http_conn *c = h->data;
    (void)suggested;
    *buf = uv_buf_init(c->s->rbuf, sizeof(c->s->rbuf));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void conn_read_start(struct http_conn *c)
{
    if (c->reading || c->closing)
        return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        conn_close(c);
        return;
    }
    c->reading = true;
}

static void conn_read_stop(struct http_conn *c)
{
    if (!c->reading || c->closing)
        return;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct http_conn *c = req->data;
    c->shut_done = true;
    if (status < 0 || c->eof) {
        conn_close(c);
        return;
    }
    conn_timer(c, HTTP_LINGER_MS);
}

/* Ends the connection gracefully once the queued answers are written. */
static void conn_drain(struct http_conn *c)
{
    if (c->draining || c->closing)
        return;
    c->draining = true;
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) !=
        0) {
        conn_close(c);
        return;
    }
    /* Keep reading (and discarding) so that a client still sending does
     * not block, and so that we see its EOF. */
    if (!c->eof)
        conn_read_start(c);
    conn_timer(c, c->s->idle_ms);
}

static void on_write(uv_write_t *req, int status)
{
    struct http_wreq *w = req->data;
    struct http_conn *c = w->c;
    free(w->ext);
    free(w);
    /* Write callbacks run before the close callback, so c is alive. */
    if (status < 0) {
        conn_close(c);
        return;
    }
    /* The peer is reading: a slow reader is not an idle one. While the
     * handler works there is no timer, and lingering keeps its own. */
    if (!c->closing && !c->pending && !c->shut_done && conn_handshaken(c))
        conn_timer(c, c->s->idle_ms);
    if (c->write_blocked && !c->closing &&
        uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) <=
            HTTP_WRITE_LOW) {
        c->write_blocked = false;
        conn_pump(c, NULL, 0);
    }
}

/* Puts w's bytes on the socket. Takes ownership of w. */
static void conn_queue(struct http_conn *c, struct http_wreq *w)
{
    w->c = c;
    w->req.data = w;
    uv_buf_t b =
        uv_buf_init(w->ext != NULL ? w->ext : w->data, (unsigned)w->len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        free(w->ext);
        free(w);
        conn_close(c);
    }
}

/* Queues whatever ciphertext the TLS engine has for the peer. */
static void conn_tls_flush(struct http_conn *c)
{
    char *out;
    size_t n;
    while (!c->closing && (n = tls_conn_drain(c->tls, &out)) > 0) {
        struct http_wreq *w = malloc(sizeof(*w));
        if (w == NULL) {
            free(out);
            conn_close(c);
            return;
        }
        w->ext = out;
        w->len = n;
        conn_queue(c, w);
    }
}

/* Sends the plaintext in w (encrypted on a TLS connection). Takes ownership
 * of w. */
static void conn_write(struct http_conn *c, struct http_wreq *w)
{
    w->ext = NULL;
    if (c->tls == NULL) {
        conn_queue(c, w);
        return;
    }
    int rc = tls_conn_write(c->tls, w->data, w->len);
    free(w);
    if (rc != 0) {
        conn_close(c);
        return;
    }
    conn_tls_flush(c);
}

static void conn_send(struct http_conn *c, int status, const char *ctype,
                      const char *extra, const char *body, size_t len,
                      bool close)
{
    if (status < 200 || status > 599)
        status = 500;
    /* RFC 9110 8.6 and 6.4.1: no Content-Length and no content in 204 and
     * 304; a HEAD answer carries the length but not the bytes. */
    bool bodyless = status == 204 || status == 304;
    size_t blen = (bodyless || c->head) ? 0 : len;
    const char *conn = close ? "close" : "keep-alive";
    const char *reason = http_status_reason(status);
    char cl[48] = "";

    if (!bodyless)
        snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", len);
    /* A content type comes from our own code; CR/LF in it would be a
     * header injection bug, not a runtime condition. */
    assert(ctype == NULL || strpbrk(ctype, "\r\n") == NULL);

    const char *fmt = "HTTP/1.1 %d %s\r\n%s%s%s%s%sConnection: %s\r\n\r\n";
    const char *ctn = ctype != NULL ? "Content-Type: " : "";
    const char *ctv = ctype != NULL ? ctype : "";
    const char *cte = ctype != NULL ? "\r\n" : "";
    int hn =
        snprintf(NULL, 0, fmt, status, reason, cl, ctn, ctv, cte, extra, conn);
    if (hn < 0) {
        conn_close(c);
        return;
    }
    struct http_wreq *w = malloc(sizeof(*w) + (size_t)hn + 1 + blen);
    if (w == NULL) {
        conn_close(c);
        return;
    }
    snprintf(w->data, (size_t)hn + 1, fmt, status, reason, cl, ctn, ctv, cte,
             extra, conn);
    if (blen > 0)
        memcpy(w->data + hn, body, blen);
    w->len = (size_t)hn + blen;
    conn_write(c, w);
}

static void conn_send_continue(struct http_conn *c)
{
    static const char msg[] = "HTTP/1.1 100 Continue\r\n\r\n";
    struct http_wreq *w = malloc(sizeof(*w) + sizeof(msg));
    if (w == NULL) {
        conn_close(c);
        return;
    }
    memcpy(w->data, msg, sizeof(msg) - 1);
    w->len = sizeof(msg) - 1;
    conn_write(c, w);
}

/* {"error":"<msg>"}, escaped per RFC 8259 7; returns a malloc'd string. */
static char *http_error_json(const char *msg, size_t *len)
{
    size_t ml = strlen(msg);
    char *out = malloc(ml * 6 + 16);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    memcpy(out, "{\"error\":\"", 10);
    o = 10;
    for (size_t i = 0; i < ml; i++) {
        unsigned char ch = (unsigned char)msg[i];
        if (ch == '"' || ch == '\\') {
            out[o++] = '\\';
            out[o++] = (char)ch;
        } else if (ch < 0x20) {
            o += (size_t)sprintf(out + o, "\\u%04x", ch);
        } else {
            out[o++] = (char)ch;
        }
    }
    memcpy(out + o, "\"}", 3);
    *len = o + 2;
    return out;
}

static void conn_send_error(struct http_conn *c, int status, const char *msg)
{
    size_t len = 0;
    char *body = http_error_json(msg, &len);
    if (body == NULL) {
        conn_close(c);
        return;
    }
    conn_send(c, status, "application/json", "", body, len, true);
    free(body);
}

/*
 * Parses and dispatches requests until one is pending, more input is
 * needed, or the connection ends. `data` (if any) is fed first. A reply
 * made synchronously inside the handler returns here through the loop
 * below rather than recursing, so a long pipeline uses constant stack.
 */
static void conn_pump(struct http_conn *c, const char *data, size_t len)
{
    if (c->pumping)
        return;
    c->pumping = true;
    while (!c->closing && !c->pending && !c->draining) {
        /* Bytes just read are always fed first (they would be lost
         * otherwise); at most one more request is dispatched for them. */
        if (data == NULL && uv_stream_get_write_queue_size(
                                (uv_stream_t *)&c->tcp) > HTTP_WRITE_HIGH) {
            /* on_write() resumes us; the timer bounds a peer that never
             * reads. */
            c->write_blocked = true;
            conn_read_stop(c);
            conn_timer(c, c->s->idle_ms);
            break;
        }
        int status = 0;
        int rc = http_parser_feed(c->p, data, len, &c->req, &status);
        data = NULL;
        len = 0;
        if (rc == 1) {
            c->pending = true;
            c->head = strcmp(c->req.method, "HEAD") == 0;
            c->keep_alive = c->req.keep_alive;
            conn_read_stop(c);
            uv_timer_stop(&c->timer);
            c->s->handler(c->s->ud, c, &c->req);
        } else if (rc == 0) {
            if (c->eof) {
                /* Nothing complete is left and nothing more will come. */
                conn_drain(c);
                break;
            }
            if (http_parser_want_continue(c->p))
                conn_send_continue(c);
            conn_read_start(c);
            conn_timer(c, c->s->idle_ms);
            break;
        } else {
            c->head = false;
            conn_send_error(c, status, http_parser_errmsg(c->p));
            conn_drain(c);
            break;
        }
    }
    c->pumping = false;
}

static void on_plain(void *ud, const char *buf, size_t len)
{
    struct http_conn *c = ud;
    struct http_server *s = c->s;
    if (c->tls_failed)
        return;
    if (s->pbuf_len + len > s->pbuf_cap) {
        size_t cap = s->pbuf_cap ? s->pbuf_cap : sizeof(s->rbuf);
        while (cap < s->pbuf_len + len)
            cap *= 2;
        char *nb = realloc(s->pbuf, cap);
        if (nb == NULL) {
            c->tls_failed = true;
            return;
        }
        s->pbuf = nb;
        s->pbuf_cap = cap;
    }
    memcpy(s->pbuf + s->pbuf_len, buf, len);
    s->pbuf_len += len;
}

/* Ciphertext from the socket: decrypt, answer the handshake, pump the
 * plaintext. */
static void conn_tls_read(struct http_conn *c, const char *data, size_t len)
{
    struct http_server *s = c->s;
    s->pbuf_len = 0;
    int rc = tls_conn_feed(c->tls, data, len, on_plain, c);
    if (c->tls_failed) { /* on_plain ran out of memory */
        conn_close(c);
        return;
    }
    conn_tls_flush(c); /* handshake records, alerts, session tickets */
    if (c->closing)
        return;
    if (!tls_conn_established(c->tls)) {
        /* Still handshaking (the accept-time timer runs on), or failed:
         * send the alert, then close. */
        if (rc != 0) {
            c->tls_failed = true;
            conn_drain(c);
        }
        return;
    }
    conn_timer(c, s->idle_ms);
    if (rc != 0) {
        /* close_notify or a broken record: the peer has finished. What
         * it sent before still counts, like bytes before a TCP EOF. */
        c->tls_failed = true;
        c->eof = true;
        conn_read_stop(c);
    }
    if (s->pbuf_len > 0)
        conn_pump(c, s->pbuf, s->pbuf_len);
    else if (c->eof)
        conn_pump(c, NULL, 0);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct http_conn *c = st->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        if (nread != UV_EOF) {
            conn_close(c);
            return;
        }
        c->eof = true;
        conn_read_stop(c);
        if (c->draining) {
            if (c->shut_done)
                conn_close(c);
            return;
        }
        conn_pump(c, NULL, 0);
        return;
    }
    if (c->draining)
        return; /* lingering: discard */
    if (c->tls != NULL) {
        conn_tls_read(c, buf->base, (size_t)nread);
        return;
    }
    conn_timer(c, c->s->idle_ms);
    conn_pump(c, buf->base, (size_t)nread);
}

static void on_connection(uv_stream_t *ls, int status)
{
    struct http_server *s = ls->data;
    if (status < 0 || s->closing)
        return;
    struct http_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return; /* the connection waits in the backlog; retried later */
    c->s = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles_open = 2;
    c->next = s->conns;
    if (s->conns != NULL)
        s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    s->live++;
    snprintf(c->peer, sizeof(c->peer), "?");

    if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    /* Over the limit: accepted only to be closed, which is the cheapest
     * clear answer (the alternative leaves it in the backlog forever). */
    if (s->n_conns > s->max_conns) {
        conn_close(c);
        return;
    }
    c->p = http_parser_new(s->max_header, s->max_body);
    if (c->p == NULL) {
        conn_close(c);
        return;
    }
    if (s->tls != NULL && (c->tls = tls_conn_new(s->tls)) == NULL) {
        conn_close(c);
        return;
    }
    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0)
        http_format_addr(&ss, c->peer, sizeof(c->peer));
    /* Answers are small and written whole: do not let Nagle hold them. */
    uv_tcp_nodelay(&c->tcp, 1);
    conn_read_start(c);
    conn_timer(c, s->idle_ms);
}

/* ---- public API ---- */

int http_server_start(uv_loop_t *loop, const char *addr,
                      http_handler_fn handler, void *ud,
                      struct http_server **out, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    if (addr == NULL || http_parse_addr(addr, &ss) != 0)
        return sr_err(err, errlen, SR_EINVAL,
                      "http: bad listen address \"%s\" (want "
                      "IPv4:port or [IPv6]:port)",
                      addr != NULL ? addr : "(null)");

    struct http_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return sr_err(err, errlen, SR_ENOMEM, "http: out of memory");
    s->loop = loop;
    s->handler = handler;
    s->ud = ud;
    s->max_header = HTTP_DEFAULT_MAX_HEADER;
    s->max_body = HTTP_DEFAULT_MAX_BODY;
    s->idle_ms = HTTP_DEFAULT_IDLE_MS;
    s->max_conns = HTTP_DEFAULT_MAX_CONNS;

    int rc = uv_tcp_init(loop, &s->listener);
    if (rc != 0) {
        free(s);
        return sr_err(err, errlen, SR_EIO, "http: cannot listen on %s: %s",
                      addr, uv_strerror(rc));
    }
    s->listener.data = s;
    /* libuv sets SO_REUSEADDR on Unix in uv_tcp_bind(), so a restarted
     * node can bind while old connections sit in TIME_WAIT. */
    rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc =
            uv_listen((uv_stream_t *)&s->listener, HTTP_BACKLOG, on_connection);
    if (rc != 0) {
        uv_close((uv_handle_t *)&s->listener, on_failed_listener_closed);
        return sr_err(err, errlen, SR_EIO, "http: cannot listen on %s: %s",
                      addr, uv_strerror(rc));
    }
    s->live = 1;
    *out = s;
    return 0;
}

void http_server_set_limits(struct http_server *s, size_t max_header,
                            size_t max_body, unsigned idle_ms,
                            unsigned max_conns)
{
    if (max_header != 0)
        s->max_header = max_header;
    if (max_body != 0)
        s->max_body = max_body;
    if (idle_ms != 0)
        s->idle_ms = idle_ms;
    if (max_conns != 0)
        s->max_conns = max_conns;
}

void http_server_set_tls(struct http_server *s, struct tls_ctx *ctx)
{
    tls_ctx_free(s->tls);
    s->tls = ctx;
}

int http_server_port(const struct http_server *s)
{
    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &sl) != 0)
        return SR_EIO;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return SR_EINVAL;
}

void http_server_close(struct http_server *s, void (*cb)(void *), void *arg)
{
    assert(!s->closing);
    s->closing = true;
    s->close_cb = cb;
    s->close_arg = arg;
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    for (struct http_conn *c = s->conns; c != NULL; c = c->next)
        conn_close(c);
}

void http_reply(struct http_conn *c, int status, const char *content_type,
                const char *body, size_t len)
{
    http_reply_ex(c, status, content_type, "", body, len);
}

void http_reply_ex(struct http_conn *c, int status, const char *content_type,
                   const char *extra, const char *body, size_t len)
{
    /* Exactly one reply per request: a second one is a caller bug. */
    assert(c->pending);
    c->pending = false;
    if (c->closing) {
        /* The peer or the server went away; drop the answer. The close
         * callback frees c if it has not run yet, else we do. */
        if (c->handles_open == 0)
            conn_free(c);
        return;
    }
    bool close = !c->keep_alive;
    /* Send before consuming: body may point into the request. */
    conn_send(c, status, content_type, extra ? extra : "", body, len, close);
    http_parser_consume(c->p);
    if (close) {
        conn_drain(c);
        return;
    }
    conn_pump(c, NULL, 0); /* no-op when called inside the handler */
}

void http_reply_error(struct http_conn *c, int status, const char *msg)
{
    size_t len = 0;
    char *body = http_error_json(msg != NULL ? msg : "", &len);
    if (body == NULL) {
        /* Still one reply, so that the conn is released. */
        http_reply(c, 500, NULL, NULL, 0);
        return;
    }
    http_reply(c, status, "application/json", body, len);
    free(body);
}

const char *http_conn_peer(const struct http_conn *c)
{
    return c->peer;
}
