/*
 * smtp_client.h - the outbound SMTP client (RFC 5321): delivery of messages
 * to a destination MX or a smarthost over one connection, asynchronously on
 * a caller's libuv loop. It knows nothing of Raft or the queue; the delivery
 * engine drives it.
 *
 * Connection: TCP connect (optionally from a given source address, the
 * customer's dedicated IP) -> 220 greeting (multi-line allowed) -> EHLO,
 * HELO when EHLO gets 5xx -> extensions (PIPELINING, SIZE, 8BITMIME,
 * SMTPUTF8, STARTTLS, ENHANCEDSTATUSCODES) -> STARTTLS when offered and the
 * TLS mode is not NONE (OpenSSL over memory BIOs), then EHLO again ->
 * READY. Mode REQUIRED fails the connection when STARTTLS is not offered,
 * refused or the handshake fails; mode OPPORTUNISTIC goes on in plaintext
 * when STARTTLS is not offered or refused, and fails (tls_failed set) when
 * the handshake itself fails, so that the caller can retry with mode NONE
 * (Postfix's "may" does the same by reconnecting).
 *
 * Messages: smtp_client_send() runs one transaction at a time. With
 * PIPELINING, MAIL, every RCPT and DATA go out in one write and the replies
 * are read in order (RFC 2920); without it each command waits for its
 * reply. The body is sent dot-stuffed with every line end made CRLF (a bare
 * CR or LF never reaches the wire: RFC 5321 2.3.8, SMTP smuggling), in
 * blocks of 64 KiB, and ended with CRLF.CRLF. After a failed transaction
 * the next one starts with RSET. A recipient is delivered (SMTP_OK) only
 * when RCPT got 2xx and the end of data got 2xx.
 *
 * Timeouts (RFC 5321 4.5.3.2): one timer runs at every stage; 0 in
 * struct smtp_client_timeouts means the default noted there. While READY
 * and idle the idle timer runs; when it fires the client sends QUIT and the
 * connection ends with SMTP_CLIENT_CLOSED. A connection-level failure
 * (timeout, reset, EOF, a 421 reply, a malformed reply, a TLS error) fails
 * the message in flight with SMTP_TEMPFAIL (recipients already refused by
 * RCPT keep that answer) and ends the connection.
 *
 * Callbacks: after smtp_client_connect() returns 0 the event callback gets
 * READY or FAILED exactly once; after READY it gets CLOSED exactly once
 * (after smtp_client_quit(), the idle timeout, or a failure). Every
 * smtp_client_send() accepted (returned 0) gets its result callback exactly
 * once, before a CLOSED that ends the connection. smtp_client_close() may
 * be called at any time, also from inside a callback; after it no callback
 * runs at all (a message in flight is abandoned). The client pointer stays
 * valid until FAILED or CLOSED returns, or until smtp_client_close()
 * returns; memory is freed once libuv has closed the handles, so the loop
 * must run on for that.
 *
 * Ownership: the client owns its socket, timer, TLS state and buffers. The
 * options are copied by smtp_client_connect(). A message (struct
 * smtp_client_msg and every string and byte it points to) is borrowed until
 * its result callback returns. Results and events are valid only during
 * the callback. Loop thread only.
 */
#ifndef SR_SMTP_CLIENT_H
#define SR_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

/* ------------------------------------------------------------------ */
/* Pure helpers: reply parser, EHLO extensions, dot-stuffing           */
/* ------------------------------------------------------------------ */

/* Limits on what a server may send: one reply line with its CRLF, and the
 * lines of one multi-line reply. */
#define SMTP_REPLY_MAX_LINE 4096
#define SMTP_REPLY_MAX_LINES 100
/* Reply text kept (joined lines, NUL included); longer text ends "...". */
#define SMTP_REPLY_TEXT_MAX 512

struct smtp_reply {
    int code;     /* 200..559; 0 = no reply (local or connection result) */
    char enh[16]; /* enhanced status "4.2.0" (RFC 3463) or "" */
    /* The lines' text without code and enhanced status, joined with one
     * space; anything not printable ASCII shown as '?'. */
    char text[SMTP_REPLY_TEXT_MAX];
    unsigned lines; /* lines in the reply */
};

/*
 * Parses one reply at the start of buf[0..len). Returns 1 with *used set to
 * the bytes it took, 0 when the reply is not complete yet, or SR_EPARSE
 * (reason in err) when the bytes are not a valid reply: a line that does
 * not start with a code 2xx..5xx followed by ' ', '-' or the line end, a
 * continuation line with another code, a line longer than
 * SMTP_REPLY_MAX_LINE, or more than SMTP_REPLY_MAX_LINES lines. A bare LF
 * ends a line like CRLF. The enhanced status is taken from the first line
 * when its class matches the code's first digit. Pure: no allocation.
 */
