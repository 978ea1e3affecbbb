/*
 * rewrap.h - the re-wrap of one message for one recipient before delivery:
 * header stamping, the VERP envelope sender, List-Unsubscribe, open and
 * click tracking. DKIM signing comes after, in engine/dkim.h.
 *
 * A pure function: message bytes + customer policy + message code +
 * recipient + time -> new message bytes + envelope sender. No clock, no
 * randomness, no I/O, no shared mutable state: callable from worker
 * threads, one message per call. GMime 3 parses the MIME structure.
 *
 * What it does to the message (input with CRLF or bare LF line ends;
 * output always CRLF, ending with a line end as on the wire):
 *
 *  - Headers of the top level are edited on the raw bytes, never
 *    re-folded: fields the policy lists (case-insensitive names) are
 *    removed with their continuation lines, as are X-SmartRelay-ID,
 *    Feedback-ID and, when the policy is bulk, List-Unsubscribe and
 *    List-Unsubscribe-Post, which we write ourselves. Every other field
 *    stays byte for byte (RFC 2047 words, long lines, UTF-8 of RFC 6532).
 *    Appended at the end of the header: Message-ID
 *    <code@bounce_domain> and Date (from input->now) when missing,
 *    X-SmartRelay-ID: <code>, Feedback-ID: [campaign:]customer:smartrelay,
 *    and when bulk List-Unsubscribe (RFC 2369: <mailto:ADDR?subject=
 *    unsubscribe-TOKEN>, <BASE/u/TOKEN>) and List-Unsubscribe-Post:
 *    List-Unsubscribe=One-Click (RFC 8058).
 *  - Tracking (policy->tracking): in every text/html leaf that is not an
 *    attachment, every <a> tag's href whose value (HTML character
 *    references decoded, surrounding spaces trimmed) starts with http://
 *    or https:// and does not start with an excluded prefix (ASCII
 *    case-insensitive), and is at most TOKEN_URL_MAX bytes, becomes
 *    BASE/c/TOKEN (a click token carrying the URL and its link index),
 *    keeping the attribute's quoting. A 1x1 pixel BASE/o/TOKEN goes before
 *    the last </body>, or at the end (before a final line end). With
 * track_text_parts, bare http(s) URLs in text/plain leaves are rewritten as
 * well. Links are numbered from 0 in document order across parts; result->links
 * lists the original URLs in that order.
 *  - Only the bytes of a modified leaf's content change: everything else
 *    (other parts, attachments, boundaries, preamble, part headers) is
 *    copied byte for byte. A modified leaf keeps its charset (converted to
 *    UTF-8 to edit, and back) and its Content-Transfer-Encoding
 *    (quoted-printable and base64 re-encoded, 7bit/8bit/binary as is; our
 *    insertions are ASCII, so a 7-bit part stays 7-bit).
 *  - Left alone: multipart/signed and multipart/encrypted (a signature
 *    would break), message/rfc822 parts (forwarded mail), attachments,
 *    uuencoded parts, parts whose charset cannot be converted.
 *  - A message whose header cannot be parsed (a line that is neither a
 *    field nor a continuation before the first empty line) keeps all its
 *    bytes: the new fields are prepended (as a Received: line would be),
 *    none is removed, Message-ID and Date are added only when no line
 *    starting with that field name is found. A message GMime cannot parse,
 *    or whose parts it cannot locate, keeps its body as is. Both say why
 *    in result->reason with status REWRAP_BODY_UNPARSED.
 */
#ifndef SR_ENGINE_REWRAP_H
#define SR_ENGINE_REWRAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/verp.h"
#include "node/errors.h"

/* A customer's re-wrap policy. Every string and array is owned by the
 * struct (rewrap_policy_free frees them); NULL means empty/absent.
 * Strings written into headers must not contain control characters;
 * URL bases must be http(s) URLs without quotes, spaces, '<', '>' or '&'
 * (rewrap_message refuses them with SR_EINVAL). */
struct rewrap_policy {
    char *customer_id;
    char *bounce_domain;     /* VERP and Message-ID domain (required) */
    char *feedback_campaign; /* Feedback-ID first part (optional) */
    char *feedback_customer; /* Feedback-ID second part (customer_id if
                                NULL) */
    char **headers_to_remove;
    size_t n_headers_to_remove;
    bool bulk;                  /* adds List-Unsubscribe(-Post) */
    char *unsubscribe_mailto;   /* address for <mailto:...> (optional) */
    char *unsubscribe_url_base; /* e.g. https://t.example (required if
                                   bulk) */
    bool tracking;
    char *tracking_url_base; /* e.g. https://t.example (required if
                                tracking) */
    char **tracking_exclude; /* URL prefixes never rewritten */
    size_t n_tracking_exclude;
    bool track_text_parts;
    uint8_t *hmac_key; /* tokens and VERP (>= TOKEN_KEY_MIN bytes) */
    size_t hmac_key_len;
};

/* Frees every member and zeroes p (not p itself). */
void rewrap_policy_free(struct rewrap_policy *p);

/* One message for one recipient; everything borrowed for the call. */
struct rewrap_input {
    const char *msg; /* raw RFC 5322 message */
    size_t len;
    const char *code;    /* the message code */
    const char *rcpt;    /* the recipient address */
    uint32_t rcpt_index; /* its index in the envelope */
    int64_t now;         /* Unix seconds, for a missing Date: */
};

enum rewrap_body {
    REWRAP_BODY_MODIFIED = 1, /* some part was rewritten */
    REWRAP_BODY_KEPT,         /* body as it was: nothing to do (reason) */
    REWRAP_BODY_UNPARSED,     /* body as it was: not parseable (reason) */
};

/* What rewrap_message made; owned by the struct (rewrap_result_free). */
struct rewrap_result {
    char *msg; /* the new message, CRLF, NUL-terminated */
    size_t len;
    char envelope_sender[VERP_ADDR_MAX]; /* the VERP address */
    enum rewrap_body body;
    char reason[SR_ERRMSG_SIZE]; /* why kept/unparsed, notes; "" if none */
    char **links;                /* original URLs by link index */
    size_t n_links;
    unsigned n_pixels; /* open pixels inserted */
};

/* Calls g_mime_init() once per process (thread-safe, idempotent);
 * rewrap_message calls it too. rewrap_global_shutdown releases GMime's
 * global state at exit (tests, fuzzers); no call may be running. */
void rewrap_global_init(void);
void rewrap_global_shutdown(void);

/* Re-wraps in->msg for in->rcpt under policy p. On success (return 0) res
 * holds the new message, whatever body status; free with
 * rewrap_result_free. Returns SR_EINVAL (policy or input unusable: bad
 * code, key, domain, URL bases) or SR_ENOMEM, with res empty. */
int rewrap_message(const struct rewrap_policy *p, const struct rewrap_input *in,
                   struct rewrap_result *res, char *err, size_t errlen);

void rewrap_result_free(struct rewrap_result *res);

#endif
