/* test_mx.c - MX resolution (engine/mx.h): the pure parts, and the loop
 * integration against a local UDP socket that never answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/mx.h"
#include "node/errors.h"

/* ---- domain names and literals ---- */

static void test_domain_normalize(void **state)
{
    (void)state;
    char out[MX_NAME_MAX + 1];
    char l63[64], l64[65], long253[300], long254[300];
    memset(l63, 'a', 63);
    l63[63] = '\0';
    memset(l64, 'a', 64);
    l64[64] = '\0';
    /* 4 labels of 63 + 3 dots = 255: take 253 and 254 out of it */
    snprintf(long253, sizeof long253, "%s.%s.%s.%s", l63, l63, l63, l63);
    long253[253] = '\0';
    long253[252] = 'b';
    memcpy(long254, long253, 253);
    long254[253] = 'c';
    long254[254] = '\0';
    struct {
        const char *in;
        const char *want; /* NULL: invalid */
    } rows[] = {
        {"Example.COM", "example.com"},
        {"example.com.", "example.com"},
        {"mx-1.example.com", "mx-1.example.com"},
        {"xn--bcher-kva.example", "xn--bcher-kva.example"},
        {"XN--BCHER-KVA.Example", "xn--bcher-kva.example"},
        {"localhost", "localhost"},
        {"123.example", "123.example"},
        {"a.b2", "a.b2"},
        {l63, l63},
        {long253, long253},
        {"", NULL},
        {".", NULL},
        {"..", NULL},
        {"a..b", NULL},
        {".example.com", NULL},
        {"example.com..", NULL},
        {"-a.example", NULL},
        {"a-.example", NULL},
        {"a_b.example", NULL},
        {"a b.example", NULL},
        {"a\\.b.example", NULL},
        {"caf\xc3\xa9.example", NULL}, /* a U-label: must be an A-label */
        {"1.2.3.4", NULL},             /* numeric top label */
        {"example.123", NULL},
        {"[192.0.2.1]", NULL},
        {l64, NULL},
        {long254, NULL},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int rc = mx_domain_normalize(rows[i].in, out, sizeof out);
        if (rows[i].want == NULL) {
            if (rc != SR_EINVAL)
                fail_msg("row %zu \"%s\" accepted", i, rows[i].in);
        } else {
            if (rc != 0)
                fail_msg("row %zu \"%s\" rejected", i, rows[i].in);
            assert_string_equal(out, rows[i].want);
        }
    }
    /* the output buffer must fit */
    char small[8];
    assert_int_equal(mx_domain_normalize("example.com", small, sizeof small),
                     SR_EINVAL);
}

static void test_literals(void **state)
{
    (void)state;
    struct mx_addr a;
    char buf[INET6_ADDRSTRLEN];
    assert_int_equal(mx_parse_literal("[192.0.2.1]", &a), 1);
    assert_int_equal(a.family, AF_INET);
    assert_string_equal(mx_addr_str(&a, buf, sizeof buf), "192.0.2.1");
    assert_int_equal(mx_parse_literal("[IPv6:2001:DB8::1]", &a), 1);
    assert_int_equal(a.family, AF_INET6);
    assert_string_equal(mx_addr_str(&a, buf, sizeof buf), "2001:db8::1");
    assert_int_equal(mx_parse_literal("[ipv6:::1]", &a), 1);
    assert_string_equal(mx_addr_str(&a, buf, sizeof buf), "::1");
    assert_int_equal(mx_parse_literal("[IPv6:::ffff:192.0.2.1]", &a), 1);
    /* not a literal at all: a domain */
    assert_int_equal(mx_parse_literal("example.com", &a), 0);
    assert_int_equal(mx_parse_literal("", &a), 0);
    const char *bad[] = {
        "[192.0.2]",
        "[192.0.2.1",
        "[192.0.2.1]x",
        "[300.0.2.1]",
        "[01.0.2.1]",
        "[]",
        "[",
        "[2001:db8::1]",
        "[IPv6:1::2::3]",
        "[IPv6:192.0.2.1]",
        "[tag:content]",
        "[ 192.0.2.1]",
        "[IPv6:2001:db8:0:0:0:0:0:0:0:1234567890abcdef0123456789]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (mx_parse_literal(bad[i], &a) != SR_EINVAL)
            fail_msg("\"%s\" accepted", bad[i]);

    struct sockaddr_storage ss;
    mx_parse_literal("[192.0.2.7]", &a);
    assert_int_equal(mx_addr_sockaddr(&a, 25, &ss), sizeof(struct sockaddr_in));
    assert_int_equal(((struct sockaddr_in *)&ss)->sin_port, htons(25));
    mx_parse_literal("[IPv6:2001:db8::7]", &a);
    assert_int_equal(mx_addr_sockaddr(&a, 25, &ss),
                     sizeof(struct sockaddr_in6));
    assert_int_equal(ss.ss_family, AF_INET6);
}

/* ---- ordering ---- */

static void set_cand(struct mx_cand *c, uint16_t pref, const char *host)
{
    c->pref = pref;
    snprintf(c->host, sizeof c->host, "%s", host);
}

static uint32_t zero_random(void *ud)
{
    (void)ud;
    return 0;
}

static uint32_t lcg_random(void *ud)
{
    uint64_t *s = ud;
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*s >> 33);
}

