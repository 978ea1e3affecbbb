/*
 * config.c - loads the node's YAML configuration (see config.h and
 * docs/CONFIG.md).
 *
 * What it does: parses one YAML document with libfyaml, walks the fixed
 * two-level layout (section -> key, plus the raft.peers list) through one
 * table of keys, and checks every value's type and range. Defaults that
 * depend on the node id (data_dir, hostname, the single-node peer list) are
 * filled in after the whole file has been read, so key order does not matter.
 *
 * What it does not: it opens no sockets and does not check that files
 * (tls_cert, data_dir) exist; the daemon does that when it uses them.
 *
 * How it fails: the first bad key stops loading, and err gets one line that
 * starts with the full dotted key ("raft.peers[1].id: must be an integer
 * between 1 and 65535 (line 7)"). YAML syntax errors are SR_EPARSE, bad
 * values SR_EINVAL, unreadable files SR_EIO. err never repeats the file's
 * path: the caller prints it in front. The output struct is treated as
 * uninitialised on entry and is zeroed on failure.
 */
#include "node/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libfyaml.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "node/errors.h"
#include "node/yamlsafe.h"
#include "queue/policy.h"

/* A config file is a few kilobytes; the cap keeps a wrong path (a log, a
 * disk image) from being read into memory. */
#define CONFIG_MAX_FILE (1024 * 1024)
#define CONFIG_MAX_PEERS 255
#define CONFIG_MAX_LISTEN 64
#define CONFIG_MAX_STRING 4096
#define CONFIG_MAX_TOKEN 256

enum key_kind {
    K_ID,       /* uint64_t node id */
    K_UINT,     /* unsigned in [min, max] */
    K_BOOL,     /* true / false */
    K_STRING,   /* any non-empty string (paths) */
    K_ADDRESS,  /* host:port */
    K_LISTEN,   /* list of host:port */
    K_LEVEL,    /* debug|info|warn|error */
    K_HOSTNAME, /* DNS name used in the SMTP greeting */
    K_CUSTOMER, /* a policy customer name */
    K_TOKEN,    /* admin bearer token */
    K_PEERS,    /* raft.peers */
};

struct key_spec {
    const char *section;
    const char *name;
    enum key_kind kind;
    size_t off;
    unsigned min, max;
};

#define OFF(field) offsetof(struct sr_config, field)

/* The one table of keys: adding a key is one line here, one field in
 * config.h and one row in docs/CONFIG.md. */
static const struct key_spec keys[] = {
    {"node", "id", K_ID, OFF(node_id), 1, 65535},
    {"node", "data_dir", K_STRING, OFF(data_dir), 0, 0},
    {"node", "hostname", K_HOSTNAME, OFF(hostname), 0, 0},
    {"log", "level", K_LEVEL, OFF(log_level), 0, 0},
    {"raft", "listen", K_ADDRESS, OFF(raft_listen), 0, 0},
    {"raft", "peers", K_PEERS, OFF(peers), 0, 0},
    {"raft", "election_timeout_ms", K_UINT, OFF(election_timeout_ms), 50,
     60000},
    {"raft", "heartbeat_ms", K_UINT, OFF(heartbeat_ms), 1, 60000},
    {"raft", "snapshot_threshold", K_UINT, OFF(snapshot_threshold), 1,
     1000000000},
    {"raft", "snapshot_trailing", K_UINT, OFF(snapshot_trailing), 0,
     1000000000},
    {"raft", "bootstrap", K_BOOL, OFF(bootstrap), 0, 0},
    {"rpc", "listen", K_ADDRESS, OFF(rpc_listen), 0, 0},
    {"rpc", "timeout_ms", K_UINT, OFF(rpc_timeout_ms), 1, 600000},
    {"cluster", "tls_ca", K_STRING, OFF(cluster_tls_ca), 0, 0},
    {"cluster", "tls_cert", K_STRING, OFF(cluster_tls_cert), 0, 0},
    {"cluster", "tls_key", K_STRING, OFF(cluster_tls_key), 0, 0},
    {"smtp", "listen", K_LISTEN, OFF(smtp_listen), 0, 0},
    {"smtp", "customer", K_CUSTOMER, OFF(smtp_customer), 0, 0},
    {"smtp", "customer_host", K_STRING, OFF(smtp_customer_host), 0, 0},
    {"smtp", "tls_cert", K_STRING, OFF(tls_cert), 0, 0},
    {"smtp", "tls_key", K_STRING, OFF(tls_key), 0, 0},
    {"smtp", "commit_timeout_ms", K_UINT, OFF(commit_timeout_ms), 1, 600000},
    {"smtp", "command_timeout_s", K_UINT, OFF(command_timeout_s), 1, 3600},
    {"smtp", "data_timeout_s", K_UINT, OFF(data_timeout_s), 1, 3600},
    {"floating", "address", K_STRING, OFF(floating_address), 0, 0},
    {"floating", "interface", K_STRING, OFF(floating_interface), 0, 0},
    {"floating", "arp_count", K_UINT, OFF(floating_arp_count), 1, 100},
    {"admin", "listen", K_ADDRESS, OFF(admin_listen), 0, 0},
    {"tracking", "listen", K_ADDRESS, OFF(tracking_listen), 0, 0},
    {"tracking", "tls_cert", K_STRING, OFF(tracking_tls_cert), 0, 0},
    {"tracking", "tls_key", K_STRING, OFF(tracking_tls_key), 0, 0},
    {"admin", "token", K_TOKEN, OFF(admin_token), 0, 0},
    {"admin", "tls_cert", K_STRING, OFF(admin_tls_cert), 0, 0},
    {"admin", "tls_key", K_STRING, OFF(admin_tls_key), 0, 0},
    {"admin", "idle_timeout_s", K_UINT, OFF(admin_idle_timeout_s), 1, 3600},
    {"delivery", "enabled", K_BOOL, OFF(delivery_enabled), 0, 0},
    {"delivery", "port", K_UINT, OFF(delivery_port), 1, 65535},
    {"delivery", "dns_servers", K_STRING, OFF(delivery_dns), 0, 0},
    {"delivery", "tls", K_STRING, OFF(delivery_tls), 0, 0},
    {"delivery", "max_connections", K_UINT, OFF(delivery_max_conns), 1, 100000},
    {"delivery", "max_connections_per_domain", K_UINT,
     OFF(delivery_max_conns_domain), 1, 10000},
    {"delivery", "messages_per_connection", K_UINT, OFF(delivery_msgs_per_conn),
     1, 100000},
    {"delivery", "retry_min_s", K_UINT, OFF(delivery_retry_min_s), 1, 86400},
    {"delivery", "retry_max_s", K_UINT, OFF(delivery_retry_max_s), 1, 604800},
    {"delivery", "max_age_s", K_UINT, OFF(delivery_max_age_s), 1, 31536000},
    {"delivery", "queue_high_water", K_UINT, OFF(queue_high_water), 1,
     1000000000},
    {"delivery", "queue_low_water", K_UINT, OFF(queue_low_water), 0,
     1000000000},
    {"bodies", "copies", K_UINT, OFF(body_copies), 0, 255},
    {"bodies", "group_commit_us", K_UINT, OFF(body_group_commit_us), 0, 100000},
};

