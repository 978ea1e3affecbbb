/* repair.c - background body repair (see repair.h). */
#include "engine/repair.h"

#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "node/code.h"
#include "node/errors.h"
#include "node/log.h"

#define REPAIR_BATCH 256
#define REPAIR_INFLIGHT 8
#define REPAIR_TICK_MS 200
#define REPAIR_PERIOD_MS 30000
#define MAX_IDS 16

enum item_kind { ITEM_CHECK, ITEM_COPY };

/* One body to check or copy; owned by the repair until done. */
struct item {
    struct item *next;
    struct repair *r;
    enum item_kind kind;
    char code[CODE_MAX + 8];
    uint8_t digest[SHA256_DIGEST_LENGTH];
    uint64_t holders[MAX_IDS];
    unsigned n_holders, tried;
    uint8_t *body;
    size_t len;
};

struct repair {
    uv_loop_t *loop;
    const struct sr_config *cfg;
    struct queue_store *store;
    struct body_store *bodies;
    struct rnode *rn;
    struct rpc *rpc;
    uv_timer_t timer;
    char cursor[64];    /* last code scanned in this pass */
    uint64_t next_pass; /* uv_now() of the next pass when idle */
    int scanning;
    struct item *queue, **queue_tail;
    unsigned inflight;
    unsigned queued;
    int stopping;
    uint64_t fetched;
};

static void pump(struct repair *r);

static void item_done(struct item *it)
{
    struct repair *r = it->r;
    free(it->body);
    free(it);
    r->inflight--;
    if (r->stopping) {
        if (r->inflight == 0 && r->timer.data == NULL)
            free(r);
        return;
    }
    pump(r);
}

static void fetch_next(struct item *it);

static void holder_added(void *ud, int status, uint64_t index)
{
    struct item *it = ud;
    (void)index;
    if (status == 0 || status == SR_EEXIST)
        LOG_INFO("code=%s event=body_replicated node=%llu", it->code,
                 (unsigned long long)it->r->cfg->node_id);
    item_done(it);
}

static void stored(void *ud, int status)
{
    struct item *it = ud;
    struct repair *r = it->r;
    if (status != 0) {
        LOG_WARN("code=%s event=body_repair_store_failed error=%s", it->code,
                 sr_strerror(status));
        item_done(it);
        return;
    }
    r->fetched++;
    if (it->kind == ITEM_CHECK) {
        LOG_INFO("code=%s event=body_restored", it->code);
        item_done(it);
        return;
    }
    Sr__HolderAdd h = SR__HOLDER_ADD__INIT;
    h.code = it->code;
    h.node = r->cfg->node_id;
    Sr__Op op = SR__OP__INIT;
    op.op_case = SR__OP__OP_HOLDER_ADD;
    op.holder_add = &h;
    if (rnode_propose(r->rn, &op, 10000, holder_added, it) != 0)
        item_done(it);
}

static void got_body(void *ud, int status, const Sr__Rpc *resp)
{
    struct item *it = ud;
    if (status != 0 || resp->body_case != SR__RPC__BODY_BODY_RESP ||
        resp->body_resp->status != 0) {
        fetch_next(it);
        return;
    }
    uint8_t d[SHA256_DIGEST_LENGTH];
    SHA256(resp->body_resp->body.data, resp->body_resp->body.len, d);
    if (memcmp(d, it->digest, sizeof d) != 0) {
        LOG_ERROR("code=%s event=body_repair_digest_mismatch from=%llu",
                  it->code, (unsigned long long)it->holders[it->tried - 1]);
        fetch_next(it);
        return;
    }
    it->len = resp->body_resp->body.len;
    it->body = malloc(it->len ? it->len : 1);
    if (it->body == NULL) {
        item_done(it);
        return;
    }
    memcpy(it->body, resp->body_resp->body.data, it->len);
    if (body_store_put(it->r->bodies, it->code, it->body, it->len, stored,
                       it) != 0)
        item_done(it);
}

/* Asks the next holder for the body. */
static void fetch_next(struct item *it)
{
    struct repair *r = it->r;
    while (it->tried < it->n_holders && !r->stopping) {
        uint64_t id = it->holders[it->tried++];
        char addr[128];
        if (id == r->cfg->node_id ||
            rnode_rpc_address(r->rn, id, addr, sizeof addr) != 0)
            continue;
        Sr__BodyGet g = SR__BODY_GET__INIT;
        g.code = it->code;
        Sr__Rpc rpc = SR__RPC__INIT;
        rpc.body_case = SR__RPC__BODY_BODY_GET;
        rpc.body_get = &g;
        if (rpc_send(r->rpc, id, addr, &rpc, 10000, got_body, it) == 0)
            return;
    }
    LOG_WARN("code=%s event=body_repair_failed holders=%u", it->code,
             it->n_holders);
    item_done(it);
}

static void checked(void *ud, int status)
{
    struct item *it = ud;
    if (status == 0) { /* we have it */
        item_done(it);
        return;
    }
    fetch_next(it);
}

static void start_item(struct item *it)
{
    struct repair *r = it->r;
    r->inflight++;
    if (it->kind == ITEM_CHECK) {
        if (body_store_has(r->bodies, it->code, checked, it) != 0)
            item_done(it);
    } else {
        fetch_next(it);
    }
}

