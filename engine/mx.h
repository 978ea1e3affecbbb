/*
 * mx.h - where to deliver mail for a domain: MX resolution with c-ares on
 * the libuv loop.
 *
 * mx_resolve() turns a domain into an ordered list of targets (an MX host
 * name, its preference and up to MX_MAX_ADDRS addresses), or into a
 * permanent or temporary failure, following RFC 5321 section 5.1:
 *
 *   - MX records sorted by preference; hosts of equal preference shuffled
 *     with the resolver's random function (mx_opts.random, injectable so
 *     that tests are deterministic); at most MX_MAX_HOSTS hosts, a host
 *     named twice is kept once (at its best preference).
 *   - Each host's A and AAAA records are taken from the additional section
 *     of the MX answer when it has any for that host (then no query is
 *     made for that host, even if only one family is there), otherwise
 *     both are queried. Addresses: IPv4 first, then IPv6, at most
 *     MX_MAX_ADDRS per host (when both families have more than half of
 *     that, each gets half). A host with no address is skipped; if no host
 *     is left the result is a temporary failure (as Postfix does).
 *   - A null MX (RFC 7505: the only MX records have the root "." as
 *     target) is a permanent failure (MX_R_NULL_MX); a "." among other MX
 *     records is ignored. NXDOMAIN is a permanent failure.
 *   - No MX record (NOERROR with no data): the domain itself is the
 *     target, preference 0 ("implicit MX"); if the domain then has neither
 *     A nor AAAA (both answered definitively) the result is a permanent
 *     failure (MX_R_NO_ADDRESS).
 *   - SERVFAIL, REFUSED, timeouts, malformed answers and local errors are
 *     temporary failures.
 *   - CNAMEs in answers are followed (up to 8).
 *   - Address literals "[192.0.2.1]" and "[IPv6:2001:db8::1]" resolve to
 *     themselves without DNS.
 *
 * Cache: successful results are kept for the minimum TTL of the records
 * used (MX, CNAME, A/AAAA), at most max_ttl; permanent failures (NXDOMAIN,
 * null MX, no address) for at most neg_ttl (and at most the SOA negative
 * TTL of RFC 2308 when the server sends one). Temporary failures, results
 * where some host's address lookup failed temporarily, and TTL 0 are not
 * cached. The cache holds at most cache_size domains, evicting the least
 * recently used. Lookups of a domain already being resolved join that
 * lookup: one set of queries, every caller gets the same result.
 *
 * Callbacks: the callback runs exactly once, always from the loop and never
 * from inside mx_resolve() (cache hits and literals too are delivered on
 * the next loop iteration), unless mx_resolve() returns an error, in which
 * case it never runs.
 *
 * mx_resolver_close(): every callback that has not run yet runs before it
 * returns, from inside it: lookups still waiting for DNS get status
 * MX_CANCELLED (code SR_ECANCELED); lookups already answered get their
 * answer. After it returns no callback runs and mx_resolve() may not be
 * called. The memory is freed once the loop has run the handles' close
 * callbacks (uv_run after close).
 *
 * Ownership: struct mx_resolver is owned by its creator until
 * mx_resolver_close(). A struct mx_result passed to a callback is lent for
 * the duration of the callback; keep it longer with mx_result_hold() and
 * give it back with mx_result_release(). Results are immutable and shared
 * (between the cache and every caller that asked for the same domain).
 *
 * Threads: loop thread only, like everything on the loop; no blocking call
 * is made (c-ares sockets are watched with uv_poll_t, its timeouts are
 * driven by a uv_timer_t).
 */
#ifndef SR_ENGINE_MX_H
#define SR_ENGINE_MX_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#define MX_MAX_HOSTS 10
#define MX_MAX_ADDRS 10
#define MX_NAME_MAX 253 /* characters of a domain name, without final dot */

enum mx_status {
    MX_OK = 0,    /* targets[] has at least one target with an address */
    MX_PERMFAIL,  /* the domain cannot receive mail: bounce */
    MX_TEMPFAIL,  /* try again later */
    MX_CANCELLED, /* the resolver was closed first */
};

/* Why; stable names from mx_reason_str() ("nxdomain", "null_mx", ...). */
enum mx_reason {
    MX_R_OK = 0,
    MX_R_LITERAL,       /* OK: an address literal, no DNS */
    MX_R_BAD_DOMAIN,    /* perm: not a valid domain name or literal */
    MX_R_NXDOMAIN,      /* perm: the domain does not exist */
    MX_R_NULL_MX,       /* perm: RFC 7505 null MX */
    MX_R_NO_ADDRESS,    /* perm: no MX and no A/AAAA for the domain */
    MX_R_MX_NO_ADDRESS, /* temp: no MX host has an address */
    MX_R_SERVFAIL,      /* temp: server failure or refusal */
    MX_R_TIMEOUT,       /* temp: no answer in time */
    MX_R_DNS_ERROR,     /* temp: malformed answer, local error */
    MX_R_CANCELLED,     /* the resolver was closed */
};

