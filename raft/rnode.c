/* rnode.c - Raft instance, batching and forwarding of proposals (see
 * rnode.h). */
#include "raft/rnode.h"

#include <raft/uv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "node/clock.h"
#include "node/errors.h"
#include "node/log.h"
#include "proto/codec.h"
#include "raft/transport.h"

#define POLL_MS 10
#define BATCH_MAX_OPS 2048
#define BATCH_MAX_BYTES (4u << 20)
/* Forwarded batches in flight per follower: enough to keep the leader's
 * pipeline full, few enough to keep batches large under load. */
#define FORWARD_MAX_INFLIGHT 4
/* Entries the leader has in flight. While they are, new proposals gather
 * into the next entry: under load entries grow instead of multiplying,
 * and each entry costs an fsync on every voter. */
#define APPLY_MAX_INFLIGHT 2

/* One proposed op; owned by the rnode queues until its callback. */
struct prop {
    struct prop *next;
    uint8_t *op;
    size_t len;
    uint64_t deadline; /* uv_now() ms */
    rnode_cb cb;
    void *ud;
};

/* Props travelling together in one raft_apply or one ProposeReq. */
struct batch {
    struct raft_apply req;
    struct rnode *node;
    struct prop **props;
    size_t n;
    struct batch *next_inflight; /* n->inflight list */
    int *statuses;               /* captured when its entry was applied */
    uint64_t index;              /* and that entry's index */
};

/* A ProposeReq being served on the leader. */
struct fwd {
    struct rpc_call *call;
    size_t n, left;
    int32_t *results;
    uint64_t index;
};

struct member_op {
    struct raft_change change;
    struct raft_transfer transfer;
    struct rnode *node;
    uint64_t id;
    int role;
    rnode_done_cb cb;
    void *ud;
};

/* Owned by the node; loop thread only. */
struct rnode {
    uv_loop_t *loop;
    const struct sr_config *cfg; /* borrowed for the node's life */
    struct queue_store *store;
    struct rpc *rpc;
    struct sr_transport transport;
    struct raft_io io;
    struct raft raft;
    struct queue_fsm fsm;
    uv_check_t check;
    uv_timer_t poll;
    int check_on;
    unsigned applies_inflight; /* leader: entries proposed, not applied */
    struct batch *inflight;    /* those entries' batches */
    struct prop *pending, **pending_tail;
    int ready; /* leader whose barrier committed */
    int barrier_pending;
    raft_term barrier_term;
    struct raft_barrier barrier;
    int info_inflight;         /* our NodeInfo proposal is in flight */
    unsigned forward_inflight; /* ProposeReqs awaiting the leader */
    int closing;
    int handles;
    void (*close_cb)(void *);
    void *close_arg;
    void (*hook)(void *, uint64_t, const Sr__Entry *, const int *);
    void *hook_ud;
};

static void prop_done(struct prop *p, int status, uint64_t index)
{
    p->cb(p->ud, status, index);
    free(p->op);
    free(p);
}

static void schedule_flush(struct rnode *n);

/* Puts props back at the head of the queue (keeping their order), or fails
 * them if their deadline has passed. */
static void requeue(struct rnode *n, struct prop **props, size_t count,
                    int status)
{
    uint64_t now = uv_now(n->loop);
    for (size_t i = count; i-- > 0;) {
        struct prop *p = props[i];
        if (n->closing) {
            prop_done(p, SR_ESHUTDOWN, 0);
        } else if (p->deadline <= now) {
            prop_done(p, status, 0);
        } else {
            p->next = n->pending;
            n->pending = p;
            if (n->pending_tail == &n->pending)
                n->pending_tail = &p->next;
        }
    }
    if (n->pending)
        schedule_flush(n);
}

/* ---- leader: one raft entry per batch ---- */

static size_t varint(uint8_t *out, uint64_t v)
{
    size_t i = 0;
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        out[i++] = b | (v ? 0x80 : 0);
    } while (v);
    return i;
}

