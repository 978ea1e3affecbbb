/*
 * policy.c - the cluster policy document (see policy.h, docs/CONFIG.md).
 *
 * What it does: validates the replicated JSON policy with jansson into an
 * immutable struct policy, converts the YAML that operators write into that
 * JSON, and answers "may this client address use this customer?".
 *
 * What it does not: it never reads files or the network, and does not
 * decide which customer a listener serves (smtp.customer in the node
 * config does).
 *
 * How it fails: parsing stops at the first problem and err names the full
 * key path ("customers[0].networks[2]: bad CIDR '10.0.0.300/8'").
 * Malformed JSON or YAML is SR_EPARSE, a well-formed document with a bad
 * value is SR_EINVAL, allocation failure SR_ENOMEM. *out is NULL on failure.
 *
 * Address matching: a client that arrives as a v4-mapped IPv6 address
 * (::ffff:a.b.c.d, as on a dual-stack socket) is matched as the IPv4 address,
 * and a network written in mapped form with a prefix of 96 or more is stored
 * as the IPv4 network it denotes, so both spellings behave the same.
 */
#include "queue/policy.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <jansson.h>
#include <libfyaml.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <uv.h>
#include <string.h>

#include "node/config.h"
#include "node/errors.h"
#include "node/yamlsafe.h"

#define DEFAULT_MAX_SESSIONS 100
#define DEFAULT_MAX_MESSAGE_SIZE 10485760
#define DEFAULT_MAX_RECIPIENTS 1000

/* YAML aliases can make a small file expand to a huge document ("billion
 * laughs"); the converted JSON is capped well above any real policy. */
#define YAML_JSON_MAX (16u * 1024 * 1024)
#define YAML_MAX_DEPTH 64

static const char default_json[] =
    "{\"customers\":[{\"name\":\"default\","
    "\"networks\":[\"127.0.0.1/32\",\"::1/128\"],"
    "\"max_sessions\":100,\"max_message_size\":10485760,"
    "\"max_recipients\":1000,\"require_tls\":false}]}";

const char *policy_default_json(void)
{
    return default_json;
}

/* ---- networks ------------------------------------------------------------ */

static void zero_host_bits(uint8_t *addr, unsigned prefix, unsigned bits)
{
    for (unsigned i = prefix; i < bits; i++)
        addr[i / 8] &= (uint8_t) ~(0x80u >> (i % 8));
}

/* Parses "a.b.c.d/len", "v6/len" or a plain address (a host route). */
static bool parse_cidr(const char *s, size_t len, struct policy_net *net)
{
    const char *slash = memchr(s, '/', len);
    size_t alen = slash != NULL ? (size_t)(slash - s) : len;
    char buf[INET6_ADDRSTRLEN];
    if (alen == 0 || alen >= sizeof buf)
        return false;
    memcpy(buf, s, alen);
    buf[alen] = '\0';

    memset(net, 0, sizeof *net);
    unsigned bits;
    if (memchr(buf, ':', alen) != NULL) {
        net->family = AF_INET6;
        bits = 128;
    } else {
        net->family = AF_INET;
        bits = 32;
    }
    if (inet_pton(net->family, buf, net->addr) != 1)
        return false;

    unsigned prefix = bits;
    if (slash != NULL) {
        const char *p = slash + 1;
        size_t plen = len - alen - 1;
        if (plen == 0 || plen > 3)
            return false;
        prefix = 0;
        for (size_t i = 0; i < plen; i++) {
            if (p[i] < '0' || p[i] > '9')
                return false;
            prefix = prefix * 10 + (unsigned)(p[i] - '0');
        }
        if (prefix > bits)
            return false;
    }
    net->prefix = prefix;
    zero_host_bits(net->addr, prefix, bits);

    /* ::ffff:0:0/96 and longer is IPv4 space written as IPv6. */
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0,    0,
                                       0, 0, 0, 0, 0xff, 0xff};
    if (net->family == AF_INET6 && prefix >= 96 &&
        memcmp(net->addr, mapped, 12) == 0) {
        uint8_t v4[4];
        memcpy(v4, net->addr + 12, 4);
        memset(net->addr, 0, sizeof net->addr);
        memcpy(net->addr, v4, 4);
        net->family = AF_INET;
        net->prefix = prefix - 96;
    }
    return true;
}

static bool prefix_match(const uint8_t *net, const uint8_t *addr,
                         unsigned prefix)
{
    unsigned full = prefix / 8, rest = prefix % 8;
    if (memcmp(net, addr, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (net[full] & mask) == (addr[full] & mask);
}

bool policy_allows(const struct policy_customer *c, const struct sockaddr *sa)
{
    if (c == NULL || sa == NULL)
        return false;
    int family;
    uint8_t addr[16] = {0};
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in in;
        memcpy(&in, sa, sizeof in);
        memcpy(addr, &in.sin_addr, 4);
        family = AF_INET;
    } else if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 in6;
        memcpy(&in6, sa, sizeof in6);
        if (IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr)) {
            memcpy(addr, in6.sin6_addr.s6_addr + 12, 4);
            family = AF_INET;
        } else {
            memcpy(addr, in6.sin6_addr.s6_addr, 16);
            family = AF_INET6;
        }
    } else {
        return false;
    }
    for (unsigned i = 0; i < c->n_nets; i++) {
        const struct policy_net *n = &c->nets[i];
        if (n->family == family && prefix_match(n->addr, addr, n->prefix))
            return true;
    }
    return false;
}

