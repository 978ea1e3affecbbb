/*
 * http.c - a strict, incremental HTTP/1.1 request parser (see http.h).
 *
 * What it does: collects bytes until one request-line + header section is
 * in (RFC 9112 2.1), validates it completely, then collects exactly
 * Content-Length body bytes (RFC 9112 6.3). Bytes after that request stay
 * buffered for the next one (pipelining).
 *
 * What it refuses, and why: this parser sits in front of the admin API, so
 * anything another HTTP implementation might read differently is an error
 * rather than a guess (request smuggling, RFC 9112 11.2):
 *   400  bad request line or target, bare CR or bare LF (RFC 9112 2.2),
 *        NUL or other control bytes, obs-fold (RFC 9112 5.2), whitespace
 *        before the colon (RFC 9112 5.1), a Content-Length that is not
 *        1*DIGIT or appears twice, a missing or repeated Host in HTTP/1.1
 *        (RFC 9112 3.2);
 *   413  a Content-Length above max_body (checked before any body byte is
 *        stored);
 *   431  a header section above max_header bytes or over HTTP_MAX_HEADERS
 *        fields;
 *   501  any Transfer-Encoding (we never accept chunked request bodies);
 *   505  an HTTP version other than 1.0 and 1.1.
 * An error is sticky: every later feed returns it again, because the
 * connection must be closed after the answer.
 *
 * Memory: the header strings live in an arena copied from the input, so
 * they stay put while the body is still arriving; the body is a window on
 * the input buffer. Bytes fed while a request is pending go to a side
 * buffer so that the request's body pointer stays valid until
 * http_parser_consume(). Input is bounded by max_header while a header
 * section is pending and by Content-Length while a body is.
 */
#include "gateways/http.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "node/errors.h"

#define HTTP_DEFAULT_MAX_HEADER (16 * 1024)
#define HTTP_DEFAULT_MAX_BODY (1024 * 1024)

enum http_state {
    HTTP_ST_HEAD,  /* waiting for the end of a header section */
    HTTP_ST_BODY,  /* header parsed, waiting for body_len bytes */
    HTTP_ST_DONE,  /* a request is out with the caller until consume */
    HTTP_ST_ERROR, /* sticky: the connection must be closed */
};

struct http_parser {
    size_t max_header;
    size_t max_body;

    /* Unparsed input: in[in_off .. in_off + in_len). In BODY and DONE
     * states it starts with the current request's body. */
    char *in;
    size_t in_off;
    size_t in_len;
    size_t in_cap;

    /* Bytes fed while a request is pending (DONE); moved to `in` on
     * consume, so the pending body is never reallocated under the caller. */
    char *extra;
    size_t extra_len;
    size_t extra_cap;

    enum http_state state;
    size_t start; /* HEAD: offset of the request line (after empty lines) */
    size_t scan;  /* HEAD: next byte to examine */
    size_t body_len;

    char *arena; /* the parsed header strings of the current request */
    size_t arena_cap;
    struct http_request cur;
    bool expect_continue;

    int err_code;
    int err_status;
    char errmsg[96];
};

struct http_parser *http_parser_new(size_t max_header, size_t max_body)
{
    struct http_parser *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    /* Zero means "the default", so callers need not know the numbers. */
    p->max_header = max_header ? max_header : HTTP_DEFAULT_MAX_HEADER;
    p->max_body = max_body ? max_body : HTTP_DEFAULT_MAX_BODY;
    p->errmsg[0] = '\0';
    return p;
}

void http_parser_free(struct http_parser *p)
{
    if (p == NULL)
        return;
    free(p->in);
    free(p->extra);
    free(p->arena);
    free(p);
}

const char *http_parser_errmsg(const struct http_parser *p)
{
    return p->errmsg;
}

static int http_fail(struct http_parser *p, int status, const char *msg)
{
    p->state = HTTP_ST_ERROR;
    p->err_status = status;
    switch (status) {
    case 413:
    case 431:
        p->err_code = SR_EFULL;
        break;
    case 505:
        p->err_code = SR_EVERSION;
        break;
    case 500:
        p->err_code = SR_ENOMEM;
        break;
    default:
        p->err_code = SR_EPARSE;
        break;
    }
    snprintf(p->errmsg, sizeof(p->errmsg), "%s", msg);
    return p->err_code;
}

/* Grows *buf so that `need` bytes fit; doubling keeps byte-at-a-time
 * feeding linear. */
