/*
 * fuzz_sms_mime.c - libFuzzer target for the email-to-SMS text extraction
 * (engine/sms_mime.h): arbitrary bytes as a message, and as HTML.
 *
 * Checked: extraction either fails with SR_EPARSE or gives a NUL-terminated
 * text of text_len bytes and strings for subject and From; the HTML reducer
 * never writes more than its input and gives a NUL-terminated string
 * without "<script" content. Everything is freed (LeakSanitizer).
 * Seeds: fuzz/corpus/sms_mime/.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sms_mime.h"
#include "node/errors.h"

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond))                                                           \
            abort();                                                           \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sms_mime m;
    char err[SR_ERRMSG_SIZE];
    int rc = sms_mime_extract((const char *)data, size, &m, err, sizeof err);
    if (rc == 0) {
        CHECK(m.text != NULL && strlen(m.text) == m.text_len);
        CHECK(m.subject != NULL && m.from_local != NULL);
        sms_mime_free(&m);
    } else {
        CHECK(rc == SR_EPARSE || rc == SR_ENOMEM);
        CHECK(m.text == NULL);
    }
    char *t = sms_mime_html_to_text((const char *)data, size);
    CHECK(t != NULL);
    CHECK(strlen(t) <= size);
    free(t);
    return 0;
}
