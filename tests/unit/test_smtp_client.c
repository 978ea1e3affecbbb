/*
 * test_smtp_client.c - the outbound SMTP client: the pure parts (reply
 * parser, EHLO extensions, dot-stuffing) table-driven, then the client
 * against a scripted fake server on the same libuv loop.
 *
 * Parser rows are also parsed from every proper prefix (must say "need
 * more", or fail early for a malformed row); stuffing rows are fed whole,
 * split at every byte boundary and byte by byte, and must give the same
 * bytes each way. The fake server answers each command line by the first
 * matching rule of its script, so that the tests can produce what real
 * servers seldom do (354 after every RCPT failed, a malformed reply, 421
 * in the middle, silence); the real-server tests are in
 * tests/integration/test_smtp_client.py.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "gateways/smtp_client.h"
#include "node/errors.h"

/* ------------------------------------------------------------------ */
/* Reply parser                                                        */
/* ------------------------------------------------------------------ */

#define NEED_MORE 0
#define COMPLETE 1
#define FAILED (-1)

struct reply_case {
    const char *name;
    const char *in;
    int want;
    size_t want_used; /* 0: the whole input */
    int want_code;
    const char *want_enh;
    const char *want_text;
    unsigned want_lines;
};

static const struct reply_case reply_cases[] = {
    {"one line", "250 OK\r\n", COMPLETE, 0, 250, "", "OK", 1},
    {"code only", "250\r\n", COMPLETE, 0, 250, "", "", 1},
    {"code and space", "354 \r\n", COMPLETE, 0, 354, "", "", 1},
    {"bare LF", "220 mx.example ESMTP\n", COMPLETE, 0, 220, "",
     "mx.example ESMTP", 1},
    {"multi-line greeting",
     "220-mx.example ESMTP\r\n220-no UCE\r\n220 welcome\r\n", COMPLETE, 0, 220,
     "", "mx.example ESMTP no UCE welcome", 3},
    {"enhanced code", "550 5.1.1 <x@y>: Recipient address rejected\r\n",
     COMPLETE, 0, 550, "5.1.1", "<x@y>: Recipient address rejected", 1},
    {"enhanced code on every line",
     "550-5.7.1 Message rejected\r\n550-5.7.1 see\r\n550 5.7.1 "
     "https://example/x\r\n",
     COMPLETE, 0, 550, "5.7.1", "Message rejected see https://example/x", 3},
    {"enhanced code three digits", "451 4.123.456 try later\r\n", COMPLETE, 0,
     451, "4.123.456", "try later", 1},
    {"enhanced code alone", "250 2.0.0\r\n", COMPLETE, 0, 250, "2.0.0", "", 1},
    {"enhanced class must match the code", "250 5.1.1 odd\r\n", COMPLETE, 0,
     250, "", "5.1.1 odd", 1},
    {"not an enhanced code: four digits", "250 2.1000.0 x\r\n", COMPLETE, 0,
     250, "", "2.1000.0 x", 1},
    {"not an enhanced code: no space after", "250 2.1.0x y\r\n", COMPLETE, 0,
     250, "", "2.1.0x y", 1},
    {"two replies: only the first", "250 first\r\n251 second\r\n", COMPLETE, 11,
     250, "", "first", 1},
    {"continuation then empty last", "250-a\r\n250\r\n", COMPLETE, 0, 250, "",
     "a", 2},
    {"control characters shown as ?", "250 a\tb\x01\x7f\xc3\xa9\r\n", COMPLETE,
     0, 250, "", "a?b????", 1},
    {"CR inside a line", "250 a\rb\r\n", COMPLETE, 0, 250, "", "a?b", 1},
    {"highest code", "559 x\r\n", COMPLETE, 0, 559, "", "x", 1},
    /* incomplete */
    {"empty", "", NEED_MORE, 0, 0, NULL, NULL, 0},
    {"no line end", "250 OK", NEED_MORE, 0, 0, NULL, NULL, 0},
    {"only continuation lines", "250-a\r\n250-b\r\n", NEED_MORE, 0, 0, NULL,
     NULL, 0},
    {"CR without LF", "250 OK\r", NEED_MORE, 0, 0, NULL, NULL, 0},
    /* malformed */
    {"letters", "abc\r\n", FAILED, 0, 0, NULL, NULL, 0},
    {"too short", "25\r\n", FAILED, 0, 0, NULL, NULL, 0},
    {"empty line", "\r\n", FAILED, 0, 0, NULL, NULL, 0},
    {"bad separator", "250x\r\n", FAILED, 0, 0, NULL, NULL, 0},
    {"tab separator", "250\tOK\r\n", FAILED, 0, 0, NULL, NULL, 0},
    {"1xx", "199 x\r\n", FAILED, 0, 0, NULL, NULL, 0},
    {"6xx", "600 x\r\n", FAILED, 0, 0, NULL, NULL, 0},
    {"second digit 6", "260 x\r\n", FAILED, 0, 0, NULL, NULL, 0},
    {"leading space", " 250 x\r\n", FAILED, 0, 0, NULL, NULL, 0},
    {"code changes", "250-a\r\n251 b\r\n", FAILED, 0, 0, NULL, NULL, 0},
    {"garbage continuation", "250-a\r\nxyz\r\n", FAILED, 0, 0, NULL, NULL, 0},
    {"partial garbage fails early", "HTTP/1.1 400", FAILED, 0, 0, NULL, NULL,
     0},
    {"partial bad separator fails early", "250x", FAILED, 0, 0, NULL, NULL, 0},
};

static void check_reply_case(const struct reply_case *rc)
{
    struct smtp_reply r;
    size_t used = 0;
    char err[SR_ERRMSG_SIZE] = "";
    size_t len = strlen(rc->in);
    int got = smtp_reply_parse(rc->in, len, &r, &used, err, sizeof err);
    if (rc->want == FAILED) {
        if (got != SR_EPARSE)
            fail_msg("%s: want SR_EPARSE, got %d", rc->name, got);
        assert_true(err[0] != '\0');
        return;
    }
    if (got != rc->want)
        fail_msg("%s: want %d, got %d (%s)", rc->name, rc->want, got, err);
    if (got != COMPLETE)
        return;
    assert_int_equal(used, rc->want_used ? rc->want_used : len);
    assert_int_equal(r.code, rc->want_code);
    assert_string_equal(r.enh, rc->want_enh);
    assert_string_equal(r.text, rc->want_text);
    assert_int_equal(r.lines, rc->want_lines);
    /* Every proper prefix of a complete reply needs more. */
    for (size_t k = 0; k < used; k++) {
        struct smtp_reply r2;
        size_t u2 = 0;
        int g2 = smtp_reply_parse(rc->in, k, &r2, &u2, err, sizeof err);
        if (g2 != NEED_MORE)
            fail_msg("%s: prefix %zu gave %d", rc->name, k, g2);
    }
}

static void test_reply_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof reply_cases / sizeof reply_cases[0]; i++)
        check_reply_case(&reply_cases[i]);
}

static char *repeat_lines(const char *line, unsigned n, const char *last)
{
    size_t ll = strlen(line), la = strlen(last);
    char *s = malloc(ll * n + la + 1);
    for (unsigned i = 0; i < n; i++)
        memcpy(s + ll * i, line, ll);
    memcpy(s + ll * n, last, la + 1);
    return s;
}

