/* mx.c - MX resolution with c-ares on the libuv loop (see mx.h). */
#include "engine/mx.h"

#include <ares.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "node/errors.h"

#define DEF_TIMEOUT_MS 2000
#define DEF_TRIES 2
#define DEF_CACHE 1024
#define DEF_MAX_TTL 3600
#define DEF_NEG_TTL 60
#define MAX_CNAME 8 /* CNAMEs followed in one answer */
#define MAX_RR 256  /* records kept from one answer */
#define MAX_CAND 64 /* MX records looked at before sorting and capping */
#define DNS_C_IN 1

/* ------------------------------------------------------------------------
 * Names and literals
 */

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static bool is_ldh(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

int mx_domain_normalize(const char *in, char *out, size_t outlen)
{
    size_t len = strlen(in);
    if (len > 0 && in[len - 1] == '.')
        len--;
    if (len == 0 || len > MX_NAME_MAX || outlen < len + 1)
        return SR_EINVAL;
    size_t label = 0;
    bool digits = true;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || in[i] == '.') {
            if (label == 0 || label > 63 || out[i - 1] == '-')
                return SR_EINVAL;
            if (i == len && digits)
                return SR_EINVAL; /* all-numeric top label: not a domain */
            if (i < len)
                out[i] = '.';
            label = 0;
            digits = true;
            continue;
        }
        char c = lower(in[i]);
        if (!is_ldh(c) || (label == 0 && c == '-'))
            return SR_EINVAL;
        if (c < '0' || c > '9')
            digits = false;
        out[i] = c;
        label++;
    }
    out[len] = '\0';
    return SR_OK;
}

int mx_parse_literal(const char *s, struct mx_addr *a)
{
    if (s[0] != '[')
        return 0;
    size_t len = strlen(s);
    char buf[64];
    if (len < 3 || s[len - 1] != ']' || len - 2 >= sizeof buf)
        return SR_EINVAL;
    memcpy(buf, s + 1, len - 2);
    buf[len - 2] = '\0';
    memset(a, 0, sizeof *a);
    if (strncasecmp(buf, "IPv6:", 5) == 0) {
        if (inet_pton(AF_INET6, buf + 5, &a->u.v6) != 1)
            return SR_EINVAL;
        a->family = AF_INET6;
        return 1;
    }
    if (inet_pton(AF_INET, buf, &a->u.v4) != 1)
        return SR_EINVAL;
    a->family = AF_INET;
    return 1;
}

const char *mx_addr_str(const struct mx_addr *a, char *buf, size_t len)
{
    if (inet_ntop(a->family,
                  a->family == AF_INET6 ? (const void *)&a->u.v6
                                        : (const void *)&a->u.v4,
                  buf, (socklen_t)len) == NULL)
        snprintf(buf, len, "?");
    return buf;
}

