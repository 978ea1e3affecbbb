/* dqueue.c - delivery leases, shards, due index, results (see dqueue.h). */
#include "queue/dqueue.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/errors.h"
#include "queue/store.h"
#include "queue/smsq.h"
#include "queue/store_int.h"

const char *delivery_outcome_name(unsigned outcome)
{
    switch (outcome) {
    case DELIVERY_DELIVERED:
        return "delivered";
    case DELIVERY_DEFERRED:
        return "deferred";
    case DELIVERY_BOUNCED:
        return "bounced";
    case DELIVERY_EXPIRED:
        return "expired";
    case DELIVERY_SUPPRESSED:
        return "suppressed";
    case EVENT_OPEN:
        return "open";
    case EVENT_CLICK:
        return "click";
    case EVENT_UNSUBSCRIBE:
        return "unsubscribe";
    case DELIVERY_SUBMITTED:
        return "submitted";
    case EVENT_SMS_RECEIPT:
        return "receipt";
    default:
        return "unknown";
    }
}

static void be64(uint8_t *b, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        b[i] = (uint8_t)v;
}

static uint64_t get_be64(const uint8_t *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    return v;
}

/* Due key: shard, due (BE), code, NUL, rcpt number (decimal). */
static size_t due_key(uint8_t *k, size_t cap, unsigned shard, uint64_t due,
                      const char *code, unsigned rcpt)
{
    size_t n = 0;
    k[n++] = (uint8_t)shard;
    be64(k + n, due);
    n += 8;
    n += (size_t)snprintf((char *)k + n, cap - n, "%s", code) + 1;
    n += (size_t)snprintf((char *)k + n, cap - n, "%u", rcpt);
    return n;
}

/* State index key, as store.c writes it. */
static size_t state_key(char *k, size_t cap, unsigned state, const char *code,
                        unsigned rcpt)
{
    size_t n = 0;
    k[n++] = (char)state;
    n += (size_t)snprintf(k + n, cap - n, "%s", code) + 1;
    n += (size_t)snprintf(k + n, cap - n, "%u", rcpt);
    return n;
}

static void del(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t klen)
{
    MDB_val key = {klen, (void *)k};
    int rc = mdb_del(txn, dbi, &key, NULL);
    if (rc != 0 && rc != MDB_NOTFOUND)
        store_die("del", rc);
}

static void put_msg(struct queue_store *s, MDB_txn *txn, const char *code,
                    const Sr__StoredMessage *m)
{
    size_t len = sr__stored_message__get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL)
        store_die("apply", ENOMEM);
    sr__stored_message__pack(m, buf);
    store_put(txn, s->dbi[DB_MSGS], code, strlen(code), buf, len);
    free(buf);
}

static void pending_add(struct queue_store *s, MDB_txn *txn,
                        const char *customer, int64_t delta)
{
    char k[128];
    snprintf(k, sizeof k, "pending:%s", customer);
    store_count_add(s, txn, k, delta);
}

void dqueue_index_new(struct queue_store *s, MDB_txn *txn, const char *code,
                      Sr__StoredMessage *m, uint64_t time_ms)
{
    pending_add(s, txn, m->accept->customer, (int64_t)m->n_rcpts);
    uint8_t k[600];
    for (size_t i = 0; i < m->n_rcpts; i++) {
        m->rcpts[i]->due_ms = time_ms;
        size_t n = due_key(k, sizeof k, shard_of_rcpt(m->rcpts[i]->address),
                           time_ms, code, (unsigned)i);
        store_put(txn, s->dbi[DB_DUE], k, n, "", 0);
    }
}

void dqueue_reschedule(struct queue_store *s, MDB_txn *txn, const char *code,
                       Sr__StoredMessage *m, unsigned i, uint64_t due_ms)
{
    Sr__StoredRcpt *rc = m->rcpts[i];
    unsigned shard = shard_of_rcpt(rc->address);
    uint8_t k[600];
    del(txn, s->dbi[DB_DUE], k,
        due_key(k, sizeof k, shard, rc->due_ms, code, i));
    rc->due_ms = due_ms;
    store_put(txn, s->dbi[DB_DUE], k,
              due_key(k, sizeof k, shard, due_ms, code, i), "", 0);
}

void dqueue_put_message(struct queue_store *s, MDB_txn *txn, const char *code,
                        const Sr__StoredMessage *m)
{
    put_msg(s, txn, code, m);
}

