/*
 * test_policy.c - unit tests for queue/policy.c.
 *
 * Tables: documents that parse (with the values they must give), documents
 * that fail (with the key the message must name), CIDR normalisation,
 * address matching at the edges of prefixes, and YAML -> JSON conversion,
 * including the round trip YAML -> JSON -> policy that clusterctl performs.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "node/errors.h"
#include "queue/policy.h"

static int parse(const char *json, struct policy **p, char *err, size_t errlen)
{
    return policy_parse_json(json, strlen(json), p, err, errlen);
}

/* ---- documents that parse ------------------------------------------------ */

static void test_default_policy(void **state)
{
    (void)state;
    struct policy *p;
    char err[SR_ERRMSG_SIZE] = "";
    const char *json = policy_default_json();
    assert_ptr_equal(json, policy_default_json()); /* static */
    assert_int_equal(parse(json, &p, err, sizeof err), 0);
    assert_int_equal(p->n_customers, 1);
    const struct policy_customer *c = policy_find(p, "default");
    assert_non_null(c);
    assert_string_equal(c->name, "default");
    assert_int_equal(c->n_nets, 2);
    assert_int_equal(c->nets[0].family, AF_INET);
    assert_int_equal(c->nets[0].prefix, 32);
    assert_int_equal(c->nets[1].family, AF_INET6);
    assert_int_equal(c->nets[1].prefix, 128);
    assert_int_equal(c->max_sessions, 100);
    assert_int_equal(c->max_message_size, 10485760);
    assert_int_equal(c->max_recipients, 1000);
    assert_false(c->require_tls);
    assert_null(policy_find(p, "nobody"));
    assert_null(policy_find(p, NULL));
    assert_null(policy_find(NULL, "default"));
    policy_free(p);
    policy_free(NULL);
}

struct good_case {
    const char *json;
    /* want, for the last customer */
    unsigned n_customers;
    const char *name;
    unsigned n_nets;
    unsigned max_sessions;
    size_t max_message_size;
    unsigned max_recipients;
    bool require_tls;
};

static const struct good_case good_cases[] = {
    {"{\"customers\":[{\"name\":\"a\"}]}", 1, "a", 0, 100, 10485760, 1000,
     false},
    {"{\"customers\":[{\"name\":\"a\",\"networks\":[]}]}", 1, "a", 0, 100,
     10485760, 1000, false},
    {"{\"customers\":[{\"name\":\"Acme_Corp-1.eu\",\"require_tls\":true,"
     "\"max_sessions\":1,\"max_message_size\":1024,\"max_recipients\":1}]}",
     1, "Acme_Corp-1.eu", 0, 1, 1024, 1, true},
    {"{\"customers\":[{\"name\":\"a\"},{\"name\":\"b\",\"max_sessions\":100000,"
     "\"max_message_size\":1073741824,\"max_recipients\":100000,"
     "\"require_tls\":false,\"networks\":[\"10.0.0.0/8\",\"::/0\"]}]}",
     2, "b", 2, 100000, 1073741824, 100000, false},
    {"  {\"customers\" : [ {\"name\" : "
     "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"} ] "
     "}\n",
     1, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0,
     100, 10485760, 1000, false},
};

static void test_good(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof good_cases / sizeof *good_cases; i++) {
        const struct good_case *tc = &good_cases[i];
        struct policy *p;
        char err[SR_ERRMSG_SIZE] = "";
        int rc = parse(tc->json, &p, err, sizeof err);
        if (rc != 0)
            fail_msg("case %zu: rc %d err %s", i, rc, err);
        assert_int_equal(p->n_customers, tc->n_customers);
        const struct policy_customer *c = &p->customers[p->n_customers - 1];
        assert_string_equal(c->name, tc->name);
        assert_ptr_equal(policy_find(p, tc->name), c);
        assert_int_equal(c->n_nets, tc->n_nets);
        assert_int_equal(c->max_sessions, tc->max_sessions);
        assert_int_equal(c->max_message_size, tc->max_message_size);
        assert_int_equal(c->max_recipients, tc->max_recipients);
        assert_int_equal(c->require_tls, tc->require_tls);
        policy_free(p);
    }
}

/* ---- documents that fail ------------------------------------------------- */

struct err_case {
    const char *json;
    int want_rc;
    const char *want_err;
};

#define ONE(body) "{\"customers\":[{\"name\":\"a\"," body "}]}"
#define NET(cidr) ONE("\"networks\":[\"10.0.0.0/8\",\"::1\",\"" cidr "\"]")
#define BADNET(cidr) "customers[0].networks[2]: bad CIDR '" cidr "'"