static void pump(struct repair *r)
{
    while (r->queue && r->inflight < REPAIR_INFLIGHT && !r->stopping) {
        struct item *it = r->queue;
        r->queue = it->next;
        if (r->queue == NULL)
            r->queue_tail = &r->queue;
        r->queued--;
        start_item(it);
    }
}

static int contains(const uint64_t *ids, unsigned n, uint64_t id)
{
    for (unsigned i = 0; i < n; i++)
        if (ids[i] == id)
            return 1;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

struct scan_ctx {
    struct repair *r;
    uint64_t voters[MAX_IDS];
    unsigned n_voters;
};

static void visit(void *ud, const Sr__StoredMessage *m)
{
    struct scan_ctx *sc = ud;
    struct repair *r = sc->r;
    const Sr__MessageAccept *a = m->accept;
    uint64_t self = r->cfg->node_id;
    int queued_rcpts = 0;
    for (size_t i = 0; i < m->n_rcpts; i++)
        queued_rcpts |= m->rcpts[i]->state < RCPT_DELIVERED;
    if (!queued_rcpts || a->digest.len != SHA256_DIGEST_LENGTH ||
        strlen(a->code) >= CODE_MAX + 8)
        return;
    enum item_kind kind;
    if (contains(a->holders, (unsigned)a->n_holders, self)) {
        kind = ITEM_CHECK;
    } else {
        if (!contains(sc->voters, sc->n_voters, self))
            return;
        unsigned live = 0;
        for (size_t i = 0; i < a->n_holders; i++)
            live += contains(sc->voters, sc->n_voters, a->holders[i]);
        unsigned need = sc->n_voters / 2 + 1;
        if (live >= need)
            return;
        /* The first (need - live) non-holding voters by id make copies. */
        unsigned rank = 0, mine = 0;
        for (unsigned i = 0; i < sc->n_voters; i++) {
            if (contains(a->holders, (unsigned)a->n_holders, sc->voters[i]))
                continue;
            if (sc->voters[i] == self)
                mine = 1;
            else if (!mine)
                rank++;
        }
        if (rank >= need - live)
            return;
        kind = ITEM_COPY;
    }
    struct item *it = calloc(1, sizeof *it);
    if (it == NULL)
        return;
    it->r = r;
    it->kind = kind;
    strcpy(it->code, a->code);
    memcpy(it->digest, a->digest.data, sizeof it->digest);
    for (size_t i = 0; i < a->n_holders && it->n_holders < MAX_IDS; i++)
        it->holders[it->n_holders++] = a->holders[i];
    *r->queue_tail = it;
    r->queue_tail = &it->next;
    r->queued++;
}

static void tick(uv_timer_t *t)
{
    struct repair *r = t->data;
    uint64_t now = uv_now(r->loop);
    if (!r->scanning) {
        if (now < r->next_pass)
            return;
        r->scanning = 1;
        r->cursor[0] = '\0';
    }
    /* Keep the queue short: scan on only when it has drained. */
    if (r->queued > REPAIR_INFLIGHT)
        return;
    struct scan_ctx sc = {r, {0}, 0};
    sc.n_voters = rnode_voters(r->rn, sc.voters, MAX_IDS);
    qsort(sc.voters, sc.n_voters, sizeof *sc.voters, cmp_u64);
    char last[64];
    if (sc.n_voters == 0 || rnode_leader(r->rn) == 0)
        return; /* not in a working cluster yet */
    int n = queue_store_scan(r->store, r->cursor, REPAIR_BATCH, visit, &sc,
                             last, sizeof last);
    if (n < REPAIR_BATCH) {
        r->scanning = 0;
        r->next_pass = now + REPAIR_PERIOD_MS;
    } else {
        memcpy(r->cursor, last, sizeof r->cursor);
    }
    pump(r);
}

int repair_start(uv_loop_t *loop, const struct sr_config *cfg,
                 struct queue_store *store, struct body_store *bodies,
                 struct rnode *rn, struct rpc *rpc, struct repair **out)
{
    struct repair *r = calloc(1, sizeof *r);
    if (r == NULL)
        return SR_ENOMEM;
    r->loop = loop;
    r->cfg = cfg;
    r->store = store;
    r->bodies = bodies;
    r->rn = rn;
    r->rpc = rpc;
    r->queue_tail = &r->queue;
    /* First pass shortly after start: a replaced machine heals itself. */
    r->next_pass = uv_now(loop) + 1000;
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    uv_timer_start(&r->timer, tick, REPAIR_TICK_MS, REPAIR_TICK_MS);
    *out = r;
    return 0;
}

void repair_kick(struct repair *r)
{
    if (!r->scanning)
        r->next_pass = uv_now(r->loop);
}

uint64_t repair_fetched(const struct repair *r)
{
    return r->fetched;
}

static void timer_closed(uv_handle_t *h)
{
    struct repair *r = h->data;
    r->timer.data = NULL;
    if (r->inflight == 0)
        free(r);
}

void repair_stop(struct repair *r)
{
    r->stopping = 1;
    while (r->queue) {
        struct item *it = r->queue;
        r->queue = it->next;
        free(it);
    }
    r->queue_tail = &r->queue;
    r->queued = 0;
    uv_close((uv_handle_t *)&r->timer, timer_closed);
}
