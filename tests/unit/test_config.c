/*
 * test_config.c - unit tests for node/config.c.
 *
 * Table-driven: each row is a YAML text and what loading it must give
 * (selected fields, or the error code and a substring of the message that
 * names the key). Every error class of config_load has at least one row.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "node/config.h"
#include "node/errors.h"

static int load(const char *yaml, struct sr_config *cfg, char *err,
                size_t errlen)
{
    return config_load_string(yaml, strlen(yaml), cfg, err, errlen);
}

static bool is_zeroed(const struct sr_config *cfg)
{
    static const struct sr_config zero;
    return memcmp(cfg, &zero, sizeof zero) == 0;
}

/* ---- defaults ------------------------------------------------------------ */

static void check_defaults(const struct sr_config *c)
{
    assert_int_equal(c->node_id, 1);
    assert_string_equal(c->data_dir, "./run/node1");
    assert_string_equal(c->hostname, "smartrelay1.localdomain");
    assert_string_equal(c->log_level, "info");
    assert_string_equal(c->raft_listen, "127.0.0.1:7001");
    assert_int_equal(c->n_peers, 1);
    assert_int_equal(c->peers[0].id, 1);
    assert_string_equal(c->peers[0].raft_address, "127.0.0.1:7001");
    assert_string_equal(c->peers[0].rpc_address, "127.0.0.1:7101");
    assert_int_equal(c->election_timeout_ms, 300);
    assert_int_equal(c->heartbeat_ms, 50);
    assert_int_equal(c->snapshot_threshold, 16384);
    assert_int_equal(c->snapshot_trailing, 4096);
    assert_true(c->bootstrap);
    assert_string_equal(c->rpc_listen, "127.0.0.1:7101");
    assert_int_equal(c->rpc_timeout_ms, 5000);
    assert_int_equal(c->n_smtp_listen, 1);
    assert_string_equal(c->smtp_listen[0], "127.0.0.1:2525");
    assert_string_equal(c->smtp_customer, "default");
    assert_null(c->tls_cert);
    assert_null(c->tls_key);
    assert_int_equal(c->commit_timeout_ms, 15000);
    assert_int_equal(c->command_timeout_s, 300);
    assert_int_equal(c->data_timeout_s, 180);
    assert_string_equal(c->admin_listen, "127.0.0.1:8080");
    assert_null(c->admin_token);
    assert_null(c->admin_tls_cert);
    assert_null(c->admin_tls_key);
    assert_int_equal(c->body_copies, 0);
}

static void test_defaults(void **state)
{
    (void)state;
    struct sr_config c;
    config_defaults(&c);
    check_defaults(&c);
    config_free(&c);
    assert_true(is_zeroed(&c));
    config_free(&c); /* safe twice */
}

/* Inputs that mean "no settings": all give the defaults. */
static void test_empty_inputs(void **state)
{
    (void)state;
    static const char *const inputs[] = {
        "",
        "\n",
        "# only a comment\n",
        "---\n",
        "--- ~\n",
        "~\n",
        "node:\nsmtp: ~\n",
        "\xef\xbb\xbf# a byte order mark and CRLF\r\n",
        "%YAML 1.2\r\n---\r\nlog:\r\n",
        "# caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa7 \xc2\x85\n",
    };
    for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++) {
        struct sr_config c;
        char err[SR_ERRMSG_SIZE] = "";
        int rc = load(inputs[i], &c, err, sizeof err);
        if (rc != 0)
            fail_msg("input %zu: rc %d err %s", i, rc, err);
        check_defaults(&c);
        config_free(&c);
    }
    struct sr_config c;
    char err[SR_ERRMSG_SIZE];
    assert_int_equal(config_load(NULL, &c, err, sizeof err), 0);
    check_defaults(&c);
    config_free(&c);
    assert_int_equal(config_load_string(NULL, 0, &c, err, sizeof err), 0);
    check_defaults(&c);
    config_free(&c);
}

/* ---- good inputs --------------------------------------------------------- */

struct good_case {
    const char *name;
    const char *yaml;
    /* want */
    uint64_t node_id;
    const char *data_dir;
    const char *hostname;
    const char *log_level;
    unsigned n_peers;
    const char *peer0_raft;
    unsigned election_timeout_ms;
    bool bootstrap;
    unsigned n_smtp_listen;
    const char *smtp_listen0;
    const char *tls_cert;
    unsigned body_copies;
};

