/* test_sms_text.c - E.164, senders, text clean-up, GSM/UCS-2 encoding and
 * splitting (engine/sms_text.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sms_text.h"
#include "node/errors.h"

static void test_e164(void **state)
{
    (void)state;
    struct {
        const char *in;
        int rc;
        const char *want;
    } cases[] = {
        {"+393331234567", 0, "+393331234567"},
        {"00393331234567", 0, "+393331234567"},
        {"393331234567", 0, "+393331234567"},
        {"+39 333 123-4567", 0, "+393331234567"},
        {"(+39) 333.123.45.67", 0, "+393331234567"},
        {"0039-(333)-1234567", 0, "+393331234567"},
        {"+12345678", 0, "+12345678"},               /* 8 digits */
        {"+123456789012345", 0, "+123456789012345"}, /* 15 digits */
        {"+1234567", SR_EINVAL, ""},                 /* 7 digits */
        {"+1234567890123456", SR_EINVAL, ""},        /* 16 digits */
        {"001234567", SR_EINVAL, ""},                /* 7 after 00 */
        {"+0393331234567", SR_EINVAL, ""},           /* starts with 0 */
        {"0393331234567", SR_EINVAL, ""},            /* national form */
        {"000393331234567", SR_EINVAL, ""},
        {"+39+3331234567", SR_EINVAL, ""},
        {"39333123456a", SR_EINVAL, ""},
        {"393331234567 ", 0, "+393331234567"},
        {"39/3331234567", SR_EINVAL, ""},
        {"", SR_EINVAL, ""},
        {"+", SR_EINVAL, ""},
        {"12345678901234567890123456789012345678901234567890", SR_EINVAL, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char out[SMS_E164_SIZE];
        char err[SR_ERRMSG_SIZE] = "";
        int rc = sms_e164_normalize(cases[i].in, strlen(cases[i].in), out, err,
                                    sizeof err);
        assert_int_equal(rc, cases[i].rc);
        assert_string_equal(out, cases[i].want);
        if (rc != 0)
            assert_true(err[0] != '\0');
    }
}

