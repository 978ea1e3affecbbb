/*
 * smtp_send.c - delivers messages over one connection with
 * gateways/smtp_client.c and prints one JSON line per event and per
 * message, for tests/integration/test_smtp_client.py.
 *
 *   smtp_send --connect IP:PORT [--source IP] [--ehlo NAME]
 *             [--tls none|may|require] [--verify] [--ca FILE]
 *             [--hostname NAME] [--timeout NAME=MS[,NAME=MS...]]
 *             [--end quit|close|idle] MESSAGES.json
 *
 * MESSAGES.json is an array of {"from": "a@x" ("" = null sender),
 * "to": ["b@y", ...], "body_file": PATH or "body": TEXT, "size": N
 * (optional), "smtputf8": bool (optional)}. The messages are sent one
 * after the other on the same connection, each from the result callback
 * of the one before. After the last one, --end says what happens: QUIT
 * (default), smtp_client_close(), or nothing until the idle timeout ends
 * the connection. Timeout names are the fields of struct
 * smtp_client_timeouts; "all" sets every one.
 *
 * Lines: {"event": "ready", "esmtp", "ext": [...], "size_max", "tls",
 * "cipher"}, {"event": "failed" | "closed", "reason", "reply",
 * "tls_failed"}, and per message {"message": I, "status": "ok" | "temp" |
 * "perm", "stage", "reason", "n_ok", "conn_dead", "mail", "data",
 * "rcpts": [{"rcpt", "status", "code", "enh", "text"}]}; a message that
 * was never sent gets {"message": I, "status": "not_sent"}. Exit status 0
 * when every message got a result and the loop closed cleanly, 1 when the
 * connection failed or messages were left, 2 on bad usage, 3 when handles
 * were left open on the loop.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "gateways/smtp_client.h"
#include "node/errors.h"

struct msg {
    struct smtp_client_msg m;
    char *from;
    char **to;
    char *body;
};

struct run {
    uv_loop_t *loop;
    struct smtp_client *c;
    struct msg *msgs;
    int n, next, answered;
    int end; /* 0 quit, 1 close, 2 idle */
    bool failed;
};

static void print_json(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);
    if (s != NULL) {
        printf("%s\n", s);
        fflush(stdout);
        free(s);
    }
    json_decref(o);
}

static json_t *reply_json(const struct smtp_reply *r)
{
    if (r == NULL || r->code == 0)
        return json_null();
    return json_pack("{s:i, s:s, s:s, s:i}", "code", r->code, "enh", r->enh,
                     "text", r->text, "lines", (int)r->lines);
}

static const char *status_name(enum smtp_status s)
{
    switch (s) {
    case SMTP_OK:
        return "ok";
    case SMTP_TEMPFAIL:
        return "temp";
    case SMTP_PERMFAIL:
        return "perm";
    }
    return "?";
}

static const char *stage_name(enum smtp_stage s)
{
    static const char *names[] = {"none", "local", "connection", "rset",
                                  "mail", "rcpt",  "data",       "dot"};
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}

static void send_next(struct run *run);

static void finish(struct run *run)
{
    if (run->end == 0) {
        if (smtp_client_quit(run->c) != 0)
            smtp_client_close(run->c);
    } else if (run->end == 1) {
        smtp_client_close(run->c);
        run->c = NULL;
    }
    /* end == 2: the idle timer ends the connection */
}

static void on_msg(struct smtp_client *c, const struct smtp_client_result *r,
                   void *ud)
{
    struct run *run = ud;
    (void)c;
    json_t *rcpts = json_array();
    for (unsigned j = 0; j < r->n_rcpts; j++) {
        const struct smtp_rcpt_result *rr = &r->rcpts[j];
        json_array_append_new(
            rcpts,
            json_pack("{s:s, s:s, s:i, s:s, s:s}", "rcpt", rr->rcpt, "status",
                      status_name(rr->status), "code", rr->reply.code, "enh",
                      rr->reply.enh, "text", rr->reply.text));
    }
    print_json(json_pack("{s:i, s:s, s:s, s:s, s:i, s:b, s:o, s:o, s:o}",
                         "message", run->answered, "status",
                         status_name(r->status), "stage", stage_name(r->stage),
                         "reason", r->reason, "n_ok", (int)r->n_ok, "conn_dead",
                         r->conn_dead, "mail", reply_json(&r->mail), "data",
                         reply_json(&r->data), "rcpts", rcpts));
    run->answered++;
    if (r->conn_dead)
        return; /* CLOSED follows */
    if (run->next < run->n)
        send_next(run);
    else
        finish(run);
}

