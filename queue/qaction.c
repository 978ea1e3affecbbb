/* qaction.c - suspend, resume, retry, bounce (see qaction.h). */
#include "queue/qaction.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/errors.h"
#include "queue/dqueue.h"
#include "queue/store.h"
#include "queue/store_int.h"

#define DOMAIN_MAX 253

const char *qaction_name(unsigned action)
{
    switch (action) {
    case QUEUE_SUSPEND:
        return "suspend";
    case QUEUE_RESUME:
        return "resume";
    case QUEUE_RETRY:
        return "retry";
    case QUEUE_BOUNCE:
        return "bounce";
    default:
        return "unknown";
    }
}

/* Lower-cases a domain into out; false if empty or too long. */
static bool norm_domain(const char *in, char out[DOMAIN_MAX + 1])
{
    size_t n = strlen(in);
    if (n == 0 || n > DOMAIN_MAX)
        return false;
    for (size_t i = 0; i <= n; i++)
        out[i] = (char)tolower((unsigned char)in[i]);
    return true;
}

static size_t susp_key(char *k, size_t cap, const char *domain)
{
    return (size_t)snprintf(k, cap, "susp:%s", domain);
}

static bool pending(const Sr__StoredRcpt *rc)
{
    return rc->state == RCPT_QUEUED || rc->state == RCPT_DEFERRED;
}

/* Drops suspensions that ended before time_ms. */
static void prune(struct queue_store *s, MDB_txn *txn, uint64_t time_ms)
{
    MDB_cursor *cur;
    if (mdb_cursor_open(txn, s->dbi[DB_META], &cur) != 0)
        return;
    MDB_val k = {5, "susp:"}, v;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && k.mv_size > 5 && memcmp(k.mv_data, "susp:", 5) == 0) {
        Sr__StoredSuspension *x =
            sr__stored_suspension__unpack(NULL, v.mv_size, v.mv_data);
        if (x == NULL)
            store_die("stored suspension undecodable", MDB_CORRUPTED);
        bool over = x->until_ms <= time_ms;
        sr__stored_suspension__free_unpacked(x, NULL);
        if (over) {
            rc = mdb_cursor_del(cur, 0);
            if (rc != 0)
                store_die("del", rc);
            rc = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT);
            if (rc == EINVAL || rc == MDB_NOTFOUND) /* deleted the last one */
                break;
            continue;
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
}

/* Every waiting recipient of the messages for domain becomes due at
 * time_ms. Returns how many moved. */
