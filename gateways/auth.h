/*
 * auth.h - SMTP AUTH password hashes: PBKDF2-HMAC-SHA256 (OpenSSL).
 *
 * Format: "pbkdf2-sha256$ITERATIONS$SALT$HASH", salt and hash in base64
 * (16 and 32 bytes). Only the hash travels in the replicated policy; a
 * password is never stored or logged. Verifying costs ITERATIONS HMACs
 * (about 10 ms at the default), so callers run it on a worker thread.
 * Pure functions, thread-safe.
 */
#ifndef SR_AUTH_H
#define SR_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#define AUTH_DEFAULT_ITERATIONS 20000
#define AUTH_HASH_MAX 160

/* Writes a new hash of password (random salt) into out. Returns 0 or
 * SR_EIO when no randomness is available. */
int auth_hash_password(const char *password, unsigned iterations,
                       char out[AUTH_HASH_MAX]);
/* True if password matches hash; false for a malformed hash. Constant time
 * in the comparison. */
bool auth_verify(const char *hash, const char *password);

#endif