socklen_t mx_addr_sockaddr(const struct mx_addr *a, uint16_t port,
                           struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (a->family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        s6->sin6_addr = a->u.v6;
        return sizeof *s6;
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons(port);
    s4->sin_addr = a->u.v4;
    return sizeof *s4;
}

static bool addr_eq(const struct mx_addr *a, const struct mx_addr *b)
{
    if (a->family != b->family)
        return false;
    return a->family == AF_INET6 ? memcmp(&a->u.v6, &b->u.v6, 16) == 0
                                 : a->u.v4.s_addr == b->u.v4.s_addr;
}

/* ------------------------------------------------------------------------
 * Ordering
 */

size_t mx_order(struct mx_cand *c, size_t n, size_t cap, mx_random_fn rnd,
                void *rnd_ud)
{
    struct mx_cand tmp;
    /* insertion sort: stable, and n is small */
    for (size_t i = 1; i < n; i++) {
        size_t j = i;
        if (c[j - 1].pref <= c[i].pref)
            continue;
        tmp = c[i];
        while (j > 0 && c[j - 1].pref > tmp.pref) {
            c[j] = c[j - 1];
            j--;
        }
        c[j] = tmp;
    }
    for (size_t i = 0; rnd != NULL && i < n;) {
        size_t j = i + 1;
        while (j < n && c[j].pref == c[i].pref)
            j++;
        for (size_t k = j - i - 1; k > 0; k--) {
            size_t m = rnd(rnd_ud) % (k + 1);
            if (m != k) {
                tmp = c[i + k];
                c[i + k] = c[i + m];
                c[i + m] = tmp;
            }
        }
        i = j;
    }
    size_t out = 0;
    for (size_t i = 0; i < n && out < cap; i++) {
        if (c[i].host[0] == '\0' || strcmp(c[i].host, ".") == 0)
            continue;
        bool dup = false;
        for (size_t k = 0; k < out && !dup; k++)
            dup = strcmp(c[k].host, c[i].host) == 0;
        if (dup)
            continue;
        if (out != i)
            c[out] = c[i];
        out++;
    }
    return out;
}

size_t mx_pick_addrs(const struct mx_addr *a4, size_t n4,
                     const struct mx_addr *a6, size_t n6, struct mx_addr *out,
                     size_t cap)
{
    size_t t6 = n6 < cap ? n6 : cap;
    if (n4 + n6 > cap) {
        size_t half = cap / 2;
        if (n6 <= half)
            t6 = n6;
        else if (n4 >= cap - half)
            t6 = half;
        else
            t6 = cap - n4;
    }
    size_t t4 = n4 < cap - t6 ? n4 : cap - t6;
    memcpy(out, a4, t4 * sizeof *out);
    memcpy(out + t4, a6, t6 * sizeof *out);
    return t4 + t6;
}

/* ------------------------------------------------------------------------
 * DNS messages
 */

static unsigned rd16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

/* Reads the name at off. *end: the offset after it in the record. Writes
 * it normalized into out (MX_NAME_MAX + 1 bytes): "." for the root, ""
 * when it is not a valid host name. Compression pointers must point before
 * every position read so far, so a loop cannot be followed. */
static int read_name(const unsigned char *buf, size_t len, size_t off,
                     char *out, size_t *end)
{
    char text[256];
    size_t pos = off, lowest = off, n = 0, wire = 1;
    bool jumped = false, ok = true;
    for (;;) {
        if (pos >= len)
            return SR_EPARSE;
        unsigned l = buf[pos];
        if ((l & 0xC0) == 0xC0) {
            if (pos + 1 >= len)
                return SR_EPARSE;
            size_t ptr = (size_t)(l & 0x3F) << 8 | buf[pos + 1];
            if (!jumped)
                *end = pos + 2;
            if (ptr >= lowest)
                return SR_EPARSE;
            lowest = pos = ptr;
            jumped = true;
            continue;
        }
        if (l & 0xC0)
            return SR_EPARSE; /* extended label types */
        if (l == 0) {
            if (!jumped)
                *end = pos + 1;
            break;
        }
        if (pos + 1 + l > len)
            return SR_EPARSE;
        wire += l + 1;
        if (wire > 255)
            return SR_EPARSE;
        if (n > 0)
            text[n++] = '.';
        for (unsigned i = 0; i < l; i++) {
            char c = (char)buf[pos + 1 + i];
            if (!is_ldh(lower(c)))
                ok = false;
            text[n++] = c;
        }
        pos += 1 + l;
    }
    text[n] = '\0';
    if (n == 0)
        strcpy(out, ".");
    else if (!ok || mx_domain_normalize(text, out, MX_NAME_MAX + 1) != 0)
        out[0] = '\0';
    return SR_OK;
}

int mx_msg_parse(const unsigned char *buf, size_t len, struct mx_msg *m)
{
    memset(m, 0, sizeof *m);
    if (len < 12)
        return SR_EPARSE;
    m->rcode = buf[3] & 0x0F;
    unsigned qd = rd16(buf + 4), an = rd16(buf + 6), ns = rd16(buf + 8),
             ar = rd16(buf + 10);
    size_t off = 12, end = 0;
    char owner[MX_NAME_MAX + 1];
    for (unsigned i = 0; i < qd; i++) {
        if (read_name(buf, len, off, owner, &end) != 0 || end + 4 > len)
            return SR_EPARSE;
        off = end + 4;
    }
    size_t alloc = 0;
    for (unsigned i = 0; i < an + ns + ar; i++) {
        uint8_t sec = i < an        ? MX_SEC_ANSWER
                      : i < an + ns ? MX_SEC_AUTHORITY
                                    : MX_SEC_ADDITIONAL;
        if (read_name(buf, len, off, owner, &end) != 0 || end + 10 > len)
            goto bad;
        unsigned type = rd16(buf + end), cls = rd16(buf + end + 2);
        uint32_t ttl = rd32(buf + end + 4);
        if (ttl & 0x80000000u)
            ttl = 0; /* RFC 2181 section 8 */
        size_t rdlen = rd16(buf + end + 8), rd = end + 10;
        if (rd + rdlen > len)
            goto bad;
        off = rd + rdlen;
        if (cls != DNS_C_IN)
            continue;
        if (type == MX_T_SOA && sec == MX_SEC_AUTHORITY) {
            char tmp[MX_NAME_MAX + 1];
            size_t e = 0;
            if (read_name(buf, len, rd, tmp, &e) != 0 ||
                read_name(buf, len, e, tmp, &e) != 0 || e + 20 != off)
                goto bad;
            uint32_t min = rd32(buf + e + 16);
            m->neg_ttl = min < ttl ? min : ttl;
            m->has_neg_ttl = true;
            continue;
        }
        if (type != MX_T_A && type != MX_T_AAAA && type != MX_T_MX &&
            type != MX_T_CNAME)
            continue;
        if (owner[0] == '\0' || m->nrr >= MAX_RR)
            continue;
        if (m->nrr == alloc) {
            size_t na = alloc ? alloc * 2 : 8;
            struct mx_rr *nr = realloc(m->rr, na * sizeof *nr);
            if (nr == NULL) {
                mx_msg_free(m);
                return SR_ENOMEM;
            }
            m->rr = nr;
            alloc = na;
        }
        struct mx_rr *r = &m->rr[m->nrr];
        memset(r, 0, sizeof *r);
        r->section = sec;
        r->type = (uint16_t)type;
        r->ttl = ttl;
        strcpy(r->owner, owner);
        size_t e = 0;
        switch (type) {
        case MX_T_A:
            if (rdlen != 4)
                goto bad;
            r->addr.family = AF_INET;
            memcpy(&r->addr.u.v4, buf + rd, 4);
            break;
        case MX_T_AAAA:
            if (rdlen != 16)
                goto bad;
            r->addr.family = AF_INET6;
            memcpy(&r->addr.u.v6, buf + rd, 16);
            break;
        case MX_T_MX:
            if (rdlen < 3 || read_name(buf, len, rd + 2, r->target, &e) != 0 ||
                e != off)
                goto bad;
            r->pref = (uint16_t)rd16(buf + rd);
            break;
        case MX_T_CNAME:
            if (read_name(buf, len, rd, r->target, &e) != 0 || e != off)
                goto bad;
            break;
        }
        m->nrr++;
    }
    return SR_OK;
bad:
    mx_msg_free(m);
    return SR_EPARSE;
}

void mx_msg_free(struct mx_msg *m)
{
    free(m->rr);
    m->rr = NULL;
    m->nrr = 0;
}

static void lower_ttl(uint32_t *ttl, uint32_t v)
{
    if (ttl != NULL && v < *ttl)
        *ttl = v;
}

const char *mx_msg_canon(const struct mx_msg *m, const char *name,
                         uint32_t *ttl)
{
    for (int hop = 0; hop < MAX_CNAME; hop++) {
        const struct mx_rr *next = NULL;
        for (size_t i = 0; i < m->nrr && next == NULL; i++)
            if (m->rr[i].type == MX_T_CNAME && m->rr[i].target[0] != '\0' &&
                strcmp(m->rr[i].owner, name) == 0)
                next = &m->rr[i];
        if (next == NULL)
            break;
        lower_ttl(ttl, next->ttl);
        name = next->target;
    }
    return name;
}

size_t mx_msg_mx(const struct mx_msg *m, const char *name, struct mx_cand *c,
                 size_t cap, uint32_t *ttl)
{
    name = mx_msg_canon(m, name, ttl);
    size_t n = 0;
    for (size_t i = 0; i < m->nrr; i++) {
        const struct mx_rr *r = &m->rr[i];
        if (r->type != MX_T_MX || r->section != MX_SEC_ANSWER ||
            strcmp(r->owner, name) != 0)
            continue;
        lower_ttl(ttl, r->ttl);
        if (n < cap) {
            c[n].pref = r->pref;
            strcpy(c[n].host, r->target);
        }
        n++;
    }
    return n;
}

size_t mx_msg_addrs(const struct mx_msg *m, const char *name, int family,
                    struct mx_addr *out, size_t cap, uint32_t *ttl)
{
    uint16_t type = family == AF_INET6 ? MX_T_AAAA : MX_T_A;
    uint32_t chain = UINT32_MAX;
    name = mx_msg_canon(m, name, &chain);
    size_t n = 0;
    for (size_t i = 0; i < m->nrr && n < cap; i++) {
        const struct mx_rr *r = &m->rr[i];
        if (r->type != type || strcmp(r->owner, name) != 0)
            continue;
        bool dup = false;
        for (size_t k = 0; k < n && !dup; k++)
            dup = addr_eq(&out[k], &r->addr);
        if (dup)
            continue;
        out[n++] = r->addr;
        lower_ttl(ttl, r->ttl);
    }
    if (n > 0)
        lower_ttl(ttl, chain);
    return n;
}

/* ------------------------------------------------------------------------
 * Results
 */

/* Handed out when a result cannot be allocated; never freed. */
static struct mx_result nomem_result = {
    .status = MX_TEMPFAIL,
    .reason = MX_R_DNS_ERROR,
    .code = SR_ENOMEM,
    .msg = "out of memory",
    .refs = 1,
};

struct mx_result *mx_result_new(enum mx_status status, enum mx_reason reason)
{
    struct mx_result *res = calloc(1, sizeof *res);
    if (res == NULL)
        return NULL;
    res->status = status;
    res->reason = reason;
    res->refs = 1;
    return res;
}

const struct mx_result *mx_result_hold(const struct mx_result *res)
{
    ((struct mx_result *)res)->refs++;
    return res;
}

void mx_result_release(const struct mx_result *cres)
{
    struct mx_result *res = (struct mx_result *)cres;
    if (res == NULL || --res->refs > 0)
        return;
    for (size_t i = 0; i < res->ntargets; i++)
        free(res->targets[i].host);
    free(res->targets);
    free(res);
}

const char *mx_status_str(enum mx_status s)
{
    switch (s) {
    case MX_OK:
        return "ok";
    case MX_PERMFAIL:
        return "permfail";
    case MX_TEMPFAIL:
        return "tempfail";
    case MX_CANCELLED:
        return "cancelled";
    }
    return "?";
}

const char *mx_reason_str(enum mx_reason r)
{
    switch (r) {
    case MX_R_OK:
        return "ok";
    case MX_R_LITERAL:
        return "literal";
    case MX_R_BAD_DOMAIN:
        return "bad_domain";
    case MX_R_NXDOMAIN:
        return "nxdomain";
    case MX_R_NULL_MX:
        return "null_mx";
    case MX_R_NO_ADDRESS:
        return "no_address";
    case MX_R_MX_NO_ADDRESS:
        return "mx_no_address";
    case MX_R_SERVFAIL:
        return "servfail";
    case MX_R_TIMEOUT:
        return "timeout";
    case MX_R_DNS_ERROR:
        return "dns_error";
    case MX_R_CANCELLED:
        return "cancelled";
    }
    return "?";
}

static int status_code(enum mx_status s, enum mx_reason r)
{
    switch (s) {
    case MX_OK:
        return SR_OK;
    case MX_PERMFAIL:
        return r == MX_R_BAD_DOMAIN ? SR_EINVAL : SR_ENOTFOUND;
    case MX_TEMPFAIL:
        return r == MX_R_TIMEOUT ? SR_ETIMEDOUT : SR_EIO;
    case MX_CANCELLED:
        return SR_ECANCELED;
    }
    return SR_EIO;
}

/* A failure result (no target) with a message. */
static struct mx_result *fail_result(enum mx_status s, enum mx_reason r,
                                     uint32_t ttl, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static struct mx_result *fail_result(enum mx_status s, enum mx_reason r,
                                     uint32_t ttl, const char *fmt, ...)
{
    struct mx_result *res = mx_result_new(s, r);
    if (res == NULL)
        return NULL;
    res->code = status_code(s, r);
    res->ttl = ttl;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->msg, sizeof res->msg, fmt, ap);
    va_end(ap);
    return res;
}

/* ------------------------------------------------------------------------
 * Cache
 */

struct mx_cache_entry {
    struct mx_cache_entry *hnext;         /* bucket chain */
    struct mx_cache_entry *newer, *older; /* use order */
    uint64_t expires;                     /* ms */
    const struct mx_result *res;          /* held */
    char domain[];
};

static size_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (size_t)h;
}