static void test_sender(void **state)
{
    (void)state;
    struct {
        const char *in;
        int rc;
        enum sms_sender_kind kind;
        int ton, npi;
        const char *addr;
    } cases[] = {
        {"+393331234567", 0, SMS_SENDER_INTERNATIONAL, 1, 1, "393331234567"},
        {"00393331234567", 0, SMS_SENDER_INTERNATIONAL, 1, 1, "393331234567"},
        {"+39 333 123 4567", 0, SMS_SENDER_INTERNATIONAL, 1, 1, "393331234567"},
        {"03331234567", 0, SMS_SENDER_NATIONAL, 2, 1, "03331234567"},
        {"4321", 0, SMS_SENDER_NUMERIC, 0, 1, "4321"},
        {"12345678901234567890", 0, SMS_SENDER_NUMERIC, 0, 1,
         "12345678901234567890"},
        {"MyShop", 0, SMS_SENDER_ALPHANUMERIC, 5, 0, "MyShop"},
        {"My Shop 24", 0, SMS_SENDER_ALPHANUMERIC, 5, 0, "My Shop 24"},
        {"ACME-Bank_1", 0, SMS_SENDER_ALPHANUMERIC, 5, 0, "ACME-Bank_1"},
        {"Info@Shop", 0, SMS_SENDER_ALPHANUMERIC, 5, 0, "Info@Shop"},
        {"ABCDEFGHIJKL", SR_EINVAL, 0, 0, 0, ""}, /* 12 characters */
        {"Shop{1}", SR_EINVAL, 0, 0, 0, ""},      /* extension table */
        {"Caf\xc3\xa9", SR_EINVAL, 0, 0, 0, ""},  /* not ASCII */
        {"Shop`", SR_EINVAL, 0, 0, 0, ""},        /* not GSM */
        {" Shop", SR_EINVAL, 0, 0, 0, ""},
        {"123456789012345678901", SR_EINVAL, 0, 0, 0, ""}, /* 21 digits */
        {"+1234567890123456", SR_EINVAL, 0, 0, 0, ""},     /* 16 digits */
        {"+0123", SR_EINVAL, 0, 0, 0, ""},
        {"+", SR_EINVAL, 0, 0, 0, ""},
        {"", SR_EINVAL, 0, 0, 0, ""},
        {"--", SR_EINVAL, 0, 0, 0, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct sms_sender s;
        char err[SR_ERRMSG_SIZE] = "";
        int rc = sms_sender_classify(cases[i].in, strlen(cases[i].in), &s, err,
                                     sizeof err);
        assert_int_equal(rc, cases[i].rc);
        assert_string_equal(s.addr, cases[i].addr);
        if (rc != 0) {
            assert_true(err[0] != '\0');
            continue;
        }
        assert_int_equal(s.kind, cases[i].kind);
        assert_int_equal(s.ton, cases[i].ton);
        assert_int_equal(s.npi, cases[i].npi);
    }
}

static void test_text_helpers(void **state)
{
    (void)state;
    struct {
        const char *in;
        const char *marker;
        const char *want;
    } cases[] = {
        {"Hello\r\nworld\r\n", NULL, "Hello\nworld"},
        {"Hello\r\n\r\n-- \r\nJohn\r\n", "\n-- \n", "Hello"},
        {"Hello\n-- \nJohn\n-- \nagain", "-- ", "Hello"},
        {"-- \nonly a signature", "\n-- \n", ""},
        {"Hello\n--\nJohn", "\n-- \n", "Hello\n--\nJohn"},     /* not equal */
        {"Hello\nx-- \nJohn", "\n-- \n", "Hello\nx-- \nJohn"}, /* not a line */
        {"Hello\n-- ", "-- ", "Hello"},                        /* last line */
        {"a lone \r stays  \t \n\n", "", "a lone \r stays"},
        {"Thanks\n__\nSent from phone", "__", "Thanks"},
        {"", "-- ", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char buf[128];
        size_t n = strlen(cases[i].in);
        memcpy(buf, cases[i].in, n);
        n = sms_text_prepare(buf, n, cases[i].marker);
        buf[n] = '\0';
        assert_string_equal(buf, cases[i].want);
    }
    char s[] = "a\r\r\nb\r";
    assert_int_equal(sms_text_crlf_to_lf(s, strlen(s)), 5);
    assert_memory_equal(s, "a\r\nb\r", 5);
    assert_int_equal(sms_text_trim_trailing(" \t\n", 3), 0);
}

static const struct sms_encode_opts udh_opts = {
    .concat = SMS_CONCAT_UDH,
    .ref = 0x1234,
    .max_parts = 10,
    .overflow = SMS_OVERFLOW_REJECT,
};

/* Encodes text, expecting success. */
static void enc(const char *text, const struct sms_encode_opts *o,
                struct sms_message *m)
{
    char err[SR_ERRMSG_SIZE] = "";
    int rc = sms_encode(text, strlen(text), o, m, err, sizeof err);
    if (rc != 0)
        fail_msg("sms_encode: %s", err);
}

static char *repeat(const char *unit, size_t n, const char *tail)
{
    size_t ul = strlen(unit), tl = strlen(tail);
    char *s = malloc(ul * n + tl + 1);
    assert_non_null(s);
    for (size_t i = 0; i < n; i++)
        memcpy(s + i * ul, unit, ul);
    memcpy(s + ul * n, tail, tl + 1);
    return s;
}

static void test_gsm_table(void **state)
{
    (void)state;
    /* Each default-table character maps to its septet, ESC to nothing. */
    assert_int_equal(sms_gsm_septet('@'), 0x00);
    assert_int_equal(sms_gsm_septet(0x00A3), 0x01); /* pound */
    assert_int_equal(sms_gsm_septet('$'), 0x02);
    assert_int_equal(sms_gsm_septet('_'), 0x11);
    assert_int_equal(sms_gsm_septet(0x00A4), 0x24); /* currency sign */
    assert_int_equal(sms_gsm_septet(0x00E0), 0x7F); /* a grave */
    assert_int_equal(sms_gsm_septet(0x03A3), 0x18); /* Sigma */
    assert_int_equal(sms_gsm_septet(0xFFFF), -1);
    assert_int_equal(sms_gsm_septet('`'), -1);
    assert_int_equal(sms_gsm_septet(0x00E1), -1); /* a acute */
    assert_int_equal(sms_gsm_septet(0x20AC), 0x1B65);
    assert_int_equal(sms_gsm_septet(0x000C), 0x1B0A);
    const char ext[] = "^{}\\[~]|";
    const int want[] = {0x14, 0x28, 0x29, 0x2F, 0x3C, 0x3D, 0x3E, 0x40};
    for (size_t i = 0; i < 8; i++)
        assert_int_equal(sms_gsm_septet((uint8_t)ext[i]), 0x1B00 | want[i]);
}

static void test_gsm_extension_bytes(void **state)
{
    (void)state;
    struct sms_message m;
    /* "@a{b}€\f £$" : basic, extension pairs, form feed. */
    enc("@a{b}\xe2\x82\xac\x0c \xc2\xa3$", &udh_opts, &m);
    const uint8_t want[] = {0x00, 0x61, 0x1B, 0x28, 0x62, 0x1B, 0x29,
                            0x1B, 0x65, 0x1B, 0x0A, 0x20, 0x01, 0x02};
    assert_int_equal(m.coding, SMS_CODING_GSM);
    assert_int_equal(m.nparts, 1);
    assert_int_equal(m.units, 14);
    assert_int_equal(m.parts[0].units, 14);
    assert_int_equal(m.parts[0].len, sizeof want);
    assert_memory_equal(m.parts[0].data, want, sizeof want);
    assert_int_equal(m.parts[0].data_coding, SMS_DC_GSM);
    assert_int_equal(m.parts[0].esm_class, 0);
    assert_false(m.parts[0].sar);
    assert_false(m.truncated);
    sms_message_free(&m);
    assert_null(m.parts);
    assert_int_equal(m.nparts, 0);
}

static void test_ucs2_bytes(void **state)
{
    (void)state;
    struct sms_message m;
    /* "Жa😀" : a Cyrillic letter forces UCS-2, the emoji is a pair. */
    enc("\xd0\x96"
        "a\xf0\x9f\x98\x80",
        &udh_opts, &m);
    const uint8_t want[] = {0x04, 0x16, 0x00, 0x61, 0xD8, 0x3D, 0xDE, 0x00};
    assert_int_equal(m.coding, SMS_CODING_UCS2);
    assert_int_equal(m.nparts, 1);
    assert_int_equal(m.units, 4);
    assert_int_equal(m.parts[0].len, sizeof want);
    assert_memory_equal(m.parts[0].data, want, sizeof want);
    assert_int_equal(m.parts[0].data_coding, SMS_DC_UCS2);
    sms_message_free(&m);
}

static void test_ucs2_emoji_on_boundary(void **state)
{
    (void)state;
    /* "Ж" + 65 "a" = 66 units; the emoji would take units 67 and 68, so it
     * opens part 2 whole. Then 10 "b": 78 units, two parts. */
    char *body = repeat("a", 65,
                        "\xf0\x9f\x98\x80"
                        "bbbbbbbbbb");
    char *text = malloc(strlen(body) + 3);
    assert_non_null(text);
    memcpy(text, "\xd0\x96", 2);
    strcpy(text + 2, body);
    struct sms_message m;
    enc(text, &udh_opts, &m);
    assert_int_equal(m.coding, SMS_CODING_UCS2);
    assert_int_equal(m.units, 78);
    assert_int_equal(m.nparts, 2);
    assert_int_equal(m.parts_needed, 2);

    uint8_t p1[6 + 132], p2[6 + 24];
    const uint8_t udh1[] = {0x05, 0x00, 0x03, 0x34, 0x02, 0x01};
    memcpy(p1, udh1, 6);
    p1[6] = 0x04, p1[7] = 0x16;
    for (size_t i = 0; i < 65; i++)
        p1[8 + 2 * i] = 0x00, p1[9 + 2 * i] = 'a';
    const uint8_t head2[] = {0x05, 0x00, 0x03, 0x34, 0x02,
                             0x02, 0xD8, 0x3D, 0xDE, 0x00};
    memcpy(p2, head2, sizeof head2);
    for (size_t i = 0; i < 10; i++)
        p2[10 + 2 * i] = 0x00, p2[11 + 2 * i] = 'b';

    assert_int_equal(m.parts[0].units, 66);
    assert_int_equal(m.parts[0].len, sizeof p1);
    assert_memory_equal(m.parts[0].data, p1, sizeof p1);
    assert_int_equal(m.parts[0].esm_class, SMS_ESM_UDHI);
    assert_int_equal(m.parts[1].units, 12);
    assert_int_equal(m.parts[1].len, sizeof p2);
    assert_memory_equal(m.parts[1].data, p2, sizeof p2);
    assert_int_equal(m.parts[1].esm_class, SMS_ESM_UDHI);
    sms_message_free(&m);
    free(body);
    free(text);
}

static void test_gsm_esc_on_boundary(void **state)
{
    (void)state;
    /* 152 "a" + "€" + 7 "b" = 161 septets: the euro's ESC pair would take
     * septets 153 and 154, so part 1 ends after 152. */
    char *text = repeat("a", 152,
                        "\xe2\x82\xac"
                        "bbbbbbb");
    struct sms_message m;
    enc(text, &udh_opts, &m);
    assert_int_equal(m.coding, SMS_CODING_GSM);
    assert_int_equal(m.units, 161);
    assert_int_equal(m.nparts, 2);
    uint8_t p1[6 + 152];
    const uint8_t udh1[] = {0x05, 0x00, 0x03, 0x34, 0x02, 0x01};
    memcpy(p1, udh1, 6);
    memset(p1 + 6, 'a', 152);
    const uint8_t p2[] = {0x05, 0x00, 0x03, 0x34, 0x02, 0x02, 0x1B, 0x65,
                          'b',  'b',  'b',  'b',  'b',  'b',  'b'};
    assert_int_equal(m.parts[0].units, 152);
    assert_int_equal(m.parts[0].len, sizeof p1);
    assert_memory_equal(m.parts[0].data, p1, sizeof p1);
    assert_int_equal(m.parts[1].units, 9);
    assert_int_equal(m.parts[1].len, sizeof p2);
    assert_memory_equal(m.parts[1].data, p2, sizeof p2);
    sms_message_free(&m);
    free(text);
}

static void test_limits(void **state)
{
    (void)state;
    /* unit is one character; n of them; the parts and their units. */
    struct {
        const char *unit;
        size_t n;
        enum sms_coding coding;
        size_t nparts;
        size_t first, last; /* units in the first and last part */
        size_t first_len;   /* bytes of the first part */
    } cases[] = {
        {"a", 0, SMS_CODING_GSM, 1, 0, 0, 0},
        {"a", 160, SMS_CODING_GSM, 1, 160, 160, 160},
        {"a", 161, SMS_CODING_GSM, 2, 153, 8, 159},
        {"a", 306, SMS_CODING_GSM, 2, 153, 153, 159},
        {"a", 307, SMS_CODING_GSM, 3, 153, 1, 159},
        {"{", 80, SMS_CODING_GSM, 1, 160, 160, 160},
        {"{", 81, SMS_CODING_GSM, 2, 152, 10, 158},
        {"\xd0\x96", 70, SMS_CODING_UCS2, 1, 70, 70, 140},
        {"\xd0\x96", 71, SMS_CODING_UCS2, 2, 67, 4, 140},
        {"\xd0\x96", 134, SMS_CODING_UCS2, 2, 67, 67, 140},
        {"\xd0\x96", 135, SMS_CODING_UCS2, 3, 67, 1, 140},
        {"\xf0\x9f\x98\x80", 35, SMS_CODING_UCS2, 1, 70, 70, 140},
        {"\xf0\x9f\x98\x80", 36, SMS_CODING_UCS2, 2, 66, 6, 138},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *text = repeat(cases[i].unit, cases[i].n, "");
        struct sms_message m;
        enc(text, &udh_opts, &m);
        assert_int_equal(m.coding, cases[i].coding);
        assert_int_equal(m.nparts, cases[i].nparts);
        assert_int_equal(m.parts[0].units, cases[i].first);
        assert_int_equal(m.parts[m.nparts - 1].units, cases[i].last);
        assert_int_equal(m.parts[0].len, cases[i].first_len);
        size_t total = 0;
        for (size_t p = 0; p < m.nparts; p++) {
            total += m.parts[p].units;
            assert_true(m.parts[p].len <= 160);
            if (m.nparts > 1) {
                assert_int_equal(m.parts[p].data[4], m.nparts);
                assert_int_equal(m.parts[p].data[5], p + 1);
            }
        }
        assert_int_equal(total, m.units);
        sms_message_free(&m);
        free(text);
    }
}

static void test_parts_limit(void **state)
{
    (void)state;
    char *text = repeat("a", 400, ""); /* 153 + 153 + 94: 3 parts */
    struct sms_encode_opts o = udh_opts;
    o.max_parts = 2;
    struct sms_message m;
    char err[SR_ERRMSG_SIZE] = "";
    assert_int_equal(sms_encode(text, 400, &o, &m, err, sizeof err), SR_EFULL);
    assert_string_equal(err, "needs 3 parts, limit 2");
    assert_int_equal(m.nparts, 0);
    assert_null(m.parts);
    sms_message_free(&m);

    o.overflow = SMS_OVERFLOW_TRUNCATE;
    enc(text, &o, &m);
    assert_true(m.truncated);
    assert_int_equal(m.parts_needed, 3);
    assert_int_equal(m.nparts, 2);
    assert_int_equal(m.parts[0].units, 153);
    assert_int_equal(m.parts[1].units, 153);
    assert_int_equal(m.parts[1].data[4], 2); /* total says 2, not 3 */
    assert_int_equal(m.parts[1].data[5], 2);
    sms_message_free(&m);

    /* Truncated to one part: a single message of 160, no UDH. */
    o.max_parts = 1;
    enc(text, &o, &m);
    assert_true(m.truncated);
    assert_int_equal(m.nparts, 1);
    assert_int_equal(m.parts[0].len, 160);
    assert_int_equal(m.parts[0].esm_class, 0);
    sms_message_free(&m);

    o.max_parts = 0;
    assert_int_equal(sms_encode(text, 400, &o, &m, err, sizeof err), SR_EINVAL);
    o.max_parts = 256;
    assert_int_equal(sms_encode(text, 400, &o, &m, err, sizeof err), SR_EINVAL);
    free(text);
}

static void test_sar(void **state)
{
    (void)state;
    char *text = repeat("a", 200, "");
    struct sms_encode_opts o = udh_opts;
    o.concat = SMS_CONCAT_SAR;
    struct sms_message m;
    enc(text, &o, &m);
    assert_int_equal(m.nparts, 2);
    for (size_t p = 0; p < 2; p++) {
        assert_int_equal(m.parts[p].esm_class, 0);
        assert_true(m.parts[p].sar);
        assert_int_equal(m.parts[p].sar_msg_ref_num, 0x1234);
        assert_int_equal(m.parts[p].sar_total_segments, 2);
        assert_int_equal(m.parts[p].sar_segment_seqnum, p + 1);
        assert_int_equal(m.parts[p].data[0], 'a'); /* no UDH */
    }
    assert_int_equal(m.parts[0].len, 153);
    assert_int_equal(m.parts[1].len, 47);
    sms_message_free(&m);

    /* One part: neither UDH nor sar values. */
    enc("short", &o, &m);
    assert_false(m.parts[0].sar);
    assert_int_equal(m.parts[0].len, 5);
    sms_message_free(&m);
    free(text);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    const char *bad[] = {
        "\xc3\x28",         /* bad continuation */
        "\xc0\xaf",         /* overlong */
        "\xe0\x80\xaf",     /* overlong */
        "\xed\xa0\x80",     /* surrogate */
        "\xf4\x90\x80\x80", /* over U+10FFFF */
        "ok \xe2\x82",      /* truncated */
        "\xff",
        "\x80",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct sms_message m;
        char err[SR_ERRMSG_SIZE] = "";
        assert_int_equal(
            sms_encode(bad[i], strlen(bad[i]), &udh_opts, &m, err, sizeof err),
            SR_EINVAL);
        assert_non_null(strstr(err, "invalid UTF-8"));
        assert_int_equal(m.nparts, 0);
    }
}

/* Same input, same bytes: nothing random. */
static void test_deterministic(void **state)
{
    (void)state;
    char *text = repeat("\xd0\x96", 150, "");
    struct sms_message a, b;
    enc(text, &udh_opts, &a);
    enc(text, &udh_opts, &b);
    assert_int_equal(a.nparts, b.nparts);
    for (size_t p = 0; p < a.nparts; p++) {
        assert_int_equal(a.parts[p].len, b.parts[p].len);
        assert_memory_equal(a.parts[p].data, b.parts[p].data, a.parts[p].len);
    }
    sms_message_free(&a);
    sms_message_free(&b);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_e164),
        cmocka_unit_test(test_sender),
        cmocka_unit_test(test_text_helpers),
        cmocka_unit_test(test_gsm_table),
        cmocka_unit_test(test_gsm_extension_bytes),
        cmocka_unit_test(test_ucs2_bytes),
        cmocka_unit_test(test_ucs2_emoji_on_boundary),
        cmocka_unit_test(test_gsm_esc_on_boundary),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_parts_limit),
        cmocka_unit_test(test_sar),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_deterministic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
