/* test_rewrap.c - the re-wrap engine (engine/rewrap.h): header stamping
 * and removal, List-Unsubscribe, link rewriting (entities, quoting, case,
 * excluded and mailto links), the pixel, quoted-printable and base64
 * re-encoding, charsets, untouched attachments and signed parts, and
 * unparseable input passed through. Output parts are decoded with GMime,
 * not with the engine's own decoders. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <gmime/gmime.h>
#include <stdlib.h>
#include <string.h>

#include "engine/rewrap.h"
#include "engine/token.h"
#include "engine/verp.h"
#include "node/errors.h"

#define CODE "01/0A-00001-6B0CDB31"
#define BASE "https://t.example"
#define NOW 1796004637 /* Mon, 30 Nov 2026 02:10:37 +0000 */

static const uint8_t key[] = "0123456789abcdef0123456789abcdef";

static char **strv(int n, ...)
{
    va_list ap;
    va_start(ap, n);
    char **v = calloc((size_t)n + 1, sizeof *v);
    for (int i = 0; i < n; i++)
        v[i] = strdup(va_arg(ap, const char *));
    va_end(ap);
    return v;
}

static void policy(struct rewrap_policy *p, bool tracking, bool bulk)
{
    memset(p, 0, sizeof *p);
    p->customer_id = strdup("acme");
    p->bounce_domain = strdup("bounce.acme.example");
    p->feedback_campaign = strdup("spring");
    p->headers_to_remove = strv(2, "X-Internal", "x-queue-host");
    p->n_headers_to_remove = 2;
    p->bulk = bulk;
    p->unsubscribe_mailto = strdup("unsub@acme.example");
    p->unsubscribe_url_base = strdup(BASE "/");
    p->tracking = tracking;
    p->tracking_url_base = strdup(BASE);
    p->tracking_exclude = strv(1, "https://acme.example/no-track");
    p->n_tracking_exclude = 1;
    p->hmac_key = malloc(32);
    memcpy(p->hmac_key, key, 32);
    p->hmac_key_len = 32;
}

static void run(const struct rewrap_policy *p, const char *msg,
                struct rewrap_result *res)
{
    struct rewrap_input in = {msg, strlen(msg), CODE, "bob@example.org",
                              2,   NOW};
    char err[SR_ERRMSG_SIZE] = "";
    int rc = rewrap_message(p, &in, res, err, sizeof err);
    if (rc != 0)
        fail_msg("rewrap_message: %s %s", sr_strerror(rc), err);
    /* CRLF everywhere */
    for (size_t i = 0; i < res->len; i++)
        if (res->msg[i] == '\n')
            assert_true(i > 0 && res->msg[i - 1] == '\r');
}

/* The decoded content of the n-th leaf (depth first) of msg. */
static char *leaf(const char *msg, int n, char *type, size_t typelen)
{
    GMimeStream *st = g_mime_stream_mem_new_with_buffer(msg, strlen(msg));
    GMimeParser *ps = g_mime_parser_new_with_stream(st);
    GMimeMessage *m = g_mime_parser_construct_message(ps, NULL);
    assert_non_null(m);
    GMimePartIter *it = g_mime_part_iter_new((GMimeObject *)m);
    char *out = NULL;
    int k = 0;
    do {
        GMimeObject *o = g_mime_part_iter_get_current(it);
        if (o == NULL || !GMIME_IS_PART(o))
            continue;
        if (k++ != n)
            continue;
        GMimeStream *mem = g_mime_stream_mem_new();
        g_mime_data_wrapper_write_to_stream(
            g_mime_part_get_content(GMIME_PART(o)), mem);
        GByteArray *ba =
            g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
        out = strndup((const char *)ba->data, ba->len);
        char *t = g_mime_content_type_get_mime_type(
            g_mime_object_get_content_type(o));
        snprintf(type, typelen, "%s", t);
        g_free(t);
        g_object_unref(mem);
        break;
    } while (g_mime_part_iter_next(it));
    g_mime_part_iter_free(it);
    g_object_unref(m);
    g_object_unref(ps);
    g_object_unref(st);
    assert_non_null(out);
    return out;
}

