/*
 * test_http.c - the HTTP/1.1 request parser (table-driven) and the libuv
 * server end to end.
 *
 * Parser rows say what one input must give (a request with these fields,
 * "need more", or an error status); every row is run whole, split in two
 * at every byte boundary, and byte by byte, and must give the same answer
 * each way. Server tests run a real http_server on 127.0.0.1:0 on a loop in
 * this thread, with a blocking socket client in a second thread; the client
 * only records what it saw and the checks run here after the join, because
 * cmocka assertions must not fire on another thread.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "gateways/http.h"
#include "gateways/http_server.h"
#include "node/errors.h"

/* ------------------------------------------------------------------ */
/* Parser                                                             */
/* ------------------------------------------------------------------ */

#define NEED_MORE 0
#define COMPLETE 1
#define FAILED (-1)

struct parse_case {
    const char *name;
    const char *in;
    size_t in_len; /* 0: strlen(in) */
    int want;      /* COMPLETE, NEED_MORE or FAILED */
    int want_status;
    const char *want_method;
    const char *want_target;
    const char *want_path;
    const char *want_query;
    int want_minor;
    bool want_keep_alive;
    const char *want_body; /* NULL: empty */
    unsigned want_n_headers;
    const char *want_hname; /* optional header lookup */
    const char *want_hvalue;
    size_t max_header; /* 0: 1024 */
    size_t max_body;   /* 0: 64 */
};

#define GET11(extra) "GET / HTTP/1.1\r\nHost: h\r\n" extra "\r\n"

