"""Delivery through DNS: MX records served by dnsmasq on 127.0.0.1 lead
to the destination; a null MX and a domain that does not exist bounce at
once, without any connection."""
import time

from dest import Dest
from smtp_util import code_of, send
from test_delivery import wait_states
from test_mx import dns  # noqa: F401  (the dnsmasq fixture)


def test_mx_delivery_null_mx_and_nxdomain(make_cluster, dns):
    dest = Dest()
    try:
        ns = dns("--mx-host=good.test,mx1.good.test,10",
                      "--mx-host=good.test,mx2.good.test,20",
                      "--host-record=mx1.good.test,127.0.0.1",
                      # mx2 is a dead address: never tried while mx1 works
                      "--host-record=mx2.good.test,127.0.0.9",
                      "--mx-host=null.test,.,0")
        c = make_cluster(n=3, delivery={
            "dns_servers": '"%s"' % ns.server, "port": dest.port,
            "tls": "none"}).start()
        codes = {}
        for i, rcpt in enumerate(("a@good.test", "b@null.test",
                                  "c@nope.test", "d@GOOD.test")):
            code, text = send(c.nodes[i % 3].smtp_port, rcpts=(rcpt,))
            assert code == 250, text
            codes[rcpt] = code_of(text)
        n0 = c.nodes[0]
        rs = wait_states(n0, codes["a@good.test"], ["delivered"])
        assert "mx1.good.test[127.0.0.1]" in str(
            n0.api("GET", "/v1/events")[1]), "relay not recorded"
        wait_states(n0, codes["d@GOOD.test"], ["delivered"])
        rs = wait_states(n0, codes["b@null.test"], ["bounced"])
        assert "null" in rs[0]["last_reply"].lower(), rs
        assert rs[0]["attempts"] == 1
        rs = wait_states(n0, codes["c@nope.test"], ["bounced"])
        assert "nxdomain" in rs[0]["last_reply"].lower() or \
            "not exist" in rs[0]["last_reply"].lower(), rs
        time.sleep(0.5)
        got = sorted(r for _, rs_, _ in dest.received() for r in rs_)
        assert got == ["a@good.test", "d@GOOD.test"], got
        # one MX query per domain for both good.test messages at most
        assert ns.count("MX", "good.test") <= 3
    finally:
        dest.stop()