static const struct err_case err_cases[] = {
    /* JSON syntax */
    {"", SR_EPARSE, "line 1"},
    {"{", SR_EPARSE, "line 1"},
    {"{\"customers\":[]} x", SR_EPARSE, "end of file expected"},
    {"{\"customers\":[{\"name\":\"a\",\"name\":\"b\"}]}", SR_EPARSE,
     "duplicate object key"},
    {"{\"customers\":[{\"name\":\"a\\u0000b\"}]}", SR_EPARSE, "\\u0000"},
    {"{\"customers\":[{\"name\":\"a\",\"max_sessions\":"
     "99999999999999999999999}]}",
     SR_EPARSE, "too big integer"},
    /* shape */
    {"[]", SR_EINVAL, "policy: must be an object"},
    {"null", SR_EINVAL, "policy: must be an object"},
    {"{}", SR_EINVAL, "customers: required"},
    {"{\"customers\":[{\"name\":\"a\"}],\"destinations\":[{\"domain\":"
     "\"x.org\",\"per_minute\":-1}]}",
     SR_EINVAL,
     "destinations[0].per_minute: must be an integer between 0 and 100000000"},
    {"{\"customers\":[{\"name\":\"a\"}],\"destinations\":[{\"per_hour\":1}]}",
     SR_EINVAL, "destinations[0].domain: required, a domain name"},
    {"{\"customers\":[{\"name\":\"a\"}],\"destinations\":[{\"domain\":"
     "\"x.org\",\"burst\":1}]}",
     SR_EINVAL, "destinations[0].burst: unknown key"},
    {"{\"customers\":[{\"name\":\"a\"}],\"destinations\":[{\"domain\":"
     "\"x.org\",\"rules\":[{\"match\":\"(\",\"action\":\"suspend\","
     "\"seconds\":5}]}]}",
     SR_EINVAL,
     "destinations[0].rules[0].match: not a valid POSIX extended regular "
     "expression"},
    {"{\"customers\":[{\"name\":\"a\"}],\"destinations\":[{\"domain\":"
     "\"x.org\",\"rules\":[{\"match\":\"x\",\"action\":\"pause\","
     "\"seconds\":5}]}]}",
     SR_EINVAL,
     "destinations[0].rules[0].action: must be \"suspend\" or \"slow\""},
    {"{\"customers\":[{\"name\":\"a\"}],\"destinations\":[{\"domain\":"
     "\"x.org\",\"rules\":[{\"match\":\"x\",\"action\":\"slow\","
     "\"seconds\":5}]}]}",
     SR_EINVAL,
     "destinations[0].rules[0].per_minute: required with \"slow\" (an "
     "integer from 1), not allowed with \"suspend\""},
    {"{\"customers\":[{\"name\":\"a\"}],\"destinations\":[{\"domain\":"
     "\"x.org\",\"rules\":[{\"match\":\"x\",\"action\":\"suspend\"}]}]}",
     SR_EINVAL,
     "destinations[0].rules[0].seconds: required, an integer between 1 and "
     "604800"},
    {"{\"customers\":[{\"name\":\"a\"}],\"global\":{\"per_second\":-1}}",
     SR_EINVAL, "global.per_second: must be an integer between 0 and 100000"},
    {"{\"customers\":[{\"name\":\"a\"}],\"global\":{\"burst\":1}}", SR_EINVAL,
     "global.burst: unknown key"},
    {"{\"customers\":[{\"name\":\"a\",\"per_second\":-1}]}", SR_EINVAL,
     "customers[0].per_second: must be an integer between 0 and 100000"},
    {"{\"customers\":[{\"name\":\"a\",\"source_ip\":\"mx.example\"}]}",
     SR_EINVAL, "customers[0].source_ip: must be an IPv4 or IPv6 address"},
    {"{\"customers\":[{\"name\":\"a\",\"max_queued\":-1}]}", SR_EINVAL,
     "customers[0].max_queued: must be an integer between 0 and 1000000000"},
    {"{\"customers\":[{\"name\":\"a\"}],\"routes\":{}}", SR_EINVAL,
     "routes: must be an array"},
    {"{\"customers\":[{\"name\":\"a\"}],\"routes\":[{\"domain\":"
     "\"x..org\",\"host\":\"127.0.0.1:25\"}]}",
     SR_EINVAL, "routes[0].domain: not a domain name"},
    {"{\"customers\":[{\"name\":\"a\"}],\"routes\":[{\"domain\":"
     "\"x.org\",\"host\":\"mx.x.org:25\"}]}",
     SR_EINVAL, "routes[0].host: must be IP:port"},
    {"{\"customers\":[{\"name\":\"a\"}],\"routes\":[{\"domain\":"
     "\"x.org\",\"host\":\"127.0.0.1:25\",\"tls\":\"yes\"}]}",
     SR_EINVAL, "routes[0].tls: must be none, may or require"},
    {"{\"customers\":[{\"name\":\"a\"}],\"routes\":[{\"domain\":"
     "\"x.org\",\"host\":\"127.0.0.1:25\"},{\"domain\":\"X.org\","
     "\"host\":\"127.0.0.1:26\"}]}",
     SR_EINVAL, "routes[1].domain: x.org has a route already"},
    {"{\"customers\":[{\"name\":\"a\"}],\"routes\":[{\"domain\":"
     "\"x.org\",\"host\":\"127.0.0.1:25\",\"via\":1}]}",
     SR_EINVAL, "routes[0].via: unknown key"},
    {"{\"customers\":[]}", SR_EINVAL, "customers: must be a non-empty array"},
    {"{\"customers\":{}}", SR_EINVAL, "customers: must be a non-empty array"},
    {"{\"customers\":[{\"name\":\"a\"}],\"version\":1}", SR_EINVAL,
     "version: unknown key"},
    {"{\"customers\":[{\"name\":\"a\"}],\"\\u0001\":1}", SR_EINVAL,
     "?: unknown key"},
    {"{\"customers\":[{\"name\":\"a\"},5]}", SR_EINVAL,
     "customers[1]: must be an object"},
    {ONE("\"max_session\":5"), SR_EINVAL,
     "customers[0].max_session: unknown key"},
    /* name */
    {"{\"customers\":[{}]}", SR_EINVAL, "customers[0].name: required"},
    {"{\"customers\":[{\"name\":\"\"}]}", SR_EINVAL,
     "customers[0].name: must be 1 to 64 characters of A-Z a-z 0-9 _ . -"},
    {"{\"customers\":[{\"name\":\"a b\"}]}", SR_EINVAL,
     "customers[0].name: must be 1 to 64"},
    {"{\"customers\":[{\"name\":\"caf\\u00e9\"}]}", SR_EINVAL,
     "customers[0].name: must be 1 to 64"},
    {"{\"customers\":[{\"name\":7}]}", SR_EINVAL,
     "customers[0].name: must be 1 to 64"},
    {"{\"customers\":[{\"name\":"
     "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}]}",
     SR_EINVAL, "customers[0].name: must be 1 to 64"},
    {"{\"customers\":[{\"name\":\"a\"},{\"name\":\"b\"},{\"name\":\"a\"}]}",
     SR_EINVAL, "customers[2].name: duplicate name 'a' (also customers[0])"},
    {"{\"customers\":[{\"name\":\"a\"},{\"name\":\"b\"},{\"name\":\"b\"},"
     "{\"name\":\"a\"}]}",
     SR_EINVAL, "customers[2].name: duplicate name 'b' (also customers[1])"},
    /* networks */
    {ONE("\"networks\":\"10.0.0.0/8\""), SR_EINVAL,
     "customers[0].networks: must be an array of CIDR strings"},
    {ONE("\"networks\":[\"10.0.0.0/8\",8]"), SR_EINVAL,
     "customers[0].networks[1]: must be a CIDR string"},
    {NET("10.0.0.300/8"), SR_EINVAL, BADNET("10.0.0.300/8")},
    {NET("10.0.0.0/33"), SR_EINVAL, BADNET("10.0.0.0/33")},
    {NET("::1/129"), SR_EINVAL, BADNET("::1/129")},
    {NET("10.0.0.0/"), SR_EINVAL, BADNET("10.0.0.0/")},
    {NET("/8"), SR_EINVAL, BADNET("/8")},
    {NET(""), SR_EINVAL, BADNET("")},
    {NET("10.0.0.0/-1"), SR_EINVAL, BADNET("10.0.0.0/-1")},
    {NET("10.0.0.0/+8"), SR_EINVAL, BADNET("10.0.0.0/+8")},
    {NET("10.0.0.0/0008"), SR_EINVAL, BADNET("10.0.0.0/0008")},
    {NET("10.0.0.0/8/8"), SR_EINVAL, BADNET("10.0.0.0/8/8")},
    {NET("10.0.0.0 /8"), SR_EINVAL, BADNET("10.0.0.0 /8")},
    {NET("10.0.0/8"), SR_EINVAL, BADNET("10.0.0/8")},
    {NET("010.0.0.0/8"), SR_EINVAL, BADNET("010.0.0.0/8")},
    {NET("fe80::1%eth0"), SR_EINVAL, BADNET("fe80::1%eth0")},
    {NET("2001:db8::g/32"), SR_EINVAL, BADNET("2001:db8::g/32")},
    {NET("example.com/24"), SR_EINVAL, BADNET("example.com/24")},
    {NET("1:2:3:4:5:6:7:8:9:10:11:12:13:14:15:16/8"), SR_EINVAL,
     BADNET("1:2:3:4:5:6:7:8:9:10:11:12:13:14:15:16/8")},
    {NET("10.0.0.0\\n/8"), SR_EINVAL, BADNET("10.0.0.0?/8")},
    /* limits */
    {ONE("\"max_sessions\":0"), SR_EINVAL,
     "customers[0].max_sessions: must be an integer between 1 and 100000"},
    {ONE("\"max_sessions\":100001"), SR_EINVAL,
     "customers[0].max_sessions: must be an integer between 1 and 100000"},
    {ONE("\"max_sessions\":\"5\""), SR_EINVAL,
     "customers[0].max_sessions: must be an integer"},
    {ONE("\"max_sessions\":5.0"), SR_EINVAL,
     "customers[0].max_sessions: must be an integer"},
    {ONE("\"max_sessions\":true"), SR_EINVAL,
     "customers[0].max_sessions: must be an integer"},
    {ONE("\"max_message_size\":1023"), SR_EINVAL,
     "customers[0].max_message_size: must be an integer between 1024 and "
     "1073741824"},
    {ONE("\"max_message_size\":1073741825"), SR_EINVAL,
     "customers[0].max_message_size: must be an integer between 1024"},
    {ONE("\"max_recipients\":-1"), SR_EINVAL,
     "customers[0].max_recipients: must be an integer between 1 and 100000"},
    {ONE("\"max_recipients\":null"), SR_EINVAL,
     "customers[0].max_recipients: must be an integer"},
    {ONE("\"require_tls\":\"yes\""), SR_EINVAL,
     "customers[0].require_tls: must be true or false"},
    {ONE("\"require_tls\":1"), SR_EINVAL,
     "customers[0].require_tls: must be true or false"},
    {"{\"customers\":[{\"name\":\"a\"},{\"name\":\"b\",\"networks\":[\"x\"]}]}",
     SR_EINVAL, "customers[1].networks[0]: bad CIDR 'x'"},
};