static const struct parse_case cases[] = {
    /* ---- valid ---- */
    {.name = "simple GET",
     .in = "GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
     .want = COMPLETE,
     .want_method = "GET",
     .want_target = "/v1/status",
     .want_path = "/v1/status",
     .want_query = "",
     .want_minor = 1,
     .want_keep_alive = true,
     .want_n_headers = 1,
     .want_hname = "host",
     .want_hvalue = "127.0.0.1:8080"},
    {.name = "query string",
     .in = "GET /v1/messages?limit=5&x= HTTP/1.1\r\nHost: h\r\n\r\n",
     .want = COMPLETE,
     .want_method = "GET",
     .want_target = "/v1/messages?limit=5&x=",
     .want_path = "/v1/messages",
     .want_query = "limit=5&x=",
     .want_minor = 1,
     .want_keep_alive = true,
     .want_n_headers = 1},
    {.name = "percent-encoding kept",
     .in = "GET /v1/messages/01%2F03-1 HTTP/1.1\r\nHost: h\r\n\r\n",
     .want = COMPLETE,
     .want_method = "GET",
     .want_target = "/v1/messages/01%2F03-1",
     .want_path = "/v1/messages/01%2F03-1",
     .want_query = "",
     .want_minor = 1,
     .want_keep_alive = true,
     .want_n_headers = 1},
    {.name = "POST with body",
     .in = "POST /v1/members HTTP/1.1\r\nHost: h\r\n"
           "Content-Type: application/json\r\nContent-Length: 8\r\n\r\n"
           "{\"id\":4}",
     .want = COMPLETE,
     .want_method = "POST",
     .want_target = "/v1/members",
     .want_path = "/v1/members",
     .want_query = "",
     .want_minor = 1,
     .want_keep_alive = true,
     .want_body = "{\"id\":4}",
     .want_n_headers = 3,
     .want_hname = "CONTENT-TYPE",
     .want_hvalue = "application/json"},
    {.name = "Content-Length 0",
     .in = "DELETE /v1/members/3 HTTP/1.1\r\nHost: h\r\n"
           "Content-Length: 0\r\n\r\n",
     .want = COMPLETE,
     .want_method = "DELETE",
     .want_target = "/v1/members/3",
     .want_path = "/v1/members/3",
     .want_query = "",
     .want_minor = 1,
     .want_keep_alive = true,
     .want_n_headers = 2},
    {.name = "Content-Length leading zeros and OWS",
     .in = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length:  003 \r\n\r\nabc",
     .want = COMPLETE,
     .want_method = "POST",
     .want_target = "/",
     .want_path = "/",
     .want_query = "",
     .want_minor = 1,
     .want_keep_alive = true,
     .want_body = "abc",
     .want_n_headers = 2,
     .want_hname = "content-length",
     .want_hvalue = "003"},
    {.name = "body exactly max_body",
     .in = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 8\r\n\r\n12345678",
     .want = COMPLETE,
     .want_method = "POST",
     .want_target = "/",
     .want_path = "/",
     .want_query = "",
     .want_minor = 1,
     .want_keep_alive = true,
     .want_body = "12345678",
     .want_n_headers = 2,
     .max_body = 8},
    {.name = "HTTP/1.0 without Host closes",
     .in = "GET /a HTTP/1.0\r\n\r\n",
     .want = COMPLETE,
     .want_method = "GET",
     .want_target = "/a",
     .want_path = "/a",
     .want_query = "",
     .want_minor = 0,
     .want_keep_alive = false},
    {.name = "HTTP/1.0 keep-alive",
     .in = "GET /a HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
     .want = COMPLETE,
     .want_method = "GET",
     .want_target = "/a",
     .want_path = "/a",
     .want_query = "",
     .want_minor = 0,
     .want_keep_alive = true,
     .want_n_headers = 1},
    {.name = "HTTP/1.1 Connection close in a list",
     .in = GET11("Connection: foo, CLOSE ,bar\r\n"),
     .want = COMPLETE,
     .want_method = "GET",
     .want_target = "/",
     .want_path = "/",
     .want_query = "",
     .want_minor = 1,
     .want_keep_alive = false,
     .want_n_headers = 2},
    {.name = "OWS trimmed, inner spaces kept",
     .in = GET11("X-A: \t value  with spaces \t\r\n"),
     .want = COMPLETE,
     .want_method = "GET",
     .want_target = "/",
     .want_path = "/",
     .want_query = "",
     .want_minor = 1,
     .want_keep_alive = true,
     .want_n_headers = 2,
     .want_hname = "x-a",
     .want_hvalue = "value  with spaces"},
    {.name = "empty header value",
     .in = GET11("X-Empty:\r\n"),
     .want = COMPLETE,
     .want_method = "GET",
     .want_target = "/",
     .want_path = "/",
     .want_query = "",
     .want_minor = 1,
     .want_keep_alive = true,
     .want_n_headers = 2,
     .want_hname = "X-Empty",
     .want_hvalue = ""},
    {.name = "obs-text in value",
     .in = GET11("X-U: caf\xc3\xa9\r\n"),
     .want = COMPLETE,
     .want_method = "GET",
     .want_target = "/",
     .want_path = "/",
     .want_query = "",
     .want_minor = 1,
     .want_keep_alive = true,
     .want_n_headers = 2,
     .want_hname = "x-u",
     .want_hvalue = "caf\xc3\xa9"},
    {.name = "leading empty lines ignored",
     .in = "\r\n\r\nGET /x HTTP/1.1\r\nHost: h\r\n\r\n",
     .want = COMPLETE,
     .want_method = "GET",
     .want_target = "/x",
     .want_path = "/x",
     .want_query = "",
     .want_minor = 1,
     .want_keep_alive = true,
     .want_n_headers = 1},
    {.name = "absolute-form",
     .in = "GET http://example.com:80/a/b?c=d HTTP/1.1\r\nHost: h\r\n\r\n",
     .want = COMPLETE,
     .want_method = "GET",
     .want_target = "http://example.com:80/a/b?c=d",
     .want_path = "/a/b",
     .want_query = "c=d",
     .want_minor = 1,
     .want_keep_alive = true,
     .want_n_headers = 1},
    {.name = "absolute-form without path",
     .in = "GET HTTP://example.com HTTP/1.1\r\nHost: h\r\n\r\n",
     .want = COMPLETE,
     .want_method = "GET",
     .want_target = "HTTP://example.com",
     .want_path = "/",
     .want_query = "",
     .want_minor = 1,
     .want_keep_alive = true,
     .want_n_headers = 1},
    {.name = "OPTIONS asterisk",
     .in = "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
     .want = COMPLETE,
     .want_method = "OPTIONS",
     .want_target = "*",
     .want_path = "*",
     .want_query = "",
     .want_minor = 1,
     .want_keep_alive = true,
     .want_n_headers = 1},
    {.name = "extension method",
     .in = "M-SEARCH /x HTTP/1.1\r\nHost: h\r\n\r\n",
     .want = COMPLETE,
     .want_method = "M-SEARCH",
     .want_target = "/x",
     .want_path = "/x",
     .want_query = "",
     .want_minor = 1,
     .want_keep_alive = true,
     .want_n_headers = 1},
    {.name = "64 headers fit",
     .in = "GET / HTTP/1.1\r\nHost: h\r\n"
           "a:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\n"
           "a:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\n"
           "a:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\n"
           "a:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\n"
           "a:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\n"
           "a:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\n"
           "a:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\n"
           "a:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\n\r\n",
     .want = COMPLETE,
     .want_method = "GET",
     .want_target = "/",
     .want_path = "/",
     .want_query = "",
     .want_minor = 1,
     .want_keep_alive = true,
     .want_n_headers = 64},

    /* ---- incomplete ---- */
    {.name = "header section not finished",
     .in = "GET / HTTP/1.1\r\nHost: h\r\n",
     .want = NEED_MORE},
    {.name = "body not finished",
     .in = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nabc",
     .want = NEED_MORE},
    {.name = "only empty lines", .in = "\r\n\r\n\r\n", .want = NEED_MORE},
    {.name = "nothing", .in = "", .want = NEED_MORE},

    /* ---- refused ---- */
    {.name = "Transfer-Encoding chunked",
     .in = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
           "3\r\nabc\r\n0\r\n\r\n",
     .want = FAILED,
     .want_status = 501},
    {.name = "Transfer-Encoding identity",
     .in = GET11("transfer-encoding: identity\r\n"),
     .want = FAILED,
     .want_status = 501},
    {.name = "Transfer-Encoding with Content-Length",
     .in = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
           "Transfer-Encoding: chunked\r\n\r\nabc",
     .want = FAILED,
     .want_status = 501},
    {.name = "duplicate equal Content-Length",
     .in = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
           "Content-Length: 3\r\n\r\nabc",
     .want = FAILED,
     .want_status = 400},
    {.name = "conflicting Content-Length",
     .in = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
           "content-length: 4\r\n\r\nabcd",
     .want = FAILED,
     .want_status = 400},
    {.name = "Content-Length list",
     .in = GET11("Content-Length: 3, 3\r\n"),
     .want = FAILED,
     .want_status = 400},
    {.name = "Content-Length negative",
     .in = GET11("Content-Length: -1\r\n"),
     .want = FAILED,
     .want_status = 400},
    {.name = "Content-Length plus sign",
     .in = GET11("Content-Length: +1\r\n"),
     .want = FAILED,
     .want_status = 400},
    {.name = "Content-Length hex",
     .in = GET11("Content-Length: 0x10\r\n"),
     .want = FAILED,
     .want_status = 400},
    {.name = "Content-Length empty",
     .in = GET11("Content-Length:\r\n"),
     .want = FAILED,
     .want_status = 400},
    {.name = "body over max_body",
     .in = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\n",
     .want = FAILED,
     .want_status = 413,
     .max_body = 8},
    {.name = "Content-Length overflow",
     .in = GET11("Content-Length: 99999999999999999999999999999\r\n"),
     .want = FAILED,
     .want_status = 413},
    {.name = "header section over max_header",
     .in = GET11("X-Long: 0123456789012345678901234567890123456789\r\n"),
     .want = FAILED,
     .want_status = 431,
     .max_header = 48},
    {.name = "65 headers",
     .in = "GET / HTTP/1.1\r\nHost: h\r\n"
           "a:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\n"
           "a:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\n"
           "a:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\n"
           "a:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\n"
           "a:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\n"
           "a:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\n"
           "a:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\n"
           "a:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\na:1\r\n\r\n",
     .want = FAILED,
     .want_status = 431},
    {.name = "endless empty lines",
     .in = "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n"
           "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n",
     .want = FAILED,
     .want_status = 431,
     .max_header = 32},
    {.name = "double space in request line",
     .in = "GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
     .want = FAILED,
     .want_status = 400},
    {.name = "leading space in request line",
     .in = " GET / HTTP/1.1\r\nHost: h\r\n\r\n",
     .want = FAILED,
     .want_status = 400},
    {.name = "trailing space in request line",
     .in = "GET / HTTP/1.1 \r\nHost: h\r\n\r\n",
     .want = FAILED,
     .want_status = 400},
    {.name = "tab in request line",
     .in = "GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n",
     .want = FAILED,
     .want_status = 400},
    {.name = "HTTP/0.9 request line",
     .in = "GET /\r\n\r\n",
     .want = FAILED,
     .want_status = 400},
    {.name = "bad method char",
     .in = "G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
     .want = FAILED,
     .want_status = 400},
    {.name = "lowercase version",
     .in = "GET / http/1.1\r\nHost: h\r\n\r\n",
     .want = FAILED,
     .want_status = 400},
    {.name = "two-digit minor",
     .in = "GET / HTTP/1.10\r\nHost: h\r\n\r\n",
     .want = FAILED,
     .want_status = 400},
    {.name = "no dot in version",
     .in = "GET / HTTP/11\r\nHost: h\r\n\r\n",
     .want = FAILED,
     .want_status = 400},
    {.name = "relative target",
     .in = "GET foo HTTP/1.1\r\nHost: h\r\n\r\n",
     .want = FAILED,
     .want_status = 400},
    {.name = "authority-form target",
     .in = "CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n",
     .want = FAILED,
     .want_status = 400},
    {.name = "fragment in target",
     .in = "GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n",
     .want = FAILED,
     .want_status = 400},
    {.name = "non-ASCII in target",
     .in = "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n",
     .want = FAILED,
     .want_status = 400},
    {.name = "asterisk with GET",
     .in = "GET * HTTP/1.1\r\nHost: h\r\n\r\n",
     .want = FAILED,
     .want_status = 400},
    {.name = "absolute-form without authority",
     .in = "GET http:///a HTTP/1.1\r\nHost: h\r\n\r\n",
     .want = FAILED,
     .want_status = 400},
    {.name = "HTTP/2.0",
     .in = "GET / HTTP/2.0\r\nHost: h\r\n\r\n",
     .want = FAILED,
     .want_status = 505},
    {.name = "HTTP/1.2",
     .in = "GET / HTTP/1.2\r\nHost: h\r\n\r\n",
     .want = FAILED,
     .want_status = 505},
    {.name = "HTTP/0.9 version",
     .in = "GET / HTTP/0.9\r\n\r\n",
     .want = FAILED,
     .want_status = 505},
    {.name = "obs-fold",
     .in = GET11("X-A: a\r\n b\r\n"),
     .want = FAILED,
     .want_status = 400},
    {.name = "whitespace before first header",
     .in = "GET / HTTP/1.1\r\n Host: h\r\n\r\n",
     .want = FAILED,
     .want_status = 400},
    {.name = "whitespace before colon",
     .in = "GET / HTTP/1.1\r\nHost : h\r\n\r\n",
     .want = FAILED,
     .want_status = 400},
    {.name = "empty header name",
     .in = GET11(": x\r\n"),
     .want = FAILED,
     .want_status = 400},
    {.name = "bad header name char",
     .in = GET11("X(A: x\r\n"),
     .want = FAILED,
     .want_status = 400},
    {.name = "header line without colon",
     .in = GET11("X-A x\r\n"),
     .want = FAILED,
     .want_status = 400},
    {.name = "bare CR in value",
     .in = GET11("X-A: a\rb\r\n"),
     .want = FAILED,
     .want_status = 400},
    {.name = "bare CR before CRLF",
     .in = GET11("X-A: a\r\r\n"),
     .want = FAILED,
     .want_status = 400},
    {.name = "bare LF line endings",
     .in = "GET / HTTP/1.1\nHost: h\n\n",
     .want = FAILED,
     .want_status = 400},
    {.name = "bare LF inside value",
     .in = GET11("X-A: a\nb\r\n"),
     .want = FAILED,
     .want_status = 400},
    {.name = "bare LF first byte",
     .in = "\n",
     .want = FAILED,
     .want_status = 400},
    {.name = "NUL in value",
     .in = "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\0b\r\n\r\n",
     .in_len = sizeof("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\0b\r\n\r\n") - 1,
     .want = FAILED,
     .want_status = 400},
    {.name = "control char in value",
     .in = GET11("X-A: a\x01z\r\n"),
     .want = FAILED,
     .want_status = 400},
    {.name = "DEL in value",
     .in = GET11("X-A: a\x7fz\r\n"),
     .want = FAILED,
     .want_status = 400},
    {.name = "ESC in value",
     .in = GET11("X-A: \x1b[31m\r\n"),
     .want = FAILED,
     .want_status = 400},
    {.name = "HTTP/1.1 without Host",
     .in = "GET / HTTP/1.1\r\n\r\n",
     .want = FAILED,
     .want_status = 400},
    {.name = "two Host headers",
     .in = GET11("Host: other\r\n"),
     .want = FAILED,
     .want_status = 400},
};