int mx_cache_init(struct mx_cache *c, size_t cap)
{
    memset(c, 0, sizeof *c);
    c->cap = cap;
    c->nbuckets = 16;
    while (c->nbuckets < cap)
        c->nbuckets *= 2;
    c->buckets = calloc(c->nbuckets, sizeof *c->buckets);
    return c->buckets == NULL ? SR_ENOMEM : SR_OK;
}

static struct mx_cache_entry **cache_slot(struct mx_cache *c,
                                          const char *domain)
{
    struct mx_cache_entry **p =
        &c->buckets[hash_str(domain) & (c->nbuckets - 1)];
    while (*p != NULL && strcmp((*p)->domain, domain) != 0)
        p = &(*p)->hnext;
    return p;
}

static void cache_unlink_use(struct mx_cache *c, struct mx_cache_entry *e)
{
    if (e->newer)
        e->newer->older = e->older;
    else
        c->mru = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else
        c->lru = e->newer;
    e->newer = e->older = NULL;
}

static void cache_push_mru(struct mx_cache *c, struct mx_cache_entry *e)
{
    e->older = c->mru;
    e->newer = NULL;
    if (c->mru)
        c->mru->newer = e;
    else
        c->lru = e;
    c->mru = e;
}

static void cache_remove(struct mx_cache *c, struct mx_cache_entry **slot)
{
    struct mx_cache_entry *e = *slot;
    *slot = e->hnext;
    cache_unlink_use(c, e);
    mx_result_release(e->res);
    free(e);
    c->n--;
}

