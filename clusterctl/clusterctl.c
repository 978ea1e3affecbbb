/*
 * clusterctl.c - the operators' command-line tool for a SmartRelay cluster.
 *
 * It speaks to one node's admin API (docs/ADMIN_API.md is the contract)
 * over HTTP/1.1 with the blocking client in http_client.c; every request
 * has a deadline, so a dead node gives an error line, never a hang. An
 * address "https://HOST:PORT" means TLS, with the node's certificate
 * checked against --ca FILE / $SMARTRELAY_CA (default: the system's CA
 * store) and against HOST; "HOST:PORT" and "http://HOST:PORT" are plain
 * HTTP.
 * Changes may be sent to any node: followers forward them to the leader.
 *
 * Output: readable tables by default; with -o json the server's JSON,
 * pretty-printed, so scripts get exactly what the API returned.
 *
 * Failure: one line on stderr starting with "clusterctl: " (a connection
 * error, or the server's {"error":...} text with its status). Exit codes:
 * 0 success, 1 any error, 2 bad usage.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <strings.h>

#include "clusterctl/http_client.h"
#include "node/errors.h"
#include "clusterctl/certs.h"
#include "gateways/auth.h"
#include "queue/policy.h"

#define CTL_DEFAULT_ADDR "127.0.0.1:8080"
#define CTL_MAX_POLICY_FILE (16 * 1024 * 1024)

#define EXIT_ERR 1
#define EXIT_USAGE 2

struct ctl {
    const char *addr;    /* HOST:PORT, without the scheme */
    const char *token;   /* borrowed from argv or the environment */
    const char *ca_file; /* --ca / $SMARTRELAY_CA; NULL: system store */
    bool tls;            /* the address was https:// */
    bool json;
};

static const char usage_text[] =
    "usage: clusterctl [-a [https://]HOST:PORT] [--ca FILE] [-t TOKEN]\n"
    "                  [-o table|json] COMMAND ...\n"
    "\n"
    "  -a ADDRESS     admin API of any node: HOST:PORT or http://HOST:PORT\n"
    "                 for plain HTTP, https://HOST:PORT for TLS (default\n"
    "                 $SMARTRELAY_ADMIN or " CTL_DEFAULT_ADDR ")\n"
    "  --ca FILE      with https://: trust the CA certificates in FILE (PEM)\n"
    "                 (default $SMARTRELAY_CA, else the system's CA store)\n"
    "  -t TOKEN       bearer token (default $SMARTRELAY_TOKEN)\n"
    "  -o table|json  output format (default table)\n"
    "\n"
    "commands:\n"
    "  status                              members, leader, indexes, queue\n"
    "  member add ID ADDRESS [--role R]    add a node (R: "
    "voter|standby|spare,\n"
    "                                      default voter)\n"
    "  member remove ID                    remove a node\n"
    "  member role ID voter|standby|spare  change a node's role\n"
    "  leader transfer [ID]                hand leadership to ID (or any\n"
    "                                      up-to-date voter)\n"
    "  failover [ID]                       move leadership and the floating\n"
    "                                      IP to ID (or any up-to-date voter)\n"
    "  message show CODE                   one message's record\n"
    "  message list [--limit N]            the most recent message codes\n"
    "  policy apply FILE                   replace the policy (YAML or JSON)\n"
    "  policy show                         the current policy\n"
    "  digest                              the replicated state's digest\n"
    "  queue summary                       what waits for delivery: by\n"
    "                                      domain, customer, owning node\n"
    "  queue suspend DOMAIN [--for SECONDS] [--per-minute N] [--reason TEXT]\n"
    "                                      stop (or slow to N a minute)\n"
    "                                      delivery to DOMAIN, for SECONDS\n"
    "                                      or until resumed\n"
    "  queue resume DOMAIN                 end a suspension; what waits for\n"
    "                                      DOMAIN is due at once\n"
    "  queue suspensions                   suspensions in force (operator\n"
    "                                      and response rules)\n"
    "  queue retry CODE|DOMAIN             what waits is due at once\n"
    "  queue bounce CODE [--reason TEXT]   fail what waits (bounce + DSN)\n"
    "  shard list                          delivery shard owners, leases\n"
    "  sms routes                          SMS routes: each SMSC's state and\n"
    "                                      messages sent, as the node sees\n"
    "  sms test NUMBER                     the route and SMSC a message to\n"
    "                                      NUMBER would take now\n"
    "  events [--after SEQ] [--limit N]    delivery events (delivered,\n"
    "                                      deferred, bounced, expired)\n"
    "  ca create DIR                       new cluster CA in DIR (ca.pem, "
    "ca.key)\n"
    "  cert create DIR ID                  node ID's certificate signed by it\n"
    "                                      (DIR/nodeID.pem, DIR/nodeID.key)\n"
    "  password-hash                       hash a password read from stdin\n"
    "                                      for a policy's users[].password\n"
    "  help                                this text\n";

