/*
 * mx_lookup.c - resolves domains with engine/mx.c and prints one JSON line
 * per domain, for tests/integration/test_mx.py.
 *
 *   mx_lookup [--server IP:PORT[,...]] [--timeout-ms N] [--tries N]
 *             [--cache-size N] [--max-ttl S] [--neg-ttl S] [--seed N]
 *             [--parallel] [--delay-ms N] [--cancel-after-ms N] [--stats]
 *             DOMAIN...
 *
 * Sequential by default: a domain is resolved once the previous one has
 * been answered (and --delay-ms more have passed), so that a repeated
 * domain can be served by the cache. --parallel starts them all at once
 * (same domain twice: one lookup, coalesced). --seed makes the shuffling
 * of equal preferences deterministic. --cancel-after-ms closes the
 * resolver that long after the start, with lookups still pending.
 * --stats prints the resolver's counters as a last line {"stats": {...}}.
 *
 * Each line: {"i", "domain", "status", "reason", "code", "msg", "cached",
 * "implicit", "ttl", "targets": [{"host", "pref", "addrs": [...]}]}, in
 * the order of the answers. Exit status 0 once every domain is answered,
 * 1 if the resolver cannot start, 2 on bad usage.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "engine/mx.h"
#include "node/errors.h"

struct run {
    uv_loop_t *loop;
    struct mx_resolver *r;
    bool closed;
    char **domains;
    int n, next, answered;
    bool parallel, stats;
    uint64_t delay_ms;
    uv_timer_t delay, cancel;
    uint64_t seed;
};

struct req {
    struct run *run;
    int i;
};

static uint32_t seeded_random(void *ud)
{
    uint64_t *s = ud; /* an LCG: deterministic for a seed */
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*s >> 33);
}

static void print_json(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);
    if (s != NULL) {
        printf("%s\n", s);
        free(s);
    }
    fflush(stdout);
    json_decref(o);
}

static void print_stats(struct run *run)
{
    struct mx_stats st;
    mx_resolver_stats(run->r, &st);
    json_t *o = json_pack(
        "{s:{s:I,s:I,s:I,s:I,s:I,s:I}}", "stats", "resolves",
        (json_int_t)st.resolves, "cache_hits", (json_int_t)st.cache_hits,
        "coalesced", (json_int_t)st.coalesced, "queries",
        (json_int_t)st.queries, "cache_entries", (json_int_t)st.cache_entries,
        "inflight", (json_int_t)st.inflight);
    print_json(o);
}

static void finish(struct run *run)
{
    if (run->stats)
        print_stats(run);
    uv_close((uv_handle_t *)&run->delay, NULL);
    uv_close((uv_handle_t *)&run->cancel, NULL);
    if (!run->closed) {
        run->closed = true;
        mx_resolver_close(run->r);
    }
}

static void start(struct run *run, int i);
static void delay_cb(uv_timer_t *t);

static void on_result(const struct mx_result *res, bool cached, void *ud)
{
    struct req *q = ud;
    struct run *run = q->run;
    json_t *targets = json_array();
    for (size_t t = 0; t < res->ntargets; t++) {
        const struct mx_target *tg = &res->targets[t];
        json_t *addrs = json_array();
        for (size_t a = 0; a < tg->naddrs; a++) {
            char buf[INET6_ADDRSTRLEN];
            json_array_append_new(addrs, json_string(mx_addr_str(
                                             &tg->addrs[a], buf, sizeof buf)));
        }
        json_array_append_new(targets,
                              json_pack("{s:s,s:i,s:o}", "host", tg->host,
                                        "pref", (int)tg->pref, "addrs", addrs));
    }
    print_json(json_pack(
        "{s:i,s:s,s:s,s:s,s:s,s:s,s:b,s:b,s:I,s:o}", "i", q->i, "domain",
        run->domains[q->i], "status", mx_status_str(res->status), "reason",
        mx_reason_str(res->reason), "code", sr_strerror(res->code), "msg",
        res->msg, "cached", cached, "implicit", res->implicit, "ttl",
        (json_int_t)res->ttl, "targets", targets));
    free(q);
    run->answered++;
    if (run->answered == run->n) {
        finish(run);
        return;
    }
    if (!run->parallel && run->next < run->n) {
        if (run->delay_ms > 0)
            uv_timer_start(&run->delay, delay_cb, run->delay_ms, 0);
        else
            start(run, run->next++);
    }
}

