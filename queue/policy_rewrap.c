/* policy_rewrap.c - re-wrap and tracking policy (see policy_rewrap.h). */
#include "queue/policy_rewrap.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/errors.h"

static bool printable(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

static bool url_ok(const char *u)
{
    if (!printable(u, 200))
        return false;
    if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0)
        return false;
    return strpbrk(u, "\"'<>&") == NULL;
}

static bool domain_ok(const char *d)
{
    if (!printable(d, 253) || d[0] == '.' || d[strlen(d) - 1] == '.')
        return false;
    for (const char *p = d; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
            return false;
    return strstr(d, "..") == NULL;
}

/* A list of printable strings; *out NULL when absent. */
static int str_list(json_t *v, const char *what, unsigned idx, size_t max_each,
                    char ***out, unsigned *n, char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    if (v == NULL)
        return 0;
    size_t cnt = json_array_size(v);
    if (!json_is_array(v) || cnt > 100)
        return sr_err(err, errlen, SR_EINVAL,
                      "customers[%u].rewrap.%s: must be a list of at most 100",
                      idx, what);
    *out = calloc(cnt ? cnt : 1, sizeof **out);
    if (*out == NULL)
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    for (size_t i = 0; i < cnt; i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_string(e) || !printable(json_string_value(e), max_each))
            return sr_err(err, errlen, SR_EINVAL,
                          "customers[%u].rewrap.%s[%zu]: must be a string "
                          "without spaces or control characters",
                          idx, what, i);
        if (((*out)[i] = strdup(json_string_value(e))) == NULL)
            return sr_err(err, errlen, SR_ENOMEM, "out of memory");
        *n = (unsigned)i + 1;
    }
    return 0;
}

static const char *const rewrap_keys[] = {"bounce_domain",
                                          "feedback_campaign",
                                          "remove_headers",
                                          "bulk",
                                          "unsubscribe_mailto",
                                          "tracking",
                                          "tracking_exclude",
                                          "track_text_parts",
                                          "dkim",
                                          "dkim_headers",
                                          NULL};

static int get_bool(json_t *o, const char *key, unsigned idx, bool *out,
                    char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (v != NULL && !json_is_boolean(v))
        return sr_err(err, errlen, SR_EINVAL,
                      "customers[%u].rewrap.%s: must be true or false", idx,
                      key);
    *out = v != NULL && json_is_true(v);
    return 0;
}

static int parse_dkim(json_t *v, unsigned idx, struct policy_rewrap *r,
                      char *err, size_t errlen)
{
    size_t n = json_array_size(v);
    if (!json_is_array(v) || n > 8)
        return sr_err(err, errlen, SR_EINVAL,
                      "customers[%u].rewrap.dkim: must be a list of at most 8",
                      idx);
    r->dkim = calloc(n ? n : 1, sizeof *r->dkim);
    if (r->dkim == NULL)
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(v, i);
        struct policy_dkim *k = &r->dkim[i];
        r->n_dkim = (unsigned)i + 1;
        const char *d = json_string_value(json_object_get(o, "domain"));
        const char *s = json_string_value(json_object_get(o, "selector"));
        const char *f = json_string_value(json_object_get(o, "key_file"));
        if (!json_is_object(o) || json_object_size(o) != 3 || d == NULL ||
            s == NULL || f == NULL || !domain_ok(d) || !domain_ok(s) ||
            !printable(f, 1024) || f[0] != '/')
            return sr_err(err, errlen, SR_EINVAL,
                          "customers[%u].rewrap.dkim[%zu]: want exactly "
                          "domain, selector and key_file (an absolute path)",
                          idx, i);
        if ((k->domain = strdup(d)) == NULL ||
            (k->selector = strdup(s)) == NULL ||
            (k->key_file = strdup(f)) == NULL)
            return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    }
    return 0;
}

