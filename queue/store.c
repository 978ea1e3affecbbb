/* store.c - the replicated state in LMDB (see store.h). */
#include "queue/store.h"

#include <ctype.h>
#include <lmdb.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "node/errors.h"
#include "node/log.h"
#include "queue/dqueue.h"
#include "queue/policy.h"
#include "queue/qaction.h"
#include "queue/smsq.h"
#include "queue/tbucket.h"
#include "queue/store_int.h"

static const char *const db_names[DB_COUNT] = {
    "meta", "msgs", "idx_state", "idx_domain", "nodes", "due", "events"};

#define SNAP_MAGIC "SRS1"

static const char *const state_names[RCPT_STATE_MAX] = {
    "queued",  "inflight", "deferred",    "delivered",  "bounced",
    "expired", "held",     "quarantined", "suppressed", "submitted"};

const char *queue_rcpt_state_name(unsigned state)
{
    return state < RCPT_STATE_MAX ? state_names[state] : "unknown";
}

void store_die(const char *what, int rc)
{
    LOG_ERROR("event=fatal what=%s error=\"%s\"", what, mdb_strerror(rc));
    fprintf(stderr, "smartrelayd: fatal: state store %s: %s\n", what,
            mdb_strerror(rc));
    abort();
}

int queue_store_open(const char *dir, struct queue_store **out, char *err,
                     size_t errlen)
{
    struct queue_store *s = calloc(1, sizeof *s);
    if (s == NULL)
        return SR_ENOMEM;
    mkdir(dir, 0750);
    int rc = mdb_env_create(&s->env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(s->env, DB_COUNT + 2);
    if (rc == 0)
        rc = mdb_env_set_mapsize(s->env, (size_t)16 << 30);
    if (rc == 0)
        rc = mdb_env_open(s->env, dir, MDB_NOSYNC | MDB_NOTLS, 0640);
    if (rc != 0) {
        int code = sr_err(err, errlen, SR_EIO, "state store %s: %s", dir,
                          mdb_strerror(rc));
        if (s->env)
            mdb_env_close(s->env);
        free(s);
        return code;
    }
    MDB_txn *txn;
    rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    for (int i = 0; rc == 0 && i < DB_COUNT; i++)
        rc = mdb_dbi_open(txn, db_names[i], MDB_CREATE, &s->dbi[i]);
    if (rc == 0) {
        MDB_val k = {7, "applied"}, v;
        if (mdb_get(txn, s->dbi[DB_META], &k, &v) == 0 &&
            v.mv_size == sizeof(uint64_t))
            memcpy(&s->applied, v.mv_data, sizeof s->applied);
        rc = mdb_txn_commit(txn);
    } else {
        mdb_txn_abort(txn);
    }
    if (rc != 0) {
        mdb_env_close(s->env);
        free(s);
        return sr_err(err, errlen, SR_EIO, "state store %s: %s", dir,
                      mdb_strerror(rc));
    }
    *out = s;
    return 0;
}

void queue_store_close(struct queue_store *s)
{
    if (s == NULL)
        return;
    mdb_env_sync(s->env, 1);
    mdb_env_close(s->env);
    free(s);
}

int queue_store_sync(struct queue_store *s)
{
    return mdb_env_sync(s->env, 1) == 0 ? 0 : SR_EIO;
}

uint64_t queue_store_applied(struct queue_store *s)
{
    return s->applied;
}

/* ---- apply ---- */

void store_put(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t klen,
               const void *v, size_t vlen)
{
    MDB_val key = {klen, (void *)k}, val = {vlen, (void *)v};
    int rc = mdb_put(txn, dbi, &key, &val, 0);
    if (rc != 0)
        store_die("put", rc);
}

void store_count_add(struct queue_store *s, MDB_txn *txn, const char *name,
                     int64_t delta)
{
    MDB_val k = {strlen(name), (void *)name}, v;
    uint64_t n = 0;
    if (mdb_get(txn, s->dbi[DB_META], &k, &v) == 0 && v.mv_size == sizeof n)
        memcpy(&n, v.mv_data, sizeof n);
    n = (uint64_t)((int64_t)n + delta);
    store_put(txn, s->dbi[DB_META], name, strlen(name), &n, sizeof n);
}

/* Index key: domain (lower case) NUL code NUL rcpt-number. */
static size_t domain_key(char *out, size_t cap, const char *rcpt,
                         const char *code, unsigned i)
{
    const char *at = strrchr(rcpt, '@');
    const char *dom = at ? at + 1 : "";
    size_t n = 0;
    for (; *dom && n < cap - 40; dom++)
        out[n++] = (char)tolower((unsigned char)*dom);
    out[n++] = '\0';
    n += (size_t)snprintf(out + n, cap - n, "%s", code) + 1;
    n += (size_t)snprintf(out + n, cap - n, "%u", i);
    return n;
}

static int apply_accept(struct queue_store *s, MDB_txn *txn, uint64_t index,
                        uint64_t time_ms, Sr__MessageAccept *a)
{
    MDB_val k = {strlen(a->code), a->code}, v;
    if (a->code[0] == '\0')
        return SR_EINVAL;
    if (mdb_get(txn, s->dbi[DB_MSGS], &k, &v) == 0)
        return SR_EEXIST;
    if (a->deadline_ms != 0 && time_ms > a->deadline_ms)
        return SR_ETIMEDOUT;
    if (a->dsn_for_code[0] != '\0' &&
        dqueue_take_dsn(s, txn, a->dsn_for_code, a->dsn_for_rcpt) != 0)
        return SR_EEXIST; /* this bounce has its DSN already */

    Sr__StoredMessage m = SR__STORED_MESSAGE__INIT;
    Sr__StoredRcpt *rs = calloc(a->n_rcpts, sizeof *rs);
    Sr__StoredRcpt **rp = calloc(a->n_rcpts, sizeof *rp);
    if ((rs == NULL || rp == NULL) && a->n_rcpts > 0)
        store_die("apply", ENOMEM);
    for (size_t i = 0; i < a->n_rcpts; i++) {
        Sr__StoredRcpt init = SR__STORED_RCPT__INIT;
        rs[i] = init;
        rs[i].address = a->rcpts[i];
        rs[i].state = RCPT_QUEUED;
        rp[i] = &rs[i];
    }
    m.accept = a;
    m.n_rcpts = a->n_rcpts;
    m.rcpts = rp;
    m.index = index;
    m.committed_at_ms = time_ms;
    dqueue_index_new(s, txn, a->code, &m, time_ms);
    size_t len = sr__stored_message__get_packed_size(&m);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL)
        store_die("apply", ENOMEM);
    sr__stored_message__pack(&m, buf);
    store_put(txn, s->dbi[DB_MSGS], a->code, strlen(a->code), buf, len);
    free(buf);

    char key[600];
    for (size_t i = 0; i < a->n_rcpts; i++) {
        /* state index: state byte, code, NUL, recipient number */
        size_t n = 0;
        key[n++] = (char)RCPT_QUEUED;
        n += (size_t)snprintf(key + n, sizeof key - n, "%s", a->code) + 1;
        n += (size_t)snprintf(key + n, sizeof key - n, "%zu", i);
        store_put(txn, s->dbi[DB_IDX_STATE], key, n, "", 0);
        size_t dn =
            domain_key(key, sizeof key, a->rcpts[i], a->code, (unsigned)i);
        store_put(txn, s->dbi[DB_IDX_DOMAIN], key, dn, "", 0);
    }
    free(rs);
    free(rp);
    store_count_add(s, txn, "count:messages", 1);
    store_count_add(s, txn, "count:queued", (int64_t)a->n_rcpts);
    return 0;
}

