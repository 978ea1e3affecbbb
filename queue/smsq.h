/*
 * smsq.h - the SMS side of the replicated state: which SMSC message id
 * belongs to which part of which recipient, and the receipts.
 *
 * A recipient whose SMS parts an SMSC accepted gets a DeliveryResult
 * SUBMITTED carrying the SMSC's name and one normalised message id per
 * part (gateways/smpp_pdu.h smpp_pdu_id_normalize, so a hex id in the
 * submit_sm_resp and a decimal one in the receipt meet). Apply records
 * "smsid:" smsc NUL id -> (code, recipient, part) and "smsp:" code NUL
 * recipient -> one byte per part (0 = awaiting a final receipt, else its
 * final state). A receipt that arrives on any node's bind becomes an
 * SmsReceipt op: its part's state is set (an event "receipt" each), and
 * once every part has a final state the recipient is delivered (all
 * delivered) or bounced (any other final state), with its event. A
 * receipt for an id not known yet (the SMSC answered the receipt before
 * the submit_sm_resp was committed) waits under "smsorph:" and is applied
 * when the SUBMITTED result arrives. Receipts are idempotent.
 */
#ifndef SR_QUEUE_SMSQ_H
#define SR_QUEUE_SMSQ_H

#include <lmdb.h>
#include <stdint.h>

#include "proto/smartrelay.pb-c.h"

struct queue_store;

/* The longest SMSC name (the policy allows 32) and SMSC message id (SMPP's
 * C-Octet string of 65) that an op may carry: longer is a bad op. */
#define SMSQ_SMSC_MAX 32
#define SMSQ_ID_MAX 64

/* Whether a SUBMITTED result's SMSC name and ids fit (dqueue checks this
 * before it changes anything). */
int smsq_ids_ok(const Sr__DeliveryResult *r);

/* Inside dqueue_apply_result, for recipient i of m that just became
 * SUBMITTED (m is stored by the caller). */
void smsq_submitted(struct queue_store *s, MDB_txn *txn, uint64_t time_ms,
                    const Sr__DeliveryResult *r, Sr__StoredMessage *m,
                    unsigned i);

/* 0 applied (or kept for later), SR_EEXIST that part had its final state,
 * SR_EINVAL bad op. */
int smsq_apply_receipt(struct queue_store *s, MDB_txn *txn, uint64_t time_ms,
                       const Sr__SmsReceipt *r);

#endif
