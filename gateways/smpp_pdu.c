/* smpp_pdu.c - SMPP 3.4 PDUs over libsmpp34, made safe (see smpp_pdu.h). */
#include "gateways/smpp_pdu.h"

#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* libsmpp34's headers: smpp34_structs.h needs stdint.h before it. */
#include <smpp34.h>
#include <smpp34_structs.h>
#include <smpp34_params.h>

#include "node/errors.h"

/* ---- the one libsmpp34 thread -------------------------------------- */

static atomic_int lib_owner_state; /* 0 none, 1 being set, 2 set */
static pthread_t lib_owner;

/* libsmpp34 writes globals on every call: the first thread to use it here
 * owns it, and another one is a broken invariant. */
static void lib_enter(void)
{
    int expect = 0;
    if (atomic_compare_exchange_strong(&lib_owner_state, &expect, 1)) {
        lib_owner = pthread_self();
        atomic_store(&lib_owner_state, 2);
        return;
    }
    while (atomic_load(&lib_owner_state) != 2)
        ;
    assert(pthread_equal(lib_owner, pthread_self()) &&
           "libsmpp34 called from a second thread");
}

/* ---- header and framing --------------------------------------------- */

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

const char *smpp_pdu_name(uint32_t id)
{
    switch (id) {
    case SMPP_GENERIC_NACK:
        return "generic_nack";
    case SMPP_BIND_RECEIVER:
        return "bind_receiver";
    case SMPP_BIND_RECEIVER | SMPP_RESP:
        return "bind_receiver_resp";
    case SMPP_BIND_TRANSMITTER:
        return "bind_transmitter";
    case SMPP_BIND_TRANSMITTER | SMPP_RESP:
        return "bind_transmitter_resp";
    case SMPP_BIND_TRANSCEIVER:
        return "bind_transceiver";
    case SMPP_BIND_TRANSCEIVER | SMPP_RESP:
        return "bind_transceiver_resp";
    case SMPP_SUBMIT_SM:
        return "submit_sm";
    case SMPP_SUBMIT_SM | SMPP_RESP:
        return "submit_sm_resp";
    case SMPP_DELIVER_SM:
        return "deliver_sm";
    case SMPP_DELIVER_SM | SMPP_RESP:
        return "deliver_sm_resp";
    case SMPP_UNBIND:
        return "unbind";
    case SMPP_UNBIND | SMPP_RESP:
        return "unbind_resp";
    case SMPP_OUTBIND:
        return "outbind";
    case SMPP_ENQUIRE_LINK:
        return "enquire_link";
    case SMPP_ENQUIRE_LINK | SMPP_RESP:
        return "enquire_link_resp";
    case SMPP_DATA_SM:
        return "data_sm";
    case SMPP_DATA_SM | SMPP_RESP:
        return "data_sm_resp";
    default:
        return "unknown";
    }
}

int smpp_pdu_header(const uint8_t *buf, size_t len, uint32_t max_len,
                    struct smpp_hdr *h, uint32_t *nack, char *err,
                    size_t errlen)
{
    uint32_t unused;
    if (nack == NULL)
        nack = &unused;
    *nack = SMPP_ROK;
    memset(h, 0, sizeof *h);
    if (len < SMPP_HEADER_LEN)
        return sr_err(err, errlen, SR_EINVAL,
                      "an SMPP header is 16 bytes, got %zu", len);
    h->length = rd32(buf);
    h->id = rd32(buf + 4);
    h->status = rd32(buf + 8);
    h->seq = rd32(buf + 12);
    uint32_t max = max_len != 0 ? max_len : SMPP_PDU_MAX_DEFAULT;
    if (max < SMPP_HEADER_LEN)
        max = SMPP_HEADER_LEN;
    if (max > SMPP_PDU_MAX_LIMIT)
        max = SMPP_PDU_MAX_LIMIT;
    if (h->length < SMPP_HEADER_LEN || h->length > max) {
        *nack = SMPP_RINVCMDLEN;
        return sr_err(err, errlen, SR_EPARSE,
                      "command_length %" PRIu32 " not in [16, %" PRIu32 "]",
                      h->length, max);
    }
    if (strcmp(smpp_pdu_name(h->id), "unknown") == 0) {
        *nack = SMPP_RINVCMDID;
        return sr_err(err, errlen, SR_EPARSE, "unknown command_id 0x%08" PRIx32,
                      h->id);
    }
    return 0;
}

int smpp_pdu_frame(const uint8_t *buf, size_t len, uint32_t max_len,
                   struct smpp_hdr *h, uint32_t *nack, char *err, size_t errlen)
{
    if (nack != NULL)
        *nack = SMPP_ROK;
    if (len < SMPP_HEADER_LEN) {
        memset(h, 0, sizeof *h);
        return SMPP_FRAME_MORE;
    }
    int rc = smpp_pdu_header(buf, len, max_len, h, nack, err, errlen);
    if (rc < 0)
        return rc;
    return len < h->length ? SMPP_FRAME_MORE : SMPP_FRAME_PDU;
}

/* ---- the body walk: everything libsmpp34 would trip on -------------- */

/* Which tag table libsmpp34 decodes TLVs with (def_frame/ *.tlv). */
enum tlv_table {
    TLV_SUBMIT,
    TLV_DELIVER,
    TLV_DATA,
    TLV_BIND_RESP,
};

/* The size libsmpp34 reads a fixed-size TLV at (1, 2 or 4), or 0 when it
 * reads the value as octets of the TLV's own length. */