/* What one run of the parser gave; strings copied so that the parser can
 * be freed before comparing. */
struct parse_result {
    int rc;
    int status;
    char method[32], target[128], path[128], query[128];
    int minor;
    bool keep_alive;
    char body[128];
    size_t body_len;
    unsigned n_headers;
    char hvalue[128];
    bool has_hvalue;
};

static void copy_str(char *dst, size_t cap, const char *s)
{
    assert_non_null(s);
    assert_true(strlen(s) < cap);
    strcpy(dst, s);
}

static void record(const struct parse_case *c, const struct http_request *req,
                   struct parse_result *r)
{
    copy_str(r->method, sizeof(r->method), req->method);
    copy_str(r->target, sizeof(r->target), req->target);
    copy_str(r->path, sizeof(r->path), req->path);
    copy_str(r->query, sizeof(r->query), req->query);
    r->minor = req->version_minor;
    r->keep_alive = req->keep_alive;
    assert_true(req->body_len < sizeof(r->body));
    memcpy(r->body, req->body, req->body_len);
    r->body[req->body_len] = '\0';
    r->body_len = req->body_len;
    r->n_headers = req->n_headers;
    if (c->want_hname != NULL) {
        const char *v = http_request_header(req, c->want_hname);
        r->has_hvalue = v != NULL;
        if (v != NULL)
            copy_str(r->hvalue, sizeof(r->hvalue), v);
    }
}

