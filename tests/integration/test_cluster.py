"""Membership, leadership transfer, snapshots, shutdown, config errors."""
import json
import os
import subprocess
import time

from cluster import SMARTRELAYD
from smtp_util import code_of, send


def test_member_add_catches_up_from_snapshot_transfer_and_remove(
        make_cluster):
    c = make_cluster(n=3, snapshot_threshold=64, snapshot_trailing=16).start()
    codes = []
    for i in range(150):
        code, text = send(c.nodes[i % 3].smtp_port)
        assert code == 250
        codes.append(code_of(text))
    leader = c.wait_leader()
    new = c.add_node(4)
    new.start()
    p = leader.ctl("member", "add", "4", new.raft_address)
    st = c.nodes[0].status()
    members = {m["id"]: m["role"] for m in st["members"]}
    assert members.get(4) == "voter", st
    c.wait_converged()
    # The new node got the state by snapshot (the log before it was
    # truncated) and serves every message.
    assert "event=restored" in open(new.log_path).read()
    st, listing = new.api("GET", "/v1/messages")
    assert set(codes) <= set(listing["codes"])

    # leader transfer, through a follower's admin API
    follower = next(n for n in c.nodes if n.id != leader.id and n.id != 4)
    p = follower.ctl("leader", "transfer", str(follower.id))
    new_leader = c.wait_leader()
    assert new_leader.id == follower.id

    # remove node 4: it stops receiving entries
    follower.ctl("member", "remove", "4")
    before = new.status()["applied_index"]
    for i in range(5):
        assert send(c.nodes[0].smtp_port)[0] == 250
    time.sleep(1)
    assert new.status()["applied_index"] == before
    st = c.nodes[0].status()
    assert 4 not in {m["id"] for m in st["members"]}
    c.wait_converged(nodes=[n for n in c.nodes if n.id != 4])
    del p


def test_clusterctl_status_and_message_show(cluster3):
    code, text = send(cluster3.nodes[0].smtp_port)
    mc = code_of(text)
    n = cluster3.nodes[1]
    p = n.ctl("status")
    assert "leader" in p.stdout and "127.0.0.1" in p.stdout
    p = n.ctl("-o", "json", "status")
    st = json.loads(p.stdout)
    assert len(st["members"]) == 3
    cluster3.wait_converged()
    p = n.ctl("message", "show", mc)
    assert mc in p.stdout and "b@example.org" in p.stdout
    p = n.ctl("message", "show", "99/00-00000-00000000", check=False)
    assert p.returncode != 0 and p.stderr.strip()


def test_clusterctl_policy_apply_yaml(cluster3, tmp_path):
    f = tmp_path / "policy.yaml"
    f.write_text("customers:\n  - name: default\n    networks: [127.0.0.1/32]\n"
                 "    max_recipients: 2\n")
    cluster3.nodes[2].ctl("policy", "apply", str(f))
    cluster3.wait_converged()
    p = cluster3.nodes[0].ctl("-o", "json", "policy", "show")
    assert json.loads(p.stdout)["customers"][0]["max_recipients"] == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("customers:\n  - name: default\n    max_sessions: -3\n")
    p = cluster3.nodes[0].ctl("policy", "apply", str(bad), check=False)
    assert p.returncode != 0 and "max_sessions" in p.stderr


def test_sigterm_is_clean_and_restart_keeps_state(make_cluster):
    c = make_cluster(n=1).start()
    node = c.nodes[0]
    codes = [code_of(send(node.smtp_port)[1]) for _ in range(5)]
    digest = c.wait_converged()
    assert node.stop() == 0
    assert "event=stopped" in open(node.log_path).read()
    node.start()
    c.wait_leader()
    d2 = c.wait_converged()
    assert d2["digest"] == digest["digest"]
    st, listing = node.api("GET", "/v1/messages")
    assert set(codes) <= set(listing["codes"])
    # a new incarnation: codes after the restart differ in the BB part
    after = code_of(send(node.smtp_port)[1])
    assert after.split("-")[0] != codes[0].split("-")[0]


def test_bad_config_is_refused_naming_the_key(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("raft:\n  election_timeout_ms: banana\n")
    p = subprocess.run([SMARTRELAYD, "--config", str(f)],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode != 0
    assert "raft.election_timeout_ms" in p.stderr
    f.write_text("smtp:\n  lisen: [x]\n")
    p = subprocess.run([SMARTRELAYD, "--config", str(f)],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode != 0 and "smtp.lisen" in p.stderr


def test_admin_token_required(make_cluster):
    c = make_cluster(n=1, token="s3cret").start()
    node = c.nodes[0]
    import urllib.request, urllib.error
    try:
        urllib.request.urlopen("http://%s/v1/status" % node.admin, timeout=5)
        raise AssertionError("no token needed")
    except urllib.error.HTTPError as e:
        assert e.code == 401
    assert node.status()["node_id"] == 1


def test_clusterctl_failover_moves_leadership(cluster3):
    leader = cluster3.wait_leader()
    target = next(n for n in cluster3.nodes if n.id != leader.id)
    p = leader.ctl("failover", str(target.id))
    assert p.returncode == 0
    assert cluster3.wait_leader().id == target.id
    p = target.ctl("failover", "1", "2", check=False)
    assert p.returncode == 2 and "failover" in p.stderr


def test_clusterctl_creates_cluster_ca_and_node_certificates(tmp_path):
    from cluster import CLUSTERCTL

    def ctl(*args):
        return subprocess.run([CLUSTERCTL] + list(args), capture_output=True,
                              text=True, timeout=30)

    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert ctl("ca", "create", a).returncode == 0
    assert ctl("cert", "create", a, "3").returncode == 0
    assert ctl("ca", "create", b).returncode == 0
    assert ctl("cert", "create", b, "4").returncode == 0
    assert oct(os.stat(os.path.join(a, "node3.key")).st_mode & 0o777) == \
        "0o600"
    for purpose in ("sslserver", "sslclient"):
        p = subprocess.run(["openssl", "verify", "-CAfile", a + "/ca.pem",
                            "-purpose", purpose, a + "/node3.pem"],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stdout + p.stderr
    # a certificate from another cluster's CA does not verify
    p = subprocess.run(["openssl", "verify", "-CAfile", a + "/ca.pem",
                        b + "/node4.pem"], capture_output=True, text=True)
    assert p.returncode != 0
    p = subprocess.run(["openssl", "x509", "-in", a + "/node3.pem",
                        "-noout", "-subject", "-ext", "subjectAltName"],
                       capture_output=True, text=True)
    assert "CN = node3" in p.stdout and "DNS:node3" in p.stdout
    # never overwrites, refuses bad ids, needs a CA
    assert ctl("ca", "create", a).returncode == 1
    assert ctl("cert", "create", a, "0").returncode == 1
    p = ctl("cert", "create", str(tmp_path / "none"), "1")
    assert p.returncode == 1 and "no CA" in p.stderr