static unsigned tlv_fixed(enum tlv_table t, uint16_t tag)
{
    static const uint16_t submit1[] = {
        TLVID_source_addr_subunit,   TLVID_dest_addr_subunit,
        TLVID_sar_total_segments,    TLVID_sar_segment_seqnum,
        TLVID_more_messages_to_send, TLVID_payload_type,
        TLVID_privacy_indicator,     TLVID_callback_num_pres_ind,
        TLVID_user_response_code,    TLVID_display_time,
        TLVID_ms_validity,           TLVID_ms_msg_wait_facilities,
        TLVID_number_of_messages,    TLVID_language_indicator,
        TLVID_its_reply_type,        0};
    static const uint16_t submit2[] = {TLVID_user_message_reference,
                                       TLVID_source_port,
                                       TLVID_destination_port,
                                       TLVID_sar_msg_ref_num,
                                       TLVID_sms_signal,
                                       TLVID_its_session_info,
                                       0};
    static const uint16_t deliver1[] = {
        TLVID_sar_total_segments,  TLVID_sar_segment_seqnum,
        TLVID_user_response_code,  TLVID_privacy_indicator,
        TLVID_payload_type,        TLVID_language_indicator,
        TLVID_message_state,       TLVID_set_dpf,
        TLVID_source_network_type, 0};
    static const uint16_t deliver2[] = {
        TLVID_user_message_reference, TLVID_source_port,
        TLVID_destination_port,       TLVID_sar_msg_ref_num,
        TLVID_its_session_info,       0};
    static const uint16_t data1[] = {TLVID_source_addr_subunit,
                                     TLVID_source_network_type,
                                     TLVID_source_bearer_type,
                                     TLVID_source_telematics_id,
                                     TLVID_dest_addr_subunit,
                                     TLVID_dest_network_type,
                                     TLVID_dest_bearer_type,
                                     TLVID_sar_total_segments,
                                     TLVID_sar_segment_seqnum,
                                     TLVID_more_messages_to_send,
                                     TLVID_payload_type,
                                     TLVID_set_dpf,
                                     TLVID_message_state,
                                     TLVID_privacy_indicator,
                                     TLVID_callback_num_pres_ind,
                                     TLVID_user_response_code,
                                     TLVID_display_time,
                                     TLVID_ms_validity,
                                     TLVID_ms_msg_wait_facilities,
                                     TLVID_number_of_messages,
                                     TLVID_language_indicator,
                                     TLVID_its_reply_type,
                                     0};
    static const uint16_t data2[] = {TLVID_source_port,
                                     TLVID_destination_port,
                                     TLVID_dest_telematics_id,
                                     TLVID_sar_msg_ref_num,
                                     TLVID_user_message_reference,
                                     TLVID_sms_signal,
                                     TLVID_its_session_info,
                                     0};
    static const uint16_t bind1[] = {TLVID_sc_interface_version, 0};
    static const uint16_t none[] = {0};
    const uint16_t *one = none, *two = none;
    switch (t) {
    case TLV_SUBMIT:
        one = submit1, two = submit2;
        break;
    case TLV_DELIVER:
        one = deliver1, two = deliver2;
        break;
    case TLV_DATA:
        one = data1, two = data2;
        if (tag == TLVID_qos_time_to_live)
            return 4;
        break;
    case TLV_BIND_RESP:
        one = bind1;
        break;
    }
    for (size_t i = 0; one[i] != 0; i++)
        if (one[i] == tag)
            return 1;
    for (size_t i = 0; two[i] != 0; i++)
        if (two[i] == tag)
            return 2;
    return 0;
}

/* The most octets libsmpp34 accepts in a variable-size TLV. */
static unsigned tlv_octet_max(enum tlv_table t, uint16_t tag)
{
    switch (tag) {
    case TLVID_callback_num:
        return t == TLV_BIND_RESP ? 1024 : 19;
    case TLVID_callback_num_atag:
        return t == TLV_SUBMIT || t == TLV_DATA ? 65 : 1024;
    case TLVID_source_subaddress:
    case TLVID_dest_subaddress:
        return t == TLV_BIND_RESP ? 1024 : 23;
    case TLVID_alert_on_message_delivery:
        return t == TLV_SUBMIT || t == TLV_DATA ? 0 : 1024;
    case TLVID_ussd_service_op:
        return t == TLV_SUBMIT ? 1 : 1024;
    case TLVID_network_error_code:
        return t == TLV_DELIVER || t == TLV_DATA ? 3 : 1024;
    case TLVID_receipted_message_id:
        return t == TLV_DELIVER || t == TLV_DATA ? 65 : 1024;
    default:
        return 1024;
    }
}

/* libsmpp34's TON and NPI lists (def_list/addr_*.list). */
static bool lib_ton_ok(uint8_t v)
{
    return v <= 6;
}

static bool lib_npi_ok(uint8_t v)
{
    return v == 0 || v == 1 || v == 3 || v == 4 || v == 6 || v == 8 || v == 9 ||
           v == 10 || v == 14 || v == 18;
}

struct walk {
    const uint8_t *b;
    size_t len, off;
    size_t ton_off[2]; /* source and dest TON (NPI follows each) */
    unsigned nton;
    unsigned ntlv;
    int sm_length; /* -1: the PDU has no short_message */
    uint32_t *nack;
    char *err;
    size_t errlen;
};

static int walk_fail(struct walk *w, uint32_t nack, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int walk_fail(struct walk *w, uint32_t nack, const char *fmt, ...)
{
    *w->nack = nack;
    if (w->err != NULL && w->errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->err, w->errlen, fmt, ap);
        va_end(ap);
    }
    return SR_EPARSE;
}

/* A C-Octet string of at most size bytes with its NUL (SMPP 3.4 3.1). */
static int walk_str(struct walk *w, size_t size, const char *name)
{
    size_t room = w->len - w->off;
    size_t lim = room < size ? room : size;
    const uint8_t *z = memchr(w->b + w->off, 0, lim);
    if (z == NULL)
        return walk_fail(w, SMPP_RINVCMDLEN,
                         room < size ? "%s: no NUL before the end of the PDU"
                                     : "%s: longer than %zu bytes",
                         name, size - 1);
    w->off = (size_t)(z - w->b) + 1;
    return 0;
}

static int walk_u8(struct walk *w, const char *name)
{
    if (w->off >= w->len)
        return walk_fail(w, SMPP_RINVCMDLEN, "%s: the PDU ends first", name);
    w->off++;
    return 0;
}

/* TON then NPI, remembered for the neutral copy. */
static int walk_addr_type(struct walk *w, const char *name)
{
    if (w->len - w->off < 2)
        return walk_fail(w, SMPP_RINVCMDLEN, "%s: the PDU ends first", name);
    w->ton_off[w->nton++] = w->off;
    w->off += 2;
    return 0;
}

static int walk_sm(struct walk *w)
{
    if (w->off >= w->len)
        return walk_fail(w, SMPP_RINVCMDLEN, "sm_length: the PDU ends first");
    uint8_t n = w->b[w->off++];
    if (n > 254)
        return walk_fail(w, SMPP_RINVMSGLEN, "sm_length %u over 254", n);
    if (w->len - w->off < n)
        return walk_fail(w, SMPP_RINVMSGLEN,
                         "short_message of %u bytes runs past the end", n);
    w->off += n;
    w->sm_length = n;
    return 0;
}