static void test_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof err_cases / sizeof *err_cases; i++) {
        const struct err_case *tc = &err_cases[i];
        struct policy *p = (struct policy *)&p; /* must be reset to NULL */
        char err[SR_ERRMSG_SIZE] = "";
        int rc = parse(tc->json, &p, err, sizeof err);
        if (rc != tc->want_rc || strstr(err, tc->want_err) == NULL)
            fail_msg("case %zu %s: rc %d (want %d), err \"%s\" (want \"%s\")",
                     i, tc->json, rc, tc->want_rc, err, tc->want_err);
        assert_null(p);
    }
    struct policy *p;
    char err[SR_ERRMSG_SIZE];
    assert_int_equal(policy_parse_json(NULL, 0, &p, err, sizeof err),
                     SR_EINVAL);
    assert_null(p);
    /* Length is honoured: the document ends before the garbage. */
    const char *doc = "{\"customers\":[{\"name\":\"a\"}]}garbage";
    assert_int_equal(
        policy_parse_json(doc, strlen(doc) - 7, &p, err, sizeof err), 0);
    policy_free(p);
}

/* ---- CIDR normalisation -------------------------------------------------- */

struct cidr_case {
    const char *cidr;
    int want_family;
    const char *want_addr; /* after host bits are zeroed */
    unsigned want_prefix;
};

