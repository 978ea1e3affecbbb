"""A 3-node cluster of real daemons in network namespaces, with a floating
IP and a client namespace (shared by the floating-IP and chaos tests)."""
import os
import signal
import subprocess
import time

import pytest

from cluster import CLUSTERCTL, SMARTRELAYD
from netns import Net

CLIENT = r'''
import smtplib, sys
try:
    s = smtplib.SMTP(sys.argv[1], 2525, timeout=3)
    s.ehlo("client")
    s.mail("a@example.com")
    s.rcpt("b@example.org")
    code, text = s.data("Subject: float\r\n\r\nhi\r\n")
    print(code, s.sock.getpeername()[0], text.decode())
    s.quit()
except Exception as e:
    print(0, "-", repr(e))
'''


@pytest.fixture
def fleet(tmp_path):
    yield from make_fleet(tmp_path, 3)


@pytest.fixture
def fleet5(tmp_path):
    yield from make_fleet(tmp_path, 5)


def make_fleet(tmp_path, n):
    if os.getuid() != 0:
        pytest.fail("network namespaces need root")
    ids = list(range(1, n + 1))
    net = Net(["n%d" % i for i in ids] + ["cl"])
    procs = {}
    floating = net.subnet + ".100"
    # Mutual TLS between nodes, as in production.
    ca_dir = tmp_path / "ca"
    subprocess.run([CLUSTERCTL, "ca", "create", str(ca_dir)], check=True,
                   capture_output=True)
    for i in ids:
        subprocess.run([CLUSTERCTL, "cert", "create", str(ca_dir), str(i)],
                       check=True, capture_output=True)

    def config(i):
        peers = "".join(
            '\n    - {id: %d, raft_address: "%s:7001", rpc_address: '
            '"%s:7101"}' % (k, net.addr("n%d" % k), net.addr("n%d" % k))
            for k in ids)
        path = tmp_path / ("n%d.yaml" % i)
        path.write_text(f"""node:
  id: {i}
  data_dir: "{tmp_path}/data{i}"
raft:
  listen: "{net.addr('n%d' % i)}:7001"
  peers:{peers}
rpc:
  listen: "{net.addr('n%d' % i)}:7101"
cluster:
  tls_ca: "{ca_dir}/ca.pem"
  tls_cert: "{ca_dir}/node{i}.pem"
  tls_key: "{ca_dir}/node{i}.key"
smtp:
  listen: ["0.0.0.0:2525"]
  commit_timeout_ms: 3000
delivery:
  enabled: false
floating:
  address: "{floating}/24"
  interface: eth0
  arp_count: 3
admin:
  listen: "127.0.0.1:8080"
""")
        return str(path)

    def start(i):
        log = open(tmp_path / ("n%d.log" % i), "a")
        procs[i] = net.popen("n%d" % i, [SMARTRELAYD, "--config", config(i)],
                             stdout=log, stderr=subprocess.STDOUT)
        log.close()

    class F:
        pass
    f = F()
    f.net, f.procs, f.start, f.floating = net, procs, start, floating
    f.ids = ids
    f.data_dir = lambda i: str(tmp_path / ("data%d" % i))
    f.log = lambda i: (tmp_path / ("n%d.log" % i)).read_text()
    errors = []
    try:
        for i in ids:
            start(i)
        yield f
    finally:
        alive = {i: p for i, p in procs.items() if p.poll() is None}
        for p in alive.values():
            p.send_signal(signal.SIGTERM)
        for i, p in alive.items():
            try:
                if p.wait(timeout=10) != 0:
                    errors.append("node %d exited %s" % (i, p.returncode))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                errors.append("node %d ignored SIGTERM" % i)
        net.close()
        for i in ids:
            path = tmp_path / ("n%d.log" % i)
            log = path.read_text() if path.exists() else ""
            for marker in ("Sanitizer", "runtime error:"):
                if marker in log:
                    at = max(0, log.index(marker) - 200)
                    errors.append("node %d: %s" % (i, log[at:at + 2000]))
    assert not errors, "; ".join(errors)


def leader(f, exclude=(), timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for i in f.ids:
            if i in exclude or f.procs[i].poll() is not None:
                continue
            st = f.net.api("n%d" % i, "GET", "/v1/status")
            if st and st["state"] == "leader" and st["ready"]:
                return i
        time.sleep(0.05)
    raise AssertionError("no leader")


def holders(f):
    return [i for i in f.ids if f.net.has_addr("n%d" % i, f.floating)]


def wait_holders(f, want, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if holders(f) == want:
            return
        time.sleep(0.05)
    raise AssertionError("holders %s, want %s" % (holders(f), want))


def send(f):
    p = f.net.run("cl", "/usr/bin/python3", "-c", CLIENT, f.floating,
                  timeout=30)
    code, peer, text = p.stdout.strip().split(" ", 2)
    return int(code), peer, text


