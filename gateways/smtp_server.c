/* smtp_server.c - SMTP listeners around the session machine (see
 * smtp_server.h). */
#include "gateways/smtp_server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateways/auth.h"
#include "engine/sms_mime.h"
#include "engine/sms_text.h"
#include "gateways/smtp_session.h"
#include "node/errors.h"
#include "node/uvout.h"
#include "node/log.h"

/* One listening socket; freed in its close callback. Static listeners come
 * from smtp.listen (port 0 here); the others from the policy's
 * customers[].listen_port and follow it. */
struct listener {
    struct listener *next;
    uv_tcp_t tcp;
    struct smtp_server *srv;
    char customer[65];
    unsigned port;
};

/* One client connection; owned by the server, freed after both handles
 * (socket and timer) have closed. */
struct conn {
    struct conn *next, *prev;
    struct smtp_server *srv;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown;
    struct smtp_session *s;
    struct tls_conn *tls;
    struct ingest_job *job;
    char peer[INET6_ADDRSTRLEN];
    char customer[65];
    int handles;
    int closing;
    int reading;
    int counted; /* counts against the customer's session limit */
};

struct smtp_server {
    struct smtp_server_deps d;
    struct listener *listeners;
    struct conn *conns;
    unsigned sessions;
    int handles;
    int closing;
    void (*close_cb)(void *);
    void *close_arg;
};

static void conn_close(struct conn *c);
/* A recipient in one of the customer's SMS domains must be a phone
 * number (engine/sms_text.h). */
