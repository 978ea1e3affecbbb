/*
 * rewrap_tool.c - runs engine/rewrap.c and engine/dkim.c on one message,
 * for tests/integration/test_rewrap.py and by hand.
 *
 *   rewrap_tool --policy FILE [--code CODE] [--rcpt ADDR] [--rcpt-index N]
 *               [--now SECS] [--result FILE] < message > rewrapped
 *   rewrap_tool --policy FILE --decode TOKEN
 *   rewrap_tool --policy FILE --verp ADDRESS
 *
 * The policy is a JSON object: customer_id, bounce_domain,
 * feedback_campaign, feedback_customer, headers_to_remove [..], bulk,
 * unsubscribe_mailto, unsubscribe_url_base, tracking, tracking_url_base,
 * tracking_exclude [..], track_text_parts, hmac_key (hex), and dkim
 * [{domain, selector, key_file}], dkim_headers [..] (optional).
 *
 * The re-wrapped and signed message goes to stdout. One JSON object goes
 * to the --result file (default stderr): {"body", "reason",
 * "envelope_sender", "links": [hex, ...], "pixels", "signatures",
 * "dkim_error"}. A message that cannot be signed is written unsigned
 * (dkim_error says why), as delivery would send it.
 *
 * URLs are given as hex of their bytes ("links" and "url_hex"), so
 * that they compare byte for byte whatever their encoding.
 *
 * --decode prints the token as JSON ({"kind", "code", "rcpt_index",
 * "rcpt", "link_index", "url_hex"}) or exits 1 with the reason on stderr if
 * the key refuses it; --verp likewise ({"code", "rcpt_index"}).
 * Exit status 2 on bad usage or an unusable policy.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/dkim.h"
#include "engine/rewrap.h"
#include "engine/token.h"
#include "engine/verp.h"
#include "node/errors.h"

static char *opt_str(json_t *o, const char *name)
{
    const char *s = json_string_value(json_object_get(o, name));
    return s ? strdup(s) : NULL;
}

static char **opt_list(json_t *o, const char *name, size_t *n)
{
    json_t *a = json_object_get(o, name);
    *n = json_is_array(a) ? json_array_size(a) : 0;
    if (*n == 0)
        return NULL;
    char **v = calloc(*n + 1, sizeof *v);
    for (size_t i = 0; i < *n; i++) {
        const char *s = json_string_value(json_array_get(a, i));
        v[i] = strdup(s ? s : "");
    }
    return v;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static char *read_all(FILE *f, size_t *len)
{
    size_t cap = 65536, n = 0;
    char *p = malloc(cap);
    for (;;) {
        if (n + 1 >= cap)
            p = realloc(p, cap *= 2);
        size_t got = fread(p + n, 1, cap - n - 1, f);
        if (got == 0)
            break;
        n += got;
    }
    p[n] = '\0';
    *len = n;
    return p;
}

static int load_policy(json_t *j, struct rewrap_policy *p)
{
    memset(p, 0, sizeof *p);
    p->customer_id = opt_str(j, "customer_id");
    p->bounce_domain = opt_str(j, "bounce_domain");
    p->feedback_campaign = opt_str(j, "feedback_campaign");
    p->feedback_customer = opt_str(j, "feedback_customer");
    p->headers_to_remove =
        opt_list(j, "headers_to_remove", &p->n_headers_to_remove);
    p->bulk = json_is_true(json_object_get(j, "bulk"));
    p->unsubscribe_mailto = opt_str(j, "unsubscribe_mailto");
    p->unsubscribe_url_base = opt_str(j, "unsubscribe_url_base");
    p->tracking = json_is_true(json_object_get(j, "tracking"));
    p->tracking_url_base = opt_str(j, "tracking_url_base");
    p->tracking_exclude =
        opt_list(j, "tracking_exclude", &p->n_tracking_exclude);
    p->track_text_parts = json_is_true(json_object_get(j, "track_text_parts"));
    const char *hex = json_string_value(json_object_get(j, "hmac_key"));
    size_t hl = hex ? strlen(hex) : 0;
    if (hl == 0 || hl % 2 != 0)
        return -1;
    p->hmac_key = malloc(hl / 2);
    p->hmac_key_len = hl / 2;
    for (size_t i = 0; i < hl / 2; i++) {
        int a = hexval(hex[2 * i]), b = hexval(hex[2 * i + 1]);
        if (a < 0 || b < 0)
            return -1;
        p->hmac_key[i] = (uint8_t)(a * 16 + b);
    }
    return 0;
}

static struct dkim_signer *load_signer(json_t *j)
{
    json_t *keys = json_object_get(j, "dkim");
    size_t n = json_is_array(keys) ? json_array_size(keys) : 0;
    if (n == 0)
        return NULL;
    struct dkim_signer_key *k = calloc(n, sizeof *k);
    char **pems = calloc(n, sizeof *pems);
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(keys, i);
        k[i].domain = json_string_value(json_object_get(o, "domain"));
        k[i].selector = json_string_value(json_object_get(o, "selector"));
        const char *path = json_string_value(json_object_get(o, "key_file"));
        FILE *f = path ? fopen(path, "rb") : NULL;
        if (f == NULL) {
            fprintf(stderr, "rewrap_tool: cannot read DKIM key %s\n",
                    path ? path : "(none)");
            exit(2);
        }
        size_t len;
        pems[i] = read_all(f, &len);
        fclose(f);
        k[i].pem = pems[i];
    }
    size_t nh = 0;
    char **hl = opt_list(j, "dkim_headers", &nh);
    struct dkim_signer *s = NULL;
    char err[SR_ERRMSG_SIZE];
    if (dkim_signer_new(k, n, (const char *const *)hl, 0, &s, err,
                        sizeof err) != 0) {
        fprintf(stderr, "rewrap_tool: %s\n", err);
        exit(2);
    }
    for (size_t i = 0; i < n; i++)
        free(pems[i]);
    for (size_t i = 0; i < nh; i++)
        free(hl[i]);
    free(hl);
    free(pems);
    free(k);
    return s;
}

/* Bytes as lowercase hex: exact, whatever the encoding. */
static json_t *hex_string(const char *s)
{
    size_t n = strlen(s);
    char *h = malloc(2 * n + 1);
    for (size_t i = 0; i < n; i++)
        sprintf(h + 2 * i, "%02x", (unsigned char)s[i]);
    h[2 * n] = '\0';
    json_t *j = json_string(h);
    free(h);
    return j;
}

