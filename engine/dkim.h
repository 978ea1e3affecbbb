/*
 * dkim.h - DKIM signing (RFC 6376) of re-wrapped messages:
 * rsa-sha256 with libopendkim 2.11 (RSA keys, 1024 bits or more; we issue
 * 2048) and ed25519-sha256 (RFC 8463) with OpenSSL, relaxed/relaxed, one
 * or several signatures per message.
 *
 * Why not opendkim for Ed25519: Debian's libopendkim 2.11 does offer
 * DKIM_SIGN_ED25519SHA256, and signs correctly, but its dkim_free() frees
 * the key material of RSA signatures only, so each Ed25519 signature
 * leaks about 1.7 KB (EVP_PKEY and buffers). dkim.c therefore signs
 * Ed25519 itself: the same relaxed canonicalisation and header selection,
 * PureEdDSA over the SHA-256 of the header data, the key parsed once.
 *
 * Sign last: after rewrap_message, after every other change. Each
 * signature is computed over the message as given (not over the other new
 * signatures, which are not in the signed header list) and the
 * DKIM-Signature fields are prepended, the first key's on top. The
 * message must have CRLF line ends and a From field (opendkim requires
 * it, as RFC 6376 5.4 does); a header opendkim cannot parse (a line that
 * is not a field) fails with SR_EPARSE and the caller delivers unsigned.
 *
 * Threads: a signer holds one DKIM_LIB, created and configured once in
 * dkim_signer_new and never changed after, the key texts and the parsed
 * Ed25519 keys (read-only, each signature uses its own EVP_MD_CTX). opendkim's
 * library handle is safe to share between threads as long as every
 * thread uses its own DKIM handle, which dkim_signer_sign creates and
 * frees within the call: several worker threads may sign with one signer
 * at the same time. dkim_signer_free only when no call is running.
 *
 * Time: t= comes from the system clock (the only clock read of the
 * re-wrap path); a signer made with fixed_time != 0 writes that instead,
 * for reproducible output in tests.
 */
#ifndef SR_ENGINE_DKIM_H
#define SR_ENGINE_DKIM_H

#include <stddef.h>
#include <stdint.h>

/* One signing key; all strings borrowed for dkim_signer_new (copied). */
struct dkim_signer_key {
    const char *domain;   /* d= */
    const char *selector; /* s= */
    const char *pem;      /* private key, PEM (PKCS#1 or PKCS#8) */
};

struct dkim_signer;

/* The header list used when the policy gives none. */
extern const char *const dkim_signer_default_headers[];

/* Creates a signer for keys[0..n) (1 <= n <= 8). headers: NULL-terminated
 * field names to sign (NULL: dkim_signer_default_headers); a listed field
 * absent from a message is not signed. The key type (RSA or Ed25519) is
 * read from each PEM. Returns 0, SR_EINVAL (bad key, domain, selector,
 * header name) or SR_ENOMEM. */
int dkim_signer_new(const struct dkim_signer_key *keys, size_t n,
                    const char *const *headers, uint64_t fixed_time,
                    struct dkim_signer **out, char *err, size_t errlen);

/* Signs msg[0..len) with every key. *out: a new malloc'd message (the
 * DKIM-Signature fields, then msg), NUL-terminated. Returns 0, SR_EPARSE
 * (opendkim refused the message) or SR_ENOMEM; on failure *out is NULL. */
int dkim_signer_sign(struct dkim_signer *s, const char *msg, size_t len,
                     char **out, size_t *outlen, char *err, size_t errlen);

void dkim_signer_free(struct dkim_signer *s);

#endif