static void ctl_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static void ctl_error(const char *fmt, ...)
{
    va_list ap;
    fputs("clusterctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* A usage error: say what is wrong, point at the help, exit code 2. */
static int ctl_usage(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static int ctl_usage(const char *fmt, ...)
{
    va_list ap;
    fputs("clusterctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'clusterctl help'.\n", stderr);
    return EXIT_USAGE;
}

/* ---- small helpers ---- */

/* Node IDs are 1..65535 (node.id in docs/CONFIG.md). */
static bool parse_id(const char *s, unsigned long *out)
{
    char *end;
    if (s == NULL || *s < '0' || *s > '9')
        return false;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < 1 || v > 65535)
        return false;
    *out = v;
    return true;
}

static bool valid_role(const char *r)
{
    return r != NULL && (strcmp(r, "voter") == 0 || strcmp(r, "standby") == 0 ||
                         strcmp(r, "spare") == 0);
}

/* RFC 3986 2.3: everything but unreserved characters is percent-encoded,
 * so a message code's '/' becomes %2F and stays one path segment. */
static char *url_encode(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = malloc(strlen(s) * 3 + 1);
    if (out == NULL)
        return NULL;
    char *o = out;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
            (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' ||
            *p == '~') {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = '\0';
    return out;
}

/* A JSON scalar as text ("-" when absent), into buf. */
static const char *jstr(json_t *v, char *buf, size_t len)
{
    if (v == NULL || json_is_null(v))
        snprintf(buf, len, "-");
    else if (json_is_string(v))
        snprintf(buf, len, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_real(v))
        snprintf(buf, len, "%g", json_real_value(v));
    else if (json_is_true(v))
        snprintf(buf, len, "yes");
    else if (json_is_false(v))
        snprintf(buf, len, "no");
    else {
        char *d = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        snprintf(buf, len, "%s", d != NULL ? d : "?");
        free(d);
    }
    return buf;
}

/* ---- tables ---- */

#define TABLE_MAX_COLS 8

struct table {
    unsigned ncols;
    const char *head[TABLE_MAX_COLS];
    char **cells; /* rows * ncols strings */
    size_t rows;
};

static void table_init(struct table *t, unsigned ncols, ...)
{
    va_list ap;
    memset(t, 0, sizeof(*t));
    t->ncols = ncols;
    va_start(ap, ncols);
    for (unsigned i = 0; i < ncols; i++)
        t->head[i] = va_arg(ap, const char *);
    va_end(ap);
}

/* Adds a row of ncols strings (copied). */
static void table_add(struct table *t, ...)
{
    va_list ap;
    char **nc = realloc(t->cells, (t->rows + 1) * t->ncols * sizeof(char *));
    if (nc == NULL)
        return;
    t->cells = nc;
    va_start(ap, t);
    for (unsigned i = 0; i < t->ncols; i++) {
        const char *s = va_arg(ap, const char *);
        t->cells[t->rows * t->ncols + i] = strdup(s != NULL ? s : "-");
    }
    va_end(ap);
    t->rows++;
}

static void table_print(struct table *t)
{
    size_t w[TABLE_MAX_COLS];
    for (unsigned c = 0; c < t->ncols; c++) {
        w[c] = strlen(t->head[c]);
        for (size_t r = 0; r < t->rows; r++) {
            const char *s = t->cells[r * t->ncols + c];
            size_t l = s != NULL ? strlen(s) : 1;
            if (l > w[c])
                w[c] = l;
        }
    }
    for (size_t r = 0; r <= t->rows; r++) {
        for (unsigned c = 0; c < t->ncols; c++) {
            const char *s =
                r == 0 ? t->head[c] : t->cells[(r - 1) * t->ncols + c];
            if (s == NULL)
                s = "-";
            if (c + 1 == t->ncols)
                printf("%s\n", s); /* no trailing blanks */
            else
                printf("%-*s  ", (int)w[c], s);
        }
    }
    for (size_t i = 0; i < t->rows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    t->cells = NULL;
    t->rows = 0;
}

/* ---- talking to the node ---- */

/*
 * Sends one request; on a 2xx answer returns 0 and the parsed JSON in
 * *out (NULL if the body was empty or not JSON) and the raw text in *raw.
 * Otherwise prints one error line and returns EXIT_ERR.
 */
static int ctl_call(const struct ctl *ctl, const char *method, const char *path,
                    const char *body, json_t **out, char **raw)
{
    char err[SR_ERRMSG_SIZE];
    struct http_client_request rq = {
        .addr = ctl->addr,
        .method = method,
        .path = path,
        .token = ctl->token,
        .tls = ctl->tls,
        .ca_file = ctl->ca_file,
        .content_type = body != NULL ? "application/json" : NULL,
        .body = body,
        .body_len = body != NULL ? strlen(body) : 0,
    };
    struct http_client_response rs;
    *out = NULL;
    *raw = NULL;
    if (http_client_do(&rq, &rs, err, sizeof(err)) != 0) {
        ctl_error("%s", err);
        return EXIT_ERR;
    }
    json_error_t jerr;
    json_t *j =
        rs.body_len > 0 ? json_loadb(rs.body, rs.body_len, 0, &jerr) : NULL;
    if (rs.status < 200 || rs.status > 299) {
        json_t *e = json_is_object(j) ? json_object_get(j, "error") : NULL;
        if (json_is_string(e)) {
            ctl_error("%s (HTTP %d)", json_string_value(e), rs.status);
        } else {
            /* Not our JSON (a proxy?): show the start of what came. */
            size_t n = strcspn(rs.body, "\r\n");
            ctl_error("server answered HTTP %d%s%.*s", rs.status,
                      n > 0 ? ": " : "", (int)(n > 200 ? 200 : n), rs.body);
        }
        json_decref(j);
        http_client_response_free(&rs);
        return EXIT_ERR;
    }
    *out = j;
    *raw = rs.body; /* ownership passes to the caller */
    return 0;
}

/* -o json: the server's JSON, pretty; raw text if it was not JSON. */
static void print_json(json_t *j, const char *raw)
{
    if (j == NULL) {
        if (raw != NULL && *raw != '\0')
            printf("%s%s", raw, raw[strlen(raw) - 1] == '\n' ? "" : "\n");
        return;
    }
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_ENCODE_ANY);
    if (s != NULL)
        printf("%s\n", s);
    free(s);
}

/* Runs a request and, with -o json or an unexpected body, prints it.
 * Returns 0 with *out set when the caller should print a table. */
static int ctl_fetch(const struct ctl *ctl, const char *method,
                     const char *path, const char *body, json_t **out)
{
    char *raw = NULL;
    int rc = ctl_call(ctl, method, path, body, out, &raw);
    if (rc != 0)
        return rc;
    if (ctl->json || !json_is_object(*out)) {
        print_json(*out, raw);
        json_decref(*out);
        *out = NULL;
    }
    free(raw);
    return 0;
}

/* ---- commands ---- */

/* Reads one line (the password) from stdin and prints its PBKDF2 hash; the
 * password itself never reaches the cluster. */
static int cmd_password_hash(int argc)
{
    if (argc != 0)
        return ctl_usage("password-hash: reads the password from stdin");
    char pw[1024];
    if (fgets(pw, sizeof pw, stdin) == NULL) {
        ctl_error("password-hash: no password on stdin\n");
        return 1;
    }
    pw[strcspn(pw, "\r\n")] = '\0';
    if (pw[0] == '\0') {
        ctl_error("password-hash: empty password\n");
        return 1;
    }
    char out[AUTH_HASH_MAX];
    int rc = auth_hash_password(pw, AUTH_DEFAULT_ITERATIONS, out);
    explicit_bzero(pw, sizeof pw);
    if (rc != 0) {
        ctl_error("password-hash: cannot hash (no randomness?)\n");
        return 1;
    }
    puts(out);
    return 0;
}

static int cmd_status(const struct ctl *ctl)
{
    json_t *j;
    int rc = ctl_fetch(ctl, "GET", "/v1/status", NULL, &j);
    if (rc != 0 || j == NULL)
        return rc;
    char b[4][128];
    json_int_t leader = json_integer_value(json_object_get(j, "leader_id"));

    struct table t;
    table_init(&t, 4, "ID", "ADDRESS", "ROLE", "STATE");
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(j, "members"), i, m)
    {
        json_t *id = json_object_get(m, "id");
        const char *role = json_string_value(json_object_get(m, "role"));
        const char *state = json_string_value(json_object_get(m, "state"));
        /* The API lists roles; the state column marks the leader and
         * names the rest by what their role makes them. */
        if (json_is_integer(id) && json_integer_value(id) == leader)
            state = "leader *";
        else if (state == NULL && role != NULL && strcmp(role, "voter") == 0)
            state = "follower";
        else if (state == NULL)
            state = role;
        table_add(&t, jstr(id, b[0], sizeof(b[0])),
                  jstr(json_object_get(m, "address"), b[1], sizeof(b[1])),
                  role != NULL ? role : "-", state);
    }
    table_print(&t);

    printf("\n");
    printf("node      %s (%s)\n",
           jstr(json_object_get(j, "node_id"), b[0], 128),
           jstr(json_object_get(j, "state"), b[1], 128));
    if (leader > 0)
        printf("leader    %s at %s\n",
               jstr(json_object_get(j, "leader_id"), b[0], 128),
               jstr(json_object_get(j, "leader_address"), b[1], 128));
    else
        printf("leader    none\n");
    printf("term      %s\n", jstr(json_object_get(j, "term"), b[0], 128));
    printf("commit    %s\n",
           jstr(json_object_get(j, "commit_index"), b[0], 128));
    printf("applied   %s\n",
           jstr(json_object_get(j, "applied_index"), b[0], 128));
    printf("last      %s\n", jstr(json_object_get(j, "last_index"), b[0], 128));
    if (json_object_get(j, "messages") != NULL)
        printf("messages  %s\n",
               jstr(json_object_get(j, "messages"), b[0], 128));
    if (json_object_get(j, "digest") != NULL)
        printf("digest    %s\n", jstr(json_object_get(j, "digest"), b[0], 128));

    json_t *q = json_object_get(j, "queue");
    if (json_is_object(q) && json_object_size(q) > 0) {
        printf("\n");
        table_init(&t, 2, "QUEUE", "COUNT");
        const char *k;
        json_t *v;
        json_object_foreach(q, k, v)
        {
            table_add(&t, k, jstr(v, b[0], sizeof(b[0])));
        }
        table_print(&t);
    }
    json_decref(j);
    return 0;
}

/* Prints "ok" lines for the change commands. */
static int ctl_change(const struct ctl *ctl, const char *method,
                      const char *path, json_t *body, const char *done)
{
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    json_t *j;
    int rc = ctl_fetch(ctl, method, path, text, &j);
    free(text);
    if (rc != 0 || j == NULL)
        return rc;
    json_t *lid = json_object_get(j, "leader_id");
    json_t *idx = json_object_get(j, "index");
    char b[64];
    if (json_is_integer(lid))
        printf("%s (leader is now %s)\n", done, jstr(lid, b, sizeof(b)));
    else if (json_is_integer(idx))
        printf("%s (index %s)\n", done, jstr(idx, b, sizeof(b)));
    else
        printf("%s\n", done);
    json_decref(j);
    return 0;
}

static int cmd_member(const struct ctl *ctl, int argc, char **argv,
                      const char *role_opt)
{
    char path[64], done[128];
    unsigned long id;
    if (argc < 1)
        return ctl_usage("member: missing subcommand (add, remove, role)");
    const char *sub = argv[0];
    if (strcmp(sub, "add") != 0 && strcmp(sub, "remove") != 0 &&
        strcmp(sub, "role") != 0)
        return ctl_usage("member: unknown subcommand \"%s\"", sub);
    if (argc < 2 || !parse_id(argv[1], &id))
        return ctl_usage("member %s: need a node ID (1..65535)", sub);

    if (strcmp(sub, "add") == 0) {
        if (argc != 3)
            return ctl_usage("member add: want ID ADDRESS [--role R]");
        const char *role = role_opt != NULL ? role_opt : "voter";
        if (!valid_role(role))
            return ctl_usage("bad role \"%s\" (voter, standby or spare)", role);
        if (strchr(argv[2], ':') == NULL)
            return ctl_usage("member add: ADDRESS must be HOST:PORT");
        json_t *b = json_pack("{s:I,s:s,s:s}", "id", (json_int_t)id, "address",
                              argv[2], "role", role);
        snprintf(done, sizeof(done), "member %lu added as %s", id, role);
        return ctl_change(ctl, "POST", "/v1/members", b, done);
    }
    if (role_opt != NULL)
        return ctl_usage("--role goes with member add only");
    if (strcmp(sub, "remove") == 0) {
        if (argc != 2)
            return ctl_usage("member remove: want ID");
        snprintf(path, sizeof(path), "/v1/members/%lu", id);
        snprintf(done, sizeof(done), "member %lu removed", id);
        return ctl_change(ctl, "DELETE", path, NULL, done);
    }
    if (strcmp(sub, "role") == 0) {
        if (argc != 3)
            return ctl_usage("member role: want ID voter|standby|spare");
        if (!valid_role(argv[2]))
            return ctl_usage("bad role \"%s\" (voter, standby or spare)",
                             argv[2]);
        snprintf(path, sizeof(path), "/v1/members/%lu/role", id);
        snprintf(done, sizeof(done), "member %lu is now %s", id, argv[2]);
        return ctl_change(ctl, "POST", path,
                          json_pack("{s:s}", "role", argv[2]), done);
    }
    return ctl_usage("member: unknown subcommand \"%s\"", sub);
}

static int cmd_leader(const struct ctl *ctl, int argc, char **argv)
{
    unsigned long id;
    if (argc < 1 || strcmp(argv[0], "transfer") != 0)
        return ctl_usage("leader: want \"leader transfer [ID]\"");
    if (argc > 2)
        return ctl_usage("leader transfer: too many arguments");
    json_t *b;
    if (argc == 2) {
        if (!parse_id(argv[1], &id))
            return ctl_usage("leader transfer: bad node ID \"%s\"", argv[1]);
        b = json_pack("{s:I}", "id", (json_int_t)id);
    } else {
        b = json_object();
    }
    return ctl_change(ctl, "POST", "/v1/leader/transfer", b,
                      "leadership transferred");
}

static int message_show(const struct ctl *ctl, const char *code)
{
    char *enc = url_encode(code);
    char *path = NULL;
    if (enc == NULL || asprintf(&path, "/v1/messages/%s", enc) < 0) {
        free(enc);
        ctl_error("out of memory");
        return EXIT_ERR;
    }
    free(enc);
    json_t *j;
    int rc = ctl_fetch(ctl, "GET", path, NULL, &j);
    free(path);
    if (rc != 0 || j == NULL)
        return rc;

    static const char *keys[] = {"code",   "mail_from",   "size",
                                 "digest", "accepted_by", "accepted_at",
                                 "holders"};
    char b[512];
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        json_t *v = json_object_get(j, keys[i]);
        if (v != NULL)
            printf("%-12s %s\n", keys[i], jstr(v, b, sizeof(b)));
    }
    /* Keys the API may add later are still shown, after the known ones. */
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v)
    {
        bool known = strcmp(k, "rcpts") == 0;
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]) && !known; i++)
            known = strcmp(k, keys[i]) == 0;
        if (!known)
            printf("%-12s %s\n", k, jstr(v, b, sizeof(b)));
    }
    json_t *rcpts = json_object_get(j, "rcpts");
    if (json_is_array(rcpts) && json_array_size(rcpts) > 0) {
        struct table t;
        char b2[256];
        size_t i;
        json_t *r;
        printf("\n");
        table_init(&t, 2, "RECIPIENT", "STATE");
        json_array_foreach(rcpts, i, r)
        {
            table_add(&t, jstr(json_object_get(r, "address"), b, sizeof(b)),
                      jstr(json_object_get(r, "state"), b2, sizeof(b2)));
        }
        table_print(&t);
    }
    json_decref(j);
    return 0;
}

