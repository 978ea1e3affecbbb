/*
 * smpp_pdu.h - SMPP 3.4 PDUs as an ESME sends and receives them: framing,
 * header checks, packing and unpacking over libsmpp34, delivery receipts
 * and SMSC message ids. Pure: bytes in, bytes or structs out, no I/O.
 *
 * libsmpp34 (1.14.1) has sharp edges this module exists to blunt:
 * - each pack/unpack logs every field into a global 2 KB buffer
 *   (smpp34_strerror) with an unbounded pointer walk, so a PDU with many
 *   TLVs writes past it; we refuse more than SMPP_PDU_MAX_TLVS TLVs, which
 *   keeps the worst-case log under 1.6 KB (tests/unit/test_smpp_pdu.c
 *   measures it);
 * - C-Octet strings are read with strlen(), past the end of a body without
 *   a NUL; we check every string ourselves first;
 * - fixed-size TLVs are read at their fixed size whatever their length
 *   field says; we require the two to agree;
 * - it rejects command_status values it does not list, sequence number 0
 *   and TON/NPI values it does not list; we never unpack the body of a
 *   response with a non-zero status, and unpack requests from a copy where
 *   those fields are neutral (the real values are reported);
 * - smpp34_unpack2 trusts the command id in the buffer to pick the struct;
 *   we check the id and call smpp34_unpack with the struct we allocated.
 * - it keeps global state and is not thread-safe: every libsmpp34 call
 *   goes through this module, and the functions marked [lib] must be
 *   called from one thread only (the SMPP gateway's loop thread; the first
 *   caller becomes that thread and another one aborts). The other
 *   functions are pure and may be called anywhere.
 *
 * Errors: 0 or a negative SR_E* code (node/errors.h) with one line in
 * (err, errlen). Where a peer's PDU is refused, *nack says which
 * command_status a generic_nack (or response) should carry.
 */
#ifndef SR_GATEWAYS_SMPP_PDU_H
#define SR_GATEWAYS_SMPP_PDU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMPP_HEADER_LEN 16
#define SMPP_PDU_MAX_DEFAULT 65536     /* command_length bound when max is 0 */
#define SMPP_PDU_MAX_LIMIT (16u << 20) /* a larger configured max is cut */
#define SMPP_PDU_MAX_TLVS 16           /* see above: libsmpp34's log buffer */
#define SMPP_PACK_MAX 1600             /* enough for any PDU packed here */
#define SMPP_SM_MAX 253 /* short_message bytes libsmpp34 packs (254 - 1) */
#define SMPP_PAYLOAD_MAX 1024 /* message_payload bytes libsmpp34 handles */
#define SMPP_ID_SIZE 65       /* message_id: C-Octet string of 65 */

/* SMPP 3.4 5.1.2.1 command ids (libsmpp34's header defines the same values
 * under names that clash, e.g. "Reserved", so it stays out of ours). */
#define SMPP_GENERIC_NACK 0x80000000u
#define SMPP_BIND_RECEIVER 0x00000001u
#define SMPP_BIND_TRANSMITTER 0x00000002u
#define SMPP_SUBMIT_SM 0x00000004u
#define SMPP_DELIVER_SM 0x00000005u
#define SMPP_UNBIND 0x00000006u
#define SMPP_BIND_TRANSCEIVER 0x00000009u
#define SMPP_OUTBIND 0x0000000Bu
#define SMPP_ENQUIRE_LINK 0x00000015u
#define SMPP_DATA_SM 0x00000103u
#define SMPP_RESP 0x80000000u /* a response's id is the request's | this */

/* SMPP 3.4 5.1.3 command_status values this module and its callers use. */
#define SMPP_ROK 0x00u
#define SMPP_RINVMSGLEN 0x01u
#define SMPP_RINVCMDLEN 0x02u
#define SMPP_RINVCMDID 0x03u
#define SMPP_RSYSERR 0x08u
#define SMPP_RMSGQFUL 0x14u
#define SMPP_RTHROTTLED 0x58u
#define SMPP_RX_T_APPN 0x64u
#define SMPP_RINVOPTPARSTREAM 0xC0u
#define SMPP_RINVPARLEN 0xC2u