static void send_next(struct run *run)
{
    while (run->next < run->n) {
        int i = run->next++;
        int rc = smtp_client_send(run->c, &run->msgs[i].m, on_msg, run);
        if (rc == 0)
            return;
        print_json(json_pack("{s:i, s:s, s:s}", "message", i, "status", "error",
                             "error", sr_strerror(rc)));
        run->answered++;
    }
    finish(run);
}

static void on_event(struct smtp_client *c, const struct smtp_client_event *ev,
                     void *ud)
{
    struct run *run = ud;
    if (ev->type == SMTP_CLIENT_READY) {
        json_t *ext = json_array();
        static const struct {
            unsigned flag;
            const char *name;
        } names[] = {{SMTP_EXT_PIPELINING, "PIPELINING"},
                     {SMTP_EXT_SIZE, "SIZE"},
                     {SMTP_EXT_8BITMIME, "8BITMIME"},
                     {SMTP_EXT_SMTPUTF8, "SMTPUTF8"},
                     {SMTP_EXT_STARTTLS, "STARTTLS"},
                     {SMTP_EXT_ENHANCEDSTATUSCODES, "ENHANCEDSTATUSCODES"}};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (ev->ext->flags & names[i].flag)
                json_array_append_new(ext, json_string(names[i].name));
        print_json(json_pack(
            "{s:s, s:s, s:b, s:o, s:I, s:o, s:o}", "event", "ready", "peer",
            smtp_client_peer(c), "esmtp", ev->esmtp, "ext", ext, "size_max",
            (json_int_t)ev->ext->size_max, "tls",
            ev->tls_version ? json_string(ev->tls_version) : json_null(),
            "cipher",
            ev->tls_cipher ? json_string(ev->tls_cipher) : json_null()));
        send_next(run);
        return;
    }
    bool failed = ev->type == SMTP_CLIENT_FAILED;
    print_json(json_pack("{s:s, s:s, s:o, s:b}", "event",
                         failed ? "failed" : "closed", "reason", ev->reason,
                         "reply", reply_json(ev->reply), "tls_failed",
                         ev->tls_failed));
    if (failed)
        run->failed = true;
    while (run->next < run->n) {
        print_json(json_pack("{s:i, s:s}", "message", run->next++, "status",
                             "not_sent"));
    }
    run->c = NULL;
}

static int set_timeouts(struct smtp_client_timeouts *t, const char *spec)
{
    char *copy = strdup(spec), *save = NULL;
    int rc = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (eq == NULL) {
            rc = -1;
            break;
        }
        *eq = '\0';
        unsigned v = (unsigned)strtoul(eq + 1, NULL, 10);
        struct {
            const char *name;
            unsigned *field;
        } f[] = {{"connect", &t->connect},     {"greeting", &t->greeting},
                 {"helo", &t->helo},           {"starttls", &t->starttls},
                 {"mail", &t->mail},           {"rcpt", &t->rcpt},
                 {"data_init", &t->data_init}, {"data_block", &t->data_block},
                 {"data_end", &t->data_end},   {"rset", &t->rset},
                 {"quit", &t->quit},           {"idle", &t->idle}};
        bool found = false;
        for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
            if (strcmp(tok, "all") == 0 || strcmp(tok, f[i].name) == 0) {
                *f[i].field = v;
                found = true;
            }
        }
        if (!found) {
            rc = -1;
            break;
        }
    }
    free(copy);
    return rc;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf != NULL && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *p = realloc(buf, cap *= 2);
            if (p == NULL) {
                free(buf);
                buf = NULL;
            } else {
                buf = p;
            }
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