static const struct good_case good_cases[] = {
    {"id-derived defaults", "node:\n  id: 3\n", 3, "./run/node3",
     "smartrelay3.localdomain", "info", 1, "127.0.0.1:7001", 300, true, 1,
     "127.0.0.1:2525", NULL, 0},
    {"given hostname kept, data_dir derived after",
     "node:\n  hostname: mx.example.com\n  id: 2\n", 2, "./run/node2",
     "mx.example.com", "info", 1, "127.0.0.1:7001", 300, true, 1,
     "127.0.0.1:2525", NULL, 0},
    {"id after data_dir keeps data_dir",
     "node:\n  data_dir: /var/sr\n  id: 9\n", 9, "/var/sr",
     "smartrelay9.localdomain", "info", 1, "127.0.0.1:7001", 300, true, 1,
     "127.0.0.1:2525", NULL, 0},
    {"self peer follows raft.listen",
     "raft:\n  listen: '[::1]:7009'\nnode: {id: 65535}\n", 65535,
     "./run/node65535", "smartrelay65535.localdomain", "info", 1, "[::1]:7009",
     300, true, 1, "127.0.0.1:2525", NULL, 0},
    {"null values keep defaults",
     "smtp:\n  tls_cert:\n  listen: ~\nlog:\n  level: null\n", 1, "./run/node1",
     "smartrelay1.localdomain", "info", 1, "127.0.0.1:7001", 300, true, 1,
     "127.0.0.1:2525", NULL, 0},
    {"bool spellings and range edges",
     "raft:\n  bootstrap: FALSE\n  election_timeout_ms: 60000\n"
     "bodies:\n  copies: 255\nlog: {level: debug}\n",
     1, "./run/node1", "smartrelay1.localdomain", "debug", 1, "127.0.0.1:7001",
     60000, false, 1, "127.0.0.1:2525", NULL, 255},
    {"lower range edge and explicit tags",
     "raft:\n  election_timeout_ms: !!int 50\n  heartbeat_ms: 1\n"
     "  bootstrap: !!bool True\n",
     1, "./run/node1", "smartrelay1.localdomain", "info", 1, "127.0.0.1:7001",
     50, true, 1, "127.0.0.1:2525", NULL, 0},
    {"listen list with IPv6 and names",
     "smtp:\n  listen: ['[::]:25', 0.0.0.0:25, localhost:2525]\n", 1,
     "./run/node1", "smartrelay1.localdomain", "info", 1, "127.0.0.1:7001", 300,
     true, 3, "[::]:25", NULL, 0},
    {"alias values", "smtp:\n  tls_cert: &c /etc/sr/c.pem\n  tls_key: *c\n", 1,
     "./run/node1", "smartrelay1.localdomain", "info", 1, "127.0.0.1:7001", 300,
     true, 1, "127.0.0.1:2525", "/etc/sr/c.pem", 0},
    {"peers given",
     "node: {id: 2}\nraft:\n  peers:\n"
     "    - {id: 1, raft_address: 10.0.0.1:7001, rpc_address: 10.0.0.1:7101}\n"
     "    - {id: 2, raft_address: 10.0.0.2:7001, rpc_address: 10.0.0.2:7101}\n",
     2, "./run/node2", "smartrelay2.localdomain", "info", 2, "10.0.0.1:7001",
     300, true, 1, "127.0.0.1:2525", NULL, 0},
};

static void test_good(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof good_cases / sizeof *good_cases; i++) {
        const struct good_case *tc = &good_cases[i];
        struct sr_config c;
        char err[SR_ERRMSG_SIZE] = "";
        int rc = load(tc->yaml, &c, err, sizeof err);
        if (rc != 0)
            fail_msg("%s: rc %d err %s", tc->name, rc, err);
        assert_int_equal(c.node_id, tc->node_id);
        assert_string_equal(c.data_dir, tc->data_dir);
        assert_string_equal(c.hostname, tc->hostname);
        assert_string_equal(c.log_level, tc->log_level);
        assert_int_equal(c.n_peers, tc->n_peers);
        assert_string_equal(c.peers[0].raft_address, tc->peer0_raft);
        assert_int_equal(c.election_timeout_ms, tc->election_timeout_ms);
        assert_int_equal(c.bootstrap, tc->bootstrap);
        assert_int_equal(c.n_smtp_listen, tc->n_smtp_listen);
        assert_string_equal(c.smtp_listen[0], tc->smtp_listen0);
        if (tc->tls_cert == NULL)
            assert_null(c.tls_cert);
        else
            assert_string_equal(c.tls_cert, tc->tls_cert);
        assert_int_equal(c.body_copies, tc->body_copies);
        config_free(&c);
    }
}

