/* sms.c - SMS delivery over SMPP (see sms.h). */
#include "engine/sms.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/rates.h"
#include "engine/sms_mime.h"
#include "engine/sms_text.h"
#include "gateways/smpp_client.h"
#include "node/clock.h"
#include "node/errors.h"
#include "node/log.h"
#include "queue/dqueue.h"
#include "queue/policy.h"
#include "raft/rnode.h"

#define PUMP_MS 50
#define WAIT_MAX_MS 15000 /* a send waiting for a window gives up then */
#define THROTTLE_PAUSE_MS 1000
#define MAX_HOPS 16

struct bind {
    struct bind *next;
    struct sms_engine *e;
    char name[33];
    char id[600];              /* everything the bind was made from */
    struct smpp_client *c[17]; /* binds: transceivers, or transmitters and
                                  a receiver (bind_mode split) */
    unsigned n_c;
    uint64_t paused_until;
    enum policy_id_format idf, ridf;
    bool sar;
    unsigned per_second;
    bool seen;
};

struct send {
    struct send *next; /* waiting list */
    struct sms_engine *e;
    uv_work_t req;
    char *code, *rcpt;
    unsigned idx;
    const uint8_t *body;
    size_t len;
    /* the customer's SMS settings, copied */
    char *sender, *marker;
    bool sender_from_header, truncate;
    enum policy_sms_subject subject;
    unsigned max_parts;
    struct hop {
        char name[33];
        unsigned share;
    } hops[MAX_HOPS]; /* best first: priority, then cost */
    unsigned n_hops;
    char prefix[17]; /* the route's */
    /* extraction (worker) */
    struct sms_mime mime;
    int xrc;
    char xerr[SR_ERRMSG_SIZE];
    /* submission */
    char e164[SMS_E164_SIZE];
    struct sms_sender from;
    struct sms_message msg;
    struct bind *b;
    unsigned next_part, answered, pending;
    char **ids;
    int temp, perm;
    char why[200];
    uint64_t since;
    void (*done)(void *ud, const struct sms_outcome *o);
    void *ud;
};

/* Messages this node sent over each (route, SMSC): for shares, status. */
struct rstat {
    struct rstat *next;
    char prefix[17], smsc[33];
    uint64_t sent;
};

struct sms_engine {
    struct rstat *stats;
    uv_loop_t *loop;
    struct rnode *rn;
    struct rates *rates;
    uint64_t node_id;
    struct bind *binds;
    struct send *waiting;
    uv_timer_t timer;
    unsigned sends; /* alive, including workers */
    bool closing;
    bool timer_closed;
};

static void maybe_free_engine(struct sms_engine *e)
{
    if (e->closing && e->timer_closed && e->sends == 0)
        free(e);
}

/* ---- receipts ---- */

static enum smpp_id_mode id_mode(enum policy_id_format f)
{
    return f == POLICY_ID_HEX   ? SMPP_ID_HEX
           : f == POLICY_ID_DEC ? SMPP_ID_DEC
                                : SMPP_ID_ASIS;
}

/* The form ids are kept in: decimal for numeric ones. */
static enum smpp_id_mode keep_mode(enum policy_id_format f)
{
    return f == POLICY_ID_ASIS ? SMPP_ID_ASIS : SMPP_ID_DEC;
}

static void receipt_done(void *ud, int status, uint64_t index)
{
    (void)ud;
    (void)index;
    if (status < 0 && status != SR_EEXIST)
        LOG_WARN("event=sms_receipt_not_recorded error=%s",
                 sr_strerror(status));
}

