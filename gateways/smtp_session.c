/*
 * smtp_session.c - the pure ESMTP server state machine (RFC 5321).
 *
 * What it does: turns the client's bytes into reply lines and a few actions
 * (cb.starttls, cb.auth, cb.message, cb.close), following RFC 5321 with the
 * extensions listed in smtp_session.h. Input is consumed line by line in
 * command mode and byte by byte in DATA mode, so any split of the input
 * into feed() calls gives the same replies and the same messages.
 *
 * What it does not: I/O, DNS, relay policy, Received: headers, or any
 * check of the message content; those belong to smtp_server.c and the
 * engine. It never reads a clock or draws a random number.
 *
 * How it fails: out of memory while buffering input makes feed() return
 * SR_ENOMEM; out of memory while storing an envelope or a body is answered
 * 452 4.3.1 and the session goes on. Protocol errors are answered and
 * counted; max_bad_commands of them end the session with 421.
 *
 * Re-entrancy: callbacks may call smtp_session_reply_*(), _tls_started(),
 * _refuse() and _shutdown(). process() is guarded so that such a call never
 * recurses into the input loop: the loop on the stack simply continues.
 */
#include "gateways/smtp_session.h"
#include "node/errors.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Input buffered while busy: above SOFT feed() asks the caller to stop
 * reading (SR_EFULL); a caller that goes on anyway hits HARD, where the
 * session gives up with 421 rather than grow without bound. */
#define SMTP_INPUT_SOFT (64 * 1024)
#define SMTP_INPUT_HARD (4 * SMTP_INPUT_SOFT)
/* While not busy, input is copied in slices of this size and consumed at
 * once, so a big DATA body never sits in the input buffer. */
#define SMTP_CHUNK 4096
#define SMTP_MIN_LINE 512      /* RFC 5321 4.5.3.1.4 */
#define SMTP_MAX_PATH 256      /* RFC 5321 4.5.3.1.3 */
#define SMTP_MAX_DOMAIN 255    /* RFC 5321 4.5.3.1.2 */
#define SMTP_DEFAULT_RCPTS 100 /* RFC 5321 4.5.3.1.8 minimum */
#define SMTP_REPLY_MAX 512     /* RFC 5321 4.5.3.1.5, incl. CRLF */
#define SMTP_BODY_MIN_ALLOC 4096

enum smtp_mode {
    MODE_CMD,
    MODE_DATA,
    MODE_AUTH_PLAIN, /* waiting for the PLAIN response after "334 " */
    MODE_AUTH_USER,  /* AUTH LOGIN: waiting for the user name */
    MODE_AUTH_PASS,  /* AUTH LOGIN: waiting for the password */
};

enum smtp_wait { WAIT_NONE, WAIT_MESSAGE, WAIT_AUTH, WAIT_TLS };

/* Where DATA input stands relative to the end marker CRLF "." CRLF. Only a
 * CRLF moves to D_BOL, so bare LF and bare CR never start a line and can
 * neither end the data nor trigger dot-unstuffing (SMTP smuggling). */
enum smtp_dstate {
    D_BOL,    /* just after CRLF (or after the DATA command) */
    D_MID,    /* inside a line */
    D_CR,     /* after a CR inside a line, stored */
    D_DOT,    /* after a leading ".", not stored */
    D_DOT_CR, /* after a leading "." and CR, neither stored yet */
};

struct smtp_session {
    struct smtp_limits lim;
    struct smtp_callbacks cb;
    char *hostname;

    enum smtp_mode mode;
    enum smtp_wait wait;
    bool closed;
    bool in_process;    /* process() is on the stack: see process() */
    bool discarding;    /* dropping an over-long line up to its LF */
    unsigned bad;       /* error replies counted against max_bad_commands */
    unsigned tls_epoch; /* bumped by tls_started(): feed() drops the rest */

    /* Input not yet consumed is in[in_off, in_len). */
    char *in;
    size_t in_off, in_len, in_cap;
    char *line; /* the current command line, NUL-terminated */

    /* Session state: survives RSET and the end of a transaction. */
    char *helo; /* NULL until EHLO/HELO */
    bool tls;
    char *auth_user;  /* NULL unless authenticated */
    char *login_user; /* AUTH LOGIN: the user between the two prompts */
    char *cred;       /* "user\0pass\0" lent to cb.auth, wiped after */
    size_t cred_size;

    /* The mail transaction: reset by RSET, EHLO and the end of DATA. */
    bool has_mail;
    char *mail_from;
    bool body_8bitmime, smtputf8;
    char **rcpts;
    unsigned n_rcpts;
    bool rcpt_tried; /* a RCPT was given: DATA without recipients -> 554 */

    /* DATA. */
    enum smtp_dstate dstate;
    char *body;
    size_t body_len, body_cap;
    bool too_big, body_nomem;
    struct smtp_envelope env; /* lent to cb.message */
};

static void process(struct smtp_session *s);

/* ---- small helpers ---- */

static char ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* Case-insensitive ASCII prefix test; the locale must not change verbs. */
static bool iprefix(const char *s, const char *prefix)
{
    while (*prefix && ascii_lower(*s) == ascii_lower(*prefix)) {
        s++;
        prefix++;
    }
    return *prefix == '\0';
}

static bool ieq(const char *a, const char *b)
{
    return strlen(a) == strlen(b) && iprefix(a, b);
}

/* Credentials must not linger in freed memory; the volatile store keeps the
 * compiler from dropping a memset before free(). */
