/* peertls.c - mutual TLS links between nodes (see peertls.h). */
#include "raft/peertls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "node/config.h"
#include "node/errors.h"
#include "node/log.h"
#include "node/uvout.h"

#define HELLO_MAGIC "SRPEER1"
#define CHUNK 16384
/* Backpressure: stop reading one side while the other side's write queue
 * holds more than this many bytes. */
#define HIGH_WATER (1u << 20)

enum link_state { L_CONNECTING, L_HANDSHAKE, L_HELLO, L_UP, L_CLOSING };

/* One link: TCP (ciphertext) <-> SSL <-> our socketpair end (plaintext).
 * Owned by its struct peertls; freed when its handles have closed. */
struct link {
    struct link *next, *prev;
    struct peertls *p;
    uv_tcp_t tcp;
    uv_pipe_t pipe; /* our socketpair end, once UP */
    uv_timer_t timer;
    uv_connect_t connect;
    int open_handles;
    bool pipe_open;
    bool outgoing;
    enum link_state state;
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    uint64_t peer_id;
    char address[256]; /* dialled address, or the peer's from its hello */
    unsigned char hello[PEERTLS_HELLO_LEN];
    size_t hello_got;
    bool tcp_paused, pipe_paused;
    struct peertls_connect *req; /* outgoing, until its callback ran */
};

struct peertls_connect {
    struct link *link;
    peertls_connect_cb cb;
    void *ud;
};

struct peertls {
    uv_loop_t *loop;
    int purpose;
    uint64_t self_id;
    char self_address[256];
    SSL_CTX *ctx;
    uv_tcp_t listener;
    bool listening;
    peertls_accept_cb accept_cb;
    void *accept_ud;
    struct link *links;
    int open_handles; /* listener + every link */
    bool closing;
};

static void ossl_msg(char *buf, size_t len)
{
    unsigned long e = ERR_get_error();
    if (e == 0)
        snprintf(buf, len, "unknown TLS error");
    else
        ERR_error_string_n(e, buf, len);
    ERR_clear_error();
}

/* ---- lifetime ---- */

static void p_unref(struct peertls *p)
{
    if (--p->open_handles == 0 && p->closing) {
        SSL_CTX_free(p->ctx);
        free(p);
    }
}

static void link_handle_closed(uv_handle_t *h)
{
    struct link *l = h->data;
    if (--l->open_handles > 0)
        return;
    struct peertls *p = l->p;
    SSL_free(l->ssl);
    free(l);
    p_unref(p);
}

static void finish_connect(struct link *l, int fd, int status)
{
    struct peertls_connect *req = l->req;
    if (req == NULL)
        return;
    l->req = NULL;
    req->cb(req->ud, fd, status);
    free(req);
}

/* Closes every handle of the link; a pending connect learns status. */
static void link_close(struct link *l, int status)
{
    if (l->state == L_CLOSING)
        return;
    l->state = L_CLOSING;
    if (l->prev)
        l->prev->next = l->next;
    else
        l->p->links = l->next;
    if (l->next)
        l->next->prev = l->prev;
    finish_connect(l, -1, status);
    uv_close((uv_handle_t *)&l->tcp, link_handle_closed);
    uv_close((uv_handle_t *)&l->timer, link_handle_closed);
    if (l->pipe_open)
        uv_close((uv_handle_t *)&l->pipe, link_handle_closed);
}

static void link_fail(struct link *l, int status, const char *why)
{
    /* A refused certificate or hello is worth an operator's attention; a
     * peer that is down (refused connect, timeout) is routine. */
    if (l->state < L_UP && (status == SR_EAUTH || status == SR_EPARSE))
        LOG_WARN("event=peer_link_refused purpose=%c direction=%s peer=%llu "
                 "address=%s reason=\"%s\"",
                 l->p->purpose, l->outgoing ? "out" : "in",
                 (unsigned long long)l->peer_id, l->address, why);
    else if (l->state < L_UP)
        LOG_DEBUG("event=peer_link_failed purpose=%c direction=%s peer=%llu "
                  "address=%s reason=\"%s\"",
                  l->p->purpose, l->outgoing ? "out" : "in",
                  (unsigned long long)l->peer_id, l->address, why);
    link_close(l, status);
}

static void on_timeout(uv_timer_t *t)
{
    struct link *l = t->data;
    link_fail(l, SR_ETIMEDOUT, "handshake timed out");
}

/* ---- writes ---- */

static void tcp_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);
static void pipe_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);
static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf);

/* The callbacks run only for writes the socket did not take at once
 * (node/uvout.h); only those can leave a direction paused. */