/* Feeds c->in in pieces: cut at `split` (if nonzero), or every byte when
 * bytewise. Stops at the first non-zero answer. */
static void run_case(const struct parse_case *c, size_t split, bool bytewise,
                     struct parse_result *r)
{
    size_t len = c->in_len ? c->in_len : strlen(c->in);
    struct http_parser *p = http_parser_new(
        c->max_header ? c->max_header : 1024, c->max_body ? c->max_body : 64);
    assert_non_null(p);
    memset(r, 0, sizeof(*r));
    struct http_request req;
    size_t off = 0;
    int rc = 0;
    do {
        size_t n = len - off;
        if (bytewise && n > 1)
            n = 1;
        else if (split > off && split < len)
            n = split - off;
        rc = http_parser_feed(p, c->in + off, n, &req, &r->status);
        off += n;
    } while (rc == 0 && off < len);
    r->rc = rc;
    if (rc == 1)
        record(c, &req, r);
    if (rc < 0) {
        /* Errors are sticky: the connection must be closed. */
        int st2 = 0;
        assert_int_equal(http_parser_feed(p, NULL, 0, &req, &st2), rc);
        assert_int_equal(st2, r->status);
        assert_true(strlen(http_parser_errmsg(p)) > 0);
    }
    http_parser_free(p);
}

static void check_case(const struct parse_case *c, const struct parse_result *r,
                       const char *how)
{
    print_message("  %-42s %s\n", c->name, how);
    if (c->want == FAILED) {
        assert_true(r->rc < 0);
        assert_int_equal(r->status, c->want_status);
        return;
    }
    assert_int_equal(r->rc, c->want);
    if (c->want != COMPLETE)
        return;
    assert_string_equal(r->method, c->want_method);
    assert_string_equal(r->target, c->want_target);
    assert_string_equal(r->path, c->want_path);
    assert_string_equal(r->query, c->want_query);
    assert_int_equal(r->minor, c->want_minor);
    assert_int_equal(r->keep_alive, c->want_keep_alive);
    assert_string_equal(r->body, c->want_body ? c->want_body : "");
    assert_int_equal(r->body_len, strlen(c->want_body ? c->want_body : ""));
    assert_int_equal(r->n_headers, c->want_n_headers);
    if (c->want_hname != NULL) {
        assert_true(r->has_hvalue);
        assert_string_equal(r->hvalue, c->want_hvalue);
    }
}

static void test_parser_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct parse_result r;
        run_case(&cases[i], 0, false, &r);
        check_case(&cases[i], &r, "whole");
    }
}

static void test_parser_table_every_split(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct parse_case *c = &cases[i];
        size_t len = c->in_len ? c->in_len : strlen(c->in);
        struct parse_result whole, r;
        run_case(c, 0, false, &whole);
        for (size_t k = 1; k < len; k++) {
            run_case(c, k, false, &r);
            assert_int_equal(r.rc, whole.rc);
            assert_int_equal(r.status, whole.status);
            assert_memory_equal(&r, &whole, sizeof(r));
        }
        run_case(c, 0, true, &r);
        assert_memory_equal(&r, &whole, sizeof(r));
        check_case(c, &r, "split everywhere");
    }
}

/* Exactly max_header bytes is fine; one more is 431. */
static void test_parser_header_limit_boundary(void **state)
{
    (void)state;
    const char *req = "GET / HTTP/1.1\r\nHost: h\r\nX: abc\r\n\r\n";
    size_t len = strlen(req);
    struct http_request r;
    int status = 0;

    struct http_parser *p = http_parser_new(len, 0);
    assert_int_equal(http_parser_feed(p, req, len, &r, &status), 1);
    http_parser_free(p);

    p = http_parser_new(len - 1, 0);
    assert_true(http_parser_feed(p, req, len, &r, &status) < 0);
    assert_int_equal(status, 431);
    http_parser_free(p);
}

struct pipe_want {
    const char *method;
    const char *path;
    const char *body;
    bool keep_alive;
};

static const char pipeline[] =
    "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
    "POST /b?q=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
    "\r\n" /* a stray CRLF after a body, as some clients send */
    "HEAD /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    "GET /d HTTP/1.0\r\n\r\n";

static const struct pipe_want pipeline_want[] = {
    {"GET", "/a", "", true},
    {"POST", "/b", "abc", true},
    {"HEAD", "/c", "", false},
    {"GET", "/d", "", false},
};

