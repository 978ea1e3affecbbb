"""The engine end to end: mail injected into the cluster leaves re-wrapped
(VERP sender, stamped headers, List-Unsubscribe, tracked links, an open
pixel) and DKIM-signed with RSA and Ed25519 keys (verified by Debian's
dkimpy, a verifier we did not write); the tracking endpoints of any node
redirect, count opens and clicks, take RFC 8058 one-click unsubscribes;
each becomes an event on every node; a suppressed address gets no more
mail."""
import email
import html.parser
import re
import time
import urllib.error
import urllib.request

import dkim
import pytest

from smtp_util import code_of, send
from test_delivery import apply_policy, dest, wait_states  # noqa: F401
from test_rewrap import dnsfunc_for, keys  # noqa: F401

SECRET = "a1" * 32
EXCLUDED = "https://acme.example/account"


def engine_policy(d, keys, base):
    return {
        "customers": [{
            "name": "default", "networks": ["127.0.0.1/32"],
            "rewrap": {
                "bounce_domain": "bounces.acme.example",
                "feedback_campaign": "spring",
                "remove_headers": ["X-Internal"],
                "bulk": True, "unsubscribe_mailto": "unsub@acme.example",
                "tracking": True, "tracking_exclude": [EXCLUDED],
                "dkim": [{"domain": "acme.example", "selector": s,
                          "key_file": keys[s][0]} for s in ("rsa2048", "ed")],
            }}],
        "tracking": {"base_url": base, "secret": SECRET},
        "routes": [{"domain": "*", "host": d.address, "tls": "none"}]}


HTML = ('<html><body><p>Hello</p>'
        '<a href="https://example.org/a?x=1&amp;y=2">one</a> '
        "<A HREF='http://example.net/b'>two</A> "
        '<a href="mailto:help@acme.example">mail</a> '
        '<a href="%s/settings">account</a>'
        '</body></html>' % EXCLUDED)
LINKS = ["https://example.org/a?x=1&y=2", "http://example.net/b"]


def message(subject="spring sale"):
    return ("From: Acme <news@acme.example>\r\n"
            "To: someone@dest.example\r\n"
            "Subject: %s\r\n"
            "X-Internal: crm-42\r\n"
            "MIME-Version: 1.0\r\n"
            'Content-Type: multipart/alternative; boundary="b1"\r\n'
            "\r\n--b1\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n"
            "Hello, see https://example.org/a\r\n"
            "\r\n--b1\r\n"
            "Content-Type: text/html; charset=utf-8\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            "%s\r\n"
            "--b1--\r\n" % (subject, HTML.replace("=", "=3D")))