static void on_deliver(void *ud, const struct smpp_pdu *p)
{
    struct bind *b = ud;
    struct smpp_dlr d;
    char err[SR_ERRMSG_SIZE];
    if (smpp_pdu_receipt(p, &d, err, sizeof err) != 0) {
        LOG_INFO("event=sms_mo_ignored smsc=%s from=%s", b->name,
                 p->source_addr);
        return;
    }
    char id[SMPP_ID_SIZE];
    if (smpp_pdu_id_normalize(d.id, id_mode(b->ridf), keep_mode(b->idf), id,
                              err, sizeof err) != 0) {
        LOG_WARN("event=sms_receipt_bad_id smsc=%s id=%s error=\"%s\"", b->name,
                 d.id, err);
        return;
    }
    Sr__SmsReceipt r = SR__SMS_RECEIPT__INIT;
    r.smsc = b->name;
    r.id = id;
    r.state = (uint32_t)d.state;
    r.err = d.err;
    r.node = b->e->node_id;
    Sr__Op op = SR__OP__INIT;
    op.op_case = SR__OP__OP_SMS_RECEIPT;
    op.sms_receipt = &r;
    LOG_INFO("event=sms_receipt smsc=%s id=%s state=%s", b->name, id,
             smpp_dlr_state_name(d.state));
    rnode_propose(b->e->rn, &op, 10000, receipt_done, NULL);
}

static void on_state(void *ud, bool bound, const char *reason)
{
    struct bind *b = ud;
    LOG_INFO("event=sms_bind smsc=%s bound=%d reason=\"%s\"", b->name,
             bound ? 1 : 0, reason);
}

/* ---- binds ---- */

static void bind_free(struct bind *b)
{
    for (unsigned i = 0; i < b->n_c; i++)
        smpp_client_close(b->c[i]);
    free(b);
}

/* A client of b with room in its window, or NULL. */
static struct smpp_client *bind_ready(const struct bind *b)
{
    for (unsigned i = 0; i < b->n_c; i++)
        if (smpp_client_ready(b->c[i]))
            return b->c[i];
    return NULL;
}

/* Some client of b that can submit is bound. */
static bool bind_up(const struct bind *b)
{
    for (unsigned i = 0; i < b->n_c; i++)
        if (smpp_client_bound(b->c[i]) &&
            (smpp_client_ready(b->c[i]) || smpp_client_inflight(b->c[i])))
            return true;
    return false;
}

/* Runs every delivery tick: the policy is matched by content (a changed
 * policy may reuse the old one's address), which costs a few snprintf
 * and strcmp per SMSC. */
void sms_engine_policy(struct sms_engine *e, const struct policy *p)
{
    if (e->closing)
        return;
    for (struct bind *b = e->binds; b; b = b->next)
        b->seen = false;
    for (unsigned i = 0; p && p->sms && i < p->sms->n_smscs; i++) {
        const struct policy_smsc *s = &p->sms->smscs[i];
        char id[600];
        snprintf(id, sizeof id, "%s|%s|%s|%s|%s|%u|%u|%d", s->name, s->host,
                 s->system_id, s->password, s->system_type, s->window, s->binds,
                 s->split);
        struct bind *b;
        for (b = e->binds; b; b = b->next)
            if (strcmp(b->id, id) == 0)
                break;
        if (b == NULL) {
            b = calloc(1, sizeof *b);
            if (b == NULL)
                continue;
            b->e = e;
            snprintf(b->id, sizeof b->id, "%s", id);
            snprintf(b->name, sizeof b->name, "%s", s->name);
            struct smpp_client_opts o = {0};
            o.name = s->name;
            o.address = s->host;
            o.system_id = s->system_id;
            o.password = s->password;
            o.system_type = s->system_type;
            o.window = s->window;
            struct smpp_client_cbs cbs = {on_state, on_deliver};
            char err[SR_ERRMSG_SIZE];
            unsigned want = s->binds + (s->split ? 1 : 0);
            for (unsigned k = 0; k < want && k < 17; k++) {
                o.bind_cmd = !s->split      ? SMPP_BIND_TRANSCEIVER
                             : k < s->binds ? SMPP_BIND_TRANSMITTER
                                            : SMPP_BIND_RECEIVER;
                if (smpp_client_new(e->loop, &o, &cbs, b, &b->c[b->n_c], err,
                                    sizeof err) != 0) {
                    LOG_ERROR("event=sms_bind_failed smsc=%s error=\"%s\"",
                              s->name, err);
                    break;
                }
                b->n_c++;
            }
            if (b->n_c == 0) {
                free(b);
                continue;
            }
            b->next = e->binds;
            e->binds = b;
        }
        b->seen = true;
        b->idf = s->id_format;
        b->ridf = s->receipt_id_format;
        b->sar = s->sar;
        b->per_second = s->per_second;
    }
    for (struct bind **bp = &e->binds; *bp;) {
        struct bind *b = *bp;
        bool busy = false;
        for (struct send *w = e->waiting; w && !b->seen && !busy; w = w->next)
            busy = w->b == b;
        if (!b->seen && !busy) {
            *bp = b->next;
            bind_free(b);
        } else {
            bp = &b->next;
        }
    }
}