static int http_reserve(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 1024;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2)
            return SR_ENOMEM;
        ncap *= 2;
    }
    char *nb = realloc(*buf, ncap);
    if (nb == NULL)
        return SR_ENOMEM;
    *buf = nb;
    *cap = ncap;
    return 0;
}

static int http_in_append(struct http_parser *p, const char *data, size_t n)
{
    if (n == 0)
        return 0;
    if (n > SIZE_MAX - p->in_len - p->in_off)
        return SR_ENOMEM;
    if (p->in_off + p->in_len + n > p->in_cap && p->in_off > 0) {
        /* Reclaim the consumed prefix before growing; no pointer into `in`
         * is out with the caller in HEAD or BODY state. */
        memmove(p->in, p->in + p->in_off, p->in_len);
        p->in_off = 0;
    }
    if (http_reserve(&p->in, &p->in_cap, p->in_off + p->in_len + n) != 0)
        return SR_ENOMEM;
    memcpy(p->in + p->in_off + p->in_len, data, n);
    p->in_len += n;
    return 0;
}

static void http_in_drop(struct http_parser *p, size_t n)
{
    p->in_off += n;
    p->in_len -= n;
    if (p->in_len == 0)
        p->in_off = 0;
}

/* RFC 9110 5.6.2 tchar. */
static bool http_is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* RFC 9110 5.5 field-vchar / SP / HTAB; obs-text is allowed. */
static bool http_is_value_char(unsigned char c)
{
    return c == '\t' || c == ' ' || (c >= 0x21 && c != 0x7f);
}

/*
 * Looks for the blank line ending the header section. Checks line endings
 * and NULs on the way, so a bare LF or a bare CR is refused as soon as it
 * is seen rather than after max_header bytes. Returns 1 with *end (offset
 * past the final CRLF), 0 for "need more", or an error.
 */
static int http_scan_head(struct http_parser *p, size_t *end)
{
    if (p->in == NULL)
        return 0; /* nothing buffered yet */
    const char *b = p->in + p->in_off;
    size_t n = p->in_len;

    /* RFC 9112 2.2: a server SHOULD ignore empty lines before the request
     * line (some clients send a CRLF after a POST body). They count
     * against max_header so that an endless stream of them is bounded. */
    while (p->scan == p->start) {
        if (p->start >= p->max_header)
            return http_fail(p, 431, "header section too large");
        if (p->start >= n)
            return 0;
        if (b[p->start] != '\r')
            break;
        if (p->start + 1 >= n)
            return 0;
        if (b[p->start + 1] != '\n')
            return http_fail(p, 400, "bare CR in header section");
        p->start += 2;
        p->scan = p->start;
    }

    size_t lim = n < p->max_header ? n : p->max_header;
    for (size_t i = p->scan; i < lim; i++) {
        unsigned char c = (unsigned char)b[i];
        if (c == '\r') {
            if (i + 1 >= n) {
                p->scan = i;
                return 0;
            }
            if (b[i + 1] != '\n')
                return http_fail(p, 400, "bare CR in header section");
        } else if (c == '\n') {
            if (i == 0 || b[i - 1] != '\r')
                return http_fail(p, 400, "bare LF in header section");
            if (i >= p->start + 3 && b[i - 2] == '\n' && b[i - 3] == '\r') {
                *end = i + 1;
                return 1;
            }
        } else if (c == '\0') {
            return http_fail(p, 400, "NUL in header section");
        }
    }
    p->scan = lim;
    if (n > p->max_header)
        return http_fail(p, 431, "header section too large");
    return 0;
}

/* Does the comma-separated list `v` contain `token` (case-insensitive)? */
static bool http_list_has(const char *v, const char *token)
{
    size_t tl = strlen(token);
    while (*v != '\0') {
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        const char *s = v;
        while (*v != '\0' && *v != ',')
            v++;
        const char *e = v;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - s) == tl && strncasecmp(s, token, tl) == 0)
            return true;
    }
    return false;
}

/*
 * Splits the request-target (RFC 9112 3.2) into path and query. The path
 * is copied to *pathbuf (room for strlen(target) + 2 bytes) because the
 * target itself must stay whole. Origin-form is the norm; absolute-form is
 * accepted as RFC 9112 3.2.2 requires; asterisk-form only with OPTIONS.
 */
