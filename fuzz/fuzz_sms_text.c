/*
 * fuzz_sms_text.c - libFuzzer target for the SMS text path
 * (engine/sms_text.h): clean-up, encoding and splitting of arbitrary bytes
 * taken as UTF-8, and the number and sender checks.
 *
 * Input: byte 0 = options (bit 0: sar instead of UDH, bit 1: truncate
 * instead of reject), byte 1 = max_parts (0 and over 255 are refused),
 * bytes 2-3 = the reference, the rest = the text.
 *
 * Checked against an independent reading of the input: sms_encode fails
 * with SR_EINVAL exactly when the text is not valid UTF-8, with SR_EFULL
 * only when rejecting more parts than allowed; otherwise the parts decode
 * back (GSM septets through the table, UTF-16BE) to the input's
 * characters, all of them or a prefix when truncated, each part within its
 * limit and none ending inside an ESC or surrogate pair, with the right
 * UDH or sar values. The clean-up never grows the text and leaves no
 * signature line.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sms_text.h"
#include "node/errors.h"

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond))                                                           \
            __builtin_trap();                                                  \
    } while (0)

/* septet -> code point, extension septet -> code point; 0xFFFFFFFF none. */
static uint32_t basic[128], ext[128];

static void init_tables(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    for (int i = 0; i < 128; i++)
        basic[i] = ext[i] = 0xFFFFFFFF;
    for (uint32_t cp = 0; cp < 0x2100; cp++) {
        int s = sms_gsm_septet(cp);
        if (s < 0)
            continue;
        if (s & 0x1B00)
            ext[s & 0x7F] = cp;
        else
            basic[s] = cp;
    }
}