static int retry_domain(struct queue_store *s, MDB_txn *txn, uint64_t time_ms,
                        const char *domain)
{
    size_t dl = strlen(domain) + 1; /* with its NUL */
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, s->dbi[DB_IDX_DOMAIN], &cur);
    if (rc != 0)
        store_die("cursor", rc);
    MDB_val k = {dl, (void *)domain}, v;
    Sr__StoredMessage *m = NULL;
    char code[300] = "";
    bool dirty = false;
    int moved = 0;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && k.mv_size > dl && memcmp(k.mv_data, domain, dl) == 0) {
        const char *kc = (const char *)k.mv_data + dl;
        size_t rest = k.mv_size - dl;
        const char *nul = memchr(kc, 0, rest);
        char num[16];
        size_t nl = nul ? (size_t)(kc + rest - nul - 1) : 0;
        if (nul == NULL || nl == 0 || nl >= sizeof num ||
            (size_t)(nul - kc) >= sizeof code) {
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
            continue;
        }
        if (m == NULL || strncmp(code, kc, sizeof code) != 0) {
            if (m != NULL) {
                if (dirty)
                    dqueue_put_message(s, txn, code, m);
                sr__stored_message__free_unpacked(m, NULL);
                m = NULL;
            }
            dirty = false;
            memcpy(code, kc, (size_t)(nul - kc) + 1);
            m = store_load_msg(s, txn, code);
        }
        memcpy(num, nul + 1, nl);
        num[nl] = 0;
        unsigned i = (unsigned)strtoul(num, NULL, 10);
        if (m != NULL && i < m->n_rcpts && pending(m->rcpts[i]) &&
            m->rcpts[i]->due_ms != time_ms) {
            dqueue_reschedule(s, txn, code, m, i, time_ms);
            dirty = true;
            moved++;
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (m != NULL) {
        if (dirty)
            dqueue_put_message(s, txn, code, m);
        sr__stored_message__free_unpacked(m, NULL);
    }
    mdb_cursor_close(cur);
    return moved;
}

static int retry_code(struct queue_store *s, MDB_txn *txn, uint64_t time_ms,
                      const char *code)
{
    Sr__StoredMessage *m = store_load_msg(s, txn, code);
    if (m == NULL)
        return SR_ENOTFOUND;
    int moved = 0;
    for (size_t i = 0; i < m->n_rcpts; i++) {
        if (pending(m->rcpts[i]) && m->rcpts[i]->due_ms != time_ms) {
            dqueue_reschedule(s, txn, code, m, (unsigned)i, time_ms);
            moved++;
        }
    }
    if (moved)
        dqueue_put_message(s, txn, code, m);
    sr__stored_message__free_unpacked(m, NULL);
    return moved;
}

static int bounce_code(struct queue_store *s, MDB_txn *txn, uint64_t time_ms,
                       const Sr__QueueAction *a)
{
    Sr__StoredMessage *m = store_load_msg(s, txn, a->code);
    if (m == NULL)
        return SR_ENOTFOUND;
    uint32_t *idx = calloc(m->n_rcpts ? m->n_rcpts : 1, sizeof *idx);
    if (idx == NULL)
        store_die("apply", ENOMEM);
    size_t n = 0;
    for (size_t i = 0; i < m->n_rcpts; i++)
        if (pending(m->rcpts[i]))
            idx[n++] = (uint32_t)i;
    sr__stored_message__free_unpacked(m, NULL);
    if (n == 0) {
        free(idx);
        return 0;
    }
    char reply[600];
    snprintf(reply, sizeof reply, "550 5.0.0 bounced by the operator%s%.400s",
             a->reason[0] ? ": " : "", a->reason);
    Sr__DeliveryResult r = SR__DELIVERY_RESULT__INIT;
    r.code = a->code;
    r.rcpts = idx;
    r.n_rcpts = n;
    r.outcome = DELIVERY_BOUNCED;
    r.reply = reply;
    r.node = a->node;
    r.mx = "none";
    r.bounce_class = "other";
    int rc = dqueue_apply_result(s, txn, time_ms, &r);
    free(idx);
    return rc == 0 ? (int)n : 0;
}

static int suspend(struct queue_store *s, MDB_txn *txn, uint64_t time_ms,
                   const Sr__QueueAction *a, const char *domain)
{
    uint64_t until = a->until_ms ? a->until_ms : QACTION_FOREVER;
    if (until <= time_ms)
        return SR_EINVAL;
    Sr__StoredSuspension x = SR__STORED_SUSPENSION__INIT;
    x.domain = (char *)domain;
    x.since_ms = time_ms;
    x.until_ms = until;
    x.per_minute = a->per_minute;
    x.reason = a->reason;
    x.source = a->source;
    x.node = a->node;
    uint8_t buf[2048];
    size_t len = sr__stored_suspension__get_packed_size(&x);
    if (len > sizeof buf)
        return SR_EINVAL;
    sr__stored_suspension__pack(&x, buf);
    char k[300];
    store_put(txn, s->dbi[DB_META], k, susp_key(k, sizeof k, domain), buf, len);
    return 0;
}

int qaction_apply(struct queue_store *s, MDB_txn *txn, uint64_t time_ms,
                  const Sr__QueueAction *a)
{
    char domain[DOMAIN_MAX + 1];
    bool has_domain = norm_domain(a->domain, domain);
    if (strlen(a->reason) > 1000 || strlen(a->source) > 100)
        return SR_EINVAL;
    prune(s, txn, time_ms);
    switch (a->action) {
    case QUEUE_SUSPEND:
        return has_domain ? suspend(s, txn, time_ms, a, domain) : SR_EINVAL;
    case QUEUE_RESUME: {
        if (!has_domain)
            return SR_EINVAL;
        char k[300];
        MDB_val key = {susp_key(k, sizeof k, domain), k};
        int rc = mdb_del(txn, s->dbi[DB_META], &key, NULL);
        if (rc == MDB_NOTFOUND)
            return SR_ENOTFOUND;
        if (rc != 0)
            store_die("del", rc);
        return retry_domain(s, txn, time_ms, domain);
    }
    case QUEUE_RETRY:
        if (a->code[0] != '\0')
            return retry_code(s, txn, time_ms, a->code);
        return has_domain ? retry_domain(s, txn, time_ms, domain) : SR_EINVAL;
    case QUEUE_BOUNCE:
        return a->code[0] ? bounce_code(s, txn, time_ms, a) : SR_EINVAL;
    default:
        return SR_EINVAL;
    }
}

/* ---- reads ---- */

int qaction_suspension(struct queue_store *s, const char *domain,
                       uint64_t now_ms, Sr__StoredSuspension **out)
{
    char d[DOMAIN_MAX + 1], k[300];
    *out = NULL;
    if (!norm_domain(domain, d))
        return SR_ENOTFOUND;
    MDB_txn *txn;
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0)
        return SR_EIO;
    MDB_val key = {susp_key(k, sizeof k, d), k}, v;
    int rc = SR_ENOTFOUND;
    if (mdb_get(txn, s->dbi[DB_META], &key, &v) == 0) {
        Sr__StoredSuspension *x =
            sr__stored_suspension__unpack(NULL, v.mv_size, v.mv_data);
        if (x != NULL && x->until_ms > now_ms) {
            *out = x;
            rc = 0;
        } else if (x != NULL) {
            sr__stored_suspension__free_unpacked(x, NULL);
        }
    }
    mdb_txn_abort(txn);
    return rc;
}

size_t qaction_suspensions(struct queue_store *s, uint64_t now_ms,
                           void (*fn)(void *ud, const Sr__StoredSuspension *x),
                           void *ud)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    size_t n = 0;
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0)
        return 0;
    if (mdb_cursor_open(txn, s->dbi[DB_META], &cur) == 0) {
        MDB_val k = {5, "susp:"}, v;
        int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        while (rc == 0 && k.mv_size > 5 && memcmp(k.mv_data, "susp:", 5) == 0) {
            Sr__StoredSuspension *x =
                sr__stored_suspension__unpack(NULL, v.mv_size, v.mv_data);
            if (x != NULL && x->until_ms > now_ms) {
                fn(ud, x);
                n++;
            }
            if (x != NULL)
                sr__stored_suspension__free_unpacked(x, NULL);
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
    return n;
}
