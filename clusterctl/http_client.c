/*
 * http_client.c - blocking HTTP/1.1 client for clusterctl (see
 * http_client.h).
 *
 * The socket is non-blocking and every wait is a poll(2) bounded by what
 * is left of the request's deadline, so connect, send and receive together
 * never exceed timeout_ms. Names are resolved with getaddrinfo(), which
 * has no timeout of its own; that is acceptable for a CLI whose operator
 * can press ^C, and operators mostly give numeric addresses anyway.
 *
 * Responses (RFC 9112): the status line, header fields, then a body framed
 * by Content-Length or by connection close (we always send "Connection:
 * close"). Interim 1xx responses are skipped. Transfer-Encoding is refused
 * because our admin server never uses it.
 *
 * TLS (req->tls): OpenSSL on the same non-blocking socket; every
 * SSL_connect/SSL_write/SSL_read that wants the network waits in hc_wait()
 * for what OpenSSL asked (read or write), under the same deadline. The
 * server's certificate must chain to req->ca_file (or the system store)
 * and name the host we dialled: SSL_set1_host() for a DNS name (also sent
 * as SNI), X509_VERIFY_PARAM_set1_ip_asc() for an IP literal. TLS 1.2 is
 * the minimum. A missing close_notify at the end is not an error
 * (SSL_OP_IGNORE_UNEXPECTED_EOF): the node closes with a TCP shutdown, and
 * a body cut short is still caught by its Content-Length.
 */
#include "clusterctl/http_client.h"

#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "node/errors.h"

static int64_t hc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int hc_left_ms(int64_t deadline)
{
    int64_t left = deadline - hc_now_ms();
    if (left <= 0)
        return 0;
    return left > INT32_MAX ? INT32_MAX : (int)left;
}

/* Waits for `events` on fd until the deadline. Returns 0 when ready,
 * SR_ETIMEDOUT, or SR_EIO with errno set. */
static int hc_wait(int fd, short events, int64_t deadline)
{
    for (;;) {
        int left = hc_left_ms(deadline);
        if (left == 0)
            return SR_ETIMEDOUT;
        struct pollfd pfd = {.fd = fd, .events = events};
        int n = poll(&pfd, 1, left);
        if (n > 0)
            return 0;
        if (n == 0)
            return SR_ETIMEDOUT;
        if (errno != EINTR)
            return SR_EIO;
    }
}

/* "host:port" or "[v6]:port" -> host and port strings. */
static int hc_split_addr(const char *addr, char *host, size_t hostlen,
                         char *port, size_t portlen)
{
    const char *p;
    size_t hl;
    if (addr[0] == '[') {
        const char *rb = strchr(addr, ']');
        if (rb == NULL || rb[1] != ':')
            return SR_EINVAL;
        hl = (size_t)(rb - addr - 1);
        p = rb + 2;
        addr++;
    } else {
        const char *colon = strrchr(addr, ':');
        if (colon == NULL)
            return SR_EINVAL;
        hl = (size_t)(colon - addr);
        if (memchr(addr, ':', hl) != NULL)
            return SR_EINVAL; /* an IPv6 address needs brackets */
        p = colon + 1;
    }
    size_t pl = strlen(p);
    if (hl == 0 || hl >= hostlen || pl == 0 || pl >= portlen ||
        strspn(p, "0123456789") != pl || atol(p) > 65535)
        return SR_EINVAL;
    memcpy(host, addr, hl);
    host[hl] = '\0';
    memcpy(port, p, pl + 1);
    return 0;
}

/* Connects to the first address that answers; returns the fd or an
 * error. */