static const struct cidr_case cidr_cases[] = {
    {"10.1.2.3/8", AF_INET, "10.0.0.0", 8},
    {"10.1.2.3", AF_INET, "10.1.2.3", 32},
    {"10.1.2.3/32", AF_INET, "10.1.2.3", 32},
    {"255.255.255.255/7", AF_INET, "254.0.0.0", 7},
    {"255.255.255.255/0", AF_INET, "0.0.0.0", 0},
    {"192.168.1.200/25", AF_INET, "192.168.1.128", 25},
    {"192.168.1.200/31", AF_INET, "192.168.1.200", 31},
    {"::1", AF_INET6, "::1", 128},
    {"2001:db8:ffff::1/32", AF_INET6, "2001:db8::", 32},
    {"2001:db8::ffff/127", AF_INET6, "2001:db8::fffe", 127},
    {"ffff:ffff::/0", AF_INET6, "::", 0},
    {"fe80::1234/10", AF_INET6, "fe80::", 10},
    {"ff00::/7", AF_INET6, "fe00::", 7},
    /* Mapped networks of /96 and longer are IPv4 networks. */
    {"::ffff:10.1.2.3/104", AF_INET, "10.0.0.0", 8},
    {"::ffff:10.1.2.3", AF_INET, "10.1.2.3", 32},
    {"::ffff:0:0/96", AF_INET, "0.0.0.0", 0},
    {"::ffff:0:0/95", AF_INET6, "::fffe:0:0", 95},
};

static void test_cidr(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cidr_cases / sizeof *cidr_cases; i++) {
        const struct cidr_case *tc = &cidr_cases[i];
        char json[256], err[SR_ERRMSG_SIZE] = "", shown[INET6_ADDRSTRLEN];
        snprintf(json, sizeof json,
                 "{\"customers\":[{\"name\":\"a\",\"networks\":[\"%s\"]}]}",
                 tc->cidr);
        struct policy *p;
        int rc = parse(json, &p, err, sizeof err);
        if (rc != 0)
            fail_msg("%s: rc %d err %s", tc->cidr, rc, err);
        const struct policy_net *n = &p->customers[0].nets[0];
        assert_non_null(inet_ntop(n->family, n->addr, shown, sizeof shown));
        if (n->family != tc->want_family || strcmp(shown, tc->want_addr) != 0 ||
            n->prefix != tc->want_prefix)
            fail_msg("%s: got %s/%u family %d, want %s/%u family %d", tc->cidr,
                     shown, n->prefix, n->family, tc->want_addr,
                     tc->want_prefix, tc->want_family);
        policy_free(p);
    }
}

/* ---- matching ------------------------------------------------------------ */

struct match_case {
    const char *net;
    const char *addr; /* contains ':' -> sockaddr_in6, else sockaddr_in */
    bool want;
};