static void wipe(void *p, size_t n)
{
    volatile unsigned char *v = p;
    while (n--)
        *v++ = 0;
}

/* ---- output ---- */

/* Writes one reply line. Control characters in the text (which may come
 * from the caller, e.g. reply_message's text) become spaces so that a reply
 * can never inject a second line; the line is cut to 512 octets. */
static void vemit(struct smtp_session *s, const char *fmt, va_list ap)
{
    char buf[SMTP_REPLY_MAX + 1];
    int n;

    if (s->closed)
        return;
    n = vsnprintf(buf, SMTP_REPLY_MAX - 1, fmt, ap);
    if (n < 0)
        return;
    if ((size_t)n > SMTP_REPLY_MAX - 2)
        n = SMTP_REPLY_MAX - 2;
    for (int i = 0; i < n; i++)
        if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
            buf[i] = ' ';
    buf[n] = '\r';
    buf[n + 1] = '\n';
    s->cb.write(s->cb.ud, buf, (size_t)n + 2);
}

__attribute__((format(printf, 2, 3))) static void emit(struct smtp_session *s,
                                                       const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vemit(s, fmt, ap);
    va_end(ap);
}

static void close_session(struct smtp_session *s)
{
    if (s->closed)
        return;
    s->closed = true;
    if (s->cb.close != NULL)
        s->cb.close(s->cb.ud);
}

/* An error reply that counts against max_bad_commands (syntax, sequence and
 * authentication errors): a client that keeps failing is either broken or
 * probing, and in both cases talking on is wasted effort. */
__attribute__((format(printf, 2, 3))) static void
emit_bad(struct smtp_session *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vemit(s, fmt, ap);
    va_end(ap);
    s->bad++;
    if (s->lim.max_bad_commands > 0 && s->bad >= s->lim.max_bad_commands) {
        emit(s, "421 4.7.0 Too many errors");
        close_session(s);
    }
}

/* ---- transaction state ---- */

static void free_body(struct smtp_session *s)
{
    free(s->body);
    s->body = NULL;
    s->body_len = s->body_cap = 0;
}

/* Forgets the mail transaction (RFC 5321 4.1.1.5), keeping HELO and AUTH. */
static void reset_tx(struct smtp_session *s)
{
    free(s->mail_from);
    s->mail_from = NULL;
    for (unsigned i = 0; i < s->n_rcpts; i++)
        free(s->rcpts[i]);
    s->n_rcpts = 0;
    s->has_mail = s->body_8bitmime = s->smtputf8 = s->rcpt_tried = false;
    free_body(s);
    s->too_big = s->body_nomem = false;
    memset(&s->env, 0, sizeof(s->env));
}

static void drop_cred(struct smtp_session *s)
{
    if (s->cred != NULL)
        wipe(s->cred, s->cred_size);
    free(s->cred);
    free(s->login_user);
    s->cred = s->login_user = NULL;
}

/* ---- addresses (RFC 5321 4.1.2, RFC 6531 3.3) ---- */

static bool is_atext(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* Strict UTF-8 (RFC 3629): no overlongs, no surrogates, nothing above
 * U+10FFFF, because the address is passed on to other systems verbatim. */
static bool utf8_valid(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = p[i], cp;
        size_t len = c < 0x80   ? 1
                     : c < 0xc2 ? 0
                     : c < 0xe0 ? 2
                     : c < 0xf0 ? 3
                     : c < 0xf5 ? 4
                                : 0;
        if (len == 0 || n - i < len)
            return false;
        cp = len == 1 ? c : c & (0x7fu >> len);
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3fu);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
            return false;
        i += len;
    }
    return true;
}

/* Domain or address literal; non-ASCII labels (U-labels) are checked for
 * UTF-8 by the caller. */
static bool valid_domain(const char *d)
{
    size_t n = strlen(d), label = 0;

    if (n == 0 || n > SMTP_MAX_DOMAIN)
        return false;
    if (d[0] == '[') {
        if (n < 3 || d[n - 1] != ']')
            return false;
        for (size_t i = 1; i < n - 1; i++) {
            unsigned char c = (unsigned char)d[i];
            if (c <= 0x20 || c >= 0x7f || c == '[' || c == ']' || c == '\\')
                return false;
        }
        return true;
    }
    for (size_t i = 0; i <= n; i++) {
        unsigned char c = (unsigned char)d[i];
        if (c == '.' || c == '\0') {
            if (label == 0 || label > 63 || d[i - 1] == '-')
                return false;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                   (c >= '0' && c <= '9') || c >= 0x80 ||
                   (c == '-' && label > 0)) {
            label++;
        } else {
            return false;
        }
    }
    return true;
}

/* Mailbox = Local-part "@" Domain, the local part a dot-string or a quoted
 * string. */
static bool valid_mailbox(const char *a)
{
    const unsigned char *p = (const unsigned char *)a;

    if (*p == '"') {
        for (p++; *p != '"'; p++) {
            if (*p == '\\')
                p++;
            if (*p < 0x20 || *p == 0x7f)
                return false; /* also the end of the string */
        }
        p++;
    } else {
        bool after_atom = false;
        for (; *p != '@' && *p != '\0'; p++) {
            if (*p == '.' && after_atom)
                after_atom = false;
            else if (is_atext(*p) || *p >= 0x80)
                after_atom = true;
            else
                return false;
        }
        if (!after_atom)
            return false; /* empty, leading, trailing or double dot */
    }
    return *p == '@' && valid_domain((const char *)p + 1);
}

enum path_result { PATH_OK, PATH_SYNTAX, PATH_BAD, PATH_LONG, PATH_UTF8 };

