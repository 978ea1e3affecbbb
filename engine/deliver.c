/* deliver.c - the delivery engine (see deliver.h). */
#include "engine/deliver.h"

#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "engine/dsn.h"
#include "engine/ingest.h"
#include "engine/mx.h"
#include "engine/prepare.h"
#include "engine/rates.h"
#include "engine/sms.h"
#include "engine/suspend.h"
#include "engine/shards.h"
#include "gateways/smtp_client.h"
#include "node/clock.h"
#include "node/errors.h"
#include "node/log.h"
#include "queue/bodystore.h"
#include "queue/dqueue.h"
#include "queue/policy.h"
#include "queue/qaction.h"
#include "queue/store.h"
#include "raft/rnode.h"
#include "raft/rpc.h"

#define SCAN_LIMIT 2000 /* due recipients looked at per tick */
#define MAX_JOBS 4000   /* jobs held in memory at once */
#define INFLIGHT_BUCKETS 4096
#define RECORD_RETRY_MS 1000
#define MAX_TARGETS 32

struct deliver;
struct dest;
struct conn;

/* A recipient this node is working on, until its result is committed. */
struct inflight {
    struct inflight *next;
    unsigned rcpt;
    char code[];
};

/* One message to one destination domain: some of its recipients. Owned by
 * the engine; on its destination's queue, then on a connection, then on
 * the record list until every result is committed. */
struct job {
    struct job *next;
    struct deliver *d;
    struct dest *dest;
    char *code;
    char *sender;
    char *customer;
    unsigned n;
    unsigned *idx;   /* recipient numbers in the message */
    char **rcpts;    /* addresses */
    unsigned *tries; /* attempts so far, per recipient */
    uint64_t committed_at;
    uint64_t *holders;
    size_t n_holders, tried;
    uint8_t digest[32];
    uint8_t *body;
    size_t len;
    /* results to record: outcome per recipient, reply, next attempt */
    unsigned *outcome;
    const char **klass; /* bounce class (static strings) */
    char **reply;
    uint64_t *next_ms;
    char mx[300];
    struct smtp_client_msg msg; /* lent to the client while it sends */
    uint64_t index;    /* highest Raft index of its committed results */
    unsigned pending;  /* proposals in flight */
    unsigned recorded; /* results committed */
    int stopped;       /* engine stopping: drop, do not record */
    int sent;          /* an SMTP transaction was attempted for it */
    int postponed;     /* its destination is suspended: not attempted */
    int suppressed;    /* its recipients are on the suppression list */
    int rewrap;        /* re-wrap and sign before sending (engine/prepare.h) */
    char *note;        /* what the re-wrap skipped, for the results */
    int sms;           /* an SMS recipient (engine/sms.h) */
    int no_dsn;        /* its failures send no DSN (SMS policy) */
    char smsc[33];     /* submitted: where */
    char **sms_ids;    /* submitted: message id of each part */
    size_t n_sms_ids;
    unsigned shard; /* of its destination domain */
};

/* A delivery target: one address of one host. */
struct target {
    char host[MX_NAME_MAX + 1];
    struct sockaddr_storage ss;
};

struct conn {
    struct conn *next;
    struct dest *dest;
    struct smtp_client *c;
    struct job *job; /* in flight */
    struct target *targets;
    unsigned n_targets, next_target;
    char peer[320];
    unsigned sent;
    bool ready;
    bool resolving;
};

/* A destination domain with its queue and connections. */
struct dest {
    struct dest *next;
    struct deliver *d;
    char domain[MX_NAME_MAX + 1];
    char source[64]; /* the customer's dedicated IP to send from, or "" */
    struct job *head, *tail;
    unsigned queued;
    struct conn *conns;
    unsigned n_conns;
    unsigned jobs; /* jobs alive for it (loading, queued, sending, recording) */
    /* Throttles: transactions this node started whose results this node
     * has not applied yet (the state counts the rest). */
    unsigned uncounted;
};

struct deliver {
    struct deliver_deps deps;
    uv_timer_t timer;
    uv_timer_t record_timer;
    struct mx_resolver *mx;
    struct rates *rates;     /* cluster-wide rates (engine/rates.h) */
    struct suspend *suspend; /* destination suspensions (engine/suspend.h) */
    struct ssl_ctx_st *tls;  /* shared by every outbound connection */
    struct prepare *prepare; /* re-wrap + DKIM on workers */
    struct sms_engine *sms;  /* SMPP binds and SMS sends */
    struct inflight *inflight[INFLIGHT_BUCKETS];
    unsigned n_inflight;
    struct dest *dests;
    struct job *to_record; /* jobs whose results wait for a retry */
    struct job *settling;  /* recorded, until this node's state has them */
    unsigned jobs_alive;
    unsigned shard_jobs[SHARD_COUNT]; /* jobs alive per shard */
    unsigned conns_total;
    struct deliver_stats stats;
    int stopping;
    int handles; /* timers not closed yet */
    unsigned io; /* body reads and fetches in flight */
};

static void maybe_free(struct deliver *d);

/* ---- the in-flight set ---- */

static unsigned ihash(const char *code, unsigned rcpt)
{
    uint32_t h = 2166136261u ^ rcpt;
    for (; *code; code++)
        h = (h ^ (uint8_t)*code) * 16777619u;
    return h % INFLIGHT_BUCKETS;
}

static bool inflight_has(struct deliver *d, const char *code, unsigned rcpt)
{
    for (struct inflight *f = d->inflight[ihash(code, rcpt)]; f; f = f->next)
        if (f->rcpt == rcpt && strcmp(f->code, code) == 0)
            return true;
    return false;
}

static void inflight_add(struct deliver *d, const char *code, unsigned rcpt)
{
    size_t l = strlen(code) + 1;
    struct inflight *f = malloc(sizeof *f + l);
    if (f == NULL)
        return;
    f->rcpt = rcpt;
    memcpy(f->code, code, l);
    unsigned h = ihash(code, rcpt);
    f->next = d->inflight[h];
    d->inflight[h] = f;
    d->n_inflight++;
}

static void inflight_del(struct deliver *d, const char *code, unsigned rcpt)
{
    for (struct inflight **p = &d->inflight[ihash(code, rcpt)]; *p;
         p = &(*p)->next) {
        if ((*p)->rcpt == rcpt && strcmp((*p)->code, code) == 0) {
            struct inflight *f = *p;
            *p = f->next;
            free(f);
            d->n_inflight--;
            return;
        }
    }
}

/* ---- jobs ---- */

static void dest_maybe_free(struct dest *ds);