static int parse(json_t *o, unsigned idx, struct policy_rewrap *r, char *err,
                 size_t errlen)
{
    if (!json_is_object(o))
        return sr_err(err, errlen, SR_EINVAL,
                      "customers[%u].rewrap: must be an object", idx);
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v)
    {
        bool known = false;
        for (size_t i = 0; rewrap_keys[i]; i++)
            known = known || strcmp(key, rewrap_keys[i]) == 0;
        if (!known) {
            char shown[80];
            sr_sanitize(shown, sizeof shown, key, strlen(key));
            return sr_err(err, errlen, SR_EINVAL,
                          "customers[%u].rewrap.%s: unknown key", idx, shown);
        }
    }
    const char *bd = json_string_value(json_object_get(o, "bounce_domain"));
    if (bd == NULL || !domain_ok(bd))
        return sr_err(err, errlen, SR_EINVAL,
                      "customers[%u].rewrap.bounce_domain: required, a "
                      "domain name",
                      idx);
    if ((r->bounce_domain = strdup(bd)) == NULL)
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    v = json_object_get(o, "feedback_campaign");
    if (v != NULL) {
        if (!json_is_string(v) || !printable(json_string_value(v), 64) ||
            strchr(json_string_value(v), ':'))
            return sr_err(err, errlen, SR_EINVAL,
                          "customers[%u].rewrap.feedback_campaign: 1 to 64 "
                          "printable characters, no ':'",
                          idx);
        if ((r->feedback_campaign = strdup(json_string_value(v))) == NULL)
            return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    }
    v = json_object_get(o, "unsubscribe_mailto");
    if (v != NULL) {
        const char *m = json_string_value(v);
        if (m == NULL || !printable(m, 254) || strchr(m, '@') == NULL ||
            strpbrk(m, "<>?\"") != NULL)
            return sr_err(err, errlen, SR_EINVAL,
                          "customers[%u].rewrap.unsubscribe_mailto: an "
                          "address",
                          idx);
        if ((r->unsubscribe_mailto = strdup(m)) == NULL)
            return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    }
    int rc = get_bool(o, "bulk", idx, &r->bulk, err, errlen);
    if (rc == 0)
        rc = get_bool(o, "tracking", idx, &r->tracking, err, errlen);
    if (rc == 0)
        rc = get_bool(o, "track_text_parts", idx, &r->track_text_parts, err,
                      errlen);
    if (rc == 0)
        rc = str_list(json_object_get(o, "remove_headers"), "remove_headers",
                      idx, 100, &r->remove_headers, &r->n_remove_headers, err,
                      errlen);
    if (rc == 0)
        rc = str_list(json_object_get(o, "tracking_exclude"),
                      "tracking_exclude", idx, 1000, &r->tracking_exclude,
                      &r->n_tracking_exclude, err, errlen);
    if (rc == 0)
        rc = str_list(json_object_get(o, "dkim_headers"), "dkim_headers", idx,
                      100, &r->dkim_headers, &r->n_dkim_headers, err, errlen);
    if (rc == 0 && json_object_get(o, "dkim") != NULL)
        rc = parse_dkim(json_object_get(o, "dkim"), idx, r, err, errlen);
    return rc;
}

int policy_rewrap_parse(json_t *obj, unsigned idx, struct policy_rewrap **out,
                        char *err, size_t errlen)
{
    struct policy_rewrap *r = calloc(1, sizeof *r);
    if (r == NULL)
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    int rc = parse(obj, idx, r, err, errlen);
    if (rc != 0) {
        policy_rewrap_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

static void free_list(char **l, unsigned n)
{
    for (unsigned i = 0; l && i < n; i++)
        free(l[i]);
    free(l);
}

void policy_rewrap_free(struct policy_rewrap *r)
{
    if (r == NULL)
        return;
    free(r->bounce_domain);
    free(r->feedback_campaign);
    free(r->unsubscribe_mailto);
    free_list(r->remove_headers, r->n_remove_headers);
    free_list(r->tracking_exclude, r->n_tracking_exclude);
    free_list(r->dkim_headers, r->n_dkim_headers);
    for (unsigned i = 0; r->dkim && i < r->n_dkim; i++) {
        free(r->dkim[i].domain);
        free(r->dkim[i].selector);
        free(r->dkim[i].key_file);
    }
    free(r->dkim);
    free(r);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int policy_tracking_parse(json_t *obj, struct policy_tracking **out, char *err,
                          size_t errlen)
{
    *out = NULL;
    if (!json_is_object(obj))
        return sr_err(err, errlen, SR_EINVAL, "tracking: must be an object");
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        if (strcmp(key, "base_url") != 0 && strcmp(key, "secret") != 0) {
            char shown[80];
            sr_sanitize(shown, sizeof shown, key, strlen(key));
            return sr_err(err, errlen, SR_EINVAL, "tracking.%s: unknown key",
                          shown);
        }
    }
    const char *u = json_string_value(json_object_get(obj, "base_url"));
    if (u == NULL || !url_ok(u) || u[strlen(u) - 1] == '/')
        return sr_err(err, errlen, SR_EINVAL,
                      "tracking.base_url: required, an http(s) URL without a "
                      "trailing '/', quotes, '<', '>' or '&'");
    const char *sec = json_string_value(json_object_get(obj, "secret"));
    size_t sl = sec ? strlen(sec) : 0;
    struct policy_tracking *t = calloc(1, sizeof *t);
    if (t == NULL)
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    bool ok = sl >= 2 * POLICY_SECRET_MIN && sl <= 2 * sizeof t->secret &&
              sl % 2 == 0;
    for (size_t i = 0; ok && i < sl; i += 2) {
        int a = hexval(sec[i]), b = hexval(sec[i + 1]);
        ok = a >= 0 && b >= 0;
        t->secret[i / 2] = (uint8_t)(a * 16 + b);
    }
    if (!ok) {
        free(t);
        return sr_err(err, errlen, SR_EINVAL,
                      "tracking.secret: required, 64 to 256 hex digits "
                      "(e.g. openssl rand -hex 32)");
    }
    t->secret_len = sl / 2;
    if ((t->base_url = strdup(u)) == NULL) {
        free(t);
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    }
    *out = t;
    return 0;
}

void policy_tracking_free(struct policy_tracking *t)
{
    if (t == NULL)
        return;
    free(t->base_url);
    free(t);
}