void sms_engine_binds(const struct sms_engine *e, unsigned *bound,
                      unsigned *total)
{
    *bound = *total = 0;
    for (struct bind *b = e->binds; b; b = b->next) {
        for (unsigned i = 0; i < b->n_c; i++) {
            (*total)++;
            if (smpp_client_bound(b->c[i]))
                (*bound)++;
        }
    }
}

/* ---- sending ---- */

static void send_free(struct send *s)
{
    free(s->code);
    free(s->rcpt);
    free(s->sender);
    free(s->marker);
    sms_mime_free(&s->mime);
    for (size_t i = 0; s->ids && i < s->msg.nparts + 1; i++)
        free(s->ids[i]);
    free(s->ids);
    sms_message_free(&s->msg);
    struct sms_engine *e = s->e;
    e->sends--;
    free(s);
    maybe_free_engine(e);
}

static void finish(struct send *s, unsigned outcome, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void finish(struct send *s, unsigned outcome, const char *fmt, ...)
{
    struct sms_outcome o;
    memset(&o, 0, sizeof o);
    o.outcome = outcome;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o.reply, sizeof o.reply, fmt, ap);
    va_end(ap);
    if (s->b != NULL)
        snprintf(o.smsc, sizeof o.smsc, "%s", s->b->name);
    if (outcome == DELIVERY_SUBMITTED) {
        o.ids = s->ids;
        o.n_ids = s->msg.nparts;
    }
    s->done(s->ud, &o);
    send_free(s);
}

static void waiting_del(struct send *s)
{
    for (struct send **pp = &s->e->waiting; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            return;
        }
    }
}

static void maybe_done(struct send *s)
{
    if (s->pending > 0 ||
        (s->next_part < s->msg.nparts && !s->temp && !s->perm))
        return;
    waiting_del(s);
    if (s->perm)
        finish(s, DELIVERY_BOUNCED, "%s", s->why);
    else if (s->temp)
        finish(s, DELIVERY_DEFERRED, "%s", s->why);
    else
        finish(s, DELIVERY_SUBMITTED, "submitted to %s: %zu part%s", s->b->name,
               s->msg.nparts, s->msg.nparts == 1 ? "" : "s");
}

static void pump(uv_timer_t *t);

struct part_ctx {
    struct send *s;
    unsigned part;
};

static void part_done(void *ud, int status, const char *message_id)
{
    struct part_ctx *pc = ud;
    struct send *s = pc->s;
    unsigned part = pc->part;
    free(pc);
    s->pending--;
    if (status == 0) {
        char id[SMPP_ID_SIZE], err[SR_ERRMSG_SIZE];
        if (smpp_pdu_id_normalize(message_id ? message_id : "",
                                  id_mode(s->b->idf), keep_mode(s->b->idf), id,
                                  err, sizeof err) != 0) {
            s->temp = 1;
            snprintf(s->why, sizeof s->why,
                     "451 4.4.0 %s gave an unusable message id: %s", s->b->name,
                     err);
        } else {
            s->ids[part] = strdup(id);
        }
    } else if (status == SMPP_RTHROTTLED || status == SMPP_RMSGQFUL) {
        s->temp = 1;
        s->b->paused_until = uv_now(s->e->loop) + THROTTLE_PAUSE_MS;
        snprintf(s->why, sizeof s->why, "451 4.4.5 %s throttled (0x%02x)",
                 s->b->name, (unsigned)status);
    } else if (status < 0) {
        s->temp = 1;
        snprintf(s->why, sizeof s->why, "451 4.4.2 %s: %s", s->b->name,
                 sr_strerror(status));
    } else if (status == SMPP_RSYSERR || status == 0x45 /* RSUBMITFAIL */) {
        s->temp = 1;
        snprintf(s->why, sizeof s->why,
                 "451 4.4.0 %s: temporary SMPP error 0x%02x", s->b->name,
                 (unsigned)status);
    } else {
        s->perm = 1;
        snprintf(s->why, sizeof s->why, "554 5.4.0 %s refused: SMPP 0x%02x",
                 s->b->name, (unsigned)status);
    }
    struct sms_engine *e = s->e;
    maybe_done(s);
    /* the window has room again: the next parts go now, not at the next
     * tick (with a window of 1 that tick would be the rate) */
    if (!e->closing && e->waiting != NULL)
        uv_timer_start(&e->timer, pump, 0, PUMP_MS);
}

