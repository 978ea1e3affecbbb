/* token.c - signed compact tracking tokens (see token.h). */
#include "engine/token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "node/errors.h"

#define MAC_CONTEXT "SR-token" /* with its NUL: domain separation */
#define PAYLOAD_MAX                                                            \
    (3 + CODE_MAX + 5 + 5 + TOKEN_RCPT_MAX + 5 + 5 + TOKEN_URL_MAX)

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t token_b64_encode(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v =
            (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
        out[o++] = b64_alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

long token_b64_decode(const char *s, size_t len, uint8_t *out, size_t outlen)
{
    if (len % 4 == 1)
        return -1;
    size_t need = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
    if (need > outlen)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value(s[i]);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* Canonical: the unused low bits of the last character are zero. */
    if (acc != 0)
        return -1;
    return (long)o;
}

static void mac(const uint8_t *key, size_t keylen, const uint8_t *p, size_t n,
                uint8_t out[TOKEN_MAC_LEN])
{
    uint8_t full[EVP_MAX_MD_SIZE];
    unsigned int fl = 0;
    uint8_t *buf = malloc(sizeof MAC_CONTEXT + n);
    if (buf == NULL) {
        /* Never a valid MAC for anything: verification then fails. */
        memset(out, 0, TOKEN_MAC_LEN);
        return;
    }
    memcpy(buf, MAC_CONTEXT, sizeof MAC_CONTEXT);
    memcpy(buf + sizeof MAC_CONTEXT, p, n);
    HMAC(EVP_sha256(), key, (int)keylen, buf, sizeof MAC_CONTEXT + n, full,
         &fl);
    free(buf);
    memcpy(out, full, TOKEN_MAC_LEN);
    OPENSSL_cleanse(full, sizeof full);
}

static size_t put_varint(uint8_t *p, uint32_t v)
{
    size_t n = 0;
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        p[n++] = b | (v ? 0x80 : 0);
    } while (v);
    return n;
}

/* Reads a minimal LEB128 varint of at most 32 bits; false if malformed. */
static bool get_varint(const uint8_t *p, size_t n, size_t *off, uint32_t *v)
{
    uint64_t acc = 0;
    for (unsigned i = 0; i < 5; i++) {
        if (*off >= n)
            return false;
        uint8_t b = p[(*off)++];
        acc |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            if (i > 0 && b == 0)
                return false; /* not minimal */
            if (acc > UINT32_MAX)
                return false;
            *v = (uint32_t)acc;
            return true;
        }
    }
    return false;
}

static bool printable_code(const char *s, size_t n)
{
    if (n == 0 || n >= CODE_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= 0x20 || s[i] >= 0x7f)
            return false;
    return true;
}