static const char *header_end(const char *m)
{
    const char *e = strstr(m, "\r\n\r\n");
    assert_non_null(e);
    return e + 4;
}

static void test_headers(void **state)
{
    (void)state;
    struct rewrap_policy p;
    policy(&p, false, true);
    const char msg[] =
        "Received: from a by b;\r\n\tTue, 1 Dec 2026 10:00:00 +0000\r\n"
        "From: =?UTF-8?B?SsO2cmc=?= <j@acme.example>\r\n"
        "To: bob@example.org\r\n"
        "Subject: =?ISO-8859-1?Q?Gr=FC=DFe?= and a very long subject line that "
        "goes on and on well past the seventy-eight characters of RFC 5322 "
        "without any folding at all\r\n"
        "X-Internal: secret\r\n\tcontinued\r\n"
        "x-QUEUE-host: q1\r\n"
        "X-SmartRelay-ID: forged\r\n"
        "List-Unsubscribe: <mailto:old@x>\r\n"
        "X-Utf8: caf\xc3\xa9\r\n"
        "\r\n"
        "Hello\r\n";
    struct rewrap_result r;
    run(&p, msg, &r);
    assert_int_equal(r.body, REWRAP_BODY_KEPT);
    assert_string_equal(r.reason, "tracking disabled");
    const char *m = r.msg;
    /* kept byte for byte, in order */
    const char *kept = strstr(m, "Received: from a by b;\r\n\tTue");
    assert_ptr_equal(kept, m);
    assert_non_null(strstr(m, "From: =?UTF-8?B?SsO2cmc=?= <j@acme.example>"
                              "\r\nTo: bob@example.org\r\nSubject: "
                              "=?ISO-8859-1?Q?Gr=FC=DFe?= and a very long"));
    assert_non_null(strstr(m, "without any folding at all\r\n"));
    assert_non_null(strstr(m, "X-Utf8: caf\xc3\xa9\r\n"));
    /* removed */
    assert_null(strstr(m, "X-Internal"));
    assert_null(strstr(m, "continued"));
    assert_null(strcasestr(m, "queue-host"));
    assert_null(strstr(m, "forged"));
    assert_null(strstr(m, "old@x"));
    /* added */
    assert_non_null(
        strstr(m, "Message-ID: <" CODE "@bounce.acme.example>\r\n"));
    assert_non_null(strstr(m, "Date: Mon, 30 Nov 2026 02:10:37 +0000\r\n"));
    assert_non_null(strstr(m, "X-SmartRelay-ID: " CODE "\r\n"));
    assert_non_null(strstr(m, "Feedback-ID: spring:acme:smartrelay\r\n"));
    assert_non_null(
        strstr(m, "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"));
    const char *lu = strstr(m, "List-Unsubscribe: <mailto:unsub@acme.example"
                               "?subject=unsubscribe-");
    assert_non_null(lu);
    const char *tok = lu + strlen("List-Unsubscribe: <mailto:unsub@acme."
                                  "example?subject=unsubscribe-");
    size_t tl = strcspn(tok, ">");
    char expect[1024];
    snprintf(expect, sizeof expect, ">,\r\n <" BASE "/u/%.*s>\r\n", (int)tl,
             tok);
    assert_memory_equal(tok + tl, expect, strlen(expect));
    struct token t;
    char err[SR_ERRMSG_SIZE];
    assert_int_equal(
        token_decode(tok, tl, key, 32, TOKEN_UNSUBSCRIBE, &t, err, sizeof err),
        0);
    assert_string_equal(t.code, CODE);
    assert_string_equal(t.rcpt, "bob@example.org");
    assert_int_equal(t.rcpt_index, 2);
    token_clear(&t);
    /* body as it was */
    assert_string_equal(header_end(m), "Hello\r\n");
    /* envelope sender */
    char code[CODE_MAX];
    uint32_t idx;
    assert_int_equal(verp_parse(r.envelope_sender, strlen(r.envelope_sender),
                                key, 32, code, &idx, err, sizeof err),
                     0);
    assert_string_equal(code, CODE);
    assert_int_equal(idx, 2);
    assert_int_equal(r.n_links, 0);
    rewrap_result_free(&r);

    /* Message-ID and Date kept when present; not bulk: no List-* added,
     * and a customer's own List-Unsubscribe stays */
    p.bulk = false;
    const char msg2[] = "Message-ID: <x@y>\nDate: Mon, 1 Jan 2024 00:00:00 "
                        "+0000\nList-Unsubscribe: <mailto:own@x>\n\nbody\n";
    run(&p, msg2, &r);
    assert_null(strstr(r.msg, CODE "@bounce"));
    assert_null(strstr(r.msg, "Date: Mon, 30"));
    assert_non_null(strstr(r.msg, "List-Unsubscribe: <mailto:own@x>\r\n"));
    assert_null(strstr(r.msg, "One-Click"));
    assert_string_equal(header_end(r.msg), "body\r\n");
    rewrap_result_free(&r);
    rewrap_policy_free(&p);
}