static void test_reply_limits(void **state)
{
    (void)state;
    struct smtp_reply r;
    size_t used;
    char err[SR_ERRMSG_SIZE];

    /* A line of exactly SMTP_REPLY_MAX_LINE bytes with its CRLF is fine. */
    char *line = malloc(SMTP_REPLY_MAX_LINE + 16);
    memset(line, 'x', SMTP_REPLY_MAX_LINE);
    memcpy(line, "250 ", 4);
    memcpy(line + SMTP_REPLY_MAX_LINE - 2, "\r\n", 2);
    assert_int_equal(
        smtp_reply_parse(line, SMTP_REPLY_MAX_LINE, &r, &used, err, sizeof err),
        1);
    assert_int_equal(used, SMTP_REPLY_MAX_LINE);
    /* Text is cut to fit, ending "...". */
    assert_int_equal(strlen(r.text), SMTP_REPLY_TEXT_MAX - 1);
    assert_string_equal(r.text + SMTP_REPLY_TEXT_MAX - 4, "...");

    /* One byte more is too long: with the line end ... */
    memset(line, 'x', SMTP_REPLY_MAX_LINE + 1);
    memcpy(line, "250 ", 4);
    memcpy(line + SMTP_REPLY_MAX_LINE - 1, "\r\n", 2);
    assert_int_equal(smtp_reply_parse(line, SMTP_REPLY_MAX_LINE + 1, &r, &used,
                                      err, sizeof err),
                     SR_EPARSE);
    assert_non_null(strstr(err, "longer than"));
    /* ... and without waiting for it. */
    assert_int_equal(
        smtp_reply_parse(line, SMTP_REPLY_MAX_LINE, &r, &used, err, sizeof err),
        SR_EPARSE);
    assert_int_equal(smtp_reply_parse(line, SMTP_REPLY_MAX_LINE - 1, &r, &used,
                                      err, sizeof err),
                     0);
    free(line);

    /* 100 lines are fine, 101 are not. */
    char *ok = repeat_lines("250-x\r\n", SMTP_REPLY_MAX_LINES - 1, "250 y\r\n");
    assert_int_equal(
        smtp_reply_parse(ok, strlen(ok), &r, &used, err, sizeof err), 1);
    assert_int_equal(r.lines, SMTP_REPLY_MAX_LINES);
    free(ok);
    char *bad = repeat_lines("250-x\r\n", SMTP_REPLY_MAX_LINES, "250 y\r\n");
    assert_int_equal(
        smtp_reply_parse(bad, strlen(bad), &r, &used, err, sizeof err),
        SR_EPARSE);
    assert_non_null(strstr(err, "lines"));
    free(bad);

    /* The text of many lines is cut too. */
    char *many =
        repeat_lines("250-abcdefghijklmnopqrstuvwxyz\r\n", 60, "250 end\r\n");
    assert_int_equal(
        smtp_reply_parse(many, strlen(many), &r, &used, err, sizeof err), 1);
    assert_int_equal(strlen(r.text), SMTP_REPLY_TEXT_MAX - 1);
    assert_string_equal(r.text + SMTP_REPLY_TEXT_MAX - 4, "...");
    free(many);
}

/* ------------------------------------------------------------------ */
/* EHLO extensions                                                     */
/* ------------------------------------------------------------------ */

static unsigned parse_ext(const char *raw, size_t *size_max)
{
    struct smtp_reply r;
    size_t used;
    char err[SR_ERRMSG_SIZE];
    assert_int_equal(
        smtp_reply_parse(raw, strlen(raw), &r, &used, err, sizeof err), 1);
    struct smtp_ext e;
    smtp_ehlo_parse(raw, used, &e);
    if (size_max)
        *size_max = e.size_max;
    return e.flags;
}

static void test_ehlo_parse(void **state)
{
    (void)state;
    size_t sm;
    unsigned f;

    f = parse_ext("250-mx.example.org\r\n250-PIPELINING\r\n"
                  "250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n"
                  "250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n"
                  "250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n"
                  "250 CHUNKING\r\n",
                  &sm);
    assert_int_equal(f, SMTP_EXT_PIPELINING | SMTP_EXT_SIZE |
                            SMTP_EXT_STARTTLS | SMTP_EXT_ENHANCEDSTATUSCODES |
                            SMTP_EXT_8BITMIME | SMTP_EXT_SMTPUTF8);
    assert_int_equal(sm, 10240000);

    /* Single line: no extensions. */
    assert_int_equal(parse_ext("250 mx.example.org\r\n", &sm), 0);
    /* The first line is the server's name, whatever it says. */
    assert_int_equal(parse_ext("250-PIPELINING\r\n250 8BITMIME\r\n", NULL),
                     SMTP_EXT_8BITMIME);
    /* Case-insensitive, bare LF, trailing text after a keyword. */
    assert_int_equal(parse_ext("250-mx\n250-pipelining\n250-StartTLS\n"
                               "250 size\n",
                               &sm),
                     SMTP_EXT_PIPELINING | SMTP_EXT_STARTTLS | SMTP_EXT_SIZE);
    assert_int_equal(sm, 0);
    /* SIZE 0 and an absurd SIZE mean no limit; a prefix is not a match. */
    assert_int_equal(parse_ext("250-mx\r\n250 SIZE 0\r\n", &sm), SMTP_EXT_SIZE);
    assert_int_equal(sm, 0);
    assert_int_equal(
        parse_ext("250-mx\r\n250 SIZE 99999999999999999999999999\r\n", &sm),
        SMTP_EXT_SIZE);
    assert_int_equal(sm, 0);
    assert_int_equal(parse_ext("250-mx\r\n250-PIPELININGX\r\n250-SIZEX 5\r\n"
                               "250 XSTARTTLS\r\n",
                               &sm),
                     0);
    /* Extra spaces before the number. */
    assert_int_equal(parse_ext("250-mx\r\n250 SIZE   1000\r\n", &sm),
                     SMTP_EXT_SIZE);
    assert_int_equal(sm, 1000);
}

/* ------------------------------------------------------------------ */
/* Dot-stuffing                                                        */
/* ------------------------------------------------------------------ */

struct stuff_case {
    const char *in;
    const char *want; /* with the end of data */
};

static const struct stuff_case stuff_cases[] = {
    {"", ".\r\n"},
    {"a\r\n", "a\r\n.\r\n"},
    {"a", "a\r\n.\r\n"},
    {".\r\n", "..\r\n.\r\n"},
    {".a\r\n..b\r\nc.\r\n", "..a\r\n...b\r\nc.\r\n.\r\n"},
    {"a\r\n.\r\nb\r\n", "a\r\n..\r\nb\r\n.\r\n"},
    {"a\n.\nb", "a\r\n..\r\nb\r\n.\r\n"},
    {"a\r.\rb\r", "a\r\n..\r\nb\r\n.\r\n"},
    {"a\r\r\n.", "a\r\n\r\n..\r\n.\r\n"},
    {"a\n\r.b", "a\r\n\r\n..b\r\n.\r\n"},
    {"\r\n\r\n", "\r\n\r\n.\r\n"},
    {"x\r\n.\n.\r\n", "x\r\n..\r\n..\r\n.\r\n"},
    {"...", "....\r\n.\r\n"},
};

static size_t stuff_split(const char *in, size_t len, const size_t *cuts,
                          size_t n_cuts, char *out)
{
    struct smtp_stuffer s;
    smtp_stuff_init(&s);
    size_t o = 0, prev = 0;
    for (size_t i = 0; i <= n_cuts; i++) {
        size_t end = i < n_cuts ? cuts[i] : len;
        o += smtp_stuff(&s, in + prev, end - prev, out + o);
        prev = end;
    }
    o += smtp_stuff_end(&s, out + o);
    out[o] = '\0';
    return o;
}

