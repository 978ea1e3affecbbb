/*
 * admin.c - the admin API (docs/ADMIN_API.md): JSON over HTTP on the loop.
 *
 * Reads are answered by any node from its own replicated state. Changes
 * (members, policy, leader transfer) are executed by the leader: a follower
 * forwards the request unchanged over the node RPC (AdminReq) and relays the
 * leader's answer, so an operator may talk to any node.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/code.h"
#include "node/errors.h"
#include "node/log.h"
#include "node/admin_int.h"
#include "node/node_int.h"
#include "queue/dqueue.h"
#include "queue/shard.h"

/* Where an answer goes (admin_int.h). */
struct sink {
    struct http_conn *http;
    struct rpc_call *rpc;
};

void admin_reply(struct sink *s, int status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    size_t len = text ? strlen(text) : 0;
    if (s->http) {
        http_reply(s->http, status, "application/json", text, len);
    } else {
        Sr__AdminResp ar = SR__ADMIN_RESP__INIT;
        ar.status = status;
        ar.body.data = (uint8_t *)text;
        ar.body.len = len;
        Sr__Rpc rpc = SR__RPC__INIT;
        rpc.body_case = SR__RPC__BODY_ADMIN_RESP;
        rpc.admin_resp = &ar;
        rpc_reply(s->rpc, &rpc);
    }
    free(text);
    free(s);
}

void admin_reply_error(struct sink *s, int status, const char *msg)
{
    admin_reply(s, status, json_pack("{s:s}", "error", msg));
}

static const char *role_name(int role)
{
    return role == RAFT_VOTER     ? "voter"
           : role == RAFT_STANDBY ? "standby"
           : role == RAFT_SPARE   ? "spare"
                                  : "unknown";
}

static int role_of(const char *s)
{
    if (s == NULL)
        return RAFT_VOTER;
    if (strcmp(s, "voter") == 0)
        return RAFT_VOTER;
    if (strcmp(s, "standby") == 0)
        return RAFT_STANDBY;
    if (strcmp(s, "spare") == 0)
        return RAFT_SPARE;
    return -1;
}

static const char *state_name(int st)
{
    switch (st) {
    case RAFT_LEADER:
        return "leader";
    case RAFT_CANDIDATE:
        return "candidate";
    case RAFT_FOLLOWER:
        return "follower";
    default:
        return "unavailable";
    }
}