static void check_click(const char *value, size_t len, const char *url,
                        uint32_t index)
{
    assert_true(len > strlen(BASE "/c/"));
    assert_memory_equal(value, BASE "/c/", strlen(BASE "/c/"));
    struct token t;
    char err[SR_ERRMSG_SIZE];
    const char *tok = value + strlen(BASE "/c/");
    assert_int_equal(token_decode(tok, len - strlen(BASE "/c/"), key, 32,
                                  TOKEN_CLICK, &t, err, sizeof err),
                     0);
    assert_string_equal(t.url, url);
    assert_int_equal(t.link_index, index);
    assert_int_equal(t.rcpt_index, 2);
    assert_string_equal(t.code, CODE);
    token_clear(&t);
}

static void test_links(void **state)
{
    (void)state;
    struct rewrap_policy p;
    policy(&p, true, false);
    const char msg[] =
        "From: a@acme.example\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        "\r\n"
        "<html><body>\r\n"
        "<a "
        "href=\"https://shop.example/p?a=1&amp;b=2&#38;c=&#x33;\">one</a>\r\n"
        "<A class=x HREF='HTTP://Shop.Example/Two'>two</A>\r\n"
        "<a href=https://shop.example/three?x=y>three</a>\r\n"
        "<a title=\"a > b\" href = \" https://shop.example/four \" >4</a>\r\n"
        "<a href=\"mailto:bob@example.org\">mail</a>\r\n"
        "<a href=\"https://acme.example/no-track/x\">excluded</a>\r\n"
        "<a href=\"ftp://files.example/\">ftp</a>\r\n"
        "<a name=\"top\">anchor</a><abbr href=\"https://no.example\">no</abbr>"
        "\r\n"
        "<a href=\"https://shop.example/a?copy=1&copy=2&amp\">five</a>\r\n"
        "<a href=\"https://shop.example/first\" href=\"https://second\">6</a>"
        "\r\n"
        "</BODY></html>\r\n";
    struct rewrap_result r;
    run(&p, msg, &r);
    assert_int_equal(r.body, REWRAP_BODY_MODIFIED);
    assert_int_equal(r.n_pixels, 1);
    const char *want[] = {
        "https://shop.example/p?a=1&b=2&c=3",    "HTTP://Shop.Example/Two",
        "https://shop.example/three?x=y",        "https://shop.example/four",
        "https://shop.example/a?copy=1&copy=2&", "https://shop.example/first",
    };
    assert_int_equal(r.n_links, 6);
    for (size_t i = 0; i < 6; i++)
        assert_string_equal(r.links[i], want[i]);

    const char *b = header_end(r.msg);
    /* one: double quotes kept */
    const char *v = strstr(b, "<a href=\"") + 9;
    check_click(v, strcspn(v, "\""), want[0], 0);
    /* two: single quotes, other attributes kept */
    v = strstr(b, "<A class=x HREF='");
    assert_non_null(v);
    v += strlen("<A class=x HREF='");
    check_click(v, strcspn(v, "'"), want[1], 1);
    /* three: unquoted */
    v = strstr(b, "<a href=" BASE);
    assert_non_null(v);
    v += strlen("<a href=");
    check_click(v, strcspn(v, ">"), want[2], 2);
    /* four: spaces around '=' kept, value replaced */
    v = strstr(b, "<a title=\"a > b\" href = \"");
    assert_non_null(v);
    v += strlen("<a title=\"a > b\" href = \"");
    check_click(v, strcspn(v, "\""), want[3], 3);
    /* untouched */
    assert_non_null(strstr(b, "<a href=\"mailto:bob@example.org\">mail</a>"));
    assert_non_null(
        strstr(b, "<a href=\"https://acme.example/no-track/x\">excluded</a>"));
    assert_non_null(strstr(b, "<a href=\"ftp://files.example/\">ftp</a>"));
    assert_non_null(strstr(b, "<abbr href=\"https://no.example\">no</abbr>"));
    /* the second href of a tag is not a link */
    assert_non_null(strstr(b, "href=\"https://second\">6</a>"));
    /* the pixel before </BODY> */
    const char *px = strstr(b, "<img src=\"" BASE "/o/");
    assert_non_null(px);
    const char *tok = px + strlen("<img src=\"" BASE "/o/");
    size_t tl = strcspn(tok, "\"");
    assert_string_equal(tok + tl, "\" width=\"1\" height=\"1\" alt=\"\" "
                                  "style=\"display:none\"></BODY></html>\r\n");
    struct token t;
    char err[SR_ERRMSG_SIZE];
    assert_int_equal(
        token_decode(tok, tl, key, 32, TOKEN_OPEN, &t, err, sizeof err), 0);
    assert_int_equal(t.rcpt_index, 2);
    token_clear(&t);
    /* everything else of the body as it was */
    assert_non_null(strstr(b, "<html><body>\r\n<a href=\""));
    assert_non_null(strstr(b, "\">one</a>\r\n"));
    rewrap_result_free(&r);

    /* no </body>: the pixel goes at the end */
    const char msg2[] = "Content-Type: text/html\r\n\r\n<p>hi</p>";
    run(&p, msg2, &r);
    const char *e = r.msg + r.len - strlen("style=\"display:none\">\r\n");
    assert_string_equal(e, "style=\"display:none\">\r\n");
    assert_non_null(strstr(r.msg, "\r\n\r\n<p>hi</p><img src="));
    rewrap_result_free(&r);
    rewrap_policy_free(&p);
}