/* Parses "<path>" at p into out (SMTP_MAX_PATH + 1 bytes) without the
 * brackets and without a source route (RFC 5321 4.1.1.3), which is accepted
 * and ignored as RFC 5321 C.2 asks. *rest gets what follows ">". A mailbox
 * with non-ASCII octets needs SMTPUTF8 (RFC 6531 3.4). */
static enum path_result parse_path(char *p, char *out, char **rest,
                                   bool smtputf8)
{
    char *end;
    size_t n;
    bool quoted = false;

    out[0] = '\0';
    while (*p == ' ')
        p++; /* "MAIL FROM: <a@b>" is common enough to accept */
    if (*p != '<')
        return PATH_SYNTAX;
    for (end = ++p; *end != '\0'; end++) {
        if (quoted && *end == '\\' && end[1] != '\0')
            end++;
        else if (*end == '"')
            quoted = !quoted;
        else if (*end == '>' && !quoted)
            break;
    }
    if (*end != '>' || (end[1] != '\0' && end[1] != ' '))
        return PATH_SYNTAX;
    *end = '\0';
    *rest = end + 1;
    n = (size_t)(end - p);
    if (n > SMTP_MAX_PATH)
        return PATH_LONG;
    if (*p == '@') {
        char *colon = strchr(p, ':');
        if (colon == NULL)
            return PATH_BAD;
        *colon = '\0';
        for (char *hop = p; hop != NULL;) {
            char *comma = strchr(hop, ',');
            if (comma != NULL)
                *comma = '\0';
            if (*hop != '@' || !valid_domain(hop + 1))
                return PATH_BAD;
            hop = comma != NULL ? comma + 1 : NULL;
        }
        p = colon + 1;
        n = strlen(p);
    }
    memcpy(out, p, n + 1);
    if (n == 0)
        return PATH_OK; /* the null path; callers decide */
    if (!valid_mailbox(out) || !utf8_valid((unsigned char *)out, n))
        return PATH_BAD;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)out[i] >= 0x80 && !smtputf8)
            return PATH_UTF8;
    return PATH_OK;
}

/* Splits the next space-separated token off *p (in place); NULL at end. */
static char *next_token(char **p)
{
    char *t = *p, *e;

    while (*t == ' ')
        t++;
    if (*t == '\0')
        return NULL;
    e = strchr(t, ' ');
    if (e != NULL)
        *e++ = '\0';
    *p = e != NULL ? e : t + strlen(t);
    return t;
}

/* ---- AUTH (RFC 4954, RFC 4616 PLAIN, LOGIN) ---- */

/* Decodes canonical base64 (RFC 4648 4) in place: the output never
 * overtakes the input. Returns the length, or -1 for a wrong length, a
 * stray character, a misplaced '=' or non-zero bits under the padding. */
static long b64_decode_inplace(char *s)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(s), o = 0;

    if (n % 4 != 0)
        return -1;
    for (size_t i = 0; i < n; i += 4) {
        unsigned long q = 0;
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            const char *hit = strchr(alphabet, s[i + k]);
            if (s[i + k] == '=' && i + 4 == n && k >= 2)
                pad++;
            else if (pad > 0 || s[i + k] == '\0' || hit == NULL)
                return -1;
            q = (q << 6) | (hit != NULL ? (unsigned long)(hit - alphabet) : 0);
        }
        if ((pad == 2 && (q & 0xffff)) || (pad == 1 && (q & 0xff)))
            return -1;
        s[o++] = (char)(q >> 16);
        if (pad < 2)
            s[o++] = (char)(q >> 8);
        if (pad < 1)
            s[o++] = (char)q;
    }
    s[o] = '\0';
    return (long)o;
}

/* Lends "user\0pass" to cb.auth and waits for smtp_session_reply_auth(). */
static void auth_submit(struct smtp_session *s, const char *user, size_t ulen,
                        const char *pass, size_t plen)
{
    s->cred_size = ulen + plen + 2;
    s->cred = malloc(s->cred_size);
    if (s->cred == NULL) {
        emit(s, "454 4.7.0 Temporary authentication failure");
        return;
    }
    memcpy(s->cred, user, ulen);
    s->cred[ulen] = '\0';
    memcpy(s->cred + ulen + 1, pass, plen);
    s->cred[ulen + 1 + plen] = '\0';
    s->wait = WAIT_AUTH;
    if (s->cb.auth == NULL)
        smtp_session_reply_auth(s, false);
    else
        s->cb.auth(s->cb.ud, s->cred, s->cred + ulen + 1);
}

/* PLAIN: [authzid] NUL authcid NUL passwd, each part free of NUL. */
static void auth_plain(struct smtp_session *s, char *b64)
{
    long n = b64_decode_inplace(b64);
    char *user, *pass, *end = b64 + (n > 0 ? n : 0);

    if (n < 0) {
        emit_bad(s, "501 5.5.2 Cannot decode base64 response");
        return;
    }
    user = memchr(b64, '\0', (size_t)n);
    pass =
        user != NULL ? memchr(user + 1, '\0', (size_t)(end - user - 1)) : NULL;
    if (pass == NULL || memchr(pass + 1, '\0', (size_t)(end - pass - 1)) ||
        user + 1 == pass || pass + 1 == end) {
        emit_bad(s, "501 5.5.2 Malformed PLAIN response");
        return;
    }
    user++;
    pass++;
    /* Acting for another identity (authzid) is not supported. */
    if (b64[0] != '\0' && strcmp(b64, user) != 0) {
        emit_bad(s, "535 5.7.8 Authentication credentials invalid");
        return;
    }
    auth_submit(s, user, strlen(user), pass, (size_t)(end - pass));
}