/* SMPP 3.4 3.2.4: tag, length, value, up to the end of the PDU. */
static int walk_tlvs(struct walk *w, enum tlv_table t)
{
    while (w->off < w->len) {
        if (w->ntlv == SMPP_PDU_MAX_TLVS)
            return walk_fail(w, SMPP_RINVOPTPARSTREAM, "more than %d TLVs",
                             SMPP_PDU_MAX_TLVS);
        if (w->len - w->off < 4)
            return walk_fail(w, SMPP_RINVOPTPARSTREAM,
                             "truncated TLV header at byte %zu", w->off);
        uint16_t tag = rd16(w->b + w->off);
        uint16_t vlen = rd16(w->b + w->off + 2);
        w->off += 4;
        if (w->len - w->off < vlen)
            return walk_fail(w, SMPP_RINVOPTPARSTREAM,
                             "TLV 0x%04x of %u bytes runs past the end", tag,
                             vlen);
        unsigned fixed = tlv_fixed(t, tag);
        if (fixed != 0 && vlen != fixed)
            return walk_fail(w, SMPP_RINVPARLEN,
                             "TLV 0x%04x has length %u, not %u", tag, vlen,
                             fixed);
        if (fixed == 0 && vlen > tlv_octet_max(t, tag))
            return walk_fail(w, SMPP_RINVPARLEN,
                             "TLV 0x%04x has length %u, over %u", tag, vlen,
                             tlv_octet_max(t, tag));
        w->off += vlen;
        w->ntlv++;
    }
    return 0;
}

/* submit_sm and deliver_sm (SMPP 3.4 4.4.1, 4.6.1). */
static int walk_sm_pdu(struct walk *w, bool submit)
{
    size_t tsize = submit ? 17 : 1;
    int rc;
    if ((rc = walk_str(w, 6, "service_type")) < 0 ||
        (rc = walk_addr_type(w, "source_addr_ton")) < 0 ||
        (rc = walk_str(w, 21, "source_addr")) < 0 ||
        (rc = walk_addr_type(w, "dest_addr_ton")) < 0 ||
        (rc = walk_str(w, 21, "destination_addr")) < 0 ||
        (rc = walk_u8(w, "esm_class")) < 0 ||
        (rc = walk_u8(w, "protocol_id")) < 0 ||
        (rc = walk_u8(w, "priority_flag")) < 0 ||
        (rc = walk_str(w, tsize, "schedule_delivery_time")) < 0 ||
        (rc = walk_str(w, tsize, "validity_period")) < 0 ||
        (rc = walk_u8(w, "registered_delivery")) < 0 ||
        (rc = walk_u8(w, "replace_if_present_flag")) < 0 ||
        (rc = walk_u8(w, "data_coding")) < 0 ||
        (rc = walk_u8(w, "sm_default_msg_id")) < 0 || (rc = walk_sm(w)) < 0)
        return rc;
    return walk_tlvs(w, submit ? TLV_SUBMIT : TLV_DELIVER);
}

/* data_sm (SMPP 3.4 4.7.1). */
static int walk_data_sm(struct walk *w)
{
    int rc;
    if ((rc = walk_str(w, 6, "service_type")) < 0 ||
        (rc = walk_addr_type(w, "source_addr_ton")) < 0 ||
        (rc = walk_str(w, 21, "source_addr")) < 0 ||
        (rc = walk_addr_type(w, "dest_addr_ton")) < 0 ||
        (rc = walk_str(w, 65, "destination_addr")) < 0 ||
        (rc = walk_u8(w, "esm_class")) < 0 ||
        (rc = walk_u8(w, "registered_delivery")) < 0 ||
        (rc = walk_u8(w, "data_coding")) < 0)
        return rc;
    return walk_tlvs(w, TLV_DATA);
}

/* Nothing may follow the last mandatory field of a PDU without TLVs. */
static int walk_end(struct walk *w)
{
    if (w->off != w->len)
        return walk_fail(w, SMPP_RINVCMDLEN, "%zu bytes after the body",
                         w->len - w->off);
    return 0;
}

/* ---- unpacking ------------------------------------------------------- */