/* SMPP 3.4 5.2.12 esm_class message type bits. */
#define SMPP_ESM_TYPE_MASK 0x3Cu
#define SMPP_ESM_DELIVERY_RECEIPT 0x04u
#define SMPP_ESM_INTERMEDIATE 0x20u
#define SMPP_ESM_UDHI 0x40u

/* The 16-byte header (SMPP 3.4 3.2), host byte order. */
struct smpp_hdr {
    uint32_t length;
    uint32_t id;
    uint32_t status;
    uint32_t seq;
};

/* "bind_transceiver_resp", or "unknown" (static strings). */
const char *smpp_pdu_name(uint32_t id);

/* Reads and checks a header: buf holds at least 16 bytes. command_length
 * must be in [16, max_len] (max_len 0 means SMPP_PDU_MAX_DEFAULT; at most
 * SMPP_PDU_MAX_LIMIT, as libsmpp34 takes lengths as int) and the
 * command id one an ESME may meet: bind_transmitter, bind_receiver,
 * bind_transceiver, unbind, submit_sm, deliver_sm, enquire_link, data_sm
 * and their responses, generic_nack, outbind. *h is filled even when the
 * header is refused (the nack echoes its sequence number). Returns 0,
 * SR_EPARSE (*nack: SMPP_RINVCMDLEN or SMPP_RINVCMDID) or SR_EINVAL (fewer
 * than 16 bytes). */
int smpp_pdu_header(const uint8_t *buf, size_t len, uint32_t max_len,
                    struct smpp_hdr *h, uint32_t *nack, char *err,
                    size_t errlen);

#define SMPP_FRAME_MORE 0 /* need more bytes */
#define SMPP_FRAME_PDU 1  /* buf starts with one PDU of h->length bytes */

/* Framing over a stream buffer: SMPP_FRAME_MORE, SMPP_FRAME_PDU, or
 * SR_EPARSE when the stream cannot be framed any more (send generic_nack
 * with *nack and close). A bad header is reported as soon as its 16 bytes
 * are there, without waiting for the announced length. */
int smpp_pdu_frame(const uint8_t *buf, size_t len, uint32_t max_len,
                   struct smpp_hdr *h, uint32_t *nack, char *err,
                   size_t errlen);

/* An unpacked PDU: our own flat struct, no pointers (nothing to free).
 * Which fields are set depends on hdr.id; the rest are zero. */
struct smpp_pdu {
    struct smpp_hdr hdr;
    /* false: header only. Responses with a non-zero status, PDUs without a
     * body, and the ones an ESME does not read (bind requests,
     * deliver_sm_resp, data_sm_resp). */
    bool body;
    char system_id[16]; /* bind_*_resp, outbind */
    char password[9];   /* outbind */
    bool has_sc_interface_version;
    uint8_t sc_interface_version;  /* bind_*_resp */
    char message_id[SMPP_ID_SIZE]; /* submit_sm_resp */
    /* submit_sm, deliver_sm, data_sm */
    char service_type[6];
    uint8_t source_ton, source_npi;
    char source_addr[21];
    uint8_t dest_ton, dest_npi;
    char dest_addr[65]; /* 21 in submit_sm/deliver_sm, 65 in data_sm */
    uint8_t esm_class, protocol_id, priority_flag, registered_delivery;
    uint8_t data_coding;
    char schedule_delivery_time[17], validity_period[17]; /* submit_sm */
    /* short_message, or message_payload when short_message is empty */
    uint8_t message[SMPP_PAYLOAD_MAX];
    size_t message_len;
    bool message_from_payload;
    /* TLVs (the first of each tag counts) */
    unsigned ntlv;
    bool has_receipted_message_id;
    char receipted_message_id[SMPP_ID_SIZE];
    bool has_message_state;
    uint8_t message_state;
    bool has_sar;
    uint16_t sar_msg_ref_num;
    uint8_t sar_total_segments, sar_segment_seqnum;
    bool has_network_error_code;
    uint8_t network_error_code[3];
};

