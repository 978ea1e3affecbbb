/* node.c - wiring and lifecycle of one smartrelayd (see node.h). */
#include "node/node.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "node/errors.h"
#include "node/log.h"
#include "node/node_int.h"
#include "queue/dqueue.h"

/* Increments the boot counter in DATA_DIR/boot and fsyncs it: it makes
 * message codes unique across restarts (node/code.h). */
static int next_boot(const char *dir, unsigned *boot, char *err, size_t errlen)
{
    char path[1024], tmp[1040];
    snprintf(path, sizeof path, "%s/boot", dir);
    snprintf(tmp, sizeof tmp, "%s/boot.tmp", dir);
    unsigned b = 0;
    FILE *f = fopen(path, "r");
    if (f) {
        if (fscanf(f, "%u", &b) != 1)
            b = 0;
        fclose(f);
    }
    b++;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0640);
    if (fd < 0)
        return sr_err(err, errlen, SR_EIO, "node.data_dir %s: %s", dir,
                      strerror(errno));
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%u\n", b);
    if (write(fd, buf, (size_t)len) != len || fsync(fd) != 0) {
        close(fd);
        return sr_err(err, errlen, SR_EIO, "%s: %s", tmp, strerror(errno));
    }
    close(fd);
    if (rename(tmp, path) != 0)
        return sr_err(err, errlen, SR_EIO, "%s: %s", path, strerror(errno));
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    *boot = b;
    return 0;
}

static int mkdirs(const char *dir)
{
    char p[1024];
    snprintf(p, sizeof p, "%s", dir);
    for (char *s = p + 1; *s; s++) {
        if (*s == '/') {
            *s = '\0';
            mkdir(p, 0750);
            *s = '/';
        }
    }
    return mkdir(p, 0750) == 0 || errno == EEXIST ? 0 : -1;
}

static void load_policy(struct sr_node *n)
{
    char *json = NULL;
    struct policy *p = NULL;
    char err[SR_ERRMSG_SIZE];
    if (queue_store_get_policy(n->store, &json) == 0) {
        if (policy_parse_json(json, strlen(json), &p, err, sizeof err) != 0)
            LOG_ERROR("event=policy_invalid error=\"%s\"", err);
        free(json);
    }
    if (p == NULL) {
        const char *def = policy_default_json();
        if (policy_parse_json(def, strlen(def), &p, err, sizeof err) != 0) {
            fprintf(stderr, "smartrelayd: built-in policy: %s\n", err);
            abort();
        }
    }
    policy_free(n->policy);
    n->policy = p;
    if (n->smtp != NULL)
        smtp_server_apply_policy(n->smtp);
}

static void on_apply(void *ud, uint64_t index, const Sr__Entry *e,
                     const int *statuses)
{
    struct sr_node *n = ud;
    (void)index;
    if (e == NULL) { /* snapshot restored */
        load_policy(n);
        if (n->repair)
            repair_kick(n->repair);
        return;
    }
    for (size_t i = 0; i < e->n_ops; i++) {
        if (e->ops[i]->op_case == SR__OP__OP_POLICY && statuses[i] == 0) {
            load_policy(n);
            LOG_INFO("event=policy_applied index=%llu",
                     (unsigned long long)index);
        }
        if ((e->ops[i]->op_case == SR__OP__OP_ACCEPT ||
             e->ops[i]->op_case == SR__OP__OP_SHARD_ASSIGN) &&
            statuses[i] == 0)
            deliver_kick(n->deliver);
        if (e->ops[i]->op_case == SR__OP__OP_QUEUE_ACTION && statuses[i] > 0)
            deliver_kick(n->deliver);
    }
}

static const struct policy *current_policy(void *ud)
{
    return ((struct sr_node *)ud)->policy;
}

/* Backpressure with hysteresis: MAIL is refused (452 4.3.1) once the
 * pending recipients reach the high-water mark, until they are back under
 * the low-water mark; the same per customer with its max_queued (low water
 * 90 % of it). The counts are replicated state, so every node agrees. */