static void test_dot_stuffing(void **state)
{
    (void)state;
    char out[256];
    for (size_t i = 0; i < sizeof stuff_cases / sizeof stuff_cases[0]; i++) {
        const char *in = stuff_cases[i].in;
        size_t len = strlen(in);
        stuff_split(in, len, NULL, 0, out);
        if (strcmp(out, stuff_cases[i].want) != 0)
            fail_msg("case %zu: got \"%s\"", i, out);
        for (size_t k = 0; k <= len; k++) {
            size_t cut[1] = {k};
            stuff_split(in, len, cut, 1, out);
            if (strcmp(out, stuff_cases[i].want) != 0)
                fail_msg("case %zu split at %zu: got \"%s\"", i, k, out);
        }
        size_t cuts[64];
        for (size_t k = 0; k < len; k++)
            cuts[k] = k + 1;
        stuff_split(in, len, cuts, len ? len - 1 : 0, out);
        assert_string_equal(out, stuff_cases[i].want);
    }
}

/* The wire form never has a bare CR or LF and never ends data early. */
static void test_dot_stuffing_random(void **state)
{
    (void)state;
    static const char alphabet[] = {'\r', '\n', '.', 'a'};
    unsigned seed = 12345;
    char in[64], out[2 * 64 + 5 + 1];
    for (int round = 0; round < 20000; round++) {
        size_t len = (size_t)(seed % 40);
        for (size_t i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            in[i] = alphabet[(seed >> 16) % 4];
        }
        seed = seed * 1103515245u + 12345u;
        size_t n = stuff_split(in, len, NULL, 0, out);
        assert_true(n <= 2 * len + 5);
        for (size_t i = 0; i < n; i++) {
            if (out[i] == '\r')
                assert_true(i + 1 < n && out[i + 1] == '\n');
            if (out[i] == '\n')
                assert_true(i > 0 && out[i - 1] == '\r');
        }
        /* The only "CRLF.CRLF" (or a leading ".CRLF") is the end. */
        const char *end = strstr(out, "\r\n.\r\n");
        if (n == 3)
            assert_string_equal(out, ".\r\n");
        else
            assert_true(end == out + n - 5 && strncmp(out, ".\r\n", 3) != 0);
    }
}

/* ------------------------------------------------------------------ */
/* A scripted fake server                                              */
/* ------------------------------------------------------------------ */

struct rule {
    const char *prefix; /* of the command line; "." = end of data */
    const char *reply;  /* full reply with CRLFs; "" = say nothing */
    int uses;           /* 0 = always; else this many times */
};

#define CLOSE_NOW "<close>"

struct fake {
    uv_loop_t *loop;
    uv_tcp_t listen;
    uv_tcp_t conn;
    bool has_conn, conn_closed, stopped;
    int port;
    const char *greeting; /* NULL: never greet */
    struct rule *rules;   /* ends with prefix NULL */
    char line[8192];
    size_t line_len;
    bool in_data;
    char log[65536]; /* command lines received, in order */
    size_t log_len;
    char data[65536]; /* message data received, unstuffed */
    size_t data_len;
    unsigned max_cmds_per_read, n_conns;
};

static void fake_closed(uv_handle_t *h)
{
    (void)h;
}

static void fake_write_done(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

static void fake_send(struct fake *f, const char *s)
{
    if (!f->has_conn || f->conn_closed || s[0] == '\0')
        return;
    if (strcmp(s, CLOSE_NOW) == 0) {
        f->conn_closed = true;
        uv_close((uv_handle_t *)&f->conn, fake_closed);
        return;
    }
    size_t n = strlen(s);
    uv_write_t *w = malloc(sizeof *w + n);
    char *buf = (char *)(w + 1);
    memcpy(buf, s, n);
    uv_buf_t b = uv_buf_init(buf, (unsigned)n);
    if (uv_write(w, (uv_stream_t *)&f->conn, &b, 1, fake_write_done) != 0)
        free(w);
}

static const char *fake_answer(struct fake *f, const char *line)
{
    for (struct rule *r = f->rules; r->prefix != NULL; r++) {
        if (r->uses < 0)
            continue;
        if (strncasecmp(line, r->prefix, strlen(r->prefix)) != 0)
            continue;
        if (r->uses > 0 && --r->uses == 0)
            r->uses = -1;
        return r->reply;
    }
    return "500 5.5.2 unknown command\r\n";
}

static void fake_line(struct fake *f, const char *line, size_t n)
{
    if (f->in_data) {
        if (n == 3 && memcmp(line, ".\r\n", 3) == 0) {
            f->in_data = false;
            fake_send(f, fake_answer(f, "."));
            return;
        }
        if (line[0] == '.')
            line++, n--;
        if (f->data_len + n < sizeof f->data) {
            memcpy(f->data + f->data_len, line, n);
            f->data_len += n;
        }
        return;
    }
    if (f->log_len + n < sizeof f->log) {
        memcpy(f->log + f->log_len, line, n);
        f->log_len += n;
        f->log[f->log_len] = '\0';
    }
    char cmd[8192];
    memcpy(cmd, line, n);
    cmd[n] = '\0';
    const char *reply = fake_answer(f, cmd);
    if (strncmp(reply, "354", 3) == 0)
        f->in_data = true;
    fake_send(f, reply);
}

static void fake_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    (void)hint;
    buf->base = malloc(65536);
    buf->len = 65536;
}

static void fake_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct fake *f = s->data;
    if (n < 0) {
        if (!f->conn_closed) {
            f->conn_closed = true;
            uv_close((uv_handle_t *)&f->conn, fake_closed);
        }
        free(buf->base);
        return;
    }
    unsigned cmds = 0;
    for (ssize_t i = 0; i < n && !f->conn_closed; i++) {
        if (f->line_len < sizeof f->line)
            f->line[f->line_len++] = buf->base[i];
        if (buf->base[i] == '\n') {
            if (!f->in_data)
                cmds++;
            fake_line(f, f->line, f->line_len);
            f->line_len = 0;
        }
    }
    if (cmds > f->max_cmds_per_read)
        f->max_cmds_per_read = cmds;
    free(buf->base);
}

static void fake_conn(uv_stream_t *server, int status)
{
    struct fake *f = server->data;
    assert_int_equal(status, 0);
    f->n_conns++;
    assert_false(f->has_conn); /* one connection per test */
    uv_tcp_init(f->loop, &f->conn);
    f->conn.data = f;
    assert_int_equal(uv_accept(server, (uv_stream_t *)&f->conn), 0);
    f->has_conn = true;
    uv_read_start((uv_stream_t *)&f->conn, fake_alloc, fake_read);
    if (f->greeting)
        fake_send(f, f->greeting);
}

static void fake_start(struct fake *f, uv_loop_t *loop)
{
    f->loop = loop;
    uv_tcp_init(loop, &f->listen);
    f->listen.data = f;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&f->listen, (struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&f->listen, 8, fake_conn), 0);
    int len = sizeof a;
    uv_tcp_getsockname(&f->listen, (struct sockaddr *)&a, &len);
    f->port = ntohs(a.sin_port);
}

/* Stops listening; the connection, if any, closes when the client's side
 * does (so that what the client sent last, QUIT, is still read). */
static void fake_stop(struct fake *f)
{
    if (f->stopped)
        return;
    f->stopped = true;
    uv_close((uv_handle_t *)&f->listen, fake_closed);
}

/* ------------------------------------------------------------------ */
/* Driving the client                                                  */
/* ------------------------------------------------------------------ */