static void test_order_sort(void **state)
{
    (void)state;
    struct mx_cand c[5];
    set_cand(&c[0], 20, "b20");
    set_cand(&c[1], 10, "a10");
    set_cand(&c[2], 30, "c30");
    set_cand(&c[3], 10, "d10");
    set_cand(&c[4], 0, "z0");
    /* no random function: sorted, stable */
    assert_int_equal(mx_order(c, 5, 10, NULL, NULL), 5);
    const char *want[] = {"z0", "a10", "d10", "b20", "c30"};
    for (int i = 0; i < 5; i++)
        assert_string_equal(c[i].host, want[i]);
}

static void test_order_shuffle(void **state)
{
    (void)state;
    struct mx_cand c[6];
    /* a random function that always says 0 gives one known permutation:
     * Fisher-Yates on [A B C D] swaps 3<->0, 2<->0, 1<->0 */
    set_cand(&c[0], 10, "a");
    set_cand(&c[1], 10, "b");
    set_cand(&c[2], 10, "c");
    set_cand(&c[3], 10, "d");
    set_cand(&c[4], 5, "first");
    set_cand(&c[5], 20, "last");
    assert_int_equal(mx_order(c, 6, 10, zero_random, NULL), 6);
    const char *want[] = {"first", "b", "c", "d", "a", "last"};
    for (int i = 0; i < 6; i++)
        assert_string_equal(c[i].host, want[i]);

    /* with a seeded generator: preferences never mix, and every order of
     * three equal hosts comes out about as often */
    uint64_t seed = 42;
    unsigned seen[6] = {0};
    for (int round = 0; round < 600; round++) {
        set_cand(&c[0], 30, "z");
        set_cand(&c[1], 10, "x");
        set_cand(&c[2], 10, "y");
        set_cand(&c[3], 10, "w");
        set_cand(&c[4], 1, "top");
        assert_int_equal(mx_order(c, 5, 10, lcg_random, &seed), 5);
        assert_string_equal(c[0].host, "top");
        assert_string_equal(c[4].host, "z");
        char key[4] = {c[1].host[0], c[2].host[0], c[3].host[0], '\0'};
        const char *perms[] = {"wxy", "wyx", "xwy", "xyw", "ywx", "yxw"};
        int k = -1;
        for (int p = 0; p < 6; p++)
            if (strcmp(key, perms[p]) == 0)
                k = p;
        assert_true(k >= 0);
        seen[k]++;
    }
    for (int p = 0; p < 6; p++)
        if (seen[p] < 60 || seen[p] > 140)
            fail_msg("permutation %d seen %u times in 600", p, seen[p]);

    /* the same seed gives the same order */
    struct mx_cand d1[4], d2[4];
    for (int i = 0; i < 4; i++) {
        char h[8];
        snprintf(h, sizeof h, "h%d", i);
        set_cand(&d1[i], 10, h);
        set_cand(&d2[i], 10, h);
    }
    uint64_t s1 = 7, s2 = 7;
    mx_order(d1, 4, 10, lcg_random, &s1);
    mx_order(d2, 4, 10, lcg_random, &s2);
    for (int i = 0; i < 4; i++)
        assert_string_equal(d1[i].host, d2[i].host);
}