/* Submits the parts that the window and the rates let go now. */
static void pump_one(struct send *s, uint64_t now)
{
    struct sms_engine *e = s->e;
    while (s->next_part < s->msg.nparts && !s->temp && !s->perm &&
           bind_ready(s->b) != NULL && now >= s->b->paused_until) {
        if (s->b->per_second) {
            char scope[64];
            snprintf(scope, sizeof scope, "smsc:%s", s->b->name);
            if (!rates_take_scope(e->rates, scope,
                                  (uint64_t)s->b->per_second * 3600,
                                  s->b->per_second, sr_wall_ms()))
                break; /* no token now: the busy limit below still counts */
        }
        const struct sms_part *p = &s->msg.parts[s->next_part];
        struct smpp_sm m = {0};
        m.source_ton = s->from.ton;
        m.source_npi = s->from.npi;
        m.source_addr = s->from.addr;
        m.dest_ton = SMS_TON_INTERNATIONAL;
        m.dest_npi = SMS_NPI_E164;
        m.dest_addr = s->e164 + 1; /* digits, no '+' */
        m.esm_class = p->esm_class;
        m.data_coding = p->data_coding;
        m.message = p->data;
        m.message_len = p->len;
        m.sar = p->sar;
        m.sar_msg_ref_num = p->sar_msg_ref_num;
        m.sar_total_segments = p->sar_total_segments;
        m.sar_segment_seqnum = p->sar_segment_seqnum;
        struct part_ctx *pc = malloc(sizeof *pc);
        if (pc == NULL)
            break;
        pc->s = s;
        pc->part = s->next_part;
        char err[SR_ERRMSG_SIZE];
        int rc = smpp_client_submit(bind_ready(s->b), &m, part_done, pc, err,
                                    sizeof err);
        if (rc != 0) {
            free(pc);
            if (rc == SR_EFULL)
                break; /* the window is full: later */
            /* Only a PDU that cannot be encoded is permanent; a failed
             * write or allocation is tried again. */
            if (rc == SR_EINVAL) {
                s->perm = 1;
                snprintf(s->why, sizeof s->why, "554 5.6.0 cannot encode: %s",
                         err);
            } else {
                s->temp = 1;
                snprintf(s->why, sizeof s->why, "451 4.4.2 %s: %s", s->b->name,
                         err);
            }
            break;
        }
        s->pending++;
        s->next_part++;
    }
    if (s->next_part < s->msg.nparts && !s->temp && !s->perm &&
        now > s->since + WAIT_MAX_MS) {
        s->temp = 1;
        snprintf(s->why, sizeof s->why, "451 4.4.5 %s busy", s->b->name);
    }
    maybe_done(s);
}

static void pump(uv_timer_t *t)
{
    struct sms_engine *e = t->data;
    uint64_t now = uv_now(e->loop);
    for (struct send *s = e->waiting, *next; s; s = next) {
        next = s->next;
        pump_one(s, now);
    }
}

static int hop_cmp(const void *a, const void *b);

static struct bind *bind_named(struct sms_engine *e, const char *name)
{
    for (struct bind *b = e->binds; b; b = b->next)
        if (strcmp(b->name, name) == 0)
            return b;
    return NULL;
}

