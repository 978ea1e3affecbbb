/* test_token.c - signed tracking tokens (engine/token.h): round trips,
 * tamper, truncation and wrong-kind rejection, base64url edge cases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "engine/token.h"
#include "node/errors.h"

static const uint8_t key[] = "0123456789abcdef0123456789abcdef";
#define KEYLEN 32

static void test_b64(void **state)
{
    (void)state;
    struct {
        const char *in, *want;
    } cases[] = {
        {"", ""},        {"f", "Zg"},        {"fo", "Zm8"},
        {"foo", "Zm9v"}, {"foob", "Zm9vYg"}, {"\xfb\xff", "-_8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char out[32];
        uint8_t back[32];
        size_t n = strlen(cases[i].in);
        token_b64_encode((const uint8_t *)cases[i].in, n, out);
        assert_string_equal(out, cases[i].want);
        long dn = token_b64_decode(out, strlen(out), back, sizeof back);
        assert_int_equal(dn, (long)n);
        assert_memory_equal(back, cases[i].in, n);
    }
    uint8_t b[8];
    /* padding, a lone character, standard alphabet, non-canonical bits */
    assert_int_equal(token_b64_decode("Zg==", 4, b, sizeof b), -1);
    assert_int_equal(token_b64_decode("Z", 1, b, sizeof b), -1);
    assert_int_equal(token_b64_decode("+/8", 3, b, sizeof b), -1);
    assert_int_equal(token_b64_decode("Zh", 2, b, sizeof b), -1);
    assert_int_equal(token_b64_decode("Zm9vYg", 6, b, 3), -1);
}

static char *enc(const struct token *t)
{
    char *s = NULL;
    char err[SR_ERRMSG_SIZE];
    assert_int_equal(token_encode(t, key, KEYLEN, &s, err, sizeof err), 0);
    return s;
}

static void test_round_trip(void **state)
{
    (void)state;
    struct token in = {0}, out;
    char err[SR_ERRMSG_SIZE];
    strcpy(in.code, "01/0A-00001-6B0CDB31");

    in.kind = TOKEN_OPEN;
    in.rcpt_index = 300;
    char *s = enc(&in);
    assert_true(strlen(s) < 60);
    assert_null(strpbrk(s, "+/=\r\n"));
    assert_int_equal(token_decode(s, strlen(s), key, KEYLEN, TOKEN_OPEN, &out,
                                  err, sizeof err),
                     0);
    assert_int_equal(out.kind, TOKEN_OPEN);
    assert_string_equal(out.code, in.code);
    assert_int_equal(out.rcpt_index, 300);
    assert_null(out.rcpt);
    assert_null(out.url);
    token_clear(&out);
    free(s);

    in.kind = TOKEN_CLICK;
    in.rcpt_index = UINT32_MAX;
    in.link_index = 7;
    in.url = "https://example.com/a?b=1&c=%20d#\xc3\xa9";
    s = enc(&in);
    assert_int_equal(
        token_decode(s, strlen(s), key, KEYLEN, 0, &out, err, sizeof err), 0);
    assert_int_equal(out.kind, TOKEN_CLICK);
    assert_int_equal(out.rcpt_index, UINT32_MAX);
    assert_int_equal(out.link_index, 7);
    assert_string_equal(out.url, in.url);
    token_clear(&out);
    free(s);

    in.kind = TOKEN_UNSUBSCRIBE;
    in.url = NULL;
    in.rcpt = "Bob.Smith@example.org";
    in.rcpt_index = 0;
    s = enc(&in);
    assert_int_equal(token_decode(s, strlen(s), key, KEYLEN, TOKEN_UNSUBSCRIBE,
                                  &out, err, sizeof err),
                     0);
    assert_string_equal(out.rcpt, "Bob.Smith@example.org");
    token_clear(&out);
    free(s);
}

static void test_reject(void **state)
{
    (void)state;
    struct token in = {0}, out;
    char err[SR_ERRMSG_SIZE];
    strcpy(in.code, "01/0A-00001-6B0CDB31");
    in.kind = TOKEN_CLICK;
    in.url = "https://example.com/x";
    in.link_index = 2;
    char *s = enc(&in);
    size_t n = strlen(s);

    /* every single-character change is refused */
    for (size_t i = 0; i < n; i++) {
        char *t = strdup(s);
        t[i] = t[i] == 'A' ? 'B' : 'A';
        int rc = token_decode(t, n, key, KEYLEN, 0, &out, err, sizeof err);
        assert_true(rc == SR_EAUTH || rc == SR_EPARSE);
        assert_null(out.url);
        free(t);
    }
    /* every truncation is refused */
    for (size_t l = 0; l < n; l++)
        assert_int_not_equal(
            token_decode(s, l, key, KEYLEN, 0, &out, err, sizeof err), 0);
    /* one character more */
    char *longer = malloc(n + 2);
    memcpy(longer, s, n);
    memcpy(longer + n, "A", 2);
    assert_int_not_equal(
        token_decode(longer, n + 1, key, KEYLEN, 0, &out, err, sizeof err), 0);
    free(longer);
    /* another key */
    uint8_t other[KEYLEN];
    memcpy(other, key, KEYLEN);
    other[0] ^= 1;
    assert_int_equal(
        token_decode(s, n, other, KEYLEN, 0, &out, err, sizeof err), SR_EAUTH);
    /* wrong kind */
    assert_int_equal(
        token_decode(s, n, key, KEYLEN, TOKEN_OPEN, &out, err, sizeof err),
        SR_EINVAL);
    /* short key */
    assert_int_equal(token_decode(s, n, key, 8, 0, &out, err, sizeof err),
                     SR_EINVAL);
    free(s);

    /* encode refuses what it cannot carry */
    char *t = NULL;
    in.url = "";
    assert_int_equal(token_encode(&in, key, KEYLEN, &t, err, sizeof err),
                     SR_EINVAL);
    char *big = malloc(TOKEN_URL_MAX + 2);
    memset(big, 'a', TOKEN_URL_MAX + 1);
    big[TOKEN_URL_MAX + 1] = '\0';
    in.url = big;
    assert_int_equal(token_encode(&in, key, KEYLEN, &t, err, sizeof err),
                     SR_EINVAL);
    big[TOKEN_URL_MAX] = '\0'; /* the longest URL fits */
    assert_int_equal(token_encode(&in, key, KEYLEN, &t, err, sizeof err), 0);
    assert_true(strlen(t) <= TOKEN_TEXT_MAX);
    assert_int_equal(token_decode(t, strlen(t), key, KEYLEN, TOKEN_CLICK, &out,
                                  err, sizeof err),
                     0);
    assert_int_equal(strlen(out.url), TOKEN_URL_MAX);
    token_clear(&out);
    free(t);
    free(big);
    in.kind = 9;
    in.url = "https://x";
    assert_int_equal(token_encode(&in, key, KEYLEN, &t, err, sizeof err),
                     SR_EINVAL);
    in.kind = TOKEN_OPEN;
    in.code[0] = '\0';
    assert_int_equal(token_encode(&in, key, KEYLEN, &t, err, sizeof err),
                     SR_EINVAL);
    assert_null(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_reject),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
