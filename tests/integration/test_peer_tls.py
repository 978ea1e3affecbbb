"""Mutual TLS between nodes: Raft and node RPC links need a certificate
from the cluster CA that names the node id the peer claims."""
import os
import socket
import ssl
import struct
import subprocess
import time

from cluster import CLUSTERCTL
from smtp_util import code_of, send

HELLO_LEN = 280


def hello(purpose, node_id, address="127.0.0.1:1"):
    h = b"SRPEER1" + purpose.encode() + struct.pack(">Q", node_id)
    h += b"\0" * 8 + address.encode()
    return h + b"\0" * (HELLO_LEN - len(h))


def make_ca(path, *ids):
    subprocess.run([CLUSTERCTL, "ca", "create", path], check=True,
                   capture_output=True)
    for i in ids:
        subprocess.run([CLUSTERCTL, "cert", "create", path, str(i)],
                       check=True, capture_output=True)


def tls_client(ca, cert=None, key=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def outcome(ctx, address, server_name, payload, wait=1.5):
    """Connects, sends payload after the handshake, and reports what the
    server did: 'open' (still connected after `wait`), 'closed', or
    'refused:<reason>' when the handshake itself failed."""
    host, port = address.rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=5)
    try:
        s = ctx.wrap_socket(raw, server_hostname=server_name)
    except (ssl.SSLError, OSError) as e:
        raw.close()
        return "refused:%s" % e
    try:
        s.sendall(payload)
        s.settimeout(wait)
        data = s.recv(1)
        return "closed" if data == b"" else "data"
    except socket.timeout:
        return "open"
    except (ssl.SSLError, OSError):
        return "closed"
    finally:
        s.close()


def wait_log(node, needle, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if needle in open(node.log_path, errors="replace").read():
            return True
        time.sleep(0.1)
    return False


def test_links_are_tls13_and_mail_flows(make_cluster):
    c = make_cluster(n=3, log_level="debug").start()
    for i in range(3):
        code, text = send(c.nodes[i].smtp_port)
        assert code == 250, text
    c.wait_converged()
    logs = "".join(open(n.log_path, errors="replace").read() for n in c.nodes)
    # Raft and RPC links both came up over TLS 1.3, in both directions.
    for purpose in ("R", "P"):
        for direction in ("in", "out"):
            needle = ("event=peer_link_up purpose=%s direction=%s"
                      % (purpose, direction))
            assert needle in logs, purpose + direction
    assert "tls=TLSv1.3" in logs
    assert "event=cluster_plaintext" not in logs


def test_strangers_are_refused_and_members_accepted(make_cluster, tmp_path):
    c = make_cluster(n=3).start()
    leader = c.wait_leader()
    ca, cert2, key2 = c.node_cert(2)
    rogue = str(tmp_path / "rogue")
    make_ca(rogue, 2)
    for node_addr, purpose in ((leader.raft_address, "R"),
                               (leader.rpc_address, "P")):
        name = "node%d" % leader.id
        # No client certificate: the server ends the handshake.
        r = outcome(tls_client(ca), node_addr, name, hello(purpose, 2))
        assert r != "open", r
        # A certificate for node 2 from another CA.
        r = outcome(tls_client(ca, rogue + "/node2.pem", rogue + "/node2.key"),
                    node_addr, name, hello(purpose, 2))
        assert r != "open", r
        # The cluster's certificate of node 2, claiming to be node 3.
        r = outcome(tls_client(ca, cert2, key2), node_addr, name,
                    hello(purpose, 3))
        assert r == "closed", r
        # The wrong purpose (a Raft hello on the RPC port and back).
        other = "P" if purpose == "R" else "R"
        r = outcome(tls_client(ca, cert2, key2), node_addr, name,
                    hello(other, 2))
        assert r == "closed", r
        # The control: node 2's certificate, claiming node 2, stays open.
        r = outcome(tls_client(ca, cert2, key2), node_addr, name,
                    hello(purpose, 2))
        assert r == "open", r
    assert wait_log(leader, "peer did not return a certificate")
    assert wait_log(leader, "unable to get local issuer certificate")
    assert wait_log(leader, "claimed node id is not the one in its "
                    "certificate")
    assert wait_log(leader, "reason=\"bad hello\"")
    # A node that is not who the client dialled: asking for node 3 at the
    # leader's address fails the client's own check.
    if leader.id != 3:
        r = outcome(tls_client(ca, cert2, key2), leader.raft_address, "node3",
                    hello("R", 2))
        assert r.startswith("refused:"), r
    # Nothing of this disturbed the cluster.
    code, text = send(c.nodes[0].smtp_port)
    assert code == 250, text


def test_node_with_foreign_certificate_cannot_join(make_cluster, tmp_path):
    c = make_cluster(n=3).start()
    for i in range(5):
        assert send(c.nodes[i % 3].smtp_port)[0] == 250
    leader = c.wait_leader()
    # Node 4 has a certificate from the cluster CA: as a standby it gets
    # the log. Node 5's certificate comes from another CA: it gets nothing,
    # and the leader says why.
    good = c.add_node(4)
    good.start()
    rogue_dir = str(tmp_path / "rogue")
    make_ca(rogue_dir, 5)
    bad = c.add_node(5)
    text = open(bad.config_path).read()
    text = text.replace(c.ca_dir + "/ca.pem", rogue_dir + "/ca.pem")
    text = text.replace(c.ca_dir + "/node5.", rogue_dir + "/node5.")
    with open(bad.config_path, "w") as f:
        f.write(text)
    bad.start()
    for node in (good, bad):
        code, body = leader.api("POST", "/v1/members", {
            "id": node.id, "address": node.raft_address, "role": "standby"})
        assert code == 200, body
    deadline = time.time() + 15
    while time.time() < deadline:
        if good.status()["applied_index"] >= leader.status()["commit_index"]:
            break
        time.sleep(0.1)
    assert good.status()["applied_index"] >= leader.status()["commit_index"]
    assert wait_log(leader, "event=peer_link_refused")
    time.sleep(1)
    assert bad.status()["applied_index"] == 0
    # The cluster keeps working with the stranger knocking.
    code, text = send(c.nodes[1].smtp_port)
    assert code == 250, text
    code_of(text)


def test_daemon_refuses_a_certificate_for_another_node(make_cluster):
    c = make_cluster(n=1)
    node = c.nodes[0]
    c.node_cert(2)
    text = open(node.config_path).read().replace(
        "/node1.pem", "/node2.pem").replace("/node1.key", "/node2.key")
    with open(node.config_path, "w") as f:
        f.write(text)
    from cluster import SMARTRELAYD
    p = subprocess.run([SMARTRELAYD, "--config", node.config_path],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode != 0
    assert "cluster.tls_cert" in p.stderr + p.stdout
    assert "does not name node1" in p.stderr + p.stdout


def test_plaintext_cluster_still_works_and_warns(make_cluster):
    c = make_cluster(n=3, peer_tls=False).start()
    code, text = send(c.nodes[1].smtp_port)
    assert code == 250, text
    assert "event=cluster_plaintext" in open(c.nodes[0].log_path).read()
    assert not os.path.exists(c.ca_dir)
