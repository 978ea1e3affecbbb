/* shards.c - delivery leases and shard assignment (see shards.h). */
#include "engine/shards.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "node/clock.h"
#include "node/errors.h"
#include "node/log.h"
#include "queue/dqueue.h"
#include "raft/rnode.h"

#define MAX_NODES 64

struct shards {
    uv_loop_t *loop;
    uint64_t self;
    struct queue_store *store;
    struct rnode *rn;
    uv_timer_t timer;
    uint64_t lease_until;  /* uv_now() ms; 0 = none */
    struct req *renewing;  /* a renewal in flight, or NULL */
    struct req *assigning; /* an assignment in flight, or NULL */
    struct req *releasing; /* a release in flight, or NULL */
    uint64_t last_owned;   /* for logging changes */
    uint64_t draining;     /* owned shards being handed over */
    bool (*busy)(void *ud, unsigned shard);
    void *busy_ud;
};

/* A proposal in flight; s is cleared if the module stops first. For a
 * renewal, sent is when it left, to count the lease from there. */
struct req {
    struct shards *s;
    uint64_t sent;
};

static void renewed(void *ud, int status, uint64_t index)
{
    (void)index;
    struct req *r = ud;
    struct shards *s = r->s;
    if (s != NULL) {
        s->renewing = NULL;
        if (status == 0) {
            uint64_t until = r->sent + SHARDS_LEASE_MS - SHARDS_MARGIN_MS;
            if (until > s->lease_until)
                s->lease_until = until;
        }
    }
    free(r);
}

static void assigned(void *ud, int status, uint64_t index)
{
    (void)index;
    struct req *r = ud;
    struct shards *s = r->s;
    free(r);
    if (s == NULL)
        return;
    s->assigning = NULL;
    if (status != 0)
        LOG_DEBUG("event=shard_assign_failed error=%s", sr_strerror(status));
}

/* The nodes whose lease runs past `after` (entry-time clock), into live. */
static size_t live_nodes(const uint64_t *nodes, const uint64_t *expiry,
                         size_t n, uint64_t after, uint64_t *live)
{
    size_t nl = 0;
    for (size_t i = 0; i < n; i++)
        if (expiry[i] > after)
            live[nl++] = nodes[i];
    return nl;
}

/* Leader: give every shard without a live owner to a live node. */
static void assign(struct shards *s)
{
    uint64_t nodes[MAX_NODES], expiry[MAX_NODES], live[MAX_NODES];
    size_t n = dqueue_leases(s->store, nodes, expiry, MAX_NODES);
    uint64_t now = sr_wall_ms();
    size_t nl = live_nodes(nodes, expiry, n, now, live);
    if (nl == 0)
        return;
    uint64_t owners[SHARD_COUNT], want[SHARD_COUNT], epoch;
    dqueue_shards(s->store, owners, &epoch);
    int change = 0;
    for (unsigned sh = 0; sh < SHARD_COUNT; sh++) {
        int alive = 0;
        for (size_t i = 0; i < nl; i++)
            alive = alive || live[i] == owners[sh];
        want[sh] = alive ? owners[sh] : shard_pick_owner(sh, live, nl);
        /* the state machine moves a shard only once the old lease is over */
        if (want[sh] != owners[sh]) {
            int expired = 1;
            for (size_t i = 0; i < n; i++)
                if (nodes[i] == owners[sh] && expiry[i] > now)
                    expired = 0;
            if (expired)
                change = 1;
            else
                want[sh] = owners[sh];
        }
    }
    if (!change)
        return;
    Sr__ShardAssign a = SR__SHARD_ASSIGN__INIT;
    a.owners = want;
    a.n_owners = SHARD_COUNT;
    Sr__Op op = SR__OP__INIT;
    op.op_case = SR__OP__OP_SHARD_ASSIGN;
    op.shard_assign = &a;
    struct req *r = calloc(1, sizeof *r);
    if (r == NULL)
        return;
    r->s = s;
    if (rnode_propose(s->rn, &op, 3000, assigned, r) == 0)
        s->assigning = r;
    else
        free(r);
}

static void released(void *ud, int status, uint64_t index)
{
    (void)index;
    struct req *r = ud;
    struct shards *s = r->s;
    free(r);
    if (s == NULL)
        return;
    s->releasing = NULL;
    if (status < 0)
        LOG_DEBUG("event=shard_release_failed error=%s", sr_strerror(status));
}

/* Every owner: the shards it owns that rendezvous hashing over the live
 * nodes gives to another live node (one that came back) are drained: no
 * new work starts for them, and once this node's deliveries for them are
 * settled (results applied here) it releases them, so the leader can
 * assign them to that node with nothing in flight. A node counts as live
 * for this when its lease has at least half its length left (renewed
 * lately), so a node that is dying is not handed work. */
