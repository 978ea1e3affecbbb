/*
 * fuzz_token.c - libFuzzer target for the token and VERP parsers
 * (engine/token.h, engine/verp.h): both read what strangers send back
 * (URLs hit on the tracking host, bounce addresses).
 *
 * Input: byte 0 picks the mode, the rest is the data.
 *   0: the data is a token as it arrives in a URL; it is refused unless
 *      signed with the key (seeds), and then it encodes back identically.
 *   1: the data is a token payload; the fuzzer signs it as token.c does
 *      (same MAC context) so that the payload parser itself is exercised.
 *      Accepted payloads must encode back to exactly the same token.
 *   2: the data is a bounce address; accepted ones (only those built with
 *      the key) must build back to the same address, lowercased.
 *   3: the data is a code; a VERP address built from it must parse back.
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/token.h"
#include "engine/verp.h"
#include "node/errors.h"

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond))                                                           \
            __builtin_trap();                                                  \
    } while (0)

static const uint8_t key[32] = "fuzz-key-fuzz-key-fuzz-key-fuzz";

static void signed_payload(const uint8_t *p, size_t n)
{
    if (n > 8192)
        return;
    uint8_t *buf = malloc(9 + n + 32);
    memcpy(buf, "SR-token", 9);
    memcpy(buf + 9, p, n);
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned ml = 0;
    HMAC(EVP_sha256(), key, sizeof key, buf, 9 + n, md, &ml);
    memcpy(buf, p, n);
    memcpy(buf + n, md, TOKEN_MAC_LEN);
    size_t tn = n + TOKEN_MAC_LEN;
    char *tok = malloc((tn + 2) / 3 * 4 + 1);
    size_t tl = token_b64_encode(buf, tn, tok);
    struct token t;
    char err[SR_ERRMSG_SIZE];
    int rc = token_decode(tok, tl, key, sizeof key, 0, &t, err, sizeof err);
    /* signed with the key: never refused as forged, except a payload too
     * short to be a token, which token_decode refuses before the MAC */
    CHECK(rc != SR_EAUTH || tl > TOKEN_TEXT_MAX || n < 6);
    if (rc == 0) {
        char *again = NULL;
        CHECK(token_encode(&t, key, sizeof key, &again, err, sizeof err) == 0);
        CHECK(strcmp(again, tok) == 0);
        free(again);
        token_clear(&t);
    }
    free(tok);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    char err[SR_ERRMSG_SIZE];
    switch (data[0] & 3) {
    case 0: {
        struct token t;
        int rc = token_decode(s, n, key, sizeof key, 0, &t, err, sizeof err);
        if (rc != 0) {
            CHECK(t.url == NULL && t.rcpt == NULL);
            break;
        }
        /* only a token signed with the key (a seed) gets here: it is
         * canonical */
        char *again = NULL;
        CHECK(token_encode(&t, key, sizeof key, &again, err, sizeof err) == 0);
        CHECK(strlen(again) == n && memcmp(again, s, n) == 0);
        free(again);
        token_clear(&t);
        break;
    }
    case 1:
        signed_payload(data + 1, n);
        break;
    case 2: {
        char code[CODE_MAX], again[VERP_ADDR_MAX];
        uint32_t idx = 0;
        if (verp_parse(s, n, key, sizeof key, code, &idx, err, sizeof err) != 0)
            break;
        size_t dl = 0;
        const char *dom = verp_domain(s, n, &dl);
        char *d = strndup(dom, dl);
        CHECK(verp_build(code, idx, d, key, sizeof key, again, sizeof again,
                         err, sizeof err) == 0);
        CHECK(strlen(again) == n);
        for (size_t i = 0; i < n; i++) {
            char c = s[i] >= 'A' && s[i] <= 'Z' ? (char)(s[i] + 32) : s[i];
            CHECK(again[i] == c);
        }
        free(d);
        break;
    }
    case 3: {
        char *code = strndup(s, n < CODE_MAX ? n : CODE_MAX);
        char a[VERP_ADDR_MAX], back[CODE_MAX];
        uint32_t idx = 0;
        if (verp_build(code, (uint32_t)n * 7919u, "b.example", key, sizeof key,
                       a, sizeof a, err, sizeof err) == 0) {
            CHECK(verp_parse(a, strlen(a), key, sizeof key, back, &idx, err,
                             sizeof err) == 0);
            CHECK(strcmp(back, code) == 0 && idx == (uint32_t)n * 7919u);
        }
        free(code);
        break;
    }
    }
    return 0;
}