static void tcp_written(void *ud, int status)
{
    struct link *l = ud;
    if (l->state == L_CLOSING)
        return;
    if (status != 0) {
        link_fail(l, SR_EIO, uv_strerror(status));
        return;
    }
    if (l->pipe_paused && l->pipe_open &&
        uv_stream_get_write_queue_size((uv_stream_t *)&l->tcp) < HIGH_WATER) {
        l->pipe_paused = false;
        uv_read_start((uv_stream_t *)&l->pipe, alloc_cb, pipe_read);
    }
}

static void pipe_written(void *ud, int status)
{
    struct link *l = ud;
    if (l->state == L_CLOSING)
        return;
    if (status != 0) {
        link_close(l, SR_EIO); /* the user closed its end */
        return;
    }
    if (l->tcp_paused &&
        uv_stream_get_write_queue_size((uv_stream_t *)&l->pipe) < HIGH_WATER) {
        l->tcp_paused = false;
        uv_read_start((uv_stream_t *)&l->tcp, alloc_cb, tcp_read);
    }
}

/* Moves what OpenSSL wants to send onto the TCP socket. */
static int flush_tls(struct link *l)
{
    size_t pending;
    while ((pending = BIO_ctrl_pending(l->wbio)) > 0) {
        char *buf = malloc(pending);
        if (buf == NULL)
            return SR_ENOMEM;
        int n = BIO_read(l->wbio, buf, (int)pending);
        if (n <= 0) {
            free(buf);
            return SR_EIO;
        }
        int rc =
            uvout_write((uv_stream_t *)&l->tcp, buf, (size_t)n, tcp_written, l);
        if (rc != 0)
            return rc;
    }
    if (l->pipe_open && !l->pipe_paused &&
        uv_stream_get_write_queue_size((uv_stream_t *)&l->tcp) >= HIGH_WATER) {
        l->pipe_paused = true;
        uv_read_stop((uv_stream_t *)&l->pipe);
    }
    return 0;
}

/* ---- the hello ---- */

static void put_u64(unsigned char *b, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        b[i] = (unsigned char)v;
}

static uint64_t get_u64(const unsigned char *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    return v;
}

/* Layout: "SRPEER1" purpose(1) | id u64be | 8 reserved zero bytes |
 * address, NUL-padded to 256. */
static void hello_build(unsigned char *h, int purpose, uint64_t id,
                        const char *address)
{
    memset(h, 0, PEERTLS_HELLO_LEN);
    memcpy(h, HELLO_MAGIC, 7);
    h[7] = (unsigned char)purpose;
    put_u64(h + 8, id);
    snprintf((char *)h + 24, PEERTLS_HELLO_LEN - 24, "%s", address);
}

int peertls_hello_parse(const unsigned char *h, int purpose, uint64_t *id,
                        char *address, size_t addrlen)
{
    if (memcmp(h, HELLO_MAGIC, 7) != 0 || h[7] != (unsigned char)purpose)
        return SR_EPARSE;
    for (int i = 16; i < 24; i++)
        if (h[i] != 0)
            return SR_EPARSE;
    const unsigned char *a = h + 24;
    size_t alen = 0;
    while (alen < PEERTLS_HELLO_LEN - 24 && a[alen] != 0)
        alen++;
    if (alen == 0 || alen == PEERTLS_HELLO_LEN - 24 || alen >= addrlen)
        return SR_EPARSE;
    for (size_t i = alen; i < PEERTLS_HELLO_LEN - 24; i++)
        if (a[i] != 0)
            return SR_EPARSE;
    for (size_t i = 0; i < alen; i++)
        if (a[i] < 0x21 || a[i] > 0x7e)
            return SR_EPARSE;
    *id = get_u64(h + 8);
    if (*id == 0)
        return SR_EPARSE;
    memcpy(address, a, alen);
    address[alen] = 0;
    return 0;
}

/* ---- becoming UP ---- */

