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
 */
#include "clusterctl/http_client.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
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

static int hc_send_all(int fd, const char *buf, size_t len, int64_t deadline,
                       const char *addr, int timeout_ms, char *err,
                       size_t errlen)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = hc_wait(fd, POLLOUT, deadline);
            if (rc == SR_ETIMEDOUT)
                return sr_err(err, errlen, SR_ETIMEDOUT,
                              "timed out after %.3g s sending to %s",
                              timeout_ms / 1000.0, addr);
            if (rc == 0)
                continue;
        }
        return sr_err(err, errlen, SR_EIO, "cannot send to %s: %s", addr,
                      strerror(errno));
    }
    return 0;
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

    int fd = hc_connect(req->addr, deadline, timeout_ms, err, errlen);
    if (fd < 0)
        return fd;

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
        close(fd);
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    }
    int rc = hc_send_all(fd, full, (size_t)fn, deadline, req->addr, timeout_ms,
                         err, errlen);
    free(full);
    if (rc == 0 && req->body_len > 0)
        rc = hc_send_all(fd, req->body, req->body_len, deadline, req->addr,
                         timeout_ms, err, errlen);
    if (rc != 0) {
        close(fd);
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
        ssize_t n = recv(fd, b.data + b.len, b.cap - b.len - 1, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            rc = hc_wait(fd, POLLIN, deadline);
            if (rc == SR_ETIMEDOUT) {
                rc = sr_err(err, errlen, SR_ETIMEDOUT,
                            "timed out after %.3g s waiting for %s",
                            timeout_ms / 1000.0, req->addr);
                break;
            }
            if (rc == 0)
                continue;
            n = -1;
        }
        if (n < 0) {
            rc = sr_err(err, errlen, SR_EIO, "cannot read from %s: %s",
                        req->addr, strerror(errno));
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
    close(fd);
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