/* A strict UTF-8 reading, written apart from the one under test. */
static long decode_utf8(const uint8_t *s, size_t n, uint32_t *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t c = s[i];
        size_t len;
        if (c < 0x80)
            len = 1;
        else if ((c & 0xE0) == 0xC0)
            len = 2, c &= 0x1F;
        else if ((c & 0xF0) == 0xE0)
            len = 3, c &= 0x0F;
        else if ((c & 0xF8) == 0xF0)
            len = 4, c &= 0x07;
        else
            return -1;
        if (i + len > n)
            return -1;
        for (size_t j = 1; j < len; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return -1;
            c = (c << 6) | (s[i + j] & 0x3F);
        }
        static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
        if (c < min[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            return -1;
        out[k++] = c;
        i += len;
    }
    return (long)k;
}

/* Decodes a part's text back to code points; returns how many. */
static size_t decode_part(const struct sms_part *p, size_t off, uint32_t *out)
{
    size_t k = 0;
    const uint8_t *b = p->data + off;
    size_t n = p->len - off;
    if (p->data_coding == SMS_DC_GSM) {
        for (size_t i = 0; i < n; i++) {
            CHECK(b[i] < 0x80);
            if (b[i] == 0x1B) {
                CHECK(i + 1 < n); /* never an ESC at the end of a part */
                CHECK(ext[b[i + 1]] != 0xFFFFFFFF);
                out[k++] = ext[b[++i]];
            } else {
                CHECK(basic[b[i]] != 0xFFFFFFFF);
                out[k++] = basic[b[i]];
            }
        }
    } else {
        CHECK(n % 2 == 0);
        for (size_t i = 0; i < n; i += 2) {
            uint32_t u = (uint32_t)b[i] << 8 | b[i + 1];
            if (u >= 0xD800 && u <= 0xDBFF) {
                CHECK(i + 3 < n); /* the low half is in the same part */
                uint32_t lo = (uint32_t)b[i + 2] << 8 | b[i + 3];
                CHECK(lo >= 0xDC00 && lo <= 0xDFFF);
                out[k++] = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
                i += 2;
            } else {
                CHECK(u < 0xDC00 || u > 0xDFFF);
                out[k++] = u;
            }
        }
    }
    return k;
}

static void check_encode(const uint8_t *text, size_t n, uint8_t flags,
                         unsigned max_parts, uint16_t ref, const uint32_t *cps,
                         long ncp)
{
    struct sms_encode_opts o = {
        .concat = (flags & 1) ? SMS_CONCAT_SAR : SMS_CONCAT_UDH,
        .ref = ref,
        .max_parts = max_parts,
        .overflow = (flags & 2) ? SMS_OVERFLOW_TRUNCATE : SMS_OVERFLOW_REJECT,
    };
    struct sms_message m;
    char err[SR_ERRMSG_SIZE] = "";
    int rc = sms_encode((const char *)text, n, &o, &m, err, sizeof err);
    if (max_parts < 1 || max_parts > SMS_MAX_PARTS) {
        CHECK(rc == SR_EINVAL);
        CHECK(m.parts == NULL);
        return;
    }
    if (ncp < 0) {
        CHECK(rc == SR_EINVAL);
        CHECK(m.parts == NULL && m.nparts == 0);
        return;
    }
    if (rc == SR_ENOMEM)
        return;
    if (rc == SR_EFULL) {
        CHECK(!(flags & 2) && m.parts_needed > max_parts && m.parts == NULL);
        return;
    }
    CHECK(rc == 0);
    CHECK(m.nparts >= 1 && m.nparts <= max_parts);
    CHECK(m.truncated == (m.parts_needed > m.nparts));
    bool gsm = m.coding == SMS_CODING_GSM;
    size_t single = gsm ? SMS_GSM_SINGLE : SMS_UCS2_SINGLE;
    size_t per = gsm ? SMS_GSM_PART : SMS_UCS2_PART;
    CHECK((m.units <= single) == (m.parts_needed == 1));

    uint32_t *back = malloc(((size_t)ncp + 1) * sizeof *back);
    if (back == NULL) {
        sms_message_free(&m);
        return;
    }
    size_t k = 0, units = 0;
    for (size_t p = 0; p < m.nparts; p++) {
        const struct sms_part *pt = &m.parts[p];
        CHECK(pt->data_coding == (gsm ? SMS_DC_GSM : SMS_DC_UCS2));
        CHECK(pt->units <= (m.nparts == 1 ? single : per));
        size_t off = 0;
        if (m.nparts > 1 && o.concat == SMS_CONCAT_UDH) {
            CHECK(pt->len >= SMS_UDH_LEN && pt->esm_class == SMS_ESM_UDHI);
            CHECK(pt->data[0] == 5 && pt->data[1] == 0 && pt->data[2] == 3);
            CHECK(pt->data[3] == (ref & 0xFF));
            CHECK(pt->data[4] == m.nparts && pt->data[5] == p + 1);
            CHECK(!pt->sar);
            off = SMS_UDH_LEN;
        } else if (m.nparts > 1) {
            CHECK(pt->sar && pt->sar_msg_ref_num == ref);
            CHECK(pt->sar_total_segments == m.nparts);
            CHECK(pt->sar_segment_seqnum == p + 1 && pt->esm_class == 0);
        } else {
            CHECK(!pt->sar && pt->esm_class == 0);
        }
        CHECK(pt->len - off == (gsm ? pt->units : 2 * pt->units));
        CHECK(pt->len <= 160);
        /* A part is full unless the next character would not fit. */
        if (p + 1 < m.nparts)
            CHECK(pt->units + 1 >= per);
        k += decode_part(pt, off, back + k);
        CHECK(k <= (size_t)ncp);
        units += pt->units;
    }
    CHECK(memcmp(back, cps, k * sizeof *back) == 0);
    if (!m.truncated) {
        CHECK(k == (size_t)ncp && units == m.units);
    } else {
        CHECK(k < (size_t)ncp && units < m.units);
    }
    free(back);
    sms_message_free(&m);
    CHECK(m.parts == NULL && m.buf == NULL);
}

static void check_cleanup(const uint8_t *text, size_t n)
{
    char *s = malloc(n + 1);
    if (s == NULL)
        return;
    memcpy(s, text, n);
    size_t k = sms_text_prepare(s, n, "\n-- \n");
    CHECK(k <= n);
    s[k] = '\0';
    if (k > 0)
        CHECK(s[k - 1] != ' ' && s[k - 1] != '\n' && s[k - 1] != '\t' &&
              s[k - 1] != '\r');
    /* No line equal to the marker is left. */
    CHECK(sms_text_cut_signature(s, k, "-- ") == k);
    free(s);
}

static void check_numbers(const uint8_t *text, size_t n)
{
    if (n > 64)
        n = 64;
    char out[SMS_E164_SIZE];
    if (sms_e164_normalize((const char *)text, n, out, NULL, 0) == 0) {
        size_t l = strlen(out);
        CHECK(out[0] == '+' && out[1] != '0');
        CHECK(l >= 1 + SMS_E164_MIN_DIGITS && l <= 1 + SMS_E164_MAX_DIGITS);
        for (size_t i = 1; i < l; i++)
            CHECK(out[i] >= '0' && out[i] <= '9');
        /* Normalising the result gives the result. */
        char again[SMS_E164_SIZE];
        CHECK(sms_e164_normalize(out, l, again, NULL, 0) == 0);
        CHECK(strcmp(out, again) == 0);
    }
    struct sms_sender s;
    if (sms_sender_classify((const char *)text, n, &s, NULL, 0) == 0) {
        size_t l = strlen(s.addr);
        CHECK(l >= 1);
        if (s.kind == SMS_SENDER_ALPHANUMERIC)
            CHECK(l <= SMS_SENDER_ALNUM_MAX && s.ton == 5 && s.npi == 0);
        else
            CHECK(l <= SMS_SENDER_NUM_MAX && s.npi == 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    init_tables();
    uint8_t flags = data[0];
    unsigned max_parts = data[1] == 0 ? 256 : data[1];
    if (flags & 4)
        max_parts = 0;
    uint16_t ref = (uint16_t)(data[2] << 8 | data[3]);
    const uint8_t *text = data + 4;
    size_t n = size - 4;

    uint32_t *cps = malloc((n + 1) * sizeof *cps);
    if (cps == NULL)
        return 0;
    long ncp = decode_utf8(text, n, cps);
    check_encode(text, n, flags, max_parts, ref, cps, ncp);
    free(cps);
    check_cleanup(text, n);
    check_numbers(text, n);
    return 0;
}