static void test_order_dedupe_cap(void **state)
{
    (void)state;
    struct mx_cand c[20];
    set_cand(&c[0], 30, "dup");
    set_cand(&c[1], 10, "dup");
    set_cand(&c[2], 20, ""); /* not a valid host */
    set_cand(&c[3], 5, "."); /* a root among real MX: ignored */
    set_cand(&c[4], 40, "other");
    assert_int_equal(mx_order(c, 5, 10, NULL, NULL), 2);
    assert_string_equal(c[0].host, "dup");
    assert_int_equal(c[0].pref, 10);
    assert_string_equal(c[1].host, "other");

    /* 15 hosts: the 10 best are kept */
    for (int i = 0; i < 15; i++) {
        char h[16];
        snprintf(h, sizeof h, "mx%02d", 14 - i);
        set_cand(&c[i], (uint16_t)(14 - i), h);
    }
    assert_int_equal(mx_order(c, 15, MX_MAX_HOSTS, NULL, NULL), 10);
    for (int i = 0; i < 10; i++)
        assert_int_equal(c[i].pref, i);
}

static struct mx_addr v4(uint32_t n)
{
    struct mx_addr a = {.family = AF_INET};
    a.u.v4.s_addr = htonl(n);
    return a;
}

static struct mx_addr v6(uint8_t n)
{
    struct mx_addr a = {.family = AF_INET6};
    a.u.v6.s6_addr[15] = n;
    return a;
}

static void test_pick_addrs(void **state)
{
    (void)state;
    struct mx_addr a4[20], a6[20], out[MX_MAX_ADDRS];
    for (int i = 0; i < 20; i++) {
        a4[i] = v4(0xC0000200u + (uint32_t)i);
        a6[i] = v6((uint8_t)i);
    }
    struct {
        size_t n4, n6, cap, want4, want6;
    } rows[] = {
        {3, 3, 10, 3, 3},  {20, 20, 10, 5, 5}, {2, 20, 10, 2, 8},
        {20, 3, 10, 7, 3}, {20, 0, 10, 10, 0}, {0, 20, 10, 0, 10},
        {20, 20, 9, 5, 4}, {0, 0, 10, 0, 0},   {10, 10, 10, 5, 5},
        {6, 6, 10, 5, 5},  {4, 7, 10, 4, 6},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        size_t n =
            mx_pick_addrs(a4, rows[i].n4, a6, rows[i].n6, out, rows[i].cap);
        if (n != rows[i].want4 + rows[i].want6)
            fail_msg("row %zu: %zu addresses", i, n);
        for (size_t k = 0; k < n; k++) {
            int want = k < rows[i].want4 ? AF_INET : AF_INET6;
            if (out[k].family != want)
                fail_msg("row %zu: address %zu of family %d", i, k,
                         out[k].family);
        }
        /* each family keeps its own order */
        if (rows[i].want4 > 0)
            assert_memory_equal(&out[0], &a4[0], sizeof out[0]);
        if (rows[i].want6 > 0)
            assert_memory_equal(&out[rows[i].want4], &a6[0], sizeof out[0]);
    }
}

/* ---- DNS messages ---- */

struct pkt {
    unsigned char b[1024];
    size_t n;
};

static void put8(struct pkt *p, unsigned v)
{
    p->b[p->n++] = (unsigned char)v;
}

static void put16(struct pkt *p, unsigned v)
{
    put8(p, v >> 8);
    put8(p, v & 0xFF);
}

static void put32(struct pkt *p, uint32_t v)
{
    put16(p, v >> 16);
    put16(p, v & 0xFFFF);
}

/* Writes a name; "" is the root. ptr >= 0: end with a pointer there
 * instead of the root. Returns the name's offset. */
static size_t put_name(struct pkt *p, const char *name, int ptr)
{
    size_t at = p->n;
    while (*name) {
        const char *dot = strchr(name, '.');
        size_t l = dot ? (size_t)(dot - name) : strlen(name);
        put8(p, (unsigned)l);
        memcpy(p->b + p->n, name, l);
        p->n += l;
        name += l + (dot ? 1 : 0);
    }
    if (ptr >= 0)
        put16(p, 0xC000u | (unsigned)ptr);
    else
        put8(p, 0);
    return at;
}

static void put_header(struct pkt *p, unsigned rcode, unsigned an, unsigned ns,
                       unsigned ar)
{
    p->n = 0;
    put16(p, 0x1234);
    put16(p, 0x8180 | rcode);
    put16(p, 1);
    put16(p, an);
    put16(p, ns);
    put16(p, ar);
}