const struct policy_customer *policy_find(const struct policy *p,
                                          const char *name)
{
    if (p == NULL || name == NULL)
        return NULL;
    for (unsigned i = 0; i < p->n_customers; i++)
        if (strcmp(p->customers[i].name, name) == 0)
            return &p->customers[i];
    return NULL;
}

void policy_free(struct policy *p)
{
    if (p == NULL)
        return;
    for (unsigned i = 0; i < p->n_customers; i++) {
        free(p->customers[i].name);
        free(p->customers[i].nets);
        free(p->customers[i].source_ip);
        policy_rewrap_free(p->customers[i].rewrap);
        policy_sms_free(p->customers[i].sms);
        for (unsigned u = 0; u < p->customers[i].n_users; u++) {
            free(p->customers[i].users[u].name);
            free(p->customers[i].users[u].hash);
        }
        free(p->customers[i].users);
    }
    free(p->customers);
    for (unsigned i = 0; i < p->n_routes; i++) {
        free(p->routes[i].domain);
        free(p->routes[i].host);
    }
    free(p->routes);
    for (unsigned i = 0; i < p->n_dests; i++) {
        free(p->dests[i].domain);
        for (unsigned r = 0; r < p->dests[i].n_rules; r++) {
            free(p->dests[i].rules[r].match);
            regfree(&p->dests[i].rules[r].re);
        }
        free(p->dests[i].rules);
    }
    free(p->dests);
    policy_tracking_free(p->tracking);
    policy_smscs_free(p->sms);
    free(p);
}

const struct policy_dest *policy_dest_for(const struct policy *p,
                                          const char *domain)
{
    for (unsigned i = 0; p != NULL && i < p->n_dests; i++)
        if (strcasecmp(p->dests[i].domain, domain) == 0)
            return &p->dests[i];
    return NULL;
}

const struct policy_route *policy_route_for(const struct policy *p,
                                            const char *domain)
{
    const struct policy_route *star = NULL;
    for (unsigned i = 0; p != NULL && i < p->n_routes; i++) {
        if (strcasecmp(p->routes[i].domain, domain) == 0)
            return &p->routes[i];
        if (strcmp(p->routes[i].domain, "*") == 0)
            star = &p->routes[i];
    }
    return star;
}

/* ---- JSON validation ------------------------------------------------------
 */

bool policy_valid_name(const char *s, size_t len)
{
    if (len == 0 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'))
            return false;
    }
    return true;
}

/* Reads an optional integer member into *out (left alone when absent). */
static int get_int(json_t *obj, const char *key, unsigned idx, long long min,
                   long long max, long long *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < min ||
        json_integer_value(v) > max)
        return sr_err(err, errlen, SR_EINVAL,
                      "customers[%u].%s: must be an integer between %lld and "
                      "%lld",
                      idx, key, min, max);
    *out = json_integer_value(v);
    return 0;
}

static int parse_networks(json_t *v, unsigned idx, struct policy_customer *c,
                          char *err, size_t errlen)
{
    if (!json_is_array(v))
        return sr_err(err, errlen, SR_EINVAL,
                      "customers[%u].networks: must be an array of CIDR "
                      "strings",
                      idx);
    size_t n = json_array_size(v);
    if (n == 0)
        return 0;
    if (n > UINT32_MAX)
        return sr_err(err, errlen, SR_EINVAL,
                      "customers[%u].networks: too many networks", idx);
    c->nets = calloc(n, sizeof *c->nets);
    if (c->nets == NULL)
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(v, i);
        if (!json_is_string(s))
            return sr_err(err, errlen, SR_EINVAL,
                          "customers[%u].networks[%zu]: must be a CIDR string",
                          idx, i);
        const char *text = json_string_value(s);
        size_t len = json_string_length(s);
        if (!parse_cidr(text, len, &c->nets[i])) {
            char shown[80];
            sr_sanitize(shown, sizeof shown, text, len);
            return sr_err(err, errlen, SR_EINVAL,
                          "customers[%u].networks[%zu]: bad CIDR '%s'", idx, i,
                          shown);
        }
        c->n_nets = (unsigned)(i + 1);
    }
    return 0;
}

static const char *const customer_keys[] = {
    "name",           "networks",    "max_sessions", "max_message_size",
    "max_recipients", "require_tls", "users",        "require_auth",
    "listen_port",    "max_queued",  "source_ip",    "per_second",
    "per_hour",       "rewrap",      "sms",
};

