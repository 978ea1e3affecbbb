/* smtp_client.c - the outbound SMTP client (see smtp_client.h). */
#include "gateways/smtp_client.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "node/errors.h"

/* ------------------------------------------------------------------ */
/* Reply parser                                                        */
/* ------------------------------------------------------------------ */

static bool code_char_ok(int i, char ch)
{
    if (i == 0)
        return ch >= '2' && ch <= '5';
    if (i == 1)
        return ch >= '0' && ch <= '5';
    return ch >= '0' && ch <= '9';
}

/* Length of an enhanced status code "c.sss.ddd" of class cls at the start
 * of t[0..n), followed by a space or the end; 0 when there is none. */
static size_t enh_len(const char *t, size_t n, char cls)
{
    if (n < 5 || t[0] != cls || t[1] != '.')
        return 0;
    size_t i = 2, d = 0;
    while (i < n && t[i] >= '0' && t[i] <= '9' && d < 4)
        i++, d++;
    if (d == 0 || d > 3 || i >= n || t[i] != '.')
        return 0;
    i++;
    d = 0;
    while (i < n && t[i] >= '0' && t[i] <= '9' && d < 4)
        i++, d++;
    if (d == 0 || d > 3)
        return 0;
    if (i < n && t[i] != ' ')
        return 0;
    return i;
}

/* Appends t[0..n) to r->text, a space before it when text is not empty,
 * anything not printable ASCII as '?'; once full the text ends "...".
 * *tl is the text length so far, *cut set once cut. */
static void text_put(struct smtp_reply *r, size_t *tl, bool *cut, char ch)
{
    if (*cut)
        return;
    if (*tl == SMTP_REPLY_TEXT_MAX - 1) {
        memcpy(r->text + *tl - 3, "...", 3);
        *cut = true;
        return;
    }
    unsigned char u = (unsigned char)ch;
    r->text[(*tl)++] = u >= 0x20 && u < 0x7f ? ch : '?';
    r->text[*tl] = '\0';
}

static void text_add(struct smtp_reply *r, size_t *tl, bool *cut, const char *t,
                     size_t n)
{
    if (n == 0)
        return;
    if (*tl > 0)
        text_put(r, tl, cut, ' ');
    for (size_t i = 0; i < n && !*cut; i++)
        text_put(r, tl, cut, t[i]);
}

/* The error for a bad line at p (up to its line end, 64 bytes shown). */
static int malformed(const char *p, size_t avail, char *err, size_t errlen)
{
    char show[80];
    const char *nl = memchr(p, '\n', avail);
    size_t n = nl ? (size_t)(nl - p) : avail;
    sr_sanitize(show, sizeof show, p, n < 64 ? n : 64);
    return sr_err(err, errlen, SR_EPARSE, "malformed reply line \"%s\"", show);
}

int smtp_reply_parse(const char *buf, size_t len, struct smtp_reply *r,
                     size_t *used, char *err, size_t errlen)
{
    size_t off = 0, tl = 0;
    bool cut = false;
    unsigned lines = 0;
    char show[80];

    r->code = 0;
    r->enh[0] = '\0';
    r->text[0] = '\0';
    r->lines = 0;
    if (len == 0)
        return 0;
    for (;;) {
        const char *p = buf + off;
        size_t avail = len - off;
        size_t scan = avail < SMTP_REPLY_MAX_LINE ? avail : SMTP_REPLY_MAX_LINE;
        const char *nl = memchr(p, '\n', scan);
        if (nl == NULL) {
            if (avail >= SMTP_REPLY_MAX_LINE)
                return sr_err(err, errlen, SR_EPARSE,
                              "reply line longer than %d bytes",
                              SMTP_REPLY_MAX_LINE);
            /* Reject a bad start early rather than wait for the line. */
            for (size_t i = 0; i < avail && i < 3; i++)
                if (!code_char_ok((int)i, p[i]))
                    return malformed(buf + off, len - off, err, errlen);
            if (avail >= 4 && p[3] != ' ' && p[3] != '-' && p[3] != '\r')
                return malformed(buf + off, len - off, err, errlen);
            if (lines > 0 && avail >= 3 &&
                (p[0] != buf[0] || p[1] != buf[1] || p[2] != buf[2]))
                return malformed(buf + off, len - off, err, errlen);
            return 0;
        }
        if (lines == SMTP_REPLY_MAX_LINES)
            return sr_err(err, errlen, SR_EPARSE, "reply longer than %d lines",
                          SMTP_REPLY_MAX_LINES);
        size_t ll = (size_t)(nl - p);
        if (ll > 0 && p[ll - 1] == '\r')
            ll--;
        if (ll < 3 || !code_char_ok(0, p[0]) || !code_char_ok(1, p[1]) ||
            !code_char_ok(2, p[2]))
            return malformed(buf + off, len - off, err, errlen);
        bool last;
        if (ll == 3 || p[3] == ' ')
            last = true;
        else if (p[3] == '-')
            last = false;
        else
            return malformed(buf + off, len - off, err, errlen);
        int code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
        if (lines > 0 && code != r->code) {
            sr_sanitize(show, sizeof show, p, ll);
            return sr_err(err, errlen, SR_EPARSE,
                          "reply code changes from %d inside a multi-line "
                          "reply: \"%s\"",
                          r->code, show);
        }
        r->code = code;
        const char *t = ll > 4 ? p + 4 : p + ll;
        size_t tn = ll > 4 ? ll - 4 : 0;
        size_t el = enh_len(t, tn, p[0]);
        if (el > 0) {
            if (lines == 0) {
                memcpy(r->enh, t, el);
                r->enh[el] = '\0';
            }
            t += el;
            tn -= el;
            if (tn > 0 && *t == ' ')
                t++, tn--;
        }
        text_add(r, &tl, &cut, t, tn);
        lines++;
        off += (size_t)(nl - p) + 1;
        if (last) {
            r->lines = lines;
            *used = off;
            return 1;
        }
    }
}

/* ------------------------------------------------------------------ */
/* EHLO extensions                                                     */
/* ------------------------------------------------------------------ */

static bool kw_is(const char *k, size_t kl, const char *want)
{
    return kl == strlen(want) && strncasecmp(k, want, kl) == 0;
}

