/* rates.c - leased tokens of cluster-wide rates (see rates.h). */
#include "engine/rates.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/clock.h"
#include "node/errors.h"
#include "node/log.h"
#include "queue/policy.h"
#include "queue/tbucket.h"
#include "raft/rnode.h"

#define SCOPE_MAX 200

/* One scope's local lease. */
struct scope {
    struct scope *next;
    struct rates *r;
    char name[SCOPE_MAX + 1];
    uint32_t tokens;     /* granted, not spent */
    uint64_t expires_ms; /* the tokens are dropped then */
    uint64_t retry_ms;   /* after a refusal: not before */
    uint64_t per_hour;   /* as last asked, for the retry pause */
    bool asking;         /* a RateGrant is in flight */
};

struct rates {
    struct rnode *rn;
    uint64_t node_id;
    void (*on_grant)(void *ud);
    void *ud;
    struct scope *scopes;
    unsigned asking; /* proposals in flight */
    bool dead;
};

struct rates *rates_new(struct rnode *rn, uint64_t node_id,
                        void (*on_grant)(void *ud), void *ud)
{
    struct rates *r = calloc(1, sizeof *r);
    if (r != NULL) {
        r->rn = rn;
        r->node_id = node_id;
        r->on_grant = on_grant;
        r->ud = ud;
    }
    return r;
}

static void destroy(struct rates *r)
{
    while (r->scopes) {
        struct scope *s = r->scopes;
        r->scopes = s->next;
        free(s);
    }
    free(r);
}

void rates_free(struct rates *r)
{
    if (r == NULL)
        return;
    r->dead = true;
    if (r->asking == 0)
        destroy(r);
}

static struct scope *scope_get(struct rates *r, const char *name)
{
    for (struct scope *s = r->scopes; s; s = s->next)
        if (strcmp(s->name, name) == 0)
            return s;
    struct scope *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->r = r;
    snprintf(s->name, sizeof s->name, "%s", name);
    s->next = r->scopes;
    r->scopes = s;
    return s;
}

static void granted(void *ud, int status, uint64_t index)
{
    (void)index;
    struct scope *s = ud;
    struct rates *r = s->r;
    r->asking--;
    s->asking = false;
    if (r->dead) {
        if (r->asking == 0)
            destroy(r);
        return;
    }
    uint64_t now = sr_wall_ms();
    if (status > 0) {
        s->tokens = (uint32_t)status;
        s->expires_ms = now + TBUCKET_GRANT_TTL_MS;
        r->on_grant(r->ud);
        return;
    }
    /* nothing (or no leader): wait for one token's refill */
    uint64_t pause = s->per_hour ? 3600000 / s->per_hour : 1000;
    if (pause < 20)
        pause = 20;
    if (pause > 5000)
        pause = 5000;
    s->retry_ms = now + pause;
    if (status < 0)
        LOG_DEBUG("event=rate_grant_failed scope=%s error=%s", s->name,
                  sr_strerror(status));
}

static void ask(struct rates *r, struct scope *s, uint64_t per_hour,
                uint32_t burst, uint64_t now)
{
    if (s->asking || now < s->retry_ms)
        return;
    /* a quarter second's worth, at least one, at most the bucket */
    uint64_t want = per_hour / (3600 * 4);
    if (want < 1)
        want = 1;
    if (want > burst)
        want = burst;
    Sr__RateGrant g = SR__RATE_GRANT__INIT;
    g.scope = s->name;
    g.want = (uint32_t)want;
    g.per_hour = per_hour;
    g.burst = burst;
    g.node = r->node_id;
    Sr__Op op = SR__OP__INIT;
    op.op_case = SR__OP__OP_RATE_GRANT;
    op.rate_grant = &g;
    s->per_hour = per_hour;
    if (rnode_propose(r->rn, &op, 5000, granted, s) == 0) {
        s->asking = true;
        r->asking++;
    } else {
        s->retry_ms = now + 100;
    }
}

struct need {
    struct scope *s;
    uint64_t per_hour;
    uint32_t burst;
};

bool rates_take_scope(struct rates *r, const char *scope, uint64_t per_hour,
                      uint32_t burst, uint64_t now_ms)
{
    struct scope *s = scope_get(r, scope);
    if (s == NULL)
        return false;
    if (s->tokens && now_ms >= s->expires_ms)
        s->tokens = 0;
    if (s->tokens == 0) {
        ask(r, s, per_hour, burst, now_ms);
        return false;
    }
    s->tokens--;
    return true;
}

bool rates_take(struct rates *r, const struct policy *p, const char *customer,
                uint64_t now_ms)
{
    struct need need[3];
    unsigned n = 0;
    char name[SCOPE_MAX + 1];
    const struct policy_customer *c = policy_find(p, customer);
    if (p != NULL && p->global_per_second) {
        need[n].s = scope_get(r, "global");
        need[n].per_hour = (uint64_t)p->global_per_second * 3600;
        need[n++].burst = p->global_per_second;
    }
    if (c != NULL && c->per_second) {
        snprintf(name, sizeof name, "customer:%s:s", customer);
        need[n].s = scope_get(r, name);
        need[n].per_hour = (uint64_t)c->per_second * 3600;
        need[n++].burst = c->per_second;
    }
    if (c != NULL && c->per_hour) {
        snprintf(name, sizeof name, "customer:%s:h", customer);
        need[n].s = scope_get(r, name);
        need[n].per_hour = c->per_hour;
        need[n++].burst = c->per_hour >= 60 ? c->per_hour / 60 : 1;
    }
    bool ok = true;
    for (unsigned i = 0; i < n; i++) {
        struct scope *s = need[i].s;
        if (s == NULL)
            return false;
        if (s->tokens && now_ms >= s->expires_ms)
            s->tokens = 0; /* stale: dropped */
        if (s->tokens == 0) {
            ok = false;
            ask(r, s, need[i].per_hour, need[i].burst, now_ms);
        }
    }
    if (!ok)
        return false;
    for (unsigned i = 0; i < n; i++)
        need[i].s->tokens--;
    return true;
}
