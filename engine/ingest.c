/* ingest.c - the accept pipeline (see ingest.h). */
#include "engine/ingest.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "node/clock.h"
#include "node/errors.h"
#include "node/log.h"

#define MAX_INFLIGHT 20000
#define MAX_INFLIGHT_BYTES ((size_t)2 << 30)
#define MAX_VOTERS 16
/* Bodies go first to just enough peers for a majority; the other voters
 * get them only if those have not answered in time (or failed). Every body
 * is then written on a bare majority of the nodes in the common case, not
 * on all of them. "In time" is three times the recent push round trip
 * (an EWMA), within [HEDGE_MIN_MS, HEDGE_MAX_MS]: a fixed 20 ms made a
 * loaded cluster hedge most 100 KB bodies (their round trip was about
 * 25 ms), so all three nodes wrote them and the load rose further. A
 * peer that is down fails its push at once; the hedge is for one that
 * hangs. */
#define HEDGE_MIN_MS 20
#define HEDGE_MAX_MS 500
#define HEDGE_TICK_MS 5

struct ingest {
    uv_loop_t *loop;
    const struct sr_config *cfg;
    struct body_store *bodies;
    struct rnode *rn;
    struct rpc *rpc;
    struct code_gen codes;
    uv_timer_t sweep;
    uv_timer_t hedge;
    unsigned rr; /* rotates the first peers asked, to spread the load */
    int closed;  /* timers closed so far */
    struct ingest_job *jobs; /* doubly linked, for the deadline sweep */
    unsigned inflight;
    size_t inflight_bytes;
    unsigned window_us; /* the body store's group commit window, when auto */
    double push_rtt_ms; /* EWMA of successful body push round trips */
};

/* With bodies.group_commit_us unset, the window follows the membership. A
 * single node has its own sync alone on the path to 250, so a long window
 * is latency the client waits for (measured: 3 ms cost a single node 19 %
 * of its rate at 20 sessions). In a cluster the local sync overlaps with
 * the push to a peer, and fewer, larger syncs save the CPU the three
 * nodes share (3 ms: 11 % more messages at 20 sessions, 18 % at 100, a
 * quarter less CPU per message). */
static void follow_membership(struct ingest *in, unsigned voters)
{
    if (in->cfg->body_group_commit_us != SR_GROUP_COMMIT_AUTO)
        return;
    unsigned want =
        voters > 1 ? SR_GROUP_COMMIT_CLUSTER_US : SR_GROUP_COMMIT_SINGLE_US;
    if (want != in->window_us) {
        in->window_us = want;
        body_store_set_window(in->bodies, want);
    }
}

/* Owned by struct ingest from submit until `refs` drops to zero. */
struct ingest_job {
    struct ingest_job *next, *prev;
    struct ingest *in;
    char code[CODE_MAX];
    char *customer, *mail_from, *helo, *client_addr;
    char *dsn_for_code; /* a DSN: see MessageAccept */
    unsigned dsn_for_rcpt;
    char **rcpts;
    unsigned n_rcpts;
    uint8_t *body;
    size_t len;
    uint8_t digest[SHA256_DIGEST_LENGTH];
    uint64_t accepted_ms;
    uint64_t start;      /* uv_now */
    uint64_t t_proposed; /* uv_now when the holders were enough */
    uint64_t deadline;
    uint64_t holders[MAX_VOTERS];
    unsigned n_holders, need;
    uint64_t peers[MAX_VOTERS]; /* other voters, in the order to ask */
    unsigned n_peers, n_sent;
    uint64_t hedge_at; /* uv_now() after which every peer is asked */
    unsigned refs;     /* outstanding puts/RPCs/proposal + the client */
    int proposed;
    int answered;
    ingest_cb cb;
    void *ud;
};