void smtp_ehlo_parse(const char *raw, size_t len, struct smtp_ext *ext)
{
    ext->flags = 0;
    ext->size_max = 0;
    size_t off = 0;
    unsigned line = 0;
    while (off < len) {
        const char *p = raw + off;
        const char *nl = memchr(p, '\n', len - off);
        size_t ll = nl ? (size_t)(nl - p) : len - off;
        off += ll + (nl ? 1 : 0);
        if (ll > 0 && p[ll - 1] == '\r')
            ll--;
        if (line++ == 0 || ll <= 4)
            continue; /* the first line is the server's name */
        const char *k = p + 4;
        size_t rest = ll - 4;
        size_t kl = 0;
        while (kl < rest && k[kl] != ' ')
            kl++;
        if (kw_is(k, kl, "PIPELINING")) {
            ext->flags |= SMTP_EXT_PIPELINING;
        } else if (kw_is(k, kl, "8BITMIME")) {
            ext->flags |= SMTP_EXT_8BITMIME;
        } else if (kw_is(k, kl, "SMTPUTF8")) {
            ext->flags |= SMTP_EXT_SMTPUTF8;
        } else if (kw_is(k, kl, "STARTTLS")) {
            ext->flags |= SMTP_EXT_STARTTLS;
        } else if (kw_is(k, kl, "ENHANCEDSTATUSCODES")) {
            ext->flags |= SMTP_EXT_ENHANCEDSTATUSCODES;
        } else if (kw_is(k, kl, "SIZE")) {
            ext->flags |= SMTP_EXT_SIZE;
            size_t i = kl;
            while (i < rest && k[i] == ' ')
                i++;
            size_t v = 0;
            bool any = false, over = false;
            while (i < rest && k[i] >= '0' && k[i] <= '9') {
                size_t d = (size_t)(k[i] - '0');
                if (v > (SIZE_MAX - d) / 10)
                    over = true;
                else
                    v = v * 10 + d;
                any = true;
                i++;
            }
            /* "SIZE", "SIZE 0" or a limit too big to hold: no limit. */
            ext->size_max = any && !over ? v : 0;
        }
    }
}

/* ------------------------------------------------------------------ */
/* Dot-stuffing                                                        */
/* ------------------------------------------------------------------ */

enum { STUFF_BOL, STUFF_MID, STUFF_CR };

void smtp_stuff_init(struct smtp_stuffer *s)
{
    s->state = STUFF_BOL;
}

size_t smtp_stuff(struct smtp_stuffer *s, const char *in, size_t len, char *out)
{
    size_t o = 0;
    int st = s->state;
    for (size_t i = 0; i < len; i++) {
        char ch = in[i];
        if (ch == '\n') {
            if (st != STUFF_CR) {
                out[o++] = '\r';
                out[o++] = '\n';
            }
            st = STUFF_BOL;
        } else if (ch == '\r') {
            out[o++] = '\r';
            out[o++] = '\n';
            st = STUFF_CR;
        } else {
            if (ch == '.' && st != STUFF_MID)
                out[o++] = '.';
            out[o++] = ch;
            st = STUFF_MID;
        }
    }
    s->state = st;
    return o;
}

size_t smtp_stuff_end(struct smtp_stuffer *s, char *out)
{
    size_t o = 0;
    if (s->state == STUFF_MID) {
        out[o++] = '\r';
        out[o++] = '\n';
    }
    memcpy(out + o, ".\r\n", 3);
    s->state = STUFF_BOL;
    return o + 3;
}

/* ------------------------------------------------------------------ */
/* The client                                                          */
/* ------------------------------------------------------------------ */

#define BODY_BLOCK 65536
#define IN_MAX (SMTP_REPLY_MAX_LINE * SMTP_REPLY_MAX_LINES + 65536)
#define ADDR_MAX 256
#define CMD_MAX (ADDR_MAX + 96)
#define REASON_MAX 768

enum cstate {
    CS_CONNECTING,
    CS_GREETING,
    CS_EHLO,
    CS_HELO,
    CS_STARTTLS,
    CS_HANDSHAKE,
    CS_READY,
    CS_TXN,  /* commands sent, replies awaited (or a local result) */
    CS_BODY, /* writing the body */
    CS_DOT,  /* end of data sent, its reply awaited */
    CS_QUIT,
    CS_DEAD,
};

enum cmd_kind { CMD_RSET, CMD_MAIL, CMD_RCPT, CMD_DATA };

/* One write: the request and the bytes it carries; freed in write_done. */
struct wreq {
    uv_write_t req;
    struct smtp_client *c;
    char data[];
};

/* The message in flight; owned by the client, freed after its callback. */
struct txn {
    const struct smtp_client_msg *m; /* borrowed */
    smtp_client_msg_cb cb;
    void *ud;
    struct smtp_rcpt_result *rr; /* n_rcpts */
    struct smtp_client_result res;
    unsigned char *kinds; /* commands of this transaction, in order */
    unsigned n_cmds, n_sent, n_done, first_rcpt;
    unsigned accepted;
    bool mail_failed;
    bool pipelined;
    bool body_8bit, utf8;
    bool discard; /* a 354 came that nothing can use: "." only */
    bool local;   /* refused locally; reported from the timer */
    size_t size;
    size_t body_off;
    struct smtp_stuffer stuffer;
    char local_enh[16];
    char local_reason[REASON_MAX];
};

struct smtp_client {
    uv_loop_t *loop;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect_req;
    uv_shutdown_t shutdown_req;
    int handles;          /* open libuv handles; freed at 0 */
    bool closing;         /* the connection is over: no protocol work */
    bool handles_closing; /* uv_close() called on both handles */
    bool silent;          /* smtp_client_close(): no callbacks */
    bool connected;
    bool ready; /* READY was reported */
    bool quit_pending;
    bool need_rset;
    bool esmtp;
    bool tls_on; /* handshake done */
    enum cstate st;
    smtp_client_event_cb cb;
    void *ud;
    struct smtp_client_timeouts to;
    enum smtp_tls_mode tls_mode;
    bool tls_verify;
    char *tls_hostname; /* owned */
    SSL_CTX *ssl_ctx;   /* owned */
    SSL *ssl;           /* owned; owns rbio and wbio */
    BIO *rbio, *wbio;
    char ehlo[256];
    char peer[INET6_ADDRSTRLEN + 10];
    struct smtp_ext ext;
    unsigned writes_pending;
    char *in; /* received plaintext not yet parsed; owned */
    size_t in_len, in_cap;
    bool discard_input;
    struct txn *tx; /* message in flight; owned */
    char quit_reason[64];
    char rbuf[16384];
};

static void on_timeout(uv_timer_t *t);
static void process_input(struct smtp_client *c);
static void txn_send_next(struct smtp_client *c);

static unsigned dflt(unsigned v, unsigned d)
{
    return v ? v : d;
}

static void arm(struct smtp_client *c, unsigned ms)
{
    if (!c->handles_closing)
        uv_timer_start(&c->timer, on_timeout, ms, 0);
}

static void client_free(struct smtp_client *c)
{
    SSL_free(c->ssl);
    SSL_CTX_free(c->ssl_ctx);
    free(c->tls_hostname);
    free(c->in);
    if (c->tx) {
        free(c->tx->rr);
        free(c->tx->kinds);
        free(c->tx);
    }
    free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct smtp_client *c = h->data;
    if (--c->handles == 0)
        client_free(c);
}

static void close_handles(struct smtp_client *c)
{
    if (c->handles_closing)
        return;
    c->handles_closing = true;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    close_handles(req->data);
}

/* ---- writing ---- */

static void write_done(uv_write_t *req, int status);

static int raw_write(struct smtp_client *c, const char *buf, size_t len)
{
    if (c->handles_closing)
        return SR_ESHUTDOWN;
    struct wreq *w = malloc(sizeof *w + len);
    if (w == NULL)
        return SR_ENOMEM;
    w->c = c;
    memcpy(w->data, buf, len);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_done) != 0) {
        free(w);
        return SR_EIO;
    }
    c->writes_pending++;
    return 0;
}