void mx_cache_free(struct mx_cache *c)
{
    while (c->lru != NULL)
        cache_remove(c, cache_slot(c, c->lru->domain));
    free(c->buckets);
    c->buckets = NULL;
}

const struct mx_result *mx_cache_get(struct mx_cache *c, const char *domain,
                                     uint64_t now_ms)
{
    if (c->buckets == NULL)
        return NULL;
    struct mx_cache_entry **slot = cache_slot(c, domain);
    struct mx_cache_entry *e = *slot;
    if (e == NULL)
        return NULL;
    if (e->expires <= now_ms) {
        cache_remove(c, slot);
        return NULL;
    }
    cache_unlink_use(c, e);
    cache_push_mru(c, e);
    return e->res;
}

int mx_cache_put(struct mx_cache *c, const char *domain,
                 const struct mx_result *res, uint64_t now_ms, uint64_t ttl_ms)
{
    if (c->cap == 0 || c->buckets == NULL || ttl_ms == 0)
        return SR_OK;
    struct mx_cache_entry **slot = cache_slot(c, domain);
    struct mx_cache_entry *e = *slot;
    if (e != NULL) {
        mx_result_release(e->res);
        e->res = mx_result_hold(res);
        e->expires = now_ms + ttl_ms;
        cache_unlink_use(c, e);
        cache_push_mru(c, e);
        return SR_OK;
    }
    size_t len = strlen(domain);
    e = malloc(sizeof *e + len + 1);
    if (e == NULL)
        return SR_ENOMEM;
    if (c->n == c->cap)
        cache_remove(c, cache_slot(c, c->lru->domain));
    memcpy(e->domain, domain, len + 1);
    e->res = mx_result_hold(res);
    e->expires = now_ms + ttl_ms;
    slot = cache_slot(c, domain); /* the eviction may have moved it */
    e->hnext = NULL;
    *slot = e;
    cache_push_mru(c, e);
    c->n++;
    return SR_OK;
}

/* ------------------------------------------------------------------------
 * The resolver
 */

/* One watched c-ares socket. Owned by the resolver (r->polls) from the
 * first state callback for its fd until its handle's close callback. */
struct mx_poll {
    struct mx_poll *next;
    struct mx_resolver *r;
    ares_socket_t fd;
    uv_poll_t h;
};

/* One mx_resolve() call, until its callback has run. On its lookup's
 * waiters list, then (with res held) on r->ready. */
struct mx_waiter {
    struct mx_waiter *next;
    mx_cb cb;
    void *ud;
    const struct mx_result *res; /* held; set when answered */
    bool cached;
};

struct mx_host {
    char name[MX_NAME_MAX + 1];
    uint16_t pref;
    size_t n4, n6;
    struct mx_addr a4[MX_MAX_ADDRS], a6[MX_MAX_ADDRS];
    uint32_t ttl;        /* of the address records */
    enum mx_reason temp; /* MX_R_OK, or why an address query failed */
};

/* One domain being resolved. Owned by the resolver (r->inflight) while
 * c-ares queries for it are pending; freed when the last one returns. */
struct mx_lookup {
    struct mx_lookup *next, *prev;
    struct mx_resolver *r;
    char domain[MX_NAME_MAX + 1];
    struct mx_waiter *waiters, **wtail;
    unsigned pending; /* c-ares queries not called back, + 1 while issuing */
    bool cancelled;
    bool implicit;
    struct mx_result *fail; /* set when the MX answer decides a failure */
    uint32_t ttl;           /* min TTL of the MX (and CNAME) records */
    size_t nhosts;
    struct mx_host hosts[MX_MAX_HOSTS];
};

/* The argument of one ares_query(); freed by its callback. */
struct mx_query {
    struct mx_lookup *lk;
    int host; /* index in lk->hosts, -1 for the MX query */
    uint16_t type;
};

struct mx_resolver {
    uv_loop_t *loop;
    ares_channel ch;  /* NULL once destroyed */
    uv_timer_t tick;  /* c-ares timeouts */
    uv_timer_t defer; /* runs the callbacks on r->ready */
    unsigned handles; /* open uv handles (timers and polls) */
    bool closing;
    struct mx_poll *polls;
    struct mx_lookup *inflight;
    struct mx_waiter *ready, **ready_tail;
    size_t nready;
    struct mx_cache cache;
    unsigned timeout_ms, tries;
    uint32_t max_ttl, neg_ttl;
    mx_random_fn rnd;
    void *rnd_ud;
    uint64_t rng; /* state of the default generator */
    struct mx_stats st;
};