static void job_unref(struct ingest_job *j)
{
    if (--j->refs > 0)
        return;
    struct ingest *in = j->in;
    if (j->prev)
        j->prev->next = j->next;
    else
        in->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    in->inflight--;
    in->inflight_bytes -= j->len;
    for (unsigned i = 0; i < j->n_rcpts; i++)
        free(j->rcpts[i]);
    free(j->rcpts);
    free(j->customer);
    free(j->mail_from);
    free(j->helo);
    free(j->client_addr);
    free(j->dsn_for_code);
    free(j->body);
    free(j);
}

static void answer(struct ingest_job *j, int status)
{
    if (j->answered)
        return;
    j->answered = 1;
    uint64_t now = uv_now(j->in->loop);
    double delay = (double)(now - j->start) / 1000.0;
    /* delays=bodies/commit, as Postfix's delays=: time to get the body on
     * enough holders, then time for the record to commit. */
    double d_body =
        j->t_proposed ? (double)(j->t_proposed - j->start) / 1e3 : delay;
    double d_commit = j->t_proposed ? (double)(now - j->t_proposed) / 1e3 : 0;
    if (status == 0)
        LOG_INFO("code=%s event=accepted from=<%s> nrcpt=%u size=%zu "
                 "holders=%u delay=%.3f delays=%.3f/%.3f",
                 j->code, j->mail_from, j->n_rcpts, j->len, j->n_holders, delay,
                 d_body, d_commit);
    else
        LOG_WARN("code=%s event=not_accepted error=%s holders=%u/%u "
                 "delay=%.3f",
                 j->code, sr_strerror(status), j->n_holders, j->need, delay);
    if (j->cb)
        j->cb(j->ud, status, j->code);
    job_unref(j); /* the client's reference */
}

static void proposed_cb(void *ud, int status, uint64_t index)
{
    struct ingest_job *j = ud;
    (void)index;
    /* SR_EEXIST: a retried proposal found its own earlier commit. */
    answer(j, status == 0 || status == SR_EEXIST ? 0 : status);
    job_unref(j);
}

static void maybe_propose(struct ingest_job *j)
{
    if (j->proposed || j->answered || j->n_holders < j->need)
        return;
    j->proposed = 1;
    j->t_proposed = uv_now(j->in->loop);
    Sr__MessageAccept a = SR__MESSAGE_ACCEPT__INIT;
    a.code = j->code;
    a.customer = j->customer;
    a.mail_from = j->mail_from;
    a.rcpts = j->rcpts;
    a.n_rcpts = j->n_rcpts;
    a.size = j->len;
    a.digest.data = j->digest;
    a.digest.len = sizeof j->digest;
    a.accepted_by = j->in->cfg->node_id;
    a.holders = j->holders;
    a.n_holders = j->n_holders;
    a.accepted_at_ms = j->accepted_ms;
    /* The client waits until deadline; leave a margin for the answer to
     * travel back from the leader. */
    a.deadline_ms = j->accepted_ms + j->in->cfg->commit_timeout_ms -
                    j->in->cfg->commit_timeout_ms / 5;
    a.helo = j->helo;
    a.client_addr = j->client_addr;
    if (j->dsn_for_code) {
        a.dsn_for_code = j->dsn_for_code;
        a.dsn_for_rcpt = j->dsn_for_rcpt;
    }
    Sr__Op op = SR__OP__INIT;
    op.op_case = SR__OP__OP_ACCEPT;
    op.accept = &a;
    uint64_t now = uv_now(j->in->loop);
    unsigned left = j->deadline > now ? (unsigned)(j->deadline - now) : 1;
    j->refs++;
    int rc = rnode_propose(j->in->rn, &op, left, proposed_cb, j);
    if (rc != 0) {
        j->refs--;
        answer(j, rc);
    }
}

static void add_holder(struct ingest_job *j, uint64_t id)
{
    for (unsigned i = 0; i < j->n_holders; i++)
        if (j->holders[i] == id)
            return;
    if (j->n_holders < MAX_VOTERS)
        j->holders[j->n_holders++] = id;
    maybe_propose(j);
}

static void push_more(struct ingest_job *j, unsigned count);