/* Puts pending TLS records on the socket. */
static int flush_tls(struct smtp_client *c)
{
    size_t n;
    while (c->wbio != NULL && (n = BIO_ctrl_pending(c->wbio)) > 0) {
        if (c->handles_closing)
            return SR_ESHUTDOWN;
        struct wreq *w = malloc(sizeof *w + n);
        if (w == NULL)
            return SR_ENOMEM;
        int got = BIO_read(c->wbio, w->data, (int)n);
        if (got <= 0) {
            free(w);
            return SR_EIO;
        }
        w->c = c;
        uv_buf_t b = uv_buf_init(w->data, (unsigned)got);
        if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_done) != 0) {
            free(w);
            return SR_EIO;
        }
        c->writes_pending++;
    }
    return 0;
}

static int out_write(struct smtp_client *c, const char *buf, size_t len)
{
    if (c->handles_closing)
        return SR_ESHUTDOWN;
    if (!c->tls_on)
        return raw_write(c, buf, len);
    while (len > 0) {
        int chunk = len > (1u << 30) ? (1 << 30) : (int)len;
        int n = SSL_write(c->ssl, buf, chunk);
        if (n <= 0) {
            ERR_clear_error();
            return SR_EIO;
        }
        buf += n;
        len -= (size_t)n;
    }
    return flush_tls(c);
}

/* ---- ending ---- */

/* Stops all protocol work; graceful lets queued bytes (QUIT, close_notify)
 * go out first, bounded by the QUIT timeout. */
static void close_conn(struct smtp_client *c, bool graceful)
{
    if (c->closing)
        return;
    c->closing = true;
    c->st = CS_DEAD;
    if (c->handles_closing)
        return;
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (graceful && c->connected) {
        if (c->tls_on) {
            SSL_shutdown(c->ssl);
            ERR_clear_error();
            flush_tls(c);
        }
        c->shutdown_req.data = c;
        if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp,
                        on_shutdown) == 0) {
            uv_timer_start(&c->timer, on_timeout, c->to.quit, 0);
            return;
        }
    }
    close_handles(c);
}

static void emit(struct smtp_client *c, enum smtp_client_event_type type,
                 const char *reason, const struct smtp_reply *reply,
                 bool tls_failed)
{
    if (c->silent)
        return;
    struct smtp_client_event ev = {
        .type = type,
        .reason = reason ? reason : "",
        .reply = reply,
        .ext = &c->ext,
        .esmtp = c->esmtp,
        .tls_version = c->tls_on ? SSL_get_version(c->ssl) : NULL,
        .tls_cipher = c->tls_on ? SSL_get_cipher_name(c->ssl) : NULL,
        .tls_failed = tls_failed,
    };
    c->cb(c, &ev, c->ud);
}

static enum smtp_status status_of(int cls)
{
    if (cls == 2)
        return SMTP_OK;
    return cls == 5 ? SMTP_PERMFAIL : SMTP_TEMPFAIL;
}

static int class_of(const struct smtp_reply *r)
{
    return r->code / 100;
}

/*
 * Ends the transaction: recipients refused by RCPT keep that answer (all
 * of them take the MAIL answer when MAIL failed), the others get cls (2
 * delivered, 4 temporary, 5 permanent). Reports the result; afterwards the
 * connection is READY again unless it is dead.
 */
static void txn_done(struct smtp_client *c, int cls, enum smtp_stage stage,
                     const char *reason, const char *enh, bool need_rset)
{
    struct txn *tx = c->tx;
    if (tx == NULL)
        return;
    int mail_cls = tx->mail_failed ? class_of(&tx->res.mail) : 0;
    unsigned n_ok = 0, n_perm = 0;
    for (unsigned j = 0; j < tx->m->n_rcpts; j++) {
        struct smtp_rcpt_result *rr = &tx->rr[j];
        if (mail_cls != 0)
            rr->status = status_of(mail_cls == 5 ? 5 : 4);
        else if (rr->reply.code != 0 && class_of(&rr->reply) != 2)
            rr->status = status_of(class_of(&rr->reply) == 5 ? 5 : 4);
        else
            rr->status = status_of(cls);
        if (rr->reply.code == 0 && cls != 2) {
            /* No answer of its own: say why in its place. */
            snprintf(rr->reply.enh, sizeof rr->reply.enh, "%s",
                     enh ? enh : (cls == 5 ? "5.0.0" : "4.0.0"));
            snprintf(rr->reply.text, sizeof rr->reply.text, "%s",
                     reason ? reason : "");
        }
        if (rr->status == SMTP_OK)
            n_ok++;
        else if (rr->status == SMTP_PERMFAIL)
            n_perm++;
    }
    tx->res.rcpts = tx->rr;
    tx->res.n_rcpts = tx->m->n_rcpts;
    tx->res.n_ok = n_ok;
    tx->res.stage = n_ok > 0 ? SMTP_STAGE_NONE : stage;
    if (n_ok > 0)
        tx->res.status = SMTP_OK;
    else
        tx->res.status =
            n_perm == tx->m->n_rcpts ? SMTP_PERMFAIL : SMTP_TEMPFAIL;
    tx->res.conn_dead = c->closing;
    snprintf(tx->res.reason, sizeof tx->res.reason, "%s",
             n_ok > 0 || reason == NULL ? "" : reason);

    c->tx = NULL;
    if (!c->closing) {
        if (stage != SMTP_STAGE_LOCAL)
            c->need_rset = need_rset;
        c->st = CS_READY;
        arm(c, c->to.idle);
    }
    if (!c->silent)
        tx->cb(c, &tx->res, tx->ud);
    free(tx->rr);
    free(tx->kinds);
    free(tx);
}

/* The connection is over (FAILED before READY, else CLOSED). A message in
 * flight fails first with tx_cls at tx_stage. */
static void conn_end(struct smtp_client *c, bool graceful, const char *reason,
                     const struct smtp_reply *reply, bool tls_failed,
                     int tx_cls, enum smtp_stage tx_stage)
{
    if (c->closing)
        return;
    close_conn(c, graceful);
    if (c->tx)
        txn_done(c, tx_cls, tx_stage, reason,
                 tx_stage == SMTP_STAGE_CONNECTION ? "4.4.2" : NULL, false);
    emit(c, c->ready ? SMTP_CLIENT_CLOSED : SMTP_CLIENT_FAILED, reason, reply,
         tls_failed);
}

static void conn_fail(struct smtp_client *c, const struct smtp_reply *reply,
                      const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void conn_fail(struct smtp_client *c, const struct smtp_reply *reply,
                      const char *fmt, ...)
{
    char reason[REASON_MAX];
    int n = snprintf(reason, sizeof reason, "host %s: ", c->peer);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason + n, sizeof reason - (size_t)n, fmt, ap);
    va_end(ap);
    conn_end(c, false, reason, reply, false, 4, SMTP_STAGE_CONNECTION);
}

static void reply_reason(char *buf, size_t n, const struct smtp_client *c,
                         const struct smtp_reply *r, const char *cmd)
{
    snprintf(buf, n, "host %s said: %d %s%s%s (in reply to %s)", c->peer,
             r->code, r->enh, r->enh[0] ? " " : "", r->text, cmd);
}