static void hex(const uint8_t *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

static json_t *digest_json(struct sr_node *n)
{
    uint8_t d[32];
    uint64_t applied;
    char h[65];
    queue_store_digest(n->store, d, &applied);
    hex(d, 32, h);
    return json_pack("{s:I,s:s}", "applied_index", (json_int_t)applied,
                     "digest", h);
}

static void get_status(struct sr_node *n, struct sink *s)
{
    struct raft *r = rnode_raft(n->rn);
    raft_id lid = 0;
    const char *laddr = NULL;
    raft_leader(r, &lid, &laddr);
    json_t *members = json_array();
    for (unsigned i = 0; i < r->configuration.n; i++) {
        struct raft_server *sv = &r->configuration.servers[i];
        char rpc[128] = "", adm[128] = "";
        rnode_rpc_address(n->rn, sv->id, rpc, sizeof rpc);
        rnode_admin_address(n->rn, sv->id, adm, sizeof adm);
        json_array_append_new(
            members, json_pack("{s:I,s:s,s:s,s:s,s:s,s:b}", "id",
                               (json_int_t)sv->id, "address", sv->address,
                               "role", role_name(sv->role), "rpc_address", rpc,
                               "admin_address", adm, "leader", sv->id == lid));
    }
    uint64_t counts[RCPT_STATE_MAX], msgs;
    queue_store_counts(n->store, counts, &msgs);
    json_t *q = json_object();
    for (unsigned i = 0; i < RCPT_STATE_MAX; i++)
        json_object_set_new(q, queue_rcpt_state_name(i),
                            json_integer((json_int_t)counts[i]));
    json_t *o = json_pack(
        "{s:I,s:s,s:I,s:s,s:I,s:I,s:I,s:I,s:o,s:o,s:I,s:I,s:I,s:b}", "node_id",
        (json_int_t)n->cfg->node_id, "state", state_name(raft_state(r)),
        "leader_id", (json_int_t)lid, "leader_address", laddr ? laddr : "",
        "term", (json_int_t)r->current_term, "commit_index",
        (json_int_t)r->commit_index, "applied_index",
        (json_int_t)raft_last_applied(r), "last_index",
        (json_int_t)raft_last_index(r), "members", members, "queue", q,
        "messages", (json_int_t)msgs, "smtp_sessions",
        (json_int_t)smtp_server_sessions(n->smtp), "ingest_inflight",
        (json_int_t)ingest_inflight(n->ingest), "ready",
        rnode_is_ready_leader(n->rn));
    json_object_set_new(o, "floating_ip_held",
                        json_boolean(floatip_held(n->floatip)));
    json_object_set_new(o, "bodies",
                        json_integer((json_int_t)body_store_count(n->bodies)));
    json_object_set_new(
        o, "bodies_repaired",
        json_integer((json_int_t)(n->repair ? repair_fetched(n->repair) : 0)));
    if (n->deliver != NULL && n->shards != NULL) {
        struct deliver_stats ds;
        deliver_get_stats(n->deliver, &ds);
        json_object_set_new(
            o, "delivery",
            json_pack(
                "{s:i,s:b,s:I,s:I,s:I,s:I,s:I,s:I,s:i,s:i,s:I}", "shards_owned",
                __builtin_popcountll(shards_owned(n->shards)), "lease_valid",
                shards_lease_valid(n->shards), "jobs", (json_int_t)ds.jobs,
                "delivered", (json_int_t)ds.delivered, "deferred",
                (json_int_t)ds.deferred, "bounced", (json_int_t)ds.bounced,
                "expired", (json_int_t)ds.expired, "attempts",
                (json_int_t)(ds.delivered + ds.deferred + ds.bounced +
                             ds.expired),
                "inflight", (int)ds.inflight, "connections",
                (int)ds.connections, "postponed", (json_int_t)ds.postponed));
    }
    admin_reply(s, 200, o);
}

/* GET /v1/queue: what waits for delivery, by state, destination domain,
 * customer and owning node, and the oldest. Walks at most QUEUE_SCAN_MAX
 * recipients (then "truncated": true). */
#define QUEUE_SCAN_MAX 200000

struct queue_sum {
    json_t *domains, *customers, *owners;
    uint64_t owners_tab[SHARD_COUNT];
    uint64_t queued, deferred, oldest_ms;
};

static void count_in(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    json_object_set_new(obj, key,
                        json_integer(v ? json_integer_value(v) + 1 : 1));
}

static void queue_sum_one(void *ud, const Sr__StoredMessage *m, unsigned r)
{
    struct queue_sum *q = ud;
    const Sr__StoredRcpt *rc = m->rcpts[r];
    if (rc->state == RCPT_DEFERRED)
        q->deferred++;
    else
        q->queued++;
    const char *at = strrchr(rc->address, '@');
    char dom[256];
    snprintf(dom, sizeof dom, "%s", at ? at + 1 : rc->address);
    for (char *c = dom; *c; c++)
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c + 32);
    count_in(q->domains, dom);
    count_in(q->customers, m->accept->customer);
    char owner[24];
    snprintf(owner, sizeof owner, "%llu",
             (unsigned long long)q->owners_tab[shard_of_rcpt(rc->address)]);
    count_in(q->owners, owner);
    if (q->oldest_ms == 0 || m->committed_at_ms < q->oldest_ms)
        q->oldest_ms = m->committed_at_ms;
}