int smtp_reply_parse(const char *buf, size_t len, struct smtp_reply *r,
                     size_t *used, char *err, size_t errlen);

#define SMTP_EXT_PIPELINING 0x01u
#define SMTP_EXT_SIZE 0x02u
#define SMTP_EXT_8BITMIME 0x04u
#define SMTP_EXT_SMTPUTF8 0x08u
#define SMTP_EXT_STARTTLS 0x10u
#define SMTP_EXT_ENHANCEDSTATUSCODES 0x20u

struct smtp_ext {
    unsigned flags;  /* SMTP_EXT_* */
    size_t size_max; /* SIZE n; 0 = no limit given */
};

/* Reads the extensions from a complete EHLO reply as smtp_reply_parse()
 * delimited it (raw bytes, *used long): every line after the first. Keywords
 * are case-insensitive; unknown ones are ignored. */
void smtp_ehlo_parse(const char *raw, size_t len, struct smtp_ext *ext);

/* Dot-stuffing (RFC 5321 4.5.2) with CRLF line ends: a body fed in any
 * number of pieces comes out as its wire form. CRLF, a bare LF and a bare
 * CR each become CRLF; a line starting with '.' gets one more '.'. */
struct smtp_stuffer {
    int state; /* private */
};

void smtp_stuff_init(struct smtp_stuffer *s);
/* Writes the wire form of in[0..len) to out, which holds 2 * len bytes;
 * returns the bytes written. */
size_t smtp_stuff(struct smtp_stuffer *s, const char *in, size_t len,
                  char *out);
/* Writes the end of data to out (5 bytes room): CRLF when the last line
 * is not ended, then ".\r\n". Returns the bytes written. */
size_t smtp_stuff_end(struct smtp_stuffer *s, char *out);

/* ------------------------------------------------------------------ */
/* The client                                                          */
/* ------------------------------------------------------------------ */

struct smtp_client;

enum smtp_tls_mode {
    SMTP_TLS_NONE,          /* never STARTTLS */
    SMTP_TLS_OPPORTUNISTIC, /* STARTTLS when offered */
    SMTP_TLS_REQUIRED,      /* no STARTTLS = failed connection */
};

/* Milliseconds; 0 = the default in the comment. */
struct smtp_client_timeouts {
    unsigned connect;    /* TCP connect, 30 s */
    unsigned greeting;   /* 220 greeting, 300 s (4.5.3.2.1) */
    unsigned helo;       /* EHLO / HELO reply, 300 s */
    unsigned starttls;   /* STARTTLS reply, then the handshake, 300 s */
    unsigned mail;       /* MAIL reply, 300 s (4.5.3.2.2) */
    unsigned rcpt;       /* each RCPT reply, 300 s (4.5.3.2.3) */
    unsigned data_init;  /* DATA reply, 120 s (4.5.3.2.4) */
    unsigned data_block; /* each 64 KiB block written, 180 s (4.5.3.2.5) */
    unsigned data_end;   /* reply to the final ".", 600 s (4.5.3.2.6) */
    unsigned rset;       /* RSET reply, 20 s */
    unsigned quit;       /* QUIT reply, 5 s */
    unsigned idle;       /* READY without a message, 10 s */
};

struct smtp_client_opts {
    /* Destination: addr when non-NULL, else address "ip:port" or
     * "[ipv6]:port" (numeric only). */
    const struct sockaddr *addr;
    const char *address;
    /* Source to bind (port 0): source_addr when non-NULL, else source (a
     * numeric IP) when non-NULL, else the kernel's choice. */
    const struct sockaddr *source_addr;
    const char *source;
    const char *ehlo_name; /* NULL = "localhost" */
    enum smtp_tls_mode tls_mode;
    /* Check the server's certificate chain against tls_ca_file (NULL: the
     * system's default store) and its name against tls_hostname (needed
     * when verifying). Off by default, as usual for opportunistic TLS.
     * tls_hostname also goes out as SNI when set. */
    bool tls_verify;
    /* A context to share (borrowed; the client takes its own reference):
     * tls_verify and tls_ca_file are then the context's business. NULL:
     * the client makes one per connection from the fields above. */
    struct ssl_ctx_st *ssl_ctx;
    const char *tls_ca_file;
    const char *tls_hostname;
    struct smtp_client_timeouts timeouts;
};

enum smtp_client_event_type {
    SMTP_CLIENT_READY,  /* smtp_client_send() may be called */
    SMTP_CLIENT_FAILED, /* never got ready; the connection is gone */
    SMTP_CLIENT_CLOSED, /* was ready; the connection is gone */
};