/* [lib] Unpacks one PDU: buf holds exactly one (len == command_length, as
 * smpp_pdu_frame said). Checks the header, then the body's strings and
 * TLVs (at most SMPP_PDU_MAX_TLVS, none running past the end, fixed sizes
 * as SMPP 3.4 5.3.2 says), then lets libsmpp34 decode it. Returns 0, or
 * SR_EPARSE with *nack (SMPP_RINVCMDLEN, SMPP_RINVCMDID, SMPP_RINVMSGLEN,
 * SMPP_RINVOPTPARSTREAM, SMPP_RINVPARLEN or SMPP_RSYSERR), or SR_EINVAL
 * when len is not the command_length (a caller's error), or SR_ENOMEM;
 * out->hdr is filled whenever the header could be read. */
int smpp_pdu_unpack(const uint8_t *buf, size_t len, uint32_t max_len,
                    struct smpp_pdu *out, uint32_t *nack, char *err,
                    size_t errlen);

/* Packing. Each writes one PDU into out (cap bytes; SMPP_PACK_MAX is
 * always enough) and its length into *len. Strings are borrowed for the
 * call; NULL means "". A string longer than its field is SR_EINVAL, never
 * cut. seq must be 1..0x7FFFFFFF (SMPP 3.4 3.2). */

struct smpp_bind {
    const char *system_id;   /* at most 15 */
    const char *password;    /* at most 8 */
    const char *system_type; /* at most 12 */
    uint8_t addr_ton, addr_npi;
    const char *address_range; /* at most 40 */
};

/* [lib] bind_transmitter, bind_receiver or bind_transceiver (cmd), with
 * interface_version 0x34. */
int smpp_pdu_pack_bind(uint32_t cmd, uint32_t seq, const struct smpp_bind *b,
                       uint8_t *out, size_t cap, size_t *len, char *err,
                       size_t errlen);

/* A body-less PDU: enquire_link, enquire_link_resp, unbind, unbind_resp or
 * generic_nack (status is only for responses and generic_nack; seq 0 is
 * allowed for generic_nack, which may answer an unreadable header). */
int smpp_pdu_pack_header(uint32_t cmd, uint32_t status, uint32_t seq,
                         uint8_t *out, size_t cap, size_t *len, char *err,
                         size_t errlen);

/* deliver_sm_resp (message_id is always empty, SMPP 3.4 4.6.2). */
int smpp_pdu_pack_deliver_sm_resp(uint32_t seq, uint32_t status, uint8_t *out,
                                  size_t cap, size_t *len, char *err,
                                  size_t errlen);

/* A short message to pack (submit_sm; deliver_sm for tests and
 * simulators). */
struct smpp_sm {
    const char *service_type; /* at most 5 */
    uint8_t source_ton, source_npi;
    const char *source_addr; /* at most 20 */
    uint8_t dest_ton, dest_npi;
    const char *dest_addr; /* at most 20 */
    uint8_t esm_class;     /* SMPP_ESM_UDHI when message starts with a UDH */
    uint8_t protocol_id, priority_flag;
    bool no_receipt;             /* registered_delivery 0 instead of 1 */
    const char *validity_period; /* submit_sm only, at most 16 */
    uint8_t data_coding;
    /* At most SMPP_SM_MAX bytes go in short_message, more (up to
     * SMPP_PAYLOAD_MAX) in a message_payload TLV. */
    const uint8_t *message;
    size_t message_len;
    bool sar; /* add sar_msg_ref_num, sar_total_segments, sar_segment_seqnum */
    uint16_t sar_msg_ref_num;
    uint8_t sar_total_segments, sar_segment_seqnum;
    /* deliver_sm only: receipt TLVs when non-NULL / non-zero */
    const char *receipted_message_id; /* at most 64 */
    uint8_t message_state;
};

