/*
 * policy.h - the cluster policy: customers, their listeners and limits.
 *
 * The policy is replicated through Raft as a JSON document (so that every
 * node applies the same bytes); operators write it as YAML and clusterctl
 * converts it with policy_yaml_to_json(). policy_parse_json() validates a
 * document fully and names the offending key on error; a node refuses to
 * propose a policy that does not parse.
 *
 * Document shape (docs/CONFIG.md has the full reference):
 *   { "customers": [ { "name": "default",
 *                      "networks": ["127.0.0.1/32", "::1/128"],
 *                      "max_sessions": 100,
 *                      "max_message_size": 10485760,
 *                      "max_recipients": 1000,
 *                      "require_tls": false,
 *                      "users": [ { "name": "app",
 *                                   "password": "pbkdf2-sha256$..." } ],
 *                      "require_auth": false } ],
 *     "routes": [ { "domain": "example.org", "host": "192.0.2.7:2525",
 *                   "tls": "none" } ],
 *     "destinations": [ { "domain": "example.org", "per_minute": 60,
 *                         "rules": [ { "match": "^421 .*try again later",
 *                                      "action": "suspend",
 *                                      "seconds": 600 } ] } ],
 *     "global": { "per_second": 500 } }
 *
 * Ownership: struct policy owns everything in it; policy_free() frees it.
 * Immutable after parsing, so it can be shared read-only.
 */
#ifndef SR_POLICY_H
#define SR_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <regex.h>
#include <stdint.h>
#include <sys/socket.h>

#include "queue/policy_rewrap.h"
#include "queue/policy_sms.h"

struct policy_net {
    int family;       /* AF_INET or AF_INET6 */
    uint8_t addr[16]; /* network address, host bits zeroed */
    unsigned prefix;  /* prefix length */
};

/* An SMTP AUTH account of a customer. The password is never stored: only
 * a PBKDF2 hash (gateways/auth.h, "pbkdf2-sha256$ITER$SALT$HASH"). */
struct policy_user {
    char *name;
    char *hash;
};

struct policy_customer {
    char *name;
    struct policy_net *nets;
    unsigned n_nets;
    unsigned max_sessions;     /* simultaneous SMTP sessions per node */
    size_t max_message_size;   /* bytes */
    unsigned max_recipients;   /* per message */
    bool require_tls;          /* MAIL refused before STARTTLS */
    struct policy_user *users; /* SMTP AUTH accounts (AUTH offered after
                                  STARTTLS when there is at least one) */
    unsigned n_users;
    bool require_auth;    /* MAIL refused until AUTH succeeded */
    unsigned listen_port; /* 0 = none; else every node listens on
                             smtp.customer_host:listen_port for this
                             customer */
    char *source_ip;      /* NULL, or the customer's dedicated IP: outbound
                             connections for its mail are made from it */
    unsigned max_queued;  /* 0 = no limit; else MAIL gets 452 4.3.1 while
                             this many of its recipients wait for delivery,
                             until they are back under 90 % */
    unsigned per_second;  /* 0 = no limit; messages sent per second and */
    unsigned per_hour;    /* per hour, cluster-wide (engine/rates.h) */
    struct policy_rewrap *rewrap; /* NULL: mail goes out as received */
    struct policy_sms *sms;       /* NULL: no email-to-SMS */
};

/* A transport override for a destination domain (like Postfix's
 * transport map with "[ip]:port"): deliver there instead of looking up MX
 * records. domain "*" matches every domain without a route of its own. */
enum policy_tls {
    POLICY_TLS_DEFAULT,
    POLICY_TLS_NONE,
    POLICY_TLS_MAY,
    POLICY_TLS_REQUIRE
};

struct policy_route {
    char *domain; /* lower case, or "*" */
    char *host;   /* numeric IP, IPv6 without brackets */
    unsigned port;
    enum policy_tls tls; /* DEFAULT: the node's delivery.tls */
};

/* Throttles of a destination domain (0 = no limit), enforced by the node
 * owning the domain's shard, which holds the whole budget (see
 * docs/ARCHITECTURE.md, "Throttling"). */
/* A response rule of a destination: a remote reply that matches `match`
 * (POSIX extended regex, case-insensitive, against "CODE ENH TEXT")
 * suspends the destination, or slows it to per_minute, for `seconds`. */
struct policy_rule {
    char *match;
    regex_t re;
    bool slow;           /* false: suspend */
    unsigned per_minute; /* slow: transactions a minute meanwhile */
    unsigned seconds;
};

struct policy_dest {
    char *domain;                  /* lower case */
    unsigned per_minute, per_hour; /* SMTP transactions */
    unsigned max_connections;      /* at once */
    unsigned per_connection;       /* messages per connection */
    struct policy_rule *rules;
    unsigned n_rules;
};

struct policy {
    struct policy_customer *customers;
    unsigned n_customers;
    struct policy_route *routes;
    unsigned n_routes;
    struct policy_dest *dests;
    unsigned n_dests;
    struct policy_tracking *tracking; /* NULL: none (queue/policy_rewrap.h) */
    struct policy_smsc_set *sms;      /* never NULL after parsing */
    unsigned global_per_second;       /* 0 = none; the general throttling
                                         agreement: messages per second sent by
                                         the whole cluster */
};

/* The throttles for domain (case-insensitive), or NULL. */
const struct policy_dest *policy_dest_for(const struct policy *p,
                                          const char *domain);

/* The route for domain (case-insensitive), else the "*" route, else NULL. */
const struct policy_route *policy_route_for(const struct policy *p,
                                            const char *domain);

int policy_parse_json(const char *json, size_t len, struct policy **out,
                      char *err, size_t errlen);
/* Converts a YAML policy file's text into a compact JSON string (malloc'd,
 * returned in *json). Does not validate beyond YAML syntax. */
int policy_yaml_to_json(const char *yaml, size_t len, char **json, char *err,
                        size_t errlen);
void policy_free(struct policy *p);

/* The dev cluster's policy: customer "default" allowing 127.0.0.1 and ::1.
 * Returns a static string. */
const char *policy_default_json(void);

const struct policy_customer *policy_find(const struct policy *p,
                                          const char *name);
/* True if sa (AF_INET/AF_INET6, v4-mapped v6 treated as v4) is inside one of
 * the customer's networks. */
bool policy_allows(const struct policy_customer *c, const struct sockaddr *sa);
/* A customer name: 1 to 64 characters of A-Z a-z 0-9 _ . - */
bool policy_valid_name(const char *s, size_t len);
/* The user's password hash, or NULL. */
const char *policy_user_hash(const struct policy_customer *c, const char *name);

#endif
