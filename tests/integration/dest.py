"""A scripted destination MTA for delivery tests: aiosmtpd on 127.0.0.1,
answering each RCPT and each DATA as a test function says, and recording
what arrived, how many sessions were open at once and in total."""
import asyncio
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from cluster import free_ports


class Dest:
    def __init__(self, rcpt_reply=None, data_reply=None, port=None,
                 delay=0.0, tls=None):
        """rcpt_reply(address, attempt) and data_reply(envelope, attempt)
        return an SMTP reply line, or None for the default 250. attempt
        counts from 1, per recipient address (RCPT) or per first recipient
        (DATA). tls=(certfile, keyfile): offer STARTTLS and require it
        before MAIL."""
        self.delay = delay  # seconds before answering each DATA
        self.rcpt_reply = rcpt_reply
        self.data_reply = data_reply
        self.lock = threading.Lock()
        self.messages = []      # (mail_from, [rcpts], bytes)
        self.peers = []         # the client address of each message
        self.arrival_times = [] # time.time() of each message
        self.tls_versions = []  # TLS version of each message, None if plain
        self.rcpt_tries = {}
        self.data_tries = {}
        self.sessions = 0
        self.open = 0
        self.max_open = 0
        self.port = port or free_ports(1)[0]
        dest = self

        class Handler:
            async def handle_RCPT(self, server, session, envelope, address,
                                  rcpt_options):
                with dest.lock:
                    n = dest.rcpt_tries[address] = \
                        dest.rcpt_tries.get(address, 0) + 1
                r = dest.rcpt_reply(address, n) if dest.rcpt_reply else None
                if r:
                    return r
                envelope.rcpt_tos.append(address)
                return "250 2.1.5 OK"

            async def handle_DATA(self, server, session, envelope):
                if dest.delay:
                    await asyncio.sleep(dest.delay)
                key = envelope.rcpt_tos[0] if envelope.rcpt_tos else ""
                with dest.lock:
                    n = dest.data_tries[key] = dest.data_tries.get(key, 0) + 1
                r = dest.data_reply(envelope, n) if dest.data_reply else None
                if r:
                    return r
                with dest.lock:
                    dest.peers.append(session.peer[0])
                    dest.arrival_times.append(time.time())
                    so = session.ssl.get("ssl_object") if session.ssl else None
                    dest.tls_versions.append(so.version() if so else None)
                    dest.messages.append((envelope.mail_from,
                                          list(envelope.rcpt_tos),
                                          envelope.original_content))
                return "250 2.0.0 Ok: queued"

        class Counting(SMTP):
            def connection_made(self, transport):
                with dest.lock:
                    dest.sessions += 1
                    dest.open += 1
                    dest.max_open = max(dest.max_open, dest.open)
                super().connection_made(transport)

            def connection_lost(self, exc):
                with dest.lock:
                    dest.open -= 1
                super().connection_lost(exc)

        ctx = None
        if tls is not None:
            import ssl
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(*tls)

        class Ctl(Controller):
            def factory(self):
                if ctx is not None:
                    return Counting(self.handler, decode_data=False,
                                    enable_SMTPUTF8=True, tls_context=ctx,
                                    require_starttls=True)
                return Counting(self.handler, decode_data=False,
                                enable_SMTPUTF8=True)

        self.ctl = Ctl(Handler(), hostname="127.0.0.1", port=self.port)
        self.ctl.start()

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def received(self):
        with self.lock:
            return list(self.messages)

    def wait(self, n, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(self.received()) >= n:
                return self.received()
            time.sleep(0.05)
        raise AssertionError("%d of %d messages arrived" % (
            len(self.received()), n))

    def stop(self):
        if self.ctl is not None:
            self.ctl.stop()
            self.ctl = None