#define N_KEYS (sizeof keys / sizeof keys[0])

/* What the loader needs besides the config: where errors go and which
 * id-dependent defaults the file overrode. */
struct loader {
    struct sr_config *cfg;
    char *err;
    size_t errlen;
    bool data_dir_set;
    bool hostname_set;
    bool peers_set;
};

/* ---- small helpers ------------------------------------------------------ */

/* Reports "key: message (line N)". at_key is used for the line number when
 * the value itself has none. */
static int fail(struct loader *ld, int code, const char *key,
                struct fy_node *at_value, struct fy_node *at_key,
                const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int fail(struct loader *ld, int code, const char *key,
                struct fy_node *at_value, struct fy_node *at_key,
                const char *fmt, ...)
{
    char msg[SR_ERRMSG_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line = yamlsafe_node_line(at_value);
    if (line == 0)
        line = yamlsafe_node_line(at_key);
    if (line > 0)
        return sr_err(ld->err, ld->errlen, code, "%s: %s (line %d)", key, msg,
                      line);
    return sr_err(ld->err, ld->errlen, code, "%s: %s", key, msg);
}

static int oom(struct loader *ld)
{
    return sr_err(ld->err, ld->errlen, SR_ENOMEM, "out of memory");
}

/* Follows an alias to the node it names; NULL if the anchor is unknown. */
static struct fy_node *deref(struct fy_node *n)
{
    if (n != NULL && fy_node_is_alias(n))
        n = fy_node_resolve_alias(n);
    return n;
}

/* Gets a scalar's text, which is not NUL-terminated. */
static const char *scalar(struct fy_node *n, size_t *len)
{
    const char *s = fy_node_get_scalar(n, len);
    if (s == NULL) {
        *len = 0;
        s = "";
    }
    return s;
}

static bool text_is(const char *s, size_t len, const char *lit)
{
    return strlen(lit) == len && memcmp(s, lit, len) == 0;
}

/* YAML 1.2 core schema null: an empty plain value, "~" or "null". A key
 * given as null keeps its default. */
static bool is_null(struct fy_node *n)
{
    if (n == NULL)
        return true;
    if (!fy_node_is_scalar(n) || fy_node_get_style(n) != FYNS_PLAIN)
        return false;
    size_t tlen;
    if (fy_node_get_tag(n, &tlen) != NULL)
        return false;
    size_t len;
    const char *s = scalar(n, &len);
    return len == 0 || text_is(s, len, "~") || text_is(s, len, "null") ||
           text_is(s, len, "Null") || text_is(s, len, "NULL");
}

static bool has_tag(struct fy_node *n, const char *want)
{
    size_t len;
    const char *t = fy_node_get_tag(n, &len);
    return t != NULL && text_is(t, len, want);
}

/* Plain untagged (or explicitly typed) scalar: what YAML resolves to a
 * number or a boolean. A quoted "300" is a string and is refused for a
 * number key, as JSON would. */
static bool is_plain(struct fy_node *n, const char *core_tag)
{
    if (!fy_node_is_scalar(n) || fy_node_get_style(n) != FYNS_PLAIN)
        return false;
    size_t len;
    return fy_node_get_tag(n, &len) == NULL || has_tag(n, core_tag);
}

/* Parses a plain decimal integer in [min, max]. */
static bool parse_uint(struct fy_node *n, uint64_t min, uint64_t max,
                       uint64_t *out)
{
    if (!is_plain(n, "tag:yaml.org,2002:int"))
        return false;
    size_t len;
    const char *s = scalar(n, &len);
    if (len == 0)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
        if (v > max)
            return false;
    }
    if (v < min)
        return false;
    *out = v;
    return true;
}

static bool parse_bool(struct fy_node *n, bool *out)
{
    if (!is_plain(n, "tag:yaml.org,2002:bool"))
        return false;
    size_t len;
    const char *s = scalar(n, &len);
    if (text_is(s, len, "true") || text_is(s, len, "True") ||
        text_is(s, len, "TRUE")) {
        *out = true;
        return true;
    }
    if (text_is(s, len, "false") || text_is(s, len, "False") ||
        text_is(s, len, "FALSE")) {
        *out = false;
        return true;
    }
    return false;
}

/* Copies a scalar into a new C string. Returns 0, SR_EINVAL for a value
 * that is not a non-empty string free of control characters, or
 * SR_ENOMEM. Control characters (which YAML escapes such as "\n" can
 * produce) are refused because these values end up in log lines. */
static int dup_string(struct fy_node *n, size_t maxlen, char **out)
{
    if (n == NULL || !fy_node_is_scalar(n))
        return SR_EINVAL;
    size_t len;
    const char *s = scalar(n, &len);
    if (len == 0 || len > maxlen)
        return SR_EINVAL;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return SR_EINVAL;
    *out = strndup(s, len);
    return *out != NULL ? 0 : SR_ENOMEM;
}

static bool valid_hostname(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 253 || s[0] == '.' || s[0] == '-')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '.'))
            return false;
    }
    return true;
}

