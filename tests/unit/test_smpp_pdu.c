/* test_smpp_pdu.c - SMPP framing, header checks, pack/unpack over
 * libsmpp34, the hostile PDUs it must survive, delivery receipts and
 * message ids (gateways/smpp_pdu.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sms_text.h"
#include "gateways/smpp_pdu.h"
#include "node/errors.h"

/* libsmpp34's log buffer, measured by test_log_budget. */
extern char smpp34_strerror[2048];

/* A PDU built by hand, byte by byte. */
struct pb {
    uint8_t b[8192];
    size_t n;
};

static void p8(struct pb *p, uint8_t v)
{
    assert_true(p->n < sizeof p->b);
    p->b[p->n++] = v;
}

static void p16(struct pb *p, uint16_t v)
{
    p8(p, (uint8_t)(v >> 8));
    p8(p, (uint8_t)v);
}

static void p32(struct pb *p, uint32_t v)
{
    p16(p, (uint16_t)(v >> 16));
    p16(p, (uint16_t)v);
}

static void pstr(struct pb *p, const char *s) /* with its NUL */
{
    do
        p8(p, (uint8_t)*s);
    while (*s++);
}

static void pmem(struct pb *p, const void *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p8(p, ((const uint8_t *)v)[i]);
}

static void phdr(struct pb *p, uint32_t id, uint32_t status, uint32_t seq)
{
    p->n = 0;
    p32(p, 0); /* set by pfin */
    p32(p, id);
    p32(p, status);
    p32(p, seq);
}

static void pfin(struct pb *p)
{
    uint32_t n = (uint32_t)p->n;
    p->b[0] = (uint8_t)(n >> 24);
    p->b[1] = (uint8_t)(n >> 16);
    p->b[2] = (uint8_t)(n >> 8);
    p->b[3] = (uint8_t)n;
}

static void ptlv(struct pb *p, uint16_t tag, const void *v, uint16_t len)
{
    p16(p, tag);
    p16(p, len);
    pmem(p, v, len);
}

/* A deliver_sm body up to the TLVs. */
static void pdeliver(struct pb *p, uint32_t status, uint32_t seq,
                     uint8_t esm_class, const char *text)
{
    phdr(p, SMPP_DELIVER_SM, status, seq);
    pstr(p, "");             /* service_type */
    p8(p, 1), p8(p, 1);      /* source TON/NPI */
    pstr(p, "393331234567"); /* source_addr */
    p8(p, 5), p8(p, 0);
    pstr(p, "Shop");
    p8(p, esm_class);
    p8(p, 0), p8(p, 0); /* protocol_id, priority_flag */
    pstr(p, ""), pstr(p, "");
    p8(p, 0), p8(p, 0); /* registered_delivery, replace_if_present */
    p8(p, 0), p8(p, 0); /* data_coding, sm_default_msg_id */
    size_t n = strlen(text);
    p8(p, (uint8_t)n);
    pmem(p, text, n);
}

static int unpack(const struct pb *p, struct smpp_pdu *out, uint32_t *nack,
                  char *err)
{
    return smpp_pdu_unpack(p->b, p->n, 0, out, nack, err, SR_ERRMSG_SIZE);
}