static void job_free(struct job *j)
{
    struct deliver *d = j->d;
    if (j->dest != NULL)
        d->shard_jobs[j->shard]--;
    if (!d->stopping && j->dest != NULL) {
        if (j->sent)
            j->dest->uncounted--;
        j->dest->jobs--;
        dest_maybe_free(j->dest);
    }
    for (unsigned i = 0; i < j->n; i++) {
        if (!j->stopped)
            inflight_del(d, j->code, j->idx[i]);
        free(j->rcpts[i]);
        free(j->reply ? j->reply[i] : NULL);
    }
    free(j->code);
    free(j->note);
    for (size_t i = 0; i < j->n_sms_ids; i++)
        free(j->sms_ids[i]);
    free(j->sms_ids);
    free(j->sender);
    free(j->customer);
    free(j->idx);
    free(j->rcpts);
    free(j->tries);
    free(j->holders);
    free(j->body);
    free(j->outcome);
    free(j->klass);
    free(j->reply);
    free(j->next_ms);
    free(j);
    d->jobs_alive--;
    if (d->stopping)
        maybe_free(d);
}

static void record(struct job *j);

static void recorded(void *ud, int status, uint64_t index)
{
    (void)index;
    struct job *j = ud;
    struct deliver *d = j->d;
    j->pending--;
    if (status == 0 || status == SR_EEXIST || status == SR_ENOTFOUND) {
        j->recorded++;
        if (index > j->index)
            j->index = index;
    }
    if (j->pending > 0)
        return;
    if (j->stopped || d->stopping) {
        job_free(j);
        return;
    }
    if (j->recorded == j->n) {
        /* On a follower the leader answers once it applied the entry; this
         * node's state may lag. Until it has the results, the recipients
         * still look due here: keep them in flight. */
        if (queue_store_applied(d->deps.store) >= j->index) {
            job_free(j);
        } else {
            j->next = d->settling;
            d->settling = j;
        }
        return;
    }
    /* Some result did not commit (no leader, timeout): try again soon,
     * keeping the recipients in flight so nobody here sends them twice. */
    j->next = d->to_record;
    d->to_record = j;
}

/* Proposes every result of the job not committed yet. */
static void record(struct job *j)
{
    struct deliver *d = j->d;
    j->recorded = 0;
    for (unsigned i = 0; i < j->n; i++) {
        Sr__DeliveryResult r = SR__DELIVERY_RESULT__INIT;
        uint32_t idx = j->idx[i];
        r.code = j->code;
        r.rcpts = &idx;
        r.n_rcpts = 1;
        r.outcome = j->outcome[i];
        r.reply = j->reply[i] ? j->reply[i] : "";
        r.next_attempt_ms = j->next_ms[i];
        r.node = d->deps.cfg->node_id;
        r.mx = j->mx;
        r.bounce_class = (char *)(j->klass[i] ? j->klass[i] : "");
        r.sends = i == 0 && j->sent ? 1 : 0;
        r.postponed = j->postponed != 0;
        r.no_dsn = j->no_dsn != 0;
        if (j->outcome[i] == DELIVERY_SUBMITTED) {
            r.smsc = j->smsc;
            r.sms_ids = j->sms_ids;
            r.n_sms_ids = j->n_sms_ids;
        }
        Sr__Op op = SR__OP__INIT;
        op.op_case = SR__OP__OP_DELIVERY_RESULT;
        op.delivery_result = &r;
        if (rnode_propose(d->deps.rn, &op, 10000, recorded, j) == 0)
            j->pending++;
    }
    if (j->pending == 0) {
        j->next = d->to_record;
        d->to_record = j;
    }
}

static void retry_records(uv_timer_t *t)
{
    struct deliver *d = t->data;
    struct job *list = d->to_record;
    d->to_record = NULL;
    while (list) {
        struct job *j = list;
        list = j->next;
        record(j);
    }
}

/* Backoff for a recipient tried `tries` times before: min doubling to max,
 * times a jitter in [0.8, 1.2). */
static uint64_t backoff_ms(const struct sr_config *cfg, unsigned tries)
{
    uint64_t s = cfg->delivery_retry_min_s;
    for (unsigned i = 0; i < tries && s < cfg->delivery_retry_max_s; i++)
        s *= 2;
    if (s > cfg->delivery_retry_max_s)
        s = cfg->delivery_retry_max_s;
    uint64_t ms = s * 1000;
    return ms * 8 / 10 + (uint64_t)rand() % (ms * 4 / 10 + 1);
}

static const char *outcome_event(unsigned o)
{
    return delivery_outcome_name(o);
}

/* Sets recipient i's outcome: status is SMTP_OK/TEMPFAIL/PERMFAIL. */
static void set_outcome(struct job *j, unsigned i, enum smtp_status st,
                        const char *reply)
{
    struct deliver *d = j->d;
    const struct sr_config *cfg = d->deps.cfg;
    uint64_t now = sr_wall_ms();
    unsigned o;
    if (st == SMTP_OK) {
        o = DELIVERY_DELIVERED;
    } else if (st == SMTP_PERMFAIL) {
        o = DELIVERY_BOUNCED;
    } else if (now >=
               j->committed_at + (uint64_t)cfg->delivery_max_age_s * 1000) {
        o = DELIVERY_EXPIRED;
    } else {
        o = DELIVERY_DEFERRED;
        j->next_ms[i] = now + backoff_ms(cfg, j->tries[i]);
    }
    j->outcome[i] = o;
    j->klass[i] = o == DELIVERY_DELIVERED ? "" : dsn_classify(reply, o);
    free(j->reply[i]);
    if (j->note != NULL) {
        /* the event says why the message went out as it was */
        size_t l = strlen(reply ? reply : "") + strlen(j->note) + 4;
        j->reply[i] = malloc(l);
        if (j->reply[i] != NULL)
            snprintf(j->reply[i], l, "%s [%s]", reply ? reply : "", j->note);
    } else {
        j->reply[i] = strdup(reply ? reply : "");
    }
    switch (o) {
    case DELIVERY_DELIVERED:
        d->stats.delivered++;
        break;
    case DELIVERY_DEFERRED:
        d->stats.deferred++;
        break;
    case DELIVERY_BOUNCED:
        d->stats.bounced++;
        break;
    default:
        d->stats.expired++;
        break;
    }
    LOG_INFO("code=%s event=%s to=<%s> relay=%s attempts=%u reply=\"%s\"",
             j->code, outcome_event(o), j->rcpts[i], j->mx[0] ? j->mx : "none",
             j->tries[i] + 1, j->reply[i] ? j->reply[i] : "");
}

/* Every recipient of the job gets the same outcome. */
static void job_fail_all(struct job *j, enum smtp_status st, const char *reason)
{
    for (unsigned i = 0; i < j->n; i++)
        set_outcome(j, i, st, reason);
    record(j);
}

/* The destination is suspended until `until`: the job's recipients wait
 * (no attempt) until then, or at most POSTPONE_MAX_MS so that a resume is
 * noticed, plus a jitter so they do not all come back at once; a message
 * past its maximum age expires instead. */
