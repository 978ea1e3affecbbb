/* test_auth.c - PBKDF2 password hashes (gateways/auth.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "gateways/auth.h"

static void test_hash_and_verify(void **state)
{
    (void)state;
    char h1[AUTH_HASH_MAX], h2[AUTH_HASH_MAX];
    assert_int_equal(auth_hash_password("s3cret pass", 1000, h1), 0);
    assert_int_equal(auth_hash_password("s3cret pass", 1000, h2), 0);
    assert_true(strncmp(h1, "pbkdf2-sha256$1000$", 19) == 0);
    assert_string_not_equal(h1, h2); /* random salt */
    assert_true(auth_verify(h1, "s3cret pass"));
    assert_true(auth_verify(h2, "s3cret pass"));
    assert_false(auth_verify(h1, "s3cret pasS"));
    assert_false(auth_verify(h1, ""));
}

static void test_known_vector(void **state)
{
    (void)state;
    /* PBKDF2-HMAC-SHA256("password", salt 16 x 0x00, 1 iteration), computed
     * independently with Python's hashlib.pbkdf2_hmac. */
    const char *h = "pbkdf2-sha256$1$AAAAAAAAAAAAAAAAAAAAAA==$"
                    "H+/hJasT3SwG24ZxHsRI6UkObHMCTX2NZZEmxvn63Wg=";
    assert_true(auth_verify(h, "password"));
    assert_false(auth_verify(h, "Password"));
}

static void test_malformed_hashes_never_verify(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "password",
        "pbkdf2-sha256$",
        "pbkdf2-sha256$0$AAAAAAAAAAAAAAAAAAAAAA==$AAAA",
        "pbkdf2-sha256$x$AAAAAAAAAAAAAAAAAAAAAA==$AAAA",
        "pbkdf2-sha256$1$AAAA$NCh4i/ZAOyvaGQomdIS6kanCZOGMD9MJ/oHQDkzM3U4=",
        "pbkdf2-sha256$1$AAAAAAAAAAAAAAAAAAAAAA==$NCh4",
        "pbkdf2-sha256$1$AAAAAAAAAAAAAAAAAAAAAA==",
        "pbkdf2-sha256$99999999999$AAAAAAAAAAAAAAAAAAAAAA==$"
        "H+/hJasT3SwG24ZxHsRI6UkObHMCTX2NZZEmxvn63Wg=",
        "pbkdf2-sha1$1$AAAAAAAAAAAAAAAAAAAAAA==$"
        "H+/hJasT3SwG24ZxHsRI6UkObHMCTX2NZZEmxvn63Wg=",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_false(auth_verify(bad[i], "password"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_and_verify),
        cmocka_unit_test(test_known_vector),
        cmocka_unit_test(test_malformed_hashes_never_verify),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