struct rec {
    enum smtp_status status;
    enum smtp_stage stage;
    unsigned n_ok;
    bool dead;
    enum smtp_status rs[4];
    int rcode[4];
    char renh[4][16];
    int mail_code, data_code;
    char reason[768];
};

struct tc {
    uv_loop_t loop;
    struct fake f;
    struct smtp_client *c;
    struct smtp_client_opts o;
    const struct smtp_client_msg *msgs;
    int n_msgs, next;
    struct rec recs[8];
    int n_recs;
    int ready, failed, closed;
    char ev_reason[768];
    int ev_code;
    unsigned ext_flags;
    size_t size_max;
    bool esmtp;
    int end; /* after the last message: 0 QUIT, 1 close, 2 idle */
    bool close_in_first_cb;
    bool quit_early;         /* smtp_client_quit() right after the last send */
    bool probe;              /* try bad calls when READY */
    unsigned close_after_ms; /* smtp_client_close() that long after a send */
    uv_timer_t close_timer;
    int send_rc; /* first non-zero smtp_client_send() result */
};

static void tc_next(struct tc *t);

static void close_later(uv_timer_t *timer)
{
    struct tc *t = timer->data;
    smtp_client_close(t->c);
    fake_stop(&t->f);
    uv_close((uv_handle_t *)timer, NULL);
}

static void tc_msg(struct smtp_client *c, const struct smtp_client_result *r,
                   void *ud)
{
    struct tc *t = ud;
    assert_ptr_equal(c, t->c);
    struct rec *e = &t->recs[t->n_recs++];
    e->status = r->status;
    e->stage = r->stage;
    e->n_ok = r->n_ok;
    e->dead = r->conn_dead;
    e->mail_code = r->mail.code;
    e->data_code = r->data.code;
    snprintf(e->reason, sizeof e->reason, "%s", r->reason);
    for (unsigned j = 0; j < r->n_rcpts && j < 4; j++) {
        e->rs[j] = r->rcpts[j].status;
        e->rcode[j] = r->rcpts[j].reply.code;
        snprintf(e->renh[j], sizeof e->renh[j], "%s", r->rcpts[j].reply.enh);
        assert_ptr_equal(r->rcpts[j].rcpt, t->msgs[t->n_recs - 1].rcpts[j]);
    }
    if (t->close_in_first_cb) {
        smtp_client_close(c);
        fake_stop(&t->f);
        return;
    }
    if (!r->conn_dead)
        tc_next(t);
}

static void tc_next(struct tc *t)
{
    if (t->next < t->n_msgs) {
        int rc = smtp_client_send(t->c, &t->msgs[t->next++], tc_msg, t);
        if (rc != 0 && t->send_rc == 0)
            t->send_rc = rc;
        if (rc == 0) {
            assert_false(smtp_client_idle(t->c));
            if (t->close_after_ms) {
                uv_timer_init(&t->loop, &t->close_timer);
                t->close_timer.data = t;
                uv_timer_start(&t->close_timer, close_later, t->close_after_ms,
                               0);
            }
            if (t->quit_early && t->next == t->n_msgs) {
                assert_int_equal(smtp_client_quit(t->c), 0);
                assert_int_equal(smtp_client_quit(t->c), SR_ESHUTDOWN);
                assert_int_equal(smtp_client_send(t->c, &t->msgs[0], tc_msg, t),
                                 SR_ESHUTDOWN);
            }
            return;
        }
    }
    if (t->quit_early)
        return;
    if (t->end == 0)
        assert_int_equal(smtp_client_quit(t->c), 0);
    else if (t->end == 1) {
        smtp_client_close(t->c);
        fake_stop(&t->f);
    }
}

/* Calls that must be refused, on a READY connection. */
static void probe_api(struct tc *t)
{
    static const char *const bad_rcpt[] = {"a>b@x.example"};
    static const char *const crlf_rcpt[] = {"a@x.example\r\nDATA"};
    static const char *const ok_rcpt[] = {"ok@x.example"};
    struct smtp_client_msg m = {.sender = "a@x.example",
                                .rcpts = bad_rcpt,
                                .n_rcpts = 1,
                                .body = "x",
                                .body_len = 1};
    assert_int_equal(smtp_client_send(t->c, &m, tc_msg, t), SR_EINVAL);
    m.rcpts = crlf_rcpt;
    assert_int_equal(smtp_client_send(t->c, &m, tc_msg, t), SR_EINVAL);
    m.rcpts = ok_rcpt;
    m.n_rcpts = 0;
    assert_int_equal(smtp_client_send(t->c, &m, tc_msg, t), SR_EINVAL);
    m.n_rcpts = 1;
    m.sender = "<a@x.example>";
    assert_int_equal(smtp_client_send(t->c, &m, tc_msg, t), SR_EINVAL);
    char longaddr[300];
    memset(longaddr, 'a', sizeof longaddr - 1);
    longaddr[sizeof longaddr - 1] = '\0';
    m.sender = longaddr;
    assert_int_equal(smtp_client_send(t->c, &m, tc_msg, t), SR_EINVAL);
    assert_true(smtp_client_idle(t->c));
}

static void tc_event(struct smtp_client *c, const struct smtp_client_event *ev,
                     void *ud)
{
    struct tc *t = ud;
    assert_ptr_equal(c, t->c);
    snprintf(t->ev_reason, sizeof t->ev_reason, "%s", ev->reason);
    t->ev_code = ev->reply ? ev->reply->code : 0;
    if (ev->type == SMTP_CLIENT_READY) {
        assert_int_equal(t->ready + t->failed + t->closed, 0);
        t->ready++;
        t->ext_flags = ev->ext->flags;
        t->size_max = ev->ext->size_max;
        t->esmtp = ev->esmtp;
        assert_true(smtp_client_idle(c));
        if (t->probe)
            probe_api(t);
        tc_next(t);
        return;
    }
    if (ev->type == SMTP_CLIENT_FAILED) {
        assert_int_equal(t->ready, 0);
        t->failed++;
    } else {
        assert_int_equal(t->ready, 1);
        t->closed++;
    }
    assert_int_equal(t->failed + t->closed, 1);
    fake_stop(&t->f);
}

static void tc_run(struct tc *t, const char *greeting, struct rule *rules,
                   const struct smtp_client_msg *msgs, int n_msgs)
{
    uv_loop_init(&t->loop);
    t->f.greeting = greeting;
    t->f.rules = rules;
    fake_start(&t->f, &t->loop);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", t->f.port);
    t->o.address = addr;
    t->o.ehlo_name = "client.example";
    t->msgs = msgs;
    t->n_msgs = n_msgs;
    char err[SR_ERRMSG_SIZE];
    int rc = smtp_client_connect(&t->loop, &t->o, tc_event, t, &t->c, err,
                                 sizeof err);
    assert_int_equal(rc, 0);
    uv_run(&t->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&t->loop), 0);
}

#define GREETING "220 fake.example ESMTP\r\n"
#define EHLO_PIPE                                                              \
    "250-fake.example\r\n250-PIPELINING\r\n250-8BITMIME\r\n"                   \
    "250-ENHANCEDSTATUSCODES\r\n250 SIZE 100000\r\n"
#define EHLO_PIPE_NOSIZE "250-fake.example\r\n250 PIPELINING\r\n"
#define EHLO_PLAIN "250-fake.example\r\n250 ENHANCEDSTATUSCODES\r\n"