static void test_header(void **state)
{
    (void)state;
    struct {
        uint32_t len, id;
        uint32_t max;
        int rc;
        uint32_t nack;
    } cases[] = {
        {16, SMPP_ENQUIRE_LINK, 0, 0, 0},
        {16, SMPP_GENERIC_NACK, 0, 0, 0},
        {17, SMPP_DELIVER_SM | SMPP_RESP, 0, 0, 0},
        {65536, SMPP_DELIVER_SM, 0, 0, 0},
        {15, SMPP_ENQUIRE_LINK, 0, SR_EPARSE, SMPP_RINVCMDLEN},
        {0, SMPP_ENQUIRE_LINK, 0, SR_EPARSE, SMPP_RINVCMDLEN},
        {65537, SMPP_DELIVER_SM, 0, SR_EPARSE, SMPP_RINVCMDLEN},
        {0xFFFFFFFF, SMPP_DELIVER_SM, 0, SR_EPARSE, SMPP_RINVCMDLEN},
        {1025, SMPP_DELIVER_SM, 1024, SR_EPARSE, SMPP_RINVCMDLEN},
        {1024, SMPP_DELIVER_SM, 1024, 0, 0},
        {(16u << 20) + 1, SMPP_DELIVER_SM, 0xFFFFFFFF, SR_EPARSE,
         SMPP_RINVCMDLEN},
        {16, 0x00000003, 0, SR_EPARSE, SMPP_RINVCMDID}, /* query_sm */
        {16, 0x00000102, 0, SR_EPARSE, SMPP_RINVCMDID}, /* alert_notif. */
        {16, 0x80000015 + 1, 0, SR_EPARSE, SMPP_RINVCMDID},
        {16, 0x00000000, 0, SR_EPARSE, SMPP_RINVCMDID},
        {16, SMPP_OUTBIND, 0, 0, 0},
        {16, SMPP_DATA_SM | SMPP_RESP, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct pb p;
        phdr(&p, cases[i].id, 0, 42);
        p.b[0] = (uint8_t)(cases[i].len >> 24);
        p.b[1] = (uint8_t)(cases[i].len >> 16);
        p.b[2] = (uint8_t)(cases[i].len >> 8);
        p.b[3] = (uint8_t)cases[i].len;
        struct smpp_hdr h;
        uint32_t nack = 99;
        char err[SR_ERRMSG_SIZE] = "";
        int rc =
            smpp_pdu_header(p.b, 16, cases[i].max, &h, &nack, err, sizeof err);
        assert_int_equal(rc, cases[i].rc);
        assert_int_equal(nack, cases[i].nack);
        assert_int_equal(h.length, cases[i].len);
        assert_int_equal(h.id, cases[i].id);
        assert_int_equal(h.seq, 42); /* also on errors, for the nack */
        if (rc != 0)
            assert_true(err[0] != '\0');
    }
    struct smpp_hdr h;
    uint8_t b[15] = {0};
    assert_int_equal(smpp_pdu_header(b, 15, 0, &h, NULL, NULL, 0), SR_EINVAL);
}

static void test_frame(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t n1, n2;
    assert_int_equal(smpp_pdu_pack_header(SMPP_ENQUIRE_LINK, 0, 1, buf,
                                          sizeof buf, &n1, NULL, 0),
                     0);
    assert_int_equal(smpp_pdu_pack_deliver_sm_resp(
                         9, 0, buf + n1, sizeof buf - n1, &n2, NULL, 0),
                     0);
    struct smpp_hdr h;
    uint32_t nack;
    char err[SR_ERRMSG_SIZE];
    /* Byte by byte: more, more, ..., one PDU of 16. */
    for (size_t k = 0; k < 16; k++)
        assert_int_equal(smpp_pdu_frame(buf, k, 0, &h, &nack, err, sizeof err),
                         SMPP_FRAME_MORE);
    assert_int_equal(
        smpp_pdu_frame(buf, n1 + n2, 0, &h, &nack, err, sizeof err),
        SMPP_FRAME_PDU);
    assert_int_equal(h.length, 16);
    /* The next one: its header is there, one byte of body is not. */
    assert_int_equal(
        smpp_pdu_frame(buf + n1, n2 - 1, 0, &h, &nack, err, sizeof err),
        SMPP_FRAME_MORE);
    assert_int_equal(
        smpp_pdu_frame(buf + n1, n2, 0, &h, &nack, err, sizeof err),
        SMPP_FRAME_PDU);
    assert_int_equal(h.length, 17);
    assert_int_equal(h.seq, 9);
    /* A bad header is fatal at once, without waiting for its length. */
    struct pb p;
    phdr(&p, SMPP_DELIVER_SM, 0, 5);
    p.b[0] = 0x10; /* 268 MB */
    assert_int_equal(smpp_pdu_frame(p.b, 16, 0, &h, &nack, err, sizeof err),
                     SR_EPARSE);
    assert_int_equal(nack, SMPP_RINVCMDLEN);
    assert_int_equal(h.seq, 5);
    phdr(&p, 0x12345678, 0, 6);
    pfin(&p);
    assert_int_equal(smpp_pdu_frame(p.b, 16, 0, &h, &nack, err, sizeof err),
                     SR_EPARSE);
    assert_int_equal(nack, SMPP_RINVCMDID);
}

static void test_pack_bytes(void **state)
{
    (void)state;
    uint8_t out[SMPP_PACK_MAX];
    size_t len;
    char err[SR_ERRMSG_SIZE] = "";
    struct smpp_bind b = {.system_id = "smsc", .password = "pw"};
    assert_int_equal(smpp_pdu_pack_bind(SMPP_BIND_TRANSCEIVER, 1, &b, out,
                                        sizeof out, &len, err, sizeof err),
                     0);
    const uint8_t bind[] = {0, 0,   0,   29, 0, 0,    0,   9,   0,   0,
                            0, 0,   0,   0,  0, 1,    's', 'm', 's', 'c',
                            0, 'p', 'w', 0,  0, 0x34, 0,   0,   0};
    assert_int_equal(len, sizeof bind);
    assert_memory_equal(out, bind, sizeof bind);

    assert_int_equal(smpp_pdu_pack_header(SMPP_ENQUIRE_LINK | SMPP_RESP, 0,
                                          0x7F, out, sizeof out, &len, err,
                                          sizeof err),
                     0);
    const uint8_t elr[] = {0, 0, 0, 16, 0x80, 0, 0, 0x15,
                           0, 0, 0, 0,  0,    0, 0, 0x7F};
    assert_int_equal(len, 16);
    assert_memory_equal(out, elr, 16);

    assert_int_equal(smpp_pdu_pack_header(SMPP_GENERIC_NACK, SMPP_RINVCMDID, 0,
                                          out, sizeof out, &len, err,
                                          sizeof err),
                     0);
    assert_int_equal(out[11], SMPP_RINVCMDID);

    /* submit_sm of "hi" to +393331234567 from "Shop" with sar values. */
    struct smpp_sm m = {
        .source_ton = 5,
        .source_addr = "Shop",
        .dest_ton = 1,
        .dest_npi = 1,
        .dest_addr = "393331234567",
        .data_coding = 0,
        .message = (const uint8_t *)"hi",
        .message_len = 2,
        .sar = true,
        .sar_msg_ref_num = 0x0102,
        .sar_total_segments = 2,
        .sar_segment_seqnum = 1,
    };
    assert_int_equal(
        smpp_pdu_pack_submit_sm(3, &m, out, sizeof out, &len, err, sizeof err),
        0);
    struct pb want;
    phdr(&want, SMPP_SUBMIT_SM, 0, 3);
    pstr(&want, "");
    p8(&want, 5), p8(&want, 0);
    pstr(&want, "Shop");
    p8(&want, 1), p8(&want, 1);
    pstr(&want, "393331234567");
    p8(&want, 0), p8(&want, 0), p8(&want, 0); /* esm, pid, priority */
    pstr(&want, ""), pstr(&want, "");
    p8(&want, 1); /* registered_delivery */
    p8(&want, 0), p8(&want, 0), p8(&want, 0);
    p8(&want, 2);
    pmem(&want, "hi", 2);
    ptlv(&want, 0x020C, "\x01\x02", 2);
    ptlv(&want, 0x020E, "\x02", 1);
    ptlv(&want, 0x020F, "\x01", 1);
    pfin(&want);
    assert_int_equal(len, want.n);
    assert_memory_equal(out, want.b, want.n);

    /* Refusals: never a silent cut. */
    b.system_id = "0123456789abcdef"; /* 16 > 15 */
    assert_int_equal(smpp_pdu_pack_bind(SMPP_BIND_TRANSCEIVER, 1, &b, out,
                                        sizeof out, &len, err, sizeof err),
                     SR_EINVAL);
    b.system_id = "x";
    assert_int_equal(smpp_pdu_pack_bind(SMPP_BIND_TRANSCEIVER, 0, &b, out,
                                        sizeof out, &len, err, sizeof err),
                     SR_EINVAL);
    assert_int_equal(smpp_pdu_pack_bind(SMPP_SUBMIT_SM, 1, &b, out, sizeof out,
                                        &len, err, sizeof err),
                     SR_EINVAL);
    m.dest_addr = "393331234567890123456"; /* 21 > 20 */
    assert_int_equal(
        smpp_pdu_pack_submit_sm(3, &m, out, sizeof out, &len, err, sizeof err),
        SR_EINVAL);
    m.dest_addr = "1";
    m.source_npi = 7; /* not an NPI */
    assert_int_equal(
        smpp_pdu_pack_submit_sm(3, &m, out, sizeof out, &len, err, sizeof err),
        SR_EINVAL);
    m.source_npi = 0;
    m.message_len = SMPP_PAYLOAD_MAX + 1;
    assert_int_equal(
        smpp_pdu_pack_submit_sm(3, &m, out, sizeof out, &len, err, sizeof err),
        SR_EINVAL);
    m.message_len = 2;
    assert_int_equal(
        smpp_pdu_pack_submit_sm(3, &m, out, 10, &len, err, sizeof err),
        SR_EINVAL);
    assert_int_equal(smpp_pdu_pack_header(SMPP_SUBMIT_SM, 0, 1, out, sizeof out,
                                          &len, err, sizeof err),
                     SR_EINVAL);
}

/* The parts of sms_encode go out as submit_sm and come back equal. */
static void test_submit_round_trip(void **state)
{
    (void)state;
    const char *text = "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 "
                       "\xf0\x9f\x98\x80 "
                       "0123456789012345678901234567890123456789012345678901"
                       "234567890123456789";
    for (int method = 0; method < 2; method++) {
        struct sms_encode_opts o = {
            .concat = method ? SMS_CONCAT_SAR : SMS_CONCAT_UDH,
            .ref = 0xAB77,
            .max_parts = 5,
        };
        struct sms_message msg;
        char err[SR_ERRMSG_SIZE] = "";
        assert_int_equal(
            sms_encode(text, strlen(text), &o, &msg, err, sizeof err), 0);
        assert_int_equal(msg.nparts, 2);
        for (size_t i = 0; i < msg.nparts; i++) {
            const struct sms_part *pt = &msg.parts[i];
            struct smpp_sm m = {
                .service_type = "CMT",
                .source_ton = 5,
                .source_addr = "ACME",
                .dest_ton = 1,
                .dest_npi = 1,
                .dest_addr = "393331234567",
                .esm_class = pt->esm_class,
                .validity_period = "000001000000000R",
                .data_coding = pt->data_coding,
                .message = pt->data,
                .message_len = pt->len,
                .sar = pt->sar,
                .sar_msg_ref_num = pt->sar_msg_ref_num,
                .sar_total_segments = pt->sar_total_segments,
                .sar_segment_seqnum = pt->sar_segment_seqnum,
            };
            uint8_t out[SMPP_PACK_MAX];
            size_t len;
            assert_int_equal(smpp_pdu_pack_submit_sm((uint32_t)(10 + i), &m,
                                                     out, sizeof out, &len, err,
                                                     sizeof err),
                             0);
            struct smpp_pdu u;
            uint32_t nack;
            assert_int_equal(
                smpp_pdu_unpack(out, len, 0, &u, &nack, err, sizeof err), 0);
            assert_true(u.body);
            assert_int_equal(u.hdr.id, SMPP_SUBMIT_SM);
            assert_int_equal(u.hdr.seq, 10 + i);
            assert_string_equal(u.service_type, "CMT");
            assert_int_equal(u.source_ton, 5);
            assert_int_equal(u.source_npi, 0);
            assert_string_equal(u.source_addr, "ACME");
            assert_int_equal(u.dest_ton, 1);
            assert_int_equal(u.dest_npi, 1);
            assert_string_equal(u.dest_addr, "393331234567");
            assert_int_equal(u.esm_class, method ? 0 : SMPP_ESM_UDHI);
            assert_int_equal(u.registered_delivery, 1);
            assert_int_equal(u.data_coding, SMS_DC_UCS2);
            assert_string_equal(u.validity_period, "000001000000000R");
            assert_int_equal(u.message_len, pt->len);
            assert_memory_equal(u.message, pt->data, pt->len);
            assert_false(u.message_from_payload);
            assert_int_equal(u.has_sar, method == 1);
            if (method == 1) {
                assert_int_equal(u.ntlv, 3);
                assert_int_equal(u.sar_msg_ref_num, 0xAB77);
                assert_int_equal(u.sar_total_segments, 2);
                assert_int_equal(u.sar_segment_seqnum, i + 1);
            } else {
                assert_int_equal(u.ntlv, 0);
                const uint8_t udh[] = {5, 0, 3, 0x77, 2, (uint8_t)(i + 1)};
                assert_memory_equal(u.message, udh, 6);
            }
        }
        sms_message_free(&msg);
    }

    /* More than 253 bytes: message_payload, short_message empty. */
    uint8_t big[600];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)i;
    struct smpp_sm m = {.dest_ton = 1,
                        .dest_npi = 1,
                        .dest_addr = "1",
                        .data_coding = 8,
                        .message = big,
                        .message_len = sizeof big};
    uint8_t out[SMPP_PACK_MAX];
    size_t len;
    char err[SR_ERRMSG_SIZE] = "";
    assert_int_equal(
        smpp_pdu_pack_submit_sm(1, &m, out, sizeof out, &len, err, sizeof err),
        0);
    struct smpp_pdu u;
    assert_int_equal(smpp_pdu_unpack(out, len, 0, &u, NULL, err, sizeof err),
                     0);
    assert_true(u.message_from_payload);
    assert_int_equal(u.message_len, sizeof big);
    assert_memory_equal(u.message, big, sizeof big);
    m.message_len = SMPP_SM_MAX; /* the most that goes in short_message */
    assert_int_equal(
        smpp_pdu_pack_submit_sm(1, &m, out, sizeof out, &len, err, sizeof err),
        0);
    assert_int_equal(smpp_pdu_unpack(out, len, 0, &u, NULL, err, sizeof err),
                     0);
    assert_false(u.message_from_payload);
    assert_int_equal(u.message_len, SMPP_SM_MAX);
}

