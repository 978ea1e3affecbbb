/* suspend.c - suspensions cache and response rules (see suspend.h). */
#include "engine/suspend.h"

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "node/errors.h"
#include "node/log.h"
#include "queue/policy.h"
#include "queue/qaction.h"
#include "raft/rnode.h"

struct entry {
    struct entry *next;
    char domain[254];
    uint64_t checked_ms; /* state read then */
    uint64_t hold_ms;    /* local suspension kept at least until then */
    bool on;
    struct suspension x;
};

struct suspend {
    struct queue_store *store;
    struct rnode *rn;
    uint64_t node_id;
    struct entry *entries;
    unsigned n_entries;
};

#define SUSPEND_CACHE_MAX 4096

struct suspend *suspend_new(struct queue_store *store, struct rnode *rn,
                            uint64_t node_id)
{
    struct suspend *s = calloc(1, sizeof *s);
    if (s != NULL) {
        s->store = store;
        s->rn = rn;
        s->node_id = node_id;
    }
    return s;
}

void suspend_free(struct suspend *s)
{
    if (s == NULL)
        return;
    while (s->entries) {
        struct entry *e = s->entries;
        s->entries = e->next;
        free(e);
    }
    free(s);
}

static struct entry *entry_get(struct suspend *s, const char *domain,
                               uint64_t now)
{
    for (struct entry *e = s->entries; e; e = e->next)
        if (strcasecmp(e->domain, domain) == 0)
            return e;
    /* Bounded: past SUSPEND_CACHE_MAX domains, forget those not suspended
     * now, suspensions that have ended included (they are read again from
     * the state when next needed), but not our own not yet applied. */
    if (s->n_entries >= SUSPEND_CACHE_MAX) {
        for (struct entry **pp = &s->entries; *pp;) {
            struct entry *x = *pp;
            if ((!x->on || x->x.until_ms <= now) && now >= x->hold_ms) {
                *pp = x->next;
                free(x);
                s->n_entries--;
            } else {
                pp = &x->next;
            }
        }
    }
    struct entry *e = calloc(1, sizeof *e);
    if (e == NULL)
        return NULL;
    snprintf(e->domain, sizeof e->domain, "%s", domain);
    e->next = s->entries;
    s->entries = e;
    s->n_entries++;
    return e;
}

static void refresh(struct suspend *s, struct entry *e, uint64_t now)
{
    if (e->checked_ms && now < e->checked_ms + SUSPEND_REFRESH_MS)
        return;
    e->checked_ms = now;
    if (now < e->hold_ms)
        return; /* our own, maybe not applied here yet */
    Sr__StoredSuspension *x;
    if (qaction_suspension(s->store, e->domain, now, &x) == 0) {
        e->on = true;
        e->x.until_ms = x->until_ms;
        e->x.per_minute = x->per_minute;
        snprintf(e->x.reason, sizeof e->x.reason, "%s", x->reason);
        sr__stored_suspension__free_unpacked(x, NULL);
    } else {
        e->on = false;
    }
}

bool suspend_get(struct suspend *s, const char *domain, uint64_t now_ms,
                 struct suspension *out)
{
    struct entry *e = entry_get(s, domain, now_ms);
    if (e == NULL)
        return false;
    refresh(s, e, now_ms);
    if (!e->on || e->x.until_ms <= now_ms)
        return false;
    *out = e->x;
    return true;
}

static void proposed(void *ud, int status, uint64_t index)
{
    (void)index;
    char *domain = ud;
    if (status < 0)
        LOG_WARN("event=suspend_failed domain=%s error=%s", domain,
                 sr_strerror(status));
    free(domain);
}

bool suspend_check_reply(struct suspend *s, const struct policy_dest *pd,
                         const char *domain, const char *reply, uint64_t now_ms)
{
    if (pd == NULL || pd->n_rules == 0 || reply == NULL || reply[0] == '\0')
        return false;
    for (unsigned i = 0; i < pd->n_rules; i++) {
        const struct policy_rule *r = &pd->rules[i];
        if (regexec(&r->re, reply, 0, NULL, 0) != 0)
            continue;
        uint64_t until = now_ms + (uint64_t)r->seconds * 1000;
        struct suspension cur;
        if (suspend_get(s, domain, now_ms, &cur) && cur.until_ms >= until &&
            (cur.per_minute == 0 || cur.per_minute <= r->per_minute))
            return false; /* already covered */
        struct entry *e = entry_get(s, domain, now_ms);
        char *dom = strdup(domain);
        if (e == NULL || dom == NULL) {
            free(dom);
            return false;
        }
        e->on = true;
        e->x.until_ms = until;
        e->x.per_minute = r->slow ? r->per_minute : 0;
        snprintf(e->x.reason, sizeof e->x.reason, "%s", reply);
        e->hold_ms = now_ms + SUSPEND_LOCAL_HOLD_MS;
        char source[32];
        snprintf(source, sizeof source, "rule:%u", i);
        Sr__QueueAction a = SR__QUEUE_ACTION__INIT;
        a.action = QUEUE_SUSPEND;
        a.domain = dom;
        a.until_ms = until;
        a.per_minute = e->x.per_minute;
        a.reason = e->x.reason;
        a.source = source;
        a.node = s->node_id;
        Sr__Op op = SR__OP__INIT;
        op.op_case = SR__OP__OP_QUEUE_ACTION;
        op.queue_action = &a;
        LOG_WARN("event=destination_suspended domain=%s rule=%u seconds=%u "
                 "per_minute=%u reply=\"%s\"",
                 domain, i, r->seconds, e->x.per_minute, e->x.reason);
        if (rnode_propose(s->rn, &op, 10000, proposed, dom) != 0)
            free(dom);
        return true;
    }
    return false;
}
