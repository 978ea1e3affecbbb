"""Email to SMS end to end: mail to +NUMBER@<an SMS domain> is converted,
encoded (GSM 03.38 with its extension table, or UCS-2), split with a UDH
or sar_* TLVs, and submitted over SMPP to an SMSC simulator built on the
npm `smpp` package (tests/integration/smsc/); its delivery receipts, on
whichever node's bind they arrive, make the recipient delivered on every
node."""
import smtplib
import time

import pytest

from smsc import smsc  # noqa: F401
from smtp_util import code_of, send
from test_delivery import (apply_policy, wait_shards_spread,  # noqa: F401
                           wait_states)

FAST = {"enabled": "true", "retry_min_s": 1, "retry_max_s": 2}


def sms_policy(*smscs, sender="ACME", concat="udh", max_parts=5,
               too_long=None, routes=None):
    cust = {"domains": ["sms.example.net"], "sender": sender,
            "max_parts": max_parts}
    if too_long:
        cust["too_long"] = too_long
    return {
        "customers": [{"name": "default", "networks": ["127.0.0.1/32"],
                       "sms": cust}],
        "smscs": [{"name": name, "host": s.address, "system_id": "esme",
                   "password": "secret", "id_format": "hex",
                   "receipt_id_format": "dec", "concat": concat}
                  for name, s in smscs],
        "sms_routes": routes or [{"prefix": "+", "smscs": [
            {"name": name, "priority": i + 1}
            for i, (name, _) in enumerate(smscs)]}]}


def mail(text, subject="hi", charset="utf-8"):
    return ("From: shop@acme.example\r\nTo: x@sms.example.net\r\n"
            "Subject: %s\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=%s\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n%s\r\n"
            % (subject, charset, text)).encode("utf-8")


