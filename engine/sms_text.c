/* sms_text.c - E.164, senders, text clean-up, GSM/UCS-2 encoding and
 * splitting for SMS (see sms_text.h). */
#include "engine/sms_text.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "node/errors.h"

/* 3GPP TS 23.038 6.2.1: the default alphabet, septet -> code point. 0x1B is
 * the escape to the extension table and maps to no character. */
static const uint16_t gsm_basic[128] = {
    0x0040, 0x00A3, 0x0024, 0x00A5, 0x00E8, 0x00E9, 0x00F9, 0x00EC, /* 00 */
    0x00F2, 0x00C7, 0x000A, 0x00D8, 0x00F8, 0x000D, 0x00C5, 0x00E5, /* 08 */
    0x0394, 0x005F, 0x03A6, 0x0393, 0x039B, 0x03A9, 0x03A0, 0x03A8, /* 10 */
    0x03A3, 0x0398, 0x039E, 0xFFFF, 0x00C6, 0x00E6, 0x00DF, 0x00C9, /* 18 */
    0x0020, 0x0021, 0x0022, 0x0023, 0x00A4, 0x0025, 0x0026, 0x0027, /* 20 */
    0x0028, 0x0029, 0x002A, 0x002B, 0x002C, 0x002D, 0x002E, 0x002F, /* 28 */
    0x0030, 0x0031, 0x0032, 0x0033, 0x0034, 0x0035, 0x0036, 0x0037, /* 30 */
    0x0038, 0x0039, 0x003A, 0x003B, 0x003C, 0x003D, 0x003E, 0x003F, /* 38 */
    0x00A1, 0x0041, 0x0042, 0x0043, 0x0044, 0x0045, 0x0046, 0x0047, /* 40 */
    0x0048, 0x0049, 0x004A, 0x004B, 0x004C, 0x004D, 0x004E, 0x004F, /* 48 */
    0x0050, 0x0051, 0x0052, 0x0053, 0x0054, 0x0055, 0x0056, 0x0057, /* 50 */
    0x0058, 0x0059, 0x005A, 0x00C4, 0x00D6, 0x00D1, 0x00DC, 0x00A7, /* 58 */
    0x00BF, 0x0061, 0x0062, 0x0063, 0x0064, 0x0065, 0x0066, 0x0067, /* 60 */
    0x0068, 0x0069, 0x006A, 0x006B, 0x006C, 0x006D, 0x006E, 0x006F, /* 68 */
    0x0070, 0x0071, 0x0072, 0x0073, 0x0074, 0x0075, 0x0076, 0x0077, /* 70 */
    0x0078, 0x0079, 0x007A, 0x00E4, 0x00F6, 0x00F1, 0x00FC, 0x00E0, /* 78 */
};

/* TS 23.038 6.2.1.1: the extension table reached through ESC. */
static const struct {
    uint16_t cp;
    uint8_t code;
} gsm_ext[] = {
    {0x000C, 0x0A}, /* form feed */
    {0x005E, 0x14}, /* ^ */
    {0x007B, 0x28}, /* { */
    {0x007D, 0x29}, /* } */
    {0x005C, 0x2F}, /* \ */
    {0x005B, 0x3C}, /* [ */
    {0x007E, 0x3D}, /* ~ */
    {0x005D, 0x3E}, /* ] */
    {0x007C, 0x40}, /* | */
    {0x20AC, 0x65}, /* euro sign */
};

int sms_gsm_septet(uint32_t cp)
{
    /* ASCII letters and digits sit at their own code (fast path). */
    if ((cp >= 'A' && cp <= 'Z') || (cp >= 'a' && cp <= 'z') ||
        (cp >= '0' && cp <= '9'))
        return (int)cp;
    for (size_t i = 0; i < 128; i++)
        if (gsm_basic[i] == cp && i != 0x1B)
            return (int)i;
    for (size_t i = 0; i < sizeof gsm_ext / sizeof *gsm_ext; i++)
        if (gsm_ext[i].cp == cp)
            return 0x1B00 | gsm_ext[i].code;
    return -1;
}

/* Decodes one UTF-8 character (RFC 3629: no overlongs, no surrogates, at
 * most U+10FFFF). Returns its length or 0 when invalid. */