static int cmp_count_desc(const void *a, const void *b)
{
    json_int_t x =
        json_integer_value(json_object_get(*(json_t **)a, "pending"));
    json_int_t y =
        json_integer_value(json_object_get(*(json_t **)b, "pending"));
    return (x < y) - (x > y);
}

static void get_queue(struct sr_node *n, struct sink *s)
{
    struct queue_sum q = {
        json_object(), json_object(), json_object(), {0}, 0, 0, 0};
    uint64_t epoch;
    dqueue_shards(n->store, q.owners_tab, &epoch);
    size_t seen =
        dqueue_pending_scan(n->store, QUEUE_SCAN_MAX, queue_sum_one, &q);
    /* domains, busiest first, at most 100 */
    size_t nd = json_object_size(q.domains), i = 0;
    json_t **rows = calloc(nd ? nd : 1, sizeof *rows);
    const char *key;
    json_t *v;
    json_object_foreach(q.domains, key, v)
    {
        if (rows)
            rows[i++] = json_pack("{s:s,s:I}", "domain", key, "pending",
                                  json_integer_value(v));
    }
    json_t *domains = json_array();
    if (rows) {
        qsort(rows, i, sizeof *rows, cmp_count_desc);
        for (size_t k = 0; k < i; k++) {
            if (k < 100)
                json_array_append_new(domains, rows[k]);
            else
                json_decref(rows[k]);
        }
        free(rows);
    }
    json_decref(q.domains);
    uint64_t counts[RCPT_STATE_MAX], msgs;
    queue_store_counts(n->store, counts, &msgs);
    json_t *o = json_pack(
        "{s:I,s:I,s:I,s:b,s:o,s:o,s:o,s:I}", "pending",
        (json_int_t)(counts[RCPT_QUEUED] + counts[RCPT_DEFERRED]), "queued",
        (json_int_t)counts[RCPT_QUEUED], "deferred",
        (json_int_t)counts[RCPT_DEFERRED], "truncated", seen >= QUEUE_SCAN_MAX,
        "by_domain", domains, "by_customer", q.customers, "by_owner", q.owners,
        "oldest_committed_ms", (json_int_t)q.oldest_ms);
    admin_reply(s, 200, o);
}

/* GET /v1/shards: the shard table and the delivery leases. */
static void get_shards(struct sr_node *n, struct sink *s)
{
    uint64_t owners[SHARD_COUNT], epoch, nodes[64], expiry[64];
    dqueue_shards(n->store, owners, &epoch);
    json_t *sh = json_array();
    for (unsigned i = 0; i < SHARD_COUNT; i++)
        json_array_append_new(sh, json_integer((json_int_t)owners[i]));
    size_t nl = dqueue_leases(n->store, nodes, expiry, 64);
    json_t *leases = json_array();
    for (size_t i = 0; i < nl; i++)
        json_array_append_new(
            leases, json_pack("{s:I,s:I}", "node", (json_int_t)nodes[i],
                              "expires_ms", (json_int_t)expiry[i]));
    admin_reply(s, 200,
                json_pack("{s:I,s:o,s:o}", "epoch", (json_int_t)epoch, "owners",
                          sh, "leases", leases));
}

static void add_event(void *ud, uint64_t seq, const Sr__Event *e)
{
    json_t *o = json_pack(
        "{s:I,s:s,s:i,s:s,s:s,s:s,s:I,s:I,s:s,s:s,s:s}", "seq", (json_int_t)seq,
        "code", e->code, "rcpt", (int)e->rcpt, "address", e->address, "type",
        delivery_outcome_name(e->type), "reply", e->reply, "time_ms",
        (json_int_t)e->time_ms, "node", (json_int_t)e->node, "mx", e->mx,
        "customer", e->customer, "bounce_class", e->bounce_class);
    if (e->url[0])
        json_object_set_new(o, "url", json_string(e->url));
    json_array_append_new(ud, o);
}