/* queue_fsm on_result: an entry was applied; if it is one of our batches,
 * keep its statuses for apply_cb (which libraft runs later). */
static void on_result(void *ud, uint64_t index, size_t n_ops,
                      const int *statuses)
{
    struct rnode *n = ud;
    for (struct batch *b = n->inflight; b; b = b->next_inflight) {
        if (b->req.index != index || b->statuses != NULL || b->n != n_ops)
            continue;
        b->statuses = malloc((n_ops ? n_ops : 1) * sizeof *b->statuses);
        if (b->statuses != NULL) {
            memcpy(b->statuses, statuses, n_ops * sizeof *statuses);
            b->index = index;
        }
        return;
    }
}

static void apply_cb(struct raft_apply *req, int status, void *result)
{
    (void)result; /* may describe a later entry: see queue/fsm.h */
    struct batch *b = req->data;
    struct rnode *n = b->node;
    n->applies_inflight--;
    for (struct batch **p = &n->inflight; *p; p = &(*p)->next_inflight) {
        if (*p == b) {
            *p = b->next_inflight;
            break;
        }
    }
    if (n->pending)
        schedule_flush(n);
    if (status == 0 && b->statuses != NULL) {
        for (size_t i = 0; i < b->n; i++)
            prop_done(b->props[i], b->statuses[i], b->index);
    } else if (status == 0) {
        /* Applied, but we could not keep its statuses (out of memory):
         * the outcome is unknown, and a retry is harmless (the state
         * machine ignores what it already has). */
        LOG_ERROR("event=apply_result_lost ops=%zu", b->n);
        requeue(n, b->props, b->n, SR_EIO);
    } else {
        /* Not committed by us: perhaps by the next leader. Propose again
         * there; the state machine ignores ops it already has. */
        LOG_INFO("event=apply_failed ops=%zu error=\"%s\"", b->n,
                 raft_strerror(status));
        requeue(n, b->props, b->n, SR_ENOTLEADER);
    }
    free(b->statuses);
    free(b->props);
    free(b);
}

static struct batch *take_batch(struct rnode *n, size_t *bytes)
{
    struct batch *b = calloc(1, sizeof *b);
    if (b == NULL)
        return NULL;
    size_t cap = 64;
    b->props = malloc(cap * sizeof *b->props);
    b->node = n;
    *bytes = 0;
    while (n->pending && b->n < BATCH_MAX_OPS &&
           (*bytes == 0 || *bytes + n->pending->len < BATCH_MAX_BYTES)) {
        if (b->n == cap) {
            cap *= 2;
            b->props = realloc(b->props, cap * sizeof *b->props);
        }
        struct prop *p = n->pending;
        n->pending = p->next;
        if (n->pending == NULL)
            n->pending_tail = &n->pending;
        p->next = NULL;
        b->props[b->n++] = p;
        *bytes += p->len + 16;
    }
    return b;
}

static void flush_leader(struct rnode *n)
{
    while (n->pending && n->applies_inflight < APPLY_MAX_INFLIGHT) {
        size_t bytes;
        struct batch *b = take_batch(n, &bytes);
        /* Entry: version (1), time_ms (2), ops (3), spliced by hand. */
        size_t cap = 32 + bytes;
        uint8_t *pb = malloc(cap), *p = pb;
        *p++ = 0x08;
        p += varint(p, ENTRY_VERSION);
        *p++ = 0x10;
        p += varint(p, sr_wall_ms());
        for (size_t i = 0; i < b->n; i++) {
            *p++ = 0x1a;
            p += varint(p, b->props[i]->len);
            memcpy(p, b->props[i]->op, b->props[i]->len);
            p += b->props[i]->len;
        }
        size_t plen = (size_t)(p - pb);
        size_t total = (8 + plen + 7) & ~(size_t)7;
        struct raft_buffer buf;
        buf.len = total;
        buf.base = raft_malloc(total);
        memcpy(buf.base, CODEC_ENTRY_MAGIC, 4);
        uint8_t *h = buf.base;
        for (int i = 0; i < 4; i++)
            h[4 + i] = (uint8_t)(plen >> (8 * i));
        memcpy(h + 8, pb, plen);
        memset(h + 8 + plen, 0, total - 8 - plen);
        free(pb);
        b->req.data = b;
        int rc = raft_apply(&n->raft, &b->req, &buf, 1, apply_cb);
        if (rc == 0) {
            n->applies_inflight++;
            b->next_inflight = n->inflight;
            n->inflight = b;
        }
        if (rc != 0) {
            raft_free(buf.base);
            n->ready = 0;
            requeue(n, b->props, b->n, SR_ENOTLEADER);
            free(b->props);
            free(b);
            return;
        }
    }
}

