/*
 * fuzz_smtp_reply.c - libFuzzer target for the SMTP client's pure parts:
 * the reply parser, the EHLO extension parser and dot-stuffing
 * (gateways/smtp_client.h).
 *
 * Input: byte 0 picks how the rest arrives: (b & 0x3f) + 1 bytes per
 * read, or everything at once when b is 0xff. The rest is what a server
 * sends. It is parsed as the client does (bytes appended per read, every
 * complete reply taken off the front) and, as a reference, from the whole
 * input at once; both must see the same replies and the same error.
 *
 * Checked for each reply: it ends with a line end, the code is 2xx..5xx,
 * the enhanced status is "" or class.subject.detail of the code's class,
 * the text is NUL-terminated, printable and within its buffer, the line
 * count within the limit, and one byte less would need more. The whole
 * input also goes through dot-stuffing in pieces: the wire form has only
 * CRLF line ends and no end of data before the real one.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateways/smtp_client.h"
#include "node/errors.h"

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond))                                                           \
            __builtin_trap();                                                  \
    } while (0)

#define MAX_REPLIES 4096

struct seen {
    int rc;
    size_t used;
    int code;
};

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static void check_enh(const char *e, int code)
{
    if (e[0] == '\0')
        return;
    CHECK(e[0] == '0' + code / 100 && e[1] == '.');
    size_t i = 2, d = 0;
    while (is_digit(e[i]))
        i++, d++;
    CHECK(d >= 1 && d <= 3 && e[i] == '.');
    i++;
    d = 0;
    while (is_digit(e[i]))
        i++, d++;
    CHECK(d >= 1 && d <= 3 && e[i] == '\0');
}

static void check_reply(const char *buf, size_t used,
                        const struct smtp_reply *r)
{
    CHECK(used > 0 && buf[used - 1] == '\n');
    CHECK(r->code >= 200 && r->code <= 559);
    CHECK(r->lines >= 1 && r->lines <= SMTP_REPLY_MAX_LINES);
    check_enh(r->enh, r->code);
    size_t tl = strnlen(r->text, SMTP_REPLY_TEXT_MAX);
    CHECK(tl < SMTP_REPLY_TEXT_MAX);
    for (size_t i = 0; i < tl; i++)
        CHECK(r->text[i] >= 0x20 && r->text[i] < 0x7f);

    /* One byte less is not a complete reply. */
    struct smtp_reply r2;
    size_t u2 = 0;
    char err[SR_ERRMSG_SIZE];
    int rc = smtp_reply_parse(buf, used - 1, &r2, &u2, err, sizeof err);
    CHECK(rc == 0);

    struct smtp_ext ext;
    smtp_ehlo_parse(buf, used, &ext);
    CHECK((ext.flags & ~0x3fu) == 0);
    CHECK(ext.size_max == 0 || (ext.flags & SMTP_EXT_SIZE));
}

/* Parses data[0..n) at once: the replies and how it ends. */
static unsigned parse_whole(const char *data, size_t n, struct seen *out)
{
    size_t off = 0;
    unsigned k = 0;
    while (k < MAX_REPLIES) {
        struct smtp_reply r;
        size_t used = 0;
        char err[SR_ERRMSG_SIZE] = "";
        int rc =
            smtp_reply_parse(data + off, n - off, &r, &used, err, sizeof err);
        CHECK(rc == 0 || rc == 1 || rc == SR_EPARSE);
        out[k].rc = rc;
        out[k].used = used;
        out[k].code = r.code;
        k++;
        if (rc != 1)
            break;
        CHECK(used <= n - off);
        check_reply(data + off, used, &r);
        off += used;
    }
    return k;
}

static void stuff_check(const char *data, size_t n, size_t step)
{
    char *out = malloc(2 * n + 5 + 1);
    if (out == NULL)
        return;
    struct smtp_stuffer s;
    smtp_stuff_init(&s);
    size_t o = 0;
    for (size_t off = 0; off < n; off += step) {
        size_t k = n - off < step ? n - off : step;
        o += smtp_stuff(&s, data + off, k, out + o);
    }
    o += smtp_stuff_end(&s, out + o);
    CHECK(o <= 2 * n + 5);
    CHECK(o >= 3 && memcmp(out + o - 3, ".\r\n", 3) == 0);
    for (size_t i = 0; i < o; i++) {
        if (out[i] == '\r')
            CHECK(i + 1 < o && out[i + 1] == '\n');
        if (out[i] == '\n') {
            CHECK(i > 0 && out[i - 1] == '\r');
            /* a line starting with '.' is stuffed, except the last */
            if (i + 1 < o && out[i + 1] == '.' && i + 4 != o)
                CHECK(i + 2 < o && out[i + 2] == '.');
        }
    }
    CHECK(o == 3 || out[0] != '.' || (o > 1 && out[1] == '.'));
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = data[0] == 0xff ? size : (size_t)(data[0] & 0x3f) + 1;
    const char *in = (const char *)data + 1;
    size_t n = size - 1;

    static struct seen whole[MAX_REPLIES];
    unsigned n_whole = parse_whole(in, n, whole);

    /* As the client reads: a growing buffer, replies taken off the front. */
    char *buf = malloc(n + 1);
    if (buf == NULL)
        return 0;
    size_t len = 0, fed = 0;
    unsigned k = 0;
    int last = 0;
    while (k < MAX_REPLIES) {
        struct smtp_reply r;
        size_t used = 0;
        char err[SR_ERRMSG_SIZE] = "";
        int rc = smtp_reply_parse(buf, len, &r, &used, err, sizeof err);
        if (rc == 0 && fed < n) {
            size_t more = n - fed < step ? n - fed : step;
            memcpy(buf + len, in + fed, more);
            len += more;
            fed += more;
            continue;
        }
        last = rc;
        CHECK(k < n_whole && whole[k].rc == rc);
        k++;
        if (rc != 1)
            break;
        CHECK(whole[k - 1].used == used && whole[k - 1].code == r.code);
        memmove(buf, buf + used, len - used);
        len -= used;
    }
    CHECK(k == n_whole || last == 1);
    free(buf);

    stuff_check(in, n, step);
    return 0;
}