/* "users": [{"name": "...", "password": "pbkdf2-sha256$..."}] */
static int parse_users(json_t *v, unsigned idx, struct policy_customer *c,
                       char *err, size_t errlen)
{
    if (!json_is_array(v))
        return sr_err(err, errlen, SR_EINVAL,
                      "customers[%u].users: must be a list", idx);
    size_t n = json_array_size(v);
    if (n > 1000)
        return sr_err(err, errlen, SR_EINVAL,
                      "customers[%u].users: at most 1000", idx);
    c->users = calloc(n ? n : 1, sizeof *c->users);
    if (c->users == NULL)
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *u = json_array_get(v, i);
        json_t *name = json_object_get(u, "name");
        json_t *pw = json_object_get(u, "password");
        if (!json_is_object(u) || json_object_size(u) != 2 ||
            !json_is_string(name) || !json_is_string(pw))
            return sr_err(err, errlen, SR_EINVAL,
                          "customers[%u].users[%zu]: must be {name, password}",
                          idx, i);
        const char *nm = json_string_value(name);
        size_t nl = json_string_length(name);
        bool ok = nl > 0 && nl <= 128;
        for (size_t k = 0; ok && k < nl; k++)
            ok = nm[k] > 0x20 && nm[k] < 0x7f;
        if (!ok)
            return sr_err(err, errlen, SR_EINVAL,
                          "customers[%u].users[%zu].name: 1 to 128 printable "
                          "ASCII characters",
                          idx, i);
        if (strncmp(json_string_value(pw), "pbkdf2-sha256$", 14) != 0 ||
            json_string_length(pw) > 256)
            return sr_err(err, errlen, SR_EINVAL,
                          "customers[%u].users[%zu].password: must be a hash "
                          "from 'clusterctl password-hash'",
                          idx, i);
        for (size_t k = 0; k < i; k++)
            if (strcmp(c->users[k].name, nm) == 0)
                return sr_err(err, errlen, SR_EINVAL,
                              "customers[%u].users[%zu].name: duplicate", idx,
                              i);
        c->users[i].name = strdup(nm);
        c->users[i].hash = strdup(json_string_value(pw));
        c->n_users = (unsigned)(i + 1);
        if (c->users[i].name == NULL || c->users[i].hash == NULL)
            return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    }
    return 0;
}

static int parse_customer(json_t *obj, unsigned idx, struct policy_customer *c,
                          char *err, size_t errlen)
{
    if (!json_is_object(obj))
        return sr_err(err, errlen, SR_EINVAL,
                      "customers[%u]: must be an object", idx);
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        bool known = false;
        for (size_t i = 0; i < sizeof customer_keys / sizeof *customer_keys;
             i++)
            known = known || strcmp(key, customer_keys[i]) == 0;
        if (!known) {
            char shown[80];
            sr_sanitize(shown, sizeof shown, key, strlen(key));
            return sr_err(err, errlen, SR_EINVAL,
                          "customers[%u].%s: unknown key", idx, shown);
        }
    }

    v = json_object_get(obj, "name");
    if (v == NULL)
        return sr_err(err, errlen, SR_EINVAL, "customers[%u].name: required",
                      idx);
    if (!json_is_string(v) ||
        !policy_valid_name(json_string_value(v), json_string_length(v)))
        return sr_err(err, errlen, SR_EINVAL,
                      "customers[%u].name: must be 1 to 64 characters of "
                      "A-Z a-z 0-9 _ . -",
                      idx);
    c->name = strdup(json_string_value(v));
    if (c->name == NULL)
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");

    /* No networks means no client may use the customer: deny by default. */
    v = json_object_get(obj, "networks");
    if (v != NULL) {
        int rc = parse_networks(v, idx, c, err, errlen);
        if (rc != 0)
            return rc;
    }

    long long sessions = DEFAULT_MAX_SESSIONS;
    long long size = DEFAULT_MAX_MESSAGE_SIZE;
    long long rcpts = DEFAULT_MAX_RECIPIENTS;
    int rc =
        get_int(obj, "max_sessions", idx, 1, 100000, &sessions, err, errlen);
    if (rc == 0)
        rc = get_int(obj, "max_message_size", idx, 1024, 1073741824, &size, err,
                     errlen);
    if (rc == 0)
        rc =
            get_int(obj, "max_recipients", idx, 1, 100000, &rcpts, err, errlen);
    long long queued = 0;
    if (rc == 0)
        rc = get_int(obj, "max_queued", idx, 0, 1000000000, &queued, err,
                     errlen);
    long long per_second = 0, per_hour = 0;
    if (rc == 0)
        rc = get_int(obj, "per_second", idx, 0, 100000, &per_second, err,
                     errlen);
    if (rc == 0)
        rc =
            get_int(obj, "per_hour", idx, 0, 100000000, &per_hour, err, errlen);
    if (rc != 0)
        return rc;
    c->max_queued = (unsigned)queued;
    c->per_second = (unsigned)per_second;
    c->per_hour = (unsigned)per_hour;
    if (json_object_get(obj, "sms") != NULL &&
        (rc = policy_sms_parse(json_object_get(obj, "sms"), idx, &c->sms, err,
                               errlen)) != 0)
        return rc;
    if (json_object_get(obj, "rewrap") != NULL &&
        (rc = policy_rewrap_parse(json_object_get(obj, "rewrap"), idx,
                                  &c->rewrap, err, errlen)) != 0)
        return rc;
    v = json_object_get(obj, "source_ip");
    if (v != NULL) {
        struct sockaddr_in6 sa6;
        struct sockaddr_in sa4;
        const char *ip = json_is_string(v) ? json_string_value(v) : "";
        if (uv_ip4_addr(ip, 0, &sa4) != 0 && uv_ip6_addr(ip, 0, &sa6) != 0)
            return sr_err(err, errlen, SR_EINVAL,
                          "customers[%u].source_ip: must be an IPv4 or IPv6 "
                          "address",
                          idx);
        if ((c->source_ip = strdup(ip)) == NULL)
            return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    }
    c->max_sessions = (unsigned)sessions;
    c->max_message_size = (size_t)size;
    c->max_recipients = (unsigned)rcpts;

    v = json_object_get(obj, "require_tls");
    if (v != NULL && !json_is_boolean(v))
        return sr_err(err, errlen, SR_EINVAL,
                      "customers[%u].require_tls: must be true or false", idx);
    c->require_tls = v != NULL && json_is_true(v);

    v = json_object_get(obj, "users");
    if (v != NULL && (rc = parse_users(v, idx, c, err, errlen)) != 0)
        return rc;
    v = json_object_get(obj, "require_auth");
    if (v != NULL && !json_is_boolean(v))
        return sr_err(err, errlen, SR_EINVAL,
                      "customers[%u].require_auth: must be true or false", idx);
    c->require_auth = v != NULL && json_is_true(v);
    long long port = 0;
    rc = get_int(obj, "listen_port", idx, 1, 65535, &port, err, errlen);
    if (rc != 0)
        return rc;
    c->listen_port = (unsigned)port;
    if (c->require_auth && c->n_users == 0)
        return sr_err(err, errlen, SR_EINVAL,
                      "customers[%u].require_auth: needs at least one user",
                      idx);
    return 0;
}