/* GET /v1/events?after=SEQ&limit=N: delivery events in order. */
static void get_events(struct sr_node *n, struct sink *s, const char *query)
{
    unsigned long long after = 0;
    unsigned limit = 1000;
    const char *q = query ? strstr(query, "after=") : NULL;
    if (q)
        after = strtoull(q + 6, NULL, 10);
    q = query ? strstr(query, "limit=") : NULL;
    if (q) {
        limit = (unsigned)strtoul(q + 6, NULL, 10);
        if (limit == 0 || limit > 10000)
            limit = 10000;
    }
    json_t *list = json_array();
    uint64_t last = dqueue_events(n->store, after, limit, add_event, list);
    admin_reply(
        s, 200,
        json_pack("{s:o,s:I}", "events", list, "last", (json_int_t)last));
}

static void add_code(void *ud, const char *code)
{
    json_array_append_new(ud, json_string(code));
}

static void get_messages(struct sr_node *n, struct sink *s, const char *query)
{
    size_t limit = 0;
    const char *l = strstr(query, "limit=");
    if (l)
        limit = strtoul(l + 6, NULL, 10);
    json_t *codes = json_array();
    queue_store_list(n->store, limit, add_code, codes);
    admin_reply(s, 200, json_pack("{s:o}", "codes", codes));
}

static int unescape(const char *in, char *out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; in[i]; i++) {
        if (k + 1 >= cap)
            return -1;
        if (in[i] == '%' && in[i + 1] && in[i + 2]) {
            char h[3] = {in[i + 1], in[i + 2], 0};
            out[k++] = (char)strtol(h, NULL, 16);
            i += 2;
        } else {
            out[k++] = in[i];
        }
    }
    out[k] = '\0';
    return 0;
}

static void get_message(struct sr_node *n, struct sink *s, const char *rest)
{
    char code[128];
    if (unescape(rest, code, sizeof code) != 0 || !code_valid(code)) {
        admin_reply_error(s, 400, "not a message code");
        return;
    }
    Sr__StoredMessage *m;
    if (queue_store_get_message(n->store, code, &m) != 0) {
        admin_reply_error(s, 404, "no such message");
        return;
    }
    Sr__MessageAccept *a = m->accept;
    json_t *rcpts = json_array();
    for (size_t i = 0; i < m->n_rcpts; i++) {
        Sr__StoredRcpt *rc = m->rcpts[i];
        json_array_append_new(
            rcpts,
            json_pack("{s:s,s:s,s:i,s:s,s:I,s:I,s:i}", "address", rc->address,
                      "state", queue_rcpt_state_name(rc->state), "attempts",
                      (int)rc->attempts, "last_reply", rc->last_reply, "due_ms",
                      (json_int_t)rc->due_ms, "done_at_ms",
                      (json_int_t)rc->done_at_ms, "shard",
                      (int)shard_of_rcpt(rc->address)));
    }
    json_t *holders = json_array();
    for (size_t i = 0; i < a->n_holders; i++)
        json_array_append_new(holders, json_integer((json_int_t)a->holders[i]));
    char dg[65] = "";
    if (a->digest.len == 32)
        hex(a->digest.data, 32, dg);
    json_t *o = json_pack(
        "{s:s,s:s,s:s,s:o,s:I,s:s,s:I,s:o,s:I,s:I,s:I,s:s,s:s}", "code",
        a->code, "customer", a->customer, "mail_from", a->mail_from, "rcpts",
        rcpts, "size", (json_int_t)a->size, "digest", dg, "accepted_by",
        (json_int_t)a->accepted_by, "holders", holders, "accepted_at_ms",
        (json_int_t)a->accepted_at_ms, "committed_at_ms",
        (json_int_t)m->committed_at_ms, "index", (json_int_t)m->index, "helo",
        a->helo, "client_addr", a->client_addr);
    sr__stored_message__free_unpacked(m, NULL);
    admin_reply(s, 200, o);
}

