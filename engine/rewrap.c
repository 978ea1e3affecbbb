/*
 * rewrap.c - the re-wrap engine (see rewrap.h).
 *
 * How: the top-level header is edited on the raw bytes. GMime parses the
 * whole (line-end normalised) message only to find the leaves to rewrite
 * and where their content lies: a parser over a memory stream keeps each
 * leaf's content as a substream whose bounds are offsets into our buffer.
 * Each rewritten leaf becomes one edit (replace [start, end) with new
 * encoded bytes), and the output is the header, then the body with the
 * edits applied. Bytes outside the edits are never touched.
 */
#include "engine/rewrap.h"

#include <gmime/gmime.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "engine/token.h"

#define MAX_DEPTH 64
#define PRODUCT "smartrelay"

struct buf {
    char *p;
    size_t len, cap;
    int err;
};

static void buf_add(struct buf *b, const void *p, size_t n)
{
    if (b->err)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (q == NULL) {
            b->err = SR_ENOMEM;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    if (n > 0)
        memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_str(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

static void buf_fmt(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void buf_fmt(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->err = SR_ENOMEM;
        return;
    }
    buf_add(b, s, (size_t)n);
    free(s);
}

static void buf_free(struct buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---- global GMime state ------------------------------------------------ */

static pthread_once_t gmime_once = PTHREAD_ONCE_INIT;

static void gmime_init_once(void)
{
    g_mime_init();
}

void rewrap_global_init(void)
{
    pthread_once(&gmime_once, gmime_init_once);
}

void rewrap_global_shutdown(void)
{
    g_mime_shutdown();
}

/* ---- small helpers ----------------------------------------------------- */

static char lc(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

static bool prefix_ci(const char *s, size_t n, const char *pre)
{
    size_t pl = strlen(pre);
    if (pl > n)
        return false;
    for (size_t i = 0; i < pl; i++)
        if (lc(s[i]) != lc(pre[i]))
            return false;
    return true;
}

static bool eq_ci(const char *s, size_t n, const char *w)
{
    return strlen(w) == n && prefix_ci(s, n, w);
}

static bool header_safe(const char *s)
{
    if (s == NULL)
        return true;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

/* An http(s) base URL we can put into an attribute or a header unquoted. */
static bool url_base_ok(const char *s)
{
    if (s == NULL || !(prefix_ci(s, strlen(s), "http://") ||
                       prefix_ci(s, strlen(s), "https://")))
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || *s >= 0x7f || strchr("\"'<>&\\`", *s))
            return false;
    return true;
}

static bool mailto_ok(const char *s)
{
    if (s == NULL || strchr(s, '@') == NULL)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || strchr("@.-_+=!#$%*/^`{|}~", *s)))
            return false;
    return true;
}

/* Feedback-ID parts: no ':' (the separator), nothing header-unsafe. */
static bool fbl_ok(const char *s)
{
    return header_safe(s) && (s == NULL || strchr(s, ':') == NULL);
}

/* base without trailing '/' */
static size_t base_len(const char *s)
{
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == '/')
        n--;
    return n;
}

/* ---- line ends and the raw header -------------------------------------- */

/* Lone LF -> CRLF, a line end at the end; everything else as is. */
static int normalize(const char *m, size_t len, struct buf *out)
{
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(m + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - m) : len;
        buf_add(out, m + i, e - i);
        if (nl == NULL)
            break;
        if (e == 0 || m[e - 1] != '\r')
            buf_add(out, "\r", 1);
        buf_add(out, "\n", 1);
        i = e + 1;
    }
    /* SMTP ends every message with a line end (RFC 5321 4.1.1.4): make it
     * part of the message, so that the DKIM body hash covers it. */
    if (out->len > 0 && out->p[out->len - 1] != '\n')
        buf_add(out, "\r\n", 2);
    if (out->p == NULL)
        buf_add(out, "", 0);
    return out->err;
}

struct field {
    size_t start, end; /* the field's bytes, continuation lines included */
    size_t name_len;
};

struct header {
    struct field *f;
    size_t n, cap;
    size_t body_start; /* after the empty line (or len) */
    bool ok;           /* every line a field or a continuation */
    char why[96];
};

static int parse_header(const char *m, size_t len, struct header *h)
{
    memset(h, 0, sizeof *h);
    h->ok = true;
    h->body_start = len;
    size_t i = 0;
    while (i < len) {
        const char *nl = memchr(m + i, '\n', len - i);
        size_t next = nl ? (size_t)(nl - m) + 1 : len;
        size_t e = nl ? (size_t)(nl - m) : len;
        if (e > i && m[e - 1] == '\r')
            e--;
        if (e == i) { /* the empty line */
            h->body_start = next;
            return 0;
        }
        if (m[i] == ' ' || m[i] == '\t') {
            if (h->n == 0) {
                h->ok = false;
                snprintf(h->why, sizeof h->why,
                         "header starts with a continuation line");
                return 0;
            }
            h->f[h->n - 1].end = next;
        } else {
            size_t c = i;
            while (c < e && m[c] != ':' && (unsigned char)m[c] > 0x20 &&
                   (unsigned char)m[c] < 0x7f)
                c++;
            size_t name_end = c;
            while (c < e && (m[c] == ' ' || m[c] == '\t'))
                c++; /* obs-optional: WSP before the colon */
            if (c >= e || m[c] != ':' || name_end == i) {
                h->ok = false;
                snprintf(h->why, sizeof h->why,
                         "header line %zu is not a field", h->n + 1);
                return 0;
            }
            if (h->n == h->cap) {
                size_t cap = h->cap ? h->cap * 2 : 32;
                struct field *f = realloc(h->f, cap * sizeof *f);
                if (f == NULL)
                    return SR_ENOMEM;
                h->f = f;
                h->cap = cap;
            }
            h->f[h->n++] = (struct field){i, next, name_end - i};
        }
        i = next;
    }
    return 0;
}

/* Is there a line starting with "name:" before the first empty line?
 * (For headers we could not parse.) */
static bool raw_has_field(const char *m, size_t len, const char *name)
{
    size_t i = 0, nl = strlen(name);
    while (i < len) {
        const char *p = memchr(m + i, '\n', len - i);
        size_t e = p ? (size_t)(p - m) : len;
        if (e == i || (e == i + 1 && m[i] == '\r'))
            return false;
        if (e - i > nl && prefix_ci(m + i, e - i, name) && m[i + nl] == ':')
            return true;
        i = e + 1;
    }
    return false;
}

static void rfc5322_date(int64_t now, char *out, size_t len)
{
    static const char *days[] = {"Sun", "Mon", "Tue", "Wed",
                                 "Thu", "Fri", "Sat"};
    static const char *months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)now;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL)
        memset(&tm, 0, sizeof tm);
    snprintf(out, len, "%s, %02d %s %04d %02d:%02d:%02d +0000",
             days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
             tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* ---- the call's context ------------------------------------------------ */

struct edit {
    size_t start, end;
    char *text;
    size_t len;
};

struct ctx {
    const struct rewrap_policy *p;
    const struct rewrap_input *in;
    const char *m; /* normalised message */
    size_t len;
    size_t body_start;
    struct edit *edits;
    size_t n_edits, cap_edits;
    char **links;
    size_t n_links, cap_links;
    unsigned n_pixels;
    unsigned n_html, n_text; /* leaves looked at */
    char *open_token;
    int err; /* SR_ENOMEM etc.: abort */
    char notes[SR_ERRMSG_SIZE];
};

static void note(struct ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void note(struct ctx *c, const char *fmt, ...)
{
    size_t l = strlen(c->notes);
    if (l + 3 >= sizeof c->notes)
        return;
    if (l > 0) {
        memcpy(c->notes + l, "; ", 3);
        l += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->notes + l, sizeof c->notes - l, fmt, ap);
    va_end(ap);
}

static int make_token(struct ctx *c, enum token_kind kind, const char *url,
                      uint32_t link, char **out)
{
    struct token t = {0};
    t.kind = kind;
    snprintf(t.code, sizeof t.code, "%s", c->in->code);
    t.rcpt_index = c->in->rcpt_index;
    t.rcpt = kind == TOKEN_UNSUBSCRIBE ? (char *)c->in->rcpt : NULL;
    t.link_index = link;
    t.url = (char *)url;
    return token_encode(&t, c->p->hmac_key, c->p->hmac_key_len, out, NULL, 0);
}

/* Records url as the next link and writes BASE/c/TOKEN to out. */
static bool add_link(struct ctx *c, const char *url, struct buf *out)
{
    char *tok = NULL;
    if (make_token(c, TOKEN_CLICK, url, (uint32_t)c->n_links, &tok) != 0)
        return false; /* cannot happen for checked input; leave the link */
    char *copy = strdup(url);
    if (c->n_links == c->cap_links) {
        size_t cap = c->cap_links ? c->cap_links * 2 : 16;
        char **l = realloc(c->links, cap * sizeof *l);
        if (l == NULL) {
            free(copy);
            free(tok);
            c->err = SR_ENOMEM;
            return false;
        }
        c->links = l;
        c->cap_links = cap;
    }
    if (copy == NULL) {
        free(tok);
        c->err = SR_ENOMEM;
        return false;
    }
    c->links[c->n_links++] = copy;
    const char *base = c->p->tracking_url_base;
    buf_add(out, base, base_len(base));
    buf_str(out, "/c/");
    buf_str(out, tok);
    free(tok);
    return true;
}

static bool excluded(const struct rewrap_policy *p, const char *url, size_t n)
{
    for (size_t i = 0; i < p->n_tracking_exclude; i++) {
        const char *x = p->tracking_exclude[i];
        if (x != NULL && x[0] != '\0' && prefix_ci(url, n, x))
            return true;
    }
    return false;
}

static bool trackable(struct ctx *c, const char *url, size_t n)
{
    return (prefix_ci(url, n, "http://") || prefix_ci(url, n, "https://")) &&
           n <= TOKEN_URL_MAX && memchr(url, '\0', n) == NULL &&
           !excluded(c->p, url, n);
}

/* ---- HTML -------------------------------------------------------------- */

static void put_utf8(struct buf *b, uint32_t cp)
{
    char u[4];
    size_t n;
    if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        cp = 0xfffd;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | cp >> 6);
        u[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | cp >> 12);
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        u[0] = (char)(0xf0 | cp >> 18);
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    buf_add(b, u, n);
}

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9');
}