/* A refusal before READY: say QUIT, close, report FAILED. */
static void refuse_quit(struct smtp_client *c, const struct smtp_reply *r,
                        const char *reason)
{
    out_write(c, "QUIT\r\n", 6);
    conn_end(c, true, reason, r, false, 4, SMTP_STAGE_CONNECTION);
}

static void refuse_reply(struct smtp_client *c, const struct smtp_reply *r,
                         const char *cmd)
{
    char reason[REASON_MAX];
    reply_reason(reason, sizeof reason, c, r, cmd);
    refuse_quit(c, r, reason);
}

/* ---- connection setup ---- */

static void go_ready(struct smtp_client *c)
{
    c->st = CS_READY;
    c->ready = true;
    arm(c, c->to.idle);
    emit(c, SMTP_CLIENT_READY, "", NULL, false);
}

static void send_ehlo(struct smtp_client *c, bool helo)
{
    char cmd[300];
    int n =
        snprintf(cmd, sizeof cmd, "%s %s\r\n", helo ? "HELO" : "EHLO", c->ehlo);
    c->st = helo ? CS_HELO : CS_EHLO;
    arm(c, c->to.helo);
    if (out_write(c, cmd, (size_t)n) != 0)
        conn_fail(c, NULL, "cannot send %s", helo ? "HELO" : "EHLO");
}

static bool is_ip_literal(const char *s)
{
    unsigned char b[16];
    return inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1;
}

static void tls_failure(struct smtp_client *c)
{
    char why[256] = "";
    unsigned long e = ERR_get_error();
    long v = c->ssl ? SSL_get_verify_result(c->ssl) : X509_V_OK;
    if (c->tls_verify && v != X509_V_OK)
        snprintf(why, sizeof why, "certificate verification failed: %s",
                 X509_verify_cert_error_string(v));
    else if (e != 0)
        ERR_error_string_n(e, why, sizeof why);
    else
        snprintf(why, sizeof why, "handshake aborted");
    ERR_clear_error();
    char reason[REASON_MAX];
    snprintf(reason, sizeof reason, "host %s: TLS handshake failed: %s",
             c->peer, why);
    conn_end(c, false, reason, NULL, true, 4, SMTP_STAGE_CONNECTION);
}

static void handshake_step(struct smtp_client *c)
{
    int rc = SSL_do_handshake(c->ssl);
    if (rc == 1) {
        c->tls_on = true;
        if (flush_tls(c) != 0) {
            conn_fail(c, NULL, "cannot write to the socket");
            return;
        }
        c->ext.flags = 0;
        c->ext.size_max = 0;
        send_ehlo(c, false);
        return;
    }
    int e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        ERR_clear_error();
        if (flush_tls(c) != 0)
            conn_fail(c, NULL, "cannot write to the socket");
        return;
    }
    flush_tls(c); /* an alert, if any */
    tls_failure(c);
}