/* LOGIN: the user name, then the password, each in its own base64 line. */
static void auth_login(struct smtp_session *s, char *b64, bool is_pass)
{
    long n = b64_decode_inplace(b64);

    if (n <= 0 || memchr(b64, '\0', (size_t)n) != NULL) {
        drop_cred(s);
        emit_bad(s, "501 5.5.2 Cannot decode base64 response");
    } else if (is_pass) {
        auth_submit(s, s->login_user, strlen(s->login_user), b64, (size_t)n);
        /* cred holds a copy now; a reply_auth() from inside cb.auth may
         * already have freed login_user, hence the pointer reset. */
        free(s->login_user);
        s->login_user = NULL;
    } else if ((s->login_user = strdup(b64)) == NULL) {
        emit(s, "454 4.7.0 Temporary authentication failure");
    } else {
        emit(s, "334 UGFzc3dvcmQ6"); /* "Password:" */
        s->mode = MODE_AUTH_PASS;
    }
}

/* A line typed in answer to a 334 challenge. */
static void auth_response(struct smtp_session *s, char *line)
{
    enum smtp_mode m = s->mode;

    s->mode = MODE_CMD;
    if (strcmp(line, "*") == 0) { /* RFC 4954 4: the client gives up */
        drop_cred(s);
        emit_bad(s, "501 5.0.0 Authentication cancelled");
    } else if (m == MODE_AUTH_PLAIN) {
        auth_plain(s, line);
    } else {
        auth_login(s, line, m == MODE_AUTH_PASS);
    }
}

static void cmd_auth(struct smtp_session *s, char *arg)
{
    char *mech = next_token(&arg), *initial = next_token(&arg);

    if (!s->lim.auth_enabled) {
        emit_bad(s, "503 5.5.1 Error: authentication not enabled");
    } else if (!s->tls) { /* RFC 4954 4: never a password in clear */
        emit_bad(s, "538 5.7.11 Encryption required for requested "
                    "authentication mechanism");
    } else if (s->helo == NULL || s->auth_user != NULL || s->has_mail) {
        emit_bad(s, "503 5.5.1 Error: %s",
                 s->helo == NULL        ? "send EHLO first"
                 : s->auth_user != NULL ? "already authenticated"
                                        : "mail transaction in progress");
    } else if (next_token(&arg) != NULL) {
        emit_bad(s, "501 5.5.4 Syntax: AUTH mechanism [initial-response]");
    } else if (ieq(mech, "PLAIN") && initial == NULL) {
        emit(s, "334 ");
        s->mode = MODE_AUTH_PLAIN;
    } else if (ieq(mech, "PLAIN")) {
        /* "=" is an empty initial response (RFC 4954 4). */
        auth_plain(s, strcmp(initial, "=") == 0 ? initial + 1 : initial);
    } else if (ieq(mech, "LOGIN") && initial == NULL) {
        emit(s, "334 VXNlcm5hbWU6"); /* "Username:" */
        s->mode = MODE_AUTH_USER;
    } else if (ieq(mech, "LOGIN")) {
        auth_login(s, initial, false);
    } else {
        emit_bad(s, "504 5.5.4 Unrecognized authentication type");
    }
}

/* ---- commands (RFC 5321 4.1.1) ---- */

/* EHLO and HELO (RFC 5321 4.1.1.1); both imply RSET (4.1.4). */
static void cmd_hello(struct smtp_session *s, char *arg)
{
    bool ehlo = ascii_lower(s->line[0]) == 'e'; /* the verb, see dispatch */
    const char *ext[8];
    char size[32], *h;
    size_t n = 0;

    for (const char *p = arg; *p; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
            emit_bad(s, "501 5.5.4 Syntax: %s hostname",
                     ehlo ? "EHLO" : "HELO");
            return;
        }
    }
    if ((h = strdup(arg)) == NULL) {
        emit(s, "452 4.3.1 Insufficient system storage");
        return;
    }
    free(s->helo);
    s->helo = h;
    reset_tx(s);
    if (!ehlo) {
        emit(s, "250 %s", s->hostname);
        return;
    }
    /* RFC 1870: a bare SIZE keyword announces no fixed limit. */
    snprintf(size, sizeof(size), "SIZE %zu", s->lim.max_message_size);
    ext[n++] = "PIPELINING";
    ext[n++] = s->lim.max_message_size > 0 ? size : "SIZE";
    ext[n++] = "8BITMIME";
    ext[n++] = "SMTPUTF8";
    ext[n++] = "ENHANCEDSTATUSCODES";
    if (s->lim.tls_available && s->cb.starttls != NULL && !s->tls)
        ext[n++] = "STARTTLS";
    if (s->lim.auth_enabled && s->tls)
        ext[n++] = "AUTH PLAIN LOGIN";
    /* RFC 5321 4.2.1: "250-" on every line but the last. */
    emit(s, "250-%s", s->hostname);
    for (size_t i = 0; i < n; i++)
        emit(s, "250%c%s", i + 1 < n ? '-' : ' ', ext[i]);
}

/* SIZE=, BODY=, SMTPUTF8 and AUTH= (RFC 1870, 6152, 6531, 4954 5). Returns
 * false after answering a bad one. */
