/* test_dkim.c - DKIM signing (engine/dkim.h): RSA-2048 and Ed25519
 * signatures on one message, checked with opendkim's verifier (the keys
 * served by a lookup callback instead of DNS), a changed message fails,
 * bad keys and header lists are refused. tests/integration/test_rewrap.py
 * checks the same with a verifier we did not write (dkimpy). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <opendkim/dkim.h>
#include <stdlib.h>
#include <string.h>

#include "engine/dkim.h"
#include "node/errors.h"

struct testkey {
    const char *selector;
    char *pem;
    char txt[1024];
};

static struct testkey keys[2] = {{"rsa2048", NULL, ""}, {"ed", NULL, ""}};

static void make_key(struct testkey *k, EVP_PKEY *pk, bool rsa)
{
    BIO *b = BIO_new(BIO_s_mem());
    assert_true(PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL));
    char *p;
    long n = BIO_get_mem_data(b, &p);
    k->pem = strndup(p, (size_t)n);
    BIO_free(b);
    unsigned char der[1024];
    int dl;
    if (rsa) {
        unsigned char *q = der;
        dl = i2d_PUBKEY(pk, &q);
    } else {
        size_t l = sizeof der;
        assert_true(EVP_PKEY_get_raw_public_key(pk, der, &l));
        dl = (int)l;
    }
    char b64[1024];
    EVP_EncodeBlock((unsigned char *)b64, der, dl);
    snprintf(k->txt, sizeof k->txt, "v=DKIM1; k=%s; p=%s",
             rsa ? "rsa" : "ed25519", b64);
}

static DKIM_STAT lookup(DKIM *dkim, DKIM_SIGINFO *sig, u_char *buf,
                        size_t buflen)
{
    (void)dkim;
    const char *sel = (const char *)dkim_sig_getselector(sig);
    for (int i = 0; i < 2; i++)
        if (strcmp(sel, keys[i].selector) == 0) {
            snprintf((char *)buf, buflen, "%s", keys[i].txt);
            return DKIM_STAT_OK;
        }
    return DKIM_STAT_NOKEY;
}

/* How many signatures of msg verify, and how many there are. */
static int verify(const char *msg, int *total)
{
    DKIM_LIB *lib = dkim_init(NULL, NULL);
    dkim_set_key_lookup(lib, lookup);
    DKIM_STAT st;
    DKIM *d = dkim_verify(lib, (const u_char *)"t", NULL, &st);
    assert_non_null(d);
    dkim_chunk(d, (u_char *)msg, strlen(msg));
    dkim_chunk(d, NULL, 0);
    dkim_eom(d, NULL);
    DKIM_SIGINFO **sigs;
    int n = 0, ok = 0;
    if (dkim_getsiglist(d, &sigs, &n) == DKIM_STAT_OK)
        for (int i = 0; i < n; i++)
            if ((dkim_sig_getflags(sigs[i]) & DKIM_SIGFLAG_PASSED) &&
                dkim_sig_getbh(sigs[i]) == DKIM_SIGBH_MATCH)
                ok++;
    *total = n;
    dkim_free(d);
    dkim_close(lib);
    return ok;
}

static int setup(void **state)
{
    (void)state;
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    make_key(&keys[0], rsa, true);
    make_key(&keys[1], ed, false);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ed);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(keys[0].pem);
    free(keys[1].pem);
    return 0;
}

static const char msg[] = "From: Alice <alice@acme.example>\r\n"
                          "To: bob@example.org\r\n"
                          "Subject: =?UTF-8?Q?Caf=C3=A9?=   and\r\n\tfolded\r\n"
                          "Date: Mon, 30 Nov 2026 03:30:37 +0000\r\n"
                          "Message-ID: <x@acme.example>\r\n"
                          "X-Not-Signed: 1\r\n"
                          "\r\n"
                          "Hello  there \r\n\r\n\r\n";

