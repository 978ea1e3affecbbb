"""The admin API over TLS (admin.tls_cert / admin.tls_key): Python's ssl
and clusterctl as clients, certificate checks, and what a plaintext or
broken client gets."""
import http.client
import json
import os
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from cluster import CLUSTERCTL, SMARTRELAYD, free_ports, make_ip_cert

TOKEN = "adm1n-T0ken"


def clusterctl(*args, env=None):
    e = dict(os.environ)
    e.pop("SMARTRELAY_CA", None)
    e.pop("SMARTRELAY_ADMIN", None)
    e["SMARTRELAY_TOKEN"] = TOKEN
    e.update(env or {})
    return subprocess.run([CLUSTERCTL] + list(args), capture_output=True,
                          text=True, env=e, timeout=60)


def get_status(node, token=TOKEN):
    req = urllib.request.Request(node.admin_url + "/v1/status")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=10,
                                    context=node.cluster.admin_ssl) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def read_until_closed(sock, limit=5.0):
    """Everything the peer sends until it closes (or limit seconds)."""
    sock.settimeout(limit)
    data = b""
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            break
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture
def tls_node(make_cluster):
    c = make_cluster(n=1, token=TOKEN, admin_tls=True, peer_tls=False)
    c.start()
    return c.nodes[0]


def test_https_with_and_without_token(tls_node):
    node = tls_node
    assert node.admin_url.startswith("https://")
    code, st = get_status(node)
    assert code == 200 and st["node_id"] == 1
    code, body = get_status(node, token=None)
    assert code == 401, body
    with open(node.log_path) as f:
        log = f.read()
    assert "event=admin_tls" in log and node.cluster.admin_cert in log


def test_plain_http_to_the_tls_port_gets_no_http_answer(tls_node):
    node = tls_node
    with pytest.raises(Exception) as ei:
        urllib.request.urlopen("http://%s/v1/status" % node.admin, timeout=5)
    # not an HTTP status (HTTPError), but a broken connection
    assert not isinstance(ei.value, urllib.error.HTTPError)
    s = socket.create_connection(("127.0.0.1", node.admin_port), timeout=5)
    s.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
              + TOKEN.encode() + b"\r\n\r\n")
    data = read_until_closed(s)
    s.close()
    assert b"HTTP/" not in data
    # the node is fine afterwards
    assert get_status(node)[0] == 200


