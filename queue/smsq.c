/* smsq.c - SMS message ids, parts and receipts in the state (see smsq.h). */
#include "queue/smsq.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateways/smpp_pdu.h"
#include "node/errors.h"
#include "queue/dqueue.h"
#include "queue/store.h"
#include "queue/store_int.h"

int smsq_ids_ok(const Sr__DeliveryResult *r)
{
    if (r->smsc[0] == '\0' || strlen(r->smsc) > SMSQ_SMSC_MAX)
        return 0;
    for (size_t i = 0; i < r->n_sms_ids; i++)
        if (r->sms_ids[i][0] == '\0' || strlen(r->sms_ids[i]) > SMSQ_ID_MAX)
            return 0;
    return 1;
}

/* Callers bound smsc and id (SMSQ_SMSC_MAX, SMSQ_ID_MAX): k holds both. */
static size_t id_key(char *k, size_t cap, const char *prefix, const char *smsc,
                     const char *id)
{
    size_t n = (size_t)snprintf(k, cap, "%s%s", prefix, smsc) + 1;
    n += (size_t)snprintf(k + n, cap - n, "%s", id);
    return n;
}

static size_t parts_key(char *k, size_t cap, const char *code, unsigned i)
{
    size_t n = (size_t)snprintf(k, cap, "smsp:%s", code) + 1;
    n += (size_t)snprintf(k + n, cap - n, "%u", i);
    return n;
}

static bool final_state(unsigned st)
{
    return st == SMPP_DLR_DELIVERED || st == SMPP_DLR_EXPIRED ||
           st == SMPP_DLR_DELETED || st == SMPP_DLR_UNDELIVERABLE ||
           st == SMPP_DLR_REJECTED;
}

static const char *bounce_class(unsigned st)
{
    switch (st) {
    case SMPP_DLR_EXPIRED:
        return "message_expired";
    case SMPP_DLR_REJECTED:
        return "policy_block";
    default:
        return "other";
    }
}

/* Applies a receipt to part `part` of recipient i of m (m stored by the
 * caller when it returns 0). */
static int part_receipt(struct queue_store *s, MDB_txn *txn, uint64_t time_ms,
                        const char *code, Sr__StoredMessage *m, unsigned i,
                        unsigned part, unsigned state, const char *err,
                        const char *smsc, uint64_t node)
{
    char k[600];
    MDB_val key = {parts_key(k, sizeof k, code, i), k}, v;
    if (mdb_get(txn, s->dbi[DB_META], &key, &v) != 0 || part >= v.mv_size)
        return SR_EINVAL;
    uint8_t parts[256];
    size_t total = v.mv_size;
    memcpy(parts, v.mv_data, total);
    if (parts[part] != 0 || m->rcpts[i]->state != RCPT_SUBMITTED)
        return SR_EEXIST;
    char reply[300];
    snprintf(reply, sizeof reply, "part %u/%zu: %s (err %s)", part + 1, total,
             smpp_dlr_state_name((enum smpp_dlr_state)state),
             err[0] ? err : "none");
    Sr__Event e = SR__EVENT__INIT;
    e.code = (char *)code;
    e.rcpt = i;
    e.address = m->rcpts[i]->address;
    e.type = EVENT_SMS_RECEIPT;
    e.reply = reply;
    e.time_ms = time_ms;
    e.node = node;
    e.mx = (char *)smsc;
    e.customer = m->accept->customer;
    e.bounce_class = "";
    dqueue_event(s, txn, &e);
    if (!final_state(state))
        return 0; /* en route, accepted...: still awaiting */
    parts[part] = (uint8_t)state;
    store_put(txn, s->dbi[DB_META], k, key.mv_size, parts, total);
    unsigned bad = 0;
    for (size_t p = 0; p < total; p++) {
        if (parts[p] == 0)
            return 0; /* more to come */
        if (parts[p] != SMPP_DLR_DELIVERED && bad == 0)
            bad = parts[p];
    }
    Sr__StoredRcpt *rc = m->rcpts[i];
    dqueue_set_state(s, txn, code, m, i, bad ? RCPT_BOUNCED : RCPT_DELIVERED);
    rc->done_at_ms = time_ms;
    char final[300];
    if (bad)
        snprintf(final, sizeof final, "SMS not delivered: %s (%s)",
                 smpp_dlr_state_name((enum smpp_dlr_state)bad), reply);
    else
        snprintf(final, sizeof final, "SMS delivered: all %zu parts", total);
    if (rc->last_reply != protobuf_c_empty_string)
        free(rc->last_reply);
    rc->last_reply = strdup(final);
    if (rc->last_reply == NULL)
        store_die("apply", ENOMEM);
    e.type = bad ? DELIVERY_BOUNCED : DELIVERY_DELIVERED;
    e.reply = final;
    e.bounce_class = bad ? (char *)bounce_class(bad) : "";
    dqueue_event(s, txn, &e);
    return 0;
}