static void start_tls(struct smtp_client *c)
{
    c->discard_input = true; /* RFC 3207 5: nothing from before TLS */
    c->ssl = SSL_new(c->ssl_ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (c->ssl == NULL || c->rbio == NULL || c->wbio == NULL) {
        BIO_free(c->rbio);
        BIO_free(c->wbio);
        SSL_free(c->ssl);
        c->ssl = NULL;
        c->rbio = c->wbio = NULL;
        conn_fail(c, NULL, "out of memory for TLS");
        return;
    }
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_connect_state(c->ssl);
    if (c->tls_hostname != NULL) {
        bool ip = is_ip_literal(c->tls_hostname);
        if (!ip)
            SSL_set_tlsext_host_name(c->ssl, c->tls_hostname);
        if (c->tls_verify) {
            X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
            if (ip)
                X509_VERIFY_PARAM_set1_ip_asc(vp, c->tls_hostname);
            else
                SSL_set1_host(c->ssl, c->tls_hostname);
        }
    }
    c->st = CS_HANDSHAKE;
    arm(c, c->to.starttls);
    handshake_step(c);
}

/* After a 2xx to EHLO or HELO: STARTTLS or READY. */
static void after_helo(struct smtp_client *c)
{
    if (c->tls_on || c->tls_mode == SMTP_TLS_NONE) {
        go_ready(c);
        return;
    }
    if (c->ext.flags & SMTP_EXT_STARTTLS) {
        c->st = CS_STARTTLS;
        arm(c, c->to.starttls);
        if (out_write(c, "STARTTLS\r\n", 10) != 0)
            conn_fail(c, NULL, "cannot send STARTTLS");
        return;
    }
    if (c->tls_mode == SMTP_TLS_REQUIRED) {
        char reason[REASON_MAX];
        snprintf(reason, sizeof reason,
                 "host %s: TLS is required but the server does not offer "
                 "STARTTLS",
                 c->peer);
        refuse_quit(c, NULL, reason);
        return;
    }
    go_ready(c);
}

/* ---- transactions ---- */

static size_t fmt_cmd(struct smtp_client *c, unsigned i, char *buf)
{
    struct txn *tx = c->tx;
    int n = 0;
    switch ((enum cmd_kind)tx->kinds[i]) {
    case CMD_RSET:
        n = snprintf(buf, CMD_MAX, "RSET\r\n");
        break;
    case CMD_MAIL:
        n = snprintf(buf, CMD_MAX, "MAIL FROM:<%s>", tx->m->sender);
        if (c->ext.flags & SMTP_EXT_SIZE)
            n += snprintf(buf + n, CMD_MAX - (size_t)n, " SIZE=%zu", tx->size);
        if (tx->body_8bit && (c->ext.flags & SMTP_EXT_8BITMIME))
            n += snprintf(buf + n, CMD_MAX - (size_t)n, " BODY=8BITMIME");
        if (tx->utf8)
            n += snprintf(buf + n, CMD_MAX - (size_t)n, " SMTPUTF8");
        n += snprintf(buf + n, CMD_MAX - (size_t)n, "\r\n");
        break;
    case CMD_RCPT:
        n = snprintf(buf, CMD_MAX, "RCPT TO:<%s>\r\n",
                     tx->m->rcpts[i - tx->first_rcpt]);
        break;
    case CMD_DATA:
        n = snprintf(buf, CMD_MAX, "DATA\r\n");
        break;
    }
    return (size_t)n;
}

static unsigned kind_timeout(struct smtp_client *c, unsigned char kind)
{
    switch ((enum cmd_kind)kind) {
    case CMD_RSET:
        return c->to.rset;
    case CMD_MAIL:
        return c->to.mail;
    case CMD_RCPT:
        return c->to.rcpt;
    case CMD_DATA:
        return c->to.data_init;
    }
    return c->to.mail;
}

static const char *kind_name(unsigned char kind)
{
    switch ((enum cmd_kind)kind) {
    case CMD_RSET:
        return "RSET";
    case CMD_MAIL:
        return "MAIL FROM";
    case CMD_RCPT:
        return "RCPT TO";
    case CMD_DATA:
        return "DATA";
    }
    return "?";
}

static void txn_send_next(struct smtp_client *c)
{
    struct txn *tx = c->tx;
    char cmd[CMD_MAX];
    size_t n = fmt_cmd(c, tx->n_sent, cmd);
    arm(c, kind_timeout(c, tx->kinds[tx->n_sent]));
    tx->n_sent++;
    if (out_write(c, cmd, n) != 0)
        conn_fail(c, NULL, "cannot send %s",
                  kind_name(tx->kinds[tx->n_sent - 1]));
}

static void txn_send_pipelined(struct smtp_client *c)
{
    struct txn *tx = c->tx;
    char *buf = malloc((size_t)tx->n_cmds * CMD_MAX);
    if (buf == NULL) {
        conn_fail(c, NULL, "out of memory");
        return;
    }
    size_t len = 0;
    for (unsigned i = 0; i < tx->n_cmds; i++)
        len += fmt_cmd(c, i, buf + len);
    tx->n_sent = tx->n_cmds;
    arm(c, kind_timeout(c, tx->kinds[0]));
    int rc = out_write(c, buf, len);
    free(buf);
    if (rc != 0)
        conn_fail(c, NULL, "cannot send the commands");
}

/* The failure that MAIL or the recipients already decided. */
static void txn_fail_early(struct smtp_client *c)
{
    struct txn *tx = c->tx;
    char reason[REASON_MAX];
    if (tx->mail_failed) {
        reply_reason(reason, sizeof reason, c, &tx->res.mail, "MAIL FROM");
        txn_done(c, class_of(&tx->res.mail) == 5 ? 5 : 4, SMTP_STAGE_MAIL,
                 reason, NULL, true);
        return;
    }
    /* Every recipient refused: report the last refusal. */
    const struct smtp_reply *last = NULL;
    bool all_perm = true;
    for (unsigned j = 0; j < tx->m->n_rcpts; j++) {
        if (tx->rr[j].reply.code == 0)
            continue;
        last = &tx->rr[j].reply;
        if (class_of(last) != 5)
            all_perm = false;
    }
    if (last != NULL)
        reply_reason(reason, sizeof reason, c, last, "RCPT TO");
    else
        snprintf(reason, sizeof reason, "host %s: no recipient accepted",
                 c->peer);
    txn_done(c, all_perm ? 5 : 4, SMTP_STAGE_RCPT, reason, NULL, true);
}

static void body_next(struct smtp_client *c)
{
    struct txn *tx = c->tx;
    const struct smtp_client_msg *m = tx->m;
    size_t left = m->body_len - tx->body_off;
    size_t n = left < BODY_BLOCK ? left : BODY_BLOCK;
    bool last = n == left;
    char *out = malloc(2 * n + 5);
    if (out == NULL) {
        conn_fail(c, NULL, "out of memory");
        return;
    }
    size_t len =
        n > 0 ? smtp_stuff(&tx->stuffer, m->body + tx->body_off, n, out) : 0;
    tx->body_off += n;
    if (last) {
        len += smtp_stuff_end(&tx->stuffer, out + len);
        c->st = CS_DOT;
        arm(c, c->to.data_end);
    } else {
        arm(c, c->to.data_block);
    }
    int rc = out_write(c, out, len);
    free(out);
    if (rc != 0)
        conn_fail(c, NULL, "cannot send the message body");
}

static void txn_reply(struct smtp_client *c, const struct smtp_reply *r)
{
    struct txn *tx = c->tx;
    char reason[REASON_MAX];
    if (tx == NULL || tx->n_done >= tx->n_sent) {
        conn_fail(c, r, "protocol error: unexpected reply %d %s", r->code,
                  r->text);
        return;
    }
    unsigned i = tx->n_done++;
    unsigned char kind = tx->kinds[i];
    int cls = class_of(r);
    switch ((enum cmd_kind)kind) {
    case CMD_RSET:
        if (cls != 2) {
            reply_reason(reason, sizeof reason, c, r, "RSET");
            conn_end(c, false, reason, r, false, 4, SMTP_STAGE_RSET);
            return;
        }
        c->need_rset = false;
        break;
    case CMD_MAIL:
        tx->res.mail = *r;
        if (cls != 2) {
            tx->mail_failed = true;
            if (!tx->pipelined) {
                txn_fail_early(c);
                return;
            }
        }
        break;
    case CMD_RCPT:
        tx->rr[i - tx->first_rcpt].reply = *r;
        if (cls == 2)
            tx->accepted++;
        if (!tx->pipelined && i + 1 == tx->n_cmds - 1 && tx->accepted == 0) {
            txn_fail_early(c); /* DATA is not worth sending */
            return;
        }
        break;
    case CMD_DATA:
        if (cls == 3) {
            if (!tx->mail_failed && tx->accepted > 0) {
                c->st = CS_BODY;
                smtp_stuff_init(&tx->stuffer);
                tx->body_off = 0;
                body_next(c);
            } else {
                /* RFC 2920 3.1: a 354 after every RCPT failed; end the
                 * empty message and drop its reply. */
                tx->discard = true;
                c->st = CS_DOT;
                arm(c, c->to.data_end);
                if (out_write(c, ".\r\n", 3) != 0)
                    conn_fail(c, NULL, "cannot send \".\"");
            }
            return;
        }
        tx->res.data = *r;
        if (tx->mail_failed || tx->accepted == 0) {
            txn_fail_early(c);
            return;
        }
        reply_reason(reason, sizeof reason, c, r, "DATA");
        txn_done(c, cls == 5 ? 5 : 4, SMTP_STAGE_DATA, reason, NULL, true);
        return;
    }
    if (tx->n_done < tx->n_sent)
        arm(c, kind_timeout(c, tx->kinds[tx->n_done]));
    else if (!tx->pipelined)
        txn_send_next(c);
}

static void dot_reply(struct smtp_client *c, const struct smtp_reply *r)
{
    struct txn *tx = c->tx;
    char reason[REASON_MAX];
    if (tx->discard) {
        txn_fail_early(c);
        return;
    }
    tx->res.data = *r;
    int cls = class_of(r);
    if (cls == 2) {
        txn_done(c, 2, SMTP_STAGE_NONE, NULL, NULL, false);
        return;
    }
    reply_reason(reason, sizeof reason, c, r, "end of data");
    txn_done(c, cls == 5 ? 5 : 4, SMTP_STAGE_DOT, reason, NULL, false);
}

static void quit_finish(struct smtp_client *c)
{
    char reason[128];
    snprintf(reason, sizeof reason, "%s", c->quit_reason);
    conn_end(c, true, reason, NULL, false, 4, SMTP_STAGE_CONNECTION);
}

static void start_quit(struct smtp_client *c, const char *why)
{
    snprintf(c->quit_reason, sizeof c->quit_reason, "%s", why);
    c->quit_pending = false;
    c->st = CS_QUIT;
    arm(c, c->to.quit);
    if (out_write(c, "QUIT\r\n", 6) != 0)
        quit_finish(c);
}

static void on_reply(struct smtp_client *c, const struct smtp_reply *r,
                     const char *raw, size_t rawlen)
{
    char reason[REASON_MAX];
    int cls = class_of(r);
    if (r->code == 421 && c->st != CS_QUIT) {
        /* RFC 5321 3.8: the server is closing the channel. */
        reply_reason(reason, sizeof reason, c, r, "the session");
        conn_end(c, false, reason, r, false, 4, SMTP_STAGE_CONNECTION);
        return;
    }
    switch (c->st) {
    case CS_GREETING:
        if (cls != 2)
            refuse_reply(c, r, "the greeting");
        else
            send_ehlo(c, false);
        break;
    case CS_EHLO:
        if (cls == 2) {
            c->esmtp = true;
            smtp_ehlo_parse(raw, rawlen, &c->ext);
            after_helo(c);
        } else if (cls == 5 && !c->tls_on) {
            send_ehlo(c, true); /* an old server: HELO */
        } else {
            refuse_reply(c, r, "EHLO");
        }
        break;
    case CS_HELO:
        if (cls == 2) {
            c->esmtp = false;
            c->ext.flags = 0;
            c->ext.size_max = 0;
            after_helo(c);
        } else {
            refuse_reply(c, r, "HELO");
        }
        break;
    case CS_STARTTLS:
        if (cls == 2)
            start_tls(c);
        else if (c->tls_mode == SMTP_TLS_REQUIRED)
            refuse_reply(c, r, "STARTTLS");
        else
            go_ready(c); /* opportunistic: go on in plaintext */
        break;
    case CS_TXN:
        txn_reply(c, r);
        break;
    case CS_BODY:
        /* A reply before the end of data: the server gave up on it. */
        c->tx->res.data = *r;
        reply_reason(reason, sizeof reason, c, r, "message body");
        conn_end(c, false, reason, r, false, cls == 5 ? 5 : 4, SMTP_STAGE_DOT);
        break;
    case CS_DOT:
        dot_reply(c, r);
        break;
    case CS_QUIT:
        quit_finish(c);
        break;
    case CS_READY:
        conn_fail(c, r, "protocol error: unexpected reply %d %s", r->code,
                  r->text);
        break;
    case CS_CONNECTING:
    case CS_HANDSHAKE:
    case CS_DEAD:
        break;
    }
    if (!c->closing && c->quit_pending && c->st == CS_READY && c->tx == NULL)
        start_quit(c, "quit");
}

/* ---- reading ---- */

static int in_append(struct smtp_client *c, const char *buf, size_t n)
{
    if (c->in_len + n > IN_MAX)
        return SR_EFULL;
    if (c->in_len + n > c->in_cap) {
        size_t cap = c->in_cap ? c->in_cap : 4096;
        while (cap < c->in_len + n)
            cap *= 2;
        char *p = realloc(c->in, cap);
        if (p == NULL)
            return SR_ENOMEM;
        c->in = p;
        c->in_cap = cap;
    }
    memcpy(c->in + c->in_len, buf, n);
    c->in_len += n;
    return 0;
}

static void process_input(struct smtp_client *c)
{
    while (!c->closing && c->in_len > 0 && c->st != CS_HANDSHAKE) {
        struct smtp_reply r;
        size_t used = 0;
        char err[160];
        int rc = smtp_reply_parse(c->in, c->in_len, &r, &used, err, sizeof err);
        if (rc == 0)
            return;
        if (rc < 0) {
            conn_fail(c, NULL, "protocol error: %s", err);
            return;
        }
        c->discard_input = false;
        on_reply(c, &r, c->in, used);
        if (c->closing)
            return;
        if (c->discard_input) {
            c->in_len = 0;
        } else {
            memmove(c->in, c->in + used, c->in_len - used);
            c->in_len -= used;
        }
    }
}

static void eof(struct smtp_client *c, const char *why)
{
    if (c->st == CS_QUIT)
        quit_finish(c);
    else
        conn_fail(c, NULL, "%s", why);
}

static void tls_in(struct smtp_client *c, const char *buf, size_t n)
{
    if (BIO_write(c->rbio, buf, (int)n) != (int)n) {
        conn_fail(c, NULL, "TLS buffer error");
        return;
    }
    if (!c->tls_on) {
        handshake_step(c);
        if (!c->tls_on || c->closing)
            return;
    }
    char plain[16384];
    for (;;) {
        int got = SSL_read(c->ssl, plain, sizeof plain);
        if (got > 0) {
            int rc = in_append(c, plain, (size_t)got);
            if (rc != 0) {
                conn_fail(c, NULL, "protocol error: reply too long");
                return;
            }
            continue;
        }
        int e = SSL_get_error(c->ssl, got);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            ERR_clear_error();
            break;
        }
        if (e == SSL_ERROR_ZERO_RETURN) {
            ERR_clear_error();
            process_input(c);
            if (!c->closing)
                eof(c, "connection closed by the server (TLS close)");
            return;
        }
        char why[200];
        ERR_error_string_n(ERR_get_error(), why, sizeof why);
        ERR_clear_error();
        conn_fail(c, NULL, "TLS error: %s", why);
        return;
    }
    if (flush_tls(c) != 0) {
        conn_fail(c, NULL, "cannot write to the socket");
        return;
    }
    process_input(c);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct smtp_client *c = h->data;
    (void)hint;
    buf->base = c->rbuf;
    buf->len = sizeof c->rbuf;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct smtp_client *c = st->data;
    (void)buf;
    if (c->closing)
        return;
    if (n < 0) {
        char why[128];
        if (n == UV_EOF)
            snprintf(why, sizeof why, "connection closed by the server");
        else
            snprintf(why, sizeof why, "read error: %s", uv_strerror((int)n));
        eof(c, why);
        return;
    }
    if (n == 0)
        return;
    if (c->ssl != NULL) {
        tls_in(c, c->rbuf, (size_t)n);
        return;
    }
    if (in_append(c, c->rbuf, (size_t)n) != 0) {
        conn_fail(c, NULL, "protocol error: reply too long");
        return;
    }
    process_input(c);
}