static int decode(const struct rewrap_policy *p, const char *tok)
{
    struct token t;
    char err[SR_ERRMSG_SIZE];
    int rc = token_decode(tok, strlen(tok), p->hmac_key, p->hmac_key_len, 0, &t,
                          err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "rewrap_tool: token refused: %s: %s\n", sr_strerror(rc),
                err);
        return 1;
    }
    static const char *kinds[] = {"", "open", "click", "unsubscribe"};
    json_t *o = json_pack("{s:s,s:s,s:I,s:I}", "kind", kinds[t.kind], "code",
                          t.code, "rcpt_index", (json_int_t)t.rcpt_index,
                          "link_index", (json_int_t)t.link_index);
    if (t.rcpt != NULL)
        json_object_set_new(o, "rcpt", json_string(t.rcpt));
    if (t.url != NULL)
        json_object_set_new(o, "url_hex", hex_string(t.url));
    char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
    printf("%s\n", s);
    free(s);
    json_decref(o);
    token_clear(&t);
    return 0;
}

static int verp(const struct rewrap_policy *p, const char *addr)
{
    char code[CODE_MAX], err[SR_ERRMSG_SIZE];
    uint32_t idx;
    int rc = verp_parse(addr, strlen(addr), p->hmac_key, p->hmac_key_len, code,
                        &idx, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "rewrap_tool: VERP refused: %s: %s\n", sr_strerror(rc),
                err);
        return 1;
    }
    printf("{\"code\": \"%s\", \"rcpt_index\": %u}\n", code, (unsigned)idx);
    return 0;
}

