"""SMTP in: real clients (smtplib, swaks, raw sockets) against a 3-node
cluster."""
import json
import subprocess
import threading
import urllib.parse

import pytest

from smtp_util import Raw, code_of, message, send


def show(node, code):
    """The message record as this node sees it, once it has applied
    everything its peers have (a 250 means committed, and a follower may
    apply a moment later)."""
    node.cluster.wait_converged()
    st, m = node.api("GET", "/v1/messages/" + urllib.parse.quote(code, safe=""))
    assert st == 200, m
    return m


def test_inject_on_every_node_gives_a_committed_code(cluster3):
    codes = []
    for node in cluster3.nodes:
        code, text = send(node.smtp_port, rcpts=["x@example.org",
                                                 "y@example.net"])
        assert code == 250, text
        codes.append(code_of(text))
        # The code names the accepting node.
        assert codes[-1].startswith("%02d/" % node.id)
    assert len(set(codes)) == 3
    cluster3.wait_converged()
    for node in cluster3.nodes:
        for c in codes:
            m = show(node, c)
            assert m["code"] == c
            assert [r["address"] for r in m["rcpts"]] == ["x@example.org",
                                                         "y@example.net"]
            assert all(r["state"] == "queued" for r in m["rcpts"])
            assert m["mail_from"] == "a@example.com"
            # kept on a majority before the 250
            assert len(m["holders"]) >= 2


def test_swaks_plain_and_starttls(make_cluster):
    c = make_cluster(n=3, tls=True).start()
    for node in c.nodes:
        for tls in ([], ["--tls"]):
            p = subprocess.run(
                ["swaks", "--server", "127.0.0.1", "--port",
                 str(node.smtp_port), "--from", "s@example.com", "--to",
                 "r@example.org", "--timeout", "20"] + tls,
                capture_output=True, text=True, timeout=60)
            assert p.returncode == 0, p.stdout + p.stderr
            assert "<~  250 2.0.0 OK" in p.stdout or \
                "<~ 250 2.0.0 OK" in p.stdout or \
                "<-  250 2.0.0 OK" in p.stdout, p.stdout
            if tls:
                assert "STARTTLS" in p.stdout and "<~" in p.stdout


def test_received_header_and_body_are_kept(cluster3):
    code, text = send(cluster3.nodes[0].smtp_port,
                      msg=message(body="line one\r\n.dot line\r\n"))
    assert code == 250
    m = show(cluster3.nodes[1], code_of(text))
    # size covers the Received: header we add plus the dot-unstuffed body
    assert m["size"] > len(message(body="line one\r\n.dot line\r\n"))
    assert m["helo"] == "client.example"
    assert m["client_addr"] == "127.0.0.1"