struct name_ref {
    const char *name;
    unsigned idx;
};

static int cmp_name_ref(const void *a, const void *b)
{
    const struct name_ref *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c != 0)
        return c;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Finds duplicate names in O(n log n): a policy may list many customers.
 * Reports the earliest second occurrence, as a linear scan would. */
static int check_unique(const struct policy *p, char *err, size_t errlen)
{
    if (p->n_customers < 2)
        return 0;
    for (unsigned i = 0; i < p->n_customers; i++)
        for (unsigned j = 0; j < i; j++)
            if (p->customers[i].listen_port != 0 &&
                p->customers[i].listen_port == p->customers[j].listen_port)
                return sr_err(err, errlen, SR_EINVAL,
                              "customers[%u].listen_port: %u is also "
                              "customers[%u]'s",
                              i, p->customers[i].listen_port, j);
    struct name_ref *refs = calloc(p->n_customers, sizeof *refs);
    if (refs == NULL)
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    for (unsigned i = 0; i < p->n_customers; i++)
        refs[i] = (struct name_ref){p->customers[i].name, i};
    qsort(refs, p->n_customers, sizeof *refs, cmp_name_ref);
    unsigned dup = UINT32_MAX, first = 0, group = 0;
    for (unsigned i = 1; i < p->n_customers; i++) {
        if (strcmp(refs[i].name, refs[i - 1].name) != 0) {
            group = i;
            continue;
        }
        if (refs[i].idx < dup) {
            dup = refs[i].idx;
            first = refs[group].idx;
        }
    }
    free(refs);
    if (dup == UINT32_MAX)
        return 0;
    return sr_err(err, errlen, SR_EINVAL,
                  "customers[%u].name: duplicate name '%s' (also "
                  "customers[%u])",
                  dup, p->customers[dup].name, first);
}