static void get_policy(struct sr_node *n, struct sink *s)
{
    char *json = NULL;
    const char *text = policy_default_json();
    if (queue_store_get_policy(n->store, &json) == 0)
        text = json;
    json_t *o = json_loads(text, 0, NULL);
    free(json);
    if (o == NULL)
        admin_reply_error(s, 500, "stored policy is not JSON");
    else
        admin_reply(s, 200, o);
}

/* ---- changes (leader only) ---- */

static void done_cb(void *ud, int status, const char *msg)
{
    struct sink *s = ud;
    if (status == 0)
        admin_reply(s, 200, json_pack("{s:b}", "ok", 1));
    else
        admin_reply_error(s, 409, msg);
}

static void policy_cb(void *ud, int status, uint64_t index)
{
    struct sink *s = ud;
    if (status == 0)
        admin_reply(
            s, 200,
            json_pack("{s:b,s:I}", "ok", 1, "index", (json_int_t)index));
    else
        admin_reply_error(s, 503, sr_strerror(status));
}

static void post_policy(struct sr_node *n, struct sink *s, const char *body,
                        size_t len)
{
    struct policy *p;
    char err[SR_ERRMSG_SIZE];
    if (policy_parse_json(body, len, &p, err, sizeof err) != 0) {
        admin_reply_error(s, 400, err);
        return;
    }
    policy_free(p);
    /* Store a canonical, compact form. */
    json_t *o = json_loadb(body, len, 0, NULL);
    char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    Sr__PolicySet ps = SR__POLICY_SET__INIT;
    ps.json = text;
    Sr__Op op = SR__OP__INIT;
    op.op_case = SR__OP__OP_POLICY;
    op.policy = &ps;
    int rc = rnode_propose(n->rn, &op, 10000, policy_cb, s);
    free(text);
    if (rc != 0)
        admin_reply_error(s, 503, sr_strerror(rc));
}

static void change(struct sr_node *n, struct sink *s, const char *method,
                   const char *path, const char *body, size_t len)
{
    json_error_t jerr;
    json_t *o = len ? json_loadb(body, len, 0, &jerr) : json_object();
    if (o == NULL || !json_is_object(o)) {
        json_decref(o);
        admin_reply_error(s, 400, "body must be a JSON object");
        return;
    }
    int rc = SR_ENOTFOUND;
    unsigned long long id = 0;
    char tail[32] = "";
    if (strcmp(method, "POST") == 0 && strcmp(path, "/v1/members") == 0) {
        json_int_t jid = json_integer_value(json_object_get(o, "id"));
        const char *addr = json_string_value(json_object_get(o, "address"));
        int role = role_of(json_string_value(json_object_get(o, "role")));
        if (jid <= 0 || addr == NULL || role < 0) {
            json_decref(o);
            admin_reply_error(s, 400, "need id (>0), address and a valid role");
            return;
        }
        rc = rnode_add(n->rn, (uint64_t)jid, addr, role, done_cb, s);
    } else if (sscanf(path, "/v1/members/%llu%31s", &id, tail) >= 1) {
        if (strcmp(method, "DELETE") == 0 && tail[0] == '\0') {
            rc = rnode_remove(n->rn, id, done_cb, s);
        } else if (strcmp(method, "POST") == 0 && strcmp(tail, "/role") == 0) {
            int role = role_of(json_string_value(json_object_get(o, "role")));
            if (role < 0 || json_object_get(o, "role") == NULL) {
                json_decref(o);
                admin_reply_error(s, 400,
                                  "role must be voter, standby or spare");
                return;
            }
            rc = rnode_assign(n->rn, id, role, done_cb, s);
        }
    } else if (strcmp(method, "POST") == 0 &&
               strcmp(path, "/v1/leader/transfer") == 0) {
        json_int_t jid = json_integer_value(json_object_get(o, "id"));
        rc = rnode_transfer(n->rn, (uint64_t)(jid > 0 ? jid : 0), done_cb, s);
    } else if (strcmp(method, "POST") == 0 && strcmp(path, "/v1/policy") == 0) {
        json_decref(o);
        post_policy(n, s, body, len);
        return;
    }
    json_decref(o);
    if (rc == SR_ENOTFOUND)
        admin_reply_error(s, 404, "no such endpoint");
    else if (rc != 0)
        admin_reply_error(s, 500, sr_strerror(rc));
}