static int cmd_message(const struct ctl *ctl, int argc, char **argv,
                       const char *limit)
{
    if (argc < 1)
        return ctl_usage("message: missing subcommand (show, list)");
    if (strcmp(argv[0], "show") == 0) {
        if (limit != NULL)
            return ctl_usage("--limit goes with message list only");
        if (argc != 2 || argv[1][0] == '\0')
            return ctl_usage("message show: want CODE");
        return message_show(ctl, argv[1]);
    }
    if (strcmp(argv[0], "list") != 0)
        return ctl_usage("message: unknown subcommand \"%s\"", argv[0]);
    if (argc != 1)
        return ctl_usage("message list: unexpected argument \"%s\"", argv[1]);
    char path[64] = "/v1/messages";
    if (limit != NULL) {
        char *end;
        errno = 0;
        unsigned long n = strtoul(limit, &end, 10);
        if (*limit < '0' || *limit > '9' || *end != '\0' || errno != 0 ||
            n == 0 || n > 1000000)
            return ctl_usage("--limit wants a number from 1 to 1000000");
        snprintf(path, sizeof(path), "/v1/messages?limit=%lu", n);
    }
    json_t *j;
    int rc = ctl_fetch(ctl, "GET", path, NULL, &j);
    if (rc != 0 || j == NULL)
        return rc;
    size_t i;
    json_t *c;
    char b[256];
    json_array_foreach(json_object_get(j, "codes"), i, c)
    {
        printf("%s\n", jstr(c, b, sizeof(b)));
    }
    json_decref(j);
    return 0;
}