/* Copies a string libsmpp34 decoded (NUL within src_size) into dst. */
static void copy_str(char *dst, size_t dst_size, const void *src,
                     size_t src_size)
{
    size_t n = strnlen((const char *)src, src_size);
    if (n >= dst_size)
        n = dst_size - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* The TLVs we read, from libsmpp34's list. It prepends each TLV as it
 * reads, so the list runs backwards and the last one written here is the
 * first in the PDU. Returns how many there were. */
static unsigned take_tlvs(struct smpp_pdu *out, tlv_t *list, bool use_payload)
{
    unsigned n = 0;
    tlv_t *t;
    smpp34_tlv_for_each(t, list)
    {
        n++;
        switch (t->tag) {
        case TLVID_receipted_message_id:
            out->has_receipted_message_id = true;
            copy_str(out->receipted_message_id,
                     sizeof out->receipted_message_id, t->value.octet,
                     t->length);
            break;
        case TLVID_message_state:
            out->has_message_state = true;
            out->message_state = t->value.val08;
            break;
        case TLVID_sar_msg_ref_num:
            out->has_sar = true;
            out->sar_msg_ref_num = t->value.val16;
            break;
        case TLVID_sar_total_segments:
            out->has_sar = true;
            out->sar_total_segments = t->value.val08;
            break;
        case TLVID_sar_segment_seqnum:
            out->has_sar = true;
            out->sar_segment_seqnum = t->value.val08;
            break;
        case TLVID_network_error_code:
            out->has_network_error_code = true;
            memcpy(out->network_error_code, t->value.octet, 3);
            break;
        case TLVID_sc_interface_version:
            out->has_sc_interface_version = true;
            out->sc_interface_version = t->value.val08;
            break;
        case TLVID_message_payload:
            if (use_payload && t->length <= sizeof out->message) {
                memcpy(out->message, t->value.octet, t->length);
                out->message_len = t->length;
                out->message_from_payload = true;
            }
            break;
        default:
            break;
        }
    }
    return n;
}

/* The decoded fields of a submit_sm or deliver_sm (same layout but the
 * two time fields). */
#define TAKE_SM_FIELDS(out, t)                                                 \
    do {                                                                       \
        copy_str((out)->service_type, sizeof(out)->service_type,               \
                 (t).service_type, sizeof(t).service_type);                    \
        copy_str((out)->source_addr, sizeof(out)->source_addr,                 \
                 (t).source_addr, sizeof(t).source_addr);                      \
        copy_str((out)->dest_addr, sizeof(out)->dest_addr,                     \
                 (t).destination_addr, sizeof(t).destination_addr);            \
        (out)->esm_class = (t).esm_class;                                      \
        (out)->protocol_id = (t).protocol_id;                                  \
        (out)->priority_flag = (t).priority_flag;                              \
        (out)->registered_delivery = (t).registered_delivery;                  \
        (out)->data_coding = (t).data_coding;                                  \
        memcpy((out)->message, (t).short_message, (t).sm_length);              \
        (out)->message_len = (t).sm_length;                                    \
    } while (0)

int smpp_pdu_unpack(const uint8_t *buf, size_t len, uint32_t max_len,
                    struct smpp_pdu *out, uint32_t *nack, char *err,
                    size_t errlen)
{
    uint32_t unused;
    if (nack == NULL)
        nack = &unused;
    memset(out, 0, sizeof *out);
    int rc = smpp_pdu_header(buf, len, max_len, &out->hdr, nack, err, errlen);
    if (rc < 0)
        return rc;
    struct smpp_hdr *h = &out->hdr;
    const char *name = smpp_pdu_name(h->id);
    if (h->length != len) {
        *nack = SMPP_RINVCMDLEN;
        return sr_err(err, errlen, SR_EINVAL,
                      "%s: command_length %" PRIu32 " but %zu bytes given",
                      name, h->length, len);
    }
    /* A response that reports an error: its body (if any) is not read. */
    if ((h->id & SMPP_RESP) != 0 && h->status != SMPP_ROK)
        return 0;

    struct walk w = {.b = buf,
                     .len = len,
                     .off = SMPP_HEADER_LEN,
                     .sm_length = -1,
                     .nack = nack,
                     .err = err,
                     .errlen = errlen};
    switch (h->id) {
    case SMPP_ENQUIRE_LINK:
    case SMPP_ENQUIRE_LINK | SMPP_RESP:
    case SMPP_UNBIND:
    case SMPP_UNBIND | SMPP_RESP:
    case SMPP_GENERIC_NACK:
        /* No body; nothing for libsmpp34 to do. */
        if (len != SMPP_HEADER_LEN) {
            *nack = SMPP_RINVCMDLEN;
            return sr_err(err, errlen, SR_EPARSE, "%s with a body of %zu bytes",
                          name, len - SMPP_HEADER_LEN);
        }
        return 0;
    case SMPP_BIND_TRANSMITTER | SMPP_RESP:
    case SMPP_BIND_RECEIVER | SMPP_RESP:
    case SMPP_BIND_TRANSCEIVER | SMPP_RESP:
        rc = walk_str(&w, 16, "system_id");
        if (rc == 0)
            rc = walk_tlvs(&w, TLV_BIND_RESP);
        break;
    case SMPP_SUBMIT_SM | SMPP_RESP:
        rc = walk_str(&w, SMPP_ID_SIZE, "message_id");
        if (rc == 0)
            rc = walk_end(&w);
        break;
    case SMPP_OUTBIND:
        rc = walk_str(&w, 16, "system_id");
        if (rc == 0)
            rc = walk_str(&w, 9, "password");
        if (rc == 0)
            rc = walk_end(&w);
        break;
    case SMPP_SUBMIT_SM:
    case SMPP_DELIVER_SM:
        rc = walk_sm_pdu(&w, h->id == SMPP_SUBMIT_SM);
        break;
    case SMPP_DATA_SM:
        rc = walk_data_sm(&w);
        break;
    default:
        /* Bind requests, deliver_sm_resp, data_sm_resp: an ESME does not
         * read their bodies. */
        return 0;
    }
    if (rc < 0) {
        if (err != NULL && errlen > 0) {
            char tmp[SR_ERRMSG_SIZE];
            snprintf(tmp, sizeof tmp, "%s: %s", name, err);
            snprintf(err, errlen, "%s", tmp);
        }
        return rc;
    }

    /* libsmpp34 reads a copy where what it refuses against the spec is
     * neutral: status (meaningless in requests), sequence number 0, TON and
     * NPI values it does not list. The real values are reported. */
    uint8_t *copy = malloc(len);
    if (copy == NULL) {
        *nack = SMPP_RSYSERR;
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    }
    memcpy(copy, buf, len);
    wr32(copy + 8, 0);
    if (h->seq == 0)
        wr32(copy + 12, 1);
    for (unsigned i = 0; i < w.nton; i++) {
        size_t o = w.ton_off[i];
        if (!lib_ton_ok(copy[o]))
            copy[o] = 0;
        if (!lib_npi_ok(copy[o + 1]))
            copy[o + 1] = 0;
    }
    if (w.nton == 2) {
        out->source_ton = buf[w.ton_off[0]];
        out->source_npi = buf[w.ton_off[0] + 1];
        out->dest_ton = buf[w.ton_off[1]];
        out->dest_npi = buf[w.ton_off[1] + 1];
    }

    lib_enter();
    int lrc = -1;
    unsigned ntlv = 0;
    int sm_length = -1;
    switch (h->id) {
    case SMPP_BIND_TRANSMITTER | SMPP_RESP:
    case SMPP_BIND_RECEIVER | SMPP_RESP:
    case SMPP_BIND_TRANSCEIVER | SMPP_RESP: {
        /* The three bind_*_resp structs have the same layout; libsmpp34
         * decodes by the type we pass, and the struct matches it. */
        union {
            bind_transmitter_resp_t tx;
            bind_receiver_resp_t rx;
            bind_transceiver_resp_t trx;
        } u;
        memset(&u, 0, sizeof u);
        lrc = smpp34_unpack(h->id, &u, copy, (int)len);
        if (lrc == 0) {
            copy_str(out->system_id, sizeof out->system_id, u.tx.system_id,
                     sizeof u.tx.system_id);
            ntlv = take_tlvs(out, u.tx.tlv, false);
        }
        destroy_tlv(u.tx.tlv);
        break;
    }
    case SMPP_SUBMIT_SM | SMPP_RESP: {
        submit_sm_resp_t t;
        memset(&t, 0, sizeof t);
        lrc = smpp34_unpack(h->id, &t, copy, (int)len);
        if (lrc == 0)
            copy_str(out->message_id, sizeof out->message_id, t.message_id,
                     sizeof t.message_id);
        break;
    }
    case SMPP_OUTBIND: {
        outbind_t t;
        memset(&t, 0, sizeof t);
        lrc = smpp34_unpack(h->id, &t, copy, (int)len);
        if (lrc == 0) {
            copy_str(out->system_id, sizeof out->system_id, t.system_id,
                     sizeof t.system_id);
            copy_str(out->password, sizeof out->password, t.password,
                     sizeof t.password);
        }
        break;
    }
    case SMPP_SUBMIT_SM: {
        submit_sm_t t;
        memset(&t, 0, sizeof t);
        lrc = smpp34_unpack(h->id, &t, copy, (int)len);
        if (lrc == 0) {
            TAKE_SM_FIELDS(out, t);
            copy_str(out->schedule_delivery_time,
                     sizeof out->schedule_delivery_time,
                     t.schedule_delivery_time, sizeof t.schedule_delivery_time);
            copy_str(out->validity_period, sizeof out->validity_period,
                     t.validity_period, sizeof t.validity_period);
            sm_length = t.sm_length;
            ntlv = take_tlvs(out, t.tlv, t.sm_length == 0);
        }
        destroy_tlv(t.tlv);
        break;
    }
    case SMPP_DELIVER_SM: {
        deliver_sm_t t;
        memset(&t, 0, sizeof t);
        lrc = smpp34_unpack(h->id, &t, copy, (int)len);
        if (lrc == 0) {
            TAKE_SM_FIELDS(out, t);
            sm_length = t.sm_length;
            ntlv = take_tlvs(out, t.tlv, t.sm_length == 0);
        }
        destroy_tlv(t.tlv);
        break;
    }
    case SMPP_DATA_SM: {
        data_sm_t t;
        memset(&t, 0, sizeof t);
        lrc = smpp34_unpack(h->id, &t, copy, (int)len);
        if (lrc == 0) {
            copy_str(out->service_type, sizeof out->service_type,
                     t.service_type, sizeof t.service_type);
            copy_str(out->source_addr, sizeof out->source_addr, t.source_addr,
                     sizeof t.source_addr);
            copy_str(out->dest_addr, sizeof out->dest_addr, t.destination_addr,
                     sizeof t.destination_addr);
            out->esm_class = t.esm_class;
            out->registered_delivery = t.registered_delivery;
            out->data_coding = t.data_coding;
            ntlv = take_tlvs(out, t.tlv, true);
        }
        destroy_tlv(t.tlv);
        break;
    }
    default:
        break;
    }
    free(copy);
    if (lrc != 0) {
        *nack = SMPP_RSYSERR;
        return sr_err(err, errlen, SR_EPARSE, "%s: libsmpp34 refused the body",
                      name);
    }
    /* Our walk and libsmpp34 must have seen the same PDU. */
    if (ntlv != w.ntlv || sm_length != w.sm_length) {
        *nack = SMPP_RSYSERR;
        return sr_err(err, errlen, SR_EPARSE,
                      "%s: libsmpp34 read %u TLVs and sm_length %d, we read "
                      "%u and %d",
                      name, ntlv, sm_length, w.ntlv, w.sm_length);
    }
    out->ntlv = ntlv;
    out->body = true;
    return 0;
}

/* ---- packing ---------------------------------------------------------- */

/* Copies s (NULL = "") into a libsmpp34 field of `size` bytes with its NUL;
 * longer is an error, never a cut. */
static int put_str(uint8_t *field, size_t size, const char *s, const char *name,
                   char *err, size_t errlen)
{
    if (s == NULL)
        s = "";
    size_t n = strlen(s);
    if (n + 1 > size)
        return sr_err(err, errlen, SR_EINVAL, "%s: longer than %zu bytes", name,
                      size - 1);
    memcpy(field, s, n + 1);
    return 0;
}

static int check_seq(uint32_t seq, char *err, size_t errlen)
{
    if (seq == 0 || seq > 0x7FFFFFFFu)
        return sr_err(err, errlen, SR_EINVAL,
                      "sequence number %" PRIu32 " not in 1..0x7fffffff", seq);
    return 0;
}

static int check_addr_type(uint8_t ton, uint8_t npi, const char *name,
                           char *err, size_t errlen)
{
    if (!lib_ton_ok(ton) || !lib_npi_ok(npi))
        return sr_err(err, errlen, SR_EINVAL, "%s: TON %u / NPI %u unknown",
                      name, ton, npi);
    return 0;
}

/* Runs libsmpp34's pack into a scratch buffer (it wants one byte more than
 * it writes) and copies the PDU out. */
static int lib_pack(uint32_t type, void *t, uint8_t *out, size_t cap,
                    size_t *len, char *err, size_t errlen)
{
    uint8_t scratch[SMPP_PACK_MAX + 16];
    int n = 0;
    lib_enter();
    if (smpp34_pack(type, scratch, (int)sizeof scratch, &n, t) != 0 || n < 16)
        return sr_err(err, errlen, SR_EINVAL, "libsmpp34 could not pack %s",
                      smpp_pdu_name(type));
    if ((size_t)n > cap)
        return sr_err(err, errlen, SR_EINVAL,
                      "%s needs %d bytes, the buffer has %zu",
                      smpp_pdu_name(type), n, cap);
    memcpy(out, scratch, (size_t)n);
    *len = (size_t)n;
    return 0;
}

int smpp_pdu_pack_bind(uint32_t cmd, uint32_t seq, const struct smpp_bind *b,
                       uint8_t *out, size_t cap, size_t *len, char *err,
                       size_t errlen)
{
    *len = 0;
    if (cmd != SMPP_BIND_TRANSMITTER && cmd != SMPP_BIND_RECEIVER &&
        cmd != SMPP_BIND_TRANSCEIVER)
        return sr_err(err, errlen, SR_EINVAL, "0x%08" PRIx32 " is not a bind",
                      cmd);
    int rc = check_seq(seq, err, errlen);
    if (rc < 0)
        return rc;
    if ((rc = check_addr_type(b->addr_ton, b->addr_npi, "address_range", err,
                              errlen)) < 0)
        return rc;
    /* The three bind structs have the same layout (def_frame/bind_*). */
    union {
        bind_transmitter_t tx;
        bind_receiver_t rx;
        bind_transceiver_t trx;
    } u;
    memset(&u, 0, sizeof u);
    bind_transmitter_t *t = &u.tx;
    t->command_id = cmd;
    t->command_status = SMPP_ROK;
    t->sequence_number = seq;
    if ((rc = put_str(t->system_id, sizeof t->system_id, b->system_id,
                      "system_id", err, errlen)) < 0 ||
        (rc = put_str(t->password, sizeof t->password, b->password, "password",
                      err, errlen)) < 0 ||
        (rc = put_str(t->system_type, sizeof t->system_type, b->system_type,
                      "system_type", err, errlen)) < 0 ||
        (rc = put_str(t->address_range, sizeof t->address_range,
                      b->address_range, "address_range", err, errlen)) < 0)
        return rc;
    t->interface_version = SMPP_VERSION;
    t->addr_ton = b->addr_ton;
    t->addr_npi = b->addr_npi;
    return lib_pack(cmd, &u, out, cap, len, err, errlen);
}

int smpp_pdu_pack_header(uint32_t cmd, uint32_t status, uint32_t seq,
                         uint8_t *out, size_t cap, size_t *len, char *err,
                         size_t errlen)
{
    *len = 0;
    switch (cmd) {
    case SMPP_ENQUIRE_LINK:
    case SMPP_UNBIND:
        if (status != SMPP_ROK)
            return sr_err(err, errlen, SR_EINVAL, "%s: a request has status 0",
                          smpp_pdu_name(cmd));
        if (check_seq(seq, err, errlen) < 0)
            return SR_EINVAL;
        break;
    case SMPP_ENQUIRE_LINK | SMPP_RESP:
    case SMPP_UNBIND | SMPP_RESP:
    case SMPP_GENERIC_NACK:
        /* A response echoes the request's number, whatever it was. */
        break;
    default:
        return sr_err(err, errlen, SR_EINVAL,
                      "0x%08" PRIx32 " is not a body-less PDU", cmd);
    }
    if (cap < SMPP_HEADER_LEN)
        return sr_err(err, errlen, SR_EINVAL, "buffer of %zu bytes", cap);
    wr32(out, SMPP_HEADER_LEN);
    wr32(out + 4, cmd);
    wr32(out + 8, status);
    wr32(out + 12, seq);
    *len = SMPP_HEADER_LEN;
    return 0;
}

int smpp_pdu_pack_deliver_sm_resp(uint32_t seq, uint32_t status, uint8_t *out,
                                  size_t cap, size_t *len, char *err,
                                  size_t errlen)
{
    *len = 0;
    if (cap < SMPP_HEADER_LEN + 1)
        return sr_err(err, errlen, SR_EINVAL, "buffer of %zu bytes", cap);
    wr32(out, SMPP_HEADER_LEN + 1);
    wr32(out + 4, SMPP_DELIVER_SM | SMPP_RESP);
    wr32(out + 8, status);
    wr32(out + 12, seq);
    out[16] = 0; /* message_id: unused, NULL */
    *len = SMPP_HEADER_LEN + 1;
    return 0;
}

/* Fills the TLVs of a short message into tl[] (chained); returns the head. */
static tlv_t *sm_tlvs(const struct smpp_sm *m, bool deliver, tlv_t tl[6])
{
    size_t k = 0;
    memset(tl, 0, 6 * sizeof *tl);
    if (m->message_len > SMPP_SM_MAX) {
        tl[k].tag = TLVID_message_payload;
        tl[k].length = (uint16_t)m->message_len;
        memcpy(tl[k].value.octet, m->message, m->message_len);
        k++;
    }
    if (m->sar) {
        tl[k].tag = TLVID_sar_msg_ref_num;
        tl[k].length = 2;
        tl[k].value.val16 = m->sar_msg_ref_num;
        k++;
        tl[k].tag = TLVID_sar_total_segments;
        tl[k].length = 1;
        tl[k].value.val08 = m->sar_total_segments;
        k++;
        tl[k].tag = TLVID_sar_segment_seqnum;
        tl[k].length = 1;
        tl[k].value.val08 = m->sar_segment_seqnum;
        k++;
    }
    if (deliver && m->receipted_message_id != NULL) {
        size_t n = strlen(m->receipted_message_id);
        tl[k].tag = TLVID_receipted_message_id;
        tl[k].length = (uint16_t)(n + 1); /* a C-Octet string */
        memcpy(tl[k].value.octet, m->receipted_message_id, n + 1);
        k++;
    }
    if (deliver && m->message_state != 0) {
        tl[k].tag = TLVID_message_state;
        tl[k].length = 1;
        tl[k].value.val08 = m->message_state;
        k++;
    }
    for (size_t i = 0; i + 1 < k; i++)
        tl[i].next = &tl[i + 1];
    return k > 0 ? &tl[0] : NULL;
}

static int check_sm(const struct smpp_sm *m, bool deliver, char *err,
                    size_t errlen)
{
    int rc;
    if ((rc = check_addr_type(m->source_ton, m->source_npi, "source_addr", err,
                              errlen)) < 0 ||
        (rc = check_addr_type(m->dest_ton, m->dest_npi, "destination_addr", err,
                              errlen)) < 0)
        return rc;
    if (m->message_len > SMPP_PAYLOAD_MAX)
        return sr_err(err, errlen, SR_EINVAL, "message of %zu bytes, over %d",
                      m->message_len, SMPP_PAYLOAD_MAX);
    if (m->message_len > 0 && m->message == NULL)
        return sr_err(err, errlen, SR_EINVAL, "message is NULL");
    if (m->sar && (m->sar_total_segments == 0 || m->sar_segment_seqnum == 0 ||
                   m->sar_segment_seqnum > m->sar_total_segments))
        return sr_err(err, errlen, SR_EINVAL, "sar segment %u of %u",
                      m->sar_segment_seqnum, m->sar_total_segments);
    if (deliver && m->receipted_message_id != NULL &&
        strlen(m->receipted_message_id) >= SMPP_ID_SIZE)
        return sr_err(err, errlen, SR_EINVAL,
                      "receipted_message_id: longer than %d bytes",
                      SMPP_ID_SIZE - 1);
    if (deliver && m->validity_period != NULL && m->validity_period[0])
        return sr_err(err, errlen, SR_EINVAL,
                      "deliver_sm has no validity_period");
    return 0;
}

/* submit_sm and deliver_sm share their layout but the two time fields, so
 * one macro fills either struct. */
#define FILL_SM(t, m, rc, err, errlen)                                         \
    do {                                                                       \
        if ((rc = put_str((t).service_type, sizeof(t).service_type,            \
                          (m)->service_type, "service_type", err, errlen)) <   \
                0 ||                                                           \
            (rc = put_str((t).source_addr, sizeof(t).source_addr,              \
                          (m)->source_addr, "source_addr", err, errlen)) <     \
                0 ||                                                           \
            (rc = put_str((t).destination_addr, sizeof(t).destination_addr,    \
                          (m)->dest_addr, "destination_addr", err, errlen)) <  \
                0)                                                             \
            break;                                                             \
        (t).source_addr_ton = (m)->source_ton;                                 \
        (t).source_addr_npi = (m)->source_npi;                                 \
        (t).dest_addr_ton = (m)->dest_ton;                                     \
        (t).dest_addr_npi = (m)->dest_npi;                                     \
        (t).esm_class = (m)->esm_class;                                        \
        (t).protocol_id = (m)->protocol_id;                                    \
        (t).priority_flag = (m)->priority_flag;                                \
        (t).registered_delivery = (m)->no_receipt ? 0 : 1;                     \
        (t).data_coding = (m)->data_coding;                                    \
        if ((m)->message_len <= SMPP_SM_MAX) {                                 \
            (t).sm_length = (uint8_t)(m)->message_len;                         \
            if ((m)->message_len > 0)                                          \
                memcpy((t).short_message, (m)->message, (m)->message_len);     \
        }                                                                      \
    } while (0)

int smpp_pdu_pack_submit_sm(uint32_t seq, const struct smpp_sm *m, uint8_t *out,
                            size_t cap, size_t *len, char *err, size_t errlen)
{
    *len = 0;
    int rc;
    if ((rc = check_seq(seq, err, errlen)) < 0 ||
        (rc = check_sm(m, false, err, errlen)) < 0)
        return rc;
    submit_sm_t t;
    tlv_t tl[6];
    memset(&t, 0, sizeof t);
    t.command_id = SMPP_SUBMIT_SM;
    t.sequence_number = seq;
    rc = 0;
    FILL_SM(t, m, rc, err, errlen);
    if (rc < 0)
        return rc;
    if ((rc = put_str(t.validity_period, sizeof t.validity_period,
                      m->validity_period, "validity_period", err, errlen)) < 0)
        return rc;
    t.tlv = sm_tlvs(m, false, tl);
    return lib_pack(SMPP_SUBMIT_SM, &t, out, cap, len, err, errlen);
}

int smpp_pdu_pack_deliver_sm(uint32_t seq, const struct smpp_sm *m,
                             uint8_t *out, size_t cap, size_t *len, char *err,
                             size_t errlen)
{
    *len = 0;
    int rc;
    if ((rc = check_seq(seq, err, errlen)) < 0 ||
        (rc = check_sm(m, true, err, errlen)) < 0)
        return rc;
    deliver_sm_t t;
    tlv_t tl[6];
    memset(&t, 0, sizeof t);
    t.command_id = SMPP_DELIVER_SM;
    t.sequence_number = seq;
    rc = 0;
    FILL_SM(t, m, rc, err, errlen);
    if (rc < 0)
        return rc;
    t.tlv = sm_tlvs(m, true, tl);
    return lib_pack(SMPP_DELIVER_SM, &t, out, cap, len, err, errlen);
}

/* ---- delivery receipts ---------------------------------------------- */

const char *smpp_dlr_state_name(enum smpp_dlr_state s)
{
    switch (s) {
    case SMPP_DLR_ENROUTE:
        return "enroute";
    case SMPP_DLR_DELIVERED:
        return "delivered";
    case SMPP_DLR_EXPIRED:
        return "expired";
    case SMPP_DLR_DELETED:
        return "deleted";
    case SMPP_DLR_UNDELIVERABLE:
        return "undeliverable";
    case SMPP_DLR_ACCEPTED:
        return "accepted";
    case SMPP_DLR_REJECTED:
        return "rejected";
    case SMPP_DLR_UNKNOWN:
    default:
        return "unknown";
    }
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Case-insensitive: does s[0..len) equal the lowercase word w? */
static bool word_eq(const char *s, size_t len, const char *w)
{
    size_t n = strlen(w);
    if (len != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (lower(s[i]) != w[i])
            return false;
    return true;
}

enum smpp_dlr_state smpp_dlr_state_from_stat(const char *s, size_t len)
{
    static const struct {
        const char *short_form, *long_form;
        enum smpp_dlr_state state;
    } stats[] = {
        {"delivrd", "delivered", SMPP_DLR_DELIVERED},
        {"expired", "expired", SMPP_DLR_EXPIRED},
        {"deleted", "deleted", SMPP_DLR_DELETED},
        {"undeliv", "undeliverable", SMPP_DLR_UNDELIVERABLE},
        {"acceptd", "accepted", SMPP_DLR_ACCEPTED},
        {"unknown", "unknown", SMPP_DLR_UNKNOWN},
        {"rejectd", "rejected", SMPP_DLR_REJECTED},
        {"enroute", "enroute", SMPP_DLR_ENROUTE},
    };
    for (size_t i = 0; i < sizeof stats / sizeof *stats; i++)
        if (word_eq(s, len, stats[i].short_form) ||
            word_eq(s, len, stats[i].long_form))
            return stats[i].state;
    return SMPP_DLR_UNKNOWN;
}

enum dlr_field {
    DLR_ID,
    DLR_SUB,
    DLR_DLVRD,
    DLR_SUBMIT,
    DLR_DONE,
    DLR_STAT,
    DLR_ERR,
    DLR_TEXT,
};

/* A value ends at a blank or anything that is not printable ASCII. */
static bool value_byte(uint8_t c)
{
    return c > 0x20 && c < 0x7F;
}

static void copy_value(char *dst, size_t size, const uint8_t *v, size_t n)
{
    if (n >= size)
        n = size - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

int smpp_dlr_parse_text(const uint8_t *t, size_t len, struct smpp_dlr *d,
                        char *err, size_t errlen)
{
    static const struct {
        const char *key;
        enum dlr_field f;
    } keys[] = {
        {"id", DLR_ID},
        {"sub", DLR_SUB},
        {"dlvrd", DLR_DLVRD},
        {"submit date", DLR_SUBMIT},
        {"submit_date", DLR_SUBMIT},
        {"done date", DLR_DONE},
        {"done_date", DLR_DONE},
        {"stat", DLR_STAT},
        {"err", DLR_ERR},
        {"text", DLR_TEXT},
    };
    memset(d, 0, sizeof *d);
    d->state = SMPP_DLR_UNKNOWN;
    unsigned seen = 0;
    size_t i = 0;
    while (i < len) {
        /* Keys start a word. */
        if (i > 0 && value_byte(t[i - 1])) {
            i++;
            continue;
        }
        size_t k = 0, kl = 0;
        for (; k < sizeof keys / sizeof *keys; k++) {
            kl = strlen(keys[k].key);
            if (len - i > kl && t[i + kl] == ':' &&
                word_eq((const char *)t + i, kl, keys[k].key))
                break;
        }
        if (k == sizeof keys / sizeof *keys) {
            i++;
            continue;
        }
        enum dlr_field f = keys[k].f;
        if (f == DLR_TEXT)
            break; /* the rest is the message's own text */
        size_t v = i + kl + 1, e = v;
        while (e < len && value_byte(t[e]))
            e++;
        if ((seen & (1u << f)) == 0) {
            seen |= 1u << f;
            switch (f) {
            case DLR_ID:
                if (e - v >= SMPP_ID_SIZE)
                    return sr_err(err, errlen, SR_EPARSE,
                                  "receipt id of %zu bytes, over %d", e - v,
                                  SMPP_ID_SIZE - 1);
                copy_value(d->id, sizeof d->id, t + v, e - v);
                break;
            case DLR_STAT:
                d->state = smpp_dlr_state_from_stat((const char *)t + v, e - v);
                break;
            case DLR_ERR:
                copy_value(d->err, sizeof d->err, t + v, e - v);
                break;
            case DLR_SUBMIT:
                copy_value(d->submit_date, sizeof d->submit_date, t + v, e - v);
                break;
            case DLR_DONE:
                copy_value(d->done_date, sizeof d->done_date, t + v, e - v);
                break;
            default:
                break;
            }
        }
        i = e;
    }
    if (d->id[0] == '\0')
        return sr_err(err, errlen, SR_EPARSE, "receipt text without an id");
    return 0;
}

int smpp_pdu_receipt(const struct smpp_pdu *p, struct smpp_dlr *d, char *err,
                     size_t errlen)
{
    memset(d, 0, sizeof *d);
    d->state = SMPP_DLR_UNKNOWN;
    if (!p->body || (p->hdr.id != SMPP_DELIVER_SM && p->hdr.id != SMPP_DATA_SM))
        return sr_err(err, errlen, SR_EINVAL, "%s is not a receipt",
                      smpp_pdu_name(p->hdr.id));
    unsigned type = p->esm_class & SMPP_ESM_TYPE_MASK;
    if (type != SMPP_ESM_DELIVERY_RECEIPT && type != SMPP_ESM_INTERMEDIATE)
        return sr_err(err, errlen, SR_EINVAL,
                      "esm_class 0x%02x is not a delivery receipt",
                      p->esm_class);

    /* The text, as bytes; UCS-2 text keeps its ASCII characters. */
    uint8_t text[SMPP_PAYLOAD_MAX];
    size_t tl = 0;
    if (p->data_coding == 0x08) {
        for (size_t i = 0; i + 1 < p->message_len; i += 2)
            text[tl++] = p->message[i] == 0 ? p->message[i + 1] : '?';
    } else {
        tl = p->message_len;
        memcpy(text, p->message, tl);
    }
    char terr[SR_ERRMSG_SIZE] = "";
    struct smpp_dlr fromtext;
    /* Whatever the text has, even without an id (the TLV may have it). */
    (void)smpp_dlr_parse_text(text, tl, &fromtext, terr, sizeof terr);
    *d = fromtext;
    if (p->has_receipted_message_id && p->receipted_message_id[0] != '\0') {
        snprintf(d->id, sizeof d->id, "%s", p->receipted_message_id);
        d->id_from_tlv = true;
    }
    if (p->has_message_state) {
        d->state = p->message_state >= SMPP_DLR_ENROUTE &&
                           p->message_state <= SMPP_DLR_REJECTED
                       ? (enum smpp_dlr_state)p->message_state
                       : SMPP_DLR_UNKNOWN;
        d->state_from_tlv = true;
    }
    if (p->has_network_error_code) {
        d->has_network_error_code = true;
        memcpy(d->network_error_code, p->network_error_code, 3);
    }
    if (d->id[0] == '\0')
        return sr_err(err, errlen, SR_EPARSE, "receipt without an id%s%s",
                      terr[0] ? ": " : "", terr);
    return 0;
}

/* ---- message ids ------------------------------------------------------ */

static int digit_value(char c, unsigned base)
{
    int v = -1;
    if (c >= '0' && c <= '9')
        v = c - '0';
    else if (c >= 'a' && c <= 'f')
        v = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
        v = c - 'A' + 10;
    return v >= 0 && (unsigned)v < base ? v : -1;
}

int smpp_pdu_id_normalize(const char *id, enum smpp_id_mode in,
                          enum smpp_id_mode as, char out[SMPP_ID_SIZE],
                          char *err, size_t errlen)
{
    out[0] = '\0';
    size_t n = strnlen(id, SMPP_ID_SIZE);
    char shown[80];
    sr_sanitize(shown, sizeof shown, id, n);
    if (n == 0)
        return sr_err(err, errlen, SR_EINVAL, "empty message id");
    if (n >= SMPP_ID_SIZE)
        return sr_err(err, errlen, SR_EINVAL,
                      "message id %s: longer than %d bytes", shown,
                      SMPP_ID_SIZE - 1);
    if (in == SMPP_ID_ASIS) {
        if (as != SMPP_ID_ASIS)
            return sr_err(err, errlen, SR_EINVAL,
                          "an id read as-is cannot be converted");
        size_t s = 0;
        while (s + 1 < n && id[s] == '0')
            s++;
        for (size_t i = s; i < n; i++)
            if (!value_byte((uint8_t)id[i]))
                return sr_err(err, errlen, SR_EINVAL,
                              "message id %s: not printable", shown);
        size_t k = 0;
        for (size_t i = s; i < n; i++)
            out[k++] = lower(id[i]);
        out[k] = '\0';
        return 0;
    }
    unsigned base = in == SMPP_ID_HEX ? 16 : 10;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        int dv = digit_value(id[i], base);
        if (dv < 0)
            return sr_err(err, errlen, SR_EINVAL,
                          "message id %s: not a %s number", shown,
                          base == 16 ? "hex" : "decimal");
        if (v > (UINT64_MAX - (uint64_t)dv) / base)
            return sr_err(err, errlen, SR_EINVAL, "message id %s: over 64 bits",
                          shown);
        v = v * base + (uint64_t)dv;
    }
    bool hex = as == SMPP_ID_HEX || (as == SMPP_ID_ASIS && base == 16);
    snprintf(out, SMPP_ID_SIZE, hex ? "%" PRIx64 : "%" PRIu64, v);
    return 0;
}
