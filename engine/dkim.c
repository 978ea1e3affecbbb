/* dkim.c - DKIM signing with libopendkim (see dkim.h). */
#include "engine/dkim.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <opendkim/dkim.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

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
    char *pem; /* normalised PKCS#8 PEM */
    dkim_alg_t alg;
};

struct dkim_signer {
    DKIM_LIB *lib; /* configured once, then read-only */
    struct signer_key keys[KEYS_MAX];
    size_t n;
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
    } else if (type == EVP_PKEY_ED25519)
        k->alg = DKIM_SIGN_ED25519SHA256;
    else
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
    }
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
    if (rc == 0 && !dkim_libfeature(s->lib, DKIM_FEATURE_ED25519))
        for (size_t i = 0; i < s->n; i++)
            if (s->keys[i].alg == DKIM_SIGN_ED25519SHA256)
                rc = sr_err(err, errlen, SR_EINVAL,
                            "this libopendkim cannot sign with Ed25519");
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

int dkim_signer_sign(struct dkim_signer *s, const char *msg, size_t len,
                     char **out, size_t *outlen, char *err, size_t errlen)
{
    *out = NULL;
    *outlen = 0;
    char *sigs[KEYS_MAX] = {0};
    size_t total = len;
    int rc = 0;
    for (size_t i = 0; i < s->n && rc == 0; i++) {
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