static const char receipt_text[] =
    "id:0000002587 sub:001 dlvrd:001 submit date:2401011200 done "
    "date:2401011201 stat:DELIVRD err:000 text:Hello stat:REJECTD";

static void test_deliver_receipt_round_trip(void **state)
{
    (void)state;
    struct smpp_sm m = {
        .source_ton = 1,
        .source_npi = 1,
        .source_addr = "393331234567",
        .dest_ton = 5,
        .dest_addr = "ACME",
        .esm_class = SMPP_ESM_DELIVERY_RECEIPT,
        .no_receipt = true,
        .message = (const uint8_t *)receipt_text,
        .message_len = strlen(receipt_text),
        .receipted_message_id = "0A1B",
        .message_state = SMPP_DLR_DELIVERED,
    };
    uint8_t out[SMPP_PACK_MAX];
    size_t len;
    char err[SR_ERRMSG_SIZE] = "";
    assert_int_equal(smpp_pdu_pack_deliver_sm(77, &m, out, sizeof out, &len,
                                              err, sizeof err),
                     0);
    struct smpp_pdu u;
    uint32_t nack;
    assert_int_equal(smpp_pdu_unpack(out, len, 0, &u, &nack, err, sizeof err),
                     0);
    assert_int_equal(u.hdr.id, SMPP_DELIVER_SM);
    assert_int_equal(u.hdr.seq, 77);
    assert_string_equal(u.source_addr, "393331234567");
    assert_string_equal(u.dest_addr, "ACME");
    assert_int_equal(u.esm_class, SMPP_ESM_DELIVERY_RECEIPT);
    assert_int_equal(u.registered_delivery, 0);
    assert_int_equal(u.message_len, strlen(receipt_text));
    assert_true(u.has_receipted_message_id);
    assert_string_equal(u.receipted_message_id, "0A1B");
    assert_true(u.has_message_state);
    assert_int_equal(u.message_state, 2);
    assert_int_equal(u.ntlv, 2);

    struct smpp_dlr d;
    assert_int_equal(smpp_pdu_receipt(&u, &d, err, sizeof err), 0);
    assert_string_equal(d.id, "0A1B");
    assert_true(d.id_from_tlv);
    assert_true(d.state_from_tlv);
    assert_int_equal(d.state, SMPP_DLR_DELIVERED);
    assert_string_equal(d.err, "000");
    assert_string_equal(d.submit_date, "2401011200");
    assert_string_equal(d.done_date, "2401011201");

    /* The hex id of submit_sm_resp and the decimal one of the text match. */
    char a[SMPP_ID_SIZE], b[SMPP_ID_SIZE];
    assert_int_equal(
        smpp_pdu_id_normalize(d.id, SMPP_ID_HEX, SMPP_ID_DEC, a, NULL, 0), 0);
    assert_int_equal(smpp_pdu_id_normalize("0000002587", SMPP_ID_DEC,
                                           SMPP_ID_DEC, b, NULL, 0),
                     0);
    assert_string_equal(a, b);

    /* Without the TLVs the text says it all; "text:" ends the fields. */
    m.receipted_message_id = NULL;
    m.message_state = 0;
    assert_int_equal(smpp_pdu_pack_deliver_sm(78, &m, out, sizeof out, &len,
                                              err, sizeof err),
                     0);
    assert_int_equal(smpp_pdu_unpack(out, len, 0, &u, &nack, err, sizeof err),
                     0);
    assert_int_equal(smpp_pdu_receipt(&u, &d, err, sizeof err), 0);
    assert_string_equal(d.id, "0000002587");
    assert_false(d.id_from_tlv);
    assert_int_equal(d.state, SMPP_DLR_DELIVERED);

    /* Not a receipt: an ordinary message. */
    m.esm_class = 0;
    assert_int_equal(smpp_pdu_pack_deliver_sm(79, &m, out, sizeof out, &len,
                                              err, sizeof err),
                     0);
    assert_int_equal(smpp_pdu_unpack(out, len, 0, &u, &nack, err, sizeof err),
                     0);
    assert_int_equal(smpp_pdu_receipt(&u, &d, err, sizeof err), SR_EINVAL);
}

