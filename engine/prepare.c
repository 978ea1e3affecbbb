/* prepare.c - re-wrap and DKIM on worker threads (see prepare.h). */
#include "engine/prepare.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/dkim.h"
#include "engine/rewrap.h"
#include "node/errors.h"
#include "node/log.h"
#include "queue/policy.h"

#define KEY_FILE_MAX (64 * 1024)

/* A signer for one customer's key set; identified by everything that goes
 * into it, so a policy change makes a new one. Kept until prepare_free:
 * work in flight may use any of them. */
struct signer {
    struct signer *next;
    char *id;
    struct dkim_signer *s; /* NULL: could not be made (err) */
    uint64_t made_ms;
    char err[SR_ERRMSG_SIZE];
};

struct prepare {
    struct signer *signers;
};

struct work {
    uv_work_t req;
    struct rewrap_policy rp; /* owned copy */
    struct rewrap_input in;  /* code/rcpt owned, msg borrowed */
    struct dkim_signer *signer;
    char signer_err[SR_ERRMSG_SIZE];
    struct prepare_out out;
    void (*done)(void *ud, const struct prepare_out *out);
    void *ud;
};

struct prepare *prepare_new(void)
{
    rewrap_global_init();
    return calloc(1, sizeof(struct prepare));
}

void prepare_free(struct prepare *p)
{
    if (p == NULL)
        return;
    while (p->signers) {
        struct signer *s = p->signers;
        p->signers = s->next;
        dkim_signer_free(s->s);
        free(s->id);
        free(s);
    }
    free(p);
}