static char *read_file(const char *name, size_t *len)
{
    FILE *f = fopen(name, "rb");
    if (f == NULL) {
        ctl_error("cannot open %s: %s", name, strerror(errno));
        return NULL;
    }
    size_t cap = 8192, n = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        if (n + 1 >= cap) {
            char *nb =
                cap >= CTL_MAX_POLICY_FILE ? NULL : realloc(buf, cap * 2);
            if (nb == NULL) {
                ctl_error("%s: too large or out of memory", name);
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) {
            if (ferror(f)) {
                ctl_error("cannot read %s: %s", name, strerror(errno));
                free(buf);
                buf = NULL;
            }
            break;
        }
    }
    fclose(f);
    if (buf != NULL) {
        buf[n] = '\0';
        *len = n;
    }
    return buf;
}

static bool has_suffix(const char *s, const char *suf)
{
    size_t l = strlen(s), sl = strlen(suf);
    return l >= sl && strcasecmp(s + l - sl, suf) == 0;
}

/* The file as compact JSON: JSON files are checked and re-encoded (so
 * every node sees the same canonical bytes); anything else is YAML. */
static char *policy_file_json(const char *name)
{
    size_t len = 0;
    char *text = read_file(name, &len);
    if (text == NULL)
        return NULL;
    size_t ws = strspn(text, " \t\r\n");
    bool is_json = has_suffix(name, ".json") ||
                   (!has_suffix(name, ".yaml") && !has_suffix(name, ".yml") &&
                    text[ws] == '{');
    char *out = NULL;
    if (is_json) {
        json_error_t jerr;
        json_t *j = json_loadb(text, len, 0, &jerr);
        if (j == NULL)
            ctl_error("%s:%d:%d: %s", name, jerr.line, jerr.column, jerr.text);
        else if (!json_is_object(j))
            ctl_error("%s: the policy must be a JSON object", name);
        else
            out = json_dumps(j, JSON_COMPACT);
        json_decref(j);
    } else {
        char err[SR_ERRMSG_SIZE] = "";
        if (policy_yaml_to_json(text, len, &out, err, sizeof(err)) != 0) {
            ctl_error("%s: %s", name, err[0] != '\0' ? err : "bad YAML");
            out = NULL;
        }
    }
    free(text);
    return out;
}