/* ---- leases ---- */

static size_t lease_key(char *k, size_t cap, uint64_t node)
{
    return (size_t)snprintf(k, cap, "lease:%020llu", (unsigned long long)node);
}

static uint64_t lease_expiry(struct queue_store *s, MDB_txn *txn, uint64_t node)
{
    char k[40];
    MDB_val key = {lease_key(k, sizeof k, node), k}, v;
    uint64_t e = 0;
    if (mdb_get(txn, s->dbi[DB_META], &key, &v) == 0 && v.mv_size == 8)
        e = get_be64(v.mv_data);
    return e;
}

int dqueue_apply_lease(struct queue_store *s, MDB_txn *txn, uint64_t time_ms,
                       const Sr__LeaseRenew *l)
{
    if (l->node == 0 || l->lease_ms == 0 || l->lease_ms > 600000)
        return SR_EINVAL;
    char k[40];
    uint8_t v[8];
    /* never shorten a lease already granted */
    uint64_t e = time_ms + l->lease_ms;
    uint64_t old = lease_expiry(s, txn, l->node);
    be64(v, e > old ? e : old);
    store_put(txn, s->dbi[DB_META], k, lease_key(k, sizeof k, l->node), v, 8);
    return 0;
}

/* ---- shards ---- */

static Sr__StoredShards *load_shards(struct queue_store *s, MDB_txn *txn)
{
    MDB_val key = {6, "shards"}, v;
    if (mdb_get(txn, s->dbi[DB_META], &key, &v) != 0)
        return NULL;
    Sr__StoredShards *t = sr__stored_shards__unpack(NULL, v.mv_size, v.mv_data);
    if (t == NULL || t->n_owners != SHARD_COUNT)
        store_die("stored shard table undecodable", MDB_CORRUPTED);
    return t;
}

static void store_shards(struct queue_store *s, MDB_txn *txn,
                         const Sr__StoredShards *old, uint64_t *owners);

int dqueue_apply_release(struct queue_store *s, MDB_txn *txn,
                         const Sr__ShardRelease *r)
{
    Sr__StoredShards *old = load_shards(s, txn);
    if (old == NULL || r->node == 0) {
        if (old)
            sr__stored_shards__free_unpacked(old, NULL);
        return SR_EINVAL;
    }
    uint64_t owners[SHARD_COUNT];
    memcpy(owners, old->owners, sizeof owners);
    int n = 0;
    for (size_t i = 0; i < r->n_shards; i++) {
        uint32_t sh = r->shards[i];
        if (sh < SHARD_COUNT && owners[sh] == r->node) {
            owners[sh] = 0;
            n++;
        }
    }
    if (n > 0)
        store_shards(s, txn, old, owners);
    sr__stored_shards__free_unpacked(old, NULL);
    return n;
}

int dqueue_apply_shards(struct queue_store *s, MDB_txn *txn, uint64_t time_ms,
                        const Sr__ShardAssign *a)
{
    if (a->n_owners != SHARD_COUNT)
        return SR_EINVAL;
    Sr__StoredShards *old = load_shards(s, txn);
    uint64_t owners[SHARD_COUNT];
    bool changed = false;
    for (unsigned i = 0; i < SHARD_COUNT; i++) {
        uint64_t cur = old ? old->owners[i] : 0;
        owners[i] = cur;
        if (a->owners[i] == cur)
            continue;
        /* Move a shard only away from nobody or from an expired lease. */
        if (cur == 0 || lease_expiry(s, txn, cur) <= time_ms) {
            owners[i] = a->owners[i];
            changed = true;
        }
    }
    if (changed || old == NULL)
        store_shards(s, txn, old, owners);
    if (old)
        sr__stored_shards__free_unpacked(old, NULL);
    return 0;
}

/* Writes the shard table with owners and the next epoch. */
static void store_shards(struct queue_store *s, MDB_txn *txn,
                         const Sr__StoredShards *old, uint64_t *owners)
{
    Sr__StoredShards t = SR__STORED_SHARDS__INIT;
    t.n_owners = SHARD_COUNT;
    t.owners = owners;
    t.epoch = (old ? old->epoch : 0) + 1;
    uint8_t buf[SHARD_COUNT * 11 + 16];
    size_t len = sr__stored_shards__get_packed_size(&t);
    if (len > sizeof buf)
        store_die("shard table too large", MDB_BAD_VALSIZE);
    sr__stored_shards__pack(&t, buf);
    store_put(txn, s->dbi[DB_META], "shards", 6, buf, len);
}