static char *read_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        sr_err(err, errlen, SR_EIO, "cannot open %s", path);
        return NULL;
    }
    char *buf = malloc(KEY_FILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, KEY_FILE_MAX + 1, f) : 0;
    fclose(f);
    if (buf == NULL || n == 0 || n > KEY_FILE_MAX) {
        free(buf);
        sr_err(err, errlen, SR_EIO, "%s: empty, unreadable or too large", path);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

static struct dkim_signer *signer_for(struct prepare *p, const char *customer,
                                      const struct policy_rewrap *r,
                                      uint64_t now, char *err, size_t errlen)
{
    if (r->n_dkim == 0)
        return NULL;
    char id[4096];
    size_t n = (size_t)snprintf(id, sizeof id, "%s", customer);
    for (unsigned i = 0; i < r->n_dkim && n < sizeof id; i++)
        n += (size_t)snprintf(id + n, sizeof id - n, "|%s|%s|%s",
                              r->dkim[i].domain, r->dkim[i].selector,
                              r->dkim[i].key_file);
    for (unsigned i = 0; i < r->n_dkim_headers && n < sizeof id; i++)
        n += (size_t)snprintf(id + n, sizeof id - n, "|h:%s",
                              r->dkim_headers[i]);
    struct signer *s;
    for (s = p->signers; s; s = s->next)
        if (strcmp(s->id, id) == 0)
            break;
    if (s != NULL && (s->s != NULL || now < s->made_ms + PREPARE_RETRY_MS)) {
        if (s->s == NULL)
            snprintf(err, errlen, "%s", s->err);
        return s->s;
    }
    if (s == NULL) {
        s = calloc(1, sizeof *s);
        if (s == NULL || (s->id = strdup(id)) == NULL) {
            free(s);
            snprintf(err, errlen, "out of memory");
            return NULL;
        }
        s->next = p->signers;
        p->signers = s;
    }
    s->made_ms = now;
    s->err[0] = '\0';
    struct dkim_signer_key keys[8];
    char *pems[8] = {0};
    const char *hdrs[101];
    int rc = 0;
    for (unsigned i = 0; i < r->n_dkim && i < 8 && rc == 0; i++) {
        pems[i] = read_file(r->dkim[i].key_file, s->err, sizeof s->err);
        if (pems[i] == NULL)
            rc = SR_EIO;
        keys[i].domain = r->dkim[i].domain;
        keys[i].selector = r->dkim[i].selector;
        keys[i].pem = pems[i];
    }
    for (unsigned i = 0; i < r->n_dkim_headers && i < 100; i++)
        hdrs[i] = r->dkim_headers[i];
    hdrs[r->n_dkim_headers < 100 ? r->n_dkim_headers : 100] = NULL;
    if (rc == 0)
        rc = dkim_signer_new(keys, r->n_dkim < 8 ? r->n_dkim : 8,
                             r->n_dkim_headers ? hdrs : NULL, 0, &s->s, s->err,
                             sizeof s->err);
    for (unsigned i = 0; i < 8; i++) {
        if (pems[i] != NULL) {
            memset(pems[i], 0, strlen(pems[i]));
            free(pems[i]);
        }
    }
    if (rc != 0) {
        s->s = NULL;
        LOG_ERROR("event=dkim_key_unusable customer=%s error=\"%s\"", customer,
                  s->err);
        snprintf(err, errlen, "%s", s->err);
    }
    return s->s;
}

static void work_free(struct work *w)
{
    rewrap_policy_free(&w->rp);
    free((char *)w->in.code);
    free((char *)w->in.rcpt);
    free(w);
}

static void run(uv_work_t *req)
{
    struct work *w = req->data;
    struct rewrap_result res;
    char err[SR_ERRMSG_SIZE] = "";
    const char *msg = w->in.msg;
    size_t len = w->in.len;
    int rc = rewrap_message(&w->rp, &w->in, &res, err, sizeof err);
    if (rc == 0) {
        msg = res.msg;
        len = res.len;
        snprintf(w->out.sender, sizeof w->out.sender, "%s",
                 res.envelope_sender);
        if (res.body != REWRAP_BODY_MODIFIED && res.reason[0])
            snprintf(w->out.note, sizeof w->out.note, "body kept: %s",
                     res.reason);
    } else {
        snprintf(w->out.note, sizeof w->out.note, "not re-wrapped: %s", err);
    }
    char *signed_msg = NULL;
    size_t signed_len = 0;
    if (w->signer != NULL &&
        dkim_signer_sign(w->signer, msg, len, &signed_msg, &signed_len, err,
                         sizeof err) != 0) {
        signed_msg = NULL;
        snprintf(w->out.note, sizeof w->out.note, "not signed: %s", err);
    } else if (w->signer == NULL && w->signer_err[0]) {
        snprintf(w->out.note, sizeof w->out.note, "not signed: %s",
                 w->signer_err);
    }
    if (signed_msg != NULL) {
        w->out.msg = signed_msg;
        w->out.len = signed_len;
    } else if (rc == 0) {
        w->out.msg = res.msg; /* taken */
        w->out.len = res.len;
        res.msg = NULL;
    }
    if (rc == 0)
        rewrap_result_free(&res);
}

static void after(uv_work_t *req, int status)
{
    struct work *w = req->data;
    if (status != 0) { /* cancelled: not run */
        free(w->out.msg);
        w->out.msg = NULL;
        w->out.sender[0] = '\0';
        snprintf(w->out.note, sizeof w->out.note, "cancelled");
    }
    w->done(w->ud, &w->out);
    work_free(w);
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static char **dup_list(char *const *l, unsigned n)
{
    char **o = calloc(n ? n : 1, sizeof *o);
    for (unsigned i = 0; o && i < n; i++)
        o[i] = strdup(l[i]);
    return o;
}

int prepare_start(struct prepare *p, uv_loop_t *loop, const struct policy *pol,
                  const char *customer, const char *code, const char *rcpt,
                  uint32_t idx, const char *msg, size_t len,
                  void (*done)(void *ud, const struct prepare_out *out),
                  void *ud)
{
    const struct policy_customer *cu = policy_find(pol, customer);
    if (cu == NULL || cu->rewrap == NULL || pol->tracking == NULL)
        return SR_EINVAL;
    const struct policy_rewrap *r = cu->rewrap;
    struct work *w = calloc(1, sizeof *w);
    if (w == NULL)
        return SR_ENOMEM;
    w->rp.customer_id = strdup(customer);
    w->rp.bounce_domain = strdup(r->bounce_domain);
    w->rp.feedback_campaign = dup_or_null(r->feedback_campaign);
    w->rp.headers_to_remove = dup_list(r->remove_headers, r->n_remove_headers);
    w->rp.n_headers_to_remove = r->n_remove_headers;
    w->rp.bulk = r->bulk;
    w->rp.unsubscribe_mailto = dup_or_null(r->unsubscribe_mailto);
    w->rp.unsubscribe_url_base = strdup(pol->tracking->base_url);
    w->rp.tracking = r->tracking;
    w->rp.tracking_url_base = strdup(pol->tracking->base_url);
    w->rp.tracking_exclude =
        dup_list(r->tracking_exclude, r->n_tracking_exclude);
    w->rp.n_tracking_exclude = r->n_tracking_exclude;
    w->rp.track_text_parts = r->track_text_parts;
    w->rp.hmac_key = malloc(pol->tracking->secret_len);
    if (w->rp.hmac_key != NULL) {
        memcpy(w->rp.hmac_key, pol->tracking->secret,
               pol->tracking->secret_len);
        w->rp.hmac_key_len = pol->tracking->secret_len;
    }
    w->in.msg = msg;
    w->in.len = len;
    w->in.code = strdup(code);
    w->in.rcpt = strdup(rcpt);
    w->in.rcpt_index = idx;
    w->in.now = (int64_t)time(NULL); /* for a missing Date: */
    if (!w->rp.customer_id || !w->rp.bounce_domain ||
        !w->rp.headers_to_remove || !w->rp.unsubscribe_url_base ||
        !w->rp.tracking_url_base || !w->rp.tracking_exclude ||
        !w->rp.hmac_key || !w->in.code || !w->in.rcpt) {
        work_free(w);
        return SR_ENOMEM;
    }
    w->signer = signer_for(p, customer, r, uv_now(loop), w->signer_err,
                           sizeof w->signer_err);
    w->done = done;
    w->ud = ud;
    w->req.data = w;
    if (uv_queue_work(loop, &w->req, run, after) != 0) {
        work_free(w);
        return SR_ENOMEM;
    }
    return 0;
}