/* Decodes the character references of an attribute value (HTML 13.2.5.72):
 * numeric ones, and the named ones a URL may carry. A legacy reference
 * without ';' is decoded only when not followed by an alphanumeric or '='
 * (the attribute rule), so "?a=1&copy=2" stays as it is. */
static void html_unescape(const char *s, size_t n, struct buf *out)
{
    static const struct {
        const char *name;
        const char *text;
        bool legacy;
    } named[] = {
        {"amp", "&", true},       {"lt", "<", true},
        {"gt", ">", true},        {"quot", "\"", true},
        {"apos", "'", false},     {"nbsp", "\xc2\xa0", true},
        {"sol", "/", false},      {"colon", ":", false},
        {"quest", "?", false},    {"equals", "=", false},
        {"num", "#", false},      {"percnt", "%", false},
        {"plus", "+", false},     {"lpar", "(", false},
        {"rpar", ")", false},     {"period", ".", false},
        {"comma", ",", false},    {"semi", ";", false},
        {"excl", "!", false},     {"dollar", "$", false},
        {"tilde", "~", false},    {"lowbar", "_", false},
        {"commat", "@", false},   {"Tab", "\t", false},
        {"NewLine", "\n", false},
    };
    size_t i = 0;
    while (i < n) {
        if (s[i] != '&') {
            buf_add(out, s + i, 1);
            i++;
            continue;
        }
        if (i + 1 < n && s[i + 1] == '#') {
            size_t j = i + 2;
            bool hex = j < n && (s[j] == 'x' || s[j] == 'X');
            if (hex)
                j++;
            uint32_t cp = 0;
            size_t d0 = j;
            while (j < n) {
                char ch = s[j];
                int v = -1;
                if (ch >= '0' && ch <= '9')
                    v = ch - '0';
                else if (hex && lc(ch) >= 'a' && lc(ch) <= 'f')
                    v = lc(ch) - 'a' + 10;
                if (v < 0)
                    break;
                cp = cp > 0x10ffff ? cp : cp * (hex ? 16 : 10) + (uint32_t)v;
                j++;
            }
            if (j == d0) {
                buf_add(out, "&", 1);
                i++;
                continue;
            }
            if (j < n && s[j] == ';')
                j++;
            put_utf8(out, cp);
            i = j;
            continue;
        }
        bool done = false;
        for (size_t k = 0; k < sizeof named / sizeof *named; k++) {
            size_t nl = strlen(named[k].name);
            if (i + 1 + nl > n || memcmp(s + i + 1, named[k].name, nl) != 0)
                continue;
            size_t j = i + 1 + nl;
            if (j < n && s[j] == ';') {
                buf_str(out, named[k].text);
                i = j + 1;
                done = true;
            } else if (named[k].legacy &&
                       (j == n || (!is_alnum(s[j]) && s[j] != '='))) {
                buf_str(out, named[k].text);
                i = j;
                done = true;
            }
            break;
        }
        if (!done) {
            buf_add(out, "&", 1);
            i++;
        }
    }
}

