/*
 * test_smtp_session.c - table-driven tests of the ESMTP state machine.
 *
 * Each row is a client script (one or more feed() steps), the exact reply
 * transcript and the messages delivered. Every row runs four ways: each step
 * fed whole or byte by byte, with the callbacks answering from inside the
 * callback (allowed by the contract) or after feed() returns. All four must
 * give the same transcript, which is how pipelining and chunking are tested.
 * Rows flagged CHUNKED depend on where a feed() call ends (STARTTLS drops
 * what was buffered in clear), so they only run whole.
 *
 * Transcript markers: "{tls}" when cb.starttls fires, "{close}" for
 * cb.close. The message log has one line per cb.message and cb.auth.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateways/smtp_session.h"
#include "node/errors.h"

/* ---- the harness ---- */

struct buf {
    char *p;
    size_t len, cap;
};

static void buf_add(struct buf *b, const char *p, size_t n)
{
    if (b->cap - b->len < n + 1) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_str(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

enum pending { P_NONE, P_MSG, P_AUTH, P_TLS };

struct harness {
    struct smtp_session *s;
    struct buf out, log;
    bool defer; /* answer after feed() returns, not inside the callback */
    enum pending pending;
    bool auth_ok;
    int code; /* reply to messages */
    const char *text;
};

static void h_write(void *ud, const char *p, size_t n)
{
    buf_add(&((struct harness *)ud)->out, p, n);
}

static void h_close(void *ud)
{
    buf_str(&((struct harness *)ud)->out, "{close}");
}

static void answer(struct harness *h, enum pending p)
{
    if (p == P_MSG)
        smtp_session_reply_message(h->s, h->code, h->text);
    else if (p == P_AUTH)
        smtp_session_reply_auth(h->s, h->auth_ok);
    else if (p == P_TLS)
        smtp_session_tls_started(h->s);
}

static void wait_or_answer(struct harness *h, enum pending p)
{
    assert_int_equal(h->pending, P_NONE);
    assert_true(smtp_session_busy(h->s));
    if (h->defer)
        h->pending = p;
    else
        answer(h, p);
}

static void h_starttls(void *ud)
{
    struct harness *h = ud;
    buf_str(&h->out, "{tls}");
    wait_or_answer(h, P_TLS);
}

static void h_message(void *ud, const struct smtp_envelope *env,
                      const char *body, size_t len)
{
    struct harness *h = ud;
    char line[1024];

    snprintf(line, sizeof(line), "helo=%s from=<%s> to=", env->helo,
             env->mail_from);
    buf_str(&h->log, line);
    for (unsigned i = 0; i < env->n_rcpts; i++) {
        snprintf(line, sizeof(line), "%s<%s>", i ? "," : "", env->rcpts[i]);
        buf_str(&h->log, line);
    }
    snprintf(line, sizeof(line), "%s%s%s%s%s body=[",
             env->body_8bitmime ? " 8bit" : "", env->smtputf8 ? " utf8" : "",
             env->tls ? " tls" : "", env->auth_user ? " auth=" : "",
             env->auth_user ? env->auth_user : "");
    buf_str(&h->log, line);
    buf_add(&h->log, body, len);
    buf_str(&h->log, "]\n");
    wait_or_answer(h, P_MSG);
}

static void h_auth(void *ud, const char *user, const char *pass)
{
    struct harness *h = ud;
    char line[256];

    snprintf(line, sizeof(line), "AUTH %s %s\n", user, pass);
    buf_str(&h->log, line);
    h->auth_ok = strcmp(user, "alice") == 0 && strcmp(pass, "secret") == 0;
    wait_or_answer(h, P_AUTH);
}

/* Row flags. */
#define NOTLS 0x01    /* tls_available = false */
#define NOAUTH 0x02   /* auth_enabled = false */
#define AUTHREQ 0x04  /* auth_required = true */
#define CHUNKED 0x08  /* depends on feed() boundaries: run whole only */
#define REPLY451 0x10 /* messages are answered 451 */

static void h_init(struct harness *h, unsigned flags, size_t max_size,
                   bool defer)
{
    struct smtp_limits lim = {
        .max_message_size = max_size ? max_size : 1000,
        .max_recipients = 3,
        .max_bad_commands = 5,
        .max_line = 512,
        .tls_available = !(flags & NOTLS),
        .auth_enabled = !(flags & NOAUTH),
        .auth_required = (flags & AUTHREQ) != 0,
    };
    struct smtp_callbacks cb = {
        .ud = h,
        .write = h_write,
        .starttls = h_starttls,
        .message = h_message,
        .auth = h_auth,
        .close = h_close,
    };

    memset(h, 0, sizeof(*h));
    h->defer = defer;
    h->code = (flags & REPLY451) ? 451 : 250;
    h->text = (flags & REPLY451) ? "4.3.0 Try again later" : "2.0.0 OK queued";
    buf_str(&h->out, "");
    buf_str(&h->log, "");
    h->s = smtp_session_new("mx.test", &lim, &cb);
    assert_non_null(h->s);
    smtp_session_start(h->s);
}

/* Answers deferred callbacks; an answer may resume processing and raise
 * the next one, hence the loop. */
static void h_resolve(struct harness *h)
{
    while (h->pending != P_NONE) {
        enum pending p = h->pending;
        h->pending = P_NONE;
        answer(h, p);
    }
}

static void h_feed(struct harness *h, const char *p, size_t n)
{
    assert_int_equal(smtp_session_feed(h->s, p, n), 0);
    h_resolve(h);
}

static void h_free(struct harness *h)
{
    smtp_session_free(h->s);
    free(h->out.p);
    free(h->log.p);
}

/* ---- the table ---- */

struct chunk {
    const char *p;
    size_t n;
};
#define S(lit)                                                                 \
    {                                                                          \
        lit, sizeof(lit) - 1                                                   \
    }

struct row {
    const char *name;
    struct chunk in[3]; /* fed one after the other */
    const char *out;
    const char *msgs;
    unsigned flags;
    size_t max_size; /* 0: 1000 */
};

#define G "220 mx.test ESMTP SmartRelay\r\n"
#define EHLO_HEAD                                                              \
    "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n"       \
    "250-SMTPUTF8\r\n"
#define EHLO_CLEAR EHLO_HEAD "250-ENHANCEDSTATUSCODES\r\n250 STARTTLS\r\n"
#define EHLO_NOTLS EHLO_HEAD "250 ENHANCEDSTATUSCODES\r\n"
#define EHLO_TLS EHLO_HEAD "250-ENHANCEDSTATUSCODES\r\n250 AUTH PLAIN LOGIN\r\n"
#define OK_MAIL "250 2.1.0 Sender OK\r\n"
#define OK_RCPT "250 2.1.5 Recipient OK\r\n"
#define GO_DATA "354 End data with <CR><LF>.<CR><LF>\r\n"
#define QUEUED "250 2.0.0 OK queued\r\n"
#define OK "250 2.0.0 OK\r\n"
#define BYE "221 2.0.0 Bye\r\n{close}"
#define NO_HELO "503 5.5.1 Error: send HELO/EHLO first\r\n"
#define NO_MAIL "503 5.5.1 Error: need MAIL command\r\n"
#define UNKNOWN "500 5.5.2 Error: command not recognized\r\n"
#define TLS_GO "220 2.0.0 Ready to start TLS\r\n{tls}"
#define AUTH_OK "235 2.7.0 Authentication successful\r\n"
#define AUTH_BAD "535 5.7.8 Authentication credentials invalid\r\n"
/* A transaction from a@b.test to c@d.test; the body follows. */
#define TX "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n"
#define TX_OUT OK_MAIL OK_RCPT GO_DATA
#define MSG(body) "helo=c from=<a@b.test> to=<c@d.test> body=[" body "]\n"
#define MSG_TLS(extra, body)                                                   \
    "helo=c from=<a@b.test> to=<c@d.test> tls" extra " body=[" body "]\n"
#define STARTTLS_IN "EHLO c\r\nSTARTTLS\r\n"
#define STARTTLS_OUT G EHLO_CLEAR TLS_GO

#define X8 "xxxxxxxx"
#define X64 X8 X8 X8 X8 X8 X8 X8 X8
#define X248 X64 X64 X64 X8 X8 X8 X8 X8 X8 X8
#define X505 X64 X64 X64 X64 X64 X64 X64 X8 X8 X8 X8 X8 X8 X8 "x"

/* The pipelined session of the split test: two messages, stuffing, every
 * smuggling variant, a refused recipient and a syntax error, in one packet. */
#define PIPELINED_IN                                                           \
    "EHLO c\r\n" TX "Subject: one\r\n\r\n..dot\r\na\n.\nb\r.\rc\n.\r\n"        \
    "d\r\n.\ne\r\n.\rf\r\n.\r\n"                                               \
    "RSET\r\nNOOP\r\nBOGUS\r\nMAIL FROM:<>\r\nRCPT TO:<x@y.test>\r\n"          \
    "RCPT TO:<y@y.test>\r\nRCPT TO:<z@y.test>\r\nRCPT TO:<w@y.test>\r\n"       \
    "DATA\r\n..\r\n.\r\nQUIT\r\n"
#define PIPELINED_OUT                                                          \
    G EHLO_CLEAR TX_OUT QUEUED OK OK UNKNOWN OK_MAIL OK_RCPT OK_RCPT OK_RCPT   \
        "452 4.5.3 Too many recipients\r\n" GO_DATA QUEUED BYE
#define PIPELINED_MSGS                                                         \
    MSG("Subject: one\r\n\r\n.dot\r\na\n.\nb\r.\rc\n.\r\nd\r\n\ne\r\n\rf\r\n") \
    "helo=c from=<> to=<x@y.test>,<y@y.test>,<z@y.test> body=[.\r\n]\n"

static const struct row rows[] = {
    {"basic",
     {S("EHLO c\r\n" TX "Subject: hi\r\n\r\nHello\r\n.\r\nQUIT\r\n")},
     G EHLO_CLEAR TX_OUT QUEUED BYE,
     MSG("Subject: hi\r\n\r\nHello\r\n")},
    {"pipelined", {S(PIPELINED_IN)}, PIPELINED_OUT, PIPELINED_MSGS},
    {"helo_null_sender",
     {S("HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<c@d.test>\r\nDATA\r\nx\r\n.\r\n")},
     G "250 mx.test\r\n" TX_OUT QUEUED,
     "helo=c from=<> to=<c@d.test> body=[x\r\n]\n"},
    {"commands_before_ehlo",
     {S("MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\nNOOP\r\n")},
     G NO_HELO NO_MAIL NO_MAIL OK,
     ""},
    {"dot_unstuffing",
     {S("EHLO c\r\n" TX "..lead\r\n.x\r\n...\r\n..\r\nend.\r\n.\r\n")},
     G EHLO_CLEAR TX_OUT QUEUED,
     MSG(".lead\r\nx\r\n..\r\n.\r\nend.\r\n")},
    {"empty_body",
     {S("EHLO c\r\n" TX ".\r\n")},
     G EHLO_CLEAR TX_OUT QUEUED,
     MSG("")},
    /* SMTP smuggling: none of these ends the data; the fake transaction
     * after them stays inside the body. */
    {"smuggle_lf_dot_lf",
     {S("EHLO c\r\n" TX "a\n.\nMAIL FROM:<evil@x.test>\r\n.\r\n")},
     G EHLO_CLEAR TX_OUT QUEUED,
     MSG("a\n.\nMAIL FROM:<evil@x.test>\r\n")},
    {"smuggle_cr_dot_cr",
     {S("EHLO c\r\n" TX "a\r.\rMAIL FROM:<evil@x.test>\r\n.\r\n")},
     G EHLO_CLEAR TX_OUT QUEUED,
     MSG("a\r.\rMAIL FROM:<evil@x.test>\r\n")},
    {"smuggle_lf_dot_crlf",
     {S("EHLO c\r\n" TX "a\n.\r\nMAIL FROM:<evil@x.test>\r\n.\r\n")},
     G EHLO_CLEAR TX_OUT QUEUED,
     MSG("a\n.\r\nMAIL FROM:<evil@x.test>\r\n")},
    {"smuggle_crlf_dot_lf",
     {S("EHLO c\r\n" TX "a\r\n.\nMAIL FROM:<evil@x.test>\r\n.\r\n")},
     G EHLO_CLEAR TX_OUT QUEUED,
     MSG("a\r\n\nMAIL FROM:<evil@x.test>\r\n")},
    {"smuggle_crlf_dot_cr",
     {S("EHLO c\r\n" TX "a\r\n.\rMAIL FROM:<evil@x.test>\r\n.\r\n")},
     G EHLO_CLEAR TX_OUT QUEUED,
     MSG("a\r\n\rMAIL FROM:<evil@x.test>\r\n")},
    {"smuggle_cr_dot_crlf",
     {S("EHLO c\r\n" TX "a\r.\r\nb\r\n.\r\n")},
     G EHLO_CLEAR TX_OUT QUEUED,
     MSG("a\r.\r\nb\r\n")},
    {"oversize_then_ok",
     {S("HELO c\r\n" TX "0123456789012345678\r\n.\r\n" TX
        "012345678901234567\r\n.\r\n")},
     G "250 mx.test\r\n" TX_OUT "552 5.3.4 Message too big\r\n" TX_OUT QUEUED,
     MSG("012345678901234567\r\n"),
     0,
     20},
    {"size_parameter",
     {S("EHLO c\r\nMAIL FROM:<a@b.test> SIZE=1001\r\n"
        "MAIL FROM:<a@b.test> SIZE=1000\r\nMAIL FROM:<a@b.test> SIZE=1x\r\n")},
     G EHLO_CLEAR "552 5.3.4 Message size exceeds fixed limit\r\n" OK_MAIL
                  "503 5.5.1 Error: nested MAIL command\r\n",
     ""},
    {"too_many_recipients",
     {S("EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<r1@d.test>\r\n"
        "RCPT TO:<r2@d.test>\r\nRCPT TO:<r3@d.test>\r\nRCPT TO:<r4@d.test>\r\n"
        "DATA\r\nx\r\n.\r\n")},
     G EHLO_CLEAR OK_MAIL OK_RCPT OK_RCPT OK_RCPT
     "452 4.5.3 Too many recipients\r\n" GO_DATA QUEUED,
     "helo=c from=<a@b.test> to=<r1@d.test>,<r2@d.test>,<r3@d.test> "
     "body=[x\r\n]\n"},
    {"bad_command_limit",
     {S("FOO\r\nBAR\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<a@b.test>\r\n"
        "DATA\r\nNOOP\r\n")},
     G UNKNOWN UNKNOWN NO_HELO NO_MAIL NO_MAIL
     "421 4.7.0 Too many errors\r\n{close}",
     ""},
    {"starttls_drops_injected_commands",
     {S(STARTTLS_IN "MAIL FROM:<evil@x.test>\r\nRCPT TO:<e@x.test>\r\n"),
      S("MAIL FROM:<a@b.test>\r\nEHLO c\r\n" TX "x\r\n.\r\n")},
     STARTTLS_OUT NO_HELO EHLO_TLS TX_OUT QUEUED,
     MSG_TLS("", "x\r\n"),
     CHUNKED},
    {"starttls_errors",
     {S("STARTTLS now\r\n" STARTTLS_IN), S("STARTTLS\r\n")},
     G "501 5.5.4 Syntax: STARTTLS\r\n" EHLO_CLEAR TLS_GO
       "503 5.5.1 Error: TLS already active\r\n",
     ""},
    {"starttls_unavailable",
     {S("EHLO c\r\nSTARTTLS\r\n")},
     G EHLO_NOTLS "454 4.7.0 TLS not available\r\n",
     "",
     NOTLS},
    {"auth_plain_initial",
     {S(STARTTLS_IN),
      S("EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nAUTH PLAIN =\r\n" TX
        "x\r\n.\r\n")},
     STARTTLS_OUT EHLO_TLS AUTH_OK
     "503 5.5.1 Error: already authenticated\r\n" TX_OUT QUEUED,
     "AUTH alice secret\n" MSG_TLS(" auth=alice", "x\r\n")},
    {"auth_plain_challenge",
     {S(STARTTLS_IN), S("EHLO c\r\nAUTH plain\r\n!!!!\r\nAUTH plain\r\n"
                        "YWxpY2UAYWxpY2UAc2VjcmV0\r\n")},
     STARTTLS_OUT EHLO_TLS "334 \r\n501 5.5.2 Cannot decode base64 response\r\n"
                           "334 \r\n" AUTH_OK,
     "AUTH alice secret\n"},
    {"auth_plain_foreign_authzid",
     {S(STARTTLS_IN), S("EHLO c\r\nAUTH PLAIN Ym9iAGFsaWNlAHNlY3JldA==\r\n")},
     STARTTLS_OUT EHLO_TLS AUTH_BAD,
     ""},
    {"auth_login",
     {S(STARTTLS_IN), S("EHLO c\r\nAUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\n")},
     STARTTLS_OUT EHLO_TLS "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n" AUTH_OK,
     "AUTH alice secret\n"},
    {"auth_login_initial_then_bad_then_good",
     {S(STARTTLS_IN), S("EHLO c\r\nAUTH LOGIN YWxpY2U=\r\nd3Jvbmc=\r\n"
                        "AUTH PLAIN AGFsaWNlAHdyb25n\r\n"
                        "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n")},
     STARTTLS_OUT EHLO_TLS "334 UGFzc3dvcmQ6\r\n" AUTH_BAD AUTH_BAD AUTH_OK,
     "AUTH alice wrong\nAUTH alice wrong\nAUTH alice secret\n"},
    {"auth_cancel_and_bad_base64",
     {S(STARTTLS_IN), S("EHLO c\r\nAUTH LOGIN\r\n*\r\nAUTH PLAIN AGFs=aWNl\r\n"
                        "AUTH LOGIN YWxpY2V=\r\nAUTH CRAM-MD5\r\n")},
     STARTTLS_OUT EHLO_TLS "334 VXNlcm5hbWU6\r\n"
                           "501 5.0.0 Authentication cancelled\r\n"
                           "501 5.5.2 Cannot decode base64 response\r\n"
                           "501 5.5.2 Cannot decode base64 response\r\n"
                           "504 5.5.4 Unrecognized authentication type\r\n",
     ""},
    {"auth_needs_tls",
     {S("EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n")},
     G EHLO_CLEAR "538 5.7.11 Encryption required for requested "
                  "authentication mechanism\r\n",
     ""},
    {"auth_disabled",
     {S(STARTTLS_IN), S("EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n")},
     STARTTLS_OUT EHLO_NOTLS "503 5.5.1 Error: authentication not enabled\r\n",
     "",
     NOAUTH},
    {"auth_required",
     {S("EHLO c\r\nMAIL FROM:<a@b.test>\r\n" STARTTLS_IN),
      S("EHLO c\r\nMAIL FROM:<a@b.test>\r\n"
        "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nMAIL FROM:<a@b.test>\r\n")},
     G EHLO_CLEAR
     "530 5.7.0 Authentication required\r\n" EHLO_CLEAR TLS_GO EHLO_TLS
     "530 5.7.0 Authentication required\r\n" AUTH_OK OK_MAIL,
     "AUTH alice secret\n",
     AUTHREQ},
    {"line_too_long",
     {S("NOOP " X505 "x\r\nNOOP " X505 "\r\nNOOP " X64 X505 "\nNOOP\r\n")},
     G "500 5.5.6 Line too long\r\n" OK "500 5.5.6 Line too long\r\n" OK,
     ""},
    {"nul_and_bare_cr_in_command",
     {S("NO\0OP\r\nNO\rOP\r\nNOOP\r\n")},
     G "500 5.5.2 Error: bad characters in command\r\n"
       "500 5.5.2 Error: bad characters in command\r\n" OK,
     ""},
    {"case_insensitive",
     {S("ehlo c\r\nmail from:<a@b.test>\r\nrcpt to:<c@d.test>\r\ndata\r\n"
        "x\r\n.\r\nQuit\r\n")},
     G EHLO_CLEAR TX_OUT QUEUED BYE,
     MSG("x\r\n")},
    {"bare_lf_ends_commands_not_data",
     {S("EHLO c\nMAIL FROM:<a@b.test>\nRCPT TO:<c@d.test>\nDATA\n"
        "x\n.\n.\r\n.\r\n")},
     G EHLO_CLEAR TX_OUT QUEUED,
     MSG("x\n.\n.\r\n")},
    {"misc_commands",
     {S("HELP\r\nVRFY bob\r\nEXPN list\r\nRSET\r\nNOOP hello\r\nVRFY\r\n"
        "RSET x\r\nQUIT now\r\nQUIT\r\nNOOP\r\n")},
     G "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT HELP "
       "VRFY STARTTLS AUTH\r\n"
       "252 2.5.2 Cannot VRFY user\r\n502 5.5.1 EXPN not supported\r\n" OK OK
       "501 5.5.4 Syntax: VRFY address\r\n501 5.5.4 Syntax: RSET\r\n"
       "501 5.5.4 Syntax: QUIT\r\n" BYE,
     ""},
    {"nested_mail_and_ehlo_resets",
     {S("EHLO c\r\nMAIL FROM:<a@b.test>\r\nMAIL FROM:<a@b.test>\r\nEHLO c\r\n"
        "RCPT TO:<c@d.test>\r\nEHLO\r\n")},
     G EHLO_CLEAR OK_MAIL
     "503 5.5.1 Error: nested MAIL command\r\n" EHLO_CLEAR NO_MAIL
     "501 5.5.4 Syntax: EHLO hostname\r\n",
     ""},
    {"data_without_recipients",
     {S("EHLO c\r\nMAIL FROM:<a@b.test>\r\nDATA\r\nRCPT TO:<bad>\r\n"
        "DATA x\r\nDATA\r\nRCPT\r\n")},
     G EHLO_CLEAR OK_MAIL "503 5.5.1 Error: need RCPT command\r\n"
                          "501 5.1.3 Bad recipient address syntax\r\n"
                          "501 5.5.4 Syntax: DATA\r\n"
                          "554 5.5.1 No valid recipients\r\n"
                          "501 5.5.4 Syntax: RCPT TO:<address>\r\n"
                          "421 4.7.0 Too many errors\r\n{close}",
     ""},
    {"mail_syntax",
     {S("EHLO c\r\nMAIL FROM a@b\r\nMAIL FROM:a@b\r\nMAIL FROM:<a@@b>\r\n"
        "MAIL FROM:<a@b.test> FOO=1\r\nMAIL FROM: <a@b.test>\r\n")},
     G EHLO_CLEAR "501 5.5.4 Syntax: MAIL FROM:<address>\r\n"
                  "501 5.5.4 Syntax: MAIL FROM:<address>\r\n"
                  "501 5.1.7 Bad sender address syntax\r\n"
                  "555 5.5.4 Unsupported or bad MAIL parameter\r\n" OK_MAIL,
     ""},
    {"mail_parameters_and_utf8",
     {S("EHLO c\r\nMAIL FROM:<a@b.test> BODY=8BITMIME SMTPUTF8 SIZE=10 "
        "AUTH=<>\r\nRCPT TO:<jos\xc3\xa9@d.test>\r\nDATA\r\nx\r\n.\r\n")},
     G EHLO_CLEAR OK_MAIL OK_RCPT GO_DATA QUEUED,
     "helo=c from=<a@b.test> to=<jos\xc3\xa9@d.test> 8bit utf8 body=[x\r\n]\n"},
    {"utf8_needs_smtputf8",
     {S("EHLO c\r\nMAIL FROM:<jos\xc3\xa9@b.test>\r\nMAIL FROM:<a@b.test>\r\n"
        "RCPT TO:<jos\xc3\xa9@d.test>\r\nRCPT TO:<c@d.test>\r\n"
        "RCPT TO:<\xc3@d.test>\r\n")},
     G EHLO_CLEAR "553 5.6.7 SMTPUTF8 required for this address\r\n" OK_MAIL
                  "553 5.6.7 SMTPUTF8 required for this address\r\n" OK_RCPT
                  "501 5.1.3 Bad recipient address syntax\r\n",
     ""},
    {"source_route_postmaster_quoted",
     {S("EHLO c\r\nMAIL FROM:<a@b.test>\r\n"
        "RCPT TO:<@r1.test,@r2.test:c@d.test>\r\nRCPT TO:<PostMaster>\r\n"
        "RCPT TO:<\"john doe\"@d.test>\r\nDATA\r\nx\r\n.\r\n")},
     G EHLO_CLEAR OK_MAIL OK_RCPT OK_RCPT OK_RCPT GO_DATA QUEUED,
     "helo=c from=<a@b.test> to=<c@d.test>,<PostMaster>,<\"john "
     "doe\"@d.test> body=[x\r\n]\n"},
    {"address_length_limit",
     {S("EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<" X248 "xx@b.test>\r\n"
        "RCPT TO:<" X248 "x@b.test>\r\n")},
     G EHLO_CLEAR OK_MAIL "501 5.1.3 Bad recipient address syntax\r\n" OK_RCPT,
     ""},
    {"auth_malformed_responses",
     {S(STARTTLS_IN), S("EHLO c\r\nAUTH PLAIN YWxpY2U=\r\nAUTH LOGIN\r\n"
                        "YWxpY2U=\r\nAGFs\r\nAUTH a b c\r\nAUTH LOGIN\r\n"
                        "YWxpY2U=\r\n+/+/\r\n")},
     STARTTLS_OUT EHLO_TLS "501 5.5.2 Malformed PLAIN response\r\n"
                           "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n"
                           "501 5.5.2 Cannot decode base64 response\r\n"
                           "501 5.5.4 Syntax: AUTH mechanism "
                           "[initial-response]\r\n"
                           "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n" AUTH_BAD,
     "AUTH alice \xfb\xff\xbf\n"},
    {"helo_errors_trailing_blanks_rcpt_errors",
     {S("HELO\r\nHELO a b\r\nRSET \r\nEHLO c\t\r\n"
        "MAIL FROM:<a@b.test> SIZE=\r\nMAIL FROM:<a@b.test>\r\n"
        "RCPT TO:c@d.test\r\nRCPT TO:<c@d.test> NOTIFY=NEVER\r\nNOOP\r\n")},
     G "501 5.5.4 Syntax: HELO hostname\r\n"
       "501 5.5.4 Syntax: HELO hostname\r\n" OK EHLO_CLEAR
       "501 5.5.4 Bad SIZE parameter\r\n" OK_MAIL
       "501 5.5.4 Syntax: RCPT TO:<address>\r\n"
       "555 5.5.4 Unsupported RCPT parameter\r\n"
       "421 4.7.0 Too many errors\r\n{close}",
     ""},
    {"message_refused_451_resets",
     {S("EHLO c\r\n" TX "x\r\n.\r\nRCPT TO:<c@d.test>\r\n")},
     G EHLO_CLEAR TX_OUT "451 4.3.0 Try again later\r\n" NO_MAIL,
     MSG("x\r\n"),
     REPLY451},
};

/* ---- the tests ---- */

static void run_row(const struct row *r, bool bytewise, bool defer)
{
    struct harness h;

    h_init(&h, r->flags, r->max_size, defer);
    for (size_t i = 0; i < 3 && r->in[i].p != NULL; i++) {
        if (!bytewise) {
            h_feed(&h, r->in[i].p, r->in[i].n);
            continue;
        }
        for (size_t k = 0; k < r->in[i].n; k++)
            h_feed(&h, r->in[i].p + k, 1);
    }
    if (strcmp(h.out.p, r->out) != 0 || strcmp(h.log.p, r->msgs) != 0)
        print_error("row %s (bytewise=%d defer=%d)\n", r->name, bytewise,
                    defer);
    assert_string_equal(h.out.p, r->out);
    assert_string_equal(h.log.p, r->msgs);
    h_free(&h);
}

static void test_row(void **state)
{
    const struct row *r = *state;

    for (int mode = 0; mode < 4; mode++) {
        bool bytewise = mode & 1, defer = mode & 2;
        if (bytewise && (r->flags & CHUNKED))
            continue;
        run_row(r, bytewise, defer);
    }
}

/* The pipelined session split in two at every byte boundary, answered
 * both ways, must give the transcript of the whole feed. */
static void test_split_every_byte(void **state)
{
    static const char in[] = PIPELINED_IN;
    size_t n = sizeof(in) - 1;

    (void)state;
    for (int defer = 0; defer < 2; defer++) {
        for (size_t cut = 0; cut <= n; cut++) {
            struct harness h;
            h_init(&h, 0, 0, defer);
            h_feed(&h, in, cut);
            h_feed(&h, in + cut, n - cut);
            assert_string_equal(h.out.p, PIPELINED_OUT);
            assert_string_equal(h.log.p, PIPELINED_MSGS);
            h_free(&h);
        }
    }
}

/* While a message waits for its answer nothing else is read or written;
 * the answer resumes the pipelined commands behind it. */
static void test_busy_then_resume(void **state)
{
    struct harness h;
    static const char in[] = "EHLO c\r\n" TX "x\r\n.\r\nNOOP\r\nQUIT\r\n";

    (void)state;
    h_init(&h, 0, 0, true);
    assert_int_equal(smtp_session_feed(h.s, in, sizeof(in) - 1), 0);
    assert_true(smtp_session_busy(h.s));
    assert_int_equal(h.pending, P_MSG);
    assert_string_equal(h.out.p, G EHLO_CLEAR TX_OUT);
    assert_string_equal(h.log.p, MSG("x\r\n"));
    /* Replies for something not asked are ignored. */
    smtp_session_reply_auth(h.s, true);
    smtp_session_tls_started(h.s);
    assert_int_equal(smtp_session_feed(h.s, "NOOP\r\n", 6), 0);
    assert_string_equal(h.out.p, G EHLO_CLEAR TX_OUT);
    h.pending = P_NONE;
    smtp_session_reply_message(h.s, 250, "2.0.0 OK queued");
    assert_false(smtp_session_busy(h.s));
    assert_string_equal(h.out.p, G EHLO_CLEAR TX_OUT QUEUED OK BYE);
    /* A second answer is ignored. */
    smtp_session_reply_message(h.s, 250, "2.0.0 again");
    assert_string_equal(h.out.p, G EHLO_CLEAR TX_OUT QUEUED OK BYE);
    h_free(&h);
}

/* Over 64 KiB pipelined while busy: SR_EFULL, and all of it is answered
 * once the session resumes. Past the hard bound the session gives up. */
static void test_backpressure(void **state)
{
    struct harness h;
    static const char tx[] = "EHLO c\r\n" TX "x\r\n.\r\n";
    size_t noops = 12000, big = noops * 6;
    char *burst = malloc(big);

    (void)state;
    assert_non_null(burst);
    for (size_t i = 0; i < noops; i++)
        memcpy(burst + i * 6, "NOOP\r\n", 6);
    h_init(&h, 0, 0, true);
    assert_int_equal(smtp_session_feed(h.s, tx, sizeof(tx) - 1), 0);
    assert_true(smtp_session_busy(h.s));
    assert_int_equal(smtp_session_feed(h.s, burst, big), SR_EFULL);
    h.out.len = 0;
    h.pending = P_NONE;
    smtp_session_reply_message(h.s, 250, "2.0.0 OK queued");
    assert_int_equal(h.out.len, strlen(QUEUED) + noops * strlen(OK));
    h_free(&h);

    h_init(&h, 0, 0, true);
    assert_int_equal(smtp_session_feed(h.s, tx, sizeof(tx) - 1), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(smtp_session_feed(h.s, burst, big), SR_EFULL);
    assert_string_equal(h.out.p, G EHLO_CLEAR TX_OUT
                        "421 4.7.0 Too much pipelined input\r\n{close}");
    h.pending = P_NONE;
    smtp_session_reply_message(h.s, 250, "2.0.0 OK queued");
    assert_int_equal(smtp_session_feed(h.s, "NOOP\r\n", 6), 0);
    assert_string_equal(h.out.p, G EHLO_CLEAR TX_OUT
                        "421 4.7.0 Too much pipelined input\r\n{close}");
    h_free(&h);
    free(burst);
}

/* refuse and shutdown close the session; nothing is written after. */
static void test_refuse_and_shutdown(void **state)
{
    struct harness h;

    (void)state;
    h_init(&h, 0, 0, false);
    smtp_session_refuse(h.s, "Go away\r\ninjected");
    assert_int_equal(smtp_session_feed(h.s, "NOOP\r\n", 6), 0);
    smtp_session_shutdown(h.s, "again");
    assert_string_equal(h.out.p, G "554 5.7.1 Go away  injected\r\n{close}");
    h_free(&h);

    h_init(&h, 0, 0, true);
    h_feed(&h, "EHLO c\r\n", 8);
    smtp_session_shutdown(h.s, "Shutting down");
    smtp_session_start(h.s);
    assert_string_equal(h.out.p,
                        G EHLO_CLEAR "421 4.7.0 Shutting down\r\n{close}");
    h_free(&h);
}

/* A message reply's text cannot add lines; bad codes become 451. */
static void test_reply_sanitised(void **state)
{
    struct harness h;
    static const char in[] = "EHLO c\r\n" TX "x\r\n.\r\n";

    (void)state;
    h_init(&h, 0, 0, true);
    assert_int_equal(smtp_session_feed(h.s, in, sizeof(in) - 1), 0);
    h.pending = P_NONE;
    smtp_session_reply_message(h.s, 250, "2.0.0 OK\r\n250 fake");
    assert_int_equal(smtp_session_feed(h.s, in + 8, sizeof(in) - 9), 0);
    smtp_session_reply_message(h.s, 354, "go");
    assert_string_equal(h.out.p,
                        G EHLO_CLEAR TX_OUT "250 2.0.0 OK  250 fake\r\n" TX_OUT
                                            "451 4.3.0 Internal error\r\n");
    /* An over-long text is cut so that the line stays within 512 octets. */
    char text[600];
    memset(text, 'y', sizeof(text) - 1);
    text[sizeof(text) - 1] = '\0';
    h.pending = P_NONE;
    h.out.len = 0;
    assert_int_equal(smtp_session_feed(h.s, in + 8, sizeof(in) - 9), 0);
    h.out.len = 0;
    smtp_session_reply_message(h.s, 250, text);
    assert_int_equal(h.out.len, 512);
    assert_memory_equal(h.out.p + 508, "yy\r\n", 4);
    h_free(&h);
}

/* RCPT TO argument -> the reply, after a MAIL with or without SMTPUTF8. */
static const struct {
    const char *arg;
    bool smtputf8;
    const char *want;
} addresses[] = {
#define ADDR_OK OK_RCPT
#define ADDR_BAD "501 5.1.3 Bad recipient address syntax\r\n"
#define ADDR_SYNTAX "501 5.5.4 Syntax: RCPT TO:<address>\r\n"
#define ADDR_UTF8 "553 5.6.7 SMTPUTF8 required for this address\r\n"
    {"<a@b.test>", false, ADDR_OK},
    {"<a.b+tag@c-d.test>", false, ADDR_OK},
    {"<x@localhost>", false, ADDR_OK},
    {"<\"q x\"@d.test>", false, ADDR_OK},
    {"<\"q\\\"x>\"@d.test>", false, ADDR_OK},
    {"<u@[127.0.0.1]>", false, ADDR_OK},
    {"<u@[IPv6:::1]>", false, ADDR_OK},
    {"<@r1.test:a@b.test>", false, ADDR_OK},
    {"<a@>", false, ADDR_BAD},
    {"<@b.test>", false, ADDR_BAD},
    {"<a..b@c.test>", false, ADDR_BAD},
    {"<.a@c.test>", false, ADDR_BAD},
    {"<a.@c.test>", false, ADDR_BAD},
    {"<a b@c.test>", false, ADDR_BAD},
    {"<a(b)@c.test>", false, ADDR_BAD},
    {"<\"open@d.test>", false, ADDR_SYNTAX},
    {"<\"bad\x01\"@d.test>", false, ADDR_BAD},
    {"<a@-b.test>", false, ADDR_BAD},
    {"<a@b-.test>", false, ADDR_BAD},
    {"<a@b..test>", false, ADDR_BAD},
    {"<a@b_c.test>", false, ADDR_BAD},
    {"<a@" X64 ".test>", false, ADDR_BAD},
    {"<a@[1.2.3.4>", false, ADDR_BAD},
    {"<a@[]>", false, ADDR_BAD},
    {"<a@[1 2]>", false, ADDR_BAD},
    {"<@r_1.test:a@b.test>", false, ADDR_BAD},
    {"<@r1.test,r2.test:a@b.test>", false, ADDR_BAD},
    {"<@r1.test a@b.test>", false, ADDR_BAD},
    {"<>", false, ADDR_BAD},
    {"<a@b.test>x", false, ADDR_SYNTAX},
    {"<a@b.test", false, ADDR_SYNTAX},
    {"a@b.test", false, ADDR_SYNTAX},
    {"<jos\xc3\xa9@d.test>", false, ADDR_UTF8},
    {"<jos\xc3\xa9@d.test>", true, ADDR_OK},
    {"<\xe2\x82\xac@d.test>", true, ADDR_OK},
    {"<\xf0\x9f\x98\x80@d.test>", true, ADDR_OK},
    {"<a@b\xc3\xa9.test>", true, ADDR_OK},
    {"<\"\xc3\xa9 x\"@d.test>", true, ADDR_OK},
    {"<\xc0\xaf@d.test>", true, ADDR_BAD},         /* overlong */
    {"<\xed\xa0\x80@d.test>", true, ADDR_BAD},     /* surrogate */
    {"<\xf4\x90\x80\x80@d.test>", true, ADDR_BAD}, /* > U+10FFFF */
    {"<\xe2\x82@d.test>", true, ADDR_BAD},         /* truncated */
    {"<\xff@d.test>", true, ADDR_BAD},
    {"<a@b\xc3>", true, ADDR_BAD}, /* truncated at the end */
};

static void test_addresses(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(addresses) / sizeof(addresses[0]); i++) {
        struct harness h;
        char in[512], want[1024];
        snprintf(in, sizeof(in), "EHLO c\r\nMAIL FROM:<>%s\r\nRCPT TO:%s\r\n",
                 addresses[i].smtputf8 ? " SMTPUTF8" : "", addresses[i].arg);
        snprintf(want, sizeof(want), G EHLO_CLEAR OK_MAIL "%s",
                 addresses[i].want);
        h_init(&h, 0, 0, false);
        h_feed(&h, in, strlen(in));
        if (strcmp(h.out.p, want) != 0)
            print_error("address %s\n", addresses[i].arg);
        assert_string_equal(h.out.p, want);
        h_free(&h);
    }
}

/* A body far bigger than the input slices and the first allocation comes
 * through intact, however it is cut. */
static void test_large_body(void **state)
{
    static const char head[] = "EHLO c\r\n" TX;
    size_t lines = 2000, body_len = lines * 40;
    char *in = malloc(sizeof(head) + body_len + 8), *want = malloc(body_len);
    size_t n = sizeof(head) - 1;

    (void)state;
    assert_non_null(in);
    assert_non_null(want);
    memcpy(in, head, n);
    for (size_t i = 0; i < lines; i++) {
        char line[41];
        snprintf(line, sizeof(line), ".%037zu\r\n", i);
        memcpy(in + n, line, 40);
        memcpy(want + i * 39, line + 1, 39);
        n += 40;
    }
    memcpy(in + n, ".\r\n", 3);
    n += 3;
    for (size_t step = 1; step <= 100001; step += 33333) {
        struct harness h;
        h_init(&h, 0, 1000000, step % 2 == 0);
        for (size_t off = 0; off < n; off += step)
            h_feed(&h, in + off, n - off < step ? n - off : step);
        assert_string_equal(h.out.p, G "250-mx.test\r\n250-PIPELINING\r\n"
                                       "250-SIZE 1000000\r\n250-8BITMIME\r\n"
                                       "250-SMTPUTF8\r\n"
                                       "250-ENHANCEDSTATUSCODES\r\n"
                                       "250 STARTTLS\r\n" TX_OUT QUEUED);
        char *body = strstr(h.log.p, "body=[");
        assert_non_null(body);
        assert_int_equal(strlen(body), 6 + lines * 39 + 2);
        assert_memory_equal(body + 6, want, lines * 39);
        h_free(&h);
    }
    free(in);
    free(want);
}

/* Zero limits: no SIZE value, max_line raised to 512, 100 recipients. */
static void test_limit_defaults(void **state)
{
    struct harness h;
    struct smtp_limits lim = {0};
    struct smtp_callbacks cb = {.ud = &h, .write = h_write, .close = h_close};
    char line[64];

    (void)state;
    memset(&h, 0, sizeof(h));
    buf_str(&h.out, "");
    h.s = smtp_session_new("mx.test", &lim, &cb);
    assert_non_null(h.s);
    h_feed(&h, "EHLO c\r\nNOOP " X505 "\r\nMAIL FROM:<>\r\n", 534);
    assert_string_equal(h.out.p, "250-mx.test\r\n250-PIPELINING\r\n250-SIZE\r\n"
                                 "250-8BITMIME\r\n250-SMTPUTF8\r\n"
                                 "250 ENHANCEDSTATUSCODES\r\n" OK OK_MAIL);
    h.out.len = 0;
    for (int i = 0; i < 101; i++) {
        snprintf(line, sizeof(line), "RCPT TO:<r%d@d.test>\r\n", i);
        h_feed(&h, line, strlen(line));
    }
    assert_int_equal(h.out.len,
                     100 * strlen(OK_RCPT) +
                         strlen("452 4.5.3 Too many recipients\r\n"));
    /* No message callback: the message cannot be taken. */
    h.out.len = 0;
    h_feed(&h, "DATA\r\nx\r\n.\r\nSTARTTLS\r\n", 23);
    assert_string_equal(h.out.p, GO_DATA "451 4.3.0 Mail handling unavailable"
                                         "\r\n454 4.7.0 TLS not available\r\n");
    h_free(&h);
}

/* feed() from inside a callback would re-enter the input loop: refused. */
struct reenter {
    struct smtp_session *s;
    int rc;
};

static void reenter_write(void *ud, const char *p, size_t n)
{
    struct reenter *r = ud;
    if (n > 3 && memcmp(p, "250", 3) == 0)
        r->rc = smtp_session_feed(r->s, "NOOP\r\n", 6);
}

static void test_feed_from_callback(void **state)
{
    struct reenter r = {0};
    struct smtp_limits lim = {.max_line = 512};
    struct smtp_callbacks cb = {.ud = &r, .write = reenter_write};

    (void)state;
    r.s = smtp_session_new("mx.test", &lim, &cb);
    assert_non_null(r.s);
    assert_int_equal(smtp_session_feed(r.s, "NOOP\r\n", 6), 0);
    assert_int_equal(r.rc, SR_EINVAL);
    smtp_session_free(r.s);
}

static void test_new_rejects_bad_arguments(void **state)
{
    struct smtp_limits lim = {.max_line = 512};
    struct smtp_callbacks cb = {0};

    (void)state;
    assert_null(smtp_session_new("mx", &lim, &cb)); /* no write callback */
    assert_null(smtp_session_new(NULL, &lim, &cb));
    smtp_session_free(NULL);
}

int main(void)
{
    size_t n_rows = sizeof(rows) / sizeof(rows[0]);
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_split_every_byte),
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_large_body),
        cmocka_unit_test(test_limit_defaults),
        cmocka_unit_test(test_busy_then_resume),
        cmocka_unit_test(test_backpressure),
        cmocka_unit_test(test_refuse_and_shutdown),
        cmocka_unit_test(test_reply_sanitised),
        cmocka_unit_test(test_feed_from_callback),
        cmocka_unit_test(test_new_rejects_bad_arguments),
    };
    size_t n_fixed = sizeof(fixed) / sizeof(fixed[0]);
    struct CMUnitTest *tests = calloc(n_rows + n_fixed, sizeof(*tests));
    int rc;

    if (tests == NULL)
        return 1;
    /* One named cmocka test per table row. */
    for (size_t i = 0; i < n_rows; i++) {
        tests[i].name = rows[i].name;
        tests[i].test_func = test_row;
        tests[i].initial_state = (void *)&rows[i];
    }
    memcpy(tests + n_rows, fixed, sizeof(fixed));
    rc = _cmocka_run_group_tests("smtp_session", tests, n_rows + n_fixed, NULL,
                                 NULL);
    free(tests);
    return rc;
}
