/*
 * fuzz_smtp_session.c - libFuzzer target for the ESMTP state machine.
 *
 * Input layout: byte 0 picks the feed() chunk size (so one input is also
 * tried split at odd places), byte 1 picks the limits and whether the
 * callbacks answer inside the callback or after feed() returns, the rest
 * is what the client sends. Messages are answered 250 and 451 in turn,
 * AUTH succeeds every other time, TLS always completes.
 *
 * Besides the sanitizers it checks the contract: every write is one or
 * more whole CRLF lines of at most 512 octets, nothing is written after
 * cb.close, close fires once, and a delivered body and envelope respect
 * the limits.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "gateways/smtp_session.h"
#include "node/errors.h"

struct fz {
    struct smtp_session *s;
    struct smtp_limits lim;
    bool defer;
    int pending; /* 0 none, 1 message, 2 auth, 3 tls */
    unsigned n_msg, n_auth;
    bool closed;
};

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond))                                                           \
            __builtin_trap();                                                  \
    } while (0)

static void fz_answer(struct fz *f, int what)
{
    if (what == 1) {
        if (f->n_msg++ % 2 == 0)
            smtp_session_reply_message(f->s, 250, "2.0.0 OK queued");
        else
            smtp_session_reply_message(f->s, 451, "4.3.0 Try again later");
    } else if (what == 2) {
        smtp_session_reply_auth(f->s, f->n_auth++ % 2 == 0);
    } else if (what == 3) {
        smtp_session_tls_started(f->s);
    }
}

static void fz_wait(struct fz *f, int what)
{
    CHECK(!f->closed && f->pending == 0 && smtp_session_busy(f->s));
    if (f->defer)
        f->pending = what;
    else
        fz_answer(f, what);
}

static void fz_write(void *ud, const char *buf, size_t len)
{
    struct fz *f = ud;

    CHECK(!f->closed);
    CHECK(len >= 2 && len <= 512);
    CHECK(buf[len - 2] == '\r' && buf[len - 1] == '\n');
    for (size_t i = 0; i + 2 < len; i++)
        CHECK(buf[i] != '\r' && buf[i] != '\n' && buf[i] != '\0');
}

static void fz_starttls(void *ud)
{
    fz_wait(ud, 3);
}

static void fz_message(void *ud, const struct smtp_envelope *env,
                       const char *body, size_t len)
{
    struct fz *f = ud;

    CHECK(body != NULL);
    CHECK(f->lim.max_message_size == 0 || len <= f->lim.max_message_size);
    CHECK(env->helo != NULL && env->mail_from != NULL);
    CHECK(env->n_rcpts > 0 && env->n_rcpts <= f->lim.max_recipients);
    for (unsigned i = 0; i < env->n_rcpts; i++)
        CHECK(strlen(env->rcpts[i]) <= 256 && env->rcpts[i][0] != '\0');
    CHECK(!f->lim.auth_required || env->auth_user != NULL);
    fz_wait(f, 1);
}

static void fz_auth(void *ud, const char *user, const char *pass)
{
    struct fz *f = ud;

    CHECK(user[0] != '\0' && pass != NULL);
    fz_wait(f, 2);
}

static void fz_close(void *ud)
{
    struct fz *f = ud;

    CHECK(!f->closed);
    f->closed = true;
}

static void fz_resolve(struct fz *f)
{
    while (f->pending != 0) {
        int what = f->pending;
        f->pending = 0;
        fz_answer(f, what);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz f;
    struct smtp_callbacks cb = {
        .write = fz_write,
        .starttls = fz_starttls,
        .message = fz_message,
        .auth = fz_auth,
        .close = fz_close,
    };
    size_t chunk;
    uint8_t mode;

    if (size < 2)
        return 0;
    /* 1..128 bytes, or everything at once. */
    chunk = data[0] == 0xff ? size : (size_t)(data[0] & 0x7f) + 1;
    mode = data[1];
    data += 2;
    size -= 2;

    memset(&f, 0, sizeof(f));
    f.defer = mode & 0x01;
    f.lim.tls_available = !(mode & 0x02);
    f.lim.auth_enabled = !(mode & 0x04);
    f.lim.auth_required = (mode & 0x08) != 0;
    /* Small limits so that the fuzzer reaches them. */
    f.lim.max_message_size = (mode & 0x10) ? 64 : 0;
    f.lim.max_recipients = (mode & 0x20) ? 2 : 100;
    f.lim.max_bad_commands = (mode & 0x40) ? 3 : 0;
    f.lim.max_line = 512;
    cb.ud = &f;
    f.s = smtp_session_new("fuzz.test", &f.lim, &cb);
    if (f.s == NULL)
        return 0;
    smtp_session_start(f.s);
    for (size_t off = 0; off < size; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        int rc = smtp_session_feed(f.s, (const char *)data + off, n);
        CHECK(rc == 0 || rc == SR_EFULL);
        fz_resolve(&f);
    }
    if (mode & 0x80)
        smtp_session_shutdown(f.s, "Fuzz over");
    fz_resolve(&f);
    smtp_session_free(f.s);
    return 0;
}
