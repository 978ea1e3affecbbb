"""Starts and drives real smartrelayd processes on 127.0.0.1 for tests.

Each Cluster gets free ports and a temporary directory, writes one YAML
config per node (docs/CONFIG.md), starts the daemons, and stops them all
(SIGTERM, then SIGKILL) when closed, so no process outlives a test.
"""
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request

BUILD = os.environ.get(
    "SMARTRELAY_BUILD",
    os.path.join(os.path.dirname(__file__), "..", "..", "build"))
SMARTRELAYD = os.path.join(BUILD, "smartrelayd")
CLUSTERCTL = os.path.join(BUILD, "clusterctl")


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


# Ports handed out by this process. The kernel's ephemeral range is
# avoided: an outgoing connection (a node dialling a peer, a test client)
# takes its local port from there, and could take a port we picked and
# released before the node under test binds it. Below the range only
# explicit binds compete, and a random start per process keeps two test
# runs on one machine apart.
_next_port = [None]


def free_ports(n):
    """Returns n distinct ports, outside the ephemeral range, that are
    free on 127.0.0.1 right now."""
    lo_eph, hi_eph = _ephemeral_range()
    lo, hi = 10000, min(lo_eph, 32768) - 1
    if hi - lo < 1000:          # odd ephemeral range: take the space above
        lo, hi = hi_eph + 1, 65535
    if _next_port[0] is None:
        _next_port[0] = lo + random.randrange(hi - lo)
    ports = []
    tries = 0
    while len(ports) < n:
        tries += 1
        if tries > 10000:
            raise RuntimeError("no free ports in %d-%d" % (lo, hi))
        port = _next_port[0]
        _next_port[0] = lo if port >= hi else port + 1
        s = socket.socket()
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        ports.append(port)
    return ports


