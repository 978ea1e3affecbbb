/*
 * policy_rewrap.h - the re-wrap part of the cluster policy: what the engine
 * does to a customer's mail before delivery (engine/rewrap.h, dkim.h) and
 * where the links it writes point (docs/CONFIG.md "Re-wrap and tracking").
 *
 *   "tracking": { "base_url": "https://t.example.com",
 *                 "secret": "<64+ hex digits>" }
 *   customers[].rewrap: { "bounce_domain": "bounces.acme.example",
 *                         "feedback_campaign": "news",
 *                         "remove_headers": ["X-Internal"],
 *                         "bulk": true, "unsubscribe_mailto": "u@acme.example",
 *                         "tracking": true, "tracking_exclude": ["https://x/"],
 *                         "track_text_parts": false,
 *                         "dkim": [ { "domain": "acme.example",
 *                                     "selector": "s1",
 *                                     "key_file": "/etc/smartrelay/s1.pem" } ],
 *                         "dkim_headers": ["from", "to", ...] }
 *
 * The secret signs tracking tokens and VERP addresses, so every node must
 * write and accept the same ones: it is cluster policy, not node config.
 * DKIM keys are files on each node (like opendkim's KeyTable): apply never
 * reads files, the delivery engine loads them when it signs.
 *
 * Ownership: everything is owned by the struct; immutable after parsing.
 */
#ifndef SR_QUEUE_POLICY_REWRAP_H
#define SR_QUEUE_POLICY_REWRAP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct policy_dkim {
    char *domain, *selector, *key_file;
};

struct policy_rewrap {
    char *bounce_domain;
    char *feedback_campaign; /* NULL: none */
    char **remove_headers;
    unsigned n_remove_headers;
    bool bulk;
    char *unsubscribe_mailto; /* NULL: none */
    bool tracking;
    char **tracking_exclude;
    unsigned n_tracking_exclude;
    bool track_text_parts;
    struct policy_dkim *dkim;
    unsigned n_dkim;
    char **dkim_headers; /* NULL: engine/dkim.h defaults */
    unsigned n_dkim_headers;
};

struct policy_tracking {
    char *base_url;
    uint8_t secret[128];
    size_t secret_len;
};

#define POLICY_SECRET_MIN 32

/* customers[idx].rewrap */
int policy_rewrap_parse(json_t *obj, unsigned idx, struct policy_rewrap **out,
                        char *err, size_t errlen);
void policy_rewrap_free(struct policy_rewrap *r);

/* the top-level "tracking" object */
int policy_tracking_parse(json_t *obj, struct policy_tracking **out, char *err,
                          size_t errlen);
void policy_tracking_free(struct policy_tracking *t);

#endif