/* ---- forwarding to the leader ---- */

static void forwarded(void *ud, int status, const Sr__Rpc *resp)
{
    struct sink *s = ud;
    if (status != 0 || resp->body_case != SR__RPC__BODY_ADMIN_RESP) {
        admin_reply_error(s, 503, "leader did not answer");
        return;
    }
    json_t *o = json_loadb((const char *)resp->admin_resp->body.data,
                           resp->admin_resp->body.len, 0, NULL);
    if (o == NULL)
        o = json_pack("{s:s}", "error", "bad answer from leader");
    admin_reply(s, resp->admin_resp->status, o);
}

/* Sends the request to the leader; returns SR_ENOTLEADER (nothing sent,
 * no reply) when no leader is known yet. */
static int send_to_leader(struct sr_node *n, struct sink *s, const char *method,
                          const char *path, const char *body, size_t len)
{
    uint64_t leader = rnode_leader(n->rn);
    char addr[128];
    if (leader == 0 || rnode_rpc_address(n->rn, leader, addr, sizeof addr))
        return SR_ENOTLEADER;
    Sr__AdminReq ar = SR__ADMIN_REQ__INIT;
    ar.method = (char *)method;
    ar.path = (char *)path;
    ar.body.data = (uint8_t *)body;
    ar.body.len = len;
    Sr__Rpc rpc = SR__RPC__INIT;
    rpc.body_case = SR__RPC__BODY_ADMIN;
    rpc.admin = &ar;
    if (rpc_send(n->rpc, leader, addr, &rpc, 30000, forwarded, s) != 0)
        admin_reply_error(s, 503, "cannot reach the leader");
    return 0;
}

/* A change waiting for this node to learn who leads (just after a start
 * or an election): retried every 50 ms for up to ADMIN_LEADER_WAIT_MS. The
 * request it points to stays valid until the reply (http_server.h). */
#define ADMIN_LEADER_WAIT_MS 5000
struct admin_wait {
    uv_timer_t timer;
    struct admin_wait *next;
    struct sr_node *n;
    struct sink *s;
    const char *method, *path, *body;
    size_t len;
    uint64_t deadline;
};

static void wait_closed(uv_handle_t *h)
{
    free(h->data);
}

static void wait_end(struct admin_wait *w)
{
    struct admin_wait **pp = &w->n->admin_waits;
    while (*pp != w)
        pp = &(*pp)->next;
    *pp = w->next;
    uv_close((uv_handle_t *)&w->timer, wait_closed);
}

static void wait_tick(uv_timer_t *t)
{
    struct admin_wait *w = t->data;
    if (send_to_leader(w->n, w->s, w->method, w->path, w->body, w->len) == 0) {
        wait_end(w);
    } else if (uv_now(&w->n->loop) >= w->deadline) {
        admin_reply_error(w->s, 503, "no leader");
        wait_end(w);
    }
}

void admin_stop(struct sr_node *n)
{
    while (n->admin_waits) {
        struct admin_wait *w = n->admin_waits;
        admin_reply_error(w->s, 503, "node is stopping");
        wait_end(w);
    }
}