static void local_put_cb(void *ud, int status)
{
    struct ingest_job *j = ud;
    if (status == 0)
        add_holder(j, j->in->cfg->node_id);
    else {
        LOG_ERROR("code=%s event=body_store_failed error=%s", j->code,
                  sr_strerror(status));
        if (!j->proposed && !j->answered)
            push_more(j, 1); /* another peer instead of us */
    }
    job_unref(j);
}

struct push {
    struct ingest_job *job;
    uint64_t peer;
    uint64_t sent; /* uv_now() */
};

static void push_cb(void *ud, int status, const Sr__Rpc *resp)
{
    struct push *p = ud;
    struct ingest_job *j = p->job;
    if (status == 0 && resp->body_case == SR__RPC__BODY_BODY_RESP &&
        resp->body_resp->status == 0) {
        struct ingest *in = j->in;
        double rtt = (double)(uv_now(in->loop) - p->sent);
        in->push_rtt_ms = in->push_rtt_ms * 0.9 + rtt * 0.1;
        add_holder(j, p->peer);
    } else {
        LOG_DEBUG("code=%s event=body_push_failed peer=%llu error=%s", j->code,
                  (unsigned long long)p->peer,
                  status ? sr_strerror(status) : "refused");
        if (!j->proposed && !j->answered)
            push_more(j, 1);
    }
    free(p);
    job_unref(j);
}

/* Sends the body to the next `count` peers not asked yet. */
static void push_more(struct ingest_job *j, unsigned count)
{
    struct ingest *in = j->in;
    Sr__BodyPut put = SR__BODY_PUT__INIT;
    put.code = j->code;
    put.body.data = j->body;
    put.body.len = j->len;
    put.digest.data = j->digest;
    put.digest.len = sizeof j->digest;
    Sr__Rpc rpc = SR__RPC__INIT;
    rpc.body_case = SR__RPC__BODY_BODY_PUT;
    rpc.body_put = &put;
    while (count > 0 && j->n_sent < j->n_peers) {
        uint64_t id = j->peers[j->n_sent++];
        char addr[128];
        if (rnode_rpc_address(in->rn, id, addr, sizeof addr) != 0)
            continue;
        struct push *p = malloc(sizeof *p);
        if (p == NULL)
            return;
        p->job = j;
        p->peer = id;
        p->sent = uv_now(in->loop);
        j->refs++;
        if (rpc_send(in->rpc, id, addr, &rpc, in->cfg->commit_timeout_ms,
                     push_cb, p) != 0) {
            j->refs--;
            free(p);
            continue;
        }
        count--;
    }
}

static void hedge(uv_timer_t *t);

static char *dup0(const char *s)
{
    return strdup(s ? s : "");
}