/* ---- follower: forward to the leader ---- */

static void forward_cb(void *ud, int status, const Sr__Rpc *resp)
{
    struct batch *b = ud;
    struct rnode *n = b->node;
    n->forward_inflight--;
    if (status == 0 && resp->body_case == SR__RPC__BODY_PROPOSE_RESP &&
        resp->propose_resp->status == 0 &&
        resp->propose_resp->n_results == b->n) {
        for (size_t i = 0; i < b->n; i++)
            prop_done(b->props[i], resp->propose_resp->results[i],
                      resp->propose_resp->index);
    } else {
        LOG_DEBUG("event=forward_failed ops=%zu error=%s", b->n,
                  status ? sr_strerror(status) : "refused");
        requeue(n, b->props, b->n,
                status == SR_ETIMEDOUT ? SR_ETIMEDOUT : SR_ENOTLEADER);
    }
    free(b->props);
    free(b);
    if (n->pending && !n->closing)
        schedule_flush(n);
}

static void flush_follower(struct rnode *n)
{
    uint64_t leader = rnode_leader(n);
    char addr[128];
    if (leader == 0 || leader == n->cfg->node_id ||
        n->forward_inflight >= FORWARD_MAX_INFLIGHT ||
        rnode_rpc_address(n, leader, addr, sizeof addr) != 0)
        return; /* the poll timer tries again */
    size_t bytes;
    struct batch *b = take_batch(n, &bytes);
    ProtobufCBinaryData *ops = calloc(b->n, sizeof *ops);
    for (size_t i = 0; i < b->n; i++) {
        ops[i].data = b->props[i]->op;
        ops[i].len = b->props[i]->len;
    }
    Sr__ProposeReq pr = SR__PROPOSE_REQ__INIT;
    pr.n_ops = b->n;
    pr.ops = ops;
    Sr__Rpc rpc = SR__RPC__INIT;
    rpc.body_case = SR__RPC__BODY_PROPOSE;
    rpc.propose = &pr;
    int rc = rpc_send(n->rpc, leader, addr, &rpc, n->cfg->rpc_timeout_ms,
                      forward_cb, b);
    free(ops);
    if (rc != 0) {
        requeue(n, b->props, b->n, SR_ENOTLEADER);
        free(b->props);
        free(b);
        return;
    }
    n->forward_inflight++;
}

static void flush(struct rnode *n)
{
    if (n->closing || n->pending == NULL)
        return;
    if (n->ready && raft_state(&n->raft) == RAFT_LEADER)
        flush_leader(n);
    else if (raft_state(&n->raft) != RAFT_LEADER)
        flush_follower(n);
}

static void on_check(uv_check_t *h)
{
    struct rnode *n = h->data;
    uv_check_stop(h);
    n->check_on = 0;
    flush(n);
}

static void schedule_flush(struct rnode *n)
{
    if (n->closing || n->check_on)
        return;
    n->check_on = 1;
    uv_check_start(&n->check, on_check);
}

