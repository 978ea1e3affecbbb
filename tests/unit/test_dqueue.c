/* test_dqueue.c - delivery state: leases, shard moves only from expired
 * leases, the due index, results (idempotent), events (queue/dqueue.h). */
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
#include "queue/shard.h"
#include "queue/store.h"

static uint64_t next_index;

static struct queue_store *open_tmp(void)
{
    char dir[] = "/tmp/sr-test-dq-XXXXXX";
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

static int lease(struct queue_store *s, uint64_t time_ms, uint64_t node,
                 uint64_t ms)
{
    Sr__LeaseRenew l = SR__LEASE_RENEW__INIT;
    l.node = node;
    l.lease_ms = ms;
    Sr__Op op = SR__OP__INIT;
    op.op_case = SR__OP__OP_LEASE_RENEW;
    op.lease_renew = &l;
    return apply_op(s, time_ms, &op);
}

static int assign_all(struct queue_store *s, uint64_t time_ms, uint64_t node)
{
    uint64_t owners[SHARD_COUNT];
    for (int i = 0; i < SHARD_COUNT; i++)
        owners[i] = node;
    Sr__ShardAssign a = SR__SHARD_ASSIGN__INIT;
    a.owners = owners;
    a.n_owners = SHARD_COUNT;
    Sr__Op op = SR__OP__INIT;
    op.op_case = SR__OP__OP_SHARD_ASSIGN;
    op.shard_assign = &a;
    return apply_op(s, time_ms, &op);
}

static uint32_t result_sends; /* the next result's sends field */

static int result(struct queue_store *s, uint64_t time_ms, const char *code,
                  uint32_t rcpt, unsigned outcome, uint64_t next)
{
    uint32_t rcpts[] = {rcpt};
    Sr__DeliveryResult r = SR__DELIVERY_RESULT__INIT;
    r.code = (char *)code;
    r.rcpts = rcpts;
    r.n_rcpts = 1;
    r.outcome = outcome;
    r.reply = "250 2.0.0 ok";
    r.next_attempt_ms = next;
    r.node = 2;
    r.mx = "mx.example.org[127.0.0.1]:25";
    r.sends = result_sends;
    Sr__Op op = SR__OP__INIT;
    op.op_case = SR__OP__OP_DELIVERY_RESULT;
    op.delivery_result = &r;
    return apply_op(s, time_ms, &op);
}

struct seen {
    char codes[16][64];
    unsigned rcpts[16];
    size_t n;
};

static void on_due(void *ud, const char *code, unsigned rcpt, uint64_t due)
{
    (void)due;
    struct seen *sn = ud;
    assert_true(sn->n < 16);
    snprintf(sn->codes[sn->n], sizeof sn->codes[0], "%s", code);
    sn->rcpts[sn->n++] = rcpt;
}

static void test_shard_functions(void **state)
{
    (void)state;
    assert_int_equal(shard_of_rcpt("a@Example.ORG"),
                     shard_of_domain("example.org", 11));
    assert_true(shard_of_rcpt("x@example.net") < SHARD_COUNT);
    uint64_t three[] = {1, 2, 3}, two[] = {1, 3};
    int moved = 0, used[4] = {0};
    for (unsigned sh = 0; sh < SHARD_COUNT; sh++) {
        uint64_t a = shard_pick_owner(sh, three, 3);
        uint64_t b = shard_pick_owner(sh, two, 2);
        used[a]++;
        /* removing node 2 moves only node 2's shards */
        if (a != 2)
            assert_int_equal(a, b);
        else
            moved++;
    }
    assert_true(used[1] > 0 && used[2] > 0 && used[3] > 0);
    assert_int_equal(moved, used[2]);
    assert_int_equal(shard_pick_owner(5, NULL, 0), 0);
}

static void test_shards_move_only_from_expired_leases(void **state)
{
    (void)state;
    struct queue_store *s = open_tmp();
    uint64_t owners[SHARD_COUNT], epoch;
    dqueue_shards(s, owners, &epoch);
    assert_int_equal(owners[0], 0);
    assert_int_equal(epoch, 0);
    assert_int_equal(lease(s, 1000, 1, 5000), 0);
    assert_int_equal(lease(s, 1000, 2, 5000), 0);
    assert_int_equal(lease(s, 1000, 0, 5000), SR_EINVAL);
    assert_int_equal(assign_all(s, 1000, 1), 0);
    dqueue_shards(s, owners, &epoch);
    assert_int_equal(owners[7], 1);
    assert_int_equal(epoch, 1);
    /* node 1's lease runs to 6000: a move to node 2 before that is refused */
    assert_int_equal(assign_all(s, 5999, 2), 0);
    dqueue_shards(s, owners, &epoch);
    assert_int_equal(owners[7], 1);
    assert_int_equal(epoch, 1);
    /* a renewal never shortens a lease */
    assert_int_equal(lease(s, 2000, 1, 100), 0);
    assert_int_equal(assign_all(s, 5999, 2), 0);
    dqueue_shards(s, owners, &epoch);
    assert_int_equal(owners[7], 1);
    /* expired: the shard moves */
    assert_int_equal(assign_all(s, 6000, 2), 0);
    dqueue_shards(s, owners, &epoch);
    assert_int_equal(owners[7], 2);
    assert_int_equal(epoch, 2);
    uint64_t nodes[4], exp[4];
    assert_int_equal(dqueue_leases(s, nodes, exp, 4), 2);
    assert_int_equal(nodes[0], 1);
    assert_int_equal(exp[0], 6000);
    assert_int_equal(nodes[1], 2);
    queue_store_close(s);
}

static void test_due_results_events(void **state)
{
    (void)state;
    struct queue_store *s = open_tmp();
    char *rcpts[] = {"a@example.org", "b@example.org", "c@example.net"};
    accept(s, "01/01-00000-00000001", 1000, rcpts, 3);
    uint64_t all = ~0ull;
    struct seen sn = {0};
    /* nothing is due before the accept time */
    assert_int_equal(dqueue_due(s, all, 999, 100, on_due, &sn), 0);
    assert_int_equal(dqueue_due(s, all, 1000, 100, on_due, &sn), 3);
    /* only the shard of example.org */
    uint64_t org = 1ull << shard_of_domain("example.org", 11);
    memset(&sn, 0, sizeof sn);
    assert_int_equal(dqueue_due(s, org, 5000, 100, on_due, &sn),
                     shard_of_domain("example.org", 11) ==
                             shard_of_domain("example.net", 11)
                         ? 3
                         : 2);
    assert_string_equal(sn.codes[0], "01/01-00000-00000001");
    /* deliver a, defer b to 9000, bounce c */
    const char *code = "01/01-00000-00000001";
    assert_int_equal(result(s, 2000, code, 0, DELIVERY_DELIVERED, 0), 0);
    assert_int_equal(result(s, 2000, code, 1, DELIVERY_DEFERRED, 9000), 0);
    assert_int_equal(result(s, 2000, code, 2, DELIVERY_BOUNCED, 0), 0);
    /* duplicates and bad input */
    assert_int_equal(result(s, 2100, code, 0, DELIVERY_DELIVERED, 0),
                     SR_EEXIST);
    assert_int_equal(result(s, 2100, code, 7, DELIVERY_DELIVERED, 0),
                     SR_EINVAL);
    assert_int_equal(result(s, 2100, code, 0, 99, 0), SR_EINVAL);
    assert_int_equal(result(s, 2100, "nope", 0, DELIVERY_DELIVERED, 0),
                     SR_ENOTFOUND);
    memset(&sn, 0, sizeof sn);
    assert_int_equal(dqueue_due(s, all, 8999, 100, on_due, &sn), 0);
    assert_int_equal(dqueue_due(s, all, 9000, 100, on_due, &sn), 1);
    assert_int_equal(sn.rcpts[0], 1);
    Sr__StoredMessage *m;
    assert_int_equal(queue_store_get_message(s, code, &m), 0);
    assert_int_equal(m->rcpts[0]->state, RCPT_DELIVERED);
    assert_int_equal(m->rcpts[0]->done_at_ms, 2000);
    assert_int_equal(m->rcpts[1]->state, RCPT_DEFERRED);
    assert_int_equal(m->rcpts[1]->attempts, 1);
    assert_int_equal(m->rcpts[1]->due_ms, 9000);
    assert_int_equal(m->rcpts[2]->state, RCPT_BOUNCED);
    assert_string_equal(m->rcpts[2]->last_reply, "250 2.0.0 ok");
    sr__stored_message__free_unpacked(m, NULL);
    uint64_t counts[RCPT_STATE_MAX], msgs;
    queue_store_counts(s, counts, &msgs);
    assert_int_equal(counts[RCPT_QUEUED], 0);
    assert_int_equal(counts[RCPT_DELIVERED], 1);
    assert_int_equal(counts[RCPT_DEFERRED], 1);
    assert_int_equal(counts[RCPT_BOUNCED], 1);
    /* deferred then delivered */
    assert_int_equal(result(s, 9100, code, 1, DELIVERY_DELIVERED, 0), 0);
    memset(&sn, 0, sizeof sn);
    assert_int_equal(dqueue_due(s, all, 100000, 100, on_due, &sn), 0);
    queue_store_close(s);
}

static unsigned n_events;
static void on_event(void *ud, uint64_t seq, const Sr__Event *e)
{
    (void)ud;
    n_events++;
    assert_int_equal(seq, n_events);
    assert_string_equal(e->customer, "default");
    if (seq == 1) {
        assert_int_equal(e->type, DELIVERY_DELIVERED);
        assert_string_equal(e->address, "a@example.org");
    }
}

static void test_events_and_digest(void **state)
{
    (void)state;
    struct queue_store *a = open_tmp();
    char *rcpts[] = {"a@example.org", "b@example.org"};
    accept(a, "C1", 1000, rcpts, 2);
    assert_int_equal(result(a, 2000, "C1", 0, DELIVERY_DELIVERED, 0), 0);
    assert_int_equal(result(a, 2000, "C1", 1, DELIVERY_DEFERRED, 3000), 0);
    n_events = 0;
    assert_int_equal(dqueue_events(a, 0, 100, on_event, NULL), 2);
    assert_int_equal(n_events, 2);
    n_events = 1;
    assert_int_equal(dqueue_events(a, 1, 100, on_event, NULL), 2);
    /* the same log on another store gives the same digest, and a snapshot
     * carries the delivery state */
    struct queue_store *b = open_tmp();
    accept(b, "C1", 1000, rcpts, 2);
    assert_int_equal(result(b, 2000, "C1", 0, DELIVERY_DELIVERED, 0), 0);
    assert_int_equal(result(b, 2000, "C1", 1, DELIVERY_DEFERRED, 3000), 0);
    uint8_t da[32], db[32];
    uint64_t ia, ib;
    queue_store_digest(a, da, &ia);
    queue_store_digest(b, db, &ib);
    assert_memory_equal(da, db, 32);
    uint8_t *snap;
    size_t len;
    assert_int_equal(queue_store_snapshot(a, &snap, &len), 0);
    struct queue_store *c = open_tmp();
    assert_int_equal(queue_store_restore(c, snap, len), 0);
    free(snap);
    struct seen sn = {0};
    assert_int_equal(dqueue_due(c, ~0ull, 3000, 100, on_due, &sn), 1);
    queue_store_close(a);
    queue_store_close(b);
    queue_store_close(c);
}

static void test_throttle_counts(void **state)
{
    (void)state;
    struct queue_store *s = open_tmp();
    char *rcpts[] = {"a@Example.org", "b@example.org"};
    accept(s, "T1", 1000, rcpts, 2);
    accept(s, "T2", 1000, rcpts, 2);
    result_sends = 1;
    /* two transactions at 100 s, one at 135 s, one an hour later */
    assert_int_equal(result(s, 100000, "T1", 0, DELIVERY_DEFERRED, 0), 0);
    assert_int_equal(result(s, 100500, "T2", 0, DELIVERY_DEFERRED, 0), 0);
    assert_int_equal(result(s, 135000, "T1", 1, DELIVERY_DEFERRED, 0), 0);
    result_sends = 0;
    assert_int_equal(result(s, 135000, "T2", 1, DELIVERY_DEFERRED, 0), 0);
    assert_int_equal(dqueue_sends(s, "example.org", 0), 3);
    assert_int_equal(dqueue_sends(s, "example.org", 101000), 3); /* bucket */
    assert_int_equal(dqueue_sends(s, "example.org", 110000), 1);
    assert_int_equal(dqueue_sends(s, "example.org", 140000), 0);
    assert_int_equal(dqueue_sends(s, "other.org", 0), 0);
    result_sends = 1;
    assert_int_equal(result(s, 4000000, "T1", 0, DELIVERY_DELIVERED, 0), 0);
    result_sends = 0;
    /* the old buckets were pruned: only the new one counts */
    assert_int_equal(dqueue_sends(s, "example.org", 0), 1);
    queue_store_close(s);
}

/* SMS ops whose SMSC name or message id would not fit the state's keys
 * are bad ops (SR_EINVAL) and change nothing; fitting ones apply. */
static void test_sms_ids_bounded(void **state)
{
    (void)state;
    struct queue_store *s = open_tmp();
    char *rcpts[] = {"+393330000001@sms.example.net"};
    const char *code = "01/01-00000-00000002";
    accept(s, code, 1000, rcpts, 1);
    char long_name[200], long_id[200];
    memset(long_name, 's', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    memset(long_id, '7', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';

    uint32_t r0[] = {0};
    char *ids[] = {long_id};
    Sr__DeliveryResult r = SR__DELIVERY_RESULT__INIT;
    r.code = (char *)code;
    r.rcpts = r0;
    r.n_rcpts = 1;
    r.outcome = DELIVERY_SUBMITTED;
    r.reply = "250 submitted";
    r.node = 2;
    r.smsc = "smsc-a";
    r.sms_ids = ids;
    r.n_sms_ids = 1;
    Sr__Op op = SR__OP__INIT;
    op.op_case = SR__OP__OP_DELIVERY_RESULT;
    op.delivery_result = &r;
    assert_int_equal(apply_op(s, 2000, &op), SR_EINVAL);
    ids[0] = "1000";
    r.smsc = long_name;
    assert_int_equal(apply_op(s, 2000, &op), SR_EINVAL);
    r.smsc = "smsc-a";
    assert_int_equal(apply_op(s, 2000, &op), 0);

    Sr__SmsReceipt rc = SR__SMS_RECEIPT__INIT;
    rc.smsc = long_name;
    rc.id = "1000";
    rc.state = 2;
    rc.err = "000";
    rc.node = 1;
    Sr__Op op2 = SR__OP__INIT;
    op2.op_case = SR__OP__OP_SMS_RECEIPT;
    op2.sms_receipt = &rc;
    assert_int_equal(apply_op(s, 3000, &op2), SR_EINVAL);
    rc.smsc = "smsc-a";
    rc.id = long_id;
    assert_int_equal(apply_op(s, 3000, &op2), SR_EINVAL);
    rc.id = "1000";
    assert_int_equal(apply_op(s, 3000, &op2), 0);
    queue_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shard_functions),
        cmocka_unit_test(test_shards_move_only_from_expired_leases),
        cmocka_unit_test(test_due_results_events),
        cmocka_unit_test(test_events_and_digest),
        cmocka_unit_test(test_throttle_counts),
        cmocka_unit_test(test_sms_ids_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