static void to_leader(struct sr_node *n, struct sink *s, const char *method,
                      const char *path, const char *body, size_t len)
{
    if (send_to_leader(n, s, method, path, body, len) == 0)
        return;
    struct admin_wait *w = calloc(1, sizeof *w);
    if (w == NULL) {
        admin_reply_error(s, 503, "no leader");
        return;
    }
    *w = (struct admin_wait){.n = n,
                             .s = s,
                             .method = method,
                             .path = path,
                             .body = body,
                             .len = len};
    w->deadline = uv_now(&n->loop) + ADMIN_LEADER_WAIT_MS;
    uv_timer_init(&n->loop, &w->timer);
    w->timer.data = w;
    w->next = n->admin_waits;
    n->admin_waits = w;
    uv_timer_start(&w->timer, wait_tick, 50, 50);
}

static void dispatch(struct sr_node *n, struct sink *s, const char *method,
                     const char *path, const char *query, const char *body,
                     size_t len, int forwarded_once)
{
    int get = strcmp(method, "GET") == 0;
    if (get && strcmp(path, "/v1/status") == 0)
        get_status(n, s);
    else if (get && strcmp(path, "/v1/digest") == 0)
        admin_reply(s, 200, digest_json(n));
    else if (get && strcmp(path, "/v1/messages") == 0)
        get_messages(n, s, query);
    else if (get && strncmp(path, "/v1/messages/", 13) == 0)
        get_message(n, s, path + 13);
    else if (get && strcmp(path, "/v1/policy") == 0)
        get_policy(n, s);
    else if (get && strcmp(path, "/v1/shards") == 0)
        get_shards(n, s);
    else if (get && strcmp(path, "/v1/queue") == 0)
        get_queue(n, s);
    else if (get && strcmp(path, "/v1/events") == 0)
        get_events(n, s, query);
    else if (get && strcmp(path, "/v1/suspensions") == 0)
        admin_get_suspensions(n, s);
    else if (get && strcmp(path, "/v1/sms/routes") == 0)
        admin_get_sms_routes(n, s);
    else if (get && strcmp(path, "/v1/sms/test") == 0)
        admin_get_sms_test(n, s, query);
    else if (get)
        admin_reply_error(s, 404, "no such endpoint");
    else if (strcmp(method, "POST") != 0 && strcmp(method, "DELETE") != 0)
        admin_reply_error(s, 405, "method not allowed");
    else if (strncmp(path, "/v1/queue/", 10) == 0)
        admin_post_queue(n, s, method, path + 10, body, len);
    else if (rnode_is_ready_leader(n->rn))
        change(n, s, method, path, body, len);
    else if (forwarded_once)
        admin_reply_error(s, 503, "not the leader");
    else
        to_leader(n, s, method, path, body, len);
}

void admin_http(void *ud, struct http_conn *c, const struct http_request *req)
{
    struct sr_node *n = ud;
    struct sink *s = calloc(1, sizeof *s);
    s->http = c;
    const char *tok = n->cfg->admin_token;
    if (tok && tok[0]) {
        const char *auth = http_request_header(req, "Authorization");
        if (auth == NULL || strncmp(auth, "Bearer ", 7) != 0 ||
            strcmp(auth + 7, tok) != 0) {
            admin_reply_error(s, 401, "missing or wrong admin token");
            return;
        }
    }
    if (n->stopping) {
        admin_reply_error(s, 503, "node is stopping");
        return;
    }
    dispatch(n, s, req->method, req->path, req->query, req->body, req->body_len,
             0);
}

void admin_rpc(struct sr_node *n, struct rpc_call *call,
               const Sr__AdminReq *req)
{
    struct sink *s = calloc(1, sizeof *s);
    s->rpc = call;
    const char *q = strchr(req->path, '?');
    char path[256];
    snprintf(path, sizeof path, "%.*s",
             (int)(q ? (size_t)(q - req->path) : strlen(req->path)), req->path);
    dispatch(n, s, req->method, path, q ? q + 1 : "",
             (const char *)req->body.data, req->body.len, 1);
}
