"""The outbound SMTP client (gateways/smtp_client.c) against real servers,
through the tests/tools/smtp_send driver: Postfix's smtp-sink (pipelining,
several messages per connection, dot-stuffing, rejects, 421, disconnects)
and aiosmtpd scripted per test (per-recipient 4xx/5xx, no PIPELINING,
STARTTLS with a self-signed certificate, SIZE, SMTPUTF8, 8BITMIME, a
source address, slow answers) plus a socket that never answers.

Every server is started by its test and stopped by a fixture finalizer,
so that no process outlives a test."""
import asyncio
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from cluster import BUILD, free_ports

SMTP_SEND = os.path.join(BUILD, "tests", "tools", "smtp_send")
SMTP_SINK = "/usr/sbin/smtp-sink"


# ---------------------------------------------------------------- driver

class Run:
    def __init__(self, proc_rc, lines, stderr, elapsed):
        self.rc = proc_rc
        self.lines = lines
        self.stderr = stderr
        self.elapsed = elapsed
        self.events = [x for x in lines if "event" in x]
        self.messages = [x for x in lines if "message" in x]

    def event(self, kind):
        got = [e for e in self.events if e["event"] == kind]
        assert len(got) == 1, (kind, self.lines, self.stderr)
        return got[0]

    def __repr__(self):
        return "rc=%d\n%s\n%s" % (self.rc, "\n".join(
            json.dumps(x) for x in self.lines), self.stderr)


def send(tmp_path, address, messages, *args, timeout=60):
    """Runs smtp_send with messages (dicts as in smtp_send.c); returns a
    Run with its JSON lines."""
    spec = tmp_path / ("msgs%d.json" % time.monotonic_ns())
    spec.write_text(json.dumps(messages))
    t0 = time.monotonic()
    p = subprocess.run([SMTP_SEND, "--connect", address, *args, str(spec)],
                       capture_output=True, text=True, timeout=timeout)
    lines = [json.loads(x) for x in p.stdout.splitlines() if x.strip()]
    r = Run(p.returncode, lines, p.stderr, time.monotonic() - t0)
    # The loop closed cleanly (no handle left) in every case, and a
    # sanitizer build reported nothing (its exit status could pass for 1).
    assert p.returncode != 3, r
    for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        assert bad not in p.stderr, r
    return r


def msg(subject, to=("rcpt@example.org",), sender="sender@example.com",
        body="Hello.\r\n", extra_headers="", **kw):
    m = {"from": sender, "to": list(to),
         "body": "From: %s\r\nTo: %s\r\nSubject: %s\r\n%s\r\n%s" % (
             sender or "<>", ", ".join(to), subject, extra_headers, body)}
    m.update(kw)
    return m


# ------------------------------------------------------------- smtp-sink

def _listening(port):
    """True once something listens on 127.0.0.1:port (read from /proc, so
    that checking does not open a session)."""
    want = ":%04X" % port
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                for line in f.readlines()[1:]:
                    parts = line.split()
                    if parts[1].endswith(want) and parts[3] == "0A":
                        return True
        except OSError:
            pass
    return False


class Sink:
    """smtp-sink on 127.0.0.1 saving each message to its own file."""

    def __init__(self, *opts):
        self.port = free_ports(1)[0]
        # smtp-sink writes the files as the postfix user: a directory of
        # its own outside pytest's private tree.
        self.dir = tempfile.mkdtemp(prefix="smtp-sink-")
        os.chmod(self.dir, 0o777)
        cmd = [SMTP_SINK]
        if os.geteuid() == 0:
            cmd += ["-u", "postfix"]
        # -v logs "connect" and "disconnect" per session to stderr.
        cmd += ["-v", "-d", self.dir + "/%M.", *opts,
                "127.0.0.1:%d" % self.port, "100"]
        self.log = open(os.path.join(self.dir, "sink.log"), "w+")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                     stderr=self.log)
        deadline = time.time() + 10
        while not _listening(self.port):
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError("smtp-sink: " + self.log.read())
            if time.time() > deadline:
                raise RuntimeError("smtp-sink does not listen")
            time.sleep(0.02)

    def sessions(self, timeout=10):
        """Number of sessions so far, once each of them has ended."""
        deadline = time.time() + timeout
        while True:
            with open(self.log.name) as f:
                text = f.read()
            opened = text.count(": connect (")
            if opened == text.count(": disconnect") or \
                    time.time() > deadline:
                return opened
            time.sleep(0.05)

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def mails(self):
        """[(headers of smtp-sink, message text)] of every saved mail."""
        out = []
        for name in sorted(os.listdir(self.dir)):
            if name == "sink.log":
                continue
            with open(os.path.join(self.dir, name), "rb") as f:
                raw = f.read().decode("utf-8", "replace")
            lines = raw.split("\n")
            # smtp-sink's own records end with its 3-line Received: header
            i = next(k for k, x in enumerate(lines)
                     if x.startswith("Received: "))
            out.append(("\n".join(lines[:i]), "\n".join(lines[i + 3:])))
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def sink():
    made = []

    def make(*opts):
        s = Sink(*opts)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