static void write_done(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct smtp_client *c = w->c;
    free(w);
    c->writes_pending--;
    if (c->closing)
        return;
    if (status < 0) {
        if (c->st == CS_QUIT)
            quit_finish(c);
        else
            conn_fail(c, NULL, "write error: %s", uv_strerror(status));
        return;
    }
    if (c->st == CS_BODY && c->writes_pending == 0)
        body_next(c);
}

static void on_timeout(uv_timer_t *t)
{
    struct smtp_client *c = t->data;
    if (c->closing) {
        close_handles(c); /* a graceful close that took too long */
        return;
    }
    const char *what = "?";
    unsigned ms = 0;
    switch (c->st) {
    case CS_CONNECTING:
        what = "the connection", ms = c->to.connect;
        break;
    case CS_GREETING:
        what = "the greeting", ms = c->to.greeting;
        break;
    case CS_EHLO:
        what = "the EHLO reply", ms = c->to.helo;
        break;
    case CS_HELO:
        what = "the HELO reply", ms = c->to.helo;
        break;
    case CS_STARTTLS:
        what = "the STARTTLS reply", ms = c->to.starttls;
        break;
    case CS_HANDSHAKE:
        what = "the TLS handshake", ms = c->to.starttls;
        break;
    case CS_READY:
        start_quit(c, "idle timeout");
        return;
    case CS_TXN:
        if (c->tx->local) {
            struct txn *tx = c->tx;
            txn_done(c, 5, SMTP_STAGE_LOCAL, tx->local_reason, tx->local_enh,
                     false);
            if (!c->closing && c->quit_pending && c->st == CS_READY &&
                c->tx == NULL)
                start_quit(c, "quit");
            return;
        }
        if (c->tx->n_done < c->tx->n_sent) {
            unsigned char k = c->tx->kinds[c->tx->n_done];
            ms = kind_timeout(c, k);
            switch ((enum cmd_kind)k) {
            case CMD_RSET:
                what = "the RSET reply";
                break;
            case CMD_MAIL:
                what = "the MAIL FROM reply";
                break;
            case CMD_RCPT:
                what = "the RCPT TO reply";
                break;
            case CMD_DATA:
                what = "the DATA reply";
                break;
            }
        }
        break;
    case CS_BODY:
        what = "the message body to be sent", ms = c->to.data_block;
        break;
    case CS_DOT:
        what = "the end-of-data reply", ms = c->to.data_end;
        break;
    case CS_QUIT:
        quit_finish(c);
        return;
    case CS_DEAD:
        return;
    }
    conn_fail(c, NULL, "timeout after %u ms waiting for %s", ms, what);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct smtp_client *c = req->data;
    if (status == UV_ECANCELED || c->closing)
        return;
    if (status < 0) {
        conn_fail(c, NULL, "connect failed: %s", uv_strerror(status));
        return;
    }
    c->connected = true;
    uv_tcp_nodelay(&c->tcp, 1);
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read) != 0) {
        conn_fail(c, NULL, "cannot read from the socket");
        return;
    }
    c->st = CS_GREETING;
    arm(c, c->to.greeting);
}