static int http_split_target(struct http_parser *p, const char *method,
                             const char *target, char *pathbuf)
{
    struct http_request *r = &p->cur;
    const char *path;

    if (strchr(target, '#') != NULL)
        return http_fail(p, 400, "fragment in request target");
    if (target[0] == '/') {
        path = target;
    } else if (strcmp(target, "*") == 0) {
        if (strcmp(method, "OPTIONS") != 0)
            return http_fail(p, 400, "asterisk-form target without OPTIONS");
        r->path = "*";
        r->query = "";
        return 0;
    } else {
        size_t skip;
        if (strncasecmp(target, "http://", 7) == 0)
            skip = 7;
        else if (strncasecmp(target, "https://", 8) == 0)
            skip = 8;
        else
            return http_fail(p, 400, "bad request target");
        const char *auth = target + skip;
        size_t alen = strcspn(auth, "/?");
        if (alen == 0)
            return http_fail(p, 400, "empty authority in request target");
        path = auth + alen;
    }

    size_t plen = strcspn(path, "?");
    if (plen == 0) {
        /* "http://host?x": the path of an absolute URI defaults to "/". */
        pathbuf[0] = '/';
        pathbuf[1] = '\0';
    } else {
        memcpy(pathbuf, path, plen);
        pathbuf[plen] = '\0';
    }
    r->path = pathbuf;
    r->query = path[plen] == '?' ? path + plen + 1 : "";
    return 0;
}

/*
 * Parses head bytes [start, end) of the input into p->cur, strings in the
 * arena. On success the head is dropped from the input and the state is
 * BODY (possibly with body_len 0).
 */