static size_t utf8_next(const uint8_t *s, size_t len, uint32_t *cp)
{
    uint8_t c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t n;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2, v = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3, v = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return n;
}

static bool is_sep(char c)
{
    return c == ' ' || c == '.' || c == '-' || c == '(' || c == ')';
}

/* Collects the digits of a number, dropping separators. *plus says whether
 * it started with "+". Returns the digit count, or -1 when something else
 * is there or there are more than max digits. */
static int number_digits(const char *in, size_t len, char *digits, size_t max,
                         bool *plus)
{
    size_t n = 0;
    *plus = false;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '+' && n == 0 && !*plus) {
            /* Only separators may come before the "+". */
            *plus = true;
        } else if (c >= '0' && c <= '9') {
            if (n == max)
                return -1;
            digits[n++] = c;
        } else if (!is_sep(c)) {
            return -1;
        }
    }
    return (int)n;
}

int sms_e164_normalize(const char *in, size_t len, char out[SMS_E164_SIZE],
                       char *err, size_t errlen)
{
    char shown[80];
    char digits[40];
    bool plus;
    out[0] = '\0';
    sr_sanitize(shown, sizeof shown, in, len);
    int n = number_digits(in, len, digits, sizeof digits - 1, &plus);
    if (n < 0)
        return sr_err(err, errlen, SR_EINVAL, "not a phone number: %s", shown);
    const char *d = digits;
    if (!plus && n >= 2 && d[0] == '0' && d[1] == '0') {
        d += 2;
        n -= 2;
    }
    if (n < SMS_E164_MIN_DIGITS || n > SMS_E164_MAX_DIGITS)
        return sr_err(err, errlen, SR_EINVAL,
                      "%s: an E.164 number has %d to %d digits, not %d", shown,
                      SMS_E164_MIN_DIGITS, SMS_E164_MAX_DIGITS, n);
    if (d[0] == '0')
        return sr_err(err, errlen, SR_EINVAL,
                      "%s: no country code (the number starts with 0)", shown);
    out[0] = '+';
    memcpy(out + 1, d, (size_t)n);
    out[n + 1] = '\0';
    return 0;
}

/* The ASCII characters of the GSM default alphabet (see sms_text.h). */
static bool alnum_ok(char c)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
        (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr(" !\"#%&'()*+,-./:;<=>?@_$", c) != NULL;
}

int sms_sender_classify(const char *in, size_t len, struct sms_sender *out,
                        char *err, size_t errlen)
{
    char shown[80];
    memset(out, 0, sizeof *out);
    sr_sanitize(shown, sizeof shown, in, len);
    if (len == 0)
        return sr_err(err, errlen, SR_EINVAL, "empty sender");

    char digits[SMS_SENDER_NUM_MAX + 3];
    bool plus;
    int n = number_digits(in, len, digits, sizeof digits - 1, &plus);
    if (n > 0) {
        const char *d = digits;
        bool intl = plus;
        if (!plus && n > 2 && d[0] == '0' && d[1] == '0') {
            d += 2;
            n -= 2;
            intl = true;
        }
        if (intl) {
            if (n > SMS_E164_MAX_DIGITS || d[0] == '0')
                return sr_err(err, errlen, SR_EINVAL,
                              "sender %s: not an international number", shown);
            out->kind = SMS_SENDER_INTERNATIONAL;
            out->ton = SMS_TON_INTERNATIONAL;
        } else if (n > SMS_SENDER_NUM_MAX) {
            return sr_err(err, errlen, SR_EINVAL,
                          "sender %s: more than %d digits", shown,
                          SMS_SENDER_NUM_MAX);
        } else if (d[0] == '0') {
            out->kind = SMS_SENDER_NATIONAL;
            out->ton = SMS_TON_NATIONAL;
        } else {
            out->kind = SMS_SENDER_NUMERIC;
            out->ton = SMS_TON_UNKNOWN;
        }
        out->npi = SMS_NPI_E164;
        memcpy(out->addr, d, (size_t)n);
        out->addr[n] = '\0';
        return 0;
    }
    if (n == 0 || plus)
        return sr_err(err, errlen, SR_EINVAL, "sender %s: no digits", shown);

    /* Alphanumeric. */
    if (len > SMS_SENDER_ALNUM_MAX)
        return sr_err(err, errlen, SR_EINVAL,
                      "sender %s: an alphanumeric sender has at most %d "
                      "characters",
                      shown, SMS_SENDER_ALNUM_MAX);
    for (size_t i = 0; i < len; i++)
        if (!alnum_ok(in[i]))
            return sr_err(err, errlen, SR_EINVAL,
                          "sender %s: character %zu is not allowed in an "
                          "alphanumeric sender",
                          shown, i + 1);
    if (in[0] == ' ' || in[len - 1] == ' ')
        return sr_err(err, errlen, SR_EINVAL,
                      "sender %s: leading or trailing space", shown);
    out->kind = SMS_SENDER_ALPHANUMERIC;
    out->ton = SMS_TON_ALPHANUMERIC;
    out->npi = SMS_NPI_UNKNOWN;
    memcpy(out->addr, in, len);
    out->addr[len] = '\0';
    return 0;
}