Sr__StoredMessage *store_load_msg(struct queue_store *s, MDB_txn *txn,
                                  const char *code)
{
    MDB_val k = {strlen(code), (void *)code}, v;
    if (code[0] == '\0' || mdb_get(txn, s->dbi[DB_MSGS], &k, &v) != 0)
        return NULL;
    Sr__StoredMessage *m =
        sr__stored_message__unpack(NULL, v.mv_size, v.mv_data);
    if (m == NULL)
        store_die("stored message undecodable", MDB_CORRUPTED);
    return m;
}

static int apply_holder_add(struct queue_store *s, MDB_txn *txn,
                            Sr__HolderAdd *h)
{
    Sr__StoredMessage *m = store_load_msg(s, txn, h->code);
    if (m == NULL)
        return SR_ENOTFOUND;
    Sr__MessageAccept *a = m->accept;
    for (size_t i = 0; i < a->n_holders; i++) {
        if (a->holders[i] == h->node) {
            sr__stored_message__free_unpacked(m, NULL);
            return SR_EEXIST;
        }
    }
    /* protobuf-c frees with its allocator (malloc): grow in place. */
    uint64_t *nh = realloc(a->holders, (a->n_holders + 1) * sizeof *nh);
    if (nh == NULL)
        store_die("apply", ENOMEM);
    nh[a->n_holders++] = h->node;
    a->holders = nh;
    size_t len = sr__stored_message__get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL)
        store_die("apply", ENOMEM);
    sr__stored_message__pack(m, buf);
    store_put(txn, s->dbi[DB_MSGS], h->code, strlen(h->code), buf, len);
    free(buf);
    sr__stored_message__free_unpacked(m, NULL);
    return 0;
}