static const char full_yaml[] = "# every key\n"
                                "node:\n"
                                "  id: 2\n"
                                "  data_dir: /var/lib/smartrelay\n"
                                "  hostname: mx2.example.net\n"
                                "log:\n"
                                "  level: warn\n"
                                "raft:\n"
                                "  listen: 0.0.0.0:7002\n"
                                "  peers:\n"
                                "    - id: 1\n"
                                "      raft_address: 10.0.0.1:7001\n"
                                "      rpc_address: 10.0.0.1:7101\n"
                                "    - id: 2\n"
                                "      raft_address: '[2001:db8::2]:7002'\n"
                                "      rpc_address: '[2001:db8::2]:7102'\n"
                                "    - id: 3\n"
                                "      raft_address: relay3.internal:7003\n"
                                "      rpc_address: relay3.internal:7103\n"
                                "  election_timeout_ms: 1000\n"
                                "  heartbeat_ms: 100\n"
                                "  snapshot_threshold: 8192\n"
                                "  snapshot_trailing: 1024\n"
                                "  bootstrap: false\n"
                                "rpc:\n"
                                "  listen: 0.0.0.0:7102\n"
                                "  timeout_ms: 2000\n"
                                "cluster:\n"
                                "  tls_ca: /etc/smartrelay/ca.pem\n"
                                "  tls_cert: /etc/smartrelay/node2.pem\n"
                                "  tls_key: /etc/smartrelay/node2.key\n"
                                "smtp:\n"
                                "  listen:\n"
                                "    - 0.0.0.0:25\n"
                                "    - '[::]:25'\n"
                                "  customer: acme-corp\n"
                                "  tls_cert: /etc/smartrelay/cert.pem\n"
                                "  tls_key: /etc/smartrelay/key.pem\n"
                                "  commit_timeout_ms: 20000\n"
                                "  command_timeout_s: 600\n"
                                "  data_timeout_s: 240\n"
                                "admin:\n"
                                "  listen: 127.0.0.1:9090\n"
                                "  token: s3cret-T0ken\n"
                                "  tls_cert: /etc/smartrelay/admin.pem\n"
                                "  tls_key: /etc/smartrelay/admin.key\n"
                                "bodies:\n"
                                "  copies: 2\n";

static void test_full(void **state)
{
    (void)state;
    struct sr_config c;
    char err[SR_ERRMSG_SIZE] = "";
    int rc = load(full_yaml, &c, err, sizeof err);
    if (rc != 0)
        fail_msg("rc %d err %s", rc, err);
    assert_int_equal(c.node_id, 2);
    assert_string_equal(c.data_dir, "/var/lib/smartrelay");
    assert_string_equal(c.hostname, "mx2.example.net");
    assert_string_equal(c.log_level, "warn");
    assert_string_equal(c.raft_listen, "0.0.0.0:7002");
    assert_int_equal(c.n_peers, 3);
    assert_int_equal(c.peers[0].id, 1);
    assert_string_equal(c.peers[0].raft_address, "10.0.0.1:7001");
    assert_string_equal(c.peers[0].rpc_address, "10.0.0.1:7101");
    assert_int_equal(c.peers[1].id, 2);
    assert_string_equal(c.peers[1].raft_address, "[2001:db8::2]:7002");
    assert_string_equal(c.peers[1].rpc_address, "[2001:db8::2]:7102");
    assert_int_equal(c.peers[2].id, 3);
    assert_string_equal(c.peers[2].raft_address, "relay3.internal:7003");
    assert_string_equal(c.peers[2].rpc_address, "relay3.internal:7103");
    assert_int_equal(c.election_timeout_ms, 1000);
    assert_int_equal(c.heartbeat_ms, 100);
    assert_int_equal(c.snapshot_threshold, 8192);
    assert_int_equal(c.snapshot_trailing, 1024);
    assert_false(c.bootstrap);
    assert_string_equal(c.rpc_listen, "0.0.0.0:7102");
    assert_int_equal(c.rpc_timeout_ms, 2000);
    assert_int_equal(c.n_smtp_listen, 2);
    assert_string_equal(c.smtp_listen[0], "0.0.0.0:25");
    assert_string_equal(c.smtp_listen[1], "[::]:25");
    assert_string_equal(c.smtp_customer, "acme-corp");
    assert_string_equal(c.tls_cert, "/etc/smartrelay/cert.pem");
    assert_string_equal(c.cluster_tls_ca, "/etc/smartrelay/ca.pem");
    assert_string_equal(c.cluster_tls_cert, "/etc/smartrelay/node2.pem");
    assert_string_equal(c.cluster_tls_key, "/etc/smartrelay/node2.key");
    assert_string_equal(c.tls_key, "/etc/smartrelay/key.pem");
    assert_int_equal(c.commit_timeout_ms, 20000);
    assert_int_equal(c.command_timeout_s, 600);
    assert_int_equal(c.data_timeout_s, 240);
    assert_string_equal(c.admin_listen, "127.0.0.1:9090");
    assert_string_equal(c.admin_token, "s3cret-T0ken");
    assert_string_equal(c.admin_tls_cert, "/etc/smartrelay/admin.pem");
    assert_string_equal(c.admin_tls_key, "/etc/smartrelay/admin.key");
    assert_int_equal(c.body_copies, 2);
    config_free(&c);
    assert_true(is_zeroed(&c));
}

