/* dkim.c - DKIM signing with libopendkim (see dkim.h). */
#include "engine/dkim.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <opendkim/dkim.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "node/errors.h"

#define KEYS_MAX 8
#define HEADERS_MAX 64
#define SIG_PREFIX "DKIM-Signature: "

const char *const dkim_signer_default_headers[] = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "feedback-id",
    NULL,
};

struct signer_key {
    char *domain;
    char *selector;
    char *pem;    /* normalised PKCS#8 PEM (RSA, for opendkim) */
    EVP_PKEY *ed; /* Ed25519 keys: signed here, see sign_ed25519 */
    dkim_alg_t alg;
};

struct dkim_signer {
    DKIM_LIB *lib; /* configured once, then read-only */
    struct signer_key keys[KEYS_MAX];
    size_t n;
    const char **headers; /* NULL-terminated copy, lowercase */
    uint64_t fixed_time;
};

static bool name_ok(const char *s, size_t max, const char *extra)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || strchr(extra, *s)))
            return false;
    return true;
}

/* Reads a PEM private key, says which algorithm it signs with and writes
 * it back as PKCS#8 PEM (opendkim wants the text to start with "-----"). */
static int load_key(const char *pem, struct signer_key *k, char *err,
                    size_t errlen)
{
    BIO *in = BIO_new_mem_buf(pem, -1);
    if (in == NULL)
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    EVP_PKEY *pk = PEM_read_bio_PrivateKey(in, NULL, NULL, NULL);
    BIO_free(in);
    if (pk == NULL)
        return sr_err(err, errlen, SR_EINVAL,
                      "DKIM key for %s is not a PEM private key", k->domain);
    int rc = 0;
    int type = EVP_PKEY_get_base_id(pk);
    if (type == EVP_PKEY_RSA) {
        if (EVP_PKEY_get_bits(pk) < 1024)
            rc = sr_err(err, errlen, SR_EINVAL,
                        "DKIM RSA key for %s has %d "
                        "bits (at least 1024)",
                        k->domain, EVP_PKEY_get_bits(pk));
        k->alg = DKIM_SIGN_RSASHA256;
    } else if (type == EVP_PKEY_ED25519) {
        k->alg = DKIM_SIGN_ED25519SHA256;
        if (EVP_PKEY_up_ref(pk) == 1)
            k->ed = pk;
    } else
        rc = sr_err(err, errlen, SR_EINVAL,
                    "DKIM key for %s is neither RSA nor Ed25519", k->domain);
    if (rc == 0) {
        BIO *out = BIO_new(BIO_s_mem());
        char *p = NULL;
        long n = 0;
        if (out == NULL ||
            !PEM_write_bio_PrivateKey(out, pk, NULL, NULL, 0, NULL, NULL) ||
            (n = BIO_get_mem_data(out, &p)) <= 0 ||
            (k->pem = strndup(p, (size_t)n)) == NULL)
            rc = sr_err(err, errlen, SR_ENOMEM, "out of memory");
        BIO_free(out);
    }
    EVP_PKEY_free(pk);
    return rc;
}

void dkim_signer_free(struct dkim_signer *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->keys[i].domain);
        free(s->keys[i].selector);
        if (s->keys[i].pem != NULL) {
            memset(s->keys[i].pem, 0, strlen(s->keys[i].pem));
            free(s->keys[i].pem);
        }
        EVP_PKEY_free(s->keys[i].ed);
    }
    if (s->headers != NULL)
        for (size_t i = 0; s->headers[i] != NULL; i++)
            free((char *)s->headers[i]);
    free(s->headers);
    if (s->lib != NULL)
        dkim_close(s->lib);
    free(s);
}

