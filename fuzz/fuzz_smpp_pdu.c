/*
 * fuzz_smpp_pdu.c - libFuzzer target for the SMPP wrapper over libsmpp34
 * (gateways/smpp_pdu.h): what an SMSC sends, as the gateway will read it.
 *
 * Input: byte 0 picks how the rest arrives: (b & 0x3f) + 1 bytes per
 * read, or everything at once when b is 0xff; bit 0x40 (when not 0xff)
 * lowers the length bound to 512. The rest is the byte stream. It is
 * framed as the gateway does (bytes appended per read, each complete PDU
 * taken off the front, a framing error ends the stream), and each PDU is
 * unpacked, read as a receipt, and its ids normalised.
 *
 * Checked: framing answers only "more", "one PDU" or a fatal error with a
 * generic_nack status; a PDU's length is within the bound; unpack returns
 * 0 or SR_EPARSE with a nack status, never touches libsmpp34 with what it
 * would crash on (ASan sees the rest), never passes a body that libsmpp34
 * then refuses or reads differently, and its strings are terminated;
 * a submit_sm or deliver_sm that unpacked packs again and unpacks to the
 * same fields; hex -> decimal -> hex of an id is the identity.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateways/smpp_pdu.h"
#include "node/errors.h"

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond))                                                           \
            __builtin_trap();                                                  \
    } while (0)

#define TERMINATED(s) CHECK(strnlen((s), sizeof(s)) < sizeof(s))

static void check_ids(const char *id)
{
    char a[SMPP_ID_SIZE], b[SMPP_ID_SIZE], c[SMPP_ID_SIZE];
    int modes[] = {SMPP_ID_ASIS, SMPP_ID_HEX, SMPP_ID_DEC};
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 3; j++) {
            int rc = smpp_pdu_id_normalize(id, modes[i], modes[j], a, NULL, 0);
            CHECK(rc == 0 || rc == SR_EINVAL);
            CHECK(strnlen(a, sizeof a) < sizeof a);
            if (rc == 0)
                CHECK(a[0] != '\0');
            else
                CHECK(a[0] == '\0');
        }
    }
    if (smpp_pdu_id_normalize(id, SMPP_ID_HEX, SMPP_ID_DEC, a, NULL, 0) == 0) {
        CHECK(smpp_pdu_id_normalize(a, SMPP_ID_DEC, SMPP_ID_HEX, b, NULL, 0) ==
              0);
        CHECK(smpp_pdu_id_normalize(id, SMPP_ID_HEX, SMPP_ID_HEX, c, NULL, 0) ==
              0);
        CHECK(strcmp(b, c) == 0);
    }
}

static bool addr_ok(uint8_t ton, uint8_t npi)
{
    return ton <= 6 &&
           (npi == 0 || npi == 1 || npi == 3 || npi == 4 || npi == 6 ||
            npi == 8 || npi == 9 || npi == 10 || npi == 14 || npi == 18);
}

/* Packs a submit_sm or deliver_sm again from what was unpacked and checks
 * that it reads back the same. */
static void round_trip(const struct smpp_pdu *u)
{
    bool deliver = u->hdr.id == SMPP_DELIVER_SM;
    if (!addr_ok(u->source_ton, u->source_npi) ||
        !addr_ok(u->dest_ton, u->dest_npi) || strlen(u->dest_addr) > 20)
        return;
    struct smpp_sm m = {
        .service_type = u->service_type,
        .source_ton = u->source_ton,
        .source_npi = u->source_npi,
        .source_addr = u->source_addr,
        .dest_ton = u->dest_ton,
        .dest_npi = u->dest_npi,
        .dest_addr = u->dest_addr,
        .esm_class = u->esm_class,
        .protocol_id = u->protocol_id,
        .priority_flag = u->priority_flag,
        .no_receipt = u->registered_delivery == 0,
        .validity_period = deliver ? NULL : u->validity_period,
        .data_coding = u->data_coding,
        .message = u->message,
        .message_len = u->message_len,
    };
    bool sar = u->has_sar && u->sar_total_segments > 0 &&
               u->sar_segment_seqnum > 0 &&
               u->sar_segment_seqnum <= u->sar_total_segments;
    if (sar) {
        m.sar = true;
        m.sar_msg_ref_num = u->sar_msg_ref_num;
        m.sar_total_segments = u->sar_total_segments;
        m.sar_segment_seqnum = u->sar_segment_seqnum;
    }
    if (deliver && u->has_receipted_message_id)
        m.receipted_message_id = u->receipted_message_id;
    if (deliver && u->has_message_state)
        m.message_state = u->message_state;
    uint8_t out[SMPP_PACK_MAX];
    size_t len = 0;
    char err[SR_ERRMSG_SIZE];
    int rc = deliver ? smpp_pdu_pack_deliver_sm(1, &m, out, sizeof out, &len,
                                                err, sizeof err)
                     : smpp_pdu_pack_submit_sm(1, &m, out, sizeof out, &len,
                                               err, sizeof err);
    CHECK(rc == 0);
    static struct smpp_pdu v;
    uint32_t nack;
    CHECK(smpp_pdu_unpack(out, len, 0, &v, &nack, err, sizeof err) == 0);
    CHECK(v.hdr.id == u->hdr.id && v.body);
    CHECK(strcmp(v.service_type, u->service_type) == 0);
    CHECK(strcmp(v.source_addr, u->source_addr) == 0);
    CHECK(strcmp(v.dest_addr, u->dest_addr) == 0);
    CHECK(v.source_ton == u->source_ton && v.source_npi == u->source_npi);
    CHECK(v.dest_ton == u->dest_ton && v.dest_npi == u->dest_npi);
    CHECK(v.esm_class == u->esm_class && v.data_coding == u->data_coding);
    CHECK(v.message_len == u->message_len);
    CHECK(memcmp(v.message, u->message, u->message_len) == 0);
    if (sar)
        CHECK(v.has_sar && v.sar_msg_ref_num == u->sar_msg_ref_num &&
              v.sar_total_segments == u->sar_total_segments &&
              v.sar_segment_seqnum == u->sar_segment_seqnum);
    if (deliver && u->has_receipted_message_id)
        CHECK(strcmp(v.receipted_message_id, u->receipted_message_id) == 0);
}