static bool mail_params(struct smtp_session *s, char *rest)
{
    bool seen_size = false, seen_body = false;
    char *tok, *val;

    while ((tok = next_token(&rest)) != NULL) {
        if ((val = strchr(tok, '=')) != NULL)
            *val++ = '\0';
        if (ieq(tok, "SIZE") && val != NULL && !seen_size) {
            size_t size = 0, digits = strspn(val, "0123456789");
            if (digits == 0 || digits > 19 || val[digits] != '\0') {
                emit_bad(s, "501 5.5.4 Bad SIZE parameter");
                return false;
            }
            for (size_t i = 0; i < digits; i++)
                size = size * 10 + (size_t)(val[i] - '0');
            if (s->lim.max_message_size > 0 && size > s->lim.max_message_size) {
                emit(s, "552 5.3.4 Message size exceeds fixed limit");
                return false;
            }
            seen_size = true;
        } else if (ieq(tok, "BODY") && val != NULL && !seen_body &&
                   (ieq(val, "7BIT") || ieq(val, "8BITMIME"))) {
            s->body_8bitmime = ieq(val, "8BITMIME");
            seen_body = true;
        } else if (ieq(tok, "SMTPUTF8") && val == NULL && !s->smtputf8) {
            s->smtputf8 = true;
        } else if (!ieq(tok, "AUTH") || val == NULL || *val == '\0') {
            /* AUTH= is accepted and not trusted: we never relay it. */
            emit_bad(s, "555 5.5.4 Unsupported or bad MAIL parameter");
            return false;
        }
    }
    return true;
}