/* An RR header; returns the offset of rdlength to patch. */
static size_t put_rr(struct pkt *p, int owner_ptr, const char *owner,
                     unsigned type, uint32_t ttl)
{
    if (owner_ptr >= 0)
        put16(p, 0xC000u | (unsigned)owner_ptr);
    else
        put_name(p, owner, -1);
    put16(p, type);
    put16(p, 1);
    put32(p, ttl);
    size_t at = p->n;
    put16(p, 0);
    return at;
}

static void end_rr(struct pkt *p, size_t at)
{
    size_t len = p->n - at - 2;
    p->b[at] = (unsigned char)(len >> 8);
    p->b[at + 1] = (unsigned char)len;
}

static void test_parse_mx(void **state)
{
    (void)state;
    struct pkt p;
    put_header(&p, 0, 3, 0, 3);
    size_t q = put_name(&p, "A.Test", -1); /* upper case: normalized */
    put16(&p, MX_T_MX);
    put16(&p, 1);
    size_t at = put_rr(&p, (int)q, NULL, MX_T_MX, 300);
    put16(&p, 10);
    size_t mx1 = put_name(&p, "mx1", (int)q); /* mx1.a.test, compressed */
    end_rr(&p, at);
    at = put_rr(&p, (int)q, NULL, MX_T_MX, 200);
    put16(&p, 5);
    size_t mx2 = put_name(&p, "mx2", (int)q);
    end_rr(&p, at);
    at = put_rr(&p, (int)q, NULL, 99, 1); /* an unknown type: skipped */
    put32(&p, 0);
    end_rr(&p, at);
    at = put_rr(&p, (int)mx1, NULL, MX_T_A, 60);
    put32(&p, 0xC0000201);
    end_rr(&p, at);
    at = put_rr(&p, (int)mx2, NULL, MX_T_AAAA, 120);
    for (int i = 0; i < 15; i++)
        put8(&p, 0);
    put8(&p, 2);
    end_rr(&p, at);
    at = put_rr(&p, (int)mx2, NULL, MX_T_AAAA, 120); /* duplicate */
    for (int i = 0; i < 15; i++)
        put8(&p, 0);
    put8(&p, 2);
    end_rr(&p, at);

    struct mx_msg m;
    assert_int_equal(mx_msg_parse(p.b, p.n, &m), 0);
    assert_int_equal(m.rcode, 0);
    assert_int_equal(m.nrr, 5);
    struct mx_cand c[4];
    uint32_t ttl = UINT32_MAX;
    assert_int_equal(mx_msg_mx(&m, "a.test", c, 4, &ttl), 2);
    assert_int_equal(ttl, 200);
    assert_int_equal(c[0].pref, 10);
    assert_string_equal(c[0].host, "mx1.a.test");
    assert_string_equal(c[1].host, "mx2.a.test");
    /* the additional section */
    struct mx_addr a[4];
    char buf[INET6_ADDRSTRLEN];
    ttl = UINT32_MAX;
    assert_int_equal(mx_msg_addrs(&m, "mx1.a.test", AF_INET, a, 4, &ttl), 1);
    assert_string_equal(mx_addr_str(&a[0], buf, sizeof buf), "192.0.2.1");
    assert_int_equal(ttl, 60);
    assert_int_equal(mx_msg_addrs(&m, "mx1.a.test", AF_INET6, a, 4, &ttl), 0);
    ttl = UINT32_MAX;
    assert_int_equal(mx_msg_addrs(&m, "mx2.a.test", AF_INET6, a, 4, &ttl), 1);
    assert_string_equal(mx_addr_str(&a[0], buf, sizeof buf), "::2");
    assert_int_equal(ttl, 120);
    assert_int_equal(mx_msg_mx(&m, "b.test", c, 4, NULL), 0);
    mx_msg_free(&m);

    /* every truncation of it is malformed, none crashes */
    for (size_t n = 0; n < p.n; n++) {
        if (mx_msg_parse(p.b, n, &m) == 0)
            fail_msg("truncated at %zu accepted", n);
    }
}

