/* policy_sms.c - SMSCs, SMS routes, customers' SMS settings (see
 * policy_sms.h). */
#include "queue/policy_sms.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "node/config.h"
#include "node/errors.h"

static bool printable(const char *s, size_t min, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (s == NULL || n < min || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

static int unknown_keys(json_t *o, const char *const *keys, const char *where,
                        char *err, size_t errlen)
{
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v)
    {
        bool known = false;
        for (size_t i = 0; keys[i]; i++)
            known = known || strcmp(key, keys[i]) == 0;
        if (!known) {
            char shown[80];
            sr_sanitize(shown, sizeof shown, key, strlen(key));
            return sr_err(err, errlen, SR_EINVAL, "%s.%s: unknown key", where,
                          shown);
        }
    }
    return 0;
}

static int get_uint(json_t *o, const char *key, const char *where, unsigned min,
                    unsigned max, unsigned dflt, unsigned *out, char *err,
                    size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (v == NULL) {
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min ||
        json_integer_value(v) > max)
        return sr_err(err, errlen, SR_EINVAL,
                      "%s.%s: must be an integer between %u and %u", where, key,
                      min, max);
    *out = (unsigned)json_integer_value(v);
    return 0;
}

static int id_format(json_t *o, const char *key, const char *where,
                     enum policy_id_format dflt, enum policy_id_format *out,
                     char *err, size_t errlen)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (json_object_get(o, key) == NULL)
        *out = dflt;
    else if (s && strcmp(s, "hex") == 0)
        *out = POLICY_ID_HEX;
    else if (s && strcmp(s, "dec") == 0)
        *out = POLICY_ID_DEC;
    else if (s && strcmp(s, "asis") == 0)
        *out = POLICY_ID_ASIS;
    else
        return sr_err(err, errlen, SR_EINVAL, "%s.%s: must be hex, dec or asis",
                      where, key);
    return 0;
}

static const char *const smsc_keys[] = {
    "name",   "host",       "system_id", "password",  "system_type",
    "window", "per_second", "concat",    "id_format", "receipt_id_format",
    "binds",  "bind_mode",  NULL};

static int parse_smsc(json_t *o, unsigned i, struct policy_smsc *c, char *err,
                      size_t errlen)
{
    char where[32];
    snprintf(where, sizeof where, "smscs[%u]", i);
    if (!json_is_object(o))
        return sr_err(err, errlen, SR_EINVAL, "%s: must be an object", where);
    int rc = unknown_keys(o, smsc_keys, where, err, errlen);
    if (rc != 0)
        return rc;
    const char *name = json_string_value(json_object_get(o, "name"));
    const char *host = json_string_value(json_object_get(o, "host"));
    const char *sid = json_string_value(json_object_get(o, "system_id"));
    const char *pw = json_string_value(json_object_get(o, "password"));
    const char *st = json_string_value(json_object_get(o, "system_type"));
    if (!printable(name, 1, 32))
        return sr_err(err, errlen, SR_EINVAL,
                      "%s.name: required, 1 to 32 characters", where);
    struct sockaddr_storage ss;
    if (!printable(host, 3, 100) || config_ip_address(host, &ss) != 0)
        return sr_err(err, errlen, SR_EINVAL,
                      "%s.host: required, ip:port or [ipv6]:port", where);
    if (!printable(sid, 1, 15))
        return sr_err(err, errlen, SR_EINVAL,
                      "%s.system_id: required, 1 to 15 characters", where);
    if (pw != NULL && !printable(pw, 0, 8))
        return sr_err(err, errlen, SR_EINVAL,
                      "%s.password: at most 8 characters", where);
    if (st != NULL && !printable(st, 0, 12))
        return sr_err(err, errlen, SR_EINVAL,
                      "%s.system_type: at most 12 characters", where);
    const char *concat = json_string_value(json_object_get(o, "concat"));
    if (json_object_get(o, "concat") != NULL &&
        (concat == NULL ||
         (strcmp(concat, "udh") != 0 && strcmp(concat, "sar") != 0)))
        return sr_err(err, errlen, SR_EINVAL, "%s.concat: udh or sar", where);
    c->sar = concat && strcmp(concat, "sar") == 0;
    const char *mode = json_string_value(json_object_get(o, "bind_mode"));
    if (json_object_get(o, "bind_mode") != NULL &&
        (mode == NULL ||
         (strcmp(mode, "transceiver") != 0 && strcmp(mode, "split") != 0)))
        return sr_err(err, errlen, SR_EINVAL,
                      "%s.bind_mode: transceiver or split", where);
    c->split = mode && strcmp(mode, "split") == 0;
    rc = get_uint(o, "binds", where, 1, 16, 1, &c->binds, err, errlen);
    if (rc == 0)
        rc = get_uint(o, "window", where, 1, 1000, 10, &c->window, err, errlen);
    if (rc == 0)
        rc = get_uint(o, "per_second", where, 0, 100000, 0, &c->per_second, err,
                      errlen);
    if (rc == 0)
        rc = id_format(o, "id_format", where, POLICY_ID_ASIS, &c->id_format,
                       err, errlen);
    if (rc == 0)
        rc = id_format(o, "receipt_id_format", where, c->id_format,
                       &c->receipt_id_format, err, errlen);
    if (rc != 0)
        return rc;
    if ((c->id_format == POLICY_ID_ASIS) !=
        (c->receipt_id_format == POLICY_ID_ASIS))
        return sr_err(err, errlen, SR_EINVAL,
                      "%s: id_format and receipt_id_format must both be asis "
                      "or both numeric",
                      where);
    if (!(c->name = strdup(name)) || !(c->host = strdup(host)) ||
        !(c->system_id = strdup(sid)) ||
        !(c->password = strdup(pw ? pw : "")) ||
        !(c->system_type = strdup(st ? st : "")))
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    return 0;
}