/* The token is compared against an HTTP header, so it must be one header
 * token: visible ASCII, no spaces. */
static bool valid_token(const char *s)
{
    for (; *s != '\0'; s++)
        if (*s < 0x21 || *s > 0x7e)
            return false;
    return true;
}

static bool valid_address(const char *s)
{
    char host[256];
    int port;
    return config_split_address(s, host, sizeof host, &port) == 0;
}

#define ADDRESS_RULE                                                           \
    "must be host:port (IPv6 as [addr]:port) with a port between 1 and "       \
    "65535"

/* ---- address splitting --------------------------------------------------- */

static bool host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}

int config_ip_address(const char *addr, struct sockaddr_storage *ss)
{
    char host[INET6_ADDRSTRLEN + 2];
    int port;
    if (config_split_address(addr, host, sizeof host, &port) != 0)
        return SR_EINVAL;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0 ||
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    return SR_EINVAL;
}

int config_split_address(const char *addr, char *host, size_t hostlen,
                         int *port)
{
    if (addr == NULL)
        return SR_EINVAL;
    const char *h, *colon;
    size_t hlen;
    if (addr[0] == '[') {
        /* Brackets are only for IPv6 literals, as in RFC 3986 3.2.2. */
        const char *close = strchr(addr, ']');
        if (close == NULL || close[1] != ':')
            return SR_EINVAL;
        h = addr + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
        char v6[INET6_ADDRSTRLEN];
        struct in6_addr a6;
        if (hlen == 0 || hlen >= sizeof v6)
            return SR_EINVAL;
        memcpy(v6, h, hlen);
        v6[hlen] = '\0';
        if (inet_pton(AF_INET6, v6, &a6) != 1)
            return SR_EINVAL;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL)
            return SR_EINVAL;
        h = addr;
        hlen = (size_t)(colon - h);
        if (hlen == 0)
            return SR_EINVAL;
        /* An unbracketed host with ':' would be ambiguous (IPv6). */
        for (size_t i = 0; i < hlen; i++)
            if (!host_char(h[i]))
                return SR_EINVAL;
    }
    const char *p = colon + 1;
    long v = 0;
    size_t digits = 0;
    for (; p[digits] != '\0'; digits++) {
        if (p[digits] < '0' || p[digits] > '9' || digits >= 5)
            return SR_EINVAL;
        v = v * 10 + (p[digits] - '0');
    }
    if (digits == 0 || v < 1 || v > 65535)
        return SR_EINVAL;
    if (host != NULL) {
        if (hlen >= hostlen)
            return SR_EINVAL;
        memcpy(host, h, hlen);
        host[hlen] = '\0';
    }
    if (port != NULL)
        *port = (int)v;
    return 0;
}

/* ---- defaults ------------------------------------------------------------ */