static bool node_accepting(void *ud, const char *customer)
{
    struct sr_node *n = ud;
    uint64_t counts[RCPT_STATE_MAX], msgs;
    queue_store_counts(n->store, counts, &msgs);
    uint64_t pending = counts[RCPT_QUEUED] + counts[RCPT_DEFERRED];
    bool full = n->backlog_full ? pending >= n->cfg->queue_low_water
                                : pending >= n->cfg->queue_high_water;
    if (full != n->backlog_full)
        LOG_WARN("event=%s pending=%llu",
                 full ? "backlog_full" : "backlog_drained",
                 (unsigned long long)pending);
    n->backlog_full = full;
    if (full)
        return false;
    const struct policy_customer *cu = policy_find(n->policy, customer);
    struct full_customer **fp = &n->full;
    while (*fp && strcmp((*fp)->name, customer) != 0)
        fp = &(*fp)->next;
    if (cu == NULL || cu->max_queued == 0) {
        if (*fp) {
            struct full_customer *f = *fp;
            *fp = f->next;
            free(f);
        }
        return true;
    }
    uint64_t mine = dqueue_customer_pending(n->store, customer);
    if (*fp == NULL && mine >= cu->max_queued) {
        struct full_customer *f = calloc(1, sizeof *f);
        if (f != NULL) {
            snprintf(f->name, sizeof f->name, "%s", customer);
            f->next = n->full;
            n->full = f;
            LOG_WARN("event=backlog_full customer=%s pending=%llu", customer,
                     (unsigned long long)mine);
        }
        return false;
    }
    if (*fp != NULL) {
        if (mine >= (uint64_t)cu->max_queued * 9 / 10)
            return false;
        struct full_customer *f = *fp;
        *fp = f->next;
        free(f);
        LOG_WARN("event=backlog_drained customer=%s pending=%llu", customer,
                 (unsigned long long)mine);
    }
    return true;
}

static void on_rpc(void *ud, struct rpc_call *call, const Sr__Rpc *req)
{
    struct sr_node *n = ud;
    switch (req->body_case) {
    case SR__RPC__BODY_PROPOSE:
        rnode_handle_propose(n->rn, call, req->propose);
        break;
    case SR__RPC__BODY_BODY_PUT:
        ingest_handle_body_put(n->ingest, call, req->body_put);
        break;
    case SR__RPC__BODY_BODY_GET:
        ingest_handle_body_get(n->ingest, call, req->body_get);
        break;
    case SR__RPC__BODY_ADMIN:
        admin_rpc(n, call, req->admin);
        break;
    default: {
        Sr__Rpc resp = SR__RPC__INIT;
        rpc_reply(call, &resp);
        break;
    }
    }
}

/* Flushes the state store (opened MDB_NOSYNC) off the loop. */
static void sync_work(uv_work_t *w)
{
    queue_store_sync(w->data);
}

static void sync_done(uv_work_t *w, int status)
{
    (void)status;
    free(w);
}

static void on_sync(uv_timer_t *t)
{
    struct sr_node *n = t->data;
    uv_work_t *w = malloc(sizeof *w);
    w->data = n->store;
    if (uv_queue_work(&n->loop, w, sync_work, sync_done) != 0)
        free(w);
}

/* A server TLS context for the `section` (admin, tracking) whose
 * tls_cert/tls_key are cert and key; *out stays NULL when cert is NULL. */
static int server_tls_load(const char *section, const char *cert,
                           const char *key, struct tls_ctx **out, char *err,
                           size_t errlen)
{
    *out = NULL;
    if (cert == NULL)
        return 0;
    char e[SR_ERRMSG_SIZE] = "";
    int rc = tls_ctx_new_server(cert, key, out, e, sizeof e);
    if (rc == 0)
        return 0;
    /* tls.c names the smtp keys in its message: keep only its reason. */
    static const char smtp_keys[] = "smtp.tls_cert/smtp.tls_key: ";
    const char *why = e[0] != '\0' ? e : "out of memory";
    if (strncmp(e, smtp_keys, sizeof smtp_keys - 1) == 0)
        why = e + sizeof smtp_keys - 1;
    /* The reason first: a long path must not cut it off. */
    return sr_err(err, errlen, rc, "%s.tls_cert/%s.tls_key: %s (%s)", section,
                  section, why, cert);
}

static void part_closed(void *arg)
{
    struct sr_node *n = arg;
    n->pending_close--;
}

