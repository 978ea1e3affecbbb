"""Queue operations and shaping: response rules that suspend a destination,
operator suspend/resume/retry/bounce through clusterctl, and cluster-wide
rates (customer and global agreement) that two nodes share, measured at a
real destination MTA (aiosmtpd on 127.0.0.1)."""
import json
import time

import pytest

from smtp_util import code_of, send
from test_delivery import (apply_policy, dest, routes,  # noqa: F401
                           wait_shards_spread, wait_states)

FAST_RETRY = {"retry_min_s": 1, "retry_max_s": 2}
TS04 = "421 4.7.0 [TS04] Messages from 127.0.0.1 temporarily deferred"


def shard_of(domain):
    """queue/shard.c: FNV-1a of the lower-case domain, mod 64."""
    h = 2166136261
    for b in domain.lower().encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h % 64


def suspensions(node):
    st, body = node.api("GET", "/v1/suspensions")
    assert st == 200, body
    return body["suspensions"]


def wait_for(pred, timeout=20, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def test_response_rule_suspends_destination_until_resumed(make_cluster, dest):
    block = {"on": True}
    d = dest(rcpt_reply=lambda a, n: TS04 if block["on"] else None)
    c = make_cluster(n=3, delivery=FAST_RETRY).start()
    policy = routes(d)
    policy["destinations"] = [{
        "domain": "ts.example",
        "rules": [{"match": "no match here", "action": "suspend",
                   "seconds": 5},
                  {"match": r"\[TS04\]", "action": "suspend",
                   "seconds": 600}]}]
    apply_policy(c, policy)
    code0 = code_of(send(c.nodes[0].smtp_port, rcpts=("r0@ts.example",))[1])
    # the 421 [TS04] suspends the domain, in the replicated state
    for n in c.nodes:
        s = wait_for(lambda: suspensions(n), what="suspension on node %d"
                     % n.id)
        assert s[0]["domain"] == "ts.example"
        assert s[0]["source"] == "rule:1"
        assert "[TS04]" in s[0]["reason"]
        assert s[0]["per_minute"] == 0
        assert s[0]["until_ms"] > time.time() * 1000 + 500 * 1000
    block["on"] = False
    codes = [code_of(send(c.nodes[i % 3].smtp_port,
                          rcpts=("r%d@ts.example" % i,))[1])
             for i in range(1, 6)]
    # retries every 1-2 s would have delivered by now: the suspension holds
    time.sleep(6)
    assert d.received() == []
    assert d.rcpt_tries == {"<r0@ts.example>": 1} or \
        d.rcpt_tries == {"r0@ts.example": 1}, d.rcpt_tries
    postponed = sum(n.status()["delivery"]["postponed"] for n in c.nodes)
    assert postponed >= 5, postponed
    rs = wait_states(c.nodes[1], codes[0], ["queued"])
    assert rs[0]["attempts"] == 0 and "suspended" in rs[0]["last_reply"], rs
    out = c.nodes[2].ctl("queue", "suspensions").stdout
    assert "ts.example" in out and "rule:1" in out, out
    # resumed by hand: everything goes at once
    out = c.nodes[1].ctl("queue", "resume", "ts.example").stdout
    assert "ts.example" in out
    d.wait(6, timeout=30)
    for code in [code0] + codes:
        wait_states(c.nodes[0], code, ["delivered"])
    assert wait_states(c.nodes[0], code0, ["delivered"])[0]["attempts"] == 2
    assert wait_states(c.nodes[0], codes[0], ["delivered"])[0]["attempts"] \
        == 1
    assert suspensions(c.nodes[0]) == []
    # resuming what is not suspended is an error, one clear line
    p = c.nodes[0].ctl("queue", "resume", "ts.example", check=False)
    assert p.returncode != 0 and "not suspended" in p.stderr, p.stderr


def test_operator_suspend_retry_and_bounce(make_cluster, dest):
    d = dest(rcpt_reply=lambda a, n:
             "451 4.2.0 later" if (a.startswith("later") and n == 1) or
             a.startswith("stuck") else None)
    c = make_cluster(n=3, delivery={"retry_min_s": 300,
                                    "retry_max_s": 600}).start()
    apply_policy(c, routes(d))
    # retry DOMAIN: a deferred recipient goes now, not in 5 minutes
    code = code_of(send(c.nodes[0].smtp_port, rcpts=("later@r.example",))[1])
    wait_states(c.nodes[0], code, ["deferred"])
    out = c.nodes[1].ctl("queue", "retry", "r.example").stdout
    assert "1 recipients due now" in out, out
    rs = wait_states(c.nodes[0], code, ["delivered"], timeout=15)
    assert rs[0]["attempts"] == 2
    # retry CODE: nothing waits any more
    out = c.nodes[1].ctl("queue", "retry", code).stdout
    assert "0 recipients due now" in out, out
    # bounce CODE: the waiting recipient fails, with a DSN and an event
    code = code_of(send(c.nodes[1].smtp_port, rcpts=("stuck@s.example",))[1])
    wait_states(c.nodes[0], code, ["deferred"])
    out = c.nodes[2].ctl("queue", "bounce", code, "--reason",
                         "customer asked").stdout
    assert "1 recipients bounced" in out, out
    rs = wait_states(c.nodes[0], code, ["bounced"])
    assert "bounced by the operator: customer asked" in rs[0]["last_reply"]
    dsn = wait_for(lambda: [m for m in d.received()
                            if m[1] == ["a@example.com"]], what="DSN")
    text = dsn[0][2].decode()
    assert "Final-Recipient: rfc822; stuck@s.example" in text
    assert "bounced by the operator" in text
    st, ev = c.nodes[0].api("GET", "/v1/events?after=0&limit=1000")
    b = [e for e in ev["events"] if e["code"] == code and
         e["type"] == "bounced"]
    assert len(b) == 1 and b[0]["bounce_class"] == "other", b
    p = c.nodes[0].ctl("queue", "bounce", "no.such.domain", check=False)
    assert p.returncode != 0 and "CODE" in p.stderr
    # suspend DOMAIN by hand: nothing goes until it is resumed
    c.nodes[0].ctl("queue", "suspend", "p.example", "--for", "600",
                   "--reason", "maintenance")
    code = code_of(send(c.nodes[2].smtp_port, rcpts=("x@p.example",))[1])
    time.sleep(3)
    assert [m for m in d.received() if m[1] == ["x@p.example"]] == []
    rs = wait_states(c.nodes[0], code, ["queued"])
    assert rs[0]["attempts"] == 0 and "maintenance" in rs[0]["last_reply"]
    p = c.nodes[1].ctl("-o", "json", "queue", "suspensions")
    s = json.loads(p.stdout)["suspensions"]
    assert [(x["domain"], x["source"]) for x in s] == \
        [("p.example", "operator")], s
    c.nodes[1].ctl("queue", "resume", "p.example")
    wait_states(c.nodes[0], code, ["delivered"], timeout=20)


@pytest.mark.parametrize("scope", ["customer", "global"])
def test_rate_shared_by_two_nodes_measured_at_destination(
        make_cluster, dest, scope):
    """4 messages a second for the customer (or the whole cluster), while
    two nodes deliver (two domains in shards of different owners): the
    destination never sees more than burst + rate * (W + 1) in any window
    of W seconds."""
    rate = 4
    d = dest()
    c = make_cluster(n=3, delivery=ON_FAST).start()
    policy = routes(d)
    if scope == "customer":
        policy["customers"][0]["per_second"] = rate
    else:
        policy["global"] = {"per_second": rate}
    apply_policy(c, policy)
    leader = c.wait_leader()
    owners = wait_shards_spread(c)
    doms = {}
    for i in range(200):
        dom = "rate%d.example" % i
        doms.setdefault(owners[shard_of(dom)], dom)
        if len(doms) == 2:
            break
    a, b = list(doms.values())
    total = 40
    for i in range(total):
        assert send(c.nodes[i % 3].smtp_port,
                    rcpts=("r%d@%s" % (i, (a, b)[i % 2]),))[0] == 250
    d.wait(total, timeout=60)
    t = sorted(d.arrival_times)
    burst = rate
    for w in (1, 2, 5):
        for i in range(len(t)):
            n = len([x for x in t if t[i] <= x < t[i] + w])
            assert n <= burst + rate * (w + 1), (w, i, n, t)
    assert t[-1] - t[0] >= (total - 2 * burst) / rate - 2, t
    # both owners sent
    deadline = time.time() + 20
    while True:
        st, ev = leader.api("GET", "/v1/events?after=0&limit=1000")
        done = [e for e in ev["events"] if e["type"] == "delivered"]
        if len(done) >= total or time.time() > deadline:
            break
        time.sleep(0.2)
    assert len({e["node"] for e in done}) == 2, {e["node"] for e in done}


ON_FAST = {"enabled": "true"}