static void test_multipart_qp_base64(void **state)
{
    (void)state;
    struct rewrap_policy p;
    policy(&p, true, false);
    /* a long QP line with soft breaks, =3D, a UTF-8 é; base64 HTML in a
     * nested multipart; a binary attachment */
    const char att[] = "Content-Type: application/octet-stream\r\n"
                       "Content-Disposition: attachment; filename=\"a.bin\"\r\n"
                       "Content-Transfer-Encoding: base64\r\n\r\n"
                       "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUm"
                       "JygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZH\r\n"
                       "SElKS0xNTk9Q\r\n";
    const char att_html[] = "Content-Type: text/html\r\n"
                            "Content-Disposition: attachment; "
                            "filename=\"page.html\"\r\n\r\n"
                            "<a href=\"https://attached.example/\">x</a>\r\n";
    char msg[8192];
    snprintf(
        msg, sizeof msg,
        "From: a@acme.example\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=\"OUT\"\r\n"
        "\r\n"
        "preamble\r\n"
        "--OUT\r\n"
        "Content-Type: multipart/alternative; boundary=\"ALT\"\r\n"
        "\r\n"
        "--ALT\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n"
        "\r\n"
        "Caf=C3=A9 https://plain.example/x\r\n"
        "--ALT\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n"
        "\r\n"
        "<html><body><p style=3D\"color:red\">Caf=C3=A9 is a long line that "
        "has t=\r\n"
        "o be broken <a href=3D\"https://shop.example/q?x=3D1&amp;y=3D2\">her="
        "\r\n"
        "e</a></p>\r\n"
        "</body></html>\r\n"
        "--ALT--\r\n"
        "\r\n"
        "--OUT\r\n"
        "Content-Type: multipart/related; boundary=\"REL\"\r\n"
        "\r\n"
        "--REL\r\n"
        "Content-Type: text/html; charset=\"utf-8\"\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
        "PGh0bWw+PGJvZHk+PGEgaHJlZj0iaHR0cHM6Ly9iNjQuZXhhbXBsZS8/"
        "YT0xJmFtcDtiPTIi"
        "\r\nPmI2NDwvYT48L2JvZHk+PC9odG1sPg==\r\n"
        "--REL--\r\n"
        "--OUT\r\n"
        "%s"
        "--OUT\r\n"
        "%s"
        "--OUT--\r\n"
        "epilogue\r\n",
        att, att_html);
    struct rewrap_result r;
    run(&p, msg, &r);
    assert_int_equal(r.body, REWRAP_BODY_MODIFIED);
    assert_int_equal(r.n_links, 2);
    assert_string_equal(r.links[0], "https://shop.example/q?x=1&y=2");
    assert_string_equal(r.links[1], "https://b64.example/?a=1&b=2");
    assert_int_equal(r.n_pixels, 2);
    /* attachments, text part, preamble, epilogue: byte for byte */
    assert_non_null(strstr(r.msg, att));
    assert_non_null(strstr(r.msg, att_html));
    assert_non_null(strstr(r.msg, "\r\n\r\npreamble\r\n--OUT\r\n"));
    assert_non_null(
        strstr(r.msg, "Caf=C3=A9 https://plain.example/x\r\n--ALT"));
    assert_non_null(strstr(r.msg, "--OUT--\r\nepilogue\r\n"));

    char type[64];
    /* the QP HTML: decoded equals the original with the link and pixel */
    char *html = leaf(r.msg, 1, type, sizeof type);
    assert_string_equal(type, "text/html");
    const char *a = strstr(html, "<a href=\"");
    assert_non_null(a);
    a += 9;
    size_t vl = strcspn(a, "\"");
    check_click(a, vl, r.links[0], 0);
    const char *pre = "<html><body><p style=\"color:red\">Caf\xc3\xa9 is a "
                      "long line that has to be broken <a href=\"";
    assert_memory_equal(html, pre, strlen(pre));
    assert_true(strncmp(a + vl, "\">here</a></p>\r\n<img src=", 24) == 0);
    assert_non_null(strstr(html, "\"></body></html>"));
    free(html);
    /* and its encoded form: QP lines at most 76 characters */
    const char *q = strstr(r.msg, "Content-Transfer-Encoding: quoted-printable"
                                  "\r\n\r\n<html>");
    assert_non_null(q);
    q = strstr(q, "\r\n\r\n") + 4;
    const char *qend = strstr(q, "\r\n--ALT--");
    for (const char *l = q; l < qend;) {
        const char *e = strstr(l, "\r\n");
        assert_true(e - l <= 76);
        l = e + 2;
    }
    /* the base64 HTML */
    html = leaf(r.msg, 2, type, sizeof type);
    assert_string_equal(type, "text/html");
    assert_memory_equal(html, "<html><body><a href=\"" BASE "/c/",
                        strlen("<html><body><a href=\"" BASE "/c/"));
    a = html + strlen("<html><body><a href=\"");
    check_click(a, strcspn(a, "\""), r.links[1], 1);
    assert_non_null(strstr(html, "\">b64</a><img src=\"" BASE "/o/"));
    assert_non_null(strstr(html, "></body></html>"));
    free(html);
    const char *b = strstr(r.msg, "Content-Transfer-Encoding: base64\r\n\r\n");
    b += strlen("Content-Transfer-Encoding: base64\r\n\r\n");
    const char *bend = strstr(b, "--REL--");
    for (const char *l = b; l < bend;) {
        const char *e = strstr(l, "\r\n");
        assert_true(e - l <= 76);
        l = e + 2;
    }
    rewrap_result_free(&r);

    /* text parts too when asked */
    p.track_text_parts = true;
    run(&p, msg, &r);
    assert_int_equal(r.n_links, 3);
    assert_string_equal(r.links[0], "https://plain.example/x");
    char *text = leaf(r.msg, 0, type, sizeof type);
    assert_string_equal(type, "text/plain");
    assert_memory_equal(text, "Caf\xc3\xa9 " BASE "/c/",
                        strlen("Caf\xc3\xa9 " BASE "/c/"));
    free(text);
    rewrap_result_free(&r);
    rewrap_policy_free(&p);
}