static const struct match_case match_cases[] = {
    {"10.0.0.0/8", "10.0.0.0", true},
    {"10.0.0.0/8", "10.255.255.255", true},
    {"10.0.0.0/8", "11.0.0.0", false},
    {"10.0.0.0/8", "9.255.255.255", false},
    {"10.0.0.0/8", "::ffff:10.1.2.3", true}, /* v4-mapped = IPv4 */
    {"10.0.0.0/8", "::ffff:11.1.2.3", false},
    {"10.0.0.0/8", "::a00:1", false}, /* v4-compatible is plain IPv6 */
    {"10.0.0.0/8", "::1", false},
    {"0.0.0.0/0", "0.0.0.0", true},
    {"0.0.0.0/0", "255.255.255.255", true},
    {"0.0.0.0/0", "::ffff:1.2.3.4", true},
    {"0.0.0.0/0", "::1", false},
    {"0.0.0.0/0", "2001:db8::1", false},
    {"::/0", "2001:db8::1", true},
    {"::/0", "::", true},
    {"::/0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true},
    {"::/0", "1.2.3.4", false},
    {"::/0", "::ffff:1.2.3.4", false}, /* treated as IPv4 */
    {"192.168.1.7/32", "192.168.1.7", true},
    {"192.168.1.7/32", "192.168.1.6", false},
    {"192.168.1.7/32", "192.168.1.8", false},
    {"192.168.1.7", "::ffff:192.168.1.7", true},
    {"254.0.0.0/7", "254.0.0.0", true},
    {"254.0.0.0/7", "255.255.255.255", true},
    {"254.0.0.0/7", "253.255.255.255", false},
    {"10.0.0.128/25", "10.0.0.128", true},
    {"10.0.0.128/25", "10.0.0.255", true},
    {"10.0.0.128/25", "10.0.0.127", false},
    {"10.0.0.1/31", "10.0.0.0", true},
    {"10.0.0.1/31", "10.0.0.1", true},
    {"10.0.0.1/31", "10.0.0.2", false},
    {"128.0.0.0/1", "128.0.0.0", true},
    {"128.0.0.0/1", "127.255.255.255", false},
    {"::1/128", "::1", true},
    {"::1/128", "::2", false},
    {"::1/128", "::", false},
    {"::1/128", "127.0.0.1", false},
    {"2001:db8::/32", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", true},
    {"2001:db8::/32", "2001:db9::", false},
    {"2001:db8::/32", "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", false},
    {"2001:db8::/127", "2001:db8::1", true},
    {"2001:db8::/127", "2001:db8::2", false},
    {"fe80::/10", "fe80::1", true},
    {"fe80::/10", "febf:ffff::", true},
    {"fe80::/10", "fec0::", false},
    {"fe00::/7", "fdff:ffff::", false},
    {"fe00::/7", "ffff::1", true},
    {"::ffff:192.0.2.0/120", "192.0.2.5", true},
    {"::ffff:192.0.2.0/120", "::ffff:192.0.2.5", true},
    {"::ffff:192.0.2.0/120", "192.0.3.1", false},
    {"::ffff:0:0/95", "::ffff:1.2.3.4", false}, /* IPv6 net, IPv4 client */
};

static void make_addr(const char *text, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (strchr(text, ':') != NULL) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(25);
        assert_int_equal(inet_pton(AF_INET6, text, &in6->sin6_addr), 1);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        in->sin_family = AF_INET;
        in->sin_port = htons(25);
        assert_int_equal(inet_pton(AF_INET, text, &in->sin_addr), 1);
    }
}

static void test_match(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof match_cases / sizeof *match_cases; i++) {
        const struct match_case *tc = &match_cases[i];
        char json[256], err[SR_ERRMSG_SIZE] = "";
        snprintf(json, sizeof json,
                 "{\"customers\":[{\"name\":\"a\",\"networks\":[\"%s\"]}]}",
                 tc->net);
        struct policy *p;
        int rc = parse(json, &p, err, sizeof err);
        if (rc != 0)
            fail_msg("%s: rc %d err %s", tc->net, rc, err);
        struct sockaddr_storage ss;
        make_addr(tc->addr, &ss);
        bool got = policy_allows(&p->customers[0], (struct sockaddr *)&ss);
        if (got != tc->want)
            fail_msg("%s in %s: got %d want %d", tc->addr, tc->net, got,
                     tc->want);
        policy_free(p);
    }
}

static void test_match_edges(void **state)
{
    (void)state;
    struct policy *p;
    char err[SR_ERRMSG_SIZE];
    const char *doc = "{\"customers\":[{\"name\":\"none\"},{\"name\":\"two\","
                      "\"networks\":[\"10.0.0.0/8\",\"2001:db8::/32\"]}]}";
    assert_int_equal(parse(doc, &p, err, sizeof err), 0);
    struct sockaddr_storage ss;

    /* No networks: nobody. */
    make_addr("10.0.0.1", &ss);
    assert_false(policy_allows(policy_find(p, "none"), (struct sockaddr *)&ss));
    /* Any of several networks. */
    const struct policy_customer *two = policy_find(p, "two");
    assert_true(policy_allows(two, (struct sockaddr *)&ss));
    make_addr("2001:db8::25", &ss);
    assert_true(policy_allows(two, (struct sockaddr *)&ss));
    make_addr("192.0.2.1", &ss);
    assert_false(policy_allows(two, (struct sockaddr *)&ss));
    /* Other families and NULLs never match. */
    struct sockaddr_un un = {.sun_family = AF_UNIX, .sun_path = "/tmp/x"};
    assert_false(policy_allows(two, (struct sockaddr *)&un));
    assert_false(policy_allows(two, NULL));
    assert_false(policy_allows(NULL, (struct sockaddr *)&ss));
    policy_free(p);

    /* The dev policy admits loopback only. */
    assert_int_equal(parse(policy_default_json(), &p, err, sizeof err), 0);
    const struct policy_customer *def = policy_find(p, "default");
    make_addr("127.0.0.1", &ss);
    assert_true(policy_allows(def, (struct sockaddr *)&ss));
    make_addr("::ffff:127.0.0.1", &ss);
    assert_true(policy_allows(def, (struct sockaddr *)&ss));
    make_addr("::1", &ss);
    assert_true(policy_allows(def, (struct sockaddr *)&ss));
    make_addr("127.0.0.2", &ss);
    assert_false(policy_allows(def, (struct sockaddr *)&ss));
    policy_free(p);
}

