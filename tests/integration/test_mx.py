"""MX resolution (engine/mx.c) against a real DNS server.

Each test starts dnsmasq on 127.0.0.1 (a free port) answering for the
zone "test" from records given on its command line only (--local=/test/:
any other name in it is NXDOMAIN; names outside it are REFUSED), and runs
tests/tools/mx_lookup, which prints one JSON line per domain. dnsmasq logs
every query it receives (--log-queries), so the tests can count what the
resolver really asked. dnsmasq and the small Python DNS peers are stopped
at the end of each test.
"""
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest

from cluster import BUILD, free_ports

MX_LOOKUP = os.path.join(BUILD, "tests", "tools", "mx_lookup")
DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"

QUERY_RE = re.compile(r"query\[(\w+)\] (\S+) from ")


def dns_query(port, name, qtype=1, timeout=1.0):
    """Sends one query over UDP and returns the raw answer (or None)."""
    qid = os.getpid() & 0xFFFF
    pkt = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        pkt += bytes([len(label)]) + label.encode()
    pkt += b"\0" + struct.pack(">HH", qtype, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(pkt, ("127.0.0.1", port))
        return s.recvfrom(4096)[0]
    except OSError:
        return None
    finally:
        s.close()


class Dnsmasq:
    def __init__(self, workdir, records):
        os.makedirs(workdir, exist_ok=True)
        self.port = free_ports(1)[0]
        self.log_path = os.path.join(workdir, "dnsmasq.log")
        self.syncs = 0
        args = [
            DNSMASQ, "--no-daemon", "--no-resolv", "--no-hosts",
            "--conf-file=/dev/null",
            "--pid-file=" + os.path.join(workdir, "dnsmasq.pid"),
            "--port=%d" % self.port, "--listen-address=127.0.0.1",
            "--bind-interfaces", "--user=root", "--log-queries",
            "--local=/test/", "--local-ttl=300",
        ] + list(records)
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self.log,
                                     stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.time() + 10
        while dns_query(self.port, "ready.test", timeout=0.2) is None:
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError("dnsmasq did not start:\n" +
                                   open(self.log_path).read())

    @property
    def server(self):
        return "127.0.0.1:%d" % self.port

    def queries(self):
        """(type, name) of every query received so far, in order. A marker
        query is sent and waited for first, so that every line logged
        before it is in the file."""
        self.syncs += 1
        marker = "sync%d.test" % self.syncs
        dns_query(self.port, marker)
        deadline = time.time() + 10
        while True:
            with open(self.log_path) as f:
                found = [m.groups() for m in QUERY_RE.finditer(f.read())]
            if ("A", marker) in found:
                break
            assert time.time() < deadline, "dnsmasq log lost the marker"
            time.sleep(0.05)
        return [q for q in found
                if not re.fullmatch(r"(ready|sync\d+)\.test", q[1])]

    def count(self, qtype, name):
        return self.queries().count((qtype, name))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class FakeDns:
    """A UDP DNS peer on 127.0.0.1: answers every query with rcode, or
    never answers (rcode None)."""

    def __init__(self, rcode):
        self.rcode = rcode
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.received = 0
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def server(self):
        return "127.0.0.1:%d" % self.port

    def _serve(self):
        while self.running:
            try:
                data, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.received += 1
            if self.rcode is None or len(data) < 12:
                continue
            # same id and question; QR, RD and RA set; no records
            flags = 0x8180 | self.rcode
            reply = data[:2] + struct.pack(">HHHHH", flags, 1, 0, 0, 0)
            reply += data[12:]
            self.sock.sendto(reply, peer)

    def stop(self):
        self.running = False
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def dns(tmp_path):
    started = []

    def start(*records):
        d = Dnsmasq(str(tmp_path / ("dns%d" % len(started))), records)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


@pytest.fixture
def fake_dns():
    started = []

    def start(rcode):
        f = FakeDns(rcode)
        started.append(f)
        return f

    yield start
    for f in started:
        f.stop()


def lookup(server, *domains, args=(), timeout=60):
    """Runs mx_lookup; returns (results in domain order, stats)."""
    cmd = [MX_LOOKUP, "--server", server, "--stats"] + list(args) + \
        ["--"] + list(domains)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    stats = [x["stats"] for x in lines if "stats" in x]
    results = sorted((x for x in lines if "stats" not in x),
                     key=lambda x: x["i"])
    assert len(results) == len(domains), p.stdout
    assert len(stats) == 1, p.stdout
    return results, stats[0]


def hosts(res):
    return [(t["host"], t["pref"]) for t in res["targets"]]


def test_preference_order_and_additional_section(dns):
    d = dns("--mx-host=pref.test,mx-b.pref.test,20",
            "--mx-host=pref.test,mx-a.pref.test,10",
            "--mx-host=pref.test,mx-c.pref.test,30",
            "--mx-host=pref.test,mx-z.pref.test,40",
            "--host-record=mx-a.pref.test,192.0.2.1,2001:db8::1,120",
            "--host-record=mx-b.pref.test,192.0.2.2",
            # not a host-record: dnsmasq does not put it in the additional
            # section, so the resolver has to ask for it
            "--address=/mx-c.pref.test/192.0.2.3")
    (res,), st = lookup(d.server, "Pref.Test.")
    assert res["status"] == "ok" and res["code"] == "SR_OK", res
    assert not res["implicit"]
    # mx-z has no address at all (NXDOMAIN): skipped
    assert hosts(res) == [("mx-a.pref.test", 10), ("mx-b.pref.test", 20),
                          ("mx-c.pref.test", 30)]
    assert res["targets"][0]["addrs"] == ["192.0.2.1", "2001:db8::1"]
    assert res["targets"][1]["addrs"] == ["192.0.2.2"]
    assert res["targets"][2]["addrs"] == ["192.0.2.3"]
    # the smallest TTL of the records used (mx-a's addresses)
    assert res["ttl"] == 120
    q = d.queries()
    assert q.count(("MX", "pref.test")) == 1
    # mx-a and mx-b came from the additional section: no query for them
    assert not [x for x in q if x[1] in ("mx-a.pref.test", "mx-b.pref.test")]
    assert ("A", "mx-c.pref.test") in q and ("AAAA", "mx-c.pref.test") in q
    assert ("A", "mx-z.pref.test") in q
    assert st["queries"] == 5  # MX, A+AAAA mx-c, A+AAAA mx-z


def test_equal_preferences_shuffled_deterministically(dns):
    d = dns("--mx-host=eq.test,m1.eq.test,10",
            "--mx-host=eq.test,m2.eq.test,10",
            "--mx-host=eq.test,m3.eq.test,10",
            "--mx-host=eq.test,backup.eq.test,20",
            "--host-record=m1.eq.test,192.0.2.11",
            "--host-record=m2.eq.test,192.0.2.12",
            "--host-record=m3.eq.test,192.0.2.13",
            "--host-record=backup.eq.test,192.0.2.20")
    orders = {}
    for seed in range(1, 9):
        (res,), _ = lookup(d.server, "eq.test", args=["--seed", str(seed)])
        h = hosts(res)
        assert h[-1] == ("backup.eq.test", 20)
        assert sorted(h[:3]) == [("m%d.eq.test" % i, 10) for i in (1, 2, 3)]
        orders[seed] = tuple(x[0] for x in h)
    # a given seed always gives the same order; the seeds do not all agree
    (res,), _ = lookup(d.server, "eq.test", args=["--seed", "5"])
    assert tuple(x["host"] for x in res["targets"]) == orders[5]
    assert len(set(orders.values())) > 1, orders


def test_implicit_mx_from_address_records(dns):
    d = dns("--host-record=imp.test,192.0.2.9,2001:db8::9,200",
            "--cname=alias.test,imp.test",
            "--txt-record=nomail.test,no mail here")
    res, _ = lookup(d.server, "imp.test", "alias.test", "nomail.test")
    imp, alias, nomail = res
    assert imp["status"] == "ok" and imp["implicit"], imp
    assert hosts(imp) == [("imp.test", 0)]
    assert imp["targets"][0]["addrs"] == ["192.0.2.9", "2001:db8::9"]
    # the MX was absent: cached no longer than the negative TTL (60 s)
    assert imp["ttl"] == 60
    # a CNAME: the alias is the host, its addresses those of the target
    assert alias["status"] == "ok" and alias["implicit"], alias
    assert hosts(alias) == [("alias.test", 0)]
    assert alias["targets"][0]["addrs"] == ["192.0.2.9", "2001:db8::9"]
    # the name exists but has neither MX nor A/AAAA: permanent
    assert nomail["status"] == "permfail", nomail
    assert nomail["reason"] == "no_address"
    assert ("AAAA", "nomail.test") in d.queries()


def test_null_mx_is_permanent(dns):
    d = dns("--mx-host=null.test,.,0",
            # the same as raw RDATA: preference 0, the root name
            "--dns-rr=null2.test,15,000000",
            # a "." among real MX records is ignored (RFC 7505 section 3)
            "--mx-host=mixed.test,.,0",
            "--mx-host=mixed.test,mx.mixed.test,10",
            "--host-record=mx.mixed.test,192.0.2.40")
    res, st = lookup(d.server, "null.test", "null2.test", "mixed.test",
                     "null.test")
    for r in res[:2]:
        assert r["status"] == "permfail" and r["reason"] == "null_mx", r
        assert r["code"] == "SR_ENOTFOUND"
        assert r["targets"] == []
    assert hosts(res[2]) == [("mx.mixed.test", 10)]
    # negative cache: the second null.test is not asked again
    assert res[3]["reason"] == "null_mx" and res[3]["cached"]
    assert d.count("MX", "null.test") == 1
    assert st["cache_hits"] == 1


def test_nxdomain_is_permanent_and_cached(dns):
    d = dns("--host-record=exists.test,192.0.2.1")
    res, st = lookup(d.server, "nx.test", "nx.test", "sub.nx.test")
    for r in res:
        assert r["status"] == "permfail" and r["reason"] == "nxdomain", r
        assert r["code"] == "SR_ENOTFOUND"
    assert [r["cached"] for r in res] == [False, True, False]
    assert res[0]["ttl"] == 60  # the negative TTL cap
    assert d.count("MX", "nx.test") == 1
    assert st["cache_hits"] == 1 and st["cache_entries"] == 2


def test_mx_hosts_without_address_is_temporary(dns):
    d = dns("--mx-host=noaddr.test,nowhere.test,10",
            "--mx-host=noaddr.test,nowhere2.test,20",
            "--mx-host=half.test,gone.half.test,5",
            "--mx-host=half.test,here.half.test,10",
            "--host-record=here.half.test,192.0.2.50")
    res, st = lookup(d.server, "noaddr.test", "half.test", "noaddr.test")
    assert res[0]["status"] == "tempfail", res[0]
    assert res[0]["reason"] == "mx_no_address"
    assert hosts(res[1]) == [("here.half.test", 10)]
    # a temporary failure is not cached
    assert not res[2]["cached"]
    assert d.count("MX", "noaddr.test") == 2


def test_cache_hit_and_expiry(dns):
    d = dns("--mx-host=a.test,mx.a.test,10",
            "--host-record=mx.a.test,192.0.2.1,300",
            "--mx-host=short.test,mx.short.test,10",
            "--host-record=mx.short.test,192.0.2.2,1")
    res, st = lookup(d.server, "a.test", "A.test.", "a.test")
    assert [r["cached"] for r in res] == [False, True, True]
    assert res[1]["targets"] == res[0]["targets"]
    assert d.count("MX", "a.test") == 1
    assert st["cache_hits"] == 2 and st["queries"] == 1

    # TTL 1 s: a lookup 1.5 s later asks again
    res, st = lookup(d.server, "short.test", "short.test",
                     args=["--delay-ms", "1500"])
    assert res[0]["ttl"] == 1
    assert [r["cached"] for r in res] == [False, False]
    assert d.count("MX", "short.test") == 2
    # the cache is bounded: with room for one domain the first is evicted
    res, st = lookup(d.server, "a.test", "short.test", "a.test",
                     args=["--cache-size", "1"])
    assert [r["cached"] for r in res] == [False, False, False]
    assert st["cache_entries"] == 1


def test_concurrent_lookups_coalesce(dns):
    d = dns("--mx-host=co.test,mx1.co.test,10",
            "--mx-host=co.test,mx2.co.test,20",
            "--address=/mx1.co.test/192.0.2.61",
            "--address=/mx2.co.test/192.0.2.62")
    names = ["co.test"] * 5 + ["CO.TEST"]
    res, st = lookup(d.server, *names, args=["--parallel"])
    for r in res:
        assert r["status"] == "ok" and not r["cached"], r
        assert r["targets"] == res[0]["targets"]
    assert hosts(res[0]) == [("mx1.co.test", 10), ("mx2.co.test", 20)]
    q = d.queries()
    assert q.count(("MX", "co.test")) == 1
    assert q.count(("A", "mx1.co.test")) == 1
    assert q.count(("AAAA", "mx2.co.test")) == 1
    assert st["coalesced"] == 5 and st["queries"] == 5


def test_literals_and_bad_names_need_no_dns(dns):
    d = dns()
    res, st = lookup(d.server, "[192.0.2.1]", "[IPv6:2001:DB8::25]",
                     "[192.0.2.300]", "bad_name.test", "-x.test")
    assert hosts(res[0]) == [("[192.0.2.1]", 0)]
    assert res[0]["targets"][0]["addrs"] == ["192.0.2.1"]
    assert res[0]["reason"] == "literal"
    assert res[1]["targets"][0]["addrs"] == ["2001:db8::25"]
    for r in res[2:]:
        assert r["status"] == "permfail" and r["reason"] == "bad_domain", r
        assert r["code"] == "SR_EINVAL"
    assert d.queries() == []
    assert st["queries"] == 0


def test_servfail_refused_and_timeout_are_temporary(dns, fake_dns):
    servfail = fake_dns(2)
    (res,), _ = lookup(servfail.server, "sf.test",
                       args=["--timeout-ms", "300", "--tries", "1"])
    assert res["status"] == "tempfail" and res["reason"] == "servfail", res
    assert res["code"] == "SR_EIO" and res["ttl"] == 0
    assert servfail.received >= 1

    # dnsmasq refuses names outside its zone
    d = dns()
    (res,), _ = lookup(d.server, "example.org",
                       args=["--timeout-ms", "300", "--tries", "1"])
    assert res["status"] == "tempfail", res

    silent = fake_dns(None)
    t0 = time.time()
    res, st = lookup(silent.server, "slow.test", "slow.test",
                     args=["--timeout-ms", "200", "--tries", "2",
                           "--parallel"])
    for r in res:
        assert r["status"] == "tempfail" and r["reason"] == "timeout", r
        assert r["code"] == "SR_ETIMEDOUT"
    # two tries (200 ms, then 400 ms) of one coalesced query
    assert 0.5 < time.time() - t0 < 10
    assert silent.received == 2 and st["queries"] == 1


def test_close_cancels_pending_lookups(fake_dns):
    silent = fake_dns(None)
    res, st = lookup(silent.server, "p1.test", "p2.test", "p1.test",
                     "[192.0.2.1]",
                     args=["--parallel", "--timeout-ms", "5000",
                           "--cancel-after-ms", "200"], timeout=20)
    assert [r["status"] for r in res] == ["cancelled"] * 3 + ["ok"]
    assert res[0]["code"] == "SR_ECANCELED"
    assert st["inflight"] == 0
