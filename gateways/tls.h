/*
 * tls.h - server-side TLS over memory BIOs (OpenSSL), so that a libuv stream
 * can carry it: ciphertext read from the socket goes in with tls_conn_feed(),
 * plaintext comes out through a callback; plaintext to send goes in with
 * tls_conn_write(); ciphertext to put on the socket is drained with
 * tls_conn_drain(). No I/O of its own.
 *
 * Ownership: struct tls_ctx is shared by every connection of a listener and
 * outlives them; a tls_conn belongs to its connection.
 */
#ifndef SR_TLS_H
#define SR_TLS_H

#include <stdbool.h>
#include <stddef.h>

struct tls_ctx;
struct tls_conn;

int tls_ctx_new_server(const char *cert_file, const char *key_file,
                       struct tls_ctx **out, char *err, size_t errlen);
void tls_ctx_free(struct tls_ctx *c);

struct tls_conn *tls_conn_new(struct tls_ctx *c);
void tls_conn_free(struct tls_conn *t);

/* Feeds ciphertext; calls plain(ud, buf, len) for decrypted bytes. Returns
 * 0, or SR_EIO when the peer broke the protocol (close the connection). */
int tls_conn_feed(struct tls_conn *t, const char *in, size_t len,
                  void (*plain)(void *ud, const char *buf, size_t len),
                  void *ud);
int tls_conn_write(struct tls_conn *t, const char *buf, size_t len);
/* Moves pending ciphertext into a new malloc'd buffer; returns its length
 * (0 = nothing, *out untouched). */
size_t tls_conn_drain(struct tls_conn *t, char **out);
bool tls_conn_established(const struct tls_conn *t);
/* Protocol and cipher, for the Received: header and logs. */
const char *tls_conn_version(const struct tls_conn *t);

#endif