struct mx_addr {
    int family; /* AF_INET or AF_INET6 */
    union {
        struct in_addr v4;
        struct in6_addr v6;
    } u;
};

struct mx_target {
    char *host;    /* lower-case, no final dot; owned by the result */
    uint16_t pref; /* 0 for the implicit MX and for literals */
    size_t naddrs; /* >= 1 in a result */
    struct mx_addr addrs[MX_MAX_ADDRS];
};

/* Immutable once delivered; reference counted (see mx_result_hold). */
struct mx_result {
    enum mx_status status;
    enum mx_reason reason;
    int code;                  /* SR_OK or a negative SR_E* (node/errors.h) */
    char msg[160];             /* one line, "" when OK */
    bool implicit;             /* the domain's own A/AAAA (no MX records) */
    uint32_t ttl;              /* seconds it may be cached; 0: not cached */
    size_t ntargets;           /* 0 unless MX_OK */
    struct mx_target *targets; /* best first; owned by the result */
    unsigned refs;             /* private */
};

/* Called once per mx_resolve(); res is lent for the call. cached: served
 * from the cache without a query. */
typedef void (*mx_cb)(const struct mx_result *res, bool cached, void *ud);

/* Returns a uniformly distributed 32-bit value. */
typedef uint32_t (*mx_random_fn)(void *ud);

/* Zero fields take the defaults. */
struct mx_opts {
    /* "ip:port,ip:port" (IPv6 as "[addr]:port"; c-ares'
     * ares_set_servers_ports_csv syntax); NULL or "": /etc/resolv.conf. */
    const char *servers;
    unsigned timeout_ms; /* first try's timeout, doubled per round; 2000 */
    unsigned tries;      /* rounds over the servers; 2 */
    size_t cache_size;   /* domains in the cache; 1024 */
    uint32_t max_ttl;    /* cap of positive entries, seconds; 3600 */
    uint32_t neg_ttl;    /* cap of permanent failures, seconds; 60 */
    mx_random_fn random; /* NULL: an internal generator seeded at start */
    void *random_ud;
};

struct mx_stats {
    uint64_t resolves;   /* mx_resolve() calls accepted */
    uint64_t cache_hits; /* answered from the cache */
    uint64_t coalesced;  /* joined a lookup already in flight */
    uint64_t queries;    /* DNS queries started (MX, A, AAAA) */
    size_t cache_entries;
    size_t inflight; /* domains being resolved */
};

struct mx_resolver;

/* Creates a resolver on loop. Returns 0 or SR_EINVAL (bad opts.servers),
 * SR_ENOMEM, SR_EIO (c-ares could not start) with a message in err. */
int mx_resolver_new(uv_loop_t *loop, const struct mx_opts *opts,
                    struct mx_resolver **out, char *err, size_t errlen);
/* Starts resolving domain (a domain name or an address literal; a final
 * dot and upper case are accepted). Returns 0 (cb will run once),
 * SR_ESHUTDOWN (closing) or SR_ENOMEM (cb will not run). */
int mx_resolve(struct mx_resolver *r, const char *domain, mx_cb cb, void *ud);
/* Runs pending callbacks (see above), stops all queries, closes the
 * handles; frees r once the loop has run their close callbacks. */
void mx_resolver_close(struct mx_resolver *r);
void mx_resolver_stats(const struct mx_resolver *r, struct mx_stats *st);

const struct mx_result *mx_result_hold(const struct mx_result *res);
void mx_result_release(const struct mx_result *res);
/* A new result with no target and one reference, or NULL (no memory). */
struct mx_result *mx_result_new(enum mx_status status, enum mx_reason reason);

const char *mx_status_str(enum mx_status s);
const char *mx_reason_str(enum mx_reason r);
/* Formats a as text ("192.0.2.1", "2001:db8::1"); buf of at least
 * INET6_ADDRSTRLEN bytes. */
const char *mx_addr_str(const struct mx_addr *a, char *buf, size_t len);
/* Fills a sockaddr_in/in6 for connecting to a on port; returns its size. */
socklen_t mx_addr_sockaddr(const struct mx_addr *a, uint16_t port,
                           struct sockaddr_storage *ss);

/* ---- Pure parts, exposed for the unit tests (tests/unit/test_mx.c) ---- */

/* Validates a domain name (RFC 1035 labels: letters, digits, hyphens not
 * at either end, 1..63 characters; IDNA A-labels "xn--..." are such
 * labels; at most MX_NAME_MAX characters; the last label not all digits)
 * and writes it lower-case without a final dot into out (MX_NAME_MAX + 1
 * bytes). Returns 0 or SR_EINVAL. */
int mx_domain_normalize(const char *in, char *out, size_t outlen);