static bool valid_domain(const char *d)
{
    size_t n = strlen(d), label = 0;
    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = d[i];
        if (c == '.') {
            if (label == 0 || d[i - 1] == '-')
                return false;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                   (c == '-' && label > 0)) {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return label > 0 && d[n - 1] != '-';
}

static int parse_route(json_t *obj, unsigned idx, struct policy_route *r,
                       char *err, size_t errlen)
{
    if (!json_is_object(obj))
        return sr_err(err, errlen, SR_EINVAL, "routes[%u]: must be an object",
                      idx);
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        if (strcmp(key, "domain") && strcmp(key, "host") &&
            strcmp(key, "tls")) {
            char shown[80];
            sr_sanitize(shown, sizeof shown, key, strlen(key));
            return sr_err(err, errlen, SR_EINVAL, "routes[%u].%s: unknown key",
                          idx, shown);
        }
    }
    v = json_object_get(obj, "domain");
    if (!json_is_string(v))
        return sr_err(err, errlen, SR_EINVAL,
                      "routes[%u].domain: required, a domain or \"*\"", idx);
    char dom[256];
    snprintf(dom, sizeof dom, "%s", json_string_value(v));
    for (char *c = dom; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    if (strcmp(dom, "*") != 0 && !valid_domain(dom))
        return sr_err(err, errlen, SR_EINVAL,
                      "routes[%u].domain: not a domain name", idx);
    v = json_object_get(obj, "host");
    char host[128];
    int port;
    struct sockaddr_storage ss;
    if (!json_is_string(v) ||
        config_split_address(json_string_value(v), host, sizeof host, &port) !=
            0 ||
        config_ip_address(json_string_value(v), &ss) != 0)
        return sr_err(err, errlen, SR_EINVAL,
                      "routes[%u].host: must be IP:port (\"[v6]:port\")", idx);
    r->tls = POLICY_TLS_DEFAULT;
    v = json_object_get(obj, "tls");
    if (v != NULL) {
        const char *t = json_is_string(v) ? json_string_value(v) : "";
        if (strcmp(t, "none") == 0)
            r->tls = POLICY_TLS_NONE;
        else if (strcmp(t, "may") == 0)
            r->tls = POLICY_TLS_MAY;
        else if (strcmp(t, "require") == 0)
            r->tls = POLICY_TLS_REQUIRE;
        else
            return sr_err(err, errlen, SR_EINVAL,
                          "routes[%u].tls: must be none, may or require", idx);
    }
    r->domain = strdup(dom);
    r->host = strdup(host);
    r->port = (unsigned)port;
    if (r->domain == NULL || r->host == NULL)
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    return 0;
}

static int parse_routes(json_t *list, struct policy *p, char *err,
                        size_t errlen)
{
    if (list == NULL)
        return 0;
    size_t n = json_array_size(list);
    if (!json_is_array(list) || n > 10000)
        return sr_err(err, errlen, SR_EINVAL,
                      "routes: must be an array of at most 10000 routes");
    p->routes = calloc(n ? n : 1, sizeof *p->routes);
    if (p->routes == NULL)
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        p->n_routes = (unsigned)(i + 1);
        int rc = parse_route(json_array_get(list, i), (unsigned)i,
                             &p->routes[i], err, errlen);
        if (rc != 0)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (strcmp(p->routes[j].domain, p->routes[i].domain) == 0)
                return sr_err(err, errlen, SR_EINVAL,
                              "routes[%zu].domain: %s has a route already", i,
                              p->routes[i].domain);
    }
    return 0;
}

static int dest_int(json_t *obj, const char *key, unsigned idx, unsigned *out,
                    char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) > 100000000)
        return sr_err(err, errlen, SR_EINVAL,
                      "destinations[%u].%s: must be an integer between 0 and "
                      "100000000",
                      idx, key);
    *out = (unsigned)json_integer_value(v);
    return 0;
}

static int parse_rules(json_t *list, unsigned idx, struct policy_dest *d,
                       char *err, size_t errlen)
{
    size_t n = json_array_size(list);
    if (!json_is_array(list) || n > 100)
        return sr_err(err, errlen, SR_EINVAL,
                      "destinations[%u].rules: must be an array of at most 100",
                      idx);
    d->rules = calloc(n ? n : 1, sizeof *d->rules);
    if (d->rules == NULL)
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(list, i);
        struct policy_rule *r = &d->rules[i];
        if (!json_is_object(o))
            return sr_err(err, errlen, SR_EINVAL,
                          "destinations[%u].rules[%zu]: must be an object", idx,
                          i);
        const char *key;
        json_t *v;
        json_object_foreach(o, key, v)
        {
            if (strcmp(key, "match") && strcmp(key, "action") &&
                strcmp(key, "seconds") && strcmp(key, "per_minute")) {
                char shown[80];
                sr_sanitize(shown, sizeof shown, key, strlen(key));
                return sr_err(err, errlen, SR_EINVAL,
                              "destinations[%u].rules[%zu].%s: unknown key",
                              idx, i, shown);
            }
        }
        v = json_object_get(o, "match");
        const char *m = json_is_string(v) ? json_string_value(v) : "";
        if (m[0] == '\0' || strlen(m) > 500)
            return sr_err(err, errlen, SR_EINVAL,
                          "destinations[%u].rules[%zu].match: required, a "
                          "regular expression of at most 500 bytes",
                          idx, i);
        if (regcomp(&r->re, m, REG_EXTENDED | REG_ICASE | REG_NOSUB) != 0)
            return sr_err(err, errlen, SR_EINVAL,
                          "destinations[%u].rules[%zu].match: not a valid "
                          "POSIX extended regular expression",
                          idx, i);
        if ((r->match = strdup(m)) == NULL) {
            regfree(&r->re);
            return sr_err(err, errlen, SR_ENOMEM, "out of memory");
        }
        d->n_rules = (unsigned)i + 1; /* counted once re is compiled */
        v = json_object_get(o, "action");
        const char *a = json_is_string(v) ? json_string_value(v) : "";
        if (strcmp(a, "suspend") == 0)
            r->slow = false;
        else if (strcmp(a, "slow") == 0)
            r->slow = true;
        else
            return sr_err(err, errlen, SR_EINVAL,
                          "destinations[%u].rules[%zu].action: must be "
                          "\"suspend\" or \"slow\"",
                          idx, i);
        v = json_object_get(o, "seconds");
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > 7 * 86400)
            return sr_err(err, errlen, SR_EINVAL,
                          "destinations[%u].rules[%zu].seconds: required, an "
                          "integer between 1 and 604800",
                          idx, i);
        r->seconds = (unsigned)json_integer_value(v);
        v = json_object_get(o, "per_minute");
        if (r->slow != (v != NULL) ||
            (v && (!json_is_integer(v) || json_integer_value(v) < 1 ||
                   json_integer_value(v) > 100000000)))
            return sr_err(err, errlen, SR_EINVAL,
                          "destinations[%u].rules[%zu].per_minute: required "
                          "with \"slow\" (an integer from 1), not allowed "
                          "with \"suspend\"",
                          idx, i);
        if (v)
            r->per_minute = (unsigned)json_integer_value(v);
    }
    return 0;
}