def make_ip_cert(cert, key, ip="127.0.0.1"):
    """A self-signed certificate (and its key) for an IP address."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj",
         "/CN=%s" % ip, "-addext", "subjectAltName=IP:%s" % ip,
         "-keyout", key, "-out", cert], check=True, capture_output=True)


class Node:
    def __init__(self, cluster, node_id):
        self.cluster = cluster
        self.id = node_id
        (self.smtp_port, self.admin_port, self.raft_port,
         self.rpc_port, self.track_port) = free_ports(5)
        self.data_dir = os.path.join(cluster.dir, "node%d" % node_id)
        self.config_path = os.path.join(cluster.dir, "node%d.yaml" % node_id)
        self.log_path = os.path.join(cluster.dir, "node%d.log" % node_id)
        self.proc = None
        self.preexec = None  # run in the child before exec (tests' limits)
        # where listeners declared by the policy open: one loopback address
        # per node, so that every node can serve the same port
        self.customer_host = "127.0.1.%d" % node_id

    @property
    def raft_address(self):
        return "127.0.0.1:%d" % self.raft_port

    @property
    def rpc_address(self):
        return "127.0.0.1:%d" % self.rpc_port

    @property
    def admin(self):
        return "127.0.0.1:%d" % self.admin_port

    @property
    def admin_url(self):
        """The admin API's base URL: https:// when the cluster serves it
        over TLS (admin_tls=True), else http://."""
        scheme = "https" if self.cluster.admin_tls else "http"
        return "%s://%s" % (scheme, self.admin)

    def ctl_addr_args(self):
        """clusterctl's -a (and --ca for TLS) for this node."""
        if self.cluster.admin_tls:
            return ["-a", self.admin_url, "--ca", self.cluster.admin_cert]
        return ["-a", self.admin]

    def write_config(self, peers, bootstrap=True, extra=""):
        peer_lines = "".join(
            '\n    - {id: %d, raft_address: "%s", rpc_address: "%s"}'
            % (p.id, p.raft_address, p.rpc_address) for p in peers)
        c = self.cluster
        text = f"""node:
  id: {self.id}
  data_dir: "{self.data_dir}"
log:
  level: {c.log_level}
raft:
  listen: "{self.raft_address}"
  bootstrap: {"true" if bootstrap else "false"}
  snapshot_threshold: {c.snapshot_threshold}
  snapshot_trailing: {c.snapshot_trailing}
"""
        if peers:
            text += "  peers:" + peer_lines + "\n"
        text += f"""rpc:
  listen: "{self.rpc_address}"
"""
        if c.peer_tls:
            ca, cert, key = c.node_cert(self.id)
            text += f"""cluster:
  tls_ca: "{ca}"
  tls_cert: "{cert}"
  tls_key: "{key}"
"""
        text += f"""smtp:
  listen: ["127.0.0.1:{self.smtp_port}"]
  customer_host: "{self.customer_host}"
  commit_timeout_ms: {c.commit_timeout_ms}
  command_timeout_s: {c.command_timeout_s}
  data_timeout_s: {c.data_timeout_s}
"""
        if c.tls:
            text += f'  tls_cert: "{c.cert}"\n  tls_key: "{c.key}"\n'
        text += f"""admin:
  listen: "{self.admin}"
"""
        if c.token:
            text += f'  token: "{c.token}"\n'
        if c.admin_tls:
            text += (f'  tls_cert: "{c.admin_cert}"\n'
                     f'  tls_key: "{c.admin_key}"\n')
        if c.admin_idle_timeout_s:
            text += f"  idle_timeout_s: {c.admin_idle_timeout_s}\n"
        text += f"""tracking:
  listen: "127.0.0.1:{self.track_port}"
"""
        if c.tracking_tls:
            text += (f'  tls_cert: "{c.admin_cert}"\n'
                     f'  tls_key: "{c.admin_key}"\n')
        # Delivery is off unless the test asks for it: it would look up MX
        # records with the system resolver, which is not on loopback.
        d = c.delivery if c.delivery is not None else {"enabled": "false"}
        if d:
            text += "delivery:\n" + "".join(
                "  %s: %s\n" % kv for kv in d.items())
        text += c.extra_config + extra
        with open(self.config_path, "w") as f:
            f.write(text)

    def start(self):
        assert self.proc is None or self.proc.poll() is not None
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [SMARTRELAYD, "--config", self.config_path],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=self.preexec)
        log.close()
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("node %d exited: %s" % (self.id, self.tail()))
            try:
                self.api("GET", "/v1/status")
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("node %d did not start" % self.id)

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def stop(self):
        """SIGTERM and wait: a clean shutdown must finish in 10 s."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError("node %d ignored SIGTERM" % self.id)
        return self.proc.returncode if self.proc else None

    @property
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def api(self, method, path, body=None, timeout=10):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.admin_url + path, data=data, method=method)
        if self.cluster.token:
            req.add_header("Authorization", "Bearer " + self.cluster.token)
        try:
            with urllib.request.urlopen(req, timeout=timeout,
                                        context=self.cluster.admin_ssl) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def status(self):
        code, st = self.api("GET", "/v1/status")
        assert code == 200, st
        return st

    def ctl_input(self, args, text):
        """clusterctl with text on its standard input."""
        p = subprocess.run([CLUSTERCTL] + self.ctl_addr_args() + list(args),
                           input=text, capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 0, p.stderr
        return p

    def ctl(self, *args, check=True):
        env = dict(os.environ)
        if self.cluster.token:
            env["SMARTRELAY_TOKEN"] = self.cluster.token
        p = subprocess.run([CLUSTERCTL] + self.ctl_addr_args() + list(args),
                           capture_output=True, text=True, env=env,
                           timeout=60)
        if check and p.returncode != 0:
            raise AssertionError("clusterctl %s failed: %s%s"
                                 % (" ".join(args), p.stdout, p.stderr))
        return p


class Cluster:
    def __init__(self, tmpdir, n=3, tls=False, snapshot_threshold=16384,
                 snapshot_trailing=4096, commit_timeout_ms=15000,
                 log_level="info", token=None, command_timeout_s=300,
                 data_timeout_s=180, peer_tls=True, admin_tls=False,
                 extra_config="", delivery=None, admin_idle_timeout_s=0,
                 tracking_tls=False):
        self.dir = str(tmpdir)
        # YAML appended to every node's config (e.g. a delivery: section)
        self.extra_config = extra_config
        # delivery: keys of the node's delivery: section (None = disabled)
        self.delivery = delivery
        self.admin_idle_timeout_s = admin_idle_timeout_s
        os.makedirs(self.dir, exist_ok=True)
        self.tls = tls
        self.snapshot_threshold = snapshot_threshold
        self.snapshot_trailing = snapshot_trailing
        self.commit_timeout_ms = commit_timeout_ms
        self.log_level = log_level
        self.token = token
        self.command_timeout_s = command_timeout_s
        self.data_timeout_s = data_timeout_s
        if tls:
            self.cert = os.path.join(self.dir, "cert.pem")
            self.key = os.path.join(self.dir, "key.pem")
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                 "-days", "2", "-subj", "/CN=localhost", "-keyout", self.key,
                 "-out", self.cert], check=True, capture_output=True)
        # The admin API over TLS: one self-signed certificate for
        # 127.0.0.1 (an IP SAN, which clients check), shared by the nodes;
        # admin_ssl is an ssl context that trusts it (None for plain HTTP).
        self.admin_tls = admin_tls
        self.admin_ssl = None
        # tracking_tls: the tracking endpoints serve HTTPS with the same
        # certificate (admin_ssl trusts it)
        self.tracking_tls = tracking_tls
        if admin_tls or tracking_tls:
            self.admin_cert = os.path.join(self.dir, "admin-cert.pem")
            self.admin_key = os.path.join(self.dir, "admin-key.pem")
            make_ip_cert(self.admin_cert, self.admin_key)
            self.admin_ssl = ssl.create_default_context(cafile=self.admin_cert)
        # Mutual TLS between nodes, with a CA and node certificates made by
        # clusterctl as an operator would; peer_tls=False runs plaintext.
        self.peer_tls = peer_tls
        self.ca_dir = os.path.join(self.dir, "ca")
        if peer_tls:
            subprocess.run([CLUSTERCTL, "ca", "create", self.ca_dir],
                           check=True, capture_output=True)
        self.nodes = [Node(self, i + 1) for i in range(n)]
        for node in self.nodes:
            node.write_config(self.nodes)

    def start(self):
        for node in self.nodes:
            node.start()
        self.wait_leader()
        return self

    def node_cert(self, node_id):
        """(ca, cert, key) paths for node_id, created on first use."""
        cert = os.path.join(self.ca_dir, "node%d.pem" % node_id)
        key = os.path.join(self.ca_dir, "node%d.key" % node_id)
        if not os.path.exists(cert):
            subprocess.run([CLUSTERCTL, "cert", "create", self.ca_dir,
                            str(node_id)], check=True, capture_output=True)
        return os.path.join(self.ca_dir, "ca.pem"), cert, key

    def add_node(self, node_id):
        node = Node(self, node_id)
        node.write_config([], bootstrap=False)
        self.nodes.append(node)
        return node

    def node(self, node_id):
        return next(n for n in self.nodes if n.id == node_id)

    def alive(self):
        return [n for n in self.nodes if n.alive]

    def wait_leader(self, timeout=20, exclude=()):
        """Waits until a live node is a ready leader; returns it."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for n in self.alive():
                if n.id in exclude:
                    continue
                try:
                    st = n.status()
                except (OSError, AssertionError):
                    continue
                if st["state"] == "leader" and st["ready"]:
                    return n
            time.sleep(0.05)
        raise AssertionError("no leader within %ss:\n%s" % (
            timeout, "\n".join(n.tail(10) for n in self.nodes)))

    def wait_converged(self, timeout=30, nodes=None):
        """Waits until the given nodes report the same applied index and
        state digest; returns the digest."""
        nodes = nodes or self.alive()
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            try:
                ds = [n.api("GET", "/v1/digest")[1] for n in nodes]
            except OSError:
                time.sleep(0.1)
                continue
            last = ds
            if len({(d["applied_index"], d["digest"]) for d in ds}) == 1:
                return ds[0]
            time.sleep(0.1)
        raise AssertionError("nodes did not converge: %s" % last)

    def close(self):
        """Stops every node with SIGTERM; a node that does not exit 0 (a
        sanitizer report, a leak, a crash on shutdown) fails the test."""
        errors = []
        for n in self.nodes:
            try:
                was_alive = n.alive
                rc = n.stop()
                if was_alive and rc != 0:
                    errors.append("node %d exited %s:\n%s" % (n.id, rc, n.tail()))
            except Exception as e:  # still stop the others
                errors.append(str(e))
        for n in self.nodes:
            n.kill()
            try:
                with open(n.log_path, errors="replace") as f:
                    log = f.read()
            except OSError:
                continue
            for marker in ("Sanitizer", "runtime error:"):
                if marker in log:
                    i = log.index(marker)
                    errors.append("node %d log: %s" % (n.id, log[i - 200:i + 2000]))
        if errors:
            raise AssertionError("; ".join(errors))