/* Parses an address literal: "[192.0.2.1]" or "[IPv6:2001:db8::1]" (tag
 * case-insensitive). Returns 1 and fills *a if s is a valid literal, 0 if
 * s does not start with '[', SR_EINVAL if it is a malformed literal. */
int mx_parse_literal(const char *s, struct mx_addr *a);

/* One MX candidate before address resolution. */
struct mx_cand {
    uint16_t pref;
    char host[MX_NAME_MAX + 1];
};

/* Sorts c by preference, shuffles each run of equal preference with rnd
 * (Fisher-Yates; rnd NULL: no shuffle), drops candidates whose host is ""
 * (not a valid name) or "." (root) and later duplicates of a host, and
 * keeps at most cap. Returns the new count. */
size_t mx_order(struct mx_cand *c, size_t n, size_t cap, mx_random_fn rnd,
                void *rnd_ud);

/* Picks at most cap addresses, the IPv4 ones first: when both families have
 * more than cap/2, each gets cap/2 (the odd one to IPv4); otherwise one
 * family takes what the other leaves. Returns the count written to out. */
size_t mx_pick_addrs(const struct mx_addr *a4, size_t n4,
                     const struct mx_addr *a6, size_t n6, struct mx_addr *out,
                     size_t cap);

/* DNS message parsing (RFC 1035 section 4), only what resolution needs. */
#define MX_T_A 1
#define MX_T_CNAME 5
#define MX_T_SOA 6
#define MX_T_MX 15
#define MX_T_AAAA 28

enum mx_section { MX_SEC_ANSWER = 1, MX_SEC_AUTHORITY, MX_SEC_ADDITIONAL };

struct mx_rr {
    uint8_t section; /* enum mx_section */
    uint16_t type;   /* MX_T_A, MX_T_AAAA, MX_T_MX or MX_T_CNAME */
    uint32_t ttl;
    char owner[MX_NAME_MAX + 1];  /* normalized */
    uint16_t pref;                /* MX */
    char target[MX_NAME_MAX + 1]; /* MX exchange or CNAME target,
                                     normalized; "." for the root, "" if
                                     not a valid host name */
    struct mx_addr addr;          /* A, AAAA */
};

struct mx_msg {
    unsigned rcode;
    bool has_neg_ttl;
    uint32_t neg_ttl; /* min(SOA TTL, SOA MINIMUM) of the authority */
    size_t nrr;       /* IN-class A, AAAA, MX, CNAME records (at most 256) */
    struct mx_rr *rr; /* owned; free with mx_msg_free */
};

/* Returns 0 or SR_EPARSE (truncated or malformed) or SR_ENOMEM. Records
 * whose owner name is not a valid domain name are left out. */
int mx_msg_parse(const unsigned char *buf, size_t len, struct mx_msg *m);
void mx_msg_free(struct mx_msg *m);

/* The name that name's CNAME chain in m ends at (name itself without
 * CNAME); *ttl is lowered to the chain's CNAME TTLs. Returns a pointer into
 * m or name. */
const char *mx_msg_canon(const struct mx_msg *m, const char *name,
                         uint32_t *ttl);

/* The MX records of name (after CNAMEs) in the answer section, at most cap
 * into c; *ttl lowered to their TTLs. Returns how many were found (may
 * exceed cap). */
size_t mx_msg_mx(const struct mx_msg *m, const char *name, struct mx_cand *c,
                 size_t cap, uint32_t *ttl);

/* The A (family AF_INET) or AAAA records of name (after CNAMEs) in the
 * answer and additional sections, without duplicates, at most cap; *ttl
 * lowered to their TTLs. Returns the count written. */
size_t mx_msg_addrs(const struct mx_msg *m, const char *name, int family,
                    struct mx_addr *out, size_t cap, uint32_t *ttl);

/* The LRU cache of results, keyed by normalized domain. Times in ms from
 * any monotonic origin (the resolver passes uv_now()). */
struct mx_cache_entry;
struct mx_cache {
    size_t cap, n, nbuckets;
    struct mx_cache_entry **buckets;
    struct mx_cache_entry *mru, *lru; /* doubly linked by use */
};

int mx_cache_init(struct mx_cache *c, size_t cap);
/* Releases every entry's result. */
void mx_cache_free(struct mx_cache *c);
/* A live entry's result (not held: hold it to keep it), made the most
 * recently used; an expired entry is removed and NULL returned. */
const struct mx_result *mx_cache_get(struct mx_cache *c, const char *domain,
                                     uint64_t now_ms);
/* Stores res (holding it) until now_ms + ttl_ms, replacing an entry of the
 * same domain and evicting the least recently used entry when full.
 * Returns 0 or SR_ENOMEM. */
int mx_cache_put(struct mx_cache *c, const char *domain,
                 const struct mx_result *res, uint64_t now_ms, uint64_t ttl_ms);

#endif
