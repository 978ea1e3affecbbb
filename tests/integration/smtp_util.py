"""Small SMTP client helpers over real sockets (smtplib and raw)."""
import re
import smtplib
import socket
import time

CODE_RE = re.compile(r"^250 2\.0\.0 OK (\d{2,5}/[0-9A-F]{2}-\d{5}-[0-9A-F]{8})$")


def message(subject="test", body="hello\r\n", extra=""):
    return ("From: a@example.com\r\nTo: b@example.org\r\n"
            "Subject: %s\r\n%s\r\n%s" % (subject, extra, body))


def send(port, rcpts=("b@example.org",), sender="a@example.com",
         msg=None, host="127.0.0.1", source=None, timeout=30):
    """Sends one message; returns (code, text) of the DATA reply."""
    s = smtplib.SMTP(host, port, timeout=timeout,
                     source_address=(source, 0) if source else None)
    try:
        s.ehlo("client.example")
        code, text = s.mail(sender)
        assert code == 250, (code, text)
        for r in rcpts:
            code, text = s.rcpt(r)
            assert code == 250, (code, text)
        code, text = s.data(msg if msg is not None else message())
        return code, text.decode()
    finally:
        try:
            s.quit()
        except (smtplib.SMTPException, OSError):
            pass


def code_of(text):
    m = CODE_RE.match("250 " + text)
    assert m, "no message code in %r" % text
    return m.group(1)


class Raw:
    """A raw SMTP conversation: send bytes, read reply lines."""

    def __init__(self, port, host="127.0.0.1", source=None, timeout=10):
        self.s = socket.create_connection(
            (host, port), timeout=timeout,
            source_address=(source, 0) if source else None)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data if isinstance(data, bytes) else data.encode())

    def reply(self):
        """Reads one (possibly multi-line) reply; returns (code, lines)."""
        lines = []
        while True:
            while b"\n" not in self.buf:
                chunk = self.s.recv(65536)
                if not chunk:
                    raise ConnectionError("closed; got %r" % lines)
                self.buf += chunk
            line, self.buf = self.buf.split(b"\n", 1)
            line = line.rstrip(b"\r").decode()
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return int(line[:3]), lines

    def replies(self, n):
        return [self.reply() for _ in range(n)]

    def closed(self, timeout=5):
        """True once the server has closed the connection."""
        self.s.settimeout(timeout)
        end = time.time() + timeout
        try:
            while time.time() < end:
                if not self.s.recv(65536):
                    return True
        except (ConnectionResetError, socket.timeout):
            return False
        return False

    def close(self):
        self.s.close()