static const char *body_name(enum rewrap_body b)
{
    switch (b) {
    case REWRAP_BODY_MODIFIED:
        return "modified";
    case REWRAP_BODY_KEPT:
        return "kept";
    case REWRAP_BODY_UNPARSED:
        return "unparsed";
    }
    return "?";
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"policy", required_argument, NULL, 'p'},
        {"code", required_argument, NULL, 'c'},
        {"rcpt", required_argument, NULL, 'r'},
        {"rcpt-index", required_argument, NULL, 'i'},
        {"now", required_argument, NULL, 'n'},
        {"result", required_argument, NULL, 'o'},
        {"decode", required_argument, NULL, 'd'},
        {"verp", required_argument, NULL, 'v'},
        {NULL, 0, NULL, 0},
    };
    const char *policy_path = NULL, *code = "01/01-00001-6B0CDB31";
    const char *rcpt = "rcpt@example.org", *result = NULL;
    const char *tok = NULL, *vaddr = NULL;
    uint32_t idx = 0;
    int64_t now = 1796004637;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            policy_path = optarg;
            break;
        case 'c':
            code = optarg;
            break;
        case 'r':
            rcpt = optarg;
            break;
        case 'i':
            idx = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'n':
            now = strtoll(optarg, NULL, 10);
            break;
        case 'o':
            result = optarg;
            break;
        case 'd':
            tok = optarg;
            break;
        case 'v':
            vaddr = optarg;
            break;
        default:
            return 2;
        }
    }
    if (policy_path == NULL) {
        fprintf(stderr, "usage: rewrap_tool --policy FILE [...]\n");
        return 2;
    }
    json_error_t je;
    json_t *j = json_load_file(policy_path, 0, &je);
    struct rewrap_policy p;
    if (j == NULL || load_policy(j, &p) != 0) {
        fprintf(stderr, "rewrap_tool: bad policy %s\n", policy_path);
        return 2;
    }
    int rc;
    if (tok != NULL || vaddr != NULL) {
        rc = tok != NULL ? decode(&p, tok) : verp(&p, vaddr);
        rewrap_policy_free(&p);
        json_decref(j);
        return rc;
    }
    struct dkim_signer *signer = load_signer(j);
    rewrap_global_init();

    size_t len;
    char *msg = read_all(stdin, &len);
    struct rewrap_input in = {msg, len, code, rcpt, idx, now};
    struct rewrap_result res;
    char err[SR_ERRMSG_SIZE];
    rc = rewrap_message(&p, &in, &res, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "rewrap_tool: %s: %s\n", sr_strerror(rc), err);
        return 2;
    }
    char *out = res.msg;
    size_t outlen = res.len;
    char *signed_msg = NULL;
    char dkim_err[SR_ERRMSG_SIZE] = "";
    int sigs = 0;
    json_t *o = json_object();
    if (signer != NULL) {
        if (dkim_signer_sign(signer, res.msg, res.len, &signed_msg, &outlen,
                             dkim_err, sizeof dkim_err) == 0) {
            out = signed_msg;
            sigs = (int)json_array_size(json_object_get(j, "dkim"));
        } else {
            outlen = res.len;
            json_object_set_new(o, "dkim_error", json_string(dkim_err));
        }
    }
    fwrite(out, 1, outlen, stdout);
    fflush(stdout);

    json_t *links = json_array();
    for (size_t i = 0; i < res.n_links; i++)
        json_array_append_new(links, hex_string(res.links[i]));
    json_object_set_new(o, "body", json_string(body_name(res.body)));
    json_object_set_new(o, "reason", json_string(res.reason));
    json_object_set_new(o, "envelope_sender", json_string(res.envelope_sender));
    json_object_set_new(o, "links", links);
    json_object_set_new(o, "pixels", json_integer(res.n_pixels));
    json_object_set_new(o, "signatures", json_integer(sigs));
    char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
    FILE *rf = result ? fopen(result, "w") : stderr;
    if (rf == NULL) {
        fprintf(stderr, "rewrap_tool: cannot write %s\n", result);
        return 2;
    }
    fprintf(rf, "%s\n", s);
    if (rf != stderr)
        fclose(rf);
    free(s);
    json_decref(o);
    free(signed_msg);
    rewrap_result_free(&res);
    free(msg);
    dkim_signer_free(signer);
    rewrap_policy_free(&p);
    json_decref(j);
    rewrap_global_shutdown();
    return 0;
}
