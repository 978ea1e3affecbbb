/* tls.c - OpenSSL over memory BIOs (see tls.h). */
#include "gateways/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdlib.h>

#include "node/errors.h"

struct tls_ctx {
    SSL_CTX *ctx;
};

struct tls_conn {
    SSL *ssl;
    BIO *rbio; /* ciphertext from the peer; owned by ssl */
    BIO *wbio; /* ciphertext to the peer; owned by ssl */
    bool established;
};

int tls_ctx_new_server(const char *cert_file, const char *key_file,
                       struct tls_ctx **out, char *err, size_t errlen)
{
    struct tls_ctx *c = calloc(1, sizeof *c);
    if (c == NULL)
        return SR_ENOMEM;
    c->ctx = SSL_CTX_new(TLS_server_method());
    if (c->ctx == NULL) {
        free(c);
        return sr_err(err, errlen, SR_ENOMEM, "tls: cannot create context");
    }
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(c->ctx, SSL_OP_NO_RENEGOTIATION |
                                    SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(c->ctx, cert_file) != 1 ||
        SSL_CTX_use_PrivateKey_file(c->ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(c->ctx) != 1) {
        char e[160];
        ERR_error_string_n(ERR_get_error(), e, sizeof e);
        SSL_CTX_free(c->ctx);
        free(c);
        return sr_err(err, errlen, SR_EINVAL, "smtp.tls_cert/smtp.tls_key: %s",
                      e);
    }
    *out = c;
    return 0;
}

void tls_ctx_free(struct tls_ctx *c)
{
    if (c == NULL)
        return;
    SSL_CTX_free(c->ctx);
    free(c);
}

struct tls_conn *tls_conn_new(struct tls_ctx *c)
{
    struct tls_conn *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->ssl = SSL_new(c->ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
        SSL_free(t->ssl);
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        free(t);
        return NULL;
    }
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_accept_state(t->ssl);
    return t;
}

void tls_conn_free(struct tls_conn *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl);
    free(t);
}

int tls_conn_feed(struct tls_conn *t, const char *in, size_t len,
                  void (*plain)(void *ud, const char *buf, size_t len),
                  void *ud)
{
    if (len > 0 && BIO_write(t->rbio, in, (int)len) != (int)len)
        return SR_EIO;
    if (!t->established) {
        int rc = SSL_do_handshake(t->ssl);
        if (rc != 1) {
            int e = SSL_get_error(t->ssl, rc);
            ERR_clear_error();
            return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE
                       ? 0
                       : SR_EIO;
        }
        t->established = true;
    }
    char buf[16384];
    for (;;) {
        int n = SSL_read(t->ssl, buf, sizeof buf);
        if (n > 0) {
            plain(ud, buf, (size_t)n);
            continue;
        }
        int e = SSL_get_error(t->ssl, n);
        ERR_clear_error();
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return 0;
        return SR_EIO; /* close_notify or a protocol error */
    }
}

int tls_conn_write(struct tls_conn *t, const char *buf, size_t len)
{
    while (len > 0) {
        int n = SSL_write(t->ssl, buf, (int)len);
        if (n <= 0) {
            ERR_clear_error();
            return SR_EIO;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

size_t tls_conn_drain(struct tls_conn *t, char **out)
{
    size_t n = BIO_ctrl_pending(t->wbio);
    if (n == 0)
        return 0;
    char *b = malloc(n);
    if (b == NULL)
        return 0;
    int r = BIO_read(t->wbio, b, (int)n);
    if (r <= 0) {
        free(b);
        return 0;
    }
    *out = b;
    return (size_t)r;
}

bool tls_conn_established(const struct tls_conn *t)
{
    return t->established;
}

const char *tls_conn_version(const struct tls_conn *t)
{
    return SSL_get_version(t->ssl);
}
