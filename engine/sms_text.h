/*
 * sms_text.h - the pure building blocks of email-to-SMS: the recipient
 * number (E.164), the sender address (numeric or alphanumeric, TON/NPI),
 * the text clean-up (line ends, signature, trailing blanks), and the
 * encoding and splitting of a UTF-8 text into SMPP short messages.
 *
 * No I/O, no clock, no randomness: the concatenation reference is an input
 * (the caller derives it from the message code), so the same text always
 * gives the same bytes. Errors follow node/errors.h: 0 or a negative SR_E*
 * code with one line in (err, errlen).
 *
 * Encoding (3GPP TS 23.038 6.2.1, SMPP 3.4 5.2.19): GSM 03.38 default
 * alphabet plus its extension table when every character fits (an extension
 * character is ESC 0x1B and its code: two septets), else UCS-2 as UTF-16BE
 * without a BOM (a character outside the BMP is a surrogate pair: two
 * units). GSM text is written unpacked, one septet per octet, which is what
 * SMSCs expect in submit_sm short_message with data_coding 0 (the SMSC packs
 * it for the air interface); data_coding 0x08 for UCS-2.
 *
 * Splitting (TS 23.040 9.2.3.24.1, SMPP 3.4 5.3.2.22-24): one message when
 * the text fits in 160 septets / 70 UCS-2 units, else parts of at most 153
 * septets / 67 units, never splitting an ESC pair or a surrogate pair.
 * Concatenation either by a UDH with an 8-bit reference (05 00 03 ref total
 * seq at the start of each part; the caller sets esm_class UDHI 0x40, which
 * each part carries in esm_class) or by the sar_* TLVs (values per part,
 * no UDH).
 */
#ifndef SR_ENGINE_SMS_TEXT_H
#define SR_ENGINE_SMS_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "+" and 8..15 digits (ITU-T E.164 6.1), NUL: 17 bytes. */
#define SMS_E164_SIZE 17
#define SMS_E164_MIN_DIGITS 8
#define SMS_E164_MAX_DIGITS 15

/* Normalises a recipient local part to E.164: "+393331234567",
 * "00393331234567" and "393331234567" all give "+393331234567". Spaces,
 * dots, dashes and parentheses are dropped. The digits (without the "+"
 * or "00") must number 8..15 and not start with 0. Returns 0 or SR_EINVAL
 * (the caller answers 550 5.1.3). out holds SMS_E164_SIZE bytes. */
int sms_e164_normalize(const char *in, size_t len, char out[SMS_E164_SIZE],
                       char *err, size_t errlen);

/* SMPP 3.4 5.2.5 / 5.2.6 values this module produces. */
#define SMS_TON_UNKNOWN 0
#define SMS_TON_INTERNATIONAL 1
#define SMS_TON_NATIONAL 2
#define SMS_TON_ALPHANUMERIC 5
#define SMS_NPI_UNKNOWN 0
#define SMS_NPI_E164 1

/* An alphanumeric sender is at most 11 characters (TS 23.040 9.1.2.5:
 * 10 octets of packed septets). A numeric one fits source_addr (20). */
#define SMS_SENDER_ALNUM_MAX 11
#define SMS_SENDER_NUM_MAX 20

enum sms_sender_kind {
    SMS_SENDER_INTERNATIONAL, /* "+39..." or "0039...": TON 1, NPI 1 */
    SMS_SENDER_NATIONAL,      /* "0333...": TON 2, NPI 1 */
    SMS_SENDER_NUMERIC,       /* other digits, e.g. a short code: TON 0 NPI 1 */
    SMS_SENDER_ALPHANUMERIC,  /* "MyShop": TON 5, NPI 0 */
};

/* What goes into submit_sm source_addr. Plain value, no pointers. */
struct sms_sender {
    enum sms_sender_kind kind;
    uint8_t ton;
    uint8_t npi;
    char addr[SMS_SENDER_NUM_MAX + 1]; /* digits without "+", or the name */
};

/* Classifies a sender (policy value or From local part). Numeric: optional
 * "+" or "00", then digits, with the separators of sms_e164_normalize
 * dropped; international ones follow the E.164 length rule loosely (1..15
 * digits, not starting with 0), others 1..20 digits. Alphanumeric: 1..11
 * characters, at least one not a digit, each from the ASCII part of the
 * GSM 03.38 default alphabet (letters, digits, space and
 * !"#%&'()*+,-./:;<=>?@_$). Non-ASCII letters such as "e acute" are in
 * the GSM table but SMSCs read the source_addr C-string (SMPP 3.4 5.2.8)
 * in different character sets, so they are refused. Returns 0 or
 * SR_EINVAL. */