int dkim_signer_new(const struct dkim_signer_key *keys, size_t n,
                    const char *const *headers, uint64_t fixed_time,
                    struct dkim_signer **out, char *err, size_t errlen)
{
    *out = NULL;
    if (n == 0 || n > KEYS_MAX)
        return sr_err(err, errlen, SR_EINVAL, "DKIM needs 1 to %d keys",
                      KEYS_MAX);
    if (headers == NULL)
        headers = dkim_signer_default_headers;
    size_t nh = 0;
    for (; headers[nh] != NULL; nh++)
        if (nh >= HEADERS_MAX || !name_ok(headers[nh], 76, "-_"))
            return sr_err(err, errlen, SR_EINVAL, "bad DKIM header name");
    struct dkim_signer *s = calloc(1, sizeof *s);
    if (s == NULL)
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct signer_key *k = &s->keys[i];
        s->n = i + 1;
        if (!name_ok(keys[i].domain, 253, ".-") ||
            !name_ok(keys[i].selector, 63, ".-_")) {
            rc = sr_err(err, errlen, SR_EINVAL, "bad DKIM domain or selector");
            break;
        }
        k->domain = strdup(keys[i].domain);
        k->selector = strdup(keys[i].selector);
        if (k->domain == NULL || k->selector == NULL) {
            rc = sr_err(err, errlen, SR_ENOMEM, "out of memory");
            break;
        }
        if (keys[i].pem == NULL) {
            rc =
                sr_err(err, errlen, SR_EINVAL, "no DKIM key for %s", k->domain);
            break;
        }
        rc = load_key(keys[i].pem, k, err, errlen);
    }
    if (rc == 0 && (s->lib = dkim_init(NULL, NULL)) == NULL)
        rc = sr_err(err, errlen, SR_ENOMEM, "dkim_init failed");
    s->fixed_time = fixed_time;
    if (rc == 0 && (s->headers = calloc(nh + 1, sizeof *s->headers)) == NULL)
        rc = sr_err(err, errlen, SR_ENOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < nh; i++) {
        char *h = strdup(headers[i]);
        if (h == NULL) {
            rc = sr_err(err, errlen, SR_ENOMEM, "out of memory");
            break;
        }
        for (char *c = h; *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c - 'A' + 'a');
        s->headers[i] = h;
    }
    for (size_t i = 0; rc == 0 && i < s->n; i++)
        if (s->keys[i].alg == DKIM_SIGN_ED25519SHA256 && s->keys[i].ed == NULL)
            rc = sr_err(err, errlen, SR_ENOMEM, "out of memory");
    if (rc == 0) {
        /* opendkim takes the array itself (and checks len against the
         * size of a char **); it copies the names into a regex */
        if (dkim_options(s->lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNHDRS,
                         (void *)headers, sizeof(char **)) != DKIM_STAT_OK)
            rc = sr_err(err, errlen, SR_EINVAL,
                        "opendkim refused the header "
                        "list");
    }
    if (rc == 0 && fixed_time != 0 &&
        dkim_options(s->lib, DKIM_OP_SETOPT, DKIM_OPTS_FIXEDTIME, &fixed_time,
                     sizeof fixed_time) != DKIM_STAT_OK)
        rc = sr_err(err, errlen, SR_EINVAL, "opendkim refused the fixed time");
    if (rc != 0) {
        dkim_signer_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* One signature: the DKIM-Signature field (CRLF-terminated) into sig. */
static int sign_one(struct dkim_signer *s, const struct signer_key *k,
                    const char *msg, size_t len, char **sig, char *err,
                    size_t errlen)
{
    DKIM_STAT st = DKIM_STAT_OK;
    DKIM *d =
        dkim_sign(s->lib, (const unsigned char *)"smartrelay", NULL,
                  (dkim_sigkey_t)k->pem, (const unsigned char *)k->selector,
                  (const unsigned char *)k->domain, DKIM_CANON_RELAXED,
                  DKIM_CANON_RELAXED, k->alg, -1, &st);
    if (d == NULL)
        return sr_err(err, errlen,
                      st == DKIM_STAT_NORESOURCE ? SR_ENOMEM : SR_EINVAL,
                      "dkim_sign for %s: status %d", k->domain, st);
    int rc = 0;
    const char *what = "dkim_chunk";
    st = dkim_chunk(d, (unsigned char *)msg, len);
    if (st == DKIM_STAT_OK) {
        st = dkim_chunk(d, NULL, 0);
    }
    if (st == DKIM_STAT_OK) {
        what = "dkim_eom";
        st = dkim_eom(d, NULL);
    }
    unsigned char *hdr = NULL;
    size_t hl = 0;
    if (st == DKIM_STAT_OK) {
        what = "dkim_getsighdr_d";
        st = dkim_getsighdr_d(d, strlen(SIG_PREFIX), &hdr, &hl);
    }
    if (st != DKIM_STAT_OK) {
        const char *e = dkim_geterror(d);
        char safe[80];
        sr_sanitize(safe, sizeof safe, e ? e : "", e ? strlen(e) : 0);
        rc = sr_err(err, errlen,
                    st == DKIM_STAT_NORESOURCE ? SR_ENOMEM : SR_EPARSE,
                    "%s for %s: status %d: %s", what, k->domain, st, safe);
    } else {
        size_t pl = strlen(SIG_PREFIX);
        char *p = malloc(pl + hl + 3);
        if (p == NULL)
            rc = sr_err(err, errlen, SR_ENOMEM, "out of memory");
        else {
            memcpy(p, SIG_PREFIX, pl);
            memcpy(p + pl, hdr, hl);
            memcpy(p + pl + hl, "\r\n", 3);
            *sig = p;
        }
    }
    dkim_free(d);
    return rc;
}

/* ---- Ed25519 (RFC 8463), signed here ------------------------------------
 *
 * libopendkim 2.11 signs ed25519-sha256 correctly, but its dkim_free()
 * releases the key material of RSA signatures only: every Ed25519
 * signature leaks its EVP_PKEY and output buffer (about 1.7 KB, seen by
 * LeakSanitizer). A relay signs millions of messages, so Ed25519 is
 * signed here with OpenSSL, following RFC 6376 (relaxed/relaxed) and
 * RFC 8463 (PureEdDSA over the SHA-256 of the canonical header data),
 * with the key parsed once. RSA stays with opendkim. */

struct hfield {
    const char *p; /* "Name: value\r\n\tmore" without the final CRLF */
    size_t len, name_len;
    bool used;
};

static bool is_wsp(char c)
{
    return c == ' ' || c == '\t';
}

/* RFC 6376 3.4.2: lowercase name, unfolded value, WSP runs as one SP, no
 * WSP at the ends of the value or around the colon; then CRLF if crlf. */
static void canon_header(const char *p, size_t len, size_t name_len, bool crlf,
                         EVP_MD_CTX *md)
{
    char *out = malloc(len + 3);
    size_t o = 0;
    if (out == NULL)
        return; /* the caller's digest then fails to verify, never lies */
    size_t nl = name_len;
    while (nl > 0 && is_wsp(p[nl - 1]))
        nl--;
    for (size_t i = 0; i < nl; i++)
        out[o++] = (p[i] >= 'A' && p[i] <= 'Z') ? (char)(p[i] + 32) : p[i];
    out[o++] = ':';
    size_t i = name_len + 1; /* past the colon */
    bool pending = false, started = false;
    for (; i < len; i++) {
        char c = p[i];
        if (c == '\r' || c == '\n')
            continue;
        if (is_wsp(c)) {
            pending = started;
            continue;
        }
        if (pending)
            out[o++] = ' ';
        pending = false;
        started = true;
        out[o++] = c;
    }
    if (crlf) {
        out[o++] = '\r';
        out[o++] = '\n';
    }
    EVP_DigestUpdate(md, out, o);
    free(out);
}

/* RFC 6376 3.4.4: WSP runs as one SP, none at line ends, no empty lines
 * at the end. */
static int body_hash(const char *b, size_t len, unsigned char out[32])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(md);
        return SR_ENOMEM;
    }
    size_t empty = 0; /* empty lines seen and not yet written */
    char *line = malloc(len + 2);
    if (line == NULL) {
        EVP_MD_CTX_free(md);
        return SR_ENOMEM;
    }
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(b + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - b) : len;
        size_t le = (e > i && b[e - 1] == '\r') ? e - 1 : e;
        size_t o = 0;
        bool pending = false;
        for (size_t k = i; k < le; k++) {
            if (is_wsp(b[k])) {
                pending = true;
                continue;
            }
            if (pending)
                line[o++] = ' ';
            pending = false;
            line[o++] = b[k];
        }
        if (o == 0)
            empty++;
        else {
            for (; empty > 0; empty--)
                EVP_DigestUpdate(md, "\r\n", 2);
            line[o++] = '\r';
            line[o++] = '\n';
            EVP_DigestUpdate(md, line, o);
        }
        i = nl ? e + 1 : len;
    }
    free(line);
    unsigned int ol = 0;
    int ok = EVP_DigestFinal_ex(md, out, &ol);
    EVP_MD_CTX_free(md);
    return ok == 1 && ol == 32 ? 0 : SR_ENOMEM;
}