static int parse_dests(json_t *list, struct policy *p, char *err, size_t errlen)
{
    if (list == NULL)
        return 0;
    size_t n = json_array_size(list);
    if (!json_is_array(list) || n > 10000)
        return sr_err(err, errlen, SR_EINVAL,
                      "destinations: must be an array of at most 10000");
    p->dests = calloc(n ? n : 1, sizeof *p->dests);
    if (p->dests == NULL)
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(list, i);
        unsigned idx = (unsigned)i;
        p->n_dests = idx + 1;
        struct policy_dest *d = &p->dests[i];
        if (!json_is_object(o))
            return sr_err(err, errlen, SR_EINVAL,
                          "destinations[%u]: must be an object", idx);
        const char *key;
        json_t *v;
        json_object_foreach(o, key, v)
        {
            if (strcmp(key, "domain") && strcmp(key, "per_minute") &&
                strcmp(key, "per_hour") && strcmp(key, "max_connections") &&
                strcmp(key, "per_connection") && strcmp(key, "rules")) {
                char shown[80];
                sr_sanitize(shown, sizeof shown, key, strlen(key));
                return sr_err(err, errlen, SR_EINVAL,
                              "destinations[%u].%s: unknown key", idx, shown);
            }
        }
        v = json_object_get(o, "domain");
        char dom[256];
        snprintf(dom, sizeof dom, "%s",
                 json_is_string(v) ? json_string_value(v) : "");
        for (char *c = dom; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        if (!valid_domain(dom))
            return sr_err(err, errlen, SR_EINVAL,
                          "destinations[%u].domain: required, a domain name",
                          idx);
        int rc = dest_int(o, "per_minute", idx, &d->per_minute, err, errlen);
        if (rc == 0)
            rc = dest_int(o, "per_hour", idx, &d->per_hour, err, errlen);
        if (rc == 0)
            rc = dest_int(o, "max_connections", idx, &d->max_connections, err,
                          errlen);
        if (rc == 0)
            rc = dest_int(o, "per_connection", idx, &d->per_connection, err,
                          errlen);
        if (rc == 0 && json_object_get(o, "rules") != NULL)
            rc = parse_rules(json_object_get(o, "rules"), idx, d, err, errlen);
        if (rc != 0)
            return rc;
        if ((d->domain = strdup(dom)) == NULL)
            return sr_err(err, errlen, SR_ENOMEM, "out of memory");
        for (size_t j = 0; j < i; j++)
            if (strcmp(p->dests[j].domain, dom) == 0)
                return sr_err(err, errlen, SR_EINVAL,
                              "destinations[%u].domain: %s is there already",
                              idx, dom);
    }
    return 0;
}

static int parse_global(json_t *g, struct policy *p, char *err, size_t errlen)
{
    if (g == NULL)
        return 0;
    const char *key;
    json_t *v;
    if (!json_is_object(g))
        return sr_err(err, errlen, SR_EINVAL, "global: must be an object");
    json_object_foreach(g, key, v)
    {
        if (strcmp(key, "per_second") != 0) {
            char shown[80];
            sr_sanitize(shown, sizeof shown, key, strlen(key));
            return sr_err(err, errlen, SR_EINVAL, "global.%s: unknown key",
                          shown);
        }
    }
    v = json_object_get(g, "per_second");
    if (v != NULL && (!json_is_integer(v) || json_integer_value(v) < 0 ||
                      json_integer_value(v) > 100000))
        return sr_err(err, errlen, SR_EINVAL,
                      "global.per_second: must be an integer between 0 and "
                      "100000");
    p->global_per_second = v ? (unsigned)json_integer_value(v) : 0;
    return 0;
}