static int apply_policy(struct queue_store *s, MDB_txn *txn, Sr__PolicySet *p)
{
    struct policy *pol;
    char err[SR_ERRMSG_SIZE];
    if (policy_parse_json(p->json, strlen(p->json), &pol, err, sizeof err) != 0)
        return SR_EPARSE;
    policy_free(pol);
    store_put(txn, s->dbi[DB_META], "policy", 6, p->json, strlen(p->json));
    return 0;
}

static int apply_node(struct queue_store *s, MDB_txn *txn, Sr__NodeInfo *n)
{
    uint8_t key[8];
    for (int i = 0; i < 8; i++)
        key[i] = (uint8_t)(n->id >> (56 - 8 * i));
    size_t len = sr__node_info__get_packed_size(n);
    uint8_t buf[1024];
    if (len > sizeof buf)
        return SR_EINVAL;
    sr__node_info__pack(n, buf);
    store_put(txn, s->dbi[DB_NODES], key, 8, buf, len);
    return 0;
}

void queue_store_apply(struct queue_store *s, uint64_t index,
                       const Sr__Entry *e, int *statuses)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc != 0)
        store_die("begin", rc);
    for (size_t i = 0; i < e->n_ops; i++) {
        Sr__Op *op = e->ops[i];
        int st;
        switch (op->op_case) {
        case SR__OP__OP_ACCEPT:
            st = apply_accept(s, txn, index, e->time_ms, op->accept);
            break;
        case SR__OP__OP_POLICY:
            st = apply_policy(s, txn, op->policy);
            break;
        case SR__OP__OP_NODE_INFO:
            st = apply_node(s, txn, op->node_info);
            break;
        case SR__OP__OP_HOLDER_ADD:
            st = apply_holder_add(s, txn, op->holder_add);
            break;
        case SR__OP__OP_LEASE_RENEW:
            st = dqueue_apply_lease(s, txn, e->time_ms, op->lease_renew);
            break;
        case SR__OP__OP_SHARD_ASSIGN:
            st = dqueue_apply_shards(s, txn, e->time_ms, op->shard_assign);
            break;
        case SR__OP__OP_DELIVERY_RESULT:
            st = dqueue_apply_result(s, txn, e->time_ms, op->delivery_result);
            break;
        case SR__OP__OP_SHARD_RELEASE:
            st = dqueue_apply_release(s, txn, op->shard_release);
            break;
        case SR__OP__OP_TRACK_EVENT:
            st = dqueue_apply_track(s, txn, e->time_ms, op->track_event);
            break;
        case SR__OP__OP_SMS_RECEIPT:
            st = smsq_apply_receipt(s, txn, e->time_ms, op->sms_receipt);
            break;
        case SR__OP__OP_QUEUE_ACTION:
            st = qaction_apply(s, txn, e->time_ms, op->queue_action);
            break;
        case SR__OP__OP_RATE_GRANT:
            st = tbucket_apply(s, txn, e->time_ms, op->rate_grant);
            break;
        default:
            st = SR_EPARSE;
            break;
        }
        statuses[i] = st;
    }
    store_put(txn, s->dbi[DB_META], "applied", 7, &index, sizeof index);
    rc = mdb_txn_commit(txn);
    if (rc != 0)
        store_die("commit", rc);
    s->applied = index;
}