static void test_sign_verify(void **state)
{
    (void)state;
    struct dkim_signer_key k[2] = {
        {"acme.example", "rsa2048", keys[0].pem},
        {"acme.example", "ed", keys[1].pem},
    };
    struct dkim_signer *s = NULL;
    char err[SR_ERRMSG_SIZE] = "";
    int rc = dkim_signer_new(k, 2, NULL, 1796004637, &s, err, sizeof err);
    if (rc != 0)
        fail_msg("dkim_signer_new: %s", err);
    char *out = NULL;
    size_t len = 0;
    rc = dkim_signer_sign(s, msg, strlen(msg), &out, &len, err, sizeof err);
    if (rc != 0)
        fail_msg("dkim_signer_sign: %s", err);
    assert_int_equal(len, strlen(out));
    /* two fields prepended, RSA first, the message after them unchanged */
    const char *first = "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/"
                        "relaxed; d=acme.example;";
    assert_memory_equal(out, first, strlen(first));
    const char *second = strstr(out + 1, "\r\nDKIM-Signature: ");
    assert_non_null(second);
    assert_non_null(strstr(out, "s=rsa2048;"));
    assert_true(strstr(out, "s=rsa2048;") < second);
    assert_non_null(strstr(second, "a=ed25519-sha256"));
    assert_string_equal(out + len - strlen(msg), msg);
    assert_non_null(strstr(out, "t=1796004637;"));
    /* the default header list, only the fields present */
    const char *h = strstr(out, "h=");
    assert_non_null(h);
    assert_non_null(strstr(h, "h=From:To:Subject:Date:Message-ID;"));
    assert_true(strcasestr(out, "x-not-signed") >= out + len - strlen(msg));
    for (size_t i = 0; i < len; i++)
        if (out[i] == '\n')
            assert_int_equal(out[i - 1], '\r');

    int total = 0;
    assert_int_equal(verify(out, &total), 2);
    assert_int_equal(total, 2);

    /* a changed body and a changed signed header fail both; an unsigned
     * header may change */
    char *bad = strdup(out);
    strstr(bad, "Hello")[0] = 'J';
    assert_int_equal(verify(bad, &total), 0);
    free(bad);
    bad = strdup(out);
    strstr(bad, "To: bob")[4] = 'r';
    assert_int_equal(verify(bad, &total), 0);
    free(bad);
    bad = strdup(out);
    strstr(bad, "X-Not-Signed: 1")[14] = '2';
    assert_int_equal(verify(bad, &total), 2);
    free(bad);
    free(out);

    /* a message opendkim cannot parse is refused, not signed */
    const char broken[] = "From: a@b\r\nnot a field\r\n\r\nx\r\n";
    rc = dkim_signer_sign(s, broken, strlen(broken), &out, &len, err,
                          sizeof err);
    assert_int_equal(rc, SR_EPARSE);
    assert_null(out);
    dkim_signer_free(s);

    /* a policy header list */
    const char *hl[] = {"from", "subject", "x-not-signed", NULL};
    assert_int_equal(dkim_signer_new(k + 1, 1, hl, 0, &s, err, sizeof err), 0);
    assert_int_equal(
        dkim_signer_sign(s, msg, strlen(msg), &out, &len, err, sizeof err), 0);
    assert_non_null(strstr(out, "h=From:Subject:X-Not-Signed;"));
    assert_int_equal(verify(out, &total), 1);
    free(out);
    dkim_signer_free(s);
}

static void test_bad_keys(void **state)
{
    (void)state;
    struct dkim_signer *s = NULL;
    char err[SR_ERRMSG_SIZE];
    struct dkim_signer_key k = {"acme.example", "sel", "not a key"};
    assert_int_equal(dkim_signer_new(&k, 1, NULL, 0, &s, err, sizeof err),
                     SR_EINVAL);
    assert_null(s);
    k.pem = keys[0].pem;
    k.domain = "bad domain";
    assert_int_equal(dkim_signer_new(&k, 1, NULL, 0, &s, err, sizeof err),
                     SR_EINVAL);
    k.domain = "acme.example";
    k.selector = "";
    assert_int_equal(dkim_signer_new(&k, 1, NULL, 0, &s, err, sizeof err),
                     SR_EINVAL);
    k.selector = "sel";
    const char *hl[] = {"from", "sub(ject", NULL};
    assert_int_equal(dkim_signer_new(&k, 1, hl, 0, &s, err, sizeof err),
                     SR_EINVAL);
    assert_int_equal(dkim_signer_new(&k, 0, NULL, 0, &s, err, sizeof err),
                     SR_EINVAL);
    EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)512);
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, small, NULL, NULL, 0, NULL, NULL);
    char *p;
    long n = BIO_get_mem_data(b, &p);
    char *pem = strndup(p, (size_t)n);
    k.pem = pem;
    assert_int_equal(dkim_signer_new(&k, 1, NULL, 0, &s, err, sizeof err),
                     SR_EINVAL);
    assert_non_null(strstr(err, "512 bits"));
    free(pem);
    BIO_free(b);
    EVP_PKEY_free(small);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_verify),
        cmocka_unit_test(test_bad_keys),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