static int parse_root(json_t *root, struct policy *p, char *err, size_t errlen)
{
    if (!json_is_object(root))
        return sr_err(err, errlen, SR_EINVAL,
                      "policy: must be an object with a \"customers\" array");
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        if (strcmp(key, "customers") != 0 && strcmp(key, "routes") != 0 &&
            strcmp(key, "destinations") != 0 && strcmp(key, "global") != 0 &&
            strcmp(key, "tracking") != 0 && strcmp(key, "smscs") != 0 &&
            strcmp(key, "sms_routes") != 0) {
            char shown[80];
            sr_sanitize(shown, sizeof shown, key, strlen(key));
            return sr_err(err, errlen, SR_EINVAL, "%s: unknown key", shown);
        }
    }
    json_t *list = json_object_get(root, "customers");
    if (list == NULL)
        return sr_err(err, errlen, SR_EINVAL, "customers: required");
    size_t n = json_array_size(list);
    if (!json_is_array(list) || n == 0)
        return sr_err(err, errlen, SR_EINVAL,
                      "customers: must be a non-empty array");
    if (n > UINT32_MAX - 1)
        return sr_err(err, errlen, SR_EINVAL, "customers: too many");
    p->customers = calloc(n, sizeof *p->customers);
    if (p->customers == NULL)
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        /* Counted before parsing so policy_free sees partial entries. */
        p->n_customers = (unsigned)(i + 1);
        int rc = parse_customer(json_array_get(list, i), (unsigned)i,
                                &p->customers[i], err, errlen);
        if (rc != 0)
            return rc;
    }
    int rc = parse_routes(json_object_get(root, "routes"), p, err, errlen);
    if (rc == 0)
        rc = parse_dests(json_object_get(root, "destinations"), p, err, errlen);
    if (rc == 0)
        rc = parse_global(json_object_get(root, "global"), p, err, errlen);
    if (rc == 0)
        rc = policy_smscs_parse(json_object_get(root, "smscs"),
                                json_object_get(root, "sms_routes"), &p->sms,
                                err, errlen);
    if (rc == 0 && json_object_get(root, "tracking") != NULL)
        rc = policy_tracking_parse(json_object_get(root, "tracking"),
                                   &p->tracking, err, errlen);
    if (rc != 0)
        return rc;
    for (unsigned i = 0; i < p->n_customers; i++)
        if (p->customers[i].rewrap != NULL && p->tracking == NULL)
            return sr_err(err, errlen, SR_EINVAL,
                          "tracking: required when a customer has rewrap (its "
                          "secret signs tokens and VERP addresses)");
    return check_unique(p, err, errlen);
}

