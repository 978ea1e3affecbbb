/*
 * http_client.h - a small blocking HTTP/1.1 client for clusterctl.
 *
 * One request per connection ("Connection: close"), over plain TCP or TLS
 * (OpenSSL, the server's certificate verified). Every step (connect, TLS
 * handshake, send, receive) runs under one overall deadline using poll(2),
 * so a dead or stalled node cannot hang the operator's shell.
 * Response bodies are framed by Content-Length or by the end of the
 * connection; chunked responses are refused (our server never sends them).
 *
 * Blocking by design: this is for command-line tools, never for code on
 * the node's libuv loop.
 *
 * Ownership: the request's strings are borrowed for the call; the response
 * body is a new malloc'd, NUL-terminated buffer that
 * http_client_response_free() releases.
 */
#ifndef SR_HTTP_CLIENT_H
#define SR_HTTP_CLIENT_H

#include <stddef.h>

#define HTTP_CLIENT_DEFAULT_TIMEOUT_MS 10000
/* Refuse answers bigger than this rather than grow without bound. */
#define HTTP_CLIENT_MAX_RESPONSE (64u * 1024 * 1024)

struct http_client_request {
    const char *addr;         /* "host:port", "[v6]:port"; host may be a
                                 name (resolved with getaddrinfo) */
    const char *method;       /* "GET", "POST", ... */
    const char *path;         /* request-target, already URL-encoded */
    const char *token;        /* sent as "Authorization: Bearer"; NULL: none */
    const char *content_type; /* NULL: no Content-Type header */
    const char *body;         /* NULL with body_len 0: no body */
    size_t body_len;
    int timeout_ms;      /* whole exchange; 0: HTTP_CLIENT_DEFAULT_TIMEOUT_MS */
    int tls;             /* non-zero: HTTPS; the server's certificate must chain
                            to ca_file and name the host of addr (DNS name or IP
                            address), else the call fails with SR_EAUTH */
    const char *ca_file; /* PEM file of trusted CAs; NULL: the system's
                            default store */
};

struct http_client_response {
    int status; /* e.g. 200 */
    char *body; /* NUL-terminated; never NULL after success */
    size_t body_len;
};

/* Performs one exchange. Returns 0 with *resp filled (any HTTP status,
 * including 4xx/5xx), or a negative SR_E* code with a one-line err such as
 * "cannot connect to 127.0.0.1:8080: Connection refused" (SR_EIO),
 * "timed out after 10 s talking to 127.0.0.1:8080" (SR_ETIMEDOUT),
 * "bad address ..." (SR_EINVAL), "bad response from ..." (SR_EPARSE), or
 * "TLS handshake with 127.0.0.1:8443 failed: the server's certificate is
 * not trusted: self-signed certificate (CA: ca.pem)" (SR_EAUTH). */
int http_client_do(const struct http_client_request *req,
                   struct http_client_response *resp, char *err, size_t errlen);
void http_client_response_free(struct http_client_response *resp);

#endif