static void delay_cb(uv_timer_t *t)
{
    struct run *run = t->data;
    start(run, run->next++);
}

static void start(struct run *run, int i)
{
    struct req *q = malloc(sizeof *q);
    if (q == NULL)
        abort();
    q->run = run;
    q->i = i;
    int rc = mx_resolve(run->r, run->domains[i], on_result, q);
    if (rc != 0) {
        free(q);
        print_json(json_pack("{s:i,s:s,s:s}", "i", i, "domain", run->domains[i],
                             "error", sr_strerror(rc)));
        run->answered++;
        if (run->answered == run->n)
            finish(run);
        else if (!run->parallel && run->next < run->n)
            start(run, run->next++);
    }
}

static void cancel_cb(uv_timer_t *t)
{
    struct run *run = t->data;
    if (!run->closed) {
        run->closed = true;
        mx_resolver_close(run->r); /* runs the pending callbacks */
    }
}

static void usage(void)
{
    fprintf(stderr,
            "usage: mx_lookup [--server IP:PORT[,...]] [--timeout-ms N] "
            "[--tries N] [--cache-size N] [--max-ttl S] [--neg-ttl S] "
            "[--seed N] [--parallel] [--delay-ms N] [--cancel-after-ms N] "
            "[--stats] DOMAIN...\n");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"server", required_argument, NULL, 's'},
        {"timeout-ms", required_argument, NULL, 't'},
        {"tries", required_argument, NULL, 'T'},
        {"cache-size", required_argument, NULL, 'c'},
        {"max-ttl", required_argument, NULL, 'm'},
        {"neg-ttl", required_argument, NULL, 'n'},
        {"seed", required_argument, NULL, 'S'},
        {"parallel", no_argument, NULL, 'p'},
        {"delay-ms", required_argument, NULL, 'd'},
        {"cancel-after-ms", required_argument, NULL, 'C'},
        {"stats", no_argument, NULL, 'x'},
        {NULL, 0, NULL, 0},
    };
    struct mx_opts opts = {0};
    struct run run = {0};
    long cancel_ms = -1;
    bool seeded = false;
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 's':
            opts.servers = optarg;
            break;
        case 't':
            opts.timeout_ms = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'T':
            opts.tries = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'c':
            opts.cache_size = strtoul(optarg, NULL, 10);
            break;
        case 'm':
            opts.max_ttl = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'n':
            opts.neg_ttl = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'S':
            run.seed = strtoull(optarg, NULL, 10);
            seeded = true;
            break;
        case 'p':
            run.parallel = true;
            break;
        case 'd':
            run.delay_ms = strtoull(optarg, NULL, 10);
            break;
        case 'C':
            cancel_ms = strtol(optarg, NULL, 10);
            break;
        case 'x':
            run.stats = true;
            break;
        default:
            usage();
            return 2;
        }
    }
    if (optind >= argc) {
        usage();
        return 2;
    }
    if (seeded) {
        opts.random = seeded_random;
        opts.random_ud = &run.seed;
    }
    run.domains = argv + optind;
    run.n = argc - optind;
    run.loop = uv_default_loop();
    char err[SR_ERRMSG_SIZE];
    if (mx_resolver_new(run.loop, &opts, &run.r, err, sizeof err) != 0) {
        fprintf(stderr, "mx_lookup: %s\n", err);
        return 1;
    }
    uv_timer_init(run.loop, &run.delay);
    uv_timer_init(run.loop, &run.cancel);
    run.delay.data = run.cancel.data = &run;
    if (cancel_ms >= 0)
        uv_timer_start(&run.cancel, cancel_cb, (uint64_t)cancel_ms, 0);
    if (run.parallel) {
        run.next = run.n;
        for (int i = 0; i < run.n && !run.closed; i++)
            start(&run, i);
    } else {
        start(&run, run.next++);
    }
    uv_run(run.loop, UV_RUN_DEFAULT);
    return uv_loop_close(run.loop) == 0 ? 0 : 1;
}