size_t sms_text_crlf_to_lf(char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\r' && i + 1 < len && s[i + 1] == '\n')
            continue;
        s[o++] = s[i];
    }
    return o;
}

size_t sms_text_cut_signature(const char *s, size_t len, const char *marker)
{
    if (marker == NULL)
        return len;
    size_t ml = strlen(marker);
    /* "\n-- \n" and "-- " name the same line. */
    while (ml > 0 && marker[0] == '\n')
        marker++, ml--;
    while (ml > 0 && marker[ml - 1] == '\n')
        ml--;
    if (ml == 0 || memchr(marker, '\n', ml) != NULL)
        return len;
    size_t start = 0;
    while (start <= len) {
        const char *nl = memchr(s + start, '\n', len - start);
        size_t end = nl != NULL ? (size_t)(nl - s) : len;
        if (end - start == ml && memcmp(s + start, marker, ml) == 0)
            return start;
        if (nl == NULL)
            break;
        start = end + 1;
    }
    return len;
}

size_t sms_text_trim_trailing(const char *s, size_t len)
{
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' ||
                       s[len - 1] == '\r' || s[len - 1] == '\n'))
        len--;
    return len;
}

size_t sms_text_prepare(char *s, size_t len, const char *marker)
{
    len = sms_text_crlf_to_lf(s, len);
    len = sms_text_cut_signature(s, len, marker);
    return sms_text_trim_trailing(s, len);
}

void sms_message_free(struct sms_message *m)
{
    if (m == NULL)
        return;
    free(m->parts);
    free(m->buf);
    memset(m, 0, sizeof *m);
}

/* One decoded character: its code point and how many units it takes in the
 * chosen coding (1, or 2 for an ESC pair or a surrogate pair). */
struct ch {
    uint32_t cp;
    uint8_t units;
};

/* Writes the text bytes of chars[0..n) in coding c; returns bytes written. */
static size_t put_text(uint8_t *o, const struct ch *chars, size_t n,
                       enum sms_coding c)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = chars[i].cp;
        if (c == SMS_CODING_GSM) {
            int s = sms_gsm_septet(cp);
            if (s & 0x1B00) {
                o[k++] = 0x1B;
                o[k++] = (uint8_t)(s & 0x7F);
            } else {
                o[k++] = (uint8_t)s;
            }
        } else if (cp >= 0x10000) {
            uint32_t v = cp - 0x10000;
            uint16_t hi = (uint16_t)(0xD800 | (v >> 10));
            uint16_t lo = (uint16_t)(0xDC00 | (v & 0x3FF));
            o[k++] = (uint8_t)(hi >> 8);
            o[k++] = (uint8_t)hi;
            o[k++] = (uint8_t)(lo >> 8);
            o[k++] = (uint8_t)lo;
        } else {
            o[k++] = (uint8_t)(cp >> 8);
            o[k++] = (uint8_t)cp;
        }
    }
    return k;
}