void config_free(struct sr_config *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->data_dir);
    free(cfg->hostname);
    free(cfg->log_level);
    free(cfg->raft_listen);
    for (unsigned i = 0; i < cfg->n_peers; i++) {
        free(cfg->peers[i].raft_address);
        free(cfg->peers[i].rpc_address);
    }
    free(cfg->peers);
    free(cfg->rpc_listen);
    for (unsigned i = 0; i < cfg->n_smtp_listen; i++)
        free(cfg->smtp_listen[i]);
    free(cfg->smtp_listen);
    free(cfg->smtp_customer);
    free(cfg->smtp_customer_host);
    free(cfg->tls_cert);
    free(cfg->delivery_dns);
    free(cfg->delivery_tls);
    free(cfg->cluster_tls_ca);
    free(cfg->cluster_tls_cert);
    free(cfg->cluster_tls_key);
    free(cfg->tls_key);
    free(cfg->admin_listen);
    free(cfg->tracking_listen);
    free(cfg->tracking_tls_cert);
    free(cfg->tracking_tls_key);
    free(cfg->admin_token);
    free(cfg->admin_tls_cert);
    free(cfg->admin_tls_key);
    free(cfg->floating_address);
    free(cfg->floating_interface);
    memset(cfg, 0, sizeof *cfg);
}

static void free_peers(struct sr_peer *peers, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        free(peers[i].raft_address);
        free(peers[i].rpc_address);
    }
    free(peers);
}

