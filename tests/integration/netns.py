"""Test hosts in network namespaces that the test creates and deletes.

A "switch" namespace holds a bridge; every host namespace gets a veth pair
with one end (eth0) in the host and the other on the bridge. Addresses are
private ones inside these namespaces only: nothing is routed anywhere else.
"""
import json
import os
import subprocess


def sh(*args, check=True):
    return subprocess.run(list(args), capture_output=True, text=True,
                          check=check, timeout=60)


class Net:
    def __init__(self, hosts):
        tag = os.getpid() % 10000
        self.tag = tag
        self.subnet = "10.77.%d" % (tag % 250)
        self.switch = "srsw%d" % tag
        self.hosts = {}    # name -> (namespace, address)
        self.created = []
        try:
            self._ns(self.switch)
            sh("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
            sh("ip", "-n", self.switch, "link", "set", "br0", "up")
            for i, name in enumerate(hosts):
                self.add_host(name, i + 1)
        except Exception:
            self.close()
            raise

    def _ns(self, ns):
        sh("ip", "netns", "add", ns)
        self.created.append(ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")

    def add_host(self, name, k):
        ns = "sr%d%s" % (self.tag, name)
        self._ns(ns)
        a, b = "sr%dh%d" % (self.tag, k), "sr%ds%d" % (self.tag, k)
        sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        sh("ip", "link", "set", a, "netns", ns)
        sh("ip", "-n", ns, "link", "set", a, "name", "eth0")
        sh("ip", "link", "set", b, "netns", self.switch)
        sh("ip", "-n", self.switch, "link", "set", b, "master", "br0")
        sh("ip", "-n", self.switch, "link", "set", b, "up")
        addr = "%s.%d" % (self.subnet, k)
        sh("ip", "-n", ns, "addr", "add", addr + "/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        self.hosts[name] = (ns, addr)
        return ns, addr

    def ns(self, name):
        return self.hosts[name][0]

    def addr(self, name):
        return self.hosts[name][1]

    def run(self, name, *args, **kw):
        return subprocess.run(["ip", "netns", "exec", self.ns(name)]
                              + list(args), capture_output=True, text=True,
                              **kw)

    def popen(self, name, args, **kw):
        return subprocess.Popen(["ip", "netns", "exec", self.ns(name)]
                                + list(args), **kw)

    def has_addr(self, name, ip):
        out = sh("ip", "-n", self.ns(name), "-4", "addr", "show", "dev",
                 "eth0").stdout
        return (" %s/" % ip) in out

    def api(self, name, method, path, body=None, port=8080):
        args = ["curl", "-s", "-m", "5", "-X", method,
                "http://127.0.0.1:%d%s" % (port, path)]
        if body is not None:
            args += ["-H", "Content-Type: application/json", "--data",
                     json.dumps(body)]
        p = self.run(name, *args, timeout=30)
        if p.returncode != 0 or not p.stdout:
            return None
        return json.loads(p.stdout)

    def close(self):
        for ns in reversed(self.created):
            sh("ip", "netns", "del", ns, check=False)
        self.created = []
