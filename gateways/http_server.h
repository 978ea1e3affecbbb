/*
 * http_server.h - an HTTP/1.1 server on the libuv loop, for the admin API
 * (and later the tracking endpoints and web UI).
 *
 * One handler gets every complete request with a connection handle; it
 * answers now or later with http_reply() exactly once (later = e.g. after a
 * Raft commit). Keep-alive and pipelining are supported (answers go out in
 * order, one request handled at a time per connection). Every connection
 * has an idle/read timeout (default 30 s) and a bound on buffered input.
 * Optionally HTTPS: http_server_set_tls() makes the server speak TLS only
 * (no plaintext on the same port); the handler sees the same requests.
 *
 * Ownership: the server owns each struct http_conn. A conn stays valid until
 * http_reply() is called on it, even if the peer has gone (the reply is then
 * dropped). The request passed to the handler is borrowed until http_reply().
 * The server owns the struct tls_ctx given to http_server_set_tls().
 * Loop thread only.
 */
#ifndef SR_HTTP_SERVER_H
#define SR_HTTP_SERVER_H

#include <stddef.h>
#include <uv.h>

#include "gateways/http.h"

struct http_server;
struct http_conn;

typedef void (*http_handler_fn)(void *ud, struct http_conn *c,
                                const struct http_request *req);

/* Binds and listens on addr ("host:port"). Returns 0 or a negative SR_E*
 * code with err set; on failure no callback ever fires. */
int http_server_start(uv_loop_t *loop, const char *addr,
                      http_handler_fn handler, void *ud,
                      struct http_server **out, char *err, size_t errlen);
/* Stops listening, closes every connection; cb (may be NULL) runs when all
 * handles are closed. Pending conns get their replies dropped. */
void http_server_close(struct http_server *s, void (*cb)(void *), void *arg);

/* Sends the response (adds Content-Length, Date-free, Connection headers).
 * content_type may be NULL for an empty body. Copies body. */
void http_reply(struct http_conn *c, int status, const char *content_type,
                const char *body, size_t len);
/* The same with extra header lines, each "Name: value\r\n" (ours; the
 * caller keeps CR and LF out of values). */
void http_reply_ex(struct http_conn *c, int status, const char *content_type,
                   const char *extra, const char *body, size_t len);
/* Convenience: {"error":"<msg>"} with the status. */
void http_reply_error(struct http_conn *c, int status, const char *msg);

/* The peer's address as "ip:port" (for logs). */
const char *http_conn_peer(const struct http_conn *c);

/* Added after the first cut (existing declarations above are unchanged). */

/* The port the server is bound to (useful after listening on port 0), or
 * a negative SR_E* code. */
int http_server_port(const struct http_server *s);
/* Changes the limits for connections accepted from now on; 0 keeps the
 * current value. Defaults: max_header 16 KiB (431 above), max_body 1 MiB
 * (413 above), idle_ms 30000 (the connection is closed when the peer
 * sends nothing for that long, or does not read our answer), max_conns
 * 512 (further connections are closed at once). */
void http_server_set_limits(struct http_server *s, size_t max_header,
                            size_t max_body, unsigned idle_ms,
                            unsigned max_conns);

struct tls_ctx;
/* Serves TLS (gateways/tls.h, e.g. from tls_ctx_new_server()) on every
 * connection accepted from now on; call it right after http_server_start()
 * so that no plaintext connection is ever accepted. ctx NULL = plaintext
 * again. Takes ownership of ctx (a previous one is freed): it is freed
 * when the server has closed. A connection whose TLS handshake fails is
 * closed, and the handshake must finish within idle_ms of the accept. */
void http_server_set_tls(struct http_server *s, struct tls_ctx *ctx);

#endif