static const char *s_rcpt_check(void *ud, const char *addr)
{
    struct conn *c = ud;
    const struct smtp_server_deps *d = &c->srv->d;
    const struct policy_customer *cu =
        policy_find(d->policy(d->ud), c->customer);
    const char *at = strrchr(addr, '@');
    if (cu == NULL || cu->sms == NULL || at == NULL ||
        !policy_sms_domain(cu->sms, at + 1))
        return NULL;
    char e164[SMS_E164_SIZE];
    if (sms_e164_normalize(addr, (size_t)(at - addr), e164, NULL, 0) != 0)
        return "550 5.1.3 Not a valid mobile number (E.164, at most 15 "
               "digits)";
    return NULL;
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void srv_unref(struct smtp_server *srv);
static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

static void send_raw(struct conn *c, char *buf, size_t len)
{
    if (c->closing) {
        free(buf);
        return;
    }
    /* An error here shows up as a read error, which closes the session. */
    uvout_write((uv_stream_t *)&c->tcp, buf, len, NULL, NULL);
}

static void flush_tls(struct conn *c)
{
    char *out;
    size_t n;
    while ((n = tls_conn_drain(c->tls, &out)) > 0)
        send_raw(c, out, n);
}

static void s_write(void *ud, const char *buf, size_t len)
{
    struct conn *c = ud;
    if (c->tls != NULL && tls_conn_established(c->tls)) {
        tls_conn_write(c->tls, buf, len);
        flush_tls(c);
        return;
    }
    /* Most replies fit the socket at once: nothing is copied then. */
    if (!c->closing)
        uvout_write_copy((uv_stream_t *)&c->tcp, buf, len);
}

static void s_starttls(void *ud)
{
    struct conn *c = ud;
    c->tls = tls_conn_new(c->srv->d.tls);
    if (c->tls == NULL)
        smtp_session_shutdown(c->s, "TLS not available");
}

/* After a reply that ended a wait (the session has processed what it had
 * buffered): reads stopped while the buffer was full start again. */
static void resume_reading(struct conn *c)
{
    if (!c->reading && !c->closing) {
        c->reading = 1;
        uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
    }
}

static void committed(void *ud, int status, const char *code)
{
    struct conn *c = ud;
    char text[128];
    c->job = NULL;
    if (status == 0) {
        snprintf(text, sizeof text, "2.0.0 OK %s", code);
        smtp_session_reply_message(c->s, 250, text);
    } else if (status == SR_EFULL) {
        smtp_session_reply_message(c->s, 452,
                                   "4.3.1 Insufficient system resources, try "
                                   "again later");
    } else {
        smtp_session_reply_message(c->s, 451,
                                   "4.3.0 Message not kept, try again later");
    }
    resume_reading(c);
}

static void conn_unref(struct conn *c);

static void ingest(struct conn *c, const struct smtp_envelope *env,
                   const char *body, size_t len)
{
    struct ingest_meta meta = {c->customer, c->peer, env->helo,
                               env->tls,    NULL,    0};
    int rc = ingest_submit(c->srv->d.ingest, env, &meta, body, len, committed,
                           c, &c->job);
    if (rc != 0) {
        c->job = NULL;
        committed(c, rc, NULL);
    }
}

/* For a customer whose SMS policy rejects texts over its parts limit, a
 * message with SMS recipients is measured before it is kept: on a worker
 * thread, the text the SMS would carry (engine/sms_mime.h) is encoded
 * (engine/sms_text.h, as for a UDH-splitting SMSC) against max_parts. The
 * session keeps the envelope and body until the reply. */
struct sms_check {
    uv_work_t work;
    struct conn *c;
    const struct smtp_envelope *env;
    const char *body;
    size_t len;
    char *marker;
    bool prepend;
    unsigned max_parts;
    int rc;
    char why[SR_ERRMSG_SIZE];
};

static void sms_check_run(uv_work_t *w)
{
    struct sms_check *k = w->data;
    struct sms_mime m;
    k->rc = sms_mime_extract(k->body, k->len, &m, NULL, 0);
    if (k->rc != 0)
        return; /* no text: the delivery bounces it with the reason */
    size_t n;
    char *t = sms_mime_compose(&m, k->prepend, k->marker, &n);
    if (t == NULL) {
        sms_mime_free(&m);
        k->rc = SR_ENOMEM;
        return;
    }
    struct sms_encode_opts o = {SMS_CONCAT_UDH, 0, k->max_parts,
                                SMS_OVERFLOW_REJECT};
    struct sms_message msg;
    k->rc = sms_encode(t, n, &o, &msg, k->why, sizeof k->why);
    sms_message_free(&msg);
    free(t);
    sms_mime_free(&m);
}

static void sms_check_done(uv_work_t *w, int status)
{
    struct sms_check *k = w->data;
    struct conn *c = k->c;
    if (!c->closing) {
        if (status == 0 && k->rc == SR_EFULL) {
            char text[SR_ERRMSG_SIZE + 40];
            snprintf(text, sizeof text, "5.3.4 SMS text too long: %s", k->why);
            LOG_INFO("event=sms_too_long client=%s customer=%s why=\"%s\"",
                     c->peer, c->customer, k->why);
            smtp_session_reply_message(c->s, 554, text);
            resume_reading(c);
        } else {
            ingest(c, k->env, k->body, k->len);
        }
    }
    free(k->marker);
    free(k);
    conn_unref(c);
}

static void s_message(void *ud, const struct smtp_envelope *env,
                      const char *body, size_t len)
{
    struct conn *c = ud;
    const struct policy_customer *cu =
        policy_find(c->srv->d.policy(c->srv->d.ud), c->customer);
    bool sms = false;
    for (unsigned i = 0;
         cu && cu->sms && !cu->sms->truncate && !sms && i < env->n_rcpts; i++) {
        const char *at = strrchr(env->rcpts[i], '@');
        sms = at && policy_sms_domain(cu->sms, at + 1);
    }
    struct sms_check *k = sms ? calloc(1, sizeof *k) : NULL;
    if (k == NULL) {
        ingest(c, env, body, len);
        return;
    }
    k->c = c;
    k->env = env;
    k->body = body;
    k->len = len;
    k->marker =
        cu->sms->signature_marker ? strdup(cu->sms->signature_marker) : NULL;
    k->prepend = cu->sms->subject == SMS_SUBJECT_PREPEND;
    k->max_parts = cu->sms->max_parts;
    k->work.data = k;
    c->handles++; /* the conn outlives the work */
    if (uv_queue_work(c->srv->d.loop, &k->work, sms_check_run,
                      sms_check_done) != 0) {
        c->handles--;
        free(k->marker);
        free(k);
        ingest(c, env, body, len);
    }
}

/* A password check on a worker thread: PBKDF2 is slow on purpose. */
struct auth_work {
    uv_work_t work;
    struct conn *c;
    char *hash; /* NULL: unknown user (still hashed, same cost) */
    char *user;
    char *pass;
    bool ok;
};

static void auth_run(uv_work_t *w)
{
    struct auth_work *a = w->data;
    /* An unknown user costs the same time as a wrong password. */
    static const char dummy[] = "pbkdf2-sha256$20000$AAAAAAAAAAAAAAAAAAAAAA==$"
                                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    bool ok = auth_verify(a->hash ? a->hash : dummy, a->pass);
    a->ok = ok && a->hash != NULL;
}

static void auth_done(uv_work_t *w, int status)
{
    struct auth_work *a = w->data;
    struct conn *c = a->c;
    if (!c->closing) {
        bool ok = status == 0 && a->ok;
        LOG_INFO("event=smtp_auth client=%s customer=%s user=\"%.64s\" "
                 "result=%s",
                 c->peer, c->customer, a->user, ok ? "ok" : "failed");
        smtp_session_reply_auth(c->s, ok);
        resume_reading(c);
    }
    explicit_bzero(a->pass, strlen(a->pass));
    free(a->pass);
    free(a->user);
    free(a->hash);
    free(a);
    conn_unref(c);
}

static void s_auth(void *ud, const char *user, const char *pass)
{
    struct conn *c = ud;
    const struct policy_customer *cu =
        policy_find(c->srv->d.policy(c->srv->d.ud), c->customer);
    const char *hash = policy_user_hash(cu, user);
    struct auth_work *a = calloc(1, sizeof *a);
    if (a == NULL) {
        smtp_session_reply_auth(c->s, false);
        return;
    }
    a->c = c;
    a->hash = hash ? strdup(hash) : NULL;
    a->user = strdup(user);
    a->pass = strdup(pass);
    a->work.data = a;
    c->handles++; /* the conn outlives the work */
    if (a->user == NULL || a->pass == NULL ||
        uv_queue_work(c->srv->d.loop, &a->work, auth_run, auth_done) != 0) {
        c->handles--;
        free(a->hash);
        free(a->user);
        free(a->pass);
        free(a);
        smtp_session_reply_auth(c->s, false);
    }
}

static void s_close(void *ud)
{
    struct conn *c = ud;
    if (c->tls)
        flush_tls(c);
    conn_close(c);
}

static bool s_mail_allowed(void *ud)
{
    struct conn *c = ud;
    const struct smtp_server_deps *d = &c->srv->d;
    if (d->accepting == NULL || d->accepting(d->ud, c->customer))
        return true;
    LOG_INFO("event=smtp_backpressure client=%s customer=%s", c->peer,
             c->customer);
    return false;
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    (void)hint;
    buf->base = malloc(65536);
    buf->len = buf->base ? 65536 : 0;
}

static void on_timeout(uv_timer_t *t)
{
    struct conn *c = t->data;
    LOG_INFO("event=smtp_timeout client=%s", c->peer);
    smtp_session_shutdown(c->s, "Timeout, closing connection");
}

static void feed_plain(void *ud, const char *buf, size_t len)
{
    struct conn *c = ud;
    if (smtp_session_feed(c->s, buf, len) == SR_EFULL && c->reading) {
        c->reading = 0;
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = st->data;
    if (n < 0) {
        free(buf->base);
        conn_close(c);
        return;
    }
    if (n > 0 && !c->closing) {
        /* RFC 5321 4.5.3.2: a data block timeout inside DATA, the command
         * timeout elsewhere; both restart with every read. */
        const struct sr_config *cfg = c->srv->d.cfg;
        unsigned t = smtp_session_in_data(c->s) ? cfg->data_timeout_s
                                                : cfg->command_timeout_s;
        uv_timer_start(&c->timer, on_timeout, (uint64_t)t * 1000, 0);
        if (c->tls != NULL) {
            int was = tls_conn_established(c->tls);
            int rc = tls_conn_feed(c->tls, buf->base, (size_t)n, feed_plain, c);
            flush_tls(c);
            if (rc != 0) {
                conn_close(c);
            } else if (!was && tls_conn_established(c->tls)) {
                LOG_INFO("event=starttls client=%s version=%s", c->peer,
                         tls_conn_version(c->tls));
                smtp_session_tls_started(c->s);
            }
        } else {
            feed_plain(c, buf->base, (size_t)n);
        }
    }
    free(buf->base);
}

static void conn_freed(uv_handle_t *h)
{
    conn_unref(h->data);
}

static void conn_unref(struct conn *c)
{
    if (--c->handles > 0)
        return;
    struct smtp_server *srv = c->srv;
    smtp_session_free(c->s);
    tls_conn_free(c->tls);
    free(c);
    srv_unref(srv);
}

static void srv_unref(struct smtp_server *srv)
{
    if (--srv->handles == 0 && srv->closing) {
        void (*cb)(void *) = srv->close_cb;
        void *arg = srv->close_arg;
        free(srv);
        if (cb)
            cb(arg);
    }
}

static void shutdown_done(uv_shutdown_t *req, int status)
{
    struct conn *c = req->data;
    (void)status;
    uv_close((uv_handle_t *)&c->tcp, conn_freed);
}

static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    if (c->job)
        ingest_detach(c->job);
    c->job = NULL;
    if (c->counted)
        c->srv->sessions--;
    if (c->prev)
        c->prev->next = c->next;
    else
        c->srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, conn_freed);
    uv_read_stop((uv_stream_t *)&c->tcp);
    /* Let queued replies (221, 421, 554) reach the client first. */
    c->shutdown.data = c;
    if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, shutdown_done) != 0)
        uv_close((uv_handle_t *)&c->tcp, conn_freed);
}

