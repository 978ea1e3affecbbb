/* test_dsn.c - bounce classes, RFC 3463 status extraction and the RFC 3464
 * report (engine/dsn.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "engine/dsn.h"
#include "node/errors.h"
#include "queue/dqueue.h"

static void test_status(void **state)
{
    (void)state;
    char st[16];
    dsn_status("550 5.1.1 no such user", "x", st);
    assert_string_equal(st, "5.1.1");
    dsn_status("550-5.7.1 blocked", "x", st);
    assert_string_equal(st, "5.7.1");
    dsn_status("550 4.1.1 class mismatch", "x", st);
    assert_string_equal(st, "5.0.0");
    dsn_status("452 too many", "x", st);
    assert_string_equal(st, "4.0.0");
    dsn_status("550 5.1234.1 bad", "x", st);
    assert_string_equal(st, "5.0.0");
    dsn_status("connection refused", "4.4.1", st);
    assert_string_equal(st, "4.4.1");
    dsn_status(NULL, "5.0.0", st);
    assert_string_equal(st, "5.0.0");
}

static void test_classify(void **state)
{
    (void)state;
    struct {
        const char *reply;
        unsigned outcome;
        const char *want;
    } cases[] = {
        {"550 5.1.1 <x@y>: Recipient address rejected: User unknown",
         DELIVERY_BOUNCED, "invalid_recipient"},
        {"550 No such user here", DELIVERY_BOUNCED, "invalid_recipient"},
        {"552 5.2.2 Mailbox full", DELIVERY_BOUNCED, "mailbox_full"},
        {"x.test: null MX (permfail)", DELIVERY_BOUNCED, "domain_error"},
        {"nope.test: nxdomain (permfail)", DELIVERY_BOUNCED, "domain_error"},
        {"554 5.7.1 Service unavailable; blocked using zen.spamhaus.org",
         DELIVERY_BOUNCED, "policy_block"},
        {"550 5.7.1 Relaying denied", DELIVERY_BOUNCED, "relay_denied"},
        {"554 5.6.0 Message content rejected", DELIVERY_BOUNCED,
         "content_rejected"},
        {"421 4.7.0 [TS04] try later", DELIVERY_DEFERRED, "transient"},
        {"451 4.3.0 later", DELIVERY_EXPIRED, "message_expired"},
        {"550 5.0.0 something odd", DELIVERY_BOUNCED, "other"},
        {"", DELIVERY_BOUNCED, "other"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        assert_string_equal(dsn_classify(cases[i].reply, cases[i].outcome),
                            cases[i].want);
}

static void test_build(void **state)
{
    (void)state;
    const char orig[] = "Received: from a\r\n\tby b\r\nSubject: hello\r\n"
                        "From: s@example.com\r\n\r\nthe body is not quoted\r\n";
    struct dsn_info in = {0};
    in.host = "mx1.relay.example";
    in.code = "01/01-00001-6B0CDB31";
    in.sender = "s@example.com";
    in.rcpt = "bad@x.example";
    in.reply = "550 5.1.1 no such user";
    in.relay = "mx.x.example[192.0.2.1]:25";
    in.outcome = DELIVERY_BOUNCED;
    in.arrival_ms = 1796004637000;
    in.now_ms = 1796004647000;
    in.original = orig;
    in.original_len = sizeof orig - 1;
    char *m;
    size_t len;
    assert_int_equal(dsn_build(&in, &m, &len), 0);
    assert_int_equal(strlen(m), len);
    assert_non_null(strstr(m, "To: <s@example.com>\r\n"));
    assert_non_null(strstr(m, "Auto-Submitted: auto-replied\r\n"));
    assert_non_null(strstr(m, "Content-Type: multipart/report; "
                              "report-type=delivery-status;"));
    assert_non_null(strstr(m, "Reporting-MTA: dns; mx1.relay.example\r\n"));
    assert_non_null(strstr(m, "Final-Recipient: rfc822; bad@x.example\r\n"));
    assert_non_null(strstr(m, "Action: failed\r\nStatus: 5.1.1\r\n"));
    assert_non_null(strstr(m, "Remote-MTA: dns; mx.x.example\r\n"));
    assert_non_null(
        strstr(m, "Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n"));
    assert_non_null(strstr(m, "Content-Type: text/rfc822-headers\r\n\r\n"
                              "Received: from a\r\n\tby b\r\n"
                              "Subject: hello\r\n"));
    assert_null(strstr(m, "the body is not quoted"));
    /* no bare LF anywhere */
    for (size_t i = 0; i < len; i++)
        if (m[i] == '\n')
            assert_int_equal(m[i - 1], '\r');
    free(m);
    /* expired: 4.4.7, a local reason */
    in.outcome = DELIVERY_EXPIRED;
    in.reply = "connection refused";
    in.relay = "";
    in.original = NULL;
    assert_int_equal(dsn_build(&in, &m, &len), 0);
    assert_non_null(strstr(m, "Status: 4.4.7\r\n"));
    assert_non_null(strstr(m, "Diagnostic-Code: x-local; connection refused"));
    assert_null(strstr(m, "Remote-MTA"));
    free(m);
    in.sender = "";
    assert_int_equal(dsn_build(&in, &m, &len), SR_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_build),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