def test_keep_alive_pipelining_and_large_bodies_over_tls(tls_node):
    node = tls_node
    ctx = node.cluster.admin_ssl
    # keep-alive: several requests on one TLS connection
    conn = http.client.HTTPSConnection("127.0.0.1", node.admin_port,
                                       timeout=10, context=ctx)
    for _ in range(3):
        conn.request("GET", "/v1/status",
                     headers={"Authorization": "Bearer " + TOKEN})
        r = conn.getresponse()
        assert r.status == 200
        assert json.loads(r.read())["node_id"] == 1
    # a body of many TLS records (arrives in several reads, several
    # records per read): answered as a whole, 400 for bad JSON
    big = b"[" + b"1," * 150000 + b"x"
    conn.request("POST", "/v1/policy", body=big,
                 headers={"Authorization": "Bearer " + TOKEN,
                          "Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 400, r.read()
    r.read()
    conn.close()
    # pipelining: two requests in one TLS write, two answers in order
    raw = socket.create_connection(("127.0.0.1", node.admin_port), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    req = ("GET /v1/status HTTP/1.1\r\nHost: x\r\n"
           "Authorization: Bearer %s\r\n\r\n" % TOKEN)
    last = req.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n")
    s.sendall((req + last).encode())
    data = read_until_closed(s, limit=10)
    s.close()
    assert data.count(b"HTTP/1.1 200 OK") == 2, data[:300]


def test_clusterctl_https_with_ca(tls_node):
    node = tls_node
    cert = node.cluster.admin_cert
    url = "https://127.0.0.1:%d" % node.admin_port
    p = clusterctl("-a", url, "--ca", cert, "status")
    assert p.returncode == 0, p.stderr
    assert "leader" in p.stdout and "127.0.0.1" in p.stdout
    # the CA from the environment; a trailing slash is accepted
    p = clusterctl("-a", url + "/", "-o", "json", "status",
                   env={"SMARTRELAY_CA": cert})
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["node_id"] == 1
    # a POST over TLS (body and answer)
    p = clusterctl("-a", url, "--ca", cert, "-o", "json", "digest")
    assert p.returncode == 0, p.stderr
    # the harness's own helpers go through TLS too
    assert "leader" in node.ctl("status").stdout
    # wrong token: the HTTP error comes through the TLS connection
    p = clusterctl("-a", url, "--ca", cert, "-t", "wrong", "status")
    assert p.returncode == 1 and "401" in p.stderr


def test_clusterctl_refuses_an_untrusted_certificate(tls_node, tmp_path):
    node = tls_node
    url = "https://127.0.0.1:%d" % node.admin_port
    other, other_key = str(tmp_path / "other.pem"), str(tmp_path / "other.key")
    make_ip_cert(other, other_key)
    p = clusterctl("-a", url, "--ca", other, "status")
    assert p.returncode == 1, p.stdout
    assert "certificate" in p.stderr, p.stderr
    assert p.stdout == ""
    # the right certificate but another name: the host is checked
    p = clusterctl("-a", "https://localhost:%d" % node.admin_port, "--ca",
                   node.cluster.admin_cert, "status")
    assert p.returncode == 1
    assert "certificate" in p.stderr and "mismatch" in p.stderr, p.stderr
    # no --ca: the system store does not know our self-signed certificate
    p = clusterctl("-a", url, "status")
    assert p.returncode == 1 and "certificate" in p.stderr, p.stderr
    # plain HTTP to the TLS port: an error, not a hang
    p = clusterctl("-a", "127.0.0.1:%d" % node.admin_port, "status")
    assert p.returncode == 1 and p.stderr.startswith("clusterctl: ")
    # --ca with a plaintext address is a usage error
    p = clusterctl("-a", "127.0.0.1:%d" % node.admin_port, "--ca",
                   node.cluster.admin_cert, "status")
    assert p.returncode == 2 and "https://" in p.stderr
    p = clusterctl("-a", "ftp://127.0.0.1:1", "status")
    assert p.returncode == 2
    # the node served all that and is still fine
    assert get_status(node)[0] == 200


def test_stalled_handshake_does_not_block_others(tls_node):
    # A client that stops in the middle of its handshake must not stop the
    # node serving others.
    node = tls_node
    s = socket.create_connection(("127.0.0.1", node.admin_port), timeout=5)
    s.sendall(b"\x16\x03\x01\x00\x05\x01")  # the start of a ClientHello
    assert get_status(node)[0] == 200
    s.close()
    assert get_status(node)[0] == 200


def test_stalled_handshake_is_closed_within_the_idle_timeout(make_cluster):
    """admin.idle_timeout_s bounds a TLS handshake that never finishes (a
    client that sends half a ClientHello and waits) as well as an idle
    plain connection; the node keeps serving."""
    import socket
    c = make_cluster(n=1, token=TOKEN, admin_tls=True, peer_tls=False,
                     admin_idle_timeout_s=2)
    c.start()
    node = c.nodes[0]
    host, port = node.admin.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=10)
    # the first bytes of a TLS record header (handshake, TLS 1.0), no more
    s.sendall(bytes([0x16, 0x03, 0x01, 0x00, 0xc8, 0x01]))
    t0 = time.time()
    try:
        data = s.recv(1024)
        while data:
            data = s.recv(1024)
    except ConnectionResetError:
        pass
    waited = time.time() - t0
    s.close()
    assert 1.5 <= waited < 8, waited
    assert get_status(node)[0] == 200


def test_admin_tls_config_errors(tmp_path):
    key = tmp_path / "k.pem"
    cert = tmp_path / "c.pem"
    make_ip_cert(str(cert), str(key))
    f = tmp_path / "half.yaml"
    f.write_text("admin:\n  tls_cert: \"%s\"\n" % cert)
    p = subprocess.run([SMARTRELAYD, "--config", str(f)],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode != 0
    assert "admin.tls_key: required when admin.tls_cert is set" in p.stderr
    # a key that is not the certificate's: refused at startup, naming the
    # admin keys
    other_key = tmp_path / "k2.pem"
    make_ip_cert(str(tmp_path / "c2.pem"), str(other_key))
    smtp, admin, raft, rpc = free_ports(4)
    f = tmp_path / "mismatch.yaml"
    f.write_text("node:\n  data_dir: \"%s\"\n"
                 "raft:\n  listen: 127.0.0.1:%d\n"
                 "  peers:\n    - {id: 1, raft_address: \"127.0.0.1:%d\", "
                 "rpc_address: \"127.0.0.1:%d\"}\n"
                 "rpc:\n  listen: 127.0.0.1:%d\n"
                 "smtp:\n  listen: [127.0.0.1:%d]\n"
                 "admin:\n  listen: 127.0.0.1:%d\n"
                 "  tls_cert: \"%s\"\n  tls_key: \"%s\"\n"
                 % (tmp_path / "data", raft, raft, rpc, rpc, smtp, admin,
                    cert, other_key))
    p = subprocess.run([SMARTRELAYD, "--config", str(f)],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode != 0
    assert "admin.tls_cert/admin.tls_key" in p.stderr, p.stderr
    assert "smtp.tls" not in p.stderr
