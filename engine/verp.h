/*
 * verp.h - the per-message, per-recipient bounce address (VERP) that
 * becomes the envelope sender of a re-wrapped message, and its check when
 * a bounce comes back.
 *
 * Format (all lowercase, so that an MTA that lowercases local parts does
 * not break it; parsing folds case first):
 *
 *     b-<code>-<rcpt index>-<mac>@<bounce domain>
 *
 *   <code>        the message code, escaped: digits as they are, letters
 *                 A-Z as a-z, '-' as '_', every other byte (including
 *                 lowercase letters, '_' and '=') as '=' and two lowercase
 *                 hex digits. "01/0A-00001-6B0CDB31" becomes
 *                 "01=2f0a_00001_6b0cdb31". Only atext characters, no dot,
 *                 no '-' (the field separator), no '+' (sub-addressing).
 *   <rcpt index>  decimal, no leading zero, <= UINT32_MAX
 *   <mac>         the first 5 bytes of HMAC-SHA256(key, "SR-verp\0" || code
 *                 || "\0" || rcpt index in decimal || "\0" || lowercase
 *                 bounce domain), base32 (RFC 4648 alphabet, lowercase):
 *                 8 characters, 40 bits. Binding the domain stops an
 *                 address from being replayed on another customer's bounce
 *                 domain.
 *
 * The local part is at most 64 octets (RFC 5321 4.5.3.1.1): codes of
 * CODE_MAX-1 characters always fit.
 *
 * Pure functions, any thread; the key is the customer's HMAC key.
 */
#ifndef SR_ENGINE_VERP_H
#define SR_ENGINE_VERP_H

#include <stddef.h>
#include <stdint.h>

#include "node/code.h"

/* Room for any address verp_build writes, NUL included. */
#define VERP_ADDR_MAX 320

/* Writes the bounce address into out (outlen bytes, VERP_ADDR_MAX is
 * enough for a domain up to 253 characters). Returns 0 or SR_EINVAL (bad
 * code or domain, short key, does not fit). */
int verp_build(const char *code, uint32_t rcpt_index, const char *domain,
               const uint8_t *key, size_t keylen, char *out, size_t outlen,
               char *err, size_t errlen);

/* Parses and verifies addr[0..len) (a bare address, no angle brackets).
 * On success writes the code and recipient index. Returns 0, SR_EPARSE
 * (not a VERP address of ours) or SR_EAUTH (well formed, wrong MAC). */
int verp_parse(const char *addr, size_t len, const uint8_t *key, size_t keylen,
               char code[CODE_MAX], uint32_t *rcpt_index, char *err,
               size_t errlen);

/* The bounce domain of a VERP address: a pointer into addr after the last
 * '@' and its length, so that the caller can find the customer (and key)
 * before verp_parse. Returns NULL if addr has no '@'. */
const char *verp_domain(const char *addr, size_t len, size_t *domlen);

#endif