static unsigned customer_sessions(struct smtp_server *srv, const char *name)
{
    unsigned n = 0;
    for (struct conn *c = srv->conns; c; c = c->next)
        if (c->counted && strcmp(c->customer, name) == 0)
            n++;
    return n;
}

static void on_connection(uv_stream_t *server, int status)
{
    struct listener *l = server->data;
    struct smtp_server *srv = l->srv;
    if (status != 0 || srv->closing)
        return;
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return;
    c->srv = srv;
    uv_tcp_init(srv->d.loop, &c->tcp);
    uv_timer_init(srv->d.loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles = 2;
    srv->handles++;
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len);
    if (ss.ss_family == AF_INET6)
        uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer, sizeof c->peer);
    else
        uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof c->peer);
    uv_tcp_nodelay(&c->tcp, 1);

    const struct sr_config *cfg = srv->d.cfg;
    snprintf(c->customer, sizeof c->customer, "%s", l->customer);
    const struct policy *pol = srv->d.policy(srv->d.ud);
    const struct policy_customer *cu = policy_find(pol, c->customer);
    struct smtp_limits lim = {0};
    lim.max_message_size = cu ? cu->max_message_size : 10 << 20;
    lim.max_recipients = cu ? cu->max_recipients : 1000;
    lim.max_bad_commands = 10;
    lim.max_line = 2048;
    lim.tls_available = srv->d.tls != NULL;
    lim.auth_enabled = cu != NULL && cu->n_users > 0 && srv->d.tls != NULL;
    lim.auth_required = cu != NULL && cu->require_auth;
    lim.tls_required = cu != NULL && cu->require_tls;
    struct smtp_callbacks cb = {c,      s_write, s_starttls,     s_message,
                                s_auth, s_close, s_mail_allowed, s_rcpt_check};
    c->s = smtp_session_new(cfg->hostname, &lim, &cb);
    if (c->s == NULL) {
        conn_close(c);
        return;
    }
    c->reading = 1;
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
    uv_timer_start(&c->timer, on_timeout,
                   (uint64_t)cfg->command_timeout_s * 1000, 0);
    if (cu == NULL || !policy_allows(cu, (struct sockaddr *)&ss)) {
        LOG_INFO("event=smtp_refused client=%s customer=%s reason=network",
                 c->peer, c->customer);
        smtp_session_refuse(c->s, "Access denied: client not authorized");
        return;
    }
    if (customer_sessions(srv, c->customer) >= cu->max_sessions) {
        LOG_INFO("event=smtp_refused client=%s customer=%s "
                 "reason=max_sessions",
                 c->peer, c->customer);
        smtp_session_shutdown(c->s, "Too many sessions, try again later");
        return;
    }
    c->counted = 1;
    srv->sessions++;
    LOG_DEBUG("event=smtp_connect client=%s customer=%s", c->peer, c->customer);
    smtp_session_start(c->s);
}