static void test_charset_and_8bit(void **state)
{
    (void)state;
    struct rewrap_policy p;
    policy(&p, true, false);
    /* Latin-1 8bit HTML: converted to edit, written back in Latin-1 */
    const char msg[] = "Content-Type: text/html; charset=iso-8859-1\r\n"
                       "Content-Transfer-Encoding: 8bit\r\n\r\n"
                       "<p>Gr\xfc\xdf</p><a href=\"https://x.example/\xe9\">"
                       "l</a>\r\n";
    struct rewrap_result r;
    run(&p, msg, &r);
    assert_int_equal(r.body, REWRAP_BODY_MODIFIED);
    assert_int_equal(r.n_links, 1);
    assert_string_equal(r.links[0], "https://x.example/\xc3\xa9");
    assert_non_null(strstr(r.msg, "\r\n\r\n<p>Gr\xfc\xdf</p><a href=\""));
    assert_null(strstr(r.msg, "\xc3"));
    rewrap_result_free(&r);

    /* UTF-8 8bit body, SMTPUTF8 header */
    const char msg2[] = "From: j\xc3\xb6rg@b\xc3\xbc"
                        "cher.example\r\n"
                        "Content-Type: text/html; charset=utf-8\r\n"
                        "Content-Transfer-Encoding: 8bit\r\n\r\n"
                        "<p>\xe2\x82\xac 5</p>\r\n";
    run(&p, msg2, &r);
    assert_non_null(strstr(r.msg, "From: j\xc3\xb6rg@b\xc3\xbc"
                                  "cher.example\r\n"));
    assert_non_null(strstr(r.msg, "\r\n\r\n<p>\xe2\x82\xac 5</p><img "));
    rewrap_result_free(&r);
    rewrap_policy_free(&p);
}

