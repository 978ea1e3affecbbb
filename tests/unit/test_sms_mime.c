/* test_sms_mime.c - the text of an email for an SMS (engine/sms_mime.h)
 * and the SMS policy (queue/policy_sms.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "engine/rewrap.h"
#include "engine/sms_mime.h"
#include "node/errors.h"
#include "queue/policy.h"

static void test_html_to_text(void **state)
{
    (void)state;
    const char *h = "<html><head><style>p{color:red}</style></head><body>"
                    "<p>Caf&eacute; &amp; bar &#8364;5 &#x1F600;</p>"
                    "<div>line<br>two</div><script>alert(1)</script>"
                    "  <p>  last &lt;b&gt;</p></body></html>";
    char *t = sms_mime_html_to_text(h, strlen(h));
    assert_non_null(t);
    /* unknown named references stay as they are */
    assert_string_equal(t, "Caf&eacute; & bar \xe2\x82\xac"
                           "5 \xf0\x9f\x98\x80\nline\ntwo\nlast <b>");
    free(t);
    t = sms_mime_html_to_text("&#xD800;&#0;<", 13);
    assert_string_equal(t, "&#xD800;&#0;");
    free(t);
}

static void test_extract(void **state)
{
    (void)state;
    const char *m =
        "From: \"Shop\" <Shop.Alerts@acme.example>\r\n"
        "Subject: =?utf-8?q?Caf=C3=A9?=\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=\"o\"\r\n\r\n"
        "--o\r\nContent-Type: multipart/alternative; boundary=\"i\"\r\n\r\n"
        "--i\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>html</p>\r\n"
        "--i\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        "Code: 42 =E0 bient=F4t\r\n--i--\r\n"
        "--o\r\nContent-Type: text/plain\r\n"
        "Content-Disposition: attachment; filename=a.txt\r\n\r\nnot me\r\n"
        "--o--\r\n";
    struct sms_mime x;
    char err[256];
    assert_int_equal(sms_mime_extract(m, strlen(m), &x, err, sizeof err), 0);
    assert_string_equal(x.subject, "Caf\xc3\xa9");
    assert_string_equal(x.from_local, "Shop.Alerts");
    assert_non_null(strstr(x.text, "Code: 42 \xc3\xa0 bient\xc3\xb4t"));
    assert_null(strstr(x.text, "not me"));
    sms_mime_free(&x);
    /* HTML only: reduced */
    const char *h = "From: a@b.example\r\nContent-Type: text/html\r\n\r\n"
                    "<p>Hi &amp; bye</p>\r\n";
    assert_int_equal(sms_mime_extract(h, strlen(h), &x, err, sizeof err), 0);
    assert_string_equal(x.text, "Hi & bye");
    sms_mime_free(&x);
    /* only an attachment: no text */
    const char *a = "From: a@b.example\r\nContent-Type: text/plain\r\n"
                    "Content-Disposition: attachment\r\n\r\nx\r\n";
    assert_int_equal(sms_mime_extract(a, strlen(a), &x, err, sizeof err),
                     SR_EPARSE);
}

static const struct {
    const char *json, *err;
} bad[] = {
    {"{\"customers\":[{\"name\":\"a\",\"sms\":{\"domains\":[]}}]}",
     "customers[0].sms.domains: required, a list of 1 to 100 domains"},
    {"{\"customers\":[{\"name\":\"a\",\"sms\":{\"domains\":[\"s.x\"]}}]}",
     "customers[0].sms.sender: required unless sender_from is \"from\""},
    {"{\"customers\":[{\"name\":\"a\"}],\"smscs\":[{\"name\":\"s\","
     "\"host\":\"1.2.3.4\",\"system_id\":\"x\"}]}",
     "smscs[0].host: required, ip:port or [ipv6]:port"},
    {"{\"customers\":[{\"name\":\"a\"}],\"smscs\":[{\"name\":\"s\","
     "\"host\":\"1.2.3.4:1\",\"system_id\":\"x\"}],\"sms_routes\":["
     "{\"prefix\":\"+39\",\"smscs\":[{\"name\":\"t\"}]}]}",
     "sms_routes[0].smscs[0].name: must name one of smscs"},
    {"{\"customers\":[{\"name\":\"a\"}],\"smscs\":[{\"name\":\"s\","
     "\"host\":\"1.2.3.4:1\",\"system_id\":\"x\"},{\"name\":\"t\","
     "\"host\":\"1.2.3.4:2\",\"system_id\":\"x\"}],\"sms_routes\":["
     "{\"prefix\":\"+39\",\"smscs\":[{\"name\":\"t\",\"share\":60},"
     "{\"name\":\"s\",\"share\":50}]}]}",
     "sms_routes[0].smscs: shares add up to 110 %, more than 100"},
    {"{\"customers\":[{\"name\":\"a\"}],\"sms_routes\":[{\"prefix\":\"39\","
     "\"smscs\":[]}]}",
     "sms_routes[0].prefix: required, \"+\" and up to 15 digits"},
};

static void test_policy(void **state)
{
    (void)state;
    char err[256];
    struct policy *p;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(policy_parse_json(bad[i].json, strlen(bad[i].json), &p,
                                           err, sizeof err),
                         SR_EINVAL);
        assert_string_equal(err, bad[i].err);
    }
    const char *ok =
        "{\"customers\":[{\"name\":\"a\",\"sms\":{\"domains\":[\"S.x\"],"
        "\"sender\":\"ACME\",\"subject\":\"prepend\",\"too_long\":"
        "\"truncate\"}}],\"smscs\":[{\"name\":\"s\",\"host\":\"1.2.3.4:1\","
        "\"system_id\":\"x\",\"id_format\":\"hex\",\"receipt_id_format\":"
        "\"dec\",\"concat\":\"sar\"}],\"sms_routes\":[{\"prefix\":\"+\","
        "\"smscs\":[{\"name\":\"s\"}]},{\"prefix\":\"+39\",\"smscs\":["
        "{\"name\":\"s\",\"share\":20}]}]}";
    assert_int_equal(policy_parse_json(ok, strlen(ok), &p, err, sizeof err), 0);
    const struct policy_customer *c = policy_find(p, "a");
    assert_true(policy_sms_domain(c->sms, "s.X"));
    assert_false(policy_sms_domain(c->sms, "t.x"));
    assert_true(c->sms->truncate);
    assert_int_equal(c->sms->max_parts, 5);
    assert_true(p->sms->smscs[0].sar);
    assert_int_equal(p->sms->smscs[0].id_format, POLICY_ID_HEX);
    assert_int_equal(p->sms->smscs[0].receipt_id_format, POLICY_ID_DEC);
    assert_string_equal(policy_sms_route_for(p->sms, "+393331")->prefix, "+39");
    assert_string_equal(policy_sms_route_for(p->sms, "+443331")->prefix, "+");
    assert_int_equal(policy_sms_route_for(p->sms, "+393331")->hops[0].share,
                     20);
    policy_free(p);
}

static int teardown(void **state)
{
    (void)state;
    rewrap_global_shutdown();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_html_to_text),
        cmocka_unit_test(test_extract),
        cmocka_unit_test(test_policy),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