static int cmd_policy(const struct ctl *ctl, int argc, char **argv)
{
    if (argc < 1)
        return ctl_usage("policy: missing subcommand (apply, show)");
    if (strcmp(argv[0], "apply") == 0) {
        if (argc != 2)
            return ctl_usage("policy apply: want FILE");
        char *body = policy_file_json(argv[1]);
        if (body == NULL)
            return EXIT_ERR;
        json_t *j;
        int rc = ctl_fetch(ctl, "POST", "/v1/policy", body, &j);
        free(body);
        if (rc != 0 || j == NULL)
            return rc;
        char b[64];
        json_t *idx = json_object_get(j, "index");
        if (idx != NULL)
            printf("policy applied at index %s\n", jstr(idx, b, sizeof(b)));
        else
            printf("policy applied\n");
        json_decref(j);
        return 0;
    }
    if (strcmp(argv[0], "show") != 0)
        return ctl_usage("policy: unknown subcommand \"%s\"", argv[0]);
    if (argc != 1)
        return ctl_usage("policy show: unexpected argument \"%s\"", argv[1]);

    json_t *j;
    int rc = ctl_fetch(ctl, "GET", "/v1/policy", NULL, &j);
    if (rc != 0 || j == NULL)
        return rc;
    json_t *cust = json_object_get(j, "customers");
    if (!json_is_array(cust)) {
        print_json(j, NULL);
        json_decref(j);
        return 0;
    }
    struct table t;
    char b[6][256];
    size_t i;
    json_t *c;
    table_init(&t, 6, "CUSTOMER", "NETWORKS", "MAX_SESSIONS", "MAX_SIZE",
               "MAX_RCPTS", "REQUIRE_TLS");
    json_array_foreach(cust, i, c)
    {
        /* Networks joined with commas, not as a JSON array. */
        size_t k;
        json_t *n;
        b[1][0] = '\0';
        json_array_foreach(json_object_get(c, "networks"), k, n)
        {
            size_t l = strlen(b[1]);
            snprintf(b[1] + l, sizeof(b[1]) - l, "%s%s", k ? "," : "",
                     json_string_value(n) ? json_string_value(n) : "?");
        }
        table_add(&t, jstr(json_object_get(c, "name"), b[0], 256),
                  b[1][0] ? b[1] : "-",
                  jstr(json_object_get(c, "max_sessions"), b[2], 256),
                  jstr(json_object_get(c, "max_message_size"), b[3], 256),
                  jstr(json_object_get(c, "max_recipients"), b[4], 256),
                  jstr(json_object_get(c, "require_tls"), b[5], 256));
    }
    table_print(&t);
    json_decref(j);
    return 0;
}

struct queue_opts {
    const char *for_s, *per_minute, *reason;
};

static int queue_suspensions(const struct ctl *ctl)
{
    json_t *j;
    int rc = ctl_fetch(ctl, "GET", "/v1/suspensions", NULL, &j);
    if (rc != 0 || j == NULL)
        return rc;
    struct table t;
    char b[6][256];
    size_t i;
    json_t *x;
    table_init(&t, 6, "DOMAIN", "UNTIL", "PER_MINUTE", "SOURCE", "NODE",
               "REASON");
    json_array_foreach(json_object_get(j, "suspensions"), i, x)
    {
        json_t *until = json_object_get(x, "until_ms");
        if (json_is_integer(until)) {
            time_t tt = (time_t)(json_integer_value(until) / 1000);
            struct tm tm;
            gmtime_r(&tt, &tm);
            strftime(b[1], sizeof b[1], "%Y-%m-%dT%H:%M:%SZ", &tm);
        } else {
            snprintf(b[1], sizeof b[1], "resumed by hand");
        }
        json_int_t pm = json_integer_value(json_object_get(x, "per_minute"));
        if (pm > 0)
            snprintf(b[2], sizeof b[2], "%lld", (long long)pm);
        else
            snprintf(b[2], sizeof b[2], "stopped");
        table_add(&t, jstr(json_object_get(x, "domain"), b[0], 256), b[1], b[2],
                  jstr(json_object_get(x, "source"), b[3], 256),
                  jstr(json_object_get(x, "node"), b[4], 256),
                  jstr(json_object_get(x, "reason"), b[5], 256));
    }
    table_print(&t);
    json_decref(j);
    return 0;
}