/* Runs the pipeline cut at `split`; checks the requests in order. */
static void run_pipeline(size_t split)
{
    size_t len = sizeof(pipeline) - 1;
    struct http_parser *p = http_parser_new(0, 0);
    struct http_request req;
    int status = 0;
    size_t got = 0;
    size_t cuts[2] = {split, len};
    size_t off = 0;

    for (int part = 0; part < 2; part++) {
        int rc = http_parser_feed(p, pipeline + off, cuts[part] - off, &req,
                                  &status);
        off = cuts[part];
        while (rc == 1) {
            assert_true(got < 4);
            const struct pipe_want *w = &pipeline_want[got];
            assert_string_equal(req.method, w->method);
            assert_string_equal(req.path, w->path);
            assert_int_equal(req.body_len, strlen(w->body));
            assert_memory_equal(req.body, w->body, req.body_len);
            assert_int_equal(req.keep_alive, w->keep_alive);
            got++;
            http_parser_consume(p);
            rc = http_parser_feed(p, NULL, 0, &req, &status);
        }
        assert_int_equal(rc, 0);
    }
    assert_int_equal(got, 4);
    http_parser_free(p);
}

static void test_parser_pipelined(void **state)
{
    (void)state;
    for (size_t k = 0; k <= sizeof(pipeline) - 1; k++)
        run_pipeline(k);
}

/* A good request, then a bad one: the first is served, then the error. */
static void test_parser_pipelined_then_error(void **state)
{
    (void)state;
    const char in[] = "GET /ok HTTP/1.1\r\nHost: h\r\n\r\n"
                      "GET / HTTP/2.0\r\nHost: h\r\n\r\n";
    struct http_parser *p = http_parser_new(0, 0);
    struct http_request req;
    int status = 0;
    assert_int_equal(http_parser_feed(p, in, sizeof(in) - 1, &req, &status), 1);
    assert_string_equal(req.path, "/ok");
    http_parser_consume(p);
    assert_int_equal(http_parser_feed(p, NULL, 0, &req, &status), SR_EVERSION);
    assert_int_equal(status, 505);
    http_parser_free(p);
}

/* Bytes fed while a request is pending must not move it (the server's
 * handler may still be reading the body). */
static void test_parser_feed_while_pending(void **state)
{
    (void)state;
    const char first[] =
        "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
    struct http_parser *p = http_parser_new(0, 0);
    struct http_request req, again;
    int status = 0;
    assert_int_equal(
        http_parser_feed(p, first, sizeof(first) - 1, &req, &status), 1);
    const char *body = req.body;
    const char *path = req.path;
    char big[8192];
    memset(big, 'x', sizeof(big));
    memcpy(big, "GET /y HTTP/1.1\r\nHost: h\r\nX: ", 29);
    memcpy(big + sizeof(big) - 4, "\r\n\r\n", 4);
    /* Fed in pieces so the side buffer has to grow several times. */
    for (size_t off = 0; off < sizeof(big); off += 1000) {
        size_t n = sizeof(big) - off < 1000 ? sizeof(big) - off : 1000;
        assert_int_equal(http_parser_feed(p, big + off, n, &again, &status), 1);
        assert_ptr_equal(again.body, body);
    }
    assert_memory_equal(body, "hello", 5);
    assert_string_equal(path, "/x");
    http_parser_consume(p);
    assert_int_equal(http_parser_feed(p, NULL, 0, &req, &status), 1);
    assert_string_equal(req.path, "/y");
    assert_int_equal(strlen(http_request_header(&req, "x")),
                     sizeof(big) - 29 - 4);
    http_parser_free(p);
}

static void test_parser_expect_continue(void **state)
{
    (void)state;
    struct http_request req;
    int status = 0;
    const char h11[] = "PUT /p HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
                       "Content-Length: 2\r\n\r\n";
    struct http_parser *p = http_parser_new(0, 0);
    assert_false(http_parser_want_continue(p));
    assert_int_equal(http_parser_feed(p, h11, sizeof(h11) - 1, &req, &status),
                     0);
    assert_true(http_parser_want_continue(p));
    assert_false(http_parser_want_continue(p)); /* once */
    assert_int_equal(http_parser_feed(p, "ok", 2, &req, &status), 1);
    http_parser_free(p);

    /* HTTP/1.0 clients do not understand 100 (RFC 9110 10.1.1). */
    const char h10[] = "PUT /p HTTP/1.0\r\nExpect: 100-continue\r\n"
                       "Content-Length: 2\r\n\r\n";
    p = http_parser_new(0, 0);
    assert_int_equal(http_parser_feed(p, h10, sizeof(h10) - 1, &req, &status),
                     0);
    assert_false(http_parser_want_continue(p));
    http_parser_free(p);
}

static void test_status_reason(void **state)
{
    (void)state;
    assert_string_equal(http_status_reason(200), "OK");
    assert_string_equal(http_status_reason(413), "Content Too Large");
    assert_string_equal(http_status_reason(431),
                        "Request Header Fields Too Large");
    assert_string_equal(http_status_reason(799), "Unknown");
}

/* ------------------------------------------------------------------ */
/* Server                                                             */
/* ------------------------------------------------------------------ */

#define MAX_STEPS 8

struct async_reply {
    uv_timer_t timer;
    struct http_conn *c;
    char body[256];
    size_t len;
};

struct fx {
    uv_loop_t loop;
    struct http_server *s;
    uv_async_t done;
    int port;
    void (*client)(struct fx *);
    pthread_t thread;

    /* loop thread */
    struct http_conn *held; /* a request left unanswered on purpose */
    int held_flag;          /* __atomic: set once held is stored */
    bool closed;
    unsigned handled;
    char peer[64];
    int handled_atomic; /* __atomic copy of handled for the client */

