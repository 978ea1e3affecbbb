"""The re-wrap engine end to end, through tests/tools/rewrap_tool: every
message of corpus/rewrap/ is re-wrapped with tracking and List-Unsubscribe
and signed with an RSA-2048 and an Ed25519 key made here with openssl.

Checked with code we did not write: both DKIM signatures verify with
dkimpy (Debian's python3-dkim, keys served by a dnsfunc); Python's email
package sees the same MIME structure, the same attachments and the same
decoded text as in the original apart from the rewritten links and the
pixel; every http(s) link of the HTML (found by html.parser) is in the
link list and its click token decodes to that URL byte for byte; a
tampered token is refused. Messages we cannot parse keep their bytes.
"""
import base64
import email
import email.policy
import html.parser
import json
import os
import re
import subprocess

import dkim
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus", "rewrap")
BUILD = os.environ.get("SMARTRELAY_BUILD",
                       os.path.join(HERE, "..", "..", "build"))
TOOL = os.path.join(BUILD, "tests", "tools", "rewrap_tool")
BASE = "https://t.acme.example"
EXCLUDED = "https://acme.example/no-track"
REMOVED = ["X-Internal-Campaign"]
CODE = "07/3C-00042-6B0CDB31"
RCPT = "bob@example.org"

ALL = sorted(f for f in os.listdir(CORPUS) if f.endswith(".eml"))
PARSEABLE = [f for f in ALL if not f.startswith("malformed")]


def run(*args, data=None, check=True):
    return subprocess.run([TOOL, *args], input=data, capture_output=True,
                          check=check, timeout=60)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    out = {}
    for sel, alg in (("rsa2048", ["-algorithm", "RSA", "-pkeyopt",
                                  "rsa_keygen_bits:2048"]),
                     ("ed", ["-algorithm", "ed25519"])):
        priv = d / (sel + ".pem")
        subprocess.run(["openssl", "genpkey", *alg, "-out", str(priv)],
                       check=True, capture_output=True)
        der = subprocess.run(["openssl", "pkey", "-in", str(priv), "-pubout",
                              "-outform", "DER"], check=True,
                             capture_output=True).stdout
        if sel == "ed":
            # RFC 8463: the TXT record holds the raw 32-byte key, not SPKI
            p = base64.b64encode(der[-32:]).decode()
            txt = "v=DKIM1; k=ed25519; p=" + p
        else:
            txt = "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()
        out[sel] = (str(priv), txt)
    return out


@pytest.fixture(scope="module")
def policy(tmp_path_factory, keys):
    p = {
        "customer_id": "acme",
        "bounce_domain": "bounce.acme.example",
        "feedback_campaign": "spring",
        "headers_to_remove": REMOVED,
        "bulk": True,
        "unsubscribe_mailto": "unsub@acme.example",
        "unsubscribe_url_base": BASE,
        "tracking": True,
        "tracking_url_base": BASE,
        "tracking_exclude": [EXCLUDED],
        "hmac_key": "5a" * 32,
        "dkim": [
            {"domain": "acme.example", "selector": "rsa2048",
             "key_file": keys["rsa2048"][0]},
            {"domain": "acme.example", "selector": "ed",
             "key_file": keys["ed"][0]},
        ],
    }
    path = tmp_path_factory.mktemp("policy") / "policy.json"
    path.write_text(json.dumps(p))
    return str(path)


def rewrap(policy, name, tmp_path):
    with open(os.path.join(CORPUS, name), "rb") as f:
        orig = f.read()
    res = tmp_path / "result.json"
    out = run("--policy", policy, "--code", CODE, "--rcpt", RCPT,
              "--rcpt-index", "3", "--result", str(res), data=orig).stdout
    return orig, out, json.loads(res.read_text())


def dnsfunc_for(keys):
    def dnsfunc(name, timeout=5):
        for sel, (_, txt) in keys.items():
            if name == ("%s._domainkey.acme.example." % sel).encode():
                return txt.encode()
        return None
    return dnsfunc