static int sign_ed25519(struct dkim_signer *s, const struct signer_key *k,
                        const char *msg, size_t len, char **sig, char *err,
                        size_t errlen)
{
    /* the header fields, as opendkim would refuse them */
    struct hfield *f = NULL;
    size_t nf = 0, cap = 0, i = 0, body = len;
    int rc = 0;
    while (i < len) {
        const char *nl = memchr(msg + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - msg) : len;
        size_t le = (e > i && msg[e - 1] == '\r') ? e - 1 : e;
        size_t next = nl ? e + 1 : len;
        if (le == i) {
            body = next;
            break;
        }
        if (is_wsp(msg[i])) {
            if (nf == 0) {
                rc = sr_err(err, errlen, SR_EPARSE,
                            "header starts with a "
                            "continuation line");
                break;
            }
            f[nf - 1].len = le - (size_t)(f[nf - 1].p - msg);
        } else {
            const char *colon = memchr(msg + i, ':', le - i);
            if (colon == NULL || colon == msg + i) {
                rc = sr_err(err, errlen, SR_EPARSE,
                            "header line is not a field");
                break;
            }
            if (nf == cap) {
                cap = cap ? cap * 2 : 32;
                struct hfield *g = realloc(f, cap * sizeof *g);
                if (g == NULL) {
                    rc = sr_err(err, errlen, SR_ENOMEM, "out of memory");
                    break;
                }
                f = g;
            }
            f[nf++] = (struct hfield){msg + i, le - i,
                                      (size_t)(colon - (msg + i)), false};
        }
        i = next;
    }
    bool from = false;
    for (size_t j = 0; rc == 0 && j < nf; j++) {
        size_t nl = f[j].name_len;
        while (nl > 0 && is_wsp(f[j].p[nl - 1]))
            nl--;
        from |= nl == 4 && strncasecmp(f[j].p, "from", 4) == 0;
    }
    if (rc == 0 && !from)
        rc = sr_err(err, errlen, SR_EPARSE, "no From field to sign");
    unsigned char bh[32];
    if (rc == 0 && body_hash(msg + body, len - body, bh) != 0)
        rc = sr_err(err, errlen, SR_ENOMEM, "out of memory");
    if (rc != 0) {
        free(f);
        return rc;
    }

    /* which fields: for each listed name (From always), the last one not
     * yet used, bottom up (RFC 6376 5.4.2) */
    size_t nh = 0;
    while (s->headers[nh] != NULL)
        nh++;
    size_t *pick = calloc(nh + 1, sizeof *pick);
    char *hlist = calloc(1, (nh + 1) * 84);
    size_t col = 0; /* h= is folded to keep lines short (FWS is allowed
                       around its colons, RFC 6376 3.5) */
    char *hdr = NULL;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    size_t np = 0;
    if (pick == NULL || hlist == NULL || md == NULL) {
        rc = sr_err(err, errlen, SR_ENOMEM, "out of memory");
        goto out;
    }
    bool from_listed = false;
    for (size_t h = 0; h < nh; h++)
        from_listed |= strcmp(s->headers[h], "from") == 0;
    for (size_t h = 0; h <= nh; h++) {
        const char *name = h < nh ? s->headers[h] : "from";
        if (h == nh && from_listed)
            break;
        size_t nl = strlen(name);
        for (size_t j = nf; j-- > 0;) {
            size_t fl = f[j].name_len;
            while (fl > 0 && is_wsp(f[j].p[fl - 1]))
                fl--;
            if (!f[j].used && fl == nl && strncasecmp(f[j].p, name, nl) == 0) {
                f[j].used = true;
                pick[np++] = j;
                if (np > 1) {
                    strcat(hlist, ":");
                    col++;
                    if (col + fl > 64) {
                        strcat(hlist, "\r\n\t ");
                        col = 0;
                    }
                }
                strncat(hlist, f[j].p, fl);
                col += fl;
                break;
            }
        }
    }
    char bh64[64];
    EVP_EncodeBlock((unsigned char *)bh64, bh, 32);
    uint64_t t = s->fixed_time ? s->fixed_time : (uint64_t)time(NULL);
    if (asprintf(&hdr,
                 "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;"
                 "\r\n\td=%s; s=%s; t=%llu;\r\n\tbh=%s;\r\n\th=%s;\r\n\tb=",
                 k->domain, k->selector, (unsigned long long)t, bh64,
                 hlist) < 0) {
        hdr = NULL;
        rc = sr_err(err, errlen, SR_ENOMEM, "out of memory");
        goto out;
    }
    /* the signed data: the picked fields, then this field with b= empty
     * and no final CRLF (RFC 6376 3.7) */
    unsigned char hash[32];
    unsigned int hl = 0;
    if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        rc = sr_err(err, errlen, SR_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t j = 0; j < np; j++)
        canon_header(f[pick[j]].p, f[pick[j]].len, f[pick[j]].name_len, true,
                     md);
    canon_header(hdr, strlen(hdr), strlen("DKIM-Signature"), false, md);
    if (EVP_DigestFinal_ex(md, hash, &hl) != 1) {
        rc = sr_err(err, errlen, SR_ENOMEM, "out of memory");
        goto out;
    }
    /* PureEdDSA over the hash (RFC 8463 3) */
    EVP_MD_CTX *sc = EVP_MD_CTX_new();
    unsigned char sigbin[64];
    size_t sl = sizeof sigbin;
    if (sc == NULL || EVP_DigestSignInit(sc, NULL, NULL, NULL, k->ed) != 1 ||
        EVP_DigestSign(sc, sigbin, &sl, hash, sizeof hash) != 1) {
        EVP_MD_CTX_free(sc);
        rc = sr_err(err, errlen, SR_EINVAL, "Ed25519 signing failed");
        goto out;
    }
    EVP_MD_CTX_free(sc);
    char b64[96];
    EVP_EncodeBlock((unsigned char *)b64, sigbin, (int)sl);
    char *full = NULL;
    if (asprintf(&full, "%s%s\r\n", hdr, b64) < 0)
        rc = sr_err(err, errlen, SR_ENOMEM, "out of memory");
    else
        *sig = full;
out:
    EVP_MD_CTX_free(md);
    free(hdr);
    free(hlist);
    free(pick);
    free(f);
    return rc;
}