    /* client thread (read after the join) */
    char out[MAX_STEPS][4096];
    size_t out_len[MAX_STEPS];
    double elapsed[MAX_STEPS];
    int err[MAX_STEPS];
    int seen_handled; /* handled, as the client saw it mid-test */
    size_t big_total; /* bytes of /big answers received */
};

#define BIG_SIZE (64 * 1024)
#define BIG_COUNT 200

/* The handler answers "METHOD PATH BODY"; /async answers from a timer,
 * /hold never answers until the server has closed. */
static void echo(struct http_conn *c, const struct http_request *req, char *out,
                 size_t cap, size_t *len)
{
    int n = snprintf(out, cap, "%s %s ", req->method, req->path);
    size_t bl = req->body_len;
    if ((size_t)n + bl > cap)
        bl = cap - (size_t)n;
    memcpy(out + n, req->body, bl);
    *len = (size_t)n + bl;
    (void)c;
}

static void on_async_reply_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_async_reply(uv_timer_t *t)
{
    struct async_reply *a = t->data;
    http_reply(a->c, 200, "text/plain", a->body, a->len);
    uv_close((uv_handle_t *)&a->timer, on_async_reply_closed);
}

static void handler(void *ud, struct http_conn *c,
                    const struct http_request *req)
{
    struct fx *fx = ud;
    fx->handled++;
    __atomic_store_n(&fx->handled_atomic, (int)fx->handled, __ATOMIC_SEQ_CST);
    snprintf(fx->peer, sizeof(fx->peer), "%s", http_conn_peer(c));
    if (strcmp(req->path, "/async") == 0) {
        struct async_reply *a = calloc(1, sizeof(*a));
        a->c = c;
        echo(c, req, a->body, sizeof(a->body), &a->len);
        uv_timer_init(&fx->loop, &a->timer);
        a->timer.data = a;
        uv_timer_start(&a->timer, on_async_reply, 20, 0);
        return;
    }
    if (strcmp(req->path, "/hold") == 0) {
        fx->held = c;
        __atomic_store_n(&fx->held_flag, 1, __ATOMIC_SEQ_CST);
        return;
    }
    if (strcmp(req->path, "/error") == 0) {
        http_reply_error(c, 409, "already \"there\"");
        return;
    }
    if (strcmp(req->path, "/big") == 0) {
        char *big = malloc(BIG_SIZE);
        memset(big, 'b', BIG_SIZE);
        http_reply(c, 200, "text/plain", big, BIG_SIZE);
        free(big);
        return;
    }
    if (strcmp(req->path, "/empty") == 0) {
        http_reply(c, 204, NULL, NULL, 0);
        return;
    }
    char body[256];
    size_t len;
    echo(c, req, body, sizeof(body), &len);
    http_reply(c, 200, "text/plain", body, len);
}

static void on_server_closed(void *arg)
{
    struct fx *fx = arg;
    fx->closed = true;
    /* The conn outlived its socket; answering it now only frees it. */
    if (fx->held != NULL) {
        http_reply(fx->held, 200, "text/plain", "late", 4);
        fx->held = NULL;
    }
}

static void on_done(uv_async_t *a)
{
    struct fx *fx = a->data;
    http_server_close(fx->s, on_server_closed, fx);
    uv_close((uv_handle_t *)a, NULL);
}

