/*
 * sms_mime.h - the text of an email that becomes an SMS: the first
 * text/plain part that is not an attachment, decoded from its transfer
 * encoding and charset to UTF-8; without one, the first text/html part
 * reduced to text (tags dropped, <br> and block ends as line breaks, the
 * common character references decoded). Also the decoded Subject and the
 * local part of the first From address.
 *
 * Pure (GMime, no I/O, no clock): callable from worker threads; calls
 * rewrap_global_init() for GMime.
 */
#ifndef SR_ENGINE_SMS_MIME_H
#define SR_ENGINE_SMS_MIME_H

#include <stddef.h>

struct sms_mime {
    char *text; /* UTF-8, NUL-terminated, LF or CRLF line ends */
    size_t text_len;
    char *subject;    /* "" when none */
    char *from_local; /* "" when none */
};

/* Returns 0 or SR_EPARSE (not a message, or no text part at all) or
 * SR_ENOMEM; free with sms_mime_free. */
int sms_mime_extract(const char *msg, size_t len, struct sms_mime *out,
                     char *err, size_t errlen);
void sms_mime_free(struct sms_mime *m);

/* The SMS text of m: the subject and a line break first when
 * prepend_subject and there is one, then the text, then
 * sms_text_prepare() with marker (may be NULL). A new string, *len bytes;
 * NULL when out of memory. The SMTP server's parts check at DATA and the
 * sender use this one function, so what is checked is what is sent. */
char *sms_mime_compose(const struct sms_mime *m, int prepend_subject,
                       const char *marker, size_t *len);

/* HTML to text, as above (exposed for tests). Returns a new string. */
char *sms_mime_html_to_text(const char *html, size_t len);

#endif
