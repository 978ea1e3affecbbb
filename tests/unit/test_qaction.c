/* test_qaction.c - queue actions (suspend, resume, retry, bounce), postponed
 * results and the replicated token buckets (queue/qaction.h,
 * queue/tbucket.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/errors.h"
#include "queue/dqueue.h"
#include "queue/qaction.h"
#include "queue/shard.h"
#include "queue/store.h"
#include "queue/tbucket.h"

static uint64_t next_index;

static struct queue_store *open_tmp(void)
{
    char dir[] = "/tmp/sr-test-qa-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct queue_store *s;
    char err[256];
    assert_int_equal(queue_store_open(dir, &s, err, sizeof err), 0);
    next_index = 1;
    return s;
}

static int apply_op(struct queue_store *s, uint64_t time_ms, Sr__Op *op)
{
    Sr__Op *ops[] = {op};
    Sr__Entry e = SR__ENTRY__INIT;
    e.version = 1;
    e.time_ms = time_ms;
    e.ops = ops;
    e.n_ops = 1;
    int st = 12345;
    queue_store_apply(s, next_index++, &e, &st);
    return st;
}

static void accept(struct queue_store *s, const char *code, uint64_t time_ms,
                   char **rcpts, size_t n)
{
    uint64_t holders[] = {1};
    Sr__MessageAccept a = SR__MESSAGE_ACCEPT__INIT;
    a.code = (char *)code;
    a.customer = "default";
    a.mail_from = "s@example.com";
    a.rcpts = rcpts;
    a.n_rcpts = n;
    a.holders = holders;
    a.n_holders = 1;
    Sr__Op op = SR__OP__INIT;
    op.op_case = SR__OP__OP_ACCEPT;
    op.accept = &a;
    assert_int_equal(apply_op(s, time_ms, &op), 0);
}

static int action(struct queue_store *s, uint64_t time_ms, unsigned act,
                  const char *domain, const char *code, uint64_t until,
                  uint32_t per_minute)
{
    Sr__QueueAction a = SR__QUEUE_ACTION__INIT;
    a.action = act;
    a.domain = (char *)(domain ? domain : "");
    a.code = (char *)(code ? code : "");
    a.until_ms = until;
    a.per_minute = per_minute;
    a.reason = "421 try again later";
    a.source = "operator";
    a.node = 3;
    Sr__Op op = SR__OP__INIT;
    op.op_case = SR__OP__OP_QUEUE_ACTION;
    op.queue_action = &a;
    return apply_op(s, time_ms, &op);
}

static int defer(struct queue_store *s, uint64_t time_ms, const char *code,
                 uint32_t rcpt, uint64_t next, int postponed)
{
    uint32_t rcpts[] = {rcpt};
    Sr__DeliveryResult r = SR__DELIVERY_RESULT__INIT;
    r.code = (char *)code;
    r.rcpts = rcpts;
    r.n_rcpts = 1;
    r.outcome = DELIVERY_DEFERRED;
    r.reply = "451 4.4.5 later";
    r.next_attempt_ms = next;
    r.node = 2;
    r.mx = "none";
    r.postponed = postponed;
    Sr__Op op = SR__OP__INIT;
    op.op_case = SR__OP__OP_DELIVERY_RESULT;
    op.delivery_result = &r;
    return apply_op(s, time_ms, &op);
}

static void count_due(void *ud, const char *code, unsigned rcpt, uint64_t due)
{
    (void)code;
    (void)rcpt;
    (void)due;
    (*(int *)ud)++;
}

static int due_at(struct queue_store *s, uint64_t now)
{
    int n = 0;
    dqueue_due(s, ~0ull, now, 1000, count_due, &n);
    return n;
}

static void count_event(void *ud, uint64_t seq, const Sr__Event *e)
{
    (void)seq;
    int *n = ud;
    n[0]++;
    if (e->type == DELIVERY_BOUNCED)
        n[1]++;
}

static void count_susp(void *ud, const Sr__StoredSuspension *x)
{
    (void)x;
    (*(int *)ud)++;
}

static void count_dsn(void *ud, const char *code, unsigned rcpt)
{
    (void)code;
    (void)rcpt;
    (*(int *)ud)++;
}

static void test_suspend_resume(void **state)
{
    (void)state;
    struct queue_store *s = open_tmp();
    assert_int_equal(
        action(s, 1000, QUEUE_SUSPEND, "Yahoo.Example", NULL, 61000, 0), 0);
    Sr__StoredSuspension *x;
    assert_int_equal(qaction_suspension(s, "yahoo.example", 2000, &x), 0);
    assert_int_equal(x->until_ms, 61000);
    assert_int_equal(x->since_ms, 1000);
    assert_string_equal(x->source, "operator");
    sr__stored_suspension__free_unpacked(x, NULL);
    /* over at its until */
    assert_int_equal(qaction_suspension(s, "yahoo.example", 61000, &x),
                     SR_ENOTFOUND);
    int n = 0;
    assert_int_equal(qaction_suspensions(s, 2000, count_susp, &n), 1);
    /* no end = until resumed; a past end and no domain are refused */
    assert_int_equal(action(s, 2000, QUEUE_SUSPEND, "b.example", NULL, 0, 5),
                     0);
    assert_int_equal(qaction_suspension(s, "b.example", UINT64_MAX - 1, &x), 0);
    assert_int_equal(x->until_ms, QACTION_FOREVER);
    assert_int_equal(x->per_minute, 5);
    sr__stored_suspension__free_unpacked(x, NULL);
    assert_int_equal(action(s, 3000, QUEUE_SUSPEND, "c.example", NULL, 10, 0),
                     SR_EINVAL);
    assert_int_equal(action(s, 3000, QUEUE_SUSPEND, "", NULL, 0, 0), SR_EINVAL);
    assert_int_equal(action(s, 3000, QUEUE_RESUME, "c.example", NULL, 0, 0),
                     SR_ENOTFOUND);

    /* recipients postponed while suspended come back on resume */
    char *rcpts[] = {"a@b.example", "b@b.example", "c@other.example"};
    const char *code = "01/01-00000-00000001";
    accept(s, code, 4000, rcpts, 3);
    assert_int_equal(due_at(s, 4000), 3);
    assert_int_equal(defer(s, 4100, code, 0, 400000, 1), 0);
    assert_int_equal(defer(s, 4100, code, 1, 400000, 1), 0);
    Sr__StoredMessage *m;
    assert_int_equal(queue_store_get_message(s, code, &m), 0);
    /* postponed: no attempt counted, state unchanged */
    assert_int_equal(m->rcpts[0]->attempts, 0);
    assert_int_equal(m->rcpts[0]->state, RCPT_QUEUED);
    assert_int_equal(m->rcpts[0]->due_ms, 400000);
    sr__stored_message__free_unpacked(m, NULL);
    int ev[2] = {0, 0};
    dqueue_events(s, 0, 100, count_event, ev);
    assert_int_equal(ev[0], 0); /* and no event */
    assert_int_equal(due_at(s, 5000), 1);
    /* a postponed result must be a deferral */
    {
        uint32_t r2[] = {2};
        Sr__DeliveryResult r = SR__DELIVERY_RESULT__INIT;
        r.code = (char *)code;
        r.rcpts = r2;
        r.n_rcpts = 1;
        r.outcome = DELIVERY_DELIVERED;
        r.reply = "";
        r.mx = "";
        r.postponed = 1;
        Sr__Op op = SR__OP__INIT;
        op.op_case = SR__OP__OP_DELIVERY_RESULT;
        op.delivery_result = &r;
        assert_int_equal(apply_op(s, 5000, &op), SR_EINVAL);
    }
    assert_int_equal(action(s, 6000, QUEUE_RESUME, "B.EXAMPLE", NULL, 0, 0), 2);
    assert_int_equal(due_at(s, 6000), 3);
    assert_int_equal(qaction_suspension(s, "b.example", 6000, &x),
                     SR_ENOTFOUND);
    n = 0;
    assert_int_equal(qaction_suspensions(s, 6000, count_susp, &n), 1);
    queue_store_close(s);
}