static const char *const rc_two[] = {"ok@x.example", "no@x.example"};
static const char *const rc_one[] = {"ok@x.example"};
static const char body_dots[] = "Subject: t\r\n\r\n.leading dot\r\nplain\r\n";

static void test_client_pipelined_two_messages(void **state)
{
    (void)state;
    struct rule rules[] = {{"EHLO", EHLO_PIPE, 0},
                           {"MAIL FROM:<a@x.example>", "250 2.1.0 ok\r\n", 0},
                           {"RCPT TO:<ok@", "250 2.1.5 ok\r\n", 0},
                           {"RCPT TO:<no@", "550 5.1.1 no such user\r\n", 0},
                           {"DATA", "354 go ahead\r\n", 0},
                           {".", "250 2.0.0 queued as X\r\n", 0},
                           {"QUIT", "221 2.0.0 bye\r\n", 0},
                           {NULL, NULL, 0}};
    struct smtp_client_msg m[2] = {{.sender = "a@x.example",
                                    .rcpts = rc_two,
                                    .n_rcpts = 2,
                                    .body = body_dots,
                                    .body_len = sizeof body_dots - 1},
                                   {.sender = "a@x.example",
                                    .rcpts = rc_one,
                                    .n_rcpts = 1,
                                    .body = "no end",
                                    .body_len = 6}};
    struct tc t = {0};
    tc_run(&t, "220-fake.example ESMTP\r\n220 second line\r\n", rules, m, 2);
    assert_int_equal(t.ready, 1);
    assert_int_equal(t.closed, 1);
    assert_string_equal(t.ev_reason, "quit");
    assert_true(t.esmtp);
    assert_int_equal(t.ext_flags, SMTP_EXT_PIPELINING | SMTP_EXT_8BITMIME |
                                      SMTP_EXT_ENHANCEDSTATUSCODES |
                                      SMTP_EXT_SIZE);
    assert_int_equal(t.size_max, 100000);
    assert_int_equal(t.n_recs, 2);
    assert_int_equal(t.recs[0].status, SMTP_OK);
    assert_int_equal(t.recs[0].n_ok, 1);
    assert_int_equal(t.recs[0].rs[0], SMTP_OK);
    assert_int_equal(t.recs[0].rs[1], SMTP_PERMFAIL);
    assert_int_equal(t.recs[0].rcode[1], 550);
    assert_string_equal(t.recs[0].renh[1], "5.1.1");
    assert_int_equal(t.recs[0].data_code, 250);
    assert_int_equal(t.recs[1].status, SMTP_OK);
    /* MAIL, both RCPTs and DATA came in one read. */
    assert_true(t.f.max_cmds_per_read >= 4);
    assert_string_equal(t.f.log, "EHLO client.example\r\n"
                                 "MAIL FROM:<a@x.example> SIZE=35\r\n"
                                 "RCPT TO:<ok@x.example>\r\n"
                                 "RCPT TO:<no@x.example>\r\n"
                                 "DATA\r\n"
                                 "MAIL FROM:<a@x.example> SIZE=6\r\n"
                                 "RCPT TO:<ok@x.example>\r\n"
                                 "DATA\r\n"
                                 "QUIT\r\n");
    const char want[] = "Subject: t\r\n\r\n.leading dot\r\nplain\r\n"
                        "no end\r\n";
    assert_int_equal(t.f.data_len, sizeof want - 1);
    assert_memory_equal(t.f.data, want, sizeof want - 1);
}

/* MAIL refused while pipelining: the 503s to RCPT do not make the
 * recipients permanent; the next message starts with RSET. */
static void test_client_pipelined_mail_refused(void **state)
{
    (void)state;
    struct rule rules[] = {{"EHLO", EHLO_PIPE, 0},
                           {"MAIL", "451 4.3.0 try later\r\n", 1},
                           {"MAIL", "250 2.1.0 ok\r\n", 0},
                           {"RCPT", "503 5.5.1 need MAIL first\r\n", 2},
                           {"RCPT", "250 2.1.5 ok\r\n", 0},
                           {"DATA", "503 5.5.1 no valid recipients\r\n", 1},
                           {"DATA", "354 go\r\n", 0},
                           {"RSET", "250 2.0.0 ok\r\n", 0},
                           {".", "250 2.0.0 ok\r\n", 0},
                           {"QUIT", "221 bye\r\n", 0},
                           {NULL, NULL, 0}};
    struct smtp_client_msg m = {.sender = "",
                                .rcpts = rc_two,
                                .n_rcpts = 2,
                                .body = "x\r\n",
                                .body_len = 3};
    struct smtp_client_msg ms[2] = {m, m};
    struct tc t = {0};
    tc_run(&t, GREETING, rules, ms, 2);
    assert_int_equal(t.n_recs, 2);
    assert_int_equal(t.recs[0].status, SMTP_TEMPFAIL);
    assert_int_equal(t.recs[0].stage, SMTP_STAGE_MAIL);
    assert_int_equal(t.recs[0].rs[0], SMTP_TEMPFAIL);
    assert_int_equal(t.recs[0].rs[1], SMTP_TEMPFAIL);
    assert_int_equal(t.recs[0].mail_code, 451);
    assert_non_null(strstr(t.recs[0].reason, "451 4.3.0 try later"));
    assert_non_null(strstr(t.recs[0].reason, "MAIL FROM"));
    assert_false(t.recs[0].dead);
    assert_int_equal(t.recs[1].status, SMTP_OK);
    assert_int_equal(t.recs[1].n_ok, 2);
    assert_non_null(strstr(t.f.log, "DATA\r\nRSET\r\nMAIL FROM:<> SIZE=3\r\n"));
}

/* Every RCPT refused and a broken server still says 354: the client ends
 * the empty message with "." and reports the RCPT answers. */
static void test_client_354_without_recipients(void **state)
{
    (void)state;
    struct rule rules[] = {{"EHLO", EHLO_PIPE, 0},
                           {"MAIL", "250 ok\r\n", 0},
                           {"RCPT TO:<ok@", "450 4.2.0 greylisted\r\n", 0},
                           {"RCPT TO:<no@", "550 5.1.1 unknown\r\n", 0},
                           {"DATA", "354 go\r\n", 0},
                           {".", "554 5.5.1 no valid recipients\r\n", 0},
                           {"RSET", "250 ok\r\n", 0},
                           {"QUIT", "221 bye\r\n", 0},
                           {NULL, NULL, 0}};
    struct smtp_client_msg m = {.sender = "a@x.example",
                                .rcpts = rc_two,
                                .n_rcpts = 2,
                                .body = "secret\r\n",
                                .body_len = 8};
    struct tc t = {0};
    tc_run(&t, GREETING, rules, &m, 1);
    assert_int_equal(t.n_recs, 1);
    assert_int_equal(t.recs[0].status, SMTP_TEMPFAIL);
    assert_int_equal(t.recs[0].stage, SMTP_STAGE_RCPT);
    assert_int_equal(t.recs[0].rs[0], SMTP_TEMPFAIL);
    assert_int_equal(t.recs[0].rs[1], SMTP_PERMFAIL);
    /* The body never went out. */
    assert_int_equal(t.f.data_len, 0);
    assert_int_equal(t.closed, 1);
}

/* Without PIPELINING: one command at a time, no DATA when every RCPT
 * failed, RSET before the next message; HELO after EHLO got 502. */