static bool clean_text(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

int token_encode(const struct token *t, const uint8_t *key, size_t keylen,
                 char **out, char *err, size_t errlen)
{
    *out = NULL;
    if (key == NULL || keylen < TOKEN_KEY_MIN)
        return sr_err(err, errlen, SR_EINVAL, "token key too short");
    if (t->kind != TOKEN_OPEN && t->kind != TOKEN_CLICK &&
        t->kind != TOKEN_UNSUBSCRIBE)
        return sr_err(err, errlen, SR_EINVAL, "bad token kind %d", t->kind);
    size_t cl = strnlen(t->code, CODE_MAX);
    if (!printable_code(t->code, cl))
        return sr_err(err, errlen, SR_EINVAL, "bad message code");
    size_t rl = t->rcpt ? strlen(t->rcpt) : 0;
    if (rl > TOKEN_RCPT_MAX || !clean_text(t->rcpt ? t->rcpt : "", rl))
        return sr_err(err, errlen, SR_EINVAL, "bad recipient address");
    size_t ul = 0;
    if (t->kind == TOKEN_CLICK) {
        ul = t->url ? strlen(t->url) : 0;
        if (ul == 0 || ul > TOKEN_URL_MAX)
            return sr_err(err, errlen, SR_EINVAL,
                          "click URL empty or longer "
                          "than %d bytes",
                          TOKEN_URL_MAX);
    }
    uint8_t *p = malloc(PAYLOAD_MAX + TOKEN_MAC_LEN);
    if (p == NULL)
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    size_t n = 0;
    p[n++] = TOKEN_VERSION;
    p[n++] = (uint8_t)t->kind;
    p[n++] = (uint8_t)cl;
    memcpy(p + n, t->code, cl);
    n += cl;
    n += put_varint(p + n, t->rcpt_index);
    n += put_varint(p + n, (uint32_t)rl);
    memcpy(p + n, rl ? t->rcpt : "", rl);
    n += rl;
    if (t->kind == TOKEN_CLICK) {
        n += put_varint(p + n, t->link_index);
        n += put_varint(p + n, (uint32_t)ul);
        memcpy(p + n, t->url, ul);
        n += ul;
    }
    mac(key, keylen, p, n, p + n);
    n += TOKEN_MAC_LEN;
    char *s = malloc((n + 2) / 3 * 4 + 1);
    if (s == NULL) {
        free(p);
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    }
    token_b64_encode(p, n, s);
    free(p);
    *out = s;
    return 0;
}

static char *dup_n(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s != NULL) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

int token_decode(const char *s, size_t len, const uint8_t *key, size_t keylen,
                 enum token_kind want, struct token *t, char *err,
                 size_t errlen)
{
    memset(t, 0, sizeof *t);
    if (key == NULL || keylen < TOKEN_KEY_MIN)
        return sr_err(err, errlen, SR_EINVAL, "token key too short");
    if (len > TOKEN_TEXT_MAX)
        return sr_err(err, errlen, SR_EPARSE, "token too long");
    uint8_t *p = malloc(len / 4 * 3 + 3);
    if (p == NULL)
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    long dn = token_b64_decode(s, len, p, len / 4 * 3 + 3);
    int rc = 0;
    if (dn < 0) {
        rc = sr_err(err, errlen, SR_EPARSE, "token is not base64url");
        goto out;
    }
    size_t n = (size_t)dn;
    if (n < 3 + 1 + 2 + TOKEN_MAC_LEN) {
        rc = sr_err(err, errlen, SR_EAUTH, "token too short");
        goto out;
    }
    n -= TOKEN_MAC_LEN;
    uint8_t want_mac[TOKEN_MAC_LEN];
    mac(key, keylen, p, n, want_mac);
    if (CRYPTO_memcmp(want_mac, p + n, TOKEN_MAC_LEN) != 0) {
        rc = sr_err(err, errlen, SR_EAUTH, "token signature mismatch");
        goto out;
    }
    if (p[0] != TOKEN_VERSION) {
        rc = sr_err(err, errlen, SR_EVERSION, "token version %u", p[0]);
        goto out;
    }
    unsigned kind = p[1];
    if (kind < TOKEN_OPEN || kind > TOKEN_UNSUBSCRIBE) {
        rc = sr_err(err, errlen, SR_EPARSE, "token kind %u", kind);
        goto out;
    }
    if (want != 0 && kind != (unsigned)want) {
        rc = sr_err(err, errlen, SR_EINVAL, "token kind %u, want %d", kind,
                    want);
        goto out;
    }
    size_t off = 2;
    size_t cl = p[off++];
    if (cl > n - off || !printable_code((const char *)p + off, cl)) {
        rc = sr_err(err, errlen, SR_EPARSE, "token code malformed");
        goto out;
    }
    t->kind = (enum token_kind)kind;
    memcpy(t->code, p + off, cl);
    t->code[cl] = '\0';
    off += cl;
    uint32_t rl = 0;
    if (!get_varint(p, n, &off, &t->rcpt_index) ||
        !get_varint(p, n, &off, &rl) || rl > TOKEN_RCPT_MAX || rl > n - off ||
        !clean_text((const char *)p + off, rl)) {
        rc = sr_err(err, errlen, SR_EPARSE, "token recipient malformed");
        goto out;
    }
    if (rl > 0 && (t->rcpt = dup_n(p + off, rl)) == NULL) {
        rc = sr_err(err, errlen, SR_ENOMEM, "out of memory");
        goto out;
    }
    off += rl;
    if (kind == TOKEN_CLICK) {
        uint32_t ul = 0;
        if (!get_varint(p, n, &off, &t->link_index) ||
            !get_varint(p, n, &off, &ul) || ul == 0 || ul > TOKEN_URL_MAX ||
            ul > n - off || memchr(p + off, '\0', ul) != NULL) {
            rc = sr_err(err, errlen, SR_EPARSE, "token URL malformed");
            goto out;
        }
        if ((t->url = dup_n(p + off, ul)) == NULL) {
            rc = sr_err(err, errlen, SR_ENOMEM, "out of memory");
            goto out;
        }
        off += ul;
    }
    if (off != n)
        rc = sr_err(err, errlen, SR_EPARSE, "token has %zu trailing bytes",
                    n - off);
out:
    free(p);
    if (rc != 0)
        token_clear(t);
    return rc;
}

void token_clear(struct token *t)
{
    free(t->rcpt);
    free(t->url);
    memset(t, 0, sizeof *t);
}