static void stop(struct sr_node *n)
{
    if (n->stopping)
        return;
    n->stopping = 1;
    LOG_INFO("event=stopping");
    uv_signal_stop(&n->sigterm);
    uv_signal_stop(&n->sigint);
    uv_close((uv_handle_t *)&n->sigterm, NULL);
    uv_close((uv_handle_t *)&n->sigint, NULL);
    uv_timer_stop(&n->sync);
    uv_close((uv_handle_t *)&n->sync, NULL);
    n->pending_close = 3;
    admin_stop(n);
    if (n->floatip != NULL) {
        /* Give the address up before the node goes. */
        n->pending_close++;
        floatip_stop(n->floatip, part_closed, n);
        n->floatip = NULL;
    }
    repair_stop(n->repair);
    n->repair = NULL;
    deliver_stop(n->deliver);
    n->deliver = NULL;
    shards_stop(n->shards);
    n->shards = NULL;
    smtp_server_close(n->smtp, part_closed, n);
    n->smtp = NULL; /* freed when closed; policy changes no longer reach it */
    http_server_close(n->admin, part_closed, n);
    if (n->track != NULL) {
        n->pending_close++;
        http_server_close(n->track, part_closed, n);
        n->track = NULL;
    }
    ingest_free(n->ingest);
    rnode_close(n->rn, part_closed, n);
    rpc_close(n->rpc);
    body_store_close(n->bodies);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct sr_node *n = s->data;
    LOG_INFO("event=signal signal=%d", signum);
    stop(n);
}