#define POSTPONE_MAX_MS 300000
static void postpone(struct job *j, const struct suspension *x)
{
    struct deliver *d = j->d;
    uint64_t now = sr_wall_ms();
    char reason[400];
    snprintf(reason, sizeof reason, "451 4.4.5 delivery to %s suspended: %s",
             j->dest->domain, x->reason);
    if (now >=
        j->committed_at + (uint64_t)d->deps.cfg->delivery_max_age_s * 1000) {
        job_fail_all(j, SMTP_TEMPFAIL, reason);
        return;
    }
    uint64_t next = x->until_ms;
    if (next > now + POSTPONE_MAX_MS)
        next = now + POSTPONE_MAX_MS;
    next += 1000 + (uint64_t)rand() % 30000;
    for (unsigned i = 0; i < j->n; i++) {
        j->outcome[i] = DELIVERY_DEFERRED;
        j->next_ms[i] = next;
        j->klass[i] = "";
        free(j->reply[i]);
        j->reply[i] = strdup(reason);
    }
    j->postponed = 1;
    snprintf(j->mx, sizeof j->mx, "none");
    d->stats.postponed += j->n;
    LOG_DEBUG("code=%s event=postponed domain=%s rcpts=%u", j->code,
              j->dest->domain, j->n);
    record(j);
}

/* The customer's suppression list has the job's recipients (they
 * unsubscribed): not sent, a "suppressed" event each, no DSN. */
static void suppress(struct job *j)
{
    for (unsigned i = 0; i < j->n; i++) {
        j->outcome[i] = DELIVERY_SUPPRESSED;
        j->klass[i] = "";
        free(j->reply[i]);
        j->reply[i] = strdup("550 5.7.1 recipient is on the customer's "
                             "suppression list");
        LOG_INFO("code=%s event=suppressed to=<%s>", j->code, j->rcpts[i]);
    }
    snprintf(j->mx, sizeof j->mx, "none");
    j->d->stats.suppressed += j->n;
    record(j);
}

/* ---- destinations ---- */

static void dest_pump(struct dest *ds);
static bool dest_budget(struct dest *ds);

/* A destination is a domain reached from one source address: customers
 * with a dedicated IP get connections of their own. */
static struct dest *dest_get(struct deliver *d, const char *domain,
                             const char *source)
{
    for (struct dest *ds = d->dests; ds; ds = ds->next)
        if (strcmp(ds->domain, domain) == 0 && strcmp(ds->source, source) == 0)
            return ds;
    struct dest *ds = calloc(1, sizeof *ds);
    if (ds == NULL)
        return NULL;
    ds->d = d;
    snprintf(ds->domain, sizeof ds->domain, "%s", domain);
    snprintf(ds->source, sizeof ds->source, "%s", source);
    ds->next = d->dests;
    d->dests = ds;
    return ds;
}

/* Fully suspended (no delivery at all) at now? */
static bool dest_stopped(struct dest *ds, struct suspension *x)
{
    return suspend_get(ds->d->suspend, ds->domain, sr_wall_ms(), x) &&
           x->per_minute == 0;
}

/* A remote reply from ds's servers: maybe a response rule fires. */
static void dest_reply(struct dest *ds, const char *reply)
{
    struct deliver *d = ds->d;
    const struct policy_dest *pd =
        policy_dest_for(d->deps.policy(d->deps.ud), ds->domain);
    suspend_check_reply(d->suspend, pd, ds->domain, reply, sr_wall_ms());
}

/* Frees a destination with nothing queued and no connection. */
static void dest_maybe_free(struct dest *ds)
{
    if (ds->head || ds->conns || ds->jobs)
        return;
    struct deliver *d = ds->d;
    for (struct dest **p = &d->dests; *p; p = &(*p)->next) {
        if (*p == ds) {
            *p = ds->next;
            free(ds);
            return;
        }
    }
}

static struct job *dest_pop(struct dest *ds)
{
    struct job *j = ds->head;
    if (j) {
        ds->head = j->next;
        if (ds->head == NULL)
            ds->tail = NULL;
        j->next = NULL;
        ds->queued--;
    }
    return j;
}

/* The first queued job (among the first RATE_SCAN) whose customer's
 * cluster-wide rates (engine/rates.h) let it go now, taken off the queue;
 * NULL if none. */
#define RATE_SCAN 32
static struct job *dest_take_allowed(struct dest *ds)
{
    struct deliver *d = ds->d;
    const struct policy *p = d->deps.policy(d->deps.ud);
    uint64_t now = sr_wall_ms();
    struct job *prev = NULL;
    unsigned n = 0;
    for (struct job *j = ds->head; j && n < RATE_SCAN;
         prev = j, j = j->next, n++) {
        if (!rates_take(d->rates, p, j->customer, now))
            continue;
        if (prev)
            prev->next = j->next;
        else
            ds->head = j->next;
        if (ds->tail == j)
            ds->tail = prev;
        j->next = NULL;
        ds->queued--;
        return j;
    }
    return NULL;
}

static void dest_push(struct dest *ds, struct job *j)
{
    j->next = NULL;
    if (ds->tail)
        ds->tail->next = j;
    else
        ds->head = j;
    ds->tail = j;
    ds->queued++;
}

/* No connection can be made: every queued job gets st. */
static void dest_fail_queue(struct dest *ds, enum smtp_status st,
                            const char *reason)
{
    struct job *j;
    while ((j = dest_pop(ds)) != NULL) {
        snprintf(j->mx, sizeof j->mx, "%s", ds->domain);
        job_fail_all(j, st, reason);
    }
}

/* ---- connections ---- */

static void conn_event(struct smtp_client *c,
                       const struct smtp_client_event *ev, void *ud);

static void conn_free(struct conn *cn)
{
    struct dest *ds = cn->dest;
    struct deliver *d = ds->d;
    for (struct conn **p = &ds->conns; *p; p = &(*p)->next) {
        if (*p == cn) {
            *p = cn->next;
            break;
        }
    }
    ds->n_conns--;
    d->conns_total--;
    free(cn->targets);
    free(cn);
}

/* Connects to the next target; false when none is left. */
static bool conn_try_next(struct conn *cn)
{
    struct deliver *d = cn->dest->d;
    const struct sr_config *cfg = d->deps.cfg;
    while (cn->next_target < cn->n_targets) {
        struct target *t = &cn->targets[cn->next_target++];
        char ip[INET6_ADDRSTRLEN] = "?";
        int port = 0;
        if (t->ss.ss_family == AF_INET) {
            uv_ip4_name((struct sockaddr_in *)&t->ss, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in *)&t->ss)->sin_port);
        } else {
            uv_ip6_name((struct sockaddr_in6 *)&t->ss, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in6 *)&t->ss)->sin6_port);
        }
        snprintf(cn->peer, sizeof cn->peer, "%s[%s]:%d", t->host, ip, port);
        struct smtp_client_opts o = {0};
        o.addr = (struct sockaddr *)&t->ss;
        o.ehlo_name = cfg->hostname;
        if (cn->dest->source[0])
            o.source = cn->dest->source;
        o.tls_mode = SMTP_TLS_OPPORTUNISTIC;
        const struct policy_route *r =
            policy_route_for(d->deps.policy(d->deps.ud), cn->dest->domain);
        const char *mode = cfg->delivery_tls;
        if (r && r->tls == POLICY_TLS_NONE)
            mode = "none";
        else if (r && r->tls == POLICY_TLS_MAY)
            mode = "may";
        else if (r && r->tls == POLICY_TLS_REQUIRE)
            mode = "require";
        if (strcmp(mode, "none") == 0)
            o.tls_mode = SMTP_TLS_NONE;
        else if (strcmp(mode, "require") == 0)
            o.tls_mode = SMTP_TLS_REQUIRED;
        o.tls_hostname = t->host;
        o.ssl_ctx = d->tls;
        char err[SR_ERRMSG_SIZE];
        if (smtp_client_connect(d->deps.loop, &o, conn_event, cn, &cn->c, err,
                                sizeof err) == 0)
            return true;
        LOG_DEBUG("event=connect_failed relay=%s error=\"%s\"", cn->peer, err);
    }
    return false;
}