int dkim_signer_sign(struct dkim_signer *s, const char *msg, size_t len,
                     char **out, size_t *outlen, char *err, size_t errlen)
{
    *out = NULL;
    *outlen = 0;
    char *sigs[KEYS_MAX] = {0};
    size_t total = len;
    int rc = 0;
    for (size_t i = 0; i < s->n && rc == 0; i++) {
        if (s->keys[i].alg == DKIM_SIGN_ED25519SHA256)
            rc = sign_ed25519(s, &s->keys[i], msg, len, &sigs[i], err, errlen);
        else
            rc = sign_one(s, &s->keys[i], msg, len, &sigs[i], err, errlen);
        if (rc == 0)
            total += strlen(sigs[i]);
    }
    char *m = rc == 0 ? malloc(total + 1) : NULL;
    if (rc == 0 && m == NULL)
        rc = sr_err(err, errlen, SR_ENOMEM, "out of memory");
    if (rc == 0) {
        size_t o = 0;
        for (size_t i = 0; i < s->n; i++) {
            size_t l = strlen(sigs[i]);
            memcpy(m + o, sigs[i], l);
            o += l;
        }
        memcpy(m + o, msg, len);
        m[total] = '\0';
        *out = m;
        *outlen = total;
    }
    for (size_t i = 0; i < s->n; i++)
        free(sigs[i]);
    return rc;
}