/* Creates the socketpair; our end becomes l->pipe. Returns the user's fd. */
static int open_pair(struct link *l)
{
    uv_os_sock_t fds[2];
    if (uv_socketpair(SOCK_STREAM, 0, fds, UV_NONBLOCK_PIPE,
                      UV_NONBLOCK_PIPE) != 0)
        return -1;
    uv_pipe_init(l->p->loop, &l->pipe, 0);
    l->pipe.data = l;
    l->open_handles++;
    l->pipe_open = true;
    if (uv_pipe_open(&l->pipe, fds[0]) != 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    uv_read_start((uv_stream_t *)&l->pipe, alloc_cb, pipe_read);
    return fds[1];
}

static bool cert_names_node(SSL *ssl, uint64_t id)
{
    X509 *cert = SSL_get0_peer_certificate(ssl);
    if (cert == NULL)
        return false;
    char name[32];
    snprintf(name, sizeof name, "node%llu", (unsigned long long)id);
    return X509_check_host(cert, name, 0, X509_CHECK_FLAG_NO_WILDCARDS, NULL) ==
           1;
}

static void go_up(struct link *l)
{
    uv_timer_stop(&l->timer);
    int fd = open_pair(l);
    if (fd < 0) {
        link_fail(l, SR_EIO, "socketpair failed");
        return;
    }
    l->state = L_UP;
    LOG_DEBUG("event=peer_link_up purpose=%c direction=%s peer=%llu "
              "address=%s tls=%s",
              l->p->purpose, l->outgoing ? "out" : "in",
              (unsigned long long)l->peer_id, l->address,
              SSL_get_version(l->ssl));
    if (l->outgoing)
        finish_connect(l, fd, 0);
    else
        l->p->accept_cb(l->p->accept_ud, fd, l->peer_id, l->address);
}

/* Handshake done: verify the peer and, dialling, send our hello. */
static void handshake_done(struct link *l)
{
    long vr = SSL_get_verify_result(l->ssl);
    if (vr != X509_V_OK) {
        link_fail(l, SR_EAUTH, X509_verify_cert_error_string(vr));
        return;
    }
    if (SSL_get0_peer_certificate(l->ssl) == NULL) {
        link_fail(l, SR_EAUTH, "no peer certificate");
        return;
    }
    if (l->outgoing) {
        /* SSL_set1_host made the chain check cover the name too; check
         * again, so that a missing hostflag could never let it through. */
        if (!cert_names_node(l->ssl, l->peer_id)) {
            link_fail(l, SR_EAUTH, "certificate does not name the node");
            return;
        }
        unsigned char h[PEERTLS_HELLO_LEN];
        hello_build(h, l->p->purpose, l->p->self_id, l->p->self_address);
        if (SSL_write(l->ssl, h, sizeof h) != (int)sizeof h ||
            flush_tls(l) != 0) {
            link_fail(l, SR_EIO, "hello write failed");
            return;
        }
        go_up(l);
    } else {
        l->state = L_HELLO;
    }
}

/* ---- reads ---- */

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    (void)hint;
    buf->base = malloc(CHUNK);
    buf->len = buf->base ? CHUNK : 0;
}

/* Drives OpenSSL after ciphertext arrived: handshake, hello, plaintext to
 * the pipe. Returns false when the link was closed. */
static bool advance(struct link *l)
{
    if (l->state == L_HANDSHAKE) {
        int rc = SSL_do_handshake(l->ssl);
        if (flush_tls(l) != 0) {
            link_fail(l, SR_EIO, "write failed");
            return false;
        }
        if (rc != 1) {
            int e = SSL_get_error(l->ssl, rc);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return true;
            char msg[160];
            long vr = SSL_get_verify_result(l->ssl);
            if (vr != X509_V_OK)
                snprintf(msg, sizeof msg, "%s",
                         X509_verify_cert_error_string(vr));
            else
                ossl_msg(msg, sizeof msg);
            link_fail(l, SR_EAUTH, msg);
            return false;
        }
        handshake_done(l);
        if (l->state == L_CLOSING)
            return false;
    }
    while (l->state == L_HELLO) {
        int n = SSL_read(l->ssl, l->hello + l->hello_got,
                         (int)(sizeof l->hello - l->hello_got));
        if (n <= 0)
            break;
        l->hello_got += (size_t)n;
        if (l->hello_got < sizeof l->hello)
            continue;
        uint64_t id;
        if (peertls_hello_parse(l->hello, l->p->purpose, &id, l->address,
                                sizeof l->address) != 0) {
            link_fail(l, SR_EPARSE, "bad hello");
            return false;
        }
        l->peer_id = id;
        if (!cert_names_node(l->ssl, id)) {
            link_fail(l, SR_EAUTH,
                      "claimed node id is not the one in its certificate");
            return false;
        }
        go_up(l);
        if (l->state != L_UP)
            return false;
    }
    while (l->state == L_UP) {
        char *buf = malloc(CHUNK);
        if (buf == NULL) {
            link_fail(l, SR_ENOMEM, "out of memory");
            return false;
        }
        int n = SSL_read(l->ssl, buf, CHUNK);
        if (n <= 0) {
            free(buf);
            int e = SSL_get_error(l->ssl, n);
            if (e == SSL_ERROR_WANT_READ)
                break;
            link_close(l, e == SSL_ERROR_ZERO_RETURN ? 0 : SR_EIO);
            return false;
        }
        if (uvout_write((uv_stream_t *)&l->pipe, buf, (size_t)n, pipe_written,
                        l) != 0) {
            link_close(l, SR_EIO);
            return false;
        }
    }
    if (l->state == L_UP && !l->tcp_paused &&
        uv_stream_get_write_queue_size((uv_stream_t *)&l->pipe) >= HIGH_WATER) {
        l->tcp_paused = true;
        uv_read_stop((uv_stream_t *)&l->tcp);
    }
    /* SSL_read may have produced a post-handshake message to send. */
    if (l->state != L_CLOSING && flush_tls(l) != 0) {
        link_fail(l, SR_EIO, "write failed");
        return false;
    }
    return l->state != L_CLOSING;
}