/* ---- lookups ---- */

static int get(struct queue_store *s, int db, const void *k, size_t klen,
               void *(*unpack)(size_t, const uint8_t *), void **out)
{
    MDB_txn *txn;
    *out = NULL;
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0)
        return SR_EIO;
    MDB_val key = {klen, (void *)k}, val;
    int rc = mdb_get(txn, s->dbi[db], &key, &val);
    if (rc == 0)
        *out = unpack(val.mv_size, val.mv_data);
    mdb_txn_abort(txn);
    if (rc == MDB_NOTFOUND)
        return SR_ENOTFOUND;
    return *out ? 0 : SR_EPARSE;
}

static void *unpack_msg(size_t n, const uint8_t *d)
{
    return sr__stored_message__unpack(NULL, n, d);
}

static void *unpack_node(size_t n, const uint8_t *d)
{
    return sr__node_info__unpack(NULL, n, d);
}

static void *copy_string(size_t n, const uint8_t *d)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, d, n);
        s[n] = '\0';
    }
    return s;
}

int queue_store_get_message(struct queue_store *s, const char *code,
                            Sr__StoredMessage **out)
{
    return get(s, DB_MSGS, code, strlen(code), unpack_msg, (void **)out);
}

int queue_store_get_node(struct queue_store *s, uint64_t id, Sr__NodeInfo **out)
{
    uint8_t key[8];
    for (int i = 0; i < 8; i++)
        key[i] = (uint8_t)(id >> (56 - 8 * i));
    return get(s, DB_NODES, key, 8, unpack_node, (void **)out);
}

int queue_store_get_policy(struct queue_store *s, char **json)
{
    return get(s, DB_META, "policy", 6, copy_string, (void **)json);
}

void queue_store_counts(struct queue_store *s, uint64_t counts[RCPT_STATE_MAX],
                        uint64_t *messages)
{
    MDB_txn *txn;
    memset(counts, 0, sizeof(uint64_t) * RCPT_STATE_MAX);
    *messages = 0;
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0)
        return;
    for (int i = 0; i <= RCPT_STATE_MAX; i++) {
        char name[64];
        snprintf(name, sizeof name, "count:%s",
                 i < RCPT_STATE_MAX ? state_names[i] : "messages");
        MDB_val k = {strlen(name), name}, v;
        uint64_t n = 0;
        if (mdb_get(txn, s->dbi[DB_META], &k, &v) == 0 && v.mv_size == 8)
            memcpy(&n, v.mv_data, 8);
        if (i < RCPT_STATE_MAX)
            counts[i] = n;
        else
            *messages = n;
    }
    mdb_txn_abort(txn);
}

void queue_store_list(struct queue_store *s, size_t limit,
                      void (*fn)(void *ud, const char *code), void *ud)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0)
        return;
    if (mdb_cursor_open(txn, s->dbi[DB_MSGS], &cur) == 0) {
        MDB_val k, v;
        size_t n = 0;
        char code[256];
        for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
             rc == 0 && (limit == 0 || n < limit);
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), n++) {
            size_t len =
                k.mv_size < sizeof code - 1 ? k.mv_size : sizeof code - 1;
            memcpy(code, k.mv_data, len);
            code[len] = '\0';
            fn(ud, code);
        }
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
}

int queue_store_scan(struct queue_store *s, const char *after, size_t limit,
                     void (*fn)(void *ud, const Sr__StoredMessage *m), void *ud,
                     char *last, size_t lastlen)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    size_t n = 0;
    last[0] = '\0';
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0)
        return 0;
    if (mdb_cursor_open(txn, s->dbi[DB_MSGS], &cur) == 0) {
        MDB_val k = {after ? strlen(after) : 0, (void *)after}, v;
        int rc = after && after[0] ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)
                                   : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        /* SET_RANGE lands on `after` itself when it still exists: skip it */
        if (rc == 0 && after && after[0] && k.mv_size == strlen(after) &&
            memcmp(k.mv_data, after, k.mv_size) == 0)
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        for (; rc == 0 && n < limit;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), n++) {
            Sr__StoredMessage *m =
                sr__stored_message__unpack(NULL, v.mv_size, v.mv_data);
            if (m == NULL)
                continue;
            fn(ud, m);
            sr__stored_message__free_unpacked(m, NULL);
            size_t len = k.mv_size < lastlen - 1 ? k.mv_size : lastlen - 1;
            memcpy(last, k.mv_data, len);
            last[len] = '\0';
        }
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
    return (int)n;
}