/* The connection is gone or never came: put its job back, maybe fail the
 * destination's queue, and free it. */
static void conn_end(struct conn *cn, const char *reason)
{
    struct dest *ds = cn->dest;
    if (cn->job) {
        /* cannot happen: results come before CLOSED; be safe */
        job_fail_all(cn->job, SMTP_TEMPFAIL, reason);
        cn->job = NULL;
    }
    bool was_ready = cn->ready;
    conn_free(cn);
    /* Never got a session: the destination is unreachable now. Defer what
     * waits for it (like Postfix marking it dead) rather than dial again
     * at once. */
    if (!was_ready)
        dest_fail_queue(ds, SMTP_TEMPFAIL, reason);
    dest_pump(ds);
    dest_maybe_free(ds);
}

static void conn_send_next(struct conn *cn);

static void msg_done(struct smtp_client *c, const struct smtp_client_result *r,
                     void *ud)
{
    (void)c;
    struct conn *cn = ud;
    struct job *j = cn->job;
    cn->job = NULL;
    cn->sent++;
    snprintf(j->mx, sizeof j->mx, "%s", cn->peer);
    for (unsigned i = 0; i < j->n && i < r->n_rcpts; i++) {
        const struct smtp_rcpt_result *rr = &r->rcpts[i];
        char reply[700];
        if (rr->status == SMTP_OK)
            snprintf(reply, sizeof reply, "%d %s%s%s", r->data.code,
                     r->data.enh, r->data.enh[0] ? " " : "", r->data.text);
        else if (rr->reply.code >= 400)
            snprintf(reply, sizeof reply, "%d %s%s%s", rr->reply.code,
                     rr->reply.enh, rr->reply.enh[0] ? " " : "",
                     rr->reply.text);
        else
            snprintf(reply, sizeof reply, "%s", r->reason);
        set_outcome(j, i, rr->status, reply);
        if (rr->status != SMTP_OK)
            dest_reply(cn->dest, reply);
    }
    if (r->conn_dead && r->reason[0])
        dest_reply(cn->dest, r->reason);
    record(j);
    if (r->conn_dead)
        return; /* CLOSED follows */
    const struct policy_dest *pd = policy_dest_for(
        cn->dest->d->deps.policy(cn->dest->d->deps.ud), cn->dest->domain);
    unsigned per_conn = cn->dest->d->deps.cfg->delivery_msgs_per_conn;
    if (pd && pd->per_connection && pd->per_connection < per_conn)
        per_conn = pd->per_connection;
    if (cn->sent >= per_conn) {
        smtp_client_quit(cn->c);
        return;
    }
    conn_send_next(cn);
}

static void conn_send_next(struct conn *cn)
{
    struct dest *ds = cn->dest;
    if (cn->job != NULL || !cn->ready || ds->head == NULL)
        return;
    struct suspension x;
    if (dest_stopped(ds, &x)) {
        smtp_client_quit(cn->c); /* dest_pump postpones the queue */
        return;
    }
    if (!dest_budget(ds))
        return; /* throttled: the tick pumps again */
    struct job *j = dest_take_allowed(ds);
    if (j == NULL)
        return; /* rates, or idle: the client's idle timer ends it */
    struct smtp_client_msg *m = &j->msg;
    memset(m, 0, sizeof *m);
    m->sender = j->sender;
    m->rcpts = (const char *const *)j->rcpts;
    m->n_rcpts = j->n;
    m->body = (const char *)j->body;
    m->body_len = j->len;
    cn->job = j;
    j->sent = 1;
    ds->uncounted++;
    if (smtp_client_send(cn->c, m, msg_done, cn) != 0) {
        cn->job = NULL;
        j->sent = 0;
        ds->uncounted--;
        dest_push(ds, j); /* back to the queue; the connection is ending */
    }
}

static void conn_event(struct smtp_client *c,
                       const struct smtp_client_event *ev, void *ud)
{
    (void)c;
    struct conn *cn = ud;
    switch (ev->type) {
    case SMTP_CLIENT_READY:
        cn->ready = true;
        LOG_DEBUG("event=connected relay=%s tls=%s", cn->peer,
                  ev->tls_version ? ev->tls_version : "none");
        conn_send_next(cn);
        /* a queue longer than one connection can take: open more */
        dest_pump(cn->dest);
        break;
    case SMTP_CLIENT_FAILED:
        cn->c = NULL;
        LOG_INFO("event=connect_failed domain=%s relay=%s reason=\"%s\"",
                 cn->dest->domain, cn->peer, ev->reason);
        if (ev->reason)
            dest_reply(cn->dest, ev->reason);
        if (cn->dest->d->stopping || !conn_try_next(cn)) {
            char reason[600];
            snprintf(reason, sizeof reason, "%s: %s", cn->peer, ev->reason);
            conn_end(cn, reason);
        }
        break;
    case SMTP_CLIENT_CLOSED:
        cn->c = NULL;
        conn_end(cn, ev->reason);
        break;
    }
}

static void add_target(struct conn *cn, const char *host,
                       const struct sockaddr_storage *ss)
{
    if (cn->n_targets >= MAX_TARGETS)
        return;
    struct target *t = &cn->targets[cn->n_targets++];
    snprintf(t->host, sizeof t->host, "%s", host);
    t->ss = *ss;
}

static void resolved(const struct mx_result *res, bool cached, void *ud)
{
    (void)cached;
    struct conn *cn = ud;
    struct dest *ds = cn->dest;
    struct deliver *d = ds->d;
    cn->resolving = false;
    if (d->stopping) {
        conn_free(cn);
        return;
    }
    if (res->status == MX_OK) {
        for (size_t i = 0; i < res->ntargets; i++) {
            const struct mx_target *t = &res->targets[i];
            for (size_t a = 0; a < t->naddrs; a++) {
                struct sockaddr_storage ss;
                mx_addr_sockaddr(&t->addrs[a],
                                 (uint16_t)d->deps.cfg->delivery_port, &ss);
                add_target(cn, t->host, &ss);
            }
        }
        if (conn_try_next(cn))
            return;
    }
    char reason[300];
    snprintf(reason, sizeof reason, "%s: %s (%s)", ds->domain,
             res->msg[0] ? res->msg : mx_reason_str(res->reason),
             mx_status_str(res->status));
    conn_free(cn);
    dest_fail_queue(
        ds, res->status == MX_PERMFAIL ? SMTP_PERMFAIL : SMTP_TEMPFAIL, reason);
    dest_maybe_free(ds);
}