static void test_client_no_pipelining_helo(void **state)
{
    (void)state;
    struct rule rules[] = {{"EHLO", "502 5.5.2 what?\r\n", 0},
                           {"HELO", "250 fake.example\r\n", 0},
                           {"MAIL", "250 ok\r\n", 0},
                           {"RCPT TO:<no@", "550 unknown\r\n", 0},
                           {"RCPT", "250 ok\r\n", 0},
                           {"RSET", "250 ok\r\n", 0},
                           {"DATA", "354 go\r\n", 0},
                           {".", "451 4.3.0 disk full\r\n", 0},
                           {"QUIT", "221 bye\r\n", 0},
                           {NULL, NULL, 0}};
    static const char *const only_no[] = {"no@x.example"};
    struct smtp_client_msg ms[2] = {
        {.sender = "a@x.example",
         .rcpts = only_no,
         .n_rcpts = 1,
         .body = "x\r\n",
         .body_len = 3},
        {.sender = "a@x.example",
         .rcpts = rc_one,
         .n_rcpts = 1,
         .body = "x\xc3\xa9\r\n", /* 8-bit, but 8BITMIME not offered */
         .body_len = 5}};
    struct tc t = {0};
    tc_run(&t, GREETING, rules, ms, 2);
    assert_false(t.esmtp);
    assert_int_equal(t.ext_flags, 0);
    assert_int_equal(t.f.max_cmds_per_read, 1);
    assert_int_equal(t.n_recs, 2);
    assert_int_equal(t.recs[0].status, SMTP_PERMFAIL);
    assert_int_equal(t.recs[0].stage, SMTP_STAGE_RCPT);
    assert_int_equal(t.recs[1].status, SMTP_TEMPFAIL);
    assert_int_equal(t.recs[1].stage, SMTP_STAGE_DOT);
    assert_int_equal(t.recs[1].rs[0], SMTP_TEMPFAIL);
    assert_int_equal(t.recs[1].data_code, 451);
    assert_string_equal(t.f.log, "EHLO client.example\r\n"
                                 "HELO client.example\r\n"
                                 "MAIL FROM:<a@x.example>\r\n"
                                 "RCPT TO:<no@x.example>\r\n"
                                 "RSET\r\n"
                                 "MAIL FROM:<a@x.example>\r\n"
                                 "RCPT TO:<ok@x.example>\r\n"
                                 "DATA\r\n"
                                 "QUIT\r\n");
}

/* SIZE too small and SMTPUTF8 missing: refused locally, nothing sent;
 * 8-bit body with 8BITMIME and SMTPUTF8 offered: the parameters go out. */
static void test_client_local_refusals_and_params(void **state)
{
    (void)state;
    struct rule rules[] = {
        {"EHLO",
         "250-fake\r\n250-SIZE 50\r\n250-8BITMIME\r\n250 PIPELINING\r\n", 0},
        {"MAIL", "250 ok\r\n", 0},
        {"RCPT", "250 ok\r\n", 0},
        {"DATA", "354 go\r\n", 0},
        {".", "250 ok\r\n", 0},
        {"QUIT", "221 bye\r\n", 0},
        {NULL, NULL, 0}};
    static const char *const utf8_rcpt[] = {"j\xc3\xb6rg@x.example"};
    struct smtp_client_msg ms[4] = {{.sender = "a@x.example",
                                     .rcpts = rc_one,
                                     .n_rcpts = 1,
                                     .body = "x",
                                     .body_len = 1,
                                     .size = 51},
                                    {.sender = "a@x.example",
                                     .rcpts = utf8_rcpt,
                                     .n_rcpts = 1,
                                     .body = "x",
                                     .body_len = 1},
                                    {.sender = "a@x.example",
                                     .rcpts = rc_one,
                                     .n_rcpts = 1,
                                     .body = "x",
                                     .body_len = 1,
                                     .smtputf8 = true},
                                    {.sender = "a@x.example",
                                     .rcpts = rc_one,
                                     .n_rcpts = 1,
                                     .body = "\xff\r\n",
                                     .body_len = 3}};
    struct tc t = {0};
    tc_run(&t, GREETING, rules, ms, 4);
    assert_int_equal(t.n_recs, 4);
    assert_int_equal(t.recs[0].status, SMTP_PERMFAIL);
    assert_int_equal(t.recs[0].stage, SMTP_STAGE_LOCAL);
    assert_string_equal(t.recs[0].renh[0], "5.3.4");
    assert_non_null(strstr(t.recs[0].reason, "exceeds the size limit 50"));
    assert_int_equal(t.recs[1].status, SMTP_PERMFAIL);
    assert_string_equal(t.recs[1].renh[0], "5.6.7");
    assert_int_equal(t.recs[2].status, SMTP_PERMFAIL);
    assert_int_equal(t.recs[3].status, SMTP_OK);
    assert_string_equal(t.f.log, "EHLO client.example\r\n"
                                 "MAIL FROM:<a@x.example> SIZE=3 "
                                 "BODY=8BITMIME\r\n"
                                 "RCPT TO:<ok@x.example>\r\n"
                                 "DATA\r\n"
                                 "QUIT\r\n");
}

static void test_client_smtputf8_offered(void **state)
{
    (void)state;
    struct rule rules[] = {
        {"EHLO", "250-fake\r\n250-SMTPUTF8\r\n250 8BITMIME\r\n", 0},
        {"MAIL", "250 ok\r\n", 0},
        {"RCPT", "250 ok\r\n", 0},
        {"DATA", "354 go\r\n", 0},
        {".", "250 ok\r\n", 0},
        {"QUIT", "221 bye\r\n", 0},
        {NULL, NULL, 0}};
    static const char *const utf8_rcpt[] = {"j\xc3\xb6rg@x.example"};
    struct smtp_client_msg m = {.sender = "",
                                .rcpts = utf8_rcpt,
                                .n_rcpts = 1,
                                .body = "x\r\n",
                                .body_len = 3};
    struct tc t = {0};
    tc_run(&t, GREETING, rules, &m, 1);
    assert_int_equal(t.recs[0].status, SMTP_OK);
    assert_non_null(strstr(t.f.log, "MAIL FROM:<> SMTPUTF8\r\n"));
}

/* After the first send, the second one is refused while busy. */
static void test_client_busy_and_quit_pending(void **state)
{
    (void)state;
    struct rule rules[] = {{"EHLO", EHLO_PIPE, 0},
                           {"MAIL", "250 ok\r\n", 0},
                           {"RCPT", "250 ok\r\n", 0},
                           {"DATA", "354 go\r\n", 0},
                           {".", "250 ok\r\n", 0},
                           {"QUIT", "221 bye\r\n", 0},
                           {NULL, NULL, 0}};
    struct smtp_client_msg m = {.sender = "a@x.example",
                                .rcpts = rc_one,
                                .n_rcpts = 1,
                                .body = "x\r\n",
                                .body_len = 3};
    struct tc t = {0};
    t.probe = true;
    t.quit_early = true;
    tc_run(&t, GREETING, rules, &m, 1);
    assert_int_equal(t.n_recs, 1);
    assert_int_equal(t.recs[0].status, SMTP_OK);
    assert_int_equal(t.closed, 1);
    assert_string_equal(t.ev_reason, "quit");
    assert_string_equal(t.f.log, "EHLO client.example\r\n"
                                 "MAIL FROM:<a@x.example> SIZE=3\r\n"
                                 "RCPT TO:<ok@x.example>\r\n"
                                 "DATA\r\n"
                                 "QUIT\r\n");
}

/* Connection-level failures: the message in flight fails with a temporary
 * result (RCPT refusals stay), the connection ends with CLOSED. */