/* ---- public API ---- */

static int parse_address(const char *s, struct sockaddr_storage *ss)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon;
    size_t hl;
    if (s == NULL)
        return SR_EINVAL;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL || end[1] != ':')
            return SR_EINVAL;
        hl = (size_t)(end - s - 1);
        if (hl >= sizeof host)
            return SR_EINVAL;
        memcpy(host, s + 1, hl);
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return SR_EINVAL;
        hl = (size_t)(colon - s);
        if (hl >= sizeof host)
            return SR_EINVAL;
        memcpy(host, s, hl);
    }
    host[hl] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || port < 1 || port > 65535)
        return SR_EINVAL;
    memset(ss, 0, sizeof *ss);
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    return SR_EINVAL;
}

static int copy_sockaddr(const struct sockaddr *sa, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (sa->sa_family == AF_INET)
        memcpy(ss, sa, sizeof(struct sockaddr_in));
    else if (sa->sa_family == AF_INET6)
        memcpy(ss, sa, sizeof(struct sockaddr_in6));
    else
        return SR_EINVAL;
    return 0;
}

static void sockaddr_name(const struct sockaddr_storage *ss, char *out,
                          size_t n)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        uv_ip6_name(a, ip, sizeof ip);
        snprintf(out, n, "[%s]:%u", ip, ntohs(a->sin6_port));
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        uv_ip4_name(a, ip, sizeof ip);
        snprintf(out, n, "%s:%u", ip, ntohs(a->sin_port));
    }
}

static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 255)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch >= 0x7f)
            return false;
    }
    return true;
}

struct ssl_ctx_st *smtp_client_tls_ctx(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx != NULL) {
        SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    return ctx;
}

static int tls_ctx_setup(struct smtp_client *c,
                         const struct smtp_client_opts *o, char *err,
                         size_t errlen)
{
    if (o->ssl_ctx != NULL) {
        if (SSL_CTX_up_ref(o->ssl_ctx) != 1)
            return sr_err(err, errlen, SR_ENOMEM, "tls: cannot share context");
        c->ssl_ctx = o->ssl_ctx;
        return 0;
    }
    c->ssl_ctx = smtp_client_tls_ctx();
    if (c->ssl_ctx == NULL)
        return sr_err(err, errlen, SR_ENOMEM, "tls: cannot create context");
    if (!o->tls_verify) {
        SSL_CTX_set_verify(c->ssl_ctx, SSL_VERIFY_NONE, NULL);
        return 0;
    }
    if (o->tls_hostname == NULL || o->tls_hostname[0] == '\0')
        return sr_err(err, errlen, SR_EINVAL, "tls_verify needs tls_hostname");
    SSL_CTX_set_verify(c->ssl_ctx, SSL_VERIFY_PEER, NULL);
    int ok =
        o->tls_ca_file != NULL
            ? SSL_CTX_load_verify_locations(c->ssl_ctx, o->tls_ca_file, NULL)
            : SSL_CTX_set_default_verify_paths(c->ssl_ctx);
    if (ok != 1) {
        char e[160];
        ERR_error_string_n(ERR_get_error(), e, sizeof e);
        ERR_clear_error();
        return sr_err(err, errlen, SR_EINVAL, "tls_ca_file %s: %s",
                      o->tls_ca_file ? o->tls_ca_file : "(default)", e);
    }
    return 0;
}

int smtp_client_connect(uv_loop_t *loop, const struct smtp_client_opts *opts,
                        smtp_client_event_cb cb, void *ud,
                        struct smtp_client **out, char *err, size_t errlen)
{
    struct sockaddr_storage dst, src;
    bool has_src = false;
    if (loop == NULL || opts == NULL || cb == NULL || out == NULL)
        return sr_err(err, errlen, SR_EINVAL, "smtp_client: missing argument");
    if (opts->addr != NULL ? copy_sockaddr(opts->addr, &dst) != 0
                           : parse_address(opts->address, &dst) != 0)
        return sr_err(err, errlen, SR_EINVAL,
                      "smtp_client: bad destination address \"%s\"",
                      opts->address ? opts->address : "");
    if (opts->source_addr != NULL) {
        if (copy_sockaddr(opts->source_addr, &src) != 0)
            return sr_err(err, errlen, SR_EINVAL,
                          "smtp_client: bad source address");
        has_src = true;
    } else if (opts->source != NULL && opts->source[0] != '\0') {
        memset(&src, 0, sizeof src);
        if (uv_ip4_addr(opts->source, 0, (struct sockaddr_in *)&src) != 0 &&
            uv_ip6_addr(opts->source, 0, (struct sockaddr_in6 *)&src) != 0)
            return sr_err(err, errlen, SR_EINVAL,
                          "smtp_client: bad source address \"%s\"",
                          opts->source);
        has_src = true;
    }
    const char *ehlo = opts->ehlo_name ? opts->ehlo_name : "localhost";
    if (!name_ok(ehlo))
        return sr_err(err, errlen, SR_EINVAL, "smtp_client: bad EHLO name");
    if (opts->tls_mode != SMTP_TLS_NONE &&
        opts->tls_mode != SMTP_TLS_OPPORTUNISTIC &&
        opts->tls_mode != SMTP_TLS_REQUIRED)
        return sr_err(err, errlen, SR_EINVAL, "smtp_client: bad TLS mode");