static uint32_t default_random(void *ud)
{
    uint64_t *s = ud; /* xorshift64* */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return (uint32_t)((x * 0x2545F4914F6CDD1Dull) >> 32);
}

static void maybe_free(struct mx_resolver *r)
{
    if (r->closing && r->handles == 0)
        free(r);
}

static void handle_closed(uv_handle_t *h)
{
    struct mx_resolver *r = h->data;
    r->handles--;
    maybe_free(r);
}

static void poll_closed(uv_handle_t *h)
{
    struct mx_poll *p = h->data;
    struct mx_resolver *r = p->r;
    free(p);
    r->handles--;
    maybe_free(r);
}

static void defer_cb(uv_timer_t *t);

static void arm_defer(struct mx_resolver *r)
{
    if (!r->closing && r->ready != NULL &&
        !uv_is_active((uv_handle_t *)&r->defer))
        uv_timer_start(&r->defer, defer_cb, 0, 0);
}

static void push_ready(struct mx_resolver *r, struct mx_waiter *w)
{
    w->next = NULL;
    *r->ready_tail = w;
    r->ready_tail = &w->next;
    r->nready++;
}

static struct mx_waiter *pop_ready(struct mx_resolver *r)
{
    struct mx_waiter *w = r->ready;
    if (w == NULL)
        return NULL;
    r->ready = w->next;
    if (r->ready == NULL)
        r->ready_tail = &r->ready;
    r->nready--;
    return w;
}

static void deliver(struct mx_waiter *w)
{
    w->cb(w->res, w->cached, w->ud);
    mx_result_release(w->res);
    free(w);
}

/* Runs the callbacks that were ready when it started; the ones queued by
 * those callbacks wait for the next loop iteration. */
static void defer_cb(uv_timer_t *t)
{
    struct mx_resolver *r = t->data;
    size_t n = r->nready;
    struct mx_waiter *w;
    while (n-- > 0 && !r->closing && (w = pop_ready(r)) != NULL)
        deliver(w);
    arm_defer(r);
}

static void tick_cb(uv_timer_t *t);

/* Points the tick timer at c-ares' next timeout. */
static void schedule_tick(struct mx_resolver *r)
{
    if (r->closing)
        return;
    struct timeval tv, *tvp = ares_timeout(r->ch, NULL, &tv);
    if (tvp == NULL) {
        uv_timer_stop(&r->tick);
        return;
    }
    uint64_t ms =
        (uint64_t)tvp->tv_sec * 1000 + ((uint64_t)tvp->tv_usec + 999) / 1000;
    uv_timer_start(&r->tick, tick_cb, ms, 0);
}

static void tick_cb(uv_timer_t *t)
{
    struct mx_resolver *r = t->data;
    ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    schedule_tick(r);
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
    struct mx_poll *p = h->data;
    struct mx_resolver *r = p->r;
    ares_socket_t fd = p->fd; /* p may be closed by ares_process_fd */
    /* on a poll error let c-ares try both ways and find the error itself */
    ares_socket_t rfd =
        (status < 0 || (events & UV_READABLE)) ? fd : ARES_SOCKET_BAD;
    ares_socket_t wfd =
        (status < 0 || (events & UV_WRITABLE)) ? fd : ARES_SOCKET_BAD;
    ares_process_fd(r->ch, rfd, wfd);
    schedule_tick(r);
}

static void sock_state_cb(void *data, ares_socket_t fd, int readable,
                          int writable)
{
    struct mx_resolver *r = data;
    struct mx_poll **pp = &r->polls;
    while (*pp != NULL && (*pp)->fd != fd)
        pp = &(*pp)->next;
    struct mx_poll *p = *pp;
    if (!readable && !writable) {
        if (p != NULL) {
            *pp = p->next;
            uv_close((uv_handle_t *)&p->h, poll_closed);
        }
        return;
    }
    if (p == NULL) {
        p = calloc(1, sizeof *p);
        if (p == NULL)
            return; /* its queries time out */
        if (uv_poll_init_socket(r->loop, &p->h, fd) != 0) {
            free(p);
            return;
        }
        p->r = r;
        p->fd = fd;
        p->h.data = p;
        p->next = r->polls;
        r->polls = p;
        r->handles++;
    }
    uv_poll_start(&p->h,
                  (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0),
                  poll_cb);
}

static uint32_t neg_ttl(const struct mx_resolver *r, const struct mx_msg *m)
{
    if (m != NULL && m->has_neg_ttl && m->neg_ttl < r->neg_ttl)
        return m->neg_ttl;
    return r->neg_ttl;
}

static uint32_t min32(uint32_t a, uint32_t b)
{
    return a < b ? a : b;
}

/* Builds the result once every query has returned. */
static struct mx_result *build_result(struct mx_lookup *lk)
{
    struct mx_resolver *r = lk->r;
    if (lk->cancelled)
        return fail_result(MX_CANCELLED, MX_R_CANCELLED, 0,
                           "%s: resolver closed", lk->domain);
    if (lk->fail != NULL) {
        struct mx_result *res = lk->fail;
        lk->fail = NULL;
        return res;
    }
    struct mx_result *res = mx_result_new(MX_OK, MX_R_OK);
    if (res == NULL)
        return NULL;
    res->implicit = lk->implicit;
    res->targets = calloc(lk->nhosts ? lk->nhosts : 1, sizeof *res->targets);
    if (res->targets == NULL) {
        mx_result_release(res);
        return NULL;
    }
    uint32_t ttl = min32(lk->ttl, r->max_ttl);
    enum mx_reason temp = MX_R_OK;
    for (size_t i = 0; i < lk->nhosts; i++) {
        struct mx_host *h = &lk->hosts[i];
        if (h->temp != MX_R_OK && temp == MX_R_OK)
            temp = h->temp;
        struct mx_target *t = &res->targets[res->ntargets];
        t->naddrs =
            mx_pick_addrs(h->a4, h->n4, h->a6, h->n6, t->addrs, MX_MAX_ADDRS);
        if (t->naddrs == 0)
            continue;
        t->host = strdup(h->name);
        if (t->host == NULL) {
            mx_result_release(res);
            return NULL;
        }
        t->pref = h->pref;
        ttl = min32(ttl, h->ttl);
        res->ntargets++;
    }
    if (res->ntargets > 0) {
        /* a host left out for a temporary error may be back soon */
        res->ttl = temp != MX_R_OK ? 0 : ttl;
        return res;
    }
    mx_result_release(res);
    if (lk->implicit && temp == MX_R_OK)
        return fail_result(MX_PERMFAIL, MX_R_NO_ADDRESS, min32(ttl, r->neg_ttl),
                           "%s: no MX and no A/AAAA record", lk->domain);
    if (lk->implicit)
        return fail_result(MX_TEMPFAIL, temp, 0,
                           "%s: address lookup failed (%s)", lk->domain,
                           mx_reason_str(temp));
    return fail_result(MX_TEMPFAIL, MX_R_MX_NO_ADDRESS, 0,
                       "%s: no MX host has an address", lk->domain);
}