static void test_left_alone(void **state)
{
    (void)state;
    struct rewrap_policy p;
    policy(&p, true, false);
    /* multipart/signed: body byte for byte */
    const char body[] =
        "--S\r\nContent-Type: text/html\r\n\r\n<a href=\"https://x/\">x</a>\r\n"
        "--S\r\nContent-Type: application/pgp-signature\r\n\r\nsig\r\n"
        "--S--\r\n";
    char msg[1024];
    snprintf(msg, sizeof msg,
             "Content-Type: multipart/signed; boundary=S; "
             "protocol=\"application/pgp-signature\"\r\n\r\n%s",
             body);
    struct rewrap_result r;
    run(&p, msg, &r);
    assert_int_equal(r.body, REWRAP_BODY_KEPT);
    assert_non_null(strstr(r.reason, "multipart/signed left intact"));
    assert_string_equal(header_end(r.msg), body);
    rewrap_result_free(&r);

    /* a forwarded message is not ours to track */
    const char fwd[] = "Content-Type: message/rfc822\r\n\r\n"
                       "Content-Type: text/html\r\n\r\n<a href=\"https://x/\">"
                       "</a>\r\n";
    run(&p, fwd, &r);
    assert_int_equal(r.body, REWRAP_BODY_KEPT);
    assert_int_equal(r.n_links, 0);
    rewrap_result_free(&r);

    /* plain text only */
    run(&p, "Subject: x\r\n\r\nhttps://x.example/\r\n", &r);
    assert_int_equal(r.body, REWRAP_BODY_KEPT);
    assert_string_equal(r.reason, "no HTML part to track");
    assert_string_equal(header_end(r.msg), "https://x.example/\r\n");
    rewrap_result_free(&r);
    rewrap_policy_free(&p);
}