def as_saved(text):
    """How smtp-sink saves a message we sent: LF line ends, an empty line
    after it."""
    if not text.endswith("\r\n"):
        text += "\r\n"
    return text.replace("\r\n", "\n") + "\n"


def test_sink_several_messages_one_connection(tmp_path, sink):
    s = sink()
    body1 = ("First line.\r\n.A line that starts with a dot\r\n"
             "..two dots\r\n.\r\nafter a lone dot\r\n")
    body2 = "x" * 1500 + "\r\n" + "\r\n".join(
        ".%d" % i for i in range(20000)) + "\r\nend without CRLF"
    ms = [msg("first", body=body1,
              to=["a@example.org", "b@example.org"]),
          msg("second", body=body2, sender=""),
          msg("third", extra_headers="X-Long: " + "y" * 900 + "\r\n",
              to=["c@example.org"])]
    r = send(tmp_path, s.address, ms)
    assert r.rc == 0, r
    ready = r.event("ready")
    assert "PIPELINING" in ready["ext"] and ready["esmtp"], r
    assert r.event("closed")["reason"] == "quit", r
    assert [m["status"] for m in r.messages] == ["ok", "ok", "ok"], r
    assert r.messages[0]["n_ok"] == 2
    assert all(x["code"] == 250 and x["enh"] == "2.1.5"
               for x in r.messages[0]["rcpts"]), r
    assert r.messages[2]["data"]["code"] == 250
    assert s.sessions() == 1
    saved = s.mails()
    assert len(saved) == 3
    by_subject = {}
    for head, text in saved:
        subj = [x for x in text.split("\n") if x.startswith("Subject: ")][0]
        by_subject[subj[len("Subject: "):]] = (head, text)
    head, text = by_subject["first"]
    assert "X-Rcpt-Args: <a@example.org>\nX-Rcpt-Args: <b@example.org>" \
        in head
    assert "X-Mail-Args: <sender@example.com>" in head
    assert text == as_saved(ms[0]["body"])
    head, text = by_subject["second"]
    assert "X-Mail-Args: <>" in head
    assert text == as_saved(ms[1]["body"])
    assert by_subject["third"][1] == as_saved(ms[2]["body"])


def test_sink_ehlo_refused_helo_fallback(tmp_path, sink):
    s = sink("-f", "EHLO")
    r = send(tmp_path, s.address, [msg("one"), msg("two")])
    assert r.rc == 0, r
    ready = r.event("ready")
    assert ready["esmtp"] is False and ready["ext"] == [], r
    assert [m["status"] for m in r.messages] == ["ok", "ok"], r
    heads = [h for h, _ in s.mails()]
    assert len(heads) == 2
    assert all("X-Client-Proto: SMTP" in h for h in heads), heads
    assert s.sessions() == 1


def test_sink_soft_reject_rcpt_then_rset(tmp_path, sink):
    # -r RCPT: every RCPT gets 450 (and no PIPELINING is offered).
    s = sink("-r", "RCPT")
    r = send(tmp_path, s.address, [
        msg("one", to=["a@example.org", "b@example.org"]), msg("two")])
    assert r.rc == 0, r
    assert "PIPELINING" not in r.event("ready")["ext"]
    for m in r.messages:
        assert m["status"] == "temp" and m["stage"] == "rcpt", r
        assert not m["conn_dead"]
        assert all(x["status"] == "temp" and x["code"] == 450
                   for x in m["rcpts"]), r
        assert "in reply to RCPT TO" in m["reason"]
    assert r.event("closed")["reason"] == "quit"
    assert s.mails() == []