/* MAIL FROM:<reverse-path> [SP Mail-parameters] (RFC 5321 4.1.1.2). */
static void cmd_mail(struct smtp_session *s, char *arg)
{
    char addr[SMTP_MAX_PATH + 1], *rest;
    enum path_result r;

    if (s->helo == NULL || s->has_mail) {
        emit_bad(s, "503 5.5.1 Error: %s",
                 s->helo == NULL ? "send HELO/EHLO first"
                                 : "nested MAIL command");
        return;
    }
    if (s->lim.tls_required && !s->tls) {
        emit_bad(s, "530 5.7.0 Must issue a STARTTLS command first");
        return;
    }
    if (s->lim.auth_required && s->auth_user == NULL) {
        emit_bad(s, "530 5.7.0 Authentication required");
        return;
    }
    if (s->cb.mail_allowed != NULL && !s->cb.mail_allowed(s->cb.ud)) {
        emit(s, "452 4.3.1 Insufficient system storage: queue full, try "
                "again later");
        return;
    }
    /* SMTPUTF8 among the parameters decides whether the path may be UTF-8,
     * so that check comes after the parameters. */
    r = iprefix(arg, "FROM:") ? parse_path(arg + 5, addr, &rest, true)
                              : PATH_SYNTAX;
    if (r == PATH_SYNTAX) {
        emit_bad(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
    } else if (mail_params(s, rest)) {
        bool utf8 = false;
        for (const char *p = addr; *p; p++)
            utf8 |= (unsigned char)*p >= 0x80;
        if (r != PATH_OK)
            emit_bad(s, "501 5.1.7 %s",
                     r == PATH_LONG ? "Sender address too long"
                                    : "Bad sender address syntax");
        else if (utf8 && !s->smtputf8)
            emit(s, "553 5.6.7 SMTPUTF8 required for this address");
        else if ((s->mail_from = strdup(addr)) == NULL)
            emit(s, "452 4.3.1 Insufficient system storage");
        else {
            s->has_mail = true;
            emit(s, "250 2.1.0 Sender OK");
            return;
        }
    }
    s->body_8bitmime = s->smtputf8 = false; /* the MAIL did not happen */
}

static bool add_rcpt(struct smtp_session *s, const char *addr)
{
    char **grown = realloc(s->rcpts, (s->n_rcpts + 1) * sizeof(*grown));

    if (grown == NULL)
        return false;
    s->rcpts = grown;
    if ((grown[s->n_rcpts] = strdup(addr)) == NULL)
        return false;
    s->n_rcpts++;
    return true;
}

/* RCPT TO:<forward-path> (RFC 5321 4.1.1.3). */
static void cmd_rcpt(struct smtp_session *s, char *arg)
{
    char addr[SMTP_MAX_PATH + 1], *rest;
    const char *refusal;
    enum path_result r;

    if (!s->has_mail) {
        emit_bad(s, "503 5.5.1 Error: need MAIL command");
        return;
    }
    s->rcpt_tried = true;
    r = iprefix(arg, "TO:") ? parse_path(arg + 3, addr, &rest, s->smtputf8)
                            : PATH_SYNTAX;
    /* RFC 5321 4.5.1: the bare "Postmaster" must be accepted. */
    if (r == PATH_BAD && ieq(addr, "postmaster"))
        r = PATH_OK;
    else if (r == PATH_OK && addr[0] == '\0')
        r = PATH_BAD;
    if (r == PATH_SYNTAX) {
        emit_bad(s, "501 5.5.4 Syntax: RCPT TO:<address>");
    } else if (r == PATH_UTF8) {
        emit(s, "553 5.6.7 SMTPUTF8 required for this address");
    } else if (r != PATH_OK) {
        emit_bad(s, "501 5.1.3 Bad recipient address syntax");
    } else if (next_token(&rest) != NULL) { /* no DSN: no parameters */
        emit_bad(s, "555 5.5.4 Unsupported RCPT parameter");
    } else if (s->n_rcpts >= s->lim.max_recipients) {
        emit(s, "452 4.5.3 Too many recipients");
    } else if (s->cb.rcpt_check != NULL &&
               (refusal = s->cb.rcpt_check(s->cb.ud, addr)) != NULL) {
        emit(s, "%s", refusal);
    } else if (!add_rcpt(s, addr)) {
        emit(s, "452 4.3.1 Insufficient system storage");
    } else {
        emit(s, "250 2.1.5 Recipient OK");
    }
}

static void cmd_data(struct smtp_session *s, char *arg)
{
    (void)arg;
    if (!s->has_mail) {
        emit_bad(s, "503 5.5.1 Error: need MAIL command");
    } else if (s->n_rcpts == 0 && s->rcpt_tried) {
        emit_bad(s, "554 5.5.1 No valid recipients");
    } else if (s->n_rcpts == 0) {
        emit_bad(s, "503 5.5.1 Error: need RCPT command");
    } else {
        emit(s, "354 End data with <CR><LF>.<CR><LF>");
        s->mode = MODE_DATA;
        s->dstate = D_BOL;
    }
}

static void cmd_rset(struct smtp_session *s, char *arg)
{
    (void)arg;
    reset_tx(s);
    emit(s, "250 2.0.0 OK");
}

static void cmd_quit(struct smtp_session *s, char *arg)
{
    (void)arg;
    emit(s, "221 2.0.0 Bye");
    close_session(s);
}

/* RFC 3207 4: "220", then nothing more is read in clear. */
static void cmd_starttls(struct smtp_session *s, char *arg)
{
    (void)arg;
    if (s->tls) {
        emit_bad(s, "503 5.5.1 Error: TLS already active");
    } else if (!s->lim.tls_available || s->cb.starttls == NULL) {
        emit(s, "454 4.7.0 TLS not available");
    } else {
        emit(s, "220 2.0.0 Ready to start TLS");
        s->wait = WAIT_TLS;
        s->cb.starttls(s->cb.ud);
    }
}

enum arg_rule { ARG_ANY, ARG_NONE, ARG_NEEDED };

/* Each verb with its argument rule (violations get 501 5.5.4 "Syntax:
 * <usage>") and either a handler or a fixed reply. */
static const struct {
    const char *verb;
    enum arg_rule rule;
    const char *usage;
    void (*fn)(struct smtp_session *s, char *arg);
    const char *reply;
} commands[] = {
    {"EHLO", ARG_NEEDED, "EHLO hostname", cmd_hello, NULL},
    {"HELO", ARG_NEEDED, "HELO hostname", cmd_hello, NULL},
    {"MAIL", ARG_ANY, NULL, cmd_mail, NULL},
    {"RCPT", ARG_ANY, NULL, cmd_rcpt, NULL},
    {"DATA", ARG_NONE, "DATA", cmd_data, NULL},
    {"RSET", ARG_NONE, "RSET", cmd_rset, NULL},
    {"QUIT", ARG_NONE, "QUIT", cmd_quit, NULL},
    {"AUTH", ARG_NEEDED, "AUTH mechanism [initial-response]", cmd_auth, NULL},
    {"STARTTLS", ARG_NONE, "STARTTLS", cmd_starttls, NULL},
    /* RFC 5321 4.1.1.9: a NOOP argument is ignored. */
    {"NOOP", ARG_ANY, NULL, NULL, "250 2.0.0 OK"},
    {"HELP", ARG_ANY, NULL, NULL,
     "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT HELP VRFY "
     "STARTTLS AUTH"},
    /* RFC 5321 3.5.3: we do not disclose which users exist. */
    {"VRFY", ARG_NEEDED, "VRFY address", NULL, "252 2.5.2 Cannot VRFY user"},
    {"EXPN", ARG_ANY, NULL, NULL, "502 5.5.1 EXPN not supported"},
};

/* line is NUL-terminated, without its line ending and trailing blanks. The
 * verb is cut off in place, so handlers can read it back from s->line. */
static void dispatch(struct smtp_session *s, char *line)
{
    char *arg = strchr(line, ' ');

    if (arg != NULL)
        *arg++ = '\0';
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (!ieq(line, commands[i].verb))
            continue;
        if ((commands[i].rule == ARG_NONE && arg != NULL) ||
            (commands[i].rule == ARG_NEEDED && (arg == NULL || !*arg)))
            emit_bad(s, "501 5.5.4 Syntax: %s", commands[i].usage);
        else if (commands[i].fn != NULL)
            commands[i].fn(s, arg != NULL ? arg : line + strlen(line));
        else
            emit(s, "%s", commands[i].reply);
        return;
    }
    emit_bad(s, "500 5.5.2 Error: command not recognized");
}

/* Consumes one command (or AUTH response) line if a whole one is buffered.
 * Returns false when more input is needed. A bare LF ends a command line
 * (many clients send it); bare CR and NUL inside a line are refused. */
static bool command_step(struct smtp_session *s)
{
    char *p = s->in + s->in_off;
    size_t avail = s->in_len - s->in_off, len, n;
    char *lf = memchr(p, '\n', avail);

    if (lf == NULL) {
        /* Nothing a well-formed line can become: drop it now so that a
         * client cannot make us buffer more than max_line. */
        if (s->discarding || avail >= s->lim.max_line) {
            s->discarding = true;
            s->in_off = s->in_len;
        }
        return false;
    }
    len = (size_t)(lf - p) + 1; /* with the line ending */
    s->in_off += len;
    if (s->discarding || len > s->lim.max_line) {
        s->discarding = false;
        drop_cred(s);
        s->mode = MODE_CMD; /* an over-long AUTH response cancels it */
        emit_bad(s, "500 5.5.6 Line too long");
        return true;
    }
    n = len - ((len >= 2 && p[len - 2] == '\r') ? 2 : 1);
    if (memchr(p, '\0', n) != NULL || memchr(p, '\r', n) != NULL) {
        drop_cred(s);
        s->mode = MODE_CMD;
        emit_bad(s, "500 5.5.2 Error: bad characters in command");
        return true;
    }
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    memcpy(s->line, p, n);
    s->line[n] = '\0';
    if (s->mode == MODE_CMD)
        dispatch(s, s->line);
    else
        auth_response(s, s->line);
    /* The line may have held a password (AUTH); clearing every line is
     * cheaper than deciding which. */
    memset(s->line, 0, n);
    return true;
}

