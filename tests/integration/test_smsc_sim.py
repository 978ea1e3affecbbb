"""Self-test of the SMSC simulator (smsc/smsc.js) with a tiny SMPP 3.4 ESME
written here on raw sockets, so the simulator is proven before the relay's
SMPP client is tested against it."""
import socket
import struct
import time

import pytest

from smsc import smsc  # noqa: F401  (fixture)

BIND_RECEIVER, BIND_TRANSMITTER, BIND_TRANSCEIVER = 0x01, 0x02, 0x09
SUBMIT_SM, DELIVER_SM, UNBIND, ENQUIRE_LINK = 0x04, 0x05, 0x06, 0x15
RESP = 0x80000000
ESME_RINVPASWD, ESME_RINVSYSID, ESME_RTHROTTLED = 0x0E, 0x0F, 0x58
TAG_RECEIPTED_MESSAGE_ID, TAG_MESSAGE_STATE = 0x001E, 0x0427


def cstr(s):
    return (s.encode() if isinstance(s, str) else s) + b"\0"


def tlv(tag, value):
    return struct.pack(">HH", tag, len(value)) + value


class Esme:
    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.seq = 0

    def close(self):
        self.sock.close()

    def send(self, command_id, body=b"", status=0, seq=None):
        if seq is None:
            self.seq += 1
            seq = self.seq
        self.sock.sendall(struct.pack(">IIII", 16 + len(body), command_id,
                                      status, seq) + body)
        return seq

    def _read_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("connection closed")
            buf += chunk
        return buf

    def read(self):
        """Returns (command_id, command_status, sequence_number, body)."""
        length, = struct.unpack(">I", self._read_exact(4))
        cid, status, seq = struct.unpack(">III", self._read_exact(12))
        return cid, status, seq, self._read_exact(length - 16)

    def bind(self, system_id="esme", password="secret", command=BIND_TRANSCEIVER):
        seq = self.send(command, cstr(system_id) + cstr(password) + cstr("")
                        + bytes([0x34, 0, 0]) + cstr(""))
        cid, status, rseq, body = self.read()
        assert cid == command | RESP and rseq == seq
        return status

    def submit(self, dest="+4915112345678", text=b"hello world", src="Relay",
               registered_delivery=1, tlvs=b"", src_ton=5, src_npi=0,
               dst_ton=1, dst_npi=1, esm_class=0, data_coding=0):
        body = (cstr("") + bytes([src_ton, src_npi]) + cstr(src)
                + bytes([dst_ton, dst_npi]) + cstr(dest)
                + bytes([esm_class, 0, 0]) + cstr("") + cstr("")
                + bytes([registered_delivery, 0, data_coding, 0, len(text)])
                + text + tlvs)
        return self.send(SUBMIT_SM, body)

    def submit_resp(self, seq):
        cid, status, rseq, body = self.read()
        assert (cid, rseq) == (SUBMIT_SM | RESP, seq), (hex(cid), rseq, seq)
        return status, (body.split(b"\0")[0].decode() if body else None)

    def read_receipt(self, answer=True):
        cid, status, seq, body = self.read()
        assert cid == DELIVER_SM, hex(cid)
        r = parse_deliver_sm(body)
        if answer:
            self.send(DELIVER_SM | RESP, b"\0", seq=seq)
        return r


def parse_deliver_sm(body):
    off = [0]

    def c():
        end = body.index(b"\0", off[0])
        s = body[off[0]:end].decode()
        off[0] = end + 1
        return s

    def i8():
        off[0] += 1
        return body[off[0] - 1]
    r = {"service_type": c(), "source_addr_ton": i8(), "source_addr_npi": i8(),
         "source_addr": c(), "dest_addr_ton": i8(), "dest_addr_npi": i8(),
         "destination_addr": c(), "esm_class": i8(), "protocol_id": i8(),
         "priority_flag": i8(), "schedule_delivery_time": c(),
         "validity_period": c(), "registered_delivery": i8(),
         "replace_if_present_flag": i8(), "data_coding": i8(),
         "sm_default_msg_id": i8()}
    n = i8()
    r["short_message"] = body[off[0]:off[0] + n]
    off[0] += n
    r["tlvs"] = {}
    while off[0] + 4 <= len(body):
        tag, ln = struct.unpack(">HH", body[off[0]:off[0] + 4])
        r["tlvs"][tag] = body[off[0] + 4:off[0] + 4 + ln]
        off[0] += 4 + ln
    assert off[0] == len(body)
    return r