int node_start(const struct sr_config *cfg, struct sr_node **out, char *err,
               size_t errlen)
{
    /* A peer that dies while we write to it must not kill us. */
    signal(SIGPIPE, SIG_IGN);
    struct sr_node *n = calloc(1, sizeof *n);
    if (n == NULL)
        return SR_ENOMEM;
    n->cfg = cfg;
    uv_loop_init(&n->loop);
    if (mkdirs(cfg->data_dir) != 0)
        return sr_err(err, errlen, SR_EIO, "node.data_dir %s: %s",
                      cfg->data_dir, strerror(errno));
    int rc = next_boot(cfg->data_dir, &n->boot, err, errlen);
    if (rc != 0)
        return rc;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/state", cfg->data_dir);
    if ((rc = queue_store_open(dir, &n->store, err, errlen)) != 0)
        return rc;
    load_policy(n);
    snprintf(dir, sizeof dir, "%s/bodies", cfg->data_dir);
    unsigned window = cfg->body_group_commit_us == SR_GROUP_COMMIT_AUTO
                          ? SR_GROUP_COMMIT_SINGLE_US
                          : cfg->body_group_commit_us;
    if ((rc = body_store_open(&n->loop, dir, window, &n->bodies, err,
                              errlen)) != 0)
        return rc;
    struct rpc_tls tls = {cfg->cluster_tls_ca, cfg->cluster_tls_cert,
                          cfg->cluster_tls_key};
    if (cfg->cluster_tls_ca == NULL)
        LOG_WARN("event=cluster_plaintext reason=\"no cluster.tls_* in the "
                 "config: Raft and node RPC run unauthenticated, in clear\"");
    if ((rc = rpc_start(&n->loop, cfg->node_id, cfg->rpc_listen,
                        cfg->cluster_tls_ca ? &tls : NULL, on_rpc, n, &n->rpc,
                        err, errlen)) != 0)
        return rc;
    if ((rc = rnode_start(&n->loop, cfg, n->store, n->rpc, &n->rn, err,
                          errlen)) != 0)
        return rc;
    rnode_set_apply_hook(n->rn, on_apply, n);
    if ((rc = ingest_new(&n->loop, cfg, n->boot, n->bodies, n->rn, n->rpc,
                         &n->ingest)) != 0)
        return rc;
    if ((rc = floatip_start(&n->loop, cfg, n->rn, &n->floatip, err, errlen)) !=
        0)
        return rc;
    if ((rc = repair_start(&n->loop, cfg, n->store, n->bodies, n->rn, n->rpc,
                           &n->repair)) != 0)
        return rc;
    if ((rc = shards_start(&n->loop, cfg->node_id, n->store, n->rn,
                           &n->shards)) != 0)
        return rc;
    struct deliver_deps dd = {&n->loop,       cfg,    n->store,  n->bodies,
                              n->rn,          n->rpc, n->shards, n->ingest,
                              current_policy, n};
    if ((rc = deliver_start(&dd, &n->deliver, err, errlen)) != 0)
        return rc;
    shards_set_busy(n->shards, deliver_busy, n->deliver);
    if (cfg->tls_cert && cfg->tls_cert[0] &&
        (rc = tls_ctx_new_server(cfg->tls_cert, cfg->tls_key, &n->tls, err,
                                 errlen)) != 0)
        return rc;
    struct smtp_server_deps deps = {&n->loop,       cfg, n->ingest,     n->tls,
                                    current_policy, n,   node_accepting};
    if ((rc = smtp_server_start(&deps, &n->smtp, err, errlen)) != 0)
        return rc;
    struct tls_ctx *admin_tls;
    if ((rc = server_tls_load("admin", cfg->admin_tls_cert, cfg->admin_tls_key,
                              &admin_tls, err, errlen)) != 0)
        return rc;
    if ((rc = http_server_start(&n->loop, cfg->admin_listen, admin_http, n,
                                &n->admin, err, errlen)) != 0) {
        tls_ctx_free(admin_tls);
        return rc;
    }
    http_server_set_limits(n->admin, 0, 0, cfg->admin_idle_timeout_s * 1000, 0);
    if (cfg->tracking_listen != NULL) {
        if ((rc = http_server_start(&n->loop, cfg->tracking_listen, track_http,
                                    n, &n->track, err, errlen)) != 0) {
            tls_ctx_free(admin_tls);
            return rc;
        }
        /* small requests only; a link click must not hold a connection */
        http_server_set_limits(n->track, 8192, 4096, 10000, 1024);
        struct tls_ctx *tt;
        if ((rc = server_tls_load("tracking", cfg->tracking_tls_cert,
                                  cfg->tracking_tls_key, &tt, err, errlen)) !=
            0) {
            tls_ctx_free(admin_tls);
            return rc;
        }
        if (tt != NULL)
            http_server_set_tls(n->track, tt);
        LOG_INFO("event=tracking_listen listen=%s", cfg->tracking_listen);
    }
    if (admin_tls != NULL) {
        /* Before the loop runs: no connection is accepted in plaintext. */
        http_server_set_tls(n->admin, admin_tls);
        LOG_INFO("event=admin_tls listen=%s cert=\"%s\"", cfg->admin_listen,
                 cfg->admin_tls_cert);
    } else {
        LOG_INFO("event=admin_plaintext listen=%s reason=\"no admin.tls_cert "
                 "in the config\"",
                 cfg->admin_listen);
    }
    uv_signal_init(&n->loop, &n->sigterm);
    uv_signal_init(&n->loop, &n->sigint);
    n->sigterm.data = n->sigint.data = n;
    uv_signal_start(&n->sigterm, on_signal, SIGTERM);
    uv_signal_start(&n->sigint, on_signal, SIGINT);
    uv_timer_init(&n->loop, &n->sync);
    n->sync.data = n;
    uv_timer_start(&n->sync, on_sync, 1000, 1000);
    LOG_INFO("event=started boot=%u raft=%s rpc=%s smtp=%s admin=%s "
             "data_dir=%s",
             n->boot, cfg->raft_listen, cfg->rpc_listen,
             cfg->n_smtp_listen ? cfg->smtp_listen[0] : "-", cfg->admin_listen,
             cfg->data_dir);
    *out = n;
    return 0;
}

int node_run(struct sr_node *n)
{
    uv_run(&n->loop, UV_RUN_DEFAULT);
    queue_store_close(n->store);
    policy_free(n->policy);
    tls_ctx_free(n->tls);
    int rc = uv_loop_close(&n->loop);
    if (rc != 0)
        LOG_WARN("event=loop_not_clean error=%s", uv_strerror(rc));
    LOG_INFO("event=stopped");
    while (n->full) {
        struct full_customer *f = n->full;
        n->full = f->next;
        free(f);
    }
    free(n);
    return 0;
}