/* ---- YAML to JSON -------------------------------------------------------- */

struct yaml_case {
    const char *yaml;
    int want_rc;
    const char *want; /* exact JSON, or a substring of the error */
};

static const struct yaml_case yaml_cases[] = {
    {"a: 1", 0, "{\"a\":1}"},
    {"a: [1, -2.5e3, 0, -0, 10.25]", 0, "{\"a\":[1,-2.5e3,0,-0,10.25]}"},
    {"a: true\nb: False\nc: TRUE\nd: ~\ne:\nf: null\ng: NULL", 0,
     "{\"a\":true,\"b\":false,\"c\":true,\"d\":null,\"e\":null,\"f\":null,"
     "\"g\":null}"},
    /* Not JSON numbers or YAML 1.2 booleans: strings. */
    {"[yes, no, on, 0x10, 0o17, 01, +1, .5, 1., .inf, .nan, 1_000, 12:30]", 0,
     "[\"yes\",\"no\",\"on\",\"0x10\",\"0o17\",\"01\",\"+1\",\".5\",\"1.\","
     "\".inf\",\".nan\",\"1_000\",\"12:30\"]"},
    /* Quoted and explicitly tagged scalars stay strings. */
    {"a: '5'\nb: \"true\"\nc: !!str 7\nd: !!str null\ne: ''", 0,
     "{\"a\":\"5\",\"b\":\"true\",\"c\":\"7\",\"d\":\"null\",\"e\":\"\"}"},
    {"a: !!int 5\nb: !custom x", 0, "{\"a\":5,\"b\":\"x\"}"},
    {"a: \"q\\\"\\\\\\t\\r\\n\\u0001\\0\\x7f/\"", 0,
     "{\"a\":\"q\\\"\\\\\\t\\r\\n\\u0001\\u0000\x7f/\"}"},
    {"a: caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa7", 0,
     "{\"a\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa7\"}"},
    {"a: |\n  line1\n  line2\nb: >\n  folded\n  text\n", 0,
     "{\"a\":\"line1\\nline2\\n\",\"b\":\"folded text\\n\"}"},
    {"\"a b\": 1\n'c\"d': 2\n3: x\n~: y\n", 0,
     "{\"a b\":1,\"c\\\"d\":2,\"3\":\"x\",\"~\":\"y\"}"},
    {"{a: 1, b: [x, {c: []}], d: {}}", 0,
     "{\"a\":1,\"b\":[\"x\",{\"c\":[]}],\"d\":{}}"},
    {"[1, 2]", 0, "[1,2]"},
    {"- a\n- - b\n  - c\n", 0, "[\"a\",[\"b\",\"c\"]]"},
    {"plain", 0, "\"plain\""},
    {"", 0, "null"},
    {"# comment only\n", 0, "null"},
    {"---\n", 0, "null"},
    {"--- 5\n...\n", 0, "5"},
    /* Aliases are expanded. */
    {"nets: &n [10.0.0.0/8, '::1']\nx: *n\ny: &k key\n*k : 1", 0,
     "{\"nets\":[\"10.0.0.0/8\",\"::1\"],\"x\":[\"10.0.0.0/8\",\"::1\"],"
     "\"y\":\"key\",\"key\":1}"},
    /* Errors */
    {"a: [1", SR_EPARSE, "line 2, column 1: flow sequence without a closing"},
    {"a: 1\na: 2", SR_EPARSE, "duplicate key"},
    {"a: 1\n---\nb: 2", SR_EPARSE, "only one YAML document"},
    {"a: *nope", SR_EPARSE, "line 1: alias to unknown anchor"},
    {"a: &a [*a]", SR_EPARSE, "nested deeper than 64 levels"},
    {"? [1]\n: 2", SR_EPARSE, "mapping keys must be scalars"},
    {"? {a: 1}\n: 2", SR_EPARSE, "mapping keys must be scalars"},
    {"a: \"\\ud800\"", SR_EPARSE, "line 1"},
    {"a: \"\\xff\"", 0, "{\"a\":\"\xc3\xbf\"}"},
    {"a: b\xff", SR_EPARSE, "line 1: invalid UTF-8"},
    {"a: \x01", SR_EPARSE, "line 1: character U+0001 is not allowed"},
    /* libfyaml 0.7.12 misreads adjacent '' escapes: refused, not misread */
    {"a: 'x''y''z'\nb: ''''", 0, "{\"a\":\"x'y'z\",\"b\":\"'\"}"},
    {"a: &q 'x''''y'\nb: *q", SR_EPARSE,
     "line 1: adjacent '' escapes in a single-quoted string"},
    {"- ok\n- ''''''''''''", SR_EPARSE, "line 2: adjacent '' escapes"},
    {"a: &r 5\nb: *r/\nc: */@", SR_EPARSE,
     "line 2: alias names containing '/' are not supported"},
};