/* ---- DATA (RFC 5321 4.1.1.4, 4.5.2) ---- */

/* Stores body bytes up to max_message_size; past it only the flag is kept
 * and the body freed, the data is still read to its end (RFC 5321
 * 4.5.3.1.10 wants the 552 after the data). */
static void body_put(struct smtp_session *s, const char *p, size_t n)
{
    size_t max = s->lim.max_message_size, cap;
    char *b;

    if (s->too_big || s->body_nomem)
        return;
    if (max > 0 && n > max - s->body_len) {
        s->too_big = true;
        free_body(s);
        return;
    }
    if (s->body_cap - s->body_len < n) {
        cap = s->body_cap < SMTP_BODY_MIN_ALLOC ? SMTP_BODY_MIN_ALLOC
                                                : s->body_cap * 2;
        if (cap < s->body_len + n)
            cap = s->body_len + n;
        if (max > 0 && cap > max)
            cap = max; /* never more than the limit */
        if ((b = realloc(s->body, cap)) == NULL) {
            s->body_nomem = true;
            free_body(s);
            return;
        }
        s->body = b;
        s->body_cap = cap;
    }
    memcpy(s->body + s->body_len, p, n);
    s->body_len += n;
}

static void finish_message(struct smtp_session *s)
{
    s->mode = MODE_CMD;
    if (s->too_big || s->body_nomem || s->cb.message == NULL) {
        emit(s, "%s",
             s->too_big      ? "552 5.3.4 Message too big"
             : s->body_nomem ? "452 4.3.1 Insufficient system storage"
                             : "451 4.3.0 Mail handling unavailable");
        reset_tx(s);
        return;
    }
    s->env.helo = s->helo;
    s->env.mail_from = s->mail_from;
    s->env.rcpts = s->rcpts;
    s->env.n_rcpts = s->n_rcpts;
    s->env.body_8bitmime = s->body_8bitmime;
    s->env.smtputf8 = s->smtputf8;
    s->env.tls = s->tls;
    s->env.auth_user = s->auth_user;
    s->wait = WAIT_MESSAGE;
    s->cb.message(s->cb.ud, &s->env, s->body != NULL ? s->body : "",
                  s->body_len);
}

/* Consumes DATA input up to and including the end marker. Bytes are stored
 * as received, except the first "." of a line that follows a CRLF. */
static void data_consume(struct smtp_session *s)
{
    char *p = s->in + s->in_off, *end = s->in + s->in_len;

    while (p < end) {
        switch (s->dstate) {
        case D_MID: {
            char *cr = memchr(p, '\r', (size_t)(end - p));
            char *stop = cr != NULL ? cr + 1 : end;
            body_put(s, p, (size_t)(stop - p));
            p = stop;
            if (cr != NULL)
                s->dstate = D_CR;
            break;
        }
        case D_CR:
            body_put(s, p, 1);
            s->dstate = *p == '\n' ? D_BOL : *p == '\r' ? D_CR : D_MID;
            p++;
            break;
        case D_BOL: /* a leading dot is never stored: stuffing or the end */
            if (*p == '.') {
                p++;
                s->dstate = D_DOT;
            } else {
                s->dstate = D_MID; /* the byte is handled there */
            }
            break;
        case D_DOT:
            if (*p == '\r') {
                p++;
                s->dstate = D_DOT_CR;
            } else {
                s->dstate = D_MID; /* the dot was stuffing */
            }
            break;
        case D_DOT_CR:
            if (*p == '\n') {
                s->in_off = (size_t)(p + 1 - s->in);
                finish_message(s);
                return;
            }
            /* A bare CR after the dot: stuffing plus an ordinary CR, and
             * the byte after it is looked at again in D_CR. */
            body_put(s, "\r", 1);
            s->dstate = D_CR;
            break;
        }
    }
    s->in_off = s->in_len;
}

/* ---- the input loop ---- */

/* Consumes buffered input until it runs out, the session waits for the
 * caller, or it closes. Callbacks called from here may answer at once
 * (reply_message inside cb.message); the guard turns their nested
 * process() into a no-op and this loop picks up where it stopped. */
static void process(struct smtp_session *s)
{
    if (s->in_process)
        return;
    s->in_process = true;
    while (!s->closed && s->wait == WAIT_NONE && s->in_off < s->in_len) {
        if (s->mode == MODE_DATA)
            data_consume(s);
        else if (!command_step(s))
            break;
    }
    s->in_process = false;
    if (s->in_off > 0) {
        s->in_len -= s->in_off;
        memmove(s->in, s->in + s->in_off, s->in_len);
        s->in_off = 0;
    }
    /* Give back the room a long pipelined burst needed. */
    if (s->in_len == 0 && s->in_cap > SMTP_CHUNK + s->lim.max_line) {
        free(s->in);
        s->in = NULL;
        s->in_cap = 0;
    }
}