/* The URL a browser would follow for an href value: references decoded,
 * C0 controls and spaces trimmed at both ends, tab/CR/LF removed
 * (WHATWG URL parsing). */
static int href_url(const char *v, size_t n, struct buf *url)
{
    struct buf d = {0};
    html_unescape(v, n, &d);
    buf_add(&d, "", 0);
    if (d.err) {
        buf_free(&d);
        return SR_ENOMEM;
    }
    size_t a = 0, e = d.len;
    while (a < e && (unsigned char)d.p[a] <= 0x20)
        a++;
    while (e > a && (unsigned char)d.p[e - 1] <= 0x20)
        e--;
    for (size_t i = a; i < e; i++)
        if (d.p[i] != '\t' && d.p[i] != '\r' && d.p[i] != '\n')
            buf_add(url, d.p + i, 1);
    buf_add(url, "", 0);
    buf_free(&d);
    return url->err;
}

static void html_rewrite(struct ctx *c, const char *s, size_t n,
                         struct buf *out, unsigned *changed)
{
    size_t copied = 0, i = 0;
    while (i + 2 < n) {
        if (!(s[i] == '<' && lc(s[i + 1]) == 'a' &&
              (is_ws(s[i + 2]) || s[i + 2] == '/' || s[i + 2] == '>'))) {
            i++;
            continue;
        }
        size_t j = i + 2;
        bool seen_href = false;
        for (;;) {
            while (j < n && (is_ws(s[j]) || s[j] == '/'))
                j++;
            if (j >= n)
                break;
            if (s[j] == '>') {
                j++;
                break;
            }
            size_t ns = j++;
            while (j < n && !is_ws(s[j]) && s[j] != '/' && s[j] != '>' &&
                   s[j] != '=')
                j++;
            size_t ne = j;
            while (j < n && is_ws(s[j]))
                j++;
            if (j >= n || s[j] != '=')
                continue;
            j++;
            while (j < n && is_ws(s[j]))
                j++;
            size_t vs, ve;
            if (j < n && (s[j] == '"' || s[j] == '\'')) {
                const char *q = memchr(s + j + 1, s[j], n - j - 1);
                if (q == NULL) {
                    j = n; /* unterminated: the tag never ends */
                    break;
                }
                vs = j + 1;
                ve = (size_t)(q - s);
                j = ve + 1;
            } else {
                vs = j;
                while (j < n && !is_ws(s[j]) && s[j] != '>')
                    j++;
                ve = j;
            }
            if (seen_href || !eq_ci(s + ns, ne - ns, "href"))
                continue;
            seen_href = true; /* HTML keeps the first of duplicates */
            struct buf url = {0};
            if (href_url(s + vs, ve - vs, &url) != 0) {
                c->err = SR_ENOMEM;
                buf_free(&url);
                return;
            }
            if (trackable(c, url.p, url.len)) {
                struct buf nv = {0};
                if (add_link(c, url.p, &nv)) {
                    buf_add(out, s + copied, vs - copied);
                    buf_add(out, nv.p, nv.len);
                    copied = ve;
                    (*changed)++;
                }
                buf_free(&nv);
            }
            buf_free(&url);
        }
        i = j > i ? j : i + 1;
    }
    buf_add(out, s + copied, n - copied);
}