struct dead_case {
    const char *name;
    const char *ehlo;
    const char *rcpt_no; /* reply to RCPT TO:<no@...> */
    const char *data;    /* reply to DATA */
    const char *dot;     /* reply to the end of data */
    size_t body_len;     /* of a body of 'a' lines */
    const char *want;    /* in the CLOSED reason and the result's */
    enum smtp_stage want_stage;
    enum smtp_status want_status;
    enum smtp_status want_rcpt0; /* ok@, accepted by RCPT */
    enum smtp_status want_rcpt1; /* no@ */
};

static const struct dead_case dead_cases[] = {
    {"malformed reply", EHLO_PIPE, "25x what\r\n", "354 go\r\n", "250 ok\r\n",
     3, "protocol error: malformed reply line", SMTP_STAGE_CONNECTION,
     SMTP_TEMPFAIL, SMTP_TEMPFAIL, SMTP_TEMPFAIL},
    {"421 to DATA", EHLO_PIPE, "550 5.1.1 unknown\r\n",
     "421 4.3.2 shutting down\r\n", "250 ok\r\n", 3, "421 4.3.2 shutting down",
     SMTP_STAGE_CONNECTION, SMTP_TEMPFAIL, SMTP_TEMPFAIL, SMTP_PERMFAIL},
    {"closed before the end-of-data reply", EHLO_PIPE, "250 ok\r\n",
     "354 go\r\n", CLOSE_NOW, 3, "connection closed by the server",
     SMTP_STAGE_CONNECTION, SMTP_TEMPFAIL, SMTP_TEMPFAIL, SMTP_TEMPFAIL},
    {"silence after RCPT", EHLO_PLAIN, "", "354 go\r\n", "250 ok\r\n", 3,
     "timeout after 200 ms waiting for the RCPT TO reply",
     SMTP_STAGE_CONNECTION, SMTP_TEMPFAIL, SMTP_TEMPFAIL, SMTP_TEMPFAIL},
    {"silence after the end of data", EHLO_PIPE, "250 ok\r\n", "354 go\r\n", "",
     3, "timeout after 200 ms waiting for the end-of-data reply",
     SMTP_STAGE_CONNECTION, SMTP_TEMPFAIL, SMTP_TEMPFAIL, SMTP_TEMPFAIL},
    {"554 in the middle of a long body", EHLO_PIPE_NOSIZE, "250 ok\r\n",
     "354 go\r\n554 5.7.0 go away\r\n", "250 ok\r\n", 300000,
     "554 5.7.0 go away", SMTP_STAGE_DOT, SMTP_PERMFAIL, SMTP_PERMFAIL,
     SMTP_PERMFAIL},
};

static void test_client_connection_failures(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof dead_cases / sizeof dead_cases[0]; i++) {
        const struct dead_case *d = &dead_cases[i];
        struct rule rules[] = {{"EHLO", d->ehlo, 0},
                               {"MAIL", "250 ok\r\n", 0},
                               {"RCPT TO:<ok@", "250 ok\r\n", 0},
                               {"RCPT TO:<no@", d->rcpt_no, 0},
                               {"DATA", d->data, 0},
                               {".", d->dot, 0},
                               {"QUIT", "221 bye\r\n", 0},
                               {NULL, NULL, 0}};
        char *body = malloc(d->body_len + 1);
        for (size_t k = 0; k < d->body_len; k++)
            body[k] = k % 80 == 78 ? '\r' : k % 80 == 79 ? '\n' : 'a';
        struct smtp_client_msg ms[2] = {{.sender = "a@x.example",
                                         .rcpts = rc_two,
                                         .n_rcpts = 2,
                                         .body = body,
                                         .body_len = d->body_len}};
        ms[1] = ms[0];
        struct tc t = {0};
        t.o.timeouts.rcpt = 200;
        t.o.timeouts.data_end = 200;
        tc_run(&t, GREETING, rules, ms, 2);
        free(body);
        if (t.n_recs != 1 || t.closed != 1)
            fail_msg("%s: %d results, %d closed", d->name, t.n_recs, t.closed);
        if (strstr(t.ev_reason, d->want) == NULL ||
            strstr(t.recs[0].reason, d->want) == NULL)
            fail_msg("%s: reason \"%s\" / \"%s\"", d->name, t.ev_reason,
                     t.recs[0].reason);
        assert_true(t.recs[0].dead);
        if (t.recs[0].stage != d->want_stage ||
            t.recs[0].status != d->want_status ||
            t.recs[0].rs[0] != d->want_rcpt0 ||
            t.recs[0].rs[1] != d->want_rcpt1)
            fail_msg("%s: stage %d status %d rcpts %d %d", d->name,
                     t.recs[0].stage, t.recs[0].status, t.recs[0].rs[0],
                     t.recs[0].rs[1]);
    }
}

/* Failures before READY. */
static void test_client_setup_failures(void **state)
{
    (void)state;
    struct smtp_client_msg m = {.sender = "a@x.example",
                                .rcpts = rc_one,
                                .n_rcpts = 1,
                                .body = "x",
                                .body_len = 1};
    { /* a 554 greeting: QUIT, FAILED with the reply */
        struct rule rules[] = {{"QUIT", "221 bye\r\n", 0}, {NULL, NULL, 0}};
        struct tc t = {0};
        tc_run(&t, "554 5.7.1 no service for you\r\n", rules, &m, 1);
        assert_int_equal(t.failed, 1);
        assert_int_equal(t.ev_code, 554);
        assert_non_null(strstr(t.ev_reason, "554 5.7.1 no service for you"));
        assert_string_equal(t.f.log, "QUIT\r\n");
    }
    { /* no greeting at all */
        struct rule rules[] = {{NULL, NULL, 0}};
        struct tc t = {0};
        t.o.timeouts.greeting = 150;
        tc_run(&t, NULL, rules, &m, 1);
        assert_int_equal(t.failed, 1);
        assert_non_null(strstr(t.ev_reason, "timeout after 150 ms waiting "
                                            "for the greeting"));
    }
    { /* TLS required, STARTTLS not offered */
        struct rule rules[] = {{"EHLO", EHLO_PIPE, 0},
                               {"QUIT", "221 bye\r\n", 0},
                               {NULL, NULL, 0}};
        struct tc t = {0};
        t.o.tls_mode = SMTP_TLS_REQUIRED;
        tc_run(&t, GREETING, rules, &m, 1);
        assert_int_equal(t.failed, 1);
        assert_non_null(strstr(t.ev_reason, "does not offer STARTTLS"));
        assert_string_equal(t.f.log, "EHLO client.example\r\nQUIT\r\n");
    }
    { /* TLS required, STARTTLS refused */
        struct rule rules[] = {
            {"EHLO", "250-fake\r\n250 STARTTLS\r\n", 0},
            {"STARTTLS", "454 4.7.0 TLS not available\r\n", 0},
            {"QUIT", "221 bye\r\n", 0},
            {NULL, NULL, 0}};
        struct tc t = {0};
        t.o.tls_mode = SMTP_TLS_REQUIRED;
        tc_run(&t, GREETING, rules, &m, 1);
        assert_int_equal(t.failed, 1);
        assert_int_equal(t.ev_code, 454);
    }
    { /* opportunistic, STARTTLS refused: plaintext */
        struct rule rules[] = {
            {"EHLO", "250-fake\r\n250 STARTTLS\r\n", 0},
            {"STARTTLS", "454 4.7.0 TLS not available\r\n", 0},
            {"MAIL", "250 ok\r\n", 0},
            {"RCPT", "250 ok\r\n", 0},
            {"DATA", "354 go\r\n", 0},
            {".", "250 ok\r\n", 0},
            {"QUIT", "221 bye\r\n", 0},
            {NULL, NULL, 0}};
        struct tc t = {0};
        t.o.tls_mode = SMTP_TLS_OPPORTUNISTIC;
        tc_run(&t, GREETING, rules, &m, 1);
        assert_int_equal(t.ready, 1);
        assert_int_equal(t.recs[0].status, SMTP_OK);
    }
    { /* EHLO 4xx: no HELO, FAILED */
        struct rule rules[] = {{"EHLO", "451 4.3.0 later\r\n", 0},
                               {"QUIT", "221 bye\r\n", 0},
                               {NULL, NULL, 0}};
        struct tc t = {0};
        tc_run(&t, GREETING, rules, &m, 1);
        assert_int_equal(t.failed, 1);
        assert_int_equal(t.ev_code, 451);
    }
}