/* ---- errors -------------------------------------------------------------- */

struct err_case {
    const char *yaml;
    int want_rc;
    const char *want_err; /* must appear in the message */
};

#define RANGE(key, lo, hi) key ": must be an integer between " #lo " and " #hi

static const struct err_case err_cases[] = {
    /* YAML syntax */
    {"node: [1\n", SR_EPARSE, "line 2, column 1: flow sequence"},
    {"node:\n  id: 1\n  id: 2\n", SR_EPARSE, "duplicate key"},
    {"\tnode: 1\n", SR_EPARSE, "line 1"},
    {"node: {id: 1}\n---\nnode: {id: 2}\n", SR_EPARSE,
     "only one YAML document"},
    {"node: {id: 1}\n---\n[\n", SR_EPARSE, "line"},
    /* text libfyaml never sees: invalid UTF-8, non-printable characters */
    {"%\xe9\n", SR_EPARSE, "line 1: invalid UTF-8"},
    {"node:\n  hostname: \xc0\xaf\n", SR_EPARSE, "line 2: invalid UTF-8"},
    {"a: \xed\xa0\x80\n", SR_EPARSE, "line 1: invalid UTF-8"},
    {"a: \xf4\x90\x80\x80\n", SR_EPARSE, "line 1: invalid UTF-8"},
    {"a: \xe2\x82\n", SR_EPARSE, "line 1: invalid UTF-8"},
    {"node:\n\n  hostname: a\x01\n", SR_EPARSE,
     "line 3: character U+0001 is not allowed in YAML"},
    {"a: \x7f\n", SR_EPARSE, "line 1: character U+007F is not allowed"},
    {"a: \xc2\x80\n", SR_EPARSE, "line 1: character U+0080 is not allowed"},
    {"a: \xef\xbf\xbe\n", SR_EPARSE, "character U+FFFE is not allowed"},
    /* libfyaml 0.7.12 misreads adjacent '' escapes: refused, not misread */
    {"smtp:\n  customer: 'a''''b'\n", SR_EPARSE,
     "line 2: adjacent '' escapes in a single-quoted string are not "
     "supported; use double quotes"},
    {"''''''''''''", SR_EPARSE, "line 1: adjacent '' escapes"},
    {"node:\n  'x''''y': 1\n", SR_EPARSE, "line 2: adjacent '' escapes"},
    /* ... and takes alias names with '/' for path expressions */
    {"node: &n/x {id: 2}\nlog:\n  level: */@\n", SR_EPARSE,
     "line 3: alias names containing '/' are not supported"},
    /* layout */
    {"- node\n", SR_EINVAL, "(top level): must be a mapping"},
    {"just a string\n", SR_EINVAL, "(top level): must be a mapping"},
    {"smpt:\n  listen: [127.0.0.1:25]\n", SR_EINVAL, "smpt: unknown key"},
    {"smtp:\n  lisen: [127.0.0.1:25]\n", SR_EINVAL,
     "smtp.lisen: unknown key (line 2)"},
    {"node:\n  listen: 1\n", SR_EINVAL, "node.listen: unknown key"},
    {"smtp: 5\n", SR_EINVAL, "smtp: must be a mapping"},
    {"raft: [1]\n", SR_EINVAL, "raft: must be a mapping"},
    {"? [a]\n: 1\n", SR_EINVAL, "(top level): keys must be strings"},
    {"node:\n  ? [a]\n  : 1\n", SR_EINVAL, "node: keys must be strings"},
    {"node:\n  id: *nope\n", SR_EINVAL, "node.id: alias to unknown anchor"},
    {"\"x\\x01\": 1\n", SR_EINVAL, "x?: unknown key"},
    /* integers */
    {"node:\n  id: 0\n", SR_EINVAL, RANGE("node.id", 1, 65535) " (line 2)"},
    {"node:\n  id: 65536\n", SR_EINVAL, RANGE("node.id", 1, 65535)},
    {"node:\n  id: -1\n", SR_EINVAL, RANGE("node.id", 1, 65535)},
    {"node:\n  id: '2'\n", SR_EINVAL, RANGE("node.id", 1, 65535)},
    {"node:\n  id: 1.5\n", SR_EINVAL, RANGE("node.id", 1, 65535)},
    {"node:\n  id: 0x10\n", SR_EINVAL, RANGE("node.id", 1, 65535)},
    {"node:\n  id: [1]\n", SR_EINVAL, RANGE("node.id", 1, 65535)},
    {"node:\n  id: 99999999999999999999999\n", SR_EINVAL,
     RANGE("node.id", 1, 65535)},
    {"node:\n  id: !!str 3\n", SR_EINVAL, RANGE("node.id", 1, 65535)},
    {"raft:\n  election_timeout_ms: 49\n", SR_EINVAL,
     RANGE("raft.election_timeout_ms", 50, 60000)},
    {"raft:\n  election_timeout_ms: 60001\n", SR_EINVAL,
     RANGE("raft.election_timeout_ms", 50, 60000)},
    {"raft:\n  heartbeat_ms: 0\n", SR_EINVAL,
     RANGE("raft.heartbeat_ms", 1, 60000)},
    {"raft:\n  heartbeat_ms: 300\n", SR_EINVAL,
     "raft.heartbeat_ms: must be less than raft.election_timeout_ms (300)"},
    {"raft:\n  snapshot_threshold: 0\n", SR_EINVAL,
     RANGE("raft.snapshot_threshold", 1, 1000000000)},
    {"raft:\n  snapshot_trailing: 1000000001\n", SR_EINVAL,
     RANGE("raft.snapshot_trailing", 0, 1000000000)},
    {"rpc:\n  timeout_ms: 0\n", SR_EINVAL, RANGE("rpc.timeout_ms", 1, 600000)},
    {"smtp:\n  commit_timeout_ms: 600001\n", SR_EINVAL,
     RANGE("smtp.commit_timeout_ms", 1, 600000)},
    {"smtp:\n  command_timeout_s: 0\n", SR_EINVAL,
     RANGE("smtp.command_timeout_s", 1, 3600)},
    {"smtp:\n  data_timeout_s: 3601\n", SR_EINVAL,
     RANGE("smtp.data_timeout_s", 1, 3600)},
    {"bodies:\n  copies: 256\n", SR_EINVAL, RANGE("bodies.copies", 0, 255)},
    /* booleans */
    {"raft:\n  bootstrap: yes\n", SR_EINVAL,
     "raft.bootstrap: must be true or false"},
    {"raft:\n  bootstrap: 'true'\n", SR_EINVAL,
     "raft.bootstrap: must be true or false"},
    {"raft:\n  bootstrap: 1\n", SR_EINVAL,
     "raft.bootstrap: must be true or false"},
    /* strings */
    {"log:\n  level: verbose\n", SR_EINVAL,
     "log.level: must be one of debug, info, warn, error"},
    {"log:\n  level: [info]\n", SR_EINVAL, "log.level: must be one of"},
    {"node:\n  hostname: 'bad host'\n", SR_EINVAL,
     "node.hostname: must be a host name"},
    {"node:\n  hostname: -x.example\n", SR_EINVAL,
     "node.hostname: must be a host name"},
    {"node:\n  data_dir: ''\n", SR_EINVAL,
     "node.data_dir: must be a non-empty string"},
    {"node:\n  data_dir: \"a\\0b\"\n", SR_EINVAL,
     "node.data_dir: must be a non-empty string"},
    {"smtp:\n  tls_cert: \"/etc/a\\nb\"\n  tls_key: /k\n", SR_EINVAL,
     "smtp.tls_cert: must be a non-empty string without control characters"},
    {"node:\n  data_dir: {a: b}\n", SR_EINVAL,
     "node.data_dir: must be a non-empty string"},
    {"smtp:\n  customer: 'a b'\n", SR_EINVAL,
     "smtp.customer: must be 1 to 64 characters"},
    {"smtp:\n  customer: "
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
     SR_EINVAL, "smtp.customer: must be 1 to 64 characters"},
    {"admin:\n  token: 'has space'\n", SR_EINVAL,
     "admin.token: must be 1 to 256 visible ASCII characters"},
    {"smtp:\n  tls_cert: /c.pem\n", SR_EINVAL,
     "smtp.tls_key: required when smtp.tls_cert is set"},
    {"smtp:\n  tls_key: /k.pem\n", SR_EINVAL,
     "smtp.tls_cert: required when smtp.tls_key is set"},
    {"admin:\n  tls_cert: /a.pem\n", SR_EINVAL,
     "admin.tls_key: required when admin.tls_cert is set"},
    {"admin:\n  tls_key: /a.key\n", SR_EINVAL,
     "admin.tls_cert: required when admin.tls_key is set"},
    {"admin:\n  tls_cert: ''\n  tls_key: /a.key\n", SR_EINVAL,
     "admin.tls_cert: must be a non-empty string without control "
     "characters"},
    {"cluster:\n  tls_ca: /ca.pem\n", SR_EINVAL,
     "cluster.tls_cert: required with the other cluster.tls_* keys"},
    {"cluster:\n  tls_ca: /ca.pem\n  tls_cert: /n.pem\n", SR_EINVAL,
     "cluster.tls_key: required with the other cluster.tls_* keys"},
    {"cluster:\n  tls_key: /n.key\n", SR_EINVAL,
     "cluster.tls_ca: required with the other cluster.tls_* keys"},
    {"cluster:\n  tls: on\n", SR_EINVAL, "cluster.tls: unknown key"},
    {"delivery:\n  tls: always\n", SR_EINVAL,
     "delivery.tls: must be none, may or require"},
    {"delivery:\n  retry_min_s: 600\n  retry_max_s: 60\n", SR_EINVAL,
     "delivery.retry_max_s: must be at least delivery.retry_min_s (600)"},
    {"delivery:\n  queue_high_water: 10\n  queue_low_water: 10\n", SR_EINVAL,
     "delivery.queue_low_water: must be less than delivery.queue_high_water "
     "(10)"},
    {"delivery:\n  port: 0\n", SR_EINVAL,
     "delivery.port: must be an integer between 1 and 65535"},
    /* addresses */
    {"raft:\n  listen: 127.0.0.1\n", SR_EINVAL,
     "raft.listen: must be host:port"},
    {"raft:\n  listen: ':7001'\n", SR_EINVAL, "raft.listen: must be host:port"},
    {"raft:\n  listen: 127.0.0.1:0\n", SR_EINVAL,
     "raft.listen: must be host:port"},
    {"raft:\n  listen: 127.0.0.1:65536\n", SR_EINVAL,
     "raft.listen: must be host:port"},
    {"rpc:\n  listen: '::1:7101'\n", SR_EINVAL,
     "rpc.listen: must be host:port"},
    {"rpc:\n  listen: '[::1]7101'\n", SR_EINVAL,
     "rpc.listen: must be host:port"},
    {"admin:\n  listen: '[nope]:80'\n", SR_EINVAL,
     "admin.listen: must be host:port"},
    {"admin:\n  listen: 8080\n", SR_EINVAL, "admin.listen: must be host:port"},
    /* smtp.listen */
    {"smtp:\n  listen: 127.0.0.1:25\n", SR_EINVAL,
     "smtp.listen: must be a list"},
    {"smtp:\n  listen: []\n", SR_EINVAL, "smtp.listen: must not be empty"},
    {"smtp:\n  listen: [127.0.0.1:25, 'x:y']\n", SR_EINVAL,
     "smtp.listen[1]: must be host:port"},
    {"smtp:\n  listen: [127.0.0.1:25, [a]]\n", SR_EINVAL,
     "smtp.listen[1]: must be host:port"},
    {"smtp:\n  listen: [127.0.0.1:25, 127.0.0.1:25]\n", SR_EINVAL,
     "smtp.listen[1]: duplicate address '127.0.0.1:25'"},
    /* raft.peers */
    {"raft:\n  peers: 1\n", SR_EINVAL, "raft.peers: must be a list"},
    {"raft:\n  peers: []\n", SR_EINVAL, "raft.peers: must not be empty"},
    {"raft:\n  peers: [5]\n", SR_EINVAL, "raft.peers[0]: must be a mapping"},
    {"raft:\n  peers:\n    - {id: 1, raft_address: a:1, rpc_address: a:2}\n"
     "    - {id: 0, raft_address: b:1, rpc_address: b:2}\n",
     SR_EINVAL, RANGE("raft.peers[1].id", 1, 65535) " (line 4)"},
    {"raft:\n  peers:\n    - {id: 1, raft_adress: a:1, rpc_address: a:2}\n",
     SR_EINVAL, "raft.peers[0].raft_adress: unknown key"},
    {"raft:\n  peers:\n    - {id: 1, rpc_address: a:2}\n", SR_EINVAL,
     "raft.peers[0].raft_address: required"},
    {"raft:\n  peers:\n    - {id: 1, raft_address: a:1}\n", SR_EINVAL,
     "raft.peers[0].rpc_address: required"},
    {"raft:\n  peers:\n    - {raft_address: a:1, rpc_address: a:2}\n",
     SR_EINVAL, "raft.peers[0].id: required"},
    {"raft:\n  peers:\n    - {id: 1, raft_address: a:1, rpc_address: a}\n",
     SR_EINVAL, "raft.peers[0].rpc_address: must be host:port"},
    {"raft:\n  peers:\n    - {id: 1, raft_address: a:1, rpc_address: a:2}\n"
     "    - {id: 1, raft_address: b:1, rpc_address: b:2}\n",
     SR_EINVAL, "raft.peers[1].id: duplicate id 1 (also raft.peers[0])"},
    {"raft:\n  peers:\n    - {id: 1, raft_address: a:1, rpc_address: a:2}\n"
     "    - {id: 2, raft_address: a:1, rpc_address: b:2}\n",
     SR_EINVAL, "raft.peers[1].raft_address: duplicate address 'a:1'"},
    {"node: {id: 4}\nraft:\n  peers:\n"
     "    - {id: 1, raft_address: a:1, rpc_address: a:2}\n",
     SR_EINVAL, "raft.peers: must include this node (node.id 4)"},
};

