/* floatip.c - the leader holds the floating IP (see floatip.h). */
#include "node/floatip.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/errors.h"
#include "node/log.h"

#define POLL_MS 20

enum fstate { F_RELEASED, F_ADDING, F_HELD, F_DELETING };

struct floatip {
    uv_loop_t *loop;
    const struct sr_config *cfg;
    struct rnode *rn;
    uv_timer_t timer;
    uv_process_t proc;
    int proc_running;
    enum fstate state;
    char ip[64]; /* without the prefix, for arping */
    int stopping;
    int handles;
    void (*stop_cb)(void *);
    void *stop_arg;
};

static void step(struct floatip *f);

static void maybe_done(struct floatip *f)
{
    if (!f->stopping || f->proc_running || f->state == F_HELD || f->handles > 0)
        return;
    void (*cb)(void *) = f->stop_cb;
    void *arg = f->stop_arg;
    free(f);
    if (cb)
        cb(arg);
}

static void proc_closed(uv_handle_t *h)
{
    struct floatip *f = h->data;
    f->proc_running = 0;
    if (f->stopping && f->state == F_HELD) {
        step(f); /* delete it before exiting */
        return;
    }
    if (f->stopping) {
        maybe_done(f);
        return;
    }
    step(f);
}

static void arp_exit(uv_process_t *p, int64_t status, int sig)
{
    (void)status;
    (void)sig;
    uv_close((uv_handle_t *)p, (uv_close_cb)free);
}

/* Gratuitous ARP, fire and forget: it only speeds clients up. */
static void announce(struct floatip *f)
{
    char count[16];
    snprintf(count, sizeof count, "%u", f->cfg->floating_arp_count);
    char *args[] = {
        "arping", "-q", "-U", "-c", count, "-I", f->cfg->floating_interface,
        f->ip,    NULL};
    uv_process_t *p = calloc(1, sizeof *p);
    uv_process_options_t o = {0};
    o.file = "arping";
    o.args = args;
    o.exit_cb = arp_exit;
    if (p == NULL || uv_spawn(f->loop, p, &o) != 0) {
        LOG_WARN("event=floating_ip_arp_failed");
        if (p != NULL)
            uv_close((uv_handle_t *)p, (uv_close_cb)free);
    }
}

static void ip_exit(uv_process_t *p, int64_t status, int sig)
{
    struct floatip *f = p->data;
    (void)sig;
    if (f->state == F_ADDING) {
        /* 2 = "File exists": we hold it already (a restart). */
        if (status == 0 || status == 2) {
            f->state = F_HELD;
            LOG_INFO("event=floating_ip_acquired address=%s interface=%s",
                     f->cfg->floating_address, f->cfg->floating_interface);
            announce(f);
        } else {
            f->state = F_RELEASED;
            LOG_ERROR("event=floating_ip_add_failed address=%s status=%lld",
                      f->cfg->floating_address, (long long)status);
        }
    } else if (f->state == F_DELETING) {
        f->state = F_RELEASED;
        if (status == 0)
            LOG_INFO("event=floating_ip_released address=%s",
                     f->cfg->floating_address);
    }
    uv_close((uv_handle_t *)p, proc_closed);
}

static void run_ip(struct floatip *f, const char *verb)
{
    char *args[] = {"ip",         "addr",
                    (char *)verb, f->cfg->floating_address,
                    "dev",        f->cfg->floating_interface,
                    NULL};
    uv_process_options_t o = {0};
    o.file = "ip";
    o.args = args;
    o.exit_cb = ip_exit;
    uv_stdio_container_t stdio[3] = {{UV_IGNORE}, {UV_IGNORE}, {UV_IGNORE}};
    o.stdio = stdio;
    o.stdio_count = 3;
    f->proc.data = f;
    int rc = uv_spawn(f->loop, &f->proc, &o);
    f->proc_running = 1;
    if (rc != 0) {
        LOG_ERROR("event=floating_ip_spawn_failed error=%s", uv_strerror(rc));
        /* uv_spawn failed: the handle still has to be closed. */
        f->state = f->state == F_ADDING ? F_RELEASED : F_HELD;
        uv_close((uv_handle_t *)&f->proc, proc_closed);
    }
}

static void step(struct floatip *f)
{
    if (f->proc_running)
        return;
    bool want = !f->stopping && rnode_is_ready_leader(f->rn);
    if (want && f->state == F_RELEASED) {
        f->state = F_ADDING;
        run_ip(f, "add");
    } else if (!want && f->state == F_HELD) {
        f->state = F_DELETING;
        run_ip(f, "del");
    }
}

static void on_timer(uv_timer_t *t)
{
    step(t->data);
}

int floatip_start(uv_loop_t *loop, const struct sr_config *cfg,
                  struct rnode *rn, struct floatip **out, char *err,
                  size_t errlen)
{
    *out = NULL;
    if (cfg->floating_address == NULL || cfg->floating_address[0] == '\0')
        return 0;
    struct floatip *f = calloc(1, sizeof *f);
    if (f == NULL)
        return SR_ENOMEM;
    const char *slash = strchr(cfg->floating_address, '/');
    size_t n = slash ? (size_t)(slash - cfg->floating_address)
                     : strlen(cfg->floating_address);
    unsigned char buf[16];
    if (n >= sizeof f->ip) {
        free(f);
        return sr_err(err, errlen, SR_EINVAL,
                      "floating.address: want IP/PREFIX");
    }
    memcpy(f->ip, cfg->floating_address, n);
    if (slash == NULL || (inet_pton(AF_INET, f->ip, buf) != 1 &&
                          inet_pton(AF_INET6, f->ip, buf) != 1)) {
        free(f);
        return sr_err(err, errlen, SR_EINVAL,
                      "floating.address: want IP/PREFIX, got '%s'",
                      cfg->floating_address);
    }
    f->loop = loop;
    f->cfg = cfg;
    f->rn = rn;
    uv_timer_init(loop, &f->timer);
    f->timer.data = f;
    f->handles = 1;
    /* A crash may have left the address behind: drop it first. */
    f->state = F_DELETING;
    run_ip(f, "del");
    uv_timer_start(&f->timer, on_timer, POLL_MS, POLL_MS);
    *out = f;
    return 0;
}

static void timer_closed(uv_handle_t *h)
{
    struct floatip *f = h->data;
    f->handles--;
    maybe_done(f);
}

void floatip_stop(struct floatip *f, void (*cb)(void *), void *arg)
{
    f->stopping = 1;
    f->stop_cb = cb;
    f->stop_arg = arg;
    uv_timer_stop(&f->timer);
    uv_close((uv_handle_t *)&f->timer, timer_closed);
    step(f); /* deletes the address if held and nothing is running */
}

bool floatip_held(const struct floatip *f)
{
    return f != NULL && f->state == F_HELD;
}
