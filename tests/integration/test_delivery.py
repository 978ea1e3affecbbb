"""Outbound delivery end to end: messages injected on any node reach a real
destination MTA (aiosmtpd on 127.0.0.1, scripted per recipient) once, with
their headers; 4xx retries, 5xx bounces, expiry, an unreachable route."""
import re
import time

import pytest

from dest import Dest
from smtp_util import code_of, message, send

ON = {"enabled": "true"}
FAST_RETRY = {"retry_min_s": 1, "retry_max_s": 2}


def routes(dest, tls="none"):
    return {"customers": [{"name": "default",
                           "networks": ["127.0.0.1/32"]}],
            "routes": [{"domain": "*", "host": dest.address, "tls": tls}]}


def apply_policy(c, policy):
    """Commits the policy and waits until every running node applied it
    (so that whichever node a test talks to, or owns a shard, has it)."""
    st, body = c.wait_leader().api("POST", "/v1/policy", policy)
    assert st == 200, body
    deadline = time.time() + 20
    for n in c.nodes:
        while n.alive and n.status()["applied_index"] < body["index"]:
            assert time.time() < deadline, (n.id, body)
            time.sleep(0.02)


def rcpt_states(node, code):
    """The recipients' records, or None while the node has not applied the
    message yet."""
    st, m = node.api("GET", "/v1/messages/" + code)
    if st == 404:
        return None
    assert st == 200, m
    return m["rcpts"]


def wait_states(node, code, want, timeout=30):
    """Waits until the recipients' states are `want` (a list)."""
    deadline = time.time() + timeout
    got = None
    while time.time() < deadline:
        got = rcpt_states(node, code)
        if got is not None and [r["state"] for r in got] == want:
            return got
        time.sleep(0.1)
    raise AssertionError("%s: %s, wanted %s" % (code, got, want))


def wait_shards_spread(c, timeout=20):
    """Waits until every node of c owns shards; returns the owner per
    shard (GET /v1/shards on the leader)."""
    deadline = time.time() + timeout
    while True:
        owners = c.wait_leader().api("GET", "/v1/shards")[1]["owners"]
        if len(set(owners) - {0}) == len(c.nodes):
            return owners
        assert time.time() < deadline, "shards not spread: %s" % owners
        time.sleep(0.2)


@pytest.fixture
def dest():
    made = []

    def make(**kw):
        d = Dest(**kw)
        made.append(d)
        return d
    yield make
    for d in made:
        d.stop()


def test_every_message_arrives_once_with_its_headers(make_cluster, dest):
    d = dest()
    c = make_cluster(n=3, delivery=ON).start()
    apply_policy(c, routes(d))
    sent = {}
    for i in range(30):
        # two recipients in one domain (one transaction), one elsewhere
        rcpts = ("a%d@d%d.example" % (i, i % 4), "b%d@d%d.example" % (i, i % 4),
                 "c%d@other%d.example" % (i, i % 3))
        subject = "msg-%d" % i
        code, text = send(c.nodes[i % 3].smtp_port, rcpts=rcpts,
                          msg=message(subject=subject,
                                      body="line one\r\n.dot line\r\n"))
        assert code == 250, text
        sent[subject] = (code_of(text), rcpts)
    got = d.wait(60)  # 30 messages x 2 domains
    time.sleep(1)
    got = d.received()
    import collections
    assert len(got) == 60, (len(got), collections.Counter(tuple(r) for _, r, _ in got).most_common(3))
    by_subject = {}
    for mail_from, rcpts, content in got:
        text = content.decode()
        subject = re.search(r"^Subject: (\S+)", text, re.M).group(1)
        by_subject.setdefault(subject, []).append(sorted(rcpts))
        assert mail_from == "a@example.com"
        assert "\r\n.dot line\r\n" in text.replace("\n", "\r\n").replace(
            "\r\r", "\r")
        assert re.search(r"^Received: from ", text, re.M)
        assert text.count("Subject:") == 1
    for subject, (code, rcpts) in sent.items():
        assert sorted(by_subject[subject]) == sorted(
            [sorted(rcpts[:2]), [rcpts[2]]]), subject
    # the state says delivered on every node, with the remote reply
    c.wait_converged()
    for n in c.nodes:
        for subject, (code, rcpts) in sent.items():
            rs = rcpt_states(n, code)
            assert [r["state"] for r in rs] == ["delivered"] * 3, rs
            assert rs[0]["last_reply"].startswith("250 2.0.0")
            assert rs[0]["attempts"] == 1
    st, ev = c.nodes[0].api("GET", "/v1/events?after=0&limit=1000")
    assert st == 200
    assert len(ev["events"]) == 90
    assert {e["type"] for e in ev["events"]} == {"delivered"}
    # every node delivered some: the shards are spread
    total = 0
    for n in c.nodes:
        dl = n.status()["delivery"]
        total += dl["delivered"]
    assert total == 90