/* Inserts the pixel before the last </body>, or at the end. */
static void insert_pixel(struct ctx *c, struct buf *html)
{
    if (c->open_token == NULL &&
        make_token(c, TOKEN_OPEN, NULL, 0, &c->open_token) != 0) {
        c->err = SR_ENOMEM;
        return;
    }
    struct buf px = {0};
    const char *base = c->p->tracking_url_base;
    buf_str(&px, "<img src=\"");
    buf_add(&px, base, base_len(base));
    buf_fmt(&px,
            "/o/%s\" width=\"1\" height=\"1\" alt=\"\" "
            "style=\"display:none\">",
            c->open_token);
    /* before the last </body>, else before the final line end */
    size_t at = html->len;
    if (at >= 2 && html->p[at - 2] == '\r' && html->p[at - 1] == '\n')
        at -= 2;
    for (size_t i = html->len; i-- > 0;)
        if (html->p[i] == '<' &&
            prefix_ci(html->p + i, html->len - i, "</body")) {
            at = i;
            break;
        }
    struct buf out = {0};
    buf_add(&out, html->p, at);
    buf_add(&out, px.p, px.len);
    buf_add(&out, html->p + at, html->len - at);
    buf_free(&px);
    if (out.err) {
        c->err = out.err;
        buf_free(&out);
        return;
    }
    buf_free(html);
    *html = out;
    c->n_pixels++;
}

/* ---- plain text -------------------------------------------------------- */

static void text_rewrite(struct ctx *c, const char *s, size_t n,
                         struct buf *out, unsigned *changed)
{
    size_t copied = 0, i = 0;
    while (i < n) {
        size_t pl = prefix_ci(s + i, n - i, "http://")    ? 7
                    : prefix_ci(s + i, n - i, "https://") ? 8
                                                          : 0;
        if (pl == 0 || (i > 0 && is_alnum(s[i - 1]))) {
            i++;
            continue;
        }
        size_t e = i;
        bool paren = false;
        while (e < n && (unsigned char)s[e] > 0x20 && s[e] != 0x7f &&
               !strchr("<>\"", s[e])) {
            paren |= s[e] == '(';
            e++;
        }
        while (e > i + pl &&
               (strchr(".,;:!?'", s[e - 1]) || (!paren && s[e - 1] == ')')))
            e--;
        if (e == i + pl) {
            i = e;
            continue;
        }
        char *url = strndup(s + i, e - i);
        if (url == NULL) {
            c->err = SR_ENOMEM;
            return;
        }
        if (trackable(c, url, e - i)) {
            struct buf nv = {0};
            if (add_link(c, url, &nv)) {
                buf_add(out, s + copied, i - copied);
                buf_add(out, nv.p, nv.len);
                copied = e;
                (*changed)++;
            }
            buf_free(&nv);
        }
        free(url);
        i = e;
    }
    buf_add(out, s + copied, n - copied);
}

/* ---- transfer encodings ------------------------------------------------ */

static int hexv(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = lc(ch);
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

/* RFC 2045 6.7: soft breaks joined, =XX decoded, transport padding (white
 * space at line ends) dropped; a malformed '=' is kept as it is. */
static void qp_decode(const char *s, size_t n, struct buf *out)
{
    size_t i = 0;
    while (i < n) {
        const char *nl = memchr(s + i, '\n', n - i);
        size_t e = nl ? (size_t)(nl - s) : n;
        size_t le = e;
        if (nl && le > i && s[le - 1] == '\r')
            le--;
        size_t te = le;
        while (te > i && (s[te - 1] == ' ' || s[te - 1] == '\t'))
            te--;
        bool soft = te > i && s[te - 1] == '=';
        size_t end = soft ? te - 1 : te;
        for (size_t k = i; k < end; k++) {
            if (s[k] == '=' && k + 2 < end && hexv(s[k + 1]) >= 0 &&
                hexv(s[k + 2]) >= 0) {
                char b = (char)(hexv(s[k + 1]) * 16 + hexv(s[k + 2]));
                buf_add(out, &b, 1);
                k += 2;
            } else
                buf_add(out, s + k, 1);
        }
        if (nl != NULL && !soft)
            buf_add(out, "\r\n", 2);
        i = nl ? e + 1 : n;
    }
}

/* Quoted-printable of text with CRLF line ends: CRLF is a hard break,
 * lines at most 76 characters, trailing white space encoded. */
static void qp_encode(const char *s, size_t n, struct buf *out)
{
    static const char hx[] = "0123456789ABCDEF";
    size_t col = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\r' && i + 1 < n && s[i + 1] == '\n') {
            buf_add(out, "\r\n", 2);
            col = 0;
            i++;
            continue;
        }
        bool at_eol =
            i + 1 == n || (s[i + 1] == '\r' && i + 2 < n && s[i + 2] == '\n');
        char enc[3];
        size_t len;
        if ((ch >= 33 && ch <= 126 && ch != '=') ||
            ((ch == ' ' || ch == '\t') && !at_eol)) {
            enc[0] = (char)ch;
            len = 1;
        } else {
            enc[0] = '=';
            enc[1] = hx[ch >> 4];
            enc[2] = hx[ch & 15];
            len = 3;
        }
        /* keep room for the soft break's '=' unless this ends the line */
        size_t room = at_eol ? 76 : 75;
        if (col + len > room) {
            buf_add(out, "=\r\n", 3);
            col = 0;
        }
        buf_add(out, enc, len);
        col += len;
    }
}