int sms_encode(const char *text, size_t len, const struct sms_encode_opts *o,
               struct sms_message *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (o->max_parts < 1 || o->max_parts > SMS_MAX_PARTS)
        return sr_err(err, errlen, SR_EINVAL, "max_parts %u not in 1..%d",
                      o->max_parts, SMS_MAX_PARTS);

    /* Decode, and see whether everything fits the GSM alphabet. */
    struct ch *chars = malloc((len ? len : 1) * sizeof *chars);
    if (chars == NULL)
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    const uint8_t *s = (const uint8_t *)text;
    size_t n = 0;
    bool gsm = true;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t k = utf8_next(s + i, len - i, &cp);
        if (k == 0) {
            free(chars);
            return sr_err(err, errlen, SR_EINVAL, "invalid UTF-8 at byte %zu",
                          i);
        }
        int sep = gsm ? sms_gsm_septet(cp) : -1;
        if (sep < 0)
            gsm = false;
        chars[n].cp = cp;
        chars[n].units = (uint8_t)(sep >= 0 && (sep & 0x1B00) ? 2 : 1);
        n++;
        i += k;
    }
    enum sms_coding coding = gsm ? SMS_CODING_GSM : SMS_CODING_UCS2;
    size_t units = 0;
    for (size_t i = 0; i < n; i++) {
        if (!gsm)
            chars[i].units = chars[i].cp >= 0x10000 ? 2 : 1;
        units += chars[i].units;
    }
    size_t single = gsm ? SMS_GSM_SINGLE : SMS_UCS2_SINGLE;
    size_t per = gsm ? SMS_GSM_PART : SMS_UCS2_PART;

    /* Count parts: greedy, a pair never split. */
    size_t needed = 1;
    if (units > single) {
        size_t cur = 0;
        for (size_t i = 0; i < n; i++) {
            if (cur + chars[i].units > per) {
                needed++;
                cur = 0;
            }
            cur += chars[i].units;
        }
    }
    out->coding = coding;
    out->units = units;
    out->parts_needed = needed > UINT_MAX ? UINT_MAX : (unsigned)needed;

    size_t nparts = needed;
    if (needed > o->max_parts) {
        if (o->overflow != SMS_OVERFLOW_TRUNCATE) {
            free(chars);
            return sr_err(err, errlen, SR_EFULL, "needs %zu parts, limit %u",
                          needed, o->max_parts);
        }
        nparts = o->max_parts;
        out->truncated = true;
    }
    /* A single part uses the single-message limit and no concatenation. */
    size_t limit = nparts == 1 ? single : per;
    bool udh = nparts > 1 && o->concat == SMS_CONCAT_UDH;

    /* Each part: UDH + at most 160 bytes of text (GSM: 160 septets or 153 +
     * 6; UCS-2: 140 or 134 + 6). */
    out->parts = calloc(nparts, sizeof *out->parts);
    out->buf = malloc(nparts * (SMS_UDH_LEN + 160));
    if (out->parts == NULL || out->buf == NULL) {
        free(chars);
        sms_message_free(out);
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    }
    size_t ci = 0, off = 0;
    for (size_t p = 0; p < nparts; p++) {
        struct sms_part *part = &out->parts[p];
        uint8_t *b = out->buf + off;
        size_t k = 0;
        if (udh) {
            /* TS 23.040 9.2.3.24.1: IEI 00, length 3, ref, total, seq. */
            b[k++] = 0x05;
            b[k++] = 0x00;
            b[k++] = 0x03;
            b[k++] = (uint8_t)(o->ref & 0xFF);
            b[k++] = (uint8_t)nparts;
            b[k++] = (uint8_t)(p + 1);
            part->esm_class = SMS_ESM_UDHI;
        }
        size_t first = ci, cur = 0;
        while (ci < n && cur + chars[ci].units <= limit)
            cur += chars[ci++].units;
        k += put_text(b + k, chars + first, ci - first, coding);
        part->data = b;
        part->len = k;
        part->units = cur;
        part->data_coding = gsm ? SMS_DC_GSM : SMS_DC_UCS2;
        if (nparts > 1 && o->concat == SMS_CONCAT_SAR) {
            part->sar = true;
            part->sar_msg_ref_num = o->ref;
            part->sar_total_segments = (uint8_t)nparts;
            part->sar_segment_seqnum = (uint8_t)(p + 1);
        }
        off += k;
    }
    out->nparts = nparts;
    free(chars);
    return 0;
}
