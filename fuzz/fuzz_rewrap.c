/*
 * fuzz_rewrap.c - libFuzzer target for the re-wrap engine
 * (engine/rewrap.h): arbitrary bytes as a message, tracking on.
 *
 * Input: byte 0 chooses the policy (bit 0: bulk, bit 1: track text parts,
 * bit 2: tracking off); the rest is the message. Checked: the call
 * succeeds (the policy is valid), the output has only CRLF line ends and
 * ends with one, carries our X-SmartRelay-ID, parses with GMime, every
 * link is an http(s) URL within the token limit whose click token
 * round-trips, a kept or unparsed body means no link and no pixel, and
 * the same input gives the same output (no hidden state).
 */
#include <gmime/gmime.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/rewrap.h"
#include "engine/token.h"

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond))                                                           \
            __builtin_trap();                                                  \
    } while (0)

static uint8_t key[32] = "fuzz-key-fuzz-key-fuzz-key-fuzz";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    rewrap_global_init();
    return 0;
}

static char *exclude[] = {"https://skip.example/"};
static char *remove_list[] = {"X-Internal"};

static void check_parses(const char *m, size_t n)
{
    GMimeStream *st = g_mime_stream_mem_new_with_buffer(m, n);
    GMimeParser *ps = g_mime_parser_new_with_stream(st);
    GMimeMessage *msg = g_mime_parser_construct_message(ps, NULL);
    CHECK(msg != NULL);
    g_object_unref(msg);
    g_object_unref(ps);
    g_object_unref(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 256 * 1024)
        return 0;
    struct rewrap_policy p = {0};
    p.customer_id = "fuzz";
    p.bounce_domain = "bounce.example";
    p.feedback_campaign = "c";
    p.headers_to_remove = remove_list;
    p.n_headers_to_remove = 1;
    p.bulk = data[0] & 1;
    p.unsubscribe_mailto = "u@example.com";
    p.unsubscribe_url_base = "https://t.example";
    p.tracking = !(data[0] & 4);
    p.tracking_url_base = "https://t.example/";
    p.tracking_exclude = exclude;
    p.n_tracking_exclude = 1;
    p.track_text_parts = data[0] & 2;
    p.hmac_key = key;
    p.hmac_key_len = sizeof key;
    struct rewrap_input in = {
        (const char *)data + 1, size - 1, "01/0A-00001-6B0CDB31",
        "rcpt@example.org",     7,        1796004637};
    struct rewrap_result r, r2;
    char err[SR_ERRMSG_SIZE];
    CHECK(rewrap_message(&p, &in, &r, err, sizeof err) == 0);
    CHECK(r.msg != NULL && r.len >= 2 && strlen(r.msg) <= r.len);
    CHECK(r.msg[r.len - 2] == '\r' && r.msg[r.len - 1] == '\n');
    for (size_t i = 0; i < r.len; i++)
        if (r.msg[i] == '\n')
            CHECK(i > 0 && r.msg[i - 1] == '\r');
    CHECK(memmem(r.msg, r.len, "X-SmartRelay-ID: 01/0A-00001-6B0CDB31\r\n",
                 39) != NULL);
    CHECK(r.body == REWRAP_BODY_MODIFIED || r.body == REWRAP_BODY_KEPT ||
          r.body == REWRAP_BODY_UNPARSED);
    if (r.body != REWRAP_BODY_MODIFIED)
        CHECK(r.n_links == 0 && r.n_pixels == 0 && r.reason[0] != '\0');
    if (!p.tracking)
        CHECK(r.body != REWRAP_BODY_MODIFIED);
    for (size_t i = 0; i < r.n_links; i++) {
        const char *u = r.links[i];
        CHECK(strncasecmp(u, "http://", 7) == 0 ||
              strncasecmp(u, "https://", 8) == 0);
        CHECK(strlen(u) <= TOKEN_URL_MAX);
        CHECK(strncasecmp(u, exclude[0], strlen(exclude[0])) != 0);
        if (i < 4) {
            struct token t = {0}, d;
            t.kind = TOKEN_CLICK;
            strcpy(t.code, in.code);
            t.url = (char *)u;
            t.link_index = (uint32_t)i;
            char *s = NULL;
            CHECK(token_encode(&t, key, sizeof key, &s, err, sizeof err) == 0);
            CHECK(token_decode(s, strlen(s), key, sizeof key, TOKEN_CLICK, &d,
                               err, sizeof err) == 0);
            CHECK(strcmp(d.url, u) == 0 && d.link_index == i);
            token_clear(&d);
            free(s);
        }
    }
    check_parses(r.msg, r.len);
    CHECK(rewrap_message(&p, &in, &r2, err, sizeof err) == 0);
    CHECK(r2.len == r.len && memcmp(r2.msg, r.msg, r.len) == 0);
    CHECK(r2.n_links == r.n_links && r2.body == r.body);
    rewrap_result_free(&r2);
    rewrap_result_free(&r);
    return 0;
}