/* ---- digest, snapshot, restore ---- */

static void u32le(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Walks every record of every database in order. */
static int
walk(struct queue_store *s,
     void (*fn)(void *ud, int db, const MDB_val *k, const MDB_val *v), void *ud)
{
    MDB_txn *txn;
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0)
        return SR_EIO;
    for (int db = 0; db < DB_COUNT; db++) {
        MDB_cursor *cur;
        if (mdb_cursor_open(txn, s->dbi[db], &cur) != 0) {
            mdb_txn_abort(txn);
            return SR_EIO;
        }
        MDB_val k, v;
        for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
            fn(ud, db, &k, &v);
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
    return 0;
}

static void digest_rec(void *ud, int db, const MDB_val *k, const MDB_val *v)
{
    uint8_t hdr[9];
    hdr[0] = (uint8_t)db;
    u32le(hdr + 1, (uint32_t)k->mv_size);
    u32le(hdr + 5, (uint32_t)v->mv_size);
    EVP_DigestUpdate(ud, hdr, sizeof hdr);
    EVP_DigestUpdate(ud, k->mv_data, k->mv_size);
    EVP_DigestUpdate(ud, v->mv_data, v->mv_size);
}

void queue_store_digest(struct queue_store *s, uint8_t out[32],
                        uint64_t *applied)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    *applied = s->applied;
    walk(s, digest_rec, ctx);
    unsigned len = 32;
    EVP_DigestFinal_ex(ctx, out, &len);
    EVP_MD_CTX_free(ctx);
}

struct snapbuf {
    uint8_t *p;
    size_t len, cap;
    int failed;
};

static void snap_add(struct snapbuf *b, const void *d, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (p == NULL) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void snap_rec(void *ud, int db, const MDB_val *k, const MDB_val *v)
{
    uint8_t hdr[9];
    hdr[0] = (uint8_t)db;
    u32le(hdr + 1, (uint32_t)k->mv_size);
    u32le(hdr + 5, (uint32_t)v->mv_size);
    snap_add(ud, hdr, sizeof hdr);
    snap_add(ud, k->mv_data, k->mv_size);
    snap_add(ud, v->mv_data, v->mv_size);
}

int queue_store_snapshot(struct queue_store *s, uint8_t **buf, size_t *len)
{
    struct snapbuf b = {0};
    snap_add(&b, SNAP_MAGIC, 4);
    int rc = walk(s, snap_rec, &b);
    if (rc != 0 || b.failed) {
        free(b.p);
        return rc ? rc : SR_ENOMEM;
    }
    *buf = b.p;
    *len = b.len;
    return 0;
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

int queue_store_restore(struct queue_store *s, const uint8_t *buf, size_t len)
{
    if (len < 4 || memcmp(buf, SNAP_MAGIC, 4) != 0)
        return SR_EPARSE;
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc != 0)
        return SR_EIO;
    for (int db = 0; db < DB_COUNT; db++)
        mdb_drop(txn, s->dbi[db], 0);
    uint64_t applied = 0;
    size_t off = 4;
    while (off < len) {
        if (len - off < 9)
            goto bad;
        int db = buf[off];
        size_t kl = rd32(buf + off + 1), vl = rd32(buf + off + 5);
        off += 9;
        if (db >= DB_COUNT || kl == 0 || kl > len - off || vl > len - off - kl)
            goto bad;
        MDB_val k = {kl, (void *)(buf + off)},
                v = {vl, (void *)(buf + off + kl)};
        if (db == DB_META && kl == 7 && memcmp(k.mv_data, "applied", 7) == 0 &&
            vl == 8)
            memcpy(&applied, v.mv_data, 8);
        if (mdb_put(txn, s->dbi[db], &k, &v, 0) != 0)
            goto bad;
        off += kl + vl;
    }
    if (mdb_txn_commit(txn) != 0)
        return SR_EIO;
    s->applied = applied;
    return 0;
bad:
    mdb_txn_abort(txn);
    return SR_EPARSE;
}