static void listener_closed(uv_handle_t *h)
{
    struct listener *l = h->data;
    struct smtp_server *srv = l->srv;
    free(l);
    srv_unref(srv);
}

static void listener_close(struct listener *l)
{
    struct listener **pp = &l->srv->listeners;
    while (*pp != l)
        pp = &(*pp)->next;
    *pp = l->next;
    uv_close((uv_handle_t *)&l->tcp, listener_closed);
}

/* Opens a listener on host:port for customer. */
static int listener_open(struct smtp_server *srv, const char *host, int port,
                         const char *customer, unsigned policy_port, char *err,
                         size_t errlen)
{
    struct sockaddr_storage ss;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0)
        return sr_err(err, errlen, SR_EINVAL, "bad address %s", host);
    struct listener *l = calloc(1, sizeof *l);
    if (l == NULL)
        return SR_ENOMEM;
    l->srv = srv;
    l->port = policy_port;
    snprintf(l->customer, sizeof l->customer, "%s", customer);
    uv_tcp_init(srv->d.loop, &l->tcp);
    l->tcp.data = l;
    srv->handles++;
    l->next = srv->listeners;
    srv->listeners = l;
    int rc = uv_tcp_bind(&l->tcp, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->tcp, 511, on_connection);
    if (rc != 0) {
        listener_close(l);
        return sr_err(err, errlen, SR_EIO, "%s:%d: %s", host, port,
                      uv_strerror(rc));
    }
    return 0;
}