/* queue suspend|resume|retry|bounce: one queue action (POST /v1/queue/...). */
static int queue_action(const struct ctl *ctl, const char *action,
                        const char *target, const struct queue_opts *qo)
{
    /* a message code has a '/' (node/code.h); a domain never does */
    bool is_code = strchr(target, '/') != NULL;
    if (strcmp(action, "bounce") == 0 && !is_code)
        return ctl_usage("queue bounce: want a message CODE, not \"%s\"",
                         target);
    if ((strcmp(action, "suspend") == 0 || strcmp(action, "resume") == 0) &&
        is_code)
        return ctl_usage("queue %s: want a DOMAIN, not \"%s\"", action, target);
    long secs = 0, pm = 0;
    char *end;
    if (qo->for_s != NULL && ((secs = strtol(qo->for_s, &end, 10)) < 1 || *end))
        return ctl_usage("--for wants a number of seconds");
    if (qo->per_minute != NULL &&
        ((pm = strtol(qo->per_minute, &end, 10)) < 1 || *end))
        return ctl_usage("--per-minute wants a number from 1");
    json_t *body = json_object();
    json_object_set_new(body, is_code ? "code" : "domain", json_string(target));
    if (secs)
        json_object_set_new(body, "seconds", json_integer(secs));
    if (pm)
        json_object_set_new(body, "per_minute", json_integer(pm));
    if (qo->reason != NULL)
        json_object_set_new(body, "reason", json_string(qo->reason));
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    char path[64];
    snprintf(path, sizeof path, "/v1/queue/%s", action);
    json_t *j;
    int rc = ctl_fetch(ctl, "POST", path, text, &j);
    free(text);
    if (rc != 0 || j == NULL)
        return rc;
    char b[64];
    if (strcmp(action, "suspend") == 0)
        printf("%s suspended\n", target);
    else
        printf("%s: %s recipients %s\n", target,
               jstr(json_object_get(j, "recipients"), b, sizeof b),
               strcmp(action, "bounce") == 0 ? "bounced" : "due now");
    json_decref(j);
    return 0;
}

/* queue summary: what waits for delivery (GET /v1/queue), and the
 * queue actions. */
static int cmd_queue(const struct ctl *ctl, int argc, char **argv,
                     const struct queue_opts *qo)
{
    const char *sub = argc > 0 ? argv[0] : "";
    bool action = strcmp(sub, "suspend") == 0 || strcmp(sub, "resume") == 0 ||
                  strcmp(sub, "retry") == 0 || strcmp(sub, "bounce") == 0;
    if ((qo->for_s || qo->per_minute) && strcmp(sub, "suspend") != 0)
        return ctl_usage("--for and --per-minute go with queue suspend only");
    if (qo->reason && strcmp(sub, "suspend") != 0 && strcmp(sub, "bounce") != 0)
        return ctl_usage("--reason goes with queue suspend and bounce only");
    if (action) {
        if (argc != 2 || argv[1][0] == '\0')
            return ctl_usage("queue %s: want one %s", sub,
                             strcmp(sub, "retry") == 0    ? "CODE or DOMAIN"
                             : strcmp(sub, "bounce") == 0 ? "CODE"
                                                          : "DOMAIN");
        return queue_action(ctl, sub, argv[1], qo);
    }
    if (argc == 1 && strcmp(sub, "suspensions") == 0)
        return queue_suspensions(ctl);
    if (argc != 1 || strcmp(sub, "summary") != 0)
        return ctl_usage("queue: want summary, suspend, resume, suspensions, "
                         "retry or bounce");
    json_t *j;
    int rc = ctl_fetch(ctl, "GET", "/v1/queue", NULL, &j);
    if (rc != 0 || j == NULL)
        return rc;
    char b[256];
    printf("pending    %s (queued %s, ",
           jstr(json_object_get(j, "pending"), b, sizeof b),
           jstr(json_object_get(j, "queued"), b + 64, 64));
    printf("deferred %s)%s\n",
           jstr(json_object_get(j, "deferred"), b, sizeof b),
           json_is_true(json_object_get(j, "truncated")) ? " [truncated]" : "");
    json_int_t oldest =
        json_integer_value(json_object_get(j, "oldest_committed_ms"));
    if (oldest > 0) {
        time_t t = (time_t)(oldest / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tm);
        printf("oldest     %s (%lld s ago)\n", b, (long long)(time(NULL) - t));
    }
    printf("\n%-40s %10s\n", "DOMAIN", "PENDING");
    size_t i;
    json_t *row;
    json_array_foreach(json_object_get(j, "by_domain"), i, row)
    {
        printf("%-40s %10s\n", jstr(json_object_get(row, "domain"), b, 128),
               jstr(json_object_get(row, "pending"), b + 128, 128));
    }
    const char *key;
    json_t *v;
    printf("\n%-40s %10s\n", "CUSTOMER", "PENDING");
    json_object_foreach(json_object_get(j, "by_customer"), key, v)
        printf("%-40s %10s\n", key, jstr(v, b, sizeof b));
    printf("\n%-40s %10s\n", "OWNER NODE", "PENDING");
    json_object_foreach(json_object_get(j, "by_owner"), key, v)
        printf("%-40s %10s\n", strcmp(key, "0") ? key : "(none)",
               jstr(v, b, sizeof b));
    json_decref(j);
    return 0;
}

/* sms routes | sms test NUMBER (GET /v1/sms/...). */
static int cmd_sms(const struct ctl *ctl, int argc, char **argv)
{
    json_t *j;
    char b[8][256];
    if (argc == 1 && strcmp(argv[0], "routes") == 0) {
        int rc = ctl_fetch(ctl, "GET", "/v1/sms/routes", NULL, &j);
        if (rc != 0 || j == NULL)
            return rc;
        struct table t;
        table_init(&t, 8, "PREFIX", "SMSC", "PRIORITY", "COST", "SHARE",
                   "BOUND", "PAUSED", "SENT");
        size_t i;
        json_t *r;
        json_array_foreach(json_object_get(j, "routes"), i, r)
        {
            table_add(&t, jstr(json_object_get(r, "prefix"), b[0], 256),
                      jstr(json_object_get(r, "smsc"), b[1], 256),
                      jstr(json_object_get(r, "priority"), b[2], 256),
                      jstr(json_object_get(r, "cost"), b[3], 256),
                      jstr(json_object_get(r, "share"), b[4], 256),
                      json_is_true(json_object_get(r, "bound")) ? "yes" : "no",
                      json_is_true(json_object_get(r, "paused")) ? "yes" : "no",
                      jstr(json_object_get(r, "sent"), b[7], 256));
        }
        table_print(&t);
        json_decref(j);
        return 0;
    }
    if (argc == 2 && strcmp(argv[0], "test") == 0) {
        char path[200];
        if (strlen(argv[1]) > 40 ||
            strspn(argv[1], "+0123456789.- ") != strlen(argv[1]))
            return ctl_usage("sms test: \"%s\" is not a phone number", argv[1]);
        char digits[48];
        size_t k = 0;
        for (const char *p = argv[1]; *p; p++)
            if (*p != ' ') /* "+39 333 0000001" as written on paper */
                digits[k++] = *p;
        digits[k] = '\0';
        char *num = url_encode(digits);
        if (num == NULL)
            return 1;
        snprintf(path, sizeof path, "/v1/sms/test?number=%s", num);
        free(num);
        int rc = ctl_fetch(ctl, "GET", path, NULL, &j);
        if (rc != 0 || j == NULL)
            return rc;
        json_t *smsc = json_object_get(j, "smsc");
        json_t *route = json_object_get(j, "route");
        printf("%s: route %s, %s%s\n",
               jstr(json_object_get(j, "number"), b[0], 256),
               json_is_string(route) ? json_string_value(route) : "(none)",
               json_is_string(smsc) ? "via " : "no SMSC available",
               json_is_string(smsc) ? json_string_value(smsc) : "");
        json_decref(j);
        return 0;
    }
    return ctl_usage("sms: want \"sms routes\" or \"sms test NUMBER\"");
}