def test_oversize_is_refused(cluster3):
    node = cluster3.nodes[0]
    r = Raw(node.smtp_port)
    assert r.reply()[0] == 220
    r.send("EHLO t\r\n")
    code, lines = r.reply()
    size = [l for l in lines if "SIZE" in l][0]
    limit = int(size.split()[-1])
    r.send("MAIL FROM:<a@b.c> SIZE=%d\r\n" % (limit + 1))
    code, lines = r.reply()
    assert code == 552 and "5.3.4" in lines[0]
    r.send("MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n")
    assert [c for c, _ in r.replies(3)] == [250, 250, 354]
    chunk = ("x" * 998 + "\r\n").encode()
    for _ in range(limit // len(chunk) + 2):
        r.send(chunk)
    r.send(".\r\n")
    code, lines = r.reply()
    assert code == 552 and "5.3.4" in lines[0]
    # the session goes on
    r.send("NOOP\r\n")
    assert r.reply()[0] == 250
    r.close()


def test_too_many_recipients(make_cluster):
    c = make_cluster(n=1).start()
    node = c.nodes[0]
    policy = {"customers": [{"name": "default",
                             "networks": ["127.0.0.1/32"],
                             "max_recipients": 3}]}
    st, res = node.api("POST", "/v1/policy", policy)
    assert st == 200, res
    r = Raw(node.smtp_port)
    r.reply()
    r.send("EHLO t\r\nMAIL FROM:<a@b.c>\r\n")
    r.replies(2)
    codes = []
    for i in range(5):
        r.send("RCPT TO:<r%d@e.f>\r\n" % i)
        codes.append(r.reply())
    assert [c for c, _ in codes] == [250, 250, 250, 452, 452]
    assert "4.5.3" in codes[3][1][0]
    r.send("DATA\r\n")
    assert r.reply()[0] == 354
    r.send("Subject: x\r\n\r\nbody\r\n.\r\n")
    code, lines = r.reply()
    assert code == 250
    m = show(node, code_of(lines[0][4:]))
    assert len(m["rcpts"]) == 3


def test_bad_commands_get_5xx_and_too_many_close(cluster3):
    r = Raw(cluster3.nodes[0].smtp_port)
    r.reply()
    r.send("MAIL FROM:<a@b.c>\r\n")
    code, lines = r.reply()
    assert code == 503 and "5.5.1" in lines[0]   # EHLO first
    r.send("EHLO t\r\n")
    r.reply()
    r.send("RCPT TO:<a@b.c>\r\n")
    assert r.reply()[0] == 503                    # MAIL first
    r.send("DATA\r\n")
    assert r.reply()[0] == 503
    r.send("FOO bar\r\n")
    code, lines = r.reply()
    assert code == 500 and "5.5.2" in lines[0]
    r.send("VRFY someone\r\n")
    assert r.reply()[0] == 252
    r.send("NOOP\r\nRSET\r\nHELP\r\n")
    assert [c for c, _ in r.replies(3)] == [250, 250, 214]
    got = []
    for _ in range(20):
        r.send("BOGUS\r\n")
        try:
            got.append(r.reply()[0])
        except ConnectionError:
            break
        if got[-1] == 421:
            break
    assert got[-1] == 421
    assert r.closed()


def test_pipelined_session(cluster3):
    r = Raw(cluster3.nodes[1].smtp_port)
    r.reply()
    r.send("EHLO t\r\n")
    code, lines = r.reply()
    assert any("PIPELINING" in l for l in lines)
    batch = ""
    for i in range(3):
        batch += ("MAIL FROM:<a@b.c>\r\nRCPT TO:<r%d@e.f>\r\nDATA\r\n"
                  "Subject: %d\r\n\r\nhi\r\n.\r\n" % (i, i))
    r.send(batch + "QUIT\r\n")
    got = r.replies(13)
    assert [c for c, _ in got] == [250, 250, 354, 250] * 3 + [221]
    codes = [code_of(got[i][1][0][4:]) for i in (3, 7, 11)]
    assert len(set(codes)) == 3


@pytest.mark.parametrize("trick", [b"\n.\n", b"\r.\r", b"\n.\r\n",
                                   b"\r\n.\n", b"\r\n.\r"])
def test_bare_lf_never_ends_data(cluster3, trick):
    """SMTP smuggling: a bare LF or CR dot sequence is not the end of DATA,
    so a second message hidden behind it is never accepted."""
    node = cluster3.nodes[0]
    r = Raw(node.smtp_port)
    r.reply()
    r.send("EHLO t\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n")
    assert [c for c, _ in r.replies(4)] == [250, 250, 250, 354]
    smuggled = (b"Subject: outer\r\n\r\nfirst" + trick +
                b"MAIL FROM:<evil@x.y>\r\nRCPT TO:<victim@e.f>\r\nDATA\r\n"
                b"Subject: smuggled\r\n\r\nbad\r\n.\r\n")
    r.send(smuggled)
    code, lines = r.reply()
    assert code == 250, lines     # one message, containing everything
    r.send("QUIT\r\n")
    assert r.reply()[0] == 221
    m = show(node, code_of(lines[0][4:]))
    assert [x["address"] for x in m["rcpts"]] == ["d@e.f"]
    st, listing = node.api("GET", "/v1/messages")
    assert len(listing["codes"]) == 1


def test_client_outside_allowed_networks_is_refused(cluster3):
    node = cluster3.nodes[0]
    r = Raw(node.smtp_port, source="127.0.0.2")
    code, lines = r.reply()
    assert code == 554 and "5.7.1" in lines[0]
    assert r.closed()
    # 127.0.0.1 is allowed by the dev policy
    assert send(node.smtp_port)[0] == 250


def test_policy_change_applies_without_restart(cluster3):
    node = cluster3.nodes[2]
    policy = {"customers": [{"name": "default",
                             "networks": ["127.0.0.1/32", "127.0.0.2/32"]}]}
    st, res = cluster3.nodes[1].api("POST", "/v1/policy", policy)
    assert st == 200, res
    cluster3.wait_converged()
    for n in cluster3.nodes:
        assert send(n.smtp_port, source="127.0.0.2")[0] == 250
    st, shown = cluster3.nodes[0].api("GET", "/v1/policy")
    assert shown["customers"][0]["networks"] == ["127.0.0.1/32",
                                                 "127.0.0.2/32"]
    bad = {"customers": [{"name": "default", "networks": ["300.1.1.1/8"]}]}
    st, res = node.api("POST", "/v1/policy", bad)
    assert st == 400 and "networks" in res["error"]


def test_session_limit_holds_under_burst(make_cluster):
    c = make_cluster(n=1).start()
    node = c.nodes[0]
    st, _ = node.api("POST", "/v1/policy", {"customers": [
        {"name": "default", "networks": ["127.0.0.1/32"],
         "max_sessions": 5}]})
    assert st == 200
    conns, greetings = [], []
    lock = threading.Lock()

    def connect():
        r = Raw(node.smtp_port)
        g = r.reply()
        with lock:
            conns.append(r)
            greetings.append(g)

    ts = [threading.Thread(target=connect) for _ in range(20)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    codes = sorted(g[0] for g in greetings)
    assert codes.count(220) == 5
    assert codes.count(421) == 15
    assert all("4.7.0" in g[1][0] for g in greetings if g[0] == 421)
    for r in conns:
        r.close()


def test_policy_listeners_open_and_close_on_every_node(cluster3):
    from cluster import free_ports
    port = free_ports(1)[0]
    policy = {"customers": [
        {"name": "default", "networks": ["127.0.0.1/32"]},
        {"name": "acme", "networks": ["127.0.0.1/32"], "listen_port": port,
         "max_recipients": 2}]}
    st, res = cluster3.nodes[0].api("POST", "/v1/policy", policy)
    assert st == 200, res
    cluster3.wait_converged()
    codes = []
    for n in cluster3.nodes:
        # the new listener serves customer acme, with acme's limits
        r = Raw(port, host=n.customer_host)
        assert r.reply()[0] == 220
        r.send("EHLO t\r\nMAIL FROM:<a@b.c>\r\n")
        r.replies(2)
        got = []
        for i in range(3):
            r.send("RCPT TO:<r%d@e.f>\r\n" % i)
            got.append(r.reply()[0])
        assert got == [250, 250, 452]
        r.send("DATA\r\n")
        assert r.reply()[0] == 354
        r.send("Subject: acme\r\n\r\nhi\r\n.\r\n")
        code, lines = r.reply()
        assert code == 250
        codes.append(code_of(lines[0][4:]))
        r.close()
    for c in codes:
        assert show(cluster3.nodes[0], c)["customer"] == "acme"
    # the node's own listener still serves customer default
    code, text = send(cluster3.nodes[0].smtp_port)
    assert show(cluster3.nodes[1], code_of(text))["customer"] == "default"
    # dropping the listener from the policy closes it everywhere
    st, _ = cluster3.nodes[2].api("POST", "/v1/policy", {"customers": [
        {"name": "default", "networks": ["127.0.0.1/32"]}]})
    assert st == 200
    cluster3.wait_converged()
    import socket
    for n in cluster3.nodes:
        s = socket.socket()
        try:
            assert s.connect_ex((n.customer_host, port)) != 0
        finally:
            s.close()


def test_command_and_data_timeouts(make_cluster):
    import time
    c = make_cluster(n=1, command_timeout_s=1, data_timeout_s=60).start()
    node = c.nodes[0]
    # idle between commands: 421 and closed
    r = Raw(node.smtp_port)
    r.reply()
    code, lines = r.reply()
    assert code == 421
    assert r.closed()
    # inside DATA the longer data timeout applies
    r = Raw(node.smtp_port)
    r.reply()
    r.send("EHLO t\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n")
    assert [x for x, _ in r.replies(4)] == [250, 250, 250, 354]
    r.send("Subject: slow\r\n\r\nfirst line\r\n")
    time.sleep(2.5)   # more than the command timeout
    r.send("last line\r\n.\r\n")
    code, lines = r.reply()
    assert code == 250, lines
    r.close()