/* Opens one more connection to the destination. */
static void conn_open(struct dest *ds)
{
    struct deliver *d = ds->d;
    struct conn *cn = calloc(1, sizeof *cn);
    if (cn == NULL)
        return;
    cn->targets = calloc(MAX_TARGETS, sizeof *cn->targets);
    if (cn->targets == NULL) {
        free(cn);
        return;
    }
    cn->dest = ds;
    cn->next = ds->conns;
    ds->conns = cn;
    ds->n_conns++;
    d->conns_total++;
    const struct policy_route *r =
        policy_route_for(d->deps.policy(d->deps.ud), ds->domain);
    if (r != NULL) {
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof ss);
        if (uv_ip4_addr(r->host, (int)r->port, (struct sockaddr_in *)&ss) != 0)
            uv_ip6_addr(r->host, (int)r->port, (struct sockaddr_in6 *)&ss);
        add_target(cn, r->host, &ss);
        if (!conn_try_next(cn)) {
            conn_free(cn);
            dest_fail_queue(ds, SMTP_TEMPFAIL, "cannot connect to route");
        }
        return;
    }
    cn->resolving = true;
    if (mx_resolve(d->mx, ds->domain, resolved, cn) != 0) {
        conn_free(cn);
        dest_fail_queue(ds, SMTP_TEMPFAIL, "DNS resolver unavailable");
    }
}

/* The destination's throttles (policy "destinations"): may one more
 * transaction start now? The owner of the domain's shard is the only
 * sender, so its own count is the cluster's: the transactions recorded in
 * the state (any node, so an owner change keeps the count), plus the ones
 * it started whose results it has not applied yet. */
static bool dest_budget(struct dest *ds)
{
    struct deliver *d = ds->d;
    uint64_t now = sr_wall_ms();
    struct suspension x;
    if (suspend_get(d->suspend, ds->domain, now, &x) &&
        (x.per_minute == 0 ||
         dqueue_sends(d->deps.store, ds->domain, now - 60000) + ds->uncounted >=
             x.per_minute))
        return false;
    const struct policy_dest *pd =
        policy_dest_for(d->deps.policy(d->deps.ud), ds->domain);
    if (pd == NULL || (pd->per_minute == 0 && pd->per_hour == 0))
        return true;
    if (pd->per_minute &&
        dqueue_sends(d->deps.store, ds->domain, now - 60000) + ds->uncounted >=
            pd->per_minute)
        return false;
    if (pd->per_hour && dqueue_sends(d->deps.store, ds->domain, now - 3600000) +
                                ds->uncounted >=
                            pd->per_hour)
        return false;
    return true;
}

static unsigned dest_max_conns(struct dest *ds)
{
    struct deliver *d = ds->d;
    unsigned m = d->deps.cfg->delivery_max_conns_domain;
    const struct policy_dest *pd =
        policy_dest_for(d->deps.policy(d->deps.ud), ds->domain);
    if (pd && pd->max_connections && pd->max_connections < m)
        m = pd->max_connections;
    return m;
}

/* Feeds idle connections, opens new ones while the queue needs them. */
static void dest_pump(struct dest *ds)
{
    struct deliver *d = ds->d;
    if (d->stopping)
        return;
    struct suspension x;
    if (ds->head && dest_stopped(ds, &x)) {
        struct job *j;
        while ((j = dest_pop(ds)) != NULL)
            postpone(j, &x);
        return;
    }
    for (struct conn *cn = ds->conns; cn && ds->head; cn = cn->next)
        if (cn->ready && cn->job == NULL)
            conn_send_next(cn);
    const struct sr_config *cfg = d->deps.cfg;
    /* Every ready connection is busy now; connections still being set up
     * will each take one job. Open more while jobs outnumber them. */
    unsigned connecting = 0;
    for (struct conn *cn = ds->conns; cn; cn = cn->next)
        if (!cn->ready)
            connecting++;
    unsigned max_conns = dest_max_conns(ds);
    while (ds->head && ds->queued > connecting && ds->n_conns < max_conns &&
           dest_budget(ds) && d->conns_total < cfg->delivery_max_conns) {
        unsigned before = ds->n_conns;
        conn_open(ds);
        if (ds->n_conns <= before)
            break;
        connecting++;
    }
}

/* ---- bodies ---- */

/* An I/O of job j (body fetch, re-wrap, SMS send) came back: false when
 * the engine is stopping and j is freed (the caller returns). */
static bool job_io_back(struct job *j)
{
    j->d->io--;
    if (j->d->stopping) {
        job_free(j);
        return false;
    }
    return true;
}

static void prepared(void *ud, const struct prepare_out *out)
{
    struct job *j = ud;
    if (!job_io_back(j))
        return;
    if (out->msg != NULL) {
        free(j->body);
        j->body = (uint8_t *)out->msg;
        j->len = out->len;
    }
    if (out->sender[0]) {
        char *s = strdup(out->sender);
        if (s != NULL) {
            free(j->sender);
            j->sender = s;
        }
    }
    if (out->note[0] && j->note == NULL)
        j->note = strdup(out->note);
    if (out->note[0])
        LOG_INFO("code=%s event=rewrap_note to=<%s> note=\"%s\"", j->code,
                 j->rcpts[0], out->note);
    dest_push(j->dest, j);
    dest_pump(j->dest);
}

static void sms_done(void *ud, const struct sms_outcome *o)
{
    struct job *j = ud;
    if (!job_io_back(j))
        return;
    snprintf(j->mx, sizeof j->mx, "%s", o->smsc[0] ? o->smsc : "none");
    if (o->outcome == DELIVERY_SUBMITTED) {
        j->sms_ids = calloc(o->n_ids ? o->n_ids : 1, sizeof *j->sms_ids);
        for (size_t i = 0; j->sms_ids && i < o->n_ids; i++)
            if ((j->sms_ids[i] = strdup(o->ids[i])) != NULL)
                j->n_sms_ids = i + 1;
        if (j->sms_ids == NULL || j->n_sms_ids != o->n_ids) {
            set_outcome(j, 0, SMTP_TEMPFAIL, "451 4.3.0 out of memory");
        } else {
            snprintf(j->smsc, sizeof j->smsc, "%s", o->smsc);
            j->outcome[0] = DELIVERY_SUBMITTED;
            j->klass[0] = "";
            free(j->reply[0]);
            j->reply[0] = strdup(o->reply);
            LOG_INFO("code=%s event=sms_submitted to=<%s> smsc=%s parts=%zu",
                     j->code, j->rcpts[0], o->smsc, o->n_ids);
        }
    } else {
        set_outcome(j, 0,
                    o->outcome == DELIVERY_BOUNCED ? SMTP_PERMFAIL
                                                   : SMTP_TEMPFAIL,
                    o->reply);
    }
    record(j);
}