static void b64_encode(const char *s, size_t n, struct buf *out)
{
    static const char a[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t col = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)s[i] << 16;
        size_t k = n - i < 3 ? n - i : 3;
        if (k > 1)
            v |= (uint32_t)(unsigned char)s[i + 1] << 8;
        if (k > 2)
            v |= (unsigned char)s[i + 2];
        char q[4] = {a[v >> 18], a[(v >> 12) & 63],
                     k > 1 ? a[(v >> 6) & 63] : '=', k > 2 ? a[v & 63] : '='};
        if (col == 76) {
            buf_add(out, "\r\n", 2);
            col = 0;
        }
        buf_add(out, q, 4);
        col += 4;
    }
}

/* Lenient, as readers are: characters outside the alphabet are skipped,
 * decoding stops at '='. */
static void b64_decode(const char *s, size_t n, struct buf *out)
{
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        int v;
        if (ch >= 'A' && ch <= 'Z')
            v = ch - 'A';
        else if (ch >= 'a' && ch <= 'z')
            v = ch - 'a' + 26;
        else if (ch >= '0' && ch <= '9')
            v = ch - '0' + 52;
        else if (ch == '+')
            v = 62;
        else if (ch == '/')
            v = 63;
        else if (ch == '=')
            break;
        else
            continue;
        acc = (acc << 6 | (uint32_t)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            char b = (char)(acc >> bits);
            buf_add(out, &b, 1);
        }
    }
}

/* ---- one leaf ---------------------------------------------------------- */

static bool charset_is_ascii_compatible_utf8(const char *cs)
{
    return cs == NULL || strcasecmp(cs, "utf-8") == 0 ||
           strcasecmp(cs, "utf8") == 0 || strcasecmp(cs, "us-ascii") == 0 ||
           strcasecmp(cs, "ascii") == 0;
}

static void add_edit(struct ctx *c, size_t start, size_t end, struct buf *b)
{
    if (c->n_edits == c->cap_edits) {
        size_t cap = c->cap_edits ? c->cap_edits * 2 : 8;
        struct edit *e = realloc(c->edits, cap * sizeof *e);
        if (e == NULL) {
            c->err = SR_ENOMEM;
            buf_free(b);
            return;
        }
        c->edits = e;
        c->cap_edits = cap;
    }
    c->edits[c->n_edits++] = (struct edit){start, end, b->p, b->len};
    memset(b, 0, sizeof *b);
}

/* Forgets the links from index n on (their leaf is left as it was). */
static void drop_links(struct ctx *c, size_t n)
{
    while (c->n_links > n)
        free(c->links[--c->n_links]);
}

