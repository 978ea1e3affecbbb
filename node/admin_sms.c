/*
 * admin_sms.c - the admin API's SMS views (docs/ADMIN_API.md): the routes
 * with each SMSC's state as this node sees it, and which SMSC a number
 * would take now. Answered by the node asked (binds and counters are per
 * node).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/deliver.h"
#include "engine/sms.h"
#include "engine/sms_text.h"
#include "node/admin_int.h"
#include "node/errors.h"
#include "node/node_int.h"

static void add_route(void *ud, const char *prefix, const char *smsc,
                      unsigned priority, unsigned cost, unsigned share,
                      bool bound, bool paused, uint64_t sent)
{
    json_array_append_new(
        ud, json_pack("{s:s,s:s,s:i,s:i,s:i,s:b,s:b,s:I}", "prefix", prefix,
                      "smsc", smsc, "priority", (int)priority, "cost",
                      (int)cost, "share", (int)share, "bound", bound, "paused",
                      paused, "sent", (json_int_t)sent));
}

void admin_get_sms_routes(struct sr_node *n, struct sink *s)
{
    struct sms_engine *e = n->deliver ? deliver_sms(n->deliver) : NULL;
    if (e == NULL) {
        admin_reply_error(s, 409, "delivery is disabled on this node");
        return;
    }
    json_t *rows = json_array();
    sms_engine_routes(e, n->policy, add_route, rows);
    unsigned bound, total;
    sms_engine_binds(e, &bound, &total);
    admin_reply(s, 200,
                json_pack("{s:I,s:o,s:i,s:i}", "node",
                          (json_int_t)n->cfg->node_id, "routes", rows,
                          "binds_bound", (int)bound, "binds", (int)total));
}

void admin_get_sms_test(struct sr_node *n, struct sink *s, const char *query)
{
    struct sms_engine *e = n->deliver ? deliver_sms(n->deliver) : NULL;
    char number[64] = "";
    const char *q = query ? strstr(query, "number=") : NULL;
    if (q != NULL) {
        size_t i = 0;
        for (q += 7; *q && *q != '&' && i < sizeof number - 1; q++)
            number[i++] =
                *q == '%' && q[1] == '2' && q[2] == 'B' ? (q += 2, '+') : *q;
        number[i] = '\0';
    }
    if (e == NULL) {
        admin_reply_error(s, 409, "delivery is disabled on this node");
        return;
    }
    char e164[SMS_E164_SIZE], prefix[32], smsc[64];
    int rc = sms_engine_test(e, n->policy, number, e164, prefix, sizeof prefix,
                             smsc, sizeof smsc);
    if (rc == SR_EINVAL) {
        admin_reply_error(s, 400, "not a phone number (E.164)");
        return;
    }
    json_t *o = json_pack("{s:s,s:I}", "number", e164, "node",
                          (json_int_t)n->cfg->node_id);
    json_object_set_new(o, "route",
                        prefix[0] ? json_string(prefix) : json_null());
    json_object_set_new(o, "smsc", smsc[0] ? json_string(smsc) : json_null());
    admin_reply(s, 200, o);
}
