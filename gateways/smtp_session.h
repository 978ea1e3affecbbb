/*
 * smtp_session.h - the pure ESMTP server state machine (RFC 5321).
 *
 * It takes the bytes a client sent and produces the bytes to send back plus
 * a few actions (start TLS, a complete message, close). It makes no system
 * calls, reads no clock and draws no random numbers, so it is unit-tested
 * table-driven and fuzzed. The I/O side lives in smtp_server.c.
 *
 * Extensions: PIPELINING, SIZE, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES,
 * STARTTLS (when tls_available and not yet in TLS), AUTH PLAIN LOGIN
 * (advertised and accepted only after TLS, when auth_enabled).
 *
 * Pipelining: smtp_session_feed() consumes as many complete lines as it can.
 * When a message is complete it calls cb.message and then stops consuming
 * (input is kept buffered) until the caller answers with
 * smtp_session_reply_message(); the same holds for cb.auth and
 * smtp_session_reply_auth(). After cb.starttls the caller performs the TLS
 * handshake and calls smtp_session_tls_started(), which discards every byte
 * buffered before it (RFC 3207 4.2, the STARTTLS injection attack).
 *
 * DATA (RFC 5321 4.1.1.4, 4.5.2): only CRLF.CRLF ends the data; a bare LF or
 * a bare CR never ends it (SMTP smuggling), and a message containing a bare
 * LF "." bare LF sequence is not cut there. Dot-stuffing is removed.
 * Lines longer than max_line (command) get 500 5.5.6; data lines longer
 * than 998+2 are accepted (many clients send them) but counted in the size.
 * A message over max_message_size is read to its end, then rejected with
 * 552 5.3.4. Too many recipients: 452 4.5.3. After max_bad_commands bad
 * commands the session answers 421 4.7.0 and closes.
 *
 * Ownership: the session owns its buffers; the envelope and body passed to
 * cb.message are borrowed until smtp_session_reply_message() or
 * smtp_session_free(). Single-threaded.
 */
/*
 * Answering from inside a callback is allowed and safe: cb.message may call
 * smtp_session_reply_message(), cb.auth smtp_session_reply_auth(),
 * cb.starttls smtp_session_tls_started() (the rest of the bytes given to
 * that smtp_session_feed() call is then dropped as pre-TLS input), and any
 * callback smtp_session_refuse() or smtp_session_shutdown(). The reply is
 * written at once and the feed() on the stack goes on with the buffered
 * input; nothing recurses. A callback must not call smtp_session_feed()
 * (it returns SR_EINVAL) nor smtp_session_free(). cb.auth's user and pass
 * are borrowed until smtp_session_reply_auth(). A reply for which nothing
 * waits is ignored, as is everything after cb.close.
 *
 * Limits: max_recipients 0 means 100 (RFC 5321 4.5.3.1.8); max_bad_commands
 * 0 means no limit; max_line is kept within [512, 65536]. Counted as bad
 * commands: 500, 501, 503, 504, 530, 535, 538, 554 (DATA) and 555 replies.
 * smtp_session_feed() may also return SR_ENOMEM (input could not be
 * buffered: drop the connection); above 256 KiB of input buffered while
 * busy the session answers 421 4.7.0 and closes (SR_EFULL).
 */
#ifndef SR_SMTP_SESSION_H
#define SR_SMTP_SESSION_H

#include <stdbool.h>
#include <stddef.h>

struct smtp_limits {
    size_t max_message_size; /* bytes, SIZE= advertised; 0 = no limit */
    unsigned max_recipients; /* per transaction */
    unsigned max_bad_commands;
    size_t max_line;    /* command line length incl. CRLF, >= 512 */
    bool tls_available; /* advertise STARTTLS */
    bool auth_enabled;  /* advertise AUTH after TLS */
    bool auth_required; /* MAIL refused (530 5.7.0) until authenticated */
    bool tls_required;  /* MAIL refused (530 5.7.0) before STARTTLS */
};

struct smtp_envelope {
    const char *helo;      /* as given by the client */
    const char *mail_from; /* reverse-path without <>, "" for null sender */
    char **rcpts;          /* forward-paths without <> */
    unsigned n_rcpts;
    bool body_8bitmime;    /* BODY=8BITMIME given */
    bool smtputf8;         /* SMTPUTF8 given */
    bool tls;              /* session is in TLS */
    const char *auth_user; /* NULL unless authenticated */
};

struct smtp_session;

struct smtp_callbacks {
    void *ud;
    /* Bytes to send to the client, in order. Required. */
    void (*write)(void *ud, const char *buf, size_t len);
    /* "220 2.0.0 Ready to start TLS" was written: start the handshake and
     * call smtp_session_tls_started(). */
    void (*starttls)(void *ud);
    /* A complete message after DATA. body is the dot-unstuffed message with
     * CRLF line endings, as received (no Received: header added). Answer with
     * smtp_session_reply_message(). */
    void (*message)(void *ud, const struct smtp_envelope *env, const char *body,
                    size_t len);
    /* AUTH credentials to check; answer with smtp_session_reply_auth(). */
    void (*auth)(void *ud, const char *user, const char *pass);
    /* The session is over (after 221 or 421): flush writes, then close. */
    void (*close)(void *ud);
    /* Optional: false refuses MAIL with 452 4.3.1 (the outbound queue is
     * over its high-water mark; the client retries later). */
    bool (*mail_allowed)(void *ud);
    /* Optional: NULL accepts the recipient, else the reply line that
     * refuses it (a static string, e.g. "550 5.1.3 ..."). */
    const char *(*rcpt_check)(void *ud, const char *addr);
};

/* Returns a new session or NULL (out of memory). hostname is used in the
 * greeting and EHLO reply. Nothing is written until smtp_session_start(). */
struct smtp_session *smtp_session_new(const char *hostname,
                                      const struct smtp_limits *limits,
                                      const struct smtp_callbacks *cb);
void smtp_session_free(struct smtp_session *s);

/* Writes the 220 greeting. */
void smtp_session_start(struct smtp_session *s);
/* Writes "554 5.7.1 <text>" and closes: for refused clients (RFC 5321 3.1).*/
void smtp_session_refuse(struct smtp_session *s, const char *text);
/* Writes "421 4.7.0 <text>" and closes (too many sessions, shutdown,
 * timeout). */
void smtp_session_shutdown(struct smtp_session *s, const char *text);

/* Feeds received bytes. Returns 0, or SR_EFULL when more than 64 KiB of
 * command input is buffered while the session waits (the caller should stop
 * reading until a reply is given). */
int smtp_session_feed(struct smtp_session *s, const char *buf, size_t len);

/* Answers the pending message: code 250 with text "2.0.0 OK <code>", or a
 * 4xx/5xx with its enhanced status text. Resets the transaction and resumes
 * processing buffered input. */
void smtp_session_reply_message(struct smtp_session *s, int code,
                                const char *text);
void smtp_session_reply_auth(struct smtp_session *s, bool ok);
void smtp_session_tls_started(struct smtp_session *s);

/* True between the 354 and the end of the data (for the data timeout,
 * RFC 5321 4.5.3.2). */
bool smtp_session_in_data(const struct smtp_session *s);

/* True while waiting for reply_message/reply_auth or the TLS handshake. */
bool smtp_session_busy(const struct smtp_session *s);

#endif