static void job_ready(struct job *j)
{
    struct dest *ds = j->dest;
    struct deliver *d = j->d;
    if (j->sms) {
        if (sms_send(d->sms, d->deps.policy(d->deps.ud), j->customer, j->code,
                     j->rcpts[0], j->idx[0], j->body, j->len, sms_done,
                     j) == 0) {
            d->io++;
            return;
        }
        job_fail_all(j, SMTP_TEMPFAIL, "451 4.3.0 cannot start the SMS");
        return;
    }
    if (j->rewrap) {
        j->rewrap = 0;
        const struct policy *pol = d->deps.policy(d->deps.ud);
        if (prepare_start(d->prepare, d->deps.loop, pol, j->customer, j->code,
                          j->rcpts[0], j->idx[0], (const char *)j->body, j->len,
                          prepared, j) == 0) {
            d->io++;
            return;
        }
        LOG_WARN("code=%s event=rewrap_skipped reason=\"cannot start\"",
                 j->code);
    }
    dest_push(ds, j);
    dest_pump(ds);
}

static void fetch_next(struct job *j);

static void got_remote(void *ud, int status, const Sr__Rpc *resp)
{
    struct job *j = ud;
    if (!job_io_back(j))
        return;
    if (status != 0 || resp->body_case != SR__RPC__BODY_BODY_RESP ||
        resp->body_resp->status != 0) {
        fetch_next(j);
        return;
    }
    uint8_t dg[SHA256_DIGEST_LENGTH];
    SHA256(resp->body_resp->body.data, resp->body_resp->body.len, dg);
    if (memcmp(dg, j->digest, sizeof dg) != 0) {
        fetch_next(j);
        return;
    }
    j->len = resp->body_resp->body.len;
    j->body = malloc(j->len ? j->len : 1);
    if (j->body == NULL) {
        job_free(j);
        return;
    }
    memcpy(j->body, resp->body_resp->body.data, j->len);
    job_ready(j);
}

static void fetch_next(struct job *j)
{
    struct deliver *d = j->d;
    while (j->tried < j->n_holders) {
        uint64_t id = j->holders[j->tried++];
        char addr[128];
        if (id == d->deps.cfg->node_id ||
            rnode_rpc_address(d->deps.rn, id, addr, sizeof addr) != 0)
            continue;
        Sr__BodyGet g = SR__BODY_GET__INIT;
        g.code = j->code;
        Sr__Rpc rpc = SR__RPC__INIT;
        rpc.body_case = SR__RPC__BODY_BODY_GET;
        rpc.body_get = &g;
        if (rpc_send(d->deps.rpc, id, addr, &rpc, 10000, got_remote, j) == 0) {
            d->io++;
            return;
        }
    }
    /* No holder answered: try again later (the body is on a majority). */
    snprintf(j->mx, sizeof j->mx, "none");
    job_fail_all(j, SMTP_TEMPFAIL,
                 "message body unavailable on this node "
                 "and its holders");
}

static void got_local(void *ud, int status, uint8_t *data, size_t len)
{
    struct job *j = ud;
    if (!job_io_back(j)) {
        free(data);
        return;
    }
    if (status == 0) {
        uint8_t dg[SHA256_DIGEST_LENGTH];
        SHA256(data, len, dg);
        if (memcmp(dg, j->digest, sizeof dg) == 0) {
            j->body = data;
            j->len = len;
            job_ready(j);
            return;
        }
        LOG_ERROR("code=%s event=body_digest_mismatch where=local", j->code);
    }
    free(data);
    fetch_next(j);
}

/* ---- scanning ---- */

struct due {
    char code[256];
    unsigned rcpt;
};

struct scan {
    struct deliver *d;
    struct due *items;
    size_t n, cap;
};

static void on_due(void *ud, const char *code, unsigned rcpt, uint64_t due_ms)
{
    (void)due_ms;
    struct scan *sc = ud;
    if (sc->n >= sc->cap || inflight_has(sc->d, code, rcpt))
        return;
    snprintf(sc->items[sc->n].code, sizeof sc->items[0].code, "%s", code);
    sc->items[sc->n].rcpt = rcpt;
    sc->n++;
}

static int cmp_due(const void *a, const void *b)
{
    const struct due *x = a, *y = b;
    int c = strcmp(x->code, y->code);
    return c ? c : (x->rcpt > y->rcpt) - (x->rcpt < y->rcpt);
}

static const char *domain_of(const char *addr)
{
    const char *at = strrchr(addr, '@');
    return at ? at + 1 : addr;
}

