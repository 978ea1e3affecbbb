/* test_verp.c - VERP bounce addresses (engine/verp.h): format, round
 * trips through an MTA that lowercases, tamper rejection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "engine/verp.h"
#include "node/errors.h"

static const uint8_t key[] = "0123456789abcdef0123456789abcdef";
#define KEYLEN 32

static void test_build_parse(void **state)
{
    (void)state;
    char a[VERP_ADDR_MAX], err[SR_ERRMSG_SIZE], code[CODE_MAX];
    uint32_t idx = 0;
    assert_int_equal(verp_build("01/0A-00001-6B0CDB31", 3, "Bounce.Example",
                                key, KEYLEN, a, sizeof a, err, sizeof err),
                     0);
    /* b-<code>-<index>-<8 char mac>@domain, all lowercase atext */
    assert_memory_equal(a, "b-01=2f0a_00001_6b0cdb31-3-", 27);
    assert_int_equal(strlen(a), 27 + 8 + strlen("@bounce.example"));
    assert_string_equal(a + 35, "@bounce.example");
    for (const char *p = a; *p; p++)
        assert_false(isupper((unsigned char)*p));
    assert_int_equal(
        verp_parse(a, strlen(a), key, KEYLEN, code, &idx, err, sizeof err), 0);
    assert_string_equal(code, "01/0A-00001-6B0CDB31");
    assert_int_equal(idx, 3);

    /* an MTA that uppercases (or keeps case): still ours */
    char up[VERP_ADDR_MAX];
    for (size_t i = 0; a[i]; i++)
        up[i] = (char)toupper((unsigned char)a[i]);
    up[strlen(a)] = '\0';
    assert_int_equal(
        verp_parse(up, strlen(up), key, KEYLEN, code, &idx, err, sizeof err),
        0);
    assert_string_equal(code, "01/0A-00001-6B0CDB31");

    size_t dl = 0;
    const char *d = verp_domain(a, strlen(a), &dl);
    assert_non_null(d);
    assert_int_equal(dl, strlen("bounce.example"));
    assert_null(verp_domain("nodomain", 8, &dl));

    /* odd codes round trip too */
    const char *codes[] = {"a_b=c", "X", "9999/FF-99999-FFFFFFFF", "x.y+z"};
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++) {
        assert_int_equal(verp_build(codes[i], 4000000000u, "b.example", key,
                                    KEYLEN, a, sizeof a, err, sizeof err),
                         0);
        *strchr(a, '@') = '\0';
        assert_null(strpbrk(a, "+."));
        a[strlen(a)] = '@';
        assert_int_equal(
            verp_parse(a, strlen(a), key, KEYLEN, code, &idx, err, sizeof err),
            0);
        assert_string_equal(code, codes[i]);
        assert_int_equal(idx, 4000000000u);
    }
}

static void test_reject(void **state)
{
    (void)state;
    char a[VERP_ADDR_MAX], err[SR_ERRMSG_SIZE], code[CODE_MAX];
    uint32_t idx = 0;
    assert_int_equal(verp_build("01/0A-00001-6B0CDB31", 3, "bounce.example",
                                key, KEYLEN, a, sizeof a, err, sizeof err),
                     0);
    size_t n = strlen(a);
    /* every change of the local part is refused */
    const char *at = strchr(a, '@');
    for (size_t i = 0; a + i < at; i++) {
        char t[VERP_ADDR_MAX];
        memcpy(t, a, n + 1);
        t[i] = t[i] == '7' ? '8' : '7';
        int rc = verp_parse(t, n, key, KEYLEN, code, &idx, err, sizeof err);
        assert_true(rc == SR_EAUTH || rc == SR_EPARSE);
        assert_string_equal(code, "");
    }
    /* another domain: the MAC binds it */
    char t[VERP_ADDR_MAX];
    memcpy(t, a, (size_t)(at - a));
    strcpy(t + (at - a), "@other.example");
    assert_int_equal(
        verp_parse(t, strlen(t), key, KEYLEN, code, &idx, err, sizeof err),
        SR_EAUTH);
    /* another key */
    uint8_t other[KEYLEN];
    memcpy(other, key, KEYLEN);
    other[5] ^= 0x40;
    assert_int_equal(
        verp_parse(a, n, other, KEYLEN, code, &idx, err, sizeof err), SR_EAUTH);
    const char *bad[] = {
        "",
        "@x.example",
        "b-x-1@",
        "bounce@x.example",
        "b--1-aaaaaaaa@x.example",
        "b-x-01-aaaaaaaa@x.example",
        "b-x-1-aaaaaaa@x.example",
        "b-x-99999999999-aaaaaaaa@x.example",
        "b-x=4-1-aaaaaaaa@x.example",
        "b-x=41-1-aaaaaaaa@x.example",
        "b-x-1-aaaaaaa1@x.example",
        "b-x-y-1-aaaaaaaa@x.example",
        "b-abcdefghijklmnop@x.example",
        "b-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-1-aaaaaaaa@x.example",
        "b-x.y-1-aaaaaaaa@x.example",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(verp_parse(bad[i], strlen(bad[i]), key, KEYLEN, code,
                                    &idx, err, sizeof err),
                         SR_EPARSE);
    /* a NUL inside the local part (found by fuzz_token) */
    const char nul[] = "b-abc\0def-1-aaaaaaaa@x.example";
    assert_int_equal(verp_parse(nul, sizeof nul - 1, key, KEYLEN, code, &idx,
                                err, sizeof err),
                     SR_EPARSE);
    /* build refuses what it cannot write */
    assert_int_equal(verp_build("", 1, "b.example", key, KEYLEN, a, sizeof a,
                                err, sizeof err),
                     SR_EINVAL);
    assert_int_equal(verp_build("a b", 1, "b.example", key, KEYLEN, a, sizeof a,
                                err, sizeof err),
                     SR_EINVAL);
    assert_int_equal(verp_build("x", 1, "b example", key, KEYLEN, a, sizeof a,
                                err, sizeof err),
                     SR_EINVAL);
    assert_int_equal(
        verp_build("x", 1, "b.example", key, 4, a, sizeof a, err, sizeof err),
        SR_EINVAL);
    assert_int_equal(
        verp_build("x", 1, "b.example", key, KEYLEN, a, 10, err, sizeof err),
        SR_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_parse),
        cmocka_unit_test(test_reject),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