int sms_sender_classify(const char *in, size_t len, struct sms_sender *out,
                        char *err, size_t errlen);

/* Text clean-up, in place; each returns the new length. */

/* CRLF -> LF (a lone CR is kept: it is a GSM character). */
size_t sms_text_crlf_to_lf(char *s, size_t len);

/* Cuts the text at the first line equal to the signature marker: the text
 * before that line is kept. marker is the line itself ("-- ") or the line
 * with its surrounding line ends ("\n-- \n"), both mean the same. Expects
 * LF line ends. A NULL or empty marker cuts nothing. */
size_t sms_text_cut_signature(const char *s, size_t len, const char *marker);

/* Drops trailing spaces, tabs, CRs and LFs. */
size_t sms_text_trim_trailing(const char *s, size_t len);

/* The three above in order: CRLF -> LF, cut at marker, trim. */
size_t sms_text_prepare(char *s, size_t len, const char *marker);

/* Encoding and splitting. */

#define SMS_DC_GSM 0x00  /* SMPP data_coding: SMSC default alphabet */
#define SMS_DC_UCS2 0x08 /* SMPP data_coding: UCS-2 (ISO/IEC 10646) */
#define SMS_ESM_UDHI 0x40

#define SMS_GSM_SINGLE 160 /* septets in a single message */
#define SMS_GSM_PART 153   /* septets in a concatenated part */
#define SMS_UCS2_SINGLE 70 /* UCS-2 units in a single message */
#define SMS_UCS2_PART 67   /* UCS-2 units in a concatenated part */
#define SMS_UDH_LEN 6      /* 05 00 03 ref total seq */
#define SMS_MAX_PARTS 255  /* the UDH and sar_total_segments are 8-bit */

enum sms_coding {
    SMS_CODING_GSM,  /* data_coding 0, unpacked septets */
    SMS_CODING_UCS2, /* data_coding 8, UTF-16BE */
};

enum sms_concat {
    SMS_CONCAT_UDH, /* 8-bit reference UDH in short_message, UDHI set */
    SMS_CONCAT_SAR, /* sar_msg_ref_num/total_segments/segment_seqnum TLVs */
};

enum sms_overflow {
    SMS_OVERFLOW_REJECT,   /* more parts than max_parts: SR_EFULL */
    SMS_OVERFLOW_TRUNCATE, /* keep the first max_parts parts */
};

struct sms_encode_opts {
    enum sms_concat concat;
    /* UDH uses the low 8 bits; sar_msg_ref_num all 16. */
    uint16_t ref;
    unsigned max_parts; /* 1..SMS_MAX_PARTS */
    enum sms_overflow overflow;
};

/* One short message. Owned by its struct sms_message. */
struct sms_part {
    const uint8_t *data; /* short_message: UDH (if any) then the text;
                            points into sms_message.buf */
    size_t len;          /* bytes at data, at most 160 */
    size_t units;        /* septets or UCS-2 units of text in this part */
    uint8_t data_coding; /* SMS_DC_GSM or SMS_DC_UCS2 */
    uint8_t esm_class;   /* SMS_ESM_UDHI when data starts with a UDH */
    bool sar;            /* the sar_* values below are to be sent */
    uint16_t sar_msg_ref_num;
    uint8_t sar_total_segments;
    uint8_t sar_segment_seqnum; /* 1-based */
};

/* The encoded text. The caller owns the struct (usually on its stack);
 * sms_encode fills it and sms_message_free releases what it points to. */
struct sms_message {
    enum sms_coding coding;
    size_t nparts;          /* parts[0..nparts) */
    struct sms_part *parts; /* malloc'd, owned */
    uint8_t *buf;           /* malloc'd, owned: every part's bytes */
    size_t units;           /* units of the whole text (before truncation) */
    unsigned parts_needed;  /* parts the whole text needs */
    bool truncated;         /* parts_needed > nparts */
};

/* Encodes text (UTF-8, len bytes) and splits it. An empty text is one empty
 * part. When truncating to max_parts == 1 the single-message limits apply
 * (160 / 70). Returns 0, SR_EINVAL (invalid UTF-8 or options), SR_EFULL
 * ("needs N parts, limit M", policy REJECT) or SR_ENOMEM; on error *out is
 * left empty (safe to free). */
int sms_encode(const char *text, size_t len, const struct sms_encode_opts *o,
               struct sms_message *out, char *err, size_t errlen);

/* Releases what sms_encode allocated; the struct is left empty. NULL ok. */
void sms_message_free(struct sms_message *m);

/* The GSM 03.38 septet of a Unicode code point: 0..127 in the default
 * table, 0x1B00 | code for the extension table, -1 when it has none. */
int sms_gsm_septet(uint32_t cp);

#endif