static void rewrite_leaf(struct ctx *c, GMimeObject *o, bool html)
{
    GMimePart *part = GMIME_PART(o);
    GMimeDataWrapper *w = g_mime_part_get_content(part);
    GMimeStream *st = w ? g_mime_data_wrapper_get_stream(w) : NULL;
    if (st == NULL || st->bound_start < 0 || st->bound_end < 0 ||
        (size_t)st->bound_start < c->body_start ||
        st->bound_start > st->bound_end || (size_t)st->bound_end > c->len) {
        note(c, "a %s part could not be located", html ? "HTML" : "text");
        return;
    }
    size_t start = (size_t)st->bound_start, end = (size_t)st->bound_end;
    const char *raw = c->m + start;
    size_t rawlen = end - start;

    GMimeContentEncoding enc = GMIME_CONTENT_ENCODING_7BIT;
    const char *cte = g_mime_object_get_header(o, "Content-Transfer-Encoding");
    if (cte != NULL) {
        while (*cte == ' ' || *cte == '\t')
            cte++;
        size_t l = strlen(cte);
        while (l > 0 && is_ws(cte[l - 1]))
            l--;
        if (eq_ci(cte, l, "quoted-printable"))
            enc = GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE;
        else if (eq_ci(cte, l, "base64"))
            enc = GMIME_CONTENT_ENCODING_BASE64;
        else if (eq_ci(cte, l, "8bit") || eq_ci(cte, l, "binary"))
            enc = GMIME_CONTENT_ENCODING_8BIT;
        else if (!eq_ci(cte, l, "7bit")) {
            note(c, "a part with transfer encoding '%.20s' left alone", cte);
            return;
        }
    }

    struct buf dec = {0};
    if (enc == GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE)
        qp_decode(raw, rawlen, &dec);
    else if (enc == GMIME_CONTENT_ENCODING_BASE64)
        b64_decode(raw, rawlen, &dec);
    else
        buf_add(&dec, raw, rawlen);
    buf_add(&dec, "", 0);
    if (dec.err) {
        c->err = dec.err;
        buf_free(&dec);
        return;
    }

    /* Edit in UTF-8; a part in another charset goes there and back. */
    const char *cs = g_mime_object_get_content_type_parameter(o, "charset");
    char *utf8 = NULL;
    const char *text = dec.p;
    size_t tlen = dec.len;
    const char *ics = NULL;
    if (!charset_is_ascii_compatible_utf8(cs)) {
        ics = g_mime_charset_iconv_name(cs);
        gsize got = 0;
        utf8 =
            g_convert(dec.p, (gssize)dec.len, "UTF-8", ics, NULL, &got, NULL);
        if (utf8 == NULL) {
            note(c, "a part in charset '%.32s' could not be converted", cs);
            buf_free(&dec);
            return;
        }
        text = utf8;
        tlen = got;
    }

    struct buf out = {0};
    unsigned changed = 0;
    size_t links_before = c->n_links;
    unsigned pixels_before = c->n_pixels;
    if (html)
        html_rewrite(c, text, tlen, &out, &changed);
    else
        text_rewrite(c, text, tlen, &out, &changed);
    buf_add(&out, "", 0);
    if (html && c->err == 0 && !out.err) {
        insert_pixel(c, &out);
        changed++;
    }
    g_free(utf8);
    buf_free(&dec);
    if (c->err || out.err || changed == 0) {
        if (out.err)
            c->err = out.err;
        buf_free(&out);
        return;
    }

    if (ics != NULL) {
        gsize got = 0;
        char *back =
            g_convert(out.p, (gssize)out.len, ics, "UTF-8", NULL, &got, NULL);
        if (back == NULL) {
            note(c, "a part in charset '%.32s' could not be converted back",
                 cs);
            buf_free(&out);
            drop_links(c, links_before);
            c->n_pixels = pixels_before;
            return;
        }
        buf_free(&out);
        buf_add(&out, back, got);
        g_free(back);
    }

    struct buf encd = {0};
    if (enc == GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE)
        qp_encode(out.p, out.len, &encd);
    else if (enc == GMIME_CONTENT_ENCODING_BASE64) {
        b64_encode(out.p, out.len, &encd);
        /* end as the original did: with a line end or without */
        if (rawlen >= 2 && raw[rawlen - 2] == '\r' && raw[rawlen - 1] == '\n')
            buf_add(&encd, "\r\n", 2);
    } else
        buf_add(&encd, out.p, out.len);
    buf_free(&out);
    buf_add(&encd, "", 0);
    if (encd.err) {
        c->err = encd.err;
        buf_free(&encd);
        return;
    }
    add_edit(c, start, end, &encd);
}

static bool is_attachment(GMimeObject *o)
{
    const char *d = g_mime_object_get_disposition(o);
    return d != NULL && strcasecmp(d, "attachment") == 0;
}

static void walk(struct ctx *c, GMimeObject *o, int depth)
{
    if (c->err || o == NULL)
        return;
    if (depth > MAX_DEPTH) {
        note(c, "parts nested deeper than %d left alone", MAX_DEPTH);
        return;
    }
    GMimeContentType *ct = g_mime_object_get_content_type(o);
    if (GMIME_IS_MULTIPART(o)) {
        if (ct != NULL &&
            (g_mime_content_type_is_type(ct, "multipart", "signed") ||
             g_mime_content_type_is_type(ct, "multipart", "encrypted"))) {
            note(c, "multipart/%s left intact",
                 g_mime_content_type_get_media_subtype(ct));
            return;
        }
        GMimeMultipart *mp = GMIME_MULTIPART(o);
        int n = g_mime_multipart_get_count(mp);
        for (int i = 0; i < n && !c->err; i++)
            walk(c, g_mime_multipart_get_part(mp, i), depth + 1);
        return;
    }
    if (!GMIME_IS_PART(o) || ct == NULL || is_attachment(o))
        return; /* message/rfc822 parts and attachments stay as they are */
    if (g_mime_content_type_is_type(ct, "text", "html")) {
        c->n_html++;
        rewrite_leaf(c, o, true);
    } else if (g_mime_content_type_is_type(ct, "text", "plain") &&
               c->p->track_text_parts) {
        c->n_text++;
        rewrite_leaf(c, o, false);
    }
}

/* Parses the message with GMime and collects the edits. Returns false if
 * the message could not be parsed (reason in c->notes). */