/* ---- DSN marks: meta "dsnq:" code NUL rcpt -> shard (1 byte) ---- */

static size_t dsn_key(char *k, size_t cap, const char *code, unsigned rcpt)
{
    size_t n = (size_t)snprintf(k, cap, "dsnq:%s", code) + 1;
    n += (size_t)snprintf(k + n, cap - n, "%u", rcpt);
    return n;
}

int dqueue_take_dsn(struct queue_store *s, MDB_txn *txn, const char *code,
                    unsigned rcpt)
{
    char k[600];
    MDB_val key = {dsn_key(k, sizeof k, code, rcpt), k}, v;
    if (mdb_get(txn, s->dbi[DB_META], &key, &v) != 0)
        return SR_EEXIST;
    del(txn, s->dbi[DB_META], k, key.mv_size);
    return 0;
}

/* ---- results ---- */

static void add_event(struct queue_store *s, MDB_txn *txn, const Sr__Event *e);

static const char *count_name(unsigned state);

void dqueue_event(struct queue_store *s, MDB_txn *txn, const Sr__Event *e)
{
    add_event(s, txn, e);
}

void dqueue_set_state(struct queue_store *s, MDB_txn *txn, const char *code,
                      Sr__StoredMessage *m, unsigned i, unsigned to)
{
    Sr__StoredRcpt *rc = m->rcpts[i];
    char sk[600];
    del(txn, s->dbi[DB_IDX_STATE], sk,
        state_key(sk, sizeof sk, rc->state, code, i));
    store_count_add(s, txn, count_name(rc->state), -1);
    rc->state = to;
    store_put(txn, s->dbi[DB_IDX_STATE], sk,
              state_key(sk, sizeof sk, to, code, i), "", 0);
    store_count_add(s, txn, count_name(to), 1);
}

static void add_event(struct queue_store *s, MDB_txn *txn, const Sr__Event *e)
{
    MDB_val key = {10, "seq:events"}, v;
    uint64_t seq = 0;
    if (mdb_get(txn, s->dbi[DB_META], &key, &v) == 0 && v.mv_size == 8)
        seq = get_be64(v.mv_data);
    seq++;
    uint8_t k[8];
    be64(k, seq);
    store_put(txn, s->dbi[DB_META], "seq:events", 10, k, 8);
    size_t len = sr__event__get_packed_size(e);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL)
        store_die("apply", ENOMEM);
    sr__event__pack(e, buf);
    store_put(txn, s->dbi[DB_EVENTS], k, 8, buf, len);
    free(buf);
}

static const char *count_name(unsigned state)
{
    static char names[RCPT_STATE_MAX][32];
    if (names[state][0] == '\0')
        snprintf(names[state], sizeof names[state], "count:%s",
                 queue_rcpt_state_name(state));
    return names[state];
}

/* Throttle buckets: meta "thr:" domain NUL node(8 BE) bucket(8 BE) ->
 * transactions, one bucket per 10 s of entry time; buckets older than
 * THR_KEEP are deleted as new ones come. */
#define THR_BUCKET_MS 10000
#define THR_KEEP 370 /* buckets: an hour and a bit */
static size_t thr_key(uint8_t *k, size_t cap, const char *domain, uint64_t node,
                      uint64_t minute)
{
    size_t n = (size_t)snprintf((char *)k, cap - 17, "thr:%s", domain) + 1;
    be64(k + n, node);
    be64(k + n + 8, minute);
    return n + 16;
}