int rnode_propose(struct rnode *n, const Sr__Op *op, unsigned timeout_ms,
                  rnode_cb cb, void *ud)
{
    if (n->closing)
        return SR_ESHUTDOWN;
    struct prop *p = calloc(1, sizeof *p);
    if (p == NULL)
        return SR_ENOMEM;
    p->len = sr__op__get_packed_size(op);
    p->op = malloc(p->len ? p->len : 1);
    if (p->op == NULL) {
        free(p);
        return SR_ENOMEM;
    }
    sr__op__pack(op, p->op);
    p->deadline = uv_now(n->loop) + timeout_ms;
    p->cb = cb;
    p->ud = ud;
    *n->pending_tail = p;
    n->pending_tail = &p->next;
    schedule_flush(n);
    return 0;
}

/* ---- leader: serving forwarded proposals ---- */

static void fwd_reply(struct fwd *f, int status)
{
    Sr__ProposeResp pr = SR__PROPOSE_RESP__INIT;
    pr.status = status;
    if (status == 0) {
        pr.n_results = f->n;
        pr.results = f->results;
        pr.index = f->index;
    }
    Sr__Rpc rpc = SR__RPC__INIT;
    rpc.body_case = SR__RPC__BODY_PROPOSE_RESP;
    rpc.propose_resp = &pr;
    rpc_reply(f->call, &rpc);
    free(f->results);
    free(f);
}

struct fwd_item {
    struct fwd *f;
    size_t i;
};

static void fwd_one(void *ud, int status, uint64_t index)
{
    struct fwd_item *it = ud;
    struct fwd *f = it->f;
    f->results[it->i] = status;
    if (index > f->index)
        f->index = index;
    free(it);
    if (--f->left == 0)
        fwd_reply(f, 0);
}

void rnode_handle_propose(struct rnode *n, struct rpc_call *call,
                          const Sr__ProposeReq *req)
{
    struct fwd *f = calloc(1, sizeof *f);
    f->call = call;
    if (!n->ready || raft_state(&n->raft) != RAFT_LEADER || n->closing ||
        req->n_ops == 0) {
        fwd_reply(f, SR_ENOTLEADER);
        return;
    }
    f->n = f->left = req->n_ops;
    f->results = calloc(req->n_ops, sizeof *f->results);
    uint64_t deadline = uv_now(n->loop) + n->cfg->rpc_timeout_ms;
    for (size_t i = 0; i < req->n_ops; i++) {
        struct prop *p = calloc(1, sizeof *p);
        struct fwd_item *it = calloc(1, sizeof *it);
        it->f = f;
        it->i = i;
        p->len = req->ops[i].len;
        p->op = malloc(p->len ? p->len : 1);
        memcpy(p->op, req->ops[i].data, p->len);
        p->deadline = deadline;
        p->cb = fwd_one;
        p->ud = it;
        *n->pending_tail = p;
        n->pending_tail = &p->next;
    }
    schedule_flush(n);
}

/* ---- leadership and node info ---- */

static void barrier_cb(struct raft_barrier *req, int status)
{
    struct rnode *n = req->data;
    n->barrier_pending = 0;
    if (status == 0 && raft_state(&n->raft) == RAFT_LEADER &&
        n->raft.current_term == n->barrier_term) {
        n->ready = 1;
        LOG_INFO("event=leader_ready term=%llu index=%llu",
                 (unsigned long long)n->barrier_term,
                 (unsigned long long)raft_last_applied(&n->raft));
        schedule_flush(n);
    }
}

static void info_cb(void *ud, int status, uint64_t index)
{
    struct rnode *n = ud;
    (void)index;
    n->info_inflight = 0;
    if (status == 0)
        LOG_INFO("event=node_info_registered");
}