GSM = {c: i for i, c in enumerate(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")}
GSM_EXT = {"^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D,
           "]": 0x3E, "|": 0x40, "€": 0x65, "\f": 0x0A}


def gsm(text):
    out = bytearray()
    for c in text:
        if c in GSM:
            out.append(GSM[c])
        else:
            out += bytes([0x1B, GSM_EXT[c]])
    return bytes(out)


def wait_sms_policy(c, key, value, timeout=20):
    """Until every node has applied a policy whose first customer's SMS
    settings have key = value."""
    deadline = time.time() + timeout
    for n in c.nodes:
        while n.api("GET", "/v1/policy")[1]["customers"][0]["sms"].get(
                key) != value:
            assert time.time() < deadline, (n.id, key)
            time.sleep(0.05)


def events(node, code):
    st, ev = node.api("GET", "/v1/events?after=0&limit=1000")
    return [e for e in ev["events"] if e["code"] == code]


@pytest.fixture
def setup(make_cluster, smsc):  # noqa: F811
    def make(n_smsc=1, **kw):
        sims = [smsc(id_format="hex", receipt_id_format="dec")
                for _ in range(n_smsc)]
        c = make_cluster(n=3, delivery=FAST).start()
        names = ["smsc-%s" % chr(ord("a") + i) for i in range(n_smsc)]
        apply_policy(c, sms_policy(*zip(names, sims), **kw))
        for s in sims:
            s.wait_sessions(3)  # every node binds
        return c, sims
    return make


def test_gsm_text_becomes_one_sms_and_its_receipt_delivers_it(setup):
    c, (s,) = setup()
    # a number that is not E.164 is refused at RCPT
    cl = smtplib.SMTP("127.0.0.1", c.nodes[0].smtp_port, timeout=10)
    cl.ehlo("t")
    cl.mail("shop@acme.example")
    code, text = cl.rcpt("12@sms.example.net")
    assert code == 550 and b"5.1.3" in text, (code, text)
    code, text = cl.rcpt("0039333.1234567@sms.example.net")
    assert code == 250
    cl.quit()
    body = "Sale {today} only: 10€ off [code ~A^B]"
    code = code_of(send(c.nodes[1].smtp_port, sender="shop@acme.example",
                        rcpts=("+393331234567@sms.example.net",),
                        msg=mail(body))[1])
    (sub,) = s.wait_submits(1)
    assert sub["source_addr"] == "ACME"
    assert (sub["source_addr_ton"], sub["source_addr_npi"]) == (5, 0)
    assert sub["destination_addr"] == "393331234567"
    assert (sub["dest_addr_ton"], sub["dest_addr_npi"]) == (1, 1)
    assert sub["data_coding"] == 0 and sub["esm_class"] & 0x40 == 0
    assert sub["registered_delivery"] & 1
    assert bytes.fromhex(sub["short_message"]) == gsm(body)
    # the receipt (decimal id for a hex submit id) delivers it everywhere
    for n in c.nodes:
        rs = wait_states(n, code, ["delivered"])
        assert rs[0]["last_reply"] == "SMS delivered: all 1 parts", rs
    types = [e["type"] for e in events(c.nodes[0], code)]
    assert types == ["submitted", "receipt", "delivered"], types
    out = c.nodes[2].ctl("message", "show", code).stdout
    assert "delivered" in out


@pytest.mark.parametrize("concat", ["udh", "sar"])
def test_long_texts_are_split_gsm_and_ucs2(setup, concat):
    c, (s,) = setup(concat=concat)
    long_gsm = "".join("line %03d ok. " % i for i in range(60))[:700]  # 5 pt
    ucs2 = "Привет, мир! " * 10  # 130 UCS-2 units: 2 parts of 67
    c1 = code_of(send(c.nodes[0].smtp_port, sender="shop@acme.example",
                      rcpts=("+4915112345678@sms.example.net",),
                      msg=mail(long_gsm))[1])
    subs = s.wait_submits(5)
    assert len(subs) == 5
    c2 = code_of(send(c.nodes[0].smtp_port, sender="shop@acme.example",
                      rcpts=("+4915112345679@sms.example.net",),
                      msg=mail(ucs2))[1])
    subs = s.wait_submits(7)
    g = [x for x in subs if x["destination_addr"] == "4915112345678"]
    u = [x for x in subs if x["destination_addr"] == "4915112345679"]
    assert len(g) == 5 and len(u) == 2
    assert {x["data_coding"] for x in g} == {0}
    assert {x["data_coding"] for x in u} == {8}
    text = b""
    for i, x in enumerate(g):
        sm = bytes.fromhex(x["short_message"])
        if concat == "udh":
            assert x["esm_class"] & 0x40
            assert sm[:3] == b"\x05\x00\x03" and sm[4:6] == bytes([5, i + 1])
            sm = sm[6:]
        else:
            assert x["esm_class"] & 0x40 == 0
            assert (x["sar_total_segments"], x["sar_segment_seqnum"]) == \
                (5, i + 1)
        assert len(sm) <= 153
        text += sm
    assert text == gsm(long_gsm)
    utext = b""
    for x in u:
        sm = bytes.fromhex(x["short_message"])
        if concat == "udh":
            sm = sm[6:]
        assert len(sm) <= 134
        utext += sm
    assert utext.decode("utf-16-be") == ucs2.rstrip()
    for code in (c1, c2):
        wait_states(c.nodes[0], code, ["delivered"])
    ev = events(c.nodes[0], c1)
    assert [e["type"] for e in ev].count("receipt") == 5


def test_receipt_before_the_response_and_throttling(setup):
    c, (s,) = setup()
    s.mode(receipt_before_response=True)
    code = code_of(send(c.nodes[0].smtp_port, sender="shop@acme.example",
                        rcpts=("+33612345678@sms.example.net",),
                        msg=mail("early receipt"))[1])
    wait_states(c.nodes[0], code, ["delivered"])
    # throttled: deferred, retried, nothing lost
    s.mode(receipt_before_response=False, throttle=True)
    code = code_of(send(c.nodes[0].smtp_port, sender="shop@acme.example",
                        rcpts=("+33612345679@sms.example.net",),
                        msg=mail("slow down"))[1])
    rs = wait_states(c.nodes[0], code, ["deferred"])
    assert "throttled" in rs[0]["last_reply"], rs
    s.mode(throttle=False)
    wait_states(c.nodes[0], code, ["delivered"], timeout=30)
    accepted = [x for x in s.accepted()
                if x["destination_addr"] == "33612345679"]
    assert len(accepted) == 1


def test_failover_to_the_next_smsc_and_back(setup, smsc):  # noqa: F811
    c, (a, b) = setup(n_smsc=2)
    code = code_of(send(c.nodes[0].smtp_port, sender="shop@acme.example",
                        rcpts=("+447700900001@sms.example.net",),
                        msg=mail("via a"))[1])
    wait_states(c.nodes[0], code, ["delivered"])
    assert len(a.accepted()) == 1 and b.accepted() == []
    a.stop()
    code = code_of(send(c.nodes[0].smtp_port, sender="shop@acme.example",
                        rcpts=("+447700900002@sms.example.net",),
                        msg=mail("via b"))[1])
    wait_states(c.nodes[0], code, ["delivered"], timeout=30)
    assert [x["destination_addr"] for x in b.accepted()] == ["447700900002"]
    # smsc-a comes back on its port: the binds reconnect (backoff) and the
    # first choice carries the traffic again
    a2 = smsc(id_format="hex", receipt_id_format="dec", port=a.port)
    a2.wait_sessions(3, timeout=90)
    code = code_of(send(c.nodes[0].smtp_port, sender="shop@acme.example",
                        rcpts=("+447700900003@sms.example.net",),
                        msg=mail("via a again"))[1])
    wait_states(c.nodes[0], code, ["delivered"], timeout=30)
    assert [x["destination_addr"] for x in a2.accepted()] == ["447700900003"]
    assert len(b.accepted()) == 1


def test_contractual_share_and_route_views(setup):
    """smsc-a is the first choice (priority 1) but smsc-b must carry 30 % of
    the +39 traffic: over 1,000 SMS it gets 30 % within a few points; +44
    has only smsc-a. clusterctl shows the routes and picks for a number."""
    import json
    routes = [{"prefix": "+39", "smscs": [
                  {"name": "smsc-a", "priority": 1, "cost": 10},
                  {"name": "smsc-b", "priority": 2, "cost": 20,
                   "share": 30}]},
              {"prefix": "+44", "smscs": [{"name": "smsc-a"}]}]
    c, (a, b) = setup(n_smsc=2, routes=routes)
    for k in range(10):
        rcpts = ["+39333%07d@sms.example.net" % (k * 100 + i)
                 for i in range(100)]
        send(c.nodes[k % 3].smtp_port, sender="shop@acme.example",
             rcpts=rcpts, msg=mail("promo %d" % k))
    deadline = time.time() + 90
    while len(a.accepted()) + len(b.accepted()) < 1000:
        assert time.time() < deadline, (len(a.accepted()), len(b.accepted()))
        time.sleep(0.2)
    nb = len(b.accepted())
    assert 270 <= nb <= 330, nb
    assert len(a.accepted()) + nb == 1000
    # every submit was for +39; a +44 number goes to smsc-a only
    out = c.nodes[0].ctl("sms", "test", "+447700900123").stdout
    assert "route +44, via smsc-a" in out, out
    out = c.nodes[0].ctl("sms", "test", "+39 333 0000001").stdout
    assert "route +39" in out, out
    p = c.nodes[0].ctl("sms", "test", "not-a-number", check=False)
    assert p.returncode != 0
    sent = {}
    for n in c.nodes:
        rows = json.loads(n.ctl("-o", "json", "sms", "routes").stdout)
        assert {(r["prefix"], r["smsc"]) for r in rows["routes"]} == {
            ("+39", "smsc-a"), ("+39", "smsc-b"), ("+44", "smsc-a")}
        assert rows["binds_bound"] == 2
        for r in rows["routes"]:
            sent[(r["prefix"], r["smsc"])] = \
                sent.get((r["prefix"], r["smsc"]), 0) + r["sent"]
    assert sent[("+39", "smsc-b")] == nb
    out = c.nodes[1].ctl("sms", "routes").stdout
    assert "smsc-b" in out and "PRIORITY" in out


def test_owner_killed_mid_batch_every_sms_submitted(setup):
    """The node that owns the SMS domain's shard is SIGKILLed while it
    submits 300 SMS; another node takes the shard over. Every number gets
    its SMS; a number gets it twice only if its submit was accepted and the
    SUBMITTED result had not committed (the documented window)."""
    from test_queue_ops import shard_of
    c, (s,) = setup()
    owners = wait_shards_spread(c)
    owner = owners[shard_of("sms.example.net")]
    others = [n for n in c.nodes if n.id != owner]
    numbers = ["+4917%08d" % i for i in range(300)]
    for k in range(3):
        send(others[k % 2].smtp_port, sender="shop@acme.example",
             rcpts=[n + "@sms.example.net" for n in numbers[k * 100:
                                                           (k + 1) * 100]],
             msg=mail("batch %d" % k))
    deadline = time.time() + 30
    while len(s.accepted()) < 60:
        assert time.time() < deadline, len(s.accepted())
        time.sleep(0.01)
    c.node(owner).kill()
    deadline = time.time() + 60
    want = {n[1:] for n in numbers}
    while {x["destination_addr"] for x in s.accepted()} != want:
        assert time.time() < deadline, len(
            want - {x["destination_addr"] for x in s.accepted()})
        time.sleep(0.2)
    got = [x["destination_addr"] for x in s.accepted()]
    dups = sorted({a for a in got if got.count(a) > 1})
    print("owner %d killed; %d submits, %d numbers twice" % (
        owner, len(got), len(dups)))
    # The window: a number went out twice only if the killed owner's
    # accepted submit never committed; the committed SUBMITTED result of
    # every number is a single one, and for a duplicate it is the new
    # owner's.
    deadline = time.time() + 30
    while True:
        st, ev = others[0].api("GET", "/v1/events?after=0&limit=10000")
        sub = {}
        for e in ev["events"]:
            if e["type"] == "submitted":
                sub.setdefault(e["address"].split("@")[0][1:], []).append(
                    e["node"])
        if len(sub) == len(numbers) or time.time() > deadline:
            break
        time.sleep(0.2)
    assert len(sub) == len(numbers)
    assert all(len(v) == 1 for v in sub.values())
    for a in dups:
        assert sub[a] != [owner], a
    # bounded by what the owner had in flight: its window plus results
    # not committed yet
    assert len(dups) <= 60, dups


def test_smsc_rate_holds_cluster_wide(make_cluster, smsc):  # noqa: F811
    """An SMSC contracted at 5 submit_sm a second: two nodes send (two SMS
    domains in shards of different owners), and the simulator never sees
    more than burst + rate * (W + 1) in any W seconds."""
    from test_queue_ops import shard_of
    s = smsc(id_format="hex", receipt_id_format="dec")
    c = make_cluster(n=3, delivery=FAST).start()
    leader = c.wait_leader()
    owners = wait_shards_spread(c)
    doms = {}
    for i in range(300):
        d = "sms%d.example.net" % i
        doms.setdefault(owners[shard_of(d)], d)
        if len(doms) == 2:
            break
    pol = sms_policy(("smsc-a", s))
    pol["customers"][0]["sms"]["domains"] = list(doms.values())
    pol["smscs"][0]["per_second"] = 5
    apply_policy(c, pol)
    s.wait_sessions(3)
    for k, d in enumerate(doms.values()):
        send(c.nodes[k].smtp_port, sender="shop@acme.example",
             rcpts=["+4930%07d@%s" % (k * 100 + i, d) for i in range(20)],
             msg=mail("rate %d" % k))
    deadline = time.time() + 60
    while len(s.accepted()) < 40:
        assert time.time() < deadline, len(s.accepted())
        time.sleep(0.2)
    t = sorted(x["time"] for x in s.accepted())
    for w in (1, 2, 4):
        for i in range(len(t)):
            n = len([x for x in t if t[i] <= x < t[i] + w])
            assert n <= 5 + 5 * (w + 1), (w, n, t)
    assert t[-1] - t[0] >= (40 - 10) / 5 - 2, t
    st, ev = leader.api("GET", "/v1/events?after=0&limit=1000")
    nodes = {e["node"] for e in ev["events"] if e["type"] == "submitted"}
    assert len(nodes) == 2, nodes


def test_several_binds_and_split_transmitter_receiver(make_cluster,
                                                      smsc):  # noqa: F811
    """binds: 2 with bind_mode split: every node keeps two transmitters and
    one receiver; submits go over the transmitters, receipts come back on
    the receivers and deliver the recipients."""
    s = smsc(id_format="hex", receipt_id_format="dec")
    c = make_cluster(n=3, delivery=FAST).start()
    pol = sms_policy(("smsc-a", s))
    pol["smscs"][0].update({"binds": 2, "bind_mode": "split"})
    apply_policy(c, pol)
    s.wait_sessions(9)
    kinds = sorted(x["bind_type"] for x in s.sessions())
    assert kinds == ["receiver"] * 3 + ["transmitter"] * 6, kinds
    code = code_of(send(c.nodes[0].smtp_port, sender="shop@acme.example",
                        rcpts=["+3161234%04d@sms.example.net" % i
                               for i in range(40)],
                        msg=mail("split binds"))[1])
    s.wait_submits(40)
    for n in c.nodes:
        wait_states(n, code, ["delivered"] * 40)
    tx = {x["session"] for x in s.accepted()}
    rx = {x["session"] for x in s.sessions()
          if x["bind_type"] == "receiver"}
    assert tx and not (tx & rx)
    st, body = c.nodes[0].api("GET", "/v1/sms/routes")
    assert (body["binds"], body["binds_bound"]) == (3, 3)


def test_text_over_the_parts_limit_is_refused_at_data(setup):
    """too_long: reject (the default) with max_parts 2: a text needing 3
    parts gets 554 5.3.4 at the end of DATA and is not kept; 2 parts pass.
    With too_long: truncate the same text is sent cut to 2 parts."""
    c, (s,) = setup(max_parts=2)
    long_text = "x" * 400  # 3 parts of 153 septets
    cl = smtplib.SMTP("127.0.0.1", c.nodes[0].smtp_port, timeout=10)
    cl.ehlo("t")
    cl.mail("shop@acme.example")
    cl.rcpt("+393339999999@sms.example.net")
    code, text = cl.data(mail(long_text))
    assert code == 554 and b"5.3.4" in text and b"needs 3 parts" in text, \
        (code, text)
    cl.quit()
    ok = code_of(send(c.nodes[0].smtp_port, sender="shop@acme.example",
                      rcpts=("+393339999998@sms.example.net",),
                      msg=mail("y" * 300))[1])
    wait_states(c.nodes[0], ok, ["delivered"])
    assert {x["destination_addr"] for x in s.accepted()} == {"393339999998"}
    pol = sms_policy(("smsc-a", s), max_parts=2, too_long="truncate")
    apply_policy(c, pol)
    wait_sms_policy(c, "too_long", "truncate")
    cut = code_of(send(c.nodes[0].smtp_port, sender="shop@acme.example",
                       rcpts=("+393339999997@sms.example.net",),
                       msg=mail(long_text))[1])
    wait_states(c.nodes[0], cut, ["delivered"])
    assert len([x for x in s.accepted()
                if x["destination_addr"] == "393339999997"]) == 2


def test_permanent_smpp_error_bounces_dsn_only_if_asked(setup):
    """A permanent submit_sm error (ESME_RINVDSTADR) bounces the recipient
    at once; the sender gets a DSN only when the customer's SMS policy says
    dsn: true."""
    c, (s,) = setup()
    s.mode(fail_status=0x0B)

    def codes():
        return c.nodes[0].api("GET", "/v1/messages?limit=100")[1]["codes"]
    code = code_of(send(c.nodes[0].smtp_port, sender="shop@acme.example",
                        rcpts=("+393330000001@sms.example.net",),
                        msg=mail("bad"))[1])
    rs = wait_states(c.nodes[0], code, ["bounced"])
    assert "SMPP 0x0b" in rs[0]["last_reply"], rs
    pol = sms_policy(("smsc-a", s))
    pol["customers"][0]["sms"]["dsn"] = True
    apply_policy(c, pol)
    wait_sms_policy(c, "dsn", True)
    code2 = code_of(send(c.nodes[0].smtp_port, sender="shop@acme.example",
                         rcpts=("+393330000002@sms.example.net",),
                         msg=mail("bad again"))[1])
    wait_states(c.nodes[0], code2, ["bounced"])
    deadline = time.time() + 20
    while len(codes()) < 3:
        assert time.time() < deadline, codes()
        time.sleep(0.2)
    # one DSN, for the second message only: the first bounced while the
    # policy said dsn: false, and its DSN would have been made then
    extra = [x for x in codes() if x not in (code, code2)]
    assert len(extra) == 1, codes()
    st, m = c.nodes[0].api("GET", "/v1/messages/" +
                           extra[0].replace("/", "%2F"))
    assert m["mail_from"] == "" and m["rcpts"][0]["address"] == \
        "shop@acme.example", m