static int append_input(struct smtp_session *s, const char *buf, size_t n)
{
    if (s->in_cap - s->in_len < n) {
        size_t cap = s->in_cap > 0 ? s->in_cap : SMTP_CHUNK + s->lim.max_line;
        char *b;
        while (cap - s->in_len < n)
            cap *= 2;
        if ((b = realloc(s->in, cap)) == NULL)
            return SR_ENOMEM;
        s->in = b;
        s->in_cap = cap;
    }
    memcpy(s->in + s->in_len, buf, n);
    s->in_len += n;
    return 0;
}

/* ---- public API ---- */

struct smtp_session *smtp_session_new(const char *hostname,
                                      const struct smtp_limits *limits,
                                      const struct smtp_callbacks *cb)
{
    struct smtp_session *s;

    if (hostname == NULL || limits == NULL || cb == NULL || cb->write == NULL)
        return NULL;
    if ((s = calloc(1, sizeof(*s))) == NULL)
        return NULL;
    s->lim = *limits;
    s->cb = *cb;
    if (s->lim.max_line < SMTP_MIN_LINE)
        s->lim.max_line = SMTP_MIN_LINE;
    if (s->lim.max_line > SMTP_INPUT_SOFT)
        s->lim.max_line = SMTP_INPUT_SOFT;
    if (s->lim.max_recipients == 0)
        s->lim.max_recipients = SMTP_DEFAULT_RCPTS;
    s->hostname = strdup(hostname);
    s->line = malloc(s->lim.max_line + 1);
    if (s->hostname == NULL || s->line == NULL) {
        smtp_session_free(s);
        return NULL;
    }
    return s;
}

void smtp_session_free(struct smtp_session *s)
{
    if (s == NULL)
        return;
    reset_tx(s);
    drop_cred(s);
    free(s->auth_user);
    free(s->rcpts);
    free(s->helo);
    free(s->in);
    free(s->line);
    free(s->hostname);
    free(s);
}

void smtp_session_start(struct smtp_session *s)
{
    emit(s, "220 %s ESMTP SmartRelay", s->hostname);
}

void smtp_session_refuse(struct smtp_session *s, const char *text)
{
    emit(s, "554 5.7.1 %s", text);
    close_session(s);
}

void smtp_session_shutdown(struct smtp_session *s, const char *text)
{
    emit(s, "421 4.7.0 %s", text);
    close_session(s);
}

int smtp_session_feed(struct smtp_session *s, const char *buf, size_t len)
{
    unsigned epoch = s->tls_epoch;

    if (s->in_process)
        return SR_EINVAL; /* called from a callback: not supported */
    /* Bytes after a STARTTLS that completed inside this call arrived in
     * clear before the handshake: they are dropped (RFC 3207 4.2). */
    while (len > 0 && !s->closed && s->tls_epoch == epoch) {
        size_t n = len;
        if (s->wait == WAIT_NONE && n > SMTP_CHUNK) {
            n = SMTP_CHUNK;
        } else if (s->wait != WAIT_NONE &&
                   n > SMTP_INPUT_HARD - (s->in_len - s->in_off)) {
            smtp_session_shutdown(s, "Too much pipelined input");
            return SR_EFULL;
        }
        if (append_input(s, buf, n) < 0)
            return SR_ENOMEM;
        buf += n;
        len -= n;
        process(s);
    }
    if (!s->closed && s->wait != WAIT_NONE &&
        s->in_len - s->in_off > SMTP_INPUT_SOFT)
        return SR_EFULL;
    return 0;
}

void smtp_session_reply_message(struct smtp_session *s, int code,
                                const char *text)
{
    if (s->closed || s->wait != WAIT_MESSAGE)
        return;
    /* Only a final reply fits here; anything else is a caller bug that
     * must not leave the client hanging. */
    if (code < 200 || code > 599 || (code >= 300 && code < 400))
        emit(s, "451 4.3.0 Internal error");
    else
        emit(s, "%d %s", code, text != NULL ? text : "");
    s->wait = WAIT_NONE;
    reset_tx(s);
    process(s);
}

void smtp_session_reply_auth(struct smtp_session *s, bool ok)
{
    if (s->closed || s->wait != WAIT_AUTH)
        return;
    s->wait = WAIT_NONE;
    if (ok) {
        /* cred is "user\0pass\0": wipe the password, keep the user. */
        size_t ulen = strlen(s->cred);
        wipe(s->cred + ulen + 1, s->cred_size - ulen - 1);
        s->auth_user = s->cred;
        s->cred = NULL;
        emit(s, "235 2.7.0 Authentication successful");
    } else {
        drop_cred(s);
        emit_bad(s, "535 5.7.8 Authentication credentials invalid");
    }
    process(s);
}

void smtp_session_tls_started(struct smtp_session *s)
{
    if (s->closed || s->wait != WAIT_TLS)
        return;
    /* RFC 3207 4.2: forget everything learnt in clear, including any
     * command the client (or an attacker) pipelined after STARTTLS. */
    s->wait = WAIT_NONE;
    s->tls = true;
    s->tls_epoch++;
    s->in_off = s->in_len = 0;
    s->discarding = false;
    s->mode = MODE_CMD;
    reset_tx(s);
    drop_cred(s);
    free(s->helo);
    s->helo = NULL;
}

bool smtp_session_busy(const struct smtp_session *s)
{
    return s->wait != WAIT_NONE;
}

bool smtp_session_in_data(const struct smtp_session *s)
{
    return s->mode == MODE_DATA;
}
