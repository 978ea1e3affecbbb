/* dsn.c - bounce classes and RFC 3464 notifications (see dsn.h). */
#include "engine/dsn.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "node/errors.h"
#include "queue/dqueue.h"

#define HEADERS_MAX 65536

static bool has(const char *hay, const char *needle)
{
    return strcasestr(hay, needle) != NULL;
}

void dsn_status(const char *reply, const char *fallback, char out[16])
{
    snprintf(out, 16, "%s", fallback);
    if (reply == NULL || !isdigit((unsigned char)reply[0]) ||
        !isdigit((unsigned char)reply[1]) || !isdigit((unsigned char)reply[2]))
        return;
    char cls = reply[0];
    if (cls != '2' && cls != '4' && cls != '5')
        return;
    snprintf(out, 16, "%c.0.0", cls);
    const char *p = reply + 3;
    while (*p == ' ' || *p == '-')
        p++;
    /* class.subject.detail: 1 digit, 1-3 digits, 1-3 digits */
    if (p[0] != cls || p[1] != '.')
        return;
    const char *q = p + 2;
    int a = 0, b = 0;
    while (isdigit((unsigned char)q[a]) && a < 4)
        a++;
    if (a == 0 || a > 3 || q[a] != '.')
        return;
    const char *r = q + a + 1;
    while (isdigit((unsigned char)r[b]) && b < 4)
        b++;
    if (b == 0 || b > 3 || (r[b] != '\0' && r[b] != ' '))
        return;
    snprintf(out, 16, "%.*s", (int)(r + b - p), p);
}

const char *dsn_classify(const char *reply, unsigned outcome)
{
    if (outcome == DELIVERY_EXPIRED)
        return "message_expired";
    if (reply == NULL)
        reply = "";
    char st[16];
    dsn_status(reply, "", st);
    if (outcome == DELIVERY_DEFERRED || st[0] == '4')
        return "transient";
    if (strncmp(st, "5.1.1", 5) == 0 || strncmp(st, "5.1.0", 5) == 0 ||
        strncmp(st, "5.1.6", 5) == 0 || has(reply, "user unknown") ||
        has(reply, "no such user") || has(reply, "unknown recipient") ||
        has(reply, "does not exist") || has(reply, "mailbox unavailable"))
        return "invalid_recipient";
    if (strncmp(st, "5.2.2", 5) == 0 || has(reply, "mailbox full") ||
        has(reply, "over quota") || has(reply, "quota exceeded"))
        return "mailbox_full";
    if (strncmp(st, "5.1.2", 5) == 0 || strncmp(st, "5.4.4", 5) == 0 ||
        has(reply, "null mx") || has(reply, "nxdomain") ||
        has(reply, "host not found") || has(reply, "domain not found"))
        return "domain_error";
    if (has(reply, "relay") &&
        (has(reply, "denied") || has(reply, "not permitted")))
        return "relay_denied";
    if (strncmp(st, "5.6.", 4) == 0 || has(reply, "content") ||
        has(reply, "virus") || has(reply, "message rejected"))
        return "content_rejected";
    if (strncmp(st, "5.7.", 4) == 0 || has(reply, "spam") ||
        has(reply, "blocked") || has(reply, "blacklist") ||
        has(reply, "blocklist") || has(reply, "policy") ||
        has(reply, "reputation"))
        return "policy_block";
    return "other";
}

struct buf {
    char *p;
    size_t len, cap;
    int err;
};