static bool collect_edits(struct ctx *c)
{
    GMimeStream *st = g_mime_stream_mem_new_with_buffer(c->m, c->len);
    GMimeParser *parser = g_mime_parser_new_with_stream(st);
    g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
    GMimeMessage *msg = g_mime_parser_construct_message(parser, NULL);
    bool ok = msg != NULL;
    if (ok)
        walk(c, g_mime_message_get_mime_part(msg), 0);
    else
        note(c, "GMime could not parse the message");
    if (msg != NULL)
        g_object_unref(msg);
    g_object_unref(parser);
    g_object_unref(st);
    /* Edits come in document order and never overlap; check anyway. */
    for (size_t i = 1; ok && i < c->n_edits; i++)
        if (c->edits[i].start < c->edits[i - 1].end) {
            note(c, "overlapping parts");
            ok = false;
        }
    return ok;
}

/* ---- the new header fields --------------------------------------------- */

static bool removed(const struct rewrap_policy *p, const char *name, size_t n)
{
    if (eq_ci(name, n, "X-SmartRelay-ID") || eq_ci(name, n, "Feedback-ID"))
        return true;
    if (p->bulk && (eq_ci(name, n, "List-Unsubscribe") ||
                    eq_ci(name, n, "List-Unsubscribe-Post")))
        return true;
    for (size_t i = 0; i < p->n_headers_to_remove; i++)
        if (p->headers_to_remove[i] != NULL &&
            eq_ci(name, n, p->headers_to_remove[i]))
            return true;
    return false;
}

static void new_fields(struct ctx *c, bool has_mid, bool has_date,
                       struct buf *b)
{
    const struct rewrap_policy *p = c->p;
    if (!has_mid)
        buf_fmt(b, "Message-ID: <%s@%s>\r\n", c->in->code, p->bounce_domain);
    if (!has_date) {
        char d[64];
        rfc5322_date(c->in->now, d, sizeof d);
        buf_fmt(b, "Date: %s\r\n", d);
    }
    buf_fmt(b, "X-SmartRelay-ID: %s\r\n", c->in->code);
    const char *cust = p->feedback_customer && p->feedback_customer[0]
                           ? p->feedback_customer
                           : p->customer_id;
    if (cust != NULL && cust[0] != '\0') {
        buf_str(b, "Feedback-ID: ");
        if (p->feedback_campaign && p->feedback_campaign[0])
            buf_fmt(b, "%s:", p->feedback_campaign);
        buf_fmt(b, "%s:" PRODUCT "\r\n", cust);
    }
    if (p->bulk) {
        char *tok = NULL;
        if (make_token(c, TOKEN_UNSUBSCRIBE, NULL, 0, &tok) != 0) {
            b->err = SR_ENOMEM;
            return;
        }
        buf_str(b, "List-Unsubscribe: ");
        if (p->unsubscribe_mailto && p->unsubscribe_mailto[0])
            buf_fmt(b, "<mailto:%s?subject=unsubscribe-%s>,\r\n ",
                    p->unsubscribe_mailto, tok);
        buf_str(b, "<");
        buf_add(b, p->unsubscribe_url_base, base_len(p->unsubscribe_url_base));
        buf_fmt(b, "/u/%s>\r\n", tok);
        buf_str(b, "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n");
        free(tok);
    }
}

/* ---- the entry point --------------------------------------------------- */

static int check(const struct rewrap_policy *p, const struct rewrap_input *in,
                 char *err, size_t errlen)
{
    if (in->msg == NULL && in->len > 0)
        return sr_err(err, errlen, SR_EINVAL, "no message");
    if (in->code == NULL || in->code[0] == '\0' || strlen(in->code) >= CODE_MAX)
        return sr_err(err, errlen, SR_EINVAL, "bad message code");
    for (const char *s = in->code; *s; s++)
        if (*s <= 0x20 || *s >= 0x7f || *s == '<' || *s == '>' || *s == '@')
            return sr_err(err, errlen, SR_EINVAL, "bad message code");
    if (in->rcpt == NULL || !header_safe(in->rcpt) ||
        strlen(in->rcpt) > TOKEN_RCPT_MAX)
        return sr_err(err, errlen, SR_EINVAL, "bad recipient");
    if (p->hmac_key == NULL || p->hmac_key_len < TOKEN_KEY_MIN)
        return sr_err(err, errlen, SR_EINVAL, "policy HMAC key too short");
    if (p->bounce_domain == NULL || p->bounce_domain[0] == '\0')
        return sr_err(err, errlen, SR_EINVAL, "policy has no bounce domain");
    if (!fbl_ok(p->customer_id) || !fbl_ok(p->feedback_campaign) ||
        !fbl_ok(p->feedback_customer))
        return sr_err(err, errlen, SR_EINVAL,
                      "policy Feedback-ID parts must be one-line, no ':'");
    if (p->bulk) {
        if (!url_base_ok(p->unsubscribe_url_base))
            return sr_err(err, errlen, SR_EINVAL,
                          "bulk policy needs an http(s) unsubscribe URL");
        if (p->unsubscribe_mailto && p->unsubscribe_mailto[0] &&
            !mailto_ok(p->unsubscribe_mailto))
            return sr_err(err, errlen, SR_EINVAL,
                          "bad unsubscribe mailto address");
    }
    if (p->tracking && !url_base_ok(p->tracking_url_base))
        return sr_err(err, errlen, SR_EINVAL,
                      "tracking policy needs an http(s) tracking URL");
    return 0;
}