static void test_receipt_text(void **state)
{
    (void)state;
    struct {
        const char *text;
        int rc;
        const char *id;
        enum smpp_dlr_state st;
        const char *err;
    } cases[] = {
        {receipt_text, 0, "0000002587", SMPP_DLR_DELIVERED, "000"},
        {"ID:ab12 SUB:001 DLVRD:000 SUBMIT DATE:2401011200 DONE "
         "DATE:2401011300 STAT:UNDELIV ERR:034 TEXT:x",
         0, "ab12", SMPP_DLR_UNDELIVERABLE, "034"},
        {"id:1 stat:expired", 0, "1", SMPP_DLR_EXPIRED, ""},
        {"id:1 submit_date:2401011200 done_date:2401011200 stat:DELETED", 0,
         "1", SMPP_DLR_DELETED, ""},
        {"id:1 stat:ACCEPTD", 0, "1", SMPP_DLR_ACCEPTED, ""},
        {"id:1 stat:REJECTD err:001", 0, "1", SMPP_DLR_REJECTED, "001"},
        {"id:1 stat:ENROUTE", 0, "1", SMPP_DLR_ENROUTE, ""},
        {"id:1 stat:UNKNOWN", 0, "1", SMPP_DLR_UNKNOWN, ""},
        {"id:1 stat:WHATEVER", 0, "1", SMPP_DLR_UNKNOWN, ""},
        {"id:77", 0, "77", SMPP_DLR_UNKNOWN, ""},
        {"  id:9  stat:DELIVRD\r\n", 0, "9", SMPP_DLR_DELIVERED, ""},
        {"xid:5 id:6 stat:DELIVRD", 0, "6", SMPP_DLR_DELIVERED, ""},
        {"text:id:1 stat:DELIVRD", SR_EPARSE, "", SMPP_DLR_UNKNOWN, ""},
        {"sub:001 stat:DELIVRD", SR_EPARSE, "", SMPP_DLR_DELIVERED, ""},
        {"id: stat:DELIVRD", SR_EPARSE, "", SMPP_DLR_DELIVERED, ""},
        {"", SR_EPARSE, "", SMPP_DLR_UNKNOWN, ""},
        {"id:"
         "12345678901234567890123456789012345678901234567890123456789012345",
         SR_EPARSE, "", SMPP_DLR_UNKNOWN, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct smpp_dlr d;
        char err[SR_ERRMSG_SIZE] = "";
        int rc =
            smpp_dlr_parse_text((const uint8_t *)cases[i].text,
                                strlen(cases[i].text), &d, err, sizeof err);
        assert_int_equal(rc, cases[i].rc);
        assert_string_equal(d.id, cases[i].id);
        assert_int_equal(d.state, cases[i].st);
        assert_string_equal(d.err, cases[i].err);
    }
    assert_string_equal(smpp_dlr_state_name(SMPP_DLR_UNDELIVERABLE),
                        "undeliverable");
}

static void test_id_normalize(void **state)
{
    (void)state;
    struct {
        const char *id;
        enum smpp_id_mode in, as;
        int rc;
        const char *want;
    } cases[] = {
        {"0A1B", SMPP_ID_HEX, SMPP_ID_DEC, 0, "2587"},
        {"2587", SMPP_ID_DEC, SMPP_ID_DEC, 0, "2587"},
        {"0002587", SMPP_ID_DEC, SMPP_ID_DEC, 0, "2587"},
        {"0a1b", SMPP_ID_HEX, SMPP_ID_HEX, 0, "a1b"},
        {"2587", SMPP_ID_DEC, SMPP_ID_HEX, 0, "a1b"},
        {"0A1B", SMPP_ID_HEX, SMPP_ID_ASIS, 0, "a1b"},
        {"0002587", SMPP_ID_DEC, SMPP_ID_ASIS, 0, "2587"},
        {"00AbC-9", SMPP_ID_ASIS, SMPP_ID_ASIS, 0, "abc-9"},
        {"0000", SMPP_ID_ASIS, SMPP_ID_ASIS, 0, "0"},
        {"0000", SMPP_ID_HEX, SMPP_ID_DEC, 0, "0"},
        {"FFFFFFFFFFFFFFFF", SMPP_ID_HEX, SMPP_ID_DEC, 0,
         "18446744073709551615"},
        {"18446744073709551615", SMPP_ID_DEC, SMPP_ID_HEX, 0,
         "ffffffffffffffff"},
        {"0000000000000000000000FFFFFFFFFFFFFFFF", SMPP_ID_HEX, SMPP_ID_HEX, 0,
         "ffffffffffffffff"},
        {"1FFFFFFFFFFFFFFFF", SMPP_ID_HEX, SMPP_ID_DEC, SR_EINVAL, ""},
        {"18446744073709551616", SMPP_ID_DEC, SMPP_ID_DEC, SR_EINVAL, ""},
        {"12g", SMPP_ID_HEX, SMPP_ID_DEC, SR_EINVAL, ""},
        {"0A1B", SMPP_ID_DEC, SMPP_ID_DEC, SR_EINVAL, ""},
        {"", SMPP_ID_ASIS, SMPP_ID_ASIS, SR_EINVAL, ""},
        {"ab", SMPP_ID_ASIS, SMPP_ID_DEC, SR_EINVAL, ""},
        {"a b", SMPP_ID_ASIS, SMPP_ID_ASIS, SR_EINVAL, ""},
        {"12345678901234567890123456789012345678901234567890123456789012345",
         SMPP_ID_ASIS, SMPP_ID_ASIS, SR_EINVAL, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char out[SMPP_ID_SIZE];
        char err[SR_ERRMSG_SIZE] = "";
        int rc = smpp_pdu_id_normalize(cases[i].id, cases[i].in, cases[i].as,
                                       out, err, sizeof err);
        if (rc != cases[i].rc || strcmp(out, cases[i].want) != 0)
            fail_msg("case %zu (%s): rc %d, out \"%s\"", i, cases[i].id, rc,
                     out);
    }
}

static void test_bind_resp_and_more(void **state)
{
    (void)state;
    struct pb p;
    struct smpp_pdu u;
    uint32_t nack;
    char err[SR_ERRMSG_SIZE] = "";

    phdr(&p, SMPP_BIND_TRANSCEIVER | SMPP_RESP, 0, 1);
    pstr(&p, "SMSC-A");
    ptlv(&p, 0x0210, "\x34", 1);
    pfin(&p);
    assert_int_equal(unpack(&p, &u, &nack, err), 0);
    assert_true(u.body);
    assert_string_equal(u.system_id, "SMSC-A");
    assert_true(u.has_sc_interface_version);
    assert_int_equal(u.sc_interface_version, 0x34);

    phdr(&p, SMPP_SUBMIT_SM | SMPP_RESP, 0, 2);
    pstr(&p, "0A1B");
    pfin(&p);
    assert_int_equal(unpack(&p, &u, &nack, err), 0);
    assert_string_equal(u.message_id, "0A1B");

    phdr(&p, SMPP_OUTBIND, 0, 3);
    pstr(&p, "smsc"), pstr(&p, "pw");
    pfin(&p);
    assert_int_equal(unpack(&p, &u, &nack, err), 0);
    assert_string_equal(u.system_id, "smsc");
    assert_string_equal(u.password, "pw");

    /* Body-less PDUs. */
    uint32_t ids[] = {SMPP_ENQUIRE_LINK, SMPP_ENQUIRE_LINK | SMPP_RESP,
                      SMPP_UNBIND, SMPP_UNBIND | SMPP_RESP, SMPP_GENERIC_NACK};
    for (size_t i = 0; i < 5; i++) {
        phdr(&p, ids[i], 0, 4);
        pfin(&p);
        assert_int_equal(unpack(&p, &u, &nack, err), 0);
        assert_false(u.body);
        assert_int_equal(u.hdr.id, ids[i]);
        assert_int_equal(u.hdr.seq, 4);
        p8(&p, 0);
        pfin(&p);
        assert_int_equal(unpack(&p, &u, &nack, err), SR_EPARSE);
        assert_int_equal(nack, SMPP_RINVCMDLEN);
    }

    /* Not read by an ESME: header only. */
    phdr(&p, SMPP_BIND_TRANSMITTER, 0, 5);
    pstr(&p, "whatever");
    pfin(&p);
    assert_int_equal(unpack(&p, &u, &nack, err), 0);
    assert_false(u.body);

    /* data_sm carrying a receipt in TLVs. */
    phdr(&p, SMPP_DATA_SM, 0, 6);
    pstr(&p, "");
    p8(&p, 1), p8(&p, 1);
    pstr(&p, "393331234567");
    p8(&p, 5), p8(&p, 0);
    pstr(&p, "ACME");
    p8(&p, SMPP_ESM_DELIVERY_RECEIPT), p8(&p, 0), p8(&p, 0);
    ptlv(&p, 0x001E, "77\0", 3);
    ptlv(&p, 0x0427, "\x05", 1);
    ptlv(&p, 0x0423, "\x03\x00\x22", 3);
    ptlv(&p, 0x0017, "\x00\x00\x00\x10", 4);
    pfin(&p);
    assert_int_equal(unpack(&p, &u, &nack, err), 0);
    assert_int_equal(u.ntlv, 4);
    struct smpp_dlr d;
    assert_int_equal(smpp_pdu_receipt(&u, &d, err, sizeof err), 0);
    assert_string_equal(d.id, "77");
    assert_int_equal(d.state, SMPP_DLR_UNDELIVERABLE);
    assert_true(d.has_network_error_code);
    assert_int_equal(d.network_error_code[2], 0x22);
}

/* What libsmpp34 alone would crash on, or read past the end for. */
static void test_hostile(void **state)
{
    (void)state;
    struct pb p;
    struct smpp_pdu u;
    uint32_t nack;
    char err[SR_ERRMSG_SIZE] = "";

    /* The TLV bomb: 500 TLVs. */
    pdeliver(&p, 0, 1, 0, "x");
    for (int i = 0; i < 500; i++)
        ptlv(&p, 0x0204, "\x00\x01", 2);
    pfin(&p);
    assert_int_equal(unpack(&p, &u, &nack, err), SR_EPARSE);
    assert_int_equal(nack, SMPP_RINVOPTPARSTREAM);
    assert_non_null(strstr(err, "more than 16 TLVs"));

    /* 16 are fine, 17 are not. */
    pdeliver(&p, 0, 1, 0, "x");
    for (int i = 0; i < SMPP_PDU_MAX_TLVS; i++)
        ptlv(&p, 0x0204, "\x00\x01", 2);
    pfin(&p);
    assert_int_equal(unpack(&p, &u, &nack, err), 0);
    assert_int_equal(u.ntlv, SMPP_PDU_MAX_TLVS);
    ptlv(&p, 0x0204, "\x00\x01", 2);
    pfin(&p);
    assert_int_equal(unpack(&p, &u, &nack, err), SR_EPARSE);

    /* A TLV running past the end, a truncated TLV header. */
    pdeliver(&p, 0, 1, 0, "x");
    ptlv(&p, 0x001E, "abc\0", 4);
    p.n -= 2;
    pfin(&p);
    assert_int_equal(unpack(&p, &u, &nack, err), SR_EPARSE);
    assert_int_equal(nack, SMPP_RINVOPTPARSTREAM);
    assert_non_null(strstr(err, "runs past the end"));
    pdeliver(&p, 0, 1, 0, "x");
    p8(&p, 0x04), p8(&p, 0x27), p8(&p, 0);
    pfin(&p);
    assert_int_equal(unpack(&p, &u, &nack, err), SR_EPARSE);
    assert_non_null(strstr(err, "truncated TLV header"));

    /* A fixed-size TLV whose length field disagrees (libsmpp34 would read
     * one byte and take the next as a tag). */
    pdeliver(&p, 0, 1, 0, "x");
    ptlv(&p, 0x0427, "\x02\x00", 2);
    pfin(&p);
    assert_int_equal(unpack(&p, &u, &nack, err), SR_EPARSE);
    assert_int_equal(nack, SMPP_RINVPARLEN);
    /* receipted_message_id over 65. */
    char id70[70];
    memset(id70, 'a', sizeof id70);
    id70[69] = 0;
    pdeliver(&p, 0, 1, 0, "x");
    ptlv(&p, 0x001E, id70, 70);
    pfin(&p);
    assert_int_equal(unpack(&p, &u, &nack, err), SR_EPARSE);
    assert_int_equal(nack, SMPP_RINVPARLEN);

    /* C-Octet strings: too long for the field, or no NUL before the end
     * (libsmpp34's strlen would run off the buffer). */
    phdr(&p, SMPP_DELIVER_SM, 0, 1);
    pstr(&p, "");
    p8(&p, 1), p8(&p, 1);
    pstr(&p, "3933312345678901234567"); /* 22 characters */
    pfin(&p);
    assert_int_equal(unpack(&p, &u, &nack, err), SR_EPARSE);
    assert_non_null(strstr(err, "source_addr: longer than 20"));
    phdr(&p, SMPP_DELIVER_SM, 0, 1);
    pstr(&p, "");
    p8(&p, 1), p8(&p, 1);
    pmem(&p, "39333", 5);
    pfin(&p);
    assert_int_equal(unpack(&p, &u, &nack, err), SR_EPARSE);
    assert_non_null(strstr(err, "no NUL before the end"));
    phdr(&p, SMPP_SUBMIT_SM | SMPP_RESP, 0, 1);
    pmem(&p, "0A1B", 4);
    pfin(&p);
    assert_int_equal(unpack(&p, &u, &nack, err), SR_EPARSE);

    /* A truncated PDU: short_message longer than what is left. */
    pdeliver(&p, 0, 1, 0, "hello");
    p.n -= 2;
    pfin(&p);
    assert_int_equal(unpack(&p, &u, &nack, err), SR_EPARSE);
    assert_int_equal(nack, SMPP_RINVMSGLEN);
    /* ... and one cut in the middle of its fixed fields. */
    pdeliver(&p, 0, 1, 0, "hello");
    p.n = 40;
    pfin(&p);
    assert_int_equal(unpack(&p, &u, &nack, err), SR_EPARSE);
    assert_int_equal(nack, SMPP_RINVCMDLEN);
    /* A buffer shorter than its command_length is the caller's error. */
    pdeliver(&p, 0, 1, 0, "hello");
    pfin(&p);
    assert_int_equal(
        smpp_pdu_unpack(p.b, p.n - 1, 0, &u, &nack, err, sizeof err),
        SR_EINVAL);

    /* A response with an error status: header only, whatever follows,
     * even a status libsmpp34 does not know. */
    uint32_t statuses[] = {SMPP_RTHROTTLED, 0x00000400, 0xFFFFFFFF};
    for (size_t i = 0; i < 3; i++) {
        phdr(&p, SMPP_SUBMIT_SM | SMPP_RESP, statuses[i], 8);
        pmem(&p, "\xff\xff\xff", 3); /* not even a C string */
        pfin(&p);
        assert_int_equal(unpack(&p, &u, &nack, err), 0);
        assert_false(u.body);
        assert_int_equal(u.hdr.status, statuses[i]);
        assert_int_equal(u.hdr.seq, 8);
    }
    phdr(&p, SMPP_BIND_TRANSCEIVER | SMPP_RESP, SMPP_RINVCMDID + 0x0E, 1);
    pfin(&p);
    assert_int_equal(unpack(&p, &u, &nack, err), 0);
    assert_false(u.body);

    /* A header whose command id disagrees with its body: a deliver_sm body
     * under submit_sm_resp and under bind_transceiver_resp. */
    pdeliver(&p, 0, 1, 0, "hello");
    p.b[4] = 0x80, p.b[7] = 0x04;
    pfin(&p);
    assert_int_equal(unpack(&p, &u, &nack, err), SR_EPARSE);
    pdeliver(&p, 0, 1, 0, "hello");
    p.b[4] = 0x80, p.b[7] = 0x09;
    pfin(&p);
    assert_int_equal(unpack(&p, &u, &nack, err), SR_EPARSE);

    /* Requests libsmpp34 would refuse against the spec: a status it does
     * not list, sequence number 0, an NPI it does not list. */
    pdeliver(&p, 0x00000400, 0, 0, "hi");
    p.b[16 + 1 + 1] = 0x05; /* source NPI */
    pfin(&p);
    assert_int_equal(unpack(&p, &u, &nack, err), 0);
    assert_true(u.body);
    assert_int_equal(u.hdr.status, 0x400);
    assert_int_equal(u.hdr.seq, 0);
    assert_int_equal(u.source_npi, 5);
    assert_int_equal(u.message_len, 2);
}

/* The worst a PDU we accept can make libsmpp34 log stays well inside its
 * 2048-byte buffer: longest strings, most TLVs, the longest log lines. */
static void test_log_budget(void **state)
{
    (void)state;
    struct pb p;
    struct smpp_pdu u;
    uint32_t nack;
    char err[SR_ERRMSG_SIZE] = "";
    const char *a20 = "AAAAAAAAAAAAAAAAAAAA";
    char a64[65];
    memset(a64, 'B', 64);
    a64[64] = 0;
    uint8_t oct[1024];
    memset(oct, 'C', sizeof oct);
    size_t worst = 0;

    for (int kind = 0; kind < 3; kind++) {
        uint32_t id = kind == 0   ? SMPP_SUBMIT_SM
                      : kind == 1 ? SMPP_DELIVER_SM
                                  : SMPP_DATA_SM;
        phdr(&p, id, 0, 0x7FFFFFFF);
        pstr(&p, "ABCDE");
        p8(&p, 6), p8(&p, 18);
        pstr(&p, a20);
        p8(&p, 6), p8(&p, 18);
        pstr(&p, kind == 2 ? a64 : a20);
        if (kind == 2) {
            p8(&p, 0xFF), p8(&p, 0xFF), p8(&p, 0xFF);
            for (int i = 0; i < SMPP_PDU_MAX_TLVS; i++)
                ptlv(&p, 0x0017, "\xff\xff\xff\xff", 4); /* val32 */
        } else {
            p8(&p, 0xFF), p8(&p, 0xFF), p8(&p, 0xFF);
            pstr(&p, kind == 0 ? "0000010000000000" : "");
            pstr(&p, kind == 0 ? "0000010000000000" : "");
            for (int i = 0; i < 4; i++)
                p8(&p, 0xFF);
            p8(&p, 254);
            pmem(&p, oct, 254);
            for (int i = 0; i < SMPP_PDU_MAX_TLVS; i++)
                ptlv(&p, 0x020C, "\xff\xff", 2); /* val16 */
        }
        pfin(&p);
        memset(smpp34_strerror, 0, sizeof smpp34_strerror);
        assert_int_equal(unpack(&p, &u, &nack, err), 0);
        size_t used = strnlen(smpp34_strerror, sizeof smpp34_strerror);
        if (used > worst)
            worst = used;
    }
    /* bind_transceiver_resp with 16 vendor TLVs of 1024 octets. */
    phdr(&p, SMPP_BIND_TRANSCEIVER | SMPP_RESP, 0, 0x7FFFFFFF);
    pstr(&p, "ABCDEFGHIJKLMNO");
    for (int i = 0; i < SMPP_PDU_MAX_TLVS; i++)
        ptlv(&p, 0x1400, oct, 64);
    pfin(&p);
    assert_int_equal(unpack(&p, &u, &nack, err), 0);
    size_t used = strnlen(smpp34_strerror, sizeof smpp34_strerror);
    if (used > worst)
        worst = used;
    print_message("libsmpp34 log, worst case: %zu of 2048 bytes\n", worst);
    assert_true(worst < 1700);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_frame),
        cmocka_unit_test(test_pack_bytes),
        cmocka_unit_test(test_submit_round_trip),
        cmocka_unit_test(test_deliver_receipt_round_trip),
        cmocka_unit_test(test_receipt_text),
        cmocka_unit_test(test_id_normalize),
        cmocka_unit_test(test_bind_resp_and_more),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_log_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
