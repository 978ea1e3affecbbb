/* admin_int.h - what the admin API's files share (admin.c, admin_queue.c). */
#ifndef SR_NODE_ADMIN_INT_H
#define SR_NODE_ADMIN_INT_H

#include <jansson.h>
#include <stddef.h>

struct sr_node;
/* Where an answer goes: an HTTP connection or an RPC call. A handler
 * answers exactly once; the answer frees the sink. */
struct sink;

/* Sends body (reference stolen) with status, frees s. */
void admin_reply(struct sink *s, int status, json_t *body);
void admin_reply_error(struct sink *s, int status, const char *msg);

/* GET /v1/suspensions */
void admin_get_suspensions(struct sr_node *n, struct sink *s);
/* GET /v1/sms/routes, GET /v1/sms/test?number=N (admin_sms.c) */
void admin_get_sms_routes(struct sr_node *n, struct sink *s);
void admin_get_sms_test(struct sr_node *n, struct sink *s, const char *query);
/* POST /v1/queue/{suspend,resume,retry,bounce}; path is what follows
 * "/v1/queue/". Any node proposes (rnode forwards to the leader). */
void admin_post_queue(struct sr_node *n, struct sink *s, const char *method,
                      const char *path, const char *body, size_t len);

#endif