def test_4xx_is_retried_then_delivered(make_cluster, dest):
    d = dest(rcpt_reply=lambda a, n: "451 4.3.0 try again later"
             if n == 1 else None)
    c = make_cluster(n=3, delivery=FAST_RETRY).start()
    apply_policy(c, routes(d))
    code, text = send(c.nodes[1].smtp_port, rcpts=("x@slow.example",))
    code = code_of(text)
    rs = wait_states(c.nodes[0], code, ["delivered"], timeout=30)
    assert rs[0]["attempts"] == 2
    assert len(d.received()) == 1
    st, ev = c.nodes[0].api("GET", "/v1/events")
    types = [e["type"] for e in ev["events"] if e["code"] == code]
    assert types == ["deferred", "delivered"]
    deferred = [e for e in ev["events"] if e["type"] == "deferred"][0]
    assert "451 4.3.0 try again later" in deferred["reply"]


def test_5xx_bounces_only_that_recipient(make_cluster, dest):
    d = dest(rcpt_reply=lambda a, n: "550 5.1.1 no such user"
             if a.startswith("bad") else None)
    c = make_cluster(n=3, delivery=ON).start()
    apply_policy(c, routes(d))
    code, text = send(c.nodes[2].smtp_port,
                      rcpts=("good@x.example", "bad@x.example"))
    code = code_of(text)
    rs = wait_states(c.nodes[0], code, ["delivered", "bounced"])
    assert rs[1]["last_reply"].startswith("550 5.1.1 no such user"), rs
    # the sender gets one RFC 3464 report, from the null sender
    deadline = time.time() + 30
    while time.time() < deadline and len(d.received()) < 2:
        time.sleep(0.1)
    time.sleep(1)
    got = d.received()
    assert [r for _, r, _ in got if r != ["a@example.com"]] == \
        [["good@x.example"]]
    dsns = [(f, c_) for f, r, c_ in got if r == ["a@example.com"]]
    assert len(dsns) == 1, got
    mail_from, content = dsns[0]
    text = content.decode()
    assert mail_from == "<>" or mail_from == ""
    assert "multipart/report; report-type=delivery-status" in text
    assert "Final-Recipient: rfc822; bad@x.example" in text
    assert "Status: 5.1.1" in text
    assert "Diagnostic-Code: smtp; 550 5.1.1 no such user" in text
    assert "X-SmartRelay-ID: " + code in text
    assert "Subject: test" in text  # the original header, quoted
    st, ev = c.nodes[0].api("GET", "/v1/events")
    bounce = [e for e in ev["events"] if e["type"] == "bounced"]
    assert len(bounce) == 1 and bounce[0]["bounce_class"] == \
        "invalid_recipient", bounce
    # no DSN for a DSN, and none for a null sender
    code2, text2 = send(c.nodes[0].smtp_port, sender="",
                        rcpts=("bad2@x.example",))
    code2 = code_of(text2)
    wait_states(c.nodes[0], code2, ["bounced"])
    time.sleep(2)
    assert len(d.received()) == 2


def test_a_message_too_old_expires(make_cluster, dest):
    d = dest(rcpt_reply=lambda a, n: "452 4.2.2 mailbox full")
    c = make_cluster(n=3, delivery=dict(FAST_RETRY, max_age_s=3)).start()
    apply_policy(c, routes(d))
    code, text = send(c.nodes[0].smtp_port, rcpts=("full@x.example",))
    code = code_of(text)
    rs = wait_states(c.nodes[0], code, ["expired"], timeout=30)
    assert rs[0]["attempts"] >= 2
    assert "452 4.2.2" in rs[0]["last_reply"]
    assert d.received() == []


def test_unreachable_route_defers_until_it_comes_up(make_cluster, dest):
    c = make_cluster(n=3, delivery=FAST_RETRY).start()
    d = dest()
    d.stop()  # nothing listens on its port now
    apply_policy(c, routes(d))
    code, text = send(c.nodes[0].smtp_port, rcpts=("later@x.example",))
    code = code_of(text)
    rs = wait_states(c.nodes[0], code, ["deferred"], timeout=20)
    assert "refused" in rs[0]["last_reply"].lower(), rs
    up = dest(port=d.port)
    wait_states(c.nodes[0], code, ["delivered"], timeout=30)
    assert len(up.received()) == 1