static void lookup_finish(struct mx_lookup *lk)
{
    struct mx_resolver *r = lk->r;
    struct mx_result *res = build_result(lk);
    const struct mx_result *out = res != NULL ? res : &nomem_result;
    if (lk->prev)
        lk->prev->next = lk->next;
    else
        r->inflight = lk->next;
    if (lk->next)
        lk->next->prev = lk->prev;
    r->st.inflight--;
    while (lk->waiters != NULL) {
        struct mx_waiter *w = lk->waiters;
        lk->waiters = w->next;
        w->res = mx_result_hold(out);
        w->cached = false;
        push_ready(r, w);
    }
    if (res != NULL && res->ttl > 0 &&
        (res->status == MX_OK || res->status == MX_PERMFAIL))
        mx_cache_put(&r->cache, lk->domain, res, uv_now(r->loop),
                     (uint64_t)res->ttl * 1000);
    mx_result_release(res);
    mx_result_release(lk->fail);
    free(lk);
    arm_defer(r);
}

static void lookup_unref(struct mx_lookup *lk)
{
    if (--lk->pending == 0)
        lookup_finish(lk);
}

static void on_answer(void *arg, int status, int timeouts, unsigned char *abuf,
                      int alen);

/* Starts one query for lk; its callback may run before this returns. */
static void start_query(struct mx_lookup *lk, const char *name, int host,
                        uint16_t type)
{
    struct mx_resolver *r = lk->r;
    struct mx_query *q = malloc(sizeof *q);
    if (q == NULL) {
        if (host >= 0)
            lk->hosts[host].temp = MX_R_DNS_ERROR;
        else if (lk->fail == NULL)
            lk->fail = fail_result(MX_TEMPFAIL, MX_R_DNS_ERROR, 0,
                                   "%s: out of memory", lk->domain);
        return;
    }
    q->lk = lk;
    q->host = host;
    q->type = type;
    lk->pending++;
    r->st.queries++;
    ares_query(r->ch, name, DNS_C_IN, type, on_answer, q);
}

static enum mx_reason temp_reason(int status)
{
    switch (status) {
    case ARES_ETIMEOUT:
        return MX_R_TIMEOUT;
    case ARES_ESERVFAIL:
    case ARES_EREFUSED:
    case ARES_ECONNREFUSED: /* every server failed or refused */
        return MX_R_SERVFAIL;
    default:
        return MX_R_DNS_ERROR;
    }
}

/* The host's A and AAAA queries. */
static void query_addrs(struct mx_lookup *lk, size_t i)
{
    start_query(lk, lk->hosts[i].name, (int)i, MX_T_A);
    start_query(lk, lk->hosts[i].name, (int)i, MX_T_AAAA);
}

static void add_host(struct mx_lookup *lk, const char *name, uint16_t pref)
{
    struct mx_host *h = &lk->hosts[lk->nhosts++];
    memset(h, 0, sizeof *h);
    strcpy(h->name, name);
    h->pref = pref;
    h->ttl = UINT32_MAX;
}