static void handover(struct shards *s)
{
    uint64_t nodes[MAX_NODES], expiry[MAX_NODES], live[MAX_NODES];
    size_t n = dqueue_leases(s->store, nodes, expiry, MAX_NODES);
    size_t nl =
        live_nodes(nodes, expiry, n, sr_wall_ms() + SHARDS_LEASE_MS / 2, live);
    uint64_t owners[SHARD_COUNT], epoch, draining = 0;
    dqueue_shards(s->store, owners, &epoch);
    uint32_t idle[SHARD_COUNT];
    size_t n_idle = 0;
    for (unsigned sh = 0; sh < SHARD_COUNT && nl > 1; sh++) {
        if (owners[sh] != s->self)
            continue;
        uint64_t want = shard_pick_owner(sh, live, nl);
        if (want == s->self || want == 0)
            continue;
        draining |= 1ull << sh;
        if (s->busy == NULL || !s->busy(s->busy_ud, sh))
            idle[n_idle++] = sh;
    }
    if (draining != s->draining)
        LOG_INFO("event=shards_draining count=%d",
                 __builtin_popcountll(draining));
    s->draining = draining;
    if (n_idle == 0 || s->releasing)
        return;
    Sr__ShardRelease r = SR__SHARD_RELEASE__INIT;
    r.node = s->self;
    r.shards = idle;
    r.n_shards = n_idle;
    Sr__Op op = SR__OP__INIT;
    op.op_case = SR__OP__OP_SHARD_RELEASE;
    op.shard_release = &r;
    struct req *q = calloc(1, sizeof *q);
    if (q == NULL)
        return;
    q->s = s;
    if (rnode_propose(s->rn, &op, 3000, released, q) == 0)
        s->releasing = q;
    else
        free(q);
}

static void tick(uv_timer_t *t)
{
    struct shards *s = t->data;
    if (!s->renewing) {
        struct req *r = malloc(sizeof *r);
        if (r != NULL) {
            r->s = s;
            r->sent = uv_now(s->loop);
            Sr__LeaseRenew l = SR__LEASE_RENEW__INIT;
            l.node = s->self;
            l.lease_ms = SHARDS_LEASE_MS;
            Sr__Op op = SR__OP__INIT;
            op.op_case = SR__OP__OP_LEASE_RENEW;
            op.lease_renew = &l;
            if (rnode_propose(s->rn, &op, SHARDS_RENEW_MS * 2, renewed, r) == 0)
                s->renewing = r;
            else
                free(r);
        }
    }
    if (!s->assigning && rnode_is_ready_leader(s->rn))
        assign(s);
    if (shards_lease_valid(s))
        handover(s);
    uint64_t owned = shards_owned(s);
    if (owned != s->last_owned) {
        LOG_INFO("event=shards_owned count=%d lease=%s",
                 __builtin_popcountll(owned),
                 shards_lease_valid(s) ? "valid" : "expired");
        s->last_owned = owned;
    }
}

int shards_start(uv_loop_t *loop, uint64_t self, struct queue_store *store,
                 struct rnode *rn, struct shards **out)
{
    struct shards *s = calloc(1, sizeof *s);
    if (s == NULL)
        return SR_ENOMEM;
    s->loop = loop;
    s->self = self;
    s->store = store;
    s->rn = rn;
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    uv_timer_start(&s->timer, tick, 100, SHARDS_RENEW_MS);
    *out = s;
    return 0;
}

static void closed(uv_handle_t *h)
{
    free(h->data);
}

void shards_stop(struct shards *s)
{
    if (s == NULL)
        return;
    uv_timer_stop(&s->timer);
    if (s->renewing)
        s->renewing->s = NULL;
    if (s->assigning)
        s->assigning->s = NULL;
    if (s->releasing)
        s->releasing->s = NULL;
    uv_close((uv_handle_t *)&s->timer, closed);
}

int shards_lease_valid(struct shards *s)
{
    return s->lease_until > uv_now(s->loop);
}

uint64_t shards_owned(struct shards *s)
{
    if (!shards_lease_valid(s))
        return 0;
    uint64_t owners[SHARD_COUNT], epoch, mask = 0;
    dqueue_shards(s->store, owners, &epoch);
    for (unsigned sh = 0; sh < SHARD_COUNT; sh++)
        if (owners[sh] == s->self)
            mask |= 1ull << sh;
    return mask & ~s->draining;
}

void shards_set_busy(struct shards *s, bool (*busy)(void *ud, unsigned shard),
                     void *ud)
{
    s->busy = busy;
    s->busy_ud = ud;
}