static void count_sends(struct queue_store *s, MDB_txn *txn,
                        const char *address, uint64_t node, uint64_t time_ms,
                        uint32_t sends)
{
    const char *at = strrchr(address, '@');
    char dom[256];
    snprintf(dom, sizeof dom, "%s", at ? at + 1 : address);
    for (char *c = dom; *c; c++)
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c + 32);
    uint64_t bucket = time_ms / THR_BUCKET_MS;
    uint8_t k[300];
    size_t kl = thr_key(k, sizeof k, dom, node, bucket);
    MDB_val key = {kl, k}, v;
    uint64_t n = 0;
    if (mdb_get(txn, s->dbi[DB_META], &key, &v) == 0 && v.mv_size == 8)
        n = get_be64(v.mv_data);
    uint8_t nv[8];
    be64(nv, n + sends);
    store_put(txn, s->dbi[DB_META], k, kl, nv, 8);
    /* prune this domain's and node's old buckets */
    MDB_cursor *cur;
    if (bucket > THR_KEEP && mdb_cursor_open(txn, s->dbi[DB_META], &cur) == 0) {
        uint8_t start[300];
        size_t sl = thr_key(start, sizeof start, dom, node, 0);
        MDB_val ck = {sl, start}, cv;
        int rc = mdb_cursor_get(cur, &ck, &cv, MDB_SET_RANGE);
        while (rc == 0 && ck.mv_size == sl &&
               memcmp(ck.mv_data, start, sl - 8) == 0 &&
               get_be64((const uint8_t *)ck.mv_data + sl - 8) <
                   bucket - THR_KEEP) {
            if (mdb_cursor_del(cur, 0) != 0)
                break;
            rc = mdb_cursor_get(cur, &ck, &cv, MDB_GET_CURRENT);
        }
        mdb_cursor_close(cur);
    }
}

int dqueue_apply_result(struct queue_store *s, MDB_txn *txn, uint64_t time_ms,
                        const Sr__DeliveryResult *r)
{
    unsigned target;
    switch (r->outcome) {
    case DELIVERY_DELIVERED:
        target = RCPT_DELIVERED;
        break;
    case DELIVERY_DEFERRED:
        target = RCPT_DEFERRED;
        break;
    case DELIVERY_BOUNCED:
        target = RCPT_BOUNCED;
        break;
    case DELIVERY_EXPIRED:
        target = RCPT_EXPIRED;
        break;
    case DELIVERY_SUPPRESSED:
        target = RCPT_SUPPRESSED;
        break;
    case DELIVERY_SUBMITTED:
        target = RCPT_SUBMITTED;
        if (r->n_rcpts != 1 || r->n_sms_ids == 0 || r->n_sms_ids > 255 ||
            !smsq_ids_ok(r))
            return SR_EINVAL;
        break;
    default:
        return SR_EINVAL;
    }
    if (r->code[0] == '\0')
        return SR_EINVAL;
    Sr__StoredMessage *m = store_load_msg(s, txn, r->code);
    if (m == NULL)
        return SR_ENOTFOUND;
    for (size_t j = 0; j < r->n_rcpts; j++) {
        if (r->rcpts[j] >= m->n_rcpts) {
            sr__stored_message__free_unpacked(m, NULL);
            return SR_EINVAL;
        }
    }
    if (r->sends > 0 && r->n_rcpts > 0)
        count_sends(s, txn, m->rcpts[r->rcpts[0]]->address, r->node, time_ms,
                    r->sends);
    if (r->postponed && target != RCPT_DEFERRED) {
        sr__stored_message__free_unpacked(m, NULL);
        return SR_EINVAL;
    }
    int changed = 0;
    uint8_t k[600];
    char sk[600];
    for (size_t j = 0; j < r->n_rcpts; j++) {
        unsigned i = r->rcpts[j];
        Sr__StoredRcpt *rc = m->rcpts[i];
        if (rc->state != RCPT_QUEUED && rc->state != RCPT_DEFERRED)
            continue; /* no longer pending: a duplicate result */
        if (r->postponed) {
            /* not an attempt: the due time moves, the reason is kept */
            dqueue_reschedule(s, txn, r->code, m, i,
                              r->next_attempt_ms > time_ms ? r->next_attempt_ms
                                                           : time_ms);
            if (rc->last_reply != protobuf_c_empty_string)
                free(rc->last_reply);
            rc->last_reply = strdup(r->reply);
            if (rc->last_reply == NULL)
                store_die("apply", ENOMEM);
            changed++;
            continue;
        }
        unsigned shard = shard_of_rcpt(rc->address);
        del(txn, s->dbi[DB_DUE], k,
            due_key(k, sizeof k, shard, rc->due_ms, r->code, i));
        del(txn, s->dbi[DB_IDX_STATE], sk,
            state_key(sk, sizeof sk, rc->state, r->code, i));
        store_count_add(s, txn, count_name(rc->state), -1);
        if (target != RCPT_DEFERRED)
            pending_add(s, txn, m->accept->customer, -1);
        rc->state = target;
        rc->attempts++;
        /* protobuf-c points absent strings at a shared constant */
        if (rc->last_reply != protobuf_c_empty_string)
            free(rc->last_reply);
        rc->last_reply = strdup(r->reply);
        if (rc->last_reply == NULL)
            store_die("apply", ENOMEM);
        if (target == RCPT_DEFERRED) {
            uint64_t due =
                r->next_attempt_ms > time_ms ? r->next_attempt_ms : time_ms;
            rc->due_ms = due;
            store_put(txn, s->dbi[DB_DUE], k,
                      due_key(k, sizeof k, shard, due, r->code, i), "", 0);
        } else {
            rc->due_ms = 0;
            rc->done_at_ms = time_ms;
        }
        store_put(txn, s->dbi[DB_IDX_STATE], sk,
                  state_key(sk, sizeof sk, target, r->code, i), "", 0);
        store_count_add(s, txn, count_name(target), 1);
        Sr__Event e = SR__EVENT__INIT;
        e.code = r->code;
        e.rcpt = i;
        e.address = rc->address;
        e.type = r->outcome;
        e.reply = r->reply;
        e.time_ms = time_ms;
        e.node = r->node;
        e.mx = r->mx;
        e.customer = m->accept->customer;
        e.bounce_class = r->bounce_class;
        add_event(s, txn, &e);
        /* A DSN goes back to the sender; never for a null sender, never
         * for a DSN itself (RFC 3461 / RFC 5321 6.1). */
        if ((target == RCPT_BOUNCED || target == RCPT_EXPIRED) && !r->no_dsn &&
            m->accept->mail_from[0] != '\0' &&
            m->accept->dsn_for_code[0] == '\0') {
            char dk[600];
            uint8_t sh = (uint8_t)shard;
            store_put(txn, s->dbi[DB_META], dk,
                      dsn_key(dk, sizeof dk, r->code, i), &sh, 1);
        }
        if (target == RCPT_SUBMITTED)
            smsq_submitted(s, txn, time_ms, r, m, i);
        changed++;
    }
    if (changed)
        put_msg(s, txn, r->code, m);
    sr__stored_message__free_unpacked(m, NULL);
    return changed ? 0 : SR_EEXIST;
}