static int load_messages(struct run *run, const char *path)
{
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (root == NULL || !json_is_array(root)) {
        fprintf(stderr, "smtp_send: %s: %s\n", path, je.text);
        json_decref(root);
        return -1;
    }
    run->n = (int)json_array_size(root);
    run->msgs = calloc((size_t)run->n + 1, sizeof *run->msgs);
    for (int i = 0; i < run->n; i++) {
        json_t *o = json_array_get(root, (size_t)i);
        struct msg *m = &run->msgs[i];
        json_t *to = json_object_get(o, "to");
        const char *from = json_string_value(json_object_get(o, "from"));
        const char *bf = json_string_value(json_object_get(o, "body_file"));
        const char *bt = json_string_value(json_object_get(o, "body"));
        m->from = strdup(from ? from : "");
        size_t nt = json_array_size(to);
        m->to = calloc(nt + 1, sizeof *m->to);
        for (size_t j = 0; j < nt; j++)
            m->to[j] = strdup(json_string_value(json_array_get(to, j)));
        size_t blen = 0;
        if (bf != NULL) {
            m->body = read_file(bf, &blen);
            if (m->body == NULL) {
                fprintf(stderr, "smtp_send: cannot read %s\n", bf);
                json_decref(root);
                return -1;
            }
        } else {
            m->body = strdup(bt ? bt : "");
            blen = strlen(m->body);
        }
        m->m.sender = m->from;
        m->m.rcpts = (const char *const *)m->to;
        m->m.n_rcpts = (unsigned)nt;
        m->m.body = m->body;
        m->m.body_len = blen;
        m->m.size = (size_t)json_integer_value(json_object_get(o, "size"));
        m->m.smtputf8 = json_is_true(json_object_get(o, "smtputf8"));
    }
    json_decref(root);
    return 0;
}

static void free_messages(struct run *run)
{
    for (int i = 0; i < run->n; i++) {
        struct msg *m = &run->msgs[i];
        for (unsigned j = 0; m->to && m->to[j]; j++)
            free(m->to[j]);
        free(m->to);
        free(m->from);
        free(m->body);
    }
    free(run->msgs);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: smtp_send --connect IP:PORT [--source IP] [--ehlo NAME]\n"
            "  [--tls none|may|require] [--verify] [--ca FILE]\n"
            "  [--hostname NAME] [--timeout NAME=MS,...]\n"
            "  [--end quit|close|idle] MESSAGES.json\n");
}

int main(int argc, char **argv)
{
    struct smtp_client_opts o = {0};
    struct run run = {0};
    static const struct option lopts[] = {
        {"connect", required_argument, NULL, 'c'},
        {"source", required_argument, NULL, 's'},
        {"ehlo", required_argument, NULL, 'e'},
        {"tls", required_argument, NULL, 't'},
        {"verify", no_argument, NULL, 'v'},
        {"ca", required_argument, NULL, 'a'},
        {"hostname", required_argument, NULL, 'H'},
        {"timeout", required_argument, NULL, 'T'},
        {"end", required_argument, NULL, 'E'},
        {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            o.address = optarg;
            break;
        case 's':
            o.source = optarg;
            break;
        case 'e':
            o.ehlo_name = optarg;
            break;
        case 't':
            if (strcmp(optarg, "none") == 0)
                o.tls_mode = SMTP_TLS_NONE;
            else if (strcmp(optarg, "may") == 0)
                o.tls_mode = SMTP_TLS_OPPORTUNISTIC;
            else if (strcmp(optarg, "require") == 0)
                o.tls_mode = SMTP_TLS_REQUIRED;
            else {
                usage();
                return 2;
            }
            break;
        case 'v':
            o.tls_verify = true;
            break;
        case 'a':
            o.tls_ca_file = optarg;
            break;
        case 'H':
            o.tls_hostname = optarg;
            break;
        case 'T':
            if (set_timeouts(&o.timeouts, optarg) != 0) {
                usage();
                return 2;
            }
            break;
        case 'E':
            if (strcmp(optarg, "quit") == 0)
                run.end = 0;
            else if (strcmp(optarg, "close") == 0)
                run.end = 1;
            else if (strcmp(optarg, "idle") == 0)
                run.end = 2;
            else {
                usage();
                return 2;
            }
            break;
        default:
            usage();
            return 2;
        }
    }
    if (o.address == NULL || optind != argc - 1) {
        usage();
        return 2;
    }
    if (load_messages(&run, argv[optind]) != 0) {
        free_messages(&run);
        return 2;
    }

    uv_loop_t loop;
    uv_loop_init(&loop);
    run.loop = &loop;
    char err[SR_ERRMSG_SIZE] = "";
    int rc =
        smtp_client_connect(&loop, &o, on_event, &run, &run.c, err, sizeof err);
    if (rc != 0) {
        print_json(json_pack("{s:s, s:s, s:o, s:b}", "event", "failed",
                             "reason", err, "reply", json_null(), "tls_failed",
                             0));
        run.failed = true;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    int status = run.failed || run.answered < run.n ? 1 : 0;
    if (uv_loop_close(&loop) != 0) {
        fprintf(stderr, "smtp_send: handles left open on the loop\n");
        status = 3;
    }
    free_messages(&run);
    return status;
}
