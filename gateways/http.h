/*
 * http.h - a strict, incremental HTTP/1.1 request parser (RFC 9112).
 *
 * Pure: no I/O. Feed bytes; it reports when one full request (line,
 * headers, Content-Length body) is in. Chunked request bodies are refused
 * (411/501 by the caller), as are header sections over max_header bytes,
 * bodies over max_body bytes, bad request lines, obs-fold, bare CR, and
 * conflicting Content-Length values (request smuggling).
 *
 * Ownership: a request's strings point into the parser's buffer and stay
 * valid until http_parser_consume() or http_parser_free().
 */
#ifndef SR_HTTP_H
#define SR_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_MAX_HEADERS 64

struct http_header {
    const char *name;  /* NUL-terminated, as sent */
    const char *value; /* NUL-terminated, trimmed of OWS */
};

struct http_request {
    const char *method; /* "GET", "POST", ... */
    const char *target; /* request-target as sent ("/v1/status?x=1") */
    const char *path;   /* target up to '?', percent-decoding NOT applied */
    const char *query;  /* after '?', "" if none */
    int version_minor;  /* 0 or 1 */
    struct http_header headers[HTTP_MAX_HEADERS];
    unsigned n_headers;
    const char *body; /* Content-Length bytes (not NUL-terminated) */
    size_t body_len;
    bool keep_alive; /* per version and Connection header */
};

struct http_parser;

struct http_parser *http_parser_new(size_t max_header, size_t max_body);
void http_parser_free(struct http_parser *p);

/* Appends bytes. Returns 1 when a full request is available in *req,
 * 0 when more bytes are needed, or a negative SR_E* code with *status set
 * to the HTTP status to answer (400, 413, 431, 501, 505) and the
 * connection should be closed after answering. */
int http_parser_feed(struct http_parser *p, const char *buf, size_t len,
                     struct http_request *req, int *status);
/* Drops the request returned by the last feed; the next call to
 * http_parser_feed() with len 0 parses any pipelined bytes left. */
void http_parser_consume(struct http_parser *p);

/* Case-insensitive header lookup; NULL if absent. */
const char *http_request_header(const struct http_request *req,
                                const char *name);

/* Added after the first cut (existing declarations above are unchanged). */
/* Note: http_parser_new() takes 0 for either limit as "the default"
 * (max_header 16 KiB, max_body 1 MiB). On allocation failure feed returns
 * SR_ENOMEM with status 500. */

/* One line saying why the last feed failed ("bare CR in header section"),
 * "" if it did not; valid until http_parser_free(). */
const char *http_parser_errmsg(const struct http_parser *p);
/* True once per request when its header section is in, its body is still
 * to come and it carried "Expect: 100-continue" (HTTP/1.1 only, RFC 9110
 * 10.1.1): the server should send "100 Continue" before waiting. */
bool http_parser_want_continue(struct http_parser *p);
/* The reason phrase for a status ("Not Found"); "Unknown" if unlisted. */
const char *http_status_reason(int status);

#endif