/* Makes jobs (one per domain) of one message's due recipients. */
static void make_jobs(struct deliver *d, const struct due *items, size_t n)
{
    Sr__StoredMessage *m;
    if (queue_store_get_message(d->deps.store, items[0].code, &m) != 0)
        return;
    Sr__MessageAccept *a = m->accept;
    /* per item: taken (in a job), suppressed, an SMS recipient */
    bool *taken = calloc(3 * n, sizeof *taken);
    const char **addrs = calloc(n, sizeof *addrs);
    if (taken == NULL || addrs == NULL) {
        free(taken);
        free(addrs);
        sr__stored_message__free_unpacked(m, NULL);
        return;
    }
    bool *supp = taken + n, *smsr = taken + 2 * n;
    const struct policy *pol = d->deps.policy(d->deps.ud);
    const struct policy_customer *cu = policy_find(pol, a->customer);
    /* re-wrapped mail is made per recipient (VERP, tokens) */
    bool per_rcpt = cu && cu->rewrap && pol->tracking;
    for (size_t i = 0; i < n; i++) {
        if (items[i].rcpt >= m->n_rcpts)
            continue;
        addrs[i] = m->rcpts[items[i].rcpt]->address;
        smsr[i] = cu && cu->sms && strchr(addrs[i], '@') &&
                  policy_sms_domain(cu->sms, domain_of(addrs[i]));
    }
    /* one read transaction for the message's recipients */
    dqueue_suppressed_many(d->deps.store, a->customer, addrs, n, supp);
    free(addrs);
    for (size_t i = 0; i < n; i++) {
        if (taken[i] || items[i].rcpt >= m->n_rcpts)
            continue;
        const char *dom = domain_of(m->rcpts[items[i].rcpt]->address);
        char ldom[MX_NAME_MAX + 1];
        size_t k = 0;
        for (; dom[k] && k < MX_NAME_MAX; k++)
            ldom[k] =
                (char)((dom[k] >= 'A' && dom[k] <= 'Z') ? dom[k] + 32 : dom[k]);
        ldom[k] = 0;
        struct dest *ds =
            dest_get(d, ldom, cu && cu->source_ip ? cu->source_ip : "");
        struct job *j = calloc(1, sizeof *j);
        if (ds == NULL || j == NULL) {
            free(j);
            break;
        }
        j->d = d;
        j->dest = ds;
        j->shard = shard_of_domain(ldom, strlen(ldom));
        d->shard_jobs[j->shard]++;
        ds->jobs++;
        j->code = strdup(a->code);
        j->sender = strdup(a->mail_from);
        j->customer = strdup(a->customer);
        j->committed_at = m->committed_at_ms;
        j->holders =
            calloc(a->n_holders ? a->n_holders : 1, sizeof *j->holders);
        size_t cap = n;
        j->idx = calloc(cap, sizeof *j->idx);
        j->rcpts = calloc(cap, sizeof *j->rcpts);
        j->tries = calloc(cap, sizeof *j->tries);
        j->outcome = calloc(cap, sizeof *j->outcome);
        j->klass = calloc(cap, sizeof *j->klass);
        j->reply = calloc(cap, sizeof *j->reply);
        j->next_ms = calloc(cap, sizeof *j->next_ms);
        d->jobs_alive++;
        if (!j->code || !j->sender || !j->customer || !j->holders || !j->idx ||
            !j->rcpts || !j->tries || !j->outcome || !j->klass || !j->reply ||
            !j->next_ms) {
            j->stopped = 1;
            job_free(j);
            break;
        }
        memcpy(j->holders, a->holders, a->n_holders * sizeof *j->holders);
        j->n_holders = a->n_holders;
        if (a->digest.len == sizeof j->digest)
            memcpy(j->digest, a->digest.data, sizeof j->digest);
        j->suppressed = supp[i];
        j->sms = smsr[i] && !supp[i];
        j->no_dsn = j->sms && !(cu && cu->sms && cu->sms->dsn);
        j->rewrap = per_rcpt && !supp[i] && !smsr[i];
        for (size_t x = i; x < n; x++) {
            if ((per_rcpt || smsr[i]) && j->n > 0)
                break;
            if (taken[x] || items[x].rcpt >= m->n_rcpts || supp[x] != supp[i] ||
                smsr[x] != smsr[i])
                continue;
            const char *dx = domain_of(m->rcpts[items[x].rcpt]->address);
            if (strcasecmp(dx, dom) != 0)
                continue;
            taken[x] = true;
            Sr__StoredRcpt *rc = m->rcpts[items[x].rcpt];
            j->idx[j->n] = items[x].rcpt;
            j->rcpts[j->n] = strdup(rc->address);
            j->tries[j->n] = rc->attempts;
            inflight_add(d, a->code, items[x].rcpt);
            j->n++;
        }
        d->stats.jobs++;
        if (j->suppressed) {
            suppress(j);
            continue;
        }
        struct suspension x;
        if (dest_stopped(ds, &x)) {
            postpone(j, &x);
            continue;
        }
        if (body_store_get(d->deps.bodies, j->code, got_local, j) == 0)
            d->io++;
        else
            fetch_next(j);
    }
    free(taken);
    sr__stored_message__free_unpacked(m, NULL);
}

/* ---- DSNs ---- */

#define DSN_FLAG 0x80000000u /* in-flight key of a DSN being generated */
#define DSN_BATCH 50

struct dsnjob {
    struct deliver *d;
    char code[256];
    unsigned rcpt;
    Sr__StoredMessage *m;
};

static void dsn_done(void *ud, int status, const char *code)
{
    struct dsnjob *k = ud;
    struct deliver *d = k->d;
    if (status == 0)
        LOG_INFO("code=%s event=dsn_sent for=%s rcpt=%u", code ? code : "-",
                 k->code, k->rcpt);
    else
        LOG_WARN("event=dsn_failed for=%s rcpt=%u error=%s", k->code, k->rcpt,
                 sr_strerror(status));
    if (!d->stopping)
        inflight_del(d, k->code, k->rcpt | DSN_FLAG);
    d->io--;
    free(k);
    if (d->stopping)
        maybe_free(d);
}

static void dsn_got_body(void *ud, int status, uint8_t *data, size_t len)
{
    struct dsnjob *k = ud;
    struct deliver *d = k->d;
    Sr__StoredMessage *m = k->m;
    k->m = NULL;
    if (d->stopping) {
        free(data);
        sr__stored_message__free_unpacked(m, NULL);
        dsn_done(k, SR_ESHUTDOWN, NULL);
        return;
    }
    Sr__StoredRcpt *rc = m->rcpts[k->rcpt];
    struct dsn_info in = {0};
    in.host = d->deps.cfg->hostname;
    in.code = k->code;
    in.sender = m->accept->mail_from;
    in.rcpt = rc->address;
    in.reply = rc->last_reply;
    in.relay = "";
    in.outcome =
        rc->state == RCPT_EXPIRED ? DELIVERY_EXPIRED : DELIVERY_BOUNCED;
    in.arrival_ms = m->accept->accepted_at_ms;
    in.now_ms = sr_wall_ms();
    if (status == 0) {
        in.original = (const char *)data;
        in.original_len = len;
    }
    char *dsn = NULL;
    size_t dlen = 0;
    int rc2 = dsn_build(&in, &dsn, &dlen);
    free(data);
    if (rc2 != 0) {
        sr__stored_message__free_unpacked(m, NULL);
        dsn_done(k, rc2, NULL);
        return;
    }
    char *rcpts[1] = {m->accept->mail_from};
    struct smtp_envelope env = {0};
    env.helo = d->deps.cfg->hostname;
    env.mail_from = "";
    env.rcpts = rcpts;
    env.n_rcpts = 1;
    struct ingest_meta meta = {m->accept->customer,
                               "127.0.0.1",
                               d->deps.cfg->hostname,
                               false,
                               k->code,
                               k->rcpt};
    struct ingest_job *job;
    int rc3 = ingest_submit(d->deps.ingest, &env, &meta, dsn, dlen, dsn_done, k,
                            &job);
    free(dsn);
    sr__stored_message__free_unpacked(m, NULL);
    if (rc3 != 0)
        dsn_done(k, rc3, NULL);
}

static void on_dsn(void *ud, const char *code, unsigned rcpt)
{
    struct deliver *d = ud;
    if (inflight_has(d, code, rcpt | DSN_FLAG))
        return;
    Sr__StoredMessage *m;
    if (queue_store_get_message(d->deps.store, code, &m) != 0)
        return;
    if (rcpt >= m->n_rcpts) {
        sr__stored_message__free_unpacked(m, NULL);
        return;
    }
    struct dsnjob *k = calloc(1, sizeof *k);
    if (k == NULL) {
        sr__stored_message__free_unpacked(m, NULL);
        return;
    }
    k->d = d;
    snprintf(k->code, sizeof k->code, "%s", code);
    k->rcpt = rcpt;
    k->m = m;
    inflight_add(d, code, rcpt | DSN_FLAG);
    d->io++;
    if (body_store_get(d->deps.bodies, code, dsn_got_body, k) != 0)
        dsn_got_body(k, SR_ENOTFOUND, NULL, 0);
}