/* ---- reads ---- */

size_t dqueue_pending_scan(struct queue_store *s, size_t limit,
                           void (*fn)(void *ud, const Sr__StoredMessage *m,
                                      unsigned rcpt),
                           void *ud)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    size_t n = 0;
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0)
        return 0;
    if (mdb_cursor_open(txn, s->dbi[DB_IDX_STATE], &cur) != 0) {
        mdb_txn_abort(txn);
        return 0;
    }
    const unsigned states[] = {RCPT_QUEUED, RCPT_DEFERRED};
    for (size_t si = 0; si < 2 && n < limit; si++) {
        char st = (char)states[si];
        MDB_val k = {1, &st}, v;
        int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        while (rc == 0 && n < limit && k.mv_size > 2 &&
               ((char *)k.mv_data)[0] == st) {
            const char *code = (const char *)k.mv_data + 1;
            size_t rest = k.mv_size - 1;
            const char *nul = memchr(code, 0, rest);
            if (nul != NULL && nul + 1 < code + rest) {
                char num[16];
                size_t nl = (size_t)(code + rest - nul - 1);
                MDB_val mk = {(size_t)(nul - code), (void *)code}, mv;
                if (nl < sizeof num &&
                    mdb_get(txn, s->dbi[DB_MSGS], &mk, &mv) == 0) {
                    memcpy(num, nul + 1, nl);
                    num[nl] = 0;
                    Sr__StoredMessage *m = sr__stored_message__unpack(
                        NULL, mv.mv_size, mv.mv_data);
                    unsigned r = (unsigned)strtoul(num, NULL, 10);
                    if (m != NULL && r < m->n_rcpts) {
                        fn(ud, m, r);
                        n++;
                    }
                    if (m != NULL)
                        sr__stored_message__free_unpacked(m, NULL);
                }
            }
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return n;
}

uint64_t dqueue_sends(struct queue_store *s, const char *domain,
                      uint64_t since_ms)
{
    uint64_t from = since_ms / THR_BUCKET_MS;
    MDB_txn *txn;
    MDB_cursor *cur;
    uint64_t total = 0;
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0)
        return 0;
    uint8_t prefix[300];
    size_t pl =
        (size_t)snprintf((char *)prefix, sizeof prefix - 17, "thr:%s", domain) +
        1;
    if (mdb_cursor_open(txn, s->dbi[DB_META], &cur) == 0) {
        MDB_val k = {pl, prefix}, v;
        int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        while (rc == 0 && k.mv_size == pl + 16 &&
               memcmp(k.mv_data, prefix, pl) == 0) {
            const uint8_t *p = (const uint8_t *)k.mv_data + pl;
            if (get_be64(p + 8) >= from && v.mv_size == 8)
                total += get_be64(v.mv_data);
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
    return total;
}

uint64_t dqueue_customer_pending(struct queue_store *s, const char *customer)
{
    MDB_txn *txn;
    uint64_t n = 0;
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0)
        return 0;
    char k[128];
    snprintf(k, sizeof k, "pending:%s", customer);
    MDB_val key = {strlen(k), k}, v;
    if (mdb_get(txn, s->dbi[DB_META], &key, &v) == 0 && v.mv_size == 8)
        memcpy(&n, v.mv_data, 8);
    mdb_txn_abort(txn);
    return n;
}

size_t dqueue_dsn_pending(struct queue_store *s, uint64_t shard_mask,
                          size_t limit,
                          void (*fn)(void *ud, const char *code, unsigned rcpt),
                          void *ud)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    size_t n = 0;
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0)
        return 0;
    if (mdb_cursor_open(txn, s->dbi[DB_META], &cur) == 0) {
        MDB_val k = {5, "dsnq:"}, v;
        int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        while (rc == 0 && n < limit && k.mv_size > 5 &&
               memcmp(k.mv_data, "dsnq:", 5) == 0) {
            const char *p = (const char *)k.mv_data + 5;
            size_t rest = k.mv_size - 5;
            const char *nul = memchr(p, 0, rest);
            if (nul != NULL && v.mv_size == 1 &&
                (shard_mask >> *(uint8_t *)v.mv_data & 1)) {
                char code[256], num[16];
                size_t cl = (size_t)(nul - p), nl = rest - cl - 1;
                if (cl < sizeof code && nl > 0 && nl < sizeof num) {
                    memcpy(code, p, cl);
                    code[cl] = 0;
                    memcpy(num, nul + 1, nl);
                    num[nl] = 0;
                    fn(ud, code, (unsigned)strtoul(num, NULL, 10));
                    n++;
                }
            }
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
    return n;
}

void dqueue_shards(struct queue_store *s, uint64_t owners[SHARD_COUNT],
                   uint64_t *epoch)
{
    memset(owners, 0, sizeof(uint64_t) * SHARD_COUNT);
    *epoch = 0;
    MDB_txn *txn;
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0)
        return;
    Sr__StoredShards *t = load_shards(s, txn);
    if (t != NULL) {
        memcpy(owners, t->owners, sizeof(uint64_t) * SHARD_COUNT);
        *epoch = t->epoch;
        sr__stored_shards__free_unpacked(t, NULL);
    }
    mdb_txn_abort(txn);
}