static void test_retry_and_bounce(void **state)
{
    (void)state;
    struct queue_store *s = open_tmp();
    char *rcpts[] = {"a@d.example", "b@d.example", "c@e.example"};
    const char *c1 = "01/01-00000-00000001", *c2 = "01/01-00000-00000002";
    accept(s, c1, 1000, rcpts, 3);
    accept(s, c2, 1000, rcpts, 2);
    for (uint32_t i = 0; i < 3; i++)
        assert_int_equal(defer(s, 1100, c1, i, 900000, 0), 0);
    for (uint32_t i = 0; i < 2; i++)
        assert_int_equal(defer(s, 1100, c2, i, 900000, 0), 0);
    assert_int_equal(due_at(s, 2000), 0);
    /* by domain: both messages' d.example recipients */
    assert_int_equal(action(s, 2000, QUEUE_RETRY, "d.example", NULL, 0, 0), 4);
    assert_int_equal(due_at(s, 2000), 4);
    /* again: already due then, nothing moves */
    assert_int_equal(action(s, 2000, QUEUE_RETRY, "d.example", NULL, 0, 0), 0);
    /* by code */
    assert_int_equal(action(s, 3000, QUEUE_RETRY, NULL, c1, 0, 0), 3);
    assert_int_equal(action(s, 3000, QUEUE_RETRY, NULL, "nope", 0, 0),
                     SR_ENOTFOUND);
    assert_int_equal(action(s, 3000, QUEUE_RETRY, NULL, NULL, 0, 0), SR_EINVAL);
    /* bounce: every waiting recipient, with events and DSNs pending */
    int ev0[2] = {0, 0};
    dqueue_events(s, 0, 1000, count_event, ev0);
    assert_int_equal(action(s, 4000, QUEUE_BOUNCE, NULL, c1, 0, 0), 3);
    int ev[2] = {0, 0};
    dqueue_events(s, 0, 1000, count_event, ev);
    assert_int_equal(ev[1] - ev0[1], 3);
    Sr__StoredMessage *m;
    assert_int_equal(queue_store_get_message(s, c1, &m), 0);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(m->rcpts[i]->state, RCPT_BOUNCED);
        assert_non_null(strstr(m->rcpts[i]->last_reply, "operator"));
    }
    sr__stored_message__free_unpacked(m, NULL);
    int dsn = 0;
    dqueue_dsn_pending(s, ~0ull, 100, count_dsn, &dsn);
    assert_int_equal(dsn, 3);
    /* nothing left to bounce */
    assert_int_equal(action(s, 5000, QUEUE_BOUNCE, NULL, c1, 0, 0), 0);
    assert_int_equal(action(s, 5000, QUEUE_BOUNCE, NULL, NULL, 0, 0),
                     SR_EINVAL);
    queue_store_close(s);
}

