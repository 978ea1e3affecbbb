/*
 * policy_sms.h - the SMS part of the cluster policy: the SMSCs the cluster
 * binds to, the routes from destination prefixes to them, and each
 * customer's email-to-SMS settings (docs/CONFIG.md "SMS").
 *
 *   "smscs": [ { "name": "smsc-a", "host": "192.0.2.9:2775",
 *                "system_id": "acme", "password": "secret",
 *                "system_type": "", "window": 10, "per_second": 50,
 *                "binds": 1, "bind_mode": "transceiver"|"split",
 *                "concat": "udh"|"sar", "id_format": "hex"|"dec"|"asis",
 *                "receipt_id_format": "hex"|"dec"|"asis" } ],
 *   "sms_routes": [ { "prefix": "+39",
 *                     "smscs": [ { "name": "smsc-a", "priority": 1,
 *                                  "cost": 10, "share": 30 } ] } ],
 *   customers[].sms: { "domains": ["sms.acme.example"],
 *                      "sender": "ACME", "sender_from": "policy"|"from",
 *                      "subject": "ignore"|"prepend"|"sender",
 *                      "max_parts": 5, "too_long": "reject"|"truncate",
 *                      "signature_marker": "-- ", "dsn": false }
 *
 * Ownership: everything is owned by the struct; immutable after parsing.
 */
#ifndef SR_QUEUE_POLICY_SMS_H
#define SR_QUEUE_POLICY_SMS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

enum policy_id_format { POLICY_ID_ASIS, POLICY_ID_HEX, POLICY_ID_DEC };

struct policy_smsc {
    char *name, *host, *system_id, *password, *system_type;
    unsigned window, per_second;
    unsigned binds; /* per node, 1..16: transceivers, or transmitters */
    bool split;     /* bind_mode "split": transmitters + one receiver */
    bool sar;       /* concatenation by sar_* TLVs instead of a UDH */
    enum policy_id_format id_format, receipt_id_format;
};

struct policy_sms_hop {
    unsigned smsc; /* index in policy->smscs */
    unsigned priority, cost;
    unsigned share; /* percent of the route's messages it must get (0..100) */
};

struct policy_sms_route {
    char *prefix; /* "+39", "+" for everything */
    struct policy_sms_hop *hops;
    unsigned n_hops;
};

enum policy_sms_subject {
    SMS_SUBJECT_IGNORE,
    SMS_SUBJECT_PREPEND,
    SMS_SUBJECT_SENDER
};

struct policy_sms {
    char **domains;
    unsigned n_domains;
    char *sender; /* NULL: from the From local part (sender_from) */
    bool sender_from_header;
    enum policy_sms_subject subject;
    unsigned max_parts;
    bool truncate;
    char *signature_marker; /* NULL: none */
    bool dsn;               /* a failed SMS sends a DSN to the sender */
};

struct policy_smsc_set {
    struct policy_smsc *smscs;
    unsigned n_smscs;
    struct policy_sms_route *routes;
    unsigned n_routes;
};

int policy_sms_parse(json_t *obj, unsigned idx, struct policy_sms **out,
                     char *err, size_t errlen);
void policy_sms_free(struct policy_sms *s);

/* The top-level "smscs" and "sms_routes" (either may be NULL). */
int policy_smscs_parse(json_t *smscs, json_t *routes,
                       struct policy_smsc_set **out, char *err, size_t errlen);
void policy_smscs_free(struct policy_smsc_set *s);

/* Whether domain (case-insensitive) is one of s's SMS domains. */
bool policy_sms_domain(const struct policy_sms *s, const char *domain);

/* The route whose prefix is the longest one that e164 starts with. */
const struct policy_sms_route *
policy_sms_route_for(const struct policy_smsc_set *s, const char *e164);

#endif