static void *client_main(void *arg)
{
    struct fx *fx = arg;
    fx->client(fx);
    uv_async_send(&fx->done);
    return NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int client_connect(struct fx *fx)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    /* A hung server must fail the test, not hang it. */
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)fx->port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_str(int fd, const char *s)
{
    size_t len = strlen(s);
    while (len > 0) {
        ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
        if (n <= 0)
            return -1;
        s += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads exactly n bytes, or until EOF / error when n is 0. Records into
 * step i. */
static void recv_into(struct fx *fx, int i, int fd, size_t n)
{
    double t0 = now_s();
    size_t cap = sizeof(fx->out[i]) - 1;
    if (n != 0 && n < cap)
        cap = n;
    while (fx->out_len[i] < cap) {
        ssize_t r =
            recv(fd, fx->out[i] + fx->out_len[i], cap - fx->out_len[i], 0);
        if (r < 0)
            fx->err[i] = -1;
        if (r <= 0)
            break;
        fx->out_len[i] += (size_t)r;
    }
    fx->out[i][fx->out_len[i]] = '\0';
    fx->elapsed[i] = now_s() - t0;
}

static void run_fx(struct fx *fx, void (*client)(struct fx *))
{
    char err[SR_ERRMSG_SIZE] = "";
    memset(fx, 0, sizeof(*fx));
    fx->client = client;
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    int rc = http_server_start(&fx->loop, "127.0.0.1:0", handler, fx, &fx->s,
                               err, sizeof(err));
    assert_int_equal(rc, 0);
    http_server_set_limits(fx->s, 0, 1024, 300, 0);
    fx->port = http_server_port(fx->s);
    assert_true(fx->port > 0);
    assert_int_equal(uv_async_init(&fx->loop, &fx->done, on_done), 0);
    fx->done.data = fx;
    assert_int_equal(pthread_create(&fx->thread, NULL, client_main, fx), 0);
    assert_int_equal(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
    pthread_join(fx->thread, NULL);
    assert_true(fx->closed);
    assert_null(fx->held);
    /* Every handle (listener, conns, timers) is closed. */
    assert_int_equal(uv_loop_close(&fx->loop), 0);
}

static const char *resp_ok(const char *body, bool close)
{
    static char buf[4][512];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, 512,
             "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n"
             "Content-Type: text/plain\r\nConnection: %s\r\n\r\n%s",
             strlen(body), close ? "close" : "keep-alive", body);
    return b;
}

/* Three pipelined requests in one write: sync, async, sync with close. */
static void client_pipelined(struct fx *fx)
{
    int fd = client_connect(fx);
    if (fd < 0)
        return;
    send_str(fd, "GET /sync HTTP/1.1\r\nHost: t\r\n\r\n"
                 "GET /async?x=1 HTTP/1.1\r\nHost: t\r\n\r\n"
                 "POST /sync HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                 "Connection: close\r\n\r\nhello");
    recv_into(fx, 0, fd, 0);
    close(fd);
}

static void test_server_pipelined_async(void **state)
{
    (void)state;
    struct fx *fx = malloc(sizeof(*fx));
    run_fx(fx, client_pipelined);
    char want[2048];
    snprintf(want, sizeof(want), "%s%s%s", resp_ok("GET /sync ", false),
             resp_ok("GET /async ", false), resp_ok("POST /sync hello", true));
    assert_string_equal(fx->out[0], want);
    assert_int_equal(fx->handled, 3);
    assert_true(strncmp(fx->peer, "127.0.0.1:", 10) == 0);
    free(fx);
}

/* Keep-alive across separate writes, HEAD, 204, error JSON, 100-continue. */
static void client_keepalive(struct fx *fx)
{
    int fd = client_connect(fx);
    if (fd < 0)
        return;
    const char *r0 = resp_ok("GET /one ", false);
    send_str(fd, "GET /one HTTP/1.1\r\nHost: t\r\n\r\n");
    recv_into(fx, 0, fd, strlen(r0));
    send_str(fd, "HEAD /two HTTP/1.1\r\nHost: t\r\n\r\n"
                 "GET /empty HTTP/1.1\r\nHost: t\r\n\r\n"
                 "GET /error HTTP/1.1\r\nHost: t\r\n\r\n");
    const char *r1 = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n"
                     "Content-Type: text/plain\r\nConnection: keep-alive"
                     "\r\n\r\n"
                     "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n"
                     "HTTP/1.1 409 Conflict\r\nContent-Length: 29\r\n"
                     "Content-Type: application/json\r\n"
                     "Connection: keep-alive\r\n\r\n"
                     "{\"error\":\"already \\\"there\\\"\"}";
    recv_into(fx, 1, fd, strlen(r1));
    send_str(fd, "PUT /up HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                 "Content-Length: 4\r\nConnection: close\r\n\r\n");
    recv_into(fx, 2, fd, strlen("HTTP/1.1 100 Continue\r\n\r\n"));
    send_str(fd, "data");
    recv_into(fx, 3, fd, 0);
    close(fd);
}

static void test_server_keepalive(void **state)
{
    (void)state;
    struct fx *fx = malloc(sizeof(*fx));
    run_fx(fx, client_keepalive);
    assert_string_equal(fx->out[0], resp_ok("GET /one ", false));
    assert_string_equal(
        fx->out[1],
        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n"
        "Content-Type: text/plain\r\nConnection: keep-alive\r\n\r\n"
        "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n"
        "HTTP/1.1 409 Conflict\r\nContent-Length: 29\r\n"
        "Content-Type: application/json\r\nConnection: keep-alive\r\n\r\n"
        "{\"error\":\"already \\\"there\\\"\"}");
    assert_string_equal(fx->out[2], "HTTP/1.1 100 Continue\r\n\r\n");
    assert_string_equal(fx->out[3], resp_ok("PUT /up data", true));
    free(fx);
}

/* Parse errors are answered, then the connection is closed; a body over
 * the limit gets its 413 even while the client is still sending. */
static void client_errors(struct fx *fx)
{
    int fd = client_connect(fx);
    if (fd >= 0) {
        send_str(fd, "GET / HTTP/2.0\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\n");
        recv_into(fx, 0, fd, 0);
        close(fd);
    }
    fd = client_connect(fx);
    if (fd >= 0) {
        char big[4096];
        memset(big, 'z', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        send_str(fd, "POST /sync HTTP/1.1\r\nHost: t\r\n"
                     "Content-Length: 100000\r\n\r\n");
        send_str(fd, big);
        recv_into(fx, 1, fd, 0);
        close(fd);
    }
    fd = client_connect(fx);
    if (fd >= 0) {
        send_str(fd, "GET / HTTP/1.1\r\nHost: t\nX: y\r\n\r\n");
        recv_into(fx, 2, fd, 0);
        close(fd);
    }
}

static void test_server_errors(void **state)
{
    (void)state;
    struct fx *fx = malloc(sizeof(*fx));
    run_fx(fx, client_errors);
    const char *want505 = "HTTP/1.1 505 HTTP Version Not Supported\r\n"
                          "Content-Length: 38\r\n"
                          "Content-Type: application/json\r\n"
                          "Connection: close\r\n\r\n"
                          "{\"error\":\"HTTP version not supported\"}";
    assert_string_equal(fx->out[0], want505);
    assert_true(strncmp(fx->out[1], "HTTP/1.1 413 Content Too Large\r\n", 32) ==
                0);
    assert_non_null(strstr(fx->out[1], "Connection: close\r\n"));
    assert_true(strncmp(fx->out[2], "HTTP/1.1 400 Bad Request\r\n", 26) == 0);
    assert_non_null(strstr(fx->out[2], "bare LF"));
    assert_int_equal(fx->handled, 0);
    free(fx);
}

/* An idle connection is closed by the server (limit set to 300 ms). */
static void client_idle(struct fx *fx)
{
    int fd = client_connect(fx);
    if (fd < 0)
        return;
    recv_into(fx, 0, fd, 0);
    close(fd);
    /* Half a request, then silence: closed as well. */
    fd = client_connect(fx);
    if (fd < 0)
        return;
    send_str(fd, "GET / HTTP/1.1\r\n");
    recv_into(fx, 1, fd, 0);
    close(fd);
}

static void test_server_idle_timeout(void **state)
{
    (void)state;
    struct fx *fx = malloc(sizeof(*fx));
    run_fx(fx, client_idle);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(fx->out_len[i], 0);
        assert_int_equal(fx->err[i], 0); /* EOF, not our 5 s timeout */
        assert_true(fx->elapsed[i] >= 0.25);
        assert_true(fx->elapsed[i] < 3.0);
    }
    free(fx);
}

/* The client sends a request and goes away; the handler has not answered
 * when the server closes. The conn must stay valid until the (dropped)
 * reply, which on_server_closed() makes; ASan checks it is then freed. */
static void client_hold(struct fx *fx)
{
    int fd = client_connect(fx);
    if (fd < 0)
        return;
    send_str(fd, "GET /hold HTTP/1.1\r\nHost: t\r\n\r\n");
    for (int i = 0; i < 5000; i++) {
        if (__atomic_load_n(&fx->held_flag, __ATOMIC_SEQ_CST))
            break;
        usleep(1000);
    }
    close(fd);
    usleep(20000);
}

static void test_server_close_with_pending(void **state)
{
    (void)state;
    struct fx *fx = malloc(sizeof(*fx));
    run_fx(fx, client_hold);
    assert_int_equal(fx->handled, 1);
    free(fx);
}

static void noop_handler(void *ud, struct http_conn *c,
                         const struct http_request *req)
{
    (void)ud;
    (void)req;
    http_reply(c, 200, NULL, NULL, 0);
}

/* A client that pipelines requests for big answers and does not read:
 * the server must stop dispatching once its write queue is high, then
 * finish everything once the client reads. */
static void client_no_read(struct fx *fx)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 16 * 1024;
    /* Small kernel buffers, so that "not reading" shows quickly. */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)fx->port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return;
    }
    static char reqs[BIG_COUNT * 64];
    size_t off = 0;
    for (int i = 0; i < BIG_COUNT; i++)
        off +=
            (size_t)snprintf(reqs + off, sizeof(reqs) - off,
                             "GET /big HTTP/1.1\r\nHost: t\r\n%s\r\n",
                             i == BIG_COUNT - 1 ? "Connection: close\r\n" : "");
    send_str(fd, reqs);
    /* Shorter than the 300 ms idle limit of the test server. */
    usleep(150 * 1000);
    fx->seen_handled = __atomic_load_n(&fx->handled_atomic, __ATOMIC_SEQ_CST);
    char buf[65536];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0)
            break;
        fx->big_total += (size_t)n;
    }
    close(fd);
}