static void test_parse_cname_null_soa(void **state)
{
    (void)state;
    struct pkt p;
    /* www.test MX: CNAME to real.test (TTL 30), whose MX is "." */
    put_header(&p, 0, 2, 0, 0);
    size_t q = put_name(&p, "www.test", -1);
    put16(&p, MX_T_MX);
    put16(&p, 1);
    size_t at = put_rr(&p, (int)q, NULL, MX_T_CNAME, 30);
    size_t real = put_name(&p, "real.test", -1);
    end_rr(&p, at);
    at = put_rr(&p, (int)real, NULL, MX_T_MX, 100);
    put16(&p, 0);
    put_name(&p, "", -1);
    end_rr(&p, at);
    struct mx_msg m;
    assert_int_equal(mx_msg_parse(p.b, p.n, &m), 0);
    uint32_t ttl = UINT32_MAX;
    assert_string_equal(mx_msg_canon(&m, "www.test", NULL), "real.test");
    struct mx_cand c[2];
    assert_int_equal(mx_msg_mx(&m, "www.test", c, 2, &ttl), 1);
    assert_string_equal(c[0].host, ".");
    assert_int_equal(ttl, 30);
    mx_msg_free(&m);

    /* NXDOMAIN with an SOA: negative TTL = min(SOA TTL, MINIMUM) */
    put_header(&p, 3, 0, 1, 0);
    q = put_name(&p, "nx.test", -1);
    put16(&p, MX_T_MX);
    put16(&p, 1);
    at = put_rr(&p, -1, "test", MX_T_SOA, 900);
    put_name(&p, "ns.test", -1);
    put_name(&p, "hostmaster.test", -1);
    put32(&p, 1);
    put32(&p, 2);
    put32(&p, 3);
    put32(&p, 4);
    put32(&p, 45); /* MINIMUM */
    end_rr(&p, at);
    assert_int_equal(mx_msg_parse(p.b, p.n, &m), 0);
    assert_int_equal(m.rcode, 3);
    assert_true(m.has_neg_ttl);
    assert_int_equal(m.neg_ttl, 45);
    mx_msg_free(&m);

    /* an MX whose target is not a host name: "" */
    put_header(&p, 0, 1, 0, 0);
    q = put_name(&p, "u.test", -1);
    put16(&p, MX_T_MX);
    put16(&p, 1);
    at = put_rr(&p, (int)q, NULL, MX_T_MX, 100);
    put16(&p, 10);
    put_name(&p, "bad_host.test", -1);
    end_rr(&p, at);
    assert_int_equal(mx_msg_parse(p.b, p.n, &m), 0);
    assert_int_equal(mx_msg_mx(&m, "u.test", c, 2, NULL), 1);
    assert_string_equal(c[0].host, "");
    mx_msg_free(&m);

    /* a compression pointer loop */
    put_header(&p, 0, 1, 0, 0);
    q = put_name(&p, "l.test", -1);
    put16(&p, MX_T_MX);
    put16(&p, 1);
    size_t self = p.n;
    put16(&p, 0xC000u | (unsigned)self); /* points at itself */
    put16(&p, MX_T_MX);
    put16(&p, 1);
    put32(&p, 1);
    put16(&p, 0);
    assert_int_equal(mx_msg_parse(p.b, p.n, &m), SR_EPARSE);

    /* an A record of the wrong length */
    put_header(&p, 0, 1, 0, 0);
    q = put_name(&p, "a.test", -1);
    put16(&p, MX_T_A);
    put16(&p, 1);
    at = put_rr(&p, (int)q, NULL, MX_T_A, 1);
    put16(&p, 7);
    end_rr(&p, at);
    assert_int_equal(mx_msg_parse(p.b, p.n, &m), SR_EPARSE);
}

/* ---- cache ---- */

static struct mx_result *result(uint32_t ttl)
{
    struct mx_result *r = mx_result_new(MX_OK, MX_R_OK);
    assert_non_null(r);
    r->ttl = ttl;
    return r;
}

static void test_cache_ttl(void **state)
{
    (void)state;
    struct mx_cache c;
    assert_int_equal(mx_cache_init(&c, 4), 0);
    struct mx_result *r = result(5);
    assert_int_equal(mx_cache_put(&c, "a.test", r, 1000, 5000), 0);
    assert_int_equal(r->refs, 2);
    assert_ptr_equal(mx_cache_get(&c, "a.test", 1000), r);
    assert_ptr_equal(mx_cache_get(&c, "a.test", 5999), r);
    assert_null(mx_cache_get(&c, "b.test", 1000));
    /* expired: gone, and its reference given back */
    assert_null(mx_cache_get(&c, "a.test", 6000));
    assert_int_equal(c.n, 0);
    assert_int_equal(r->refs, 1);
    /* TTL 0 is not stored */
    assert_int_equal(mx_cache_put(&c, "a.test", r, 1000, 0), 0);
    assert_int_equal(c.n, 0);
    /* replacing an entry releases the old result, renews the expiry */
    struct mx_result *r2 = result(9);
    mx_cache_put(&c, "a.test", r, 1000, 1000);
    mx_cache_put(&c, "a.test", r2, 1500, 1000);
    assert_int_equal(c.n, 1);
    assert_int_equal(r->refs, 1);
    assert_ptr_equal(mx_cache_get(&c, "a.test", 2400), r2);
    mx_cache_free(&c);
    assert_int_equal(r2->refs, 1);
    mx_result_release(r);
    mx_result_release(r2);
}