static void test_unparseable(void **state)
{
    (void)state;
    struct rewrap_policy p;
    policy(&p, true, true);
    /* a header line that is not a field: everything kept, fields
     * prepended, Message-ID not added twice */
    const char msg[] = "From: a@acme.example\r\n"
                       "Message-Id: <own@x>\r\n"
                       "this is not a header\r\n"
                       "X-Internal: kept here\r\n"
                       "\r\n"
                       "<a href=\"https://x.example/\">x</a>\r\n";
    struct rewrap_result r;
    run(&p, msg, &r);
    assert_int_equal(r.body, REWRAP_BODY_UNPARSED);
    assert_string_equal(r.reason, "header line 3 is not a field");
    assert_int_equal(r.n_links, 0);
    size_t ml = strlen(msg);
    assert_true(r.len > ml);
    assert_string_equal(r.msg + r.len - ml, msg);
    assert_null(strstr(r.msg, "Message-ID: <" CODE));
    assert_non_null(strstr(r.msg, "Date: "));
    assert_non_null(strstr(r.msg, "X-SmartRelay-ID: " CODE "\r\n"));
    assert_non_null(strstr(r.msg, "List-Unsubscribe-Post: "));
    rewrap_result_free(&r);

    /* leading continuation line, empty message, header without body,
     * bare LF, no final line end */
    const char *odd[] = {" folded\r\n\r\nbody", "", "Subject: x",
                         "Subject: x\n\nline\nline", "\r\n\r\n"};
    for (size_t i = 0; i < sizeof odd / sizeof *odd; i++) {
        run(&p, odd[i], &r);
        assert_non_null(strstr(r.msg, "X-SmartRelay-ID: " CODE "\r\n"));
        rewrap_result_free(&r);
    }
    run(&p, "Subject: x", &r);
    assert_int_equal(r.body, REWRAP_BODY_KEPT);
    assert_non_null(strstr(r.msg, "Subject: x\r\nMessage-ID:"));
    assert_string_equal(r.msg + r.len - 4, "\r\n\r\n");
    rewrap_result_free(&r);
    run(&p, "Subject: x\n\nline\nline", &r);
    assert_string_equal(header_end(r.msg), "line\r\nline\r\n");
    rewrap_result_free(&r);
    rewrap_policy_free(&p);
}

static void test_bad_input(void **state)
{
    (void)state;
    struct rewrap_policy p;
    struct rewrap_result r;
    char err[SR_ERRMSG_SIZE];
    struct rewrap_input in = {"x", 1, CODE, "bob@example.org", 0, NOW};
    policy(&p, true, true);
    free(p.tracking_url_base);
    p.tracking_url_base = strdup("https://t.example/\"onload=");
    assert_int_equal(rewrap_message(&p, &in, &r, err, sizeof err), SR_EINVAL);
    free(p.tracking_url_base);
    p.tracking_url_base = strdup("javascript:alert(1)");
    assert_int_equal(rewrap_message(&p, &in, &r, err, sizeof err), SR_EINVAL);
    free(p.tracking_url_base);
    p.tracking_url_base = strdup(BASE);
    free(p.feedback_campaign);
    p.feedback_campaign = strdup("a\r\nBcc: x");
    assert_int_equal(rewrap_message(&p, &in, &r, err, sizeof err), SR_EINVAL);
    free(p.feedback_campaign);
    p.feedback_campaign = NULL;
    p.hmac_key_len = 8;
    assert_int_equal(rewrap_message(&p, &in, &r, err, sizeof err), SR_EINVAL);
    p.hmac_key_len = 32;
    free(p.unsubscribe_url_base);
    p.unsubscribe_url_base = NULL;
    assert_int_equal(rewrap_message(&p, &in, &r, err, sizeof err), SR_EINVAL);
    p.bulk = false;
    in.code = "a b";
    assert_int_equal(rewrap_message(&p, &in, &r, err, sizeof err), SR_EINVAL);
    in.code = CODE;
    in.rcpt = "x\r\n";
    assert_int_equal(rewrap_message(&p, &in, &r, err, sizeof err), SR_EINVAL);
    in.rcpt = "bob@example.org";
    assert_int_equal(rewrap_message(&p, &in, &r, err, sizeof err), 0);
    /* Feedback-ID without a campaign */
    assert_non_null(strstr(r.msg, "Feedback-ID: acme:smartrelay\r\n"));
    rewrap_result_free(&r);
    rewrap_policy_free(&p);
}

static int setup(void **state)
{
    (void)state;
    rewrap_global_init();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rewrap_global_shutdown();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_links),
        cmocka_unit_test(test_multipart_qp_base64),
        cmocka_unit_test(test_charset_and_8bit),
        cmocka_unit_test(test_left_alone),
        cmocka_unit_test(test_unparseable),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