static bool prefix_ok(const char *p)
{
    if (p == NULL || p[0] != '+' || strlen(p) > 16)
        return false;
    for (const char *q = p + 1; *q; q++)
        if (*q < '0' || *q > '9')
            return false;
    return true;
}

static int parse_route(json_t *o, unsigned i, struct policy_smsc_set *set,
                       struct policy_sms_route *r, char *err, size_t errlen)
{
    static const char *const keys[] = {"prefix", "smscs", NULL};
    char where[32];
    snprintf(where, sizeof where, "sms_routes[%u]", i);
    if (!json_is_object(o))
        return sr_err(err, errlen, SR_EINVAL, "%s: must be an object", where);
    int rc = unknown_keys(o, keys, where, err, errlen);
    if (rc != 0)
        return rc;
    const char *p = json_string_value(json_object_get(o, "prefix"));
    if (!prefix_ok(p))
        return sr_err(err, errlen, SR_EINVAL,
                      "%s.prefix: required, \"+\" and up to 15 digits", where);
    if ((r->prefix = strdup(p)) == NULL)
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    json_t *hops = json_object_get(o, "smscs");
    size_t n = json_array_size(hops);
    if (!json_is_array(hops) || n == 0 || n > 16)
        return sr_err(err, errlen, SR_EINVAL,
                      "%s.smscs: required, a list of 1 to 16", where);
    r->hops = calloc(n, sizeof *r->hops);
    if (r->hops == NULL)
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    for (size_t h = 0; h < n; h++) {
        static const char *const hk[] = {"name", "priority", "cost", "share",
                                         NULL};
        char hw[48];
        snprintf(hw, sizeof hw, "%s.smscs[%zu]", where, h);
        json_t *ho = json_array_get(hops, h);
        if (!json_is_object(ho))
            return sr_err(err, errlen, SR_EINVAL, "%s: must be an object", hw);
        if ((rc = unknown_keys(ho, hk, hw, err, errlen)) != 0)
            return rc;
        const char *name = json_string_value(json_object_get(ho, "name"));
        unsigned k = 0;
        while (name && k < set->n_smscs && strcmp(set->smscs[k].name, name))
            k++;
        if (name == NULL || k == set->n_smscs)
            return sr_err(err, errlen, SR_EINVAL,
                          "%s.name: must name one of smscs", hw);
        r->hops[h].smsc = k;
        rc = get_uint(ho, "priority", hw, 0, 1000, 1, &r->hops[h].priority, err,
                      errlen);
        if (rc == 0)
            rc = get_uint(ho, "cost", hw, 0, 1000000, 0, &r->hops[h].cost, err,
                          errlen);
        if (rc == 0)
            rc = get_uint(ho, "share", hw, 0, 100, 0, &r->hops[h].share, err,
                          errlen);
        if (rc != 0)
            return rc;
        r->n_hops = (unsigned)h + 1;
    }
    unsigned shares = 0;
    for (unsigned h = 0; h < r->n_hops; h++)
        shares += r->hops[h].share;
    if (shares > 100)
        return sr_err(err, errlen, SR_EINVAL,
                      "%s.smscs: shares add up to %u %%, more than 100", where,
                      shares);
    for (unsigned j = 0; j < i; j++)
        if (strcmp(set->routes[j].prefix, p) == 0)
            return sr_err(err, errlen, SR_EINVAL,
                          "%s.prefix: %s has a route already", where, p);
    return 0;
}