/* shard list: owners and leases (GET /v1/shards). */
static int cmd_shard(const struct ctl *ctl, int argc, char **argv)
{
    if (argc != 1 || strcmp(argv[0], "list") != 0)
        return ctl_usage("shard: want \"shard list\"");
    json_t *j;
    int rc = ctl_fetch(ctl, "GET", "/v1/shards", NULL, &j);
    if (rc != 0 || j == NULL)
        return rc;
    char b[64];
    printf("epoch %s\n\n%-6s %s\n",
           jstr(json_object_get(j, "epoch"), b, sizeof b), "SHARD", "OWNER");
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(j, "owners"), i, v)
    {
        json_int_t o = json_integer_value(v);
        if (o == 0)
            printf("%-6zu (none)\n", i);
        else
            printf("%-6zu %lld\n", i, (long long)o);
    }
    printf("\n%-6s %s\n", "NODE", "LEASE EXPIRES (ms, entry time)");
    json_array_foreach(json_object_get(j, "leases"), i, v)
    {
        printf("%-6s %s\n", jstr(json_object_get(v, "node"), b, 32),
               jstr(json_object_get(v, "expires_ms"), b + 32, 32));
    }
    json_decref(j);
    return 0;
}

/* events [--after SEQ] [--limit N]: delivery events (GET /v1/events). */
static int cmd_events(const struct ctl *ctl, int argc, char **argv,
                      const char *limit)
{
    const char *after = "0";
    if (argc == 2 && strcmp(argv[0], "--after") == 0)
        after = argv[1];
    else if (argc != 0)
        return ctl_usage("events: want \"events [--after SEQ] [--limit N]\"");
    for (const char *c = after; *c; c++)
        if (*c < '0' || *c > '9')
            return ctl_usage("--after wants a sequence number");
    char path[128];
    snprintf(path, sizeof path, "/v1/events?after=%s&limit=%s", after,
             limit ? limit : "100");
    json_t *j;
    int rc = ctl_fetch(ctl, "GET", path, NULL, &j);
    if (rc != 0 || j == NULL)
        return rc;
    size_t i;
    json_t *e;
    char b[6][160];
    printf("%-8s %-22s %-10s %-18s %-32s %s\n", "SEQ", "CODE", "TYPE", "CLASS",
           "RECIPIENT", "REPLY");
    json_array_foreach(json_object_get(j, "events"), i, e)
    {
        printf("%-8s %-22s %-10s %-18s %-32s %s\n",
               jstr(json_object_get(e, "seq"), b[0], 160),
               jstr(json_object_get(e, "code"), b[1], 160),
               jstr(json_object_get(e, "type"), b[2], 160),
               jstr(json_object_get(e, "bounce_class"), b[3], 160),
               jstr(json_object_get(e, "address"), b[4], 160),
               jstr(json_object_get(e, "reply"), b[5], 160));
    }
    json_decref(j);
    return 0;
}

static int cmd_digest(const struct ctl *ctl)
{
    json_t *j;
    int rc = ctl_fetch(ctl, "GET", "/v1/digest", NULL, &j);
    if (rc != 0 || j == NULL)
        return rc;
    char b[256];
    printf("applied_index  %s\n",
           jstr(json_object_get(j, "applied_index"), b, sizeof(b)));
    printf("digest         %s\n",
           jstr(json_object_get(j, "digest"), b, sizeof(b)));
    json_decref(j);
    return 0;
}

/* "https://H:P" -> TLS to "H:P"; "http://H:P" and "H:P" -> plain. The
 * scheme is case-insensitive; one trailing '/' is allowed (a pasted URL),
 * a path is not. Returns false for an unknown scheme or a path. */
static bool parse_admin_url(struct ctl *ctl, const char *url, char *buf,
                            size_t buflen)
{
    ctl->tls = false;
    if (strncasecmp(url, "https://", 8) == 0) {
        ctl->tls = true;
        url += 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        url += 7;
    } else if (strstr(url, "://") != NULL) {
        return false;
    }
    size_t n = strlen(url);
    if (n > 0 && url[n - 1] == '/')
        n--;
    if (n == 0 || n >= buflen || memchr(url, '/', n) != NULL)
        return false;
    memcpy(buf, url, n);
    buf[n] = '\0';
    ctl->addr = buf;
    return true;
}

