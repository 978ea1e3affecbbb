/* verp.c - VERP bounce addresses with an HMAC (see verp.h). */
#include "engine/verp.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "engine/token.h"
#include "node/errors.h"

#define MAC_BYTES 5
#define MAC_CHARS 8
#define LOCAL_MAX 64
#define DOMAIN_MAX 253

static const char hexd[] = "0123456789abcdef";
static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static bool domain_ok(const char *d, size_t n)
{
    if (n == 0 || n > DOMAIN_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = d[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '.'))
            return false;
    }
    return true;
}

/* The 8-character MAC of (code, index, domain). */
static int compute_mac(const char *code, uint32_t idx, const char *dom,
                       size_t domlen, const uint8_t *key, size_t keylen,
                       char out[MAC_CHARS + 1])
{
    char buf[16 + CODE_MAX + 16 + DOMAIN_MAX];
    size_t n = 0;
    memcpy(buf, "SR-verp", 8); /* with its NUL */
    n = 8;
    size_t cl = strlen(code);
    memcpy(buf + n, code, cl + 1);
    n += cl + 1;
    n += (size_t)snprintf(buf + n, 12, "%u", (unsigned)idx) + 1;
    for (size_t i = 0; i < domlen; i++)
        buf[n++] = lower(dom[i]);
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int ml = 0;
    if (HMAC(EVP_sha256(), key, (int)keylen, (const uint8_t *)buf, n, md,
             &ml) == NULL)
        return SR_EINVAL;
    /* 40 bits -> 8 base32 characters */
    uint64_t v = 0;
    for (int i = 0; i < MAC_BYTES; i++)
        v = v << 8 | md[i];
    for (int i = 0; i < MAC_CHARS; i++)
        out[i] = b32[(v >> (35 - 5 * i)) & 31];
    out[MAC_CHARS] = '\0';
    OPENSSL_cleanse(md, sizeof md);
    return 0;
}

int verp_build(const char *code, uint32_t rcpt_index, const char *domain,
               const uint8_t *key, size_t keylen, char *out, size_t outlen,
               char *err, size_t errlen)
{
    if (key == NULL || keylen < TOKEN_KEY_MIN)
        return sr_err(err, errlen, SR_EINVAL, "VERP key too short");
    size_t cl = strnlen(code, CODE_MAX);
    if (cl == 0 || cl >= CODE_MAX)
        return sr_err(err, errlen, SR_EINVAL, "bad message code");
    for (size_t i = 0; i < cl; i++)
        if (code[i] <= 0x20 || code[i] >= 0x7f)
            return sr_err(err, errlen, SR_EINVAL, "bad message code");
    size_t dl = strlen(domain);
    if (!domain_ok(domain, dl))
        return sr_err(err, errlen, SR_EINVAL, "bad bounce domain");
    char local[LOCAL_MAX * 3];
    size_t n = 0;
    local[n++] = 'b';
    local[n++] = '-';
    for (size_t i = 0; i < cl; i++) {
        char c = code[i];
        if ((c >= '0' && c <= '9'))
            local[n++] = c;
        else if (c >= 'A' && c <= 'Z')
            local[n++] = lower(c);
        else if (c == '-')
            local[n++] = '_';
        else {
            local[n++] = '=';
            local[n++] = hexd[(unsigned char)c >> 4];
            local[n++] = hexd[c & 15];
        }
    }
    char mac[MAC_CHARS + 1];
    if (compute_mac(code, rcpt_index, domain, dl, key, keylen, mac) != 0)
        return sr_err(err, errlen, SR_EINVAL, "HMAC failed");
    n += (size_t)snprintf(local + n, sizeof local - n, "-%u-%s",
                          (unsigned)rcpt_index, mac);
    if (n > LOCAL_MAX)
        return sr_err(err, errlen, SR_EINVAL, "VERP local part too long");
    if (n + 1 + dl + 1 > outlen)
        return sr_err(err, errlen, SR_EINVAL, "VERP address does not fit");
    memcpy(out, local, n);
    out[n] = '@';
    for (size_t i = 0; i < dl; i++)
        out[n + 1 + i] = lower(domain[i]);
    out[n + 1 + dl] = '\0';
    return 0;
}

