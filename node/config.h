/*
 * config.h - the node's YAML configuration (docs/CONFIG.md).
 *
 * Every key has a built-in default, so an empty file (or no file) gives a
 * working single node on 127.0.0.1. config_load() refuses unknown keys and
 * bad values with a message that names the key ("raft.election_timeout_ms:
 * must be an integer between 50 and 60000"). Addresses are "host:port"
 * strings (IPv6 as "[::1]:25").
 *
 * Ownership: struct sr_config owns every string and array in it;
 * config_free() releases them.
 */
#ifndef SR_CONFIG_H
#define SR_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sr_peer {
    uint64_t id;
    char *raft_address; /* host:port of its Raft listener */
    char *rpc_address;  /* host:port of its node RPC listener */
};

struct sr_config {
    /* node: */
    uint64_t node_id; /* node.id, 1..65535, default 1 */
    char *data_dir;   /* node.data_dir, default "./run/node<id>" */
    char *hostname;   /* node.hostname, default "smartrelay<id>.localdomain" */
    char *log_level;  /* log.level: debug|info|warn|error, default info */

    /* raft: */
    char *raft_listen;     /* raft.listen, default 127.0.0.1:7001 */
    struct sr_peer *peers; /* raft.peers: initial voters, used only to
                              bootstrap a brand-new cluster; default: this
                              node alone */
    unsigned n_peers;
    unsigned election_timeout_ms; /* raft.election_timeout_ms, default 300 */
    unsigned heartbeat_ms;        /* raft.heartbeat_ms, default 50 */
    unsigned snapshot_threshold;  /* raft.snapshot_threshold, default 16384 */
    unsigned snapshot_trailing;   /* raft.snapshot_trailing, default 4096 */
    bool bootstrap;               /* raft.bootstrap: bootstrap from peers
                                     when the data dir is empty; default true.
                                     false for a node that will be added
                                     with clusterctl member add. */

    /* rpc: */
    char *rpc_listen;        /* rpc.listen, default 127.0.0.1:7101 */
    unsigned rpc_timeout_ms; /* rpc.timeout_ms, default 5000 */

    /* cluster: mutual TLS between nodes (Raft and node RPC). All three set
       = every peer connection is TLS 1.3, both sides present a certificate
       signed by tls_ca, and a peer must prove the node id it claims (its
       certificate names "node<ID>"). None set = plaintext (a warning at
       startup). */
    char *cluster_tls_ca;   /* cluster.tls_ca: the cluster CA (PEM) */
    char *cluster_tls_cert; /* cluster.tls_cert: this node's certificate */
    char *cluster_tls_key;  /* cluster.tls_key: its private key */

    /* smtp: */
    char **smtp_listen; /* smtp.listen: list, default [127.0.0.1:2525] */
    unsigned n_smtp_listen;
    char *smtp_customer;      /* smtp.customer: policy customer served on these
                                 listeners, default "default" */
    char *smtp_customer_host; /* smtp.customer_host: address on which the
                                 listeners that the policy declares
                                 (customers[].listen_port) are opened,
                                 default 127.0.0.1 */
    char *tls_cert;           /* smtp.tls_cert: PEM file; none = no STARTTLS */
    char *tls_key;            /* smtp.tls_key */
    unsigned commit_timeout_ms; /* smtp.commit_timeout_ms, default 15000:
                                   after it, 451 4.3.0 */
    unsigned command_timeout_s; /* smtp.command_timeout_s, default 300 */
    unsigned data_timeout_s;    /* smtp.data_timeout_s, default 180 */

    /* floating: */
    char *floating_address;      /* floating.address: "IP/PREFIX" held by the
                                    leader, default none */
    char *floating_interface;    /* floating.interface: where to add it,
                                    default "eth0" */
    unsigned floating_arp_count; /* floating.arp_count: gratuitous ARPs
                                    sent on taking the address, default 3 */

    /* admin: */
    char *admin_listen;    /* admin.listen, default 127.0.0.1:8080 */
    char *tracking_listen; /* tracking.listen: open/click/unsubscribe
                              endpoints (node/track.c); NULL = none */
    char *tracking_tls_cert, *tracking_tls_key; /* HTTPS there when set */
    char *admin_token;    /* admin.token, default none: API open on loopback */
    char *admin_tls_cert; /* admin.tls_cert: PEM chain; set = the admin API
                             is HTTPS only (no plaintext listener); default
                             none = plain HTTP */
    char *admin_tls_key;  /* admin.tls_key: its private key (PEM) */
    unsigned admin_idle_timeout_s; /* admin.idle_timeout_s: a connection
                                      (and a TLS handshake) idle this long
                                      is closed, default 30 */

    /* delivery: outbound SMTP (engine/deliver.c) */
    bool delivery_enabled;       /* delivery.enabled, default true */
    unsigned delivery_port;      /* delivery.port: port of MX hosts, 25 */
    char *delivery_dns;          /* delivery.dns_servers: "ip:port,..."; none =
                                    /etc/resolv.conf */
    char *delivery_tls;          /* delivery.tls: none|may|require, "may" */
    unsigned delivery_max_conns; /* delivery.max_connections, 100 */
    unsigned delivery_max_conns_domain; /* ...max_connections_per_domain, 10 */
    unsigned delivery_msgs_per_conn; /* delivery.messages_per_connection, 100 */
    unsigned delivery_retry_min_s;   /* delivery.retry_min_s, 300 */
    unsigned delivery_retry_max_s;   /* delivery.retry_max_s, 14400 */
    unsigned delivery_max_age_s;     /* delivery.max_age_s, 432000 (5 days) */
    unsigned queue_high_water;       /* delivery.queue_high_water: pending
                                        recipients in the cluster above which MAIL
                                        gets 452 4.3.1, 1000000 */
    unsigned queue_low_water;        /* delivery.queue_low_water: ... until they
                                        are back under this, 900000 */

    /* bodies: */
    unsigned body_copies; /* bodies.copies: holders before 250, default 0 =
                             a majority of the voters */
    unsigned body_group_commit_us; /* bodies.group_commit_us: under load,
                                      wait this long to sync more bodies at
                                      once, 0 = off; default
                                      SR_GROUP_COMMIT_AUTO */
};

/* bodies.group_commit_us not set: 1000 us while this node is the only
 * voter, 3000 us in a cluster (engine/ingest.c). */
#define SR_GROUP_COMMIT_AUTO 0xffffffffu
#define SR_GROUP_COMMIT_SINGLE_US 1000u
#define SR_GROUP_COMMIT_CLUSTER_US 3000u

/* Fills cfg with the built-in defaults (for node id 1). */
void config_defaults(struct sr_config *cfg);

/* Loads the YAML file at path over the defaults. path NULL = defaults only.
 * Returns 0, or SR_EPARSE/SR_EINVAL/SR_EIO with err naming the key. On
 * failure cfg is left freed (config_free is safe to call again). */
int config_load(const char *path, struct sr_config *cfg, char *err,
                size_t errlen);

/* Same, from a YAML string in memory (for tests and fuzzing). */
int config_load_string(const char *yaml, size_t len, struct sr_config *cfg,
                       char *err, size_t errlen);

void config_free(struct sr_config *cfg);

struct sockaddr_storage;

/* "ip:port" / "[v6]:port" (an IP literal, no name) into ss. Returns 0 or
 * SR_EINVAL. */
int config_ip_address(const char *addr, struct sockaddr_storage *ss);

/* Splits "host:port" / "[v6]:port". Returns 0 or SR_EINVAL. */
int config_split_address(const char *addr, char *host, size_t hostlen,
                         int *port);

#endif
