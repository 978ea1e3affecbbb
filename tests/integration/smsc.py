"""Runs the SMSC simulator (smsc/smsc.js, Node.js + the npm package smpp)
for tests, and drives it over its JSON control API.

    from smsc import Smsc, smsc  # noqa: F401  (smsc is a pytest fixture)

    def test_x(smsc):
        s = smsc(system_id="esme", password="secret")
        ... point the relay at s.address ...
        s.wait_submits(1)
        s.mode(throttle=True)

The first use runs `npm install` in smsc/ when node_modules/smpp is missing,
under a file lock so parallel test processes do not race.
"""
import atexit
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request

import pytest

from cluster import free_ports

HERE = os.path.dirname(os.path.abspath(__file__))
SIM_DIR = os.path.join(HERE, "smsc")
SIM_JS = os.path.join(SIM_DIR, "smsc.js")
NODE = os.environ.get("SMARTRELAY_NODE", "node")

_live = set()


def ensure_installed():
    """The simulator's npm packages come from ci/install-deps (npm ci, pinned
    by package-lock.json); tests do not install anything themselves."""
    marker = os.path.join(SIM_DIR, "node_modules", "smpp", "package.json")
    if not os.path.exists(marker):
        raise RuntimeError("the SMSC simulator's npm packages are missing in "
                           "%s: run ci/install-deps" % SIM_DIR)


class Smsc:
    def __init__(self, system_id="esme", password="secret", id_format="hex",
                 receipt_id_format=None, receipt_delay_ms=200,
                 start_timeout=30, port=None):
        ensure_installed()
        self.system_id = system_id
        self.password = password
        # port: the SMPP port (e.g. to restart a stopped SMSC on its own)
        self.port, self.control_port = free_ports(2)
        if port is not None:
            self.port = port
        self.address = "127.0.0.1:%d" % self.port
        self._log = tempfile.NamedTemporaryFile(
            prefix="smsc-", suffix=".log", delete=False)
        self.log_path = self._log.name
        cmd = [NODE, SIM_JS, "--port", str(self.port),
               "--control", str(self.control_port),
               "--system-id", system_id, "--password", password,
               "--receipt-delay-ms", str(int(receipt_delay_ms)),
               "--id-format", id_format, "--exit-on-stdin-close"]
        if receipt_id_format:
            cmd += ["--receipt-id-format", receipt_id_format]
        # stdin stays open as a pipe: if this process dies, the simulator
        # sees EOF and exits by itself.
        self.proc = subprocess.Popen(
            cmd, cwd=SIM_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._log, text=True)
        _live.add(self)
        ready = threading.Event()

        def reader():
            try:
                for line in self.proc.stdout:
                    if line.strip() == "ready %d" % self.port:
                        ready.set()
            except (OSError, ValueError):
                pass
        threading.Thread(target=reader, daemon=True).start()
        deadline = time.time() + start_timeout
        while not ready.wait(0.05):
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError("SMSC simulator did not start:\n" + self.log())

    # -- control API ---------------------------------------------------
    def _call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            "http://127.0.0.1:%d%s" % (self.control_port, path), data=data,
            method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read().decode())

    def submits(self):
        """Every submit_sm received, oldest first (rejected ones too: see
        command_status; message_id is None unless accepted)."""
        return self._call("GET", "/submits")

    def accepted(self):
        return [s for s in self.submits() if s["command_status"] == 0]

    def receipts(self):
        """Every deliver_sm receipt sent (resp_status: the ESME's answer)."""
        return self._call("GET", "/receipts")

    def sessions(self):
        return self._call("GET", "/sessions")

    def mode(self, **kw):
        """Changes modes (throttle, fail_status, drop_responses,
        receipt_before_response, receipt_state, receipt_states,
        max_per_second, receipt_id_format); returns the whole mode."""
        return self._call("POST", "/mode", kw)

    def reset(self):
        return self._call("POST", "/reset", {})

    def close_sessions(self):
        return self._call("POST", "/close-sessions", {})["closed"]

    def wait_submits(self, n, timeout=30):
        """Waits until at least n submit_sm were recorded; returns them."""
        deadline = time.time() + timeout
        while True:
            got = self.submits()
            if len(got) >= n:
                return got
            if time.time() > deadline:
                raise AssertionError("%d submit_sm after %ss, wanted %d: %r"
                                     % (len(got), timeout, n, got))
            time.sleep(0.05)

    def wait_sessions(self, n, timeout=30):
        deadline = time.time() + timeout
        while True:
            got = self.sessions()
            if len(got) >= n:
                return got
            if time.time() > deadline:
                raise AssertionError("%d bound sessions, wanted %d" % (len(got), n))
            time.sleep(0.05)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        p = self.proc
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in (p.stdin, p.stdout):
            try:
                f.close()
            except OSError:
                pass
        self._log.close()
        try:
            os.unlink(self.log_path)
        except OSError:
            pass
        _live.discard(self)


@atexit.register
def _stop_all():
    for s in list(_live):
        s.stop()


@pytest.fixture
def smsc():
    made = []

    def make(**kw):
        s = Smsc(**kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.stop()