def test_sink_421_fails_the_message_and_the_connection(tmp_path, sink):
    s = sink("-Q", "RCPT")
    r = send(tmp_path, s.address, [msg("one"), msg("two")])
    assert r.rc == 1, r
    m = r.messages[0]
    assert m["status"] == "temp" and m["conn_dead"] and \
        m["stage"] == "connection", r
    assert "421" in m["reason"]
    assert r.messages[1]["status"] == "not_sent"
    closed = r.event("closed")
    assert closed["reply"]["code"] == 421, r


def test_sink_disconnect_after_dot(tmp_path, sink):
    s = sink("-q", ".")
    r = send(tmp_path, s.address, [msg("one")])
    m = r.messages[0]
    assert m["status"] == "temp" and m["conn_dead"], r
    assert "connection closed by the server" in m["reason"], r
    assert m["rcpts"][0]["status"] == "temp"


def test_sink_hard_reject_data(tmp_path, sink):
    s = sink("-f", "DATA")
    r = send(tmp_path, s.address, [msg("one"), msg("two")])
    assert r.rc == 0, r
    for m in r.messages:
        assert m["status"] == "perm" and m["stage"] == "data", r
        assert m["rcpts"][0]["code"] == 250       # RCPT was accepted
        assert m["rcpts"][0]["status"] == "perm"  # but DATA was not
        assert m["data"]["code"] == 500


# -------------------------------------------------------------- aiosmtpd

class Server:
    """aiosmtpd on 127.0.0.1, scripted by address: a recipient starting
    "temp" gets 450, "perm" 550, "slow" an answer after 5 s; recording what
    arrived (envelope, MAIL parameters, peer, TLS)."""

    def __init__(self, pipelining=False, tls_context=None, size=None,
                 smtputf8=False):
        self.port = free_ports(1)[0]
        self.lock = threading.Lock()
        self.received = []
        self.peers = []
        srv = self

        class Handler:
            async def handle_EHLO(self, server, session, envelope, hostname,
                                  responses):
                session.host_name = hostname
                if pipelining:
                    responses.insert(1, "250-PIPELINING")
                return responses

            async def handle_RCPT(self, server, session, envelope, address,
                                  rcpt_options):
                if address.startswith("temp"):
                    return "450 4.2.0 <%s>: mailbox busy" % address
                if address.startswith("perm"):
                    return "550 5.1.1 <%s>: no such user" % address
                if address.startswith("slow"):
                    await asyncio.sleep(5)
                envelope.rcpt_tos.append(address)
                return "250 2.1.5 OK"

            async def handle_DATA(self, server, session, envelope):
                with srv.lock:
                    srv.received.append({
                        "from": envelope.mail_from,
                        "to": list(envelope.rcpt_tos),
                        "options": list(envelope.mail_options),
                        "content": envelope.original_content,
                        "peer": session.peer[0],
                        "tls": session.ssl is not None,
                    })
                return "250 2.0.0 queued"

        class Recording(SMTP):
            def connection_made(self, transport):
                with srv.lock:
                    srv.peers.append(transport.get_extra_info("peername"))
                super().connection_made(transport)

        class Ctl(Controller):
            def factory(self):
                kw = dict(decode_data=False, enable_SMTPUTF8=smtputf8)
                if size is not None:
                    kw["data_size_limit"] = size
                if tls_context is not None:
                    kw["tls_context"] = tls_context
                return Recording(self.handler, **kw)

        self.ctl = Ctl(Handler(), hostname="127.0.0.1", port=self.port)
        self.ctl.start()

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def stop(self):
        if self.ctl is not None:
            self.ctl.stop()
            self.ctl = None