void rewrap_policy_free(struct rewrap_policy *p)
{
    free(p->customer_id);
    free(p->bounce_domain);
    free(p->feedback_campaign);
    free(p->feedback_customer);
    for (size_t i = 0; i < p->n_headers_to_remove; i++)
        free(p->headers_to_remove[i]);
    free(p->headers_to_remove);
    free(p->unsubscribe_mailto);
    free(p->unsubscribe_url_base);
    free(p->tracking_url_base);
    for (size_t i = 0; i < p->n_tracking_exclude; i++)
        free(p->tracking_exclude[i]);
    free(p->tracking_exclude);
    if (p->hmac_key != NULL)
        memset(p->hmac_key, 0, p->hmac_key_len);
    free(p->hmac_key);
    memset(p, 0, sizeof *p);
}

void rewrap_result_free(struct rewrap_result *res)
{
    free(res->msg);
    for (size_t i = 0; i < res->n_links; i++)
        free(res->links[i]);
    free(res->links);
    memset(res, 0, sizeof *res);
}

static void ctx_free(struct ctx *c)
{
    for (size_t i = 0; i < c->n_edits; i++)
        free(c->edits[i].text);
    free(c->edits);
    for (size_t i = 0; i < c->n_links; i++)
        free(c->links[i]);
    free(c->links);
    free(c->open_token);
}

int rewrap_message(const struct rewrap_policy *p, const struct rewrap_input *in,
                   struct rewrap_result *res, char *err, size_t errlen)
{
    memset(res, 0, sizeof *res);
    int rc = check(p, in, err, errlen);
    if (rc != 0)
        return rc;
    rc = verp_build(in->code, in->rcpt_index, p->bounce_domain, p->hmac_key,
                    p->hmac_key_len, res->envelope_sender,
                    sizeof res->envelope_sender, err, errlen);
    if (rc != 0)
        return rc;
    rewrap_global_init();

    struct buf norm = {0}, out = {0};
    struct header h = {0};
    struct ctx c = {0};
    if (normalize(in->msg, in->len, &norm) != 0 ||
        parse_header(norm.p, norm.len, &h) != 0) {
        rc = sr_err(err, errlen, SR_ENOMEM, "out of memory");
        goto done;
    }
    c.p = p;
    c.in = in;
    c.m = norm.p;
    c.len = norm.len;
    c.body_start = h.body_start;

    if (!h.ok) {
        res->body = REWRAP_BODY_UNPARSED;
        snprintf(res->reason, sizeof res->reason, "%s", h.why);
        new_fields(&c, raw_has_field(norm.p, norm.len, "Message-ID"),
                   raw_has_field(norm.p, norm.len, "Date"), &out);
        buf_add(&out, norm.p, norm.len);
    } else {
        bool parsed = true;
        if (p->tracking) {
            parsed = collect_edits(&c);
            if (c.err) {
                rc = sr_err(err, errlen, c.err, "out of memory");
                goto done;
            }
        }
        if (!parsed) {
            res->body = REWRAP_BODY_UNPARSED;
            for (size_t i = 0; i < c.n_edits; i++)
                free(c.edits[i].text);
            c.n_edits = 0;
            drop_links(&c, 0);
            c.n_pixels = 0;
        } else if (c.n_edits > 0)
            res->body = REWRAP_BODY_MODIFIED;
        else {
            res->body = REWRAP_BODY_KEPT;
            if (!p->tracking)
                note(&c, "tracking disabled");
            else if (c.n_html == 0 && c.n_text == 0)
                note(&c, "no HTML part to track");
            else
                note(&c, "nothing to rewrite");
        }
        snprintf(res->reason, sizeof res->reason, "%s", c.notes);

        bool has_mid = false, has_date = false;
        for (size_t i = 0; i < h.n; i++) {
            const struct field *f = &h.f[i];
            const char *name = norm.p + f->start;
            if (removed(p, name, f->name_len))
                continue;
            has_mid |= eq_ci(name, f->name_len, "Message-ID");
            has_date |= eq_ci(name, f->name_len, "Date");
            buf_add(&out, name, f->end - f->start);
            if (f->end - f->start < 2 || norm.p[f->end - 1] != '\n')
                buf_add(&out, "\r\n", 2);
        }
        new_fields(&c, has_mid, has_date, &out);
        buf_add(&out, "\r\n", 2);
        size_t at = h.body_start;
        for (size_t i = 0; i < c.n_edits; i++) {
            buf_add(&out, norm.p + at, c.edits[i].start - at);
            buf_add(&out, c.edits[i].text, c.edits[i].len);
            at = c.edits[i].end;
        }
        buf_add(&out, norm.p + at, norm.len - at);
        /* a leaf that ended the message without a line end (say an
         * empty one given a pixel) */
        if (!out.err && out.p[out.len - 1] != '\n')
            buf_add(&out, "\r\n", 2);
    }
    if (out.err) {
        rc = sr_err(err, errlen, out.err, "out of memory");
        goto done;
    }
    res->msg = out.p;
    res->len = out.len;
    memset(&out, 0, sizeof out);
    res->links = c.links;
    res->n_links = c.n_links;
    c.links = NULL;
    c.n_links = 0;
    res->n_pixels = c.n_pixels;
done:
    if (rc != 0)
        rewrap_result_free(res);
    ctx_free(&c);
    buf_free(&norm);
    buf_free(&out);
    free(h.f);
    return rc;
}
