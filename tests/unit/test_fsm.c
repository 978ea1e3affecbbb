/* test_fsm.c - the queue apply function, determinism, snapshot/restore
 * round trip (queue/store.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/errors.h"
#include "queue/policy.h"
#include "queue/store.h"

static struct queue_store *open_tmp(void)
{
    char dir[] = "/tmp/sr-test-fsm-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct queue_store *s;
    char err[256];
    assert_int_equal(queue_store_open(dir, &s, err, sizeof err), 0);
    return s;
}

/* One entry with one accept op. */
static void accept_one(struct queue_store *s, uint64_t index, const char *code,
                       uint64_t time_ms, uint64_t deadline, int want)
{
    char *rcpts[] = {"a@Example.ORG", "b@example.net"};
    uint64_t holders[] = {1, 2};
    Sr__MessageAccept a = SR__MESSAGE_ACCEPT__INIT;
    a.code = (char *)code;
    a.mail_from = "s@example.com";
    a.rcpts = rcpts;
    a.n_rcpts = 2;
    a.holders = holders;
    a.n_holders = 2;
    a.size = 100;
    a.deadline_ms = deadline;
    Sr__Op op = SR__OP__INIT;
    op.op_case = SR__OP__OP_ACCEPT;
    op.accept = &a;
    Sr__Op *ops[] = {&op};
    Sr__Entry e = SR__ENTRY__INIT;
    e.version = 1;
    e.time_ms = time_ms;
    e.ops = ops;
    e.n_ops = 1;
    int st = 12345;
    queue_store_apply(s, index, &e, &st);
    assert_int_equal(st, want);
}

static void test_apply_accept_and_lookups(void **state)
{
    (void)state;
    struct queue_store *s = open_tmp();
    accept_one(s, 1, "01/01-00000-00000001", 1000, 0, 0);
    accept_one(s, 2, "01/01-00000-00000001", 1000, 0, SR_EEXIST);
    accept_one(s, 3, "01/01-00000-00000002", 5000, 4000, SR_ETIMEDOUT);
    accept_one(s, 4, "01/01-00000-00000003", 3000, 4000, 0);
    assert_int_equal(queue_store_applied(s), 4);
    Sr__StoredMessage *m;
    assert_int_equal(queue_store_get_message(s, "01/01-00000-00000001", &m), 0);
    assert_int_equal(m->index, 1);
    assert_int_equal(m->n_rcpts, 2);
    assert_int_equal(m->rcpts[0]->state, RCPT_QUEUED);
    assert_string_equal(m->accept->mail_from, "s@example.com");
    sr__stored_message__free_unpacked(m, NULL);
    assert_int_equal(queue_store_get_message(s, "01/01-00000-00000002", &m),
                     SR_ENOTFOUND);
    uint64_t counts[RCPT_STATE_MAX], msgs;
    queue_store_counts(s, counts, &msgs);
    assert_int_equal(msgs, 2);
    assert_int_equal(counts[RCPT_QUEUED], 4);
    queue_store_close(s);
}

static void test_policy_and_nodes(void **state)
{
    (void)state;
    struct queue_store *s = open_tmp();
    Sr__PolicySet good = SR__POLICY_SET__INIT, bad = SR__POLICY_SET__INIT;
    good.json = (char *)policy_default_json();
    bad.json = "{\"customers\": 3}";
    Sr__NodeInfo ni = SR__NODE_INFO__INIT;
    ni.id = 2;
    ni.rpc_address = "127.0.0.1:7102";
    ni.admin_address = "127.0.0.1:8081";
    Sr__Op o1 = SR__OP__INIT, o2 = SR__OP__INIT, o3 = SR__OP__INIT;
    o1.op_case = SR__OP__OP_POLICY;
    o1.policy = &good;
    o2.op_case = SR__OP__OP_POLICY;
    o2.policy = &bad;
    o3.op_case = SR__OP__OP_NODE_INFO;
    o3.node_info = &ni;
    Sr__Op *ops[] = {&o1, &o2, &o3};
    Sr__Entry e = SR__ENTRY__INIT;
    e.version = 1;
    e.ops = ops;
    e.n_ops = 3;
    int st[3];
    queue_store_apply(s, 1, &e, st);
    assert_int_equal(st[0], 0);
    assert_int_equal(st[1], SR_EPARSE);
    assert_int_equal(st[2], 0);
    char *json;
    assert_int_equal(queue_store_get_policy(s, &json), 0);
    assert_string_equal(json, policy_default_json());
    free(json);
    Sr__NodeInfo *got;
    assert_int_equal(queue_store_get_node(s, 2, &got), 0);
    assert_string_equal(got->rpc_address, "127.0.0.1:7102");
    sr__node_info__free_unpacked(got, NULL);
    assert_int_equal(queue_store_get_node(s, 3, &got), SR_ENOTFOUND);
    queue_store_close(s);
}

static void test_same_log_same_digest_and_snapshot_roundtrip(void **state)
{
    (void)state;
    struct queue_store *a = open_tmp(), *b = open_tmp(), *c = open_tmp();
    char code[32];
    for (int i = 0; i < 200; i++) {
        snprintf(code, sizeof code, "01/01-%05d-00000001", i);
        accept_one(a, (uint64_t)i + 1, code, 1000, 0, 0);
        accept_one(b, (uint64_t)i + 1, code, 1000, 0, 0);
    }
    uint8_t da[32], db[32], dc[32];
    uint64_t ia, ib, ic;
    queue_store_digest(a, da, &ia);
    queue_store_digest(b, db, &ib);
    assert_memory_equal(da, db, 32);
    assert_int_equal(ia, 200);
    /* one more entry changes the digest */
    accept_one(b, 201, "01/01-99999-00000001", 1000, 0, 0);
    queue_store_digest(b, db, &ib);
    assert_memory_not_equal(da, db, 32);

    uint8_t *snap;
    size_t len;
    assert_int_equal(queue_store_snapshot(a, &snap, &len), 0);
    assert_int_equal(queue_store_restore(c, snap, len), 0);
    queue_store_digest(c, dc, &ic);
    assert_memory_equal(da, dc, 32);
    assert_int_equal(ic, 200);
    /* a damaged snapshot is refused and leaves the state alone */
    snap[len - 3] ^= 0xff;
    snap[6] = 0xff;
    assert_int_equal(queue_store_restore(c, snap, len - 1), SR_EPARSE);
    queue_store_digest(c, dc, &ic);
    assert_memory_equal(da, dc, 32);
    free(snap);
    queue_store_close(a);
    queue_store_close(b);
    queue_store_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_accept_and_lookups),
        cmocka_unit_test(test_policy_and_nodes),
        cmocka_unit_test(test_same_log_same_digest_and_snapshot_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