def verifies(msg, idx, keys):
    """dkimpy's verdict on signature idx (it raises on some failures)."""
    try:
        return dkim.DKIM(msg).verify(idx=idx, dnsfunc=dnsfunc_for(keys))
    except dkim.DKIMException:
        return False


def leaves(msg):
    return [p for p in msg.walk() if not p.is_multipart()]


class Links(html.parser.HTMLParser):
    """The href of every <a> tag, as a browser reads it."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.hrefs = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            for k, v in attrs:
                if k == "href":
                    self.hrefs.append(v)
                    break


def hrefs(text):
    p = Links()
    p.feed(text)
    p.close()
    return p.hrefs


def trackable(url):
    u = url.strip(" \t\r\n\f")
    return (u.lower().startswith(("http://", "https://"))
            and not u.lower().startswith(EXCLUDED.lower()))


HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)("[^"]*"|'[^']*'|[^\s>]+)""",
                  re.I | re.S)
PIXEL = re.compile(r'<img src="' + re.escape(BASE) + r'/o/([A-Za-z0-9_-]+)" '
                   r'width="1" height="1" alt="" style="display:none">')


def neutral(text, tracked_only):
    """HTML with the values of trackable hrefs replaced by LINK."""
    def sub(m):
        v = m.group(2).strip("\"'")
        if tracked_only:
            if not v.startswith(BASE + "/c/"):
                return m.group(0)
        elif not trackable(html.unescape(v)):
            return m.group(0)
        q = m.group(2)[0] if m.group(2)[0] in "\"'" else ""
        return m.group(1) + q + "LINK" + q
    return HREF.sub(sub, text)


def decode_token(policy, tok, check=True):
    return run("--policy", policy, "--decode", tok, check=check)


@pytest.mark.parametrize("name", PARSEABLE)
def test_dkim_verifies(policy, keys, name, tmp_path):
    _, out, res = rewrap(policy, name, tmp_path)
    assert res["signatures"] == 2, res
    assert out.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; ")
    assert verifies(out, 0, keys), name
    assert verifies(out, 1, keys), name
    algs = re.findall(rb"a=([a-z0-9-]+);", out.split(b"\r\n\r\n")[0])
    assert algs[:2] == [b"rsa-sha256", b"ed25519-sha256"]
    # a changed body breaks both
    bad = out.replace(b"</body>", b"</BODY>", 1) if b"</body>" in out \
        else out + b"x\r\n"
    assert not verifies(bad, 0, keys)
    assert not verifies(bad, 1, keys)