def test_owner_killed_while_delivering(make_cluster, dest):
    """2000 messages to a slow destination; the node owning most shards is
    SIGKILLed while they drain. Every message arrives; a recipient arrives
    twice only if its first delivery's result never committed (the
    documented window), which the events prove."""
    import threading
    d = dest(delay=0.05)
    c = make_cluster(n=3, delivery={"max_connections_per_domain": 2}).start()
    apply_policy(c, routes(d))
    owners = wait_shards_spread(c)
    victim_id = max(set(owners), key=owners.count)
    victim = c.node(victim_id)
    others = [n for n in c.nodes if n.id != victim_id]
    total = 2000
    codes = {}
    lock = threading.Lock()

    def inject(k):
        for i in range(k, total, 8):
            rcpt = "r%d@dom%d.example" % (i, i % 10)
            code, text = send(others[i % 2].smtp_port, rcpts=(rcpt,),
                              msg=message(subject="m%d" % i))
            assert code == 250, text
            with lock:
                codes[rcpt] = code_of(text)
    threads = [threading.Thread(target=inject, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    while len(d.received()) < total * 2 // 5:
        time.sleep(0.02)
    victim.kill()
    killed_at = len(d.received())
    for t in threads:
        t.join()
    assert len(codes) == total
    deadline = time.time() + 120
    while time.time() < deadline and len(
            {r for _, rs, _ in d.received() for r in rs}) < total:
        time.sleep(0.2)
    arrivals = {}
    for _, rcpts, _ in d.received():
        for r in rcpts:
            arrivals[r] = arrivals.get(r, 0) + 1
    assert set(arrivals) == set(codes), len(set(codes) - set(arrivals))
    dups = sorted(r for r, k in arrivals.items() if k > 1)
    # the state agrees: each recipient delivered once, in the log
    deadline = time.time() + 30
    while time.time() < deadline:
        st, ev = others[0].api("GET", "/v1/events?after=0&limit=10000")
        delivered_by = {}
        for e in ev["events"]:
            if e["type"] == "delivered":
                delivered_by.setdefault(e["address"], []).append(e["node"])
        if len(delivered_by) == total:
            break
        time.sleep(0.2)
    assert set(delivered_by) == set(codes)
    assert all(len(v) == 1 for v in delivered_by.values())
    for r in dups:
        # its committed delivery is the new owner's: the victim's 250
        # never made it into the log
        assert delivered_by[r] != [victim_id], r
    print("owner killed after %d of %d arrived: %d duplicates (window); "
          "victim %d owned %d shards" % (killed_at, total, len(dups),
                                        victim_id, owners.count(victim_id)))
    # at most what the victim had in flight: 2 connections x its domains
    assert len(dups) <= 2 * 10, dups


def test_backlog_high_water_refuses_mail_until_drained(make_cluster, dest):
    """With the destination down and a small high-water mark, injection
    gets 452 4.3.1 at MAIL; nothing accepted is lost, and once the queue
    drains under the low-water mark mail is taken again."""
    import smtplib
    c = make_cluster(n=3, delivery=dict(FAST_RETRY, queue_high_water=5,
                                        queue_low_water=2)).start()
    d = dest()
    d.stop()  # down
    apply_policy(c, routes(d))
    acked = []
    refused = 0
    for i in range(12):
        s = smtplib.SMTP("127.0.0.1", c.nodes[i % 3].smtp_port, timeout=10)
        s.ehlo("client.example")
        code, text = s.mail("a@example.com")
        if code == 250:
            s.rcpt("r%d@x.example" % i)
            code, text = s.data(message(subject="bp-%d" % i))
            assert code == 250, text
            acked.append(code_of(text.decode()))
        else:
            assert code == 452 and text.startswith(b"4.3.1"), (code, text)
            refused += 1
        s.quit()
        time.sleep(0.1)  # let the count reach every node
    assert len(acked) >= 5 and refused >= 1, (len(acked), refused)
    # the destination comes back: everything acknowledged is delivered
    up = dest(port=d.port)
    deadline = time.time() + 40
    while time.time() < deadline and len(up.received()) < len(acked):
        time.sleep(0.2)
    assert len(up.received()) == len(acked)
    # drained: MAIL is accepted again
    deadline = time.time() + 10
    while True:
        s = smtplib.SMTP("127.0.0.1", c.nodes[0].smtp_port, timeout=10)
        s.ehlo("client.example")
        code, _ = s.mail("a@example.com")
        s.quit()
        if code == 250 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert code == 250
    logs = "".join(open(n.log_path).read() for n in c.nodes)
    assert "event=backlog_full" in logs and "event=backlog_drained" in logs


def test_clusterctl_queue_shards_and_events(make_cluster, dest):
    c = make_cluster(n=3, delivery=FAST_RETRY).start()
    d = dest()
    d.stop()
    apply_policy(c, routes(d))
    for rcpt in ("a@one.example", "b@one.example", "c@two.example"):
        assert send(c.nodes[0].smtp_port, rcpts=(rcpt,))[0] == 250
    leader = c.wait_leader()
    deadline = time.time() + 20
    while time.time() < deadline:
        out = leader.ctl("queue", "summary").stdout
        if "deferred 3)" in out:
            break
        time.sleep(0.2)
    assert "pending    3 (queued 0, deferred 3)" in out, out
    assert re.search(r"^one\.example +2$", out, re.M), out
    assert re.search(r"^two\.example +1$", out, re.M), out
    assert re.search(r"^default +3$", out, re.M), out
    out = leader.ctl("shard", "list").stdout
    assert len(re.findall(r"^\d+ +[123]$", out, re.M)) == 64, out
    up = dest(port=d.port)
    deadline = time.time() + 30
    while time.time() < deadline and len(up.received()) < 3:
        time.sleep(0.2)
    assert len(up.received()) == 3
    deadline = time.time() + 20
    while True:
        out = leader.ctl("events", "--limit", "100").stdout
        if len(re.findall(r" delivered ", out)) >= 3 or \
                time.time() > deadline:
            break
        time.sleep(0.2)
    assert len(re.findall(r" delivered ", out)) == 3, out
    assert len(re.findall(r" deferred ", out)) >= 3, out
    deadline = time.time() + 20
    while True:
        out = leader.ctl("queue", "summary").stdout
        if "pending    0 " in out or time.time() > deadline:
            break
        time.sleep(0.2)
    assert "pending    0 (queued 0, deferred 0)" in out, out


def test_customer_mail_leaves_from_its_dedicated_ip(make_cluster, dest):
    d = dest()
    c = make_cluster(n=3, delivery=ON).start()
    policy = routes(d)
    policy["customers"][0]["source_ip"] = "127.0.0.2"
    apply_policy(c, policy)
    for i in range(6):
        assert send(c.nodes[i % 3].smtp_port,
                    rcpts=("x%d@d%d.example" % (i, i),))[0] == 250
    d.wait(6)
    assert set(d.peers) == {"127.0.0.2"}, d.peers


def test_destination_connection_limit_measured_at_the_destination(
        make_cluster, dest):
    d = dest(delay=0.2)
    c = make_cluster(n=3, delivery=ON).start()
    policy = routes(d)
    policy["destinations"] = [{"domain": "slow.example",
                               "max_connections": 2, "per_connection": 3}]
    apply_policy(c, policy)
    for i in range(16):
        assert send(c.nodes[i % 3].smtp_port,
                    rcpts=("r%d@slow.example" % i,))[0] == 250
    d.wait(16, timeout=60)
    assert d.max_open <= 2, d.max_open
    # 3 messages per connection at most: at least 6 sessions for 16
    assert d.sessions >= 6, d.sessions


def test_destination_rate_holds_across_an_owner_change(make_cluster, dest):
    """per_minute 5: the destination never sees more than 5 in any 60 s,
    also when the node owning the domain dies and another takes over."""
    d = dest()
    c = make_cluster(n=3, delivery=ON).start()
    policy = routes(d)
    policy["destinations"] = [{"domain": "rated.example", "per_minute": 5}]
    apply_policy(c, policy)
    leader = c.wait_leader()
    deadline = time.time() + 20
    while time.time() < deadline:
        st, sh = leader.api("GET", "/v1/shards")
        if len(set(sh["owners"]) - {0}) == 3:
            break
        time.sleep(0.2)
    for i in range(12):
        assert send(c.nodes[i % 3].smtp_port,
                    rcpts=("r%d@rated.example" % i,))[0] == 250
    d.wait(5, timeout=30)
    t_first = time.time()
    time.sleep(1)
    assert len(d.received()) == 5
    # kill the owner of the domain's shard; another node takes it over
    code = [x for x in leader.api("GET", "/v1/messages")[1]["codes"]][0]
    shard = leader.api("GET", "/v1/messages/" + code)[1]["rcpts"][0]["shard"]
    owner = sh["owners"][shard]
    victim = c.node(owner)
    victim.kill()
    survivors = [n for n in c.nodes if n.id != owner]
    # the new owner (after ~6 s) must wait for the minute to pass
    while time.time() < t_first + 50:
        assert len(d.received()) == 5, len(d.received())
        time.sleep(0.5)
    d.wait(10, timeout=40)
    arrivals = sorted(d.arrival_times)
    for i in range(len(arrivals)):
        window = [t for t in arrivals if arrivals[i] <= t < arrivals[i] + 60]
        assert len(window) <= 5, (i, arrivals)
    # the results reach the survivors' state a moment after the messages
    # reach the destination
    deadline = time.time() + 20
    while True:
        st, ev = survivors[0].api("GET", "/v1/events")
        done = [e for e in ev["events"] if e["type"] == "delivered"]
        if len(done) >= 10 or time.time() > deadline:
            break
        time.sleep(0.2)
    nodes = {e["node"] for e in done}
    assert owner in nodes and len(nodes) == 2, nodes


def test_returning_node_gets_shards_back_by_hand_over(make_cluster, dest):
    """A node stops; its shards move to the others once its lease is over.
    It comes back while they deliver 300 messages to a slow destination:
    the owners drain the shards rendezvous hashing gives back to it and
    release them once their deliveries are settled, so it gets shards
    again, delivers, and no recipient arrives twice (nothing was in flight
    across the hand-over)."""
    import threading
    d = dest(delay=0.03)
    c = make_cluster(n=3, delivery={"max_connections_per_domain": 2}).start()
    apply_policy(c, routes(d))
    leader = c.wait_leader()

    def owners():
        return leader.api("GET", "/v1/shards")[1]["owners"]
    deadline = time.time() + 20
    while len(set(owners()) - {0}) < 3 and time.time() < deadline:
        time.sleep(0.2)
    victim = [n for n in c.nodes if n.id != leader.id][0]
    others = [n for n in c.nodes if n.id != victim.id]
    victim.stop()
    deadline = time.time() + 20
    while victim.id in owners() or 0 in owners():
        assert time.time() < deadline, owners()
        time.sleep(0.2)
    total = 300
    lock = threading.Lock()
    sent = []

    def inject(k):
        for i in range(k, total, 4):
            rcpt = "h%d@hand%d.example" % (i, i % 16)
            code, text = send(others[i % 2].smtp_port, rcpts=(rcpt,))
            assert code == 250, text
            with lock:
                sent.append(rcpt)
    threads = [threading.Thread(target=inject, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    while len(d.received()) < 60:
        time.sleep(0.02)
    victim.start()
    deadline = time.time() + 30
    while owners().count(victim.id) == 0:
        assert time.time() < deadline, owners()
        time.sleep(0.2)
    for t in threads:
        t.join()
    # and it delivers mail of its shards again
    for i in range(32):
        assert send(others[0].smtp_port,
                    rcpts=("late%d@hand%d.example" % (i, i % 16),))[0] == 250
        sent.append("late%d@hand%d.example" % (i, i % 16))
    deadline = time.time() + 90
    while len({r for _, rs, _ in d.received() for r in rs}) < len(sent):
        assert time.time() < deadline, len(d.received())
        time.sleep(0.2)
    time.sleep(1)
    arrivals = {}
    for _, rcpts, _ in d.received():
        for r in rcpts:
            arrivals[r] = arrivals.get(r, 0) + 1
    assert set(arrivals) == set(sent)
    assert [r for r, k in arrivals.items() if k > 1] == []
    assert len(set(owners()) - {0}) == 3
    assert victim.status()["delivery"]["delivered"] > 0


def test_starttls_to_the_destination(make_cluster, dest, tmp_path):
    """A destination that requires STARTTLS gets every message over TLS
    (the engine shares one client TLS context between its connections);
    a route with tls: none to it gets 530, a permanent failure."""
    from cluster import make_ip_cert
    cert, key = str(tmp_path / "d.pem"), str(tmp_path / "d.key")
    make_ip_cert(cert, key)
    d = dest(tls=(cert, key))
    c = make_cluster(n=3, delivery=FAST_RETRY).start()
    policy = routes(d, tls="require")
    policy["routes"].insert(0, {"domain": "plain.example",
                                "host": d.address, "tls": "none"})
    apply_policy(c, policy)
    codes = [code_of(send(c.nodes[i % 3].smtp_port,
                          rcpts=("t%d@tls%d.example" % (i, i % 5),))[1])
             for i in range(10)]
    d.wait(10)
    assert all(v and v.startswith("TLSv1") for v in d.tls_versions), \
        d.tls_versions
    for code in codes:
        wait_states(c.nodes[0], code, ["delivered"])
    code = code_of(send(c.nodes[0].smtp_port, rcpts=("p@plain.example",))[1])
    rs = wait_states(c.nodes[0], code, ["bounced"])
    assert "530 Must issue a STARTTLS" in rs[0]["last_reply"], rs