/* Frees the settled jobs whose results this node has applied. */
static void settle(struct deliver *d)
{
    uint64_t applied = queue_store_applied(d->deps.store);
    for (struct job **p = &d->settling; *p;) {
        struct job *j = *p;
        if (applied >= j->index) {
            *p = j->next;
            job_free(j);
        } else {
            p = &j->next;
        }
    }
}

static void tick(uv_timer_t *t)
{
    struct deliver *d = t->data;
    if (d->stopping || !d->deps.cfg->delivery_enabled)
        return;
    settle(d);
    sms_engine_policy(d->sms, d->deps.policy(d->deps.ud));
    /* throttled destinations wait for their budget: pump them again */
    for (struct dest *ds = d->dests, *next; ds; ds = next) {
        next = ds->next;
        if (ds->head)
            dest_pump(ds);
    }
    uint64_t mask = shards_owned(d->deps.shards);
    if (mask == 0 || d->jobs_alive >= MAX_JOBS)
        return;
    struct scan sc = {d, NULL, 0, SCAN_LIMIT};
    sc.items = malloc(SCAN_LIMIT * sizeof *sc.items);
    if (sc.items == NULL)
        return;
    dqueue_due(d->deps.store, mask, sr_wall_ms(), SCAN_LIMIT + d->n_inflight,
               on_due, &sc);
    qsort(sc.items, sc.n, sizeof *sc.items, cmp_due);
    for (size_t i = 0; i < sc.n && d->jobs_alive < MAX_JOBS;) {
        size_t e = i + 1;
        while (e < sc.n && strcmp(sc.items[e].code, sc.items[i].code) == 0)
            e++;
        make_jobs(d, sc.items + i, e - i);
        i = e;
    }
    free(sc.items);
    if (d->deps.ingest != NULL)
        dqueue_dsn_pending(d->deps.store, mask, DSN_BATCH, on_dsn, d);
}

/* ---- lifecycle ---- */

struct sms_engine *deliver_sms(struct deliver *d)
{
    return d->sms;
}

bool deliver_busy(void *ud, unsigned shard)
{
    struct deliver *d = ud;
    return d != NULL && shard < SHARD_COUNT && d->shard_jobs[shard] > 0;
}

/* Rate tokens arrived: destinations waiting for them can go. */
static void granted(void *ud)
{
    deliver_kick(ud);
}

int deliver_start(const struct deliver_deps *deps, struct deliver **out,
                  char *err, size_t errlen)
{
    struct deliver *d = calloc(1, sizeof *d);
    if (d == NULL)
        return SR_ENOMEM;
    d->deps = *deps;
    struct mx_opts mo = {0};
    mo.servers = deps->cfg->delivery_dns;
    int rc = mx_resolver_new(deps->loop, &mo, &d->mx, err, errlen);
    if (rc != 0) {
        free(d);
        return rc;
    }
    d->rates = rates_new(deps->rn, deps->cfg->node_id, granted, d);
    d->suspend = suspend_new(deps->store, deps->rn, deps->cfg->node_id);
    d->tls = smtp_client_tls_ctx();
    d->prepare = prepare_new();
    d->sms = sms_engine_new(deps->loop, deps->rn, d->rates, deps->cfg->node_id);
    if (d->rates == NULL || d->suspend == NULL || d->tls == NULL ||
        d->prepare == NULL || d->sms == NULL) {
        sms_engine_free(d->sms);
        prepare_free(d->prepare);
        SSL_CTX_free(d->tls);
        rates_free(d->rates);
        suspend_free(d->suspend);
        mx_resolver_close(d->mx);
        free(d);
        return SR_ENOMEM;
    }
    srand((unsigned)(sr_wall_ms() ^ (deps->cfg->node_id << 16)));
    uv_timer_init(deps->loop, &d->timer);
    uv_timer_init(deps->loop, &d->record_timer);
    d->timer.data = d;
    d->record_timer.data = d;
    d->handles = 2;
    uv_timer_start(&d->timer, tick, DELIVER_TICK_MS, DELIVER_TICK_MS);
    uv_timer_start(&d->record_timer, retry_records, RECORD_RETRY_MS,
                   RECORD_RETRY_MS);
    *out = d;
    return 0;
}

void deliver_kick(struct deliver *d)
{
    if (d != NULL && !d->stopping && uv_timer_get_due_in(&d->timer) > 20)
        uv_timer_start(&d->timer, tick, 20, DELIVER_TICK_MS);
}

static void maybe_free(struct deliver *d)
{
    if (d->handles > 0 || d->jobs_alive > 0 || d->io > 0)
        return;
    for (unsigned b = 0; b < INFLIGHT_BUCKETS; b++) {
        while (d->inflight[b]) {
            struct inflight *f = d->inflight[b];
            d->inflight[b] = f->next;
            free(f);
        }
    }
    prepare_free(d->prepare); /* no work runs any more */
    free(d);
}

static void closed(uv_handle_t *h)
{
    struct deliver *d = h->data;
    d->handles--;
    maybe_free(d);
}

void deliver_stop(struct deliver *d)
{
    if (d == NULL)
        return;
    d->stopping = 1;
    uv_timer_stop(&d->timer);
    uv_timer_stop(&d->record_timer);
    /* Pending lookups end now (MX_CANCELLED frees their connections). */
    mx_resolver_close(d->mx);
    d->mx = NULL;
    rates_free(d->rates);
    d->rates = NULL;
    suspend_free(d->suspend);
    d->suspend = NULL;
    sms_engine_free(d->sms); /* its sends call back: jobs end */
    d->sms = NULL;
    SSL_CTX_free(d->tls); /* connections hold their own references */
    d->tls = NULL;
    /* Jobs waiting for a retry of their record: dropped (still due in the
     * state, so the next owner retries them). */
    while (d->to_record) {
        struct job *j = d->to_record;
        d->to_record = j->next;
        j->stopped = 1;
        job_free(j);
    }
    while (d->settling) {
        struct job *j = d->settling;
        d->settling = j->next;
        j->stopped = 1;
        job_free(j);
    }
    for (struct dest *ds = d->dests, *next; ds; ds = next) {
        next = ds->next;
        struct job *j;
        while ((j = dest_pop(ds)) != NULL) {
            j->stopped = 1;
            job_free(j);
        }
        while (ds->conns) {
            struct conn *cn = ds->conns;
            smtp_client_close(cn->c);
            if (cn->job) {
                cn->job->stopped = 1;
                job_free(cn->job);
            }
            ds->conns = cn->next;
            free(cn->targets);
            free(cn);
        }
        free(ds);
    }
    d->dests = NULL;
    uv_close((uv_handle_t *)&d->timer, closed);
    uv_close((uv_handle_t *)&d->record_timer, closed);
}

void deliver_get_stats(const struct deliver *d, struct deliver_stats *st)
{
    *st = d->stats;
    st->inflight = d->n_inflight;
    st->connections = d->conns_total;
}