size_t dqueue_leases(struct queue_store *s, uint64_t *nodes, uint64_t *expiry,
                     size_t cap)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    size_t n = 0;
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0)
        return 0;
    if (mdb_cursor_open(txn, s->dbi[DB_META], &cur) == 0) {
        MDB_val k = {6, "lease:"}, v;
        int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        while (rc == 0 && n < cap && k.mv_size > 6 &&
               memcmp(k.mv_data, "lease:", 6) == 0) {
            char num[32];
            size_t l =
                k.mv_size - 6 < sizeof num - 1 ? k.mv_size - 6 : sizeof num - 1;
            memcpy(num, (char *)k.mv_data + 6, l);
            num[l] = 0;
            if (v.mv_size == 8) {
                nodes[n] = strtoull(num, NULL, 10);
                expiry[n] = get_be64(v.mv_data);
                n++;
            }
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
    return n;
}

size_t dqueue_due(struct queue_store *s, uint64_t shard_mask, uint64_t now_ms,
                  size_t limit,
                  void (*fn)(void *ud, const char *code, unsigned rcpt,
                             uint64_t due_ms),
                  void *ud)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    size_t n = 0;
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0)
        return 0;
    if (mdb_cursor_open(txn, s->dbi[DB_DUE], &cur) != 0) {
        mdb_txn_abort(txn);
        return 0;
    }
    for (unsigned sh = 0; sh < SHARD_COUNT && n < limit; sh++) {
        if (!(shard_mask >> sh & 1))
            continue;
        uint8_t start = (uint8_t)sh;
        MDB_val k = {1, &start}, v;
        int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        while (rc == 0 && n < limit) {
            const uint8_t *p = k.mv_data;
            if (k.mv_size < 11 || p[0] != sh)
                break;
            uint64_t due = get_be64(p + 1);
            if (due > now_ms)
                break;
            /* code NUL rcpt */
            const char *code = (const char *)p + 9;
            size_t rest = k.mv_size - 9;
            const char *nul = memchr(code, 0, rest);
            if (nul != NULL) {
                char cbuf[256], nbuf[16];
                size_t cl = (size_t)(nul - code);
                size_t nl = rest - cl - 1;
                if (cl < sizeof cbuf && nl > 0 && nl < sizeof nbuf) {
                    memcpy(cbuf, code, cl);
                    cbuf[cl] = 0;
                    memcpy(nbuf, nul + 1, nl);
                    nbuf[nl] = 0;
                    fn(ud, cbuf, (unsigned)strtoul(nbuf, NULL, 10), due);
                    n++;
                }
            }
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return n;
}

uint64_t dqueue_events(struct queue_store *s, uint64_t after, size_t limit,
                       void (*fn)(void *ud, uint64_t seq, const Sr__Event *e),
                       void *ud)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    uint64_t last = after;
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0)
        return last;
    if (mdb_cursor_open(txn, s->dbi[DB_EVENTS], &cur) == 0) {
        uint8_t start[8];
        be64(start, after + 1);
        MDB_val k = {8, start}, v;
        int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        size_t n = 0;
        while (rc == 0 && n < limit && k.mv_size == 8) {
            Sr__Event *e = sr__event__unpack(NULL, v.mv_size, v.mv_data);
            if (e != NULL) {
                last = get_be64(k.mv_data);
                fn(ud, last, e);
                sr__event__free_unpacked(e, NULL);
                n++;
            }
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
    return last;
}

/* ---- tracking events and suppression ---- */

static size_t supp_key(char *k, size_t cap, const char *customer,
                       const char *address)
{
    size_t n = (size_t)snprintf(k, cap, "supp:%s", customer) + 1;
    for (const char *p = address; *p && n < cap - 1; p++)
        k[n++] = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
    return n;
}

int dqueue_apply_track(struct queue_store *s, MDB_txn *txn, uint64_t time_ms,
                       const Sr__TrackEvent *t)
{
    if (t->type != EVENT_OPEN && t->type != EVENT_CLICK &&
        t->type != EVENT_UNSUBSCRIBE)
        return SR_EINVAL;
    if (t->code[0] == '\0' || strlen(t->url) > 8192)
        return SR_EINVAL;
    Sr__StoredMessage *m = store_load_msg(s, txn, t->code);
    if (m == NULL)
        return SR_ENOTFOUND;
    if (t->rcpt >= m->n_rcpts) {
        sr__stored_message__free_unpacked(m, NULL);
        return SR_EINVAL;
    }
    Sr__Event e = SR__EVENT__INIT;
    e.code = t->code;
    e.rcpt = t->rcpt;
    e.address = m->rcpts[t->rcpt]->address;
    e.type = t->type;
    e.reply = "";
    e.time_ms = time_ms;
    e.node = t->node;
    e.mx = "";
    e.customer = m->accept->customer;
    e.bounce_class = "";
    e.url = t->url;
    add_event(s, txn, &e);
    if (t->type == EVENT_UNSUBSCRIBE) {
        char k[700];
        uint8_t when[8];
        be64(when, time_ms);
        store_put(txn, s->dbi[DB_META], k,
                  supp_key(k, sizeof k, m->accept->customer, e.address), when,
                  8);
    }
    sr__stored_message__free_unpacked(m, NULL);
    return 0;
}

void dqueue_suppressed_many(struct queue_store *s, const char *customer,
                            const char *const *addrs, size_t n, bool *out)
{
    char k[700];
    MDB_txn *txn;
    for (size_t i = 0; i < n; i++)
        out[i] = false;
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0)
        return;
    for (size_t i = 0; i < n; i++) {
        if (addrs[i] == NULL)
            continue;
        MDB_val key = {supp_key(k, sizeof k, customer, addrs[i]), k}, v;
        out[i] = mdb_get(txn, s->dbi[DB_META], &key, &v) == 0;
    }
    mdb_txn_abort(txn);
}
