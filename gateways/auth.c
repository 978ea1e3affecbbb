/* auth.c - PBKDF2 password hashes for SMTP AUTH (see auth.h). */
#include "gateways/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/errors.h"

#define SALT_LEN 16
#define HASH_LEN 32
#define MAX_ITERATIONS 10000000u

static int b64(const unsigned char *in, int n, char *out)
{
    return EVP_EncodeBlock((unsigned char *)out, in, n);
}

/* Decodes exactly want bytes of base64; returns 0 or -1. */
static int unb64(const char *in, size_t len, unsigned char *out, int want)
{
    unsigned char buf[64];
    if (len == 0 || len > 60 || len % 4 != 0)
        return -1;
    int n = EVP_DecodeBlock(buf, (const unsigned char *)in, (int)len);
    size_t pad = 0;
    while (pad < 2 && in[len - 1 - pad] == '=')
        pad++;
    if (n < 0 || n - (int)pad != want)
        return -1;
    memcpy(out, buf, (size_t)want);
    return 0;
}

int auth_hash_password(const char *password, unsigned iterations,
                       char out[AUTH_HASH_MAX])
{
    unsigned char salt[SALT_LEN], hash[HASH_LEN];
    char s64[32], h64[48];
    if (iterations == 0 || iterations > MAX_ITERATIONS)
        return SR_EINVAL;
    if (RAND_bytes(salt, sizeof salt) != 1)
        return SR_EIO;
    if (PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, sizeof salt,
                          (int)iterations, EVP_sha256(), sizeof hash,
                          hash) != 1)
        return SR_EIO;
    b64(salt, sizeof salt, s64);
    b64(hash, sizeof hash, h64);
    snprintf(out, AUTH_HASH_MAX, "pbkdf2-sha256$%u$%s$%s", iterations, s64,
             h64);
    return 0;
}

bool auth_verify(const char *hash, const char *password)
{
    if (strncmp(hash, "pbkdf2-sha256$", 14) != 0)
        return false;
    const char *p = hash + 14;
    char *end;
    unsigned long iter = strtoul(p, &end, 10);
    if (end == p || *end != '$' || iter == 0 || iter > MAX_ITERATIONS)
        return false;
    const char *salt = end + 1;
    const char *dollar = strchr(salt, '$');
    if (dollar == NULL)
        return false;
    unsigned char s[SALT_LEN], want[HASH_LEN], got[HASH_LEN];
    if (unb64(salt, (size_t)(dollar - salt), s, SALT_LEN) != 0 ||
        unb64(dollar + 1, strlen(dollar + 1), want, HASH_LEN) != 0)
        return false;
    if (PKCS5_PBKDF2_HMAC(password, (int)strlen(password), s, sizeof s,
                          (int)iter, EVP_sha256(), sizeof got, got) != 1)
        return false;
    return CRYPTO_memcmp(got, want, sizeof got) == 0;
}