static void test_server_write_backpressure(void **state)
{
    (void)state;
    struct fx *fx = malloc(sizeof(*fx));
    run_fx(fx, client_no_read);
    char head[256];
    size_t per = (size_t)snprintf(head, sizeof(head),
                                  "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n"
                                  "Content-Type: text/plain\r\n"
                                  "Connection: keep-alive\r\n\r\n",
                                  BIG_SIZE) +
                 BIG_SIZE;
    /* The last answer says "close" (one byte shorter than keep-alive). */
    assert_int_equal(fx->big_total, per * BIG_COUNT - 5);
    assert_int_equal(fx->handled, BIG_COUNT);
    print_message("  handled %d of %d while the client was not reading\n",
                  fx->seen_handled, BIG_COUNT);
    assert_true(fx->seen_handled < BIG_COUNT / 2);
    free(fx);
}

static void test_server_bad_address(void **state)
{
    (void)state;
    uv_loop_t loop;
    char err[SR_ERRMSG_SIZE];
    struct http_server *s = NULL;
    const char *bad[] = {
        "",       "127.0.0.1", "127.0.0.1:", "127.0.0.1:99999", "localhost:80",
        "::1:80", "[::1]80",   "1.2.3:80",   "127.0.0.1:8x"};
    assert_int_equal(uv_loop_init(&loop), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(http_server_start(&loop, bad[i], noop_handler, NULL,
                                           &s, err, sizeof(err)),
                         SR_EINVAL);
        assert_non_null(strstr(err, "bad listen address"));
    }
    /* The same port twice: the second bind fails and frees itself. */
    struct http_server *a = NULL;
    assert_int_equal(http_server_start(&loop, "127.0.0.1:0", noop_handler, NULL,
                                       &a, err, sizeof(err)),
                     0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", http_server_port(a));
    assert_int_equal(http_server_start(&loop, addr, noop_handler, NULL, &s, err,
                                       sizeof(err)),
                     SR_EIO);
    assert_non_null(strstr(err, "cannot listen"));
    /* IPv6 form parses (the host may lack v6: either outcome is fine,
     * but a v6 failure must be a listen error, not a parse error). */
    struct http_server *v6 = NULL;
    int rc = http_server_start(&loop, "[::1]:0", noop_handler, NULL, &v6, err,
                               sizeof(err));
    assert_true(rc == 0 || rc == SR_EIO);
    if (rc == 0) {
        assert_true(http_server_port(v6) > 0);
        http_server_close(v6, NULL, NULL);
    }
    http_server_close(a, NULL, NULL);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parser_table),
        cmocka_unit_test(test_parser_table_every_split),
        cmocka_unit_test(test_parser_header_limit_boundary),
        cmocka_unit_test(test_parser_pipelined),
        cmocka_unit_test(test_parser_pipelined_then_error),
        cmocka_unit_test(test_parser_feed_while_pending),
        cmocka_unit_test(test_parser_expect_continue),
        cmocka_unit_test(test_status_reason),
        cmocka_unit_test(test_server_pipelined_async),
        cmocka_unit_test(test_server_keepalive),
        cmocka_unit_test(test_server_errors),
        cmocka_unit_test(test_server_idle_timeout),
        cmocka_unit_test(test_server_close_with_pending),
        cmocka_unit_test(test_server_write_backpressure),
        cmocka_unit_test(test_server_bad_address),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