    struct smtp_client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return sr_err(err, errlen, SR_ENOMEM, "smtp_client: out of memory");
    c->loop = loop;
    c->cb = cb;
    c->ud = ud;
    snprintf(c->ehlo, sizeof c->ehlo, "%s", ehlo);
    sockaddr_name(&dst, c->peer, sizeof c->peer);
    const struct smtp_client_timeouts *t = &opts->timeouts;
    c->to.connect = dflt(t->connect, 30000);
    c->to.greeting = dflt(t->greeting, 300000);
    c->to.helo = dflt(t->helo, 300000);
    c->to.starttls = dflt(t->starttls, 300000);
    c->to.mail = dflt(t->mail, 300000);
    c->to.rcpt = dflt(t->rcpt, 300000);
    c->to.data_init = dflt(t->data_init, 120000);
    c->to.data_block = dflt(t->data_block, 180000);
    c->to.data_end = dflt(t->data_end, 600000);
    c->to.rset = dflt(t->rset, 20000);
    c->to.quit = dflt(t->quit, 5000);
    c->to.idle = dflt(t->idle, 10000);
    c->tls_mode = opts->tls_mode;
    c->tls_verify = opts->tls_verify;
    if (opts->tls_hostname != NULL) {
        c->tls_hostname = strdup(opts->tls_hostname);
        if (c->tls_hostname == NULL) {
            client_free(c);
            return sr_err(err, errlen, SR_ENOMEM, "smtp_client: no memory");
        }
    }
    if (c->tls_mode != SMTP_TLS_NONE) {
        int rc = tls_ctx_setup(c, opts, err, errlen);
        if (rc != 0) {
            client_free(c);
            return rc;
        }
    }

    uv_tcp_init(loop, &c->tcp);
    uv_timer_init(loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles = 2;
    c->connect_req.data = c;
    c->st = CS_CONNECTING;
    int rc = 0;
    if (has_src) {
        rc = uv_tcp_bind(&c->tcp, (const struct sockaddr *)&src, 0);
        if (rc != 0) {
            sr_err(err, errlen, SR_EIO, "smtp_client: bind: %s",
                   uv_strerror(rc));
            goto fail;
        }
    }
    rc = uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&dst,
                        on_connect);
    if (rc != 0) {
        sr_err(err, errlen, SR_EIO, "smtp_client: connect to %s: %s", c->peer,
               uv_strerror(rc));
        goto fail;
    }
    arm(c, c->to.connect);
    *out = c;
    return 0;
fail:
    c->silent = true;
    c->closing = true;
    close_handles(c);
    return SR_EIO;
}

static bool addr_ok(const char *a, bool *non_ascii)
{
    size_t n = strlen(a);
    if (n > ADDR_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)a[i];
        if (ch < 0x20 || ch == 0x7f || ch == '<' || ch == '>')
            return false;
        if (ch >= 0x80)
            *non_ascii = true;
    }
    return true;
}

int smtp_client_send(struct smtp_client *c, const struct smtp_client_msg *m,
                     smtp_client_msg_cb cb, void *ud)
{
    if (c == NULL || m == NULL || cb == NULL)
        return SR_EINVAL;
    if (c->closing || c->quit_pending || c->st == CS_QUIT)
        return SR_ESHUTDOWN;
    if (c->st != CS_READY || c->tx != NULL)
        return SR_EINVAL;
    if (m->sender == NULL || m->rcpts == NULL || m->n_rcpts == 0 ||
        (m->body == NULL && m->body_len > 0))
        return SR_EINVAL;
    bool non_ascii = false;
    if (!addr_ok(m->sender, &non_ascii))
        return SR_EINVAL;
    for (unsigned j = 0; j < m->n_rcpts; j++)
        if (m->rcpts[j] == NULL || m->rcpts[j][0] == '\0' ||
            !addr_ok(m->rcpts[j], &non_ascii))
            return SR_EINVAL;

    struct txn *tx = calloc(1, sizeof *tx);
    if (tx == NULL)
        return SR_ENOMEM;
    tx->rr = calloc(m->n_rcpts, sizeof *tx->rr);
    tx->kinds = malloc((size_t)m->n_rcpts + 3);
    if (tx->rr == NULL || tx->kinds == NULL) {
        free(tx->rr);
        free(tx->kinds);
        free(tx);
        return SR_ENOMEM;
    }
    tx->m = m;
    tx->cb = cb;
    tx->ud = ud;
    for (unsigned j = 0; j < m->n_rcpts; j++)
        tx->rr[j].rcpt = m->rcpts[j];
    tx->utf8 = m->smtputf8 || non_ascii;
    for (size_t i = 0; i < m->body_len && !tx->body_8bit; i++)
        if ((unsigned char)m->body[i] >= 0x80)
            tx->body_8bit = true;
    tx->size = m->size ? m->size : m->body_len;
    tx->pipelined = (c->ext.flags & SMTP_EXT_PIPELINING) != 0;
    c->tx = tx;
    c->st = CS_TXN;

    if (tx->utf8 && !(c->ext.flags & SMTP_EXT_SMTPUTF8)) {
        tx->local = true;
        snprintf(tx->local_enh, sizeof tx->local_enh, "5.6.7");
        snprintf(tx->local_reason, sizeof tx->local_reason,
                 "host %s does not support SMTPUTF8, which the message "
                 "needs",
                 c->peer);
    } else if ((c->ext.flags & SMTP_EXT_SIZE) && c->ext.size_max > 0 &&
               tx->size > c->ext.size_max) {
        tx->local = true;
        snprintf(tx->local_enh, sizeof tx->local_enh, "5.3.4");
        snprintf(tx->local_reason, sizeof tx->local_reason,
                 "message size %zu exceeds the size limit %zu of host %s",
                 tx->size, c->ext.size_max, c->peer);
    }
    if (tx->local) {
        uv_timer_start(&c->timer, on_timeout, 0, 0);
        return 0;
    }

    unsigned n = 0;
    if (c->need_rset)
        tx->kinds[n++] = CMD_RSET;
    tx->kinds[n++] = CMD_MAIL;
    tx->first_rcpt = n;
    for (unsigned j = 0; j < m->n_rcpts; j++)
        tx->kinds[n++] = CMD_RCPT;
    tx->kinds[n++] = CMD_DATA;
    tx->n_cmds = n;
    if (tx->pipelined)
        txn_send_pipelined(c);
    else
        txn_send_next(c);
    return 0;
}

int smtp_client_quit(struct smtp_client *c)
{
    if (c == NULL)
        return SR_EINVAL;
    if (c->closing || c->quit_pending || c->st == CS_QUIT)
        return SR_ESHUTDOWN;
    if (!c->ready)
        return SR_EINVAL;
    if (c->tx != NULL) {
        c->quit_pending = true;
        return 0;
    }
    start_quit(c, "quit");
    return 0;
}

void smtp_client_close(struct smtp_client *c)
{
    if (c == NULL)
        return;
    c->silent = true;
    close_conn(c, false);
}

bool smtp_client_idle(const struct smtp_client *c)
{
    return c != NULL && !c->closing && c->ready && c->st == CS_READY &&
           c->tx == NULL && !c->quit_pending;
}

const char *smtp_client_peer(const struct smtp_client *c)
{
    return c->peer;
}