static int hc_connect(const char *addr, int64_t deadline, int timeout_ms,
                      char *err, size_t errlen)
{
    char host[256], port[8];
    if (hc_split_addr(addr, host, sizeof(host), port, sizeof(port)) != 0)
        return sr_err(err, errlen, SR_EINVAL,
                      "bad address \"%s\" (want HOST:PORT or [IPv6]:PORT)",
                      addr);

    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0)
        return sr_err(err, errlen, SR_EIO, "cannot resolve %s: %s", host,
                      gai_strerror(gai));

    int last_errno = ECONNREFUSED;
    bool timed_out = false;
    int fd = -1;
    for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        int s = socket(ai->ai_family,
                       ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                       ai->ai_protocol);
        if (s < 0) {
            last_errno = errno;
            continue;
        }
        if (connect(s, ai->ai_addr, ai->ai_addrlen) == 0) {
            fd = s;
            break;
        }
        if (errno != EINPROGRESS) {
            last_errno = errno;
            close(s);
            continue;
        }
        int rc = hc_wait(s, POLLOUT, deadline);
        if (rc == SR_ETIMEDOUT) {
            timed_out = true;
            close(s);
            break;
        }
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (rc != 0)
            soerr = errno;
        else if (getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
            soerr = errno;
        if (soerr == 0) {
            fd = s;
            break;
        }
        last_errno = soerr;
        close(s);
    }
    freeaddrinfo(res);
    if (fd >= 0)
        return fd;
    if (timed_out)
        return sr_err(err, errlen, SR_ETIMEDOUT,
                      "cannot connect to %s: timed out after %.3g s", addr,
                      timeout_ms / 1000.0);
    return sr_err(err, errlen, SR_EIO, "cannot connect to %s: %s", addr,
                  strerror(last_errno));
}

/* One connection: plain TCP, or TLS over it. */
struct hc_conn {
    int fd;
    SSL_CTX *ctx; /* owned; NULL for plain TCP */
    SSL *ssl;     /* owned; NULL for plain TCP */
};

#define HC_AGAIN (-100) /* wait for *ev, then retry */
#define HC_FAIL (-101)  /* errno (plain) or ssl_err/OpenSSL queue (TLS) */

static void hc_conn_close(struct hc_conn *c)
{
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
    c->ssl = NULL;
    c->ctx = NULL;
    c->fd = -1;
}

/* What an OpenSSL call's failure means for the loop: HC_AGAIN with *ev, 0
 * for a clean end of stream, or HC_FAIL (*ssl_err keeps the kind). */
static int hc_tls_result(struct hc_conn *c, int r, short *ev, int *ssl_err)
{
    int e = SSL_get_error(c->ssl, r);
    *ssl_err = e;
    if (e == SSL_ERROR_WANT_READ) {
        *ev = POLLIN;
        return HC_AGAIN;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        *ev = POLLOUT;
        return HC_AGAIN;
    }
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0;
    if (e == SSL_ERROR_SYSCALL && errno == 0)
        errno = ECONNRESET;
    return HC_FAIL;
}

/* One send step: bytes sent (> 0), HC_AGAIN or HC_FAIL. */
static ssize_t hc_conn_send(struct hc_conn *c, const char *buf, size_t len,
                            short *ev, int *ssl_err)
{
    *ssl_err = SSL_ERROR_NONE;
    if (c->ssl != NULL) {
        ERR_clear_error();
        errno = 0;
        int n = SSL_write(c->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
        if (n > 0)
            return n;
        int r = hc_tls_result(c, n, ev, ssl_err);
        return r == 0 ? HC_FAIL : r;
    }
    ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
    if (n > 0)
        return n;
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) {
        *ev = POLLOUT;
        return HC_AGAIN;
    }
    return HC_FAIL;
}

/* One receive step: bytes read (> 0), 0 at the end of the stream,
 * HC_AGAIN or HC_FAIL. */
static ssize_t hc_conn_recv(struct hc_conn *c, char *buf, size_t len, short *ev,
                            int *ssl_err)
{
    *ssl_err = SSL_ERROR_NONE;
    if (c->ssl != NULL) {
        ERR_clear_error();
        errno = 0;
        int n = SSL_read(c->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
        if (n > 0)
            return n;
        return hc_tls_result(c, n, ev, ssl_err);
    }
    ssize_t n = recv(c->fd, buf, len, 0);
    if (n >= 0)
        return n;
    if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) {
        *ev = POLLIN;
        return HC_AGAIN;
    }
    return HC_FAIL;
}

/* The reason text of OpenSSL's oldest queued error ("No such file or
 * directory"), or its full code when it has none. */
static const char *hc_ossl_reason(char *buf, size_t len)
{
    unsigned long e = ERR_get_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : "unknown error";
    if (r != NULL)
        return r;
    ERR_error_string_n(e, buf, len);
    return buf;
}

