/*
 * token.h - signed compact tokens for the tracking and unsubscribe links
 * that the re-wrap engine writes (engine/rewrap.h) and the HTTP endpoints
 * /o/, /c/ and /u/ read back.
 *
 * A token is URL-safe base64 (RFC 4648 section 5, no padding) of
 *
 *     payload || MAC
 *
 * where MAC is the first 12 bytes of HMAC-SHA256(key, "SR-token\0" ||
 * payload). Payload, version 1 (all varints are unsigned LEB128, minimal,
 * at most 5 bytes, value <= UINT32_MAX):
 *
 *     u8      version (1)
 *     u8      kind: 1 open, 2 click, 3 unsubscribe
 *     u8      n, the length of the message code (1..CODE_MAX-1)
 *     n       the message code (printable ASCII, no space)
 *     varint  recipient index in the message's envelope
 *     varint  m, the length of the recipient address (0: none)
 *     m       the recipient address (no NUL, no control character)
 *     click only:
 *     varint  link index (order of the link in the message)
 *     varint  u, the length of the original URL (1..TOKEN_URL_MAX)
 *     u       the original URL, exactly as the HTML meant it (entities
 *             decoded), so that /c/ needs no lookup to redirect
 *
 * A click token therefore grows with its URL: about 4/3 (URL + 40 + code)
 * characters. The re-wrap engine leaves links longer than TOKEN_URL_MAX
 * alone. Open and click tokens carry the recipient index only (short
 * links); unsubscribe tokens also carry the address, so that /u/ can add
 * it to the suppression list without a lookup.
 *
 * Decoding checks the MAC first (constant time), then parses the payload
 * strictly: exact lengths, no trailing bytes, canonical base64, a known
 * version and kind. Any failure is SR_EAUTH (bad MAC, tampered or cut) or
 * SR_EPARSE / SR_EVERSION (well signed but not understood, which needs the
 * key: only a newer SmartRelay writes those).
 *
 * Pure functions: no clock, no randomness, no shared state; callable from
 * any thread. The key is the customer's HMAC key (at least
 * TOKEN_KEY_MIN bytes).
 */
#ifndef SR_ENGINE_TOKEN_H
#define SR_ENGINE_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "node/code.h"

#define TOKEN_VERSION 1
#define TOKEN_MAC_LEN 12
#define TOKEN_KEY_MIN 16
#define TOKEN_URL_MAX 4096
#define TOKEN_RCPT_MAX 512
/* The longest encoded token (characters, without NUL). */
#define TOKEN_TEXT_MAX 6400

enum token_kind {
    TOKEN_OPEN = 1,
    TOKEN_CLICK = 2,
    TOKEN_UNSUBSCRIBE = 3,
};

/* A decoded token. After token_decode the strings are owned by the struct
 * (token_clear frees them); for token_encode they are borrowed. */
struct token {
    enum token_kind kind;
    char code[CODE_MAX];
    uint32_t rcpt_index;
    char *rcpt;          /* NULL or "" when absent */
    uint32_t link_index; /* click only */
    char *url;           /* click only */
};

/* Encodes t into a new malloc'd NUL-terminated string (*out). Returns 0,
 * SR_EINVAL (bad kind, empty code, URL missing or too long, short key) or
 * SR_ENOMEM. */
int token_encode(const struct token *t, const uint8_t *key, size_t keylen,
                 char **out, char *err, size_t errlen);

/* Decodes and verifies s[0..len). want: the expected kind, or 0 for any.
 * On success t holds the fields (free with token_clear). On failure t is
 * left cleared. Returns 0, SR_EAUTH (not signed by key, tampered,
 * truncated), SR_EPARSE (not a token), SR_EVERSION, SR_EINVAL (wrong
 * kind, short key) or SR_ENOMEM. */
int token_decode(const char *s, size_t len, const uint8_t *key, size_t keylen,
                 enum token_kind want, struct token *t, char *err,
                 size_t errlen);

/* Frees what token_decode allocated and zeroes t. */
void token_clear(struct token *t);

/* URL-safe base64 without padding. token_b64_encode writes at most
 * 4 * ceil(n / 3) bytes plus a NUL and returns the length.
 * token_b64_decode returns the decoded length, or -1 if s is not
 * canonical unpadded base64url or does not fit in outlen. */
size_t token_b64_encode(const uint8_t *in, size_t n, char *out);
long token_b64_decode(const char *s, size_t len, uint8_t *out, size_t outlen);

#endif