static void test_yaml_to_json(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof yaml_cases / sizeof *yaml_cases; i++) {
        const struct yaml_case *tc = &yaml_cases[i];
        char *json = (char *)&json; /* must be reset to NULL on error */
        char err[SR_ERRMSG_SIZE] = "";
        int rc = policy_yaml_to_json(tc->yaml, strlen(tc->yaml), &json, err,
                                     sizeof err);
        if (rc != tc->want_rc)
            fail_msg("case %zu: rc %d want %d err \"%s\"", i, rc, tc->want_rc,
                     err);
        if (rc == 0) {
            if (strcmp(json, tc->want) != 0)
                fail_msg("case %zu: got %s\nwant %s", i, json, tc->want);
            /* Whatever comes out is valid JSON. */
            json_error_t je;
            json_t *j = json_loads(json, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
            if (j == NULL)
                fail_msg("case %zu: invalid JSON %s: %s", i, json, je.text);
            json_decref(j);
            free(json);
        } else {
            assert_null(json);
            if (strstr(err, tc->want) == NULL)
                fail_msg("case %zu: err \"%s\" want \"%s\"", i, err, tc->want);
        }
    }
}

/* NUL is not allowed in a YAML stream; the length says where it ends. */
static void test_yaml_lengths(void **state)
{
    (void)state;
    char *json;
    char err[SR_ERRMSG_SIZE] = "";
    static const char nul[] = "a: 1\nb: x\0y\n";
    assert_int_equal(
        policy_yaml_to_json(nul, sizeof nul - 1, &json, err, sizeof err),
        SR_EPARSE);
    assert_null(json);
    assert_string_equal(err, "line 2: character U+0000 is not allowed in YAML");
    static const char longer[] = "a: 1\nb: [";
    assert_int_equal(policy_yaml_to_json(longer, 4, &json, err, sizeof err), 0);
    assert_string_equal(json, "{\"a\":1}");
    free(json);
    assert_int_equal(policy_yaml_to_json(NULL, 0, &json, err, sizeof err), 0);
    assert_string_equal(json, "null");
    free(json);
}

/* A few kilobytes of aliases expanding to gigabytes are refused, quickly. */
static void test_yaml_alias_bomb(void **state)
{
    (void)state;
    const char *bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                       "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                       "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                       "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                       "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                       "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                       "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
                       "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
                       "i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]\n";
    char *json;
    char err[SR_ERRMSG_SIZE] = "";
    assert_int_equal(
        policy_yaml_to_json(bomb, strlen(bomb), &json, err, sizeof err),
        SR_EPARSE);
    assert_null(json);
    assert_non_null(strstr(err, "more than 16 MiB"));
}

/* What an operator writes, converted the way clusterctl does, parsed the
 * way a node does. */
static const char operator_yaml[] = "# policy.yaml\n"
                                    "customers:\n"
                                    "  - name: default\n"
                                    "    networks: [127.0.0.1/32, '::1/128']\n"
                                    "  - name: acme\n"
                                    "    networks:\n"
                                    "      - 192.0.2.0/24\n"
                                    "      - 2001:db8:acme::/48\n"
                                    "    max_sessions: 20\n"
                                    "    max_message_size: 26214400\n"
                                    "    max_recipients: 50\n"
                                    "    require_tls: true\n";

static void test_round_trip(void **state)
{
    (void)state;
    char *json;
    char err[SR_ERRMSG_SIZE] = "";
    /* 2001:db8:acme:: is not an address: YAML conversion does not care,
     * policy parsing does. */
    int rc = policy_yaml_to_json(operator_yaml, strlen(operator_yaml), &json,
                                 err, sizeof err);
    assert_int_equal(rc, 0);
    struct policy *p;
    assert_int_equal(parse(json, &p, err, sizeof err), SR_EINVAL);
    assert_string_equal(
        err, "customers[1].networks[1]: bad CIDR '2001:db8:acme::/48'");
    free(json);

    char fixed[sizeof operator_yaml];
    strcpy(fixed, operator_yaml);
    char *bad = strstr(fixed, "acme::");
    memcpy(bad, "ac0e::", 6);
    rc = policy_yaml_to_json(fixed, strlen(fixed), &json, err, sizeof err);
    assert_int_equal(rc, 0);
    assert_string_equal(
        json, "{\"customers\":[{\"name\":\"default\",\"networks\":["
              "\"127.0.0.1/32\",\"::1/128\"]},{\"name\":\"acme\","
              "\"networks\":[\"192.0.2.0/24\",\"2001:db8:ac0e::/48\"],"
              "\"max_sessions\":20,\"max_message_size\":26214400,"
              "\"max_recipients\":50,\"require_tls\":true}]}");

    /* Types survive: integers are JSON integers, booleans JSON booleans. */
    json_t *j = json_loads(json, 0, NULL);
    assert_non_null(j);
    json_t *acme = json_array_get(json_object_get(j, "customers"), 1);
    assert_true(json_is_integer(json_object_get(acme, "max_sessions")));
    assert_true(json_is_integer(json_object_get(acme, "max_message_size")));
    assert_true(json_is_true(json_object_get(acme, "require_tls")));
    json_decref(j);

    assert_int_equal(parse(json, &p, err, sizeof err), 0);
    free(json);
    assert_int_equal(p->n_customers, 2);
    const struct policy_customer *c = policy_find(p, "acme");
    assert_non_null(c);
    assert_int_equal(c->n_nets, 2);
    assert_int_equal(c->max_sessions, 20);
    assert_int_equal(c->max_message_size, 26214400);
    assert_int_equal(c->max_recipients, 50);
    assert_true(c->require_tls);
    c = policy_find(p, "default");
    assert_int_equal(c->max_sessions, 100);
    assert_false(c->require_tls);
    policy_free(p);

    /* The default policy itself survives YAML (JSON is YAML). */
    const char *def = policy_default_json();
    assert_int_equal(
        policy_yaml_to_json(def, strlen(def), &json, err, sizeof err), 0);
    assert_string_equal(json, def);
    free(json);

    /* A quoted number stays a string and is refused, naming the key. */
    const char *quoted = "customers:\n  - name: a\n    max_sessions: '5'\n";
    assert_int_equal(
        policy_yaml_to_json(quoted, strlen(quoted), &json, err, sizeof err), 0);
    assert_int_equal(parse(json, &p, err, sizeof err), SR_EINVAL);
    assert_string_equal(err, "customers[0].max_sessions: must be an integer "
                             "between 1 and 100000");
    free(json);
    /* yes is a string in YAML 1.2, so it is not a boolean. */
    const char *yes = "customers:\n  - name: a\n    require_tls: yes\n";
    assert_int_equal(
        policy_yaml_to_json(yes, strlen(yes), &json, err, sizeof err), 0);
    assert_int_equal(parse(json, &p, err, sizeof err), SR_EINVAL);
    assert_string_equal(err, "customers[0].require_tls: must be true or false");
    free(json);
}