/* Replaces *slot with a formatted string. */
static int set_printf(char **slot, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int set_printf(char **slot, const char *fmt, ...)
{
    char *s;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        return SR_ENOMEM;
    free(*slot);
    *slot = s;
    return 0;
}

static int set_data_dir(struct sr_config *cfg)
{
    return set_printf(&cfg->data_dir, "./run/node%llu",
                      (unsigned long long)cfg->node_id);
}

static int set_hostname(struct sr_config *cfg)
{
    return set_printf(&cfg->hostname, "smartrelay%llu.localdomain",
                      (unsigned long long)cfg->node_id);
}

/* The default voter set is this node alone, at its own listeners. */
static int set_self_peer(struct sr_config *cfg)
{
    struct sr_peer *p = calloc(1, sizeof *p);
    if (p == NULL)
        return SR_ENOMEM;
    p->id = cfg->node_id;
    p->raft_address = strdup(cfg->raft_listen);
    p->rpc_address = strdup(cfg->rpc_listen);
    if (p->raft_address == NULL || p->rpc_address == NULL) {
        free_peers(p, 1);
        return SR_ENOMEM;
    }
    free_peers(cfg->peers, cfg->n_peers);
    cfg->peers = p;
    cfg->n_peers = 1;
    return 0;
}

static int defaults(struct sr_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->node_id = 1;
    cfg->election_timeout_ms = 300;
    cfg->heartbeat_ms = 50;
    cfg->snapshot_threshold = 16384;
    cfg->snapshot_trailing = 4096;
    cfg->bootstrap = true;
    cfg->rpc_timeout_ms = 5000;
    cfg->commit_timeout_ms = 15000;
    cfg->command_timeout_s = 300;
    cfg->data_timeout_s = 180;
    cfg->body_copies = 0;
    cfg->body_group_commit_us = SR_GROUP_COMMIT_AUTO;
    cfg->log_level = strdup("info");
    cfg->raft_listen = strdup("127.0.0.1:7001");
    cfg->rpc_listen = strdup("127.0.0.1:7101");
    cfg->smtp_customer = strdup("default");
    cfg->smtp_customer_host = strdup("127.0.0.1");
    cfg->floating_interface = strdup("eth0");
    cfg->floating_arp_count = 3;
    cfg->delivery_enabled = true;
    cfg->delivery_port = 25;
    cfg->delivery_tls = strdup("may");
    cfg->delivery_max_conns = 100;
    cfg->delivery_max_conns_domain = 10;
    cfg->delivery_msgs_per_conn = 100;
    cfg->delivery_retry_min_s = 300;
    cfg->delivery_retry_max_s = 14400;
    cfg->delivery_max_age_s = 432000;
    cfg->queue_high_water = 1000000;
    cfg->admin_idle_timeout_s = 30;
    cfg->queue_low_water = 900000;
    cfg->admin_listen = strdup("127.0.0.1:8080");
    cfg->smtp_listen = calloc(1, sizeof *cfg->smtp_listen);
    if (cfg->smtp_listen != NULL) {
        cfg->smtp_listen[0] = strdup("127.0.0.1:2525");
        cfg->n_smtp_listen = cfg->smtp_listen[0] != NULL ? 1 : 0;
    }
    if (cfg->log_level == NULL || cfg->raft_listen == NULL ||
        cfg->rpc_listen == NULL || cfg->smtp_customer == NULL ||
        cfg->smtp_customer_host == NULL || cfg->floating_interface == NULL ||
        cfg->delivery_tls == NULL || cfg->admin_listen == NULL ||
        cfg->n_smtp_listen != 1 || set_data_dir(cfg) != 0 ||
        set_hostname(cfg) != 0 || set_self_peer(cfg) != 0) {
        config_free(cfg);
        return SR_ENOMEM;
    }
    return 0;
}

void config_defaults(struct sr_config *cfg)
{
    /* Called once at start-up with no way to report: running out of
     * memory this early is fatal. */
    if (defaults(cfg) != 0) {
        fprintf(stderr, "%s:%d: config_defaults: out of memory\n", __FILE__,
                __LINE__);
        abort();
    }
}

/* ---- the walkers --------------------------------------------------------- */

static int load_listen(struct loader *ld, const char *key, struct fy_node *kn,
                       struct fy_node *v)
{
    struct sr_config *cfg = ld->cfg;
    if (fy_node_get_type(v) != FYNT_SEQUENCE)
        return fail(ld, SR_EINVAL, key, v, kn,
                    "must be a list of host:port addresses");
    int n = fy_node_sequence_item_count(v);
    if (n <= 0)
        return fail(ld, SR_EINVAL, key, v, kn, "must not be empty");
    if (n > CONFIG_MAX_LISTEN)
        return fail(ld, SR_EINVAL, key, v, kn, "at most %d addresses",
                    CONFIG_MAX_LISTEN);
    char **list = calloc((size_t)n, sizeof *list);
    if (list == NULL)
        return oom(ld);
    int rc = 0;
    unsigned count = 0;
    void *it = NULL;
    struct fy_node *item;
    while ((item = fy_node_sequence_iterate(v, &it)) != NULL) {
        char path[64];
        snprintf(path, sizeof path, "%s[%u]", key, count);
        struct fy_node *iv = deref(item);
        rc = dup_string(iv, CONFIG_MAX_STRING, &list[count]);
        if (rc == SR_ENOMEM) {
            rc = oom(ld);
            break;
        }
        if (rc != 0 || !valid_address(list[count])) {
            rc = fail(ld, SR_EINVAL, path, iv, kn, ADDRESS_RULE);
            break;
        }
        for (unsigned j = 0; j < count; j++) {
            if (strcmp(list[j], list[count]) == 0) {
                rc = fail(ld, SR_EINVAL, path, iv, kn, "duplicate address '%s'",
                          list[count]);
                break;
            }
        }
        count++;
        if (rc != 0)
            break;
    }
    if (rc != 0) {
        for (int i = 0; i < n; i++)
            free(list[i]);
        free(list);
        return rc;
    }
    for (unsigned i = 0; i < cfg->n_smtp_listen; i++)
        free(cfg->smtp_listen[i]);
    free(cfg->smtp_listen);
    cfg->smtp_listen = list;
    cfg->n_smtp_listen = count;
    return 0;
}

/* One raft.peers item: a mapping of exactly id, raft_address, rpc_address. */
static int load_peer(struct loader *ld, const char *key, struct fy_node *item,
                     struct sr_peer *p)
{
    char path[96];
    struct fy_node *v = deref(item);
    if (v == NULL || fy_node_get_type(v) != FYNT_MAPPING)
        return fail(ld, SR_EINVAL, key, v, item,
                    "must be a mapping with id, raft_address and "
                    "rpc_address");
    bool have_id = false;
    void *it = NULL;
    struct fy_node_pair *pair;
    while ((pair = fy_node_mapping_iterate(v, &it)) != NULL) {
        struct fy_node *kn = deref(fy_node_pair_key(pair));
        struct fy_node *val = deref(fy_node_pair_value(pair));
        size_t klen = 0;
        const char *k =
            kn != NULL && fy_node_is_scalar(kn) ? scalar(kn, &klen) : NULL;
        if (k == NULL)
            return fail(ld, SR_EINVAL, key, v, item, "keys must be strings");
        if (text_is(k, klen, "id")) {
            snprintf(path, sizeof path, "%s.id", key);
            uint64_t id;
            if (!parse_uint(val, 1, 65535, &id))
                return fail(ld, SR_EINVAL, path, val, kn,
                            "must be an integer between 1 and 65535");
            p->id = id;
            have_id = true;
        } else if (text_is(k, klen, "raft_address") ||
                   text_is(k, klen, "rpc_address")) {
            bool raft = text_is(k, klen, "raft_address");
            char **slot = raft ? &p->raft_address : &p->rpc_address;
            snprintf(path, sizeof path, "%s.%s", key,
                     raft ? "raft_address" : "rpc_address");
            char *s = NULL;
            int rc = dup_string(val, CONFIG_MAX_STRING, &s);
            if (rc == SR_ENOMEM)
                return oom(ld);
            if (rc != 0 || !valid_address(s)) {
                free(s);
                return fail(ld, SR_EINVAL, path, val, kn, ADDRESS_RULE);
            }
            free(*slot);
            *slot = s;
        } else {
            char name[80];
            sr_sanitize(name, sizeof name, k, klen);
            snprintf(path, sizeof path, "%s.%s", key, name);
            return fail(ld, SR_EINVAL, path, NULL, kn, "unknown key");
        }
    }
    if (!have_id) {
        snprintf(path, sizeof path, "%s.id", key);
        return fail(ld, SR_EINVAL, path, NULL, item, "required");
    }
    if (p->raft_address == NULL) {
        snprintf(path, sizeof path, "%s.raft_address", key);
        return fail(ld, SR_EINVAL, path, NULL, item, "required");
    }
    if (p->rpc_address == NULL) {
        snprintf(path, sizeof path, "%s.rpc_address", key);
        return fail(ld, SR_EINVAL, path, NULL, item, "required");
    }
    return 0;
}

static int load_peers(struct loader *ld, const char *key, struct fy_node *kn,
                      struct fy_node *v)
{
    struct sr_config *cfg = ld->cfg;
    if (fy_node_get_type(v) != FYNT_SEQUENCE)
        return fail(ld, SR_EINVAL, key, v, kn,
                    "must be a list of {id, raft_address, rpc_address}");
    int n = fy_node_sequence_item_count(v);
    if (n <= 0)
        return fail(ld, SR_EINVAL, key, v, kn, "must not be empty");
    if (n > CONFIG_MAX_PEERS)
        return fail(ld, SR_EINVAL, key, v, kn, "at most %d peers",
                    CONFIG_MAX_PEERS);
    struct sr_peer *peers = calloc((size_t)n, sizeof *peers);
    if (peers == NULL)
        return oom(ld);
    int rc = 0;
    unsigned count = 0;
    void *it = NULL;
    struct fy_node *item;
    while (rc == 0 && (item = fy_node_sequence_iterate(v, &it)) != NULL) {
        char path[64];
        snprintf(path, sizeof path, "%s[%u]", key, count);
        rc = load_peer(ld, path, item, &peers[count]);
        for (unsigned j = 0; rc == 0 && j < count; j++) {
            if (peers[j].id == peers[count].id) {
                char idpath[80];
                snprintf(idpath, sizeof idpath, "%s.id", path);
                rc = fail(ld, SR_EINVAL, idpath, NULL, item,
                          "duplicate id %llu (also %s[%u])",
                          (unsigned long long)peers[count].id, key, j);
            } else if (strcmp(peers[j].raft_address,
                              peers[count].raft_address) == 0) {
                char apath[80];
                snprintf(apath, sizeof apath, "%s.raft_address", path);
                rc = fail(ld, SR_EINVAL, apath, NULL, item,
                          "duplicate address '%s' (also %s[%u])",
                          peers[count].raft_address, key, j);
            }
        }
        count++;
    }
    if (rc != 0) {
        free_peers(peers, (unsigned)n);
        return rc;
    }
    free_peers(cfg->peers, cfg->n_peers);
    cfg->peers = peers;
    cfg->n_peers = count;
    ld->peers_set = true;
    return 0;
}

static int load_key(struct loader *ld, const struct key_spec *ks,
                    struct fy_node *kn, struct fy_node *v)
{
    char key[64];
    snprintf(key, sizeof key, "%s.%s", ks->section, ks->name);
    char *base = (char *)ld->cfg;
    if (v == NULL)
        return fail(ld, SR_EINVAL, key, NULL, kn, "alias to unknown anchor");

    switch (ks->kind) {
    case K_ID:
    case K_UINT: {
        uint64_t u;
        if (!parse_uint(v, ks->min, ks->max, &u))
            return fail(ld, SR_EINVAL, key, v, kn,
                        "must be an integer between %u and %u", ks->min,
                        ks->max);
        if (ks->kind == K_ID)
            *(uint64_t *)(base + ks->off) = u;
        else
            *(unsigned *)(base + ks->off) = (unsigned)u;
        return 0;
    }
    case K_BOOL: {
        bool b;
        if (!parse_bool(v, &b))
            return fail(ld, SR_EINVAL, key, v, kn, "must be true or false");
        *(bool *)(base + ks->off) = b;
        return 0;
    }
    case K_LISTEN:
        return load_listen(ld, key, kn, v);
    case K_PEERS:
        return load_peers(ld, key, kn, v);
    default:
        break;
    }

    /* The rest are strings with a per-kind rule. */
    char *s = NULL;
    int rc = dup_string(v, CONFIG_MAX_STRING, &s);
    if (rc == SR_ENOMEM)
        return oom(ld);
    const char *rule = NULL;
    switch (ks->kind) {
    case K_STRING:
        if (rc != 0)
            rule = "must be a non-empty string without control characters";
        break;
    case K_ADDRESS:
        if (rc != 0 || !valid_address(s))
            rule = ADDRESS_RULE;
        break;
    case K_LEVEL:
        if (rc != 0 || (strcmp(s, "debug") != 0 && strcmp(s, "info") != 0 &&
                        strcmp(s, "warn") != 0 && strcmp(s, "error") != 0))
            rule = "must be one of debug, info, warn, error";
        break;
    case K_HOSTNAME:
        if (rc != 0 || !valid_hostname(s))
            rule = "must be a host name of letters, digits, '-' and '.' "
                   "(at most 253 characters)";
        break;
    case K_CUSTOMER:
        if (rc != 0 || !policy_valid_name(s, strlen(s)))
            rule = "must be 1 to 64 characters of A-Z a-z 0-9 _ . -";
        break;
    case K_TOKEN:
        if (rc != 0 || strlen(s) > CONFIG_MAX_TOKEN || !valid_token(s))
            rule = "must be 1 to 256 visible ASCII characters (no spaces)";
        break;
    default:
        rule = "internal error: unhandled key kind";
        break;
    }
    if (rule != NULL) {
        free(s);
        return fail(ld, SR_EINVAL, key, v, kn, "%s", rule);
    }
    char **slot = (char **)(base + ks->off);
    free(*slot);
    *slot = s;
    if (ks->off == OFF(data_dir))
        ld->data_dir_set = true;
    else if (ks->off == OFF(hostname))
        ld->hostname_set = true;
    return 0;
}

static int load_section(struct loader *ld, const char *section,
                        struct fy_node *sn, struct fy_node *v)
{
    if (is_null(v))
        return 0;
    if (fy_node_get_type(v) != FYNT_MAPPING)
        return fail(ld, SR_EINVAL, section, v, sn, "must be a mapping");
    void *it = NULL;
    struct fy_node_pair *pair;
    while ((pair = fy_node_mapping_iterate(v, &it)) != NULL) {
        struct fy_node *kn = deref(fy_node_pair_key(pair));
        if (kn == NULL || !fy_node_is_scalar(kn))
            return fail(ld, SR_EINVAL, section, v, sn, "keys must be strings");
        size_t klen;
        const char *k = scalar(kn, &klen);
        const struct key_spec *ks = NULL;
        for (size_t i = 0; i < N_KEYS; i++) {
            if (strcmp(keys[i].section, section) == 0 &&
                text_is(k, klen, keys[i].name)) {
                ks = &keys[i];
                break;
            }
        }
        if (ks == NULL) {
            char name[80], key[128];
            sr_sanitize(name, sizeof name, k, klen);
            snprintf(key, sizeof key, "%s.%s", section, name);
            return fail(ld, SR_EINVAL, key, NULL, kn, "unknown key");
        }
        struct fy_node *raw = fy_node_pair_value(pair);
        if (is_null(raw))
            continue;
        int rc = load_key(ld, ks, kn, deref(raw));
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int load_root(struct loader *ld, struct fy_node *root)
{
    root = deref(root);
    if (is_null(root))
        return 0;
    if (fy_node_get_type(root) != FYNT_MAPPING)
        return fail(
            ld, SR_EINVAL, "(top level)", root, NULL,
            "must be a mapping of sections (node, log, raft, rpc, cluster, "
            "smtp, floating, admin, tracking, delivery, bodies)");
    void *it = NULL;
    struct fy_node_pair *pair;
    while ((pair = fy_node_mapping_iterate(root, &it)) != NULL) {
        struct fy_node *kn = deref(fy_node_pair_key(pair));
        if (kn == NULL || !fy_node_is_scalar(kn))
            return fail(ld, SR_EINVAL, "(top level)", NULL, NULL,
                        "keys must be strings");
        size_t klen;
        const char *k = scalar(kn, &klen);
        const char *section = NULL;
        for (size_t i = 0; i < N_KEYS; i++) {
            if (text_is(k, klen, keys[i].section)) {
                section = keys[i].section;
                break;
            }
        }
        if (section == NULL) {
            char name[80];
            sr_sanitize(name, sizeof name, k, klen);
            return fail(ld, SR_EINVAL, name, NULL, kn, "unknown key");
        }
        struct fy_node *raw = fy_node_pair_value(pair);
        struct fy_node *v = deref(raw);
        if (raw != NULL && v == NULL)
            return fail(ld, SR_EINVAL, section, raw, kn,
                        "alias to unknown anchor");
        int rc = load_section(ld, section, kn, v);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Cross-key rules and the defaults that depend on node.id. */
static int finish(struct loader *ld)
{
    struct sr_config *cfg = ld->cfg;
    if (cfg->heartbeat_ms >= cfg->election_timeout_ms)
        return sr_err(ld->err, ld->errlen, SR_EINVAL,
                      "raft.heartbeat_ms: must be less than "
                      "raft.election_timeout_ms (%u)",
                      cfg->election_timeout_ms);
    if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL))
        return sr_err(ld->err, ld->errlen, SR_EINVAL,
                      "%s: required when %s is set",
                      cfg->tls_cert == NULL ? "smtp.tls_cert" : "smtp.tls_key",
                      cfg->tls_cert == NULL ? "smtp.tls_key" : "smtp.tls_cert");
    if ((cfg->admin_tls_cert == NULL) != (cfg->admin_tls_key == NULL))
        return sr_err(
            ld->err, ld->errlen, SR_EINVAL, "%s: required when %s is set",
            cfg->admin_tls_cert == NULL ? "admin.tls_cert" : "admin.tls_key",
            cfg->admin_tls_cert == NULL ? "admin.tls_key" : "admin.tls_cert");
    if ((cfg->tracking_tls_cert == NULL) != (cfg->tracking_tls_key == NULL))
        return sr_err(ld->err, ld->errlen, SR_EINVAL,
                      "%s: required when %s is set",
                      cfg->tracking_tls_cert == NULL ? "tracking.tls_cert"
                                                     : "tracking.tls_key",
                      cfg->tracking_tls_cert == NULL ? "tracking.tls_key"
                                                     : "tracking.tls_cert");
    {
        int n = (cfg->cluster_tls_ca != NULL) +
                (cfg->cluster_tls_cert != NULL) +
                (cfg->cluster_tls_key != NULL);
        if (n != 0 && n != 3)
            return sr_err(ld->err, ld->errlen, SR_EINVAL,
                          "%s: required with the other cluster.tls_* keys",
                          cfg->cluster_tls_ca == NULL     ? "cluster.tls_ca"
                          : cfg->cluster_tls_cert == NULL ? "cluster.tls_cert"
                                                          : "cluster.tls_key");
    }
    if (strcmp(cfg->delivery_tls, "none") != 0 &&
        strcmp(cfg->delivery_tls, "may") != 0 &&
        strcmp(cfg->delivery_tls, "require") != 0)
        return sr_err(ld->err, ld->errlen, SR_EINVAL,
                      "delivery.tls: must be none, may or require");
    if (cfg->queue_low_water >= cfg->queue_high_water)
        return sr_err(ld->err, ld->errlen, SR_EINVAL,
                      "delivery.queue_low_water: must be less than "
                      "delivery.queue_high_water (%u)",
                      cfg->queue_high_water);
    if (cfg->delivery_retry_max_s < cfg->delivery_retry_min_s)
        return sr_err(ld->err, ld->errlen, SR_EINVAL,
                      "delivery.retry_max_s: must be at least "
                      "delivery.retry_min_s (%u)",
                      cfg->delivery_retry_min_s);
    if (ld->peers_set) {
        bool found = false;
        for (unsigned i = 0; i < cfg->n_peers; i++)
            found = found || cfg->peers[i].id == cfg->node_id;
        if (!found)
            return sr_err(ld->err, ld->errlen, SR_EINVAL,
                          "raft.peers: must include this node (node.id %llu)",
                          (unsigned long long)cfg->node_id);
    } else if (set_self_peer(cfg) != 0) {
        return oom(ld);
    }
    if (!ld->data_dir_set && set_data_dir(cfg) != 0)
        return oom(ld);
    if (!ld->hostname_set && set_hostname(cfg) != 0)
        return oom(ld);
    return 0;
}

/* ---- YAML parsing -------------------------------------------------------- */

static int load_doc(void *ud, struct fy_node *root)
{
    /* An empty file (or comments only) means all defaults. */
    return root != NULL ? load_root(ud, root) : 0;
}

static int load_yaml(const char *yaml, size_t len, struct sr_config *cfg,
                     char *err, size_t errlen)
{
    struct loader ld = {.cfg = cfg, .err = err, .errlen = errlen};
    int rc = defaults(cfg);
    if (rc != 0)
        return oom(&ld);
    rc = yamlsafe_parse(yaml, len, load_doc, &ld, err, errlen);
    if (rc == 0)
        rc = finish(&ld);
    if (rc != 0)
        config_free(cfg);
    return rc;
}

int config_load_string(const char *yaml, size_t len, struct sr_config *cfg,
                       char *err, size_t errlen)
{
    if (yaml == NULL)
        len = 0;
    return load_yaml(yaml, len, cfg, err, errlen);
}

/* Reads a whole file into a malloc'd buffer. Messages do not repeat the
 * path: callers print it in front ("smartrelayd: PATH: message"). */
static int read_file(const char *path, char **buf, size_t *len, char *err,
                     size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sr_err(err, errlen, SR_EIO, "%s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return sr_err(err, errlen, SR_EIO, "%s", strerror(e));
    }
    if (!S_ISREG(st.st_mode) || st.st_size > CONFIG_MAX_FILE) {
        close(fd);
        return sr_err(err, errlen, SR_EIO,
                      "not a regular file of at most %d bytes",
                      CONFIG_MAX_FILE);
    }
    size_t cap = (size_t)st.st_size + 1, n = 0;
    char *b = malloc(cap);
    if (b == NULL) {
        close(fd);
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    }
    for (;;) {
        ssize_t r = read(fd, b + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(b);
            close(fd);
            return sr_err(err, errlen, SR_EIO, "%s", strerror(e));
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n == cap) {
            /* The file grew after fstat; refuse rather than chase it. */
            free(b);
            close(fd);
            return sr_err(err, errlen, SR_EIO, "changed while being read");
        }
    }
    close(fd);
    *buf = b;
    *len = n;
    return 0;
}

int config_load(const char *path, struct sr_config *cfg, char *err,
                size_t errlen)
{
    if (path == NULL)
        return config_load_string(NULL, 0, cfg, err, errlen);
    memset(cfg, 0, sizeof *cfg);
    char *buf = NULL;
    size_t len = 0;
    int rc = read_file(path, &buf, &len, err, errlen);
    if (rc != 0)
        return rc;
    rc = config_load_string(buf, len, cfg, err, errlen);
    free(buf);
    return rc;
}