static struct rstat *rstat_get(struct sms_engine *e, const char *prefix,
                               const char *smsc)
{
    for (struct rstat *r = e->stats; r; r = r->next)
        if (strcmp(r->prefix, prefix) == 0 && strcmp(r->smsc, smsc) == 0)
            return r;
    struct rstat *r = calloc(1, sizeof *r);
    if (r != NULL) {
        snprintf(r->prefix, sizeof r->prefix, "%s", prefix);
        snprintf(r->smsc, sizeof r->smsc, "%s", smsc);
        r->next = e->stats;
        e->stats = r;
    }
    return r;
}

static bool usable(struct bind *b, uint64_t now)
{
    return b != NULL && bind_up(b) && now >= b->paused_until;
}

/* The SMSC a message of the route takes now: among the usable ones, the
 * one furthest below its contractual share (by this node's counts: every
 * node keeps the shares, so the cluster does), else the first by priority
 * and cost. count: count the message. */
static struct bind *choose(struct sms_engine *e, const char *prefix,
                           const struct hop *hops, unsigned n, uint64_t now,
                           bool count)
{
    uint64_t total = 0;
    for (unsigned h = 0; h < n; h++) {
        struct rstat *r = rstat_get(e, prefix, hops[h].name);
        total += r ? r->sent : 0;
    }
    struct bind *best = NULL, *first = NULL;
    double best_deficit = 0;
    for (unsigned h = 0; h < n; h++) {
        struct bind *b = bind_named(e, hops[h].name);
        if (!usable(b, now))
            continue;
        if (first == NULL)
            first = b;
        struct rstat *r = rstat_get(e, prefix, hops[h].name);
        double deficit = hops[h].share / 100.0 * (double)(total + 1) -
                         (double)(r ? r->sent : 0);
        if (hops[h].share > 0 && deficit > best_deficit) {
            best = b;
            best_deficit = deficit;
        }
    }
    struct bind *b = best ? best : first;
    if (b != NULL && count) {
        struct rstat *r = rstat_get(e, prefix, b->name);
        if (r != NULL)
            r->sent++;
    }
    return b;
}

static struct bind *pick(struct sms_engine *e, const char *prefix,
                         const struct hop *hops, unsigned n, uint64_t now)
{
    return choose(e, prefix, hops, n, now, true);
}

/* The hops of route r, best first. */
static unsigned route_hops(const struct policy *p,
                           const struct policy_sms_route *r, struct hop *out)
{
    struct policy_sms_hop hops[MAX_HOPS];
    unsigned n = r->n_hops < MAX_HOPS ? r->n_hops : MAX_HOPS;
    memcpy(hops, r->hops, n * sizeof *hops);
    qsort(hops, n, sizeof *hops, hop_cmp);
    for (unsigned i = 0; i < n; i++) {
        snprintf(out[i].name, sizeof out[i].name, "%s",
                 p->sms->smscs[hops[i].smsc].name);
        out[i].share = hops[i].share;
    }
    return n;
}

size_t sms_engine_routes(struct sms_engine *e, const struct policy *p,
                         void (*fn)(void *ud, const char *prefix,
                                    const char *smsc, unsigned priority,
                                    unsigned cost, unsigned share, bool bound,
                                    bool paused, uint64_t sent),
                         void *ud)
{
    size_t n = 0;
    uint64_t now = uv_now(e->loop);
    for (unsigned i = 0; p && p->sms && i < p->sms->n_routes; i++) {
        const struct policy_sms_route *r = &p->sms->routes[i];
        for (unsigned h = 0; h < r->n_hops; h++) {
            const char *name = p->sms->smscs[r->hops[h].smsc].name;
            struct bind *b = bind_named(e, name);
            struct rstat *st = rstat_get(e, r->prefix, name);
            fn(ud, r->prefix, name, r->hops[h].priority, r->hops[h].cost,
               r->hops[h].share, b && bind_up(b), b && now < b->paused_until,
               st ? st->sent : 0);
            n++;
        }
    }
    return n;
}

