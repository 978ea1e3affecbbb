/*
 * fuzz_http.c - libFuzzer target for the HTTP/1.1 request parser (http.c).
 *
 * Input: byte 0 picks how the rest is cut: (b & 0x3f) + 1 bytes per feed,
 * and bit 0x40 makes the target feed the next chunk while a request is
 * still pending (the server never does, but the parser allows it). The
 * rest is fed chunk by chunk; each complete request is checked, consumed,
 * and the parser asked for the next one, as the server does. Small limits
 * make 413 and 431 reachable.
 *
 * Checked: every string is NUL-terminated and inside what was fed, the
 * body is within max_body, errors carry one of the documented statuses and
 * stay sticky, and a pending request does not move when more bytes come.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateways/http.h"

#define FUZZ_MAX_HEADER 512
#define FUZZ_MAX_BODY 1024

static void check_request(const struct http_request *r)
{
    assert(r->method != NULL && r->method[0] != '\0');
    assert(r->target != NULL && r->target[0] != '\0');
    assert(r->path != NULL && r->query != NULL);
    assert(strlen(r->target) < FUZZ_MAX_HEADER);
    assert(strlen(r->path) <= strlen(r->target));
    assert(r->version_minor == 0 || r->version_minor == 1);
    assert(r->n_headers <= HTTP_MAX_HEADERS);
    assert(r->body_len <= FUZZ_MAX_BODY);
    assert(r->body_len == 0 || r->body != NULL);
    for (unsigned i = 0; i < r->n_headers; i++) {
        const char *v = r->headers[i].value;
        assert(r->headers[i].name[0] != '\0');
        assert(http_request_header(r, r->headers[i].name) != NULL);
        /* Trimmed, no CR/LF/NUL left inside. */
        size_t vl = strlen(v);
        assert(strpbrk(v, "\r\n") == NULL);
        assert(vl == 0 || (v[0] != ' ' && v[vl - 1] != ' '));
    }
    /* Touch every body byte so ASan sees a bad window. */
    volatile unsigned sum = 0;
    for (size_t i = 0; i < r->body_len; i++)
        sum += (unsigned char)r->body[i];
    (void)sum;
}

static void check_error(int rc, int status)
{
    assert(rc < 0);
    assert(status == 400 || status == 413 || status == 431 || status == 500 ||
           status == 501 || status == 505);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)(data[0] & 0x3f) + 1;
    int feed_pending = (data[0] & 0x40) != 0;
    const char *in = (const char *)data + 1;
    size_t n = size - 1, off = 0;

    struct http_parser *p = http_parser_new(FUZZ_MAX_HEADER, FUZZ_MAX_BODY);
    if (p == NULL)
        return 0;
    struct http_request req;
    int status = 0;

    while (off < n) {
        size_t k = n - off < step ? n - off : step;
        int rc = http_parser_feed(p, in + off, k, &req, &status);
        off += k;
        while (rc == 1) {
            check_request(&req);
            if (feed_pending && off < n) {
                const char *body = req.body;
                size_t blen = req.body_len;
                struct http_request again;
                k = n - off < step ? n - off : step;
                rc = http_parser_feed(p, in + off, k, &again, &status);
                off += k;
                assert(rc == 1);
                assert(again.body == body && again.body_len == blen);
            }
            http_parser_consume(p);
            rc = http_parser_feed(p, NULL, 0, &req, &status);
        }
        if (rc < 0) {
            check_error(rc, status);
            int st2 = 0;
            assert(http_parser_feed(p, NULL, 0, &req, &st2) == rc);
            assert(st2 == status);
            break;
        }
        (void)http_parser_want_continue(p);
    }
    http_parser_free(p);
    return 0;
}