int smtp_server_start(const struct smtp_server_deps *deps,
                      struct smtp_server **out, char *err, size_t errlen)
{
    struct smtp_server *srv = calloc(1, sizeof *srv);
    if (srv == NULL)
        return SR_ENOMEM;
    srv->d = *deps;
    const struct sr_config *cfg = deps->cfg;
    for (unsigned i = 0; i < cfg->n_smtp_listen; i++) {
        char host[100], msg[200];
        int port;
        int rc =
            config_split_address(cfg->smtp_listen[i], host, sizeof host, &port);
        if (rc == 0)
            rc = listener_open(srv, host, port, cfg->smtp_customer, 0, msg,
                               sizeof msg);
        else
            snprintf(msg, sizeof msg, "bad address");
        if (rc != 0) {
            smtp_server_close(srv, NULL, NULL);
            return sr_err(err, errlen, rc, "smtp.listen[%u] %s: %s", i,
                          cfg->smtp_listen[i], msg);
        }
    }
    *out = srv;
    smtp_server_apply_policy(srv);
    return 0;
}

void smtp_server_apply_policy(struct smtp_server *srv)
{
    if (srv->closing)
        return;
    const struct policy *pol = srv->d.policy(srv->d.ud);
    /* Close listeners whose port left the policy; retarget the others. */
    for (struct listener *l = srv->listeners, *next; l; l = next) {
        next = l->next;
        if (l->port == 0)
            continue;
        const struct policy_customer *owner = NULL;
        for (unsigned i = 0; pol && i < pol->n_customers; i++)
            if (pol->customers[i].listen_port == l->port)
                owner = &pol->customers[i];
        if (owner == NULL) {
            LOG_INFO("event=smtp_listener_closed port=%u customer=%s", l->port,
                     l->customer);
            listener_close(l);
        } else {
            snprintf(l->customer, sizeof l->customer, "%s", owner->name);
        }
    }
    for (unsigned i = 0; pol && i < pol->n_customers; i++) {
        const struct policy_customer *cu = &pol->customers[i];
        if (cu->listen_port == 0)
            continue;
        struct listener *l = srv->listeners;
        while (l && l->port != cu->listen_port)
            l = l->next;
        if (l != NULL)
            continue;
        char msg[200];
        const char *host = srv->d.cfg->smtp_customer_host;
        if (listener_open(srv, host, (int)cu->listen_port, cu->name,
                          cu->listen_port, msg, sizeof msg) == 0)
            LOG_INFO("event=smtp_listener_opened address=%s:%u customer=%s",
                     host, cu->listen_port, cu->name);
        else
            LOG_ERROR("event=smtp_listener_failed customer=%s error=\"%s\"",
                      cu->name, msg);
    }
}

void smtp_server_close(struct smtp_server *srv, void (*cb)(void *), void *arg)
{
    srv->closing = 1;
    srv->close_cb = cb;
    srv->close_arg = arg;
    while (srv->listeners)
        listener_close(srv->listeners);
    while (srv->conns) {
        struct conn *c = srv->conns;
        smtp_session_shutdown(c->s, "Service shutting down");
        conn_close(c); /* no-op if the session already closed it */
    }
    if (srv->handles == 0) {
        free(srv);
        if (cb)
            cb(arg);
    }
}

unsigned smtp_server_sessions(const struct smtp_server *srv)
{
    return srv->sessions;
}