int policy_parse_json(const char *json, size_t len, struct policy **out,
                      char *err, size_t errlen)
{
    *out = NULL;
    if (json == NULL)
        return sr_err(err, errlen, SR_EINVAL, "policy: no document");
    json_error_t je;
    json_t *root =
        json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (root == NULL)
        return sr_err(err, errlen, SR_EPARSE, "line %d, column %d: %s", je.line,
                      je.column, je.text);
    struct policy *p = calloc(1, sizeof *p);
    if (p == NULL) {
        json_decref(root);
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    }
    int rc = parse_root(root, p, err, errlen);
    json_decref(root);
    if (rc != 0) {
        policy_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

/* ---- YAML to JSON -------------------------------------------------------- */

/* The converter walks libfyaml's tree and writes JSON itself rather than
 * using libfyaml's JSON emitter, so that it controls exactly what it
 * produces: aliases are expanded within a size budget, scalars are typed by
 * the YAML 1.2 core schema (plain true/false/null and JSON-shaped numbers;
 * everything else, quoted or not, is a string), and the output is always
 * valid UTF-8 JSON or an error. */
struct out {
    char *p;
    size_t len, cap;
    int rc;
    char *err;
    size_t errlen;
};

static void out_fail(struct out *o, int code, struct fy_node *at,
                     const char *msg)
{
    if (o->rc != 0)
        return;
    int line = yamlsafe_node_line(at);
    if (line > 0)
        o->rc = sr_err(o->err, o->errlen, code, "line %d: %s", line, msg);
    else
        o->rc = sr_err(o->err, o->errlen, code, "%s", msg);
}

static void put(struct out *o, const char *s, size_t n)
{
    if (o->rc != 0)
        return;
    if (n > YAML_JSON_MAX - o->len) {
        out_fail(o, SR_EPARSE, NULL,
                 "document expands to more than 16 MiB of JSON (aliases?)");
        return;
    }
    if (o->len + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 256;
        while (cap < o->len + n + 1)
            cap *= 2;
        char *p = realloc(o->p, cap);
        if (p == NULL) {
            o->rc = sr_err(o->err, o->errlen, SR_ENOMEM, "out of memory");
            return;
        }
        o->p = p;
        o->cap = cap;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
    o->p[o->len] = '\0';
}

static void puts_lit(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

/* Writes s as a JSON string (RFC 8259 7). */
static void put_string(struct out *o, struct fy_node *at, const char *s,
                       size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    put(o, "\"", 1);
    size_t start = 0, i = 0;
    while (i < len && o->rc == 0) {
        unsigned char c = u[i];
        const char *esc = NULL;
        char hex[8];
        if (c == '"')
            esc = "\\\"";
        else if (c == '\\')
            esc = "\\\\";
        else if (c == '\n')
            esc = "\\n";
        else if (c == '\r')
            esc = "\\r";
        else if (c == '\t')
            esc = "\\t";
        else if (c < 0x20) {
            snprintf(hex, sizeof hex, "\\u%04x", c);
            esc = hex;
        }
        if (esc != NULL) {
            put(o, s + start, i - start);
            puts_lit(o, esc);
            start = ++i;
            continue;
        }
        unsigned cp;
        size_t n = yamlsafe_utf8_decode(u + i, len - i, &cp);
        if (n == 0) {
            out_fail(o, SR_EPARSE, at, "string is not valid UTF-8");
            return;
        }
        i += n;
    }
    put(o, s + start, len - start);
    put(o, "\"", 1);
}

/* RFC 8259 6: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool json_number(const char *s, size_t len)
{
    size_t i = 0;
#define DIGIT(k) ((k) < len && s[k] >= '0' && s[k] <= '9')
    if (i < len && s[i] == '-')
        i++;
    if (i < len && s[i] == '0')
        i++;
    else if (DIGIT(i))
        while (DIGIT(i))
            i++;
    else
        return false;
    if (i < len && s[i] == '.') {
        i++;
        if (!DIGIT(i))
            return false;
        while (DIGIT(i))
            i++;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        if (!DIGIT(i))
            return false;
        while (DIGIT(i))
            i++;
    }
#undef DIGIT
    return i == len;
}

static bool text_is(const char *s, size_t len, const char *lit)
{
    return strlen(lit) == len && memcmp(s, lit, len) == 0;
}

static void put_scalar(struct out *o, struct fy_node *n)
{
    size_t len, tlen;
    const char *s = fy_node_get_scalar(n, &len);
    if (s == NULL) {
        s = "";
        len = 0;
    }
    const char *tag = fy_node_get_tag(n, &tlen);
    bool str_tag = tag != NULL && text_is(tag, tlen, "tag:yaml.org,2002:str");
    if (fy_node_get_style(n) == FYNS_PLAIN && !str_tag) {
        if (len == 0 || text_is(s, len, "~") || text_is(s, len, "null") ||
            text_is(s, len, "Null") || text_is(s, len, "NULL")) {
            puts_lit(o, "null");
            return;
        }
        if (text_is(s, len, "true") || text_is(s, len, "True") ||
            text_is(s, len, "TRUE")) {
            puts_lit(o, "true");
            return;
        }
        if (text_is(s, len, "false") || text_is(s, len, "False") ||
            text_is(s, len, "FALSE")) {
            puts_lit(o, "false");
            return;
        }
        if (json_number(s, len)) {
            put(o, s, len);
            return;
        }
    }
    put_string(o, n, s, len);
}

static void put_node(struct out *o, struct fy_node *n, int depth)
{
    if (o->rc != 0)
        return;
    if (depth > YAML_MAX_DEPTH) {
        out_fail(o, SR_EPARSE, n,
                 "nested deeper than 64 levels (recursive alias?)");
        return;
    }
    if (n == NULL) {
        puts_lit(o, "null");
        return;
    }
    if (fy_node_is_alias(n)) {
        struct fy_node *target = fy_node_resolve_alias(n);
        if (target == NULL) {
            out_fail(o, SR_EPARSE, n, "alias to unknown anchor");
            return;
        }
        put_node(o, target, depth + 1);
        return;
    }
    void *it = NULL;
    bool first = true;
    switch (fy_node_get_type(n)) {
    case FYNT_SCALAR:
        put_scalar(o, n);
        break;
    case FYNT_SEQUENCE: {
        struct fy_node *item;
        put(o, "[", 1);
        while (o->rc == 0 &&
               (item = fy_node_sequence_iterate(n, &it)) != NULL) {
            if (!first)
                put(o, ",", 1);
            first = false;
            put_node(o, item, depth + 1);
        }
        put(o, "]", 1);
        break;
    }
    case FYNT_MAPPING: {
        struct fy_node_pair *pair;
        put(o, "{", 1);
        while (o->rc == 0 && (pair = fy_node_mapping_iterate(n, &it)) != NULL) {
            struct fy_node *k = fy_node_pair_key(pair);
            if (k != NULL && fy_node_is_alias(k))
                k = fy_node_resolve_alias(k);
            if (k == NULL || !fy_node_is_scalar(k)) {
                out_fail(o, SR_EPARSE, fy_node_pair_key(pair),
                         "mapping keys must be scalars to convert to JSON");
                return;
            }
            if (!first)
                put(o, ",", 1);
            first = false;
            size_t klen;
            const char *ks = fy_node_get_scalar(k, &klen);
            put_string(o, k, ks != NULL ? ks : "", ks != NULL ? klen : 0);
            put(o, ":", 1);
            put_node(o, fy_node_pair_value(pair), depth + 1);
        }
        put(o, "}", 1);
        break;
    }
    default:
        out_fail(o, SR_EPARSE, n, "unsupported YAML node");
        break;
    }
}

static int emit_doc(void *ud, struct fy_node *root)
{
    struct out *o = ud;
    if (root == NULL)
        puts_lit(o, "null"); /* an empty YAML stream is the null document */
    else
        put_node(o, root, 0);
    return o->rc;
}

int policy_yaml_to_json(const char *yaml, size_t len, char **json, char *err,
                        size_t errlen)
{
    *json = NULL;
    struct out o = {.err = err, .errlen = errlen};
    int rc = yamlsafe_parse(yaml, len, emit_doc, &o, err, errlen);
    if (rc != 0) {
        free(o.p);
        return rc;
    }
    *json = o.p;
    return 0;
}

const char *policy_user_hash(const struct policy_customer *c, const char *name)
{
    for (unsigned i = 0; c != NULL && i < c->n_users; i++)
        if (strcmp(c->users[i].name, name) == 0)
            return c->users[i].hash;
    return NULL;
}