static void check_node_info(struct rnode *n)
{
    if (n->info_inflight || n->closing || rnode_leader(n) == 0)
        return;
    char admin[128];
    snprintf(admin, sizeof admin, "%s", n->cfg->admin_listen);
    Sr__NodeInfo *cur = NULL;
    int same = 0;
    if (queue_store_get_node(n->store, n->cfg->node_id, &cur) == 0) {
        same = strcmp(cur->rpc_address, n->cfg->rpc_listen) == 0 &&
               strcmp(cur->admin_address, admin) == 0;
        sr__node_info__free_unpacked(cur, NULL);
    }
    if (same)
        return;
    Sr__NodeInfo info = SR__NODE_INFO__INIT;
    info.id = n->cfg->node_id;
    info.rpc_address = n->cfg->rpc_listen;
    info.admin_address = admin;
    Sr__Op op = SR__OP__INIT;
    op.op_case = SR__OP__OP_NODE_INFO;
    op.node_info = &info;
    if (rnode_propose(n, &op, 5000, info_cb, n) == 0)
        n->info_inflight = 1;
}

static void on_poll(uv_timer_t *t)
{
    struct rnode *n = t->data;
    if (n->closing)
        return;
    int leader = raft_state(&n->raft) == RAFT_LEADER;
    if (!leader) {
        if (n->ready)
            LOG_INFO("event=leader_lost term=%llu",
                     (unsigned long long)n->raft.current_term);
        n->ready = 0;
    } else if (n->ready && n->raft.current_term != n->barrier_term) {
        n->ready = 0;
    }
    if (leader && !n->ready && !n->barrier_pending) {
        n->barrier_pending = 1;
        n->barrier_term = n->raft.current_term;
        n->barrier.data = n;
        if (raft_barrier(&n->raft, &n->barrier, barrier_cb) != 0)
            n->barrier_pending = 0;
        else
            LOG_INFO("event=leader_elected term=%llu",
                     (unsigned long long)n->barrier_term);
    }
    /* Expire queued proposals that nobody could take. */
    uint64_t now = uv_now(n->loop);
    struct prop **pp = &n->pending;
    while (*pp) {
        struct prop *p = *pp;
        if (p->deadline <= now) {
            *pp = p->next;
            prop_done(p, SR_ETIMEDOUT, 0);
        } else {
            pp = &p->next;
        }
    }
    n->pending_tail = &n->pending;
    while (*n->pending_tail)
        n->pending_tail = &(*n->pending_tail)->next;
    check_node_info(n);
    if (n->pending)
        flush(n);
}

/* ---- queries ---- */

struct raft *rnode_raft(struct rnode *n)
{
    return &n->raft;
}

struct queue_fsm *rnode_fsm(struct rnode *n)
{
    return &n->fsm;
}

int rnode_is_ready_leader(const struct rnode *n)
{
    return n->ready && n->raft.state == RAFT_LEADER;
}

uint64_t rnode_leader(struct rnode *n)
{
    raft_id id = 0;
    const char *addr = NULL;
    raft_leader(&n->raft, &id, &addr);
    return id;
}

static int node_addr(struct rnode *n, uint64_t id, int admin, char *buf,
                     size_t len)
{
    Sr__NodeInfo *info;
    if (queue_store_get_node(n->store, id, &info) == 0) {
        snprintf(buf, len, "%s",
                 admin ? info->admin_address : info->rpc_address);
        sr__node_info__free_unpacked(info, NULL);
        return 0;
    }
    if (id == n->cfg->node_id) {
        snprintf(buf, len, "%s",
                 admin ? n->cfg->admin_listen : n->cfg->rpc_listen);
        return 0;
    }
    for (unsigned i = 0; i < n->cfg->n_peers; i++) {
        if (n->cfg->peers[i].id == id && !admin) {
            snprintf(buf, len, "%s", n->cfg->peers[i].rpc_address);
            return 0;
        }
    }
    return SR_ENOTFOUND;
}

int rnode_rpc_address(struct rnode *n, uint64_t id, char *buf, size_t len)
{
    return node_addr(n, id, 0, buf, len);
}

int rnode_admin_address(struct rnode *n, uint64_t id, char *buf, size_t len)
{
    return node_addr(n, id, 1, buf, len);
}

