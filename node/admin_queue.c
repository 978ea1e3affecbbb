/*
 * admin_queue.c - the admin API's queue actions (docs/ADMIN_API.md):
 * suspend, resume, retry and bounce, and the list of suspensions.
 *
 * Each action is one QueueAction op; the node that got the request
 * proposes it (a follower's proposal travels to the leader like any
 * other) and answers once it is committed, with the op's count.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/admin_int.h"
#include "node/clock.h"
#include "node/errors.h"
#include "node/log.h"
#include "node/node_int.h"
#include "queue/qaction.h"

static json_t *susp_json(const Sr__StoredSuspension *x)
{
    json_t *o = json_pack("{s:s,s:I,s:i,s:s,s:s,s:I}", "domain", x->domain,
                          "since_ms", (json_int_t)x->since_ms, "per_minute",
                          (int)x->per_minute, "reason", x->reason, "source",
                          x->source, "node", (json_int_t)x->node);
    json_object_set_new(o, "until_ms",
                        x->until_ms == QACTION_FOREVER
                            ? json_null()
                            : json_integer((json_int_t)x->until_ms));
    return o;
}

static void add_susp(void *ud, const Sr__StoredSuspension *x)
{
    json_array_append_new(ud, susp_json(x));
}

void admin_get_suspensions(struct sr_node *n, struct sink *s)
{
    json_t *list = json_array();
    qaction_suspensions(n->store, sr_wall_ms(), add_susp, list);
    admin_reply(s, 200, json_pack("{s:o}", "suspensions", list));
}

struct qreq {
    struct sink *s;
    unsigned action;
};

static void action_cb(void *ud, int status, uint64_t index)
{
    struct qreq *q = ud;
    if (status >= 0)
        admin_reply(q->s, 200,
                    json_pack("{s:b,s:s,s:i,s:I}", "ok", 1, "action",
                              qaction_name(q->action), "recipients", status,
                              "index", (json_int_t)index));
    else if (status == SR_ENOTFOUND)
        admin_reply_error(q->s, 404,
                          q->action == QUEUE_RESUME ? "domain is not suspended"
                                                    : "no such message");
    else if (status == SR_EINVAL)
        admin_reply_error(q->s, 400, "invalid queue action");
    else
        admin_reply_error(q->s, 503, sr_strerror(status));
    free(q);
}

static const char *str(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : "";
}

void admin_post_queue(struct sr_node *n, struct sink *s, const char *method,
                      const char *path, const char *body, size_t len)
{
    unsigned action = 0;
    if (strcmp(path, "suspend") == 0)
        action = QUEUE_SUSPEND;
    else if (strcmp(path, "resume") == 0)
        action = QUEUE_RESUME;
    else if (strcmp(path, "retry") == 0)
        action = QUEUE_RETRY;
    else if (strcmp(path, "bounce") == 0)
        action = QUEUE_BOUNCE;
    if (action == 0 || strcmp(method, "POST") != 0) {
        admin_reply_error(s, 404, "no such endpoint");
        return;
    }
    json_t *o = len ? json_loadb(body, len, 0, NULL) : json_object();
    if (o == NULL || !json_is_object(o)) {
        json_decref(o);
        admin_reply_error(s, 400, "body must be a JSON object");
        return;
    }
    Sr__QueueAction a = SR__QUEUE_ACTION__INIT;
    a.action = action;
    a.domain = (char *)str(o, "domain");
    a.code = (char *)str(o, "code");
    a.reason = (char *)str(o, "reason");
    a.source = "operator";
    a.node = n->cfg->node_id;
    json_t *secs = json_object_get(o, "seconds");
    json_t *pm = json_object_get(o, "per_minute");
    const char *bad = NULL;
    if ((action == QUEUE_SUSPEND || action == QUEUE_RESUME) && !a.domain[0])
        bad = "domain required";
    else if (action == QUEUE_BOUNCE && !a.code[0])
        bad = "code required";
    else if (action == QUEUE_RETRY && !a.code[0] == !a.domain[0])
        bad = "give either domain or code";
    else if (secs && (!json_is_integer(secs) || json_integer_value(secs) < 1 ||
                      json_integer_value(secs) > 365 * 86400))
        bad = "seconds: an integer from 1 to 31536000";
    else if (pm && (!json_is_integer(pm) || json_integer_value(pm) < 1 ||
                    json_integer_value(pm) > 100000000))
        bad = "per_minute: an integer from 1";
    else if (strlen(a.reason) > 1000 || strlen(a.domain) > 253)
        bad = "reason or domain too long";
    if (bad) {
        json_decref(o);
        admin_reply_error(s, 400, bad);
        return;
    }
    if (action == QUEUE_SUSPEND && secs)
        a.until_ms = sr_wall_ms() + (uint64_t)json_integer_value(secs) * 1000;
    if (action == QUEUE_SUSPEND && pm)
        a.per_minute = (uint32_t)json_integer_value(pm);
    struct qreq *q = malloc(sizeof *q);
    if (q == NULL) {
        json_decref(o);
        admin_reply_error(s, 503, "out of memory");
        return;
    }
    q->s = s;
    q->action = action;
    Sr__Op op = SR__OP__INIT;
    op.op_case = SR__OP__OP_QUEUE_ACTION;
    op.queue_action = &a;
    int rc = rnode_propose(n->rn, &op, 10000, action_cb, q);
    LOG_INFO("event=queue_action action=%s domain=%s code=%s status=%s",
             qaction_name(action), a.domain[0] ? a.domain : "-",
             a.code[0] ? a.code : "-", rc ? sr_strerror(rc) : "proposed");
    json_decref(o);
    if (rc != 0) {
        free(q);
        admin_reply_error(s, 503, sr_strerror(rc));
    }
}