static void one_pdu(const uint8_t *p, size_t n, uint32_t max)
{
    static struct smpp_pdu u;
    uint32_t nack = 12345;
    char err[SR_ERRMSG_SIZE] = "";
    int rc = smpp_pdu_unpack(p, n, max, &u, &nack, err, sizeof err);
    CHECK(rc == 0 || rc == SR_EPARSE);
    if (rc != 0) {
        CHECK(nack != SMPP_ROK && nack != 12345);
        /* SMPP_RSYSERR: our walk passed a body libsmpp34 then refused or
         * read differently, i.e. our model of libsmpp34 is wrong. */
        CHECK(nack != SMPP_RSYSERR);
        CHECK(err[0] != '\0');
        return;
    }
    CHECK(u.hdr.length == n);
    TERMINATED(u.system_id);
    TERMINATED(u.password);
    TERMINATED(u.message_id);
    TERMINATED(u.service_type);
    TERMINATED(u.source_addr);
    TERMINATED(u.dest_addr);
    TERMINATED(u.schedule_delivery_time);
    TERMINATED(u.validity_period);
    TERMINATED(u.receipted_message_id);
    CHECK(u.message_len <= sizeof u.message);
    CHECK(u.ntlv <= SMPP_PDU_MAX_TLVS);
    if (!u.body)
        return;
    CHECK((u.hdr.id & SMPP_RESP) == 0 || u.hdr.status == SMPP_ROK);
    if (u.message_id[0] != '\0')
        check_ids(u.message_id);
    if (u.hdr.id == SMPP_DELIVER_SM || u.hdr.id == SMPP_DATA_SM) {
        struct smpp_dlr d;
        rc = smpp_pdu_receipt(&u, &d, err, sizeof err);
        CHECK(rc == 0 || rc == SR_EINVAL || rc == SR_EPARSE);
        if (rc == 0) {
            CHECK(d.id[0] != '\0');
            CHECK(strnlen(d.id, sizeof d.id) < sizeof d.id);
            CHECK(d.state >= SMPP_DLR_ENROUTE && d.state <= SMPP_DLR_REJECTED);
            check_ids(d.id);
        }
    }
    if (u.hdr.id == SMPP_DELIVER_SM || u.hdr.id == SMPP_SUBMIT_SM)
        round_trip(&u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = data[0] == 0xff ? size : (size_t)(data[0] & 0x3f) + 1;
    uint32_t max = data[0] != 0xff && (data[0] & 0x40) ? 512 : 0;
    const uint8_t *in = data + 1;
    size_t n = size - 1;

    struct smpp_dlr d;
    int rc = smpp_dlr_parse_text(in, n, &d, NULL, 0);
    CHECK(rc == 0 || rc == SR_EPARSE);

    uint8_t *buf = malloc(n + 1);
    if (buf == NULL)
        return 0;
    size_t len = 0, fed = 0;
    for (;;) {
        struct smpp_hdr h;
        uint32_t nack = 0;
        char err[SR_ERRMSG_SIZE] = "";
        rc = smpp_pdu_frame(buf, len, max, &h, &nack, err, sizeof err);
        if (rc == SMPP_FRAME_MORE) {
            if (fed == n)
                break;
            size_t more = n - fed < step ? n - fed : step;
            memcpy(buf + len, in + fed, more);
            len += more;
            fed += more;
            continue;
        }
        if (rc < 0) {
            CHECK(rc == SR_EPARSE && len >= SMPP_HEADER_LEN);
            CHECK(nack == SMPP_RINVCMDLEN || nack == SMPP_RINVCMDID);
            break;
        }
        CHECK(rc == SMPP_FRAME_PDU);
        CHECK(h.length >= SMPP_HEADER_LEN && h.length <= len);
        CHECK(h.length <= (max ? max : SMPP_PDU_MAX_DEFAULT));
        /* Exactly the PDU, in its own allocation, so that ASan sees any
         * read past it. */
        uint8_t *pdu = malloc(h.length);
        if (pdu == NULL)
            break;
        memcpy(pdu, buf, h.length);
        one_pdu(pdu, h.length, max);
        free(pdu);
        memmove(buf, buf + h.length, len - h.length);
        len -= h.length;
    }
    free(buf);
    return 0;
}
