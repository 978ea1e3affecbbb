/*
 * track.c - the tracking endpoints every node serves on tracking.listen
 * (docs/ADMIN_API.md "Tracking"): the links that the re-wrap writes
 * (engine/rewrap.h) come back here.
 *
 *   GET  /o/TOKEN  1x1 GIF; records an open
 *   GET  /c/TOKEN  302 to the original URL; records a click
 *   GET  /u/TOKEN  a small page with a confirmation button
 *   POST /u/TOKEN  unsubscribes (RFC 8058 one-click: the body is
 *                  "List-Unsubscribe=One-Click"; the page's form too)
 *
 * A token is checked against the policy's tracking secret before anything
 * is recorded: malformed = 400, not ours or tampered = 404, and nothing is
 * recorded. Each event is a TrackEvent op through Raft (batched with
 * everything else). Opens and clicks answer at once (a mail client does
 * not wait); an unsubscribe answers once it is committed, so that "you
 * are unsubscribed" is true.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/token.h"
#include "node/errors.h"
#include "node/log.h"
#include "node/node_int.h"
#include "queue/dqueue.h"
#include "queue/policy.h"

/* The smallest transparent GIF: 1x1, one colour. */
static const unsigned char gif[] = {
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80,
    0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0x21, 0xf9, 0x04,
    0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01,
    0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b};

#define NO_STORE "Cache-Control: no-store\r\n"

static void recorded(void *ud, int status, uint64_t index)
{
    (void)ud;
    (void)index;
    if (status < 0)
        LOG_WARN("event=track_not_recorded error=%s", sr_strerror(status));
}

static void unsubscribed(void *ud, int status, uint64_t index)
{
    (void)index;
    struct http_conn *c = ud;
    static const char ok[] =
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>"
        "Unsubscribed</title></head><body><p>You are unsubscribed.</p>"
        "</body></html>\n";
    if (status >= 0)
        http_reply_ex(c, 200, "text/html; charset=utf-8", NO_STORE, ok,
                      sizeof ok - 1);
    else if (status == SR_ENOTFOUND)
        http_reply_error(c, 404, "unknown message");
    else
        http_reply_error(c, 503, "try again later");
}

static int propose(struct sr_node *n, unsigned type, const struct token *t,
                   rnode_cb cb, void *ud)
{
    Sr__TrackEvent te = SR__TRACK_EVENT__INIT;
    te.type = type;
    te.code = (char *)t->code;
    te.rcpt = t->rcpt_index;
    te.url = t->url ? t->url : "";
    te.node = n->cfg->node_id;
    Sr__Op op = SR__OP__INIT;
    op.op_case = SR__OP__OP_TRACK_EVENT;
    op.track_event = &te;
    return rnode_propose(n->rn, &op, 10000, cb, ud);
}

static bool safe_url(const char *u)
{
    for (const unsigned char *p = (const unsigned char *)u; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return false;
    return strncmp(u, "http://", 7) == 0 || strncmp(u, "https://", 8) == 0;
}

void track_http(void *ud, struct http_conn *c, const struct http_request *req)
{
    struct sr_node *n = ud;
    const struct policy *pol = n->policy;
    bool get =
        strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
    bool post = strcmp(req->method, "POST") == 0;
    const char *p = req->path;
    enum token_kind kind;
    if (strncmp(p, "/o/", 3) == 0)
        kind = TOKEN_OPEN;
    else if (strncmp(p, "/c/", 3) == 0)
        kind = TOKEN_CLICK;
    else if (strncmp(p, "/u/", 3) == 0)
        kind = TOKEN_UNSUBSCRIBE;
    else {
        http_reply_error(c, 404, "no such endpoint");
        return;
    }
    if (!get && !(post && kind == TOKEN_UNSUBSCRIBE)) {
        http_reply_error(c, 405, "method not allowed");
        return;
    }
    if (n->stopping || pol == NULL || pol->tracking == NULL) {
        http_reply_error(c, 404, "tracking is not configured");
        return;
    }
    struct token t;
    char err[SR_ERRMSG_SIZE];
    int rc = token_decode(p + 3, strlen(p + 3), pol->tracking->secret,
                          pol->tracking->secret_len, kind, &t, err, sizeof err);
    if (rc == SR_EAUTH) {
        LOG_INFO("event=track_refused peer=%s reason=\"%s\"", http_conn_peer(c),
                 err);
        http_reply_error(c, 404, "unknown or tampered link");
        return;
    }
    if (rc != 0) {
        http_reply_error(c, 400, "malformed link");
        return;
    }
    if (kind == TOKEN_OPEN) {
        if (propose(n, EVENT_OPEN, &t, recorded, NULL) != 0)
            LOG_WARN("code=%s event=open_not_recorded", t.code);
        http_reply_ex(c, 200, "image/gif", NO_STORE, (const char *)gif,
                      sizeof gif);
    } else if (kind == TOKEN_CLICK) {
        if (t.url == NULL || !safe_url(t.url) || strlen(t.url) > 8192) {
            http_reply_error(c, 400, "malformed link");
        } else {
            if (propose(n, EVENT_CLICK, &t, recorded, NULL) != 0)
                LOG_WARN("code=%s event=click_not_recorded", t.code);
            size_t hl = strlen(t.url) + 64;
            char *h = malloc(hl);
            if (h == NULL) {
                http_reply_error(c, 503, "out of memory");
            } else {
                snprintf(h, hl, "Location: %s\r\n" NO_STORE, t.url);
                http_reply_ex(c, 302, NULL, h, NULL, 0);
                free(h);
            }
        }
    } else if (get) {
        /* A GET must not unsubscribe (link scanners follow links): a form
         * that POSTs what RFC 8058 clients send. */
        static const char fmt[] =
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>"
            "Unsubscribe</title></head><body><form method=\"post\" "
            "action=\"%s\"><input type=\"hidden\" name=\"List-Unsubscribe\" "
            "value=\"One-Click\"><p>Stop receiving these messages?</p>"
            "<button type=\"submit\">Unsubscribe</button></form></body>"
            "</html>\n";
        char page[2048];
        int len = snprintf(page, sizeof page, fmt, p);
        http_reply_ex(c, 200, "text/html; charset=utf-8", NO_STORE, page,
                      (size_t)len < sizeof page ? (size_t)len : 0);
    } else {
        if (req->body_len < 26 ||
            memmem(req->body, req->body_len, "List-Unsubscribe=One-Click",
                   26) == NULL) {
            http_reply_error(c, 400,
                             "want the body List-Unsubscribe=One-Click");
        } else if (propose(n, EVENT_UNSUBSCRIBE, &t, unsubscribed, c) != 0) {
            http_reply_error(c, 503, "try again later");
        }
    }
    token_clear(&t);
}