/* [lib] submit_sm. */
int smpp_pdu_pack_submit_sm(uint32_t seq, const struct smpp_sm *m, uint8_t *out,
                            size_t cap, size_t *len, char *err, size_t errlen);

/* [lib] deliver_sm (as an SMSC sends it). */
int smpp_pdu_pack_deliver_sm(uint32_t seq, const struct smpp_sm *m,
                             uint8_t *out, size_t cap, size_t *len, char *err,
                             size_t errlen);

/* Delivery receipts (SMPP 3.4 5.2.28 message_state, appendix B text). */
enum smpp_dlr_state {
    SMPP_DLR_ENROUTE = 1,
    SMPP_DLR_DELIVERED = 2,
    SMPP_DLR_EXPIRED = 3,
    SMPP_DLR_DELETED = 4,
    SMPP_DLR_UNDELIVERABLE = 5,
    SMPP_DLR_ACCEPTED = 6,
    SMPP_DLR_UNKNOWN = 7,
    SMPP_DLR_REJECTED = 8,
};

/* "delivered", "undeliverable", ... (static strings). */
const char *smpp_dlr_state_name(enum smpp_dlr_state s);

/* The stat: word of a receipt text ("DELIVRD" or "delivered", any case);
 * SMPP_DLR_UNKNOWN when it is none of them. */
enum smpp_dlr_state smpp_dlr_state_from_stat(const char *s, size_t len);

struct smpp_dlr {
    char id[SMPP_ID_SIZE]; /* as the SMSC wrote it: see smpp_pdu_id_normalize */
    enum smpp_dlr_state state;
    bool id_from_tlv, state_from_tlv;
    char err[8];          /* the err: value ("" when absent) */
    char submit_date[16]; /* YYMMDDhhmm[ss] ("" when absent) */
    char done_date[16];
    bool has_network_error_code;
    uint8_t network_error_code[3];
};

/* Parses "id:X sub:001 dlvrd:001 submit date:YYMMDDhhmm done
 * date:YYMMDDhhmm stat:DELIVRD err:000 text:..." (keys in any case,
 * "submit_date" too, fields in any order and any of them missing but id).
 * A missing stat gives SMPP_DLR_UNKNOWN. Returns 0 or SR_EPARSE. */
int smpp_dlr_parse_text(const uint8_t *text, size_t len, struct smpp_dlr *d,
                        char *err, size_t errlen);

/* The receipt in a deliver_sm or data_sm whose esm_class says SMSC
 * delivery receipt (or intermediate notification): id and state from the
 * receipted_message_id and message_state TLVs when present, the rest from
 * the text (UCS-2 text is read too). Returns 0, SR_EINVAL (not a receipt)
 * or SR_EPARSE. */
int smpp_pdu_receipt(const struct smpp_pdu *p, struct smpp_dlr *d, char *err,
                     size_t errlen);

/* SMSC message ids. Some SMSCs answer submit_sm with a hex id and put the
 * decimal one in the receipt (or the other way round), with any case and
 * leading zeros. `in` says how this SMSC writes an id, `as` the form we
 * keep: SMPP_ID_ASIS keeps the text (lowercased, leading zeros dropped),
 * SMPP_ID_HEX and SMPP_ID_DEC read or write a number of at most 64 bits.
 * With the same `as`, hex "0A1B" and decimal "2587" both give "2587" (as
 * DEC) or "a1b" (as HEX). `as` must be ASIS when `in` is. */
enum smpp_id_mode {
    SMPP_ID_ASIS,
    SMPP_ID_HEX,
    SMPP_ID_DEC,
};

/* Returns 0 or SR_EINVAL (empty, too long, not a number of that base,
 * more than 64 bits). out holds SMPP_ID_SIZE bytes. */
int smpp_pdu_id_normalize(const char *id, enum smpp_id_mode in,
                          enum smpp_id_mode as, char out[SMPP_ID_SIZE],
                          char *err, size_t errlen);

#endif