/* Why the last step failed, for an error line. */
static const char *hc_conn_why(const struct hc_conn *c, int ssl_err, char *buf,
                               size_t len)
{
    if (c->ssl != NULL && ERR_peek_error() != 0)
        return hc_ossl_reason(buf, len);
    if (c->ssl == NULL || ssl_err == SSL_ERROR_SYSCALL)
        return strerror(errno);
    return "TLS protocol error";
}

static int hc_send_all(struct hc_conn *c, const char *buf, size_t len,
                       int64_t deadline, const char *addr, int timeout_ms,
                       char *err, size_t errlen)
{
    while (len > 0) {
        short ev = 0;
        int ssl_err;
        ssize_t n = hc_conn_send(c, buf, len, &ev, &ssl_err);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            continue;
        }
        if (n == HC_AGAIN) {
            int rc = hc_wait(c->fd, ev, deadline);
            if (rc == SR_ETIMEDOUT)
                return sr_err(err, errlen, SR_ETIMEDOUT,
                              "timed out after %.3g s sending to %s",
                              timeout_ms / 1000.0, addr);
            if (rc == 0)
                continue;
            ssl_err = SSL_ERROR_SYSCALL;
        }
        char why[256];
        return sr_err(err, errlen, SR_EIO, "cannot send to %s: %s", addr,
                      hc_conn_why(c, ssl_err, why, sizeof why));
    }
    return 0;
}

/* TLS over c->fd: handshake and verify the server's certificate for host
 * (the name or IP literal in the address). */
static int hc_tls_start(struct hc_conn *c, const char *host,
                        const char *ca_file, const char *addr, int64_t deadline,
                        int timeout_ms, char *err, size_t errlen)
{
    char why[256];
    ERR_clear_error();
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (c->ctx == NULL)
        return sr_err(err, errlen, SR_ENOMEM, "TLS: cannot create context");
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    SSL_CTX_set_options(c->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    if (ca_file != NULL) {
        if (SSL_CTX_load_verify_locations(c->ctx, ca_file, NULL) != 1)
            return sr_err(err, errlen, SR_EINVAL,
                          "cannot load CA certificates from %s: %s", ca_file,
                          hc_ossl_reason(why, sizeof why));
    } else if (SSL_CTX_set_default_verify_paths(c->ctx) != 1) {
        return sr_err(err, errlen, SR_EINVAL,
                      "cannot load the system's CA certificates: %s",
                      hc_ossl_reason(why, sizeof why));
    }
    c->ssl = SSL_new(c->ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
        return sr_err(err, errlen, SR_ENOMEM, "TLS: cannot create connection");
    unsigned char ip[16];
    bool is_ip =
        inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), host)
                   : SSL_set1_host(c->ssl, host) &&
                         SSL_set_tlsext_host_name(c->ssl, host);
    if (ok != 1)
        return sr_err(err, errlen, SR_EINVAL,
                      "TLS: cannot check the certificate against \"%s\"", host);
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int r = SSL_connect(c->ssl);
        if (r == 1)
            return 0;
        short ev = 0;
        int ssl_err;
        int rc = hc_tls_result(c, r, &ev, &ssl_err);
        if (rc == HC_AGAIN) {
            rc = hc_wait(c->fd, ev, deadline);
            if (rc == 0)
                continue;
            if (rc == SR_ETIMEDOUT)
                return sr_err(err, errlen, SR_ETIMEDOUT,
                              "timed out after %.3g s in the TLS handshake "
                              "with %s",
                              timeout_ms / 1000.0, addr);
            ssl_err = SSL_ERROR_SYSCALL;
        }
        long vr = SSL_get_verify_result(c->ssl);
        if (vr != X509_V_OK)
            return sr_err(err, errlen, SR_EAUTH,
                          "TLS handshake with %s failed: the server's "
                          "certificate is not trusted: %s (CA: %s)",
                          addr, X509_verify_cert_error_string(vr),
                          ca_file != NULL ? ca_file : "the system store");
        if (rc == 0) /* the server closed before finishing */
            errno = ECONNRESET, ssl_err = SSL_ERROR_SYSCALL;
        return sr_err(err, errlen, SR_EIO, "TLS handshake with %s failed: %s",
                      addr, hc_conn_why(c, ssl_err, why, sizeof why));
    }
}