static void test_routes(void **state)
{
    (void)state;
    const char *j = "{\"customers\":[{\"name\":\"a\"}],\"routes\":["
                    "{\"domain\":\"Example.ORG\",\"host\":\"127.0.0.1:2600\","
                    "\"tls\":\"none\"},"
                    "{\"domain\":\"*\",\"host\":\"[::1]:2525\"}]}";
    struct policy *p;
    char err[256];
    assert_int_equal(policy_parse_json(j, strlen(j), &p, err, sizeof err), 0);
    assert_int_equal(p->n_routes, 2);
    const struct policy_route *r = policy_route_for(p, "EXAMPLE.org");
    assert_non_null(r);
    assert_string_equal(r->domain, "example.org");
    assert_string_equal(r->host, "127.0.0.1");
    assert_int_equal(r->port, 2600);
    assert_int_equal(r->tls, POLICY_TLS_NONE);
    r = policy_route_for(p, "other.net");
    assert_non_null(r);
    assert_string_equal(r->host, "::1");
    assert_int_equal(r->tls, POLICY_TLS_DEFAULT);
    policy_free(p);
    const char *k = "{\"customers\":[{\"name\":\"a\"}]}";
    assert_int_equal(policy_parse_json(k, strlen(k), &p, err, sizeof err), 0);
    assert_null(policy_route_for(p, "example.org"));
    assert_null(policy_dest_for(p, "example.org"));
    policy_free(p);
    const char *t = "{\"customers\":[{\"name\":\"a\",\"source_ip\":"
                    "\"::1\"}],\"destinations\":[{\"domain\":\"X.org\","
                    "\"per_minute\":5,\"max_connections\":2}]}";
    assert_int_equal(policy_parse_json(t, strlen(t), &p, err, sizeof err), 0);
    const struct policy_dest *d = policy_dest_for(p, "x.ORG");
    assert_non_null(d);
    assert_int_equal(d->per_minute, 5);
    assert_int_equal(d->per_hour, 0);
    assert_int_equal(d->max_connections, 2);
    assert_string_equal(p->customers[0].source_ip, "::1");
    policy_free(p);
    /* response rules, rates */
    const char *u =
        "{\"customers\":[{\"name\":\"a\",\"per_second\":3,\"per_hour\":"
        "100}],\"global\":{\"per_second\":50},\"destinations\":[{\"domain\":"
        "\"y.org\",\"rules\":[{\"match\":\"\\\\[TS04\\\\]\",\"action\":"
        "\"suspend\",\"seconds\":600},{\"match\":\"^421 .*later\",\"action\":"
        "\"slow\",\"per_minute\":10,\"seconds\":60}]}]}";
    assert_int_equal(policy_parse_json(u, strlen(u), &p, err, sizeof err), 0);
    assert_int_equal(p->global_per_second, 50);
    assert_int_equal(p->customers[0].per_second, 3);
    assert_int_equal(p->customers[0].per_hour, 100);
    d = policy_dest_for(p, "y.org");
    assert_non_null(d);
    assert_int_equal(d->n_rules, 2);
    assert_false(d->rules[0].slow);
    assert_int_equal(d->rules[0].seconds, 600);
    assert_int_equal(
        regexec(&d->rules[0].re, "421 4.7.0 [ts04] deferred", 0, NULL, 0), 0);
    assert_int_not_equal(regexec(&d->rules[0].re, "421 4.7.0 TS04", 0, NULL, 0),
                         0);
    assert_true(d->rules[1].slow);
    assert_int_equal(d->rules[1].per_minute, 10);
    assert_int_equal(
        regexec(&d->rules[1].re, "421 4.7.0 Try again LATER", 0, NULL, 0), 0);
    policy_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_policy),
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_cidr),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_match_edges),
        cmocka_unit_test(test_yaml_to_json),
        cmocka_unit_test(test_yaml_lengths),
        cmocka_unit_test(test_yaml_alias_bomb),
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