static int http_parse_head(struct http_parser *p, size_t end)
{
    struct http_request *r = &p->cur;
    size_t hl = end - p->start;

    /* The head, a NUL, then room for the path copy (at most hl bytes). */
    if (http_reserve(&p->arena, &p->arena_cap, 2 * hl + 4) != 0)
        return http_fail(p, 500, "out of memory");
    char *a = p->arena;
    memcpy(a, p->in + p->in_off + p->start, hl);
    a[hl] = '\0';
    char *pathbuf = a + hl + 1;

    memset(r, 0, sizeof(*r));

    /* request-line = method SP request-target SP HTTP-version (RFC 9112 3);
     * exactly one SP each, no leading or trailing whitespace. */
    char *eol = memchr(a, '\r', hl);
    size_t i = 0;
    while (http_is_tchar((unsigned char)a[i]))
        i++;
    if (i == 0 || a[i] != ' ')
        return http_fail(p, 400, "bad request line");
    a[i] = '\0';
    r->method = a;

    size_t t = i + 1, j = t;
    while (a + j < eol && (unsigned char)a[j] >= 0x21 &&
           (unsigned char)a[j] <= 0x7e)
        j++;
    if (j == t || a[j] != ' ')
        return http_fail(p, 400, "bad request line");
    a[j] = '\0';
    r->target = a + t;

    const char *v = a + j + 1;
    if (eol - v != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' ||
        v[5] > '9' || v[6] != '.' || v[7] < '0' || v[7] > '9')
        return http_fail(p, 400, "bad HTTP version");
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
        return http_fail(p, 505, "HTTP version not supported");
    r->version_minor = v[7] - '0';

    /* field-line = field-name ":" OWS field-value OWS (RFC 9112 5). */
    char *line = eol + 2;
    while (*line != '\r') {
        char *le = strchr(line, '\r');
        if (*line == ' ' || *line == '\t')
            return http_fail(p, 400, "obs-fold or leading whitespace");
        char *c = line;
        while (http_is_tchar((unsigned char)*c))
            c++;
        if (c == line || *c != ':')
            return http_fail(p, 400, "bad header field name");
        *c = '\0';
        char *vs = c + 1;
        while (vs < le && (*vs == ' ' || *vs == '\t'))
            vs++;
        char *ve = le;
        while (ve > vs && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        for (char *q = vs; q < ve; q++)
            if (!http_is_value_char((unsigned char)*q))
                return http_fail(p, 400, "control character in header value");
        if (r->n_headers == HTTP_MAX_HEADERS)
            return http_fail(p, 431, "too many header fields");
        *ve = '\0';
        r->headers[r->n_headers].name = line;
        r->headers[r->n_headers].value = vs;
        r->n_headers++;
        line = le + 2;
    }

    /* Framing (RFC 9112 6). */
    unsigned n_cl = 0, n_host = 0;
    const char *cl = NULL;
    bool conn_close = false, conn_keep = false;
    p->expect_continue = false;
    for (unsigned k = 0; k < r->n_headers; k++) {
        const char *name = r->headers[k].name;
        const char *val = r->headers[k].value;
        if (strcasecmp(name, "Transfer-Encoding") == 0)
            return http_fail(p, 501, "Transfer-Encoding not supported");
        if (strcasecmp(name, "Content-Length") == 0) {
            n_cl++;
            cl = val;
        } else if (strcasecmp(name, "Host") == 0) {
            n_host++;
        } else if (strcasecmp(name, "Connection") == 0) {
            conn_close |= http_list_has(val, "close");
            conn_keep |= http_list_has(val, "keep-alive");
        } else if (strcasecmp(name, "Expect") == 0) {
            p->expect_continue = strcasecmp(val, "100-continue") == 0;
        }
    }
    /* Even two equal Content-Length fields are refused: a proxy in front
     * may have kept a different one (RFC 9112 6.3 item 5 allows this). */
    if (n_cl > 1)
        return http_fail(p, 400, "repeated Content-Length");
    size_t body_len = 0;
    if (cl != NULL) {
        if (*cl == '\0')
            return http_fail(p, 400, "bad Content-Length");
        for (const char *q = cl; *q != '\0'; q++) {
            if (*q < '0' || *q > '9')
                return http_fail(p, 400, "bad Content-Length");
            /* Saturate instead of overflowing; anything above max_body is
             * refused the same way. */
            if (body_len > (SIZE_MAX - 9) / 10)
                body_len = SIZE_MAX;
            else
                body_len = body_len * 10 + (size_t)(*q - '0');
        }
        if (body_len > p->max_body)
            return http_fail(p, 413, "request body too large");
    }
    if (r->version_minor == 1 && n_host == 0)
        return http_fail(p, 400, "missing Host header");
    if (n_host > 1)
        return http_fail(p, 400, "repeated Host header");

    int rc = http_split_target(p, r->method, r->target, pathbuf);
    if (rc < 0)
        return rc;

    if (r->version_minor == 1)
        r->keep_alive = !conn_close;
    else
        r->keep_alive = conn_keep && !conn_close;
    /* An HTTP/1.0 client cannot handle 100 Continue (RFC 9110 10.1.1). */
    if (r->version_minor == 0 || body_len == 0)
        p->expect_continue = false;

    http_in_drop(p, end);
    p->body_len = body_len;
    p->state = HTTP_ST_BODY;
    return 0;
}

int http_parser_feed(struct http_parser *p, const char *buf, size_t len,
                     struct http_request *req, int *status)
{
    if (p->state == HTTP_ST_ERROR) {
        *status = p->err_status;
        return p->err_code;
    }
    if (p->state == HTTP_ST_DONE) {
        /* The caller still holds the request: park the bytes aside. */
        if (len > 0) {
            if (http_reserve(&p->extra, &p->extra_cap, p->extra_len + len) !=
                0) {
                *status = 500;
                return http_fail(p, 500, "out of memory");
            }
            memcpy(p->extra + p->extra_len, buf, len);
            p->extra_len += len;
        }
        *req = p->cur;
        return 1;
    }
    if (http_in_append(p, buf, len) != 0) {
        *status = 500;
        return http_fail(p, 500, "out of memory");
    }

    if (p->state == HTTP_ST_HEAD) {
        size_t end = 0;
        int rc = http_scan_head(p, &end);
        if (rc == 1)
            rc = http_parse_head(p, end);
        if (rc < 0) {
            *status = p->err_status;
            return rc;
        }
        if (p->state == HTTP_ST_HEAD)
            return 0;
    }
    /* BODY */
    if (p->in_len < p->body_len)
        return 0;
    p->cur.body = p->in + p->in_off;
    p->cur.body_len = p->body_len;
    p->expect_continue = false;
    p->state = HTTP_ST_DONE;
    *req = p->cur;
    return 1;
}

void http_parser_consume(struct http_parser *p)
{
    if (p->state != HTTP_ST_DONE)
        return;
    http_in_drop(p, p->body_len);
    p->body_len = 0;
    memset(&p->cur, 0, sizeof(p->cur));
    p->state = HTTP_ST_HEAD;
    p->start = 0;
    p->scan = 0;
    if (p->extra_len > 0) {
        if (http_in_append(p, p->extra, p->extra_len) != 0) {
            http_fail(p, 500, "out of memory");
            return;
        }
        p->extra_len = 0;
    }
}

bool http_parser_want_continue(struct http_parser *p)
{
    if (p->state != HTTP_ST_BODY || !p->expect_continue)
        return false;
    p->expect_continue = false;
    return true;
}

const char *http_request_header(const struct http_request *req,
                                const char *name)
{
    for (unsigned i = 0; i < req->n_headers; i++)
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

const char *http_status_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 421:
        return "Misdirected Request";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}