static void tcp_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct link *l = s->data;
    if (n > 0 && l->state != L_CLOSING) {
        if (BIO_write(l->rbio, buf->base, (int)n) != (int)n)
            link_fail(l, SR_ENOMEM, "BIO_write failed");
        else
            advance(l);
    } else if (n < 0 && l->state != L_CLOSING) {
        link_fail(l, SR_EIO, n == UV_EOF ? "peer closed" : uv_strerror((int)n));
    }
    free(buf->base);
}

static void pipe_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct link *l = s->data;
    if (n > 0 && l->state == L_UP) {
        if (SSL_write(l->ssl, buf->base, (int)n) != (int)n || flush_tls(l) != 0)
            link_close(l, SR_EIO);
    } else if (n < 0 && l->state != L_CLOSING) {
        link_close(l, 0); /* the user closed its end */
    }
    free(buf->base);
}

/* ---- setting links up ---- */

static struct link *link_new(struct peertls *p, bool outgoing)
{
    struct link *l = calloc(1, sizeof *l);
    if (l == NULL)
        return NULL;
    l->ssl = SSL_new(p->ctx);
    l->rbio = BIO_new(BIO_s_mem());
    l->wbio = BIO_new(BIO_s_mem());
    if (l->ssl == NULL || l->rbio == NULL || l->wbio == NULL) {
        SSL_free(l->ssl);
        BIO_free(l->rbio);
        BIO_free(l->wbio);
        free(l);
        return NULL;
    }
    SSL_set_bio(l->ssl, l->rbio, l->wbio);
    l->p = p;
    l->outgoing = outgoing;
    uv_tcp_init(p->loop, &l->tcp);
    uv_timer_init(p->loop, &l->timer);
    l->tcp.data = l;
    l->timer.data = l;
    l->open_handles = 2;
    p->open_handles++;
    l->next = p->links;
    if (p->links)
        p->links->prev = l;
    p->links = l;
    uv_timer_start(&l->timer, on_timeout, PEERTLS_HANDSHAKE_MS, 0);
    return l;
}

static void on_connection(uv_stream_t *server, int status)
{
    struct peertls *p = server->data;
    if (status != 0 || p->closing)
        return;
    struct link *l = link_new(p, false);
    if (l == NULL)
        return;
    l->state = L_HANDSHAKE;
    if (uv_accept(server, (uv_stream_t *)&l->tcp) != 0) {
        link_close(l, SR_EIO);
        return;
    }
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    char host[64] = "?";
    if (uv_tcp_getpeername(&l->tcp, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)&ss, host, sizeof host);
        else
            uv_ip4_name((struct sockaddr_in *)&ss, host, sizeof host);
    }
    snprintf(l->address, sizeof l->address, "%s", host);
    uv_tcp_nodelay(&l->tcp, 1);
    SSL_set_accept_state(l->ssl);
    uv_read_start((uv_stream_t *)&l->tcp, alloc_cb, tcp_read);
}

static void on_connected(uv_connect_t *c, int status)
{
    struct link *l = c->data;
    if (l->state == L_CLOSING)
        return;
    if (status != 0) {
        link_fail(l, SR_EIO, uv_strerror(status));
        return;
    }
    uv_tcp_nodelay(&l->tcp, 1);
    l->state = L_HANDSHAKE;
    SSL_set_connect_state(l->ssl);
    uv_read_start((uv_stream_t *)&l->tcp, alloc_cb, tcp_read);
    advance(l);
}