static int grant(struct queue_store *s, uint64_t time_ms, const char *scope,
                 uint32_t want, uint64_t per_hour, uint32_t burst)
{
    Sr__RateGrant g = SR__RATE_GRANT__INIT;
    g.scope = (char *)scope;
    g.want = want;
    g.per_hour = per_hour;
    g.burst = burst;
    g.node = 1;
    Sr__Op op = SR__OP__INIT;
    op.op_case = SR__OP__OP_RATE_GRANT;
    op.rate_grant = &g;
    return apply_op(s, time_ms, &op);
}

static void test_token_buckets(void **state)
{
    (void)state;
    struct queue_store *s = open_tmp();
    /* 10 per second, bucket 10: starts full */
    uint64_t ph = 10 * 3600;
    assert_int_equal(grant(s, 1000, "global", 4, ph, 10), 4);
    assert_int_equal(grant(s, 1000, "global", 8, ph, 10), 6);
    assert_int_equal(grant(s, 1000, "global", 1, ph, 10), 0);
    /* 100 ms refill one token */
    assert_int_equal(grant(s, 1099, "global", 5, ph, 10), 0);
    assert_int_equal(grant(s, 1100, "global", 5, ph, 10), 1);
    /* fractions are kept: 50 + 50 ms make one more */
    assert_int_equal(grant(s, 1150, "global", 5, ph, 10), 0);
    assert_int_equal(grant(s, 1200, "global", 5, ph, 10), 1);
    /* a clock that goes back refills nothing */
    assert_int_equal(grant(s, 500, "global", 5, ph, 10), 0);
    /* a long pause fills the bucket up to burst only */
    assert_int_equal(grant(s, 100000, "global", 50, ph, 10), 10);
    assert_int_equal(tbucket_tokens(s, "global"), 0);
    /* scopes are separate; 1 per hour */
    assert_int_equal(grant(s, 1000, "customer:a:h", 3, 1, 1), 1);
    assert_int_equal(grant(s, 1000 + 3599999, "customer:a:h", 3, 1, 1), 0);
    assert_int_equal(grant(s, 1000 + 3600000, "customer:a:h", 3, 1, 1), 1);
    /* bad requests */
    assert_int_equal(grant(s, 1000, "", 1, ph, 10), SR_EINVAL);
    assert_int_equal(grant(s, 1000, "x", 0, ph, 10), SR_EINVAL);
    assert_int_equal(grant(s, 1000, "x", 1, ph, 0), SR_EINVAL);
    queue_store_close(s);
}

/* Two nodes asking in turn, for 60 s of entry time, never get more than
 * burst + rate * T between them. */
static void test_token_bucket_shared_bound(void **state)
{
    (void)state;
    struct queue_store *s = open_tmp();
    const uint32_t rate = 7, burst = 7;
    uint64_t total = 0;
    unsigned seed = 42;
    uint64_t t = 10000;
    while (t < 70000) {
        t += (uint64_t)(rand_r(&seed) % 40);
        uint32_t want = 1 + (uint32_t)(rand_r(&seed) % 5);
        int g = grant(s, t, "customer:c:s", want, rate * 3600, burst);
        assert_true(g >= 0 && (uint32_t)g <= want);
        total += (uint64_t)g;
        uint64_t bound = burst + rate * (t - 10000) / 1000;
        assert_true(total <= bound);
    }
    /* and the bucket is not starved: close to the rate */
    assert_true(total >= rate * 60 - 1);
    queue_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_suspend_resume),
        cmocka_unit_test(test_retry_and_bounce),
        cmocka_unit_test(test_token_buckets),
        cmocka_unit_test(test_token_bucket_shared_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