@pytest.mark.parametrize("name", PARSEABLE)
def test_mime_round_trip(policy, name, tmp_path):
    orig, out, res = rewrap(policy, name, tmp_path)
    assert b"\n" not in out.replace(b"\r\n", b"")
    a = email.message_from_bytes(orig, policy=email.policy.compat32)
    b = email.message_from_bytes(out, policy=email.policy.compat32)
    # headers: every original field kept byte for byte, but the removed
    for k, v in a.items():
        if k in REMOVED:
            assert b[k] is None
        else:
            assert (k, v) in b.items(), k
    assert b["X-SmartRelay-ID"] == CODE
    assert b["Feedback-ID"] == "spring:acme:smartrelay"
    assert b["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # same structure
    assert [p.get_content_type() for p in a.walk()] == \
        [p.get_content_type() for p in b.walk()]
    want_links = []
    pixels = 0
    for pa, pb in zip(leaves(a), leaves(b)):
        da, db = pa.get_payload(decode=True), pb.get_payload(decode=True)
        assert pa.get("Content-Transfer-Encoding") == \
            pb.get("Content-Transfer-Encoding")
        assert pa.get_content_charset() == pb.get_content_charset()
        if pa.get_content_type() != "text/html" or \
                (pa.get("Content-Disposition") or "").startswith("attachment"):
            assert da == db, pa.get_content_type()
            continue
        cs = pa.get_content_charset() or "us-ascii"
        ta, tb = da.decode(cs), db.decode(cs)
        want_links += [h.strip(" \t\r\n\f") for h in hrefs(ta)
                       if trackable(h)]
        n = len(PIXEL.findall(tb))
        assert n == 1
        pixels += n
        assert neutral(ta, False) == neutral(PIXEL.sub("", tb), True)
    got = [bytes.fromhex(x) for x in res["links"]]
    assert got == [u.encode("utf-8") for u in want_links]
    assert res["pixels"] == pixels
    assert res["body"] == ("modified" if want_links or pixels else "kept")


@pytest.mark.parametrize("name", PARSEABLE)
def test_tokens(policy, name, tmp_path):
    _, out, res = rewrap(policy, name, tmp_path)
    m = email.message_from_bytes(out, policy=email.policy.compat32)
    toks = []
    for p in leaves(m):
        if p.get_content_type() == "text/html":
            t = p.get_payload(decode=True).decode(
                p.get_content_charset() or "us-ascii")
            toks += [h[len(BASE) + 3:] for h in hrefs(t)
                     if h.startswith(BASE + "/c/")]
    links = [bytes.fromhex(x) for x in res["links"]]
    assert len(toks) == len(links)
    for i, tok in enumerate(toks):
        d = json.loads(decode_token(policy, tok).stdout)
        assert d["kind"] == "click"
        assert d["code"] == CODE and d["rcpt_index"] == 3
        assert d["link_index"] == i
        assert bytes.fromhex(d["url_hex"]) == links[i]
        # a tampered token is refused
        for pos in (0, len(tok) // 2, len(tok) - 1):
            c = "A" if tok[pos] != "A" else "B"
            bad = tok[:pos] + c + tok[pos + 1:]
            r = decode_token(policy, bad, check=False)
            assert r.returncode == 1 and b"refused" in r.stderr
        assert decode_token(policy, tok[:-2], check=False).returncode == 1
    # unsubscribe: the same token in both URIs, for this recipient
    lu = m["List-Unsubscribe"]
    t1 = re.search(r"subject=unsubscribe-([A-Za-z0-9_-]+)>", lu).group(1)
    t2 = re.search(re.escape(BASE) + r"/u/([A-Za-z0-9_-]+)>", lu).group(1)
    assert t1 == t2
    d = json.loads(decode_token(policy, t1).stdout)
    assert d["kind"] == "unsubscribe" and d["rcpt"] == RCPT
    # the VERP envelope sender is ours and says which recipient
    v = json.loads(run("--policy", policy, "--verp",
                       res["envelope_sender"].upper()).stdout)
    assert v == {"code": CODE, "rcpt_index": 3}


def test_malformed_mime_kept(policy, keys, tmp_path):
    orig, out, res = rewrap(policy, "malformed.eml", tmp_path)
    assert res["body"] in ("kept", "unparsed") and res["reason"]
    assert res["links"] == []
    body = orig.split(b"\r\n\r\n", 1)[1]
    # the body byte for byte, with the line end SMTP adds
    assert out.endswith(b"\r\n\r\n" + body + b"\r\n")
    assert res["signatures"] == 2
    assert verifies(out, 0, keys)
    assert verifies(out, 1, keys)


def test_malformed_header_passthrough(policy, tmp_path):
    orig, out, res = rewrap(policy, "malformed_header.eml", tmp_path)
    assert res["body"] == "unparsed"
    assert res["reason"] == "header line 3 is not a field"
    assert res["links"] == []
    # every byte kept, our fields prepended; opendkim cannot sign it
    assert out.endswith(orig)
    head = out[:len(out) - len(orig)]
    assert b"X-SmartRelay-ID: " + CODE.encode() + b"\r\n" in head
    assert b"Message-ID: <" + CODE.encode() + b"@bounce.acme.example>" in head
    assert "dkim_error" in res and res["signatures"] == 0