unsigned rnode_voters(struct rnode *n, uint64_t *ids, unsigned cap)
{
    unsigned k = 0;
    for (unsigned i = 0; i < n->raft.configuration.n && k < cap; i++)
        if (n->raft.configuration.servers[i].role == RAFT_VOTER)
            ids[k++] = n->raft.configuration.servers[i].id;
    return k;
}

void rnode_set_apply_hook(struct rnode *n,
                          void (*fn)(void *ud, uint64_t index,
                                     const Sr__Entry *e, const int *statuses),
                          void *ud)
{
    n->fsm.on_apply = fn;
    n->fsm.ud = ud;
}

/* ---- membership ---- */

static void change_cb(struct raft_change *req, int status)
{
    struct member_op *m = req->data;
    if (status == 0 && m->role >= 0 && m->role != RAFT_SPARE) {
        /* raft_add makes a spare; now give it the asked role (a voter is
         * caught up by the leader first). */
        int role = m->role;
        m->role = -1;
        int rc =
            raft_assign(&m->node->raft, &m->change, m->id, role, change_cb);
        if (rc == 0)
            return;
        status = rc;
    }
    m->cb(m->ud, status ? SR_EINVAL : 0, status ? raft_strerror(status) : "ok");
    free(m);
}

static struct member_op *member_op(struct rnode *n, uint64_t id, int role,
                                   rnode_done_cb cb, void *ud)
{
    struct member_op *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    m->node = n;
    m->id = id;
    m->role = role;
    m->cb = cb;
    m->ud = ud;
    m->change.data = m;
    m->transfer.data = m;
    return m;
}

static int member_start(struct member_op *m, int rc, char *what)
{
    (void)what;
    if (rc != 0) {
        m->cb(m->ud, SR_EINVAL, raft_strerror(rc));
        free(m);
    }
    return 0;
}

int rnode_add(struct rnode *n, uint64_t id, const char *address, int role,
              rnode_done_cb cb, void *ud)
{
    struct member_op *m = member_op(n, id, role, cb, ud);
    if (m == NULL)
        return SR_ENOMEM;
    return member_start(
        m, raft_add(&n->raft, &m->change, id, address, change_cb), "add");
}

int rnode_remove(struct rnode *n, uint64_t id, rnode_done_cb cb, void *ud)
{
    struct member_op *m = member_op(n, id, -1, cb, ud);
    if (m == NULL)
        return SR_ENOMEM;
    return member_start(m, raft_remove(&n->raft, &m->change, id, change_cb),
                        "remove");
}

int rnode_assign(struct rnode *n, uint64_t id, int role, rnode_done_cb cb,
                 void *ud)
{
    struct member_op *m = member_op(n, id, -1, cb, ud);
    if (m == NULL)
        return SR_ENOMEM;
    return member_start(
        m, raft_assign(&n->raft, &m->change, id, role, change_cb), "assign");
}

static void transfer_cb(struct raft_transfer *req)
{
    struct member_op *m = req->data;
    uint64_t leader = rnode_leader(m->node);
    int ok = leader != 0 && leader != m->node->cfg->node_id;
    m->cb(m->ud, ok ? 0 : SR_ETIMEDOUT, ok ? "ok" : "transfer failed");
    free(m);
}

int rnode_transfer(struct rnode *n, uint64_t id, rnode_done_cb cb, void *ud)
{
    struct member_op *m = member_op(n, id, -1, cb, ud);
    if (m == NULL)
        return SR_ENOMEM;
    return member_start(
        m, raft_transfer(&n->raft, &m->transfer, id, transfer_cb), "transfer");
}

/* ---- lifecycle ---- */