int policy_smscs_parse(json_t *smscs, json_t *routes,
                       struct policy_smsc_set **out, char *err, size_t errlen)
{
    *out = NULL;
    struct policy_smsc_set *s = calloc(1, sizeof *s);
    if (s == NULL)
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    int rc = 0;
    size_t n = json_array_size(smscs);
    if (smscs != NULL && (!json_is_array(smscs) || n > 64))
        rc = sr_err(err, errlen, SR_EINVAL,
                    "smscs: must be a list of at most 64");
    if (rc == 0 && (s->smscs = calloc(n ? n : 1, sizeof *s->smscs)) == NULL)
        rc = sr_err(err, errlen, SR_ENOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        s->n_smscs = (unsigned)i + 1;
        rc = parse_smsc(json_array_get(smscs, i), (unsigned)i, &s->smscs[i],
                        err, errlen);
        for (size_t j = 0; rc == 0 && j < i; j++)
            if (strcmp(s->smscs[j].name, s->smscs[i].name) == 0)
                rc = sr_err(err, errlen, SR_EINVAL,
                            "smscs[%zu].name: %s is there already", i,
                            s->smscs[i].name);
    }
    size_t nr = json_array_size(routes);
    if (rc == 0 && routes != NULL && (!json_is_array(routes) || nr > 10000))
        rc = sr_err(err, errlen, SR_EINVAL,
                    "sms_routes: must be a list of at most 10000");
    if (rc == 0 && (s->routes = calloc(nr ? nr : 1, sizeof *s->routes)) == NULL)
        rc = sr_err(err, errlen, SR_ENOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < nr; i++) {
        s->n_routes = (unsigned)i + 1;
        rc = parse_route(json_array_get(routes, i), (unsigned)i, s,
                         &s->routes[i], err, errlen);
    }
    if (rc != 0) {
        policy_smscs_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void policy_smscs_free(struct policy_smsc_set *s)
{
    if (s == NULL)
        return;
    for (unsigned i = 0; i < s->n_smscs; i++) {
        struct policy_smsc *c = &s->smscs[i];
        free(c->name);
        free(c->host);
        free(c->system_id);
        free(c->password);
        free(c->system_type);
    }
    free(s->smscs);
    for (unsigned i = 0; i < s->n_routes; i++) {
        free(s->routes[i].prefix);
        free(s->routes[i].hops);
    }
    free(s->routes);
    free(s);
}

static const char *const sms_keys[] = {
    "domains",  "sender",           "sender_from", "subject", "max_parts",
    "too_long", "signature_marker", "dsn",         NULL};

int policy_sms_parse(json_t *o, unsigned idx, struct policy_sms **out,
                     char *err, size_t errlen)
{
    char where[40];
    snprintf(where, sizeof where, "customers[%u].sms", idx);
    *out = NULL;
    if (!json_is_object(o))
        return sr_err(err, errlen, SR_EINVAL, "%s: must be an object", where);
    int rc = unknown_keys(o, sms_keys, where, err, errlen);
    if (rc != 0)
        return rc;
    struct policy_sms *s = calloc(1, sizeof *s);
    if (s == NULL)
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    json_t *d = json_object_get(o, "domains");
    size_t n = json_array_size(d);
    if (!json_is_array(d) || n == 0 || n > 100)
        rc = sr_err(err, errlen, SR_EINVAL,
                    "%s.domains: required, a list of 1 to 100 domains", where);
    if (rc == 0 && (s->domains = calloc(n, sizeof *s->domains)) == NULL)
        rc = sr_err(err, errlen, SR_ENOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const char *dom = json_string_value(json_array_get(d, i));
        if (!printable(dom, 1, 253) || strpbrk(dom, " @"))
            rc = sr_err(err, errlen, SR_EINVAL,
                        "%s.domains[%zu]: must be a domain name", where, i);
        else if ((s->domains[i] = strdup(dom)) == NULL)
            rc = sr_err(err, errlen, SR_ENOMEM, "out of memory");
        else
            s->n_domains = (unsigned)i + 1;
    }
    const char *sender = json_string_value(json_object_get(o, "sender"));
    if (rc == 0 && json_object_get(o, "sender") != NULL &&
        !printable(sender, 1, 20))
        rc =
            sr_err(err, errlen, SR_EINVAL,
                   "%s.sender: 1 to 20 characters (11 if alphanumeric)", where);
    if (rc == 0 && sender && (s->sender = strdup(sender)) == NULL)
        rc = sr_err(err, errlen, SR_ENOMEM, "out of memory");
    const char *sf = json_string_value(json_object_get(o, "sender_from"));
    if (rc == 0 && json_object_get(o, "sender_from") != NULL &&
        (sf == NULL || (strcmp(sf, "policy") && strcmp(sf, "from"))))
        rc = sr_err(err, errlen, SR_EINVAL, "%s.sender_from: policy or from",
                    where);
    s->sender_from_header = sf && strcmp(sf, "from") == 0;
    if (rc == 0 && !s->sender_from_header && s->sender == NULL)
        rc =
            sr_err(err, errlen, SR_EINVAL,
                   "%s.sender: required unless sender_from is \"from\"", where);
    const char *subj = json_string_value(json_object_get(o, "subject"));
    if (rc == 0 && json_object_get(o, "subject") != NULL) {
        if (subj && strcmp(subj, "ignore") == 0)
            s->subject = SMS_SUBJECT_IGNORE;
        else if (subj && strcmp(subj, "prepend") == 0)
            s->subject = SMS_SUBJECT_PREPEND;
        else if (subj && strcmp(subj, "sender") == 0)
            s->subject = SMS_SUBJECT_SENDER;
        else
            rc = sr_err(err, errlen, SR_EINVAL,
                        "%s.subject: ignore, prepend or sender", where);
    }
    if (rc == 0)
        rc = get_uint(o, "max_parts", where, 1, 255, 5, &s->max_parts, err,
                      errlen);
    const char *tl = json_string_value(json_object_get(o, "too_long"));
    if (rc == 0 && json_object_get(o, "too_long") != NULL &&
        (tl == NULL || (strcmp(tl, "reject") && strcmp(tl, "truncate"))))
        rc = sr_err(err, errlen, SR_EINVAL, "%s.too_long: reject or truncate",
                    where);
    s->truncate = tl && strcmp(tl, "truncate") == 0;
    json_t *dsn = json_object_get(o, "dsn");
    if (rc == 0 && dsn != NULL && !json_is_boolean(dsn))
        rc = sr_err(err, errlen, SR_EINVAL, "%s.dsn: true or false", where);
    s->dsn = dsn != NULL && json_is_true(dsn);
    const char *m = json_string_value(json_object_get(o, "signature_marker"));
    if (rc == 0 && json_object_get(o, "signature_marker") != NULL &&
        !printable(m, 1, 40))
        rc = sr_err(err, errlen, SR_EINVAL,
                    "%s.signature_marker: 1 to 40 characters", where);
    if (rc == 0 && m && (s->signature_marker = strdup(m)) == NULL)
        rc = sr_err(err, errlen, SR_ENOMEM, "out of memory");
    if (rc != 0) {
        policy_sms_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void policy_sms_free(struct policy_sms *s)
{
    if (s == NULL)
        return;
    for (unsigned i = 0; i < s->n_domains; i++)
        free(s->domains[i]);
    free(s->domains);
    free(s->sender);
    free(s->signature_marker);
    free(s);
}

bool policy_sms_domain(const struct policy_sms *s, const char *domain)
{
    for (unsigned i = 0; s && i < s->n_domains; i++)
        if (strcasecmp(s->domains[i], domain) == 0)
            return true;
    return false;
}

const struct policy_sms_route *
policy_sms_route_for(const struct policy_smsc_set *s, const char *e164)
{
    const struct policy_sms_route *best = NULL;
    size_t best_len = 0;
    for (unsigned i = 0; s && i < s->n_routes; i++) {
        size_t l = strlen(s->routes[i].prefix);
        if (strncmp(e164, s->routes[i].prefix, l) == 0 &&
            (best == NULL || l > best_len)) {
            best = &s->routes[i];
            best_len = l;
        }
    }
    return best;
}