static void test_cache_lru(void **state)
{
    (void)state;
    struct mx_cache c;
    assert_int_equal(mx_cache_init(&c, 3), 0);
    struct mx_result *r = result(60);
    mx_cache_put(&c, "a", r, 0, 60000);
    mx_cache_put(&c, "b", r, 0, 60000);
    mx_cache_put(&c, "c", r, 0, 60000);
    assert_non_null(mx_cache_get(&c, "a", 1)); /* a: most recently used */
    mx_cache_put(&c, "d", r, 2, 60000);        /* evicts b */
    assert_int_equal(c.n, 3);
    assert_null(mx_cache_get(&c, "b", 3));
    assert_non_null(mx_cache_get(&c, "c", 3));
    assert_non_null(mx_cache_get(&c, "a", 3));
    assert_non_null(mx_cache_get(&c, "d", 3));
    mx_cache_put(&c, "e", r, 4, 60000); /* evicts c, least recently used */
    assert_null(mx_cache_get(&c, "c", 5));
    assert_int_equal(r->refs, 4);

    /* many domains: the size stays bounded, the newest stay */
    mx_cache_free(&c);
    assert_int_equal(r->refs, 1);
    assert_int_equal(mx_cache_init(&c, 100), 0);
    char name[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof name, "d%d.test", i);
        assert_int_equal(mx_cache_put(&c, name, r, 0, 60000), 0);
    }
    assert_int_equal(c.n, 100);
    assert_int_equal(r->refs, 101);
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof name, "d%d.test", i);
        assert_int_equal(mx_cache_get(&c, name, 1) != NULL, i >= 900);
    }
    mx_cache_free(&c);
    assert_int_equal(r->refs, 1);
    mx_result_release(r);
}

/* ---- the resolver on a loop, against a server that never answers ---- */

struct got {
    int calls;
    enum mx_status status;
    enum mx_reason reason;
    bool cached;
    char host[64];
    const struct mx_result *kept;
};

static void on_result(const struct mx_result *res, bool cached, void *ud)
{
    struct got *g = ud;
    g->calls++;
    g->status = res->status;
    g->reason = res->reason;
    g->cached = cached;
    g->host[0] = '\0';
    if (res->ntargets > 0)
        snprintf(g->host, sizeof g->host, "%s", res->targets[0].host);
    if (g->kept == NULL)
        g->kept = mx_result_hold(res);
}

/* A bound UDP socket that nobody reads: queries to it time out. */
static int silent_server(char *csv, size_t len)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t sl = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    snprintf(csv, len, "127.0.0.1:%u", ntohs(sa.sin_port));
    return fd;
}

static void run_until(uv_loop_t *loop, const int *calls, int want)
{
    for (int i = 0; i < 2000 && *calls < want; i++)
        uv_run(loop, UV_RUN_ONCE);
    assert_int_equal(*calls, want);
}

