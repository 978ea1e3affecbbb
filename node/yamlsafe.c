/*
 * yamlsafe.c - checks around libfyaml 0.7.12 shared by the config loader
 * and the policy converter (see yamlsafe.h).
 */
#include "node/yamlsafe.h"

#include <stdlib.h>
#include <string.h>

#include "node/errors.h"

/* The 1-based line of a node, or 0 when libfyaml has no token for it
 * (collections, empty scalars). */
int yamlsafe_node_line(struct fy_node *n)
{
    if (n == NULL || !fy_node_is_scalar(n))
        return 0;
    struct fy_token *t = fy_node_get_scalar_token(n);
    if (t == NULL)
        return 0;
    const struct fy_mark *m = fy_token_start_mark(t);
    return m != NULL ? m->line + 1 : 0;
}

/* Decodes the UTF-8 sequence at s into *cp and returns its length, or 0 if
 * it is not valid UTF-8 (RFC 3629 3: no overlong forms, no surrogates,
 * nothing above U+10FFFF). */
size_t yamlsafe_utf8_decode(const unsigned char *s, size_t len, unsigned *cp)
{
    unsigned c = s[0], min;
    size_t n;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2, *cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3, *cp = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4, *cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        *cp = (*cp << 6) | (s[i] & 0x3f);
    }
    if (*cp < min || *cp > 0x10ffff || (*cp >= 0xd800 && *cp <= 0xdfff))
        return 0;
    return n;
}

/* YAML 1.2 5.1: a stream holds only printable characters (c-printable). */
static bool yaml_printable(unsigned cp)
{
    return cp == 0x9 || cp == 0xa || cp == 0xd || (cp >= 0x20 && cp <= 0x7e) ||
           cp == 0x85 || (cp >= 0xa0 && cp <= 0xd7ff) ||
           (cp >= 0xe000 && cp <= 0xfffd) || (cp >= 0x10000 && cp <= 0x10ffff);
}

/* Checks the text before libfyaml sees it and returns a NUL-terminated copy
 * to parse. libfyaml 0.7.12 can loop forever or read out of bounds on
 * invalid UTF-8 (upstream issue #101, a hang in fy_scan_directive on
 * "%\xe9"), and it scans its input as a C string; so only valid UTF-8 of
 * YAML's printable characters ever reaches it, never the caller's
 * unterminated buffer. */
int yamlsafe_copy(const char *s, size_t len, char **copy, char *err,
                  size_t errlen)
{
    const unsigned char *u = (const unsigned char *)s;
    int line = 1;
    for (size_t i = 0; i < len;) {
        unsigned cp;
        size_t n = yamlsafe_utf8_decode(u + i, len - i, &cp);
        if (n == 0)
            return sr_err(err, errlen, SR_EPARSE, "line %d: invalid UTF-8",
                          line);
        if (!yaml_printable(cp))
            return sr_err(err, errlen, SR_EPARSE,
                          "line %d: character U+%04X is not allowed in YAML",
                          line, cp);
        line += cp == '\n';
        i += n;
    }
    *copy = malloc(len + 1);
    if (*copy == NULL)
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    memcpy(*copy, s, len);
    (*copy)[len] = '\0';
    return 0;
}

/* Walks the tree before any value is read, refusing what libfyaml 0.7.12
 * would get wrong:
 * - two adjacent '' escapes in a single-quoted scalar are unescaped wrongly
 *   ('a''''b' reads as "a'''" instead of "a''b") and, with more of them, the
 *   text is lost and its buffer leaked. They are found in the source bytes
 *   (the token marks are byte offsets into text, quotes excluded).
 * - an alias name with '/' is taken as a path expression by
 *   fy_node_resolve_alias, whose parse errors go to stderr. */