int sms_engine_test(struct sms_engine *e, const struct policy *p,
                    const char *number, char *e164, char *prefix, size_t plen,
                    char *smsc, size_t slen)
{
    prefix[0] = smsc[0] = '\0';
    if (sms_e164_normalize(number, strlen(number), e164, NULL, 0) != 0)
        return SR_EINVAL;
    const struct policy_sms_route *r =
        p && p->sms ? policy_sms_route_for(p->sms, e164) : NULL;
    if (r == NULL)
        return SR_ENOTFOUND;
    snprintf(prefix, plen, "%s", r->prefix);
    struct hop hops[MAX_HOPS];
    unsigned n = route_hops(p, r, hops);
    struct bind *b = choose(e, r->prefix, hops, n, uv_now(e->loop), false);
    snprintf(smsc, slen, "%s", b ? b->name : "");
    return b ? 0 : SR_ENOTFOUND;
}

static void extract(uv_work_t *req)
{
    struct send *s = req->data;
    s->xrc = sms_mime_extract((const char *)s->body, s->len, &s->mime, s->xerr,
                              sizeof s->xerr);
}

/* The text, sender and route are known: encode and start submitting. */
static void start(struct send *s)
{
    struct sms_engine *e = s->e;
    if (s->xrc != 0) {
        finish(s, DELIVERY_BOUNCED, "554 5.6.0 no text for an SMS: %s",
               s->xerr);
        return;
    }
    const char *at = strrchr(s->rcpt, '@');
    char err[SR_ERRMSG_SIZE];
    if (sms_e164_normalize(s->rcpt, at ? (size_t)(at - s->rcpt) : 0, s->e164,
                           err, sizeof err) != 0) {
        finish(s, DELIVERY_BOUNCED, "550 5.1.3 %s", err);
        return;
    }
    const char *sender = s->sender;
    if (s->subject == SMS_SUBJECT_SENDER && s->mime.subject[0])
        sender = s->mime.subject;
    else if (s->sender_from_header && s->mime.from_local[0])
        sender = s->mime.from_local;
    if (sender == NULL || sms_sender_classify(sender, strlen(sender), &s->from,
                                              err, sizeof err) != 0) {
        finish(s, DELIVERY_BOUNCED, "550 5.1.7 bad SMS sender: %s",
               sender ? err : "none");
        return;
    }
    /* the text: subject first when the policy says so */
    size_t n;
    char *text = sms_mime_compose(&s->mime, s->subject == SMS_SUBJECT_PREPEND,
                                  s->marker, &n);
    if (text == NULL) {
        finish(s, DELIVERY_DEFERRED, "451 4.3.0 out of memory");
        return;
    }
    /* the route: bound SMSCs of the longest prefix (shares, priority,
     * cost) */
    uint64_t now = uv_now(e->loop);
    s->b = pick(e, s->prefix, s->hops, s->n_hops, now);
    if (s->b == NULL) {
        free(text);
        finish(s, DELIVERY_DEFERRED, "451 4.4.1 no SMSC bound for %s",
               s->n_hops ? s->e164 : "this number (no route)");
        return;
    }
    /* a reference the same on every try: from the code and recipient */
    uint32_t h = 2166136261u;
    for (const char *p = s->code; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    h = (h ^ s->idx) * 16777619u;
    struct sms_encode_opts o = {s->b->sar ? SMS_CONCAT_SAR : SMS_CONCAT_UDH,
                                (uint16_t)(h ^ (h >> 16)), s->max_parts,
                                s->truncate ? SMS_OVERFLOW_TRUNCATE
                                            : SMS_OVERFLOW_REJECT};
    int rc = sms_encode(text, n, &o, &s->msg, err, sizeof err);
    free(text);
    if (rc != 0) {
        finish(s, DELIVERY_BOUNCED, "554 5.3.4 SMS text: %s", err);
        return;
    }
    s->ids = calloc(s->msg.nparts + 1, sizeof *s->ids);
    if (s->ids == NULL) {
        finish(s, DELIVERY_DEFERRED, "451 4.3.0 out of memory");
        return;
    }
    s->since = now;
    s->next = e->waiting;
    e->waiting = s;
    pump_one(s, now);
}

static void extracted(uv_work_t *req, int status)
{
    struct send *s = req->data;
    if (status != 0 || s->e->closing) {
        finish(s, DELIVERY_DEFERRED, "451 4.3.0 node stopping");
        return;
    }
    start(s);
}

static int hop_cmp(const void *a, const void *b)
{
    const struct policy_sms_hop *x = a, *y = b;
    if (x->priority != y->priority)
        return x->priority < y->priority ? -1 : 1;
    return (x->cost > y->cost) - (x->cost < y->cost);
}

int sms_send(struct sms_engine *e, const struct policy *p, const char *customer,
             const char *code, const char *rcpt, unsigned idx,
             const uint8_t *body, size_t len,
             void (*done)(void *ud, const struct sms_outcome *o), void *ud)
{
    const struct policy_customer *cu = policy_find(p, customer);
    if (cu == NULL || cu->sms == NULL)
        return SR_EINVAL;
    struct send *s = calloc(1, sizeof *s);
    if (s == NULL)
        return SR_ENOMEM;
    s->e = e;
    e->sends++;
    s->code = strdup(code);
    s->rcpt = strdup(rcpt);
    s->idx = idx;
    s->body = body;
    s->len = len;
    s->sender = cu->sms->sender ? strdup(cu->sms->sender) : NULL;
    s->marker =
        cu->sms->signature_marker ? strdup(cu->sms->signature_marker) : NULL;
    s->sender_from_header = cu->sms->sender_from_header;
    s->truncate = cu->sms->truncate;
    s->subject = cu->sms->subject;
    s->max_parts = cu->sms->max_parts;
    s->done = done;
    s->ud = ud;
    /* the route's candidates, best first */
    const char *at = strrchr(rcpt, '@');
    char e164[SMS_E164_SIZE];
    if (at &&
        sms_e164_normalize(rcpt, (size_t)(at - rcpt), e164, NULL, 0) == 0) {
        const struct policy_sms_route *r = policy_sms_route_for(p->sms, e164);
        if (r != NULL) {
            s->n_hops = route_hops(p, r, s->hops);
            snprintf(s->prefix, sizeof s->prefix, "%s", r->prefix);
        }
    }
    if (!s->code || !s->rcpt || (cu->sms->sender && !s->sender) ||
        (cu->sms->signature_marker && !s->marker)) {
        send_free(s);
        return SR_ENOMEM;
    }
    s->req.data = s;
    if (uv_queue_work(e->loop, &s->req, extract, extracted) != 0) {
        send_free(s);
        return SR_ENOMEM;
    }
    return 0;
}

struct sms_engine *sms_engine_new(uv_loop_t *loop, struct rnode *rn,
                                  struct rates *rates, uint64_t node_id)
{
    struct sms_engine *e = calloc(1, sizeof *e);
    if (e == NULL)
        return NULL;
    e->loop = loop;
    e->rn = rn;
    e->rates = rates;
    e->node_id = node_id;
    uv_timer_init(loop, &e->timer);
    e->timer.data = e;
    uv_timer_start(&e->timer, pump, PUMP_MS, PUMP_MS);
    return e;
}

static void timer_closed(uv_handle_t *h)
{
    struct sms_engine *e = h->data;
    while (e->stats) {
        struct rstat *r = e->stats;
        e->stats = r->next;
        free(r);
    }
    e->timer_closed = true;
    maybe_free_engine(e);
}

void sms_engine_free(struct sms_engine *e)
{
    if (e == NULL)
        return;
    e->closing = true;
    e->sends++; /* keeps e while sends finish below */
    /* Sends with submits in flight end when their bind closes (the
     * submits fail); the others end now, while their binds exist. */
    for (struct send *s = e->waiting, *next; s; s = next) {
        next = s->next;
        s->temp = 1;
        snprintf(s->why, sizeof s->why, "451 4.3.0 node stopping");
        if (s->pending == 0)
            maybe_done(s);
    }
    while (e->binds) {
        struct bind *b = e->binds;
        e->binds = b->next;
        bind_free(b);
    }
    e->sends--;
    uv_timer_stop(&e->timer);
    uv_close((uv_handle_t *)&e->timer, timer_closed);
}