@pytest.fixture
def esmes():
    made = []

    def make(port):
        e = Esme(port)
        made.append(e)
        return e
    yield make
    for e in made:
        e.close()


def test_bind_and_refusals(smsc, esmes):
    s = smsc()
    assert esmes(s.port).bind(password="wrong") == ESME_RINVPASWD
    assert esmes(s.port).bind(system_id="nobody") == ESME_RINVSYSID
    trx = esmes(s.port)
    assert trx.bind() == 0
    assert trx.bind() == 0x05                      # ESME_RALYBND
    assert esmes(s.port).bind(command=BIND_TRANSMITTER) == 0
    assert esmes(s.port).bind(command=BIND_RECEIVER) == 0
    got = s.wait_sessions(3)
    assert [(x["system_id"], x["bind_type"]) for x in got] == [
        ("esme", "transceiver"), ("esme", "transmitter"), ("esme", "receiver")]
    # enquire_link and unbind
    seq = trx.send(ENQUIRE_LINK)
    assert trx.read()[:3] == (ENQUIRE_LINK | RESP, 0, seq)
    seq = trx.send(UNBIND)
    assert trx.read()[:3] == (UNBIND | RESP, 0, seq)
    with pytest.raises(EOFError):
        trx.read()
    assert len(s.sessions()) == 2


def test_submit_recorded_and_receipt(smsc, esmes):
    s = smsc(receipt_delay_ms=100)
    e = esmes(s.port)
    assert e.bind() == 0
    t0 = time.time()
    sar = (tlv(0x020C, struct.pack(">H", 0x1234)) + tlv(0x020E, b"\x02")
           + tlv(0x020F, b"\x01"))
    seq = e.submit(text=b"hi @\x00\xff", esm_class=0x40, data_coding=0x08,
                   tlvs=sar)
    status, mid = e.submit_resp(seq)
    assert (status, mid) == (0, "1000")
    r = e.read_receipt()
    assert time.time() - t0 >= 0.09
    assert r["esm_class"] == 0x04
    assert (r["source_addr"], r["destination_addr"]) == ("+4915112345678", "Relay")
    assert r["tlvs"][TAG_RECEIPTED_MESSAGE_ID] == b"1000\0"
    assert r["tlvs"][TAG_MESSAGE_STATE] == b"\x02"
    text = r["short_message"].decode()
    assert text.startswith("id:1000 sub:001 dlvrd:001 submit date:"), text
    assert " stat:DELIVRD err:000 text:" in text
    (sub,) = s.submits()
    assert sub["message_id"] == "1000" and sub["command_status"] == 0
    for k, v in {"system_id": "esme", "source_addr": "Relay",
                 "source_addr_ton": 5, "source_addr_npi": 0,
                 "destination_addr": "+4915112345678", "dest_addr_ton": 1,
                 "dest_addr_npi": 1, "esm_class": 0x40, "data_coding": 8,
                 "registered_delivery": 1, "short_message": "6869204000ff",
                 "sar_msg_ref_num": 0x1234, "sar_total_segments": 2,
                 "sar_segment_seqnum": 1}.items():
        assert sub[k] == v, (k, sub)
    assert abs(sub["time"] - t0) < 5 and "session" in sub
    assert "message_payload" not in sub
    # second message: payload in message_payload, no receipt asked
    seq = e.submit(text=b"", registered_delivery=0,
                   tlvs=tlv(0x0424, b"long text"))
    assert e.submit_resp(seq) == (0, "1001")
    assert s.submits()[1]["message_payload"] == b"long text".hex()
    deadline = time.time() + 10
    while s.receipts()[0]["resp_status"] is None:
        assert time.time() < deadline, s.receipts()
        time.sleep(0.05)
    (rec,) = s.receipts()
    assert rec["resp_status"] == 0 and rec["receipted_message_id"] == "1000"