void smsq_submitted(struct queue_store *s, MDB_txn *txn, uint64_t time_ms,
                    const Sr__DeliveryResult *r, Sr__StoredMessage *m,
                    unsigned i)
{
    char k[600];
    uint8_t parts[256] = {0};
    size_t total = r->n_sms_ids;
    store_put(txn, s->dbi[DB_META], k, parts_key(k, sizeof k, r->code, i),
              parts, total);
    for (size_t p = 0; p < total; p++) {
        /* value: part (1 byte), rcpt (4 bytes BE), code */
        uint8_t val[300];
        size_t cl = strlen(r->code);
        if (cl > sizeof val - 5)
            continue;
        val[0] = (uint8_t)p;
        for (int b = 0; b < 4; b++)
            val[1 + b] = (uint8_t)(i >> (24 - 8 * b));
        memcpy(val + 5, r->code, cl);
        size_t kl = id_key(k, sizeof k, "smsid:", r->smsc, r->sms_ids[p]);
        store_put(txn, s->dbi[DB_META], k, kl, val, 5 + cl);
        /* a receipt that came first */
        kl = id_key(k, sizeof k, "smsorph:", r->smsc, r->sms_ids[p]);
        MDB_val key = {kl, k}, v;
        if (mdb_get(txn, s->dbi[DB_META], &key, &v) == 0 && v.mv_size >= 9) {
            uint8_t o[80];
            size_t ol = v.mv_size < sizeof o - 1 ? v.mv_size : sizeof o - 1;
            memcpy(o, v.mv_data, ol);
            o[ol] = 0;
            uint64_t node = 0;
            for (int b = 0; b < 8; b++)
                node = node << 8 | o[1 + b];
            int rc = mdb_del(txn, s->dbi[DB_META], &key, NULL);
            if (rc != 0)
                store_die("del", rc);
            part_receipt(s, txn, time_ms, r->code, m, i, (unsigned)p, o[0],
                         (const char *)o + 9, r->smsc, node);
        }
    }
}

int smsq_apply_receipt(struct queue_store *s, MDB_txn *txn, uint64_t time_ms,
                       const Sr__SmsReceipt *r)
{
    if (r->smsc[0] == '\0' || strlen(r->smsc) > SMSQ_SMSC_MAX ||
        r->id[0] == '\0' || strlen(r->id) > SMSQ_ID_MAX ||
        strlen(r->err) > 16 || r->state == 0 || r->state > 8)
        return SR_EINVAL;
    char k[600];
    MDB_val key = {id_key(k, sizeof k, "smsid:", r->smsc, r->id), k}, v;
    if (mdb_get(txn, s->dbi[DB_META], &key, &v) != 0) {
        /* not submitted yet (as far as the log knows): keep it */
        uint8_t o[1 + 8 + 17];
        o[0] = (uint8_t)r->state;
        for (int b = 0; b < 8; b++)
            o[1 + b] = (uint8_t)(r->node >> (56 - 8 * b));
        size_t el = strlen(r->err);
        memcpy(o + 9, r->err, el);
        size_t kl = id_key(k, sizeof k, "smsorph:", r->smsc, r->id);
        store_put(txn, s->dbi[DB_META], k, kl, o, 9 + el);
        return 0;
    }
    if (v.mv_size < 6 || v.mv_size > 300)
        store_die("stored SMS id undecodable", MDB_CORRUPTED);
    const uint8_t *val = v.mv_data;
    unsigned part = val[0];
    unsigned i = (unsigned)val[1] << 24 | (unsigned)val[2] << 16 |
                 (unsigned)val[3] << 8 | val[4];
    char code[300];
    memcpy(code, val + 5, v.mv_size - 5);
    code[v.mv_size - 5] = '\0';
    Sr__StoredMessage *m = store_load_msg(s, txn, code);
    if (m == NULL)
        return SR_EINVAL;
    int rc = SR_EINVAL;
    if (i < m->n_rcpts) {
        rc = part_receipt(s, txn, time_ms, code, m, i, part, r->state, r->err,
                          r->smsc, r->node);
        if (rc == 0)
            dqueue_put_message(s, txn, code, m);
    }
    sr__stored_message__free_unpacked(m, NULL);
    return rc;
}
