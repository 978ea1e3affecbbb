/*
 * rewrap_bench.c - how many messages a second one core re-wraps and signs
 * (bench/rewrap prints the figures; this is not a test).
 *
 *   rewrap_bench --size BYTES --seconds S [--tracking] [--rsa KEY.pem]
 *                [--ed25519 KEY.pem]
 *
 * Builds an HTML message of about BYTES (multipart/alternative, text and
 * quoted-printable HTML with a link every ~200 bytes), then for S seconds
 * runs what the delivery engine runs per recipient (engine/prepare.c):
 * rewrap_message (VERP, stamping, List-Unsubscribe, tracking when asked)
 * and the DKIM signatures. Prints one JSON line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/dkim.h"
#include "engine/rewrap.h"
#include "node/errors.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *b = malloc(65536);
    size_t n = b ? fread(b, 1, 65535, f) : 0;
    fclose(f);
    if (b)
        b[n] = '\0';
    return b;
}

static char *make_message(size_t size, size_t *len)
{
    size_t cap = size + 4096;
    char *m = malloc(cap);
    if (m == NULL)
        return NULL;
    size_t n = (size_t)snprintf(
        m, cap,
        "From: News <news@acme.example>\r\nTo: r@dest.example\r\n"
        "Subject: weekly offers\r\nDate: Mon, 30 Nov 2026 05:00:00 +0000\r\n"
        "Message-ID: <b1@acme.example>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/alternative; boundary=\"bb\"\r\n\r\n"
        "--bb\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "This week's offers: https://acme.example/offers\r\n\r\n"
        "--bb\r\nContent-Type: text/html; charset=utf-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        "<html><body>\r\n");
    unsigned i = 0;
    while (n + 300 < size && n + 300 < cap) {
        n += (size_t)snprintf(
            m + n, cap - n,
            "<p>Offer %u: a fine product at a fine price, see <a "
            "href=3D\"https:"
            "//shop.acme.example/p/%u?ref=3Dmail&amp;c=3D7\">the page</a>.</p>"
            "\r\n",
            i, i);
        i++;
    }
    n += (size_t)snprintf(m + n, cap - n, "</body></html>\r\n--bb--\r\n");
    *len = n;
    return m;
}

int main(int argc, char **argv)
{
    size_t size = 10240;
    double seconds = 3;
    int tracking = 0;
    const char *rsa = NULL, *ed = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--size") == 0 && i + 1 < argc)
            size = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--tracking") == 0)
            tracking = 1;
        else if (strcmp(argv[i], "--rsa") == 0 && i + 1 < argc)
            rsa = argv[++i];
        else if (strcmp(argv[i], "--ed25519") == 0 && i + 1 < argc)
            ed = argv[++i];
        else {
            fprintf(stderr, "usage: rewrap_bench --size N --seconds S "
                            "[--tracking] [--rsa PEM] [--ed25519 PEM]\n");
            return 2;
        }
    }
    size_t len = 0;
    char *msg = make_message(size, &len);
    if (msg == NULL)
        return 1;
    uint8_t key[32];
    memset(key, 0x5a, sizeof key);
    struct rewrap_policy p = {0};
    p.customer_id = strdup("acme");
    p.bounce_domain = strdup("bounces.acme.example");
    p.bulk = true;
    p.unsubscribe_url_base = strdup("https://t.relay.example");
    p.tracking = tracking;
    p.tracking_url_base = strdup("https://t.relay.example");
    p.hmac_key = malloc(sizeof key);
    memcpy(p.hmac_key, key, sizeof key);
    p.hmac_key_len = sizeof key;
    struct dkim_signer_key keys[2];
    char *pems[2] = {NULL, NULL};
    size_t nk = 0;
    if (rsa) {
        pems[nk] = read_all(rsa);
        keys[nk] = (struct dkim_signer_key){"acme.example", "rsa1", pems[nk]};
        nk++;
    }
    if (ed) {
        pems[nk] = read_all(ed);
        keys[nk] = (struct dkim_signer_key){"acme.example", "ed1", pems[nk]};
        nk++;
    }
    struct dkim_signer *signer = NULL;
    char err[SR_ERRMSG_SIZE];
    if (nk && dkim_signer_new(keys, nk, NULL, 0, &signer, err, sizeof err)) {
        fprintf(stderr, "rewrap_bench: %s\n", err);
        return 1;
    }
    rewrap_global_init();
    double t0 = now_s(), c0 = cpu_s();
    unsigned long n = 0, links = 0;
    size_t out_bytes = 0;
    while (now_s() - t0 < seconds) {
        struct rewrap_input in = {msg,
                                  len,
                                  "01/01-00000-6B0D0000",
                                  "r@dest.example",
                                  (uint32_t)(n % 100),
                                  1796000000};
        struct rewrap_result res;
        if (rewrap_message(&p, &in, &res, err, sizeof err) != 0) {
            fprintf(stderr, "rewrap_bench: %s\n", err);
            return 1;
        }
        links += res.n_links;
        if (signer) {
            char *out;
            size_t ol;
            if (dkim_signer_sign(signer, res.msg, res.len, &out, &ol, err,
                                 sizeof err) != 0) {
                fprintf(stderr, "rewrap_bench: %s\n", err);
                return 1;
            }
            out_bytes = ol;
            free(out);
        } else {
            out_bytes = res.len;
        }
        rewrap_result_free(&res);
        n++;
    }
    double wall = now_s() - t0, cpu = cpu_s() - c0;
    printf("{\"size\":%zu,\"tracking\":%s,\"rsa\":%s,\"ed25519\":%s,"
           "\"messages\":%lu,\"links_per_message\":%.0f,\"out_bytes\":%zu,"
           "\"per_second\":%.1f,\"per_cpu_second\":%.1f}\n",
           len, tracking ? "true" : "false", rsa ? "true" : "false",
           ed ? "true" : "false", n, n ? (double)links / (double)n : 0.0,
           out_bytes, (double)n / wall, (double)n / cpu);
    dkim_signer_free(signer);
    rewrap_policy_free(&p);
    free(pems[0]);
    free(pems[1]);
    free(msg);
    rewrap_global_shutdown();
    return 0;
}