static void add(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void add(struct buf *b, const char *fmt, ...)
{
    if (b->err)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->err = SR_EINVAL;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->err = SR_ENOMEM;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

/* The original header block, CRLF line ends, at most HEADERS_MAX bytes
 * (cut at a line end). */
static void add_headers(struct buf *b, const char *m, size_t len)
{
    size_t i = 0, out = 0;
    while (i < len && out < HEADERS_MAX) {
        size_t e = i;
        while (e < len && m[e] != '\n')
            e++;
        size_t l = e;
        if (l > i && m[l - 1] == '\r')
            l--;
        if (l == i)
            break; /* the empty line: end of the header */
        add(b, "%.*s\r\n", (int)(l - i), m + i);
        out += l - i + 2;
        i = e + 1;
    }
}

static void rfc5322_date(uint64_t ms, char *out, size_t len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, len, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

int dsn_build(const struct dsn_info *in, char **out, size_t *len)
{
    if (in->host == NULL || in->code == NULL || in->sender == NULL ||
        in->rcpt == NULL || in->sender[0] == '\0')
        return SR_EINVAL;
    struct buf b = {malloc(4096), 0, 4096, 0};
    if (b.p == NULL)
        return SR_ENOMEM;
    char now[64], arrival[64], status[16], boundary[64];
    rfc5322_date(in->now_ms, now, sizeof now);
    rfc5322_date(in->arrival_ms, arrival, sizeof arrival);
    const char *reply = in->reply ? in->reply : "";
    bool expired = in->outcome == DELIVERY_EXPIRED;
    dsn_status(reply, expired ? "4.4.7" : "5.0.0", status);
    if (expired)
        snprintf(status, sizeof status, "4.4.7");
    else if (status[0] != '5')
        snprintf(status, sizeof status, "5.0.0");
    /* deterministic boundary: the code cannot appear in the parts */
    unsigned h = 5381;
    for (const char *c = in->code; *c; c++)
        h = h * 33 + (unsigned char)*c;
    snprintf(boundary, sizeof boundary, "SR-DSN-%08X-%u", h,
             (unsigned)(in->now_ms % 1000000));
    add(&b, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", in->host);
    add(&b, "To: <%s>\r\n", in->sender);
    add(&b, "Subject: %s\r\n",
        expired ? "Delivery time expired: message not delivered"
                : "Undelivered Mail Returned to Sender");
    add(&b, "Date: %s\r\n", now);
    add(&b, "Message-ID: <dsn.%s@%s>\r\n", in->code, in->host);
    add(&b, "Auto-Submitted: auto-replied\r\n");
    add(&b, "MIME-Version: 1.0\r\n");
    add(&b,
        "Content-Type: multipart/report; report-type=delivery-status;\r\n"
        "\tboundary=\"%s\"\r\n\r\n",
        boundary);
    add(&b, "This is a MIME-encapsulated message.\r\n\r\n");
    add(&b, "--%s\r\n", boundary);
    add(&b, "Content-Description: Notification\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n\r\n");
    add(&b, "This is the mail system at host %s.\r\n\r\n", in->host);
    if (expired)
        add(&b, "Your message could not be delivered before it expired.\r\n");
    else
        add(&b, "I'm sorry to have to inform you that your message could "
                "not\r\nbe delivered to one or more recipients.\r\n");
    add(&b, "\r\n<%s>: %s\r\n\r\n", in->rcpt, reply);
    add(&b, "--%s\r\n", boundary);
    add(&b, "Content-Description: Delivery report\r\n"
            "Content-Type: message/delivery-status\r\n\r\n");
    add(&b, "Reporting-MTA: dns; %s\r\n", in->host);
    add(&b, "X-SmartRelay-ID: %s\r\n", in->code);
    add(&b, "Arrival-Date: %s\r\n\r\n", arrival);
    add(&b, "Final-Recipient: rfc822; %s\r\n", in->rcpt);
    add(&b, "Action: failed\r\n");
    add(&b, "Status: %s\r\n", status);
    if (in->relay && in->relay[0] && strcmp(in->relay, "none") != 0) {
        /* "host[ip]:port" -> the host name */
        size_t hl = strcspn(in->relay, "[:");
        add(&b, "Remote-MTA: dns; %.*s\r\n", (int)hl, in->relay);
    }
    if (reply[0])
        add(&b, "Diagnostic-Code: %s; %s\r\n",
            isdigit((unsigned char)reply[0]) ? "smtp" : "x-local", reply);
    add(&b, "\r\n--%s\r\n", boundary);
    add(&b, "Content-Description: Undelivered Message Headers\r\n"
            "Content-Type: text/rfc822-headers\r\n\r\n");
    if (in->original)
        add_headers(&b, in->original, in->original_len);
    add(&b, "\r\n--%s--\r\n", boundary);
    if (b.err) {
        free(b.p);
        return b.err;
    }
    *out = b.p;
    *len = b.len;
    return 0;
}