int main(int argc, char **argv)
{
    struct ctl ctl = {
        .addr = getenv("SMARTRELAY_ADMIN"),
        .token = getenv("SMARTRELAY_TOKEN"),
        .ca_file = getenv("SMARTRELAY_CA"),
    };
    if (ctl.ca_file != NULL && ctl.ca_file[0] == '\0')
        ctl.ca_file = NULL;
    if (ctl.addr == NULL || ctl.addr[0] == '\0')
        ctl.addr = CTL_DEFAULT_ADDR;
    if (ctl.token != NULL && ctl.token[0] == '\0')
        ctl.token = NULL;

    /* GNU getopt permutes argv, so options may follow the command too
     * ("clusterctl member add 4 H:P --role spare -o json"); "--" ends
     * them, for a message code that starts with a dash. */
    static const struct option longopts[] = {
        {"addr", required_argument, NULL, 'a'},
        {"token", required_argument, NULL, 't'},
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {"role", required_argument, NULL, 'r'},
        {"limit", required_argument, NULL, 'l'},
        {"ca", required_argument, NULL, 'c'},
        {"for", required_argument, NULL, 'F'},
        {"per-minute", required_argument, NULL, 'P'},
        {"reason", required_argument, NULL, 'R'},
        {NULL, 0, NULL, 0},
    };
    const char *role = NULL, *limit = NULL, *ca_opt = NULL;
    struct queue_opts qo = {NULL, NULL, NULL};
    int opt;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "a:t:o:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'a':
            ctl.addr = optarg;
            break;
        case 't':
            ctl.token = optarg;
            break;
        case 'r':
            role = optarg;
            break;
        case 'l':
            limit = optarg;
            break;
        case 'c':
            ca_opt = optarg;
            break;
        case 'F':
            qo.for_s = optarg;
            break;
        case 'P':
            qo.per_minute = optarg;
            break;
        case 'R':
            qo.reason = optarg;
            break;
        case 'o':
            if (strcmp(optarg, "json") == 0)
                ctl.json = true;
            else if (strcmp(optarg, "table") == 0)
                ctl.json = false;
            else
                return ctl_usage("-o wants table or json, not \"%s\"", optarg);
            break;
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        case ':':
        default:
            if (optopt == 'F' || optopt == 'P' || optopt == 'R')
                return ctl_usage("--%s needs a value", optopt == 'F' ? "for"
                                                       : optopt == 'P'
                                                           ? "per-minute"
                                                           : "reason");
            if (optopt == 'r' || optopt == 'l' || optopt == 'c')
                return ctl_usage("--%s needs a value", optopt == 'r'   ? "role"
                                                       : optopt == 'l' ? "limit"
                                                                       : "ca");
            if (optopt != 0 && strchr("ato", optopt) != NULL)
                return ctl_usage("-%c needs a value", optopt);
            return ctl_usage("unknown option \"%s\"", argv[optind - 1]);
        }
    }
    argc -= optind;
    argv += optind;
    char addr_buf[512];
    if (!parse_admin_url(&ctl, ctl.addr, addr_buf, sizeof addr_buf))
        return ctl_usage("bad admin address \"%s\" (want HOST:PORT, "
                         "http://HOST:PORT or https://HOST:PORT)",
                         ctl.addr);
    if (ca_opt != NULL) {
        /* An explicit --ca with a plain address most likely means the
         * operator believes the token travels encrypted: say it does not. */
        if (!ctl.tls)
            return ctl_usage("--ca goes with an https:// address (\"%s\" "
                             "is plain HTTP)",
                             ctl.addr);
        if (ca_opt[0] == '\0')
            return ctl_usage("--ca needs a file name");
        ctl.ca_file = ca_opt;
    }
    if (argc == 0) {
        fputs(usage_text, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[0];
    argc--;
    argv++;
    if (strcmp(cmd, "help") == 0) {
        fputs(usage_text, stdout);
        return 0;
    }

    if (role != NULL && strcmp(cmd, "member") != 0)
        return ctl_usage("--role goes with member add only");
    if (limit != NULL && strcmp(cmd, "message") != 0 &&
        strcmp(cmd, "events") != 0)
        return ctl_usage("--limit goes with message list and events only");

    if ((qo.for_s || qo.per_minute || qo.reason) && strcmp(cmd, "queue") != 0)
        return ctl_usage("--for, --per-minute and --reason go with queue "
                         "commands only");

    if (strcmp(cmd, "status") == 0 || strcmp(cmd, "digest") == 0) {
        if (argc != 0)
            return ctl_usage("%s: unexpected argument \"%s\"", cmd, argv[0]);
        return cmd[0] == 's' ? cmd_status(&ctl) : cmd_digest(&ctl);
    }
    if (strcmp(cmd, "member") == 0)
        return cmd_member(&ctl, argc, argv, role);
    if (strcmp(cmd, "leader") == 0)
        return cmd_leader(&ctl, argc, argv);
    if (strcmp(cmd, "failover") == 0) {
        /* Moves leadership and with it the floating IP. */
        char *av[3] = {"transfer", argc > 0 ? argv[0] : NULL, NULL};
        if (argc > 1)
            return ctl_usage("failover: want \"failover [ID]\"");
        return cmd_leader(&ctl, argc + 1, av);
    }
    if (strcmp(cmd, "message") == 0)
        return cmd_message(&ctl, argc, argv, limit);
    if (strcmp(cmd, "policy") == 0)
        return cmd_policy(&ctl, argc, argv);
    if (strcmp(cmd, "queue") == 0)
        return cmd_queue(&ctl, argc, argv, &qo);
    if (strcmp(cmd, "sms") == 0)
        return cmd_sms(&ctl, argc, argv);
    if (strcmp(cmd, "shard") == 0)
        return cmd_shard(&ctl, argc, argv);
    if (strcmp(cmd, "events") == 0)
        return cmd_events(&ctl, argc, argv, limit);
    if (strcmp(cmd, "password-hash") == 0)
        return cmd_password_hash(argc);
    if (strcmp(cmd, "ca") == 0 || strcmp(cmd, "cert") == 0) {
        /* Local files only: no admin API involved. */
        char err[256];
        int rc;
        if (cmd[1] == 'a' && argc == 2 && strcmp(argv[0], "create") == 0)
            rc = certs_ca_create(argv[1], err, sizeof err);
        else if (cmd[1] == 'e' && argc == 3 && strcmp(argv[0], "create") == 0)
            rc = certs_node_create(argv[1], strtoul(argv[2], NULL, 10), err,
                                   sizeof err);
        else
            return ctl_usage("want \"ca create DIR\" or \"cert create DIR "
                             "ID\"");
        if (rc != 0) {
            ctl_error("%s\n", err);
            return 1;
        }
        return 0;
    }
    return ctl_usage("unknown command \"%s\"", cmd);
}