static void test_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof err_cases / sizeof *err_cases; i++) {
        const struct err_case *tc = &err_cases[i];
        struct sr_config c;
        memset(&c, 0xa5, sizeof c); /* output is treated as uninitialised */
        char err[SR_ERRMSG_SIZE] = "";
        int rc = load(tc->yaml, &c, err, sizeof err);
        if (rc != tc->want_rc || strstr(err, tc->want_err) == NULL)
            fail_msg("case %zu %s: rc %d (want %d), err \"%s\" (want \"%s\")",
                     i, tc->yaml, rc, tc->want_rc, err, tc->want_err);
        assert_true(is_zeroed(&c));
        config_free(&c);
    }
}

/* A NULL or zero-length err buffer is allowed: only the code comes back. */
static void test_no_err_buffer(void **state)
{
    (void)state;
    struct sr_config c;
    assert_int_equal(load("smtp: 5\n", &c, NULL, 0), SR_EINVAL);
    char err[4] = "xyz";
    assert_int_equal(load("node: [\n", &c, err, 0), SR_EPARSE);
    assert_string_equal(err, "xyz");
    assert_int_equal(load("node: {id: 0}\n", &c, err, sizeof err), SR_EINVAL);
    assert_string_equal(err, "nod"); /* truncated, terminated */
}