static void on_mx(struct mx_lookup *lk, int status, const unsigned char *abuf,
                  int alen)
{
    struct mx_resolver *r = lk->r;
    struct mx_msg m = {0};
    bool parsed = false;
    if ((status == ARES_SUCCESS || status == ARES_ENODATA ||
         status == ARES_ENOTFOUND) &&
        abuf != NULL && alen > 0) {
        int rc = mx_msg_parse(abuf, (size_t)alen, &m);
        if (rc != 0) {
            lk->fail = fail_result(MX_TEMPFAIL, MX_R_DNS_ERROR, 0,
                                   "%s: malformed MX answer (%s)", lk->domain,
                                   sr_strerror(rc));
            return;
        }
        parsed = true;
    }
    if (status == ARES_ENOTFOUND) {
        lk->fail = fail_result(MX_PERMFAIL, MX_R_NXDOMAIN,
                               neg_ttl(r, parsed ? &m : NULL),
                               "%s: domain not found (NXDOMAIN)", lk->domain);
        goto out;
    }
    if (status != ARES_SUCCESS && status != ARES_ENODATA) {
        enum mx_reason why = temp_reason(status);
        lk->fail = fail_result(MX_TEMPFAIL, why, 0, "%s: MX lookup failed: %s",
                               lk->domain, ares_strerror(status));
        goto out;
    }
    struct mx_cand *c = NULL;
    size_t n = 0;
    if (status == ARES_SUCCESS && parsed) {
        c = malloc(MAX_CAND * sizeof *c);
        if (c == NULL) {
            lk->fail = fail_result(MX_TEMPFAIL, MX_R_DNS_ERROR, 0,
                                   "%s: out of memory", lk->domain);
            goto out;
        }
        n = mx_msg_mx(&m, lk->domain, c, MAX_CAND, &lk->ttl);
        if (n > MAX_CAND)
            n = MAX_CAND;
    }
    if (n == 0) {
        /* RFC 5321 5.1: the domain itself, preference 0; how long the MX
         * may stay absent is the negative TTL */
        free(c);
        lk->implicit = true;
        lk->ttl = min32(lk->ttl, neg_ttl(r, parsed ? &m : NULL));
        add_host(lk, lk->domain, 0);
        query_addrs(lk, 0);
        goto out;
    }
    bool null_mx = true;
    for (size_t i = 0; i < n && null_mx; i++)
        null_mx = strcmp(c[i].host, ".") == 0;
    if (null_mx) {
        free(c);
        lk->fail = fail_result(
            MX_PERMFAIL, MX_R_NULL_MX, min32(lk->ttl, r->neg_ttl),
            "%s: domain does not accept mail (null MX)", lk->domain);
        goto out;
    }
    n = mx_order(c, n, MX_MAX_HOSTS, r->rnd, r->rnd_ud);
    for (size_t i = 0; i < n; i++)
        add_host(lk, c[i].host, c[i].pref);
    free(c);
    if (lk->nhosts == 0) {
        lk->fail =
            fail_result(MX_TEMPFAIL, MX_R_MX_NO_ADDRESS, 0,
                        "%s: no MX record names a valid host", lk->domain);
        goto out;
    }
    for (size_t i = 0; i < lk->nhosts; i++) {
        struct mx_host *h = &lk->hosts[i];
        h->n4 =
            mx_msg_addrs(&m, h->name, AF_INET, h->a4, MX_MAX_ADDRS, &h->ttl);
        h->n6 =
            mx_msg_addrs(&m, h->name, AF_INET6, h->a6, MX_MAX_ADDRS, &h->ttl);
        if (h->n4 + h->n6 == 0)
            query_addrs(lk, i);
    }
out:
    mx_msg_free(&m);
}

static void on_addr(struct mx_lookup *lk, int i, uint16_t type, int status,
                    const unsigned char *abuf, int alen)
{
    struct mx_host *h = &lk->hosts[i];
    if (status == ARES_ENODATA || status == ARES_ENOTFOUND)
        return; /* definitive: no such address */
    if (status != ARES_SUCCESS) {
        h->temp = temp_reason(status);
        return;
    }
    struct mx_msg m;
    if (abuf == NULL || alen <= 0 ||
        mx_msg_parse(abuf, (size_t)alen, &m) != 0) {
        h->temp = MX_R_DNS_ERROR;
        return;
    }
    if (type == MX_T_A)
        h->n4 =
            mx_msg_addrs(&m, h->name, AF_INET, h->a4, MX_MAX_ADDRS, &h->ttl);
    else
        h->n6 =
            mx_msg_addrs(&m, h->name, AF_INET6, h->a6, MX_MAX_ADDRS, &h->ttl);
    mx_msg_free(&m);
}

static void on_answer(void *arg, int status, int timeouts, unsigned char *abuf,
                      int alen)
{
    (void)timeouts;
    struct mx_query *q = arg;
    struct mx_lookup *lk = q->lk;
    int host = q->host;
    uint16_t type = q->type;
    free(q);
    if (status == ARES_EDESTRUCTION || status == ARES_ECANCELLED ||
        lk->r->closing) {
        lk->cancelled = true;
    } else if (!lk->cancelled) {
        lk->pending++; /* the queries started below must not finish lk */
        if (host < 0)
            on_mx(lk, status, abuf, alen);
        else
            on_addr(lk, host, type, status, abuf, alen);
        lk->pending--;
    }
    lookup_unref(lk);
}

int mx_resolver_new(uv_loop_t *loop, const struct mx_opts *opts,
                    struct mx_resolver **out, char *err, size_t errlen)
{
    static const struct mx_opts none;
    if (opts == NULL)
        opts = &none;
    struct mx_resolver *r = calloc(1, sizeof *r);
    if (r == NULL)
        return sr_err(err, errlen, SR_ENOMEM, "mx: out of memory");
    r->loop = loop;
    r->ready_tail = &r->ready;
    r->timeout_ms = opts->timeout_ms ? opts->timeout_ms : DEF_TIMEOUT_MS;
    r->tries = opts->tries ? opts->tries : DEF_TRIES;
    r->max_ttl = opts->max_ttl ? opts->max_ttl : DEF_MAX_TTL;
    r->neg_ttl = opts->neg_ttl ? opts->neg_ttl : DEF_NEG_TTL;
    r->rnd = opts->random;
    r->rnd_ud = opts->random_ud;
    if (r->rnd == NULL) {
        r->rng = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)r;
        if (r->rng == 0)
            r->rng = 1;
        r->rnd = default_random;
        r->rnd_ud = &r->rng;
    }
    if (mx_cache_init(&r->cache,
                      opts->cache_size ? opts->cache_size : DEF_CACHE) != 0) {
        free(r);
        return sr_err(err, errlen, SR_ENOMEM, "mx: out of memory");
    }
    int rc = ares_library_init(ARES_LIB_INIT_ALL);
    if (rc != ARES_SUCCESS) {
        mx_cache_free(&r->cache);
        free(r);
        return sr_err(err, errlen, SR_EIO, "mx: c-ares init: %s",
                      ares_strerror(rc));
    }
    struct ares_options o;
    memset(&o, 0, sizeof o);
    o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
    o.timeout = (int)r->timeout_ms;
    o.tries = (int)r->tries;
    o.sock_state_cb = sock_state_cb;
    o.sock_state_cb_data = r;
    rc = ares_init_options(&r->ch, &o,
                           ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS |
                               ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB);
    if (rc == ARES_SUCCESS && opts->servers != NULL &&
        opts->servers[0] != '\0') {
        rc = ares_set_servers_ports_csv(r->ch, opts->servers);
        if (rc != ARES_SUCCESS) {
            char safe[80];
            sr_sanitize(safe, sizeof safe, opts->servers,
                        strlen(opts->servers));
            ares_destroy(r->ch);
            ares_library_cleanup();
            mx_cache_free(&r->cache);
            free(r);
            return sr_err(err, errlen, SR_EINVAL, "mx: bad servers \"%s\": %s",
                          safe, ares_strerror(rc));
        }
    }
    if (rc != ARES_SUCCESS) {
        ares_library_cleanup();
        mx_cache_free(&r->cache);
        free(r);
        return sr_err(err, errlen, rc == ARES_ENOMEM ? SR_ENOMEM : SR_EIO,
                      "mx: c-ares: %s", ares_strerror(rc));
    }
    uv_timer_init(loop, &r->tick);
    uv_timer_init(loop, &r->defer);
    r->tick.data = r->defer.data = r;
    r->handles = 2;
    *out = r;
    return SR_OK;
}