struct smtp_client_event {
    enum smtp_client_event_type type;
    const char *reason;             /* one line; "" for READY */
    const struct smtp_reply *reply; /* the reply behind it, or NULL */
    /* READY: what the server offers (after STARTTLS, if any). */
    const struct smtp_ext *ext;
    bool esmtp;              /* EHLO accepted (else HELO) */
    const char *tls_version; /* "TLSv1.3"; NULL = plaintext */
    const char *tls_cipher;
    bool tls_failed; /* FAILED: the TLS handshake failed */
};

typedef void (*smtp_client_event_cb)(struct smtp_client *c,
                                     const struct smtp_client_event *ev,
                                     void *ud);

struct smtp_client_msg {
    const char *sender; /* reverse-path without <>; "" = null sender */
    const char *const *rcpts;
    unsigned n_rcpts; /* >= 1 */
    const char *body; /* RFC 5322 message, CRLF line ends, not stuffed */
    size_t body_len;
    size_t size; /* for SIZE=; 0 = body_len */
    /* The message needs SMTPUTF8 (UTF-8 headers). Also set by itself when
     * an address is not ASCII. Needed but not offered = SMTP_PERMFAIL
     * (RFC 6531 3.4). BODY=8BITMIME goes out when the body has a byte above
     * 127 and the server offers 8BITMIME. */
    bool smtputf8;
};

enum smtp_status {
    SMTP_OK,       /* delivered */
    SMTP_TEMPFAIL, /* try again later */
    SMTP_PERMFAIL, /* bounce */
};

/* Where a failed transaction was decided. */
enum smtp_stage {
    SMTP_STAGE_NONE,       /* delivered */
    SMTP_STAGE_LOCAL,      /* refused before sending (SIZE, SMTPUTF8) */
    SMTP_STAGE_CONNECTION, /* timeout, reset, 421, protocol or TLS error */
    SMTP_STAGE_RSET,
    SMTP_STAGE_MAIL,
    SMTP_STAGE_RCPT, /* every recipient refused */
    SMTP_STAGE_DATA, /* DATA not answered 354 */
    SMTP_STAGE_DOT,  /* end of data not answered 2xx */
};

struct smtp_rcpt_result {
    const char *rcpt; /* m->rcpts[i] */
    enum smtp_status status;
    struct smtp_reply reply; /* the RCPT reply; code 0 = none came */
};

struct smtp_client_result {
    enum smtp_status status; /* SMTP_OK: at least one recipient delivered */
    enum smtp_stage stage;
    struct smtp_reply mail; /* MAIL reply; code 0 = none */
    /* DATA reply when it was not 354, else the end-of-data reply. */
    struct smtp_reply data;
    const struct smtp_rcpt_result *rcpts; /* n_rcpts, in m's order */
    unsigned n_rcpts;
    unsigned n_ok;
    bool conn_dead; /* the connection ended (CLOSED follows) */
    /* One line: what went wrong and where ("host 192.0.2.1:25 said: 550
     * 5.1.1 No such user (in reply to RCPT TO)"); "" when all went well. */
    char reason[768];
};

typedef void (*smtp_client_msg_cb)(struct smtp_client *c,
                                   const struct smtp_client_result *r,
                                   void *ud);

/* Starts connecting. Returns 0 (then cb gets READY or FAILED) or SR_EINVAL
 * (bad options), SR_ENOMEM, SR_EIO (socket, bind or connect refused at
 * once) with the reason in err. */
/* A client context for opportunistic TLS (no certificate check, no
 * renegotiation) to share between connections through opts.ssl_ctx; the
 * caller frees it with SSL_CTX_free. NULL when out of memory. */
struct ssl_ctx_st *smtp_client_tls_ctx(void);

int smtp_client_connect(uv_loop_t *loop, const struct smtp_client_opts *opts,
                        smtp_client_event_cb cb, void *ud,
                        struct smtp_client **out, char *err, size_t errlen);

/* Sends one message on a READY connection with no message in flight.
 * Returns 0 (cb runs later, never from inside this call), SR_EINVAL (busy,
 * not ready, no recipients, or an address with control characters, '<',
 * '>' or over 256 bytes), SR_ESHUTDOWN (quitting or gone) or SR_ENOMEM. */
int smtp_client_send(struct smtp_client *c, const struct smtp_client_msg *m,
                     smtp_client_msg_cb cb, void *ud);

/* Ends a READY connection politely: QUIT (after the message in flight, if
 * any), wait for the reply, close; CLOSED follows. Returns 0, SR_EINVAL
 * (not ready yet: use smtp_client_close()) or SR_ESHUTDOWN (already
 * ending). */
int smtp_client_quit(struct smtp_client *c);

/* Aborts at once; no callback runs after this. NULL is allowed. */
void smtp_client_close(struct smtp_client *c);

/* True between READY and the end with no message in flight. */
bool smtp_client_idle(const struct smtp_client *c);

/* "host:port" of the destination, for logs. */
const char *smtp_client_peer(const struct smtp_client *c);

#endif