class Hrefs(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs, self.imgs = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and "href" in a:
            self.hrefs.append(a["href"])
        if tag == "img" and "src" in a:
            self.imgs.append(a["src"])


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None


def fetch(url, data=None, headers=None):
    opener = urllib.request.build_opener(NoRedirect)
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        r = opener.open(req, timeout=10)
        return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def events(node, code):
    st, ev = node.api("GET", "/v1/events?after=0&limit=1000")
    assert st == 200
    return [e for e in ev["events"] if e["code"] == code]


def wait_events(nodes, code, pred, what, timeout=20):
    deadline = time.time() + timeout
    for n in nodes:
        while not pred(events(n, code)):
            assert time.time() < deadline, (what, n.id, events(n, code))
            time.sleep(0.1)


def test_rewrap_sign_track_unsubscribe(make_cluster, dest, keys):
    d = dest()
    c = make_cluster(n=3, delivery={"enabled": "true"}).start()
    base = "http://127.0.0.1:%d" % c.nodes[0].track_port
    apply_policy(c, engine_policy(d, keys, base))
    code = code_of(send(c.nodes[1].smtp_port, sender="news@acme.example",
                        rcpts=("r1@dest.example", "r2@dest.example"),
                        msg=message())[1])
    got = d.wait(2)
    # one message per recipient: each has its own VERP sender and tokens
    assert sorted(r for _, rs, _ in got for r in rs) == \
        ["r1@dest.example", "r2@dest.example"]
    by_rcpt = {rs[0]: (f, raw) for f, rs, raw in got}
    senders = {f for f, _ in by_rcpt.values()}
    assert len(senders) == 2
    for f in senders:
        assert re.fullmatch(r"b-[a-z0-9_=]+-[01]-[a-z2-7]{8}"
                            r"@bounces\.acme\.example", f), f
    for rcpt, (f, raw) in by_rcpt.items():
        m = email.message_from_bytes(raw)
        assert m["X-SmartRelay-ID"] == code
        assert m["X-Internal"] is None
        assert "spring" in m["Feedback-ID"]
        assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert "<mailto:unsub@acme.example?subject=unsubscribe-" in \
            m["List-Unsubscribe"]
        assert m["Subject"] == "spring sale"
        # both signatures verify with dkimpy; a changed body breaks them
        sigs = m.get_all("DKIM-Signature")
        assert len(sigs) == 2
        assert {re.search(r"\ba=([\w-]+)", s).group(1) for s in sigs} == \
            {"rsa-sha256", "ed25519-sha256"}
        for idx in (0, 1):
            assert dkim.DKIM(raw).verify(idx=idx,
                                         dnsfunc=dnsfunc_for(keys)), idx
        bad = raw.replace(b"Hello", b"Hellp", 1)
        for idx in (0, 1):
            try:
                ok = dkim.DKIM(bad).verify(idx=idx, dnsfunc=dnsfunc_for(keys))
            except dkim.ValidationError:
                ok = False
            assert not ok, idx
    # the text part is unchanged; the HTML links point to the tracker
    m = email.message_from_bytes(by_rcpt["r1@dest.example"][1])
    parts = {p.get_content_type(): p for p in m.walk()}
    assert parts["text/plain"].get_payload(decode=True) == \
        b"Hello, see https://example.org/a\r\n"
    h = Hrefs()
    h.feed(parts["text/html"].get_payload(decode=True).decode())
    tracked = [u for u in h.hrefs if u.startswith(base + "/c/")]
    assert len(tracked) == 2, h.hrefs
    assert "mailto:help@acme.example" in h.hrefs
    assert EXCLUDED + "/settings" in h.hrefs
    assert len(h.imgs) == 1 and h.imgs[0].startswith(base + "/o/")
    # any node's endpoint: clicks redirect to the original URL, byte for
    # byte; the pixel is a GIF
    other = "http://127.0.0.1:%d" % c.nodes[2].track_port
    for url, orig in zip(tracked, LINKS):
        st, hd, _ = fetch(url.replace(base, other))
        assert st == 302 and hd["Location"] == orig, (st, hd)
    st, hd, body = fetch(h.imgs[0].replace(base, other))
    assert st == 200 and hd["Content-Type"] == "image/gif"
    assert body.startswith(b"GIF89a")
    # tampered and malformed tokens are refused and record nothing
    tok = tracked[0].rsplit("/", 1)[1]
    flipped = tok[:10] + ("A" if tok[10] != "A" else "B") + tok[11:]
    assert fetch(other + "/c/" + flipped)[0] == 404
    assert fetch(other + "/c/" + "!!!")[0] == 400
    assert fetch(other + "/o/" + tok)[0] in (400, 404)  # a click token
    # opens and clicks are events on every node
    wait_events(c.nodes, code, lambda ev: len(
        [e for e in ev if e["type"] == "click"]) == 2 and len(
        [e for e in ev if e["type"] == "open"]) == 1, "open/click")
    clicks = [e for e in events(c.nodes[1], code) if e["type"] == "click"]
    assert sorted(e["url"] for e in clicks) == sorted(LINKS)
    assert {e["address"] for e in clicks} == {"r1@dest.example"}
    # one-click unsubscribe as Gmail sends it (RFC 8058)
    lu = email.message_from_bytes(by_rcpt["r1@dest.example"][1])[
        "List-Unsubscribe"]
    unsub = re.search(r"<(http[^>]+)>", lu).group(1)
    assert unsub.startswith(base + "/u/")
    st, _, page = fetch(unsub)  # a GET only shows the form
    assert st == 200 and b'method="post"' in page
    st, _, _ = fetch(unsub.replace(base, other),
                     data=b"List-Unsubscribe=One-Click",
                     headers={"Content-Type":
                              "application/x-www-form-urlencoded"})
    assert st == 200
    wait_events(c.nodes, code, lambda ev: [
        e["address"] for e in ev if e["type"] == "unsubscribe"] ==
        ["r1@dest.example"], "unsubscribe")
    # later mail to the suppressed address is not sent; the other goes
    code2 = code_of(send(c.nodes[0].smtp_port, sender="news@acme.example",
                         rcpts=("r1@dest.example", "r2@dest.example"),
                         msg=message("second"))[1])
    wait_states(c.nodes[0], code2, ["suppressed", "delivered"])
    assert [e["type"] for e in events(c.nodes[0], code2)
            if e["address"] == "r1@dest.example"] == ["suppressed"]
    assert sorted(r for _, rs, _ in d.received() for r in rs) == \
        ["r1@dest.example", "r2@dest.example", "r2@dest.example"]


def test_unparseable_body_goes_out_signed_and_the_event_says_why(
        make_cluster, dest, keys):
    import os
    d = dest()
    c = make_cluster(n=3, delivery={"enabled": "true"}).start()
    base = "http://127.0.0.1:%d" % c.nodes[0].track_port
    apply_policy(c, engine_policy(d, keys, base))
    path = os.path.join(os.path.dirname(__file__), "corpus", "rewrap",
                        "malformed.eml")
    with open(path, "rb") as f:
        orig = f.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    code = code_of(send(c.nodes[0].smtp_port, sender="news@acme.example",
                        rcpts=("m@dest.example",), msg=orig)[1])
    (_, _, raw), = d.wait(1)
    for idx in (0, 1):
        assert dkim.DKIM(raw).verify(idx=idx, dnsfunc=dnsfunc_for(keys)), idx
    # the body went out as it came (after our header fields)
    body = orig.split(b"\r\n\r\n", 1)[1]
    if not body.endswith(b"\r\n"):
        body += b"\r\n"  # as smtplib sends it
    assert raw.split(b"\r\n\r\n", 1)[1] == body
    wait_events(c.nodes[:1], code, lambda ev: [e["type"] for e in ev] ==
                ["delivered"], "delivered")
    (e,) = events(c.nodes[0], code)
    assert "body kept" in e["reply"], e


def test_tracking_endpoints_over_tls(make_cluster, dest, keys):
    """With tracking.tls_cert the endpoints speak HTTPS only; links written
    with an https base work end to end."""
    import ssl
    d = dest()
    c = make_cluster(n=3, delivery={"enabled": "true"},
                     tracking_tls=True).start()
    base = "https://127.0.0.1:%d" % c.nodes[0].track_port
    apply_policy(c, engine_policy(d, keys, base))
    send(c.nodes[1].smtp_port, sender="news@acme.example",
         rcpts=("t@dest.example",), msg=message())
    (_, _, raw), = d.wait(1)
    m = email.message_from_bytes(raw)
    h = Hrefs()
    for p in m.walk():
        if p.get_content_type() == "text/html":
            h.feed(p.get_payload(decode=True).decode())
    pixel = h.imgs[0]
    assert pixel.startswith(base + "/o/")
    other = "https://127.0.0.1:%d" % c.nodes[1].track_port
    ctx = ssl.create_default_context(cafile=c.admin_cert)
    r = urllib.request.urlopen(pixel.replace(base, other), context=ctx,
                               timeout=10)
    assert r.status == 200 and r.read().startswith(b"GIF89a")
    # plaintext to the TLS port gets no HTTP answer
    with pytest.raises(Exception) as ei:
        urllib.request.urlopen(pixel.replace(base, other).replace(
            "https://", "http://"), timeout=5).read()
    assert not isinstance(ei.value, urllib.error.HTTPError), ei.value
