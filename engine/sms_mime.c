/* sms_mime.c - the text of an email for an SMS (see sms_mime.h). */
#include "engine/sms_mime.h"

#include <ctype.h>
#include <gmime/gmime.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/rewrap.h"
#include "engine/sms_text.h"
#include "node/errors.h"

struct found {
    GMimeTextPart *plain, *html;
};

static void visit(GMimeObject *parent, GMimeObject *part, gpointer ud)
{
    (void)parent;
    struct found *f = ud;
    if (!GMIME_IS_TEXT_PART(part))
        return;
    GMimeContentDisposition *d = g_mime_object_get_content_disposition(part);
    if (d != NULL && g_mime_content_disposition_is_attachment(d))
        return;
    GMimeContentType *ct = g_mime_object_get_content_type(part);
    if (f->plain == NULL && g_mime_content_type_is_type(ct, "text", "plain"))
        f->plain = (GMimeTextPart *)part;
    else if (f->html == NULL && g_mime_content_type_is_type(ct, "text", "html"))
        f->html = (GMimeTextPart *)part;
}

/* Appends one UTF-8 code point. */
static size_t put_utf8(char *o, unsigned long cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static bool tag_is(const char *t, size_t n, const char *name)
{
    size_t l = strlen(name);
    return n >= l && strncasecmp(t, name, l) == 0 &&
           (n == l || !isalnum((unsigned char)t[l]));
}

char *sms_mime_html_to_text(const char *h, size_t len)
{
    char *o = malloc(len + 1);
    if (o == NULL)
        return NULL;
    size_t n = 0;
    bool skip = false; /* inside <script> or <style> */
    for (size_t i = 0; i < len;) {
        if (h[i] == '<') {
            const char *end = memchr(h + i, '>', len - i);
            size_t tl = end ? (size_t)(end - (h + i)) - 1 : len - i - 1;
            const char *t = h + i + 1;
            bool close = tl > 0 && t[0] == '/';
            const char *name = close ? t + 1 : t;
            size_t nl = close ? tl - 1 : tl;
            if (tag_is(name, nl, "script") || tag_is(name, nl, "style"))
                skip = !close;
            else if (tag_is(name, nl, "br") ||
                     (close &&
                      (tag_is(name, nl, "p") || tag_is(name, nl, "div") ||
                       tag_is(name, nl, "li") || tag_is(name, nl, "tr"))))
                o[n++] = '\n';
            i = end ? (size_t)(end - h) + 1 : len;
            continue;
        }
        if (skip) {
            i++;
            continue;
        }
        if (h[i] == '&') {
            const char *semi = memchr(h + i, ';', len - i < 12 ? len - i : 12);
            if (semi != NULL) {
                const char *e = h + i + 1;
                size_t el = (size_t)(semi - e);
                unsigned long cp = 0;
                if (el == 3 && strncmp(e, "amp", 3) == 0)
                    cp = '&';
                else if (el == 2 && strncmp(e, "lt", 2) == 0)
                    cp = '<';
                else if (el == 2 && strncmp(e, "gt", 2) == 0)
                    cp = '>';
                else if (el == 4 && strncmp(e, "quot", 4) == 0)
                    cp = '"';
                else if (el == 4 && strncmp(e, "apos", 4) == 0)
                    cp = '\'';
                else if (el == 4 && strncmp(e, "nbsp", 4) == 0)
                    cp = ' ';
                else if (el >= 2 && e[0] == '#')
                    cp = (e[1] == 'x' || e[1] == 'X')
                             ? strtoul(e + 2, NULL, 16)
                             : strtoul(e + 1, NULL, 10);
                /* a reference is at least as long as its UTF-8 */
                if (cp > 0 && cp <= 0x10FFFF &&
                    !(cp >= 0xD800 && cp < 0xE000)) {
                    n += put_utf8(o + n, cp);
                    i = (size_t)(semi - h) + 1;
                    continue;
                }
            }
        }
        o[n++] = h[i++];
    }
    o[n] = '\0';
    /* collapse runs of blank lines and leading spaces per line */
    size_t w = 0;
    int nl = 0;
    for (size_t r = 0; r < n; r++) {
        char c = o[r];
        if (c == '\r')
            continue;
        if (c == '\n') {
            if (++nl > 2)
                continue;
        } else if ((c == ' ' || c == '\t') && (w == 0 || o[w - 1] == '\n')) {
            continue;
        } else {
            nl = 0;
        }
        o[w++] = c;
    }
    while (w > 0 && (o[w - 1] == '\n' || o[w - 1] == ' '))
        w--;
    size_t start = 0;
    while (start < w && o[start] == '\n')
        start++;
    memmove(o, o + start, w - start);
    o[w - start] = '\0';
    return o;
}

int sms_mime_extract(const char *msg, size_t len, struct sms_mime *out,
                     char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    rewrap_global_init();
    GMimeStream *st = g_mime_stream_mem_new_with_buffer(msg, len);
    GMimeParser *parser = g_mime_parser_new_with_stream(st);
    g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
    GMimeMessage *m = g_mime_parser_construct_message(parser, NULL);
    g_object_unref(parser);
    g_object_unref(st);
    if (m == NULL)
        return sr_err(err, errlen, SR_EPARSE, "not a message");
    int rc = 0;
    const char *subj = g_mime_message_get_subject(m);
    out->subject = strdup(subj ? subj : "");
    InternetAddressList *from = g_mime_message_get_from(m);
    const char *addr = NULL;
    if (from != NULL && internet_address_list_length(from) > 0) {
        InternetAddress *ia = internet_address_list_get_address(from, 0);
        if (INTERNET_ADDRESS_IS_MAILBOX(ia))
            addr =
                internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));
    }
    const char *at = addr ? strrchr(addr, '@') : NULL;
    out->from_local =
        at ? strndup(addr, (size_t)(at - addr)) : strdup(addr ? addr : "");
    struct found f = {NULL, NULL};
    GMimeObject *body = g_mime_message_get_mime_part(m);
    if (body != NULL && GMIME_IS_MULTIPART(body))
        g_mime_multipart_foreach(GMIME_MULTIPART(body), visit, &f);
    else if (body != NULL)
        visit(NULL, body, &f);
    GMimeTextPart *tp = f.plain ? f.plain : f.html;
    char *text = tp ? g_mime_text_part_get_text(tp) : NULL;
    if (out->subject == NULL || out->from_local == NULL) {
        rc = sr_err(err, errlen, SR_ENOMEM, "out of memory");
    } else if (text == NULL) {
        rc = sr_err(err, errlen, SR_EPARSE, "no text part to send as SMS");
    } else if (f.plain) {
        out->text = strdup(text);
    } else {
        out->text = sms_mime_html_to_text(text, strlen(text));
    }
    if (rc == 0 && out->text == NULL)
        rc = sr_err(err, errlen, SR_ENOMEM, "out of memory");
    if (rc == 0)
        out->text_len = strlen(out->text);
    g_free(text);
    g_object_unref(m);
    if (rc != 0)
        sms_mime_free(out);
    return rc;
}

void sms_mime_free(struct sms_mime *m)
{
    free(m->text);
    free(m->subject);
    free(m->from_local);
    memset(m, 0, sizeof *m);
}

char *sms_mime_compose(const struct sms_mime *m, int prepend_subject,
                       const char *marker, size_t *len)
{
    size_t sl = prepend_subject ? strlen(m->subject) : 0;
    char *t = malloc(sl + m->text_len + 2);
    if (t == NULL)
        return NULL;
    size_t n = 0;
    if (sl) {
        memcpy(t, m->subject, sl);
        t[sl] = '\n';
        n = sl + 1;
    }
    memcpy(t + n, m->text, m->text_len);
    *len = sms_text_prepare(t, n + m->text_len, marker);
    return t;
}