/* True if s (a header value) is safe to put on a header line. */
static bool hc_field_ok(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

struct hc_buf {
    char *data;
    size_t len;
    size_t cap;
};

static int hc_buf_reserve(struct hc_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t ncap = b->cap ? b->cap : 4096;
    while (ncap < b->len + extra + 1)
        ncap *= 2;
    char *nd = realloc(b->data, ncap);
    if (nd == NULL)
        return SR_ENOMEM;
    b->data = nd;
    b->cap = ncap;
    return 0;
}

/*
 * Looks at what has arrived. Returns 1 when the response is complete
 * (fills resp), 0 when more is needed, or an error. *body_off / *clen
 * remember the parsed head across calls; *clen is SIZE_MAX while unknown
 * (read to EOF).
 */
static int hc_parse(struct hc_buf *b, bool eof, size_t *body_off, size_t *clen,
                    int *status, const char *addr, char *err, size_t errlen)
{
    while (*body_off == 0) {
        b->data[b->len] = '\0';
        char *end = strstr(b->data, "\r\n\r\n");
        size_t hlen;
        if (end != NULL) {
            hlen = (size_t)(end - b->data) + 4;
        } else if ((end = strstr(b->data, "\n\n")) != NULL) {
            hlen = (size_t)(end - b->data) + 2;
        } else {
            if (eof)
                return sr_err(err, errlen, SR_EPARSE,
                              "bad response from %s: connection closed "
                              "before the header ended",
                              addr);
            return 0;
        }
        int maj = 0, min = 0, st = 0, n = 0;
        if (sscanf(b->data, "HTTP/%d.%d %3d%n", &maj, &min, &st, &n) != 3 ||
            maj != 1 || st < 100 || st > 599)
            return sr_err(err, errlen, SR_EPARSE,
                          "bad response from %s: not HTTP/1.x", addr);
        if (st < 200) {
            /* An interim answer (100 Continue): skip it whole. */
            memmove(b->data, b->data + hlen, b->len - hlen);
            b->len -= hlen;
            continue;
        }
        *status = st;
        *clen = SIZE_MAX;
        /* Header lines after the status line. */
        char *line = strchr(b->data, '\n') + 1;
        while (line < b->data + hlen) {
            char *nl = strchr(line, '\n');
            char *colon = memchr(line, ':', (size_t)(nl - line));
            if (colon != NULL) {
                char *v = colon + 1;
                while (*v == ' ' || *v == '\t')
                    v++;
                size_t nlen = (size_t)(colon - line);
                if (nlen == 14 &&
                    strncasecmp(line, "Content-Length", 14) == 0) {
                    char *e;
                    errno = 0;
                    unsigned long long cl = strtoull(v, &e, 10);
                    if (e == v || errno != 0 || cl > HTTP_CLIENT_MAX_RESPONSE)
                        return sr_err(err, errlen, SR_EPARSE,
                                      "bad response from %s: bad "
                                      "Content-Length",
                                      addr);
                    *clen = (size_t)cl;
                } else if (nlen == 17 &&
                           strncasecmp(line, "Transfer-Encoding", 17) == 0 &&
                           strncasecmp(v, "identity", 8) != 0) {
                    return sr_err(err, errlen, SR_EPARSE,
                                  "bad response from %s: Transfer-Encoding "
                                  "is not supported",
                                  addr);
                }
            }
            line = nl + 1;
        }
        *body_off = hlen;
    }
    size_t have = b->len - *body_off;
    if (*clen != SIZE_MAX && have >= *clen)
        return 1;
    if (eof) {
        if (*clen == SIZE_MAX)
            return 1;
        return sr_err(err, errlen, SR_EPARSE,
                      "bad response from %s: connection closed after %zu "
                      "of %zu body bytes",
                      addr, have, *clen);
    }
    return 0;
}

int http_client_do(const struct http_client_request *req,
                   struct http_client_response *resp, char *err, size_t errlen)
{
    memset(resp, 0, sizeof(*resp));
    int timeout_ms =
        req->timeout_ms > 0 ? req->timeout_ms : HTTP_CLIENT_DEFAULT_TIMEOUT_MS;
    int64_t deadline = hc_now_ms() + timeout_ms;

    if ((req->token != NULL && !hc_field_ok(req->token)) ||
        (req->content_type != NULL && !hc_field_ok(req->content_type)) ||
        !hc_field_ok(req->path) || !hc_field_ok(req->addr))
        return sr_err(err, errlen, SR_EINVAL,
                      "control characters in token, path or address");

    struct hc_conn conn = {.fd = -1};
    int fd = hc_connect(req->addr, deadline, timeout_ms, err, errlen);
    if (fd < 0)
        return fd;
    conn.fd = fd;
    if (req->tls) {
        char host[256], port[8];
        /* hc_connect() has accepted the address, so this cannot fail. */
        hc_split_addr(req->addr, host, sizeof(host), port, sizeof(port));
        int rc = hc_tls_start(&conn, host, req->ca_file, req->addr, deadline,
                              timeout_ms, err, errlen);
        if (rc != 0) {
            hc_conn_close(&conn);
            return rc;
        }
    }

    /* The head; the body is sent separately so it is never copied. POST
     * and PUT always carry a Content-Length (RFC 9110 8.6). */
    bool has_body = req->body != NULL || strcmp(req->method, "POST") == 0 ||
                    strcmp(req->method, "PUT") == 0;
    char cl[48] = "";
    if (has_body)
        snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", req->body_len);
    const char *tok = req->token;
    const char *ct = req->content_type;
    char *full = NULL;
    int fn = asprintf(&full,
                      "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: clusterctl\r\n"
                      "Accept: application/json\r\nConnection: close\r\n"
                      "%s%s%s%s%s%s%s\r\n",
                      req->method, req->path, req->addr,
                      tok != NULL ? "Authorization: Bearer " : "",
                      tok != NULL ? tok : "", tok != NULL ? "\r\n" : "",
                      ct != NULL ? "Content-Type: " : "", ct != NULL ? ct : "",
                      ct != NULL ? "\r\n" : "", cl);
    if (fn < 0) {
        hc_conn_close(&conn);
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    }
    int rc = hc_send_all(&conn, full, (size_t)fn, deadline, req->addr,
                         timeout_ms, err, errlen);
    free(full);
    if (rc == 0 && req->body_len > 0)
        rc = hc_send_all(&conn, req->body, req->body_len, deadline, req->addr,
                         timeout_ms, err, errlen);
    if (rc != 0) {
        hc_conn_close(&conn);
        return rc;
    }

    struct hc_buf b = {0};
    size_t body_off = 0, clen = SIZE_MAX;
    int status = 0;
    for (;;) {
        if (hc_buf_reserve(&b, 16384) != 0) {
            rc = sr_err(err, errlen, SR_ENOMEM, "out of memory");
            break;
        }
        short ev = 0;
        int ssl_err;
        ssize_t n = hc_conn_recv(&conn, b.data + b.len, b.cap - b.len - 1, &ev,
                                 &ssl_err);
        if (n == HC_AGAIN) {
            rc = hc_wait(fd, ev, deadline);
            if (rc == SR_ETIMEDOUT) {
                rc = sr_err(err, errlen, SR_ETIMEDOUT,
                            "timed out after %.3g s waiting for %s",
                            timeout_ms / 1000.0, req->addr);
                break;
            }
            if (rc == 0)
                continue;
            n = HC_FAIL;
            ssl_err = SSL_ERROR_SYSCALL;
        }
        if (n < 0) {
            char why[256];
            rc =
                sr_err(err, errlen, SR_EIO, "cannot read from %s: %s",
                       req->addr, hc_conn_why(&conn, ssl_err, why, sizeof why));
            break;
        }
        b.len += (size_t)n;
        if (b.len > HTTP_CLIENT_MAX_RESPONSE) {
            rc = sr_err(err, errlen, SR_EFULL, "response from %s is too large",
                        req->addr);
            break;
        }
        rc = hc_parse(&b, n == 0, &body_off, &clen, &status, req->addr, err,
                      errlen);
        if (rc != 0)
            break;
    }
    hc_conn_close(&conn);
    if (rc < 0) {
        free(b.data);
        return rc;
    }

    size_t blen = b.len - body_off;
    if (clen != SIZE_MAX && blen > clen)
        blen = clen;
    resp->body = malloc(blen + 1);
    if (resp->body == NULL) {
        free(b.data);
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    }
    memcpy(resp->body, b.data + body_off, blen);
    resp->body[blen] = '\0';
    resp->body_len = blen;
    resp->status = status;
    free(b.data);
    return 0;
}

void http_client_response_free(struct http_client_response *resp)
{
    if (resp == NULL)
        return;
    free(resp->body);
    resp->body = NULL;
    resp->body_len = 0;
}