const char *verp_domain(const char *addr, size_t len, size_t *domlen)
{
    const char *at = NULL;
    for (size_t i = 0; i < len; i++)
        if (addr[i] == '@')
            at = addr + i;
    if (at == NULL)
        return NULL;
    *domlen = len - (size_t)(at + 1 - addr);
    return at + 1;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int verp_parse(const char *addr, size_t len, const uint8_t *key, size_t keylen,
               char code[CODE_MAX], uint32_t *rcpt_index, char *err,
               size_t errlen)
{
    code[0] = '\0';
    if (key == NULL || keylen < TOKEN_KEY_MIN)
        return sr_err(err, errlen, SR_EINVAL, "VERP key too short");
    size_t dl = 0;
    const char *dom = verp_domain(addr, len, &dl);
    if (dom == NULL || !domain_ok(dom, dl))
        return sr_err(err, errlen, SR_EPARSE, "no bounce domain");
    size_t ll = (size_t)(dom - 1 - addr);
    if (ll > LOCAL_MAX || ll < 2 + 1 + 1 + 1 + 1 + MAC_CHARS)
        return sr_err(err, errlen, SR_EPARSE, "not a VERP local part");
    char local[LOCAL_MAX + 1];
    for (size_t i = 0; i < ll; i++) {
        local[i] = lower(addr[i]);
        /* only what verp_build writes (this also keeps NULs out) */
        if (!((local[i] >= 'a' && local[i] <= 'z') ||
              (local[i] >= '0' && local[i] <= '9') || local[i] == '-' ||
              local[i] == '_' || local[i] == '='))
            return sr_err(err, errlen, SR_EPARSE, "not a VERP local part");
    }
    local[ll] = '\0';
    if (local[0] != 'b' || local[1] != '-')
        return sr_err(err, errlen, SR_EPARSE, "not a VERP local part");
    /* b-CODE-INDEX-MAC: the code has no '-', so split on the last two. */
    char *mac = strrchr(local, '-');
    *mac++ = '\0';
    char *idx = strrchr(local, '-');
    if (idx == NULL || idx == local + 1)
        return sr_err(err, errlen, SR_EPARSE, "VERP code missing");
    *idx++ = '\0';
    const char *enc = local + 2;
    if (strchr(enc, '-') != NULL || strlen(mac) != MAC_CHARS)
        return sr_err(err, errlen, SR_EPARSE, "VERP fields malformed");
    for (const char *m = mac; *m; m++)
        if (strchr(b32, *m) == NULL)
            return sr_err(err, errlen, SR_EPARSE, "VERP MAC malformed");
    size_t il = strlen(idx);
    if (il == 0 || il > 10 || (idx[0] == '0' && il > 1))
        return sr_err(err, errlen, SR_EPARSE, "VERP index malformed");
    uint64_t iv = 0;
    for (size_t i = 0; i < il; i++) {
        if (idx[i] < '0' || idx[i] > '9')
            return sr_err(err, errlen, SR_EPARSE, "VERP index malformed");
        iv = iv * 10 + (uint64_t)(idx[i] - '0');
    }
    if (iv > UINT32_MAX)
        return sr_err(err, errlen, SR_EPARSE, "VERP index too large");
    char c[CODE_MAX];
    size_t cn = 0;
    for (size_t i = 0; enc[i]; i++) {
        if (cn + 1 >= CODE_MAX)
            return sr_err(err, errlen, SR_EPARSE, "VERP code too long");
        char ch = enc[i];
        if (ch >= '0' && ch <= '9')
            c[cn++] = ch;
        else if (ch >= 'a' && ch <= 'z')
            c[cn++] = (char)(ch - 'a' + 'A');
        else if (ch == '_')
            c[cn++] = '-';
        else if (ch == '=') {
            int h = enc[i + 1] ? hexval(enc[i + 1]) : -1;
            int l = h >= 0 && enc[i + 2] ? hexval(enc[i + 2]) : -1;
            int v = h * 16 + l;
            /* Canonical: only what verp_build escapes is escaped. */
            if (l < 0 || v <= 0x20 || v >= 0x7f || (v >= '0' && v <= '9') ||
                (v >= 'A' && v <= 'Z') || v == '-')
                return sr_err(err, errlen, SR_EPARSE, "VERP code escape");
            c[cn++] = (char)v;
            i += 2;
        } else
            return sr_err(err, errlen, SR_EPARSE, "VERP code malformed");
    }
    if (cn == 0)
        return sr_err(err, errlen, SR_EPARSE, "VERP code missing");
    c[cn] = '\0';
    char want[MAC_CHARS + 1];
    if (compute_mac(c, (uint32_t)iv, dom, dl, key, keylen, want) != 0)
        return sr_err(err, errlen, SR_EINVAL, "HMAC failed");
    if (CRYPTO_memcmp(want, mac, MAC_CHARS) != 0)
        return sr_err(err, errlen, SR_EAUTH, "VERP MAC mismatch");
    memcpy(code, c, cn + 1);
    *rcpt_index = (uint32_t)iv;
    return 0;
}