static void test_resolver_loop(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    char csv[64], err[SR_ERRMSG_SIZE];
    int fd = silent_server(csv, sizeof csv);
    struct mx_resolver *r;

    struct mx_opts bad = {.servers = "not-an-address"};
    assert_int_equal(mx_resolver_new(&loop, &bad, &r, err, sizeof err),
                     SR_EINVAL);

    struct mx_opts opts = {.servers = csv, .timeout_ms = 100, .tries = 1};
    assert_int_equal(mx_resolver_new(&loop, &opts, &r, err, sizeof err), 0);

    /* literals and bad names: no DNS, but never from inside mx_resolve */
    struct got lit = {0}, bad_name = {0};
    assert_int_equal(mx_resolve(r, "[IPv6:2001:db8::25]", on_result, &lit), 0);
    assert_int_equal(mx_resolve(r, "bad..name", on_result, &bad_name), 0);
    assert_int_equal(lit.calls + bad_name.calls, 0);
    run_until(&loop, &bad_name.calls, 1);
    assert_int_equal(lit.calls, 1);
    assert_int_equal(lit.status, MX_OK);
    assert_int_equal(lit.reason, MX_R_LITERAL);
    assert_string_equal(lit.host, "[IPv6:2001:db8::25]");
    assert_int_equal(lit.kept->targets[0].addrs[0].family, AF_INET6);
    assert_int_equal(bad_name.status, MX_PERMFAIL);
    assert_int_equal(bad_name.reason, MX_R_BAD_DOMAIN);
    assert_int_equal(bad_name.kept->code, SR_EINVAL);

    /* no answer: a timeout is a temporary failure, and is not cached */
    struct got t1 = {0}, t2 = {0};
    assert_int_equal(mx_resolve(r, "slow.test", on_result, &t1), 0);
    assert_int_equal(mx_resolve(r, "SLOW.test.", on_result, &t2), 0);
    run_until(&loop, &t2.calls, 1);
    assert_int_equal(t1.calls, 1);
    assert_int_equal(t1.status, MX_TEMPFAIL);
    assert_int_equal(t1.reason, MX_R_TIMEOUT);
    assert_int_equal(t1.kept->code, SR_ETIMEDOUT);
    assert_ptr_equal(t1.kept, t2.kept); /* coalesced: one shared result */
    struct mx_stats st;
    mx_resolver_stats(r, &st);
    assert_int_equal(st.queries, 1);
    assert_int_equal(st.coalesced, 1);
    assert_int_equal(st.cache_entries, 0);
    assert_int_equal(st.inflight, 0);

    /* close with lookups pending: their callbacks run inside close */
    struct got c1 = {0}, c2 = {0}, c3 = {0};
    opts.timeout_ms = 10000;
    struct mx_resolver *r2;
    assert_int_equal(mx_resolver_new(&loop, &opts, &r2, err, sizeof err), 0);
    assert_int_equal(mx_resolve(r2, "pending.test", on_result, &c1), 0);
    assert_int_equal(mx_resolve(r2, "pending.test", on_result, &c2), 0);
    assert_int_equal(mx_resolve(r2, "[192.0.2.9]", on_result, &c3), 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(c3.calls, 1); /* delivered already */
    assert_int_equal(c1.calls + c2.calls, 0);
    mx_resolver_stats(r2, &st);
    assert_int_equal(st.inflight, 1);
    mx_resolver_close(r2);
    assert_int_equal(c1.calls, 1);
    assert_int_equal(c2.calls, 1);
    assert_int_equal(c1.status, MX_CANCELLED);
    assert_int_equal(c1.kept->code, SR_ECANCELED);

    /* a callback ready but not yet run runs inside close too */
    struct got c4 = {0};
    struct mx_resolver *r3;
    assert_int_equal(mx_resolver_new(&loop, NULL, &r3, err, sizeof err), 0);
    assert_int_equal(mx_resolve(r3, "[192.0.2.10]", on_result, &c4), 0);
    mx_resolver_close(r3);
    assert_int_equal(c4.calls, 1);
    assert_int_equal(c4.status, MX_OK);

    mx_resolver_close(r);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    /* results outlive the resolver while held */
    struct got *all[] = {&lit, &bad_name, &t1, &t2, &c1, &c2, &c3, &c4};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        mx_result_release(all[i]->kept);
    close(fd);
}

static void test_strings(void **state)
{
    (void)state;
    assert_string_equal(mx_status_str(MX_PERMFAIL), "permfail");
    assert_string_equal(mx_reason_str(MX_R_NULL_MX), "null_mx");
    assert_string_equal(mx_reason_str(MX_R_NXDOMAIN), "nxdomain");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_domain_normalize),
        cmocka_unit_test(test_literals),
        cmocka_unit_test(test_order_sort),
        cmocka_unit_test(test_order_shuffle),
        cmocka_unit_test(test_order_dedupe_cap),
        cmocka_unit_test(test_pick_addrs),
        cmocka_unit_test(test_parse_mx),
        cmocka_unit_test(test_parse_cname_null_soa),
        cmocka_unit_test(test_cache_ttl),
        cmocka_unit_test(test_cache_lru),
        cmocka_unit_test(test_resolver_loop),
        cmocka_unit_test(test_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