static size_t received_header(char *out, size_t cap,
                              const struct smtp_envelope *env,
                              const struct ingest_meta *meta, const char *host,
                              const char *code)
{
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    const char *with = env->smtputf8 ? (meta->tls ? "UTF8SMTPS" : "UTF8SMTP")
                                     : (meta->tls ? "ESMTPS" : "ESMTP");
    int n;
    if (env->n_rcpts == 1)
        n = snprintf(out, cap,
                     "Received: from %.200s ([%s])\r\n\tby %s (SmartRelay) "
                     "with %s id %s\r\n\tfor <%.300s>; %s\r\n",
                     meta->client_name ? meta->client_name : "unknown",
                     meta->client_addr, host, with, code, env->rcpts[0], date);
    else
        n = snprintf(out, cap,
                     "Received: from %.200s ([%s])\r\n\tby %s (SmartRelay) "
                     "with %s id %s; %s\r\n",
                     meta->client_name ? meta->client_name : "unknown",
                     meta->client_addr, host, with, code, date);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

int ingest_submit(struct ingest *in, const struct smtp_envelope *env,
                  const struct ingest_meta *meta, const char *body, size_t len,
                  ingest_cb cb, void *ud, struct ingest_job **out)
{
    if (in->inflight >= MAX_INFLIGHT ||
        in->inflight_bytes + len > MAX_INFLIGHT_BYTES)
        return SR_EFULL;
    uint64_t voters[MAX_VOTERS];
    unsigned nv = rnode_voters(in->rn, voters, MAX_VOTERS);
    if (nv == 0)
        return SR_ENOTLEADER; /* not (yet) part of a cluster */
    follow_membership(in, nv);
    struct ingest_job *j = calloc(1, sizeof *j);
    if (j == NULL)
        return SR_ENOMEM;
    j->in = in;
    j->accepted_ms = sr_wall_ms();
    code_next(&in->codes, j->accepted_ms, j->code);
    char hdr[1024];
    size_t hl =
        received_header(hdr, sizeof hdr, env, meta, in->cfg->hostname, j->code);
    j->len = hl + len;
    j->body = malloc(j->len ? j->len : 1);
    j->rcpts = calloc(env->n_rcpts ? env->n_rcpts : 1, sizeof *j->rcpts);
    if (j->body == NULL || j->rcpts == NULL) {
        free(j->body);
        free(j->rcpts);
        free(j);
        return SR_ENOMEM;
    }
    memcpy(j->body, hdr, hl);
    memcpy(j->body + hl, body, len);
    SHA256(j->body, j->len, j->digest);
    j->n_rcpts = env->n_rcpts;
    for (unsigned i = 0; i < env->n_rcpts; i++)
        j->rcpts[i] = strdup(env->rcpts[i]);
    j->customer = dup0(meta->customer);
    j->mail_from = dup0(env->mail_from);
    j->helo = dup0(env->helo);
    j->client_addr = dup0(meta->client_addr);
    if (meta->dsn_for_code) {
        j->dsn_for_code = strdup(meta->dsn_for_code);
        j->dsn_for_rcpt = meta->dsn_for_rcpt;
    }
    j->start = uv_now(in->loop);
    j->deadline = j->start + in->cfg->commit_timeout_ms;
    j->need = in->cfg->body_copies ? in->cfg->body_copies : nv / 2 + 1;
    if (j->need > nv)
        j->need = nv;
    j->cb = cb;
    j->ud = ud;
    j->refs = 1; /* the client */
    j->next = in->jobs;
    if (in->jobs)
        in->jobs->prev = j;
    in->jobs = j;
    in->inflight++;
    in->inflight_bytes += j->len;
    *out = j;
    if (!uv_is_active((uv_handle_t *)&in->hedge))
        uv_timer_start(&in->hedge, hedge, HEDGE_TICK_MS, HEDGE_TICK_MS);

    j->refs++;
    if (body_store_put(in->bodies, j->code, j->body, j->len, local_put_cb, j) !=
        0)
        j->refs--;

    for (unsigned i = 0; i < nv; i++)
        if (voters[(i + in->rr) % nv] != in->cfg->node_id)
            j->peers[j->n_peers++] = voters[(i + in->rr) % nv];
    in->rr++;
    double wait_ms = in->push_rtt_ms * 3;
    if (wait_ms < HEDGE_MIN_MS)
        wait_ms = HEDGE_MIN_MS;
    if (wait_ms > HEDGE_MAX_MS)
        wait_ms = HEDGE_MAX_MS;
    j->hedge_at = j->start + (uint64_t)wait_ms;
    /* The local copy counts as one holder. */
    push_more(j, j->need > 0 ? j->need - 1 : 0);
    return 0;
}

void ingest_detach(struct ingest_job *j)
{
    j->cb = NULL;
}

static void sweep(uv_timer_t *t)
{
    struct ingest *in = t->data;
    uint64_t now = uv_now(in->loop);
    for (struct ingest_job *j = in->jobs, *next; j; j = next) {
        next = j->next;
        /* answer() may free j only through its client reference, and
         * every job still in the list holds at least one more while a
         * request is outstanding; keep next before calling it. */
        if (!j->answered && now >= j->deadline)
            answer(j, SR_ETIMEDOUT);
    }
}

/* Asks the remaining voters for jobs whose first peers are slow. */
static void hedge(uv_timer_t *t)
{
    struct ingest *in = t->data;
    uint64_t now = uv_now(in->loop);
    if (in->jobs == NULL) {
        uv_timer_stop(t); /* an idle node does not wake up every tick */
        return;
    }
    for (struct ingest_job *j = in->jobs; j; j = j->next)
        if (!j->proposed && !j->answered && j->n_sent < j->n_peers &&
            now >= j->hedge_at)
            push_more(j, j->n_peers);
}

int ingest_new(uv_loop_t *loop, const struct sr_config *cfg, unsigned boot,
               struct body_store *bodies, struct rnode *rn, struct rpc *rpc,
               struct ingest **out)
{
    struct ingest *in = calloc(1, sizeof *in);
    if (in == NULL)
        return SR_ENOMEM;
    in->loop = loop;
    in->cfg = cfg;
    in->bodies = bodies;
    in->rn = rn;
    in->rpc = rpc;
    in->window_us = SR_GROUP_COMMIT_SINGLE_US; /* as node.c opened it */
    code_gen_init(&in->codes, (unsigned)cfg->node_id, boot);
    uv_timer_init(loop, &in->sweep);
    in->sweep.data = in;
    uv_timer_start(&in->sweep, sweep, 100, 100);
    uv_timer_init(loop, &in->hedge);
    in->hedge.data = in; /* started by the first job */
    *out = in;
    return 0;
}

static void timer_closed(uv_handle_t *h)
{
    struct ingest *in = h->data;
    if (++in->closed == 2)
        free(in);
}

void ingest_free(struct ingest *in)
{
    /* Jobs still referenced finish through their callbacks (the rnode and
     * rpc layers fail them with SR_ESHUTDOWN); detach their clients. */
    for (struct ingest_job *j = in->jobs; j; j = j->next)
        j->cb = NULL;
    uv_close((uv_handle_t *)&in->sweep, timer_closed);
    uv_close((uv_handle_t *)&in->hedge, timer_closed);
}

unsigned ingest_inflight(const struct ingest *in)
{
    return in->inflight;
}

/* ---- serving peers ---- */

static void reply_body(struct rpc_call *call, int status, uint8_t *data,
                       size_t len)
{
    Sr__BodyResp br = SR__BODY_RESP__INIT;
    br.status = status;
    br.body.data = data;
    br.body.len = len;
    Sr__Rpc rpc = SR__RPC__INIT;
    rpc.body_case = SR__RPC__BODY_BODY_RESP;
    rpc.body_resp = &br;
    rpc_reply(call, &rpc);
}

static void peer_put_cb(void *ud, int status)
{
    reply_body(ud, status, NULL, 0); /* frees the request and its body */
}

void ingest_handle_body_put(struct ingest *in, struct rpc_call *call,
                            const Sr__BodyPut *put)
{
    uint8_t d[SHA256_DIGEST_LENGTH];
    SHA256(put->body.data, put->body.len, d);
    if (put->digest.len != sizeof d || memcmp(d, put->digest.data, sizeof d) ||
        put->code[0] == '\0' || strlen(put->code) >= CODE_MAX) {
        reply_body(call, SR_EINVAL, NULL, 0);
        return;
    }
    follow_membership(in, 2); /* a peer pushed it: we are in a cluster */
    /* The request, body included, stays allocated until rpc_reply() (even
     * if the connection goes), which peer_put_cb calls once the store is
     * done with it: no copy of the body is needed. */
    if (body_store_put(in->bodies, put->code, put->body.data, put->body.len,
                       peer_put_cb, call) != 0)
        reply_body(call, SR_ESHUTDOWN, NULL, 0);
}

static void peer_get_cb(void *ud, int status, uint8_t *data, size_t len)
{
    reply_body(ud, status, data, len);
    free(data);
}

void ingest_handle_body_get(struct ingest *in, struct rpc_call *call,
                            const Sr__BodyGet *get)
{
    if (body_store_get(in->bodies, get->code, peer_get_cb, call) != 0)
        reply_body(call, SR_ESHUTDOWN, NULL, 0);
}
