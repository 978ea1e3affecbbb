/* certs.c - cluster CA and node certificates (see certs.h). */
#include "clusterctl/certs.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "node/errors.h"

static int ossl_err(char *err, size_t errlen, const char *what)
{
    char e[160];
    ERR_error_string_n(ERR_get_error(), e, sizeof e);
    return sr_err(err, errlen, SR_EIO, "%s: %s", what, e);
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ex == NULL)
        return -1;
    int ok = X509_add_ext(cert, ex, -1);
    X509_EXTENSION_free(ex);
    return ok ? 0 : -1;
}

/* A new certificate for key with subject CN=cn, valid for days. */
static X509 *new_cert(EVP_PKEY *key, const char *cn, long days)
{
    X509 *x = X509_new();
    unsigned char serial[16];
    if (x == NULL || RAND_bytes(serial, sizeof serial) != 1) {
        X509_free(x);
        return NULL;
    }
    serial[0] &= 0x7f; /* a positive serial number */
    BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    BN_free(bn);
    X509_set_version(x, 2);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), days * 86400);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                               (const unsigned char *)"SmartRelay", -1, -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    return x;
}

static int write_pem(const char *path, EVP_PKEY *key, X509 *cert, char *err,
                     size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, key ? 0600 : 0644);
    if (fd < 0)
        return sr_err(err, errlen, SR_EIO, "%s: cannot create (exists?)", path);
    FILE *f = fdopen(fd, "w");
    int ok = f != NULL &&
             (key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)
                  : PEM_write_X509(f, cert));
    if (f == NULL || fclose(f) != 0 || !ok) {
        unlink(path);
        return sr_err(err, errlen, SR_EIO, "%s: write failed", path);
    }
    return 0;
}

int certs_ca_create(const char *dir, char *err, size_t errlen)
{
    char kp[1024], cp[1024];
    snprintf(kp, sizeof kp, "%s/ca.key", dir);
    snprintf(cp, sizeof cp, "%s/ca.pem", dir);
    mkdir(dir, 0700);
    EVP_PKEY *key = EVP_EC_gen("P-256");
    if (key == NULL)
        return ossl_err(err, errlen, "CA key");
    X509 *x = new_cert(key, "SmartRelay cluster CA", 3650);
    int rc = SR_EIO;
    if (x != NULL) {
        X509_set_issuer_name(x, X509_get_subject_name(x));
        if (add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE") == 0 &&
            add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") == 0 &&
            add_ext(x, x, NID_subject_key_identifier, "hash") == 0 &&
            X509_sign(x, key, EVP_sha256()) > 0) {
            rc = write_pem(kp, key, NULL, err, errlen);
            if (rc == 0 && (rc = write_pem(cp, NULL, x, err, errlen)) != 0)
                unlink(kp);
        } else {
            rc = ossl_err(err, errlen, "CA certificate");
        }
    }
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}

int certs_node_create(const char *dir, unsigned long id, char *err,
                      size_t errlen)
{
    char path[1024], cn[32], san[48];
    if (id == 0 || id > 65535)
        return sr_err(err, errlen, SR_EINVAL, "node id must be 1..65535");
    snprintf(path, sizeof path, "%s/ca.key", dir);
    FILE *f = fopen(path, "r");
    EVP_PKEY *cakey = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    snprintf(path, sizeof path, "%s/ca.pem", dir);
    f = fopen(path, "r");
    X509 *ca = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    if (cakey == NULL || ca == NULL) {
        EVP_PKEY_free(cakey);
        X509_free(ca);
        return sr_err(err, errlen, SR_EINVAL,
                      "%s: no CA here (clusterctl ca create %s)", dir, dir);
    }
    snprintf(cn, sizeof cn, "node%lu", id);
    snprintf(san, sizeof san, "DNS:node%lu", id);
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = key ? new_cert(key, cn, 730) : NULL;
    int rc = SR_EIO;
    if (x != NULL && X509_set_issuer_name(x, X509_get_subject_name(ca)) &&
        add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE") == 0 &&
        add_ext(x, ca, NID_key_usage, "critical,digitalSignature") == 0 &&
        add_ext(x, ca, NID_ext_key_usage, "serverAuth,clientAuth") == 0 &&
        add_ext(x, ca, NID_subject_alt_name, san) == 0 &&
        add_ext(x, ca, NID_authority_key_identifier, "keyid") == 0 &&
        X509_sign(x, cakey, EVP_sha256()) > 0) {
        char kp[1024], cp[1024];
        snprintf(kp, sizeof kp, "%s/%s.key", dir, cn);
        snprintf(cp, sizeof cp, "%s/%s.pem", dir, cn);
        rc = write_pem(kp, key, NULL, err, errlen);
        if (rc == 0 && (rc = write_pem(cp, NULL, x, err, errlen)) != 0)
            unlink(kp);
    } else {
        rc = ossl_err(err, errlen, "node certificate");
    }
    X509_free(x);
    EVP_PKEY_free(key);
    X509_free(ca);
    EVP_PKEY_free(cakey);
    return rc;
}