/* Queues a callback with a result that needs no DNS. Takes res's ref. */
static int answer_now(struct mx_resolver *r, struct mx_result *res,
                      const struct mx_result *held, mx_cb cb, void *ud)
{
    struct mx_waiter *w = calloc(1, sizeof *w);
    if (w == NULL || (res == NULL && held == NULL)) {
        free(w);
        mx_result_release(res);
        return SR_ENOMEM;
    }
    w->cb = cb;
    w->ud = ud;
    w->res = res != NULL ? res : mx_result_hold(held);
    w->cached = held != NULL;
    push_ready(r, w);
    r->st.resolves++;
    arm_defer(r);
    return SR_OK;
}

static struct mx_result *literal_result(const struct mx_addr *a)
{
    struct mx_result *res = mx_result_new(MX_OK, MX_R_LITERAL);
    char text[INET6_ADDRSTRLEN], host[INET6_ADDRSTRLEN + 8];
    if (res == NULL)
        return NULL;
    res->targets = calloc(1, sizeof *res->targets);
    snprintf(host, sizeof host, "[%s%s]", a->family == AF_INET6 ? "IPv6:" : "",
             mx_addr_str(a, text, sizeof text));
    if (res->targets == NULL || (res->targets[0].host = strdup(host)) == NULL) {
        mx_result_release(res);
        return NULL;
    }
    res->ntargets = 1;
    res->targets[0].naddrs = 1;
    res->targets[0].addrs[0] = *a;
    return res;
}

int mx_resolve(struct mx_resolver *r, const char *domain, mx_cb cb, void *ud)
{
    if (r->closing)
        return SR_ESHUTDOWN;
    struct mx_addr lit;
    int rc = mx_parse_literal(domain, &lit);
    if (rc == 1)
        return answer_now(r, literal_result(&lit), NULL, cb, ud);
    char name[MX_NAME_MAX + 1];
    if (rc < 0 || mx_domain_normalize(domain, name, sizeof name) != 0) {
        char safe[80];
        sr_sanitize(safe, sizeof safe, domain, strlen(domain));
        return answer_now(r,
                          fail_result(MX_PERMFAIL, MX_R_BAD_DOMAIN, 0,
                                      "invalid domain \"%s\"", safe),
                          NULL, cb, ud);
    }
    const struct mx_result *hit =
        mx_cache_get(&r->cache, name, uv_now(r->loop));
    if (hit != NULL) {
        rc = answer_now(r, NULL, hit, cb, ud);
        if (rc == 0)
            r->st.cache_hits++;
        return rc;
    }
    struct mx_waiter *w = calloc(1, sizeof *w);
    if (w == NULL)
        return SR_ENOMEM;
    w->cb = cb;
    w->ud = ud;
    struct mx_lookup *lk = r->inflight;
    while (lk != NULL && strcmp(lk->domain, name) != 0)
        lk = lk->next;
    if (lk != NULL) {
        *lk->wtail = w;
        lk->wtail = &w->next;
        r->st.resolves++;
        r->st.coalesced++;
        return SR_OK;
    }
    lk = calloc(1, sizeof *lk);
    if (lk == NULL) {
        free(w);
        return SR_ENOMEM;
    }
    lk->r = r;
    strcpy(lk->domain, name);
    lk->waiters = w;
    lk->wtail = &w->next;
    lk->ttl = UINT32_MAX;
    lk->next = r->inflight;
    if (r->inflight)
        r->inflight->prev = lk;
    r->inflight = lk;
    r->st.inflight++;
    r->st.resolves++;
    lk->pending = 1; /* until the MX query is started */
    start_query(lk, lk->domain, -1, MX_T_MX);
    lookup_unref(lk);
    schedule_tick(r);
    return SR_OK;
}

void mx_resolver_close(struct mx_resolver *r)
{
    if (r->closing)
        return;
    r->closing = true;
    /* every pending query's callback runs now with ARES_EDESTRUCTION, so
     * every lookup finishes (cancelled) and its waiters become ready; the
     * sockets' state callbacks close the poll handles */
    ares_destroy(r->ch);
    r->ch = NULL;
    ares_library_cleanup();
    while (r->polls != NULL) {
        struct mx_poll *p = r->polls;
        r->polls = p->next;
        uv_close((uv_handle_t *)&p->h, poll_closed);
    }
    struct mx_waiter *w;
    while ((w = pop_ready(r)) != NULL)
        deliver(w);
    mx_cache_free(&r->cache);
    uv_close((uv_handle_t *)&r->tick, handle_closed);
    uv_close((uv_handle_t *)&r->defer, handle_closed);
}

void mx_resolver_stats(const struct mx_resolver *r, struct mx_stats *st)
{
    *st = r->st;
    st->cache_entries = r->cache.n;
}