@pytest.fixture
def server():
    made = []

    def make(**kw):
        s = Server(**kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("cert")
    key, crt = str(d / "key.pem"), str(d / "cert.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
         "2", "-subj", "/CN=localhost", "-addext",
         "subjectAltName=DNS:localhost", "-keyout", key, "-out", crt],
        check=True, capture_output=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(crt, key)
    return crt, ctx


@pytest.mark.parametrize("pipelining", [False, True])
def test_per_recipient_replies(tmp_path, server, pipelining):
    s = server(pipelining=pipelining)
    body8 = "Gr\u00fc\u00dfe aus K\u00f6ln.\r\n"
    ms = [msg("mixed", to=["ok1@example.org", "temp1@example.org",
                           "perm1@example.org", "ok2@example.org"],
              body=body8),
          msg("all refused", to=["temp2@example.org", "perm2@example.org"]),
          msg("all perm", to=["perm3@example.org"]),
          msg("after the failures", to=["ok3@example.org"])]
    r = send(tmp_path, s.address, ms)
    assert r.rc == 0, r
    assert ("PIPELINING" in r.event("ready")["ext"]) == pipelining, r
    m = r.messages[0]
    assert m["status"] == "ok" and m["n_ok"] == 2 and m["reason"] == "", r
    got = [(x["rcpt"], x["status"], x["code"], x["enh"]) for x in m["rcpts"]]
    assert got == [("ok1@example.org", "ok", 250, "2.1.5"),
                   ("temp1@example.org", "temp", 450, "4.2.0"),
                   ("perm1@example.org", "perm", 550, "5.1.1"),
                   ("ok2@example.org", "ok", 250, "2.1.5")], r
    assert "mailbox busy" in m["rcpts"][1]["text"]
    assert m["data"]["code"] == 250
    m = r.messages[1]
    assert m["status"] == "temp" and m["stage"] == "rcpt", r
    assert [x["status"] for x in m["rcpts"]] == ["temp", "perm"]
    m = r.messages[2]
    assert m["status"] == "perm" and m["stage"] == "rcpt", r
    assert r.messages[3]["status"] == "ok", r
    # All four over one connection.
    assert [e["event"] for e in r.events] == ["ready", "closed"]
    with s.lock:
        rec = list(s.received)
    assert [x["to"] for x in rec] == [["ok1@example.org", "ok2@example.org"],
                                      ["ok3@example.org"]]
    assert rec[0]["content"] == ms[0]["body"].encode()
    assert "BODY=8BITMIME" in rec[0]["options"], rec[0]
    assert any(o.startswith("SIZE=") for o in rec[0]["options"])
    assert "BODY=8BITMIME" not in rec[1]["options"]


def test_starttls_opportunistic(tmp_path, server, cert):
    crt, ctx = cert
    s = server(tls_context=ctx)
    r = send(tmp_path, s.address, [msg("tls one"), msg("tls two")],
             "--tls", "may")
    assert r.rc == 0, r
    ready = r.event("ready")
    assert ready["tls"] in ("TLSv1.2", "TLSv1.3"), r
    assert "STARTTLS" not in ready["ext"]      # extensions after STARTTLS
    assert [m["status"] for m in r.messages] == ["ok", "ok"], r
    with s.lock:
        assert [x["tls"] for x in s.received] == [True, True]


def test_starttls_required_with_verification(tmp_path, server, cert):
    crt, ctx = cert
    s = server(tls_context=ctx)
    r = send(tmp_path, s.address, [msg("verified")], "--tls", "require",
             "--verify", "--ca", crt, "--hostname", "localhost")
    assert r.rc == 0, r
    assert r.event("ready")["tls"] is not None
    assert r.messages[0]["status"] == "ok"

    # The wrong name: the handshake fails, nothing is sent.
    r = send(tmp_path, s.address, [msg("wrong name")], "--tls", "require",
             "--verify", "--ca", crt, "--hostname", "mx.example.net")
    assert r.rc == 1, r
    failed = r.event("failed")
    assert failed["tls_failed"] is True, r
    assert "certificate verification failed" in failed["reason"], r
    assert r.messages[0]["status"] == "not_sent"

    # An unknown CA (the system's store does not know a self-signed one).
    r = send(tmp_path, s.address, [msg("unknown ca")], "--tls", "require",
             "--verify", "--hostname", "localhost")
    assert r.rc == 1 and r.event("failed")["tls_failed"], r
    with s.lock:
        assert len(s.received) == 1


def test_tls_required_but_not_offered(tmp_path, server):
    s = server()
    r = send(tmp_path, s.address, [msg("never")], "--tls", "require")
    assert r.rc == 1, r
    failed = r.event("failed")
    assert "does not offer STARTTLS" in failed["reason"], r
    assert failed["tls_failed"] is False
    assert r.messages == [{"message": 0, "status": "not_sent"}]
    # Opportunistic goes on in plaintext.
    r = send(tmp_path, s.address, [msg("plain")], "--tls", "may")
    assert r.rc == 0 and r.event("ready")["tls"] is None, r
    with s.lock:
        assert [x["tls"] for x in s.received] == [False]


def test_size_limit(tmp_path, server):
    s = server(size=2000)
    big = msg("big", body="z" * 70 + "\r\n" * 50 + "y" * 5000 + "\r\n")
    r = send(tmp_path, s.address, [big, msg("small")])
    assert r.rc == 0, r
    assert r.event("ready")["size_max"] == 2000
    m = r.messages[0]
    assert m["status"] == "perm" and m["stage"] == "local", r
    assert m["rcpts"][0]["enh"] == "5.3.4"
    assert "exceeds the size limit 2000" in m["reason"]
    assert m["mail"] is None            # nothing was sent for it
    assert r.messages[1]["status"] == "ok"
    with s.lock:
        assert [x["content"].count(b"Subject: small") for x in s.received] \
            == [1]
    # An explicit size counts, not the body length.
    r = send(tmp_path, s.address, [msg("declared", size=3000)])
    assert r.messages[0]["stage"] == "local", r


def test_smtputf8(tmp_path, server):
    utf = msg("utf8", to=["j\u00f6rg@example.org"])
    s = server(smtputf8=False)
    r = send(tmp_path, s.address, [utf, msg("ascii")])
    m = r.messages[0]
    assert m["status"] == "perm" and m["stage"] == "local", r
    assert m["rcpts"][0]["enh"] == "5.6.7"
    assert r.messages[1]["status"] == "ok"

    s2 = server(smtputf8=True)
    r = send(tmp_path, s2.address, [utf, msg("flagged", smtputf8=True)])
    assert [m["status"] for m in r.messages] == ["ok", "ok"], r
    with s2.lock:
        assert s2.received[0]["to"] == ["j\u00f6rg@example.org"]
        assert all("SMTPUTF8" in x["options"] for x in s2.received)


def test_source_address(tmp_path, server):
    s = server()
    r = send(tmp_path, s.address, [msg("from .2")], "--source", "127.0.0.2")
    assert r.rc == 0, r
    with s.lock:
        assert s.received[0]["peer"] == "127.0.0.2"


def test_timeout_in_rcpt(tmp_path, server):
    s = server()
    r = send(tmp_path, s.address,
             [msg("slow", to=["perm@example.org", "slow@example.org"]),
              msg("never sent")],
             "--timeout", "rcpt=400")
    assert r.rc == 1, r
    m = r.messages[0]
    assert m["status"] == "temp" and m["conn_dead"], r
    assert "timeout after 400 ms waiting for the RCPT TO reply" in \
        m["reason"], r
    # The refusal that came before the timeout stays.
    assert [x["status"] for x in m["rcpts"]] == ["perm", "temp"]
    assert r.messages[1]["status"] == "not_sent"
    assert r.elapsed < 4, r


def test_idle_timeout(tmp_path, server):
    s = server(pipelining=True)
    r = send(tmp_path, s.address, [msg("then idle")], "--end", "idle",
             "--timeout", "idle=300")
    assert r.rc == 0, r
    assert r.event("closed")["reason"] == "idle timeout"
    assert r.elapsed < 4, r


def test_close_instead_of_quit(tmp_path, server):
    s = server()
    r = send(tmp_path, s.address, [msg("a"), msg("b")], "--end", "close")
    assert r.rc == 0, r
    # smtp_client_close(): no event after it
    assert [e["event"] for e in r.events] == ["ready"]
    assert [m["status"] for m in r.messages] == ["ok", "ok"]


# ------------------------------------------------------ a silent server

@pytest.fixture
def silent():
    """A socket that listens but never accepts: connections complete in
    the kernel, no greeting ever comes."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", free_ports(1)[0]))
    s.listen(8)
    yield "127.0.0.1:%d" % s.getsockname()[1]
    s.close()


def test_server_never_answers(tmp_path, silent):
    r = send(tmp_path, silent, [msg("nothing")], "--timeout", "greeting=300")
    assert r.rc == 1, r
    failed = r.event("failed")
    assert "timeout after 300 ms waiting for the greeting" in \
        failed["reason"], r
    assert r.messages == [{"message": 0, "status": "not_sent"}]
    assert r.elapsed < 4, r


def test_connection_refused(tmp_path):
    port = free_ports(1)[0]
    r = send(tmp_path, "127.0.0.1:%d" % port, [msg("nothing")])
    assert r.rc == 1, r
    assert "connect failed" in r.event("failed")["reason"], r