int peertls_connect(struct peertls *p, uint64_t peer_id, const char *address,
                    peertls_connect_cb cb, void *ud,
                    struct peertls_connect **out)
{
    if (p->closing)
        return SR_ESHUTDOWN;
    struct sockaddr_storage ss;
    if (config_ip_address(address, &ss) != 0)
        return SR_EINVAL;
    struct peertls_connect *req = calloc(1, sizeof *req);
    if (req == NULL)
        return SR_ENOMEM;
    struct link *l = link_new(p, true);
    if (l == NULL) {
        free(req);
        return SR_ENOMEM;
    }
    char name[32];
    snprintf(name, sizeof name, "node%llu", (unsigned long long)peer_id);
    SSL_set_hostflags(l->ssl, X509_CHECK_FLAG_NO_WILDCARDS);
    if (SSL_set1_host(l->ssl, name) != 1) {
        free(req);
        link_close(l, SR_ENOMEM);
        return SR_ENOMEM;
    }
    l->peer_id = peer_id;
    snprintf(l->address, sizeof l->address, "%s", address);
    l->state = L_CONNECTING;
    l->connect.data = l;
    if (uv_tcp_connect(&l->connect, &l->tcp, (struct sockaddr *)&ss,
                       on_connected) != 0) {
        free(req);
        link_close(l, SR_EIO);
        return SR_EIO;
    }
    req->link = l;
    req->cb = cb;
    req->ud = ud;
    l->req = req;
    if (out)
        *out = req;
    return 0;
}

void peertls_connect_cancel(struct peertls_connect *c)
{
    link_close(c->link, SR_ECANCELED);
}

/* ---- endpoint ---- */

int peertls_new(uv_loop_t *loop, int purpose, uint64_t self_id,
                const char *self_address, const char *ca_file,
                const char *cert_file, const char *key_file,
                struct peertls **out, char *err, size_t errlen)
{
    char msg[160];
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (ctx == NULL)
        return sr_err(err, errlen, SR_ENOMEM, "cluster TLS: no SSL_CTX");
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 0);
    const char *what = NULL, *file = NULL;
    if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1)
        what = "cluster.tls_ca", file = ca_file;
    else if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1)
        what = "cluster.tls_cert", file = cert_file;
    else if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1)
        what = "cluster.tls_key", file = key_file;
    else if (SSL_CTX_check_private_key(ctx) != 1)
        what = "cluster.tls_key", file = key_file;
    if (what != NULL) {
        ossl_msg(msg, sizeof msg);
        SSL_CTX_free(ctx);
        return sr_err(err, errlen, SR_EINVAL, "%s: %s: %s", what, file, msg);
    }
    /* Our own certificate must name us, or every peer would refuse us. */
    X509 *own = SSL_CTX_get0_certificate(ctx);
    char name[32];
    snprintf(name, sizeof name, "node%llu", (unsigned long long)self_id);
    if (own == NULL ||
        X509_check_host(own, name, 0, X509_CHECK_FLAG_NO_WILDCARDS, NULL) !=
            1) {
        SSL_CTX_free(ctx);
        return sr_err(err, errlen, SR_EINVAL,
                      "cluster.tls_cert: %s does not name %s (node.id)",
                      cert_file, name);
    }
    struct peertls *p = calloc(1, sizeof *p);
    if (p == NULL) {
        SSL_CTX_free(ctx);
        return SR_ENOMEM;
    }
    p->loop = loop;
    p->purpose = purpose;
    p->self_id = self_id;
    snprintf(p->self_address, sizeof p->self_address, "%s", self_address);
    p->ctx = ctx;
    p->open_handles = 1; /* released by peertls_close */
    *out = p;
    return 0;
}

int peertls_listen(struct peertls *p, const char *address, peertls_accept_cb cb,
                   void *ud, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    if (config_ip_address(address, &ss) != 0)
        return sr_err(err, errlen, SR_EINVAL, "bad address %s", address);
    p->accept_cb = cb;
    p->accept_ud = ud;
    uv_tcp_init(p->loop, &p->listener);
    p->listener.data = p;
    p->listening = true;
    p->open_handles++;
    int rc = uv_tcp_bind(&p->listener, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&p->listener, 128, on_connection);
    if (rc != 0)
        return sr_err(err, errlen, SR_EIO, "%s: %s", address, uv_strerror(rc));
    return 0;
}

static void listener_closed(uv_handle_t *h)
{
    p_unref(h->data);
}

void peertls_close(struct peertls *p)
{
    if (p->closing)
        return;
    p->closing = true;
    if (p->listening)
        uv_close((uv_handle_t *)&p->listener, listener_closed);
    while (p->links)
        link_close(p->links, SR_ECANCELED);
    p_unref(p);
}