static void on_refused(struct smtp_client *c,
                       const struct smtp_client_event *ev, void *ud)
{
    (void)c;
    int *seen = ud;
    assert_int_equal(ev->type, SMTP_CLIENT_FAILED);
    assert_non_null(strstr(ev->reason, "connect failed"));
    (*seen)++;
}

static void test_client_connect_refused_and_bad_options(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    /* A port bound but not listening refuses connections. */
    uv_tcp_t hold;
    uv_tcp_init(&loop, &hold);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&hold, (struct sockaddr *)&a, 0), 0);
    int len = sizeof a;
    uv_tcp_getsockname(&hold, (struct sockaddr *)&a, &len);

    struct smtp_client_opts o = {.addr = (struct sockaddr *)&a};
    struct smtp_client *c = NULL;
    char err[SR_ERRMSG_SIZE];
    int seen = 0;
    assert_int_equal(
        smtp_client_connect(&loop, &o, on_refused, &seen, &c, err, sizeof err),
        0);
    uv_close((uv_handle_t *)&hold, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(seen, 1);

    struct smtp_client_opts bad[] = {
        {.address = "127.0.0.1"},
        {.address = "127.0.0.1:0"},
        {.address = "localhost:25"},
        {.address = "[::1]25"},
        {.address = "127.0.0.1:25", .source = "not-an-ip"},
        {.address = "127.0.0.1:25", .ehlo_name = "two words"},
        {.address = "127.0.0.1:25", .ehlo_name = ""},
        {.address = "127.0.0.1:25",
         .tls_mode = SMTP_TLS_REQUIRED,
         .tls_verify = true},
        {.address = "127.0.0.1:25",
         .tls_mode = SMTP_TLS_REQUIRED,
         .tls_verify = true,
         .tls_hostname = "mx.example",
         .tls_ca_file = "/nonexistent/ca.pem"},
        {.address = "127.0.0.1:25", .tls_mode = (enum smtp_tls_mode)7},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        c = NULL;
        int rc = smtp_client_connect(&loop, &bad[i], on_refused, &seen, &c, err,
                                     sizeof err);
        if (rc != SR_EINVAL)
            fail_msg("bad option %zu: %d", i, rc);
        assert_null(c);
        assert_true(err[0] != '\0');
    }
    /* A source address that is not ours: bind or connect fails. */
    struct smtp_client_opts nosrc = {.address = "127.0.0.1:9",
                                     .source = "192.0.2.1"};
    int rc = smtp_client_connect(&loop, &nosrc, on_refused, &seen, &c, err,
                                 sizeof err);
    if (rc == 0) {
        uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(seen, 2);
    } else {
        assert_int_equal(rc, SR_EIO);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* The idle timer ends an unused connection with QUIT. */
static void test_client_idle_timeout(void **state)
{
    (void)state;
    struct rule rules[] = {
        {"EHLO", EHLO_PIPE, 0}, {"QUIT", "221 bye\r\n", 0}, {NULL, NULL, 0}};
    struct tc t = {0};
    t.end = 2;
    t.o.timeouts.idle = 100;
    tc_run(&t, GREETING, rules, NULL, 0);
    assert_int_equal(t.closed, 1);
    assert_string_equal(t.ev_reason, "idle timeout");
    assert_string_equal(t.f.log, "EHLO client.example\r\nQUIT\r\n");
}

/* A 421 while idle ends the connection. */
static void test_client_421_while_idle(void **state)
{
    (void)state;
    struct rule rules[] = {{"EHLO", EHLO_PIPE "421 4.4.2 idle too long\r\n", 0},
                           {NULL, NULL, 0}};
    struct tc t = {0};
    t.end = 2;
    tc_run(&t, GREETING, rules, NULL, 0);
    assert_int_equal(t.closed, 1);
    assert_int_equal(t.ev_code, 421);
}

/* smtp_client_close() inside the result callback: no more callbacks, and
 * everything is freed (ASan). */
static void test_client_close_in_callback(void **state)
{
    (void)state;
    struct rule rules[] = {{"EHLO", EHLO_PIPE, 0},    {"MAIL", "250 ok\r\n", 0},
                           {"RCPT", "250 ok\r\n", 0}, {"DATA", "354 go\r\n", 0},
                           {".", "250 ok\r\n", 0},    {NULL, NULL, 0}};
    struct smtp_client_msg m = {.sender = "a@x.example",
                                .rcpts = rc_one,
                                .n_rcpts = 1,
                                .body = "x\r\n",
                                .body_len = 3};
    struct smtp_client_msg ms[2] = {m, m};
    struct tc t = {0};
    t.close_in_first_cb = true;
    tc_run(&t, GREETING, rules, ms, 2);
    assert_int_equal(t.n_recs, 1);
    assert_int_equal(t.closed + t.failed, 0);
}

/* smtp_client_close() with a message in flight: its callback never runs. */
static void test_client_close_in_flight(void **state)
{
    (void)state;
    struct rule rules[] = {
        {"EHLO", EHLO_PIPE, 0}, {"MAIL", "", 0}, {NULL, NULL, 0}};
    struct smtp_client_msg m = {.sender = "a@x.example",
                                .rcpts = rc_one,
                                .n_rcpts = 1,
                                .body = "x\r\n",
                                .body_len = 3};
    struct tc t = {0};
    /* Send, then close from a timer while MAIL waits for its reply. */
    t.close_after_ms = 100;
    t.quit_early = true; /* the quit stays pending: no reply ever comes */
    tc_run(&t, GREETING, rules, &m, 1);
    assert_int_equal(t.n_recs, 0);
    assert_int_equal(t.closed + t.failed, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reply_table),
        cmocka_unit_test(test_reply_limits),
        cmocka_unit_test(test_ehlo_parse),
        cmocka_unit_test(test_dot_stuffing),
        cmocka_unit_test(test_dot_stuffing_random),
        cmocka_unit_test(test_client_pipelined_two_messages),
        cmocka_unit_test(test_client_pipelined_mail_refused),
        cmocka_unit_test(test_client_354_without_recipients),
        cmocka_unit_test(test_client_no_pipelining_helo),
        cmocka_unit_test(test_client_local_refusals_and_params),
        cmocka_unit_test(test_client_smtputf8_offered),
        cmocka_unit_test(test_client_busy_and_quit_pending),
        cmocka_unit_test(test_client_connection_failures),
        cmocka_unit_test(test_client_setup_failures),
        cmocka_unit_test(test_client_connect_refused_and_bad_options),
        cmocka_unit_test(test_client_idle_timeout),
        cmocka_unit_test(test_client_421_while_idle),
        cmocka_unit_test(test_client_close_in_callback),
        cmocka_unit_test(test_client_close_in_flight),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