int rnode_start(uv_loop_t *loop, const struct sr_config *cfg,
                struct queue_store *store, struct rpc *rpc, struct rnode **out,
                char *err, size_t errlen)
{
    struct rnode *n = calloc(1, sizeof *n);
    if (n == NULL)
        return SR_ENOMEM;
    n->loop = loop;
    n->cfg = cfg;
    n->store = store;
    n->rpc = rpc;
    n->pending_tail = &n->pending;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/raft", cfg->data_dir);
    mkdir(dir, 0750);
    int rc = sr_transport_init(&n->transport, loop, cfg);
    if (rc != 0) {
        free(n);
        return sr_err(err, errlen, SR_EIO, "raft transport: %s",
                      raft_strerror(rc));
    }
    rc = raft_uv_init(&n->io, loop, dir, &n->transport.outer);
    if (rc != 0) {
        sr_transport_close(&n->transport);
        free(n);
        return sr_err(err, errlen, SR_EIO, "raft io %s: %s", dir,
                      raft_strerror(rc));
    }
    queue_fsm_init(&n->fsm, &n->raft, store);
    n->fsm.on_result = on_result;
    n->fsm.result_ud = n;
    rc = raft_init(&n->raft, &n->io, &n->fsm.fsm, cfg->node_id,
                   cfg->raft_listen);
    if (rc != 0)
        goto fail;
    raft_set_election_timeout(&n->raft, cfg->election_timeout_ms);
    raft_set_heartbeat_timeout(&n->raft, cfg->heartbeat_ms);
    raft_set_pre_vote(&n->raft, true);
    raft_set_snapshot_threshold(&n->raft, cfg->snapshot_threshold);
    raft_set_snapshot_trailing(&n->raft, cfg->snapshot_trailing);
    raft_uv_set_connect_retry_delay(&n->io, 100);

    if (cfg->bootstrap) {
        struct raft_configuration conf;
        raft_configuration_init(&conf);
        if (cfg->n_peers == 0) {
            raft_configuration_add(&conf, cfg->node_id, cfg->raft_listen,
                                   RAFT_VOTER);
        }
        for (unsigned i = 0; i < cfg->n_peers; i++)
            raft_configuration_add(&conf, cfg->peers[i].id,
                                   cfg->peers[i].raft_address, RAFT_VOTER);
        rc = raft_bootstrap(&n->raft, &conf);
        raft_configuration_close(&conf);
        if (rc != 0 && rc != RAFT_CANTBOOTSTRAP)
            goto fail;
        if (rc == 0)
            LOG_INFO("event=bootstrapped voters=%u",
                     cfg->n_peers ? cfg->n_peers : 1);
    }
    rc = raft_start(&n->raft);
    if (rc != 0)
        goto fail;
    uv_check_init(loop, &n->check);
    n->check.data = n;
    uv_timer_init(loop, &n->poll);
    n->poll.data = n;
    uv_timer_start(&n->poll, on_poll, POLL_MS, POLL_MS);
    *out = n;
    return 0;
fail:
    sr_err(err, errlen, SR_EIO, "raft: %s (%s)", raft_strerror(rc),
           raft_errmsg(&n->raft));
    /* Exiting after this; libraft offers no clean synchronous teardown of
     * a half-started instance. */
    return SR_EIO;
}

static void maybe_closed(struct rnode *n)
{
    if (--n->handles > 0)
        return;
    queue_fsm_close(&n->fsm);
    void (*cb)(void *) = n->close_cb;
    void *arg = n->close_arg;
    free(n);
    if (cb)
        cb(arg);
}

static void handle_closed(uv_handle_t *h)
{
    maybe_closed(h->data);
}

static void raft_closed(struct raft *r)
{
    struct rnode *n = r->data;
    raft_uv_close(&n->io);
    sr_transport_close(&n->transport);
    maybe_closed(n);
}

void rnode_close(struct rnode *n, void (*cb)(void *), void *arg)
{
    n->closing = 1;
    n->close_cb = cb;
    n->close_arg = arg;
    while (n->pending) {
        struct prop *p = n->pending;
        n->pending = p->next;
        prop_done(p, SR_ESHUTDOWN, 0);
    }
    n->pending_tail = &n->pending;
    n->handles = 3;
    uv_close((uv_handle_t *)&n->check, handle_closed);
    uv_close((uv_handle_t *)&n->poll, handle_closed);
    n->raft.data = n;
    raft_close(&n->raft, raft_closed);
}
