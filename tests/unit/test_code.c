/* test_code.c - message code generation (node/code.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "node/code.h"

static void test_format(void **state)
{
    (void)state;
    struct code_gen g;
    char c[CODE_MAX];
    code_gen_init(&g, 79, 0x1BC);
    code_next(&g, 0x5C348706ull * 1000 + 5, c);
    assert_string_equal(c, "79/BC-00000-5C348706");
    code_next(&g, 0x5C348706ull * 1000 + 999, c);
    assert_string_equal(c, "79/BC-00001-5C348706");
    code_gen_init(&g, 3, 1);
    code_next(&g, 1000, c);
    assert_string_equal(c, "03/01-00000-00000001");
    assert_true(code_valid(c));
}

static void test_clock_back_and_overflow(void **state)
{
    (void)state;
    struct code_gen g;
    char c[CODE_MAX];
    code_gen_init(&g, 1, 0);
    code_next(&g, 10000, c);
    /* the clock steps back: keep the last second, keep counting */
    code_next(&g, 5000, c);
    assert_string_equal(c, "01/00-00001-0000000A");
    /* 100,000 codes in one second: move on to the next second */
    for (int i = 2; i < 100000; i++)
        code_next(&g, 10000, c);
    assert_string_equal(c, "01/00-99999-0000000A");
    code_next(&g, 10000, c);
    assert_string_equal(c, "01/00-00000-0000000B");
    /* real time catching up with the borrowed second continues after it */
    code_next(&g, 11000, c);
    assert_string_equal(c, "01/00-00001-0000000B");
}

static void test_valid(void **state)
{
    (void)state;
    struct {
        const char *s;
        bool want;
    } rows[] = {
        {"79/BC-12331-5C348706", true},   {"12345/00-00000-00000000", true},
        {"7/BC-12331-5C348706", false},   {"79/bc-12331-5C348706", false},
        {"79/BC-1233-5C348706", false},   {"79/BC-12331-5C34870", false},
        {"79/BC-12331-5C3487066", false}, {"", false},
        {"79BC-12331-5C348706", false},   {"79/BC-12331-5C348706/", false},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        assert_int_equal(code_valid(rows[i].s), rows[i].want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_clock_back_and_overflow),
        cmocka_unit_test(test_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