def test_id_formats_and_receipt_states(smsc, esmes):
    s = smsc(id_format="dec", receipt_id_format="hex", receipt_delay_ms=0)
    e = esmes(s.port)
    assert e.bind() == 0
    seq = e.submit()
    assert e.submit_resp(seq) == (0, "4096")
    r = e.read_receipt()
    assert r["tlvs"][TAG_RECEIPTED_MESSAGE_ID] == b"1000\0"
    assert r["short_message"].startswith(b"id:1000 ")
    s.mode(receipt_state="EXPIRED", receipt_states={"+44": "UNDELIV",
                                                    "+447": "REJECTD"})
    for dest, state, num in (("+4912", "EXPIRED", 3), ("+4412", "UNDELIV", 5),
                             ("+4471", "REJECTD", 8)):
        seq = e.submit(dest=dest)
        assert e.submit_resp(seq)[0] == 0
        r = e.read_receipt()
        assert r["tlvs"][TAG_MESSAGE_STATE] == bytes([num]), dest
        assert b" stat:%s " % state.encode() in r["short_message"]
        assert b" dlvrd:000 " in r["short_message"]


def test_receipt_goes_to_receiver_session(smsc, esmes):
    s = smsc(receipt_delay_ms=0)
    tx = esmes(s.port)
    assert tx.bind(command=BIND_TRANSMITTER) == 0
    seq = tx.submit()
    assert tx.submit_resp(seq) == (0, "1000")
    time.sleep(0.2)                       # no receiver yet: the receipt waits
    rx = esmes(s.port)
    assert rx.bind(command=BIND_RECEIVER) == 0
    r = rx.read_receipt()
    assert r["tlvs"][TAG_RECEIPTED_MESSAGE_ID] == b"1000\0"
    # a receiver may not submit
    seq = rx.submit()
    assert rx.submit_resp(seq)[0] == 0x04            # ESME_RINVBNDSTS


def test_throttle_fail_and_rate(smsc, esmes):
    s = smsc()
    e = esmes(s.port)
    assert e.bind() == 0
    s.mode(throttle=True)
    seq = e.submit(registered_delivery=0)
    assert e.submit_resp(seq) == (ESME_RTHROTTLED, None)
    s.mode(throttle=False, fail_status=0x45)
    seq = e.submit(registered_delivery=0)
    assert e.submit_resp(seq) == (0x45, None)
    got = s.submits()
    assert [x["command_status"] for x in got] == [0x58, 0x45]
    assert [x["message_id"] for x in got] == [None, None]
    s.reset()
    assert s.submits() == []
    # at most 3 a second (the simulator's clock seconds): of 6 quick
    # submits, those past the third of their second are throttled, however
    # the submits fall across a second boundary
    s.mode(max_per_second=3)
    statuses = []
    for _ in range(6):
        seq = e.submit(registered_delivery=0)
        statuses.append(e.submit_resp(seq)[0])
    per_second = {}
    for x in s.submits():
        n = per_second.setdefault(int(x["time"]), 0)
        assert x["command_status"] == (0 if n < 3 else 0x58), s.submits()
        per_second[int(x["time"])] = n + 1
    assert 0x58 in statuses or len(per_second) > 1, statuses
    time.sleep(1.1)
    seq = e.submit(registered_delivery=0)
    assert e.submit_resp(seq)[0] == 0
    # drop_responses: recorded, never answered
    s.mode(max_per_second=None, drop_responses=True)
    e.submit(registered_delivery=0)
    s.wait_submits(8)
    e.sock.settimeout(0.5)
    with pytest.raises(socket.timeout):
        e.read()


def test_receipt_before_response(smsc, esmes):
    s = smsc(receipt_delay_ms=5000)
    e = esmes(s.port)
    assert e.bind() == 0
    s.mode(receipt_before_response=True)
    seq = e.submit()
    r = e.read_receipt()                     # first the deliver_sm ...
    assert r["tlvs"][TAG_RECEIPTED_MESSAGE_ID] == b"1000\0"
    assert e.submit_resp(seq) == (0, "1000")   # ... then the submit_sm_resp


def test_close_sessions_drops_connections(smsc, esmes):
    s = smsc()
    a, b = esmes(s.port), esmes(s.port)
    assert a.bind() == 0 and b.bind(command=BIND_RECEIVER) == 0
    assert s.close_sessions() == 2
    for e in (a, b):
        with pytest.raises((EOFError, ConnectionResetError)):
            e.read()
    assert s.sessions() == []
    c = esmes(s.port)                       # and it takes new binds
    assert c.bind() == 0


def test_sigterm_unbinds(smsc, esmes):
    s = smsc()
    e = esmes(s.port)
    assert e.bind() == 0
    s.proc.terminate()
    cid, status, seq, body = e.read()
    assert cid == UNBIND
    e.send(UNBIND | RESP, seq=seq)
    assert s.proc.wait(10) == 0