int yamlsafe_check_tree(struct fy_node *n, const char *text, size_t len,
                        int depth, char *err, size_t errlen)
{
    if (n == NULL)
        return 0;
    if (fy_node_is_alias(n)) {
        /* The target is checked where it is defined. */
        size_t nlen;
        const char *name = fy_node_get_scalar(n, &nlen);
        if (name != NULL && memchr(name, '/', nlen) != NULL)
            return sr_err(err, errlen, SR_EPARSE,
                          "line %d: alias names containing '/' are not "
                          "supported",
                          yamlsafe_node_line(n));
        return 0;
    }
    if (depth > 256)
        return sr_err(err, errlen, SR_EPARSE, "YAML nested too deeply");
    void *it = NULL;
    switch (fy_node_get_type(n)) {
    case FYNT_SCALAR: {
        if (fy_node_get_style(n) != FYNS_SINGLE_QUOTED)
            return 0;
        struct fy_token *t = fy_node_get_scalar_token(n);
        const struct fy_mark *a = t != NULL ? fy_token_start_mark(t) : NULL;
        const struct fy_mark *b = t != NULL ? fy_token_end_mark(t) : NULL;
        if (a == NULL || b == NULL || b->input_pos > len ||
            a->input_pos > b->input_pos)
            return sr_err(err, errlen, SR_EPARSE,
                          "single-quoted string without a source position");
        for (size_t i = a->input_pos; i + 4 <= b->input_pos; i++)
            if (memcmp(text + i, "''''", 4) == 0)
                return sr_err(err, errlen, SR_EPARSE,
                              "line %d: adjacent '' escapes in a single-quoted "
                              "string are not supported; use double quotes",
                              a->line + 1);
        return 0;
    }
    case FYNT_SEQUENCE: {
        struct fy_node *item;
        while ((item = fy_node_sequence_iterate(n, &it)) != NULL) {
            int rc =
                yamlsafe_check_tree(item, text, len, depth + 1, err, errlen);
            if (rc != 0)
                return rc;
        }
        return 0;
    }
    case FYNT_MAPPING: {
        struct fy_node_pair *pair;
        while ((pair = fy_node_mapping_iterate(n, &it)) != NULL) {
            int rc = yamlsafe_check_tree(fy_node_pair_key(pair), text, len,
                                         depth + 1, err, errlen);
            if (rc == 0)
                rc = yamlsafe_check_tree(fy_node_pair_value(pair), text, len,
                                         depth + 1, err, errlen);
            if (rc != 0)
                return rc;
        }
        return 0;
    }
    default:
        return 0;
    }
}

/* Reports the first error libfyaml collected as "line L, column C: msg". */
static int yaml_error(struct fy_diag *diag, char *err, size_t errlen)
{
    void *it = NULL;
    struct fy_diag_error *e;
    while ((e = fy_diag_errors_iterate(diag, &it)) != NULL) {
        if (e->type >= FYET_ERROR)
            return sr_err(err, errlen, SR_EPARSE, "line %d, column %d: %s",
                          e->line, e->column, e->msg ? e->msg : "YAML error");
    }
    return sr_err(err, errlen, SR_EPARSE, "YAML parse failed");
}

int yamlsafe_parse(const char *yaml, size_t len,
                   int (*fn)(void *ud, struct fy_node *root), void *ud,
                   char *err, size_t errlen)
{
    if (yaml == NULL || len == 0)
        return fn(ud, NULL); /* libfyaml refuses an empty buffer */
    char *text;
    int rc = yamlsafe_copy(yaml, len, &text, err, errlen);
    if (rc != 0)
        return rc;
    /* Errors are collected rather than printed: the caller decides where
     * the one-line message goes. */
    struct fy_diag_cfg dcfg;
    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL;
    dcfg.colorize = false;
    struct fy_diag *diag = fy_diag_create(&dcfg);
    if (diag == NULL) {
        free(text);
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    }
    fy_diag_set_collect_errors(diag, true);
    struct fy_parse_cfg pcfg = {.flags = FYPCF_QUIET, .diag = diag};
    struct fy_parser *fyp = fy_parser_create(&pcfg);
    if (fyp == NULL) {
        fy_diag_destroy(diag);
        free(text);
        return sr_err(err, errlen, SR_ENOMEM, "out of memory");
    }
    if (fy_parser_set_string(fyp, text, len) != 0) {
        rc = sr_err(err, errlen, SR_ENOMEM, "out of memory");
    } else {
        struct fy_document *fyd = fy_parse_load_document(fyp);
        if (fyd == NULL) {
            /* No document at all (comments only) is an empty stream. */
            rc = fy_diag_got_error(diag) ? yaml_error(diag, err, errlen)
                                         : fn(ud, NULL);
        } else {
            rc = yamlsafe_check_tree(fy_document_root(fyd), text, len, 0, err,
                                     errlen);
            if (rc == 0)
                rc = fn(ud, fy_document_root(fyd));
            fy_parse_document_destroy(fyp, fyd);
            if (rc == 0) {
                struct fy_document *extra = fy_parse_load_document(fyp);
                if (extra != NULL) {
                    fy_parse_document_destroy(fyp, extra);
                    rc = sr_err(err, errlen, SR_EPARSE,
                                "only one YAML document is allowed");
                } else if (fy_diag_got_error(diag)) {
                    rc = yaml_error(diag, err, errlen);
                }
            }
        }
    }
    fy_parser_destroy(fyp);
    fy_diag_destroy(diag);
    free(text);
    return rc;
}