/* NUL is not allowed in a YAML stream; the length, not a terminator, says
 * where the input ends. */
static void test_lengths(void **state)
{
    (void)state;
    struct sr_config c;
    char err[SR_ERRMSG_SIZE] = "";
    static const char nul[] = "node:\n  id: 2\0\n";
    assert_int_equal(
        config_load_string(nul, sizeof nul - 1, &c, err, sizeof err),
        SR_EPARSE);
    assert_string_equal(err, "line 2: character U+0000 is not allowed in YAML");
    assert_true(is_zeroed(&c));

    static const char longer[] = "node:\n  id: 2\ngarbage: [";
    assert_int_equal(config_load_string(longer, 14, &c, err, sizeof err), 0);
    assert_int_equal(c.node_id, 2);
    config_free(&c);
}

/* ---- files --------------------------------------------------------------- */

static void write_tmp(char *path, const char *text)
{
    strcpy(path, "/tmp/test_config_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
}

static void test_files(void **state)
{
    (void)state;
    char path[64], err[SR_ERRMSG_SIZE];
    struct sr_config c;

    write_tmp(path, full_yaml);
    assert_int_equal(config_load(path, &c, err, sizeof err), 0);
    assert_int_equal(c.node_id, 2);
    assert_int_equal(c.n_peers, 3);
    config_free(&c);
    unlink(path);

    write_tmp(path, "node:\n  id: 1\nsmtp:\n  lisen: []\n");
    assert_int_equal(config_load(path, &c, err, sizeof err), SR_EINVAL);
    /* The caller prints the path; the message names the key and line. */
    assert_string_equal(err, "smtp.lisen: unknown key (line 4)");
    assert_true(is_zeroed(&c));
    unlink(path);

    write_tmp(path, "");
    assert_int_equal(config_load(path, &c, err, sizeof err), 0);
    check_defaults(&c);
    config_free(&c);
    unlink(path);

    assert_int_equal(config_load("/nonexistent/sr.yaml", &c, err, sizeof err),
                     SR_EIO);
    assert_string_equal(err, "No such file or directory");
    assert_true(is_zeroed(&c));
    assert_int_equal(config_load("/tmp", &c, err, sizeof err), SR_EIO);
    assert_non_null(strstr(err, "not a regular file"));
}

/* ---- config_split_address ------------------------------------------------ */

struct addr_case {
    const char *addr;
    int want_rc;
    const char *want_host;
    int want_port;
};

static const struct addr_case addr_cases[] = {
    {"127.0.0.1:25", 0, "127.0.0.1", 25},
    {"localhost:1", 0, "localhost", 1},
    {"relay-1.example_x.net:65535", 0, "relay-1.example_x.net", 65535},
    {"[::1]:2525", 0, "::1", 2525},
    {"[2001:db8::1]:7001", 0, "2001:db8::1", 7001},
    {"[::ffff:10.0.0.1]:80", 0, "::ffff:10.0.0.1", 80},
    {"0.0.0.0:008080", SR_EINVAL, NULL, 0}, /* six digits are too many */
    {"0.0.0.0:0080", 0, "0.0.0.0", 80},
    {"127.0.0.1", SR_EINVAL, NULL, 0},
    {"127.0.0.1:", SR_EINVAL, NULL, 0},
    {":25", SR_EINVAL, NULL, 0},
    {"127.0.0.1:0", SR_EINVAL, NULL, 0},
    {"127.0.0.1:65536", SR_EINVAL, NULL, 0},
    {"127.0.0.1:-1", SR_EINVAL, NULL, 0},
    {"127.0.0.1:+25", SR_EINVAL, NULL, 0},
    {"127.0.0.1:25 ", SR_EINVAL, NULL, 0},
    {"::1:25", SR_EINVAL, NULL, 0},
    {"[::1]", SR_EINVAL, NULL, 0},
    {"[::1]25", SR_EINVAL, NULL, 0},
    {"[]:25", SR_EINVAL, NULL, 0},
    {"[host]:25", SR_EINVAL, NULL, 0},
    {"[::1:25", SR_EINVAL, NULL, 0},
    {"a b:25", SR_EINVAL, NULL, 0},
    {"", SR_EINVAL, NULL, 0},
};

static void test_split_address(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof addr_cases / sizeof *addr_cases; i++) {
        const struct addr_case *tc = &addr_cases[i];
        char host[64] = "";
        int port = -1;
        int rc = config_split_address(tc->addr, host, sizeof host, &port);
        if (rc != tc->want_rc)
            fail_msg("'%s': rc %d, want %d", tc->addr, rc, tc->want_rc);
        if (rc == 0) {
            assert_string_equal(host, tc->want_host);
            assert_int_equal(port, tc->want_port);
        }
    }
    char small[4];
    int port;
    assert_int_equal(config_split_address("abcd:1", small, sizeof small, &port),
                     SR_EINVAL);
    assert_int_equal(config_split_address("abc:1", small, sizeof small, &port),
                     0);
    assert_string_equal(small, "abc");
    assert_int_equal(config_split_address(NULL, small, sizeof small, &port),
                     SR_EINVAL);
    assert_int_equal(config_split_address("a:1", NULL, 0, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_empty_inputs),
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_no_err_buffer),
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_split_address),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
